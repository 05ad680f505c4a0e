//! The archive's indexes: `InRelease`/`Release` of each suite gives the
//! sha256 of `{component}/binary-{arch}/Packages.xz` (or `.gz`); that file is
//! downloaded, checked, decompressed and cached under
//! `{cache}/apt/indexes/{sha256}`, then read into package records.
//!
//! The Release file's OpenPGP signature is checked with `gpgv` against the
//! base's keyrings (see signature.rs and docs/apt.md), so the chain
//! keyring → Release → Packages → .deb holds whatever the transport.

use super::control::parse_paragraphs;
use super::fetch::{http_client, write_atomic};
use super::signature::{verify, Checked};
use super::sources::Source;
use super::AptError;
use sha2::{Digest, Sha256};
use std::io::Read;
use std::path::Path;

/// One binary package of an index, fields kept as text and parsed when the
/// resolver visits the package (most of the 60,000 never are).
#[derive(Debug, Clone, Default)]
pub struct IndexPackage {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub essential: bool,
    pub priority: String,
    pub depends: String,
    pub pre_depends: String,
    pub provides: String,
    pub conflicts: String,
    pub breaks: String,
    pub filename: String,
    pub size: u64,
    pub sha256: String,
    /// Archive base URI the `filename` is relative to.
    pub uri: String,
    /// `bookworm-security`, for messages.
    pub suite: String,
    /// The suite's Release says `NotAutomatic: yes` (backports,
    /// experimental): apt pins it low, so its versions are a last resort.
    pub not_automatic: bool,
}

/// Reads every suite's Packages index (all components) for `arch`.
pub fn load_indexes(
    sources: &[Source],
    arch: &str,
    keyrings: &[Vec<u8>],
    allow_unsigned: bool,
    cache_dir: &Path,
) -> Result<Vec<IndexPackage>, AptError> {
    let client = http_client()?;
    let mut packages = Vec::new();
    for source in sources {
        let (release_url, release) = fetch_release(&client, source, keyrings, allow_unsigned)?;
        for component in &source.components {
            let text = fetch_packages(&client, source, component, arch, &release_url, &release, cache_dir)?;
            let what = format!("{}/dists/{}/{component}/binary-{arch}/Packages", source.uri, source.suite);
            let not_automatic = parse_paragraphs(&release)
                .ok()
                .and_then(|paragraphs| paragraphs.first().map(|p| p.get("NotAutomatic") == Some("yes")))
                .unwrap_or(false);
            let mut parsed = parse_packages(&text, source, &what)?;
            parsed.iter_mut().for_each(|package| package.not_automatic = not_automatic);
            packages.extend(parsed);
        }
    }
    Ok(packages)
}

/// `InRelease` (clearsigned), falling back to `Release`; returns the URL read.
/// `InRelease` (clearsigned), falling back to `Release` + `Release.gpg`;
/// returns the URL read and the signed text, checked against `keyrings`.
fn fetch_release(
    client: &reqwest::blocking::Client,
    source: &Source,
    keyrings: &[Vec<u8>],
    allow_unsigned: bool,
) -> Result<(String, String), AptError> {
    let base = format!("{}/dists/{}", source.uri, source.suite);
    let in_release = format!("{base}/InRelease");
    let (url, text, detached) = match get_text(client, &in_release) {
        Ok(text) => (in_release, text, None),
        Err(AptError::HttpStatus { status: 404, .. }) => {
            let release = format!("{base}/Release");
            let text = get_text(client, &release)?;
            let signature = match get_text(client, &format!("{release}.gpg")) {
                Ok(signature) => Some(signature),
                Err(AptError::HttpStatus { status: 404, .. }) => None,
                Err(error) => return Err(error),
            };
            (release, text, Some(signature))
        }
        Err(error) => return Err(error),
    };
    let checked = match &detached {
        Some(None) => Checked::Unchecked("the suite has a Release file but no signature (Release.gpg)"),
        Some(Some(signature)) => verify(keyrings, text.as_bytes(), Some(signature.as_bytes()), &url)?,
        None => verify(keyrings, text.as_bytes(), None, &url)?,
    };
    match checked {
        Checked::Verified(content) => Ok((url, String::from_utf8_lossy(&content).into_owned())),
        Checked::Unchecked(_) if allow_unsigned => Ok((url, strip_clearsign(&text))),
        Checked::Unchecked(reason) => Err(AptError::Unverifiable { url, reason: reason.to_string() }),
    }
}

fn get_text(client: &reqwest::blocking::Client, url: &str) -> Result<String, AptError> {
    let response = client.get(url).send().map_err(|source| AptError::Http { url: url.to_string(), source })?;
    if !response.status().is_success() {
        return Err(AptError::HttpStatus { url: url.to_string(), status: response.status().as_u16() });
    }
    response.text().map_err(|source| AptError::Http { url: url.to_string(), source })
}

/// The signed text of a clearsigned message (dash-escaping undone); text
/// that is not clearsigned is returned as is.
pub(crate) fn strip_clearsign(text: &str) -> String {
    let Some(start) = text.find("-----BEGIN PGP SIGNED MESSAGE-----") else {
        return text.to_string();
    };
    let body = &text[start..];
    // Armor headers (`Hash: SHA512`) end at the first blank line.
    let body = body.split_once("\n\n").map(|(_, rest)| rest).unwrap_or("");
    let body = body.split("\n-----BEGIN PGP SIGNATURE-----").next().unwrap_or("");
    body.lines().map(|line| line.strip_prefix("- ").unwrap_or(line)).collect::<Vec<_>>().join("\n") + "\n"
}

/// `(sha256, size)` of `path` in the Release file's SHA256 list.
pub(crate) fn release_entry(release: &str, path: &str) -> Option<(String, u64)> {
    let paragraphs = parse_paragraphs(release).ok()?;
    let list = paragraphs.first()?.get("SHA256")?;
    list.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        let (hash, size, name) = (words.next()?, words.next()?, words.next()?);
        (name == path).then(|| Some((hash.to_ascii_lowercase(), size.parse().ok()?)))?
    })
}

fn fetch_packages(
    client: &reqwest::blocking::Client,
    source: &Source,
    component: &str,
    arch: &str,
    release_url: &str,
    release: &str,
    cache_dir: &Path,
) -> Result<String, AptError> {
    let stem = format!("{component}/binary-{arch}/Packages");
    let (name, (sha256, size)) = ["xz", "gz"]
        .iter()
        .find_map(|ext| {
            let name = format!("{stem}.{ext}");
            release_entry(release, &name).map(|entry| (name, entry))
        })
        .ok_or_else(|| AptError::IndexMissing {
            release_url: release_url.to_string(),
            wanted: format!("{stem}.xz, {stem}.gz"),
            component: component.to_string(),
        })?;
    let cached = cache_dir.join("apt/indexes").join(&sha256);
    if let Ok(text) = std::fs::read_to_string(&cached) {
        return Ok(text);
    }
    let url = format!("{}/dists/{}/{name}", source.uri, source.suite);
    let response = client.get(&url).send().map_err(|e| AptError::Http { url: url.clone(), source: e })?;
    if !response.status().is_success() {
        return Err(AptError::HttpStatus { url, status: response.status().as_u16() });
    }
    // A few MB compressed: held in memory to check it before decompressing,
    // and never more than the signed Release says (plus one byte, to tell).
    let mut bytes = Vec::new();
    response
        .take(size.saturating_add(1))
        .read_to_end(&mut bytes)
        .map_err(|e| AptError::BadIndex { what: url.clone(), message: format!("cannot read: {e}") })?;
    let actual = hex::encode(Sha256::digest(&bytes));
    if actual != sha256 || bytes.len() as u64 != size {
        return Err(AptError::Checksum {
            what: url,
            actual,
            size: bytes.len() as u64,
            expected: sha256,
            expected_size: size,
            expected_from: release_url.to_string(),
        });
    }
    let mut text = String::new();
    let decoded = if name.ends_with(".xz") {
        liblzma::read::XzDecoder::new(&bytes[..]).read_to_string(&mut text)
    } else {
        flate2::read::GzDecoder::new(&bytes[..]).read_to_string(&mut text)
    };
    decoded.map_err(|e| AptError::BadIndex { what: url.clone(), message: format!("cannot decompress: {e}") })?;
    write_atomic(&cached, text.as_bytes())?;
    Ok(text)
}

/// Package records of one Packages index.
pub fn parse_packages(text: &str, source: &Source, what: &str) -> Result<Vec<IndexPackage>, AptError> {
    let paragraphs =
        parse_paragraphs(text).map_err(|e| AptError::BadIndex { what: what.to_string(), message: e.to_string() })?;
    let mut out = Vec::with_capacity(paragraphs.len());
    for paragraph in paragraphs {
        let field = |name: &str| paragraph.get(name).unwrap_or("").to_string();
        let package = IndexPackage {
            name: field("Package"),
            version: field("Version"),
            arch: field("Architecture"),
            essential: paragraph.get("Essential") == Some("yes"),
            priority: field("Priority"),
            depends: field("Depends"),
            pre_depends: field("Pre-Depends"),
            provides: field("Provides"),
            conflicts: field("Conflicts"),
            breaks: field("Breaks"),
            filename: field("Filename"),
            size: paragraph.get("Size").and_then(|s| s.parse().ok()).unwrap_or(0),
            sha256: field("SHA256").to_ascii_lowercase(),
            uri: source.uri.clone(),
            suite: source.suite.clone(),
            not_automatic: false,
        };
        if package.name.is_empty() || package.version.is_empty() || package.filename.is_empty() {
            return Err(AptError::BadIndex {
                what: what.to_string(),
                message: format!("a package record lacks Package, Version or Filename (after `{}`)", package.name),
            });
        }
        if package.sha256.len() != 64 {
            return Err(AptError::BadIndex {
                what: what.to_string(),
                message: format!("package `{}` has no SHA256; cannot verify its .deb", package.name),
            });
        }
        out.push(package);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_entries_come_from_the_signed_text() {
        let signed = "-----BEGIN PGP SIGNED MESSAGE-----\nHash: SHA512\n\nOrigin: Debian\nSHA256:\n \
            aa11 100 main/binary-amd64/Packages\n BB22 42 main/binary-amd64/Packages.xz\n\
-----BEGIN PGP SIGNATURE-----\n\nxyz\n-----END PGP SIGNATURE-----\n";
        let release = strip_clearsign(signed);
        assert!(release.starts_with("Origin: Debian\n"), "{release}");
        assert!(!release.contains("PGP"));
        assert_eq!(release_entry(&release, "main/binary-amd64/Packages.xz"), Some(("bb22".into(), 42)));
        assert_eq!(release_entry(&release, "contrib/binary-amd64/Packages.xz"), None);
    }
}
