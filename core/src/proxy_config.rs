//! [`Proxies`]: which proxy, if any, the SDK's own clients use for a URL, decided once for every
//! driver (the Rust clients, the CLI, the Python package) from an explicit setting and the
//! environment's values, which the driver reads and passes in (the core reads no environment).

use core::fmt;
use core::net::IpAddr;

use http::Uri;

use crate::api::is_loopback_host;
use crate::error::Error;

/// A proxy's URL (`http://host:port`, `https://host:port`, with optional `user:password@`).
///
/// Its credentials are never printed: [`Display`](fmt::Display) and [`Debug`](fmt::Debug) show
/// `scheme://host:port` only; [`expose_url`](Self::expose_url) gives the whole URL to the HTTP
/// stack that needs it.
#[derive(Clone, PartialEq, Eq)]
pub struct ProxyUrl {
    /// The whole URL, credentials included (never printed).
    url: String,
    /// `http` or `https`, lowercase.
    scheme: &'static str,
    /// The host as in a URI (an IPv6 address in brackets).
    host: String,
    port: u16,
    credentials: bool,
}

impl ProxyUrl {
    /// Parses `url`, e.g. `http://proxy.corp:3128` or `http://user:pass@proxy.corp:3128`. A URL
    /// without a scheme is `http://`; without a port, 80 for `http` and 443 for `https`. Only
    /// `http` and `https` proxies are supported (an HTTP `CONNECT` tunnel for `https://`
    /// registries).
    pub fn parse(url: &str) -> Result<Self, Error> {
        Self::parse_from(url, "proxy")
    }

    /// `parse`, naming `setting` (the variable or flag it came from) in errors.
    pub fn parse_from(url: &str, setting: &'static str) -> Result<Self, Error> {
        let trimmed = url.trim();
        let with_scheme = if trimmed.contains("://") {
            trimmed.to_owned()
        } else {
            format!("http://{trimmed}")
        };
        let bad = |why: &str| {
            Error::config(
                setting,
                format!(
                    "the proxy URL `{}` {why}: give it as http://host:port (or http://user:password@host:port, or https:// for a proxy spoken to over TLS)",
                    crate::redact::excerpt(&redacted_text(trimmed), 80)
                ),
            )
        };
        if trimmed.is_empty() {
            return Err(bad("is empty"));
        }
        let uri: Uri = with_scheme.parse().map_err(|_| bad("is not a URL"))?;
        let scheme = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("http") => "http",
            Some(s) if s.eq_ignore_ascii_case("https") => "https",
            _ => {
                return Err(bad(
                    "has a scheme other than http:// or https:// (SOCKS proxies are not supported)",
                ));
            }
        };
        let authority = uri.authority().ok_or_else(|| bad("has no host"))?;
        let host = authority.host();
        if host.is_empty() {
            return Err(bad("has no host"));
        }
        if !matches!(uri.path(), "" | "/") || uri.query().is_some() {
            return Err(bad("has a path"));
        }
        let port = authority.port_u16().unwrap_or(if scheme == "https" { 443 } else { 80 });
        Ok(Self {
            credentials: authority.as_str().contains('@'),
            url: with_scheme,
            scheme,
            host: host.to_owned(),
            port,
        })
    }

    /// The whole URL, credentials included, for the HTTP stack. Never print it.
    pub fn expose_url(&self) -> &str {
        &self.url
    }

    /// `http` or `https` (how the client speaks to the proxy).
    pub fn scheme(&self) -> &str {
        self.scheme
    }

    /// The proxy's host (an IPv6 address in brackets).
    pub fn host(&self) -> &str {
        &self.host
    }

    /// The proxy's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Whether the URL carries credentials (`user:password@`).
    pub fn has_credentials(&self) -> bool {
        self.credentials
    }
}

impl fmt::Display for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

impl fmt::Debug for ProxyUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let credentials = if self.credentials { "(credentials) " } else { "" };
        write!(f, "ProxyUrl({credentials}{self})")
    }
}

/// `text` with anything between `://` and the last `@` of its authority replaced by `***`.
fn redacted_text(text: &str) -> String {
    let start = text.find("://").map_or(0, |i| i + 3);
    let end = text[start..].find(['/', '?', '#']).map_or(text.len(), |i| start + i);
    match text[start..end].rfind('@') {
        Some(at) => format!("{}***@{}", &text[..start], &text[start + at + 1..]),
        None => text.to_owned(),
    }
}

/// Where a proxy setting came from, for messages.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProxySource {
    /// Set in code or on the command line (`proxy(url)`, `proxy=`, `--proxy`, `ICR_PROXY`).
    Explicit,
    /// The environment variable of that name.
    Env(&'static str),
}

impl fmt::Display for ProxySource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Explicit => f.write_str("the proxy setting"),
            Self::Env(name) => f.write_str(name),
        }
    }
}

/// Which proxy the SDK's own HTTP clients use for each URL: the one rule of every driver.
///
/// - An explicit proxy (`proxy(url)`, `proxy=`, `--proxy`, `ICR_PROXY`) serves `http://` and
///   `https://` URLs alike; [`Proxies::disabled`] uses none.
/// - Otherwise the environment, read as curl reads it (the lowercase name first): `https://`
///   URLs use `https_proxy`, `HTTPS_PROXY`, then `all_proxy`, `ALL_PROXY`; `http://` URLs
///   `http_proxy`, `HTTP_PROXY`, then `all_proxy`, `ALL_PROXY`. Empty values are unset.
/// - `no_proxy` (or `NO_PROXY`) is honoured with an explicit proxy too: a comma- or
///   space-separated list of `*` (everything), host names (which also cover their
///   subdomains; a leading `.` or `*.` is ignored), IP addresses, CIDR ranges (`10.0.0.0/8`),
///   each optionally with `:port` (then only that port).
/// - Loopback hosts (`localhost`, `127.0.0.0/8`, `::1`) never use a proxy.
///
/// The core reads no environment: a driver passes the variables' values
/// ([`from_lookup`](Self::from_lookup)). Debug output never shows proxy credentials.
///
/// ```
/// use icr_app_core::Proxies;
///
/// let vars = [("HTTPS_PROXY", "http://user:secret@proxy.corp:3128"), ("NO_PROXY", ".internal")];
/// let proxies = Proxies::from_lookup(|name| {
///     vars.iter().find(|(n, _)| *n == name).map(|(_, v)| v.to_string())
/// })?;
/// let proxy = proxies.proxy_for(&"https://api.carbonregistry.com/app".parse()?).unwrap();
/// assert_eq!(proxy.to_string(), "http://proxy.corp:3128");
/// assert!(!format!("{proxies:?}").contains("secret"));
/// assert!(proxies.proxy_for(&"https://registry.internal/x".parse()?).is_none());
/// assert!(proxies.proxy_for(&"https://127.0.0.1:8443/x".parse()?).is_none());
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Proxies {
    http: Option<(ProxySource, ProxyUrl)>,
    https: Option<(ProxySource, ProxyUrl)>,
    no_proxy: Option<String>,
}

/// The variables of the environment [`Proxies::from_lookup`] reads, in the order it reads them.
pub const PROXY_VARIABLES: [&str; 8] = [
    "https_proxy",
    "HTTPS_PROXY",
    "http_proxy",
    "HTTP_PROXY",
    "all_proxy",
    "ALL_PROXY",
    "no_proxy",
    "NO_PROXY",
];

impl Proxies {
    /// No proxy for any URL (the environment ignored).
    pub fn disabled() -> Self {
        Self::default()
    }

    /// The environment's proxies. `var` returns a variable's value (`|name|
    /// std::env::var(name).ok()` in a driver). A variable that does not hold a proxy URL is an
    /// error naming it.
    pub fn from_lookup(mut var: impl FnMut(&str) -> Option<String>) -> Result<Self, Error> {
        let mut value = |name: &'static str| var(name).filter(|v| !v.trim().is_empty()).map(|v| (name, v));
        let all = value("all_proxy").or_else(|| value("ALL_PROXY"));
        let https = value("https_proxy")
            .or_else(|| value("HTTPS_PROXY"))
            .or_else(|| all.clone());
        let http = value("http_proxy").or_else(|| value("HTTP_PROXY")).or(all);
        let no_proxy = var("no_proxy").or_else(|| var("NO_PROXY"));
        let parse = |found: Option<(&'static str, String)>| -> Result<_, Error> {
            found
                .map(|(name, url)| Ok((ProxySource::Env(name), ProxyUrl::parse_from(&url, name)?)))
                .transpose()
        };
        Ok(Self {
            http: parse(http)?,
            https: parse(https)?,
            no_proxy,
        })
    }

    /// `proxy` for every URL (but loopback hosts and those `NO_PROXY` of `self` names), in
    /// place of the environment's proxies.
    pub fn with_explicit(self, proxy: ProxyUrl) -> Self {
        Self {
            http: Some((ProxySource::Explicit, proxy.clone())),
            https: Some((ProxySource::Explicit, proxy)),
            no_proxy: self.no_proxy,
        }
    }

    /// The proxy for `uri`, or `None` to connect directly (see the type's rules).
    pub fn proxy_for(&self, uri: &Uri) -> Option<&ProxyUrl> {
        self.chosen(uri).map(|(_, p)| p)
    }

    /// The proxy for `uri` and where it was set.
    pub fn chosen(&self, uri: &Uri) -> Option<&(ProxySource, ProxyUrl)> {
        let chosen = match uri.scheme_str() {
            Some(s) if s.eq_ignore_ascii_case("https") => self.https.as_ref(),
            Some(s) if s.eq_ignore_ascii_case("http") => self.http.as_ref(),
            _ => None,
        }?;
        let host = uri.host().unwrap_or("");
        if is_loopback_host(host) {
            return None;
        }
        let https = uri.scheme_str().is_some_and(|s| s.eq_ignore_ascii_case("https"));
        let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
        match &self.no_proxy {
            Some(list) if no_proxy_matches(list, host, port) => None,
            _ => Some(chosen),
        }
    }

    /// The proxy for URLs of `scheme` (`http` or `https`) that neither `NO_PROXY` nor the
    /// loopback rule sends direct.
    pub fn for_scheme(&self, scheme: &str) -> Option<&ProxyUrl> {
        match scheme {
            s if s.eq_ignore_ascii_case("https") => self.https.as_ref().map(|(_, p)| p),
            s if s.eq_ignore_ascii_case("http") => self.http.as_ref().map(|(_, p)| p),
            _ => None,
        }
    }

    /// Whether any proxy is configured (for some URL).
    pub fn is_enabled(&self) -> bool {
        self.http.is_some() || self.https.is_some()
    }

    /// The proxy the SDK's requests to the registry at `base_url` use, after the rule that no
    /// credential crosses a proxy in clear: a plain `http://` registry (not loopback) that
    /// would be reached through a proxy is refused unless `allow_insecure_http` (the proxy
    /// would read the JWT and the tokens). An `https://` registry goes through the proxy's
    /// `CONNECT` tunnel, TLS end to end.
    pub fn for_registry(&self, base_url: &str, allow_insecure_http: bool) -> Result<Option<&ProxyUrl>, Error> {
        let Ok(uri) = base_url.parse::<Uri>() else {
            return Ok(None);
        };
        let Some((source, proxy)) = self.chosen(&uri) else {
            return Ok(None);
        };
        if uri.scheme_str().is_some_and(|s| s.eq_ignore_ascii_case("http")) && !allow_insecure_http {
            let host = crate::redact::excerpt(uri.host().unwrap_or("?"), 80);
            return Err(Error::config(
                "proxy",
                format!(
                    "the registry http://{host} is plain http:// and would be reached through the proxy {proxy} (from {source}), \
                     which would read the app's JWT and tokens in clear: use an https:// registry (the proxy then sees only a \
                     CONNECT tunnel), add {host} to NO_PROXY to connect directly, or allow insecure HTTP \
                     (allow_insecure_http; allowInsecureHttp in Node; --allow-insecure-http on the command line) on a network you trust"
                ),
            ));
        }
        Ok(Some(proxy))
    }
}

/// Whether the `NO_PROXY` list `list` names `host` (as in a URI) on `port` (see [`Proxies`]).
pub fn no_proxy_matches(list: &str, host: &str, port: u16) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    let ip = host.parse::<IpAddr>().ok();
    list.split([',', ' ', '\t', '\n'])
        .map(str::trim)
        .filter(|e| !e.is_empty())
        .any(|entry| {
            if entry == "*" {
                return true;
            }
            let (name, entry_port) = split_port(entry);
            if entry_port.is_some_and(|p| p != port) {
                return false;
            }
            let name = name.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
            if let Some(ip) = ip {
                if let Some((net, bits)) = name.split_once('/') {
                    return cidr_contains(net, bits, ip);
                }
                return name.parse::<IpAddr>().is_ok_and(|e| e == ip);
            }
            let domain = name
                .trim_start_matches("*.")
                .trim_start_matches('.')
                .trim_end_matches('.');
            !domain.is_empty() && (host == domain || host.strip_suffix(domain).is_some_and(|rest| rest.ends_with('.')))
        })
}

/// `host:port` → (`host`, port); an IPv6 address without brackets has no port.
fn split_port(entry: &str) -> (&str, Option<u16>) {
    if let Some((addr, after)) = entry.strip_prefix('[').and_then(|rest| rest.split_once(']')) {
        return (addr, after.strip_prefix(':').and_then(|p| p.parse().ok()));
    }
    match entry.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') => match port.parse() {
            Ok(port) => (name, Some(port)),
            Err(_) => (entry, None),
        },
        _ => (entry, None),
    }
}

fn cidr_contains(net: &str, bits: &str, ip: IpAddr) -> bool {
    let (Ok(net), Ok(bits)) = (net.parse::<IpAddr>(), bits.parse::<u32>()) else {
        return false;
    };
    match (net, ip) {
        (IpAddr::V4(net), IpAddr::V4(ip)) if bits <= 32 => {
            let mask = u32::MAX.checked_shl(32 - bits).unwrap_or(0);
            u32::from(net) & mask == u32::from(ip) & mask
        }
        (IpAddr::V6(net), IpAddr::V6(ip)) if bits <= 128 => {
            let mask = u128::MAX.checked_shl(128 - bits).unwrap_or(0);
            u128::from(net) & mask == u128::from(ip) & mask
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Proxies {
        Proxies::from_lookup(|name| vars.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned())).unwrap()
    }

    fn via(p: &Proxies, url: &str) -> Option<String> {
        p.proxy_for(&url.parse().unwrap()).map(ToString::to_string)
    }

    #[test]
    fn lowercase_first_and_by_scheme() {
        let p = env(&[
            ("HTTPS_PROXY", "http://upper:1"),
            ("https_proxy", "http://lower:2"),
            ("ALL_PROXY", "all:3"),
        ]);
        assert_eq!(via(&p, "https://h/x").as_deref(), Some("http://lower:2"));
        assert_eq!(via(&p, "http://h/x").as_deref(), Some("http://all:3"));
        let p = env(&[("HTTP_PROXY", "http://h1:1")]);
        assert_eq!(via(&p, "https://h/x"), None);
        assert_eq!(via(&p, "http://h/x").as_deref(), Some("http://h1:1"));
        let p = env(&[
            ("all_proxy", "http://a:1"),
            ("ALL_PROXY", "http://b:1"),
            ("HTTPS_PROXY", ""),
        ]);
        assert_eq!(via(&p, "https://h/x").as_deref(), Some("http://a:1"));
        assert_eq!(via(&env(&[]), "https://h/x"), None);
    }

    #[test]
    fn loopback_and_no_proxy_go_direct() {
        let p = env(&[
            ("HTTPS_PROXY", "http://p:1"),
            ("no_proxy", "internal.corp, 10.0.0.0/8,exact.host:8443"),
        ]);
        for direct in [
            "https://127.0.0.1:9/x",
            "https://localhost/x",
            "https://[::1]:4/x",
            "https://internal.corp/x",
            "https://a.b.internal.corp/x",
            "https://10.1.2.3/x",
            "https://exact.host:8443/x",
        ] {
            assert_eq!(via(&p, direct), None, "{direct}");
        }
        for proxied in [
            "https://notinternal.corp/x",
            "https://11.0.0.1/x",
            "https://exact.host/x",
            "https://internal.corp.evil/x",
        ] {
            assert!(via(&p, proxied).is_some(), "{proxied}");
        }
        assert_eq!(
            via(&env(&[("HTTPS_PROXY", "http://p:1"), ("NO_PROXY", "*")]), "https://h/x"),
            None
        );
        assert_eq!(
            via(
                &env(&[("HTTPS_PROXY", "http://p:1"), ("NO_PROXY", ".h.test")]),
                "https://h.test/x"
            ),
            None
        );
        // `no_proxy` wins over `NO_PROXY`, and applies to an explicit proxy too.
        let p = env(&[("no_proxy", "a.test"), ("NO_PROXY", "b.test")]).with_explicit(ProxyUrl::parse("p:8").unwrap());
        assert_eq!(via(&p, "https://a.test/x"), None);
        assert_eq!(via(&p, "https://b.test/x").as_deref(), Some("http://p:8"));
        assert_eq!(via(&p, "http://c.test/x").as_deref(), Some("http://p:8"));
    }

    #[test]
    fn credentials_never_printed() {
        let url = "http://user:s3cret@proxy.corp:3128";
        let proxy = ProxyUrl::parse(url).unwrap();
        assert_eq!(proxy.expose_url(), url);
        assert!(proxy.has_credentials());
        assert_eq!(proxy.to_string(), "http://proxy.corp:3128");
        let p = env(&[("HTTPS_PROXY", url)]);
        assert!(!format!("{p:?}").contains("s3cret"));
        let e = ProxyUrl::parse("ftp://user:s3cret@proxy:1").unwrap_err().to_string();
        assert!(!e.contains("s3cret") && e.contains("***@proxy:1"), "{e}");
        let e = Proxies::from_lookup(|n| (n == "HTTPS_PROXY").then(|| "socks5://u:s3cret@h:1".to_owned())).unwrap_err();
        assert!(
            e.to_string().contains("HTTPS_PROXY") && !e.to_string().contains("s3cret"),
            "{e}"
        );
        assert_eq!(ProxyUrl::parse("https://p").unwrap().port(), 443);
    }

    #[test]
    fn plain_http_registry_behind_a_proxy_is_refused() {
        let p = env(&[("HTTP_PROXY", "http://u:pw@p:1")]);
        let e = p.for_registry("http://registry.corp", false).unwrap_err().to_string();
        assert!(
            e.contains("http://p:1") && e.contains("HTTP_PROXY") && e.contains("https://") && !e.contains("pw"),
            "{e}"
        );
        assert!(p.for_registry("http://registry.corp", true).unwrap().is_some());
        assert!(p.for_registry("http://127.0.0.1:8", false).unwrap().is_none());
        assert!(p.for_registry("https://registry.corp", false).unwrap().is_none());
    }
}
