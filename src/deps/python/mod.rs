//! Python dependencies for the *image's* interpreter, resolved and installed
//! on the build machine without a container:
//!
//! 1. resolve ([`resolver`]): `uv pip compile --python-version V
//!    --python-platform P --format pylock.toml` (when `use_uv`), or pip's
//!    `install --dry-run --report` with `--platform/--python-version`; of the
//!    wheels they list, the one the image's interpreter would install is
//!    pinned ([`tags`]); a package with no usable wheel (an sdist, a `git+`
//!    requirement, an archive URL) is built into a wheel here when the result
//!    is pure Python ([`source_build`]), and the lock records its source;
//! 2. fetch: each wheel is downloaded once into the cache and verified (a
//!    built one is rebuilt from its pinned source when the cache lacks it),
//!    a few at a time;
//! 3. install, as each wheel arrives: each wheel is installed alone
//!    (`--no-deps --target`) by the same tool into its own staging tree,
//!    cached by wheel hash and target,
//!    and console scripts get the image's interpreter in their shebang;
//!    modules get `.pyc` files compiled by a CPython of the image's version
//!    ([`bytecode`]), unless `[imgbake] bytecode = false`;
//! 4. layers: distributions of [`LARGE_DISTRIBUTION`] bytes or more (torch,
//!    nvidia-*) get a layer each; the rest share one.
//!
//! The resolvers are uv and pip themselves: resolving Python dependencies is
//! a solved, hard problem, and their behaviour is what users expect. Index
//! settings come from their usual environment variables (`UV_INDEX_URL`,
//! `UV_FIND_LINKS`, `PIP_INDEX_URL`, `PIP_FIND_LINKS`, …) and from options in
//! requirements files; credentials in them stay in memory ([`credentials`]).

pub mod bytecode;
pub mod credentials;
pub mod resolver;
pub mod source_build;
pub mod tags;
pub mod wheel_size;

use crate::image::entries::{self, EntryError, LayerEntry};
use crate::plumbing::fs::AtomicFile;
use crate::spec::{PythonInstaller, Spec};
use credentials::Credentials;
use resolver::Pinned;
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

/// Installed bytes per wheel byte (wheels are zip-deflated), measured on
/// `fixtures/cerebrium-pip-apt` (docs/plan.md): the estimate of a
/// distribution's installed size when the lock does not record it.
pub const WHEEL_UNPACKED_FACTOR: f64 = 3.4;

/// glibc assumed when the base's version is unknown (scratch, no dpkg status):
/// manylinux_2_28 covers current wheels and RHEL 8 / Debian 10 and newer.
pub const DEFAULT_GLIBC: (u32, u32) = (2, 28);

/// The interpreter that will run the app's packages, and where they go.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BasePython {
    /// `major.minor`.
    pub version: String,
    /// Absolute path used in console-script shebangs.
    pub interpreter: String,
    /// Absolute path packages are installed into.
    pub site_packages: String,
}

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

impl PythonTarget {
    /// The glibc of `platform` (`x86_64-manylinux_2_36` → (2, 36)).
    pub fn glibc(&self) -> (u32, u32) {
        let mut parts = self.platform.rsplit('_');
        let minor = parts.next().and_then(|m| m.parse().ok());
        let major = parts.next().and_then(|m| m.parse().ok());
        major.zip(minor).unwrap_or(DEFAULT_GLIBC)
    }
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
    /// Bytes of the wheel's files once installed (before bytecode), read
    /// from its zip directory by `imgbake lock`; absent in older locks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub installed: Option<u64>,
    /// Bytes of its `.py` files: what an import reads, or compiles when
    /// there is no bytecode. Read with `installed`; absent in older locks.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub python_source: Option<u64>,
    /// Its compiled libraries (`.so` files, CUDA's included): how many, for
    /// an import loads them and their cost is per library (relocations and
    /// symbol lookups), not per byte. Read with `installed`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub native_libraries: Option<u64>,
    /// Set when imgbake built the wheel from source (no usable wheel on the
    /// index); `url` is then `built:<wheel file name>`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub built_from: Option<WheelSource>,
}

/// Where console scripts of installed wheels go in the image.
pub const CONSOLE_SCRIPTS_DIR: &str = "usr/local/bin";

/// Where a verified wheel lives in the cache.
pub fn cached_wheel_path(cache_dir: &Path, wheel: &LockedWheel) -> PathBuf {
    cache_dir.join("wheels").join(&wheel.sha256).join(wheel.filename())
}

/// `url` of a wheel imgbake built: `built:<file name>`.
pub const BUILT_URL_PREFIX: &str = "built:";

impl LockedWheel {
    /// Installed bytes: the lock's, else the wheel's bytes × [`WHEEL_UNPACKED_FACTOR`].
    pub fn installed_estimate(&self) -> u64 {
        self.installed.unwrap_or((self.size as f64 * WHEEL_UNPACKED_FACTOR) as u64)
    }

    pub fn filename(&self) -> &str {
        let url = self.url.strip_prefix(BUILT_URL_PREFIX).unwrap_or(&self.url);
        url.rsplit('/').next().unwrap_or(url).split(['#', '?']).next().unwrap_or_default()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WheelSourceKind {
    /// A source archive (`.tar.gz`, `.zip`) from an index or a URL.
    Sdist,
    /// A git repository at a commit.
    Git,
}

/// Where a built wheel's source was pinned. Field order is the lock file's.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WheelSource {
    pub kind: WheelSourceKind,
    /// The archive's or repository's URL, credentials removed.
    pub url: String,
    /// The archive's sha256 (sdist).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    /// The commit built (git).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub commit: Option<String>,
    /// The branch or tag the requirement named (git), to warn when it moves.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requested_revision: Option<String>,
    /// The project's folder inside the repository or archive.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subdirectory: Option<String>,
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
    #[error("{python} failed to compile the bytecode of {path}:\n{output}\nhint: set `bytecode = false` under [imgbake] to build without it")]
    Bytecode { python: String, path: String, output: String },
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
    #[error("{name} {version} has no wheel for {target} (wheels offered: {offered}) and no source to build it from\nhint: pin a version that ships a wheel for this Python, or build with a container: `imgbake build --builder buildah`")]
    NoWheel { name: String, version: String, target: String, offered: String },
    #[error("{name} has no wheel and its build gives a platform-specific wheel ({tag}): compiled code must be built for the image's interpreter and libraries ({target}), not the build machine's\nhint: build with a container: `imgbake build --builder buildah` (or `imgbake dockerfile`)")]
    PlatformSpecificBuild { name: String, tag: String, target: String },
    #[error("building a wheel for {name} from {source_url} failed:\n{output}\nhint: if it needs compilers or system libraries, build with a container: `imgbake build --builder buildah`")]
    SourceBuild { name: String, source_url: String, output: String },
    #[error("`{command}` failed:\n{output}\nhint: check the URL and commit; private repositories take credentials in the URL (`https://user:token@host/…`), which never reach the lock")]
    Git { command: String, output: String },
    #[error("{name} is a local directory requirement ({path}); imgbake cannot pin it\nhint: build it into a wheel and list the wheel, or build with a container: `imgbake build --builder buildah`")]
    LocalDirectory { name: String, path: String },
    #[error("pip found no solution from wheels alone (a package has no wheel, or only an sdist fits), and pip resolves source packages only as the image's interpreter (Python {python}); the build machine's python3 is {host}\nhint: set `use_uv = true` (uv resolves source packages for any Python), or build with a container: `imgbake build --builder buildah`")]
    PipNeedsTargetPython {
        python: String,
        host: String,
        #[source]
        cause: Box<PythonError>,
    },
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
/// Inline lines may be requirement-file options (Truss `requirements:`
/// takes `--extra-index-url …`, `-r other.txt`, `-c constraints.txt`,
/// `--find-links ./wheels`); their relative paths are made absolute against
/// the project directory, since the resolver reads the lines from elsewhere.
pub fn requirement_input(spec: &Spec) -> Result<(Vec<String>, Option<PathBuf>), PythonError> {
    let project = &spec.source.project_dir;
    let mut lines: Vec<String> =
        spec.dependencies.pip.iter().map(|r| absolute_option_paths(&r.to_requirement_string(), project)).collect();
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

/// `-r x.txt` → `-r /project/x.txt` (also `-c`, `--requirement`,
/// `--constraint`, `-f`/`--find-links` with a local path); other lines unchanged.
fn absolute_option_paths(line: &str, project: &Path) -> String {
    let trimmed = line.trim();
    for option in ["-r", "-c", "-f", "--requirement", "--constraint", "--find-links"] {
        let Some(rest) = trimmed.strip_prefix(option) else { continue };
        let value = match rest.strip_prefix('=') {
            Some(value) => value.trim(),
            None if rest.starts_with(char::is_whitespace) => rest.trim(),
            None => continue,
        };
        if value.is_empty() || value.contains("://") || Path::new(value).is_absolute() {
            return trimmed.to_string();
        }
        return format!("{option} {}", project.join(value).display());
    }
    trimmed.to_string()
}

pub fn has_python_deps(spec: &Spec) -> bool {
    !spec.dependencies.pip.is_empty() || spec.dependencies.pip_file.is_some()
}

/// Resolves the Spec's requirements for `target` into pinned wheels, sorted
/// by name; packages without a usable wheel are built from source (pure
/// Python only) into `cache_dir`.
pub fn resolve(spec: &Spec, target: &PythonTarget, cache_dir: &Path) -> Result<Vec<LockedWheel>, PythonError> {
    let work = tempfile::tempdir().map_err(io_err("a temporary directory"))?;
    let input = work.path().join("requirements.in");
    let (lines, project_file) = requirement_input(spec)?;
    fs::write(&input, lines.join("\n") + "\n").map_err(io_err("requirements.in"))?;
    let pinned = match spec.python.installer {
        PythonInstaller::Uv => resolver::resolve_with_uv(&input, project_file.as_deref(), work.path(), target)?,
        PythonInstaller::Pip => resolver::resolve_with_pip(&input, work.path(), target)?,
    };
    let credentials = credentials_of(spec);
    let tags = resolver::supported_tags(target);
    let mut wheels = pinned
        .into_iter()
        .map(|pinned| match pinned {
            Pinned::Wheel { name, version, url, sha256, size } => Ok(LockedWheel {
                name,
                version,
                url,
                sha256,
                size,
                installed: None,
                python_source: None,
                native_libraries: None,
                built_from: None,
            }),
            Pinned::Source { name, version, source } => {
                let built =
                    source_build::build_wheel(&name, &source, spec.python.installer, &tags, &credentials, cache_dir)?;
                Ok(LockedWheel {
                    name,
                    version,
                    url: format!("{BUILT_URL_PREFIX}{}", built.filename),
                    sha256: built.sha256,
                    size: built.size,
                    installed: None,
                    python_source: None,
                    native_libraries: None,
                    built_from: Some(source),
                })
            }
        })
        .collect::<Result<Vec<_>, PythonError>>()?;
    wheels.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(wheels)
}

/// The credentials the config's requirements and the environment carry.
pub fn credentials_of(spec: &Spec) -> Credentials {
    let mut texts: Vec<String> = spec.dependencies.pip.iter().map(|r| r.to_requirement_string()).collect();
    if let Some(file) = &spec.dependencies.pip_file {
        texts.extend(fs::read_to_string(file).ok());
    }
    Credentials::gather(texts.iter().map(String::as_str))
}

/// A command running the build machine's `python3` (which runs pip) by its
/// own executable, `sys.executable`, asked once. Through a pyenv shim,
/// `python3 -m pip install` also runs `pyenv rehash` when pip ends, and of
/// two at once (wheels are staged one per core) the second fails with
/// "cannot rehash" and makes a good install look failed. Without an answer,
/// plain `python3` (a missing one is then reported as such).
pub(crate) fn host_python3() -> Command {
    static EXECUTABLE: std::sync::OnceLock<Option<PathBuf>> = std::sync::OnceLock::new();
    let executable = EXECUTABLE.get_or_init(|| {
        let output = Command::new("python3").args(["-S", "-c", "import sys; print(sys.executable)"]).output().ok()?;
        let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
        (output.status.success() && path.is_absolute()).then_some(path)
    });
    Command::new(executable.as_deref().unwrap_or(Path::new("python3")))
}

pub(crate) fn run(mut command: Command, tool: &str) -> Result<std::process::Output, PythonError> {
    command.output().map_err(|e| match e.kind() {
        io::ErrorKind::NotFound => PythonError::ToolMissing { tool: tool.to_string() },
        _ => PythonError::Io { what: format!("the output of {tool}"), source: e },
    })
}

/// Whether a resolver's message says a package has no wheel.
pub(crate) fn missing_wheel_message(text: &str) -> bool {
    let lowered = text.to_lowercase();
    lowered.contains("no wheels")
        || lowered.contains("no usable wheels")
        || lowered.contains("wheels are required")
        || lowered.contains("only has source distribution")
        || lowered.contains("no matching distribution")
        || lowered.contains("source distribution")
}

pub(crate) fn resolve_failure(tool: &str, target: &PythonTarget, output: &std::process::Output) -> PythonError {
    let mut text = String::from_utf8_lossy(&output.stderr).trim().to_string();
    // pip explains a conflict on stdout ("The conflict is caused by: …").
    let stdout = String::from_utf8_lossy(&output.stdout);
    if let Some(start) = stdout.find("The conflict is caused by") {
        let explanation: Vec<&str> = stdout[start..].lines().take(30).collect();
        text = format!("{}\n{text}", explanation.join("\n").trim_end());
    }
    let text = credentials::redact_userinfo(&text);
    let hint = if text.contains("conflicting dependencies") {
        "a dependency with only a source distribution for this Python is invisible to a wheels-only resolution and \
         shows up as a conflict: `use_uv = true` names such packages; otherwise loosen the version constraints"
            .to_string()
    } else if missing_wheel_message(&text) {
        format!(
            "a package has no wheel for {} / Python {}; pure-Python packages are built from source, \
             others need a container: `imgbake build --builder buildah`",
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

/// The HTTP client for wheel and sdist downloads.
pub(crate) fn http_client() -> Result<reqwest::blocking::Client, PythonError> {
    crate::plumbing::http::blocking(std::time::Duration::from_secs(30), std::time::Duration::from_secs(1800))
        .build()
        .map_err(|e| PythonError::Download { url: "(client)".into(), source: Box::new(e) })
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

/// Fills in the sizes the resolver did not give (pip's report has none) from
/// the index's `Content-Length` (a HEAD request) or the local file, so that
/// `imgbake lock` of a torch-sized set does not download gigabytes; the
/// build checks every size when it downloads.
pub fn fill_sizes(wheels: &mut [LockedWheel], context: &FetchContext) -> Result<(), PythonError> {
    let client = http_client()?;
    for wheel in wheels.iter_mut().filter(|w| w.size == 0) {
        wheel.size = match wheel.url.strip_prefix("file://") {
            Some(local) => fs::metadata(local).map_err(io_err(local))?.len(),
            None => {
                let response = context
                    .credentials
                    .head(&client, &wheel.url)
                    .send()
                    .and_then(|r| r.error_for_status())
                    .map_err(|e| PythonError::Download { url: wheel.url.clone(), source: Box::new(e) })?;
                // Not `content_length()`: for a HEAD response that is the
                // (empty) body's length.
                response
                    .headers()
                    .get(reqwest::header::CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok()?.parse().ok())
                    .unwrap_or(0)
            }
        };
    }
    Ok(())
}

/// What fetching needs besides the lock: credentials for private indexes and
/// git hosts, and how to rebuild a wheel imgbake built when the cache lacks it.
pub struct FetchContext {
    pub credentials: Credentials,
    pub installer: PythonInstaller,
    pub tags: tags::SupportedTags,
}

impl FetchContext {
    pub fn new(spec: &Spec, target: &PythonTarget) -> FetchContext {
        FetchContext {
            credentials: credentials_of(spec),
            installer: spec.python.installer,
            tags: resolver::supported_tags(target),
        }
    }
}

/// Downloads at once: one stream from an index's CDN is bound by its round
/// trips and TCP's window, a few fill the link; more would only queue at
/// the index.
const PARALLEL_DOWNLOADS: usize = 4;

/// Fetches every wheel (or finds it in the cache), verified by sha256 and
/// size, and installs each into its staging tree as soon as it is here
/// (`stage_one`): downloads run [`PARALLEL_DOWNLOADS`] at a time, the largest
/// first, and installs one per core beside them, so a cold build's
/// downloads hide behind unpacking and compiling instead of coming before
/// them. Each distribution goes to `on_staged` as soon as it is staged
/// (which stops the work by returning false). A wheel imgbake built is
/// rebuilt from its pinned source when the cache lacks it.
pub fn fetch_and_install(
    wheels: &[LockedWheel],
    cache_dir: &Path,
    context: &FetchContext,
    target: &PythonTarget,
    compiler: Option<&bytecode::Compiler>,
    on_staged: &(dyn Fn(&StagedDistribution) -> bool + Sync),
    warnings: &mut Vec<String>,
) -> Result<(), PythonError> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::sync::{mpsc, Mutex};
    let client = http_client()?;
    let pyc = match compiler {
        Some(compiler) => format!("pyc cpython {}", compiler.version),
        None => "no pyc".to_string(),
    };
    let root = cache_dir.join("python-staging");
    fs::create_dir_all(&root).map_err(io_err(root.display().to_string()))?;
    // The largest first: unpacking and compiling torch alone takes most of
    // a cold build, so the others run beside it. Each tree is its own
    // directory, renamed into place whole, so the order they finish in
    // changes nothing.
    let mut order: Vec<usize> = (0..wheels.len()).collect();
    order.sort_by_key(|&index| std::cmp::Reverse(wheels[index].installed_estimate()));
    let installers = std::thread::available_parallelism().map_or(1, |n| n.get());
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let first_error: Mutex<Option<PythonError>> = Mutex::new(None);
    let fail = |error: PythonError| {
        failed.store(true, Ordering::Relaxed);
        first_error.lock().unwrap_or_else(|e| e.into_inner()).get_or_insert(error);
    };
    let fetch_warnings: Mutex<Vec<(usize, String)>> = Mutex::new(Vec::new());
    let (sender, receiver) = mpsc::channel::<(LockedWheel, PathBuf)>();
    let receiver = Mutex::new(receiver);
    std::thread::scope(|scope| {
        for _ in 0..PARALLEL_DOWNLOADS.min(order.len()) {
            let sender = sender.clone();
            let (client, order, next, failed, fail, fetch_warnings) =
                (&client, &order, &next, &failed, &fail, &fetch_warnings);
            scope.spawn(move || {
                while !failed.load(Ordering::Relaxed) {
                    let Some(&index) = order.get(next.fetch_add(1, Ordering::Relaxed)) else { return };
                    let mut wheel = wheels[index].clone();
                    let mut said = Vec::new();
                    match fetch_one(client, &mut wheel, cache_dir, context, &mut said) {
                        Ok(path) => {
                            let mut all = fetch_warnings.lock().unwrap_or_else(|e| e.into_inner());
                            all.extend(said.into_iter().map(|warning| (index, warning)));
                            drop(all);
                            if sender.send((wheel, path)).is_err() {
                                return;
                            }
                        }
                        Err(error) => return fail(error),
                    }
                }
            });
        }
        drop(sender);
        for _ in 0..installers {
            scope.spawn(|| loop {
                // One installer waits on the channel at a time; the others wait for it.
                let Ok((wheel, path)) = receiver.lock().unwrap_or_else(|e| e.into_inner()).recv() else {
                    return;
                };
                if failed.load(Ordering::Relaxed) {
                    return;
                }
                match stage_one(&wheel, &path, target, context.installer, compiler, &pyc, &root) {
                    Ok(distribution) if !on_staged(&distribution) => {
                        return fail(PythonError::Output("the build stopped before every wheel was installed".into()))
                    }
                    Ok(_) => {}
                    Err(error) => return fail(error),
                }
            });
        }
    });
    if let Some(error) = first_error.into_inner().unwrap_or_else(|e| e.into_inner()) {
        return Err(error);
    }
    let mut said = fetch_warnings.into_inner().unwrap_or_else(|e| e.into_inner());
    said.sort();
    warnings.extend(said.into_iter().map(|(_, warning)| warning));
    Ok(())
}

fn fetch_one(
    client: &reqwest::blocking::Client,
    wheel: &mut LockedWheel,
    cache_dir: &Path,
    context: &FetchContext,
    warnings: &mut Vec<String>,
) -> Result<PathBuf, PythonError> {
    let path = cached_wheel_path(cache_dir, wheel);
    let dir = path.parent().unwrap_or(cache_dir).to_path_buf();
    if let Ok(meta) = fs::metadata(&path) {
        // Only verified wheels are renamed into place, so presence means verified.
        wheel.size = meta.len();
        return Ok(path);
    }
    if let Some(source) = &wheel.built_from {
        let built = source_build::build_wheel(
            &wheel.name,
            source,
            context.installer,
            &context.tags,
            &context.credentials,
            cache_dir,
        )?;
        if built.sha256 != wheel.sha256 {
            warnings.push(format!(
                "the wheel built for {} from {} has sha256 {}, imgbake.lock says {} (its build backend does not write the same bytes twice); the image uses the new build",
                wheel.name, source.url, built.sha256, wheel.sha256
            ));
            wheel.sha256 = built.sha256;
        }
        wheel.size = built.size;
        return Ok(built.path);
    }
    fs::create_dir_all(&dir).map_err(io_err(dir.display().to_string()))?;
    let mut temp = AtomicFile::new_in(&dir).map_err(io_err(dir.display().to_string()))?;
    let (actual, size) = copy_hashed(client, &context.credentials, &wheel.url, temp.file_mut())?;
    if actual != wheel.sha256 {
        return Err(PythonError::HashMismatch { url: wheel.url.clone(), expected: wheel.sha256.clone(), actual });
    }
    if wheel.size != 0 && wheel.size != size {
        return Err(PythonError::Output(format!("{}: {size} bytes, the lock says {}", wheel.url, wheel.size)));
    }
    wheel.size = size;
    temp.persist(&path).map_err(io_err(path.display().to_string()))?;
    Ok(path)
}

/// Streams `url` (`file://`, or HTTP(S) with the host's credentials) into
/// `out`, hashing as the bytes pass; returns their sha256 and count.
pub(crate) fn copy_hashed(
    client: &reqwest::blocking::Client,
    credentials: &Credentials,
    url: &str,
    out: &mut dyn Write,
) -> Result<(String, u64), PythonError> {
    let download_err =
        |source: Box<dyn std::error::Error + Send + Sync>| PythonError::Download { url: url.to_string(), source };
    let mut reader: Box<dyn Read> = match url.strip_prefix("file://") {
        Some(local) => Box::new(fs::File::open(local).map_err(|e| download_err(Box::new(e)))?),
        None => {
            let response = credentials.get(client, url).send().and_then(|r| r.error_for_status());
            Box::new(response.map_err(|e| download_err(Box::new(e)))?)
        }
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
        out.write_all(&buffer[..n]).map_err(io_err(format!("the download of {url}")))?;
        size += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), size))
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

/// One wheel's staging tree: installed (and compiled) unless the cache has it.
fn stage_one(
    wheel: &LockedWheel,
    file: &Path,
    target: &PythonTarget,
    installer: PythonInstaller,
    compiler: Option<&bytecode::Compiler>,
    pyc: &str,
    root: &Path,
) -> Result<StagedDistribution, PythonError> {
    let key = {
        let mut hasher = Sha256::new();
        for part in [
            wheel.sha256.as_str(),
            &format!("{installer:?}"),
            &target.python_version,
            &target.platform,
            &target.interpreter,
            &target.site_packages,
            pyc,
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
            .tempdir_in(root)
            .map_err(io_err(root.display().to_string()))?;
        install_one(file, temp.path(), target, installer)?;
        tidy_staging(temp.path(), &target.interpreter)?;
        if let Some(compiler) = compiler {
            bytecode::compile_tree(compiler, temp.path(), &target.site_packages)?;
        }
        let temp = temp.keep();
        fs::rename(&temp, &dir).map_err(io_err(dir.display().to_string()))?;
    }
    Ok(StagedDistribution {
        name: wheel.name.clone(),
        version: wheel.version.clone(),
        installed_size: tree_size(&dir),
        dir,
    })
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
                let mut command = host_python3();
                command
                    .args(["-m", "pip", "install", "--quiet", "--no-deps", "--no-index", "--no-compile"])
                    .args(["--disable-pip-version-check", "--only-binary=:all:", "--implementation", "cp"])
                    .args(["--python-version", &target.python_version]);
                for platform in resolver::pip_platforms(target) {
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
            let prefix = if child == "bin" { CONSOLE_SCRIPTS_DIR.to_string() } else { format!("{site}/{child}") };
            for entry in entries::entries_from_dir(&distribution.dir.join(&child), &prefix).map_err(entries_err)? {
                // Parent directories are shared between distributions; the first wins.
                by_path.entry(entry.path.clone()).or_insert(entry);
            }
        }
    }
    entries::finish_entries(by_path.into_values().collect())
        .map_err(|source| PythonError::Entries { name: "python packages".into(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// pip through a pyenv shim also runs `pyenv rehash`, and two at once
    /// failed a build (seen in CI): pip runs on the interpreter itself.
    #[test]
    fn pip_runs_on_the_interpreter_itself_not_through_a_shim() {
        let command = host_python3();
        let program = Path::new(command.get_program());
        assert!(program.is_absolute(), "{program:?}");
        let output = host_python3().args(["-c", "import sys; print(sys.executable)"]).output().unwrap();
        assert_eq!(String::from_utf8_lossy(&output.stdout).trim(), program.to_str().unwrap());
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
    fn relative_paths_in_requirement_options_point_into_the_project() {
        let project = Path::new("/srv/app");
        assert_eq!(absolute_option_paths("-r requirements/base.txt", project), "-r /srv/app/requirements/base.txt");
        assert_eq!(absolute_option_paths("--constraint=c.txt", project), "--constraint /srv/app/c.txt");
        assert_eq!(absolute_option_paths("--find-links ./wheels", project), "--find-links /srv/app/./wheels");
        assert_eq!(
            absolute_option_paths("--extra-index-url https://pypi.example/simple", project),
            "--extra-index-url https://pypi.example/simple"
        );
        assert_eq!(absolute_option_paths("-f https://x.example/wheels", project), "-f https://x.example/wheels");
        assert_eq!(
            absolute_option_paths("requests>=2; python_version >= '3.8'", project),
            "requests>=2; python_version >= '3.8'"
        );
        assert_eq!(absolute_option_paths("-rfoo", project), "-rfoo");
    }

    #[test]
    fn names_are_normalized_like_pep_503() {
        assert_eq!(normalize_name("Pydantic_Core"), "pydantic-core");
        assert_eq!(normalize_name("zope.interface"), "zope-interface");
    }
}
