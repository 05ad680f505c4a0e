//! The entrypoint must exist (issue 16, item 7): a FastAPI app whose
//! entrypoint runs `uvicorn` without uvicorn in its pip dependencies fails
//! `imgbake build` with the fix; with uvicorn listed it builds, and the
//! image answers its health path under runc. Packages come from PyPI (uv),
//! the base is the debootstrap rootfs.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::tools;

const FIXTURE: &str = "fixtures/cerebrium-fastapi-uvicorn";

fn build(project: &Path, dir: &Path) -> Output {
    let base = format!("rootfs:{}", tools::base_rootfs().display());
    Command::new(env!("CARGO_BIN_EXE_imgbake"))
        .args(["build", "--json", project.to_str().unwrap(), "--base", &base, "--output"])
        .arg(format!("oci:{}:app", dir.join("out").display()))
        .arg("--cache-dir")
        .arg(dir.join("cache"))
        .env("SOURCE_DATE_EPOCH", "0")
        .output()
        .unwrap()
}

/// The fixture copied to `dir/project`, its port changed to `port` (the
/// container shares the host's network).
fn project(dir: &Path, port: u16) -> PathBuf {
    let project = dir.join("project");
    tools::copy_tree(&tools::repo_root().join(FIXTURE), &project);
    let config = project.join("cerebrium.toml");
    let text = std::fs::read_to_string(&config).unwrap().replace("8000", &port.to_string());
    std::fs::write(&config, text).unwrap();
    project
}

#[test]
fn uvicorn_missing_from_pip_fails_the_build_and_listed_it_serves_under_runc() {
    if !["uv", "umoci", "runc", "debootstrap"].iter().all(|t| tools::require_tool(t)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = support::registry::free_port();
    let project = project(dir.path(), port);

    let failed = build(&project, dir.path());
    let stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("error: the entrypoint runs `uvicorn`, which is in no layer of the image\n  hint: add uvicorn to [cerebrium.dependencies.pip]"),
        "{stderr}"
    );
    assert!(!dir.path().join("out/index.json").exists(), "no image is written");

    let config = project.join("cerebrium.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}uvicorn = \"latest\"\n")).unwrap();
    let built = build(&project, dir.path());
    assert_eq!(built.status.code(), Some(0), "{}", String::from_utf8_lossy(&built.stderr));

    let bundle = dir.path().join("bundle");
    tools::umoci_unpack(&dir.path().join("out"), "app", &bundle);
    // The image's own entrypoint runs (`uvicorn main:app …`), not a test command.
    tools::prepare_runc_bundle(&bundle, &[], &[], &[]);
    let container = tools::runc_run_detached(&bundle, &tools::unique_container_id("entrypoint"));
    let url = format!("http://127.0.0.1:{port}/health");
    assert_eq!(tools::wait_for_http(&url, Duration::from_secs(60)), 200, "{}", container.log_text());
}
