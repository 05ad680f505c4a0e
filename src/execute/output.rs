//! Where a built image goes: an OCI image layout directory (always) and a
//! registry (with `--push`). Blobs are placed before the index names them.

use super::artifact::BuiltArtifact;
use super::layers::BuiltLayer;
use crate::image::assemble::AssembledImage;
use crate::image::cache::LayerCache;
use crate::image::digest::Digest;
use crate::image::layout::{LayoutError, OciLayout, OciRef};
use crate::image::oci::OCI_MANIFEST;
use crate::registry::push_record::PushRecord;
use crate::registry::{BlobSource, ImageToPush, Reference, RegistryClient, RegistryClientOptions, RegistryError};
use crate::resolve::base::ResolvedBase;
use std::collections::BTreeMap;

#[derive(Debug, thiserror::Error)]
pub enum OutputError {
    #[error("cannot write the image to oci:{}:{tag}", dir.display())]
    Layout {
        dir: std::path::PathBuf,
        tag: String,
        #[source]
        source: Box<LayoutError>,
    },
    #[error("cannot copy blob {digest} into the output")]
    Blob {
        digest: String,
        #[source]
        source: crate::image::blobs::BlobError,
    },
    #[error("cannot fetch layer {digest} from the registry cache into the output")]
    Fetch {
        digest: String,
        #[source]
        source: Box<RegistryError>,
    },
    #[error("cannot push to {target}")]
    Push {
        target: String,
        #[source]
        source: Box<RegistryError>,
    },
}

/// Writes the image into the output layout. `from_registry` names the
/// layers the registry cache supplied: fetched from that repository into
/// the layout, or (`None`) left out of it.
pub fn write_layout(
    output: &OciRef,
    image: &AssembledImage,
    base: &ResolvedBase,
    built: &[BuiltLayer],
    cache: &LayerCache,
    from_registry: &BTreeMap<Digest, Option<Reference>>,
    registry: &RegistryClientOptions,
) -> Result<(), OutputError> {
    let layout_error =
        |source| OutputError::Layout { dir: output.dir.clone(), tag: output.tag.clone(), source: Box::new(source) };
    let layout = OciLayout::create(&output.dir).map_err(layout_error)?;
    if let Some(blobs) = &base.blobs {
        for layer in &base.layers {
            if !layout.blobs().has(&layer.digest) {
                layout
                    .blobs()
                    .import_file(&layer.digest, &blobs.path(&layer.digest))
                    .map_err(|source| OutputError::Blob { digest: layer.digest.to_string(), source })?;
            }
        }
    }
    let mut client = None;
    for layer in built {
        place_layer(&layout, layer, cache, from_registry, registry, &mut client)?;
    }
    let elsewhere = |digest: &Digest| matches!(from_registry.get(digest), Some(None));
    layout.write_partial_image(image, &output.tag, &elsewhere).map_err(layout_error)?;
    Ok(())
}

/// Puts one built layer's blob into `layout`, unless it is there: from the
/// local layer cache (linked), else, for a registry-cache hit this machine
/// does not hold, fetched from the repository that has it; a hit recorded
/// as `None` stays out of the layout. A registry-cache hit this machine
/// also holds (its layer cache made the blob when an earlier build pushed
/// it) is linked, not downloaded again: 2.8 GB for a torch app whose code
/// changed. `client` is made on the first fetch.
fn place_layer(
    layout: &OciLayout,
    layer: &BuiltLayer,
    cache: &LayerCache,
    from_registry: &BTreeMap<Digest, Option<Reference>>,
    registry: &RegistryClientOptions,
    client: &mut Option<RegistryClient>,
) -> Result<(), OutputError> {
    let digest = &layer.layer.digest;
    if layout.blobs().has(digest) {
        return Ok(());
    }
    match from_registry.get(digest) {
        Some(None) => Ok(()),
        Some(Some(repository)) if !cache.blobs().has(digest) => {
            let fetch_error = |source| OutputError::Fetch { digest: digest.to_string(), source: Box::new(source) };
            if client.is_none() {
                *client = Some(RegistryClient::new(registry.clone()).map_err(fetch_error)?);
            }
            let client = client.as_ref().expect("made above");
            client.fetch_blob_to_file(repository, digest, &layout.blobs().path(digest)).map(drop).map_err(fetch_error)
        }
        Some(Some(_)) | None => cache
            .export(&layer.layer, layout.blobs())
            .map_err(|source| OutputError::Blob { digest: digest.to_string(), source }),
    }
}

/// Puts a weights artifact into the output layout beside the image: its
/// layer blobs, config and manifest, under its own tag. Layers the registry
/// cache supplied are fetched or left out as in [`write_layout`].
pub fn write_artifact(
    output: &OciRef,
    artifact: &BuiltArtifact,
    cache: &LayerCache,
    from_registry: &BTreeMap<Digest, Option<Reference>>,
    registry: &RegistryClientOptions,
) -> Result<(), OutputError> {
    let layout_error =
        |source| OutputError::Layout { dir: output.dir.clone(), tag: artifact.tag.clone(), source: Box::new(source) };
    let layout = OciLayout::create(&output.dir).map_err(layout_error)?;
    let mut client = None;
    for layer in &artifact.layers {
        place_layer(&layout, layer, cache, from_registry, registry, &mut client)?;
    }
    let elsewhere = |digest: &Digest| matches!(from_registry.get(digest), Some(None));
    layout.write_partial_image(&artifact.documents, &artifact.tag, &elsewhere).map_err(layout_error)?;
    Ok(())
}

/// Pushes a weights artifact from the output layout; returns `registry/repo@digest`.
pub fn push_artifact(
    output: &OciRef,
    artifact: &BuiltArtifact,
    target: &Reference,
    options: &RegistryClientOptions,
) -> Result<String, OutputError> {
    push_documents(output, &artifact.documents, None, None, target, options)
}

/// Pushes the image from the output layout; returns `registry/repo@digest`.
/// Blobs `record` saw pushed to another repository of the same registry are
/// mounted from there first; every blob pushed is recorded.
pub fn push(
    output: &OciRef,
    image: &AssembledImage,
    base: &ResolvedBase,
    record: &PushRecord,
    target: &Reference,
    options: &RegistryClientOptions,
) -> Result<String, OutputError> {
    let mount_from = base
        .reference
        .as_ref()
        .filter(|r| r.registry == target.registry && r.repository != target.repository)
        .map(|r| r.repository.clone());
    push_documents(output, image, mount_from, Some(record), target, options)
}

/// Pushes a manifest, its config and its layers from the output layout.
fn push_documents(
    output: &OciRef,
    image: &AssembledImage,
    mount_from: Option<String>,
    record: Option<&PushRecord>,
    target: &Reference,
    options: &RegistryClientOptions,
) -> Result<String, OutputError> {
    let push_error = |source| OutputError::Push { target: target.to_string(), source: Box::new(source) };
    let blobs_dir = output.dir.join("blobs");
    let layers = image
        .manifest_document()
        .layers
        .into_iter()
        .map(|layer| BlobSource::in_blobs_dir(&blobs_dir, layer.digest, layer.size))
        .collect();
    let to_push = ImageToPush {
        manifest: image.manifest.clone(),
        manifest_media_type: OCI_MANIFEST.to_string(),
        config: BlobSource::in_blobs_dir(&blobs_dir, image.config_digest.clone(), image.config.len() as u64),
        layers,
        mount_from,
    };
    let client = RegistryClient::new(options.clone()).map_err(push_error)?;
    if let Some(record) = record {
        mount_pushed_elsewhere(&client, record, &to_push, target);
    }
    let report = client.push_image(&to_push, target).map_err(push_error)?;
    if let Some(record) = record {
        record.remember(&target.registry, &target.repository, report.blobs.iter().map(|(digest, _)| digest));
    }
    Ok(report.pinned.to_string())
}

/// Mounts into `target` each blob that `record` last saw pushed to another
/// repository of its registry. Best effort: a refused or failed mount leaves
/// the blob to `push_image`, which checks and uploads it.
fn mount_pushed_elsewhere(client: &RegistryClient, record: &PushRecord, image: &ImageToPush, target: &Reference) {
    for blob in std::iter::once(&image.config).chain(&image.layers) {
        if let Some(from) = record.repository(&target.registry, &blob.digest) {
            if from != target.repository {
                let _ = client.mount_blob(target, &blob.digest, &from);
            }
        }
    }
}
