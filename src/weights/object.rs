//! Object stores as weights sources: `s3://bucket/prefix`, `gs://bucket/prefix`
//! and `azure://container/prefix`, through the `object_store` crate.
//!
//! `object_store` is async; the rest of imgbake is blocking. So an
//! [`ObjectSource`] owns a small current-thread tokio runtime and every public
//! method is a blocking call into it. Readers share that runtime (an `Arc`),
//! so a reader may outlive the source and be moved to another thread.
//!
//! A prefix is a folder: its objects are listed recursively and their paths
//! are made relative to it. Object stores have no revisions; the listing
//! records each object's ETag instead, and reads send it as `If-Match`, so an
//! object replaced after the listing fails the read instead of mixing
//! contents. ETags are not sha256 (S3's are MD5 or multipart hashes), so
//! `sha256` stays `None` and the caller hashes the bytes as they pass.
//!
//! Credentials come from [`ObjectOptions`]: explicit values (tests, callers
//! that already hold them) or [`ObjectOptions::from_env`], which reads the
//! usual environment variables or, when the entry names a secret, the Truss
//! style JSON held in that variable. No credential value ever reaches an
//! error or a log: `Secret` hides itself in Debug, and error texts coming
//! from the store are scrubbed of every credential value before they are kept.

use super::filter::PathFilter;
use super::{safe_relative_path, FileReader, Listing, RemoteFile, Secret, WeightsError};
use crate::spec::WeightsSource;
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt, TryStreamExt};
use object_store::path::Path as StorePath;
use object_store::{GetOptions, GetRange, ObjectMeta, ObjectStore};
use std::io::{self, Read};
use std::sync::Arc;
use tokio::runtime::Runtime;

/// One ranged GET per this many bytes when streaming an object. Each request
/// must finish within the client's request timeout (30 s by default in
/// `object_store`), so a whole multi-GB object is never one request; the
/// bytes of a range are still streamed, never buffered whole.
pub const READ_RANGE_SIZE: u64 = 8 * 1024 * 1024;

pub const AWS_ACCESS_KEY_ID: &str = "AWS_ACCESS_KEY_ID";
pub const AWS_SECRET_ACCESS_KEY: &str = "AWS_SECRET_ACCESS_KEY";
pub const AWS_SESSION_TOKEN: &str = "AWS_SESSION_TOKEN";
pub const AWS_REGION: &str = "AWS_REGION";
pub const AWS_DEFAULT_REGION: &str = "AWS_DEFAULT_REGION";
/// An S3-compatible endpoint (MinIO, moto, R2, …); `http://` is allowed for it.
pub const AWS_ENDPOINT_URL: &str = "AWS_ENDPOINT_URL";
/// Path of a credentials file (service account or authorized user).
pub const GOOGLE_APPLICATION_CREDENTIALS: &str = "GOOGLE_APPLICATION_CREDENTIALS";
/// Path of a service-account JSON file.
pub const GOOGLE_SERVICE_ACCOUNT: &str = "GOOGLE_SERVICE_ACCOUNT";
/// A service-account JSON document itself.
pub const GOOGLE_SERVICE_ACCOUNT_KEY: &str = "GOOGLE_SERVICE_ACCOUNT_KEY";
pub const AZURE_STORAGE_ACCOUNT_NAME: &str = "AZURE_STORAGE_ACCOUNT_NAME";
pub const AZURE_STORAGE_ACCOUNT_KEY: &str = "AZURE_STORAGE_ACCOUNT_KEY";
/// The blob endpoint, account included, for a storage emulator (Azurite:
/// `http://127.0.0.1:10000/devstoreaccount1`) or a sovereign cloud; object_store's
/// name for it. `http://` is allowed for it.
pub const AZURE_STORAGE_ENDPOINT: &str = "AZURE_STORAGE_ENDPOINT";

/// Region used when none is configured (S3's own default).
const DEFAULT_AWS_REGION: &str = "us-east-1";

/// How to reach and authenticate to one object store. Fields that do not
/// apply to the source's kind are ignored (e.g. `azure_account` for S3).
#[derive(Debug, Clone, Default)]
pub struct ObjectOptions {
    /// S3: a custom endpoint (`http://127.0.0.1:9000`); Azure: the blob
    /// endpoint (Azurite). GCS takes its endpoint from the service account's
    /// `gcs_base_url`, so an endpoint here is refused for `gs://`.
    pub endpoint: Option<String>,
    /// S3 region; `us-east-1` when unset.
    pub region: Option<String>,
    /// S3 access key id.
    pub access_key: Option<Secret>,
    /// S3 secret access key.
    pub secret_key: Option<Secret>,
    /// S3 session token (temporary credentials).
    pub session_token: Option<Secret>,
    /// Allow plain `http://` endpoints (loopback test servers).
    pub allow_http: bool,
    /// GCS: a service-account JSON document.
    pub gcs_service_account_key: Option<Secret>,
    /// GCS: a path to application credentials (service account or authorized user).
    pub gcs_credentials_path: Option<String>,
    /// Azure storage account name.
    pub azure_account: Option<String>,
    /// Azure storage account key.
    pub azure_access_key: Option<Secret>,
    /// The name to tell the user to set when access is denied (an env var or
    /// a secret's name); a default per kind when `None`.
    pub credential_name: Option<String>,
}

/// The secret JSON documents (Baseten Truss `runtime_secret_name` /
/// `auth_secret_name`) that may be named instead of the usual variables.
#[derive(serde::Deserialize)]
struct AwsSecretJson {
    aws_access_key_id: String,
    aws_secret_access_key: String,
    #[serde(default)]
    aws_region: Option<String>,
    #[serde(default)]
    aws_session_token: Option<String>,
}

#[derive(serde::Deserialize)]
struct AzureSecretJson {
    account_key: String,
    #[serde(default)]
    account_name: Option<String>,
}

impl ObjectOptions {
    /// Options from the process environment; see [`ObjectOptions::from_lookup`].
    pub fn from_env(source: &WeightsSource, secret_name: Option<&str>) -> Result<ObjectOptions, WeightsError> {
        ObjectOptions::from_lookup(source, secret_name, &|name| std::env::var(name).ok())
    }

    /// Options from `lookup` (an environment): when `secret_name` is given,
    /// the credential is the JSON document in that variable —
    /// `{"aws_access_key_id", "aws_secret_access_key", "aws_region"?}` for
    /// S3, a service-account JSON for GCS, `{"account_key",
    /// "account_name"?}` for Azure. Otherwise the usual variables
    /// (`AWS_ACCESS_KEY_ID`, …, `GOOGLE_APPLICATION_CREDENTIALS`,
    /// `AZURE_STORAGE_ACCOUNT_KEY`). Endpoint, region and account name are
    /// read from the environment in both cases (a secret's values win).
    pub fn from_lookup(
        source: &WeightsSource,
        secret_name: Option<&str>,
        lookup: &dyn Fn(&str) -> Option<String>,
    ) -> Result<ObjectOptions, WeightsError> {
        let uri = source_uri(source);
        let get = |name: &str| lookup(name).filter(|value| !value.is_empty());
        let secret_text = match secret_name {
            Some(name) => Some(get(name).ok_or_else(|| WeightsError::Protocol {
                source_uri: uri.clone(),
                message: format!("the secret `{name}` is not set (expected an environment variable of that name)"),
            })?),
            None => None,
        };
        let bad_secret = |name: &str, expected: &str, error: serde_json::Error| WeightsError::Protocol {
            source_uri: uri.clone(),
            // serde_json's message names the line and column, never the text.
            message: format!(
                "the secret `{name}` is not {expected} (line {}, column {})",
                error.line(),
                error.column()
            ),
        };
        let mut options = ObjectOptions { credential_name: secret_name.map(str::to_string), ..Default::default() };
        match source {
            WeightsSource::S3 { .. } => {
                options.endpoint = get(AWS_ENDPOINT_URL);
                options.allow_http = options.endpoint.as_deref().is_some_and(|e| e.starts_with("http://"));
                options.region = get(AWS_REGION).or_else(|| get(AWS_DEFAULT_REGION));
                match (secret_name, secret_text) {
                    (Some(name), Some(text)) => {
                        let json: AwsSecretJson = serde_json::from_str(&text).map_err(|error| {
                            bad_secret(name, "JSON with aws_access_key_id and aws_secret_access_key", error)
                        })?;
                        options.access_key = Some(Secret::new(json.aws_access_key_id));
                        options.secret_key = Some(Secret::new(json.aws_secret_access_key));
                        options.session_token = json.aws_session_token.map(Secret::new);
                        options.region = json.aws_region.or(options.region);
                    }
                    _ => {
                        options.access_key = get(AWS_ACCESS_KEY_ID).map(Secret::new);
                        options.secret_key = get(AWS_SECRET_ACCESS_KEY).map(Secret::new);
                        options.session_token = get(AWS_SESSION_TOKEN).map(Secret::new);
                    }
                }
            }
            WeightsSource::Gcs { .. } => match (secret_name, secret_text) {
                (Some(name), Some(text)) => {
                    serde_json::from_str::<serde_json::Value>(&text)
                        .map_err(|error| bad_secret(name, "a service-account JSON document", error))?;
                    options.gcs_service_account_key = Some(Secret::new(text));
                }
                _ => {
                    options.gcs_service_account_key = get(GOOGLE_SERVICE_ACCOUNT_KEY).map(Secret::new);
                    options.gcs_credentials_path =
                        get(GOOGLE_APPLICATION_CREDENTIALS).or_else(|| get(GOOGLE_SERVICE_ACCOUNT));
                }
            },
            WeightsSource::Azure { .. } => {
                options.endpoint = get(AZURE_STORAGE_ENDPOINT);
                options.allow_http = options.endpoint.as_deref().is_some_and(|e| e.starts_with("http://"));
                options.azure_account = get(AZURE_STORAGE_ACCOUNT_NAME);
                match (secret_name, secret_text) {
                    (Some(name), Some(text)) => {
                        let json: AzureSecretJson = serde_json::from_str(&text)
                            .map_err(|error| bad_secret(name, "JSON with account_key", error))?;
                        options.azure_access_key = Some(Secret::new(json.account_key));
                        options.azure_account = json.account_name.or(options.azure_account);
                    }
                    _ => options.azure_access_key = get(AZURE_STORAGE_ACCOUNT_KEY).map(Secret::new),
                }
            }
            _ => return Err(not_an_object_store(source)),
        }
        Ok(options)
    }

    /// Every credential value, to scrub from error texts.
    fn secret_values(&self) -> Vec<String> {
        [&self.access_key, &self.secret_key, &self.session_token, &self.gcs_service_account_key, &self.azure_access_key]
            .into_iter()
            .flatten()
            .map(|secret| secret.expose().to_string())
            .collect()
    }
}

/// What an error needs to say where it happened without leaking anything.
#[derive(Clone)]
struct ErrorContext {
    source_uri: String,
    credential: String,
    secrets: Arc<Vec<String>>,
}

impl ErrorContext {
    fn map(&self, error: object_store::Error) -> WeightsError {
        use object_store::path::Error as PathError;
        let source_uri = self.source_uri.clone();
        match error {
            object_store::Error::NotFound { .. } => WeightsError::NotFound { source_uri },
            object_store::Error::PermissionDenied { .. } => {
                WeightsError::Unauthorized { source_uri, status: 403, credential: self.credential.clone() }
            }
            object_store::Error::Unauthenticated { .. } => {
                WeightsError::Unauthorized { source_uri, status: 401, credential: self.credential.clone() }
            }
            object_store::Error::InvalidPath {
                source: PathError::BadSegment { path, .. } | PathError::EmptySegment { path },
            } => WeightsError::UnsafePath { source_uri, path },
            object_store::Error::Precondition { .. } => WeightsError::Protocol {
                source_uri,
                message: "an object changed since it was listed (its ETag differs); list the source again".to_string(),
            },
            other => {
                let scrubbed = Scrubbed::new(&other, &self.secrets);
                // List requests come back as `Generic` errors whatever the
                // status (object_store keeps its retry error private), so
                // the status is read from the text: "status code: 404 …".
                match scrubbed.status() {
                    Some(404) => WeightsError::NotFound { source_uri },
                    Some(status @ (401 | 403)) => {
                        WeightsError::Unauthorized { source_uri, status, credential: self.credential.clone() }
                    }
                    _ => WeightsError::Http { source_uri, source: Box::new(scrubbed) },
                }
            }
        }
    }

    fn io(&self, error: object_store::Error) -> io::Error {
        io::Error::other(self.map(error))
    }
}

/// object_store retries inside each request (5xx, 429, connection errors;
/// its own jitter, no `Retry-After`); it gets the shared policy's tries and
/// backoff, so that an object store gives up when the hub and a registry do.
fn retry_config() -> object_store::RetryConfig {
    let policy = crate::plumbing::retry::RetryPolicy::default();
    object_store::RetryConfig {
        backoff: object_store::BackoffConfig {
            init_backoff: policy.first_delay,
            max_backoff: policy.max_delay,
            base: 2.0,
        },
        max_retries: policy.attempts.saturating_sub(1) as usize,
        retry_timeout: std::time::Duration::from_secs(3 * 60),
    }
}

/// An error's text (with its causes) with every credential value replaced
/// by `***`. The original error is dropped: its Display is not ours to trust.
#[derive(Debug)]
struct Scrubbed(String);

impl Scrubbed {
    fn new(error: &(dyn std::error::Error + 'static), secrets: &[String]) -> Scrubbed {
        let mut text = crate::plumbing::errors::one_line(error);
        for secret in secrets.iter().filter(|s| !s.is_empty()) {
            text = text.replace(secret.as_str(), "***");
        }
        Scrubbed(text)
    }
}

impl Scrubbed {
    /// The HTTP status the store answered with, when the text gives it.
    fn status(&self) -> Option<u16> {
        const MARKER: &str = "status code: ";
        let at = self.0.find(MARKER)? + MARKER.len();
        self.0.get(at..at + 3)?.parse().ok()
    }
}

impl std::fmt::Display for Scrubbed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for Scrubbed {}

/// An S3 bucket, GCS bucket or Azure container, narrowed to a prefix.
pub struct ObjectSource {
    runtime: Arc<Runtime>,
    store: Arc<dyn ObjectStore>,
    /// `s3`, `gs` or `az`: the scheme of the objects' URLs.
    scheme: &'static str,
    bucket: String,
    /// Without leading or trailing `/`; empty for the whole bucket.
    prefix: String,
    context: ErrorContext,
}

impl std::fmt::Debug for ObjectSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectSource").field("uri", &self.context.source_uri).finish_non_exhaustive()
    }
}

impl ObjectSource {
    /// A source whose credentials come from the environment or from the
    /// secret named by the weights entry ([`ObjectOptions::from_env`]).
    pub fn new(source: &WeightsSource, secret_name: Option<&str>) -> Result<ObjectSource, WeightsError> {
        ObjectSource::with_options(source, ObjectOptions::from_env(source, secret_name)?)
    }

    /// A source with explicit options; reads no environment variable.
    pub fn with_options(source: &WeightsSource, options: ObjectOptions) -> Result<ObjectSource, WeightsError> {
        let uri = source_uri(source);
        let secrets = Arc::new(options.secret_values());
        let config_error = |error: object_store::Error| WeightsError::Protocol {
            source_uri: uri.clone(),
            message: format!("bad object store settings: {}", Scrubbed::new(&error, &secrets)),
        };
        let (scheme, bucket, prefix, default_credential, store): (_, _, _, _, Arc<dyn ObjectStore>) = match source {
            WeightsSource::S3 { bucket, prefix } => {
                let mut builder = object_store::aws::AmazonS3Builder::new()
                    .with_bucket_name(bucket)
                    .with_region(options.region.as_deref().unwrap_or(DEFAULT_AWS_REGION))
                    .with_allow_http(options.allow_http)
                    .with_retry(retry_config());
                if let Some(endpoint) = &options.endpoint {
                    builder = builder.with_endpoint(endpoint);
                }
                if let Some(key) = &options.access_key {
                    builder = builder.with_access_key_id(key.expose());
                }
                if let Some(key) = &options.secret_key {
                    builder = builder.with_secret_access_key(key.expose());
                }
                if let Some(token) = &options.session_token {
                    builder = builder.with_token(token.expose());
                }
                let store = builder.build().map_err(config_error)?;
                ("s3", bucket, prefix, "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY", Arc::new(store))
            }
            WeightsSource::Gcs { bucket, prefix } => {
                if options.endpoint.is_some() {
                    return Err(WeightsError::Protocol {
                        source_uri: uri,
                        message:
                            "an endpoint is not supported for gs://; put `gcs_base_url` in the service account JSON"
                                .to_string(),
                    });
                }
                // A `gcs_base_url` on plain http (an emulator on loopback) must be allowed explicitly.
                let key_text = match (&options.gcs_service_account_key, &options.gcs_credentials_path) {
                    (Some(key), _) => Some(key.expose().to_string()),
                    (None, Some(path)) => std::fs::read_to_string(path).ok(),
                    (None, None) => None,
                };
                let http_base = key_text
                    .and_then(|text| serde_json::from_str::<serde_json::Value>(&text).ok())
                    .and_then(|json| json.get("gcs_base_url").and_then(|url| url.as_str().map(str::to_string)))
                    .is_some_and(|url| url.starts_with("http://"));
                let mut builder = object_store::gcp::GoogleCloudStorageBuilder::new()
                    .with_bucket_name(bucket)
                    .with_client_options(object_store::ClientOptions::new().with_allow_http(http_base))
                    .with_retry(retry_config());
                if let Some(key) = &options.gcs_service_account_key {
                    builder = builder.with_service_account_key(key.expose());
                } else if let Some(path) = &options.gcs_credentials_path {
                    builder = builder.with_application_credentials(path);
                }
                let store = builder.build().map_err(config_error)?;
                ("gs", bucket, prefix, GOOGLE_APPLICATION_CREDENTIALS, Arc::new(store))
            }
            WeightsSource::Azure { container, prefix } => {
                let account = options.azure_account.as_deref().ok_or_else(|| WeightsError::Protocol {
                    source_uri: uri.clone(),
                    message: format!(
                        "no Azure storage account: set {AZURE_STORAGE_ACCOUNT_NAME} (or `account_name` in the secret)"
                    ),
                })?;
                let mut builder = object_store::azure::MicrosoftAzureBuilder::new()
                    .with_account(account)
                    .with_container_name(container)
                    .with_allow_http(options.allow_http)
                    .with_retry(retry_config());
                if let Some(endpoint) = &options.endpoint {
                    builder = builder.with_endpoint(endpoint.clone());
                }
                if let Some(key) = &options.azure_access_key {
                    builder = builder.with_access_key(key.expose());
                }
                let store = builder.build().map_err(config_error)?;
                ("az", container, prefix, AZURE_STORAGE_ACCOUNT_KEY, Arc::new(store))
            }
            _ => return Err(not_an_object_store(source)),
        };
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|error| WeightsError::Http { source_uri: uri.clone(), source: Box::new(error) })?;
        let credential = options.credential_name.clone().unwrap_or_else(|| default_credential.to_string());
        Ok(ObjectSource {
            runtime: Arc::new(runtime),
            store,
            scheme,
            bucket: bucket.clone(),
            prefix: prefix.trim_matches('/').to_string(),
            context: ErrorContext { source_uri: uri, credential, secrets },
        })
    }

    /// The source as a URI (`s3://bucket/prefix`).
    pub fn uri(&self) -> &str {
        &self.context.source_uri
    }

    /// Every object under the prefix (recursively) that the patterns select,
    /// sorted by path relative to the prefix. When the prefix is not a
    /// folder but one object, that object is the listing (path = its last
    /// segment). Zero-byte "folder marker" objects (`dir/`) are skipped.
    pub fn list(&self, allow: &[String], ignore: &[String], uri: &str) -> Result<Listing, WeightsError> {
        let filter = PathFilter::new(allow, ignore)
            .map_err(|message| WeightsError::Protocol { source_uri: uri.to_string(), message })?;
        let objects = self.list_objects()?;
        let mut entries: Vec<(String, ObjectMeta)> = Vec::with_capacity(objects.len());
        for meta in objects {
            let key = meta.location.as_ref();
            let relative = if self.prefix.is_empty() {
                key.to_string()
            } else if key == self.prefix {
                // The folder's own marker object (`prefix/`, parsed without its slash).
                continue;
            } else {
                match key.strip_prefix(&self.prefix).and_then(|rest| rest.strip_prefix('/')) {
                    Some(rest) => rest.to_string(),
                    None => continue,
                }
            };
            if !safe_relative_path(&relative) {
                return Err(WeightsError::UnsafePath { source_uri: uri.to_string(), path: relative });
            }
            entries.push((relative, meta));
        }
        if entries.is_empty() && !self.prefix.is_empty() {
            if let Some(meta) = self.head_prefix()? {
                let name = self.prefix.rsplit('/').next().unwrap_or(&self.prefix).to_string();
                entries.push((name, meta));
            }
        }
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        // `dir/` markers below the prefix: zero bytes, and a folder of that name exists.
        let is_folder = |path: &str| {
            let folder = format!("{path}/");
            entries.iter().any(|(other, _)| other.starts_with(&folder))
        };
        let files: Vec<RemoteFile> = entries
            .iter()
            .filter(|(path, meta)| !(meta.size == 0 && is_folder(path)))
            .filter(|(path, _)| filter.matches(path))
            .map(|(path, meta)| RemoteFile {
                path: path.clone(),
                size: meta.size,
                sha256: None,
                etag: meta.e_tag.clone(),
                url: format!("{}://{}/{}", self.scheme, self.bucket, meta.location.as_ref()),
            })
            .collect();
        if files.is_empty() {
            return Err(WeightsError::Empty {
                source_uri: uri.to_string(),
                allow: allow.to_vec(),
                ignore: ignore.to_vec(),
            });
        }
        Ok(Listing { uri: uri.to_string(), revision: None, files })
    }

    /// A stream of the object's bytes: ranged GETs of [`READ_RANGE_SIZE`],
    /// each streamed, each pinned to the listed ETag (`If-Match`). Memory
    /// stays at a few network chunks whatever the object's size. Errors are
    /// `io::Error`s wrapping a [`WeightsError`]; a short object is `UnexpectedEof`.
    pub fn open(&self, file: &RemoteFile) -> Result<FileReader, WeightsError> {
        let location = self.location_of(file)?;
        Ok(Box::new(ObjectReader {
            runtime: self.runtime.clone(),
            store: self.store.clone(),
            location,
            etag: file.etag.clone(),
            size: file.size,
            requested_until: 0,
            range_end: 0,
            position: 0,
            stream: None,
            chunk: Bytes::new(),
            context: self.context.clone(),
        }))
    }

    /// A stream of bytes `start..end` of the object (ranged GETs of at most
    /// [`READ_RANGE_SIZE`], pinned to the listed ETag); for the prefetch
    /// hook's parallel, resumable downloads. A short object is `UnexpectedEof`.
    pub fn open_range(&self, file: &RemoteFile, start: u64, end: u64) -> Result<FileReader, WeightsError> {
        if start > end || end > file.size {
            return Err(WeightsError::Protocol {
                source_uri: self.context.source_uri.clone(),
                message: format!("range {start}..{end} is outside `{}` ({} bytes)", file.path, file.size),
            });
        }
        let location = self.location_of(file)?;
        Ok(Box::new(ObjectReader {
            runtime: self.runtime.clone(),
            store: self.store.clone(),
            location,
            etag: file.etag.clone(),
            size: end,
            requested_until: start,
            range_end: start,
            position: start,
            stream: None,
            chunk: Bytes::new(),
            context: self.context.clone(),
        }))
    }

    /// `len` bytes from `start`, in one request pinned to the listed ETag;
    /// for parallel downloads. The range must lie inside the file.
    pub fn read_range(&self, file: &RemoteFile, start: u64, len: u64) -> Result<Vec<u8>, WeightsError> {
        let end = start.checked_add(len).filter(|end| *end <= file.size && len > 0).ok_or_else(|| {
            WeightsError::Protocol {
                source_uri: self.context.source_uri.clone(),
                message: format!("range {start}+{len} is outside `{}` ({} bytes)", file.path, file.size),
            }
        })?;
        let location = self.location_of(file)?;
        let options = range_options(&file.etag, start..end);
        let bytes = self
            .runtime
            .block_on(async {
                let result = self.store.get_opts(&location, options).await?;
                result.bytes().await
            })
            .map_err(|error| self.context.map(error))?;
        if bytes.len() as u64 != len {
            return Err(WeightsError::Protocol {
                source_uri: self.context.source_uri.clone(),
                message: format!("asked for {len} bytes of `{}`, got {}", file.path, bytes.len()),
            });
        }
        Ok(bytes.to_vec())
    }

    fn list_objects(&self) -> Result<Vec<ObjectMeta>, WeightsError> {
        let prefix = self.prefix_path()?;
        let stream = self.store.list(prefix.as_ref());
        self.runtime.block_on(stream.try_collect::<Vec<_>>()).map_err(|error| self.context.map(error))
    }

    /// The object named by the prefix itself, if there is one.
    fn head_prefix(&self) -> Result<Option<ObjectMeta>, WeightsError> {
        let Some(path) = self.prefix_path()? else { return Ok(None) };
        match self.runtime.block_on(self.store.head(&path)) {
            Ok(meta) => Ok(Some(meta)),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(error) => Err(self.context.map(error)),
        }
    }

    fn prefix_path(&self) -> Result<Option<StorePath>, WeightsError> {
        if self.prefix.is_empty() {
            return Ok(None);
        }
        StorePath::parse(&self.prefix).map(Some).map_err(|_| WeightsError::UnsafePath {
            source_uri: self.context.source_uri.clone(),
            path: self.prefix.clone(),
        })
    }

    /// The object key of a file this source listed.
    fn location_of(&self, file: &RemoteFile) -> Result<StorePath, WeightsError> {
        let base = format!("{}://{}/", self.scheme, self.bucket);
        let key = file.url.strip_prefix(&base).ok_or_else(|| WeightsError::Protocol {
            source_uri: self.context.source_uri.clone(),
            message: format!("`{}` is not an object of {base}", file.url),
        })?;
        StorePath::parse(key).map_err(|_| WeightsError::UnsafePath {
            source_uri: self.context.source_uri.clone(),
            path: key.to_string(),
        })
    }
}

fn range_options(etag: &Option<String>, range: std::ops::Range<u64>) -> GetOptions {
    GetOptions { if_match: etag.clone(), range: Some(GetRange::Bounded(range)), ..Default::default() }
}

/// A blocking `Read` over ranged, streamed GETs. Each `read` drives the
/// shared runtime just long enough to get the next network chunk.
struct ObjectReader {
    runtime: Arc<Runtime>,
    store: Arc<dyn ObjectStore>,
    location: StorePath,
    etag: Option<String>,
    size: u64,
    /// End of the ranges requested so far.
    requested_until: u64,
    /// End of the range being streamed.
    range_end: u64,
    /// Bytes handed out so far.
    position: u64,
    stream: Option<BoxStream<'static, object_store::Result<Bytes>>>,
    chunk: Bytes,
    context: ErrorContext,
}

impl Read for ObjectReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        loop {
            if !self.chunk.is_empty() {
                let n = buf.len().min(self.chunk.len());
                buf[..n].copy_from_slice(&self.chunk.split_to(n));
                self.position += n as u64;
                return Ok(n);
            }
            if let Some(stream) = self.stream.as_mut() {
                match self.runtime.block_on(stream.next()) {
                    Some(Ok(bytes)) => {
                        let room = self.range_end - self.position;
                        if bytes.len() as u64 > room {
                            return Err(io::Error::other(WeightsError::Protocol {
                                source_uri: self.context.source_uri.clone(),
                                message: format!("`{}` sent more bytes than the range asked for", self.location),
                            }));
                        }
                        self.chunk = bytes;
                        continue;
                    }
                    Some(Err(error)) => return Err(self.context.io(error)),
                    None => {
                        self.stream = None;
                        if self.position != self.range_end {
                            return Err(io::Error::new(
                                io::ErrorKind::UnexpectedEof,
                                format!(
                                    "{}: `{}` ended at byte {} of {}",
                                    self.context.source_uri, self.location, self.position, self.size
                                ),
                            ));
                        }
                        continue;
                    }
                }
            }
            if self.requested_until >= self.size {
                return Ok(0);
            }
            let start = self.requested_until;
            let end = self.size.min(start + READ_RANGE_SIZE);
            let options = range_options(&self.etag, start..end);
            let store = self.store.clone();
            let location = self.location.clone();
            let result = self.runtime.block_on(async move { store.get_opts(&location, options).await });
            let result = result.map_err(|error| self.context.io(error))?;
            self.stream = Some(result.into_stream());
            self.requested_until = end;
            self.range_end = end;
        }
    }
}

/// The source as the user would write it.
pub fn source_uri(source: &WeightsSource) -> String {
    let join = |scheme: &str, bucket: &str, prefix: &str| {
        let prefix = prefix.trim_matches('/');
        if prefix.is_empty() {
            format!("{scheme}://{bucket}")
        } else {
            format!("{scheme}://{bucket}/{prefix}")
        }
    };
    match source {
        WeightsSource::S3 { bucket, prefix } => join("s3", bucket, prefix),
        WeightsSource::Gcs { bucket, prefix } => join("gs", bucket, prefix),
        WeightsSource::Azure { container, prefix } => join("az", container, prefix),
        WeightsSource::Https { url } => url.clone(),
        WeightsSource::Hf { repo, revision } => format!("hf://{repo}@{revision}"),
        WeightsSource::Local { path } => path.display().to_string(),
    }
}

fn not_an_object_store(source: &WeightsSource) -> WeightsError {
    WeightsError::Protocol {
        source_uri: source_uri(source),
        message: "not an object store source (expected s3://, gs:// or azure://)".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    fn s3() -> WeightsSource {
        WeightsSource::S3 { bucket: "b".into(), prefix: "models/llama/".into() }
    }

    #[test]
    fn s3_options_come_from_the_usual_variables() {
        let env = lookup(&[
            (AWS_ACCESS_KEY_ID, "AKIAEXAMPLE"),
            (AWS_SECRET_ACCESS_KEY, "s3cr3t-value"),
            (AWS_DEFAULT_REGION, "eu-west-1"),
            (AWS_ENDPOINT_URL, "http://127.0.0.1:5000"),
        ]);
        let options = ObjectOptions::from_lookup(&s3(), None, &env).unwrap();
        assert_eq!(options.access_key.as_ref().map(Secret::expose), Some("AKIAEXAMPLE"));
        assert_eq!(options.region.as_deref(), Some("eu-west-1"));
        assert!(options.allow_http);
        let debug = format!("{options:?}");
        assert!(!debug.contains("s3cr3t-value") && !debug.contains("AKIAEXAMPLE"), "{debug}");
    }

    #[test]
    fn a_named_secret_holds_truss_json_and_is_never_quoted() {
        let json =
            r#"{"aws_access_key_id": "AKIAJSON", "aws_secret_access_key": "json-secret", "aws_region": "us-west-2"}"#;
        let env = lookup(&[("aws_secret_json", json), (AWS_ACCESS_KEY_ID, "AKIAENV"), (AWS_REGION, "eu-west-1")]);
        let options = ObjectOptions::from_lookup(&s3(), Some("aws_secret_json"), &env).unwrap();
        assert_eq!(options.access_key.as_ref().map(Secret::expose), Some("AKIAJSON"));
        assert_eq!(options.secret_key.as_ref().map(Secret::expose), Some("json-secret"));
        assert_eq!(options.region.as_deref(), Some("us-west-2"));
        assert_eq!(options.credential_name.as_deref(), Some("aws_secret_json"));

        let env = lookup(&[("aws_secret_json", "{\"aws_access_key_id\": \"AKIAHALF\"}")]);
        let error = ObjectOptions::from_lookup(&s3(), Some("aws_secret_json"), &env).unwrap_err().to_string();
        assert!(error.contains("aws_secret_json") && !error.contains("AKIAHALF"), "{error}");

        let error = ObjectOptions::from_lookup(&s3(), Some("missing"), &lookup(&[])).unwrap_err().to_string();
        assert!(error.contains("`missing` is not set"), "{error}");
    }

    #[test]
    fn gcs_and_azure_secrets() {
        let gcs = WeightsSource::Gcs { bucket: "b".into(), prefix: "".into() };
        let env = lookup(&[("gcs_service_account", r#"{"type": "service_account"}"#)]);
        let options = ObjectOptions::from_lookup(&gcs, Some("gcs_service_account"), &env).unwrap();
        assert!(options.gcs_service_account_key.is_some());
        let env = lookup(&[(GOOGLE_APPLICATION_CREDENTIALS, "/k.json")]);
        assert_eq!(
            ObjectOptions::from_lookup(&gcs, None, &env).unwrap().gcs_credentials_path.as_deref(),
            Some("/k.json")
        );

        let azure = WeightsSource::Azure { container: "c".into(), prefix: "p".into() };
        let env = lookup(&[("azure_secret_json", r#"{"account_key": "a2V5"}"#), (AZURE_STORAGE_ACCOUNT_NAME, "acct")]);
        let options = ObjectOptions::from_lookup(&azure, Some("azure_secret_json"), &env).unwrap();
        assert_eq!(options.azure_access_key.as_ref().map(Secret::expose), Some("a2V5"));
        assert_eq!(options.azure_account.as_deref(), Some("acct"));
    }

    #[test]
    fn scrubbed_errors_hide_every_secret() {
        let error = io::Error::other("SignatureDoesNotMatch for AKIAX with key s3cr3t");
        let text = Scrubbed::new(&error, &["AKIAX".to_string(), "s3cr3t".to_string()]).to_string();
        assert_eq!(text, "SignatureDoesNotMatch for *** with key ***");
        let error =
            io::Error::other("Error performing GET http://h/b - Server returned non-2xx status code: 403 Forbidden");
        assert_eq!(Scrubbed::new(&error, &[]).status(), Some(403));
    }

    #[test]
    fn sources_are_built_without_network() {
        let options = ObjectOptions {
            endpoint: Some("http://127.0.0.1:9".into()),
            access_key: Some(Secret::new("k".into())),
            secret_key: Some(Secret::new("s".into())),
            allow_http: true,
            ..Default::default()
        };
        let source = ObjectSource::with_options(&s3(), options).unwrap();
        assert_eq!(source.uri(), "s3://b/models/llama");
        let azure = WeightsSource::Azure { container: "c".into(), prefix: "".into() };
        let error = ObjectSource::with_options(&azure, ObjectOptions::default()).unwrap_err().to_string();
        assert!(error.contains(AZURE_STORAGE_ACCOUNT_NAME), "{error}");
    }
}
