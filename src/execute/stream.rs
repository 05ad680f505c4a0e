//! Remote weights streamed straight into layer blobs, with no copy on the
//! build machine's disk. Each file is read at its pinned revision through
//! the prefetch hook's range reader ([`Remote`]: the same credentials and
//! the same retry rules), and a connection that breaks is reopened at the
//! byte where it broke. Bytes are hashed as they pass; the read that
//! completes a file fails when its sha256 is not the one the source (or
//! imgbake.lock) vouches for, so the layer writer discards the blob.
//! sha256s computed for files that had none are kept for the lock.

use crate::image::digest::Digest;
use crate::image::entries::LayerEntry;
use crate::image::layer::StreamSource;
use crate::runtime::download::RetryPolicy;
use crate::runtime::remote::{self, Failure, Remote};
use crate::spec::WeightsEntry;
use crate::weights::manifest::{self, ManifestFile};
use crate::weights::{RemoteFile, WeightsError};
use sha2::{Digest as _, Sha256};
use std::collections::{HashMap, HashSet};
use std::io::{self, Read};
use std::sync::Mutex;
use std::time::Duration;

/// A read that gives nothing for this long is a stall, retried like a reset.
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Opens the remote files of one weights source for the layer writer.
pub struct RemoteStreams {
    uri: String,
    remote: Remote,
    /// By [`RemoteStreams::key`].
    files: HashMap<String, RemoteFile>,
    /// Paths whose expected sha256 comes from imgbake.lock, not the source.
    locked_hashes: HashSet<String>,
    policy: RetryPolicy,
    computed: Mutex<Vec<(RemoteFile, Digest)>>,
}

impl RemoteStreams {
    /// Streams for `files` of `entry`; `locked_hashes` names the files whose
    /// sha256 was filled in from imgbake.lock (for clearer errors).
    pub fn new(
        entry: &WeightsEntry,
        files: &[RemoteFile],
        locked_hashes: HashSet<String>,
    ) -> Result<RemoteStreams, WeightsError> {
        // The range reader takes its source, kind and credential name from a manifest entry.
        let no_files = crate::weights::Listing { uri: entry.uri.clone(), revision: None, files: Vec::new() };
        let described = manifest::entry(entry, &no_files).expect("an empty listing has every hash");
        let remote = Remote::for_entry(&described, READ_TIMEOUT)
            .map_err(|message| WeightsError::Protocol { source_uri: entry.uri.clone(), message })?;
        Ok(RemoteStreams {
            uri: entry.uri.clone(),
            remote,
            files: files.iter().map(|f| (Self::key(f), f.clone())).collect(),
            locked_hashes,
            policy: RetryPolicy::default(),
            computed: Mutex::new(Vec::new()),
        })
    }

    /// What names a remote file's content for the layer cache (see
    /// [`crate::resolve::weights::content_key`]).
    pub fn key(file: &RemoteFile) -> String {
        crate::resolve::weights::content_key(file)
    }

    /// The layer entry of `file` at `image_path`.
    pub fn entry(file: &RemoteFile, image_path: &str) -> LayerEntry {
        LayerEntry::streamed(image_path, &Self::key(file), file.size)
    }

    /// Reads `file` through to the end and returns its sha256 (checked
    /// against the one it is expected to have, if any); no byte is kept.
    pub fn hash(&self, file: &RemoteFile) -> io::Result<Digest> {
        let mut stream = self.open_stream(&Self::key(file))?;
        io::copy(&mut stream, &mut io::sink())?;
        drop(stream);
        let computed = self.computed.lock().expect("computed lock");
        let found = computed.iter().rev().find(|(f, _)| f == file).map(|(_, d)| d.clone());
        Ok(found.or_else(|| file.sha256.clone()).expect("a completed stream is verified or recorded"))
    }

    /// The sha256 of every file streamed that came without one.
    pub fn into_computed(self) -> Vec<(RemoteFile, Digest)> {
        self.computed.into_inner().expect("computed lock")
    }
}

impl StreamSource for RemoteStreams {
    fn open_stream(&self, key: &str) -> io::Result<Box<dyn Read + '_>> {
        let file = self.files.get(key).ok_or_else(|| io::Error::other(format!("{}: no file `{key}`", self.uri)))?;
        Ok(Box::new(VerifiedStream {
            streams: self,
            file,
            target: target(file),
            body: None,
            position: 0,
            attempts: 0,
            hasher: Sha256::new(),
            verified: false,
        }))
    }
}

/// What the range reader needs to know of a file (it never sees a sha256).
fn target(file: &RemoteFile) -> ManifestFile {
    ManifestFile::unverified(file)
}

/// One file's bytes, resumed after failures, verified at the last byte.
struct VerifiedStream<'s> {
    streams: &'s RemoteStreams,
    file: &'s RemoteFile,
    target: ManifestFile,
    body: Option<Box<dyn Read + Send>>,
    position: u64,
    /// Failed attempts since bytes last moved forward.
    attempts: u32,
    hasher: Sha256,
    verified: bool,
}

impl VerifiedStream<'_> {
    fn fail(&self, message: String) -> io::Error {
        io::Error::other(format!("{} `{}`: {message}", self.streams.uri, self.file.path))
    }

    /// Counts a failed attempt and sleeps before the next, or gives up.
    fn pause(&mut self, reason: &str, after: Option<Duration>) -> io::Result<()> {
        self.attempts += 1;
        let delay = self.streams.policy.next_delay(self.attempts, after);
        std::thread::sleep(delay.map_err(|why| self.fail(format!("{reason} ({why})")))?);
        Ok(())
    }

    /// A body that starts at `position` (bytes before it, from a server
    /// that ignored the range, are read past).
    fn open(&mut self) -> io::Result<Box<dyn Read + Send>> {
        loop {
            match self.streams.remote.open(&self.target, self.position, self.file.size) {
                Ok(body) => {
                    let mut reader = body.reader;
                    let skip = self.position.saturating_sub(body.from);
                    if skip > 0 {
                        let skipped = io::copy(&mut (&mut reader).take(skip), &mut io::sink())?;
                        if skipped != skip {
                            self.pause("the body ended before the resumed offset", None)?;
                            continue;
                        }
                    }
                    return Ok(reader);
                }
                Err(Failure::Fatal(message)) => return Err(self.fail(message)),
                Err(Failure::Retry { message, after }) => self.pause(&message, after)?,
            }
        }
    }

    /// Checks the whole file's sha256, or records it when none was known.
    fn finish(&mut self) -> io::Result<()> {
        self.verified = true;
        let actual = Digest::from_sha256_bytes(&std::mem::take(&mut self.hasher).finalize());
        match &self.file.sha256 {
            Some(expected) if *expected != actual => {
                let says = if self.streams.locked_hashes.contains(&self.file.path) {
                    "imgbake.lock says"
                } else {
                    "the source says"
                };
                Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{} `{}`: content has sha256 {actual}, but {says} {expected}",
                        self.streams.uri, self.file.path
                    ),
                ))
            }
            Some(_) => Ok(()),
            None => {
                self.streams.computed.lock().expect("computed lock").push((self.file.clone(), actual));
                Ok(())
            }
        }
    }
}

impl Read for VerifiedStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.file.size;
        if self.position == size {
            if !self.verified {
                self.finish()?; // an empty file
            }
            return Ok(0);
        }
        loop {
            let mut body = match self.body.take() {
                Some(body) => body,
                None => self.open()?,
            };
            let want = (buf.len() as u64).min(size - self.position) as usize;
            match body.read(&mut buf[..want]) {
                Ok(0) => {
                    let reason = format!("the body ended at byte {} of {size}", self.position);
                    self.pause(&reason, None)?;
                }
                Ok(n) => {
                    self.body = Some(body);
                    self.hasher.update(&buf[..n]);
                    self.position += n as u64;
                    self.attempts = 0;
                    if self.position == size {
                        self.finish()?;
                    }
                    return Ok(n);
                }
                Err(error) if error.kind() == io::ErrorKind::Interrupted => self.body = Some(body),
                Err(error) if remote::fatal_read_error(&error) => return Err(self.fail(remote::chain(&error))),
                Err(error) => self.pause(&remote::chain(&error), None)?,
            }
        }
    }
}
