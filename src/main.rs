//! imgbake's entry point: parse the command line, dispatch, map to an exit code.

use clap::Parser;
use imgbake::cli::{Cli, Command, ValidateFormat};
use imgbake::commands::{self, build, prefetch, validate};
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let status = match cli.command {
        Command::Validate { path, format } => {
            let format = match format {
                ValidateFormat::Text => validate::Format::Text,
                ValidateFormat::Json => validate::Format::Json,
            };
            validate::run(&path, format)
        }
        Command::Lock { .. } => commands::not_available("lock"),
        Command::Plan { .. } => commands::not_available("plan"),
        Command::Build { path, output, push, base, insecure_registries, cache_dir, json } => {
            build::run(&build::BuildArgs { path, output, push, base, insecure_registries, cache_dir, json })
        }
        Command::Dockerfile { .. } => commands::not_available("dockerfile"),
        Command::Prefetch { manifest, dest, jobs, background, ready_file, read_timeout, command } => {
            prefetch::run(&imgbake::runtime::prefetch::PrefetchOptions {
                manifest,
                dest,
                jobs,
                background,
                ready_file,
                read_timeout: std::time::Duration::from_secs_f64(read_timeout.max(0.001)),
                command,
            })
        }
    };
    ExitCode::from(status)
}
