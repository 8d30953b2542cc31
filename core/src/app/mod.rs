//! [`App`]: one ICR app's whole sans-IO state (settings, key, clock offset, token cache), which
//! a transport drives.
//!
//! Build one with [`App::builder`] and drive it with the operations ([`crate::Operation`]) (see
//! the crate docs, "Driving the core yourself").
//!
//! One concept a file, as quinn-proto's `connection/`: the scope type (`scope`), the builder
//! (`builder`), the token cache as the operations ask it (`cached`), mints and their bookkeeping
//! (`mint`), signing with the app JWT and the clock-skew retry (`signing`), clock learning
//! (`clock`), forgetting what the registry took away (`forget`), the child of a fork (`fork`), organizations (`organization`), the shared store's state (`shared`), and refused
//! and revoked tokens (`revoke`). This file holds the [`App`] and its plain accessors.

mod builder;
mod cached;
mod clock;
mod forget;
mod fork;
mod mint;
mod organization;
mod revoke;
mod scope;
mod shared;
mod signing;
#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::fmt;

pub use builder::AppBuilder;
pub(crate) use mint::TokenAnswer;
pub(crate) use organization::OrganizationPoll;
use organization::OrganizationState;
pub use scope::TokenScope;
pub(crate) use shared::Shared;
pub(crate) use signing::{Signing, Unsigned};

use crate::api::{ApiConfig, OrganizationId};
use crate::cache::{CacheConfig, TokenCache};
use crate::clock::ClockOffset;
use crate::jwt::{AppId, JwtSigner};
use crate::ops::RequestId;
use crate::retry::RetryPolicy;
use crate::stats::{Counter, Stats};

/// One ICR app: its settings, signer, learned clock offset and token cache. No I/O.
///
/// Cloning is not offered: share one `App` (behind a lock) so every caller uses one cache.
pub struct App {
    api: ApiConfig,
    jwt: JwtSigner,
    offset: ClockOffset,
    cache: TokenCache<TokenScope>,
    /// What is remembered of each mint in flight: how it was signed, for the clock-skew retry.
    mints: HashMap<RequestId, Signing>,
    retry: RetryPolicy,
    background_refresh: bool,
    /// The shared token store, when a driver attached one.
    shared: Option<Shared>,
    /// The organizations named as scopes: their installations, and lookups in flight.
    organizations: HashMap<OrganizationId, OrganizationState>,
    stats: Stats,
    /// The change counter (see [`changes`](Self::changes)).
    changes: u64,
}

impl fmt::Debug for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("App")
            .field("base_url", &self.api.base_url())
            .field("app_id", self.jwt.app_id())
            .field("clock_offset_ms", &self.offset.millis)
            .field("cache", &self.cache)
            .finish()
    }
}

impl App {
    /// An app with the default cache settings and a fixed jitter seed; use
    /// [`with_cache`](Self::with_cache) to pass a random seed.
    pub(crate) fn new(api: ApiConfig, jwt: JwtSigner) -> Self {
        Self {
            api,
            jwt,
            offset: ClockOffset::default(),
            cache: TokenCache::new(CacheConfig::default(), 0),
            mints: HashMap::new(),
            retry: RetryPolicy::default(),
            background_refresh: false,
            shared: None,
            organizations: HashMap::new(),
            stats: Stats::default(),
            changes: 0,
        }
    }

    /// The change counter: it moves (by one or more, wrapping) whenever any operation on this
    /// app is reported to (`handle_response`, `handle_failure`, `handle_store`, and a
    /// `handle_signature` for the signing in flight) or abandoned, and whenever a poll ends something other operations
    /// wait for (a mint or an organization's lookup that fails or is given up in a poll, say
    /// after the signer of an app without its key failed).
    ///
    /// A [`Step::Wait`](crate::Step::Wait) carries the counter's value when the wait was
    /// decided: poll again once `changes()` differs from it (another operation reported back
    /// or was abandoned since, so what was waited for may be over), or at the wait's `until`.
    /// Read it under the same lock as the poll and the reports, so that no report is missed. A
    /// driver can wait on anything that compares two numbers (a C caller's loop, a JavaScript
    /// timer), or keep a wake-up of its own (a condition variable notified after every report).
    pub fn changes(&self) -> u64 {
        self.changes
    }

    /// An operation on this app was reported to or abandoned, or something others wait for
    /// ended: moves the change counter. Every [`Operation`](crate::Operation)'s `handle_*` and
    /// `abandon` call it, unless the operation already finished; so do the ends of mints and
    /// lookups.
    pub(crate) fn changed(&mut self) {
        self.changes = self.changes.wrapping_add(1);
    }

    /// How drivers retry failed mints.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// The API settings.
    pub fn api(&self) -> &ApiConfig {
        &self.api
    }

    /// The app id.
    pub fn app_id(&self) -> &AppId {
        self.jwt.app_id()
    }

    /// Whether the app JWT's signature is a step its driver performs
    /// ([`Step::Sign`](crate::Step::Sign)): the app was built without a key
    /// ([`App::builder_without_key`]). A driver that cannot sign refuses such an app.
    pub fn signs_outside(&self) -> bool {
        self.jwt.signs_outside()
    }

    /// What the app has done so far: hits, misses, mints, refreshes, failures by kind, waits,
    /// shared-store hits and fallbacks.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// Counts one thing that happened.
    pub(crate) fn count(&mut self, counter: Counter) {
        self.stats.count(counter);
    }

    /// The cache settings.
    pub fn cache_config(&self) -> &CacheConfig {
        self.cache.config()
    }

    /// Tells the app that a [`Refresher`](crate::Refresher) is running: a token whose
    /// refresh is due but which still has enough life is then handed out as it is, and the
    /// refresher renews it, so no caller waits for a refresh.
    pub fn set_background_refresh(&mut self, running: bool) {
        self.background_refresh = running;
    }

    /// Whether a [`Refresher`](crate::Refresher) is said to be running.
    pub(crate) fn background_refresh(&self) -> bool {
        self.background_refresh
    }
}
