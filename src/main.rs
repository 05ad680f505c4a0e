//! imgbake's entry point: parse the command line, dispatch, map to an exit code.

use clap::Parser;
use imgbake::cli::{Builder, Cli, Command, DeployTarget, PlanFormat, ValidateFormat};
use imgbake::commands::{build, dockerfile, lock, plan, prefetch, run, validate};
use imgbake::dockerfile::builder::ContainerBuilder;
use std::process::ExitCode;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let status = match cli.command {
        Command::Validate { config, format } => {
            let format = match format {
                ValidateFormat::Text => validate::Format::Text,
                ValidateFormat::Json => validate::Format::Json,
            };
            validate::run(&config.path, format)
        }
        Command::Lock { config, base, registry_args, cache, check } => lock::run(&lock::LockArgs {
            path: config.path,
            base: base.base,
            insecure_registries: registry_args.insecure_registries,
            cache_dir: cache.cache_dir,
            check,
        }),
        Command::Plan {
            config,
            format,
            output,
            profile,
            calibrate,
            registry,
            calibrate_read_max,
            registry_args,
            base,
            skip_base_lookup,
        } => {
            let format = match format {
                PlanFormat::Text => imgbake::cost::report::Format::Text,
                PlanFormat::Json => imgbake::cost::report::Format::Json,
                PlanFormat::Markdown => imgbake::cost::report::Format::Markdown,
                PlanFormat::Html => imgbake::cost::report::Format::Html,
            };
            plan::run(&plan::PlanArgs {
                path: config.path,
                format,
                output,
                profile: profile.profile,
                calibrate,
                calibrate_read_max_mib: calibrate_read_max,
                registry,
                insecure_registries: registry_args.insecure_registries,
                base: base.base,
                skip_base_lookup,
            })
        }
        Command::Build {
            config,
            output,
            push,
            cache_from,
            cache_to,
            no_cache,
            base,
            registry_args,
            cache,
            json,
            locked,
            profile,
            builder,
            deploy,
            deploy_target,
            deploy_volume_claim,
        } => {
            let builder = match builder {
                Builder::Native => None,
                Builder::Buildah => Some(ContainerBuilder::Buildah),
                Builder::Docker => Some(ContainerBuilder::Docker),
                Builder::Buildkit => Some(ContainerBuilder::Buildkit),
            };
            build::run(&build::BuildArgs {
                path: config.path,
                output,
                push,
                cache_from,
                cache_to,
                no_cache,
                base: base.base,
                insecure_registries: registry_args.insecure_registries,
                cache_dir: cache.cache_dir,
                json,
                locked,
                profile: profile.profile,
                builder,
                deploy,
                deploy_target: deploy_target.map(|target| match target {
                    DeployTarget::Cerebrium => imgbake::deploy::DeployTarget::Cerebrium,
                    DeployTarget::Baseten => imgbake::deploy::DeployTarget::Baseten,
                    DeployTarget::Runpod => imgbake::deploy::DeployTarget::Runpod,
                    DeployTarget::Kubernetes => imgbake::deploy::DeployTarget::Kubernetes,
                }),
                deploy_volume_claim,
            })
        }
        Command::Dockerfile { config, output, base, cache, registry_args, locked, profile } => {
            dockerfile::run(&dockerfile::DockerfileArgs {
                path: config.path,
                output,
                base,
                cache_dir: cache.cache_dir,
                profile: profile.profile,
                locked,
                insecure_registries: registry_args.insecure_registries,
            })
        }
        Command::Run {
            config,
            image,
            port,
            health_path,
            timeout,
            volume,
            workdir,
            env,
            json,
            profile,
            base,
            registry_args,
            cache,
        } => run::run(&run::RunArgs {
            path: config.path,
            image,
            port,
            health_path,
            timeout: std::time::Duration::from_secs_f64(timeout.max(0.001)),
            volume,
            workdir,
            env,
            json,
            profile: profile.profile,
            base: base.base,
            insecure_registries: registry_args.insecure_registries,
            cache_dir: cache.cache_dir,
        }),
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
