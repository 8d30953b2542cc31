//! A cached access token and the settings that decide when it is refreshed and handed out.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::Timestamp;
use crate::models::AccessToken;
use crate::secret::SecretString;

/// When to refresh, how long a handed-out token must still live, how to back off, how many keys
/// to keep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheConfig {
    /// Refresh at `expiresAt - max(refresh_margin, refresh_fraction * lifetime)` (but never
    /// earlier than half-way through the token's life), brought forward by a random part of a
    /// fifth of that margin drawn by each cache, so that the processes of a fleet holding one
    /// token refresh at different moments. Default 5 minutes.
    pub refresh_margin: Duration,
    /// See `refresh_margin`. Default 0.10.
    pub refresh_fraction: f64,
    /// A token with less than this left is never handed out. Default 60 s.
    pub min_remaining: Duration,
    /// The first back-off after a failed fetch; it doubles per failure. Default 1 s.
    pub backoff_initial: Duration,
    /// The longest back-off. Default 5 minutes.
    pub backoff_max: Duration,
    /// A fetch not answered within this is presumed abandoned and another may start. Default
    /// 2 minutes (longer than any sane request timeout).
    pub fetch_timeout: Duration,
    /// The most keys kept; the least recently used is evicted beyond it. Default 10 000.
    pub max_entries: usize,
    /// The longest wait a server's `Retry-After` can impose on a mint (longer asks are cut to
    /// this). Default 5 minutes, as `backoff_max`.
    #[serde(default = "default_max_retry_after")]
    pub max_retry_after: Duration,
}

fn default_max_retry_after() -> Duration {
    Duration::from_secs(300)
}

impl Default for CacheConfig {
    fn default() -> Self {
        Self {
            refresh_margin: Duration::from_secs(300),
            refresh_fraction: 0.10,
            min_remaining: Duration::from_secs(60),
            backoff_initial: Duration::from_secs(1),
            backoff_max: Duration::from_secs(300),
            fetch_timeout: Duration::from_secs(120),
            max_entries: 10_000,
            max_retry_after: default_max_retry_after(),
        }
    }
}

/// A cached access token: cheap to clone (one reference count), redacted in `Debug`.
#[derive(Clone)]
pub struct Token(Arc<TokenInner>);

#[derive(Clone, Serialize, Deserialize)]
struct TokenInner {
    access: AccessToken,
    /// `expiresAt` moved onto the local clock.
    expires_local: Timestamp,
    /// When (locally) a refresh becomes due.
    refresh_at: Timestamp,
    /// How long it lived when it was received: the most life any fresh token of its kind has.
    #[serde(default)]
    lifetime: Duration,
}

impl Token {
    /// Makes a cached token from a freshly minted one, received at local time `now` from a server
    /// whose clock is `offset_ms` ahead of ours. Its local expiry is the earlier of `expiresAt`
    /// moved onto our clock and `now + (expiresAt - createdAt)`.
    pub fn new(access: AccessToken, now: Timestamp, offset_ms: i64, config: &CacheConfig) -> Self {
        // `expiresAt` on our clock, through the offset learned from `Date` (one-second
        // resolution); and, when `createdAt` is given, `now` plus the lifetime measured on the
        // registry's own clock (the token was made before we received it). The earlier wins.
        let mut expires_local = access.expires_at.offset_by(offset_ms.saturating_neg());
        if let Some(created) = access.created_at.filter(|created| *created < access.expires_at) {
            expires_local = expires_local.min(now.plus(access.expires_at.saturating_since(created)));
        }
        // The margin comes from the life the token has on our clock from now: a `createdAt` far
        // in the past (or a skewed one) must not put the refresh before the token was received.
        let lifetime = expires_local.saturating_since(now);
        let by_fraction = Duration::from_secs_f64(lifetime.as_secs_f64() * config.refresh_fraction.clamp(0.0, 1.0));
        let margin = config.refresh_margin.max(by_fraction).min(lifetime / 2);
        Self(Arc::new(TokenInner {
            access,
            expires_local,
            refresh_at: expires_local.minus(margin),
            lifetime,
        }))
    }

    /// This token with its refresh brought forward by a random part (drawn from `random`) of a
    /// fifth of its margin, never to before half its life: processes that hold the same token
    /// (read from a shared store) or that minted at the same moment then refresh at different
    /// moments, and a fleet's refreshes are spread instead of falling due together.
    pub(crate) fn with_refresh_spread(mut self, random: u64) -> Self {
        let inner = Arc::make_mut(&mut self.0);
        let margin = inner.expires_local.saturating_since(inner.refresh_at);
        let spread_ms = u64::try_from(margin.as_millis() / 5).unwrap_or(u64::MAX);
        let earliest = inner.expires_local.minus(inner.lifetime / 2);
        let early = Duration::from_millis(random % spread_ms.saturating_add(1));
        inner.refresh_at = inner.refresh_at.minus(early).max(earliest.min(inner.refresh_at));
        self
    }

    /// This token with its local expiry brought forward to `expiresAt` moved onto our clock
    /// through `offset_ms` (the server's clock ahead of ours), and its refresh brought forward
    /// as much; `None` when that is not earlier than the expiry it has.
    pub(crate) fn expiring_by_offset(&self, offset_ms: i64) -> Option<Self> {
        let by_offset = self.0.access.expires_at.offset_by(offset_ms.saturating_neg());
        if by_offset >= self.0.expires_local {
            return None;
        }
        let margin = self.0.expires_local.saturating_since(self.0.refresh_at);
        Some(Self(Arc::new(TokenInner {
            access: self.0.access.clone(),
            expires_local: by_offset,
            refresh_at: by_offset.minus(margin),
            lifetime: self.0.lifetime,
        })))
    }

    /// This token with its refresh put off until `until` (another process is refreshing it), but
    /// never to its expiry.
    pub(crate) fn refresh_deferred_to(&self, until: Timestamp) -> Self {
        let latest = self.0.expires_local.minus(Duration::from_millis(1));
        Self(Arc::new(TokenInner {
            refresh_at: until.min(latest).max(self.0.refresh_at),
            ..(*self.0).clone()
        }))
    }

    /// The token, for `Authorization: Bearer`.
    pub fn secret(&self) -> &SecretString {
        &self.0.access.token
    }

    /// Everything the registry said about it (permissions, ids, `expiresAt`).
    pub fn access_token(&self) -> &AccessToken {
        &self.0.access
    }

    /// When it expires, on the local clock.
    pub fn expires_local(&self) -> Timestamp {
        self.0.expires_local
    }

    /// When a refresh becomes due, on the local clock.
    pub fn refresh_at(&self) -> Timestamp {
        self.0.refresh_at
    }

    /// How much life it had when it was received: a caller who needs more than this from a
    /// fresh token of the same kind cannot be served.
    pub fn lifetime(&self) -> Duration {
        self.0.lifetime
    }

    /// How long it is still valid at local time `now`.
    pub fn remaining(&self, now: Timestamp) -> Duration {
        self.0.expires_local.saturating_since(now)
    }

    /// `{"token", "expiresAt", "permissions"}`: what a command-line tool prints for a token.
    /// Contains the secret on purpose; print it only where the user asked for the token.
    pub fn summary_json(&self) -> serde_json::Value {
        let access = &self.0.access;
        serde_json::json!({
            "token": access.token.expose(),
            "expiresAt": access.expires_at.to_rfc3339(),
            "permissions": access.permissions,
        })
    }

    /// Whether two handles are the same minted token.
    pub fn same_as(&self, other: &Token) -> bool {
        Arc::ptr_eq(&self.0, &other.0) || self.secret().ct_eq(other.secret().expose())
    }
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Token")
            .field("token", &self.0.access.token)
            .field("expires_at", &self.0.access.expires_at)
            .field("installation_id", &self.0.access.installation_id)
            .finish_non_exhaustive()
    }
}

impl Serialize for Token {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl<'de> Deserialize<'de> for Token {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        TokenInner::deserialize(d).map(|inner| Self(Arc::new(inner)))
    }
}
