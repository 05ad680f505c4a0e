//! "Did you mean …?" for misspelt or misplaced keys.
//!
//! Real configs contain `[cerebrium.pip.dependancies]` (words swapped and
//! misspelt) and `[cerebrium.build] use_uv` (a key in the wrong section), so a
//! plain edit distance is not enough: dotted paths are also compared with their
//! segments sorted, and a key that exists in another section is pointed there.

/// The closest candidate to `unknown`, if any is close enough to be a likely typo.
pub fn closest<'a>(unknown: &str, candidates: impl IntoIterator<Item = &'a str>) -> Option<&'a str> {
    let mut best: Option<(&str, f64)> = None;
    for candidate in candidates {
        let score = similarity(unknown, candidate);
        if score >= 0.8 && best.is_none_or(|(_, s)| score > s) {
            best = Some((candidate, score));
        }
    }
    best.map(|(c, _)| c)
}

fn similarity(a: &str, b: &str) -> f64 {
    let a = a.to_ascii_lowercase();
    let b = b.to_ascii_lowercase();
    let direct = strsim::jaro_winkler(&a, &b);
    let sorted = |s: &str| {
        let mut parts: Vec<&str> = s.split('.').collect();
        parts.sort_unstable();
        parts.join(".")
    };
    let reordered = if a.contains('.') { strsim::jaro_winkler(&sorted(&a), &sorted(&b)) } else { 0.0 };
    direct.max(reordered)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_typos_and_swapped_sections() {
        let known = ["cerebrium.dependencies.pip", "cerebrium.dependencies.apt", "cerebrium.deployment"];
        assert_eq!(closest("cerebrium.pip.dependancies", known), Some("cerebrium.dependencies.pip"));
        assert_eq!(closest("cerebrium.deployement", known), Some("cerebrium.deployment"));
        assert_eq!(closest("python_verison", ["python_version", "name"]), Some("python_version"));
        assert_eq!(closest("zzz", ["python_version", "name"]), None);
    }
}
