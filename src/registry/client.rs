//! The HTTP side of the registry client: scheme choice (HTTPS unless the host
//! is listed as insecure; loopback hosts fall back to HTTP when they answer
//! HTTPS with HTTP, remembered for the client's life), authentication on
//! challenge, bounded retries with exponential backoff and jitter, rate
//! limits, and transfer counters.
//!
//! Pulling and pushing live in `pull.rs` and `push.rs` as further
//! `impl RegistryClient` blocks.

use super::auth::{Challenge, CredentialSource, Credentials, TokenResponse};
use super::connection::{self, is_transient, transport_error, Failure};
use super::error::{RegistryError, Result, ServerMessage, CODE_TOO_MANY_REQUESTS};
use super::progress::{Progress, ProgressMode};
use crate::plumbing::retry::{retry_after, retryable_status, RetryPolicy};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use std::collections::{BTreeMap, HashMap};
use std::io::Read;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// The usual variable (curl, uv, Python's ssl) naming a PEM file of extra
/// CA certificates to trust, for registries with a private CA.
pub const ENV_SSL_CERT_FILE: &str = "SSL_CERT_FILE";

/// How a [`RegistryClient`] talks to registries. Built from CLI flags in one
/// place; the client never sees the CLI.
#[derive(Debug, Clone)]
pub struct RegistryClientOptions {
    /// Hosts (`host[:port]`, or `host:*` for any port) spoken to over plain
    /// HTTP. Loopback hosts not listed here are tried over HTTPS first and
    /// fall back to HTTP when they answer HTTPS with HTTP.
    pub insecure_registries: Vec<String>,
    /// PEM files of CA certificates trusted besides the built-in roots
    /// (default: the file [`ENV_SSL_CERT_FILE`] names, if set).
    pub ca_certificates: Vec<PathBuf>,
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
            ca_certificates: std::env::var_os(ENV_SSL_CERT_FILE)
                .filter(|path| !path.is_empty())
                .map(PathBuf::from)
                .into_iter()
                .collect(),
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

impl RegistryClientOptions {
    /// These options' retries as the shared policy; a `Retry-After` longer
    /// than the longest backoff is not sat through.
    pub fn retry_policy(&self) -> RetryPolicy {
        RetryPolicy::with_retries(self.max_retries, self.initial_backoff, self.max_backoff)
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
    /// `Authorization` header values by (registry, repository), with the
    /// source of the credentials behind them.
    authorizations: Mutex<HashMap<(String, String), (String, CredentialSource)>>,
    /// The extra CA certificates of `options.ca_certificates`, for the
    /// async upload client too.
    pub(crate) root_certificates: Vec<reqwest::Certificate>,
    /// Loopback registries found to speak plain HTTP.
    plain_http: Mutex<std::collections::BTreeSet<String>>,
    /// Ambient credentials by registry, looked up once (a credential helper
    /// is a process to run).
    ambient: Mutex<HashMap<String, Option<(Credentials, CredentialSource)>>>,
}

impl RegistryClient {
    pub fn new(options: RegistryClientOptions) -> Result<RegistryClient> {
        let mut builder = crate::plumbing::http::blocking(options.connect_timeout, options.timeout);
        let mut root_certificates = Vec::new();
        for path in &options.ca_certificates {
            let pem = std::fs::read(path).map_err(|source| RegistryError::Io { path: path.clone(), source })?;
            let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(|source| RegistryError::Io {
                path: path.clone(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, source),
            })?;
            root_certificates.extend(certificates);
        }
        for certificate in &root_certificates {
            builder = builder.add_root_certificate(certificate.clone());
        }
        let http = builder.build().map_err(|source| RegistryError::Transfer {
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
            root_certificates,
            plain_http: Mutex::new(Default::default()),
            ambient: Mutex::new(HashMap::new()),
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

    /// `http` for hosts listed as insecure and for loopback hosts found to
    /// speak plain HTTP, else `https`.
    pub fn scheme(&self, registry: &str) -> &'static str {
        let listed = self.options.insecure_registries.iter().any(|entry| {
            entry == registry
                || entry.strip_suffix(":*").is_some_and(|host| {
                    registry == host || registry.strip_prefix(host).is_some_and(|port| port.starts_with(':'))
                })
        });
        if listed || self.plain_http.lock().unwrap().contains(registry) {
            "http"
        } else {
            "https"
        }
    }

    /// After `error` on an HTTPS request to `registry`: whether to send it
    /// again over plain HTTP (a loopback registry that answered with HTTP).
    fn falls_back_to_http(&self, registry: &str, error: &reqwest::Error) -> bool {
        let over_https = error.url().is_some_and(|url| url.scheme() == "https");
        if over_https && connection::is_loopback(registry) && connection::failure_of(error) == Failure::PlainHttp {
            self.progress.note(&format!("{registry} answers plain HTTP; using http:// for it"));
            self.plain_http.lock().unwrap().insert(registry.to_string());
            return true;
        }
        false
    }

    /// `scheme://registry/v2/<path>`.
    pub(crate) fn url(&self, registry: &str, path: &str) -> String {
        format!("{}://{registry}/v2/{path}", self.scheme(registry))
    }

    fn credentials_for(&self, registry: &str) -> Result<Option<(Credentials, CredentialSource)>> {
        if let Some(credentials) = self.options.credentials.get(registry) {
            return Ok(Some((credentials.clone(), CredentialSource::Options)));
        }
        if !self.options.ambient_credentials {
            return Ok(None);
        }
        if let Some(known) = self.ambient.lock().unwrap().get(registry) {
            return Ok(known.clone());
        }
        let found = Credentials::ambient(registry)?;
        self.ambient.lock().unwrap().insert(registry.to_string(), found.clone());
        Ok(found)
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
        let mut fell_back = false;
        let mut failures = 0;
        loop {
            let mut request = make(&self.http)?;
            let authorization = self.authorizations.lock().unwrap().get(&key).cloned();
            if let Some((value, _)) = &authorization {
                request = request.header(AUTHORIZATION, value);
            }
            let mut request = request.build().map_err(|error| transport_error(registry, error))?;
            // The URL was made before a fallback to plain HTTP was known.
            if self.scheme(registry) == "http" && request.url().scheme() == "https" {
                let _ = request.url_mut().set_scheme("http");
            }
            match self.http.execute(request) {
                Ok(response) => {
                    let status = response.status().as_u16();
                    if status == 401 && !answered_challenge {
                        answered_challenge = true;
                        let answer = self.answer_challenge(registry, repository, &response)?;
                        self.authorizations.lock().unwrap().insert(key.clone(), answer);
                        continue;
                    }
                    if status == 401 || status == 403 {
                        let credential = authorization.map_or(CredentialSource::None, |(_, source)| source);
                        return Err(RegistryError::Unauthorized {
                            registry: registry.to_string(),
                            repository: repository.to_string(),
                            status,
                            credential,
                        });
                    }
                    if retry && retryable_status(status) {
                        failures += 1;
                        if self.pause_before_retry(failures, retry_after(response.headers())) {
                            continue;
                        }
                    }
                    return rate_limit_error(registry, response);
                }
                Err(error) if !fell_back && self.falls_back_to_http(registry, &error) => {
                    fell_back = true;
                }
                Err(error) => {
                    failures += 1;
                    if !(retry && is_transient(&error) && self.pause_before_retry(failures, None)) {
                        return Err(transport_error(registry, error));
                    }
                }
            }
        }
    }

    /// The `Authorization` value already answered for (registry, repository), if any.
    pub(crate) fn authorization(&self, registry: &str, repository: &str) -> Option<String> {
        let authorizations = self.authorizations.lock().unwrap();
        authorizations.get(&(registry.to_string(), repository.to_string())).map(|(value, _)| value.clone())
    }

    /// After failed try number `failures`: counts a retry and sleeps before
    /// it, or returns false when the policy says to give up.
    fn pause_before_retry(&self, failures: u32, retry_after: Option<Duration>) -> bool {
        match self.options.retry_policy().next_delay(failures, retry_after) {
            Ok(delay) => {
                Counters::add(&self.counters.retries, 1);
                std::thread::sleep(delay);
                true
            }
            Err(_) => false,
        }
    }

    /// Runs `once` again, after a pause, while it fails with an error that
    /// `retryable` accepts and the policy allows another try.
    pub(crate) fn with_retries<T>(
        &self,
        mut once: impl FnMut() -> Result<T>,
        retryable: impl Fn(&RegistryError) -> bool,
    ) -> Result<T> {
        let mut failures = 0;
        loop {
            match once() {
                Err(error) if retryable(&error) => {
                    failures += 1;
                    if !self.pause_before_retry(failures, None) {
                        return Err(error);
                    }
                }
                other => return other,
            }
        }
    }

    /// Turns a 401's `WWW-Authenticate` into an `Authorization` value, with
    /// the source of the credentials it carries.
    fn answer_challenge(
        &self,
        registry: &str,
        repository: &str,
        response: &Response,
    ) -> Result<(String, CredentialSource)> {
        let unauthorized = |credential: CredentialSource| RegistryError::Unauthorized {
            registry: registry.to_string(),
            repository: repository.to_string(),
            status: 401,
            credential,
        };
        let challenge = response
            .headers()
            .get_all(WWW_AUTHENTICATE)
            .iter()
            .filter_map(|value| value.to_str().ok())
            .find_map(Challenge::parse)
            .ok_or_else(|| unauthorized(CredentialSource::None))?;
        let credentials = self.credentials_for(registry)?;
        match challenge {
            Challenge::Basic => match credentials {
                Some((credentials, source)) if !credentials.is_identity_token() => {
                    Ok((credentials.basic_header(), source))
                }
                Some((_, source)) => Err(unauthorized(source)),
                None => Err(unauthorized(CredentialSource::None)),
            },
            Challenge::Bearer { realm, service, scope } => {
                let scope = scope.unwrap_or_else(|| format!("repository:{repository}:pull"));
                // Credentials go to the token service only over HTTPS, or
                // over HTTP to a host the user listed as insecure (or a
                // loopback one found to speak HTTP).
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
                let source = credentials.as_ref().map_or(CredentialSource::None, |(_, source)| source.clone());
                let request = TokenRequest {
                    realm: &realm,
                    service: service.as_deref(),
                    scope: &scope,
                    credentials: credentials.as_ref().map(|(credentials, _)| credentials),
                };
                let response = self.send_token_request(registry, &request)?;
                let status = response.status().as_u16();
                if status == 401 || status == 403 {
                    return Err(RegistryError::Unauthorized {
                        registry: registry.to_string(),
                        repository: repository.to_string(),
                        status,
                        credential: source,
                    });
                }
                if !response.status().is_success() {
                    rate_limit_error(registry, response)?;
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
                Ok((format!("Bearer {token}"), source))
            }
        }
    }

    /// `GET realm?service=…&scope=…` with Basic credentials, or, for an
    /// identity token, the OAuth2 refresh-token grant docker uses
    /// (`POST realm` with a form).
    fn send_token_request(&self, registry: &str, token: &TokenRequest<'_>) -> Result<Response> {
        let mut failures = 0;
        loop {
            let request = match token.credentials {
                Some(credentials) if credentials.is_identity_token() => {
                    let mut form = vec![
                        ("grant_type", "refresh_token"),
                        ("refresh_token", credentials.password.as_str()),
                        ("client_id", "imgbake"),
                        ("scope", token.scope),
                    ];
                    if let Some(service) = token.service {
                        form.push(("service", service));
                    }
                    self.http.post(token.realm).form(&form)
                }
                credentials => {
                    let mut query: Vec<(&str, &str)> = Vec::new();
                    if let Some(service) = token.service {
                        query.push(("service", service));
                    }
                    for item in token.scope.split(' ').filter(|item| !item.is_empty()) {
                        query.push(("scope", item));
                    }
                    let request = self.http.get(token.realm).query(&query);
                    match credentials {
                        Some(credentials) => request.header(AUTHORIZATION, credentials.basic_header()),
                        None => request,
                    }
                }
            };
            match request.send() {
                Ok(response) if retryable_status(response.status().as_u16()) => {
                    failures += 1;
                    if !self.pause_before_retry(failures, retry_after(response.headers())) {
                        return Ok(response);
                    }
                }
                Ok(response) => return Ok(response),
                Err(error) => {
                    failures += 1;
                    if !(is_transient(&error) && self.pause_before_retry(failures, None)) {
                        return Err(transport_error(registry, error));
                    }
                }
            }
        }
    }
}

/// What to ask a registry's token service for.
struct TokenRequest<'a> {
    realm: &'a str,
    service: Option<&'a str>,
    scope: &'a str,
    credentials: Option<&'a Credentials>,
}

/// A final answer of HTTP 429 becomes [`RegistryError::RateLimited`], with
/// the registry's `Retry-After` and its error entry (Docker Hub's
/// `TOOMANYREQUESTS` and the message naming the limit); anything else is
/// returned as it is.
fn rate_limit_error(registry: &str, response: Response) -> Result<Response> {
    let status = response.status().as_u16();
    if status != 429 {
        return Ok(response);
    }
    let retry_after = retry_after(response.headers());
    let mut body = Vec::new();
    let _ = response.take(64 * 1024).read_to_end(&mut body);
    let messages = ServerMessage::parse_all(&body);
    let detail = messages
        .iter()
        .find(|message| message.code.eq_ignore_ascii_case(CODE_TOO_MANY_REQUESTS))
        .or(messages.first())
        .cloned();
    Err(RegistryError::RateLimited { registry: registry.to_string(), status, retry_after, detail })
}

#[cfg(test)]
mod tests {
    use super::*;

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
        // Loopback hosts are HTTPS until they answer HTTPS with HTTP.
        assert_eq!(client.scheme("localhost:5000"), "https");
        assert_eq!(client.scheme("127.0.0.10:5000"), "https");
    }
}
