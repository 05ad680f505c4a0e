//! `imgbake dockerfile`: the Spec as a Docker build context (Dockerfile,
//! .dockerignore, requirement files, app files, weights, volume manifest and
//! hook) that a container builder turns into the same image as the native
//! build. The Dockerfile comes from minijinja templates embedded in the
//! binary (`templates/`), so the text is readable and reviewable in one place.
//!
//! Stage order mirrors `crate::execute`: base → pre_build_commands → the
//! base's standard library compiled (when it has no bytecode) → apt →
//! Python → conda → app files → shell_commands → weights (one `COPY --from`
//! per split layer) or volume (manifest + hook + wrapped entrypoint) → image
//! settings. Everything the Dockerfile needs is put in the context, so the
//! build needs neither network for weights nor secrets.

pub mod builder;
pub mod context;
pub mod lint;

use crate::image::appfiles::{self, AppFilesError};
use crate::layout::weights::WeightsContent;
use crate::layout::{ImagePlan, LayerContent, VolumePlan, HOOK_PATH};
use crate::lock::Lock;
use crate::spec::{BaseImage, ConfigFormat, PythonInstaller, Requirement, Spec, WeightsEntry};
use crate::weights::manifest::MANIFEST_PATH;
use crate::weights::RemoteFile;
use serde::Serialize;
use std::path::{Path, PathBuf};

/// Cerebrium's default `docker_base_image_url` (a set value is what dockerfile_path ignores).
const CEREBRIUM_DEFAULT_BASE: &str = "debian:bookworm-slim";
const DOCKERFILE_TEMPLATE: &str = include_str!("../../templates/Dockerfile.j2");
const DOCKERIGNORE_TEMPLATE: &str = include_str!("../../templates/dockerignore.j2");

/// Context directory names (relative to the context root).
pub const APP_DIR: &str = "app";
pub const WEIGHTS_DIR: &str = "weights";
pub const REQUIREMENTS_DIR: &str = "requirements";
pub const IMGBAKE_DIR: &str = "imgbake";

/// Where the bytes of one context file come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContextSource {
    /// Generated content (Dockerfile, requirements, manifest).
    Bytes(Vec<u8>),
    /// A file of the user's project, copied.
    Copy(PathBuf),
    /// An immutable file (weights store blob, the hook binary): hard-linked
    /// when on the same filesystem, else copied.
    Link(PathBuf),
    /// A symlink with this target, copied as a link by the builder.
    Symlink(String),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContextFile {
    /// `/`-separated, relative to the context root.
    pub path: String,
    pub source: ContextSource,
}

/// A generated build context, before it is written.
#[derive(Debug, Clone)]
pub struct Context {
    pub dockerfile: String,
    pub dockerignore: String,
    pub files: Vec<ContextFile>,
    /// With `dockerfile_path`: the config settings the user's Dockerfile makes ignored.
    pub ignored_settings: Vec<String>,
    /// The Dockerfile is the user's own (`dockerfile_path`), not generated.
    pub users_dockerfile: bool,
    pub warnings: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum DockerfileError {
    /// Something this version does not generate; exit status 2.
    #[error("{0}")]
    NotAvailable(String),
    #[error("cannot select the app files")]
    AppFiles(#[source] AppFilesError),
    #[error("cannot read {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{origin}: {message}")]
    Weights { origin: String, message: String },
    #[error("{what}: {message}")]
    Unsupported { what: String, message: String, hint: String },
    #[error("cannot render the Dockerfile template")]
    Template(#[source] minijinja::Error),
    #[error("cannot write the build context at {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl crate::plumbing::errors::Hint for DockerfileError {
    fn hint(&self) -> Option<String> {
        match self {
            DockerfileError::Unsupported { hint, .. } => Some(hint.clone()),
            _ => None,
        }
    }
}

/// Remote weights, fetched for the context. The real one goes through the
/// verified download store (`weights::store`); tests may fetch offline.
pub trait RemoteWeights {
    /// A verified local copy of a baked remote file of `entry`.
    fn fetch(&self, entry: &WeightsEntry, file: &RemoteFile) -> Result<PathBuf, DockerfileError>;
    /// Fills in the sha256 of volume files their source gives none for.
    fn complete_hashes(&self, volume: &mut VolumePlan) -> Result<(), DockerfileError>;
    /// A uv binary for the image's architecture to put in the context, so
    /// Python packages install even on a base without pip or uv.
    fn uv_binary(&self) -> Option<PathBuf>;
    /// The build machine's CA bundle (`SSL_CERT_FILE`), for package indexes
    /// behind a TLS-inspecting proxy; used by the install step, never kept.
    fn ca_bundle(&self) -> Option<PathBuf>;
}

/// Options from the command line.
#[derive(Debug, Clone, Default)]
pub struct ContextOptions {
    /// `--base`: use this `FROM` instead of the config's base image.
    pub base_override: Option<String>,
}

/// The requirement files of the Python step. With a current `imgbake.lock`
/// (`lock`) that pins Python packages: every wheel as
/// `name==version --hash=sha256:…` (pip and uv then check each download,
/// and nothing unpinned can enter); without one: the Spec's requirements as
/// written.
pub fn requirements_files(spec: &Spec, lock: Option<&Lock>) -> Result<Vec<(String, String)>, DockerfileError> {
    if let Some(python) = lock.and_then(|l| l.python.as_ref()) {
        let mut text = format!(
            "# Pinned by imgbake.lock for Python {} on {}; hashes make pip/uv verify every wheel.\n",
            python.target.python_version, python.target.platform
        );
        // A git commit cannot be hash-checked by pip or uv, and hash-checking
        // is all or nothing: with a git requirement, the lines carry no hashes
        // (the commit id pins the source instead).
        let with_hashes = !python
            .packages
            .iter()
            .any(|w| w.built_from.as_ref().is_some_and(|s| s.kind == crate::deps::python::WheelSourceKind::Git));
        if !with_hashes {
            text.push_str(
                "# A git requirement cannot be hash-checked, so no line carries a hash; commits pin git sources.\n",
            );
        }
        for wheel in &python.packages {
            text.push_str(&locked_requirement_line(wheel, with_hashes));
            text.push('\n');
        }
        return Ok(vec![("requirements.lock.txt".to_string(), text)]);
    }
    let deps = &spec.dependencies;
    let mut text = String::new();
    for requirement in &deps.pip {
        text.push_str(&requirement.to_requirement_string());
        text.push('\n');
    }
    if let Some(path) = &deps.pip_file {
        let contents =
            std::fs::read_to_string(path).map_err(|source| DockerfileError::Read { path: path.clone(), source })?;
        text.push_str(&contents);
        if !text.ends_with('\n') {
            text.push('\n');
        }
    }
    Ok(if text.is_empty() { Vec::new() } else { vec![("requirements.txt".to_string(), text)] })
}

/// One pinned requirement: an index wheel by name, version and hash; a wheel
/// imgbake built natively by its pinned source (the sdist's URL and hash, or
/// the git commit), which the container's pip or uv builds the same way.
fn locked_requirement_line(wheel: &crate::deps::python::LockedWheel, with_hashes: bool) -> String {
    use crate::deps::python::WheelSourceKind;
    let (requirement, hash) = match &wheel.built_from {
        None => (format!("{}=={}", wheel.name, wheel.version), Some(wheel.sha256.as_str())),
        Some(source) => match source.kind {
            WheelSourceKind::Sdist => (format!("{} @ {}", wheel.name, source.url), source.sha256.as_deref()),
            WheelSourceKind::Git => {
                let url = source.url.strip_prefix("git+").unwrap_or(&source.url);
                let commit = source.commit.as_deref().unwrap_or_default();
                let subdirectory =
                    source.subdirectory.as_ref().map(|s| format!("#subdirectory={s}")).unwrap_or_default();
                (format!("{} @ git+{url}@{commit}{subdirectory}", wheel.name), None)
            }
        },
    };
    match hash.filter(|_| with_hashes) {
        Some(hash) => format!("{requirement} --hash=sha256:{hash}"),
        None => requirement,
    }
}

/// Package names from inline requirements and a one-per-line file (`#` comments).
fn package_list(inline: &[Requirement], file: Option<&Path>) -> Result<Vec<Requirement>, DockerfileError> {
    let mut all = inline.to_vec();
    if let Some(path) = file {
        let text = std::fs::read_to_string(path)
            .map_err(|source| DockerfileError::Read { path: path.to_path_buf(), source })?;
        for line in text.lines().map(|l| l.split('#').next().unwrap_or("").trim()).filter(|l| !l.is_empty()) {
            let split = line.find(['=', '>', '<', '!', '~']).unwrap_or(line.len());
            all.push(Requirement { name: line[..split].trim().to_string(), constraint: line[split..].to_string() });
        }
    }
    Ok(all)
}

/// `name` or `name=version`: apt installs an exact version or the newest.
fn apt_package(requirement: &Requirement) -> Result<String, DockerfileError> {
    let constraint = requirement.constraint.trim();
    if constraint.is_empty() {
        return Ok(requirement.name.clone());
    }
    match constraint.strip_prefix("==").or_else(|| constraint.strip_prefix('=')) {
        Some(version) if !version.is_empty() => Ok(format!("{}={version}", requirement.name)),
        _ => Err(DockerfileError::Unsupported {
            what: format!("apt package `{}`", requirement.name),
            message: format!("apt installs one exact version or the newest, not `{constraint}`"),
            hint: "write an exact version (\"1.2-3\") or \"latest\"".to_string(),
        }),
    }
}

/// Conda keeps its own match-spec syntax (`numpy=1.26`, `numpy>=1.26`).
fn conda_package(requirement: &Requirement) -> String {
    let constraint = requirement.constraint.trim();
    match constraint.strip_prefix("==") {
        Some(version) => format!("{}={version}", requirement.name),
        None => format!("{}{constraint}", requirement.name),
    }
}

/// A string as one Dockerfile word in double quotes (`ENV`, `LABEL`): `\`,
/// `"` and `$` are escaped so the builder takes it literally.
pub fn quote(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '\\' | '"' | '$' => {
                out.push('\\');
                out.push(c);
            }
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// A JSON array of strings, the exec form of `ENTRYPOINT`/`CMD`/`HEALTHCHECK`.
fn exec_form(words: &[String]) -> String {
    serde_json::to_string(words).expect("strings serialize")
}

/// `RUN` text for one command: shell form, or exec form through `/bin/sh -c`
/// when the command spans lines (shell form would end at the newline).
fn run_text(command: &str) -> String {
    if command.contains('\n') {
        exec_form(&["/bin/sh".to_string(), "-c".to_string(), command.to_string()])
    } else {
        command.to_string()
    }
}

#[derive(Debug, Serialize)]
struct PythonStep {
    installer: &'static str,
    interpreter: String,
    files: Vec<String>,
    origin: String,
    /// A uv binary from the build machine is in the context (`imgbake/tools/uv`).
    uv_in_context: bool,
    /// `imgbake/tools` exists in the context (uv and/or the CA bundle).
    tools_in_context: bool,
    /// The build machine's CA bundle is in the context for the install step.
    ca_in_context: bool,
    /// Compile `.pyc` files at install time (`[imgbake] bytecode`, on by default).
    bytecode: bool,
    /// sha256 (16 hex digits) of the requirement files, printed by the install
    /// step: a builder that caches a `RUN --mount=type=bind` step by its text
    /// alone (buildah 1.28, containers/buildah#5400) would otherwise keep the
    /// old install after a requirement changes.
    requirements_sha256: String,
}

/// The stdlib step, when the plan has the layer.
fn stdlib_view(plan: &ImagePlan, lock: Option<&Lock>) -> Option<StdlibView> {
    if !plan.layers.iter().any(|l| l.content == LayerContent::StdlibBytecode) {
        return None;
    }
    let python = lock?.python.as_ref()?;
    let stdlib = python.stdlib.as_ref()?;
    Some(StdlibView {
        interpreter: python.target.interpreter.clone(),
        dir: stdlib.dir.clone(),
        uncompiled: stdlib.uncompiled(),
    })
}

/// The digest of the requirement files (names and contents) the install step prints.
fn requirements_sha256(requirements: &[(String, String)]) -> String {
    use sha2::{Digest as _, Sha256};
    let mut hasher = Sha256::new();
    for (name, contents) in requirements {
        hasher.update(name.as_bytes());
        hasher.update([0]);
        hasher.update(contents.as_bytes());
        hasher.update([0]);
    }
    hasher.finalize().iter().take(8).map(|b| format!("{b:02x}")).collect()
}

#[derive(Debug, Serialize)]
struct WeightsLayerView {
    dir: String,
}

#[derive(Debug, Serialize)]
struct VolumeView {
    manifest_path: &'static str,
    hook_path: &'static str,
}

#[derive(Debug, Serialize)]
struct DockerfileView {
    version: &'static str,
    config: String,
    base: String,
    pre_build_commands: Vec<String>,
    stdlib: Option<StdlibView>,
    apt_packages: Vec<String>,
    apt_origin: String,
    python: Option<PythonStep>,
    conda_packages: Vec<String>,
    conda_origin: String,
    workdir: String,
    app_file_count: usize,
    shell_commands: Vec<String>,
    weights_layers: Vec<WeightsLayerView>,
    volume: Option<VolumeView>,
    labels: Vec<String>,
    env: Vec<String>,
    port: Option<u16>,
    healthcheck: Option<String>,
    entrypoint: Option<String>,
}

/// The base's standard library compiled in one step (`LayerContent::StdlibBytecode`).
#[derive(Debug, Serialize)]
struct StdlibView {
    interpreter: String,
    dir: String,
    uncompiled: u64,
}

fn render(template: &str, view: impl Serialize) -> Result<String, DockerfileError> {
    let mut env = minijinja::Environment::new();
    env.set_keep_trailing_newline(true);
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_template("t", template).map_err(DockerfileError::Template)?;
    let tmpl = env.get_template("t").map_err(DockerfileError::Template)?;
    let mut text = tmpl.render(view).map_err(DockerfileError::Template)?;
    if !text.ends_with('\n') {
        text.push('\n');
    }
    Ok(text)
}

fn config_name(spec: &Spec) -> String {
    spec.source.path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
}

/// `.dockerignore` lines under `app/` with the meaning `appfiles` gives the
/// config's patterns: later lines win, so everything not included goes first,
/// then the includes come back, then the excludes go again.
pub fn dockerignore_lines(include: &[String], exclude: &[String]) -> Vec<String> {
    let translate = |pattern: &str| -> Vec<String> {
        let trimmed = pattern.trim().trim_start_matches("./");
        let anchored = trimmed.starts_with('/');
        let body = trimmed.trim_start_matches('/').trim_end_matches('/');
        if body.is_empty() || matches!(body, "*" | "**") {
            return vec![format!("{APP_DIR}/**")];
        }
        if anchored || body.contains('/') {
            vec![format!("{APP_DIR}/{body}"), format!("{APP_DIR}/{body}/**")]
        } else {
            // No slash: any component at any depth, and everything below it.
            vec![format!("{APP_DIR}/**/{body}"), format!("{APP_DIR}/**/{body}/**")]
        }
    };
    let mut lines = Vec::new();
    let everything = include.iter().any(|p| matches!(p.trim().trim_start_matches("./"), "*" | "**" | ""));
    if !everything {
        lines.push(format!("{APP_DIR}/**"));
        lines.extend(include.iter().flat_map(|p| translate(p)).map(|l| format!("!{l}")));
    }
    lines.extend(exclude.iter().flat_map(|p| translate(p)));
    lines
}

/// Builds the whole context for `spec` as `plan` lays it out; `lock` is the
/// current imgbake.lock, if any.
pub fn generate(
    spec: &Spec,
    plan: &ImagePlan,
    lock: Option<&Lock>,
    options: &ContextOptions,
    remote: &dyn RemoteWeights,
) -> Result<Context, DockerfileError> {
    let config = config_name(spec);
    let config_file: Vec<PathBuf> = spec.source.path.file_name().map(PathBuf::from).into_iter().collect();
    let selection = appfiles::select_app_files(&spec.app.root, &spec.app.include, &spec.app.exclude, &config_file)
        .map_err(DockerfileError::AppFiles)?;
    if let Some(user_dockerfile) = &spec.build.dockerfile_path {
        let warnings = selection.warnings.iter().map(|w| w.to_string()).collect();
        return user_dockerfile_context(spec, user_dockerfile, &selection.files, warnings);
    }
    // The layout's warnings (app-file selection among them) are the build's too.
    let mut warnings: Vec<String> = plan.warnings.clone();
    for artifact in &plan.artifacts {
        warnings.push(format!(
            "{}: mode = \"artifact\": the weights are a ModelPack artifact that `imgbake build --push` pushes beside \
             the image, not part of it; this Dockerfile's image leaves them out (the pod mounts the artifact at {})",
            artifact.origin, artifact.mount_path
        ));
    }

    let mut files = Vec::new();
    for relative in &selection.files {
        let source = spec.app.root.join(relative);
        let path = format!("{APP_DIR}/{}", relative.to_string_lossy());
        let source = match std::fs::read_link(&source) {
            Ok(target) => ContextSource::Symlink(target.to_string_lossy().into_owned()),
            Err(_) => ContextSource::Copy(source),
        };
        files.push(ContextFile { path, source });
    }

    let requirements = requirements_files(spec, lock)?;
    for (name, contents) in &requirements {
        files.push(ContextFile {
            path: format!("{REQUIREMENTS_DIR}/{name}"),
            source: ContextSource::Bytes(contents.clone().into_bytes()),
        });
    }
    let deps = &spec.dependencies;
    let uv_binary = if requirements.is_empty() { None } else { remote.uv_binary() };
    if let Some(uv) = &uv_binary {
        files.push(ContextFile { path: format!("{IMGBAKE_DIR}/tools/uv"), source: ContextSource::Link(uv.clone()) });
    }
    let ca_bundle = if requirements.is_empty() { None } else { remote.ca_bundle() };
    if let Some(bundle) = &ca_bundle {
        files.push(ContextFile {
            path: format!("{IMGBAKE_DIR}/tools/ca-certificates.crt"),
            source: ContextSource::Copy(bundle.clone()),
        });
    }
    let python = (!requirements.is_empty()).then(|| PythonStep {
        installer: match spec.python.installer {
            PythonInstaller::Uv => "uv",
            PythonInstaller::Pip => "pip",
        },
        interpreter: spec.base.python_executable.clone().unwrap_or_else(|| "python3".to_string()),
        files: requirements.iter().map(|(name, _)| name.clone()).collect(),
        origin: origin_text(&deps.pip, deps.pip_file.as_deref(), spec),
        uv_in_context: uv_binary.is_some(),
        tools_in_context: uv_binary.is_some() || ca_bundle.is_some(),
        ca_in_context: ca_bundle.is_some(),
        bytecode: spec.python.bytecode,
        requirements_sha256: requirements_sha256(&requirements),
    });
    let apt_packages =
        package_list(&deps.apt, deps.apt_file.as_deref())?.iter().map(apt_package).collect::<Result<Vec<_>, _>>()?;
    let conda_packages: Vec<String> =
        package_list(&deps.conda, deps.conda_file.as_deref())?.iter().map(conda_package).collect();

    // Weights: one context directory per planned weights layer; the volume
    // layer laid out as in the image, so one COPY makes one layer (as natively).
    let mut weights_layers = Vec::new();
    let mut volume = None;
    for layer in &plan.layers {
        let layer_files: LayerFiles = match &layer.content {
            LayerContent::Weights { origin, files: planned, .. } => {
                let entry = entry_of(spec, origin);
                let mut copies = Vec::with_capacity(planned.len());
                for planned in planned {
                    let source = match &planned.file.content {
                        WeightsContent::Local(path) => ContextSource::Copy(path.clone()),
                        WeightsContent::Remote(file) => ContextSource::Link(remote.fetch(entry, file)?),
                    };
                    copies.push((planned.image_path.clone(), source));
                }
                copies
            }
            LayerContent::HfSnapshot { links, refs, .. } => links
                .iter()
                .map(|(link, target)| (link.clone(), ContextSource::Symlink(target.clone())))
                .chain(
                    refs.iter().map(|(path, commit)| (path.clone(), ContextSource::Bytes(commit.as_bytes().to_vec()))),
                )
                .collect(),
            LayerContent::Volume => {
                let mut planned = plan.volume.clone().expect("a volume layer is planned with its sources");
                remote.complete_hashes(&mut planned)?;
                let manifest = planned
                    .manifest(spec)
                    .map_err(|e| DockerfileError::Weights { origin: e.origin.clone(), message: e.to_string() })?;
                let volume_root = format!("{IMGBAKE_DIR}/volume");
                files.push(ContextFile {
                    path: format!("{volume_root}{MANIFEST_PATH}"),
                    source: ContextSource::Bytes(manifest.to_bytes()),
                });
                files.push(ContextFile {
                    path: format!("{volume_root}{HOOK_PATH}"),
                    source: ContextSource::Link(planned.hook.clone()),
                });
                for (path, target) in &planned.links {
                    files.push(ContextFile {
                        path: format!("{volume_root}/{path}"),
                        source: ContextSource::Symlink(target.clone()),
                    });
                }
                volume = Some(VolumeView { manifest_path: MANIFEST_PATH, hook_path: HOOK_PATH });
                continue;
            }
            _ => continue,
        };
        let mount = match &layer.content {
            LayerContent::Weights { origin, .. } | LayerContent::HfSnapshot { origin, .. } => {
                &entry_of(spec, origin).mount
            }
            _ => unreachable!("weights layers only"),
        };
        let dir = format!("{:02}-{}", weights_layers.len() + 1, sanitize(mount));
        for (path, source) in layer_files {
            files.push(ContextFile { path: format!("{WEIGHTS_DIR}/{dir}/{path}"), source });
        }
        weights_layers.push(WeightsLayerView { dir });
    }
    let entrypoint = plan.config.entrypoint.clone();

    // A current lock pins a registry base to the digest it was resolved with.
    let pinned = lock.and_then(|lock| lock.base.pinned.clone());
    let base = options.base_override.clone().or(pinned).unwrap_or_else(|| base_reference(&spec.base));
    if base.starts_with("oci:") || base.starts_with(crate::resolve::ROOTFS_PREFIX) {
        return Err(DockerfileError::Unsupported {
            what: format!("base `{base}`"),
            message: "a Dockerfile's FROM names a registry image".to_string(),
            hint: "push the base to a registry (skopeo copy) and pass --base HOST/REPO:TAG".to_string(),
        });
    }
    let view = DockerfileView {
        version: env!("CARGO_PKG_VERSION"),
        config: config.clone(),
        base,
        pre_build_commands: spec.build.pre_build_commands.iter().map(|c| run_text(c)).collect(),
        stdlib: stdlib_view(plan, lock),
        apt_packages,
        apt_origin: origin_text(&deps.apt, deps.apt_file.as_deref(), spec),
        python,
        conda_packages,
        conda_origin: origin_text(&deps.conda, deps.conda_file.as_deref(), spec),
        workdir: plan.config.workdir.clone(),
        app_file_count: selection.files.len(),
        shell_commands: spec
            .build
            .shell_commands
            .iter()
            .chain(&spec.build.build_commands)
            .map(|c| run_text(c))
            .collect(),
        weights_layers,
        volume,
        labels: plan.config.labels.iter().map(|(k, v)| format!("{k}={}", quote(v))).collect(),
        env: plan.config.env.iter().map(|(k, v)| format!("{k}={}", quote(v))).collect(),
        port: plan.config.port,
        healthcheck: healthcheck(spec),
        entrypoint: (!entrypoint.is_empty()).then(|| exec_form(&entrypoint)),
    };
    if spec.runtime.healthcheck_endpoint.is_some() && spec.runtime.port.is_none() {
        warnings.push("healthcheck_endpoint is set but no port; the Dockerfile has no HEALTHCHECK".to_string());
    }
    let dockerfile = render(DOCKERFILE_TEMPLATE, &view)?;
    let dockerignore = render(
        DOCKERIGNORE_TEMPLATE,
        serde_json::json!({ "config": config, "lines": dockerignore_lines(&spec.app.include, &spec.app.exclude) }),
    )?;
    Ok(Context { dockerfile, dockerignore, files, ignored_settings: Vec::new(), users_dockerfile: false, warnings })
}

/// `dockerfile_path`: the user's Dockerfile over the selected project files,
/// as Cerebrium builds it; the settings it makes ignored are reported.
fn user_dockerfile_context(
    spec: &Spec,
    user_dockerfile: &Path,
    selected: &[PathBuf],
    warnings: Vec<String>,
) -> Result<Context, DockerfileError> {
    let dockerfile = std::fs::read_to_string(user_dockerfile)
        .map_err(|source| DockerfileError::Read { path: user_dockerfile.to_path_buf(), source })?;
    let files = selected
        .iter()
        .filter(|relative| relative.as_os_str() != "Dockerfile")
        .map(|relative| ContextFile {
            path: relative.to_string_lossy().into_owned(),
            source: ContextSource::Copy(spec.app.root.join(relative)),
        })
        .collect();
    let deps = &spec.dependencies;
    let ignored: Vec<String> = [
        ("docker_base_image_url", spec.base.image != CEREBRIUM_DEFAULT_BASE),
        ("shell_commands", !spec.build.shell_commands.is_empty()),
        ("pre_build_commands", !spec.build.pre_build_commands.is_empty()),
        ("dependencies.pip", !deps.pip.is_empty() || deps.pip_file.is_some()),
        ("dependencies.apt", !deps.apt.is_empty() || deps.apt_file.is_some()),
        ("dependencies.conda", !deps.conda.is_empty() || deps.conda_file.is_some()),
        ("imgbake.weights", !spec.weights.is_empty()),
    ]
    .iter()
    .filter(|(_, set)| *set)
    .map(|(name, _)| name.to_string())
    .collect();
    let dockerignore = "# dockerfile_path: the context is the project's selected files.\n.imgbake-context\n";
    Ok(Context {
        dockerfile,
        dockerignore: dockerignore.to_string(),
        files,
        ignored_settings: ignored,
        users_dockerfile: true,
        warnings,
    })
}

/// The config's base image as a `FROM` reference (`scratch` stays `scratch`).
fn base_reference(base: &BaseImage) -> String {
    base.image.clone()
}

fn origin_text(inline: &[Requirement], file: Option<&Path>, spec: &Spec) -> String {
    let where_ = match spec.source.format {
        ConfigFormat::Cerebrium => "cerebrium.toml",
        ConfigFormat::Truss => "config.yaml",
    };
    match file {
        Some(path) if inline.is_empty() => {
            let relative = path.strip_prefix(&spec.source.project_dir).unwrap_or(path);
            format!("from {}", relative.display())
        }
        Some(_) => format!("from {where_} and a requirements file"),
        None => format!("from {where_}"),
    }
}

/// `HEALTHCHECK CMD` in exec form: the app's endpoint through the image's
/// Python (these are Python apps; curl is often missing from slim bases).
fn healthcheck(spec: &Spec) -> Option<String> {
    let endpoint = spec.runtime.healthcheck_endpoint.as_deref()?;
    let port = spec.runtime.port?;
    let path = if endpoint.starts_with('/') { endpoint.to_string() } else { format!("/{endpoint}") };
    let interpreter = spec.base.python_executable.clone().unwrap_or_else(|| "python3".to_string());
    let script = format!("import urllib.request; urllib.request.urlopen('http://127.0.0.1:{port}{path}', timeout=4)");
    Some(exec_form(&[interpreter, "-c".to_string(), script]))
}

/// A directory name from a mount (`sdxl-base`, `/models/llama` → `models-llama`).
fn sanitize(mount: &str) -> String {
    let name: String =
        mount.trim_matches('/').chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect();
    if name.is_empty() {
        "weights".to_string()
    } else {
        name
    }
}

/// One layer's files: (path below the layer directory = image path, source).
type LayerFiles = Vec<(String, ContextSource)>;

/// The config entry a planned layer came from.
fn entry_of<'a>(spec: &'a Spec, origin: &str) -> &'a WeightsEntry {
    spec.weights.iter().find(|e| e.origin == origin).expect("planned layers come from the config's entries")
}

/// The real remote weights: the verified download store under the cache dir.
pub struct StoreWeights {
    store: crate::weights::store::WeightsStore,
}

impl StoreWeights {
    pub fn open(cache_dir: &Path) -> Result<StoreWeights, DockerfileError> {
        let store = crate::weights::store::WeightsStore::open(cache_dir)
            .map_err(|e| DockerfileError::Weights { origin: "weights cache".to_string(), message: error_chain(&e) })?;
        Ok(StoreWeights { store })
    }
}

fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    crate::plumbing::errors::one_line(error)
}

impl StoreWeights {
    pub fn store(&self) -> &crate::weights::store::WeightsStore {
        &self.store
    }
}

impl RemoteWeights for StoreWeights {
    fn fetch(&self, entry: &WeightsEntry, file: &RemoteFile) -> Result<PathBuf, DockerfileError> {
        let fail = |message: String| DockerfileError::Weights { origin: entry.origin.clone(), message };
        let client = crate::weights::source::SourceClient::for_entry(entry).map_err(|e| fail(error_chain(&e)))?;
        let copy = self.store.fetch(file, || client.open(file)).map_err(|e| fail(error_chain(&e)))?;
        Ok(copy.path)
    }

    fn complete_hashes(&self, volume: &mut VolumePlan) -> Result<(), DockerfileError> {
        let mut warnings = Vec::new();
        crate::execute::volume::complete_hashes(volume, &self.store, &mut warnings)
            .map(|_| ())
            .map_err(|e| DockerfileError::Weights { origin: "volume".to_string(), message: error_chain(&e) })
    }

    fn uv_binary(&self) -> Option<PathBuf> {
        find_uv()
    }

    fn ca_bundle(&self) -> Option<PathBuf> {
        std::env::var_os("SSL_CERT_FILE").map(PathBuf::from).filter(|p| p.is_file())
    }
}

/// Names a uv binary to copy into the image's build (`IMGBAKE_UV_BINARY`).
pub const UV_BINARY_ENV: &str = "IMGBAKE_UV_BINARY";

/// The build machine's uv, when it is a real executable (not a shim script
/// such as pyenv's): `$IMGBAKE_UV_BINARY`, else `uv` on PATH, else the uv
/// Python package's binary. Only for x86_64/aarch64 Linux builds of the same
/// architecture as the image, which is the machine's own here.
pub fn find_uv() -> Option<PathBuf> {
    let is_elf = |path: &Path| {
        let mut magic = [0u8; 4];
        std::fs::File::open(path).and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic)).is_ok()
            && magic == *b"\x7fELF"
    };
    if let Some(path) = std::env::var_os(UV_BINARY_ENV).map(PathBuf::from) {
        return is_elf(&path).then_some(path);
    }
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    if let Some(found) = std::env::split_paths(&path_var).map(|dir| dir.join("uv")).find(|p| is_elf(p)) {
        return Some(found);
    }
    let output = std::process::Command::new("python3")
        .args(["-c", "import uv; print(uv.find_uv_bin())"])
        .stderr(std::process::Stdio::null())
        .output()
        .ok()?;
    let path = PathBuf::from(String::from_utf8_lossy(&output.stdout).trim());
    (output.status.success() && is_elf(&path)).then_some(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quoting_keeps_values_literal() {
        assert_eq!(quote("a b"), "\"a b\"");
        assert_eq!(quote("$HOME \"x\" \\"), "\"\\$HOME \\\"x\\\" \\\\\"");
    }

    #[test]
    fn apt_versions_are_exact_or_refused() {
        let req = |c: &str| Requirement { name: "ffmpeg".to_string(), constraint: c.to_string() };
        assert_eq!(apt_package(&req("")).unwrap(), "ffmpeg");
        assert_eq!(apt_package(&req("==7:5.1")).unwrap(), "ffmpeg=7:5.1");
        use crate::plumbing::errors::Hint as _;
        assert!(apt_package(&req(">=5")).unwrap_err().hint().unwrap().contains("exact version"));
    }

    #[test]
    fn dockerignore_says_what_appfiles_selects() {
        assert_eq!(
            dockerignore_lines(&["*".to_string()], &[".*".to_string(), "weights/".to_string()]),
            ["app/**/.*", "app/**/.*/**", "app/**/weights", "app/**/weights/**"]
        );
        assert_eq!(
            dockerignore_lines(&["*.py".to_string(), "/src/".to_string()], &[]),
            ["app/**", "!app/**/*.py", "!app/**/*.py/**", "!app/src", "!app/src/**"]
        );
    }

    #[test]
    fn multi_line_commands_use_the_exec_form() {
        assert_eq!(run_text("echo hi"), "echo hi");
        assert_eq!(run_text("a\nb"), "[\"/bin/sh\",\"-c\",\"a\\nb\"]");
    }
}
