//! What the shared token store (issue 14, `icr-app-redis`) costs the blocking client, against
//! the fake registry on loopback (in-process) and a real `redis-server` (testkit's
//! `RedisServer`, loopback):
//!
//! - `store/local hit`: a cached token, through a client without a store and through one with
//!   the Redis store attached (a hit never touches Redis); `store/hit share` measures the two
//!   interleaved (robust to background load) and prints the median ratio.
//! - `store/shared hit`: a local miss served from Redis (`GET`, open the sealed value, adopt
//!   it), by a client whose cache is empty (a new client per iteration, built outside the
//!   timing, sharing one warm connection pool); `store/redis GET` is the bare round trip the
//!   store makes for it.
//! - `store/cold mint`: a mint through a client without a store, and with one (`GET`, lease,
//!   mint, put and release), each iteration dropping the token first
//!   ([`invalidate`](icr_app_ureq::Client::invalidate), which the store honours by minting).

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use icr_app_core::{App, AppKey, Error, InstallationId, StoreCommand, StoreReply, StoreSettings, TokenScope};
use icr_app_redis::RedisStore;
use icr_app_testkit::{DEMO_PRIVATE_KEY_PEM, FakeRegistry, RedisServer};
use icr_app_ureq::{Client, SharedStore};

const APP_ID: &str = "d23967cc-dd16-452b-8af4-869965745978";

/// One `RedisStore` (one pool of connections) behind many clients, so that a new client does
/// not pay a new connection; it also adds up the time each kind of command takes.
#[derive(Debug, Clone)]
struct Pooled(Arc<RedisStore>, Arc<Timings>);

/// Per command kind (`Get`, `Lease`, `Put`, `Delete`): calls and total nanoseconds.
#[derive(Debug, Default)]
struct Timings([(AtomicU64, AtomicU64); 4]);

impl Timings {
    fn kind(command: &StoreCommand) -> usize {
        match command {
            StoreCommand::Get { .. } => 0,
            StoreCommand::Lease { .. } => 1,
            StoreCommand::Put { .. } => 2,
            StoreCommand::Delete { .. } => 3,
        }
    }

    fn reset(&self) {
        for (calls, nanos) in &self.0 {
            calls.store(0, Ordering::Relaxed);
            nanos.store(0, Ordering::Relaxed);
        }
    }

    fn report(&self, what: &str) {
        let parts: Vec<String> = [
            "GET (GETRANGE)",
            "lease (script: SET NX PX)",
            "put (script)",
            "delete (script)",
        ]
        .iter()
        .zip(&self.0)
        .filter(|(_, (calls, _))| calls.load(Ordering::Relaxed) > 0)
        .map(|(name, (calls, nanos))| {
            let calls = calls.load(Ordering::Relaxed);
            let mean = nanos.load(Ordering::Relaxed) as f64 / calls as f64 / 1e3;
            format!("{name} {mean:.1} µs x {calls}")
        })
        .collect();
        println!("store/{what}: Redis calls, mean time each: {}", parts.join("; "));
    }
}

impl SharedStore for Pooled {
    fn run(&self, command: &StoreCommand) -> Result<StoreReply, Error> {
        let started = Instant::now();
        let reply = self.0.run_blocking(command);
        let (calls, nanos) = &self.1.0[Timings::kind(command)];
        calls.fetch_add(1, Ordering::Relaxed);
        nanos.fetch_add(started.elapsed().as_nanos() as u64, Ordering::Relaxed);
        reply
    }

    fn settings(&self) -> StoreSettings {
        self.0.settings()
    }
}

struct Bed {
    registry: FakeRegistry,
    redis: RedisServer,
    store: Pooled,
    key: AppKey,
}

impl Bed {
    fn new() -> Self {
        let registry = FakeRegistry::start();
        registry
            .register_app_with_private_key(APP_ID, DEMO_PRIVATE_KEY_PEM)
            .unwrap();
        let redis = RedisServer::start();
        let store = Pooled(Arc::new(RedisStore::connect(&redis.url()).unwrap()), Arc::default());
        Self {
            registry,
            redis,
            store,
            key: AppKey::from_pem(DEMO_PRIVATE_KEY_PEM).unwrap(),
        }
    }

    fn app(&self) -> App {
        App::builder(APP_ID, self.key.clone())
            .base_url(self.registry.base_url())
            .build()
            .unwrap()
    }

    fn plain(&self) -> Client {
        Client::new(self.app())
    }

    fn shared(&self) -> Client {
        Client::builder(self.app()).store(self.store.clone()).build().unwrap()
    }

    fn install(&self) -> InstallationId {
        InstallationId::new(
            self.registry
                .add_installation(APP_ID, "Org", &[("organization_info", "VIEW")]),
        )
        .unwrap()
    }
}

fn store(c: &mut Criterion) {
    let bed = Bed::new();
    let id = bed.install();
    let plain = bed.plain();
    let shared = bed.shared();
    // The store's entry for `id`, and both caches warm (the plain client mints its own).
    shared.installation_token(&id).unwrap();
    plain.installation_token(&id).unwrap();
    assert_eq!(shared.stats().mints, 1);

    let mut g = c.benchmark_group("store");
    g.bench_function("local hit, no store", |b| {
        b.iter(|| black_box(plain.installation_token(black_box(&id)).unwrap()))
    });
    g.bench_function("local hit, Redis store attached", |b| {
        b.iter(|| black_box(shared.installation_token(black_box(&id)).unwrap()))
    });

    // A new client (empty cache) per iteration, built and warmed outside the timing: its JWT
    // is never needed, its store's pool is shared and already connected.
    bed.store.1.reset();
    g.bench_function("shared hit (local miss, Redis GET, open, adopt)", |b| {
        b.iter_batched_ref(
            || bed.shared(),
            |client| {
                let token = client.installation_token(&id).unwrap();
                debug_assert_eq!(client.stats().shared_hits, 1);
                token
            },
            BatchSize::SmallInput,
        )
    });
    bed.store.1.report("shared hit");
    let key = {
        // The entry's name, as the store's keys show it (the core names it).
        let mut connection = redis::Client::open(bed.redis.url()).unwrap().get_connection().unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("icr-app:*:{{installation:{id}}}"))
            .query(&mut connection)
            .unwrap();
        keys.into_iter().next().expect("the entry")
    };
    let get = StoreCommand::Get { key };
    g.bench_function("redis GET of the entry (RedisStore::run_blocking)", |b| {
        b.iter(|| black_box(bed.store.0.run_blocking(&get).unwrap()))
    });

    let cold = bed.install();
    let scope = TokenScope::Installation(cold.clone());
    let plain_minter = bed.plain();
    plain_minter.jwt().unwrap();
    g.bench_function("cold mint, no store", |b| {
        b.iter(|| {
            let token = plain_minter.installation_token(&cold).unwrap();
            plain_minter.invalidate(&scope, &token);
        })
    });
    let shared_minter = bed.shared();
    shared_minter.jwt().unwrap();
    bed.store.1.reset();
    g.bench_function("cold mint, Redis store (GET, lease, mint, put)", |b| {
        b.iter(|| {
            let token = shared_minter.installation_token(&cold).unwrap();
            shared_minter.invalidate(&scope, &token);
        })
    });
    g.finish();
    bed.store.1.report("cold mint, Redis store");
    let stats = shared_minter.stats();
    assert_eq!(stats.shared_hits, 0, "every iteration minted: {stats:?}");
    assert_eq!(stats.shared_fallbacks, 0, "{stats:?}");

    hit_share(&plain, &shared, &id);
    shared_hit_share(&bed, &id, &get);
}

/// A shared hit against the bare `GET` it makes, measured interleaved: per round, a batch of
/// new clients (built before the timing) each getting the token once, and as many bare `GET`s
/// of the entry through the same store; the medians per call.
fn shared_hit_share(bed: &Bed, id: &InstallationId, get: &StoreCommand) {
    let full = std::env::args().any(|a| a == "--bench");
    let rounds: usize = if full { 40 } else { 2 };
    const BATCH: u32 = 200;
    let mut per_round: Vec<[f64; 3]> = Vec::new();
    for round in 0..rounds {
        let clients: Vec<Client> = (0..BATCH).map(|_| bed.shared()).collect();
        let hits = || {
            let started = Instant::now();
            for client in &clients {
                black_box(client.installation_token(id).unwrap());
            }
            started.elapsed().as_secs_f64() * 1e6 / f64::from(BATCH)
        };
        let gets = || {
            let started = Instant::now();
            for _ in 0..BATCH {
                black_box(bed.store.0.run_blocking(get).unwrap());
            }
            started.elapsed().as_secs_f64() * 1e6 / f64::from(BATCH)
        };
        let (hit, get) = if round % 2 == 0 {
            let hit = hits();
            (hit, gets())
        } else {
            let get = gets();
            (hits(), get)
        };
        assert!(clients.iter().all(|c| c.stats().shared_hits == 1));
        per_round.push([hit, get, hit - get]);
    }
    let median = |k: usize, rounds: &mut Vec<[f64; 3]>| {
        rounds.sort_by(|x, y| x[k].total_cmp(&y[k]));
        rounds[rounds.len() / 2][k]
    };
    let (hit, get, extra) = (
        median(0, &mut per_round),
        median(1, &mut per_round),
        median(2, &mut per_round),
    );
    println!(
        "store/shared hit share: shared hit {hit:.1} µs, bare GET of the entry {get:.1} µs (medians of {} rounds \
         of {BATCH}); the SDK's part {extra:+.1} µs (median of the per-round differences)",
        per_round.len()
    );
}

/// The store's cost on a local hit, measured interleaved: rounds of a batch of hits through
/// each client in turn; the median of the per-round ratios.
fn hit_share(plain: &Client, shared: &Client, id: &InstallationId) {
    // `cargo test --benches` runs this once, unoptimised, without `--bench`: two rounds then.
    let full = std::env::args().any(|a| a == "--bench");
    let rounds: usize = if full { 60 } else { 2 };
    const BATCH: u32 = 20_000;
    let mut per_round: Vec<[f64; 3]> = Vec::new();
    let batch = |client: &Client| {
        let started = Instant::now();
        for _ in 0..BATCH {
            black_box(client.installation_token(black_box(id)).unwrap());
        }
        started.elapsed().as_secs_f64() * 1e9 / f64::from(BATCH)
    };
    batch(plain);
    batch(shared);
    for round in 0..rounds {
        let (a, b) = if round % 2 == 0 {
            let a = batch(plain);
            (a, batch(shared))
        } else {
            let b = batch(shared);
            (batch(plain), b)
        };
        per_round.push([a, b, b / a]);
    }
    let median = |k: usize, rounds: &mut Vec<[f64; 3]>| {
        rounds.sort_by(|x, y| x[k].total_cmp(&y[k]));
        rounds[rounds.len() / 2][k]
    };
    let (a, b, ratio) = (
        median(0, &mut per_round),
        median(1, &mut per_round),
        median(2, &mut per_round),
    );
    let (lowest, highest) = (per_round[0][2], per_round[per_round.len() - 1][2]);
    println!(
        "store/hit share: local hit without store {a:.1} ns, with the Redis store {b:.1} ns (medians of {} rounds \
         of {BATCH}); difference {:+.1} ns, ratio {ratio:.3} (median; lowest {lowest:.3}, highest {highest:.3})",
        per_round.len(),
        b - a
    );
    assert_eq!(shared.stats().shared_fallbacks, 0);
}

fn config() -> Criterion {
    Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
}

criterion_group! {
    name = benches;
    config = config();
    targets = store
}
criterion_main!(benches);
