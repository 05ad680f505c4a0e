//! Cerebrium hand-off: a `cerebrium.toml` whose `docker_base_image_url` is
//! the pushed digest, with the custom runtime (the image's own command,
//! port, health and ready paths) and the hardware and scaling sections of
//! the source config. Dependencies and build commands are left out: they
//! are in the image already.

use super::{DeployFile, DeployInput};
use serde::Serialize;

#[derive(Serialize)]
struct Document<'a> {
    cerebrium: Cerebrium<'a>,
}

#[derive(Serialize)]
struct Cerebrium<'a> {
    deployment: Deployment<'a>,
    runtime: Runtime<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hardware: Option<Hardware>,
    #[serde(skip_serializing_if = "Option::is_none")]
    scaling: Option<&'a crate::spec::Scaling>,
}

#[derive(Serialize)]
struct Deployment<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    python_version: Option<&'a str>,
    docker_base_image_url: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    disable_auth: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    deployment_initialization_timeout: Option<u32>,
}

#[derive(Serialize)]
struct Runtime<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    container_runtime: Option<&'a str>,
    custom: Custom<'a>,
}

#[derive(Serialize)]
struct Custom<'a> {
    port: u16,
    entrypoint: &'a [String],
    #[serde(skip_serializing_if = "Option::is_none")]
    healthcheck_endpoint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    readycheck_endpoint: Option<&'a str>,
}

#[derive(Serialize)]
struct Hardware {
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory: Option<f64>,
    compute: Compute,
    gpu_count: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    provider: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    region: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    compute_tier: Option<String>,
}

/// One compute type, or several in order of preference (both forms Cerebrium reads).
#[derive(Serialize)]
#[serde(untagged)]
enum Compute {
    One(String),
    Preferences(Vec<String>),
}

/// The config's compute types as Cerebrium names them: its own names as
/// they are, a Truss accelerator renamed, an unknown name kept (so that
/// `validate` warns about it rather than the GPU silently becoming a CPU).
fn compute(names: &[String]) -> Compute {
    let mut named: Vec<String> = names
        .iter()
        .map(|name| {
            if crate::config::cerebrium::KNOWN_COMPUTE.contains(&name.as_str()) {
                name.clone()
            } else {
                super::cerebrium_compute(name).map_or_else(|| name.clone(), str::to_string)
            }
        })
        .collect();
    match named.len() {
        0 => Compute::One("CPU".to_string()),
        1 => Compute::One(named.remove(0)),
        _ => Compute::Preferences(named),
    }
}

pub fn render(input: &DeployInput) -> DeployFile {
    let spec = input.spec;
    let settings = spec.cerebrium.as_ref();
    let python_version = crate::config::cerebrium::PYTHON_VERSIONS
        .contains(&spec.python.version.as_str())
        .then_some(spec.python.version.as_str());
    let hardware = spec.hardware.as_ref().map(|hardware| Hardware {
        cpu: hardware.cpu,
        memory: hardware.memory_gb.map(|gb| (gb * 100.0).round() / 100.0),
        compute: compute(&hardware.compute),
        gpu_count: hardware.gpu_count,
        provider: hardware.provider.clone(),
        region: hardware.region.clone(),
        compute_tier: settings.and_then(|s| s.compute_tier.clone()),
    });
    let document = Document {
        cerebrium: Cerebrium {
            deployment: Deployment {
                name: &spec.name,
                python_version,
                docker_base_image_url: input.image,
                disable_auth: settings.map(|s| s.disable_auth),
                deployment_initialization_timeout: settings.map(|s| s.deployment_initialization_timeout),
            },
            runtime: Runtime {
                container_runtime: settings.and_then(|s| s.container_runtime.as_deref()),
                custom: Custom {
                    port: spec.runtime.port.unwrap_or_default(),
                    entrypoint: &input.config.entrypoint,
                    healthcheck_endpoint: spec.runtime.healthcheck_endpoint.as_deref(),
                    readycheck_endpoint: spec.runtime.readycheck_endpoint.as_deref(),
                },
            },
            hardware,
            scaling: spec.scaling.as_ref(),
        },
    };
    let body = toml::to_string(&document).expect("the document serializes to TOML");
    let secrets = input.secret_names();
    let mut header = format!(
        "# Written by `imgbake build --deploy`: runs {} by digest.\n# Deploy from this directory (`cerebrium deploy`): the image holds the app files and dependencies.\n",
        input.image
    );
    if !secrets.is_empty() {
        header.push_str(&format!("# Add these secrets in the Cerebrium dashboard: {}\n", secrets.join(", ")));
    }
    DeployFile { name: "cerebrium.toml", contents: format!("{header}\n{body}") }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn compute_keeps_cerebrium_names_and_renames_truss_ones() {
        let names = |list: &[&str]| list.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let toml = |c: Compute| toml::to_string(&std::collections::BTreeMap::from([("compute", c)])).unwrap();
        assert_eq!(toml(compute(&names(&["ADA_L40"]))), "compute = \"ADA_L40\"\n");
        assert_eq!(toml(compute(&names(&["A10G"]))), "compute = \"AMPERE_A10\"\n");
        assert_eq!(
            toml(compute(&names(&["HOPPER_H100", "AMPERE_A100_80GB"]))),
            "compute = [\"HOPPER_H100\", \"AMPERE_A100_80GB\"]\n"
        );
        assert_eq!(toml(compute(&[])), "compute = \"CPU\"\n");
    }
}
