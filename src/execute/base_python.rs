//! The base image's own Python, run on the build machine without a
//! container daemon, to compile the image's bytecode: the part of the base
//! an interpreter needs (its executable, the shared libraries, the standard
//! library, ld.so's configuration; not site-packages, not the GPU stack)
//! unpacked from the base's layers, or copied from its root filesystem,
//! into `<cache>/base-python/<key>`, where `deps::python::bytecode` runs it
//! chrooted. Its `.pyc` files are the ones the image's interpreter would
//! write, on any build machine, whatever Python that machine has.
//!
//! The tree is keyed by the base's layer digests (a root filesystem: the
//! kept files' paths, sizes and times), so a base is unpacked once per
//! machine. Without root, the chroot runs in a user namespace (`unshare
//! --user --map-root-user`); where neither works, or the base has no
//! CPython of the image's version, the build machine's interpreter is used.

use crate::deps::python::bytecode::{self, Compiler};
use crate::resolve::Resolved;
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};

/// Staged trees' format: a change to what goes in them changes every key.
const STAGING_FORMAT: &str = "base-python 1";

/// The compiler of the image's bytecode for `python_version`, in order:
/// the base's own interpreter, a `python3.X` on this machine, one `uv
/// python find` knows. `None`: no CPython of that version anywhere.
pub fn choose_compiler(resolved: &Resolved, python_version: &str) -> Option<Compiler> {
    base_compiler(resolved, python_version).or_else(|| bytecode::find_compiler(python_version))
}

/// The build's bytecode compiler: chosen once (`choose_compiler`) when the
/// lock has Python packages and bytecode is on; one warning when none is found.
pub fn build_compiler(
    spec: &crate::spec::Spec,
    lock: &crate::lock::Lock,
    resolved: &Resolved,
    warnings: &mut Vec<String>,
) -> Option<Compiler> {
    let python = lock.python.as_ref().filter(|_| spec.python.bytecode)?;
    let found = choose_compiler(resolved, &python.target.python_version);
    if found.is_none() {
        warnings.push(bytecode::missing_warning(&python.target.python_version));
    }
    found
}

/// How `build` names the compiler: `CPython 3.11.2, the base image's /usr/bin/python3.11 (chrooted)`.
pub fn describe(compiler: &Compiler) -> String {
    match compiler.root {
        Some(_) => {
            format!("CPython {}, the base image's {} (chrooted)", compiler.version, compiler.executable.display())
        }
        None => format!("CPython {}, this machine's {}", compiler.version, compiler.executable.display()),
    }
}

/// The base's interpreter, when it is CPython `python_version` and runs chrooted here.
fn base_compiler(resolved: &Resolved, python_version: &str) -> Option<Compiler> {
    let python = resolved.facts.python.as_ref().filter(|p| p.version == python_version)?;
    let root = match &resolved.rootfs {
        Some(rootfs) => {
            staged_root(&resolved.cache_dir, &rootfs_key(rootfs).ok()?, |into| copy_from_rootfs(rootfs, into))
        }
        None => {
            let blobs = resolved.base.blobs.as_ref()?;
            let layers = &resolved.base.layers;
            let key = layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>().join("\n");
            staged_root(&resolved.cache_dir, &key, |into| {
                let keep = |path: &str, _: tar::EntryType| interpreter_needs(path);
                crate::container::unpack::unpack_layers_where(blobs, layers, into, &keep)
                    .map(|_| ())
                    .map_err(io::Error::other)
            })
        }
    }
    .ok()?;
    Compiler::in_root(&root, &python.interpreter, python_version)
}

/// The staged tree of `key`, made by `fill` unless the cache has it.
fn staged_root(cache_dir: &Path, key: &str, fill: impl FnOnce(&Path) -> io::Result<()>) -> io::Result<PathBuf> {
    let mut hasher = Sha256::new();
    for part in [STAGING_FORMAT, key, env!("CARGO_PKG_VERSION")] {
        hasher.update(part.as_bytes());
        hasher.update([0]);
    }
    let parent = cache_dir.join("base-python");
    let staged = parent.join(hex::encode(&hasher.finalize()[..16]));
    if staged.is_dir() {
        return Ok(staged);
    }
    fs::create_dir_all(&parent)?;
    let temp = tempfile::Builder::new().prefix(".staging-").tempdir_in(&parent)?;
    fill(temp.path())?;
    let temp = temp.keep();
    // Another build may have staged the same key meanwhile: theirs is as good.
    if let Err(error) = fs::rename(&temp, &staged) {
        let _ = fs::remove_dir_all(&temp);
        if !staged.is_dir() {
            return Err(error);
        }
    }
    Ok(staged)
}

/// What an interpreter needs of its image, by image path (no leading `/`):
/// the top-level links and directories on the way, ld.so's configuration,
/// `python3*` programs, the shared libraries (`lib`, `lib64`, the
/// multiarch directory, `/usr/local/lib`) but the GPU stack's
/// (`libcu*`, `libnv*`, `libnccl*`: gigabytes an interpreter never loads),
/// and the standard library without `site-packages`/`dist-packages`.
fn interpreter_needs(path: &str) -> bool {
    const ON_THE_WAY: &[&str] =
        &["bin", "sbin", "lib", "lib32", "lib64", "libx32", "etc", "usr", "usr/bin", "usr/lib", "usr/local"];
    if ON_THE_WAY.contains(&path) || matches!(path, "usr/local/bin" | "usr/local/lib" | "usr/lib64") {
        return true;
    }
    if path == "etc/ld.so.cache" || path == "etc/ld.so.conf" || path == "etc/ld.so.conf.d" {
        return true;
    }
    if path.starts_with("etc/ld.so.conf.d/") || path.starts_with("lib64/") || path.starts_with("usr/lib64/") {
        return true;
    }
    for bin in ["bin/", "usr/bin/", "usr/local/bin/"] {
        if let Some(name) = path.strip_prefix(bin) {
            return name.starts_with("python3") && !name.contains('/');
        }
    }
    for lib in ["lib/", "usr/lib/", "usr/local/lib/"] {
        let Some(rest) = path.strip_prefix(lib) else { continue };
        let mut parts = rest.split('/');
        let top = parts.next().unwrap_or_default();
        if top.starts_with("python3") {
            return !matches!(parts.next(), Some("site-packages" | "dist-packages"));
        }
        if top.ends_with("-linux-gnu") {
            let name = rest.rsplit('/').next().unwrap_or_default();
            return !["libcu", "libnv", "libnccl"].iter().any(|gpu| name.starts_with(gpu));
        }
        return !rest.contains('/') && (rest.ends_with(".so") || rest.contains(".so."));
    }
    false
}

/// `path size mtime` of every kept entry of a root filesystem, sorted: what
/// the staged copy of it depends on.
fn rootfs_key(rootfs: &Path) -> io::Result<String> {
    use std::os::unix::fs::MetadataExt as _;
    let mut lines = Vec::new();
    for entry in kept_entries(rootfs) {
        let entry = entry?;
        let meta = entry.metadata().map_err(io::Error::other)?;
        lines.push(format!("{} {} {}", entry.path().display(), meta.len(), meta.mtime()));
    }
    lines.sort();
    Ok(lines.join("\n"))
}

/// Copies what an interpreter needs of a root filesystem into `into`:
/// files with their modes, links as links, directories.
fn copy_from_rootfs(rootfs: &Path, into: &Path) -> io::Result<()> {
    for entry in kept_entries(rootfs) {
        let entry = entry?;
        let relative = entry.path().strip_prefix(rootfs).map_err(io::Error::other)?;
        let target = into.join(relative);
        let kind = entry.file_type();
        if kind.is_dir() {
            fs::create_dir_all(&target)?;
        } else if kind.is_symlink() {
            std::os::unix::fs::symlink(fs::read_link(entry.path())?, &target)?;
        } else if kind.is_file() {
            fs::copy(entry.path(), &target)?;
        }
    }
    Ok(())
}

/// The entries of a root filesystem an interpreter needs, parents first.
fn kept_entries(rootfs: &Path) -> impl Iterator<Item = io::Result<walkdir::DirEntry>> + '_ {
    walkdir::WalkDir::new(rootfs)
        .min_depth(1)
        .follow_links(false)
        .sort_by_file_name()
        .into_iter()
        .filter_entry(move |entry| {
            let relative = entry.path().strip_prefix(rootfs).unwrap_or(entry.path());
            interpreter_needs(&relative.to_string_lossy())
        })
        .map(|entry| entry.map_err(io::Error::other))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_interpreter_needs_its_libraries_and_standard_library_not_packages_or_the_gpu_stack() {
        for needed in [
            "lib64",
            "usr/lib64/ld-linux-x86-64.so.2",
            "etc/ld.so.cache",
            "etc/ld.so.conf.d/x86_64-linux-gnu.conf",
            "usr/bin/python3.11",
            "usr/local/bin/python3.12",
            "usr/lib/x86_64-linux-gnu/libz.so.1",
            "usr/lib/x86_64-linux-gnu/libexpat.so.1.8.10",
            "usr/local/lib/libpython3.12.so.1.0",
            "usr/lib/python3.11/os.py",
            "usr/lib/python3.11/lib-dynload/_json.cpython-311-x86_64-linux-gnu.so",
            "usr/local/lib/python3.12/encodings/utf_8.py",
        ] {
            assert!(interpreter_needs(needed), "{needed}");
        }
        for left_out in [
            "usr/bin/perl",
            "usr/share/doc/python3.11/README",
            "etc/passwd",
            "usr/lib/python3/dist-packages/six.py",
            "usr/local/lib/python3.12/site-packages/numpy/__init__.py",
            "usr/lib/x86_64-linux-gnu/libcudnn.so.9",
            "usr/lib/x86_64-linux-gnu/libnccl.so.2",
            "usr/local/cuda-12.4/lib64/libcublas.so.12",
            "usr/lib/apt/methods/http",
        ] {
            assert!(!interpreter_needs(left_out), "{left_out}");
        }
    }
}
