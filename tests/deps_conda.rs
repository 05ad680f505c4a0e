//! Conda packages end to end: a local channel made by the test (real
//! .tar.bz2 packages, indexed by rattler's indexer), solved and installed
//! by rattler into a deterministic /opt/conda layer, and a clear error for
//! a conflict.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::tools;

fn rattler_available() -> bool {
    let ok = Command::new("python3").args(["-c", "import rattler"]).output().is_ok_and(|o| o.status.success());
    if !ok {
        assert!(tools::skipping_tool_tests(), "py-rattler is not installed: pip install py-rattler (see .ci/run)");
        eprintln!("skipping: py-rattler is not installed");
    }
    ok
}

fn make_package(channel: &Path, name: &str, version: &str, extra: &[&str]) {
    let script = tools::repo_root().join("tests/support/make_conda_package.py");
    tools::run_checked(
        Command::new("python3").arg(script).arg(channel).args([name, version]).args(extra),
        Duration::from_secs(60),
    );
}

/// libtiny 0.5 and 1.0 (1.0 carries a file with the prefix placeholder),
/// tinytool 2.0 depending on libtiny >=1; indexed by rattler.
fn local_channel(dir: &Path) -> PathBuf {
    let channel = dir.join("channel");
    make_package(&channel, "libtiny", "0.5", &[]);
    make_package(&channel, "libtiny", "1.0", &["--file", "etc/tiny.conf=prefix=@PREFIX@\\n"]);
    make_package(&channel, "tinytool", "2.0", &["--depends", "libtiny >=1"]);
    // py-rattler 0.28 may crash at interpreter exit: leave with os._exit.
    let code = "import asyncio, os, sys, rattler.index as ix\nasyncio.run(ix.index_fs(sys.argv[1]))\nos._exit(0)";
    tools::run_checked(Command::new("python3").args(["-c", code]).arg(&channel), Duration::from_secs(60));
    assert!(channel.join("noarch/repodata.json").is_file());
    channel
}

fn project(dir: &Path, deps: &str) -> PathBuf {
    let project = dir.join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::write(
        project.join("cerebrium.toml"),
        format!("[cerebrium.deployment]\nname = \"conda\"\ninclude = []\n\n[cerebrium.dependencies.conda]\n{deps}"),
    )
    .unwrap();
    project
}

fn build(project: &Path, dir: &Path, channel: &Path, name: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_imgbake"))
        .args(["build", "--json"])
        .arg(project)
        .args(["--base", "scratch", "--output", &format!("oci:{}:app", dir.join(name).display())])
        .arg("--cache-dir")
        .arg(dir.join(format!("cache-{name}")))
        .env("IMGBAKE_CONDA_CHANNELS", channel)
        .env("SOURCE_DATE_EPOCH", "0")
        .output()
        .unwrap()
}

fn layer_files(layout: &Path, digest: &str) -> Vec<(String, Vec<u8>)> {
    let tar = support::layout::layer_tar(layout, digest);
    let mut archive = tar::Archive::new(&tar[..]);
    let mut files = Vec::new();
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        let path = entry.path().unwrap().to_string_lossy().into_owned();
        let mut bytes = Vec::new();
        entry.read_to_end(&mut bytes).unwrap();
        files.push((path, bytes));
    }
    files
}

#[test]
fn conda_packages_install_at_opt_conda_with_the_prefix_patched_and_reproducible_layers() {
    if !rattler_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let channel = local_channel(dir.path());
    let project = project(dir.path(), "tinytool = \"latest\"\n");
    let first = build(&project, dir.path(), &channel, "one");
    assert_eq!(first.status.code(), Some(0), "{}", String::from_utf8_lossy(&first.stderr));
    let first: serde_json::Value = serde_json::from_slice(&first.stdout).unwrap();
    let layer = first["layers"].as_array().unwrap().iter().find(|l| l["what"] == "conda packages (2)").unwrap();

    let lock = std::fs::read_to_string(project.join("imgbake.lock")).unwrap();
    assert!(lock.contains("name = \"libtiny\"\nversion = \"1.0\""), "{lock}");
    assert!(lock.contains("name = \"tinytool\""), "{lock}");

    let files = layer_files(&dir.path().join("one"), layer["digest"].as_str().unwrap());
    let conf = files.iter().find(|(p, _)| p == "opt/conda/etc/tiny.conf").expect("etc/tiny.conf");
    assert_eq!(String::from_utf8_lossy(&conf.1), "prefix=/opt/conda\n");
    assert!(files.iter().any(|(p, _)| p == "opt/conda/conda-meta/tinytool-2.0-0.json"));
    // Nothing points into the build's cache (extracted package dirs, link sources).
    let cache = dir.path().join("cache-one");
    for (path, bytes) in &files {
        let text = String::from_utf8_lossy(bytes);
        assert!(!text.contains(cache.to_str().unwrap()), "{path} holds a build-machine path:\n{text}");
    }

    // The same lock with an empty cache gives the same layer.
    let second = build(&project, dir.path(), &channel, "two");
    assert_eq!(second.status.code(), Some(0), "{}", String::from_utf8_lossy(&second.stderr));
    let second: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert_eq!(first["manifest_digest"], second["manifest_digest"]);

    let config = tools::skopeo_inspect_config(&format!("oci:{}:app", dir.path().join("one").display()));
    let env: Vec<String> = serde_json::from_value(config["config"]["Env"].clone()).unwrap();
    assert!(env.iter().any(|e| e.starts_with("PATH=/opt/conda/bin:")), "{env:?}");
}

#[test]
fn a_conda_conflict_is_a_clear_error() {
    if !rattler_available() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let channel = local_channel(dir.path());
    let project = project(dir.path(), "tinytool = \"latest\"\nlibtiny = \"<1\"\n");
    let output = build(&project, dir.path(), &channel, "one");
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("could not solve the conda requirements"), "{stderr}");
    assert!(stderr.contains("SolverError") && stderr.contains("libtiny"), "{stderr}");
    assert!(!project.join("imgbake.lock").exists());
}
