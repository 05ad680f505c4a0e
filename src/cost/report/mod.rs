//! Renders a [`Plan`](super::Plan): text (100 columns), JSON (stable schema),
//! Markdown (pull-request comment) and a self-contained HTML page with SVG
//! charts. Pure functions of the plan, so they snapshot-test.

pub mod html;
pub mod json;
pub mod markdown;
pub mod text;

use super::Plan;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Text,
    Json,
    Markdown,
    Html,
}

pub fn render(plan: &Plan, format: Format) -> String {
    match format {
        Format::Text => text::render(plan),
        Format::Json => json::render(plan),
        Format::Markdown => markdown::render(plan),
        Format::Html => html::render(plan),
    }
}

/// A parameter's value in its unit, for the assumptions list.
pub fn param_value(key: &str, value: f64) -> String {
    let rate_keys = [
        "registry_bandwidth",
        "layer_bandwidth",
        "unpack_gzip",
        "unpack_zstd",
        "unpack_none",
        "disk_read",
        "disk_write",
        "page_cache_read",
        "volume_read",
        "volume_write",
        "source_bandwidth",
        "sha256",
        "compress_gzip",
        "compress_zstd",
        "push_bandwidth",
        "import_rate",
        "compile_rate",
    ];
    if rate_keys.contains(&key) {
        format!("{}/s", super::decision::size(value as u64))
    } else if key.ends_with("_compressed") || key.ends_with("_uncompressed") || key.ends_with("_bytes") {
        super::decision::size(value as u64)
    } else if key.ends_with("_seconds") {
        format!("{value} s")
    } else {
        let text = format!("{value:.2}");
        text.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Greedy word wrap at `width` columns, continuation lines indented by `indent`.
pub fn wrap(text: &str, width: usize, indent: usize) -> String {
    let mut out = String::new();
    let mut line = String::new();
    for word in text.split(' ') {
        let used = line.chars().count();
        if used > 0 && used + 1 + word.chars().count() > width {
            out.push_str(&line);
            out.push('\n');
            line = " ".repeat(indent);
        } else if used > 0 && !line.trim().is_empty() {
            line.push(' ');
        }
        line.push_str(word);
    }
    out.push_str(&line);
    out
}

/// The labels and values shown for the cold-start terms, in stacking order.
pub const TERMS: [&str; 7] = ["pull", "unpack", "prefetch", "app start", "imports", "import overlap", "load"];

pub fn term_values(terms: &crate::pricing::model::Terms) -> [f64; 7] {
    [terms.pull, terms.unpack, terms.prefetch, terms.app_start, terms.imports, terms.import_overlap, terms.load]
}
