//! `imgbake prefetch` against a loopback hub that misbehaves on purpose:
//! connection resets, 503 bursts, 429 with Retry-After, truncated bodies, a
//! flipped byte, stalls, no Range support, a full disk, kill -9 mid-file.
//! Every case ends in a file whose sha256 is the manifest's, or in a clear
//! failure with nothing at the file's name — never in an accepted wrong byte.

mod support;

use sha2::{Digest as _, Sha256};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use support::data::random_bytes;
use support::hub::{self, TestHub};

/// Bytes per range request in the hook (`runtime::download::RANGE_SIZE`).
const RANGE: usize = 16 << 20;
const BIG: &str = "model.safetensors";
const SMALL: &str = "config.json";

struct Fixture {
    _dir: tempfile::TempDir,
    hub: TestHub,
    manifest: PathBuf,
    dest: PathBuf,
    files: Vec<(&'static str, Vec<u8>)>,
    big_sha: String,
}

/// A hub serving one small file and one `big`-byte file (over the CDN,
/// several ranges), and a manifest for them.
fn fixture(big: usize) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("hub");
    let files = vec![(SMALL, br#"{"model_type": "tiny"}"#.to_vec()), (BIG, random_bytes(big, 7))];
    let commit = hub::make_repo(&root, "org/tiny", "main", &files);
    let hub = TestHub::start(&root, None);
    let entries: Vec<serde_json::Value> = files
        .iter()
        .map(|(name, data)| {
            serde_json::json!({
                "path": name,
                "size": data.len(),
                "sha256": hex::encode(Sha256::digest(data)),
                "url": format!("{}/org/tiny/resolve/{commit}/{name}", hub.endpoint()),
            })
        })
        .collect();
    let manifest = serde_json::json!({
        "schema": "imgbake.weights-manifest/v1",
        "app": "faults",
        "target": "generic",
        "entries": [{
            "origin": "imgbake.weights[0]",
            "source": "hf://org/tiny@main",
            "kind": "hf",
            "revision": commit,
            "path": "/models/tiny",
            "volume_path": "/models/tiny",
            "layout": "plain",
            "credential": null,
            "total_size": files.iter().map(|(_, d)| d.len()).sum::<usize>(),
            "files": entries,
        }],
    });
    let path = dir.path().join("weights.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&manifest).unwrap()).unwrap();
    let big_sha = hex::encode(Sha256::digest(&files[1].1));
    Fixture { dest: dir.path().join("volume/tiny"), manifest: path, hub, files, big_sha, _dir: dir }
}

impl Fixture {
    fn command(&self, extra: &[&str]) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_imgbake"));
        command
            .args(["prefetch", "--manifest", self.manifest.to_str().unwrap(), "--dest", self.dest.to_str().unwrap()])
            .args(extra)
            .stdin(Stdio::null());
        command
    }

    fn prefetch(&self, extra: &[&str]) -> Output {
        let mut child = self.command(extra).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
        // Bounded: every case here ends well within this.
        let deadline = Instant::now() + Duration::from_secs(120);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("prefetch did not finish within 120 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        child.wait_with_output().unwrap()
    }

    /// Every file of the manifest at the destination, byte for byte (compared by sha256).
    fn assert_verified(&self, output: &Output) {
        let log = String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "{log}");
        for (name, data) in &self.files {
            let on_disk = std::fs::read(self.dest.join(name)).unwrap();
            assert_eq!(hex::encode(Sha256::digest(&on_disk)), hex::encode(Sha256::digest(data)), "{name}\n{log}");
        }
        self.assert_no_leftovers();
    }

    fn assert_no_leftovers(&self) {
        let names: Vec<String> = std::fs::read_dir(&self.dest)
            .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        assert!(names.iter().all(|n| !n.ends_with(".partial") && !n.contains(".tmp")), "{names:?}");
    }

    /// A failure that names the file and its source and leaves no file under its name.
    fn assert_clear_failure(&self, output: &Output, file: &str, reason: &str) -> String {
        let log = String::from_utf8_lossy(&output.stderr).into_owned();
        assert_eq!(output.status.code(), Some(1), "{log}");
        assert!(log.contains(file) && log.contains("/resolve/"), "names the file and the URL: {log}");
        assert!(log.contains(reason), "says why ({reason}): {log}");
        assert!(!self.dest.join(file).exists(), "nothing at the file's name after a failure");
        log
    }
}

fn events(output: &Output, kind: &str) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stderr)
        .lines()
        .filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok())
        .filter(|event| event["event"] == kind)
        .collect()
}

#[test]
fn connection_resets_mid_body_are_resumed_from_the_byte_they_stopped_at() {
    let f = fixture(3 * RANGE - 12345);
    f.hub.set_faults(serde_json::json!([{ "kind": "drop", "match": "/cdn/", "after": 3_000_000, "count": 3 }]));
    let output = f.prefetch(&["--jobs", "3"]);
    f.assert_verified(&output);
    assert_eq!(f.hub.faults_used(), 3);
    assert!(events(&output, "retry").len() >= 3, "{}", String::from_utf8_lossy(&output.stderr));
    // Resumed, not restarted: each reset costs no more than what it had sent.
    let sent = f.hub.bytes_sent("/cdn/");
    assert!(sent <= f.files[1].1.len() as u64 + 3 * 3_000_000, "sent {sent}");
}

#[test]
fn a_signed_cdn_url_never_reaches_the_log() {
    // A manifest whose URL is signed (written by hand, or by a tool that
    // allows them; imgbake's config refuses them): a CDN that hangs up makes
    // the HTTP client's error name that URL, signature included.
    let f = fixture(RANGE + 1);
    let mut manifest: serde_json::Value = serde_json::from_slice(&std::fs::read(&f.manifest).unwrap()).unwrap();
    let url = manifest["entries"][0]["files"][1]["url"].as_str().unwrap().to_string();
    let signature = support::hub::CDN_SIGNATURE;
    manifest["entries"][0]["files"][1]["url"] = format!("{url}?Expires=4102444800&Signature={signature}").into();
    std::fs::write(&f.manifest, serde_json::to_vec(&manifest).unwrap()).unwrap();
    f.hub.set_faults(serde_json::json!([{ "kind": "hangup", "match": BIG, "count": 2 }]));
    let ready = f.dest.parent().unwrap().join("ready");
    let output = f.prefetch(&["--jobs", "1", "--ready-file", ready.to_str().unwrap()]);
    f.assert_verified(&output);
    assert_eq!(f.hub.faults_used(), 2);
    let log = String::from_utf8_lossy(&output.stderr);
    let retries = events(&output, "retry");
    assert!(retries.len() >= 2, "{log}");
    assert!(retries.iter().any(|r| r["reason"].as_str().unwrap().contains(&format!("{BIG}?<redacted>"))), "{log}");
    assert!(log.contains("?<redacted>"), "{log}");
    assert!(!log.contains(support::hub::CDN_SIGNATURE), "{log}");
    for written in [ready.clone(), ready.with_file_name("ready.metrics.json")] {
        let text = std::fs::read_to_string(&written).unwrap();
        assert!(!text.contains(support::hub::CDN_SIGNATURE), "{}: {text}", written.display());
    }
}

#[test]
fn bursts_of_503_and_429_with_retry_after_are_waited_out() {
    let f = fixture(RANGE + 1);
    f.hub.set_faults(serde_json::json!([
        { "kind": "status", "status": 503, "match": "/cdn/", "count": 3 },
        { "kind": "status", "status": 429, "retry_after": 2, "match": "config.json", "count": 1 },
    ]));
    let started = Instant::now();
    let output = f.prefetch(&["--jobs", "2"]);
    f.assert_verified(&output);
    assert_eq!(f.hub.faults_used(), 4);
    let retries = events(&output, "retry");
    assert!(retries.iter().any(|r| r["delay_seconds"] == 2.0 && r["reason"].as_str().unwrap().contains("429")));
    assert!(started.elapsed() >= Duration::from_secs(2), "Retry-After: 2 was honoured");
}

#[test]
fn truncated_bodies_are_completed_not_accepted() {
    let f = fixture(RANGE + 4096);
    f.hub.set_faults(serde_json::json!([
        { "kind": "truncate", "match": "/cdn/", "after": 100_000, "count": 2 },
        { "kind": "truncate", "match": "config.json", "after": 5, "count": 1 },
    ]));
    let output = f.prefetch(&["--jobs", "2"]);
    f.assert_verified(&output);
    assert_eq!(f.hub.faults_used(), 3);
}

#[test]
fn a_flipped_byte_is_caught_by_the_hash_and_fetched_again() {
    let f = fixture(RANGE + 777);
    f.hub.set_faults(serde_json::json!([{ "kind": "flip", "match": "/cdn/", "offset": 1000, "count": 1 }]));
    let output = f.prefetch(&["--jobs", "2"]);
    f.assert_verified(&output);
    let retries = events(&output, "retry");
    assert!(retries.iter().any(|r| r["reason"].as_str().unwrap().contains("content has sha256")), "{retries:?}");
}

#[test]
fn a_source_that_always_corrupts_fails_clearly_and_leaves_nothing() {
    let f = fixture(RANGE / 2);
    f.hub.corrupt_blob(&f.big_sha);
    let output = f.prefetch(&["--jobs", "2"]);
    let log = f.assert_clear_failure(&output, BIG, "content has sha256");
    assert!(log.contains(&f.big_sha), "{log}");
    f.assert_no_leftovers();
}

#[test]
fn a_stall_longer_than_the_read_timeout_is_abandoned_and_retried() {
    let f = fixture(RANGE + 10);
    f.hub.set_faults(
        serde_json::json!([{ "kind": "stall", "match": "/cdn/", "after": 65536, "seconds": 20, "count": 1 }]),
    );
    let started = Instant::now();
    let output = f.prefetch(&["--jobs", "2", "--read-timeout", "1"]);
    f.assert_verified(&output);
    assert!(started.elapsed() < Duration::from_secs(15), "did not wait for the stall to end");
    assert!(!events(&output, "retry").is_empty());
}

#[test]
fn a_server_without_range_support_still_gives_a_verified_file() {
    let f = fixture(3 * RANGE + 5);
    // No Range at all, and one reset on the way: the retry gets the whole
    // file again, skips what is already written and completes it.
    f.hub.set_faults(serde_json::json!([
        { "kind": "drop", "match": "/cdn/", "after": 20_000_000, "norange": true, "count": 1 },
        { "kind": "norange", "match": "", "count": 1000 },
    ]));
    let output = f.prefetch(&["--jobs", "4"]);
    f.assert_verified(&output);
    // One stream, not four ranges of the whole file each.
    let gets = f.hub.request_count(&format!("GET /cdn/{}", f.big_sha));
    assert_eq!(gets, 2, "the first stream and its retry");
}

#[test]
fn persistent_server_errors_end_in_a_clear_failure() {
    let f = fixture(1000);
    f.hub.set_faults(serde_json::json!([{ "kind": "status", "status": 503, "retry_after": 0, "match": "config.json", "count": 100 }]));
    let output = f.prefetch(&["--jobs", "2"]);
    f.assert_clear_failure(&output, SMALL, "gave up after 6 attempts");
}

#[test]
fn a_missing_file_fails_at_once_without_retrying() {
    let f = fixture(1000);
    let text = std::fs::read_to_string(&f.manifest).unwrap().replace("/config.json\"", "/missing.json\"");
    std::fs::write(&f.manifest, text).unwrap();
    let output = f.prefetch(&[]);
    f.assert_clear_failure(&output, SMALL, "not found");
    assert!(events(&output, "retry").is_empty());
}

#[test]
fn a_volume_too_small_is_refused_before_any_download() {
    let f = fixture(1000);
    let text = std::fs::read_to_string(&f.manifest).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_str(&text).unwrap();
    manifest["entries"][0]["files"][1]["size"] = serde_json::json!(1u64 << 60);
    std::fs::write(&f.manifest, manifest.to_string()).unwrap();
    let output = f.prefetch(&[]);
    let log = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{log}");
    assert!(log.contains("not enough disk space") && log.contains("hint:"), "{log}");
    assert_eq!(f.hub.bytes_sent(""), 0, "nothing was downloaded");
}

#[test]
fn kill_9_mid_file_then_a_rerun_resumes_from_the_completed_ranges() {
    let f = fixture(4 * RANGE);
    // Two ranges pass, the third stalls: the hook is mid-file when killed.
    f.hub.set_faults(
        serde_json::json!([{ "kind": "stall", "match": "/cdn/", "skip": 2, "after": 0, "seconds": 60, "count": 1 }]),
    );
    let mut child = f.command(&["--jobs", "1"]).stderr(Stdio::null()).spawn().unwrap();
    let progress = f.dest.with_file_name("tiny.imgbake-locks").join(format!("{BIG}.progress"));
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let done = std::fs::read(&progress)
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| v["done"].as_array().map(|d| d.len()))
            .unwrap_or(0);
        if done >= 2 {
            break;
        }
        assert!(Instant::now() < deadline, "the first run never completed two ranges");
        std::thread::sleep(Duration::from_millis(20));
    }
    // SIGKILL: no chance to clean up.
    child.kill().unwrap();
    child.wait().unwrap();
    assert!(!f.dest.join(BIG).exists());
    assert!(f.dest.join(format!("{BIG}.partial")).exists());
    f.hub.set_faults(serde_json::json!([]));
    let before = f.hub.bytes_sent("/cdn/");
    let output = f.prefetch(&["--jobs", "2"]);
    f.assert_verified(&output);
    let second_run = f.hub.bytes_sent("/cdn/") - before;
    assert_eq!(second_run, 2 * RANGE as u64, "only the two missing ranges were fetched again");
    let downloaded = events(&output, "downloaded");
    let big = downloaded.iter().find(|e| e["file"] == BIG).unwrap();
    assert_eq!(big["resumed_bytes"], 2 * RANGE as u64);
}

#[test]
fn a_second_start_trusts_its_verification_records_and_rehashes_a_changed_file() {
    let f = fixture(RANGE / 4);
    f.assert_verified(&f.prefetch(&[]));
    let again = f.prefetch(&[]);
    f.assert_verified(&again);
    let present = events(&again, "present");
    assert_eq!(present.len(), 2);
    assert!(present.iter().all(|e| e["verified_by"] == "record"), "{present:?}");
    // Overwrite the big file in place with other bytes of the same size: the
    // record no longer matches (mtime), the hash fails, the file is fetched again.
    let path = f.dest.join(BIG);
    std::thread::sleep(Duration::from_millis(20));
    std::fs::write(&path, vec![0u8; f.files[1].1.len()]).unwrap();
    let third = f.prefetch(&[]);
    f.assert_verified(&third);
    assert_eq!(events(&third, "downloaded").len(), 1);
}

#[test]
fn background_mode_starts_the_app_first_and_writes_the_ready_file_after_verification() {
    let f = fixture(2 * RANGE);
    // The big file stalls for 3 s (within the read timeout), so the download is still running when the app starts.
    f.hub.set_faults(serde_json::json!([{ "kind": "stall", "match": "/cdn/", "after": 1, "seconds": 3, "count": 1 }]));
    let ready = f.dest.with_file_name("ready.json");
    let report = f.dest.with_file_name("app-report.json");
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let app = format!(
        r#"
import json, os, sys, hashlib
sys.path.insert(0, {helper:?})
from wait_for_weights import wait_for_weights
ready_at_start = os.path.exists({ready:?})
summary = wait_for_weights({ready:?}, timeout=60)
digest = hashlib.sha256(open({big:?}, "rb").read()).hexdigest()
json.dump({{"ready_at_start": ready_at_start, "sha256": digest, "files": summary["files"]}}, open({report:?}, "w"))
"#,
        helper = helper.to_str().unwrap(),
        ready = ready.to_str().unwrap(),
        big = f.dest.join(BIG).to_str().unwrap(),
        report = report.to_str().unwrap(),
    );
    let output = f.prefetch(&[
        "--background",
        "--ready-file",
        ready.to_str().unwrap(),
        "--read-timeout",
        "10",
        "--",
        "python3",
        "-c",
        &app,
    ]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(&report).unwrap()).unwrap();
    assert_eq!(report["ready_at_start"], false, "the app started before the weights were ready");
    assert_eq!(report["sha256"], f.big_sha.as_str(), "after wait_for_weights the file is complete and right");
    assert_eq!(report["files"], 2);
    let metrics: serde_json::Value =
        serde_json::from_slice(&std::fs::read(ready.with_file_name("ready.json.metrics.json")).unwrap()).unwrap();
    assert_eq!(metrics["status"], "ready");
    assert_eq!(metrics["fetched_bytes"], (2 * RANGE + f.files[0].1.len()) as u64);
}

#[test]
fn background_mode_reports_a_failure_to_the_waiting_app() {
    let f = fixture(1000);
    f.hub.corrupt_blob(&f.big_sha);
    let text = std::fs::read_to_string(&f.manifest).unwrap().replace("/config.json\"", "/missing.json\"");
    std::fs::write(&f.manifest, text).unwrap();
    let ready = f.dest.with_file_name("ready.json");
    let helper = Path::new(env!("CARGO_MANIFEST_DIR")).join("templates");
    let app = format!(
        r#"
import sys
sys.path.insert(0, {helper:?})
from wait_for_weights import wait_for_weights, WeightsFailed
try:
    wait_for_weights({ready:?}, timeout=60)
except WeightsFailed as error:
    print("FAILED:", error)
    sys.exit(3)
"#,
        helper = helper.to_str().unwrap(),
        ready = ready.to_str().unwrap(),
    );
    let output = f.prefetch(&["--background", "--ready-file", ready.to_str().unwrap(), "--", "python3", "-c", &app]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(3), "{stdout}");
    assert!(stdout.contains("FAILED:") && stdout.contains("config.json"), "{stdout}");
    assert!(!ready.exists());
}

#[test]
fn eight_hooks_on_one_volume_fetch_each_byte_once() {
    let f = fixture(3 * RANGE + 99);
    let children: Vec<_> = (0..8)
        .map(|_| f.command(&["--jobs", "3"]).stdout(Stdio::null()).stderr(Stdio::piped()).spawn().unwrap())
        .collect();
    let mut downloaded = 0;
    for child in children {
        let output = child.wait_with_output().unwrap();
        f.assert_verified(&output);
        downloaded += events(&output, "downloaded").len();
    }
    assert_eq!(downloaded, 2, "each file downloaded by exactly one hook");
    // Counted at the server: the big file's bytes went out once, in its four ranges.
    assert_eq!(f.hub.bytes_sent("/cdn/"), f.files[1].1.len() as u64);
    assert_eq!(f.hub.request_count(&format!("GET /cdn/{}", f.big_sha)), 4);
}
