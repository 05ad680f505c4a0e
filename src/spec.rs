//! The normalized deployment: what `cerebrium.toml` or Truss `config.yaml` asks for,
//! with defaults applied and names unified. Everything after config loading
//! (lock, plan, image, dockerfile) reads only this.
//!
//! `imgbake validate --format json` prints it; field names are part of the
//! documented interface (`docs/spec.md`), so rename nothing without a version bump.

use serde::Serialize;
use std::collections::BTreeMap;
use std::path::PathBuf;

/// Default for `[imgbake] weights_split_mib`: files of 512 MiB or more get a
/// layer each, so a runtime pulls them in parallel (containerd pulls 3 layers
/// at a time, one connection each). Provisional until the cold-start lab
/// measures where splitting stops paying.
pub const DEFAULT_WEIGHTS_SPLIT_SIZE: u64 = 512 << 20;
/// The dependency split: the weights split's measured size (same pull, same runtime).
pub const DEFAULT_DEPENDENCY_SPLIT_SIZE: u64 = DEFAULT_WEIGHTS_SPLIT_SIZE;

/// The lock file's name, beside the config (see `crate::lock`).
pub const LOCK_FILE: &str = "imgbake.lock";

/// Version of the JSON shape printed by `validate --format json`.
pub const SPEC_SCHEMA_VERSION: u32 = 1;

/// The model root under which weights are mounted when no absolute path is given
/// (Truss's convention, used for every target so the app sees one path).
pub const DEFAULT_MODEL_ROOT: &str = "/app/model_cache";

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Spec {
    pub schema_version: u32,
    /// Where the config came from.
    pub source: SourceFile,
    pub name: String,
    pub base: BaseImage,
    pub python: Python,
    pub dependencies: Dependencies,
    pub app: AppFiles,
    pub runtime: Runtime,
    pub build: BuildCommands,
    pub hardware: Option<Hardware>,
    pub scaling: Option<Scaling>,
    pub cerebrium: Option<CerebriumSettings>,
    pub target: TargetSettings,
    pub compression: Compression,
    pub weights_mode: WeightsMode,
    pub weights_updates_per_week: Option<f64>,
    /// Baked weights files of at least this many bytes get a layer each.
    pub weights_split_size: u64,
    /// Python distributions installed larger than this are split across
    /// layers; smaller ones are packed into layers of at most this.
    pub dependency_split_size: u64,
    /// `[imgbake] artifact_repo`: where `mode = "artifact"` sources are
    /// pushed (else `<push repository>-weights-<mount>`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_repo: Option<String>,
    pub weights: Vec<WeightsEntry>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ConfigFormat {
    /// Cerebrium's `cerebrium.toml`.
    Cerebrium,
    /// Baseten Truss `config.yaml`.
    Truss,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SourceFile {
    pub path: PathBuf,
    pub format: ConfigFormat,
    /// The directory the config lives in; relative paths are resolved against it.
    pub project_dir: PathBuf,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BaseImage {
    /// An image reference (`debian:bookworm-slim`, `127.0.0.1:5000/base:1`),
    /// `oci:DIR[:TAG]` for a local layout, or `scratch`.
    pub image: String,
    /// Truss `base_image.python_executable_path`: the interpreter packages install for.
    pub python_executable: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PythonInstaller {
    Pip,
    Uv,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Python {
    /// `major.minor`, e.g. "3.12".
    pub version: String,
    pub installer: PythonInstaller,
    /// Compile `.pyc` for installed packages (`[imgbake] bytecode`, default
    /// true; shown in JSON only when false).
    #[serde(skip_serializing_if = "is_true")]
    pub bytecode: bool,
}

/// One requirement as pip/uv/conda will see it (`torch==2.0.0`, `numpy`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Requirement {
    pub name: String,
    /// The version constraint exactly as it will be written (`==2.0.0`, `>=1.5`); empty for any.
    pub constraint: String,
}

impl Requirement {
    pub fn to_requirement_string(&self) -> String {
        format!("{}{}", self.name, self.constraint)
    }
}

#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct Dependencies {
    pub pip: Vec<Requirement>,
    pub apt: Vec<Requirement>,
    pub conda: Vec<Requirement>,
    /// Requirement files, resolved against the project directory; they exist.
    pub pip_file: Option<PathBuf>,
    pub apt_file: Option<PathBuf>,
    pub conda_file: Option<PathBuf>,
}

/// Which project files go into the image (Cerebrium's include/exclude globs).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AppFiles {
    pub root: PathBuf,
    pub include: Vec<String>,
    pub exclude: Vec<String>,
    /// Where the files land in the image.
    pub workdir: String,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Runtime {
    /// The command the container runs; empty means the base image's own.
    pub entrypoint: Vec<String>,
    pub port: Option<u16>,
    pub healthcheck_endpoint: Option<String>,
    pub readycheck_endpoint: Option<String>,
    /// Truss `docker_server.predict_endpoint`: the route Baseten's /predict forwards to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub predict_endpoint: Option<String>,
    pub environment: BTreeMap<String, String>,
    /// Names of secrets the app expects at run time. Values never enter imgbake.
    pub secret_names: Vec<String>,
    /// Check that the entrypoint's programs are in the image (`[imgbake]
    /// check_entrypoint`, default true; shown in JSON only when false).
    #[serde(skip_serializing_if = "is_true")]
    pub check_entrypoint: bool,
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime {
            entrypoint: Vec::new(),
            port: None,
            healthcheck_endpoint: None,
            readycheck_endpoint: None,
            predict_endpoint: None,
            environment: BTreeMap::new(),
            secret_names: Vec::new(),
            check_entrypoint: true,
        }
    }
}

fn is_true(value: &bool) -> bool {
    *value
}

/// Steps that need a container builder (they run commands inside the image).
#[derive(Debug, Clone, PartialEq, Default, Serialize)]
pub struct BuildCommands {
    pub pre_build_commands: Vec<String>,
    pub shell_commands: Vec<String>,
    /// Truss `build_commands`.
    pub build_commands: Vec<String>,
    /// Cerebrium `runtime.custom.dockerfile_path`: the user's own Dockerfile.
    pub dockerfile_path: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hardware {
    pub cpu: Option<f64>,
    pub memory_gb: Option<f64>,
    /// One or more compute types in order of preference (`CPU`, `AMPERE_A10`, …).
    pub compute: Vec<String>,
    pub gpu_count: u32,
    pub provider: Option<String>,
    pub region: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scaling {
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub replica_concurrency: u32,
    pub response_grace_period: u32,
    pub cooldown: u32,
    pub scaling_metric: String,
    pub scaling_target: u32,
    pub scaling_buffer: Option<u32>,
    pub evaluation_interval: u32,
    /// Empty means Cerebrium's automatic choice.
    pub load_balancing: String,
    pub roll_out_duration_seconds: u32,
}

/// Cerebrium settings that do not change the image but are validated and kept.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CerebriumSettings {
    pub disable_auth: bool,
    pub deployment_initialization_timeout: u32,
    pub compute_tier: Option<String>,
    pub container_runtime: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Target {
    Cerebrium,
    Baseten,
    Runpod,
    Generic,
}

impl Target {
    pub const ALL: [&'static str; 4] = ["cerebrium", "baseten", "runpod", "generic"];

    pub fn parse(text: &str) -> Option<Target> {
        match text {
            "cerebrium" => Some(Target::Cerebrium),
            "baseten" => Some(Target::Baseten),
            "runpod" => Some(Target::Runpod),
            "generic" => Some(Target::Generic),
            _ => None,
        }
    }

    /// The name as written in the config (and of the target's built-in profile).
    pub fn as_str(self) -> &'static str {
        match self {
            Target::Cerebrium => "cerebrium",
            Target::Baseten => "baseten",
            Target::Runpod => "runpod",
            Target::Generic => "generic",
        }
    }

    /// False where each weights volume is mounted at the app's path itself (Baseten).
    pub fn has_shared_volume(self) -> bool {
        self != Target::Baseten
    }

    /// Where the platform mounts its shared volume in the container.
    pub fn default_volume_root(self) -> &'static str {
        match self {
            Target::Cerebrium => "/persistent-storage",
            Target::Baseten => DEFAULT_MODEL_ROOT,
            Target::Runpod => "/runpod-volume",
            Target::Generic => "/models",
        }
    }
}

impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TargetSettings {
    pub name: Target,
    /// Where the app reads weights: `<model_root>/<mount>`.
    pub model_root: String,
    /// Where the platform's volume is mounted.
    pub volume_root: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    Auto,
    Gzip,
    Zstd,
    None,
}

impl Compression {
    pub const ALL: [&'static str; 4] = ["auto", "gzip", "zstd", "none"];

    pub fn parse(text: &str) -> Option<Compression> {
        match text {
            "auto" => Some(Compression::Auto),
            "gzip" => Some(Compression::Gzip),
            "zstd" => Some(Compression::Zstd),
            "none" => Some(Compression::None),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightsMode {
    /// Decided by the plan's cost model.
    Auto,
    Bake,
    Volume,
    /// A ModelPack artifact in the registry, mounted by the node as a
    /// Kubernetes image volume (docs/weights.md, "Artifact").
    Artifact,
}

impl WeightsMode {
    pub const ALL: [&'static str; 4] = ["auto", "bake", "volume", "artifact"];

    pub fn parse(text: &str) -> Option<WeightsMode> {
        match text {
            "auto" => Some(WeightsMode::Auto),
            "bake" => Some(WeightsMode::Bake),
            "volume" => Some(WeightsMode::Volume),
            "artifact" => Some(WeightsMode::Artifact),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WeightsLayout {
    /// Files as they are in the source, under the mount path.
    Plain,
    /// A Hugging Face hub cache (`models--org--name/blobs|snapshots|refs`).
    HfCache,
}

impl WeightsLayout {
    /// Why a source of this layout cannot be a ModelPack artifact, or `None`.
    ///
    /// An artifact holds the model's files under their own names (each layer's
    /// `org.cncf.model.filepath`, what ModelPack and ORAS clients extract), and
    /// the node mounts it read-only at the source's path: the app loads it by
    /// that path (`from_pretrained("/app/model_cache/<mount>")`). An hf-cache
    /// tree would put content-named blobs, snapshot symlinks and `refs/` into
    /// the artifact instead, which no ModelPack consumer reads as a model, and
    /// it is not needed: the mount path already holds the files. The rule is
    /// here, on the spec, because the config loader refuses the combination
    /// and the layout and the cost model skip it.
    pub fn artifact_blocker(self) -> Option<&'static str> {
        match self {
            WeightsLayout::Plain => None,
            WeightsLayout::HfCache => Some(
                "layout \"hf-cache\" cannot be used with mode \"artifact\": a ModelPack artifact holds the model's files under their own names",
            ),
        }
    }
}

/// What to do instead of an hf-cache artifact (the config error's hint).
pub const ARTIFACT_HF_CACHE_HINT: &str =
    "drop `layout` (the artifact is mounted at the source's path; load it with from_pretrained(\"<that path>\")), or keep hf-cache with mode \"bake\" or \"volume\"";

/// Where weights come from, at a pinned (or to-be-pinned) revision.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum WeightsSource {
    /// Hugging Face hub: `hf://org/name@revision` or Truss `repo_id` + `revision`.
    Hf {
        repo: String,
        revision: String,
    },
    S3 {
        bucket: String,
        prefix: String,
    },
    Gcs {
        bucket: String,
        prefix: String,
    },
    Azure {
        container: String,
        prefix: String,
    },
    /// One file from a plain URL.
    Https {
        url: String,
    },
    /// A local directory, resolved against the project directory.
    Local {
        path: PathBuf,
    },
}

/// One weights source and what to do with it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct WeightsEntry {
    /// Where in the config it came from (`imgbake.weights[0]`, `model_cache[1]`, `weights[0]`).
    pub origin: String,
    /// The source as written.
    pub uri: String,
    pub source: WeightsSource,
    /// The folder name under the model root, or the absolute path as written.
    pub mount: String,
    /// The absolute path the app reads, in both modes.
    pub path: String,
    /// In volume mode: where the files live on the volume (`path` links there).
    pub volume_path: String,
    pub allow_patterns: Vec<String>,
    pub ignore_patterns: Vec<String>,
    /// Name of the env var / secret holding the credential; never its value.
    pub secret: Option<String>,
    /// The mode for this entry (its own `mode`, else `weights_mode`); `auto` is decided by the plan.
    pub mode: WeightsMode,
    pub layout: WeightsLayout,
}
