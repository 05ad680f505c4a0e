//! A Debian `docker-registry` (distribution v2) on 127.0.0.1 for tests:
//! filesystem storage in a temp dir, a free port, optional htpasswd auth,
//! optional TLS (with a test CA made by `openssl`), killed on drop. Also a
//! tiny loopback HTTP server for answers docker-registry cannot give, and a
//! small hand-made image to push.

use imgbake::image::digest::Digest;
use imgbake::registry::manifest::OCI_MANIFEST;
use imgbake::registry::{BlobSource, ImageToPush};
use sha2::{Digest as _, Sha256};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub const REGISTRY_BINARY: &str = "/usr/bin/docker-registry";
const STARTUP_WAIT: Duration = Duration::from_secs(20);
const STARTUP_ATTEMPTS: usize = 5;

pub struct TestRegistry {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    tls: bool,
}

impl TestRegistry {
    /// An open registry (no auth). Its log ([`TestRegistry::log`]) has an access line per request.
    pub fn start() -> TestRegistry {
        TestRegistry::start_with(None, None)
    }

    /// A registry that requires `user`/`password` (htpasswd, bcrypt).
    pub fn start_with_htpasswd(user: &str, password: &str) -> TestRegistry {
        TestRegistry::start_with(Some((user, password)), None)
    }

    /// An open registry serving HTTPS with `certificate`.
    pub fn start_tls(certificate: &TestCertificate) -> TestRegistry {
        TestRegistry::start_with(None, Some(certificate))
    }

    fn start_with(htpasswd: Option<(&str, &str)>, tls: Option<&TestCertificate>) -> TestRegistry {
        assert!(
            Path::new(REGISTRY_BINARY).exists(),
            "{REGISTRY_BINARY} is missing: install Debian's `docker-registry` package"
        );
        // A port can still be taken between the probe and the server's bind
        // (by another process); then start again on another one.
        for _ in 0..STARTUP_ATTEMPTS {
            let port = free_port();
            if let Some(registry) = TestRegistry::start_on(port, htpasswd, tls) {
                return registry;
            }
        }
        panic!("{REGISTRY_BINARY} found no free port in {STARTUP_ATTEMPTS} attempts")
    }

    /// The registry on `port`, or `None` when the port was taken before it bound.
    fn start_on(port: u16, htpasswd: Option<(&str, &str)>, tls: Option<&TestCertificate>) -> Option<TestRegistry> {
        let dir = tempfile::tempdir().expect("temp dir for the test registry");
        let storage = dir.path().join("storage");
        std::fs::create_dir_all(&storage).unwrap();
        let mut config = format!(
            "version: 0.1\n\
             log:\n  level: warn\n  accesslog:\n    disabled: false\n\
             storage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\n\
             http:\n  addr: 127.0.0.1:{port}\n",
            storage.display()
        );
        if let Some((user, password)) = htpasswd {
            let hash = bcrypt::hash(password, 5).expect("bcrypt hash");
            let file = dir.path().join("htpasswd");
            std::fs::write(&file, format!("{user}:{hash}\n")).unwrap();
            config.push_str(&format!("auth:\n  htpasswd:\n    realm: imgbake-test\n    path: {}\n", file.display()));
        }
        if let Some(certificate) = tls {
            config.push_str(&format!(
                "  tls:\n    certificate: {}\n    key: {}\n",
                certificate.cert.display(),
                certificate.key.display()
            ));
        }
        let config_path = dir.path().join("config.yml");
        std::fs::write(&config_path, config).unwrap();
        let log = std::fs::File::create(dir.path().join("registry.log")).unwrap();
        let child = Command::new(REGISTRY_BINARY)
            .arg("serve")
            .arg(&config_path)
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|error| panic!("failed to start {REGISTRY_BINARY}: {error}"));
        let mut registry = TestRegistry { child, port, dir, tls: tls.is_some() };
        registry.wait_until_ready().then_some(registry)
    }

    /// `127.0.0.1:PORT`.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// `localhost:PORT`.
    pub fn localhost(&self) -> String {
        format!("localhost:{}", self.port)
    }

    pub fn storage_dir(&self) -> PathBuf {
        self.dir.path().join("storage")
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }

    /// Waits for the registry to answer; `false` when it exited because its
    /// port was taken, a panic on any other failure.
    fn wait_until_ready(&mut self) -> bool {
        let deadline = Instant::now() + STARTUP_WAIT;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                let log = self.log();
                if log.contains("address already in use") {
                    return false;
                }
                panic!("{REGISTRY_BINARY} exited with {status} before answering:\n{log}");
            }
            if let Some(status) = http_status(&self.host(), "/v2/") {
                // 401 counts: the server is up and asks for credentials;
                // a TLS server answers plain HTTP with 400.
                if status == 200 || status == 401 || (self.tls && status == 400) {
                    return true;
                }
            }
            if Instant::now() > deadline {
                panic!(
                    "{REGISTRY_BINARY} did not answer GET /v2/ on {} within {:?}:\n{}",
                    self.host(),
                    STARTUP_WAIT,
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for TestRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A port nobody listens on right now, taken below the kernel's ephemeral
/// range (`ip_local_port_range`, 32768–60999 by default). A port from
/// `bind(":0")` is an ephemeral one: between our probe closing it and the
/// server binding it, any outgoing connection on the machine may take it as
/// its source port (CI saw `bind: address already in use` that way). Each
/// call in a process gets a different port, so parallel tests never race
/// for the same one.
pub fn free_port() -> u16 {
    use std::sync::atomic::{AtomicU32, Ordering};
    const FIRST: u32 = 20_000;
    const COUNT: u32 = 12_000;
    static NEXT: AtomicU32 = AtomicU32::new(u32::MAX);
    // Each test binary starts at its own offset, so two processes running
    // at once rarely probe the same ports.
    let _ = NEXT.compare_exchange(
        u32::MAX,
        std::process::id().wrapping_mul(7919) % COUNT,
        Ordering::SeqCst,
        Ordering::SeqCst,
    );
    for _ in 0..COUNT {
        let port = (FIRST + NEXT.fetch_add(1, Ordering::SeqCst) % COUNT) as u16;
        if TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
    panic!("no free loopback port in {FIRST}..{}", FIRST + COUNT)
}

/// The status of a plain `GET`, or `None` when nothing answers.
fn http_status(host: &str, path: &str) -> Option<u16> {
    let mut stream = TcpStream::connect(host).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(stream, "GET {path} HTTP/1.0\r\nHost: {host}\r\nConnection: close\r\n\r\n").ok()?;
    let mut head = [0u8; 32];
    let count = stream.read(&mut head).ok()?;
    let text = std::str::from_utf8(&head[..count]).ok()?;
    text.split_whitespace().nth(1)?.parse().ok()
}

/// A test CA and a server certificate it signed, made with `openssl`: the
/// CA's `ca.pem`, and `cert.pem` / `key.pem` for the server, valid for
/// `names` (`IP:127.0.0.1`, `DNS:localhost`, …).
pub struct TestCertificate {
    pub ca: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    _dir: tempfile::TempDir,
}

impl TestCertificate {
    /// A test CA and a server certificate for `names`, valid for two days.
    pub fn issue(names: &[&str]) -> TestCertificate {
        TestCertificate::issue_valid_for(names, 2)
    }

    /// As [`TestCertificate::issue`], with the server certificate valid for
    /// `days` from now; `-1` gives one that expired yesterday.
    pub fn issue_valid_for(names: &[&str], days: i32) -> TestCertificate {
        let days = days.to_string();
        let dir = tempfile::tempdir().expect("temp dir for certificates");
        let path = |name: &str| dir.path().join(name);
        let openssl = |args: &[&str]| {
            let output = Command::new("openssl")
                .args(args)
                .current_dir(dir.path())
                .stdin(Stdio::null())
                .output()
                .unwrap_or_else(|error| panic!("cannot run openssl (apt-get install openssl): {error}"));
            assert!(output.status.success(), "openssl {args:?} failed:\n{}", String::from_utf8_lossy(&output.stderr));
        };
        let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
        openssl(
            &[
                &["req", "-x509"][..],
                &ec,
                &["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=imgbake test CA"],
            ]
            .concat(),
        );
        openssl(
            &[&["req"][..], &ec, &["-keyout", "key.pem", "-out", "server.csr", "-subj", "/CN=imgbake test registry"]]
                .concat(),
        );
        std::fs::write(
            path("server.ext"),
            format!(
                "basicConstraints = CA:FALSE\nkeyUsage = digitalSignature\nextendedKeyUsage = serverAuth\nsubjectAltName = {}\n",
                names.join(",")
            ),
        )
        .unwrap();
        openssl(&[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.pem",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "cert.pem",
            "-days",
            &days,
            "-extfile",
            "server.ext",
        ]);
        TestCertificate { ca: path("ca.pem"), cert: path("cert.pem"), key: path("key.pem"), _dir: dir }
    }
}

type Handler = dyn Fn(&str) -> (&'static str, String, Vec<u8>) + Send + 'static;

/// A loopback HTTP/1.1 server answering each request with `handler(request
/// head)` → (status line, extra headers, body); it runs until the test ends.
pub fn fake_server(
    handler: impl Fn(&str) -> (&'static str, String, Vec<u8>) + Send + 'static,
) -> (String, std::thread::JoinHandle<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let host = listener.local_addr().unwrap().to_string();
    let handler: Box<Handler> = Box::new(handler);
    let server = std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { return };
            let mut request = Vec::new();
            let mut buffer = [0u8; 4096];
            // A TLS ClientHello (record type 0x16) gets what a plain-HTTP
            // server sends to bytes it cannot parse.
            while request.first() != Some(&0x16) && !request.windows(4).any(|window| window == b"\r\n\r\n") {
                match stream.read(&mut buffer) {
                    Ok(0) | Err(_) => break,
                    Ok(count) => request.extend_from_slice(&buffer[..count]),
                }
            }
            if request.first() == Some(&0x16) {
                let _ = stream.write_all(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
                continue;
            }
            let request = String::from_utf8_lossy(&request).to_string();
            let (status, extra, body) = handler(&request);
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\n{extra}Content-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(&body);
        }
    });
    (host, server)
}

/// The value of header `name` in a request head.
pub fn request_header(request: &str, name: &str) -> Option<String> {
    request.lines().skip(1).find_map(|line| {
        let (key, value) = line.split_once(':')?;
        key.trim().eq_ignore_ascii_case(name).then(|| value.trim().to_string())
    })
}

pub fn sha256(bytes: &[u8]) -> Digest {
    Digest::from_sha256_bytes(&Sha256::digest(bytes))
}

/// Writes `bytes` as `<blobs>/sha256/<hex>`.
pub fn write_blob(blobs: &Path, bytes: &[u8]) -> BlobSource {
    let blob = BlobSource::in_blobs_dir(blobs, sha256(bytes), bytes.len() as u64);
    std::fs::create_dir_all(blob.path.parent().unwrap()).unwrap();
    std::fs::write(&blob.path, bytes).unwrap();
    blob
}

/// A tiny but real image: one gzip layer holding `/hello.txt`, its config and
/// manifest, written by hand (no layer writer involved).
pub fn small_image(blobs: &Path, text: &str) -> ImageToPush {
    let mut tar_bytes = Vec::new();
    {
        let mut builder = tar::Builder::new(&mut tar_bytes);
        let mut header = tar::Header::new_gnu();
        header.set_size(text.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        builder.append_data(&mut header, "hello.txt", text.as_bytes()).unwrap();
        builder.finish().unwrap();
    }
    let diff_id = sha256(&tar_bytes);
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(&tar_bytes).unwrap();
    let layer = write_blob(blobs, &encoder.finish().unwrap());
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "config": {"Cmd": ["/bin/true"]},
        "rootfs": {"type": "layers", "diff_ids": [diff_id.to_string()]},
    });
    let config = write_blob(blobs, &serde_json::to_vec(&config).unwrap());
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": OCI_MANIFEST,
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config.digest.to_string(),
            "size": config.size,
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
            "digest": layer.digest.to_string(),
            "size": layer.size,
        }],
    });
    ImageToPush {
        manifest: serde_json::to_vec(&manifest).unwrap(),
        manifest_media_type: OCI_MANIFEST.into(),
        config,
        layers: vec![layer],
        mount_from: None,
    }
}
