//! The async client: many tasks share one [`Client`] (or its clones) and one token cache.

use crossbeam_utils::sync::{ShardedLock, ShardedLockReadGuard, ShardedLockWriteGuard};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, SystemTime};

use http::{Method, Request, Response, StatusCode};
use icr_app_core::pager::DEFAULT_PAGE_SIZE;
use icr_app_core::{
    App, AppJwt, CallStep, CreateUserOrganization, CreatedUserOrganization, Error, Installation, InstallationId,
    InstallationPager, InstallationsPage, JwtCall, RequestId, SecretString, Timestamp, Token, TokenAnswer, TokenScope,
    TokenStep, TransportErrorKind,
};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use crate::transport::ReqwestTransport;

/// An async ICR app client. Cheap to clone; clones share the token cache.
///
/// Tasks asking for the same installation's token cause one mint between them; other
/// installations are never held up by it, and no lock is held across an `.await`, so nothing
/// blocks the runtime. With [`spawn_refresher`](Self::spawn_refresher), tokens are renewed by a
/// background task ahead of expiry and callers never wait for a refresh.
#[derive(Clone, Debug)]
pub struct Client {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    /// Sharded: a cache hit takes a read lock of its thread's own shard, so hits on other
    /// threads never write the same memory (a mint takes every shard).
    app: ShardedLock<App>,
    transport: ReqwestTransport,
    /// Bumped whenever a mint finishes, to wake tasks waiting for it (and the refresher).
    generation: watch::Sender<u64>,
    background: AtomicBool,
}

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// Reports a mint as cancelled if the task driving it is dropped before it finishes, so the
/// installation is not left "fetching" until the fetch timeout.
struct MintGuard<'a> {
    client: &'a Client,
    id: RequestId,
    armed: bool,
}

impl Drop for MintGuard<'_> {
    fn drop(&mut self) {
        if self.armed {
            let _ = self.client.write().handle_token_failure(
                self.id,
                TransportErrorKind::Cancelled,
                "the caller stopped waiting",
                now(),
            );
            self.client.inner.generation.send_modify(|g| *g += 1);
        }
    }
}

impl Client {
    /// A client over the default transport (rustls, timeouts, no redirects).
    pub fn new(app: App) -> Result<Self, Error> {
        Ok(Self::with_transport(app, ReqwestTransport::new()?))
    }

    /// A client over a transport you configured (e.g. around your own `reqwest::Client`).
    pub fn with_transport(app: App, transport: ReqwestTransport) -> Self {
        Self {
            inner: Arc::new(Inner {
                app: ShardedLock::new(app),
                transport,
                generation: watch::Sender::new(0),
                background: AtomicBool::new(false),
            }),
        }
    }

    fn read(&self) -> ShardedLockReadGuard<'_, App> {
        self.inner.app.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self) -> ShardedLockWriteGuard<'_, App> {
        self.inner.app.write().unwrap_or_else(PoisonError::into_inner)
    }

    /// Runs `f` on the core [`App`] (settings, clock offset, cache inspection).
    pub fn with_app<R>(&self, f: impl FnOnce(&App) -> R) -> R {
        f(&self.read())
    }

    /// The transport, to send requests the client does not describe.
    pub fn transport(&self) -> &ReqwestTransport {
        &self.inner.transport
    }

    /// An installation access token with at least the default minimum life (60 s) left.
    pub async fn installation_token(&self, installation: &InstallationId) -> Result<Token, Error> {
        self.token(&TokenScope::Installation(installation.clone()), None).await
    }

    /// An app access token.
    pub async fn app_token(&self) -> Result<Token, Error> {
        self.token(&TokenScope::App, None).await
    }

    /// A token for `scope` with at least `min_life` left (default 60 s): from the cache, or
    /// minted (once, however many tasks ask), retrying 429/5xx/connection failures as the app's
    /// [`RetryPolicy`](icr_app_core::RetryPolicy) allows.
    pub async fn token(&self, scope: &TokenScope, min_life: Option<Duration>) -> Result<Token, Error> {
        if let Some(t) = self.read().peek_token(scope, now(), min_life) {
            return Ok(t);
        }
        let (mut attempts, mut waited) = (0u32, Duration::ZERO);
        loop {
            let mut finished = self.inner.generation.subscribe();
            let now = now();
            let step = self.write().poll_token(scope, now, min_life)?;
            match step {
                TokenStep::Ready(t) => return Ok(t),
                TokenStep::Send {
                    id,
                    request,
                    stale: Some(stale),
                } if self.inner.background.load(Ordering::Relaxed) => {
                    let client = self.clone();
                    tokio::spawn(async move {
                        let _ = client.mint(id, request).await;
                    });
                    return Ok(stale);
                }
                TokenStep::Send { id, request, .. } => {
                    attempts += 1;
                    if let Ok(t) = self.mint(id, request).await {
                        return Ok(t);
                    }
                }
                TokenStep::Wait { until } => {
                    let timeout = until.saturating_since(now).max(Duration::from_millis(1));
                    let _ = tokio::time::timeout(timeout, finished.changed()).await;
                }
                TokenStep::Failed { error, retry_at } => {
                    let policy = self.read().retry_policy().clone();
                    let Some(delay) = policy.delay(attempts.max(1), waited, &error, retry_at, now) else {
                        return Err(error);
                    };
                    retrying(attempts.max(1), policy.max_attempts, delay, &error);
                    tokio::time::sleep(delay).await;
                    waited += delay;
                }
            }
        }
    }

    /// Sends mint `id` (and its one clock-skew retry) and records the answer.
    async fn mint(&self, id: RequestId, mut request: Request<Vec<u8>>) -> Result<Token, Error> {
        let mut guard = MintGuard {
            client: self,
            id,
            armed: true,
        };
        let result = loop {
            let sent = self.inner.transport.send(request).await;
            let answer = {
                let mut app = self.write();
                match sent {
                    Ok(response) => app.handle_token_response(id, response, now()),
                    Err(Error::Transport { kind, message }) => Err(app.handle_token_failure(id, kind, message, now())),
                    Err(other) => {
                        Err(app.handle_token_failure(id, TransportErrorKind::Refused, other.to_string(), now()))
                    }
                }
            };
            match answer {
                Ok(TokenAnswer::Retry(again)) => request = again,
                Ok(TokenAnswer::Token(t)) => break Ok(t),
                Err(e) => break Err(e),
            }
        };
        guard.armed = false;
        self.inner.generation.send_modify(|g| *g += 1);
        result
    }

    /// Starts a task (on the current tokio runtime) that renews cached tokens ahead of expiry,
    /// so callers are served from the cache and never wait for a refresh. It stops when the
    /// returned handle is dropped.
    pub fn spawn_refresher(&self) -> RefresherHandle {
        self.inner.background.store(true, Ordering::Relaxed);
        let client = self.clone();
        let task = tokio::spawn(async move {
            let mut changes = client.inner.generation.subscribe();
            loop {
                let refreshes: Vec<_> = {
                    let mut app = client.write();
                    std::iter::from_fn(|| app.poll_refresh(now())).collect()
                };
                for refresh in refreshes {
                    if let Ok(request) = refresh.request {
                        let client = client.clone();
                        tokio::spawn(async move {
                            let _ = client.mint(refresh.id, request).await;
                        });
                    }
                }
                let next = client.read().poll_timeout();
                let sleep = next
                    .map_or(Duration::from_secs(60), |t| t.saturating_since(now()))
                    .min(Duration::from_secs(60));
                let _ = tokio::time::timeout(sleep.max(Duration::from_millis(10)), changes.changed()).await;
            }
        });
        RefresherHandle {
            task,
            client: self.clone(),
        }
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
    pub async fn installations(&self) -> Result<Vec<Installation>, Error> {
        let mut pager = InstallationPager::new(DEFAULT_PAGE_SIZE);
        loop {
            let next = pager.next(&mut self.write(), now())?;
            let Some(call) = next else { break };
            pager.add(self.run_call(call, true).await?);
        }
        Ok(pager.into_items())
    }

    /// One page of installations (`page` counts from 0).
    pub async fn installations_page(&self, limit: u32, page: u32) -> Result<InstallationsPage, Error> {
        let call = self.write().list_installations(limit, page, now())?;
        self.run_call(call, true).await
    }

    /// One installation (also how to check an `installationId` from a callback URL).
    pub async fn installation(&self, installation: &InstallationId) -> Result<Installation, Error> {
        let call = self.write().get_installation(installation, now())?;
        self.run_call(call, true).await
    }

    /// Creates a user and an organization with the app installed. Not retried: it is not
    /// idempotent.
    pub async fn create_user_organization(
        &self,
        body: &CreateUserOrganization,
    ) -> Result<CreatedUserOrganization, Error> {
        let call = self.write().create_user_organization(body, now())?;
        self.run_call(call, false).await
    }

    /// Sends a JWT call, with its one clock-skew retry and, when `idempotent`, retries of
    /// 429/5xx/connection failures within the retry policy.
    async fn run_call<T: DeserializeOwned>(&self, mut call: JwtCall<T>, idempotent: bool) -> Result<T, Error> {
        let policy = self.read().retry_policy().clone();
        let (mut attempts, mut waited) = (0u32, Duration::ZERO);
        loop {
            attempts += 1;
            let outcome = match self.inner.transport.send(call.request().clone()).await {
                Ok(response) => self.write().finish(call.clone(), response, now()),
                Err(e) => Err(e),
            };
            match outcome {
                Ok(CallStep::Done(value)) => return Ok(value),
                Ok(CallStep::Retry(again)) => call = again,
                Err(e) => match policy.call_delay(attempts, waited, &e) {
                    Some(delay) if idempotent => {
                        retrying(attempts, policy.max_attempts, delay, &e);
                        tokio::time::sleep(delay).await;
                        waited += delay;
                    }
                    _ => return Err(e),
                },
            }
        }
    }

    /// Revokes `token` (`DELETE /app/installations/token`) and drops it from the cache.
    pub async fn revoke(&self, token: &SecretString) -> Result<(), Error> {
        let request = self.read().revoke_request(token)?;
        let response = self.inner.transport.send(request).await?;
        self.write().finish_revoke(token, &response, now())
    }

    /// Revokes every cached token (e.g. on shutdown) and empties the cache. Returns how many
    /// were revoked, or the first failure after trying them all.
    pub async fn revoke_all(&self) -> Result<usize, Error> {
        let tokens = self.write().drain_tokens();
        let mut first_error = None;
        let mut revoked = 0;
        for (_, token) in tokens {
            match self.revoke(token.secret()).await {
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
    pub async fn send_as_installation(
        &self,
        installation: &InstallationId,
        request: Request<Vec<u8>>,
    ) -> Result<Response<Vec<u8>>, Error> {
        self.send_as(&TokenScope::Installation(installation.clone()), request)
            .await
    }

    /// Sends `request` with the app access token, like
    /// [`send_as_installation`](Self::send_as_installation).
    pub async fn send_as_app(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, Error> {
        self.send_as(&TokenScope::App, request).await
    }

    async fn send_as(&self, scope: &TokenScope, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, Error> {
        let registry = self.read().api().check_target(&request)?;
        let mut retried = false;
        loop {
            let token = self.token(scope, None).await?;
            let mut attempt = request.clone();
            icr_app_core::api::authorize(&mut attempt, token.secret())?;
            let response = self.inner.transport.send(attempt).await?;
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
    pub async fn get_json<T: DeserializeOwned>(
        &self,
        installation: &InstallationId,
        path_and_query: &str,
    ) -> Result<T, Error> {
        let request = self.request(Method::GET, path_and_query, None)?;
        let response = self.send_as_installation(installation, request).await?;
        icr_app_core::response::parse_json(&response, icr_app_core::Credential::AccessToken)
    }
}

/// Stops the background refresher when dropped (or with [`stop`](Self::stop)).
#[derive(Debug)]
pub struct RefresherHandle {
    task: tokio::task::JoinHandle<()>,
    client: Client,
}

impl RefresherHandle {
    /// Stops the refresher; callers go back to refreshing inline.
    pub fn stop(self) {}
}

impl Drop for RefresherHandle {
    fn drop(&mut self) {
        self.task.abort();
        self.client.inner.background.store(false, Ordering::Relaxed);
    }
}

/// Reports a retry (target `icr_app`, WARN): what failed, the attempt, and the wait.
fn retrying(attempt: u32, max_attempts: u32, wait: Duration, cause: &Error) {
    let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    tracing::warn!(target: "icr_app", attempt, max_attempts, wait_ms, cause = %cause, "retrying");
}
