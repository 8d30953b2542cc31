//! Cached tokens dropped or cut short from outside a fetch: a newer server clock, a refused or
//! revoked token, a drain on shutdown.

use std::hash::Hash;

use super::{Token, TokenCache};

impl<K: Clone + Eq + Hash> TokenCache<K> {
    /// The server's clock was just seen `offset_ms` ahead of ours (from a `Date` header): every
    /// cached token whose `expiresAt`, moved onto our clock with that offset, comes before the
    /// local expiry it was cached with is brought forward to it (its refresh moves as much).
    /// Expiries only ever move earlier. Returns how many tokens moved.
    ///
    /// A token's local expiry is fixed when it is minted; if the server's clock then jumps
    /// forward (or ours steps back), the token dies on the server before it does here, and
    /// without this it would be handed out after the server considers it expired.
    pub fn observe_offset(&mut self, offset_ms: i64) -> usize {
        let mut moved = 0;
        for e in self.entries.values_mut() {
            if let Some(earlier) = e.token.as_ref().and_then(|t| t.expiring_by_offset(offset_ms)) {
                e.token = Some(earlier);
                moved += 1;
                self.last_hit = None;
            }
        }
        moved
    }

    /// Drops `key`'s cached token if it is `token` (a caller saw it rejected). A token minted
    /// since then is kept, so a late 401 for an old token cannot discard a fresh one.
    pub fn invalidate(&mut self, key: &K, token: &str) -> bool {
        match self.entries.get_mut(key) {
            Some(e) if e.token.as_ref().is_some_and(|t| t.secret().ct_eq(token)) => {
                e.token = None;
                self.last_hit = None;
                true
            }
            _ => false,
        }
    }

    /// Drops `token` wherever it is cached (after it was revoked). Returns the keys that held it.
    pub fn invalidate_everywhere(&mut self, token: &str) -> Vec<K> {
        let mut held = Vec::new();
        for (key, e) in &mut self.entries {
            if e.token.as_ref().is_some_and(|t| t.secret().ct_eq(token)) {
                e.token = None;
                held.push(key.clone());
                self.last_hit = None;
            }
        }
        held
    }

    /// Removes every key and returns the tokens that were cached (e.g. to revoke them).
    pub fn drain(&mut self) -> Vec<(K, Token)> {
        self.last_hit = None;
        self.recency.clear();
        self.in_flight.clear();
        self.entries
            .drain()
            .filter_map(|(k, e)| e.token.map(|t| (k, t)))
            .collect()
    }
}
