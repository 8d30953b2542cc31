//! Request descriptions for the ICR API: every documented app endpoint as an
//! `http::Request<Vec<u8>>`, and a way to authorise any other request with a token.

use std::fmt;
use std::sync::Arc;

use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use http::{Method, Request, Uri};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, percent_decode_str, utf8_percent_encode};

use crate::error::Error;
use crate::models::CreateUserOrganization;
use crate::secret::SecretString;

/// The production API.
pub const DEFAULT_BASE_URL: &str = "https://api.carbonregistry.com";
/// The API version every request asks for (`x-icr-api-version`).
pub const DEFAULT_API_VERSION: &str = "2023-06-16";
/// The version header's name.
pub const API_VERSION_HEADER: &str = "x-icr-api-version";
/// The `user-agent` this crate sends unless told otherwise.
pub const DEFAULT_USER_AGENT: &str = concat!("icr-app-core/", env!("CARGO_PKG_VERSION"));

/// Everything but unreserved characters is escaped in a path segment, so an id can never add a
/// `/`, `?`, `#` or `%` of its own.
const SEGMENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'_').remove(b'.').remove(b'~');

/// An installation id (a UUID in practice), checked so it can go into a URL path.
///
/// Ids of up to 38 bytes (a UUID is 36) are held in place rather than behind a pointer, so a
/// token cache keyed by them compares keys without reading other memory: with a million cached
/// installations that saves a cache miss per lookup (see `BENCHMARKS.md`, scale).
#[derive(Clone, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct InstallationId(IdRepr);

/// Which form is used is decided by the length alone, so two equal ids always have the same form.
#[derive(Clone)]
enum IdRepr {
    Inline { len: u8, bytes: [u8; INLINE_ID] },
    Heap(Arc<str>),
}

/// The longest id held in place; 38 keeps an [`InstallationId`] at 40 bytes.
const INLINE_ID: usize = 38;

impl InstallationId {
    /// Checks an id: not empty, not `.` or `..`, at most 256 characters, no whitespace or control
    /// characters. Anything else is allowed and percent-encoded where it enters a path.
    pub fn new(id: impl Into<String>) -> Result<Self, Error> {
        let id = id.into();
        check_id("installation id", &id)?;
        Ok(Self(match u8::try_from(id.len()) {
            Ok(len) if id.len() <= INLINE_ID => {
                let mut bytes = [0; INLINE_ID];
                bytes[..id.len()].copy_from_slice(id.as_bytes());
                IdRepr::Inline { len, bytes }
            }
            _ => IdRepr::Heap(id.into()),
        }))
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        match &self.0 {
            // Copied from a `str` in `new` and cut at its own length: always valid UTF-8.
            IdRepr::Inline { .. } => std::str::from_utf8(self.as_bytes()).unwrap_or_default(),
            IdRepr::Heap(id) => id,
        }
    }

    /// The id's bytes, without the UTF-8 check `as_str` makes (about 9 ns for a UUID, a third
    /// of a cache hit): what hashing and comparing use.
    pub(crate) fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            IdRepr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            IdRepr::Heap(id) => id.as_bytes(),
        }
    }
}

impl PartialEq for InstallationId {
    fn eq(&self, other: &Self) -> bool {
        match (&self.0, &other.0) {
            // Unused bytes are zero, so comparing the whole buffers is comparing the ids.
            (IdRepr::Inline { len: a, bytes: x }, IdRepr::Inline { len: b, bytes: y }) => a == b && x == y,
            _ => self.as_bytes() == other.as_bytes(),
        }
    }
}

impl Eq for InstallationId {}

impl std::hash::Hash for InstallationId {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        // Exactly what `str`'s `Hash` feeds the hasher.
        state.write(self.as_bytes());
        state.write_u8(0xff);
    }
}

impl PartialOrd for InstallationId {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for InstallationId {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        // `str` orders by bytes too.
        self.as_bytes().cmp(other.as_bytes())
    }
}

impl fmt::Debug for InstallationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("InstallationId").field(&self.as_str()).finish()
    }
}

impl fmt::Display for InstallationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for InstallationId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl From<InstallationId> for String {
    fn from(id: InstallationId) -> String {
        id.as_str().to_owned()
    }
}

/// An organization id (a UUID in practice), checked so it can go into a URL path: by the same
/// rules as an [`InstallationId`].
///
/// An organization keeps its id when it uninstalls and reinstalls an app, while the installation
/// gets a new one: name the organization ([`TokenScope::Organization`](crate::TokenScope)) to act
/// as whatever installation the app has there.
///
/// ```
/// use icr_app_core::OrganizationId;
///
/// let org = OrganizationId::new("3f1c2b9e-7d3f-4c1d-9a0e-5b0f7c1e2a44")?;
/// assert_eq!(org.as_str(), "3f1c2b9e-7d3f-4c1d-9a0e-5b0f7c1e2a44");
/// assert!(OrganizationId::new("two words").is_err());
/// # Ok::<(), icr_app_core::Error>(())
/// ```
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct OrganizationId(
    /// Behind a pointer, so that a [`TokenScope`](crate::TokenScope) naming an organization
    /// takes no more room than one naming an installation (an organization is never a token
    /// cache's key: its installation is).
    Arc<str>,
);

impl OrganizationId {
    /// Checks an id: not empty, not `.` or `..`, at most 256 characters, no whitespace or control
    /// characters. Anything else is allowed and percent-encoded where it enters a path.
    pub fn new(id: impl Into<String>) -> Result<Self, Error> {
        let id = id.into();
        check_id("organization id", &id)?;
        Ok(Self(id.into()))
    }

    /// The id as given.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for OrganizationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("OrganizationId").field(&self.as_str()).finish()
    }
}

impl fmt::Display for OrganizationId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl TryFrom<String> for OrganizationId {
    type Error = Error;
    fn try_from(s: String) -> Result<Self, Error> {
        Self::new(s)
    }
}

impl From<OrganizationId> for String {
    fn from(id: OrganizationId) -> String {
        id.as_str().to_owned()
    }
}

fn check_id(what: &'static str, id: &str) -> Result<(), Error> {
    let problem = if id.is_empty() {
        "it is empty"
    } else if id == "." || id == ".." {
        "`.` and `..` are not ids"
    } else if id.len() > 256 && id.chars().count() > 256 {
        "it is longer than 256 characters"
    } else if !id.bytes().all(|b| b.is_ascii_graphic()) && id.chars().any(|c| c.is_whitespace() || c.is_control()) {
        "it contains whitespace or control characters (remove the spaces or newline around it)"
    } else {
        return Ok(());
    };
    Err(Error::config(
        what,
        format!("{problem}; pass the id exactly as the registry shows it"),
    ))
}

/// Percent-encodes one path segment (an id) so it cannot change the path.
///
/// ```
/// assert_eq!(icr_app_core::api::encode_segment("a/../b?c"), "a%2F..%2Fb%3Fc");
/// ```
pub fn encode_segment(segment: &str) -> String {
    escaped(segment).into_owned()
}

/// `segment` percent-encoded as [`encode_segment`] does, borrowed when nothing needs escaping
/// (a UUID).
fn escaped(segment: &str) -> std::borrow::Cow<'_, str> {
    utf8_percent_encode(segment, SEGMENT).into()
}

/// Where and how to talk to the registry: base URL, API version and user agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiConfig {
    base_url: Arc<str>,
    /// The headers every request carries (`accept`, `x-icr-api-version`, `user-agent`), made
    /// once: each request starts from a copy.
    headers: HeaderMap,
}

impl Default for ApiConfig {
    fn default() -> Self {
        let mut headers = HeaderMap::with_capacity(4);
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        headers.insert(
            HeaderName::from_static(API_VERSION_HEADER),
            HeaderValue::from_static(DEFAULT_API_VERSION),
        );
        headers.insert(USER_AGENT, HeaderValue::from_static(DEFAULT_USER_AGENT));
        Self {
            base_url: DEFAULT_BASE_URL.into(),
            headers,
        }
    }
}

impl ApiConfig {
    /// The production API with the default version.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the base URL: `http` or `https`, a host, an optional path prefix, no query,
    /// fragment or user info. A trailing `/` is dropped.
    pub fn with_base_url(mut self, base_url: &str) -> Result<Self, Error> {
        let trimmed = base_url.trim_end_matches('/');
        let bad = |why: &str| {
            Error::config(
                "base URL",
                format!(
                    "`{}` {why}; use e.g. {DEFAULT_BASE_URL} or http://127.0.0.1:PORT for a local fake registry",
                    crate::redact::excerpt(&redact_userinfo(base_url), 80)
                ),
            )
        };
        let uri: Uri = trimmed.parse().map_err(|_| bad("is not a URL"))?;
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") || s.eq_ignore_ascii_case("https") => s.to_ascii_lowercase(),
            Some(_) => return Err(bad("must start with http:// or https://")),
            None => return Err(bad("has no scheme (http:// or https://)")),
        };
        let Some(authority) = uri.authority() else {
            return Err(bad("has no host"));
        };
        if authority.as_str().contains('@') {
            return Err(bad(
                "must not contain user info (credentials go in the key, not the URL)",
            ));
        }
        if uri.query().is_some() || trimmed.contains('#') {
            return Err(bad("must not have a query or fragment"));
        }
        self.base_url = format!("{scheme}{}", &trimmed[scheme.len()..]).into();
        Ok(self)
    }

    /// Sets `x-icr-api-version` (default `2023-06-16`).
    pub fn with_api_version(mut self, version: &str) -> Result<Self, Error> {
        let version = header_value("API version", version)?;
        self.headers
            .insert(HeaderName::from_static(API_VERSION_HEADER), version);
        Ok(self)
    }

    /// Sets the `user-agent`. Name your app, e.g. `my-app/1.2 icr-app-core/0.1`.
    pub fn with_user_agent(mut self, user_agent: &str) -> Result<Self, Error> {
        let user_agent = header_value("user agent", user_agent)?;
        self.headers.insert(USER_AGENT, user_agent);
        Ok(self)
    }

    /// The base URL without a trailing `/`.
    pub fn base_url(&self) -> &str {
        &self.base_url
    }

    /// The API version sent.
    pub fn api_version(&self) -> &str {
        self.headers
            .get(API_VERSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .unwrap_or(DEFAULT_API_VERSION)
    }

    /// Whether the base URL is plain `http://` to somewhere other than a loopback address.
    pub fn is_insecure(&self) -> bool {
        is_insecure_url(&self.base_url)
    }

    /// Whether `uri` is on the configured registry: the same scheme and host (in any case), the
    /// same port (explicit or the scheme's default), and a path under the base URL's path that
    /// cannot be resolved to another one: no `.` or `..` segment and no slash or backslash inside
    /// a segment, in any percent-encoding (`%2e%2E`, `%2f`, `%5c`, ...). HTTP stacks and proxies
    /// resolve `/v1/../admin` and `/v1/%2e%2e/admin` to `/admin`, outside the base URL.
    pub fn is_registry(&self, uri: &Uri) -> bool {
        let Ok(base) = self.base_url.parse::<Uri>() else {
            return false;
        };
        let same = |a: Option<&str>, b: Option<&str>| match (a, b) {
            (Some(a), Some(b)) => a.eq_ignore_ascii_case(b),
            _ => false,
        };
        if !same(base.scheme_str(), uri.scheme_str()) || !same(base.host(), uri.host()) {
            return false;
        }
        if effective_port(&base) != effective_port(uri) {
            return false;
        }
        let prefix = base.path().trim_end_matches('/');
        let path = uri.path();
        let under =
            prefix.is_empty() || path == prefix || path.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/'));
        under && !is_ambiguous_path(path)
    }

    /// Refuses to authorise `request` unless it is for the configured registry or carries the
    /// [`OtherHost`] opt-in; returns whether it is the registry's (whose `Date` teaches the
    /// clock).
    pub fn check_target<B>(&self, request: &Request<B>) -> Result<bool, Error> {
        if self.is_registry(request.uri()) {
            return Ok(true);
        }
        if request.extensions().get::<OtherHost>().is_some() {
            return Ok(false);
        }
        if is_ambiguous_path(request.uri().path()) {
            return Err(Error::config(
                "request URL",
                "its path has a `.` or `..` segment, or a slash or backslash inside a segment (in any \
                 percent-encoding, e.g. `%2e%2e` or `%2f`), which HTTP stacks and proxies may resolve to a path \
                 outside the base URL, so no token is added to it; write the path without them (percent-encode \
                 ids with encode_segment)",
            ));
        }
        Err(Error::config(
            "request URL",
            format!(
                "it is for {}, not the configured registry {}, so no token is added to it; build it relative to the \
                 base URL (the client's `request` method), or, to send the token to that host on purpose, mark the \
                 request with the OtherHost opt-in (in Rust, insert `icr_app_core::api::OtherHost` into its \
                 extensions)",
                crate::redact::excerpt(
                    &redact_userinfo(&format!(
                        "{}://{}",
                        request.uri().scheme_str().unwrap_or("?"),
                        request.uri().authority().map_or("?", |a| a.as_str())
                    )),
                    80
                ),
                self.base_url
            ),
        ))
    }

    /// A request for `path_and_query` (which must start with `/`) relative to the base URL, with
    /// the standard headers and, when there is a body, `content-type: application/json`.
    pub fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Request<Vec<u8>>, Error> {
        if !path_and_query.starts_with('/') {
            return Err(Error::config(
                "request path",
                format!("`{}` must start with `/`", crate::redact::excerpt(path_and_query, 80)),
            ));
        }
        self.request_to(method, &[path_and_query], body)
    }

    /// A request for the path made of `path` (joined, starting with `/`) relative to the base
    /// URL, with the standard headers: the URL is written once, at its size, and the headers are
    /// a copy of the ones made with the config.
    fn request_to(&self, method: Method, path: &[&str], body: Option<Vec<u8>>) -> Result<Request<Vec<u8>>, Error> {
        let mut url = String::with_capacity(self.base_url.len() + path.iter().map(|p| p.len()).sum::<usize>());
        url.push_str(&self.base_url);
        path.iter().for_each(|p| url.push_str(p));
        let uri = Uri::try_from(url).map_err(|_| {
            Error::config(
                "request path",
                format!(
                    "`{}` is not a valid path; percent-encode ids with encode_segment",
                    crate::redact::excerpt(&path.concat(), 80)
                ),
            )
        })?;
        let mut headers = self.headers.clone();
        if body.is_some() {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        let mut request = Request::new(body.unwrap_or_default());
        *request.method_mut() = method;
        *request.uri_mut() = uri;
        *request.headers_mut() = headers;
        Ok(request)
    }

    /// The mint request for an installation's token (`Some`) or the app's (`None`), with
    /// `bearer` (a value from [`bearer`]) as its `Authorization`.
    pub(crate) fn mint_request(
        &self,
        installation: Option<&InstallationId>,
        bearer: HeaderValue,
    ) -> Result<Request<Vec<u8>>, Error> {
        let body = Some(b"{}".to_vec());
        let mut request = match installation {
            None => self.request_to(Method::POST, &["/app/accessTokens"], body),
            Some(id) => self.request_to(
                Method::POST,
                &["/app/installations/", &escaped(id.as_str()), "/accessTokens"],
                body,
            ),
        }?;
        request.headers_mut().insert(AUTHORIZATION, bearer);
        Ok(request)
    }

    /// `POST /app/accessTokens` (app JWT): mint an app access token.
    pub fn app_access_token(&self, jwt: &SecretString) -> Result<Request<Vec<u8>>, Error> {
        self.mint_request(None, bearer(jwt)?)
    }

    /// `POST /app/installations/{installationId}/accessTokens` (app JWT): mint an installation
    /// access token.
    pub fn installation_access_token(
        &self,
        jwt: &SecretString,
        installation: &InstallationId,
    ) -> Result<Request<Vec<u8>>, Error> {
        self.mint_request(Some(installation), bearer(jwt)?)
    }

    /// `DELETE /app/installations/token`, authorised with the access token to revoke.
    pub fn revoke_token(&self, token: &SecretString) -> Result<Request<Vec<u8>>, Error> {
        self.authorized(Method::DELETE, "/app/installations/token", None, token)
    }

    /// `GET /app/installations?limit=L&page=P` (app JWT): one page of the app's installations.
    pub fn list_installations(&self, jwt: &SecretString, limit: u32, page: u32) -> Result<Request<Vec<u8>>, Error> {
        if limit == 0 {
            return Err(Error::config("page size", "limit must be at least 1"));
        }
        self.authorized(
            Method::GET,
            &format!("/app/installations?limit={limit}&page={page}"),
            None,
            jwt,
        )
    }

    /// `GET /app/installations/{installationId}` (app JWT): one installation.
    pub fn get_installation(
        &self,
        jwt: &SecretString,
        installation: &InstallationId,
    ) -> Result<Request<Vec<u8>>, Error> {
        let path = format!("/app/installations/{}", encode_segment(installation.as_str()));
        self.authorized(Method::GET, &path, None, jwt)
    }

    /// `POST /app/create/user/organization` (app JWT): create a user and an organization with
    /// the app installed.
    pub fn create_user_organization(
        &self,
        jwt: &SecretString,
        body: &CreateUserOrganization,
    ) -> Result<Request<Vec<u8>>, Error> {
        if body.user.email.trim().is_empty()
            || body.organization.full_name.trim().is_empty()
            || body.organization.kind.trim().is_empty()
        {
            return Err(Error::config(
                "new user and organization",
                "user.email, organization.fullName and organization.type are required",
            ));
        }
        let json = serde_json::to_vec(body).map_err(|e| Error::config("new user and organization", e.to_string()))?;
        self.authorized(Method::POST, "/app/create/user/organization", Some(json), jwt)
    }

    /// `GET /app/organizations/{organizationId}/installation` (app JWT): the app's installation
    /// on that organization (a 404 when the app is not installed there).
    pub fn get_organization_installation(
        &self,
        jwt: &SecretString,
        organization: &OrganizationId,
    ) -> Result<Request<Vec<u8>>, Error> {
        let path = format!(
            "/app/organizations/{}/installation",
            encode_segment(organization.as_str())
        );
        self.authorized(Method::GET, &path, None, jwt)
    }

    /// `GET /organizations/{id}` (installation token): the organization.
    pub fn get_organization(&self, token: &SecretString, organization_id: &str) -> Result<Request<Vec<u8>>, Error> {
        check_id("organization id", organization_id)?;
        self.authorized(
            Method::GET,
            &format!("/organizations/{}", encode_segment(organization_id)),
            None,
            token,
        )
    }

    /// Any request relative to the base URL, authorised with `credential`.
    pub fn authorized(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
        credential: &SecretString,
    ) -> Result<Request<Vec<u8>>, Error> {
        let mut request = self.request(method, path_and_query, body)?;
        authorize(&mut request, credential)?;
        Ok(request)
    }
}

/// Sets `Authorization: Bearer <credential>` (marked sensitive, so HTTP stacks that honour it
/// will not log it) on a request built elsewhere, replacing any earlier one.
pub fn authorize<B>(request: &mut Request<B>, credential: &SecretString) -> Result<(), Error> {
    request.headers_mut().insert(AUTHORIZATION, bearer(credential)?);
    Ok(())
}

/// `Bearer <credential>` as an `Authorization` value, marked sensitive.
pub(crate) fn bearer(credential: &SecretString) -> Result<HeaderValue, Error> {
    // Sized exactly: `format!` would grow the string several times for an 800-byte JWT.
    let mut bearer = String::with_capacity(7 + credential.expose().len());
    bearer.push_str("Bearer ");
    bearer.push_str(credential.expose());
    let mut value = HeaderValue::try_from(bearer).map_err(|_| {
        Error::config(
            "token",
            "it contains characters not allowed in an HTTP header; pass the token exactly as issued",
        )
    })?;
    value.set_sensitive(true);
    Ok(value)
}

/// Where a driver may send a request, as [`check_transport_security`] decides.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// Straight to the host, never through a proxy: loopback hosts (a proxy would reach its own
    /// loopback, and would see the request), and plain `http://` the user has not opted into.
    Direct,
    /// Through the HTTP stack's proxy, if it has one: `https://` (the proxy sees only an
    /// encrypted tunnel), or plain `http://` the user opted into with `allow_insecure_http`.
    ProxyAllowed,
}

/// The transport policy every driver applies before every send, and the route it allows.
///
/// - The scheme (compared in any case) must be exactly `https`, or `http`; anything else is
///   refused.
/// - A request that carries credentials (`Authorization`) over plain `http://` to a host other
///   than loopback is refused unless `allow_insecure` is set.
/// - Loopback hosts are always reached directly, and so is plain `http://` without the opt-in:
///   credentials never go through a proxy in clear.
pub fn check_transport_security<B>(request: &Request<B>, allow_insecure: bool) -> Result<Route, Error> {
    let uri = request.uri();
    let refused = |message: String| Error::Transport {
        kind: crate::error::TransportErrorKind::Refused,
        message,
    };
    let scheme = uri.scheme_str().unwrap_or("");
    let http = scheme.eq_ignore_ascii_case("http");
    if !http && !scheme.eq_ignore_ascii_case("https") {
        return Err(refused(format!(
            "refusing to send a request with the scheme `{}`: only https:// (or http:// to loopback, or with allow_insecure_http) is allowed",
            crate::redact::excerpt(scheme, 16)
        )));
    }
    if is_loopback_host(uri.host().unwrap_or("")) {
        return Ok(Route::Direct);
    }
    if !http {
        return Ok(Route::ProxyAllowed);
    }
    if allow_insecure {
        return Ok(Route::ProxyAllowed);
    }
    if request.headers().contains_key(AUTHORIZATION) {
        return Err(refused(format!(
            "refusing to send credentials over plain http:// to {}, where anyone on the network can read them: \
             use https://, or allow it explicitly (allow_insecure_http / --allow-insecure-http) for a trusted network",
            crate::redact::excerpt(uri.host().unwrap_or("?"), 80)
        )));
    }
    Ok(Route::Direct)
}

/// Whether `host` (as in a URI, IPv6 in brackets or not) is `localhost` or a loopback address.
pub fn is_loopback_host(host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    host.eq_ignore_ascii_case("localhost") || host.parse::<core::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Whether `url` is plain `http://` (in any case) to a host other than `localhost` or a loopback
/// address.
pub fn is_insecure_url(url: &str) -> bool {
    let Ok(uri) = url.parse::<Uri>() else { return false };
    uri.scheme_str().is_some_and(|s| s.eq_ignore_ascii_case("http")) && !is_loopback_host(uri.host().unwrap_or(""))
}

/// Whether `path` has a segment that a server, a proxy or an HTTP stack may resolve to another
/// path: `.` or `..` (also before a `;parameter`, which some servers drop), or a `/` or `\`
/// inside the segment, once percent-decoded (up to three times: `%252e` is `%2e` to a server
/// that decodes twice). When unsure, it is ambiguous.
fn is_ambiguous_path(path: &str) -> bool {
    // The common case, without decoding: no escape, no dot, no backslash, no parameter.
    if !path.contains(['%', '.', '\\', ';']) {
        return false;
    }
    path.split('/').any(|segment| {
        let mut decoded = segment.to_owned();
        for _ in 0..3 {
            if !decoded.contains('%') {
                break;
            }
            let next = percent_decode_str(&decoded).decode_utf8_lossy().into_owned();
            if next == decoded {
                break;
            }
            decoded = next;
        }
        let name = decoded.split(';').next().unwrap_or_default();
        name == "." || name == ".." || decoded.contains(['/', '\\'])
    })
}

/// `url` with any user info (`user:password@`) replaced by `***@`, for messages.
pub(crate) fn redact_userinfo(url: &str) -> String {
    let start = url.find("://").map_or(0, |i| i + 3);
    let end = url[start..].find(['/', '?', '#']).map_or(url.len(), |i| start + i);
    match url[start..end].rfind('@') {
        Some(at) => format!("{}***{}", &url[..start], &url[start + at..]),
        None => url.to_owned(),
    }
}

/// The effective port of a URI: its own, or its scheme's default.
fn effective_port(uri: &Uri) -> Option<u16> {
    uri.port_u16().or_else(|| match uri.scheme_str() {
        Some(s) if s.eq_ignore_ascii_case("https") => Some(443),
        Some(s) if s.eq_ignore_ascii_case("http") => Some(80),
        _ => None,
    })
}

/// Marks a request the caller built for a host other than the registry as allowed to carry the
/// app's or an installation's token: insert it into the request's extensions
/// (`request.extensions_mut().insert(OtherHost)`).
///
/// Without it, the clients authorise only requests for the configured registry (same scheme,
/// host, port and base path), so a token never reaches a host by mistake.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct OtherHost;

fn header_value(what: &'static str, v: &str) -> Result<HeaderValue, Error> {
    if v.is_empty() {
        return Err(Error::config(what, "it is empty"));
    }
    HeaderValue::from_str(v).map_err(|_| Error::config(what, "it contains characters not allowed in an HTTP header"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jwt() -> SecretString {
        SecretString::new("eyJ.a.b")
    }

    #[test]
    fn ids_held_in_place_and_on_the_heap_behave_as_their_text() {
        use std::collections::hash_map::DefaultHasher;
        use std::hash::{Hash, Hasher};
        let hash = |id: &InstallationId| {
            let mut h = DefaultHasher::new();
            id.hash(&mut h);
            h.finish()
        };
        // The in-place form stays small enough for a cache slot.
        assert_eq!(std::mem::size_of::<InstallationId>(), 40);
        assert_eq!(std::mem::size_of::<crate::TokenScope>(), 40);
        // Around the boundary between the two forms, and multi-byte characters across it.
        let texts = [
            "a".repeat(37),
            "a".repeat(38),
            "a".repeat(39),
            "b".repeat(38),
            format!("{}é", "a".repeat(36)),
            format!("{}é", "a".repeat(37)),
            "123e4567-e89b-12d3-a456-426614174000".to_owned(),
            "é".repeat(128),
        ];
        for a in &texts {
            let id = InstallationId::new(a.clone()).unwrap();
            assert_eq!(id.as_str(), a);
            assert_eq!(id.to_string(), *a);
            assert_eq!(String::from(id.clone()), *a);
            assert_eq!(format!("{id:?}"), format!("InstallationId({a:?})"));
            let back: InstallationId = serde_json::from_value(serde_json::to_value(&id).unwrap()).unwrap();
            assert_eq!(back, id);
            assert_eq!(hash(&back), hash(&id));
            for b in &texts {
                let other = InstallationId::new(b.clone()).unwrap();
                assert_eq!(id == other, a == b, "{a} vs {b}");
                assert_eq!(id.cmp(&other), a.cmp(b), "{a} vs {b}");
            }
        }
    }

    #[test]
    fn standard_headers_and_paths() {
        let api = ApiConfig::new();
        let id = InstallationId::new("123e4567-e89b-12d3-a456-426614174000").unwrap();
        let r = api.installation_access_token(&jwt(), &id).unwrap();
        assert_eq!(r.method(), Method::POST);
        assert_eq!(
            r.uri().to_string(),
            "https://api.carbonregistry.com/app/installations/123e4567-e89b-12d3-a456-426614174000/accessTokens"
        );
        assert_eq!(r.headers()[ACCEPT], "application/json");
        assert_eq!(r.headers()[API_VERSION_HEADER], "2023-06-16");
        assert_eq!(r.headers()[AUTHORIZATION], "Bearer eyJ.a.b");
        assert!(r.headers()[AUTHORIZATION].is_sensitive());
        assert_eq!(r.headers()[CONTENT_TYPE], "application/json");
        assert!(r.headers()[USER_AGENT].to_str().unwrap().starts_with("icr-app-core/"));
        assert_eq!(r.body(), b"{}");

        let r = api.list_installations(&jwt(), 10, 0).unwrap();
        assert_eq!(
            r.uri().path_and_query().unwrap().as_str(),
            "/app/installations?limit=10&page=0"
        );
        assert!(r.headers().get(CONTENT_TYPE).is_none());
        assert!(r.body().is_empty());

        let r = api.revoke_token(&SecretString::new("crs_abc")).unwrap();
        assert_eq!(r.method(), Method::DELETE);
        assert_eq!(r.uri().path(), "/app/installations/token");
        assert_eq!(r.headers()[AUTHORIZATION], "Bearer crs_abc");

        assert_eq!(api.app_access_token(&jwt()).unwrap().uri().path(), "/app/accessTokens");
        assert_eq!(
            api.get_installation(&jwt(), &id).unwrap().uri().path(),
            format!("/app/installations/{id}")
        );
        let org = OrganizationId::new("3f1c2b9e-7d3f-4c1d-9a0e-5b0f7c1e2a44").unwrap();
        let r = api.get_organization_installation(&jwt(), &org).unwrap();
        assert_eq!(r.method(), Method::GET);
        assert_eq!(
            r.uri().to_string(),
            "https://api.carbonregistry.com/app/organizations/3f1c2b9e-7d3f-4c1d-9a0e-5b0f7c1e2a44/installation"
        );
        assert_eq!(r.headers()[AUTHORIZATION], "Bearer eyJ.a.b");
        assert!(r.body().is_empty());
        let back: OrganizationId = serde_json::from_value(serde_json::to_value(&org).unwrap()).unwrap();
        assert_eq!(
            (back.to_string(), format!("{back:?}")),
            (org.to_string(), format!("OrganizationId({:?})", org.as_str()))
        );
    }

    #[test]
    fn ids_cannot_change_the_path() {
        let api = ApiConfig::new();
        let evil = InstallationId::new("../../organizations/x?y=1#z").unwrap();
        let r = api.get_installation(&jwt(), &evil).unwrap();
        assert_eq!(
            r.uri().path(),
            "/app/installations/..%2F..%2Forganizations%2Fx%3Fy%3D1%23z"
        );
        assert!(r.uri().query().is_none());
        let r = api.installation_access_token(&jwt(), &evil).unwrap();
        assert_eq!(
            r.uri().path(),
            "/app/installations/..%2F..%2Forganizations%2Fx%3Fy%3D1%23z/accessTokens"
        );
        assert!(r.uri().query().is_none());
        assert!(InstallationId::new("..").is_err());
        assert!(InstallationId::new("").is_err());
        assert!(InstallationId::new("a b").is_err());
        assert!(api.get_organization(&jwt(), "").is_err());
        let org = OrganizationId::new("../x?y=1#z").unwrap();
        let r = api.get_organization_installation(&jwt(), &org).unwrap();
        assert_eq!(r.uri().path(), "/app/organizations/..%2Fx%3Fy%3D1%23z/installation");
        assert!(r.uri().query().is_none());
        for bad in ["", ".", "..", "a b", "a\nb"] {
            let e = OrganizationId::new(bad).unwrap_err();
            assert!(e.to_string().contains("organization id"), "{bad:?}: {e}");
        }
        let r = api.get_organization(&jwt(), "ü/x").unwrap();
        assert_eq!(r.uri().path(), "/organizations/%C3%BC%2Fx");
    }

    #[test]
    fn base_url_rules() {
        let api = ApiConfig::new().with_base_url("http://127.0.0.1:8080/prefix/").unwrap();
        assert_eq!(api.base_url(), "http://127.0.0.1:8080/prefix");
        assert_eq!(
            api.app_access_token(&jwt()).unwrap().uri().to_string(),
            "http://127.0.0.1:8080/prefix/app/accessTokens"
        );
        assert!(!api.is_insecure());
        for bad in [
            "",
            "api.carbonregistry.com",
            "ftp://x",
            "https://u:p@x",
            "https://x?q=1",
            "https://x/#f",
            "http://",
        ] {
            assert!(ApiConfig::new().with_base_url(bad).is_err(), "{bad}");
        }
        assert!(
            ApiConfig::new()
                .with_base_url("http://example.com")
                .unwrap()
                .is_insecure()
        );
        assert!(!ApiConfig::new().with_base_url("http://[::1]:9").unwrap().is_insecure());
        assert!(
            !ApiConfig::new()
                .with_base_url("http://localhost:9")
                .unwrap()
                .is_insecure()
        );
        assert!(ApiConfig::new().with_api_version("bad\nversion").is_err());
        let v = ApiConfig::new()
            .with_api_version("2024-01-01")
            .unwrap()
            .with_user_agent("my-app/1.0")
            .unwrap();
        assert_eq!(v.api_version(), "2024-01-01");
        let r = v.app_access_token(&jwt()).unwrap();
        // Replaced, not added beside the defaults.
        assert_eq!(r.headers().get_all(API_VERSION_HEADER).iter().count(), 1);
        assert_eq!(r.headers()[API_VERSION_HEADER], "2024-01-01");
        assert_eq!(r.headers().get_all(USER_AGENT).iter().count(), 1);
        assert_eq!(r.headers()[USER_AGENT], "my-app/1.0");
    }

    #[test]
    fn create_user_organization_body() {
        use crate::models::{NewOrganization, NewUser};
        let body = CreateUserOrganization {
            user: NewUser {
                email: "a@example.com".into(),
                full_name: Some("A".into()),
                profile_picture: None,
            },
            organization: NewOrganization {
                full_name: "Org".into(),
                kind: "marketParticipant".into(),
                country_code: Some("IS".into()),
            },
        };
        let r = ApiConfig::new().create_user_organization(&jwt(), &body).unwrap();
        assert_eq!(r.uri().path(), "/app/create/user/organization");
        let v: serde_json::Value = serde_json::from_slice(r.body()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"user":{"email":"a@example.com","fullName":"A"},"organization":{"fullName":"Org","type":"marketParticipant","countryCode":"IS"}})
        );
        let mut empty = body.clone();
        empty.user.email = " ".into();
        assert!(ApiConfig::new().create_user_organization(&jwt(), &empty).is_err());
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let remote = ApiConfig::new().with_base_url("http://registry.example").unwrap();
        let r = remote.app_access_token(&jwt()).unwrap();
        let e = check_transport_security(&r, false).unwrap_err();
        assert!(e.to_string().contains("allow_insecure_http"), "{e}");
        assert!(check_transport_security(&r, true).is_ok());
        let unauthenticated = remote.request(Method::GET, "/projects", None).unwrap();
        assert!(check_transport_security(&unauthenticated, false).is_ok());
        let local = ApiConfig::new().with_base_url("http://127.0.0.1:1").unwrap();
        assert!(check_transport_security(&local.app_access_token(&jwt()).unwrap(), false).is_ok());
        assert!(check_transport_security(&ApiConfig::new().app_access_token(&jwt()).unwrap(), false).is_ok());
    }

    #[test]
    fn bad_token_characters_are_refused() {
        let mut r = Request::new(());
        assert!(authorize(&mut r, &SecretString::new("a\nb")).is_err());
        let e = ApiConfig::new().request(Method::GET, "projects", None).unwrap_err();
        assert!(e.to_string().contains("must start with"));
    }

    fn with_scheme(scheme: &str, host: &str) -> Request<Vec<u8>> {
        let uri = Uri::builder()
            .scheme(scheme)
            .authority(host)
            .path_and_query("/app/accessTokens")
            .build()
            .unwrap();
        let mut r = Request::builder().uri(uri).body(Vec::new()).unwrap();
        authorize(&mut r, &jwt()).unwrap();
        r
    }

    #[test]
    fn schemes_are_compared_in_any_case_and_only_http_and_https_pass() {
        for scheme in ["HTTP", "Http", "http"] {
            let e = check_transport_security(&with_scheme(scheme, "registry.example"), false).unwrap_err();
            assert!(e.to_string().contains("plain http://"), "{scheme}: {e}");
            assert!(!e.to_string().contains("eyJ"), "{e}");
            assert_eq!(
                check_transport_security(&with_scheme(scheme, "127.0.0.1:8"), false).unwrap(),
                Route::Direct
            );
        }
        for scheme in ["HTTPS", "https"] {
            assert_eq!(
                check_transport_security(&with_scheme(scheme, "registry.example"), false).unwrap(),
                Route::ProxyAllowed
            );
        }
        for scheme in ["ftp", "ws", "file", "httpx"] {
            assert!(
                check_transport_security(&with_scheme(scheme, "127.0.0.1"), true).is_err(),
                "{scheme}"
            );
        }
        assert!(is_insecure_url("HTTP://registry.example/"));
        assert!(!is_insecure_url("HTTP://LOCALHOST:8/"));
        assert!(!is_insecure_url("http://[::1]:8/"));
    }

    #[test]
    fn loopback_and_plain_http_never_go_through_a_proxy() {
        assert_eq!(
            check_transport_security(&with_scheme("https", "localhost:8"), false).unwrap(),
            Route::Direct
        );
        assert_eq!(
            check_transport_security(&with_scheme("http", "[::1]:8"), false).unwrap(),
            Route::Direct
        );
        // Opted in: plain http to a remote host may use the configured proxy.
        assert_eq!(
            check_transport_security(&with_scheme("http", "registry.example"), true).unwrap(),
            Route::ProxyAllowed
        );
        // Not opted in, nothing secret: straight to the host.
        let bare = Request::builder()
            .uri("http://registry.example/projects")
            .body(())
            .unwrap();
        assert_eq!(check_transport_security(&bare, false).unwrap(), Route::Direct);
    }

    #[test]
    fn base_urls_accept_any_case_and_never_echo_user_info() {
        let api = ApiConfig::new()
            .with_base_url("HTTPS://api.carbonregistry.com/")
            .unwrap();
        assert_eq!(api.base_url(), "https://api.carbonregistry.com");
        let e = ApiConfig::new()
            .with_base_url("https://user:hunter2secret@api.example")
            .unwrap_err();
        assert!(!e.to_string().contains("hunter2"), "{e}");
        assert_eq!(redact_userinfo("https://u:p@h:1/x@y"), "https://***@h:1/x@y");
        assert_eq!(redact_userinfo("https://h/x@y"), "https://h/x@y");
    }

    #[test]
    fn only_the_registry_gets_tokens_unless_the_caller_opts_in() {
        let api = ApiConfig::new().with_base_url("https://api.example/v0.5").unwrap();
        let ok = |u: &str| api.is_registry(&u.parse().unwrap());
        assert!(ok("https://api.example/v0.5/projects"));
        assert!(ok("HTTPS://API.EXAMPLE:443/v0.5"));
        assert!(
            !ok("https://api.example/v0.55/projects"),
            "a sibling path is not under the base"
        );
        assert!(!ok("https://api.example/projects"));
        assert!(!ok("http://api.example/v0.5/projects"), "scheme");
        assert!(!ok("https://api.example:8443/v0.5/projects"), "port");
        assert!(!ok("https://evil.example/v0.5/projects"), "host");
        assert!(!ok("https://api.example.evil.example/v0.5/projects"));
        let mut elsewhere = Request::builder().uri("https://evil.example/x").body(()).unwrap();
        let e = api.check_target(&elsewhere).unwrap_err();
        assert!(
            matches!(e, Error::Config { .. }) && e.to_string().contains("evil.example"),
            "{e}"
        );
        elsewhere.extensions_mut().insert(OtherHost);
        assert!(!api.check_target(&elsewhere).unwrap());
        let mine = api.request(Method::GET, "/projects", None).unwrap();
        assert!(api.check_target(&mine).unwrap());
    }

    #[test]
    fn a_path_that_may_resolve_outside_the_base_is_not_the_registrys() {
        let api = ApiConfig::new().with_base_url("https://api.example/v1").unwrap();
        let ok = |u: &str| api.is_registry(&u.parse().unwrap());
        for path in [
            "/v1/../admin",
            "/v1/./../admin",
            "/v1/%2e%2e/admin",
            "/v1/%2E%2E/admin",
            "/v1/%2e%2E/admin",
            "/v1/.%2e/admin",
            "/v1/%2e./admin",
            "/v1/%2e/projects",
            "/v1/projects/..",
            "/v1/projects/%2e%2e",
            "/v1/..;/admin",
            "/v1/%2e%2e;x=1/admin",
            "/v1/%252e%252e/admin",
            "/v1/%2F../admin",
            "/v1/..%2fadmin",
            "/v1/..%2Fadmin",
            "/v1/x%2fy",
            "/v1/..%5cadmin",
            "/v1/..%5Cadmin",
            "/v1/.",
        ] {
            let uri = format!("https://api.example{path}");
            assert!(!ok(&uri), "{path}");
            let request = Request::builder().uri(&uri).body(()).unwrap();
            let e = api.check_target(&request).unwrap_err();
            assert!(
                e.to_string().contains("`..`") && e.to_string().contains("no token is added"),
                "{path}: {e}"
            );
        }
        // Dots inside a segment, and encoded characters other than slashes, are fine.
        for path in [
            "/v1/projects",
            "/v1/v0.5/x",
            "/v1/a..b",
            "/v1/...",
            "/v1/.well-known",
            "/v1/organizations/%C3%BC",
            "/v1/x%20y",
            "/v1/projects?next=../admin",
        ] {
            assert!(ok(&format!("https://api.example{path}")), "{path}");
        }
        // The base without a path: the same rule.
        let root = ApiConfig::new().with_base_url("https://api.example").unwrap();
        assert!(root.is_registry(&"https://api.example/projects".parse().unwrap()));
        assert!(!root.is_registry(&"https://api.example/x/%2e%2e/admin".parse().unwrap()));
    }
}
