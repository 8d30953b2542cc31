//! [`SendAs`]: any request, authorised as an installation or as the app.

use http::{Request, Response, StatusCode};

use super::token::GetToken;
use super::{Finished, Operation, RequestId, Step};
use crate::api::authorize;
use crate::app::{App, TokenScope};
use crate::cache::Token;
use crate::clock::Timestamp;
use crate::error::Error;
use crate::store::StoreReply;

/// Sends `request` with `scope`'s token and returns the response, whatever its status.
///
/// Only requests for the configured registry get a token (see
/// [`ApiConfig::check_target`](crate::ApiConfig::check_target)), unless the request carries
/// [`OtherHost`](crate::api::OtherHost); only the registry's responses teach the clock. On a
/// 401 the token is dropped from the cache, a new one minted, and the request sent once more.
///
/// For an organization ([`TokenScope::Organization`]), the token is its installation's (see
/// [`GetToken`]): after a reinstall, the 401 for the old installation's token leads to a mint for
/// it answered 404, one lookup of the organization, and the request sent as the new
/// installation.
#[derive(Debug)]
pub struct SendAs {
    scope: TokenScope,
    request: Request<Vec<u8>>,
    /// Whether the request is for the registry; `None` until checked.
    registry: Option<bool>,
    token: Option<GetToken>,
    /// The request sent, its token, and the scope the token is cached under.
    sent: Option<(RequestId, Token, TokenScope)>,
    retried: bool,
    /// A token the registry refused (and the scope it was cached under), to remove from the
    /// shared store before going on.
    forget: Option<(Token, TokenScope)>,
    forgetting: Option<RequestId>,
    result: Option<Result<Response<Vec<u8>>, Error>>,
    finished: Finished,
    /// `send_as` (target `icr_app`, DEBUG): scope, method, path (never the query), status.
    span: tracing::Span,
}

impl SendAs {
    /// `request` as `scope`.
    pub fn new(scope: TokenScope, request: Request<Vec<u8>>) -> Self {
        let span = tracing::debug_span!(
            target: "icr_app",
            "send_as",
            scope = %scope,
            method = %request.method(),
            path = request.uri().path(),
            status = tracing::field::Empty,
        );
        Self {
            span,
            scope,
            request,
            registry: None,
            token: None,
            sent: None,
            retried: false,
            forget: None,
            forgetting: None,
            result: None,
            finished: Finished::default(),
        }
    }
}

impl SendAs {
    /// What to do next, while not finished (see [`Operation::poll`]).
    fn next_step(&mut self, app: &mut App, now: Timestamp) -> Step<Response<Vec<u8>>> {
        // Before minting again: out of the shared entry too, or the next read would bring it back.
        if let Some((token, key)) = self.forget.take()
            && let Some(command) = app.forget_shared(&key, token.secret(), now)
        {
            let id = app.next_request_id();
            self.forgetting = Some(id);
            return Step::Store { id, command };
        }
        self.forgetting = None;
        if let Some(result) = self.result.take() {
            return Step::Done(result);
        }
        if self.registry.is_none() {
            match app.api().check_target(&self.request) {
                Ok(registry) => self.registry = Some(registry),
                Err(error) => return Step::Done(Err(error)),
            }
        }
        // Polled again without an answer: that send was given up.
        self.sent = None;
        let scope = &self.scope;
        let op = self.token.get_or_insert_with(|| GetToken::new(scope.clone(), None));
        match op.poll(app, now) {
            Step::Done(Ok(token)) => {
                let key = op.key().clone();
                self.token = None;
                let mut request = self.request.clone();
                if let Err(error) = authorize(&mut request, token.secret()) {
                    return Step::Done(Err(error));
                }
                let id = app.next_request_id();
                self.sent = Some((id, token, key));
                Step::Send { id, request }
            }
            Step::Done(Err(error)) => Step::Done(Err(error)),
            Step::Send { id, request } => Step::Send { id, request },
            Step::Store { id, command } => Step::Store { id, command },
            Step::Sleep { until } => Step::Sleep { until },
            Step::Wait { until } => Step::Wait { until },
        }
    }
}

impl Operation for SendAs {
    type Output = Response<Vec<u8>>;

    fn poll(&mut self, app: &mut App, now: Timestamp) -> Step<Response<Vec<u8>>> {
        let mut finished = self.finished;
        let step = finished.poll(|| self.next_step(app, now));
        self.finished = finished;
        step
    }

    fn handle_response(&mut self, app: &mut App, id: RequestId, response: Response<Vec<u8>>, now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        if let Some(op) = &mut self.token {
            return op.handle_response(app, id, response, now);
        }
        let Some((sent, token, key)) = self.sent.take() else {
            return;
        };
        if sent != id {
            self.sent = Some((sent, token, key));
            return;
        }
        let span = self.span.clone();
        let _entered = span.enter();
        span.record("status", response.status().as_u16());
        if self.registry == Some(true) {
            app.observe(&response, now);
        }
        if response.status() == StatusCode::UNAUTHORIZED {
            // Refused: never hand it out again, whether or not we try once more.
            app.invalidate(&key, token.secret().expose());
            tracing::info!(target: "icr_app", retrying = !self.retried, "the registry refused the token: dropped");
            self.forget = Some((token, key));
            if !self.retried {
                self.retried = true;
                return;
            }
        }
        self.result = Some(Ok(response));
    }

    fn handle_failure(&mut self, app: &mut App, id: RequestId, error: Error, now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        if let Some(op) = &mut self.token {
            return op.handle_failure(app, id, error, now);
        }
        if self.sent.as_ref().is_some_and(|(sent, ..)| *sent == id) {
            self.sent = None;
            self.result = Some(Err(error));
        }
    }

    fn handle_store(&mut self, app: &mut App, id: RequestId, reply: Result<StoreReply, Error>, now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        if self.forgetting.take_if(|own| *own == id).is_some() {
            return app.store_told(reply, now);
        }
        if let Some(op) = &mut self.token {
            op.handle_store(app, id, reply, now);
        }
    }

    fn abandon(&mut self, app: &mut App, now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        if let Some(mut op) = self.token.take() {
            op.abandon(app, now);
        }
        self.sent = None;
    }
}
