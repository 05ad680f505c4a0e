//! Hugging Face hub source: pin a revision to its commit, list the selected
//! files with their sizes and hashes, and stream them.
//!
//! It speaks the hub's HTTP protocol as `huggingface_hub` does:
//! `GET /api/models/{repo}/revision/{rev}` for the commit and file names, then
//! one `HEAD /{repo}/resolve/{commit}/{path}` per file without following
//! redirects (LFS files answer with a 302 to a CDN; their size and sha256 are
//! on that 302 as `X-Linked-Size` / `X-Linked-Etag`). Downloads follow the
//! redirect, and the token is dropped when it leads to another origin.
//!
//! The token is only ever put in an `Authorization` header marked sensitive;
//! errors name the credential (the env var), never its value.

use super::filter::PathFilter;
use super::{safe_relative_path, FileReader, Listing, RemoteFile, Secret, WeightsError};
use crate::image::digest::Digest;
use crate::plumbing::retry::{self, RetryPolicy};
use crate::spec::{WeightsEntry, WeightsSource};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_LENGTH, ETAG};
use reqwest::StatusCode;
use sha2::{Digest as _, Sha256};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;
use std::time::Duration;

/// Overrides the hub URL (as for `huggingface_hub`).
pub const HF_ENDPOINT_ENV: &str = "HF_ENDPOINT";
/// The token when the entry names no credential of its own (or it is unset).
pub const HF_TOKEN_ENV: &str = "HF_TOKEN";
/// The older name `huggingface_hub` still reads.
pub const HF_TOKEN_LEGACY_ENV: &str = "HUGGING_FACE_HUB_TOKEN";
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Concurrent HEAD requests when listing (repos have hundreds of files).
const HEAD_THREADS: usize = 8;
/// Tries for one request on 5xx, 429 and connection errors.
const RETRY: RetryPolicy = RetryPolicy {
    attempts: 4,
    first_delay: Duration::from_millis(250),
    max_delay: Duration::from_secs(2),
    max_retry_after: Duration::from_secs(60),
};
/// Per connect / send / read; a stalled transfer fails instead of hanging.
const IO_TIMEOUT: Duration = Duration::from_secs(60);
const COPY_BUFFER: usize = 256 * 1024;

const X_REPO_COMMIT: &str = "X-Repo-Commit";
const X_LINKED_ETAG: &str = "X-Linked-Etag";
const X_LINKED_SIZE: &str = "X-Linked-Size";
const X_ERROR_CODE: &str = "X-Error-Code";

/// The credential for an entry: its own named env var, else `HF_TOKEN`, else
/// `HUGGING_FACE_HUB_TOKEN`.
pub fn token_for(secret_name: Option<&str>) -> Option<Secret> {
    let mut names: Vec<&str> = secret_name.into_iter().collect();
    names.extend([HF_TOKEN_ENV, HF_TOKEN_LEGACY_ENV]);
    Secret::from_env(&names)
}

/// The name to show in "set the credential named …": the entry's own, else `HF_TOKEN`.
pub fn credential_name(secret_name: Option<&str>) -> String {
    secret_name.unwrap_or(HF_TOKEN_ENV).to_string()
}

/// A client for one hub endpoint and one credential.
#[derive(Debug, Clone)]
pub struct HfClient {
    endpoint: String,
    token: Option<Secret>,
    credential: String,
    /// Never follows redirects: metadata is read from the hub's own answer.
    metadata_http: Client,
    /// Follows redirects (reqwest drops Authorization on a change of origin).
    download_http: Client,
}

impl HfClient {
    /// `endpoint` defaults to `$HF_ENDPOINT`, else `https://huggingface.co`.
    pub fn new(endpoint: Option<String>, token: Option<Secret>) -> HfClient {
        let endpoint = endpoint
            .or_else(|| std::env::var(HF_ENDPOINT_ENV).ok().filter(|v| !v.is_empty()))
            .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());
        let builder = || crate::plumbing::http::blocking(IO_TIMEOUT, IO_TIMEOUT);
        HfClient {
            endpoint: endpoint.trim_end_matches('/').to_string(),
            token,
            credential: HF_TOKEN_ENV.to_string(),
            metadata_http: builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("TLS backend initialises"),
            download_http: builder().build().expect("TLS backend initialises"),
        }
    }

    /// For a config entry: its credential (see [`token_for`]) and `$HF_ENDPOINT`.
    pub fn for_entry(entry: &WeightsEntry) -> HfClient {
        let secret = entry.secret.as_deref();
        HfClient::new(None, token_for(secret)).with_credential_name(&credential_name(secret))
    }

    /// The env var named in "access denied" errors (default `HF_TOKEN`).
    pub fn with_credential_name(mut self, name: &str) -> HfClient {
        self.credential = name.to_string();
        self
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Lists an `hf` entry of the config (other kinds are a caller bug → `Protocol`).
    pub fn list_entry(&self, entry: &WeightsEntry) -> Result<Listing, WeightsError> {
        match &entry.source {
            WeightsSource::Hf { repo, revision } => {
                self.list(repo, revision, &entry.allow_patterns, &entry.ignore_patterns, &entry.uri)
            }
            _ => Err(WeightsError::Protocol {
                source_uri: entry.uri.clone(),
                message: "not a Hugging Face source".to_string(),
            }),
        }
    }

    /// Every file of `repo` at `revision` (branch, tag or commit) that the
    /// patterns select, pinned to the commit, with sizes and hashes. A branch
    /// comes back pinned: `Listing.revision` is the commit.
    pub fn list(
        &self,
        repo: &str,
        revision: &str,
        allow: &[String],
        ignore: &[String],
        uri: &str,
    ) -> Result<Listing, WeightsError> {
        let protocol = |message: String| WeightsError::Protocol { source_uri: uri.to_string(), message };
        if !valid_repo_id(repo) {
            return Err(protocol(format!("`{repo}` is not a Hugging Face repo id (`org/name`)")));
        }
        let filter = PathFilter::new(allow, ignore).map_err(protocol)?;

        let url = format!("{}/api/models/{repo}/revision/{}", self.endpoint, quote(revision, false));
        let response = self.send(uri, || self.metadata_http.get(&url))?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(self.not_found(repo, revision, uri, &response));
        }
        let response = self.check_status(uri, response)?;
        let body = response.bytes().map_err(|err| protocol(format!("unexpected answer from {url}: {err}")))?;
        let (commit, paths) = revision_listing(&body, revision, &filter, uri).map_err(|error| match error {
            WeightsError::Protocol { source_uri, message } => {
                WeightsError::Protocol { source_uri, message: format!("{message} (from {url})") }
            }
            other => other,
        })?;
        if paths.is_empty() {
            return Err(WeightsError::Empty {
                source_uri: uri.to_string(),
                allow: allow.to_vec(),
                ignore: ignore.to_vec(),
            });
        }

        let mut files = self.head_all(repo, &commit, &paths, uri)?;
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Listing { uri: uri.to_string(), revision: Some(commit), files })
    }

    /// HEADs every path with a few threads; the first error (in path order) wins.
    fn head_all(&self, repo: &str, commit: &str, paths: &[String], uri: &str) -> Result<Vec<RemoteFile>, WeightsError> {
        let next = AtomicUsize::new(0);
        let results: Mutex<Vec<Option<Result<RemoteFile, WeightsError>>>> =
            Mutex::new((0..paths.len()).map(|_| None).collect());
        std::thread::scope(|scope| {
            for _ in 0..HEAD_THREADS.min(paths.len()) {
                scope.spawn(|| loop {
                    let index = next.fetch_add(1, Ordering::Relaxed);
                    let Some(path) = paths.get(index) else { break };
                    let result = self.head(repo, commit, path, uri);
                    let failed = result.is_err();
                    results.lock().expect("no thread panics holding the lock")[index] = Some(result);
                    if failed {
                        // Stop handing out work; the others finish their current file.
                        next.store(paths.len(), Ordering::Relaxed);
                    }
                });
            }
        });
        results.into_inner().expect("no thread panics holding the lock").into_iter().flatten().collect()
    }

    fn head(&self, repo: &str, commit: &str, path: &str, uri: &str) -> Result<RemoteFile, WeightsError> {
        let url = format!("{}/{repo}/resolve/{commit}/{}", self.endpoint, quote(path, true));
        let protocol = |message: String| WeightsError::Protocol { source_uri: uri.to_string(), message };
        let response = self.send(uri, || self.metadata_http.head(&url).header("Accept-Encoding", "identity"))?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(protocol(format!("`{path}` is listed at {commit} but its file is not found")));
        }
        let response = self.check_status(uri, response)?;
        let headers = response.headers();
        match header(headers, X_REPO_COMMIT) {
            Some(answered) if answered == commit => {}
            Some(answered) => {
                return Err(protocol(format!("`{path}`: the hub served commit {answered}, not {commit}")))
            }
            None => {
                return Err(protocol(format!(
                    "`{path}`: no {X_REPO_COMMIT} header; is the endpoint a Hugging Face hub?"
                )))
            }
        }
        let size = header(headers, X_LINKED_SIZE)
            .or_else(
                || if response.status().is_redirection() { None } else { header(headers, CONTENT_LENGTH.as_str()) },
            )
            .ok_or_else(|| protocol(format!("`{path}`: the hub gave no size")))?;
        let size: u64 = size.parse().map_err(|_| protocol(format!("`{path}`: bad size `{size}`")))?;
        let etag = header(headers, X_LINKED_ETAG).or_else(|| header(headers, ETAG.as_str())).map(normalize_etag);
        let sha256 = match &etag {
            Some(etag) if etag.len() == 64 && etag.bytes().all(|b| b.is_ascii_hexdigit()) => Some(
                format!("sha256:{}", etag.to_ascii_lowercase())
                    .parse::<Digest>()
                    .map_err(|err| protocol(err.to_string()))?,
            ),
            _ => None,
        };
        Ok(RemoteFile { path: path.to_string(), size, sha256, etag, url })
    }

    /// A stream of the file's bytes (redirects followed; no check of content).
    pub fn open(&self, file: &RemoteFile) -> Result<FileReader, WeightsError> {
        let response = self.send(&file.url, || self.download_http.get(&file.url))?;
        if response.status() == StatusCode::NOT_FOUND {
            return Err(WeightsError::NotFound { source_uri: file.url.clone() });
        }
        let response = self.check_status(&file.url, response)?;
        Ok(Box::new(response))
    }

    /// Streams the file to `dest` through `dest.partial`, hashing as bytes
    /// arrive; checks the size and (when the listing has it) the sha256, then
    /// fsyncs and renames. On any failure nothing is left at `dest` or
    /// `dest.partial`. Returns the content's sha256.
    pub fn download_to(&self, file: &RemoteFile, dest: &Path) -> Result<Digest, WeightsError> {
        let partial = partial_path(dest);
        let result = self.download_partial(file, &partial).and_then(|digest| {
            fs::rename(&partial, dest).map_err(|err| io_error(&file.url, err))?;
            crate::plumbing::fs::sync_parent(dest);
            Ok(digest)
        });
        if result.is_err() {
            let _ = fs::remove_file(&partial);
        }
        result
    }

    fn download_partial(&self, file: &RemoteFile, partial: &Path) -> Result<Digest, WeightsError> {
        let mismatch = |message: String| WeightsError::Protocol { source_uri: file.url.clone(), message };
        if let Some(parent) = partial.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|err| io_error(&file.url, err))?;
        }
        let mut reader = self.open(file)?;
        let mut out = File::create(partial).map_err(|err| io_error(&file.url, err))?;
        let mut hasher = Sha256::new();
        let mut buffer = vec![0u8; COPY_BUFFER];
        let mut written: u64 = 0;
        loop {
            let n = match reader.read(&mut buffer) {
                Ok(0) => break,
                Ok(n) => n,
                Err(err) if err.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(err) => return Err(io_error(&file.url, err)),
            };
            written += n as u64;
            if written > file.size {
                return Err(mismatch(format!("`{}`: more than the listed {} bytes arrived", file.path, file.size)));
            }
            hasher.update(&buffer[..n]);
            out.write_all(&buffer[..n]).map_err(|err| io_error(&file.url, err))?;
        }
        if written != file.size {
            return Err(mismatch(format!("`{}`: {written} bytes arrived, the listing says {}", file.path, file.size)));
        }
        let digest = Digest::from_sha256_bytes(&hasher.finalize());
        if let Some(expected) = &file.sha256 {
            if *expected != digest {
                return Err(mismatch(format!("`{}`: content is {digest}, the hub vouches for {expected}", file.path)));
            }
        }
        out.sync_all().map_err(|err| io_error(&file.url, err))?;
        Ok(digest)
    }

    /// Sends with the token, retrying what the shared policy retries.
    fn send(&self, uri: &str, request: impl Fn() -> RequestBuilder) -> Result<Response, WeightsError> {
        let mut failures = 0;
        loop {
            let mut builder = request();
            if let Some(token) = &self.token {
                let mut value =
                    reqwest::header::HeaderValue::try_from(format!("Bearer {}", token.expose())).map_err(|_| {
                        WeightsError::Protocol {
                            source_uri: uri.to_string(),
                            message: format!(
                                "the credential {} holds characters not allowed in a header",
                                self.credential
                            ),
                        }
                    })?;
                value.set_sensitive(true);
                builder = builder.header(AUTHORIZATION, value);
            }
            failures += 1;
            match builder.send() {
                Ok(response) if retry::retryable_status(response.status().as_u16()) => {
                    match RETRY.next_delay(failures, retry::retry_after(response.headers())) {
                        Ok(delay) => std::thread::sleep(delay),
                        Err(_) => return Ok(response),
                    }
                }
                Ok(response) => return Ok(response),
                Err(err) => match RETRY.next_delay(failures, None) {
                    Ok(delay) if retry::transient(&err) => std::thread::sleep(delay),
                    _ => return Err(WeightsError::Http { source_uri: uri.to_string(), source: Box::new(err) }),
                },
            }
        }
    }

    /// 401/403 → Unauthorized (naming the credential), other failures → Http.
    fn check_status(&self, uri: &str, response: Response) -> Result<Response, WeightsError> {
        let status = response.status();
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            return Err(WeightsError::Unauthorized {
                source_uri: uri.to_string(),
                status: status.as_u16(),
                credential: self.credential.clone(),
            });
        }
        response
            .error_for_status()
            .map_err(|err| WeightsError::Http { source_uri: uri.to_string(), source: Box::new(err) })
    }

    /// A 404 from the revision API: the revision is missing if the repo exists.
    fn not_found(&self, repo: &str, revision: &str, uri: &str, response: &Response) -> WeightsError {
        let revision_missing =
            WeightsError::RevisionNotFound { source_uri: uri.to_string(), revision: revision.to_string() };
        let repo_missing = WeightsError::NotFound { source_uri: uri.to_string() };
        match header(response.headers(), X_ERROR_CODE).as_deref() {
            Some("RevisionNotFound") => revision_missing,
            Some("RepoNotFound") => repo_missing,
            // No error code (a proxy, an older hub): ask whether the repo exists.
            _ => {
                let url = format!("{}/api/models/{repo}", self.endpoint);
                match self.send(uri, || self.metadata_http.get(&url)) {
                    Ok(response) if response.status().is_success() => revision_missing,
                    _ => repo_missing,
                }
            }
        }
    }
}

/// The commit and the selected file paths (sorted, unique) of the hub's
/// answer to `/api/models/{repo}/revision/{revision}`; a path that could
/// escape the download directory is refused.
pub fn revision_listing(
    body: &[u8],
    revision: &str,
    filter: &PathFilter,
    uri: &str,
) -> Result<(String, Vec<String>), WeightsError> {
    let protocol = |message: String| WeightsError::Protocol { source_uri: uri.to_string(), message };
    let info: RevisionInfo =
        serde_json::from_slice(body).map_err(|err| protocol(format!("unexpected answer: {err}")))?;
    if !is_commit(&info.sha) {
        return Err(protocol(format!("the hub answered `{}`, not a commit sha, for revision `{revision}`", info.sha)));
    }
    if is_commit(revision) && info.sha != revision {
        return Err(protocol(format!("asked for commit {revision}, the hub answered {}", info.sha)));
    }
    let mut paths = Vec::new();
    for sibling in info.siblings {
        if !safe_relative_path(&sibling.rfilename) {
            return Err(WeightsError::UnsafePath { source_uri: uri.to_string(), path: sibling.rfilename });
        }
        if filter.matches(&sibling.rfilename) {
            paths.push(sibling.rfilename);
        }
    }
    paths.sort();
    paths.dedup();
    Ok((info.sha, paths))
}

#[derive(serde::Deserialize)]
struct RevisionInfo {
    sha: String,
    #[serde(default)]
    siblings: Vec<Sibling>,
}

#[derive(serde::Deserialize)]
struct Sibling {
    rfilename: String,
}

fn header(headers: &HeaderMap, name: &str) -> Option<String> {
    headers.get(name).and_then(|v| v.to_str().ok()).map(|v| v.trim().to_string()).filter(|v| !v.is_empty())
}

/// `W/"abc"` → `abc`, as `huggingface_hub` normalises etags.
fn normalize_etag(etag: String) -> String {
    let etag = etag.strip_prefix("W/").unwrap_or(&etag);
    etag.trim_matches('"').to_string()
}

fn is_commit(text: &str) -> bool {
    text.len() == 40 && text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// `name` or `org/name`, with the characters the hub allows (so it can be put in a URL as is).
fn valid_repo_id(repo: &str) -> bool {
    let parts: Vec<&str> = repo.split('/').collect();
    parts.len() <= 2
        && parts.iter().all(|part| {
            !part.is_empty()
                && *part != "."
                && *part != ".."
                && part.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        })
}

/// Python's `urllib.parse.quote`: keeps `A-Za-z0-9_.-~` (and `/` when asked).
fn quote(text: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"_.-~".contains(&byte) || (keep_slash && byte == b'/') {
            out.push(byte as char);
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn partial_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().unwrap_or_default().to_os_string();
    name.push(".partial");
    dest.with_file_name(name)
}

fn io_error(uri: &str, err: std::io::Error) -> WeightsError {
    WeightsError::Http { source_uri: uri.to_string(), source: Box::new(err) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn revisions_are_quoted_like_huggingface_hub() {
        assert_eq!(quote("refs/pr/1", false), "refs%2Fpr%2F1");
        assert_eq!(quote("main", false), "main");
        assert_eq!(quote("unet/model v1.bin", true), "unet/model%20v1.bin");
    }

    #[test]
    fn etags_lose_quotes_and_the_weak_prefix() {
        assert_eq!(normalize_etag("W/\"abc\"".into()), "abc");
        assert_eq!(normalize_etag("\"abc\"".into()), "abc");
        assert_eq!(normalize_etag("abc".into()), "abc");
    }

    #[test]
    fn repo_ids_cannot_escape_the_url() {
        assert!(valid_repo_id("stabilityai/stable-diffusion-xl-base-1.0"));
        assert!(valid_repo_id("gpt2"));
        for bad in ["", "a/b/c", "../x", "a/..", "a b/c", "a/b?x=1", "a/b#c"] {
            assert!(!valid_repo_id(bad), "{bad:?}");
        }
    }

    #[test]
    fn partial_files_sit_next_to_their_destination() {
        assert_eq!(partial_path(Path::new("/w/unet/model.bin")), Path::new("/w/unet/model.bin.partial"));
    }
}
