//! `imgbake run` (issue 18, item 4): a built image starts under runc with no
//! daemon, its health endpoint is waited for, and the measured phases are
//! printed beside the plan's; a container that exits early and one that
//! never answers print their last output lines, exit 1, and leave no
//! container and no bundle behind. The app is the `cerebrium-local-weights`
//! fixture (a stdlib Python server with baked weights) on the debootstrap
//! base, built by `imgbake build`.

mod support;

use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};
use support::tools;

const FIXTURE: &str = "fixtures/cerebrium-local-weights";
/// Bound for one `imgbake run` (unpack + start + the health wait).
const RUN_BOUND: Duration = Duration::from_secs(180);

fn base() -> String {
    format!("rootfs:{}", tools::base_rootfs().display())
}

/// The fixture in `dir/project`, serving on `port` (the container shares
/// the host's network, so each test has its own), with `entrypoint` in
/// place of the server when given.
fn project(dir: &Path, port: u16, entrypoint: Option<&str>) -> PathBuf {
    let project = dir.join("project");
    tools::copy_tree(&tools::repo_root().join(FIXTURE), &project);
    let config = project.join("cerebrium.toml");
    let mut text = std::fs::read_to_string(&config).unwrap().replace("port = 8080", &format!("port = {port}"));
    if let Some(entrypoint) = entrypoint {
        text = text.replace(r#"entrypoint = ["python3", "server.py"]"#, &format!("entrypoint = {entrypoint}"));
    }
    std::fs::write(&config, text).unwrap();
    let server = project.join("server.py");
    let code = std::fs::read_to_string(&server).unwrap().replace("\"8080\"", &format!("\"{port}\""));
    std::fs::write(&server, code).unwrap();
    project
}

/// `imgbake build` of `project` into `dir/out` (tag `app`).
fn build(project: &Path, dir: &Path) {
    let output = tools::run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_imgbake"))
            .args(["build", project.to_str().unwrap(), "--base", &base(), "--output"])
            .arg(format!("oci:{}:app", dir.join("out").display()))
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .env("SOURCE_DATE_EPOCH", "0"),
        RUN_BOUND,
    );
    assert!(output.status.success(), "build failed: {}", String::from_utf8_lossy(&output.stderr));
}

/// `imgbake run` of the built image, its bundle under `dir/work`.
fn run(project: &Path, dir: &Path, extra: &[&str]) -> Output {
    run_with_env(project, dir, extra, &[])
}

fn run_with_env(project: &Path, dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Output {
    run_image(project, dir, &format!("oci:{}:app", dir.join("out").display()), extra, env)
}

fn run_image(project: &Path, dir: &Path, image: &str, extra: &[&str], env: &[(&str, &str)]) -> Output {
    std::fs::create_dir_all(dir.join("work")).unwrap();
    tools::run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_imgbake"))
            .envs(env.iter().copied())
            .args(["run", project.to_str().unwrap(), "--base", &base(), "--image", image])
            .arg("--cache-dir")
            .arg(dir.join("cache"))
            .arg("--workdir")
            .arg(dir.join("work"))
            .args(extra),
        RUN_BOUND,
    )
}

fn phase<'a>(report: &'a Value, name: &str) -> &'a Value {
    report["phases"].as_array().unwrap().iter().find(|p| p["phase"] == name).unwrap_or_else(|| panic!("{report}"))
}

/// The container is gone from runc and the bundle from the work directory.
fn assert_cleaned_up(report: &Value, dir: &Path) {
    let id = report["container"].as_str().unwrap();
    let listed = tools::run_checked(Command::new("runc").args(["list", "-q"]), tools::TOOL_TIMEOUT);
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(!listed.lines().any(|line| line == id), "{id} is still listed:\n{listed}");
    let left: Vec<_> = std::fs::read_dir(dir.join("work")).unwrap().collect();
    assert!(left.is_empty(), "the bundle was left behind: {left:?}");
}

fn skip() -> bool {
    !["uv", "runc", "debootstrap"].iter().all(|t| tools::require_tool(t))
}

#[test]
fn a_built_image_starts_under_runc_and_its_phases_are_printed_beside_the_plan() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = support::registry::free_port();
    let project = project(dir.path(), port, None);
    build(&project, dir.path());

    let output = run(&project, dir.path(), &["--json"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}\n{}", String::from_utf8_lossy(&output.stdout));
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["schema"], "imgbake.run/v1");
    assert_eq!(report["outcome"], "ready");
    assert_eq!(report["runtime"], "runc");
    assert_eq!(report["health"], format!("http://127.0.0.1:{port}/health"));
    let names: Vec<&str> = report["phases"].as_array().unwrap().iter().map(|p| p["phase"].as_str().unwrap()).collect();
    assert_eq!(names, ["pull", "unpack", "start", "prefetch", "imports", "load+init", "ready", "total"]);
    for measured in ["unpack", "start", "imports", "ready", "total"] {
        let seconds = phase(&report, measured)["seconds"].as_f64().unwrap_or_else(|| panic!("{measured}: {report}"));
        assert!(seconds > 0.0 && seconds < RUN_BOUND.as_secs_f64(), "{measured}: {seconds}");
    }
    assert_eq!(phase(&report, "pull")["seconds"], Value::Null, "a local layout is not pulled");
    assert_eq!(phase(&report, "pull")["note"], "not measured: the image is a local OCI layout");
    assert_eq!(phase(&report, "prefetch")["note"], "not measured: the image keeps no weights on a volume");
    assert!(phase(&report, "imports")["note"].as_str().unwrap().contains("modules"), "{report}");
    // The plan's prediction for the same config: the baked option on a new node.
    assert_eq!(report["plan"]["profile"], "cerebrium", "{report}");
    assert_eq!(report["plan"]["scenario"], "new_node");
    for predicted in ["pull", "unpack", "ready", "total"] {
        assert!(phase(&report, predicted)["plan_seconds"].as_f64().is_some(), "{predicted}: {report}");
    }
    let total = phase(&report, "total")["seconds"].as_f64().unwrap();
    let parts: f64 = ["unpack", "start", "ready"].iter().map(|p| phase(&report, p)["seconds"].as_f64().unwrap()).sum();
    assert!((total - parts).abs() < 0.01, "total {total} is unpack + start + ready {parts}");
    assert_cleaned_up(&report, dir.path());

    let text = run(&project, dir.path(), &[]);
    let stdout = String::from_utf8_lossy(&text.stdout);
    assert_eq!(text.status.code(), Some(0), "{}", String::from_utf8_lossy(&text.stderr));
    assert!(stdout.contains(&format!("ready: http://127.0.0.1:{port}/health answered 200 ")), "{stdout}");
    assert!(stdout.contains("plan: cerebrium, option auto, new node"), "{stdout}");
    for row in ["pull ", "unpack ", "start ", "prefetch ", "imports ", "load+init ", "ready ", "total "] {
        assert!(stdout.lines().any(|l| l.starts_with(row)), "no `{row}` row:\n{stdout}");
    }

    // The same image from a registry: the pull is measured too.
    if !tools::require_tool("skopeo") || !tools::require_tool("docker-registry") {
        return;
    }
    let registry = support::registry::TestRegistry::start();
    let reference = format!("{}/run/app:1", registry.host());
    tools::skopeo_copy(&format!("oci:{}:app", dir.path().join("out").display()), &format!("docker://{reference}"), &[]);
    std::fs::remove_dir_all(dir.path().join("cache")).unwrap();
    let pulled = run_image(&project, dir.path(), &reference, &["--json"], &[]);
    assert_eq!(pulled.status.code(), Some(0), "{}", String::from_utf8_lossy(&pulled.stderr));
    let report: Value = serde_json::from_slice(&pulled.stdout).unwrap();
    assert_eq!(report["image"], reference.as_str());
    let pull = phase(&report, "pull");
    assert!(pull["seconds"].as_f64().is_some_and(|s| s > 0.0), "{report}");
    assert_eq!(pull["note"], "from the registry into imgbake's blob cache");
    let total = phase(&report, "total")["seconds"].as_f64().unwrap();
    let parts: f64 =
        ["pull", "unpack", "start", "ready"].iter().map(|p| phase(&report, p)["seconds"].as_f64().unwrap()).sum();
    assert!((total - parts).abs() < 0.01, "total {total} is pull + unpack + start + ready {parts}");
    assert_cleaned_up(&report, dir.path());
}

#[test]
fn a_container_that_exits_early_prints_its_last_lines_and_fails() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = support::registry::free_port();
    let entrypoint = r#"["python3", "-c", "import sys\nfor i in range(30): print('warming', i)\nprint('cannot load the model: out of memory', file=sys.stderr)\nsys.exit(3)"]"#;
    let project = project(dir.path(), port, Some(entrypoint));
    build(&project, dir.path());

    let started = Instant::now();
    let output = run(&project, dir.path(), &["--json", "--timeout", "120"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(100), "an exit is seen at once, not at the timeout");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["outcome"], "exited");
    assert_eq!(report["exit"], "exit status 3");
    assert!(
        stderr.contains(&format!(
            "error: the container exited (exit status 3) before http://127.0.0.1:{port}/health answered"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("last 20 lines of its output:"), "{stderr}");
    assert!(stderr.contains("  | cannot load the model: out of memory\n"), "{stderr}");
    assert!(stderr.contains("  | warming 29\n") && !stderr.contains("  | warming 10\n"), "the last 20 lines: {stderr}");
    assert!(!stderr.contains("import time:"), "import profile lines are left out: {stderr}");
    assert_eq!(phase(&report, "ready")["seconds"], Value::Null);
    assert_eq!(phase(&report, "ready")["note"], "not measured: the container exited (exit status 3) first");
    assert_cleaned_up(&report, dir.path());
}

#[test]
fn a_container_that_never_answers_is_stopped_at_the_timeout() {
    if skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let port = support::registry::free_port();
    let entrypoint = r#"["python3", "-c", "import time\nprint('loading forever', flush=True)\ntime.sleep(600)"]"#;
    let project = project(dir.path(), port, Some(entrypoint));
    build(&project, dir.path());

    let started = Instant::now();
    let output = run(&project, dir.path(), &["--json", "--timeout", "3"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(started.elapsed() < Duration::from_secs(120), "bounded by --timeout");
    let report: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(report["outcome"], "timeout");
    assert!(
        stderr.contains(&format!("error: http://127.0.0.1:{port}/health did not answer 200 within 3 s")),
        "{stderr}"
    );
    assert!(stderr.contains("  | loading forever\n"), "{stderr}");
    assert_eq!(phase(&report, "ready")["note"], "not measured: no 200 within 3 s");
    assert_cleaned_up(&report, dir.path());
}

#[test]
fn volume_weights_are_fetched_into_the_given_volume_and_the_prefetch_is_timed() {
    if skip() {
        return;
    }
    const TOKEN_VAR: &str = "IMGBAKE_TEST_HF_TOKEN";
    const TOKEN: &str = "hf_run_test_token_5e1f";
    let dir = tempfile::tempdir().unwrap();
    let model = support::data::random_bytes(2 << 20, 7);
    let files = vec![("config.json", b"{\"hidden_size\": 8}\n".to_vec()), ("model.safetensors", model.clone())];
    support::hub::make_repo(&dir.path().join("hub"), "org/tiny", "main", &files);
    let hub = support::hub::TestHub::start(&dir.path().join("hub"), Some(TOKEN));
    let port = support::registry::free_port();
    let project = dir.path().join("project");
    std::fs::create_dir_all(&project).unwrap();
    std::fs::copy(tools::repo_root().join(FIXTURE).join("server.py"), project.join("server.py")).unwrap();
    std::fs::write(
        project.join("cerebrium.toml"),
        format!(
            "[cerebrium.deployment]\nname = \"volume-app\"\n\n[cerebrium.runtime.custom]\nport = {port}\n\
             entrypoint = [\"python3\", \"server.py\"]\nhealthcheck_endpoint = \"/health\"\n\n\
             [[imgbake.weights]]\nsource = \"hf://org/tiny@main\"\nmount = \"tiny\"\nmode = \"volume\"\nsecret = \"{TOKEN_VAR}\"\n"
        ),
    )
    .unwrap();
    let endpoint = hub.endpoint();
    let output = tools::run_with_timeout(
        Command::new(env!("CARGO_BIN_EXE_imgbake"))
            .args(["build", project.to_str().unwrap(), "--base", &base(), "--output"])
            .arg(format!("oci:{}:app", dir.path().join("out").display()))
            .arg("--cache-dir")
            .arg(dir.path().join("cache"))
            .env("HF_ENDPOINT", &endpoint)
            .env(TOKEN_VAR, TOKEN),
        RUN_BOUND,
    );
    assert!(output.status.success(), "build failed: {}", String::from_utf8_lossy(&output.stderr));

    let volume = dir.path().join("volume");
    let port_env = format!("PORT={port}");
    let endpoint_env = format!("HF_ENDPOINT={endpoint}");
    let args = [
        "--json",
        "--volume",
        volume.to_str().unwrap(),
        "--env",
        &port_env,
        "--env",
        &endpoint_env,
        "--env",
        TOKEN_VAR,
    ];
    let env = [("HF_ENDPOINT", endpoint.as_str()), (TOKEN_VAR, TOKEN)];
    let cold = run_with_env(&project, dir.path(), &args, &env);
    let stderr = String::from_utf8_lossy(&cold.stderr);
    assert_eq!(cold.status.code(), Some(0), "{stderr}\n{}", String::from_utf8_lossy(&cold.stdout));
    assert!(!stderr.contains(TOKEN) && !String::from_utf8_lossy(&cold.stdout).contains(TOKEN), "the token is printed");
    let report: Value = serde_json::from_slice(&cold.stdout).unwrap();
    assert_eq!(report["volume"]["mounts"], serde_json::json!(["/persistent-storage"]), "{report}");
    assert_eq!(report["volume"]["cold"], true);
    assert_eq!(report["volume"]["temporary"], false);
    assert_eq!(report["plan"]["scenario"], "cold_volume", "an empty volume is the plan's cold volume");
    let prefetch = phase(&report, "prefetch")["seconds"].as_f64().unwrap_or_else(|| panic!("{report}"));
    assert!(prefetch > 0.0, "{report}");
    assert!(phase(&report, "prefetch")["plan_seconds"].as_f64().unwrap() > 0.0, "{report}");
    assert_eq!(
        std::fs::read(volume.join("imgbake/tiny/model.safetensors")).unwrap(),
        model,
        "the hook filled the volume"
    );
    assert_cleaned_up(&report, dir.path());

    // The same volume again: warm, nothing to download, the plan's new-node start.
    let warm = run_with_env(&project, dir.path(), &args, &env);
    assert_eq!(warm.status.code(), Some(0), "{}", String::from_utf8_lossy(&warm.stderr));
    let report: Value = serde_json::from_slice(&warm.stdout).unwrap();
    assert_eq!(report["volume"]["cold"], false);
    assert_eq!(report["plan"]["scenario"], "new_node");
    assert!(phase(&report, "prefetch")["seconds"].as_f64().is_some(), "{report}");
}

#[test]
fn a_port_already_in_use_is_refused_before_anything_starts() {
    if skip() {
        return;
    }
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let dir = tempfile::tempdir().unwrap();
    let output = run_image(
        &tools::repo_root().join(FIXTURE),
        dir.path(),
        &format!("oci:{}:app", dir.path().join("none").display()),
        &["--port", &port],
        &[],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "error: port {port} is already in use on this machine; the container shares the host's network"
        )),
        "{stderr}"
    );
}
