//! [`GetToken`]: a token for one scope, from the cache or minted once however many ask.

use std::time::Duration;

use http::Response;

use super::fetch::{Fetch, Outcome};
use super::lookup::Lookup;
use super::{Finished, Operation, RequestId, Step, retrying};
use crate::app::{App, OrganizationPoll, TokenScope};
use crate::cache::{Poll, Token};
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
///
/// For an organization ([`TokenScope::Organization`]), the token is its installation's: the
/// installation remembered for it, else looked up (read from the shared store, or asked of the
/// registry; one lookup however many operations ask, the others [`Step::Wait`]). When a mint for
/// the remembered installation answers 404 (the organization reinstalled the app, so its
/// installation has a new id, or uninstalled it), the installation is forgotten and the
/// organization looked up again, once: a second 404 is the caller's error, as is a lookup's 404
/// (`Error::NotFound` naming the organization: the app is not installed there).
#[derive(Debug)]
pub struct GetToken {
    scope: TokenScope,
    /// What an operation for an organization keeps; boxed, made when first needed: most
    /// operations name an installation, and every `GetToken` is moved on every call.
    organization: Option<Box<ByOrganization>>,
    min_life: Option<Duration>,
    attempts: u32,
    waited: Duration,
    /// Counted as a miss.
    missed: bool,
    progress: Progress,
    finished: Finished,
}

/// What a [`GetToken`] for an organization keeps.
#[derive(Debug, Default)]
struct ByOrganization {
    /// The installation's scope last resolved: the token cache's key.
    key: Option<TokenScope>,
    /// The lookup of the organization's installation this operation last waited for.
    waited_lookup: Option<RequestId>,
    /// Whether the organization's installation was found gone and looked up again already.
    relooked: bool,
    /// The lookup of its installation this operation is making (here rather than in
    /// [`Progress`], which then stays one pointer).
    lookup: Option<Lookup>,
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
            organization: None,
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

    /// The scope the token handed out is cached under: the scope asked for, or for an
    /// organization its installation's.
    pub(crate) fn key(&self) -> &TokenScope {
        self.organization
            .as_ref()
            .and_then(|o| o.key.as_ref())
            .unwrap_or(&self.scope)
    }

    /// What this operation keeps for the organization it names.
    fn by_organization(&mut self) -> &mut ByOrganization {
        self.organization.get_or_insert_with(Box::default)
    }

    /// Counts a miss, once.
    fn miss(&mut self, app: &mut App) {
        if !self.missed {
            self.missed = true;
            app.count(Counter::Miss);
        }
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
        if let Some(organization) = &mut self.organization
            && let Some(lookup) = &mut organization.lookup
        {
            return match lookup.poll(app, now).pass() {
                Ok(effect) => Some(effect),
                Err(found) => {
                    organization.lookup = None;
                    // Found: the loop carries on with it (remembered by the app).
                    found.err().map(|error| Step::Done(Err(error)))
                }
            };
        }
        let Progress::Fetching(fetch) = &mut self.progress else {
            return None;
        };
        let outcome = match fetch.poll(app, now).pass() {
            Ok(effect) => return Some(effect),
            // A fetch never ends with an error of its own: its failures are in the cache.
            Err(outcome) => outcome.unwrap_or(Outcome::Failed),
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
                app.token_with_life(self.key(), now, min_life)
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
            if let TokenScope::Organization(_) = self.scope {
                self.by_organization().key = app.cache_key(&self.scope).cloned();
            }
            return Step::Done(Ok(token));
        }
        if let Some(step) = self.drive(app, now) {
            return step;
        }
        loop {
            let key = match self.resolve(app, now) {
                Ok(key) => key,
                Err(step) => return step,
            };
            if let Some(token) = app.ready_token(&key, now, self.min_life) {
                return Step::Done(Ok(token));
            }
            self.miss(app);
            let min_life = self.min_life(app);
            if let Some(token) = app.token_even_expired(&key)
                && token.lifetime() > Duration::ZERO
                && token.lifetime() < min_life
            {
                return Step::Done(Err(self.min_life_error(token.lifetime(), min_life)));
            }
            if app.background_refresh()
                && let Some(token) = app.token_with_life(&key, now, min_life)
            {
                // Due for a refresh, still usable: the refresher renews it.
                return Step::Done(Ok(token));
            }
            match app.poll_cache(&key, now, Some(min_life)) {
                Poll::Ready(token) => return Step::Done(Ok(token)),
                Poll::Wait { until } => {
                    app.count(Counter::Wait);
                    return Step::Wait {
                        until,
                        change: app.changes(),
                    };
                }
                Poll::Failed { error, retry_at } => {
                    if self.installation_gone(app, &key, &error) {
                        continue;
                    }
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
                    self.progress = Progress::Fetching(Box::new(Fetch::new(id, key, min_life, self.attempts)));
                    if let Some(step) = self.drive(app, now) {
                        return step;
                    }
                }
            }
        }
    }

    /// The token cache's key for the scope asked for: the scope itself, or for an organization
    /// its installation's, once known. `Err`: the step to take first (wait for another
    /// operation's lookup, or this operation's own), or how the lookup failed.
    #[allow(clippy::result_large_err)] // a step, returned at once, as `poll` returns it
    fn resolve(&mut self, app: &mut App, now: Timestamp) -> Result<TokenScope, Step<Token>> {
        let TokenScope::Organization(org) = &self.scope else {
            return Ok(self.scope.clone());
        };
        let org = org.clone();
        loop {
            let waited = self.by_organization().waited_lookup;
            match app.poll_organization(&org, now, waited) {
                OrganizationPoll::Found(key) => {
                    self.by_organization().key = Some(key.clone());
                    return Ok(key);
                }
                OrganizationPoll::Wait { id, until } => {
                    self.by_organization().waited_lookup = Some(id);
                    self.miss(app);
                    app.count(Counter::Wait);
                    return Err(Step::Wait {
                        until,
                        change: app.changes(),
                    });
                }
                OrganizationPoll::Failed(error) => return Err(Step::Done(Err(error))),
                OrganizationPoll::Lookup(id) => {
                    self.miss(app);
                    self.by_organization().waited_lookup = Some(id);
                    self.by_organization().lookup = Some(Lookup::new(id, org.clone()));
                    if let Some(step) = self.drive(app, now) {
                        return Err(step);
                    }
                }
            }
        }
    }

    /// Whether `error`, the failure of a mint for `key`, means that the organization asked for
    /// no longer has that installation (a 404, the first time): it is then forgotten, and the
    /// organization is to be looked up again.
    fn installation_gone(&mut self, app: &mut App, key: &TokenScope, error: &Error) -> bool {
        let TokenScope::Organization(org) = &self.scope else {
            return false;
        };
        let org = org.clone();
        let state = self.by_organization();
        if state.relooked || !matches!(error, Error::NotFound { .. }) {
            return false;
        }
        state.relooked = true;
        app.organization_installation_gone(&org, key);
        true
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
        app.changed();
        if let Some(lookup) = self.organization.as_mut().and_then(|o| o.lookup.as_mut()) {
            lookup.handle_response(app, id, response, now);
        } else if let Progress::Fetching(fetch) = &mut self.progress {
            fetch.handle_response(app, id, response, now);
        }
    }

    fn handle_failure(&mut self, app: &mut App, id: RequestId, error: Error, now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        app.changed();
        if let Some(lookup) = self.organization.as_mut().and_then(|o| o.lookup.as_mut()) {
            lookup.handle_failure(app, id, error, now);
        } else if let Progress::Fetching(fetch) = &mut self.progress {
            fetch.handle_failure(app, id, error, now);
        }
    }

    fn handle_store(&mut self, app: &mut App, id: RequestId, reply: Result<StoreReply, Error>, now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        app.changed();
        if let Some(lookup) = self.organization.as_mut().and_then(|o| o.lookup.as_mut()) {
            lookup.handle_store(app, id, reply, now);
        } else if let Progress::Fetching(fetch) = &mut self.progress {
            fetch.handle_store(app, id, reply, now);
        }
    }

    fn abandon(&mut self, app: &mut App, now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        app.changed();
        if let Some(mut lookup) = self.organization.as_mut().and_then(|o| o.lookup.take()) {
            lookup.abandon(app, now);
        }
        if let Progress::Fetching(mut fetch) = std::mem::replace(&mut self.progress, Progress::Idle) {
            fetch.abandon(app, now);
        }
    }
}
