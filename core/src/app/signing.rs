//! Signing a request with the app JWT, and the clock-skew retry, written once for every app-JWT
//! request (a mint, a [`Call`](crate::Call)).
//!
//! A request's JWT is made by [`App::sign`], which notes in the request's [`Signing`] the clock
//! offset it was made for. When the registry refuses the request (401), [`App::retry_for_skew`]
//! decides whether it is signed again, once: when the offset learned since (from that response's
//! `Date` or any other) moved by more than [`SKEW_RETRY_THRESHOLD`]. The request is then made
//! again where it was first made, at its operation's next poll, through [`App::sign`] again.

use std::time::Duration;

use super::App;
use crate::clock::{ClockOffset, Timestamp};
use crate::error::Error;
use crate::jwt::{AppJwt, JwtPoll};
use crate::ops::{RequestId, Step};

/// A 401 whose `Date` shows more skew than this (against the clock the JWT was made for) is
/// retried once with the corrected clock.
pub const SKEW_RETRY_THRESHOLD: Duration = Duration::from_secs(30);

/// How one app-JWT request was signed, for the clock-skew retry: kept by its operation (a
/// [`Call`](crate::Call)), or for a mint by the app with the mint in flight.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Signing {
    /// The clock offset its JWT was last made for: a 401 is retried when the offset has moved
    /// since, even if another response taught the new one first.
    signed_with: ClockOffset,
    /// Whether it was already signed again once for clock skew.
    skew_retried: bool,
    /// Without a key: the signing (a [`Step::Sign`](crate::Step::Sign)) it waits on.
    waiting_on: Option<RequestId>,
    /// Without a key: the signing it asked the driver for itself, released if it is abandoned.
    asked: Option<RequestId>,
}

/// Why there is no JWT for a request yet (see [`App::sign`]), as the step its operation hands
/// out: it polls again to get the JWT.
#[derive(Debug)]
pub(crate) enum Unsigned {
    /// Have the driver sign (without a key): [`Step::Sign`].
    Sign { id: RequestId, message: Vec<u8> },
    /// Another operation's signature is awaited: [`Step::Wait`].
    Wait { until: Timestamp, change: u64 },
    /// Signing failed, or the request could not be made: the operation's error.
    Failed(Error),
}

impl Unsigned {
    /// The step to hand out.
    pub(crate) fn into_step<T>(self) -> Step<T> {
        match self {
            Unsigned::Sign { id, message } => Step::Sign { id, message },
            Unsigned::Wait { until, change } => Step::Wait { until, change },
            Unsigned::Failed(error) => Step::Done(Err(error)),
        }
    }
}

impl From<Error> for Unsigned {
    fn from(error: Error) -> Self {
        Unsigned::Failed(error)
    }
}

impl App {
    /// An app JWT valid at `now` (cached until about a minute before it expires).
    pub fn jwt(&mut self, now: Timestamp) -> Result<AppJwt, Error> {
        self.jwt.jwt(now, self.offset)
    }

    /// The app JWT for a request at `now`, noting in `signing` the clock offset it is made for:
    /// the one place a request's JWT is made, whether it is first sent or sent again for skew.
    ///
    /// With a key it is signed here. Without one ([`App::builder_without_key`]) the signature
    /// is a step: the first operation that needs it is told to have it signed, the others to
    /// wait for it, and each polls again to get the JWT (or the signer's failure, as `Err`).
    pub(crate) fn sign(&mut self, signing: &mut Signing, now: Timestamp) -> Result<AppJwt, Unsigned> {
        // Asked to sign and polled again without an answer: that signing was given up (as a
        // Send polled again without an answer is), so it is asked for anew rather than waited
        // on. Answered, it is no longer in flight and this does nothing.
        if let Some(asked) = signing.asked.take() {
            self.jwt.abandon_signing(asked);
        }
        let timeout = self.cache.config().fetch_timeout;
        let cache = &mut self.cache;
        let poll = self.jwt.poll(
            now,
            self.offset,
            &mut signing.waiting_on,
            || cache.next_request_id(),
            timeout,
        );
        match poll {
            JwtPoll::Ready(jwt) => {
                signing.asked = None;
                signing.signed_with = self.offset;
                Ok(jwt)
            }
            JwtPoll::Sign { id, message } => {
                signing.asked = Some(id);
                Err(Unsigned::Sign { id, message })
            }
            JwtPoll::Wait { until } => Err(Unsigned::Wait {
                until,
                change: self.changes,
            }),
            JwtPoll::Failed(error) => {
                signing.asked = None;
                Err(Unsigned::Failed(error))
            }
        }
    }

    /// The operation that signs as `signing` says is leaving: a signature it asked for is no
    /// longer awaited, so the next operation that needs the JWT asks for one at once.
    pub(crate) fn abandon_signing(&mut self, signing: &mut Signing) {
        if let Some(id) = signing.asked.take() {
            self.jwt.abandon_signing(id);
        }
        signing.waiting_on = None;
    }

    /// The answer to a [`Step::Sign`](crate::Step::Sign): the RS256 signature of the bytes it
    /// carried, or the signer's failure. The JWT it completes serves every operation on this
    /// app until a minute before it expires; a failure is the error of the operations that
    /// asked for that signature or waited on it. A late or unknown answer changes nothing.
    /// Drivers answer through [`Operation::handle_signature`](crate::Operation::handle_signature),
    /// which calls this.
    pub fn handle_signature(&mut self, id: RequestId, signature: Result<Vec<u8>, Error>, _now: Timestamp) {
        if self.jwt.handle_signature(id, signature) {
            self.changed();
        }
    }

    /// The registry refused (401) a request signed as `signing` says, and its response was
    /// observed: drops the cached JWT, and returns whether to sign the request again (through
    /// [`sign`](Self::sign)) and send it once more: when the offset learned since it was signed
    /// moved by more than [`SKEW_RETRY_THRESHOLD`], and it was not signed again for that already.
    pub(crate) fn retry_for_skew(&mut self, signing: &mut Signing) -> bool {
        // Only the JWT made for the refused request's clock: one made since for the corrected
        // clock (another operation's retry) stays, or each 401 would ask the signer again.
        self.jwt.invalidate_made_with(signing.signed_with);
        if signing.skew_retried || !self.skew_changed(signing.signed_with) {
            return false;
        }
        signing.skew_retried = true;
        let offset_ms = self.offset.millis;
        tracing::info!(target: "icr_app", offset_ms, "the registry refused the JWT and its clock is not ours: signing again with its clock");
        true
    }

    /// Whether the offset learned since a request was signed moved by more than 30 s.
    fn skew_changed(&self, used: ClockOffset) -> bool {
        self.offset.millis.abs_diff(used.millis) > SKEW_RETRY_THRESHOLD.as_millis() as u64
    }
}
