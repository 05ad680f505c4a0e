//! Parameter sets for the cost model: built-in profiles per platform, each
//! number with the source it comes from, and TOML files that override any
//! key (written by `plan --calibrate`, or by hand).
//!
//! A profile file looks like:
//!
//! ```toml
//! base = "cerebrium"            # optional: start from this built-in profile
//! [params]
//! unpack_gzip = 180e6           # bytes per second
//! runtime_codecs = ["gzip", "none"]   # what the target's runtime unpacks
//! [sources]
//! unpack_gzip = "measured on build-01, 2026-11-24"
//! ```

use super::estimate::Codec;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub const BUILTIN: [&str; 5] = ["cerebrium", "baseten", "runpod", "generic", "kubernetes"];

/// Every number the cost model uses. Rates are bytes per second of the
/// uncompressed (unpack, load) or transferred (pull, push, download) bytes.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Params {
    /// Registry → node bandwidth for all connections together.
    pub registry_bandwidth: f64,
    /// Registry → node bandwidth of one connection (containerd uses one per layer).
    pub layer_bandwidth: f64,
    /// Layers downloaded at once.
    pub pull_concurrency: f64,
    /// 1 when layers are unpacked while later ones still download (containerd), 0 when after.
    pub unpack_overlaps_pull: f64,
    pub unpack_gzip: f64,
    pub unpack_zstd: f64,
    pub unpack_none: f64,
    /// Seconds per tar entry unpacked (file creation, metadata), beside the byte rate.
    pub unpack_entry_seconds: f64,
    /// Cold sequential read of a large file from local disk (page cache empty).
    pub disk_read: f64,
    /// Sequential write of a large new file (fresh blocks) to local disk.
    pub disk_write: f64,
    /// File bytes written on the node that its page cache still holds when the
    /// app reads them (weights just unpacked, or just downloaded by the hook).
    pub page_cache_bytes: f64,
    /// Reading file bytes that are in the page cache (memory speed).
    pub page_cache_read: f64,
    pub volume_read: f64,
    pub volume_write: f64,
    /// Weights source (hub, bucket) → node, all prefetch downloads together.
    pub source_bandwidth: f64,
    /// Weights source → node over one connection (one file).
    pub source_connection_bandwidth: f64,
    /// Files the prefetch hook downloads at once.
    pub prefetch_jobs: f64,
    pub sha256: f64,
    pub compress_gzip: f64,
    pub compress_zstd: f64,
    /// zstd level of zstd layers (`plan --calibrate` picks it from 1, 3, 6).
    pub zstd_level: f64,
    /// Build machine → registry.
    pub push_bandwidth: f64,
    /// Interpreter and server start and the app's own init, beside its
    /// imports and the weights load.
    pub app_start_seconds: f64,
    /// Share of the installed packages' `.py` bytes an app imports at start.
    pub import_source_fraction: f64,
    /// `.py` bytes imported per second when their bytecode is in the image
    /// (unmarshal and run the module bodies).
    pub import_rate: f64,
    /// `.py` bytes compiled per second when it is not (every cold start).
    pub compile_rate: f64,
    /// Seconds per compiled library (`.so`) of the installed packages at
    /// import: load, relocate, initialise.
    pub native_library_seconds: f64,
    /// `.py` bytes of the standard library an app imports at start (read,
    /// and compiled too when the image has no bytecode of it).
    pub stdlib_import_bytes: f64,
    /// Base image size when it cannot be looked up.
    pub default_base_compressed: f64,
    pub default_base_uncompressed: f64,
    /// Size of the prefetch hook binary in the volume-mode layer (0: this imgbake binary's size).
    pub prefetch_hook_bytes: f64,
    /// zstd-1 ratio assumed for remote weights when sampling 4 MiB of the largest file fails.
    pub remote_weights_ratio: f64,
    /// Cold starts per week with min_replicas = 0 (scale to zero).
    pub cold_starts_per_week_scale_to_zero: f64,
    /// Cold starts per week with min_replicas ≥ 1 (scale-ups only).
    pub cold_starts_per_week_warm_pool: f64,
    /// Weights updates per week when the config does not say.
    pub default_updates_per_week: f64,

    // Image volumes (`mode = "artifact"`): where the target can mount a
    // ModelPack artifact, and how often an app deploy restarts replicas on
    // nodes that keep it.
    /// 1 when the target's nodes mount OCI artifacts as Kubernetes image
    /// volumes (KEP-4639), 0 when not: `auto` considers artifact only at 1.
    pub image_volumes: f64,
    /// App-code deploys per week; each restarts the running replicas on
    /// nodes that keep the base, the dependencies and any artifact.
    pub app_deploys_per_week: f64,
    /// 1 when replicas share one volume that stays filled (a platform's
    /// persistent storage, a ReadWriteMany claim), 0 when each pod's volume
    /// starts empty (a Kubernetes emptyDir). Baseten's per-source volumes
    /// are per replica whatever this says.
    pub volume_shared: f64,
}

/// Keys in file order; `params_get`/`params_set` map them to fields.
pub const KEYS: [&str; 38] = [
    "registry_bandwidth",
    "layer_bandwidth",
    "pull_concurrency",
    "unpack_overlaps_pull",
    "unpack_gzip",
    "unpack_zstd",
    "unpack_none",
    "unpack_entry_seconds",
    "disk_read",
    "disk_write",
    "page_cache_bytes",
    "page_cache_read",
    "volume_read",
    "volume_write",
    "source_bandwidth",
    "source_connection_bandwidth",
    "prefetch_jobs",
    "sha256",
    "compress_gzip",
    "compress_zstd",
    "zstd_level",
    "push_bandwidth",
    "app_start_seconds",
    "import_source_fraction",
    "import_rate",
    "compile_rate",
    "native_library_seconds",
    "stdlib_import_bytes",
    "default_base_compressed",
    "default_base_uncompressed",
    "prefetch_hook_bytes",
    "remote_weights_ratio",
    "cold_starts_per_week_scale_to_zero",
    "cold_starts_per_week_warm_pool",
    "default_updates_per_week",
    // image volumes
    "image_volumes",
    "app_deploys_per_week",
    "volume_shared",
];

impl Params {
    fn field(&mut self, key: &str) -> Option<&mut f64> {
        Some(match key {
            "registry_bandwidth" => &mut self.registry_bandwidth,
            "layer_bandwidth" => &mut self.layer_bandwidth,
            "pull_concurrency" => &mut self.pull_concurrency,
            "unpack_overlaps_pull" => &mut self.unpack_overlaps_pull,
            "unpack_gzip" => &mut self.unpack_gzip,
            "unpack_zstd" => &mut self.unpack_zstd,
            "unpack_none" => &mut self.unpack_none,
            "unpack_entry_seconds" => &mut self.unpack_entry_seconds,
            "disk_read" => &mut self.disk_read,
            "disk_write" => &mut self.disk_write,
            "page_cache_bytes" => &mut self.page_cache_bytes,
            "page_cache_read" => &mut self.page_cache_read,
            "volume_read" => &mut self.volume_read,
            "volume_write" => &mut self.volume_write,
            "source_bandwidth" => &mut self.source_bandwidth,
            "source_connection_bandwidth" => &mut self.source_connection_bandwidth,
            "prefetch_jobs" => &mut self.prefetch_jobs,
            "sha256" => &mut self.sha256,
            "compress_gzip" => &mut self.compress_gzip,
            "compress_zstd" => &mut self.compress_zstd,
            "zstd_level" => &mut self.zstd_level,
            "push_bandwidth" => &mut self.push_bandwidth,
            "app_start_seconds" => &mut self.app_start_seconds,
            "import_source_fraction" => &mut self.import_source_fraction,
            "import_rate" => &mut self.import_rate,
            "compile_rate" => &mut self.compile_rate,
            "native_library_seconds" => &mut self.native_library_seconds,
            "stdlib_import_bytes" => &mut self.stdlib_import_bytes,
            "default_base_compressed" => &mut self.default_base_compressed,
            "default_base_uncompressed" => &mut self.default_base_uncompressed,
            "prefetch_hook_bytes" => &mut self.prefetch_hook_bytes,
            "remote_weights_ratio" => &mut self.remote_weights_ratio,
            "cold_starts_per_week_scale_to_zero" => &mut self.cold_starts_per_week_scale_to_zero,
            "cold_starts_per_week_warm_pool" => &mut self.cold_starts_per_week_warm_pool,
            "default_updates_per_week" => &mut self.default_updates_per_week,
            // image volumes
            "image_volumes" => &mut self.image_volumes,
            "app_deploys_per_week" => &mut self.app_deploys_per_week,
            "volume_shared" => &mut self.volume_shared,
            _ => return None,
        })
    }

    pub fn get(&self, key: &str) -> Option<f64> {
        self.clone().field(key).map(|v| *v)
    }

    pub fn set(&mut self, key: &str, value: f64) -> bool {
        match self.field(key) {
            Some(slot) => {
                *slot = value;
                true
            }
            None => false,
        }
    }

    pub fn keys() -> impl Iterator<Item = &'static str> {
        KEYS.iter().copied()
    }
}

/// A named parameter set and where each number comes from.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Profile {
    pub name: String,
    pub params: Params,
    /// key → source of the number (a document, a measurement, or "assumption: …").
    pub sources: BTreeMap<String, String>,
    /// The layer codecs the target's runtime unpacks (source under `runtime_codecs`):
    /// `compression = "auto"` chooses among these only.
    pub runtime_codecs: Vec<Codec>,
}

/// The profile key of [`Profile::runtime_codecs`], beside the numbers of [`Params`].
pub const RUNTIME_CODECS: &str = "runtime_codecs";

/// Every codec, in the order profiles list them.
pub const ALL_CODECS: [Codec; 3] = [Codec::Gzip, Codec::Zstd, Codec::None];

#[derive(Debug, thiserror::Error)]
pub enum ProfileError {
    #[error("unknown profile `{name}`; expected one of {} or a .toml file", BUILTIN.join(", "))]
    Unknown { name: String },
    #[error("cannot read the profile {}", path.display())]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Invalid { path: PathBuf, line: usize, column: usize, message: String },
    #[error("cannot write the profile {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

const MB: f64 = 1e6;
const GB: f64 = 1e9;

/// Numbers shared by every built-in profile: node-side behaviour that does
/// not depend on the platform.
fn common() -> (Params, BTreeMap<String, String>) {
    let params = Params {
        registry_bandwidth: 1.25 * GB / 10.0,
        layer_bandwidth: 60.0 * MB,
        pull_concurrency: 3.0,
        unpack_overlaps_pull: 1.0,
        unpack_gzip: 120.0 * MB,
        unpack_zstd: 600.0 * MB,
        unpack_none: 900.0 * MB,
        unpack_entry_seconds: 50e-6,
        disk_read: 1.5 * GB,
        disk_write: 1.0 * GB,
        page_cache_bytes: 8.0 * GB,
        page_cache_read: 4.0 * GB,
        volume_read: 1.0 * GB,
        volume_write: 500.0 * MB,
        source_bandwidth: 100.0 * MB,
        source_connection_bandwidth: 50.0 * MB,
        prefetch_jobs: 4.0,
        sha256: 1.0 * GB,
        compress_gzip: 80.0 * MB,
        compress_zstd: 300.0 * MB,
        zstd_level: 3.0,
        push_bandwidth: 100.0 * MB,
        app_start_seconds: 1.0,
        import_source_fraction: 0.25,
        import_rate: 68.0 * MB,
        compile_rate: 7.7 * MB,
        native_library_seconds: 0.022,
        stdlib_import_bytes: 4.3 * MB,
        default_base_compressed: 1.2 * GB,
        default_base_uncompressed: 3.0 * GB,
        prefetch_hook_bytes: 0.0,
        remote_weights_ratio: 0.85,
        cold_starts_per_week_scale_to_zero: 70.0,
        cold_starts_per_week_warm_pool: 7.0,
        default_updates_per_week: 1.0,
        // image volumes
        image_volumes: 0.0,
        app_deploys_per_week: 5.0,
        volume_shared: 1.0,
    };
    let sources = [
        ("registry_bandwidth", "assumption: a 1 Gbit/s path from the registry to a node (125 MB/s)"),
        ("layer_bandwidth", "assumption: one HTTPS connection to an object-store-backed registry (~60 MB/s)"),
        ("pull_concurrency", "containerd: max_concurrent_downloads = 3 by default (one connection per layer)"),
        ("unpack_overlaps_pull", "containerd: layers are applied in order as they arrive, while later ones download"),
        ("unpack_gzip", "assumption: single-threaded gunzip + file writes (~120 MB/s); measure with --calibrate"),
        ("unpack_zstd", "assumption: zstd -d + file writes (~600 MB/s); measure with --calibrate"),
        ("unpack_none", "assumption: plain tar extraction, bound by disk writes (~900 MB/s); measure with --calibrate"),
        (
            "unpack_entry_seconds",
            "assumption: creating one file or directory with its metadata (~50 µs, 20k entries/s); measure with --calibrate",
        ),
        ("disk_read", "assumption: local NVMe, cold page cache, GB-sized reads (~1.5 GB/s); measure with --calibrate"),
        ("disk_write", "assumption: local NVMe, new files (~1 GB/s); measure with --calibrate"),
        (
            "page_cache_bytes",
            "assumption: a GPU node keeps ≥ 8 GB of just-written files cached (a container's memory limit caps what the hook's writes keep); measure with --calibrate",
        ),
        (
            "page_cache_read",
            "assumption: one thread's read() of cached pages, a memory copy (~4 GB/s); measure with --calibrate",
        ),
        ("volume_read", "assumption: a network file system (~1 GB/s)"),
        ("volume_write", "assumption: a network file system (~500 MB/s)"),
        ("source_bandwidth", "assumption: Hugging Face hub / bucket download to one node (~100 MB/s)"),
        ("source_connection_bandwidth", "assumption: one HTTPS stream from the hub's CDN or a bucket (~50 MB/s)"),
        ("prefetch_jobs", "imgbake prefetch: files at once = twice the cores, 4 to 16 (src/runtime/prefetch.rs); 4 on 2 cores"),
        ("sha256", "assumption: sha2 with SHA-NI (~1 GB/s); measure with --calibrate"),
        ("compress_gzip", "assumption: flate2 level 6 on 2 cores, independent blocks (~80 MB/s); measure with --calibrate"),
        ("compress_zstd", "assumption: zstd level 3 on 2 cores (~300 MB/s); measure with --calibrate"),
        ("zstd_level", "zstd's default level; `plan --calibrate` measures levels 1, 3 and 6 on this machine"),
        ("push_bandwidth", "assumption: build machine → registry at ~100 MB/s"),
        (
            "app_start_seconds",
            "assumption: interpreter and server start and the app's init besides imports and weights (imgbake run: 0.07 s for a stdlib app), plus ~1 s of CUDA context on a GPU",
        ),
        (
            "import_source_fraction",
            "measured on two apps: numpy, pandas, fastapi, uvicorn, transformers, requests and safetensors imported read 19.1 MB of their 108 MB of .py (18%); fixtures/cerebrium-pip-apt (numpy, fastapi, uvicorn) 5.3 of 14.4 MB (37%)",
        ),
        (
            "import_rate",
            "measured on the 2-core build VM, idle: CPython 3.11 importing 4.2 MB of standard-library modules with their bytecode cached in 0.062 s (3–4× slower under load); measure with --calibrate",
        ),
        (
            "compile_rate",
            "measured on the same VM, idle: compile() of the 14.4 MB of .py of numpy, fastapi, pydantic, starlette and uvicorn (the standard library compiles at 13.2 MB/s); measure with --calibrate",
        ),
        (
            "native_library_seconds",
            "measured under imgbake run (idle VM): fixtures/cerebrium-pip-apt's 23 .so files and the ML race's torch stack's 144 (4.9 GB) both cost 22 ms each beyond their .py",
        ),
        (
            "stdlib_import_bytes",
            "measured: importing requests and pydantic loads 224 standard-library modules, 4.3 MB of .py; a FastAPI + uvicorn start under imgbake run compiles 198 of them when the base has no bytecode",
        ),
        (
            "default_base_compressed",
            "assumption: a CUDA runtime base image (nvidia/cuda:12.x-runtime ≈ 1.2 GB compressed)",
        ),
        ("default_base_uncompressed", "assumption: a CUDA runtime base image (≈ 3 GB unpacked)"),
        ("prefetch_hook_bytes", "measured: the size of this imgbake binary, which build copies in as the hook"),
        (
            "remote_weights_ratio",
            "assumption, used only when sampling a remote file fails: bf16/fp16 safetensors compress to ~85% with zstd -1",
        ),
        (
            "cold_starts_per_week_scale_to_zero",
            "assumption: min_replicas = 0 scales to zero after idle, ~10 cold starts a day",
        ),
        ("cold_starts_per_week_warm_pool", "assumption: with min_replicas ≥ 1 only scale-ups start cold, ~1 a day"),
        (
            "default_updates_per_week",
            "assumption: weights change weekly when [imgbake] weights_updates_per_week is unset",
        ),
        // image volumes
        (
            "image_volumes",
            "the platform runs containers on its own nodes and offers volumes, not Kubernetes image volumes: \
             an artifact source cannot be mounted there",
        ),
        (
            "app_deploys_per_week",
            "assumption: the app's code is deployed once a working day; each deploy restarts the running replicas \
             (min_replicas, at least 1) on nodes that have the base and dependencies",
        ),
        (
            "volume_shared",
            "assumption: one volume shared by every replica that keeps its files (Cerebrium persistent storage, \
             Runpod network volumes, a ReadWriteMany claim); Baseten's per-source volumes are per replica regardless",
        ),
    ];
    (params, sources.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect())
}

/// The built-in profile `name`.
pub fn builtin(name: &str) -> Option<Profile> {
    // containerd (≥ 1.5), CRI-O and podman unpack tar+zstd layers (OCI image-spec 1.1).
    let zstd_runtimes = (
        ALL_CODECS.to_vec(),
        "containerd ≥ 1.5, CRI-O and podman unpack tar+zstd layers (OCI image-spec v1.1 media type)",
    );
    let (runtime_codecs, codecs_source) = match name {
        "generic" => (
            vec![Codec::Gzip, Codec::None],
            "assumption: a generic or older runtime (docker's classic store before 23, umoci 0.4) reads gzip and plain tar only",
        ),
        _ => zstd_runtimes,
    };
    let (mut params, mut sources) = common();
    sources.insert(RUNTIME_CODECS.to_string(), codecs_source.to_string());
    let mut set = |key: &str, value: f64, source: &str| {
        params.set(key, value);
        sources.insert(key.to_string(), source.to_string());
    };
    match name {
        "cerebrium" => {
            set("volume_read", 2.0 * GB, "Cerebrium docs (seed 001): persistent storage reads at \"nearly 2GB/s\"");
        }
        "baseten" => {
            set("volume_read", 1.0 * GB, "assumption: Baseten's volume (b10fs) read rate is not published; ~1 GB/s");
        }
        "runpod" => {
            set(
                "volume_read",
                500.0 * MB,
                "assumption: RunPod network volumes are network storage; ~500 MB/s (not published)",
            );
            set(
                "volume_write",
                300.0 * MB,
                "assumption: RunPod network volumes are network storage; ~300 MB/s (not published)",
            );
        }
        "generic" => {
            set(
                "image_volumes",
                0.0,
                "assumption: a generic or older runtime has no image volumes (they need Kubernetes ≥ 1.33 and a \
                 runtime that mounts OCI artifacts); use the kubernetes profile for a cluster that has them",
            );
        }
        "kubernetes" => {
            set(
                "image_volumes",
                1.0,
                "assumption: a Kubernetes ≥ 1.35 cluster, where image volumes (KEP-4639; beta in 1.33) are on by \
                 default, with a runtime that mounts OCI artifacts (containerd ≥ 2.1, CRI-O ≥ 1.31); \
                 build --deploy-target kubernetes writes the image volume",
            );
            set(
                "volume_shared",
                0.0,
                "build --deploy-target kubernetes mounts an emptyDir for volume weights by default, which starts \
                 empty in every pod; set 1 with --deploy-volume-claim and a ReadWriteMany claim",
            );
        }
        _ => return None,
    }
    Some(Profile { name: name.to_string(), params, sources, runtime_codecs })
}

/// `--profile NAME|FILE`; a name is a built-in profile, anything ending in
/// `.toml` (or an existing file) is read as an override file.
pub fn load(spec_target: &str, choice: Option<&str>) -> Result<Profile, ProfileError> {
    match choice {
        None => builtin(spec_target).ok_or_else(|| ProfileError::Unknown { name: spec_target.to_string() }),
        Some(text) if text.ends_with(".toml") || Path::new(text).is_file() => load_file(Path::new(text), spec_target),
        Some(name) => builtin(name).ok_or_else(|| ProfileError::Unknown { name: name.to_string() }),
    }
}

/// Reads an override file on top of its `base` (or the target's) built-in profile.
pub fn load_file(path: &Path, default_base: &str) -> Result<Profile, ProfileError> {
    let text =
        std::fs::read_to_string(path).map_err(|source| ProfileError::Read { path: path.to_path_buf(), source })?;
    parse_file(&text, path, default_base)
}

fn position(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before.len() - before.rfind('\n').map(|i| i + 1).unwrap_or(0) + 1;
    (line, column)
}

pub fn parse_file(text: &str, path: &Path, default_base: &str) -> Result<Profile, ProfileError> {
    let invalid = |offset: usize, message: String| {
        let (line, column) = position(text, offset);
        ProfileError::Invalid { path: path.to_path_buf(), line, column, message }
    };
    let table: toml::Table = text.parse().map_err(|error: toml::de::Error| {
        let offset = error.span().map(|s| s.start).unwrap_or(0);
        invalid(offset, format!("not valid TOML: {}", error.message()))
    })?;
    let find = |needle: &str| text.find(needle).unwrap_or(0);
    let base = match table.get("base") {
        Some(toml::Value::String(name)) => name.clone(),
        Some(_) => return Err(invalid(find("base"), "`base` must be a profile name string".to_string())),
        None => default_base.to_string(),
    };
    let mut profile = builtin(&base).ok_or_else(|| {
        invalid(find("base"), format!("unknown base profile `{base}`; expected one of {}", BUILTIN.join(", ")))
    })?;
    profile.name = path.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or(base.clone());
    for key in table.keys() {
        if !["base", "params", "sources"].contains(&key.as_str()) {
            return Err(invalid(find(key), format!("unknown key `{key}`; expected base, [params] or [sources]")));
        }
    }
    if let Some(params) = table.get("params") {
        let params = params.as_table().ok_or_else(|| invalid(find("params"), "`params` must be a table".into()))?;
        for (key, value) in params {
            if key == RUNTIME_CODECS {
                profile.runtime_codecs = parse_codecs(value).map_err(|message| invalid(find(key), message))?;
                profile.sources.insert(key.clone(), format!("set in {}", path.display()));
                continue;
            }
            let number = match value {
                toml::Value::Float(f) => *f,
                toml::Value::Integer(i) => *i as f64,
                _ => return Err(invalid(find(key), format!("`{key}` must be a number"))),
            };
            if !number.is_finite() || number < 0.0 {
                return Err(invalid(find(key), format!("`{key}` must be a finite number ≥ 0, got {number}")));
            }
            if !profile.params.set(key, number) {
                let hint = crate::config::suggest::closest(key, Params::keys().chain([RUNTIME_CODECS]))
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                return Err(invalid(find(key), format!("unknown parameter `{key}`{hint}")));
            }
            profile.sources.insert(key.clone(), format!("set in {}", path.display()));
        }
    }
    if let Some(sources) = table.get("sources").and_then(|s| s.as_table()) {
        for (key, value) in sources {
            if let Some(text) = value.as_str() {
                profile.sources.insert(key.clone(), text.to_string());
            }
        }
    }
    Ok(profile)
}

/// `["gzip", "zstd", "none"]`: a non-empty list of distinct codec names.
fn parse_codecs(value: &toml::Value) -> Result<Vec<Codec>, String> {
    let expected = "`runtime_codecs` must be a non-empty list of \"gzip\", \"zstd\", \"none\"";
    let items = value.as_array().filter(|a| !a.is_empty()).ok_or_else(|| format!("{expected}, got {value}"))?;
    let mut codecs = Vec::new();
    for item in items {
        let codec = item.as_str().and_then(Codec::parse).ok_or_else(|| format!("{expected}, got {item}"))?;
        if !codecs.contains(&codec) {
            codecs.push(codec);
        }
    }
    Ok(codecs)
}

/// The profile as an override file: every parameter and its source.
pub fn to_toml(profile: &Profile, base: &str) -> String {
    let mut out = format!(
        "# imgbake plan profile: every number the cost model uses, with its source.\nbase = \"{base}\"\n\n[params]\n"
    );
    for key in Params::keys() {
        let value = profile.params.get(key).unwrap_or(0.0);
        out.push_str(&format!("{key} = {}\n", toml::Value::Float(value)));
    }
    let codecs: Vec<toml::Value> = profile.runtime_codecs.iter().map(|c| toml::Value::from(c.as_str())).collect();
    out.push_str(&format!("{RUNTIME_CODECS} = {}\n", toml::Value::Array(codecs)));
    out.push_str("\n[sources]\n");
    for key in Params::keys().chain([RUNTIME_CODECS]) {
        if let Some(source) = profile.sources.get(key) {
            out.push_str(&format!("{key} = {}\n", toml::Value::String(source.clone())));
        }
    }
    out
}

/// `prefetch_hook_bytes = 0` means "the hook build copies in": the file named
/// by `IMGBAKE_HOOK_BINARY`, else this imgbake binary.
pub fn resolve_hook_bytes(profile: &mut Profile) {
    if profile.params.prefetch_hook_bytes <= 0.0 {
        let hook = crate::resolve::hook::hook_binary().unwrap_or_default();
        let size = std::fs::metadata(hook).map(|m| m.len()).unwrap_or(0);
        profile.params.prefetch_hook_bytes = size as f64;
    }
}

/// Writes `text` to `path` atomically (temp file beside it, fsync, rename).
pub fn write_atomically(path: &Path, text: &str) -> Result<(), ProfileError> {
    crate::plumbing::fs::write_atomic(path, text.as_bytes())
        .map_err(|source| ProfileError::Write { path: path.to_path_buf(), source })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_number_has_a_source() {
        for name in BUILTIN {
            let profile = builtin(name).unwrap();
            for key in Params::keys() {
                assert!(profile.params.get(key).is_some(), "{name}: {key}");
                assert!(profile.sources.contains_key(key), "{name}: {key} has no source");
            }
        }
    }

    #[test]
    fn cerebrium_volume_reads_at_2_gb_per_second_per_seed_001() {
        let profile = builtin("cerebrium").unwrap();
        assert_eq!(profile.params.volume_read, 2e9);
        assert!(profile.sources["volume_read"].contains("seed 001"));
    }

    #[test]
    fn a_file_overrides_one_key_and_round_trips() {
        let path = Path::new("calibrated.toml");
        let profile = parse_file("base = \"runpod\"\n[params]\nunpack_gzip = 2e8\n", path, "generic").unwrap();
        assert_eq!(profile.params.unpack_gzip, 2e8);
        assert_eq!(profile.params.volume_read, 500e6);
        let again = parse_file(&to_toml(&profile, "runpod"), path, "generic").unwrap();
        assert_eq!(again.params, profile.params);
    }

    #[test]
    fn runtime_codecs_come_with_the_target_and_a_file_narrows_them() {
        for name in ["cerebrium", "baseten", "runpod"] {
            let profile = builtin(name).unwrap();
            assert_eq!(profile.runtime_codecs, ALL_CODECS, "{name}");
            assert!(profile.sources[RUNTIME_CODECS].contains("containerd"), "{name}");
        }
        assert_eq!(builtin("generic").unwrap().runtime_codecs, [Codec::Gzip, Codec::None]);
        let path = Path::new("node.toml");
        let profile = parse_file("[params]\nruntime_codecs = [\"none\", \"gzip\"]\n", path, "cerebrium").unwrap();
        assert_eq!(profile.runtime_codecs, [Codec::None, Codec::Gzip]);
        assert_eq!(profile.params.volume_read, 2e9, "the target's numbers stay");
        let again = parse_file(&to_toml(&profile, "cerebrium"), path, "generic").unwrap();
        assert_eq!(again.runtime_codecs, profile.runtime_codecs);
        for bad in ["[]", "[\"lz4\"]", "\"gzip\""] {
            let text = format!("[params]\nruntime_codecs = {bad}\n");
            let error = parse_file(&text, path, "generic").unwrap_err().to_string();
            assert!(error.starts_with("node.toml:2:1: `runtime_codecs` must be"), "{error}");
        }
    }

    #[test]
    fn only_kubernetes_mounts_image_volumes_and_a_file_can_say_otherwise() {
        for name in BUILTIN {
            let expected = if name == "kubernetes" { 1.0 } else { 0.0 };
            assert_eq!(builtin(name).unwrap().params.image_volumes, expected, "{name}");
        }
        let kubernetes = builtin("kubernetes").unwrap();
        assert!(kubernetes.sources["image_volumes"].contains("KEP-4639"));
        assert_eq!(kubernetes.runtime_codecs, ALL_CODECS, "containerd 2.1 and CRI-O unpack zstd");
        let path = Path::new("cluster.toml");
        let own = parse_file("base = \"generic\"\n[params]\nimage_volumes = 1\n", path, "cerebrium").unwrap();
        assert_eq!(own.params.image_volumes, 1.0);
        assert_eq!(parse_file(&to_toml(&own, "generic"), path, "cerebrium").unwrap().params, own.params);
    }

    #[test]
    fn an_unknown_key_names_its_line_and_the_closest_key() {
        let error = parse_file("[params]\nunpack_gzp = 1\n", Path::new("p.toml"), "generic").unwrap_err();
        let text = error.to_string();
        assert!(text.starts_with("p.toml:2:1: unknown parameter `unpack_gzp`"), "{text}");
        assert!(text.contains("unpack_gzip"), "{text}");
    }
}
