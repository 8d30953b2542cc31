//! The async client against the fake registry over real loopback HTTP.

use std::sync::Arc;
use std::time::{Duration, Instant};

use http::Method;
use icr_app_core::{
    CacheConfig, CreateUserOrganization, Error, NewOrganization, NewUser, RetryPolicy, TransportErrorKind,
};
use icr_app_e2e::Setup;
use icr_app_reqwest::Client;
use icr_app_testkit::Fault;
use tokio::sync::Barrier;

fn client(s: &Setup) -> Client {
    Client::new(s.app()).unwrap()
}

#[tokio::test]
async fn happy_path_for_every_endpoint() {
    let s = Setup::new(3);
    let client = client(&s);
    let id = &s.installations[0];

    let token = client.installation_token(id).await.unwrap();
    assert!(token.secret().expose().starts_with("crs_"));
    assert!(client.installation_token(id).await.unwrap().same_as(&token));
    assert_eq!(s.registry.mint_count(id.as_str()), 1);
    assert!(client.app_token().await.unwrap().secret().expose().starts_with("crs_"));

    assert_eq!(client.installations().await.unwrap().len(), 3);
    let one = client.installation(id).await.unwrap();
    let org_id = one.organization.as_ref().unwrap().id.clone();
    let projects: serde_json::Value = client.get_json(id, "/projects?limit=10&page=0").await.unwrap();
    assert!(projects["projects"].is_array());
    let org: serde_json::Value = client.get_json(id, &format!("/organizations/{org_id}")).await.unwrap();
    assert_eq!(org["id"], org_id.as_str());

    let created = client
        .create_user_organization(&CreateUserOrganization {
            user: NewUser {
                email: "buyer@example.com".into(),
                full_name: None,
                profile_picture: None,
            },
            organization: NewOrganization {
                full_name: "Buyer Org".into(),
                kind: "other".into(),
                country_code: None,
            },
        })
        .await
        .unwrap();
    assert!(!created.installation.id.is_empty());

    client.revoke(token.secret()).await.unwrap();
    let mut request = client.request(Method::GET, "/projects", None).unwrap();
    icr_app_core::api::authorize(&mut request, token.secret()).unwrap();
    assert_eq!(client.transport().send(request).await.unwrap().status(), 401);
}

#[tokio::test]
async fn pagination_follows_every_page() {
    let s = Setup::new(250);
    let all = client(&s).installations().await.unwrap();
    assert_eq!(all.len(), 250);
    let pages = s
        .registry
        .requests()
        .iter()
        .filter(|r| r.path.starts_with("/app/installations?"))
        .count();
    assert_eq!(pages, 3);
}

#[tokio::test]
async fn server_clock_two_hours_ahead_or_behind() {
    for offset in [7200i64, -7200] {
        let s = Setup::new(1);
        s.registry.set_clock_offset(offset);
        let client = client(&s);
        let token = client.installation_token(&s.installations[0]).await.unwrap();
        let left = token.remaining(icr_app_core::Timestamp::from_system_time(std::time::SystemTime::now()));
        assert!(
            left > Duration::from_secs(7000) && left <= Duration::from_secs(7200),
            "{offset}: {left:?}"
        );
        assert_eq!(client.installations().await.unwrap().len(), 1);
    }
}

#[tokio::test]
async fn server_errors_rate_limits_and_dropped_connections_are_retried() {
    let s = Setup::new(1);
    let client = client(&s);
    s.registry.inject(
        Fault::Status {
            status: 503,
            retry_after: None,
        },
        1,
    );
    client.installation_token(&s.installations[0]).await.unwrap();

    let s = Setup::new(1);
    let client = self::client(&s);
    s.registry.inject(
        Fault::Status {
            status: 429,
            retry_after: Some(1),
        },
        1,
    );
    let started = Instant::now();
    client.installation_token(&s.installations[0]).await.unwrap();
    assert!(started.elapsed() >= Duration::from_millis(900));

    let s = Setup::new(1);
    let client = self::client(&s);
    s.registry.inject(Fault::DropConnection, 1);
    client.installation_token(&s.installations[0]).await.unwrap();
}

#[tokio::test]
async fn failures_without_retries_are_clear_errors() {
    let s = Setup::new(1);
    let client = Client::new(s.app().with_retry(RetryPolicy::never())).unwrap();
    s.registry.inject(Fault::DropConnection, 1);
    let e = client.installation_token(&s.installations[0]).await.unwrap_err();
    assert!(matches!(e, Error::Transport { .. }), "{e:?}");

    let s = Setup::new(1);
    let client = Client::new(s.app().with_retry(RetryPolicy::never())).unwrap();
    s.registry.inject(Fault::MalformedBody, 1);
    let e = client.installation_token(&s.installations[0]).await.unwrap_err();
    assert!(matches!(e, Error::MalformedBody { .. }), "{e:?}");
}

fn short_lived(s: &Setup) -> Client {
    s.registry.set_token_lifetime(Duration::from_secs(6));
    client(s)
}

#[tokio::test]
async fn near_expiry_refreshed_ahead_while_the_old_token_serves() {
    let s = Setup::new(1);
    let client = short_lived(&s);
    let id = s.installations[0].clone();
    let old = client.installation_token(&id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3200)).await;
    s.registry.inject(Fault::Delay(Duration::from_millis(800)), 1);
    let refresher = {
        let (client, id) = (client.clone(), id.clone());
        tokio::spawn(async move { client.installation_token(&id).await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let during = client.installation_token(&id).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(300));
    assert!(during.same_as(&old));
    let new = refresher.await.unwrap();
    assert!(!new.same_as(&old));
    assert_eq!(s.registry.mint_count(id.as_str()), 2);
}

#[tokio::test]
async fn background_refresher_renews_ahead_of_expiry() {
    let s = Setup::new(1);
    let client = short_lived(&s);
    let id = s.installations[0].clone();
    let _refresher = client.spawn_refresher();
    let old = client.installation_token(&id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3600)).await;
    assert_eq!(s.registry.mint_count(id.as_str()), 2, "renewed without a caller asking");
    let started = Instant::now();
    let now = client.installation_token(&id).await.unwrap();
    assert!(started.elapsed() < Duration::from_millis(50));
    assert!(!now.same_as(&old));
}

#[tokio::test]
async fn failed_refresh_keeps_serving_the_valid_token() {
    let s = Setup::new(1);
    let client = short_lived(&s);
    let id = s.installations[0].clone();
    let old = client.installation_token(&id).await.unwrap();
    tokio::time::sleep(Duration::from_millis(3200)).await;
    s.registry.inject(
        Fault::Status {
            status: 503,
            retry_after: None,
        },
        100,
    );
    assert!(client.installation_token(&id).await.unwrap().same_as(&old));
    s.registry.clear_faults();
}

#[tokio::test]
async fn a_401_from_an_installation_endpoint_re_mints_once() {
    let s = Setup::new(1);
    let client = client(&s);
    let id = s.installations[0].clone();
    client.installation_token(&id).await.unwrap();
    s.registry.revoke_all_tokens();
    let projects: serde_json::Value = client.get_json(&id, "/projects").await.unwrap();
    assert!(projects["projects"].is_array());
    assert_eq!(s.registry.mint_count(id.as_str()), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_tasks_mint_once_per_installation() {
    let s = Setup::new(8);
    let client = client(&s);
    s.registry.inject(Fault::Delay(Duration::from_millis(200)), 8);
    let barrier = Arc::new(Barrier::new(256));
    let tasks: Vec<_> = (0..256)
        .map(|i| {
            let (client, barrier) = (client.clone(), barrier.clone());
            let id = s.installations[i % 8].clone();
            tokio::spawn(async move {
                barrier.wait().await;
                client.installation_token(&id).await.unwrap()
            })
        })
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    for id in &s.installations {
        assert_eq!(s.registry.mint_count(id.as_str()), 1, "{id}");
    }
}

#[tokio::test]
async fn a_cancelled_caller_does_not_leave_the_installation_stuck() {
    let s = Setup::new(1);
    let client = client(&s);
    let id = s.installations[0].clone();
    s.registry.inject(Fault::Delay(Duration::from_millis(2000)), 1);
    let slow = tokio::time::timeout(Duration::from_millis(200), client.installation_token(&id)).await;
    assert!(slow.is_err(), "timed out");
    let started = Instant::now();
    client.installation_token(&id).await.unwrap();
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "a new mint started at once"
    );
}

#[tokio::test]
async fn redirects_are_not_followed_with_credentials() {
    let s = Setup::new(1);
    let other = icr_app_testkit::FakeRegistry::start();
    let client = client(&s);
    let id = s.installations[0].clone();
    client.installation_token(&id).await.unwrap();
    s.registry.inject(
        Fault::Redirect {
            location: format!("{}/projects", other.base_url()),
            status: 307,
        },
        1,
    );
    let request = client.request(Method::GET, "/projects", None).unwrap();
    let response = client.send_as_installation(&id, request).await.unwrap();
    assert_eq!(response.status(), 307);
    assert!(other.requests().is_empty());
}

#[tokio::test]
async fn plain_http_to_a_remote_host_is_refused() {
    let s = Setup::new(1);
    let app = icr_app_core::App::builder(
        s.app_id.clone(),
        icr_app_core::AppKey::from_pem(icr_app_testkit::DEMO_PRIVATE_KEY_PEM).unwrap(),
    )
    .base_url("http://registry.invalid")
    .retry(RetryPolicy::never())
    .build()
    .unwrap();
    let e = Client::new(app)
        .unwrap()
        .installation_token(&s.installations[0])
        .await
        .unwrap_err();
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

#[tokio::test]
async fn revoke_all_on_shutdown() {
    let s = Setup::new(3);
    let client = Client::new(s.app_with(CacheConfig::default())).unwrap();
    for id in &s.installations {
        client.installation_token(id).await.unwrap();
    }
    assert_eq!(client.revoke_all().await.unwrap(), 3);
}
