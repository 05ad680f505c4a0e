//! Weights entries from any config format → [`WeightsEntry`] with resolved paths.
//!
//! Sources are parsed from URIs (`hf://org/name@rev`, `s3://`, `gs://`,
//! `azure://`/`az://`, `https://`, `file://` or a local path); mount paths are
//! resolved against the target's model root, and the rules that keep the app's
//! one path valid in both modes are checked here once for all formats.

use super::diagnostics::Diagnostics;
use super::tree::Span;
use crate::spec::{TargetSettings, WeightsEntry, WeightsLayout, WeightsMode, WeightsSource};

/// An entry as read from the config, before paths are resolved.
#[derive(Debug, Clone)]
pub struct WeightsDraft {
    pub origin: String,
    pub uri: String,
    pub uri_span: Span,
    pub source: WeightsSource,
    /// A folder under the model root, or an absolute path.
    pub mount: Option<String>,
    pub mount_span: Span,
    /// Truss `model_cache` with `use_volume`: the folder is the volume itself.
    pub volume_in_place: bool,
    pub allow_patterns: Vec<String>,
    pub ignore_patterns: Vec<String>,
    pub secret: Option<String>,
    pub mode: Option<WeightsMode>,
    pub layout: WeightsLayout,
}

pub use crate::weights::source::parse_source;

/// A default mount folder when the config gives none: the repo or last path segment.
fn default_mount(source: &WeightsSource) -> String {
    let last = |s: &str| s.trim_end_matches('/').rsplit('/').next().unwrap_or("").to_string();
    let name = match source {
        WeightsSource::Hf { repo, .. } => last(repo),
        WeightsSource::S3 { bucket, prefix } | WeightsSource::Gcs { bucket, prefix } => {
            if prefix.trim_matches('/').is_empty() {
                bucket.clone()
            } else {
                last(prefix)
            }
        }
        WeightsSource::Azure { container, prefix } => {
            if prefix.trim_matches('/').is_empty() {
                container.clone()
            } else {
                last(prefix)
            }
        }
        WeightsSource::Https { url } => last(url.split('?').next().unwrap_or(url)),
        WeightsSource::Local { path } => path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
    };
    if name.is_empty() {
        "weights".to_string()
    } else {
        name
    }
}

/// True when `inner` is `outer` or below it (both absolute, '/'-separated).
pub fn is_under(inner: &str, outer: &str) -> bool {
    let outer = outer.trim_end_matches('/');
    inner == outer || inner.starts_with(&format!("{outer}/")) || outer.is_empty()
}

/// Resolves paths and checks the rules shared by every format.
pub fn finish(
    drafts: Vec<WeightsDraft>,
    target: &TargetSettings,
    default_mode: WeightsMode,
    diags: &mut Diagnostics,
) -> Vec<WeightsEntry> {
    let mut entries: Vec<(WeightsEntry, Span)> = Vec::new();
    for draft in drafts {
        let mount = draft.mount.clone().unwrap_or_else(|| default_mount(&draft.source));
        let path = if mount.starts_with('/') {
            if mount.split('/').any(|part| part == "..") {
                diags.error(draft.mount_span, format!("mount path `{mount}` must not contain `..`"));
                continue;
            }
            mount.trim_end_matches('/').to_string()
        } else {
            let clean = mount.trim_start_matches("./").trim_end_matches('/');
            if clean.is_empty() || clean.split('/').any(|part| part == ".." || part.is_empty()) {
                diags
                    .error(
                        draft.mount_span,
                        format!("mount `{mount}` must be a folder name below the model root, without `..`"),
                    )
                    .hint =
                    Some(format!("for example \"my-model\", which the app reads at {}/my-model", target.model_root));
                continue;
            }
            format!("{}/{clean}", target.model_root.trim_end_matches('/'))
        };
        // Baseten mounts each volume at the app's path itself; the others share one volume.
        let in_place = draft.volume_in_place || !target.name.has_shared_volume();
        let volume_path = if in_place {
            path.clone()
        } else {
            let folder = if mount.starts_with('/') {
                path.trim_start_matches('/').replace('/', "_")
            } else {
                mount.trim_start_matches("./").trim_end_matches('/').to_string()
            };
            match (target.name, draft.layout) {
                (crate::spec::Target::Runpod, WeightsLayout::HfCache) => {
                    format!("{}/huggingface-cache/hub", target.volume_root.trim_end_matches('/'))
                }
                (crate::spec::Target::Cerebrium, _) => {
                    format!("{}/imgbake/{folder}", target.volume_root.trim_end_matches('/'))
                }
                _ => format!("{}/{folder}", target.volume_root.trim_end_matches('/')),
            }
        };
        let mode = draft.mode.unwrap_or(default_mode);
        if mode != WeightsMode::Volume && !in_place && is_under(&path, &target.volume_root) {
            let message = format!(
                "weights path {path} is under the volume mount point {}; baked files there would be hidden by the volume",
                target.volume_root
            );
            let hint = "mount the weights under the model root (a folder name), or set mode = \"volume\"";
            if mode == WeightsMode::Bake {
                diags.error(draft.mount_span, message).hint = Some(hint.to_string());
                continue;
            }
            diags.warning(draft.mount_span, format!("{message} if auto mode bakes them")).hint = Some(hint.to_string());
        }
        if let Some((other, _)) = entries.iter().find(|(e, _)| e.path == path) {
            diags
                .error(draft.mount_span, format!("weights path {path} is used twice (also by {})", other.origin))
                .hint = Some("give each weights source its own mount folder".to_string());
            continue;
        }
        if let WeightsSource::Hf { revision, .. } = &draft.source {
            let pinned = revision.len() == 40 && revision.bytes().all(|b| b.is_ascii_hexdigit());
            if !pinned {
                diags.warning(
                    draft.uri_span,
                    format!("revision `{revision}` of {} is a branch or tag, not a commit; the build pins it to the commit it points at", draft.uri),
                );
            }
        }
        let entry = WeightsEntry {
            origin: draft.origin,
            uri: draft.uri,
            source: draft.source,
            mount,
            path,
            volume_path,
            allow_patterns: draft.allow_patterns,
            ignore_patterns: draft.ignore_patterns,
            secret: draft.secret,
            mode,
            layout: draft.layout,
        };
        entries.push((entry, draft.mount_span));
    }
    // A baked entry must not sit inside another entry's volume.
    let volumes: Vec<(String, String)> = entries
        .iter()
        .filter(|(e, _)| e.mode == WeightsMode::Volume)
        .map(|(e, _)| (e.volume_path.clone(), e.origin.clone()))
        .collect();
    for (entry, span) in &entries {
        if entry.mode == WeightsMode::Bake {
            if let Some((volume, origin)) = volumes.iter().find(|(v, _)| is_under(&entry.path, v)) {
                diags.error(
                    *span,
                    format!("baked weights at {} would be hidden by the volume of {origin} at {volume}", entry.path),
                );
            }
        }
    }
    entries.into_iter().map(|(e, _)| e).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    #[test]
    fn parses_every_source_kind() {
        let dir = Path::new(".");
        assert_eq!(
            parse_source("hf://org/name@abc", dir).unwrap(),
            WeightsSource::Hf { repo: "org/name".into(), revision: "abc".into() }
        );
        assert_eq!(
            parse_source("s3://bucket/path/to/", dir).unwrap(),
            WeightsSource::S3 { bucket: "bucket".into(), prefix: "path/to/".into() }
        );
        assert!(matches!(parse_source("az://c/p", dir).unwrap(), WeightsSource::Azure { .. }));
        assert!(matches!(parse_source("gs://b", dir).unwrap(), WeightsSource::Gcs { .. }));
        assert!(matches!(parse_source("https://h/x.bin", dir).unwrap(), WeightsSource::Https { .. }));
        assert!(matches!(
            parse_source("./src", Path::new(env!("CARGO_MANIFEST_DIR"))).unwrap(),
            WeightsSource::Local { .. }
        ));
        assert!(parse_source("hf://justname", dir).unwrap_err().contains("hf://ORG/NAME@REVISION"));
        assert!(parse_source("ftp://x/y", dir).unwrap_err().contains("unknown source scheme"));
        assert!(parse_source("https://host/", dir).unwrap_err().contains("names no file"));
        assert!(parse_source("./no-such-dir", dir).unwrap_err().contains("is not a directory"));
    }

    #[test]
    fn is_under_respects_path_boundaries() {
        assert!(is_under("/persistent-storage/x", "/persistent-storage"));
        assert!(is_under("/models", "/models/"));
        assert!(!is_under("/models2/x", "/models"));
    }
}
