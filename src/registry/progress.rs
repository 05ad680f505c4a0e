//! Transfer progress: `indicatif` bars when stderr is a terminal, one plain
//! line per finished blob otherwise (`pushed sha256:… (123.4 MB, 1.2 s)`), so
//! that CI logs stay readable.

use crate::image::digest::Digest;
use crate::plumbing::units::human_bytes;
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::{IsTerminal, Read};
use std::time::Instant;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ProgressMode {
    /// Bars on a terminal, lines otherwise.
    #[default]
    Auto,
    Bars,
    Lines,
    Quiet,
}

pub(crate) struct Progress {
    mode: ProgressMode,
    bars: Option<MultiProgress>,
}

impl Progress {
    pub fn new(mode: ProgressMode) -> Progress {
        let mode = match mode {
            ProgressMode::Auto if std::io::stderr().is_terminal() => ProgressMode::Bars,
            ProgressMode::Auto => ProgressMode::Lines,
            other => other,
        };
        let bars = (mode == ProgressMode::Bars).then(|| MultiProgress::with_draw_target(ProgressDrawTarget::stderr()));
        Progress { mode, bars }
    }

    /// Starts reporting one blob transfer; `verb` is the past tense shown
    /// when it ends (`pushed`, `pulled`).
    pub fn start(&self, verb: &'static str, digest: &Digest, size: u64) -> Transfer {
        let bar = self.bars.as_ref().map(|bars| {
            let bar = bars.add(ProgressBar::new(size));
            bar.set_style(
                ProgressStyle::with_template("{prefix} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
            );
            bar.set_prefix(format!("{verb} {}", short(digest)));
            bar
        });
        Transfer { mode: self.mode, verb, digest: digest.clone(), size, started: Instant::now(), bar }
    }

    /// A one-off event, e.g. a blob skipped because the registry has it.
    pub fn note(&self, message: &str) {
        match (&self.mode, &self.bars) {
            (ProgressMode::Bars, Some(bars)) => {
                let _ = bars.println(message);
            }
            (ProgressMode::Lines, _) => eprintln!("{message}"),
            _ => {}
        }
    }
}

pub(crate) struct Transfer {
    mode: ProgressMode,
    verb: &'static str,
    digest: Digest,
    size: u64,
    started: Instant,
    bar: Option<ProgressBar>,
}

impl Transfer {
    /// The bar, for code that counts bytes itself (a streamed body).
    pub fn clone_bar(&self) -> Option<ProgressBar> {
        self.bar.clone()
    }

    /// Wraps a reader so that bytes read advance the bar.
    pub fn reader<R: Read>(&self, inner: R) -> CountingReader<R> {
        CountingReader { inner, bar: self.bar.clone() }
    }

    pub fn advance(&self, bytes: u64) {
        if let Some(bar) = &self.bar {
            bar.inc(bytes);
        }
    }

    pub fn finish(self) {
        let line = format!(
            "{} {} ({}, {:.1} s)",
            self.verb,
            self.digest,
            human_bytes(self.size),
            self.started.elapsed().as_secs_f64()
        );
        match self.mode {
            ProgressMode::Bars => {
                if let Some(bar) = &self.bar {
                    bar.finish_and_clear();
                    bar.println(line);
                }
            }
            ProgressMode::Lines => eprintln!("{line}"),
            ProgressMode::Auto | ProgressMode::Quiet => {}
        }
    }
}

impl Drop for Transfer {
    fn drop(&mut self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

pub(crate) struct CountingReader<R> {
    inner: R,
    bar: Option<ProgressBar>,
}

impl<R: Read> Read for CountingReader<R> {
    fn read(&mut self, buffer: &mut [u8]) -> std::io::Result<usize> {
        let count = self.inner.read(buffer)?;
        if let Some(bar) = &self.bar {
            bar.inc(count as u64);
        }
        Ok(count)
    }
}

fn short(digest: &Digest) -> String {
    format!("sha256:{}", &digest.hex()[..12])
}
