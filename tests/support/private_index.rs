//! A private package index behind basic auth (`private_index.py`), started
//! on 127.0.0.1 for one test and killed when dropped.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

pub struct PrivateIndex {
    child: Child,
    pub port: u16,
}

impl PrivateIndex {
    pub fn start(wheels: &Path, user: &str, password: &str) -> PrivateIndex {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/private_index.py");
        let mut child = Command::new("python3")
            .arg(&script)
            .arg(wheels)
            .args([user, password])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start private_index.py");
        let stdout = child.stdout.take().expect("piped stdout");
        let (sender, receiver) = mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            let _ = sender.send(lines.next().and_then(|l| l.ok()).and_then(|l| l.trim().parse::<u16>().ok()));
            for _ in lines {}
        });
        match receiver.recv_timeout(Duration::from_secs(20)) {
            Ok(Some(port)) => PrivateIndex { child, port },
            other => {
                let _ = child.kill();
                panic!("private_index.py did not print its port: {other:?}")
            }
        }
    }

    /// The simple-index URL with the credentials in it, as users set `UV_INDEX_URL`.
    pub fn url_with_credentials(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@127.0.0.1:{}/simple", self.port)
    }

    pub fn stats(&self) -> serde_json::Value {
        reqwest::blocking::get(format!("http://127.0.0.1:{}/_stats", self.port))
            .and_then(|r| r.json())
            .expect("GET /_stats")
    }
}

impl Drop for PrivateIndex {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
