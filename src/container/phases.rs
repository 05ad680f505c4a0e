//! What `imgbake run` measured, phase by phase, beside the plan's
//! prediction for the same image, as text or JSON. Pure: the numbers come
//! in, rows and text go out. A phase that was not measured says why and
//! carries no number; a plan term with no measured counterpart is shown
//! where it belongs and nowhere else.

use super::importtime::Imports;
use crate::plumbing::units::human_bytes;
use serde::Serialize;

/// Version of the JSON document (`schema` field); bump on any breaking change.
pub const RUN_SCHEMA: &str = "imgbake.run/v1";

/// What was measured (seconds); `Err` holds why a phase was not.
#[derive(Debug, Clone, PartialEq)]
pub struct Measured {
    pub pull: Result<f64, String>,
    pub unpack: f64,
    /// `runc create` + `runc start`.
    pub start: f64,
    /// The prefetch hook's own `done` event.
    pub prefetch: Result<f64, String>,
    pub imports: Result<Imports, String>,
    /// From `runc start` to the first 200 of the health endpoint.
    pub ready: Result<f64, String>,
    /// Layers and blob bytes unpacked, for the note.
    pub layers: usize,
    pub blob_bytes: u64,
}

/// The plan's cold-start terms for the scenario that matches this run.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct PlanTerms {
    pub pull: f64,
    pub unpack: f64,
    pub prefetch: f64,
    pub app_start: f64,
    pub imports: f64,
    pub load: f64,
}

impl PlanTerms {
    pub fn total(&self) -> f64 {
        self.pull + self.unpack + self.prefetch + self.app_start + self.imports + self.load
    }
}

/// One row: the measurement (or why there is none) and the plan's term.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Phase {
    pub phase: &'static str,
    pub seconds: Option<f64>,
    pub plan_seconds: Option<f64>,
    pub note: String,
}

/// The rows, in the order a cold start runs them, and a total of the
/// measured ones beside the plan's terms for the same phases.
pub fn rows(measured: &Measured, plan: Option<&PlanTerms>) -> Vec<Phase> {
    let plan_of = |term: fn(&PlanTerms) -> f64| plan.map(term);
    let row = |phase, result: &Result<f64, String>, plan_seconds: Option<f64>, how: String| Phase {
        phase,
        seconds: result.as_ref().ok().copied().map(milliseconds),
        plan_seconds: plan_seconds.map(milliseconds),
        note: match result {
            Ok(_) => how,
            Err(why) => format!("not measured: {why}"),
        },
    };
    let imports = measured.imports.as_ref().map(|i| i.seconds).map_err(Clone::clone);
    let mut rows = vec![
        row("pull", &measured.pull, plan_of(|p| p.pull), "from the registry into imgbake's blob cache".into()),
        row(
            "unpack",
            &Ok(measured.unpack),
            plan_of(|p| p.unpack),
            format!(
                "{} layers, {} of blobs, by imgbake's layer reader (the plan's term is the unpacking left after the last download)",
                measured.layers,
                human_bytes(measured.blob_bytes)
            ),
        ),
        row("start", &Ok(measured.start), None, "runc create + start (the plan counts it in app start)".into()),
        row("prefetch", &measured.prefetch, plan_of(|p| p.prefetch), "the prefetch hook's `done` event".into()),
        row(
            "imports",
            &imports,
            plan_of(|p| p.imports),
            match &measured.imports {
                Ok(i) => format!("{} modules, top-level cumulative times (python -X importtime)", i.modules),
                Err(_) => String::new(),
            },
        ),
    ];
    // Weights load and the app's own start: the rest of the wait for ready.
    let rest = match (&measured.ready, &measured.prefetch) {
        (Ok(ready), prefetch) => {
            let before = prefetch.as_ref().copied().unwrap_or(0.0) + imports.as_ref().copied().unwrap_or(0.0);
            Ok((ready - before).max(0.0))
        }
        (Err(why), _) => Err(why.clone()),
    };
    let (rest_how, rest_plan) = if imports.is_ok() {
        (
            "ready − prefetch − imports: interpreter start, weights load, app init".to_string(),
            plan_of(|p| p.app_start + p.load),
        )
    } else {
        (
            "ready − prefetch: interpreter start, imports, weights load, app init".to_string(),
            plan_of(|p| p.app_start + p.imports + p.load),
        )
    };
    rows.push(row("load+init", &rest, rest_plan, rest_how));
    rows.push(row(
        "ready",
        &measured.ready,
        plan_of(|p| p.prefetch + p.app_start + p.imports + p.load),
        "from process start to the first 200 of the health endpoint".into(),
    ));
    let total = measured
        .ready
        .as_ref()
        .map(|ready| measured.pull.as_ref().copied().unwrap_or(0.0) + measured.unpack + measured.start + ready);
    let (plan_total, total_how) = match (&measured.pull, plan) {
        (Ok(_), plan) => (plan.map(PlanTerms::total), "pull + unpack + start + ready".to_string()),
        (Err(_), plan) => (
            plan.map(|p| p.total() - p.pull),
            "unpack + start + ready; the plan's total without its pull term".to_string(),
        ),
    };
    rows.push(row("total", &total.map_err(Clone::clone), plan_total, total_how));
    rows
}

/// Seconds rounded to the millisecond (what a report can honestly claim).
pub fn milliseconds(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

/// `1.52 s`, or `—` for a missing number.
pub fn seconds(value: Option<f64>) -> String {
    match value {
        Some(s) if s < 10.0 => format!("{s:.2} s"),
        Some(s) => format!("{s:.1} s"),
        None => "—".to_string(),
    }
}

/// The rows as a table: phase, measured, plan, note.
pub fn table(rows: &[Phase], plan_label: &str) -> String {
    let mut out = format!("{:<10} {:>9} {:>9}  {}\n", "phase", "measured", "plan", plan_label);
    for row in rows {
        out.push_str(&format!(
            "{:<10} {:>9} {:>9}  {}\n",
            row.phase,
            seconds(row.seconds),
            seconds(row.plan_seconds),
            row.note
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn measured() -> Measured {
        Measured {
            pull: Err("the image is a local OCI layout".into()),
            unpack: 0.5,
            start: 0.25,
            prefetch: Err("the image keeps no weights on a volume".into()),
            imports: Ok(Imports { modules: 40, seconds: 0.125 }),
            ready: Ok(1.0),
            layers: 3,
            blob_bytes: 12_500_000,
        }
    }

    const PLAN: PlanTerms =
        PlanTerms { pull: 4.0, unpack: 1.0, prefetch: 0.0, app_start: 1.5, imports: 0.5, load: 0.5 };

    fn find<'a>(rows: &'a [Phase], name: &str) -> &'a Phase {
        rows.iter().find(|r| r.phase == name).unwrap()
    }

    #[test]
    fn measured_phases_add_up_and_sit_beside_the_plan_terms() {
        let rows = rows(&measured(), Some(&PLAN));
        let names: Vec<&str> = rows.iter().map(|r| r.phase).collect();
        assert_eq!(names, ["pull", "unpack", "start", "prefetch", "imports", "load+init", "ready", "total"]);
        assert_eq!(find(&rows, "load+init").seconds, Some(0.875), "ready − imports (no prefetch)");
        assert_eq!(find(&rows, "load+init").plan_seconds, Some(2.0), "app start + load: imports have their row");
        assert_eq!(find(&rows, "imports").plan_seconds, Some(0.5));
        assert_eq!(find(&rows, "ready").plan_seconds, Some(2.5));
        assert_eq!(find(&rows, "total").seconds, Some(1.75), "unpack + start + ready, no pull");
        assert_eq!(find(&rows, "total").plan_seconds, Some(3.5), "the plan's total without its pull");
        assert_eq!(find(&rows, "start").plan_seconds, None, "the plan has no term of its own for it");
        assert_eq!(find(&rows, "imports").note, "40 modules, top-level cumulative times (python -X importtime)");
        assert!(find(&rows, "unpack").note.starts_with("3 layers, 12.5 MB of blobs"));
    }

    #[test]
    fn what_was_not_measured_has_no_number_and_says_why() {
        let mut m = measured();
        m.ready = Err("the container exited (exit status 1) first".into());
        m.imports = Err("no `import time:` lines: the entrypoint is not Python".into());
        let rows = rows(&m, None);
        for name in ["pull", "prefetch", "imports", "load+init", "ready", "total"] {
            let row = find(&rows, name);
            assert_eq!(row.seconds, None, "{name}");
            assert!(row.note.starts_with("not measured: "), "{name}: {}", row.note);
            assert_eq!(row.plan_seconds, None);
        }
        assert_eq!(find(&rows, "pull").note, "not measured: the image is a local OCI layout");
        let text = table(&rows, "plan: none");
        assert!(text.contains("ready              —         —  not measured: the container exited"), "{text}");
    }

    #[test]
    fn a_pulled_image_compares_whole_totals() {
        let mut m = measured();
        m.pull = Ok(2.0);
        let rows = rows(&m, Some(&PLAN));
        assert_eq!(find(&rows, "total").seconds, Some(3.75));
        assert_eq!(find(&rows, "total").plan_seconds, Some(7.5));
        assert_eq!(seconds(Some(12.345)), "12.3 s");
    }
}
