//! The seam: one `http::Request<Vec<u8>>` in, one `http::Response<Vec<u8>>` out, over reqwest.

use std::error::Error as _;
use std::fmt::Write as _;
use std::sync::Arc;

use http::{Request, Response};
use icr_app_core::{Error, TransportErrorKind};
use icr_app_core::{Proxies, Route, TransportPolicy};
use icr_app_driver::{ProxySetting, RequestEvent};
use rustls_pki_types::CertificateDer;

/// Sends request descriptions over a [`reqwest::Client`].
///
/// Every response comes back as a response, whatever its status, with every header; the default
/// client follows no redirects (so a token never reaches another host); the body is capped;
/// credentials are not sent over plain `http://` except to loopback addresses unless allowed.
#[derive(Clone, Debug)]
pub struct ReqwestTransport {
    client: reqwest::Client,
    /// Never uses a proxy: for loopback, and for plain `http` without the opt-in.
    direct: Result<reqwest::Client, Error>,
    policy: TransportPolicy,
    /// The proxy of each URL, when this crate built the client (`None` with yours).
    proxies: Option<Proxies>,
    /// The extra trusted CA certificates of this crate's clients.
    extra_roots: Vec<CertificateDer<'static>>,
    /// A proxy variable or CA file of the environment that could not be applied: every send
    /// that may use a proxy fails with it.
    setup: Option<Error>,
}

impl ReqwestTransport {
    /// A client with rustls (ring, Mozilla's roots plus the CA certificates of the file
    /// `SSL_CERT_FILE` names), a 10 s connect timeout, a 30 s overall timeout, no redirects,
    /// and the proxy named by the usual environment variables (`HTTPS_PROXY`, `HTTP_PROXY`,
    /// `ALL_PROXY`, `NO_PROXY`, either case, as [`Proxies`] reads them; see [`send`](Self::send)
    /// for the requests that never use it).
    pub fn new() -> Result<Self, Error> {
        Self::with_policy(TransportPolicy::default())
    }

    /// A client built for `policy` (its timeouts, body cap and plain-http rule), with the
    /// environment's proxy and `SSL_CERT_FILE`.
    ///
    /// A proxy variable or `SSL_CERT_FILE` that cannot be used does not fail this: requests
    /// that may use a proxy fail with an error that names it, while loopback ones work.
    pub fn with_policy(policy: TransportPolicy) -> Result<Self, Error> {
        let built = icr_app_driver::extra_roots(None)
            .and_then(|roots| Self::with_network(policy.clone(), &ProxySetting::Environment, &roots));
        match built {
            Ok(transport) => Ok(transport),
            Err(error) => Self::deferred(policy, error),
        }
    }

    /// A transport whose environment could not be used: `error` for every request that may use
    /// a proxy.
    pub(crate) fn deferred(policy: TransportPolicy, error: Error) -> Result<Self, Error> {
        Ok(Self {
            setup: Some(error),
            ..Self::with_network(policy, &ProxySetting::Disabled, &[])?
        })
    }

    /// A client built for `policy`, using `proxy` (see [`Proxies`] for which requests use it)
    /// and trusting the CA certificates `extra_roots` on top of Mozilla's roots (see
    /// [`icr_app_driver::extra_roots`] to read them from `ca_file` and `SSL_CERT_FILE`). Fails
    /// when a proxy variable of the environment is not a proxy URL, or a certificate is not
    /// one rustls accepts.
    pub fn with_network(
        policy: TransportPolicy,
        proxy: &ProxySetting,
        extra_roots: &[CertificateDer<'static>],
    ) -> Result<Self, Error> {
        let proxies = proxy.proxies()?;
        // reqwest reads the environment itself unless told otherwise: the proxy of each URL is
        // the one `Proxies` chooses, the same rule as every other driver's.
        let mut builder = Self::builder_with_roots(extra_roots)?
            .connect_timeout(policy.connect_timeout)
            .timeout(policy.timeout)
            .no_proxy();
        if proxies.is_enabled() {
            let chooser = proxies.clone();
            builder = builder.proxy(reqwest::Proxy::custom(move |url| {
                let uri = url.as_str().parse::<http::Uri>().ok()?;
                chooser.proxy_for(&uri).map(|p| p.expose_url().to_owned())
            }));
        }
        let client = builder.build().map_err(|e| Error::config("HTTP client", chain(&e)))?;
        Ok(Self {
            client,
            direct: Self::direct_client(&policy, extra_roots),
            policy,
            proxies: Some(proxies),
            extra_roots: extra_roots.to_vec(),
            setup: None,
        })
    }

    /// The proxies this transport chooses from (`None` over your own client).
    pub fn proxies(&self) -> Option<&Proxies> {
        self.proxies.as_ref()
    }

    /// A client that never uses a proxy, for the requests that must not.
    fn direct_client(
        policy: &TransportPolicy,
        extra_roots: &[CertificateDer<'static>],
    ) -> Result<reqwest::Client, Error> {
        Self::builder_with_roots(extra_roots)?
            .connect_timeout(policy.connect_timeout)
            .timeout(policy.timeout)
            .no_proxy()
            .build()
            .map_err(|e| Error::config("HTTP client", chain(&e)))
    }

    /// The `reqwest::ClientBuilder` that [`new`](Self::new) uses: rustls with ring and Mozilla's
    /// roots, timeouts, no redirects. Add your settings (a proxy, more roots) and pass the built
    /// client to [`with_client`](Self::with_client).
    ///
    /// This crate builds reqwest without a default crypto provider (to keep aws-lc out), so a
    /// `reqwest::Client` built from scratch needs either this builder's TLS configuration or a
    /// process-wide provider installed with `rustls::crypto::ring::default_provider().install_default()`.
    pub fn client_builder() -> Result<reqwest::ClientBuilder, Error> {
        Self::builder_with_roots(&[])
    }

    /// [`client_builder`](Self::client_builder) trusting `extra_roots` too.
    fn builder_with_roots(extra_roots: &[CertificateDer<'static>]) -> Result<reqwest::ClientBuilder, Error> {
        let mut roots = rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        };
        for cert in extra_roots {
            roots.add(cert.clone()).map_err(|e| {
                Error::config(
                    "ca_file",
                    format!("a certificate of the CA file is not a CA certificate rustls accepts ({e}): give the PEM of the CA's certificate"),
                )
            })?;
        }
        let tls = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| Error::config("TLS", e.to_string()))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(reqwest::Client::builder()
            .tls_backend_preconfigured(tls)
            .redirect(reqwest::redirect::Policy::none())
            .connect_timeout(icr_app_core::DEFAULT_CONNECT_TIMEOUT)
            .timeout(icr_app_core::DEFAULT_TIMEOUT))
    }

    /// Uses your configured client (proxy, roots, timeouts). Build it with
    /// `redirect(Policy::none())`: reqwest strips `Authorization` on cross-host redirects, but
    /// following none is safer still.
    ///
    /// Requests that must not go through a proxy (see [`send`](Self::send): loopback, and plain
    /// `http`) use a client of this crate's own instead, built from
    /// [`client_builder`](Self::client_builder) without a proxy and with the policy's timeouts:
    /// set those with [`timeout`](Self::timeout) (reqwest cannot tell us your client's).
    pub fn with_client(client: reqwest::Client) -> Self {
        Self {
            client,
            direct: Self::direct_client(&TransportPolicy::default(), &[]),
            policy: TransportPolicy::default(),
            proxies: None,
            extra_roots: Vec::new(),
            setup: None,
        }
    }

    /// Sets the time limit of one exchange (connecting gets the shorter of 10 s and `total`) for
    /// the requests this transport sends with its own client; see [`with_client`](Self::with_client).
    pub fn timeout(mut self, total: std::time::Duration) -> Self {
        let policy = TransportPolicy::with_timeout(total);
        (self.policy.connect_timeout, self.policy.timeout) = (policy.connect_timeout, policy.timeout);
        self.direct = Self::direct_client(&self.policy, &self.extra_roots);
        self
    }

    /// The policy applied to every exchange.
    pub fn policy(&self) -> &TransportPolicy {
        &self.policy
    }

    /// Sets the response body cap (default 8 MiB).
    pub fn max_body(mut self, bytes: u64) -> Self {
        self.policy.max_body = bytes;
        self
    }

    /// Allows credentials over plain `http://` to hosts other than loopback.
    pub fn allow_insecure_http(mut self, allow: bool) -> Self {
        self.policy.allow_insecure_http = allow;
        self
    }

    /// Sends `request` and reads the whole response.
    ///
    /// The core's [`TransportPolicy`] comes first: only `https`, or
    /// `http` to loopback (or with [`allow_insecure_http`](Self::allow_insecure_http)); and
    /// requests to loopback, or over plain `http` without the opt-in, never go through a proxy,
    /// whatever the client or the environment says. Other requests use the proxy [`Proxies`]
    /// chooses for their URL (with [`new`](Self::new) and [`with_network`](Self::with_network)),
    /// or your client's; a failure through a proxy names it (never its credentials).
    pub async fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, Error> {
        let route = self.policy.check(&request)?;
        if let (Some(error), Route::ProxyAllowed) = (&self.setup, route) {
            return Err(error.clone());
        }
        let event = RequestEvent::start(&request);
        let proxy = match (&self.proxies, route) {
            (Some(proxies), Route::ProxyAllowed) => proxies.proxy_for(request.uri()),
            _ => None,
        };
        let result = self.exchange(request, route).await;
        let result = match proxy {
            Some(proxy) => result.map_err(|e| icr_app_driver::through_proxy(e, proxy)),
            None => result,
        };
        event.finish(&result);
        result
    }

    async fn exchange(&self, request: Request<Vec<u8>>, route: Route) -> Result<Response<Vec<u8>>, Error> {
        let client = match route {
            Route::Direct => self.direct.as_ref().map_err(Clone::clone)?,
            Route::ProxyAllowed => &self.client,
        };
        let mut response = client
            .execute(reqwest_request(request)?)
            .await
            .map_err(transport_error)?;
        let mut body = Vec::new();
        while let Some(chunk) = response.chunk().await.map_err(transport_error)? {
            if self.policy.exceeds((body.len() + chunk.len()) as u64) {
                return Err(self.policy.body_too_large());
            }
            body.extend_from_slice(&chunk);
        }
        let mut out = Response::new(body);
        *out.status_mut() = response.status();
        *out.version_mut() = response.version();
        *out.headers_mut() = std::mem::take(response.headers_mut());
        Ok(out)
    }
}

/// `request` as reqwest's: what `reqwest::Request::try_from` makes of it, with its URL
/// written once at its size (reqwest's conversion formats the `Uri` into a string that grows
/// three times on the way). The `http::Request`'s extensions are left behind: reqwest reads
/// only its own from them.
fn reqwest_request(request: Request<Vec<u8>>) -> Result<reqwest::Request, Error> {
    let (parts, body) = request.into_parts();
    let uri = &parts.uri;
    let len = uri.scheme_str().map_or(0, |s| s.len() + "://".len())
        + uri.authority().map_or(0, |a| a.as_str().len())
        + uri.path_and_query().map_or(1, |p| p.as_str().len().max(1));
    let mut url = String::with_capacity(len);
    let invalid = |e: &dyn std::fmt::Display| {
        Error::transport(
            TransportErrorKind::Other,
            format!("the request's URI is not a URL reqwest can send to ({e})"),
        )
    };
    write!(url, "{uri}").map_err(|e| invalid(&e))?;
    let url = reqwest::Url::parse(&url).map_err(|e| invalid(&e))?;
    let mut out = reqwest::Request::new(parts.method, url);
    *out.headers_mut() = parts.headers;
    *out.version_mut() = parts.version;
    *out.body_mut() = Some(body.into());
    Ok(out)
}

/// Maps a reqwest failure onto the core's transport error kinds.
fn transport_error(e: reqwest::Error) -> Error {
    let kind = if e.is_timeout() {
        TransportErrorKind::Timeout
    } else if e.is_connect() {
        TransportErrorKind::Connect
    } else if e.is_body() || e.is_decode() || e.is_request() {
        TransportErrorKind::ConnectionLost
    } else {
        TransportErrorKind::Other
    };
    Error::Transport {
        kind,
        message: chain(&e),
    }
}

/// The error and its causes, joined (reqwest's own message rarely says what broke).
fn chain(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The conversion keeps what reqwest's own makes of a request: method, URL, headers in
    /// their order (a sensitive one still marked), version and body.
    #[test]
    fn a_request_becomes_the_same_reqwest_request() {
        let api = icr_app_core::ApiConfig::new()
            .with_base_url("http://127.0.0.1:8080/prefix")
            .unwrap();
        let jwt = icr_app_core::SecretString::new("eyJ.a.b");
        let id = icr_app_core::InstallationId::new("ü/x").unwrap();
        for request in [
            api.installation_access_token(&jwt, &id).unwrap(),
            api.list_installations(&jwt, 10, 2).unwrap(),
        ] {
            let theirs = reqwest::Request::try_from(request.clone()).unwrap();
            let ours = reqwest_request(request).unwrap();
            assert_eq!(ours.method(), theirs.method());
            assert_eq!(ours.url(), theirs.url());
            assert_eq!(ours.version(), theirs.version());
            let headers = |r: &reqwest::Request| {
                r.headers()
                    .iter()
                    .map(|(k, v)| (k.clone(), v.clone(), v.is_sensitive()))
                    .collect::<Vec<_>>()
            };
            assert_eq!(headers(&ours), headers(&theirs));
            let body = |r: &reqwest::Request| r.body().and_then(|b| b.as_bytes()).map(<[u8]>::to_vec);
            assert_eq!(body(&ours), body(&theirs));
        }
        assert_eq!(
            reqwest_request(api.app_access_token(&jwt).unwrap())
                .unwrap()
                .url()
                .as_str(),
            "http://127.0.0.1:8080/prefix/app/accessTokens"
        );
    }
}
