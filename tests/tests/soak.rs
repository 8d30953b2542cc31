//! The fault soak: both clients at once, many callers, many installations, against a fake
//! registry that injects 5xx, dropped connections, malformed bodies, delays and `Retry-After`
//! answers at random, while its clock jumps and it revokes every token behind the clients' backs.
//!
//! `soak_short` runs with `cargo test` (10 s, the full shape); `soak_full` is the recorded run
//! (`cargo test -p icr-app-e2e --test soak -- --ignored --nocapture`, 60 s; the
//! duration can be changed with `ICR_SOAK_SECS`). Figures of a full run are in `tests/SOAK.md`.
//!
//! Every token a caller is handed is checked at once, in-process (so the check is not faulted),
//! against the registry's own view on its own clock. The run's timeline, for a duration `D`:
//!
//! ```text
//! 0        D/4: registry clock +(2 h - D/2)      3D/4: registry revokes every token     D
//! |--gen 0--|---------------gen 1----------------|---------------gen 2-----------------|
//!           tokens minted before it now expire    the clients cannot know until a 401
//!           on the registry by D/2 .. 3D/4        on the authorised path tells them
//! ```

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use icr_app_core::{CacheConfig, Error, InstallationId, TransportErrorKind};
use icr_app_e2e::Setup;
use icr_app_testkit::{FakeRegistry, FaultRates, TokenStatus};

/// The registry's token lifetime (its default, as in production).
const TOKEN_LIFETIME: Duration = Duration::from_secs(7200);
/// One call in this many uses the token on the authorised path (`GET /organizations/{id}` as
/// the installation), where a 401 makes the client drop the token and mint a new one.
const AUTHORISED_EVERY: u64 = 8;
/// After each event, calls in this window do not count towards the minimum number of mints:
/// the clients learn of a clock jump from the next `Date` header they see, not at once.
const LEARNING_GUARD: Duration = Duration::from_secs(1);

struct Params {
    duration: Duration,
    installations: usize,
    tasks: usize,
    threads: usize,
    max_iterations: u64,
}

#[test]
fn soak_short() {
    soak(&Params {
        duration: secs_from_env(10),
        installations: 200,
        tasks: 256,
        threads: 32,
        max_iterations: 2_000_000,
    });
}

#[test]
#[ignore = "the full 60 s soak: cargo test -p icr-app-e2e --test soak -- --ignored --nocapture"]
fn soak_full() {
    soak(&Params {
        duration: secs_from_env(60),
        installations: 200,
        tasks: 256,
        threads: 32,
        max_iterations: 20_000_000,
    });
}

/// The regression the soak found, deterministically: the registry's clock jumps ahead after
/// both clients cached a token; the next answer either client sees carries the registry's
/// `Date`, and from then on the old token (30 s left on the registry) is not handed out.
#[test]
fn both_clients_notice_a_registry_clock_jump() {
    let s = Setup::new(1);
    let id = &s.installations[0];
    let org = format!("/organizations/{}", s.registry.organization_id(id.as_str()).unwrap());
    let ureq = icr_app_ureq::Client::new(s.app_with(CacheConfig::default()));
    let reqwest = icr_app_reqwest::Client::new(s.app_with(CacheConfig::default())).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let old = [
        ureq.installation_token(id).unwrap(),
        rt.block_on(reqwest.installation_token(id)).unwrap(),
    ];

    s.registry.advance_clock(7200 - 30);
    assert!(old.iter().all(|t| s.registry.token_is_valid(t.secret().expose())));
    let _: serde_json::Value = ureq.get_json(id, &org).unwrap();
    let _: serde_json::Value = rt.block_on(reqwest.get_json(id, &org)).unwrap();
    let new = [
        ureq.installation_token(id).unwrap(),
        rt.block_on(reqwest.installation_token(id)).unwrap(),
    ];
    for (old, new) in old.iter().zip(&new) {
        assert!(
            !new.same_as(old),
            "the token with 30 s left on the registry was handed out"
        );
        assert!(s.registry.token_is_valid(new.secret().expose()));
    }
    s.registry.advance_clock(31);
    assert!(!s.registry.token_is_valid(old[0].secret().expose()));
    assert!(new.iter().all(|t| s.registry.token_is_valid(t.secret().expose())));
    assert_eq!(s.registry.mint_count(id.as_str()), 4);
}

fn secs_from_env(default: u64) -> Duration {
    let secs = std::env::var("ICR_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .unwrap_or(default);
    Duration::from_secs(secs.max(4))
}

/// Which client a caller drives.
#[derive(Copy, Clone, Debug)]
enum Side {
    Reqwest = 0,
    Ureq = 1,
}

/// What the run shares between callers and the controller.
struct Shared {
    registry: FakeRegistry,
    installations: Vec<InstallationId>,
    organizations: Vec<String>,
    started: Instant,
    deadline: Instant,
    max_iterations: u64,
    /// When (ms since `started`) the clock jump and the revocation were done; `u64::MAX` before.
    jumped_ms: AtomicU64,
    revoked_ms: AtomicU64,
    /// Per client and installation: when (ms) an authorised call that started after the
    /// revocation succeeded, i.e. when that client's cache is known to hold a fresh token.
    learned_ms: [Vec<AtomicU64>; 2],
}

impl Shared {
    fn now_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    fn running(&self, iterations: u64) -> bool {
        iterations < self.max_iterations && Instant::now() < self.deadline
    }

    /// The generation a call that started at `started` (ms) and has just been handed a valid
    /// token needs a mint of, or `None` when it proves no need of its own: inside the learning
    /// guard after an event, or when the call ended after the next event (its token may then
    /// have been minted after that event, so it serves the next generation too: a mint delayed
    /// by faults and back-off across the clock jump is one mint for both).
    fn need(&self, started: u64) -> Option<usize> {
        let generation = self.generation(started)?;
        let next_event = match generation {
            0 => self.jumped_ms.load(Ordering::SeqCst),
            1 => self.revoked_ms.load(Ordering::SeqCst),
            _ => u64::MAX,
        };
        (self.now_ms() < next_event).then_some(generation)
    }

    /// The generation of tokens a call that started at `at` (ms) belongs to, or `None` inside
    /// the learning guard after an event.
    fn generation(&self, at: u64) -> Option<usize> {
        let guard = LEARNING_GUARD.as_millis() as u64;
        let (jumped, revoked) = (
            self.jumped_ms.load(Ordering::SeqCst),
            self.revoked_ms.load(Ordering::SeqCst),
        );
        if at >= revoked {
            (at >= revoked + guard).then_some(2)
        } else if at >= jumped {
            (at >= jumped + guard).then_some(1)
        } else {
            Some(0)
        }
    }
}

/// What one caller saw.
#[derive(Default)]
struct Tally {
    calls: u64,
    token_calls: u64,
    authorised_calls: u64,
    successes: u64,
    failures: BTreeMap<String, u64>,
    /// Tokens handed out that the registry refused at that moment, and could not be excused.
    invalid: Vec<String>,
    /// Tokens revoked behind the client's back, handed out before it could know.
    stale_after_external_revoke: u64,
    /// Tokens revoked while the call that returned them was under way.
    raced_with_revoke: u64,
    /// (client, installation, generation) for which a fresh token was needed and obtained.
    needs: HashSet<(usize, usize, usize)>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.calls += other.calls;
        self.token_calls += other.token_calls;
        self.authorised_calls += other.authorised_calls;
        self.successes += other.successes;
        for (k, v) in other.failures {
            *self.failures.entry(k).or_default() += v;
        }
        self.invalid.extend(other.invalid);
        self.stale_after_external_revoke += other.stale_after_external_revoke;
        self.raced_with_revoke += other.raced_with_revoke;
        self.needs.extend(other.needs);
    }

    fn failure(&mut self, path: &str, error: &Error) {
        check_error_message(error);
        *self.failures.entry(format!("{path} {}", kind(error))).or_default() += 1;
    }

    /// Checks a token the client handed out for installation `i`, at once, on the registry.
    fn check_token(&mut self, s: &Shared, side: Side, i: usize, started: u64, token: &icr_app_core::Token) {
        assert_eq!(
            token.access_token().installation_id.as_deref(),
            Some(s.installations[i].as_str()),
            "a token for the wrong installation"
        );
        match s.registry.token_status(token.secret().expose()) {
            TokenStatus::Valid => {
                self.successes += 1;
                if let Some(generation) = s.need(started)
                    && generation < 2
                {
                    self.needs.insert((side as usize, i, generation));
                }
            }
            TokenStatus::Revoked if started < s.revoked_ms.load(Ordering::SeqCst) => self.raced_with_revoke += 1,
            TokenStatus::Revoked if started <= s.learned_ms[side as usize][i].load(Ordering::SeqCst) => {
                self.stale_after_external_revoke += 1;
            }
            status => self.invalid.push(format!(
                "{side:?} installation {i}: {status:?} token handed out by a call started at {started} ms \
                 (clock jump at {} ms, revocation at {} ms, learned at {} ms)",
                s.jumped_ms.load(Ordering::SeqCst),
                s.revoked_ms.load(Ordering::SeqCst),
                s.learned_ms[side as usize][i].load(Ordering::SeqCst),
            )),
        }
    }

    /// Records an authorised call's outcome.
    fn authorised(&mut self, s: &Shared, side: Side, i: usize, started: u64, result: Result<serde_json::Value, Error>) {
        match result {
            Ok(org) => {
                assert_eq!(org["id"], s.organizations[i].as_str(), "another organization's data");
                self.successes += 1;
                if let Some(generation) = s.need(started)
                    && generation < 2
                {
                    self.needs.insert((side as usize, i, generation));
                }
                if started >= s.revoked_ms.load(Ordering::SeqCst) {
                    s.learned_ms[side as usize][i].fetch_min(s.now_ms(), Ordering::SeqCst);
                    if s.generation(started) == Some(2) {
                        // A 200 after the revocation needs a token minted after it.
                        self.needs.insert((side as usize, i, 2));
                    }
                }
            }
            Err(e) => self.failure("authorised", &e),
        }
    }
}

/// The error's variant (and status or transport kind): how failures are counted.
fn kind(e: &Error) -> String {
    match e {
        Error::Server { status, .. } => format!("Server({status})"),
        Error::RateLimited { .. } => "RateLimited(429)".into(),
        Error::Unauthorized { credential, .. } => format!("Unauthorized({credential:?})"),
        Error::MalformedBody { .. } => "MalformedBody".into(),
        Error::Transport { kind, .. } => format!("Transport({kind:?})"),
        other => format!("{other:?}")
            .split([' ', '{', '('])
            .next()
            .unwrap_or("?")
            .to_owned(),
    }
}

/// Every failure a caller sees must be a clear error: a message that names the cause (and a
/// hint), and never a credential.
fn check_error_message(e: &Error) {
    let text = e.to_string();
    assert!(text.len() >= 20, "too short to be clear: {text:?}");
    let names_cause = match e {
        Error::Server { status, .. } => text.contains(&status.to_string()) && text.contains("server error"),
        Error::RateLimited { .. } => text.starts_with("429 Too Many Requests"),
        Error::Unauthorized { .. } => text.starts_with("401 Unauthorized"),
        Error::MalformedBody { .. } => text.contains("not the documented shape"),
        Error::Transport { kind, .. } => {
            text.starts_with("request failed: ")
                && (*kind != TransportErrorKind::ConnectionLost || text.contains("dropped"))
        }
        _ => false,
    };
    assert!(names_cause, "{kind} does not name its cause: {text}", kind = kind(e));
    let leaks_token = text
        .match_indices("crs_")
        .any(|(at, _)| text[at + 4..].starts_with(|c: char| c.is_ascii_hexdigit()));
    assert!(
        !leaks_token && !text.contains("eyJ"),
        "a credential in an error: {text}"
    );
}

/// A small per-caller generator (xorshift64*), seeded per caller: which installation, which path.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
}

fn ureq_caller(s: &Shared, client: &icr_app_ureq::Client, seed: u64) -> Tally {
    let (mut t, mut rng, mut n) = (Tally::default(), Rng(seed), 0);
    while s.running(n) {
        n += 1;
        t.calls += 1;
        let r = rng.next();
        let i = (r % s.installations.len() as u64) as usize;
        let started = s.now_ms();
        if (r >> 32) % AUTHORISED_EVERY == 0 {
            t.authorised_calls += 1;
            let result = client.get_json(&s.installations[i], &format!("/organizations/{}", s.organizations[i]));
            t.authorised(s, Side::Ureq, i, started, result);
        } else {
            t.token_calls += 1;
            match client.installation_token(&s.installations[i]) {
                Ok(token) => t.check_token(s, Side::Ureq, i, started, &token),
                Err(e) => t.failure("token", &e),
            }
        }
    }
    t
}

async fn reqwest_caller(s: Arc<Shared>, client: icr_app_reqwest::Client, seed: u64) -> Tally {
    let (mut t, mut rng, mut n) = (Tally::default(), Rng(seed), 0);
    while s.running(n) {
        n += 1;
        t.calls += 1;
        let r = rng.next();
        let i = (r % s.installations.len() as u64) as usize;
        let started = s.now_ms();
        if (r >> 32) % AUTHORISED_EVERY == 0 {
            t.authorised_calls += 1;
            let result = client
                .get_json(&s.installations[i], &format!("/organizations/{}", s.organizations[i]))
                .await;
            t.authorised(&s, Side::Reqwest, i, started, result);
        } else {
            t.token_calls += 1;
            match client.installation_token(&s.installations[i]).await {
                Ok(token) => t.check_token(&s, Side::Reqwest, i, started, &token),
                Err(e) => t.failure("token", &e),
            }
        }
        // Cached answers never await: let the other tasks (and the runtime) in.
        tokio::task::yield_now().await;
    }
    t
}

fn soak(p: &Params) {
    let setup = Setup::new(p.installations);
    // Production cache settings (refresh 12 min ahead, never hand out a token with less than
    // 60 s left) except for the back-off, which is short so that the run keeps moving.
    let app = || {
        setup.app_with(CacheConfig {
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_millis(1000),
            ..CacheConfig::default()
        })
    };
    let ureq = icr_app_ureq::Client::new(app());
    let reqwest = icr_app_reqwest::Client::new(app()).unwrap();
    let registry = setup.registry;
    registry.set_token_lifetime(TOKEN_LIFETIME);
    let organizations = setup
        .installations
        .iter()
        .map(|i| registry.organization_id(i.as_str()).unwrap())
        .collect();
    registry
        .set_fault_rates(FaultRates {
            server_error: 0.10,
            drop_connection: 0.05,
            malformed_body: 0.02,
            retry_after: 0.01,
            retry_after_secs: 1,
            delay: 0.05,
            max_delay: Duration::from_millis(200),
            seed: 0x50a4,
        })
        .expect("valid fault rates");
    let started = Instant::now();
    let s = Arc::new(Shared {
        registry,
        installations: setup.installations,
        organizations,
        started,
        deadline: started + p.duration,
        max_iterations: p.max_iterations,
        jumped_ms: AtomicU64::new(u64::MAX),
        revoked_ms: AtomicU64::new(u64::MAX),
        learned_ms: [0, 1].map(|_| (0..p.installations).map(|_| AtomicU64::new(u64::MAX)).collect()),
    });

    let threads: Vec<_> = (0..p.threads)
        .map(|n| {
            let (s, client) = (s.clone(), ureq.clone());
            std::thread::Builder::new()
                .name(format!("soak-ureq-{n}"))
                .spawn(move || ureq_caller(&s, &client, 0x1000 + n as u64))
                .unwrap()
        })
        .collect();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    // The async client renews tokens in the background, as a server would run it.
    let refresher = {
        let _runtime = runtime.enter();
        reqwest.spawn_refresher()
    };
    let tasks: Vec<_> = (0..p.tasks)
        .map(|n| runtime.spawn(reqwest_caller(s.clone(), reqwest.clone(), 0x2000 + n as u64)))
        .collect();

    // The controller: the events, and a tally of what the registry answered.
    let quarter = p.duration / 4;
    let mut statuses = BTreeMap::<u16, u64>::new();
    let mut tally_requests = || {
        for r in s.registry.take_requests() {
            *statuses.entry(r.status).or_default() += 1;
        }
    };
    let mut jumped = false;
    while Instant::now() < s.deadline {
        std::thread::sleep(Duration::from_millis(100));
        tally_requests();
        let elapsed = started.elapsed();
        if !jumped && elapsed >= quarter {
            // Tokens minted so far (at most D/4 ago) now have D/4 .. D/2 left on the registry's
            // clock, which the clients believe to be about 2 h.
            let jump = TOKEN_LIFETIME - 2 * quarter;
            // The moment is recorded first, so that no call that ends after the jump counts
            // as a need of the old generation (see `Shared::need`).
            s.jumped_ms.store(s.now_ms(), Ordering::SeqCst);
            s.registry.advance_clock(jump.as_secs() as i64);
            jumped = true;
        }
        if jumped && s.revoked_ms.load(Ordering::SeqCst) == u64::MAX && elapsed >= 3 * quarter {
            s.revoked_ms.store(s.now_ms(), Ordering::SeqCst);
            s.registry.revoke_all_tokens();
        }
    }

    // Join everything (a panic in any caller fails the soak), within a grace period that covers
    // the longest retry wait (10 s) plus a request timeout: anything longer is a hang.
    let grace = Instant::now() + Duration::from_secs(60);
    let mut total = Tally::default();
    for t in threads {
        while !t.is_finished() {
            assert!(Instant::now() < grace, "a ureq caller hangs");
            std::thread::sleep(Duration::from_millis(50));
        }
        total.merge(t.join().expect("a ureq caller panicked"));
    }
    runtime.block_on(async {
        for t in tasks {
            let left = grace.saturating_duration_since(Instant::now());
            let joined = tokio::time::timeout(left, t).await.expect("a reqwest caller hangs");
            total.merge(joined.expect("a reqwest caller panicked"));
        }
    });
    let wall = started.elapsed();
    drop(refresher);
    tally_requests();

    let mints: usize = s.installations.iter().map(|i| s.registry.mint_count(i.as_str())).sum();
    let minimum = total.needs.len();
    let failures: u64 = total.failures.values().sum();
    let faults = s.registry.injected_faults();
    eprintln!(
        "soak: {wall:.1?} wall, {} installations, {} tasks (reqwest) + {} threads (ureq); {} calls ({} token, {} authorised), \
         {} ok, {} failed {:?}; invalid tokens {}; stale after external revoke {}, raced with revoke {}; \
         mints {} vs minimum {} (ratio {:.3}); registry answered {:?}; injected {:?}",
        p.installations,
        p.tasks,
        p.threads,
        total.calls,
        total.token_calls,
        total.authorised_calls,
        total.successes,
        failures,
        total.failures,
        total.invalid.len(),
        total.stale_after_external_revoke,
        total.raced_with_revoke,
        mints,
        minimum,
        mints as f64 / minimum.max(1) as f64,
        statuses,
        faults,
    );

    assert!(
        total.invalid.is_empty(),
        "{} invalid tokens handed out, e.g. {:?}",
        total.invalid.len(),
        &total.invalid[..total.invalid.len().min(5)]
    );
    assert_eq!(
        total.successes + failures + total.stale_after_external_revoke + total.raced_with_revoke,
        total.calls,
        "every call ends in a token, data or an error"
    );
    assert!(
        total.successes * 2 > total.calls,
        "most calls succeed: {} of {}",
        total.successes,
        total.calls
    );
    // Every generation was asked for by both clients for most installations (so the minimum
    // below means something).
    for generation in 0..3 {
        let asked = total.needs.iter().filter(|n| n.2 == generation).count();
        assert!(asked > p.installations, "generation {generation}: only {asked} needs");
    }
    // The mint bound. The minimum is one mint per (client, installation, generation) for which
    // a caller was handed a fresh token (see `needs`): each of those needs a mint of its own,
    // since tokens of the previous generation are unusable (too close to their expiry after
    // the jump, revoked after the revocation), so `mints >= minimum` always holds. Nothing else
    // may cost a mint: a faulted request is not served (the registry mints nothing for it and
    // the client retries), single flight allows one mint per client and installation at a
    // time, 2-hour tokens need no refresh within the run, and a 401 drops only the token that
    // was refused, never a fresher one. The only legitimate extras straddle an event (a mint
    // in flight when the clock jumps, or one for an installation asked for only inside a
    // learning guard), at most one per client and installation per event but in practice
    // none, as no mint is in flight once a generation is cached. So the bound is the minimum
    // plus 5 % (measured: the minimum or one more, see tests/SOAK.md).
    let bound = minimum + minimum / 20;
    assert!(
        mints <= bound,
        "{mints} mints for a minimum of {minimum} (bound {bound})"
    );
    assert!(mints >= minimum, "fewer mints ({mints}) than the minimum ({minimum})?");
}
