//! `mode = "artifact"` sources: each planned [`ArtifactPlan`] becomes a
//! ModelPack artifact. Its layers are written by the same code as baked
//! weights layers (local files, or remote ones streamed from the source and
//! verified), its documents by `image::modelpack`; it goes into the output
//! layout beside the image (tag `<tag>-weights-<mount>`) and, with `--push`,
//! to its own repository by the same push path as the image (HEAD-skip,
//! 1 MiB pieces).

use super::layers::{self, BuiltLayer, LayerBuildError};
use super::registry_cache::{built_from_hit, Hit};
use super::stream::RemoteStreams;
use crate::image::assemble::AssembledImage;
use crate::image::cache::LayerCache;
use crate::image::digest::Digest;
use crate::image::modelpack::{self, ModelFacts};
use crate::layout::{ArtifactPlan, LayerContent};
use crate::registry::Reference;
use crate::spec::{Spec, WeightsSource};
use std::collections::BTreeMap;

/// One artifact, built.
#[derive(Debug, Clone)]
pub struct BuiltArtifact {
    pub origin: String,
    pub uri: String,
    pub mount: String,
    pub mount_path: String,
    pub layers: Vec<BuiltLayer>,
    pub documents: AssembledImage,
    /// Its tag in the output layout.
    pub tag: String,
    /// `registry/repo@sha256:…` once pushed.
    pub pushed: Option<String>,
}

impl BuiltArtifact {
    pub fn digest(&self) -> &Digest {
        &self.documents.manifest_digest
    }
}

/// Writes the layers of `artifact` (or finds them in the layer cache, or
/// takes them from the registry cache's `hits`, by layer index) and its
/// documents.
pub fn build(
    spec: &Spec,
    artifact: &ArtifactPlan,
    image_tag: &str,
    cache: &LayerCache,
    streams: Option<&RemoteStreams>,
    hits: &BTreeMap<usize, Hit>,
) -> Result<BuiltArtifact, LayerBuildError> {
    let mut built = Vec::new();
    let mut packed = Vec::new();
    for (index, planned) in artifact.layers.iter().enumerate() {
        let LayerContent::Weights { files, .. } = &planned.layer.content else {
            unreachable!("artifact layers are weights layers")
        };
        let layer = match hits.get(&index) {
            Some(hit) => built_from_hit(hit, &planned.layer.name, &planned.layer.history),
            None => layers::weights_layer(&planned.layer, files, cache, streams)?,
        };
        packed.push(modelpack::ArtifactLayer {
            layer: layer.layer.clone(),
            config_files: planned.config_files,
            files: files.iter().map(|f| f.image_path.clone()).collect(),
            title: format!("{}-{}.tar", safe_name(&artifact.mount), index + 1),
        });
        built.push(layer);
    }
    let facts = model_facts(spec, artifact);
    Ok(BuiltArtifact {
        origin: artifact.origin.clone(),
        uri: artifact.uri.clone(),
        mount: artifact.mount.clone(),
        mount_path: artifact.mount_path.clone(),
        layers: built,
        documents: modelpack::assemble(&facts, &packed),
        tag: format!("{image_tag}-weights-{}", safe_name(&artifact.mount)),
        pushed: None,
    })
}

/// The config's model descriptor: the mount as its name, the source
/// without any query string or user info, the pinned revision when the
/// source has one.
fn model_facts(spec: &Spec, artifact: &ArtifactPlan) -> ModelFacts {
    let entry = spec.weights.iter().find(|e| e.origin == artifact.origin);
    let source = entry.map(|e| &e.source);
    let without_query = artifact.uri.split(['?', '#']).next().unwrap_or_default();
    let source_url = match source {
        None | Some(WeightsSource::Local { .. }) => None,
        Some(WeightsSource::Https { .. }) => Some(crate::deps::python::redact_url(without_query)),
        Some(_) => Some(without_query.to_string()),
    };
    let revision = match source {
        Some(WeightsSource::Hf { revision, .. }) => Some(revision.clone()),
        _ => None,
    };
    ModelFacts { name: artifact.mount.clone(), source_url, revision }
}

/// Where `artifact` is pushed when the image goes to `image`:
/// `[imgbake] artifact_repo` (the tag gets `-<mount>` when several sources
/// share it), else `<image repository>-weights-<mount>`, with the image's
/// tag (`latest` when the image is pushed by digest).
pub fn push_target(artifact_repo: Option<&str>, image: &Reference, mount: &str, shared_repo: bool) -> Reference {
    let tag = image.tag.clone().unwrap_or_else(|| "latest".to_string());
    let name = safe_name(mount).to_ascii_lowercase();
    let (repository, tag) = match artifact_repo {
        Some(repository) if shared_repo => (repository.to_string(), format!("{tag}-{name}")),
        Some(repository) => (repository.to_string(), tag),
        None => (format!("{}-weights-{name}", image.repository), tag),
    };
    Reference { registry: image.registry.clone(), repository, tag: Some(tag), digest: None }
}

/// `mount` with every character a tag or repository cannot hold made `-`.
fn safe_name(mount: &str) -> String {
    mount.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' || c == '_' { c } else { '-' }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn artifacts_go_beside_the_image_or_to_the_configured_repository() {
        let image: Reference = "127.0.0.1:5000/team/app:v3".parse().unwrap();
        assert_eq!(
            push_target(None, &image, "SDXL base", false).to_string(),
            "127.0.0.1:5000/team/app-weights-sdxl-base:v3"
        );
        let shared = Some("team/models");
        assert_eq!(push_target(shared, &image, "sdxl", false).to_string(), "127.0.0.1:5000/team/models:v3");
        assert_eq!(push_target(shared, &image, "sdxl", true).to_string(), "127.0.0.1:5000/team/models:v3-sdxl");
    }
}
