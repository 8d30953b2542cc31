//! [`Refresher`]: renews cached tokens ahead of expiry, in the background.

use std::time::Duration;

use http::{Request, Response};

use super::{Operation, Step};
use crate::app::{App, TokenAnswer};
use crate::cache::RequestId;
use crate::clock::Timestamp;
use crate::error::Error;

/// The longest a refresher waits before looking again, even when nothing is due.
const IDLE: Duration = Duration::from_secs(60);

/// Renews every cached token whose refresh is due, one mint at a time, while the old token
/// keeps serving; never finishes (drop it, and [`abandon`](Operation::abandon) it, to stop).
///
/// While it runs, call [`App::set_background_refresh`] with `true`, so callers are handed a
/// still-valid token whose refresh is due instead of waiting for the refresh.
#[derive(Debug, Default)]
pub struct Refresher {
    minting: Option<RequestId>,
    resend: Option<(RequestId, Request<Vec<u8>>)>,
}

impl Refresher {
    /// A refresher.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Operation for Refresher {
    type Output = ();

    fn poll(&mut self, app: &mut App, now: Timestamp) -> Step<()> {
        if let Some((id, request)) = self.resend.take() {
            self.minting = Some(id);
            return Step::Send { id, request };
        }
        if let Some(id) = self.minting.take() {
            app.cancel_mint(id, now);
        }
        while let Some((id, scope)) = app.start_refresh(now) {
            // Known before signing: a signer that panics leaves a mint that `abandon` releases.
            self.minting = Some(id);
            match app.mint_request(id, &scope, now) {
                Ok(request) => return Step::Send { id, request },
                // Could not even be signed: recorded as a failure with its back-off.
                Err(error) => {
                    self.minting = None;
                    app.handle_token_failure(id, error, now);
                }
            }
        }
        let idle = now.plus(IDLE);
        let due = app.poll_timeout(now).map_or(idle, |due| due.min(idle));
        // Never a time already past: a driver would spin.
        Step::Wait {
            until: due.max(now.plus(Duration::from_millis(1))),
        }
    }

    fn handle_response(&mut self, app: &mut App, id: RequestId, response: Response<Vec<u8>>, now: Timestamp) {
        if self.minting != Some(id) {
            return;
        }
        // Still recorded while the answer is handled: re-signing for skew may panic.
        let answer = app.handle_token_response(id, response, now);
        self.minting = None;
        if let Ok(TokenAnswer::Retry(request)) = answer {
            self.resend = Some((id, request));
        }
    }

    fn handle_failure(&mut self, app: &mut App, id: RequestId, error: Error, now: Timestamp) {
        if self.minting.take_if(|m| *m == id).is_some() {
            app.handle_token_failure(id, error, now);
        }
    }

    fn abandon(&mut self, app: &mut App, now: Timestamp) {
        if let Some(id) = self.minting.take().or(self.resend.take().map(|(id, _)| id)) {
            app.cancel_mint(id, now);
        }
    }
}
