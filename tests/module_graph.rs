//! The module tree reads as the data flow: config → spec → resolve → lock →
//! layout (the ImagePlan) → {execute | dockerfile | cost}, with `commands`
//! on top; `pricing` (the cost model's primitives) sits below layout, read
//! by both. This test reads every `crate::X` path in `src/` (code, not
//! comments) and fails on an import cycle between top-level modules, and on
//! an edge that runs against the flow.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Top-level modules → the top-level modules their code names.
fn edges() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let pattern = regex::Regex::new(r"crate::([a-z_]+)").unwrap();
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for entry in walkdir::WalkDir::new(&src).into_iter().filter_map(Result::ok) {
        let path = entry.path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let relative = path.strip_prefix(&src).unwrap();
        let first = relative.components().next().unwrap().as_os_str().to_string_lossy().into_owned();
        let module = first.trim_end_matches(".rs").to_string();
        if module == "main" || module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(path).unwrap();
        let targets = graph.entry(module.clone()).or_default();
        for line in text.lines().filter(|l| !l.trim_start().starts_with("//")) {
            for found in pattern.captures_iter(line) {
                if found[1] != module {
                    targets.insert(found[1].to_string());
                }
            }
        }
    }
    graph
}

/// A cycle through `start`, if there is one.
fn cycle_from(graph: &BTreeMap<String, BTreeSet<String>>, start: &str) -> Option<Vec<String>> {
    fn walk(
        graph: &BTreeMap<String, BTreeSet<String>>,
        node: &str,
        start: &str,
        path: &mut Vec<String>,
        seen: &mut BTreeSet<String>,
    ) -> bool {
        for next in graph.get(node).into_iter().flatten() {
            if next == start {
                path.push(next.clone());
                return true;
            }
            if seen.insert(next.clone()) {
                path.push(next.clone());
                if walk(graph, next, start, path, seen) {
                    return true;
                }
                path.pop();
            }
        }
        false
    }
    let mut path = vec![start.to_string()];
    walk(graph, start, start, &mut path, &mut BTreeSet::new()).then_some(path)
}

/// Edges against the flow that are known debt, each with why; removed from
/// the graph before the checks, and checked to still exist (so the
/// exception goes once the debt is paid). None now: `layout → cost`
/// (`compression = "auto"` priced codecs with the cost model, which reads
/// the ImagePlan) was paid by moving the pricing primitives into `pricing`,
/// below layout.
const KNOWN_DEBT: &[(&str, &str)] = &[];

fn edges_without_debt() -> BTreeMap<String, BTreeSet<String>> {
    let mut graph = edges();
    for (from, to) in KNOWN_DEBT {
        graph.get_mut(*from).map(|targets| targets.remove(*to));
    }
    graph
}

#[test]
fn known_debt_is_still_there() {
    let graph = edges();
    for (from, to) in KNOWN_DEBT {
        assert!(
            graph.get(*from).is_some_and(|targets| targets.contains(*to)),
            "{from} → {to} is gone: remove it from KNOWN_DEBT"
        );
    }
}

#[test]
fn top_level_modules_have_no_import_cycle() {
    let graph = edges_without_debt();
    assert!(graph.contains_key("layout") && graph.contains_key("execute"), "{graph:?}");
    let cycles: Vec<String> = graph.keys().filter_map(|m| cycle_from(&graph, m)).map(|c| c.join(" → ")).collect();
    assert!(cycles.is_empty(), "import cycles:\n{}", cycles.join("\n"));
}

#[test]
fn edges_follow_the_data_flow() {
    let graph = edges_without_debt();
    // Each module, and what it must never name: the stages after it.
    let later = |stages: &[&str]| stages.iter().map(|s| s.to_string()).collect::<BTreeSet<String>>();
    let rules = [
        ("spec", later(&["config", "resolve", "lock", "layout", "execute", "dockerfile", "cost", "commands"])),
        ("config", later(&["resolve", "lock", "layout", "execute", "dockerfile", "cost", "commands"])),
        ("resolve", later(&["layout", "execute", "dockerfile", "cost", "commands"])),
        ("lock", later(&["resolve", "layout", "execute", "dockerfile", "cost", "commands"])),
        ("layout", later(&["execute", "dockerfile", "cost", "commands"])),
        ("execute", later(&["dockerfile", "cost", "commands"])),
        ("cost", later(&["execute", "dockerfile", "commands"])),
        // The pricing primitives (estimates, profiles, the terms) sit below
        // the ImagePlan: layout prices codecs with them, cost prices the plan.
        ("pricing", later(&["layout", "execute", "dockerfile", "cost", "commands"])),
        // Plumbing (atomic writes, retries, HTTP clients, error reports) names no stage.
        (
            "plumbing",
            later(&[
                "spec",
                "config",
                "resolve",
                "lock",
                "layout",
                "execute",
                "dockerfile",
                "cost",
                "commands",
                "deps",
                "image",
                "registry",
                "runtime",
                "weights",
            ]),
        ),
        // The prefetch hook shares only the manifest types with the build.
        ("runtime", later(&["config", "resolve", "lock", "layout", "execute", "dockerfile", "cost", "commands"])),
    ];
    let mut wrong = Vec::new();
    for (module, forbidden) in rules {
        for target in graph.get(module).into_iter().flatten().filter(|t| forbidden.contains(*t)) {
            wrong.push(format!("{module} → {target}"));
        }
    }
    assert!(wrong.is_empty(), "edges against the flow: {wrong:?}\n{graph:#?}");
}
