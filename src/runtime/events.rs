//! What the prefetch hook tells the world: a progress bar on a terminal,
//! otherwise one JSON line per event on stderr (platform logs parse them),
//! and a summary (also written as the metrics JSON beside the ready file).
//! Never a credential: events carry file names, URLs and sizes only, and
//! every URL's query string (where signed URLs keep theirs) is cut out.

use crate::weights::signed_url::redact_queries;
use indicatif::{ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

pub struct Events {
    bar: Option<ProgressBar>,
    started: Instant,
    fetched: AtomicU64,
    resumed: AtomicU64,
    retries: AtomicU64,
    downloaded_files: AtomicU64,
    present_files: AtomicU64,
}

impl Events {
    /// A progress bar when stderr is a terminal, JSON lines otherwise.
    pub fn new() -> Events {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = ProgressBar::new(0);
            let style = ProgressStyle::with_template(
                "{spinner} prefetch [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta} {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            bar
        });
        Events {
            bar,
            started: Instant::now(),
            fetched: AtomicU64::new(0),
            resumed: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            downloaded_files: AtomicU64::new(0),
            present_files: AtomicU64::new(0),
        }
    }

    fn emit(&self, kind: &str, fields: serde_json::Value) {
        if self.bar.is_some() {
            return;
        }
        let mut line = serde_json::json!({ "event": kind });
        if let (Some(line), Some(fields)) = (line.as_object_mut(), fields.as_object()) {
            line.extend(fields.clone());
        }
        eprintln!("{}", redact_queries(&line.to_string()));
    }

    /// Something the user must see even on a terminal (a retry, a failure).
    fn note(&self, text: String) {
        if let Some(bar) = &self.bar {
            bar.println(redact_queries(&text));
        }
    }

    pub fn start(&self, files: usize, bytes: u64, missing_bytes: u64, jobs: usize) {
        if let Some(bar) = &self.bar {
            bar.set_length(missing_bytes);
        }
        self.emit(
            "start",
            serde_json::json!({ "files": files, "bytes": bytes, "missing_bytes": missing_bytes, "jobs": jobs }),
        );
    }

    pub fn present(&self, origin: &str, file: &str, bytes: u64, how: &str) {
        self.present_files.fetch_add(1, Ordering::Relaxed);
        self.emit("present", serde_json::json!({ "origin": origin, "file": file, "bytes": bytes, "verified_by": how }));
    }

    pub fn file_started(&self, origin: &str, file: &str, bytes: u64) {
        self.emit("started", serde_json::json!({ "origin": origin, "file": file, "bytes": bytes }));
    }

    /// Bytes written to the volume (drives the bar).
    pub fn bytes(&self, n: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(n);
        }
    }

    pub fn downloaded(&self, origin: &str, file: &str, bytes: u64, fetched: u64, resumed: u64, seconds: f64) {
        self.downloaded_files.fetch_add(1, Ordering::Relaxed);
        self.fetched.fetch_add(fetched, Ordering::Relaxed);
        self.resumed.fetch_add(resumed, Ordering::Relaxed);
        self.emit(
            "downloaded",
            serde_json::json!({
                "origin": origin, "file": file, "bytes": bytes, "fetched_bytes": fetched,
                "resumed_bytes": resumed, "seconds": round(seconds), "mb_per_s": mb_per_s(fetched, seconds),
            }),
        );
    }

    pub fn retry(&self, origin: &str, file: &str, url: &str, reason: &str, attempt: u32, delay: f64) {
        self.retries.fetch_add(1, Ordering::Relaxed);
        self.note(format!("retry {attempt} of {file} in {delay:.1}s: {reason}"));
        self.emit(
            "retry",
            serde_json::json!({
                "origin": origin, "file": file, "url": url, "reason": reason, "attempt": attempt,
                "delay_seconds": round(delay),
            }),
        );
    }

    pub fn failed(&self, message: &str) {
        if let Some(bar) = &self.bar {
            bar.abandon_with_message("failed");
        }
        self.emit("failed", serde_json::json!({ "error": message }));
    }

    /// Totals so far; the last event, and the metrics file.
    pub fn summary(&self, status: &str, files: usize, bytes: u64) -> serde_json::Value {
        let seconds = self.started.elapsed().as_secs_f64();
        let fetched = self.fetched.load(Ordering::Relaxed);
        serde_json::json!({
            "status": status,
            "files": files,
            "bytes": bytes,
            "downloaded_files": self.downloaded_files.load(Ordering::Relaxed),
            "present_files": self.present_files.load(Ordering::Relaxed),
            "fetched_bytes": fetched,
            "resumed_bytes": self.resumed.load(Ordering::Relaxed),
            "retries": self.retries.load(Ordering::Relaxed),
            "seconds": round(seconds),
            "mb_per_s": mb_per_s(fetched, seconds),
        })
    }

    pub fn done(&self, summary: &serde_json::Value) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
            eprintln!(
                "prefetch: {} files verified ({} downloaded, {} already present) in {}s",
                summary["files"], summary["downloaded_files"], summary["present_files"], summary["seconds"]
            );
        }
        self.emit("done", summary.clone());
    }
}

impl Default for Events {
    fn default() -> Self {
        Events::new()
    }
}

fn round(seconds: f64) -> f64 {
    (seconds * 1000.0).round() / 1000.0
}

fn mb_per_s(bytes: u64, seconds: f64) -> f64 {
    if seconds <= 0.0 {
        return 0.0;
    }
    ((bytes as f64 / 1e6 / seconds) * 10.0).round() / 10.0
}
