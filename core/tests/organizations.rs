//! An organization as a scope (`TokenScope::Organization`), simulated: one or more processes
//! (one [`App`] each, optionally sharing a store that runs [`StoreCommand`]s as Redis does)
//! drive `GetToken`s, `SendAs`s and `Call`s against an in-memory registry that knows which
//! installation each organization has, answers `GET /app/organizations/{id}/installation`, and
//! can reinstall an organization (a new installation id; the old id's mints answer 404 and its
//! tokens 401). No sockets, no threads, no real clock: an event queue in simulated time, each
//! effect answered after its own latency, waiting operations woken when their process reports.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Duration;

use http::{Method, Request, Response};
use icr_app_core::{
    App, AppKey, Call, Error, GetToken, Installation, InstallationId, Operation, OrganizationId, RequestId,
    RetryPolicy, SendAs, Step, StoreCommand, StoreReply, StoreSettings, Timestamp, Token, TokenScope, TokenState,
};

const T0: i64 = 1_700_000_000_000;
const KEY: &str = include_str!("fixtures/keys/rsa2048-pkcs8.pem");
const LATENCY_MS: i64 = 50;
const STORE_MS: i64 = 1;

fn at(ms: i64) -> Timestamp {
    Timestamp::from_unix_millis(T0 + ms)
}

fn org(name: &str) -> OrganizationId {
    OrganizationId::new(name).unwrap()
}

fn by_org(name: &str) -> TokenScope {
    TokenScope::Organization(org(name))
}

fn by_installation(id: &str) -> TokenScope {
    TokenScope::Installation(InstallationId::new(id).unwrap())
}

/// The registry: organizations and their installations (of the one app), tokens, counts.
#[derive(Default)]
struct Registry {
    /// Organization to its current installation (absent: the app is not installed there).
    installed: HashMap<String, String>,
    /// Token to the installation it was minted for.
    tokens: HashMap<String, String>,
    /// Lookups per organization, mint requests per installation (answered 200 or not).
    lookups: HashMap<String, u32>,
    mint_requests: HashMap<String, u32>,
    /// Installations whose mints answer 404 even though a lookup names them (a registry that
    /// lost them).
    unmintable: Vec<String>,
    /// The next lookups answer 503.
    failing_lookups: u32,
    /// Every lookup reinstalls the organization first, with an installation whose mints answer
    /// 404 (a registry that loses installations as fast as it makes them).
    losing: bool,
    next: u32,
}

impl Registry {
    fn install(&mut self, organization: &str) -> String {
        self.next += 1;
        let id = format!("inst-{organization}-{}", self.next);
        self.installed.insert(organization.to_owned(), id.clone());
        id
    }

    /// The organization gets a new installation: the old id is no longer known.
    fn reinstall(&mut self, organization: &str) -> String {
        self.install(organization)
    }

    fn is_current(&self, installation: &str) -> bool {
        self.installed.values().any(|i| i == installation) && !self.unmintable.iter().any(|u| u == installation)
    }

    fn lookups(&self, organization: &str) -> u32 {
        self.lookups.get(organization).copied().unwrap_or(0)
    }

    fn total_lookups(&self) -> u32 {
        self.lookups.values().sum()
    }

    fn mints(&self, installation: &str) -> u32 {
        self.mint_requests.get(installation).copied().unwrap_or(0)
    }

    fn answer(&mut self, request: &Request<Vec<u8>>, now_ms: i64) -> Response<Vec<u8>> {
        let path = request.uri().path().to_owned();
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let auth = request.headers()["authorization"].to_str().unwrap().to_owned();
        let respond = |status: u16, body: serde_json::Value| {
            Response::builder()
                .status(status)
                .header("date", at(now_ms).to_http_date())
                .body(serde_json::to_vec(&body).unwrap())
                .unwrap()
        };
        let not_found = |message: &str| {
            respond(
                404,
                serde_json::json!({"statusCode": 404, "message": message, "error": "Not Found"}),
            )
        };
        match segments.as_slice() {
            ["app", "organizations", organization, "installation"] => {
                assert!(auth.starts_with("Bearer ey"), "a lookup carries the app JWT");
                *self.lookups.entry((*organization).to_owned()).or_default() += 1;
                if self.failing_lookups > 0 {
                    self.failing_lookups -= 1;
                    return respond(503, serde_json::json!({"statusCode": 503, "message": "busy"}));
                }
                if self.losing {
                    let lost = self.reinstall(organization);
                    self.unmintable.push(lost);
                }
                match self.installed.get(*organization) {
                    Some(id) => respond(
                        200,
                        serde_json::json!({"id": id, "organization": {"id": organization}, "permissions": {}}),
                    ),
                    None => not_found("App is not installed on this organization"),
                }
            }
            ["app", "installations", installation, "accessTokens"] => {
                *self.mint_requests.entry((*installation).to_owned()).or_default() += 1;
                if !self.is_current(installation) {
                    return not_found("Installation not found");
                }
                self.next += 1;
                let token = format!("crs_{:040}", self.next);
                self.tokens.insert(token.clone(), (*installation).to_owned());
                respond(
                    200,
                    serde_json::json!({
                        "token": token, "installationId": installation,
                        "createdAt": at(now_ms).to_rfc3339(),
                        "expiresAt": at(now_ms + 7_200_000).to_rfc3339(),
                        "permissions": {},
                    }),
                )
            }
            // Any other request: served with a token of an installation the registry still knows.
            _ => {
                let token = auth.trim_start_matches("Bearer ");
                match self.tokens.get(token) {
                    Some(installation) if self.is_current(installation) => {
                        respond(200, serde_json::json!({"installation": installation}))
                    }
                    _ => respond(
                        401,
                        serde_json::json!({"statusCode": 401, "message": "Invalid access token"}),
                    ),
                }
            }
        }
    }
}

/// Redis's semantics for the four commands, with expiry in simulated time.
#[derive(Default)]
struct Store {
    values: HashMap<String, (Vec<u8>, i64)>,
}

impl Store {
    fn run(&mut self, command: &StoreCommand, now_ms: i64) -> StoreReply {
        self.values.retain(|_, (_, expires)| *expires > now_ms);
        let ms = |d: &Duration| i64::try_from(d.as_millis()).unwrap();
        match command {
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
        }
    }

    /// The one entry whose name ends with `suffix`.
    fn entry(&self, suffix: &str) -> String {
        let found: Vec<&String> = self.values.keys().filter(|k| k.ends_with(suffix)).collect();
        assert_eq!(found.len(), 1, "entries ending with {suffix}: {:?}", self.values.keys());
        found[0].clone()
    }
}

enum Op {
    Get(GetToken),
    Send(Box<SendAs>),
    Lookup(Box<Call<Installation>>),
}

/// What an operation finished with: a token's secret, a response's status and body, an
/// installation's id; or the error.
type Outcome = Result<String, Error>;

enum Event {
    /// Poll the task, if it has not been polled since this was scheduled.
    Poll(u64),
    Response(RequestId, Response<Vec<u8>>),
    Store(RequestId, StoreCommand),
}

struct Task {
    process: usize,
    op: Op,
    result: Option<Outcome>,
    /// When it finished, in simulated milliseconds.
    finished_at: i64,
    waiting: bool,
    polls: u64,
    /// Its driver left it: abandoned, and never polled again.
    gone: bool,
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
    /// `processes` apps of the same app and key; sharing a store when `shared`.
    fn new(processes: usize, shared: bool) -> Self {
        let apps = (0..processes)
            .map(|p| {
                let key = AppKey::from_pem(KEY).unwrap();
                let mut app = App::builder("app-1", key)
                    .seed(p as u64)
                    .retry(RetryPolicy {
                        max_attempts: 4,
                        max_wait: Duration::from_secs(10),
                    })
                    .build()
                    .unwrap();
                if shared {
                    app.attach_store(StoreSettings::default(), p as u64 + 1).unwrap();
                }
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
            finished_at: 0,
            waiting: false,
            polls: 0,
            gone: false,
        });
        let task = self.tasks.len() - 1;
        self.schedule(self.now, task, Event::Poll(0));
        task
    }

    fn get(&mut self, process: usize, scope: TokenScope) -> usize {
        self.spawn(process, Op::Get(GetToken::new(scope, None)))
    }

    /// `GET /organizations/{organization}` sent as `scope`.
    fn send(&mut self, process: usize, scope: TokenScope, organization: &str) -> usize {
        let request = self.apps[process]
            .api()
            .request(Method::GET, &format!("/organizations/{organization}"), None)
            .unwrap();
        self.spawn(process, Op::Send(Box::new(SendAs::new(scope, request))))
    }

    fn lookup(&mut self, process: usize, organization: &str) -> usize {
        self.spawn(
            process,
            Op::Lookup(Box::new(Call::installation_for_organization(org(organization)))),
        )
    }

    /// Runs until nothing is left to do before `until_ms`.
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
            if self.tasks[task].gone || self.tasks[task].result.is_some() {
                continue;
            }
            let now = at(self.now);
            let process = self.tasks[task].process;
            let app = &mut self.apps[process];
            match event {
                Event::Poll(polls) if polls != self.tasks[task].polls => continue,
                Event::Poll(_) => {}
                Event::Response(id, response) => {
                    match &mut self.tasks[task].op {
                        Op::Get(op) => op.handle_response(app, id, response, now),
                        Op::Send(op) => op.handle_response(app, id, response, now),
                        Op::Lookup(op) => op.handle_response(app, id, response, now),
                    }
                    self.wake(process);
                }
                Event::Store(id, command) => {
                    let reply = Ok(self.store.run(&command, self.now));
                    match &mut self.tasks[task].op {
                        Op::Get(op) => op.handle_store(app, id, reply, now),
                        Op::Send(op) => op.handle_store(app, id, reply, now),
                        Op::Lookup(op) => op.handle_store(app, id, reply, now),
                    }
                    self.wake(process);
                }
            }
            self.poll(task);
        }
        self.now = self.now.max(until_ms);
    }

    fn wake(&mut self, process: usize) {
        for i in 0..self.tasks.len() {
            if self.tasks[i].process == process && self.tasks[i].waiting && !self.tasks[i].gone {
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
        let step = match &mut self.tasks[task].op {
            Op::Get(op) => map(op.poll(app, now), |t: Token| t.secret().expose().to_owned()),
            Op::Send(op) => map(op.poll(app, now), |r: Response<Vec<u8>>| {
                format!("{} {}", r.status().as_u16(), String::from_utf8_lossy(r.body()))
            }),
            Op::Lookup(op) => map(op.poll(app, now), |i: Installation| i.id),
        };
        match step {
            Step::Send { id, request } => {
                let response = self.registry.answer(&request, self.now + LATENCY_MS);
                self.schedule(self.now + LATENCY_MS, task, Event::Response(id, response));
            }
            Step::Store { id, command } => self.schedule(self.now + STORE_MS, task, Event::Store(id, command)),
            Step::Sign { .. } => unreachable!("the app has a key"),
            Step::Sleep { until } => {
                assert!(until >= now, "sleeps into the past");
                self.schedule(until.unix_millis() - T0, task, Event::Poll(polls));
            }
            Step::Wait { until, .. } => {
                self.tasks[task].waiting = true;
                self.schedule(until.unix_millis() - T0, task, Event::Poll(polls));
            }
            Step::Done(result) => {
                self.tasks[task].result = Some(result);
                self.tasks[task].finished_at = self.now;
                let process = self.tasks[task].process;
                self.wake(process);
            }
        }
    }

    /// Abandons `task` as its driver's guard would.
    fn abandon(&mut self, task: usize) {
        let now = at(self.now);
        let process = self.tasks[task].process;
        let app = &mut self.apps[process];
        match &mut self.tasks[task].op {
            Op::Get(op) => op.abandon(app, now),
            Op::Send(op) => op.abandon(app, now),
            Op::Lookup(op) => op.abandon(app, now),
        }
        self.tasks[task].gone = true;
        self.wake(process);
    }

    fn ok(&self, task: usize) -> String {
        match &self.tasks[task].result {
            Some(Ok(value)) => value.clone(),
            other => panic!("task {task} did not succeed: {other:?}"),
        }
    }

    fn err(&self, task: usize) -> Error {
        match &self.tasks[task].result {
            Some(Err(error)) => error.clone(),
            other => panic!("task {task} did not fail: {other:?}"),
        }
    }
}

fn map<T>(step: Step<T>, show: impl FnOnce(T) -> String) -> Step<String> {
    step.map(show)
}

/// Asserts `error` is the 404 of a lookup: the app is not installed on `organization`.
fn assert_not_installed(error: &Error, organization: &str) {
    assert!(
        matches!(error, Error::NotFound { organization: Some(o), .. } if o.as_str() == organization),
        "{error:?}"
    );
    let text = error.to_string();
    assert!(
        text.contains(&format!("the app is not installed on organization {organization}")),
        "{text}"
    );
}

#[test]
fn a_hundred_callers_for_a_cold_organization_cause_one_lookup_and_one_mint() {
    let mut sim = Sim::new(1, false);
    let installation = sim.registry.install("o-1");
    let tasks: Vec<usize> = (0..100).map(|_| sim.get(0, by_org("o-1"))).collect();
    sim.run_until(60_000);
    assert_eq!(sim.registry.lookups("o-1"), 1);
    assert_eq!(sim.registry.mints(&installation), 1);
    let token = sim.ok(tasks[0]);
    assert!(tasks.iter().all(|t| sim.ok(*t) == token));
    // Remembered: the token by installation is the same one, and nothing more is asked.
    let app = &sim.apps[0];
    assert_eq!(
        app.organization_installation(&org("o-1")).map(InstallationId::as_str),
        Some(installation.as_str())
    );
    let stats = app.stats();
    assert_eq!((stats.lookups, stats.mints, stats.misses), (1, 1, 100), "{stats:?}");
    let again = sim.get(0, by_installation(&installation));
    let and_again = sim.get(0, by_org("o-1"));
    sim.run_until(61_000);
    assert_eq!((sim.ok(again), sim.ok(and_again)), (token.clone(), token));
    assert_eq!(
        (sim.registry.total_lookups(), sim.registry.mints(&installation)),
        (1, 1)
    );
    assert_eq!(sim.apps[0].stats().hits, 2);
}

#[test]
fn the_token_by_installation_first_serves_the_organization_after_its_lookup() {
    let mut sim = Sim::new(1, false);
    let installation = sim.registry.install("o-1");
    let first = sim.get(0, by_installation(&installation));
    sim.run_until(1_000);
    let second = sim.get(0, by_org("o-1"));
    sim.run_until(2_000);
    assert_eq!(sim.ok(first), sim.ok(second));
    assert_eq!((sim.registry.lookups("o-1"), sim.registry.mints(&installation)), (1, 1));
    // The app knows it as the installation's token: one entry, whichever way it was asked for.
    assert_eq!(sim.apps[0].cached_scopes(), 1);
    let now = at(sim.now);
    assert!(matches!(
        sim.apps[0].token_state(&by_org("o-1"), now),
        TokenState::Valid(_)
    ));
    assert!(matches!(
        sim.apps[0].token_state(&by_org("o-2"), now),
        TokenState::Empty
    ));
}

#[test]
fn an_organization_without_the_app_is_a_clear_error_for_every_caller() {
    let mut sim = Sim::new(1, false);
    let tasks: Vec<usize> = (0..20).map(|_| sim.get(0, by_org("o-9"))).collect();
    let send = sim.send(0, by_org("o-9"), "o-9");
    let call = sim.lookup(0, "o-9");
    sim.run_until(60_000);
    for task in tasks.iter().copied().chain([send, call]) {
        assert_not_installed(&sim.err(task), "o-9");
    }
    // The 22 callers shared the GetTokens' lookup but the Call's own (a Call always asks).
    assert_eq!(sim.registry.lookups("o-9"), 2);
    assert_eq!(sim.registry.mint_requests.len(), 0, "nothing was minted");
    // Not remembered as missing: installed later, it is found.
    sim.registry.install("o-9");
    let later = sim.get(0, by_org("o-9"));
    sim.run_until(61_000);
    assert!(sim.ok(later).starts_with("crs_"));
    assert_eq!(sim.registry.lookups("o-9"), 3);
}

#[test]
fn a_reinstall_is_followed_with_one_new_lookup_for_many_callers() {
    let mut sim = Sim::new(1, false);
    let old = sim.registry.install("o-1");
    let warm = sim.send(0, by_org("o-1"), "o-1");
    sim.run_until(1_000);
    assert_eq!(sim.ok(warm), format!("200 {{\"installation\":\"{old}\"}}"));
    let new = sim.registry.reinstall("o-1");
    let tasks: Vec<usize> = (0..10).map(|_| sim.send(0, by_org("o-1"), "o-1")).collect();
    sim.run_until(60_000);
    for task in &tasks {
        assert_eq!(sim.ok(*task), format!("200 {{\"installation\":\"{new}\"}}"));
    }
    // The refused token led to one mint for the old installation (404), one lookup, one mint.
    assert_eq!(sim.registry.lookups("o-1"), 2);
    assert_eq!((sim.registry.mints(&old), sim.registry.mints(&new)), (2, 1));
    assert_eq!(
        sim.apps[0]
            .organization_installation(&org("o-1"))
            .map(InstallationId::as_str),
        Some(new.as_str())
    );
}

#[test]
fn a_second_404_is_the_callers_error_without_a_third_lookup() {
    // The new installation's mint answers 404 too.
    let mut sim = Sim::new(1, false);
    sim.registry.install("o-1");
    sim.registry.losing = true;
    let task = sim.get(0, by_org("o-1"));
    sim.run_until(60_000);
    let error = sim.err(task);
    assert!(matches!(error, Error::NotFound { organization: None, .. }), "{error:?}");
    assert_eq!(sim.registry.lookups("o-1"), 2, "looked up again once");
    let lost = &sim.registry.unmintable;
    assert_eq!(lost.len(), 2);
    assert_eq!((sim.registry.mints(&lost[0]), sim.registry.mints(&lost[1])), (1, 1));
    // The lookup names the installation that just answered 404 again: no mint for it (it is in
    // its back-off), the 404 is the error.
    let mut sim = Sim::new(1, false);
    let installation = sim.registry.install("o-1");
    sim.registry.unmintable.push(installation.clone());
    let task = sim.get(0, by_org("o-1"));
    sim.run_until(60_000);
    assert!(matches!(sim.err(task), Error::NotFound { organization: None, .. }));
    assert_eq!((sim.registry.lookups("o-1"), sim.registry.mints(&installation)), (2, 1));
}

#[test]
fn a_lookup_given_up_lets_the_next_caller_look_at_once() {
    let mut sim = Sim::new(1, false);
    let installation = sim.registry.install("o-1");
    let first = sim.get(0, by_org("o-1"));
    let second = sim.get(0, by_org("o-1"));
    // Both polled: the first sent the lookup, the second waits for it.
    sim.run_until(0);
    assert!(sim.tasks[second].waiting);
    assert!(matches!(
        sim.apps[0].token_state(&by_org("o-1"), at(0)),
        TokenState::Fetching
    ));
    sim.abandon(first);
    sim.run_until(60_000);
    assert!(sim.ok(second).starts_with("crs_"));
    assert!(
        sim.tasks[second].finished_at < 1_000,
        "it did not wait for the fetch timeout"
    );
    // The first's lookup reached the registry too (its answer was dropped), then the second's.
    assert_eq!((sim.registry.lookups("o-1"), sim.registry.mints(&installation)), (2, 1));
}

#[test]
fn a_failing_lookup_is_retried_within_the_budget() {
    let mut sim = Sim::new(1, false);
    sim.registry.install("o-1");
    sim.registry.failing_lookups = 2;
    let task = sim.get(0, by_org("o-1"));
    sim.run_until(60_000);
    assert!(sim.ok(task).starts_with("crs_"));
    assert_eq!(sim.registry.lookups("o-1"), 3);
    // Out of budget, the 503 is the error (and every waiter's).
    let mut sim = Sim::new(1, false);
    sim.registry.install("o-1");
    sim.registry.failing_lookups = 100;
    let tasks: Vec<usize> = (0..5).map(|_| sim.get(0, by_org("o-1"))).collect();
    sim.run_until(60_000);
    for task in tasks {
        assert!(matches!(sim.err(task), Error::Server { status: 503, .. }));
    }
    assert_eq!(sim.registry.lookups("o-1"), 4, "one lookup, with its 4 attempts");
}

#[test]
fn a_call_for_the_organization_is_remembered_and_a_refused_token_is_dropped_by_organization() {
    let mut sim = Sim::new(1, false);
    let installation = sim.registry.install("o-1");
    let call = sim.lookup(0, "o-1");
    sim.run_until(1_000);
    assert_eq!(sim.ok(call), installation);
    let get = sim.get(0, by_org("o-1"));
    sim.run_until(2_000);
    let token = sim.ok(get);
    assert_eq!(sim.registry.lookups("o-1"), 1, "the call's answer served the token");
    // A middleware drops a refused token by the scope it asked with.
    let app = &mut sim.apps[0];
    assert!(app.invalidate(&by_org("o-1"), &token));
    assert!(matches!(app.token_state(&by_org("o-1"), at(2_000)), TokenState::Empty));
    assert!(!app.invalidate(&by_org("o-2"), &token));
}

#[test]
fn a_process_that_finds_the_organization_in_the_store_does_not_look_it_up() {
    let mut sim = Sim::new(2, true);
    let installation = sim.registry.install("o-1");
    let first = sim.get(0, by_org("o-1"));
    sim.run_until(1_000);
    let second = sim.get(1, by_org("o-1"));
    sim.run_until(2_000);
    assert_eq!(sim.ok(first), sim.ok(second));
    assert_eq!((sim.registry.lookups("o-1"), sim.registry.mints(&installation)), (1, 1));
    let stats = sim.apps[1].stats();
    assert_eq!(
        (stats.lookups, stats.shared_lookups, stats.mints, stats.shared_hits),
        (0, 1, 0, 1),
        "{stats:?}"
    );
    // Sealed: the installation's id is not in the entry in clear.
    let entry = sim.store.entry(":{organization:o-1}");
    let value = &sim.store.values[&entry].0;
    assert!(!value.windows(installation.len()).any(|w| w == installation.as_bytes()));
}

#[test]
fn processes_asking_at_once_look_the_organization_up_once() {
    let mut sim = Sim::new(4, true);
    let installation = sim.registry.install("o-1");
    let tasks: Vec<usize> = (0..4)
        .flat_map(|process| (0..8).map(move |_| process))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|process| sim.get(process, by_org("o-1")))
        .collect();
    sim.run_until(60_000);
    let token = sim.ok(tasks[0]);
    assert!(tasks.iter().all(|t| sim.ok(*t) == token));
    assert_eq!((sim.registry.lookups("o-1"), sim.registry.mints(&installation)), (1, 1));
    let stats: Vec<_> = sim.apps.iter().map(App::stats).collect();
    assert_eq!(stats.iter().map(|s| s.lookups).sum::<u64>(), 1, "{stats:?}");
    assert_eq!(stats.iter().map(|s| s.shared_lookups).sum::<u64>(), 3, "{stats:?}");
    // No lease is left behind.
    assert!(
        !sim.store.values.keys().any(|k| k.ends_with(":lease")),
        "{:?}",
        sim.store.values.keys()
    );
}

#[test]
fn an_organization_without_the_app_releases_the_lease_at_once() {
    let mut sim = Sim::new(2, true);
    let (a, b) = (sim.get(0, by_org("o-9")), sim.get(1, by_org("o-9")));
    sim.run_until(60_000);
    assert_not_installed(&sim.err(a), "o-9");
    assert_not_installed(&sim.err(b), "o-9");
    // The second process waited for the first's lease, which was released with the 404: it
    // asked the registry itself (nothing is stored for an organization without the app).
    assert_eq!(sim.registry.lookups("o-9"), 2);
    assert!(sim.tasks[b].finished_at < 1_000, "no wait for the lease to lapse");
    assert!(sim.store.values.is_empty(), "{:?}", sim.store.values.keys());
}

#[test]
fn a_process_that_finds_the_installation_gone_writes_the_new_one_back() {
    let mut sim = Sim::new(2, true);
    let old = sim.registry.install("o-1");
    let (a, b) = (sim.send(0, by_org("o-1"), "o-1"), sim.send(1, by_org("o-1"), "o-1"));
    sim.run_until(1_000);
    assert_eq!(sim.ok(a), sim.ok(b));
    assert_eq!(sim.registry.lookups("o-1"), 1);
    let new = sim.registry.reinstall("o-1");
    // Process 1 finds it gone first: it looks the organization up again and stores the answer.
    let b = sim.send(1, by_org("o-1"), "o-1");
    sim.run_until(2_000);
    assert_eq!(sim.ok(b), format!("200 {{\"installation\":\"{new}\"}}"));
    assert_eq!(sim.registry.lookups("o-1"), 2);
    // Process 0 still remembers the old one: refused, 404, then the store has the new one.
    let a = sim.send(0, by_org("o-1"), "o-1");
    sim.run_until(3_000);
    assert_eq!(sim.ok(a), format!("200 {{\"installation\":\"{new}\"}}"));
    assert_eq!(
        sim.registry.lookups("o-1"),
        2,
        "process 0 read the new one from the store"
    );
    assert_eq!((sim.registry.mints(&old), sim.registry.mints(&new)), (3, 1));
    assert_eq!(sim.apps[0].stats().shared_lookups, 1);
}

#[test]
fn an_installation_found_gone_is_not_read_back_from_the_store() {
    let mut sim = Sim::new(1, true);
    let old = sim.registry.install("o-1");
    let warm = sim.send(0, by_org("o-1"), "o-1");
    sim.run_until(1_000);
    assert!(sim.ok(warm).starts_with("200"));
    let new = sim.registry.reinstall("o-1");
    // The store still names the old installation when the process finds it gone: not used.
    let task = sim.send(0, by_org("o-1"), "o-1");
    sim.run_until(2_000);
    assert_eq!(sim.ok(task), format!("200 {{\"installation\":\"{new}\"}}"));
    assert_eq!(sim.registry.lookups("o-1"), 2);
    assert_eq!(sim.registry.mints(&old), 2);
    // And the entry now names the new one: a new process reads it.
    sim.apps.push({
        let mut app = App::builder("app-1", AppKey::from_pem(KEY).unwrap()).build().unwrap();
        app.attach_store(StoreSettings::default(), 9).unwrap();
        app
    });
    let fresh = sim.get(1, by_org("o-1"));
    sim.run_until(3_000);
    assert!(sim.ok(fresh).starts_with("crs_"));
    assert_eq!(sim.registry.lookups("o-1"), 2);
    assert_eq!(
        sim.apps[1]
            .organization_installation(&org("o-1"))
            .map(InstallationId::as_str),
        Some(new.as_str())
    );
}

#[test]
fn a_value_moved_to_another_organizations_entry_is_refused() {
    let mut sim = Sim::new(2, true);
    let one = sim.registry.install("o-1");
    let two = sim.registry.install("o-2");
    let first = sim.get(0, by_org("o-1"));
    sim.run_until(1_000);
    assert!(sim.ok(first).starts_with("crs_"));
    // o-1's entry copied under o-2's name, as someone with write access to the store might.
    let source = sim.store.entry(":{organization:o-1}");
    let value = sim.store.values[&source].clone();
    sim.store
        .values
        .insert(source.replace(":{organization:o-1}", ":{organization:o-2}"), value);
    let second = sim.get(1, by_org("o-2"));
    sim.run_until(2_000);
    assert!(sim.ok(second).starts_with("crs_"));
    assert_eq!(sim.registry.lookups("o-2"), 1, "looked up: the moved value was refused");
    assert_eq!((sim.registry.mints(&one), sim.registry.mints(&two)), (1, 1));
    assert_eq!(
        sim.apps[1]
            .organization_installation(&org("o-2"))
            .map(InstallationId::as_str),
        Some(two.as_str())
    );
}
