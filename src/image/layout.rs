//! The OCI image layout directory (`oci-layout`, `index.json`,
//! `blobs/sha256/…`): writing an image under a tag, and reading one back.
//!
//! `index.json` is the only mutable file; it is replaced atomically, and only
//! after every blob the manifest names is committed, so a reader never sees
//! a tag pointing at a missing blob.

use crate::image::assemble::{sha256, AssembledImage, ARCHITECTURE, OS};
use crate::image::blobs::{write_file_atomic, BlobError, BlobStore};
use crate::image::digest::Digest;
use crate::image::oci::{self, Descriptor, ImageIndex, ImageManifest};
use serde::de::DeserializeOwned;
use std::path::{Path, PathBuf};

pub const OCI_LAYOUT_FILE: &str = "oci-layout";
pub const INDEX_FILE: &str = "index.json";
pub const REF_NAME_ANNOTATION: &str = "org.opencontainers.image.ref.name";
pub const DEFAULT_TAG: &str = "latest";

#[derive(Debug, thiserror::Error)]
pub enum LayoutError {
    #[error("`{dir}` is not an OCI image layout (no `oci-layout` file or `index.json`)")]
    NotALayout { dir: PathBuf },
    #[error("`{dir}` has no image tagged `{tag}` (tags: {available})")]
    TagNotFound { dir: PathBuf, tag: String, available: String },
    #[error("`{path}` is not a valid {document}")]
    BadDocument {
        path: PathBuf,
        document: &'static str,
        #[source]
        source: Option<serde_json::Error>,
    },
    #[error("image index in `{dir}` has no linux/amd64 manifest")]
    NoAmd64 { dir: PathBuf },
    #[error("blob {digest} in `{dir}` does not match its digest (corrupt layout)")]
    Corrupt { dir: PathBuf, digest: Digest },
    #[error("the manifest names blob {digest}, which is not in `{dir}`; write every blob before tagging")]
    MissingBlob { dir: PathBuf, digest: Digest },
    #[error("failed to create `{dir}`")]
    Create {
        dir: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Blob(#[from] BlobError),
}

/// `oci:DIR[:TAG]` as given on the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OciRef {
    pub dir: PathBuf,
    pub tag: String,
}

/// Parses `oci:DIR[:TAG]` (tag defaults to `latest`). A last `:part` that
/// is not a valid tag is part of the directory. `None` without `oci:`.
pub fn parse_oci_ref(text: &str) -> Option<OciRef> {
    let rest = text.strip_prefix("oci:")?;
    if rest.is_empty() {
        return None;
    }
    match rest.rsplit_once(':') {
        Some((dir, tag)) if !dir.is_empty() && is_valid_tag(tag) => {
            Some(OciRef { dir: PathBuf::from(dir), tag: tag.to_string() })
        }
        _ => Some(OciRef { dir: PathBuf::from(rest), tag: DEFAULT_TAG.to_string() }),
    }
}

/// The distribution spec's tag grammar: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}`.
pub fn is_valid_tag(tag: &str) -> bool {
    let bytes = tag.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 128
        && (bytes[0].is_ascii_alphanumeric() || bytes[0] == b'_')
        && bytes.iter().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// An OCI image layout directory; its blob store is where layers go.
#[derive(Debug, Clone)]
pub struct OciLayout {
    dir: PathBuf,
    blobs: BlobStore,
}

impl OciLayout {
    /// Opens `dir` as a layout, creating it (and `oci-layout`) if needed.
    pub fn create(dir: &Path) -> Result<OciLayout, LayoutError> {
        std::fs::create_dir_all(dir).map_err(|source| LayoutError::Create { dir: dir.to_path_buf(), source })?;
        let marker = dir.join(OCI_LAYOUT_FILE);
        if !marker.is_file() {
            write_file_atomic(&marker, br#"{"imageLayoutVersion":"1.0.0"}"#)?;
        }
        Ok(OciLayout { dir: dir.to_path_buf(), blobs: BlobStore::open(dir)? })
    }

    /// Opens an existing layout; a directory that is not one is an error naming it.
    pub fn open(dir: &Path) -> Result<OciLayout, LayoutError> {
        if !dir.join(OCI_LAYOUT_FILE).is_file() || !dir.join(INDEX_FILE).is_file() {
            return Err(LayoutError::NotALayout { dir: dir.to_path_buf() });
        }
        Ok(OciLayout { dir: dir.to_path_buf(), blobs: BlobStore::open(dir)? })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Stores config and manifest, checks that every layer blob is present,
    /// then points `tag` at the manifest. Returns the manifest descriptor.
    pub fn write_image(&self, image: &AssembledImage, tag: &str) -> Result<Descriptor, LayoutError> {
        self.write_partial_image(image, tag, &|_| false)
    }

    /// [`OciLayout::write_image`] where the layers `elsewhere` says are in
    /// a registry may be missing: the image-layout spec allows missing
    /// blobs that "SHOULD be fulfilled by an external blob store" (a build
    /// whose layers came from the registry cache).
    pub fn write_partial_image(
        &self,
        image: &AssembledImage,
        tag: &str,
        elsewhere: &dyn Fn(&Digest) -> bool,
    ) -> Result<Descriptor, LayoutError> {
        for layer in &image.manifest_document().layers {
            if !self.blobs.has(&layer.digest) && !elsewhere(&layer.digest) {
                return Err(LayoutError::MissingBlob { dir: self.dir.clone(), digest: layer.digest.clone() });
            }
        }
        self.blobs.put_bytes(&image.config)?;
        self.blobs.put_bytes(&image.manifest)?;
        let descriptor = image.manifest_descriptor();
        self.set_tag(tag, &descriptor)?;
        Ok(descriptor)
    }

    /// Points `tag` at `descriptor` in `index.json`: an entry with the same
    /// tag is replaced, others are kept in their order.
    pub fn set_tag(&self, tag: &str, descriptor: &Descriptor) -> Result<(), LayoutError> {
        let index_path = self.dir.join(INDEX_FILE);
        let mut manifests = if index_path.is_file() {
            read_json::<ImageIndex>(&index_path, "image index")?.manifests
        } else {
            Vec::new()
        };
        manifests.retain(|m| ref_name(m) != Some(tag));
        let mut entry = descriptor.clone();
        entry.annotations.get_or_insert_with(Default::default).insert(REF_NAME_ANNOTATION.to_string(), tag.to_string());
        manifests.push(entry);
        let index = ImageIndex {
            schema_version: 2,
            media_type: Some(oci::OCI_INDEX.to_string()),
            manifests,
            annotations: None,
        };
        let bytes = oci::canonical_json(&index);
        // Unchanged (a no-op rebuild): leave the file, skip the fsyncs.
        if std::fs::read(&index_path).ok().as_deref() != Some(&bytes[..]) {
            write_file_atomic(&index_path, &bytes)?;
        }
        Ok(())
    }

    /// Reads a small blob and checks it against its digest.
    fn read_verified(&self, digest: &Digest) -> Result<Vec<u8>, LayoutError> {
        let bytes = self.blobs.read_small(digest)?;
        if &sha256(&bytes) != digest {
            return Err(LayoutError::Corrupt { dir: self.dir.clone(), digest: digest.clone() });
        }
        Ok(bytes)
    }
}

/// An image read from a layout: the exact manifest and config bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageRead {
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
    pub config: Vec<u8>,
}

/// Reads the image tagged `tag` in the layout `dir`, resolving an image
/// index (or Docker manifest list) to its linux/amd64 manifest.
pub fn read_image(dir: &Path, tag: &str) -> Result<ImageRead, LayoutError> {
    let layout = OciLayout::open(dir)?;
    let manifests = read_json::<ImageIndex>(&dir.join(INDEX_FILE), "image index")?.manifests;
    let mut descriptor =
        manifests.iter().find(|m| ref_name(m) == Some(tag)).cloned().ok_or_else(|| LayoutError::TagNotFound {
            dir: dir.to_path_buf(),
            tag: tag.to_string(),
            available: {
                let tags: Vec<&str> = manifests.iter().filter_map(ref_name).collect();
                if tags.is_empty() {
                    "none".to_string()
                } else {
                    tags.join(", ")
                }
            },
        })?;
    // Indexes may nest; a few levels are plenty.
    for _ in 0..4 {
        let digest = descriptor.digest.clone();
        let bytes = layout.read_verified(&digest)?;
        let bad = |source| LayoutError::BadDocument {
            path: layout.blobs.path(&digest),
            document: "manifest or index",
            source: Some(source),
        };
        let media_type = oci::declared_media_type(&bytes).unwrap_or_else(|| descriptor.media_type.clone());
        if oci::is_index(&media_type) {
            let index: ImageIndex = serde_json::from_slice(&bytes).map_err(bad)?;
            descriptor = index
                .manifests
                .into_iter()
                .find(|m| m.platform.as_ref().is_some_and(|p| p.os == OS && p.architecture == ARCHITECTURE))
                .ok_or_else(|| LayoutError::NoAmd64 { dir: dir.to_path_buf() })?;
            continue;
        }
        let manifest: ImageManifest = serde_json::from_slice(&bytes).map_err(bad)?;
        let config = layout.read_verified(&manifest.config.digest)?;
        return Ok(ImageRead { manifest: bytes, manifest_digest: digest, config });
    }
    Err(LayoutError::BadDocument {
        path: dir.join(INDEX_FILE),
        document: "image index (nested too deep)",
        source: None,
    })
}

fn ref_name(descriptor: &Descriptor) -> Option<&str> {
    descriptor.annotations.as_ref()?.get(REF_NAME_ANNOTATION).map(String::as_str)
}

fn read_json<T: DeserializeOwned>(path: &Path, document: &'static str) -> Result<T, LayoutError> {
    let bytes =
        std::fs::read(path).map_err(|source| BlobError::Io { action: "read", path: path.to_path_buf(), source })?;
    serde_json::from_slice(&bytes).map_err(|source| LayoutError::BadDocument {
        path: path.to_path_buf(),
        document,
        source: Some(source),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::assemble::{assemble, ImageSettings, NewLayer};
    use crate::image::entries::LayerEntry;
    use crate::image::layer::{write_layer, Compression, LayerOptions};

    fn image_in(layout: &OciLayout, dir_name: &str) -> AssembledImage {
        let entries = vec![LayerEntry::dir(dir_name, 0o755)];
        let options = LayerOptions { compression: Compression::Gzip { level: 6 }, mtime: 0 };
        let layer = write_layer(layout.blobs(), &entries, &options).unwrap();
        let new = NewLayer { layer, history: "imgbake: test".into() };
        assemble(None, &[new], &ImageSettings::default(), "1970-01-01T00:00:00Z").unwrap()
    }

    #[test]
    fn tags_are_replaced_and_others_kept_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(dir.path()).unwrap();
        let one = image_in(&layout, "one");
        let two = image_in(&layout, "two");
        layout.write_image(&one, "a").unwrap();
        layout.write_image(&one, "b").unwrap();
        layout.write_image(&two, "a").unwrap();
        let read_a = read_image(dir.path(), "a").unwrap();
        assert_eq!(read_a.manifest, two.manifest);
        assert_eq!(read_a.config, two.config);
        assert_eq!(read_image(dir.path(), "b").unwrap().manifest_digest, one.manifest_digest);
        let index: ImageIndex = serde_json::from_slice(&std::fs::read(dir.path().join(INDEX_FILE)).unwrap()).unwrap();
        assert_eq!(index.manifests.len(), 2);
        assert_eq!(
            std::fs::read_to_string(dir.path().join(OCI_LAYOUT_FILE)).unwrap(),
            r#"{"imageLayoutVersion":"1.0.0"}"#
        );
        let missing = read_image(dir.path(), "c").unwrap_err().to_string();
        assert!(missing.contains("tags: b, a"), "{missing}");
    }

    #[test]
    fn index_resolves_to_amd64() {
        let dir = tempfile::tempdir().unwrap();
        let layout = OciLayout::create(dir.path()).unwrap();
        let image = image_in(&layout, "x");
        layout.write_image(&image, "plain").unwrap();
        let mut arm = image.manifest_descriptor();
        arm.platform.as_mut().unwrap().architecture = "arm64".into();
        let index = ImageIndex {
            schema_version: 2,
            media_type: Some(oci::OCI_INDEX.into()),
            manifests: vec![arm, image.manifest_descriptor()],
            annotations: None,
        };
        let bytes = oci::canonical_json(&index);
        let digest = layout.blobs().put_bytes(&bytes).unwrap();
        let descriptor = Descriptor::new(oci::OCI_INDEX, digest, bytes.len() as u64);
        layout.set_tag("multi", &descriptor).unwrap();
        assert_eq!(read_image(dir.path(), "multi").unwrap().manifest, image.manifest);
    }

    #[test]
    fn not_a_layout_and_missing_blobs_are_clear_errors() {
        let dir = tempfile::tempdir().unwrap();
        let error = read_image(dir.path(), "latest").unwrap_err();
        assert!(matches!(error, LayoutError::NotALayout { .. }));
        assert!(error.to_string().contains(&dir.path().display().to_string()));

        let other = tempfile::tempdir().unwrap();
        let elsewhere = OciLayout::create(other.path()).unwrap();
        let image = image_in(&elsewhere, "x");
        let layout = OciLayout::create(dir.path()).unwrap();
        assert!(matches!(layout.write_image(&image, "t"), Err(LayoutError::MissingBlob { .. })));
        assert!(!dir.path().join(INDEX_FILE).exists(), "no tag without its blobs");
    }

    #[test]
    fn oci_refs_parse() {
        let r = |s| parse_oci_ref(s).map(|r| (r.dir.display().to_string(), r.tag));
        assert_eq!(r("oci:out"), Some(("out".into(), "latest".into())));
        assert_eq!(r("oci:out/img:v1.2"), Some(("out/img".into(), "v1.2".into())));
        assert_eq!(r("oci:/a:b/c"), Some(("/a:b/c".into(), "latest".into())));
        assert_eq!(r("docker://x"), None);
        assert_eq!(r("oci:"), None);
    }
}
