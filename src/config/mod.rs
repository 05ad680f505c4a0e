//! Config loading: find the file, tell its format by content, parse it into a
//! position-aware tree, and turn that into one normalized [`Spec`].
//!
//! `cerebrium.toml` and Truss `config.yaml` have their own loaders; the
//! `[imgbake]` / `imgbake:` extension is read by one shared loader.

pub mod cerebrium;
pub mod command;
pub mod diagnostics;
pub mod extension;
pub mod libyaml;
pub mod reader;
pub mod requirement;
pub mod suggest;
pub mod toml_tree;
pub mod tree;
pub mod truss;
pub mod weights;
pub mod yaml_construct;
pub mod yaml_load;
pub mod yaml_quirks;
pub mod yaml_resolve;
pub mod yaml_tree;

use crate::spec::{ConfigFormat, Spec};
use diagnostics::{Diagnostic, Diagnostics};
use std::path::{Path, PathBuf};

/// File names looked for, in order, when a directory is given.
pub const CONFIG_FILE_NAMES: [&str; 2] = ["cerebrium.toml", "config.yaml"];

/// The result of loading: a Spec when there were no errors, and every diagnostic.
#[derive(Debug)]
pub struct Loaded {
    pub spec: Option<Spec>,
    pub diagnostics: Vec<Diagnostic>,
}

/// Finds the config: a file path as given, or the first of
/// [`CONFIG_FILE_NAMES`] inside a directory.
pub fn find(path: &Path) -> Result<PathBuf, Diagnostic> {
    if path.is_dir() {
        for name in CONFIG_FILE_NAMES {
            let candidate = path.join(name);
            if candidate.is_file() {
                return Ok(candidate);
            }
        }
        return Err(Diagnostic::error(path, None, "no cerebrium.toml or config.yaml in this directory")
            .with_hint("pass the config file's path, or run imgbake in the project directory"));
    }
    if path.is_file() {
        return Ok(path.to_path_buf());
    }
    Err(Diagnostic::error(path, None, "no such file or directory"))
}

/// Tells TOML from YAML by content: a TOML file has `[section]` headers or
/// `key = value` lines; YAML has `key: value`. The name only breaks ties.
pub fn detect_format(path: &Path, text: &str) -> ConfigFormat {
    let mut toml_votes = 0;
    let mut yaml_votes = 0;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('[') && line.ends_with(']') && !line.contains(": ") {
            toml_votes += 2;
        } else if let Some((key, _)) = line.split_once('=') {
            if !key.contains(':') && !key.trim().contains(' ') {
                toml_votes += 1;
                continue;
            }
        }
        if line.starts_with("- ") || line.split_once(':').is_some_and(|(k, _)| !k.contains('=') && !k.contains('"')) {
            yaml_votes += 1;
        }
    }
    match toml_votes.cmp(&yaml_votes) {
        std::cmp::Ordering::Greater => ConfigFormat::Cerebrium,
        std::cmp::Ordering::Less => ConfigFormat::Truss,
        std::cmp::Ordering::Equal => {
            let is_toml = path.extension().is_some_and(|e| e == "toml");
            if is_toml {
                ConfigFormat::Cerebrium
            } else {
                ConfigFormat::Truss
            }
        }
    }
}

/// Loads a config file or project directory into a Spec.
pub fn load(path: &Path) -> Loaded {
    let file = match find(path) {
        Ok(file) => file,
        Err(diagnostic) => return Loaded { spec: None, diagnostics: vec![diagnostic] },
    };
    let text = match std::fs::read_to_string(&file) {
        Ok(text) => text,
        Err(err) => {
            let diagnostic = Diagnostic::error(&file, None, format!("cannot read the file: {err}"));
            return Loaded { spec: None, diagnostics: vec![diagnostic] };
        }
    };
    load_text(&file, &text)
}

/// Loads config text as if read from `file` (relative paths resolve against its directory).
pub fn load_text(file: &Path, text: &str) -> Loaded {
    let project_dir = file
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .map(Path::to_path_buf)
        .unwrap_or_else(|| PathBuf::from("."));
    let diags = Diagnostics::new(file);
    let (spec, diags) = match detect_format(file, text) {
        ConfigFormat::Cerebrium => match toml_tree::parse(file, text) {
            Ok(tree) => cerebrium::load(&tree, &project_dir, diags),
            Err(diagnostic) => (None, Diagnostics { items: vec![diagnostic], ..diags }),
        },
        ConfigFormat::Truss => match yaml_tree::parse(file, text) {
            Ok((tree, warnings)) => truss::load(&tree, &project_dir, Diagnostics { items: warnings, ..diags }),
            Err(diagnostic) => (None, Diagnostics { items: vec![diagnostic], ..diags }),
        },
    };
    let failed = diags.has_errors();
    let mut diagnostics = diags.items;
    diagnostics.sort_by_key(|d| (d.span.is_none(), d.span));
    Loaded { spec: if failed { None } else { spec }, diagnostics }
}

/// For loader tests: the Spec of `text`, or a panic listing every diagnostic.
#[cfg(test)]
pub(crate) fn spec_of(file: &str, text: &str) -> Spec {
    let loaded = load_text(Path::new(file), text);
    let diagnostics: Vec<String> = loaded.diagnostics.iter().map(|d| d.to_string()).collect();
    loaded.spec.unwrap_or_else(|| panic!("{diagnostics:#?}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_is_told_by_content_not_name() {
        let toml = "[cerebrium.deployment]\nname = \"x\"\n";
        let yaml = "model_name: x\nrequirements:\n  - torch\n";
        assert_eq!(detect_format(Path::new("config.yaml"), toml), ConfigFormat::Cerebrium);
        assert_eq!(detect_format(Path::new("cerebrium.toml"), yaml), ConfigFormat::Truss);
        assert_eq!(detect_format(Path::new("x.conf"), "name = \"a\"\n"), ConfigFormat::Cerebrium);
    }
}
