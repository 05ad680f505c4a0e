//! Image assembly: base image (optional) + new layers + settings → the exact
//! bytes of the image config and manifest, and their digests.
//!
//! Like go-containerregistry's `mutate.Append`, the base is never changed:
//! its layer descriptors are copied as they are, its diff_ids and history
//! are kept, and new ones are appended. Documents are built as JSON values
//! and written with every object's keys sorted (the crate enables
//! serde_json's `preserve_order`, so we sort ourselves), with no timestamp
//! except `created`; the digest is of the very bytes returned.

use crate::image::digest::Digest;
use crate::image::layer::{source_date_epoch, WrittenLayer};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

pub const MEDIA_TYPE_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MEDIA_TYPE_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MEDIA_TYPE_INDEX: &str = "application/vnd.oci.image.index.v1+json";
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

/// An OCI content descriptor; fields in alphabetical order so that
/// serializing it directly gives sorted keys too.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Descriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    pub digest: Digest,
    #[serde(rename = "mediaType")]
    pub media_type: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    pub size: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
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
        Descriptor {
            annotations: None,
            digest: self.manifest_digest.clone(),
            media_type: MEDIA_TYPE_MANIFEST.to_string(),
            platform: Some(Platform { architecture: ARCHITECTURE.to_string(), os: OS.to_string(), variant: None }),
            size: self.manifest.len() as u64,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AssembleError {
    #[error("the base image's {document} is not valid JSON")]
    BaseJson {
        document: &'static str,
        #[source]
        source: serde_json::Error,
    },
    #[error("the base image's {0} lacks a valid `{1}`")]
    BaseField(&'static str, &'static str),
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
        None => (json!({}), Vec::new()),
    };
    let root = config.as_object_mut().expect("parse_base checks an object");
    root.insert("architecture".into(), json!(ARCHITECTURE));
    root.insert("os".into(), json!(OS));
    root.insert("created".into(), json!(created));

    let runtime = root
        .entry("config")
        .or_insert_with(|| json!({}))
        .as_object_mut()
        .ok_or(AssembleError::BaseField("config", "config"))?;
    apply_settings(runtime, settings);

    let rootfs = root.entry("rootfs").or_insert_with(|| json!({"type": "layers", "diff_ids": []}));
    let diff_ids = rootfs
        .get_mut("diff_ids")
        .and_then(Value::as_array_mut)
        .ok_or(AssembleError::BaseField("config", "rootfs.diff_ids"))?;
    diff_ids.extend(layers.iter().map(|l| json!(l.layer.diff_id.to_string())));

    let history = root
        .entry("history")
        .or_insert_with(|| json!([]))
        .as_array_mut()
        .ok_or(AssembleError::BaseField("config", "history"))?;
    history.extend(layers.iter().map(|l| {
        json!({
            "created": created,
            "created_by": l.history,
        })
    }));

    let config_bytes = canonical_bytes(&config);
    let config_digest = sha256(&config_bytes);

    let mut manifest_layers = base_layers;
    manifest_layers.extend(layers.iter().map(|l| {
        json!({
            "digest": l.layer.digest.to_string(),
            "mediaType": l.layer.media_type,
            "size": l.layer.size,
        })
    }));
    let manifest = json!({
        "schemaVersion": 2,
        "mediaType": MEDIA_TYPE_MANIFEST,
        "config": {
            "mediaType": MEDIA_TYPE_CONFIG,
            "digest": config_digest.to_string(),
            "size": config_bytes.len(),
        },
        "layers": manifest_layers,
    });
    let manifest_bytes = canonical_bytes(&manifest);
    Ok(AssembledImage {
        config_digest,
        config: config_bytes,
        manifest_digest: sha256(&manifest_bytes),
        manifest: manifest_bytes,
    })
}

/// The base config as a JSON object, and its manifest's layer descriptors
/// as they are. Checks that they belong together.
fn parse_base(base: &BaseImage) -> Result<(Value, Vec<Value>), AssembleError> {
    let manifest: Value = serde_json::from_slice(&base.manifest)
        .map_err(|source| AssembleError::BaseJson { document: "manifest", source })?;
    let config: Value = serde_json::from_slice(&base.config)
        .map_err(|source| AssembleError::BaseJson { document: "config", source })?;
    if !config.is_object() {
        return Err(AssembleError::BaseField("config", "{…}"));
    }
    let expected: Digest = manifest
        .pointer("/config/digest")
        .and_then(Value::as_str)
        .and_then(|d| d.parse().ok())
        .ok_or(AssembleError::BaseField("manifest", "config.digest"))?;
    let actual = sha256(&base.config);
    if actual != expected {
        return Err(AssembleError::BaseConfigDigest { expected, actual });
    }
    let layers =
        manifest.get("layers").and_then(Value::as_array).ok_or(AssembleError::BaseField("manifest", "layers"))?.clone();
    let diff_ids = config
        .pointer("/rootfs/diff_ids")
        .and_then(Value::as_array)
        .ok_or(AssembleError::BaseField("config", "rootfs.diff_ids"))?
        .len();
    if diff_ids != layers.len() {
        return Err(AssembleError::BaseLayerCount { layers: layers.len(), diff_ids });
    }
    let field = |name| config.get(name).and_then(Value::as_str).unwrap_or("");
    if (field("os"), field("architecture")) != (OS, ARCHITECTURE) {
        return Err(AssembleError::BasePlatform {
            os: field("os").to_string(),
            architecture: field("architecture").to_string(),
        });
    }
    Ok((config, layers))
}

fn apply_settings(runtime: &mut Map<String, Value>, settings: &ImageSettings) {
    let mut set = |key: &str, value: Option<Value>| {
        if let Some(value) = value {
            runtime.insert(key.to_string(), value);
        }
    };
    set("Env", settings.env.as_ref().map(|v| json!(v)));
    set("Entrypoint", settings.entrypoint.as_ref().map(|v| json!(v)));
    set("Cmd", settings.cmd.as_ref().map(|v| json!(v)));
    set("WorkingDir", settings.working_dir.as_ref().map(|v| json!(v)));
    set(
        "ExposedPorts",
        settings.exposed_ports.as_ref().map(|ports| {
            let map: BTreeMap<String, Value> = ports
                .iter()
                .map(|p| {
                    let port = if p.contains('/') { p.clone() } else { format!("{p}/tcp") };
                    (port, json!({}))
                })
                .collect();
            json!(map)
        }),
    );
    set("Labels", settings.labels.as_ref().map(|v| json!(v)));
}

/// Compact JSON with every object's keys in byte order, recursively.
pub fn canonical_bytes(value: &Value) -> Vec<u8> {
    serde_json::to_vec(&sorted(value)).expect("a JSON value serializes")
}

fn sorted(value: &Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            let mut out = Map::new();
            for key in keys {
                out.insert(key.clone(), sorted(&map[key]));
            }
            Value::Object(out)
        }
        Value::Array(items) => Value::Array(items.iter().map(sorted).collect()),
        other => other.clone(),
    }
}

pub(crate) fn sha256(bytes: &[u8]) -> Digest {
    Digest::from_sha256_bytes(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::layer::MEDIA_TYPE_TAR_ZSTD;

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
        let config = br#"{"os":"linux","architecture":"amd64","config":{"Env":["PATH=/usr/bin"],"Cmd":["bash"],"User":"1000"},"rootfs":{"type":"layers","diff_ids":["sha256:0000000000000000000000000000000000000000000000000000000000000001"]},"history":[{"created_by":"debootstrap"}]}"#.to_vec();
        let manifest = format!(
            r#"{{"schemaVersion":2,"config":{{"mediaType":"{MEDIA_TYPE_CONFIG}","digest":"{}","size":{}}},"layers":[{{"size":5,"mediaType":"application/vnd.docker.image.rootfs.diff.tar.gzip","digest":"sha256:{}","urls":["https://x"]}}]}}"#,
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
