//! Allocations and heap bytes, counted by a wrapping global allocator (`stats_alloc`). Not a
//! criterion timing: it prints counts, and fails if the hot path allocates.
//!
//! - `hot path`: heap allocations per cache hit: a `GetToken` operation polled on the `App` under
//!   the clients' `Mutex` (the core's path), and `installation_token` through each client (the
//!   async one's future polled once with a no-op waker, so no runtime allocation is counted). The
//!   returned `Token` is one reference-counted handle: the target is 0 allocations per hit.
//! - `cold mint`: allocations per cold mint through each client against the fake registry, the
//!   whole process counted (the client, the core, and the registry answering on its own
//!   threads; the registry's share is the same from build to build, so a change in the
//!   figure is the SDK's).
//! - `memory`: heap bytes live per cached installation with 1, 1 000, 100 000 and 1 000 000
//!   installations cached (exact, from the allocator), and the resident set growth per entry.
//!
//! Run: `cargo bench -p icr-app-e2e --bench allocs`.

use std::alloc::System;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::sync::Mutex;
use std::task::{Context, Poll, Waker};
use std::time::SystemTime;

use icr_app_core::{
    AccessToken, App, AppKey, CacheConfig, GetToken, InstallationId, Operation, Step, Timestamp, Token, TokenScope,
};
use icr_app_testkit::{DEMO_PRIVATE_KEY_PEM, FakeRegistry};
use stats_alloc::{INSTRUMENTED_SYSTEM, Region, StatsAlloc};

#[global_allocator]
static GLOBAL: &StatsAlloc<System> = &INSTRUMENTED_SYSTEM;

const APP_ID: &str = "d23967cc-dd16-452b-8af4-869965745978";
const HITS: usize = 100_000;

fn rss() -> usize {
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1).and_then(|p| p.parse::<usize>().ok()))
        .map_or(0, |pages| pages * 4096)
}

fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// Allocations (and bytes) per call of `f`, over `HITS` calls after a warm-up call.
fn per_call(name: &str, mut f: impl FnMut()) -> f64 {
    f();
    let region = Region::new(GLOBAL);
    for _ in 0..HITS {
        f();
    }
    let s = region.change();
    let per = (s.allocations + s.reallocations) as f64 / HITS as f64;
    println!(
        "allocs/{name}: {per:.3} allocations and {:.1} bytes allocated per hit ({HITS} hits)",
        s.bytes_allocated as f64 / HITS as f64,
    );
    per
}

/// Polls a future once with a no-op waker; the cached path completes on the first poll.
fn poll_once<F: Future>(f: F) -> F::Output {
    let mut f = pin!(f);
    match f.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
        Poll::Ready(v) => v,
        Poll::Pending => panic!("a cache hit must complete on its first poll"),
    }
}

/// Drives a `GetToken` for `scope` to the end by hand, answering its sends with `answer`.
fn drive_get_token(
    app: &mut App,
    scope: &TokenScope,
    now: Timestamp,
    mut answer: impl FnMut(http::Request<Vec<u8>>) -> http::Response<Vec<u8>>,
) -> Token {
    let mut op = GetToken::new(scope.clone(), None);
    loop {
        match op.poll(app, now) {
            Step::Done(result) => return result.unwrap(),
            Step::Send { id, request } => {
                let response = answer(request);
                op.handle_response(app, id, response, now);
            }
            Step::Sleep { .. } | Step::Wait { .. } | Step::Store { .. } | Step::Sign { .. } => {
                panic!(
                    "one caller on a healthy registry, without a store, never waits (and an app with its key signs itself)"
                )
            }
        }
    }
}

/// A cache hit through the core's public path: a `GetToken` polled once on the `App`, under the
/// lock the clients keep it behind.
fn core_hit(app: &Mutex<App>, scope: &TokenScope) -> Token {
    match GetToken::new(scope.clone(), None).poll(&mut app.lock().unwrap(), now()) {
        Step::Done(Ok(token)) => token,
        other => panic!("a cache hit finishes on its first poll: {other:?}"),
    }
}

fn hot_path() {
    let r = FakeRegistry::start();
    r.register_app_with_private_key(APP_ID, DEMO_PRIVATE_KEY_PEM).unwrap();
    let id = InstallationId::new(r.add_installation(APP_ID, "Org", &[("organization_info", "VIEW")])).unwrap();
    let app = || {
        App::builder(APP_ID, AppKey::from_pem(DEMO_PRIVATE_KEY_PEM).unwrap())
            .base_url(r.base_url())
            .build()
            .unwrap()
    };

    // The core alone: its cache filled by one real mint, sent by hand.
    let scope = TokenScope::Installation(id.clone());
    let transport = icr_app_ureq::UreqTransport::new();
    let mut core = app();
    drive_get_token(&mut core, &scope, now(), |request| transport.send(request).unwrap());
    // A mint through the core alone (the request made, the registry's answer replayed with
    // its `Date` now, the token taken in and dropped again): what a cold mint allocates.
    let answer = {
        let mut op = GetToken::new(TokenScope::Installation(id.clone()), None);
        let mut fresh = app();
        let Step::Send { request, .. } = op.poll(&mut fresh, now()) else {
            panic!("a first mint starts with a send")
        };
        transport.send(request).unwrap()
    };
    let mut minting = app();
    let mints = 2_000;
    let mint = |app: &mut App| {
        let token = drive_get_token(app, &scope, now(), |request| {
            drop(request);
            let mut response = http::Response::new(answer.body().clone());
            *response.status_mut() = answer.status();
            *response.headers_mut() = answer.headers().clone();
            response
        });
        app.invalidate(&scope, token.secret().expose());
    };
    mint(&mut minting);
    let region = Region::new(GLOBAL);
    for _ in 0..mints {
        mint(&mut minting);
    }
    let s = region.change();
    println!(
        "allocs/a mint through the core (request built, answer replayed and taken in, token dropped): {:.1} allocations and {:.0} bytes allocated per mint ({mints} mints; the replayed answer's own copy included)",
        (s.allocations + s.reallocations) as f64 / f64::from(mints),
        s.bytes_allocated as f64 / f64::from(mints),
    );

    let core = Mutex::new(core);
    let a = per_call(
        "GetToken polled once on the App under a Mutex (the core's path)",
        || {
            black_box(core_hit(&core, &scope));
        },
    );

    let blocking = icr_app_ureq::Client::new(app());
    blocking.installation_token(&id).unwrap();
    let b = per_call("ureq Client::installation_token (cached)", || {
        black_box(blocking.installation_token(&id).unwrap());
    });

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(async { icr_app_reqwest::Client::new(app()).unwrap() });
    rt.block_on(client.installation_token(&id)).unwrap();
    let c = per_call("reqwest Client::installation_token (cached, polled once)", || {
        black_box(poll_once(client.installation_token(&id)).unwrap());
    });
    assert!(
        a == 0.0 && b == 0.0 && c == 0.0,
        "the cached path must not allocate beyond the returned handle"
    );
}

/// Allocations per cold mint through each client (each mint's token dropped again with
/// `invalidate`, so the next call mints; the JWT stays cached, as in a running app).
fn cold_mints() {
    let r = FakeRegistry::start();
    r.register_app_with_private_key(APP_ID, DEMO_PRIVATE_KEY_PEM).unwrap();
    let id = InstallationId::new(r.add_installation(APP_ID, "Org", &[("organization_info", "VIEW")])).unwrap();
    let scope = TokenScope::Installation(id.clone());
    let app = || {
        App::builder(APP_ID, AppKey::from_pem(DEMO_PRIVATE_KEY_PEM).unwrap())
            .base_url(r.base_url())
            .build()
            .unwrap()
    };
    let mints = 2_000;
    let count = |name: &str, mint: &mut dyn FnMut()| {
        // Warm: connections open, the JWT signed, every first-use allocation made.
        for _ in 0..100 {
            mint();
        }
        let region = Region::new(GLOBAL);
        for _ in 0..mints {
            mint();
        }
        let s = region.change();
        println!(
            "allocs/cold mint, {name}, whole process (client and fake registry): {:.1} allocations and {:.0} bytes allocated per mint ({mints} mints)",
            (s.allocations + s.reallocations) as f64 / f64::from(mints),
            s.bytes_allocated as f64 / f64::from(mints),
        );
    };
    let blocking = icr_app_ureq::Client::new(app());
    count("ureq client", &mut || {
        let token = blocking.installation_token(&id).unwrap();
        blocking.invalidate(&scope, &token);
    });
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let client = rt.block_on(async { icr_app_reqwest::Client::new(app()).unwrap() });
    count("reqwest client", &mut || {
        let token = rt.block_on(client.installation_token(&id)).unwrap();
        client.invalidate(&scope, &token);
    });
}

/// The registry's answer to a mint for installation `i`: a 2-hour token made at 1 700 000 000.
fn access_json(i: usize) -> serde_json::Value {
    serde_json::json!({
        "id": format!("{i:08x}-0000-4000-8000-000000000000"),
        "token": format!("crs_{i:048x}"),
        "createdAt": "2023-11-14T22:13:20Z",
        "updatedAt": "2023-11-14T22:13:20Z",
        "expiresAt": "2023-11-15T00:13:20Z",
        "isActive": true,
        "permissions": {"organization_info": "VIEW", "organization_inventory": "REQUEST"},
        "appId": APP_ID,
        "installationId": format!("{i:08x}-1111-4000-8000-000000000000"),
        "organizationId": format!("{i:08x}-2222-4000-8000-000000000000"),
    })
}

fn memory(sizes: &[usize]) {
    let now = Timestamp::from_unix_seconds(1_700_000_000);
    for &n in sizes {
        let mut app = App::builder(APP_ID, AppKey::from_pem(DEMO_PRIVATE_KEY_PEM).unwrap())
            .cache(CacheConfig {
                max_entries: usize::MAX,
                ..CacheConfig::default()
            })
            .build()
            .unwrap();
        // The JWT, signed once and cached, is not what is measured.
        app.jwt(now).unwrap();
        // The registry's answers are made first and not counted.
        let incoming: Vec<(TokenScope, Vec<u8>)> = (0..n)
            .map(|i| {
                let id = InstallationId::new(format!("{i:08x}-1111-4000-8000-000000000000")).unwrap();
                (
                    TokenScope::Installation(id),
                    serde_json::to_vec(&access_json(i)).unwrap(),
                )
            })
            .collect();
        // What a parsed token's strings and map take on the heap, whoever holds it (the probe's
        // own buffer, the tokens' inline parts, is taken off).
        let token_heap = {
            let bodies: Vec<Vec<u8>> = incoming.iter().take(1000).map(|(_, body)| body.clone()).collect();
            let region = Region::new(GLOBAL);
            let probe: Vec<(TokenScope, AccessToken)> = bodies
                .iter()
                .enumerate()
                .map(|(i, body)| {
                    let id = InstallationId::new(format!("{i:08x}-1111-4000-8000-000000000000")).unwrap();
                    (TokenScope::Installation(id), serde_json::from_slice(body).unwrap())
                })
                .collect();
            let s = region.change();
            let per = (s.bytes_allocated - s.bytes_deallocated) as f64 / probe.len() as f64;
            drop(probe);
            per - std::mem::size_of::<(TokenScope, AccessToken)>() as f64
        };
        let rss_before = rss();
        // Each token minted as a client would: a GetToken polled, its request answered with
        // the registry's body (the request, the body and the response are freed on the way).
        let region = Region::new(GLOBAL);
        for (scope, body) in &incoming {
            // Cloned here, so that the body made and freed in the region nets to nothing.
            let mut body = Some(body.clone());
            drive_get_token(&mut app, scope, now, |_| {
                http::Response::builder()
                    .status(200)
                    .body(body.take().unwrap())
                    .unwrap()
            });
        }
        let s = region.change();
        let cached = (s.bytes_allocated as i64 - s.bytes_deallocated as i64) as f64 / n as f64;
        let rss_growth = rss().saturating_sub(rss_before) as f64 / n as f64;
        drop(incoming);
        println!(
            "memory/{n}: {cached:.0} heap bytes per cached installation: {token_heap:.0} for the token's strings and \
             permissions, {:.0} for the cache (the Token handle with the token inline, key, index, recency); \
             resident growth {rss_growth:.0} bytes per entry",
            cached - token_heap
        );
        assert_eq!(app.cached_scopes(), n);
        black_box(&app);
    }
}

fn main() {
    hot_path();
    cold_mints();
    // `cargo test --benches` runs this as a test (debug build): the small sizes only.
    let quick = std::env::args().all(|a| a != "--bench");
    memory(if quick {
        &[1, 1_000]
    } else {
        &[1, 1_000, 100_000, 1_000_000]
    });
}
