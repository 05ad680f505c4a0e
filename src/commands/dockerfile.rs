//! `imgbake dockerfile`: load the config, write the build context, lint its
//! Dockerfile and say what the user should know (ignored settings, warnings).

use super::{print_error, EXIT_INVALID_INPUT, EXIT_OK, EXIT_USAGE};
use crate::config;
use crate::dockerfile::{self, context, lint, ContextOptions, DockerfileError, StoreWeights};
use crate::image::cache::LayerCache;
use crate::layout::LayoutFacts;
use crate::resolve::LockPolicy;
use crate::spec::Spec;
use std::path::{Path, PathBuf};

/// The default `-o`: `imgbake-context` in the current directory.
pub const DEFAULT_CONTEXT_DIR: &str = "imgbake-context";

#[derive(Debug, Clone, Default)]
pub struct DockerfileArgs {
    pub path: PathBuf,
    pub output: Option<PathBuf>,
    pub base: Option<String>,
    pub cache_dir: Option<PathBuf>,
    /// `--profile`: decides `mode = "auto"` as `build --profile` does.
    pub profile: Option<String>,
    pub locked: bool,
    pub insecure_registries: Vec<String>,
}

/// What shapes the context besides the Spec (shared with `build --builder`).
#[derive(Debug, Clone, Default)]
pub struct ContextSettings {
    /// `--base`: use this `FROM` instead of the config's base image.
    pub base: Option<String>,
    pub cache_dir: Option<PathBuf>,
    pub insecure_registries: Vec<String>,
    pub lock_policy: LockPolicy,
}

#[derive(Debug, thiserror::Error)]
pub enum ContextError {
    #[error(transparent)]
    Resolve(#[from] crate::resolve::ResolveError),
    #[error(transparent)]
    Layout(#[from] crate::layout::LayoutError),
    #[error(transparent)]
    Dockerfile(#[from] DockerfileError),
}

impl crate::plumbing::errors::Hint for ContextError {
    fn hint(&self) -> Option<String> {
        match self {
            ContextError::Resolve(error) => error.hint(),
            ContextError::Dockerfile(error) => error.hint(),
            ContextError::Layout(_) => None,
        }
    }
}

/// Resolves the weights sources, decides `auto` and lays out the image as
/// `build` does, then generates and writes the context for that ImagePlan
/// into `dir`, printing warnings and lint findings to stderr.
pub fn write_context(
    spec: &Spec,
    settings: &ContextSettings,
    profile: &crate::pricing::profile::Profile,
    dir: &Path,
) -> Result<(context::Written, dockerfile::Context), ContextError> {
    let cache_dir = match &settings.cache_dir {
        Some(dir) => dir.clone(),
        None => LayerCache::default_dir()
            .map_err(|e| DockerfileError::Weights { origin: "cache directory".to_string(), message: e.to_string() })?,
    };
    crate::layout::check_configured(spec)?;
    let lock = crate::resolve::lock_for_context(spec, settings.lock_policy)?;
    let remote = StoreWeights::open(&cache_dir)?;
    let mut warnings = Vec::new();
    let sources =
        crate::resolve::weights::resolve_sources(spec, lock.as_ref(), true, Some(remote.store()), &mut warnings)?;
    let hook = crate::resolve::hook::hook_binary()
        .map_err(|(path, source)| crate::resolve::ResolveError::Hook { path, source })?;
    let target = crate::layout::compression::CodecTarget { profile, base_layers: &[] };
    let facts = LayoutFacts { lock: lock.as_ref(), sources: &sources, rootfs: None, hook: &hook, target };
    let base_text = settings.base.clone().unwrap_or_else(|| spec.base.image.clone());
    let registry = crate::registry::RegistryClientOptions {
        insecure_registries: settings.insecure_registries.clone(),
        progress: crate::registry::ProgressMode::Quiet,
        ..Default::default()
    };
    let base =
        || crate::cost::inputs::base_input(&base_text, crate::resolve::base::lookup(&base_text, false, &registry));
    let lock_state = crate::cost::inputs::LockState { lock: lock.as_ref(), current: lock.is_some() };
    let decided = super::image_plan::decide(spec, &facts, base, lock_state, profile, false, false)?;
    let options = ContextOptions { base_override: settings.base.clone() };
    let mut generated = dockerfile::generate(spec, &decided.plan, lock.as_ref(), &options, &remote)?;
    warnings.append(&mut generated.warnings);
    for warning in &warnings {
        eprintln!("warning: {warning}");
    }
    for placed in decided.plan.placements.iter().filter(|p| p.reason.is_some()) {
        eprintln!("warning: mode auto: {}", placed.reason.as_deref().unwrap_or_default());
    }
    if !generated.ignored_settings.is_empty() {
        eprintln!(
            "note: dockerfile_path is set, so your Dockerfile decides the image; these settings are ignored: {}",
            generated.ignored_settings.join(", ")
        );
    }
    let written = context::write(&generated, dir)?;
    Ok((written, generated))
}

pub fn run(args: &DockerfileArgs) -> u8 {
    let loaded = config::load(&args.path);
    for diagnostic in &loaded.diagnostics {
        eprintln!("{diagnostic}");
    }
    let Some(spec) = loaded.spec else {
        eprintln!("error: {} is not a valid config; no context was written", args.path.display());
        return EXIT_INVALID_INPUT;
    };
    let dir = args.output.clone().unwrap_or_else(|| PathBuf::from(DEFAULT_CONTEXT_DIR));
    let profile = match super::build::load_profile(&spec, args.profile.as_deref()) {
        Ok(profile) => profile,
        Err(status) => return status,
    };
    let settings = ContextSettings {
        base: args.base.clone(),
        cache_dir: args.cache_dir.clone(),
        insecure_registries: args.insecure_registries.clone(),
        lock_policy: if args.locked { LockPolicy::Locked } else { LockPolicy::Refresh },
    };
    match write_context(&spec, &settings, &profile, &dir) {
        Ok((written, generated)) => {
            let findings = lint::lint(&generated.dockerfile);
            for finding in &findings {
                eprintln!("{finding}");
            }
            println!("context   {} ({} files, {} bytes)", written.dir.display(), written.files, written.bytes);
            let dir = written.dir.display();
            println!(
                "build     buildah bud --layers -f {dir}/Dockerfile {dir}   (or: imgbake build --builder buildah)"
            );
            // The lint holds imgbake's own output to its conventions; a user's
            // Dockerfile (dockerfile_path) only gets the findings as advice.
            if !generated.users_dockerfile && findings.iter().any(|f| f.severity == lint::Severity::Error) {
                EXIT_INVALID_INPUT
            } else {
                EXIT_OK
            }
        }
        Err(ContextError::Dockerfile(DockerfileError::NotAvailable(message)))
        | Err(ContextError::Layout(crate::layout::LayoutError::Refused(message))) => {
            eprintln!("error: {message}");
            EXIT_USAGE
        }
        Err(err) => {
            print_error(&err);
            EXIT_INVALID_INPUT
        }
    }
}
