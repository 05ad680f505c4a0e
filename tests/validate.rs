//! `imgbake validate` on the fixtures: every example project and real-world
//! config is valid, every invalid config fails with exactly its expected
//! diagnostics (file:line:col included), and the JSON shape is pinned.

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
fn commands_not_built_yet_exit_2_with_one_line() {
    for command in ["lock", "plan"] {
        let output = imgbake(&[command, "fixtures/cerebrium-cpu-fastapi"]);
        assert_eq!(output.status.code(), Some(2), "{command}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(stderr.lines().count(), 1, "{command}: {stderr}");
        assert!(stderr.contains("not available yet"), "{stderr}");
        assert!(output.stdout.is_empty());
    }
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
