//! The shared token store, simulated: several processes (one [`App`] each, the same app and key)
//! drive `GetToken`s and `Refresher`s against one in-memory registry and one in-memory store
//! that runs [`StoreCommand`]s the way Redis does (expiry, `SET NX`, the compare-and-delete
//! scripts). No sockets, no threads, no real clock: an event queue in simulated time, each
//! effect answered after its own latency, waiting operations woken when their process reports.
//!
//! What it shows: one mint per scope however many processes ask; a lease holder that dies is
//! replaced once its lease lapses; one process refreshes ahead of expiry while the others keep
//! serving, then adopt the new token; a store that fails costs no caller an error and sharing
//! resumes when it answers; a value moved to another entry is refused; a refused token leaves
//! the entry only if the entry still holds it.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use http::{Request, Response};
use icr_app_core::{
    App, AppKey, Error, GetToken, InstallationId, Operation, Refresher, RequestId, SendAs, Step, StoreCommand,
    StoreReply, StoreSettings, Timestamp, Token, TokenScope,
};

const T0: i64 = 1_700_000_000_000;
const KEY: &str = include_str!("fixtures/keys/rsa2048-pkcs8.pem");
const MINT_MS: i64 = 50;
const STORE_MS: i64 = 1;

fn at(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(T0 + ms)
}

fn scope(i: usize) -> TokenScope {
    TokenScope::Installation(InstallationId::new(format!("inst-{i}")).unwrap())
}

/// The registry: mints 2-hour tokens, counts them per scope, refuses tokens it was told to.
#[derive(Default)]
struct Registry {
    mints: HashMap<String, u32>,
    next: u32,
    refused: Vec<String>,
}

impl Registry {
    fn answer(&mut self, request: &Request<Vec<u8>>, now_ms: i64) -> Response<Vec<u8>> {
        let path = request.uri().path().to_owned();
        let auth = request.headers()["authorization"].to_str().unwrap().to_owned();
        let date = at(now_ms).to_http_date();
        if path.ends_with("/accessTokens") {
            *self.mints.entry(path).or_default() += 1;
            self.next += 1;
            let body = serde_json::json!({
                "token": format!("crs_{:040}", self.next),
                "createdAt": at(now_ms).to_rfc3339(),
                "expiresAt": at(now_ms + 7_200_000).to_rfc3339(),
                "permissions": {},
            });
            return Response::builder()
                .status(200)
                .header("date", date)
                .body(serde_json::to_vec(&body).unwrap())
                .unwrap();
        }
        let status = if self.refused.iter().any(|t| auth.ends_with(t.as_str())) {
            401
        } else {
            200
        };
        Response::builder()
            .status(status)
            .header("date", date)
            .body(b"{}".to_vec())
            .unwrap()
    }

    fn total(&self) -> u32 {
        self.mints.values().sum()
    }
}

/// The store: Redis's semantics for the four commands, with expiry in simulated time.
#[derive(Default)]
struct Store {
    values: HashMap<String, (Vec<u8>, i64)>,
    down: bool,
    commands: u32,
}

impl Store {
    fn run(&mut self, command: &StoreCommand, now_ms: i64) -> Result<StoreReply, Error> {
        self.commands += 1;
        if self.down {
            return Err(Error::transport(
                icr_app_core::TransportErrorKind::Connect,
                "connection refused",
            ));
        }
        self.values.retain(|_, (_, expires)| *expires > now_ms);
        let ms = |d: &Duration| d.as_millis() as i64;
        Ok(match command {
            StoreCommand::Get { key } => StoreReply::Value(self.values.get(key).map(|(v, _)| v.clone())),
            StoreCommand::Lease { key, owner, ttl } => {
                let free = !self.values.contains_key(key);
                if free {
                    self.values.insert(key.clone(), (owner.clone(), now_ms + ms(ttl)));
                }
                StoreReply::Leased(free)
            }
            StoreCommand::Put {
                key,
                value,
                ttl,
                lease,
                owner,
            } => {
                self.values.insert(key.clone(), (value.clone(), now_ms + ms(ttl)));
                if self.values.get(lease).is_some_and(|(v, _)| v == owner) {
                    self.values.remove(lease);
                }
                StoreReply::Done
            }
            StoreCommand::Delete { key, prefix } => {
                if self.values.get(key).is_some_and(|(v, _)| v.starts_with(prefix)) {
                    self.values.remove(key);
                }
                StoreReply::Done
            }
        })
    }
}

enum Op {
    Get(GetToken),
    Send(Box<SendAs>),
    Refresher(Refresher),
}

enum Event {
    /// Poll the task, if it has not been polled since this was scheduled (a wait's deadline
    /// that a wake-up already served is stale).
    Poll(u64),
    Response(RequestId, Response<Vec<u8>>),
    Store(RequestId, StoreCommand),
}

struct Task {
    process: usize,
    op: Op,
    /// What it finished with: a token's secret, or the error.
    result: Option<Result<String, String>>,
    waiting: bool,
    /// How many times it was polled: stale `Poll`s are dropped.
    polls: u64,
    /// Killed: its effects are never answered, and it is never abandoned (the process died).
    dead: bool,
}

struct Sim {
    now: i64,
    apps: Vec<App>,
    registry: Registry,
    store: Store,
    tasks: Vec<Task>,
    queue: BinaryHeap<Reverse<(i64, u64, usize)>>,
    events: HashMap<u64, Event>,
    seq: u64,
}

impl Sim {
    fn new(processes: usize, settings: StoreSettings) -> Self {
        let apps = (0..processes)
            .map(|p| {
                let key = AppKey::from_pem(KEY).unwrap();
                let mut app = App::builder("app-1", key).seed(p as u64).build().unwrap();
                app.attach_store(settings.clone(), p as u64 + 1).unwrap();
                app
            })
            .collect();
        Self {
            now: 0,
            apps,
            registry: Registry::default(),
            store: Store::default(),
            tasks: Vec::new(),
            queue: BinaryHeap::new(),
            events: HashMap::new(),
            seq: 0,
        }
    }

    fn schedule(&mut self, at_ms: i64, task: usize, event: Event) {
        self.seq += 1;
        self.events.insert(self.seq, event);
        self.queue.push(Reverse((at_ms, self.seq, task)));
    }

    fn spawn(&mut self, process: usize, op: Op) -> usize {
        self.tasks.push(Task {
            process,
            op,
            result: None,
            waiting: false,
            polls: 0,
            dead: false,
        });
        let task = self.tasks.len() - 1;
        self.schedule(self.now, task, Event::Poll(0));
        task
    }

    fn get(&mut self, process: usize, scope: TokenScope) -> usize {
        self.spawn(process, Op::Get(GetToken::new(scope, None)))
    }

    /// Runs until nothing is left to do before `until_ms` (a refresher never finishes).
    fn run_until(&mut self, until_ms: i64) {
        let mut events = 0u64;
        while let Some(Reverse((t, seq, task))) = self.queue.peek().copied() {
            if t > until_ms {
                break;
            }
            self.queue.pop();
            events += 1;
            assert!(events < 1_000_000, "still busy at {} ms (task {task})", self.now);
            self.now = self.now.max(t);
            let event = self.events.remove(&seq).unwrap();
            if self.tasks[task].dead || self.tasks[task].result.is_some() {
                continue;
            }
            let now = at(self.now);
            let process = self.tasks[task].process;
            let app = &mut self.apps[process];
            let reported = match event {
                Event::Poll(polls) if polls != self.tasks[task].polls => continue,
                Event::Poll(_) => false,
                Event::Response(id, response) => {
                    match &mut self.tasks[task].op {
                        Op::Get(op) => op.handle_response(app, id, response, now),
                        Op::Send(op) => op.handle_response(app, id, response, now),
                        Op::Refresher(op) => op.handle_response(app, id, response, now),
                    }
                    true
                }
                Event::Store(id, command) => {
                    let reply = self.store.run(&command, self.now);
                    match &mut self.tasks[task].op {
                        Op::Get(op) => op.handle_store(app, id, reply, now),
                        Op::Send(op) => op.handle_store(app, id, reply, now),
                        Op::Refresher(op) => op.handle_store(app, id, reply, now),
                    }
                    true
                }
            };
            if reported {
                self.wake(process);
            }
            self.poll(task);
        }
        self.now = self.now.max(until_ms);
    }

    fn wake(&mut self, process: usize) {
        for i in 0..self.tasks.len() {
            if self.tasks[i].process == process && self.tasks[i].waiting && !self.tasks[i].dead {
                self.tasks[i].waiting = false;
                let polls = self.tasks[i].polls;
                self.schedule(self.now, i, Event::Poll(polls));
            }
        }
    }

    fn poll(&mut self, task: usize) {
        let now = at(self.now);
        self.tasks[task].polls += 1;
        self.tasks[task].waiting = false;
        let polls = self.tasks[task].polls;
        let app = &mut self.apps[self.tasks[task].process];
        // The same for every kind of operation: what it asked, with the result as a string.
        let (send, store, sleep, wait, done) = match &mut self.tasks[task].op {
            Op::Get(op) => split(op.poll(app, now), |t: Token| t.secret().expose().to_owned()),
            Op::Send(op) => split(op.poll(app, now), |r: Response<Vec<u8>>| {
                r.status().as_u16().to_string()
            }),
            Op::Refresher(op) => split(op.poll(app, now), |()| String::new()),
        };
        if let Some((id, request)) = send {
            let response = self.registry.answer(&request, self.now + MINT_MS);
            self.schedule(self.now + MINT_MS, task, Event::Response(id, response));
        } else if let Some((id, command)) = store {
            self.schedule(self.now + STORE_MS, task, Event::Store(id, command));
        } else if let Some(until) = sleep {
            assert!(until >= now, "sleeps into the past");
            self.schedule(until.unix_millis() - T0, task, Event::Poll(polls));
        } else if let Some(until) = wait {
            self.tasks[task].waiting = true;
            self.schedule(until.unix_millis() - T0, task, Event::Poll(polls));
        } else if let Some(result) = done {
            self.tasks[task].result = Some(result);
            let process = self.tasks[task].process;
            self.wake(process);
        }
    }

    fn token(&self, task: usize) -> String {
        match &self.tasks[task].result {
            Some(Ok(token)) => token.clone(),
            other => panic!("task {task} did not finish with a token: {other:?}"),
        }
    }
}

type Split = (
    Option<(RequestId, Request<Vec<u8>>)>,
    Option<(RequestId, StoreCommand)>,
    Option<Timestamp>,
    Option<Timestamp>,
    Option<Result<String, String>>,
);

fn split<T>(step: Step<T>, show: impl FnOnce(T) -> String) -> Split {
    match step {
        Step::Send { id, request } => (Some((id, request)), None, None, None, None),
        Step::Store { id, command } => (None, Some((id, command)), None, None, None),
        Step::Sleep { until } => (None, None, Some(until), None, None),
        Step::Wait { until, .. } => (None, None, None, Some(until), None),
        Step::Sign { .. } => unreachable!("these apps have a key"),
        Step::Done(result) => (
            None,
            None,
            None,
            None,
            Some(result.map(show).map_err(|e| e.to_string())),
        ),
    }
}

#[test]
fn one_mint_per_scope_for_every_process() {
    let mut sim = Sim::new(4, StoreSettings::default());
    let mut tasks = Vec::new();
    for process in 0..4 {
        for caller in 0..8 {
            for s in 0..5 {
                let _ = caller;
                tasks.push((s, sim.get(process, scope(s))));
            }
        }
    }
    sim.run_until(60_000);
    assert_eq!(sim.registry.total(), 5, "{:?}", sim.registry.mints);
    for s in 0..5 {
        let tokens: Vec<String> = tasks
            .iter()
            .filter(|(t, _)| *t == s)
            .map(|(_, task)| sim.token(*task))
            .collect();
        assert!(tokens.iter().all(|t| *t == tokens[0]), "scope {s}: {tokens:?}");
    }
    // Local hits never ask the store again.
    let commands = sim.store.commands;
    let again = sim.get(3, scope(0));
    sim.run_until(61_000);
    assert_eq!(sim.token(again), sim.token(tasks[0].1));
    assert_eq!(sim.store.commands, commands);
    // Every process counted what it did: 5 mints and 15 shared hits between them, a miss per
    // caller that found nothing cached, the rest waits; one hit in process 3.
    let stats: Vec<_> = sim.apps.iter().map(App::stats).collect();
    assert_eq!(stats.iter().map(|s| s.mints).sum::<u64>(), 5, "{stats:?}");
    assert_eq!(stats.iter().map(|s| s.shared_hits).sum::<u64>(), 15, "{stats:?}");
    assert_eq!(stats.iter().map(|s| s.misses).sum::<u64>(), 4 * 8 * 5, "{stats:?}");
    assert_eq!(stats[3].hits, 1);
    assert!(
        stats
            .iter()
            .all(|s| s.failures.is_empty() && s.shared_fallbacks == 0 && s.refreshes == 0)
    );
}

#[test]
fn a_lease_holder_that_dies_is_replaced_when_its_lease_lapses() {
    let settings = StoreSettings {
        lease_ttl: Duration::from_secs(2),
        ..StoreSettings::default()
    };
    let mut sim = Sim::new(2, settings);
    let first = sim.get(0, scope(0));
    // Until the first has taken the lease and sent its mint.
    sim.run_until(10);
    sim.tasks[first].dead = true;
    let second = sim.get(1, scope(0));
    sim.run_until(60_000);
    let token = sim.token(second);
    assert!(sim.now >= 2_000);
    // It waited for the lease to lapse, then minted (the dead one's mint reached the registry
    // too, but its token was never stored).
    assert_eq!(sim.registry.total(), 2);
    assert!(token.starts_with("crs_"));
}

#[test]
fn one_process_refreshes_ahead_and_the_others_adopt_its_token() {
    let mut sim = Sim::new(3, StoreSettings::default());
    let firsts: Vec<usize> = (0..3).map(|p| sim.get(p, scope(0))).collect();
    sim.run_until(1_000);
    assert_eq!(sim.registry.total(), 1);
    let old = sim.token(firsts[0]);
    for p in 0..3 {
        sim.spawn(p, Op::Refresher(Refresher::new()));
        sim.apps[p].set_background_refresh(true);
    }
    // Past every process's refresh time (the first at 1 h 48 min), well before expiry.
    sim.run_until(7_000_000);
    assert_eq!(
        sim.registry.total(),
        2,
        "one refresh for the fleet: {:?}",
        sim.registry.mints
    );
    let now: Vec<usize> = (0..3).map(|p| sim.get(p, scope(0))).collect();
    sim.run_until(7_001_000);
    let new = sim.token(now[0]);
    assert_ne!(new, old);
    assert!(now.iter().all(|t| sim.token(*t) == new));
}

#[test]
fn a_failing_store_costs_no_error_and_sharing_resumes() {
    let mut sim = Sim::new(2, StoreSettings::default());
    sim.store.down = true;
    let a = sim.get(0, scope(0));
    let b = sim.get(1, scope(0));
    sim.run_until(1_000);
    // Each minted alone, without an error.
    assert_ne!(sim.token(a), sim.token(b));
    assert_eq!(sim.registry.total(), 2);
    assert!(sim.apps.iter().all(|app| app.stats().shared_fallbacks == 1));
    // Back up: after the pause, a new scope is shared again.
    sim.store.down = false;
    sim.run_until(10_000);
    let c = sim.get(0, scope(1));
    sim.run_until(11_000);
    let d = sim.get(1, scope(1));
    sim.run_until(12_000);
    assert_eq!(sim.token(c), sim.token(d));
    assert_eq!(sim.registry.total(), 3);
}

#[test]
fn a_value_moved_to_another_entry_is_refused() {
    let mut sim = Sim::new(2, StoreSettings::default());
    let a = sim.get(0, scope(0));
    sim.run_until(1_000);
    let entry = |s: usize| {
        sim.store
            .values
            .keys()
            .find(|k| k.ends_with(&format!("{{installation:inst-{s}}}")))
            .cloned()
    };
    let from = entry(0).unwrap();
    let value = sim.store.values[&from].clone();
    let to = from.replace("inst-0", "inst-1");
    sim.store.values.insert(to, value);
    let b = sim.get(1, scope(1));
    sim.run_until(2_000);
    assert_ne!(
        sim.token(b),
        sim.token(a),
        "a token sealed for inst-0 served for inst-1"
    );
    assert_eq!(sim.registry.total(), 2);
}

#[test]
fn a_refused_token_leaves_the_entry_only_if_it_still_holds_it() {
    let mut sim = Sim::new(2, StoreSettings::default());
    let a = sim.get(0, scope(0));
    sim.run_until(1_000);
    let old = sim.token(a);
    // Process 1 holds it too.
    let b = sim.get(1, scope(0));
    sim.run_until(2_000);
    assert_eq!(sim.token(b), old);
    // The registry refuses it: a request as process 0 drops it, here and in the store, mints
    // again once and stores the new one.
    sim.registry.refused.push(old.clone());
    let request = sim.apps[0].api().request(http::Method::GET, "/projects", None).unwrap();
    let send = sim.spawn(0, Op::Send(Box::new(SendAs::new(scope(0), request))));
    sim.run_until(3_000);
    assert_eq!(sim.tasks[send].result, Some(Ok("200".into())));
    assert_eq!(sim.registry.total(), 2);
    // Process 1, refused with the old token later, must not wipe the new entry.
    let request = sim.apps[1].api().request(http::Method::GET, "/projects", None).unwrap();
    let late = sim.spawn(1, Op::Send(Box::new(SendAs::new(scope(0), request))));
    sim.run_until(4_000);
    assert_eq!(sim.tasks[late].result, Some(Ok("200".into())));
    // It adopted the new token from the store: no third mint.
    assert_eq!(sim.registry.total(), 2, "{:?}", sim.registry.mints);
}

#[test]
fn a_token_dropped_with_invalidate_is_not_read_back_from_the_store() {
    let mut sim = Sim::new(2, StoreSettings::default());
    let a = sim.get(0, scope(0));
    sim.run_until(1_000);
    let old = sim.token(a);
    // A middleware saw a 401 and dropped the token from process 0's cache only.
    assert!(sim.apps[0].invalidate(&scope(0), &old));
    let b = sim.get(0, scope(0));
    sim.run_until(2_000);
    assert_ne!(sim.token(b), old, "the refused token came back from the store");
    assert_eq!(sim.registry.total(), 2);
    // The new token replaced it in the store: process 1 reads the new one.
    let c = sim.get(1, scope(0));
    sim.run_until(3_000);
    assert_eq!(sim.token(c), sim.token(b));
}

/// Regression (found by tests/fleet.rs on real processes): a process that read the entry empty
/// just before another put its token, and took the lease just after that one released it, must
/// read the entry again rather than mint a second token. Every start time across the window.
#[test]
fn a_lease_taken_after_another_process_stored_its_token_reads_it_instead_of_minting() {
    for offset in 0..80 {
        let mut sim = Sim::new(2, StoreSettings::default());
        let a = sim.get(0, scope(0));
        sim.run_until(offset);
        let b = sim.get(1, scope(0));
        sim.run_until(10_000);
        assert_eq!(sim.registry.total(), 1, "second process started at {offset} ms");
        assert_eq!(sim.token(a), sim.token(b));
        // The lease was released.
        assert!(
            sim.store.values.keys().all(|k| !k.ends_with(":lease")),
            "at {offset} ms"
        );
    }
}
