//! Retry policy: a bounded number of attempts, exponential backoff with full jitter, the
//! server's `Retry-After` when it sends one, and an optional deadline that is never slept past.
//!
//! The policy only decides *how long* to wait and *whether* waiting is still allowed; which
//! failures are worth retrying is decided beside each error type (`ApiError::is_retryable`,
//! `AuthError::is_retryable`).

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio::time::Instant;

/// The longest `Retry-After` honoured; a longer one is cut to this (the deadline still applies).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// How often and how patiently a failed call is retried.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    /// Attempts in total, the first one included (at least 1).
    pub max_attempts: u32,
    /// Backoff cap of the first retry; doubles with each further retry.
    pub base_delay: Duration,
    /// Largest backoff cap.
    pub max_delay: Duration,
    /// Never sleep past this instant (e.g. the Lambda invocation's deadline minus a margin).
    pub deadline: Option<Instant>,
}

impl Default for RetryPolicy {
    /// 6 attempts, 500 ms base, 30 s cap, no deadline.
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 6,
            base_delay: Duration::from_millis(500),
            max_delay: Duration::from_secs(30),
            deadline: None,
        }
    }
}

/// Sleeping would cross the policy's deadline.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the deadline would pass before the next attempt")]
pub struct DeadlineReached;

impl RetryPolicy {
    /// The same policy with a deadline.
    #[must_use]
    pub fn with_deadline(mut self, deadline: Instant) -> RetryPolicy {
        self.deadline = Some(deadline);
        self
    }

    /// True when attempt number `attempt` (1-based, the one that just failed) may be followed
    /// by another.
    pub fn allows_another(&self, attempt: u32) -> bool {
        attempt < self.max_attempts.max(1)
    }

    /// The backoff cap before retry number `retry` (0-based): `min(max_delay, base_delay × 2^retry)`.
    pub fn backoff_cap(&self, retry: u32) -> Duration {
        let factor = 1u32.checked_shl(retry.min(30)).unwrap_or(u32::MAX);
        self.base_delay
            .checked_mul(factor)
            .unwrap_or(self.max_delay)
            .min(self.max_delay)
    }

    /// Full jitter: a uniformly random delay in `[0, backoff_cap(retry)]`.
    pub fn backoff(&self, retry: u32) -> Duration {
        let cap = self.backoff_cap(retry);
        let nanos = u64::try_from(cap.as_nanos()).unwrap_or(u64::MAX);
        if nanos == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(random_u64() % nanos.saturating_add(1))
    }

    /// The wait before retry number `retry` (0-based): the server's `Retry-After` when given
    /// (capped at [`MAX_RETRY_AFTER`]), otherwise [`RetryPolicy::backoff`].
    pub fn delay(&self, retry: u32, retry_after: Option<Duration>) -> Duration {
        match retry_after {
            Some(d) => d.min(MAX_RETRY_AFTER),
            None => self.backoff(retry),
        }
    }

    /// Time left before the deadline (`None` without a deadline).
    pub fn remaining(&self) -> Option<Duration> {
        self.deadline
            .map(|d| d.saturating_duration_since(Instant::now()))
    }

    /// True when the deadline has passed.
    pub fn expired(&self) -> bool {
        self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Sleeps for `delay`, unless that would end at or after the deadline: then returns
    /// [`DeadlineReached`] at once, without sleeping.
    ///
    /// # Errors
    /// [`DeadlineReached`] when `now + delay` is not before the deadline.
    pub async fn pause(&self, delay: Duration) -> Result<(), DeadlineReached> {
        if let Some(deadline) = self.deadline
            && Instant::now() + delay >= deadline
        {
            return Err(DeadlineReached);
        }
        tokio::time::sleep(delay).await;
        Ok(())
    }
}

/// Parses a `Retry-After` value: delay-seconds (fractions allowed, as Graph sends `2.5`) or an
/// HTTP date (relative to `now`). Negative, non-finite or unparseable values give `None`.
pub fn parse_retry_after(value: &str, now: DateTime<Utc>) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0)
            .then(|| Duration::try_from_secs_f64(secs.min(MAX_RETRY_AFTER.as_secs_f64())).ok())
            .flatten();
    }
    let at = DateTime::parse_from_rfc2822(v).ok()?.with_timezone(&Utc);
    (at - now).to_std().ok().or(Some(Duration::ZERO))
}

/// A random 64-bit value for jitter (not for cryptography): std's randomly keyed hasher over a
/// process-wide counter.
fn random_u64() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let mut h = RandomState::new().build_hasher();
    h.write_u64(COUNTER.fetch_add(1, Ordering::Relaxed));
    h.finish()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_caps_grow_exponentially_up_to_max() {
        let p = RetryPolicy::default();
        assert_eq!(p.backoff_cap(0), Duration::from_millis(500));
        assert_eq!(p.backoff_cap(1), Duration::from_secs(1));
        assert_eq!(p.backoff_cap(3), Duration::from_secs(4));
        assert_eq!(p.backoff_cap(10), Duration::from_secs(30));
        assert_eq!(p.backoff_cap(200), Duration::from_secs(30));
    }

    #[test]
    fn full_jitter_stays_within_the_cap_and_varies() {
        let p = RetryPolicy::default();
        let samples: Vec<Duration> = (0..200).map(|_| p.backoff(2)).collect();
        assert!(samples.iter().all(|d| *d <= Duration::from_secs(2)));
        let distinct: std::collections::BTreeSet<_> = samples.iter().collect();
        assert!(distinct.len() > 150, "jitter is not random enough");
        assert!(samples.iter().any(|d| *d < Duration::from_millis(500)));
        assert!(samples.iter().any(|d| *d > Duration::from_millis(1500)));
    }

    #[test]
    fn retry_after_seconds_fractions_and_dates() {
        let now = Utc::now();
        assert_eq!(parse_retry_after("2", now), Some(Duration::from_secs(2)));
        assert_eq!(
            parse_retry_after(" 0.3 ", now),
            Some(Duration::from_millis(300))
        );
        assert_eq!(parse_retry_after("-1", now), None);
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("NaN", now), None);
        assert_eq!(parse_retry_after("100000", now), Some(MAX_RETRY_AFTER));
        let later = (now + chrono::Duration::seconds(10)).to_rfc2822();
        let d = parse_retry_after(&later, now).unwrap();
        assert!(
            d <= Duration::from_secs(10) && d >= Duration::from_secs(9),
            "{d:?}"
        );
        let past = (now - chrono::Duration::seconds(10)).to_rfc2822();
        assert_eq!(parse_retry_after(&past, now), Some(Duration::ZERO));
    }

    #[test]
    fn retry_after_wins_over_backoff() {
        let p = RetryPolicy::default();
        assert_eq!(
            p.delay(5, Some(Duration::from_millis(300))),
            Duration::from_millis(300)
        );
        assert!(p.delay(0, None) <= Duration::from_millis(500));
    }

    #[test]
    fn attempts_are_bounded() {
        let p = RetryPolicy {
            max_attempts: 3,
            ..RetryPolicy::default()
        };
        assert!(p.allows_another(1));
        assert!(p.allows_another(2));
        assert!(!p.allows_another(3));
        let zero = RetryPolicy {
            max_attempts: 0,
            ..RetryPolicy::default()
        };
        assert!(!zero.allows_another(1), "0 attempts behaves as 1");
    }

    #[tokio::test]
    async fn pause_refuses_to_sleep_past_the_deadline() {
        let p = RetryPolicy::default().with_deadline(Instant::now() + Duration::from_millis(100));
        let t = std::time::Instant::now();
        assert_eq!(p.pause(Duration::from_secs(5)).await, Err(DeadlineReached));
        assert!(
            t.elapsed() < Duration::from_millis(50),
            "it slept before refusing"
        );
        assert_eq!(p.pause(Duration::from_millis(10)).await, Ok(()));
        assert!(!p.expired());
        assert!(p.remaining().is_some());
    }
}
