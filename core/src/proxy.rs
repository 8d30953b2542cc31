//! [`ProxyEnv`]: whether an HTTP client the SDK does not control may send a request through a
//! proxy named in the environment, so that no credential goes through a proxy in clear.

use core::net::IpAddr;

use http::Uri;

use crate::api::Route;
use crate::error::{Error, TransportErrorKind};
use crate::transport::TransportPolicy;

/// The proxy variables of the environment, as a driver read them (the core reads no
/// environment): which of them name a proxy, and the `NO_PROXY` list.
///
/// It answers one question for a middleware that adds a token to a request the user's own HTTP
/// client will send: may that client send this request through a proxy? It follows the rules of
/// reqwest (hyper-util), curl and httpx, which pick the proxy by the target's scheme, and is
/// conservative where they differ or where it cannot tell:
///
/// - `http://` targets: `HTTP_PROXY`, `http_proxy`, `ALL_PROXY`, `all_proxy`; `https://`:
///   `HTTPS_PROXY`, `https_proxy`, `ALL_PROXY`, `all_proxy`. Any of them set to a non-empty value
///   counts, whether or not the client could parse it, and whatever `REQUEST_METHOD` says
///   (reqwest ignores the proxies of a CGI process; counting them is the safe side).
/// - `NO_PROXY` (or, when it is not set at all, `no_proxy`) is a comma-separated list; a target
///   whose host is an IP address goes direct when an entry is that address (`127.0.0.1`,
///   `::1`); a target whose host is a name, when an entry is `*` or a domain the host is or
///   ends in (`example.com` and `.example.com` both cover `example.com` and `api.example.com`),
///   in any case. Entries the clients do not all honour never count: `*` for an IP address
///   (reqwest matches an IP host against the IP entries only, so `NO_PROXY=*` still proxies
///   `http://127.0.0.1`), a port (`127.0.0.1:8080`: reqwest ignores ports), a CIDR range, a
///   `*.` wildcard, an IPv6 address in brackets.
///
/// The values of the proxy variables are never kept (they may hold a password); only which are
/// set.
///
/// ```
/// use icr_app_core::ProxyEnv;
///
/// let vars = [("HTTP_PROXY", "http://proxy.corp:3128"), ("NO_PROXY", "localhost,.internal")];
/// let env = ProxyEnv::from_lookup(|name| {
///     vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
/// });
/// assert!(env.may_proxy(&"http://127.0.0.1:8080/v1".parse()?));
/// assert!(!env.may_proxy(&"http://localhost:8080/v1".parse()?));
/// assert!(!env.may_proxy(&"http://registry.internal/v1".parse()?));
/// // A driver passes the process's environment:
/// let env = ProxyEnv::from_lookup(|name| std::env::var(name).ok());
/// # let _ = env;
/// # Ok::<(), http::uri::InvalidUri>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ProxyEnv {
    /// The variables set that name a proxy for `http://` targets (names only).
    http: Vec<&'static str>,
    /// The same for `https://` targets.
    https: Vec<&'static str>,
    /// `NO_PROXY`, or `no_proxy` when `NO_PROXY` is not set.
    no_proxy: Option<String>,
}

/// The variables naming a proxy for `http://` targets.
const HTTP_VARIABLES: [&str; 4] = ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"];
/// The variables naming a proxy for `https://` targets.
const HTTPS_VARIABLES: [&str; 4] = ["HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"];

impl ProxyEnv {
    /// Every variable read: the proxies and the exceptions.
    pub const VARIABLES: [&'static str; 8] = [
        "HTTP_PROXY",
        "http_proxy",
        "HTTPS_PROXY",
        "https_proxy",
        "ALL_PROXY",
        "all_proxy",
        "NO_PROXY",
        "no_proxy",
    ];

    /// Reads the variables through `var` (a name to its value, `None` when not set), e.g.
    /// `|name| std::env::var(name).ok()` in a driver.
    pub fn from_lookup(mut var: impl FnMut(&str) -> Option<String>) -> Self {
        let mut set = |names: [&'static str; 4]| {
            names
                .into_iter()
                .filter(|name| var(name).is_some_and(|value| !value.is_empty()))
                .collect::<Vec<_>>()
        };
        let http = set(HTTP_VARIABLES);
        let https = set(HTTPS_VARIABLES);
        let no_proxy = var("NO_PROXY").or_else(|| var("no_proxy"));
        Self { http, https, no_proxy }
    }

    /// Whether a client that honours these variables may send a request for `uri` through a
    /// proxy (see the type's docs for the rules). A scheme other than `http` or `https` has no
    /// proxy variable.
    pub fn may_proxy(&self, uri: &Uri) -> bool {
        let proxies = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => &self.http,
            Some(s) if s.eq_ignore_ascii_case("https") => &self.https,
            _ => return false,
        };
        !proxies.is_empty() && !self.excepted(uri.host().unwrap_or(""))
    }

    /// The variables that name a proxy for `uri`'s scheme, for messages.
    fn names_for(&self, uri: &Uri) -> &[&'static str] {
        match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => &self.https,
            _ => &self.http,
        }
    }

    /// Whether `NO_PROXY` sends `host` (as in a URI) direct.
    fn excepted(&self, host: &str) -> bool {
        let Some(list) = &self.no_proxy else { return false };
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let ip = bare.parse::<IpAddr>().ok();
        list.split(',').map(str::trim).filter(|e| !e.is_empty()).any(|entry| {
            if entry == "*" {
                return ip.is_none();
            }
            match ip {
                Some(ip) => entry.parse::<IpAddr>().is_ok_and(|e| e == ip),
                None => {
                    let domain = entry.strip_prefix('.').unwrap_or(entry);
                    if domain.is_empty() || domain.contains([':', '*', '/', '[']) {
                        return false;
                    }
                    let (host, domain) = (host.to_ascii_lowercase(), domain.to_ascii_lowercase());
                    host == domain || host.ends_with(&format!(".{domain}"))
                }
            }
        })
    }
}

impl TransportPolicy {
    /// [`check_credential_target`](Self::check_credential_target) for a request an HTTP client
    /// the SDK does not control will send (a middleware's): also refuses to add a credential to
    /// a plain `http://` request that the client may send through a proxy named in `env`,
    /// where the proxy would read it in clear. Only with
    /// [`allow_insecure_http`](Self::allow_insecure_http) may plain `http` go through a proxy,
    /// as the SDK's own requests may ([`Route::ProxyAllowed`]). `https` may always: a proxy
    /// sees only the encrypted tunnel.
    ///
    /// A proxy configured in code on that client cannot be seen here: the caller must rule it
    /// out another way (ureq: switch the agent's proxy off for the request).
    pub fn check_credential_target_with_proxies(&self, uri: &Uri, env: &ProxyEnv) -> Result<Route, Error> {
        let route = self.check_credential_target(uri)?;
        let http = uri.scheme_str().is_some_and(|s| s.eq_ignore_ascii_case("http"));
        if route == Route::Direct && http && env.may_proxy(uri) {
            let host = crate::redact::excerpt(uri.host().unwrap_or("?"), 80);
            return Err(Error::Transport {
                kind: TransportErrorKind::Refused,
                message: format!(
                    "refusing to add a token to a plain http:// request for {host}: your HTTP client may send it through \
                     the proxy that {} names, which would read the token in clear; add the host to NO_PROXY (e.g. \
                     NO_PROXY={host}), use an https:// registry, or unset the proxy variables",
                    env.names_for(uri).join(", ")
                ),
            });
        }
        Ok(route)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> ProxyEnv {
        ProxyEnv::from_lookup(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned()))
    }

    fn proxied(env: &ProxyEnv, url: &str) -> bool {
        env.may_proxy(&url.parse().unwrap())
    }

    #[test]
    fn the_scheme_picks_the_variables() {
        for var in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"] {
            let e = env(&[(var, "http://p:1")]);
            assert!(proxied(&e, "http://127.0.0.1:8/x"), "{var}");
            assert!(proxied(&e, "HTTP://localhost/x"), "{var}");
        }
        for var in ["HTTPS_PROXY", "https_proxy"] {
            let e = env(&[(var, "http://p:1")]);
            assert!(!proxied(&e, "http://127.0.0.1:8/x"), "{var}");
            assert!(proxied(&e, "https://127.0.0.1:8/x"), "{var}");
        }
        assert!(proxied(&env(&[("ALL_PROXY", "socks5://p:1")]), "https://h/x"));
        // Empty is unset; anything else counts, even what a client could not parse.
        assert!(!proxied(&env(&[("HTTP_PROXY", "")]), "http://h/x"));
        assert!(proxied(&env(&[("HTTP_PROXY", " ")]), "http://h/x"));
        assert!(!proxied(&ProxyEnv::default(), "http://h/x"));
        assert!(!proxied(&env(&[("HTTP_PROXY", "http://p:1")]), "ftp://h/x"));
    }

    #[test]
    fn no_proxy_as_the_clients_honour_it() {
        let with = |no: &str| env(&[("HTTP_PROXY", "http://p:1"), ("NO_PROXY", no)]);
        let direct = |no: &str, url: &str| !proxied(&with(no), url);
        assert!(direct("*", "http://anything.example/x"));
        assert!(direct("a, *", "http://localhost:8/x"));
        // reqwest matches an IP host against IP entries only: `*` does not cover it.
        assert!(!direct("*", "http://127.0.0.1:8/x"));
        assert!(!direct("*", "http://[::1]:8/x"));
        assert!(direct("127.0.0.1", "http://127.0.0.1:8080/x"));
        assert!(direct(" 127.0.0.1 ,x", "http://127.0.0.1:8080/x"));
        assert!(direct("::1", "http://[::1]:8080/x"));
        assert!(direct("0:0:0:0:0:0:0:1", "http://[::1]:8080/x"));
        assert!(direct("localhost", "http://LOCALHOST:8080/x"));
        assert!(direct("LocalHost", "http://localhost:8080/x"));
        assert!(direct("example.com", "http://example.com/x"));
        assert!(direct("example.com", "http://api.Example.com/x"));
        assert!(direct(".example.com", "http://api.example.com/x"));
        assert!(direct(".example.com", "http://example.com/x"));
        // Not covered: another host, a suffix that is not a domain, and the forms some clients
        // ignore (a port, a CIDR range, a `*.` wildcard, an IPv6 address in brackets).
        assert!(!direct("127.0.0.2", "http://127.0.0.1:8080/x"));
        assert!(!direct("localhost", "http://127.0.0.1:8080/x"));
        assert!(!direct("127.0.0.1", "http://localhost:8080/x"));
        assert!(!direct("ample.com", "http://example.com/x"));
        assert!(!direct("example.com", "http://example.com.evil/x"));
        assert!(!direct("127.0.0.1:8080", "http://127.0.0.1:8080/x"));
        assert!(!direct("localhost:8080", "http://localhost:8080/x"));
        assert!(!direct("127.0.0.0/8", "http://127.0.0.1:8080/x"));
        assert!(!direct("*.example.com", "http://api.example.com/x"));
        assert!(!direct("[::1]", "http://[::1]:8080/x"));
        assert!(!direct("", "http://127.0.0.1:8080/x"));
        assert!(!direct(".", "http://127.0.0.1:8080/x"));
        assert!(!direct(",,", "http://h/x"));
        // `NO_PROXY` wins over `no_proxy`, even empty, as both clients read them.
        let e = env(&[("HTTP_PROXY", "http://p:1"), ("NO_PROXY", ""), ("no_proxy", "*")]);
        assert!(proxied(&e, "http://h/x"));
        let e = env(&[("HTTP_PROXY", "http://p:1"), ("no_proxy", "h")]);
        assert!(!proxied(&e, "http://h/x"));
    }

    #[test]
    fn a_credential_never_goes_to_a_proxy_in_clear() {
        let policy = TransportPolicy::default();
        let proxies = env(&[("http_proxy", "http://user:hunter2@p:1")]);
        let uri: Uri = "http://127.0.0.1:8080/v1/projects".parse().unwrap();
        let e = policy.check_credential_target_with_proxies(&uri, &proxies).unwrap_err();
        let text = e.to_string();
        assert!(
            matches!(
                e,
                Error::Transport {
                    kind: TransportErrorKind::Refused,
                    ..
                }
            ),
            "{e:?}"
        );
        for part in ["http_proxy", "NO_PROXY=127.0.0.1", "https://", "nothing was sent"] {
            assert!(text.contains(part), "{part}: {text}");
        }
        assert!(
            !text.contains("hunter2") && !format!("{proxies:?}").contains("hunter2"),
            "{text}"
        );
        // Excepted by NO_PROXY, or no proxy: direct.
        let excepted = env(&[("http_proxy", "http://p:1"), ("no_proxy", "127.0.0.1")]);
        assert_eq!(
            policy.check_credential_target_with_proxies(&uri, &excepted).unwrap(),
            Route::Direct
        );
        assert_eq!(
            policy
                .check_credential_target_with_proxies(&uri, &ProxyEnv::default())
                .unwrap(),
            Route::Direct
        );
        // https may use a proxy: it sees only the tunnel.
        let tls: Uri = "https://127.0.0.1:8443/v1".parse().unwrap();
        let all = env(&[("ALL_PROXY", "http://p:1")]);
        assert!(policy.check_credential_target_with_proxies(&tls, &all).is_ok());
        let remote: Uri = "https://api.example/v1".parse().unwrap();
        assert_eq!(
            policy.check_credential_target_with_proxies(&remote, &all).unwrap(),
            Route::ProxyAllowed
        );
        // Plain http to a remote host: refused without the opt-in whatever the proxies; with it,
        // the SDK's own rule (it may use a proxy).
        let plain: Uri = "http://registry.example/v1".parse().unwrap();
        assert!(
            policy
                .check_credential_target_with_proxies(&plain, &ProxyEnv::default())
                .is_err()
        );
        let opted = TransportPolicy {
            allow_insecure_http: true,
            ..TransportPolicy::default()
        };
        assert_eq!(
            opted.check_credential_target_with_proxies(&plain, &all).unwrap(),
            Route::ProxyAllowed
        );
    }
}
