//! One ImagePlan for every output: for each weights source kind (local, hf
//! plain, hf-cache, s3, gcs, azure, https) and each mode (bake, volume,
//! auto), `plan --format json` lists the same layers (order, names, files
//! and their sizes) as `build --json` writes, and `dockerfile`'s context
//! has one stage per planned weights layer with the same files. A
//! combination that cannot be built (local + volume) is refused by all
//! three with the same line. `mode = "auto"` is decided by the same cost
//! model everywhere and costs no extra requests; `--locked` means the same
//! for `build --builder buildah` as for the native build.

mod support;

use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::azurite::TestAzurite;
use support::data::random_bytes;
use support::hub::{self, TestHub};
use support::registry::TestRegistry;
use support::s3::TestS3;
use support::tools;

const TIMEOUT: Duration = Duration::from_secs(300);
const MODES: [&str; 3] = ["bake", "volume", "auto"];

/// A profile under which a volume is the cheaper start for any remote
/// source: the registry crawls at 1 kB/s and the hook is 1 kB.
const SLOW_REGISTRY_PROFILE: &str =
    "[params]\nprefetch_hook_bytes = 1000\nregistry_bandwidth = 1000\nlayer_bandwidth = 1000\n";

/// The files every source holds: two small ones that share a layer and a
/// 3 MiB one (over the 1 MiB split) in a layer of its own.
fn weights_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("config.json", b"{\"hidden_size\": 64, \"layers\": 2}\n".to_vec()),
        ("tokenizer.json", "{\"vocab\": [\"a\", \"b\"]}\n".repeat(2000).into_bytes()),
        ("model.safetensors", random_bytes(3 << 20, 77)),
    ]
}

/// One source kind on its loopback server: the `source = …` lines of its
/// weights entry and the environment imgbake needs to reach it.
struct Source {
    entry: String,
    env: Vec<(String, String)>,
    remote: bool,
    /// Keeps the servers alive.
    _servers: (Option<TestHub>, Option<TestS3>, Option<TestAzurite>),
}

fn hub_with_repo(root: &Path) -> TestHub {
    hub::make_repo(root, "org/model", "main", &weights_files());
    TestHub::start(root, None)
}

fn hub_env(hub: &TestHub) -> Vec<(String, String)> {
    vec![("HF_ENDPOINT".to_string(), hub.endpoint())]
}

fn source(kind: &str, dir: &Path) -> Option<Source> {
    let none = (None, None, None);
    Some(match kind {
        "local" => {
            let weights = dir.join("local-weights");
            std::fs::create_dir_all(&weights).unwrap();
            for (name, bytes) in weights_files() {
                std::fs::write(weights.join(name), bytes).unwrap();
            }
            let entry = format!("source = \"{}\"", weights.display());
            Source { entry, env: Vec::new(), remote: false, _servers: none }
        }
        "hf" | "hf-cache" => {
            let hub = hub_with_repo(&dir.join("hub"));
            let layout = if kind == "hf-cache" { "\nlayout = \"hf-cache\"" } else { "" };
            let entry = format!("source = \"hf://org/model@main\"{layout}");
            Source { entry, env: hub_env(&hub), remote: true, _servers: (Some(hub), None, None) }
        }
        "https" => {
            let hub = hub_with_repo(&dir.join("hub"));
            let entry = format!("source = \"{}/org/model/resolve/main/model.safetensors\"", hub.endpoint());
            Source { entry, env: hub_env(&hub), remote: true, _servers: (Some(hub), None, None) }
        }
        "s3" => {
            let s3 = TestS3::start()?;
            s3.create_bucket("models");
            for (name, bytes) in weights_files() {
                s3.put_object("models", &format!("m/{name}"), &bytes);
            }
            let entry = "source = \"s3://models/m\"".to_string();
            Source { entry, env: s3.env(), remote: true, _servers: (None, Some(s3), None) }
        }
        "gcs" => {
            // GCS's XML API is S3's protocol: moto serves it (see tests/build_weights_object.rs).
            let s3 = TestS3::start()?;
            s3.create_bucket("gcs-models");
            for (name, bytes) in weights_files() {
                s3.put_public_object("gcs-models", &format!("m/{name}"), &bytes);
            }
            let key = s3.gcs_service_account_key();
            let entry = "source = \"gs://gcs-models/m\"\nsecret = \"IMGBAKE_TEST_GCS_KEY\"".to_string();
            let env = vec![("IMGBAKE_TEST_GCS_KEY".to_string(), key)];
            Source { entry, env, remote: true, _servers: (None, Some(s3), None) }
        }
        "azure" => {
            let azure = TestAzurite::start()?;
            azure.create_container("models");
            for (name, bytes) in weights_files() {
                azure.put_blob("models", &format!("m/{name}"), &bytes);
            }
            let entry = "source = \"azure://models/m\"".to_string();
            Source { entry, env: azure.env(), remote: true, _servers: (None, None, Some(azure)) }
        }
        other => panic!("unknown source kind {other}"),
    })
}

/// A small app with one weights entry in `mode`, split at 1 MiB.
fn project(dir: &Path, name: &str, source: &Source, mode: &str) -> PathBuf {
    project_with(dir, name, source, mode, "")
}

/// [`project`] with more `[imgbake]` settings.
fn project_with(dir: &Path, name: &str, source: &Source, mode: &str, settings: &str) -> PathBuf {
    let project = dir.join(name);
    std::fs::create_dir_all(project.join("src")).unwrap();
    std::fs::write(project.join("app.py"), "from src.model import load\nload()\n").unwrap();
    std::fs::write(project.join("src/model.py"), "def load():\n    return open('/app/model_cache/m/x')\n").unwrap();
    let config = format!(
        "[cerebrium.deployment]\nname = \"{name}\"\n\n[cerebrium.runtime.custom]\nport = 8080\n\
         entrypoint = [\"python3\", \"app.py\"]\n\n[imgbake]\nweights_split_mib = 1\n{settings}\n\
         [[imgbake.weights]]\n{}\nmount = \"m\"\nmode = \"{mode}\"\n",
        source.entry
    );
    std::fs::write(project.join("cerebrium.toml"), config).unwrap();
    project
}

fn imgbake(args: &[&str], env: &[(String, String)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_imgbake"));
    command.args(args).env("NO_COLOR", "1").env_remove("HF_TOKEN").env_remove("HUGGING_FACE_HUB_TOKEN");
    command.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    tools::run_with_timeout(&mut command, TIMEOUT)
}

fn json(output: &Output, what: &str) -> Value {
    assert_eq!(output.status.code(), Some(0), "{what}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| panic!("{what}: {e}"))
}

/// A layer's name and its regular files with their sizes (when known).
type Layer = (String, Option<Vec<(String, u64)>>);

/// `(name, files)` of every layer of a `plan` or `build` JSON document.
fn layers(list: &Value) -> Vec<Layer> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|layer| {
            let paths = layer["paths"].as_array().map(|paths| {
                paths.iter().map(|p| (p[0].as_str().unwrap().to_string(), p[1].as_u64().unwrap())).collect()
            });
            (layer["what"].as_str().unwrap().to_string(), paths)
        })
        .collect()
}

/// Regular files under `dir`, relative, with their sizes (symlinks not followed).
fn files_under(dir: &Path) -> Vec<(String, u64)> {
    let mut files: Vec<(String, u64)> = walkdir::WalkDir::new(dir)
        .into_iter()
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_file())
        .map(|e| {
            let relative = e.path().strip_prefix(dir).unwrap().to_string_lossy().into_owned();
            (relative, e.metadata().unwrap().len())
        })
        .collect();
    files.sort();
    files
}

/// The first `error: …` line of a refused command.
fn error_line(output: &Output) -> String {
    let stderr = String::from_utf8_lossy(&output.stderr);
    stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("no error line in {stderr}")).to_string()
}

/// plan, build and dockerfile of one source kind in every mode.
fn check_source_kind(kind: &str) {
    let dir = tempfile::tempdir().unwrap();
    let Some(source) = source(kind, dir.path()) else { return };
    let profile = dir.path().join("slow-registry.toml");
    std::fs::write(&profile, SLOW_REGISTRY_PROFILE).unwrap();
    let profile = profile.to_str().unwrap();
    for mode in MODES {
        let name = format!("{kind}-{mode}");
        let project = project(dir.path(), &name, &source, mode);
        let project = project.to_str().unwrap();
        let cache = dir.path().join(format!("cache-{name}"));
        let out = format!("oci:{}:app", dir.path().join(format!("out-{name}")).display());
        let context = dir.path().join(format!("context-{name}"));
        let plan_args = ["plan", project, "--format", "json", "--base", "scratch", "--profile", profile];
        let build_args = [
            "build",
            "--json",
            project,
            "--base",
            "scratch",
            "--output",
            &out,
            "--cache-dir",
            cache.to_str().unwrap(),
            "--profile",
            profile,
        ];
        let dockerfile_args = [
            "dockerfile",
            project,
            "-o",
            context.to_str().unwrap(),
            "--cache-dir",
            cache.to_str().unwrap(),
            "--profile",
            profile,
        ];
        let plan = imgbake(&plan_args, &source.env);
        let build = imgbake(&build_args, &source.env);
        let dockerfile = imgbake(&dockerfile_args, &source.env);

        if !source.remote && mode == "volume" {
            // Impossible: all three refuse, with the same line, exit 2.
            let lines: Vec<String> = [&plan, &build, &dockerfile].iter().map(|o| error_line(o)).collect();
            for (output, line) in [&plan, &build, &dockerfile].iter().zip(&lines) {
                assert_eq!(output.status.code(), Some(2), "{name}: {line}");
            }
            assert!(lines[0].contains("a local directory is only baked"), "{name}: {}", lines[0]);
            assert!(lines.iter().all(|l| *l == lines[0]), "{name}: {lines:#?}");
            continue;
        }
        let plan = json(&plan, &format!("{name}: plan"));
        let build = json(&build, &format!("{name}: build"));
        assert_eq!(dockerfile.status.code(), Some(0), "{name}: {}", String::from_utf8_lossy(&dockerfile.stderr));

        // The same layers, in the same order, with the same files.
        let planned = layers(&plan["layers"]);
        let built = layers(&build["layers"]);
        let names = |list: &[Layer]| list.iter().map(|l| l.0.clone()).collect::<Vec<_>>();
        assert_eq!(names(&planned), names(&built), "{name}");
        for ((what, planned_files), (_, built_files)) in planned.iter().zip(&built) {
            let planned_files = planned_files.as_ref().unwrap_or_else(|| panic!("{name}: {what} has no planned files"));
            assert_eq!(Some(planned_files), built_files.as_ref(), "{name}: {what}");
        }

        // Where the weights went, as decided.
        let on_volume = source.remote && mode != "bake";
        let has_volume_layer = names(&planned).iter().any(|n| n == "volume manifest and prefetch hook");
        assert_eq!(has_volume_layer, on_volume, "{name}: {:?}", names(&planned));
        if mode == "auto" {
            let chosen = plan["decisions"][0]["chosen"].as_str().unwrap();
            assert_eq!(chosen, if source.remote { "volume" } else { "bake" }, "{name}");
        }

        // The Dockerfile: one COPY stage per planned weights layer, with the same files.
        let text = std::fs::read_to_string(context.join("Dockerfile")).unwrap();
        let weights_layers: Vec<&Layer> = planned.iter().filter(|(what, _)| what.starts_with("weights ")).collect();
        assert_eq!(text.matches("COPY --from=weights").count(), weights_layers.len(), "{name}\n{text}");
        let mut stage_dirs: Vec<PathBuf> = match std::fs::read_dir(context.join("weights")) {
            Ok(read) => read.map(|e| e.unwrap().path()).collect(),
            Err(_) => Vec::new(),
        };
        stage_dirs.sort();
        assert_eq!(stage_dirs.len(), weights_layers.len(), "{name}: {stage_dirs:?}");
        for ((what, files), stage) in weights_layers.iter().zip(&stage_dirs) {
            assert_eq!(&files_under(stage), files.as_ref().unwrap(), "{name}: {what} vs {}", stage.display());
        }
        let app_files = &planned.iter().find(|(what, _)| what == "app files").unwrap().1;
        let app: Vec<(String, u64)> =
            files_under(&context.join("app")).into_iter().map(|(path, size)| (format!("app/{path}"), size)).collect();
        assert_eq!(Some(&app), app_files.as_ref(), "{name}: app files");
        if on_volume {
            let volume = planned.iter().find(|(what, _)| what.starts_with("volume")).unwrap().1.clone().unwrap();
            assert_eq!(files_under(&context.join("imgbake/volume")), volume, "{name}: the volume layer");
            assert!(text.contains("\"prefetch\",\"--manifest\""), "{name}\n{text}");
        }
    }
}

#[test]
fn local_weights_plan_build_and_dockerfile_agree() {
    check_source_kind("local");
}

#[test]
fn hf_weights_plan_build_and_dockerfile_agree() {
    check_source_kind("hf");
}

#[test]
fn hf_cache_weights_plan_build_and_dockerfile_agree() {
    check_source_kind("hf-cache");
}

#[test]
fn s3_weights_plan_build_and_dockerfile_agree() {
    check_source_kind("s3");
}

#[test]
fn gcs_weights_plan_build_and_dockerfile_agree() {
    check_source_kind("gcs");
}

#[test]
fn azure_weights_plan_build_and_dockerfile_agree() {
    check_source_kind("azure");
}

#[test]
fn https_weights_plan_build_and_dockerfile_agree() {
    check_source_kind("https");
}

/// Requests the hub has seen so far, by `METHOD /path`.
fn hub_requests(hub: &TestHub) -> BTreeMap<String, u64> {
    let stats = hub.stats();
    let requests = stats["requests"].as_object().unwrap();
    requests
        .iter()
        .filter(|(path, _)| !path.contains("/_stats"))
        .map(|(path, n)| (path.clone(), n.as_u64().unwrap()))
        .collect()
}

fn difference(before: &BTreeMap<String, u64>, after: &BTreeMap<String, u64>) -> u64 {
    after.iter().map(|(path, n)| n - before.get(path).copied().unwrap_or(0)).sum()
}

/// Lines of the registry's access log that are requests.
fn registry_requests(registry: &TestRegistry) -> usize {
    registry.log().lines().filter(|l| l.contains("\"GET /v2/") || l.contains("\"HEAD /v2/")).count()
}

#[test]
fn auto_sends_no_more_requests_than_the_mode_it_chooses() {
    if !tools::require_tool("skopeo") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let hub = hub_with_repo(&dir.path().join("hub"));
    let registry = TestRegistry::start();
    // A small base in the loopback registry (a scratch image with one file).
    let base_project = dir.path().join("base");
    std::fs::create_dir_all(&base_project).unwrap();
    std::fs::write(base_project.join("cerebrium.toml"), "[cerebrium.deployment]\nname = \"base\"\n").unwrap();
    std::fs::write(base_project.join("hello.txt"), "hello\n").unwrap();
    let base_layout = dir.path().join("base-out");
    let made = tools::imgbake_build_on_scratch(env!("CARGO_BIN_EXE_imgbake"), &base_project, &base_layout, &[]);
    assert_eq!(made.status.code(), Some(0), "{}", String::from_utf8_lossy(&made.stderr));
    let base = format!("{}/imgbake-test/base:1", registry.host());
    let copied = tools::skopeo_copy(
        &format!("oci:{}:app", base_layout.join("out").display()),
        &format!("docker://{base}"),
        &["--dest-tls-verify=false"],
    );
    assert!(copied.status.success(), "{}", String::from_utf8_lossy(&copied.stderr));

    let profile = dir.path().join("slow-registry.toml");
    std::fs::write(&profile, SLOW_REGISTRY_PROFILE).unwrap();
    let source = Source {
        entry: "source = \"hf://org/model@main\"".into(),
        env: hub_env(&hub),
        remote: true,
        _servers: (None, None, None),
    };
    // With the check on, the missing python3 is named with the base given by --base.
    let checked = project(dir.path(), "missing-python", &source, "bake");
    let out = format!("oci:{}:app", dir.path().join("out-checked").display());
    let args = ["build", checked.to_str().unwrap(), "--base", &base, "--insecure-registry", &registry.host()];
    let refused = imgbake(&[&args[..], &["--output", &out]].concat(), &source.env);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains(&format!("the base image {base} has no `python3`")), "{stderr}");

    let mut counts = BTreeMap::new();
    for mode in ["volume", "auto"] {
        // The base holds no python3: the entrypoint check is off, this test counts requests.
        let project =
            project_with(dir.path(), &format!("requests-{mode}"), &source, mode, "check_entrypoint = false\n");
        let out = format!("oci:{}:app", dir.path().join(format!("out-{mode}")).display());
        let cache = dir.path().join(format!("cache-{mode}"));
        let (hub_before, registry_before) = (hub_requests(&hub), registry_requests(&registry));
        let args = [
            "build",
            "--json",
            project.to_str().unwrap(),
            "--base",
            &base,
            "--insecure-registry",
            &registry.host(),
            "--output",
            &out,
            "--cache-dir",
            cache.to_str().unwrap(),
            "--profile",
            profile.to_str().unwrap(),
        ];
        let built = json(&imgbake(&args, &source.env), mode);
        assert!(layers(&built["layers"]).iter().any(|(what, _)| what.starts_with("volume")), "{mode}: {built:#}");
        let hub_sent = difference(&hub_before, &hub_requests(&hub));
        let registry_sent = registry_requests(&registry) - registry_before;
        counts.insert(mode, (hub_sent, registry_sent));
    }
    eprintln!("(hub, registry) requests by mode: {counts:?}");
    let (volume, auto) = (counts["volume"], counts["auto"]);
    assert!(volume.0 > 0 && volume.1 > 0, "{counts:?}");
    assert!(auto.0 <= volume.0, "hub requests: auto {} > volume {}", auto.0, volume.0);
    assert!(auto.1 <= volume.1, "registry requests: auto {} > volume {}", auto.1, volume.1);
}

#[test]
fn a_stale_lock_stops_buildah_like_the_native_build() {
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("app");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("app.py"), "print('hi')\n").unwrap();
    let config = |requirement: &str| {
        format!("[cerebrium.deployment]\nname = \"locked\"\n\n[cerebrium.dependencies.pip]\n{requirement}\n")
    };
    std::fs::write(project.join("cerebrium.toml"), config("requests = \"2.32.3\"")).unwrap();
    // A lock answering other inputs (as if the config changed since `imgbake lock`).
    let lock =
        "version = 1\n\n[inputs]\nbase = \"debian:bookworm-slim\"\npython_version = \"3.11\"\ninstaller = \"uv\"\n\
                pip = [\"requests==2.31.0\"]\napt = []\nweights = []\n\n[base]\nimage = \"debian:bookworm-slim\"\n";
    std::fs::write(project.join("imgbake.lock"), lock).unwrap();
    let out = format!("oci:{}:app", dir.path().join("out").display());
    let native = imgbake(&["build", project.to_str().unwrap(), "--locked", "--output", &out], &[]);
    let buildah =
        imgbake(&["build", project.to_str().unwrap(), "--locked", "--builder", "buildah", "--output", &out], &[]);
    let dockerfile = imgbake(
        &["dockerfile", project.to_str().unwrap(), "--locked", "-o", dir.path().join("ctx").to_str().unwrap()],
        &[],
    );
    for output in [&native, &buildah, &dockerfile] {
        assert_eq!(output.status.code(), Some(1), "{}", String::from_utf8_lossy(&output.stderr));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("does not match the config") && stderr.contains("--locked"), "{stderr}");
        assert!(stderr.contains("+ pip = [\"requests==2.32.3\"]"), "{stderr}");
    }
    assert_eq!(error_line(&native), error_line(&buildah));
    assert!(!dir.path().join("out").exists(), "nothing was built");
}

/// sha256 of every regular file in an OCI layout's layer blobs, by path.
fn layout_files(layout: &Path) -> BTreeMap<String, String> {
    use sha2::{Digest as _, Sha256};
    support::layout::regular_files(layout)
        .into_iter()
        .map(|(path, bytes)| (path, hex::encode(Sha256::digest(bytes))))
        .collect()
}

#[test]
fn buildah_builds_a_sample_of_cells_into_the_native_files() {
    if !tools::require_tool("buildah") || !tools::require_tool("skopeo") {
        return;
    }
    for (kind, mode) in [("hf-cache", "bake"), ("s3", "volume")] {
        let dir = tempfile::tempdir().unwrap();
        let Some(source) = source(kind, dir.path()) else { continue };
        let project = project(dir.path(), &format!("{kind}-{mode}"), &source, mode);
        let mut trees = Vec::new();
        for builder in ["native", "buildah"] {
            let layout = dir.path().join(format!("out-{builder}"));
            let out = format!("oci:{}:app", layout.display());
            let cache = dir.path().join("cache");
            let mut args = vec![
                "build",
                project.to_str().unwrap(),
                "--base",
                "scratch",
                "--output",
                &out,
                "--cache-dir",
                cache.to_str().unwrap(),
            ];
            if builder == "buildah" {
                args.extend(["--builder", "buildah"]);
            }
            let output = imgbake(&args, &source.env);
            assert_eq!(
                output.status.code(),
                Some(0),
                "{kind} {mode} {builder}: {}",
                String::from_utf8_lossy(&output.stderr)
            );
            trees.push(layout_files(&layout));
        }
        let (native, buildah) = (&trees[0], &trees[1]);
        assert!(
            native.keys().any(|p| p.starts_with("app/model_cache/m") || p == "etc/imgbake/weights.json"),
            "{native:#?}"
        );
        assert_eq!(native, buildah, "{kind} {mode}: the native and buildah images differ");
    }
}
