//! `imgbake build`: load the config, build natively, print what was made.

use super::{print_error, EXIT_INVALID_INPUT, EXIT_OK, EXIT_USAGE};
use crate::config;
use crate::deploy::DeployTarget;
use crate::execute::{self, BuildError, BuildOptions};
use crate::image::layout::{is_valid_tag, parse_oci_ref, OciRef};
use crate::plumbing::units::human_bytes;
use crate::registry::{Reference, RegistryClientOptions};
use crate::resolve::LockPolicy;
use std::path::{Path, PathBuf};

/// Build flags as typed values (made from the CLI in main).
#[derive(Debug, Clone, Default)]
pub struct BuildArgs {
    pub path: PathBuf,
    pub output: Option<String>,
    pub push: Option<String>,
    /// `--cache-from REPO|none`, `--cache-to REPO|none`, `--no-cache`.
    pub cache_from: Option<String>,
    pub cache_to: Option<String>,
    pub no_cache: bool,
    pub base: Option<String>,
    pub insecure_registries: Vec<String>,
    pub cache_dir: Option<PathBuf>,
    pub json: bool,
    pub locked: bool,
    /// `--profile`: a built-in profile name or a profile TOML file for `mode = "auto"`.
    pub profile: Option<String>,
    /// A container builder on the generated Dockerfile instead of the native build.
    pub builder: Option<crate::dockerfile::builder::ContainerBuilder>,
    /// `--deploy DIR`: after the push, write the hand-off files of `deploy_target` there.
    pub deploy: Option<PathBuf>,
    /// `--deploy-target`; `None`: the config's target.
    pub deploy_target: Option<DeployTarget>,
    /// `--deploy-volume-claim`: Kubernetes volume weights on this claim instead of an emptyDir.
    pub deploy_volume_claim: Option<String>,
}

/// Where the registry build cache is read and written: the push
/// repository unless `--cache-from` / `--cache-to` say otherwise (`none`:
/// off). Recording needs a push (the blobs must be in the registry).
fn registry_cache_options(
    args: &BuildArgs,
    push: Option<&Reference>,
) -> Result<execute::registry_cache::RegistryCacheOptions, String> {
    let repository = |flag: &str, value: &Option<String>| -> Result<Option<Reference>, String> {
        match value.as_deref() {
            Some("none") => Ok(None),
            Some(text) => text.parse::<Reference>().map(Some).map_err(|error| format!("--{flag}: {error}")),
            None => Ok(push.cloned()),
        }
    };
    let from = repository("cache-from", &args.cache_from)?;
    let to = repository("cache-to", &args.cache_to)?;
    if to.is_some() && push.is_none() {
        return Err("--cache-to records layers that a push put in the registry; add --push REF".into());
    }
    for repository in [&from, &to].into_iter().flatten() {
        let Some(push) = push else { continue };
        if repository.registry != push.registry {
            return Err(format!(
                "the registry cache {repository} is on another registry than --push {push}; its layers could not be \
                 mounted into the image's repository (use a repository on {})",
                push.registry
            ));
        }
    }
    Ok(execute::registry_cache::RegistryCacheOptions { from, to })
}

/// The default output: `oci:imgbake-out:<app name>` in the current directory.
pub fn default_output(app_name: &str) -> OciRef {
    let tag: String = app_name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-') { c } else { '-' })
        .collect();
    let tag = if is_valid_tag(&tag) { tag } else { "latest".to_string() };
    OciRef { dir: PathBuf::from("imgbake-out"), tag }
}

pub fn run(args: &BuildArgs) -> u8 {
    let loaded = config::load(&args.path);
    for diagnostic in &loaded.diagnostics {
        eprintln!("{diagnostic}");
    }
    let Some(spec) = loaded.spec else {
        eprintln!("error: {} is not a valid config; nothing was built", args.path.display());
        return EXIT_INVALID_INPUT;
    };
    let output = match &args.output {
        Some(text) => match parse_oci_ref(text) {
            Some(oci) => oci,
            None => {
                eprintln!("error: --output must be oci:DIR[:TAG], found `{text}`");
                return EXIT_USAGE;
            }
        },
        None => default_output(&spec.name),
    };
    let push = match args.push.as_deref().map(str::parse::<Reference>) {
        None => None,
        Some(Ok(reference)) => Some(reference),
        Some(Err(err)) => {
            print_error(&err);
            return EXIT_USAGE;
        }
    };
    let deploy_target = args.deploy_target.unwrap_or_else(|| DeployTarget::of(&spec));
    if args.deploy.is_some() {
        if push.is_none() {
            eprintln!("error: --deploy writes files that run the pushed image by digest, and nothing is pushed");
            eprintln!("hint: add --push HOST/REPO[:TAG]");
            return EXIT_USAGE;
        }
        if args.builder.is_some() {
            eprintln!("error: --deploy needs the native build (the image config it reads is the native build's)");
            eprintln!("hint: drop --builder, or write the platform's file by hand from the pushed digest");
            return EXIT_USAGE;
        }
        if let Err(error) = crate::deploy::check(&spec, deploy_target) {
            print_error(&error);
            return EXIT_INVALID_INPUT;
        }
    }
    let profile = match load_profile(&spec, args.profile.as_deref()) {
        Ok(profile) => profile,
        Err(status) => return status,
    };
    let lock_policy = if args.locked { LockPolicy::Locked } else { LockPolicy::Refresh };
    if let Some(builder) = args.builder {
        // The same refusals as the native build, before anything is resolved.
        if let Err(crate::layout::LayoutError::Refused(message)) = crate::layout::check_configured(&spec) {
            eprintln!("error: {message}");
            return EXIT_USAGE;
        }
        return run_container_builder(args, &spec, builder, output, push.map(|r| r.to_string()), &profile, lock_policy);
    }
    if let Some(message) = execute::unsupported_settings(&spec) {
        eprintln!("error: {message}");
        return EXIT_USAGE;
    }
    if let Err(crate::layout::LayoutError::Refused(message)) = crate::layout::check_configured(&spec) {
        eprintln!("error: {message}");
        return EXIT_USAGE;
    }
    let registry = RegistryClientOptions {
        insecure_registries: args.insecure_registries.clone(),
        ..RegistryClientOptions::default()
    };
    let resolve_options = crate::resolve::ResolveOptions {
        base_override: args.base.clone(),
        cache_dir: args.cache_dir.clone(),
        registry: registry.clone(),
        lock_policy,
    };
    let registry_cache = match registry_cache_options(args, push.as_ref()) {
        Ok(options) => options,
        Err(message) => {
            eprintln!("error: {message}");
            return EXIT_USAGE;
        }
    };
    // The hand-off names the image by digest alone: a tag beside it would be ignored, or refused.
    let deploy_repository = push.as_ref().map(|r| Reference { tag: None, digest: None, ..r.clone() });
    let options = BuildOptions {
        complete_output: args.output.is_some() || push.is_none(),
        output,
        push,
        registry,
        lock_policy,
        scratch_override: args.base.as_deref() == Some("scratch"),
        registry_cache,
        no_cache: args.no_cache,
    };
    let timeline = crate::plumbing::timeline::Timeline::new();
    let built = timeline
        .time("resolve", || crate::resolve::for_build(&spec, &resolve_options))
        .map_err(BuildError::from)
        .and_then(|mut resolved| {
            let facts = crate::layout::LayoutFacts {
                lock: Some(&resolved.lock),
                sources: &resolved.sources,
                rootfs: resolved.rootfs.as_deref(),
                hook: &resolved.hook,
                target: crate::layout::compression::CodecTarget { profile: &profile, base_layers: &[] },
            };
            let base = || {
                crate::cost::inputs::base_input(
                    &resolved.base_text,
                    resolved.base.lookup(&resolved.base_text, &resolved.cache_dir),
                )
            };
            let lock = crate::cost::inputs::LockState { lock: Some(&resolved.lock), current: true };
            let decided = timeline
                .time("plan", || super::image_plan::decide(&spec, &facts, base, lock, &profile, false, true))?;
            let outcome = execute::build(&spec, &mut resolved, &decided.plan, &options, &timeline)?;
            // Runpod sizes its container disk by the unpacked image: the base's layers and ours.
            let base_size = if args.deploy.is_some() && deploy_target == DeployTarget::Runpod {
                let base = crate::cost::inputs::base_input(
                    &resolved.base_text,
                    resolved.base.lookup(&resolved.base_text, &resolved.cache_dir),
                );
                crate::cost::options::base_layers(&base, &profile.params).iter().map(|l| l.uncompressed).sum()
            } else {
                0
            };
            Ok((outcome, decided.plan, base_size))
        });
    match built {
        Ok((outcome, plan, base_size)) => {
            for warning in &outcome.warnings {
                eprintln!("warning: {warning}");
            }
            if outcome.lock_written {
                eprintln!("wrote {}", crate::lock::lock_path(&spec).display());
            }
            let mut deploy_files = Vec::new();
            let artifact_refs: Vec<(String, String)> =
                outcome.artifacts.iter().filter_map(|a| Some((a.origin.clone(), a.pushed.clone()?))).collect();
            if let (Some(dir), Some(repository)) = (&args.deploy, &deploy_repository) {
                let image = repository.with_digest(outcome.manifest_digest.clone()).to_string();
                let input = crate::deploy::DeployInput {
                    spec: &spec,
                    image: &image,
                    config: &plan.config,
                    placements: &plan.placements,
                    image_size: base_size + outcome.layers.iter().map(|l| l.layer.uncompressed_size).sum::<u64>(),
                    volume_claim: args.deploy_volume_claim.as_deref(),
                    artifacts: &artifact_refs,
                };
                for warning in crate::deploy::warnings(deploy_target, &input) {
                    eprintln!("warning: {warning}");
                }
                match crate::deploy::write(dir, &crate::deploy::render(deploy_target, &input)) {
                    Ok(paths) => deploy_files = paths,
                    Err(error) => {
                        print_error(&error);
                        return EXIT_INVALID_INPUT;
                    }
                }
                for path in &deploy_files {
                    eprintln!("wrote {}", path.display());
                }
            }
            if args.json {
                let mut value = outcome_json(&outcome);
                if args.deploy.is_some() {
                    value["deploy_files"] =
                        deploy_files.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().into();
                }
                println!("{}", serde_json::to_string_pretty(&value).expect("serializes"));
            } else {
                print_outcome(&outcome, Path::new(&outcome.output.dir));
            }
            EXIT_OK
        }
        Err(BuildError::NotAvailable(message))
        | Err(BuildError::Layout(crate::layout::LayoutError::Refused(message))) => {
            eprintln!("error: {message}");
            EXIT_USAGE
        }
        Err(BuildError::Entrypoint(missing)) => {
            print_error(&missing);
            EXIT_INVALID_INPUT
        }
        Err(err) => {
            print_error(&err);
            EXIT_INVALID_INPUT
        }
    }
}

/// `--profile` (a built-in name or a profile file), else the target's
/// built-in profile: what decides `mode = "auto"`.
pub fn load_profile(spec: &crate::spec::Spec, choice: Option<&str>) -> Result<crate::pricing::profile::Profile, u8> {
    let named = match choice {
        None => None,
        Some(choice) => match crate::pricing::profile::load(spec.target.name.as_str(), Some(choice)) {
            Ok(profile) => Some(profile),
            Err(error) => {
                print_error(&error);
                eprintln!("hint: `imgbake plan --calibrate -o FILE` writes a profile file with every key");
                return Err(EXIT_INVALID_INPUT);
            }
        },
    };
    Ok(crate::cost::profile_for(spec, named.as_ref()))
}

/// `--builder buildah|docker|buildkit`: the generated context in a temp dir,
/// built by that builder. The same ImagePlan as the native build: `--locked`
/// and `--profile` mean the same.
fn run_container_builder(
    args: &BuildArgs,
    spec: &crate::spec::Spec,
    builder: crate::dockerfile::builder::ContainerBuilder,
    output: OciRef,
    push: Option<String>,
    profile: &crate::pricing::profile::Profile,
    lock_policy: LockPolicy,
) -> u8 {
    use crate::dockerfile::builder::{self, BuilderRun};
    let temp = match tempfile::Builder::new().prefix("imgbake-context-").tempdir() {
        Ok(temp) => temp,
        Err(err) => {
            print_error(&err);
            return EXIT_INVALID_INPUT;
        }
    };
    let context_dir = temp.path().join("context");
    let settings = super::dockerfile::ContextSettings {
        base: args.base.clone(),
        cache_dir: args.cache_dir.clone(),
        insecure_registries: args.insecure_registries.clone(),
        lock_policy,
    };
    match super::dockerfile::write_context(spec, &settings, profile, &context_dir) {
        Ok(_) => {}
        Err(super::dockerfile::ContextError::Dockerfile(crate::dockerfile::DockerfileError::NotAvailable(message)))
        | Err(super::dockerfile::ContextError::Layout(crate::layout::LayoutError::Refused(message))) => {
            eprintln!("error: {message}");
            return EXIT_USAGE;
        }
        Err(err) => {
            print_error(&err);
            return EXIT_INVALID_INPUT;
        }
    }
    let run = BuilderRun {
        builder,
        context: context_dir,
        image_name: format!("localhost/imgbake/{}:{}", output.tag.to_ascii_lowercase(), output.tag),
        output: output.clone(),
        push,
        insecure_registries: args.insecure_registries.clone(),
    };
    match builder::build(&run) {
        Ok(outcome) => {
            let image = format!("oci:{}:{}", output.dir.display(), output.tag);
            if args.json {
                let value = serde_json::json!({
                    "builder": builder.program(),
                    "output": image,
                    "manifest_digest": outcome.manifest_digest,
                    "pushed": outcome.pushed,
                });
                println!("{}", serde_json::to_string_pretty(&value).expect("serializes"));
            } else {
                println!("image     {image}  {}", outcome.manifest_digest.as_deref().unwrap_or("-"));
                if let Some(pushed) = &outcome.pushed {
                    println!("pushed    {pushed}");
                }
            }
            EXIT_OK
        }
        Err(err @ builder::BuilderError::Missing { .. }) => {
            print_error(&err);
            EXIT_USAGE
        }
        Err(err) => {
            print_error(&err);
            EXIT_INVALID_INPUT
        }
    }
}

fn print_outcome(outcome: &execute::BuildOutcome, dir: &Path) {
    match &outcome.base_pinned {
        Some(pinned) => println!("base      {} ({pinned})", outcome.base),
        None => println!("base      {}", outcome.base),
    }
    if let Some(compiler) = &outcome.bytecode_compiler {
        println!("bytecode  {compiler}");
    }
    for layer in &outcome.layers {
        let state = match (layer.from_registry_cache, layer.cached) {
            (true, _) => "from the registry cache",
            (false, true) => "cached",
            (false, false) => "built",
        };
        println!(
            "layer     {} {:>10}  {} ({} files, {state})",
            layer.layer.digest,
            human_bytes(layer.layer.size),
            layer.what,
            layer.files
        );
    }
    println!("image     oci:{}:{}  {}", dir.display(), outcome.output.tag, outcome.manifest_digest);
    if let Some(pushed) = &outcome.pushed {
        println!("pushed    {pushed}");
    }
    for artifact in &outcome.artifacts {
        println!(
            "artifact  oci:{}:{}  {}  ({} at {})",
            dir.display(),
            artifact.tag,
            artifact.digest(),
            artifact.mount,
            artifact.mount_path
        );
        if let Some(pushed) = &artifact.pushed {
            println!("pushed    {pushed}");
        }
    }
}

fn outcome_json(outcome: &execute::BuildOutcome) -> serde_json::Value {
    serde_json::json!({
        "manifest_digest": outcome.manifest_digest.to_string(),
        "output": format!("oci:{}:{}", outcome.output.dir.display(), outcome.output.tag),
        "base": outcome.base,
        "base_pinned": outcome.base_pinned,
        "pushed": outcome.pushed,
        "pinned_weights": outcome.pinned_weights,
        "lock_written": outcome.lock_written,
        "bytecode_compiler": outcome.bytecode_compiler,
        "layers": outcome.layers.iter().map(|l| serde_json::json!({
            "what": l.what,
            "digest": l.layer.digest.to_string(),
            "diff_id": l.layer.diff_id.to_string(),
            "size": l.layer.size,
            "uncompressed_size": l.layer.uncompressed_size,
            "media_type": l.layer.media_type,
            "files": l.files,
            "paths": l.paths,
            "cached": l.cached,
            "registry_cache": l.from_registry_cache,
        })).collect::<Vec<_>>(),
        "artifacts": outcome.artifacts.iter().map(|a| serde_json::json!({
            "origin": a.origin,
            "source": a.uri,
            "mount": a.mount,
            "mount_path": a.mount_path,
            "tag": a.tag,
            "manifest_digest": a.digest().to_string(),
            "pushed": a.pushed,
            "layers": a.layers.iter().map(|l| serde_json::json!({
                "what": l.what,
                "digest": l.layer.digest.to_string(),
                "size": l.layer.size,
                "files": l.files,
                "cached": l.cached,
                "registry_cache": l.from_registry_cache,
            })).collect::<Vec<_>>(),
        })).collect::<Vec<_>>(),
        "timings": outcome.timings,
        "registry_cache": {
            // The image's layers and the artifacts' layers.
            "hits": outcome.layers.iter().chain(outcome.artifacts.iter().flat_map(|a| &a.layers))
                .filter(|l| l.from_registry_cache).count(),
            "recorded": outcome.registry_cache_recorded,
        },
        "cache": {
            "hits": outcome.cache.hits,
            "misses": outcome.cache.misses,
            "files_read": outcome.cache.files_read,
            "bytes_read": outcome.cache.bytes_read,
        },
    })
}
