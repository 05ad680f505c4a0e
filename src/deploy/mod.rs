//! Deploy hand-off: after `build --push`, the files that tell a platform to
//! run the pushed image by digest (`build --deploy DIR`). One file per
//! target renders typed documents with serde; this module picks the target,
//! gathers what every target reads ([`DeployInput`]) and writes the files.
//!
//! The generators are pure: the same input gives the same bytes, so they
//! snapshot-test without a registry. Secrets appear by name only: the Spec
//! never holds a value.

mod baseten;
mod cerebrium;
mod kubernetes;
mod runpod;
mod yaml;

pub use kubernetes::VolumeSource;
pub use yaml::to_yaml;

use crate::layout::{ImageConfig, Placement, SourcePlacement};
use crate::spec::{Spec, Target, WeightsEntry};
use std::path::{Path, PathBuf};

/// The platform whose files `--deploy` writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployTarget {
    Cerebrium,
    Baseten,
    Runpod,
    Kubernetes,
}

impl DeployTarget {
    pub const ALL: [&'static str; 4] = ["cerebrium", "baseten", "runpod", "kubernetes"];

    pub fn parse(text: &str) -> Option<DeployTarget> {
        match text {
            "cerebrium" => Some(DeployTarget::Cerebrium),
            "baseten" => Some(DeployTarget::Baseten),
            "runpod" => Some(DeployTarget::Runpod),
            "kubernetes" => Some(DeployTarget::Kubernetes),
            _ => None,
        }
    }

    /// The config's target (`[imgbake] target`, else the config's own
    /// platform); `generic` has no platform of its own, so Kubernetes.
    pub fn of(spec: &Spec) -> DeployTarget {
        match spec.target.name {
            Target::Cerebrium => DeployTarget::Cerebrium,
            Target::Baseten => DeployTarget::Baseten,
            Target::Runpod => DeployTarget::Runpod,
            Target::Generic => DeployTarget::Kubernetes,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            DeployTarget::Cerebrium => "cerebrium",
            DeployTarget::Baseten => "baseten",
            DeployTarget::Runpod => "runpod",
            DeployTarget::Kubernetes => "kubernetes",
        }
    }
}

impl std::fmt::Display for DeployTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Everything a generator reads: the Spec, the pushed image and the final
/// ImagePlan's runtime facts.
#[derive(Debug, Clone, Copy)]
pub struct DeployInput<'a> {
    pub spec: &'a Spec,
    /// The pushed image by digest (`host/repo@sha256:…`).
    pub image: &'a str,
    /// The image config the build set: entrypoint (wrapped by the prefetch
    /// hook in volume mode), environment, port.
    pub config: &'a ImageConfig,
    /// Where every weights entry went.
    pub placements: &'a [SourcePlacement],
    /// The image's unpacked size in bytes (base and new layers): Runpod's container disk.
    pub image_size: u64,
    /// Kubernetes: mount this PersistentVolumeClaim for volume sources instead of an emptyDir.
    pub volume_claim: Option<&'a str>,
    /// `(origin, host/repo@sha256:…)` of every pushed weights artifact.
    pub artifacts: &'a [(String, String)],
}

impl DeployInput<'_> {
    /// The weights entries whose placement is `placement`, in config order.
    fn placed(&self, placement: Placement) -> impl Iterator<Item = &WeightsEntry> + '_ {
        self.spec
            .weights
            .iter()
            .filter(move |entry| self.placements.iter().any(|p| p.origin == entry.origin && p.placement == placement))
    }

    /// Names of the secrets the running container needs: the app's, and the
    /// credential of every source the prefetch hook fetches. Sorted, once each.
    fn secret_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self.spec.runtime.secret_names.clone();
        names.extend(self.placed(Placement::Volume).filter_map(|e| e.secret.clone()));
        names.sort();
        names.dedup();
        names
    }
}

/// One file of the hand-off, relative to the deploy directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeployFile {
    pub name: &'static str,
    pub contents: String,
}

#[derive(Debug, thiserror::Error)]
pub enum DeployError {
    #[error("the {target} hand-off needs {what}, and {config} has none")]
    Missing { target: DeployTarget, what: &'static str, config: String, hint: String },
    #[error("cannot write {}", path.display())]
    Write {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

impl crate::plumbing::errors::Hint for DeployError {
    fn hint(&self) -> Option<String> {
        match self {
            DeployError::Missing { hint, .. } => Some(hint.clone()),
            DeployError::Write { .. } => None,
        }
    }
}

/// Refuses, before anything is built, a config the target's files cannot
/// describe: every target runs an HTTP server, so it needs a port and a
/// command to start it.
pub fn check(spec: &Spec, target: DeployTarget) -> Result<(), DeployError> {
    let config = spec.source.path.display().to_string();
    let hint = match spec.source.format {
        crate::spec::ConfigFormat::Cerebrium => {
            "set `port` and `entrypoint` in [cerebrium.runtime.custom] (the custom runtime the platform starts)"
        }
        crate::spec::ConfigFormat::Truss => {
            "add `docker_server:` with `start_command` and `server_port` (a custom server the platform starts)"
        }
    };
    let missing = |what| Err(DeployError::Missing { target, what, config: config.clone(), hint: hint.to_string() });
    if spec.runtime.port.is_none() {
        return missing("the port the server listens on");
    }
    if spec.runtime.entrypoint.is_empty() {
        return missing("the command that starts the server");
    }
    Ok(())
}

/// The files of `target` for `input`.
pub fn render(target: DeployTarget, input: &DeployInput) -> Vec<DeployFile> {
    match target {
        DeployTarget::Cerebrium => vec![cerebrium::render(input)],
        DeployTarget::Baseten => vec![baseten::render(input)],
        DeployTarget::Runpod => vec![runpod::render(input)],
        DeployTarget::Kubernetes => vec![kubernetes::render(input)],
    }
}

/// What the user should know about the files of `target`: volume weights
/// on a platform other than the one the image was built for (the image
/// links the app's paths into the build target's volume root), and
/// artifact weights on a platform whose nodes cannot mount them.
pub fn warnings(target: DeployTarget, input: &DeployInput) -> Vec<String> {
    let mut warnings = Vec::new();
    let built_for = DeployTarget::of(input.spec);
    let platform = target != DeployTarget::Kubernetes;
    if platform && target != built_for && input.placed(Placement::Volume).next().is_some() {
        warnings.push(format!(
            "the image keeps weights on {}'s volume ({}), but the {target} files run it on {target}; \
             set `target = \"{target}\"` in the config's imgbake section and build again",
            input.spec.target.name, input.spec.target.volume_root
        ));
    }
    let artifacts: Vec<&str> = input.placed(Placement::Artifact).map(|e| e.origin.as_str()).collect();
    if !artifacts.is_empty() && !mounts_image_volumes(target) {
        warnings.push(format!(
            "{} {} a ModelPack artifact, but {target} does not mount image volumes: the app will not find \
             those weights at their path; deploy with --deploy-target kubernetes, or set mode = \"bake\" or \"volume\"",
            artifacts.join(", "),
            if artifacts.len() == 1 { "is" } else { "are" }
        ));
    }
    warnings
}

/// Whether `target`'s nodes mount ModelPack artifacts as image volumes: the
/// `image_volumes` of its built-in cost profile, so that `plan` (which
/// considers artifact only there) and `--deploy` agree.
pub fn mounts_image_volumes(target: DeployTarget) -> bool {
    crate::pricing::profile::builtin(target.as_str())
        .is_some_and(|profile| crate::cost::decision::mounts_image_volumes(&profile.params))
}

/// Writes each file atomically under `dir` (created when missing); returns the paths written.
pub fn write(dir: &Path, files: &[DeployFile]) -> Result<Vec<PathBuf>, DeployError> {
    files
        .iter()
        .map(|file| {
            let path = dir.join(file.name);
            crate::plumbing::fs::write_atomic(&path, file.contents.as_bytes())
                .map_err(|source| DeployError::Write { path: path.clone(), source })?;
            Ok(path)
        })
        .collect()
}

/// A memory size as a Kubernetes-style quantity, the form Truss and
/// Kubernetes both read: whole gigabytes as `24G`, whole gibibytes as
/// `16Gi`, else mebibytes (`Spec` keeps memory in GB, converted from `Gi`
/// for Truss sources).
fn memory_quantity(gb: f64) -> String {
    let near = |value: f64| (value - value.round()).abs() < 1e-6 && value.round() >= 1.0;
    let gib = gb / 1.073_741_824;
    if near(gb) {
        format!("{}G", gb.round() as u64)
    } else if near(gib) {
        format!("{}Gi", gib.round() as u64)
    } else {
        format!("{}Mi", (gb * 1e9 / 1_048_576.0).ceil() as u64)
    }
}

/// GPU names as Cerebrium's `compute` and Truss's `accelerator` write
/// them, for a config read on one platform and deployed on the other.
const GPU_NAMES: [(&str, &str); 8] = [
    ("TURING_T4", "T4"),
    ("ADA_L4", "L4"),
    ("AMPERE_A10", "A10G"),
    ("AMPERE_A100", "A100"),
    ("AMPERE_A100_40GB", "A100"),
    ("AMPERE_A100_80GB", "A100"),
    ("HOPPER_H100", "H100"),
    ("HOPPER_H200", "H200"),
];

/// Cerebrium's compute type for a Truss accelerator (or itself when it already is one).
fn cerebrium_compute(name: &str) -> Option<&'static str> {
    GPU_NAMES.iter().find(|(cerebrium, truss)| *cerebrium == name || *truss == name).map(|(cerebrium, _)| *cerebrium)
}

/// Truss's accelerator for a Cerebrium compute type (or itself when it already is one).
fn truss_accelerator(name: &str) -> Option<&'static str> {
    GPU_NAMES.iter().find(|(cerebrium, truss)| *cerebrium == name || *truss == name).map(|(_, truss)| *truss)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    #[test]
    fn memory_keeps_whole_units() {
        assert_eq!(memory_quantity(24.0), "24G");
        assert_eq!(memory_quantity(16.0 * 1.073_741_824), "16Gi");
        assert_eq!(memory_quantity(0.5), "477Mi");
    }

    #[test]
    fn gpu_names_map_both_ways() {
        assert_eq!(truss_accelerator("AMPERE_A10"), Some("A10G"));
        assert_eq!(cerebrium_compute("A10G"), Some("AMPERE_A10"));
        assert_eq!(cerebrium_compute("ADA_L4"), Some("ADA_L4"));
        assert_eq!(truss_accelerator("CPU"), None);
    }

    #[test]
    fn targets_parse_and_default_from_the_config() {
        for name in DeployTarget::ALL {
            assert_eq!(DeployTarget::parse(name).unwrap().as_str(), name);
        }
        assert_eq!(DeployTarget::parse("generic"), None);
        // Each deploy target has a built-in cost profile; only Kubernetes mounts artifacts.
        for name in DeployTarget::ALL {
            let target = DeployTarget::parse(name).unwrap();
            assert_eq!(mounts_image_volumes(target), target == DeployTarget::Kubernetes, "{name}");
        }
    }
}
