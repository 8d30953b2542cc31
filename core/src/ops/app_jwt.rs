//! [`GetJwt`]: the app JWT itself, for a caller that sends its own app-JWT requests.

use http::Response;

use super::{Finished, Operation, RequestId, Step};
use crate::app::{App, Signing};
use crate::clock::Timestamp;
use crate::error::Error;
use crate::jwt::AppJwt;
use crate::store::StoreReply;

/// The app JWT valid now: the cached one, or a new one. With a key it is signed in the core
/// and the first poll is `Done` ([`App::jwt`] does the same without an operation); without a
/// key ([`App::builder_without_key`]) the driver signs it ([`Step::Sign`]), once however many
/// operations need it.
#[derive(Debug, Default)]
pub struct GetJwt {
    signing: Signing,
    finished: Finished,
}

impl GetJwt {
    /// The operation.
    pub fn new() -> Self {
        Self::default()
    }
}

impl Operation for GetJwt {
    type Output = AppJwt;

    fn poll(&mut self, app: &mut App, now: Timestamp) -> Step<AppJwt> {
        let signing = &mut self.signing;
        self.finished.poll(|| match app.sign(signing, now) {
            Ok(jwt) => Step::Done(Ok(jwt)),
            Err(unsigned) => unsigned.into_step(),
        })
    }

    /// It sends no request: nothing to answer.
    fn handle_response(&mut self, _app: &mut App, _id: RequestId, _response: Response<Vec<u8>>, _now: Timestamp) {}

    /// It sends no request: nothing to answer.
    fn handle_failure(&mut self, _app: &mut App, _id: RequestId, _error: Error, _now: Timestamp) {}

    /// It uses no store: nothing to answer.
    fn handle_store(&mut self, _app: &mut App, _id: RequestId, _reply: Result<StoreReply, Error>, _now: Timestamp) {}

    fn abandon(&mut self, app: &mut App, _now: Timestamp) {
        if self.finished.is_set() {
            return;
        }
        app.changed();
        app.abandon_signing(&mut self.signing);
    }
}
