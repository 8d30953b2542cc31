//! The fake registry over real loopback HTTP, driven by a plain HTTP client and JWTs signed here
//! with ring (not with the SDK it exists to check).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use icr_app_testkit::{
    DEMO_PRIVATE_KEY_PEM, FakeRegistry, Fault, FaultRates, InjectedFaults, OTHER_PRIVATE_KEY_PEM, TestkitError,
    TokenStatus,
};
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};

const APP: &str = "app-1";

fn der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).unwrap()
}

fn now() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs() as i64
}

fn jwt_with(pem: &str, header: &str, claims: serde_json::Value) -> String {
    let pair = RsaKeyPair::from_pkcs8(&der(pem)).unwrap();
    let input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(header),
        URL_SAFE_NO_PAD.encode(claims.to_string())
    );
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(
        &RSA_PKCS1_SHA256,
        &ring::rand::SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig))
}

fn jwt(iat: i64, exp: i64) -> String {
    jwt_with(
        DEMO_PRIVATE_KEY_PEM,
        r#"{"alg":"RS256","typ":"JWT"}"#,
        serde_json::json!({"iat": iat, "exp": exp, "iss": APP}),
    )
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .max_redirects(0)
        .build()
        .into()
}

fn call(
    method: &str,
    url: &str,
    bearer: Option<&str>,
    body: Option<&str>,
) -> Result<(u16, serde_json::Value, http::HeaderMap), ureq::Error> {
    let mut req = http::Request::builder()
        .method(method)
        .uri(url)
        .header("x-icr-api-version", "2023-06-16");
    if let Some(b) = bearer {
        req = req.header("authorization", format!("Bearer {b}"));
    }
    let response = agent().run(req.body(body.unwrap_or("").to_owned()).unwrap())?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let text = response.into_body().read_to_string().unwrap_or_default();
    Ok((
        status,
        serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text)),
        headers,
    ))
}

fn setup(installations: usize) -> (FakeRegistry, Vec<String>) {
    let r = FakeRegistry::start();
    r.register_app_with_private_key(APP, DEMO_PRIVATE_KEY_PEM).unwrap();
    let ids = (0..installations)
        .map(|i| r.add_installation(APP, &format!("Org {i}"), &[("organization_info", "VIEW")]))
        .collect();
    (r, ids)
}

#[test]
fn mints_serves_and_revokes() {
    let (r, ids) = setup(1);
    let base = r.base_url();
    let (status, token, headers) = call(
        "POST",
        &format!("{base}/app/installations/{}/accessTokens", ids[0]),
        Some(&jwt(now() - 60, now() + 540)),
        Some("{}"),
    )
    .unwrap();
    assert_eq!(status, 200, "{token}");
    assert!(headers.contains_key("date"));
    let t = token["token"].as_str().unwrap();
    assert!(t.starts_with("crs_") && t.len() == 52);
    assert_eq!(token["installationId"], ids[0].as_str());
    assert_eq!(token["permissions"]["organization_info"], "VIEW");
    assert_eq!(r.mint_count(&ids[0]), 1);

    let org = r.organization_id(&ids[0]).unwrap();
    assert_eq!(
        call("GET", &format!("{base}/organizations/{org}"), Some(t), None)
            .unwrap()
            .0,
        200
    );
    assert_eq!(
        call("GET", &format!("{base}/organizations/{org}/inventory"), Some(t), None)
            .unwrap()
            .0,
        403,
        "no inventory permission"
    );
    assert_eq!(call("GET", &format!("{base}/projects"), Some(t), None).unwrap().0, 200);
    assert_eq!(
        call("DELETE", &format!("{base}/app/installations/token"), Some(t), None)
            .unwrap()
            .0,
        200
    );
    let (status, body, _) = call("GET", &format!("{base}/projects"), Some(t), None).unwrap();
    assert_eq!(status, 401);
    assert_eq!(body["statusCode"], 401);
    assert_eq!(body["error"], "Unauthorized");

    let (status, app_token, _) = call(
        "POST",
        &format!("{base}/app/accessTokens"),
        Some(&jwt(now() - 60, now() + 540)),
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    assert!(app_token.get("installationId").is_none());
    assert_eq!(r.app_token_mint_count(), 1);
}

#[test]
fn every_bad_jwt_is_a_401_with_a_reason() {
    let (r, ids) = setup(1);
    let url = format!("{}/app/installations/{}/accessTokens", r.base_url(), ids[0]);
    let n = now();
    let cases = [
        (jwt(n - 120, n - 1), "expired"),
        (jwt(n - 60, n + 900), "10 minutes"),
        (jwt(n + 300, n + 500), "future"),
        (
            jwt_with(
                OTHER_PRIVATE_KEY_PEM,
                r#"{"alg":"RS256"}"#,
                serde_json::json!({"iat": n, "exp": n + 500, "iss": APP}),
            ),
            "signature",
        ),
        (
            jwt_with(
                DEMO_PRIVATE_KEY_PEM,
                r#"{"alg":"RS256"}"#,
                serde_json::json!({"iat": n, "exp": n + 500, "iss": "nobody"}),
            ),
            "Unknown app",
        ),
        (
            jwt_with(
                DEMO_PRIVATE_KEY_PEM,
                r#"{"alg":"RS256"}"#,
                serde_json::json!({"iat": n, "exp": n + 500, "iss": 12345}),
            ),
            "string",
        ),
        (
            jwt_with(
                DEMO_PRIVATE_KEY_PEM,
                r#"{"alg":"HS256"}"#,
                serde_json::json!({"iat": n, "exp": n + 500, "iss": APP}),
            ),
            "RS256",
        ),
        ("not.a.jwt".to_owned(), "Malformed"),
    ];
    for (token, reason) in cases {
        let (status, body, _) = call("POST", &url, Some(&token), None).unwrap();
        assert_eq!(status, 401, "{reason}");
        assert!(body["message"].as_str().unwrap().contains(reason), "{reason}: {body}");
        assert!(!body.to_string().contains(&token), "never echoes the token");
    }
    assert_eq!(call("POST", &url, None, None).unwrap().0, 401);
    assert_eq!(r.mint_count(&ids[0]), 0);
}

#[test]
fn not_found_bad_requests_and_versions() {
    let (r, _) = setup(1);
    let base = r.base_url();
    let j = jwt(now() - 60, now() + 540);
    assert_eq!(
        call(
            "POST",
            &format!("{base}/app/installations/nope/accessTokens"),
            Some(&j),
            None
        )
        .unwrap()
        .0,
        404
    );
    assert_eq!(
        call("GET", &format!("{base}/app/installations/nope"), Some(&j), None)
            .unwrap()
            .0,
        404
    );
    assert_eq!(call("GET", &format!("{base}/nowhere"), Some(&j), None).unwrap().0, 404);
    assert_eq!(
        call("GET", &format!("{base}/app/installations?limit=0"), Some(&j), None)
            .unwrap()
            .0,
        400
    );
    let (status, body, _) = call(
        "POST",
        &format!("{base}/app/create/user/organization"),
        Some(&j),
        Some(r#"{"user":{}}"#),
    )
    .unwrap();
    assert_eq!(status, 400);
    assert!(body["message"].is_array());
    let req = http::Request::get(format!("{base}/projects"))
        .header("x-icr-api-version", "1999-01-01")
        .body(())
        .unwrap();
    assert_eq!(agent().run(req).unwrap().status(), 400);
}

#[test]
fn pages_are_zero_based_with_null_next_on_the_last() {
    let (r, ids) = setup(25);
    let j = jwt(now() - 60, now() + 540);
    let mut seen = Vec::new();
    for page in 0..3 {
        let (status, body, _) = call(
            "GET",
            &format!("{}/app/installations?limit=10&page={page}", r.base_url()),
            Some(&j),
            None,
        )
        .unwrap();
        assert_eq!(status, 200);
        assert_eq!(body["pagination"]["total"], 25);
        assert_eq!(body["pagination"]["pageCount"], 3);
        seen.extend(
            body["installations"]
                .as_array()
                .unwrap()
                .iter()
                .map(|i| i["id"].as_str().unwrap().to_owned()),
        );
        assert_eq!(body["pagination"]["nextPage"].is_null(), page == 2);
    }
    // Every installation once, in the order they were made.
    assert_eq!(seen, ids);
}

#[test]
fn clock_offset_moves_date_and_jwt_acceptance() {
    let (r, ids) = setup(1);
    r.set_clock_offset(7200);
    let url = format!("{}/app/installations/{}/accessTokens", r.base_url(), ids[0]);
    let (status, _, headers) = call("POST", &url, Some(&jwt(now() - 60, now() + 540)), None).unwrap();
    assert_eq!(
        status, 401,
        "a JWT made on the local clock is expired on the registry's"
    );
    let date = httpdate::parse_http_date(headers["date"].to_str().unwrap()).unwrap();
    let skew = date.duration_since(SystemTime::now()).unwrap_or_default();
    assert!(skew > Duration::from_secs(7190), "{skew:?}");
    let (status, token, _) = call("POST", &url, Some(&jwt(now() + 7200 - 60, now() + 7200 + 540)), None).unwrap();
    assert_eq!(status, 200);
    // Tokens expire on the registry's clock.
    r.advance_clock(3 * 3600);
    let t = token["token"].as_str().unwrap();
    assert!(!r.token_is_valid(t));
    assert_eq!(
        call("GET", &format!("{}/projects", r.base_url()), Some(t), None)
            .unwrap()
            .0,
        401
    );
}

#[test]
fn faults_and_recording() {
    let (r, _) = setup(1);
    let url = format!("{}/projects", r.base_url());
    r.inject(
        Fault::Status {
            status: 429,
            retry_after: Some(7),
        },
        1,
    );
    let (status, body, headers) = call("GET", &url, None, None).unwrap();
    assert_eq!((status, headers["retry-after"].to_str().unwrap()), (429, "7"));
    assert_eq!(body["statusCode"], 429);
    r.inject(Fault::MalformedBody, 1);
    let (status, body, _) = call("GET", &url, None, None).unwrap();
    assert_eq!(status, 200);
    assert!(body.is_string(), "not JSON: {body}");
    r.inject(Fault::DropConnection, 1);
    assert!(
        call("GET", &url, None, None).is_err(),
        "the connection closes unanswered"
    );
    r.inject(
        Fault::Redirect {
            location: "http://elsewhere.invalid/x".into(),
            status: 307,
        },
        1,
    );
    let (status, _, headers) = call("GET", &url, None, None).unwrap();
    assert_eq!(
        (status, headers["location"].to_str().unwrap()),
        (307, "http://elsewhere.invalid/x")
    );
    r.inject(Fault::Delay(Duration::from_millis(300)), 1);
    let started = std::time::Instant::now();
    assert_eq!(call("GET", &url, None, None).unwrap().0, 401);
    assert!(started.elapsed() >= Duration::from_millis(300));
    r.inject_for(
        "/app/",
        Fault::Status {
            status: 503,
            retry_after: None,
        },
        1,
    );
    assert_eq!(
        call("GET", &url, None, None).unwrap().0,
        401,
        "a prefixed fault skips other paths"
    );
    let recorded = r.requests();
    assert_eq!(recorded.len(), 6);
    assert_eq!(recorded[0].status, 429);
    assert_eq!(recorded[2].status, 0, "dropped");
    assert_eq!(recorded[0].header("x-icr-api-version"), Some("2023-06-16"));
    r.clear_requests();
    assert!(r.requests().is_empty());
}

/// Mints a token through the faults (retrying until one comes), then sends `n` requests with
/// it; returns each answer's status, with 0 for a dropped connection and 1 for a malformed 200.
fn statuses_under_faults(r: &FakeRegistry, installation: &str, rates: &FaultRates, n: usize) -> Vec<u16> {
    let base = r.base_url();
    r.set_fault_rates(rates.clone()).unwrap();
    let mint_url = format!("{base}/app/installations/{installation}/accessTokens");
    let token = loop {
        if let Ok((200, t, _)) = call("POST", &mint_url, Some(&jwt(now() - 60, now() + 540)), None)
            && let Some(t) = t["token"].as_str()
        {
            break t.to_owned();
        }
    };
    (0..n)
        .map(|_| match call("GET", &format!("{base}/projects"), Some(&token), None) {
            Ok((status, body, headers)) => {
                if let Some(v) = headers.get("retry-after") {
                    assert_eq!(v.to_str().unwrap(), "1");
                    assert!(status == 429 || status == 503, "{status}");
                }
                if status == 200 && !body.is_object() { 1 } else { status }
            }
            Err(_) => 0,
        })
        .collect()
}

/// Random faults at set rates: every kind shows up at about its rate, mints included, the same
/// seed gives the same faults, queued faults come first, and the registry's own view of its
/// tokens is never faulted.
#[test]
fn fault_rates_are_seeded_and_hit_every_endpoint() {
    let rates = FaultRates {
        server_error: 0.10,
        drop_connection: 0.05,
        malformed_body: 0.02,
        retry_after: 0.03,
        retry_after_secs: 1,
        delay: 0.05,
        max_delay: Duration::from_millis(5),
        seed: 7,
    };
    let (r, ids) = setup(1);
    let first = statuses_under_faults(&r, &ids[0], &rates, 400);
    let counts = r.injected_faults();
    let total = counts.server_error + counts.drop_connection + counts.malformed_body + counts.retry_after;
    let failed = first.iter().filter(|s| **s != 200).count() as u64;
    assert!(failed <= total, "{failed} failures, {total} injected");
    assert!((40..=120).contains(&total), "about 20% of ~400 requests: {counts:?}");
    assert!(counts.server_error > 0 && counts.drop_connection > 0 && counts.malformed_body > 0);
    assert!(counts.retry_after > 0 && counts.delay > 0);
    assert!(first.contains(&0) && first.contains(&1) && first.contains(&503) && first.contains(&429));

    // The same seed and the same order of requests give the same answers.
    let (r2, ids2) = setup(1);
    assert_eq!(statuses_under_faults(&r2, &ids2[0], &rates, 400), first);
    assert_eq!(r2.injected_faults(), counts);

    // Faults never touch the registry's own state; queued faults come first; rates can stop.
    let base = r.base_url();
    // Rates that are not probabilities are refused with an error, not a panic.
    for bad in [-0.1, f64::NAN, 0.7] {
        let rates = FaultRates {
            server_error: 0.5,
            delay: bad,
            ..FaultRates::default()
        };
        assert!(matches!(r.set_fault_rates(rates), Err(TestkitError::BadFaultRates)));
    }
    r.set_fault_rates(FaultRates {
        server_error: 1.0,
        ..FaultRates::default()
    })
    .unwrap();
    assert_eq!(r.token_status("crs_00"), TokenStatus::Unknown);
    r.inject(Fault::MalformedBody, 1);
    assert_eq!(call("GET", &format!("{base}/projects"), None, None).unwrap().0, 200);
    let status = call("GET", &format!("{base}/projects"), None, None).unwrap().0;
    assert!([500, 502, 503].contains(&status), "{status}");
    r.clear_fault_rates();
    assert_eq!(call("GET", &format!("{base}/projects"), None, None).unwrap().0, 401);
    assert_ne!(r.injected_faults(), InjectedFaults::default());

    // Taking the log as it goes: nothing is lost, and later answers find their own records.
    let taken = r.take_requests();
    assert!(taken.len() > 400);
    assert!(r.requests().is_empty());
    assert_eq!(call("GET", &format!("{base}/projects"), None, None).unwrap().0, 401);
    assert_eq!(r.take_requests()[0].status, 401);
}

#[test]
fn token_status_tells_expired_from_revoked() {
    let (r, ids) = setup(1);
    let base = r.base_url();
    let mint = || {
        let (_, t, _) = call(
            "POST",
            &format!("{base}/app/installations/{}/accessTokens", ids[0]),
            Some(&jwt(now() - 60, now() + 540)),
            None,
        )
        .unwrap();
        t["token"].as_str().unwrap().to_owned()
    };
    let (a, b) = (mint(), mint());
    assert_eq!(r.token_status(&a), TokenStatus::Valid);
    assert!(r.token_is_valid(&a));
    r.expire_token(&a);
    assert_eq!(r.token_status(&a), TokenStatus::Expired);
    r.revoke_all_tokens();
    assert_eq!(r.token_status(&b), TokenStatus::Revoked);
    assert_eq!(r.token_status(&a), TokenStatus::Revoked);
    assert!(!r.token_is_valid(&b));
}

#[test]
fn webhook_deliveries_are_signed_over_signed_data() {
    let (r, ids) = setup(1);
    let (body, signature) = r.webhook_delivery("s3cret", "installed", &ids[0]);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let signed = v["signedData"].as_str().unwrap();
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, b"s3cret");
    let expected: String = ring::hmac::sign(&key, signed.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    assert_eq!(signature, format!("sha256={expected}"));
    let payload: serde_json::Value =
        serde_json::from_slice(&base64::engine::general_purpose::STANDARD.decode(signed).unwrap()).unwrap();
    assert_eq!(payload["event"], "installed");
    assert_eq!(payload["installation"]["id"], ids[0].as_str());
}

#[test]
fn public_key_registration_forms() {
    let r = FakeRegistry::start();
    let spki = "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----";
    assert!(r.register_app("x", spki).is_err(), "truncated");
    assert!(r.register_app("x", "not a key").is_err());
    assert!(r.register_app_with_private_key("x", "nope").is_err());
}

#[test]
fn an_organizations_installation_is_found_and_a_reinstall_gives_it_a_new_id() {
    let (r, ids) = setup(2);
    let base = r.base_url();
    let org = r.organization_id(&ids[1]).unwrap();
    let lookup = |org: &str| {
        call(
            "GET",
            &format!("{base}/app/organizations/{org}/installation"),
            Some(&jwt(now() - 60, now() + 540)),
            None,
        )
        .unwrap()
    };
    let (status, body, _) = lookup(&org);
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["id"], ids[1].as_str());
    assert_eq!(body["organization"]["id"], org.as_str());
    assert_eq!(body["permissions"]["organization_info"], "VIEW");
    assert_eq!(r.lookup_count(&org), 1);
    // Only with the app's JWT.
    let (status, ..) = call(
        "GET",
        &format!("{base}/app/organizations/{org}/installation"),
        None,
        None,
    )
    .unwrap();
    assert_eq!(status, 401);
    assert_eq!(r.lookup_count(&org), 1, "a refused JWT is not a lookup");
    // An organization without the app.
    let (status, body, _) = lookup("no-such-org");
    assert_eq!(status, 404);
    assert_eq!(body["message"], "App is not installed on organization no-such-org");
    assert_eq!(r.lookup_count("no-such-org"), 1);

    // A token for the installation, then the organization reinstalls the app.
    let mint = |id: &str| {
        call(
            "POST",
            &format!("{base}/app/installations/{id}/accessTokens"),
            Some(&jwt(now() - 60, now() + 540)),
            Some("{}"),
        )
        .unwrap()
    };
    let (status, token, _) = mint(&ids[1]);
    assert_eq!(status, 200);
    let token = token["token"].as_str().unwrap().to_owned();
    let other = mint(&ids[0]).1["token"].as_str().unwrap().to_owned();
    let new = r.reinstall(&ids[1]).unwrap();
    assert_ne!(new, ids[1]);
    assert!(r.reinstall("no-such-installation").is_none());
    // The old id and its tokens stop working; the other installation's token does not.
    assert_eq!(mint(&ids[1]).0, 404);
    assert_eq!(r.token_status(&token), TokenStatus::Revoked);
    let (status, ..) = call("GET", &format!("{base}/organizations/{org}"), Some(&token), None).unwrap();
    assert_eq!(status, 401);
    assert!(r.token_is_valid(&other));
    // The organization now has the new installation, with the same permissions.
    let (status, body, _) = lookup(&org);
    assert_eq!((status, body["id"].as_str()), (200, Some(new.as_str())));
    assert_eq!(body["permissions"]["organization_info"], "VIEW");
    assert_eq!(r.lookup_count(&org), 2);
    assert_eq!(r.organization_id(&new).as_deref(), Some(org.as_str()));
    let (status, fresh, _) = mint(&new);
    assert_eq!(status, 200);
    let fresh = fresh["token"].as_str().unwrap();
    let (status, ..) = call("GET", &format!("{base}/organizations/{org}"), Some(fresh), None).unwrap();
    assert_eq!(status, 200);
    assert_eq!((r.mint_count(&ids[1]), r.mint_count(&new)), (1, 1));
    // The new id is listed where the old one was.
    let (status, list, _) = call(
        "GET",
        &format!("{base}/app/installations?limit=10&page=0"),
        Some(&jwt(now() - 60, now() + 540)),
        None,
    )
    .unwrap();
    assert_eq!(status, 200);
    let listed: Vec<&str> = list["installations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["id"].as_str().unwrap())
        .collect();
    assert_eq!(listed, [ids[0].as_str(), new.as_str()]);
}

#[test]
fn the_demo_names_each_installations_organization() {
    let demo = FakeRegistry::demo();
    assert_eq!(demo.organization_ids.len(), demo.installation_ids.len());
    for (installation, org) in demo.installation_ids.iter().zip(&demo.organization_ids) {
        assert_eq!(demo.registry.organization_id(installation).as_ref(), Some(org));
    }
}
