//! The Markdown report, for a pull-request comment.

use super::{param_value, term_values, TERMS};
use crate::cost::decision::{seconds, size};
use crate::cost::Plan;

pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let target = plan.target.as_str();
    out.push_str(&format!("## imgbake plan: `{}`\n\n", plan.name));
    out.push_str(&format!(
        "`{}` · target **{target}** · profile **{}** · replicas {}..{} ({} cold starts/week) · weights updates {}/week · volume {}\n\n",
        plan.config,
        plan.profile,
        plan.min_replicas,
        plan.max_replicas,
        plan.cold_starts_per_week,
        plan.weights_updates_per_week,
        if plan.shared_volume { "shared" } else { "per replica" }
    ));
    out.push_str("### Decision\n\n");
    if plan.decisions.is_empty() {
        out.push_str("No weights sources.\n");
    }
    for decision in &plan.decisions {
        // The reason starts with the placement; bold it and name the source.
        let rest = decision.reason.split_once(": ").map(|(_, rest)| rest).unwrap_or(&decision.reason);
        let configured = if decision.reason.contains(" (configured): ") { " (configured)" } else { "" };
        out.push_str(&format!("- **{}**{configured} `{}`: {rest}\n", decision.chosen.as_str(), decision.uri));
    }
    let names: Vec<&str> = plan.options.iter().map(|o| o.name).collect();
    out.push_str(&format!("\n### Options\n\n| | {} |\n|---|{}\n", names.join(" | "), "---:|".repeat(names.len())));
    let row = |label: &str, f: &dyn Fn(&crate::cost::options::OptionPlan) -> String| {
        let cells: Vec<String> = plan.options.iter().map(f).collect();
        format!("| {label} | {} |\n", cells.join(" | "))
    };
    out.push_str(&row("image compressed", &|o| size(o.image_compressed)));
    out.push_str(&row("image unpacked", &|o| size(o.image_uncompressed)));
    out.push_str(&row("on the volume", &|o| size(o.volume_bytes)));
    if plan.options.iter().any(|o| o.artifact_bytes > 0) {
        out.push_str(&row("ModelPack artifacts", &|o| size(o.artifact_bytes)));
    }
    out.push_str(&row("pushed when code changes", &|o| size(o.push_code_change)));
    out.push_str(&row("pushed when weights change", &|o| size(o.push_weights_change)));
    out.push_str(&row("build, empty cache", &|o| seconds(o.build_seconds)));
    out.push_str(&row("CI rebuild, registry cache", &|o| seconds(o.ci_rebuild_unchanged.total())));
    out.push_str(&row("… a weights file changed", &|o| seconds(o.ci_rebuild_weights_file.total())));
    for (id, label) in [
        ("new_node", "cold start: new node"),
        ("cached_base", "cold start: base+deps cached"),
        ("cold_volume", "cold start: new node, cold volume"),
    ] {
        out.push_str(&row(label, &|o| o.scenario(id).map(|s| seconds(s.total)).unwrap_or_else(|| "–".into())));
    }
    if let Some(last) = plan.options[0].storage.last() {
        let label = format!("registry / nodes / volume at {} replicas", last.replicas);
        out.push_str(&row(&label, &|o| {
            let s = o.storage.last().expect("one replica count at least");
            format!("{} / {} / {}", size(s.registry), size(s.nodes), size(s.volume))
        }));
    }
    out.push_str(&format!(
        "\n### Cold-start terms (seconds)\n\n| option | scenario | {} | total |\n",
        TERMS.join(" | ")
    ));
    out.push_str(&format!("|---|---|{}---:|\n", "---:|".repeat(TERMS.len())));
    for option in &plan.options {
        for scenario in &option.cold_starts {
            let values: Vec<String> = term_values(&scenario.terms).iter().map(|v| format!("{v:.1}")).collect();
            out.push_str(&format!(
                "| {} | {} | {} | {:.1} |\n",
                option.name,
                scenario.label,
                values.join(" | "),
                scenario.total
            ));
        }
    }
    out.push_str("\n### Weights sources\n\n| source | files | size | zstd ratio | how the ratio is known |\n|---|---:|---:|---:|---|\n");
    for source in &plan.sources {
        out.push_str(&format!(
            "| `{}` {} | {} | {} | {:.2} | {} |\n",
            source.origin,
            source.uri,
            source.files,
            size(source.bytes),
            source.ratio,
            source.ratio_source
        ));
    }
    if !plan.notes.is_empty() {
        out.push_str("\n### Notes\n\n");
        for note in &plan.notes {
            out.push_str(&format!("- {note}\n"));
        }
    }
    out.push_str(&format!(
        "\n<details><summary>Assumptions (profile {})</summary>\n\n| parameter | value | source |\n|---|---:|---|\n",
        plan.profile
    ));
    for assumption in &plan.assumptions {
        out.push_str(&format!(
            "| `{}` | {} | {} |\n",
            assumption.key,
            param_value(&assumption.key, assumption.value),
            assumption.source.replace('|', "\\|")
        ));
    }
    out.push_str("\n</details>\n");
    out
}
