//! Command-line interface: clap definitions only. Commands receive typed
//! options from here and never see clap themselves.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(
    name = "imgbake",
    version,
    about = "Daemonless OCI images for ML deployments: bake weights or keep them on a volume, and know what it costs."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

/// Options of every command that talks to registries (flattened into each).
#[derive(Debug, Clone, Default, Args)]
pub struct RegistryArgs {
    /// Talk plain HTTP to this registry host[:port], or host:* for any port (repeatable).
    /// Loopback registries (localhost, 127.0.0.0/8, ::1) fall back to plain HTTP on their own.
    #[arg(long = "insecure-registry", value_name = "HOST")]
    pub insecure_registries: Vec<String>,
}

/// The deployment config (every command but `prefetch`).
#[derive(Debug, Clone, Args)]
pub struct ConfigArgs {
    /// Config file, or a directory holding cerebrium.toml or config.yaml.
    #[arg(default_value = ".")]
    pub path: PathBuf,
}

/// The base image instead of the config's (lock, plan, build).
#[derive(Debug, Clone, Default, Args)]
pub struct BaseArgs {
    /// Use this base instead of the config's: a reference, oci:DIR[:TAG], rootfs:DIR or scratch.
    #[arg(long, value_name = "IMAGE")]
    pub base: Option<String>,
}

/// Where downloads (wheels, debs, weights) and built layers are kept.
#[derive(Debug, Clone, Default, Args)]
pub struct CacheArgs {
    /// Cache directory (default $XDG_CACHE_HOME/imgbake, or $IMGBAKE_CACHE_DIR).
    #[arg(long, value_name = "DIR")]
    pub cache_dir: Option<PathBuf>,
}

/// The profile that prices `mode = "auto"`.
#[derive(Debug, Clone, Default, Args)]
pub struct ProfileArgs {
    /// A built-in profile (cerebrium, baseten, runpod, generic, kubernetes) or a profile TOML file.
    #[arg(long, value_name = "NAME|FILE")]
    pub profile: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ValidateFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PlanFormat {
    Text,
    Json,
    Markdown,
    Html,
}

/// `build --deploy-target`: whose hand-off files to write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum DeployTarget {
    Cerebrium,
    Baseten,
    Runpod,
    Kubernetes,
}

/// `build --builder`: the native daemonless build, or a container builder.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Builder {
    Native,
    Buildah,
    Docker,
    Buildkit,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a cerebrium.toml or Truss config.yaml and print the normalized deployment.
    Validate {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
        format: ValidateFormat,
    },
    /// Resolve and pin every dependency and weights file into imgbake.lock.
    Lock {
        #[command(flatten)]
        config: ConfigArgs,
        #[command(flatten)]
        base: BaseArgs,
        #[command(flatten)]
        registry_args: RegistryArgs,
        #[command(flatten)]
        cache: CacheArgs,
        /// Only check: exit 1 with the difference when imgbake.lock is missing or stale.
        #[arg(long)]
        check: bool,
    },
    /// Report image size and cold-start cost of baking weights vs keeping them on a volume.
    Plan {
        #[command(flatten)]
        config: ConfigArgs,
        #[arg(long, value_enum, default_value_t = PlanFormat::Text)]
        format: PlanFormat,
        /// Write the report (or, with --calibrate, the profile) to this file.
        #[arg(short = 'o', long = "output", value_name = "FILE")]
        output: Option<PathBuf>,
        #[command(flatten)]
        profile: ProfileArgs,
        /// Measure this machine's rates and write them as a profile file (default imgbake-profile.toml).
        #[arg(long)]
        calibrate: bool,
        /// With --calibrate: also measure pulling this image (HOST:PORT/REPO[:TAG]).
        #[arg(long, value_name = "REF", requires = "calibrate")]
        registry: Option<String>,
        /// With --calibrate: cold reads are timed at 32, 256, 1024 and 4096 MiB up to this size; smaller is quicker and needs less free disk, 4096 is where a disk's rate settles.
        #[arg(long, value_name = "MIB", requires = "calibrate", default_value_t = 4096)]
        calibrate_read_max: u64,
        #[command(flatten)]
        registry_args: RegistryArgs,
        #[command(flatten)]
        base: BaseArgs,
        /// Do not ask a registry for the base image's size; use the profile's default.
        #[arg(long)]
        skip_base_lookup: bool,
    },
    /// Build the OCI image without a Docker daemon.
    Build {
        #[command(flatten)]
        config: ConfigArgs,
        /// Output OCI image layout: oci:DIR[:TAG] (default oci:imgbake-out:<app name>).
        #[arg(long, value_name = "oci:DIR[:TAG]")]
        output: Option<String>,
        /// Also push the image to this registry reference (host[:port]/repo[:tag]).
        #[arg(long, value_name = "REF")]
        push: Option<String>,
        /// Read the registry build cache from this repository (host[:port]/repo), or `none`
        /// (default: the --push repository).
        #[arg(long, value_name = "REPO|none")]
        cache_from: Option<String>,
        /// Record the layers built here in this repository's registry cache, or `none`
        /// (default: the --push repository; needs --push).
        #[arg(long, value_name = "REPO|none")]
        cache_to: Option<String>,
        /// Build every layer again: read neither the local layer cache nor the registry's.
        #[arg(long)]
        no_cache: bool,
        #[command(flatten)]
        base: BaseArgs,
        #[command(flatten)]
        registry_args: RegistryArgs,
        #[command(flatten)]
        cache: CacheArgs,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        /// Fail (with the difference) instead of updating a missing or stale imgbake.lock.
        #[arg(long)]
        locked: bool,
        // Decides `mode = "auto"`, as `imgbake plan --profile` does.
        #[command(flatten)]
        profile: ProfileArgs,
        /// Who builds: imgbake itself (native), or a container builder on the generated Dockerfile.
        #[arg(long, value_enum, default_value_t = Builder::Native)]
        builder: Builder,
        /// After --push, write the files that run the pushed image by digest into DIR (docs/deploy.md).
        #[arg(long, value_name = "DIR")]
        deploy: Option<PathBuf>,
        /// The platform --deploy writes for (default: the config's target; generic → kubernetes).
        #[arg(long, value_enum, value_name = "TARGET", requires = "deploy")]
        deploy_target: Option<DeployTarget>,
        /// Kubernetes: mount this PersistentVolumeClaim for volume weights instead of an emptyDir.
        #[arg(long, value_name = "CLAIM", requires = "deploy")]
        deploy_volume_claim: Option<String>,
    },
    /// Write a Dockerfile build context equivalent to the native build.
    Dockerfile {
        #[command(flatten)]
        config: ConfigArgs,
        /// Context directory to write (replaced if an earlier `imgbake dockerfile` wrote it).
        #[arg(short = 'o', long = "output", value_name = "DIR")]
        output: Option<PathBuf>,
        /// Use this FROM instead of the config's base image (a registry reference).
        #[arg(long, value_name = "REF")]
        base: Option<String>,
        #[command(flatten)]
        cache: CacheArgs,
        #[command(flatten)]
        registry_args: RegistryArgs,
        /// Fail (with the difference) when imgbake.lock is missing or stale, as `build --locked` does.
        #[arg(long)]
        locked: bool,
        // Decides `mode = "auto"`, as `build --profile` does.
        #[command(flatten)]
        profile: ProfileArgs,
    },
    /// Start a built image under runc (no daemon), wait for its health endpoint, and print the
    /// measured cold-start phases beside the plan's prediction.
    Run {
        #[command(flatten)]
        config: ConfigArgs,
        /// The image: oci:DIR[:TAG] or a registry reference (default build's output, oci:imgbake-out:<app name>).
        #[arg(long, value_name = "IMAGE")]
        image: Option<String>,
        /// The port the app listens on (default the config's).
        #[arg(long)]
        port: Option<u16>,
        /// The path that answers 200 once the app is ready (default the config's ready, then health
        /// endpoint, then /health).
        #[arg(long, value_name = "PATH")]
        health_path: Option<String>,
        /// Seconds to wait for the health endpoint before giving up.
        #[arg(long, value_name = "SECONDS", default_value_t = 300.0)]
        timeout: f64,
        /// Host directory mounted as the volume of volume weights (default an empty temporary one).
        #[arg(long, value_name = "DIR")]
        volume: Option<PathBuf>,
        /// Where the container's bundle is unpacked (default the system's temp directory).
        #[arg(long, value_name = "DIR")]
        workdir: Option<PathBuf>,
        /// Set a variable in the container (repeatable); NAME alone passes this shell's value
        /// (how a secret such as HF_TOKEN reaches the prefetch hook without being written in a command line).
        #[arg(long = "env", short = 'e', value_name = "NAME[=VALUE]")]
        env: Vec<String>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
        // The plan's prediction is made as `imgbake plan` makes it.
        #[command(flatten)]
        profile: ProfileArgs,
        #[command(flatten)]
        base: BaseArgs,
        #[command(flatten)]
        registry_args: RegistryArgs,
        #[command(flatten)]
        cache: CacheArgs,
    },
    /// In-image hook: fetch and verify volume weights, then exec the app.
    Prefetch {
        /// The weights manifest written by `build` (volume mode).
        #[arg(long, default_value = "/etc/imgbake/weights.json")]
        manifest: PathBuf,
        /// Write the files under this directory instead of each entry's volume path.
        #[arg(long)]
        dest: Option<PathBuf>,
        /// Connections at once, across files and byte ranges (default: twice the cores, 4 to 16).
        #[arg(long)]
        jobs: Option<usize>,
        /// Start the app at once; fetch in the background and write --ready-file when verified.
        #[arg(long, requires = "ready_file")]
        background: bool,
        /// Written once every file is verified (`<path>.failed` on error, `<path>.metrics.json` always).
        #[arg(long, value_name = "PATH")]
        ready_file: Option<PathBuf>,
        /// Seconds without a byte before a connection counts as stalled and is retried.
        #[arg(long, value_name = "SECONDS", default_value_t = 30.0)]
        read_timeout: f64,
        /// The app to exec once every file is verified.
        #[arg(last = true)]
        command: Vec<String>,
    },
}
