//! The token cache hot path and how it scales.
//!
//! - `hit`: a valid cached installation token through `App::peek_token` behind a `ShardedLock`
//!   read guard, as the clients do (single thread; two threads on different and on the same
//!   installation; two threads each with its own `App` and lock, the no-sharing floor).
//!   Allocations per hit are counted in `tests/benches/allocs.rs` (0).
//! - `scale/N`: the same lookup with N installations cached (1 024 of them probed), against
//!   `scale/locked HashMap floor/N` (a `std::collections::HashMap` of the same keys and handles
//!   behind the same lock, probed the same way); and without the lock, `scale/cache alone/N`
//!   against `scale/HashMap floor/N`. Each pair is also measured interleaved (printed as
//!   `scale/interleaved/...`), and the resident set growth per entry is printed once per size
//!   (exact heap bytes per entry are in `tests/benches/allocs.rs`).
//! - `lru`: inserting past a cap (eviction on every insert) against inserting into an uncapped
//!   cache of the same size; polling a cached key (which marks it recently used).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use crossbeam_utils::sync::ShardedLock as Lock;
use icr_app_core::{AccessToken, App, AppKey, CacheConfig, InstallationId, Timestamp, Token, TokenCache, TokenScope};

/// Resident set size in bytes (Linux), to report memory per cached entry.
fn rss() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<usize>().ok()))
        .map_or(0, |pages| pages * 4096)
}

const NOW: i64 = 1_700_000_000;

fn access(i: usize) -> AccessToken {
    serde_json::from_value(serde_json::json!({
        "id": format!("{i:08x}-0000-4000-8000-000000000000"),
        "token": format!("crs_{i:048x}"),
        "createdAt": Timestamp::from_unix_seconds(NOW).to_rfc3339(),
        "updatedAt": Timestamp::from_unix_seconds(NOW).to_rfc3339(),
        "expiresAt": Timestamp::from_unix_seconds(NOW + 7200).to_rfc3339(),
        "isActive": true,
        "permissions": {"organization_info": "VIEW", "organization_inventory": "REQUEST"},
        "appId": "d23967cc-dd16-452b-8af4-869965745978",
        "installationId": format!("{i:08x}-1111-4000-8000-000000000000"),
        "organizationId": format!("{i:08x}-2222-4000-8000-000000000000"),
    }))
    .unwrap()
}

fn scope(i: usize) -> TokenScope {
    TokenScope::Installation(InstallationId::new(format!("{i:08x}-1111-4000-8000-000000000000")).unwrap())
}

/// An app whose cache holds `n` valid installation tokens.
fn app_with(n: usize, cap: usize) -> App {
    let key = AppKey::from_pem(include_str!("../tests/fixtures/keys/rsa2048-pkcs8.pem")).unwrap();
    let mut app = App::builder("d23967cc-dd16-452b-8af4-869965745978", key)
        .cache(CacheConfig {
            max_entries: cap,
            ..CacheConfig::default()
        })
        .build()
        .unwrap();
    fill(app.cache_mut(), n);
    app
}

fn fill(cache: &mut TokenCache<TokenScope>, n: usize) {
    let config = cache.config().clone();
    let now = Timestamp::from_unix_seconds(NOW);
    for i in 0..n {
        cache.insert(scope(i), Token::new(access(i), now, 0, &config));
    }
}

fn hit(app: &Lock<App>, scope: &TokenScope, now: Timestamp) -> Token {
    app.read().unwrap().peek_token(scope, now, None).unwrap()
}

fn bench_hit(c: &mut Criterion) {
    let now = Timestamp::from_unix_seconds(NOW + 60);
    let app = Arc::new(Lock::new(app_with(8, 10_000)));
    let one = scope(0);
    let mut g = c.benchmark_group("hit");
    g.bench_function("single thread", |b| b.iter(|| hit(&app, black_box(&one), now)));
    // The floors for two threads: each its own `App` behind its own lock (nothing shared); and
    // for the same installation, two threads only cloning one shared `Token` handle (the
    // reference count's cache line moving between the cores, which any shared handle pays).
    let other = Arc::new(Lock::new(app_with(8, 10_000)));
    let token = hit(&app, &one, now);
    let mut two = |name: &str, per_thread: &(dyn Fn(usize) -> Token + Sync)| {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let barrier = Barrier::new(2);
                std::thread::scope(|s| {
                    let threads: Vec<_> = (0..2)
                        .map(|t| {
                            let barrier = &barrier;
                            s.spawn(move || {
                                barrier.wait();
                                let started = Instant::now();
                                for _ in 0..iters {
                                    black_box(per_thread(t));
                                }
                                started.elapsed()
                            })
                        })
                        .collect();
                    threads
                        .into_iter()
                        .map(|t| t.join().unwrap())
                        .max()
                        .unwrap_or(Duration::ZERO)
                })
            })
        });
    };
    let scopes = [scope(0), scope(1)];
    two("two threads, different installations", &|t| hit(&app, &scopes[t], now));
    two("two threads, same installation", &|_| hit(&app, &one, now));
    two("two threads, each its own App and lock (nothing shared)", &|t| {
        hit(if t == 0 { &app } else { &other }, &one, now)
    });
    two(
        "two threads, cloning one shared Token (floor for the same installation)",
        &|_| token.clone(),
    );
    g.finish();
}

fn bench_scale(c: &mut Criterion) {
    let now = Timestamp::from_unix_seconds(NOW + 60);
    let mut g = c.benchmark_group("scale");
    for n in [1usize, 1_000, 100_000, 1_000_000] {
        let before = rss();
        let app = Lock::new(app_with(n, usize::MAX));
        let bytes = rss().saturating_sub(before);
        println!("scale/{n}: {} resident bytes per cached installation", bytes / n);
        let probes: Vec<TokenScope> = (0..1024).map(|i| scope(i * 7919 % n)).collect();
        // The floor at this size: a plain `std` map holding the same keys and the same token
        // handles, probed the same way (hash, compare, clone the handle, nothing else), alone
        // and behind the same lock as a shared cache must be. What grows with N in all of them is
        // the memory hierarchy (cache and TLB misses), not the lookup.
        let plain: HashMap<TokenScope, Token> = app
            .read()
            .unwrap()
            .cache()
            .tokens()
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect();
        let plain_locked = Lock::new(plain.clone());
        let guard = app.read().unwrap();
        let cache_alone = |p: usize| guard.peek_token(&probes[p], now, None).unwrap();
        let map_alone = |p: usize| plain.get(&probes[p]).unwrap().clone();
        let cache_locked = |p: usize| hit(&app, &probes[p], now);
        let map_locked = |p: usize| plain_locked.read().unwrap().get(&probes[p]).unwrap().clone();
        let mut i = 0;
        let mut next = || {
            i = (i + 1) & 1023;
            i
        };
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| cache_locked(next()))
        });
        g.bench_with_input(BenchmarkId::new("locked HashMap floor", n), &n, |b, _| {
            b.iter(|| map_locked(next()))
        });
        g.bench_with_input(BenchmarkId::new("cache alone", n), &n, |b, _| {
            b.iter(|| cache_alone(next()))
        });
        g.bench_with_input(BenchmarkId::new("HashMap floor", n), &n, |b, _| {
            b.iter(|| map_alone(next()))
        });
        interleaved(&format!("{n}, both behind the lock"), cache_locked, map_locked);
        interleaved(&format!("{n}, no lock"), cache_alone, map_alone);
        drop(guard);
    }
    g.finish();
}

/// Ours against the floor, measured interleaved: each round times a pass over the
/// 1 024 probes with each, alternating which goes first, so background load and the state of
/// the caches hit both alike. Prints the median per-round ratio (and the lowest and highest).
fn interleaved(what: &str, ours: impl Fn(usize) -> Token, floor: impl Fn(usize) -> Token) {
    // `cargo test --benches` runs this once, unoptimised, without `--bench`: two rounds then.
    let rounds = if std::env::args().any(|a| a == "--bench") {
        1001
    } else {
        2
    };
    let pass = |ours_side: bool| {
        let started = Instant::now();
        for p in 0..1024 {
            black_box(if ours_side { ours(p) } else { floor(p) });
        }
        started.elapsed().as_secs_f64() * 1e9 / 1024.0
    };
    let (mut ratios, mut ns) = (Vec::new(), [Vec::new(), Vec::new()]);
    for round in 0..rounds {
        let first = round % 2 == 0;
        let a = pass(first);
        let b = pass(!first);
        let (o, f) = if first { (a, b) } else { (b, a) };
        ns[0].push(o);
        ns[1].push(f);
        ratios.push(o / f);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (o, f) = (median(&mut ns[0]), median(&mut ns[1]));
    let r = median(&mut ratios);
    println!(
        "scale/interleaved/{what}: ours {o:.1} ns, floor {f:.1} ns, ours - floor {:.1} ns, ours / floor {r:.3} \
         median of {rounds} rounds (lowest {:.3}, highest {:.3})",
        o - f,
        ratios[0],
        ratios[rounds - 1]
    );
}

fn bench_lru(c: &mut Criterion) {
    let now = Timestamp::from_unix_seconds(NOW);
    let mut g = c.benchmark_group("lru");
    for cap in [1_000usize, 100_000] {
        let mut cache: TokenCache<TokenScope> = TokenCache::new(
            CacheConfig {
                max_entries: cap,
                ..CacheConfig::default()
            },
            1,
        );
        fill(&mut cache, cap);
        let config = cache.config().clone();
        let tokens: Vec<Token> = (0..1024).map(|i| Token::new(access(i), now, 0, &config)).collect();
        let mut next = cap;
        g.bench_with_input(BenchmarkId::new("insert past the cap", cap), &cap, |b, _| {
            b.iter(|| {
                next += 1;
                cache.insert(scope(next), tokens[next & 1023].clone());
            })
        });
        // The same inserts into an uncapped cache holding as many entries (it grows instead).
        let mut uncapped: TokenCache<TokenScope> = TokenCache::new(
            CacheConfig {
                max_entries: usize::MAX,
                ..CacheConfig::default()
            },
            1,
        );
        fill(&mut uncapped, cap);
        let mut grown = cap;
        g.bench_with_input(BenchmarkId::new("insert, no cap", cap), &cap, |b, _| {
            b.iter(|| {
                grown += 1;
                uncapped.insert(scope(grown), tokens[grown & 1023].clone());
            })
        });
        drop(uncapped);
        // The state machine's own path for a cached key (poll marks it recently used).
        let key = scope(next);
        g.bench_with_input(BenchmarkId::new("poll a cached key", cap), &cap, |b, _| {
            b.iter(|| match cache.poll(&key, now, None) {
                icr_app_core::Poll::Ready(t) => t,
                other => panic!("{other:?}"),
            })
        });
    }
    g.finish();
}

criterion_group!(benches, bench_hit, bench_scale, bench_lru);
criterion_main!(benches);
