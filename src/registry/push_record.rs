//! Where this machine pushed blobs before: for each registry, the last
//! repository each blob was pushed to, kept in the cache directory
//! (`<cache>/pushed/<registry>/<hex>`, the repository's name as text). A
//! push of the same blob to another repository of that registry mounts it
//! from there instead of uploading it again, as docker's distribution
//! metadata does, so two apps that share layers (the same torch lock) upload
//! them once even without a shared `--cache-to` repository. An optimisation
//! only: a record that cannot be read or written is ignored, and a mount the
//! registry refuses falls back to the upload.

use crate::image::digest::Digest;
use std::path::{Path, PathBuf};

pub struct PushRecord {
    dir: PathBuf,
}

impl PushRecord {
    /// The record kept under `cache_dir`.
    pub fn new(cache_dir: &Path) -> PushRecord {
        PushRecord { dir: cache_dir.join("pushed") }
    }

    fn path(&self, registry: &str, digest: &Digest) -> PathBuf {
        self.dir.join(file_name_of(registry)).join(digest.hex())
    }

    /// The repository of `registry` that `digest` was last pushed to.
    pub fn repository(&self, registry: &str, digest: &Digest) -> Option<String> {
        let text = std::fs::read_to_string(self.path(registry, digest)).ok()?;
        let name = text.trim();
        is_repository_name(name).then(|| name.to_string())
    }

    /// Records that `digests` are in `repository` of `registry`.
    pub fn remember<'a>(&self, registry: &str, repository: &str, digests: impl IntoIterator<Item = &'a Digest>) {
        for digest in digests {
            // Best effort: without the record a later push uploads the blob.
            let _ = crate::plumbing::fs::write_atomic(&self.path(registry, digest), repository.as_bytes());
        }
    }
}

/// `host[:port]` as one file name: anything but `[A-Za-z0-9.-]` becomes `_`.
fn file_name_of(registry: &str) -> String {
    registry.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '-' { c } else { '_' }).collect()
}

/// The distribution spec's repository name characters (a record edited by
/// hand or cut short is not sent to the registry).
fn is_repository_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-/".contains(&b))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> Digest {
        format!("sha256:{}", c.to_string().repeat(64)).parse().unwrap()
    }

    #[test]
    fn remembers_the_last_repository_per_registry() {
        let dir = tempfile::tempdir().unwrap();
        let record = PushRecord::new(dir.path());
        assert_eq!(record.repository("127.0.0.1:5000", &digest('a')), None);
        record.remember("127.0.0.1:5000", "team/app", [&digest('a'), &digest('b')]);
        record.remember("127.0.0.1:5000", "team/other", [&digest('b')]);
        record.remember("registry.example.com", "elsewhere/x", [&digest('a')]);
        assert_eq!(record.repository("127.0.0.1:5000", &digest('a')).as_deref(), Some("team/app"));
        assert_eq!(record.repository("127.0.0.1:5000", &digest('b')).as_deref(), Some("team/other"));
        assert_eq!(record.repository("registry.example.com", &digest('a')).as_deref(), Some("elsewhere/x"));
        assert_eq!(record.repository("127.0.0.1:5001", &digest('a')), None, "another port is another registry");
        assert!(dir.path().join("pushed/127.0.0.1_5000").join(digest('a').hex()).is_file());
    }

    #[test]
    fn a_damaged_record_is_ignored() {
        let dir = tempfile::tempdir().unwrap();
        let record = PushRecord::new(dir.path());
        record.remember("r", "team/app", [&digest('a')]);
        for text in ["", "team/app?x=1", "/abs", "Team/App"] {
            std::fs::write(dir.path().join("pushed/r").join(digest('a').hex()), text).unwrap();
            assert_eq!(record.repository("r", &digest('a')), None, "{text:?}");
        }
    }

    #[test]
    fn an_unwritable_cache_is_not_an_error() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("pushed"), "a file where the directory should be").unwrap();
        let record = PushRecord::new(dir.path());
        record.remember("r", "team/app", [&digest('a')]);
        assert_eq!(record.repository("r", &digest('a')), None);
    }
}
