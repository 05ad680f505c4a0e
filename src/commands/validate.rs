//! `imgbake validate`: load a config, print its diagnostics, and the
//! normalized Spec as text or JSON.

use super::{EXIT_INVALID_INPUT, EXIT_OK};
use crate::config::{self, diagnostics::Diagnostic};
use crate::spec::{Spec, WeightsMode};
use serde::Serialize;
use std::path::Path;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
}

/// The JSON document `validate --format json` prints (documented in docs/spec.md).
#[derive(Serialize)]
struct Report<'a> {
    valid: bool,
    diagnostics: Vec<DiagnosticJson>,
    spec: Option<&'a Spec>,
}

#[derive(Serialize)]
struct DiagnosticJson {
    severity: config::diagnostics::Severity,
    file: String,
    line: Option<usize>,
    column: Option<usize>,
    message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    cause: Option<String>,
    hint: Option<String>,
}

impl From<&Diagnostic> for DiagnosticJson {
    fn from(d: &Diagnostic) -> Self {
        DiagnosticJson {
            severity: d.severity,
            file: d.file.display().to_string(),
            line: d.span.map(|s| s.line),
            column: d.span.map(|s| s.col),
            message: d.message.clone(),
            cause: d.cause.as_deref().map(str::to_string),
            hint: d.hint.clone(),
        }
    }
}

pub fn run(path: &Path, format: Format) -> u8 {
    let mut loaded = config::load(path);
    if let Some(missing) = loaded.spec.as_ref().and_then(entrypoint_problem) {
        loaded.diagnostics.push(missing);
        loaded.spec = None;
    }
    for diagnostic in &loaded.diagnostics {
        eprintln!("{diagnostic}");
    }
    let status = if loaded.spec.is_some() { EXIT_OK } else { EXIT_INVALID_INPUT };
    match format {
        Format::Json => {
            let report = Report {
                valid: loaded.spec.is_some(),
                diagnostics: loaded.diagnostics.iter().map(DiagnosticJson::from).collect(),
                spec: loaded.spec.as_ref(),
            };
            println!("{}", serde_json::to_string_pretty(&report).expect("the report serializes"));
        }
        Format::Text => {
            if let Some(spec) = &loaded.spec {
                print!("{}", summary(spec));
            } else {
                let errors = loaded.diagnostics.iter().filter(|d| d.is_error()).count();
                eprintln!("{}: invalid ({errors} error{})", path.display(), if errors == 1 { "" } else { "s" });
            }
        }
    }
    status
}

/// The entrypoint check (src/execute/entrypoint.rs), when a current
/// imgbake.lock is beside the config: against what the lock and this
/// machine's cache say the image will hold.
fn entrypoint_problem(spec: &Spec) -> Option<Diagnostic> {
    use crate::execute::entrypoint;
    if !spec.runtime.check_entrypoint || spec.runtime.entrypoint.is_empty() {
        return None;
    }
    let lock = crate::lock::Lock::read(&crate::lock::lock_path(spec)).ok()??;
    if !lock.is_current(&crate::lock::inputs_of(spec).ok()?) {
        return None;
    }
    let cache_dir = crate::image::cache::LayerCache::default_dir().ok()?;
    let missing = entrypoint::check(spec, &entrypoint::contents_from_lock(spec, &lock, &cache_dir))?;
    let span = std::fs::read_to_string(&spec.source.path)
        .ok()
        .and_then(|text| entrypoint::key_span(spec.source.format, &text));
    Some(Diagnostic::error(&spec.source.path, span, missing.to_string()).with_hint(missing.hint()))
}

/// A short human summary of a valid Spec.
pub fn summary(spec: &Spec) -> String {
    let mut out = String::new();
    let format = match spec.source.format {
        crate::spec::ConfigFormat::Cerebrium => "cerebrium.toml",
        crate::spec::ConfigFormat::Truss => "Truss config.yaml",
    };
    out.push_str(&format!("{}: valid {format} for `{}`\n", spec.source.path.display(), spec.name));
    out.push_str(&format!("  base image   {}\n", spec.base.image));
    let installer = format!("{:?}", spec.python.installer).to_lowercase();
    out.push_str(&format!("  python       {} ({installer})\n", spec.python.version));
    let deps = &spec.dependencies;
    out.push_str(&format!(
        "  packages     pip {}{}, apt {}{}, conda {}{}\n",
        deps.pip.len(),
        if deps.pip_file.is_some() { " + file" } else { "" },
        deps.apt.len(),
        if deps.apt_file.is_some() { " + file" } else { "" },
        deps.conda.len(),
        if deps.conda_file.is_some() { " + file" } else { "" },
    ));
    if !spec.runtime.entrypoint.is_empty() {
        out.push_str(&format!("  entrypoint   {}\n", spec.runtime.entrypoint.join(" ")));
    }
    if let Some(port) = spec.runtime.port {
        out.push_str(&format!("  port         {port}\n"));
    }
    out.push_str(&format!("  target       {} (model root {})\n", spec.target.name.as_str(), spec.target.model_root));
    for entry in &spec.weights {
        let mode = match entry.mode {
            WeightsMode::Auto => "auto",
            WeightsMode::Bake => "bake",
            WeightsMode::Volume => "volume",
            WeightsMode::Artifact => "artifact",
        };
        let volume =
            if matches!(entry.mode, WeightsMode::Bake | WeightsMode::Artifact) || entry.volume_path == entry.path {
                String::new()
            } else {
                format!(" (volume {})", entry.volume_path)
            };
        out.push_str(&format!("  weights      {} → {}{volume} [{mode}]\n", entry.uri, entry.path));
    }
    out
}
