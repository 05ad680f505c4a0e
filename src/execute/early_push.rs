//! Uploads each layer blob to the push target as soon as the build has made
//! it, while the next layers are still being installed and compressed: a
//! cold build's push then overlaps the build instead of following it (with a
//! remote registry, most of a torch image's push). Best effort: the push at
//! the end (`output::push`) still checks every blob and uploads what is not
//! there, and only it names the blobs in a manifest, so an early upload that
//! failed costs only its time and its error comes back from that push.

use crate::image::digest::Digest;
use crate::registry::push_record::PushRecord;
use crate::registry::{BlobSource, Reference, RegistryClient, RegistryClientOptions};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;

pub struct EarlyPush {
    sender: Option<mpsc::Sender<BlobSource>>,
    workers: Vec<JoinHandle<()>>,
    /// Set when the build failed: the uploads not started are dropped.
    abandoned: Arc<AtomicBool>,
    target: Reference,
    record: PushRecord,
}

impl EarlyPush {
    /// Uploaders for `target` (`options.parallel_transfers` at once), or
    /// none when nothing is pushed or no client can be made (the final push
    /// reports why).
    pub fn start(target: Option<&Reference>, options: &RegistryClientOptions, record: PushRecord) -> Option<EarlyPush> {
        let target = target?.clone();
        let client = Arc::new(RegistryClient::new(options.clone()).ok()?);
        let (sender, receiver) = mpsc::channel::<BlobSource>();
        let receiver = Arc::new(Mutex::new(receiver));
        let abandoned = Arc::new(AtomicBool::new(false));
        let workers = (0..options.parallel_transfers.max(1))
            .map(|_| {
                let (client, receiver, target) = (client.clone(), receiver.clone(), target.clone());
                let abandoned = abandoned.clone();
                std::thread::spawn(move || loop {
                    // One uploader waits on the channel at a time; the others wait for it.
                    let Ok(blob) = receiver.lock().unwrap_or_else(|e| e.into_inner()).recv() else { return };
                    if !abandoned.load(Ordering::Relaxed) {
                        let _ = client.push_blob_from_file(&target, &blob, None);
                    }
                })
            })
            .collect();
        Some(EarlyPush { sender: Some(sender), workers, abandoned, target, record })
    }

    /// Uploads the blob `digest` at `path` in the background, unless the push
    /// record saw it in another repository of the target's registry: the
    /// final push mounts it from there, which sends no bytes.
    pub fn offer(&self, digest: &Digest, size: u64, path: std::path::PathBuf) {
        if self.record.repository(&self.target.registry, digest).is_some_and(|r| r != self.target.repository) {
            return;
        }
        if let Some(sender) = &self.sender {
            let _ = sender.send(BlobSource { digest: digest.clone(), size, path });
        }
    }

    /// Waits for every upload offered so far (the final push must not start
    /// a second upload of a blob still on its way).
    pub fn finish(mut self) {
        self.wait();
    }

    fn wait(&mut self) {
        self.sender.take();
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

impl Drop for EarlyPush {
    /// A build that failed drops the uploads not started and waits for the
    /// ones under way: no thread outlives it.
    fn drop(&mut self) {
        if !self.workers.is_empty() {
            self.abandoned.store(true, Ordering::Relaxed);
        }
        self.wait();
    }
}
