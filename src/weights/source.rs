//! One client for any remote weights source: picks the module for the
//! entry's kind (hub, object store, plain URL) and forwards list/open.

use super::hf::HfClient;
use super::http::HttpSource;
use super::object::ObjectSource;
use super::{FileReader, Listing, RemoteFile, WeightsError};
use crate::spec::{WeightsEntry, WeightsSource};
use std::path::Path;

pub enum SourceClient {
    Hf(HfClient),
    Object(ObjectSource),
    Http(HttpSource),
}

impl SourceClient {
    /// The client for a remote entry; credentials come from the entry's
    /// secret name (or the kind's usual environment variables).
    pub fn for_entry(entry: &WeightsEntry) -> Result<SourceClient, WeightsError> {
        let secret = entry.secret.as_deref();
        match &entry.source {
            WeightsSource::Hf { .. } => Ok(SourceClient::Hf(HfClient::for_entry(entry))),
            WeightsSource::S3 { .. } | WeightsSource::Gcs { .. } | WeightsSource::Azure { .. } => {
                ObjectSource::new(&entry.source, secret).map(SourceClient::Object)
            }
            WeightsSource::Https { url } => HttpSource::new(url, secret).map(SourceClient::Http),
            WeightsSource::Local { .. } => Err(WeightsError::Protocol {
                source_uri: entry.uri.clone(),
                message: "a local directory is not a remote source".to_string(),
            }),
        }
    }

    /// Every selected file at the pinned revision.
    pub fn list(&self, entry: &WeightsEntry) -> Result<Listing, WeightsError> {
        let (allow, ignore) = (&entry.allow_patterns, &entry.ignore_patterns);
        match self {
            SourceClient::Hf(client) => client.list_entry(entry),
            SourceClient::Object(source) => source.list(allow, ignore, &entry.uri),
            SourceClient::Http(source) => source.list(allow, ignore),
        }
    }

    pub fn open(&self, file: &RemoteFile) -> Result<FileReader, WeightsError> {
        match self {
            SourceClient::Hf(client) => client.open(file),
            SourceClient::Object(source) => source.open(file),
            SourceClient::Http(source) => source.open(file),
        }
    }
}

/// Parses a weights source URI (as a config writes it, and as the volume
/// manifest names it); `Err` is the message for the user.
pub fn parse_source(uri: &str, project_dir: &Path) -> Result<WeightsSource, String> {
    if let Some(rest) = uri.strip_prefix("hf://") {
        let (repo, revision) = match rest.split_once('@') {
            Some((repo, revision)) => (repo, revision.to_string()),
            None => (rest, "main".to_string()),
        };
        let parts: Vec<&str> = repo.split('/').collect();
        if parts.len() != 2 || parts.iter().any(|p| p.is_empty()) || revision.is_empty() {
            return Err(format!("`{uri}` is not a Hugging Face source; expected hf://ORG/NAME@REVISION"));
        }
        return Ok(WeightsSource::Hf { repo: repo.to_string(), revision });
    }
    for (scheme, kind) in [("s3://", "s3"), ("gs://", "gcs"), ("azure://", "azure"), ("az://", "azure")] {
        if let Some(rest) = uri.strip_prefix(scheme) {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(format!("`{uri}` has no bucket; expected {scheme}BUCKET/PREFIX"));
            }
            let (bucket, prefix) = (bucket.to_string(), prefix.to_string());
            return Ok(match kind {
                "s3" => WeightsSource::S3 { bucket, prefix },
                "gcs" => WeightsSource::Gcs { bucket, prefix },
                _ => WeightsSource::Azure { container: bucket, prefix },
            });
        }
    }
    if uri.starts_with("https://") || uri.starts_with("http://") {
        let after_host = uri.split_once("://").map(|(_, r)| r).unwrap_or("");
        let file_name = after_host.split_once('/').map(|(_, p)| p).unwrap_or("");
        if file_name.is_empty() || file_name.ends_with('/') {
            return Err(format!("`{uri}` names no file; an https:// source is one file"));
        }
        if let Some(parameter) = super::signed_url::credential_parameter(uri) {
            // Not echoed: the message would carry the credential into logs.
            return Err(format!(
                "this URL carries a credential in its query string (`{parameter}`), which imgbake would have to \
                 write into imgbake.lock and the image's weights manifest; use s3://, gs:// or azure:// with \
                 `secret`, or the URL without it and `secret` = the name of a bearer token"
            ));
        }
        return Ok(WeightsSource::Https { url: uri.to_string() });
    }
    if let Some((scheme, _)) = uri.split_once("://") {
        if scheme != "file" {
            return Err(format!(
                "unknown source scheme `{scheme}://` in `{uri}`; expected hf://, s3://, gs://, azure://, https://, file:// or a local path"
            ));
        }
    }
    let local = uri.strip_prefix("file://").unwrap_or(uri);
    let local = local.strip_prefix("./").unwrap_or(local);
    if local.is_empty() {
        return Err("the weights source is empty".to_string());
    }
    let path = project_dir.join(local);
    if !path.is_dir() {
        return Err(format!("local weights source `{uri}` is not a directory ({} does not exist)", path.display()));
    }
    Ok(WeightsSource::Local { path })
}
