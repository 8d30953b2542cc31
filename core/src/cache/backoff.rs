//! Failed fetches: the back-off each failure starts (doubling, with "equal jitter" drawn from a
//! small seeded RNG, and the server's `Retry-After` up to a cap), and forgetting it.

use std::hash::Hash;
use std::time::Duration;

use super::TokenCache;
use crate::clock::{Timestamp, duration_ms};
use crate::error::Error;

#[derive(Clone, Debug)]
pub(super) struct Failure {
    pub(super) error: Error,
    pub(super) attempts: u32,
    pub(super) retry_at: Timestamp,
}

impl<K: Clone + Eq + Hash> TokenCache<K> {
    /// Forgets `key`'s recorded failure, so the next poll may fetch at once (a `Retry-After` the
    /// caller knows no longer applies).
    pub fn clear_failure(&mut self, key: &K) -> bool {
        self.entries.get_mut(key).is_some_and(|e| e.failure.take().is_some())
    }

    /// Records `error` with its back-off; returns it as recorded: a `Retry-After` it carries
    /// replaced by the wait imposed, so the error never names a wait that is not the one kept.
    pub(super) fn record_failure(&mut self, key: &K, mut error: Error, now: Timestamp) -> Error {
        let attempts = match self.entries.get(key) {
            Some(e) => e.failure.as_ref().map_or(0, |f| f.attempts) + 1,
            None => return error,
        };
        let base = self
            .config
            .backoff_initial
            .saturating_mul(1u32 << (attempts - 1).min(20))
            .min(self.config.backoff_max);
        // Jitter: between half and all of the back-off ("equal jitter").
        let half = duration_ms(base) / 2;
        let jitter = if half > 0 {
            (self.next_random() % (half as u64 + 1)) as i64
        } else {
            0
        };
        let mut delay_ms = half + jitter;
        if let Some(server) = error.retry_after() {
            // The server may ask for more than our back-off, but not for more than the cap: one
            // `Retry-After: 10000000` must not block a scope for days.
            delay_ms = delay_ms.max(duration_ms(server.min(self.config.max_retry_after)));
            error = error.with_retry_after(Duration::from_millis(delay_ms.unsigned_abs()));
        }
        if let Some(e) = self.entries.get_mut(key) {
            e.failure = Some(Box::new(Failure {
                error: error.clone(),
                attempts,
                retry_at: now.offset_by(delay_ms),
            }));
        }
        error
    }

    /// splitmix64: tiny, deterministic for a given seed, good enough for jitter.
    pub(super) fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}
