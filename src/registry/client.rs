//! The HTTP side of the registry client: scheme choice (HTTPS unless the host
//! is listed as insecure), authentication on challenge, bounded retries with
//! exponential backoff and jitter, and transfer counters.
//!
//! Pulling and pushing live in `pull.rs` and `push.rs` as further
//! `impl RegistryClient` blocks.

use super::auth::{Challenge, Credentials, TokenResponse};
use super::error::{is_retryable_status, RegistryError, Result};
use super::progress::{Progress, ProgressMode};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// How a [`RegistryClient`] talks to registries. Built from CLI flags in one
/// place; the client never sees the CLI.
#[derive(Debug, Clone)]
pub struct RegistryClientOptions {
    /// Hosts (`host[:port]`, or `host:*` for any port) spoken to over plain
    /// HTTP. Loopback hosts are HTTPS too unless listed here.
    pub insecure_registries: Vec<String>,
    pub connect_timeout: Duration,
    /// Bound on waiting for response headers, and on each read of a body.
    pub timeout: Duration,
    /// Uploads may take `timeout + size / min_upload_bytes_per_second`.
    pub min_upload_bytes_per_second: u64,
    /// Retries after the first attempt, for 5xx, 429 and connection failures.
    pub max_retries: u32,
    pub initial_backoff: Duration,
    pub max_backoff: Duration,
    /// Explicit credentials per registry host; they win over the ambient ones.
    pub credentials: BTreeMap<String, Credentials>,
    /// Also look credentials up in the environment and Docker's config file.
    pub ambient_credentials: bool,
    /// Blob transfers running at once in `push_image` and `pull_image`.
    pub parallel_transfers: usize,
    pub progress: ProgressMode,
}

impl Default for RegistryClientOptions {
    fn default() -> Self {
        RegistryClientOptions {
            insecure_registries: Vec::new(),
            connect_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(60),
            min_upload_bytes_per_second: 1_000_000,
            max_retries: 4,
            initial_backoff: Duration::from_millis(500),
            max_backoff: Duration::from_secs(20),
            credentials: BTreeMap::new(),
            ambient_credentials: true,
            parallel_transfers: 3,
            progress: ProgressMode::Auto,
        }
    }
}

/// What a client has done so far; tests use it to prove that a re-push
/// uploads nothing.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TransferStats {
    /// `HEAD` requests for blobs.
    pub blob_checks: u64,
    pub blobs_uploaded: u64,
    pub blobs_mounted: u64,
    pub bytes_uploaded: u64,
    pub blobs_downloaded: u64,
    pub bytes_downloaded: u64,
    /// Requests sent again after a retryable failure.
    pub retries: u64,
}

#[derive(Default)]
pub(crate) struct Counters {
    pub blob_checks: AtomicU64,
    pub blobs_uploaded: AtomicU64,
    pub blobs_mounted: AtomicU64,
    pub bytes_uploaded: AtomicU64,
    pub blobs_downloaded: AtomicU64,
    pub bytes_downloaded: AtomicU64,
    pub retries: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, amount: u64) {
        counter.fetch_add(amount, Ordering::Relaxed);
    }
}

/// A streaming OCI distribution client (blocking, rustls).
pub struct RegistryClient {
    pub(crate) http: Client,
    pub(crate) options: RegistryClientOptions,
    pub(crate) counters: Counters,
    pub(crate) progress: Progress,
    /// `Authorization` header values by (registry, repository).
    authorizations: Mutex<HashMap<(String, String), String>>,
}

impl RegistryClient {
    pub fn new(options: RegistryClientOptions) -> Result<RegistryClient> {
        let http = Client::builder()
            .connect_timeout(options.connect_timeout)
            .timeout(options.timeout)
            .user_agent(concat!("imgbake/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|source| RegistryError::Transfer {
                registry: "(client setup)".to_string(),
                source: Box::new(source),
            })?;
        let progress = Progress::new(options.progress);
        Ok(RegistryClient {
            http,
            options,
            counters: Counters::default(),
            progress,
            authorizations: Mutex::new(HashMap::new()),
        })
    }

    pub fn stats(&self) -> TransferStats {
        let load = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        TransferStats {
            blob_checks: load(&self.counters.blob_checks),
            blobs_uploaded: load(&self.counters.blobs_uploaded),
            blobs_mounted: load(&self.counters.blobs_mounted),
            bytes_uploaded: load(&self.counters.bytes_uploaded),
            blobs_downloaded: load(&self.counters.blobs_downloaded),
            bytes_downloaded: load(&self.counters.bytes_downloaded),
            retries: load(&self.counters.retries),
        }
    }

    /// `http` for hosts listed as insecure, else `https`.
    pub fn scheme(&self, registry: &str) -> &'static str {
        let listed = self.options.insecure_registries.iter().any(|entry| {
            entry == registry
                || entry.strip_suffix(":*").is_some_and(|host| {
                    registry == host || registry.strip_prefix(host).is_some_and(|port| port.starts_with(':'))
                })
        });
        if listed {
            "http"
        } else {
            "https"
        }
    }

    /// `scheme://registry/v2/<path>`.
    pub(crate) fn url(&self, registry: &str, path: &str) -> String {
        format!("{}://{registry}/v2/{path}", self.scheme(registry))
    }

    fn credentials_for(&self, registry: &str) -> Option<Credentials> {
        if let Some(credentials) = self.options.credentials.get(registry) {
            return Some(credentials.clone());
        }
        if self.options.ambient_credentials {
            return Credentials::ambient(registry);
        }
        None
    }

    /// Sends a request built by `make` (called again for every attempt, so
    /// that a streamed body is reopened), answering one auth challenge.
    /// With `retry`, 5xx, 429 and connection failures are retried with
    /// backoff; the last response is returned whatever its status, except
    /// 401/403 which become [`RegistryError::Unauthorized`].
    pub(crate) fn send(
        &self,
        registry: &str,
        repository: &str,
        retry: bool,
        make: &dyn Fn(&Client) -> Result<RequestBuilder>,
    ) -> Result<Response> {
        let key = (registry.to_string(), repository.to_string());
        let mut answered_challenge = false;
        let mut attempt = 0;
        loop {
            let mut request = make(&self.http)?;
            let authorization = self.authorizations.lock().unwrap().get(&key).cloned();
            if let Some(value) = authorization {
                request = request.header(AUTHORIZATION, value);
            }
            let retries_left = retry && attempt < self.options.max_retries;
            match request.send() {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if status == 401 && !answered_challenge {
                        answered_challenge = true;
                        let value = self.answer_challenge(registry, repository, &response)?;
                        self.authorizations.lock().unwrap().insert(key.clone(), value);
                        continue;
                    }
                    if status == 401 || status == 403 {
                        return Err(RegistryError::Unauthorized { registry: registry.to_string(), status });
                    }
                    if is_retryable_status(status) && retries_left {
                        let hint = retry_after(&response);
                        self.pause_before_retry(attempt, hint);
                        attempt += 1;
                        continue;
                    }
                    return Ok(response);
                }
                Err(error) if is_transient(&error) && retries_left => {
                    self.pause_before_retry(attempt, None);
                    attempt += 1;
                }
                Err(error) => return Err(transport_error(registry, error)),
            }
        }
    }

    /// The `Authorization` value already answered for (registry, repository), if any.
    pub(crate) fn authorization(&self, registry: &str, repository: &str) -> Option<String> {
        self.authorizations.lock().unwrap().get(&(registry.to_string(), repository.to_string())).cloned()
    }

    fn pause_before_retry(&self, attempt: u32, hint: Option<Duration>) {
        Counters::add(&self.counters.retries, 1);
        std::thread::sleep(backoff(attempt, self.options.initial_backoff, self.options.max_backoff, hint));
    }

    /// Turns a 401's `WWW-Authenticate` into an `Authorization` value.
    fn answer_challenge(&self, registry: &str, repository: &str, response: &Response) -> Result<String> {
        let unauthorized = || RegistryError::Unauthorized { registry: registry.to_string(), status: 401 };
        let challenge = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(Challenge::parse)
            .ok_or_else(unauthorized)?;
        let credentials = self.credentials_for(registry);
        match challenge {
            Challenge::Basic => credentials.map(|credentials| credentials.basic_header()).ok_or_else(unauthorized),
            Challenge::Bearer { realm, service, scope } => {
                let scope = scope.unwrap_or_else(|| format!("repository:{repository}:pull"));
                let mut query: Vec<(&str, &str)> = Vec::new();
                if let Some(service) = &service {
                    query.push(("service", service));
                }
                for item in scope.split(' ').filter(|item| !item.is_empty()) {
                    query.push(("scope", item));
                }
                // Credentials go to the token service only over HTTPS, or
                // over HTTP to a host the user listed as insecure.
                let realm_is_trusted = reqwest::Url::parse(&realm).is_ok_and(|url| {
                    url.scheme() == "https"
                        || url.host_str().is_some_and(|host| {
                            let authority = match url.port() {
                                Some(port) => format!("{host}:{port}"),
                                None => host.to_string(),
                            };
                            self.scheme(&authority) == "http"
                        })
                });
                let credentials = credentials.filter(|_| realm_is_trusted);
                let response = self.send_token_request(registry, &realm, &query, &credentials)?;
                let status = response.status().as_u16();
                if status == 401 || status == 403 {
                    return Err(RegistryError::Unauthorized { registry: registry.to_string(), status });
                }
                if !response.status().is_success() {
                    return Err(RegistryError::Token {
                        registry: registry.to_string(),
                        detail: format!("HTTP {status}"),
                    });
                }
                let token =
                    response.json::<TokenResponse>().ok().and_then(TokenResponse::into_token).ok_or_else(|| {
                        RegistryError::Token {
                            registry: registry.to_string(),
                            detail: "the answer holds no token".to_string(),
                        }
                    })?;
                Ok(format!("Bearer {token}"))
            }
        }
    }

    fn send_token_request(
        &self,
        registry: &str,
        realm: &str,
        query: &[(&str, &str)],
        credentials: &Option<Credentials>,
    ) -> Result<Response> {
        let mut attempt = 0;
        loop {
            let mut request = self.http.get(realm).query(query);
            if let Some(credentials) = credentials {
                request = request.header(AUTHORIZATION, credentials.basic_header());
            }
            let retries_left = attempt < self.options.max_retries;
            match request.send() {
                Ok(response) if is_retryable_status(response.status().as_u16()) && retries_left => {
                    self.pause_before_retry(attempt, retry_after(&response));
                }
                Ok(response) => return Ok(response),
                Err(error) if is_transient(&error) && retries_left => {
                    self.pause_before_retry(attempt, None);
                }
                Err(error) => return Err(transport_error(registry, error)),
            }
            attempt += 1;
        }
    }
}

/// `initial * 2^attempt`, capped, then "equal jitter": half fixed, half random,
/// so that parallel uploads hitting the same 503 do not retry in lockstep.
pub(crate) fn backoff(attempt: u32, initial: Duration, max: Duration, hint: Option<Duration>) -> Duration {
    let exponential = initial.saturating_mul(1u32.checked_shl(attempt.min(16)).unwrap_or(u32::MAX)).min(max);
    let half = exponential / 2;
    let jitter = half.mul_f64(fastrand::f64());
    let delay = half + jitter;
    match hint {
        Some(hint) => delay.max(hint.min(max)),
        None => delay,
    }
}

fn retry_after(response: &Response) -> Option<Duration> {
    let seconds: u64 = response.headers().get(RETRY_AFTER)?.to_str().ok()?.trim().parse().ok()?;
    Some(Duration::from_secs(seconds))
}

/// Connection refused/reset, timeouts and requests cut off mid-way.
pub(crate) fn is_transient(error: &reqwest::Error) -> bool {
    if error.is_connect() || error.is_timeout() || error.is_request() || error.is_body() {
        return true;
    }
    let mut source = std::error::Error::source(error);
    while let Some(cause) = source {
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(io.kind(), ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof | TimedOut) {
                return true;
            }
        }
        source = cause.source();
    }
    false
}

pub(crate) fn transport_error(registry: &str, error: reqwest::Error) -> RegistryError {
    if error.is_connect() {
        RegistryError::Unreachable { registry: registry.to_string(), source: error }
    } else {
        RegistryError::Transfer { registry: registry.to_string(), source: Box::new(error) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_is_capped_and_jittered() {
        let initial = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        for attempt in 0..10 {
            let delay = backoff(attempt, initial, max, None);
            let full = (initial * 2u32.pow(attempt)).min(max);
            assert!(delay >= full / 2 && delay <= full, "{attempt}: {delay:?}");
        }
        assert_eq!(backoff(0, initial, max, Some(Duration::from_secs(60))), max);
    }

    #[test]
    fn plain_http_only_for_listed_hosts() {
        let client = RegistryClient::new(RegistryClientOptions {
            insecure_registries: vec!["127.0.0.1:*".into(), "registry.local:5000".into()],
            ..Default::default()
        })
        .unwrap();
        assert_eq!(client.scheme("127.0.0.1:5000"), "http");
        assert_eq!(client.scheme("registry.local:5000"), "http");
        assert_eq!(client.scheme("registry.local:5001"), "https");
        assert_eq!(client.scheme("localhost:5000"), "https");
        assert_eq!(client.scheme("127.0.0.10:5000"), "https");
    }
}
