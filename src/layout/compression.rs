//! Which compression each planned layer gets. One rule for every layer,
//! read by the native build (it writes that codec) and the cost model (it
//! prices that codec); `plan` shows it per layer with its alternatives.
//!
//! `[imgbake] compression = "gzip" | "zstd" | "none"` forces one codec on
//! every new layer. `auto` (the default) prices each layer in every codec
//! the target's runtime unpacks (the profile's `runtime_codecs`) and keeps
//! the one with which the image is pulled and unpacked soonest on a new
//! node: the cost model's own pull (`pull_concurrency` layers at once, each
//! capped at `layer_bandwidth`, all at `registry_bandwidth`) and serial
//! unpack (`unpack_gzip|zstd|none`, per entry) of the base's layers and all
//! of ours, with this layer in that codec and the others as chosen
//! (`pricing::model`). A layer's blob size in a codec is estimated as the
//! cost model estimates it (`pricing::estimate` from the zstd -1 ratio of a
//! sample of its files, `dependency_sizes` from the lock for dependency
//! layers). Codecs whose times are within [`TIE_SECONDS`] (or
//! [`TIE_FRACTION`]) of the best tie, and the tie goes to the smaller blob,
//! so the smaller image. That the image `auto` lays out starts no slower
//! by the plan's numbers than with any one codec forced is checked where
//! both are visible (`cost::options`' tests).

use super::{ImagePlan, LayerContent, LayoutFacts, PlannedLayer, VolumePlan};
use crate::image::layer::Compression;
use crate::pricing::estimate::{Codec, LayerEstimate};
use crate::pricing::model::{self, PullLayer};
use crate::pricing::profile::Profile;
use crate::spec::{self, Spec};
use serde::Serialize;

/// gzip level of every gzip layer: fixed, so digests never drift.
pub const GZIP_LEVEL: u32 = 6;
pub const GZIP: Compression = Compression::Gzip { level: GZIP_LEVEL };
/// Pull-and-unpack times closer than this many seconds tie…
pub const TIE_SECONDS: f64 = 0.01;
/// …or closer than this fraction of the best.
pub const TIE_FRACTION: f64 = 0.005;
/// Most rounds of "each layer in turn, the others fixed"; they stop when a
/// round changes nothing (usually the second: it settles layers whose best
/// codec moved when a later one changed).
const MAX_PASSES: usize = 4;
/// An hf-cache snapshot layer holds links and refs: headers, a little text.
const SNAPSHOT_RATIO: f64 = 0.1;
/// The volume layer is mostly the hook binary; binaries compress to about 40%.
pub const VOLUME_LAYER_RATIO: f64 = 0.4;

/// What the choice reads of the target: its profile (the runtime's codecs,
/// the pull and unpack rates) and the base's layers, which a new node pulls
/// before ours (`cost::options::base_layers`; empty when not looked up).
#[derive(Debug, Clone, Copy)]
pub struct CodecTarget<'a> {
    pub profile: &'a Profile,
    pub base_layers: &'a [PullLayer],
}

/// How a layer's codec was chosen, and what each codec would have given.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CodecChoice {
    pub reason: String,
    /// Every codec the runtime reads (and the forced one), with the layer's
    /// estimated blob and the image's pull and unpack on a new node.
    pub alternatives: Vec<Alternative>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Alternative {
    pub codec: Codec,
    /// Estimated blob bytes of this layer in this codec.
    pub compressed: u64,
    /// Seconds until the whole image (base and new layers) is pulled and
    /// unpacked on a new node, with this layer in this codec.
    pub pull_unpack_seconds: f64,
    /// Seconds to pull and unpack this layer alone: what breaks a tie of
    /// equal blobs (the layer is off the critical path, but not free).
    pub layer_seconds: f64,
}

/// The zstd level of zstd layers: the profile's `zstd_level` (measured by
/// `plan --calibrate`), 1 to 19.
pub fn zstd_level(profile: &Profile) -> i32 {
    (profile.params.zstd_level.round() as i32).clamp(1, 19)
}

/// The layer writer's setting for `codec` under `profile`.
pub fn compression_of(codec: Codec, profile: &Profile) -> Compression {
    match codec {
        Codec::Gzip => GZIP,
        Codec::Zstd => Compression::Zstd { level: zstd_level(profile) },
        Codec::None => Compression::None,
    }
}

fn forced(setting: spec::Compression) -> Option<Codec> {
    match setting {
        spec::Compression::Auto => None,
        spec::Compression::Gzip => Some(Codec::Gzip),
        spec::Compression::Zstd => Some(Codec::Zstd),
        spec::Compression::None => Some(Codec::None),
    }
}

/// Sets the compression of every layer of `plan` (see the module doc).
pub fn assign(plan: &mut ImagePlan, spec: &Spec, facts: &LayoutFacts) {
    let target = &facts.target;
    let profile = target.profile;
    let runtime: Vec<Codec> =
        if profile.runtime_codecs.is_empty() { vec![Codec::Gzip] } else { profile.runtime_codecs.clone() };
    let forced = forced(spec.compression);
    if let Some(codec) = forced.filter(|c| !runtime.contains(c)) {
        plan.warnings.push(format!(
            "[imgbake] compression = \"{}\", but the target's runtime (profile {}) unpacks {} only: the image may not start there",
            codec.as_str(),
            profile.name,
            runtime.iter().map(|c| c.as_str()).collect::<Vec<_>>().join(", ")
        ));
    }
    let mut candidates = runtime.clone();
    if let Some(codec) = forced.filter(|c| !candidates.contains(c)) {
        candidates.push(codec);
    }
    // Each layer's estimate in each candidate codec (None: unknown until built).
    let estimates: Vec<Option<Vec<(Codec, LayerEstimate)>>> =
        plan.layers.iter().map(|layer| estimates(layer, &candidates, spec, facts, plan.volume.as_ref())).collect();
    let base = target.base_layers;
    let pull = |layers: &[Option<PullLayer>]| {
        let all: Vec<PullLayer> = base.iter().copied().chain(layers.iter().flatten().copied()).collect();
        model::pull_and_unpack(&all, &profile.params).unpacked
    };
    let pull_layer = |index: usize, codec: Codec| {
        estimates[index].as_ref().and_then(|e| e.iter().find(|(c, _)| *c == codec)).map(|(_, e)| PullLayer::from(e))
    };
    let fallback = if runtime.contains(&Codec::Gzip) { Codec::Gzip } else { runtime[0] };
    let mut chosen: Vec<Codec> = (0..plan.layers.len())
        .map(|index| match (forced, &estimates[index]) {
            (Some(codec), _) => codec,
            (None, None) => fallback,
            (None, Some(_)) => {
                let alone: Vec<Alternative> = runtime
                    .iter()
                    .filter_map(|&codec| {
                        alternative(&estimates[index], codec, &profile.params, |layer| pull(&[Some(layer)]))
                    })
                    .collect();
                pick(&alone).0
            }
        })
        .collect();
    let priced_with = |chosen: &[Codec], index: usize, codec: Codec| {
        let layers: Vec<Option<PullLayer>> = chosen
            .iter()
            .enumerate()
            .map(|(i, &c)| if i == index { pull_layer(i, codec) } else { pull_layer(i, c) })
            .collect();
        pull(&layers)
    };
    if forced.is_none() {
        for _ in 0..MAX_PASSES {
            let before = chosen.clone();
            for index in 0..chosen.len() {
                if estimates[index].is_none() {
                    continue;
                }
                let options: Vec<Alternative> = runtime
                    .iter()
                    .filter_map(|&codec| {
                        alternative(&estimates[index], codec, &profile.params, |_| priced_with(&chosen, index, codec))
                    })
                    .collect();
                chosen[index] = pick(&options).0;
            }
            if chosen == before {
                break;
            }
        }
    }
    for (index, layer) in plan.layers.iter_mut().enumerate() {
        let alternatives: Vec<Alternative> = candidates
            .iter()
            .filter_map(|&codec| {
                alternative(&estimates[index], codec, &profile.params, |_| priced_with(&chosen, index, codec))
            })
            .collect();
        let codec = chosen[index];
        let reason = match (forced, estimates[index].is_some()) {
            (Some(codec), _) => format!("forced by [imgbake] compression = \"{}\"", codec.as_str()),
            (None, false) => format!("auto: size unknown until it is built; {}", codec.as_str()),
            (None, true) => {
                let among: Vec<Alternative> =
                    alternatives.iter().filter(|a| runtime.contains(&a.codec)).cloned().collect();
                match pick(&among) {
                    (best, reason) if best == codec => reason,
                    // Rounds ran out while layers still traded places (not seen in practice).
                    _ => format!("auto: {} after {MAX_PASSES} rounds of choices", codec.as_str()),
                }
            }
        };
        layer.compression = compression_of(codec, profile);
        layer.codec_choice = Some(CodecChoice { reason, alternatives });
    }
}

/// `codec`'s alternative for a layer with these estimates, its time from `seconds`.
fn alternative(
    estimates: &Option<Vec<(Codec, LayerEstimate)>>,
    codec: Codec,
    params: &crate::pricing::profile::Params,
    seconds: impl Fn(PullLayer) -> f64,
) -> Option<Alternative> {
    let (_, estimate) = estimates.as_ref()?.iter().find(|(c, _)| *c == codec)?;
    let layer = PullLayer::from(estimate);
    Some(Alternative {
        codec,
        compressed: estimate.compressed,
        pull_unpack_seconds: seconds(layer),
        layer_seconds: model::pull_and_unpack(&[layer], params).unpacked,
    })
}

/// The fastest alternative; among those that tie with it, the smallest blob
/// (then the faster, then the faster alone, then the earlier listed). With the reason.
fn pick(alternatives: &[Alternative]) -> (Codec, String) {
    let best = alternatives.iter().map(|a| a.pull_unpack_seconds).fold(f64::INFINITY, f64::min);
    let tie = TIE_SECONDS.max(best * TIE_FRACTION);
    let tied: Vec<&Alternative> = alternatives.iter().filter(|a| a.pull_unpack_seconds <= best + tie).collect();
    let Some(winner) = tied.iter().copied().min_by(|a, b| {
        a.compressed
            .cmp(&b.compressed)
            .then(a.pull_unpack_seconds.total_cmp(&b.pull_unpack_seconds))
            .then(a.layer_seconds.total_cmp(&b.layer_seconds))
    }) else {
        return (Codec::Gzip, "auto: no codec to compare".into());
    };
    let reason = if alternatives.len() == 1 {
        format!("auto: {} is the only codec the runtime unpacks", winner.codec.as_str())
    } else if tied.len() == 1 {
        format!("auto: fastest pull and unpack on a new node ({:.2} s)", winner.pull_unpack_seconds)
    } else {
        let others: Vec<&str> = tied.iter().filter(|a| a.codec != winner.codec).map(|a| a.codec.as_str()).collect();
        format!("auto: ties with {} within {:.2} s; the smaller blob wins", others.join(", "), tie.max(0.0))
    };
    (winner.codec, reason)
}

/// The layer's estimate in each codec, as the cost model prices it; `None`
/// when its size is unknown before it is built (a root filesystem, or a
/// dependency layer without a lock).
fn estimates(
    layer: &PlannedLayer,
    codecs: &[Codec],
    spec: &Spec,
    facts: &LayoutFacts,
    volume: Option<&VolumePlan>,
) -> Option<Vec<(Codec, LayerEstimate)>> {
    let profile = facts.target.profile;
    let in_codec = |codec: Codec| PlannedLayer { compression: compression_of(codec, profile), ..layer.clone() };
    let ratio = match &layer.content {
        LayerContent::Rootfs { .. } => return None,
        LayerContent::StdlibBytecode | LayerContent::Apt | LayerContent::Python { .. } | LayerContent::Conda => {
            let lock = facts.lock?;
            return codecs
                .iter()
                .map(|&codec| super::dependency_sizes::estimate_planned(&in_codec(codec), lock).map(|e| (codec, e)))
                .collect();
        }
        LayerContent::AppFiles { files } => {
            let paths: Vec<std::path::PathBuf> =
                files.iter().filter(|f| f.link.is_none()).map(|f| f.source.clone()).collect();
            if paths.is_empty() {
                1.0
            } else {
                crate::image::sample::sampled_ratio(&paths)
            }
        }
        LayerContent::Weights { ratio, .. } => *ratio,
        LayerContent::HfSnapshot { .. } => SNAPSHOT_RATIO,
        LayerContent::Volume => VOLUME_LAYER_RATIO,
    };
    let sizes: Vec<u64> = match &layer.content {
        LayerContent::HfSnapshot { links, refs, .. } => vec![0; links.len() + refs.len()],
        // The hook is priced at the profile's `prefetch_hook_bytes`, as the
        // cost model prices it (the file's own size when the profile says 0).
        LayerContent::Volume => layer
            .files(spec, volume)?
            .into_iter()
            .map(|(path, size)| match profile.params.prefetch_hook_bytes {
                hook if path == super::HOOK_PATH.trim_start_matches('/') && hook > 0.0 => hook as u64,
                _ => size,
            })
            .collect(),
        _ => layer.files(spec, volume)?.into_iter().map(|(_, size)| size).collect(),
    };
    Some(
        codecs
            .iter()
            .map(|&codec| {
                (codec, LayerEstimate::from_files(layer.name.clone(), &sizes, ratio, compression_of(codec, profile)))
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn alternative(codec: Codec, compressed: u64, seconds: f64) -> Alternative {
        Alternative { codec, compressed, pull_unpack_seconds: seconds, layer_seconds: seconds }
    }

    #[test]
    fn the_fastest_wins_and_a_tie_goes_to_the_smaller_blob() {
        let (codec, reason) = pick(&[
            alternative(Codec::Gzip, 800, 28.6),
            alternative(Codec::Zstd, 800, 21.5),
            alternative(Codec::None, 1000, 24.8),
        ]);
        assert_eq!(codec, Codec::Zstd);
        assert!(reason.contains("fastest"), "{reason}");
        // 5 ms apart: a tie, and gzip's blob is smaller.
        let (codec, reason) = pick(&[alternative(Codec::Gzip, 300, 1.005), alternative(Codec::None, 1000, 1.0)]);
        assert_eq!(codec, Codec::Gzip);
        assert!(reason.contains("ties with none"), "{reason}");
        // Equal blobs: the faster of the tied.
        let (codec, _) = pick(&[alternative(Codec::Gzip, 300, 1.004), alternative(Codec::Zstd, 300, 1.0)]);
        assert_eq!(codec, Codec::Zstd);
        // Equal blobs and times (the layer is off the critical path): the faster alone.
        let gzip = Alternative { layer_seconds: 0.5, ..alternative(Codec::Gzip, 300, 1.0) };
        let zstd = Alternative { layer_seconds: 0.2, ..alternative(Codec::Zstd, 300, 1.0) };
        assert_eq!(pick(&[gzip, zstd]).0, Codec::Zstd);
    }

    #[test]
    fn zstd_level_comes_from_the_profile_within_zstd_range() {
        let mut profile = crate::pricing::profile::builtin("generic").unwrap();
        assert_eq!(compression_of(Codec::Zstd, &profile), Compression::Zstd { level: 3 });
        profile.params.zstd_level = 0.0;
        assert_eq!(zstd_level(&profile), 1);
        profile.params.zstd_level = 6.0;
        assert_eq!(compression_of(Codec::Zstd, &profile), Compression::Zstd { level: 6 });
    }
}
