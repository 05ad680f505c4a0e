//! Debian packages without a container: resolve the dependency closure of the
//! requested packages against the base image's distribution (its os-release,
//! dpkg status and apt sources), fetch the pinned .debs with their sha256
//! checked, and turn them into the entries of one layer (files plus the dpkg
//! database update, so `dpkg -l` in the image lists them). Maintainer scripts
//! are not run. See docs/apt.md.

pub(crate) mod alternatives;
pub mod control;
pub(crate) mod deb;
mod fetch;
pub(crate) mod index;
pub(crate) mod resolve;
mod signature;
pub mod sources;

pub use deb::{dir_link_target, install_tree, symlinked_dirs, LINKABLE_DIRS};
pub use fetch::fetch;
pub use resolve::resolve;
pub use signature::{dearmor, ALLOW_UNSIGNED_ENV};
pub use sources::APT_MIRROR_ENV;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What the base image already has, read by the caller from the base's layers.
#[derive(Debug, Clone, Default)]
pub struct BaseSystem {
    /// Content of `/etc/os-release` (or `/usr/lib/os-release`).
    pub os_release: String,
    /// Content of `/var/lib/dpkg/status` (empty when the base has none).
    pub dpkg_status: String,
    /// `/etc/apt/sources.list` and `/etc/apt/sources.list.d/*.{list,sources}`
    /// concatenated (one-line and deb822 forms may be mixed); `None` when the
    /// base has no apt sources, then the distribution's default archive is used.
    pub apt_sources: Option<String>,
    /// dpkg architecture, e.g. `amd64`, `arm64`.
    pub arch: String,
    /// Directories that are symlinks in the base, as (image path, image path
    /// of the target directory): `bin` → `usr/bin` (merged /usr),
    /// `var/run` → `run`. Files packages ship under them are placed at the
    /// target so the layer never replaces the symlink with a directory. Fill
    /// it with [`symlinked_dirs`] from a rootfs, or from a base's layers with
    /// [`LINKABLE_DIRS`] and [`dir_link_target`]; when it is empty and the
    /// dpkg status lists `usr-is-merged`, Debian's merged-/usr links are
    /// assumed.
    pub symlinked_dirs: Vec<(String, String)>,
    /// The base's trusted archive keys (`/etc/apt/trusted.gpg.d/*`, the
    /// `Signed-By` files of its sources, `/usr/share/keyrings/*-archive-keyring.gpg`),
    /// binary or armored; each suite's Release signature is checked against them.
    pub keyrings: Vec<Vec<u8>>,
}

impl BaseSystem {
    /// Reads a base given as a root filesystem directory (`rootfs:` bases):
    /// os-release, dpkg status, apt sources (`sources.list` then
    /// `sources.list.d/*.list|*.sources` by name) and symlinked directories.
    /// Missing files read as empty.
    pub fn from_rootfs(rootfs: &Path, arch: &str) -> BaseSystem {
        let read = |path: &str| read_in_root(rootfs, path);
        let mut os_release = read("etc/os-release");
        if os_release.trim().is_empty() {
            os_release = read("usr/lib/os-release");
        }
        let mut sources = read("etc/apt/sources.list");
        let mut extra: Vec<PathBuf> = std::fs::read_dir(rootfs.join("etc/apt/sources.list.d"))
            .map(|dir| dir.filter_map(|entry| entry.ok().map(|entry| entry.path())).collect())
            .unwrap_or_default();
        extra.sort();
        for path in extra.iter().filter(|p| p.extension().is_some_and(|e| e == "list" || e == "sources")) {
            // A blank line between files so deb822 paragraphs of two files never merge.
            sources.push_str("\n\n");
            sources.push_str(&std::fs::read_to_string(path).unwrap_or_default());
        }
        let mut keyring_paths: Vec<String> = ["etc/apt/trusted.gpg"].map(String::from).to_vec();
        let mut trusted: Vec<PathBuf> = std::fs::read_dir(rootfs.join("etc/apt/trusted.gpg.d"))
            .map(|dir| dir.filter_map(|entry| entry.ok().map(|entry| entry.path())).collect())
            .unwrap_or_default();
        trusted.sort();
        keyring_paths.extend(
            trusted
                .iter()
                .filter(|p| p.extension().is_some_and(|e| e == "gpg" || e == "asc"))
                .filter_map(|p| p.strip_prefix(rootfs).ok().map(|p| p.to_string_lossy().to_string())),
        );
        // Signed-By files of the sources (`signed-by=/path` or `Signed-By: /path`).
        for word in sources.split(|c: char| c.is_whitespace() || c == '[' || c == ']') {
            let path = word.strip_prefix("signed-by=").unwrap_or(word);
            if path.starts_with('/') && (path.ends_with(".gpg") || path.ends_with(".asc")) {
                keyring_paths.push(path.trim_start_matches('/').to_string());
            }
        }
        keyring_paths.extend(
            ["usr/share/keyrings/debian-archive-keyring.gpg", "usr/share/keyrings/ubuntu-archive-keyring.gpg"]
                .map(String::from),
        );
        keyring_paths.sort();
        keyring_paths.dedup();
        let keyrings = keyring_paths
            .iter()
            .filter_map(|path| read_bytes_in_root(rootfs, path))
            .filter_map(|bytes| signature::dearmor(&bytes))
            .collect();
        BaseSystem {
            os_release,
            dpkg_status: read("var/lib/dpkg/status"),
            apt_sources: (!sources.trim().is_empty()).then_some(sources),
            arch: arch.to_string(),
            symlinked_dirs: symlinked_dirs(rootfs),
            keyrings,
        }
    }
}

/// Reads `path` of a rootfs, resolving a symlink at the last component
/// inside the rootfs (an absolute `etc/os-release -> /usr/lib/os-release`
/// must not read the build machine's file). Empty when missing.
fn read_in_root(rootfs: &Path, path: &str) -> String {
    read_bytes_in_root(rootfs, path).map(|bytes| String::from_utf8_lossy(&bytes).into_owned()).unwrap_or_default()
}

fn read_bytes_in_root(rootfs: &Path, path: &str) -> Option<Vec<u8>> {
    let mut current = path.to_string();
    for _ in 0..8 {
        let full = rootfs.join(&current);
        match std::fs::read_link(&full) {
            Ok(target) => {
                let target = target.to_string_lossy();
                current = dir_link_target(&current, &target)?;
            }
            Err(_) => return std::fs::read(full).ok(),
        }
    }
    None
}

/// One resolved .deb, pinned; it goes into imgbake.lock as-is (field order is
/// the lock's order).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct LockedDeb {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub url: String,
    pub sha256: String,
    pub size: u64,
}

/// How to resolve and where to cache.
#[derive(Debug, Clone)]
pub struct AptOptions {
    /// Indexes are cached under `{cache_dir}/apt/indexes`, keyed by sha256.
    pub cache_dir: PathBuf,
    /// Replaces the main archive's URI (not the security archive's);
    /// defaults to the `IMGBAKE_APT_MIRROR` environment variable.
    pub mirror: Option<String>,
    /// Accept suites whose Release signature cannot be checked (no `gpgv`,
    /// or no keyring in the base); defaults to `IMGBAKE_APT_ALLOW_UNSIGNED=1`.
    /// A signature that is checked and bad is an error regardless.
    pub allow_unsigned: bool,
}

impl AptOptions {
    /// Options with the mirror taken from `IMGBAKE_APT_MIRROR` when set.
    pub fn new(cache_dir: &Path) -> AptOptions {
        AptOptions {
            cache_dir: cache_dir.to_path_buf(),
            mirror: std::env::var(APT_MIRROR_ENV).ok().filter(|value| !value.trim().is_empty()),
            allow_unsigned: std::env::var(ALLOW_UNSIGNED_ENV).is_ok_and(|value| value == "1"),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AptError {
    #[error("{message}")]
    UnsupportedBase { message: String },
    #[error("cannot download {url}")]
    Http {
        url: String,
        #[source]
        source: reqwest::Error,
    },
    #[error("cannot download {url}: HTTP {status}")]
    HttpStatus { url: String, status: u16 },
    #[error("cannot access {}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{release_url} lists none of {wanted}; is `{component}` a component of this suite?")]
    IndexMissing { release_url: String, wanted: String, component: String },
    #[error("{what} has sha256 {actual} and {size} bytes, but {expected_from} says {expected} and {expected_size} bytes; the mirror served something else (a partial mirror sync?)")]
    Checksum { what: String, actual: String, size: u64, expected: String, expected_size: u64, expected_from: String },
    #[error("{what}: {message}")]
    BadIndex { what: String, message: String },
    #[error("apt package `{name}` is not in {searched}{}", suggest(suggestions))]
    UnknownPackage { name: String, searched: String, suggestions: Vec<String> },
    #[error("apt package `{name}` has no version {wanted} in {searched} (available: {})", available.join(", "))]
    NoSuchVersion { name: String, wanted: String, searched: String, available: Vec<String> },
    #[error(
        "cannot install `{package}`: its dependency `{dependency}` cannot be satisfied ({why}); needed by {chain}"
    )]
    Unsatisfiable { package: String, dependency: String, why: String, chain: String },
    #[error("`{package}` {relation} `{other}` ({why}); imgbake does not remove or upgrade base packages to resolve this (hint: use a base image without `{other}` or build with a container builder)")]
    Conflict { package: String, relation: String, other: String, why: String },
    #[error("`{requirement}`: {message}")]
    BadRequirement { requirement: String, message: String },
    #[error("{}:{line}: {message}", path.display())]
    BadPkglist { path: PathBuf, line: usize, message: String },
    #[error("{}: {message}", path.display())]
    BadDeb { path: PathBuf, message: String },
    #[error("the OpenPGP signature of {url} does not verify against the base image's archive keys: {detail}")]
    Signature { url: String, detail: String },
    #[error("cannot check the signature of {url}: {reason} (hint: set IMGBAKE_APT_ALLOW_UNSIGNED=1 to accept the archive on the mirror's word; see docs/apt.md)")]
    Unverifiable { url: String, reason: String },
    #[error("the dpkg status of the base image is not valid control syntax")]
    BadStatus(#[source] control::ControlError),
    #[error("cannot list the files of the apt layer")]
    Entries(#[source] crate::image::entries::EntryError),
}

fn suggest(suggestions: &[String]) -> String {
    match suggestions {
        [] => {
            " (hint: check the spelling; `apt-cache search WORD` on a machine of that release finds names)".to_string()
        }
        names => {
            format!(" (hint: did you mean {}?)", names.iter().map(|n| format!("`{n}`")).collect::<Vec<_>>().join(", "))
        }
    }
}

/// The apt packages a spec asks for: the inline list, or the packages of
/// its `pkglist.txt` (`paths.apt`); the config loader allows only one of them.
pub fn requested(dependencies: &crate::spec::Dependencies) -> Result<Vec<crate::spec::Requirement>, AptError> {
    let mut out = dependencies.apt.clone();
    if let Some(path) = &dependencies.apt_file {
        out.extend(read_pkglist(path)?);
    }
    Ok(out)
}

/// Reads a `pkglist.txt`: one package per line (`name` or `name=version`),
/// `#` comments, blank lines ignored; several names on one line separated by
/// spaces are accepted too, as `apt-get install` would take them.
pub fn read_pkglist(path: &Path) -> Result<Vec<crate::spec::Requirement>, AptError> {
    let text = std::fs::read_to_string(path).map_err(|source| AptError::Io { path: path.to_path_buf(), source })?;
    parse_pkglist(&text).map_err(|(line, message)| AptError::BadPkglist { path: path.to_path_buf(), line, message })
}

fn parse_pkglist(text: &str) -> Result<Vec<crate::spec::Requirement>, (usize, String)> {
    let mut out = Vec::new();
    for (index, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        for word in line.split_whitespace() {
            let (name, constraint) = match word.split_once('=') {
                Some((name, version)) => (name, format!("={version}")),
                None => (word, String::new()),
            };
            if !valid_package_name(name) {
                return Err((
                    index + 1,
                    format!(
                        "`{word}` is not a Debian package name (expected lowercase letters, digits, `+ - .`, optionally `=VERSION`)"
                    ),
                ));
            }
            out.push(crate::spec::Requirement { name: name.to_string(), constraint });
        }
    }
    Ok(out)
}

/// Debian policy 5.6.1: lowercase letters, digits, `+ - .`, at least two
/// characters, starting with an alphanumeric (an `:arch` suffix is allowed).
fn valid_package_name(name: &str) -> bool {
    let name = name.split_once(':').map(|(n, _)| n).unwrap_or(name);
    name.len() >= 2
        && name.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '+' | '-' | '.'))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_rootfs_is_read_without_leaving_it() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir_all(root.join("usr/lib")).unwrap();
        std::fs::create_dir_all(root.join("etc/apt/sources.list.d")).unwrap();
        std::fs::write(root.join("usr/lib/os-release"), "ID=debian\nVERSION_CODENAME=trixie\n").unwrap();
        // Absolute link: must resolve inside the rootfs, not on the build machine.
        std::os::unix::fs::symlink("/usr/lib/os-release", root.join("etc/os-release")).unwrap();
        std::fs::write(root.join("etc/apt/sources.list.d/b.sources"), "Types: deb\nURIs: http://b\nSuites: trixie\n")
            .unwrap();
        std::fs::write(root.join("etc/apt/sources.list.d/a.list"), "deb http://a trixie main\n").unwrap();
        std::fs::write(root.join("etc/apt/sources.list.d/c.disabled"), "deb http://c trixie main\n").unwrap();
        let base = BaseSystem::from_rootfs(root, "arm64");
        assert!(base.os_release.contains("trixie"), "{base:?}");
        let sources = base.apt_sources.unwrap();
        assert!(sources.find("http://a").unwrap() < sources.find("http://b").unwrap());
        assert!(!sources.contains("http://c"));
        assert_eq!(base.dpkg_status, "");
        assert_eq!(base.arch, "arm64");
    }

    #[test]
    fn requested_packages_come_from_the_inline_list_and_the_pkglist_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("pkglist.txt");
        std::fs::write(&file, "# system\nffmpeg\n\nlibgl1  # GL\n").unwrap();
        let deps = crate::spec::Dependencies { apt_file: Some(file.clone()), ..Default::default() };
        let names: Vec<String> = requested(&deps).unwrap().into_iter().map(|r| r.name).collect();
        assert_eq!(names, ["ffmpeg", "libgl1"]);
        std::fs::write(&file, "ffmpeg\nNot_A_Name\n").unwrap();
        let error = requested(&deps).unwrap_err().to_string();
        assert!(error.contains("pkglist.txt:2") && error.contains("Not_A_Name"), "{error}");
    }

    #[test]
    fn pkglist_takes_comments_pins_and_rejects_junk_with_its_line() {
        let list = parse_pkglist("# tools\nffmpeg\n\ncurl=7.88.1-10+deb12u5  # pinned\nlibgl1 git\n").unwrap();
        let text: Vec<String> = list.iter().map(|r| r.to_requirement_string()).collect();
        assert_eq!(text, ["ffmpeg", "curl=7.88.1-10+deb12u5", "libgl1", "git"]);
        let (line, message) = parse_pkglist("ok\nBad_Name\n").unwrap_err();
        assert_eq!(line, 2);
        assert!(message.contains("Bad_Name"), "{message}");
    }
}
