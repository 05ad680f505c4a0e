//! The HTML report: one self-contained page (inline CSS and SVG, no script)
//! with stacked bars of the cold-start terms per option and scenario, and the
//! image size per option.

use super::{markdown, param_value, term_values, TERMS};
use crate::cost::decision::{seconds, size};
use crate::cost::Plan;

const COLOURS: [&str; 7] = ["#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd", "#e377c2", "#8c564b", "#d62728"];
const CHART_WIDTH: f64 = 900.0;
const LABEL_WIDTH: f64 = 290.0;
const BAR_HEIGHT: f64 = 22.0;

fn escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

fn cold_start_chart(plan: &Plan) -> String {
    let rows: Vec<(String, [f64; 7], f64)> = plan
        .options
        .iter()
        .flat_map(|o| {
            o.cold_starts.iter().map(move |s| (format!("{}: {}", o.name, s.label), term_values(&s.terms), s.total))
        })
        .collect();
    let longest = rows.iter().map(|r| r.2).fold(1e-9, f64::max);
    let scale = (CHART_WIDTH - LABEL_WIDTH - 70.0) / longest;
    let height = 40.0 + rows.len() as f64 * (BAR_HEIGHT + 8.0);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{CHART_WIDTH}\" height=\"{height}\" role=\"img\" aria-label=\"cold-start terms\">\n"
    );
    for (index, label) in TERMS.iter().enumerate() {
        let x = LABEL_WIDTH + index as f64 * 100.0;
        svg.push_str(&format!(
            "<rect x=\"{x}\" y=\"4\" width=\"12\" height=\"12\" fill=\"{}\"/><text x=\"{}\" y=\"15\" font-size=\"12\">{label}</text>\n",
            COLOURS[index],
            x + 16.0
        ));
    }
    for (row, (label, values, total)) in rows.iter().enumerate() {
        let y = 30.0 + row as f64 * (BAR_HEIGHT + 8.0);
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" font-size=\"13\" text-anchor=\"end\">{}</text>\n",
            LABEL_WIDTH - 8.0,
            y + 16.0,
            escape(label)
        ));
        let mut x = LABEL_WIDTH;
        for (index, value) in values.iter().enumerate() {
            let width = value.max(0.0) * scale;
            if width > 0.0 {
                svg.push_str(&format!(
                    "<rect x=\"{x:.1}\" y=\"{y}\" width=\"{width:.1}\" height=\"{BAR_HEIGHT}\" fill=\"{}\"><title>{}: {value:.1} s</title></rect>\n",
                    COLOURS[index], TERMS[index]
                ));
            }
            x += width;
        }
        svg.push_str(&format!(
            "<text x=\"{:.1}\" y=\"{}\" font-size=\"13\">{}</text>\n",
            x + 6.0,
            y + 16.0,
            seconds(*total)
        ));
    }
    svg.push_str("</svg>\n");
    svg
}

fn size_chart(plan: &Plan) -> String {
    let largest =
        plan.options.iter().map(|o| o.image_uncompressed.max(o.volume_bytes)).max().unwrap_or(1).max(1) as f64;
    let scale = (CHART_WIDTH - LABEL_WIDTH - 90.0) / largest;
    let height = 40.0 + plan.options.len() as f64 * 3.0 * (BAR_HEIGHT - 4.0) + plan.options.len() as f64 * 10.0;
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{CHART_WIDTH}\" height=\"{height}\" role=\"img\" aria-label=\"image size\">\n"
    );
    let series = [("image compressed", "#1f77b4"), ("image unpacked", "#aec7e8"), ("on the volume", "#2ca02c")];
    for (index, (label, colour)) in series.iter().enumerate() {
        let x = LABEL_WIDTH + index as f64 * 150.0;
        svg.push_str(&format!(
            "<rect x=\"{x}\" y=\"4\" width=\"12\" height=\"12\" fill=\"{colour}\"/><text x=\"{}\" y=\"15\" font-size=\"12\">{label}</text>\n",
            x + 16.0
        ));
    }
    let mut y = 26.0;
    for option in &plan.options {
        svg.push_str(&format!(
            "<text x=\"{}\" y=\"{}\" font-size=\"13\" text-anchor=\"end\">{}</text>\n",
            LABEL_WIDTH - 8.0,
            y + 26.0,
            option.name
        ));
        for (bytes, (label, colour)) in
            [option.image_compressed, option.image_uncompressed, option.volume_bytes].iter().zip(series)
        {
            let width = (*bytes as f64 * scale).max(1.0);
            svg.push_str(&format!(
                "<rect x=\"{LABEL_WIDTH}\" y=\"{y}\" width=\"{width:.1}\" height=\"{}\" fill=\"{colour}\"><title>{label}: {}</title></rect>\n",
                BAR_HEIGHT - 6.0,
                size(*bytes)
            ));
            svg.push_str(&format!(
                "<text x=\"{:.1}\" y=\"{}\" font-size=\"12\">{}</text>\n",
                LABEL_WIDTH + width + 6.0,
                y + 12.0,
                size(*bytes)
            ));
            y += BAR_HEIGHT - 4.0;
        }
        y += 10.0;
    }
    svg.push_str("</svg>\n");
    svg
}

/// Turns the Markdown report's tables into HTML tables (the one Markdown
/// shape we emit: header row, rule row, body rows), so both show the same
/// numbers; hand-written because the input is our own fixed format.
fn tables(markdown: &str) -> String {
    let mut out = String::new();
    let mut in_table = false;
    let mut header = true;
    for line in markdown.lines() {
        if line.starts_with('|') {
            if line.starts_with("|---") {
                continue;
            }
            if !in_table {
                out.push_str("<table>\n");
                in_table = true;
                header = true;
            }
            let cells: Vec<&str> = line.trim_matches('|').split(" | ").collect();
            let tag = if header { "th" } else { "td" };
            out.push_str("<tr>");
            for cell in cells {
                out.push_str(&format!("<{tag}>{}</{tag}>", escape(cell.trim().trim_matches('`'))));
            }
            out.push_str("</tr>\n");
            header = false;
            continue;
        }
        if in_table {
            out.push_str("</table>\n");
            in_table = false;
        }
        if let Some(title) = line.strip_prefix("### ") {
            out.push_str(&format!("<h2>{}</h2>\n", escape(title)));
        } else if let Some(item) = line.strip_prefix("- ") {
            out.push_str(&format!("<p class=\"item\">{}</p>\n", escape(&item.replace("**", "").replace('`', ""))));
        }
    }
    if in_table {
        out.push_str("</table>\n");
    }
    out
}

pub fn render(plan: &Plan) -> String {
    let target = plan.target.as_str();
    let body = tables(&markdown::render(plan));
    let mut assumptions = String::from("<table>\n<tr><th>parameter</th><th>value</th><th>source</th></tr>\n");
    for assumption in &plan.assumptions {
        assumptions.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>\n",
            assumption.key,
            escape(&param_value(&assumption.key, assumption.value)),
            escape(&assumption.source)
        ));
    }
    // The Markdown's own assumptions table is inside <details>; ours replaces it.
    let body = match body.rfind("<table>\n<tr><th>parameter</th>") {
        Some(index) => body[..index].to_string(),
        None => body,
    };
    format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>imgbake plan: {name}</title>\n<style>\n\
body {{ font-family: sans-serif; margin: 24px; color: #222; background: #fff; max-width: 1000px; }}\n\
table {{ border-collapse: collapse; margin: 8px 0 16px; }}\n\
td, th {{ border: 1px solid #ccc; padding: 3px 8px; text-align: right; font-size: 13px; }}\n\
td:first-child, th:first-child {{ text-align: left; }}\n\
h1 {{ font-size: 22px; }} h2 {{ font-size: 17px; margin-top: 24px; }}\n\
.item {{ background: #f3f6fa; border-left: 4px solid #1f77b4; padding: 6px 10px; }}\n\
</style>\n</head>\n<body>\n<h1>imgbake plan: {name}</h1>\n<p>{config} · target {target} · profile {profile}</p>\n\
<h2>Cold start, by term</h2>\n{cold}\n<h2>Image size per option</h2>\n{sizes}\n{body}\n<h2>Assumptions (profile {profile})</h2>\n{assumptions}</table>\n</body>\n</html>\n",
        name = escape(&plan.name),
        config = escape(&plan.config),
        profile = escape(&plan.profile),
        cold = cold_start_chart(plan),
        sizes = size_chart(plan),
    )
}
