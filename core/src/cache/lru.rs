//! The cache's bound: least-recently-used eviction with a second chance for entries hit since
//! they were last moved, never evicting an entry with a fetch in flight.

use std::hash::Hash;

#[cfg(test)]
use super::Token;
use super::{Entry, TokenCache};

/// The most keys a cache holds, whatever `max_entries` says.
const MAX_KEYS: usize = 1 << 31;

impl<K: Clone + Eq + Hash> TokenCache<K> {
    /// Forgets `key` entirely (an in-flight fetch's answer will be refused). Returns its token.
    #[cfg(test)]
    pub fn remove(&mut self, key: &K) -> Option<Token> {
        let entry = self.entries.remove(key)?;
        self.last_hit = None;
        self.recency.remove(&entry.tick);
        if let Some((id, _)) = entry.in_flight {
            self.in_flight.remove(&id);
        }
        entry.token
    }

    /// The most keys kept: `max_entries`, at least 1 and at most [`MAX_KEYS`].
    pub(super) fn cap(&self) -> usize {
        self.config.max_entries.clamp(1, MAX_KEYS)
    }

    /// Marks `key` most recently used, inserting it (and evicting beyond the cap) if new.
    pub(super) fn touch(&mut self, key: &K) {
        let tick = self.next_tick;
        self.next_tick += 1;
        if let Some(e) = self.entries.get_mut(key) {
            self.recency.remove(&e.tick);
            e.tick = tick;
            e.referenced = false;
            self.recency.insert(tick, key.clone());
            return;
        }
        self.evict_to(self.cap() - 1);
        self.entries.insert(
            key.clone(),
            Entry {
                token: None,
                in_flight: None,
                failure: None,
                tick,
                referenced: false,
            },
        );
        self.recency.insert(tick, key.clone());
    }

    /// Evicts least-recently-used entries until at most `target` remain. Entries hit through
    /// [`ready_token`](Self::ready_token) since they were last moved get a second chance; entries with a fetch in flight
    /// are kept (so the cap can be exceeded by the number of fetches in flight).
    pub(super) fn evict_to(&mut self, target: usize) {
        let mut budget = self.recency.len() * 2;
        while self.entries.len() > target && budget > 0 {
            budget -= 1;
            let Some((_, key)) = self.recency.pop_first() else {
                break;
            };
            let Some(entry) = self.entries.get_mut(&key) else {
                continue;
            };
            if entry.in_flight.is_some() || std::mem::take(&mut entry.referenced) {
                entry.tick = self.next_tick;
                self.next_tick += 1;
                self.recency.insert(entry.tick, key);
            } else {
                self.entries.remove(&key);
                self.last_hit = None;
            }
        }
    }
}
