//! One HTTP exchange as a driver sees it: its outcome reported to the operation that asked for
//! it ([`report_sent`]), and the registry's clock learned from an answer no operation asked for
//! ([`date_only`]).

use http::header::DATE;
use http::{HeaderMap, Response};
use icr_app_core::{App, Error, Operation, RequestId, Timestamp};

/// Reports what became of a `Send` step's request `id` to `op`: its response, whatever its
/// status ([`Operation::handle_response`]), or why there is none
/// ([`Operation::handle_failure`]).
pub fn report_sent<O: Operation + ?Sized>(
    op: &mut O,
    app: &mut App,
    id: RequestId,
    sent: Result<Response<Vec<u8>>, Error>,
    now: Timestamp,
) {
    match sent {
        Ok(response) => op.handle_response(app, id, response, now),
        Err(error) => op.handle_failure(app, id, error, now),
    }
}

/// The `Date` of a registry's answer no operation asked for (one a middleware saw), alone in a
/// response for [`App::observe`] to learn the registry's clock from; `None` without one, so
/// that such an answer costs no lock.
///
/// ```
/// # use icr_app_core::{App, AppKey, Timestamp};
/// # let key = icr_app_core::AppKey::from_pem(icr_app_testkit::DEMO_PRIVATE_KEY_PEM)?;
/// # let mut app = App::builder("67890", key).build()?;
/// let mut headers = http::HeaderMap::new();
/// headers.insert("date", "Tue, 14 Nov 2023 22:13:20 GMT".parse()?);
/// if let Some(seen) = icr_app_driver::date_only(&headers) {
///     app.observe(&seen, icr_app_driver::now());
/// }
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub fn date_only(headers: &HeaderMap) -> Option<Response<()>> {
    let date = headers.get(DATE)?;
    let mut seen = Response::new(());
    seen.headers_mut().insert(DATE, date.clone());
    Some(seen)
}
