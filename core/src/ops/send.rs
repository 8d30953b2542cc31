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
    /// Whether the request is for the registry (known once checked: whose responses teach the
    /// clock).
    registry: bool,
    /// Whether the request was already sent again after a 401.
    retried: bool,
    state: State,
    finished: Finished,
    /// `send_as` (target `icr_app`, DEBUG): scope, method, path (never the query), status.
    span: tracing::Span,
}

/// Where a [`SendAs`] stands.
#[derive(Debug)]
enum State {
    /// The request's target is checked first (is it the registry, may it carry a token).
    Checking,
    /// Getting the token (a hit, or a mint and perhaps an organization's lookup), polled in
    /// place: a signer that panics leaves it for `abandon`.
    Getting(GetToken),
    /// The request is sent as `id` with `token`, cached under `key`.
    Sent {
        id: RequestId,
        token: Token,
        key: TokenScope,
    },
    /// The registry refused `token` (cached under `key`): out of the shared entry too before
    /// going on, or the next read would bring it back; then `after`.
    Forget {
        token: Token,
        key: TokenScope,
        after: After,
    },
    /// The shared store is removing the refused token as command `id`; then `after`.
    Forgetting { id: RequestId, after: After },
    /// Finished with this result at the next poll.
    Answered(Result<Response<Vec<u8>>, Error>),
    /// Nothing more to do (`Done` was returned).
    Done,
}

/// What comes after a refused token is forgotten: the request sent again with a new token
/// (`None`, the first 401), or the result (`Some`, the response to the second).
type After = Option<Result<Response<Vec<u8>>, Error>>;

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
            registry: false,
            retried: false,
            state: State::Checking,
            finished: Finished::default(),
        }
    }

    /// Whether `id` is the id of the request this operation was made for, sent with its token
    /// and not yet answered (rather than of a mint or lookup it needed first): true from the
    /// poll that returned its `Send` until its answer is handled.
    pub(crate) fn is_target(&self, id: RequestId) -> bool {
        matches!(self.state, State::Sent { id: sent, .. } if sent == id)
    }

    /// Getting a new token: the state to poll next.
    fn anew(&self) -> State {
        State::Getting(GetToken::new(self.scope.clone(), None))
    }

    /// The state after a refused token was forgotten (or could not be).
    fn after_forgetting(&self, after: After) -> State {
        match after {
            Some(result) => State::Answered(result),
            None => self.anew(),
        }
    }
}

impl SendAs {
    /// What to do next, while not finished (see [`Operation::poll`]).
    fn next_step(&mut self, app: &mut App, now: Timestamp) -> Step<Response<Vec<u8>>> {
        if let State::Getting(op) = &mut self.state {
            return match op.poll(app, now).pass() {
                Err(Ok(token)) => {
                    let key = op.key().clone();
                    let mut request = self.request.clone();
                    if let Err(error) = authorize(&mut request, token.secret()) {
                        self.state = State::Done;
                        return Step::Done(Err(error));
                    }
                    let id = app.next_request_id();
                    self.state = State::Sent { id, token, key };
                    Step::Send { id, request }
                }
                Err(Err(error)) => Step::Done(Err(error)),
                Ok(effect) => effect,
            };
        }
        match std::mem::replace(&mut self.state, State::Done) {
            State::Forget { token, key, after } => {
                if let Some(command) = app.forget_shared(&key, token.secret(), now) {
                    let id = app.next_request_id();
                    self.state = State::Forgetting { id, after };
                    return Step::Store { id, command };
                }
                self.state = self.after_forgetting(after);
                self.next_step(app, now)
            }
            // Polled again without the store's reply: that command was given up.
            State::Forgetting { after, .. } => {
                self.state = self.after_forgetting(after);
                self.next_step(app, now)
            }
            State::Answered(result) => Step::Done(result),
            State::Checking => match app.api().check_target(&self.request) {
                Ok(registry) => {
                    self.registry = registry;
                    self.state = self.anew();
                    self.next_step(app, now)
                }
                Err(error) => Step::Done(Err(error)),
            },
            // Polled again without an answer: that send was given up.
            State::Sent { .. } => {
                self.state = self.anew();
                self.next_step(app, now)
            }
            State::Getting(_) | State::Done => Step::Done(Err(Error::config(
                "operation",
                "the request was already sent as it will be; this is a bug in the core",
            ))),
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
        app.changed();
        match &mut self.state {
            State::Getting(op) => return op.handle_response(app, id, response, now),
            State::Sent { id: sent, .. } if *sent == id => {}
            _ => return,
        }
        let State::Sent { token, key, .. } = std::mem::replace(&mut self.state, State::Done) else {
            return;
        };
        let span = self.span.clone();
        let _entered = span.enter();
        span.record("status", response.status().as_u16());
        if self.registry {
            app.observe(&response, now);
        }
        if response.status() == StatusCode::UNAUTHORIZED {
            // Refused: never hand it out again, whether or not we try once more.
            app.invalidate(&key, token.secret().expose());
            tracing::info!(target: "icr_app", retrying = !self.retried, "the registry refused the token: dropped");
            let after = if self.retried { Some(Ok(response)) } else { None };
            self.retried = true;
            self.state = State::Forget { token, key, after };
            return;
        }
        self.state = State::Answered(Ok(response));
    }

    fn handle_failure(&mut self, app: &mut App, id: RequestId, error: Error, now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        app.changed();
        match &mut self.state {
            State::Getting(op) => op.handle_failure(app, id, error, now),
            State::Sent { id: sent, .. } if *sent == id => self.state = State::Answered(Err(error)),
            _ => {}
        }
    }

    fn handle_store(&mut self, app: &mut App, id: RequestId, reply: Result<StoreReply, Error>, now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        app.changed();
        match &mut self.state {
            State::Forgetting { id: own, .. } if *own == id => {
                if let State::Forgetting { after, .. } = std::mem::replace(&mut self.state, State::Done) {
                    self.state = self.after_forgetting(after);
                }
                app.store_told(reply, now);
            }
            State::Getting(op) => op.handle_store(app, id, reply, now),
            _ => {}
        }
    }

    fn abandon(&mut self, app: &mut App, now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        app.changed();
        match &mut self.state {
            State::Getting(op) => {
                op.abandon(app, now);
                self.state = self.anew();
            }
            State::Sent { .. } => self.state = self.anew(),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::InstallationId;
    use crate::signer::Signer;

    struct FakeSigner;
    impl Signer for FakeSigner {
        fn sign_rs256(&self, _message: &[u8]) -> Result<Vec<u8>, Error> {
            Ok(vec![1, 2, 3])
        }
    }

    fn sent(step: Step<Response<Vec<u8>>>) -> (RequestId, Request<Vec<u8>>) {
        match step {
            Step::Send { id, request } => (id, request),
            other => panic!("expected a send, got {other:?}"),
        }
    }

    /// Only the request the operation was made for is its target, not the mint it needed first.
    #[test]
    fn the_target_is_the_request_sent_as_the_scope() {
        let mut app = App::builder("app-1", FakeSigner).build().unwrap();
        let now = Timestamp::from_unix_seconds(1_700_000_000);
        let scope = TokenScope::Installation(InstallationId::new("i-1").unwrap());
        let request = app
            .api()
            .request(http::Method::GET, "/organizations/o-1", None)
            .unwrap();
        let mut op = SendAs::new(scope, request);
        let (mint, request) = sent(op.poll(&mut app, now));
        assert_eq!(request.uri().path(), "/app/installations/i-1/accessTokens");
        assert!(!op.is_target(mint));
        let body = format!(
            r#"{{"token":"crs_0123","createdAt":"{}","expiresAt":"{}"}}"#,
            now.to_rfc3339(),
            now.plus(std::time::Duration::from_secs(7200)).to_rfc3339()
        );
        let minted = Response::builder().status(200).body(body.into_bytes()).unwrap();
        op.handle_response(&mut app, mint, minted, now);
        let (target, request) = sent(op.poll(&mut app, now));
        assert_eq!(request.uri().path(), "/organizations/o-1");
        assert!(op.is_target(target) && !op.is_target(mint));
        op.handle_response(&mut app, target, Response::new(Vec::new()), now);
        assert!(!op.is_target(target), "answered: nothing is in flight");
        assert!(matches!(op.poll(&mut app, now), Step::Done(Ok(_))));
    }
}
