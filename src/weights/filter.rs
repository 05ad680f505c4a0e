//! allow_patterns / ignore_patterns with huggingface_hub's semantics
//! (`filter_repo_objects`): fnmatch-style, where `*` also matches `/`, and a
//! pattern ending in `/` means everything in that folder.

use globset::{GlobBuilder, GlobSet, GlobSetBuilder};

#[derive(Debug, Clone)]
pub struct PathFilter {
    allow: Option<GlobSet>,
    ignore: Option<GlobSet>,
}

impl PathFilter {
    /// `Err` names the pattern that is not a valid glob.
    pub fn new(allow: &[String], ignore: &[String]) -> Result<PathFilter, String> {
        Ok(PathFilter { allow: set(allow)?, ignore: set(ignore)? })
    }

    pub fn matches(&self, path: &str) -> bool {
        self.allow.as_ref().is_none_or(|set| set.is_match(path))
            && !self.ignore.as_ref().is_some_and(|set| set.is_match(path))
    }
}

fn set(patterns: &[String]) -> Result<Option<GlobSet>, String> {
    if patterns.is_empty() {
        return Ok(None);
    }
    let mut builder = GlobSetBuilder::new();
    for pattern in patterns {
        let text = if pattern.ends_with('/') { format!("{pattern}*") } else { pattern.clone() };
        let glob = GlobBuilder::new(&text)
            .literal_separator(false)
            .build()
            .map_err(|err| format!("bad pattern `{pattern}`: {err}"))?;
        builder.add(glob);
    }
    builder.build().map(Some).map_err(|err| format!("bad patterns: {err}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(allow: &[&str], ignore: &[&str]) -> PathFilter {
        let owned = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        PathFilter::new(&owned(allow), &owned(ignore)).unwrap()
    }

    #[test]
    fn star_crosses_folders_and_a_trailing_slash_means_the_folder() {
        let f = filter(&["*.json", "unet/"], &["*.onnx"]);
        assert!(f.matches("config.json"));
        assert!(f.matches("text_encoder/config.json"));
        assert!(f.matches("unet/diffusion_pytorch_model.bin"));
        assert!(!f.matches("model.safetensors"));
        let f = filter(&[], &["*.onnx"]);
        assert!(f.matches("model.safetensors"));
        assert!(!f.matches("onnx/model.onnx"));
    }
}
