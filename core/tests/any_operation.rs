//! `AnyOperation`: every operation driven with plain data (method, URL, header pairs, body out;
//! status, header pairs, body, or a failure's kind and message back; one `Outcome`), as the
//! Python, C and Node bindings drive it.
//!
//! Deterministic: simulated time and an in-memory registry that sees only plain data.

use std::time::Duration;

use icr_app_core::{
    AnyOperation, AnyStep, App, AppKey, ErrorCode, InstallationId, OrganizationId, Outcome, PlainRequest,
    PlainResponse, Purpose, SecretString, Timestamp, TokenScope, TransportErrorKind,
};

const BASE: &str = "https://registry.example";

fn app() -> App {
    let key = AppKey::from_pem(include_str!("fixtures/keys/rsa2048-pkcs8.pem")).unwrap();
    App::builder("d23967cc-dd16-452b-8af4-869965745978", key)
        .base_url(BASE)
        .build()
        .unwrap()
}

fn t0() -> Timestamp {
    Timestamp::from_unix_seconds(1_700_000_000)
}

/// A canned answer: the path, then status, extra headers and body.
type Canned = (&'static str, u16, Vec<(String, String)>, String);

/// The registry, in memory, over plain data; records each request's purpose, method and path.
#[derive(Default)]
struct Registry {
    minted: u32,
    seen: Vec<(Purpose, String, String)>,
    /// Answers for paths, overriding the defaults: (status, extra headers, body).
    canned: Vec<Canned>,
}

impl Registry {
    fn serve(&mut self, request: &PlainRequest, now: Timestamp) -> PlainResponse {
        let path = request
            .url
            .strip_prefix(BASE)
            .unwrap()
            .split('?')
            .next()
            .unwrap()
            .to_owned();
        assert_eq!(request.header("accept"), Some("application/json"));
        assert_eq!(request.header("x-icr-api-version"), Some("2023-06-16"));
        assert!(request.header("authorization").unwrap().starts_with("Bearer "));
        self.seen.push((request.purpose, request.method.clone(), path.clone()));
        let mut headers = vec![("date".to_owned(), now.to_http_date())];
        if let Some((_, status, extra, body)) = self.canned.iter().find(|(p, ..)| *p == path) {
            headers.extend(extra.iter().cloned());
            return PlainResponse::new(*status, headers, body.clone().into_bytes());
        }
        let (status, body) = if path.ends_with("/accessTokens") {
            self.minted += 1;
            let body = format!(
                r#"{{"token":"crs_{:040}","createdAt":"{}","expiresAt":"{}","permissions":{{"organization_info":"read"}}}}"#,
                self.minted,
                now.to_rfc3339(),
                now.plus(Duration::from_secs(3600)).to_rfc3339()
            );
            (201, body)
        } else if path == "/app/installations" {
            (
                200,
                r#"{"installations":[{"id":"i-1"},{"id":"i-2"}],"pagination":{"total":2,"nextPage":null}}"#.to_owned(),
            )
        } else if path.starts_with("/app/organizations/") {
            (200, r#"{"id":"i-7"}"#.to_owned())
        } else if path.starts_with("/app/installations/") {
            (200, r#"{"id":"i-1"}"#.to_owned())
        } else {
            (200, r#"{"hello":"world"}"#.to_owned())
        };
        PlainResponse::new(status, headers, body.into_bytes())
    }
}

/// Drives `op` to the end, every value plain; returns the result.
fn drive(app: &mut App, registry: &mut Registry, mut op: AnyOperation) -> Result<Outcome, icr_app_core::Error> {
    let now = t0();
    for _ in 0..50 {
        match op.poll(app, now) {
            AnyStep::Send { id, request } => {
                let response = registry.serve(&request, now);
                op.handle_response(app, id, response, now);
            }
            AnyStep::Done(result) => return result,
            other => panic!("unexpected step {other:?}"),
        }
    }
    panic!("never finished")
}

#[test]
fn every_result_is_reachable_through_plain_data() {
    let mut app = app();
    let mut registry = Registry::default();
    let i1 = TokenScope::Installation(InstallationId::new("i-1").unwrap());

    let Outcome::Token(token) = drive(&mut app, &mut registry, AnyOperation::token(i1.clone(), None)).unwrap() else {
        panic!("a token")
    };
    assert!(token.secret().expose().starts_with("crs_"));

    let op = AnyOperation::installation(InstallationId::new("i-1").unwrap());
    let Outcome::Installation(one) = drive(&mut app, &mut registry, op).unwrap() else {
        panic!()
    };
    assert_eq!(one.id.as_str(), "i-1");

    let Outcome::Page(page) = drive(&mut app, &mut registry, AnyOperation::installations_page(10, 0)).unwrap() else {
        panic!()
    };
    assert_eq!(page.installations.len(), 2);

    let Outcome::Installations(all) = drive(&mut app, &mut registry, AnyOperation::all_installations(10)).unwrap()
    else {
        panic!()
    };
    assert_eq!(all.len(), 2);

    let op = AnyOperation::send_as(&app, i1.clone(), "GET", "/organizations/o-1", &[("x-extra", "1")], None).unwrap();
    let Outcome::Response(response) = drive(&mut app, &mut registry, op).unwrap() else {
        panic!()
    };
    assert_eq!(response.status, 200);
    assert!(response.header("date").is_some());
    assert_eq!(response.json::<serde_json::Value>().unwrap()["hello"], "world");

    let Outcome::Count(n) = drive(&mut app, &mut registry, AnyOperation::revoke_all()).unwrap() else {
        panic!()
    };
    assert_eq!(n, 1);

    let op = AnyOperation::revoke(SecretString::new("crs_0123456789"));
    assert!(matches!(drive(&mut app, &mut registry, op).unwrap(), Outcome::Nothing));

    // What each request was for, without reading URLs.
    let purposes: Vec<Purpose> = registry.seen.iter().map(|(p, ..)| *p).collect();
    assert_eq!(
        purposes,
        [
            Purpose::Mint,    // the token
            Purpose::Call,    // one installation
            Purpose::Call,    // a page
            Purpose::Call,    // every page (one)
            Purpose::Request, // send_as: the token was cached, so only its own request
            Purpose::Revoke,  // revoke_all: the one cached token
            Purpose::Revoke,  // revoke
        ]
    );
}

/// `revoke_all` over tokens the registry already refuses (401): they are dropped, not counted,
/// and not a failure; any other refusal still fails it, after every token was tried.
#[test]
fn revoke_all_passes_over_tokens_the_registry_already_refuses() {
    let mut app = app();
    let mut registry = Registry::default();
    let mint_two = |app: &mut App, registry: &mut Registry| {
        for id in ["i-1", "i-2"] {
            let scope = TokenScope::Installation(InstallationId::new(id).unwrap());
            drive(app, registry, AnyOperation::token(scope, None)).unwrap();
        }
    };
    let revokes = |registry: &Registry| registry.seen.iter().filter(|(p, ..)| *p == Purpose::Revoke).count();

    mint_two(&mut app, &mut registry);
    let refused = r#"{"statusCode":401,"message":"Invalid or expired access token","error":"Unauthorized"}"#;
    registry.canned = vec![("/app/installations/token", 401, Vec::new(), refused.to_owned())];
    let Outcome::Count(n) = drive(&mut app, &mut registry, AnyOperation::revoke_all()).unwrap() else {
        panic!("a count")
    };
    assert_eq!((n, revokes(&registry)), (0, 2), "both tried, none counted");
    assert_eq!(app.cached_scopes(), 0, "both dropped");

    mint_two(&mut app, &mut registry);
    let forbidden = r#"{"statusCode":403,"message":"Forbidden resource","error":"Forbidden"}"#;
    registry.canned = vec![("/app/installations/token", 403, Vec::new(), forbidden.to_owned())];
    let e = drive(&mut app, &mut registry, AnyOperation::revoke_all()).unwrap_err();
    assert_eq!(e.code(), ErrorCode::Forbidden);
    assert_eq!(
        revokes(&registry),
        4,
        "the second token was tried after the first failed"
    );
}

#[test]
fn send_as_marks_its_own_request_apart_from_the_lookup_and_mint_it_needs() {
    let mut app = app();
    let mut registry = Registry::default();
    let org = TokenScope::Organization(OrganizationId::new("o-1").unwrap());
    let op = AnyOperation::send_as(
        &app,
        org,
        "POST",
        "/organizations/o-1/things",
        &[] as &[(&str, &str)],
        Some(b"{}".to_vec()),
    )
    .unwrap();
    let Outcome::Response(response) = drive(&mut app, &mut registry, op).unwrap() else {
        panic!()
    };
    assert_eq!(response.status, 200);
    let seen: Vec<(Purpose, &str)> = registry.seen.iter().map(|(p, m, _)| (*p, m.as_str())).collect();
    assert_eq!(
        seen,
        [
            (Purpose::Lookup, "GET"),
            (Purpose::Mint, "POST"),
            (Purpose::Request, "POST")
        ]
    );
}

#[test]
fn errors_carry_a_stable_code_the_status_and_retry_after() {
    let mut app = app();
    let mut registry = Registry::default();
    registry.canned.push((
        "/app/installations/gone",
        404,
        vec![],
        r#"{"statusCode":404,"message":"Installation not found"}"#.to_owned(),
    ));
    let op = AnyOperation::installation(InstallationId::new("gone").unwrap());
    let error = drive(&mut app, &mut registry, op).unwrap_err();
    assert_eq!(
        (error.code(), error.code().as_str(), error.status()),
        (ErrorCode::NotFound, "not_found", Some(404))
    );

    // A 429 with Retry-After on a JWT call: retried within the budget, then the caller's error.
    let mut app = App::builder(
        "d23967cc-dd16-452b-8af4-869965745978",
        AppKey::from_pem(include_str!("fixtures/keys/rsa2048-pkcs8.pem")).unwrap(),
    )
    .base_url(BASE)
    .retry(icr_app_core::RetryPolicy::never())
    .build()
    .unwrap();
    registry.canned.push((
        "/app/installations/busy",
        429,
        vec![("retry-after".to_owned(), "7".to_owned())],
        String::new(),
    ));
    let op = AnyOperation::installation(InstallationId::new("busy").unwrap());
    let error = drive(&mut app, &mut registry, op).unwrap_err();
    assert_eq!(error.code(), ErrorCode::RateLimited);
    assert_eq!(error.status(), Some(429));
    assert_eq!(error.retry_after(), Some(Duration::from_secs(7)));
}

#[test]
fn a_transport_failure_is_a_kind_and_a_message() {
    let mut app = App::builder(
        "d23967cc-dd16-452b-8af4-869965745978",
        AppKey::from_pem(include_str!("fixtures/keys/rsa2048-pkcs8.pem")).unwrap(),
    )
    .base_url(BASE)
    .retry(icr_app_core::RetryPolicy::never())
    .build()
    .unwrap();
    let mut op = AnyOperation::installations_page(10, 0);
    let AnyStep::Send { id, .. } = op.poll(&mut app, t0()) else {
        panic!("it sends")
    };
    op.handle_failure(
        &mut app,
        id,
        TransportErrorKind::from_name("connect"),
        "connection refused",
        t0(),
    );
    let AnyStep::Done(Err(error)) = op.poll(&mut app, t0()) else {
        panic!("no retries allowed")
    };
    assert_eq!(error.code(), ErrorCode::Transport);
    assert_eq!(error.transport_kind(), Some(TransportErrorKind::Connect));
    assert!(error.to_string().contains("connection refused"), "{error}");
}

#[test]
fn bad_plain_input_is_a_config_error_that_quotes_no_value() {
    let app = app();
    let scope = TokenScope::App;
    let error = AnyOperation::send_as(&app, scope.clone(), "G E T", "/x", &[] as &[(&str, &str)], None).unwrap_err();
    assert_eq!(error.code(), ErrorCode::Config);
    let error =
        AnyOperation::send_as(&app, scope.clone(), "GET", "not a url", &[] as &[(&str, &str)], None).unwrap_err();
    assert_eq!(error.code(), ErrorCode::Config);
    let error = AnyOperation::send_as(
        &app,
        scope,
        "GET",
        "/x",
        &[("authorization", "Bearer crs_secret\n")],
        None,
    )
    .unwrap_err();
    assert!(!error.to_string().contains("crs_secret"), "{error}");

    // A status that is not one is reported as a broken answer, never a panic.
    let mut app = self::app();
    let mut op = AnyOperation::installations_page(10, 0);
    let AnyStep::Send { id, .. } = op.poll(&mut app, t0()) else {
        panic!()
    };
    op.handle_response(&mut app, id, PlainResponse::new(42, vec![], vec![]), t0());
    let debug = format!("{:?}", op.poll(&mut app, t0()));
    assert!(!debug.contains("Bearer"), "{debug}");
}

#[test]
fn a_plain_request_debug_shows_no_credential() {
    let mut app = app();
    let mut op = AnyOperation::token(TokenScope::App, None);
    let AnyStep::Send { request, .. } = op.poll(&mut app, t0()) else {
        panic!()
    };
    let debug = format!("{request:?}");
    assert!(debug.contains("authorization") && !debug.contains("Bearer"), "{debug}");
}

#[test]
fn repeated_headers_are_all_sent_and_a_response_debug_shows_no_body() {
    let app = app();
    let scope = TokenScope::Installation(InstallationId::new("i-1").unwrap());
    let headers = [("accept", "text/csv"), ("x-tag", "a"), ("x-tag", "b")];
    let mut op = AnyOperation::send_as(&app, scope, "GET", "/projects", &headers, None).unwrap();
    let mut app = app;
    let mut registry = Registry::default();
    let now = t0();
    let request = loop {
        match op.poll(&mut app, now) {
            AnyStep::Send { request, .. } if request.purpose == Purpose::Request => break request,
            AnyStep::Send { id, request } => {
                let response = registry.serve(&request, now);
                op.handle_response(&mut app, id, response, now);
            }
            other => panic!("unexpected {other:?}"),
        }
    };
    let values = |name: &str| -> Vec<&str> {
        request
            .headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    };
    assert_eq!(
        values("accept"),
        ["text/csv"],
        "the given one replaces the standard one"
    );
    assert_eq!(values("x-tag"), ["a", "b"], "every value of a repeated name");
    let token_body = PlainResponse::new(201, vec![], br#"{"token":"crs_0123456789abcdef"}"#.to_vec());
    assert!(!format!("{token_body:?}").contains("crs_"));
}
