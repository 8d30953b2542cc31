//! [`App`]: one ICR app's whole sans-IO state (settings, key, clock offset, token cache), which
//! a transport drives.
//!
//! Build one with [`App::builder`] and drive it with the operations in operations ([`crate::Operation`]) (see
//! the crate docs, "Driving the core yourself").

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::header::DATE;
use http::{Request, Response};

use crate::api::{ApiConfig, InstallationId, OrganizationId};
use crate::cache::{CacheConfig, Poll, Token, TokenCache, TokenState};
use crate::clock::{ClockOffset, Timestamp};
use crate::error::{Credential, Error, TransportErrorKind};
use crate::jwt::{AppId, AppJwt, JwtSigner};
use crate::models::AccessToken;
use crate::ops::RequestId;
use crate::response::{check_status, parse_json, status_error};
use crate::retry::RetryPolicy;
use crate::secret::SecretString;
use crate::signer::Signer;
use crate::stats::{Counter, Stats};
use crate::store::{Sealer, StoreCommand, StoreReply, StoreSettings};

/// A 401 whose `Date` shows more skew than this (against the clock the JWT was made for) is
/// retried once with the corrected clock.
pub const SKEW_RETRY_THRESHOLD: Duration = Duration::from_secs(30);

/// A newly observed offset replaces the stored one only when it differs by more than this: `Date`
/// has one-second resolution, and re-signing the JWT on every jitter would be wasted work.
const OFFSET_HYSTERESIS_MS: i64 = 2_000;

/// What a token is for: the app, an installation, or an organization (whatever installation the
/// app has on it).
///
/// Every API that takes a scope ([`GetToken`](crate::GetToken), [`SendAs`](crate::SendAs),
/// [`App::hit`], the clients' `token`, `send_as` and middlewares) takes an organization too.
/// Its installation is looked up once (`GET /app/organizations/{id}/installation`; concurrent
/// callers share one lookup) and remembered, and the token is that installation's: one token,
/// cached once, whichever way it was asked for. When the registry no longer knows the remembered
/// installation (a mint answered 404: the organization uninstalled and reinstalled the app, so
/// its installation has a new id), the organization is looked up again, once, and the operation
/// carries on with the new installation.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub enum TokenScope {
    /// An app access token (`POST /app/accessTokens`).
    App,
    /// An installation access token.
    Installation(InstallationId),
    /// The access token of the app's installation on this organization, whatever its id.
    Organization(OrganizationId),
}

/// One write into the hasher (a cache lookup hashes a scope on every hit): the id's bytes, or a
/// byte no id can be (ids hold no control characters) for the app. An organization's bytes
/// follow such a byte, so they never hash as the installation of the same name does.
impl std::hash::Hash for TokenScope {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        match self {
            TokenScope::App => state.write(&[0]),
            TokenScope::Installation(id) => state.write(id.as_bytes()),
            TokenScope::Organization(id) => {
                state.write(&[1]);
                state.write(id.as_str().as_bytes());
            }
        }
    }
}

impl fmt::Display for TokenScope {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TokenScope::App => f.write_str("app"),
            TokenScope::Installation(id) => write!(f, "installation {id}"),
            TokenScope::Organization(id) => write!(f, "organization {id}"),
        }
    }
}

impl From<InstallationId> for TokenScope {
    fn from(id: InstallationId) -> Self {
        TokenScope::Installation(id)
    }
}

impl From<OrganizationId> for TokenScope {
    fn from(id: OrganizationId) -> Self {
        TokenScope::Organization(id)
    }
}

/// What the app knows of one organization named as a scope.
#[derive(Debug, Default)]
struct OrganizationState {
    /// Its installation, as the token cache's key (`TokenScope::Installation`), once found.
    installation: Option<TokenScope>,
    /// The lookup in flight: its id, and when it started.
    lookup: Option<(RequestId, Timestamp)>,
    /// How the last lookup failed, for the operations that waited for it.
    failed: Option<(RequestId, Error)>,
    /// The installation last found gone (a mint for it answered 404): a shared store's entry
    /// that still names it is not read back.
    stale: Option<InstallationId>,
}

/// Where an operation that named an organization stands (see [`App::poll_organization`]).
#[derive(Debug)]
pub(crate) enum OrganizationPoll {
    /// Its installation, as the token cache's key.
    Found(TokenScope),
    /// Nobody is looking it up: this operation does, as lookup `id`.
    Lookup(RequestId),
    /// Another operation is looking it up as lookup `id`: poll again when an operation reports
    /// back, or at `until` (when that lookup would be presumed abandoned).
    Wait {
        /// The lookup waited for.
        id: RequestId,
        /// When to poll again at the latest.
        until: Timestamp,
    },
    /// The lookup this operation waited for failed, with this error.
    Failed(Error),
}

/// The outcome of a mint response (see [`App::handle_token_response`]).
#[derive(Debug)]
#[must_use]
#[allow(clippy::large_enum_variant)] // short-lived return value; boxing would cost an allocation
pub(crate) enum TokenAnswer {
    /// The new token, now cached.
    Token(Token),
    /// The registry's clock is far from ours: send this re-signed request, and answer for the
    /// same id again.
    Retry(Request<Vec<u8>>),
}

/// Builds an [`App`] from plain settings, checking each at [`build`](Self::build).
///
/// ```
/// # use icr_app_core::{App, AppKey};
/// # let key = AppKey::from_pem(include_str!("../tests/fixtures/keys/rsa2048-pkcs8.pem")).unwrap();
/// let app = App::builder("d23967cc-dd16-452b-8af4-869965745978", key).base_url("http://127.0.0.1:8080").build()?;
/// assert_eq!(app.api().base_url(), "http://127.0.0.1:8080");
/// # Ok::<(), icr_app_core::Error>(())
/// ```
#[must_use = "call build()"]
pub struct AppBuilder {
    app_id: String,
    signer: Arc<dyn Signer>,
    base_url: Option<String>,
    api_version: Option<String>,
    user_agent: Option<String>,
    jwt_lifetime: Option<Duration>,
    cache: CacheConfig,
    retry: RetryPolicy,
    seed: u64,
}

impl AppBuilder {
    /// The registry's base URL (default `https://api.carbonregistry.com`).
    pub fn base_url(mut self, url: impl Into<String>) -> Self {
        self.base_url = Some(url.into());
        self
    }

    /// The `x-icr-api-version` to send (default `2023-06-16`).
    pub fn api_version(mut self, version: impl Into<String>) -> Self {
        self.api_version = Some(version.into());
        self
    }

    /// The `user-agent` to send.
    pub fn user_agent(mut self, user_agent: impl Into<String>) -> Self {
        self.user_agent = Some(user_agent.into());
        self
    }

    /// The JWT lifetime (default 9 minutes, at most 10).
    pub fn jwt_lifetime(mut self, lifetime: Duration) -> Self {
        self.jwt_lifetime = Some(lifetime);
        self
    }

    /// Token cache settings.
    pub fn cache(mut self, config: CacheConfig) -> Self {
        self.cache = config;
        self
    }

    /// How clients retry failed mints.
    pub fn retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// The seed of the back-off jitter (drivers pass randomness; tests a constant).
    pub fn seed(mut self, seed: u64) -> Self {
        self.seed = seed;
        self
    }

    /// Checks every setting and makes the [`App`].
    pub fn build(self) -> Result<App, Error> {
        let mut api = ApiConfig::new();
        if let Some(url) = &self.base_url {
            api = api.with_base_url(url)?;
        }
        if let Some(v) = &self.api_version {
            api = api.with_api_version(v)?;
        }
        if let Some(ua) = &self.user_agent {
            api = api.with_user_agent(ua)?;
        }
        let mut app = App::new(api, AppId::new(self.app_id)?, self.signer).with_cache(self.cache, self.seed);
        if let Some(lifetime) = self.jwt_lifetime {
            app = app.with_jwt_lifetime(lifetime)?;
        }
        app.retry = self.retry;
        Ok(app)
    }
}

/// What the app remembers of one mint in flight.
#[derive(Clone, Copy, Debug)]
struct Mint {
    /// The clock offset its JWT was signed with: a 401 is retried when the offset has moved
    /// since, even if another response taught the new one first.
    signed_with: ClockOffset,
    /// Whether it was already retried once for clock skew.
    skew_retried: bool,
}

/// One ICR app: its settings, signer, learned clock offset and token cache. No I/O.
///
/// Cloning is not offered: share one `App` (behind a lock) so every caller uses one cache.
pub struct App {
    api: ApiConfig,
    jwt: JwtSigner,
    offset: ClockOffset,
    cache: TokenCache<TokenScope>,
    /// What is remembered of each mint in flight (see [`Mint`]).
    mints: HashMap<RequestId, Mint>,
    retry: RetryPolicy,
    background_refresh: bool,
    /// The shared token store, when a driver attached one.
    shared: Option<Shared>,
    /// The organizations named as scopes: their installations, and lookups in flight.
    organizations: HashMap<OrganizationId, OrganizationState>,
    stats: Stats,
}

/// What the app knows of its shared token store.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) sealer: Sealer,
    pub(crate) settings: StoreSettings,
    /// Set by a store failure (the outage's warning given); until then the store is not asked.
    /// Cleared, with a note that sharing resumed, by the next reply.
    down_until: Option<Timestamp>,
    /// Per scope, the id of the last token the registry refused: never adopted from the store.
    pub(crate) refused: HashMap<TokenScope, Vec<u8>>,
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
    pub(crate) fn new(api: ApiConfig, app_id: AppId, signer: Arc<dyn Signer>) -> Self {
        Self {
            api,
            jwt: JwtSigner::new(app_id, signer),
            offset: ClockOffset::default(),
            cache: TokenCache::new(CacheConfig::default(), 0),
            mints: HashMap::new(),
            retry: RetryPolicy::default(),
            background_refresh: false,
            shared: None,
            organizations: HashMap::new(),
            stats: Stats::default(),
        }
    }

    /// A builder taking plain settings: the app id and the key (or any [`Signer`]).
    pub fn builder(app_id: impl Into<String>, signer: impl Signer + 'static) -> AppBuilder {
        AppBuilder {
            app_id: app_id.into(),
            signer: Arc::new(signer),
            base_url: None,
            api_version: None,
            user_agent: None,
            jwt_lifetime: None,
            cache: CacheConfig::default(),
            retry: RetryPolicy::default(),
            seed: 0,
        }
    }

    /// How drivers retry failed mints.
    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.retry
    }

    /// Replaces the token cache (dropping anything cached) with one of `config`, whose back-off
    /// jitter is drawn from `seed`.
    pub(crate) fn with_cache(mut self, config: CacheConfig, seed: u64) -> Self {
        self.cache = TokenCache::new(config, seed);
        self
    }

    /// Sets the JWT lifetime (at most 10 minutes; see [`JwtSigner::with_lifetime`]).
    pub(crate) fn with_jwt_lifetime(mut self, lifetime: Duration) -> Result<Self, Error> {
        self.jwt = self.jwt.with_lifetime(lifetime)?;
        Ok(self)
    }

    /// The API settings.
    pub fn api(&self) -> &ApiConfig {
        &self.api
    }

    /// The app id.
    pub fn app_id(&self) -> &AppId {
        self.jwt.app_id()
    }

    /// Server clock minus ours, as learned so far.
    pub fn clock_offset(&self) -> ClockOffset {
        self.offset
    }

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

    /// The installation the app was last found to have on `organization` (looked up, read from
    /// the shared store, or given by a [`Call::installation_for_organization`]), if it is
    /// remembered.
    ///
    /// [`Call::installation_for_organization`]: crate::Call::installation_for_organization
    pub fn organization_installation(&self, organization: &OrganizationId) -> Option<&InstallationId> {
        match self.organizations.get(organization)?.installation.as_ref()? {
            TokenScope::Installation(id) => Some(id),
            _ => None,
        }
    }

    /// The key `scope`'s token is cached under: the scope itself, or for an organization its
    /// installation's (`None` until it is known).
    pub(crate) fn cache_key<'a>(&'a self, scope: &'a TokenScope) -> Option<&'a TokenScope> {
        match scope {
            TokenScope::Organization(org) => self.organizations.get(org)?.installation.as_ref(),
            _ => Some(scope),
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

    /// What the app has done so far: hits, misses, mints, refreshes, failures by kind, waits,
    /// shared-store hits and fallbacks.
    pub fn stats(&self) -> Stats {
        self.stats.clone()
    }

    /// Counts one thing that happened.
    pub(crate) fn count(&mut self, counter: Counter) {
        self.stats.count(counter);
    }

    /// How many scopes the cache holds.
    pub fn cached_scopes(&self) -> usize {
        self.cache.len()
    }

    /// The cache settings.
    pub fn cache_config(&self) -> &CacheConfig {
        self.cache.config()
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

    /// Tells the app that a [`Refresher`](crate::Refresher) is running: a token whose
    /// refresh is due but which still has enough life is then handed out as it is, and the
    /// refresher renews it, so no caller waits for a refresh.
    pub fn set_background_refresh(&mut self, running: bool) {
        self.background_refresh = running;
    }

    /// Tells the app that its driver runs a shared token store (see
    /// [`StoreCommand`](crate::StoreCommand)): from now on operations read tokens from it before
    /// minting, take its lease to mint, and store what they mint. `owner_seed` makes this
    /// process's lease owner id: pass randomness.
    ///
    /// Fails when the signer cannot derive a sealing secret (a [`Signer`] other than
    /// [`AppKey`](crate::AppKey) that does not implement [`Signer::sealing_secret`]).
    pub fn attach_store(&mut self, settings: StoreSettings, owner_seed: u64) -> Result<(), Error> {
        let secret = self.jwt.signer().sealing_secret().ok_or_else(|| {
            Error::config(
                "shared token store",
                "this signer cannot derive a sealing secret from the app's key: use an AppKey, or implement Signer::sealing_secret",
            )
        })?;
        let sealer = Sealer::new(&secret, self.api.base_url(), self.jwt.app_id().as_str(), owner_seed)?;
        self.shared = Some(Shared {
            sealer,
            settings,
            down_until: None,
            refused: HashMap::new(),
        });
        Ok(())
    }

    /// The shared store, if one is attached and not given up on at `now` after a failure.
    pub(crate) fn store(&self, now: Timestamp) -> Option<&Shared> {
        self.shared
            .as_ref()
            .filter(|s| s.down_until.is_none_or(|until| now >= until))
    }

    /// The store answered: sharing is (again) in use.
    pub(crate) fn store_answered(&mut self) {
        if let Some(shared) = &mut self.shared
            && shared.down_until.take().is_some()
        {
            tracing::info!(target: "icr_app", "the shared token store answers again: tokens are shared again");
        }
    }

    /// The store failed: mint without it for a while; the first failure of an outage is
    /// logged as a warning, the rest at debug.
    pub(crate) fn store_failed(&mut self, error: &Error, now: Timestamp) {
        let Some(shared) = &mut self.shared else { return };
        self.stats.count(Counter::SharedFallback);
        let until = now.plus(shared.settings.retry_after_failure);
        if shared.down_until.replace(until).is_none() {
            tracing::warn!(target: "icr_app", cause = %error, "the shared token store failed: minting without it until it answers again");
        } else {
            tracing::debug!(target: "icr_app", cause = %error, "the shared token store failed again");
        }
    }

    /// Answers fetch `id` with a token read from the shared store, received at `now`.
    pub(crate) fn adopt_token(&mut self, id: RequestId, access: AccessToken, now: Timestamp) -> Result<Token, Error> {
        self.mints.remove(&id);
        self.cache.handle_token(id, access, now, self.offset.millis)
    }

    /// Ends fetch `id` without a token: another process is refreshing, and the cached token
    /// keeps serving until `until`.
    pub(crate) fn defer_refresh(&mut self, id: RequestId, until: Timestamp) {
        self.mints.remove(&id);
        let _ = self.cache.defer(id, until);
    }

    /// Whether a [`Refresher`](crate::Refresher) is said to be running.
    pub(crate) fn background_refresh(&self) -> bool {
        self.background_refresh
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

    /// Drops the cached JWT (the registry refused it).
    pub(crate) fn invalidate_jwt(&mut self) {
        self.jwt.invalidate();
    }

    /// The mint in flight as `id` was given up by its operation: release its scope at once.
    pub(crate) fn cancel_mint(&mut self, id: RequestId, now: Timestamp) {
        let _ = self.fail(
            id,
            Error::Transport {
                kind: TransportErrorKind::Cancelled,
                message: "the operation was dropped".into(),
            },
            now,
        );
    }

    /// Learns the clock offset from a response's `Date` header, received at local time `now`.
    /// Every `handle_*` call does this itself; call it for responses the `App` did not see.
    pub fn observe<B>(&mut self, response: &Response<B>, now: Timestamp) {
        let Some(date) = response.headers().get(DATE).and_then(|d| d.to_str().ok()) else {
            return;
        };
        if let Some(seen) = ClockOffset::from_date_header(date, now)
            && seen.millis.abs_diff(self.offset.millis) > OFFSET_HYSTERESIS_MS.unsigned_abs()
        {
            self.offset = seen;
            // Cached expiries were fixed on the old offset: a server clock that jumped ahead
            // makes them too late.
            self.cache.observe_offset(seen.millis);
        }
    }

    /// An app JWT valid at `now` (cached until about a minute before it expires).
    pub fn jwt(&mut self, now: Timestamp) -> Result<AppJwt, Error> {
        self.jwt.jwt(now, self.offset)
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

    /// Answers mint `id` with the registry's response, received at local time `now`.
    pub(crate) fn handle_token_response(
        &mut self,
        id: RequestId,
        response: Response<Vec<u8>>,
        now: Timestamp,
    ) -> Result<TokenAnswer, Error> {
        let mint = self.mints.remove(&id);
        let scope = self.cache.key_of(id).cloned().ok_or(Error::UnknownRequest(id.0))?;
        let signed_with = mint.map_or(self.offset, |m| m.signed_with);
        self.observe(&response, now);
        let status = response.status();
        if status == http::StatusCode::UNAUTHORIZED
            && self.skew_changed(signed_with)
            && !mint.is_some_and(|m| m.skew_retried)
        {
            self.jwt.invalidate();
            let offset_ms = self.offset.millis;
            tracing::info!(target: "icr_app", offset_ms, "the registry refused the JWT and its clock is not ours: signing again with its clock");
            match self.mint_request(id, &scope, now) {
                Ok(request) => {
                    if let Some(m) = self.mints.get_mut(&id) {
                        m.skew_retried = true;
                    }
                    return Ok(TokenAnswer::Retry(request));
                }
                Err(e) => return Err(self.fail(id, e, now)),
            }
        }
        let parsed = if status.is_success() {
            parse_json::<AccessToken>(&response, Credential::AppJwt)
        } else {
            if status == http::StatusCode::UNAUTHORIZED {
                self.jwt.invalidate();
            }
            Err(status_error(
                status.as_u16(),
                response.headers(),
                response.body(),
                Credential::AppJwt,
                Some(self.offset.millis),
            ))
        };
        match parsed {
            Ok(access) => self
                .cache
                .handle_token(id, access, now, self.offset.millis)
                .map(TokenAnswer::Token),
            Err(e) => Err(self.fail(id, e, now)),
        }
    }

    /// Answers mint `id` with an I/O failure (connection refused or dropped, timeout, or the
    /// caller gave up: [`TransportErrorKind::Cancelled`]). Returns the error to report.
    pub(crate) fn handle_token_failure(&mut self, id: RequestId, error: Error, now: Timestamp) -> Error {
        self.fail(id, error, now)
    }

    fn fail(&mut self, id: RequestId, error: Error, now: Timestamp) -> Error {
        self.mints.remove(&id);
        if !matches!(
            error,
            Error::Transport {
                kind: TransportErrorKind::Cancelled,
                ..
            }
        ) && self.cache.key_of(id).is_some()
        {
            self.stats.count_failure(&error);
        }
        self.cache.handle_error(id, error.clone(), now).unwrap_or(error)
    }

    /// Whether the offset learned since a request was signed moved by more than 30 s.
    pub(crate) fn skew_changed(&self, used: ClockOffset) -> bool {
        self.offset.millis.abs_diff(used.millis) > SKEW_RETRY_THRESHOLD.as_millis() as u64
    }

    /// The mint request for fetch `id`, remembering the offset it was signed with.
    pub(crate) fn mint_request(
        &mut self,
        id: RequestId,
        scope: &TokenScope,
        now: Timestamp,
    ) -> Result<Request<Vec<u8>>, Error> {
        let request = self.signed_mint_request(scope, now)?;
        self.stats.count(Counter::Mint);
        // Forget mints the cache no longer waits for (presumed abandoned, never answered), so
        // this stays as small as the number of mints in flight.
        let cache = &self.cache;
        self.mints.retain(|id, _| cache.key_of(*id).is_some());
        self.mints.insert(
            id,
            Mint {
                signed_with: self.offset,
                skew_retried: false,
            },
        );
        Ok(request)
    }

    fn signed_mint_request(&mut self, scope: &TokenScope, now: Timestamp) -> Result<Request<Vec<u8>>, Error> {
        let jwt = self.jwt.jwt(now, self.offset)?;
        let installation = match scope {
            TokenScope::App => None,
            TokenScope::Installation(id) => Some(id),
            // Operations mint under the installation's key, never the organization's.
            TokenScope::Organization(org) => {
                return Err(Error::config(
                    "token scope",
                    format!("organization {org} has no known installation to mint for; this is a bug in the core"),
                ));
            }
        };
        self.api.mint_request(installation, jwt.bearer().clone())
    }

    /// Drops `scope`'s cached token if it is `token` (the registry just refused it); a newer
    /// token is kept. With a shared store attached, that token is also never read back from the
    /// store's entry (another process may not have learned yet that it is refused).
    ///
    /// For an organization, the token is dropped from its installation's entry.
    pub fn invalidate(&mut self, scope: &TokenScope, token: &str) -> bool {
        let Some(key) = self.cache_key(scope).cloned() else {
            return false;
        };
        let dropped = self.cache.invalidate(&key, token);
        if dropped && let Some(shared) = &mut self.shared {
            let prefix = shared.sealer.token_prefix(&SecretString::new(token));
            shared.refused.insert(key, prefix);
        }
        dropped
    }

    /// Where an operation for `organization` stands at `now`; `waited` is the lookup it last
    /// waited for, whose failure is then its own.
    pub(crate) fn poll_organization(
        &mut self,
        organization: &OrganizationId,
        now: Timestamp,
        waited: Option<RequestId>,
    ) -> OrganizationPoll {
        let fetch_timeout = self.cache.config().fetch_timeout;
        if !self.organizations.contains_key(organization) {
            self.make_room_for_an_organization();
        }
        let state = self.organizations.entry(organization.clone()).or_default();
        if let Some(key) = &state.installation {
            return OrganizationPoll::Found(key.clone());
        }
        if let Some((id, started)) = state.lookup {
            let until = started.plus(fetch_timeout);
            if now < until {
                return OrganizationPoll::Wait { id, until };
            }
            // Presumed abandoned: its answer, if it ever comes, changes nothing.
            state.lookup = None;
        }
        if let Some((failed, error)) = &state.failed
            && waited == Some(*failed)
        {
            return OrganizationPoll::Failed(error.clone());
        }
        let id = self.cache.next_request_id();
        state.lookup = Some((id, now));
        OrganizationPoll::Lookup(id)
    }

    /// Keeps the organizations remembered within the cache's `max_entries`: the ones neither
    /// found nor being looked up go first, then the ones not being looked up.
    fn make_room_for_an_organization(&mut self) {
        let most = self.cache.config().max_entries.max(1);
        if self.organizations.len() < most {
            return;
        }
        self.organizations
            .retain(|_, o| o.lookup.is_some() || o.installation.is_some());
        if self.organizations.len() >= most {
            self.organizations.retain(|_, o| o.lookup.is_some());
        }
    }

    /// Lookup `lookup` (or a [`Call`](crate::Call) for the organization) found `installation` on
    /// `organization`: remembered, and returned as the token cache's key. An id that cannot be
    /// one is an error (and the lookup's failure).
    pub(crate) fn organization_found(
        &mut self,
        organization: &OrganizationId,
        lookup: Option<RequestId>,
        installation: &str,
    ) -> Result<TokenScope, Error> {
        let found = InstallationId::new(installation).map_err(|_| Error::MalformedBody {
            status: 200,
            problem: format!(
                "the installation of the app on organization {organization} has an id that is not one (empty, or with spaces or control characters)"
            ),
            excerpt: String::new(),
        });
        if !self.organizations.contains_key(organization) {
            self.make_room_for_an_organization();
        }
        let state = self.organizations.entry(organization.clone()).or_default();
        if lookup.is_some() && state.lookup.map(|(id, _)| id) == lookup {
            state.lookup = None;
        }
        match found {
            Ok(id) => {
                let key = TokenScope::Installation(id);
                state.installation = Some(key.clone());
                state.failed = None;
                Ok(key)
            }
            Err(error) => {
                if let Some(lookup) = lookup {
                    state.failed = Some((lookup, error.clone()));
                }
                Err(error)
            }
        }
    }

    /// Lookup `lookup` for `organization` failed with `error` (the operations that waited for it
    /// fail with it too).
    pub(crate) fn organization_failed(&mut self, organization: &OrganizationId, lookup: RequestId, error: &Error) {
        if let Some(state) = self.organizations.get_mut(organization) {
            if state.lookup.map(|(id, _)| id) == Some(lookup) {
                state.lookup = None;
            }
            state.failed = Some((lookup, error.clone()));
        }
    }

    /// Lookup `lookup` for `organization` was given up by its operation: another may start at
    /// once.
    pub(crate) fn cancel_lookup(&mut self, organization: &OrganizationId, lookup: RequestId) {
        if let Some(state) = self.organizations.get_mut(organization)
            && state.lookup.map(|(id, _)| id) == Some(lookup)
        {
            state.lookup = None;
        }
    }

    /// The registry no longer knows `installation` (a mint for it answered 404): if it is still
    /// `organization`'s, forget it, so the next operation looks the organization up again.
    /// Returns whether it was forgotten (another operation may have done it first).
    pub(crate) fn organization_installation_gone(
        &mut self,
        organization: &OrganizationId,
        installation: &TokenScope,
    ) -> bool {
        let Some(state) = self.organizations.get_mut(organization) else {
            return false;
        };
        if state.installation.as_ref() != Some(installation) {
            return false;
        }
        state.installation = None;
        if let TokenScope::Installation(id) = installation {
            state.stale = Some(id.clone());
        }
        tracing::info!(target: "icr_app", %organization, %installation, "the registry no longer knows this installation of the organization (reinstalled or uninstalled): looking the organization up again");
        true
    }

    /// The installation last found gone for `organization`, if any (never read back from the
    /// shared store).
    pub(crate) fn stale_installation(&self, organization: &OrganizationId) -> Option<&InstallationId> {
        self.organizations.get(organization)?.stale.as_ref()
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

    /// Empties the cache, returning every token that was cached (to revoke them on shutdown
    /// with [`revoke_request`](Self::revoke_request)).
    pub(crate) fn drain_tokens(&mut self) -> Vec<(TokenScope, Token)> {
        self.mints.clear();
        self.cache.drain()
    }

    /// `DELETE /app/installations/token` for `token`.
    pub(crate) fn revoke_request(&self, token: &SecretString) -> Result<Request<Vec<u8>>, Error> {
        self.api.revoke_token(token)
    }

    /// Reads the answer to revoking `token` (any 2xx is success; the body is not documented). On
    /// success, or a 401 (the token was already invalid), the token is dropped from the cache;
    /// the scopes that held it are returned with the result.
    pub(crate) fn finish_revoke(
        &mut self,
        token: &SecretString,
        response: &Response<Vec<u8>>,
        now: Timestamp,
    ) -> (Result<(), Error>, Vec<TokenScope>) {
        self.observe(response, now);
        let result = check_status(response, Credential::AccessToken);
        let mut held = Vec::new();
        if result.is_ok() || response.status() == http::StatusCode::UNAUTHORIZED {
            held = self.cache.invalidate_everywhere(token.expose());
        }
        (result, held)
    }

    /// The store command that removes `token` from `scope`'s shared entry, if the entry still
    /// holds it (a newer token is kept), when a store is attached and answering.
    pub(crate) fn forget_shared(
        &self,
        scope: &TokenScope,
        token: &SecretString,
        now: Timestamp,
    ) -> Option<StoreCommand> {
        let shared = self.store(now)?;
        Some(StoreCommand::Delete {
            key: shared.sealer.entry(scope),
            prefix: shared.sealer.token_prefix(token),
        })
    }

    /// The store answered command `id` of an operation that only tells it something.
    pub(crate) fn store_told(&mut self, reply: Result<StoreReply, Error>, now: Timestamp) {
        match reply {
            Ok(_) => self.store_answered(),
            Err(error) => self.store_failed(&error, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    struct FakeSigner;
    impl Signer for FakeSigner {
        fn sign_rs256(&self, _message: &[u8]) -> Result<Vec<u8>, Error> {
            Ok(vec![1, 2, 3])
        }
    }

    struct BrokenSigner;
    impl Signer for BrokenSigner {
        fn sign_rs256(&self, _message: &[u8]) -> Result<Vec<u8>, Error> {
            Err(Error::Signing("the HSM is offline".into()))
        }
    }

    const T0: i64 = 1_700_000_000;

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_seconds(T0 + secs)
    }

    fn app() -> App {
        App::new(ApiConfig::new(), AppId::new("app-1").unwrap(), Arc::new(FakeSigner))
    }

    fn scope() -> TokenScope {
        TokenScope::Installation(InstallationId::new("inst-1").unwrap())
    }

    fn token_body(server_now: i64) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({
            "id": "t1", "token": "crs_0123456789abcdef0123456789abcdef0123456789abcdef",
            "createdAt": at(server_now).to_rfc3339(), "updatedAt": at(server_now).to_rfc3339(),
            "expiresAt": at(server_now + 7200).to_rfc3339(), "isActive": true,
            "permissions": {"organization_info": "VIEW"}, "appId": "app-1", "installationId": "inst-1", "organizationId": "o1"
        }))
        .unwrap()
    }

    fn response(status: u16, server_now: i64, body: Vec<u8>) -> Response<Vec<u8>> {
        Response::builder()
            .status(status)
            .header("date", at(server_now).to_http_date())
            .body(body)
            .unwrap()
    }

    fn iat_of(request: &Request<Vec<u8>>) -> i64 {
        let auth = request.headers()["authorization"].to_str().unwrap();
        let claims = auth.trim_start_matches("Bearer ").split('.').nth(1).unwrap();
        let v: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
        v["iat"].as_i64().unwrap()
    }

    /// What the token machinery asks for at `now`, as the operations see it (test shorthand).
    #[derive(Debug)]
    #[allow(clippy::large_enum_variant)] // a test shorthand, short-lived
    enum TokenStep {
        Ready(#[allow(dead_code)] Token),
        Send { id: RequestId, request: Request<Vec<u8>> },
        Wait,
        Failed,
    }

    impl App {
        fn poll_token(
            &mut self,
            scope: &TokenScope,
            now: Timestamp,
            min_life: Option<Duration>,
        ) -> Result<TokenStep, Error> {
            match self.poll_cache(scope, now, min_life) {
                Poll::Ready(t) => Ok(TokenStep::Ready(t)),
                Poll::Wait { .. } => Ok(TokenStep::Wait),
                Poll::Failed { .. } => Ok(TokenStep::Failed),
                Poll::Fetch { id, .. } => match self.mint_request(id, scope, now) {
                    Ok(request) => Ok(TokenStep::Send { id, request }),
                    Err(e) => Err(self.handle_token_failure(id, e, now)),
                },
            }
        }
    }

    /// Polls `op` once, expecting a send.
    fn sent<O: crate::ops::Operation>(op: &mut O, app: &mut App, now: Timestamp) -> (RequestId, Request<Vec<u8>>) {
        match op.poll(app, now) {
            crate::ops::Step::Send { id, request } => (id, request),
            _ => panic!("expected a send"),
        }
    }

    fn send(step: TokenStep) -> (RequestId, Request<Vec<u8>>) {
        match step {
            TokenStep::Send { id, request, .. } => (id, request),
            other => panic!("expected Send, got {other:?}"),
        }
    }

    #[test]
    fn mint_then_cache() {
        let mut app = app();
        let (id, req) = send(app.poll_token(&scope(), at(0), None).unwrap());
        assert_eq!(req.uri().path(), "/app/installations/inst-1/accessTokens");
        assert!(matches!(
            app.poll_token(&scope(), at(0), None).unwrap(),
            TokenStep::Wait
        ));
        let TokenAnswer::Token(t) = app
            .handle_token_response(id, response(200, 0, token_body(0)), at(0))
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(t.access_token().organization_id.as_deref(), Some("o1"));
        assert!(app.peek_token(&scope(), at(10), None).is_some());
        assert!(matches!(
            app.poll_token(&scope(), at(10), None).unwrap(),
            TokenStep::Ready(_)
        ));
    }

    /// `hit` answers exactly when `GetToken` would hand the token out with nothing to perform,
    /// and counts a hit only then.
    #[test]
    fn hit_is_the_get_token_hit_alone() {
        let mut app = app();
        assert!(app.hit(&scope(), at(0), None).is_none());
        let (id, _) = send(app.poll_token(&scope(), at(0), None).unwrap());
        // A mint in flight: no hit.
        assert!(app.hit(&scope(), at(0), None).is_none());
        let TokenAnswer::Token(t) = app
            .handle_token_response(id, response(200, 0, token_body(0)), at(0))
            .unwrap()
        else {
            panic!()
        };
        assert!(app.hit(&scope(), at(10), None).is_some_and(|h| h.same_as(&t)));
        assert_eq!(app.stats().hits, 1);
        // Once a refresh is due (90 % of the 2 h life), the operation has work to do: no hit,
        // and nothing counted or started.
        assert!(app.hit(&scope(), at(6600), None).is_none());
        assert_eq!(app.stats().hits, 1);
        assert!(matches!(app.token_state(&scope(), at(6600)), TokenState::Valid(_)));
        // A refused token is gone for the hit too.
        assert!(app.invalidate(&scope(), t.secret().expose()));
        assert!(app.hit(&scope(), at(20), None).is_none());
    }

    /// Offsets learned against absurd local clocks (the far past, then the far future) must not
    /// overflow when compared, whether to learn a new offset or to decide a skew retry.
    #[test]
    fn offsets_from_absurd_local_clocks_do_not_overflow() {
        let mut app = app();
        app.observe(&response(200, 0, Vec::new()), Timestamp::from_unix_millis(i64::MIN));
        app.observe(&response(200, 0, Vec::new()), Timestamp::from_unix_millis(i64::MAX));
        let (id, _) = send(app.poll_token(&scope(), at(0), None).unwrap());
        app.observe(&response(200, 0, Vec::new()), Timestamp::from_unix_millis(i64::MIN));
        // A 401 makes the app compare the offset the mint was signed with to the newest one.
        let _ = app.handle_token_response(id, response(401, 0, Vec::new()), Timestamp::from_unix_millis(i64::MAX));
    }

    /// Regression (found by the fault soak): the registry's clock jumped ahead after a token was
    /// cached; the next `Date` seen must cut the cached token's life to what the registry gives
    /// it, or the token is handed out after the registry considers it expired.
    #[test]
    fn a_server_clock_jump_seen_in_any_response_shortens_cached_tokens() {
        let mut app = app();
        let (id, _) = send(app.poll_token(&scope(), at(0), None).unwrap());
        let _ = app
            .handle_token_response(id, response(200, 0, token_body(0)), at(0))
            .unwrap();
        assert!(app.peek_token(&scope(), at(10), None).is_some());
        // Any response (here a 404 to some other call) shows the registry's clock 2 h - 40 s
        // ahead: the token has 30 s left there.
        app.observe(&response(404, 10 + 7200 - 40, Vec::new()), at(10));
        assert!(app.peek_token(&scope(), at(10), None).is_none());
        assert!(matches!(
            app.poll_token(&scope(), at(10), None).unwrap(),
            TokenStep::Send { .. }
        ));
    }

    /// A mint the cache presumes abandoned (never answered) leaves nothing behind in the app's
    /// per-mint records, and neither does a late answer to it.
    #[test]
    fn abandoned_mints_are_forgotten() {
        let mut app = app();
        let (first, _) = send(app.poll_token(&scope(), at(0), None).unwrap());
        // Past the fetch timeout the cache starts another mint for the same installation.
        let (second, _) = send(app.poll_token(&scope(), at(121), None).unwrap());
        assert_ne!(first, second);
        assert_eq!(app.mints.len(), 1, "only the mint in flight is remembered");
        let late = app.handle_token_response(first, response(200, 121, token_body(121)), at(122));
        assert!(matches!(late, Err(Error::UnknownRequest(_))));
        let _ = app
            .handle_token_response(second, response(200, 121, token_body(121)), at(122))
            .unwrap();
        assert!(app.mints.is_empty());
    }

    /// Regression (found by the fault soak): two mints signed before the registry's clock jumped
    /// are both refused; the first answer teaches the new offset, and the second must still be
    /// retried, since it was signed with the old one.
    #[test]
    fn every_mint_signed_with_an_old_clock_is_retried_after_a_jump() {
        let mut app = app();
        let other = TokenScope::Installation(InstallationId::new("inst-2").unwrap());
        let (a, _) = send(app.poll_token(&scope(), at(0), None).unwrap());
        let (b, _) = send(app.poll_token(&other, at(0), None).unwrap());
        let refused = br#"{"statusCode":401,"message":"JWT expired","error":"Unauthorized"}"#.to_vec();
        for id in [a, b] {
            let answer = app.handle_token_response(id, response(401, 7200, refused.clone()), at(1));
            let Ok(TokenAnswer::Retry(again)) = answer else {
                panic!("{id}: not retried: {answer:?}")
            };
            assert_eq!(iat_of(&again), T0 + 7200 - 60);
        }
        // A mint signed with the new offset and refused is not retried again.
        let (c, _) = send(app.poll_token(&TokenScope::App, at(2), None).unwrap());
        assert!(matches!(
            app.handle_token_response(c, response(401, 7202, refused), at(2)),
            Err(Error::Unauthorized { .. })
        ));
    }

    #[test]
    fn skewed_401_is_retried_once_with_the_server_clock() {
        let mut app = app();
        let (id, first) = send(app.poll_token(&scope(), at(0), None).unwrap());
        assert_eq!(iat_of(&first), T0 - 60);
        // The server is two hours ahead and refuses the JWT.
        let refused =
            br#"{"statusCode":401,"message":"JWT issued too far in the past","error":"Unauthorized"}"#.to_vec();
        let TokenAnswer::Retry(second) = app
            .handle_token_response(id, response(401, 7200, refused.clone()), at(0))
            .unwrap()
        else {
            panic!("expected a retry")
        };
        assert_eq!(iat_of(&second), T0 + 7200 - 60);
        assert_eq!(app.clock_offset().millis, 7_200_500);
        // A second 401 for the same id is final, and names the clock.
        let e = match app.handle_token_response(id, response(401, 7200, refused), at(0)) {
            Err(e) => e,
            Ok(_) => panic!("expected an error"),
        };
        assert!(
            matches!(
                e,
                Error::Unauthorized {
                    clock_skew: Some(7_200_500),
                    ..
                }
            ),
            "{e:?}"
        );
        assert!(e.to_string().contains("7200 s behind"), "{e}");
    }

    #[test]
    fn unskewed_401_is_not_retried() {
        let mut app = app();
        let (id, _) = send(app.poll_token(&scope(), at(0), None).unwrap());
        let e = app
            .handle_token_response(id, response(401, 0, Vec::new()), at(0))
            .err()
            .unwrap();
        assert!(matches!(e, Error::Unauthorized { clock_skew: None, .. }));
        assert!(matches!(
            app.poll_token(&scope(), at(0), None).unwrap(),
            TokenStep::Failed
        ));
    }

    #[test]
    fn server_behind_gives_correct_local_expiry() {
        let mut app = app();
        let (id, _) = send(app.poll_token(&scope(), at(0), None).unwrap());
        let TokenAnswer::Token(t) = app
            .handle_token_response(id, response(200, -7200, token_body(-7200)), at(0))
            .unwrap()
        else {
            panic!()
        };
        assert!(t.expires_local() <= at(7200) && t.expires_local() >= at(7199));
        // The next JWT is made on the server's clock.
        let (_, request) = sent(&mut crate::ops::Call::installations_page(10, 0), &mut app, at(1));
        assert_eq!(iat_of(&request), T0 + 1 - 7200 - 60);
    }

    #[test]
    fn one_off_calls_and_skew_retry() {
        use crate::ops::{Call, Operation, Step};
        let mut app = app();
        let mut call = Call::installations_page(2, 0);
        let (id, _) = sent(&mut call, &mut app, at(0));
        call.handle_response(&mut app, id, response(401, -3600, Vec::new()), at(0));
        let (id, request) = sent(&mut call, &mut app, at(0));
        assert_eq!(iat_of(&request), T0 - 3600 - 60);
        let body =
            br#"{"pagination":{"total":3,"currentPage":1,"nextPage":2},"installations":[{"id":"a"},{"id":"b"}]}"#;
        call.handle_response(&mut app, id, response(200, -3600, body.to_vec()), at(0));
        let Step::Done(Ok(page)) = call.poll(&mut app, at(0)) else {
            panic!()
        };
        assert_eq!(page.installations.len(), 2);
        assert!(page.has_more(2, 2));
        // A malformed body is a clear error (an installation read is retried, so give it no budget).
        let mut app = App::builder("app-1", FakeSigner)
            .retry(RetryPolicy::never())
            .build()
            .unwrap();
        let mut call = Call::installation(InstallationId::new("a").unwrap());
        let (id, _) = sent(&mut call, &mut app, at(0));
        call.handle_response(&mut app, id, response(200, -3600, b"<html>".to_vec()), at(0));
        let Step::Done(Err(e)) = call.poll(&mut app, at(0)) else {
            panic!()
        };
        assert!(matches!(e, Error::MalformedBody { .. }));
    }

    #[test]
    fn transport_failure_and_signing_failure() {
        let mut app = app();
        let (id, _) = send(app.poll_token(&scope(), at(0), None).unwrap());
        let e = app.handle_token_failure(
            id,
            Error::Transport {
                kind: TransportErrorKind::ConnectionLost,
                message: "connection reset".into(),
            },
            at(0),
        );
        assert!(e.is_retryable());
        let mut broken = App::new(ApiConfig::new(), AppId::new("a").unwrap(), Arc::new(BrokenSigner));
        let e = broken.poll_token(&scope(), at(0), None).unwrap_err();
        assert!(e.to_string().contains("HSM is offline"));
        // The failed fetch was answered: the scope is in back-off, not stuck in flight.
        assert!(matches!(
            broken.poll_token(&scope(), at(0), None).unwrap(),
            TokenStep::Failed
        ));
    }

    #[test]
    fn date_jitter_does_not_move_the_offset() {
        let mut app = app();
        app.observe(&response(200, 7200, Vec::new()), at(0));
        assert_eq!(app.clock_offset().millis, 7_200_500);
        app.observe(&response(200, 7201, Vec::new()), at(0));
        assert_eq!(app.clock_offset().millis, 7_200_500);
        app.observe(&response(200, 7300, Vec::new()), at(0));
        assert_eq!(app.clock_offset().millis, 7_300_500);
    }

    #[test]
    fn revoke_and_drain() {
        let mut app = app();
        let (id, _) = send(app.poll_token(&scope(), at(0), None).unwrap());
        let _ = app
            .handle_token_response(id, response(200, 0, token_body(0)), at(0))
            .unwrap();
        let drained = app.drain_tokens();
        assert_eq!(drained.len(), 1);
        let secret = drained[0].1.secret().clone();
        let req = app.revoke_request(&secret).unwrap();
        assert_eq!(req.method(), http::Method::DELETE);
        assert!(
            app.finish_revoke(&secret, &response(200, 0, b"{}".to_vec()), at(0))
                .0
                .is_ok()
        );
        let refused = app.finish_revoke(&secret, &response(401, 0, Vec::new()), at(0)).0;
        assert!(matches!(refused, Err(Error::Unauthorized { .. })));
        // A revoked token that is still cached is dropped from the cache.
        let (id, _) = send(app.poll_token(&scope(), at(0), None).unwrap());
        let Ok(TokenAnswer::Token(t)) = app.handle_token_response(id, response(200, 0, token_body(0)), at(0)) else {
            panic!("expected a token")
        };
        let (result, held) = app.finish_revoke(t.secret(), &response(200, 0, Vec::new()), at(0));
        result.unwrap();
        assert_eq!(held, vec![scope()]);
        assert!(app.peek_token(&scope(), at(1), None).is_none());
    }
}
