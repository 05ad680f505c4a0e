//! ModelPack v1 documents (CNCF model-spec, `modelpack/model-spec`): the
//! config and manifest of a weights source packed as an OCI artifact, which
//! a Kubernetes node mounts read-only as an image volume, and KitOps or
//! Docker Model Runner read. Layers are written by the same layer writer as
//! image layers; this module only names them and writes the two documents,
//! deterministically: the same files give the same artifact digest (no
//! timestamp, keys sorted by [`oci::canonical_json`]).

use crate::image::assemble::AssembledImage;
use crate::image::digest::Digest;
use crate::image::layer::WrittenLayer;
use crate::image::oci::{self, Descriptor, ImageManifest};
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;

/// The manifest's `artifactType`.
pub const ARTIFACT_TYPE: &str = "application/vnd.cncf.model.manifest.v1+json";
/// The config blob's media type.
pub const CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.model.config.v1+json";
/// A layer of weights files (uncompressed tar).
pub const WEIGHT_MEDIA_TYPE: &str = "application/vnd.cncf.model.weight.v1.tar";
/// A layer of the model's config files (config.json, tokenizer files, …).
pub const WEIGHT_CONFIG_MEDIA_TYPE: &str = "application/vnd.cncf.model.weight.config.v1.tar";
/// The file a one-file layer holds, relative to the artifact's root.
pub const FILEPATH_ANNOTATION: &str = "org.cncf.model.filepath";
/// A name for the layer blob (ORAS clients save the blob under it).
pub const TITLE_ANNOTATION: &str = "org.opencontainers.image.title";

/// One written layer of the artifact and what it holds.
#[derive(Debug, Clone)]
pub struct ArtifactLayer {
    pub layer: WrittenLayer,
    /// Only model config files: the weight-config media type.
    pub config_files: bool,
    /// Paths of its files, relative to the artifact's root.
    pub files: Vec<String>,
    /// The blob's name for ORAS clients (`<mount>-1.tar`).
    pub title: String,
}

/// What the config's `descriptor` says of the model. Credentials never
/// reach it: `source_url` is the source as the config names it, without a
/// query string.
#[derive(Debug, Clone, Default)]
pub struct ModelFacts {
    pub name: String,
    pub source_url: Option<String>,
    pub revision: Option<String>,
}

#[derive(Serialize)]
struct Config<'a> {
    descriptor: Descriptor_<'a>,
    config: ModelConfig,
    modelfs: ModelFs,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Descriptor_<'a> {
    name: &'a str,
    #[serde(rename = "sourceURL", skip_serializing_if = "Option::is_none")]
    source_url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    revision: Option<&'a str>,
}

#[derive(Serialize)]
struct ModelConfig {
    /// The weights files' format when they share one (`safetensors`, `gguf`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ModelFs {
    #[serde(rename = "type")]
    kind: &'static str,
    diff_ids: Vec<String>,
}

/// The artifact's config and manifest (in [`AssembledImage`]'s shape, so the
/// layout writer and the push path take it as they take an image).
pub fn assemble(facts: &ModelFacts, layers: &[ArtifactLayer]) -> AssembledImage {
    let format = weights_format(layers);
    let config = Config {
        descriptor: Descriptor_ {
            name: &facts.name,
            source_url: facts.source_url.as_deref(),
            revision: facts.revision.as_deref(),
        },
        config: ModelConfig { format },
        modelfs: ModelFs { kind: "layers", diff_ids: layers.iter().map(|l| l.layer.diff_id.to_string()).collect() },
    };
    let config = oci::canonical_json(&config);
    let config_digest = sha256(&config);
    let manifest = ImageManifest {
        schema_version: 2,
        media_type: Some(oci::OCI_MANIFEST.to_string()),
        artifact_type: Some(ARTIFACT_TYPE.to_string()),
        config: Descriptor::new(CONFIG_MEDIA_TYPE, config_digest.clone(), config.len() as u64),
        layers: layers.iter().map(layer_descriptor).collect(),
        subject: None,
        annotations: None,
    };
    let manifest = oci::canonical_json(&manifest);
    let manifest_digest = sha256(&manifest);
    AssembledImage { config, config_digest, manifest, manifest_digest }
}

fn layer_descriptor(layer: &ArtifactLayer) -> Descriptor {
    let media_type = if layer.config_files { WEIGHT_CONFIG_MEDIA_TYPE } else { WEIGHT_MEDIA_TYPE };
    let mut descriptor = Descriptor::new(media_type, layer.layer.digest.clone(), layer.layer.size);
    let mut annotations = BTreeMap::from([(TITLE_ANNOTATION.to_string(), layer.title.clone())]);
    if let [file] = layer.files.as_slice() {
        annotations.insert(FILEPATH_ANNOTATION.to_string(), file.clone());
    }
    descriptor.annotations = Some(annotations);
    descriptor
}

/// The extension every weights file shares, if they share one.
fn weights_format(layers: &[ArtifactLayer]) -> Option<String> {
    let mut formats = layers
        .iter()
        .filter(|l| !l.config_files)
        .flat_map(|l| &l.files)
        .map(|path| path.rsplit_once('.').map(|(_, ext)| ext.to_ascii_lowercase()).unwrap_or_default());
    let first = formats.next()?;
    (formats.all(|f| f == first) && !first.is_empty()).then_some(first)
}

fn sha256(bytes: &[u8]) -> Digest {
    Digest::from_sha256_bytes(&Sha256::digest(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(digest_byte: char, files: &[&str], config_files: bool) -> ArtifactLayer {
        let digest: Digest = format!("sha256:{}", digest_byte.to_string().repeat(64)).parse().unwrap();
        ArtifactLayer {
            layer: WrittenLayer {
                digest: digest.clone(),
                diff_id: digest,
                size: 10,
                uncompressed_size: 10,
                media_type: oci::OCI_MANIFEST.into(),
            },
            config_files,
            files: files.iter().map(|f| f.to_string()).collect(),
            title: format!("m-{digest_byte}.tar"),
        }
    }

    #[test]
    fn the_documents_name_the_model_types_and_files_and_repeat_byte_for_byte() {
        let facts =
            ModelFacts { name: "tiny".into(), source_url: Some("hf://org/tiny".into()), revision: Some("abc".into()) };
        let layers = [
            layer('a', &["model-1.safetensors"], false),
            layer('b', &["model-2.safetensors", "nested/model-3.safetensors"], false),
            layer('c', &["config.json", "tokenizer.json"], true),
        ];
        let artifact = assemble(&facts, &layers);
        assert_eq!(assemble(&facts, &layers), artifact);
        let manifest: serde_json::Value = serde_json::from_slice(&artifact.manifest).unwrap();
        assert_eq!(manifest["artifactType"], ARTIFACT_TYPE);
        assert_eq!(manifest["config"]["mediaType"], CONFIG_MEDIA_TYPE);
        assert_eq!(manifest["layers"][0]["mediaType"], WEIGHT_MEDIA_TYPE);
        assert_eq!(manifest["layers"][0]["annotations"][FILEPATH_ANNOTATION], "model-1.safetensors");
        assert!(manifest["layers"][1]["annotations"].get(FILEPATH_ANNOTATION).is_none());
        assert_eq!(manifest["layers"][2]["mediaType"], WEIGHT_CONFIG_MEDIA_TYPE);
        let config: serde_json::Value = serde_json::from_slice(&artifact.config).unwrap();
        assert_eq!(config["descriptor"]["sourceURL"], "hf://org/tiny");
        assert_eq!(config["config"]["format"], "safetensors");
        assert_eq!(config["modelfs"]["type"], "layers");
        assert_eq!(config["modelfs"]["diffIds"].as_array().unwrap().len(), 3);
    }
}
