//! The Hugging Face hub cache layout, so `huggingface_hub` / `transformers`
//! load with `HF_HUB_OFFLINE=1`:
//! `models--{org}--{name}/blobs/<etag>` (sha256 for LFS files, git blob sha1
//! otherwise), `snapshots/<commit>/<path>` as relative symlinks to the blob,
//! and `refs/<branch>` holding the commit with no trailing newline.

use super::manifest::ManifestFile;
use super::{Listing, RemoteFile};
use crate::spec::{WeightsEntry, WeightsSource};

/// `models--org--name` for `org/name`.
pub fn repo_folder(repo: &str) -> String {
    format!("models--{}", repo.replace('/', "--"))
}

/// The blob name the hub cache uses for a file: its etag (quotes stripped).
pub fn blob_name(file: &RemoteFile) -> String {
    let etag = file.etag.as_deref().unwrap_or_default().trim_start_matches("W/").trim_matches('"').to_string();
    if etag.is_empty() {
        file.sha256.as_ref().map(|d| d.hex().to_string()).unwrap_or_default()
    } else {
        etag
    }
}

/// The relative symlink target from `snapshots/<commit>/<path>` to `blobs/<blob>`.
pub fn link_target(path: &str, blob: &str) -> String {
    let depth = path.matches('/').count() + 2;
    format!("{}blobs/{blob}", "../".repeat(depth))
}

/// What one hf-cache source looks like on disk, relative to the cache root:
/// blobs (file → blob path), snapshot links (link path → target) and the ref
/// file (path → content).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheTree {
    pub blobs: Vec<(RemoteFile, String)>,
    pub links: Vec<(String, String)>,
    pub refs: Vec<(String, String)>,
}

pub fn tree(entry: &WeightsEntry, listing: &Listing) -> CacheTree {
    let WeightsSource::Hf { repo, revision } = &entry.source else {
        return CacheTree { blobs: Vec::new(), links: Vec::new(), refs: Vec::new() };
    };
    let folder = repo_folder(repo);
    let commit = listing.revision.clone().unwrap_or_else(|| revision.clone());
    let mut blobs: Vec<(RemoteFile, String)> = Vec::new();
    let mut links = Vec::new();
    for file in &listing.files {
        let blob = blob_name(file);
        let blob_path = format!("{folder}/blobs/{blob}");
        if !blobs.iter().any(|(_, p)| *p == blob_path) {
            blobs.push((file.clone(), blob_path));
        }
        links.push((format!("{folder}/snapshots/{commit}/{}", file.path), link_target(&file.path, &blob)));
    }
    // A branch or tag gets a ref so `revision="main"` resolves offline; a commit needs none.
    let refs =
        if *revision != commit { vec![(format!("{folder}/refs/{revision}"), commit.clone())] } else { Vec::new() };
    CacheTree { blobs, links, refs }
}

/// Manifest files for an hf-cache entry: one per blob, with its snapshot links.
pub fn manifest_files(entry: &WeightsEntry, listing: &Listing, plain: Vec<ManifestFile>) -> Vec<ManifestFile> {
    let tree = tree(entry, listing);
    tree.blobs
        .iter()
        .map(|(file, blob_path)| {
            let source = plain.iter().find(|m| m.path == file.path).expect("every listed file is in the manifest");
            let links = tree
                .links
                .iter()
                .zip(&listing.files)
                .filter(|(_, f)| blob_name(f) == blob_name(file))
                .map(|((link, _), _)| link.clone())
                .collect();
            ManifestFile { path: blob_path.clone(), links, ..source.clone() }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::{WeightsLayout, WeightsMode};

    fn entry(revision: &str) -> WeightsEntry {
        WeightsEntry {
            origin: "imgbake.weights[0]".into(),
            uri: format!("hf://org/tiny@{revision}"),
            source: WeightsSource::Hf { repo: "org/tiny".into(), revision: revision.into() },
            mount: "tiny".into(),
            path: "/app/model_cache/tiny".into(),
            volume_path: "/models/tiny".into(),
            allow_patterns: vec![],
            ignore_patterns: vec![],
            secret: None,
            mode: WeightsMode::Volume,
            layout: WeightsLayout::HfCache,
        }
    }

    fn file(path: &str, etag: &str) -> RemoteFile {
        RemoteFile {
            path: path.into(),
            size: 3,
            sha256: None,
            etag: Some(format!("\"{etag}\"")),
            url: format!("u/{path}"),
        }
    }

    #[test]
    fn layout_matches_the_hub_cache_rules() {
        let commit = "a".repeat(40);
        let listing = Listing {
            uri: "hf://org/tiny@main".into(),
            revision: Some(commit.clone()),
            files: vec![file("config.json", "e1"), file("unet/model.safetensors", "e2")],
        };
        let tree = tree(&entry("main"), &listing);
        assert_eq!(tree.blobs[0].1, "models--org--tiny/blobs/e1");
        assert_eq!(
            tree.links,
            [
                (format!("models--org--tiny/snapshots/{commit}/config.json"), "../../blobs/e1".to_string()),
                (
                    format!("models--org--tiny/snapshots/{commit}/unet/model.safetensors"),
                    "../../../blobs/e2".to_string()
                ),
            ]
        );
        assert_eq!(tree.refs, [("models--org--tiny/refs/main".to_string(), commit.clone())]);
        let pinned = tree_of_commit(&commit);
        assert!(pinned.refs.is_empty(), "a commit revision needs no ref");
    }

    fn tree_of_commit(commit: &str) -> CacheTree {
        let listing = Listing { uri: String::new(), revision: Some(commit.to_string()), files: vec![file("a", "e")] };
        tree(&entry(commit), &listing)
    }
}
