//! The prefetch hook binary that volume-mode images carry: which file it is
//! (`$IMGBAKE_HOOK_BINARY`, else this very binary), and whether it runs on
//! any base (a static build) or needs the build machine's glibc.

use std::path::PathBuf;

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
pub fn hook_warning() -> Option<String> {
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
