//! `imgbake lock`: resolve every input of the config and write imgbake.lock
//! beside it (or, with `--check`, say whether the existing one is current).

use super::{print_error, EXIT_INVALID_INPUT, EXIT_OK};
use crate::config;
use crate::image::cache::LayerCache;
use crate::lock::{self, Lock};
use crate::registry::RegistryClientOptions;
use crate::resolve::ROOTFS_PREFIX;
use crate::resolve::{self, base, basefs};
use std::path::PathBuf;

#[derive(Debug, Clone, Default)]
pub struct LockArgs {
    pub path: PathBuf,
    pub base: Option<String>,
    pub insecure_registries: Vec<String>,
    pub cache_dir: Option<PathBuf>,
    pub check: bool,
}

pub fn run(args: &LockArgs) -> u8 {
    let loaded = config::load(&args.path);
    for diagnostic in &loaded.diagnostics {
        eprintln!("{diagnostic}");
    }
    let Some(spec) = loaded.spec else {
        eprintln!("error: {} is not a valid config; no lock was written", args.path.display());
        return EXIT_INVALID_INPUT;
    };
    let path = lock::lock_path(&spec);
    if args.check {
        return check(&spec, &path);
    }
    match resolve_lock(&spec, args) {
        Ok((fresh, warnings)) => {
            for warning in warnings {
                eprintln!("warning: {warning}");
            }
            let old = Lock::read(&path).ok().flatten();
            if let Err(err) = fresh.write(&path) {
                print_error(&err);
                return EXIT_INVALID_INPUT;
            }
            let python = fresh.python.as_ref().map_or(0, |p| p.packages.len());
            println!(
                "wrote {} ({} python packages, {} weights files, base {})",
                path.display(),
                python,
                fresh.weights.len(),
                fresh.base.pinned.as_deref().unwrap_or(&fresh.base.image)
            );
            if let Some(old) = old {
                let diff = lock::diff(&old.to_toml(), &fresh.to_toml());
                print!("{}", if diff.is_empty() { "unchanged\n".to_string() } else { diff });
            }
            EXIT_OK
        }
        Err(err) => {
            print_error(err.as_ref());
            EXIT_INVALID_INPUT
        }
    }
}

fn check(spec: &crate::spec::Spec, path: &std::path::Path) -> u8 {
    let current = lock::inputs_of(spec).map_err(|e| e.to_string()).and_then(|inputs| {
        match Lock::read(path).map_err(|e| e.to_string())? {
            None => Err(format!("{} does not exist", path.display())),
            Some(lock) if lock.is_current(&inputs) => Ok(()),
            Some(lock) => {
                let mut wanted = lock.clone();
                wanted.inputs = inputs;
                Err(format!("{} is stale:\n{}", path.display(), lock::diff(&lock.to_toml(), &wanted.to_toml())))
            }
        }
    });
    match current {
        Ok(()) => {
            println!("{} is current", path.display());
            EXIT_OK
        }
        Err(message) => {
            eprintln!("error: {message}");
            EXIT_INVALID_INPUT
        }
    }
}

type Resolved = (Lock, Vec<String>);

fn resolve_lock(spec: &crate::spec::Spec, args: &LockArgs) -> Result<Resolved, Box<dyn std::error::Error>> {
    let cache_dir = match &args.cache_dir {
        Some(dir) => dir.clone(),
        None => LayerCache::default_dir()?,
    };
    let cache = LayerCache::open(&cache_dir)?;
    let registry =
        RegistryClientOptions { insecure_registries: args.insecure_registries.clone(), ..Default::default() };
    let base_text = args.base.clone().unwrap_or_else(|| spec.base.image.clone());
    let (resolved, facts) = match base_text.strip_prefix(ROOTFS_PREFIX) {
        Some(root) => (base::resolve("scratch", &cache, &registry)?, basefs::facts_of_rootfs(root.as_ref())?),
        None => {
            let resolved = base::resolve(&base_text, &cache, &registry)?;
            let facts = basefs::facts_of_base(&resolved, &cache_dir)?;
            (resolved, facts)
        }
    };
    let mut warnings = Vec::new();
    let (lock, _sources) = resolve::resolve(spec, &resolved, &facts, &cache_dir, &mut warnings)?;
    Ok((lock, warnings))
}
