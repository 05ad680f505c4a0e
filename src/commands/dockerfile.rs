//! `imgbake dockerfile`: load the config, write the build context, lint its
//! Dockerfile and say what the user should know (ignored settings, warnings).

use super::{print_error, EXIT_INVALID_INPUT, EXIT_OK, EXIT_USAGE};
use crate::config;
use crate::dockerfile::{self, context, lint, ContextOptions, DockerfileError, StoreWeights};
use crate::image::cache::LayerCache;
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
}

/// Generates and writes the context for `spec` into `dir`, printing
/// warnings and lint findings to stderr. Shared with `build --builder`.
pub fn write_context(
    spec: &Spec,
    base: Option<String>,
    cache_dir: Option<&Path>,
    dir: &Path,
) -> Result<(context::Written, dockerfile::Context), DockerfileError> {
    let cache_dir = match cache_dir {
        Some(dir) => dir.to_path_buf(),
        None => LayerCache::default_dir()
            .map_err(|e| DockerfileError::Weights { origin: "cache directory".to_string(), message: e.to_string() })?,
    };
    let remote = StoreWeights::open(&cache_dir)?;
    let generated = dockerfile::generate(spec, &ContextOptions { base_override: base }, &remote)?;
    for warning in &generated.warnings {
        eprintln!("warning: {warning}");
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
    match write_context(&spec, args.base.clone(), args.cache_dir.as_deref(), &dir) {
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
        Err(DockerfileError::NotAvailable(message)) => {
            eprintln!("error: {message}");
            EXIT_USAGE
        }
        Err(err) => {
            print_error(&err);
            EXIT_INVALID_INPUT
        }
    }
}
