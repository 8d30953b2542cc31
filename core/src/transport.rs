//! [`TransportPolicy`]: the one transport safety policy every driver applies.

use std::time::Duration;

use http::Request;

use crate::api::{Route, check_transport_security};
use crate::error::{Error, TransportErrorKind};

/// The default cap on a response body: 8 MiB.
pub const DEFAULT_MAX_BODY: u64 = 8 * 1024 * 1024;
/// The default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The default time limit for a whole request and its response.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

/// What a driver must enforce on every exchange, whatever its HTTP stack:
///
/// - before sending, [`check`](Self::check): only `https`, or `http` to loopback (or with
///   `allow_insecure_http`), and the [`Route`]: loopback and plain `http` never through a proxy;
/// - redirects are never followed (a 3xx is handed to the operation as a response), so a
///   credential never reaches another host;
/// - every exchange ends within `timeout` (and connecting within `connect_timeout`);
/// - a response body over `max_body` bytes is refused ([`body_too_large`](Self::body_too_large)),
///   read incrementally so the cap also bounds memory.
///
/// ```
/// use icr_app_core::{ApiConfig, Route, SecretString, TransportPolicy};
///
/// let local = ApiConfig::new().with_base_url("http://127.0.0.1:8080")?;
/// let request = local.app_access_token(&SecretString::new("eyJ.x.y"))?;
/// assert_eq!(TransportPolicy::default().check(&request)?, Route::Direct);
/// # Ok::<(), icr_app_core::Error>(())
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportPolicy {
    /// Allow credentials over plain `http://` to hosts other than loopback. Default `false`.
    pub allow_insecure_http: bool,
    /// The largest response body accepted. Default 8 MiB.
    pub max_body: u64,
    /// The longest connecting may take. Default 10 s.
    pub connect_timeout: Duration,
    /// The longest one request and its whole response may take. Default 30 s.
    pub timeout: Duration,
}

impl Default for TransportPolicy {
    fn default() -> Self {
        Self {
            allow_insecure_http: false,
            max_body: DEFAULT_MAX_BODY,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            timeout: DEFAULT_TIMEOUT,
        }
    }
}

impl TransportPolicy {
    /// The defaults with `total` as the time limit of an exchange (connecting gets the shorter of
    /// 10 s and `total`).
    pub fn with_timeout(total: Duration) -> Self {
        Self {
            connect_timeout: DEFAULT_CONNECT_TIMEOUT.min(total),
            timeout: total,
            ..Self::default()
        }
    }

    /// Whether `request` may be sent, and by which [`Route`]; see
    /// [`check_transport_security`].
    pub fn check<B>(&self, request: &Request<B>) -> Result<Route, Error> {
        check_transport_security(request, self.allow_insecure_http)
    }

    /// Whether a credential may be sent to `uri` (for a middleware that adds one to requests
    /// it did not build): the same rule as [`check`](Self::check) for a request that carries
    /// `Authorization`.
    pub fn check_credential_target(&self, uri: &http::Uri) -> Result<Route, Error> {
        let mut probe = Request::new(());
        *probe.uri_mut() = uri.clone();
        // A placeholder, never sent: the rule asks only whether a credential would go.
        probe
            .headers_mut()
            .insert(http::header::AUTHORIZATION, http::HeaderValue::from_static("Bearer"));
        self.check(&probe)
    }

    /// Whether a body of `len` bytes (so far) is over the cap.
    pub fn exceeds(&self, len: u64) -> bool {
        len > self.max_body
    }

    /// The error for a body over the cap.
    pub fn body_too_large(&self) -> Error {
        Error::Transport {
            kind: TransportErrorKind::BodyTooLarge,
            message: format!("the response body exceeds {} bytes", self.max_body),
        }
    }
}
