//! Bytecode (`.pyc`) for installed wheels, compiled on the build machine as
//! `pip install` does in a Dockerfile: a container's writable layer is new at
//! each start, so without `.pyc` in the image every cold start compiles every
//! module it imports again (`import pandas, scipy.stats, sympy, transformers`:
//! 7.3 s without, 2.6 s with).
//!
//! The compiler is a CPython of the image's exact `major.minor` (the `.pyc`
//! magic number and the `cpython-3XY` in its name depend on it): the base
//! image's own interpreter, run in a chroot of the part of the base it needs
//! (`execute::base_python` prepares it; the same bytes on every build
//! machine), else a `python3.X` on PATH, else one `uv python find` already
//! knows (never a download). Files are written by `compileall` with `--invalidation-mode
//! unchecked-hash` (PEP 552: the header holds no source mtime and Python
//! does not check the source, so the bytes do not depend on file times), into
//! `__pycache__/` beside each module where the image's interpreter looks, and
//! with `co_filename` set to the module's path in the image (`-d
//! <site-packages>/<child>`), so tracebacks name image paths.
//!
//! Reproducibility, measured on CPython 3.11.7 and 3.12.1 (384 modules of
//! IPython, attrs, click, cffi, anyio, dateutil, plus a module with a
//! frozenset constant): compiling a whole tree in one process writes the same
//! bytes as one process per file, and the same under five different
//! `PYTHONHASHSEED`s. So a tree is compiled in one process per top-level
//! entry; the process still gets an empty environment, `PYTHONHASHSEED=0` and
//! `-S -s` (no `site`, no `.pth` imports), so nothing of the build machine's
//! setup enters it. Another patch release may write other bytes, so the
//! staging cache is keyed by the compiler's full version.

use super::{io_err, PythonError};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// A CPython that compiles `.pyc` files for the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Compiler {
    /// The interpreter's own executable (`sys.executable`, past shims such
    /// as pyenv's); inside `root` when there is one.
    pub executable: PathBuf,
    /// `major.minor.micro`, e.g. `3.11.7`.
    pub version: String,
    /// The base image's interpreter: it runs chrooted into this directory
    /// (as root, else in a user namespace that maps this user to root), and
    /// a tree is moved into it while it is compiled.
    pub root: Option<PathBuf>,
}

/// Where a chrooted compiler finds the trees it compiles.
const IN_ROOT_DIR: &str = "imgbake-compile";

impl Compiler {
    /// A command running the interpreter: directly, or chrooted into `root`.
    fn command(&self) -> Command {
        let Some(root) = &self.root else { return Command::new(&self.executable) };
        let mut command = if crate::plumbing::process::is_root() {
            Command::new("chroot")
        } else {
            let mut unshare = Command::new("unshare");
            unshare.args(["--user", "--map-root-user", "chroot"]);
            unshare
        };
        command.arg(root).arg(&self.executable);
        command
    }

    /// The compiler of the base image's interpreter `interpreter` in `root`
    /// when it runs there and is CPython `python_version`.
    pub fn in_root(root: &Path, interpreter: &str, python_version: &str) -> Option<Compiler> {
        let chrooted =
            Compiler { executable: PathBuf::from(interpreter), version: String::new(), root: Some(root.into()) };
        let found = probe(chrooted.command(), python_version)?;
        Some(Compiler { root: Some(root.to_path_buf()), ..found })
    }
}

/// The warning when no interpreter of `python_version` is found.
pub fn missing_warning(python_version: &str) -> String {
    format!(
        "no Python {python_version} on this machine to compile bytecode with; the image's modules compile at first import (slower cold starts)"
    )
}

/// A CPython `python_version` (`major.minor`) on this machine: `python3.X`
/// on PATH, else the one `uv python find` reports (already installed only).
pub fn find_compiler(python_version: &str) -> Option<Compiler> {
    let on_path = Command::new(format!("python{python_version}"));
    if let Some(found) = probe(on_path, python_version) {
        return Some(found);
    }
    let mut uv = super::resolver::uv_command();
    uv.args(["python", "find", "--no-python-downloads", "--offline", python_version])
        .stdin(Stdio::null())
        .stderr(Stdio::null());
    let output = uv.output().ok().filter(|o| o.status.success())?;
    let path = String::from_utf8_lossy(&output.stdout).trim().to_string();
    if path.is_empty() {
        return None;
    }
    probe(Command::new(path), python_version)
}

/// Runs `command` as Python and returns it when it is CPython `python_version`.
fn probe(mut command: Command, python_version: &str) -> Option<Compiler> {
    let code = "import sys, platform; print(platform.python_implementation(), '%d.%d.%d' % sys.version_info[:3], sys.executable)";
    command.args(["-S", "-c", code]).stdin(Stdio::null()).stderr(Stdio::null());
    let output = command.output().ok().filter(|o| o.status.success())?;
    let text = String::from_utf8_lossy(&output.stdout);
    let mut words = text.trim().splitn(3, ' ');
    let (implementation, version, executable) = (words.next()?, words.next()?, words.next()?);
    let matches = implementation == "CPython" && version.strip_prefix(python_version)?.starts_with('.');
    (matches && !executable.is_empty()).then(|| Compiler {
        executable: PathBuf::from(executable),
        version: version.to_string(),
        root: None,
    })
}

/// Compiles every `.py` of a staging tree for the image: each top-level
/// entry but `bin/` (console scripts, which run as scripts and are not
/// imported) goes into `site_packages`, so its `.pyc` files name
/// `<site_packages>/<entry>/…`. A module that does not compile (a Python 2
/// file or template shipped in a wheel) is left without `.pyc`, as pip does.
pub fn compile_tree(compiler: &Compiler, dir: &Path, site_packages: &str) -> Result<(), PythonError> {
    let read = fs::read_dir(dir).map_err(io_err(dir.display().to_string()))?;
    let mut children: Vec<(String, bool)> = read
        .flatten()
        .map(|c| (c.file_name().to_string_lossy().into_owned(), c.file_type().is_ok_and(|t| t.is_dir())))
        .filter(|(name, is_dir)| name != "bin" && (*is_dir || name.ends_with(".py")))
        .collect();
    children.sort();
    let site = site_packages.trim_end_matches('/');
    for (name, is_dir) in children {
        // `-d` names the image path of what is compiled: for a directory
        // its own path, for a file the directory it is in.
        let image_path = if is_dir { format!("{site}/{name}") } else { site.to_string() };
        compile_path(compiler, &dir.join(&name), &image_path, false)?;
    }
    Ok(())
}

/// Compiles every `.py` under `dir` in one `compileall` run whose files
/// name `image_dir/…` (a base's standard library; `parallel` uses every
/// core, which writes the same bytes: each file is compiled on its own).
pub fn compile_dir(compiler: &Compiler, dir: &Path, image_dir: &str, parallel: bool) -> Result<(), PythonError> {
    compile_path(compiler, dir, image_dir, parallel)
}

/// One `compileall` of `path` (a file or a directory) as `image_path`.
/// A chrooted compiler gets the tree moved into its root meanwhile (a
/// rename: the root is in the same cache directory), and compiles in one
/// process (`-j` needs `/dev/shm`, which the root does not have).
fn compile_path(compiler: &Compiler, path: &Path, image_path: &str, parallel: bool) -> Result<(), PythonError> {
    let io_error = |what: String| move |source| PythonError::Io { what, source };
    let (visible, moved) = match &compiler.root {
        None => (path.to_path_buf(), None),
        Some(root) => {
            let holder = root.join(IN_ROOT_DIR);
            fs::create_dir_all(&holder).map_err(io_error(holder.display().to_string()))?;
            let slot = tempfile::Builder::new()
                .prefix("tree-")
                .tempdir_in(&holder)
                .map_err(io_error(holder.display().to_string()))?;
            // The same name: compileall compiles a file only as `*.py`, and names it after the file.
            let inside = slot.path().join(path.file_name().unwrap_or_default());
            fs::rename(path, &inside).map_err(io_error(format!("{} into {}", path.display(), root.display())))?;
            let relative = inside.strip_prefix(root).unwrap_or(&inside).to_path_buf();
            (Path::new("/").join(relative), Some((slot, inside)))
        }
    };
    let mut command = compiler.command();
    command
        .env_clear()
        // The usual PATH, so that `chroot` and `unshare` are found (nothing of the build machine's).
        .env("PATH", "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin")
        .env("PYTHONHASHSEED", "0")
        .args(["-S", "-s", "-m", "compileall", "-q", "--invalidation-mode", "unchecked-hash"])
        .args(if parallel && compiler.root.is_none() { &["-j", "0"][..] } else { &[] })
        .arg("-d")
        .arg(image_path)
        .arg(&visible)
        .stdin(Stdio::null());
    let output = command.output();
    if let Some((slot, inside)) = &moved {
        fs::rename(inside, path).map_err(io_error(format!("{} back from the compiler's root", path.display())))?;
        // A single module's `.pyc` went to `__pycache__` beside it, in the slot.
        let written = slot.path().join("__pycache__");
        if written.is_dir() {
            let beside = path.parent().unwrap_or(Path::new(".")).join("__pycache__");
            fs::create_dir_all(&beside).map_err(io_error(beside.display().to_string()))?;
            for entry in fs::read_dir(&written).map_err(io_error(written.display().to_string()))?.flatten() {
                let to = beside.join(entry.file_name());
                fs::rename(entry.path(), &to).map_err(io_error(to.display().to_string()))?;
            }
        }
    }
    let output = output.map_err(|source| PythonError::Io {
        what: format!("the output of {} compiling bytecode", compiler.executable.display()),
        source,
    })?;
    // 1: some file did not compile (its error is in the output); the rest did.
    if !matches!(output.status.code(), Some(0 | 1)) {
        return Err(PythonError::Bytecode {
            python: compiler.executable.display().to_string(),
            path: path.display().to_string(),
            output: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_version_is_not_found_and_the_host_python_is() {
        assert_eq!(find_compiler("3.1"), None);
        let host = Command::new("python3").args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"]).output();
        let Ok(host) = host else { return };
        let version = String::from_utf8_lossy(&host.stdout).trim().to_string();
        if let Some(found) = find_compiler(&version) {
            assert!(found.version.starts_with(&format!("{version}.")), "{found:?}");
            assert!(found.executable.is_absolute(), "{found:?}");
        }
    }

    #[test]
    fn pyc_files_name_the_image_path_and_skip_console_scripts() {
        let Some(compiler) = find_compiler("3.11") else { return };
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        fs::create_dir_all(root.join("pkg/sub")).unwrap();
        fs::create_dir_all(root.join("bin")).unwrap();
        fs::write(root.join("pkg/__init__.py"), "X = {'a', 'b'}\n").unwrap();
        fs::write(root.join("pkg/sub/mod.py"), "def f():\n    raise ValueError\n").unwrap();
        fs::write(root.join("pkg/broken.py"), "print 'python 2'\n").unwrap();
        fs::write(root.join("single.py"), "Y = 1\n").unwrap();
        fs::write(root.join("bin/tool.py"), "Z = 1\n").unwrap();
        let site = "/usr/local/lib/python3.11/site-packages";
        compile_tree(&compiler, root, site).unwrap();

        let pyc = root.join("pkg/sub/__pycache__/mod.cpython-311.pyc");
        let bytes = fs::read(&pyc).unwrap();
        assert_eq!(u32::from_le_bytes(bytes[4..8].try_into().unwrap()), 0b01, "unchecked-hash flag");
        let filename = |path: &Path| {
            let code = format!("import marshal; print(marshal.loads(open({:?}, 'rb').read()[16:]).co_filename)", path);
            let out = Command::new(&compiler.executable).args(["-c", &code]).output().unwrap();
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        assert_eq!(filename(&pyc), format!("{site}/pkg/sub/mod.py"));
        assert_eq!(filename(&root.join("__pycache__/single.cpython-311.pyc")), format!("{site}/single.py"));
        assert!(root.join("pkg/__pycache__/__init__.cpython-311.pyc").is_file());
        assert!(!root.join("pkg/__pycache__/broken.cpython-311.pyc").exists());
        assert!(!root.join("bin/__pycache__").exists());
    }
}
