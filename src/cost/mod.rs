//! The cost model: what baking weights costs against keeping them on a
//! volume, for one deployment. `inputs` prices an ImagePlan (every source
//! baked) into sizes, `pricing::model` (below the layout, which reads it
//! too) turns sizes into seconds, `options` lays out each option's image
//! and scenarios, `decision` picks per weights source, `report` renders. [`placements`] is how `mode = "auto"` is decided for
//! `build`, `plan` and `dockerfile` alike.

pub mod calibrate;
pub mod decision;
pub mod inputs;
pub mod options;
pub mod report;

use crate::pricing::estimate::{Codec, LayerEstimate};
use crate::pricing::profile::{self, Profile};
use inputs::PlanInputs;
use serde::Serialize;

/// Version of the JSON document (`schema` field); bump on any breaking change.
pub const PLAN_SCHEMA: &str = "imgbake.plan/v1";

pub use crate::layout::Placement;

/// One assumption the numbers rest on, with its source.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Assumption {
    pub key: String,
    pub value: f64,
    pub source: String,
}

/// The whole plan: what every report renders, and what build's auto mode reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Plan {
    pub schema: &'static str,
    pub name: String,
    pub config: String,
    pub target: crate::spec::Target,
    pub profile: String,
    pub shared_volume: bool,
    pub min_replicas: u32,
    pub max_replicas: u32,
    pub cold_starts_per_week: f64,
    pub weights_updates_per_week: f64,
    pub base: inputs::BaseInput,
    /// Every weights source as gathered: files, bytes, compressibility and its source, layers when baked.
    pub sources: Vec<inputs::WeightsInput>,
    /// pip/apt/conda layers (empty until imgbake.lock is wired in).
    pub dependency_layers: Vec<LayerEstimate>,
    pub decisions: Vec<decision::Decision>,
    pub options: Vec<options::OptionPlan>,
    /// The image `build` makes with these decisions: its new layers in order.
    pub layers: Vec<PlannedLayerView>,
    pub notes: Vec<String>,
    pub assumptions: Vec<Assumption>,
    /// The layer codecs the target's runtime unpacks (`compression = "auto"` chooses among them).
    pub runtime_codecs: RuntimeCodecs,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RuntimeCodecs {
    pub codecs: Vec<Codec>,
    pub source: String,
}

/// Cold starts a week implied by min_replicas (0 = scale to zero).
pub fn cold_starts_per_week(inputs: &PlanInputs, params: &profile::Params) -> f64 {
    if inputs.min_replicas == 0 {
        params.cold_starts_per_week_scale_to_zero
    } else {
        params.cold_starts_per_week_warm_pool
    }
}

/// True when replicas share one volume that stays filled: the target lays
/// weights out on a shared volume (all but Baseten) and the profile's
/// volume is one (`volume_shared`; Kubernetes' emptyDir is not).
pub fn shared_volume(inputs: &PlanInputs, params: &profile::Params) -> bool {
    inputs.target.has_shared_volume() && params.volume_shared >= 0.5
}

pub fn updates_per_week(inputs: &PlanInputs, params: &profile::Params) -> f64 {
    inputs.weights_updates_per_week.unwrap_or(params.default_updates_per_week)
}

/// The plan for `inputs` under `profile` (pure); `layers` are the final
/// ImagePlan's.
pub fn plan(inputs: &PlanInputs, profile: &Profile, layers: Vec<PlannedLayerView>) -> Plan {
    let params = &profile.params;
    let decisions = decision::decide(inputs, params);
    let bake: Vec<Placement> = inputs.weights.iter().map(|_| Placement::Bake).collect();
    let volume: Vec<Placement> =
        inputs.weights.iter().map(|w| if w.local { Placement::Bake } else { Placement::Volume }).collect();
    let auto: Vec<Placement> = decisions.iter().map(|d| d.chosen).collect();
    let mut options = vec![
        options::option_plan("bake", inputs, &bake, params),
        options::option_plan("volume", inputs, &volume, params),
    ];
    let image_volumes = decision::mounts_image_volumes(params);
    if image_volumes {
        // Every source that can be one as a ModelPack artifact, the rest baked.
        let artifact: Vec<Placement> = inputs
            .weights
            .iter()
            .map(|w| if w.artifact_blocker.is_none() { Placement::Artifact } else { Placement::Bake })
            .collect();
        options.push(options::option_plan("artifact", inputs, &artifact, params));
    }
    options.push(options::option_plan("auto", inputs, &auto, params));
    let mut notes = inputs.notes.clone();
    if inputs.base.layers.is_empty() && inputs.base.image != "scratch" {
        notes.push(format!(
            "base image {}: size unknown ({}); using default_base_compressed/uncompressed",
            inputs.base.image, inputs.base.source
        ));
    }
    for weights in &inputs.weights {
        if weights.mode == crate::spec::WeightsMode::Artifact && !image_volumes {
            notes.push(format!(
                "{}: mode = \"artifact\", but the {} profile's nodes do not mount image volumes (image_volumes = 0): \
                 the artifact runs only on a Kubernetes cluster that has them (plan with --profile kubernetes)",
                weights.origin, profile.name
            ));
        }
        if let (Some(blocker), true) = (&weights.artifact_blocker, image_volumes) {
            notes.push(format!("{blocker}; the artifact option bakes it"));
        }
        if let (Some(blocker), false) = (&weights.volume_blocker, weights.local) {
            notes.push(format!(
                "{}: cannot be kept on a volume ({blocker}); the volume option shows what it would cost",
                weights.origin
            ));
        }
    }
    let assumptions = profile::Params::keys()
        .map(|key| Assumption {
            key: key.to_string(),
            value: params.get(key).unwrap_or(0.0),
            source: profile.sources.get(key).cloned().unwrap_or_else(|| "unknown".to_string()),
        })
        .collect();
    Plan {
        schema: PLAN_SCHEMA,
        name: inputs.name.clone(),
        config: inputs.config.clone(),
        target: inputs.target,
        profile: profile.name.clone(),
        shared_volume: shared_volume(inputs, params),
        min_replicas: inputs.min_replicas,
        max_replicas: inputs.max_replicas,
        cold_starts_per_week: cold_starts_per_week(inputs, params),
        weights_updates_per_week: updates_per_week(inputs, params),
        base: inputs.base.clone(),
        sources: inputs.weights.clone(),
        dependency_layers: inputs.dependency_layers.clone(),
        decisions,
        options,
        layers,
        notes,
        assumptions,
        runtime_codecs: RuntimeCodecs {
            codecs: profile.runtime_codecs.clone(),
            source: profile.sources.get(profile::RUNTIME_CODECS).cloned().unwrap_or_else(|| "unknown".to_string()),
        },
    }
}

/// The profile for `spec`'s target, or the one named; hook bytes filled in.
pub fn profile_for(spec: &crate::spec::Spec, named: Option<&profile::Profile>) -> profile::Profile {
    let mut profile = match named {
        Some(profile) => profile.clone(),
        None => profile::builtin(spec.target.name.as_str()).expect("every target has a profile"),
    };
    profile::resolve_hook_bytes(&mut profile);
    profile
}

/// The placement of every weights entry whose mode is `auto`, decided by
/// pricing `bake` (the ImagePlan with every source baked) both ways per
/// source; with each decision's sentence.
pub fn placements(inputs: &PlanInputs, profile: &profile::Profile) -> Vec<decision::Decision> {
    decision::decide(inputs, &profile.params)
        .into_iter()
        .filter(|d| d.configured == crate::spec::WeightsMode::Auto)
        .collect()
}

/// The final layers of an image, as `plan --format json` lists them (the
/// same names, files and sizes `build --json` reports).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PlannedLayerView {
    pub what: String,
    pub codec: Codec,
    /// How the codec was chosen, with each alternative's pull and unpack.
    pub codec_choice: Option<crate::layout::compression::CodecChoice>,
    /// `(image path, bytes)` of its regular files, when the layout knows them.
    pub paths: Option<Vec<(String, u64)>>,
}

pub fn layer_views(spec: &crate::spec::Spec, plan: &crate::layout::ImagePlan) -> Vec<PlannedLayerView> {
    plan.layers
        .iter()
        .map(|layer| PlannedLayerView {
            what: layer.name.clone(),
            codec: crate::pricing::estimate::codec_of(layer.compression),
            codec_choice: layer.codec_choice.clone(),
            paths: layer.files(spec, plan.volume.as_ref()),
        })
        .collect()
}
