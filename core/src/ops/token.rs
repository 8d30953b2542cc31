//! [`GetToken`]: a token for one scope, from the cache or minted once however many ask.

use std::time::Duration;

use http::{Request, Response};

use super::{Operation, Step, retrying};
use crate::app::{App, TokenAnswer, TokenScope};
use crate::cache::{Poll, RequestId, Token};
use crate::clock::Timestamp;
use crate::error::Error;

/// A token for `scope` with at least `min_life` left (default
/// [`CacheConfig::min_remaining`](crate::CacheConfig::min_remaining)): served from the cache,
/// or minted (one mint per scope however many operations ask; the others [`Step::Wait`]),
/// retrying 429, 5xx and connection failures as the app's
/// [`RetryPolicy`](crate::RetryPolicy) allows, and once with the server's clock after a 401 for
/// clock skew.
///
/// A `min_life` longer than the registry's tokens live is an error that says so, without
/// minting again.
#[derive(Debug)]
pub struct GetToken {
    scope: TokenScope,
    min_life: Option<Duration>,
    attempts: u32,
    waited: Duration,
    progress: Progress,
}

#[derive(Debug)]
enum Progress {
    Idle,
    /// A mint is in flight as this id.
    Minting(RequestId),
    /// The mint must be sent again (re-signed for clock skew), as the same id. Boxed: rare, and
    /// inline it would make every `GetToken` (moved on every call, hits included) 200 bytes larger.
    Resend(RequestId, Box<Request<Vec<u8>>>),
    Finished(Result<Token, Error>),
}

impl GetToken {
    /// A token for `scope`; `min_life` `None` means the cache's default minimum.
    pub fn new(scope: TokenScope, min_life: Option<Duration>) -> Self {
        Self {
            scope,
            min_life,
            attempts: 0,
            waited: Duration::ZERO,
            progress: Progress::Idle,
        }
    }

    /// The scope asked for.
    pub fn scope(&self) -> &TokenScope {
        &self.scope
    }

    /// The life asked for: the caller's, or the cache's default.
    fn min_life(&self, app: &App) -> Duration {
        self.min_life.unwrap_or(app.cache_config().min_remaining)
    }

    fn min_life_error(&self, lifetime: Duration, min_life: Duration) -> Error {
        Error::config(
            "minimum token life",
            format!(
                "{} s were asked for {}, but the registry issues tokens that live {} s: ask for less (at most the token lifetime minus the time the token must still be usable)",
                min_life.as_secs(),
                self.scope,
                lifetime.as_secs()
            ),
        )
    }
}

impl Operation for GetToken {
    type Output = Token;

    fn poll(&mut self, app: &mut App, now: Timestamp) -> Step<Token> {
        // The hit: nothing in progress and a cached token with the life asked for.
        if let Progress::Idle = self.progress
            && let Some(token) = app.peek_token(&self.scope, now, self.min_life)
        {
            return Step::Done(Ok(token));
        }
        match std::mem::replace(&mut self.progress, Progress::Idle) {
            // The token a mint brought is handed out only if it is still the cached one and
            // still has the life asked for: a revocation or a clock jump reported meanwhile
            // (by another operation) would have made it so.
            Progress::Finished(Ok(token)) => {
                let min_life = self.min_life(app);
                if let Some(cached) = app.usable_token(&self.scope, now, min_life)
                    && cached.same_as(&token)
                {
                    return Step::Done(Ok(cached));
                }
            }
            Progress::Finished(Err(error)) => return Step::Done(Err(error)),
            Progress::Resend(id, request) => {
                self.progress = Progress::Minting(id);
                return Step::Send { id, request: *request };
            }
            // Polled again without an answer: the driver gave that send up.
            Progress::Minting(id) => app.cancel_mint(id, now),
            Progress::Idle => {}
        }
        if let Some(token) = app.peek_token(&self.scope, now, self.min_life) {
            return Step::Done(Ok(token));
        }
        let min_life = self.min_life(app);
        if let Some(token) = app.cached_token(&self.scope)
            && token.lifetime() > Duration::ZERO
            && token.lifetime() < min_life
        {
            return Step::Done(Err(self.min_life_error(token.lifetime(), min_life)));
        }
        if app.background_refresh()
            && let Some(token) = app.usable_token(&self.scope, now, min_life)
        {
            // Due for a refresh, still usable: the refresher renews it.
            return Step::Done(Ok(token));
        }
        match app.poll_cache(&self.scope, now, Some(min_life)) {
            Poll::Ready(token) => Step::Done(Ok(token)),
            Poll::Wait { until } => Step::Wait { until },
            Poll::Failed { error, retry_at } => {
                let policy = app.retry_policy();
                match policy.delay(self.attempts.max(1), self.waited, &error, retry_at, now) {
                    Some(delay) => {
                        retrying(&self.scope, self.attempts.max(1), policy.max_attempts, delay, &error);
                        self.waited += delay;
                        Step::Sleep { until: now.plus(delay) }
                    }
                    None => Step::Done(Err(error)),
                }
            }
            Poll::Fetch { id, .. } => {
                self.attempts += 1;
                // Recorded before signing: a signer that panics leaves a mint this operation
                // releases when it is abandoned.
                self.progress = Progress::Minting(id);
                match app.mint_request(id, &self.scope, now) {
                    Ok(request) => Step::Send { id, request },
                    Err(error) => {
                        self.progress = Progress::Idle;
                        Step::Done(Err(app.handle_token_failure(id, error, now)))
                    }
                }
            }
        }
    }

    fn handle_response(&mut self, app: &mut App, id: RequestId, response: Response<Vec<u8>>, now: Timestamp) {
        if !matches!(self.progress, Progress::Minting(m) if m == id) {
            return;
        }
        self.progress = match app.handle_token_response(id, response, now) {
            Ok(TokenAnswer::Retry(request)) => Progress::Resend(id, Box::new(request)),
            Ok(TokenAnswer::Token(token)) => {
                let min_life = self.min_life(app);
                if token.remaining(now) < min_life {
                    Progress::Finished(Err(self.min_life_error(token.lifetime(), min_life)))
                } else {
                    Progress::Finished(Ok(token))
                }
            }
            // Recorded in the cache (with its back-off): the next poll decides.
            Err(_) => Progress::Idle,
        };
    }

    fn handle_failure(&mut self, app: &mut App, id: RequestId, error: Error, now: Timestamp) {
        if matches!(self.progress, Progress::Minting(m) if m == id) {
            app.handle_token_failure(id, error, now);
            self.progress = Progress::Idle;
        }
    }

    fn abandon(&mut self, app: &mut App, now: Timestamp) {
        if let Progress::Minting(id) | Progress::Resend(id, _) = std::mem::replace(&mut self.progress, Progress::Idle) {
            app.cancel_mint(id, now);
        }
    }
}
