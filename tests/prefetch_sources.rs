//! Volume mode for every remote source: `imgbake build` writes the manifest
//! for an S3 prefix (moto on loopback), a plain URL and an hf-cache layout,
//! and `imgbake prefetch` fills a volume from it — credentials read at run
//! time from the environment or a `/secrets/<name>` file, never logged.

mod support;

use sha2::{Digest as _, Sha256};
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use support::data::random_bytes;
use support::hub::{self, TestHub};
use support::s3::TestS3;
use support::tools;

fn write_project(dir: &Path, weights: &str) -> PathBuf {
    let project = dir.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(project.join("app.py"), "print('hi')\n").unwrap();
    let config = format!(
        "[cerebrium.deployment]\nname = \"vol-app\"\n\n[cerebrium.runtime.custom]\nport = 8080\n\
         entrypoint = [\"python3\", \"app.py\"]\n\n{weights}\n"
    );
    std::fs::write(project.join("cerebrium.toml"), config).unwrap();
    project
}

fn build(project: &Path, dir: &Path, env: &[(String, String)]) -> Output {
    support::tools::imgbake_build_on_scratch(env!("CARGO_BIN_EXE_imgbake"), project, dir, env)
}

fn ok(output: &Output) -> String {
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{log}");
    log
}

/// Regular files (content) and symlinks (`-> target`) of every layer.
fn image_tree(layout: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut tree = BTreeMap::new();
    for entry in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let data = support::layout::decompressed(std::fs::read(entry.unwrap().path()).unwrap());
        let mut archive = tar::Archive::new(&data[..]);
        let Ok(entries) = archive.entries() else { continue };
        for item in entries {
            let Ok(mut item) = item else { break };
            let path = item.path().unwrap().to_string_lossy().into_owned();
            match item.header().entry_type() {
                tar::EntryType::Regular => {
                    let mut content = Vec::new();
                    item.read_to_end(&mut content).unwrap();
                    tree.insert(path, content);
                }
                tar::EntryType::Symlink => {
                    let target = item.link_name().unwrap().unwrap().to_string_lossy().into_owned();
                    tree.insert(path, format!("-> {target}").into_bytes());
                }
                _ => {}
            }
        }
    }
    tree
}

/// The image's manifest, written to `dir/weights.json`.
fn extract_manifest(dir: &Path) -> (PathBuf, serde_json::Value) {
    let tree = image_tree(&dir.join("out"));
    let bytes = tree.get("etc/imgbake/weights.json").expect("the image carries the manifest").clone();
    let path = dir.join("weights.json");
    std::fs::write(&path, &bytes).unwrap();
    (path, serde_json::from_slice(&bytes).unwrap())
}

fn prefetch(manifest: &Path, dest: &Path, env: &[(String, String)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imgbake"))
        .args(["prefetch", "--manifest", manifest.to_str().unwrap(), "--dest", dest.to_str().unwrap()])
        .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .output()
        .unwrap()
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

#[test]
fn s3_volume_mode_fills_the_volume_with_credentials_from_a_secret_file() {
    let Some(s3) = TestS3::start() else { return };
    s3.create_bucket("models");
    let model = random_bytes(20 << 20, 5);
    s3.put_object("models", "llama/config.json", b"{\"layers\": 2}\n");
    s3.put_object("models", "llama/model.safetensors", &model);
    let dir = tempfile::tempdir().unwrap();
    let project = write_project(
        dir.path(),
        "[[imgbake.weights]]\nsource = \"s3://models/llama\"\nmount = \"llama\"\nmode = \"volume\"\nsecret = \"IMGBAKE_TEST_S3_SECRET\"",
    );
    let secret_json = format!(
        "{{\"aws_access_key_id\": \"{key}\", \"aws_secret_access_key\": \"s3cr3t-VALUE-91f2\"}}",
        key = support::s3::FAKE_KEY
    );
    let mut env = s3.env();
    env.retain(|(k, _)| !k.starts_with("AWS_ACCESS") && !k.starts_with("AWS_SECRET"));
    let mut build_env = env.clone();
    build_env.push(("IMGBAKE_TEST_S3_SECRET".into(), secret_json.clone()));
    ok(&build(&project, dir.path(), &build_env));
    let tree = image_tree(&dir.path().join("out"));
    assert!(tree.keys().all(|p| !p.ends_with("model.safetensors")), "no weights bytes in the image");
    let (manifest, parsed) = extract_manifest(dir.path());
    assert_eq!(parsed["entries"][0]["kind"], "s3");
    assert_eq!(parsed["entries"][0]["files"][1]["sha256"], sha(&model).as_str(), "the build hashed the object");

    // At run time the secret is a file in the secrets dir, not a variable.
    let secrets = dir.path().join("secrets");
    std::fs::create_dir_all(&secrets).unwrap();
    std::fs::write(secrets.join("IMGBAKE_TEST_S3_SECRET"), &secret_json).unwrap();
    let mut run_env = env.clone();
    run_env.push(("IMGBAKE_SECRETS_DIR".into(), secrets.to_str().unwrap().into()));
    let dest = dir.path().join("volume/llama");
    let log = ok(&prefetch(&manifest, &dest, &run_env));
    assert_eq!(sha(&std::fs::read(dest.join("model.safetensors")).unwrap()), sha(&model));
    assert_eq!(std::fs::read(dest.join("config.json")).unwrap(), b"{\"layers\": 2}\n");
    assert!(!log.contains("s3cr3t-VALUE"), "the secret never reaches the log");

    // Without the secret: a clear failure naming the credential and where it was looked for.
    let dest2 = dir.path().join("volume2/llama");
    let output = prefetch(&manifest, &dest2, &env);
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(log.contains("IMGBAKE_TEST_S3_SECRET"), "{log}");
}

#[test]
fn a_plain_url_in_volume_mode_is_fetched_by_the_hook() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let model = random_bytes(40 << 20, 9);
    hub::make_repo(&root, "org/tiny", "main", &[("model.safetensors", model.clone())]);
    let hub = TestHub::start(&root, None);
    let url = format!("{}/org/tiny/resolve/main/model.safetensors", hub.endpoint());
    let project = write_project(
        dir.path(),
        &format!("[[imgbake.weights]]\nsource = \"{url}\"\nmount = \"single\"\nmode = \"volume\""),
    );
    // The hook placed in the image is the file IMGBAKE_HOOK_BINARY names; a
    // dynamically linked one (this imgbake) is used with a warning.
    let hook = env!("CARGO_BIN_EXE_imgbake");
    let log = ok(&build(&project, dir.path(), &[("IMGBAKE_HOOK_BINARY".into(), hook.into())]));
    assert!(log.contains("dynamically linked") && log.contains("IMGBAKE_HOOK_BINARY"), "{log}");
    let tree = image_tree(&dir.path().join("out"));
    assert!(tree["usr/local/bin/imgbake"] == std::fs::read(hook).unwrap(), "the named hook is in the image");
    let missing = build(&project, dir.path(), &[("IMGBAKE_HOOK_BINARY".into(), "/no/such/hook".into())]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/no/such/hook"));
    let (manifest, parsed) = extract_manifest(dir.path());
    assert_eq!(parsed["entries"][0]["kind"], "https");
    let dest = dir.path().join("volume/single");
    let before = hub.bytes_sent("/cdn/");
    ok(&prefetch(&manifest, &dest, &[]));
    assert_eq!(sha(&std::fs::read(dest.join("model.safetensors")).unwrap()), sha(&model));
    assert_eq!(hub.bytes_sent("/cdn/") - before, model.len() as u64, "each byte once, in ranges");
}

#[test]
fn hf_cache_volume_mode_loads_offline_with_huggingface_hub() {
    if !tools::require_tool("python3") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let files = vec![
        ("config.json", b"{\"hidden_size\": 8}\n".to_vec()),
        ("model.safetensors", random_bytes(2 << 20, 11)),
        ("tokenizer/vocab.txt", b"a\nb\nc\n".to_vec()),
    ];
    let commit = hub::make_repo(&root, "org/tiny", "main", &files);
    let hub = TestHub::start(&root, None);
    let project = write_project(
        dir.path(),
        "[[imgbake.weights]]\nsource = \"hf://org/tiny@main\"\nmount = \"tiny\"\nmode = \"volume\"\nlayout = \"hf-cache\"",
    );
    ok(&build(&project, dir.path(), &[("HF_ENDPOINT".into(), hub.endpoint())]));
    let (manifest, _) = extract_manifest(dir.path());
    let cache = dir.path().join("volume/tiny");
    ok(&prefetch(&manifest, &cache, &[]));
    let folder = cache.join("models--org--tiny");
    assert_eq!(std::fs::read(folder.join("refs/main")).unwrap(), commit.as_bytes(), "refs/main, no newline");
    let link = folder.join(format!("snapshots/{commit}/tokenizer/vocab.txt"));
    assert!(std::fs::read_link(&link).unwrap().starts_with("../../../blobs/"));
    let script = "from huggingface_hub import hf_hub_download, snapshot_download\n\
                  path = snapshot_download('org/tiny', revision='main')\n\
                  print(open(hf_hub_download('org/tiny', 'config.json', revision='main')).read().strip())\n\
                  print(len(open(path + '/model.safetensors', 'rb').read()))\n";
    let output = Command::new("python3")
        .args(["-c", script])
        .env("HF_HUB_CACHE", &cache)
        .env("HF_HUB_OFFLINE", "1")
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout, format!("{{\"hidden_size\": 8}}\n{}\n", 2 << 20));
    // A second start finds everything verified by its records and downloads nothing.
    let again = ok(&prefetch(&manifest, &cache, &[]));
    assert!(!again.contains("\"event\":\"downloaded\""), "{again}");
}
