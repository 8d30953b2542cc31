//! Where a request may go: the registry or another host ([`ApiConfig::is_registry`],
//! [`ApiConfig::check_target`], [`OtherHost`]), and the transport security every driver applies
//! before a send ([`check_transport_security`], [`Route`]).

use http::header::AUTHORIZATION;
use http::{Request, Uri};
use percent_encoding::percent_decode_str;

use super::ApiConfig;
use crate::error::Error;

impl ApiConfig {
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
             use https://, or allow it explicitly (allow_insecure_http; allowInsecureHttp in Node; --allow-insecure-http on the command line) for a trusted network",
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
