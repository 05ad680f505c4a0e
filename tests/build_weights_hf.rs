//! `imgbake build` with `hf://` weights against the loopback hub: the files
//! land at the app's path, a token never reaches the image, a rebuild
//! downloads nothing, and the hf-cache layout loads offline with the real
//! `huggingface_hub`.

mod support;

use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::data::random_bytes;
use support::hub::{self, TestHub};
use support::tools;

const TOKEN: &str = "hf_imgbakeTESTtoken_7f3a9c21d";
const TOKEN_VAR: &str = "IMGBAKE_TEST_HF_TOKEN";

fn repo_files() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("config.json", b"{\"hidden_size\": 8}\n".to_vec()),
        ("model.safetensors", random_bytes(2 << 20, 11)),
        ("tokenizer/vocab.txt", b"a\nb\nc\n".to_vec()),
        ("pytorch_model.bin", random_bytes(1 << 20, 12)),
    ]
}

/// A project whose only weights are `hf://org/tiny@main` with these extra keys.
fn project(dir: &Path, extra: &str) -> PathBuf {
    let project = dir.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::copy(tools::repo_root().join("fixtures/cerebrium-local-weights/server.py"), project.join("server.py"))
        .unwrap();
    let config = format!(
        "[cerebrium.deployment]\nname = \"hf-app\"\n\n[cerebrium.runtime.custom]\nport = 8080\nentrypoint = [\"python3\", \"server.py\"]\n\n\
         [[imgbake.weights]]\nsource = \"hf://org/tiny@main\"\nmount = \"tiny\"\nmode = \"bake\"\nsecret = \"{TOKEN_VAR}\"\n{extra}\n"
    );
    std::fs::write(project.join("cerebrium.toml"), config).unwrap();
    project
}

fn build(project: &Path, dir: &Path, hub: &TestHub, token: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_imgbake"));
    command
        .args(["build", "--json", project.to_str().unwrap(), "--base", "scratch", "--output"])
        .arg(format!("oci:{}:app", dir.join("out").display()))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .env("HF_ENDPOINT", hub.endpoint())
        .env_remove("HF_TOKEN")
        .env_remove("HUGGING_FACE_HUB_TOKEN");
    match token {
        Some(token) => command.env(TOKEN_VAR, token),
        None => command.env_remove(TOKEN_VAR),
    };
    command.output().unwrap()
}

fn json(output: &Output) -> serde_json::Value {
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Every blob of the layout, decompressed when it is gzip or zstd.
fn layout_blobs(layout: &Path) -> Vec<Vec<u8>> {
    let paths = std::fs::read_dir(layout.join("blobs/sha256")).unwrap();
    paths.map(|entry| support::layout::decompressed(std::fs::read(entry.unwrap().path()).unwrap())).collect()
}

/// Files (content) and symlinks (`-> target`) of every tar layer in the layout.
fn image_tree(layout: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut tree = BTreeMap::new();
    for blob in layout_blobs(layout) {
        let mut archive = tar::Archive::new(&blob[..]);
        let Ok(entries) = archive.entries() else { continue };
        for entry in entries {
            let Ok(mut entry) = entry else { break };
            let path = entry.path().unwrap().to_string_lossy().into_owned();
            match entry.header().entry_type() {
                tar::EntryType::Regular => {
                    let mut content = Vec::new();
                    entry.read_to_end(&mut content).unwrap();
                    tree.insert(path, content);
                }
                tar::EntryType::Symlink => {
                    let target = entry.link_name().unwrap().unwrap().to_string_lossy().into_owned();
                    tree.insert(path, format!("-> {target}").into_bytes());
                }
                _ => {}
            }
        }
    }
    tree
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn hf_weights_are_baked_at_the_app_path_and_the_token_reaches_no_blob() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let commit = hub::make_repo(&root, "org/tiny", "main", &repo_files());
    let hub = TestHub::start(&root, Some(TOKEN));
    let project = project(dir.path(), "allow_patterns = [\"*.json\", \"*.safetensors\", \"tokenizer/\"]");

    let output = build(&project, dir.path(), &hub, Some(TOKEN));
    let result = json(&output);
    assert_eq!(result["pinned_weights"][0], format!("hf://org/tiny@main → {commit}").as_str());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains(&format!("pinned to commit {commit}")), "{stderr}");

    let tree = image_tree(&dir.path().join("out"));
    for (name, content) in repo_files() {
        let path = format!("app/model_cache/tiny/{name}");
        if name == "pytorch_model.bin" {
            assert!(!tree.contains_key(&path), "{name} is not in allow_patterns");
        } else {
            assert_eq!(tree.get(&path).map(Sha256::digest), Some(Sha256::digest(&content)), "{path}");
        }
    }

    // The token is in no blob (layers, config, manifest), no cache file, no output.
    for blob in layout_blobs(&dir.path().join("out")) {
        assert!(!contains(&blob, TOKEN.as_bytes()), "the token reached a blob");
    }
    for entry in walkdir::WalkDir::new(dir.path().join("cache")).into_iter().filter_map(Result::ok) {
        if entry.file_type().is_file() {
            assert!(!contains(&std::fs::read(entry.path()).unwrap(), TOKEN.as_bytes()), "{}", entry.path().display());
        }
    }
    assert!(!contains(&output.stdout, TOKEN.as_bytes()) && !contains(&output.stderr, TOKEN.as_bytes()));

    // A rebuild lists again but downloads nothing and gives the same image.
    let downloads = |hub: &TestHub| -> u64 {
        let stats = hub.stats();
        stats["requests"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("GET ") && !k.contains("/api/"))
            .map(|(_, v)| v.as_u64().unwrap())
            .sum()
    };
    let before = downloads(&hub);
    let again = json(&build(&project, dir.path(), &hub, Some(TOKEN)));
    assert_eq!(downloads(&hub), before, "the rebuild downloaded weights again");
    assert_eq!(again["manifest_digest"], result["manifest_digest"], "{result:#}\n{again:#}");
}

#[test]
fn hub_errors_are_clear_and_build_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    hub::make_repo(&root, "org/tiny", "main", &repo_files());
    let hub = TestHub::start(&root, Some(TOKEN));

    let no_token = build(&project(dir.path(), ""), dir.path(), &hub, None);
    assert_eq!(no_token.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&no_token.stderr);
    assert!(stderr.contains(TOKEN_VAR) && stderr.contains("401"), "{stderr}");
    assert!(!dir.path().join("out/index.json").exists());

    let empty = build(&project(dir.path(), "allow_patterns = [\"*.gguf\"]"), dir.path(), &hub, Some(TOKEN));
    assert_eq!(empty.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&empty.stderr).contains("*.gguf"), "{}", String::from_utf8_lossy(&empty.stderr));

    let config = dir.path().join("project/cerebrium.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("@main", "@no-such-branch")
        .replace("allow_patterns = [\"*.gguf\"]", "");
    std::fs::write(&config, text).unwrap();
    let bad_revision = build(&dir.path().join("project"), dir.path(), &hub, Some(TOKEN));
    assert_eq!(bad_revision.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&bad_revision.stderr).contains("no-such-branch"));
}

#[test]
fn hf_cache_layout_loads_offline_with_huggingface_hub() {
    if !tools::require_tool("python3") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let commit = hub::make_repo(&root, "org/tiny", "main", &repo_files());
    let hub = TestHub::start(&root, Some(TOKEN));
    let project = project(dir.path(), "layout = \"hf-cache\"");
    json(&build(&project, dir.path(), &hub, Some(TOKEN)));

    let layout = dir.path().join("out");
    let tree = image_tree(&layout);
    let cache = "app/model_cache/tiny/models--org--tiny";
    assert_eq!(
        tree.get(&format!("{cache}/refs/main")).map(Vec::as_slice),
        Some(commit.as_bytes()),
        "refs/main holds the commit, no newline"
    );
    assert_eq!(
        tree.get(&format!("{cache}/snapshots/{commit}/tokenizer/vocab.txt"))
            .map(|t| String::from_utf8_lossy(t).into_owned()),
        Some(format!("-> ../../../blobs/{}", hub_etag(b"a\nb\nc\n")))
    );
    let config: serde_json::Value = {
        let index: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
        let manifest_digest =
            index["manifests"][0]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(manifest_digest)).unwrap()).unwrap();
        let config_digest = manifest["config"]["digest"].as_str().unwrap().trim_start_matches("sha256:").to_string();
        serde_json::from_slice(&std::fs::read(layout.join("blobs/sha256").join(config_digest)).unwrap()).unwrap()
    };
    assert!(
        config["config"]["Env"].as_array().unwrap().iter().any(|e| e == "HF_HUB_CACHE=/app/model_cache/tiny"),
        "{config:#}"
    );

    // Unpack the image's files and let huggingface_hub load them offline.
    let rootfs = dir.path().join("rootfs");
    for (path, content) in &tree {
        let target = rootfs.join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        match content.strip_prefix(b"-> ") {
            Some(link) => std::os::unix::fs::symlink(String::from_utf8_lossy(link).as_ref(), &target).unwrap(),
            None => std::fs::write(&target, content).unwrap(),
        }
    }
    let script = "from huggingface_hub import hf_hub_download, snapshot_download\n\
                  path = snapshot_download('org/tiny', revision='main')\n\
                  print(open(hf_hub_download('org/tiny', 'config.json', revision='main')).read().strip())\n\
                  print(len(open(path + '/model.safetensors', 'rb').read()))\n";
    let output = Command::new("python3")
        .args(["-c", script])
        .env("HF_HUB_CACHE", rootfs.join("app/model_cache/tiny"))
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout, format!("{{\"hidden_size\": 8}}\n{}\n", 2 << 20));
}

/// The hub's etag of a small (non-LFS) file: its git blob sha1, from git itself.
fn hub_etag(content: &[u8]) -> String {
    use std::io::Write;
    let mut child = Command::new("git")
        .args(["hash-object", "--stdin"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(content).unwrap();
    String::from_utf8(child.wait_with_output().unwrap().stdout).unwrap().trim().to_string()
}

#[test]
fn volume_mode_image_carries_no_weights_and_its_hook_fills_the_volume_before_the_app_starts() {
    if !["umoci", "runc", "debootstrap"].iter().all(|t| tools::require_tool(t)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let commit = hub::make_repo(&root, "org/tiny", "main", &repo_files());
    let hub = TestHub::start(&root, Some(TOKEN));
    let project = project(dir.path(), "").to_path_buf();
    let config = project.join("cerebrium.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("mode = \"bake\"", "mode = \"volume\"\nallow_patterns = [\"*.json\", \"*.safetensors\"]");
    std::fs::write(&config, text).unwrap();

    let mut command = Command::new(env!("CARGO_BIN_EXE_imgbake"));
    command
        .args(["build", "--json", project.to_str().unwrap(), "--base"])
        .arg(format!("rootfs:{}", tools::base_rootfs().display()))
        .arg("--output")
        .arg(format!("oci:{}:app", dir.path().join("out").display()))
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .env("HF_ENDPOINT", hub.endpoint())
        .env(TOKEN_VAR, TOKEN);
    let result = json(&command.output().unwrap());
    assert_eq!(result["pinned_weights"][0], format!("hf://org/tiny@main → {commit}").as_str());

    // The image: manifest, hook, symlink; no weights bytes; no token.
    let layout = dir.path().join("out");
    let tree = image_tree(&layout);
    let manifest: serde_json::Value = serde_json::from_slice(&tree["etc/imgbake/weights.json"]).unwrap();
    assert_eq!(manifest["schema"], "imgbake.weights-manifest/v1");
    let entry = &manifest["entries"][0];
    assert_eq!((entry["credential"].as_str(), entry["revision"].as_str()), (Some(TOKEN_VAR), Some(commit.as_str())));
    assert_eq!(entry["volume_path"], "/persistent-storage/imgbake/tiny");
    let files: Vec<&str> = entry["files"].as_array().unwrap().iter().map(|f| f["path"].as_str().unwrap()).collect();
    assert_eq!(files, ["config.json", "model.safetensors"]);
    for file in entry["files"].as_array().unwrap() {
        let content = &repo_files().into_iter().find(|(name, _)| *name == file["path"]).unwrap().1;
        assert_eq!(file["sha256"], hex::encode(Sha256::digest(content)).as_str(), "every file carries its sha256");
    }
    assert_eq!(tree["app/model_cache/tiny"], b"-> /persistent-storage/imgbake/tiny");
    assert!(tree.contains_key("usr/local/bin/imgbake"));
    let weights = &repo_files()[1].1;
    for blob in layout_blobs(&layout) {
        assert!(!contains(&blob, &weights[..4096]), "weights bytes reached the image");
        assert!(!contains(&blob, TOKEN.as_bytes()), "the token reached the image");
    }

    // A node runs it with an empty volume: the hook fills it, then the app starts and loads the weights.
    let bundle = dir.path().join("bundle");
    tools::umoci_unpack(&layout, "app", &bundle);
    let volume = dir.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    let port = support::registry::free_port().to_string();
    let endpoint = hub.endpoint();
    let env = [("PORT", port.as_str()), ("HF_ENDPOINT", endpoint.as_str()), (TOKEN_VAR, TOKEN)];
    tools::prepare_runc_bundle(&bundle, &[], &env, &[tools::BindMount::read_write(&volume, "/persistent-storage")]);
    let health = |bundle: &Path| {
        let _ = std::fs::remove_file(bundle.join("container.log"));
        let container = tools::runc_run_detached(bundle, &tools::unique_container_id("volume"));
        let url = format!("http://127.0.0.1:{port}/health");
        assert_eq!(tools::wait_for_http(&url, std::time::Duration::from_secs(60)), 200, "{}", container.log_text());
        let client = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
        let body: serde_json::Value = client.get(&url).send().unwrap().json().unwrap();
        (body, container.log_text())
    };
    let (body, log) = health(&bundle);
    assert_eq!(body["weights"]["model.safetensors"], hex::encode(Sha256::digest(weights)).as_str(), "{log}");
    assert!(log.contains("\"event\":\"downloaded\""), "{log}");
    assert!(volume.join("imgbake/tiny.imgbake-ready").is_file());
    assert_eq!(body["weights"].as_object().unwrap().len(), 2, "the app sees only the weights: {body:#}");
    assert_eq!(std::fs::read(volume.join("imgbake/tiny/model.safetensors")).unwrap(), *weights);

    // Warm volume: a second start downloads nothing.
    let before = hub.stats()["requests"].as_object().unwrap().iter().filter(|(k, _)| k.starts_with("GET ")).count();
    let (body, log) = health(&bundle);
    assert_eq!(body["status"], "ok");
    assert!(!log.contains("\"event\":\"downloaded\""), "{log}");
    let after = hub.stats()["requests"].as_object().unwrap().iter().filter(|(k, _)| k.starts_with("GET ")).count();
    assert_eq!(before, after);

    // A corrupted file on the volume is not accepted: it is fetched again.
    let stored = volume.join("imgbake/tiny/model.safetensors");
    let mut bytes = std::fs::read(&stored).unwrap();
    bytes[1000] ^= 0xff;
    std::fs::write(&stored, &bytes).unwrap();
    let (body, log) = health(&bundle);
    assert_eq!(body["weights"]["model.safetensors"], hex::encode(Sha256::digest(weights)).as_str(), "{log}");
    assert!(log.contains("\"event\":\"downloaded\""), "{log}");
}

#[test]
fn eight_hooks_sharing_a_volume_download_each_file_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let mut files = repo_files();
    files.push(("shard-2.safetensors", random_bytes(3 << 20, 21)));
    files.push(("shard-3.safetensors", random_bytes(3 << 20, 22)));
    hub::make_repo(&root, "org/tiny", "main", &files);
    let hub = TestHub::start(&root, Some(TOKEN));
    let project = project(dir.path(), "");
    let config = project.join("cerebrium.toml");
    let text = std::fs::read_to_string(&config)
        .unwrap()
        .replace("mode = \"bake\"", "mode = \"volume\"\nallow_patterns = [\"*.json\", \"*.safetensors\"]");
    std::fs::write(&config, text).unwrap();
    json(&build(&project, dir.path(), &hub, Some(TOKEN)));
    let manifest = dir.path().join("weights.json");
    std::fs::write(&manifest, &image_tree(&dir.path().join("out"))["etc/imgbake/weights.json"]).unwrap();

    let volume = dir.path().join("volume/tiny");
    let gets_before = hub.stats();
    let children: Vec<_> = (0..8)
        .map(|_| {
            Command::new(env!("CARGO_BIN_EXE_imgbake"))
                .args([
                    "prefetch",
                    "--manifest",
                    manifest.to_str().unwrap(),
                    "--dest",
                    volume.to_str().unwrap(),
                    "--jobs",
                    "3",
                ])
                .env("HF_ENDPOINT", hub.endpoint())
                .env(TOKEN_VAR, TOKEN)
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut downloaded_events = 0;
    for child in children {
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
        assert!(output.status.success(), "{stderr}");
        downloaded_events += stderr.matches("\"event\":\"downloaded\"").count();
    }
    // Four files, each downloaded by exactly one of the eight hooks.
    assert_eq!(downloaded_events, 4);
    let gets_after = hub.stats();
    let resolve_gets = |stats: &serde_json::Value| -> u64 {
        stats["requests"]
            .as_object()
            .unwrap()
            .iter()
            .filter(|(k, _)| k.starts_with("GET ") && k.contains("/resolve/"))
            .map(|(_, v)| v.as_u64().unwrap())
            .sum()
    };
    assert_eq!(resolve_gets(&gets_after) - resolve_gets(&gets_before), 4, "{gets_after:#}");
    for (name, content) in files.iter().filter(|(n, _)| n.ends_with(".json") || n.ends_with(".safetensors")) {
        assert_eq!(std::fs::read(volume.join(name)).unwrap(), *content, "{name}");
    }
    let names: Vec<String> =
        std::fs::read_dir(&volume).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    assert!(names.iter().all(|n| !n.ends_with(".lock") && !n.ends_with(".partial")), "{names:?}");
}

/// Files under `DIR/cache/weights/blobs` (copies of downloaded weights).
fn stored_weight_copies(dir: &Path) -> usize {
    std::fs::read_dir(dir.join("cache/weights/blobs/sha256")).map(|entries| entries.count()).unwrap_or(0)
}

/// The hub serving `repo_files()` as `org/tiny@main`, and the 2 MiB model's sha256.
fn hub_with_tiny_repo(dir: &Path) -> (TestHub, Vec<(&'static str, Vec<u8>)>, String) {
    let root = dir.join("hub");
    let files = repo_files();
    hub::make_repo(&root, "org/tiny", "main", &files);
    let hub = TestHub::start(&root, Some(TOKEN));
    let model_sha = hex::encode(Sha256::digest(&files[1].1));
    (hub, files, model_sha)
}

#[test]
fn weights_stream_into_their_layer_without_a_copy_and_a_dropped_connection_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, files, model_sha) = hub_with_tiny_repo(dir.path());
    // The 2 MiB file's stream is reset after 1400 KiB, once (the first
    // request, a 256 KiB sample for `compression = "auto"`, passes).
    hub.set_faults(
        serde_json::json!([{"kind": "drop", "after": 1400 << 10, "count": 1, "skip": 1, "match": model_sha}]),
    );
    let result = json(&build(&project(dir.path(), ""), dir.path(), &hub, Some(TOKEN)));
    assert_eq!(hub.faults_used(), 1, "the fault did not act");
    let tree = image_tree(&dir.path().join("out"));
    for (name, bytes) in &files {
        assert_eq!(tree.get(&format!("app/model_cache/tiny/{name}")), Some(bytes), "{name}");
    }
    // Resumed at the byte where the connection broke, not restarted: the
    // bodies sent for the model are the sample (from its middle), the
    // stream from byte 0 that was reset, and one more that starts past 0
    // (where the client's read had got to: the server's count of bytes sent
    // includes what sat in the socket buffers when the reset came).
    let starts = hub.body_starts(&model_sha);
    assert_eq!(starts.len(), 3, "{starts:?}");
    assert_eq!(starts[1], 0, "{starts:?}");
    assert!(starts[2] > 0 && starts[2] <= 1400 << 10, "the stream restarted at {}: {starts:?}", starts[2]);
    let sent = hub.bytes_sent(&model_sha);
    assert!(sent < (2 << 20) + (256 << 10) + (1400 << 10), "{sent} bytes sent for a 2 MiB file");
    assert_eq!(stored_weight_copies(dir.path()), 0, "weights were copied to the build machine's disk");
    // Nothing to download again: the layers come from the cache.
    let before = hub.bytes_sent(&model_sha);
    let again = json(&build(&project(dir.path(), ""), dir.path(), &hub, Some(TOKEN)));
    assert_eq!(again["manifest_digest"], result["manifest_digest"]);
    assert_eq!(hub.bytes_sent(&model_sha), before);
}

#[test]
fn a_flipped_byte_fails_the_build_and_commits_no_layer() {
    let dir = tempfile::tempdir().unwrap();
    let (hub, _, model_sha) = hub_with_tiny_repo(dir.path());
    hub.corrupt_blob(&model_sha);
    let output = build(&project(dir.path(), ""), dir.path(), &hub, Some(TOKEN));
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("model.safetensors") && stderr.contains(&model_sha), "{stderr}");
    assert!(!dir.path().join("out/index.json").exists());
    // Every committed layer blob was indexed; none holds the bad file.
    let cache_blobs: Vec<_> = std::fs::read_dir(dir.path().join("cache/blobs/sha256"))
        .map(|entries| entries.map(|e| std::fs::metadata(e.unwrap().path()).unwrap().len()).collect())
        .unwrap_or_default();
    assert!(cache_blobs.iter().all(|len| *len < (2 << 20)), "a blob as large as the model was kept: {cache_blobs:?}");
}
