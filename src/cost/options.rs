//! One option (every weights source baked, on a volume, or as decided) laid
//! out as build would make it: its layers, image size, bytes pushed per
//! change, cold-start scenarios, build time and storage per replica count.

use super::inputs::PlanInputs;
use super::Placement;
use crate::pricing::estimate::{Codec, LayerEstimate, BYTES_PER_ENTRY_ESTIMATE};
use crate::pricing::model::{self, BuildTerms, PullLayer, Terms, WeightsAtStart};
use crate::pricing::profile::Params;
use serde::Serialize;

/// The layer the volume option adds: the weights manifest and the hook binary.
/// Binaries gzip to about 40%; the manifest is a few KiB.
const HOOK_LAYER_RATIO: f64 = 0.4;
const MANIFEST_BYTES_PER_FILE: u64 = 200;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Scenario {
    /// `new_node`, `cached_base` or `cold_volume`.
    pub id: &'static str,
    pub label: String,
    pub terms: Terms,
    pub total: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Storage {
    pub replicas: u32,
    /// One copy of the image's blobs.
    pub registry: u64,
    /// Every replica's node: the compressed blobs plus the unpacked snapshot.
    pub nodes: u64,
    pub volume: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Placed {
    pub origin: String,
    pub placement: Placement,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OptionPlan {
    /// `bake`, `volume`, `artifact` (where the profile mounts image volumes) or `auto`.
    pub name: &'static str,
    pub placements: Vec<Placed>,
    pub layers: Vec<LayerEstimate>,
    pub image_compressed: u64,
    pub image_uncompressed: u64,
    pub volume_bytes: u64,
    /// Bytes of the ModelPack artifacts beside the image (`mode = "artifact"`).
    #[serde(skip_serializing_if = "is_zero")]
    pub artifact_bytes: u64,
    pub push_code_change: u64,
    pub push_weights_change: u64,
    pub cold_starts: Vec<Scenario>,
    pub build: BuildTerms,
    pub build_seconds: f64,
    /// A CI rebuild on a fresh runner with the registry cache (docs/build.md):
    /// nothing changed, so only the layers that have no key (app files,
    /// local weights, the volume layer) are written, and nothing is pushed.
    pub ci_rebuild_unchanged: BuildTerms,
    /// The same after one remote weights file changed (the largest: its
    /// split is fetched, written and pushed; the rest comes from the cache).
    pub ci_rebuild_weights_file: BuildTerms,
    pub storage: Vec<Storage>,
}

impl OptionPlan {
    pub fn scenario(&self, id: &str) -> Option<&Scenario> {
        self.cold_starts.iter().find(|s| s.id == id)
    }
}

fn is_zero(value: &u64) -> bool {
    *value == 0
}

/// The base when its size is unknown: the profile's defaults.
pub fn default_base(params: &Params) -> LayerEstimate {
    LayerEstimate {
        what: "base (profile default)".into(),
        uncompressed: params.default_base_uncompressed as u64,
        compressed: params.default_base_compressed as u64,
        codec: Codec::Gzip,
        exact: false,
        entries: params.default_base_uncompressed as u64 / BYTES_PER_ENTRY_ESTIMATE,
    }
}

/// The volume-mode layer for these files.
pub fn volume_layer(files: usize, params: &Params) -> LayerEstimate {
    let hook = params.prefetch_hook_bytes as u64;
    let manifest = 1024 + MANIFEST_BYTES_PER_FILE * files as u64;
    let uncompressed = crate::pricing::estimate::tar_size(&[hook, manifest]);
    LayerEstimate {
        what: "volume manifest and prefetch hook".into(),
        uncompressed,
        compressed: (uncompressed as f64 * HOOK_LAYER_RATIO) as u64,
        codec: Codec::Gzip,
        exact: false,
        // The hook, the manifest, their directories and the app-path links.
        entries: 8,
    }
}

/// The two registry-cache rebuilds of [`OptionPlan`]. Unchanged layers are
/// skipped at push (the registry has them), so only a changed split is pushed.
fn ci_rebuilds(
    local_layers: &[PullLayer],
    streamed_layers: &[PullLayer],
    remote_baked: &[u64],
    hook_layer: Option<&LayerEstimate>,
    params: &Params,
) -> (BuildTerms, BuildTerms) {
    let mut written: Vec<PullLayer> = local_layers.to_vec();
    written.extend(hook_layer.map(PullLayer::from));
    let unchanged = BuildTerms { push: 0.0, ..model::build_seconds(&[], &[], &written, params) };
    let largest_file = remote_baked.iter().copied().max();
    let largest_layer = streamed_layers.iter().max_by_key(|l| l.uncompressed).copied();
    let changed = match (largest_file, largest_layer) {
        (Some(file), Some(layer)) => {
            let fetched = model::build_seconds(&[file], &[layer], &[layer], params);
            BuildTerms { layers: fetched.layers + unchanged.layers, ..fetched }
        }
        _ => unchanged,
    };
    (unchanged, changed)
}

/// The base's layers as a new node pulls them: as looked up, else the
/// profile's default base (none for `scratch`).
pub fn base_layers(base: &super::inputs::BaseInput, params: &Params) -> Vec<LayerEstimate> {
    if base.layers.is_empty() && base.image != "scratch" {
        vec![default_base(params)]
    } else {
        base.layers.clone()
    }
}

pub fn option_plan(name: &'static str, inputs: &PlanInputs, placements: &[Placement], params: &Params) -> OptionPlan {
    let mut shared: Vec<LayerEstimate> = base_layers(&inputs.base, params);
    shared.extend(inputs.dependency_layers.iter().cloned());
    let cached_count = shared.len();
    let mut layers = shared;
    layers.push(inputs.app.clone());
    let (mut baked, mut on_volume) = (0u64, 0u64);
    let (mut volume_files, mut remote_baked): (Vec<u64>, Vec<u64>) = (Vec::new(), Vec::new());
    let mut weights_layers = Vec::new();
    // The layers that remote weights are streamed into (written while they arrive).
    let mut streamed_layers = Vec::new();
    // Layers a registry-cache rebuild still writes: app files, local weights.
    let mut local_layers = vec![PullLayer::from(&inputs.app)];
    // Artifact layers: uncompressed, pulled by a new node beside the image
    // and kept by it across app rebuilds.
    let mut artifact_layers: Vec<LayerEstimate> = Vec::new();
    let mut in_artifacts = 0u64;
    for (weights, placement) in inputs.weights.iter().zip(placements) {
        match placement {
            Placement::Artifact => {
                baked += weights.bytes;
                in_artifacts += weights.bytes;
                let layers: Vec<LayerEstimate> = weights
                    .layers
                    .iter()
                    .map(|l| LayerEstimate { compressed: l.uncompressed, codec: Codec::None, ..l.clone() })
                    .collect();
                if weights.local {
                    local_layers.extend(layers.iter().map(PullLayer::from));
                } else {
                    remote_baked.extend(&weights.file_sizes);
                    streamed_layers.extend(layers.iter().map(PullLayer::from));
                }
                artifact_layers.extend(layers);
            }
            Placement::Bake => {
                baked += weights.bytes;
                if weights.local {
                    local_layers.extend(weights.layers.iter().map(PullLayer::from));
                } else {
                    remote_baked.extend(&weights.file_sizes);
                    streamed_layers.extend(weights.layers.iter().map(PullLayer::from));
                }
                weights_layers.extend(weights.layers.iter().cloned());
            }
            Placement::Volume => {
                on_volume += weights.bytes;
                volume_files.extend(&weights.file_sizes);
            }
        }
    }
    layers.extend(weights_layers.iter().cloned());
    let hook_layer =
        (on_volume > 0 || placements.contains(&Placement::Volume)).then(|| volume_layer(volume_files.len(), params));
    layers.extend(hook_layer.iter().cloned());

    let image_compressed = layers.iter().map(|l| l.compressed).sum();
    let image_uncompressed = layers.iter().map(|l| l.uncompressed).sum();
    let pull: Vec<PullLayer> = layers.iter().map(PullLayer::from).collect();
    let artifact_bytes: u64 = artifact_layers.iter().map(|l| l.compressed).sum();
    // A new node pulls the artifacts with the image (the kubelet with
    // parallel image pulls); a node that has them keeps them.
    let pull_new: Vec<PullLayer> = pull.iter().copied().chain(artifact_layers.iter().map(PullLayer::from)).collect();
    let shared_volume = super::shared_volume(inputs, params);
    // Every scenario pulls the weights' layers, so baked weights were just unpacked.
    let warm =
        WeightsAtStart { baked, volume: on_volume, volume_files, volume_warm: shared_volume, baked_unpacked: true };
    let cold = WeightsAtStart { volume_warm: false, ..warm.clone() };
    let volume_label = if on_volume == 0 {
        ""
    } else if shared_volume {
        ", warm volume"
    } else {
        ", per-replica volume"
    };
    let scenario = |id, label: String, terms: Terms| Scenario { id, label, total: terms.total(), terms };
    // After an app deploy the node has the base, the dependencies and the
    // artifacts: the layers above them are pulled (and their weights just
    // unpacked); an artifact's files were unpacked by an earlier start and
    // are read from disk.
    let kept = WeightsAtStart { baked: baked - in_artifacts, ..warm.clone() };
    let mut after_deploy = model::cold_start(&pull[cached_count..], &kept, &inputs.imports, params);
    after_deploy.load += in_artifacts as f64 / params.disk_read;
    let mut cold_starts = vec![
        scenario(
            "new_node",
            format!("new node{volume_label}"),
            model::cold_start(&pull_new, &warm, &inputs.imports, params),
        ),
        scenario("cached_base", format!("base+deps cached{volume_label}"), after_deploy),
    ];
    if on_volume > 0 && shared_volume {
        cold_starts.push(scenario(
            "cold_volume",
            "new node, cold volume".into(),
            model::cold_start(&pull_new, &cold, &inputs.imports, params),
        ));
    }

    let mut new_layers: Vec<PullLayer> = pull[cached_count..].to_vec();
    new_layers.extend(artifact_layers.iter().map(PullLayer::from));
    let build = model::build_seconds(&remote_baked, &streamed_layers, &new_layers, params);
    let (ci_rebuild_unchanged, ci_rebuild_weights_file) =
        ci_rebuilds(&local_layers, &streamed_layers, &remote_baked, hook_layer.as_ref(), params);
    let push_weights_change = weights_layers.iter().map(|l| l.compressed).sum::<u64>()
        + hook_layer.as_ref().map(|l| l.compressed).unwrap_or(0)
        + artifact_bytes;
    let mut replica_counts = vec![inputs.min_replicas.max(1), inputs.max_replicas.max(1)];
    replica_counts.dedup();
    let storage = replica_counts
        .into_iter()
        .map(|replicas| Storage {
            replicas,
            registry: image_compressed + artifact_bytes,
            // An artifact's blobs and its unpacked copy, like the image's.
            nodes: replicas as u64 * (image_compressed + image_uncompressed + 2 * artifact_bytes),
            volume: if shared_volume { on_volume } else { on_volume * replicas as u64 },
        })
        .collect();
    OptionPlan {
        name,
        placements: inputs
            .weights
            .iter()
            .zip(placements)
            .map(|(w, p)| Placed { origin: w.origin.clone(), placement: *p })
            .collect(),
        image_compressed,
        image_uncompressed,
        volume_bytes: on_volume,
        artifact_bytes,
        push_code_change: inputs.app.compressed,
        push_weights_change,
        cold_starts,
        build_seconds: build.total(),
        build,
        ci_rebuild_unchanged,
        ci_rebuild_weights_file,
        storage,
        layers,
    }
}

#[cfg(test)]
mod tests {
    //! `compression = "auto"` (layout/compression.rs) against this module's
    //! new-node scenario: plan and build agree on codecs, and the codecs
    //! auto picks give the lowest predicted cold start.
    use super::*;
    use crate::cost::inputs::{from_plan, BaseInput, LockState};
    use crate::layout::compression::{CodecTarget, TIE_FRACTION, TIE_SECONDS};
    use crate::layout::LayoutFacts;
    use crate::pricing::estimate::codec_of;
    use crate::pricing::profile::Profile;
    use crate::spec::Spec;

    /// A project with `weights` bytes of bf16-like weights (a sparse file
    /// after the sampled first 8 MiB) and, `with_torch`, a torch-sized wheel.
    fn project(weights: u64, with_torch: bool) -> (tempfile::TempDir, Spec, crate::lock::Lock) {
        let dir = tempfile::tempdir().unwrap();
        let model = dir.path().join("weights/model.safetensors");
        std::fs::create_dir_all(model.parent().unwrap()).unwrap();
        std::fs::create_dir_all(dir.path().join("project")).unwrap();
        std::fs::write(&model, crate::cost::calibrate::bf16_like(8 << 20, 1)).unwrap();
        std::fs::File::options().write(true).open(&model).unwrap().set_len(weights).unwrap();
        let pip = if with_torch { "[cerebrium.dependencies.pip]\ntorch = \"2.5.1\"\n" } else { "" };
        let config = format!(
            "[cerebrium.deployment]\nname = \"w\"\n{pip}[[imgbake.weights]]\nsource = \"{}\"\nmount = \"m\"\nmode = \"bake\"\n",
            model.parent().unwrap().display()
        );
        std::fs::write(dir.path().join("project/cerebrium.toml"), &config).unwrap();
        let spec = crate::config::spec_of(dir.path().join("project/cerebrium.toml").to_str().unwrap(), &config);
        let lock: crate::lock::Lock = serde_json::from_value(serde_json::json!({
            "version": crate::lock::LOCK_VERSION,
            "inputs": {"base": "", "python_version": "3.11", "installer": "uv", "pip": [], "apt": [], "conda": [],
                       "conda_channels": [], "weights": []},
            "base": {"image": ""},
            "python": {"installer": "uv",
                       "target": {"python_version": "3.11", "platform": "", "interpreter": "", "site_packages": ""},
                       "packages": [{"name": "torch", "version": "2.5.1", "url": "", "sha256": "", "size": 800_000_000u64}]},
            "weights": []
        }))
        .unwrap();
        let lock = crate::lock::Lock { python: lock.python.filter(|_| with_torch), ..lock };
        (dir, spec, lock)
    }

    fn base() -> BaseInput {
        let layer = LayerEstimate {
            what: "base layer 1".into(),
            uncompressed: 80_000_000,
            compressed: 30_000_000,
            codec: Codec::Gzip,
            exact: true,
            entries: 2_000,
        };
        BaseInput { image: "base".into(), layers: vec![layer], source: "test".into() }
    }

    /// The plan's cold start on a new node of the image laid out under `profile`.
    fn new_node_seconds(spec: &Spec, lock: &crate::lock::Lock, profile: &Profile) -> (f64, Vec<(String, Codec)>) {
        let base_layers: Vec<PullLayer> = base().layers.iter().map(PullLayer::from).collect();
        let hook = std::path::Path::new("/bin/sh");
        let facts = LayoutFacts {
            lock: Some(lock),
            sources: &[],
            rootfs: None,
            hook,
            target: CodecTarget { profile, base_layers: &base_layers },
        };
        let plan = crate::layout::layout(spec, &facts, &Default::default()).unwrap();
        let state = LockState { lock: Some(lock), current: true };
        let inputs = from_plan(spec, &plan, &[], base(), state, 0.85);
        let bake = option_plan("bake", &inputs, &[Placement::Bake], &profile.params);
        let codecs = plan.layers.iter().map(|l| (l.name.clone(), codec_of(l.compression))).collect();
        (bake.scenario("new_node").unwrap().total, codecs)
    }

    #[test]
    fn auto_picks_the_codec_with_the_lowest_predicted_cold_start() {
        // Issue 23: for each codec a target may favour, 256 MiB and 1 GiB of
        // bf16-like weights and a torch-sized wheel layer, the image `auto`
        // lays out starts no slower (by the plan's own numbers) than the
        // same image with any one codec forced.
        let cerebrium = crate::pricing::profile::builtin("cerebrium").unwrap();
        let generic = crate::pricing::profile::builtin("generic").unwrap();
        let mut slow_network = generic.clone();
        slow_network.params.registry_bandwidth = 20e6;
        slow_network.params.layer_bandwidth = 10e6;
        slow_network.params.unpack_gzip = 400e6;
        // (profile, weights codec alone, torch's codec beside them)
        let cases = [
            (&cerebrium, Codec::Zstd, Codec::Zstd),
            (&generic, Codec::None, Codec::Gzip),
            (&slow_network, Codec::Gzip, Codec::Gzip),
        ];
        for (weights, with_torch) in [(256u64 << 20, false), (1 << 30, false), (256 << 20, true), (1 << 30, true)] {
            let (_dir, mut spec, lock) = project(weights, with_torch);
            for (profile, weights_alone, torch_codec) in cases {
                let case = format!("{} MiB, torch {with_torch}, profile {}", weights >> 20, profile.name);
                spec.compression = crate::spec::Compression::Auto;
                let (auto, codecs) = new_node_seconds(&spec, &lock, profile);
                let codec_of = |prefix: &str| codecs.iter().find(|(name, _)| name.starts_with(prefix)).map(|l| l.1);
                if with_torch {
                    assert_eq!(codec_of("python torch"), Some(torch_codec), "{case}: {codecs:?}");
                } else {
                    assert_eq!(codec_of("weights"), Some(weights_alone), "{case}: {codecs:?}");
                }
                for codec in profile.runtime_codecs.clone() {
                    spec.compression = match codec {
                        Codec::Gzip => crate::spec::Compression::Gzip,
                        Codec::Zstd => crate::spec::Compression::Zstd,
                        Codec::None => crate::spec::Compression::None,
                    };
                    let (forced, _) = new_node_seconds(&spec, &lock, profile);
                    let tolerance = forced * TIE_FRACTION + TIE_SECONDS * codecs.len() as f64;
                    assert!(auto <= forced + tolerance, "{case}: auto {auto:.2} s, all {codec:?} {forced:.2} s");
                }
            }
        }
    }

    #[test]
    fn a_runtime_without_zstd_never_gets_zstd_unless_forced() {
        let (_dir, mut spec, lock) = project(64 << 20, true);
        let generic = crate::pricing::profile::builtin("generic").unwrap();
        let (_, codecs) = new_node_seconds(&spec, &lock, &generic);
        assert!(codecs.iter().all(|(_, codec)| *codec != Codec::Zstd), "{codecs:?}");
        spec.compression = crate::spec::Compression::Zstd;
        let (_, codecs) = new_node_seconds(&spec, &lock, &generic);
        assert!(codecs.iter().all(|(_, codec)| *codec == Codec::Zstd), "{codecs:?}");
    }
}
