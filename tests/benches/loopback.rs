//! End to end on loopback against the fake registry:
//!
//! - `cached`: `installation_token` served from the cache, through each client: one thread, and
//!   two threads at once on different and on the same installation (the async client's future
//!   polled once with a no-op waker on each thread, the SDK's part without a runtime).
//! - `cold mint`: a fresh installation's first token through each client, against a bare
//!   `ureq` / `reqwest` POST of the same request (same JWT, same endpoint) — the SDK's share;
//!   `share`: the same comparison measured interleaved (robust to background load).
//! - `coalescing`: 1 000 concurrent callers (tasks; threads for ureq) on one cold installation:
//!   mints issued (printed and asserted: 1) and the time until all have the token, against one caller.

use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::{Arc, Barrier};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use criterion::measurement::WallTime;
use criterion::{BenchmarkGroup, Criterion, criterion_group, criterion_main};
use icr_app_core::{App, AppKey, InstallationId};
use icr_app_testkit::{DEMO_PRIVATE_KEY_PEM, FakeRegistry};

const APP_ID: &str = "d23967cc-dd16-452b-8af4-869965745978";

fn app(registry: &FakeRegistry) -> App {
    App::builder(APP_ID, AppKey::from_pem(DEMO_PRIVATE_KEY_PEM).unwrap())
        .base_url(registry.base_url())
        .build()
        .unwrap()
}

fn registry() -> FakeRegistry {
    let r = FakeRegistry::start();
    r.register_app_with_private_key(APP_ID, DEMO_PRIVATE_KEY_PEM).unwrap();
    r
}

fn install(r: &FakeRegistry) -> InstallationId {
    InstallationId::new(r.add_installation(APP_ID, "Org", &[("organization_info", "VIEW")])).unwrap()
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// Polls a future once with a no-op waker; a cache hit completes on the first poll.
fn poll_once<F: Future>(f: F) -> F::Output {
    match pin!(f).poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a cache hit completes on its first poll"),
    }
}

/// Two threads calling `per_thread(thread)` at once, `iters` times each; the slower one's time.
fn two_threads(g: &mut BenchmarkGroup<'_, WallTime>, name: &str, per_thread: &(dyn Fn(usize) + Sync)) {
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
                                per_thread(t);
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
}

fn cached(c: &mut Criterion) {
    let r = registry();
    let ids = [install(&r), install(&r)];
    let id = &ids[0];
    let mut g = c.benchmark_group("cached");
    let blocking = icr_app_ureq::Client::new(app(&r));
    for id in &ids {
        blocking.installation_token(id).unwrap();
    }
    g.bench_function("ureq client installation_token", |b| {
        b.iter(|| blocking.installation_token(id).unwrap())
    });
    two_threads(&mut g, "ureq client, two threads, different installations", &|t| {
        black_box(blocking.installation_token(&ids[t]).unwrap());
    });
    two_threads(&mut g, "ureq client, two threads, same installation", &|_| {
        black_box(blocking.installation_token(id).unwrap());
    });
    let rt = runtime();
    let client = rt.block_on(async { icr_app_reqwest::Client::new(app(&r)).unwrap() });
    for id in &ids {
        rt.block_on(client.installation_token(id)).unwrap();
    }
    g.bench_function("reqwest client installation_token", |b| {
        b.iter(|| rt.block_on(client.installation_token(id)).unwrap())
    });
    g.bench_function("reqwest: an empty block_on (the floor of the line above)", |b| {
        b.iter(|| rt.block_on(async {}))
    });
    // The SDK's part alone: the future polled once with a no-op waker, no runtime.
    g.bench_function(
        "reqwest client installation_token, polled once without a runtime",
        |b| b.iter(|| poll_once(client.installation_token(id)).unwrap()),
    );
    two_threads(
        &mut g,
        "reqwest client, polled once, two threads, different installations",
        &|t| {
            black_box(poll_once(client.installation_token(&ids[t])).unwrap());
        },
    );
    two_threads(
        &mut g,
        "reqwest client, polled once, two threads, same installation",
        &|_| {
            black_box(poll_once(client.installation_token(id)).unwrap());
        },
    );
    g.finish();
}

/// A bare ureq mint: the SDK's POST to `url` with a pre-made JWT, the body read and parsed as JSON.
fn bare_ureq_mint(agent: &ureq::Agent, url: &str, jwt: &str) {
    let mut res = agent
        .post(url)
        .header("authorization", format!("Bearer {jwt}"))
        .header("accept", "application/json")
        .header("x-icr-api-version", "2023-06-16")
        .content_type("application/json")
        .send("{}")
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&res.body_mut().read_to_vec().unwrap()).unwrap();
    assert!(v["token"].is_string());
}

/// A bare reqwest mint: the SDK's POST to `url` with a pre-made JWT, the body read and parsed.
async fn bare_reqwest_mint(client: &reqwest::Client, url: &str, jwt: &str) {
    let res = client
        .post(url)
        .header("authorization", format!("Bearer {jwt}"))
        .header("accept", "application/json")
        .header("x-icr-api-version", "2023-06-16")
        .header("content-type", "application/json")
        .body("{}")
        .send()
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_slice(&res.bytes().await.unwrap()).unwrap();
    assert!(v["token"].is_string());
}

fn cold_mint(c: &mut Criterion) {
    let r = registry();
    r.set_token_lifetime(Duration::from_secs(7200));
    let id = install(&r);
    let scope = icr_app_core::TokenScope::Installation(id.clone());
    let mut g = c.benchmark_group("cold mint");

    // Through the SDK: each iteration drops the cached token, so the call mints (the JWT stays
    // cached, as it does in a running app).
    let blocking = icr_app_ureq::Client::new(app(&r));
    blocking.jwt().unwrap();
    g.bench_function("ureq client", |b| {
        b.iter(|| {
            let t = blocking.installation_token(&id).unwrap();
            blocking.invalidate(&scope, &t);
        })
    });
    // Bare ureq: the same POST with a pre-made JWT, the body read and parsed as JSON.
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let jwt = blocking.jwt().unwrap().token().expose().to_owned();
    let base = r.base_url();
    g.bench_function("bare ureq POST", |b| {
        b.iter(|| {
            bare_ureq_mint(&agent, &format!("{base}/app/installations/{id}/accessTokens"), &jwt);
        })
    });

    // The same bare POST through an agent with the SDK's timeouts: ureq's default resolver then
    // resolves on a new thread before every request (what `UreqTransport::new` now avoids).
    let timed: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_connect(Some(Duration::from_secs(10)))
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .into();
    g.bench_function("bare ureq POST, agent with timeouts", |b| {
        b.iter(|| {
            bare_ureq_mint(&timed, &format!("{base}/app/installations/{id}/accessTokens"), &jwt);
        })
    });

    let rt = runtime();
    let client = icr_app_reqwest::Client::new(app(&r)).unwrap();
    rt.block_on(client.jwt()).unwrap();
    g.bench_function("reqwest client", |b| {
        b.iter(|| {
            let t = rt.block_on(client.installation_token(&id)).unwrap();
            client.invalidate(&scope, &t);
        })
    });
    let bare = icr_app_reqwest::ReqwestTransport::client_builder()
        .unwrap()
        .build()
        .unwrap();
    g.bench_function("bare reqwest POST", |b| {
        b.iter(|| {
            rt.block_on(async {
                bare_reqwest_mint(&bare, &format!("{base}/app/installations/{id}/accessTokens"), &jwt).await;
            })
        })
    });
    g.finish();
}

/// The SDK's share of a cold mint, measured interleaved so background load hits both sides
/// alike: rounds of a batch of mints through the client and a batch of bare POSTs of the same
/// request, alternating which goes first. Prints the mean of each and the median per-round ratio.
fn share(_: &mut Criterion) {
    // `cargo test --benches` runs this once, unoptimised, without `--bench`: two rounds then.
    let full = std::env::args().any(|a| a == "--bench");
    let n_rounds: usize = if full { 200 } else { 2 };
    const BATCH: u32 = 25;
    let r = registry();
    r.set_token_lifetime(Duration::from_secs(7200));
    let id = install(&r);
    let scope = icr_app_core::TokenScope::Installation(id.clone());
    let base = r.base_url();
    let url = format!("{base}/app/installations/{id}/accessTokens");
    // Per round: the mean time of one mint through the client, of one bare POST, and their
    // ratio. Reported as medians over the rounds (one slow round cannot move them).
    let report = |name: &str, mut rounds: Vec<[f64; 3]>| {
        let median = |rounds: &mut Vec<[f64; 3]>, k: usize| {
            rounds.sort_by(|a, b| a[k].total_cmp(&b[k]));
            rounds[rounds.len() / 2][k]
        };
        let (sdk, bare, ratio) = (median(&mut rounds, 0), median(&mut rounds, 1), median(&mut rounds, 2));
        let (lowest, highest) = (rounds[0][2], rounds[rounds.len() - 1][2]);
        println!(
            "share/{name}: client mint {sdk:.1} µs, bare POST {bare:.1} µs (medians of {} rounds of {BATCH}); \
             SDK share {:+.1} µs, ratio {ratio:.3} (median; lowest {lowest:.3}, highest {highest:.3})",
            rounds.len(),
            sdk - bare,
        );
    };
    let interleave = |mut sdk: Box<dyn FnMut() + '_>, mut bare: Box<dyn FnMut() + '_>| {
        // A warm-up batch of each (connections, first-use costs), not counted.
        for _ in 0..BATCH {
            sdk();
            bare();
        }
        icr_app_e2e::interleave(n_rounds, BATCH, sdk, bare)
    };

    let blocking = icr_app_ureq::Client::new(app(&r));
    let jwt = blocking.jwt().unwrap().token().expose().to_owned();
    let agent: ureq::Agent = ureq::Agent::config_builder().http_status_as_error(false).build().into();
    let per_round = interleave(
        Box::new(|| {
            let t = blocking.installation_token(&id).unwrap();
            blocking.invalidate(&scope, &t);
        }),
        Box::new(|| {
            bare_ureq_mint(&agent, &url, &jwt);
        }),
    );
    report("ureq", per_round);

    let rt = runtime();
    let client = icr_app_reqwest::Client::new(app(&r)).unwrap();
    rt.block_on(client.jwt()).unwrap();
    let bare = icr_app_reqwest::ReqwestTransport::client_builder()
        .unwrap()
        .build()
        .unwrap();
    let per_round = interleave(
        Box::new(|| {
            let t = rt.block_on(client.installation_token(&id)).unwrap();
            client.invalidate(&scope, &t);
        }),
        Box::new(|| {
            rt.block_on(async {
                bare_reqwest_mint(&bare, &url, &jwt).await;
            })
        }),
    );
    report("reqwest", per_round);
}

/// The mean time of one caller minting a fresh installation's token, after a warm-up mint.
fn one_caller(mint: impl Fn(&InstallationId), r: &FakeRegistry) -> Duration {
    mint(&install(r));
    let ids: Vec<_> = (0..5).map(|_| install(r)).collect();
    let started = Instant::now();
    for id in &ids {
        mint(id);
    }
    started.elapsed() / 5
}

/// Not a criterion loop: one measurement of 1 000 callers against one, printed with the mint count.
fn coalescing(_: &mut Criterion) {
    let r = registry();

    let client = icr_app_ureq::Client::new(app(&r));
    let alone = one_caller(|id| drop(client.installation_token(id).unwrap()), &r);
    let id = install(&r);
    let barrier = Arc::new(Barrier::new(1000));
    let started = Instant::now();
    let threads: Vec<_> = (0..1000)
        .map(|_| {
            let (client, barrier, id) = (client.clone(), barrier.clone(), id.clone());
            std::thread::spawn(move || {
                barrier.wait();
                client.installation_token(&id).unwrap()
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let all = started.elapsed();
    // The floor: the same 1 000 threads started, met at the barrier and joined, asking nothing.
    let barrier = Arc::new(Barrier::new(1000));
    let started = Instant::now();
    let threads: Vec<_> = (0..1000)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let floor = started.elapsed();
    assert_eq!(
        r.mint_count(id.as_str()),
        1,
        "1 000 threads on one cold installation: one mint"
    );
    println!(
        "coalescing/ureq: 1000 threads: {} mint(s), all served in {:.2} ms (the threads alone, asking \
         nothing: {:.2} ms); one caller alone {:.2} ms",
        r.mint_count(id.as_str()),
        all.as_secs_f64() * 1e3,
        floor.as_secs_f64() * 1e3,
        alone.as_secs_f64() * 1e3
    );

    let rt = runtime();
    let (alone, all, floor, mints) = rt.block_on(async {
        let client = icr_app_reqwest::Client::new(app(&r)).unwrap();
        client.installation_token(&install(&r)).await.unwrap();
        let mut alone = Duration::ZERO;
        for _ in 0..5 {
            let id = install(&r);
            let started = Instant::now();
            client.installation_token(&id).await.unwrap();
            alone += started.elapsed() / 5;
        }
        let id = install(&r);
        let started = Instant::now();
        let tasks: Vec<_> = (0..1000)
            .map(|_| {
                let (client, id) = (client.clone(), id.clone());
                tokio::spawn(async move { client.installation_token(&id).await.unwrap() })
            })
            .collect();
        for t in tasks {
            t.await.unwrap();
        }
        let all = started.elapsed();
        // The floor: 1 000 tasks spawned and awaited, asking nothing.
        let started = Instant::now();
        let tasks: Vec<_> = (0..1000).map(|_| tokio::spawn(async {})).collect();
        for t in tasks {
            t.await.unwrap();
        }
        (alone, all, started.elapsed(), r.mint_count(id.as_str()))
    });
    assert_eq!(mints, 1, "1 000 tasks on one cold installation: one mint");
    println!(
        "coalescing/reqwest: 1000 tasks: {mints} mint(s), all served in {:.2} ms (the tasks alone, asking \
         nothing: {:.2} ms); one caller alone {:.2} ms",
        all.as_secs_f64() * 1e3,
        floor.as_secs_f64() * 1e3,
        alone.as_secs_f64() * 1e3
    );
}

criterion_group!(benches, cached, cold_mint, share, coalescing);
criterion_main!(benches);
