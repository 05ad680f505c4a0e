//! A loopback Hugging Face hub for tests: `hub_server.py` (Python stdlib)
//! serving repos that the test writes with [`make_repo`], killed on drop.
//! See the script's docstring for the endpoints and the fault hooks.

use sha2::{Digest as _, Sha256};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const STARTUP_WAIT: Duration = Duration::from_secs(20);
/// The signature in every CDN redirect's query string (`hub_server.py`).
pub const CDN_SIGNATURE: &str = "cdn-signature-0f1e2d3c";

pub struct TestHub {
    child: Child,
    port: u16,
    cdn_port: u16,
    root: PathBuf,
}

impl TestHub {
    /// Serves `root`; with `token`, the hub (not the CDN) answers 401 to any
    /// request without `Authorization: Bearer <token>`.
    pub fn start(root: &Path, token: Option<&str>) -> TestHub {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/hub_server.py");
        let mut command = Command::new("python3");
        command.arg(&script).arg("--root").arg(root).arg("--port").arg("0");
        if let Some(token) = token {
            command.arg("--token").arg(token);
        }
        let mut child = command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|error| panic!("failed to start python3 {}: {error}", script.display()));
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let mut port = || lines.next().and_then(|line| line.ok()).and_then(|line| line.trim().parse::<u16>().ok());
            let _ = sender.send(port().zip(port()));
            // Keep reading so the server never blocks on a full pipe.
            for _ in lines {}
        });
        match receiver.recv_timeout(STARTUP_WAIT) {
            Ok(Some((port, cdn_port))) => TestHub { child, port, cdn_port, root: root.to_path_buf() },
            other => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("hub_server.py did not print its ports within {STARTUP_WAIT:?}: {other:?}")
            }
        }
    }

    /// `http://127.0.0.1:PORT`, for `HF_ENDPOINT`.
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    pub fn cdn_port(&self) -> u16 {
        self.cdn_port
    }

    /// `{"requests": {"METHOD /path": count}, "cdn_authorization": count}`.
    pub fn stats(&self) -> serde_json::Value {
        reqwest::blocking::get(format!("{}/_stats", self.endpoint()))
            .and_then(|response| response.error_for_status())
            .and_then(|response| response.json())
            .expect("GET /_stats")
    }

    /// How many `METHOD /path` requests the hub or CDN has seen.
    pub fn request_count(&self, method_and_path: &str) -> u64 {
        self.stats()["requests"][method_and_path].as_u64().unwrap_or(0)
    }

    /// From now on the CDN serves the blob with this sha256 with one byte flipped.
    pub fn corrupt_blob(&self, sha256_hex: &str) {
        let dir = self.root.join(".corrupt");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(sha256_hex), b"").unwrap();
    }

    /// Faults for file responses (see the script's docstring), replacing any earlier ones.
    pub fn set_faults(&self, faults: serde_json::Value) {
        let path = self.root.join(".faults.json");
        let temp = self.root.join(".faults.json.new");
        std::fs::write(&temp, faults.to_string()).unwrap();
        std::fs::rename(temp, path).unwrap();
    }

    /// How many faults have acted so far.
    pub fn faults_used(&self) -> u64 {
        self.stats()["faults_used"].as_u64().unwrap_or(0)
    }

    /// Body bytes the hub and CDN sent so far for paths containing `needle`.
    pub fn bytes_sent(&self, needle: &str) -> u64 {
        let stats = self.stats();
        let Some(sent) = stats["bytes_sent"].as_object() else { return 0 };
        sent.iter().filter(|(path, _)| path.contains(needle)).map(|(_, n)| n.as_u64().unwrap_or(0)).sum()
    }

    /// The first byte of every body the hub and CDN sent for paths containing
    /// `needle`, in the order the requests came.
    pub fn body_starts(&self, needle: &str) -> Vec<u64> {
        let stats = self.stats();
        let Some(bodies) = stats["bodies"].as_array() else { return Vec::new() };
        bodies
            .iter()
            .filter(|body| body[0].as_str().is_some_and(|path| path.contains(needle)))
            .filter_map(|body| body[1].as_u64())
            .collect()
    }

    /// The next `count` hub requests get a 503.
    pub fn fail_next(&self, count: u32) {
        std::fs::write(self.root.join(".fail_next"), count.to_string()).unwrap();
    }
}

impl Drop for TestHub {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Writes `files` as commit of `repo` (`org/name`) and points `branch` at it
/// (a branch may contain `/`, e.g. `refs/pr/1`). The commit is a 40-hex
/// digest of the file list, so the same files give the same commit.
pub fn make_repo(root: &Path, repo: &str, branch: &str, files: &[(&str, Vec<u8>)]) -> String {
    let mut hasher = Sha256::new();
    for (path, data) in files {
        hasher.update(path.as_bytes());
        hasher.update([0]);
        hasher.update(Sha256::digest(data));
    }
    let commit = hex::encode(hasher.finalize())[..40].to_string();
    let repo_dir = root.join(repo);
    for (path, data) in files {
        let file = repo_dir.join(&commit).join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, data).unwrap();
    }
    std::fs::create_dir_all(repo_dir.join(&commit)).unwrap();
    let reference = repo_dir.join("refs").join(branch);
    std::fs::create_dir_all(reference.parent().unwrap()).unwrap();
    std::fs::write(reference, &commit).unwrap();
    commit
}

/// Makes the revision API list `path` too (e.g. `../escape`) without a file behind it.
pub fn add_listed_path(root: &Path, repo: &str, commit: &str, path: &str) {
    let file = root.join(repo).join(format!("{commit}.extra_siblings"));
    let mut text = std::fs::read_to_string(&file).unwrap_or_default();
    text.push_str(path);
    text.push('\n');
    std::fs::write(file, text).unwrap();
}
