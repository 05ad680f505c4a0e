//! Replays the saved fuzz corpus on the stable toolchain: every file of
//! every `fuzz/corpus/<target>/` goes through the same function its cargo
//! fuzz target calls (`imgbake::fuzzing`), so an input that once broke a
//! parser stays a regression test without nightly. Each input must finish
//! within a second, as in the fuzzing runs (docs/fuzzing.md).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

fn corpus_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus")
}

fn inputs_of(target: &str) -> Vec<PathBuf> {
    let dir = corpus_dir().join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.is_file())
        .collect();
    files.sort();
    files
}

/// Inputs are slower here than in the fuzzer (debug build, shared CI
/// cores), so the bound is looser than the fuzzer's 1 s.
const PER_INPUT: Duration = Duration::from_secs(10);

#[test]
fn every_target_has_a_fuzz_target_file_and_a_seeded_corpus() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let manifest = std::fs::read_to_string(root.join("Cargo.toml")).unwrap();
    for (name, _) in imgbake::fuzzing::TARGETS {
        let source = std::fs::read_to_string(root.join(format!("fuzz_targets/{name}.rs")))
            .unwrap_or_else(|e| panic!("fuzz/fuzz_targets/{name}.rs: {e}"));
        assert!(source.contains(&format!("imgbake::fuzzing::{name}(")), "{name}.rs calls another function");
        assert!(manifest.contains(&format!("name = \"{name}\"")), "fuzz/Cargo.toml has no [[bin]] {name}");
        assert!(!inputs_of(name).is_empty(), "fuzz/corpus/{name} is empty");
    }
    let mut dirs: Vec<String> = std::fs::read_dir(corpus_dir())
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut names: Vec<String> = imgbake::fuzzing::TARGETS.iter().map(|(n, _)| n.to_string()).collect();
    names.sort();
    assert_eq!(dirs, names, "a corpus directory without a target, or the reverse");
}

#[test]
fn the_saved_corpus_of_every_target_replays_clean() {
    let mut total = 0;
    for (name, target) in imgbake::fuzzing::TARGETS {
        for input in inputs_of(name) {
            let data = std::fs::read(&input).unwrap();
            let started = Instant::now();
            let outcome = std::panic::catch_unwind(|| target(&data));
            assert!(outcome.is_ok(), "{name}: {} broke an invariant (see the panic above)", input.display());
            let took = started.elapsed();
            assert!(took < PER_INPUT, "{name}: {} took {took:?}", input.display());
            total += 1;
        }
    }
    assert!(total >= imgbake::fuzzing::TARGETS.len());
}

/// The seeds are inputs the parsers accept: a target whose every seed is
/// refused would fuzz only its error paths.
#[test]
fn seeds_reach_past_the_parsers_first_error() {
    use std::path::Path;
    let seed = |target: &str, name: &str| std::fs::read(corpus_dir().join(target).join(name)).unwrap();
    let text = |target: &str, name: &str| String::from_utf8(seed(target, name)).unwrap();

    let lock = imgbake::lock::Lock::from_toml(&text("lock_file", "seed-lock"), Path::new("imgbake.lock"));
    assert!(lock.is_ok(), "{:?}", lock.err());
    let manifest =
        imgbake::weights::manifest::WeightsManifest::from_bytes(&seed("weights_manifest", "seed-two-entries"));
    assert!(manifest.is_ok(), "{:?}", manifest.err());
    let profile =
        imgbake::pricing::profile::parse_file(&text("profile", "seed-override"), Path::new("p.toml"), "generic");
    assert!(profile.is_ok(), "{:?}", profile.err());
    let loaded = imgbake::config::load_text(
        // A project with a `weights/` directory, for the local source.
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cerebrium-local-weights/cerebrium.toml"),
        &format!("[cerebrium.deployment]\nname = \"fuzz\"\n\n[imgbake]\n{}", text("imgbake_section", "seed-design")),
    );
    let errors: Vec<String> = loaded.diagnostics.iter().filter(|d| d.is_error()).map(|d| d.to_string()).collect();
    assert!(errors.is_empty(), "{errors:#?}");
    let answer: serde_json::Value = serde_json::from_slice(&seed("conda_answer", "seed-solve")).unwrap();
    let solved = imgbake::deps::conda::solved_packages(&answer);
    assert!(solved.is_ok(), "{:?}", solved.err());
}
