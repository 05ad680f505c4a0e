//! The one retry policy for network calls (registry, hub, plain HTTP,
//! object stores, the prefetch hook): how many tries, exponential backoff
//! with jitter, the server's `Retry-After`, and which failures are worth
//! another try (connection trouble, timeouts, 408, 429, 5xx; no other 4xx).

use reqwest::header::{HeaderMap, RETRY_AFTER};
use std::time::{Duration, SystemTime};

/// Tries of one call and the pauses between them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Tries in all, the first included.
    pub attempts: u32,
    /// Pause before the first retry; it doubles with every retry.
    pub first_delay: Duration,
    pub max_delay: Duration,
    /// Longest `Retry-After` sat through; a server asking for more gets the
    /// error at once (with its wait in it) rather than a retry too early.
    pub max_retry_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 6,
            first_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            max_retry_after: Duration::from_secs(60),
        }
    }
}

/// Why a call is not tried again.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GiveUp {
    /// Every try failed.
    Exhausted { attempts: u32 },
    /// The server asked for a wait longer than the policy sits through.
    WaitTooLong { asked: Duration, longest: Duration },
}

impl std::fmt::Display for GiveUp {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GiveUp::Exhausted { attempts } => write!(f, "gave up after {attempts} attempts"),
            GiveUp::WaitTooLong { asked, longest } => write!(
                f,
                "the server asks to wait {} s (Retry-After), longer than the {} s this waits",
                asked.as_secs(),
                longest.as_secs()
            ),
        }
    }
}

impl RetryPolicy {
    /// A policy of `retries` retries after the first try.
    pub fn with_retries(retries: u32, first_delay: Duration, max_delay: Duration) -> RetryPolicy {
        RetryPolicy { attempts: retries.saturating_add(1), first_delay, max_delay, max_retry_after: max_delay }
    }

    /// The backoff before retry `retry` (1-based): `first · 2^(retry-1)`,
    /// capped, then "equal jitter" (a random point in its upper half), so
    /// that parallel transfers hitting the same 503 do not retry in lockstep.
    pub fn backoff(&self, retry: u32) -> Duration {
        let doubling = 1u32.checked_shl(retry.saturating_sub(1).min(16)).unwrap_or(u32::MAX);
        let base = self.first_delay.saturating_mul(doubling).min(self.max_delay);
        base / 2 + (base / 2).mul_f64(fastrand::f64())
    }

    /// After failed try number `failures` (1-based): the pause before the
    /// next one — the server's `Retry-After` when it sent one, else the
    /// backoff — or why there is none.
    pub fn next_delay(&self, failures: u32, retry_after: Option<Duration>) -> Result<Duration, GiveUp> {
        if failures >= self.attempts {
            return Err(GiveUp::Exhausted { attempts: self.attempts });
        }
        match retry_after {
            Some(asked) if asked > self.max_retry_after => {
                Err(GiveUp::WaitTooLong { asked, longest: self.max_retry_after })
            }
            Some(asked) => Ok(asked),
            None => Ok(self.backoff(failures)),
        }
    }
}

/// HTTP statuses worth another try: 408, 429 and every 5xx.
pub fn retryable_status(status: u16) -> bool {
    matches!(status, 408 | 429) || (500..600).contains(&status)
}

/// A failed request worth another try: no connection, a timeout, a
/// connection cut while sending or reading the body.
pub fn transient(error: &reqwest::Error) -> bool {
    error.is_connect() || error.is_timeout() || error.is_request() || error.is_body()
}

/// `Retry-After` as seconds or as an HTTP date (a date in the past is 0).
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    parse_retry_after(headers.get(RETRY_AFTER)?.to_str().ok()?, SystemTime::now())
}

fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    let date = time::OffsetDateTime::parse(value, &time::format_description::well_known::Rfc2822).ok()?;
    Some(SystemTime::from(date).duration_since(now).unwrap_or(Duration::ZERO))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_is_capped_and_jittered() {
        let policy = RetryPolicy::default();
        for retry in 1..=5 {
            let base = Duration::from_millis(500) * (1 << (retry - 1));
            let delay = policy.backoff(retry);
            assert!(delay >= base / 2 && delay <= base, "{retry}: {delay:?}");
        }
        assert!(policy.backoff(40) <= Duration::from_secs(30));
    }

    #[test]
    fn retry_after_is_the_pause_up_to_a_limit() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.next_delay(1, Some(Duration::from_secs(7))), Ok(Duration::from_secs(7)));
        assert_eq!(
            policy.next_delay(1, Some(Duration::from_secs(3600))),
            Err(GiveUp::WaitTooLong { asked: Duration::from_secs(3600), longest: Duration::from_secs(60) })
        );
        assert_eq!(policy.next_delay(6, None), Err(GiveUp::Exhausted { attempts: 6 }));
        assert_eq!(GiveUp::Exhausted { attempts: 6 }.to_string(), "gave up after 6 attempts");
        let registry = RetryPolicy::with_retries(2, Duration::from_millis(10), Duration::from_millis(100));
        assert!(registry.next_delay(2, None).is_ok());
        assert!(registry.next_delay(3, None).is_err());
    }

    #[test]
    fn retry_after_reads_seconds_and_http_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after(" 120 ", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:50:07 GMT", now), Some(Duration::from_secs(30)));
        assert_eq!(parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("soon", now), None);
    }

    #[test]
    fn only_timeouts_rate_limits_and_server_errors_are_retried() {
        for status in [408, 429, 500, 502, 503, 504] {
            assert!(retryable_status(status), "{status}");
        }
        for status in [200, 400, 401, 403, 404, 410] {
            assert!(!retryable_status(status), "{status}");
        }
    }
}
