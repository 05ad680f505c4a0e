//! Python dependencies for the *image's* interpreter, resolved and installed
//! on the build machine without a container:
//!
//! 1. resolve: `uv pip compile --python-version V --python-platform P
//!    --only-binary :all: --format pylock.toml` (when `use_uv`), or pip's
//!    `install --dry-run --report` with `--platform/--python-version`; both
//!    give one wheel per distribution with its URL and sha256;
//! 2. fetch: each wheel is downloaded once into the cache and verified;
//! 3. install: each wheel is installed alone (`--no-deps --target`) by the
//!    same tool into its own staging tree, cached by wheel hash and target,
//!    and console scripts get the image's interpreter in their shebang;
//! 4. layers: distributions of [`LARGE_DISTRIBUTION`] bytes or more (torch,
//!    nvidia-*) get a layer each; the rest share one.
//!
//! The resolvers are uv and pip themselves: resolving Python dependencies is
//! a solved, hard problem, and their behaviour is what users expect. Index
//! settings come from their usual environment variables (`UV_INDEX_URL`,
//! `UV_FIND_LINKS`, `PIP_INDEX_URL`, `PIP_FIND_LINKS`, …).

use crate::build::basefs::BasePython;
use crate::image::entries::{self, EntryError, LayerEntry};
use crate::spec::{PythonInstaller, Spec};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Installed distributions of this many bytes or more get a layer of their own,
/// so that changing a small package does not re-push gigabytes. torch and the
/// nvidia-* wheels are hundreds of MB; numpy and most others are below this.
pub const LARGE_DISTRIBUTION: u64 = 64 << 20;

/// glibc assumed when the base's version is unknown (scratch, no dpkg status):
/// manylinux_2_28 covers current wheels and RHEL 8 / Debian 10 and newer.
pub const DEFAULT_GLIBC: (u32, u32) = (2, 28);

/// What packages are resolved and installed for.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PythonTarget {
    /// `major.minor`.
    pub python_version: String,
    /// uv's `--python-platform` name, e.g. `x86_64-manylinux_2_36`.
    pub platform: String,
    pub interpreter: String,
    pub site_packages: String,
}

/// One pinned wheel. Field order is the lock file's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LockedWheel {
    pub name: String,
    pub version: String,
    pub url: String,
    pub sha256: String,
    /// Bytes of the wheel; 0 when the resolver did not say (pip), filled on download.
    pub size: u64,
}

impl LockedWheel {
    pub fn filename(&self) -> &str {
        self.url.rsplit('/').next().unwrap_or(&self.url).split(['#', '?']).next().unwrap_or_default()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PythonError {
    #[error("`{tool}` is not installed or not on PATH (needed to resolve Python packages; install it with `pip install uv`)")]
    ToolMissing { tool: String },
    #[error(
        "{tool} could not resolve the Python requirements for Python {python} on {platform}:\n{output}\nhint: {hint}"
    )]
    Resolve { tool: String, python: String, platform: String, output: String, hint: String },
    #[error("{tool} failed to install {wheel}:\n{output}")]
    Install { tool: String, wheel: String, output: String },
    #[error("cannot read {what}")]
    Io {
        what: String,
        #[source]
        source: io::Error,
    },
    #[error("the resolver's output is not what imgbake expects: {0}")]
    Output(String),
    #[error("cannot download {url}")]
    Download {
        url: String,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("{url}: downloaded bytes have sha256 {actual}, the lock says {expected}; the wheel was not used")]
    HashMismatch { url: String, expected: String, actual: String },
    #[error("cannot list the installed files of {name}")]
    Entries {
        name: String,
        #[source]
        source: EntryError,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> PythonError {
    let what = what.into();
    move |source| PythonError::Io { what, source }
}

/// The interpreter and paths packages are installed for: the base's own
/// Python when the base has one (it is what runs them), else the config's
/// `python_version` at python:* image paths. Truss's `python_executable_path` wins.
pub fn target_for(
    spec: &Spec,
    base_python: Option<&BasePython>,
    glibc: Option<(u32, u32)>,
    warnings: &mut Vec<String>,
) -> PythonTarget {
    let (major, minor) = glibc.unwrap_or(DEFAULT_GLIBC);
    let platform = format!("x86_64-manylinux_{major}_{minor}");
    let mut target = match base_python {
        Some(python) => {
            if python.version != spec.python.version {
                warnings.push(format!(
                    "the base image's Python is {} but the config asks for {}; packages are resolved for {} (the interpreter that runs them)",
                    python.version, spec.python.version, python.version
                ));
            }
            PythonTarget {
                python_version: python.version.clone(),
                platform,
                interpreter: python.interpreter.clone(),
                site_packages: python.site_packages.clone(),
            }
        }
        None => {
            let version = &spec.python.version;
            PythonTarget {
                python_version: version.clone(),
                platform,
                interpreter: format!("/usr/local/bin/python{version}"),
                site_packages: format!("/usr/local/lib/python{version}/site-packages"),
            }
        }
    };
    if let Some(executable) = &spec.base.python_executable {
        target.interpreter = executable.clone();
    }
    target
}

/// The requirement lines a resolver sees: the config's inline requirements,
/// then a requirements file through `-r` (so its options keep working). A
/// `pyproject.toml` is given to uv as an input of its own (uv reads its
/// `[project.dependencies]`); pip cannot resolve one without building it.
pub fn requirement_input(spec: &Spec) -> Result<(Vec<String>, Option<PathBuf>), PythonError> {
    let mut lines: Vec<String> = spec.dependencies.pip.iter().map(|r| r.to_requirement_string()).collect();
    let mut project_file = None;
    if let Some(file) = &spec.dependencies.pip_file {
        if file.extension().is_some_and(|e| e == "toml") {
            if spec.python.installer == PythonInstaller::Pip {
                return Err(PythonError::Output(format!(
                    "{} is a pyproject file, which only uv can resolve without building the project; set `use_uv = true` or export it with `uv pip compile {} -o requirements.txt`",
                    file.display(),
                    file.display()
                )));
            }
            project_file = Some(file.clone());
        } else {
            lines.push(format!("-r {}", file.display()));
        }
    }
    Ok((lines, project_file))
}

pub fn has_python_deps(spec: &Spec) -> bool {
    !spec.dependencies.pip.is_empty() || spec.dependencies.pip_file.is_some()
}

/// Resolves the Spec's requirements for `target` into pinned wheels, sorted by name.
pub fn resolve(spec: &Spec, target: &PythonTarget) -> Result<Vec<LockedWheel>, PythonError> {
    let work = tempfile::tempdir().map_err(io_err("a temporary directory"))?;
    let input = work.path().join("requirements.in");
    let (lines, project_file) = requirement_input(spec)?;
    fs::write(&input, lines.join("\n") + "\n").map_err(io_err("requirements.in"))?;
    let mut wheels = match spec.python.installer {
        PythonInstaller::Uv => resolve_with_uv(&input, project_file.as_deref(), work.path(), target)?,
        PythonInstaller::Pip => resolve_with_pip(&input, work.path(), target)?,
    };
    wheels.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(wheels)
}

fn run(mut command: Command, tool: &str) -> Result<std::process::Output, PythonError> {
    command.output().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => PythonError::ToolMissing { tool: tool.to_string() },
        _ => PythonError::Io { what: format!("the output of {tool}"), source: e },
    })
}

fn resolve_failure(tool: &str, target: &PythonTarget, output: &std::process::Output) -> PythonError {
    let text = String::from_utf8_lossy(&output.stderr).trim().to_string();
    let lowered = text.to_lowercase();
    let no_wheel = lowered.contains("no wheels")
        || lowered.contains("no usable wheels")
        || lowered.contains("wheels are required")
        || lowered.contains("only has source distribution")
        || lowered.contains("no matching distribution")
        || lowered.contains("source distribution");
    let hint = if no_wheel {
        format!(
            "a package without a wheel for {} / Python {} must be built from source, which needs a container: \
             use `imgbake dockerfile` or `imgbake build --builder buildah`",
            target.platform, target.python_version
        )
    } else {
        "check the package names and version constraints in the config".to_string()
    };
    PythonError::Resolve {
        tool: tool.to_string(),
        python: target.python_version.clone(),
        platform: target.platform.clone(),
        output: text,
        hint,
    }
}

fn resolve_with_uv(
    input: &Path,
    project_file: Option<&Path>,
    work: &Path,
    target: &PythonTarget,
) -> Result<Vec<LockedWheel>, PythonError> {
    let lock_path = work.join("pylock.toml");
    let mut command = Command::new("uv");
    command
        .args(["pip", "compile", "--quiet", "--no-header", "--only-binary", ":all:", "--generate-hashes"])
        .args(["--python-version", &target.python_version, "--python-platform", &target.platform])
        .args(["--format", "pylock.toml", "-o"])
        .arg(&lock_path)
        .arg(input)
        .args(project_file);
    let output = run(command, "uv")?;
    if !output.status.success() {
        return Err(resolve_failure("uv", target, &output));
    }
    let text = fs::read_to_string(&lock_path).map_err(io_err("uv's pylock.toml"))?;
    parse_pylock(&text)
}

/// PEP 751 `pylock.toml` as uv writes it for one platform: one wheel per package.
fn parse_pylock(text: &str) -> Result<Vec<LockedWheel>, PythonError> {
    #[derive(Deserialize)]
    struct Pylock {
        #[serde(default)]
        packages: Vec<Package>,
    }
    #[derive(Deserialize)]
    struct Package {
        name: String,
        version: Option<String>,
        #[serde(default)]
        wheels: Vec<Wheel>,
    }
    #[derive(Deserialize)]
    struct Wheel {
        url: Option<String>,
        path: Option<String>,
        size: Option<u64>,
        #[serde(default)]
        hashes: BTreeMap<String, String>,
    }
    let lock: Pylock = toml::from_str(text).map_err(|e| PythonError::Output(format!("pylock.toml: {e}")))?;
    lock.packages
        .into_iter()
        .map(|package| {
            let [wheel] = <[Wheel; 1]>::try_from(package.wheels).map_err(|wheels| {
                PythonError::Output(format!(
                    "{} has {} wheels for one platform, expected 1",
                    package.name,
                    wheels.len()
                ))
            })?;
            let url = match (wheel.url, wheel.path) {
                (Some(url), _) => url,
                (None, Some(path)) => format!("file://{path}"),
                (None, None) => return Err(PythonError::Output(format!("{} has a wheel without a URL", package.name))),
            };
            let sha256 = wheel
                .hashes
                .get("sha256")
                .cloned()
                .ok_or_else(|| PythonError::Output(format!("{} has no sha256", package.name)))?;
            Ok(LockedWheel {
                name: package.name,
                version: package.version.unwrap_or_default(),
                url: redact_url(&url),
                sha256,
                size: wheel.size.unwrap_or(0),
            })
        })
        .collect()
}

/// pip's `--platform` list for a manylinux glibc version. pip does not expand
/// `manylinux_2_X` to older tags itself (uv does), so every older perennial
/// tag down to 2_5 is listed, with the legacy aliases (manylinux2014 = 2_17,
/// manylinux2010 = 2_12, manylinux1 = 2_5).
fn pip_platforms(target: &PythonTarget) -> Vec<String> {
    let minor = target.platform.rsplit('_').next().and_then(|m| m.parse::<u32>().ok()).unwrap_or(DEFAULT_GLIBC.1);
    let mut platforms: Vec<String> = (5..=minor).rev().map(|m| format!("manylinux_2_{m}_x86_64")).collect();
    platforms.extend(["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"].map(String::from));
    platforms
}

fn resolve_with_pip(input: &Path, work: &Path, target: &PythonTarget) -> Result<Vec<LockedWheel>, PythonError> {
    let report = work.join("report.json");
    let mut command = Command::new("python3");
    command.args(["-m", "pip", "install", "--quiet", "--dry-run", "--ignore-installed", "--only-binary=:all:"]).args([
        "--disable-pip-version-check",
        "--implementation",
        "cp",
        "--python-version",
        &target.python_version,
    ]);
    for platform in pip_platforms(target) {
        command.args(["--platform", &platform]);
    }
    command.arg("--target").arg(work.join("target")).arg("--report").arg(&report).arg("-r").arg(input);
    let output = run(command, "pip")?;
    if !output.status.success() {
        return Err(resolve_failure("pip", target, &output));
    }
    let json: serde_json::Value = serde_json::from_slice(&fs::read(&report).map_err(io_err("pip's report"))?)
        .map_err(|e| PythonError::Output(format!("pip report: {e}")))?;
    let installs = json["install"].as_array().ok_or_else(|| PythonError::Output("pip report: no `install`".into()))?;
    installs
        .iter()
        .map(|item| {
            let name = item["metadata"]["name"].as_str().unwrap_or_default();
            let url = item["download_info"]["url"].as_str().unwrap_or_default();
            let sha256 = item["download_info"]["archive_info"]["hashes"]["sha256"]
                .as_str()
                .or_else(|| item["download_info"]["archive_info"]["hash"].as_str()?.strip_prefix("sha256="));
            match (name, url, sha256) {
                ("", _, _) | (_, "", _) | (_, _, None) => {
                    Err(PythonError::Output(format!("pip report entry without name, URL or sha256: {item}")))
                }
                (name, url, Some(sha256)) => Ok(LockedWheel {
                    name: normalize_name(name),
                    version: item["metadata"]["version"].as_str().unwrap_or_default().to_string(),
                    url: redact_url(url),
                    sha256: sha256.to_string(),
                    size: 0,
                }),
            }
        })
        .collect()
}

/// PEP 503 normalized name (`Pydantic_Core` → `pydantic-core`).
pub fn normalize_name(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for c in name.chars() {
        if matches!(c, '-' | '_' | '.') {
            if !out.ends_with('-') {
                out.push('-');
            }
        } else {
            out.push(c.to_ascii_lowercase());
        }
    }
    out
}

/// Index URLs may carry credentials (`https://user:token@host/simple`); they
/// never reach the lock or a log.
pub fn redact_url(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else { return url.to_string() };
    let (authority, path) = rest.split_once('/').map(|(a, p)| (a, format!("/{p}"))).unwrap_or((rest, String::new()));
    match authority.rsplit_once('@') {
        Some((_, host)) => format!("{scheme}://{host}{path}"),
        None => url.to_string(),
    }
}

/// Downloads (or finds in the cache) every wheel, verified by sha256 and
/// size; returns their paths in the order given. Sizes the resolver did not
/// give are filled in.
pub fn fetch(wheels: &mut [LockedWheel], cache_dir: &Path) -> Result<Vec<PathBuf>, PythonError> {
    let client = reqwest::blocking::Client::builder()
        .connect_timeout(std::time::Duration::from_secs(30))
        .timeout(std::time::Duration::from_secs(1800))
        .build()
        .map_err(|e| PythonError::Download { url: "(client)".into(), source: Box::new(e) })?;
    wheels.iter_mut().map(|wheel| fetch_one(&client, wheel, cache_dir)).collect()
}

fn fetch_one(
    client: &reqwest::blocking::Client,
    wheel: &mut LockedWheel,
    cache_dir: &Path,
) -> Result<PathBuf, PythonError> {
    let dir = cache_dir.join("wheels").join(&wheel.sha256);
    let path = dir.join(wheel.filename());
    if let Ok(meta) = fs::metadata(&path) {
        // Only verified wheels are renamed into place, so presence means verified.
        wheel.size = meta.len();
        return Ok(path);
    }
    fs::create_dir_all(&dir).map_err(io_err(dir.display().to_string()))?;
    let mut temp = tempfile::NamedTempFile::new_in(&dir).map_err(io_err(dir.display().to_string()))?;
    let download_err =
        |source: Box<dyn std::error::Error + Send + Sync>| PythonError::Download { url: wheel.url.clone(), source };
    let mut reader: Box<dyn Read> = match wheel.url.strip_prefix("file://") {
        Some(local) => Box::new(fs::File::open(local).map_err(|e| download_err(Box::new(e)))?),
        None => Box::new(
            client.get(&wheel.url).send().and_then(|r| r.error_for_status()).map_err(|e| download_err(Box::new(e)))?,
        ),
    };
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    let mut buffer = vec![0u8; 1 << 20];
    loop {
        let n = reader.read(&mut buffer).map_err(|e| download_err(Box::new(e)))?;
        if n == 0 {
            break;
        }
        hasher.update(&buffer[..n]);
        temp.write_all(&buffer[..n]).map_err(io_err(dir.display().to_string()))?;
        size += n as u64;
    }
    let actual = hex::encode(hasher.finalize());
    if actual != wheel.sha256 {
        return Err(PythonError::HashMismatch { url: wheel.url.clone(), expected: wheel.sha256.clone(), actual });
    }
    if wheel.size != 0 && wheel.size != size {
        return Err(PythonError::Output(format!("{}: {size} bytes, the lock says {}", wheel.url, wheel.size)));
    }
    wheel.size = size;
    temp.as_file().sync_all().map_err(io_err(path.display().to_string()))?;
    temp.persist(&path).map_err(|e| PythonError::Io { what: path.display().to_string(), source: e.error })?;
    Ok(path)
}

/// One installed distribution, staged on disk.
#[derive(Debug, Clone)]
pub struct StagedDistribution {
    pub name: String,
    pub version: String,
    pub dir: PathBuf,
    /// Bytes of the installed files.
    pub installed_size: u64,
}

/// Installs each wheel alone into a cached staging tree (keyed by wheel hash,
/// tool and target), so an unchanged package is never installed twice.
pub fn install(
    wheels: &[LockedWheel],
    files: &[PathBuf],
    target: &PythonTarget,
    installer: PythonInstaller,
    cache_dir: &Path,
) -> Result<Vec<StagedDistribution>, PythonError> {
    let root = cache_dir.join("python-staging");
    fs::create_dir_all(&root).map_err(io_err(root.display().to_string()))?;
    let mut staged = Vec::with_capacity(wheels.len());
    for (wheel, file) in wheels.iter().zip(files) {
        let key = {
            let mut hasher = Sha256::new();
            for part in [
                wheel.sha256.as_str(),
                &format!("{installer:?}"),
                &target.python_version,
                &target.platform,
                &target.interpreter,
                env!("CARGO_PKG_VERSION"),
            ] {
                hasher.update(part.as_bytes());
                hasher.update([0]);
            }
            hex::encode(&hasher.finalize()[..16])
        };
        let dir = root.join(format!("{}-{}-{key}", wheel.name, wheel.version));
        if !dir.is_dir() {
            let temp = tempfile::Builder::new()
                .prefix(".staging-")
                .tempdir_in(&root)
                .map_err(io_err(root.display().to_string()))?;
            install_one(file, temp.path(), target, installer)?;
            tidy_staging(temp.path(), &target.interpreter)?;
            let temp = temp.keep();
            fs::rename(&temp, &dir).map_err(io_err(dir.display().to_string()))?;
        }
        staged.push(StagedDistribution {
            name: wheel.name.clone(),
            version: wheel.version.clone(),
            installed_size: tree_size(&dir),
            dir,
        });
    }
    Ok(staged)
}

fn install_one(
    wheel: &Path,
    into: &Path,
    target: &PythonTarget,
    installer: PythonInstaller,
) -> Result<(), PythonError> {
    let (tool, mut command) =
        match installer {
            PythonInstaller::Uv => {
                let mut command = Command::new("uv");
                command
                    .args(["pip", "install", "--quiet", "--no-deps", "--offline", "--no-index", "--no-compile"])
                    .args(["--python-version", &target.python_version, "--python-platform", &target.platform]);
                ("uv", command)
            }
            PythonInstaller::Pip => {
                let mut command = Command::new("python3");
                command
                    .args(["-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-compile"])
                    .args(["--disable-pip-version-check", "--only-binary=:all:", "--implementation", "cp"])
                    .args(["--python-version", &target.python_version]);
                for platform in pip_platforms(target) {
                    command.args(["--platform", &platform]);
                }
                ("pip", command)
            }
        };
    command.arg("--target").arg(into).arg(wheel);
    let output = run(command, tool)?;
    if !output.status.success() {
        return Err(PythonError::Install {
            tool: tool.to_string(),
            wheel: wheel.display().to_string(),
            output: String::from_utf8_lossy(&output.stderr).trim().to_string(),
        });
    }
    Ok(())
}

/// Makes a staging tree reproducible and right for the image: drops the
/// installer's own files that hold build-machine paths or times, and points
/// console scripts at the image's interpreter.
fn tidy_staging(dir: &Path, interpreter: &str) -> Result<(), PythonError> {
    let _ = fs::remove_file(dir.join(".lock"));
    let read = fs::read_dir(dir).map_err(io_err(dir.display().to_string()))?;
    for child in read.flatten() {
        let name = child.file_name().to_string_lossy().into_owned();
        if name.ends_with(".dist-info") {
            let info = child.path();
            for dropped in ["direct_url.json", "uv_cache.json"] {
                let _ = fs::remove_file(info.join(dropped));
            }
            let record = info.join("RECORD");
            if let Ok(text) = fs::read_to_string(&record) {
                let kept: String = text
                    .lines()
                    .filter(|line| !line.contains("direct_url.json") && !line.contains("uv_cache.json"))
                    .map(|line| format!("{line}\n"))
                    .collect();
                fs::write(&record, kept).map_err(io_err(record.display().to_string()))?;
            }
        }
    }
    let bin = dir.join("bin");
    if let Ok(read) = fs::read_dir(&bin) {
        for script in read.flatten() {
            let path = script.path();
            if !path.is_file() {
                continue;
            }
            let bytes = fs::read(&path).map_err(io_err(path.display().to_string()))?;
            if let Some(rewritten) = rewrite_shebang(&bytes, interpreter) {
                fs::write(&path, rewritten).map_err(io_err(path.display().to_string()))?;
            }
        }
    }
    Ok(())
}

/// `#!/build/machine/python` (any Python path) → `#!<interpreter>`; other files unchanged.
fn rewrite_shebang(bytes: &[u8], interpreter: &str) -> Option<Vec<u8>> {
    let rest = bytes.strip_prefix(b"#!")?;
    let end = rest.iter().position(|&b| b == b'\n').unwrap_or(rest.len());
    let line = std::str::from_utf8(&rest[..end]).ok()?;
    let program = line.split_whitespace().next()?;
    let is_python = program.rsplit('/').next().is_some_and(|name| name.starts_with("python"));
    if !is_python || program == interpreter {
        return None;
    }
    let mut out = format!("#!{interpreter}").into_bytes();
    out.extend_from_slice(&rest[end..]);
    Some(out)
}

fn tree_size(dir: &Path) -> u64 {
    walkdir::WalkDir::new(dir)
        .into_iter()
        .flatten()
        .filter(|e| e.file_type().is_file())
        .filter_map(|e| e.metadata().ok())
        .map(|m| m.len())
        .sum()
}

/// Layer entries for staged distributions: `bin/` goes to `/usr/local/bin`,
/// everything else into the target's site-packages.
pub fn layer_entries(staged: &[&StagedDistribution], target: &PythonTarget) -> Result<Vec<LayerEntry>, PythonError> {
    let mut by_path: BTreeMap<String, LayerEntry> = BTreeMap::new();
    let site = target.site_packages.trim_matches('/');
    for distribution in staged {
        let entries_err = |source| PythonError::Entries { name: distribution.name.clone(), source };
        let read = fs::read_dir(&distribution.dir).map_err(io_err(distribution.dir.display().to_string()))?;
        let mut children: Vec<_> = read.flatten().map(|c| c.file_name().to_string_lossy().into_owned()).collect();
        children.sort();
        for child in children {
            let prefix = if child == "bin" { "usr/local/bin".to_string() } else { format!("{site}/{child}") };
            for entry in entries::entries_from_dir(&distribution.dir.join(&child), &prefix).map_err(entries_err)? {
                // Parent directories are shared between distributions; the first wins.
                by_path.entry(entry.path.clone()).or_insert(entry);
            }
        }
    }
    entries::finish_entries(by_path.into_values().collect())
        .map_err(|source| PythonError::Entries { name: "python packages".into(), source })
}

/// Groups distributions into layers: each large one alone (largest first), then the rest together.
pub fn group_for_layers(staged: &[StagedDistribution]) -> Vec<Vec<&StagedDistribution>> {
    let (mut large, small): (Vec<&StagedDistribution>, Vec<&StagedDistribution>) =
        staged.iter().partition(|d| d.installed_size >= LARGE_DISTRIBUTION);
    large.sort_by(|a, b| b.installed_size.cmp(&a.installed_size).then(a.name.cmp(&b.name)));
    let mut groups: Vec<Vec<&StagedDistribution>> = large.into_iter().map(|d| vec![d]).collect();
    if !small.is_empty() {
        groups.push(small);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pylock_with_one_wheel_per_package_parses() {
        let text = r#"
lock-version = "1.0"
[[packages]]
name = "numpy"
version = "2.1.0"
wheels = [{ url = "https://files.example/numpy-2.1.0-cp312-cp312-manylinux_2_28_x86_64.whl", size = 10, hashes = { sha256 = "ab" } }]
[[packages]]
name = "tiny"
version = "1.0"
wheels = [{ path = "/wheels/tiny-1.0-py3-none-any.whl", hashes = { sha256 = "cd" } }]
"#;
        let wheels = parse_pylock(text).unwrap();
        assert_eq!(wheels[0].filename(), "numpy-2.1.0-cp312-cp312-manylinux_2_28_x86_64.whl");
        assert_eq!(wheels[0].size, 10);
        assert_eq!(wheels[1].url, "file:///wheels/tiny-1.0-py3-none-any.whl");
        assert_eq!(wheels[1].size, 0);
    }

    #[test]
    fn credentials_never_reach_a_recorded_url() {
        assert_eq!(redact_url("https://user:tok@pypi.example/simple/x.whl"), "https://pypi.example/simple/x.whl");
        assert_eq!(redact_url("https://pypi.example/x.whl"), "https://pypi.example/x.whl");
        assert_eq!(redact_url("file:///w/x.whl"), "file:///w/x.whl");
    }

    #[test]
    fn shebangs_point_at_the_image_interpreter() {
        let script = b"#!/root/.pyenv/versions/3.11.7/bin/python\nimport sys\n";
        assert_eq!(
            rewrite_shebang(script, "/usr/bin/python3.11").unwrap(),
            b"#!/usr/bin/python3.11\nimport sys\n".to_vec()
        );
        assert_eq!(rewrite_shebang(b"#!/bin/sh\necho\n", "/usr/bin/python3"), None);
        assert_eq!(rewrite_shebang(b"\x7fELF", "/usr/bin/python3"), None);
    }

    #[test]
    fn pip_gets_every_older_manylinux_tag() {
        let target = PythonTarget {
            python_version: "3.12".into(),
            platform: "x86_64-manylinux_2_28".into(),
            interpreter: String::new(),
            site_packages: String::new(),
        };
        let platforms = pip_platforms(&target);
        assert_eq!(platforms[0], "manylinux_2_28_x86_64");
        assert!(platforms.contains(&"manylinux_2_17_x86_64".to_string()));
        assert!(platforms.contains(&"manylinux2014_x86_64".to_string()));
    }

    #[test]
    fn names_are_normalized_like_pep_503() {
        assert_eq!(normalize_name("Pydantic_Core"), "pydantic-core");
        assert_eq!(normalize_name("zope.interface"), "zope-interface");
    }

    #[test]
    fn large_distributions_get_a_layer_each() {
        let d = |name: &str, size: u64| StagedDistribution {
            name: name.into(),
            version: "1".into(),
            dir: PathBuf::new(),
            installed_size: size,
        };
        let staged = vec![d("a", 1), d("torch", LARGE_DISTRIBUTION * 4), d("b", 2), d("nvidia-x", LARGE_DISTRIBUTION)];
        let groups: Vec<Vec<&str>> =
            group_for_layers(&staged).iter().map(|g| g.iter().map(|d| d.name.as_str()).collect()).collect();
        assert_eq!(groups, vec![vec!["torch"], vec!["nvidia-x"], vec!["a", "b"]]);
    }
}
