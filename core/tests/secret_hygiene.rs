//! Every public type that holds a secret, and every error, formatted with `{:?}` and `{}`:
//! no private key material, JWT, token or webhook secret may appear.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use icr_app_core::webhook::{self, Delivery, WebhookSecret};
use icr_app_core::{
    AccessToken, ApiMessage, App, AppId, AppKey, CacheConfig, Call, ClockOffset, Credential, Error, GetToken,
    InstallationId, InstallationsPage, JwtSigner, KeyError, Operation, Refresher, Revoke, RevokeAll, SecretString,
    SendAs, Step, Timestamp, Token, TokenScope, TransportErrorKind, WebhookError,
};

const TOKEN: &str = "crs_19c9bd530ccd3e1187eed12dc4edb70abe757fc4c7be9c5b";
const WEBHOOK_SECRET: &str = "whsec-very-secret-value-0123456789";
const PEM: &str = include_str!("fixtures/keys/rsa2048-pkcs1.pem");

/// Fragments whose presence in any output would be a leak.
fn secrets(jwts: &[&str]) -> Vec<String> {
    let mut s = vec![TOKEN.to_owned(), TOKEN[4..20].to_owned(), WEBHOOK_SECRET.to_owned()];
    for jwt in jwts {
        s.push((*jwt).to_owned());
        s.extend(jwt.split('.').map(str::to_owned));
    }
    // Every base64 line of the private key.
    s.extend(
        PEM.lines()
            .filter(|l| !l.starts_with("-----") && l.len() > 16)
            .map(str::to_owned),
    );
    s
}

fn assert_clean(what: &str, text: &str, secrets: &[String]) {
    for secret in secrets {
        assert!(!text.contains(secret.as_str()), "{what} leaks a secret: {text}");
    }
}

fn access_token() -> AccessToken {
    serde_json::from_value(serde_json::json!({
        "token": TOKEN, "expiresAt": "2030-01-01T00:00:00Z", "createdAt": "2029-12-31T22:00:00Z",
        "permissions": {"organization_info": "VIEW"}, "installationId": "i-1"
    }))
    .unwrap()
}

/// A minute after the fixture token's `createdAt`.
const NOW: i64 = 1_893_448_860;

/// A response from the registry, its clock `server_ahead` seconds ahead of ours at `now`.
fn registry_response(
    status: u16,
    now: Timestamp,
    server_ahead: i64,
    body: impl Into<Vec<u8>>,
) -> http::Response<Vec<u8>> {
    http::Response::builder()
        .status(status)
        .header("date", now.offset_by(server_ahead * 1000).to_http_date())
        .body(body.into())
        .unwrap()
}

/// The fixture token, as the registry answers a mint.
fn token_body() -> Vec<u8> {
    serde_json::to_vec(&access_token()).unwrap()
}

fn sent<T>(step: &Step<T>) -> icr_app_core::RequestId {
    match step {
        Step::Send { id, .. } => *id,
        other => panic!("expected a send, got {other:?}", other = std::mem::discriminant(other)),
    }
}

#[test]
fn nothing_secret_is_ever_formatted() {
    let key = AppKey::from_pem(PEM).unwrap();
    let signer = JwtSigner::new(AppId::new("app-1").unwrap(), Arc::new(key.clone()));
    let jwt = signer
        .mint_at(Timestamp::from_unix_seconds(1_700_000_000), ClockOffset::default())
        .unwrap();
    let now = Timestamp::from_unix_seconds(NOW);
    let token = Token::new(access_token(), now, 0, &CacheConfig::default());
    let mut app = App::builder("app-1", key.clone()).build().unwrap();
    // The JWT the app signs its mints with (cached for the requests below).
    let app_jwt = app.jwt(now).unwrap();
    let secrets = secrets(&[jwt.token().expose(), app_jwt.token().expose()]);
    let webhook_secret = WebhookSecret::new(WEBHOOK_SECRET).unwrap();
    let delivery = Delivery::new(&webhook_secret, &serde_json::json!({"event": "installed"}));

    let mut debug_only: Vec<(&str, String)> = vec![
        ("AppKey", format!("{key:?}")),
        ("JwtSigner", format!("{signer:?}")),
        ("AppJwt", format!("{jwt:?} {app_jwt:?}")),
        ("AccessToken", format!("{:?}", access_token())),
        ("Token", format!("{token:?}")),
        ("WebhookSecret", format!("{webhook_secret:?} {webhook_secret}")),
        (
            "SecretString",
            format!("{:?} {}", SecretString::new(TOKEN), SecretString::new(TOKEN)),
        ),
        (
            "Installation scope",
            format!("{:?}", TokenScope::Installation(InstallationId::new("i-1").unwrap())),
        ),
    ];

    // The token cache, through the operations: a mint (its request carries the app JWT), the
    // operation holding the answer, and the token it hands out.
    let mut get = GetToken::new(TokenScope::App, None);
    let step = get.poll(&mut app, now);
    let id = sent(&step);
    debug_only.push(("Step::Send (a mint, with the app JWT)", format!("{step:?}")));
    debug_only.push(("GetToken, minting", format!("{get:?}")));
    debug_only.push((
        "TokenState::Fetching",
        format!("{:?}", app.token_state(&TokenScope::App, now)),
    ));
    get.handle_response(&mut app, id, registry_response(200, now, 0, token_body()), now);
    debug_only.push(("GetToken, answered", format!("{get:?}")));
    let done = get.poll(&mut app, now);
    debug_only.push(("Step::Done(Ok(Token))", format!("{done:?}")));
    let Step::Done(Ok(minted)) = done else {
        panic!("the mint is answered")
    };
    assert_eq!(minted.secret().expose(), TOKEN, "the fixture token is the one cached");
    debug_only.push((
        "TokenState::Valid",
        format!("{:?}", app.token_state(&TokenScope::App, now)),
    ));
    debug_only.push(("App, a token cached", format!("{app:?}")));

    // A request sent with the cached token.
    let request = http::Request::get("https://api.carbonregistry.com/app/organization")
        .body(Vec::new())
        .unwrap();
    let mut send = SendAs::new(TokenScope::App, request.clone());
    let step = send.poll(&mut app, now);
    sent(&step);
    debug_only.push(("Step::Send (with the token)", format!("{step:?}")));
    debug_only.push(("SendAs, sent", format!("{send:?}")));
    send.abandon(&mut app, now);

    // An app-JWT call.
    let mut call = Call::<InstallationsPage>::request(request, true);
    let step = call.poll(&mut app, now);
    sent(&step);
    debug_only.push(("Call, sent", format!("{call:?} {step:?}")));
    call.abandon(&mut app, now);

    // A background refresh, refused for clock skew: the refresher holds the re-signed mint.
    let later = minted.refresh_at();
    let mut refresher = Refresher::new();
    let step = refresher.poll(&mut app, later);
    let id = sent(&step);
    debug_only.push(("Step::Send (a refresh)", format!("{step:?}")));
    debug_only.push((
        "TokenState::Refreshing",
        format!("{:?}", app.token_state(&TokenScope::App, later)),
    ));
    refresher.handle_response(&mut app, id, registry_response(401, later, 3600, &b"{}"[..]), later);
    let step = refresher.poll(&mut app, later);
    assert_eq!(id, sent(&step), "the refused refresh is sent again, re-signed");
    debug_only.push(("Refresher, re-signed mint", format!("{refresher:?} {step:?}")));
    refresher.abandon(&mut app, later);

    // Revoking: one token, and every cached token.
    let mut revoke = Revoke::new(SecretString::new(TOKEN));
    debug_only.push(("Revoke", format!("{revoke:?}")));
    let step = revoke.poll(&mut app, later);
    sent(&step);
    debug_only.push(("Step::Send (a revocation)", format!("{step:?} {revoke:?}")));
    let mut revoke_all = RevokeAll::new();
    let step = revoke_all.poll(&mut app, later);
    sent(&step);
    debug_only.push(("RevokeAll, revoking", format!("{revoke_all:?} {step:?}")));
    revoke_all.abandon(&mut app, later);
    debug_only.push(("App, drained", format!("{app:?}")));

    for (what, text) in &debug_only {
        assert_clean(what, text, &secrets);
        // The requests are shown, their credentials hidden.
        if what.starts_with("Step::Send") {
            assert!(text.contains("Sensitive"), "{what}: {text}");
        }
    }

    // Every error variant, including those built from bodies and inputs that contain secrets.
    let body_with_token =
        format!(r#"{{"statusCode":401,"message":"token {TOKEN} is invalid","error":"Unauthorized"}}"#);
    let mut errors: Vec<Error> = vec![
        Error::Signing("hsm".into()),
        Error::Config {
            setting: "x",
            problem: "y".into(),
        },
        Error::Unauthorized {
            credential: Credential::AppJwt,
            clock_skew: Some(7_200_000),
            api: ApiMessage::from_body(body_with_token.as_bytes()),
        },
        Error::Unauthorized {
            credential: Credential::AccessToken,
            clock_skew: None,
            api: ApiMessage::default(),
        },
        Error::Forbidden {
            api: ApiMessage::from_body(body_with_token.as_bytes()),
        },
        Error::NotFound {
            api: ApiMessage::default(),
            organization: None,
        },
        Error::RateLimited {
            retry_after: Some(std::time::Duration::from_secs(3)),
            api: ApiMessage::default(),
        },
        Error::Server {
            status: 503,
            retry_after: None,
            api: ApiMessage::default(),
        },
        Error::UnexpectedStatus {
            status: 400,
            api: ApiMessage::default(),
        },
        Error::Transport {
            kind: TransportErrorKind::ConnectionLost,
            message: "reset".into(),
        },
        Error::UnknownRequest(7),
    ];
    // A malformed token response carrying the token.
    let response = http::Response::builder()
        .status(200)
        .body(format!(r#"{{"token":"{TOKEN}","expiresAt":"not a date"}}"#).into_bytes())
        .unwrap();
    errors.push(icr_app_core::response::parse_json::<AccessToken>(&response, Credential::AppJwt).unwrap_err());
    // The same through a mint, and a 401 whose body echoes the JWT and the token.
    let mut app = App::builder("app-1", key.clone())
        .retry(icr_app_core::RetryPolicy::never())
        .build()
        .unwrap();
    let bodies = [
        (200, format!(r#"{{"token":"{TOKEN}","expiresAt":"not a date"}}"#)),
        (
            401,
            format!(
                r#"{{"statusCode":401,"message":"jwt {} refused, and {TOKEN} too","error":"Unauthorized"}}"#,
                app_jwt.token().expose()
            ),
        ),
        // Already expired on the registry's clock.
        (200, String::from_utf8(token_body()).unwrap()),
    ];
    for (i, (status, body)) in bodies.into_iter().enumerate() {
        let scope = TokenScope::Installation(InstallationId::new(format!("i-{i}")).unwrap());
        let mut get = GetToken::new(scope, None);
        let id = sent(&get.poll(&mut app, now));
        let server_ahead = if i == 2 { 7200 } else { 0 };
        get.handle_response(&mut app, id, registry_response(status, now, server_ahead, body), now);
        match get.poll(&mut app, now) {
            Step::Done(Err(e)) => errors.push(e),
            other => panic!("{i}: expected an error, got {:?}", std::mem::discriminant(&other)),
        }
    }
    // A token that can never live as long as asked.
    let mut get = GetToken::new(TokenScope::App, Some(Duration::from_secs(3 * 3600)));
    let id = sent(&get.poll(&mut app, now));
    get.handle_response(&mut app, id, registry_response(200, now, 0, token_body()), now);
    match get.poll(&mut app, now) {
        Step::Done(Err(e)) => errors.push(e),
        other => panic!("min_life: expected an error, got {:?}", std::mem::discriminant(&other)),
    }
    // Key errors from inputs that are close to the real key.
    for bad in [
        PEM.replace("RSA PRIVATE", "EC PRIVATE"),
        PEM[..PEM.len() / 2].to_owned(),
        PEM.replace('M', "*"),
    ] {
        errors.push(AppKey::from_pem(&bad).unwrap_err().into());
    }
    errors.push(Error::Key(KeyError::Empty));
    // Webhook errors from deliveries signed with the secret.
    let signature = webhook::sign(&webhook_secret, "eyJldmVudCI6Imluc3RhbGxlZCJ9");
    for (header, body) in [
        (None, delivery.body.clone()),
        (Some(signature.as_str()), delivery.body.clone()),
        (Some("sha1=abc"), delivery.body.clone()),
        (Some(delivery.signature.as_str()), b"not json".to_vec()),
    ] {
        if let Err(e) = webhook::verify(&webhook_secret, header, &body) {
            errors.push(e.into());
        }
    }
    errors.push(Error::Webhook(WebhookError::Mismatch));
    assert!(errors.len() > 15);
    for e in &errors {
        assert_clean("error", &format!("{e} {e:?}"), &secrets);
    }
    // The key's own base64 never appears even in a decoded form of the fingerprint.
    let _ = base64::engine::general_purpose::STANDARD
        .decode(key.fingerprint())
        .unwrap();
}
