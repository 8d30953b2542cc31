//! Every public type that holds a secret, and every error, formatted with `{:?}` and `{}`:
//! no private key material, JWT, token or webhook secret may appear.

use std::sync::Arc;

use base64::Engine as _;
use icr_app_core::webhook::{self, Delivery, WebhookSecret};
use icr_app_core::{
    AccessToken, ApiConfig, ApiMessage, App, AppId, AppKey, CacheConfig, ClockOffset, Credential, Error,
    InstallationId, JwtSigner, KeyError, SecretString, Timestamp, Token, TokenCache, TokenScope, TransportErrorKind,
    WebhookError,
};

const TOKEN: &str = "crs_19c9bd530ccd3e1187eed12dc4edb70abe757fc4c7be9c5b";
const WEBHOOK_SECRET: &str = "whsec-very-secret-value-0123456789";
const PEM: &str = include_str!("fixtures/keys/rsa2048-pkcs1.pem");

/// Fragments whose presence in any output would be a leak.
fn secrets(jwt: &str) -> Vec<String> {
    let mut s = vec![
        TOKEN.to_owned(),
        TOKEN[4..20].to_owned(),
        WEBHOOK_SECRET.to_owned(),
        jwt.to_owned(),
    ];
    s.extend(jwt.split('.').map(str::to_owned));
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

#[test]
fn nothing_secret_is_ever_formatted() {
    let key = AppKey::from_pem(PEM).unwrap();
    let signer = JwtSigner::new(AppId::new("app-1").unwrap(), Arc::new(key.clone()));
    let jwt = signer
        .mint_at(Timestamp::from_unix_seconds(1_700_000_000), ClockOffset::default())
        .unwrap();
    let secrets = secrets(jwt.token().expose());
    let now = Timestamp::from_unix_seconds(1_900_000_000);
    let token = Token::new(access_token(), now, 0, &CacheConfig::default());
    let mut cache: TokenCache<TokenScope> = TokenCache::new(CacheConfig::default(), 1);
    cache.insert(TokenScope::App, token.clone());
    let mut app = App::new(ApiConfig::new(), AppId::new("app-1").unwrap(), Arc::new(key.clone()));
    app.cache_mut().insert(TokenScope::App, token.clone());
    let webhook_secret = WebhookSecret::new(WEBHOOK_SECRET).unwrap();
    let delivery = Delivery::new(&webhook_secret, &serde_json::json!({"event": "installed"}));
    let env_settings = icr_app_core::env::Settings {
        private_key: Some(PEM.to_owned()),
        ..Default::default()
    };

    let debug_only: Vec<(&str, String)> = vec![
        ("AppKey", format!("{key:?}")),
        ("JwtSigner", format!("{signer:?}")),
        ("AppJwt", format!("{jwt:?}")),
        ("AccessToken", format!("{:?}", access_token())),
        ("Token", format!("{token:?}")),
        ("TokenCache", format!("{cache:?}")),
        ("TokenState", format!("{:?}", cache.state(&TokenScope::App, now))),
        ("App", format!("{app:?}")),
        ("Settings", format!("{env_settings:?}")),
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
    for (what, text) in &debug_only {
        assert_clean(what, text, &secrets);
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
