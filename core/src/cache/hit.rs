//! Reading cached tokens without starting anything: the hit (with its memo of the last key hit,
//! which spares hashing a repeated key) and the two looser lookups the operations make besides.
//! Each is named for what it returns: [`TokenCache::ready_token`] (life left and nothing to do),
//! [`TokenCache::token_with_life`] (life left, refresh due or not), and
//! [`TokenCache::token_even_expired`] (whatever is cached).

use std::hash::Hash;
use std::time::Duration;

use super::{Token, TokenCache, alive_for};
use crate::clock::Timestamp;

impl<K: Clone + Eq + Hash> TokenCache<K> {
    /// The hot path, a hit: a cached token for `key` with at least `min_life` (default
    /// [`CacheConfig::min_remaining`](super::CacheConfig::min_remaining)) left and nothing to do
    /// (no refresh due, or one already in flight or backing off), changing nothing but a recency
    /// mark (and the memo of the last hit). `None` means: call [`poll`](Self::poll), which has
    /// something to start or to wait for.
    pub fn ready_token(&mut self, key: &K, now: Timestamp, min_life: Option<Duration>) -> Option<Token> {
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

    /// `key`'s cached token, whatever its life: expired or not, refresh due or not.
    pub fn token_even_expired(&self, key: &K) -> Option<Token> {
        self.entries.get(key)?.token.clone()
    }

    /// `key`'s cached token if it has at least `min_life` left at `now` (a zero `min_life` still
    /// needs a live token), whether or not its refresh is due and started: unlike
    /// [`ready_token`](Self::ready_token), a token due for a refresh nobody started is returned.
    pub fn token_with_life(&self, key: &K, now: Timestamp, min_life: Duration) -> Option<Token> {
        self.entries.get(key)?.token_with_life(now, min_life).cloned()
    }
}
