//! The one ImagePlan every command reads: resolved facts → `mode = "auto"`
//! decided by the cost model (the ImagePlan with every source baked,
//! priced both ways per source) → the final layout. `build` executes it,
//! `dockerfile` renders it, `plan` reports it.

use crate::cost::decision::Decision;
use crate::cost::inputs::{BaseInput, LockState, PlanInputs};
use crate::layout::compression::CodecTarget;
use crate::layout::{self, ImagePlan, LayoutError, LayoutFacts, Placement, Placements};
use crate::pricing::model::PullLayer;
use crate::pricing::profile::Profile;
use crate::spec::{Spec, WeightsMode, WeightsSource};

/// The final ImagePlan, and what the cost model saw to decide it.
pub struct Decided {
    pub plan: ImagePlan,
    /// `None` when nothing was priced (no `auto` entry and no report asked for).
    pub inputs: Option<PlanInputs>,
    pub decisions: Vec<Decision>,
}

/// Whether any remote weights entry is `mode = "auto"` (a local one always bakes).
pub fn has_auto(spec: &Spec) -> bool {
    spec.weights.iter().any(|e| e.mode == WeightsMode::Auto && !matches!(e.source, WeightsSource::Local { .. }))
}

/// Lays out the image, deciding every `auto` entry with the cost model
/// under `profile`. `price` forces pricing even without `auto` entries
/// (for the plan report); `writes_layers` says the layers' codecs matter
/// (build), so that `compression = "auto"` prices them with the base.
pub fn decide(
    spec: &Spec,
    facts: &LayoutFacts,
    base: impl FnOnce() -> BaseInput,
    lock: LockState,
    profile: &Profile,
    price: bool,
    writes_layers: bool,
) -> Result<Decided, LayoutError> {
    let codecs_matter = writes_layers && spec.compression == crate::spec::Compression::Auto;
    let base = (price || has_auto(spec) || codecs_matter).then(base);
    let base_layers: Vec<PullLayer> = base
        .as_ref()
        .map(|b| crate::cost::options::base_layers(b, &profile.params).iter().map(PullLayer::from).collect())
        .unwrap_or_default();
    let facts = LayoutFacts { target: CodecTarget { profile, base_layers: &base_layers }, ..*facts };
    let Some(base) = base.filter(|_| price || has_auto(spec)) else {
        let plan = layout::layout(spec, &facts, &Placements::new())?;
        return Ok(Decided { plan, inputs: None, decisions: Vec::new() });
    };
    let all_baked: Placements = spec.weights.iter().map(|e| (e.origin.clone(), Placement::Bake)).collect();
    let baked = layout::layout(spec, &facts, &all_baked)?;
    let inputs =
        crate::cost::inputs::from_plan(spec, &baked, facts.sources, base, lock, profile.params.remote_weights_ratio);
    let decisions = crate::cost::placements(&inputs, profile);
    let placements: Placements = decisions.iter().map(|d| (d.origin.clone(), d.chosen)).collect();
    let mut plan = layout::layout(spec, &facts, &placements)?;
    for placed in &mut plan.placements {
        placed.reason = decisions.iter().find(|d| d.origin == placed.origin).map(|d| d.reason.clone());
    }
    Ok(Decided { plan, inputs: Some(inputs), decisions })
}
