//! OpenPGP check of a suite's `InRelease` (or `Release` + `Release.gpg`)
//! against the base image's own archive keyrings, with `gpgv` — the same
//! verifier apt itself runs. Done with the external tool rather than an
//! OpenPGP crate: gpgv is on every Debian/Ubuntu machine (apt depends on it)
//! and a Rust OpenPGP stack (sequoia, rpgp) is a large build for one check.
//! `.asc` (armored) keys are de-armored here since gpgv reads binary keyrings.

use super::AptError;
use base64::Engine;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Set to `1` to accept archives whose Release signature cannot be checked
/// (no `gpgv` on the build machine, or no keyring in the base).
pub const ALLOW_UNSIGNED_ENV: &str = "IMGBAKE_APT_ALLOW_UNSIGNED";

/// The binary form of a keyring file: `.asc` armor removed, binary kept.
pub fn dearmor(content: &[u8]) -> Option<Vec<u8>> {
    let text = match std::str::from_utf8(content) {
        Ok(text) if text.contains("-----BEGIN PGP PUBLIC KEY BLOCK-----") => text,
        _ => return (!content.is_empty()).then(|| content.to_vec()),
    };
    let mut out = Vec::new();
    for block in text.split("-----BEGIN PGP PUBLIC KEY BLOCK-----").skip(1) {
        let body = block.split("-----END PGP PUBLIC KEY BLOCK-----").next()?;
        // Armor headers end at the first blank line (there may be none).
        let body = match body.trim_start_matches(['\r', '\n']).split_once("\n\n") {
            Some((head, rest)) if head.lines().all(|l| l.contains(": ")) => rest,
            _ => body,
        };
        let data: String =
            body.lines().map(str::trim).filter(|line| !line.is_empty() && !line.starts_with('=')).collect();
        out.extend(base64::engine::general_purpose::STANDARD.decode(data).ok()?);
    }
    Some(out)
}

/// What a check gave.
pub enum Checked {
    /// The signed text exactly as gpgv verified it (for a clearsigned
    /// InRelease, gpgv's own output, so nothing outside the signature is read).
    Verified(Vec<u8>),
    /// Why no check could be made.
    Unchecked(&'static str),
}

/// Verifies `signed` (clearsigned InRelease when `detached` is None, else
/// Release with its detached signature).
pub fn verify(keyrings: &[Vec<u8>], signed: &[u8], detached: Option<&[u8]>, url: &str) -> Result<Checked, AptError> {
    if keyrings.is_empty() {
        return Ok(Checked::Unchecked("the base image has no apt keyring"));
    }
    let Some(gpgv) = find_gpgv() else {
        return Ok(Checked::Unchecked("`gpgv` is not installed on the build machine (apt-get install gpgv)"));
    };
    let dir = tempfile::tempdir().map_err(|source| AptError::Io { path: std::env::temp_dir(), source })?;
    let write = |name: &str, bytes: &[u8]| -> Result<PathBuf, AptError> {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).map_err(|source| AptError::Io { path: path.clone(), source })?;
        Ok(path)
    };
    let mut command = Command::new(gpgv);
    // A private home: never read or write the build user's ~/.gnupg.
    command.env("GNUPGHOME", dir.path()).stdin(Stdio::null());
    for (index, keyring) in keyrings.iter().enumerate() {
        command.arg("--keyring").arg(write(&format!("keyring{index}.gpg"), keyring)?);
    }
    let verified_path = dir.path().join("verified");
    if let Some(signature) = detached {
        command.arg(write("Release.gpg", signature)?);
    } else {
        command.arg("--output").arg(&verified_path);
    }
    command.arg(write("signed", signed)?);
    let output = command.output().map_err(|source| AptError::Io { path: PathBuf::from("gpgv"), source })?;
    if output.status.success() {
        let content = match detached {
            Some(_) => signed.to_vec(),
            None => std::fs::read(&verified_path).map_err(|source| AptError::Io { path: verified_path, source })?,
        };
        return Ok(Checked::Verified(content));
    }
    let detail = String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter(|line| line.contains("BAD") || line.contains("No public key") || line.contains("Can't check"))
        .map(|line| line.trim_start_matches("gpgv: ").to_string())
        .collect::<Vec<_>>();
    Err(AptError::Signature {
        url: url.to_string(),
        detail: if detail.is_empty() { "gpgv refused it".to_string() } else { detail.join("; ") },
    })
}

fn find_gpgv() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path).chain([PathBuf::from("/usr/bin")]).map(|dir| dir.join("gpgv")).find(|p| is_file(p))
}

fn is_file(path: &Path) -> bool {
    path.metadata().is_ok_and(|m| m.is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn armored_keys_are_dearmored_and_binary_kept() {
        let binary = [0x99u8, 0x01, 0x0d, 0x04, 0x5a];
        let encoded = base64::engine::general_purpose::STANDARD.encode(binary);
        let armored = format!(
            "-----BEGIN PGP PUBLIC KEY BLOCK-----\nComment: test\n\n{encoded}\n=abcd\n-----END PGP PUBLIC KEY BLOCK-----\n"
        );
        assert_eq!(dearmor(armored.as_bytes()).unwrap(), binary);
        let bare = format!("-----BEGIN PGP PUBLIC KEY BLOCK-----\n\n{encoded}\n-----END PGP PUBLIC KEY BLOCK-----\n");
        assert_eq!(dearmor(bare.as_bytes()).unwrap(), binary);
        assert_eq!(dearmor(&binary).unwrap(), binary);
        assert_eq!(dearmor(b""), None);
    }
}
