//! A plain `https://` URL as a weights source: exactly one file.
//!
//! `HEAD` gives the size (`Content-Length`) and the `ETag`; when a server
//! refuses `HEAD` or gives no length, a one-byte ranged `GET` gives the total
//! from `Content-Range`. The file's path is the URL's last segment. A named
//! secret goes in `Authorization: Bearer`; reqwest drops that header when a
//! redirect leaves the host, so a CDN or presigned URL never sees it.
//! `http://` is accepted too (loopback test servers, internal mirrors).

use super::filter::PathFilter;
use super::{safe_relative_path, FileReader, Listing, RemoteFile, Secret, WeightsError};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header::{HeaderMap, AUTHORIZATION, CONTENT_LENGTH, CONTENT_RANGE, ETAG, IF_MATCH, RANGE};
use reqwest::StatusCode;
use std::io::{self, Read};
use std::time::Duration;

/// Connect bound; reads are bounded per read call (a stalled server), not
/// per transfer, so a large file may take as long as it needs.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(15);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// One file at a URL.
pub struct HttpSource {
    url: reqwest::Url,
    client: Client,
    token: Option<Secret>,
    /// The env var / secret to name when access is denied.
    credential: Option<String>,
}

impl std::fmt::Debug for HttpSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpSource")
            .field("url", &self.url.as_str())
            .field("credential", &self.credential)
            .finish_non_exhaustive()
    }
}

impl HttpSource {
    /// A source whose token (if `secret_name` is given) is read from the
    /// environment variable of that name.
    pub fn new(url: &str, secret_name: Option<&str>) -> Result<HttpSource, WeightsError> {
        let token = match secret_name {
            Some(name) => Some(Secret::from_env(&[name]).ok_or_else(|| WeightsError::Protocol {
                source_uri: url.to_string(),
                message: format!("the secret `{name}` is not set (expected an environment variable of that name)"),
            })?),
            None => None,
        };
        HttpSource::with_token(url, token, secret_name)
    }

    /// A source with an explicit token; reads no environment variable.
    /// `credential_name` is what an access-denied error tells the user to set.
    pub fn with_token(
        url: &str,
        token: Option<Secret>,
        credential_name: Option<&str>,
    ) -> Result<HttpSource, WeightsError> {
        let parsed = reqwest::Url::parse(url).map_err(|error| WeightsError::Protocol {
            source_uri: url.to_string(),
            message: format!("not a URL: {error}"),
        })?;
        if !matches!(parsed.scheme(), "https" | "http") {
            return Err(WeightsError::Protocol {
                source_uri: url.to_string(),
                message: "expected an https:// (or http://) URL".to_string(),
            });
        }
        let client = crate::plumbing::http::blocking(CONNECT_TIMEOUT, READ_TIMEOUT)
            .build()
            .map_err(|error| WeightsError::Http { source_uri: url.to_string(), source: Box::new(error) })?;
        Ok(HttpSource { url: parsed, client, token, credential: credential_name.map(str::to_string) })
    }

    /// The URL as given.
    pub fn uri(&self) -> &str {
        self.url.as_str()
    }

    /// The one file, if the patterns select it. Its path is the URL's last
    /// path segment (percent-decoded), refused when unsafe.
    pub fn list(&self, allow: &[String], ignore: &[String]) -> Result<Listing, WeightsError> {
        let uri = self.uri().to_string();
        let filter = PathFilter::new(allow, ignore)
            .map_err(|message| WeightsError::Protocol { source_uri: uri.clone(), message })?;
        let raw = self.url.path_segments().and_then(|mut segments| segments.next_back()).unwrap_or("");
        let path = percent_decode(raw)
            .filter(|p| !p.contains('/') && safe_relative_path(p))
            .ok_or_else(|| WeightsError::UnsafePath { source_uri: uri.clone(), path: raw.to_string() })?;
        let (size, etag) = self.probe()?;
        let mut files = Vec::new();
        if filter.matches(&path) {
            files.push(RemoteFile { path, size, sha256: None, etag, url: uri.clone() });
        } else {
            return Err(WeightsError::Empty { source_uri: uri, allow: allow.to_vec(), ignore: ignore.to_vec() });
        }
        Ok(Listing { uri, revision: None, files })
    }

    /// The file's bytes as a stream. When the listing recorded an ETag, the
    /// request carries `If-Match` and a different ETag in the answer fails
    /// the open; a stream shorter or longer than the listed size fails the read.
    pub fn open(&self, file: &RemoteFile) -> Result<FileReader, WeightsError> {
        let mut request = self.request(self.client.get(&file.url));
        if let Some(etag) = &file.etag {
            request = request.header(IF_MATCH, etag);
        }
        let response = self.send(request)?;
        if response.status() != StatusCode::OK {
            return Err(self.status_error(response.status()));
        }
        self.check_same(file, response.headers())?;
        Ok(Box::new(SizedReader { inner: response, expected: file.size, read: 0, uri: file.url.clone() }))
    }

    /// `len` bytes from `start` (`Range` request); for parallel downloads.
    pub fn read_range(&self, file: &RemoteFile, start: u64, len: u64) -> Result<Vec<u8>, WeightsError> {
        let end = start.checked_add(len).filter(|end| *end <= file.size && len > 0).ok_or_else(|| {
            self.protocol(format!("range {start}+{len} is outside `{}` ({} bytes)", file.path, file.size))
        })?;
        let mut request = self.request(self.client.get(&file.url)).header(RANGE, format!("bytes={start}-{}", end - 1));
        if let Some(etag) = &file.etag {
            request = request.header(IF_MATCH, etag);
        }
        let response = self.send(request)?;
        if response.status() != StatusCode::PARTIAL_CONTENT {
            return Err(match response.status() {
                StatusCode::OK => self.protocol("the server ignored the Range header".to_string()),
                status => self.status_error(status),
            });
        }
        self.check_same(file, response.headers())?;
        let mut bytes = Vec::with_capacity(len as usize);
        response.take(len + 1).read_to_end(&mut bytes).map_err(|error| self.http_error(error))?;
        if bytes.len() as u64 != len {
            return Err(self.protocol(format!("asked for {len} bytes of `{}`, got {}", file.path, bytes.len())));
        }
        Ok(bytes)
    }

    /// Size and ETag: `HEAD`, else a one-byte ranged `GET`.
    fn probe(&self) -> Result<(u64, Option<String>), WeightsError> {
        let response = self.send(self.request(self.client.head(self.url.clone())))?;
        let status = response.status();
        if status.is_success() {
            if let Some(size) = header_u64(response.headers(), CONTENT_LENGTH) {
                return Ok((size, header_string(response.headers(), ETAG)));
            }
        } else if !matches!(status, StatusCode::METHOD_NOT_ALLOWED | StatusCode::NOT_IMPLEMENTED) {
            return Err(self.status_error(status));
        }
        let response = self.send(self.request(self.client.get(self.url.clone())).header(RANGE, "bytes=0-0"))?;
        let status = response.status();
        let size = match status {
            StatusCode::PARTIAL_CONTENT => header_string(response.headers(), CONTENT_RANGE)
                .and_then(|range| range.rsplit('/').next().and_then(|total| total.trim().parse().ok())),
            StatusCode::OK => header_u64(response.headers(), CONTENT_LENGTH),
            status => return Err(self.status_error(status)),
        };
        let size = size.ok_or_else(|| self.protocol("the server gives no size (no Content-Length)".to_string()))?;
        Ok((size, header_string(response.headers(), ETAG)))
    }

    fn check_same(&self, file: &RemoteFile, headers: &HeaderMap) -> Result<(), WeightsError> {
        match (&file.etag, header_string(headers, ETAG)) {
            (Some(listed), Some(now)) if *listed != now => {
                Err(self.protocol(format!("`{}` changed since it was listed (ETag {listed} → {now})", file.path)))
            }
            _ => Ok(()),
        }
    }

    fn request(&self, request: RequestBuilder) -> RequestBuilder {
        match &self.token {
            Some(token) => request.header(AUTHORIZATION, format!("Bearer {}", token.expose())),
            None => request,
        }
    }

    fn send(&self, request: RequestBuilder) -> Result<Response, WeightsError> {
        request.send().map_err(|error| self.http_error(error))
    }

    fn status_error(&self, status: StatusCode) -> WeightsError {
        let source_uri = self.uri().to_string();
        match status {
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => WeightsError::Unauthorized {
                source_uri,
                status: status.as_u16(),
                credential: self.credential.clone().unwrap_or_else(|| "a bearer token (`secret = \"NAME\"`)".into()),
            },
            StatusCode::NOT_FOUND | StatusCode::GONE => WeightsError::NotFound { source_uri },
            StatusCode::PRECONDITION_FAILED => {
                self.protocol("the file changed since it was listed (its ETag differs); list again".to_string())
            }
            status => self.protocol(format!("unexpected HTTP status {status}")),
        }
    }

    fn protocol(&self, message: String) -> WeightsError {
        WeightsError::Protocol { source_uri: self.uri().to_string(), message }
    }

    fn http_error(&self, error: impl std::error::Error + Send + Sync + 'static) -> WeightsError {
        WeightsError::Http { source_uri: self.uri().to_string(), source: Box::new(error) }
    }
}

/// Fails the read when the body is shorter or longer than the listed size.
struct SizedReader {
    inner: Response,
    expected: u64,
    read: u64,
    uri: String,
}

impl Read for SizedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{}: more than the listed {} bytes", self.uri, self.expected),
            ));
        }
        if n == 0 && !buf.is_empty() && self.read < self.expected {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("{}: ended at byte {} of {}", self.uri, self.read, self.expected),
            ));
        }
        Ok(n)
    }
}

fn header_string(headers: &HeaderMap, name: reqwest::header::HeaderName) -> Option<String> {
    headers.get(name).and_then(|value| value.to_str().ok()).map(str::to_string)
}

fn header_u64(headers: &HeaderMap, name: reqwest::header::HeaderName) -> Option<u64> {
    header_string(headers, name).and_then(|value| value.trim().parse().ok())
}

/// `%XX` decoding; `None` when the result is not UTF-8 or an escape is broken.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = std::str::from_utf8(bytes.get(i + 1..i + 3)?).ok()?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn last_segments_are_decoded_and_checked() {
        assert_eq!(percent_decode("model%20v1.bin").as_deref(), Some("model v1.bin"));
        assert_eq!(percent_decode("a%2Fb").as_deref(), Some("a/b"));
        assert_eq!(percent_decode("bad%2"), None);
        for url in ["https://h/", "https://h/dir/..%2F..%2Fetc", "https://h/a%2Fb"] {
            let source = HttpSource::with_token(url, None, None).unwrap();
            assert!(matches!(source.list(&[], &[]), Err(WeightsError::UnsafePath { .. })), "{url}");
        }
    }

    #[test]
    fn only_http_urls() {
        assert!(HttpSource::with_token("ftp://h/x", None, None).is_err());
        let source =
            HttpSource::with_token("https://h/x.bin", Some(Secret::new("tok-SECRET".into())), Some("T")).unwrap();
        assert!(!format!("{source:?}").contains("tok-SECRET"));
    }
}
