//! Token state per key, driven like quinn-proto or str0m: ask what to do at `now`, perform the
//! I/O it asks for, hand the answer back.
//!
//! ```text
//!  poll(key, now) ──► Ready(token)                 use it
//!                 ──► Fetch { id, stale }          mint one (answer with handle_* for id)
//!                 ──► Wait { until }               another caller is minting; poll again then
//!                 ──► Failed { error, retry_at }   the last mint failed; no retry before retry_at
//! ```
//!
//! Per key the state is one of empty, fetching, valid, refreshing (a fetch in flight while the
//! old token still serves) and failed (with a retry time, possibly still holding a valid token).
//! At most one fetch is in flight per key; keys never wait on each other.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::clock::{Timestamp, duration_ms};
use crate::error::{Error, TransportErrorKind};
use crate::models::AccessToken;
use crate::secret::SecretString;

/// Identifies one fetch handed out by [`TokenCache::poll`]; answer it exactly once.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// When to refresh, how long a handed-out token must still live, how to back off, how many keys
/// to keep.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheConfig {
    /// Refresh at `expiresAt - max(refresh_margin, refresh_fraction * lifetime)` (but never
    /// earlier than half-way through the token's life). Default 5 minutes.
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
        let lifetime = match access.created_at {
            Some(created) if created < access.expires_at => {
                let lifetime = access.expires_at.saturating_since(created);
                expires_local = expires_local.min(now.plus(lifetime));
                lifetime
            }
            _ => expires_local.saturating_since(now),
        };
        let by_fraction = Duration::from_secs_f64(lifetime.as_secs_f64() * config.refresh_fraction.clamp(0.0, 1.0));
        let margin = config.refresh_margin.max(by_fraction).min(lifetime / 2);
        Self(Arc::new(TokenInner {
            access,
            expires_local,
            refresh_at: expires_local.minus(margin),
        }))
    }

    /// This token with its local expiry brought forward to `expiresAt` moved onto our clock
    /// through `offset_ms` (the server's clock ahead of ours), and its refresh brought forward
    /// as much; `None` when that is not earlier than the expiry it has.
    fn expiring_by_offset(&self, offset_ms: i64) -> Option<Self> {
        let by_offset = self.0.access.expires_at.offset_by(offset_ms.saturating_neg());
        if by_offset >= self.0.expires_local {
            return None;
        }
        let margin = self.0.expires_local.saturating_since(self.0.refresh_at);
        Some(Self(Arc::new(TokenInner {
            access: self.0.access.clone(),
            expires_local: by_offset,
            refresh_at: by_offset.minus(margin),
        })))
    }

    /// The same token in a handle of its own (its own reference count), for one thread's hot
    /// slot: threads cloning one shared handle would move its count's cache line between cores
    /// on every hit.
    fn replica(&self) -> Self {
        Self(Arc::new(TokenInner::clone(&self.0)))
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

/// What to do now for one key.
#[derive(Debug)]
#[must_use = "a Fetch must be performed and answered, or the key stays busy until fetch_timeout"]
pub enum Poll {
    /// A token with at least the asked-for life left.
    Ready(Token),
    /// Mint a token and answer with [`TokenCache::handle_token`] or [`TokenCache::handle_error`].
    Fetch {
        /// The id to answer with.
        id: RequestId,
        /// A still-usable token the caller may use while the refresh runs (background refresh).
        stale: Option<Token>,
    },
    /// Another fetch for this key is in flight: poll again when it is answered, or at `until`
    /// (when it would be presumed abandoned).
    Wait {
        /// When to poll again at the latest.
        until: Timestamp,
    },
    /// The last fetch failed and no usable token is left; no new fetch before `retry_at`.
    Failed {
        /// What went wrong.
        error: Error,
        /// When a poll will start a new fetch.
        retry_at: Timestamp,
    },
}

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

#[derive(Clone, Debug)]
struct Failure {
    error: Error,
    attempts: u32,
    retry_at: Timestamp,
}

/// A key's value in the map: only what a hit reads, so a hit touches the map's slot and the
/// token's reference count and nothing else. The rest of the key's state is in [`Meta`], which
/// only the state machine reads. Measured at 1 M keys (`BENCHMARKS.md`, scale): one slot holding
/// everything cost a hit about 5 ns more, and reading the times from the token about 13 ns more.
#[derive(Debug)]
struct Entry {
    /// Set only through [`Entry::set_token`], which keeps the two copies below in step.
    token: Option<Token>,
    /// The token's [`Token::expires_local`] (meaningless without a token).
    expires_local: Timestamp,
    /// The token's [`Token::refresh_at`] (meaningless without a token).
    refresh_at: Timestamp,
    /// Where this key's [`Meta`] is in `TokenCache::meta`.
    meta: u32,
    /// Set by lock-free reads ([`TokenCache::peek`]); gives the entry a second chance at eviction.
    referenced: AtomicBool,
}

/// The part of a key's state that a hit does not read.
#[derive(Debug, Default)]
struct Meta {
    in_flight: Option<(RequestId, Timestamp)>,
    /// Boxed: rare, and 88 bytes inline would more than double every key's `Meta`.
    failure: Option<Box<Failure>>,
    /// Position in the recency index.
    tick: u64,
}

/// The most keys a cache holds, whatever `max_entries` says: a key's [`Meta`] index is a `u32`,
/// and this leaves as many again for keys kept past the cap while a fetch is in flight.
const MAX_KEYS: usize = 1 << 31;

/// How many hot slots a cache has; threads beyond this share them.
const HOT_SLOTS: usize = 16;

/// One thread's copy of the token it keeps asking for. When several threads hit the same key,
/// each clones its own copy, so no reference count is shared between cores. A thread that hits
/// many keys in turn never fills its slot, and then pays two plain loads and a store for it: no
/// lock, no atomic read-modify-write. Emptied whenever a cached token changes or goes.
struct HotSlot<K> {
    /// Whether `held` may hold a copy (read without the lock).
    filled: AtomicBool,
    /// The token this thread last got from the map (as an address, compared only): a copy is
    /// made the second time in a row, not for a key seen once.
    last_seen: AtomicUsize,
    /// The key and its token's own copy.
    held: Mutex<Option<(K, Token)>>,
}

impl<K: Eq + Clone> HotSlot<K> {
    fn new() -> Self {
        Self {
            filled: AtomicBool::new(false),
            last_seen: AtomicUsize::new(0),
            held: Mutex::new(None),
        }
    }

    fn serve(&self, key: &K, now: Timestamp, min_life: Duration) -> Option<Token> {
        if !self.filled.load(Ordering::Relaxed) {
            return None;
        }
        // Another thread on the same slot: skip the slot rather than wait.
        let held = self.held.try_lock().ok()?;
        let (k, token) = held.as_ref()?;
        (k == key && now < token.refresh_at() && token.remaining(now) >= min_life).then(|| token.clone())
    }

    /// `token` was found for `key` in the map: returns a copy of it to hand out instead, if
    /// this thread found it the time before too (the copy then serves its hits).
    fn saw(&self, key: &K, token: &Token) -> Option<Token> {
        let seen = Arc::as_ptr(&token.0) as usize;
        if self.last_seen.load(Ordering::Relaxed) != seen {
            self.last_seen.store(seen, Ordering::Relaxed);
            return None;
        }
        let mut held = self.held.try_lock().ok()?;
        let copy = token.replica();
        *held = Some((key.clone(), copy.clone()));
        self.filled.store(true, Ordering::Relaxed);
        Some(copy)
    }

    fn clear(&mut self) {
        *self.held.get_mut().unwrap_or_else(PoisonError::into_inner) = None;
        *self.filled.get_mut() = false;
        *self.last_seen.get_mut() = 0;
    }

    fn holds(&mut self, key: &K) -> bool {
        let held = self.held.get_mut().unwrap_or_else(PoisonError::into_inner);
        held.as_ref().is_some_and(|(k, ..)| k == key)
    }
}

/// A hot slot on a cache line (two, for the adjacent-line prefetcher) of its own.
#[repr(align(128))]
struct Padded<T>(T);

/// The calling thread's hot slot.
fn hot_slot() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    // `const`-initialised, so reading it needs no lazy-initialisation check; `HOT_SLOTS` means
    // "not given one yet".
    thread_local!(static SLOT: std::cell::Cell<usize> = const { std::cell::Cell::new(HOT_SLOTS) });
    SLOT.with(|slot| {
        if slot.get() == HOT_SLOTS {
            slot.set(NEXT.fetch_add(1, Ordering::Relaxed) % HOT_SLOTS);
        }
        slot.get()
    })
}

impl Entry {
    fn new(meta: u32) -> Self {
        Self {
            token: None,
            expires_local: Timestamp::from_unix_seconds(0),
            refresh_at: Timestamp::from_unix_seconds(0),
            meta,
            referenced: AtomicBool::new(false),
        }
    }

    fn set_token(&mut self, token: Option<Token>) {
        if let Some(t) = &token {
            self.expires_local = t.expires_local();
            self.refresh_at = t.refresh_at();
        }
        self.token = token;
    }

    fn usable(&self, now: Timestamp, min_life: Duration) -> Option<&Token> {
        self.token
            .as_ref()
            .filter(|_| self.expires_local.saturating_since(now) >= min_life)
    }
}

/// Token state for many keys (e.g. one per installation). See the module docs.
pub struct TokenCache<K> {
    config: CacheConfig,
    entries: HashMap<K, Entry>,
    /// Indexed by [`Entry::meta`]; slots listed in `free_meta` belong to no key.
    meta: Vec<Meta>,
    free_meta: Vec<u32>,
    /// tick -> key, oldest first: the least recently used entry is the first one.
    recency: BTreeMap<u64, K>,
    in_flight: HashMap<RequestId, K>,
    /// Indexed by [`hot_slot`].
    hot: Box<[Padded<HotSlot<K>>]>,
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
            meta: Vec::new(),
            free_meta: Vec::new(),
            recency: BTreeMap::new(),
            in_flight: HashMap::new(),
            hot: (0..HOT_SLOTS).map(|_| Padded(HotSlot::new())).collect(),
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

    /// Whether no key is cached.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The hot path: a cached token for `key` with at least `min_life` (default
    /// [`CacheConfig::min_remaining`]) left and no refresh due, without changing any state but
    /// a recency mark and the calling thread's hot slot. `None` means: call [`poll`](Self::poll).
    ///
    /// Needs only `&self`: threads can share the cache behind a read lock. A thread that keeps
    /// asking for the same key gets its own copy of the handle, so threads hitting one key do
    /// not contend on its reference count.
    pub fn peek(&self, key: &K, now: Timestamp, min_life: Option<Duration>) -> Option<Token> {
        let min_life = min_life.unwrap_or(self.config.min_remaining);
        let slot = &self.hot[hot_slot()].0;
        if let Some(token) = slot.serve(key, now, min_life) {
            return Some(token);
        }
        let entry = self.entries.get(key)?;
        let token = entry.usable(now, min_life)?;
        if now >= entry.refresh_at {
            let meta = &self.meta[entry.meta as usize];
            if meta.in_flight.is_none() && meta.failure.as_ref().is_none_or(|f| now >= f.retry_at) {
                return None;
            }
        }
        if !entry.referenced.load(Ordering::Relaxed) {
            entry.referenced.store(true, Ordering::Relaxed);
        }
        if now < entry.refresh_at
            && let Some(copy) = slot.saw(key, token)
        {
            return Some(copy);
        }
        Some(token.clone())
    }

    /// Empties every hot slot: a cached token changed or went (the copies are dropped, and
    /// their secrets zeroed, now).
    fn clear_hot(&mut self) {
        for slot in self.hot.iter_mut() {
            slot.0.clear();
        }
    }

    /// Whether some thread's hot slot holds `key` (it is in use, though not through the map).
    fn hot_holds(hot: &mut [Padded<HotSlot<K>>], key: &K) -> bool {
        hot.iter_mut().any(|slot| slot.0.holds(key))
    }

    /// What to do for `key` at `now`, handing out only tokens with at least `min_life` (default
    /// [`CacheConfig::min_remaining`]) left.
    pub fn poll(&mut self, key: &K, now: Timestamp, min_life: Option<Duration>) -> Poll {
        let min_life = min_life.unwrap_or(self.config.min_remaining);
        let meta = self.touch(key);
        let meta = &mut self.meta[meta];
        let usable = self.entries.get(key).and_then(|e| e.usable(now, min_life)).cloned();
        if let Some((id, started)) = meta.in_flight {
            let until = started.plus(self.config.fetch_timeout);
            if now < until {
                return match usable {
                    Some(t) => Poll::Ready(t),
                    None => Poll::Wait { until },
                };
            }
            // Presumed abandoned: its answer, if it ever comes, is refused.
            meta.in_flight = None;
            self.in_flight.remove(&id);
        }
        if let Some(f) = &meta.failure
            && now < f.retry_at
        {
            return match usable {
                Some(t) => Poll::Ready(t),
                None => Poll::Failed {
                    error: f.error.clone(),
                    retry_at: f.retry_at,
                },
            };
        }
        match usable {
            Some(t) if now < t.refresh_at() => Poll::Ready(t),
            stale => {
                let id = RequestId(self.next_id);
                self.next_id += 1;
                meta.in_flight = Some((id, now));
                self.in_flight.insert(id, key.clone());
                Poll::Fetch { id, stale }
            }
        }
    }

    /// Answers fetch `id` with a minted token received at `now` from a server whose clock is
    /// `offset_ms` ahead of ours. Returns the cached handle.
    pub fn handle_token(
        &mut self,
        id: RequestId,
        access: AccessToken,
        now: Timestamp,
        offset_ms: i64,
    ) -> Result<Token, Error> {
        let key = self.take_in_flight(id)?;
        let token = Token::new(access, now, offset_ms, &self.config);
        if token.remaining(now) == Duration::ZERO {
            let error = Error::MalformedBody {
                status: 200,
                problem: format!(
                    "the registry issued a token that is already expired (expiresAt {})",
                    token.access_token().expires_at
                ),
                excerpt: String::new(),
            };
            self.record_failure(&key, error.clone(), now);
            return Err(error);
        }
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.set_token(Some(token.clone()));
            self.meta[entry.meta as usize].failure = None;
        }
        self.clear_hot();
        Ok(token)
    }

    /// Answers fetch `id` with a failure. A cancelled fetch leaves no trace; any other starts
    /// (or lengthens) a back-off with jitter, honouring the server's `Retry-After`. A still-valid
    /// token stays cached and keeps being handed out. Returns the error for the caller.
    pub fn handle_error(&mut self, id: RequestId, error: Error, now: Timestamp) -> Result<Error, Error> {
        let key = self.take_in_flight(id)?;
        if !matches!(
            error,
            Error::Transport {
                kind: TransportErrorKind::Cancelled,
                ..
            }
        ) {
            self.record_failure(&key, error.clone(), now);
        }
        Ok(error)
    }

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
                e.set_token(Some(earlier));
                moved += 1;
            }
        }
        if moved > 0 {
            self.clear_hot();
        }
        moved
    }

    /// Drops `key`'s cached token if it is `token` (a caller saw it rejected). A token minted
    /// since then is kept, so a late 401 for an old token cannot discard a fresh one.
    pub fn invalidate(&mut self, key: &K, token: &str) -> bool {
        match self.entries.get_mut(key) {
            Some(e) if e.token.as_ref().is_some_and(|t| t.secret().ct_eq(token)) => {
                e.set_token(None);
                self.clear_hot();
                true
            }
            _ => false,
        }
    }

    /// Drops `token` wherever it is cached (after it was revoked). Returns how many keys held it.
    pub fn invalidate_everywhere(&mut self, token: &str) -> usize {
        let mut dropped = 0;
        for e in self.entries.values_mut() {
            if e.token.as_ref().is_some_and(|t| t.secret().ct_eq(token)) {
                e.set_token(None);
                dropped += 1;
            }
        }
        if dropped > 0 {
            self.clear_hot();
        }
        dropped
    }

    /// Forgets `key` entirely (an in-flight fetch's answer will be refused). Returns its token.
    pub fn remove(&mut self, key: &K) -> Option<Token> {
        let entry = self.entries.remove(key)?;
        self.clear_hot();
        let meta = self.release_meta(entry.meta);
        self.recency.remove(&meta.tick);
        if let Some((id, _)) = meta.in_flight {
            self.in_flight.remove(&id);
        }
        entry.token
    }

    /// Removes every key and returns the tokens that were cached (e.g. to revoke them).
    pub fn drain(&mut self) -> Vec<(K, Token)> {
        self.recency.clear();
        self.in_flight.clear();
        self.clear_hot();
        self.meta.clear();
        self.free_meta.clear();
        self.entries
            .drain()
            .filter_map(|(k, e)| e.token.map(|t| (k, t)))
            .collect()
    }

    /// `key`'s state.
    pub fn state(&self, key: &K, now: Timestamp) -> TokenState {
        let Some(e) = self.entries.get(key) else {
            return TokenState::Empty;
        };
        let meta = &self.meta[e.meta as usize];
        match (&meta.failure, &meta.in_flight, &e.token) {
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

    /// When a background refresher should next call [`poll_refresh`](Self::poll_refresh): the
    /// earliest refresh time (or retry time) of a cached token that is still valid.
    pub fn poll_timeout(&self) -> Option<Timestamp> {
        self.entries
            .values()
            .filter_map(|e| {
                let t = e.token.as_ref()?;
                let meta = &self.meta[e.meta as usize];
                if meta.in_flight.is_some() {
                    return None;
                }
                let due = match &meta.failure {
                    Some(f) => f.retry_at.max(t.refresh_at()),
                    None => t.refresh_at(),
                };
                (due < t.expires_local()).then_some(due)
            })
            .min()
    }

    /// Starts a fetch for one cached, still-valid token whose refresh is due at `now`; call it
    /// until it returns `None`. The old token keeps serving while the fetch runs.
    pub fn poll_refresh(&mut self, now: Timestamp) -> Option<(RequestId, K)> {
        let (key, meta) = self
            .entries
            .iter()
            .find(|(_, e)| {
                let meta = &self.meta[e.meta as usize];
                meta.in_flight.is_none()
                    && meta.failure.as_ref().is_none_or(|f| now >= f.retry_at)
                    && e.token
                        .as_ref()
                        .is_some_and(|t| now >= t.refresh_at() && now < t.expires_local())
            })
            .map(|(k, e)| (k.clone(), e.meta as usize))?;
        let id = RequestId(self.next_id);
        self.next_id += 1;
        self.meta[meta].in_flight = Some((id, now));
        self.in_flight.insert(id, key.clone());
        Some((id, key))
    }

    /// Which key fetch `id` is for, if it is still waiting for an answer.
    pub fn key_of(&self, id: RequestId) -> Option<&K> {
        self.in_flight.get(&id)
    }

    /// Every cached token with its key, for persisting to a shared store.
    pub fn tokens(&self) -> impl Iterator<Item = (&K, &Token)> {
        self.entries
            .iter()
            .filter_map(|(k, e)| e.token.as_ref().map(|t| (k, t)))
    }

    /// Puts a token (e.g. loaded from a shared store) into the cache, replacing any cached one.
    pub fn insert(&mut self, key: K, token: Token) {
        let meta = self.touch(&key);
        self.meta[meta].failure = None;
        if let Some(e) = self.entries.get_mut(&key) {
            e.set_token(Some(token));
        }
        self.clear_hot();
    }

    /// Ends fetch `id`, marks its key most recently used and, now that it can be evicted again,
    /// brings the cache back under its cap.
    fn take_in_flight(&mut self, id: RequestId) -> Result<K, Error> {
        let key = self.in_flight.remove(&id).ok_or(Error::UnknownRequest(id.0))?;
        if let Some(e) = self.entries.get(&key) {
            let meta = &mut self.meta[e.meta as usize];
            if meta.in_flight.is_some_and(|(i, _)| i == id) {
                meta.in_flight = None;
            }
            self.touch(&key);
            self.evict_to(self.cap());
        }
        Ok(key)
    }

    fn record_failure(&mut self, key: &K, error: Error, now: Timestamp) {
        let Some(meta) = self.entries.get(key).map(|e| e.meta as usize) else {
            return;
        };
        let attempts = self.meta[meta].failure.as_ref().map_or(0, |f| f.attempts) + 1;
        let base = self
            .config
            .backoff_initial
            .saturating_mul(1u32 << (attempts - 1).min(20))
            .min(self.config.backoff_max);
        // Jitter: between half and all of the back-off ("equal jitter").
        let half = duration_ms(base) / 2;
        let jitter = if half > 0 {
            (self.next_random() % (half as u64 + 1)) as i64
        } else {
            0
        };
        let mut delay_ms = half + jitter;
        if let Some(server) = error.retry_after() {
            delay_ms = delay_ms.max(duration_ms(server));
        }
        self.meta[meta].failure = Some(Box::new(Failure {
            error,
            attempts,
            retry_at: now.offset_by(delay_ms),
        }));
    }

    /// splitmix64: tiny, deterministic for a given seed, good enough for jitter.
    fn next_random(&mut self) -> u64 {
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// The most keys kept: `max_entries`, at least 1 and at most [`MAX_KEYS`].
    fn cap(&self) -> usize {
        self.config.max_entries.clamp(1, MAX_KEYS)
    }

    /// Marks `key` most recently used, inserting it (and evicting beyond the cap) if new.
    /// Returns where its [`Meta`] is.
    fn touch(&mut self, key: &K) -> usize {
        let tick = self.next_tick;
        self.next_tick += 1;
        if let Some(e) = self.entries.get(key) {
            let meta = &mut self.meta[e.meta as usize];
            self.recency.remove(&meta.tick);
            meta.tick = tick;
            e.referenced.store(false, Ordering::Relaxed);
            self.recency.insert(tick, key.clone());
            return e.meta as usize;
        }
        self.evict_to(self.cap() - 1);
        let meta = Meta {
            tick,
            ..Meta::default()
        };
        let index = match self.free_meta.pop() {
            Some(free) => {
                self.meta[free as usize] = meta;
                free
            }
            None => {
                self.meta.push(meta);
                // At most MAX_KEYS plus the keys with a fetch in flight: below 2^32.
                (self.meta.len() - 1) as u32
            }
        };
        self.entries.insert(key.clone(), Entry::new(index));
        self.recency.insert(tick, key.clone());
        index as usize
    }

    /// Frees a removed key's [`Meta`] for the next new key, returning what it held.
    fn release_meta(&mut self, index: u32) -> Meta {
        self.free_meta.push(index);
        std::mem::take(&mut self.meta[index as usize])
    }

    /// Evicts least-recently-used entries until at most `target` remain. Entries read through
    /// `peek` since they were last moved get a second chance; entries with a fetch in flight
    /// are kept (so the cap can be exceeded by the number of fetches in flight).
    fn evict_to(&mut self, target: usize) {
        let mut budget = self.recency.len() * 2;
        while self.entries.len() > target && budget > 0 {
            budget -= 1;
            let Some((_, key)) = self.recency.pop_first() else {
                break;
            };
            let Some(entry) = self.entries.get(&key) else {
                continue;
            };
            let meta = &mut self.meta[entry.meta as usize];
            if meta.in_flight.is_some()
                || entry.referenced.swap(false, Ordering::Relaxed)
                || Self::hot_holds(&mut self.hot, &key)
            {
                meta.tick = self.next_tick;
                self.next_tick += 1;
                self.recency.insert(meta.tick, key);
            } else if let Some(entry) = self.entries.remove(&key) {
                self.release_meta(entry.meta);
            }
        }
    }
}

/// The serialisable form of a [`TokenCache`]: its cached tokens and failure back-offs (fetches
/// in flight belong to a process and are not saved).
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CacheSnapshot<K> {
    /// The configuration.
    pub config: CacheConfig,
    /// Cached tokens by key.
    pub tokens: Vec<(K, Token)>,
}

impl<K: Clone + Eq + Hash> TokenCache<K> {
    /// The cache's tokens and configuration, for a shared store.
    pub fn snapshot(&self) -> CacheSnapshot<K> {
        CacheSnapshot {
            config: self.config.clone(),
            tokens: self.tokens().map(|(k, t)| (k.clone(), t.clone())).collect(),
        }
    }

    /// A cache holding a snapshot's tokens.
    pub fn from_snapshot(snapshot: CacheSnapshot<K>, seed: u64) -> Self {
        let mut cache = Self::new(snapshot.config, seed);
        for (k, t) in snapshot.tokens {
            cache.insert(k, t);
        }
        cache
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ApiMessage;

    const T0: i64 = 1_700_000_000;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_seconds(T0 + secs)
    }

    /// A token made at server time `created` (relative seconds) living `life` seconds.
    fn minted(name: &str, created: i64, life: i64) -> AccessToken {
        serde_json::from_value(serde_json::json!({
            "token": format!("crs_{name}"),
            "createdAt": at(created).to_rfc3339(),
            "expiresAt": at(created + life).to_rfc3339(),
        }))
        .unwrap()
    }

    fn cache() -> TokenCache<&'static str> {
        TokenCache::new(CacheConfig::default(), 7)
    }

    fn capped(max_entries: usize) -> TokenCache<u32> {
        TokenCache::new(
            CacheConfig {
                max_entries,
                ..CacheConfig::default()
            },
            1,
        )
    }

    fn fetch(p: Poll) -> (RequestId, Option<Token>) {
        match p {
            Poll::Fetch { id, stale } => (id, stale),
            other => panic!("expected Fetch, got {other:?}"),
        }
    }

    fn ready(p: Poll) -> Token {
        match p {
            Poll::Ready(t) => t,
            other => panic!("expected Ready, got {other:?}"),
        }
    }

    fn server_error() -> Error {
        Error::Server {
            status: 503,
            retry_after: None,
            api: ApiMessage::default(),
        }
    }

    #[test]
    fn empty_fetching_valid() {
        let mut c = cache();
        assert!(matches!(c.state(&"i1", at(0)), TokenState::Empty));
        let (id, stale) = fetch(c.poll(&"i1", at(0), None));
        assert!(stale.is_none());
        assert!(matches!(c.state(&"i1", at(0)), TokenState::Fetching));
        // A second caller waits for the one fetch in flight.
        assert!(matches!(c.poll(&"i1", at(0), None), Poll::Wait { until } if until == at(120)));
        // Other keys are not blocked.
        let (other, _) = fetch(c.poll(&"i2", at(0), None));
        assert_ne!(id, other);
        let t = c.handle_token(id, minted("a", 0, 7200), at(1), 0).unwrap();
        assert_eq!(t.expires_local(), at(7200));
        assert!(matches!(c.state(&"i1", at(1)), TokenState::Valid(_)));
        assert_eq!(ready(c.poll(&"i1", at(2), None)).secret().expose(), "crs_a");
        assert_eq!(c.peek(&"i1", at(2), None).unwrap().secret().expose(), "crs_a");
    }

    #[test]
    fn refresh_at_ten_percent_or_five_minutes() {
        let c = cache();
        // 2 hours: 10% is 12 minutes.
        assert_eq!(
            Token::new(minted("a", 0, 7200), at(0), 0, c.config()).refresh_at(),
            at(7200 - 720)
        );
        // 30 minutes: 10% is 3 minutes, so 5 minutes wins.
        assert_eq!(
            Token::new(minted("a", 0, 1800), at(0), 0, c.config()).refresh_at(),
            at(1800 - 300)
        );
        // 4 minutes: never earlier than half-way.
        assert_eq!(
            Token::new(minted("a", 0, 240), at(0), 0, c.config()).refresh_at(),
            at(120)
        );
    }

    #[test]
    fn refreshing_serves_the_old_token() {
        let mut c = cache();
        let (id, _) = fetch(c.poll(&"i", at(0), None));
        c.handle_token(id, minted("old", 0, 7200), at(0), 0).unwrap();
        assert!(c.peek(&"i", at(6479), None).is_some());
        assert!(
            c.peek(&"i", at(6480), None).is_none(),
            "refresh due: the hot path defers to poll"
        );
        let (id, stale) = fetch(c.poll(&"i", at(6480), None));
        assert_eq!(stale.unwrap().secret().expose(), "crs_old");
        assert!(matches!(c.state(&"i", at(6480)), TokenState::Refreshing(_)));
        // Others keep getting the old token while the refresh is in flight.
        assert_eq!(ready(c.poll(&"i", at(6481), None)).secret().expose(), "crs_old");
        assert_eq!(c.peek(&"i", at(6481), None).unwrap().secret().expose(), "crs_old");
        c.handle_token(id, minted("new", 6481, 7200), at(6481), 0).unwrap();
        assert_eq!(ready(c.poll(&"i", at(6482), None)).secret().expose(), "crs_new");
    }

    #[test]
    fn failed_refresh_keeps_serving_the_valid_token() {
        let mut c = cache();
        let (id, _) = fetch(c.poll(&"i", at(0), None));
        c.handle_token(id, minted("old", 0, 7200), at(0), 0).unwrap();
        let (id, _) = fetch(c.poll(&"i", at(6500), None));
        let e = c.handle_error(id, server_error(), at(6500)).unwrap();
        assert!(matches!(e, Error::Server { .. }));
        assert!(matches!(
            c.state(&"i", at(6500)),
            TokenState::Failed { token: Some(_), .. }
        ));
        assert_eq!(ready(c.poll(&"i", at(6500), None)).secret().expose(), "crs_old");
        assert!(c.peek(&"i", at(6500), None).is_some());
        // After the back-off a poll retries, still offering the old token.
        let (_, stale) = fetch(c.poll(&"i", at(6502), None));
        assert!(stale.is_some());
    }

    #[test]
    fn never_hands_out_a_nearly_expired_token() {
        let mut c = cache();
        let (id, _) = fetch(c.poll(&"i", at(0), None));
        c.handle_token(id, minted("a", 0, 7200), at(0), 0).unwrap();
        // Refresh fails repeatedly; once under 60 s remain the token is no longer handed out.
        let (id, _) = fetch(c.poll(&"i", at(7100), None));
        let busy = Error::Server {
            status: 503,
            retry_after: Some(Duration::from_secs(100)),
            api: ApiMessage::default(),
        };
        c.handle_error(id, busy, at(7100)).unwrap();
        assert!(matches!(c.poll(&"i", at(7140), None), Poll::Ready(_)));
        assert!(matches!(c.poll(&"i", at(7141), None), Poll::Failed { .. }));
        assert!(c.peek(&"i", at(7141), None).is_none());
        // A per-call minimum overrides the default.
        let mut c = cache();
        let (id, _) = fetch(c.poll(&"i", at(0), None));
        c.handle_token(id, minted("a", 0, 7200), at(0), 0).unwrap();
        assert!(c.peek(&"i", at(0), Some(Duration::from_secs(7201))).is_none());
        let (_, stale) = fetch(c.poll(&"i", at(0), Some(Duration::from_secs(7201))));
        assert!(stale.is_none());
    }

    #[test]
    fn backoff_grows_with_jitter_and_honours_retry_after() {
        let mut c = cache();
        let mut retry_ats = Vec::new();
        let mut now = at(0);
        for _ in 0..6 {
            let (id, _) = fetch(c.poll(&"i", now, None));
            c.handle_error(id, server_error(), now).unwrap();
            let Poll::Failed { retry_at, .. } = c.poll(&"i", now, None) else {
                panic!()
            };
            retry_ats.push(retry_at.unix_millis() - now.unix_millis());
            now = retry_at;
        }
        // Equal jitter: attempt n waits between half and all of 2^(n-1) s.
        for (n, d) in retry_ats.iter().enumerate() {
            let full = 1000i64 << n;
            assert!(*d >= full / 2 && *d <= full, "attempt {n}: {d} ms");
        }
        // Retry-After beats a shorter back-off.
        let mut c = cache();
        let (id, _) = fetch(c.poll(&"i", at(0), None));
        let limited = Error::RateLimited {
            retry_after: Some(Duration::from_secs(42)),
            api: ApiMessage::default(),
        };
        c.handle_error(id, limited, at(0)).unwrap();
        assert!(matches!(c.poll(&"i", at(41), None), Poll::Failed { retry_at, .. } if retry_at == at(42)));
        assert!(matches!(c.poll(&"i", at(42), None), Poll::Fetch { .. }));
        // A success resets the back-off.
    }

    #[test]
    fn same_seed_same_jitter() {
        let run = |seed| {
            let mut c: TokenCache<&str> = TokenCache::new(CacheConfig::default(), seed);
            let (id, _) = fetch(c.poll(&"i", at(0), None));
            c.handle_error(id, server_error(), at(0)).unwrap();
            let (id, _) = fetch(c.poll(&"i", at(10), None));
            c.handle_error(id, server_error(), at(10)).unwrap();
            match c.state(&"i", at(10)) {
                TokenState::Failed { retry_at, .. } => retry_at,
                _ => panic!(),
            }
        };
        assert_eq!(run(1), run(1));
    }

    #[test]
    fn answers_are_accepted_once() {
        let mut c = cache();
        let (id, _) = fetch(c.poll(&"i", at(0), None));
        c.handle_token(id, minted("a", 0, 7200), at(0), 0).unwrap();
        assert!(matches!(
            c.handle_token(id, minted("b", 0, 7200), at(0), 0),
            Err(Error::UnknownRequest(_))
        ));
        assert!(matches!(
            c.handle_error(id, server_error(), at(0)),
            Err(Error::UnknownRequest(_))
        ));
        assert!(matches!(
            c.handle_error(RequestId(999), server_error(), at(0)),
            Err(Error::UnknownRequest(999))
        ));
    }

    #[test]
    fn abandoned_fetch_is_superseded() {
        let mut c = cache();
        let (old, _) = fetch(c.poll(&"i", at(0), None));
        assert!(matches!(c.poll(&"i", at(119), None), Poll::Wait { .. }));
        let (new, _) = fetch(c.poll(&"i", at(120), None));
        assert!(c.handle_token(old, minted("late", 0, 7200), at(121), 0).is_err());
        c.handle_token(new, minted("new", 0, 7200), at(121), 0).unwrap();
        assert_eq!(ready(c.poll(&"i", at(122), None)).secret().expose(), "crs_new");
    }

    #[test]
    fn cancelled_fetch_leaves_no_backoff() {
        let mut c = cache();
        let (id, _) = fetch(c.poll(&"i", at(0), None));
        let cancelled = Error::Transport {
            kind: TransportErrorKind::Cancelled,
            message: "dropped".into(),
        };
        c.handle_error(id, cancelled, at(0)).unwrap();
        assert!(matches!(c.poll(&"i", at(0), None), Poll::Fetch { .. }));
    }

    #[test]
    fn invalidate_only_the_rejected_token() {
        let mut c = cache();
        let (id, _) = fetch(c.poll(&"i", at(0), None));
        c.handle_token(id, minted("a", 0, 7200), at(0), 0).unwrap();
        assert!(!c.invalidate(&"i", "crs_other"));
        assert!(c.peek(&"i", at(1), None).is_some());
        assert!(c.invalidate(&"i", "crs_a"));
        assert!(c.peek(&"i", at(1), None).is_none());
        assert!(matches!(c.poll(&"i", at(1), None), Poll::Fetch { stale: None, .. }));
    }

    #[test]
    fn clock_offset_moves_expiry_onto_the_local_clock() {
        let mut c = cache();
        // Server two hours ahead: its expiresAt is 4 h after our now, but only 2 h of life remain.
        let (id, _) = fetch(c.poll(&"i", at(0), None));
        let t = c.handle_token(id, minted("a", 7200, 7200), at(0), 7_200_000).unwrap();
        assert_eq!(t.expires_local(), at(7200));
        assert!(c.peek(&"i", at(7200 - 59), None).is_none());
        // Server two hours behind.
        let (id, _) = fetch(c.poll(&"j", at(0), None));
        let t = c.handle_token(id, minted("b", -7200, 7200), at(0), -7_200_000).unwrap();
        assert_eq!(t.expires_local(), at(7200));
    }

    #[test]
    fn server_clock_jumping_ahead_brings_cached_expiry_forward() {
        let mut c = cache();
        let (id, _) = fetch(c.poll(&"i", at(0), None));
        let t = c.handle_token(id, minted("a", 0, 7200), at(0), 0).unwrap();
        assert_eq!((t.expires_local(), t.refresh_at()), (at(7200), at(7200 - 720)));
        // Ten minutes later the server's clock is seen 2 h - 10 min 50 s ahead: the token
        // has 50 s left there, though 1 h 50 min here.
        assert_eq!(c.observe_offset((7200 - 650) * 1000), 1);
        let now = at(600);
        assert!(
            c.peek(&"i", now, None).is_none(),
            "50 s left is less than min_remaining"
        );
        let (_, stale) = fetch(c.poll(&"i", now, None));
        assert!(stale.is_none(), "nothing usable to serve meanwhile");
        let (_, cached) = c.tokens().next().unwrap();
        assert_eq!((cached.expires_local(), cached.refresh_at()), (at(650), at(650 - 720)));
        // While that fetch runs, the token serves whoever needs less than its 50 s.
        assert!(c.peek(&"i", now, Some(Duration::from_secs(30))).is_some());
        assert!(c.peek(&"i", now, None).is_none());
        // Handles given out earlier keep what they were given; offsets never lengthen a token.
        assert_eq!(t.expires_local(), at(7200));
        assert_eq!(c.observe_offset(0), 0);
        assert_eq!(c.observe_offset(-3_600_000), 0);
        assert_eq!(c.tokens().next().unwrap().1.expires_local(), at(650));
    }

    #[test]
    fn already_expired_token_is_an_error() {
        let mut c = cache();
        let (id, _) = fetch(c.poll(&"i", at(0), None));
        let e = c.handle_token(id, minted("a", -10_000, 7200), at(0), 0).unwrap_err();
        assert!(e.to_string().contains("already expired"));
    }

    #[test]
    fn lru_cap_evicts_least_recently_used_with_second_chance() {
        let mut c = capped(3);
        for k in 0..3 {
            let (id, _) = fetch(c.poll(&k, at(0), None));
            c.handle_token(id, minted(&k.to_string(), 0, 7200), at(0), 0).unwrap();
        }
        // 0 is the oldest, but a lock-free read marks it: 1 goes instead.
        assert!(c.peek(&0, at(1), None).is_some());
        let _ = c.poll(&3, at(1), None);
        assert_eq!(c.len(), 3);
        assert!(c.peek(&0, at(1), None).is_some());
        assert!(matches!(c.state(&1, at(1)), TokenState::Empty));
        // Entries with a fetch in flight are never evicted.
        let mut c = capped(1);
        let (id, _) = fetch(c.poll(&0, at(0), None));
        let _ = c.poll(&1, at(0), None);
        assert!(c.handle_token(id, minted("0", 0, 7200), at(0), 0).is_ok());
    }

    #[test]
    fn state_of_evicted_and_removed_keys_is_reused_not_leaked() {
        let mut c = capped(4);
        for k in 0..1_000 {
            let (id, _) = fetch(c.poll(&k, at(0), None));
            if k % 3 == 0 {
                c.handle_error(id, server_error(), at(0)).unwrap();
            } else {
                c.handle_token(id, minted(&k.to_string(), 0, 7200), at(0), 0).unwrap();
            }
            if k % 5 == 0 {
                c.remove(&k);
            }
        }
        assert!(c.len() <= 4);
        assert!(c.meta.len() <= 5, "{} side records for {} keys", c.meta.len(), c.len());
        assert_eq!(c.meta.len() - c.free_meta.len(), c.len());
        // A reused record starts clean: the newest key has neither the failure nor the fetch of
        // the key that held the record before.
        let (id, _) = fetch(c.poll(&5_000, at(0), None));
        c.handle_error(id, server_error(), at(0)).unwrap();
        c.remove(&5_000);
        assert!(matches!(c.state(&5_001, at(0)), TokenState::Empty));
        assert!(matches!(c.poll(&5_001, at(0), None), Poll::Fetch { .. }));
    }

    #[test]
    fn a_thread_asking_again_gets_its_own_handle_which_follows_every_change() {
        let mut c = cache();
        let (id, _) = fetch(c.poll(&"i", at(0), None));
        c.handle_token(id, minted("a", 0, 7200), at(0), 0).unwrap();
        let shared = c.peek(&"i", at(1), None).unwrap();
        // The second hit in a row fills this thread's slot with a copy of its own.
        let copy = c.peek(&"i", at(1), None).unwrap();
        let again = c.peek(&"i", at(1), None).unwrap();
        assert!(Arc::ptr_eq(&copy.0, &again.0), "served from the slot");
        assert!(!Arc::ptr_eq(&copy.0, &shared.0), "a handle of its own");
        assert!(copy.same_as(&shared));
        // Another thread gets another copy, not this one (unless it was given the same slot,
        // one thread in 16).
        let mine = hot_slot();
        std::thread::scope(|s| {
            s.spawn(|| {
                let _ = c.peek(&"i", at(1), None);
                let theirs = c.peek(&"i", at(1), None).unwrap();
                assert!(hot_slot() == mine || !Arc::ptr_eq(&theirs.0, &copy.0));
                assert_eq!(theirs.secret().expose(), "crs_a");
            });
        });
        // The slot keeps the map's rules: the life asked for, and no refresh due.
        assert!(c.peek(&"i", at(1), Some(Duration::from_secs(7200))).is_none());
        assert!(c.peek(&"i", at(6480), None).is_none(), "refresh due");
        assert!(c.peek(&"i", at(1), None).is_some());
        // Every change to the cached token empties the slots.
        assert!(c.invalidate(&"i", "crs_a"));
        assert!(c.peek(&"i", at(2), None).is_none());
        c.insert("i", Token::new(minted("b", 0, 7200), at(2), 0, &CacheConfig::default()));
        for _ in 0..3 {
            assert_eq!(c.peek(&"i", at(3), None).unwrap().secret().expose(), "crs_b");
        }
        assert_eq!(c.invalidate_everywhere("crs_b"), 1);
        assert!(c.peek(&"i", at(3), None).is_none());
        c.insert("i", Token::new(minted("c", 0, 7200), at(3), 0, &CacheConfig::default()));
        let _ = c.peek(&"i", at(4), None);
        let _ = c.peek(&"i", at(4), None);
        // The registry's clock jumped an hour ahead: the slot's copy must not outlive the move.
        assert_eq!(c.observe_offset(3_600_000), 1);
        assert!(c.peek(&"i", at(3600), None).is_none());
        assert!(c.remove(&"i").is_some());
        assert!(c.peek(&"i", at(4), None).is_none());
    }

    #[test]
    fn a_key_served_from_hot_slots_is_not_evicted_as_unused() {
        let mut c = capped(2);
        for k in 0..2 {
            c.insert(
                k,
                Token::new(minted(&k.to_string(), 0, 7200), at(0), 0, &CacheConfig::default()),
            );
        }
        // 0 is read twice (its slot fills), then the cap makes room twice over.
        let _ = c.peek(&0, at(1), None);
        let _ = c.peek(&0, at(1), None);
        for k in 2..4 {
            let _ = c.poll(&k, at(1), None);
        }
        assert!(c.peek(&0, at(1), None).is_some());
    }

    #[test]
    fn background_refresh_schedule() {
        let mut c = cache();
        assert_eq!(c.poll_timeout(), None);
        let (id, _) = fetch(c.poll(&"i", at(0), None));
        c.handle_token(id, minted("a", 0, 7200), at(0), 0).unwrap();
        assert_eq!(c.poll_timeout(), Some(at(6480)));
        assert!(c.poll_refresh(at(6479)).is_none());
        let (id, key) = c.poll_refresh(at(6480)).unwrap();
        assert_eq!(key, "i");
        assert!(c.poll_refresh(at(6480)).is_none(), "one fetch per key");
        assert_eq!(c.poll_timeout(), None);
        c.handle_error(id, server_error(), at(6480)).unwrap();
        let next = c.poll_timeout().unwrap();
        assert!(next > at(6480) && next <= at(6481));
    }

    #[test]
    fn snapshot_round_trip() {
        let mut c = cache();
        let (id, _) = fetch(c.poll(&"i", at(0), None));
        c.handle_token(id, minted("a", 0, 7200), at(0), 0).unwrap();
        let json = serde_json::to_string(&c.snapshot()).unwrap();
        let restored: TokenCache<String> = TokenCache::from_snapshot(serde_json::from_str(&json).unwrap(), 3);
        let t = restored.peek(&"i".to_string(), at(10), None).unwrap();
        assert_eq!(t.secret().expose(), "crs_a");
        assert_eq!(t.refresh_at(), at(6480));
        let drained = c.drain();
        assert_eq!(drained.len(), 1);
        assert!(c.is_empty());
    }
}
