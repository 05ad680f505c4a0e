//! `imgbake build` with weights from an S3-compatible server (moto, on
//! loopback), Azure blob storage (Azurite, on loopback) and from a plain URL: files land at the app's path with their
//! bytes intact, a rebuild reuses the layers, and the sha256 that S3 does
//! not give is computed once, written into imgbake.lock and then enforced.

mod support;

use sha2::{Digest as _, Sha256};
use std::path::Path;
use std::process::Output;
use support::azurite::TestAzurite;
use support::data::random_bytes;
use support::hub::{self, TestHub};
use support::s3::TestS3;

fn write_project(dir: &Path, weights: &str) -> std::path::PathBuf {
    let project = dir.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("app.py"), "print('hi')\n").unwrap();
    let config = format!("[cerebrium.deployment]\nname = \"obj-app\"\n\n{weights}\n");
    std::fs::write(project.join("cerebrium.toml"), config).unwrap();
    project
}

fn build(project: &Path, dir: &Path, env: &[(String, String)]) -> Output {
    support::tools::imgbake_build_on_scratch(env!("CARGO_BIN_EXE_imgbake"), project, dir, env)
}

fn json(output: &Output) -> serde_json::Value {
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

/// Every regular file in the layout's layers, by path (later layers win).
fn image_file_contents(layout: &Path) -> std::collections::BTreeMap<String, Vec<u8>> {
    support::layout::regular_files(layout)
}

/// sha256 of every regular file in the layout's layers, by path.
fn image_files(layout: &Path) -> std::collections::BTreeMap<String, String> {
    image_file_contents(layout)
        .into_iter()
        .map(|(path, content)| (path, hex::encode(Sha256::digest(content))))
        .collect()
}

#[test]
fn s3_weights_are_baked_and_a_rebuild_reuses_the_layers() {
    let Some(s3) = TestS3::start() else { return };
    s3.create_bucket("models");
    let model = random_bytes(3 << 20, 5);
    s3.put_object("models", "llama/config.json", b"{\"layers\": 2}\n");
    s3.put_object("models", "llama/model.safetensors", &model);
    s3.put_object("models", "llama/model.onnx", b"onnx");
    s3.put_object("models", "llama2/other.bin", b"not ours");
    let dir = tempfile::tempdir().unwrap();
    let project = write_project(
        dir.path(),
        "[[imgbake.weights]]\nsource = \"s3://models/llama\"\nmount = \"llama\"\nmode = \"bake\"\nignore_patterns = [\"*.onnx\"]",
    );
    let first = json(&build(&project, dir.path(), &s3.env()));
    let files = image_files(&dir.path().join("out"));
    let weights: Vec<(&String, &String)> = files.iter().filter(|(p, _)| p.starts_with("app/model_cache/")).collect();
    assert_eq!(
        weights,
        [
            (&"app/model_cache/llama/config.json".to_string(), &hex::encode(Sha256::digest(b"{\"layers\": 2}\n"))),
            (&"app/model_cache/llama/model.safetensors".to_string(), &hex::encode(Sha256::digest(&model))),
        ]
    );
    let second = json(&build(&project, dir.path(), &s3.env()));
    assert_eq!(second["manifest_digest"], first["manifest_digest"]);
    assert_eq!(second["cache"]["misses"], 0, "{second:#}");
}

#[test]
fn a_plain_url_is_one_file() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let model = random_bytes(2 << 20, 9);
    hub::make_repo(&root, "org/tiny", "main", &[("model.safetensors", model.clone())]);
    let hub = TestHub::start(&root, None);
    let url = format!("{}/org/tiny/resolve/main/model.safetensors", hub.endpoint());
    let project = write_project(
        dir.path(),
        &format!("[[imgbake.weights]]\nsource = \"{url}\"\nmount = \"single\"\nmode = \"bake\""),
    );
    json(&build(&project, dir.path(), &[]));
    let files = image_files(&dir.path().join("out"));
    assert_eq!(files.get("app/model_cache/single/model.safetensors"), Some(&hex::encode(Sha256::digest(&model))));
}

/// The `[[weights]]` entries of the project's imgbake.lock, by path: sha256 (or "").
fn locked_hashes(project: &Path) -> std::collections::BTreeMap<String, String> {
    let text = std::fs::read_to_string(project.join("imgbake.lock")).unwrap();
    let lock: toml::Value = toml::from_str(&text).unwrap();
    lock["weights"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| {
            let sha = w.get("sha256").and_then(|v| v.as_str()).unwrap_or("").to_string();
            (w["path"].as_str().unwrap().to_string(), sha)
        })
        .collect()
}

#[test]
fn sha256s_s3_does_not_give_are_written_into_the_lock_and_enforced_from_it() {
    let Some(s3) = TestS3::start() else { return };
    s3.create_bucket("locked");
    let model = random_bytes(1 << 20, 21);
    let config = b"{\"layers\": 4}\n";
    s3.put_object("locked", "m/config.json", config);
    s3.put_object("locked", "m/model.safetensors", &model);
    let dir = tempfile::tempdir().unwrap();
    for mode in ["bake", "volume"] {
        let project = write_project(
            dir.path(),
            &format!(
                "[cerebrium.runtime.custom]\nport = 8080\nentrypoint = [\"python3\", \"app.py\"]\n\n\
                 [[imgbake.weights]]\nsource = \"s3://locked/m\"\nmount = \"m\"\nmode = \"{mode}\""
            ),
        );
        let _ = std::fs::remove_file(project.join("imgbake.lock"));
        let _ = std::fs::remove_dir_all(dir.path().join("cache"));
        let built = json(&build(&project, dir.path(), &s3.env()));
        assert_eq!(built["lock_written"], true, "{mode}: {built:#}");
        let expected = std::collections::BTreeMap::from([
            ("config.json".to_string(), hex::encode(Sha256::digest(config))),
            ("model.safetensors".to_string(), hex::encode(Sha256::digest(&model))),
        ]);
        assert_eq!(locked_hashes(&project), expected, "{mode}");
        // No copy of the weights stays on the build machine.
        let copies = std::fs::read_dir(dir.path().join("cache/weights/blobs/sha256")).unwrap().count();
        assert!(copies <= 1, "{mode}: {copies} weights files kept (only a manifest is expected)");
    }
    // A lock whose sha256 does not match the bytes fails a fresh --locked build.
    let project = dir.path().join("project");
    let lock_path = project.join("imgbake.lock");
    let wrong = "0".repeat(64);
    let text = std::fs::read_to_string(&lock_path).unwrap().replace(&hex::encode(Sha256::digest(&model)), &wrong);
    std::fs::write(&lock_path, text).unwrap();
    let _ = std::fs::remove_dir_all(dir.path().join("cache"));
    let config_text =
        std::fs::read_to_string(project.join("cerebrium.toml")).unwrap().replace("\"volume\"", "\"bake\"");
    std::fs::write(project.join("cerebrium.toml"), config_text).unwrap();
    let output =
        support::tools::imgbake_build_on_scratch(env!("CARGO_BIN_EXE_imgbake"), &project, dir.path(), &s3.env());
    let stderr = String::from_utf8_lossy(&output.stderr);
    // The mode is not a lock input, so the lock stays current and its sha256 is enforced.
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("imgbake.lock says") && stderr.contains(&wrong), "{stderr}");
}

/// The weights manifest of the image in `DIR/out`, written to `DIR/weights.json`.
fn volume_manifest(dir: &Path) -> (std::path::PathBuf, serde_json::Value) {
    let bytes = image_file_contents(&dir.join("out")).remove("etc/imgbake/weights.json").unwrap();
    let path = dir.join("weights.json");
    std::fs::write(&path, &bytes).unwrap();
    (path, serde_json::from_slice(&bytes).unwrap())
}

/// `imgbake prefetch` of `manifest` into `dest` with only `env`'s object-store
/// credentials (none inherited from the test's environment).
fn run_prefetch(manifest: &Path, dest: &Path, env: &[(String, String)]) -> Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_imgbake"))
        .args(["prefetch", "--manifest", manifest.to_str().unwrap(), "--dest", dest.to_str().unwrap()])
        .env_remove("AZURE_STORAGE_ACCOUNT_KEY")
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap()
}

/// Every blob of the layout and every cache file, searched for `needle`.
fn nothing_on_disk_contains(dir: &Path, needle: &str) {
    for entry in walkdir::WalkDir::new(dir).into_iter().filter_map(Result::ok) {
        if entry.file_type().is_file() {
            let bytes = std::fs::read(entry.path()).unwrap();
            let found = bytes.windows(needle.len()).any(|w| w == needle.as_bytes());
            assert!(!found, "{} contains the credential", entry.path().display());
        }
    }
}

#[test]
fn azure_weights_from_azurite_are_baked_and_prefetched() {
    let Some(azure) = TestAzurite::start() else { return };
    azure.create_container("models");
    let model = random_bytes(9 << 20, 33);
    let config = b"{\"layers\": 6}\n";
    azure.put_blob("models", "mistral/config.json", config);
    azure.put_blob("models", "mistral/model.safetensors", &model);
    azure.put_blob("models", "mistral/notes.md", b"not selected");
    azure.put_blob("models", "mistral2/other.bin", b"a sibling prefix");
    let dir = tempfile::tempdir().unwrap();
    let weights = |mode: &str| {
        format!(
            "[cerebrium.runtime.custom]\nport = 8080\nentrypoint = [\"python3\", \"app.py\"]\n\n\
             [[imgbake.weights]]\nsource = \"azure://models/mistral\"\nmount = \"mistral\"\nmode = \"{mode}\"\n\
             allow_patterns = [\"*.json\", \"*.safetensors\"]"
        )
    };

    // Bake: the selected blobs, byte for byte, at the app's path.
    let project = write_project(dir.path(), &weights("bake"));
    json(&build(&project, dir.path(), &azure.env()));
    let files = image_files(&dir.path().join("out"));
    let baked: Vec<(&String, &String)> = files.iter().filter(|(p, _)| p.starts_with("app/model_cache/")).collect();
    assert_eq!(
        baked,
        [
            (&"app/model_cache/mistral/config.json".to_string(), &hex::encode(Sha256::digest(config))),
            (&"app/model_cache/mistral/model.safetensors".to_string(), &hex::encode(Sha256::digest(&model))),
        ]
    );

    // Volume: the manifest names the container; the hook reads it with the
    // account key from its own environment.
    let project = write_project(dir.path(), &weights("volume"));
    let _ = std::fs::remove_dir_all(dir.path().join("out"));
    let built = build(&project, dir.path(), &azure.env());
    json(&built);
    let (manifest_path, manifest) = volume_manifest(dir.path());
    assert_eq!(manifest["entries"][0]["kind"], "azure");
    let dest = dir.path().join("volume/mistral");
    let prefetch = |env: &[(String, String)]| run_prefetch(&manifest_path, &dest, env);
    let fetched = prefetch(&azure.env());
    let log = String::from_utf8_lossy(&fetched.stderr).into_owned();
    assert_eq!(fetched.status.code(), Some(0), "{log}");
    assert_eq!(std::fs::read(dest.join("model.safetensors")).unwrap(), model);
    assert_eq!(std::fs::read(dest.join("config.json")).unwrap(), config);
    assert!(!dest.join("notes.md").exists());

    // A wrong key is refused by Azurite's signature check: a clear failure
    // that names the variable, with no key in it.
    std::fs::remove_dir_all(&dest).unwrap();
    let wrong_key = "d3Jvbmcta2V5LXZhbHVlLTQ4MjE=";
    let mut env = azure.env();
    env.retain(|(k, _)| k != "AZURE_STORAGE_ACCOUNT_KEY");
    env.push(("AZURE_STORAGE_ACCOUNT_KEY".into(), wrong_key.into()));
    let refused = prefetch(&env);
    let refused_log = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{refused_log}");
    assert!(refused_log.contains("AZURE_STORAGE_ACCOUNT_KEY"), "{refused_log}");
    for text in [&log, &refused_log.to_string(), &String::from_utf8_lossy(&built.stderr).to_string()] {
        assert!(!text.contains(support::azurite::ACCOUNT_KEY) && !text.contains(wrong_key), "{text}");
    }
    nothing_on_disk_contains(dir.path(), support::azurite::ACCOUNT_KEY);
}

#[test]
fn gcs_weights_through_the_xml_api_that_moto_serves() {
    // object_store's GCS client lists and reads through GCS's XML API, which
    // is S3's protocol (ListObjectsV2, ranged GETs); moto serves it. This
    // covers gs:// as a user configures it (a service-account JSON in a
    // secret, its `gcs_base_url`), the listing, baking and the hook's volume
    // fill; Google's OAuth is not (the key says `disable_oauth`).
    let Some(s3) = TestS3::start() else { return };
    s3.create_bucket("gcs-models");
    let model = random_bytes(5 << 20, 41);
    let config = b"{\"hidden\": 64}\n";
    // The key below turns Google's OAuth off, so requests carry no credential.
    s3.put_public_object("gcs-models", "bert/config.json", config);
    s3.put_public_object("gcs-models", "bert/model.safetensors", &model);
    let key = s3.gcs_service_account_key();
    let env = vec![("IMGBAKE_TEST_GCS_KEY".to_string(), key)];
    let dir = tempfile::tempdir().unwrap();
    let weights = |mode: &str| {
        format!(
            "[cerebrium.runtime.custom]\nport = 8080\nentrypoint = [\"python3\", \"app.py\"]\n\n\
             [[imgbake.weights]]\nsource = \"gs://gcs-models/bert\"\nmount = \"bert\"\nmode = \"{mode}\"\n\
             secret = \"IMGBAKE_TEST_GCS_KEY\""
        )
    };
    let project = write_project(dir.path(), &weights("bake"));
    json(&build(&project, dir.path(), &env));
    let files = image_files(&dir.path().join("out"));
    assert_eq!(files.get("app/model_cache/bert/model.safetensors"), Some(&hex::encode(Sha256::digest(&model))));
    assert_eq!(files.get("app/model_cache/bert/config.json"), Some(&hex::encode(Sha256::digest(config))));

    let project = write_project(dir.path(), &weights("volume"));
    let _ = std::fs::remove_dir_all(dir.path().join("out"));
    json(&build(&project, dir.path(), &env));
    let (manifest_path, manifest) = volume_manifest(dir.path());
    assert_eq!(manifest["entries"][0]["kind"], "gcs");
    assert_eq!(manifest["entries"][0]["credential"], "IMGBAKE_TEST_GCS_KEY");
    let dest = dir.path().join("volume/bert");
    let fetched = run_prefetch(&manifest_path, &dest, &env);
    assert_eq!(fetched.status.code(), Some(0), "{}", String::from_utf8_lossy(&fetched.stderr));
    assert_eq!(std::fs::read(dest.join("model.safetensors")).unwrap(), model);
    assert_eq!(std::fs::read(dest.join("config.json")).unwrap(), config);
}
