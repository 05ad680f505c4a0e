//! Where a command's time went: named spans (start offset and length from
//! one origin), recorded from any thread. `build --json` prints them as
//! `timings`, so a user (and the ML-stack race) sees which phase a slow
//! build spent its minutes in, and which phases ran at the same time.

use std::sync::Mutex;
use std::time::Instant;

/// One recorded phase: `start` seconds after the timeline's origin, lasting `seconds`.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct Span {
    pub phase: String,
    pub start: f64,
    pub seconds: f64,
}

#[derive(Debug)]
pub struct Timeline {
    origin: Instant,
    spans: Mutex<Vec<Span>>,
}

impl Default for Timeline {
    fn default() -> Self {
        Timeline::new()
    }
}

impl Timeline {
    pub fn new() -> Timeline {
        Timeline { origin: Instant::now(), spans: Mutex::new(Vec::new()) }
    }

    /// Runs `work` as the phase `phase`, recorded even when it fails.
    pub fn time<R>(&self, phase: impl Into<String>, work: impl FnOnce() -> R) -> R {
        let started = Instant::now();
        let result = work();
        self.record(phase.into(), started);
        result
    }

    /// Records `phase` as running from `started` until now.
    pub fn record(&self, phase: String, started: Instant) {
        let start = started.saturating_duration_since(self.origin).as_secs_f64();
        let seconds = started.elapsed().as_secs_f64();
        self.spans.lock().unwrap_or_else(|e| e.into_inner()).push(Span { phase, start, seconds });
    }

    /// The spans so far, in the order they started.
    pub fn spans(&self) -> Vec<Span> {
        let mut spans = self.spans.lock().unwrap_or_else(|e| e.into_inner()).clone();
        spans.sort_by(|a, b| a.start.total_cmp(&b.start));
        spans
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spans_keep_their_order_and_nest() {
        let timeline = Timeline::new();
        let value = timeline.time("outer", || {
            std::thread::sleep(std::time::Duration::from_millis(5));
            timeline.time("inner", || 7)
        });
        assert_eq!(value, 7);
        let spans = timeline.spans();
        let names: Vec<&str> = spans.iter().map(|s| s.phase.as_str()).collect();
        assert_eq!(names, ["outer", "inner"]);
        assert!(spans[0].seconds >= spans[1].seconds + 0.004, "{spans:?}");
        assert!(spans[1].start >= spans[0].start + 0.004, "{spans:?}");
    }
}
