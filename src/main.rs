//! imgbake's entry point: parse the command line, dispatch, map to an exit code.

use clap::Parser;
use imgbake::cli::{Builder, Cli, Command, ValidateFormat};
use imgbake::commands::{self, build, dockerfile, prefetch, validate};
use imgbake::dockerfile::builder::ContainerBuilder;
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
        Command::Build { path, output, push, base, insecure_registries, cache_dir, json, builder } => {
            let builder = match builder {
                Builder::Native => None,
                Builder::Buildah => Some(ContainerBuilder::Buildah),
                Builder::Docker => Some(ContainerBuilder::Docker),
                Builder::Buildkit => Some(ContainerBuilder::Buildkit),
            };
            build::run(&build::BuildArgs { path, output, push, base, insecure_registries, cache_dir, json, builder })
        }
        Command::Dockerfile { path, output, base, cache_dir } => {
            dockerfile::run(&dockerfile::DockerfileArgs { path, output, base, cache_dir })
        }
        Command::Prefetch { manifest, dest, jobs, command } => {
            prefetch::run(&imgbake::runtime::prefetch::PrefetchOptions { manifest, dest, jobs, command })
        }
    };
    ExitCode::from(status)
}
