//! [`Revoke`]: one token; [`RevokeAll`]: every cached token, on shutdown.

use http::Response;

use super::{Finished, Operation, RequestId, Step};
use crate::app::{App, TokenScope};
use crate::clock::Timestamp;
use crate::error::Error;
use crate::secret::SecretString;
use crate::store::StoreReply;

/// Revokes one token (`DELETE /app/installations/token`, authorised with that token) and drops
/// it from the cache. A 401 means it was already invalid: it is dropped too, and the 401 is
/// returned.
#[derive(Debug)]
pub struct Revoke {
    token: SecretString,
    /// The scopes known to hold it; with a shared store, their entries drop it too.
    scopes: Vec<TokenScope>,
    sent: Option<RequestId>,
    forgetting: Option<RequestId>,
    result: Option<Result<(), Error>>,
    finished: Finished,
    /// `revoke` (target `icr_app`, DEBUG): status.
    span: tracing::Span,
}

impl Revoke {
    /// Revokes `token`.
    pub fn new(token: SecretString) -> Self {
        Self::held_by(token, Vec::new())
    }

    /// Revokes `token`, which `scopes` held: with a shared store, their entries drop it too,
    /// each by a compare-and-delete on the token's keyed id (an entry that holds another token
    /// is left alone). For a token this process did not mint (`icr-app revoke`, say), name the
    /// scopes that may hold it: its installation, or every installation of the app.
    pub fn held_by(token: SecretString, scopes: Vec<TokenScope>) -> Self {
        Self {
            span: tracing::debug_span!(target: "icr_app", "revoke", status = tracing::field::Empty),
            token,
            scopes,
            sent: None,
            forgetting: None,
            result: None,
            finished: Finished::default(),
        }
    }
}

impl Revoke {
    /// What to do next, while not finished (see [`Operation::poll`]).
    fn next_step(&mut self, app: &mut App, now: Timestamp) -> Step<()> {
        self.forgetting = None;
        if self.result.is_some() {
            while let Some(scope) = self.scopes.pop() {
                if let Some(command) = app.forget_shared(&scope, &self.token, now) {
                    let id = app.next_request_id();
                    self.forgetting = Some(id);
                    return Step::Store { id, command };
                }
            }
        }
        if let Some(result) = self.result.take() {
            return Step::Done(result);
        }
        match app.revoke_request(&self.token) {
            Ok(request) => {
                let id = app.next_request_id();
                self.sent = Some(id);
                Step::Send { id, request }
            }
            Err(error) => Step::Done(Err(error)),
        }
    }
}

impl Operation for Revoke {
    type Output = ();

    fn poll(&mut self, app: &mut App, now: Timestamp) -> Step<()> {
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
        if self.sent.take_if(|sent| *sent == id).is_some() {
            let span = self.span.clone();
            let _entered = span.enter();
            span.record("status", response.status().as_u16());
            let (result, held) = app.finish_revoke(&self.token, &response, now);
            if result.is_ok() || response.status() == http::StatusCode::UNAUTHORIZED {
                self.scopes.extend(held);
            } else {
                self.scopes.clear();
            }
            self.result = Some(result);
        }
    }

    fn handle_failure(&mut self, app: &mut App, id: RequestId, error: Error, _now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        app.changed();
        if self.sent.take_if(|sent| *sent == id).is_some() {
            self.scopes.clear();
            self.result = Some(Err(error));
        }
    }

    fn handle_store(&mut self, app: &mut App, id: RequestId, reply: Result<StoreReply, Error>, now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        app.changed();
        if self.forgetting.take_if(|own| *own == id).is_some() {
            app.store_told(reply, now);
        }
    }

    fn abandon(&mut self, app: &mut App, _now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        app.changed();
        self.sent = None;
    }
}

/// Revokes every cached token and empties the cache (e.g. on shutdown). Returns how many were
/// revoked, or the first failure after trying them all.
///
/// A token the registry refuses with 401 was already invalid (expired, revoked elsewhere, or its
/// installation removed): it is dropped as the others are, is not counted, and is not a failure,
/// since what revoking it was for is already so.
///
/// A mint still in flight when it starts is waited for (up to the cache's `fetch_timeout`), so
/// the token it lands is revoked too rather than left behind.
#[derive(Debug, Default)]
pub struct RevokeAll {
    drained: Option<Vec<(TokenScope, SecretString)>>,
    current: Option<Revoke>,
    revoked: usize,
    first_error: Option<Error>,
    finished: Finished,
}

impl RevokeAll {
    /// Revokes every cached token.
    pub fn new() -> Self {
        Self::default()
    }
}

impl RevokeAll {
    /// What to do next, while not finished (see [`Operation::poll`]).
    fn next_step(&mut self, app: &mut App, now: Timestamp) -> Step<usize> {
        if self.drained.is_none() {
            if let Some(until) = app.mint_in_flight_until(now) {
                return Step::Wait {
                    until,
                    change: app.changes(),
                };
            }
            self.drained = Some(
                app.drain_tokens()
                    .into_iter()
                    .map(|(scope, t)| (scope, t.secret().clone()))
                    .collect(),
            );
        }
        loop {
            if self.current.is_none() {
                let Some((scope, token)) = self.drained.as_mut().and_then(Vec::pop) else {
                    return Step::Done(match self.first_error.take() {
                        Some(error) => Err(error),
                        None => Ok(self.revoked),
                    });
                };
                self.current = Some(Revoke::held_by(token, vec![scope]));
            }
            let Some(current) = &mut self.current else { continue };
            match current.poll(app, now).pass() {
                Ok(effect) => return effect,
                Err(result) => {
                    self.current = None;
                    match result {
                        Ok(()) => self.revoked += 1,
                        // Already invalid (see the type's docs).
                        Err(error) if error.status() == Some(401) => {}
                        Err(error) => {
                            self.first_error.get_or_insert(error);
                        }
                    }
                }
            }
        }
    }
}

impl Operation for RevokeAll {
    type Output = usize;

    fn poll(&mut self, app: &mut App, now: Timestamp) -> Step<usize> {
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
        if let Some(current) = &mut self.current {
            current.handle_response(app, id, response, now);
        }
    }

    fn handle_failure(&mut self, app: &mut App, id: RequestId, error: Error, now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        app.changed();
        if let Some(current) = &mut self.current {
            current.handle_failure(app, id, error, now);
        }
    }

    fn handle_store(&mut self, app: &mut App, id: RequestId, reply: Result<StoreReply, Error>, now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        app.changed();
        if let Some(current) = &mut self.current {
            current.handle_store(app, id, reply, now);
        }
    }

    fn abandon(&mut self, app: &mut App, now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        if let Some(mut current) = self.current.take() {
            current.abandon(app, now);
        }
        app.changed();
    }
}
