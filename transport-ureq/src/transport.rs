//! The seam: one `http::Request<Vec<u8>>` in, one `http::Response<Vec<u8>>` out, over ureq.

use std::io;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::{Request, Response};
use icr_app_core::{Error, TransportErrorKind};
use icr_app_core::{Proxies, ProxyUrl, Route, TransportPolicy};
use icr_app_driver::{ProxySetting, RequestEvent};
use rustls_pki_types::CertificateDer;
use ureq::Agent;
use ureq::RequestExt as _;
use ureq::config::Config;
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::unversioned::resolver::{DefaultResolver, ResolvedSocketAddrs, Resolver};
use ureq::unversioned::transport::{DefaultConnector, NextTimeout};

/// Sends request descriptions over a [`ureq::Agent`].
///
/// Every response comes back as a response, whatever its status; every header is kept (the
/// `Date` header teaches the core the server's clock); redirects are never followed (so a
/// token never reaches another host); the body is capped; credentials are not sent over plain
/// `http://` except to loopback addresses unless allowed.
#[derive(Clone)]
pub struct UreqTransport {
    agent: Agent,
    /// The agent turns statuses into errors or follows redirects: correct that per request
    /// (which costs a copy of the agent's configuration each time).
    override_per_request: bool,
    policy: TransportPolicy,
    /// The proxy of each URL, when this crate configured the agent (`None` with your agent,
    /// whose own proxy is used).
    proxies: Option<Proxies>,
    /// The proxy the agent is configured with (a request that needs another one, or none,
    /// says so per request).
    agent_proxy: Option<ProxyUrl>,
    /// A proxy variable or CA file of the environment that could not be applied: every send
    /// that may use a proxy fails with it.
    setup: Option<Error>,
}

impl std::fmt::Debug for UreqTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UreqTransport")
            .field("policy", &self.policy)
            .field("proxies", &self.proxies)
            .finish_non_exhaustive()
    }
}

impl Default for UreqTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl UreqTransport {
    /// An agent with rustls, a 10 s connect timeout and a 30 s overall timeout
    /// ([`with_timeout`](Self::with_timeout) sets another), the proxy named by the usual
    /// environment variables (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, `NO_PROXY`, either case,
    /// as [`Proxies`] reads them; see [`send`](Self::send) for the requests that never use it),
    /// and Mozilla's roots plus the CA certificates of the file `SSL_CERT_FILE` names.
    /// [`with_network`](Self::with_network) sets another proxy and more CA certificates.
    ///
    /// Its resolver answers IP-literal hosts without a lookup and remembers a name's addresses
    /// for [`RESOLVE_CACHE_TTL`]: ureq resolves the host before every request, even one that
    /// reuses a pooled connection, and with a timeout set its default resolver does so on a new
    /// thread each time (about 0.1 to 0.25 ms a request on loopback; see BENCHMARKS.md).
    pub fn new() -> Self {
        Self::with_policy(TransportPolicy::default())
    }

    /// Like [`new`](Self::new), with `total` as the longest one request and its response may
    /// take (the connect timeout is the shorter of 10 s and `total`).
    pub fn with_timeout(total: Duration) -> Self {
        Self::with_policy(TransportPolicy::with_timeout(total))
    }

    /// An agent built for `policy` (its timeouts, body cap and plain-http rule), with the
    /// environment's proxy and `SSL_CERT_FILE`. A proxy variable or CA file that is not valid
    /// makes every request fail with an error that names it (use
    /// [`with_network`](Self::with_network) to see it at once).
    pub fn with_policy(policy: TransportPolicy) -> Self {
        let roots = icr_app_driver::extra_roots(None);
        let built = roots.and_then(|roots| Self::with_network(policy.clone(), &ProxySetting::Environment, &roots));
        built.unwrap_or_else(|error| Self::deferred(policy, error))
    }

    /// A transport whose environment (a proxy variable, `SSL_CERT_FILE`) could not be used:
    /// requests that may use a proxy fail with `error`; those that go direct (loopback) work.
    pub(crate) fn deferred(policy: TransportPolicy, error: Error) -> Self {
        Self {
            setup: Some(error),
            ..Self::build(policy, Some(Proxies::disabled()), None, Vec::new())
        }
    }

    /// An agent built for `policy`, using `proxy` (see [`Proxies`] for which requests use
    /// it) and trusting the CA certificates `extra_roots` on top of Mozilla's roots (see
    /// [`icr_app_driver::extra_roots`] to read them from `ca_file` and `SSL_CERT_FILE`). Fails
    /// when a proxy variable of the environment is not a proxy URL.
    pub fn with_network(
        policy: TransportPolicy,
        proxy: &ProxySetting,
        extra_roots: &[CertificateDer<'static>],
    ) -> Result<Self, Error> {
        let proxies = proxy.proxies()?;
        let agent_proxy = proxies.for_scheme("https").cloned();
        Ok(Self::build(policy, Some(proxies), agent_proxy, extra_roots.to_vec()))
    }

    fn build(
        policy: TransportPolicy,
        proxies: Option<Proxies>,
        agent_proxy: Option<ProxyUrl>,
        extra_roots: Vec<CertificateDer<'static>>,
    ) -> Self {
        let mut tls = TlsConfig::builder();
        if !extra_roots.is_empty() {
            // ureq takes either its own roots or a list: the list is Mozilla's (the same ones
            // ureq uses by default) and the extra ones.
            let certs = webpki_root_certs::TLS_SERVER_ROOT_CERTS
                .iter()
                .chain(&extra_roots)
                .map(|der| Certificate::from_der(der.as_ref()).to_owned());
            tls = tls.root_certs(RootCerts::from(certs));
        }
        let config = Agent::config_builder()
            .timeout_connect(Some(policy.connect_timeout))
            .timeout_global(Some(policy.timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .tls_config(tls.build())
            .proxy(agent_proxy.as_ref().and_then(|p| ureq::Proxy::new(p.expose_url()).ok()))
            .build();
        let agent = Agent::with_parts(config, DefaultConnector::new(), CachingResolver::default());
        Self {
            policy,
            proxies,
            agent_proxy,
            ..Self::with_agent(agent)
        }
    }

    /// Uses your configured agent (proxy, TLS roots, and its own timeouts). Per request, non-2xx
    /// statuses are still returned as responses, redirects are still not followed, the body cap
    /// applies, and the agent's proxy is bypassed where [`send`](Self::send) says.
    pub fn with_agent(agent: Agent) -> Self {
        let config = agent.config();
        let override_per_request = config.http_status_as_error() || config.max_redirects() != 0;
        Self {
            agent,
            override_per_request,
            policy: TransportPolicy::default(),
            proxies: None,
            agent_proxy: None,
            setup: None,
        }
    }

    /// The proxies this transport chooses from (`None` over your own agent).
    pub fn proxies(&self) -> Option<&Proxies> {
        self.proxies.as_ref()
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
    /// whatever the agent or the environment says. Other requests use the proxy [`Proxies`]
    /// chooses for their URL (with [`new`](Self::new) and [`with_network`](Self::with_network)),
    /// or your agent's; a failure through a proxy names it (never its credentials).
    pub fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, Error> {
        let route = self.policy.check(&request)?;
        if let (Some(error), Route::ProxyAllowed) = (&self.setup, route) {
            return Err(error.clone());
        }
        let event = RequestEvent::start(&request);
        let proxy = match (&self.proxies, route) {
            (_, Route::Direct) => None,
            (Some(proxies), Route::ProxyAllowed) => proxies.proxy_for(request.uri()),
            (None, Route::ProxyAllowed) => self.agent_proxy.as_ref(),
        };
        // Sent direct, a connection that failed names the host (a name only a proxy resolves,
        // with `NO_PROXY` naming it, fails here).
        let uri = request.uri().clone();
        let result = self.exchange(request, route == Route::Direct, proxy);
        let result = match proxy {
            Some(proxy) => result.map_err(|e| icr_app_driver::through_proxy(e, proxy)),
            None => result.map_err(|e| naming_host(e, &uri)),
        };
        event.finish(&result);
        result
    }

    fn exchange(
        &self,
        request: Request<Vec<u8>>,
        direct: bool,
        proxy: Option<&ProxyUrl>,
    ) -> Result<Response<Vec<u8>>, Error> {
        // Over our agent, a request whose proxy is not the agent's says which; over yours,
        // only the direct ones bypass its proxy.
        let other_proxy = self.proxies.is_some() && proxy != self.agent_proxy.as_ref();
        let bypass_proxy = direct && self.agent.config().proxy().is_some();
        let response = if self.override_per_request || bypass_proxy || other_proxy {
            let config = request
                .with_agent(&self.agent)
                .configure()
                .http_status_as_error(false)
                .max_redirects(0);
            if bypass_proxy || other_proxy {
                let proxy = match proxy {
                    Some(p) => Some(ureq::Proxy::new(p.expose_url()).map_err(transport_error)?),
                    None => None,
                };
                config.proxy(proxy)
            } else {
                config
            }
            .run()
        } else {
            self.agent.run(request)
        }
        .map_err(transport_error)?;
        let (parts, mut body) = response.into_parts();
        let bytes = body
            .with_config()
            .limit(self.policy.max_body)
            .read_to_vec()
            .map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => self.policy.body_too_large(),
                other => transport_error(other),
            })?;
        Ok(Response::from_parts(parts, bytes))
    }
}

/// How long [`UreqTransport::new`]'s resolver re-uses a name's addresses.
pub const RESOLVE_CACHE_TTL: Duration = Duration::from_secs(10);

/// IP literals are answered directly; a name's last successful lookup is re-used for
/// [`RESOLVE_CACHE_TTL`] (the SDK talks to one host); anything else goes to ureq's resolver.
#[derive(Debug, Default)]
struct CachingResolver {
    inner: DefaultResolver,
    last: Mutex<Option<(String, Instant, ResolvedSocketAddrs)>>,
}

impl Resolver for CachingResolver {
    fn resolve(
        &self,
        uri: &http::Uri,
        config: &Config,
        timeout: NextTimeout,
    ) -> Result<ResolvedSocketAddrs, ureq::Error> {
        let (Some(scheme), Some(authority)) = (uri.scheme(), uri.authority()) else {
            return self.inner.resolve(uri, config, timeout);
        };
        let Some(host_port) = DefaultResolver::host_and_port(scheme, authority) else {
            return self.inner.resolve(uri, config, timeout);
        };
        if let Ok(addr) = host_port.parse::<SocketAddr>() {
            let mut out = self.empty();
            out.push(addr);
            return Ok(out);
        }
        let now = Instant::now();
        if let Some((name, at, addrs)) = &*self.last.lock().unwrap_or_else(PoisonError::into_inner)
            && *name == host_port
            && now.saturating_duration_since(*at) < RESOLVE_CACHE_TTL
        {
            return Ok(addrs.clone());
        }
        let addrs = self.inner.resolve(uri, config, timeout)?;
        *self.last.lock().unwrap_or_else(PoisonError::into_inner) = Some((host_port, now, addrs.clone()));
        Ok(addrs)
    }
}

/// A connection failure (`TransportErrorKind::Connect`) of a request to `uri`, sent direct,
/// naming the host and port it could not reach, as ureq's message does not.
fn naming_host(error: Error, uri: &http::Uri) -> Error {
    let Error::Transport {
        kind: TransportErrorKind::Connect,
        message,
    } = error
    else {
        return error;
    };
    let host = uri.host().unwrap_or_default();
    let port = uri
        .port_u16()
        .unwrap_or(if uri.scheme_str() == Some("http") { 80 } else { 443 });
    Error::Transport {
        kind: TransportErrorKind::Connect,
        message: format!("{message} (connecting to {host}:{port})"),
    }
}

/// Maps a ureq failure onto the core's transport error kinds.
pub(crate) fn transport_error(e: ureq::Error) -> Error {
    let kind = match &e {
        ureq::Error::Timeout(_) => TransportErrorKind::Timeout,
        ureq::Error::HostNotFound
        | ureq::Error::ConnectionFailed
        | ureq::Error::Tls(_)
        | ureq::Error::Rustls(_)
        | ureq::Error::ConnectProxyFailed(_)
        | ureq::Error::InvalidProxyUrl => TransportErrorKind::Connect,
        ureq::Error::BodyExceedsLimit(_) => TransportErrorKind::BodyTooLarge,
        ureq::Error::Io(io) => match io.kind() {
            io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => TransportErrorKind::Timeout,
            io::ErrorKind::ConnectionReset
            | io::ErrorKind::ConnectionAborted
            | io::ErrorKind::BrokenPipe
            | io::ErrorKind::UnexpectedEof
            | io::ErrorKind::NotConnected => TransportErrorKind::ConnectionLost,
            // Refused, unreachable, and the uncategorised errors of name resolution
            // ("failed to lookup address information"): the connection was never made, so
            // the base URL, the network or the proxy is what to check.
            _ => TransportErrorKind::Connect,
        },
        ureq::Error::Protocol(_) => TransportErrorKind::ConnectionLost,
        _ => TransportErrorKind::Other,
    };
    Error::Transport {
        kind,
        message: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use icr_app_core::{Error, TransportErrorKind};

    use super::UreqTransport;

    /// Sent direct, a connection that fails names the host and port (a port just freed).
    #[test]
    fn a_direct_connection_failure_names_the_host() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let request = http::Request::get(format!("http://{closed}/app/installations"))
            .body(Vec::new())
            .unwrap();
        let error = UreqTransport::new().send(request).unwrap_err();
        let Error::Transport { kind, message } = &error else {
            panic!("not a transport error: {error:?}");
        };
        assert_eq!(*kind, TransportErrorKind::Connect, "{message}");
        assert!(message.ends_with(&format!("(connecting to {closed})")), "{message}");
    }
}
