//! One client for any remote weights source: picks the module for the
//! entry's kind (hub, object store, plain URL) and forwards list/open.

use super::hf::HfClient;
use super::http::HttpSource;
use super::object::ObjectSource;
use super::{FileReader, Listing, RemoteFile, WeightsError};
use crate::spec::{WeightsEntry, WeightsSource};

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
