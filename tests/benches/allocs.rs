//! Allocations and heap bytes, counted by a wrapping global allocator (`stats_alloc`). Not a
//! criterion timing: it prints counts, and fails if the hot path allocates.
//!
//! - `hot path`: heap allocations per cache hit, for `App::peek_token` behind a `ShardedLock` read
//!   (the core's path) and `installation_token` through each client (the future polled once
//!   with a no-op waker, so no runtime allocation is counted). The returned `Token` is one
//!   reference-counted handle: the target is 0 allocations per hit.
//! - `memory`: heap bytes live per cached installation with 1, 1 000, 100 000 and 1 000 000
//!   installations cached (exact, from the allocator), and the resident set growth per entry.
//!
//! Run: `cargo bench -p icr-app-e2e --bench allocs`.

use crossbeam_utils::sync::ShardedLock;
use std::alloc::System;
use std::future::Future;
use std::hint::black_box;
use std::pin::pin;
use std::task::{Context, Poll, Waker};
use std::time::SystemTime;

use icr_app_core::{AccessToken, App, AppKey, CacheConfig, InstallationId, Timestamp, Token, TokenScope};
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

/// Allocations (and bytes) per call of `f`, over `HITS` calls after two warm-up calls: the
/// first hit, from the cache's map, and the second in a row, which gives this thread its own
/// copy of the token handle (counted and printed separately: it is made once per thread and
/// token, not per hit).
fn per_call(name: &str, mut f: impl FnMut()) -> f64 {
    f();
    let copy = Region::new(GLOBAL);
    f();
    let copy = copy.change();
    let region = Region::new(GLOBAL);
    for _ in 0..HITS {
        f();
    }
    let s = region.change();
    let per = (s.allocations + s.reallocations) as f64 / HITS as f64;
    println!(
        "allocs/{name}: {per:.3} allocations and {:.1} bytes allocated per hit ({HITS} hits; \
         before them, once, this thread's copy of the handle: {} allocations, {} bytes)",
        s.bytes_allocated as f64 / HITS as f64,
        copy.allocations + copy.reallocations,
        copy.bytes_allocated
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

    let blocking = icr_app_ureq::Client::new(app());
    let token = blocking.installation_token(&id).unwrap();
    let core = ShardedLock::new(app());
    core.write()
        .unwrap()
        .cache_mut()
        .insert(TokenScope::Installation(id.clone()), token);
    let scope = TokenScope::Installation(id.clone());
    let a = per_call("App::peek_token under ShardedLock read", || {
        black_box(core.read().unwrap().peek_token(&scope, now(), None).unwrap());
    });
    // Two installations in turn: the thread never asks for the same one twice in a row, so it
    // never makes a copy, and every hit is a lookup in the map.
    let other = icr_app_ureq::Client::new(app());
    let second = InstallationId::new(r.add_installation(APP_ID, "Org 2", &[("organization_info", "VIEW")])).unwrap();
    let other_token = other.installation_token(&second).unwrap();
    core.write()
        .unwrap()
        .cache_mut()
        .insert(TokenScope::Installation(second.clone()), other_token);
    let scopes = [scope.clone(), TokenScope::Installation(second)];
    let mut turn = 0;
    let alternating = per_call(
        "App::peek_token under ShardedLock read, two installations in turn",
        || {
            turn ^= 1;
            black_box(core.read().unwrap().peek_token(&scopes[turn], now(), None).unwrap());
        },
    );
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
        a == 0.0 && alternating == 0.0 && b == 0.0 && c == 0.0,
        "the cached path must not allocate beyond the returned handle"
    );
}

fn access(i: usize) -> AccessToken {
    serde_json::from_value(serde_json::json!({
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
    }))
    .unwrap()
}

fn memory(sizes: &[usize]) {
    let now = Timestamp::from_unix_seconds(1_700_000_000);
    for &n in sizes {
        // The tokens as they arrive (parsed responses) are made first and not counted: the
        // question is what the cache adds to hold them.
        let mut app = App::builder(APP_ID, AppKey::from_pem(DEMO_PRIVATE_KEY_PEM).unwrap())
            .cache(CacheConfig {
                max_entries: usize::MAX,
                ..CacheConfig::default()
            })
            .build()
            .unwrap();
        let config = app.cache_mut().config().clone();
        let incoming: Vec<(TokenScope, AccessToken)> = (0..n)
            .map(|i| {
                let id = InstallationId::new(format!("{i:08x}-1111-4000-8000-000000000000")).unwrap();
                (TokenScope::Installation(id), access(i))
            })
            .collect();
        let live_tokens = {
            let region = Region::new(GLOBAL);
            let probe: Vec<(TokenScope, AccessToken)> = (0..n.min(1000))
                .map(|i| {
                    let id = InstallationId::new(format!("{i:08x}-1111-4000-8000-000000000000")).unwrap();
                    (TokenScope::Installation(id), access(i))
                })
                .collect();
            let s = region.change();
            let per = (s.bytes_allocated - s.bytes_deallocated) as f64 / probe.len() as f64;
            drop(probe);
            per
        };
        let rss_before = rss();
        let region = Region::new(GLOBAL);
        for (scope, access) in incoming {
            app.cache_mut().insert(scope, Token::new(access, now, 0, &config));
        }
        let s = region.change();
        let cache_bytes = (s.bytes_allocated as i64 - s.bytes_deallocated as i64) as f64 / n as f64;
        let rss_growth = rss().saturating_sub(rss_before) as f64 / n as f64;
        println!(
            "memory/{n}: {cache_bytes:.0} heap bytes per entry added by the cache (index, recency, Token handle), \
             on top of {live_tokens:.0} bytes for the parsed token and its key; resident growth {rss_growth:.0} bytes per entry"
        );
        black_box(&app);
    }
}

fn main() {
    hot_path();
    // `cargo test --benches` runs this as a test (debug build): the small sizes only.
    let quick = std::env::args().all(|a| a != "--bench");
    memory(if quick {
        &[1, 1_000]
    } else {
        &[1, 1_000, 100_000, 1_000_000]
    });
}
