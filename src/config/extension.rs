//! The `[imgbake]` table (TOML) / `imgbake:` key (YAML): imgbake's own settings,
//! read by one loader for both config formats.

use super::reader::{Reader, Section};
use super::weights::{self, WeightsDraft};
use crate::spec::{Compression, Target, WeightsLayout, WeightsMode};
use std::path::Path;

#[derive(Debug, Clone, Default)]
pub struct Extension {
    pub target: Option<Target>,
    pub weights_mode: Option<WeightsMode>,
    pub compression: Option<Compression>,
    pub model_root: Option<String>,
    pub volume_root: Option<String>,
    pub weights_updates_per_week: Option<f64>,
    pub weights_split_size: Option<u64>,
    pub dependency_split_size: Option<u64>,
    pub artifact_repo: Option<String>,
    /// `check_entrypoint = false` turns off the check that the entrypoint's program is in the image.
    pub check_entrypoint: Option<bool>,
    /// `bytecode = false` installs Python packages without compiling `.pyc`.
    pub bytecode: Option<bool>,
    pub weights: Vec<WeightsDraft>,
}

/// Reads a string that must be one of `allowed`; an error names them all.
pub fn one_of<'a, T>(
    reader: &mut Reader<'a>,
    section: Section<'a>,
    key: &'static str,
    allowed: &[&str],
    parse: impl Fn(&str) -> Option<T>,
) -> Option<T> {
    let (text, span) = reader.string(section, key)?;
    match parse(&text) {
        Some(value) => Some(value),
        None => {
            let what = reader.describe(section, key);
            let quoted: Vec<String> = allowed.iter().map(|a| format!("\"{a}\"")).collect();
            let error =
                reader.diags.error(span, format!("{what} must be one of {}, found \"{text}\"", quoted.join(", ")));
            if let Some(close) = super::suggest::closest(&text, allowed.iter().copied()) {
                error.hint = Some(format!("did you mean \"{close}\"?"));
            }
            None
        }
    }
}

pub fn load<'a>(reader: &mut Reader<'a>, root: Section<'a>, project_dir: &Path) -> Extension {
    let section = reader.section(root, "imgbake");
    let mut extension = Extension {
        target: one_of(reader, section, "target", &Target::ALL, Target::parse),
        weights_mode: one_of(reader, section, "weights_mode", &WeightsMode::ALL, WeightsMode::parse),
        compression: one_of(reader, section, "compression", &Compression::ALL, Compression::parse),
        check_entrypoint: reader.bool(section, "check_entrypoint").map(|(b, _)| b),
        bytecode: reader.bool(section, "bytecode").map(|(b, _)| b),
        ..Extension::default()
    };
    for (key, slot) in [("model_root", &mut extension.model_root), ("volume_root", &mut extension.volume_root)] {
        if let Some((path, span)) = reader.string(section, key) {
            if path.starts_with('/') {
                *slot = Some(path.trim_end_matches('/').to_string());
            } else {
                let what = reader.describe(section, key);
                reader.diags.error(span, format!("{what} must be an absolute path, found \"{path}\""));
            }
        }
    }
    if let Some((rate, span)) = reader.float(section, "weights_updates_per_week") {
        if rate < 0.0 {
            let what = reader.describe(section, "weights_updates_per_week");
            reader.diags.error(span, format!("{what} must be 0 or more, found {rate}"));
        } else {
            extension.weights_updates_per_week = Some(rate);
        }
    }
    if let Some(mib) = super::cerebrium::int_in_range(reader, section, "weights_split_mib", 1, 1 << 20) {
        extension.weights_split_size = Some((mib as u64) << 20);
    }
    if let Some((repository, span)) = reader.string(section, "artifact_repo") {
        if repository.is_empty() || repository.contains(['@', ':']) || repository != repository.to_ascii_lowercase() {
            let what = reader.describe(section, "artifact_repo");
            reader.diags.error(span, format!("{what} must be a repository name on the push registry (lowercase, no tag or digest), found \"{repository}\"")).hint =
                Some("for example artifact_repo = \"team/models\"".to_string());
        } else {
            extension.artifact_repo = Some(repository);
        }
    }
    if let Some(mib) = super::cerebrium::int_in_range(reader, section, "dependency_split_mib", 1, 1 << 20) {
        extension.dependency_split_size = Some((mib as u64) << 20);
    }
    let Some(list) = reader.value(section, "weights") else {
        return extension;
    };
    let crate::config::tree::Value::Seq(items) = &list.value else {
        reader.type_error(section, "weights", list, "a list of weights tables ([[imgbake.weights]])");
        return extension;
    };
    for (index, node) in items.iter().enumerate() {
        let Some(item) = reader.item(section, "weights", index, node) else {
            continue;
        };
        let origin = format!("imgbake.weights[{index}]");
        let Some((uri, uri_span)) = reader.string(item, "source") else {
            if reader.value(item, "source").is_none() {
                reader.diags.error(node.span, format!("{origin} has no `source`")).hint =
                    Some("for example source = \"hf://org/name@<commit>\" or source = \"./weights\"".to_string());
            }
            continue;
        };
        let source = match weights::parse_source(&uri, project_dir) {
            Ok(source) => source,
            Err(message) => {
                reader.diags.error(uri_span, message);
                continue;
            }
        };
        let mount = reader.string(item, "mount");
        let layout = one_of(reader, item, "layout", &["plain", "hf-cache"], |t| match t {
            "plain" => Some(WeightsLayout::Plain),
            "hf-cache" => Some(WeightsLayout::HfCache),
            _ => None,
        });
        let mode = one_of(reader, item, "mode", &WeightsMode::ALL, WeightsMode::parse);
        // The layout rule for artifacts lives in layout::weights; here it gets its line and column.
        if mode.or(extension.weights_mode) == Some(WeightsMode::Artifact) {
            if let Some(why) = layout.and_then(WeightsLayout::artifact_blocker) {
                let span = reader.string(item, "layout").map(|(_, span)| span).unwrap_or(node.span);
                reader.diags.error(span, why.to_string()).hint = Some(crate::spec::ARTIFACT_HF_CACHE_HINT.to_string());
            }
        }
        if layout == Some(WeightsLayout::HfCache) && !matches!(source, crate::spec::WeightsSource::Hf { .. }) {
            reader
                .diags
                .error(uri_span, format!("layout \"hf-cache\" needs a Hugging Face source (hf://…), found `{uri}`"));
        }
        extension.weights.push(WeightsDraft {
            origin,
            uri,
            uri_span,
            source,
            mount_span: mount.as_ref().map(|(_, s)| *s).unwrap_or(node.span),
            mount: mount.map(|(m, _)| m),
            volume_in_place: false,
            allow_patterns: strings(reader.string_or_strings(item, "allow_patterns")),
            ignore_patterns: strings(reader.string_or_strings(item, "ignore_patterns")),
            secret: reader.string(item, "secret").map(|(s, _)| s),
            mode,
            layout: layout.unwrap_or(WeightsLayout::Plain),
        });
    }
    extension
}

pub fn strings(list: Option<Vec<(String, crate::config::tree::Span)>>) -> Vec<String> {
    list.unwrap_or_default().into_iter().map(|(s, _)| s).collect()
}

impl Extension {
    /// The target's paths: the config's `[imgbake]` values, else the target's defaults.
    pub fn target_settings(&self, default_target: Target) -> crate::spec::TargetSettings {
        let name = self.target.unwrap_or(default_target);
        crate::spec::TargetSettings {
            name,
            model_root: self.model_root.clone().unwrap_or_else(|| crate::spec::DEFAULT_MODEL_ROOT.to_string()),
            volume_root: self.volume_root.clone().unwrap_or_else(|| name.default_volume_root().to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::config::{load_text, spec_of};
    use std::path::Path;

    #[test]
    fn bytecode_is_on_unless_turned_off_in_either_format() {
        let toml = "[cerebrium.deployment]\nname = \"x\"\n";
        let yaml = "model_name: x\n";
        assert!(spec_of("cerebrium.toml", toml).python.bytecode);
        assert!(spec_of("config.yaml", yaml).python.bytecode);
        assert!(!spec_of("cerebrium.toml", &format!("{toml}[imgbake]\nbytecode = false\n")).python.bytecode);
        assert!(!spec_of("config.yaml", &format!("{yaml}imgbake:\n  bytecode: false\n")).python.bytecode);

        let wrong = load_text(Path::new("cerebrium.toml"), &format!("{toml}[imgbake]\nbytecode = \"no\"\n"));
        let message = wrong.diagnostics.iter().map(|d| d.to_string()).collect::<Vec<_>>().join("\n");
        assert!(wrong.spec.is_none() && message.contains("bytecode"), "{message}");
    }

    #[test]
    fn an_hf_cache_artifact_is_refused_at_its_layout_key_with_a_hint() {
        let head = "[cerebrium.deployment]\nname = \"x\"\n";
        let source = "[[imgbake.weights]]\nsource = \"hf://org/m@main\"\n";
        for (extension, entry, line) in [
            ("", "mode = \"artifact\"\nlayout = \"hf-cache\"\n", 6),
            ("[imgbake]\nweights_mode = \"artifact\"\n", "layout = \"hf-cache\"\n", 7),
        ] {
            let text = format!("{head}{extension}{source}{entry}");
            let loaded = load_text(Path::new("cerebrium.toml"), &text);
            let error = loaded.diagnostics.iter().find(|d| d.to_string().contains("mode \"artifact\""));
            let error = error.unwrap_or_else(|| panic!("{:?}", loaded.diagnostics));
            let shown = error.to_string();
            assert!(loaded.spec.is_none(), "{shown}");
            assert!(shown.contains(&format!("cerebrium.toml:{line}:10")), "{shown}");
            assert!(shown.contains("layout \"hf-cache\" cannot be used with mode \"artifact\""), "{shown}");
            assert!(error.hint.as_deref().unwrap_or_default().contains("from_pretrained"), "{shown}");
        }
        // hf-cache with auto or bake, and a plain artifact, load.
        for entry in ["layout = \"hf-cache\"\n", "mode = \"artifact\"\nlayout = \"plain\"\n"] {
            assert!(
                load_text(Path::new("cerebrium.toml"), &format!("{head}{source}{entry}")).spec.is_some(),
                "{entry}"
            );
        }
    }
}
