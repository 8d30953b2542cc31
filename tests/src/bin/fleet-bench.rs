//! `fleet-bench`: mints per installation for a fleet of N processes, with and without the Redis
//! store (issue 14's figure), from the fleet binaries next to it.
//!
//! ```text
//! cargo build --release -p icr-app-e2e --bins
//! target/release/fleet-bench [--processes 1,4,16] [--threads 16] [--installations 50] [--runs 3]
//! ```
//!
//! Each run starts a fresh `fleet-registry` (and, with the store, a fresh `redis-server` through
//! testkit's `RedisServer`), then N `fleet-worker --serve` processes of T threads; once every
//! client is built, all are told `get` at once, and every thread of every process gets a token
//! for every installation. Printed per configuration: the registry's mints per installation in
//! each run, the store's shared hits and fallbacks summed over the processes, and the time from
//! `get` until the last process finished (median of the runs; the processes share this
//! machine's cores, so it grows with N).

#[allow(dead_code)]
mod fleet_support;

use std::time::{Duration, Instant};

use fleet_support::{Registry, Worker, WorkerConfig, profile_dir};
use icr_app_testkit::RedisServer;

const APP_ID: &str = "d23967cc-dd16-452b-8af4-869965745978";

struct Run {
    mints_per_installation: f64,
    max_per_installation: usize,
    shared_hits: u64,
    fallbacks: u64,
    wall: Duration,
}

fn main() {
    let mut processes = vec![1, 4, 16];
    let mut threads = 16;
    let mut installations = 50;
    let mut runs = 3;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let value = args.next().unwrap_or_default();
        match arg.as_str() {
            "--processes" => processes = value.split(',').map(|n| n.parse().expect("a number")).collect(),
            "--threads" => threads = value.parse().expect("a number"),
            "--installations" => installations = value.parse().expect("a number"),
            "--runs" => runs = value.parse().expect("a number"),
            _ => {
                eprintln!("usage: fleet-bench [--processes 1,4,16] [--threads 16] [--installations 50] [--runs 3]");
                std::process::exit(2);
            }
        }
    }
    let dir = profile_dir();
    let (registry_bin, worker_bin) = (dir.join("fleet-registry"), dir.join("fleet-worker"));
    for bin in [&registry_bin, &worker_bin] {
        assert!(
            bin.exists(),
            "{} is missing: cargo build --release -p icr-app-e2e --bins",
            bin.display()
        );
    }

    println!(
        "fleet-bench: {threads} threads per process, {installations} installations, {runs} runs per configuration"
    );
    println!();
    println!(
        "| processes | store | mints per installation (each run) | most for one installation | shared hits | fallbacks | time to serve all (median) |"
    );
    println!("|---|---|---|---|---|---|---|");
    for &n in &processes {
        for with_store in [false, true] {
            let results: Vec<Run> = (0..runs)
                .map(|_| run(&registry_bin, &worker_bin, n, threads, installations, with_store))
                .collect();
            let per: Vec<String> = results
                .iter()
                .map(|r| format!("{:.2}", r.mints_per_installation))
                .collect();
            let mut walls: Vec<Duration> = results.iter().map(|r| r.wall).collect();
            walls.sort();
            println!(
                "| {n} | {} | {} | {} | {} | {} | {:.0} ms |",
                if with_store { "Redis" } else { "none" },
                per.join(", "),
                results.iter().map(|r| r.max_per_installation).max().unwrap_or(0),
                results.iter().map(|r| r.shared_hits).sum::<u64>() / runs as u64,
                results.iter().map(|r| r.fallbacks).sum::<u64>(),
                walls[walls.len() / 2].as_secs_f64() * 1e3,
            );
        }
    }
}

fn run(
    registry_bin: &std::path::Path,
    worker_bin: &std::path::Path,
    processes: usize,
    threads: usize,
    installations: usize,
    with_store: bool,
) -> Run {
    let redis = with_store.then(RedisServer::start);
    let mut registry = Registry::start(registry_bin, &[(APP_ID, "demo", installations)]);
    let app = registry.apps[0].clone();
    let config = WorkerConfig {
        redis: redis.as_ref().map(RedisServer::url),
        threads,
        flags: Vec::new(),
    };
    let mut workers: Vec<Worker> = (0..processes)
        .map(|n| Worker::start(worker_bin, &format!("worker {n}"), &registry.base_url, &app, &config))
        .collect();
    let started = Instant::now();
    for w in &mut workers {
        w.send_get(&[]);
    }
    for w in &mut workers {
        let round = w.round();
        round.assert_clean(w.name());
    }
    let wall = started.elapsed();
    let (total, per) = registry.mints();
    let (mut shared_hits, mut fallbacks) = (0, 0);
    for w in &mut workers {
        let stats = w.stats();
        shared_hits += stats["shared_hits"];
        fallbacks += stats["shared_fallbacks"];
    }
    Run {
        mints_per_installation: total as f64 / installations as f64,
        max_per_installation: per.values().copied().max().unwrap_or(0),
        shared_hits,
        fallbacks,
        wall,
    }
}
