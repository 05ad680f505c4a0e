//! `build --deploy`: the hand-off files of every target, snapshot-tested from
//! fixtures that look like real apps and checked by the platform's own
//! reader where we have one: the cerebrium.toml and Truss config.yaml pass
//! `imgbake validate`, the Kubernetes YAML loads into the official
//! `kubernetes` Python client's V1Deployment / V1Service with no unknown
//! field. A real `build --push` to the loopback registry writes them with the
//! pushed digest.

mod support;

use imgbake::deploy::{self, DeployFile, DeployInput, DeployTarget};
use imgbake::layout::{ImageConfig, Placement, SourcePlacement};
use imgbake::spec::Spec;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::{registry::TestRegistry, tools};

/// A pushed image, pinned (what `build --push` reports).
fn pinned(name: &str) -> String {
    format!("registry.example.com/apps/{name}@sha256:{}", "5e".repeat(32))
}

fn fixture(name: &str) -> PathBuf {
    tools::repo_root().join("fixtures").join(name)
}

/// The fixture's config, with `edit` applied to its text.
fn spec_of(fixture_name: &str, file: &str, edit: &dyn Fn(String) -> String) -> Spec {
    let path = fixture(fixture_name).join(file);
    let text = edit(std::fs::read_to_string(&path).unwrap());
    let loaded = imgbake::config::load_text(&path, &text);
    loaded.spec.unwrap_or_else(|| panic!("{fixture_name}: {:?}", loaded.diagnostics))
}

/// The file of `target` for `spec`, with the origins in `on_volume` placed
/// on a volume and the rest baked.
fn render(spec: &Spec, target: DeployTarget, on_volume: &[&str], volume_claim: Option<&str>) -> DeployFile {
    deploy::check(spec, target).unwrap();
    with_input(spec, on_volume, volume_claim, &|input| {
        let mut files = deploy::render(target, input);
        assert_eq!(files.len(), 1);
        files.remove(0)
    })
}

/// Calls `run` with the deploy input of `spec`; the image config as the
/// layout sets it (the prefetch hook wraps the entrypoint in volume mode).
fn with_input<T>(spec: &Spec, on_volume: &[&str], volume_claim: Option<&str>, run: &dyn Fn(&DeployInput) -> T) -> T {
    with_artifacts(spec, on_volume, &[], volume_claim, run)
}

/// [`with_input`] where the sources named in `artifacts` were pushed as
/// artifacts (`(origin, pinned reference)`).
fn with_artifacts<T>(
    spec: &Spec,
    on_volume: &[&str],
    artifacts: &[(String, String)],
    volume_claim: Option<&str>,
    run: &dyn Fn(&DeployInput) -> T,
) -> T {
    let placements: Vec<SourcePlacement> = spec
        .weights
        .iter()
        .map(|entry| SourcePlacement {
            origin: entry.origin.clone(),
            uri: entry.uri.clone(),
            configured: entry.mode,
            placement: if on_volume.contains(&entry.origin.as_str()) {
                Placement::Volume
            } else if artifacts.iter().any(|(origin, _)| origin == &entry.origin) {
                Placement::Artifact
            } else {
                Placement::Bake
            },
            reason: None,
        })
        .collect();
    let entrypoint = if on_volume.is_empty() {
        spec.runtime.entrypoint.clone()
    } else {
        imgbake::layout::wrap_entrypoint(&spec.runtime.entrypoint)
    };
    let config = ImageConfig {
        env: spec.runtime.environment.clone(),
        entrypoint,
        workdir: spec.app.workdir.clone(),
        port: spec.runtime.port,
        labels: BTreeMap::new(),
        conda_prefix: None,
    };
    let image = pinned(&spec.name);
    let input = DeployInput {
        spec,
        image: &image,
        config: &config,
        placements: &placements,
        image_size: 9_400_000_000,
        volume_claim,
        artifacts,
    };
    run(&input)
}

fn imgbake(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imgbake")).args(args).env("NO_COLOR", "1").output().unwrap()
}

/// `imgbake validate` accepts the file with no warning.
fn assert_validates(file: &DeployFile) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(file.name);
    std::fs::write(&path, &file.contents).unwrap();
    let output = imgbake(&["validate", path.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{}\n{stderr}", file.contents);
    assert!(!stderr.contains("warning"), "{}\n{stderr}", file.contents);
}

/// Loads every document of a Kubernetes YAML stream into the official
/// client's models: a key that is not a field of the model (a misspelling)
/// fails, a missing required field fails (the models check in their
/// setters), and the models serialize back to exactly the documents (nothing
/// was dropped on the way).
const K8S_CHECK: &str = r#"
import json, sys, yaml
from kubernetes import client

api = client.ApiClient()
SCALARS = {"str", "int", "bool", "float", "object", "datetime", "date"}

def strict(data, klass, path):
    if klass.startswith("list["):
        if not isinstance(data, list):
            sys.exit(f"{path}: expected a list of {klass[5:-1]}")
        for i, item in enumerate(data):
            strict(item, klass[5:-1], f"{path}[{i}]")
        return
    if klass.startswith("dict("):
        value_type = klass[5:-1].split(", ", 1)[1]
        for key, value in data.items():
            strict(value, value_type, f"{path}.{key}")
        return
    if klass in SCALARS:
        return
    model = getattr(client.models, klass)
    fields = {json_name: name for name, json_name in model.attribute_map.items()}
    if not isinstance(data, dict):
        sys.exit(f"{path}: expected a mapping ({klass})")
    for key, value in data.items():
        if key not in fields:
            sys.exit(f"{path}.{key}: not a field of {klass}")
        strict(value, model.openapi_types[fields[key]], f"{path}.{key}")

MODELS = {"Deployment": "V1Deployment", "Service": "V1Service"}
kinds = []
for doc in yaml.safe_load_all(open(sys.argv[1])):
    klass = MODELS[doc["kind"]]
    strict(doc, klass, doc["kind"])
    loaded = api._ApiClient__deserialize(doc, klass)
    back = api.sanitize_for_serialization(loaded)
    if back != doc:
        sys.exit(f"{doc['kind']} changed on the way through {klass}:\n{json.dumps(back)}\n{json.dumps(doc)}")
    kinds.append(type(loaded).__name__)
print(" ".join(kinds))
"#;

fn has_kubernetes_client() -> bool {
    let found =
        Command::new("python3").args(["-c", "import kubernetes, yaml"]).output().is_ok_and(|o| o.status.success());
    if !found {
        if tools::skipping_tool_tests() {
            eprintln!("skipping: the kubernetes Python client is not installed and IMGBAKE_SKIP_TOOL_TESTS=1");
            return false;
        }
        panic!("the kubernetes Python client is needed: `python3 -m pip install 'kubernetes>=31'` (bash .ci/run installs it)");
    }
    true
}

/// The kinds the official client loaded, or its complaint.
fn load_with_kubernetes_client(yaml: &str) -> Result<String, String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kubernetes.yaml");
    std::fs::write(&path, yaml).unwrap();
    let output = tools::run_with_timeout(
        Command::new("python3").args(["-c", K8S_CHECK, path.to_str().unwrap()]),
        Duration::from_secs(120),
    );
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).trim().to_string())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).to_string())
    }
}

const SDXL_HF: &str = "imgbake.weights[0]";

#[test]
fn cerebrium_toml_runs_the_digest_with_the_custom_runtime_hardware_and_scaling() {
    let spec = spec_of("cerebrium-gpu-weights", "cerebrium.toml", &|t| t);
    let file = render(&spec, DeployTarget::Cerebrium, &[SDXL_HF], None);
    insta::assert_snapshot!("cerebrium-gpu-weights", file.contents);
    assert_validates(&file);
    let again = imgbake::config::load_text(Path::new("/deploy/cerebrium.toml"), &file.contents).spec.unwrap();
    assert_eq!(again.base.image, pinned("sdxl-gpu"));
    assert_eq!(again.hardware, spec.hardware);
    assert_eq!(again.scaling, spec.scaling);
    assert_eq!(again.runtime.port, spec.runtime.port);
    assert_eq!(again.runtime.healthcheck_endpoint, spec.runtime.healthcheck_endpoint);
    assert_eq!(again.runtime.entrypoint, imgbake::layout::wrap_entrypoint(&spec.runtime.entrypoint));
}

#[test]
fn truss_config_runs_the_digest_as_a_docker_server() {
    let spec = spec_of("truss-volume", "config.yaml", &|text| {
        // Values a YAML 1.1 reader (PyYAML, Truss) takes for a bool or an int when written plain.
        text.replace("  HF_HUB_ENABLE_HF_TRANSFER: \"1\"\n", "  HF_HUB_ENABLE_HF_TRANSFER: \"1\"\n  TORCH_COMPILE: \"on\"\n  BATCH: \"1_000\"\n")
            + "docker_server:\n  start_command: python3 -m uvicorn app:app --port 8000\n  server_port: 8000\n  readiness_endpoint: /ready\n  liveness_endpoint: /health\n  predict_endpoint: /v1/generate\n"
    });
    let file = render(&spec, DeployTarget::Baseten, &["model_cache[0]", "model_cache[1]"], None);
    insta::assert_snapshot!("truss-volume", file.contents);
    assert_validates(&file);
    let again = imgbake::config::load_text(Path::new("/deploy/config.yaml"), &file.contents).spec.unwrap();
    assert_eq!(again.base.image, pinned("sdxl-truss"));
    assert_eq!(again.runtime.secret_names, ["hf_access_token"]);
    assert_eq!(again.runtime.environment, spec.runtime.environment);
    // Truss runs start_command through a shell: it runs the hook, then the server.
    let [shell, dash_c, command] = &again.runtime.entrypoint[..] else { panic!("{:?}", again.runtime.entrypoint) };
    assert_eq!((shell.as_str(), dash_c.as_str()), ("/bin/sh", "-c"));
    assert_eq!(shlex::split(command).unwrap(), imgbake::layout::wrap_entrypoint(&spec.runtime.entrypoint));
    assert_eq!((again.runtime.port, again.runtime.readycheck_endpoint.as_deref()), (Some(8000), Some("/ready")));
    // The predict route is carried over, so the file needs no hand edit.
    assert_eq!(again.runtime.predict_endpoint.as_deref(), Some("/v1/generate"));
    assert!(!file.contents.contains("Add `docker_server.predict_endpoint`"), "{}", file.contents);
    let hardware = again.hardware.unwrap();
    assert_eq!((hardware.compute, hardware.gpu_count), (vec!["A10G".to_string()], 1));
    assert!((hardware.memory_gb.unwrap() - spec.hardware.as_ref().unwrap().memory_gb.unwrap()).abs() < 1e-9);
}

#[test]
fn a_cerebrium_app_deploys_on_baseten_with_its_gpu_named_the_truss_way() {
    let spec = spec_of("cerebrium-gpu-weights", "cerebrium.toml", &|t| {
        t.replace("target = \"cerebrium\"", "target = \"baseten\"")
    });
    let file = render(&spec, DeployTarget::Baseten, &[], None);
    assert_validates(&file);
    assert!(file.contents.contains("accelerator: A10G\n"), "{}", file.contents);
    assert!(file.contents.contains("memory: \"24G\"\n"), "{}", file.contents);
}

#[test]
fn runpod_template_has_the_digest_disk_env_and_volume_path() {
    let spec = spec_of("cerebrium-gpu-weights", "cerebrium.toml", &|t| {
        t.replace("target = \"cerebrium\"", "target = \"runpod\"")
    });
    let file = render(&spec, DeployTarget::Runpod, &[SDXL_HF], None);
    insta::assert_snapshot!("runpod-gpu-weights", file.contents);
    // The body of Runpod's REST `POST /v1/templates`: these fields and no others.
    let template: serde_json::Value = serde_json::from_str(&file.contents).unwrap();
    let keys: Vec<&str> = template.as_object().unwrap().keys().map(String::as_str).collect();
    let known = [
        "category",
        "containerDiskInGb",
        "containerRegistryAuthId",
        "dockerEntrypoint",
        "dockerStartCmd",
        "env",
        "imageName",
        "isPublic",
        "isServerless",
        "name",
        "ports",
        "readme",
        "volumeInGb",
        "volumeMountPath",
    ];
    assert!(keys.iter().all(|k| known.contains(k)), "{keys:?}");
    assert_eq!(template["imageName"], pinned("sdxl-gpu").as_str());
    assert_eq!(template["isServerless"], true);
    assert_eq!(template["containerDiskInGb"], 12, "9.4 GB unpacked, with 25% to spare");
    assert_eq!(template["volumeMountPath"], "/runpod-volume");
    // The secret by name: a Runpod secret reference, never a value.
    assert_eq!(template["env"]["HF_TOKEN"], "{{ RUNPOD_SECRET_HF_TOKEN }}");
    assert!(template["env"].as_object().unwrap().values().all(|v| v.is_string()));
}

#[test]
fn volume_weights_on_another_platform_than_the_build_target_are_named() {
    let spec = spec_of("cerebrium-gpu-weights", "cerebrium.toml", &|t| t);
    let warnings = with_input(&spec, &[SDXL_HF], None, &|input| deploy::warnings(DeployTarget::Runpod, input));
    assert_eq!(warnings.len(), 1);
    assert!(warnings[0].contains("weights on cerebrium's volume (/persistent-storage)"), "{warnings:?}");
    assert!(warnings[0].contains("set `target = \"runpod\"`"), "{warnings:?}");
    // Baked weights, the build's own platform, and Kubernetes (it mounts where the image points) are fine.
    assert!(with_input(&spec, &[], None, &|input| deploy::warnings(DeployTarget::Runpod, input)).is_empty());
    assert!(with_input(&spec, &[SDXL_HF], None, &|input| deploy::warnings(DeployTarget::Cerebrium, input)).is_empty());
    assert!(with_input(&spec, &[SDXL_HF], None, &|input| deploy::warnings(DeployTarget::Kubernetes, input)).is_empty());
}

/// `--deploy-target` and the cost profiles agree on where an artifact can
/// be mounted: only Kubernetes has image volumes (`image_volumes = 1`).
#[test]
fn artifact_weights_on_a_platform_without_image_volumes_are_named() {
    let spec = spec_of("cerebrium-gpu-weights", "cerebrium.toml", &|t| t);
    let reference = format!("registry.example.com/apps/sdxl-gpu-weights-sdxl@sha256:{}", "ab".repeat(32));
    let artifacts = [(SDXL_HF.to_string(), reference)];
    for target in [DeployTarget::Cerebrium, DeployTarget::Baseten, DeployTarget::Runpod] {
        let warnings = with_artifacts(&spec, &[], &artifacts, None, &|input| deploy::warnings(target, input));
        assert_eq!(warnings.len(), 1, "{target}: {warnings:?}");
        assert!(
            warnings[0]
                .starts_with(&format!("{SDXL_HF} is a ModelPack artifact, but {target} does not mount image volumes")),
            "{warnings:?}"
        );
        assert!(warnings[0].contains("--deploy-target kubernetes"), "{warnings:?}");
    }
    let kubernetes =
        with_artifacts(&spec, &[], &artifacts, None, &|input| deploy::warnings(DeployTarget::Kubernetes, input));
    assert!(kubernetes.is_empty(), "{kubernetes:?}");
}

#[test]
fn kubernetes_yaml_loads_into_the_official_client_models() {
    let spec = spec_of("cerebrium-gpu-weights", "cerebrium.toml", &|t| {
        t.replace("target = \"cerebrium\"", "target = \"generic\"")
    });
    let file = render(&spec, DeployTarget::Kubernetes, &[SDXL_HF], None);
    insta::assert_snapshot!("kubernetes-gpu-weights", file.contents);
    assert!(file.contents.contains(&format!("image: {}\n", pinned("sdxl-gpu"))));
    assert!(file.contents.contains("emptyDir: {}"), "{}", file.contents);
    // Baked weights only: no volume at all.
    let baked = render(&spec, DeployTarget::Kubernetes, &[], None);
    assert!(!baked.contents.contains("volumes:"), "{}", baked.contents);

    // Baseten's layout (a volume per source at the app's path), on a claim.
    let truss = spec_of("truss-volume", "config.yaml", &|text| {
        text + "docker_server:\n  start_command: python3 -m uvicorn app:app --port 8000\n  server_port: 8000\n"
    });
    let claimed = render(&truss, DeployTarget::Kubernetes, &["model_cache[0]", "model_cache[1]"], Some("sdxl-weights"));
    insta::assert_snapshot!("kubernetes-truss-volume-claim", claimed.contents);

    if !has_kubernetes_client() {
        return;
    }
    for yaml in [&file.contents, &baked.contents, &claimed.contents] {
        assert_eq!(load_with_kubernetes_client(yaml).unwrap(), "V1Deployment V1Service", "{yaml}");
    }
    // An artifact source is an image volume by digest at the source's path,
    // beside the emptyDir of a volume source: the client's V1ImageVolumeSource takes ours.
    let reference = format!("registry.example.com/apps/sdxl-gpu-weights-sdxl@sha256:{}", "ab".repeat(32));
    let artifacts = [(SDXL_HF.to_string(), reference.clone())];
    let with_image = with_artifacts(&spec, &[], &artifacts, None, &|input| {
        deploy::render(DeployTarget::Kubernetes, input).remove(0).contents
    });
    assert!(with_image.contains(&format!("        image:\n          reference: {reference}\n")), "{with_image}");
    assert!(with_image.contains("pullPolicy: IfNotPresent"), "{with_image}");
    assert_eq!(load_with_kubernetes_client(&with_image).unwrap(), "V1Deployment V1Service");
    // And the check is real: a misspelt field fails.
    let misspelt = file.contents.replace("readinessProbe:", "readynessProbe:");
    let complaint = load_with_kubernetes_client(&misspelt).unwrap_err();
    assert!(complaint.contains("readynessProbe: not a field of V1Container"), "{complaint}");
}

#[test]
fn deploy_needs_a_push_and_a_server_to_start() {
    let project = fixture("cerebrium-local-weights");
    let dir = tempfile::tempdir().unwrap();
    let deploy_dir = dir.path().join("deploy");
    let output =
        imgbake(&["build", project.to_str().unwrap(), "--base", "scratch", "--deploy", deploy_dir.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("--deploy writes files that run the pushed image by digest"), "{stderr}");
    assert!(stderr.contains("hint: add --push"), "{stderr}");

    // A Truss model class (no docker_server) has no server command to hand over.
    let output = imgbake(&[
        "build",
        fixture("truss-bake").to_str().unwrap(),
        "--push",
        "127.0.0.1:1/apps/bert:1",
        "--deploy",
        deploy_dir.to_str().unwrap(),
    ]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("the baseten hand-off needs the port the server listens on"), "{stderr}");
    assert!(stderr.contains("hint: add `docker_server:`"), "{stderr}");
    assert!(!deploy_dir.exists());
}

#[test]
fn build_push_writes_the_files_with_the_pushed_digest() {
    if !tools::require_tool("docker-registry") {
        return;
    }
    let registry = TestRegistry::start();
    let host = registry.host();
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    tools::copy_tree(&fixture("cerebrium-local-weights"), &project);
    let cache = dir.path().join("cache");
    let output_arg = format!("oci:{}:app", dir.path().join("out").display());
    let target = format!("{host}/apps/local-weights:1");
    let build = |deploy_dir: &Path, extra: &[&str]| {
        let mut args = vec![
            "build",
            "--json",
            project.to_str().unwrap(),
            "--base",
            "scratch",
            "--insecure-registry",
            &host,
            "--output",
            &output_arg,
            "--cache-dir",
            cache.to_str().unwrap(),
            "--push",
            &target,
            "--deploy",
            deploy_dir.to_str().unwrap(),
        ];
        args.extend_from_slice(extra);
        let output = imgbake(&args);
        assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };

    // The config's own target: cerebrium.
    let cerebrium_dir = dir.path().join("deploy-cerebrium");
    let result = build(&cerebrium_dir, &[]);
    let pushed = result["pushed"].as_str().unwrap();
    let digest = result["manifest_digest"].as_str().unwrap();
    assert_eq!(pushed, format!("{host}/apps/local-weights:1@{digest}"));
    // By digest alone, without the tag.
    let pushed = &format!("{host}/apps/local-weights@{digest}");
    assert_eq!(result["deploy_files"][0], cerebrium_dir.join("cerebrium.toml").to_str().unwrap());
    let toml = std::fs::read_to_string(cerebrium_dir.join("cerebrium.toml")).unwrap();
    assert!(toml.contains(&format!("docker_base_image_url = \"{pushed}\"")), "{toml}");
    assert_validates(&DeployFile { name: "cerebrium.toml", contents: toml });

    for (deploy_target, name) in
        [("baseten", "config.yaml"), ("runpod", "runpod-template.json"), ("kubernetes", "kubernetes.yaml")]
    {
        let deploy_dir = dir.path().join(format!("deploy-{deploy_target}"));
        let again = build(&deploy_dir, &["--deploy-target", deploy_target]);
        assert_eq!(again["manifest_digest"].as_str().unwrap(), digest, "the same image");
        let written: Vec<String> = std::fs::read_dir(&deploy_dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(written, [name], "only the chosen target's file");
        let contents = std::fs::read_to_string(deploy_dir.join(name)).unwrap();
        assert!(contents.contains(pushed), "{contents}");
        match deploy_target {
            "baseten" => assert_validates(&DeployFile { name: "config.yaml", contents }),
            "runpod" => {
                let template: serde_json::Value = serde_json::from_str(&contents).unwrap();
                assert_eq!(template["imageName"], pushed.as_str());
                assert_eq!(template["containerDiskInGb"], 5, "a small image gets the smallest disk");
            }
            _ => {
                if has_kubernetes_client() {
                    assert_eq!(load_with_kubernetes_client(&contents).unwrap(), "V1Deployment V1Service");
                }
            }
        }
    }
}

/// The image config (`config` of the OCI config blob) of the layout's only image.
fn image_config(layout: &Path) -> serde_json::Value {
    let read_json = |digest: &str| -> serde_json::Value {
        let hex = digest.strip_prefix("sha256:").unwrap();
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap()).unwrap()
    };
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    let manifest = read_json(index["manifests"][0]["digest"].as_str().unwrap());
    read_json(manifest["config"]["digest"].as_str().unwrap())["config"].clone()
}

#[test]
fn a_volume_build_hands_over_the_hook_command_the_volume_and_the_secret_by_name() {
    if !tools::require_tool("docker-registry") {
        return;
    }
    const TOKEN: &str = "hf_imgbakeDEPLOYtoken_5c1e";
    const TOKEN_VAR: &str = "IMGBAKE_TEST_HF_TOKEN";
    let dir = tempfile::tempdir().unwrap();
    let hub_root = dir.path().join("hub");
    support::hub::make_repo(
        &hub_root,
        "org/tiny",
        "main",
        &[("config.json", b"{\"hidden_size\": 8}\n".to_vec()), ("model.safetensors", vec![7; 4096])],
    );
    let hub = support::hub::TestHub::start(&hub_root, Some(TOKEN));
    let registry = TestRegistry::start();
    let host = registry.host();
    let project = dir.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::copy(fixture("cerebrium-local-weights").join("server.py"), project.join("server.py")).unwrap();
    std::fs::write(
        project.join("cerebrium.toml"),
        format!(
            "[cerebrium.deployment]\nname = \"hf-app\"\n\n[cerebrium.runtime.custom]\nport = 8080\n\
             entrypoint = [\"python3\", \"server.py\"]\nreadycheck_endpoint = \"/ready\"\n\n\
             [cerebrium.hardware]\ncpu = 2\nmemory = 4.0\n\n\
             [[imgbake.weights]]\nsource = \"hf://org/tiny@main\"\nmount = \"tiny\"\nmode = \"volume\"\nsecret = \"{TOKEN_VAR}\"\n"
        ),
    )
    .unwrap();
    let layout = dir.path().join("out");
    let build = |deploy_dir: &Path, target: &str| {
        let output = Command::new(env!("CARGO_BIN_EXE_imgbake"))
            .args(["build", "--json", project.to_str().unwrap(), "--base", "scratch", "--insecure-registry", &host])
            .arg("--output")
            .arg(format!("oci:{}:app", layout.display()))
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .args(["--push", &format!("{host}/apps/hf-app:1"), "--deploy", deploy_dir.to_str().unwrap()])
            .args(["--deploy-target", target, "--deploy-volume-claim", "hf-weights"])
            .env("HF_ENDPOINT", hub.endpoint())
            .env(TOKEN_VAR, TOKEN)
            .env("NO_COLOR", "1")
            .output()
            .unwrap();
        assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
        serde_json::from_slice::<serde_json::Value>(&output.stdout).unwrap()
    };

    let cerebrium_dir = dir.path().join("deploy-cerebrium");
    let result = build(&cerebrium_dir, "cerebrium");
    let image = format!("{host}/apps/hf-app@{}", result["manifest_digest"].as_str().unwrap());
    let toml = std::fs::read_to_string(cerebrium_dir.join("cerebrium.toml")).unwrap();
    assert_validates(&DeployFile { name: "cerebrium.toml", contents: toml.clone() });
    let deployed = imgbake::config::load_text(&cerebrium_dir.join("cerebrium.toml"), &toml).spec.unwrap();
    assert_eq!(deployed.base.image, image);
    // The platform starts what the image starts: the hook, then the app.
    let entrypoint: Vec<String> = serde_json::from_value(image_config(&layout)["Entrypoint"].clone()).unwrap();
    assert_eq!(entrypoint[..2], ["/usr/local/bin/imgbake", "prefetch"]);
    assert_eq!(deployed.runtime.entrypoint, entrypoint);
    assert!(toml.contains(&format!("Cerebrium dashboard: {TOKEN_VAR}")), "{toml}");

    let kubernetes_dir = dir.path().join("deploy-kubernetes");
    build(&kubernetes_dir, "kubernetes");
    let yaml = std::fs::read_to_string(kubernetes_dir.join("kubernetes.yaml")).unwrap();
    assert!(yaml.contains(&format!("image: \"{image}\"")), "{yaml}");
    assert!(yaml.contains("mountPath: /persistent-storage\n"), "{yaml}");
    assert!(yaml.contains("claimName: hf-weights\n"), "{yaml}");
    assert!(yaml.contains(&format!("key: {TOKEN_VAR}\n")), "{yaml}");
    assert!(yaml.contains("path: /ready\n"), "{yaml}");
    for file in [&toml, &yaml] {
        assert!(!file.contains(TOKEN), "a secret value reached a deploy file:\n{file}");
    }
    if has_kubernetes_client() {
        assert_eq!(load_with_kubernetes_client(&yaml).unwrap(), "V1Deployment V1Service");
    }
}
