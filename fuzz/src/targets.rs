//! The bodies of the fuzz targets, one function per target.
//!
//! `fuzz/fuzz_targets/*.rs` call these from libFuzzer; `core/tests/fuzz_corpus.rs` includes this
//! file by path and runs every committed seed (and random inputs, as proptest cases) through the
//! same functions on stable Rust, so the two never drift apart.
//!
//! Each function takes arbitrary bytes, must never panic, and asserts cheap invariants: parsed
//! times round-trip, a correctly signed webhook is never refused as a mismatch, and no error,
//! `Debug` or `Display` text repeats a secret-looking run of the input (see [`secret_runs`]).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use http::header::{HeaderMap, HeaderName, HeaderValue};
use icr_app_core::response::{check_status, parse_json, retry_after, status_error};
use icr_app_core::webhook::{self, SIGNATURE_HEADER, WebhookError, WebhookSecret};
use icr_app_core::{
    AccessToken, ApiMessage, App, AppKey, Call, ClockOffset, CreatedUserOrganization, Credential, Error, GetToken,
    Installation, InstallationId, InstallationsPage, KeyError, Operation, Refresher, Revoke, Signer, Step, Timestamp,
    TokenScope, TokenState, excerpt,
};

/// A target body: takes any bytes, panics only on a bug.
pub type Target = fn(&[u8]);

/// The targets by name, as in `fuzz/fuzz_targets/` and `fuzz/corpus/`.
pub const TARGETS: [(&str, Target); 5] = [
    ("keys", keys),
    ("responses", responses),
    ("error_body", error_body),
    ("webhook", webhook),
    ("time", time),
];

// ---------------------------------------------------------------------------------------------
// keys

/// Key loading: [`AppKey::parse`] (PEM, DER, UTF-16 PEM), [`AppKey::from_der`] and, on UTF-8
/// input, the settings loader [`AppKey::from_text`] (PEM, or the base64 of a PEM or DER key).
///
/// The whole input is the key file. Invariants: the loaders agree with each other, and no error
/// or `Debug` text repeats a secret-looking run of the input.
pub fn keys(data: &[u8]) {
    let secrets = secret_runs(&String::from_utf8_lossy(data));
    let parsed = AppKey::parse(data);
    check_key_result(&parsed, &secrets);
    let der = AppKey::from_der(data);
    check_key_result(&der, &secrets);
    if let (Ok(a), Ok(b)) = (&parsed, &der) {
        assert_eq!(
            a.fingerprint(),
            b.fingerprint(),
            "parse and from_der loaded different keys"
        );
    }
    if let Ok(text) = std::str::from_utf8(data) {
        // The loader for keys given as settings (PEM, or base64 of PEM or DER) never quotes its
        // input either; on text holding `-----BEGIN` it reads PEM, as `parse` does.
        let from_text = AppKey::from_text(text);
        check_key_result(&from_text, &secrets);
        if text.contains("-----BEGIN") {
            match (&parsed, &from_text) {
                (Ok(a), Ok(b)) => assert_eq!(a.fingerprint(), b.fingerprint()),
                (Err(a), Err(b)) => assert_eq!(a, b),
                (a, b) => panic!("parse and from_text disagree: {a:?} vs {b:?}"),
            }
        }
    }
}

fn check_key_result(result: &Result<AppKey, KeyError>, secrets: &[String]) {
    match result {
        Ok(key) => {
            assert!(matches!(key.modulus_bits(), 2048..=4096), "{key:?}");
            // `Debug` shows the fingerprint, which the input may legitimately contain.
            let shown = format!("{key:?}").replace(&key.fingerprint(), "");
            assert_secret_free(&shown, secrets);
            // The public half is never taken for a private key.
            assert_eq!(AppKey::from_pem(&key.public_key_pem()).err(), Some(KeyError::PublicKey));
        }
        Err(e) => {
            assert!(!e.to_string().is_empty());
            if let KeyError::UnknownPem { label } = e {
                // The label of the armour line is echoed on purpose: cleaned, capped, and cut
                // before anything that looks like key material.
                assert!(label.chars().count() <= 65, "{label:?}");
                assert!(
                    label
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_' | '…')),
                    "{label:?}"
                );
            }
            assert_secret_free(&format!("{e} {e:?}"), secrets);
        }
    }
}

// ---------------------------------------------------------------------------------------------
// responses

/// The statuses a response may have (byte 1 of the input picks one).
const STATUSES: [u16; 32] = [
    200, 201, 202, 204, 206, 299, 100, 199, 300, 302, 304, 400, 401, 403, 404, 405, 408, 409, 410, 422, 425, 429, 451,
    499, 500, 501, 502, 503, 504, 599, 600, 999,
];

/// The local time responses are received at.
const NOW_MS: i64 = 1_700_000_000_000;

/// Every response parser, on a whole `http::Response`.
///
/// Input: byte 0 picks the parser (mod 8), byte 1 the status (from [`STATUSES`]); the rest is
/// `Name: value` header lines up to the first blank line (`\n\n`), then the body. Without a blank
/// line it is all body. Parsers: 0 access token, 1 installation, 2 installations page, 3 created
/// user and organization (all with [`parse_json`]); 4 a mint ([`GetToken`] on an [`App`],
/// including the clock-skew retry and the retries of its [`RetryPolicy`](icr_app_core::RetryPolicy), then the cache and a
/// [`Refresher`] on what it got); 5 a list call ([`Call::installations_page`]); 6 a revocation
/// ([`Revoke`]) and [`check_status`]; 7 [`retry_after`] and [`status_error`] with a clock skew.
///
/// The operations are driven to the end, every request answered with the same response.
pub fn responses(data: &[u8]) {
    let [parser, status, rest @ ..] = data else { return };
    let status = STATUSES[usize::from(*status) % STATUSES.len()];
    let (headers, body) = split_head(rest);
    let mut builder = http::Response::builder().status(status);
    if let Some(h) = builder.headers_mut() {
        *h = headers.clone();
    }
    let Ok(response) = builder.body(body.to_vec()) else {
        return;
    };
    let secrets = secret_runs(&String::from_utf8_lossy(body));
    let check = |e: &Error| check_error(e, status, &secrets);
    match parser % 8 {
        0 => match parse_json::<AccessToken>(&response, Credential::AppJwt) {
            Ok(t) => {
                assert!(response.status().is_success());
                // `Debug` redacts the token. Checked when no other field can hold the same text:
                // it occurs once in the body, which has no escapes.
                let token = t.token.expose();
                let once = !body.contains(&b'\\') && count(body, token.as_bytes()) == 1;
                if token.len() >= 16 && once {
                    assert!(!format!("{t:?}").contains(token), "{t:?}");
                }
                // The shared-store form round-trips the token and its expiry.
                let json = serde_json::to_string(&t).expect("an AccessToken serializes");
                let back: AccessToken = serde_json::from_str(&json).expect("a serialized AccessToken parses");
                assert_eq!(back.token.expose(), t.token.expose());
                assert_eq!(back.expires_at, t.expires_at);
                assert_eq!(back.permissions, t.permissions);
            }
            Err(e) => check(&e),
        },
        1 => {
            if let Err(e) = parse_json::<Installation>(&response, Credential::AppJwt) {
                check(&e);
            }
        }
        2 => match parse_json::<InstallationsPage>(&response, Credential::AppJwt) {
            Ok(page) => {
                let n = page.installations.len();
                let _ = page.has_more(u32::from(data[1]), n);
                let _ = page.has_more(0, usize::MAX);
                let _ = page.has_more(u32::MAX, 0);
            }
            Err(e) => check(&e),
        },
        3 => {
            if let Err(e) = parse_json::<CreatedUserOrganization>(&response, Credential::AppJwt) {
                check(&e);
            }
        }
        4 => mint(response, &secrets),
        5 => list(response, &secrets),
        6 => {
            let mut app = app();
            let token = icr_app_core::SecretString::new("crs_fuzz0000000000000000000000000000000000000000");
            let mut revoke = Revoke::new(token);
            let (revoked, sends, _) = drive(&mut revoke, &mut app, &response, Timestamp::from_unix_millis(NOW_MS));
            assert_eq!(sends, 1, "a revocation is not retried");
            assert_eq!(revoked.is_ok(), response.status().is_success());
            let checked = check_status(&response, Credential::AccessToken);
            assert_eq!(revoked, checked);
            if let Err(e) = checked {
                check(&e);
            }
        }
        _ => {
            if let Some(d) = retry_after(&headers) {
                assert!(d.as_secs() <= 86_400, "{d:?}");
            }
            for skew in [
                None,
                Some(0),
                Some(-31_000),
                Some(31_000),
                Some(i64::MIN),
                Some(i64::MAX),
            ] {
                let e = status_error(status, &headers, body, Credential::AppJwt, skew);
                check(&e);
                assert_eq!(e.status(), Some(status));
            }
        }
    }
}

/// How many times `needle` occurs in `haystack` (overlapping).
fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack.windows(needle.len().max(1)).filter(|w| *w == needle).count()
}

/// Drives `op` to [`Step::Done`], answering every request with `response` (received at once) and
/// sleeping when asked; returns the result, how many requests were sent, and when it finished.
///
/// Invariants: nothing else runs, so the operation never waits for another; a request sent again
/// without a sleep before it (the clock-skew retry) follows a 401, once; the sends stay within
/// the app's [`RetryPolicy`](icr_app_core::RetryPolicy) (one more for the skew retry); time never goes back.
fn drive<O: Operation>(
    op: &mut O,
    app: &mut App,
    response: &http::Response<Vec<u8>>,
    mut now: Timestamp,
) -> (Result<O::Output, Error>, u32, Timestamp) {
    let max_sends = app.retry_policy().max_attempts + 1;
    let (mut sends, mut immediate_resends, mut slept) = (0, 0, true);
    for _ in 0..4 * max_sends {
        match op.poll(app, now) {
            Step::Send { id, request } => {
                assert!(!request.uri().to_string().is_empty());
                if !slept {
                    immediate_resends += 1;
                    assert_eq!(response.status(), 401, "only a 401 is sent again at once");
                    assert_eq!(immediate_resends, 1, "the skew retry happens once");
                }
                sends += 1;
                assert!(sends <= max_sends, "{sends} sends");
                slept = false;
                op.handle_response(app, id, response.clone(), now);
            }
            Step::Sleep { until } => {
                assert!(until >= now, "asked to sleep until {until}, before {now}");
                now = until;
                slept = true;
            }
            Step::Wait { until, .. } => panic!("nothing else is in flight, yet asked to wait until {until}"),
            Step::Store { command, .. } => panic!("no store is attached, yet asked to run {command:?}"),
            Step::Sign { .. } => panic!("the app has a key, yet asked to sign outside"),
            Step::Done(result) => return (result, sends, now),
        }
    }
    panic!("not done after {sends} sends");
}

/// The mint path: a token for an installation, every request answered with `response`; then,
/// if a token was handed out, the cache serves it and a refresher renews it when due.
fn mint(response: http::Response<Vec<u8>>, secrets: &[String]) {
    let now = Timestamp::from_unix_millis(NOW_MS);
    let mut app = app();
    let id = InstallationId::new("88f89df1-0a53-41c5-974d-dd99708b2f9f").expect("a valid installation id");
    let scope = TokenScope::Installation(id);
    let status = response.status().as_u16();
    let (answer, _, now) = drive(&mut GetToken::new(scope.clone(), None), &mut app, &response, now);
    match answer {
        Ok(token) => {
            // `Debug` redacts the token; it shows the installation id, which might equal it.
            let shown = format!("{token:?}");
            let secret = token.secret().expose();
            if secret.len() >= 16 && !is_in_ids(&token) {
                assert!(!shown.contains(secret), "{shown}");
            }
            let min_remaining = app.cache_config().min_remaining;
            assert!(token.remaining(now) >= min_remaining, "handed out with too little life");
            assert!(token.refresh_at() < token.expires_local());
            // Served from the cache while it has enough life left and no refresh is due.
            let later = token.refresh_at().minus(std::time::Duration::from_millis(1)).max(now);
            let mut again = GetToken::new(scope.clone(), None);
            match again.poll(&mut app, later) {
                Step::Done(Ok(cached)) => assert!(cached.same_as(&token)),
                Step::Send { .. } => {
                    assert!(token.remaining(later) < min_remaining);
                    again.abandon(&mut app, later);
                }
                other => panic!("a cached token: {other:?}"),
            }
            // Renewed when due; a refresher abandoned mid-mint leaves the token as it was.
            let mut refresher = Refresher::new();
            if let Step::Send { .. } = refresher.poll(&mut app, token.refresh_at()) {
                assert!(matches!(
                    app.token_state(&scope, token.refresh_at()),
                    TokenState::Refreshing(_)
                ));
                refresher.abandon(&mut app, token.refresh_at());
            }
            assert!(matches!(
                app.token_state(&scope, token.refresh_at()),
                TokenState::Valid(_)
            ));
            // Nothing to renew once it has expired.
            let expired = token.expires_local().plus(std::time::Duration::from_secs(1));
            assert!(matches!(refresher.poll(&mut app, expired), Step::Wait { .. }));
        }
        Err(e) => {
            check_error(&e, status, secrets);
            // Nothing is left in flight.
            assert!(!matches!(
                app.token_state(&scope, now),
                TokenState::Fetching | TokenState::Refreshing(_)
            ));
        }
    }
}

/// Whether the token's value is part of its installation id (the only string `Debug` shows).
fn is_in_ids(token: &icr_app_core::Token) -> bool {
    let id = token.access_token().installation_id.as_deref().unwrap_or_default();
    id.contains(token.secret().expose())
}

/// A one-off JWT call (list installations), every request answered with `response`.
fn list(response: http::Response<Vec<u8>>, secrets: &[String]) {
    let now = Timestamp::from_unix_millis(NOW_MS);
    let mut app = app();
    let status = response.status().as_u16();
    match drive(&mut Call::installations_page(10, 0), &mut app, &response, now) {
        (Ok(page), _, _) => {
            assert!(response.status().is_success(), "a {status} is never a success");
            let _ = page.has_more(10, page.installations.len());
        }
        (Err(e), _, _) => check_error(&e, status, secrets),
    }
}

/// A signer that does no RSA work, so the fuzzer spends its time on the parsers.
struct FakeSigner;

impl Signer for FakeSigner {
    fn sign_rs256(&self, _message: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(vec![0x5a; 256])
    }
}

fn app() -> App {
    App::builder("67890", FakeSigner)
        .seed(1)
        .build()
        .expect("the default settings are valid")
}

/// Header lines up to the first blank line, then the body.
fn split_head(input: &[u8]) -> (HeaderMap, &[u8]) {
    let mut headers = HeaderMap::new();
    let Some(end) = input.windows(2).position(|w| w == b"\n\n") else {
        return (headers, input);
    };
    for line in input[..end].split(|b| *b == b'\n') {
        let Some(colon) = line.iter().position(|b| *b == b':') else {
            continue;
        };
        let (name, value) = (&line[..colon], line[colon + 1..].trim_ascii());
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(name), HeaderValue::from_bytes(value)) {
            headers.append(name, value);
        }
    }
    (headers, &input[end + 2..])
}

/// An error from a response: it names a status consistent with the response, and repeats no
/// secret-looking run of the body.
fn check_error(e: &Error, status: u16, secrets: &[String]) {
    let text = format!("{e} {e:?}");
    assert_secret_free(&text, secrets);
    if let Some(s) = e.status() {
        // A success status only fails as a malformed body (or an expired token, reported as one).
        assert!(s == status || s == 200, "error status {s} for a {status} response: {e}");
    }
}

// ---------------------------------------------------------------------------------------------
// error_body

/// The error-body parser [`ApiMessage::from_body`], the errors built from it for each status, and
/// the redacting [`excerpt`] they use. The whole input is the body.
pub fn error_body(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    let secrets = secret_runs(&text);
    let api = ApiMessage::from_body(data);
    for part in [&api.message, &api.error].into_iter().flatten() {
        assert!(!part.is_empty());
        assert!(part.chars().count() <= 301, "not cut: {part:?}");
    }
    assert_secret_free(&format!("{api} {api:?}"), &secrets);
    let mut headers = HeaderMap::new();
    headers.insert(http::header::RETRY_AFTER, HeaderValue::from_static("7"));
    for (status, credential) in [
        (400, Credential::AppJwt),
        (401, Credential::AppJwt),
        (401, Credential::AccessToken),
        (403, Credential::AccessToken),
        (404, Credential::AppJwt),
        (429, Credential::AppJwt),
        (503, Credential::AppJwt),
    ] {
        let e = status_error(status, &headers, data, credential, Some(45_000));
        assert_eq!(e.status(), Some(status));
        assert_secret_free(&format!("{e} {e:?}"), &secrets);
    }
    for max in [0, 1, 15, 16, 60, 160, 300] {
        let cut = excerpt(&text, max);
        assert!(cut.chars().count() <= max + 1, "{max}: {cut:?}");
        assert_runs_short(&cut);
    }
}

// ---------------------------------------------------------------------------------------------
// webhook

/// The webhook secret of `core/tests/fixtures/webhooks` (test-only), so the fixture deliveries
/// in the seed corpus verify.
const WEBHOOK_SECRET: &str = "fixture-only webhook secret: 9c4e1b7a-not-a-real-one";

/// Webhook verification ([`webhook::verify`], [`webhook::verify_request`]) and decoding.
///
/// Byte 0 picks the mode (mod 3): 0, the rest is a body whose root `signedData` (if any) is
/// signed correctly, so decoding is reached; 1, the rest is a header line then the body, both as
/// received; 2, the rest is the signed payload itself, wrapped into a correctly signed delivery.
pub fn webhook(data: &[u8]) {
    let [mode, rest @ ..] = data else { return };
    let secret = WebhookSecret::new(WEBHOOK_SECRET).expect("a non-empty secret");
    let mut secrets = secret_runs(&String::from_utf8_lossy(rest));
    let mine = !String::from_utf8_lossy(data).contains(WEBHOOK_SECRET);
    match mode % 3 {
        0 => {
            let signed = serde_json::from_slice::<serde_json::Value>(rest)
                .ok()
                .and_then(|v| v.get("signedData")?.as_str().map(str::to_owned));
            match signed {
                Some(signed) => {
                    if let Ok(payload) = STANDARD.decode(signed.as_bytes()) {
                        secrets.extend(secret_runs(&String::from_utf8_lossy(&payload)));
                    }
                    let header = webhook::sign(&secret, &signed);
                    let result = verify_both(&secret, &header, rest, &secrets, mine);
                    assert!(
                        !matches!(
                            result,
                            Err(WebhookError::Mismatch
                                | WebhookError::MissingSignature
                                | WebhookError::WrongPrefix
                                | WebhookError::BadSignatureEncoding)
                        ),
                        "a correctly signed delivery was refused: {result:?}"
                    );
                    // Any other signature is refused.
                    let mut forged = header.into_bytes();
                    let last = forged.len() - 1;
                    forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
                    let forged = String::from_utf8(forged).expect("ASCII");
                    let result = verify_both(&secret, &forged, rest, &secrets, mine);
                    assert_eq!(result, Err(WebhookError::Mismatch));
                }
                None => {
                    let header = webhook::sign(&secret, "");
                    let result = verify_both(&secret, &header, rest, &secrets, mine);
                    assert!(result.is_err(), "a body without signedData was accepted");
                }
            }
        }
        1 => {
            let (header, body) = match rest.iter().position(|b| *b == b'\n') {
                Some(i) => (&rest[..i], &rest[i + 1..]),
                None => (rest, &[][..]),
            };
            let header = String::from_utf8_lossy(header);
            let result = webhook::verify(&secret, Some(&header), body);
            check_webhook(&result, &secrets, mine);
            let missing = webhook::verify(&secret, None, body);
            assert_eq!(missing, Err(WebhookError::MissingSignature));
            // `verify_request` refuses a header that is not visible ASCII before `verify` sees it.
            if let Ok(value) = HeaderValue::from_bytes(header.as_bytes())
                && value.to_str().is_ok()
            {
                let mut request = http::Request::new(body.to_vec());
                request.headers_mut().insert(SIGNATURE_HEADER, value.clone());
                assert_eq!(webhook::verify_request(&secret, &request), result);
                request.headers_mut().append(SIGNATURE_HEADER, value);
                assert_eq!(
                    webhook::verify_request(&secret, &request),
                    Err(WebhookError::DuplicateSignature)
                );
            }
        }
        _ => {
            let signed = STANDARD.encode(rest);
            let body = serde_json::json!({ "signedData": signed }).to_string();
            let header = webhook::sign(&secret, &signed);
            let result = verify_both(&secret, &header, body.as_bytes(), &secrets, mine);
            let payload = serde_json::from_slice::<serde_json::Value>(rest).ok();
            match &result {
                Ok(event) => {
                    assert_eq!(Some(&event.raw), payload.as_ref(), "the event is the signed payload");
                    assert_eq!(
                        event.raw.get("event").and_then(|e| e.as_str()),
                        Some(event.event.as_str())
                    );
                }
                Err(WebhookError::SignedPayloadInvalid { .. }) => {}
                Err(e) => panic!("a correctly signed delivery was refused: {e:?}"),
            }
        }
    }
}

/// [`webhook::verify`] and [`webhook::verify_request`] on the same delivery, which must agree.
fn verify_both(
    secret: &WebhookSecret,
    header: &str,
    body: &[u8],
    secrets: &[String],
    mine: bool,
) -> Result<webhook::WebhookEvent, WebhookError> {
    let result = webhook::verify(secret, Some(header), body);
    check_webhook(&result, secrets, mine);
    let mut request = http::Request::new(body.to_vec());
    request.headers_mut().insert(
        SIGNATURE_HEADER,
        HeaderValue::from_str(header).expect("a signature is ASCII"),
    );
    assert_eq!(webhook::verify_request(secret, &request), result);
    result
}

/// A refusal never shows the secret (unless the input itself holds it) or a secret-looking run.
fn check_webhook(result: &Result<webhook::WebhookEvent, WebhookError>, secrets: &[String], mine: bool) {
    if let Err(e) = result {
        let text = format!("{e} {e:?}");
        if mine {
            assert!(!text.contains(WEBHOOK_SECRET), "{text}");
        }
        assert_secret_free(&text, secrets);
    }
}

// ---------------------------------------------------------------------------------------------
// time

/// The time parsers: [`Timestamp::parse_rfc3339`], [`Timestamp::parse_http_date`],
/// [`ClockOffset::from_date_header`], and the formatters on any instant.
///
/// The whole input is the text (lossy UTF-8); its first 8 bytes, when there are 8, are also read
/// as a little-endian millisecond instant to format. Invariants: a parsed RFC 3339 time prints
/// (`to_rfc3339`) as text that parses back to the same millisecond; a parsed HTTP date prints
/// back to the same second; offsets never panic, whatever the local clock.
pub fn time(data: &[u8]) {
    let text = String::from_utf8_lossy(data);
    if let Some(t) = Timestamp::parse_rfc3339(&text) {
        let printed = t.to_rfc3339();
        assert_eq!(
            Timestamp::parse_rfc3339(&printed),
            Some(t),
            "{text:?} parsed to {} ms, printed as {printed:?}",
            t.unix_millis()
        );
        assert_eq!(t.to_string(), printed);
    }
    let date = Timestamp::parse_http_date(&text);
    if let Some(t) = date {
        assert_eq!(t.unix_millis().rem_euclid(1000), 0);
        let printed = t.to_http_date();
        assert_eq!(
            Timestamp::parse_http_date(&printed),
            Some(t),
            "{text:?} printed as {printed:?}"
        );
    }
    let mut locals = vec![0, NOW_MS, -1, i64::MIN, i64::MAX];
    if let Some(t) = date {
        locals.extend([t.unix_millis(), t.unix_millis() + 500, t.unix_millis() - 90_000]);
    }
    for local in locals {
        let local = Timestamp::from_unix_millis(local);
        let offset = ClockOffset::from_date_header(&text, local);
        assert_eq!(offset.is_some(), date.is_some());
        if let Some(offset) = offset {
            assert!(offset.millis == 0 || offset.millis.unsigned_abs() >= 1000, "{offset:?}");
            let _ = offset.local_time(offset.server_time(local));
        }
    }
    if let Some(bytes) = data.first_chunk::<8>() {
        let t = Timestamp::from_unix_millis(i64::from_le_bytes(*bytes));
        let printed = t.to_rfc3339();
        // Years 0000 to 9999 (UTC) have an RFC 3339 form; others print as best they can.
        if (MIN_RFC3339_MS..=MAX_RFC3339_MS).contains(&t.unix_millis()) {
            assert_eq!(
                Timestamp::parse_rfc3339(&printed),
                Some(t),
                "{} ms printed as {printed:?}",
                t.unix_millis()
            );
        }
        let _ = t.to_http_date();
        let _ = (
            t.unix_seconds(),
            t.plus(std::time::Duration::MAX),
            t.minus(std::time::Duration::MAX),
        );
    }
}

/// `0000-01-01T00:00:00.000Z`, the first instant RFC 3339 can write.
const MIN_RFC3339_MS: i64 = -62_167_219_200_000;
/// `9999-12-31T23:59:59.999Z`, the last.
const MAX_RFC3339_MS: i64 = 253_402_300_799_999;

// ---------------------------------------------------------------------------------------------
// secrets

/// Whether `c` is in the alphabet of tokens, JWTs and base64 (the one `excerpt` redacts).
fn is_token_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.' | '+' | '/' | '=' | '~')
}

fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// Whether `s` could be the start of a UUID (an excerpt may cut one).
fn is_uuid_prefix(s: &str) -> bool {
    s.len() <= 36
        && s.bytes().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => c == b'-',
            _ => c.is_ascii_hexdigit(),
        })
}

/// The maximal runs of token characters in `text`.
fn runs(text: &str) -> impl Iterator<Item = &str> {
    text.split(|c: char| !is_token_char(c)).filter(|r| !r.is_empty())
}

/// The secret-looking runs of `text`: at least 20 token characters with a letter and a digit,
/// and not a UUID. Tokens (`crs_...`), JWT parts, key material and signatures all qualify; the
/// SDK's own messages hold no such run.
pub fn secret_runs(text: &str) -> Vec<String> {
    let mut out: Vec<String> = runs(text)
        .filter(|r| {
            r.len() >= 20
                && !is_uuid(r)
                && r.bytes().any(|b| b.is_ascii_digit())
                && r.bytes().any(|b| b.is_ascii_alphabetic())
        })
        .map(str::to_owned)
        .collect();
    out.sort_unstable();
    out.dedup();
    out
}

/// Panics when a token run of `shown` contains one of `secrets`.
fn assert_secret_free(shown: &str, secrets: &[String]) {
    if secrets.is_empty() {
        return;
    }
    // A UUID is kept on purpose, and an excerpt may cut one short.
    for run in runs(shown).filter(|r| r.len() >= 20 && !is_uuid_prefix(r)) {
        if let Some(s) = secrets.iter().find(|s| run.contains(s.as_str())) {
            panic!("a secret-looking run of the input, {s:?}, is shown in: {shown}");
        }
    }
}

/// Panics when `cut` (an excerpt) keeps a token run of 16 or more characters that is not a
/// UUID (or a UUID cut at the end) or an identifier (lowercase letters and `_` only, such as a
/// permission name: tokens, JWT parts and key text always hold digits or capitals).
fn assert_runs_short(cut: &str) {
    let body = cut.strip_suffix('…').unwrap_or(cut);
    let all: Vec<&str> = runs(body).collect();
    for (i, run) in all.iter().enumerate() {
        let last = i + 1 == all.len() && body.ends_with(run);
        let identifier = run.chars().all(|c| c.is_ascii_lowercase() || c == '_');
        let ok = run.chars().count() < 16 || is_uuid(run) || identifier || (last && is_uuid_prefix(run));
        assert!(ok, "excerpt kept the token-like run {run:?}: {cut:?}");
    }
}
