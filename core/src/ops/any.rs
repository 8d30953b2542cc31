//! [`AnyOperation`]: every operation behind one concrete type whose steps, answers and results
//! are plain data, for drivers that are not Rust generics: the Python, C and Node bindings, or a
//! loop of your own.
//!
//! The typed operations ([`GetToken`], [`Call`], ...) hand out `http::Request`s and take
//! `http::Response`s, and each has its own output type. `AnyOperation` wraps any of them (str0m's
//! shape: one concrete input, one concrete output): a [`Send`](AnyStep::Send) carries a
//! [`PlainRequest`] (method, URL, header pairs, body, and what the request is for), an answer
//! comes back as a status, header pairs and a body, a failure as a [`TransportErrorKind`] and a
//! message, and the result is one [`Outcome`].

use std::time::Duration;

use http::header::{HeaderName, HeaderValue};
use http::{Method, Request, Response, StatusCode};

use super::{
    Call, Forget, GetJwt, GetToken, ListInstallations, Operation, Refresher, RequestId, Revoke, RevokeAll, SendAs, Step,
};
use crate::api::{InstallationId, OrganizationId};
use crate::app::{App, TokenScope};
use crate::cache::Token;
use crate::clock::Timestamp;
use crate::error::{Credential, Error, TransportErrorKind};
use crate::jwt::AppJwt;
use crate::models::{CreateUserOrganization, CreatedUserOrganization, Installation, InstallationsPage};
use crate::secret::SecretString;
use crate::store::{StoreCommand, StoreReply};

/// What a request handed out by an [`AnyOperation`] is for, so that a driver can treat them
/// differently (send the user's own request with the user's HTTP client and the core's with its
/// own, say) without reading URLs.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Purpose {
    /// Minting an access token (`POST /app/accessTokens` or
    /// `POST /app/installations/{id}/accessTokens`, with the app JWT).
    Mint,
    /// Finding an organization's installation (`GET /app/organizations/{id}/installation`, with
    /// the app JWT) before minting for it.
    Lookup,
    /// An app-JWT call whose answer is the operation's result (an installation, a page, ...).
    Call,
    /// The request a [`SendAs`] was made for: the caller's own, authorised with a token.
    Request,
    /// Revoking an access token (`DELETE /app/installations/token`).
    Revoke,
}

impl Purpose {
    /// The purpose's stable name: `mint`, `lookup`, `call`, `request` or `revoke`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Purpose::Mint => "mint",
            Purpose::Lookup => "lookup",
            Purpose::Call => "call",
            Purpose::Request => "request",
            Purpose::Revoke => "revoke",
        }
    }
}

/// A request to send, as plain data. Its headers hold the credential (the JWT or a token):
/// never log them; its `Debug` shows the method, URL and header names only.
#[derive(Clone, PartialEq, Eq)]
pub struct PlainRequest {
    /// `GET`, `POST`, `DELETE`, ...
    pub method: String,
    /// The absolute URL.
    pub url: String,
    /// Every header, as `(name, value)` pairs, names in lower case.
    pub headers: Vec<(String, String)>,
    /// The body (empty for none).
    pub body: Vec<u8>,
    /// What the request is for.
    pub purpose: Purpose,
}

impl std::fmt::Debug for PlainRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("PlainRequest")
            .field("method", &self.method)
            .field("url", &self.url)
            .field("headers", &names)
            .field("body_len", &self.body.len())
            .field("purpose", &self.purpose)
            .finish()
    }
}

impl PlainRequest {
    fn from_http(request: Request<Vec<u8>>, purpose: Purpose) -> Self {
        let (parts, body) = request.into_parts();
        let headers = header_pairs(&parts.headers);
        Self {
            method: parts.method.as_str().to_owned(),
            url: parts.uri.to_string(),
            headers,
            body,
            purpose,
        }
    }

    /// The value of header `name` (any case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
}

/// A response, as plain data: what a driver reports with [`AnyOperation::handle_response`], and
/// what a [`SendAs`] hands back ([`Outcome::Response`]). A mint's body holds a token: its
/// `Debug` shows the status, header names and the body's length only.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct PlainResponse {
    /// The HTTP status.
    pub status: u16,
    /// Every header, as `(name, value)` pairs (values that are not UTF-8 may be passed lossily:
    /// the core reads only ASCII ones).
    pub headers: Vec<(String, String)>,
    /// The body.
    pub body: Vec<u8>,
}

impl std::fmt::Debug for PlainResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("PlainResponse")
            .field("status", &self.status)
            .field("headers", &names)
            .field("body_len", &self.body.len())
            .finish()
    }
}

impl PlainResponse {
    /// A response of `status` with `headers` and `body`.
    pub fn new(status: u16, headers: Vec<(String, String)>, body: Vec<u8>) -> Self {
        Self { status, headers, body }
    }

    /// The value of header `name` (any case), if present.
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }

    /// The body read as JSON into `T` when the status is a success; otherwise the core's error
    /// for the status (a 401 as a refused access token, a 429 with its `Retry-After`, ...), and
    /// a body that is not `T` is [`Error::MalformedBody`].
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, Error> {
        crate::response::parse_json(&self.to_http()?, Credential::AccessToken)
    }

    /// As an `http::Response`; a header the `http` crate cannot hold is left out (the core
    /// reads only standard ones), a status outside 100..=999 is [`Error::Config`].
    fn to_http(&self) -> Result<Response<Vec<u8>>, Error> {
        let status = StatusCode::from_u16(self.status)
            .map_err(|_| Error::config("response status", format!("{} is not an HTTP status", self.status)))?;
        let mut response = Response::new(self.body.clone());
        *response.status_mut() = status;
        let map = response.headers_mut();
        for (name, value) in &self.headers {
            if let (Ok(name), Ok(value)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_bytes(value.as_bytes()),
            ) {
                map.append(name, value);
            }
        }
        Ok(response)
    }

    fn from_http(response: Response<Vec<u8>>) -> Self {
        let (parts, body) = response.into_parts();
        let headers = header_pairs(&parts.headers);
        Self {
            status: parts.status.as_u16(),
            headers,
            body,
        }
    }
}

/// `(name, value)` pairs of `headers` (a value that is not UTF-8 is passed lossily).
fn header_pairs(headers: &http::HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            (
                name.as_str().to_owned(),
                String::from_utf8_lossy(value.as_bytes()).into_owned(),
            )
        })
        .collect()
}

/// The value of header `name` (any case) among `headers`.
fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// What an [`AnyOperation`] produced.
#[derive(Debug)]
#[non_exhaustive]
pub enum Outcome {
    /// An access token ([`AnyOperation::token`]).
    Token(Token),
    /// The app JWT ([`AnyOperation::app_jwt`]).
    Jwt(AppJwt),
    /// One installation ([`AnyOperation::installation`],
    /// [`AnyOperation::installation_for_organization`]).
    Installation(Installation),
    /// One page of installations ([`AnyOperation::installations_page`]).
    Page(InstallationsPage),
    /// Every installation ([`AnyOperation::all_installations`]).
    Installations(Vec<Installation>),
    /// The user and organization created ([`AnyOperation::create_user_organization`]).
    Created(CreatedUserOrganization),
    /// The response to a request sent as a scope ([`AnyOperation::send_as`]), whatever its
    /// status.
    Response(PlainResponse),
    /// How many tokens were revoked ([`AnyOperation::revoke_all`]).
    Count(usize),
    /// Nothing ([`AnyOperation::revoke`]; a [`AnyOperation::refresher`] never finishes).
    Nothing,
    /// Whether anything was named to forget ([`AnyOperation::forget`],
    /// [`AnyOperation::handle_event`]).
    Forgot(bool),
}

/// What an [`AnyOperation`] needs from its driver next: [`Step`] with plain data.
#[derive(Debug)]
#[must_use = "perform the step: a Send left unanswered keeps a scope busy until the operation is abandoned"]
#[allow(clippy::large_enum_variant)] // one step at a time, moved to the driver at once
pub enum AnyStep {
    /// Send `request` and report for `id` with [`AnyOperation::handle_response`] (any status)
    /// or [`AnyOperation::handle_failure`] (no response).
    Send {
        /// Which request this is; answer for it.
        id: u64,
        /// The request, complete with its credential.
        request: PlainRequest,
    },
    /// Run `command` on the shared token store and report with [`AnyOperation::handle_store`].
    Store {
        /// Which command this is; answer for it.
        id: u64,
        /// What to do.
        command: StoreCommand,
    },
    /// Sign `message` (RS256, with the app's key held outside the process) and report with
    /// [`AnyOperation::handle_signature`] (see [`Step::Sign`]). Only for an app without a key.
    Sign {
        /// Which signing this is; answer for it.
        id: u64,
        /// The bytes to sign.
        message: Vec<u8>,
    },
    /// Sleep until `until`, then poll again.
    Sleep {
        /// When to poll again.
        until: Timestamp,
    },
    /// Poll again once any operation on the same [`App`] has reported back or been abandoned,
    /// that is once [`App::changes`] differs from `change`, or at `until` at the latest (see
    /// [`Step::Wait`]).
    Wait {
        /// When to poll again at the latest.
        until: Timestamp,
        /// The value of [`App::changes`] when the wait was decided: poll again once
        /// `app.changes() != change`.
        change: u64,
    },
    /// Finished, for good.
    Done(Result<Outcome, Error>),
}

/// The operation an [`AnyOperation`] wraps.
#[derive(Debug)]
enum Inner {
    Jwt(GetJwt),
    Token(GetToken),
    Installation(Call<Installation>),
    Page(Call<InstallationsPage>),
    All(ListInstallations),
    Create(Call<CreatedUserOrganization>),
    SendAs(SendAs),
    Revoke(Revoke),
    RevokeAll(RevokeAll),
    Refresher(Refresher),
    Forget(Forget),
}

/// Calls `$body` with `$op` bound to whichever operation `$inner` holds.
macro_rules! each {
    ($inner:expr, $op:ident => $body:expr) => {
        match $inner {
            Inner::Jwt($op) => $body,
            Inner::Token($op) => $body,
            Inner::Installation($op) => $body,
            Inner::Page($op) => $body,
            Inner::All($op) => $body,
            Inner::Create($op) => $body,
            Inner::SendAs($op) => $body,
            Inner::Revoke($op) => $body,
            Inner::RevokeAll($op) => $body,
            Inner::Refresher($op) => $body,
            Inner::Forget($op) => $body,
        }
    };
}

/// Any operation, driven with plain data: see the crate docs, "Driving the core yourself".
///
/// Its contract is [`Operation`]'s: poll, perform the one step, report back under the app's
/// lock, and [`abandon`](Self::abandon) on every way out before `Done`.
#[derive(Debug)]
pub struct AnyOperation {
    inner: Inner,
}

impl AnyOperation {
    /// A token for `scope` (an installation, an organization's installation, or the app) with
    /// at least `min_life` left ([`GetToken`]).
    pub fn token(scope: TokenScope, min_life: Option<Duration>) -> Self {
        Self::from(GetToken::new(scope, min_life))
    }

    /// The app JWT valid now ([`GetJwt`]), for requests you send yourself.
    pub fn app_jwt() -> Self {
        Self::from(GetJwt::new())
    }

    /// One installation (`GET /app/installations/{id}`).
    pub fn installation(id: InstallationId) -> Self {
        Self::from(Call::installation(id))
    }

    /// The app's installation on an organization (`GET /app/organizations/{id}/installation`),
    /// remembered for it.
    pub fn installation_for_organization(organization: OrganizationId) -> Self {
        Self::from(Call::installation_for_organization(organization))
    }

    /// One page of installations (`GET /app/installations?limit&page`, `page` from 0).
    pub fn installations_page(limit: u32, page: u32) -> Self {
        Self::from(Call::installations_page(limit, page))
    }

    /// Every installation, `limit` a page.
    pub fn all_installations(limit: u32) -> Self {
        Self::from(ListInstallations::new(limit))
    }

    /// Creates a user and an organization with the app installed.
    pub fn create_user_organization(body: CreateUserOrganization) -> Self {
        Self::from(Call::create_user_organization(body))
    }

    /// Any request, authorised as `scope` ([`SendAs`]): `url` is a path relative to the base
    /// URL, starting with `/` (then the standard headers are added), or an absolute URL on the
    /// registry (a token goes to no other host). `headers` replace the standard ones of the same
    /// name; a name given more than once is sent with every value.
    pub fn send_as<N: AsRef<str>, V: AsRef<str>>(
        app: &App,
        scope: TokenScope,
        method: &str,
        url: &str,
        headers: &[(N, V)],
        body: Option<Vec<u8>>,
    ) -> Result<Self, Error> {
        Ok(Self::from(SendAs::plain(app, scope, method, url, headers, body)?))
    }

    /// Revokes `token` (`DELETE /app/installations/token`) and drops it from the cache.
    pub fn revoke(token: SecretString) -> Self {
        Self::from(Revoke::new(token))
    }

    /// Revokes `token`, which `scopes` held: their shared entries drop it too (a
    /// compare-and-delete: an entry holding another token is left alone). See
    /// [`Revoke::held_by`].
    pub fn revoke_held_by(token: SecretString, scopes: Vec<TokenScope>) -> Self {
        Self::from(Revoke::held_by(token, scopes))
    }

    /// Forgets `scope` here and in the shared store ([`Forget::new`]): the next call mints anew.
    pub fn forget(scope: TokenScope) -> Self {
        Self::from(Forget::new(scope))
    }

    /// What a verified webhook `event` drops ([`Forget::event`]): for `uninstalled`,
    /// `suspended` and `newPermissionsAccepted`, the installation's token and the
    /// organization's remembered installation, here and in the shared store. For any other
    /// event it does nothing and its outcome is `Forgot(false)`.
    pub fn handle_event(event: &crate::webhook::WebhookEvent) -> Self {
        Self::from(Forget::event(event).unwrap_or_default())
    }

    /// Revokes every cached token and empties the cache; the result is how many.
    pub fn revoke_all() -> Self {
        Self::from(RevokeAll::new())
    }

    /// Renews cached tokens ahead of expiry; never finishes (abandon it to stop). Until it is
    /// abandoned, callers are handed a still-valid token whose refresh is due instead of waiting
    /// for the refresh ([`App::set_background_refresh`]).
    pub fn refresher(app: &mut App) -> Self {
        app.set_background_refresh(true);
        Self {
            inner: Inner::Refresher(Refresher::new()),
        }
    }

    /// What to do next (see [`Operation::poll`]).
    pub fn poll(&mut self, app: &mut App, now: Timestamp) -> AnyStep {
        match &mut self.inner {
            Inner::Jwt(op) => plain(op.poll(app, now), Outcome::Jwt, |_| Purpose::Call),
            Inner::Token(op) => plain(op.poll(app, now), Outcome::Token, |request| {
                purpose_of_token_request(request)
            }),
            Inner::Installation(op) => plain(op.poll(app, now), Outcome::Installation, |_| Purpose::Call),
            Inner::Page(op) => plain(op.poll(app, now), Outcome::Page, |_| Purpose::Call),
            Inner::All(op) => plain(op.poll(app, now), Outcome::Installations, |_| Purpose::Call),
            Inner::Create(op) => plain(op.poll(app, now), Outcome::Created, |_| Purpose::Call),
            Inner::SendAs(op) => {
                let step = op.poll(app, now);
                let target = match &step {
                    Step::Send { id, .. } => op.is_target(*id),
                    _ => false,
                };
                plain(
                    step,
                    |response| Outcome::Response(PlainResponse::from_http(response)),
                    |request| {
                        if target {
                            Purpose::Request
                        } else {
                            purpose_of_token_request(request)
                        }
                    },
                )
            }
            Inner::Revoke(op) => plain(op.poll(app, now), |()| Outcome::Nothing, |_| Purpose::Revoke),
            Inner::RevokeAll(op) => plain(op.poll(app, now), Outcome::Count, |_| Purpose::Revoke),
            Inner::Refresher(op) => plain(op.poll(app, now), |()| Outcome::Nothing, purpose_of_token_request),
            Inner::Forget(op) => plain(op.poll(app, now), Outcome::Forgot, |_| Purpose::Revoke),
        }
    }

    /// The response to request `id`, whatever its status, received at `now`.
    pub fn handle_response(&mut self, app: &mut App, id: u64, response: PlainResponse, now: Timestamp) {
        match response.to_http() {
            Ok(response) => each!(&mut self.inner, op => op.handle_response(app, RequestId(id), response, now)),
            // Not an HTTP status: reported as what it is, a broken answer.
            Err(error) => {
                let error = Error::transport(TransportErrorKind::Other, error.to_string());
                each!(&mut self.inner, op => op.handle_failure(app, RequestId(id), error, now))
            }
        }
    }

    /// Request `id` got no response: `kind` says how it failed, `message` what happened (never
    /// a credential).
    pub fn handle_failure(&mut self, app: &mut App, id: u64, kind: TransportErrorKind, message: &str, now: Timestamp) {
        let error = Error::transport(kind, message);
        each!(&mut self.inner, op => op.handle_failure(app, RequestId(id), error, now))
    }

    /// The shared store's reply to command `id`, or why it gave none (any failure makes the
    /// core mint without the store for a while, never an error for the caller).
    pub fn handle_store(&mut self, app: &mut App, id: u64, reply: Result<StoreReply, Error>, now: Timestamp) {
        each!(&mut self.inner, op => op.handle_store(app, RequestId(id), reply, now))
    }

    /// The answer to [`AnyStep::Sign`] `id`: the signature, or the signer's failure as a
    /// message (never a credential); see [`Operation::handle_signature`].
    pub fn handle_signature(&mut self, app: &mut App, id: u64, signature: Result<Vec<u8>, String>, now: Timestamp) {
        let signature = signature.map_err(Error::Signing);
        each!(&mut self.inner, op => op.handle_signature(app, RequestId(id), signature, now))
    }

    /// Leaves the operation before `Done`: it releases what it holds at once. Does nothing
    /// after `Done`.
    pub fn abandon(&mut self, app: &mut App, now: Timestamp) {
        each!(&mut self.inner, op => op.abandon(app, now));
        if matches!(self.inner, Inner::Refresher(_)) {
            app.set_background_refresh(false);
        }
    }
}

/// `step` with plain data: `done` makes the result an [`Outcome`], `purpose` says what a
/// request is for.
fn plain<T>(
    step: Step<T>,
    done: impl FnOnce(T) -> Outcome,
    purpose: impl FnOnce(&Request<Vec<u8>>) -> Purpose,
) -> AnyStep {
    match step {
        Step::Send { id, request } => {
            let purpose = purpose(&request);
            AnyStep::Send {
                id: id.0,
                request: PlainRequest::from_http(request, purpose),
            }
        }
        Step::Store { id, command } => AnyStep::Store { id: id.0, command },
        Step::Sign { id, message } => AnyStep::Sign { id: id.0, message },
        Step::Sleep { until } => AnyStep::Sleep { until },
        Step::Wait { until, change } => AnyStep::Wait { until, change },
        Step::Done(result) => AnyStep::Done(result.map(done)),
    }
}

/// A request the core made to get a token: an organization's lookup or a mint.
fn purpose_of_token_request(request: &Request<Vec<u8>>) -> Purpose {
    let path = request.uri().path();
    if path.contains("/app/organizations/") && path.ends_with("/installation") {
        Purpose::Lookup
    } else {
        Purpose::Mint
    }
}

macro_rules! from_typed {
    ($($variant:ident($ty:ty)),* $(,)?) => {
        $(
            impl From<$ty> for AnyOperation {
                fn from(op: $ty) -> Self {
                    Self { inner: Inner::$variant(op) }
                }
            }
        )*
    };
}

from_typed!(
    Jwt(GetJwt),
    Token(GetToken),
    Installation(Call<Installation>),
    All(ListInstallations),
    Create(Call<CreatedUserOrganization>),
    SendAs(SendAs),
    Revoke(Revoke),
    RevokeAll(RevokeAll),
    Forget(Forget),
);

impl From<Call<InstallationsPage>> for AnyOperation {
    fn from(op: Call<InstallationsPage>) -> Self {
        Self { inner: Inner::Page(op) }
    }
}

impl SendAs {
    /// A [`SendAs`] from plain parts, as [`AnyOperation::send_as`] takes them (for drivers in
    /// other languages, and clients that take a method and a URL as text): `url` is a path
    /// starting with `/` (the standard headers are added) or an absolute URL; `headers` replace
    /// any of the same name; the method, the URL and each header are checked (a value is never
    /// quoted in an error: it may be a credential).
    pub fn plain<N: AsRef<str>, V: AsRef<str>>(
        app: &App,
        scope: TokenScope,
        method: &str,
        url: &str,
        headers: &[(N, V)],
        body: Option<Vec<u8>>,
    ) -> Result<Self, Error> {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| Error::config("request method", "it is not an HTTP method (GET, POST, ...)"))?;
        // A path is a path whatever its query holds (`/x?next=https://...`).
        let mut request = if url.starts_with('/') || !url.contains("://") {
            // Not absolute: a path, which must start with `/` (refused, with that fix, if not).
            app.api().request(method, url, body)?
        } else {
            let mut request = Request::new(body.unwrap_or_default());
            *request.method_mut() = method;
            *request.uri_mut() = url.parse().map_err(|_| {
                Error::config(
                    "request URL",
                    "it is neither a path starting with `/` nor a valid absolute URL",
                )
            })?;
            request
        };
        let mut given = http::HeaderMap::new();
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_ref().as_bytes())
                .map_err(|_| Error::config("request header", "a header name is not valid"))?;
            // The value is never quoted: it may be a credential.
            let value = HeaderValue::from_str(value.as_ref())
                .map_err(|_| Error::config("request header", format!("the value of `{name}` is not valid")))?;
            given.append(name, value);
        }
        // A header given replaces the standard one of its name; repeated, every value is sent.
        for name in given.keys() {
            request.headers_mut().remove(name);
        }
        for (name, value) in &given {
            request.headers_mut().append(name, value.clone());
        }
        Ok(Self::new(scope, request))
    }
}
