//! Running the resolvers (uv, pip) for the image's interpreter and reading
//! what they pinned: per distribution either the one wheel the image's
//! interpreter would install ([`super::tags`]) or a source to build
//! ([`super::source_build`]).
//!
//! - uv: `uv pip compile --python-version V --python-platform P --format
//!   pylock.toml`. Its pylock lists every compatible wheel of a package and
//!   keeps environment markers it could not decide for a Python *range*;
//!   both are settled here for the exact target.
//! - pip: `pip install --dry-run --report` with `--platform`/`--python-version`
//!   and `--only-binary=:all:` (pip refuses target platforms otherwise). A
//!   package with no wheel at all then needs pip to run as the target
//!   interpreter: when the build machine's `python3` has the target's
//!   `major.minor`, pip resolves once more without the platform flags and
//!   builds what it must; otherwise the error says to use uv.

use super::tags::{SupportedTags, WheelName};
use super::{io_err, normalize_name, redact_url, run, PythonError, PythonTarget, WheelSource, WheelSourceKind};
use pep508_rs::{MarkerEnvironment, MarkerEnvironmentBuilder, MarkerTree};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::str::FromStr;

/// The uv binary to run; tests point it at an older release.
pub const UV_BINARY_ENV: &str = "IMGBAKE_UV";

pub fn uv_command() -> Command {
    Command::new(std::env::var_os(UV_BINARY_ENV).unwrap_or_else(|| "uv".into()))
}

/// What a resolver pinned for one distribution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Pinned {
    /// A wheel from an index or URL: the best-ranked one for the target.
    Wheel { name: String, version: String, url: String, sha256: String, size: u64 },
    /// No usable wheel: built on the build machine from this source.
    Source { name: String, version: String, source: WheelSource },
}

impl Pinned {
    pub fn name(&self) -> &str {
        match self {
            Pinned::Wheel { name, .. } | Pinned::Source { name, .. } => name,
        }
    }
}

/// The target's PEP 425 tags.
pub fn supported_tags(target: &PythonTarget) -> SupportedTags {
    SupportedTags::cpython_manylinux(&target.python_version, target.glibc())
}

/// PEP 508 marker environment of the target (CPython on x86_64 Linux). The
/// patch release is not known from the base's layers: `X.Y.0` is assumed,
/// as uv does for `--python-version X.Y`.
fn marker_environment(target: &PythonTarget) -> Result<MarkerEnvironment, PythonError> {
    let full = format!("{}.0", target.python_version);
    MarkerEnvironment::try_from(MarkerEnvironmentBuilder {
        implementation_name: "cpython",
        implementation_version: &full,
        os_name: "posix",
        platform_machine: "x86_64",
        platform_python_implementation: "CPython",
        platform_release: "",
        platform_system: "Linux",
        platform_version: "",
        python_full_version: &full,
        python_version: &target.python_version,
        sys_platform: "linux",
    })
    .map_err(|e| PythonError::Output(format!("marker environment for Python {}: {e}", target.python_version)))
}

pub fn resolve_with_uv(
    input: &Path,
    project_file: Option<&Path>,
    work: &Path,
    target: &PythonTarget,
) -> Result<Vec<Pinned>, PythonError> {
    let lock_path = work.join("pylock.toml");
    let mut command = uv_command();
    command
        .args(["pip", "compile", "--quiet", "--no-header", "--generate-hashes"])
        .args(["--python-version", &target.python_version, "--python-platform", &target.platform])
        .args(["--format", "pylock.toml", "-o"])
        .arg(&lock_path)
        .arg(input)
        .args(project_file);
    let output = run(command, "uv")?;
    if !output.status.success() {
        return Err(super::resolve_failure("uv", target, &output));
    }
    let text = fs::read_to_string(&lock_path).map_err(io_err("uv's pylock.toml"))?;
    parse_pylock(&text, target)
}

/// PEP 751 `pylock.toml` as uv writes it for one platform.
pub fn parse_pylock(text: &str, target: &PythonTarget) -> Result<Vec<Pinned>, PythonError> {
    #[derive(Deserialize)]
    struct Pylock {
        #[serde(default)]
        packages: Vec<Package>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct Package {
        name: String,
        version: Option<String>,
        marker: Option<String>,
        #[serde(default)]
        wheels: Vec<Artifact>,
        sdist: Option<Artifact>,
        archive: Option<Artifact>,
        vcs: Option<Vcs>,
        directory: Option<Directory>,
    }
    #[derive(Deserialize)]
    struct Artifact {
        url: Option<String>,
        path: Option<String>,
        size: Option<u64>,
        #[serde(default)]
        hashes: BTreeMap<String, String>,
        subdirectory: Option<String>,
    }
    #[derive(Deserialize)]
    #[serde(rename_all = "kebab-case")]
    struct Vcs {
        url: Option<String>,
        path: Option<String>,
        requested_revision: Option<String>,
        commit_id: String,
        subdirectory: Option<String>,
    }
    #[derive(Deserialize)]
    struct Directory {
        path: String,
    }
    fn location(artifact: &Artifact) -> Option<String> {
        match (&artifact.url, &artifact.path) {
            (Some(url), _) => Some(url.clone()),
            (None, Some(path)) => Some(format!("file://{path}")),
            (None, None) => None,
        }
    }

    let lock: Pylock = toml::from_str(text).map_err(|e| PythonError::Output(format!("pylock.toml: {e}")))?;
    let tags = supported_tags(target);
    let environment = marker_environment(target)?;
    let mut pinned = Vec::new();
    for package in lock.packages {
        if let Some(marker) = &package.marker {
            if !marker_applies(marker, &environment)? {
                continue;
            }
        }
        let name = normalize_name(&package.name);
        let version = package.version.unwrap_or_default();
        let sha256_of = |artifact: &Artifact| {
            artifact.hashes.get("sha256").cloned().ok_or_else(|| PythonError::Output(format!("{name} has no sha256")))
        };
        let filenames: Vec<String> =
            package.wheels.iter().map(|w| location(w).map(|l| file_name(&l).to_string()).unwrap_or_default()).collect();
        if let Some(best) = tags.best(filenames.iter().map(String::as_str)) {
            let wheel = &package.wheels[best];
            let url =
                location(wheel).ok_or_else(|| PythonError::Output(format!("{name} has a wheel without a URL")))?;
            pinned.push(Pinned::Wheel {
                sha256: sha256_of(wheel)?,
                name,
                version,
                url: redact_url(&url),
                size: wheel.size.unwrap_or(0),
            });
            continue;
        }
        let source = if let Some(vcs) = &package.vcs {
            let url = vcs.url.clone().or_else(|| vcs.path.as_ref().map(|p| format!("file://{p}"))).unwrap_or_default();
            WheelSource {
                kind: WheelSourceKind::Git,
                url: redact_url(&url),
                sha256: None,
                commit: Some(vcs.commit_id.clone()),
                requested_revision: vcs.requested_revision.clone(),
                subdirectory: vcs.subdirectory.clone(),
            }
        } else if let Some(artifact) = package.sdist.as_ref().or(package.archive.as_ref()) {
            let url = location(artifact).unwrap_or_default();
            if url.ends_with(".whl") {
                // A direct URL to a wheel: usable only if it fits the target.
                return Err(no_wheel(&name, &version, &tags, std::slice::from_ref(&url)));
            }
            WheelSource {
                kind: WheelSourceKind::Sdist,
                url: redact_url(&url),
                sha256: Some(sha256_of(artifact)?),
                commit: None,
                requested_revision: None,
                subdirectory: artifact.subdirectory.clone(),
            }
        } else if let Some(directory) = &package.directory {
            return Err(PythonError::LocalDirectory { name, path: directory.path.clone() });
        } else {
            return Err(no_wheel(&name, &version, &tags, &filenames));
        };
        pinned.push(Pinned::Source { name, version, source });
    }
    Ok(pinned)
}

fn marker_applies(marker: &str, environment: &MarkerEnvironment) -> Result<bool, PythonError> {
    let tree =
        MarkerTree::from_str(marker).map_err(|e| PythonError::Output(format!("environment marker `{marker}`: {e}")))?;
    Ok(tree.evaluate(environment, &[]))
}

fn file_name(url: &str) -> &str {
    url.split(['#', '?']).next().unwrap_or_default().rsplit('/').next().unwrap_or_default()
}

fn no_wheel(name: &str, version: &str, tags: &SupportedTags, wheels: &[String]) -> PythonError {
    let offered: Vec<&str> = wheels.iter().map(|w| WheelName::tag_text(file_name(w))).collect();
    PythonError::NoWheel {
        name: name.to_string(),
        version: version.to_string(),
        target: tags.description.clone(),
        offered: if offered.is_empty() { "none".to_string() } else { offered.join(", ") },
    }
}

/// pip's `--platform` list for a manylinux glibc version. pip does not expand
/// `manylinux_2_X` to older tags itself (uv does), so every older perennial
/// tag down to 2_5 is listed, with the legacy aliases (manylinux2014 = 2_17,
/// manylinux2010 = 2_12, manylinux1 = 2_5).
pub fn pip_platforms(target: &PythonTarget) -> Vec<String> {
    let minor = target.glibc().1;
    let mut platforms: Vec<String> = (5..=minor).rev().map(|m| format!("manylinux_2_{m}_x86_64")).collect();
    platforms.extend(["manylinux2014_x86_64", "manylinux2010_x86_64", "manylinux1_x86_64"].map(String::from));
    platforms
}

/// Rounds of [`missing_for_target`] before giving up (each adds what the
/// previous round's dependencies need; real sets close in one or two).
const PIP_MARKER_ROUNDS: usize = 4;

pub fn resolve_with_pip(input: &Path, work: &Path, target: &PythonTarget) -> Result<Vec<Pinned>, PythonError> {
    // pip evaluates environment markers for the interpreter that runs it,
    // whatever `--python-version` says (pip#11664): resolving for 3.10 on a
    // 3.11 machine drops `exceptiongroup; python_version < "3.11"`. So the
    // result is checked against the target's markers, and what the target
    // needs is added as a requirement until nothing is missing.
    let mut added: Vec<String> = Vec::new();
    for _ in 0..PIP_MARKER_ROUNDS {
        let round_input = work.join("requirements.pip.in");
        let mut lines = vec![format!("-r {}", input.display())];
        lines.extend(added.iter().cloned());
        fs::write(&round_input, lines.join("\n") + "\n").map_err(io_err("requirements.pip.in"))?;
        let json = pip_report(&round_input, work, target)?;
        let missing = missing_for_target(&json, target)?;
        if missing.is_empty() {
            return parse_pip_report(&reachable_on_target(json, target)?, target);
        }
        added.extend(missing);
    }
    Err(PythonError::Output(format!(
        "pip's result for Python {} still misses dependencies after {PIP_MARKER_ROUNDS} rounds (added so far: {}); set `use_uv = true`",
        target.python_version,
        added.join(", ")
    )))
}

/// pip's result walked as the target would install it: from the requested
/// packages (with the extras the user asked for) along the dependencies
/// whose markers hold for the target, each edge carrying the extras it asks
/// of the dependency (`cuda-toolkit[cudart,cufft]` from torch: pip's report
/// lists `requested_extras` only for requested packages).
struct TargetWalk {
    /// Packages reached, with the extras asked of them.
    reached: BTreeMap<String, std::collections::BTreeSet<pep508_rs::ExtraName>>,
    /// Requirement lines the target needs that pip's result lacks.
    missing: Vec<String>,
}

/// `None` when a dependency cannot be parsed or pip marked nothing as
/// requested: then pip's result is taken as it is.
fn walk_for_target(json: &serde_json::Value, target: &PythonTarget) -> Result<Option<TargetWalk>, PythonError> {
    type Requirement = pep508_rs::Requirement<pep508_rs::VerbatimUrl>;
    let environment = marker_environment(target)?;
    let installs = json["install"].as_array().map(Vec::as_slice).unwrap_or_default();
    let extras_of = |value: &serde_json::Value| -> std::collections::BTreeSet<pep508_rs::ExtraName> {
        value
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .filter_map(|e| pep508_rs::ExtraName::from_str(e.as_str()?).ok())
            .collect()
    };
    let mut requires: BTreeMap<String, Vec<Requirement>> = BTreeMap::new();
    let mut reached = BTreeMap::new();
    let mut queue = Vec::new();
    for item in installs {
        let name = normalize_name(item["metadata"]["name"].as_str().unwrap_or_default());
        let mut list = Vec::new();
        for text in item["metadata"]["requires_dist"].as_array().map(Vec::as_slice).unwrap_or_default() {
            match text.as_str().map(Requirement::from_str) {
                Some(Ok(requirement)) => list.push(requirement),
                _ => return Ok(None),
            }
        }
        requires.insert(name.clone(), list);
        if item["requested"].as_bool() == Some(true) {
            reached.insert(name.clone(), extras_of(&item["requested_extras"]));
            queue.push(name);
        }
    }
    if queue.is_empty() {
        return Ok(None);
    }
    let mut missing = Vec::new();
    while let Some(name) = queue.pop() {
        let extras: Vec<pep508_rs::ExtraName> = reached[&name].iter().cloned().collect();
        for requirement in requires.get(&name).map(Vec::as_slice).unwrap_or_default() {
            if !requirement.marker.evaluate(&environment, &extras) {
                continue;
            }
            let dependency = normalize_name(requirement.name.as_ref());
            if !requires.contains_key(&dependency) {
                let line = requirement_line(requirement);
                if !missing.contains(&line) {
                    missing.push(line);
                }
                continue;
            }
            let is_new = !reached.contains_key(&dependency);
            let asked: &mut std::collections::BTreeSet<pep508_rs::ExtraName> =
                reached.entry(dependency.clone()).or_default();
            let before = asked.len();
            asked.extend(requirement.extras.iter().cloned());
            // New package, or new extras for one already walked: walk it (again).
            // Extras only grow, so this ends, even on dependency cycles.
            if (is_new || asked.len() > before) && !queue.contains(&dependency) {
                queue.push(dependency);
            }
        }
    }
    Ok(Some(TargetWalk { reached, missing }))
}

/// `name[extras]specifiers` of a requirement, without its marker.
fn requirement_line(requirement: &pep508_rs::Requirement<pep508_rs::VerbatimUrl>) -> String {
    let mut line = requirement.name.to_string();
    if !requirement.extras.is_empty() {
        let extras: Vec<String> = requirement.extras.iter().map(|e| e.to_string()).collect();
        line.push_str(&format!("[{}]", extras.join(",")));
    }
    if let Some(pep508_rs::VersionOrUrl::VersionSpecifier(specifiers)) = &requirement.version_or_url {
        line.push_str(&specifiers.to_string());
    }
    line
}

/// The requirements the target needs that pip's result lacks.
fn missing_for_target(json: &serde_json::Value, target: &PythonTarget) -> Result<Vec<String>, PythonError> {
    Ok(walk_for_target(json, target)?.map(|walk| walk.missing).unwrap_or_default())
}

/// pip's result without the packages that only the build machine's markers
/// pulled in (not reached by [`walk_for_target`]). Left as it is when the
/// walk cannot be made (better one package too many than one too few).
fn reachable_on_target(mut json: serde_json::Value, target: &PythonTarget) -> Result<serde_json::Value, PythonError> {
    let Some(walk) = walk_for_target(&json, target)? else { return Ok(json) };
    if let Some(installs) = json["install"].as_array_mut() {
        installs.retain(|item| {
            walk.reached.contains_key(&normalize_name(item["metadata"]["name"].as_str().unwrap_or_default()))
        });
    }
    Ok(json)
}

/// One `pip install --dry-run --report` for the target; see the module doc
/// for the second, host-interpreter pass.
fn pip_report(input: &Path, work: &Path, target: &PythonTarget) -> Result<serde_json::Value, PythonError> {
    let report = work.join("report.json");
    let mut command = super::host_python3();
    // Not `--quiet`: pip explains a conflict at its info level.
    command.args(["-m", "pip", "install", "--dry-run", "--ignore-installed", "--only-binary=:all:"]).args([
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
        let binary_only_failure = super::resolve_failure("pip", target, &output);
        // A package with no wheel, or one whose fitting versions are sdists
        // only (pip then reports a conflict): resolve as a source-capable pip.
        let stderr = String::from_utf8_lossy(&output.stderr);
        if !super::missing_wheel_message(&stderr) && !stderr.contains("conflicting dependencies") {
            return Err(binary_only_failure);
        }
        // Some package has no wheel at all: pip must resolve as the target
        // interpreter, which only the build machine's own python3 can be.
        let host = host_python_version();
        if host.as_deref() != Some(target.python_version.as_str()) {
            return Err(PythonError::PipNeedsTargetPython {
                python: target.python_version.clone(),
                host: host.unwrap_or_else(|| "none".into()),
                cause: Box::new(binary_only_failure),
            });
        }
        let mut command = super::host_python3();
        command
            .args(["-m", "pip", "install", "--dry-run", "--ignore-installed", "--disable-pip-version-check"])
            .arg("--target")
            .arg(work.join("target"))
            .arg("--report")
            .arg(&report)
            .arg("-r")
            .arg(input);
        let output = run(command, "pip")?;
        if !output.status.success() {
            return Err(super::resolve_failure("pip", target, &output));
        }
    }
    serde_json::from_slice(&fs::read(&report).map_err(io_err("pip's report"))?)
        .map_err(|e| PythonError::Output(format!("pip report: {e}")))
}

/// `major.minor` of the build machine's `python3`, which runs pip.
fn host_python_version() -> Option<String> {
    let output = super::host_python3()
        .args(["-c", "import sys; print(f'{sys.version_info[0]}.{sys.version_info[1]}')"])
        .output()
        .ok()?;
    output.status.success().then(|| String::from_utf8_lossy(&output.stdout).trim().to_string())
}

/// pip's installation report (`--report`, format version 1).
pub fn parse_pip_report(json: &serde_json::Value, target: &PythonTarget) -> Result<Vec<Pinned>, PythonError> {
    let installs = json["install"].as_array().ok_or_else(|| PythonError::Output("pip report: no `install`".into()))?;
    let tags = supported_tags(target);
    installs
        .iter()
        .map(|item| {
            let name = normalize_name(item["metadata"]["name"].as_str().unwrap_or_default());
            let version = item["metadata"]["version"].as_str().unwrap_or_default().to_string();
            let info = &item["download_info"];
            let url = info["url"].as_str().unwrap_or_default();
            if name.is_empty() || url.is_empty() {
                return Err(PythonError::Output(format!("pip report entry without name or URL: {item}")));
            }
            if let Some(vcs) = info.get("vcs_info") {
                let commit = vcs["commit_id"].as_str().unwrap_or_default();
                if vcs["vcs"].as_str() != Some("git") || commit.is_empty() {
                    return Err(PythonError::Output(format!("{name}: only git requirements are supported: {url}")));
                }
                let source = WheelSource {
                    kind: WheelSourceKind::Git,
                    url: redact_url(url),
                    sha256: None,
                    commit: Some(commit.to_string()),
                    requested_revision: vcs["requested_revision"].as_str().map(String::from),
                    subdirectory: info["subdirectory"].as_str().map(String::from),
                };
                return Ok(Pinned::Source { name, version, source });
            }
            if info.get("dir_info").is_some() {
                return Err(PythonError::LocalDirectory { name, path: url.trim_start_matches("file://").to_string() });
            }
            let archive = &info["archive_info"];
            let sha256 = archive["hashes"]["sha256"]
                .as_str()
                .or_else(|| archive["hash"].as_str()?.strip_prefix("sha256="))
                .ok_or_else(|| PythonError::Output(format!("pip report: {name} has no sha256")))?
                .to_string();
            if file_name(url).ends_with(".whl") {
                if tags.best([file_name(url)]).is_none() {
                    return Err(no_wheel(&name, &version, &tags, &[url.to_string()]));
                }
                return Ok(Pinned::Wheel { name, version, url: redact_url(url), sha256, size: 0 });
            }
            let source = WheelSource {
                kind: WheelSourceKind::Sdist,
                url: redact_url(url),
                sha256: Some(sha256),
                commit: None,
                requested_revision: None,
                subdirectory: info["subdirectory"].as_str().map(String::from),
            };
            Ok(Pinned::Source { name, version, source })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(python: &str) -> PythonTarget {
        PythonTarget {
            python_version: python.into(),
            platform: "x86_64-manylinux_2_36".into(),
            interpreter: String::new(),
            site_packages: String::new(),
        }
    }

    /// What uv 0.13 writes for `requests` on cp311: three wheels for
    /// charset-normalizer, a marker on typing-extensions.
    const PYLOCK: &str = r#"
lock-version = "1.0"
created-by = "uv"
requires-python = ">=3.11"

[[packages]]
name = "charset-normalizer"
version = "3.5.3"
wheels = [
    { url = "https://files.example/charset_normalizer-3.5.3-cp311-cp311-manylinux1_x86_64.manylinux_2_28_x86_64.manylinux_2_5_x86_64.whl", size = 150000, hashes = { sha256 = "aa" } },
    { url = "https://files.example/charset_normalizer-3.5.3-cp37-abi3-manylinux1_x86_64.manylinux_2_28_x86_64.manylinux_2_5_x86_64.whl", size = 140000, hashes = { sha256 = "bb" } },
    { url = "https://files.example/charset_normalizer-3.5.3-py3-none-any.whl", size = 68878, hashes = { sha256 = "cc" } },
]

[[packages]]
name = "typing-extensions"
version = "4.16.0"
marker = "python_full_version < '3.13'"
wheels = [{ url = "https://files.example/typing_extensions-4.16.0-py3-none-any.whl", size = 10, hashes = { sha256 = "dd" } }]

[[packages]]
name = "tomli"
version = "2.2.0"
marker = "python_full_version < '3.11'"
wheels = [{ url = "https://files.example/tomli-2.2.0-py3-none-any.whl", size = 10, hashes = { sha256 = "ee" } }]

[[packages]]
name = "einops"
version = "0.8.2"
sdist = { url = "https://files.example/einops-0.8.2.tar.gz", size = 56261, hashes = { sha256 = "ff" } }
wheels = [{ url = "https://files.example/einops-0.8.2-py3-none-any.whl", size = 65638, hashes = { sha256 = "11" } }]

[[packages]]
name = "deepspeed"
version = "0.19.8"
sdist = { url = "https://user:secret@files.example/deepspeed-0.19.8.tar.gz", size = 2020482, hashes = { sha256 = "22" } }

[[packages]]
name = "hello-git"
version = "0.1.0"
vcs = { type = "git", url = "file:///srv/gitpkg", requested-revision = "main", commit-id = "5d3ec146c48de3e66384c372a5f1f21d83f0f010" }
"#;

    #[test]
    fn the_wheel_the_interpreter_would_install_is_pinned_and_false_markers_are_dropped() {
        let pinned = parse_pylock(PYLOCK, &target("3.11")).unwrap();
        let names: Vec<&str> = pinned.iter().map(Pinned::name).collect();
        assert_eq!(names, ["charset-normalizer", "typing-extensions", "einops", "deepspeed", "hello-git"]);
        let Pinned::Wheel { sha256, size, .. } = &pinned[0] else { panic!("{:?}", pinned[0]) };
        assert_eq!((sha256.as_str(), *size), ("aa", 150000));
        // Python 3.13 drops typing-extensions and takes abi3 over py3-none-any.
        let pinned = parse_pylock(PYLOCK, &target("3.13")).unwrap();
        assert!(pinned.iter().all(|p| p.name() != "typing-extensions"));
        let Pinned::Wheel { sha256, .. } = &pinned[0] else { panic!() };
        assert_eq!(sha256, "bb");
    }

    #[test]
    fn packages_without_a_fitting_wheel_become_sources_with_their_pins() {
        let pinned = parse_pylock(PYLOCK, &target("3.11")).unwrap();
        let Pinned::Source { source, .. } = &pinned[3] else { panic!("{:?}", pinned[3]) };
        assert_eq!(source.kind, WheelSourceKind::Sdist);
        assert_eq!(source.url, "https://files.example/deepspeed-0.19.8.tar.gz", "credentials never reach the lock");
        assert_eq!(source.sha256.as_deref(), Some("22"));
        let Pinned::Source { source, .. } = &pinned[4] else { panic!() };
        assert_eq!(source.kind, WheelSourceKind::Git);
        assert_eq!(source.commit.as_deref(), Some("5d3ec146c48de3e66384c372a5f1f21d83f0f010"));
        assert_eq!(source.requested_revision.as_deref(), Some("main"));
    }

    #[test]
    fn a_package_with_only_foreign_wheels_names_what_it_offers() {
        let text = r#"
[[packages]]
name = "flash-attn"
version = "2.8.0"
wheels = [{ url = "https://files.example/flash_attn-2.8.0-cp312-cp312-linux_x86_64.whl", hashes = { sha256 = "ab" } }]
"#;
        let error = parse_pylock(text, &target("3.11")).unwrap_err().to_string();
        assert!(error.contains("flash-attn 2.8.0 has no wheel for cp311 / manylinux_2_36 x86_64"), "{error}");
        assert!(error.contains("cp312-cp312-linux_x86_64"), "{error}");
    }

    #[test]
    fn pip_reports_give_wheels_sdists_and_git_commits() {
        let report = serde_json::json!({"install": [
            {"metadata": {"name": "Einops", "version": "0.8.2"}, "download_info": {"url": "https://files.example/einops-0.8.2-py3-none-any.whl", "archive_info": {"hash": "sha256=ab"}}},
            {"metadata": {"name": "hello_git", "version": "0.1.0"}, "download_info": {"url": "file:///srv/gitpkg", "vcs_info": {"vcs": "git", "commit_id": "5d3e", "requested_revision": "main"}}},
            {"metadata": {"name": "tiny", "version": "1.0"}, "download_info": {"url": "https://files.example/tiny-1.0.tar.gz", "archive_info": {"hashes": {"sha256": "cd"}}}},
        ]});
        let pinned = parse_pip_report(&report, &target("3.11")).unwrap();
        assert!(matches!(&pinned[0], Pinned::Wheel { name, sha256, .. } if name == "einops" && sha256 == "ab"));
        assert!(
            matches!(&pinned[1], Pinned::Source { name, source, .. } if name == "hello-git" && source.commit.as_deref() == Some("5d3e"))
        );
        assert!(
            matches!(&pinned[2], Pinned::Source { source, .. } if source.kind == WheelSourceKind::Sdist && source.sha256.as_deref() == Some("cd"))
        );
    }

    #[test]
    fn dependencies_the_target_needs_by_its_markers_are_found_missing() {
        // pip ran on 3.11 for a 3.10 image: anyio's exceptiongroup is missing.
        let report = serde_json::json!({"install": [
            {"metadata": {"name": "anyio", "version": "4.9.0", "requires_dist": [
                "exceptiongroup>=1.0.2; python_version < \"3.11\"",
                "idna>=2.8",
                "typing_extensions>=4.5; python_version < \"3.13\"",
                "trio>=0.26.1; extra == \"trio\"",
                "pywin32; sys_platform == \"win32\"",
            ]}, "requested": true, "requested_extras": []},
            {"metadata": {"name": "idna", "version": "3.10"}},
            {"metadata": {"name": "typing-extensions", "version": "4.13.0"}},
        ]});
        assert_eq!(missing_for_target(&report, &target("3.10")).unwrap(), ["exceptiongroup>=1.0.2"]);
        assert!(missing_for_target(&report, &target("3.11")).unwrap().is_empty());
        // And a package only the build machine's markers pulled in is dropped:
        // typing-extensions is needed below 3.13 only.
        let requested = report.clone();
        let names = |json: serde_json::Value| -> Vec<String> {
            json["install"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
                .collect()
        };
        assert_eq!(names(reachable_on_target(requested.clone(), &target("3.13")).unwrap()), ["anyio", "idna"]);
        assert_eq!(
            names(reachable_on_target(requested, &target("3.12")).unwrap()),
            ["anyio", "idna", "typing-extensions"]
        );
        let mut with_extra = report.clone();
        with_extra["install"][0]["requested_extras"] = serde_json::json!(["trio"]);
        assert_eq!(missing_for_target(&with_extra, &target("3.12")).unwrap(), ["trio>=0.26.1"]);
    }

    #[test]
    fn extras_asked_by_a_dependency_reach_that_dependency() {
        // torch 2.15 needs cuda-toolkit[cudart]; pip's report lists
        // requested_extras only for requested packages.
        let report = serde_json::json!({"install": [
            {"metadata": {"name": "torch", "version": "2.15.0", "requires_dist": [
                "cuda-toolkit[cudart]==13.2.2; platform_system == \"Linux\"",
            ]}, "requested": true},
            {"metadata": {"name": "cuda-toolkit", "version": "13.2.2", "requires_dist": [
                "nvidia-cuda-runtime==13.2.86.*; sys_platform == 'linux' and extra == 'cudart'",
                "nvidia-cufft==12.2.0.57.*; sys_platform == 'linux' and extra == 'cufft'",
            ]}, "requested": false},
            {"metadata": {"name": "nvidia-cuda-runtime", "version": "13.2.86"}, "requested": false},
            {"metadata": {"name": "nvidia-cufft", "version": "12.2.0.57"}, "requested": false},
        ]});
        let names: Vec<String> = reachable_on_target(report, &target("3.12")).unwrap()["install"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["metadata"]["name"].as_str().unwrap().to_string())
            .collect();
        assert_eq!(names, ["torch", "cuda-toolkit", "nvidia-cuda-runtime"]);
    }

    #[test]
    fn dependency_cycles_end() {
        let report = serde_json::json!({"install": [
            {"metadata": {"name": "a", "version": "1", "requires_dist": ["b"]}, "requested": true},
            {"metadata": {"name": "b", "version": "1", "requires_dist": ["a", "c"]}},
            {"metadata": {"name": "c", "version": "1", "requires_dist": ["b"]}},
        ]});
        let walk = walk_for_target(&report, &target("3.11")).unwrap().unwrap();
        assert_eq!(walk.reached.len(), 3);
        assert!(walk.missing.is_empty());
    }

    #[test]
    fn pip_gets_every_older_manylinux_tag() {
        let platforms = pip_platforms(&target("3.12"));
        assert_eq!(platforms[0], "manylinux_2_36_x86_64");
        assert!(platforms.contains(&"manylinux_2_17_x86_64".to_string()));
        assert!(platforms.contains(&"manylinux2014_x86_64".to_string()));
    }
}
