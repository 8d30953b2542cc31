//! The change counter: `App::changes` moves on every report to an operation and every abandon,
//! and a `Step::Wait` carries its value when the wait was decided, so a driver can wait on
//! anything that compares two numbers (no wake-up of its own): poll again once
//! `app.changes() != change`.
//!
//! Deterministic: fixed time, canned responses.

use std::time::Duration;

use http::Response;
use icr_app_core::{
    App, AppKey, Error, GetToken, InstallationId, Operation, Refresher, RequestId, Step, Timestamp, TokenScope,
    TransportErrorKind,
};

fn app() -> App {
    let key = AppKey::from_pem(include_str!("fixtures/keys/rsa2048-pkcs8.pem")).unwrap();
    App::builder("d23967cc-dd16-452b-8af4-869965745978", key)
        .base_url("https://registry.example")
        .build()
        .unwrap()
}

fn now() -> Timestamp {
    Timestamp::from_unix_seconds(1_700_000_000)
}

fn scope() -> TokenScope {
    TokenScope::Installation(InstallationId::new("i-1").unwrap())
}

fn minted(now: Timestamp) -> Response<Vec<u8>> {
    let body = format!(
        r#"{{"token":"crs_{:040}","createdAt":"{}","expiresAt":"{}","permissions":{{}}}}"#,
        1,
        now.to_rfc3339(),
        now.plus(Duration::from_secs(3600)).to_rfc3339()
    );
    Response::builder()
        .status(201)
        .header("date", now.to_http_date())
        .body(body.into_bytes())
        .unwrap()
}

fn sent<T: std::fmt::Debug>(step: Step<T>) -> RequestId {
    match step {
        Step::Send { id, .. } => id,
        other => panic!("expected a send, got {other:?}"),
    }
}

fn waited<T: std::fmt::Debug>(step: Step<T>) -> (Timestamp, u64) {
    match step {
        Step::Wait { until, change } => (until, change),
        other => panic!("expected a wait, got {other:?}"),
    }
}

/// A second caller for a scope being minted waits with the counter's value; while nothing is
/// reported the counter stays there (waiting on it does not spin), and the mint's answer moves
/// it, after which the waiter finds the token.
#[test]
fn a_wait_is_over_once_another_operation_reports() {
    let mut app = app();
    let mut first = GetToken::new(scope(), None);
    let mut second = GetToken::new(scope(), None);
    let mint = sent(first.poll(&mut app, now()));

    let (_, change) = waited(second.poll(&mut app, now()));
    assert_eq!(app.changes(), change, "nothing happened since the wait was decided");
    // Polled again with nothing reported: the same wait, at the same count.
    let (_, again) = waited(second.poll(&mut app, now()));
    assert_eq!(again, change);
    assert_eq!(app.changes(), change);

    first.handle_response(&mut app, mint, minted(now()), now());
    assert_ne!(app.changes(), change, "the mint's answer ends the wait");
    let Step::Done(Ok(token)) = second.poll(&mut app, now()) else {
        panic!("the waiter finds the token")
    };
    let Step::Done(Ok(same)) = first.poll(&mut app, now()) else {
        panic!("the minter hands it out")
    };
    assert!(token.same_as(&same));
}

/// A failure and an abandon move the counter too; a finished operation's reports do not.
#[test]
fn failures_and_abandons_move_the_counter() {
    let mut app = app();
    let mut first = GetToken::new(scope(), None);
    let mut second = GetToken::new(scope(), None);
    let mint = sent(first.poll(&mut app, now()));
    let (_, change) = waited(second.poll(&mut app, now()));
    let failure = Error::Transport {
        kind: TransportErrorKind::ConnectionLost,
        message: "reset".into(),
    };
    first.handle_failure(&mut app, mint, failure, now());
    assert_ne!(app.changes(), change);

    let mut third = GetToken::new(TokenScope::App, None);
    let mut fourth = GetToken::new(TokenScope::App, None);
    let _ = sent(third.poll(&mut app, now()));
    let (_, change) = waited(fourth.poll(&mut app, now()));
    assert_eq!(app.changes(), change);
    third.abandon(&mut app, now());
    assert_ne!(app.changes(), change, "an abandoned mint ends the wait");
    let mint = sent(fourth.poll(&mut app, now()));
    fourth.handle_response(&mut app, mint, minted(now()), now());
    assert!(matches!(fourth.poll(&mut app, now()), Step::Done(Ok(_))));

    let settled = app.changes();
    fourth.handle_response(&mut app, mint, minted(now()), now());
    fourth.abandon(&mut app, now());
    assert_eq!(
        app.changes(),
        settled,
        "a finished operation ignores reports, uncounted"
    );
}

/// A refresher with nothing due waits on the counter too: a token cached meanwhile (another
/// operation's report) is its cue to look again.
#[test]
fn a_refresher_wait_carries_the_counter() {
    let mut app = app();
    let mut refresher = Refresher::new();
    let (_, idle) = waited(refresher.poll(&mut app, now()));
    assert_eq!(app.changes(), idle);
    let mut op = GetToken::new(scope(), None);
    let mint = sent(op.poll(&mut app, now()));
    assert_eq!(app.changes(), idle, "a poll is not a report");
    op.handle_response(&mut app, mint, minted(now()), now());
    assert_ne!(app.changes(), idle);
    let (until, change) = waited(refresher.poll(&mut app, now()));
    assert_eq!(change, app.changes());
    assert!(until > now());
}
