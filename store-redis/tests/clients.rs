//! The store plugged into both clients against the fake registry: clients that share a Redis
//! share tokens, and a Redis that is down costs no error, only minting alone (and one warning
//! that shows no password).

mod common;

use std::time::{Duration, Instant};

use common::{closed_port, logged, store_warnings};

use icr_app_core::{App, AppKey, InstallationId};
use icr_app_redis::RedisStore;
use icr_app_testkit::{Demo, FakeRegistry, RedisServer};

/// Generous: a busy machine must not turn a slow answer into minting alone.
const SLOW_MACHINE: Duration = Duration::from_secs(5);

fn app(demo: &Demo) -> App {
    App::builder(demo.app_id.clone(), AppKey::from_pem(demo.private_key_pem).unwrap())
        .base_url(demo.registry.base_url())
        .build()
        .unwrap()
}

fn installations(demo: &Demo) -> Vec<InstallationId> {
    demo.installation_ids
        .iter()
        .map(|id| InstallationId::new(id.clone()).unwrap())
        .collect()
}

#[test]
fn blocking_and_async_clients_on_one_redis_mint_once_per_installation() {
    let demo = FakeRegistry::demo();
    let redis = RedisServer::start();
    let blocking: Vec<_> = (0..3)
        .map(|_| {
            icr_app_ureq::Client::builder(app(&demo))
                .store(RedisStore::connect(&redis.url()).unwrap().timeout(SLOW_MACHINE))
                .build()
                .unwrap()
        })
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let asynchronous: Vec<_> = runtime.block_on(async {
        (0..3)
            .map(|_| {
                icr_app_reqwest::Client::builder(app(&demo))
                    .store(RedisStore::connect(&redis.url()).unwrap().timeout(SLOW_MACHINE))
                    .build()
                    .unwrap()
            })
            .collect()
    });

    for installation in installations(&demo) {
        let first = blocking[0].installation_token(&installation).unwrap();
        for client in &blocking {
            let token = client.installation_token(&installation).unwrap();
            assert_eq!(token.secret().expose(), first.secret().expose());
        }
        for client in &asynchronous {
            let token = runtime.block_on(client.installation_token(&installation)).unwrap();
            assert_eq!(token.secret().expose(), first.secret().expose());
        }
        assert_eq!(demo.registry.mint_count(installation.as_str()), 1, "{installation}");
    }
}

#[test]
fn a_redis_that_is_down_costs_no_error() {
    let demo = FakeRegistry::demo();
    let mut redis = RedisServer::start();
    redis.stop();
    let client = icr_app_ureq::Client::builder(app(&demo))
        .store(RedisStore::connect(&redis.url()).unwrap().timeout(SLOW_MACHINE))
        .build()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let async_client = runtime.block_on(async {
        icr_app_reqwest::Client::builder(app(&demo))
            .store(RedisStore::connect(&redis.url()).unwrap().timeout(SLOW_MACHINE))
            .build()
            .unwrap()
    });
    let started = Instant::now();
    for installation in installations(&demo) {
        client.installation_token(&installation).unwrap();
        runtime
            .block_on(async_client.installation_token(&installation))
            .unwrap();
    }
    assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
}

#[test]
fn the_outage_warning_shows_no_password_whatever_the_url_form() {
    let demo = FakeRegistry::demo();
    let port = closed_port();
    // A password in the user's place, a user and a password, a password alone; TLS too.
    for (url, shown) in [
        (
            format!("redis://Tr0ub4dor%263@127.0.0.1:{port}/2"),
            format!("redis://***@127.0.0.1:{port}/2"),
        ),
        (
            format!("redis://app:Tr0ub4dor%263@127.0.0.1:{port}"),
            format!("redis://app:***@127.0.0.1:{port}"),
        ),
        (
            format!("redis://:Tr0ub4dor%263@127.0.0.1:{port}"),
            format!("redis://:***@127.0.0.1:{port}"),
        ),
        (
            format!("rediss://Tr0ub4dor%263@127.0.0.1:{port}"),
            format!("rediss://***@127.0.0.1:{port}"),
        ),
    ] {
        let store = || RedisStore::connect(&url).unwrap().timeout(SLOW_MACHINE);
        assert_eq!(store().url(), shown);
        let installation = &installations(&demo)[0];
        let ((), lines) = logged(|| {
            let client = icr_app_ureq::Client::builder(app(&demo))
                .store(store())
                .build()
                .unwrap();
            client.installation_token(installation).unwrap();
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                let client = icr_app_reqwest::Client::builder(app(&demo))
                    .store(store())
                    .build()
                    .unwrap();
                client.installation_token(installation).await.unwrap();
            });
        });
        let warnings = store_warnings(&lines);
        assert_eq!(warnings.len(), 2, "{url}: one per client: {lines:#?}");
        for warning in warnings {
            assert!(warning.contains(&shown), "{warning}");
        }
        for line in &lines {
            assert!(!line.contains("Tr0ub4dor"), "{line}");
        }
    }
}
