//! The fleet on a Redis Cluster and on a Sentinel-watched primary (issue 26), every participant
//! a process of its own over loopback: the fake registry (`fleet-registry`), `icr-app token
//! --redis URL` processes, and real `redis-server`s (testkit's `RedisCluster`: three primaries,
//! with a replica each where failover is tested; `RedisSentinel`: a primary, its replica and a
//! sentinel).
//!
//! - 20 `icr-app token --redis redis+cluster://…` processes for 5 installations: 5 mints; the
//!   same with `redis+sentinel://…`.
//! - A primary killed mid-run (cluster and sentinel): every process still prints a token that
//!   has not expired, and none fails; after the failover the processes share again.
//! - `handle_event` with an `uninstalled` delivery drops the installation's shared entry: a
//!   new process then mints a new token.
//!
//! No timed assertion: every wait is for a condition, with a generous deadline.

#[allow(dead_code)]
#[path = "../src/bin/fleet_support/mod.rs"]
mod fleet_support;

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

use fleet_support::{AppInfo, Registry};
use icr_app_core::{App, AppKey, InstallationId, Timestamp, TokenScope};
use icr_app_redis::RedisStore;
use icr_app_testkit::{RedisCluster, RedisSentinel};

const APP: &str = "d23967cc-dd16-452b-8af4-869965745978";

fn registry_bin() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_fleet-registry"))
}

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

/// `icr-app token --json --installation ID --redis URL`, started. A generous Redis timeout: on
/// a loaded two-core machine a call can take longer than the 300 ms default, which would send a
/// process to mint alone (as it should) and add mints.
fn token_process(registry: &Registry, app: &AppInfo, installation: &str, url: &str) -> Child {
    let mut command = Command::new(cli());
    for (name, _) in std::env::vars() {
        if name.starts_with("ICR_") {
            command.env_remove(name);
        }
    }
    command
        .args(["token", "--json", "--installation", installation, "--redis", url])
        .args(["--redis-timeout", "5"])
        .env("ICR_BASE_URL", &registry.base_url)
        .env("ICR_APP_ID", &app.id)
        .env("ICR_PRIVATE_KEY", &app.key_path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run icr-app")
}

/// What the processes printed, by installation: every one succeeded, with a token that has
/// not expired.
fn tokens_of(children: Vec<(String, Child)>) -> BTreeMap<String, BTreeSet<String>> {
    let mut tokens: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (installation, child) in children {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "icr-app token failed: {stderr}");
        assert!(!stderr.contains("s3cret"), "{stderr}");
        let printed: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        let expires = printed["expiresAt"].as_str().expect("expiresAt");
        let expires = Timestamp::parse_rfc3339(expires).expect("an RFC 3339 expiresAt");
        assert!(
            expires > Timestamp::from_system_time(std::time::SystemTime::now()),
            "an expired token: {printed}"
        );
        let token = printed["token"].as_str().expect("a token").to_owned();
        tokens.entry(installation).or_default().insert(token);
    }
    tokens
}

/// `n` processes, round-robin over the installations, all at once.
fn run(registry: &Registry, app: &AppInfo, url: &str, n: usize) -> BTreeMap<String, BTreeSet<String>> {
    let children: Vec<(String, Child)> = (0..n)
        .map(|k| {
            let installation = app.installations[k % app.installations.len()].clone();
            let child = token_process(registry, app, &installation, url);
            (installation, child)
        })
        .collect();
    tokens_of(children)
}

fn twenty_processes_mint_five_tokens(url: &str) {
    let mut registry = Registry::start(registry_bin(), &[(APP, "demo", 5)]);
    let app = registry.apps[0].clone();
    let tokens = run(&registry, &app, url, 20);
    assert_eq!(tokens.len(), 5);
    assert!(
        tokens.values().all(|t| t.len() == 1),
        "four processes per installation, one token each; mints {:?}",
        registry.mints()
    );
    let (total, per) = registry.mints();
    assert_eq!(total, 5, "{per:?}");
}

#[test]
fn twenty_cli_processes_on_a_cluster_mint_five_tokens() {
    let cluster = RedisCluster::start(3, 0);
    twenty_processes_mint_five_tokens(&cluster.url());
}

#[test]
fn twenty_cli_processes_behind_a_sentinel_mint_five_tokens() {
    let sentinel = RedisSentinel::start("icr-primary");
    twenty_processes_mint_five_tokens(&sentinel.url());
}

/// Processes before, during and after a failover: none fails or prints an expired token; once
/// the failover is over, the fleet shares again (the first wave after it may mint what the
/// failover lost, the next mints nothing).
fn a_primary_killed_mid_run(url: &str, kill: impl FnOnce(), settle: impl FnOnce()) {
    let mut registry = Registry::start(registry_bin(), &[(APP, "demo", 5)]);
    let app = registry.apps[0].clone();
    let before = run(&registry, &app, url, 10);
    assert!(before.values().all(|t| t.len() == 1), "{before:?}");
    // Processes started, then the primary killed under them, then more while it fails over.
    let early: Vec<(String, Child)> = (0..10)
        .map(|k| {
            let installation = app.installations[k % 5].clone();
            let child = token_process(&registry, &app, &installation, url);
            (installation, child)
        })
        .collect();
    kill();
    let during = run(&registry, &app, url, 10);
    tokens_of(early);
    assert_eq!(during.len(), 5);
    settle();
    run(&registry, &app, url, 5);
    let (settled, _) = registry.mints();
    let after = run(&registry, &app, url, 10);
    assert!(after.values().all(|t| t.len() == 1), "{after:?}");
    let (total, per) = registry.mints();
    assert_eq!(total, settled, "shared again after the failover: {per:?}");
}

#[test]
fn a_cluster_primary_killed_mid_run_costs_no_error_and_no_expired_token() {
    let cluster = std::sync::Mutex::new(RedisCluster::start(3, 1));
    let url = cluster.lock().unwrap().url();
    a_primary_killed_mid_run(
        &url,
        || {
            cluster.lock().unwrap().kill_primary(0);
        },
        || cluster.lock().unwrap().wait_until_ok(),
    );
}

#[test]
fn a_sentinel_primary_killed_mid_run_costs_no_error_and_no_expired_token() {
    let sentinel = std::sync::Mutex::new(RedisSentinel::start("icr-primary"));
    let url = sentinel.lock().unwrap().url();
    a_primary_killed_mid_run(
        &url,
        || sentinel.lock().unwrap().kill_primary(),
        || sentinel.lock().unwrap().wait_for_new_primary(),
    );
}

/// A process of the fleet that receives the registry's webhooks: the blocking client with the
/// same store.
fn webhook_receiver(registry: &Registry, app: &AppInfo, url: &str) -> icr_app_ureq::Client {
    let pem = std::fs::read_to_string(&app.key_path).unwrap();
    let built = App::builder(app.id.clone(), AppKey::from_pem(&pem).unwrap())
        .base_url(registry.base_url.clone())
        .build()
        .unwrap();
    icr_app_ureq::Client::builder(built)
        .store(
            RedisStore::connect(url)
                .unwrap()
                .timeout(std::time::Duration::from_secs(5)),
        )
        .build()
        .unwrap()
}

/// An `uninstalled` delivery for `installation`, signed and verified as a real one is.
fn uninstalled(installation: &str) -> icr_app_core::WebhookEvent {
    let secret = icr_app_core::WebhookSecret::new("whsec-fleet").unwrap();
    let payload = serde_json::json!({
        "event": "uninstalled",
        "installation": {"id": installation, "permissions": {}, "organization": {"id": "org-of-the-test"}},
        "sender": {"id": "user-1"}
    });
    let delivery = icr_app_core::webhook::Delivery::new(&secret, &payload);
    icr_app_core::webhook::verify(&secret, Some(&delivery.signature), &delivery.body).unwrap()
}

fn an_uninstalled_event_makes_the_next_process_mint_anew(url: &str) {
    let mut registry = Registry::start(registry_bin(), &[(APP, "demo", 5)]);
    let app = registry.apps[0].clone();
    let first = run(&registry, &app, url, 10);
    assert_eq!(registry.mints().0, 5);
    let gone = app.installations[0].clone();
    // The receiver never held the token: the delete is unconditional.
    let receiver = webhook_receiver(&registry, &app, url);
    assert!(receiver.handle_event(&uninstalled(&gone)).unwrap());
    let next = run(&registry, &app, url, 5);
    let (_, per) = registry.mints();
    assert_eq!(per[&gone], 2, "a new process minted anew: {per:?}");
    assert_ne!(next[&gone], first[&gone], "a new token");
    for other in &app.installations[1..] {
        assert_eq!(per[other], 1, "{per:?}");
        assert_eq!(next[other], first[other]);
    }
    // `forget` by hand does the same.
    receiver
        .forget(&TokenScope::Installation(
            InstallationId::new(app.installations[1].clone()).unwrap(),
        ))
        .unwrap();
    run(&registry, &app, url, 5);
    assert_eq!(registry.mints().1[&app.installations[1]], 2);
}

#[test]
fn an_uninstalled_event_on_a_cluster_makes_the_next_process_mint_anew() {
    let cluster = RedisCluster::start(3, 0);
    an_uninstalled_event_makes_the_next_process_mint_anew(&cluster.url());
}

#[test]
fn an_uninstalled_event_behind_a_sentinel_makes_the_next_process_mint_anew() {
    let sentinel = RedisSentinel::start("icr-primary");
    an_uninstalled_event_makes_the_next_process_mint_anew(&sentinel.url());
}

/// `icr-app revoke --redis URL`, the token on standard input, with `flags`.
fn revoke_process(registry: &Registry, app: &AppInfo, url: &str, token: &str, flags: &[&str]) {
    use std::io::Write as _;
    let mut command = Command::new(cli());
    for (name, _) in std::env::vars() {
        if name.starts_with("ICR_") {
            command.env_remove(name);
        }
    }
    let mut child = command
        .args(["revoke", "-", "--redis", url, "--redis-timeout", "5"])
        .args(flags)
        .env("ICR_BASE_URL", &registry.base_url)
        .env("ICR_APP_ID", &app.id)
        .env("ICR_PRIVATE_KEY", &app.key_path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run icr-app revoke");
    child.stdin.take().unwrap().write_all(token.as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "icr-app revoke: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn icr_app_revoke_with_a_store_drops_the_tokens_shared_entry() {
    let cluster = RedisCluster::start(3, 0);
    let url = cluster.url();
    let mut registry = Registry::start(registry_bin(), &[(APP, "demo", 3)]);
    let app = registry.apps[0].clone();
    let first = run(&registry, &app, &url, 6);
    assert_eq!(registry.mints().0, 3);
    // Without --installation: the entry is found among the app's installations (only the one
    // holding this token is deleted).
    let one = &app.installations[0];
    let token = first[one].iter().next().unwrap().clone();
    revoke_process(&registry, &app, &url, &token, &[]);
    let next = run(&registry, &app, &url, 3);
    let (_, per) = registry.mints();
    assert_eq!(per[one], 2, "the revoked token's entry went: {per:?}");
    assert_ne!(next[one], first[one]);
    assert_eq!(per[&app.installations[1]], 1, "the others' entries stay: {per:?}");
    // With --installation: that entry only.
    let two = &app.installations[1];
    let token = first[two].iter().next().unwrap().clone();
    revoke_process(&registry, &app, &url, &token, &["--installation", two]);
    run(&registry, &app, &url, 3);
    let (_, per) = registry.mints();
    assert_eq!((per[one], per[two], per[&app.installations[2]]), (2, 2, 1), "{per:?}");
}
