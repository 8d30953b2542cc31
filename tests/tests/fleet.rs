//! A fleet of processes sharing tokens through one real `redis-server` (issue 14): every
//! participant is a process of its own talking over loopback — the fake registry
//! (`fleet-registry`), the workers (`fleet-worker`: a blocking client built with
//! `Client::builder(app).store(RedisStore::connect(url)?)`), the `icr-app` CLI — and Redis is
//! testkit's `RedisServer`, which the tests kill and restart.
//!
//! - 4 processes × 16 threads × 50 installations: exactly 50 mints, the same token everywhere.
//! - The lease holder killed with SIGKILL mid-mint: the next process takes the lease once it
//!   lapses and mints, without waiting for the dead one's mint.
//! - Redis killed while workers ask for tokens: no error, no expired token; restarted: shared
//!   again (new installations are minted once for the fleet).
//! - Two apps and two registries on one Redis keep apart; a value copied to another entry's
//!   name (another installation, app or registry) is refused and a token minted instead.
//! - 20 `icr-app token --redis` processes for 5 installations: 5 mints.
//! - Organizations (issue 22): three processes asking by organization at once look each one up
//!   once between them; a process started later finds each organization's installation (and
//!   its token) in Redis and neither looks up nor mints.
//!
//! These found that a process must read the entry again once it holds the lease (57 to 59
//! mints for 50 before it did); `core/tests/shared_store.rs` simulates that window.
//!
//! No test asserts a speed: every wait is for a condition, with a generous deadline; the figures
//! are in BENCHMARKS.md (`fleet-bench`, `benches/shared_store.rs`).

#[allow(dead_code)]
#[path = "../src/bin/fleet_support/mod.rs"]
mod fleet_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use fleet_support::{AppInfo, DEADLINE, Registry, Worker, WorkerConfig};
use icr_app_testkit::RedisServer;

const APP_A: &str = "d23967cc-dd16-452b-8af4-869965745978";
const APP_B: &str = "5b0f7c1e-2a44-4c1d-9a0e-7d3f1c2b9e61";

fn registry_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_fleet-registry"))
}

fn worker_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_fleet-worker"))
}

fn worker(
    name: &str,
    registry: &Registry,
    app: &AppInfo,
    redis: &RedisServer,
    threads: usize,
    flags: &[&str],
) -> Worker {
    // A generous store timeout: these tests check the protocol, and on a loaded two-core
    // machine a Redis call can take longer than the 300 ms default, which sends a process to
    // mint alone (as it should) and adds mints. A killed Redis refuses connections at once.
    let mut flags: Vec<String> = flags.iter().map(|f| (*f).to_owned()).collect();
    flags.extend(["--store-timeout-ms".to_owned(), "5000".to_owned()]);
    let config = WorkerConfig {
        redis: Some(redis.url()),
        threads,
        flags,
    };
    Worker::start(worker_bin(), name, &registry.base_url, app, &config)
}

/// Raw commands on the test's Redis (the redis crate, not the SDK).
fn redis_connection(redis: &RedisServer) -> redis::Connection {
    redis::Client::open(redis.url())
        .and_then(|c| c.get_connection_with_timeout(Duration::from_secs(5)))
        .expect("connect to the test's redis-server")
}

fn keys(connection: &mut redis::Connection, pattern: &str) -> BTreeSet<String> {
    redis::cmd("KEYS").arg(pattern).query(connection).unwrap()
}

/// The name of the only entry (not a lease) for `installation`.
fn entry_of(connection: &mut redis::Connection, installation: &str) -> String {
    let found = keys(connection, &format!("icr-app:*:{{installation:{installation}}}"));
    assert_eq!(found.len(), 1, "entries for {installation}: {found:?}");
    found.into_iter().next().unwrap()
}

/// Waits until `ready()` holds, polling; panics after [`DEADLINE`] with `what`.
fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !ready() {
        assert!(Instant::now() < deadline, "gave up waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn four_processes_of_sixteen_threads_mint_once_per_installation() {
    let redis = RedisServer::start();
    let mut registry = Registry::start(registry_bin(), &[(APP_A, "demo", 50)]);
    let app = registry.apps[0].clone();
    let mut workers: Vec<Worker> = (0..4)
        .map(|n| worker(&format!("worker {n}"), &registry, &app, &redis, 16, &[]))
        .collect();

    // Every client is built before any asks, so the four start their rounds together.
    for w in &mut workers {
        w.send_get(&[]);
    }
    let mut held: Vec<BTreeMap<String, String>> = Vec::new();
    for w in &mut workers {
        let round = w.round();
        round.assert_clean(w.name());
        assert_eq!(round.gets, 16 * 50, "{}", w.name());
        let tokens = round.one_token_each(w.name());
        assert_eq!(
            tokens.keys().collect::<BTreeSet<_>>(),
            app.installations.iter().collect::<BTreeSet<_>>()
        );
        held.push(tokens);
    }
    let stats: Vec<_> = workers.iter_mut().map(Worker::stats).collect();
    for (n, tokens) in held.iter().enumerate().skip(1) {
        let differ = tokens.iter().filter(|(id, sha)| held[0][*id] != **sha).count();
        assert_eq!(
            differ, 0,
            "worker {n} holds other tokens than worker 0; stats {stats:?}"
        );
    }
    let distinct: BTreeSet<&String> = held[0].values().collect();
    assert_eq!(distinct.len(), 50, "one token per installation");

    let (total, per) = registry.mints();
    assert_eq!(total, 50, "mints per installation: {per:?}");
    assert!(per.values().all(|n| *n == 1), "{per:?}");
    // Each process got each installation's token once: by minting it or from the store.
    let minted: u64 = stats.iter().map(|s| s["mints"]).sum();
    let shared: u64 = stats.iter().map(|s| s["shared_hits"]).sum();
    assert_eq!((minted, shared), (50, 150), "{stats:?}");
    assert!(stats.iter().all(|s| s["shared_fallbacks"] == 0), "{stats:?}");
}

#[test]
fn a_lease_holder_killed_mid_mint_is_replaced_once_its_lease_lapses() {
    let redis = RedisServer::start();
    let mut db = redis_connection(&redis);
    let mut registry = Registry::start(registry_bin(), &[(APP_A, "demo", 1)]);
    let app = registry.apps[0].clone();
    let installation = app.installations[0].clone();
    // The first mint hangs far longer than the test lasts.
    registry.command("delay-mints 30000 1");

    let lease = ["--lease-ttl-ms", "2000"];
    let mut holder = worker("lease holder", &registry, &app, &redis, 1, &lease);
    holder.send_get(&[]);
    wait_for("the registry to receive the holder's mint", || {
        registry.mint_requests() == 1
    });
    let leases = keys(&mut db, "icr-app:*:lease");
    assert_eq!(leases.len(), 1, "the holder took the lease before minting: {leases:?}");
    let lease_key = leases.into_iter().next().unwrap();
    let holder_owner: Vec<u8> = redis::cmd("GET").arg(&lease_key).query(&mut db).unwrap();
    holder.kill();

    // The successor's mint is slowed too, so that its lease can be seen while it mints.
    registry.command("delay-mints 1000 1");
    let mut successor = worker("successor", &registry, &app, &redis, 1, &lease);
    let asked = Instant::now();
    successor.send_get(&[]);
    wait_for("the successor to take the lapsed lease", || {
        let owner: Option<Vec<u8>> = redis::cmd("GET").arg(&lease_key).query(&mut db).unwrap();
        owner.is_some_and(|owner| owner != holder_owner)
    });
    let round = successor.round();
    let waited = asked.elapsed();
    round.assert_clean("successor");
    let token = round.one_token_each("successor")[&installation].clone();
    // It did not wait for the dead holder's mint (answered 30 s after it was sent).
    assert!(waited < Duration::from_secs(25), "the successor waited {waited:?}");
    let (total, _) = registry.mints();
    assert_eq!(total, 1, "the successor's mint only (the holder's is still delayed)");
    let stats = successor.stats();
    assert_eq!((stats["mints"], stats["shared_hits"]), (1, 0), "{stats:?}");
    eprintln!("successor: token after {waited:?} (lease 2 s, its mint delayed 1 s)");

    // What it stored serves the next process.
    let mut next = worker("next", &registry, &app, &redis, 4, &lease);
    let round = next.get(&[]);
    round.assert_clean("next");
    assert_eq!(round.one_token_each("next")[&installation], token);
    assert_eq!(registry.mints().0, 1);
}

#[test]
fn redis_killed_mid_run_costs_no_error_and_sharing_resumes_after_restart() {
    const LIFETIME_MS: u64 = 6000;
    let mut redis = RedisServer::start();
    let mut registry = Registry::start(registry_bin(), &[(APP_A, "demo", 6)]);
    registry.command(&format!("token-lifetime {LIFETIME_MS}"));
    let app = registry.apps[0].clone();
    // Tokens live 6 s: handed out with at least 1 s left, refreshed 2 s before they expire.
    let flags = [
        "--min-remaining-ms",
        "1000",
        "--refresh-margin-ms",
        "2000",
        "--retry-after-failure-ms",
        "500",
        "--lease-ttl-ms",
        "2000",
    ];
    let mut workers: Vec<Worker> = (0..3)
        .map(|n| worker(&format!("worker {n}"), &registry, &app, &redis, 4, &flags))
        .collect();

    // Shared: one mint per installation.
    for w in &mut workers {
        w.send_get(&[]);
    }
    let first: Vec<BTreeMap<String, String>> = workers
        .iter_mut()
        .map(|w| {
            let round = w.round();
            round.assert_clean(w.name());
            round.one_token_each(w.name())
        })
        .collect();
    assert!(first.iter().all(|t| *t == first[0]));
    assert_eq!(registry.mints().0, 6);

    // Redis dies while every worker asks, for longer than a token lives: each token is refreshed
    // with Redis gone, so each process mints on its own, and nobody sees an error.
    for w in &mut workers {
        w.start_loop(LIFETIME_MS + 1500, &[]);
    }
    redis.stop();
    let mut shared_before = 0;
    for (n, w) in workers.iter_mut().enumerate() {
        let round = w.round();
        round.assert_clean(w.name());
        for id in &app.installations {
            let tokens = &round.tokens[id];
            assert!(
                tokens.len() >= 2,
                "{}: {id} was not refreshed during the outage",
                w.name()
            );
            assert!(tokens.contains(&first[n][id]));
        }
        let stats = w.stats();
        assert!(stats["shared_fallbacks"] >= 1, "{}: {stats:?}", w.name());
        assert_eq!(stats["failures"], 0, "{}: {stats:?}", w.name());
        shared_before += stats["shared_hits"];
    }
    let (during_outage, _) = registry.mints();
    assert!(during_outage > 6, "the processes minted on their own: {during_outage}");

    // Redis is back (empty). Past the pause after a failure, the fleet shares again: new
    // installations asked for by every process at once are minted once each.
    redis.restart();
    std::thread::sleep(Duration::from_millis(1000));
    let fresh = registry.add(&app.id, 6);
    for w in &mut workers {
        w.send_get(&fresh);
    }
    let rounds: Vec<BTreeMap<String, String>> = workers
        .iter_mut()
        .map(|w| {
            let round = w.round();
            round.assert_clean(w.name());
            round.one_token_each(w.name())
        })
        .collect();
    let (total, per) = registry.mints();
    let stats: Vec<_> = workers.iter_mut().map(Worker::stats).collect();
    assert!(
        rounds.iter().all(|t| *t == rounds[0]),
        "every process holds the same new tokens; mints {per:?}, stats {stats:?}"
    );
    for id in &fresh {
        assert_eq!(per[id], 1, "{id} minted once for the fleet after the restart: {per:?}");
    }
    assert_eq!(total, during_outage + 6);
    // Each process got each new installation once: one minted it, the two others read it.
    let shared_after: u64 = stats.iter().map(|s| s["shared_hits"]).sum();
    assert_eq!(shared_after - shared_before, 2 * 6);
    eprintln!(
        "outage: {} mints while Redis was down, then 1 per new installation",
        during_outage - 6
    );
}

#[test]
fn apps_and_registries_keep_apart_and_a_moved_value_is_refused() {
    let redis = RedisServer::start();
    let mut db = redis_connection(&redis);
    // Registry one: app A (demo key) and app B (another key); registry two: app A again, same
    // id and key (a staging registry, say).
    let mut one = Registry::start(registry_bin(), &[(APP_A, "demo", 2), (APP_B, "other", 2)]);
    let mut two = Registry::start(registry_bin(), &[(APP_A, "demo", 2)]);
    let (a1, b1, a2) = (one.apps[0].clone(), one.apps[1].clone(), two.apps[0].clone());
    let mut wa1 = worker("app A on registry one", &one, &a1, &redis, 4, &[]);
    let mut wb1 = worker("app B on registry one", &one, &b1, &redis, 4, &[]);
    let mut wa2 = worker("app A on registry two", &two, &a2, &redis, 4, &[]);

    let mut all = BTreeSet::new();
    for w in [&mut wa1, &mut wb1, &mut wa2] {
        let round = w.get(&[]);
        round.assert_clean(w.name());
        all.extend(round.one_token_each(w.name()).into_values());
    }
    assert_eq!(all.len(), 6, "each app and registry got its own tokens");
    let (mints_one, per_one) = one.mints();
    let (mints_two, per_two) = two.mints();
    assert_eq!((mints_one, mints_two), (4, 2), "{per_one:?} {per_two:?}");
    // Three namespaces (registry, app) of two entries each.
    let entries = keys(&mut db, "icr-app:*:{installation:*}");
    let spaces: BTreeSet<String> = entries
        .iter()
        .map(|k| k.split(":{installation:").next().unwrap().to_owned())
        .collect();
    assert_eq!((entries.len(), spaces.len()), (6, 3), "{entries:?}");

    // Asking for another app's or registry's installation reads nothing of theirs: the
    // registry is asked, and refuses.
    let foreign = wb1.get(&[a1.installations[0].clone()]);
    assert!(foreign.tokens.is_empty() && foreign.errors.len() == 4, "{foreign:?}");
    let foreign = wa2.get(&[a1.installations[0].clone()]);
    assert!(foreign.tokens.is_empty() && foreign.errors.len() == 4, "{foreign:?}");
    for w in [&mut wa1, &mut wb1, &mut wa2] {
        assert_eq!(w.stats()["shared_hits"], 0, "{}", w.name());
    }

    // A value copied to another entry's name: another installation of the same app, another
    // app's installation, the same app's installation on the other registry. Each is refused
    // (sealed for its own name) and a token is minted instead.
    let source = entry_of(&mut db, &a1.installations[0]);
    let value: Vec<u8> = redis::cmd("GET").arg(&source).query(&mut db).unwrap();
    let source_sha = sha_of_entry_token(&mut wa1, &a1.installations[0]);
    let targets = [
        (0, a1.id.clone(), entry_of(&mut db, &a1.installations[1])),
        (1, b1.id.clone(), entry_of(&mut db, &b1.installations[0])),
        (2, a2.id.clone(), entry_of(&mut db, &a2.installations[0])),
    ];
    for (n, app_id, sibling) in targets {
        let (registry, w) = match n {
            0 => (&mut one, &mut wa1),
            1 => (&mut one, &mut wb1),
            _ => (&mut two, &mut wa2),
        };
        let fresh = registry.add(&app_id, 1).remove(0);
        // The name the fresh installation's entry has: its sibling's, with its id.
        let name = format!(
            "{}:{{installation:{fresh}}}",
            sibling.split(":{installation:").next().unwrap()
        );
        let _: () = redis::cmd("SET")
            .arg(&name)
            .arg(&value)
            .arg("PX")
            .arg(60_000)
            .query(&mut db)
            .unwrap();
        let round = w.get(std::slice::from_ref(&fresh));
        round.assert_clean(w.name());
        let got = &round.one_token_each(w.name())[&fresh];
        assert_ne!(got, &source_sha, "{} used a value copied from another entry", w.name());
        assert_eq!(registry.mints().1[&fresh], 1, "{} minted instead", w.name());
        let now: Vec<u8> = redis::cmd("GET").arg(&name).query(&mut db).unwrap();
        assert_ne!(now, value, "the copied value was replaced by the minted token");
        assert_eq!(w.stats()["shared_hits"], 0, "{}", w.name());
    }
}

/// The SHA-256 of the token `w` holds for `installation` (from its cache).
fn sha_of_entry_token(w: &mut Worker, installation: &str) -> String {
    let round = w.get(&[installation.to_owned()]);
    round.assert_clean(w.name());
    round.one_token_each(w.name())[installation].clone()
}

#[test]
fn processes_asking_by_organization_look_each_up_once_and_a_later_one_not_at_all() {
    let redis = RedisServer::start();
    let mut registry = Registry::start(registry_bin(), &[(APP_A, "demo", 3)]);
    let app = registry.apps[0].clone();
    let orgs = registry.organizations();
    assert_eq!(orgs.len(), 3);
    let by_org = ["--organizations"];
    let mut workers: Vec<Worker> = (0..3)
        .map(|n| worker(&format!("worker {n}"), &registry, &app, &redis, 8, &by_org))
        .collect();
    for w in &mut workers {
        w.send_get(&orgs);
    }
    let held: Vec<BTreeMap<String, String>> = workers
        .iter_mut()
        .map(|w| {
            let round = w.round();
            round.assert_clean(w.name());
            round.one_token_each(w.name())
        })
        .collect();
    assert!(
        held.iter().all(|tokens| *tokens == held[0]),
        "one token per organization"
    );
    let (lookups, per) = registry.lookups();
    let stats: Vec<_> = workers.iter_mut().map(Worker::stats).collect();
    assert_eq!(lookups, 3, "one lookup per organization: {per:?}, stats {stats:?}");
    assert_eq!(registry.mints().0, 3);
    assert_eq!(stats.iter().map(|s| s["shared_lookups"]).sum::<u64>(), 6, "{stats:?}");

    // A process started later reads every organization's installation, and its token, from
    // Redis: no lookup, no mint.
    let mut later = worker("later", &registry, &app, &redis, 4, &by_org);
    let round = later.get(&orgs);
    round.assert_clean("later");
    assert_eq!(round.one_token_each("later"), held[0]);
    let stats = later.stats();
    assert_eq!(
        (
            stats["lookups"],
            stats["shared_lookups"],
            stats["mints"],
            stats["shared_hits"]
        ),
        (0, 3, 0, 3),
        "{stats:?}"
    );
    assert_eq!(registry.lookups().0, 3);
    assert_eq!(registry.mints().0, 3);
    // What it found is the installation of each organization.
    let entries = keys(&mut redis_connection(&redis), "icr-app:*:{organization:*}");
    assert_eq!(entries.len(), 3, "{entries:?}");
    assert!(
        orgs.iter()
            .all(|org| entries.iter().any(|e| e.ends_with(&format!(":{{organization:{org}}}"))))
    );
}

/// Builds the CLI once (a no-op when it is up to date) in this test's profile.
fn cli() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let profile_dir = fleet_support::profile_dir();
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let mut build = Command::new(cargo);
        build.args(["build", "-q", "-p", "icr-app-cli", "--bin", "icr-app"]);
        if profile_dir.ends_with("release") {
            build.arg("--release");
        }
        assert!(build.status().unwrap().success(), "cargo build -p icr-app-cli");
        profile_dir.join(format!("icr-app{}", std::env::consts::EXE_SUFFIX))
    })
}

#[test]
fn twenty_cli_processes_for_five_installations_mint_five_tokens() {
    let cli = cli();
    let redis = RedisServer::start();
    let mut registry = Registry::start(registry_bin(), &[(APP_A, "demo", 5)]);
    let app = registry.apps[0].clone();
    let children: Vec<(String, std::process::Child)> = (0..20)
        .map(|n| {
            let installation = app.installations[n % 5].clone();
            let mut command = Command::new(cli);
            for (name, _) in std::env::vars() {
                if name.starts_with("ICR_") {
                    command.env_remove(name);
                }
            }
            command
                .args([
                    "token",
                    "--json",
                    "--installation",
                    &installation,
                    "--redis",
                    &redis.url(),
                ])
                .env("ICR_BASE_URL", &registry.base_url)
                .env("ICR_APP_ID", &app.id)
                .env("ICR_PRIVATE_KEY", &app.key_path)
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped());
            (installation, command.spawn().expect("run icr-app"))
        })
        .collect();
    let mut tokens: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stderr = String::new();
    for (installation, child) in children {
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "icr-app token: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let token = printed["token"].as_str().expect("a token").to_owned();
        tokens.entry(installation).or_default().insert(token);
        stderr.push_str(&String::from_utf8_lossy(&out.stderr));
    }
    assert_eq!(tokens.len(), 5);
    assert!(
        tokens.values().all(|t| t.len() == 1),
        "four processes per installation, one token each; mints {:?}; stderr: {stderr}",
        registry.mints()
    );
    let (total, per) = registry.mints();
    assert_eq!(total, 5, "{per:?}");
}
