//! A mint refused with an absurd `Retry-After` blocks the installation for the cache's cap
//! (`CacheConfig::max_retry_after`, 300 s by default), and the error the caller gets states that
//! wait, not the one the registry asked for. Deterministic: simulated time, a canned answer.

use std::time::Duration;

use icr_app_core::{
    App, AppKey, GetToken, InstallationId, Operation, RetryPolicy, Step, Timestamp, TokenScope, TokenState,
};

#[test]
fn a_retry_after_beyond_the_cap_is_reported_as_the_capped_wait() {
    let key = AppKey::from_pem(include_str!("fixtures/keys/rsa2048-pkcs8.pem")).unwrap();
    let mut app = App::builder("d23967cc-dd16-452b-8af4-869965745978", key)
        .base_url("https://registry.example")
        .retry(RetryPolicy::never())
        .build()
        .unwrap();
    let scope = TokenScope::Installation(InstallationId::new("i-1").unwrap());
    let now = Timestamp::from_unix_seconds(1_700_000_000);
    let mut op = GetToken::new(scope.clone(), None);
    let Step::Send { id, .. } = op.poll(&mut app, now) else {
        panic!("the first poll mints")
    };
    let busy = http::Response::builder()
        .status(429)
        .header("retry-after", "99999999")
        .header("date", now.to_http_date())
        .body(br#"{"statusCode":429,"message":"Too Many Requests"}"#.to_vec())
        .unwrap();
    op.handle_response(&mut app, id, busy, now);
    let Step::Done(Err(error)) = op.poll(&mut app, now) else {
        panic!("no retries: the 429 is the answer")
    };
    let text = error.to_string();
    assert!(text.contains("retry after 300 s"), "{text}");
    assert!(!text.contains("86400") && !text.contains("99999999"), "{text}");
    assert_eq!(error.retry_after(), Some(Duration::from_secs(300)));
    // And that is the wait kept: the scope is blocked until then, and its state says the same.
    let TokenState::Failed { error, retry_at, .. } = app.token_state(&scope, now) else {
        panic!("the failure is recorded")
    };
    assert_eq!(retry_at, now.plus(Duration::from_secs(300)));
    assert!(error.to_string().contains("retry after 300 s"), "{error}");
}
