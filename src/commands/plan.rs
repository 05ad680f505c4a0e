//! `imgbake plan`: load the config, gather sizes, run the cost model, print
//! or write the report; with `--calibrate`, measure this machine and write a
//! profile file instead.

use super::{print_error, EXIT_INVALID_INPUT, EXIT_OK};
use crate::config;
use crate::cost::report::{self, Format};
use crate::cost::{self, calibrate, inputs, profile};
use crate::registry::RegistryClientOptions;
use std::path::PathBuf;

/// Default file `--calibrate` writes when `-o` is not given.
pub const DEFAULT_CALIBRATED_PROFILE: &str = "imgbake-profile.toml";

#[derive(Debug, Clone)]
pub struct PlanArgs {
    pub path: PathBuf,
    pub format: Format,
    pub output: Option<PathBuf>,
    pub profile: Option<String>,
    pub calibrate: bool,
    pub registry: Option<String>,
    pub insecure_registries: Vec<String>,
    pub base: Option<String>,
    pub skip_base_lookup: bool,
}

pub fn run(args: &PlanArgs) -> u8 {
    let loaded = config::load(&args.path);
    for diagnostic in &loaded.diagnostics {
        eprintln!("{diagnostic}");
    }
    let Some(spec) = loaded.spec else { return EXIT_INVALID_INPUT };
    let target = format!("{:?}", spec.target.name).to_lowercase();
    let mut profile = match profile::load(&target, args.profile.as_deref()) {
        Ok(profile) => profile,
        Err(error) => {
            print_error(&error);
            eprintln!("hint: `imgbake plan --calibrate -o FILE` writes a profile file with every key");
            return EXIT_INVALID_INPUT;
        }
    };
    let registry = RegistryClientOptions {
        insecure_registries: args.insecure_registries.clone(),
        progress: crate::registry::ProgressMode::Quiet,
        ..RegistryClientOptions::default()
    };
    if args.calibrate {
        return calibrate_profile(args, profile, &target, &registry);
    }
    profile::resolve_hook_bytes(&mut profile);
    let options = inputs::GatherOptions {
        base_override: args.base.clone(),
        skip_base_lookup: args.skip_base_lookup,
        registry,
        remote_weights_ratio: profile.params.remote_weights_ratio,
    };
    let gathered = match inputs::gather(&spec, &options) {
        Ok(gathered) => gathered,
        Err(error) => {
            print_error(&error);
            return EXIT_INVALID_INPUT;
        }
    };
    let plan = cost::plan(&gathered, &profile);
    let text = report::render(&plan, args.format);
    match &args.output {
        Some(path) => {
            if let Err(error) = profile::write_atomically(path, &text) {
                print_error(&error);
                return EXIT_INVALID_INPUT;
            }
            eprintln!("wrote {}", path.display());
        }
        None => print!("{text}"),
    }
    EXIT_OK
}

fn calibrate_profile(
    args: &PlanArgs,
    mut profile: profile::Profile,
    target: &str,
    registry: &RegistryClientOptions,
) -> u8 {
    let path = args.output.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_CALIBRATED_PROFILE));
    let dir =
        path.parent().filter(|p| !p.as_os_str().is_empty()).map(PathBuf::from).unwrap_or_else(|| PathBuf::from("."));
    eprintln!("measuring unpack, disk, sha256 and compression rates in {}…", dir.display());
    let measured = match calibrate::measure(&dir, args.registry.as_deref().map(|r| (r, registry))) {
        Ok(measured) => measured,
        Err(error) => {
            print_error(&error);
            return EXIT_INVALID_INPUT;
        }
    };
    for m in &measured {
        profile.params.set(m.key, m.value);
        profile.sources.insert(m.key.to_string(), m.how.clone());
        eprintln!("  {:<20} {}", m.key, report::param_value(m.key, m.value));
    }
    let base =
        if profile::BUILTIN.contains(&profile.name.as_str()) { profile.name.clone() } else { target.to_string() };
    if let Err(error) = profile::write_atomically(&path, &profile::to_toml(&profile, &base)) {
        print_error(&error);
        return EXIT_INVALID_INPUT;
    }
    eprintln!("wrote {}; use it with `imgbake plan --profile {}`", path.display(), path.display());
    EXIT_OK
}
