//! Runpod hand-off: a serverless template, the request body of Runpod's REST
//! API `POST /v1/templates` (field names as that API spells them): the image
//! by digest, a container disk that holds the unpacked image with room to
//! spare, the environment with secrets as `{{ RUNPOD_SECRET_<name> }}`
//! references, and the network volume's mount path when weights live there.

use super::{DeployFile, DeployInput};
use crate::layout::Placement;
use serde::Serialize;
use std::collections::BTreeMap;

/// Container disk headroom over the unpacked image: the app's own writes
/// (temp files, caches) land on the same disk.
const DISK_HEADROOM: f64 = 1.25;
/// Runpod's smallest useful container disk, in GB.
const MIN_DISK_GB: u64 = 5;

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Template<'a> {
    name: &'a str,
    image_name: &'a str,
    is_serverless: bool,
    category: &'static str,
    container_disk_in_gb: u64,
    /// Serverless templates have no pod volume (0); a network volume is attached to the endpoint.
    volume_in_gb: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    volume_mount_path: Option<&'a str>,
    /// Empty: the image's own ENTRYPOINT.
    docker_entrypoint: Vec<String>,
    /// Empty: the image's own CMD.
    docker_start_cmd: Vec<String>,
    env: BTreeMap<String, String>,
    ports: Vec<String>,
}

/// Container disk in GB for an unpacked image of `bytes`.
fn container_disk_gb(bytes: u64) -> u64 {
    ((bytes as f64 * DISK_HEADROOM / 1e9).ceil() as u64).max(MIN_DISK_GB)
}

pub fn render(input: &DeployInput) -> DeployFile {
    let spec = input.spec;
    let mut env = input.config.env.clone();
    for name in input.secret_names() {
        env.insert(name.clone(), format!("{{{{ RUNPOD_SECRET_{name} }}}}"));
    }
    let gpu = spec.hardware.as_ref().is_some_and(|h| h.gpu_count > 0 || h.compute.iter().any(|c| c != "CPU"));
    let on_volume = input.placed(Placement::Volume).next().is_some();
    let template = Template {
        name: &spec.name,
        image_name: input.image,
        is_serverless: true,
        category: if gpu { "NVIDIA" } else { "CPU" },
        container_disk_in_gb: container_disk_gb(input.image_size),
        volume_in_gb: 0,
        volume_mount_path: on_volume.then_some(spec.target.volume_root.as_str()),
        docker_entrypoint: Vec::new(),
        docker_start_cmd: Vec::new(),
        env,
        ports: spec.runtime.port.map(|port| format!("{port}/http")).into_iter().collect(),
    };
    let mut contents = serde_json::to_string_pretty(&template).expect("the template serializes");
    contents.push('\n');
    DeployFile { name: "runpod-template.json", contents }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn container_disk_holds_the_image_with_headroom() {
        assert_eq!(container_disk_gb(0), MIN_DISK_GB);
        // 10 GB unpacked → 12.5 GB → 13.
        assert_eq!(container_disk_gb(10_000_000_000), 13);
    }
}
