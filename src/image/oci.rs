//! OCI documents, typed: descriptor, image manifest, image index, image
//! configuration, their media types, and the one way they are written
//! ([`canonical_json`]). Assembly, the layout's `index.json`, registry pull
//! and push, and the cost model's view of a base all use these types.
//!
//! Our own types rather than `oci-spec`'s: imgbake appends to base images
//! built by other tools and must keep their documents' content as it is,
//! and its digests must not depend on a hash map's order. `oci-spec` 0.8
//! keeps annotations and labels in `HashMap`s, drops every field it does not
//! model (a Docker-built config's `container_config`, `docker_version`,
//! `ArgsEscaped`, `OnBuild`, …) and reads `"Entrypoint": null` as absent, so
//! copying a base through it would change the base's bytes. Here maps are
//! `BTreeMap`s, every type that can come from a base keeps the fields it does
//! not name in `extra`, and runtime settings that Docker writes as `null`
//! stay `null`.

use crate::image::digest::Digest;
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

pub const OCI_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const OCI_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";
pub const DOCKER_MANIFEST_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";

/// Fields a type does not name, kept as they were read.
pub type Extra = BTreeMap<String, Value>;

pub fn is_index(media_type: &str) -> bool {
    media_type == OCI_INDEX || media_type == DOCKER_MANIFEST_LIST
}

pub fn is_image_manifest(media_type: &str) -> bool {
    media_type == OCI_MANIFEST || media_type == DOCKER_MANIFEST
}

/// Compact JSON with every object's keys in byte order, at every level.
/// The bytes returned are the bytes to hash and the bytes to store.
pub fn canonical_json<T: Serialize>(document: &T) -> Vec<u8> {
    let value = serde_json::to_value(document).expect("an OCI document serializes");
    serde_json::to_vec(&sorted(value)).expect("a JSON value serializes")
}

// serde_json's `preserve_order` is on (for other documents), so objects keep
// insertion order and are sorted here.
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(key, value)| (key, sorted(value))).collect::<Map<_, _>>())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// An OCI content descriptor (also a Docker schema 2 one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    /// Required by the spec; a document that leaves it out reads as "".
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub media_type: String,
    pub digest: Digest,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub urls: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(flatten)]
    pub extra: Extra,
}

impl Descriptor {
    pub fn new(media_type: &str, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest,
            size,
            urls: None,
            annotations: None,
            platform: None,
            artifact_type: None,
            extra: Extra::new(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// `os.version`, `os.features`, …
    #[serde(flatten)]
    pub extra: Extra,
}

impl Platform {
    pub fn new(os: &str, architecture: &str) -> Platform {
        Platform { architecture: architecture.to_string(), os: os.to_string(), variant: None, extra: Extra::new() }
    }

    /// `os/arch[/variant]`, as `docker` prints platforms.
    pub fn label(&self) -> String {
        match &self.variant {
            Some(variant) => format!("{}/{}/{variant}", self.os, self.architecture),
            None => format!("{}/{}", self.os, self.architecture),
        }
    }
}

/// An image manifest (OCI, or Docker schema 2 which has the same shape).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image index (or Docker manifest list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
}

/// An image configuration. A base's fields that imgbake does not change
/// are in `extra` (and in [`RuntimeConfig::extra`], [`History::extra`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfiguration {
    /// Required; left out reads as "" (and fails the platform check).
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config: Option<RuntimeConfig>,
    pub rootfs: RootFs,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<Vec<History>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The `config` object of an image configuration: the settings imgbake
/// writes, typed. Each is absent (`None`), `null` (`Some(None)`: Docker
/// writes Go's nil slices and maps so, and a base's `null` is kept) or set.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RuntimeConfig {
    #[serde(rename = "Env", default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub env: Option<Option<Vec<String>>>,
    #[serde(rename = "Entrypoint", default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub entrypoint: Option<Option<Vec<String>>>,
    #[serde(rename = "Cmd", default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Option<Vec<String>>>,
    #[serde(rename = "WorkingDir", default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub working_dir: Option<Option<String>>,
    #[serde(rename = "ExposedPorts", default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub exposed_ports: Option<Option<BTreeMap<String, Empty>>>,
    #[serde(rename = "Labels", default, deserialize_with = "present", skip_serializing_if = "Option::is_none")]
    pub labels: Option<Option<BTreeMap<String, String>>>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// A field that is there (`null` or not); with `default`, a missing one is `None`.
fn present<'de, T: Deserialize<'de>, D: Deserializer<'de>>(deserializer: D) -> Result<Option<T>, D::Error> {
    T::deserialize(deserializer).map(Some)
}

/// `{}`, the value of each `ExposedPorts` key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Empty {}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub kind: String,
    pub diff_ids: Vec<Digest>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// One history entry. Go's encoder leaves empty fields out (`omitempty`),
/// so these are never `null`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct History {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_layer: Option<bool>,
    #[serde(flatten)]
    pub extra: Extra,
}

/// The media type a manifest or index declares in its own `mediaType`
/// field, or (OCI allows leaving it out) the one its shape tells.
pub fn declared_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Declared {
        media_type: Option<String>,
        manifests: Option<serde::de::IgnoredAny>,
        layers: Option<serde::de::IgnoredAny>,
    }
    let declared: Declared = serde_json::from_slice(bytes).ok()?;
    declared.media_type.or_else(|| {
        if declared.manifests.is_some() {
            Some(OCI_INDEX.to_string())
        } else if declared.layers.is_some() {
            Some(OCI_MANIFEST.to_string())
        } else {
            None
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A config as Docker writes it: nulls, fields no OCI type names, keys
    /// in Go's order.
    const DOCKER_CONFIG: &str = r##"{"architecture":"amd64","config":{"Hostname":"","User":"","AttachStdin":false,"ExposedPorts":{"80/tcp":{}},"Tty":false,"Env":["PATH=/usr/bin"],"Cmd":["bash"],"ArgsEscaped":true,"Image":"sha256:1111111111111111111111111111111111111111111111111111111111111111","Volumes":null,"WorkingDir":"","Entrypoint":null,"OnBuild":null,"Labels":null,"StopSignal":"SIGTERM","Healthcheck":{"Test":["CMD","true"],"Interval":30000000000}},"container":"abc","container_config":{"Cmd":["/bin/sh","-c","#(nop) ","CMD [\"bash\"]"],"Labels":{}},"created":"2024-01-02T03:04:05.123456789Z","docker_version":"20.10.23","history":[{"created":"2024-01-02T03:04:05Z","created_by":"/bin/sh -c #(nop) ADD file:x in / "},{"created":"2024-01-02T03:04:05Z","created_by":"/bin/sh -c #(nop)  CMD [\"bash\"]","empty_layer":true}],"os":"linux","rootfs":{"type":"layers","diff_ids":["sha256:2222222222222222222222222222222222222222222222222222222222222222"]},"variant":"v3","os.version":"1","weight":1.5}"##;

    #[test]
    fn a_docker_config_round_trips_to_its_own_canonical_bytes() {
        let typed: ImageConfiguration = serde_json::from_str(DOCKER_CONFIG).unwrap();
        let untyped: Value = serde_json::from_str(DOCKER_CONFIG).unwrap();
        assert_eq!(canonical_json(&typed), canonical_json(&untyped));
        let runtime = typed.config.as_ref().unwrap();
        assert_eq!(runtime.entrypoint, Some(None), "null stays null");
        assert_eq!(runtime.cmd, Some(Some(vec!["bash".to_string()])));
        assert!(runtime.extra.contains_key("Healthcheck"));
        assert_eq!(typed.history.as_ref().unwrap()[1].empty_layer, Some(true));
    }

    #[test]
    fn canonical_json_sorts_every_level_and_leaves_out_what_is_absent() {
        let digest = Digest::from_sha256_bytes(&[7; 32]);
        let mut descriptor = Descriptor::new(OCI_MANIFEST, digest.clone(), 3);
        descriptor.platform = Some(Platform::new("linux", "amd64"));
        descriptor.annotations = Some([("z".to_string(), "1".to_string()), ("a".to_string(), "2".to_string())].into());
        let index = ImageIndex {
            schema_version: 2,
            media_type: Some(OCI_INDEX.to_string()),
            manifests: vec![descriptor],
            annotations: None,
        };
        let bytes = String::from_utf8(canonical_json(&index)).unwrap();
        assert_eq!(
            bytes,
            format!(
                r#"{{"manifests":[{{"annotations":{{"a":"2","z":"1"}},"digest":"{digest}","mediaType":"{OCI_MANIFEST}","platform":{{"architecture":"amd64","os":"linux"}},"size":3}}],"mediaType":"{OCI_INDEX}","schemaVersion":2}}"#
            )
        );
        assert_eq!(serde_json::from_str::<ImageIndex>(&bytes).unwrap(), index);
    }

    #[test]
    fn base_layer_descriptors_keep_fields_we_do_not_name() {
        let text = format!(
            r#"{{"size":5,"mediaType":"application/vnd.docker.image.rootfs.foreign.diff.tar.gzip","digest":"sha256:{}","urls":["https://x"],"data":"AA=="}}"#,
            "a".repeat(64)
        );
        let descriptor: Descriptor = serde_json::from_str(&text).unwrap();
        assert_eq!(descriptor.urls.as_deref(), Some(&["https://x".to_string()][..]));
        let untyped: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(canonical_json(&descriptor), canonical_json(&untyped));
    }

    #[test]
    fn media_type_is_declared_or_told_by_shape() {
        assert_eq!(declared_media_type(br#"{"mediaType":"x","layers":[]}"#).as_deref(), Some("x"));
        assert_eq!(declared_media_type(br#"{"manifests":[]}"#).as_deref(), Some(OCI_INDEX));
        assert_eq!(declared_media_type(br#"{"layers":[]}"#).as_deref(), Some(OCI_MANIFEST));
        assert_eq!(declared_media_type(br#"{}"#), None);
        assert_eq!(declared_media_type(b"not json"), None);
    }
}
