//! The blocking client: many threads share one [`Client`] (or its clones) and one token cache.

use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use http::{Method, Request, Response, StatusCode};
use icr_app_core::pager::DEFAULT_PAGE_SIZE;
use icr_app_core::{
    App, AppJwt, CallStep, CreateUserOrganization, CreatedUserOrganization, Error, Installation, InstallationId,
    InstallationPager, InstallationsPage, JwtCall, RequestId, SecretString, Timestamp, Token, TokenAnswer, TokenScope,
    TokenStep,
};
use serde::de::DeserializeOwned;

use crate::transport::UreqTransport;

/// A blocking ICR app client. Cheap to clone; clones share the token cache.
///
/// Threads asking for the same installation's token cause one mint between them; other
/// installations are never held up by it. Tokens are refreshed ahead of expiry by the first
/// caller that finds a refresh due, while the others keep using the still-valid token.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Sharded: a cache hit takes a read lock of its thread's own shard, so hits on other
    /// threads never write the same memory (a mint takes every shard).
    app: ShardedLock<App>,
    transport: UreqTransport,
    /// Bumped (under its lock) whenever a mint finishes, to wake callers waiting for it.
    generation: Mutex<u64>,
    finished: Condvar,
}

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

impl Client {
    /// A client over the default transport (rustls, timeouts, no redirects).
    pub fn new(app: App) -> Self {
        Self::with_transport(app, UreqTransport::new())
    }

    /// A client over a transport you configured (e.g. around your own `ureq::Agent`).
    pub fn with_transport(app: App, transport: UreqTransport) -> Self {
        Self {
            inner: Arc::new(Inner {
                app: ShardedLock::new(app),
                transport,
                generation: Mutex::new(0),
                finished: Condvar::new(),
            }),
        }
    }

    fn read(&self) -> ShardedLockReadGuard<'_, App> {
        self.inner.app.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> ShardedLockWriteGuard<'_, App> {
        self.inner.app.write().unwrap_or_else(PoisonError::into_inner)
    }

    fn generation(&self) -> MutexGuard<'_, u64> {
        self.inner.generation.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the core [`App`] (settings, clock offset, cache inspection).
    pub fn with_app<R>(&self, f: impl FnOnce(&App) -> R) -> R {
        f(&self.read())
    }

    /// The transport, to send requests the client does not describe.
    pub fn transport(&self) -> &UreqTransport {
        &self.inner.transport
    }

    /// An installation access token with at least the default minimum life (60 s) left.
    pub fn installation_token(&self, installation: &InstallationId) -> Result<Token, Error> {
        self.token(&TokenScope::Installation(installation.clone()), None)
    }

    /// An app access token.
    pub fn app_token(&self) -> Result<Token, Error> {
        self.token(&TokenScope::App, None)
    }

    /// A token for `scope` with at least `min_life` left (default 60 s): from the cache, or
    /// minted (once, however many threads ask), retrying 429/5xx/connection failures as the
    /// app's [`RetryPolicy`](icr_app_core::RetryPolicy) allows.
    pub fn token(&self, scope: &TokenScope, min_life: Option<Duration>) -> Result<Token, Error> {
        if let Some(t) = self.read().peek_token(scope, now(), min_life) {
            return Ok(t);
        }
        let (mut attempts, mut waited) = (0u32, Duration::ZERO);
        loop {
            let seen = *self.generation();
            let now = now();
            let step = self.write().poll_token(scope, now, min_life)?;
            match step {
                TokenStep::Ready(t) => return Ok(t),
                TokenStep::Send { id, request, .. } => {
                    attempts += 1;
                    if let Ok(t) = self.mint(id, request) {
                        return Ok(t);
                    }
                    // The failure is recorded in the cache; the next poll says what to do.
                }
                TokenStep::Wait { until } => self.wait_for_mint(seen, until),
                TokenStep::Failed { error, retry_at } => {
                    let policy = self.read().retry_policy().clone();
                    let Some(delay) = policy.delay(attempts.max(1), waited, &error, retry_at, now) else {
                        return Err(error);
                    };
                    retrying(attempts.max(1), policy.max_attempts, delay, &error);
                    std::thread::sleep(delay);
                    waited += delay;
                }
            }
        }
    }

    /// Sends mint `id` (and its one clock-skew retry) and records the answer.
    fn mint(&self, id: RequestId, mut request: Request<Vec<u8>>) -> Result<Token, Error> {
        let result = loop {
            let sent = self.inner.transport.send(request);
            let mut app = self.write();
            let answer = match sent {
                Ok(response) => app.handle_token_response(id, response, now()),
                Err(Error::Transport { kind, message }) => Err(app.handle_token_failure(id, kind, message, now())),
                Err(other) => Err(app.handle_token_failure(
                    id,
                    icr_app_core::TransportErrorKind::Refused,
                    other.to_string(),
                    now(),
                )),
            };
            match answer {
                Ok(TokenAnswer::Retry(again)) => request = again,
                Ok(TokenAnswer::Token(t)) => break Ok(t),
                Err(e) => break Err(e),
            }
        };
        *self.generation() += 1;
        self.inner.finished.notify_all();
        result
    }

    fn wait_for_mint(&self, seen: u64, until: Timestamp) {
        let timeout = until.saturating_since(now()).max(Duration::from_millis(1));
        let guard = self.generation();
        let _ = self.inner.finished.wait_timeout_while(guard, timeout, |g| *g == seen);
    }

    /// Drops a cached token the registry refused, so the next call mints a new one.
    pub fn invalidate(&self, scope: &TokenScope, token: &Token) -> bool {
        self.write().invalidate(scope, token.secret().expose())
    }

    /// An app JWT (cached until about a minute before it expires).
    pub fn jwt(&self) -> Result<AppJwt, Error> {
        self.write().jwt(now())
    }

    /// Every installation of the app, following every page.
    pub fn installations(&self) -> Result<Vec<Installation>, Error> {
        let mut pager = InstallationPager::new(DEFAULT_PAGE_SIZE);
        loop {
            let Some(call) = pager.next(&mut self.write(), now())? else {
                break;
            };
            pager.add(self.run_call(call, true)?);
        }
        Ok(pager.into_items())
    }

    /// One page of installations (`page` counts from 0).
    pub fn installations_page(&self, limit: u32, page: u32) -> Result<InstallationsPage, Error> {
        let call = self.write().list_installations(limit, page, now())?;
        self.run_call(call, true)
    }

    /// One installation (also how to check an `installationId` from a callback URL).
    pub fn installation(&self, installation: &InstallationId) -> Result<Installation, Error> {
        let call = self.write().get_installation(installation, now())?;
        self.run_call(call, true)
    }

    /// Creates a user and an organization with the app installed. Not retried: it is not
    /// idempotent.
    pub fn create_user_organization(&self, body: &CreateUserOrganization) -> Result<CreatedUserOrganization, Error> {
        let call = self.write().create_user_organization(body, now())?;
        self.run_call(call, false)
    }

    /// Sends a JWT call, with its one clock-skew retry and, when `idempotent`, retries of
    /// 429/5xx/connection failures within the retry policy.
    fn run_call<T: DeserializeOwned>(&self, mut call: JwtCall<T>, idempotent: bool) -> Result<T, Error> {
        let policy = self.read().retry_policy().clone();
        let (mut attempts, mut waited) = (0u32, Duration::ZERO);
        loop {
            attempts += 1;
            let outcome = match self.inner.transport.send(call.request().clone()) {
                Ok(response) => self.write().finish(call.clone(), response, now()),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(CallStep::Done(value)) => return Ok(value),
                Ok(CallStep::Retry(again)) => call = again,
                Err(e) => match policy.call_delay(attempts, waited, &e) {
                    Some(delay) if idempotent => {
                        retrying(attempts, policy.max_attempts, delay, &e);
                        std::thread::sleep(delay);
                        waited += delay;
                    }
                    _ => return Err(e),
                },
            }
        }
    }

    /// Revokes `token` (`DELETE /app/installations/token`) and drops it from the cache.
    pub fn revoke(&self, token: &SecretString) -> Result<(), Error> {
        let request = self.read().revoke_request(token)?;
        let response = self.inner.transport.send(request)?;
        self.write().finish_revoke(token, &response, now())
    }

    /// Revokes every cached token (e.g. on shutdown) and empties the cache. Returns how many
    /// were revoked, or the first failure after trying them all.
    pub fn revoke_all(&self) -> Result<usize, Error> {
        let tokens = self.write().drain_tokens();
        let mut first_error = None;
        let mut revoked = 0;
        for (_, token) in tokens {
            match self.revoke(token.secret()) {
                Ok(()) => revoked += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        first_error.map_or(Ok(revoked), Err)
    }

    /// A request for `path_and_query` relative to the base URL, with the standard headers.
    pub fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Request<Vec<u8>>, Error> {
        self.read().api().request(method, path_and_query, body)
    }

    /// Sends `request` as `installation`: adds its token; on a 401 drops that token, mints a
    /// new one and retries once. Returns the response whatever its status.
    pub fn send_as_installation(
        &self,
        installation: &InstallationId,
        request: Request<Vec<u8>>,
    ) -> Result<Response<Vec<u8>>, Error> {
        self.send_as(&TokenScope::Installation(installation.clone()), request)
    }

    /// Sends `request` with the app access token, like
    /// [`send_as_installation`](Self::send_as_installation).
    pub fn send_as_app(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, Error> {
        self.send_as(&TokenScope::App, request)
    }

    fn send_as(&self, scope: &TokenScope, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, Error> {
        let registry = self.read().api().check_target(&request)?;
        let mut retried = false;
        loop {
            let token = self.token(scope, None)?;
            let mut attempt = request.clone();
            icr_app_core::api::authorize(&mut attempt, token.secret())?;
            let response = self.inner.transport.send(attempt)?;
            if registry {
                self.write().observe(&response, now());
            }
            if response.status() == StatusCode::UNAUTHORIZED && !retried {
                self.invalidate(scope, &token);
                retried = true;
                continue;
            }
            return Ok(response);
        }
    }

    /// `GET path` as `installation`, parsed as JSON.
    pub fn get_json<T: DeserializeOwned>(
        &self,
        installation: &InstallationId,
        path_and_query: &str,
    ) -> Result<T, Error> {
        let request = self.request(Method::GET, path_and_query, None)?;
        let response = self.send_as_installation(installation, request)?;
        icr_app_core::response::parse_json(&response, icr_app_core::Credential::AccessToken)
    }
}

/// Reports a retry (target `icr_app`, WARN): what failed, the attempt, and the wait.
fn retrying(attempt: u32, max_attempts: u32, wait: Duration, cause: &Error) {
    let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    tracing::warn!(target: "icr_app", attempt, max_attempts, wait_ms, cause = %cause, "retrying");
}
