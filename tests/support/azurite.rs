//! Azurite (Microsoft's Azure Storage emulator, from npm) on 127.0.0.1 for
//! tests: its blob service on a free port with a temp data dir, killed on drop.
//!
//! Containers and blobs are made with plain HTTP requests signed with the
//! emulator's well-known Shared Key (`devstoreaccount1`), written by hand
//! below: Azurite refuses anonymous writes, and the tests should not depend
//! on the code under test to make their fixtures. The code under test talks
//! to Azurite through `object_store` with [`TestAzurite::env`].

use super::registry::free_port;
use super::tools::{
    read_response, repo_root, skipping_tool_tests, tool_path, wait_until_answering, SKIP_TOOL_TESTS_ENV,
};
use base64::Engine as _;
use sha2::{Digest as _, Sha256};
use std::io::Write;
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const STARTUP_WAIT: Duration = Duration::from_secs(60);
/// Azurite's one account and its published key (not a secret: every
/// Azure SDK and Azurite's own docs carry it).
pub const ACCOUNT: &str = "devstoreaccount1";
pub const ACCOUNT_KEY: &str =
    "Eby8vdM02xNOcqFlqUwJPLlmEtlCDXJ1OUzFT50uSRZ6IFsuFq2UVErCz4I6tq/K1SZFPTOtr/KBHBeksoGMGw==";
/// Names the `azurite-blob` executable when it is not on PATH.
pub const AZURITE_ENV: &str = "IMGBAKE_AZURITE_BLOB";
const API_VERSION: &str = "2021-08-06";

pub struct TestAzurite {
    child: Child,
    port: u16,
    _data: tempfile::TempDir,
    log: tempfile::NamedTempFile,
}

/// `$IMGBAKE_AZURITE_BLOB`, `azurite-blob` on PATH, or the copy `.ci/run`
/// installs under `target/npm-tools`.
fn azurite_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(AZURITE_ENV) {
        return Some(PathBuf::from(path));
    }
    tool_path("azurite-blob").or_else(|| {
        let local = repo_root().join("target/npm-tools/node_modules/.bin/azurite-blob");
        local.is_file().then_some(local)
    })
}

impl TestAzurite {
    /// `None` when `IMGBAKE_SKIP_TOOL_TESTS=1`; panics when Azurite is not installed.
    pub fn start() -> Option<TestAzurite> {
        if skipping_tool_tests() {
            eprintln!("skipping: {SKIP_TOOL_TESTS_ENV}=1 (needs Azurite)");
            return None;
        }
        let path = azurite_path().unwrap_or_else(|| {
            panic!(
                "Azurite is not installed (no `azurite-blob` on PATH, in ${AZURITE_ENV} or under \
                 target/npm-tools): `npm install --prefix target/npm-tools azurite@3.35.0`, or set \
                 {SKIP_TOOL_TESTS_ENV}=1"
            )
        });
        let port = free_port();
        let data = tempfile::tempdir().expect("Azurite data dir");
        let log = tempfile::NamedTempFile::new().expect("Azurite log file");
        let child = Command::new(path)
            .args(["--blobHost", "127.0.0.1", "--blobPort", &port.to_string(), "--location"])
            .arg(data.path())
            .args(["--silent", "--skipApiVersionCheck", "--disableTelemetry"])
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap())
            .spawn()
            .expect("start azurite-blob");
        let mut server = TestAzurite { child, port, _data: data, log };
        wait_until_answering("Azurite", &mut server.child, server.log.path(), STARTUP_WAIT, || {
            TcpStream::connect(("127.0.0.1", port)).is_ok()
        });
        Some(server)
    }

    /// The blob endpoint, account included (path-style, as Azurite serves it).
    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/{ACCOUNT}", self.port)
    }

    /// The variables a process needs to reach this account.
    pub fn env(&self) -> Vec<(String, String)> {
        vec![
            ("AZURE_STORAGE_ACCOUNT_NAME".to_string(), ACCOUNT.to_string()),
            ("AZURE_STORAGE_ACCOUNT_KEY".to_string(), ACCOUNT_KEY.to_string()),
            ("AZURE_STORAGE_ENDPOINT".to_string(), self.endpoint()),
        ]
    }

    pub fn create_container(&self, name: &str) {
        self.expect_created("PUT", &format!("/{name}"), &[("restype", "container")], &[], &[]);
    }

    pub fn put_blob(&self, container: &str, name: &str, bytes: &[u8]) {
        self.expect_created("PUT", &format!("/{container}/{name}"), &[], &[("x-ms-blob-type", "BlockBlob")], bytes);
    }

    fn expect_created(&self, method: &str, path: &str, query: &[(&str, &str)], headers: &[(&str, &str)], body: &[u8]) {
        let (status, text) = self
            .send(method, path, query, headers, body)
            .unwrap_or_else(|error| panic!("{method} {path} to Azurite failed: {error}\n{}", self.log_text()));
        assert_eq!(status, 201, "{method} {path}: HTTP {status}\n{text}");
    }

    /// One Shared-Key-signed request with `Connection: close`; status and text.
    fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, &str)],
        headers: &[(&str, &str)],
        body: &[u8],
    ) -> std::io::Result<(u16, String)> {
        let mut ms_headers: Vec<(String, String)> =
            headers.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        ms_headers.push(("x-ms-date".into(), http_date(std::time::SystemTime::now())));
        ms_headers.push(("x-ms-version".into(), API_VERSION.into()));
        ms_headers.sort();
        let content_type = if body.is_empty() { "" } else { "application/octet-stream" };
        let content_length = if body.is_empty() { String::new() } else { body.len().to_string() };
        // The Blob service's Shared Key string to sign: 11 standard headers,
        // the x-ms-* headers, then /account + the URL path (which, path-style,
        // holds the account again) and the query parameters.
        let mut to_sign = format!("{method}\n\n\n{content_length}\n\n{content_type}\n\n\n\n\n\n\n");
        for (name, value) in &ms_headers {
            to_sign.push_str(&format!("{name}:{value}\n"));
        }
        to_sign.push_str(&format!("/{ACCOUNT}/{ACCOUNT}{path}"));
        let mut sorted_query = query.to_vec();
        sorted_query.sort();
        for (name, value) in &sorted_query {
            to_sign.push_str(&format!("\n{name}:{value}"));
        }
        let key = base64::engine::general_purpose::STANDARD.decode(ACCOUNT_KEY).unwrap();
        let signature = base64::engine::general_purpose::STANDARD.encode(hmac_sha256(&key, to_sign.as_bytes()));

        let query_text: Vec<String> = query.iter().map(|(k, v)| format!("{k}={v}")).collect();
        let target = if query.is_empty() {
            format!("/{ACCOUNT}{path}")
        } else {
            format!("/{ACCOUNT}{path}?{}", query_text.join("&"))
        };
        let mut stream = TcpStream::connect(("127.0.0.1", self.port))?;
        stream.set_read_timeout(Some(Duration::from_secs(60)))?;
        let mut request = format!(
            "{method} {target} HTTP/1.1\r\nHost: 127.0.0.1:{}\r\nContent-Length: {}\r\n\
             Authorization: SharedKey {ACCOUNT}:{signature}\r\nConnection: close\r\n",
            self.port,
            body.len()
        );
        if !content_type.is_empty() {
            request.push_str(&format!("Content-Type: {content_type}\r\n"));
        }
        for (name, value) in &ms_headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("\r\n");
        stream.write_all(request.as_bytes())?;
        stream.write_all(body)?;
        read_response(&mut stream)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for TestAzurite {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// HMAC-SHA256 (RFC 2104) over `sha2`; the test suite signs one request per
/// fixture object, so a crate for it is not worth a dependency.
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    const BLOCK: usize = 64;
    let mut block = [0u8; BLOCK];
    if key.len() > BLOCK {
        block[..32].copy_from_slice(&Sha256::digest(key));
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let pad = |byte: u8| block.map(|k| k ^ byte);
    let inner = Sha256::new().chain_update(pad(0x36)).chain_update(message).finalize();
    Sha256::new().chain_update(pad(0x5c)).chain_update(inner).finalize().into()
}

/// RFC 1123 date in GMT (`Thu, 03 Dec 2026 18:23:45 GMT`).
fn http_date(time: std::time::SystemTime) -> String {
    let seconds = time.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    let moment = time::OffsetDateTime::from_unix_timestamp(seconds).unwrap();
    const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];
    const MONTHS: [&str; 12] = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"];
    format!(
        "{}, {:02} {} {} {:02}:{:02}:{:02} GMT",
        DAYS[moment.weekday().number_days_from_monday() as usize],
        moment.day(),
        MONTHS[moment.month() as usize - 1],
        moment.year(),
        moment.hour(),
        moment.minute(),
        moment.second()
    )
}
