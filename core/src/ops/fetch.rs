//! [`Fetch`]: one fetch the token cache started for a scope, shared by [`GetToken`](super::GetToken)
//! and [`Refresher`](super::Refresher): a mint with its clock-skew retry, through the shared
//! token store when one is attached.
//!
//! With a store: read the scope's entry; use it if it holds a token this process does not have
//! and that has the life asked for; otherwise take the scope's lease, read the entry once more
//! (another process may have put its token and released the lease in between), and mint, then
//! put the token and release the lease in one command. A lease held by another process means: keep
//! serving the cached token if it still has the life asked for (another process is refreshing
//! it), else read the entry again after a short back-off, until the lease holder's token
//! appears or its lease lapses. Any store failure means minting alone, without an error.

use std::time::Duration;

use http::Response;

use super::{RequestId, Step};
use crate::app::{App, Shared, TokenAnswer, TokenScope, Unsigned};
use crate::cache::Token;
use crate::clock::Timestamp;
use crate::error::Error;
use crate::stats::Counter;
use crate::store::{StoreCommand, StoreReply};

/// How long a refresh is put off when another process holds the lease.
const DEFER: Duration = Duration::from_secs(1);
/// The first wait before reading the entry again while another process holds the lease; it doubles.
const WAIT_FIRST: Duration = Duration::from_millis(10);
/// The longest wait between two reads.
const WAIT_MAX: Duration = Duration::from_millis(250);

/// The waits of one operation for another process's lease (a mint's or an organization's
/// lookup): 10 ms doubling up to 250 ms, until twice the lease's time has passed.
#[derive(Debug, Default)]
pub(crate) struct LeaseWait {
    waited: Duration,
    waits: u32,
}

impl LeaseWait {
    /// How long to wait before reading the entry again, or `None` once twice `lease_ttl` has
    /// been waited (the lease's holder is presumed gone: act alone).
    pub(crate) fn next(&mut self, lease_ttl: Duration) -> Option<Duration> {
        if self.waited >= lease_ttl.saturating_mul(2) {
            return None;
        }
        let wait = WAIT_FIRST.saturating_mul(1 << self.waits.min(16)).min(WAIT_MAX);
        self.waits += 1;
        self.waited += wait;
        Some(wait)
    }
}

/// What a fetch asks for next: a step of the driver's, or how it ended. It never ends with an
/// error of its own (a failure is recorded in the cache, with its back-off): see [`done`].
pub(crate) type FetchStep = Step<Outcome>;

/// The fetch ended with `outcome`.
fn done(outcome: Outcome) -> FetchStep {
    Step::Done(Ok(outcome))
}

/// How a fetch ended.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// A new token, now cached (minted, or read from the shared store).
    Token(Token),
    /// No token: the failure is recorded in the cache (with its back-off), or the fetch was
    /// given up.
    Failed,
    /// Another process is refreshing: the cached token serves on, its refresh put off.
    Deferred,
}

#[derive(Debug)]
enum State {
    Start,
    Loading(RequestId),
    /// Take the lease next.
    Lease,
    Leasing(RequestId),
    /// The lease is ours: read the entry once more before minting (another process may have
    /// put its token and released the lease between our read and our lease).
    Recheck,
    Rechecking(RequestId),
    /// A token was read after all: release the lease, then end with it.
    Release(Outcome),
    /// Another process holds the lease: read the entry again then.
    Waiting(Timestamp),
    /// Mint next; `leased`: this process holds the lease.
    Mint {
        leased: bool,
    },
    /// The mint is in flight as the fetch's id.
    Minting {
        leased: bool,
    },
    /// Sign the mint (again, for clock skew; or once the driver has signed its JWT, for an app
    /// without a key) and send it, as the same id.
    Resign {
        leased: bool,
    },
    /// The mint is answered: tell the store (put the token, or release the lease), then end.
    Minted {
        leased: bool,
        outcome: Outcome,
    },
    /// The store is being told.
    Storing(RequestId, Outcome),
    Finished(Outcome),
}

/// One fetch for `scope`, as the cache's fetch `id`. See the module docs.
#[derive(Debug)]
pub(crate) struct Fetch {
    id: RequestId,
    scope: TokenScope,
    /// The life a token read from the store must have to be used.
    min_life: Duration,
    state: State,
    /// Its waits for another process's mint.
    lease_wait: LeaseWait,
    /// When it was first polled (for the span's `duration_ms`).
    started: Option<Timestamp>,
    /// `mint` (target `icr_app`, DEBUG): scope, attempt, whether a refresh, status, where the
    /// token came from, duration.
    span: tracing::Span,
}

impl Fetch {
    /// Fetch `id` for `scope`, the caller's `attempt`-th; a token read from the store must have
    /// `min_life` left.
    pub(crate) fn new(id: RequestId, scope: TokenScope, min_life: Duration, attempt: u32) -> Self {
        let span = tracing::debug_span!(
            target: "icr_app",
            "mint",
            scope = %scope,
            attempt,
            refresh = tracing::field::Empty,
            status = tracing::field::Empty,
            source = tracing::field::Empty,
            duration_ms = tracing::field::Empty,
        );
        Self {
            id,
            scope,
            min_life,
            state: State::Start,
            lease_wait: LeaseWait::default(),
            started: None,
            span,
        }
    }

    pub(crate) fn poll(&mut self, app: &mut App, now: Timestamp) -> FetchStep {
        let span = self.span.clone();
        let _entered = span.enter();
        let started = *self.started.get_or_insert(now);
        let step = self.step(app, now);
        if let Step::Done(Ok(outcome)) = &step {
            let duration_ms = u64::try_from(now.saturating_since(started).as_millis()).unwrap_or(u64::MAX);
            span.record("duration_ms", duration_ms);
            match outcome {
                Outcome::Token(token) => {
                    let expires_in_s = token.remaining(now).as_secs();
                    tracing::debug!(target: "icr_app", expires_in_s, "token fetched");
                }
                Outcome::Failed => tracing::debug!(target: "icr_app", "fetch failed"),
                Outcome::Deferred => {
                    tracing::debug!(target: "icr_app", "another process is refreshing: the cached token serves on")
                }
            }
        }
        step
    }

    fn step(&mut self, app: &mut App, now: Timestamp) -> FetchStep {
        match std::mem::replace(&mut self.state, State::Finished(Outcome::Failed)) {
            State::Start => self.load(app, now),
            // Polled again without a reply: the driver gave the command up. Mint alone.
            State::Loading(_) | State::Leasing(_) => self.mint(app, now, false),
            State::Waiting(until) if now < until => {
                self.state = State::Waiting(until);
                Step::Sleep { until }
            }
            State::Waiting(_) => self.load(app, now),
            State::Lease => self.lease(app, now),
            State::Recheck => self
                .get(app, now, State::Rechecking)
                .unwrap_or_else(|| self.mint(app, now, true)),
            // Polled again without a reply: mint, as the lease holder.
            State::Rechecking(_) => self.mint(app, now, true),
            State::Release(outcome) => match app.store(now) {
                Some(shared) => {
                    let command = release_lease(shared, &self.scope);
                    self.send_store(app, command, |id| State::Storing(id, outcome))
                }
                None => done(outcome),
            },
            State::Mint { leased } => self.mint(app, now, leased),
            // Polled again without an answer: the driver gave that send up.
            State::Minting { .. } => {
                app.cancel_mint(self.id, now);
                done(Outcome::Failed)
            }
            State::Resign { leased } => self.send_mint(app, now, leased),
            State::Minted { leased, outcome } => self.tell_store(app, now, leased, outcome),
            State::Storing(_, outcome) | State::Finished(outcome) => done(outcome),
        }
    }

    fn load(&mut self, app: &mut App, now: Timestamp) -> FetchStep {
        self.get(app, now, State::Loading)
            .unwrap_or_else(|| self.mint(app, now, false))
    }

    /// Reads the scope's entry, in the state `waiting` makes of the command's id; `None` when
    /// no store is answering.
    fn get(&mut self, app: &mut App, now: Timestamp, waiting: fn(RequestId) -> State) -> Option<FetchStep> {
        let command = StoreCommand::Get {
            key: app.store(now)?.sealer.entry(&self.scope),
        };
        Some(self.send_store(app, command, waiting))
    }

    /// Sends `command`, in the state `waiting` makes of its id.
    fn send_store(
        &mut self,
        app: &mut App,
        command: StoreCommand,
        waiting: impl FnOnce(RequestId) -> State,
    ) -> FetchStep {
        let id = app.next_request_id();
        self.state = waiting(id);
        Step::Store { id, command }
    }

    fn lease(&mut self, app: &mut App, now: Timestamp) -> FetchStep {
        let Some(shared) = app.store(now) else {
            return self.mint(app, now, false);
        };
        let command = StoreCommand::Lease {
            key: shared.sealer.lease(&self.scope),
            owner: shared.sealer.owner().to_vec(),
            ttl: shared.settings.lease_ttl,
        };
        self.send_store(app, command, State::Leasing)
    }

    fn mint(&mut self, app: &mut App, now: Timestamp, leased: bool) -> FetchStep {
        let refresh = app.token_even_expired(&self.scope).is_some();
        if refresh {
            app.count(Counter::Refresh);
        }
        self.span.record("refresh", refresh);
        self.span.record("source", "registry");
        self.send_mint(app, now, leased)
    }

    /// Signs the mint (again, after a 401 for clock skew) and sends it as the fetch's id.
    fn send_mint(&mut self, app: &mut App, now: Timestamp, leased: bool) -> FetchStep {
        // Recorded before signing: a signer that panics leaves a mint that `abandon` releases.
        self.state = State::Minting { leased };
        match app.mint_request(self.id, &self.scope, now) {
            Ok(request) => Step::Send { id: self.id, request },
            // Without a key, the JWT first: ask again at the next poll.
            Err(Unsigned::Sign { id, message }) => {
                self.state = State::Resign { leased };
                Step::Sign { id, message }
            }
            Err(Unsigned::Wait { until, change }) => {
                self.state = State::Resign { leased };
                Step::Wait { until, change }
            }
            Err(Unsigned::Failed(error)) => {
                app.handle_token_failure(self.id, error, now);
                self.tell_store(app, now, leased, Outcome::Failed)
            }
        }
    }

    /// After the mint: a new token is put in the store (releasing the lease); a failure
    /// releases the lease, so another process may try at once.
    fn tell_store(&mut self, app: &mut App, now: Timestamp, leased: bool, outcome: Outcome) -> FetchStep {
        let Some(shared) = app.store(now) else {
            return done(outcome);
        };
        let key = shared.sealer.entry(&self.scope);
        let sealed = match &outcome {
            Outcome::Token(token) => shared
                .sealer
                .seal(&key, token.access_token())
                .map(|v| (v, token.remaining(now))),
            _ => None,
        };
        let command = match sealed {
            Some((value, ttl)) => StoreCommand::Put {
                key,
                value,
                ttl,
                lease: shared.sealer.lease(&self.scope),
                owner: shared.sealer.owner().to_vec(),
            },
            None if leased || matches!(outcome, Outcome::Token(_)) => release_lease(shared, &self.scope),
            None => return done(outcome),
        };
        self.send_store(app, command, |id| State::Storing(id, outcome))
    }

    /// Whether `id` is this fetch's mint or store command.
    pub(crate) fn owns(&self, id: RequestId) -> bool {
        match &self.state {
            State::Minting { .. } => id == self.id,
            State::Loading(own) | State::Leasing(own) | State::Rechecking(own) | State::Storing(own, _) => id == *own,
            _ => false,
        }
    }

    pub(crate) fn handle_response(
        &mut self,
        app: &mut App,
        id: RequestId,
        response: Response<Vec<u8>>,
        now: Timestamp,
    ) {
        let State::Minting { leased } = self.state else { return };
        if id != self.id {
            return;
        }
        self.span.record("status", response.status().as_u16());
        self.state = match app.handle_token_response(id, response, now) {
            Ok(TokenAnswer::Resign) => State::Resign { leased },
            Ok(TokenAnswer::Token(token)) => State::Minted {
                leased,
                outcome: Outcome::Token(token),
            },
            // Recorded in the cache with its back-off.
            Err(_) => State::Minted {
                leased,
                outcome: Outcome::Failed,
            },
        };
    }

    pub(crate) fn handle_failure(&mut self, app: &mut App, id: RequestId, error: Error, now: Timestamp) {
        if let State::Minting { leased } = self.state
            && id == self.id
        {
            let _entered = self.span.enter();
            tracing::debug!(target: "icr_app", cause = %error, "the mint got no answer");
            app.handle_token_failure(id, error, now);
            self.state = State::Minted {
                leased,
                outcome: Outcome::Failed,
            };
        }
    }

    pub(crate) fn handle_store(
        &mut self,
        app: &mut App,
        id: RequestId,
        reply: Result<StoreReply, Error>,
        now: Timestamp,
    ) {
        if !self.owns(id) || matches!(self.state, State::Minting { .. }) {
            return;
        }
        let reply = match reply {
            Ok(reply) => {
                app.store_answered();
                reply
            }
            Err(error) => {
                let _entered = self.span.enter();
                app.store_failed(&error, now);
                self.state = match std::mem::replace(&mut self.state, State::Start) {
                    State::Storing(_, outcome) => State::Finished(outcome),
                    _ => State::Mint { leased: false },
                };
                return;
            }
        };
        self.state = match (std::mem::replace(&mut self.state, State::Start), reply) {
            (State::Loading(_), StoreReply::Value(value)) => match value.and_then(|v| self.usable(app, &v, now)) {
                Some(access) => match app.adopt_token(self.id, access, now) {
                    Ok(token) => {
                        app.count(Counter::SharedHit);
                        self.span.record("source", "shared store");
                        State::Finished(Outcome::Token(token))
                    }
                    Err(_) => State::Finished(Outcome::Failed),
                },
                None => State::Lease,
            },
            (State::Leasing(_), StoreReply::Leased(true)) => State::Recheck,
            (State::Rechecking(_), StoreReply::Value(value)) => match value.and_then(|v| self.usable(app, &v, now)) {
                Some(access) => match app.adopt_token(self.id, access, now) {
                    Ok(token) => {
                        app.count(Counter::SharedHit);
                        self.span.record("source", "shared store");
                        State::Release(Outcome::Token(token))
                    }
                    Err(_) => State::Release(Outcome::Failed),
                },
                None => State::Mint { leased: true },
            },
            (State::Leasing(_), StoreReply::Leased(false)) => self.someone_else_mints(app, now),
            (State::Storing(_, outcome), _) => State::Finished(outcome),
            (_, reply) => {
                let error = Error::config(
                    "shared token store",
                    format!("the store driver answered {reply:?} out of turn"),
                );
                app.store_failed(&error, now);
                State::Mint { leased: false }
            }
        };
    }

    /// A token read from the store, if it can be used: sealed for this entry with this app's key,
    /// with the life asked for, not the token this process already has (which is being
    /// refreshed), and not one the registry refused to this process.
    fn usable(&self, app: &App, value: &[u8], now: Timestamp) -> Option<crate::models::AccessToken> {
        let shared = app.store(now)?;
        if shared
            .refused
            .get(&self.scope)
            .is_some_and(|refused| value.starts_with(refused))
        {
            return None;
        }
        let access = shared.sealer.open(&shared.sealer.entry(&self.scope), value)?;
        let candidate = Token::new(access.clone(), now, app.clock_offset().millis, app.cache_config());
        let held = app
            .token_even_expired(&self.scope)
            .is_some_and(|t| t.same_as(&candidate));
        (!held && candidate.remaining(now) >= self.min_life.max(Duration::from_millis(1))).then_some(access)
    }

    /// Another process holds the lease: serve the cached token if it has the life asked for
    /// (its refresh put off), else wait and read the entry again; after twice the lease's
    /// time, mint alone.
    fn someone_else_mints(&mut self, app: &mut App, now: Timestamp) -> State {
        if app.token_with_life(&self.scope, now, self.min_life).is_some() {
            app.defer_refresh(self.id, now.plus(DEFER));
            return State::Finished(Outcome::Deferred);
        }
        let lease_ttl = app.store(now).map_or(Duration::ZERO, |s| s.settings.lease_ttl);
        match self.lease_wait.next(lease_ttl) {
            Some(wait) => State::Waiting(now.plus(wait)),
            None => State::Mint { leased: false },
        }
    }

    /// The driver leaves: release the cache's fetch if it is still open (a lease this process
    /// holds lapses by itself).
    pub(crate) fn abandon(&mut self, app: &mut App, now: Timestamp) {
        match std::mem::replace(&mut self.state, State::Finished(Outcome::Failed)) {
            State::Storing(..) | State::Finished(_) | State::Minted { .. } | State::Release(_) => {}
            _ => app.cancel_mint(self.id, now),
        }
    }
}

/// Releases this process's lease on `scope` (compare-and-delete by owner).
fn release_lease(shared: &Shared, scope: &TokenScope) -> StoreCommand {
    StoreCommand::Delete {
        key: shared.sealer.lease(scope),
        prefix: shared.sealer.owner().to_vec(),
    }
}
