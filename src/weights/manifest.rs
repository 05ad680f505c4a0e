//! The volume weights manifest (`/etc/imgbake/weights.json`): every file the
//! prefetch hook must put on the volume, with its size, sha256 and pinned
//! source, and the credential's *name*. Shared by `build` (writes it) and
//! `prefetch` (reads it); the schema is `docs/weights-manifest.schema.json`.

use super::hf_cache;
use super::Listing;
use crate::spec::{Spec, WeightsEntry, WeightsLayout, WeightsSource};
use serde::{Deserialize, Serialize};

pub const MANIFEST_SCHEMA: &str = "imgbake.weights-manifest/v1";
/// Where the manifest lives in the image.
pub const MANIFEST_PATH: &str = "/etc/imgbake/weights.json";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WeightsManifest {
    pub schema: String,
    pub app: String,
    pub target: String,
    pub entries: Vec<ManifestEntry>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestEntry {
    /// Where in the config it came from (`imgbake.weights[0]`, `model_cache[1]`).
    pub origin: String,
    /// The source as written in the config.
    pub source: String,
    /// `hf`, `s3`, `gcs`, `azure`, `https`.
    pub kind: String,
    /// The pinned revision (a commit for hf), if the source has revisions.
    pub revision: Option<String>,
    /// The path the app reads (a symlink to `volume_path` when they differ).
    pub path: String,
    /// Where the files are written on the volume.
    pub volume_path: String,
    pub layout: WeightsLayout,
    /// The env var / secret holding the credential: a name, never a value.
    pub credential: Option<String>,
    pub total_size: u64,
    pub files: Vec<ManifestFile>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ManifestFile {
    /// Relative to `volume_path` (for hf-cache: `models--org--name/blobs/<etag>`).
    pub path: String,
    pub size: u64,
    /// Lowercase hex sha256 of the content.
    pub sha256: String,
    /// Where to download it, pinned to the revision.
    pub url: String,
    /// hf-cache only: `snapshots/<commit>/<file>` links to create to this blob.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub links: Vec<String>,
}

impl ManifestFile {
    /// What the range reader needs to know of a file it reads without
    /// verifying (a sample, a stream that checks the sha256 itself).
    pub fn unverified(file: &super::RemoteFile) -> ManifestFile {
        ManifestFile {
            path: file.path.clone(),
            size: file.size,
            sha256: String::new(),
            url: file.url.clone(),
            links: Vec::new(),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{origin}: {path} has no known sha256; the bytes must pass through imgbake once (imgbake downloads it during the build)")]
pub struct MissingHash {
    pub origin: String,
    pub path: String,
}

fn kind_of(source: &WeightsSource) -> &'static str {
    match source {
        WeightsSource::Hf { .. } => "hf",
        WeightsSource::S3 { .. } => "s3",
        WeightsSource::Gcs { .. } => "gcs",
        WeightsSource::Azure { .. } => "azure",
        WeightsSource::Https { .. } => "https",
        WeightsSource::Local { .. } => "local",
    }
}

/// The manifest entry of one volume-mode source. Every file of the listing
/// must carry a sha256 (from the source, or computed by the build).
pub fn entry(weights: &WeightsEntry, listing: &Listing) -> Result<ManifestEntry, MissingHash> {
    let mut files = Vec::with_capacity(listing.files.len());
    for file in &listing.files {
        let sha256 = file
            .sha256
            .as_ref()
            .ok_or_else(|| MissingHash { origin: weights.origin.clone(), path: file.path.clone() })?;
        files.push(ManifestFile {
            path: file.path.clone(),
            size: file.size,
            sha256: sha256.hex().to_string(),
            url: file.url.clone(),
            links: Vec::new(),
        });
    }
    if weights.layout == WeightsLayout::HfCache {
        files = hf_cache::manifest_files(weights, listing, files);
    }
    Ok(ManifestEntry {
        origin: weights.origin.clone(),
        source: weights.uri.clone(),
        kind: kind_of(&weights.source).to_string(),
        revision: listing.revision.clone(),
        path: weights.path.clone(),
        volume_path: weights.volume_path.clone(),
        layout: weights.layout,
        credential: weights.secret.clone(),
        total_size: listing.total_size(),
        files,
    })
}

impl WeightsManifest {
    pub fn new(spec: &Spec, entries: Vec<ManifestEntry>) -> WeightsManifest {
        let target = serde_json::to_value(spec.target.name).ok().and_then(|v| v.as_str().map(str::to_string));
        WeightsManifest {
            schema: MANIFEST_SCHEMA.to_string(),
            app: spec.name.clone(),
            target: target.unwrap_or_default(),
            entries,
        }
    }

    /// The exact bytes written into the image (stable field order, trailing newline).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut bytes = serde_json::to_vec_pretty(self).expect("the manifest serializes");
        bytes.push(b'\n');
        bytes
    }

    /// Reads a manifest, refusing other schema versions.
    pub fn from_bytes(bytes: &[u8]) -> Result<WeightsManifest, String> {
        let manifest: WeightsManifest =
            serde_json::from_slice(bytes).map_err(|e| format!("not a weights manifest: {e}"))?;
        if manifest.schema != MANIFEST_SCHEMA {
            return Err(format!("manifest schema `{}` is not supported (expected {MANIFEST_SCHEMA})", manifest.schema));
        }
        for entry in &manifest.entries {
            for file in &entry.files {
                if !super::safe_relative_path(&file.path) || file.links.iter().any(|l| !super::safe_relative_path(l)) {
                    return Err(format!("manifest entry {} has an unsafe path `{}`", entry.origin, file.path));
                }
            }
        }
        Ok(manifest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::digest::Digest;
    use crate::spec::WeightsMode;
    use crate::weights::RemoteFile;

    fn weights_entry(layout: WeightsLayout) -> WeightsEntry {
        WeightsEntry {
            origin: "imgbake.weights[0]".into(),
            uri: "hf://org/tiny@main".into(),
            source: WeightsSource::Hf { repo: "org/tiny".into(), revision: "main".into() },
            mount: "tiny".into(),
            path: "/app/model_cache/tiny".into(),
            volume_path: "/persistent-storage/imgbake/tiny".into(),
            allow_patterns: vec![],
            ignore_patterns: vec![],
            secret: Some("HF_TOKEN".into()),
            mode: WeightsMode::Volume,
            layout,
        }
    }

    fn listing(with_hash: bool) -> Listing {
        let sha = |c: char| -> Option<Digest> { Some(format!("sha256:{}", c.to_string().repeat(64)).parse().unwrap()) };
        Listing {
            uri: "hf://org/tiny@main".into(),
            revision: Some("c".repeat(40)),
            files: vec![
                RemoteFile {
                    path: "config.json".into(),
                    size: 10,
                    sha256: if with_hash { sha('a') } else { None },
                    etag: Some("\"1111\"".into()),
                    url: "http://hub/org/tiny/resolve/ccc/config.json".into(),
                },
                RemoteFile {
                    path: "model.safetensors".into(),
                    size: 100,
                    sha256: sha('b'),
                    etag: Some(format!("\"{}\"", "b".repeat(64))),
                    url: "http://hub/org/tiny/resolve/ccc/model.safetensors".into(),
                },
            ],
        }
    }

    #[test]
    fn manifest_round_trips_and_names_the_credential_only() {
        let entry = entry(&weights_entry(WeightsLayout::Plain), &listing(true)).unwrap();
        assert_eq!(entry.total_size, 110);
        assert_eq!(entry.credential.as_deref(), Some("HF_TOKEN"));
        let manifest = WeightsManifest {
            schema: MANIFEST_SCHEMA.into(),
            app: "a".into(),
            target: "cerebrium".into(),
            entries: vec![entry],
        };
        let bytes = manifest.to_bytes();
        assert_eq!(WeightsManifest::from_bytes(&bytes).unwrap(), manifest);
        assert_eq!(bytes, manifest.to_bytes(), "serialization is stable");
    }

    #[test]
    fn a_file_without_sha256_cannot_enter_the_manifest() {
        let err = entry(&weights_entry(WeightsLayout::Plain), &listing(false)).unwrap_err();
        assert_eq!(err.path, "config.json");
    }

    #[test]
    fn hf_cache_entries_list_blobs_with_their_snapshot_links() {
        let entry = entry(&weights_entry(WeightsLayout::HfCache), &listing(true)).unwrap();
        let paths: Vec<&str> = entry.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["models--org--tiny/blobs/1111", &format!("models--org--tiny/blobs/{}", "b".repeat(64))]);
        assert_eq!(entry.files[0].links, [format!("models--org--tiny/snapshots/{}/config.json", "c".repeat(40))]);
    }

    #[test]
    fn unsafe_paths_and_other_schemas_are_refused() {
        let mut entry = entry(&weights_entry(WeightsLayout::Plain), &listing(true)).unwrap();
        entry.files[0].path = "../../etc/passwd".into();
        let manifest = WeightsManifest {
            schema: MANIFEST_SCHEMA.into(),
            app: "a".into(),
            target: "generic".into(),
            entries: vec![entry],
        };
        assert!(WeightsManifest::from_bytes(&manifest.to_bytes()).unwrap_err().contains("unsafe path"));
        let other = WeightsManifest { schema: "imgbake.weights-manifest/v9".into(), ..manifest };
        assert!(WeightsManifest::from_bytes(&other.to_bytes()).unwrap_err().contains("not supported"));
    }
}
