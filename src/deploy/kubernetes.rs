//! Kubernetes hand-off: a Deployment and a Service (one YAML stream) that
//! run the pushed image by digest. Probes come from the config's health and
//! ready paths (a TCP check on the port when a path is not set, as
//! Cerebrium does), resources from its hardware, secrets from one Secret
//! named `<app>-secrets` by key. Weights: baked ones need nothing; volume
//! ones get an `emptyDir` (or the PersistentVolumeClaim named by
//! `--deploy-volume-claim`) where the image's links point, which the
//! prefetch hook fills at start. An artifact source would be one more
//! [`VolumeSource::Image`] (a Kubernetes image volume).

use super::{DeployFile, DeployInput};
use crate::layout::Placement;
use serde::Serialize;
use std::collections::BTreeMap;

/// The container's named port, which probes and the Service refer to.
const PORT_NAME: &str = "http";

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Object<'a, S> {
    api_version: &'static str,
    kind: &'static str,
    metadata: Metadata<'a>,
    spec: S,
}

#[derive(Serialize)]
struct Metadata<'a> {
    name: &'a str,
    labels: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct LabelsOnly<'a> {
    labels: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct DeploymentSpec<'a> {
    replicas: u32,
    selector: Selector<'a>,
    template: PodTemplate<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Selector<'a> {
    match_labels: &'a BTreeMap<String, String>,
}

#[derive(Serialize)]
struct PodTemplate<'a> {
    metadata: LabelsOnly<'a>,
    spec: PodSpec<'a>,
}

#[derive(Serialize)]
struct PodSpec<'a> {
    containers: Vec<Container<'a>>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volumes: Vec<Volume>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Container<'a> {
    name: &'a str,
    image: &'a str,
    image_pull_policy: &'static str,
    ports: Vec<ContainerPort>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    env: Vec<EnvVar>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<Resources>,
    readiness_probe: Probe,
    liveness_probe: Probe,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    volume_mounts: Vec<VolumeMount>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ContainerPort {
    name: &'static str,
    container_port: u16,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvVar {
    name: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value_from: Option<EnvVarSource>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct EnvVarSource {
    secret_key_ref: SecretKeySelector,
}

#[derive(Serialize)]
struct SecretKeySelector {
    name: String,
    key: String,
}

#[derive(Serialize)]
struct Resources {
    requests: BTreeMap<&'static str, String>,
    limits: BTreeMap<&'static str, String>,
}

/// One of `httpGet` or `tcpSocket`.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Probe {
    #[serde(skip_serializing_if = "Option::is_none")]
    http_get: Option<HttpGet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tcp_socket: Option<TcpSocket>,
}

#[derive(Serialize)]
struct HttpGet {
    path: String,
    port: &'static str,
}

#[derive(Serialize)]
struct TcpSocket {
    port: &'static str,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct VolumeMount {
    name: String,
    mount_path: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    sub_path: Option<String>,
}

#[derive(Serialize)]
struct Volume {
    name: String,
    #[serde(flatten)]
    source: VolumeSource,
}

/// Where a volume's files come from (the variant's name is the key in the pod's volume).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum VolumeSource {
    /// Scratch space on the node, filled by the prefetch hook at every start.
    EmptyDir {},
    /// A claim that outlives the pod: the hook finds the files there on the next start.
    PersistentVolumeClaim {
        #[serde(rename = "claimName")]
        claim_name: String,
    },
    /// An OCI artifact the node pulls and mounts read-only (Kubernetes image volumes).
    Image {
        reference: String,
        #[serde(rename = "pullPolicy")]
        pull_policy: &'static str,
    },
}

#[derive(Serialize)]
struct ServiceSpec<'a> {
    selector: &'a BTreeMap<String, String>,
    ports: Vec<ServicePort>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ServicePort {
    name: &'static str,
    port: u16,
    target_port: &'static str,
}

/// `name` as a DNS-1123 label (lowercase alphanumerics and `-`, at most 63).
fn dns_label(name: &str) -> String {
    let mapped: String =
        name.to_ascii_lowercase().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '-' }).collect();
    let trimmed = mapped.trim_matches('-');
    let label: String = trimmed.chars().take(63).collect();
    let label = label.trim_end_matches('-').to_string();
    if label.is_empty() {
        "app".to_string()
    } else {
        label
    }
}

fn probe(path: Option<&str>) -> Probe {
    match path {
        Some(path) => Probe { http_get: Some(HttpGet { path: path.to_string(), port: PORT_NAME }), tcp_socket: None },
        None => Probe { http_get: None, tcp_socket: Some(TcpSocket { port: PORT_NAME }) },
    }
}

fn resources(input: &DeployInput) -> Option<Resources> {
    let hardware = input.spec.hardware.as_ref()?;
    let mut quantities: BTreeMap<&'static str, String> = BTreeMap::new();
    if let Some(cpu) = hardware.cpu {
        quantities
            .insert("cpu", if cpu.fract() == 0.0 { format!("{cpu}") } else { format!("{}m", (cpu * 1000.0).round()) });
    }
    if let Some(gb) = hardware.memory_gb {
        quantities.insert("memory", super::memory_quantity(gb));
    }
    let mut limits = quantities.clone();
    if hardware.gpu_count > 0 {
        limits.insert("nvidia.com/gpu", hardware.gpu_count.to_string());
    }
    (!limits.is_empty()).then_some(Resources { requests: quantities, limits })
}

/// The volumes of the weights and where they are mounted: the volume of
/// the volume-placed sources, at the target's shared volume root or (Baseten,
/// one volume per source) at each source's own volume path through a
/// sub-path; and an image volume per artifact source (the pushed ModelPack
/// artifact by digest), read-only at the source's path.
fn weights_volume(input: &DeployInput) -> (Vec<Volume>, Vec<VolumeMount>) {
    const NAME: &str = "weights";
    let spec = input.spec;
    let mut mounts: Vec<VolumeMount> = Vec::new();
    let mut images: Vec<Volume> = Vec::new();
    for entry in &spec.weights {
        let Some(placed) = input.placements.iter().find(|p| p.origin == entry.origin) else { continue };
        let mount = match placed.placement {
            Placement::Bake => None,
            Placement::Volume if spec.target.name.has_shared_volume() => {
                Some(VolumeMount { name: NAME.into(), mount_path: spec.target.volume_root.clone(), sub_path: None })
            }
            Placement::Volume => Some(VolumeMount {
                name: NAME.into(),
                mount_path: entry.volume_path.clone(),
                sub_path: Some(dns_label(&entry.mount)),
            }),
            Placement::Artifact => {
                let Some((_, reference)) = input.artifacts.iter().find(|(origin, _)| origin == &entry.origin) else {
                    continue;
                };
                let name = format!("{NAME}-{}", dns_label(&entry.mount));
                images.push(Volume {
                    name: name.clone(),
                    source: VolumeSource::Image { reference: reference.clone(), pull_policy: "IfNotPresent" },
                });
                Some(VolumeMount { name, mount_path: entry.path.clone(), sub_path: None })
            }
        };
        if let Some(mount) = mount.filter(|m| !mounts.iter().any(|known| known.mount_path == m.mount_path)) {
            mounts.push(mount);
        }
    }
    let mut volumes = Vec::new();
    if mounts.iter().any(|m| m.name == NAME) {
        let source = match input.volume_claim {
            Some(claim) => VolumeSource::PersistentVolumeClaim { claim_name: claim.to_string() },
            None => VolumeSource::EmptyDir {},
        };
        volumes.push(Volume { name: NAME.into(), source });
    }
    volumes.extend(images);
    (volumes, mounts)
}

pub fn render(input: &DeployInput) -> DeployFile {
    let spec = input.spec;
    let name = dns_label(&spec.name);
    let labels = BTreeMap::from([("app.kubernetes.io/name".to_string(), name.clone())]);
    let port = spec.runtime.port.unwrap_or_default();
    let mut env: Vec<EnvVar> = input
        .config
        .env
        .iter()
        .map(|(key, value)| EnvVar { name: key.clone(), value: Some(value.clone()), value_from: None })
        .collect();
    env.extend(input.secret_names().into_iter().map(|secret| EnvVar {
        name: secret.clone(),
        value: None,
        value_from: Some(EnvVarSource {
            secret_key_ref: SecretKeySelector { name: format!("{name}-secrets"), key: secret },
        }),
    }));
    let (volumes, volume_mounts) = weights_volume(input);
    let deployment = Object {
        api_version: "apps/v1",
        kind: "Deployment",
        metadata: Metadata { name: &name, labels: &labels },
        spec: DeploymentSpec {
            replicas: spec.scaling.as_ref().map_or(1, |s| s.min_replicas.max(1)),
            selector: Selector { match_labels: &labels },
            template: PodTemplate {
                metadata: LabelsOnly { labels: &labels },
                spec: PodSpec {
                    containers: vec![Container {
                        name: &name,
                        image: input.image,
                        image_pull_policy: "IfNotPresent",
                        ports: vec![ContainerPort { name: PORT_NAME, container_port: port }],
                        env,
                        resources: resources(input),
                        readiness_probe: probe(spec.runtime.readycheck_endpoint.as_deref()),
                        liveness_probe: probe(spec.runtime.healthcheck_endpoint.as_deref()),
                        volume_mounts,
                    }],
                    volumes,
                },
            },
        },
    };
    let service = Object {
        api_version: "v1",
        kind: "Service",
        metadata: Metadata { name: &name, labels: &labels },
        spec: ServiceSpec {
            selector: &labels,
            ports: vec![ServicePort { name: PORT_NAME, port, target_port: PORT_NAME }],
        },
    };
    let mut contents = format!("# Written by `imgbake build --deploy`: runs {} by digest.\n", input.image);
    let secrets = input.secret_names();
    if !secrets.is_empty() {
        contents.push_str(&format!(
            "# Create the secret first: kubectl create secret generic {name}-secrets {}\n",
            secrets.iter().map(|s| format!("--from-literal={s}=…")).collect::<Vec<_>>().join(" ")
        ));
    }
    contents.push_str(&super::yaml::to_yaml(&deployment));
    contents.push_str("---\n");
    contents.push_str(&super::yaml::to_yaml(&service));
    DeployFile { name: "kubernetes.yaml", contents }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_become_dns_labels() {
        assert_eq!(dns_label("sdxl-gpu"), "sdxl-gpu");
        assert_eq!(dns_label("My_App.v2"), "my-app-v2");
        assert_eq!(dns_label("__"), "app");
    }

    #[test]
    fn an_image_volume_names_the_artifact_by_digest() {
        let volume = Volume {
            name: "weights".into(),
            source: VolumeSource::Image {
                reference: format!("registry.example/weights@sha256:{}", "a".repeat(64)),
                pull_policy: "IfNotPresent",
            },
        };
        let yaml = super::super::yaml::to_yaml(&volume);
        assert_eq!(
            yaml,
            format!(
                "name: weights\nimage:\n  reference: registry.example/weights@sha256:{}\n  pullPolicy: IfNotPresent\n",
                "a".repeat(64)
            )
        );
    }
}
