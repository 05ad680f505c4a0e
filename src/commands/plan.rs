//! `imgbake plan`: load the config, gather sizes, run the cost model, print
//! or write the report; with `--calibrate`, measure this machine and write a
//! profile file instead.

use super::{print_error, EXIT_INVALID_INPUT, EXIT_OK, EXIT_USAGE};
use crate::config;
use crate::cost::report::{self, Format};
use crate::cost::{self, calibrate, inputs};
use crate::pricing::profile;
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
    /// The largest cold-read sample of `--calibrate`, MiB.
    pub calibrate_read_max_mib: u64,
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
    let target = spec.target.name.as_str().to_string();
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
    let plan = match plan_of(&spec, args, &registry, &profile) {
        Ok(plan) => plan,
        Err(PlanError::Layout(crate::layout::LayoutError::Refused(message))) => {
            eprintln!("error: {message}");
            return EXIT_USAGE;
        }
        Err(error) => {
            print_error(&error);
            return EXIT_INVALID_INPUT;
        }
    };
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

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Resolve(#[from] crate::resolve::ResolveError),
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
}

impl crate::plumbing::errors::Hint for PlanError {
    fn hint(&self) -> Option<String> {
        match self {
            PlanError::Resolve(error) => error.hint(),
            PlanError::Layout(_) => None,
        }
    }
}

/// The plan `imgbake plan` prints for `spec` with `args` (its profile, base
/// and registries), for `imgbake run` to put beside what it measures.
pub(crate) fn predicted(
    spec: &crate::spec::Spec,
    args: &PlanArgs,
) -> Result<cost::Plan, Box<dyn std::error::Error + Send + Sync>> {
    let mut profile = profile::load(spec.target.name.as_str(), args.profile.as_deref())?;
    profile::resolve_hook_bytes(&mut profile);
    let registry = RegistryClientOptions {
        insecure_registries: args.insecure_registries.clone(),
        progress: crate::registry::ProgressMode::Quiet,
        ..RegistryClientOptions::default()
    };
    Ok(plan_of(spec, args, &registry, &profile)?)
}

/// The report of the ImagePlan `build` would make: the sources listed and
/// sampled, the lock's dependencies, the base looked up (its manifest only),
/// `auto` decided by the cost model, and the final layers.
fn plan_of(
    spec: &crate::spec::Spec,
    args: &PlanArgs,
    registry: &RegistryClientOptions,
    profile: &profile::Profile,
) -> Result<cost::Plan, PlanError> {
    crate::layout::check_configured(spec)?;
    let lock = crate::lock::Lock::read(&crate::lock::lock_path(spec)).ok().flatten();
    let current = crate::lock::inputs_of(spec).ok().zip(lock.as_ref()).is_some_and(|(i, l)| l.is_current(&i));
    let mut warnings = Vec::new();
    let pinning = if current { lock.as_ref() } else { None };
    let sources = crate::resolve::weights::resolve_sources(spec, pinning, true, None, &mut warnings)?;
    let hook = crate::resolve::hook::hook_binary()
        .map_err(|(path, source)| crate::resolve::ResolveError::Hook { path, source })?;
    let base_text = args.base.clone().unwrap_or_else(|| spec.base.image.clone());
    let rootfs = base_text.strip_prefix(crate::resolve::ROOTFS_PREFIX).map(std::path::PathBuf::from);
    let facts = crate::layout::LayoutFacts {
        lock: lock.as_ref(),
        sources: &sources,
        rootfs: rootfs.as_deref(),
        hook: &hook,
        target: crate::layout::compression::CodecTarget { profile, base_layers: &[] },
    };
    let base = || {
        let lookup = crate::resolve::base::lookup(&base_text, args.skip_base_lookup, registry);
        inputs::base_input(&base_text, lookup)
    };
    let lock_state = inputs::LockState { lock: lock.as_ref(), current };
    let decided = super::image_plan::decide(spec, &facts, base, lock_state, profile, true, true)?;
    let inputs = decided.inputs.expect("priced on request");
    Ok(cost::plan(&inputs, profile, cost::layer_views(spec, &decided.plan)))
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
    let measured = match calibrate::measure(
        &dir,
        args.registry.as_deref().map(|r| (r, registry)),
        profile.params.push_bandwidth,
        args.calibrate_read_max_mib,
    ) {
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
