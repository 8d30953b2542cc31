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
use crate::jwt::AppJwt;

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
}

impl App {
    /// An app JWT valid at `now` (cached until about a minute before it expires).
    pub fn jwt(&mut self, now: Timestamp) -> Result<AppJwt, Error> {
        self.jwt.jwt(now, self.offset)
    }

    /// The app JWT for a request at `now`, noting in `signing` the clock offset it is made for:
    /// the one place a request's JWT is made, whether it is first sent or sent again for skew.
    pub(crate) fn sign(&mut self, signing: &mut Signing, now: Timestamp) -> Result<AppJwt, Error> {
        let jwt = self.jwt(now)?;
        signing.signed_with = self.offset;
        Ok(jwt)
    }

    /// The registry refused (401) a request signed as `signing` says, and its response was
    /// observed: drops the cached JWT, and returns whether to sign the request again (through
    /// [`sign`](Self::sign)) and send it once more: when the offset learned since it was signed
    /// moved by more than [`SKEW_RETRY_THRESHOLD`], and it was not signed again for that already.
    pub(crate) fn retry_for_skew(&mut self, signing: &mut Signing) -> bool {
        self.jwt.invalidate();
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
