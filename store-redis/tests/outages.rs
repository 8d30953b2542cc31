//! Redis down, killed mid-use and restarted, or hung: every call fails fast, within the timeout,
//! with the cause in its message, and the same store works again once Redis answers.

mod common;

use std::time::{Duration, Instant};

use common::{SilentServer, closed_port, get, lease, paths, put};
use icr_app_core::{Error, StoreReply, TransportErrorKind};
use icr_app_redis::RedisStore;
use icr_app_testkit::RedisServer;

fn kind(error: &Error) -> TransportErrorKind {
    match error {
        Error::Store { kind, .. } => *kind,
        other => panic!("not a transport error: {other:?}"),
    }
}

#[test]
fn connect_does_not_dial_and_a_redis_that_is_down_is_refused_fast() {
    let port = closed_port();
    let url = format!("redis://127.0.0.1:{port}/0");
    // Nothing listens: making the store still works.
    let store = RedisStore::connect(&url).unwrap();
    for path in paths() {
        let started = Instant::now();
        let error = path.run(&store, &get("k")).unwrap_err();
        let took = started.elapsed();
        assert_eq!(kind(&error), TransportErrorKind::Connect, "{}: {error}", path.name);
        let message = error.to_string();
        assert!(message.contains("refused the connection"), "{message}");
        assert!(message.contains(&format!("redis://127.0.0.1:{port}/0")), "{message}");
        assert!(took < Duration::from_millis(100), "{}: refused in {took:?}", path.name);
    }
}

#[test]
fn a_redis_that_was_down_at_startup_is_used_once_it_is_up() {
    let mut redis = RedisServer::start();
    redis.stop();
    let store = RedisStore::connect(&redis.url()).unwrap();
    for path in paths() {
        assert!(path.run(&store, &get("k")).is_err(), "{}", path.name);
    }
    redis.restart();
    for path in paths() {
        assert_eq!(
            path.run(&store, &get("k")).unwrap(),
            StoreReply::Value(None),
            "{}",
            path.name
        );
    }
}

#[test]
fn killed_mid_use_then_restarted_the_same_store_works_again() {
    let mut redis = RedisServer::start();
    let timeout = Duration::from_millis(300);
    let store = RedisStore::connect(&redis.url()).unwrap().timeout(timeout);
    for path in paths() {
        // In use: connections are open and idle between calls.
        for _ in 0..3 {
            path.run(&store, &put("e", b"v", Duration::from_secs(60), "l", b"o"))
                .unwrap();
        }

        redis.stop();
        for attempt in 0..3 {
            let started = Instant::now();
            let error = path.run(&store, &get("e")).unwrap_err();
            let took = started.elapsed();
            assert!(took < timeout, "{} attempt {attempt}: failed after {took:?}", path.name);
            assert!(
                matches!(
                    kind(&error),
                    TransportErrorKind::Connect | TransportErrorKind::ConnectionLost
                ),
                "{}: {error}",
                path.name
            );
        }

        // Back (empty: the server keeps nothing): the very first call works, on a new connection.
        redis.restart();
        let started = Instant::now();
        assert_eq!(
            path.run(&store, &get("e")).unwrap(),
            StoreReply::Value(None),
            "{}",
            path.name
        );
        assert!(started.elapsed() < timeout);
        assert_eq!(
            path.run(&store, &lease("l", b"o", Duration::from_secs(1))).unwrap(),
            StoreReply::Leased(true)
        );
    }
}

#[test]
fn a_restart_between_calls_costs_no_failed_call() {
    // Idle connections break when Redis restarts (or closes them after its `timeout`); the next
    // command is retried once on a new connection.
    let mut redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url()).unwrap();
    for path in paths() {
        path.run(&store, &get("k")).unwrap();
        redis.restart();
        assert_eq!(
            path.run(&store, &get("k")).unwrap(),
            StoreReply::Value(None),
            "{}",
            path.name
        );
        path.run(&store, &lease("lease", b"me", Duration::from_secs(5)))
            .unwrap();
        redis.restart();
        // A lease retried after a broken connection is still taken.
        assert_eq!(
            path.run(&store, &lease("lease", b"me", Duration::from_secs(5)))
                .unwrap(),
            StoreReply::Leased(true),
            "{}",
            path.name
        );
    }
}

#[test]
fn a_redis_that_accepts_and_never_answers_times_out_within_the_timeout() {
    let silent = SilentServer::start();
    let timeout = Duration::from_millis(200);
    let store = RedisStore::connect(&format!("redis://:hunter2@{}/1", silent.addr))
        .unwrap()
        .timeout(timeout);
    for path in paths() {
        for attempt in 0..2 {
            let started = Instant::now();
            let error = path.run(&store, &get("k")).unwrap_err();
            let took = started.elapsed();
            assert_eq!(kind(&error), TransportErrorKind::Timeout, "{}: {error}", path.name);
            assert!(
                took >= timeout - Duration::from_millis(5) && took < timeout + Duration::from_millis(150),
                "{} attempt {attempt}: gave up after {took:?} with a timeout of {timeout:?}",
                path.name
            );
            let message = error.to_string();
            assert!(message.contains("did not answer within 200 ms"), "{message}");
            assert!(!message.contains("hunter2"), "{message}");
        }
    }
    assert!(silent.accepted() >= 1, "the calls did reach the server");
}

#[test]
fn a_redis_that_hangs_mid_use_times_out_and_is_used_again_once_it_answers() {
    // CLIENT PAUSE holds every client's commands, longer than the timeout: a Redis that hangs
    // on connections the store already has open.
    let redis = RedisServer::start();
    let timeout = Duration::from_millis(200);
    let store = RedisStore::connect(&redis.url()).unwrap().timeout(timeout);
    let mut raw = common::raw(&redis.url());
    for path in paths() {
        path.run(&store, &put("e", b"v", Duration::from_secs(60), "l", b"o"))
            .unwrap();
        let () = redis::cmd("CLIENT")
            .arg("PAUSE")
            .arg(600)
            .arg("ALL")
            .query(&mut raw)
            .unwrap();
        let started = Instant::now();
        let error = path.run(&store, &get("e")).unwrap_err();
        let took = started.elapsed();
        assert_eq!(kind(&error), TransportErrorKind::Timeout, "{}: {error}", path.name);
        assert!(took < timeout + Duration::from_millis(150), "{}: {took:?}", path.name);
        std::thread::sleep(Duration::from_millis(600));
        assert_eq!(
            path.run(&store, &get("e")).unwrap(),
            StoreReply::Value(Some(b"v".to_vec())),
            "{}: a new connection, not the one that timed out (whose late answer would be misread)",
            path.name
        );
    }
}
