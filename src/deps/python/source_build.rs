//! Wheels built on the build machine, without a container, for packages that
//! have no usable wheel: a source distribution (from an index or a URL,
//! verified by sha256) or a git commit.
//!
//! Only a pure-Python result (`py3-none-any`, `py2.py3-none-any`) can go into
//! the image this way: compiled code built here would link against the build
//! machine's interpreter and libraries, not the image's. A platform-specific
//! result stops the build with the package's name and `--builder buildah` as
//! the way out. Builds run with `SOURCE_DATE_EPOCH` set, so the common build
//! backends (setuptools, hatchling, flit, pdm) write the same wheel bytes
//! from the same source; the image's layer is made of the installed files,
//! which do not depend on the wheel's zip timestamps in any case.

use super::credentials::Credentials;
use super::resolver::uv_command;
use super::tags::{SupportedTags, WheelName};
use super::{io_err, run, PythonError, PythonInstaller, WheelSource, WheelSourceKind};
use sha2::{Digest as _, Sha256};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// 1980-01-01, the earliest time a zip entry can hold.
const SOURCE_DATE_EPOCH: &str = "315532800";

/// A wheel built from source, verified pure and stored in the wheel cache.
#[derive(Debug, Clone)]
pub struct BuiltWheel {
    pub filename: String,
    pub path: PathBuf,
    pub sha256: String,
    pub size: u64,
}

/// Builds `name` from `source` into `cache_dir/wheels/<sha256>/`.
pub fn build_wheel(
    name: &str,
    source: &WheelSource,
    installer: PythonInstaller,
    tags: &SupportedTags,
    credentials: &Credentials,
    cache_dir: &Path,
) -> Result<BuiltWheel, PythonError> {
    let builds = cache_dir.join("source-builds");
    fs::create_dir_all(&builds).map_err(io_err(builds.display().to_string()))?;
    let work =
        tempfile::Builder::new().prefix(".build-").tempdir_in(&builds).map_err(io_err(builds.display().to_string()))?;
    let tree = match source.kind {
        WheelSourceKind::Sdist => download_sdist(source, credentials, work.path())?,
        WheelSourceKind::Git => checkout_git(name, source, credentials, work.path())?,
    };
    let tree = match &source.subdirectory {
        Some(sub) => tree.join(sub),
        None => tree,
    };
    // Refuse before building what is sure to be compiled code: such builds
    // run for minutes (llama-cpp-python: 10 min of C++ here) only to give a
    // wheel the image cannot use.
    if let Some(backend) = compiled_code_backend(&tree)? {
        return Err(PythonError::PlatformSpecificBuild {
            name: name.to_string(),
            tag: format!("its build backend {backend} builds compiled code"),
            target: tags.description.clone(),
        });
    }
    let out = work.path().join("dist");
    fs::create_dir_all(&out).map_err(io_err(out.display().to_string()))?;
    let (tool, mut command) = match installer {
        PythonInstaller::Uv => {
            let mut command = uv_command();
            command.args(["build", "--wheel", "--quiet", "--out-dir"]).arg(&out).arg(&tree);
            ("uv", command)
        }
        PythonInstaller::Pip => {
            let mut command = super::host_python3();
            command
                .args(["-m", "pip", "wheel", "--quiet", "--no-deps", "--disable-pip-version-check", "--wheel-dir"])
                .arg(&out)
                .arg(&tree);
            ("pip", command)
        }
    };
    command.env("SOURCE_DATE_EPOCH", SOURCE_DATE_EPOCH).stdin(Stdio::null());
    let output = run(command, tool)?;
    if !output.status.success() {
        return Err(PythonError::SourceBuild {
            name: name.to_string(),
            source_url: source.url.clone(),
            output: credentials.redact_text(String::from_utf8_lossy(&output.stderr).trim()),
        });
    }
    let filename = fs::read_dir(&out)
        .map_err(io_err(out.display().to_string()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .find(|f| f.ends_with(".whl"))
        .ok_or_else(|| PythonError::Output(format!("{tool} built no wheel for {name}")))?;
    let wheel = WheelName::parse(&filename)
        .ok_or_else(|| PythonError::Output(format!("{tool} built `{filename}`, which is not a wheel name")))?;
    if !wheel.is_pure() {
        return Err(PythonError::PlatformSpecificBuild {
            name: name.to_string(),
            tag: WheelName::tag_text(&filename).to_string(),
            target: tags.description.clone(),
        });
    }
    if tags.rank(&wheel).is_none() {
        return Err(PythonError::NoWheel {
            name: name.to_string(),
            version: wheel.version.clone(),
            target: tags.description.clone(),
            offered: WheelName::tag_text(&filename).to_string(),
        });
    }
    let built = out.join(&filename);
    let (sha256, size) = hash_file(&built)?;
    let dir = cache_dir.join("wheels").join(&sha256);
    fs::create_dir_all(&dir).map_err(io_err(dir.display().to_string()))?;
    let path = dir.join(&filename);
    fs::File::open(&built).and_then(|f| f.sync_all()).map_err(io_err(built.display().to_string()))?;
    fs::rename(&built, &path).map_err(io_err(path.display().to_string()))?;
    Ok(BuiltWheel { filename, path, sha256, size })
}

/// Build backends whose projects are compiled extensions (CMake, Meson,
/// Rust, plain C/C++ builders); setuptools and the like may go either way
/// and are built to see.
const COMPILED_CODE_BACKENDS: [&str; 6] =
    ["scikit_build_core", "mesonpy", "maturin", "py_build_cmake", "cmeel", "enscons"];

/// The compiled-code build backend named in the source's `pyproject.toml`
/// (`tree` is a directory, or an sdist archive whose top folder holds it).
fn compiled_code_backend(tree: &Path) -> Result<Option<String>, PythonError> {
    let text =
        if tree.is_dir() { fs::read_to_string(tree.join("pyproject.toml")).ok() } else { sdist_pyproject(tree)? };
    let Some(text) = text else { return Ok(None) };
    let backend = toml::from_str::<toml::Table>(&text)
        .ok()
        .and_then(|t| t.get("build-system")?.get("build-backend")?.as_str().map(String::from));
    Ok(backend.filter(|b| COMPILED_CODE_BACKENDS.iter().any(|known| b.split('.').next() == Some(known))))
}

/// `<top>/pyproject.toml` of a `.tar.gz` sdist (other archive kinds: none).
fn sdist_pyproject(archive: &Path) -> Result<Option<String>, PythonError> {
    let name = archive.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if !name.ends_with(".tar.gz") {
        return Ok(None);
    }
    let file = fs::File::open(archive).map_err(io_err(archive.display().to_string()))?;
    let mut tar = tar::Archive::new(crate::image::tar_guard::TarGuard::new(flate2::read::GzDecoder::new(file)));
    let entries = tar.entries().map_err(io_err(archive.display().to_string()))?;
    for entry in entries {
        let mut entry = entry.map_err(io_err(archive.display().to_string()))?;
        let path = entry.path().map_err(io_err(archive.display().to_string()))?.into_owned();
        if path.components().count() == 2 && path.ends_with("pyproject.toml") {
            let mut text = String::new();
            // A pyproject.toml is small; cap it so a hostile archive cannot make us read gigabytes.
            (&mut entry).take(1 << 20).read_to_string(&mut text).map_err(io_err(archive.display().to_string()))?;
            return Ok(Some(text));
        }
    }
    Ok(None)
}

fn hash_file(path: &Path) -> Result<(String, u64), PythonError> {
    let mut file = fs::File::open(path).map_err(io_err(path.display().to_string()))?;
    let mut hasher = Sha256::new();
    let mut buffer = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = file.read(&mut buffer).map_err(io_err(path.display().to_string()))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
}

/// Downloads an sdist next to the build, checks its sha256 against the pin,
/// and returns its path (uv and pip build from an archive directly).
fn download_sdist(source: &WheelSource, credentials: &Credentials, work: &Path) -> Result<PathBuf, PythonError> {
    let expected = source.sha256.as_deref().unwrap_or_default();
    let filename = source.url.split(['#', '?']).next().unwrap_or_default().rsplit('/').next().unwrap_or("sdist");
    let path = work.join(filename);
    let mut file = fs::File::create(&path).map_err(io_err(path.display().to_string()))?;
    let (actual, _) = super::copy_hashed(&super::http_client()?, credentials, &source.url, &mut file)?;
    if actual != expected {
        return Err(PythonError::HashMismatch { url: source.url.clone(), expected: expected.to_string(), actual });
    }
    Ok(path)
}

fn git(args: &[&str], dir: &Path, credentials: &Credentials) -> Result<std::process::Output, PythonError> {
    let mut command = Command::new("git");
    command.args(args).current_dir(dir).env("GIT_TERMINAL_PROMPT", "0").stdin(Stdio::null());
    let output = run(command, "git")?;
    if output.status.success() {
        Ok(output)
    } else {
        let shown: Vec<String> = args.iter().map(|a| credentials.redact_text(a)).collect();
        Err(PythonError::Git {
            command: format!("git {}", shown.join(" ")),
            output: credentials.redact_text(String::from_utf8_lossy(&output.stderr).trim()),
        })
    }
}

/// Checks out the pinned commit: a shallow fetch of that commit when the
/// server allows it (GitHub, GitLab, `file://`), else a full clone.
fn checkout_git(
    name: &str,
    source: &WheelSource,
    credentials: &Credentials,
    work: &Path,
) -> Result<PathBuf, PythonError> {
    let commit = source
        .commit
        .as_deref()
        .ok_or_else(|| PythonError::Output(format!("{name}: a git source without a commit")))?;
    let url = credentials.apply(git_url(&source.url));
    let tree = work.join("src");
    fs::create_dir_all(&tree).map_err(io_err(tree.display().to_string()))?;
    git(&["init", "--quiet"], &tree, credentials)?;
    if git(&["fetch", "--quiet", "--depth", "1", &url, commit], &tree, credentials).is_err() {
        git(&["fetch", "--quiet", &url], &tree, credentials)?;
    }
    git(&["checkout", "--quiet", commit], &tree, credentials)?;
    if tree.join(".gitmodules").exists() {
        git(&["submodule", "update", "--quiet", "--init", "--recursive"], &tree, credentials)?;
    }
    Ok(tree)
}

/// The URL git itself takes (`git+https://…` → `https://…`).
fn git_url(url: &str) -> &str {
    url.strip_prefix("git+").unwrap_or(url)
}

/// Where the requested branch or tag of a locked git source points now, when
/// that is not the locked commit: the build then warns, as for hf revisions.
pub fn moved_revision(source: &WheelSource, credentials: &Credentials) -> Option<String> {
    let requested = source.requested_revision.as_deref()?;
    let commit = source.commit.as_deref()?;
    if requested == commit {
        return None;
    }
    let url = credentials.apply(git_url(&source.url));
    let output = git(&["ls-remote", &url, requested], Path::new("/"), credentials).ok()?;
    let text = String::from_utf8_lossy(&output.stdout);
    let now = text.lines().next()?.split_whitespace().next()?.to_string();
    (now != commit).then_some(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sdist(dir: &Path, pyproject: &str) -> PathBuf {
        let path = dir.join("pkg-1.0.tar.gz");
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            fs::File::create(&path).unwrap(),
            flate2::Compression::fast(),
        ));
        let mut header = tar::Header::new_gnu();
        header.set_size(pyproject.len() as u64);
        header.set_mode(0o644);
        header.set_cksum();
        builder.append_data(&mut header, "pkg-1.0/pyproject.toml", pyproject.as_bytes()).unwrap();
        builder.into_inner().unwrap().finish().unwrap();
        path
    }

    #[test]
    fn compiled_code_backends_are_known_before_building() {
        let dir = tempfile::tempdir().unwrap();
        let native = sdist(
            dir.path(),
            "[build-system]\nrequires = [\"scikit-build-core\"]\nbuild-backend = \"scikit_build_core.build\"\n",
        );
        assert_eq!(compiled_code_backend(&native).unwrap().as_deref(), Some("scikit_build_core.build"));
        let project = dir.path().join("tree");
        fs::create_dir_all(&project).unwrap();
        fs::write(project.join("pyproject.toml"), "[build-system]\nbuild-backend = \"setuptools.build_meta\"\n")
            .unwrap();
        assert_eq!(compiled_code_backend(&project).unwrap(), None, "setuptools may be pure: built to see");
        fs::write(project.join("pyproject.toml"), "[build-system]\nbuild-backend = \"maturin\"\n").unwrap();
        assert_eq!(compiled_code_backend(&project).unwrap().as_deref(), Some("maturin"));
    }
}
