//! How long one call takes on loopback, each path (`cargo test --release -p icr-app-redis --test
//! timing -- --ignored --nocapture`). Ignored by default: it measures, it checks nothing a
//! machine's speed could fail.

mod common;

use std::time::{Duration, Instant};

use common::{get, paths, put};
use icr_app_redis::RedisStore;
use icr_app_testkit::RedisServer;

fn median(mut samples: Vec<Duration>) -> Duration {
    samples.sort();
    samples[samples.len() / 2]
}

#[test]
#[ignore = "a measurement: run with --ignored --nocapture"]
fn one_call_on_loopback() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url()).unwrap();
    for path in paths() {
        let hit = put("entry", &[7; 120], Duration::from_secs(60), "lease", b"owner");
        path.run(&store, &hit).unwrap();
        for (name, command) in [
            ("GET (hit)", get("entry")),
            ("GET (miss)", get("none")),
            ("PUT", hit.clone()),
        ] {
            for _ in 0..200 {
                path.run(&store, &command).unwrap();
            }
            let samples: Vec<Duration> = (0..5000)
                .map(|_| {
                    let started = Instant::now();
                    path.run(&store, &command).unwrap();
                    started.elapsed()
                })
                .collect();
            println!("{:>8} {name:<11} median {:?}", path.name, median(samples));
        }
    }
    // The first call of a store connects.
    for path in paths() {
        let samples: Vec<Duration> = (0..50)
            .map(|_| {
                let fresh = RedisStore::connect(&redis.url()).unwrap();
                let started = Instant::now();
                path.run(&fresh, &get("entry")).unwrap();
                started.elapsed()
            })
            .collect();
        println!("{:>8} first call (connects) median {:?}", path.name, median(samples));
    }
}
