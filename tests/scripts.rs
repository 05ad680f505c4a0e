//! Every command the docs give runs as written: each `scripts/*.sh` that
//! README.md or docs/*.md mentions exists and is executable (on disk and in
//! git's index, which is what a fresh clone gets), and no script looks for
//! binaries under a hard-coded `target/` (issue 16, item 9: they failed with
//! exit 127 when CARGO_TARGET_DIR moved cargo's output).

use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `scripts/NAME.sh` paths mentioned in README.md and docs/*.md.
fn mentioned_scripts() -> BTreeSet<String> {
    let mut docs = vec![repo().join("README.md")];
    for entry in std::fs::read_dir(repo().join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    let mut found = BTreeSet::new();
    for doc in docs {
        let text = std::fs::read_to_string(&doc).unwrap();
        for (start, _) in text.match_indices("scripts/") {
            let rest = &text[start + "scripts/".len()..];
            let name: String =
                rest.chars().take_while(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.')).collect();
            if let Some(stem) = name.strip_suffix(".sh") {
                if !stem.is_empty() {
                    found.insert(format!("scripts/{name}"));
                }
            }
        }
    }
    found
}

#[test]
fn every_script_the_docs_mention_exists_and_is_executable() {
    let scripts = mentioned_scripts();
    assert!(scripts.contains("scripts/bench.sh") && scripts.contains("scripts/lab.sh"), "{scripts:?}");
    let index = Command::new("git").args(["ls-files", "-s", "scripts"]).current_dir(repo()).output();
    let index = index.ok().filter(|o| o.status.success()).map(|o| String::from_utf8_lossy(&o.stdout).into_owned());
    let mut problems = Vec::new();
    for script in &scripts {
        let path = repo().join(script);
        let Ok(meta) = std::fs::metadata(&path) else {
            problems.push(format!("{script} is mentioned in the docs but does not exist"));
            continue;
        };
        if meta.permissions().mode() & 0o111 == 0 {
            problems.push(format!("{script} has no run bit (chmod +x)"));
        }
        // Outside a git checkout (a source tarball) only the disk mode is checked.
        if let Some(index) = &index {
            let line = index.lines().find(|l| l.ends_with(&format!("\t{script}")));
            match line {
                Some(line) if line.starts_with("100755 ") => {}
                Some(line) => problems.push(format!(
                    "{script} is committed without its run bit ({line}); run `git update-index --chmod=+x {script}`"
                )),
                None => problems.push(format!("{script} is not committed")),
            }
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
}

#[test]
fn scripts_find_binaries_wherever_cargo_put_them() {
    let mut problems = Vec::new();
    for entry in std::fs::read_dir(repo().join("scripts")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "sh") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (number, line) in text.lines().enumerate() {
            let code = line.split(" #").next().unwrap_or(line);
            if code.trim_start().starts_with('#') {
                continue;
            }
            if code.contains("target/release/") || code.contains("target/debug/") {
                problems.push(format!("{}:{}: {}", path.display(), number + 1, line.trim()));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "these lines look for binaries under ./target; use $target_dir from scripts/target-dir.sh:\n{}",
        problems.join("\n")
    );
}

#[test]
fn target_dir_helper_follows_cargo_target_dir() {
    let moved = tempfile::tempdir().unwrap();
    let output = Command::new("bash")
        .args(["-c", "source scripts/target-dir.sh && printf '%s' \"$target_dir\""])
        .current_dir(repo())
        .env("CARGO_TARGET_DIR", moved.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    assert_eq!(Path::new(&String::from_utf8_lossy(&output.stdout).into_owned()), moved.path());
}
