//! Signing with the app JWT, and the clock-skew retry.

use std::time::Duration;

use super::App;
use crate::clock::{ClockOffset, Timestamp};
use crate::error::Error;
use crate::jwt::AppJwt;

/// A 401 whose `Date` shows more skew than this (against the clock the JWT was made for) is
/// retried once with the corrected clock.
pub const SKEW_RETRY_THRESHOLD: Duration = Duration::from_secs(30);

impl App {
    /// An app JWT valid at `now` (cached until about a minute before it expires).
    pub fn jwt(&mut self, now: Timestamp) -> Result<AppJwt, Error> {
        self.jwt.jwt(now, self.offset)
    }

    /// Drops the cached JWT (the registry refused it).
    pub(crate) fn invalidate_jwt(&mut self) {
        self.jwt.invalidate();
    }

    /// Whether the offset learned since a request was signed moved by more than 30 s.
    pub(crate) fn skew_changed(&self, used: ClockOffset) -> bool {
        self.offset.millis.abs_diff(used.millis) > SKEW_RETRY_THRESHOLD.as_millis() as u64
    }
}
