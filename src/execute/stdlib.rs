//! The base's standard library, compiled (`LayerContent::StdlibBytecode`).
//! The official `python:*` images, and many bases built like them, delete
//! every `.pyc`, so each cold start compiles every standard module the app
//! imports again: a container's writable layer is new at each start. The
//! library's `.py` files are read from the base's layers (whiteouts
//! applied, nothing else written) or its root filesystem, compiled as the
//! packages are (`deps::python::bytecode`: unchecked-hash, image paths),
//! and the layer holds the `__pycache__/*.pyc` files only.
//!
//! The compiled tree is kept in the cache by the base's layer digests (a
//! root filesystem: its modules' paths, sizes and times) and the
//! compiler's version, so a rebuild reads no base layer.

use super::deps::DepsError;
use super::layers::{build_cached_layer, BuiltLayer, LayerBuildError};
use crate::deps::python::{bytecode, PythonError};
use crate::image::cache::LayerCache;
use crate::image::entries::{self, LayerEntry};
use crate::image::layer::LayerOptions;
use crate::layout::PlannedLayer;
use crate::lock::{Lock, LockedStdlib};
use crate::resolve::basefs::BaseFacts;
use crate::resolve::Resolved;
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Staged trees' format: a change to what goes in them changes every key.
const STAGING_FORMAT: &str = "stdlib-bytecode 1";

/// The planned stdlib layer: the `.pyc` of every module of `stdlib`, or,
/// without a `compiler` (the build warned once), the library's directory alone.
pub fn stdlib_layer(
    layer: &PlannedLayer,
    stdlib: &LockedStdlib,
    compiler: Option<&bytecode::Compiler>,
    resolved: &Resolved,
    cache: &LayerCache,
) -> Result<BuiltLayer, DepsError> {
    let dir = stdlib.dir.trim_matches('/');
    let files = match compiler {
        Some(compiler) => pyc_files(&staged_tree(dir, compiler, resolved)?, dir)?,
        None => Vec::new(),
    };
    let entries_error = |source| LayerBuildError::Entries { what: layer.name.clone(), source };
    let mut all = entries::entries_from_files(&files).map_err(entries_error)?;
    if all.is_empty() {
        all = entries::finish_entries(vec![LayerEntry::dir(dir, entries::DEFAULT_DIR_MODE)]).map_err(entries_error)?;
    }
    let options = LayerOptions::from_env(layer.compression);
    let history = format!("{} ({} files)", layer.history, files.len());
    Ok(build_cached_layer(cache, &all, &options, layer.name.clone(), history, files.len())?)
}

/// A lock written before it recorded the base's standard library, on a
/// base whose library has no bytecode: the layer is planned from the lock,
/// so this build goes without it; say how to get it.
pub fn unrecorded_warning(spec: &crate::spec::Spec, lock: &Lock, facts: &BaseFacts) -> Option<String> {
    let python = lock.python.as_ref()?;
    let found = crate::resolve::locked_stdlib(facts.stdlib.as_ref()?);
    (spec.python.bytecode && python.stdlib.is_none() && found.needs_bytecode()).then(|| {
        format!(
            "the base's Python standard library ({}) has no bytecode for {} of its {} modules, so every cold start compiles what the app imports of it; imgbake.lock does not record it yet: run `imgbake lock`, and the next build compiles it into a layer",
            found.dir,
            found.uncompiled(),
            found.modules
        )
    })
}

/// The library at image path `dir`, compiled, from the cache or made now.
fn staged_tree(dir: &str, compiler: &bytecode::Compiler, resolved: &Resolved) -> Result<PathBuf, DepsError> {
    let io_error = |what: String| move |source: io::Error| DepsError::Python(PythonError::Io { what, source });
    let key = {
        let mut hasher = Sha256::new();
        for part in [STAGING_FORMAT, dir, &compiler.version, env!("CARGO_PKG_VERSION")] {
            hasher.update(part.as_bytes());
            hasher.update([0]);
        }
        match &resolved.rootfs {
            Some(root) => {
                for (relative, size, mtime) in
                    rootfs_modules(root, dir).map_err(io_error(root.display().to_string()))?
                {
                    hasher.update(format!("{relative} {size} {mtime}\n").as_bytes());
                }
            }
            None => {
                for layer in &resolved.base.layers {
                    hasher.update(format!("layer {}\n", layer.digest).as_bytes());
                }
            }
        }
        hex::encode(&hasher.finalize()[..16])
    };
    let root = resolved.cache_dir.join("stdlib-bytecode");
    let staged = root.join(&key);
    if staged.is_dir() {
        return Ok(staged);
    }
    fs::create_dir_all(&root).map_err(io_error(root.display().to_string()))?;
    let temp =
        tempfile::Builder::new().prefix(".staging-").tempdir_in(&root).map_err(io_error(root.display().to_string()))?;
    let extracted = match &resolved.rootfs {
        Some(rootfs) => copy_rootfs_modules(rootfs, dir, temp.path()),
        None => extract_base_modules(resolved, dir, temp.path()),
    };
    extracted.map_err(io_error(format!("the base's standard library {dir}")))?;
    let library = temp.path().join(dir);
    if library.is_dir() {
        bytecode::compile_dir(compiler, &library, &format!("/{dir}"), true)?;
        remove_sources(&library).map_err(io_error(library.display().to_string()))?;
    }
    let temp = temp.keep();
    // Another build may have staged the same key meanwhile: theirs is as good.
    if let Err(error) = fs::rename(&temp, &staged) {
        let _ = fs::remove_dir_all(&temp);
        if !staged.is_dir() {
            return Err(io_error(staged.display().to_string())(error));
        }
    }
    Ok(staged)
}

/// The modules of the library at `dir` read out of the base's layers into
/// `into` (whiteouts applied, nothing else written). A module that is a
/// link (Debian's `sitecustomize.py` → `/etc/python3.11/…`) becomes a copy
/// of its target, read in a second pass over the layers: compiling the link
/// would read the build machine's file, not the image's.
fn extract_base_modules(resolved: &Resolved, dir: &str, into: &Path) -> io::Result<()> {
    let Some(blobs) = &resolved.base.blobs else { return Ok(()) };
    let layers = &resolved.base.layers;
    let keep = |path: &str, kind: tar::EntryType| {
        is_stdlib_path(path, dir) && (kind.is_dir() || ((kind.is_file() || kind.is_symlink()) && path.ends_with(".py")))
    };
    crate::container::unpack::unpack_layers_where(blobs, layers, into, &keep).map_err(io::Error::other)?;
    let links = module_links(into, dir)?;
    if links.is_empty() {
        return Ok(());
    }
    let targets_dir = tempfile::tempdir_in(into)?;
    let wanted: std::collections::BTreeSet<&str> = links.iter().map(|(_, target)| target.as_str()).collect();
    let keep_targets = |path: &str, kind: tar::EntryType| kind.is_file() && wanted.contains(path);
    crate::container::unpack::unpack_layers_where(blobs, layers, targets_dir.path(), &keep_targets)
        .map_err(io::Error::other)?;
    for (link, target) in &links {
        fs::remove_file(into.join(link))?;
        let copy = targets_dir.path().join(target);
        if fs::symlink_metadata(&copy).is_ok_and(|m| m.is_file()) {
            fs::copy(&copy, into.join(link))?;
        }
    }
    Ok(())
}

/// `(image path of the link, image path of its target)` of every module of
/// the library at `dir` under `root` that is a symlink.
fn module_links(root: &Path, dir: &str) -> io::Result<Vec<(String, String)>> {
    let mut links = Vec::new();
    for entry in walk_library(root, dir) {
        let entry = entry?;
        if entry.path_is_symlink() {
            let link = entry.path().strip_prefix(root).map_err(io::Error::other)?.to_string_lossy().into_owned();
            let target = fs::read_link(entry.path())?.to_string_lossy().into_owned();
            let resolved = crate::resolve::basefs::resolve_link(&link, &target);
            links.push((link, resolved));
        }
    }
    Ok(links)
}

/// `path` (an image path, no leading `/`) is in the library at `dir`,
/// outside its `site-packages` and `dist-packages`.
fn is_stdlib_path(path: &str, dir: &str) -> bool {
    if path == dir {
        return true;
    }
    let Some(inside) = path.strip_prefix(dir).and_then(|rest| rest.strip_prefix('/')) else { return false };
    let top = inside.split('/').next().unwrap_or_default();
    !matches!(top, "site-packages" | "dist-packages")
}

/// `(path relative to the root, size, mtime)` of every module of the
/// library at `dir` in a root filesystem directory, sorted.
fn rootfs_modules(root: &Path, dir: &str) -> io::Result<Vec<(String, u64, i64)>> {
    let mut modules = Vec::new();
    for entry in walk_library(root, dir) {
        let entry = entry?;
        let relative = entry.path().strip_prefix(root).map_err(io::Error::other)?.to_string_lossy().into_owned();
        let Some(file) = file_in_root(root, &relative)? else { continue };
        let meta = fs::metadata(&file)?;
        use std::os::unix::fs::MetadataExt as _;
        modules.push((relative, meta.len(), meta.mtime()));
    }
    modules.sort();
    Ok(modules)
}

/// Copies the modules of the library at `dir` of a root filesystem into
/// `into`, at the same relative paths; a module that is a link is copied
/// from its target inside the root (never the build machine's file).
fn copy_rootfs_modules(root: &Path, dir: &str, into: &Path) -> io::Result<()> {
    for entry in walk_library(root, dir) {
        let entry = entry?;
        let relative = entry.path().strip_prefix(root).map_err(io::Error::other)?.to_string_lossy().into_owned();
        let Some(file) = file_in_root(root, &relative)? else { continue };
        let target = into.join(&relative);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        fs::copy(file, &target)?;
    }
    Ok(())
}

/// The regular file image path `relative` names in a root filesystem
/// directory, links followed inside the root; `None` when there is none.
fn file_in_root(root: &Path, relative: &str) -> io::Result<Option<PathBuf>> {
    let mut path = relative.to_string();
    for _ in 0..8 {
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
        let Ok(dir) = crate::container::unpack::resolve_in(root, parent, false) else { return Ok(None) };
        let full = dir.join(name);
        let Ok(meta) = fs::symlink_metadata(&full) else { return Ok(None) };
        if meta.is_file() {
            return Ok(Some(full));
        }
        if !meta.file_type().is_symlink() {
            return Ok(None);
        }
        let resolved_parent = dir.strip_prefix(root).map_err(io::Error::other)?.to_string_lossy().into_owned();
        let link = if resolved_parent.is_empty() { name.to_string() } else { format!("{resolved_parent}/{name}") };
        path = crate::resolve::basefs::resolve_link(&link, &fs::read_link(&full)?.to_string_lossy());
    }
    Ok(None)
}

/// The `.py` files and links of the library at `dir` under `root`.
fn walk_library(root: &Path, dir: &str) -> impl Iterator<Item = io::Result<walkdir::DirEntry>> {
    let library = root.join(dir);
    walkdir::WalkDir::new(&library)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(|e| {
            !(e.depth() == 1 && matches!(e.file_name().to_str(), Some("site-packages" | "dist-packages")))
        })
        .filter_map(|entry| match entry {
            Ok(e) if !e.file_type().is_dir() && e.file_name().to_string_lossy().ends_with(".py") => Some(Ok(e)),
            Ok(_) => None,
            Err(error) => Some(Err(io::Error::other(error))),
        })
}

/// Removes the `.py` files of a compiled tree: the layer takes the `.pyc` only.
fn remove_sources(library: &Path) -> io::Result<()> {
    for entry in walkdir::WalkDir::new(library) {
        let entry = entry.map_err(io::Error::other)?;
        if entry.file_type().is_file() && entry.file_name().to_string_lossy().ends_with(".py") {
            fs::remove_file(entry.path())?;
        }
    }
    Ok(())
}

/// `(file, image path)` of every `.pyc` in a staged tree, sorted.
fn pyc_files(staged: &Path, dir: &str) -> Result<Vec<(PathBuf, String)>, DepsError> {
    let mut files = Vec::new();
    let library = staged.join(dir);
    if !library.is_dir() {
        return Ok(files);
    }
    for entry in walkdir::WalkDir::new(&library).sort_by_file_name() {
        let entry = entry.map_err(|e| PythonError::Io { what: library.display().to_string(), source: e.into() })?;
        let in_pycache = entry.path().parent().and_then(Path::file_name).is_some_and(|n| n == "__pycache__");
        if entry.file_type().is_file() && in_pycache && entry.file_name().to_string_lossy().ends_with(".pyc") {
            let relative = entry.path().strip_prefix(staged).unwrap_or(entry.path());
            files.push((entry.path().to_path_buf(), relative.to_string_lossy().into_owned()));
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_library_leaves_out_its_package_directories() {
        let dir = "usr/local/lib/python3.11";
        assert!(is_stdlib_path(dir, dir));
        assert!(is_stdlib_path("usr/local/lib/python3.11/json/decoder.py", dir));
        assert!(!is_stdlib_path("usr/local/lib/python3.11/site-packages/numpy/__init__.py", dir));
        assert!(!is_stdlib_path("usr/local/lib/python3.11/dist-packages", dir));
        assert!(!is_stdlib_path("usr/local/lib/python3.110/os.py", dir));
        assert!(!is_stdlib_path("usr/lib/python3.11/os.py", dir));
    }
}
