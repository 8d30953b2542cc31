//! Request descriptions for the ICR API: every documented app endpoint as an
//! `http::Request<Vec<u8>>`, and a way to authorise any other request with a token.
//!
//! One concept a file: the ids that go into paths (`id`), path-segment encoding (`segment`),
//! the request builders (`request`), and where a request may go and how (`target`). This file
//! holds the settings every request starts from, [`ApiConfig`].

mod id;
mod request;
mod segment;
mod target;
#[cfg(test)]
mod tests;

use std::sync::Arc;

use http::Uri;
use http::header::{ACCEPT, HeaderMap, HeaderName, HeaderValue, USER_AGENT};
use http::uri::{Authority, Scheme};

pub use id::{InstallationId, OrganizationId};
pub use request::authorize;
pub(crate) use request::bearer;
pub use segment::encode_segment;
use target::redact_userinfo;
pub use target::{OtherHost, Route, check_transport_security, is_insecure_url, is_loopback_host};

use crate::error::Error;

/// The production API.
pub const DEFAULT_BASE_URL: &str = "https://api.carbonregistry.com";
/// The production API's host.
const DEFAULT_HOST: &str = "api.carbonregistry.com";
/// The API version every request asks for (`x-icr-api-version`).
pub const DEFAULT_API_VERSION: &str = "2023-06-16";
/// The version header's name.
pub const API_VERSION_HEADER: &str = "x-icr-api-version";
/// The `user-agent` this crate sends unless told otherwise.
pub const DEFAULT_USER_AGENT: &str = concat!("icr-app-core/", env!("CARGO_PKG_VERSION"));

/// Where and how to talk to the registry: base URL, API version and user agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ApiConfig {
    base_url: Arc<str>,
    /// The base URL's scheme and authority, parsed once: each request's `Uri` is made of them
    /// and its path, which is all that is parsed per request.
    scheme: Scheme,
    authority: Authority,
    /// Where the base URL's path (empty, or a prefix such as `/v1`) starts in `base_url`.
    path_at: usize,
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
            scheme: Scheme::HTTPS,
            authority: Authority::from_static(DEFAULT_HOST),
            path_at: DEFAULT_BASE_URL.len(),
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
        // The base URL is `scheme://authority` then its path.
        self.path_at = scheme.len() + "://".len() + authority.as_str().len();
        self.scheme = if scheme == "https" { Scheme::HTTPS } else { Scheme::HTTP };
        self.authority = authority.clone();
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
}

fn header_value(what: &'static str, v: &str) -> Result<HeaderValue, Error> {
    if v.is_empty() {
        return Err(Error::config(what, "it is empty"));
    }
    HeaderValue::from_str(v).map_err(|_| Error::config(what, "it contains characters not allowed in an HTTP header"))
}
