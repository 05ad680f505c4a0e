//! `imgbake build`: load the config, build natively, print what was made.

use super::{print_error, EXIT_INVALID_INPUT, EXIT_OK, EXIT_USAGE};
use crate::config;
use crate::execute::{self, BuildError, BuildOptions};
use crate::image::layout::{is_valid_tag, parse_oci_ref, OciRef};
use crate::registry::{human_bytes, Reference, RegistryClientOptions};
use crate::resolve::LockPolicy;
use std::path::{Path, PathBuf};

/// Build flags as typed values (made from the CLI in main).
#[derive(Debug, Clone, Default)]
pub struct BuildArgs {
    pub path: PathBuf,
    pub output: Option<String>,
    pub push: Option<String>,
    pub base: Option<String>,
    pub insecure_registries: Vec<String>,
    pub cache_dir: Option<PathBuf>,
    pub json: bool,
    pub locked: bool,
    /// `--profile`: a built-in profile name or a profile TOML file for `mode = "auto"`.
    pub profile: Option<String>,
    /// A container builder on the generated Dockerfile instead of the native build.
    pub builder: Option<crate::dockerfile::builder::ContainerBuilder>,
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
    if let Some(builder) = args.builder {
        return run_container_builder(args, &spec, builder, output, push.map(|r| r.to_string()));
    }
    let profile = match &args.profile {
        None => None,
        Some(choice) => {
            let target = format!("{:?}", spec.target.name).to_lowercase();
            match crate::cost::profile::load(&target, Some(choice)) {
                Ok(profile) => Some(profile),
                Err(error) => {
                    print_error(&error);
                    eprintln!("hint: `imgbake plan --calibrate -o FILE` writes a profile file with every key");
                    return EXIT_INVALID_INPUT;
                }
            }
        }
    };
    let options = BuildOptions {
        profile,
        output,
        push,
        base_override: args.base.clone(),
        cache_dir: args.cache_dir.clone(),
        registry: RegistryClientOptions {
            insecure_registries: args.insecure_registries.clone(),
            ..RegistryClientOptions::default()
        },
        lock_policy: if args.locked { LockPolicy::Locked } else { LockPolicy::Refresh },
    };
    match execute::build(&spec, &options) {
        Ok(outcome) => {
            for warning in &outcome.warnings {
                eprintln!("warning: {warning}");
            }
            if outcome.lock_written {
                eprintln!("wrote {}", crate::lock::lock_path(&spec).display());
            }
            if args.json {
                println!("{}", serde_json::to_string_pretty(&outcome_json(&outcome)).expect("serializes"));
            } else {
                print_outcome(&outcome, Path::new(&outcome.output.dir));
            }
            EXIT_OK
        }
        Err(BuildError::NotAvailable(message)) => {
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

/// `--builder buildah|docker|buildkit`: the generated context in a temp dir, built by that builder.
fn run_container_builder(
    args: &BuildArgs,
    spec: &crate::spec::Spec,
    builder: crate::dockerfile::builder::ContainerBuilder,
    output: OciRef,
    push: Option<String>,
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
    match super::dockerfile::write_context(spec, args.base.clone(), args.cache_dir.as_deref(), &context_dir) {
        Ok(_) => {}
        Err(crate::dockerfile::DockerfileError::NotAvailable(message)) => {
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
    for layer in &outcome.layers {
        let state = if layer.cached { "cached" } else { "built" };
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
        "layers": outcome.layers.iter().map(|l| serde_json::json!({
            "what": l.what,
            "digest": l.layer.digest.to_string(),
            "diff_id": l.layer.diff_id.to_string(),
            "size": l.layer.size,
            "uncompressed_size": l.layer.uncompressed_size,
            "media_type": l.layer.media_type,
            "files": l.files,
            "cached": l.cached,
        })).collect::<Vec<_>>(),
        "cache": {
            "hits": outcome.cache.hits,
            "misses": outcome.cache.misses,
            "files_read": outcome.cache.files_read,
            "bytes_read": outcome.cache.bytes_read,
        },
    })
}
