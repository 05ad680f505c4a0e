//! The static prefetch hook (`scripts/build-hook.sh`) runs under runc in a
//! root holding nothing but the binary, a CA bundle and `/etc/hosts`, and
//! reaches the loopback hub by the *name* `localhost` (hickory, no NSS).

mod support;

use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;
use support::data::random_bytes;
use support::hub::{self, TestHub};
use support::tools;

const HOOK_BUDGET: u64 = 20 << 20;

/// The static hook: `$IMGBAKE_HOOK_BINARY`, else built (incrementally) by the script.
fn static_hook() -> PathBuf {
    if let Some(path) = std::env::var_os("IMGBAKE_HOOK_BINARY") {
        return PathBuf::from(path);
    }
    let output = tools::run_checked(
        Command::new("bash").arg(tools::repo_root().join("scripts/build-hook.sh")),
        Duration::from_secs(45 * 60),
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    tools::repo_root().join(stdout.lines().last().expect("build-hook.sh prints the binary's path").trim())
}

#[test]
fn the_static_hook_fetches_by_host_name_in_an_otherwise_empty_root() {
    if !tools::require_tool("runc") {
        return;
    }
    let hook = static_hook();
    let bytes = std::fs::read(&hook).unwrap();
    assert!(!imgbake::resolve::hook::is_dynamic_elf(&bytes), "{} needs a dynamic loader", hook.display());
    assert!((bytes.len() as u64) <= HOOK_BUDGET, "the hook is {} bytes, over 20 MiB", bytes.len());

    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let files = vec![("config.json", b"{\"a\": 1}\n".to_vec()), ("model.safetensors", random_bytes(20 << 20, 3))];
    let commit = hub::make_repo(&root, "org/tiny", "main", &files);
    let hub = TestHub::start(&root, None);
    let port = hub.endpoint().rsplit(':').next().unwrap().to_string();
    let entries: Vec<serde_json::Value> = files
        .iter()
        .map(|(name, data)| {
            serde_json::json!({
                "path": name, "size": data.len(), "sha256": hex::encode(Sha256::digest(data)),
                // By name: resolved from the container's /etc/hosts.
                "url": format!("http://localhost:{port}/org/tiny/resolve/{commit}/{name}"),
            })
        })
        .collect();
    let manifest = serde_json::json!({
        "schema": "imgbake.weights-manifest/v1", "app": "static", "target": "generic",
        "entries": [{
            "origin": "imgbake.weights[0]", "source": "hf://org/tiny@main", "kind": "hf", "revision": commit,
            "path": "/models/tiny", "volume_path": "/volume/tiny", "layout": "plain", "credential": null,
            "total_size": files.iter().map(|(_, d)| d.len()).sum::<usize>(), "files": entries,
        }],
    });
    let volume = dir.path().join("volume");
    std::fs::create_dir_all(&volume).unwrap();
    std::fs::write(volume.join("weights.json"), manifest.to_string()).unwrap();

    // The root: the binary, a CA bundle, /etc/hosts. Nothing else.
    let bundle = dir.path().join("bundle");
    let rootfs = bundle.join("rootfs");
    for (path, content) in [
        ("usr/local/bin/imgbake", bytes.clone()),
        ("etc/ssl/certs/ca-certificates.crt", std::fs::read("/etc/ssl/certs/ca-certificates.crt").unwrap()),
        ("etc/hosts", b"127.0.0.1 localhost\n".to_vec()),
    ] {
        let target = rootfs.join(path);
        std::fs::create_dir_all(target.parent().unwrap()).unwrap();
        std::fs::write(&target, content).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(rootfs.join("usr/local/bin/imgbake"), std::fs::Permissions::from_mode(0o755)).unwrap();
    let listed = walk(&rootfs);
    assert_eq!(listed, ["etc/hosts", "etc/ssl/certs/ca-certificates.crt", "usr/local/bin/imgbake"]);

    let args = ["/usr/local/bin/imgbake", "prefetch", "--manifest", "/volume/weights.json", "--jobs", "4"];
    tools::prepare_runc_bundle(&bundle, &args, &[], &[tools::BindMount::read_write(&volume, "/volume")]);
    let output = tools::runc_run(&bundle, &tools::unique_container_id("static-hook"), Duration::from_secs(120));
    let log = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "{log}");
    for (name, data) in &files {
        let on_disk = std::fs::read(volume.join("tiny").join(name)).unwrap();
        assert_eq!(hex::encode(Sha256::digest(on_disk)), hex::encode(Sha256::digest(data)), "{name}: {log}");
    }
    assert!(hub.request_count(&format!("GET /org/tiny/resolve/{commit}/config.json")) >= 1);
}

fn walk(root: &Path) -> Vec<String> {
    let mut out: Vec<String> = walkdir::WalkDir::new(root)
        .into_iter()
        .map(|e| e.unwrap())
        .filter(|e| !e.file_type().is_dir())
        .map(|e| e.path().strip_prefix(root).unwrap().to_string_lossy().into_owned())
        .collect();
    out.sort();
    out
}
