//! `imgbake run`: start a built image on this machine without a daemon and
//! measure its cold start before the platform sees it. The image (an OCI
//! layout or a registry reference) is unpacked by imgbake's own layer
//! reader into a runc bundle, started under runc (or crun) sharing the
//! host's network, with a directory bind-mounted as the volume when the
//! image keeps weights there; imgbake waits for the health endpoint and
//! prints each phase beside `imgbake plan`'s prediction for the same
//! config. A container that exits first, or never answers in time, prints
//! its last output lines and the command exits 1. The container is killed
//! and deleted and the bundle removed on every path, Ctrl-C included.

use super::{print_error, EXIT_INVALID_INPUT, EXIT_OK, EXIT_USAGE};
use crate::config;
use crate::container::importtime::{self, Imports};
use crate::container::phases::{self, Measured, Phase, PlanTerms, RUN_SCHEMA};
use crate::container::runc::{self, Container, Exit};
use crate::container::runtime_spec::{self, BindMount, RunSettings};
use crate::container::{unpack, INTERRUPTED};
use crate::image::cache::LayerCache;
use crate::image::oci::ImageConfiguration;
use crate::registry::RegistryClientOptions;
use crate::spec::Spec;
use crate::weights::manifest::{WeightsManifest, MANIFEST_PATH};
use serde::Serialize;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// Lines of the container's output shown when it fails.
const TAIL_LINES: usize = 20;
/// Pause between two health checks.
const POLL: Duration = Duration::from_millis(50);
/// The health path when neither the config nor `--health-path` names one.
const DEFAULT_HEALTH_PATH: &str = "/health";

#[derive(Debug, Clone)]
pub struct RunArgs {
    pub path: PathBuf,
    /// `oci:DIR[:TAG]` or a registry reference; default build's default output.
    pub image: Option<String>,
    pub port: Option<u16>,
    pub health_path: Option<String>,
    pub timeout: Duration,
    pub volume: Option<PathBuf>,
    /// Where the bundle is unpacked (default the system's temp directory).
    pub workdir: Option<PathBuf>,
    /// `--env NAME=VALUE`, or `NAME` for this process's value.
    pub env: Vec<String>,
    pub json: bool,
    pub profile: Option<String>,
    pub base: Option<String>,
    pub insecure_registries: Vec<String>,
    pub cache_dir: Option<PathBuf>,
}

/// How the wait ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
enum Outcome {
    Ready,
    Exited,
    Timeout,
    Interrupted,
}

#[derive(Debug, Serialize)]
struct VolumeReport {
    /// The host directory.
    host: PathBuf,
    /// Where it is mounted in the container.
    mounts: Vec<String>,
    /// A temporary directory, removed afterwards (no `--volume`).
    temporary: bool,
    /// It was empty: the hook downloaded every file.
    cold: bool,
}

#[derive(Debug, Serialize)]
struct PlanReport {
    profile: String,
    option: &'static str,
    scenario: String,
    label: String,
    terms: PlanTerms,
}

#[derive(Debug, Serialize)]
struct Report {
    schema: &'static str,
    image: String,
    runtime: &'static str,
    container: String,
    health: String,
    outcome: Outcome,
    /// How the process ended, when it did before answering.
    exit: Option<String>,
    volume: Option<VolumeReport>,
    plan: Option<PlanReport>,
    plan_error: Option<String>,
    phases: Vec<Phase>,
    /// The container's last output lines (import-time lines left out) when it failed.
    last_lines: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("cannot read the image {image}")]
    Image {
        image: String,
        /// It is a local layout (so: not built yet, or another tag).
        layout: bool,
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
    #[error("cannot open the layer cache")]
    Cache(#[source] crate::image::cache::CacheError),
    #[error("the image {image} has an unreadable config")]
    Config {
        image: String,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot unpack the image")]
    Unpack(#[from] unpack::UnpackError),
    #[error("cannot write the container's runtime spec")]
    Spec(#[from] runtime_spec::SpecError),
    #[error("cannot write the runtime spec `{path}`")]
    SaveSpec {
        path: PathBuf,
        #[source]
        source: oci_spec::OciSpecError,
    },
    #[error("the container did not start")]
    Runc(#[from] runc::RuncError),
    #[error("cannot prepare `{path}`")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the image's weights manifest {MANIFEST_PATH} is unreadable: {0}")]
    Manifest(String),
}

impl crate::plumbing::errors::Hint for RunError {
    fn hint(&self) -> Option<String> {
        match self {
            RunError::Image { layout: true, .. } => Some(
                "build it first (`imgbake build` writes oci:imgbake-out:<app name> by default), or name it with --image"
                    .to_string(),
            ),
            RunError::Runc(_) if !crate::plumbing::process::is_root() => {
                Some("runc needs root here: run `imgbake run` as root (or with sudo)".to_string())
            }
            _ => None,
        }
    }
}

pub fn run(args: &RunArgs) -> u8 {
    let Some(runtime) = runc::find_runtime() else {
        eprintln!("error: imgbake run needs runc or crun on PATH (apt-get install runc); neither is installed");
        return EXIT_USAGE;
    };
    let loaded = config::load(&args.path);
    for diagnostic in &loaded.diagnostics {
        eprintln!("{diagnostic}");
    }
    let Some(spec) = loaded.spec else { return EXIT_INVALID_INPUT };
    let Some(port) = args.port.or(spec.runtime.port) else {
        eprintln!("error: no port to check: the config sets none");
        eprintln!("  hint: set the runtime's `port` in the config, or pass --port");
        return EXIT_INVALID_INPUT;
    };
    let health_path = args
        .health_path
        .clone()
        .or_else(|| spec.runtime.readycheck_endpoint.clone())
        .or_else(|| spec.runtime.healthcheck_endpoint.clone())
        .unwrap_or_else(|| DEFAULT_HEALTH_PATH.to_string());
    let health = format!("http://127.0.0.1:{port}/{}", health_path.trim_start_matches('/'));
    // The container shares the host's network: whatever listens on the port
    // already would answer in its place.
    if std::net::TcpListener::bind(("127.0.0.1", port)).is_err() {
        eprintln!("error: port {port} is already in use on this machine; the container shares the host's network");
        eprintln!("  hint: stop what listens on {port}, or run the app on another port (--port N, and -e PORT=N if it reads one)");
        return EXIT_INVALID_INPUT;
    }
    let image =
        args.image.as_deref().map(|i| i.strip_prefix("docker://").unwrap_or(i).to_string()).unwrap_or_else(|| {
            let default = super::build::default_output(&spec.name);
            format!("oci:{}:{}", default.dir.display(), default.tag)
        });
    let env = match container_env(&args.env) {
        Ok(env) => env,
        Err(name) => {
            eprintln!("error: --env {name}: `{name}` is not set here, so there is no value to pass");
            eprintln!("  hint: export it first, or pass --env {name}=VALUE");
            return EXIT_INVALID_INPUT;
        }
    };
    match start_and_measure(args, &spec, &runtime, &image, &health, env) {
        Ok(report) => finish(args, report),
        Err(error) => {
            print_error(&error);
            if INTERRUPTED.load(Ordering::SeqCst) {
                return 130;
            }
            EXIT_INVALID_INPUT
        }
    }
}

/// `--env` values as (name, value); `Err(name)` for a bare name not set here.
fn container_env(given: &[String]) -> Result<Vec<(String, String)>, String> {
    given
        .iter()
        .map(|item| match item.split_once('=') {
            Some((name, value)) => Ok((name.to_string(), value.to_string())),
            None => std::env::var(item).map(|value| (item.clone(), value)).map_err(|_| item.clone()),
        })
        .collect()
}

/// Prints the report; 0 when the image answered, 1 otherwise.
fn finish(args: &RunArgs, report: Report) -> u8 {
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        print!("{}", render_text(&report));
    }
    if report.outcome == Outcome::Ready {
        return EXIT_OK;
    }
    let why = match report.outcome {
        Outcome::Exited => format!(
            "the container exited ({}) before {} answered",
            report.exit.as_deref().unwrap_or("stopped"),
            report.health
        ),
        Outcome::Timeout => format!("{} did not answer 200 within {} s", report.health, args.timeout.as_secs_f64()),
        Outcome::Interrupted => "interrupted".to_string(),
        Outcome::Ready => unreachable!("returned above"),
    };
    eprintln!("error: {why}");
    if !report.last_lines.is_empty() {
        eprintln!("  last {} lines of its output:", report.last_lines.len());
        for line in &report.last_lines {
            eprintln!("  | {line}");
        }
    }
    if report.outcome == Outcome::Interrupted {
        130
    } else {
        EXIT_INVALID_INPUT
    }
}

fn render_text(report: &Report) -> String {
    let mut out = format!("imgbake run: {} under {} (container {})\n", report.image, report.runtime, report.container);
    if let Some(volume) = &report.volume {
        out.push_str(&format!(
            "volume: {} ({}{}) mounted at {}\n",
            volume.host.display(),
            if volume.temporary { "a temporary directory, " } else { "" },
            if volume.cold { "empty: a cold volume" } else { "already filled: a warm volume" },
            volume.mounts.join(", ")
        ));
    }
    let ready = report.phases.iter().find(|p| p.phase == "ready").and_then(|p| p.seconds);
    match (report.outcome, ready) {
        (Outcome::Ready, Some(seconds)) => out.push_str(&format!(
            "ready: {} answered 200 {} after the process started\n",
            report.health,
            phases::seconds(Some(seconds))
        )),
        _ => out.push_str(&format!(
            "not ready: {} ({})\n",
            report.health,
            serde_json::to_value(report.outcome).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default()
        )),
    }
    let label = match (&report.plan, &report.plan_error) {
        (Some(plan), _) => format!("plan: {}, option {}, {}", plan.profile, plan.option, plan.label),
        (None, Some(error)) => format!("plan: not available ({error})"),
        (None, None) => "plan: not available".to_string(),
    };
    out.push('\n');
    out.push_str(&phases::table(&report.phases, &label));
    out
}

/// Everything from reading the image to the first 200 (or the failure).
fn start_and_measure(
    args: &RunArgs,
    spec: &Spec,
    runtime: &runc::Runtime,
    image: &str,
    health: &str,
    user_env: Vec<(String, String)>,
) -> Result<Report, RunError> {
    let cache_dir = match &args.cache_dir {
        Some(dir) => dir.clone(),
        None => LayerCache::default_dir().map_err(RunError::Cache)?,
    };
    let cache = LayerCache::open(&cache_dir).map_err(RunError::Cache)?;
    let registry = RegistryClientOptions {
        insecure_registries: args.insecure_registries.clone(),
        ..RegistryClientOptions::default()
    };
    let pulled_at = Instant::now();
    let resolved =
        crate::resolve::base::resolve(image, &cache, &registry).map_err(|error| image_error(image, error))?;
    let pull = match resolved.reference {
        Some(_) => Ok(pulled_at.elapsed().as_secs_f64()),
        None => Err("the image is a local OCI layout".to_string()),
    };
    let (Some(base), Some(blobs)) = (&resolved.image, &resolved.blobs) else {
        return Err(RunError::Manifest(format!("{image} is not an image")));
    };
    let config: ImageConfiguration =
        serde_json::from_slice(&base.config).map_err(|source| RunError::Config { image: image.to_string(), source })?;
    let process = runtime_spec::image_process(&config)?;

    let (plan, plan_error) = match predicted_plan(args, spec) {
        Ok(plan) => (Some(plan), None),
        Err(error) => (None, Some(error)),
    };

    // From here on there is something to clean up: Ctrl-C stops the steps
    // instead of the process (before, it just ends a pull or the plan).
    crate::container::catch_interrupts();
    let temp_root = args.workdir.clone().unwrap_or_else(std::env::temp_dir);
    let work = tempfile::Builder::new()
        .prefix("imgbake-run-")
        .tempdir_in(&temp_root)
        .map_err(|source| RunError::Io { path: temp_root.clone(), source })?;
    let bundle = work.path().join("bundle");
    let rootfs = bundle.join("rootfs");
    std::fs::create_dir_all(&rootfs).map_err(|source| RunError::Io { path: rootfs.clone(), source })?;
    let unpack_started = Instant::now();
    let unpacked = unpack::unpack_layers(blobs, &resolved.layers, &rootfs, &INTERRUPTED)?;
    let unpack_seconds = unpack_started.elapsed().as_secs_f64();

    let volume = volume_mounts(spec, &rootfs, args.volume.as_deref(), work.path())?;
    let user = runtime_spec::resolve_user(&process.user, &rootfs)?;
    let mut env = vec![(importtime::ENV.to_string(), "1".to_string())];
    if !process.env.iter().any(|v| v.starts_with("PYTHONUNBUFFERED=")) {
        // Output written just before a crash reaches the log, unbuffered.
        env.push(("PYTHONUNBUFFERED".to_string(), "1".to_string()));
    }
    env.extend(user_env);
    let id = format!("imgbake-run-{}", std::process::id());
    let settings = RunSettings {
        env,
        mounts: volume.as_ref().map(|(mounts, _)| mounts.clone()).unwrap_or_default(),
        hostname: "imgbake-run".to_string(),
        open_files: runtime_spec::open_files_limit(),
    };
    let oci = runtime_spec::runtime_spec(&process, user, &settings)?;
    let config_path = bundle.join("config.json");
    oci.save(&config_path).map_err(|source| RunError::SaveSpec { path: config_path.clone(), source })?;

    let log = work.path().join("container.log");
    let started = Instant::now();
    let mut container = Container::create(runtime, &bundle, &id, &log)?;
    container.start()?;
    let start_seconds = started.elapsed().as_secs_f64();
    let process_started = Instant::now();
    let waited = wait_for_health(&mut container, health, args.timeout);
    let ready_seconds = process_started.elapsed().as_secs_f64();
    let (outcome, exit) = match waited {
        Wait::Ready => (Outcome::Ready, None),
        Wait::Exited(exit) => (Outcome::Exited, Some(exit)),
        Wait::Timeout => (Outcome::Timeout, None),
        Wait::Interrupted => (Outcome::Interrupted, None),
    };
    // Stopped before reading the log: nothing more is written to it.
    container.destroy();
    let output = std::fs::read_to_string(&log).unwrap_or_default();
    let not_ready = |why: String| Err(why);
    let ready = match outcome {
        Outcome::Ready => Ok(ready_seconds),
        Outcome::Exited => not_ready(format!("the container exited ({}) first", exit.unwrap_or(Exit::Unknown))),
        Outcome::Timeout => not_ready(format!("no 200 within {} s", args.timeout.as_secs_f64())),
        Outcome::Interrupted => not_ready("interrupted".to_string()),
    };
    let imports: Result<Imports, String> = importtime::parse(&output)
        .ok_or_else(|| "no `import time:` lines in the output: the entrypoint is not Python".to_string());
    let prefetch = match &volume {
        None => Err("the image keeps no weights on a volume".to_string()),
        Some(_) => prefetch_seconds(&output).ok_or_else(|| "the prefetch hook wrote no `done` event".to_string()),
    };
    let measured = Measured {
        pull,
        unpack: unpack_seconds,
        start: start_seconds,
        prefetch,
        imports,
        ready,
        layers: unpacked.layers,
        blob_bytes: unpacked.blob_bytes,
    };
    let cold = volume.as_ref().is_some_and(|(_, report)| report.cold);
    let plan = plan.map(|plan| plan_terms(&plan, cold));
    let phases = phases::rows(&measured, plan.as_ref().map(|p| &p.terms));
    let last_lines = if outcome == Outcome::Ready {
        Vec::new()
    } else {
        runc::tail_lines(&log, TAIL_LINES, |line| !importtime::is_import_line(line))
    };
    Ok(Report {
        schema: RUN_SCHEMA,
        image: image.to_string(),
        runtime: runtime.name,
        container: id,
        health: health.to_string(),
        outcome,
        exit: exit.map(|e| e.to_string()),
        volume: volume.map(|(_, report)| report),
        plan,
        plan_error,
        phases,
        last_lines,
    })
}

/// The base-image resolver's error, told as this image's (its own text says "base image").
fn image_error(image: &str, error: crate::resolve::base::BaseError) -> RunError {
    use crate::resolve::base::BaseError;
    let layout = matches!(error, BaseError::Layout { .. } | BaseError::Blobs { .. });
    let source: Box<dyn std::error::Error + Send + Sync> = match error {
        BaseError::Layout { source, .. } => source,
        BaseError::Pull { source, .. } => source,
        BaseError::Reference { source, .. } => Box::new(source),
        BaseError::Manifest { source, .. } => Box::new(source),
        BaseError::Blobs { source, .. } => Box::new(source),
    };
    RunError::Image { image: image.to_string(), layout, source }
}

enum Wait {
    Ready,
    Exited(Exit),
    Timeout,
    Interrupted,
}

/// Polls `health` until it answers 200, the container exits, `timeout`
/// passes or the user interrupts.
fn wait_for_health(container: &mut Container, health: &str, timeout: Duration) -> Wait {
    let deadline = Instant::now() + timeout;
    let client =
        crate::plumbing::http::blocking(Duration::from_millis(500), Duration::from_secs(2)).no_proxy().build().ok();
    loop {
        if INTERRUPTED.load(Ordering::SeqCst) {
            return Wait::Interrupted;
        }
        let answered = client
            .as_ref()
            .and_then(|c| c.get(health).send().ok())
            .is_some_and(|response| response.status().as_u16() == 200);
        if answered {
            return Wait::Ready;
        }
        if let Some(exit) = container.exited() {
            return Wait::Exited(exit);
        }
        if Instant::now() >= deadline {
            return Wait::Timeout;
        }
        std::thread::sleep(POLL);
    }
}

/// The volume's bind mounts when the image keeps weights on one (it holds
/// the weights manifest): one host directory at the target's volume root,
/// or, where each source has its own volume (Baseten), a subdirectory per source.
fn volume_mounts(
    spec: &Spec,
    rootfs: &Path,
    host: Option<&Path>,
    work: &Path,
) -> Result<Option<(Vec<BindMount>, VolumeReport)>, RunError> {
    let (dir, name) = MANIFEST_PATH.trim_start_matches('/').rsplit_once('/').unwrap_or(("", MANIFEST_PATH));
    let Ok(manifest_dir) = unpack::resolve_in(rootfs, dir, false) else { return Ok(None) };
    let Ok(bytes) = std::fs::read(manifest_dir.join(name)) else { return Ok(None) };
    let manifest = WeightsManifest::from_bytes(&bytes).map_err(RunError::Manifest)?;
    let temporary = host.is_none();
    let host = host.map(Path::to_path_buf).unwrap_or_else(|| work.join("volume"));
    std::fs::create_dir_all(&host).map_err(|source| RunError::Io { path: host.clone(), source })?;
    let cold = std::fs::read_dir(&host).map(|mut d| d.next().is_none()).unwrap_or(true);
    let destinations: Vec<String> = if spec.target.name.has_shared_volume() {
        vec![spec.target.volume_root.clone()]
    } else {
        let mut paths: Vec<String> = manifest.entries.iter().map(|e| e.volume_path.clone()).collect();
        paths.sort();
        paths.dedup();
        paths
    };
    let mut mounts = Vec::new();
    for destination in &destinations {
        let source =
            if destinations.len() == 1 { host.clone() } else { host.join(destination.trim_start_matches('/')) };
        std::fs::create_dir_all(&source).map_err(|error| RunError::Io { path: source.clone(), source: error })?;
        mounts.push(BindMount { source, destination: destination.clone(), read_only: false });
    }
    Ok(Some((mounts, VolumeReport { host, mounts: destinations, temporary, cold })))
}

/// The `seconds` of the prefetch hook's `done` event (a JSON line on stderr).
fn prefetch_seconds(output: &str) -> Option<f64> {
    output.lines().rev().find_map(|line| {
        let event: serde_json::Value = serde_json::from_str(line.trim()).ok()?;
        (event["event"] == "done").then(|| event["seconds"].as_f64()).flatten()
    })
}

/// `imgbake plan`'s model of the same config, or why there is none.
fn predicted_plan(args: &RunArgs, spec: &Spec) -> Result<crate::cost::Plan, String> {
    let plan_args = super::plan::PlanArgs {
        path: args.path.clone(),
        format: crate::cost::report::Format::Json,
        output: None,
        profile: args.profile.clone(),
        calibrate: false,
        calibrate_read_max_mib: 0,
        registry: None,
        insecure_registries: args.insecure_registries.clone(),
        base: args.base.clone(),
        skip_base_lookup: false,
    };
    super::plan::predicted(spec, &plan_args).map_err(|error| {
        let mut text = error.to_string();
        let mut source = error.source();
        while let Some(cause) = source {
            text.push_str(&format!(": {cause}"));
            source = cause.source();
        }
        text
    })
}

/// The cold start of the option `build` makes (`auto`): a new node, or a
/// new node with a cold volume when the volume started empty.
fn plan_terms(plan: &crate::cost::Plan, cold_volume: bool) -> PlanReport {
    let option = plan.options.iter().find(|o| o.name == "auto").or(plan.options.first());
    let scenario = option
        .and_then(|o| cold_volume.then(|| o.scenario("cold_volume")).flatten().or_else(|| o.scenario("new_node")));
    let terms = scenario.map(|s| s.terms).unwrap_or_default();
    PlanReport {
        profile: plan.profile.clone(),
        option: option.map(|o| o.name).unwrap_or("auto"),
        scenario: scenario.map(|s| s.id.to_string()).unwrap_or_default(),
        label: scenario.map(|s| s.label.clone()).unwrap_or_default(),
        terms: PlanTerms {
            pull: phases::milliseconds(terms.pull),
            unpack: phases::milliseconds(terms.unpack),
            prefetch: phases::milliseconds(terms.prefetch),
            app_start: phases::milliseconds(terms.app_start),
            imports: phases::milliseconds(terms.imports),
            load: phases::milliseconds(terms.load),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_values_are_given_or_taken_from_this_process() {
        let given = ["A=1".to_string(), "B=x=y".to_string(), "PATH".to_string()];
        let env = container_env(&given).unwrap();
        assert_eq!(env[..2], [("A".to_string(), "1".to_string()), ("B".to_string(), "x=y".to_string())]);
        assert_eq!(env[2], ("PATH".to_string(), std::env::var("PATH").unwrap()));
        let missing = "IMGBAKE_RUN_TEST_SURELY_UNSET_VARIABLE".to_string();
        assert_eq!(container_env(std::slice::from_ref(&missing)), Err(missing));
    }

    #[test]
    fn the_prefetch_phase_is_the_hook_s_done_event() {
        let output =
            "{\"event\":\"start\",\"files\":2}\nhello\n{\"event\":\"done\",\"status\":\"ok\",\"seconds\":1.25}\n";
        assert_eq!(prefetch_seconds(output), Some(1.25));
        assert_eq!(prefetch_seconds("{\"event\":\"start\"}\n"), None);
    }
}
