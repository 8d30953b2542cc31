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
    /// [`CacheConfig::min_remaining`]: crate::CacheConfig::min_remaining
    pub fn hit(&mut self, scope: &TokenScope, now: Timestamp, min_life: Option<Duration>) -> Option<Token> {
        let token = self.ready_token(scope, now, min_life)?;
        self.count(Counter::Hit);
        Some(token)
    }

    /// The token [`hit`](Self::hit) hands out, without counting a hit (the hot path): `scope`'s
    /// cached token if it has at least `min_life` (default [`CacheConfig::min_remaining`]) left
    /// and needs nothing done (no refresh due, or one already in flight or backing off),
    /// changing nothing but a recency mark.
    ///
    /// The strictest of the three lookups: [`token_with_life`](Self::token_with_life) also
    /// answers once a refresh is due and nobody started it, and
    /// [`token_even_expired`](Self::token_even_expired) whatever the life left. The only one
    /// that takes an organization (one more map lookup: its installation's key).
    ///
    /// [`CacheConfig::min_remaining`]: crate::CacheConfig::min_remaining
    pub(crate) fn ready_token(
        &mut self,
        scope: &TokenScope,
        now: Timestamp,
        min_life: Option<Duration>,
    ) -> Option<Token> {
        if let TokenScope::Organization(org) = scope {
            return self.ready_organization_token(org, now, min_life);
        }
        self.cache.ready_token(scope, now, min_life)
    }

    /// [`ready_token`](Self::ready_token) for an organization: its installation's token. Apart,
    /// so that an installation's hit stays as short as it was.
    #[inline(never)]
    fn ready_organization_token(
        &mut self,
        organization: &OrganizationId,
        now: Timestamp,
        min_life: Option<Duration>,
    ) -> Option<Token> {
        let key = self.organizations.get(organization)?.installation.as_ref()?;
        self.cache.ready_token(key, now, min_life)
    }

    /// The token cached under `key` (the cache's key: an installation or the app, never an
    /// organization), whatever its life: expired or not, refresh due or not. Whether a token is
    /// held at all (a mint is then a refresh; a value read from the shared store may be the one
    /// held), and the life the registry gives tokens.
    pub(crate) fn token_even_expired(&self, key: &TokenScope) -> Option<Token> {
        self.cache.token_even_expired(key)
    }

    /// The token cached under `key` (the cache's key, never an organization) if it has at least
    /// `min_life` left at `now`, whether or not its refresh is due and started: what may still
    /// be handed out while someone else refreshes it (a background refresher, another process
    /// holding the store's lease), and whether a token just fetched is still the one cached.
    /// Looser than [`ready_token`](Self::ready_token), stricter than
    /// [`token_even_expired`](Self::token_even_expired).
    pub(crate) fn token_with_life(&self, key: &TokenScope, now: Timestamp, min_life: Duration) -> Option<Token> {
        self.cache.token_with_life(key, now, min_life)
    }

    /// The cache's answer for `scope` (see [`TokenCache::poll`](crate::cache::TokenCache::poll)).
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

    /// When a background refresher should next call [`start_refresh`](Self::start_refresh).
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
