//! An operation that has returned `Step::Done` is finished for good, whichever operation it is
//! and however it finished: every later poll returns `Done(Err(..))` saying so (never a `Send`,
//! `Store`, `Sleep` or `Wait`), and later reports (`handle_*`, `abandon`) change nothing.
//!
//! Deterministic: simulated time, and a canned registry answering the core's requests in
//! memory. Before this rule a finished `SendAs` polled again handed out a newly authorised
//! request (a driver that polled once too often sent a token again, anywhere it liked), a
//! `Call` or a `Revoke` sent its request again, and a `GetToken` or a `RevokeAll` answered
//! again.

use std::time::Duration;

use http::{Method, Request, Response};
use icr_app_core::{
    App, AppKey, Call, Error, GetJwt, GetToken, InstallationId, ListInstallations, Operation, RequestId, Revoke,
    RevokeAll, SendAs, Step, Timestamp, TokenScope, TokenState, TransportErrorKind,
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

fn installation() -> InstallationId {
    InstallationId::new("i-1").unwrap()
}

/// The registry, in memory: mints tokens that live an hour, one page of installations, revokes,
/// and answers 200 `{}` to anything else; every answer carries `Date` (its clock is ours).
struct Registry {
    minted: u32,
    /// Every request received: method, path, `Authorization` value.
    seen: Vec<(Method, String, Option<String>)>,
}

impl Registry {
    fn new() -> Self {
        Self {
            minted: 0,
            seen: Vec::new(),
        }
    }

    fn serve(&mut self, request: &Request<Vec<u8>>, now: Timestamp) -> Response<Vec<u8>> {
        let path = request.uri().path().to_owned();
        let auth = request
            .headers()
            .get("authorization")
            .map(|v| v.to_str().unwrap().to_owned());
        self.seen.push((request.method().clone(), path.clone(), auth));
        let (status, body) = if path.ends_with("/accessTokens") {
            self.minted += 1;
            let body = format!(
                r#"{{"token":"crs_{:040}","createdAt":"{}","expiresAt":"{}","permissions":{{}}}}"#,
                self.minted,
                now.to_rfc3339(),
                now.plus(Duration::from_secs(3600)).to_rfc3339()
            );
            (201, body)
        } else if path == "/app/installations" {
            (
                200,
                r#"{"installations":[{"id":"i-1"}],"pagination":{"total":1,"nextPage":null}}"#.to_owned(),
            )
        } else if path == "/app/installations/token" {
            (204, String::new())
        } else {
            (200, "{}".to_owned())
        };
        Response::builder()
            .status(status)
            .header("date", now.to_http_date())
            .header("content-type", "application/json")
            .body(body.into_bytes())
            .unwrap()
    }

    fn requests(&self) -> usize {
        self.seen.len()
    }
}

/// Drives `op` to `Done` against `registry` from `now`, sleeping and waiting in simulated time;
/// returns the result, the time it finished and the id of the last request it sent.
fn drive<O: Operation>(
    op: &mut O,
    app: &mut App,
    registry: &mut Registry,
    mut now: Timestamp,
) -> (Result<O::Output, Error>, Timestamp, Option<RequestId>) {
    let mut last = None;
    for _ in 0..100 {
        match op.poll(app, now) {
            Step::Done(result) => return (result, now, last),
            Step::Send { id, request } => {
                let response = registry.serve(&request, now);
                op.handle_response(app, id, response, now);
                last = Some(id);
            }
            Step::Sleep { until } | Step::Wait { until, .. } => now = until.max(now),
            Step::Store { .. } => panic!("no store is attached"),
            Step::Sign { .. } => panic!("the app has a key"),
        }
    }
    panic!("the operation did not finish in 100 polls")
}

/// A 401 whose `Date` is 25 days off ours: what a report after `Done` must not act on.
fn refusal_from_far_off(now: Timestamp) -> Response<Vec<u8>> {
    Response::builder()
        .status(401)
        .header("date", now.plus(Duration::from_secs(25 * 86_400)).to_http_date())
        .body(br#"{"statusCode":401,"message":"Unauthorized"}"#.to_vec())
        .unwrap()
}

/// Polls the finished `op` again, several times and later on, after every kind of late report
/// for `last` (its last request): each poll is `Done(Err)` saying it already finished; nothing
/// is sent, nothing changes in the app (clock, cached token, counters).
fn assert_finished_for_good<O: Operation>(
    op: &mut O,
    app: &mut App,
    registry: &Registry,
    now: Timestamp,
    last: Option<RequestId>,
) {
    let requests = registry.requests();
    let offset = app.clock_offset();
    let stats = app.stats();
    let state = token_of(app, now);
    let check = |op: &mut O, app: &mut App, at: Timestamp, when: &str| match op.poll(app, at) {
        Step::Done(Err(Error::Config { setting, problem })) => {
            assert_eq!(setting, "operation", "{when}");
            assert!(problem.contains("already finished"), "{when}: {problem}");
            assert!(problem.contains("start a new operation"), "{when}: {problem}");
        }
        Step::Done(Err(other)) => panic!("{when}: a finished operation failed with another error: {other}"),
        Step::Done(Ok(_)) => panic!("{when}: a finished operation answered again"),
        Step::Send { request, .. } => panic!(
            "{when}: a finished operation sent {} {} (authorised: {})",
            request.method(),
            request.uri(),
            request.headers().contains_key("authorization")
        ),
        Step::Store { .. } => panic!("{when}: a finished operation asked for a store command"),
        Step::Sign { .. } => panic!("{when}: a finished operation asked for a signature"),
        Step::Sleep { .. } => panic!("{when}: a finished operation slept"),
        Step::Wait { .. } => panic!("{when}: a finished operation waited"),
    };
    for at in [
        now,
        now.plus(Duration::from_secs(1)),
        now.plus(Duration::from_secs(7200)),
    ] {
        check(op, app, at, "polled again");
    }
    if let Some(id) = last {
        op.handle_response(app, id, refusal_from_far_off(now), now);
        op.handle_failure(
            app,
            id,
            Error::transport(TransportErrorKind::ConnectionLost, "late"),
            now,
        );
        op.handle_store(app, id, Err(Error::store(TransportErrorKind::Other, "late")), now);
    }
    check(op, app, now, "after late reports");
    op.abandon(app, now);
    check(op, app, now, "after abandon");
    assert_eq!(registry.requests(), requests, "nothing more was sent");
    assert_eq!(app.clock_offset(), offset, "a late report moved the clock");
    assert_eq!(app.stats(), stats, "a late report or a poll counted something");
    assert_eq!(token_of(app, now), state, "a late report changed the cached token");
}

/// The installation's cached token, as text (or its state's name).
fn token_of(app: &App, now: Timestamp) -> String {
    match app.token_state(&TokenScope::Installation(installation()), now) {
        TokenState::Valid(token) => token.secret().expose().to_owned(),
        other => format!("{other:?}"),
    }
}

#[test]
fn get_token_after_done() {
    let (mut app, mut registry) = (app(), Registry::new());
    let mut op = GetToken::new(TokenScope::Installation(installation()), None);
    let (result, now, last) = drive(&mut op, &mut app, &mut registry, t0());
    assert!(result.is_ok());
    assert_eq!(registry.minted, 1);
    assert_finished_for_good(&mut op, &mut app, &registry, now, last);

    // A hit is done at once, and done for good too.
    let mut hit = GetToken::new(TokenScope::Installation(installation()), None);
    let (result, now, last) = drive(&mut hit, &mut app, &mut registry, now);
    assert!(result.is_ok());
    assert_eq!(last, None);
    assert_finished_for_good(&mut hit, &mut app, &registry, now, last);
}

#[test]
fn get_jwt_after_done() {
    let (mut app, mut registry) = (app(), Registry::new());
    let mut op = GetJwt::new();
    let (result, now, last) = drive(&mut op, &mut app, &mut registry, t0());
    assert_eq!(result.unwrap().token().expose().split('.').count(), 3);
    assert_eq!((registry.requests(), last), (0, None));
    assert_finished_for_good(&mut op, &mut app, &registry, now, last);
}

#[test]
fn call_after_done() {
    let (mut app, mut registry) = (app(), Registry::new());
    let mut op = Call::installations_page(10, 0);
    let (result, now, last) = drive(&mut op, &mut app, &mut registry, t0());
    assert_eq!(result.unwrap().installations.len(), 1);
    assert_eq!(registry.requests(), 1);
    assert_finished_for_good(&mut op, &mut app, &registry, now, last);
}

#[test]
fn list_installations_after_done() {
    let (mut app, mut registry) = (app(), Registry::new());
    let mut op = ListInstallations::new(10);
    let (result, now, last) = drive(&mut op, &mut app, &mut registry, t0());
    assert_eq!(result.unwrap().len(), 1);
    assert_finished_for_good(&mut op, &mut app, &registry, now, last);
}

#[test]
fn send_as_after_done_never_authorises_again() {
    let (mut app, mut registry) = (app(), Registry::new());
    let request = app.api().request(Method::GET, "/projects", None).unwrap();
    let mut op = SendAs::new(TokenScope::Installation(installation()), request);
    let (result, now, last) = drive(&mut op, &mut app, &mut registry, t0());
    assert_eq!(result.unwrap().status(), 200);
    let authorised = registry.seen.iter().filter(|(_, path, _)| path == "/projects").count();
    assert_eq!(authorised, 1);
    // The late 401 (with a far-off Date) for its request neither drops the token nor moves
    // the clock.
    assert_finished_for_good(&mut op, &mut app, &registry, now, last);
    assert_eq!(registry.minted, 1);
}

#[test]
fn send_as_that_failed_is_finished_too() {
    let (mut app, mut registry) = (app(), Registry::new());
    let elsewhere = Request::get("https://elsewhere.example/x").body(Vec::new()).unwrap();
    let mut op = SendAs::new(TokenScope::App, elsewhere);
    let (result, now, last) = drive(&mut op, &mut app, &mut registry, t0());
    let error = result.unwrap_err();
    assert!(error.to_string().contains("not the configured registry"), "{error}");
    assert_finished_for_good(&mut op, &mut app, &registry, now, last);
    assert_eq!(registry.requests(), 0);
}

#[test]
fn revoke_after_done() {
    let (mut app, mut registry) = (app(), Registry::new());
    let mut get = GetToken::new(TokenScope::Installation(installation()), None);
    let token = drive(&mut get, &mut app, &mut registry, t0()).0.unwrap();
    let mut op = Revoke::new(token.secret().clone());
    let (result, now, last) = drive(&mut op, &mut app, &mut registry, t0());
    result.unwrap();
    let revokes = |r: &Registry| r.seen.iter().filter(|(m, _, _)| m == Method::DELETE).count();
    assert_eq!(revokes(&registry), 1);
    assert_finished_for_good(&mut op, &mut app, &registry, now, last);
    assert_eq!(revokes(&registry), 1);
}

#[test]
fn revoke_all_after_done() {
    let (mut app, mut registry) = (app(), Registry::new());
    let mut get = GetToken::new(TokenScope::Installation(installation()), None);
    drive(&mut get, &mut app, &mut registry, t0()).0.unwrap();
    let mut op = RevokeAll::new();
    let (result, now, last) = drive(&mut op, &mut app, &mut registry, t0());
    assert_eq!(result.unwrap(), 1);
    assert_finished_for_good(&mut op, &mut app, &registry, now, last);
}
