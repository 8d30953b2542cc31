//! Each store command against a real redis-server, on the blocking and the async path: what it
//! returns and what it leaves in Redis (values, TTLs, leases).

mod common;

use std::time::Duration;

use common::{SLOW_MACHINE, delete, get, lease, paths, put, raw};
use icr_app_core::StoreReply;
use icr_app_redis::RedisStore;
use icr_app_testkit::RedisServer;
use redis::Commands as _;

/// The TTL Redis has for `key`, in ms (-2: no such key; -1: no TTL).
fn pttl(connection: &mut redis::Connection, key: &str) -> i64 {
    connection.pttl(key).unwrap()
}

#[test]
fn get_reads_a_value_or_nothing() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url()).unwrap().timeout(SLOW_MACHINE);
    let mut raw = raw(&redis.url());
    for path in paths() {
        let key = format!("{}:entry", path.name);
        assert_eq!(
            path.run(&store, &get(&key)).unwrap(),
            StoreReply::Value(None),
            "{}",
            path.name
        );
        // Binary values, zero bytes and non-UTF-8 included, come back as they were.
        let value = [1u8, 0, 255, 254, b'x', 0];
        let () = raw.set(&key, &value[..]).unwrap();
        assert_eq!(
            path.run(&store, &get(&key)).unwrap(),
            StoreReply::Value(Some(value.to_vec())),
            "{}",
            path.name
        );
    }
}

#[test]
fn lease_is_taken_once_until_it_lapses() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url()).unwrap().timeout(SLOW_MACHINE);
    let mut raw = raw(&redis.url());
    for path in paths() {
        let key = format!("{}:lease", path.name);
        let ttl = Duration::from_millis(300);
        assert_eq!(
            path.run(&store, &lease(&key, b"owner-a", ttl)).unwrap(),
            StoreReply::Leased(true)
        );
        // NX: held, whoever asks (the holder too: a lease is taken once).
        assert_eq!(
            path.run(&store, &lease(&key, b"owner-b", ttl)).unwrap(),
            StoreReply::Leased(false)
        );
        assert_eq!(
            path.run(&store, &lease(&key, b"owner-a", ttl)).unwrap(),
            StoreReply::Leased(false)
        );
        let holder: Vec<u8> = raw.get(&key).unwrap();
        assert_eq!(holder, b"owner-a", "{}: the lease holds its owner", path.name);
        let left = pttl(&mut raw, &key);
        assert!(0 < left && left <= 300, "{}: PX ttl applied, {left} ms left", path.name);

        // The holder died: the lease lapses by itself and another takes it.
        std::thread::sleep(Duration::from_millis(350));
        assert_eq!(
            path.run(&store, &lease(&key, b"owner-b", ttl)).unwrap(),
            StoreReply::Leased(true)
        );
        let holder: Vec<u8> = raw.get(&key).unwrap();
        assert_eq!(holder, b"owner-b");
    }
}

#[test]
fn put_sets_the_entry_with_its_ttl_and_releases_only_its_own_lease() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url()).unwrap().timeout(SLOW_MACHINE);
    let mut raw = raw(&redis.url());
    for path in paths() {
        let entry = format!("{}:entry", path.name);
        let lease_key = format!("{entry}::lease");
        let ttl = Duration::from_secs(7200);

        // Another owner's lease stays.
        path.run(&store, &lease(&lease_key, b"owner-a", Duration::from_secs(15)))
            .unwrap();
        let reply = path
            .run(&store, &put(&entry, b"sealed-1", ttl, &lease_key, b"owner-b"))
            .unwrap();
        assert_eq!(reply, StoreReply::Done);
        let value: Vec<u8> = raw.get(&entry).unwrap();
        assert_eq!(value, b"sealed-1");
        let left = pttl(&mut raw, &entry);
        assert!(
            7_100_000 < left && left <= 7_200_000,
            "{}: entry TTL {left} ms",
            path.name
        );
        assert!(
            raw.exists::<_, bool>(&lease_key).unwrap(),
            "{}: not ours to release",
            path.name
        );

        // The writer's own lease goes, and the value and TTL are replaced.
        let reply = path.run(
            &store,
            &put(&entry, b"sealed-2", Duration::from_secs(60), &lease_key, b"owner-a"),
        );
        assert_eq!(reply.unwrap(), StoreReply::Done);
        assert!(
            !raw.exists::<_, bool>(&lease_key).unwrap(),
            "{}: own lease released",
            path.name
        );
        let value: Vec<u8> = raw.get(&entry).unwrap();
        assert_eq!(value, b"sealed-2");
        let left = pttl(&mut raw, &entry);
        assert!(59_000 < left && left <= 60_000, "{}: entry TTL {left} ms", path.name);

        // No lease at all: the entry is still written.
        path.run(&store, &put(&entry, b"sealed-3", ttl, &lease_key, b"owner-a"))
            .unwrap();
        let value: Vec<u8> = raw.get(&entry).unwrap();
        assert_eq!(value, b"sealed-3");

        // The entry expires with its TTL.
        path.run(
            &store,
            &put(&entry, b"sealed-4", Duration::from_millis(50), &lease_key, b"owner-a"),
        )
        .unwrap();
        std::thread::sleep(Duration::from_millis(120));
        assert_eq!(path.run(&store, &get(&entry)).unwrap(), StoreReply::Value(None));
    }
}

#[test]
fn delete_removes_only_a_value_with_the_prefix() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url()).unwrap().timeout(SLOW_MACHINE);
    let mut raw = raw(&redis.url());
    for path in paths() {
        let entry = format!("{}:entry", path.name);
        let value = [1u8, 0xAA, 0, 0xBB, b'r', b'e', b's', b't'];
        let () = raw.set(&entry, &value[..]).unwrap();

        // Another token's id (a newer token): kept.
        assert_eq!(
            path.run(&store, &delete(&entry, &[1, 0xAA, 0, 0xBC])).unwrap(),
            StoreReply::Done
        );
        assert!(
            raw.exists::<_, bool>(&entry).unwrap(),
            "{}: a newer token stays",
            path.name
        );
        // Longer than the value: kept.
        let mut longer = value.to_vec();
        longer.push(0);
        path.run(&store, &delete(&entry, &longer)).unwrap();
        assert!(raw.exists::<_, bool>(&entry).unwrap());

        // This token's id: gone.
        assert_eq!(
            path.run(&store, &delete(&entry, &[1, 0xAA, 0, 0xBB])).unwrap(),
            StoreReply::Done
        );
        assert!(!raw.exists::<_, bool>(&entry).unwrap(), "{}: deleted", path.name);

        // Nothing there: done all the same.
        assert_eq!(path.run(&store, &delete(&entry, &[1])).unwrap(), StoreReply::Done);

        // A lease is released the same way, by its owner id.
        let lease_key = format!("{entry}::lease");
        path.run(&store, &lease(&lease_key, b"owner-a", Duration::from_secs(15)))
            .unwrap();
        path.run(&store, &delete(&lease_key, b"owner-b")).unwrap();
        assert!(raw.exists::<_, bool>(&lease_key).unwrap());
        path.run(&store, &delete(&lease_key, b"owner-a")).unwrap();
        assert!(!raw.exists::<_, bool>(&lease_key).unwrap());
    }
}

#[test]
fn scripts_are_loaded_again_after_redis_forgets_them() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url()).unwrap().timeout(SLOW_MACHINE);
    let mut raw = raw(&redis.url());
    for path in paths() {
        let entry = format!("{}:entry", path.name);
        path.run(&store, &put(&entry, b"v1", Duration::from_secs(60), "l", b"o"))
            .unwrap();
        let () = redis::cmd("SCRIPT").arg("FLUSH").query(&mut raw).unwrap();
        path.run(&store, &put(&entry, b"v2", Duration::from_secs(60), "l", b"o"))
            .unwrap();
        path.run(&store, &delete(&entry, b"v2")).unwrap();
        assert!(!raw.exists::<_, bool>(&entry).unwrap());
    }
}

#[test]
fn a_key_of_another_type_is_an_error_not_a_value() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url()).unwrap().timeout(SLOW_MACHINE);
    let mut raw = raw(&redis.url());
    let () = raw.hset("a-hash", "field", "value").unwrap();
    for path in paths() {
        let error = path.run(&store, &get("a-hash")).unwrap_err();
        assert!(error.to_string().contains("WRONGTYPE"), "{}: {error}", path.name);
        // The store goes on working.
        assert_eq!(path.run(&store, &get("other")).unwrap(), StoreReply::Value(None));
    }
}

#[test]
fn many_threads_and_tasks_share_one_store() {
    let redis = RedisServer::start();
    let store = std::sync::Arc::new(RedisStore::connect(&redis.url()).unwrap().timeout(SLOW_MACHINE));
    // 16 threads, each taking leases on 20 keys: every key leased exactly once.
    let taken: usize = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..16)
            .map(|t| {
                let store = store.clone();
                scope.spawn(move || {
                    (0..20)
                        .filter(|k| {
                            let owner = format!("thread-{t}");
                            store.run_blocking(&lease(&format!("k{k}"), owner.as_bytes(), Duration::from_secs(30)))
                                == Ok(StoreReply::Leased(true))
                        })
                        .count()
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(taken, 20);

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let taken: usize = runtime.block_on(async {
        let tasks: Vec<_> = (0..64)
            .map(|t| {
                let store = store.clone();
                tokio::spawn(async move {
                    let mut taken = 0;
                    for k in 0..20 {
                        let owner = format!("task-{t}");
                        let command = lease(&format!("a{k}"), owner.as_bytes(), Duration::from_secs(30));
                        if store.run(&command).await == Ok(StoreReply::Leased(true)) {
                            taken += 1;
                        }
                    }
                    taken
                })
            })
            .collect();
        let mut sum = 0;
        for task in tasks {
            sum += task.await.unwrap();
        }
        sum
    });
    assert_eq!(taken, 20);
}
