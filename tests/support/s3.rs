//! moto's S3 server on 127.0.0.1 for tests: a free port, killed on drop.
//!
//! Buckets and objects are made with plain HTTP requests written by hand
//! (moto's default mode accepts unsigned requests): an HTTP client would
//! normalize a key like `prefix/../../etc/passwd` away, and the tests need
//! such keys to exist. The code under test talks to moto through
//! `object_store` with the endpoint and fake keys from [`TestS3::options`].

use super::registry::free_port;
use super::tools::{read_response, skipping_tool_tests, tool_path, wait_until_answering, SKIP_TOOL_TESTS_ENV};
use imgbake::weights::object::ObjectOptions;
use imgbake::weights::Secret;
use std::io::Write;
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

const STARTUP_WAIT: Duration = Duration::from_secs(60);
/// moto's fake credentials: any key is accepted unless auth is switched on.
pub const FAKE_KEY: &str = "testing";

/// moto's default mode does not check signatures, but it treats a request
/// with no `Authorization` at all as anonymous, and anonymous users may not
/// overwrite or delete an existing object (HTTP 403). A well-formed header
/// with a fake signature is accepted as the `testing` user.
const FAKE_AUTHORIZATION: &str = "Authorization: AWS4-HMAC-SHA256 \
     Credential=testing/20240101/us-east-1/s3/aws4_request, SignedHeaders=host, Signature=0";

pub struct TestS3 {
    child: Child,
    port: u16,
    log: tempfile::NamedTempFile,
}

/// How to run moto's server: the console script, else the module.
fn moto_command() -> Option<Command> {
    if let Some(path) = tool_path("moto_server") {
        return Some(Command::new(path));
    }
    let module = Command::new("python3")
        .args(["-c", "import moto.server"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    module.then(|| {
        let mut command = Command::new("python3");
        command.args(["-m", "moto.server"]);
        command
    })
}

impl TestS3 {
    /// moto's server in its default mode (no auth). `None` when
    /// `IMGBAKE_SKIP_TOOL_TESTS=1`; panics when moto is not installed.
    pub fn start() -> Option<TestS3> {
        TestS3::start_with_env(&[])
    }

    /// moto with IAM authentication on from the first request
    /// (`INITIAL_NO_AUTH_ACTION_COUNT=0`): unknown access keys are refused.
    pub fn start_with_auth() -> Option<TestS3> {
        TestS3::start_with_env(&[("INITIAL_NO_AUTH_ACTION_COUNT", "0")])
    }

    fn start_with_env(vars: &[(&str, &str)]) -> Option<TestS3> {
        if skipping_tool_tests() {
            eprintln!("skipping: {SKIP_TOOL_TESTS_ENV}=1 (needs moto's server)");
            return None;
        }
        let mut command = moto_command().unwrap_or_else(|| {
            panic!(
                "moto's S3 server is not installed (no `moto_server`, no `python3 -m moto.server`): \
                 pip install 'moto[server]', or set {SKIP_TOOL_TESTS_ENV}=1"
            )
        });
        let port = free_port();
        let log = tempfile::NamedTempFile::new().expect("moto log file");
        command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .envs(vars.iter().copied())
            .stdin(Stdio::null())
            .stdout(log.reopen().unwrap())
            .stderr(log.reopen().unwrap());
        let child = command.spawn().expect("start moto's server");
        let mut server = TestS3 { child, port, log };
        wait_until_answering("moto's server", &mut server.child, server.log.path(), STARTUP_WAIT, || {
            raw_request(port, "GET", "/", &[]).is_ok()
        });
        Some(server)
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// A GCS service-account key whose `gcs_base_url` is this server (GCS's
    /// XML API is S3's protocol) and which turns Google's OAuth off, so
    /// requests carry no credential.
    pub fn gcs_service_account_key(&self) -> String {
        serde_json::json!({
            "type": "service_account",
            "client_email": "imgbake-test@example.iam.gserviceaccount.com",
            "private_key_id": "unused",
            "private_key": "unused",
            "disable_oauth": true,
            "gcs_base_url": self.endpoint(),
        })
        .to_string()
    }

    /// The AWS_* variables a process would need to reach this server.
    pub fn env(&self) -> Vec<(String, String)> {
        [
            ("AWS_ACCESS_KEY_ID", FAKE_KEY.to_string()),
            ("AWS_SECRET_ACCESS_KEY", FAKE_KEY.to_string()),
            ("AWS_REGION", "us-east-1".to_string()),
            ("AWS_ENDPOINT_URL", self.endpoint()),
        ]
        .into_iter()
        .map(|(name, value)| (name.to_string(), value))
        .collect()
    }

    /// The same as [`TestS3::env`], as explicit options (tests never touch
    /// the process environment: they run in parallel threads).
    pub fn options(&self) -> ObjectOptions {
        self.options_with_keys(FAKE_KEY, FAKE_KEY)
    }

    pub fn options_with_keys(&self, access_key: &str, secret_key: &str) -> ObjectOptions {
        ObjectOptions {
            endpoint: Some(self.endpoint()),
            region: Some("us-east-1".to_string()),
            access_key: Some(Secret::new(access_key.to_string())),
            secret_key: Some(Secret::new(secret_key.to_string())),
            allow_http: true,
            ..Default::default()
        }
    }

    pub fn create_bucket(&self, name: &str) {
        self.expect_ok("PUT", &format!("/{name}"), Body::Bytes(&[]));
    }

    /// Puts `bytes` at `key` exactly as given (no path normalization).
    pub fn put_object(&self, bucket: &str, key: &str, bytes: &[u8]) {
        self.expect_ok("PUT", &format!("/{bucket}/{key}"), Body::Bytes(bytes));
    }

    /// Puts `bytes` at `key` readable by anyone (`x-amz-acl: public-read`),
    /// for clients that send no credential.
    pub fn put_public_object(&self, bucket: &str, key: &str, bytes: &[u8]) {
        let path = format!("/{bucket}/{key}");
        let (status, text) = send_with(self.port, "PUT", &path, "x-amz-acl: public-read\r\n", Body::Bytes(bytes))
            .unwrap_or_else(|error| panic!("PUT {path} to moto failed: {error}\n{}", self.log_text()));
        assert!((200..300).contains(&status), "PUT {path}: HTTP {status}\n{text}");
    }

    /// Puts `size` bytes made by `fill(offset, chunk)` without holding them
    /// all in memory.
    pub fn put_object_streamed(&self, bucket: &str, key: &str, size: u64, fill: &mut dyn FnMut(u64, &mut [u8])) {
        self.expect_ok("PUT", &format!("/{bucket}/{key}"), Body::Generated { size, fill });
    }

    fn expect_ok(&self, method: &str, path: &str, body: Body<'_>) {
        let (status, text) = send(self.port, method, path, body)
            .unwrap_or_else(|error| panic!("{method} {path} to moto failed: {error}\n{}", self.log_text()));
        assert!((200..300).contains(&status), "{method} {path}: HTTP {status}\n{text}");
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }
}

impl Drop for TestS3 {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

enum Body<'a> {
    Bytes(&'a [u8]),
    Generated { size: u64, fill: &'a mut dyn FnMut(u64, &mut [u8]) },
}

fn raw_request(port: u16, method: &str, path: &str, body: &[u8]) -> std::io::Result<(u16, String)> {
    send(port, method, path, Body::Bytes(body))
}

/// One HTTP/1.1 request with `Connection: close`; the status and body text.
fn send(port: u16, method: &str, path: &str, body: Body<'_>) -> std::io::Result<(u16, String)> {
    send_with(port, method, path, "", body)
}

/// [`send`] with `headers` (each ending in CRLF) added.
fn send_with(port: u16, method: &str, path: &str, headers: &str, body: Body<'_>) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(60)))?;
    stream.set_write_timeout(Some(Duration::from_secs(60)))?;
    let size = match &body {
        Body::Bytes(bytes) => bytes.len() as u64,
        Body::Generated { size, .. } => *size,
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Length: {size}\r\n{FAKE_AUTHORIZATION}\r\n{headers}Connection: close\r\n\r\n"
    )?;
    match body {
        Body::Bytes(bytes) => stream.write_all(bytes)?,
        Body::Generated { size, fill } => {
            let mut chunk = vec![0u8; 1 << 20];
            let mut offset = 0;
            while offset < size {
                let n = chunk.len().min((size - offset) as usize);
                fill(offset, &mut chunk[..n]);
                stream.write_all(&chunk[..n])?;
                offset += n as u64;
            }
        }
    }
    stream.flush()?;
    read_response(&mut stream)
}
