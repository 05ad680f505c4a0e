//! `imgbake validate` on the fixtures: every example project and real-world
//! config is valid, every invalid config fails with exactly its expected
//! diagnostics (file:line:col included), and the JSON shape is pinned.

mod support;

use imgbake::config;
use std::path::{Path, PathBuf};
use std::process::Command;

const PROJECTS: [&str; 6] = [
    "fixtures/cerebrium-cpu-fastapi",
    "fixtures/cerebrium-gpu-weights",
    "fixtures/cerebrium-requirements-file",
    "fixtures/truss-volume",
    "fixtures/truss-bake",
    "fixtures/truss-bdn-weights",
];

fn files_in(dir: &str, extensions: &[&str]) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| extensions.iter().any(|x| e == *x)))
        .collect();
    files.sort();
    files
}

fn imgbake(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_imgbake")).args(args).output().unwrap()
}

#[test]
fn every_fixture_project_is_valid() {
    for project in PROJECTS {
        let loaded = config::load(Path::new(project));
        let errors: Vec<String> = loaded.diagnostics.iter().filter(|d| d.is_error()).map(|d| d.to_string()).collect();
        assert!(loaded.spec.is_some() && errors.is_empty(), "{project}: {errors:#?}");
    }
}

#[test]
fn every_real_world_config_is_valid() {
    let files = files_in("fixtures/realworld", &["toml", "yaml"]);
    assert!(files.len() >= 7, "expected the real-world configs, found {files:?}");
    for file in files {
        let output = imgbake(&["validate", file.to_str().unwrap()]);
        assert_eq!(output.status.code(), Some(0), "{}: {}", file.display(), String::from_utf8_lossy(&output.stderr));
    }
}

#[test]
fn every_invalid_config_fails_with_its_expected_message() {
    let files = files_in("fixtures/invalid", &["toml", "yaml"]);
    assert!(files.len() >= 20, "expected the invalid configs, found {}", files.len());
    for file in files {
        let expected = std::fs::read_to_string(file.with_extension("expected"))
            .unwrap_or_else(|_| panic!("{} has no .expected file", file.display()));
        let loaded = config::load(&file);
        assert!(loaded.spec.is_none(), "{} was accepted", file.display());
        let actual: String = loaded.diagnostics.iter().map(|d| format!("{d}\n")).collect();
        assert_eq!(actual, expected, "diagnostics of {}", file.display());
        let first_error = expected.lines().next().unwrap();
        let position = first_error.split(": ").nth(1).unwrap();
        assert!(
            position.rsplit(':').take(2).all(|n| n.parse::<usize>().is_ok()),
            "{}: the first error has no line:col: {first_error}",
            file.display()
        );
    }
}

#[test]
fn invalid_config_exits_1_and_says_so_on_stderr() {
    let output = imgbake(&["validate", "fixtures/invalid/python-version-range.toml"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("python-version-range.toml:3:18: `python_version`"), "{stderr}");
    assert!(output.stdout.is_empty());
}

#[test]
fn misspelt_sections_warn_with_the_intended_name_but_do_not_fail() {
    let output = imgbake(&["validate", "fixtures/realworld/cerebrium-typos.toml"]);
    assert_eq!(output.status.code(), Some(0));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(
            "unknown section [cerebrium.pip.dependancies]; it is ignored (did you mean [cerebrium.dependencies.pip]?)"
        ),
        "{stderr}"
    );
    assert!(
        stderr
            .contains("unknown section [cerebrium.build]; it is ignored (`use_uv` belongs in [cerebrium.deployment])"),
        "{stderr}"
    );
}

#[test]
fn usage_errors_exit_2() {
    let output = imgbake(&["validate", "--format", "yaml"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn json_output_of_every_fixture_project() {
    for project in PROJECTS {
        let output = imgbake(&["validate", project, "--format", "json"]);
        assert_eq!(output.status.code(), Some(0), "{project}");
        let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(json["valid"], true);
        let name = project.trim_start_matches("fixtures/");
        insta::assert_json_snapshot!(name, json);
    }
}

#[test]
fn json_output_of_an_invalid_config_lists_errors_with_positions() {
    let output = imgbake(&["validate", "fixtures/invalid/truss-mixed-use-volume.yaml", "--format", "json"]);
    assert_eq!(output.status.code(), Some(1));
    let json: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    insta::assert_json_snapshot!("invalid-truss-mixed-use-volume", json);
}

/// `validate` checks the entrypoint when a current imgbake.lock is beside the
/// config, against what this machine's cache knows (issue 16, item 7): the
/// console scripts of the cached wheels. An empty cache knows nothing, so
/// nothing is reported; `check_entrypoint = false` turns the check off.
#[test]
fn validate_with_a_lock_checks_the_entrypoint_against_the_cached_wheels() {
    if !support::tools::require_tool("uv") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A real wheel with a console script `tinyapp-hello`, served by --find-links.
    let index = dir.path().join("index");
    let script = support::tools::repo_root().join("tests/support/make_wheel.py");
    support::tools::run_checked(
        Command::new("python3").arg(script).arg(&index).args(["tinyapp", "1.0", "py3-none-any", "--script"]),
        std::time::Duration::from_secs(60),
    );
    let project = dir.path().join("project");
    std::fs::create_dir(&project).unwrap();
    let config = |entrypoint: &str, extra: &str| {
        format!(
            "[cerebrium.deployment]\nname = \"scripts\"\npython_version = \"3.11\"\ndocker_base_image_url = \"scratch\"\n\
             use_uv = true\n\n[cerebrium.runtime.custom]\nport = 8000\nentrypoint = {entrypoint}\n\n\
             [cerebrium.dependencies.pip]\ntinyapp = \"latest\"\n{extra}"
        )
    };
    std::fs::write(project.join("cerebrium.toml"), config("[\"tinyapp-hello\"]", "")).unwrap();
    let cache = dir.path().join("cache");
    let run = |args: &[&str], cache: &Path| {
        Command::new(env!("CARGO_BIN_EXE_imgbake"))
            .args(args)
            .env("IMGBAKE_CACHE_DIR", cache)
            .env("UV_FIND_LINKS", &index)
            .env("UV_NO_INDEX", "1")
            .output()
            .unwrap()
    };
    let out = format!("oci:{}:app", dir.path().join("out").display());
    let project_arg = project.to_str().unwrap();
    let built = run(&["build", project_arg, "--output", &out, "--cache-dir", cache.to_str().unwrap()], &cache);
    assert_eq!(built.status.code(), Some(0), "{}", String::from_utf8_lossy(&built.stderr));
    let valid = run(&["validate", project_arg], &cache);
    assert_eq!(valid.status.code(), Some(0), "{}", String::from_utf8_lossy(&valid.stderr));

    // The entrypoint is not a lock input: the lock stays current.
    std::fs::write(project.join("cerebrium.toml"), config("[\"uvicorn\", \"main:app\"]", "")).unwrap();
    let invalid = run(&["validate", project_arg], &cache);
    let stderr = String::from_utf8_lossy(&invalid.stderr);
    assert_eq!(invalid.status.code(), Some(1), "{stderr}");
    let file = project.join("cerebrium.toml");
    assert!(
        stderr.contains(&format!(
            "error: {}:9:14: the entrypoint runs `uvicorn`, which is in no layer of the image\n  hint: add uvicorn to [cerebrium.dependencies.pip]",
            file.display()
        )),
        "{stderr}"
    );
    // `build` says the same and writes no image.
    let failed = run(&["build", project_arg, "--output", &out, "--cache-dir", cache.to_str().unwrap()], &cache);
    let build_stderr = String::from_utf8_lossy(&failed.stderr);
    assert_eq!(failed.status.code(), Some(1), "{build_stderr}");
    assert!(build_stderr.contains("hint: add uvicorn to [cerebrium.dependencies.pip]"), "{build_stderr}");

    // A cache that has not seen the wheel cannot tell: nothing is reported.
    let unknown = run(&["validate", project_arg], &dir.path().join("empty-cache"));
    assert_eq!(unknown.status.code(), Some(0), "{}", String::from_utf8_lossy(&unknown.stderr));
    // Turned off.
    std::fs::write(
        project.join("cerebrium.toml"),
        config("[\"uvicorn\", \"main:app\"]", "\n[imgbake]\ncheck_entrypoint = false\n"),
    )
    .unwrap();
    let off = run(&["validate", project_arg], &cache);
    assert_eq!(off.status.code(), Some(0), "{}", String::from_utf8_lossy(&off.stderr));
}
