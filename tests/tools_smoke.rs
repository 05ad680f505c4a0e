//! Proves the test harness on this machine before the image engine lands:
//! the cached debootstrap rootfs runs under runc, umoci unpacks a layout that
//! skopeo can read, volumes are bind-mounted, and a detached server in a
//! container is reachable on loopback.

mod support;

use std::net::TcpListener;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use support::tools::{self, BindMount};

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn stdout_of(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A bundle whose rootfs is a copy of the cached base rootfs.
fn base_bundle(dir: &Path) -> std::path::PathBuf {
    let bundle = dir.join("bundle");
    std::fs::create_dir(&bundle).unwrap();
    tools::copy_tree(&tools::base_rootfs(), &bundle.join("rootfs"));
    bundle
}

#[test]
fn python_from_the_base_rootfs_runs_under_runc() {
    if !tools::require_tool("runc") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bundle = base_bundle(dir.path());
    tools::prepare_runc_bundle(
        &bundle,
        &["python3", "-c", r#"import os; print("hello from runc"); print(os.environ["GREETING"])"#],
        &[("GREETING", "from the test")],
        &[],
    );
    let id = tools::unique_container_id("smoke");
    let output = tools::runc_run(&bundle, &id, RUN_TIMEOUT);
    assert!(output.status.success(), "{output:?}\n{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(stdout_of(&output), "hello from runc\nfrom the test\n");
}

#[test]
fn container_exit_code_is_reported() {
    if !tools::require_tool("runc") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bundle = base_bundle(dir.path());
    tools::prepare_runc_bundle(&bundle, &["sh", "-c", "echo oops >&2; exit 3"], &[], &[]);
    let output = tools::runc_run(&bundle, &tools::unique_container_id("exit"), RUN_TIMEOUT);
    assert_eq!(output.status.code(), Some(3));
    assert_eq!(String::from_utf8_lossy(&output.stderr), "oops\n");
}

#[test]
fn umoci_layout_unpacks_inspects_and_runs_with_a_volume() {
    for tool in ["umoci", "skopeo", "runc"] {
        if !tools::require_tool(tool) {
            return;
        }
    }
    let dir = tempfile::tempdir().unwrap();
    let layout = dir.path().join("layout");
    let image = format!("{}:base", layout.display());
    for args in [
        vec!["init", "--layout", layout.to_str().unwrap()],
        vec!["new", "--image", &image],
        vec!["insert", "--image", &image, tools::base_rootfs().to_str().unwrap(), "/"],
    ] {
        tools::run_checked(Command::new("umoci").args(args), tools::TOOL_TIMEOUT);
    }

    let inspected = tools::skopeo_inspect(&format!("oci:{image}"));
    assert_eq!(inspected["Layers"].as_array().unwrap().len(), 1);
    assert_eq!(inspected["Os"], "linux");
    let manifest = tools::skopeo_inspect_raw(&format!("oci:{image}"));
    assert_eq!(manifest["schemaVersion"], 2);

    let copy = dir.path().join("copy");
    tools::skopeo_copy(&format!("oci:{image}"), &format!("oci:{}:copied", copy.display()), &[]);
    let copied = tools::skopeo_inspect(&format!("oci:{}:copied", copy.display()));
    assert_eq!(copied["Layers"], inspected["Layers"]);

    let bundle = dir.path().join("bundle");
    tools::umoci_unpack(&layout, "base", &bundle);
    let volume = dir.path().join("volume");
    std::fs::create_dir(&volume).unwrap();
    std::fs::write(volume.join("in.txt"), "from the host").unwrap();
    tools::prepare_runc_bundle(
        &bundle,
        &["sh", "-c", "cat /persistent-storage/in.txt; echo -n written > /persistent-storage/out.txt"],
        &[],
        &[BindMount::read_write(&volume, "/persistent-storage")],
    );
    let output = tools::runc_run(&bundle, &tools::unique_container_id("umoci"), RUN_TIMEOUT);
    assert!(output.status.success(), "{output:?}");
    assert_eq!(stdout_of(&output), "from the host");
    assert_eq!(std::fs::read_to_string(volume.join("out.txt")).unwrap(), "written");
}

#[test]
fn detached_server_is_reachable_on_loopback() {
    if !tools::require_tool("runc") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let bundle = base_bundle(dir.path());
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let port_text = port.to_string();
    tools::prepare_runc_bundle(
        &bundle,
        &["python3", "-m", "http.server", &port_text, "--bind", "127.0.0.1", "--directory", "/etc"],
        &[],
        &[],
    );
    let container = tools::runc_run_detached(&bundle, &tools::unique_container_id("server"));
    let url = format!("http://127.0.0.1:{port}/debian_version");
    let status = tools::wait_for_http(&url, Duration::from_secs(30));
    assert_eq!(status, 200, "{}", container.log_text());
    let body = reqwest::blocking::get(&url).unwrap().text().unwrap();
    assert!(body.starts_with("12."), "{body}");
    let id = container.id.clone();
    drop(container);
    let listed = tools::run_checked(Command::new("runc").args(["list", "--quiet"]), tools::TOOL_TIMEOUT);
    assert!(!stdout_of(&listed).contains(&id), "container left behind");
}
