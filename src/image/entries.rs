//! What a layer holds: a sorted list of entries (directories, files,
//! symlinks, hard links) with their paths in the image and where file
//! content comes from. Built from a directory walk or from explicit
//! (source file, image path) pairs; the layer writer only streams them.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};

/// Mode given to parent directories that have no source on disk.
pub const DEFAULT_DIR_MODE: u32 = 0o755;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerEntry {
    /// Path in the image: relative (no leading `/`), `/`-separated, no
    /// trailing `/`, no `.` or `..` components.
    pub path: String,
    /// Permission bits (including setuid/setgid/sticky), `0o7777` at most.
    pub mode: u32,
    pub kind: EntryKind,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum EntryKind {
    Dir,
    /// A regular file; `size` is what the layer writer expects to read.
    File {
        source: PathBuf,
        size: u64,
    },
    /// A regular file whose bytes come from a [`crate::image::layer::StreamSource`]
    /// by `key` (a remote weights file streamed straight into the layer);
    /// `key` names the content for the layer cache, `size` is what the
    /// stream must give.
    Stream {
        key: String,
        size: u64,
    },
    /// `target` exactly as stored in the link (relative or absolute).
    Symlink {
        target: String,
    },
    /// `target` is the image path of an earlier entry of the same layer.
    Hardlink {
        target: String,
    },
}

#[derive(Debug, thiserror::Error)]
pub enum EntryError {
    #[error("failed to read `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("failed to walk `{root}`")]
    Walk {
        root: PathBuf,
        #[source]
        source: walkdir::Error,
    },
    #[error("`{path}` is a socket, FIFO or device file; layers hold only files, directories and links")]
    Unsupported { path: PathBuf },
    #[error(
        "`{path}` is not a valid path in the image (must be relative, `/`-separated, without `.`, `..` or empty parts)"
    )]
    BadImagePath { path: String },
    #[error("`{path}` appears twice in the same layer")]
    Duplicate { path: String },
    #[error("path `{path}` is not valid UTF-8")]
    NotUtf8 { path: PathBuf },
}

impl LayerEntry {
    pub fn dir(path: &str, mode: u32) -> LayerEntry {
        LayerEntry { path: path.to_string(), mode: mode & 0o7777, kind: EntryKind::Dir }
    }

    pub fn symlink(path: &str, target: &str) -> LayerEntry {
        LayerEntry { path: path.to_string(), mode: 0o777, kind: EntryKind::Symlink { target: target.to_string() } }
    }

    /// A file with mode 0644 whose bytes a stream source gives by `key`.
    pub fn streamed(path: &str, key: &str, size: u64) -> LayerEntry {
        LayerEntry { path: path.to_string(), mode: 0o644, kind: EntryKind::Stream { key: key.to_string(), size } }
    }

    /// A regular file, read from disk or streamed.
    pub fn is_file(&self) -> bool {
        matches!(self.kind, EntryKind::File { .. } | EntryKind::Stream { .. })
    }
}

/// Normalizes an image path: strips leading/trailing `/`, rejects `.`, `..`
/// and empty components. `""` (the image root) is allowed.
pub fn normalize_image_path(path: &str) -> Result<String, EntryError> {
    let trimmed = path.trim_matches('/');
    if trimmed.is_empty() {
        return Ok(String::new());
    }
    if trimmed.split('/').any(|part| part.is_empty() || part == "." || part == "..") || trimmed.contains('\0') {
        return Err(EntryError::BadImagePath { path: path.to_string() });
    }
    Ok(trimmed.to_string())
}

fn join(prefix: &str, rel: &str) -> String {
    match (prefix.is_empty(), rel.is_empty()) {
        (true, _) => rel.to_string(),
        (false, true) => prefix.to_string(),
        (false, false) => format!("{prefix}/{rel}"),
    }
}

/// Walks `root` and returns its content placed under `prefix_in_image`
/// (e.g. `app` or `/app/model_cache/sdxl`): symlinks kept as symlinks (never
/// followed), files sharing dev+inode emitted as hard links to the first
/// (in path order), the prefix's parents emitted as directories, sorted by
/// path. With an empty prefix the root directory itself is not an entry.
pub fn entries_from_dir(root: &Path, prefix_in_image: &str) -> Result<Vec<LayerEntry>, EntryError> {
    let prefix = normalize_image_path(prefix_in_image)?;
    let mut entries = Vec::new();
    let walker = walkdir::WalkDir::new(root).follow_links(false).sort_by_file_name();
    for item in walker {
        let item = item.map_err(|source| EntryError::Walk { root: root.to_path_buf(), source })?;
        let rel = item.path().strip_prefix(root).expect("walkdir yields paths under root");
        let rel = rel.to_str().ok_or_else(|| EntryError::NotUtf8 { path: item.path().to_path_buf() })?;
        let image_path = join(&prefix, rel);
        if image_path.is_empty() {
            continue; // the root itself, placed at the image root
        }
        let meta = item
            .path()
            .symlink_metadata()
            .map_err(|source| EntryError::Io { path: item.path().to_path_buf(), source })?;
        entries.push((image_path, item.path().to_path_buf(), meta));
    }
    let mut out = Vec::with_capacity(entries.len());
    // Sort first so that "the first path" of a hard-linked set is stable.
    entries.sort_by(|a, b| a.0.cmp(&b.0));
    let mut seen_inodes: HashMap<(u64, u64), String> = HashMap::new();
    for (image_path, source, meta) in entries {
        let mode = meta.permissions().mode() & 0o7777;
        let file_type = meta.file_type();
        let kind = if file_type.is_dir() {
            EntryKind::Dir
        } else if file_type.is_symlink() {
            let target = std::fs::read_link(&source).map_err(|e| EntryError::Io { path: source.clone(), source: e })?;
            let target = target.to_str().ok_or_else(|| EntryError::NotUtf8 { path: source.clone() })?.to_string();
            EntryKind::Symlink { target }
        } else if file_type.is_file() {
            if meta.nlink() > 1 {
                let key = (meta.dev(), meta.ino());
                if let Some(first) = seen_inodes.get(&key) {
                    out.push(LayerEntry {
                        path: image_path,
                        mode,
                        kind: EntryKind::Hardlink { target: first.clone() },
                    });
                    continue;
                }
                seen_inodes.insert(key, image_path.clone());
            }
            EntryKind::File { source, size: meta.len() }
        } else {
            return Err(EntryError::Unsupported { path: source });
        };
        out.push(LayerEntry { path: image_path, mode, kind });
    }
    finish_entries(out)
}

/// Entries for explicit (source file, image path) pairs, as used for
/// weights and app files. Sources are followed if they are symlinks (the
/// file's content is what goes in); missing parent directories are added.
pub fn entries_from_files(files: &[(PathBuf, String)]) -> Result<Vec<LayerEntry>, EntryError> {
    let mut out = Vec::with_capacity(files.len());
    for (source, image_path) in files {
        let path = normalize_image_path(image_path)?;
        if path.is_empty() {
            return Err(EntryError::BadImagePath { path: image_path.clone() });
        }
        let meta = std::fs::metadata(source).map_err(|e| EntryError::Io { path: source.clone(), source: e })?;
        if !meta.is_file() {
            return Err(EntryError::Unsupported { path: source.clone() });
        }
        out.push(LayerEntry {
            path,
            mode: meta.permissions().mode() & 0o7777,
            kind: EntryKind::File { source: source.clone(), size: meta.len() },
        });
    }
    finish_entries(out)
}

/// Adds missing parent directories (mode 0755), sorts by path and rejects
/// duplicates and bad paths. Call it after adding entries by hand (e.g.
/// symlinks of a Hugging Face cache layout).
pub fn finish_entries(entries: Vec<LayerEntry>) -> Result<Vec<LayerEntry>, EntryError> {
    let mut by_path: BTreeMap<String, LayerEntry> = BTreeMap::new();
    for entry in entries {
        let path = normalize_image_path(&entry.path)?;
        if path.is_empty() || path != entry.path {
            return Err(EntryError::BadImagePath { path: entry.path });
        }
        if by_path.contains_key(&path) {
            return Err(EntryError::Duplicate { path });
        }
        by_path.insert(path, entry);
    }
    let parents: Vec<String> = by_path
        .keys()
        .flat_map(|path| path.match_indices('/').map(|(i, _)| path[..i].to_string()).collect::<Vec<_>>())
        .collect();
    for parent in parents {
        by_path.entry(parent.clone()).or_insert_with(|| LayerEntry::dir(&parent, DEFAULT_DIR_MODE));
    }
    // BTreeMap order is byte order of the paths, the order the tar gets.
    Ok(by_path.into_values().collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;

    #[test]
    fn walk_keeps_links_finds_hardlinks_and_adds_parents() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir(root.join("sub")).unwrap();
        fs::create_dir(root.join("empty")).unwrap();
        fs::write(root.join("sub/b.txt"), b"bee").unwrap();
        fs::hard_link(root.join("sub/b.txt"), root.join("a-link.txt")).unwrap();
        std::os::unix::fs::symlink("sub/b.txt", root.join("z")).unwrap();
        fs::set_permissions(root.join("sub/b.txt"), fs::Permissions::from_mode(0o750)).unwrap();

        let entries = entries_from_dir(root, "/app/x/").unwrap();
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(
            paths,
            ["app", "app/x", "app/x/a-link.txt", "app/x/empty", "app/x/sub", "app/x/sub/b.txt", "app/x/z"]
        );
        // "a-link.txt" sorts first, so it holds the content; b.txt links to it.
        assert!(matches!(entries[2].kind, EntryKind::File { size: 3, .. }));
        assert_eq!(entries[5].kind, EntryKind::Hardlink { target: "app/x/a-link.txt".into() });
        assert_eq!(entries[5].mode, 0o750);
        assert_eq!(entries[6].kind, EntryKind::Symlink { target: "sub/b.txt".into() });
        assert_eq!(entries[0].mode, DEFAULT_DIR_MODE);
    }

    #[test]
    fn explicit_files_get_parents_and_reject_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("w.bin");
        fs::write(&file, b"12345").unwrap();
        let entries = entries_from_files(&[(file.clone(), "/models/m/w.bin".into())]).unwrap();
        let paths: Vec<&str> = entries.iter().map(|e| e.path.as_str()).collect();
        assert_eq!(paths, ["models", "models/m", "models/m/w.bin"]);
        assert!(matches!(
            entries_from_files(&[(file.clone(), "a".into()), (file.clone(), "/a".into())]),
            Err(EntryError::Duplicate { .. })
        ));
        assert!(matches!(entries_from_files(&[(file, "a/../b".into())]), Err(EntryError::BadImagePath { .. })));
    }
}
