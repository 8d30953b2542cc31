//! The token cache hot path and how it scales.
//!
//! - `hit`: a valid cached installation token through `App::peek_token` behind an `RwLock`
//!   read guard, as the clients do (single thread; two threads on different and on the same
//!   installation; two threads each with its own `App` and lock, the no-sharing floor).
//!   Allocations per hit are counted in `tests/benches/allocs.rs` (0).
//! - `scale/N`: the same lookup with N installations cached (1 024 of them probed), against
//!   `scale/plain HashMap floor/N` (a `std::collections::HashMap` of the same keys and handles,
//!   probed the same way), and the resident set growth per entry (printed once per size; exact heap bytes per entry are in
//!   `tests/benches/allocs.rs`).
//! - `lru`: inserting past a cap (eviction on every insert) against inserting into an uncapped
//!   cache of the same size; polling a cached key (which marks it recently used).

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::{Arc, Barrier, RwLock};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
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

fn hit(app: &RwLock<App>, scope: &TokenScope, now: Timestamp) -> Token {
    app.read().unwrap().peek_token(scope, now, None).unwrap().clone()
}

fn bench_hit(c: &mut Criterion) {
    let now = Timestamp::from_unix_seconds(NOW + 60);
    let app = Arc::new(RwLock::new(app_with(8, 10_000)));
    let one = scope(0);
    let mut g = c.benchmark_group("hit");
    g.bench_function("single thread", |b| b.iter(|| hit(&app, black_box(&one), now)));
    // The floor for two threads: each its own `App` behind its own lock, nothing shared.
    let own = [app.clone(), Arc::new(RwLock::new(app_with(8, 10_000)))];
    for (name, same, separate) in [
        ("two threads, different installations", false, false),
        ("two threads, same installation", true, false),
        ("two threads, each its own App and lock (nothing shared)", false, true),
    ] {
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let barrier = Arc::new(Barrier::new(2));
                let threads: Vec<_> = (0..2)
                    .map(|t| {
                        let app = if separate { own[t].clone() } else { app.clone() };
                        let barrier = barrier.clone();
                        let s = if same { scope(0) } else { scope(t) };
                        std::thread::spawn(move || {
                            barrier.wait();
                            let started = Instant::now();
                            for _ in 0..iters {
                                black_box(hit(&app, &s, now));
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
        });
    }
    g.finish();
}

fn bench_scale(c: &mut Criterion) {
    let now = Timestamp::from_unix_seconds(NOW + 60);
    let mut g = c.benchmark_group("scale");
    for n in [1usize, 1_000, 100_000, 1_000_000] {
        let before = rss();
        let app = RwLock::new(app_with(n, usize::MAX));
        let bytes = rss().saturating_sub(before);
        println!("scale/{n}: {} resident bytes per cached installation", bytes / n);
        let probes: Vec<TokenScope> = (0..1024).map(|i| scope(i * 7919 % n)).collect();
        let mut i = 0;
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) & 1023;
                hit(&app, &probes[i], now)
            })
        });
        // The floor at this size: a plain `std` map holding the same keys and the same token
        // handles, probed the same way (hash, compare, clone the handle, nothing else). What
        // grows with N in both is the memory hierarchy (cache and TLB misses), not the lookup.
        let plain: HashMap<TokenScope, Token> = app
            .read()
            .unwrap()
            .cache()
            .tokens()
            .map(|(k, t)| (k.clone(), t.clone()))
            .collect();
        g.bench_with_input(BenchmarkId::new("plain HashMap floor", n), &n, |b, _| {
            b.iter(|| {
                i = (i + 1) & 1023;
                plain.get(&probes[i]).unwrap().clone()
            })
        });
    }
    g.finish();
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
