//! An image's layers applied in order to a root filesystem directory, as a
//! container runtime's snapshotter does: each layer blob decoded by its
//! media type (gzip, zstd or none, with the base-image reader's decoder),
//! read through [`TarGuard`], OCI whiteouts applied (`.wh.NAME` removes
//! NAME from the layers below, `.wh..wh..opq` empties a directory of what
//! the layers below put there), ownership, modes and times kept.
//!
//! Layers are written by others, so every path is resolved inside the root
//! the way runc's securejoin does: `..` stops at the root, and a symlink
//! met on the way (even an absolute one) is followed within the root, never
//! on the host. Device nodes and FIFOs are skipped (runc gives the
//! container its own `/dev`).

use crate::image::blobs::BlobStore;
use crate::image::oci::Descriptor;
use crate::image::tar_guard::TarGuard;
use std::collections::{HashSet, VecDeque};
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};

/// Symlinks followed while resolving one path before giving up (Linux's own limit).
const MAX_LINK_HOPS: usize = 40;

/// What was unpacked.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unpacked {
    pub layers: usize,
    /// Layer blob bytes read (compressed).
    pub blob_bytes: u64,
    /// Tar entries applied, whiteouts included.
    pub entries: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    #[error("cannot read layer {digest}")]
    Layer {
        digest: String,
        #[source]
        source: io::Error,
    },
    #[error("cannot unpack `{path}` of layer {digest}")]
    Entry {
        digest: String,
        path: String,
        #[source]
        source: io::Error,
    },
    #[error("interrupted")]
    Interrupted,
}

/// Applies `layers` (bottom first, blobs in `blobs`) to `rootfs`, which
/// must exist. Stops between entries once `interrupted` is set.
pub fn unpack_layers(
    blobs: &BlobStore,
    layers: &[Descriptor],
    rootfs: &Path,
    interrupted: &AtomicBool,
) -> Result<Unpacked, UnpackError> {
    unpack_with(blobs, layers, rootfs, interrupted, &|_, _| true)
}

/// Applies one layer's tar stream; returns its entry count.
pub fn apply_layer(
    stream: impl Read,
    rootfs: &Path,
    digest: &str,
    interrupted: &AtomicBool,
) -> Result<u64, UnpackError> {
    apply_layer_where(stream, rootfs, digest, interrupted, &|_, _| true)
}

/// Which entries of a layer to write: `(image path, entry type)`.
pub type EntryFilter<'a> = &'a dyn Fn(&str, tar::EntryType) -> bool;

/// [`unpack_layers`] writing only the entries `keep` accepts (whiteouts
/// are applied all the same): a part of an image, such as its Python
/// standard library, without the rest.
pub fn unpack_layers_where(
    blobs: &BlobStore,
    layers: &[Descriptor],
    rootfs: &Path,
    keep: EntryFilter,
) -> Result<Unpacked, UnpackError> {
    unpack_with(blobs, layers, rootfs, &AtomicBool::new(false), keep)
}

fn unpack_with(
    blobs: &BlobStore,
    layers: &[Descriptor],
    rootfs: &Path,
    interrupted: &AtomicBool,
    keep: EntryFilter,
) -> Result<Unpacked, UnpackError> {
    let mut unpacked = Unpacked::default();
    for layer in layers {
        let digest = layer.digest.to_string();
        let layer_error = |source| UnpackError::Layer { digest: digest.clone(), source };
        let file = blobs.open_blob(&layer.digest).map_err(|e| layer_error(io::Error::other(e)))?;
        let stream = crate::resolve::basefs::decompressed(file, &layer.media_type).map_err(layer_error)?;
        unpacked.entries += apply_layer_where(stream, rootfs, &digest, interrupted, keep)?;
        unpacked.layers += 1;
        unpacked.blob_bytes += layer.size;
    }
    Ok(unpacked)
}

/// [`apply_layer`] writing only the entries `keep` accepts.
pub fn apply_layer_where(
    stream: impl Read,
    rootfs: &Path,
    digest: &str,
    interrupted: &AtomicBool,
    keep: EntryFilter,
) -> Result<u64, UnpackError> {
    let layer_error = |source| UnpackError::Layer { digest: digest.to_string(), source };
    let mut archive = tar::Archive::new(TarGuard::new(stream));
    archive.set_preserve_permissions(true);
    archive.set_preserve_ownerships(true);
    archive.set_preserve_mtime(true);
    archive.set_overwrite(true);
    archive.set_unpack_xattrs(false);
    // Paths this layer wrote: an opaque whiteout hides only the layers below.
    let mut written: HashSet<String> = HashSet::new();
    let mut entries = 0;
    for entry in archive.entries().map_err(layer_error)? {
        if interrupted.load(Ordering::Relaxed) {
            return Err(UnpackError::Interrupted);
        }
        let mut entry = entry.map_err(layer_error)?;
        entries += 1;
        let raw = entry.path().map_err(layer_error)?.to_string_lossy().into_owned();
        let entry_error = |source| UnpackError::Entry { digest: digest.to_string(), path: raw.clone(), source };
        let path = normalize(&raw);
        if path.is_empty() {
            continue;
        }
        let (dir, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
        if name == ".wh..wh..opq" {
            match resolve_in(rootfs, dir, false) {
                Ok(real) => clear_opaque(&real, dir, &written).map_err(entry_error)?,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(entry_error(error)),
            }
            continue;
        }
        if let Some(hidden) = name.strip_prefix(".wh.") {
            match resolve_in(rootfs, dir, false) {
                Ok(parent) => remove_any(&parent.join(hidden)).map_err(entry_error)?,
                Err(error) if error.kind() == io::ErrorKind::NotFound => {}
                Err(error) => return Err(entry_error(error)),
            }
            continue;
        }
        let kind = entry.header().entry_type();
        if kind.is_block_special() || kind.is_character_special() || kind.is_fifo() {
            continue;
        }
        if name == ".." || name == "." || !keep(&path, kind) {
            continue;
        }
        let parent = resolve_in(rootfs, dir, true).map_err(entry_error)?;
        let dest = parent.join(name);
        let existing = fs::symlink_metadata(&dest).ok();
        let keep_dir = kind.is_dir() && existing.as_ref().is_some_and(|m| m.is_dir());
        if existing.is_some() && !keep_dir {
            remove_any(&dest).map_err(entry_error)?;
        }
        if kind.is_hard_link() {
            let target = entry.link_name().map_err(entry_error)?.map(|t| t.to_string_lossy().into_owned());
            let target = normalize(&target.unwrap_or_default());
            let (target_dir, target_name) = target.rsplit_once('/').unwrap_or(("", target.as_str()));
            let source = resolve_in(rootfs, target_dir, false).map_err(entry_error)?.join(target_name);
            fs::hard_link(&source, &dest).map_err(entry_error)?;
        } else {
            entry.unpack(&dest).map_err(entry_error)?;
        }
        written.insert(path);
    }
    // The end-of-archive blocks and padding are read too, so a truncated
    // blob fails here rather than passing unnoticed.
    io::copy(&mut archive.into_inner(), &mut io::sink()).map_err(layer_error)?;
    Ok(entries)
}

/// `./a/b/` → `a/b`.
fn normalize(raw: &str) -> String {
    raw.trim_start_matches("./").trim_start_matches('/').trim_end_matches('/').to_string()
}

/// The real directory `relative` names inside `root`, every symlink on the
/// way followed within `root` and `..` stopping at it. With `create`,
/// missing directories are made (mode 0755) and a non-directory in the way
/// is replaced, as a layer that puts a file under it means.
pub fn resolve_in(root: &Path, relative: &str, create: bool) -> io::Result<PathBuf> {
    let mut resolved: Vec<String> = Vec::new();
    let mut pending: VecDeque<String> = relative.split('/').map(str::to_string).collect();
    let mut hops = 0;
    while let Some(part) = pending.pop_front() {
        match part.as_str() {
            "" | "." => continue,
            ".." => {
                resolved.pop();
                continue;
            }
            _ => {}
        }
        let candidate = root.join(resolved.join("/")).join(&part);
        match fs::symlink_metadata(&candidate) {
            Ok(meta) if meta.file_type().is_symlink() => {
                hops += 1;
                if hops > MAX_LINK_HOPS {
                    return Err(io::Error::other(format!("more than {MAX_LINK_HOPS} symlinks under `{relative}`")));
                }
                let target = fs::read_link(&candidate)?.to_string_lossy().into_owned();
                if target.starts_with('/') {
                    resolved.clear();
                }
                let mut next: VecDeque<String> = target.split('/').map(str::to_string).collect();
                next.extend(pending.drain(..));
                pending = next;
            }
            Ok(meta) if meta.is_dir() => resolved.push(part),
            Ok(_) if create => {
                fs::remove_file(&candidate)?;
                make_dir(&candidate)?;
                resolved.push(part);
            }
            Ok(_) => return Err(io::Error::new(io::ErrorKind::NotADirectory, format!("`{part}` is not a directory"))),
            Err(error) if error.kind() == io::ErrorKind::NotFound && create => {
                make_dir(&candidate)?;
                resolved.push(part);
            }
            Err(error) => return Err(error),
        }
    }
    Ok(root.join(resolved.join("/")))
}

fn make_dir(path: &Path) -> io::Result<()> {
    fs::create_dir(path)?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o755))
}

/// Removes whatever is at `path` (never following it), if anything.
fn remove_any(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(meta) if meta.is_dir() => fs::remove_dir_all(path),
        Ok(_) => fs::remove_file(path),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(error) => Err(error),
    }
}

/// An opaque directory: everything in `real` (image path `dir`) that this
/// layer did not write goes; directories this layer wrote are cleared the same way.
fn clear_opaque(real: &Path, dir: &str, written: &HashSet<String>) -> io::Result<()> {
    for child in fs::read_dir(real)? {
        let child = child?;
        let name = child.file_name().to_string_lossy().into_owned();
        let image_path = if dir.is_empty() { name } else { format!("{dir}/{name}") };
        if !written.contains(&image_path) {
            remove_any(&child.path())?;
        } else if child.file_type()?.is_dir() {
            clear_opaque(&child.path(), &image_path, written)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    enum Item<'a> {
        File(&'a str, &'a [u8]),
        Dir(&'a str),
        Link(&'a str, &'a str),
        Hard(&'a str, &'a str),
    }

    fn tar_of(items: &[Item]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for item in items {
            let mut header = tar::Header::new_gnu();
            header.set_mode(0o644);
            header.set_mtime(1);
            header.set_uid(0);
            header.set_gid(0);
            match item {
                Item::File(path, data) => {
                    header.set_size(data.len() as u64);
                    builder.append_data(&mut header, path, *data).unwrap();
                }
                Item::Dir(path) => {
                    header.set_entry_type(tar::EntryType::Directory);
                    header.set_mode(0o755);
                    header.set_size(0);
                    builder.append_data(&mut header, path, &[][..]).unwrap();
                }
                Item::Link(path, target) => {
                    header.set_entry_type(tar::EntryType::Symlink);
                    header.set_size(0);
                    builder.append_link(&mut header, path, target).unwrap();
                }
                Item::Hard(path, target) => {
                    header.set_entry_type(tar::EntryType::Link);
                    header.set_size(0);
                    builder.append_link(&mut header, path, target).unwrap();
                }
            }
        }
        builder.into_inner().unwrap()
    }

    fn apply(root: &Path, items: &[Item]) -> Result<u64, UnpackError> {
        apply_layer(&tar_of(items)[..], root, "sha256:test", &AtomicBool::new(false))
    }

    #[test]
    fn later_layers_win_and_whiteouts_remove_from_layers_below() {
        let root = tempfile::tempdir().unwrap();
        let root = root.path();
        apply(
            root,
            &[
                Item::Dir("etc"),
                Item::File("etc/a", b"1"),
                Item::File("etc/b", b"2"),
                Item::Dir("opt/x"),
                Item::File("opt/x/old", b"old"),
                Item::File("keep", b"k"),
            ],
        )
        .unwrap();
        apply(
            root,
            &[
                Item::File("etc/a", b"one"),
                Item::File("etc/.wh.b", b""),
                Item::Dir("opt/x"),
                Item::File("opt/x/new", b"new"),
                Item::File("opt/x/.wh..wh..opq", b""),
            ],
        )
        .unwrap();
        assert_eq!(fs::read(root.join("etc/a")).unwrap(), b"one");
        assert!(!root.join("etc/b").exists());
        assert!(!root.join("opt/x/old").exists(), "the opaque directory hides the layer below");
        assert_eq!(fs::read(root.join("opt/x/new")).unwrap(), b"new", "but not what its own layer wrote");
        assert_eq!(fs::read(root.join("keep")).unwrap(), b"k");
    }

    #[test]
    fn a_symlinked_directory_is_followed_inside_the_root_never_on_the_host() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        let escape = outside.path().to_string_lossy().into_owned();
        apply(
            root.path(),
            &[
                Item::Dir("usr/bin"),
                Item::Link("bin", "usr/bin"),
                Item::Link("evil", &escape),
                Item::Link("up", "../../.."),
            ],
        )
        .unwrap();
        apply(
            root.path(),
            &[Item::File("bin/tool", b"t"), Item::File("evil/owned", b"x"), Item::File("up/etc/passwd", b"x")],
        )
        .unwrap();
        assert_eq!(fs::read(root.path().join("usr/bin/tool")).unwrap(), b"t");
        assert!(fs::read_dir(outside.path()).unwrap().next().is_none(), "nothing written outside the root");
        assert_eq!(fs::read(root.path().join(escape.trim_start_matches('/')).join("owned")).unwrap(), b"x");
        assert_eq!(fs::read(root.path().join("etc/passwd")).unwrap(), b"x", "`..` stops at the root");
    }

    #[test]
    fn a_whiteout_through_a_hostile_link_removes_nothing_on_the_host() {
        let root = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::write(outside.path().join("precious"), b"p").unwrap();
        let escape = outside.path().to_string_lossy().into_owned();
        apply(root.path(), &[Item::Link("evil", &escape)]).unwrap();
        apply(root.path(), &[Item::File("evil/.wh.precious", b""), Item::File("evil/.wh..wh..opq", b"")]).unwrap();
        assert!(outside.path().join("precious").exists());
    }

    #[test]
    fn files_replace_directories_and_hard_links_stay_inside() {
        let root = tempfile::tempdir().unwrap();
        apply(root.path(), &[Item::Dir("a/b"), Item::File("a/b/c", b"c"), Item::File("f", b"file")]).unwrap();
        apply(root.path(), &[Item::File("a/b", b"now a file"), Item::File("f/inner", b"i"), Item::Hard("h", "a/b")])
            .unwrap();
        assert_eq!(fs::read(root.path().join("a/b")).unwrap(), b"now a file");
        assert_eq!(fs::read(root.path().join("f/inner")).unwrap(), b"i");
        assert_eq!(fs::read(root.path().join("h")).unwrap(), b"now a file");
    }

    #[test]
    fn layers_written_by_imgbake_in_every_codec_unpack_in_order() {
        use crate::image::entries::{EntryKind, LayerEntry};
        use crate::image::layer::{write_layer, Compression, LayerOptions};
        let dir = tempfile::tempdir().unwrap();
        let store = BlobStore::open(&dir.path().join("store")).unwrap();
        let file = |name: &str, text: &str| {
            let source = dir.path().join(name);
            fs::write(&source, text).unwrap();
            LayerEntry {
                path: format!("app/{name}"),
                mode: 0o755,
                kind: EntryKind::File { source, size: text.len() as u64 },
            }
        };
        let codecs = [Compression::None, Compression::Gzip { level: 1 }, Compression::Zstd { level: 3 }];
        let mut layers = Vec::new();
        for (index, compression) in codecs.into_iter().enumerate() {
            let entries = vec![
                LayerEntry::dir("app", 0o755),
                file(&format!("layer{index}"), "x"),
                file("last", &index.to_string()),
            ];
            let written = write_layer(&store, &entries, &LayerOptions { compression, mtime: 0 }).unwrap();
            let descriptor = serde_json::json!({
                "mediaType": written.media_type,
                "digest": written.digest.to_string(),
                "size": written.size,
            });
            layers.push(serde_json::from_value::<Descriptor>(descriptor).unwrap());
        }
        let rootfs = dir.path().join("rootfs");
        fs::create_dir(&rootfs).unwrap();
        let unpacked = unpack_layers(&store, &layers, &rootfs, &AtomicBool::new(false)).unwrap();
        assert_eq!(unpacked.layers, 3);
        assert_eq!(unpacked.blob_bytes, layers.iter().map(|l| l.size).sum::<u64>());
        assert_eq!(fs::read_to_string(rootfs.join("app/last")).unwrap(), "2", "the top layer wins");
        for index in 0..3 {
            let meta = fs::metadata(rootfs.join(format!("app/layer{index}"))).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o755);
        }
    }

    #[test]
    fn an_interrupted_unpack_stops() {
        let root = tempfile::tempdir().unwrap();
        let data = tar_of(&[Item::File("a", b"1")]);
        let error = apply_layer(&data[..], root.path(), "sha256:test", &AtomicBool::new(true)).unwrap_err();
        assert!(matches!(error, UnpackError::Interrupted), "{error}");
    }
}
