//! [`RequestEvent`]: the `request` event of each HTTP exchange (feature `tracing`).

use std::time::Instant;

use http::{Method, Request, Response};

/// The `request` event of one HTTP exchange: target `icr_app`, level DEBUG, fields `method`,
/// `path` (no query), `status` (0 when there was no response) and `took_ms`; never a header,
/// body, token or key. [`start`](Self::start) it before sending and [`finish`](Self::finish) it
/// with the outcome; what it needs is taken only when someone listens.
#[derive(Debug)]
#[must_use = "finish it with the exchange's outcome"]
pub struct RequestEvent(Option<(Method, String, Instant)>);

impl RequestEvent {
    /// Starts timing `request`, if anyone listens to the event.
    pub fn start<B>(request: &Request<B>) -> Self {
        Self(tracing::enabled!(target: "icr_app", tracing::Level::DEBUG).then(|| {
            (
                request.method().clone(),
                request.uri().path().to_owned(),
                Instant::now(),
            )
        }))
    }

    /// Emits the event for `result`, the exchange's outcome.
    pub fn finish<B, E>(self, result: &Result<Response<B>, E>) {
        if let Some((method, path, started)) = self.0 {
            let status = result.as_ref().map_or(0, |r| r.status().as_u16());
            let took_ms = started.elapsed().as_secs_f64() * 1000.0;
            tracing::debug!(target: "icr_app", %method, %path, status, took_ms, "request");
        }
    }
}
