//! Clock learning: the server's clock, as an offset from ours, learned from every response's
//! `Date` header and applied to every JWT and cached expiry.

use http::Response;
use http::header::DATE;

use super::App;
use crate::clock::{ClockOffset, Timestamp};

/// A newly observed offset replaces the stored one only when it differs by more than this: `Date`
/// has one-second resolution, and re-signing the JWT on every jitter would be wasted work.
const OFFSET_HYSTERESIS_MS: i64 = 2_000;

impl App {
    /// Server clock minus ours, as learned so far.
    pub fn clock_offset(&self) -> ClockOffset {
        self.offset
    }

    /// Learns the clock offset from a response's `Date` header, received at local time `now`.
    /// Every `handle_*` call does this itself; call it for responses the `App` did not see.
    pub fn observe<B>(&mut self, response: &Response<B>, now: Timestamp) {
        let Some(date) = response.headers().get(DATE).and_then(|d| d.to_str().ok()) else {
            return;
        };
        if let Some(seen) = ClockOffset::from_date_header(date, now)
            && seen.millis.abs_diff(self.offset.millis) > OFFSET_HYSTERESIS_MS.unsigned_abs()
        {
            self.offset = seen;
            // Cached expiries were fixed on the old offset: a server clock that jumped ahead
            // makes them too late.
            self.cache.observe_offset(seen.millis);
        }
    }
}
