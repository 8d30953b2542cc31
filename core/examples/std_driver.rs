//! Drives the core with the standard library alone (HTTP/1.1 over `TcpStream`, `thread::sleep`,
//! `SystemTime::now`): mints an installation token, prints `{"token", "expiresAt", "permissions"}`
//! on one line. Flags and environment as `ureq_installation_token`: `--base-url http://HOST:PORT
//! --app-id ID --private-key PATH_OR_PEM --installation ID`, or `ICR_BASE_URL`, `ICR_APP_ID`, ...
//!
//! A demonstration of the seam for plain-`http://` loopback registries (the testkit's), not a
//! client for production: no TLS (`https://` is refused), no proxy, no redirects, no chunked
//! bodies (read by `Content-Length`, else to the end), one connection per request, the policy's
//! timeout per read, not per exchange. Errors go to stderr, with exit status 1.

use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::time::SystemTime;

use http::{Request, Response};
use icr_app_core::{App, AppKey, DEFAULT_BASE_URL, Error, GetToken, InstallationId, Operation, Step};
use icr_app_core::{Timestamp, TokenScope, TransportErrorKind as Kind, TransportPolicy, excerpt};

const USAGE: &str = "usage: std_driver [--base-url URL] --app-id ID --private-key PATH|PEM --installation ID
Each flag falls back to ICR_BASE_URL, ICR_APP_ID, ICR_PRIVATE_KEY and ICR_INSTALLATION_ID.";
const SETTINGS: [(&str, &str, &str); 4] = [
    ("--base-url", "ICR_BASE_URL", "base URL"),
    ("--app-id", "ICR_APP_ID", "app id"),
    ("--private-key", "ICR_PRIVATE_KEY", "private key"),
    ("--installation", "ICR_INSTALLATION_ID", "installation id"),
];

fn main() -> std::process::ExitCode {
    let help = std::env::args().any(|a| a == "--help" || a == "-h");
    let result = if help { Ok(USAGE.to_owned()) } else { run() };
    match &result {
        Ok(out) => println!("{out}"),
        Err(e) => eprintln!("error: {e}"),
    }
    std::process::ExitCode::from(u8::from(result.is_err()))
}

/// The one driving loop. Single-threaded: nothing moves `app.changes()` while a wait lasts, so a
/// wait is a sleep; the only way out is `Done`: nothing to `abandon` (a panic ends the process).
fn run() -> Result<String, Error> {
    let now = || Timestamp::from_system_time(SystemTime::now());
    let (base_url, app_id, key, installation) = settings()?;
    let builder = App::builder(app_id, load_key(&key)?).base_url(base_url);
    let mut app = builder.seed(now().unix_millis().unsigned_abs()).build()?;
    let mut op = GetToken::new(TokenScope::Installation(InstallationId::new(installation)?), None);
    loop {
        match op.poll(&mut app, now()) {
            Step::Send { id, request } => match send(&request) {
                Ok(response) => op.handle_response(&mut app, id, response, now()),
                Err(error) => op.handle_failure(&mut app, id, error, now()),
            },
            // Only for an app with a store attached, or built without a key: this one has neither.
            Step::Store { id, .. } => op.handle_store(&mut app, id, Err(Error::config("store", "none")), now()),
            Step::Sign { id, .. } => op.handle_signature(&mut app, id, Err(Error::config("signer", "none")), now()),
            Step::Sleep { until } | Step::Wait { until, .. } => std::thread::sleep(until.saturating_since(now())),
            Step::Done(result) => return result.map(|token| token.summary_json().to_string()),
        }
    }
}

/// The settings: each flag, else its environment variable; only the base URL may be missing.
fn settings() -> Result<(String, String, String, String), Error> {
    let (mut values, mut args) = (<[Option<String>; 4]>::default(), std::env::args().skip(1));
    while let Some(flag) = args.next() {
        let unknown = || Error::config("arguments", format!("unknown flag `{}`\n{USAGE}", excerpt(&flag, 40)));
        let needs_value = || Error::config("arguments", format!("{flag} needs a value"));
        let i = SETTINGS.iter().position(|s| s.0 == flag).ok_or_else(unknown)?;
        values[i] = Some(args.next().ok_or_else(needs_value)?);
    }
    let mut get = |i: usize| {
        let (flag, var, setting) = SETTINGS[i];
        let from_env = std::env::var(var).ok().filter(|v| !v.is_empty());
        let value = values[i].take().or(from_env);
        value.ok_or_else(|| Error::config(setting, format!("none given; pass {flag} or set {var}")))
    };
    let base_url = get(0).unwrap_or_else(|_| DEFAULT_BASE_URL.into());
    Ok((base_url, get(1)?, get(2)?, get(3)?))
}

/// The PEM itself, or a path to a PEM or DER file. Never quotes the value: it may be a secret.
fn load_key(value: &str) -> Result<AppKey, Error> {
    if value.contains("-----BEGIN") {
        return Ok(AppKey::from_pem(value)?);
    }
    let unreadable = |e| Error::config("private key", format!("the key file given cannot be read: {e}"));
    let bytes = zeroize::Zeroizing::new(std::fs::read(value.trim()).map_err(unreadable)?);
    Ok(AppKey::parse(&bytes)?)
}

/// An I/O error as a transport failure: `Timeout` when it timed out, else `kind`.
fn io_fail(kind: Kind, during: &str, e: &std::io::Error) -> Error {
    let timed_out = matches!(e.kind(), ErrorKind::TimedOut | ErrorKind::WouldBlock);
    Error::transport(if timed_out { Kind::Timeout } else { kind }, format!("{during}: {e}"))
}

/// One exchange under the core's transport policy. (The core's requests have no `Host` and such.)
fn send(request: &Request<Vec<u8>>) -> Result<Response<Vec<u8>>, Error> {
    let policy = TransportPolicy::default(); // scheme and route, body cap, timeout
    policy.check(request)?;
    let uri = request.uri();
    if !uri.scheme_str().is_some_and(|s| s.eq_ignore_ascii_case("http")) {
        let why = "std_driver has no TLS: it sends plain http:// only; use icr-app-ureq or icr-app-reqwest for https";
        return Err(Error::transport(Kind::Refused, why));
    }
    let authority = uri.authority().map_or("", |a| a.as_str()); // the core allows no user info
    let host = uri.host().unwrap_or_default().trim_matches(['[', ']']);
    let addr = (host, uri.port_u16().unwrap_or(80));
    let connect = |e| io_fail(Kind::Connect, &format!("connecting to {authority}"), &e);
    let mut stream = std::net::TcpStream::connect(addr).map_err(connect)?;
    let lost = |e| io_fail(Kind::ConnectionLost, "exchanging with the registry", &e);
    stream.set_read_timeout(Some(policy.timeout)).map_err(lost)?;
    let target = uri.path_and_query().map_or("/", |p| p.as_str());
    let (method, length) = (request.method(), request.body().len());
    let head = format!("{method} {target} HTTP/1.1\r\nHost: {authority}\r\nContent-Length: {length}\r\n");
    let mut out = (head + "Connection: close\r\n").into_bytes();
    for (name, value) in request.headers() {
        out.extend([name.as_str().as_bytes(), b": ", value.as_bytes(), b"\r\n"].concat());
    }
    out.extend([b"\r\n", request.body().as_slice()].concat());
    stream.write_all(&out).map_err(lost)?;
    // The status line, then every header (`Date` teaches the core the registry's clock).
    let mut reader = BufReader::new(stream);
    let mut lines = reader.by_ref().lines();
    let mut next_line = || lines.next().transpose().map_err(lost);
    let closed = || Error::transport(Kind::ConnectionLost, "closed without a response");
    let status_line = next_line()?.ok_or_else(closed)?;
    let status = status_line.strip_prefix("HTTP/1.").and_then(|l| l.get(2..5));
    let mut response = Response::builder().status(status.unwrap_or("none"));
    while let Some(line) = next_line()?.filter(|l| !l.is_empty()) {
        let (name, value) = line.split_once(':').unwrap_or((&line, ""));
        response = response.header(name, value.trim());
    }
    let header = |name| response.headers_ref()?.get(name)?.to_str().ok();
    if header("transfer-encoding").is_some() {
        return Err(Error::transport(Kind::Other, "std_driver does not read chunked bodies"));
    }
    let (length, mut body) = (header("content-length").and_then(|v| v.parse::<u64>().ok()), Vec::new());
    let mut reader = reader.take(length.unwrap_or(u64::MAX).min(policy.max_body + 1)); // or to the end
    reader.read_to_end(&mut body).map_err(lost)?;
    if policy.exceeds(body.len() as u64) {
        return Err(policy.body_too_large());
    }
    if length.is_some_and(|n| n != body.len() as u64) {
        return Err(Error::transport(Kind::ConnectionLost, "the body ended early"));
    }
    let malformed = |e: http::Error| Error::transport(Kind::Other, format!("not an HTTP/1.x response: {e}"));
    response.body(body).map_err(malformed)
}
