//! Token state per key, driven like quinn-proto or str0m: ask what to do at `now`, perform the
//! I/O it asks for, hand the answer back.
//!
//! ```text
//!  poll(key, now) ──► Ready(token)                 use it
//!                 ──► Fetch { id }                 mint one (answer with handle_* for id)
//!                 ──► Wait { until }               another caller is minting; poll again then
//!                 ──► Failed { error, retry_at }   the last mint failed; no retry before retry_at
//! ```
//!
//! Per key the state is one of empty, fetching, valid, refreshing (a fetch in flight while the
//! old token still serves) and failed (with a retry time, possibly still holding a valid token).
//! At most one fetch is in flight per key; keys never wait on each other.

mod token;

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::hash::Hash;
use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use token::{CacheConfig, Token};

use crate::clock::{Timestamp, duration_ms};
use crate::error::{Error, TransportErrorKind};
use crate::models::AccessToken;

/// Identifies one request an operation asked a driver to send ([`Step::Send`](crate::Step::Send)); report its outcome for this id.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct RequestId(pub u64);

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
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

/// One key's state.
#[derive(Debug)]
struct Entry {
    token: Option<Token>,
    in_flight: Option<(RequestId, Timestamp)>,
    /// Boxed: rare, and large inline.
    failure: Option<Box<Failure>>,
    /// Position in the recency index.
    tick: u64,
    /// Set by a hit ([`TokenCache::peek`]), which does not move the key in the recency index:
    /// gives the entry a second chance at eviction.
    referenced: bool,
}

impl Entry {
    /// The token, if it is alive at `now` with at least `min_life` left (a zero `min_life` still
    /// needs a live token).
    fn usable(&self, now: Timestamp, min_life: Duration) -> Option<&Token> {
        self.token.as_ref().filter(|t| alive_for(t, now, min_life))
    }

    fn retry_due(&self, now: Timestamp) -> bool {
        self.failure.as_ref().is_none_or(|f| now >= f.retry_at)
    }
}

/// Whether `token` is alive at `now` with at least `min_life` left.
fn alive_for(token: &Token, now: Timestamp, min_life: Duration) -> bool {
    let left = token.remaining(now);
    left > Duration::ZERO && left >= min_life
}

/// The most keys a cache holds, whatever `max_entries` says.
const MAX_KEYS: usize = 1 << 31;

/// Token state for many keys (e.g. one per installation). See the module docs.
pub struct TokenCache<K> {
    config: CacheConfig,
    entries: HashMap<K, Entry>,
    /// tick -> key, oldest first: the least recently used entry is the first one.
    recency: BTreeMap<u64, K>,
    in_flight: HashMap<RequestId, K>,
    /// The key the last hit served, with its token, so that a repeated hit on one key compares
    /// the key instead of hashing it (SipHash is most of a hit: about 20 of 60 ns). Emptied by
    /// every change to any cached token: set, shortened, invalidated, removed, evicted, drained.
    last_hit: Option<(K, Token)>,
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
            recency: BTreeMap::new(),
            in_flight: HashMap::new(),
            last_hit: None,
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

    /// A fresh id for a request that is not a fetch (ids are never reused).
    pub(crate) fn next_request_id(&mut self) -> RequestId {
        let id = RequestId(self.next_id);
        self.next_id += 1;
        id
    }

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

    /// What to do for `key` at `now`, handing out only tokens with at least `min_life` (default
    /// [`CacheConfig::min_remaining`]) left.
    pub fn poll(&mut self, key: &K, now: Timestamp, min_life: Option<Duration>) -> Poll {
        let min_life = min_life.unwrap_or(self.config.min_remaining);
        self.touch(key);
        let fetch_timeout = self.config.fetch_timeout;
        let Some(entry) = self.entries.get_mut(key) else {
            unreachable!("touch inserts the key")
        };
        let usable = entry.usable(now, min_life).cloned();
        if let Some((id, started)) = entry.in_flight {
            let until = started.plus(fetch_timeout);
            if now < until {
                return match usable {
                    Some(t) => Poll::Ready(t),
                    None => Poll::Wait { until },
                };
            }
            // Presumed abandoned: its answer, if it ever comes, is refused.
            entry.in_flight = None;
            self.in_flight.remove(&id);
        }
        if let Some(f) = &entry.failure
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
            _ => {
                let id = RequestId(self.next_id);
                self.next_id += 1;
                entry.in_flight = Some((id, now));
                self.in_flight.insert(id, key.clone());
                Poll::Fetch { id }
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
            return Err(self.record_failure(&key, error, now));
        }
        if let Some(entry) = self.entries.get_mut(&key) {
            entry.token = Some(token.clone());
            self.last_hit = None;
            entry.failure = None;
        }
        Ok(token)
    }

    /// Ends fetch `id` without a new token: another process is refreshing it. The cached token
    /// keeps serving, and its refresh is put off until `until`.
    pub fn defer(&mut self, id: RequestId, until: Timestamp) -> Result<(), Error> {
        let key = self.take_in_flight(id)?;
        if let Some(entry) = self.entries.get_mut(&key)
            && let Some(token) = &entry.token
        {
            entry.token = Some(token.refresh_deferred_to(until));
            self.last_hit = None;
        }
        Ok(())
    }

    /// Answers fetch `id` with a failure. A cancelled fetch leaves no trace; any other starts
    /// (or lengthens) a back-off with jitter, honouring the server's `Retry-After` up to
    /// [`CacheConfig::max_retry_after`]. A still-valid token stays cached and keeps being handed
    /// out. Returns the error for the caller: when the server sent `Retry-After`, it states the
    /// wait imposed (capped, or a longer back-off), not the one asked for.
    pub fn handle_error(&mut self, id: RequestId, error: Error, now: Timestamp) -> Result<Error, Error> {
        let key = self.take_in_flight(id)?;
        if !matches!(
            error,
            Error::Transport {
                kind: TransportErrorKind::Cancelled,
                ..
            }
        ) {
            return Ok(self.record_failure(&key, error, now));
        }
        Ok(error)
    }

    /// Forgets `key`'s recorded failure, so the next poll may fetch at once (a `Retry-After` the
    /// caller knows no longer applies).
    pub fn clear_failure(&mut self, key: &K) -> bool {
        self.entries.get_mut(key).is_some_and(|e| e.failure.take().is_some())
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

    /// `key`'s state.
    pub fn state(&self, key: &K, now: Timestamp) -> TokenState {
        let Some(e) = self.entries.get(key) else {
            return TokenState::Empty;
        };
        match (&e.failure, &e.in_flight, &e.token) {
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

    /// The latest time a live fetch in flight (one not yet presumed abandoned at `now`) would be
    /// presumed abandoned, if any is live.
    pub fn in_flight_until(&self, now: Timestamp) -> Option<Timestamp> {
        self.entries
            .values()
            .filter_map(|e| e.in_flight.map(|(_, started)| started.plus(self.config.fetch_timeout)))
            .filter(|until| *until > now)
            .max()
    }

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

    /// Which key fetch `id` is for, if it is still waiting for an answer.
    pub fn key_of(&self, id: RequestId) -> Option<&K> {
        self.in_flight.get(&id)
    }

    /// Ends fetch `id`, marks its key most recently used and, now that it can be evicted again,
    /// brings the cache back under its cap.
    fn take_in_flight(&mut self, id: RequestId) -> Result<K, Error> {
        let key = self.in_flight.remove(&id).ok_or(Error::UnknownRequest(id.0))?;
        if let Some(e) = self.entries.get_mut(&key) {
            if e.in_flight.is_some_and(|(i, _)| i == id) {
                e.in_flight = None;
            }
            self.touch(&key);
            self.evict_to(self.cap());
        }
        Ok(key)
    }

    /// Records `error` with its back-off; returns it as recorded: a `Retry-After` it carries
    /// replaced by the wait imposed, so the error never names a wait that is not the one kept.
    fn record_failure(&mut self, key: &K, mut error: Error, now: Timestamp) -> Error {
        let attempts = match self.entries.get(key) {
            Some(e) => e.failure.as_ref().map_or(0, |f| f.attempts) + 1,
            None => return error,
        };
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
            // The server may ask for more than our back-off, but not for more than the cap: one
            // `Retry-After: 10000000` must not block a scope for days.
            delay_ms = delay_ms.max(duration_ms(server.min(self.config.max_retry_after)));
            error = error.with_retry_after(Duration::from_millis(delay_ms.unsigned_abs()));
        }
        if let Some(e) = self.entries.get_mut(key) {
            e.failure = Some(Box::new(Failure {
                error: error.clone(),
                attempts,
                retry_at: now.offset_by(delay_ms),
            }));
        }
        error
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
    fn touch(&mut self, key: &K) {
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
    /// `peek` since they were last moved get a second chance; entries with a fetch in flight
    /// are kept (so the cap can be exceeded by the number of fetches in flight).
    fn evict_to(&mut self, target: usize) {
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
            Poll::Fetch { id } => (id, None::<Token>),
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
        // Created a year ago, expiring in 2 hours: the margin comes from the 2 hours left, not
        // from the year (a refresh due before the token arrived; found by fuzz/responses).
        let year = 365 * 86_400;
        assert_eq!(
            Token::new(minted("a", -year, year + 7200), at(0), 0, c.config()).refresh_at(),
            at(7200 - 720)
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
        let (id, _) = fetch(c.poll(&"i", at(6480), None));
        assert_eq!(
            c.usable(&"i", at(6480), Duration::from_secs(60))
                .unwrap()
                .secret()
                .expose(),
            "crs_old"
        );
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
        let _ = fetch(c.poll(&"i", at(6502), None));
        assert!(c.usable(&"i", at(6502), Duration::from_secs(60)).is_some());
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
    fn the_error_states_the_wait_imposed_not_the_one_asked_for() {
        // Asked for a day: blocked for the cap (300 s), and the error says 300 s.
        for asked in [
            Error::RateLimited {
                retry_after: Some(Duration::from_secs(86_400)),
                api: ApiMessage::default(),
            },
            Error::Server {
                status: 503,
                retry_after: Some(Duration::from_secs(86_400)),
                api: ApiMessage::default(),
            },
        ] {
            let mut c = cache();
            let (id, _) = fetch(c.poll(&"i", at(0), None));
            let returned = c.handle_error(id, asked.clone(), at(0)).unwrap();
            let Poll::Failed { error, retry_at } = c.poll(&"i", at(1), None) else {
                panic!()
            };
            assert_eq!(retry_at, at(300));
            for e in [&returned, &error] {
                assert_eq!(e.retry_after(), Some(Duration::from_secs(300)), "{asked:?}");
                assert!(e.to_string().contains("retry after 300 s"), "{e}");
                assert!(!e.to_string().contains("86400"), "{e}");
            }
        }
        // Asked for less than the back-off: the longer back-off is the wait, and is stated.
        let mut c = cache();
        let mut now = at(0);
        for _ in 0..3 {
            let (id, _) = fetch(c.poll(&"i", now, None));
            c.handle_error(id, server_error(), now).unwrap();
            let Poll::Failed { retry_at, .. } = c.poll(&"i", now, None) else {
                panic!()
            };
            now = retry_at;
        }
        let (id, _) = fetch(c.poll(&"i", now, None));
        let asked = Error::RateLimited {
            retry_after: Some(Duration::from_millis(1)),
            api: ApiMessage::default(),
        };
        let returned = c.handle_error(id, asked, now).unwrap();
        let Poll::Failed { retry_at, .. } = c.poll(&"i", now, None) else {
            panic!()
        };
        assert_eq!(returned.retry_after(), Some(retry_at.saturating_since(now)));
        assert!(returned.retry_after().unwrap() >= Duration::from_secs(4), "{returned}");
        // Without a `Retry-After`, nothing is made up.
        let mut c = cache();
        let (id, _) = fetch(c.poll(&"i", at(0), None));
        assert_eq!(c.handle_error(id, server_error(), at(0)).unwrap(), server_error());
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
        assert!(matches!(c.poll(&"i", at(1), None), Poll::Fetch { .. }));
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
        let cached = c.cached(&"i").unwrap();
        assert_eq!((cached.expires_local(), cached.refresh_at()), (at(650), at(650 - 720)));
        // While that fetch runs, the token serves whoever needs less than its 50 s.
        assert!(c.peek(&"i", now, Some(Duration::from_secs(30))).is_some());
        assert!(c.peek(&"i", now, None).is_none());
        // Handles given out earlier keep what they were given; offsets never lengthen a token.
        assert_eq!(t.expires_local(), at(7200));
        assert_eq!(c.observe_offset(0), 0);
        assert_eq!(c.observe_offset(-3_600_000), 0);
        assert_eq!(c.cached(&"i").unwrap().expires_local(), at(650));
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
    fn evicted_and_removed_keys_leave_nothing_behind() {
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
        assert_eq!(c.recency.len(), c.len(), "the recency index holds exactly the keys");
        assert!(c.in_flight.is_empty());
        // A new key starts clean: it has neither the failure nor the fetch of a removed key.
        let (id, _) = fetch(c.poll(&5_000, at(0), None));
        c.handle_error(id, server_error(), at(0)).unwrap();
        c.remove(&5_000);
        assert!(matches!(c.state(&5_001, at(0)), TokenState::Empty));
        assert!(matches!(c.poll(&5_001, at(0), None), Poll::Fetch { .. }));
    }

    #[test]
    fn background_refresh_schedule() {
        let mut c = cache();
        assert_eq!(c.poll_timeout(at(0)), None);
        let (id, _) = fetch(c.poll(&"i", at(0), None));
        c.handle_token(id, minted("a", 0, 7200), at(0), 0).unwrap();
        assert_eq!(c.poll_timeout(at(0)), Some(at(6480)));
        assert!(c.poll_refresh(at(6479)).is_none());
        let (id, key) = c.poll_refresh(at(6480)).unwrap();
        assert_eq!(key, "i");
        assert!(c.poll_refresh(at(6480)).is_none(), "one fetch per key");
        assert_eq!(c.poll_timeout(at(0)), None);
        c.handle_error(id, server_error(), at(6480)).unwrap();
        let next = c.poll_timeout(at(0)).unwrap();
        assert!(next > at(6480) && next <= at(6481));
    }
}

#[cfg(test)]
mod props;
