//! [`GetToken`]: a token for one scope, from the cache or minted once however many ask.

use std::time::Duration;

use http::Response;

use super::fetch::{Fetch, FetchStep, Outcome};
use super::{Finished, Operation, Step, retrying};
use crate::app::{App, TokenScope};
use crate::cache::{Poll, RequestId, Token};
use crate::clock::Timestamp;
use crate::error::Error;
use crate::stats::Counter;
use crate::store::StoreReply;

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
    /// Counted as a miss.
    missed: bool,
    progress: Progress,
    finished: Finished,
}

#[derive(Debug)]
enum Progress {
    Idle,
    /// A fetch (a mint, perhaps through the shared store) is under way. Boxed: every
    /// `GetToken` is moved on every call, hits included, and most never fetch.
    Fetching(Box<Fetch>),
}

impl GetToken {
    /// A token for `scope`; `min_life` `None` means the cache's default minimum.
    pub fn new(scope: TokenScope, min_life: Option<Duration>) -> Self {
        Self {
            scope,
            min_life,
            attempts: 0,
            waited: Duration::ZERO,
            missed: false,
            progress: Progress::Idle,
            finished: Finished::default(),
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

impl GetToken {
    /// Polls the fetch under way, kept in `self` while it runs (a signer that panics leaves it
    /// for `abandon`). `None`: it ended without a token to hand out (failed, or deferred to
    /// another process's refresh); the cache decides what next.
    fn drive(&mut self, app: &mut App, now: Timestamp) -> Option<Step<Token>> {
        let Progress::Fetching(fetch) = &mut self.progress else {
            return None;
        };
        let outcome = match fetch.poll(app, now) {
            FetchStep::Send { id, request } => return Some(Step::Send { id, request }),
            FetchStep::Store { id, command } => return Some(Step::Store { id, command }),
            FetchStep::Sleep { until } => return Some(Step::Sleep { until }),
            FetchStep::Done(outcome) => outcome,
        };
        self.progress = Progress::Idle;
        match outcome {
            Outcome::Token(token) => {
                let min_life = self.min_life(app);
                if token.remaining(now) < min_life {
                    return Some(Step::Done(Err(self.min_life_error(token.lifetime(), min_life))));
                }
                // Handed out only if it is still the cached one and still has the life asked
                // for: a revocation or a clock jump reported meanwhile (by another operation)
                // would have made it so.
                app.usable_token(&self.scope, now, min_life)
                    .filter(|cached| cached.same_as(&token))
                    .map(|cached| Step::Done(Ok(cached)))
            }
            Outcome::Failed | Outcome::Deferred => None,
        }
    }
}

impl GetToken {
    /// What to do next, while not finished (see [`Operation::poll`]).
    fn next_step(&mut self, app: &mut App, now: Timestamp) -> Step<Token> {
        // The hit: nothing in progress and a cached token with the life asked for. (A caller
        // that waited for a mint was counted as a miss already: the loop below serves it.)
        if let Progress::Idle = self.progress
            && !self.missed
            && let Some(token) = app.hit(&self.scope, now, self.min_life)
        {
            return Step::Done(Ok(token));
        }
        if let Some(step) = self.drive(app, now) {
            return step;
        }
        loop {
            if let Some(token) = app.peek_token(&self.scope, now, self.min_life) {
                return Step::Done(Ok(token));
            }
            if !self.missed {
                self.missed = true;
                app.count(Counter::Miss);
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
                Poll::Ready(token) => return Step::Done(Ok(token)),
                Poll::Wait { until } => {
                    app.count(Counter::Wait);
                    return Step::Wait { until };
                }
                Poll::Failed { error, retry_at } => {
                    let policy = app.retry_policy();
                    return match policy.delay(self.attempts.max(1), self.waited, &error, retry_at, now) {
                        Some(delay) => {
                            retrying(&self.scope, self.attempts.max(1), policy.max_attempts, delay, &error);
                            self.waited += delay;
                            Step::Sleep { until: now.plus(delay) }
                        }
                        None => {
                            // Out of budget for a failure that might have passed; a final answer
                            // (a 404, a 401) is the caller's error and nothing more.
                            if error.is_retryable() {
                                let attempts = self.attempts;
                                tracing::warn!(target: "icr_app", scope = %self.scope, attempts, cause = %error, "giving up on a token");
                            }
                            Step::Done(Err(error))
                        }
                    };
                }
                Poll::Fetch { id, .. } => {
                    self.attempts += 1;
                    self.progress =
                        Progress::Fetching(Box::new(Fetch::new(id, self.scope.clone(), min_life, self.attempts)));
                    if let Some(step) = self.drive(app, now) {
                        return step;
                    }
                }
            }
        }
    }
}

impl Operation for GetToken {
    type Output = Token;

    fn poll(&mut self, app: &mut App, now: Timestamp) -> Step<Token> {
        let mut finished = self.finished;
        let step = finished.poll(|| self.next_step(app, now));
        self.finished = finished;
        step
    }

    fn handle_response(&mut self, app: &mut App, id: RequestId, response: Response<Vec<u8>>, now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        if let Progress::Fetching(fetch) = &mut self.progress {
            fetch.handle_response(app, id, response, now);
        }
    }

    fn handle_failure(&mut self, app: &mut App, id: RequestId, error: Error, now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        if let Progress::Fetching(fetch) = &mut self.progress {
            fetch.handle_failure(app, id, error, now);
        }
    }

    fn handle_store(&mut self, app: &mut App, id: RequestId, reply: Result<StoreReply, Error>, now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        if let Progress::Fetching(fetch) = &mut self.progress {
            fetch.handle_store(app, id, reply, now);
        }
    }

    fn abandon(&mut self, app: &mut App, now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        if let Progress::Fetching(mut fetch) = std::mem::replace(&mut self.progress, Progress::Idle) {
            fetch.abandon(app, now);
        }
    }
}
