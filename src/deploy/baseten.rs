//! Baseten hand-off: a Truss `config.yaml` with `base_image.image` = the
//! pushed digest and a `docker_server` that starts the image's own command
//! (Truss runs `start_command` through a shell, so the argv is quoted).
//! Requirements, system packages and `model_cache` are left out: the image
//! holds the packages, and volume weights are fetched by imgbake's prefetch
//! hook from the manifest inside the image.

use super::{DeployFile, DeployInput};
use serde::Serialize;
use std::collections::BTreeMap;

#[derive(Serialize)]
struct Config<'a> {
    model_name: &'a str,
    python_version: String,
    base_image: BaseImage<'a>,
    docker_server: DockerServer<'a>,
    #[serde(skip_serializing_if = "Option::is_none")]
    resources: Option<Resources>,
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    environment_variables: &'a BTreeMap<String, String>,
    /// Names only; Truss reads the values from Baseten's secret store.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    secrets: BTreeMap<String, Option<()>>,
}

#[derive(Serialize)]
struct BaseImage<'a> {
    image: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    python_executable_path: Option<&'a str>,
}

#[derive(Serialize)]
struct DockerServer<'a> {
    start_command: String,
    server_port: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    readiness_endpoint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    liveness_endpoint: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    predict_endpoint: Option<&'a str>,
}

#[derive(Serialize)]
struct Resources {
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    memory: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    accelerator: Option<String>,
    use_gpu: bool,
}

pub fn render(input: &DeployInput) -> DeployFile {
    let spec = input.spec;
    let resources = spec.hardware.as_ref().map(|hardware| {
        // The first GPU: renamed when it is a Cerebrium compute type, else as written.
        let gpu = hardware.compute.iter().find(|c| *c != "CPU");
        let accelerator = gpu.map(|c| super::truss_accelerator(c).unwrap_or(c)).map(|name| {
            if hardware.gpu_count > 1 {
                format!("{name}:{}", hardware.gpu_count)
            } else {
                name.to_string()
            }
        });
        Resources {
            cpu: hardware.cpu.map(|cpu| {
                if cpu.fract() == 0.0 {
                    format!("{cpu}")
                } else {
                    format!("{}m", (cpu * 1000.0).round())
                }
            }),
            memory: hardware.memory_gb.map(super::memory_quantity),
            use_gpu: accelerator.is_some(),
            accelerator,
        }
    });
    let config = Config {
        model_name: &spec.name,
        python_version: format!("py{}", spec.python.version.replace('.', "")),
        base_image: BaseImage { image: input.image, python_executable_path: spec.base.python_executable.as_deref() },
        docker_server: DockerServer {
            start_command: shlex::try_join(input.config.entrypoint.iter().map(String::as_str))
                .expect("an argv without NUL bytes"),
            server_port: spec.runtime.port.unwrap_or_default(),
            readiness_endpoint: spec.runtime.readycheck_endpoint.as_deref(),
            liveness_endpoint: spec.runtime.healthcheck_endpoint.as_deref(),
            predict_endpoint: spec.runtime.predict_endpoint.as_deref(),
        },
        resources,
        environment_variables: &input.config.env,
        secrets: input.secret_names().into_iter().map(|name| (name, None)).collect(),
    };
    let body = super::yaml::to_yaml(&config);
    let missing_predict = if spec.runtime.predict_endpoint.is_none() {
        "# Add `docker_server.predict_endpoint` (the route Baseten's /predict forwards to).\n"
    } else {
        ""
    };
    let header = format!(
        "# Written by `imgbake build --deploy`: runs {} by digest.\n# Push from this directory (`truss push`): the image holds the server, its packages and files.\n{missing_predict}",
        input.image
    );
    DeployFile { name: "config.yaml", contents: format!("{header}{body}") }
}
