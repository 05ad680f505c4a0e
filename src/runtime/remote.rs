//! Where the prefetch hook reads bytes from: byte ranges of one manifest
//! file, over HTTP (hub files and plain URLs) or from an object store, with
//! the credential read at run time by its name, and failures sorted into
//! "retry" (5xx, 429, resets, stalls) and "give up" (401, 404, bad answers).
//!
//! The HTTP client resolves names with hickory (pure Rust: `/etc/hosts`,
//! then DNS), falling back to public resolvers when `/etc/resolv.conf` is
//! missing, so the static hook binary works in a bare root where glibc's NSS
//! cannot be loaded.

use crate::plumbing::retry;
use crate::spec::WeightsSource;
use crate::weights::manifest::{ManifestEntry, ManifestFile};
use crate::weights::object::{ObjectOptions, ObjectSource};
use crate::weights::{RemoteFile, Secret, WeightsError};
use reqwest::blocking::Client;
use reqwest::header::{HeaderValue, AUTHORIZATION, CONTENT_RANGE, RANGE};
use reqwest::StatusCode;
use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

/// Where secret files are mounted (Cerebrium/Runpod/Truss style); a
/// credential named `HF_TOKEN` is read from `/secrets/HF_TOKEN` when no
/// environment variable of that name is set.
pub const SECRETS_DIR: &str = "/secrets";
/// Overrides [`SECRETS_DIR`] (tests, platforms mounting secrets elsewhere).
pub const SECRETS_DIR_ENV: &str = "IMGBAKE_SECRETS_DIR";

const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Why a request did not give bytes.
#[derive(Debug)]
pub enum Failure {
    /// Worth another attempt (after `after`, when the server said so).
    Retry { message: String, after: Option<Duration> },
    /// Retrying cannot help (access denied, not found, a broken answer).
    Fatal(String),
}

/// A response body and the file offset of its first byte: `start` when the
/// range was honoured, 0 when the server sent the whole file instead.
pub struct Body {
    pub reader: Box<dyn Read + Send>,
    pub from: u64,
    /// The server ignored the range and sends the whole file.
    pub whole: bool,
}

/// The credential named `name`: the environment variable of that name, else
/// the file `<secrets dir>/<name>` (trailing newline removed). Never logged.
pub fn secret(name: &str) -> Option<Secret> {
    if let Some(value) = Secret::from_env(&[name]) {
        return Some(value);
    }
    if name.is_empty() || name.contains('/') || name.starts_with('.') {
        return None;
    }
    let dir = std::env::var_os(SECRETS_DIR_ENV).map(PathBuf::from).unwrap_or_else(|| PathBuf::from(SECRETS_DIR));
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    let value = text.trim_end_matches(['\n', '\r']).to_string();
    (!value.is_empty()).then(|| Secret::new(value))
}

/// Reads byte ranges of one entry's files.
pub enum Remote {
    Http(HttpRemote),
    Object(Box<ObjectRemote>),
}

impl Remote {
    pub fn for_entry(entry: &ManifestEntry, read_timeout: Duration) -> Result<Remote, String> {
        match entry.kind.as_str() {
            "hf" | "https" => {
                let token = match (&entry.credential, entry.kind.as_str()) {
                    (Some(name), _) => Some(secret(name).ok_or_else(|| missing_secret(name))?),
                    (None, "hf") => secret("HF_TOKEN").or_else(|| secret("HUGGING_FACE_HUB_TOKEN")),
                    (None, _) => None,
                };
                let credential = entry.credential.clone().unwrap_or_else(|| "HF_TOKEN".to_string());
                Ok(Remote::Http(HttpRemote::new(token, credential, read_timeout)?))
            }
            "s3" | "gcs" | "azure" => {
                let source = crate::weights::source::parse_source(&entry.source, std::path::Path::new("/"))
                    .map_err(|message| format!("the manifest's source `{}`: {message}", entry.source))?;
                let lookup = |name: &str| {
                    std::env::var(name).ok().filter(|v| !v.is_empty()).or_else(|| {
                        // Only the entry's named secret may come from a file.
                        (Some(name) == entry.credential.as_deref())
                            .then(|| secret(name).map(|s| s.expose().to_string()))
                            .flatten()
                    })
                };
                let options = ObjectOptions::from_lookup(&source, entry.credential.as_deref(), &lookup)
                    .map_err(|error| error.to_string())?;
                // Checks the options once, now, instead of in every worker.
                ObjectSource::with_options(&source, options.clone()).map_err(|error| error.to_string())?;
                Ok(Remote::Object(Box::new(ObjectRemote { source, options, pool: Arc::new(Mutex::new(Vec::new())) })))
            }
            other => Err(format!("`{other}` sources cannot be fetched at run time")),
        }
    }

    /// Bytes `start..end` of `file` (`end > start`).
    pub fn open(&self, file: &ManifestFile, start: u64, end: u64) -> Result<Body, Failure> {
        match self {
            Remote::Http(remote) => remote.open(file, start, end),
            Remote::Object(remote) => remote.open(file, start, end),
        }
    }
}

fn missing_secret(name: &str) -> String {
    let dir = std::env::var(SECRETS_DIR_ENV).unwrap_or_else(|_| SECRETS_DIR.to_string());
    format!("the credential `{name}` is not set (expected an environment variable `{name}` or the file {dir}/{name})")
}

pub struct HttpRemote {
    client: Client,
    token: Option<Secret>,
    credential: String,
}

impl HttpRemote {
    fn new(token: Option<Secret>, credential: String, read_timeout: Duration) -> Result<HttpRemote, String> {
        // The timeout is per read call in the blocking client: a stall, not a slow file.
        let client = crate::plumbing::http::blocking(CONNECT_TIMEOUT, read_timeout)
            .dns_resolver(Arc::new(Resolver::default()))
            .user_agent(concat!("imgbake-prefetch/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| format!("cannot create the HTTP client: {error}"))?;
        Ok(HttpRemote { client, token, credential })
    }

    fn open(&self, file: &ManifestFile, start: u64, end: u64) -> Result<Body, Failure> {
        let mut request = self.client.get(&file.url).header(RANGE, format!("bytes={start}-{}", end - 1));
        if let Some(token) = &self.token {
            // reqwest drops it when a redirect leaves the host (the hub's CDN).
            let mut value = HeaderValue::try_from(format!("Bearer {}", token.expose())).map_err(|_| {
                Failure::Fatal(format!("the credential {} is not a valid header value", self.credential))
            })?;
            value.set_sensitive(true);
            request = request.header(AUTHORIZATION, value);
        }
        let response = request.send().map_err(|error| Failure::Retry { message: chain(&error), after: None })?;
        let status = response.status();
        match status {
            StatusCode::PARTIAL_CONTENT => {
                let range = response.headers().get(CONTENT_RANGE).and_then(|v| v.to_str().ok()).unwrap_or("");
                let first = range.strip_prefix("bytes ").and_then(|r| r.split('-').next()).and_then(|n| n.parse().ok());
                if first != Some(start) {
                    return Err(Failure::Retry {
                        message: format!("asked for bytes from {start}, the server sent `Content-Range: {range}`"),
                        after: None,
                    });
                }
                Ok(Body { reader: Box::new(response), from: start, whole: false })
            }
            StatusCode::OK => Ok(Body { reader: Box::new(response), from: 0, whole: true }),
            status if retry::retryable_status(status.as_u16()) => {
                Err(Failure::Retry { message: format!("HTTP {status}"), after: retry::retry_after(response.headers()) })
            }
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => Err(Failure::Fatal(format!(
                "access denied (HTTP {}); set the credential named {}",
                status.as_u16(),
                self.credential
            ))),
            StatusCode::NOT_FOUND | StatusCode::GONE => Err(Failure::Fatal(format!("not found (HTTP {status})"))),
            status => Err(Failure::Fatal(format!("unexpected HTTP status {status}"))),
        }
    }
}

/// An error with its causes, on one line (reqwest's own Display hides them).
/// Query strings are cut out: after a redirect, reqwest's text names the
/// signed URL it was sent to.
pub fn chain(error: &(dyn std::error::Error + 'static)) -> String {
    crate::weights::signed_url::redact_queries(&crate::plumbing::errors::one_line(error))
}

/// Object-store reads. `ObjectSource` drives one current-thread runtime, so
/// parallel ranges each take a source of their own from this pool.
pub struct ObjectRemote {
    source: WeightsSource,
    options: ObjectOptions,
    pool: Arc<Mutex<Vec<ObjectSource>>>,
}

impl ObjectRemote {
    fn open(&self, file: &ManifestFile, start: u64, end: u64) -> Result<Body, Failure> {
        let taken = self.pool.lock().expect("pool lock").pop();
        let source = match taken {
            Some(source) => source,
            None => ObjectSource::with_options(&self.source, self.options.clone())
                .map_err(|error| Failure::Fatal(error.to_string()))?,
        };
        let remote =
            RemoteFile { path: file.path.clone(), size: file.size, sha256: None, etag: None, url: file.url.clone() };
        let reader = source.open_range(&remote, start, end).map_err(|error| Failure::Fatal(error.to_string()))?;
        Ok(Body {
            reader: Box::new(Pooled { reader, source: Some(source), pool: self.pool.clone() }),
            from: start,
            whole: false,
        })
    }
}

/// A reader that gives its object source back to the pool when dropped.
struct Pooled {
    reader: crate::weights::FileReader,
    source: Option<ObjectSource>,
    pool: Arc<Mutex<Vec<ObjectSource>>>,
}

impl Read for Pooled {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.reader.read(buf)
    }
}

impl Drop for Pooled {
    fn drop(&mut self) {
        if let (Some(source), Ok(mut pool)) = (self.source.take(), self.pool.lock()) {
            pool.push(source);
        }
    }
}

/// True when a read error cannot be cured by asking again (an object store
/// denying access or missing the object mid-download).
pub fn fatal_read_error(error: &std::io::Error) -> bool {
    error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<WeightsError>())
        .is_some_and(|inner| matches!(inner, WeightsError::Unauthorized { .. } | WeightsError::NotFound { .. }))
}

/// hickory with `/etc/hosts` first; public resolvers when the root has no
/// `/etc/resolv.conf` (reqwest's own hickory resolver fails there).
#[derive(Default, Clone)]
struct Resolver {
    inner: Arc<OnceLock<hickory_resolver::TokioResolver>>,
}

impl reqwest::dns::Resolve for Resolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let inner = self.inner.clone();
        Box::pin(async move {
            let resolver = inner.get_or_init(|| {
                use hickory_resolver::config::{LookupIpStrategy, ResolverConfig};
                use hickory_resolver::name_server::TokioConnectionProvider;
                let mut builder = hickory_resolver::TokioResolver::builder_tokio().unwrap_or_else(|_| {
                    hickory_resolver::TokioResolver::builder_with_config(
                        ResolverConfig::default(),
                        TokioConnectionProvider::default(),
                    )
                });
                // IPv4 first: a bare root often lists `localhost` for 127.0.0.1 only.
                builder.options_mut().ip_strategy = LookupIpStrategy::Ipv4thenIpv6;
                builder.build()
            });
            let lookup = resolver.lookup_ip(name.as_str()).await?;
            let addrs: Vec<std::net::SocketAddr> = lookup.iter().map(|ip| std::net::SocketAddr::new(ip, 0)).collect();
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_come_from_files_when_no_variable_is_set() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("IMGBAKE_TEST_FILE_SECRET"), "s3cr3t-value\n").unwrap();
        // The variable names are unique to this test, so setting them does not race other tests.
        std::env::set_var(SECRETS_DIR_ENV, dir.path());
        assert_eq!(secret("IMGBAKE_TEST_FILE_SECRET").unwrap().expose(), "s3cr3t-value");
        assert!(secret("../IMGBAKE_TEST_FILE_SECRET").is_none());
        assert!(secret("IMGBAKE_TEST_ABSENT_SECRET").is_none());
        let message = missing_secret("IMGBAKE_TEST_ABSENT_SECRET");
        assert!(message.contains("IMGBAKE_TEST_ABSENT_SECRET"), "{message}");
    }
}
