//! The blocking client against the fake registry over real loopback HTTP.

use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use http::Method;
use icr_app_core::{
    CacheConfig, CreateUserOrganization, Error, NewOrganization, NewUser, RetryPolicy, TransportErrorKind,
};
use icr_app_e2e::Setup;
use icr_app_testkit::Fault;
use icr_app_ureq::Client;

#[test]
fn happy_path_for_every_endpoint() {
    let s = Setup::new(3);
    let client = Client::new(s.app());
    let id = &s.installations[0];

    let token = client.installation_token(id).unwrap();
    assert!(token.secret().expose().starts_with("crs_"));
    assert_eq!(token.access_token().installation_id.as_deref(), Some(id.as_str()));
    let again = client.installation_token(id).unwrap();
    assert!(again.same_as(&token), "served from the cache");
    assert_eq!(s.registry.mint_count(id.as_str()), 1);

    let app_token = client.app_token().unwrap();
    assert!(app_token.secret().expose().starts_with("crs_"));

    let all = client.installations().unwrap();
    assert_eq!(all.len(), 3);
    let one = client.installation(id).unwrap();
    assert_eq!(one.id, id.as_str());
    let org_id = one.organization.as_ref().unwrap().id.clone();

    let projects: serde_json::Value = client.get_json(id, "/projects?limit=10&page=0").unwrap();
    assert!(projects["projects"].is_array());
    let org: serde_json::Value = client.get_json(id, &format!("/organizations/{org_id}")).unwrap();
    assert_eq!(org["id"], org_id.as_str());

    let created = client
        .create_user_organization(&CreateUserOrganization {
            user: NewUser {
                email: "buyer@example.com".into(),
                full_name: Some("Buyer".into()),
                profile_picture: None,
            },
            organization: NewOrganization {
                full_name: "Buyer Org".into(),
                kind: "marketParticipant".into(),
                country_code: Some("IS".into()),
            },
        })
        .unwrap();
    assert!(!created.installation.id.is_empty());
    assert_eq!(client.installations().unwrap().len(), 4);

    // Every request carried the documented headers.
    for r in s.registry.requests() {
        let header = |name: &str| r.headers.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone());
        assert_eq!(header("accept").as_deref(), Some("application/json"), "{}", r.path);
        assert_eq!(header("x-icr-api-version").as_deref(), Some("2023-06-16"), "{}", r.path);
        assert!(header("user-agent").unwrap().starts_with("icr-app-core/"));
    }

    client.revoke(token.secret()).unwrap();
    let request = client.request(Method::GET, "/projects", None).unwrap();
    let mut request = request;
    icr_app_core::api::authorize(&mut request, token.secret()).unwrap();
    let response = client.transport().send(request).unwrap();
    assert_eq!(response.status(), 401, "a revoked token is refused");
}

#[test]
fn pagination_follows_every_page() {
    let s = Setup::new(250);
    let client = Client::new(s.app());
    let all = client.installations().unwrap();
    assert_eq!(all.len(), 250);
    let mut ids: Vec<_> = all.iter().map(|i| i.id.clone()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), 250);
    let pages = s
        .registry
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/app/installations?"))
        .count();
    assert_eq!(pages, 3);
    let page = client.installations_page(10, 2).unwrap();
    assert_eq!(page.installations.len(), 10);
}

#[test]
fn server_clock_two_hours_ahead_or_behind() {
    for offset in [7200i64, -7200] {
        let s = Setup::new(1);
        s.registry.set_clock_offset(offset);
        let client = Client::new(s.app());
        let token = client.installation_token(&s.installations[0]).unwrap();
        let left = token.remaining(icr_app_core::Timestamp::from_system_time(std::time::SystemTime::now()));
        assert!(
            left > Duration::from_secs(7000) && left <= Duration::from_secs(7200),
            "{offset}: {left:?}"
        );
        assert_eq!(client.installations().unwrap().len(), 1);
        let learned = client.with_app(|a| a.clock_offset().millis);
        assert!((learned - offset * 1000).abs() <= 1000, "learned {learned} ms");
    }
}

#[test]
fn server_errors_then_success() {
    let s = Setup::new(1);
    let client = Client::new(s.app());
    s.registry.inject(
        Fault::Status {
            status: 503,
            retry_after: None,
        },
        1,
    );
    let token = client.installation_token(&s.installations[0]).unwrap();
    assert!(token.secret().expose().starts_with("crs_"));
    assert_eq!(s.registry.mint_count(s.installations[0].as_str()), 1);
}

#[test]
fn rate_limited_with_retry_after() {
    let s = Setup::new(1);
    let client = Client::new(s.app());
    s.registry.inject(
        Fault::Status {
            status: 429,
            retry_after: Some(1),
        },
        1,
    );
    let started = Instant::now();
    client.installation_token(&s.installations[0]).unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900), "Retry-After honoured");
}

#[test]
fn dropped_connection_is_retried_or_reported() {
    let s = Setup::new(1);
    let client = Client::new(s.app());
    s.registry.inject(Fault::DropConnection, 1);
    client.installation_token(&s.installations[0]).unwrap();

    let s = Setup::new(1);
    let client = Client::new(s.app().with_retry(RetryPolicy::never()));
    s.registry.inject(Fault::DropConnection, 1);
    let e = client.installation_token(&s.installations[0]).unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e:?}");
    assert!(e.to_string().contains("request failed"), "{e}");
}

#[test]
fn malformed_body_is_a_clear_error() {
    let s = Setup::new(1);
    let client = Client::new(s.app().with_retry(RetryPolicy::never()));
    s.registry.inject(Fault::MalformedBody, 1);
    let e = client.installation_token(&s.installations[0]).unwrap_err();
    assert!(matches!(e, Error::MalformedBody { .. }), "{e:?}");
    assert!(e.to_string().contains("not the documented shape"), "{e}");
    s.registry.inject(Fault::MalformedBody, 1);
    assert!(matches!(client.installations(), Err(Error::MalformedBody { .. })));
}

/// Tokens living 6 s: the refresh falls due half-way (3 s).
fn short_lived(s: &Setup) -> Client {
    s.registry.set_token_lifetime(Duration::from_secs(6));
    Client::new(s.app())
}

#[test]
fn near_expiry_refreshed_ahead_while_the_old_token_serves() {
    let s = Setup::new(1);
    let client = short_lived(&s);
    let id = s.installations[0].clone();
    let old = client.installation_token(&id).unwrap();
    thread::sleep(Duration::from_millis(3200));
    // The refresh is slow; meanwhile another thread is served the old token at once.
    s.registry.inject(Fault::Delay(Duration::from_millis(800)), 1);
    let refresher = {
        let (client, id) = (client.clone(), id.clone());
        thread::spawn(move || client.installation_token(&id).unwrap())
    };
    thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    let during = client.installation_token(&id).unwrap();
    assert!(started.elapsed() < Duration::from_millis(300));
    assert!(during.same_as(&old));
    let new = refresher.join().unwrap();
    assert!(!new.same_as(&old));
    assert!(client.installation_token(&id).unwrap().same_as(&new));
    assert_eq!(s.registry.mint_count(id.as_str()), 2);
}

#[test]
fn failed_refresh_keeps_serving_the_valid_token() {
    let s = Setup::new(1);
    let client = short_lived(&s);
    let id = s.installations[0].clone();
    let old = client.installation_token(&id).unwrap();
    thread::sleep(Duration::from_millis(3200));
    s.registry.inject(
        Fault::Status {
            status: 503,
            retry_after: None,
        },
        100,
    );
    let served = client.installation_token(&id).unwrap();
    assert!(served.same_as(&old), "still valid, so still served");
    s.registry.clear_faults();
}

#[test]
fn a_401_from_an_installation_endpoint_re_mints_once() {
    let s = Setup::new(1);
    let client = Client::new(s.app());
    let id = s.installations[0].clone();
    client.installation_token(&id).unwrap();
    s.registry.revoke_all_tokens();
    let projects: serde_json::Value = client.get_json(&id, "/projects").unwrap();
    assert!(projects["projects"].is_array());
    assert_eq!(s.registry.mint_count(id.as_str()), 2);
}

#[test]
fn concurrent_threads_mint_once_per_installation() {
    let s = Setup::new(8);
    let client = Client::new(s.app());
    s.registry.inject(Fault::Delay(Duration::from_millis(200)), 8);
    let barrier = Arc::new(Barrier::new(64));
    let handles: Vec<_> = (0..64)
        .map(|i| {
            let (client, barrier) = (client.clone(), barrier.clone());
            let id = s.installations[i % 8].clone();
            thread::spawn(move || {
                barrier.wait();
                client.installation_token(&id).unwrap()
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    for id in &s.installations {
        assert_eq!(s.registry.mint_count(id.as_str()), 1, "{id}");
    }
}

#[test]
fn redirects_are_not_followed_with_credentials() {
    let s = Setup::new(1);
    let other = icr_app_testkit::FakeRegistry::start();
    let client = Client::new(s.app());
    let id = s.installations[0].clone();
    client.installation_token(&id).unwrap();
    s.registry.inject(
        Fault::Redirect {
            location: format!("{}/projects", other.base_url()),
            status: 307,
        },
        1,
    );
    let request = client.request(Method::GET, "/projects", None).unwrap();
    let response = client.send_as_installation(&id, request).unwrap();
    assert_eq!(response.status(), 307);
    assert!(other.requests().is_empty(), "nothing reached the other host");
}

#[test]
fn wrong_key_is_a_clear_401() {
    let s = Setup::new(1);
    let app = icr_app_core::App::builder(
        s.app_id.clone(),
        icr_app_core::AppKey::from_pem(icr_app_testkit::OTHER_PRIVATE_KEY_PEM).unwrap(),
    )
    .base_url(s.registry.base_url())
    .build()
    .unwrap();
    let e = Client::new(app).installation_token(&s.installations[0]).unwrap_err();
    assert!(matches!(e, Error::Unauthorized { .. }), "{e:?}");
    let text = e.to_string();
    assert!(text.contains("private key") && text.contains("app id"), "{text}");
}

#[test]
fn plain_http_to_a_remote_host_is_refused() {
    let s = Setup::new(1);
    let app = icr_app_core::App::builder(
        s.app_id.clone(),
        icr_app_core::AppKey::from_pem(icr_app_testkit::DEMO_PRIVATE_KEY_PEM).unwrap(),
    )
    .base_url("http://registry.invalid")
    .retry(RetryPolicy::never())
    .build()
    .unwrap();
    let e = Client::new(app).installation_token(&s.installations[0]).unwrap_err();
    assert!(
        matches!(
            e,
            Error::Transport {
                kind: TransportErrorKind::Refused,
                ..
            }
        ),
        "{e:?}"
    );
}

#[test]
fn revoke_all_on_shutdown() {
    let s = Setup::new(3);
    let client = Client::new(s.app_with(CacheConfig::default()));
    for id in &s.installations {
        client.installation_token(id).unwrap();
    }
    assert_eq!(client.revoke_all().unwrap(), 3);
    assert!(client.with_app(|a| a.cache().is_empty()));
}
