//! Reading cached tokens without starting anything: the hit (with its memo of the last key hit,
//! which spares hashing a repeated key) and the two lookups the operations make besides.

use std::hash::Hash;
use std::time::Duration;

use super::{Token, TokenCache, alive_for};
use crate::clock::Timestamp;

impl<K: Clone + Eq + Hash> TokenCache<K> {
    /// The hot path: a cached token for `key` with at least `min_life` (default
    /// [`CacheConfig::min_remaining`]) left and no refresh due (or one already in flight or
    /// backing off), changing nothing but a recency mark. `None` means: call [`poll`](Self::poll).
    pub fn peek(&mut self, key: &K, now: Timestamp, min_life: Option<Duration>) -> Option<Token> {
        let min_life = min_life.unwrap_or(self.config.min_remaining);
        // The same checks as below, but for the state of the entry, which only matters once a
        // refresh is due (and then this path is not taken).
        if let Some((last, token)) = &self.last_hit
            && last == key
            && now < token.refresh_at()
            && alive_for(token, now, min_life)
        {
            return Some(token.clone());
        }
        let entry = self.entries.get_mut(key)?;
        let token = entry.token.as_ref().filter(|t| alive_for(t, now, min_life))?;
        let due = now >= token.refresh_at();
        if due && entry.in_flight.is_none() && entry.retry_due(now) {
            return None;
        }
        let token = token.clone();
        entry.referenced = true;
        if !due {
            self.last_hit = Some((key.clone(), token.clone()));
        }
        Some(token)
    }

    /// `key`'s cached token, whatever its life.
    pub fn cached(&self, key: &K) -> Option<Token> {
        self.entries.get(key)?.token.clone()
    }

    /// `key`'s cached token if it has at least `min_life` left at `now`, refresh due or not.
    pub fn usable(&self, key: &K, now: Timestamp, min_life: Duration) -> Option<Token> {
        self.entries.get(key)?.usable(now, min_life).cloned()
    }
}
