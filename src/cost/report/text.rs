//! The text report: compact tables that fit 100 columns.

use super::{param_value, term_values, wrap};
use crate::cost::decision::{seconds, size};
use crate::cost::Plan;

const WIDTH: usize = 100;

pub fn render(plan: &Plan) -> String {
    let mut out = String::new();
    let target = plan.target.as_str();
    let title = format!("imgbake plan: {} ({}), target {target}, profile {}", plan.name, plan.config, plan.profile);
    out.push_str(&format!("{}\n", wrap(&title, WIDTH, 2)));
    let scale = if plan.min_replicas == 0 { "scale to zero" } else { "warm pool" };
    out.push_str(&format!(
        "replicas {}..{} ({scale}: {} cold starts/week), weights updates {}/week, volume {}\n",
        plan.min_replicas,
        plan.max_replicas,
        plan.cold_starts_per_week,
        plan.weights_updates_per_week,
        if plan.shared_volume { "shared" } else { "per replica" }
    ));
    out.push_str(&format!("{}\n", wrap(&format!("base {}: {}", plan.base.image, plan.base.source), WIDTH, 2)));

    out.push_str("\nDecision per weights source\n");
    if plan.decisions.is_empty() {
        out.push_str("  (no weights sources)\n");
    }
    for decision in &plan.decisions {
        out.push_str(&format!("  {}\n", wrap(&decision.reason, WIDTH - 2, 4)));
    }

    // Three options in columns of 22, four (with artifact) in columns of 16: within 100 columns.
    let column = if plan.options.len() > 3 { 16 } else { 22 };
    let row = |label: &str, values: Vec<String>| {
        let cells: String = values.iter().map(|v| format!("{v:>column$}")).collect();
        format!("{label:<34}{cells}\n")
    };
    out.push_str(&format!("\n{}", row("", plan.options.iter().map(|o| o.name.to_string()).collect())));
    let each = |f: &dyn Fn(&crate::cost::options::OptionPlan) -> String| plan.options.iter().map(f).collect::<Vec<_>>();
    out.push_str(&row(
        "image compressed / unpacked",
        each(&|o| format!("{} / {}", size(o.image_compressed), size(o.image_uncompressed))),
    ));
    out.push_str(&row("on the volume", each(&|o| size(o.volume_bytes))));
    if plan.options.iter().any(|o| o.artifact_bytes > 0) {
        out.push_str(&row("ModelPack artifacts", each(&|o| size(o.artifact_bytes))));
    }
    out.push_str(&row("pushed when code changes", each(&|o| size(o.push_code_change))));
    out.push_str(&row("pushed when weights change", each(&|o| size(o.push_weights_change))));
    out.push_str(&row("build, empty cache", each(&|o| seconds(o.build_seconds))));
    out.push_str(&row("CI rebuild, registry cache", each(&|o| seconds(o.ci_rebuild_unchanged.total()))));
    out.push_str(&row("  … a weights file changed", each(&|o| seconds(o.ci_rebuild_weights_file.total()))));
    for (id, label) in [
        ("new_node", "cold start: new node"),
        ("cached_base", "cold start: base+deps cached"),
        ("cold_volume", "cold start: new node, cold volume"),
    ] {
        out.push_str(&row(label, each(&|o| o.scenario(id).map(|s| seconds(s.total)).unwrap_or_else(|| "-".into()))));
    }
    out.push_str(&format!("\n{:<24}{:>10}{:>22}{:>22}{:>22}\n", "Storage", "replicas", "registry", "nodes", "volume"));
    for option in &plan.options {
        for storage in &option.storage {
            out.push_str(&format!(
                "  {:<22}{:>10}{:>22}{:>22}{:>22}\n",
                option.name,
                storage.replicas,
                size(storage.registry),
                size(storage.nodes),
                size(storage.volume)
            ));
        }
    }
    // The option's name (8 columns; 9 for `artifact`), then the scenario.
    let name_width = plan.options.iter().map(|o| o.name.len() + 1).max().unwrap_or(0).max(8);
    let label_width = 36;
    out.push_str(&format!(
        "\n{:<width$}{:>7}{:>7}{:>9}{:>7}{:>8}{:>7}{:>8}\n",
        "Cold-start terms (s)",
        "pull",
        "unpack",
        "prefetch",
        "app",
        "imports",
        "load",
        "total",
        width = 2 + name_width + label_width
    ));
    for option in &plan.options {
        for scenario in &option.cold_starts {
            let v = term_values(&scenario.terms);
            out.push_str(&format!(
                // The import-overlap term (always 0 with imgbake's hook) is in
                // the JSON and Markdown reports; the total counts it.
                "  {:<name_width$}{:<label_width$}{:>7.1}{:>7.1}{:>9.1}{:>7.1}{:>8.1}{:>7.1}{:>8.1}\n",
                option.name, scenario.label, v[0], v[1], v[2], v[3], v[4], v[6], scenario.total
            ));
        }
    }

    out.push_str("\nLayers of the auto option\n");
    if let Some(auto) = plan.options.iter().find(|o| o.name == "auto") {
        for layer in &auto.layers {
            let codec = format!("{:?}", layer.codec).to_lowercase();
            let estimate = if layer.exact { "" } else { " (estimated)" };
            out.push_str(&format!(
                "  {:<46}{:>12}{:>12}  {codec}{estimate}\n",
                truncate(&layer.what, 46),
                size(layer.uncompressed),
                size(layer.compressed)
            ));
        }
    }
    out.push_str(&format!(
        "\nLayer codecs (runtime unpacks {}): image pulled and unpacked on a new node (s)\n",
        plan.runtime_codecs.codecs.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
    ));
    for layer in &plan.layers {
        let alternatives = layer.codec_choice.as_ref().map(|choice| {
            choice
                .alternatives
                .iter()
                .map(|a| format!("{} {:.2}", a.codec.as_str(), a.pull_unpack_seconds))
                .collect::<Vec<_>>()
                .join("  ")
        });
        out.push_str(&format!(
            "  {:<40}{:<6}{}\n",
            truncate(&layer.what, 40),
            layer.codec.as_str(),
            alternatives.unwrap_or_default()
        ));
    }
    out.push_str("\nWeights sources\n");
    for source in &plan.sources {
        let line = format!(
            "{} {}: {} files, {}, zstd ratio {:.2} ({})",
            source.origin,
            source.uri,
            source.files,
            size(source.bytes),
            source.ratio,
            source.ratio_source
        );
        out.push_str(&format!("  {}\n", wrap(&line, WIDTH - 2, 4)));
    }
    if !plan.notes.is_empty() {
        out.push_str("\nNotes\n");
        for note in &plan.notes {
            out.push_str(&format!("  {}\n", wrap(note, WIDTH - 2, 4)));
        }
    }
    out.push_str(&format!("\nAssumptions (profile {})\n", plan.profile));
    for assumption in &plan.assumptions {
        let line =
            format!("{} = {}: {}", assumption.key, param_value(&assumption.key, assumption.value), assumption.source);
        out.push_str(&format!("  {}\n", wrap(&line, WIDTH - 2, 4)));
    }
    out
}

fn truncate(text: &str, width: usize) -> String {
    if text.chars().count() <= width {
        text.to_string()
    } else {
        let mut cut: String = text.chars().take(width - 1).collect();
        cut.push('…');
        cut
    }
}
