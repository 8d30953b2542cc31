//! The cache's own poll machine, one fetch in flight per key: [`TokenCache::poll`] says what to do
//! for a key ([`Poll`]), and the answers to a fetch come back by its id
//! ([`TokenCache::handle_token`], [`TokenCache::handle_error`], [`TokenCache::defer`]). A fetch
//! not answered within `fetch_timeout` is presumed abandoned.

use std::hash::Hash;
use std::time::Duration;

use super::{Token, TokenCache};
use crate::clock::Timestamp;
use crate::error::{Error, TransportErrorKind};
use crate::models::AccessToken;
use crate::ops::RequestId;

/// What to do now for one key.
#[derive(Debug)]
#[must_use = "a Fetch must be performed and answered, or the key stays busy until fetch_timeout"]
pub enum Poll {
    /// A token with at least the asked-for life left.
    Ready(Token),
    /// Mint a token and answer with [`TokenCache::handle_token`] or [`TokenCache::handle_error`].
    Fetch {
        /// The id to answer with.
        id: RequestId,
    },
    /// Another fetch for this key is in flight: poll again when it is answered, or at `until`
    /// (when it would be presumed abandoned).
    Wait {
        /// When to poll again at the latest.
        until: Timestamp,
    },
    /// The last fetch failed and no usable token is left; no new fetch before `retry_at`.
    Failed {
        /// What went wrong.
        error: Error,
        /// When a poll will start a new fetch.
        retry_at: Timestamp,
    },
}

impl<K: Clone + Eq + Hash> TokenCache<K> {
    /// A fresh id for a request that is not a fetch (ids are never reused).
    pub(crate) fn next_request_id(&mut self) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        id
    }

    /// What to do for `key` at `now`, handing out only tokens with at least `min_life` (default
    /// [`CacheConfig::min_remaining`](super::CacheConfig::min_remaining)) left.
    pub fn poll(&mut self, key: &K, now: Timestamp, min_life: Option<Duration>) -> Poll {
        let min_life = min_life.unwrap_or(self.config.min_remaining);
        self.touch(key);
        let fetch_timeout = self.config.fetch_timeout;
        let Some(entry) = self.entries.get_mut(key) else {
            unreachable!("touch inserts the key")
        };
        let usable = entry.token_with_life(now, min_life).cloned();
        if let Some((id, started)) = entry.in_flight {
            let until = started.plus(fetch_timeout);
            if now < until {
                return match usable {
                    Some(t) => Poll::Ready(t),
                    None => Poll::Wait { until },
                };
            }
            // Presumed abandoned: its answer, if it ever comes, is refused.
            entry.in_flight = None;
            self.in_flight.remove(&id);
        }
        if let Some(f) = &entry.failure
            && now < f.retry_at
        {
            return match usable {
                Some(t) => Poll::Ready(t),
                None => Poll::Failed {
                    error: f.error.clone(),
                    retry_at: f.retry_at,
                },
            };
        }
        match usable {
            Some(t) if now < t.refresh_at() => Poll::Ready(t),
            _ => {
                let id = RequestId(self.next_id);
                self.next_id += 1;
                entry.in_flight = Some((id, now));
                self.in_flight.insert(id, key.clone());
                Poll::Fetch { id }
            }
        }
    }

    /// Answers fetch `id` with a minted token received at `now` from a server whose clock is
    /// `offset_ms` ahead of ours. Returns the cached handle.
    pub fn handle_token(
        &mut self,
        id: RequestId,
        access: AccessToken,
        now: Timestamp,
        offset_ms: i64,
    ) -> Result<Token, Error> {
        let key = self.take_in_flight(id)?;
        let token = Token::new(access, now, offset_ms, &self.config).with_refresh_spread(self.next_random());
        if token.remaining(now) == Duration::ZERO {
            let error = Error::MalformedBody {
                status: 200,
                problem: format!(
                    "the registry issued a token that is already expired (expiresAt {})",
                    token.access_token().expires_at
                ),
                excerpt: String::new(),
            };
            return Err(self.record_failure(&key, error, now));
        }
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.token = Some(token.clone());
            self.last_hit = None;
            entry.failure = None;
        }
        Ok(token)
    }

    /// Ends fetch `id` without a new token: another process is refreshing it. The cached token
    /// keeps serving, and its refresh is put off until `until`.
    pub fn defer(&mut self, id: RequestId, until: Timestamp) -> Result<(), Error> {
        let key = self.take_in_flight(id)?;
        if let Some(entry) = self.entries.get_mut(&key)
            && let Some(token) = &entry.token
        {
            entry.token = Some(token.refresh_deferred_to(until));
            self.last_hit = None;
        }
        Ok(())
    }

    /// Answers fetch `id` with a failure. A cancelled fetch leaves no trace; any other starts
    /// (or lengthens) a back-off with jitter, honouring the server's `Retry-After` up to
    /// [`CacheConfig::max_retry_after`](super::CacheConfig::max_retry_after). A still-valid token stays cached and keeps being handed
    /// out. Returns the error for the caller: when the server sent `Retry-After`, it states the
    /// wait imposed (capped, or a longer back-off), not the one asked for.
    pub fn handle_error(&mut self, id: RequestId, error: Error, now: Timestamp) -> Result<Error, Error> {
        let key = self.take_in_flight(id)?;
        if !matches!(
            error,
            Error::Transport {
                kind: TransportErrorKind::Cancelled,
                ..
            }
        ) {
            return Ok(self.record_failure(&key, error, now));
        }
        Ok(error)
    }

    /// The latest time a live fetch in flight (one not yet presumed abandoned at `now`) would be
    /// presumed abandoned, if any is live.
    pub fn in_flight_until(&self, now: Timestamp) -> Option<Timestamp> {
        self.entries
            .values()
            .filter_map(|e| e.in_flight.map(|(_, started)| started.plus(self.config.fetch_timeout)))
            .filter(|until| *until > now)
            .max()
    }

    /// The fetches waiting for an answer.
    pub(crate) fn in_flight_ids(&self) -> Vec<RequestId> {
        self.in_flight.keys().copied().collect()
    }

    /// Seeds the back-off jitter anew (the child of a fork: see `App::after_fork`).
    pub(crate) fn reseed(&mut self, seed: u64) {
        self.rng = seed ^ 0x9E37_79B9_7F4A_7C15;
    }

    /// Which key fetch `id` is for, if it is still waiting for an answer.
    pub fn key_of(&self, id: RequestId) -> Option<&K> {
        self.in_flight.get(&id)
    }

    /// Ends fetch `id`, marks its key most recently used and, now that it can be evicted again,
    /// brings the cache back under its cap.
    fn take_in_flight(&mut self, id: RequestId) -> Result<K, Error> {
        let key = self.in_flight.remove(&id).ok_or(Error::UnknownRequest(id.0))?;
        if let Some(e) = self.entries.get_mut(&key) {
            if e.in_flight.is_some_and(|(i, _)| i == id) {
                e.in_flight = None;
            }
            self.touch(&key);
            self.evict_to(self.cap());
        }
        Ok(key)
    }
}
