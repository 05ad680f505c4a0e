//! `imgbake build` with weights from an S3-compatible server (moto, on
//! loopback) and from a plain URL: files land at the app's path with their
//! bytes intact, and a rebuild reuses the verified download store.

mod support;

use sha2::{Digest as _, Sha256};
use std::io::Read;
use std::path::Path;
use std::process::Output;
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

/// sha256 of every regular file in the layout's layers, by path.
fn image_files(layout: &Path) -> std::collections::BTreeMap<String, String> {
    let mut files = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(layout.join("blobs/sha256")).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let data = if bytes.starts_with(&[0x1f, 0x8b]) {
            let mut out = Vec::new();
            flate2::read::GzDecoder::new(&bytes[..]).read_to_end(&mut out).unwrap();
            out
        } else {
            bytes
        };
        let mut archive = tar::Archive::new(&data[..]);
        let Ok(entries) = archive.entries() else { continue };
        for item in entries {
            let Ok(mut item) = item else { break };
            if item.header().entry_type() == tar::EntryType::Regular {
                let path = item.path().unwrap().to_string_lossy().into_owned();
                let mut content = Vec::new();
                item.read_to_end(&mut content).unwrap();
                files.insert(path, hex::encode(Sha256::digest(&content)));
            }
        }
    }
    files
}

#[test]
fn s3_weights_are_baked_and_a_rebuild_reuses_the_download_store() {
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
