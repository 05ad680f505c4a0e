//! Weights as ModelPack artifacts (`mode = "artifact"`, docs/weights.md):
//! a project whose hub weights go to an artifact is built and pushed to a
//! loopback registry; the ORAS Python client reads the artifact back, its
//! files equal the hub's and its config passes the model-spec schema; a
//! second build (another app change) gives the same artifact digest and
//! uploads no weights byte; the app image, run under runc with the
//! artifact's layers unpacked read-only at the mount path (what a pod's
//! image volume is), reads the weights there.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::data::random_bytes;
use support::hub::{self, TestHub};
use support::registry::TestRegistry;
use support::tools::{self, BindMount};

const TIMEOUT: Duration = Duration::from_secs(300);
const MOUNT_PATH: &str = "/app/model_cache/tiny";

/// Two shards (a layer each at a 1 MiB split) and two config files.
fn model_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("config.json", b"{\"hidden_size\": 64}\n".to_vec()),
        ("tokenizer.json", "{\"vocab\": [\"a\", \"b\"]}\n".repeat(500).into_bytes()),
        ("model-00001-of-00002.safetensors", random_bytes(3 << 20, 21)),
        ("model-00002-of-00002.safetensors", random_bytes(2 << 20, 22)),
    ]
}

/// A small app that checks every weights file at the mount path, as a
/// model server would load them.
fn project(dir: &Path, app_version: u32) -> PathBuf {
    let project = dir.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("app.py"),
        format!(
            "# app version {app_version}\nimport hashlib, json, os\nroot = '{MOUNT_PATH}'\n\
             print(json.dumps({{n: hashlib.sha256(open(os.path.join(root, n), 'rb').read()).hexdigest() \
             for n in sorted(os.listdir(root))}}))\n"
        ),
    )
    .unwrap();
    std::fs::write(
        project.join("cerebrium.toml"),
        "[cerebrium.deployment]\nname = \"artifact-app\"\npython_version = \"3.11\"\ninclude = [\"app.py\"]\n\n\
         [cerebrium.runtime.custom]\nport = 8080\nentrypoint = [\"python3\", \"/app/app.py\"]\n\n\
         [imgbake]\nweights_split_mib = 1\n\n\
         [[imgbake.weights]]\nsource = \"hf://org/tiny@main\"\nmount = \"tiny\"\nmode = \"artifact\"\n",
    )
    .unwrap();
    project
}

fn build(registry: &TestRegistry, hub: &TestHub, project: &Path, out: &Path, cache: &Path) -> Value {
    let host = registry.host();
    let push = format!("{host}/team/app:v1");
    let base = format!("rootfs:{}", tools::base_rootfs().display());
    let output_ref = format!("oci:{}:app", out.display());
    let mut command = Command::new(env!("CARGO_BIN_EXE_imgbake"));
    command
        .args(["build", "--json", project.to_str().unwrap(), "--base", &base, "--output", &output_ref])
        .args(["--push", &push, "--insecure-registry", &host, "--cache-dir", cache.to_str().unwrap()])
        .env("NO_COLOR", "1")
        .env("HF_ENDPOINT", hub.endpoint());
    let output = tools::run_with_timeout(&mut command, TIMEOUT);
    parse(&output)
}

fn parse(output: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    serde_json::from_slice(&output.stdout).expect("build --json")
}

fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::Digest as _;
    hex::encode(sha2::Sha256::digest(bytes))
}

/// Blob uploads the registry started into `repository`.
fn uploads_into(registry: &TestRegistry, repository: &str) -> usize {
    let needle = format!("\"POST /v2/{repository}/blobs/uploads/");
    registry.log().lines().filter(|l| l.contains(&needle)).count()
}

#[test]
fn an_artifact_source_is_pushed_read_back_by_oras_and_mounted_for_the_app_under_runc() {
    if !tools::require_tool("runc") || !tools::require_tool("umoci") || !tools::require_tool("docker-registry") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hub_root = dir.path().join("hub");
    hub::make_repo(&hub_root, "org/tiny", "main", &model_files());
    let hub = TestHub::start(&hub_root, None);
    let registry = TestRegistry::start();
    let project = project(dir.path(), 1);

    let first = build(&registry, &hub, &project, &dir.path().join("out1"), &dir.path().join("cache1"));
    let artifact = &first["artifacts"][0];
    let digest = artifact["manifest_digest"].as_str().unwrap().to_string();
    assert_eq!(artifact["mount_path"], MOUNT_PATH);
    let pushed = artifact["pushed"].as_str().unwrap();
    assert!(pushed.contains("/team/app-weights-tiny:v1@") && pushed.ends_with(&digest), "{artifact}");
    // The app image carries no weights byte.
    for layer in first["layers"].as_array().unwrap() {
        let paths = layer["paths"].as_array().unwrap();
        assert!(paths.iter().all(|p| !p[0].as_str().unwrap().contains("model_cache")), "{layer}");
    }
    // imgbake.lock records the artifact's digest.
    let lock = std::fs::read_to_string(project.join("imgbake.lock")).unwrap();
    assert!(lock.contains(&format!("digest = \"{digest}\"")), "{lock}");

    // A third party reads it back: ORAS pulls every blob (digests checked),
    // the config passes the model-spec schema, the files are the hub's.
    let support = tools::repo_root().join("tests/support/modelpack");
    let read_dir = dir.path().join("oras");
    let mut command = Command::new("python3");
    command
        .arg(support.join("check_artifact.py"))
        .arg(registry.host())
        .arg("team/app-weights-tiny:v1")
        .arg(&read_dir)
        .arg(support.join("config-schema.json"));
    let read = tools::run_checked(&mut command, TIMEOUT);
    let read: Value = serde_json::from_slice(&read.stdout).unwrap();
    assert_eq!(read["manifest"]["artifactType"], "application/vnd.cncf.model.manifest.v1+json");
    assert_eq!(read["config"]["config"]["format"], "safetensors");
    let media_types: Vec<&str> =
        read["manifest"]["layers"].as_array().unwrap().iter().map(|l| l["mediaType"].as_str().unwrap()).collect();
    assert_eq!(
        media_types,
        [
            "application/vnd.cncf.model.weight.v1.tar",
            "application/vnd.cncf.model.weight.v1.tar",
            "application/vnd.cncf.model.weight.config.v1.tar"
        ]
    );
    for (name, content) in model_files() {
        assert_eq!(read["files"][name], sha256_hex(&content), "{name}");
    }

    // An app change, rebuilt from an empty cache: the same artifact, and no
    // blob uploaded into its repository.
    let uploads = uploads_into(&registry, "team/app-weights-tiny");
    let project = self::project(dir.path(), 2);
    let second = build(&registry, &hub, &project, &dir.path().join("out2"), &dir.path().join("cache2"));
    assert_eq!(second["artifacts"][0]["manifest_digest"], digest);
    assert_ne!(second["manifest_digest"], first["manifest_digest"]);
    assert_eq!(uploads_into(&registry, "team/app-weights-tiny"), uploads, "{}", registry.log());

    // The pod's view: the artifact's layers unpacked, mounted read-only at the mount path.
    let mounted = read_dir.join("files");
    let bundle = dir.path().join("bundle");
    tools::umoci_unpack(&dir.path().join("out2"), "app", &bundle);
    tools::prepare_runc_bundle(&bundle, &[], &[], &[BindMount::read_only(&mounted, MOUNT_PATH)]);
    let run = tools::runc_run(&bundle, "imgbake-artifact-test", TIMEOUT);
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    let seen: Value = serde_json::from_str(stdout.trim()).unwrap();
    for (name, content) in model_files() {
        assert_eq!(seen[name], sha256_hex(&content), "{name}: {stdout}");
    }
}
