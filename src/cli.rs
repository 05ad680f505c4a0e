//! Command-line interface: clap definitions only. Commands receive typed
//! options from here and never see clap themselves.

use clap::{Parser, Subcommand, ValueEnum};
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

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ValidateFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Check a cerebrium.toml or Truss config.yaml and print the normalized deployment.
    Validate {
        /// Config file, or a directory holding cerebrium.toml or config.yaml.
        #[arg(default_value = ".")]
        path: PathBuf,
        #[arg(long, value_enum, default_value_t = ValidateFormat::Text)]
        format: ValidateFormat,
    },
    /// Resolve and pin every dependency and weights file into imgbake.lock.
    Lock {
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Report image size and cold-start cost of baking weights vs keeping them on a volume.
    Plan {
        #[arg(default_value = ".")]
        path: PathBuf,
    },
    /// Build the OCI image without a Docker daemon.
    Build {
        #[arg(default_value = ".")]
        path: PathBuf,
        /// Output OCI image layout: oci:DIR[:TAG] (default oci:imgbake-out:<app name>).
        #[arg(long, value_name = "oci:DIR[:TAG]")]
        output: Option<String>,
        /// Also push the image to this registry reference (host[:port]/repo[:tag]).
        #[arg(long, value_name = "REF")]
        push: Option<String>,
        /// Use this base instead of the config's: a reference, oci:DIR[:TAG], rootfs:DIR or scratch.
        #[arg(long, value_name = "IMAGE")]
        base: Option<String>,
        /// Talk plain HTTP to this registry host[:port] (repeatable; for loopback test registries).
        #[arg(long = "insecure-registry", value_name = "HOST")]
        insecure_registries: Vec<String>,
        /// Layer cache directory (default $XDG_CACHE_HOME/imgbake, or $IMGBAKE_CACHE_DIR).
        #[arg(long, value_name = "DIR")]
        cache_dir: Option<PathBuf>,
        /// Print the result as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Write a Dockerfile build context equivalent to the native build.
    Dockerfile {
        #[arg(default_value = ".")]
        path: PathBuf,
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
