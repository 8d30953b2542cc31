//! The seam: one `http::Request<Vec<u8>>` in, one `http::Response<Vec<u8>>` out, over ureq.

use std::io;
use std::net::SocketAddr;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use http::{Request, Response};
use icr_app_core::{Error, TransportErrorKind};
use icr_app_core::{Route, TransportPolicy};
use icr_app_driver::RequestEvent;
use ureq::Agent;
use ureq::RequestExt as _;
use ureq::config::Config;
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
}

impl std::fmt::Debug for UreqTransport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UreqTransport")
            .field("policy", &self.policy)
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
    /// ([`with_timeout`](Self::with_timeout) sets another), and the proxy named by the usual
    /// environment variables (`HTTPS_PROXY`, `ALL_PROXY`, `NO_PROXY`; see [`send`](Self::send)
    /// for the requests that never use it).
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

    /// An agent built for `policy` (its timeouts, body cap and plain-http rule).
    pub fn with_policy(policy: TransportPolicy) -> Self {
        let config = Agent::config_builder()
            .timeout_connect(Some(policy.connect_timeout))
            .timeout_global(Some(policy.timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .build();
        let agent = Agent::with_parts(config, DefaultConnector::new(), CachingResolver::default());
        Self {
            policy,
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
        }
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
    /// whatever the agent or the environment says.
    pub fn send(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, Error> {
        let route = self.policy.check(&request)?;
        let event = RequestEvent::start(&request);
        let result = self.exchange(request, route == Route::Direct);
        event.finish(&result);
        result
    }

    fn exchange(&self, request: Request<Vec<u8>>, direct: bool) -> Result<Response<Vec<u8>>, Error> {
        let bypass_proxy = direct && self.agent.config().proxy().is_some();
        let response = if self.override_per_request || bypass_proxy {
            let config = request
                .with_agent(&self.agent)
                .configure()
                .http_status_as_error(false)
                .max_redirects(0);
            if bypass_proxy { config.proxy(None) } else { config }.run()
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

/// Maps a ureq failure onto the core's transport error kinds.
pub(crate) fn transport_error(e: ureq::Error) -> Error {
    let kind = match &e {
        ureq::Error::Timeout(_) => TransportErrorKind::Timeout,
        ureq::Error::HostNotFound | ureq::Error::ConnectionFailed | ureq::Error::Tls(_) | ureq::Error::Rustls(_) => {
            TransportErrorKind::Connect
        }
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
