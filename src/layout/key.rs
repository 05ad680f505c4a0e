//! The key of a planned layer: the sha256 of a canonical description of
//! everything that decides the layer's bytes — its inputs by content hash
//! (wheel, .deb and conda package sha256s, weights files' sha256s), the
//! rules that turn them into a tar (the Python target and bytecode
//! compiler, the base's dpkg state, the image paths), the compression, the
//! entries' mtime and imgbake's layer format. Same key, same bytes: the
//! registry cache (`crate::registry::layer_cache`) maps a key to a layer
//! already pushed, so a fresh CI runner neither downloads nor rebuilds it.
//!
//! Only layers whose inputs are fetched get a key: app files, a rootfs,
//! the base's standard library bytecode (compiled from the base's layers,
//! which the build reads for its facts anyway),
//! local weights, the hf-cache links and the volume layer are built from
//! what is on the build machine already (cheap, and their blobs are
//! skipped at push when the registry has them). A layer whose bytes are
//! not pinned by content gets none: a Python group holding a wheel imgbake
//! built from source (builds are not byte-reproducible), remote weights
//! whose source gives neither an etag nor a sha256.

use super::weights::WeightsContent;
use super::{LayerContent, PlannedLayer};
use crate::image::layer::{LayerOptions, LAYER_FORMAT};
use crate::lock::Lock;
use sha2::{Digest as _, Sha256};
use std::fmt::Write as _;

/// The sha256 (hex) of a layer's canonical description.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct LayerKey(pub String);

impl std::fmt::Display for LayerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// What besides the plan decides dependency layers' bytes.
#[derive(Debug, Clone, Default)]
pub struct KeyFacts<'a> {
    pub lock: Option<&'a Lock>,
    /// `CPython 3.11.2` when `.pyc` files are compiled, `None` when not
    /// (turned off, or no interpreter of the image's version here).
    pub bytecode_compiler: Option<String>,
    /// The base's dpkg status and symlinked directories, canonical text
    /// (the apt layer is unpacked against them).
    pub apt_base: Option<String>,
}

/// The key of `layer`, or `None` when its bytes are not fetched or not
/// pinned by content (see the module header).
pub fn layer_key(layer: &PlannedLayer, options: &LayerOptions, facts: &KeyFacts) -> Option<LayerKey> {
    let mut text = String::new();
    let _ = writeln!(text, "format {LAYER_FORMAT}");
    let _ = writeln!(text, "compression {:?}", options.compression);
    let _ = writeln!(text, "mtime {}", options.mtime);
    match &layer.content {
        LayerContent::Python { packages, part } => {
            let python = facts.lock?.python.as_ref()?;
            let target = &python.target;
            let _ = writeln!(
                text,
                "python {} {} {} {}",
                target.python_version, target.platform, target.interpreter, target.site_packages
            );
            let _ = writeln!(text, "installer {}", python.installer);
            let _ = writeln!(text, "bytecode {}", facts.bytecode_compiler.as_deref().unwrap_or("none"));
            if let Some(part) = part {
                let _ = writeln!(text, "part {} of {}", part.index, part.of);
            }
            for name in packages {
                let wheel = python.packages.iter().find(|w| &w.name == name)?;
                if wheel.built_from.is_some() {
                    return None;
                }
                let _ = writeln!(text, "wheel {} {} sha256:{} {}", wheel.name, wheel.version, wheel.sha256, wheel.size);
            }
        }
        LayerContent::Apt => {
            let apt = facts.lock?.apt.as_ref()?;
            let _ = writeln!(text, "apt {}", apt.distribution);
            let _ = writeln!(text, "base {}", sha256_hex(facts.apt_base.as_deref()?));
            for deb in &apt.packages {
                let _ =
                    writeln!(text, "deb {} {} {} sha256:{} {}", deb.name, deb.version, deb.arch, deb.sha256, deb.size);
            }
        }
        LayerContent::Conda => {
            let conda = facts.lock?.conda.as_ref()?;
            let _ = writeln!(text, "conda {}", serde_json::to_string(&conda.target).ok()?);
            for package in &conda.packages {
                let _ = writeln!(
                    text,
                    "package {} {} {} {} sha256:{} {}",
                    package.name, package.version, package.build, package.subdir, package.sha256, package.size
                );
            }
        }
        LayerContent::Weights { files, .. } => {
            for planned in files {
                let WeightsContent::Remote(remote) = &planned.file.content else {
                    return None;
                };
                // The source's etag, which changes whenever the content
                // does (hf: the LFS sha256 or the git blob id; S3 and GCS:
                // the MD5-based ETag; Azure: the blob's version tag), else
                // the sha256. Not the URL: an hf URL names the commit, and a
                // file unchanged across commits keeps its layer. Not the
                // sha256 first: a build fills in missing ones, and the key
                // of the next build must not change with that.
                let identity = match (&remote.etag, &remote.sha256) {
                    (Some(etag), _) => format!("etag {etag}"),
                    (None, Some(sha256)) => sha256.to_string(),
                    (None, None) => return None,
                };
                let _ = writeln!(text, "file {} {} {identity}", planned.image_path, remote.size);
            }
        }
        LayerContent::Rootfs { .. }
        | LayerContent::StdlibBytecode
        | LayerContent::AppFiles { .. }
        | LayerContent::HfSnapshot { .. }
        | LayerContent::Volume => return None,
    }
    Some(LayerKey(sha256_hex(&text)))
}

fn sha256_hex(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::layer::Compression;
    use crate::layout::weights::WeightsFile;
    use crate::layout::PlannedWeightsFile;
    use crate::weights::RemoteFile;

    fn weights_layer(files: &[(&str, Option<&str>, Option<&str>)]) -> PlannedLayer {
        let files = files
            .iter()
            .map(|(path, sha256, etag)| PlannedWeightsFile {
                image_path: format!("app/model_cache/m/{path}"),
                file: WeightsFile {
                    relative: path.to_string(),
                    size: 10,
                    content: WeightsContent::Remote(RemoteFile {
                        path: path.to_string(),
                        size: 10,
                        sha256: sha256.map(|s| s.parse().unwrap()),
                        etag: etag.map(str::to_string),
                        url: format!("https://hub/m/resolve/abc/{path}"),
                    }),
                },
            })
            .collect();
        PlannedLayer {
            name: "weights m".into(),
            history: String::new(),
            compression: Compression::None,
            codec_choice: None,
            content: LayerContent::Weights { origin: "m".into(), uri: "hf://m".into(), files, ratio: 1.0 },
        }
    }

    const SHA_A: &str = "sha256:aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    const SHA_B: &str = "sha256:bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb";

    #[test]
    fn a_weights_key_changes_with_content_compression_and_mtime_only() {
        let facts = KeyFacts::default();
        let options = LayerOptions { compression: Compression::None, mtime: 0 };
        let key = |layer: &PlannedLayer, options: &LayerOptions| layer_key(layer, options, &facts).unwrap();
        let one = weights_layer(&[("a.bin", Some(SHA_A), None)]);
        let mut renamed = one.clone();
        renamed.name = "weights m 1/2".into();
        assert_eq!(key(&one, &options), key(&renamed, &options), "the display name does not change the bytes");
        let other = weights_layer(&[("a.bin", Some(SHA_B), None)]);
        assert_ne!(key(&one, &options), key(&other, &options));
        let gzip = LayerOptions { compression: Compression::Gzip { level: 6 }, mtime: 0 };
        assert_ne!(key(&one, &options), key(&one, &gzip));
        let dated = LayerOptions { compression: Compression::None, mtime: 1_700_000_000 };
        assert_ne!(key(&one, &options), key(&one, &dated));
    }

    #[test]
    fn unpinned_weights_and_local_inputs_get_no_key() {
        let facts = KeyFacts::default();
        let options = LayerOptions { compression: Compression::None, mtime: 0 };
        assert!(layer_key(&weights_layer(&[("a.bin", None, None)]), &options, &facts).is_none());
        let by_etag = weights_layer(&[("a.bin", None, Some("\"e1\""))]);
        assert!(layer_key(&by_etag, &options, &facts).is_some());
        let app = PlannedLayer {
            name: "app files".into(),
            history: String::new(),
            compression: Compression::None,
            codec_choice: None,
            content: LayerContent::AppFiles { files: vec![] },
        };
        assert!(layer_key(&app, &options, &facts).is_none());
    }
}
