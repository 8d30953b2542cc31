//! An app without a private key: the JWT's signature is a step the driver performs
//! (`Step::Sign`: the bytes out, the signature or the signer's failure back), once however many
//! operations need it, and the JWT it completes is the very one the core would have signed with
//! the key (RS256 is deterministic).
//!
//! Deterministic: simulated time, answers built in memory.

use std::time::Duration;

use http::{Request, Response};
use icr_app_core::{
    App, AppKey, Call, Error, GetJwt, GetToken, InstallationId, ListInstallations, Operation, Signer, Step,
    StoreSettings, Timestamp, TokenScope,
};

const APP_ID: &str = "d23967cc-dd16-452b-8af4-869965745978";

fn key() -> AppKey {
    AppKey::from_pem(include_str!("fixtures/keys/rsa2048-pkcs8.pem")).unwrap()
}

fn keyless() -> App {
    App::builder_without_key(APP_ID).build().unwrap()
}

fn t0() -> Timestamp {
    Timestamp::from_unix_seconds(1_700_000_000)
}

fn scope(id: &str) -> TokenScope {
    TokenScope::Installation(InstallationId::new(id).unwrap())
}

fn bearer(request: &Request<Vec<u8>>) -> String {
    request.headers()["authorization"].to_str().unwrap().to_owned()
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

#[test]
fn one_signature_serves_every_operation_and_is_the_jwt_the_key_would_make() {
    let mut app = keyless();
    assert!(app.signs_outside());
    let now = t0();
    let mut a = GetToken::new(scope("i-1"), None);
    let mut b = GetToken::new(scope("i-2"), None);
    let mut call = Call::installations_page(10, 0);

    let Step::Sign { id, message } = a.poll(&mut app, now) else {
        panic!("the first signs")
    };
    let change = app.changes();
    let Step::Wait { change: waited, .. } = b.poll(&mut app, now) else {
        panic!("the second waits for it")
    };
    assert_eq!(waited, change);
    assert!(
        matches!(call.poll(&mut app, now), Step::Wait { .. }),
        "a JWT call waits too"
    );

    // The signer signs outside the lock (here: the key itself, as a KMS would).
    let signature = key().sign_rs256(&message).unwrap();
    b.handle_signature(&mut app, id, Ok(signature), now); // any operation may report it
    assert_ne!(app.changes(), change, "the report wakes the waiters");

    let Step::Send { request: ra, .. } = a.poll(&mut app, now) else {
        panic!("then it mints")
    };
    let Step::Send { request: rb, .. } = b.poll(&mut app, now) else {
        panic!()
    };
    let Step::Send { request: rc, .. } = call.poll(&mut app, now) else {
        panic!()
    };
    assert_eq!(ra.uri().path(), "/app/installations/i-1/accessTokens");
    assert_eq!(bearer(&ra), bearer(&rb));
    assert_eq!(bearer(&ra), bearer(&rc));

    // Byte for byte the JWT the core signs with the key.
    let mut keyed = App::builder(APP_ID, key()).build().unwrap();
    let jwt = keyed.jwt(now).unwrap();
    assert_eq!(bearer(&ra), format!("Bearer {}", jwt.token().expose()));
}

#[test]
fn a_signer_failure_is_the_error_of_every_operation_that_needed_it() {
    let mut app = keyless();
    let now = t0();
    let mut a = GetToken::new(scope("i-1"), None);
    let mut b = Call::installation(InstallationId::new("i-2").unwrap());
    let Step::Sign { id, .. } = a.poll(&mut app, now) else {
        panic!()
    };
    assert!(matches!(b.poll(&mut app, now), Step::Wait { .. }));
    a.handle_signature(&mut app, id, Err(Error::Signing("KMS: AccessDenied".into())), now);
    for step in [a.poll(&mut app, now).map(|_| ()), b.poll(&mut app, now).map(|_| ())] {
        let Step::Done(Err(error)) = step else {
            panic!("the failure ends both")
        };
        let text = error.to_string();
        assert!(text.contains("KMS: AccessDenied") && text.contains("signer"), "{text}");
    }
    // The next operation asks again (a signer that failed once may work now).
    let mut c = GetJwt::new();
    assert!(matches!(c.poll(&mut app, now), Step::Sign { .. }));
}

#[test]
fn an_abandoned_signing_is_asked_again_at_once_and_a_late_signature_changes_nothing() {
    let mut app = keyless();
    let now = t0();
    let mut a = GetToken::new(scope("i-1"), None);
    let Step::Sign { id: first, .. } = a.poll(&mut app, now) else {
        panic!()
    };
    a.abandon(&mut app, now);
    let mut b = GetJwt::new();
    let Step::Sign { id: second, message } = b.poll(&mut app, now) else {
        panic!("not a wait for the abandoned one")
    };
    assert_ne!(first, second);
    // The abandoned one's late answer is ignored; the awaited one completes the JWT.
    let change = app.changes();
    b.handle_signature(&mut app, first, Ok(vec![1; 256]), now);
    assert_eq!(app.changes(), change, "a late answer changes nothing");
    b.handle_signature(&mut app, second, Ok(key().sign_rs256(&message).unwrap()), now);
    let Step::Done(Ok(jwt)) = b.poll(&mut app, now) else {
        panic!()
    };
    assert!(jwt.expires_at() > now);
    // Reused: no signature for the next nine minutes' operations, one after.
    assert!(matches!(
        GetJwt::new().poll(&mut app, now.plus(Duration::from_secs(470))),
        Step::Done(Ok(_))
    ));
    assert!(matches!(
        GetJwt::new().poll(&mut app, now.plus(Duration::from_secs(490))),
        Step::Sign { .. }
    ));
}

#[test]
fn a_skew_retry_signs_again_for_the_registrys_clock() {
    let mut app = keyless();
    let now = t0();
    let mut op = GetToken::new(scope("i-1"), None);
    let Step::Sign { id, message } = op.poll(&mut app, now) else {
        panic!()
    };
    op.handle_signature(&mut app, id, Ok(key().sign_rs256(&message).unwrap()), now);
    let Step::Send { id, request } = op.poll(&mut app, now) else {
        panic!()
    };
    let first = bearer(&request);
    // Refused, and the registry's clock is two hours ahead: signed again, for its clock.
    let ahead = now.plus(Duration::from_secs(7200));
    let refused = Response::builder()
        .status(401)
        .header("date", ahead.to_http_date())
        .body(br#"{"statusCode":401,"message":"jwt expired"}"#.to_vec())
        .unwrap();
    op.handle_response(&mut app, id, refused, now);
    let Step::Sign { id: again, message } = op.poll(&mut app, now) else {
        panic!("a new signature")
    };
    op.handle_signature(&mut app, again, Ok(key().sign_rs256(&message).unwrap()), now);
    let Step::Send { id, request } = op.poll(&mut app, now) else {
        panic!("sent once more")
    };
    assert_ne!(bearer(&request), first);
    op.handle_response(&mut app, id, minted(ahead), now);
    let Step::Done(Ok(token)) = op.poll(&mut app, now) else {
        panic!()
    };
    assert!(token.secret().expose().starts_with("crs_"));
}

#[test]
fn an_empty_signature_and_a_missing_signer_say_what_to_do() {
    let mut app = keyless();
    let now = t0();
    let mut op = GetJwt::new();
    let Step::Sign { id, .. } = op.poll(&mut app, now) else {
        panic!()
    };
    op.handle_signature(&mut app, id, Ok(Vec::new()), now);
    let Step::Done(Err(error)) = op.poll(&mut app, now) else {
        panic!()
    };
    assert!(error.to_string().contains("RS256"), "{error}");
    // Without a signed JWT, the app's own `jwt` says how one is had.
    let error = app.jwt(now).unwrap_err().to_string();
    assert!(
        error.contains("no private key") && error.contains("Step::Sign"),
        "{error}"
    );
}

#[test]
fn a_shared_store_needs_a_sealing_secret_given_explicitly() {
    let mut app = keyless();
    let error = app.attach_store(StoreSettings::default(), 1).unwrap_err().to_string();
    assert!(error.contains("sealing_secret"), "{error}");
    let short = App::builder_without_key(APP_ID).sealing_secret(b"too short").build();
    assert!(short.unwrap_err().to_string().contains("32 bytes"));
    let mut app = App::builder_without_key(APP_ID)
        .sealing_secret(&[7; 32])
        .build()
        .unwrap();
    app.attach_store(StoreSettings::default(), 1).unwrap();
    let keyed = App::builder(APP_ID, key()).sealing_secret(&[7; 32]).build();
    assert!(keyed.unwrap_err().to_string().contains("derived from the key"));
}

#[test]
fn an_abandoned_page_listing_releases_the_signature_it_asked_for() {
    let mut app = keyless();
    let now = t0();
    let mut list = ListInstallations::new(10);
    let Step::Sign { id, .. } = list.poll(&mut app, now) else {
        panic!("it signs first")
    };
    list.abandon(&mut app, now);
    let Step::Sign { id: again, .. } = GetJwt::new().poll(&mut app, now) else {
        panic!("not a wait for the abandoned listing's signature")
    };
    assert_ne!(id, again);
}

#[test]
fn polled_again_without_an_answer_a_signing_is_asked_for_anew() {
    let mut app = keyless();
    let now = t0();
    let mut op = GetJwt::new();
    let Step::Sign { id: first, .. } = op.poll(&mut app, now) else {
        panic!()
    };
    // The driver could not reach its signer and polls again: a new signing, not a wait on its own.
    let Step::Sign { id: second, message } = op.poll(&mut app, now) else {
        panic!("asked anew")
    };
    assert_ne!(first, second);
    op.handle_signature(&mut app, second, Ok(key().sign_rs256(&message).unwrap()), now);
    assert!(matches!(op.poll(&mut app, now), Step::Done(Ok(_))));
}
