//! Bake or volume, per weights source: compares the expected seconds a week
//! each placement costs (cold starts × start time, plus volume refills and
//! rebuilds per weights update), honours explicit modes, and says in one
//! sentence which term decided.

use super::inputs::PlanInputs;
use super::options::option_plan;
use super::profile::Params;
use super::{cold_starts_per_week, updates_per_week, Placement};
use crate::spec::WeightsMode;
use serde::Serialize;

/// A difference under 1% of the cheaper option is not worth a sentence.
const NEGLIGIBLE: f64 = 0.01;

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Decision {
    pub origin: String,
    pub uri: String,
    pub bytes: u64,
    pub configured: WeightsMode,
    /// The cheaper placement by the model (what `auto` would pick if volume were available).
    pub preferred: Placement,
    /// What build does: the configured mode, else the preferred one when available.
    pub chosen: Placement,
    /// Expected seconds a week with this source baked / on a volume.
    pub bake_seconds_per_week: f64,
    pub volume_seconds_per_week: f64,
    /// New-node cold start with it baked / on a volume (warm when the volume is shared).
    pub bake_new_node: f64,
    pub volume_new_node: f64,
    pub reason: String,
}

/// Seconds, rounded for a sentence.
pub fn seconds(value: f64) -> String {
    if value >= 10.0 {
        format!("{value:.0} s")
    } else {
        format!("{value:.1} s")
    }
}

/// Bytes in decimal units, as registries and platforms show them.
pub fn size(bytes: u64) -> String {
    let value = bytes as f64;
    if value >= 1e9 {
        format!("{:.1} GB", value / 1e9)
    } else if value >= 1e6 {
        format!("{:.1} MB", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1} kB", value / 1e3)
    } else {
        format!("{bytes} B")
    }
}

fn rate(per_week: f64) -> String {
    let text = format!("{per_week:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}×/week")
}

pub fn decide(inputs: &PlanInputs, params: &Params) -> Vec<Decision> {
    // Every other source stays where its config puts it (auto counts as bake)
    // while one source is compared in both placements.
    let baseline: Vec<Placement> = inputs
        .weights
        .iter()
        .map(|w| match w.mode {
            WeightsMode::Artifact => Placement::Artifact,
            WeightsMode::Volume if !w.local => Placement::Volume,
            _ => Placement::Bake,
        })
        .collect();
    let starts = cold_starts_per_week(inputs, params);
    let updates = updates_per_week(inputs, params);
    let shared = inputs.target.has_shared_volume();
    inputs
        .weights
        .iter()
        .enumerate()
        .map(|(index, weights)| {
            let mut as_bake = baseline.clone();
            as_bake[index] = Placement::Bake;
            let mut as_volume = baseline.clone();
            as_volume[index] = Placement::Volume;
            let bake = option_plan("bake", inputs, &as_bake, params);
            let volume = option_plan("volume", inputs, &as_volume, params);
            let total = |plan: &super::options::OptionPlan, id| plan.scenario(id).map(|s| s.total).unwrap_or(0.0);
            let bake_new = total(&bake, "new_node");
            let volume_new = total(&volume, "new_node");
            let refill = if shared { total(&volume, "cold_volume") - volume_new } else { 0.0 };
            let bake_week = starts * bake_new + updates * bake.build_seconds;
            let volume_week = starts * volume_new + updates * (refill + volume.build_seconds);
            let preferred = if weights.local || volume_week >= bake_week { Placement::Bake } else { Placement::Volume };
            let chosen = match (weights.mode, &weights.volume_blocker) {
                (WeightsMode::Artifact, _) => Placement::Artifact,
                (_, Some(_)) if weights.local => Placement::Bake,
                (WeightsMode::Bake, _) => Placement::Bake,
                (WeightsMode::Volume, _) => Placement::Volume,
                (WeightsMode::Auto, Some(_)) => Placement::Bake,
                (WeightsMode::Auto, None) => preferred,
            };
            let why = if weights.local {
                weights.volume_blocker.clone().unwrap_or_default()
            } else {
                // The term with the largest share of the weekly difference decides.
                let start_term = starts * (volume_new - bake_new);
                let update_term = updates * (refill + volume.build_seconds - bake.build_seconds);
                let per_start = format!(
                    "a new node starts in ~{} with it baked vs ~{} with it on {} ({} cold starts, min_replicas = {})",
                    seconds(bake_new),
                    seconds(volume_new),
                    if shared { "a warm volume" } else { "a per-replica volume that starts empty" },
                    rate(starts),
                    inputs.min_replicas
                );
                let per_update = format!(
                    "each weights update ({}) costs ~{} of rebuild and push baked vs ~{} of volume refill and rebuild",
                    rate(updates),
                    seconds(bake.build_seconds),
                    seconds(refill + volume.build_seconds)
                );
                if start_term.abs() >= update_term.abs() {
                    per_start
                } else {
                    per_update
                }
            };
            let configured = if weights.mode == WeightsMode::Auto || weights.local { "" } else { " (configured)" };
            let mut reason =
                format!("{}{configured}: {} ({}); {why}", chosen.as_str(), weights.origin, size(weights.bytes));
            if !weights.local {
                reason.push_str(&format!(
                    "; ~{}/week baked vs ~{}/week on a volume",
                    seconds(bake_week),
                    seconds(volume_week)
                ));
                let extra = (bake_week - volume_week).abs();
                match (weights.mode, &weights.volume_blocker) {
                    (WeightsMode::Auto, Some(blocker)) if preferred == Placement::Volume => {
                        reason.push_str(&format!("; volume would be cheaper but {blocker}"))
                    }
                    (WeightsMode::Bake | WeightsMode::Volume, _)
                        if chosen != preferred && extra > NEGLIGIBLE * bake_week.min(volume_week) =>
                    {
                        reason.push_str(&format!(
                            "; the configured mode {} costs ~{}/week more than {}",
                            chosen.as_str(),
                            seconds(extra),
                            preferred.as_str()
                        ))
                    }
                    _ => {}
                }
            }
            if chosen == Placement::Artifact {
                let mut as_artifact = baseline.clone();
                as_artifact[index] = Placement::Artifact;
                let artifact = option_plan("artifact", inputs, &as_artifact, params);
                reason.push_str(&format!(
                    "; as a ModelPack artifact a new node starts in ~{} (pulled beside the image), and a node that \
                     has it pulls no weights byte when the app is rebuilt",
                    seconds(total(&artifact, "new_node"))
                ));
            }
            Decision {
                origin: weights.origin.clone(),
                uri: weights.uri.clone(),
                bytes: weights.bytes,
                configured: weights.mode,
                preferred,
                chosen,
                bake_seconds_per_week: bake_week,
                volume_seconds_per_week: volume_week,
                bake_new_node: bake_new,
                volume_new_node: volume_new,
                reason,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::inputs::{BaseInput, Codec, LayerEstimate, WeightsInput};
    use crate::cost::profile::builtin;
    use crate::spec::Target;

    fn layer(what: &str, bytes: u64, codec: Codec) -> LayerEstimate {
        LayerEstimate { what: what.into(), uncompressed: bytes, compressed: bytes, codec, exact: true, entries: 0 }
    }

    fn inputs(weights_bytes: u64, min_replicas: u32, target: Target, mode: WeightsMode) -> PlanInputs {
        PlanInputs {
            name: "t".into(),
            config: "cerebrium.toml".into(),
            target,
            base: BaseInput {
                image: "b".into(),
                layers: vec![layer("base", 500_000_000, Codec::Gzip)],
                source: "test".into(),
            },
            dependency_layers: Vec::new(),
            dependencies_declared: false,
            app: layer("app", 10_000, Codec::Gzip),
            imports: Default::default(),
            weights: vec![WeightsInput {
                origin: "imgbake.weights[0]".into(),
                uri: "hf://org/m@main".into(),
                mount: "m".into(),
                mode,
                local: false,
                files: 1,
                bytes: weights_bytes,
                ratio: 1.0,
                ratio_source: "test".into(),
                layers: vec![layer("weights m", weights_bytes, Codec::None)],
                file_sizes: vec![weights_bytes],
                volume_blocker: None,
            }],
            min_replicas,
            max_replicas: 4,
            weights_updates_per_week: Some(0.5),
            notes: Vec::new(),
        }
    }

    fn params() -> Params {
        let mut params = builtin("cerebrium").unwrap().params;
        params.prefetch_hook_bytes = 20e6;
        params
    }

    #[test]
    fn big_weights_that_scale_to_zero_go_on_a_shared_volume() {
        let decisions = decide(&inputs(14_000_000_000, 0, Target::Cerebrium, WeightsMode::Auto), &params());
        assert_eq!(decisions[0].preferred, Placement::Volume);
        assert_eq!(decisions[0].chosen, Placement::Volume);
        assert!(
            decisions[0].reason.starts_with("volume: imgbake.weights[0] (14.0 GB); a new node"),
            "{}",
            decisions[0].reason
        );
    }

    #[test]
    fn per_replica_volumes_that_start_empty_favour_baking() {
        // Each new replica downloads from the hub at 100 MB/s; baked in three
        // layers it pulls at the node's 125 MB/s (one layer alone would be
        // capped at 60 MB/s per connection and lose).
        let mut plan_inputs = inputs(14_000_000_000, 0, Target::Baseten, WeightsMode::Auto);
        let third = layer("weights m", 14_000_000_000 / 3, Codec::None);
        plan_inputs.weights[0].layers = vec![third.clone(), third.clone(), third];
        plan_inputs.weights[0].file_sizes = vec![14_000_000_000 / 3; 3];
        let decisions = decide(&plan_inputs, &params());
        assert_eq!(decisions[0].chosen, Placement::Bake, "{}", decisions[0].reason);
        assert!(decisions[0].reason.contains("per-replica volume"), "{}", decisions[0].reason);
    }

    #[test]
    fn an_explicit_mode_is_kept_and_its_extra_cost_is_said() {
        let decisions = decide(&inputs(14_000_000_000, 0, Target::Cerebrium, WeightsMode::Bake), &params());
        assert_eq!(decisions[0].chosen, Placement::Bake);
        assert!(decisions[0].reason.contains("the configured mode bake costs"), "{}", decisions[0].reason);
    }

    #[test]
    fn a_blocked_volume_is_not_chosen_by_auto_and_the_reason_says_why() {
        let mut plan_inputs = inputs(14_000_000_000, 0, Target::Cerebrium, WeightsMode::Auto);
        plan_inputs.weights[0].volume_blocker = Some("hf-cache is not supported".into());
        let decisions = decide(&plan_inputs, &params());
        assert_eq!((decisions[0].preferred, decisions[0].chosen), (Placement::Volume, Placement::Bake));
        assert!(decisions[0].reason.contains("volume would be cheaper but hf-cache"), "{}", decisions[0].reason);
    }
}
