//! Token state per key, driven like quinn-proto or str0m: ask what to do at `now`, perform the
//! I/O it asks for, hand the answer back.
//!
//! ```text
//!  poll(key, now) ──► Ready(token)                 use it
//!                 ──► Fetch { id }                 mint one (answer with handle_* for id)
//!                 ──► Wait { until }               another caller is minting; poll again then
//!                 ──► Failed { error, retry_at }   the last mint failed; no retry before retry_at
//! ```
//!
//! Per key the state is one of empty, fetching, valid, refreshing (a fetch in flight while the
//! old token still serves) and failed (with a retry time, possibly still holding a valid token).
//! At most one fetch is in flight per key; keys never wait on each other.
//!
//! One concept a file: the poll machine of fetches in flight (`poll`), refresh ahead (`refresh`),
//! failures and their back-off (`backoff`), the hit and its memo (`hit`), dropping tokens from
//! outside a fetch (`invalidate`), and the bound on entries (`lru`). This file holds the cache
//! and its entries.

mod backoff;
mod hit;
mod invalidate;
mod lru;
mod poll;
mod refresh;
mod token;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::time::Duration;

pub use poll::Poll;
pub use token::{CacheConfig, Token};

use crate::clock::Timestamp;
use crate::error::Error;
use crate::ops::RequestId;
use backoff::Failure;

/// A snapshot of one key's state, for inspection.
#[derive(Clone, Debug)]
pub enum TokenState {
    /// Nothing cached and nothing in flight.
    Empty,
    /// A first fetch is in flight.
    Fetching,
    /// A token is cached and no fetch is in flight.
    Valid(Token),
    /// A fetch is in flight while the cached token still serves.
    Refreshing(Token),
    /// The last fetch failed; `token` may still be usable.
    Failed {
        /// What went wrong.
        error: Error,
        /// When a new fetch may start.
        retry_at: Timestamp,
        /// The token still cached, if any.
        token: Option<Token>,
    },
}

/// One key's state.
#[derive(Debug)]
struct Entry {
    token: Option<Token>,
    in_flight: Option<(RequestId, Timestamp)>,
    /// Boxed: rare, and large inline.
    failure: Option<Box<Failure>>,
    /// Position in the recency index.
    tick: u64,
    /// Set by a hit ([`TokenCache::ready_token`]), which does not move the key in the recency index:
    /// gives the entry a second chance at eviction.
    referenced: bool,
}

impl Entry {
    /// The token, if it is alive at `now` with at least `min_life` left (a zero `min_life` still
    /// needs a live token).
    fn token_with_life(&self, now: Timestamp, min_life: Duration) -> Option<&Token> {
        self.token.as_ref().filter(|t| alive_for(t, now, min_life))
    }

    fn retry_due(&self, now: Timestamp) -> bool {
        self.failure.as_ref().is_none_or(|f| now >= f.retry_at)
    }
}

/// Whether `token` is alive at `now` with at least `min_life` left.
fn alive_for(token: &Token, now: Timestamp, min_life: Duration) -> bool {
    let left = token.remaining(now);
    left > Duration::ZERO && left >= min_life
}

/// Token state for many keys (e.g. one per installation). See the module docs.
pub struct TokenCache<K> {
    config: CacheConfig,
    entries: HashMap<K, Entry>,
    /// tick -> key, oldest first: the least recently used entry is the first one.
    recency: BTreeMap<u64, K>,
    in_flight: HashMap<RequestId, K>,
    /// The key the last hit served, with its token, so that a repeated hit on one key compares
    /// the key instead of hashing it (SipHash is most of a hit: about 20 of 60 ns). Emptied by
    /// every change to any cached token: set, shortened, invalidated, removed, evicted, drained.
    last_hit: Option<(K, Token)>,
    next_tick: u64,
    next_id: u64,
    rng: u64,
}

impl<K: fmt::Debug> fmt::Debug for TokenCache<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TokenCache")
            .field("entries", &self.entries.len())
            .field("in_flight", &self.in_flight.len())
            .finish_non_exhaustive()
    }
}

impl<K: Clone + Eq + Hash> TokenCache<K> {
    /// An empty cache. `seed` feeds the back-off jitter: pass randomness in production and a
    /// constant in tests.
    pub fn new(config: CacheConfig, seed: u64) -> Self {
        Self {
            config,
            entries: HashMap::new(),
            recency: BTreeMap::new(),
            in_flight: HashMap::new(),
            last_hit: None,
            next_tick: 0,
            next_id: 0,
            rng: seed ^ 0x9E37_79B9_7F4A_7C15,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &CacheConfig {
        &self.config
    }

    /// How many keys are cached.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// `key`'s state.
    pub fn state(&self, key: &K, now: Timestamp) -> TokenState {
        let Some(e) = self.entries.get(key) else {
            return TokenState::Empty;
        };
        match (&e.failure, &e.in_flight, &e.token) {
            (Some(f), None, token) if now < f.retry_at || token.is_none() => TokenState::Failed {
                error: f.error.clone(),
                retry_at: f.retry_at,
                token: token.clone(),
            },
            (_, Some(_), Some(t)) => TokenState::Refreshing(t.clone()),
            (_, Some(_), None) => TokenState::Fetching,
            (_, None, Some(t)) => TokenState::Valid(t.clone()),
            (_, None, None) => TokenState::Empty,
        }
    }
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
