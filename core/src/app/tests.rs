//! Unit tests of the app: mints and their answers, the clock-skew retry, clock learning, hits and
//! revocation.

use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};

use super::*;
use crate::api::{ApiConfig, InstallationId};
use crate::cache::{Poll, Token, TokenState};
use crate::clock::Timestamp;
use crate::error::{Error, TransportErrorKind};
use crate::jwt::AppId;
use crate::retry::RetryPolicy;
use crate::signer::Signer;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

struct FakeSigner;
impl Signer for FakeSigner {
    fn sign_rs256(&self, _message: &[u8]) -> Result<Vec<u8>, Error> {
        Ok(vec![1, 2, 3])
    }
}

struct BrokenSigner;
impl Signer for BrokenSigner {
    fn sign_rs256(&self, _message: &[u8]) -> Result<Vec<u8>, Error> {
        Err(Error::Signing("the HSM is offline".into()))
    }
}

const T0: i64 = 1_700_000_000;

fn at(secs: i64) -> Timestamp {
    Timestamp::from_unix_seconds(T0 + secs)
}

fn app() -> App {
    App::new(
        ApiConfig::new(),
        JwtSigner::new(AppId::new("app-1").unwrap(), Arc::new(FakeSigner)),
    )
}

fn scope() -> TokenScope {
    TokenScope::Installation(InstallationId::new("inst-1").unwrap())
}

fn token_body(server_now: i64) -> Vec<u8> {
    serde_json::to_vec(&serde_json::json!({
        "id": "t1", "token": "crs_0123456789abcdef0123456789abcdef0123456789abcdef",
        "createdAt": at(server_now).to_rfc3339(), "updatedAt": at(server_now).to_rfc3339(),
        "expiresAt": at(server_now + 7200).to_rfc3339(), "isActive": true,
        "permissions": {"organization_info": "VIEW"}, "appId": "app-1", "installationId": "inst-1", "organizationId": "o1"
    }))
    .unwrap()
}

fn response(status: u16, server_now: i64, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("date", at(server_now).to_http_date())
        .body(body)
        .unwrap()
}

fn iat_of(request: &Request<Vec<u8>>) -> i64 {
    let auth = request.headers()["authorization"].to_str().unwrap();
    let claims = auth.trim_start_matches("Bearer ").split('.').nth(1).unwrap();
    let v: serde_json::Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(claims).unwrap()).unwrap();
    v["iat"].as_i64().unwrap()
}

/// What the token machinery asks for at `now`, as the operations see it (test shorthand).
#[derive(Debug)]
#[allow(clippy::large_enum_variant)] // a test shorthand, short-lived
enum TokenStep {
    Ready(#[allow(dead_code)] Token),
    Send { id: RequestId, request: Request<Vec<u8>> },
    Wait,
    Failed,
}

impl App {
    fn poll_token(
        &mut self,
        scope: &TokenScope,
        now: Timestamp,
        min_life: Option<Duration>,
    ) -> Result<TokenStep, Error> {
        match self.poll_cache(scope, now, min_life) {
            Poll::Ready(t) => Ok(TokenStep::Ready(t)),
            Poll::Wait { .. } => Ok(TokenStep::Wait),
            Poll::Failed { .. } => Ok(TokenStep::Failed),
            Poll::Fetch { id, .. } => match self.mint_request(id, scope, now) {
                Ok(request) => Ok(TokenStep::Send { id, request }),
                Err(crate::app::Unsigned::Failed(e)) => Err(self.handle_token_failure(id, e, now)),
                Err(other) => panic!("these tests sign in the core: {other:?}"),
            },
        }
    }
}

/// Polls `op` once, expecting a send.
fn sent<O: crate::ops::Operation>(op: &mut O, app: &mut App, now: Timestamp) -> (RequestId, Request<Vec<u8>>) {
    match op.poll(app, now) {
        crate::ops::Step::Send { id, request } => (id, request),
        _ => panic!("expected a send"),
    }
}

fn send(step: TokenStep) -> (RequestId, Request<Vec<u8>>) {
    match step {
        TokenStep::Send { id, request, .. } => (id, request),
        other => panic!("expected Send, got {other:?}"),
    }
}

#[test]
fn mint_then_cache() {
    let mut app = app();
    let (id, req) = send(app.poll_token(&scope(), at(0), None).unwrap());
    assert_eq!(req.uri().path(), "/app/installations/inst-1/accessTokens");
    assert!(matches!(
        app.poll_token(&scope(), at(0), None).unwrap(),
        TokenStep::Wait
    ));
    let TokenAnswer::Token(t) = app
        .handle_token_response(id, response(200, 0, token_body(0)), at(0))
        .unwrap()
    else {
        panic!()
    };
    assert_eq!(t.access_token().organization_id.as_deref(), Some("o1"));
    assert!(app.ready_token(&scope(), at(10), None).is_some());
    assert!(matches!(
        app.poll_token(&scope(), at(10), None).unwrap(),
        TokenStep::Ready(_)
    ));
}

/// A token answer without `appId` or `installationId` gets them from the app and the mint's
/// installation; ids the registry sent are kept as sent.
#[test]
fn a_token_names_its_app_and_installation_when_the_answer_leaves_them_out() {
    let bare = |installation: Option<&str>| {
        let mut body = serde_json::json!({
            "token": "crs_0123456789abcdef0123456789abcdef0123456789abcdef",
            "expiresAt": at(7200).to_rfc3339(), "permissions": {},
        });
        if let Some(installation) = installation {
            body["installationId"] = installation.into();
            body["appId"] = "app-from-registry".into();
        }
        serde_json::to_vec(&body).unwrap()
    };
    for (scope, sent, installation, app_id) in [
        (scope(), None, Some("inst-1"), "app-1"),
        (scope(), Some("inst-as-sent"), Some("inst-as-sent"), "app-from-registry"),
        (TokenScope::App, None, None, "app-1"),
    ] {
        let mut app = app();
        let (id, _) = send(app.poll_token(&scope, at(0), None).unwrap());
        let Ok(TokenAnswer::Token(t)) = app.handle_token_response(id, response(200, 0, bare(sent)), at(0)) else {
            panic!("the mint for {scope} failed")
        };
        assert_eq!(t.access_token().installation_id.as_deref(), installation, "{scope}");
        assert_eq!(t.access_token().app_id.as_deref(), Some(app_id), "{scope}");
    }
}

/// `hit` answers exactly when `GetToken` would hand the token out with nothing to perform,
/// and counts a hit only then.
#[test]
fn hit_is_the_get_token_hit_alone() {
    let mut app = app();
    assert!(app.hit(&scope(), at(0), None).is_none());
    let (id, _) = send(app.poll_token(&scope(), at(0), None).unwrap());
    // A mint in flight: no hit.
    assert!(app.hit(&scope(), at(0), None).is_none());
    let TokenAnswer::Token(t) = app
        .handle_token_response(id, response(200, 0, token_body(0)), at(0))
        .unwrap()
    else {
        panic!()
    };
    assert!(app.hit(&scope(), at(10), None).is_some_and(|h| h.same_as(&t)));
    assert_eq!(app.stats().hits, 1);
    // Once a refresh is due (90 % of the 2 h life), the operation has work to do: no hit,
    // and nothing counted or started.
    assert!(app.hit(&scope(), at(6600), None).is_none());
    assert_eq!(app.stats().hits, 1);
    assert!(matches!(app.token_state(&scope(), at(6600)), TokenState::Valid(_)));
    // A refused token is gone for the hit too.
    assert!(app.invalidate(&scope(), t.secret().expose()));
    assert!(app.hit(&scope(), at(20), None).is_none());
}

/// Offsets learned against absurd local clocks (the far past, then the far future) must not
/// overflow when compared, whether to learn a new offset or to decide a skew retry.
#[test]
fn offsets_from_absurd_local_clocks_do_not_overflow() {
    let mut app = app();
    app.observe(&response(200, 0, Vec::new()), Timestamp::from_unix_millis(i64::MIN));
    app.observe(&response(200, 0, Vec::new()), Timestamp::from_unix_millis(i64::MAX));
    let (id, _) = send(app.poll_token(&scope(), at(0), None).unwrap());
    app.observe(&response(200, 0, Vec::new()), Timestamp::from_unix_millis(i64::MIN));
    // A 401 makes the app compare the offset the mint was signed with to the newest one.
    let _ = app.handle_token_response(id, response(401, 0, Vec::new()), Timestamp::from_unix_millis(i64::MAX));
}

/// Regression (found by the fault soak): the registry's clock jumped ahead after a token was
/// cached; the next `Date` seen must cut the cached token's life to what the registry gives
/// it, or the token is handed out after the registry considers it expired.
#[test]
fn a_server_clock_jump_seen_in_any_response_shortens_cached_tokens() {
    let mut app = app();
    let (id, _) = send(app.poll_token(&scope(), at(0), None).unwrap());
    let _ = app
        .handle_token_response(id, response(200, 0, token_body(0)), at(0))
        .unwrap();
    assert!(app.ready_token(&scope(), at(10), None).is_some());
    // Any response (here a 404 to some other call) shows the registry's clock 2 h - 40 s
    // ahead: the token has 30 s left there.
    app.observe(&response(404, 10 + 7200 - 40, Vec::new()), at(10));
    assert!(app.ready_token(&scope(), at(10), None).is_none());
    assert!(matches!(
        app.poll_token(&scope(), at(10), None).unwrap(),
        TokenStep::Send { .. }
    ));
}

/// A mint the cache presumes abandoned (never answered) leaves nothing behind in the app's
/// per-mint records, and neither does a late answer to it.
#[test]
fn abandoned_mints_are_forgotten() {
    let mut app = app();
    let (first, _) = send(app.poll_token(&scope(), at(0), None).unwrap());
    // Past the fetch timeout the cache starts another mint for the same installation.
    let (second, _) = send(app.poll_token(&scope(), at(121), None).unwrap());
    assert_ne!(first, second);
    assert_eq!(app.mints.len(), 1, "only the mint in flight is remembered");
    let late = app.handle_token_response(first, response(200, 121, token_body(121)), at(122));
    assert!(matches!(late, Err(Error::UnknownRequest(_))));
    let _ = app
        .handle_token_response(second, response(200, 121, token_body(121)), at(122))
        .unwrap();
    assert!(app.mints.is_empty());
}

/// Regression (found by the fault soak): two mints signed before the registry's clock jumped
/// are both refused; the first answer teaches the new offset, and the second must still be
/// retried, since it was signed with the old one.
#[test]
fn every_mint_signed_with_an_old_clock_is_retried_after_a_jump() {
    let mut app = app();
    let other = TokenScope::Installation(InstallationId::new("inst-2").unwrap());
    let (a, _) = send(app.poll_token(&scope(), at(0), None).unwrap());
    let (b, _) = send(app.poll_token(&other, at(0), None).unwrap());
    let refused = br#"{"statusCode":401,"message":"JWT expired","error":"Unauthorized"}"#.to_vec();
    for (id, scope) in [(a, scope()), (b, other)] {
        let answer = app.handle_token_response(id, response(401, 7200, refused.clone()), at(1));
        let Ok(TokenAnswer::Resign) = answer else {
            panic!("{id}: not retried: {answer:?}")
        };
        let again = app.mint_request(id, &scope, at(1)).unwrap();
        assert_eq!(iat_of(&again), T0 + 7200 - 60);
    }
    // A mint signed with the new offset and refused is not retried again.
    let (c, _) = send(app.poll_token(&TokenScope::App, at(2), None).unwrap());
    assert!(matches!(
        app.handle_token_response(c, response(401, 7202, refused), at(2)),
        Err(Error::Unauthorized { .. })
    ));
}

#[test]
fn skewed_401_is_retried_once_with_the_server_clock() {
    let mut app = app();
    let (id, first) = send(app.poll_token(&scope(), at(0), None).unwrap());
    assert_eq!(iat_of(&first), T0 - 60);
    // The server is two hours ahead and refuses the JWT.
    let refused = br#"{"statusCode":401,"message":"JWT issued too far in the past","error":"Unauthorized"}"#.to_vec();
    let TokenAnswer::Resign = app
        .handle_token_response(id, response(401, 7200, refused.clone()), at(0))
        .unwrap()
    else {
        panic!("expected a retry")
    };
    // Made again where it was first made, signed with the server's clock.
    let second = app.mint_request(id, &scope(), at(0)).unwrap();
    assert_eq!(iat_of(&second), T0 + 7200 - 60);
    assert_eq!(app.clock_offset().millis, 7_200_500);
    // A second 401 for the same id is final, and names the clock.
    let e = match app.handle_token_response(id, response(401, 7200, refused), at(0)) {
        Err(e) => e,
        Ok(_) => panic!("expected an error"),
    };
    assert!(
        matches!(
            e,
            Error::Unauthorized {
                clock_skew: Some(7_200_500),
                ..
            }
        ),
        "{e:?}"
    );
    assert!(e.to_string().contains("7200 s behind"), "{e}");
}

#[test]
fn unskewed_401_is_not_retried() {
    let mut app = app();
    let (id, _) = send(app.poll_token(&scope(), at(0), None).unwrap());
    let e = app
        .handle_token_response(id, response(401, 0, Vec::new()), at(0))
        .err()
        .unwrap();
    assert!(matches!(e, Error::Unauthorized { clock_skew: None, .. }));
    assert!(matches!(
        app.poll_token(&scope(), at(0), None).unwrap(),
        TokenStep::Failed
    ));
}

#[test]
fn server_behind_gives_correct_local_expiry() {
    let mut app = app();
    let (id, _) = send(app.poll_token(&scope(), at(0), None).unwrap());
    let TokenAnswer::Token(t) = app
        .handle_token_response(id, response(200, -7200, token_body(-7200)), at(0))
        .unwrap()
    else {
        panic!()
    };
    assert!(t.expires_local() <= at(7200) && t.expires_local() >= at(7199));
    // The next JWT is made on the server's clock.
    let (_, request) = sent(&mut crate::ops::Call::installations_page(10, 0), &mut app, at(1));
    assert_eq!(iat_of(&request), T0 + 1 - 7200 - 60);
}

#[test]
fn one_off_calls_and_skew_retry() {
    use crate::ops::{Call, Operation, Step};
    let mut app = app();
    let mut call = Call::installations_page(2, 0);
    let (id, _) = sent(&mut call, &mut app, at(0));
    call.handle_response(&mut app, id, response(401, -3600, Vec::new()), at(0));
    let (id, request) = sent(&mut call, &mut app, at(0));
    assert_eq!(iat_of(&request), T0 - 3600 - 60);
    let body = br#"{"pagination":{"total":3,"currentPage":1,"nextPage":2},"installations":[{"id":"a"},{"id":"b"}]}"#;
    call.handle_response(&mut app, id, response(200, -3600, body.to_vec()), at(0));
    let Step::Done(Ok(page)) = call.poll(&mut app, at(0)) else {
        panic!()
    };
    assert_eq!(page.installations.len(), 2);
    assert!(page.has_more(2, 2));
    // A malformed body is a clear error (an installation read is retried, so give it no budget).
    let mut app = App::builder("app-1", FakeSigner)
        .retry(RetryPolicy::never())
        .build()
        .unwrap();
    let mut call = Call::installation(InstallationId::new("a").unwrap());
    let (id, _) = sent(&mut call, &mut app, at(0));
    call.handle_response(&mut app, id, response(200, -3600, b"<html>".to_vec()), at(0));
    let Step::Done(Err(e)) = call.poll(&mut app, at(0)) else {
        panic!()
    };
    assert!(matches!(e, Error::MalformedBody { .. }));
}

#[test]
fn transport_failure_and_signing_failure() {
    let mut app = app();
    let (id, _) = send(app.poll_token(&scope(), at(0), None).unwrap());
    let e = app.handle_token_failure(
        id,
        Error::Transport {
            kind: TransportErrorKind::ConnectionLost,
            message: "connection reset".into(),
        },
        at(0),
    );
    assert!(e.is_retryable());
    let mut broken = App::new(
        ApiConfig::new(),
        JwtSigner::new(AppId::new("a").unwrap(), Arc::new(BrokenSigner)),
    );
    let e = broken.poll_token(&scope(), at(0), None).unwrap_err();
    assert!(e.to_string().contains("HSM is offline"));
    // The failed fetch was answered: the scope is in back-off, not stuck in flight.
    assert!(matches!(
        broken.poll_token(&scope(), at(0), None).unwrap(),
        TokenStep::Failed
    ));
}

#[test]
fn date_jitter_does_not_move_the_offset() {
    let mut app = app();
    app.observe(&response(200, 7200, Vec::new()), at(0));
    assert_eq!(app.clock_offset().millis, 7_200_500);
    app.observe(&response(200, 7201, Vec::new()), at(0));
    assert_eq!(app.clock_offset().millis, 7_200_500);
    app.observe(&response(200, 7300, Vec::new()), at(0));
    assert_eq!(app.clock_offset().millis, 7_300_500);
}

#[test]
fn revoke_and_drain() {
    let mut app = app();
    let (id, _) = send(app.poll_token(&scope(), at(0), None).unwrap());
    let _ = app
        .handle_token_response(id, response(200, 0, token_body(0)), at(0))
        .unwrap();
    let drained = app.drain_tokens();
    assert_eq!(drained.len(), 1);
    let secret = drained[0].1.secret().clone();
    let req = app.revoke_request(&secret).unwrap();
    assert_eq!(req.method(), http::Method::DELETE);
    assert!(
        app.finish_revoke(&secret, &response(200, 0, b"{}".to_vec()), at(0))
            .0
            .is_ok()
    );
    let refused = app.finish_revoke(&secret, &response(401, 0, Vec::new()), at(0)).0;
    assert!(matches!(refused, Err(Error::Unauthorized { .. })));
    // A revoked token that is still cached is dropped from the cache.
    let (id, _) = send(app.poll_token(&scope(), at(0), None).unwrap());
    let Ok(TokenAnswer::Token(t)) = app.handle_token_response(id, response(200, 0, token_body(0)), at(0)) else {
        panic!("expected a token")
    };
    let (result, held) = app.finish_revoke(t.secret(), &response(200, 0, Vec::new()), at(0));
    result.unwrap();
    assert_eq!(held, vec![scope()]);
    assert!(app.ready_token(&scope(), at(1), None).is_none());
}

/// The child of a fork keeps the cached token and the learned clock, and gives up the mint its
/// parent had in flight: the scope is free at once (a new mint is sent, no wait, no back-off),
/// and the parent's answer, should it reach the child, is refused.
#[test]
fn after_fork_keeps_tokens_and_gives_up_what_was_in_flight() {
    let mut app = app();
    let other = TokenScope::Installation(InstallationId::new("inst-2").unwrap());
    let (id, _) = send(app.poll_token(&scope(), at(0), None).unwrap());
    let _ = app
        .handle_token_response(id, response(200, 0, token_body(0)), at(1))
        .unwrap();
    let (in_flight, _) = send(app.poll_token(&other, at(2), None).unwrap());
    let changes = app.changes();

    app.after_fork(7, at(3));

    assert_ne!(app.changes(), changes, "waiters are woken");
    assert!(app.mints.is_empty());
    assert_eq!(app.stats().mints, 0, "the child counts from zero");
    assert!(matches!(
        app.poll_token(&scope(), at(4), None).unwrap(),
        TokenStep::Ready(_)
    ));
    let (again, _) = send(app.poll_token(&other, at(4), None).unwrap());
    assert_ne!(again, in_flight);
    let late = app.handle_token_response(in_flight, response(200, 4, token_body(4)), at(5));
    assert!(matches!(late, Err(Error::UnknownRequest(_))));
}
