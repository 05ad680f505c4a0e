//! Python dependencies end to end: uv and pip resolve for the image's Python
//! (not this machine's), wheels install into per-distribution layers, the
//! lock makes builds reproducible and `--locked` catches drift, and a real
//! set from PyPI imports inside a container under runc.
//!
//! Offline tests use a local index of real wheels the test writes itself
//! (tests/support/make_wheel.py), served to uv/pip by `--find-links`.

mod support;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;
use support::tools;

fn imgbake_env(args: &[&str], env: &[(&str, String)]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_imgbake"));
    command.args(args).env("NO_COLOR", "1").env("SOURCE_DATE_EPOCH", "0");
    for (name, value) in env {
        command.env(name, value);
    }
    command.output().unwrap()
}

fn make_wheel(index: &Path, name: &str, tag: &str, extra: &[&str]) {
    let script = tools::repo_root().join("tests/support/make_wheel.py");
    let mut command = Command::new("python3");
    command.arg(script).arg(index).args([name, "1.0", tag]).args(extra);
    tools::run_checked(&mut command, Duration::from_secs(60));
}

/// A local index: `tinyapp` with a wheel for CPython 3.11 and one for 3.12
/// (and a console script), `bigpkg` with 70 MiB inside, `srconly` as an sdist only.
fn local_index(dir: &Path) -> PathBuf {
    let index = dir.join("index");
    make_wheel(&index, "tinyapp", "cp311-cp311-manylinux_2_17_x86_64", &["--script"]);
    make_wheel(&index, "tinyapp", "cp312-cp312-manylinux_2_17_x86_64", &["--script"]);
    make_wheel(&index, "bigpkg", "py3-none-any", &["--big", "70"]);
    make_wheel(&index, "srconly", "-", &["--sdist"]);
    index
}

fn offline_env(index: &Path) -> Vec<(&'static str, String)> {
    let index = index.display().to_string();
    vec![
        ("UV_FIND_LINKS", index.clone()),
        ("UV_NO_INDEX", "1".into()),
        ("PIP_FIND_LINKS", index),
        ("PIP_NO_INDEX", "1".into()),
    ]
}

fn write_project(dir: &Path, use_uv: bool, python: &str, deps: &[(&str, &str)]) -> PathBuf {
    let project = dir.join("project");
    std::fs::create_dir_all(&project).unwrap();
    let deps: String = deps.iter().map(|(name, version)| format!("{name} = \"{version}\"\n")).collect();
    let config = format!(
        "[cerebrium.deployment]\nname = \"deps\"\npython_version = \"{python}\"\ndocker_base_image_url = \"debian:bookworm-slim\"\n\
         use_uv = {use_uv}\ninclude = [\"*.py\"]\n\n[cerebrium.runtime.custom]\nport = 8000\n\
         entrypoint = [\"python3\", \"main.py\"]\n\n[cerebrium.dependencies.pip]\n{deps}"
    );
    std::fs::write(project.join("cerebrium.toml"), config).unwrap();
    std::fs::write(project.join("main.py"), "print('hi')\n").unwrap();
    project
}

fn build(project: &Path, out: &Path, cache: &Path, env: &[(&str, String)], extra: &[&str]) -> Output {
    let output = format!("oci:{}:app", out.display());
    let mut args =
        vec!["build", "--json", project.to_str().unwrap(), "--base", "scratch", "--output", &output, "--cache-dir"];
    args.push(cache.to_str().unwrap());
    args.extend_from_slice(extra);
    imgbake_env(&args, env)
}

/// `imgbake build --json` on the debootstrap base's root filesystem.
fn build_on_rootfs(project: &Path, layout: &Path, cache: &Path) -> Output {
    let base = format!("rootfs:{}", tools::base_rootfs().display());
    let output = format!("oci:{}:app", layout.display());
    let args = ["build", "--json", project.to_str().unwrap(), "--base", &base, "--output", &output, "--cache-dir"];
    let mut args = args.to_vec();
    args.push(cache.to_str().unwrap());
    imgbake_env(&args, &[])
}

/// `imgbake lock` for a base without Python (the config's python_version).
fn lock_on_scratch(project: &Path, cache: &Path, env: &[(&str, String)]) -> Output {
    let args = ["lock", project.to_str().unwrap(), "--base", "scratch", "--cache-dir", cache.to_str().unwrap()];
    imgbake_env(&args, env)
}

fn build_ok(project: &Path, out: &Path, cache: &Path, env: &[(&str, String)]) -> serde_json::Value {
    let output = build(project, out, cache, env, &[]);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn layer_named<'a>(result: &'a serde_json::Value, what: &str) -> &'a serde_json::Value {
    result["layers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["what"] == what)
        .unwrap_or_else(|| panic!("no layer `{what}` in {result:#}"))
}

/// The content of `path` in a layer blob of an OCI layout.
fn file_in_layer(layout: &Path, digest: &str, path: &str) -> Option<Vec<u8>> {
    let tar = support::layout::layer_tar(layout, digest);
    let mut archive = tar::Archive::new(&tar[..]);
    for entry in archive.entries().unwrap() {
        let mut entry = entry.unwrap();
        if entry.path().unwrap().to_string_lossy() == path {
            let mut bytes = Vec::new();
            entry.read_to_end(&mut bytes).unwrap();
            return Some(bytes);
        }
    }
    None
}

#[test]
fn uv_resolves_for_the_configs_python_and_the_same_lock_gives_the_same_layers() {
    if !tools::require_tool("uv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let index = local_index(dir.path());
    let env = offline_env(&index);
    // This machine's Python is 3.11; the config asks for 3.12 on a base without Python.
    let project = write_project(dir.path(), true, "3.12", &[("tinyapp", "latest"), ("bigpkg", "1.0")]);
    let first = build_ok(&project, &dir.path().join("out1"), &dir.path().join("cache1"), &env);

    let lock = std::fs::read_to_string(project.join("imgbake.lock")).unwrap();
    assert!(lock.contains("python_version = \"3.12\""), "{lock}");
    assert!(lock.contains("tinyapp-1.0-cp312-cp312-manylinux_2_17_x86_64.whl"), "{lock}");
    assert!(!lock.contains("cp311"), "{lock}");
    assert!(lock.contains("installer = \"uv\""), "{lock}");

    // The 70 MiB distribution has a layer of its own; the small one another.
    let big = layer_named(&first, "python bigpkg==1.0");
    let small = layer_named(&first, "python tinyapp==1.0");
    assert_ne!(big["digest"], small["digest"]);
    let script =
        file_in_layer(&dir.path().join("out1"), small["digest"].as_str().unwrap(), "usr/local/bin/tinyapp-hello")
            .expect("the console script is in the layer");
    assert!(script.starts_with(b"#!/usr/local/bin/python3.12\n"), "{}", String::from_utf8_lossy(&script));
    let init = file_in_layer(
        &dir.path().join("out1"),
        small["digest"].as_str().unwrap(),
        "usr/local/lib/python3.12/site-packages/tinyapp/__init__.py",
    )
    .unwrap();
    assert!(String::from_utf8_lossy(&init).contains("cp312"));

    // Same lock, empty cache, other output directory: the same layers and image.
    let second = build_ok(&project, &dir.path().join("out2"), &dir.path().join("cache2"), &env);
    for what in ["python bigpkg==1.0", "python tinyapp==1.0"] {
        assert_eq!(layer_named(&first, what)["digest"], layer_named(&second, what)["digest"], "{what}");
    }
    assert_eq!(first["manifest_digest"], second["manifest_digest"]);
}

/// A torch-shaped distribution (two big libraries, many small modules) past
/// the dependency split: its parts deal the two libraries apart, and two
/// apps with different code and one more small package share every part's
/// digest, each built from its own empty cache; `plan` lists the same layers.
#[test]
fn a_distribution_past_the_split_is_shared_part_for_part_between_two_apps() {
    if !tools::require_tool("uv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index");
    make_wheel(&index, "torchlike", "py3-none-any", &["--libs", "5,4"]);
    make_wheel(&index, "tinyapp", "cp311-cp311-manylinux_2_17_x86_64", &[]);
    let env = offline_env(&index);
    let app = |name: &str, deps: &[(&str, &str)], code: &str| {
        let project = write_project(&dir.path().join(name), true, "3.11", deps);
        let config = std::fs::read_to_string(project.join("cerebrium.toml")).unwrap();
        let extension = "\n[imgbake]\ndependency_split_mib = 4\ncompression = \"none\"\n";
        std::fs::write(project.join("cerebrium.toml"), config + extension).unwrap();
        std::fs::write(project.join("main.py"), code).unwrap();
        project
    };
    let first = app("first", &[("torchlike", "1.0")], "print('first app')\n");
    let second = app("second", &[("torchlike", "1.0"), ("tinyapp", "1.0")], "print('second app')\n");
    let built_first = build_ok(&first, &dir.path().join("out1"), &dir.path().join("cache1"), &env);
    let built_second = build_ok(&second, &dir.path().join("out2"), &dir.path().join("cache2"), &env);

    // The lock records the installed size read from the wheel's zip
    // directory, and of it the .py bytes and the libraries (lib0.so, lib1.so).
    let lock = std::fs::read_to_string(first.join("imgbake.lock")).unwrap();
    assert!(lock.contains("installed = 94"), "{lock}");
    assert!(lock.contains("native_libraries = 2\n"), "{lock}");
    assert!(lock.contains("python_source = "), "{lock}");

    let parts: Vec<String> = (1..=3).map(|i| format!("python torchlike==1.0 (part {i} of 3)")).collect();
    let site = "usr/local/lib/python3.11/site-packages/torchlike";
    let mut holders = Vec::new();
    for part in &parts {
        let layer = layer_named(&built_first, part);
        assert_eq!(layer["digest"], layer_named(&built_second, part)["digest"], "{part}");
        let digest = layer["digest"].as_str().unwrap();
        let held: Vec<bool> = ["lib/lib0.so", "lib/lib1.so", "nn/module_07.py"]
            .iter()
            .map(|file| file_in_layer(&dir.path().join("out1"), digest, &format!("{site}/{file}")).is_some())
            .collect();
        holders.push(held);
    }
    // Largest first, each to the lightest part: lib0 (5 MiB), lib1 (4 MiB), then the modules.
    assert_eq!(holders, vec![vec![true, false, false], vec![false, true, false], vec![false, false, true]]);
    assert_ne!(layer_named(&built_first, "app files")["digest"], layer_named(&built_second, "app files")["digest"]);

    // `plan` reads the same plan: the same Python layer names.
    let plan = imgbake_env(&["plan", first.to_str().unwrap(), "--base", "scratch", "--format", "json"], &env);
    assert_eq!(plan.status.code(), Some(0), "{}", String::from_utf8_lossy(&plan.stderr));
    let plan: serde_json::Value = serde_json::from_slice(&plan.stdout).unwrap();
    let planned: Vec<&str> = plan["layers"].as_array().unwrap().iter().filter_map(|l| l["what"].as_str()).collect();
    for part in &parts {
        assert!(planned.contains(&part.as_str()), "{part} not in {planned:?}");
    }
    // …and prices the imports from the lock's sizes: the two libraries alone
    // take 2 × native_library_seconds.
    let imports = plan["options"][0]["cold_starts"][0]["terms"]["imports"].as_f64().unwrap();
    let param = |key: &str| {
        let found = plan["assumptions"].as_array().unwrap().iter().find(|a| a["key"] == key);
        found.and_then(|a| a["value"].as_f64()).unwrap_or_else(|| panic!("{key} not in the plan's assumptions"))
    };
    let libraries = 2.0 * param("native_library_seconds");
    assert!(imports > libraries, "imports {imports} s, libraries alone {libraries} s");
}

#[test]
fn locked_builds_fail_with_the_difference_when_a_requirement_changes() {
    if !tools::require_tool("uv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let index = local_index(dir.path());
    let env = offline_env(&index);
    let project = write_project(dir.path(), true, "3.12", &[("tinyapp", "latest")]);
    let out = dir.path().join("out");
    let cache = dir.path().join("cache");
    build_ok(&project, &out, &cache, &env);
    let locked = build(&project, &out, &cache, &env, &["--locked"]);
    assert_eq!(locked.status.code(), Some(0), "{}", String::from_utf8_lossy(&locked.stderr));
    let check = imgbake_env(&["lock", project.to_str().unwrap(), "--check"], &env);
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stderr));

    let config = std::fs::read_to_string(project.join("cerebrium.toml")).unwrap();
    std::fs::write(project.join("cerebrium.toml"), config.replace("tinyapp = \"latest\"", "tinyapp = \"==1.0\""))
        .unwrap();
    let before = std::fs::read(project.join("imgbake.lock")).unwrap();
    let stale = build(&project, &out, &cache, &env, &["--locked"]);
    assert_eq!(stale.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&stale.stderr);
    assert!(stderr.contains("- pip = [\"tinyapp\"]") && stderr.contains("+ pip = [\"tinyapp==1.0\"]"), "{stderr}");
    assert!(stderr.contains("imgbake lock"), "{stderr}");
    assert_eq!(std::fs::read(project.join("imgbake.lock")).unwrap(), before, "--locked never rewrites the lock");
    let check = imgbake_env(&["lock", project.to_str().unwrap(), "--check"], &env);
    assert_eq!(check.status.code(), Some(1));

    // Without --locked the build refreshes the lock.
    build_ok(&project, &out, &cache, &env);
    let lock = std::fs::read_to_string(project.join("imgbake.lock")).unwrap();
    assert!(lock.contains("\"tinyapp==1.0\""), "{lock}");
}

/// A project whose requirements.txt is given by `[cerebrium.dependencies.paths]`.
fn write_requirements_project(dir: &Path, use_uv: bool, requirements: &str) -> PathBuf {
    let project = dir.join("project");
    std::fs::create_dir_all(&project).unwrap();
    let config = format!(
        "[cerebrium.deployment]\nname = \"from-source\"\npython_version = \"3.11\"\nuse_uv = {use_uv}\n\
         include = [\"*.py\"]\n\n[cerebrium.runtime.custom]\nport = 8000\nentrypoint = [\"python3\", \"main.py\"]\n\n\
         [cerebrium.dependencies.paths]\npip = \"requirements.txt\"\n"
    );
    std::fs::write(project.join("cerebrium.toml"), config).unwrap();
    std::fs::write(project.join("requirements.txt"), requirements).unwrap();
    std::fs::write(project.join("main.py"), "print('hi')\n").unwrap();
    project
}

fn git(dir: &Path, args: &[&str]) -> String {
    let output = Command::new("git")
        .args(["-c", "user.email=ci@example.invalid", "-c", "user.name=ci", "-c", "init.defaultBranch=main"])
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "git {args:?}: {}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8_lossy(&output.stdout).trim().to_string()
}

/// A pure-Python project in a local git repository (setuptools, src layout),
/// as a team's internal library would be; returns its first commit.
fn git_package(dir: &Path) -> String {
    std::fs::create_dir_all(dir.join("src/imgbake_test_git")).unwrap();
    std::fs::write(
        dir.join("pyproject.toml"),
        "[build-system]\nrequires = [\"setuptools>=61\"]\nbuild-backend = \"setuptools.build_meta\"\n\n\
         [project]\nname = \"imgbake-test-git\"\nversion = \"0.1.0\"\n",
    )
    .unwrap();
    std::fs::write(dir.join("src/imgbake_test_git/__init__.py"), "revision = 'first'\n").unwrap();
    git(dir, &["init", "--quiet"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "--quiet", "-m", "first"]);
    git(dir, &["rev-parse", "HEAD"])
}

/// A pure-Python sdist (from a find-links index) and a `git+` requirement
/// are built into wheels on the build machine with uv and with pip: the lock
/// pins their sources (sdist sha256, git commit) and the built wheels; an
/// empty cache rebuilds the same image; a branch that moved is warned about
/// and the locked commit is still what gets built. Build backends come from
/// PyPI, as they do for users.
#[test]
fn pure_python_sdists_and_git_requirements_are_built_natively_and_pinned() {
    if !["uv", "git"].iter().all(|t| tools::require_tool(t)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index");
    make_wheel(&index, "imgbake-test-srconly", "-", &["--sdist"]);
    let repo = dir.path().join("gitpkg");
    let first_commit = git_package(&repo);
    let env = vec![("UV_FIND_LINKS", index.display().to_string()), ("PIP_FIND_LINKS", index.display().to_string())];
    for use_uv in [true, false] {
        let requirements =
            format!("imgbake-test-srconly==1.0\nimgbake-test-git @ git+file://{}@main\n", repo.display());
        let project = write_requirements_project(&dir.path().join(format!("uv-{use_uv}")), use_uv, &requirements);
        let out = dir.path().join(format!("out-{use_uv}"));
        let first = build_ok(&project, &out, &dir.path().join(format!("cache1-{use_uv}")), &env);

        let lock = std::fs::read_to_string(project.join("imgbake.lock")).unwrap();
        assert!(lock.contains("url = \"built:imgbake_test_srconly-1.0-py3-none-any.whl\""), "{lock}");
        assert!(lock.contains("kind = \"sdist\"") && lock.contains("imgbake_test_srconly-1.0.tar.gz"), "{lock}");
        assert!(lock.contains("kind = \"git\"") && lock.contains(&format!("commit = \"{first_commit}\"")), "{lock}");
        assert!(lock.contains("requested_revision = \"main\""), "{lock}");
        let layer = layer_named(&first, "python packages (2)");
        let init = file_in_layer(
            &out,
            layer["digest"].as_str().unwrap(),
            "usr/local/lib/python3.11/site-packages/imgbake_test_git/__init__.py",
        )
        .expect("the git package is installed");
        assert_eq!(init, b"revision = 'first'\n");
        assert!(file_in_layer(
            &out,
            layer["digest"].as_str().unwrap(),
            "usr/local/lib/python3.11/site-packages/imgbake_test_srconly/__init__.py"
        )
        .is_some());

        // From the lock with an empty cache: rebuilt from the pinned sources, same image.
        let again = build_ok(&project, &dir.path().join(format!("again-{use_uv}")), &dir.path().join("empty"), &env);
        assert_eq!(first["manifest_digest"], again["manifest_digest"], "use_uv = {use_uv}");
        std::fs::remove_dir_all(dir.path().join("empty")).unwrap();
    }

    // The branch moves: the build warns and still builds the locked commit.
    std::fs::write(repo.join("src/imgbake_test_git/__init__.py"), "revision = 'second'\n").unwrap();
    git(&repo, &["commit", "--quiet", "-am", "second"]);
    let project = dir.path().join("uv-true/project");
    let out = dir.path().join("out-moved");
    let output = build(&project, &out, &dir.path().join("cache-moved"), &env, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("now points at") && stderr.contains(&first_commit), "{stderr}");
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let layer = layer_named(&result, "python packages (2)");
    let init = file_in_layer(
        &out,
        layer["digest"].as_str().unwrap(),
        "usr/local/lib/python3.11/site-packages/imgbake_test_git/__init__.py",
    )
    .unwrap();
    assert_eq!(init, b"revision = 'first'\n");
}

/// A package whose only distribution builds into compiled code stops the
/// build with one reason and the container-builder hint, with uv and pip.
#[test]
fn a_platform_specific_source_build_fails_with_the_reason_and_the_builder_hint() {
    if !tools::require_tool("uv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index");
    make_wheel(&index, "imgbake-test-native", "-", &["--sdist", "--platform-specific"]);
    let env = vec![("UV_FIND_LINKS", index.display().to_string()), ("PIP_FIND_LINKS", index.display().to_string())];
    for use_uv in [true, false] {
        let project =
            write_requirements_project(&dir.path().join(format!("uv-{use_uv}")), use_uv, "imgbake-test-native\n");
        let output = build(&project, &dir.path().join("out"), &dir.path().join("cache"), &env, &[]);
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("imgbake-test-native has no wheel and its build gives a platform-specific wheel (cp311-cp311-linux_x86_64)"),
            "{stderr}"
        );
        assert!(stderr.contains("hint: build with a container: `imgbake build --builder buildah`"), "{stderr}");
        assert!(!project.join("imgbake.lock").exists());
    }
}

/// What most ML projects have in their closure: `requests` (charset-normalizer
/// ships three wheels that fit cp311: cp311, abi3 and py3-none-any) and
/// `aiohttp`, from PyPI, locked with uv and with pip for the debootstrap
/// base's Python; the images import them under runc.
#[test]
fn requests_and_aiohttp_lock_with_uv_and_pip_and_import_under_runc() {
    if !["uv", "umoci", "runc", "debootstrap"].iter().all(|t| tools::require_tool(t)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for use_uv in [true, false] {
        let project = write_project(
            &dir.path().join(format!("uv-{use_uv}")),
            use_uv,
            "3.11",
            &[("requests", "latest"), ("aiohttp", "latest")],
        );
        let layout = dir.path().join(format!("out-{use_uv}"));
        let output = build_on_rootfs(&project, &layout, &dir.path().join("cache"));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "use_uv = {use_uv}: {stderr}");
        let lock = std::fs::read_to_string(project.join("imgbake.lock")).unwrap();
        let charset = lock.split("name = \"charset-normalizer\"").nth(1).expect("charset-normalizer is locked");
        let url = charset.split("url = \"").nth(1).unwrap().split('"').next().unwrap();
        assert!(url.contains("-cp311-cp311-manylinux"), "the interpreter's own wheel is chosen: {url}");
        assert_eq!(lock.matches("name = \"charset-normalizer\"").count(), 1, "{lock}");

        let bundle = dir.path().join(format!("bundle-{use_uv}"));
        tools::umoci_unpack(&layout, "app", &bundle);
        let code =
            "import requests, aiohttp, charset_normalizer; print('ok', requests.__version__, aiohttp.__version__)";
        tools::prepare_runc_bundle(&bundle, &["python3", "-c", code], &[], &[]);
        let run = tools::runc_run(&bundle, &tools::unique_container_id("requests"), Duration::from_secs(120));
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(
            run.status.success() && stdout.starts_with("ok "),
            "use_uv = {use_uv}: {stdout}\n{}",
            String::from_utf8_lossy(&run.stderr)
        );
    }
}

#[test]
fn pip_resolves_when_use_uv_is_false_and_the_log_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let index = local_index(dir.path());
    let env = offline_env(&index);
    let project = write_project(dir.path(), false, "3.12", &[("tinyapp", "latest")]);
    let output = build(&project, &dir.path().join("out"), &dir.path().join("cache"), &env, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("PIP_INSTALL_STARTED") && !stderr.contains("UV_PIP_INSTALL_STARTED"), "{stderr}");
    let lock = std::fs::read_to_string(project.join("imgbake.lock")).unwrap();
    assert!(lock.contains("installer = \"pip\""), "{lock}");
    assert!(lock.contains("tinyapp-1.0-cp312-cp312-manylinux_2_17_x86_64.whl"), "{lock}");
}

/// A real set from PyPI, resolved for the debootstrap base's Python, imports
/// inside the built image under runc.
#[test]
fn fastapi_and_numpy_from_pypi_import_inside_the_container() {
    if !["uv", "umoci", "runc", "debootstrap"].iter().all(|t| tools::require_tool(t)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let project =
        write_project(dir.path(), true, "3.11", &[("fastapi", "latest"), ("numpy", "<3"), ("safetensors", "latest")]);
    let layout = dir.path().join("out");
    let output = build_on_rootfs(&project, &layout, &dir.path().join("cache"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("UV_PIP_INSTALL_STARTED"), "{stderr}");
    let lock = std::fs::read_to_string(project.join("imgbake.lock")).unwrap();
    assert!(lock.contains("site_packages = \"/usr/local/lib/python3.11/dist-packages\""), "{lock}");

    let bundle = dir.path().join("bundle");
    tools::umoci_unpack(&layout, "app", &bundle);
    let code = "import fastapi, numpy, safetensors; print('ok', numpy.__version__, fastapi.__version__)";
    tools::prepare_runc_bundle(&bundle, &["python3", "-c", code], &[], &[]);
    // The image ships `.pyc` files the base's Python 3.11 accepts as they are:
    // importing (into a writable root) writes none of its own.
    let site = bundle.join("rootfs/usr/local/lib/python3.11/dist-packages");
    let pyc_files = || -> Vec<(PathBuf, std::time::SystemTime)> {
        let mut found: Vec<_> = walkdir::WalkDir::new(&site)
            .into_iter()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "pyc"))
            .map(|e| (e.path().to_path_buf(), e.metadata().unwrap().modified().unwrap()))
            .collect();
        found.sort();
        found
    };
    let shipped = pyc_files();
    assert!(shipped.iter().any(|(p, _)| p.ends_with("fastapi/__pycache__/__init__.cpython-311.pyc")), "{shipped:?}");
    let run = tools::runc_run(&bundle, &tools::unique_container_id("deps"), Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success() && stdout.starts_with("ok "), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    assert!(pyc_files() == shipped, "importing wrote or rewrote .pyc files the image shipped");
}

/// The pip + apt fixture: uv wheels and a Debian package, both native, on the
/// debootstrap base; the app answers /health using numpy and jq.
#[test]
fn the_pip_and_apt_fixture_builds_and_its_app_uses_both_under_runc() {
    if !["uv", "umoci", "runc", "debootstrap"].iter().all(|t| tools::require_tool(t)) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let project = dir.path().join("project");
    tools::copy_tree(&tools::repo_root().join("fixtures/cerebrium-pip-apt"), &project);
    let layout = dir.path().join("out");
    let base = format!("rootfs:{}", tools::base_rootfs().display());
    let cache = dir.path().join("cache");
    let args = [
        "build",
        "--json",
        project.to_str().unwrap(),
        "--base",
        &base,
        "--output",
        &format!("oci:{}:app", layout.display()),
        "--cache-dir",
        cache.to_str().unwrap(),
    ];
    let output = imgbake_env(&args, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let whats: Vec<&str> = result["layers"].as_array().unwrap().iter().map(|l| l["what"].as_str().unwrap()).collect();
    assert!(whats.iter().any(|w| w.starts_with("apt packages")), "{whats:?}");
    let lock = std::fs::read_to_string(project.join("imgbake.lock")).unwrap();
    assert!(lock.contains("[apt]") && lock.contains("name = \"jq\""), "{lock}");

    // A second build with the lock reads no dependency again (all cached).
    let again = imgbake_env(&args, &[]);
    assert_eq!(again.status.code(), Some(0), "{}", String::from_utf8_lossy(&again.stderr));
    let again: serde_json::Value = serde_json::from_slice(&again.stdout).unwrap();
    assert_eq!(again["manifest_digest"], result["manifest_digest"]);
    assert_eq!(again["cache"]["files_read"], 0, "{again:#}");

    let bundle = dir.path().join("bundle");
    tools::umoci_unpack(&layout, "app", &bundle);
    let port = support::registry::free_port().to_string();
    tools::prepare_runc_bundle(&bundle, &[], &[("PORT", &port)], &[]);
    let container = tools::runc_run_detached(&bundle, &tools::unique_container_id("pipapt"));
    let url = format!("http://127.0.0.1:{port}/health");
    assert_eq!(tools::wait_for_http(&url, Duration::from_secs(60)), 200, "{}", container.log_text());
    let client = reqwest::blocking::Client::builder().no_proxy().build().unwrap();
    let body: serde_json::Value = client.get(&url).send().unwrap().json().unwrap();
    assert_eq!(body["jq"], "12", "{body:#}");
    assert!(body["numpy"].as_str().unwrap().starts_with('2'), "{body:#}");
}

#[test]
fn the_generated_dockerfile_installs_exactly_the_locked_wheels_by_hash() {
    if !tools::require_tool("uv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let index = local_index(dir.path());
    let env = offline_env(&index);
    let project = write_project(dir.path(), true, "3.12", &[("tinyapp", "latest")]);
    build_ok(&project, &dir.path().join("out"), &dir.path().join("cache"), &env);
    let context = dir.path().join("context");
    let output = imgbake_env(&["dockerfile", project.to_str().unwrap(), "-o", context.to_str().unwrap()], &env);
    assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
    let requirements = std::fs::read_to_string(context.join("requirements/requirements.lock.txt")).unwrap();
    let lock = std::fs::read_to_string(project.join("imgbake.lock")).unwrap();
    let sha = lock.split("sha256 = \"").nth(1).unwrap().split('"').next().unwrap();
    assert!(requirements.contains(&format!("tinyapp==1.0 --hash=sha256:{sha}")), "{requirements}");
    let dockerfile = std::fs::read_to_string(context.join("Dockerfile")).unwrap();
    assert!(dockerfile.contains("requirements.lock.txt"), "{dockerfile}");
}

/// The oldest uv release imgbake supports, unpacked from its PyPI wheel into
/// `target/imgbake-fixtures/` (downloaded once).
const OLDEST_UV: &str = "0.9.0";

fn oldest_uv() -> PathBuf {
    let dir = tools::repo_root().join(format!("target/imgbake-fixtures/uv-{OLDEST_UV}"));
    let binary = dir.join("uv");
    if binary.exists() {
        return binary;
    }
    let staging = tempfile::tempdir_in(tools::repo_root().join("target")).unwrap();
    let mut download = Command::new("python3");
    download
        .args(["-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:", "--disable-pip-version-check"])
        .args(["--platform", "manylinux_2_17_x86_64", "--python-version", "3.11", "-d"])
        .arg(staging.path())
        .arg(format!("uv=={OLDEST_UV}"));
    tools::run_checked(&mut download, Duration::from_secs(300));
    let script = "import sys, zipfile, glob, os\n\
                  wheel = glob.glob(os.path.join(sys.argv[1], 'uv-*.whl'))[0]\n\
                  with zipfile.ZipFile(wheel) as z:\n\
                  \x20   name = next(n for n in z.namelist() if n.endswith('/scripts/uv'))\n\
                  \x20   open(sys.argv[2], 'wb').write(z.read(name))\n\
                  os.chmod(sys.argv[2], 0o755)\n";
    let unpacked = staging.path().join("uv");
    let mut unzip = Command::new("python3");
    unzip.args(["-c", script]).arg(staging.path()).arg(&unpacked);
    tools::run_checked(&mut unzip, Duration::from_secs(60));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::rename(&unpacked, &binary).unwrap();
    binary
}

/// uv from 0.9 to the current release writes pylock.toml files that imgbake
/// reads to the same pins (`requests` has several wheels per package).
#[test]
fn the_oldest_supported_uv_and_the_current_one_lock_the_same_wheels() {
    if !tools::require_tool("uv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut locks = Vec::new();
    for uv in [None, Some(oldest_uv())] {
        let project = write_project(
            &dir.path().join(format!("{}", locks.len())),
            true,
            "3.11",
            &[("requests", "==2.32.3"), ("charset-normalizer", "==3.4.1"), ("urllib3", "==2.3.0")],
        );
        let env: Vec<(&str, String)> = uv.iter().map(|path| ("IMGBAKE_UV", path.display().to_string())).collect();
        let output = lock_on_scratch(&project, &dir.path().join("cache"), &env);
        assert_eq!(output.status.code(), Some(0), "uv {uv:?}: {}", String::from_utf8_lossy(&output.stderr));
        let lock = std::fs::read_to_string(project.join("imgbake.lock")).unwrap();
        let urls: Vec<String> = lock.lines().filter(|l| l.starts_with("url = ")).map(String::from).collect();
        locks.push(urls);
    }
    assert!(locks[0].iter().any(|u| u.contains("charset_normalizer-3.4.1-cp311-cp311-manylinux")), "{:?}", locks[0]);
    assert_eq!(locks[0], locks[1]);
}

/// Requirement-file options (`--find-links` and `-r`/`-c` with paths
/// relative to the project, an environment marker) in Truss `requirements:`
/// lines (uv) and in a Cerebrium requirements file (pip), and a private index
/// behind basic auth named in `UV_EXTRA_INDEX_URL` / `PIP_EXTRA_INDEX_URL`:
/// all honoured; the credentials reach neither the lock nor the output; a
/// build from the lock with an empty cache downloads the private wheel with them.
#[test]
fn requirement_options_and_a_private_index_with_credentials_are_honoured() {
    if !tools::require_tool("uv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let private = dir.path().join("private");
    make_wheel(&private, "imgbake-test-private", "py3-none-any", &[]);
    let index = support::private_index::PrivateIndex::start(&private, "ci", "s3cret-token");
    let credentialed = index.url_with_credentials("ci", "s3cret-token");
    let env = vec![("UV_EXTRA_INDEX_URL", credentialed.clone()), ("PIP_EXTRA_INDEX_URL", credentialed)];
    let options = ["--find-links ./wheels", "-r requirements/more.txt", "-c constraints.txt", "imgbake-test-local"];
    let marker = "pywin32; sys_platform == \"win32\"";
    for use_uv in [true, false] {
        // `write_requirements_project(parent)` writes into `parent/project`.
        let project = dir.path().join(format!("uv-{use_uv}/project"));
        let script = tools::repo_root().join("tests/support/make_wheel.py");
        for version in ["1.0", "2.0"] {
            let mut command = Command::new("python3");
            command.arg(&script).arg(project.join("wheels")).args(["imgbake-test-local", version, "py3-none-any"]);
            tools::run_checked(&mut command, Duration::from_secs(60));
        }
        std::fs::create_dir_all(project.join("requirements")).unwrap();
        std::fs::write(project.join("requirements/more.txt"), "imgbake-test-private\n").unwrap();
        std::fs::write(project.join("constraints.txt"), "imgbake-test-local==1.0\n").unwrap();
        std::fs::write(project.join("main.py"), "print('hi')\n").unwrap();
        if use_uv {
            // Truss: the options are lines of `requirements:` (Truss resolves with uv).
            let lines: String = options.iter().chain([&marker]).map(|l| format!("  - '{l}'\n")).collect();
            std::fs::write(
                project.join("config.yaml"),
                format!("model_name: private-deps\npython_version: py311\nrequirements:\n{lines}"),
            )
            .unwrap();
        } else {
            let lines: String = options.iter().chain([&marker]).map(|l| format!("{l}\n")).collect();
            write_requirements_project(&dir.path().join("uv-false"), false, &lines);
        }
        let out = dir.path().join(format!("out-{use_uv}"));
        let output = build(&project, &out, &dir.path().join(format!("cache-{use_uv}")), &env, &[]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(0), "use_uv = {use_uv}: {stderr}");
        let lock = std::fs::read_to_string(project.join("imgbake.lock")).unwrap();
        assert!(!lock.contains("s3cret") && !stderr.contains("s3cret"), "{lock}\n{stderr}");
        let private_url = format!("http://127.0.0.1:{}/files/imgbake_test_private-1.0-py3-none-any.whl", index.port);
        assert!(lock.contains(&private_url), "{lock}");
        assert!(lock.contains("imgbake_test_local-1.0-py3-none-any.whl"), "{lock}");
        assert!(!lock.contains("imgbake_test_local-2.0") && !lock.contains("name = \"pywin32\""), "{lock}");

        // From the lock, empty cache: the private wheel is downloaded with the credentials.
        let before = index.stats()["files"].as_u64().unwrap();
        let again_out = dir.path().join(format!("again-{use_uv}"));
        let again = build(&project, &again_out, &dir.path().join(format!("empty-{use_uv}")), &env, &[]);
        assert_eq!(again.status.code(), Some(0), "{}", String::from_utf8_lossy(&again.stderr));
        assert!(index.stats()["files"].as_u64().unwrap() > before);
    }
}

/// pip evaluates environment markers for the interpreter that runs it (3.11
/// on these machines), not the image's: locked for a 3.10 image, anyio must
/// still get `exceptiongroup; python_version < "3.11"`, and for a 3.12 image
/// jaraco.context must not get `backports.tarfile; python_version < "3.12"`.
/// uv agrees.
#[test]
fn pip_locks_what_the_images_python_needs_not_what_the_build_machines_markers_say() {
    if !tools::require_tool("uv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for use_uv in [false, true] {
        let cases = [
            ("3.10", ("anyio", "==4.9.0"), "exceptiongroup", "-"),
            ("3.12", ("\"jaraco.context\"", "==6.0.1"), "jaraco-context", "backports-tarfile"),
        ];
        for (python, requirement, needed, not_needed) in cases {
            let project = write_project(&dir.path().join(format!("{use_uv}-{python}")), use_uv, python, &[requirement]);
            let output = lock_on_scratch(&project, &dir.path().join("cache"), &[]);
            assert_eq!(output.status.code(), Some(0), "{}", String::from_utf8_lossy(&output.stderr));
            let lock = std::fs::read_to_string(project.join("imgbake.lock")).unwrap();
            assert!(lock.contains(&format!("name = \"{needed}\"")), "use_uv = {use_uv}, {python}: {lock}");
            assert!(!lock.contains(&format!("name = \"{not_needed}\"")), "use_uv = {use_uv}, {python}: {lock}");
        }
    }
}

/// Whether this machine has a CPython `version` imgbake can compile bytecode
/// with: `pythonX.Y` on PATH that runs (pyenv shims exist for versions that
/// are not selected), or one `uv python find` knows.
fn has_python(version: &str) -> bool {
    let on_path = Command::new(format!("python{version}")).args(["-S", "-c", ""]).output();
    let uv = Command::new("uv").args(["python", "find", "--no-python-downloads", "--offline", version]).output();
    on_path.is_ok_and(|o| o.status.success()) || uv.is_ok_and(|o| o.status.success())
}

const TINYAPP_311_PYC: &str = "usr/local/lib/python3.11/site-packages/tinyapp/__pycache__/__init__.cpython-311.pyc";

/// Issue 18: modules ship with `.pyc` (as `pip install` in a Dockerfile
/// writes them), so a cold start does not compile every import again.
#[test]
fn installed_modules_ship_unchecked_hash_bytecode_and_the_layer_is_reproducible() {
    if !tools::require_tool("uv") || !has_python("3.11") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let index = local_index(dir.path());
    let env = offline_env(&index);
    let project = write_project(dir.path(), true, "3.11", &[("tinyapp", "latest")]);
    let first = build_ok(&project, &dir.path().join("out1"), &dir.path().join("cache1"), &env);
    // A scratch base has no Python: this machine's compiles.
    assert!(first["bytecode_compiler"].as_str().unwrap().contains("this machine's"), "{first:#}");
    let layer = layer_named(&first, "python tinyapp==1.0")["digest"].as_str().unwrap().to_string();

    let pyc = file_in_layer(&dir.path().join("out1"), &layer, TINYAPP_311_PYC).expect("the .pyc is in the layer");
    // PEP 552 flags: 0b01 = hash-based, not checked against the source.
    assert_eq!(u32::from_le_bytes(pyc[4..8].try_into().unwrap()), 0b01);
    // The code object names the module's path in the image, not the staging tree.
    let saved = dir.path().join("init.pyc");
    std::fs::write(&saved, &pyc).unwrap();
    let code = format!("import marshal; print(marshal.loads(open({saved:?}, 'rb').read()[16:]).co_filename)");
    let shown = Command::new("python3.11").args(["-c", &code]).output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&shown.stdout).trim(),
        "/usr/local/lib/python3.11/site-packages/tinyapp/__init__.py",
        "{}",
        String::from_utf8_lossy(&shown.stderr)
    );
    // Console scripts are run, not imported: no bytecode beside them.
    assert!(file_in_layer(&dir.path().join("out1"), &layer, "usr/local/bin/__pycache__/").is_none());

    // An empty cache gives the same bytes.
    let second = build_ok(&project, &dir.path().join("out2"), &dir.path().join("cache2"), &env);
    assert_eq!(layer_named(&second, "python tinyapp==1.0")["digest"], layer.as_str());
}

#[test]
fn bytecode_false_installs_modules_without_pyc() {
    if !tools::require_tool("uv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let index = local_index(dir.path());
    let env = offline_env(&index);
    let project = write_project(dir.path(), true, "3.11", &[("tinyapp", "latest")]);
    let config = project.join("cerebrium.toml");
    let text = std::fs::read_to_string(&config).unwrap();
    std::fs::write(&config, format!("{text}\n[imgbake]\nbytecode = false\n")).unwrap();
    let result = build_ok(&project, &dir.path().join("out"), &dir.path().join("cache"), &env);
    let layer = layer_named(&result, "python tinyapp==1.0")["digest"].as_str().unwrap().to_string();
    let out = dir.path().join("out");
    assert!(file_in_layer(&out, &layer, "usr/local/lib/python3.11/site-packages/tinyapp/__init__.py").is_some());
    assert!(file_in_layer(&out, &layer, TINYAPP_311_PYC).is_none());
}

#[test]
fn bytecode_needs_an_interpreter_of_the_images_version_else_the_build_warns_once() {
    if !tools::require_tool("uv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let index = local_index(dir.path());
    let env = offline_env(&index);
    let project = write_project(dir.path(), true, "3.12", &[("tinyapp", "latest")]);
    let out = dir.path().join("out");
    let output = build(&project, &out, &dir.path().join("cache"), &env, &[]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let result: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let layer = layer_named(&result, "python tinyapp==1.0")["digest"].as_str().unwrap().to_string();
    let pyc = file_in_layer(
        &out,
        &layer,
        "usr/local/lib/python3.12/site-packages/tinyapp/__pycache__/__init__.cpython-312.pyc",
    );
    let warning = "warning: no Python 3.12 on this machine to compile bytecode with; \
                   the image's modules compile at first import (slower cold starts)";
    if has_python("3.12") {
        assert!(pyc.is_some(), "{stderr}");
        assert!(!stderr.contains(warning), "{stderr}");
    } else {
        assert!(pyc.is_none());
        assert_eq!(stderr.lines().filter(|line| *line == warning).count(), 1, "{stderr}");
    }
}

/// The debootstrap base, like the official `python:*` images, has no `.pyc`
/// of its standard library, so every cold start would compile what the app
/// imports of it. `imgbake lock` records that; the build compiles the library
/// into a layer of its own (unchecked-hash, the same bytes from an empty
/// cache), a container imports from it without writing any `.pyc`, and
/// `plan` and `dockerfile` show the same layer.
#[test]
fn a_base_without_standard_library_bytecode_gets_it_compiled_in_a_layer_of_its_own() {
    if !["uv", "umoci", "runc", "debootstrap"].iter().all(|t| tools::require_tool(t)) || !has_python("3.11") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let index = local_index(dir.path());
    let env = offline_env(&index);
    let project = write_project(dir.path(), true, "3.11", &[("tinyapp", "latest")]);
    let base = format!("rootfs:{}", tools::base_rootfs().display());
    let build_into = |layout: &Path, cache: &Path| -> serde_json::Value {
        let output = format!("oci:{}:app", layout.display());
        let args = ["build", "--json", project.to_str().unwrap(), "--base", &base, "--output", &output];
        let result = imgbake_env(&[&args[..], &["--cache-dir", cache.to_str().unwrap()]].concat(), &env);
        assert_eq!(result.status.code(), Some(0), "{}", String::from_utf8_lossy(&result.stderr));
        serde_json::from_slice(&result.stdout).unwrap()
    };
    let layout = dir.path().join("out1");
    let first = build_into(&layout, &dir.path().join("cache1"));
    let lock = std::fs::read_to_string(project.join("imgbake.lock")).unwrap();
    assert!(lock.contains("[python.stdlib]\ndir = \"/usr/lib/python3.11\""), "{lock}");
    assert!(lock.contains("compiled = 0\n"), "{lock}");
    // Compiled by the base's own interpreter (Debian's 3.11), run chrooted in a copy of what it needs.
    let compiler = first["bytecode_compiler"].as_str().unwrap_or_default();
    assert!(compiler.starts_with("CPython 3.11."), "{first:#}");
    assert!(compiler.ends_with("the base image's /usr/bin/python3.11 (chrooted)"), "{compiler}");
    let layer = layer_named(&first, "python stdlib bytecode")["digest"].as_str().unwrap().to_string();
    let pyc = file_in_layer(&layout, &layer, "usr/lib/python3.11/__pycache__/os.cpython-311.pyc")
        .expect("os.py's bytecode is in the layer");
    assert_eq!(u32::from_le_bytes(pyc[4..8].try_into().unwrap()), 0b01, "unchecked-hash (PEP 552)");
    assert!(file_in_layer(&layout, &layer, "usr/lib/python3.11/os.py").is_none(), "the sources stay in the base");
    let second = build_into(&dir.path().join("out2"), &dir.path().join("cache2"));
    assert_eq!(layer_named(&second, "python stdlib bytecode")["digest"], layer.as_str());

    // Imported in a writable root, the standard library writes no `.pyc` of its own.
    let bundle = dir.path().join("bundle");
    tools::umoci_unpack(&layout, "app", &bundle);
    let stdlib = bundle.join("rootfs/usr/lib/python3.11");
    let pyc_files = || -> Vec<PathBuf> {
        let mut found: Vec<PathBuf> = walkdir::WalkDir::new(&stdlib)
            .into_iter()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "pyc"))
            .map(|e| e.path().to_path_buf())
            .collect();
        found.sort();
        found
    };
    let shipped = pyc_files();
    let code = "import json, asyncio, email.message, http.client, logging, tinyapp; print('ok')";
    tools::prepare_runc_bundle(&bundle, &["python3", "-c", code], &[], &[]);
    let run = tools::runc_run(&bundle, &tools::unique_container_id("stdlib"), Duration::from_secs(120));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success() && stdout.starts_with("ok"), "{stdout}\n{}", String::from_utf8_lossy(&run.stderr));
    let written: Vec<PathBuf> = pyc_files().into_iter().filter(|p| !shipped.contains(p)).collect();
    assert!(written.is_empty(), "importing compiled modules the image should have shipped: {written:?}");

    // plan and dockerfile read the same plan.
    let plan = imgbake_env(&["plan", "--format", "json", project.to_str().unwrap(), "--base", &base], &env);
    assert_eq!(plan.status.code(), Some(0), "{}", String::from_utf8_lossy(&plan.stderr));
    assert!(String::from_utf8_lossy(&plan.stdout).contains("\"python stdlib bytecode\""));
    let context = dir.path().join("context");
    let args = ["dockerfile", project.to_str().unwrap(), "-o", context.to_str().unwrap()];
    let dockerfile = imgbake_env(&args, &env);
    assert_eq!(dockerfile.status.code(), Some(0), "{}", String::from_utf8_lossy(&dockerfile.stderr));
    let text = std::fs::read_to_string(context.join("Dockerfile")).unwrap();
    assert!(text.contains("-m compileall -q -j 0 --invalidation-mode unchecked-hash"), "{text}");
    assert!(text.contains("/usr/lib/python3.11 || [ $? -eq 1 ]"), "{text}");
}
