//! Mints: the request for a fetch the cache started, what the app remembers of each mint in flight
//! (how it was signed, for the clock-skew retry), and the answer's bookkeeping (a token cached, a failure recorded with its back-off,
//! a mint given up, a token adopted from the shared store or a refresh deferred to another
//! process).

use http::{Request, Response};

use super::signing::{Signing, Unsigned};
use super::{App, TokenScope};
use crate::cache::Token;
use crate::clock::Timestamp;
use crate::error::{Credential, Error, TransportErrorKind};
use crate::models::AccessToken;
use crate::ops::RequestId;
use crate::response::{parse_json, status_error};
use crate::stats::Counter;

/// The outcome of a mint response (see [`App::handle_token_response`]).
#[derive(Debug)]
#[must_use]
pub(crate) enum TokenAnswer {
    /// The new token, now cached.
    Token(Token),
    /// The registry's clock is far from ours: make the mint request again with
    /// [`App::mint_request`] (signed with the registry's clock), send it, and answer for the
    /// same id again.
    Resign,
}

impl App {
    /// The mint request for fetch `id` (first made, or made again after [`TokenAnswer::Resign`]),
    /// remembering how it was signed.
    ///
    /// Without a key, the JWT may first have to be signed by the driver: then the mint's
    /// operation hands out the step `Unsigned` says and asks again at its next poll.
    pub(crate) fn mint_request(
        &mut self,
        id: RequestId,
        scope: &TokenScope,
        now: Timestamp,
    ) -> Result<Request<Vec<u8>>, Unsigned> {
        let mut signing = self.mints.get(&id).copied().unwrap_or_default();
        let request = self.signed_mint_request(scope, &mut signing, now);
        if request.is_ok() {
            self.stats.count(Counter::Mint);
        }
        // Forget mints the cache no longer waits for (presumed abandoned, never answered), so
        // this stays as small as the number of mints in flight.
        let cache = &self.cache;
        self.mints.retain(|id, _| cache.key_of(*id).is_some());
        self.mints.insert(id, signing);
        request
    }

    fn signed_mint_request(
        &mut self,
        scope: &TokenScope,
        signing: &mut Signing,
        now: Timestamp,
    ) -> Result<Request<Vec<u8>>, Unsigned> {
        let jwt = self.sign(signing, now)?;
        let installation = match scope {
            TokenScope::App => None,
            TokenScope::Installation(id) => Some(id),
            // Operations mint under the installation's key, never the organization's.
            TokenScope::Organization(org) => {
                return Err(Unsigned::Failed(Error::config(
                    "token scope",
                    format!("organization {org} has no known installation to mint for; this is a bug in the core"),
                )));
            }
        };
        Ok(self.api.mint_request(installation, jwt.bearer().clone())?)
    }

    /// Answers mint `id` with the registry's response, received at local time `now`.
    pub(crate) fn handle_token_response(
        &mut self,
        id: RequestId,
        response: Response<Vec<u8>>,
        now: Timestamp,
    ) -> Result<TokenAnswer, Error> {
        let mint = self.mints.remove(&id);
        if self.cache.key_of(id).is_none() {
            return Err(Error::UnknownRequest(id.0));
        }
        self.observe(&response, now);
        let status = response.status();
        if status == http::StatusCode::UNAUTHORIZED
            && let Some(mut signing) = mint
            && self.retry_for_skew(&mut signing)
        {
            self.mints.insert(id, signing);
            return Ok(TokenAnswer::Resign);
        }
        let parsed = if status.is_success() {
            parse_json::<AccessToken>(&response, Credential::AppJwt)
        } else {
            if status == http::StatusCode::UNAUTHORIZED {
                self.jwt.invalidate();
            }
            Err(status_error(
                status.as_u16(),
                response.headers(),
                response.body(),
                Credential::AppJwt,
                Some(self.offset.millis),
            ))
        };
        match parsed {
            Ok(mut access) => {
                self.name_what_it_is_for(id, &mut access);
                self.cache
                    .handle_token(id, access, now, self.offset.millis)
                    .map(TokenAnswer::Token)
            }
            Err(e) => Err(self.fail(id, e, now)),
        }
    }

    /// Fills in what a token is for where the registry's answer leaves it out (the reference
    /// marks `appId`, `installationId` and `organizationId` required): the app's id, the
    /// installation the mint was for and, when an organization was looked up to find that
    /// installation, the organization. What the registry did send is kept as sent.
    fn name_what_it_is_for(&self, id: RequestId, access: &mut AccessToken) {
        if access.app_id.is_none() {
            access.app_id = Some(self.app_id().as_str().to_owned());
        }
        let Some(key @ TokenScope::Installation(installation)) = self.cache.key_of(id) else {
            return;
        };
        if access.installation_id.is_none() {
            access.installation_id = Some(installation.as_str().to_owned());
        }
        if access.organization_id.is_none() {
            access.organization_id = self
                .organizations
                .iter()
                .find(|(_, found)| found.installation.as_ref() == Some(key))
                .map(|(organization, _)| organization.as_str().to_owned());
        }
    }

    /// Answers mint `id` with an I/O failure (connection refused or dropped, timeout, or the
    /// caller gave up: [`TransportErrorKind::Cancelled`]). Returns the error to report.
    pub(crate) fn handle_token_failure(&mut self, id: RequestId, error: Error, now: Timestamp) -> Error {
        self.fail(id, error, now)
    }

    fn fail(&mut self, id: RequestId, error: Error, now: Timestamp) -> Error {
        // Operations wait for this mint: wake them, even when it fails in a poll (a signer's
        // failure, a mint given up).
        self.changed();
        if let Some(mut signing) = self.mints.remove(&id) {
            // A signature it asked for is no longer awaited.
            self.abandon_signing(&mut signing);
        }
        if !matches!(
            error,
            Error::Transport {
                kind: TransportErrorKind::Cancelled,
                ..
            }
        ) && self.cache.key_of(id).is_some()
        {
            self.stats.count_failure(&error);
        }
        self.cache.handle_error(id, error.clone(), now).unwrap_or(error)
    }

    /// The mint in flight as `id` was given up by its operation: release its scope at once.
    pub(crate) fn cancel_mint(&mut self, id: RequestId, now: Timestamp) {
        let _ = self.fail(
            id,
            Error::Transport {
                kind: TransportErrorKind::Cancelled,
                message: "the operation was dropped".into(),
            },
            now,
        );
    }

    /// Answers fetch `id` with a token read from the shared store, received at `now`.
    pub(crate) fn adopt_token(&mut self, id: RequestId, access: AccessToken, now: Timestamp) -> Result<Token, Error> {
        self.changed();
        self.mints.remove(&id);
        self.cache.handle_token(id, access, now, self.offset.millis)
    }

    /// Ends fetch `id` without a token: another process is refreshing, and the cached token
    /// keeps serving until `until`.
    pub(crate) fn defer_refresh(&mut self, id: RequestId, until: Timestamp) {
        self.changed();
        self.mints.remove(&id);
        let _ = self.cache.defer(id, until);
    }
}
