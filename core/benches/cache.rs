//! The cached-token hot path through the core, and how it scales.
//!
//! Every token here is cached the way a driver caches it: a [`GetToken`] polled to its mint
//! request, answered by hand with a canned registry response.
//!
//! - `hit`: a valid cached installation token through the core, one thread: a [`GetToken`]
//!   polled once (it finishes at once with [`Step::Done`]), on an `App` behind a
//!   `std::sync::Mutex` as the clients keep it, and on the `App` alone.
//! - `scale/N`: the same lookup with N installations cached (1 024 of them probed in turn),
//!   against `scale/locked HashMap floor/N` (a `std::collections::HashMap` of the same keys and
//!   token handles behind the same kind of `Mutex`, probed the same way); and without the lock,
//!   `scale/GetToken alone/N` against `scale/HashMap floor/N`. Each pair is also measured
//!   interleaved (printed as `scale/interleaved/...`), and the resident set growth per entry is
//!   printed once per size.
//!
//! Without `--bench` (e.g. `cargo test --benches`, unoptimised) the sizes stop at 1 000 and the
//! interleaved rounds at two, so a smoke run stays short.

use std::collections::HashMap;
use std::hint::black_box;
use std::sync::Mutex;
use std::time::Instant;

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use icr_app_core::{App, AppKey, CacheConfig, GetToken, InstallationId, Operation, Step, Timestamp, Token, TokenScope};

/// Resident set size in bytes (Linux), to report memory per cached entry.
fn rss() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<usize>().ok()))
        .map_or(0, |pages| pages * 4096)
}

/// Whether this is a measuring run (`cargo bench`), not a smoke run.
fn measuring() -> bool {
    std::env::args().any(|a| a == "--bench")
}

const NOW: i64 = 1_700_000_000;

/// The registry's answer to installation `i`'s mint, as it would send it.
fn minted(i: usize) -> http::Response<Vec<u8>> {
    let body = serde_json::to_vec(&serde_json::json!({
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
    .unwrap();
    http::Response::builder()
        .status(201)
        .header("date", Timestamp::from_unix_seconds(NOW).to_http_date())
        .body(body)
        .unwrap()
}

fn scope(i: usize) -> TokenScope {
    TokenScope::Installation(InstallationId::new(format!("{i:08x}-1111-4000-8000-000000000000")).unwrap())
}

/// Caches installation `i`'s token as a driver would: `GetToken` asks to send its mint, the
/// canned answer comes back, and the next poll hands the token out.
fn mint(app: &mut App, i: usize, now: Timestamp) -> Token {
    let mut op = GetToken::new(scope(i), None);
    let Step::Send { id, .. } = op.poll(app, now) else {
        panic!("installation {i} is not cached yet: the first poll mints")
    };
    op.handle_response(app, id, minted(i), now);
    match op.poll(app, now) {
        Step::Done(Ok(token)) => token,
        other => panic!("installation {i}: {other:?}"),
    }
}

/// An app (no cap) caching `n` installation tokens, and the same tokens in a plain map.
fn app_with(n: usize) -> (App, HashMap<TokenScope, Token>) {
    let key = AppKey::from_pem(include_str!("../tests/fixtures/keys/rsa2048-pkcs8.pem")).unwrap();
    let mut app = App::builder("d23967cc-dd16-452b-8af4-869965745978", key)
        .cache(CacheConfig {
            max_entries: usize::MAX,
            ..CacheConfig::default()
        })
        .build()
        .unwrap();
    let now = Timestamp::from_unix_seconds(NOW);
    let plain = (0..n).map(|i| (scope(i), mint(&mut app, i, now))).collect();
    assert_eq!(app.cached_scopes(), n);
    (app, plain)
}

/// A cached token through the core: one `GetToken`, polled once.
fn get(app: &mut App, scope: &TokenScope, now: Timestamp) -> Token {
    match GetToken::new(scope.clone(), None).poll(app, now) {
        Step::Done(Ok(token)) => token,
        other => panic!("not a hit: {other:?}"),
    }
}

fn bench_hit(c: &mut Criterion) {
    let now = Timestamp::from_unix_seconds(NOW + 60);
    let (app, _) = app_with(8);
    let app = Mutex::new(app);
    let one = scope(0);
    let mut g = c.benchmark_group("hit");
    g.bench_function("single thread, App behind a Mutex", |b| {
        b.iter(|| get(&mut app.lock().unwrap(), black_box(&one), now))
    });
    let mut alone = app.into_inner().unwrap();
    g.bench_function("single thread, App alone", |b| {
        b.iter(|| get(&mut alone, black_box(&one), now))
    });
    // What the clients do before making an operation: `App::hit` alone.
    g.bench_function("single thread, App::hit", |b| {
        b.iter(|| alone.hit(black_box(&one), now, None).expect("a hit"))
    });
    g.finish();
}

fn bench_scale(c: &mut Criterion) {
    let now = Timestamp::from_unix_seconds(NOW + 60);
    let sizes: &[usize] = if measuring() {
        &[1, 1_000, 100_000, 1_000_000]
    } else {
        &[1, 1_000]
    };
    let mut g = c.benchmark_group("scale");
    for &n in sizes {
        let before = rss();
        // The floor at this size: a plain `std` map holding the same keys and the same token
        // handles, probed the same way (hash, compare, clone the handle, nothing else), behind
        // the same kind of lock as a shared `App` must be, and alone. What grows with N in all of
        // them is the memory hierarchy (cache and TLB misses), not the lookup.
        let (app, plain) = app_with(n);
        let bytes = rss().saturating_sub(before);
        println!(
            "scale/{n}: {} resident bytes per cached installation (the App and the plain map's handles)",
            bytes / n
        );
        let probes: Vec<TokenScope> = (0..1024).map(|i| scope(i * 7919 % n)).collect();
        let app = Mutex::new(app);
        let plain_locked = Mutex::new(plain.clone());
        let core_locked = |p: usize| get(&mut app.lock().unwrap(), &probes[p], now);
        let map_locked = |p: usize| plain_locked.lock().unwrap().get(&probes[p]).unwrap().clone();
        let mut i = 0;
        let mut next = move || {
            i = (i + 1) & 1023;
            i
        };
        g.bench_with_input(BenchmarkId::from_parameter(n), &n, |b, _| {
            b.iter(|| core_locked(next()))
        });
        g.bench_with_input(BenchmarkId::new("locked HashMap floor", n), &n, |b, _| {
            b.iter(|| map_locked(next()))
        });
        interleaved(&format!("{n}, both behind a Mutex"), core_locked, map_locked);

        let mut alone = app.into_inner().unwrap();
        let mut core_alone = |p: usize| get(&mut alone, &probes[p], now);
        let map_alone = |p: usize| plain.get(&probes[p]).unwrap().clone();
        g.bench_with_input(BenchmarkId::new("GetToken alone", n), &n, |b, _| {
            b.iter(|| core_alone(next()))
        });
        g.bench_with_input(BenchmarkId::new("HashMap floor", n), &n, |b, _| {
            b.iter(|| map_alone(next()))
        });
        interleaved(&format!("{n}, no lock"), core_alone, map_alone);
    }
    g.finish();
}

/// Ours against the floor, measured interleaved: each round times a pass over the
/// 1 024 probes with each, alternating which goes first, so background load and the state of
/// the caches hit both alike. Prints the median per-round ratio (and the lowest and highest).
fn interleaved(what: &str, mut ours: impl FnMut(usize) -> Token, mut floor: impl FnMut(usize) -> Token) {
    let rounds = if measuring() { 1001 } else { 2 };
    let mut pass = |ours_side: bool| {
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

criterion_group!(benches, bench_hit, bench_scale);
criterion_main!(benches);
