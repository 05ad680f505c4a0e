//! `imgbake build` end to end with real tools: reproducible digests, a no-op
//! rebuild that reads nothing, an image on a debootstrap base that goes
//! through the loopback registry, skopeo, umoci and runc and really starts,
//! crash safety, and clear errors for bad input.

mod support;

use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use support::data::write_random;
use support::{base_image, registry::TestRegistry, tools};

const FIXTURE: &str = "fixtures/cerebrium-local-weights";

fn imgbake(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imgbake")).args(args).env("NO_COLOR", "1").output().unwrap()
}

fn build_json(args: &[&str]) -> serde_json::Value {
    build_json_logged(args).0
}

/// `build --json` and what it printed on stderr.
fn build_json_logged(args: &[&str]) -> (serde_json::Value, String) {
    let mut all = vec!["build", "--json"];
    all.extend_from_slice(args);
    let output = imgbake(&all);
    let log = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "imgbake {all:?}\n{log}");
    (serde_json::from_slice(&output.stdout).unwrap(), log)
}

/// A copy of the fixture project, with its own file times and inodes.
fn project_copy(dir: &Path) -> PathBuf {
    let project = dir.join("project");
    tools::copy_tree(&tools::repo_root().join(FIXTURE), &project);
    project
}

fn sha256_file(path: &Path) -> String {
    hex::encode(Sha256::digest(std::fs::read(path).unwrap()))
}

#[test]
fn two_builds_in_different_directories_give_the_same_manifest_digest() {
    let first_dir = tempfile::tempdir().unwrap();
    let second_dir = tempfile::tempdir().unwrap();
    let first = project_copy(first_dir.path());
    std::thread::sleep(Duration::from_millis(1100));
    let second = project_copy(second_dir.path());
    let build = |project: &Path, dir: &Path| {
        let output = format!("oci:{}:app", dir.join("out").display());
        let cache = dir.join("cache");
        build_json(&[
            project.to_str().unwrap(),
            "--base",
            "scratch",
            "--output",
            &output,
            "--cache-dir",
            cache.to_str().unwrap(),
        ])
    };
    let a = build(&first, first_dir.path());
    let b = build(&second, second_dir.path());
    assert_eq!(a["manifest_digest"], b["manifest_digest"]);
    assert_eq!(a["layers"].as_array().unwrap().len(), 2, "{a:#}");
}

#[test]
fn no_op_rebuild_reads_no_input_file_and_gives_the_same_image() {
    let dir = tempfile::tempdir().unwrap();
    let project = project_copy(dir.path());
    let output = format!("oci:{}:app", dir.path().join("out").display());
    let cache = dir.path().join("cache");
    let args =
        [project.to_str().unwrap(), "--base", "scratch", "--output", &output, "--cache-dir", cache.to_str().unwrap()];
    let first = build_json(&args);
    assert_eq!(first["cache"]["misses"], 2);
    let second = build_json(&args);
    assert_eq!(second["manifest_digest"], first["manifest_digest"]);
    assert_eq!(second["cache"]["hits"], 2, "{second:#}");
    assert_eq!(second["cache"]["misses"], 0);
    assert_eq!(second["cache"]["files_read"], 0);
    // A changed app file rebuilds only the app layer.
    std::fs::write(project.join("server.py"), "print('changed')\n").unwrap();
    let third = build_json(&args);
    assert_eq!((third["cache"]["hits"].as_u64(), third["cache"]["misses"].as_u64()), (Some(1), Some(1)));
    assert_ne!(third["manifest_digest"], first["manifest_digest"]);
    assert_eq!(third["layers"][1]["digest"], first["layers"][1]["digest"], "the weights layer was rebuilt");
}

#[test]
fn image_on_the_debootstrap_base_goes_through_registry_skopeo_umoci_and_runc() {
    if !["skopeo", "umoci", "runc", "docker-registry", "debootstrap"].iter().all(|t| tools::require_tool(t)) {
        return;
    }
    let registry = TestRegistry::start();
    let host = registry.host();
    let base_dir = base_image::base_layout();
    let base_ref = format!("{host}/base/bookworm-python:1");
    let copied = tools::skopeo_copy(
        &format!("oci:{}:{}", base_dir.display(), base_image::BASE_TAG),
        &format!("docker://{base_ref}"),
        &["--dest-tls-verify=false"],
    );
    assert!(copied.status.success(), "{}", String::from_utf8_lossy(&copied.stderr));

    let dir = tempfile::tempdir().unwrap();
    let project = project_copy(dir.path());
    // The fixture names the loopback registry's base in its own config.
    let config = project.join("cerebrium.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    let text = text.replace("\"python:3.11-slim-bookworm\"", &format!("\"{base_ref}\""));
    assert!(text.contains(&base_ref));
    std::fs::write(&config, text).unwrap();
    let layout = dir.path().join("out");
    let target = format!("{host}/apps/local-weights:1");
    let output_arg = format!("oci:{}:app", layout.display());
    let cache_arg = dir.path().join("cache");
    let build_args = [
        project.to_str().unwrap(),
        "--insecure-registry",
        &host,
        "--output",
        &output_arg,
        "--push",
        &target,
        "--cache-dir",
        cache_arg.to_str().unwrap(),
    ];
    let (result, log) = build_json_logged(&build_args);
    let digest = result["manifest_digest"].as_str().unwrap().to_string();
    assert!(result["base_pinned"].as_str().unwrap().starts_with(&format!("{host}/base/bookworm-python@sha256:")));
    assert!(result["pushed"].as_str().unwrap().ends_with(&digest), "{result:#}");
    // Each layer built went up while the build went on, once: the push at
    // the end found it there.
    for layer in result["layers"].as_array().unwrap() {
        let blob = layer["digest"].as_str().unwrap();
        assert_eq!(log.matches(&format!("pushed {blob} ")).count(), 1, "{blob}\n{log}");
        assert!(log.contains(&format!("exists {blob} (skipped)")), "{blob}\n{log}");
    }
    let phases: Vec<&str> =
        result["timings"].as_array().unwrap().iter().map(|s| s["phase"].as_str().unwrap()).collect();
    for phase in ["resolve", "write layout", "wait for early uploads", "push"] {
        assert!(phases.contains(&phase), "{phase}: {phases:?}");
    }

    // skopeo accepts both the layout and the pushed image.
    let local = tools::skopeo_inspect(&format!("oci:{}:app", layout.display()));
    assert_eq!(local["Digest"], digest.as_str());
    let remote = tools::skopeo_inspect(&format!("docker://{target}"));
    assert_eq!(remote["Digest"], digest.as_str());
    assert_eq!(remote["Layers"].as_array().unwrap().len(), 3, "base + app + weights");

    // A node pulls it, unpacks it and starts it.
    let pulled = dir.path().join("node-store");
    let copy = tools::skopeo_copy(
        &format!("docker://{target}"),
        &format!("oci:{}:app", pulled.display()),
        &["--src-tls-verify=false"],
    );
    assert!(copy.status.success(), "{}", String::from_utf8_lossy(&copy.stderr));
    unpack_run_and_check_health(&pulled, "app", dir.path());

    // Re-push of the unchanged image uploads nothing.
    let again = build_json(&build_args);
    assert_eq!(again["manifest_digest"], digest.as_str());
}

/// umoci-unpacks `layout:tag`, checks the baked files, starts the image's own
/// entrypoint under runc and checks that the app served the weights' digests.
fn unpack_run_and_check_health(layout: &Path, tag: &str, dir: &Path) {
    let bundle = dir.join("bundle");
    tools::umoci_unpack(layout, tag, &bundle);
    let rootfs = bundle.join("rootfs");
    for name in ["config.json", "model.safetensors"] {
        let baked = rootfs.join("app/model_cache/tiny").join(name);
        let original = tools::repo_root().join(FIXTURE).join("weights/tiny").join(name);
        assert_eq!(sha256_file(&baked), sha256_file(&original), "{name}");
    }
    assert!(rootfs.join("app/server.py").is_file());
    assert!(!rootfs.join("app/weights").exists(), "excluded by the config");

    let port = support::registry::free_port().to_string();
    tools::prepare_runc_bundle(&bundle, &[], &[("PORT", &port)], &[]);
    let container = tools::runc_run_detached(&bundle, &tools::unique_container_id("build"));
    let url = format!("http://127.0.0.1:{port}/health");
    let status = tools::wait_for_http(&url, Duration::from_secs(60));
    assert_eq!(status, 200, "{}", container.log_text());
    let client = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
    let body: serde_json::Value = client.get(&url).send().unwrap().json().unwrap();
    let expected = sha256_file(&tools::repo_root().join(FIXTURE).join("weights/tiny/model.safetensors"));
    assert_eq!(body["weights"]["model.safetensors"], expected.as_str(), "{body:#}");
}

#[test]
fn image_on_a_rootfs_base_starts_under_runc() {
    if !["umoci", "runc", "debootstrap"].iter().all(|t| tools::require_tool(t)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let project = project_copy(dir.path());
    let layout = dir.path().join("out");
    let base = format!("rootfs:{}", tools::base_rootfs().display());
    let result = build_json(&[
        project.to_str().unwrap(),
        "--base",
        &base,
        "--output",
        &format!("oci:{}:app", layout.display()),
        "--cache-dir",
        dir.path().join("cache").to_str().unwrap(),
    ]);
    assert_eq!(result["layers"][0]["what"], "base root filesystem");
    unpack_run_and_check_health(&layout, "app", dir.path());
}

#[test]
fn a_build_killed_mid_layer_leaves_no_referenced_partial_blob_and_a_rerun_completes() {
    let dir = tempfile::tempdir().unwrap();
    let project = project_copy(dir.path());
    write_random(&project.join("weights/tiny/big.bin"), 256 << 20);
    let config = project.join("cerebrium.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace("compression = \"auto\"", "compression = \"gzip\"");
    std::fs::write(&config, text).unwrap();
    let out = dir.path().join("out");
    let cache = dir.path().join("cache");
    let output_arg = format!("oci:{}:app", out.display());
    let args = [
        project.to_str().unwrap(),
        "--base",
        "scratch",
        "--output",
        &output_arg,
        "--cache-dir",
        cache.to_str().unwrap(),
    ];

    let mut child = Command::new(env!("CARGO_BIN_EXE_imgbake")).arg("build").args(args).spawn().unwrap();
    // Kill it while the big layer is being written (a temp blob is growing).
    let deadline = Instant::now() + Duration::from_secs(60);
    let blob_dir = cache.join("blobs/sha256");
    loop {
        let growing = std::fs::read_dir(&blob_dir)
            .map(|entries| entries.filter_map(Result::ok).any(|e| e.metadata().is_ok_and(|m| m.len() > (8 << 20))))
            .unwrap_or(false);
        if growing || Instant::now() > deadline {
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();

    // Every blob named by a digest holds exactly that content; nothing names a partial one.
    for entry in std::fs::read_dir(&blob_dir).unwrap().filter_map(Result::ok) {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.len() == 64 && name.bytes().all(|b| b.is_ascii_hexdigit()) {
            assert_eq!(sha256_file(&entry.path()), name, "blob {name} is not what its name says");
        }
    }
    assert!(!out.join("index.json").exists(), "the killed build tagged an image");

    let result = build_json(&args);
    let inspected = if tools::require_tool("skopeo") { Some(tools::skopeo_inspect(&output_arg)) } else { None };
    if let Some(inspected) = inspected {
        assert_eq!(inspected["Digest"], result["manifest_digest"]);
    }
}

#[test]
fn bad_base_images_are_one_clear_error_naming_them() {
    let dir = tempfile::tempdir().unwrap();
    let project = project_copy(dir.path());
    let cache = dir.path().join("cache");
    let out = format!("oci:{}:app", dir.path().join("out").display());
    let not_a_layout = dir.path().join("empty");
    std::fs::create_dir(&not_a_layout).unwrap();
    let closed_port = support::registry::free_port();
    let cases = [
        (format!("oci:{}:v1", not_a_layout.display()), "cannot read the base image oci:"),
        (
            format!("127.0.0.1:{closed_port}/nothing:1"),
            &*format!("cannot pull the base image 127.0.0.1:{closed_port}/nothing:1"),
        ),
    ];
    for (base, expected) in cases {
        let output = imgbake(&[
            "build",
            project.to_str().unwrap(),
            "--base",
            &base,
            "--insecure-registry",
            &format!("127.0.0.1:{closed_port}"),
            "--output",
            &out,
            "--cache-dir",
            cache.to_str().unwrap(),
        ]);
        assert_eq!(output.status.code(), Some(1), "{base}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.lines().next().unwrap().contains(expected), "{base}: {stderr}");
        assert!(!dir.path().join("out/index.json").exists());
    }
}

#[test]
fn settings_the_native_build_cannot_honour_exit_2_with_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let commands = dir.path().join("commands");
    std::fs::create_dir_all(&commands).unwrap();
    std::fs::write(
        commands.join("cerebrium.toml"),
        "[cerebrium.deployment]\nname = \"c\"\nshell_commands = [\"echo hi\"]\n",
    )
    .unwrap();
    let commands = commands.to_str().unwrap();
    for (project, expected) in [
        (commands, "need a container builder"),
        ("fixtures/truss-volume", "wraps the config's entrypoint with the prefetch hook, but the config has none"),
    ] {
        let output = imgbake(&["build", project, "--base", "scratch", "--output", "oci:/nonexistent/never:x"]);
        assert_eq!(output.status.code(), Some(2), "{project}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.lines().last().unwrap().contains(expected), "{project}: {stderr}");
    }
}

#[test]
fn weights_over_the_split_size_get_a_layer_each_and_auto_compression_fits_the_data() {
    let dir = tempfile::tempdir().unwrap();
    let project = project_copy(dir.path());
    let weights = project.join("weights/tiny");
    write_random(&weights.join("shard-1.safetensors"), 3 << 20);
    write_random(&weights.join("shard-2.safetensors"), 2 << 20);
    std::fs::write(weights.join("tokenizer.json"), "{\"vocab\": [\"a\", \"b\"]}\n".repeat(50_000)).unwrap();
    let config = project.join("cerebrium.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace("[imgbake]\n", "[imgbake]\nweights_split_mib = 2\n");
    std::fs::write(&config, text).unwrap();
    let result = build_json(&[
        project.to_str().unwrap(),
        "--base",
        "scratch",
        "--output",
        &format!("oci:{}:app", dir.path().join("out").display()),
        "--cache-dir",
        dir.path().join("cache").to_str().unwrap(),
    ]);
    let layers = result["layers"].as_array().unwrap();
    let weights_layers: Vec<&serde_json::Value> =
        layers.iter().filter(|l| l["what"].as_str().unwrap().starts_with("weights")).collect();
    // config.json, model.safetensors (64 KiB) and tokenizer.json (1.1 MiB) share one layer; each 2+ MiB shard is alone.
    assert_eq!(weights_layers.len(), 3, "{result:#}");
    assert_eq!(weights_layers[0]["files"], 3);
    assert_eq!((weights_layers[1]["files"].as_u64(), weights_layers[2]["files"].as_u64()), (Some(1), Some(1)));
    // Random shards are stored uncompressed; the text-heavy small-file layer is
    // compressed, with zstd since Cerebrium's runtime (containerd) unpacks it.
    assert_eq!(weights_layers[1]["media_type"], "application/vnd.oci.image.layer.v1.tar");
    assert_eq!(weights_layers[2]["media_type"], "application/vnd.oci.image.layer.v1.tar");
    assert_eq!(weights_layers[0]["media_type"], "application/vnd.oci.image.layer.v1.tar+zstd");
}
