//! How long a client waits for a failed mint to become retryable before giving up.

use std::time::Duration;

use crate::clock::Timestamp;
use crate::error::Error;

/// When a client should wait and try a failed token mint again.
///
/// Only retryable failures (429, 5xx, dropped or timed-out connections) are retried, at the
/// time the token state machine allows (back-off with jitter, or the server's `Retry-After`),
/// and only while the total wait stays within `max_wait`.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RetryPolicy {
    /// The most attempts per call, the first included. Default 4.
    pub max_attempts: u32,
    /// The longest a call waits in total between attempts. Default 30 s.
    pub max_wait: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: 4,
            max_wait: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// No retries: every failure is returned at once.
    pub fn never() -> Self {
        Self {
            max_attempts: 1,
            max_wait: Duration::ZERO,
        }
    }

    /// How long to sleep before polling again, after `attempts` attempts and `waited` so far,
    /// for `error` which may be retried at `retry_at`; `None` means give up and return `error`.
    pub fn delay(
        &self,
        attempts: u32,
        waited: Duration,
        error: &Error,
        retry_at: Timestamp,
        now: Timestamp,
    ) -> Option<Duration> {
        if !error.is_retryable() || attempts >= self.max_attempts {
            return None;
        }
        let delay = retry_at.saturating_since(now);
        (waited + delay <= self.max_wait).then_some(delay)
    }
}

impl RetryPolicy {
    /// How long to wait before resending a one-off request that failed with `error` after
    /// `attempts` attempts and `waited` so far: the server's `Retry-After`, else 0.5 s doubling
    /// per attempt; `None` means give up.
    pub fn call_delay(&self, attempts: u32, waited: Duration, error: &Error) -> Option<Duration> {
        let backoff = error
            .retry_after()
            .unwrap_or(Duration::from_millis(250) * 2u32.pow(attempts.min(8)));
        if !error.is_retryable() || attempts >= self.max_attempts || waited + backoff > self.max_wait {
            return None;
        }
        Some(backoff)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiMessage;

    #[test]
    fn retries_only_what_can_succeed_within_budget() {
        let p = RetryPolicy::default();
        let now = Timestamp::from_unix_seconds(100);
        let busy = Error::Server {
            status: 503,
            retry_after: None,
            api: ApiMessage::default(),
        };
        assert_eq!(
            p.delay(1, Duration::ZERO, &busy, now.plus(Duration::from_secs(2)), now),
            Some(Duration::from_secs(2))
        );
        assert_eq!(p.delay(4, Duration::ZERO, &busy, now, now), None, "attempts used up");
        assert_eq!(
            p.delay(1, Duration::from_secs(29), &busy, now.plus(Duration::from_secs(2)), now),
            None,
            "budget"
        );
        let denied = Error::Forbidden {
            api: ApiMessage::default(),
        };
        assert_eq!(p.delay(1, Duration::ZERO, &denied, now, now), None);
        assert_eq!(RetryPolicy::never().delay(1, Duration::ZERO, &busy, now, now), None);
        assert_eq!(p.call_delay(1, Duration::ZERO, &busy), Some(Duration::from_millis(500)));
        assert_eq!(p.call_delay(2, Duration::ZERO, &busy), Some(Duration::from_secs(1)));
        let limited = Error::RateLimited {
            retry_after: Some(Duration::from_secs(3)),
            api: ApiMessage::default(),
        };
        assert_eq!(p.call_delay(1, Duration::ZERO, &limited), Some(Duration::from_secs(3)));
        assert_eq!(p.call_delay(1, Duration::from_secs(28), &limited), None);
        assert_eq!(p.call_delay(1, Duration::ZERO, &denied), None);
    }
}
