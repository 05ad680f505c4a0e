//! The registry as the build cache (docs/build.md, "Registry cache"): a
//! project with hub weights (split into several layers) and a wheel from a
//! private index is built and pushed to a loopback registry; a rebuild with
//! an empty cache directory — a fresh CI runner — then downloads nothing
//! from the hub or the index and uploads no layer, and gives the same
//! image. Counted at the servers.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::data::random_bytes;
use support::hub::{self, TestHub};
use support::private_index::PrivateIndex;
use support::registry::TestRegistry;
use support::tools;

const TIMEOUT: Duration = Duration::from_secs(300);

/// Two 3 MiB shards (a layer each at a 1 MiB split) and two small files
/// (one layer together).
fn model_files(second_shard_seed: u64) -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("config.json", b"{\"hidden_size\": 64}\n".to_vec()),
        ("tokenizer.json", "{\"vocab\": [\"a\", \"b\"]}\n".repeat(2000).into_bytes()),
        ("model-00001-of-00002.safetensors", random_bytes(3 << 20, 11)),
        ("model-00002-of-00002.safetensors", random_bytes(3 << 20, second_shard_seed)),
    ]
}

struct Servers {
    hub: TestHub,
    index: PrivateIndex,
    registry: TestRegistry,
    hub_root: PathBuf,
    env: Vec<(String, String)>,
}

fn servers(dir: &Path) -> Servers {
    let hub_root = dir.join("hub");
    hub::make_repo(&hub_root, "org/model", "main", &model_files(12));
    let hub = TestHub::start(&hub_root, None);
    let wheels = dir.join("wheels");
    let script = tools::repo_root().join("tests/support/make_wheel.py");
    let mut command = Command::new("python3");
    command.arg(&script).arg(&wheels).args(["imgbake-test-cached", "1.0", "py3-none-any", "--script"]);
    tools::run_checked(&mut command, Duration::from_secs(60));
    let index = PrivateIndex::start(&wheels, "ci", "s3cret-token");
    let env = vec![
        ("HF_ENDPOINT".to_string(), hub.endpoint()),
        ("UV_INDEX_URL".to_string(), index.url_with_credentials("ci", "s3cret-token")),
    ];
    Servers { hub, index, registry: TestRegistry::start(), hub_root, env }
}

fn project(dir: &Path) -> PathBuf {
    let project = dir.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("app.py"), "print('hi')\n").unwrap();
    std::fs::write(
        project.join("cerebrium.toml"),
        "[cerebrium.deployment]\nname = \"cached\"\npython_version = \"3.11\"\nuse_uv = true\n\n\
         [cerebrium.runtime.custom]\nport = 8080\nentrypoint = [\"python3\", \"app.py\"]\n\n\
         [cerebrium.dependencies.pip]\nimgbake-test-cached = \"==1.0\"\n\n\
         [imgbake]\nweights_split_mib = 1\n\n\
         [[imgbake.weights]]\nsource = \"hf://org/model@main\"\nmount = \"m\"\nmode = \"bake\"\n",
    )
    .unwrap();
    project
}

/// `imgbake build --json` run in `cwd`, pushing to `app:v1`.
fn build(servers: &Servers, project: &Path, cwd: &Path, cache: &Path, extra: &[&str]) -> Value {
    std::fs::create_dir_all(cwd).unwrap();
    let host = servers.registry.host();
    let push = format!("{host}/team/app:v1");
    let mut command = Command::new(env!("CARGO_BIN_EXE_imgbake"));
    command
        .current_dir(cwd)
        .args(["build", "--json", project.to_str().unwrap(), "--base", "scratch", "--push", &push])
        .args(["--insecure-registry", &host, "--cache-dir", cache.to_str().unwrap()])
        .args(extra)
        .env("NO_COLOR", "1")
        .envs(servers.env.iter().map(|(k, v)| (k, v)));
    let output = tools::run_with_timeout(&mut command, TIMEOUT);
    parse(&output)
}

fn parse(output: &Output) -> Value {
    let stderr = String::from_utf8_lossy(&output.stderr).to_string();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(!stderr.contains("s3cret"), "{stderr}");
    let mut json: Value = serde_json::from_slice(&output.stdout).expect("build --json");
    json["stderr"] = Value::String(stderr);
    json
}

/// Bytes of weights files the hub (and its CDN) sent: every body but the API's JSON.
fn weights_bytes_sent(hub: &TestHub) -> u64 {
    let stats = hub.stats();
    let Some(sent) = stats["bytes_sent"].as_object() else { return 0 };
    sent.iter().filter(|(path, _)| !path.contains("/api/")).map(|(_, n)| n.as_u64().unwrap_or(0)).sum()
}

/// Bytes the hub and its CDN sent of one file (by name, and by sha256 on the CDN).
fn bytes_sent_for(hub: &TestHub, name: &str, content: &[u8]) -> u64 {
    use sha2::Digest as _;
    hub.bytes_sent(name) + hub.bytes_sent(&hex::encode(sha2::Sha256::digest(content)))
}

/// Blob uploads (and mounts) the registry started, in `team/app`.
fn blob_uploads(registry: &TestRegistry) -> usize {
    registry.log().lines().filter(|l| l.contains("\"POST /v2/team/app/blobs/uploads/")).count()
}

fn wheel_downloads(index: &PrivateIndex) -> u64 {
    index.stats()["files"].as_u64().unwrap()
}

fn registry_cache_hits(json: &Value) -> u64 {
    json["registry_cache"]["hits"].as_u64().unwrap()
}

/// Python, three weights layers: four keyed layers.
const KEYED_LAYERS: u64 = 4;

/// `imgbake lock` of `project` against the servers; it must succeed.
fn relock(servers: &Servers, project: &Path, cache: &Path) -> std::process::Output {
    let mut lock = Command::new(env!("CARGO_BIN_EXE_imgbake"));
    lock.args(["lock", project.to_str().unwrap(), "--base", "scratch", "--cache-dir"])
        .arg(cache)
        .envs(servers.env.iter().map(|(k, v)| (k, v)));
    let locked = tools::run_with_timeout(&mut lock, TIMEOUT);
    assert_eq!(locked.status.code(), Some(0), "{}", String::from_utf8_lossy(&locked.stderr));
    locked
}

#[test]
fn a_fresh_runner_rebuild_fetches_nothing_and_uploads_no_layer() {
    if !tools::require_tool("uv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let servers = servers(dir.path());
    let project = project(dir.path());

    let first = build(&servers, &project, &dir.path().join("runner-1"), &dir.path().join("cache-1"), &[]);
    assert_eq!(registry_cache_hits(&first), 0, "{}", first["stderr"]);
    assert_eq!(first["registry_cache"]["recorded"].as_u64(), Some(KEYED_LAYERS), "{}", first["stderr"]);
    let lock = std::fs::read_to_string(project.join("imgbake.lock")).unwrap();
    assert!(lock.contains("sample = "), "the lock keeps each file's compressibility sample:\n{lock}");

    let (hub_bytes, wheels, uploads) =
        (weights_bytes_sent(&servers.hub), wheel_downloads(&servers.index), blob_uploads(&servers.registry));
    assert!(hub_bytes >= 6 << 20 && wheels >= 1, "the first build fetched the weights ({hub_bytes}) and the wheel");

    // A fresh runner: empty cache directory, default output.
    let runner = dir.path().join("runner-2");
    let second = build(&servers, &project, &runner, &dir.path().join("cache-2"), &[]);
    let stderr = second["stderr"].as_str().unwrap();
    assert_eq!(registry_cache_hits(&second), KEYED_LAYERS, "{stderr}");
    assert_eq!(weights_bytes_sent(&servers.hub), hub_bytes, "no weights byte from the hub: {stderr}");
    assert_eq!(wheel_downloads(&servers.index), wheels, "no wheel download: {stderr}");
    assert_eq!(blob_uploads(&servers.registry), uploads, "no blob uploaded: {stderr}");
    assert_eq!(second["manifest_digest"], first["manifest_digest"], "the same image");
    assert_eq!(second["registry_cache"]["recorded"].as_u64(), Some(0));
    assert!(stderr.contains("came from the registry cache and are only in the registry"), "{stderr}");

    // With --output, the layout is complete: the hits' blobs come from the
    // registry, still nothing from the sources.
    let layout = dir.path().join("complete");
    let output = format!("oci:{}:app", layout.display());
    let third =
        build(&servers, &project, &dir.path().join("runner-3"), &dir.path().join("cache-3"), &["--output", &output]);
    assert_eq!(registry_cache_hits(&third), KEYED_LAYERS);
    assert_eq!(weights_bytes_sent(&servers.hub), hub_bytes);
    for layer in third["layers"].as_array().unwrap() {
        let digest = layer["digest"].as_str().unwrap().trim_start_matches("sha256:");
        let blob = layout.join("blobs/sha256").join(digest);
        assert_eq!(std::fs::metadata(&blob).map(|m| m.len()).ok(), layer["size"].as_u64(), "{}", blob.display());
    }

    // --no-cache and --cache-from none build every layer again (from the
    // sources: the cache directory is empty).
    let fourth = build(&servers, &project, &dir.path().join("runner-4"), &dir.path().join("cache-4"), &["--no-cache"]);
    assert_eq!(registry_cache_hits(&fourth), 0);
    assert!(weights_bytes_sent(&servers.hub) >= hub_bytes + (6 << 20));
    assert_eq!(fourth["manifest_digest"], first["manifest_digest"], "same key, same bytes: built from scratch again");
    let fifth =
        build(&servers, &project, &dir.path().join("runner-5"), &dir.path().join("cache-5"), &["--cache-from", "none"]);
    assert_eq!(registry_cache_hits(&fifth), 0);
}

#[test]
fn a_changed_weights_file_fetches_and_pushes_only_its_split() {
    if !tools::require_tool("uv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let servers = servers(dir.path());
    let project = project(dir.path());
    let first = build(&servers, &project, &dir.path().join("runner-1"), &dir.path().join("cache-1"), &[]);
    assert_eq!(first["registry_cache"]["recorded"].as_u64(), Some(KEYED_LAYERS));

    hub::make_repo(&servers.hub_root, "org/model", "main", &model_files(99));
    let locked = relock(&servers, &project, &dir.path().join("cache-lock"));
    let moved = String::from_utf8_lossy(&locked.stdout);
    assert!(moved.contains("+ revision = "), "the lock moves to the new commit:\n{moved}");

    let (unchanged, changed) = (&model_files(99)[2], &model_files(99)[3]);
    let unchanged_sent = || bytes_sent_for(&servers.hub, unchanged.0, &unchanged.1);
    let changed_sent = || bytes_sent_for(&servers.hub, changed.0, &changed.1);
    let before = (unchanged_sent(), changed_sent());
    let uploads = blob_uploads(&servers.registry);
    let second = build(&servers, &project, &dir.path().join("runner-2"), &dir.path().join("cache-2"), &[]);
    let stderr = second["stderr"].as_str().unwrap();
    assert_eq!(registry_cache_hits(&second), KEYED_LAYERS - 1, "{stderr}");
    assert_eq!(unchanged_sent(), before.0, "the unchanged shard is not fetched: {stderr}");
    assert_eq!(changed_sent() - before.1, 3 << 20, "the changed shard is fetched once: {stderr}");
    // The changed layer and the new image config.
    assert_eq!(blob_uploads(&servers.registry) - uploads, 2, "{}", servers.registry.log());
    assert_eq!(second["registry_cache"]["recorded"].as_u64(), Some(1));
}

/// A project whose hub weights go to a ModelPack artifact (no Python
/// dependencies): two shard layers and one layer of config files.
fn artifact_project(dir: &Path) -> PathBuf {
    let project = dir.join("artifact-project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("app.py"), "print('hi')\n").unwrap();
    std::fs::write(
        project.join("cerebrium.toml"),
        "[cerebrium.deployment]\nname = \"cached-artifact\"\n\n\
         [cerebrium.runtime.custom]\nport = 8080\nentrypoint = [\"python3\", \"app.py\"]\n\n\
         [imgbake]\nweights_split_mib = 1\n\n\
         [[imgbake.weights]]\nsource = \"hf://org/model@main\"\nmount = \"m\"\nmode = \"artifact\"\n",
    )
    .unwrap();
    project
}

/// Blob uploads (and mounts) the registry started in `repository`.
fn blob_uploads_to(registry: &TestRegistry, repository: &str) -> usize {
    let needle = format!("\"POST /v2/{repository}/blobs/uploads/");
    registry.log().lines().filter(|l| l.contains(&needle)).count()
}

/// The artifact's layers as `build --json` lists them: (digest, size, from the registry cache).
fn artifact_layers(json: &Value) -> Vec<(String, u64, bool)> {
    json["artifacts"][0]["layers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            let digest = l["digest"].as_str().unwrap().to_string();
            (digest, l["size"].as_u64().unwrap(), l["registry_cache"].as_bool().unwrap())
        })
        .collect()
}

/// Issue 20: the layers of an artifact source are keyed like baked weights,
/// so a fresh runner rebuilds an unchanged artifact without fetching its
/// weights from the hub or uploading a layer, and gets the same digest.
#[test]
fn a_fresh_runner_rebuilds_an_artifact_without_fetching_its_weights() {
    let dir = tempfile::tempdir().unwrap();
    let servers = servers(dir.path());
    let project = artifact_project(dir.path());
    let first = build(&servers, &project, &dir.path().join("runner-1"), &dir.path().join("cache-1"), &[]);
    let stderr = first["stderr"].as_str().unwrap();
    let layers = artifact_layers(&first);
    assert_eq!(layers.len(), 3, "two shards and the config files: {}", first["artifacts"]);
    assert_eq!(registry_cache_hits(&first), 0, "{stderr}");
    assert_eq!(first["registry_cache"]["recorded"].as_u64(), Some(3), "{stderr}");
    let hub_bytes = weights_bytes_sent(&servers.hub);
    assert!(hub_bytes >= 6 << 20, "the first build fetched the weights ({hub_bytes})");
    let uploads = blob_uploads_to(&servers.registry, "team/app-weights-m");
    assert!(uploads >= 3, "{}", servers.registry.log());

    let second = build(&servers, &project, &dir.path().join("runner-2"), &dir.path().join("cache-2"), &[]);
    let stderr = second["stderr"].as_str().unwrap();
    assert_eq!(registry_cache_hits(&second), 3, "{stderr}");
    assert_eq!(weights_bytes_sent(&servers.hub), hub_bytes, "no weights byte from the hub: {stderr}");
    assert_eq!(blob_uploads_to(&servers.registry, "team/app-weights-m"), uploads, "no blob uploaded: {stderr}");
    assert_eq!(second["artifacts"][0]["manifest_digest"], first["artifacts"][0]["manifest_digest"], "{stderr}");
    assert_eq!(second["manifest_digest"], first["manifest_digest"]);
    assert!(artifact_layers(&second).iter().all(|(.., hit)| *hit), "{}", second["artifacts"]);
    assert_eq!(second["registry_cache"]["recorded"].as_u64(), Some(0));

    // With --output, the artifact in the layout is complete: its layers come
    // from the registry, still nothing from the hub.
    let layout = dir.path().join("complete");
    let output = format!("oci:{}:app", layout.display());
    let third =
        build(&servers, &project, &dir.path().join("runner-3"), &dir.path().join("cache-3"), &["--output", &output]);
    assert_eq!(registry_cache_hits(&third), 3, "{}", third["stderr"]);
    assert_eq!(weights_bytes_sent(&servers.hub), hub_bytes);
    for (digest, size, _) in artifact_layers(&third) {
        let blob = layout.join("blobs/sha256").join(digest.trim_start_matches("sha256:"));
        assert_eq!(std::fs::metadata(&blob).map(|m| m.len()).ok(), Some(size), "{}", blob.display());
    }

    // A changed shard: only its layer is fetched and built again.
    hub::make_repo(&servers.hub_root, "org/model", "main", &model_files(77));
    relock(&servers, &project, &dir.path().join("cache-lock"));
    let changed = &model_files(77)[3];
    // After the lock, which samples the changed file.
    let (before, hub_bytes) = (bytes_sent_for(&servers.hub, changed.0, &changed.1), weights_bytes_sent(&servers.hub));
    let fourth = build(&servers, &project, &dir.path().join("runner-4"), &dir.path().join("cache-4"), &[]);
    let stderr = fourth["stderr"].as_str().unwrap();
    assert_eq!(registry_cache_hits(&fourth), 2, "{stderr}");
    assert_eq!(bytes_sent_for(&servers.hub, changed.0, &changed.1) - before, 3 << 20, "{stderr}");
    assert_eq!(weights_bytes_sent(&servers.hub) - hub_bytes, 3 << 20, "only the changed shard: {stderr}");
    assert_ne!(fourth["artifacts"][0]["manifest_digest"], first["artifacts"][0]["manifest_digest"]);
    assert_eq!(fourth["registry_cache"]["recorded"].as_u64(), Some(1), "{stderr}");
}

/// The registry's cache entries of `team/app`, by the layer name they record.
fn cache_entries(registry: &TestRegistry) -> Vec<(String, String, Value)> {
    let base = format!("http://{}/v2/team/app", registry.host());
    let tags: Value = reqwest::blocking::get(format!("{base}/tags/list")).unwrap().json().unwrap();
    tags["tags"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|tag| tag.as_str().filter(|t| t.starts_with("imgbake-cache-")).map(str::to_string))
        .map(|tag| {
            let manifest: Value = reqwest::blocking::Client::new()
                .get(format!("{base}/manifests/{tag}"))
                .header("Accept", "application/vnd.oci.image.manifest.v1+json")
                .send()
                .unwrap()
                .json()
                .unwrap();
            let name = manifest["annotations"]["dev.imgbake.cache.layer"].as_str().unwrap().to_string();
            (name, tag, manifest)
        })
        .collect()
}

#[test]
fn an_entry_whose_blob_is_missing_or_of_another_size_is_ignored() {
    if !tools::require_tool("uv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let servers = servers(dir.path());
    let project = project(dir.path());
    build(&servers, &project, &dir.path().join("runner-1"), &dir.path().join("cache-1"), &[]);
    let entries = cache_entries(&servers.registry);
    assert_eq!(entries.len() as u64, KEYED_LAYERS, "{entries:?}");
    let text = serde_json::to_string(&entries).unwrap();
    assert!(!text.contains("s3cret") && !text.contains("127.0.0.1") && !text.contains("/tmp"), "{text}");

    let client = reqwest::blocking::Client::new();
    let base = format!("http://{}/v2/team/app", servers.registry.host());
    let weights: Vec<&(String, String, Value)> =
        entries.iter().filter(|(name, ..)| name.starts_with("weights")).collect();
    // One entry says the wrong size; the blob of another is deleted from the repository.
    let (_, tag, manifest) = weights[0];
    let mut wrong = manifest.clone();
    wrong["layers"][0]["size"] = Value::from(wrong["layers"][0]["size"].as_u64().unwrap() + 1);
    let put = client
        .put(format!("{base}/manifests/{tag}"))
        .header("Content-Type", "application/vnd.oci.image.manifest.v1+json")
        .body(serde_json::to_vec(&wrong).unwrap())
        .send()
        .unwrap();
    assert!(put.status().is_success(), "{:?}", put.text());
    let (_, _, deleted) = weights[1];
    let digest = deleted["layers"][0]["digest"].as_str().unwrap();
    let delete = client.delete(format!("{base}/blobs/{digest}")).send().unwrap();
    assert!(delete.status().is_success(), "{:?}", delete.text());

    let hub_bytes = weights_bytes_sent(&servers.hub);
    let again = build(&servers, &project, &dir.path().join("runner-2"), &dir.path().join("cache-2"), &[]);
    let stderr = again["stderr"].as_str().unwrap();
    assert_eq!(registry_cache_hits(&again), KEYED_LAYERS - 2, "{stderr}");
    assert!(weights_bytes_sent(&servers.hub) > hub_bytes, "the two layers are built from the source again");
}

/// `--cache-to`/`--cache-from` name another repository of the same
/// registry: the entries (and their blobs, mounted there) live in it, and a
/// push to a third repository mounts the cached layers instead of building them.
#[test]
fn a_shared_cache_repository_is_read_by_another_app_through_mounts() {
    if !tools::require_tool("uv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let servers = servers(dir.path());
    let project = project(dir.path());
    let cache = format!("{}/team/build-cache", servers.registry.host());
    let shared = ["--cache-from", cache.as_str(), "--cache-to", cache.as_str()];
    let first = build(&servers, &project, &dir.path().join("runner-1"), &dir.path().join("cache-1"), &shared);
    assert_eq!(first["registry_cache"]["recorded"].as_u64(), Some(KEYED_LAYERS), "{}", first["stderr"]);

    let host = servers.registry.host();
    let other = format!("{host}/team/other:v1");
    let hub_bytes = weights_bytes_sent(&servers.hub);
    let runner = dir.path().join("runner-2");
    std::fs::create_dir_all(&runner).unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_imgbake"));
    command
        .current_dir(&runner)
        .args(["build", "--json", project.to_str().unwrap(), "--base", "scratch", "--push", &other])
        .args(["--insecure-registry", &host, "--cache-dir", runner.join("cache").to_str().unwrap()])
        .args(["--cache-from", &cache, "--cache-to", "none"])
        .env("NO_COLOR", "1")
        .envs(servers.env.iter().map(|(k, v)| (k, v)));
    let second = parse(&tools::run_with_timeout(&mut command, TIMEOUT));
    let stderr = second["stderr"].as_str().unwrap();
    assert_eq!(registry_cache_hits(&second), KEYED_LAYERS, "{stderr}");
    assert_eq!(weights_bytes_sent(&servers.hub), hub_bytes, "{stderr}");
    let log = servers.registry.log();
    let mounts =
        log.lines().filter(|l| l.contains("POST /v2/team/other/blobs/uploads/?from=team%2Fbuild-cache")).count()
            + log.lines().filter(|l| l.contains("POST /v2/team/other/blobs/uploads/?mount=")).count();
    assert!(mounts as u64 >= KEYED_LAYERS, "the cached layers are mounted into team/other:\n{log}");
    assert_eq!(second["manifest_digest"], first["manifest_digest"]);
}

/// Without any registry cache, a push to another repository of the same
/// registry mounts the blobs this machine pushed before (the cache
/// directory's push record) instead of uploading them again: a second app
/// with the same lock uploads nothing but what differs.
#[test]
fn a_push_to_another_repository_mounts_what_this_machine_pushed_before() {
    if !tools::require_tool("uv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let servers = servers(dir.path());
    let project = project(dir.path());
    let no_registry_cache = ["--cache-from", "none", "--cache-to", "none"];
    let cache = dir.path().join("cache");
    let first = build(&servers, &project, &dir.path().join("runner"), &cache, &no_registry_cache);
    let layers = first["layers"].as_array().unwrap().len();

    let host = servers.registry.host();
    let other = format!("{host}/team/other:v1");
    let mut command = Command::new(env!("CARGO_BIN_EXE_imgbake"));
    command
        .current_dir(dir.path().join("runner"))
        .args(["build", "--json", project.to_str().unwrap(), "--base", "scratch", "--push", &other])
        .args(["--insecure-registry", &host, "--cache-dir", cache.to_str().unwrap()])
        .args(no_registry_cache)
        .env("NO_COLOR", "1")
        .envs(servers.env.iter().map(|(k, v)| (k, v)));
    let second = parse(&tools::run_with_timeout(&mut command, TIMEOUT));
    assert_eq!(second["manifest_digest"], first["manifest_digest"]);
    let log = servers.registry.log();
    let mounts = log.lines().filter(|l| l.contains("POST /v2/team/other/blobs/uploads/?from=team%2Fapp")).count()
        + log.lines().filter(|l| l.contains("POST /v2/team/other/blobs/uploads/?mount=")).count();
    let uploads = log.lines().filter(|l| l.contains("PUT /v2/team/other/blobs/uploads/")).count();
    assert_eq!(uploads, 0, "every blob (config and {layers} layers) is mounted, none uploaded:\n{log}");
    assert_eq!(mounts, layers + 1, "{log}");
}

/// A rebuild on the machine that pushed the image, into a new `--output`
/// layout: the registry cache's hits are layers the local cache holds too,
/// so they are linked into the layout, not downloaded from the registry.
#[test]
fn hits_the_local_cache_holds_are_not_downloaded_into_a_new_layout() {
    if !tools::require_tool("uv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let servers = servers(dir.path());
    let project = project(dir.path());
    let cache = dir.path().join("cache");
    let runner = dir.path().join("runner");
    let first = build(&servers, &project, &runner, &cache, &[]);
    let out = dir.path().join("out-2");
    let output = format!("oci:{}:v2", out.display());
    let second = build(&servers, &project, &runner, &cache, &["--output", &output]);
    assert_eq!(registry_cache_hits(&second), KEYED_LAYERS, "{}", second["stderr"]);
    assert_eq!(second["manifest_digest"], first["manifest_digest"]);
    let log = servers.registry.log();
    let blob_gets: Vec<&str> = log.lines().filter(|l| l.contains("\"GET /v2/team/app/blobs/sha256:")).collect();
    assert!(blob_gets.is_empty(), "no layer is downloaded again:\n{}", blob_gets.join("\n"));
    for layer in second["layers"].as_array().unwrap() {
        let digest = layer["digest"].as_str().unwrap().trim_start_matches("sha256:");
        assert!(out.join("blobs/sha256").join(digest).is_file(), "{digest} is in the new layout");
    }
}
