//! Operations: every user-level action, driven to completion by the core.
//!
//! An operation ([`GetToken`], [`Call`], [`ListInstallations`], [`SendAs`], [`Revoke`],
//! [`RevokeAll`], [`Refresher`]) is a small state machine over a shared [`App`]. A driver asks it
//! what to do next with [`Operation::poll`], performs that one effect, and reports back:
//!
//! ```text
//!  poll(app, now) ──► Send { id, request }   send it; answer with handle_response or handle_failure
//!                 ──► Store { id, command }  run it on the shared store; answer with handle_store
//!                 ──► Sleep { until }        sleep, then poll again
//!                 ──► Wait { until, change } another operation is changing a token: poll again when
//!                                            any operation has reported back (or abandoned), that is
//!                                            once app.changes() != change, or at until
//!                 ──► Done(result)           finished, for good: polled again, it only returns
//!                                            Done(Err(..)) saying so
//! ```
//!
//! Every decision (attempts and the wait budget, back-off with jitter and `Retry-After`, the
//! clock-skew retry, dropping a refused token and minting again once, pagination, collecting
//! `revoke_all`'s errors, when the next background refresh is due) is made here, once; a driver
//! only performs effects. See the crate docs, "Driving the core yourself", for the contract.

mod any;
mod app_jwt;
mod call;
mod fetch;
mod forget;
mod lookup;
mod refresh;
mod revoke;
mod send;
mod token;

use http::{Request, Response};

pub use any::{AnyOperation, AnyStep, Outcome, PlainRequest, PlainResponse, Purpose};
pub use app_jwt::GetJwt;
pub use call::{Call, ListInstallations};
pub use forget::Forget;
pub use refresh::Refresher;
pub use revoke::{Revoke, RevokeAll};
pub use send::SendAs;
pub use token::GetToken;

use crate::app::App;
use crate::clock::Timestamp;
use crate::error::Error;
use crate::store::{StoreCommand, StoreReply};

/// Identifies one request an operation asked a driver to send ([`Step::Send`]); report its outcome for this id.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct RequestId(pub u64);

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "#{}", self.0)
    }
}

/// What an operation needs from its driver next.
#[derive(Debug)]
#[must_use = "perform the step: a Send left unanswered keeps a scope busy until the operation is abandoned"]
pub enum Step<T> {
    /// Send `request` and report the outcome for `id` with [`Operation::handle_response`] (any
    /// status) or [`Operation::handle_failure`] (no response: refused, connection failed or
    /// dropped, timed out).
    Send {
        /// Which request this is; answer for it.
        id: RequestId,
        /// The request, complete with its credentials.
        request: Request<Vec<u8>>,
    },
    /// Run `command` on the shared token store and report the reply for `id` with
    /// [`Operation::handle_store`] (or the store's failure, also there). Only asked for when
    /// the driver attached a store ([`App::attach_store`]).
    Store {
        /// Which command this is; answer for it.
        id: RequestId,
        /// What to do.
        command: StoreCommand,
    },
    /// Sign `message` with the app's private key, held outside this process (a KMS, an HSM, a
    /// signer in another language): RS256, that is RSASSA-PKCS1-v1_5 with SHA-256, and report
    /// the signature (or the signer's failure) for `id` with [`Operation::handle_signature`].
    /// Only asked for by an app built without a key ([`App::builder_without_key`]), once
    /// however many operations need the JWT (the others [`Wait`](Step::Wait)), and about once
    /// every eight minutes: the JWT it completes (nine minutes of life) is reused until a minute
    /// before it expires. Answer it before polling again: polled again without an answer, the
    /// operation gives that signing up and asks for a new one.
    Sign {
        /// Which signing this is; answer for it.
        id: RequestId,
        /// The bytes to sign (the JWT's `base64url(header).base64url(claims)`).
        message: Vec<u8>,
    },
    /// Sleep until `until` (local clock), then poll again.
    Sleep {
        /// When to poll again.
        until: Timestamp,
    },
    /// Another operation is minting a token this one needs (or, for a [`Refresher`], nothing is
    /// due): poll again as soon as any operation on the same [`App`] has reported back or been
    /// abandoned, that is once [`App::changes`] differs from `change`, or at `until` at the
    /// latest.
    Wait {
        /// When to poll again at the latest.
        until: Timestamp,
        /// The value of [`App::changes`] when the wait was decided: poll again once
        /// `app.changes() != change` (read under the app's lock), or at `until`.
        change: u64,
    },
    /// The operation is finished; poll no more (a later poll only returns an error that says
    /// so).
    Done(Result<T, Error>),
}

impl<T> Step<T> {
    /// The same step, with `f` applied to the result of a successful [`Step::Done`].
    pub fn map<U>(self, f: impl FnOnce(T) -> U) -> Step<U> {
        match self.pass() {
            Ok(effect) => effect,
            Err(result) => Step::Done(result.map(f)),
        }
    }

    /// The step as an effect to pass on from an operation that wraps another (of any output
    /// type), or the result the inner operation finished with.
    pub(crate) fn pass<U>(self) -> Result<Step<U>, Result<T, Error>> {
        match self {
            Step::Send { id, request } => Ok(Step::Send { id, request }),
            Step::Store { id, command } => Ok(Step::Store { id, command }),
            Step::Sign { id, message } => Ok(Step::Sign { id, message }),
            Step::Sleep { until } => Ok(Step::Sleep { until }),
            Step::Wait { until, change } => Ok(Step::Wait { until, change }),
            Step::Done(result) => Err(result),
        }
    }
}

/// One user-level action on an [`App`], driven by polling. See the crate docs, "Driving the core yourself".
///
/// All methods take the shared [`App`] (drivers keep it behind one lock, released while a
/// request is in flight or the driver sleeps or waits) and the local time `now`.
pub trait Operation {
    /// What the operation produces.
    type Output;

    /// What to do next.
    ///
    /// Once it has returned [`Step::Done`], an operation is finished for good: every later
    /// `poll` returns `Step::Done(Err(..))` (an [`Error::Config`] saying it already finished),
    /// never a `Send`, `Store`, `Sleep` or `Wait`, and later `handle_*` and `abandon` calls do
    /// nothing. To do the same thing again, start a new operation: a finished one never sends
    /// again (a finished [`SendAs`] would otherwise hand out a newly authorised request).
    fn poll(&mut self, app: &mut App, now: Timestamp) -> Step<Self::Output>;

    /// The response to request `id`, whatever its status, received at `now`.
    fn handle_response(&mut self, app: &mut App, id: RequestId, response: Response<Vec<u8>>, now: Timestamp);

    /// Request `id` got no response: `error` says why (a transport error, or the transport
    /// policy's refusal).
    fn handle_failure(&mut self, app: &mut App, id: RequestId, error: Error, now: Timestamp);

    /// The shared store's reply to command `id`, or why it gave none (unreachable, timed out,
    /// refused): any failure makes the core mint without the store for a while, never an error
    /// for the caller.
    fn handle_store(&mut self, app: &mut App, id: RequestId, reply: Result<StoreReply, Error>, now: Timestamp);

    /// The driver is leaving the operation before [`Step::Done`] (an error of its own, a panic,
    /// a dropped future): release whatever it holds, at once. Calling it after `Done` does
    /// nothing, so drivers call it from a guard's `Drop` on every way out.
    fn abandon(&mut self, app: &mut App, now: Timestamp);

    /// The answer to [`Step::Sign`] `id`: the RS256 signature of the bytes it carried, or why
    /// there is none (the signer's failure, as [`Error::Signing`] or any other error, whose
    /// message is then the operations' error). The JWT it completes serves every operation
    /// on the app; a late or unknown answer changes nothing. Every operation answers it the
    /// same way, through the app ([`App::handle_signature`]).
    fn handle_signature(&mut self, app: &mut App, id: RequestId, signature: Result<Vec<u8>, Error>, now: Timestamp) {
        app.handle_signature(id, signature, now);
    }
}

/// Whether an operation has returned [`Step::Done`]; from then on it does nothing (see
/// [`Operation::poll`]). Each operation's `poll` goes through [`Finished::poll`].
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Finished(bool);

impl Finished {
    /// Whether `Done` was returned.
    pub(crate) fn is_set(self) -> bool {
        self.0
    }

    /// `step()`'s step, remembering a `Done`; once done, the error that says so, without
    /// calling `step`.
    pub(crate) fn poll<T>(&mut self, step: impl FnOnce() -> Step<T>) -> Step<T> {
        if self.0 {
            return Step::Done(Err(Error::config(
                "operation",
                "it already finished (a poll returned Step::Done) and does nothing more; start a new operation",
            )));
        }
        let step = step();
        self.0 = matches!(step, Step::Done(_));
        step
    }
}

/// Reports a retry (target `icr_app`, WARN): what failed, the attempt, and the wait. Never a
/// credential: errors carry none.
pub(crate) fn retrying(
    what: &dyn std::fmt::Display,
    attempt: u32,
    max_attempts: u32,
    wait: std::time::Duration,
    cause: &Error,
) {
    let wait_ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX);
    tracing::warn!(target: "icr_app", %what, attempt, max_attempts, wait_ms, cause = %cause, "retrying");
}
