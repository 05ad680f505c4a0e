//! Bake, volume or artifact, per weights source: compares the expected
//! seconds a week each placement costs (cold starts × start time, weights
//! updates × rebuild and refill, app deploys × restarts on nodes that keep
//! the base and dependencies), honours explicit modes, and says in one
//! sentence which term decided. Artifact is a candidate only where the
//! profile's nodes mount image volumes (`image_volumes = 1`).

use super::inputs::PlanInputs;
use super::options::{option_plan, OptionPlan};
use super::{cold_starts_per_week, updates_per_week, Placement};
use crate::pricing::profile::Params;
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
    /// The cheaper placement by the model (what `auto` would pick if it were available).
    pub preferred: Placement,
    /// What build does: the configured mode, else the preferred one when available.
    pub chosen: Placement,
    /// Expected seconds a week with this source baked / on a volume.
    pub bake_seconds_per_week: f64,
    pub volume_seconds_per_week: f64,
    /// New-node cold start with it baked / on a volume (warm when the volume is shared).
    pub bake_new_node: f64,
    pub volume_new_node: f64,
    /// The same as a ModelPack artifact, when the profile's nodes mount
    /// image volumes or the source is configured so.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_seconds_per_week: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_new_node: Option<f64>,
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

/// Bytes in decimal units (the one formatter, in plumbing).
pub use crate::plumbing::units::human_bytes as size;

fn rate(per_week: f64) -> String {
    let text = format!("{per_week:.2}");
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text}×/week")
}

/// True when the profile's nodes mount ModelPack artifacts (image volumes).
pub fn mounts_image_volumes(params: &Params) -> bool {
    params.image_volumes >= 0.5
}

/// One placement of one source, priced: the terms of its weekly cost.
struct Priced {
    placement: Placement,
    new_node: f64,
    /// Seconds per weights update: rebuild and push, plus a shared volume's refill.
    update: f64,
    /// The start of one replica after an app deploy (base and dependencies cached).
    after_deploy: f64,
    week: f64,
}

/// How often things happen in a week, the same for every placement.
struct Rates {
    starts: f64,
    updates: f64,
    deploys: f64,
    /// Replicas each deploy restarts.
    restarts: f64,
}

fn price(placement: Placement, plan: &OptionPlan, shared: bool, rates: &Rates) -> Priced {
    let total = |id| plan.scenario(id).map(|s| s.total).unwrap_or(0.0);
    let new_node = total("new_node");
    let refill = if shared && placement == Placement::Volume { total("cold_volume") - new_node } else { 0.0 };
    let update = refill + plan.build_seconds;
    let after_deploy = total("cached_base");
    let week = rates.starts * new_node + rates.updates * update + rates.deploys * rates.restarts * after_deploy;
    Priced { placement, new_node, update, after_deploy, week }
}

/// How a sentence names a placement's start.
fn start_words(placement: Placement, shared: bool) -> &'static str {
    match placement {
        Placement::Bake => "with it baked",
        Placement::Volume if shared => "with it on a warm volume",
        Placement::Volume => "with it on a per-replica volume that starts empty",
        Placement::Artifact => "with it as a ModelPack artifact",
    }
}

fn update_words(placement: Placement) -> &'static str {
    match placement {
        Placement::Bake => "of rebuild and push baked",
        Placement::Volume => "of volume refill and rebuild",
        Placement::Artifact => "of artifact rebuild and push",
    }
}

fn week_words(placement: Placement) -> &'static str {
    match placement {
        Placement::Bake => "baked",
        Placement::Volume => "on a volume",
        Placement::Artifact => "as an artifact",
    }
}

/// The sentence of the term with the largest share of the weekly
/// difference between `one` and `other` (written in placement order).
fn deciding_term(one: &Priced, other: &Priced, rates: &Rates, shared: bool, min_replicas: u32) -> String {
    let order = |p: Placement| match p {
        Placement::Bake => 0,
        Placement::Volume => 1,
        Placement::Artifact => 2,
    };
    let (a, b) = if order(one.placement) <= order(other.placement) { (one, other) } else { (other, one) };
    let start_term = rates.starts * (b.new_node - a.new_node);
    let update_term = rates.updates * (b.update - a.update);
    let deploy_term = rates.deploys * rates.restarts * (b.after_deploy - a.after_deploy);
    let largest = start_term.abs().max(update_term.abs()).max(deploy_term.abs());
    if start_term.abs() >= largest {
        format!(
            "a new node starts in ~{} {} vs ~{} {} ({} cold starts, min_replicas = {min_replicas})",
            seconds(a.new_node),
            start_words(a.placement, shared),
            seconds(b.new_node),
            start_words(b.placement, shared),
            rate(rates.starts),
        )
    } else if update_term.abs() >= largest {
        format!(
            "each weights update ({}) costs ~{} {} vs ~{} {}",
            rate(rates.updates),
            seconds(a.update),
            update_words(a.placement),
            seconds(b.update),
            update_words(b.placement)
        )
    } else {
        format!(
            "each app deploy ({}) restarts {} replica(s) on nodes with the base and dependencies: ~{} {} vs ~{} {}{}",
            rate(rates.deploys),
            rates.restarts,
            seconds(a.after_deploy),
            start_words(a.placement, shared),
            seconds(b.after_deploy),
            start_words(b.placement, shared),
            if b.placement == Placement::Artifact { " kept on the node" } else { "" }
        )
    }
}

/// The cheapest of `candidates` (the first on a tie).
fn cheapest<'a>(candidates: impl IntoIterator<Item = &'a Priced>) -> Option<&'a Priced> {
    candidates.into_iter().fold(None, |best: Option<&Priced>, next| match best {
        Some(best) if best.week <= next.week => Some(best),
        _ => Some(next),
    })
}

pub fn decide(inputs: &PlanInputs, params: &Params) -> Vec<Decision> {
    // Every other source stays where its config puts it (auto counts as bake)
    // while one source is compared in each placement.
    let baseline: Vec<Placement> = inputs
        .weights
        .iter()
        .map(|w| match w.mode {
            WeightsMode::Artifact => Placement::Artifact,
            WeightsMode::Volume if !w.local => Placement::Volume,
            _ => Placement::Bake,
        })
        .collect();
    let rates = Rates {
        starts: cold_starts_per_week(inputs, params),
        updates: updates_per_week(inputs, params),
        deploys: params.app_deploys_per_week,
        restarts: inputs.min_replicas.max(1) as f64,
    };
    let shared = super::shared_volume(inputs, params);
    let image_volumes = mounts_image_volumes(params);
    inputs
        .weights
        .iter()
        .enumerate()
        .map(|(index, weights)| {
            let priced = |placement: Placement, name: &'static str| {
                let mut placements = baseline.clone();
                placements[index] = placement;
                price(placement, &option_plan(name, inputs, &placements, params), shared, &rates)
            };
            let bake = priced(Placement::Bake, "bake");
            let volume = priced(Placement::Volume, "volume");
            let artifact_candidate = image_volumes && weights.artifact_blocker.is_none();
            let artifact = (artifact_candidate || weights.mode == WeightsMode::Artifact)
                .then(|| priced(Placement::Artifact, "artifact"));
            // What the model weighs: bake, volume for a remote source, artifact where it can be mounted.
            let candidates: Vec<&Priced> =
                [Some(&bake), (!weights.local).then_some(&volume), artifact.as_ref().filter(|_| artifact_candidate)]
                    .into_iter()
                    .flatten()
                    .collect();
            let preferred = cheapest(candidates.iter().copied()).expect("bake is always a candidate");
            // What auto may take: a volume that cannot be built is not available.
            let blocked = |p: &&Priced| p.placement == Placement::Volume && weights.volume_blocker.is_some();
            let available = cheapest(candidates.iter().copied().filter(|p| !blocked(p))).expect("bake is available");
            let chosen = match (weights.mode, &weights.volume_blocker) {
                (WeightsMode::Artifact, _) => Placement::Artifact,
                (WeightsMode::Auto, _) => available.placement,
                (_, Some(_)) if weights.local => Placement::Bake,
                (WeightsMode::Bake, _) => Placement::Bake,
                (WeightsMode::Volume, _) => Placement::Volume,
            };
            let chosen_priced = candidates.iter().copied().find(|p| p.placement == chosen);
            let why = match (weights.local, artifact_candidate) {
                // A local directory configured as an artifact: there was nothing to weigh.
                (true, false) if chosen == Placement::Artifact => String::new(),
                (true, false) => weights.volume_blocker.clone().unwrap_or_default(),
                (false, false) => deciding_term(&bake, &volume, &rates, shared, inputs.min_replicas),
                // The winner against its runner-up.
                (_, true) => {
                    let winner = chosen_priced.unwrap_or(preferred);
                    let others = candidates.iter().copied().filter(|p| p.placement != winner.placement);
                    cheapest(others)
                        .map(|other| deciding_term(winner, other, &rates, shared, inputs.min_replicas))
                        .unwrap_or_default()
                }
            };
            let configured = if weights.mode == WeightsMode::Auto || weights.local { "" } else { " (configured)" };
            let mut reason = format!("{}{configured}: {} ({})", chosen.as_str(), weights.origin, size(weights.bytes));
            if !why.is_empty() {
                reason.push_str(&format!("; {why}"));
            }
            if candidates.len() > 1 {
                let weeks: Vec<String> = candidates
                    .iter()
                    .map(|p| format!("~{}/week {}", seconds(p.week), week_words(p.placement)))
                    .collect();
                reason.push_str(&format!("; {}", weeks.join(" vs ")));
                match (weights.mode, &weights.volume_blocker, chosen_priced) {
                    (WeightsMode::Auto, Some(blocker), _) if preferred.placement == Placement::Volume => {
                        reason.push_str(&format!("; volume would be cheaper but {blocker}"))
                    }
                    // A configured placement the model weighed (not an artifact where none can be mounted).
                    (WeightsMode::Bake | WeightsMode::Volume | WeightsMode::Artifact, _, Some(priced))
                        if chosen != preferred.placement
                            && priced.week - preferred.week > NEGLIGIBLE * preferred.week =>
                    {
                        reason.push_str(&format!(
                            "; the configured mode {} costs ~{}/week more than {}",
                            chosen.as_str(),
                            seconds(priced.week - preferred.week),
                            preferred.placement.as_str()
                        ))
                    }
                    _ => {}
                }
            }
            if chosen == Placement::Artifact {
                let new_node = artifact.as_ref().map(|a| a.new_node).unwrap_or_default();
                reason.push_str(&format!(
                    "; as a ModelPack artifact a new node starts in ~{} (pulled beside the image), and a node that \
                     has it pulls no weights byte when the app is rebuilt",
                    seconds(new_node)
                ));
            }
            Decision {
                origin: weights.origin.clone(),
                uri: weights.uri.clone(),
                bytes: weights.bytes,
                configured: weights.mode,
                preferred: preferred.placement,
                chosen,
                bake_seconds_per_week: bake.week,
                volume_seconds_per_week: volume.week,
                bake_new_node: bake.new_node,
                volume_new_node: volume.new_node,
                artifact_seconds_per_week: artifact.as_ref().map(|a| a.week),
                artifact_new_node: artifact.as_ref().map(|a| a.new_node),
                reason,
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::inputs::{BaseInput, WeightsInput};
    use crate::pricing::estimate::{Codec, LayerEstimate};
    use crate::pricing::profile::builtin;
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
                artifact_blocker: None,
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

    fn kubernetes() -> Params {
        let mut params = builtin("kubernetes").unwrap().params;
        params.prefetch_hook_bytes = 20e6;
        params
    }

    /// Five 1 GB shards, baked in five layers (pulled three at a time).
    fn sharded(min_replicas: u32, mode: WeightsMode) -> PlanInputs {
        let mut plan_inputs = inputs(5_000_000_000, min_replicas, Target::Generic, mode);
        plan_inputs.weights[0].layers = (0..5).map(|_| layer("weights m", 1_000_000_000, Codec::None)).collect();
        plan_inputs.weights[0].file_sizes = vec![1_000_000_000; 5];
        plan_inputs
    }

    #[test]
    fn where_nodes_mount_image_volumes_auto_takes_the_artifact_for_its_deploys() {
        let decisions = decide(&sharded(2, WeightsMode::Auto), &kubernetes());
        let decision = &decisions[0];
        assert_eq!(
            (decision.preferred, decision.chosen),
            (Placement::Artifact, Placement::Artifact),
            "{}",
            decision.reason
        );
        let artifact_week = decision.artifact_seconds_per_week.unwrap();
        assert!(artifact_week < decision.bake_seconds_per_week, "{}", decision.reason);
        assert!(artifact_week < decision.volume_seconds_per_week, "{}", decision.reason);
        // Five deploys a week restart two replicas each: baked, each start pulls
        // the 5 GB again (~40 s at 125 MB/s); the artifact stays on the node.
        assert!(
            decision.reason.contains("each app deploy (5×/week) restarts 2 replica(s)"),
            "the deploy term decides: {}",
            decision.reason
        );
        assert!(decision.reason.contains("/week as an artifact"), "{}", decision.reason);
        // A new node pulls the artifact as it pulls baked layers: no faster.
        assert!(decision.artifact_new_node.unwrap() >= decision.bake_new_node * 0.9, "{}", decision.reason);
    }

    #[test]
    fn a_target_without_image_volumes_never_picks_an_artifact() {
        for name in ["cerebrium", "baseten", "runpod", "generic"] {
            let mut params = builtin(name).unwrap().params;
            params.prefetch_hook_bytes = 20e6;
            for min_replicas in [0, 2] {
                let decision = &decide(&sharded(min_replicas, WeightsMode::Auto), &params)[0];
                assert_ne!(decision.preferred, Placement::Artifact, "{name}");
                assert_ne!(decision.chosen, Placement::Artifact, "{name}");
                assert_eq!(decision.artifact_seconds_per_week, None, "{name}");
                assert!(!decision.reason.contains("artifact"), "{name}: {}", decision.reason);
            }
            // Configured, it is kept (the user's choice), without a comparison it cannot win.
            let decision = &decide(&sharded(2, WeightsMode::Artifact), &params)[0];
            assert_eq!(decision.chosen, Placement::Artifact, "{name}");
            assert!(decision.artifact_seconds_per_week.is_some(), "{name}");
            assert!(!decision.reason.contains("costs ~"), "{name}: {}", decision.reason);
        }
    }

    #[test]
    fn an_artifact_blocker_keeps_auto_off_the_artifact() {
        let mut plan_inputs = sharded(2, WeightsMode::Auto);
        plan_inputs.weights[0].artifact_blocker = Some("hf-cache".into());
        let decision = &decide(&plan_inputs, &kubernetes())[0];
        assert_ne!(decision.chosen, Placement::Artifact, "{}", decision.reason);
        assert_eq!(decision.artifact_seconds_per_week, None);
    }

    #[test]
    fn a_local_source_on_kubernetes_is_weighed_between_bake_and_artifact() {
        let mut plan_inputs = sharded(1, WeightsMode::Auto);
        plan_inputs.weights[0].local = true;
        plan_inputs.weights[0].volume_blocker = Some("a local directory is only baked".into());
        let decision = &decide(&plan_inputs, &kubernetes())[0];
        assert_eq!(decision.chosen, Placement::Artifact, "{}", decision.reason);
        assert!(decision.reason.contains("baked vs"), "{}", decision.reason);
        assert!(!decision.reason.contains("on a volume"), "{}", decision.reason);
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
