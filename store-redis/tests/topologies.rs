//! Redis Cluster and Sentinel, real servers on loopback: both paths run every command on the
//! keys the SDK names (entry and lease in one slot), both clients share tokens through them,
//! and a primary killed mid-run costs no error, only minting alone until the failover is done.

mod common;

use std::time::Duration;

use common::{SLOW_MACHINE, get, lease, paths, put};
use icr_app_core::{App, AppKey, InstallationId, StoreReply};
use icr_app_redis::RedisStore;
use icr_app_testkit::{Demo, FakeRegistry, RedisCluster, RedisSentinel};

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

/// Every command, on both paths, on keys of many slots: an entry and its lease, tagged alike.
fn commands_run(store: &RedisStore) {
    for path in paths() {
        for n in 0..20 {
            let entry = format!("icr-app:v2:test:{}:{{installation:{n}}}", path.name);
            let lease_key = format!("{entry}:lease");
            assert_eq!(
                path.run(store, &lease(&lease_key, b"me", Duration::from_secs(30)))
                    .unwrap(),
                StoreReply::Leased(true),
                "{}",
                path.name
            );
            path.run(
                store,
                &put(&entry, b"sealed", Duration::from_secs(60), &lease_key, b"me"),
            )
            .unwrap_or_else(|e| panic!("{}: {e}", path.name));
            assert_eq!(
                path.run(store, &get(&entry)).unwrap(),
                StoreReply::Value(Some(b"sealed".to_vec()))
            );
            assert_eq!(
                path.run(store, &lease(&lease_key, b"you", Duration::from_secs(30)))
                    .unwrap(),
                StoreReply::Leased(true),
                "the lease was released by the put"
            );
            path.run(store, &common::delete(&entry, b"")).unwrap();
            assert_eq!(path.run(store, &get(&entry)).unwrap(), StoreReply::Value(None));
        }
    }
}

/// Three blocking and three async clients share one token per installation.
fn clients_share(demo: &Demo, url: &str) {
    let store = || RedisStore::connect(url).unwrap().timeout(SLOW_MACHINE);
    let blocking: Vec<_> = (0..3)
        .map(|_| icr_app_ureq::Client::builder(app(demo)).store(store()).build().unwrap())
        .collect();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let asynchronous: Vec<_> = runtime.block_on(async {
        (0..3)
            .map(|_| {
                icr_app_reqwest::Client::builder(app(demo))
                    .store(store())
                    .build()
                    .unwrap()
            })
            .collect()
    });
    for installation in installations(demo) {
        let first = blocking[0].installation_token(&installation).unwrap();
        for client in &blocking {
            assert_eq!(
                client.installation_token(&installation).unwrap().secret().expose(),
                first.secret().expose()
            );
        }
        for client in &asynchronous {
            let token = runtime.block_on(client.installation_token(&installation)).unwrap();
            assert_eq!(token.secret().expose(), first.secret().expose());
        }
        assert_eq!(demo.registry.mint_count(installation.as_str()), 1);
    }
}

/// After a failover, new clients share through the store again: the first new one may mint
/// what the failover lost (a write the old primary had not yet passed to its replica), and
/// stores it; the next one mints nothing.
fn assert_shares_again(demo: &Demo, ids: &[InstallationId], store: impl Fn() -> RedisStore) {
    let c = icr_app_ureq::Client::builder(app(demo)).store(store()).build().unwrap();
    for id in ids {
        c.installation_token(id).unwrap();
    }
    let before: Vec<usize> = ids.iter().map(|id| demo.registry.mint_count(id.as_str())).collect();
    let d = icr_app_ureq::Client::builder(app(demo)).store(store()).build().unwrap();
    for id in ids {
        assert_eq!(
            d.installation_token(id).unwrap().secret().expose(),
            c.installation_token(id).unwrap().secret().expose()
        );
    }
    let after: Vec<usize> = ids.iter().map(|id| demo.registry.mint_count(id.as_str())).collect();
    assert_eq!(before, after, "the new client shares the stored tokens");
}

#[test]
fn a_cluster_runs_every_command_and_clients_share_tokens_through_it() {
    let cluster = RedisCluster::start(3, 0);
    let url = cluster.url();
    let store = RedisStore::connect(&url).unwrap().timeout(SLOW_MACHINE);
    assert!(format!("{store:?}").contains("redis+cluster://127.0.0.1:"));
    commands_run(&store);
    clients_share(&FakeRegistry::demo(), &url);
}

#[test]
fn a_cluster_with_a_password_logs_in_and_never_shows_it() {
    let cluster = RedisCluster::start_with_password(3, "cl-s3cret");
    let url = cluster.url().replace("redis+cluster://", "redis+cluster://:cl-s3cret@");
    let store = RedisStore::connect(&url).unwrap().timeout(SLOW_MACHINE);
    assert!(!format!("{store:?}").contains("cl-s3cret"));
    assert!(
        store.url().starts_with("redis+cluster://:***@127.0.0.1:"),
        "{}",
        store.url()
    );
    commands_run(&store);
    let wrong = RedisStore::connect(&cluster.url().replace("redis+cluster://", "redis+cluster://:nope@"))
        .unwrap()
        .timeout(SLOW_MACHINE);
    for path in paths() {
        let error = path.run(&wrong, &get("k")).unwrap_err();
        let text = format!("{error} {error:?}");
        assert!(!text.contains("nope") && !text.contains("cl-s3cret"), "{text}");
    }
}

#[test]
fn a_cluster_primary_killed_mid_run_costs_no_error_and_sharing_resumes_after_the_failover() {
    let demo = FakeRegistry::demo();
    let mut cluster = RedisCluster::start(3, 1);
    let url = cluster.url();
    let store = || {
        RedisStore::connect(&url)
            .unwrap()
            .timeout(Duration::from_millis(500))
            .retry_after_failure(Duration::from_millis(200))
    };
    let a = icr_app_ureq::Client::builder(app(&demo))
        .store(store())
        .build()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let b = runtime.block_on(async {
        icr_app_reqwest::Client::builder(app(&demo))
            .store(store())
            .build()
            .unwrap()
    });
    let ids = installations(&demo);
    for id in &ids {
        a.installation_token(id).unwrap();
    }
    cluster.kill_primary(0);
    // Tokens served throughout, without an error, while the cluster fails over.
    for _ in 0..20 {
        for id in &ids {
            a.installation_token(id).unwrap();
            runtime.block_on(b.installation_token(id)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    cluster.wait_until_ok();
    // Sharing again: a new client reads what is stored rather than minting.
    std::thread::sleep(Duration::from_millis(300));
    for id in &ids {
        a.installation_token(id).unwrap();
    }
    assert_shares_again(&demo, &ids, store);
}

#[test]
fn a_sentinel_names_the_primary_and_clients_share_tokens_through_it() {
    let sentinel = RedisSentinel::start("icr-primary");
    // A dead sentinel first: the next one is asked.
    let closed = common::closed_port();
    let url = sentinel
        .url()
        .replace("redis+sentinel://", &format!("redis+sentinel://127.0.0.1:{closed},"));
    let store = RedisStore::connect(&url).unwrap().timeout(SLOW_MACHINE);
    commands_run(&store);
    clients_share(&FakeRegistry::demo(), &url);

    let unknown = RedisStore::connect(&sentinel.url().replace("icr-primary", "nobody"))
        .unwrap()
        .timeout(SLOW_MACHINE);
    for path in paths() {
        let error = path.run(&unknown, &get("k")).unwrap_err();
        assert!(error.to_string().contains("named a primary called nobody"), "{error}");
    }
}

#[test]
fn a_sentinel_primary_killed_mid_run_costs_no_error_and_sharing_resumes_after_the_failover() {
    let demo = FakeRegistry::demo();
    let mut sentinel = RedisSentinel::start("icr-primary");
    let url = format!("{}/0", sentinel.url());
    let store = || {
        RedisStore::connect(&url)
            .unwrap()
            .timeout(Duration::from_millis(500))
            .retry_after_failure(Duration::from_millis(200))
    };
    let a = icr_app_ureq::Client::builder(app(&demo))
        .store(store())
        .build()
        .unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let b = runtime.block_on(async {
        icr_app_reqwest::Client::builder(app(&demo))
            .store(store())
            .build()
            .unwrap()
    });
    let ids = installations(&demo);
    for id in &ids {
        a.installation_token(id).unwrap();
    }
    let old = sentinel.primary_port();
    sentinel.kill_primary();
    for _ in 0..20 {
        for id in &ids {
            a.installation_token(id).unwrap();
            runtime.block_on(b.installation_token(id)).unwrap();
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    sentinel.wait_for_new_primary();
    assert_ne!(sentinel.primary_port(), old, "the replica was promoted");
    // After the failover both clients store again (on the new primary), and a new client
    // shares what they stored.
    std::thread::sleep(Duration::from_millis(300));
    for id in &ids {
        a.installation_token(id).unwrap();
        runtime.block_on(b.installation_token(id)).unwrap();
    }
    assert_shares_again(&demo, &ids, store);
}

#[test]
fn bad_cluster_and_sentinel_urls_are_refused_without_echoing_them() {
    for url in [
        "redis+cluster://:hunter2@",
        "redis+cluster://:hunter2@127.0.0.1:7000,",
        "redis+cluster://:hunter2@127.0.0.1:notaport",
        "redis+cluster://:hunter2@127.0.0.1:7000/2",
        "redis+sentinel://:hunter2@127.0.0.1:26379",
        "redis+sentinel://:hunter2@127.0.0.1:26379/",
        "redis+sentinel://:hunter2@127.0.0.1:26379/master/notadb",
        "rediss+cluster://:hunter2@0.0.0.0:7000",
    ] {
        let error = RedisStore::connect(url)
            .err()
            .unwrap_or_else(|| panic!("{url} was accepted"));
        let message = format!("{error} {error:?}");
        assert!(!message.contains("hunter2"), "{message}");
        assert!(message.contains("Redis URL"), "{message}");
    }
    let store = RedisStore::connect("rediss+sentinel://app:hunter2@10.0.0.1:26379,10.0.0.2/primary/3").unwrap();
    assert_eq!(
        store.url(),
        "rediss+sentinel://app:***@10.0.0.1:26379,10.0.0.2/primary/3"
    );
    let store = RedisStore::connect("redis+cluster://hunter2@[::1]:7000,10.0.0.2:7001").unwrap();
    assert_eq!(store.url(), "redis+cluster://***@[::1]:7000,10.0.0.2:7001");
}
