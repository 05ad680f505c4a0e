//! Volume mode: the image carries no weights bytes, only the weights
//! manifest, the prefetch hook (`$IMGBAKE_HOOK_BINARY`, else this very
//! binary) and a symlink from the app's path to the volume, for any remote
//! source (hub, object store, URL; plain or hf-cache layout); its entrypoint becomes
//! `imgbake prefetch --manifest /etc/imgbake/weights.json -- <entrypoint>`.

use super::layers::{self, BuiltLayer, LayerBuildError};
use super::stream::RemoteStreams;
use crate::image::cache::LayerCache;
use crate::image::digest::Digest;
use crate::image::entries::{self, LayerEntry};
use crate::image::layer::{Compression, LayerOptions};
use crate::spec::WeightsEntry;
use crate::weights::manifest::{self, ManifestEntry, WeightsManifest, MANIFEST_PATH};
use crate::weights::store::WeightsStore;
use crate::weights::{RemoteFile, WeightsError};
use std::path::PathBuf;

/// Where the hook binary goes in the image.
pub const HOOK_PATH: &str = "/usr/local/bin/imgbake";

/// The manifest entry of one volume-mode source: listed at its pinned
/// revision; the sha256 of files the source gives none for comes from
/// imgbake.lock or an earlier build, else the file is read through once
/// (nothing kept) so that the hook can verify every byte. Returns the
/// sha256s computed that way, for the lock.
pub fn manifest_entry(
    entry: &WeightsEntry,
    lock: Option<&crate::lock::Lock>,
    store: &WeightsStore,
    warnings: &mut Vec<String>,
) -> Result<(ManifestEntry, Vec<(RemoteFile, Digest)>), LayerBuildError> {
    let mut listing = super::remote::list(entry, warnings)?;
    super::remote::fill_known_hashes(entry, &mut listing, lock, Some(store));
    let mut computed = Vec::new();
    let unknown: Vec<RemoteFile> = listing.files.iter().filter(|f| f.sha256.is_none()).cloned().collect();
    if !unknown.is_empty() {
        let streams =
            RemoteStreams::new(entry, &unknown, Default::default(), store).map_err(LayerBuildError::Weights)?;
        for file in &unknown {
            let digest =
                streams.hash(file).map_err(|source| LayerBuildError::Hash { path: file.url.clone(), source })?;
            computed.push((file.clone(), digest));
        }
        super::remote::record_computed_hashes(&mut listing, &computed, store)?;
    }
    if let Some(warning) = hook_warning() {
        if !warnings.contains(&warning) {
            warnings.push(warning);
        }
    }
    let manifest_entry = manifest::entry(entry, &listing).map_err(|err| {
        LayerBuildError::Weights(WeightsError::Protocol { source_uri: entry.uri.clone(), message: err.to_string() })
    })?;
    Ok((manifest_entry, computed))
}

/// The layer with the manifest, the hook and the app-path symlinks.
pub fn volume_layer(
    manifest: &WeightsManifest,
    store: &WeightsStore,
    cache: &LayerCache,
) -> Result<BuiltLayer, LayerBuildError> {
    let what = "volume manifest and prefetch hook".to_string();
    let entries_error = |source| LayerBuildError::Entries { what: what.clone(), source };
    let manifest_file = store.put_bytes(&manifest.to_bytes()).map_err(LayerBuildError::Store)?;
    let hook = hook_binary().map_err(|(path, source)| LayerBuildError::Walk { path, source })?;
    let files = vec![
        (manifest_file, MANIFEST_PATH.trim_start_matches('/').to_string()),
        (hook, HOOK_PATH.trim_start_matches('/').to_string()),
    ];
    let mut all = entries::entries_from_files(&files).map_err(entries_error)?;
    // The manifest comes from a private temp file (0600); in the image every
    // user, not only root, must read it.
    for entry in all.iter_mut().filter(|e| e.path == MANIFEST_PATH.trim_start_matches('/')) {
        entry.mode = 0o644;
    }
    for entry in manifest.entries.iter().filter(|e| e.path != e.volume_path) {
        all.push(LayerEntry::symlink(entry.path.trim_start_matches('/'), &entry.volume_path));
    }
    let all = entries::finish_entries(all).map_err(entries_error)?;
    let total: u64 = manifest.entries.iter().map(|e| e.total_size).sum();
    let history = format!(
        "imgbake: volume mode: {MANIFEST_PATH} ({} sources, {total} bytes fetched at start), prefetch hook at {HOOK_PATH}",
        manifest.entries.len()
    );
    let options = LayerOptions::from_env(Compression::Gzip { level: 6 });
    layers::build_cached_layer(cache, &all, &options, what, history, 2)
}

/// Names the static hook binary to place in images (see `scripts/build-hook.sh`).
pub const HOOK_BINARY_ENV: &str = "IMGBAKE_HOOK_BINARY";

/// The prefetch hook to copy into the image: `$IMGBAKE_HOOK_BINARY` when
/// set (it must exist), else this very binary. A dynamically linked
/// binary still works on bases with the same or a newer glibc, so it is
/// used with a warning ([`hook_warning`]) rather than refused.
pub fn hook_binary() -> Result<PathBuf, (PathBuf, std::io::Error)> {
    match std::env::var_os(HOOK_BINARY_ENV) {
        Some(path) => {
            let path = PathBuf::from(path);
            match std::fs::metadata(&path) {
                Ok(meta) if meta.is_file() => Ok(path),
                Ok(_) => Err((path, std::io::Error::other(format!("{HOOK_BINARY_ENV} is not a file")))),
                Err(error) => Err((path, error)),
            }
        }
        None => std::env::current_exe().map_err(|source| (PathBuf::from("imgbake"), source)),
    }
}

/// A warning when the hook that would go into the image is dynamically linked.
fn hook_warning() -> Option<String> {
    let path = hook_binary().ok()?;
    let bytes = std::fs::read(&path).ok()?;
    is_dynamic_elf(&bytes).then(|| {
        format!(
            "the prefetch hook {} is dynamically linked: it needs glibc at least as new as this machine's in the \
             image; set {HOOK_BINARY_ENV} to a static build (scripts/build-hook.sh) to run on any base",
            path.display()
        )
    })
}

/// True when an ELF64 little-endian file has a `PT_INTERP` program header
/// (it needs the dynamic loader). Hand-written: a dozen bytes of the header
/// are all we read, not worth an ELF crate.
pub fn is_dynamic_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    let read = |at: usize, n: usize| bytes.get(at..at + n);
    if read(0, 4) != Some(b"\x7fELF") || bytes.get(4) != Some(&2) || bytes.get(5) != Some(&1) {
        return false;
    }
    let u64_at = |at| read(at, 8).map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")) as usize);
    let u16_at = |at| read(at, 2).map(|b| u16::from_le_bytes(b.try_into().expect("2 bytes")) as usize);
    let (Some(phoff), Some(phentsize), Some(phnum)) = (u64_at(0x20), u16_at(0x36), u16_at(0x38)) else {
        return false;
    };
    (0..phnum).any(|i| {
        read(phoff + i * phentsize, 4).is_some_and(|b| u32::from_le_bytes(b.try_into().expect("4 bytes")) == PT_INTERP)
    })
}

/// `imgbake prefetch --manifest … -- <entrypoint>`.
pub fn wrap_entrypoint(entrypoint: &[String]) -> Vec<String> {
    let mut wrapped: Vec<String> =
        [HOOK_PATH, "prefetch", "--manifest", MANIFEST_PATH, "--"].iter().map(|s| s.to_string()).collect();
    wrapped.extend(entrypoint.iter().cloned());
    wrapped
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dynamic_elf_files_are_told_from_static_ones() {
        let this = std::fs::read(std::env::current_exe().unwrap()).unwrap();
        // Test binaries are linked dynamically against glibc.
        assert!(is_dynamic_elf(&this));
        let mut static_like = this.clone();
        // Rewrite every PT_INTERP into PT_NULL: what a static binary looks like.
        let phoff = u64::from_le_bytes(this[0x20..0x28].try_into().unwrap()) as usize;
        let size = u16::from_le_bytes(this[0x36..0x38].try_into().unwrap()) as usize;
        let count = u16::from_le_bytes(this[0x38..0x3a].try_into().unwrap()) as usize;
        for i in 0..count {
            let at = phoff + i * size;
            if static_like[at..at + 4] == 3u32.to_le_bytes() {
                static_like[at..at + 4].copy_from_slice(&0u32.to_le_bytes());
            }
        }
        assert!(!is_dynamic_elf(&static_like));
        assert!(!is_dynamic_elf(b"#!/bin/sh\n"));
    }
}
