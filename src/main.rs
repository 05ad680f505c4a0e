//! imgbake's entry point: parse the command line, dispatch, map to an exit code.

use clap::Parser;
use imgbake::cli::{Builder, Cli, Command, PlanFormat, ValidateFormat};
use imgbake::commands::{build, dockerfile, lock, plan, prefetch, validate};
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
        Command::Lock { path, base, registry_args, cache_dir, check } => lock::run(&lock::LockArgs {
            path,
            base,
            insecure_registries: registry_args.insecure_registries,
            cache_dir,
            check,
        }),
        Command::Plan { path, format, output, profile, calibrate, registry, registry_args, base, skip_base_lookup } => {
            let format = match format {
                PlanFormat::Text => imgbake::cost::report::Format::Text,
                PlanFormat::Json => imgbake::cost::report::Format::Json,
                PlanFormat::Markdown => imgbake::cost::report::Format::Markdown,
                PlanFormat::Html => imgbake::cost::report::Format::Html,
            };
            plan::run(&plan::PlanArgs {
                path,
                format,
                output,
                profile,
                calibrate,
                registry,
                insecure_registries: registry_args.insecure_registries,
                base,
                skip_base_lookup,
            })
        }
        Command::Build { path, output, push, base, registry_args, cache_dir, json, locked, profile, builder } => {
            let builder = match builder {
                Builder::Native => None,
                Builder::Buildah => Some(ContainerBuilder::Buildah),
                Builder::Docker => Some(ContainerBuilder::Docker),
                Builder::Buildkit => Some(ContainerBuilder::Buildkit),
            };
            build::run(&build::BuildArgs {
                path,
                output,
                push,
                base,
                insecure_registries: registry_args.insecure_registries,
                cache_dir,
                json,
                locked,
                profile,
                builder,
            })
        }
        Command::Dockerfile { path, output, base, cache_dir, registry_args, locked, profile } => {
            dockerfile::run(&dockerfile::DockerfileArgs {
                path,
                output,
                base,
                cache_dir,
                profile,
                locked,
                insecure_registries: registry_args.insecure_registries,
            })
        }
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
