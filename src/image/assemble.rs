//! Image assembly: base image (optional) + new layers + settings → the exact
//! bytes of the image config and manifest, and their digests.
//!
//! Like go-containerregistry's `mutate.Append`, the base is never changed:
//! its layer descriptors are copied as they are, its diff_ids and history
//! are kept, and new ones are appended. Documents are the typed ones of
//! [`crate::image::oci`], written by [`oci::canonical_json`] (keys sorted,
//! no timestamp except `created`); the digest is of the very bytes returned.

use crate::image::digest::Digest;
use crate::image::layer::{source_date_epoch, WrittenLayer};
use crate::image::oci::{
    self, Descriptor, History, ImageConfiguration, ImageManifest, Platform, RootFs, RuntimeConfig,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

pub const ARCHITECTURE: &str = "amd64";
pub const OS: &str = "linux";

/// A base image as fetched: the exact manifest and config bytes.
#[derive(Debug, Clone)]
pub struct BaseImage {
    pub manifest: Vec<u8>,
    pub config: Vec<u8>,
}

/// Runtime settings of the image. `None` keeps the base's value (or leaves
/// the field out on `scratch`); `Some` replaces it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageSettings {
    pub env: Option<Vec<String>>,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub working_dir: Option<String>,
    /// `8000/tcp` style; a bare number means tcp.
    pub exposed_ports: Option<Vec<String>>,
    pub labels: Option<BTreeMap<String, String>>,
}

/// A layer to append, with its history line (e.g. `imgbake: app files (412 files)`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewLayer {
    pub layer: WrittenLayer,
    pub history: String,
}

/// The assembled image: exact bytes to store, and their digests.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AssembledImage {
    pub config: Vec<u8>,
    pub config_digest: Digest,
    pub manifest: Vec<u8>,
    pub manifest_digest: Digest,
}

impl AssembledImage {
    /// The descriptor an index (or a registry tag) points at.
    pub fn manifest_descriptor(&self) -> Descriptor {
        let mut descriptor =
            Descriptor::new(oci::OCI_MANIFEST, self.manifest_digest.clone(), self.manifest.len() as u64);
        descriptor.platform = Some(Platform::new(OS, ARCHITECTURE));
        descriptor
    }

    /// The manifest, read back from the bytes [`assemble`] wrote.
    pub fn manifest_document(&self) -> ImageManifest {
        serde_json::from_slice(&self.manifest).expect("assemble writes a valid manifest")
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error("the base image's {document} is not a valid {document}")]
    BaseJson {
        document: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("the base image's config has digest {actual}, but its manifest says {expected}")]
    BaseConfigDigest { expected: Digest, actual: Digest },
    #[error("the base image has {layers} layers but {diff_ids} diff_ids")]
    BaseLayerCount { layers: usize, diff_ids: usize },
    #[error("the base image is {os}/{architecture}; imgbake builds linux/amd64 images")]
    BasePlatform { os: String, architecture: String },
}

/// `created` for config and history: `SOURCE_DATE_EPOCH` as RFC 3339 UTC,
/// else `1970-01-01T00:00:00Z`. Never the wall clock.
pub fn created_timestamp() -> String {
    let seconds = source_date_epoch().unwrap_or(0);
    let time =
        time::OffsetDateTime::from_unix_timestamp(seconds.min(253_402_300_799) as i64).expect("clamped to year 9999");
    time.format(&time::format_description::well_known::Rfc3339).expect("RFC 3339 formatting of a UTC time")
}

/// Builds the config and manifest of `base` (or scratch) + `layers`.
/// `created` is usually [`created_timestamp`].
pub fn assemble(
    base: Option<&BaseImage>,
    layers: &[NewLayer],
    settings: &ImageSettings,
    created: &str,
) -> Result<AssembledImage, AssembleError> {
    let (mut config, base_layers) = match base {
        Some(base) => parse_base(base)?,
        None => (
            ImageConfiguration {
                architecture: String::new(),
                os: String::new(),
                created: None,
                config: None,
                rootfs: RootFs { kind: "layers".to_string(), diff_ids: Vec::new(), extra: oci::Extra::new() },
                history: None,
                extra: oci::Extra::new(),
            },
            Vec::new(),
        ),
    };
    config.architecture = ARCHITECTURE.to_string();
    config.os = OS.to_string();
    config.created = Some(created.to_string());
    apply_settings(config.config.get_or_insert_with(RuntimeConfig::default), settings);
    config.rootfs.diff_ids.extend(layers.iter().map(|l| l.layer.diff_id.clone()));
    config.history.get_or_insert_with(Vec::new).extend(layers.iter().map(|l| History {
        created: Some(created.to_string()),
        created_by: Some(l.history.clone()),
        ..History::default()
    }));
    let config_bytes = oci::canonical_json(&config);
    let config_digest = sha256(&config_bytes);

    let mut manifest_layers = base_layers;
    manifest_layers
        .extend(layers.iter().map(|l| Descriptor::new(&l.layer.media_type, l.layer.digest.clone(), l.layer.size)));
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(oci::OCI_MANIFEST.to_string()),
        artifact_type: None,
        config: Descriptor::new(oci::OCI_CONFIG, config_digest.clone(), config_bytes.len() as u64),
        layers: manifest_layers,
        subject: None,
        annotations: None,
    };
    let manifest_bytes = oci::canonical_json(&manifest);
    Ok(AssembledImage {
        config_digest,
        config: config_bytes,
        manifest_digest: sha256(&manifest_bytes),
        manifest: manifest_bytes,
    })
}

/// The base config, and its manifest's layer descriptors as they are.
/// Checks that they belong together.
fn parse_base(base: &BaseImage) -> Result<(ImageConfiguration, Vec<Descriptor>), AssembleError> {
    let manifest: ImageManifest = serde_json::from_slice(&base.manifest)
        .map_err(|source| AssembleError::BaseJson { document: "manifest", source })?;
    let config: ImageConfiguration = serde_json::from_slice(&base.config)
        .map_err(|source| AssembleError::BaseJson { document: "config", source })?;
    let actual = sha256(&base.config);
    if actual != manifest.config.digest {
        return Err(AssembleError::BaseConfigDigest { expected: manifest.config.digest, actual });
    }
    let diff_ids = config.rootfs.diff_ids.len();
    if diff_ids != manifest.layers.len() {
        return Err(AssembleError::BaseLayerCount { layers: manifest.layers.len(), diff_ids });
    }
    if (config.os.as_str(), config.architecture.as_str()) != (OS, ARCHITECTURE) {
        return Err(AssembleError::BasePlatform { os: config.os, architecture: config.architecture });
    }
    Ok((config, manifest.layers))
}

fn apply_settings(runtime: &mut RuntimeConfig, settings: &ImageSettings) {
    fn set<T: Clone>(field: &mut Option<Option<T>>, value: &Option<T>) {
        if let Some(value) = value {
            *field = Some(Some(value.clone()));
        }
    }
    set(&mut runtime.env, &settings.env);
    set(&mut runtime.entrypoint, &settings.entrypoint);
    set(&mut runtime.cmd, &settings.cmd);
    set(&mut runtime.working_dir, &settings.working_dir);
    let ports = settings.exposed_ports.as_ref().map(|ports| {
        ports
            .iter()
            .map(|p| (if p.contains('/') { p.clone() } else { format!("{p}/tcp") }, oci::Empty {}))
            .collect::<BTreeMap<_, _>>()
    });
    set(&mut runtime.exposed_ports, &ports);
    set(&mut runtime.labels, &settings.labels);
}

pub(crate) fn sha256(bytes: &[u8]) -> Digest {
    Digest::from_sha256_bytes(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::layer::MEDIA_TYPE_TAR_ZSTD;
    use crate::image::oci::OCI_CONFIG;
    use serde_json::{json, Value};

    fn layer(n: u8) -> NewLayer {
        let d = |c: u8| Digest::from_sha256_bytes(&[c; 32]);
        NewLayer {
            layer: WrittenLayer {
                digest: d(n),
                diff_id: d(n + 100),
                size: 10 + n as u64,
                uncompressed_size: 20,
                media_type: MEDIA_TYPE_TAR_ZSTD.into(),
            },
            history: format!("imgbake: layer {n}"),
        }
    }

    fn base() -> BaseImage {
        let config = br#"{"os":"linux","architecture":"amd64","config":{"Env":["PATH=/usr/bin"],"Cmd":["bash"],"User":"1000","Entrypoint":null},"rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000001"]},"history":[{"created_by":"debootstrap"}]}"#.to_vec();
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{OCI_CONFIG}","digest":"{}","size":{}}},"layers":[{{"size":5,"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:{}","urls":["https://x"]}}]}}"#,
            sha256(&config),
            config.len(),
            "a".repeat(64)
        );
        BaseImage { manifest: manifest.into_bytes(), config }
    }

    #[test]
    fn scratch_image_is_deterministic_sorted_and_hashed_as_written() {
        let settings = ImageSettings {
            entrypoint: Some(vec!["/app/start".into()]),
            exposed_ports: Some(vec!["8000".into()]),
            labels: Some([("z".into(), "1".into()), ("a".into(), "2".into())].into()),
            ..Default::default()
        };
        let image = assemble(None, &[layer(1), layer(2)], &settings, "1970-01-01T00:00:00Z").unwrap();
        let again = assemble(None, &[layer(1), layer(2)], &settings, "1970-01-01T00:00:00Z").unwrap();
        assert_eq!(image, again);
        assert_eq!(image.config_digest, sha256(&image.config));
        assert_eq!(image.manifest_digest, sha256(&image.manifest));
        let config = String::from_utf8(image.config.clone()).unwrap();
        assert!(config.starts_with(r#"{"architecture":"amd64","config":{"Entrypoint":["/app/start"],"ExposedPorts":{"8000/tcp":{}},"Labels":{"a":"2","z":"1"}},"created":"1970-01-01T00:00:00Z","history":[{"created":"#), "{config}");
        let manifest: Value = serde_json::from_slice(&image.manifest).unwrap();
        assert_eq!(manifest["layers"].as_array().unwrap().len(), 2);
        assert_eq!(manifest["config"]["digest"], image.config_digest.to_string());
        assert_eq!(manifest["layers"][1]["digest"], layer(2).layer.digest.to_string());
    }

    #[test]
    fn base_is_appended_to_never_rewritten() {
        let settings =
            ImageSettings { env: Some(vec!["PATH=/usr/bin".into(), "HF_HUB_CACHE=/c".into()]), ..Default::default() };
        let image = assemble(Some(&base()), &[layer(3)], &settings, "2024-01-01T00:00:00Z").unwrap();
        let config: Value = serde_json::from_slice(&image.config).unwrap();
        assert_eq!(config["config"]["Cmd"], json!(["bash"]), "None keeps the base's value");
        assert_eq!(config["config"]["User"], json!("1000"), "unknown base fields kept");
        assert_eq!(config["config"].get("Entrypoint"), Some(&Value::Null), "a base's null stays null");
        assert_eq!(config["config"]["Env"][1], json!("HF_HUB_CACHE=/c"));
        assert_eq!(config["rootfs"]["diff_ids"].as_array().unwrap().len(), 2);
        assert_eq!(config["history"][1]["created_by"], json!("imgbake: layer 3"));
        let manifest: Value = serde_json::from_slice(&image.manifest).unwrap();
        assert_eq!(manifest["layers"][0]["urls"], json!(["https://x"]));
        assert_eq!(manifest["layers"][0]["mediaType"], json!("application/vnd.docker.image.rootfs.diff.tar.gzip"));
    }

    #[test]
    fn a_base_config_that_does_not_match_its_manifest_is_refused() {
        let mut base = base();
        base.config.push(b' ');
        assert!(matches!(
            assemble(Some(&base), &[], &ImageSettings::default(), "x"),
            Err(AssembleError::BaseConfigDigest { .. })
        ));
    }

    #[test]
    fn created_defaults_to_the_epoch() {
        if std::env::var_os(crate::image::layer::SOURCE_DATE_EPOCH).is_none() {
            assert_eq!(created_timestamp(), "1970-01-01T00:00:00Z");
        }
    }
}
