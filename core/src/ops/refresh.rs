//! [`Refresher`]: renews cached tokens ahead of expiry, in the background.

use std::time::Duration;

use http::Response;

use super::fetch::Fetch;
use super::{Operation, RequestId, Step};
use crate::app::App;
use crate::clock::Timestamp;
use crate::error::Error;
use crate::store::StoreReply;

/// The longest a refresher waits before looking again, even when nothing is due.
const IDLE: Duration = Duration::from_secs(60);

/// Renews every cached token whose refresh is due, one mint at a time, while the old token
/// keeps serving; never finishes (drop it, and [`abandon`](Operation::abandon) it, to stop).
///
/// While it runs, call [`App::set_background_refresh`] with `true`, so callers are handed a
/// still-valid token whose refresh is due instead of waiting for the refresh.
#[derive(Debug, Default)]
pub struct Refresher {
    fetch: Option<Box<Fetch>>,
}

impl Refresher {
    /// A refresher.
    pub fn new() -> Self {
        Self::default()
    }

    /// Polls `fetch`, kept in `self` while it runs (a signer that panics leaves it for
    /// `abandon`) and while it needs the driver.
    fn drive(&mut self, fetch: Box<Fetch>, app: &mut App, now: Timestamp) -> Option<Step<()>> {
        let step = match self.fetch.insert(fetch).poll(app, now).pass() {
            Ok(effect) => effect,
            // Cached, recorded as a failure with its back-off, or put off: on to the next.
            Err(_) => {
                self.fetch = None;
                return None;
            }
        };
        Some(step)
    }
}

impl Operation for Refresher {
    type Output = ();

    fn poll(&mut self, app: &mut App, now: Timestamp) -> Step<()> {
        if let Some(fetch) = self.fetch.take()
            && let Some(step) = self.drive(fetch, app, now)
        {
            return step;
        }
        while let Some((id, scope)) = app.start_refresh(now) {
            let fetch = Box::new(Fetch::new(id, scope, app.cache_config().min_remaining, 1));
            if let Some(step) = self.drive(fetch, app, now) {
                return step;
            }
        }
        let idle = now.plus(IDLE);
        let due = app.poll_timeout(now).map_or(idle, |due| due.min(idle));
        // Never a time already past: a driver would spin.
        Step::Wait {
            until: due.max(now.plus(Duration::from_millis(1))),
            change: app.changes(),
        }
    }

    fn handle_response(&mut self, app: &mut App, id: RequestId, response: Response<Vec<u8>>, now: Timestamp) {
        app.changed();
        if let Some(fetch) = &mut self.fetch {
            fetch.handle_response(app, id, response, now);
        }
    }

    fn handle_failure(&mut self, app: &mut App, id: RequestId, error: Error, now: Timestamp) {
        app.changed();
        if let Some(fetch) = &mut self.fetch {
            fetch.handle_failure(app, id, error, now);
        }
    }

    fn handle_store(&mut self, app: &mut App, id: RequestId, reply: Result<StoreReply, Error>, now: Timestamp) {
        app.changed();
        if let Some(fetch) = &mut self.fetch {
            fetch.handle_store(app, id, reply, now);
        }
    }

    fn abandon(&mut self, app: &mut App, now: Timestamp) {
        app.changed();
        if let Some(mut fetch) = self.fetch.take() {
            fetch.abandon(app, now);
        }
    }
}
