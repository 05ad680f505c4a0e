//! Conda packages, solved and installed by rattler (the engine behind pixi)
//! into a prefix layer (`/opt/conda`), without a container.
//!
//! rattler is driven through its Python bindings (py-rattler, from PyPI, as
//! uv is for Python packages) by the small bridge `conda_rattler.py`: the
//! Rust crates (rattler_solve, rattler_repodata_gateway, rattler) would add
//! about 650 crates to this build, doubling its compile time on CI machines,
//! for the same solver and installer.
//!
//! Channels: `IMGBAKE_CONDA_CHANNELS` (comma-separated names, URLs or local
//! directories), default `conda-forge`. Packages are solved for linux-64 with
//! the base's glibc as the `__glibc` virtual package. Link scripts are not
//! run (as with apt maintainer scripts); files get `/opt/conda` as their
//! prefix.

use crate::image::entries::{self, LayerEntry};
use crate::spec::Spec;
use serde::{Deserialize, Serialize};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const CHANNELS_ENV: &str = "IMGBAKE_CONDA_CHANNELS";
pub const DEFAULT_CHANNEL: &str = "conda-forge";
/// Where the environment lives in the image.
pub const PREFIX: &str = "/opt/conda";
pub const PLATFORM: &str = "linux-64";
const BRIDGE: &str = include_str!("conda_rattler.py");

/// One pinned conda package. Field order is the lock file's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedCondaPackage {
    pub name: String,
    pub version: String,
    pub build: String,
    pub subdir: String,
    pub url: String,
    pub sha256: String,
    pub size: u64,
    pub channel: String,
}

/// What the packages are solved for, recorded in the lock.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CondaTarget {
    pub channels: Vec<String>,
    pub platform: String,
    pub prefix: String,
    /// `__glibc` version given to the solver (`2.36`).
    pub glibc: String,
}

#[derive(Debug, thiserror::Error)]
pub enum CondaError {
    #[error("conda packages need py-rattler (rattler's Python bindings): `pip install py-rattler`\n{0}")]
    BridgeMissing(String),
    #[error("rattler could not solve the conda requirements {specs:?} from channels {channels:?} for {platform}:\n{output}\nhint: check the names and version constraints, and that the channels have {platform} or noarch builds")]
    Solve { specs: Vec<String>, channels: Vec<String>, platform: String, output: String },
    #[error("rattler could not install the locked conda packages:\n{0}")]
    Install(String),
    #[error("cannot read {what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot list the installed conda files")]
    Entries(#[source] entries::EntryError),
}

pub fn has_conda_deps(spec: &Spec) -> bool {
    !spec.dependencies.conda.is_empty() || spec.dependencies.conda_file.is_some()
}

pub fn channels() -> Vec<String> {
    std::env::var(CHANNELS_ENV)
        .ok()
        .map(|value| value.split(',').map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect::<Vec<_>>())
        .filter(|list| !list.is_empty())
        .unwrap_or_else(|| vec![DEFAULT_CHANNEL.to_string()])
}

pub fn target(glibc: Option<(u32, u32)>) -> CondaTarget {
    let (major, minor) = glibc.unwrap_or(crate::deps::python::DEFAULT_GLIBC);
    CondaTarget {
        channels: channels(),
        platform: PLATFORM.to_string(),
        prefix: PREFIX.to_string(),
        glibc: format!("{major}.{minor}"),
    }
}

/// The match specs of the config: inline ones, then `conda_pkglist.txt` lines.
pub fn specs_of(spec: &Spec) -> Result<Vec<String>, CondaError> {
    let mut specs: Vec<String> = spec.dependencies.conda.iter().map(|r| r.to_requirement_string()).collect();
    if let Some(file) = &spec.dependencies.conda_file {
        let text = std::fs::read_to_string(file)
            .map_err(|source| CondaError::Io { what: file.display().to_string(), source })?;
        specs.extend(
            text.lines()
                .map(|line| line.split('#').next().unwrap_or_default().trim())
                .filter(|line| !line.is_empty())
                .map(str::to_string),
        );
    }
    Ok(specs)
}

fn virtual_packages(target: &CondaTarget) -> serde_json::Value {
    serde_json::json!({ "__glibc": target.glibc, "__unix": "0", "__linux": "5.15" })
}

/// Runs the bridge with one JSON request; its stdout on success, stderr on failure.
fn bridge(request: &serde_json::Value) -> Result<Result<serde_json::Value, String>, CondaError> {
    let work = tempfile::tempdir().map_err(|source| CondaError::Io { what: "a temp dir".into(), source })?;
    let script = work.path().join("conda_rattler.py");
    std::fs::write(&script, BRIDGE).map_err(|source| CondaError::Io { what: script.display().to_string(), source })?;
    let mut child = Command::new("python3")
        .arg(&script)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| CondaError::BridgeMissing(e.to_string()))?;
    let mut stdin = child.stdin.take().expect("piped stdin");
    stdin
        .write_all(request.to_string().as_bytes())
        .map_err(|source| CondaError::Io { what: "the rattler bridge's input".into(), source })?;
    drop(stdin);
    let output =
        child.wait_with_output().map_err(|source| CondaError::Io { what: "the rattler bridge".into(), source })?;
    let stderr = String::from_utf8_lossy(&output.stderr).trim().to_string();
    if stderr.contains("No module named 'rattler'") {
        return Err(CondaError::BridgeMissing(stderr));
    }
    if !output.status.success() {
        return Ok(Err(stderr));
    }
    serde_json::from_slice(&output.stdout)
        .map(Ok)
        .map_err(|e| CondaError::Io { what: "the rattler bridge's output".into(), source: std::io::Error::other(e) })
}

/// Solves the config's conda specs into pinned packages, sorted by name.
pub fn resolve(spec: &Spec, target: &CondaTarget) -> Result<Vec<LockedCondaPackage>, CondaError> {
    let specs = specs_of(spec)?;
    let request = serde_json::json!({
        "op": "solve",
        "channels": target.channels,
        "specs": specs,
        "platform": target.platform,
        "virtual_packages": virtual_packages(target),
    });
    match bridge(&request)? {
        Ok(answer) => solved_packages(&answer),
        Err(output) => Err(CondaError::Solve {
            specs,
            channels: target.channels.clone(),
            platform: target.platform.clone(),
            output,
        }),
    }
}

/// The `packages` of the bridge's answer to a solve.
pub fn solved_packages(answer: &serde_json::Value) -> Result<Vec<LockedCondaPackage>, CondaError> {
    serde_json::from_value(answer["packages"].clone())
        .map_err(|e| CondaError::Io { what: "the solved packages".into(), source: std::io::Error::other(e) })
}

/// Installs the locked packages into a staging prefix cached by the lock's
/// content, and returns the layer entries at [`PREFIX`].
pub fn install(
    packages: &[LockedCondaPackage],
    target: &CondaTarget,
    cache_dir: &Path,
) -> Result<Vec<LayerEntry>, CondaError> {
    let key = {
        use sha2::Digest as _;
        let text = serde_json::to_string(&(packages, target)).unwrap_or_default();
        hex::encode(&sha2::Sha256::digest(text.as_bytes())[..16])
    };
    let root = cache_dir.join("conda-staging");
    let staging = root.join(&key);
    if !staging.is_dir() {
        std::fs::create_dir_all(&root).map_err(|source| CondaError::Io { what: root.display().to_string(), source })?;
        let temp = tempfile::Builder::new()
            .prefix(".staging-")
            .tempdir_in(&root)
            .map_err(|source| CondaError::Io { what: root.display().to_string(), source })?;
        let prefix_dir: PathBuf = temp.path().join("prefix");
        let request = serde_json::json!({
            "op": "install",
            "channels": target.channels,
            "platform": target.platform,
            "virtual_packages": virtual_packages(target),
            "packages": packages,
            "staging": prefix_dir,
            "prefix": target.prefix,
            "cache_dir": cache_dir.join("conda-packages"),
        });
        if let Err(output) = bridge(&request)? {
            return Err(CondaError::Install(output));
        }
        let kept = temp.keep();
        std::fs::rename(kept.join("prefix"), &staging)
            .map_err(|source| CondaError::Io { what: staging.display().to_string(), source })?;
        let _ = std::fs::remove_dir_all(kept);
    }
    entries::entries_from_dir(&staging, &target.prefix).map_err(CondaError::Entries)
}
