//! The token cache as drivers and operations ask it: the hit, the other lookups, a scope's state,
//! and the cache's own poll machine (fetches, refreshes), each for a scope, an organization's
//! resolved to its installation's key.

use std::time::Duration;

use super::{App, TokenScope};
use crate::api::OrganizationId;
use crate::cache::{Poll, Token, TokenState};
use crate::clock::Timestamp;
use crate::ops::RequestId;
use crate::stats::Counter;

impl App {
    /// `scope`'s token state at `now` (for inspection: empty, fetching, valid, refreshing or
    /// failed).
    ///
    /// For an organization, its installation's token state; `Fetching` while its installation
    /// is being looked up, `Empty` before that (or once it was found gone).
    pub fn token_state(&self, scope: &TokenScope, now: Timestamp) -> TokenState {
        match self.cache_key(scope) {
            Some(key) => self.cache.state(key, now),
            None => match scope {
                TokenScope::Organization(org) if self.organizations.get(org).is_some_and(|o| o.lookup.is_some()) => {
                    TokenState::Fetching
                }
                _ => TokenState::Empty,
            },
        }
    }

    /// A cache hit: the token a [`GetToken`] for `scope` (with `min_life`, default
    /// [`CacheConfig::min_remaining`]) hands out at `now` with nothing to perform (no refresh
    /// due, the life asked for left), counted as a hit. `None` when there is more to do: then
    /// drive a [`GetToken`], whose first poll is this same call. Nothing changes but the entry's
    /// recency and the hit count.
    ///
    /// Drivers may call it before making an operation: the clients do, and the Python binding
    /// keeps the token's Python object beside it.
    ///
    /// [`GetToken`]: crate::GetToken
    pub fn hit(&mut self, scope: &TokenScope, now: Timestamp, min_life: Option<Duration>) -> Option<Token> {
        let token = self.peek_token(scope, now, min_life)?;
        self.count(Counter::Hit);
        Some(token)
    }

    /// The hot path: a cached token for `scope` with at least `min_life` left and no refresh
    /// due, changing nothing but a recency mark.
    ///
    /// An organization costs one more map lookup: its installation's key.
    pub(crate) fn peek_token(
        &mut self,
        scope: &TokenScope,
        now: Timestamp,
        min_life: Option<Duration>,
    ) -> Option<Token> {
        if let TokenScope::Organization(org) = scope {
            return self.peek_organization(org, now, min_life);
        }
        self.cache.peek(scope, now, min_life)
    }

    /// [`peek_token`](Self::peek_token) for an organization: its installation's token. Apart,
    /// so that an installation's hit stays as short as it was.
    #[inline(never)]
    fn peek_organization(
        &mut self,
        organization: &OrganizationId,
        now: Timestamp,
        min_life: Option<Duration>,
    ) -> Option<Token> {
        let key = self.organizations.get(organization)?.installation.as_ref()?;
        self.cache.peek(key, now, min_life)
    }

    /// `scope`'s cached token, whatever its life.
    pub(crate) fn cached_token(&self, scope: &TokenScope) -> Option<Token> {
        self.cache.cached(scope)
    }

    /// `scope`'s cached token if it has `min_life` left, refresh due or not.
    pub(crate) fn usable_token(&self, scope: &TokenScope, now: Timestamp, min_life: Duration) -> Option<Token> {
        self.cache.usable(scope, now, min_life)
    }

    /// The cache's answer for `scope` (see [`TokenCache::poll`]).
    pub(crate) fn poll_cache(&mut self, scope: &TokenScope, now: Timestamp, min_life: Option<Duration>) -> Poll {
        self.cache.poll(scope, now, min_life)
    }

    /// When the earliest mint in flight would be presumed abandoned, if one is in flight.
    pub(crate) fn mint_in_flight_until(&self, now: Timestamp) -> Option<Timestamp> {
        self.cache.in_flight_until(now)
    }

    /// A fresh id for a request that is not a mint.
    pub(crate) fn next_request_id(&mut self) -> RequestId {
        self.cache.next_request_id()
    }

    /// When a background refresher should next call [`poll_refresh`](Self::poll_refresh).
    pub(crate) fn poll_timeout(&self, now: Timestamp) -> Option<Timestamp> {
        self.cache.poll_timeout(now)
    }

    /// Starts a mint for the cached token whose refresh is most overdue (recorded as in flight);
    /// the caller signs it with [`mint_request`](Self::mint_request) once it knows the id.
    pub(crate) fn start_refresh(&mut self, now: Timestamp) -> Option<(RequestId, TokenScope)> {
        self.cache.poll_refresh(now)
    }

    /// How many scopes the cache holds.
    pub fn cached_scopes(&self) -> usize {
        self.cache.len()
    }

    /// Forgets `scope`'s recorded mint failure, so the next operation may mint at once (e.g.
    /// after a long `Retry-After` you know no longer applies). Returns whether there was one.
    pub fn clear_failure(&mut self, scope: &TokenScope) -> bool {
        match scope {
            TokenScope::Organization(org) => {
                let Some(o) = self.organizations.get_mut(org) else {
                    return false;
                };
                let failed = o.failed.take().is_some();
                match &o.installation {
                    Some(key) => self.cache.clear_failure(key) || failed,
                    None => failed,
                }
            }
            _ => self.cache.clear_failure(scope),
        }
    }
}
