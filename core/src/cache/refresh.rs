//! Refresh ahead of expiry, for a background refresher: when the next refresh is due
//! ([`TokenCache::poll_timeout`]) and starting it ([`TokenCache::poll_refresh`]) while the old
//! token keeps serving.

use std::hash::Hash;

use super::{Entry, TokenCache};
use crate::clock::Timestamp;
use crate::ops::RequestId;

impl<K: Clone + Eq + Hash> TokenCache<K> {
    /// When a background refresher should next call [`poll_refresh`](Self::poll_refresh): the
    /// earliest refresh time (or retry time) of a cached token that is still alive at `now` and
    /// will be when it is due.
    pub fn poll_timeout(&self, now: Timestamp) -> Option<Timestamp> {
        self.entries.values().filter_map(|e| Self::refresh_due(e, now)).min()
    }

    /// When `e`'s token should be refreshed, if it is cached, alive at `now`, not being fetched,
    /// and still alive then.
    fn refresh_due(e: &Entry, now: Timestamp) -> Option<Timestamp> {
        let t = e.token.as_ref()?;
        if e.in_flight.is_some() || now >= t.expires_local() {
            return None;
        }
        let due = match &e.failure {
            Some(f) => f.retry_at.max(t.refresh_at()),
            None => t.refresh_at(),
        };
        (due < t.expires_local()).then_some(due)
    }

    /// Starts a fetch for one cached, still-valid token whose refresh is due at `now`; call it
    /// until it returns `None`. The old token keeps serving while the fetch runs.
    /// The most urgent first: the one due earliest.
    pub fn poll_refresh(&mut self, now: Timestamp) -> Option<(RequestId, K)> {
        let (key, entry) = self
            .entries
            .iter_mut()
            .filter_map(|(k, e)| {
                Self::refresh_due(e, now)
                    .filter(|due| *due <= now)
                    .map(|due| (due, k, e))
            })
            .min_by_key(|(due, _, _)| *due)
            .map(|(_, k, e)| (k, e))?;
        let id = RequestId(self.next_id);
        self.next_id += 1;
        entry.in_flight = Some((id, now));
        self.in_flight.insert(id, key.clone());
        Some((id, key.clone()))
    }
}
