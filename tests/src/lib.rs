//! Shared setup for the end-to-end tests: a fake registry with a demo app, clients for it, and
//! [`Driver`], one blocking-style facade over both clients so that a scenario is written once and
//! run against each (see [`for_both_clients!`]); and loopback servers that are not the registry
//! ([`Peer`], another host, and [`RecordingProxy`], a forwarding proxy), each recording what
//! reaches it.
#![allow(missing_docs)]

use std::any::Any;
use std::io::{Read as _, Write as _};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use http::{Method, Request, Response};
use icr_app_core::{
    App, AppBuilder, AppJwt, AppKey, CacheConfig, CreateUserOrganization, CreatedUserOrganization, Error, Installation,
    InstallationId, InstallationsPage, OrganizationId, RetryPolicy, SecretString, Signer, Timestamp, Token, TokenScope,
    TokenState,
};
use icr_app_testkit::{DEMO_PRIVATE_KEY_PEM, FakeRegistry};
use tokio::runtime::Runtime;

/// A registry with the demo app registered and `installations` installations.
pub struct Setup {
    pub registry: FakeRegistry,
    pub app_id: String,
    pub installations: Vec<InstallationId>,
}

impl Setup {
    pub fn new(installations: usize) -> Self {
        let registry = FakeRegistry::start();
        let app_id = "d23967cc-dd16-452b-8af4-869965745978".to_owned();
        registry
            .register_app_with_private_key(&app_id, DEMO_PRIVATE_KEY_PEM)
            .expect("register the demo app");
        let installations = (0..installations)
            .map(|i| {
                let id = registry.add_installation(
                    &app_id,
                    &format!("Organization {i}"),
                    &[("organization_info", "VIEW"), ("organization_inventory", "REQUEST")],
                );
                InstallationId::new(id).unwrap()
            })
            .collect();
        Self {
            registry,
            app_id,
            installations,
        }
    }

    /// The cache settings of [`app`](Self::app): fast back-off (tests wait milliseconds, not
    /// seconds) and `min_remaining` of 1 s so that short-lived tokens are usable.
    pub fn fast_cache() -> CacheConfig {
        CacheConfig {
            backoff_initial: Duration::from_millis(50),
            backoff_max: Duration::from_millis(400),
            min_remaining: Duration::from_secs(1),
            ..CacheConfig::default()
        }
    }

    /// A builder for the demo app at this registry, signing with `signer`, with the test settings
    /// of [`app`](Self::app) (override any of them on the builder).
    pub fn builder_with_signer(&self, signer: impl Signer + 'static) -> AppBuilder {
        App::builder(self.app_id.clone(), signer)
            .base_url(self.registry.base_url())
            .cache(Self::fast_cache())
            .retry(RetryPolicy {
                max_attempts: 4,
                max_wait: Duration::from_secs(10),
            })
            .seed(42)
    }

    /// [`builder_with_signer`](Self::builder_with_signer) with the demo key.
    pub fn builder(&self) -> AppBuilder {
        self.builder_with_signer(AppKey::from_pem(DEMO_PRIVATE_KEY_PEM).unwrap())
    }

    /// An app with fast back-off, `min_remaining` of 1 s, 4 attempts within 10 s.
    pub fn app(&self) -> App {
        self.builder().build().unwrap()
    }

    /// [`app`](Self::app) with other cache settings.
    pub fn app_with(&self, cache: CacheConfig) -> App {
        self.builder().cache(cache).build().unwrap()
    }

    /// [`app`](Self::app) with another retry policy.
    pub fn app_with_retry(&self, retry: RetryPolicy) -> App {
        self.builder().retry(retry).build().unwrap()
    }
}

/// Takes every `ICR_*` setting the examples read out of `cmd`'s environment, so that it runs
/// with exactly the settings a test gives it.
pub fn without_settings(cmd: &mut std::process::Command) -> &mut std::process::Command {
    for var in icr_app_settings::VARIABLES {
        cmd.env_remove(var);
    }
    cmd
}

/// `cargo run -q -p package --example example [--features features]`, without the `ICR_*`
/// settings (add the example's arguments after a `--`).
pub fn cargo_example(package: &str, example: &str, features: Option<&str>) -> std::process::Command {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = std::process::Command::new(cargo);
    cmd.args(["run", "-q", "-p", package, "--example", example]);
    if let Some(features) = features {
        cmd.args(["--features", features]);
    }
    without_settings(&mut cmd);
    cmd
}

/// The local time, as the clients read it.
pub fn now() -> Timestamp {
    Timestamp::from_system_time(SystemTime::now())
}

/// Runs `f` on a thread of its own and returns its result, failing the test if it takes longer
/// than `limit` (a hang shows as a clear failure rather than a stuck test). A panic in `f` is
/// passed on.
pub fn within<T: Send + 'static>(limit: Duration, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    let thread = std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    match rx.recv_timeout(limit) {
        Ok(value) => {
            let _ = thread.join();
            value
        }
        Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: not finished within {limit:?}"),
        Err(mpsc::RecvTimeoutError::Disconnected) => match thread.join() {
            Err(panic) => std::panic::resume_unwind(panic),
            Ok(()) => unreachable!("the thread sends before it ends"),
        },
    }
}

/// Polls `done` every 5 ms until it holds, failing the test after `limit`.
pub fn wait_until(limit: Duration, what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{what}: not within {limit:?}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Which client a [`Driver`] drives.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `icr_app_ureq::Client`, called on the test's thread.
    Ureq,
    /// `icr_app_reqwest::Client`, each call in `Runtime::block_on`.
    Reqwest,
}

impl Kind {
    /// A driver of this kind over `app` (default transport).
    pub fn driver(self, app: App) -> Driver {
        match self {
            Kind::Ureq => Driver::blocking(app),
            Kind::Reqwest => Driver::nonblocking(app),
        }
    }

    /// A driver of this kind over `app`, sharing tokens through the Redis at `redis_url` (with a
    /// generous store timeout: a busy machine must not turn a slow answer into going alone).
    pub fn driver_with_store(self, app: App, redis_url: &str) -> Driver {
        let store = || {
            icr_app_redis::RedisStore::connect(redis_url)
                .unwrap()
                .timeout(Duration::from_secs(5))
        };
        match self {
            Kind::Ureq => Driver::Blocking(icr_app_ureq::Client::builder(app).store(store()).build().unwrap()),
            Kind::Reqwest => {
                let rt = runtime();
                let client = {
                    let _entered = rt.enter();
                    icr_app_reqwest::Client::builder(app).store(store()).build().unwrap()
                };
                Driver::Async(client, rt)
            }
        }
    }
}

/// One blocking-style facade over both clients: the async client's calls run in
/// `Runtime::block_on` on a multi-thread runtime of its own (two workers), so tasks it spawns
/// keep running between calls. Cheap to clone; clones share the client (and its cache).
#[derive(Clone, Debug)]
pub enum Driver {
    Blocking(icr_app_ureq::Client),
    Async(icr_app_reqwest::Client, Arc<Runtime>),
}

/// A call running on another thread (ureq) or task (reqwest).
#[derive(Debug)]
pub enum Pending<T> {
    Thread(std::thread::JoinHandle<T>),
    Task(tokio::task::JoinHandle<T>, Arc<Runtime>),
}

impl<T> Pending<T> {
    /// Waits for the call; `Err` carries its panic.
    pub fn join(self) -> Result<T, Box<dyn Any + Send>> {
        match self {
            Pending::Thread(thread) => thread.join(),
            Pending::Task(task, rt) => rt.block_on(task).map_err(|e| match e.try_into_panic() {
                Ok(panic) => panic,
                Err(e) => Box::new(format!("the task did not finish: {e}")),
            }),
        }
    }

    pub fn is_finished(&self) -> bool {
        match self {
            Pending::Thread(thread) => thread.is_finished(),
            Pending::Task(task, _) => task.is_finished(),
        }
    }
}

fn runtime() -> Arc<Runtime> {
    Arc::new(
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap(),
    )
}

/// Runs the same call on either client: `$c` is bound to the client, and `$call` is awaited
/// (in `block_on`) for the async one.
macro_rules! on_client {
    ($driver:expr, |$c:ident| $call:expr) => {
        match $driver {
            Driver::Blocking($c) => $call,
            Driver::Async($c, rt) => rt.block_on(async { $call.await }),
        }
    };
}

impl Driver {
    /// The blocking client (ureq) over `app`.
    pub fn blocking(app: App) -> Self {
        Driver::Blocking(icr_app_ureq::Client::new(app))
    }

    /// The async client (reqwest) over `app`, with a runtime of its own.
    pub fn nonblocking(app: App) -> Self {
        let rt = runtime();
        let client = {
            let _entered = rt.enter();
            icr_app_reqwest::Client::new(app).unwrap()
        };
        Driver::Async(client, rt)
    }

    pub fn kind(&self) -> Kind {
        match self {
            Driver::Blocking(_) => Kind::Ureq,
            Driver::Async(..) => Kind::Reqwest,
        }
    }

    pub fn installation_token(&self, id: &InstallationId) -> Result<Token, Error> {
        on_client!(self, |c| c.installation_token(id))
    }

    pub fn token(&self, scope: &TokenScope, min_life: Option<Duration>) -> Result<Token, Error> {
        on_client!(self, |c| c.token(scope, min_life))
    }

    pub fn app_token(&self) -> Result<Token, Error> {
        on_client!(self, |c| c.app_token())
    }

    pub fn organization_token(&self, organization: &OrganizationId) -> Result<Token, Error> {
        on_client!(self, |c| c.organization_token(organization))
    }

    pub fn installation_for_organization(&self, organization: &OrganizationId) -> Result<Installation, Error> {
        on_client!(self, |c| c.installation_for_organization(organization))
    }

    pub fn send_as(&self, scope: &TokenScope, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, Error> {
        on_client!(self, |c| c.send_as(scope, request))
    }

    pub fn send_as_organization(
        &self,
        organization: &OrganizationId,
        request: Request<Vec<u8>>,
    ) -> Result<Response<Vec<u8>>, Error> {
        on_client!(self, |c| c.send_as_organization(organization, request))
    }

    pub fn get_json_as(&self, scope: &TokenScope, path_and_query: &str) -> Result<serde_json::Value, Error> {
        on_client!(self, |c| c.get_json_as::<serde_json::Value>(scope, path_and_query))
    }

    pub fn stats(&self) -> icr_app_core::Stats {
        self.with_app(|a| a.stats())
    }

    pub fn installations(&self) -> Result<Vec<Installation>, Error> {
        on_client!(self, |c| c.installations())
    }

    pub fn installations_page(&self, limit: u32, page: u32) -> Result<InstallationsPage, Error> {
        on_client!(self, |c| c.installations_page(limit, page))
    }

    pub fn installation(&self, id: &InstallationId) -> Result<Installation, Error> {
        on_client!(self, |c| c.installation(id))
    }

    pub fn create_user_organization(&self, body: &CreateUserOrganization) -> Result<CreatedUserOrganization, Error> {
        on_client!(self, |c| c.create_user_organization(body))
    }

    pub fn revoke(&self, token: &SecretString) -> Result<(), Error> {
        on_client!(self, |c| c.revoke(token))
    }

    pub fn revoke_all(&self) -> Result<usize, Error> {
        on_client!(self, |c| c.revoke_all())
    }

    pub fn send_as_installation(
        &self,
        id: &InstallationId,
        request: Request<Vec<u8>>,
    ) -> Result<Response<Vec<u8>>, Error> {
        on_client!(self, |c| c.send_as_installation(id, request))
    }

    pub fn send_as_app(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, Error> {
        on_client!(self, |c| c.send_as_app(request))
    }

    pub fn get_json(&self, id: &InstallationId, path_and_query: &str) -> Result<serde_json::Value, Error> {
        on_client!(self, |c| c.get_json::<serde_json::Value>(id, path_and_query))
    }

    /// Sends `request` as it is, through the client's transport (no credentials added).
    pub fn send_raw(&self, request: Request<Vec<u8>>) -> Result<Response<Vec<u8>>, Error> {
        match self {
            Driver::Blocking(c) => c.transport().send(request),
            Driver::Async(c, rt) => rt.block_on(c.transport().send(request)),
        }
    }

    pub fn request(
        &self,
        method: Method,
        path_and_query: &str,
        body: Option<Vec<u8>>,
    ) -> Result<Request<Vec<u8>>, Error> {
        match self {
            Driver::Blocking(c) => c.request(method, path_and_query, body),
            Driver::Async(c, _) => c.request(method, path_and_query, body),
        }
    }

    pub fn with_app<R>(&self, f: impl FnOnce(&mut App) -> R) -> R {
        match self {
            Driver::Blocking(c) => c.with_app(f),
            Driver::Async(c, _) => c.with_app(f),
        }
    }

    /// `scope`'s token state now.
    pub fn token_state(&self, scope: &TokenScope) -> TokenState {
        self.with_app(|a| a.token_state(scope, now()))
    }

    pub fn invalidate(&self, scope: &TokenScope, token: &Token) -> bool {
        match self {
            Driver::Blocking(c) => c.invalidate(scope, token),
            Driver::Async(c, _) => c.invalidate(scope, token),
        }
    }

    pub fn jwt(&self) -> Result<AppJwt, Error> {
        match self {
            Driver::Blocking(c) => c.jwt(),
            Driver::Async(c, rt) => rt.block_on(c.jwt()),
        }
    }

    /// Starts `installation_token(id)` on another thread (ureq) or as a task (reqwest).
    pub fn spawn_installation_token(&self, id: &InstallationId) -> Pending<Result<Token, Error>> {
        let id = id.clone();
        match self {
            Driver::Blocking(c) => {
                let c = c.clone();
                Pending::Thread(std::thread::spawn(move || c.installation_token(&id)))
            }
            Driver::Async(c, rt) => {
                let c = c.clone();
                Pending::Task(rt.spawn(async move { c.installation_token(&id).await }), rt.clone())
            }
        }
    }

    /// Starts `token(scope, None)` on another thread (ureq) or as a task (reqwest).
    pub fn spawn_token(&self, scope: &TokenScope) -> Pending<Result<Token, Error>> {
        let scope = scope.clone();
        match self {
            Driver::Blocking(c) => {
                let c = c.clone();
                Pending::Thread(std::thread::spawn(move || c.token(&scope, None)))
            }
            Driver::Async(c, rt) => {
                let c = c.clone();
                Pending::Task(rt.spawn(async move { c.token(&scope, None).await }), rt.clone())
            }
        }
    }

    /// `installation_token(id)`, with a panic inside it caught: by `catch_unwind` on this
    /// thread (ureq), or as the `JoinError` of a task that panicked (reqwest).
    pub fn installation_token_catching_panic(
        &self,
        id: &InstallationId,
    ) -> Result<Result<Token, Error>, Box<dyn Any + Send>> {
        match self {
            Driver::Blocking(c) => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| c.installation_token(id))),
            Driver::Async(..) => self.spawn_installation_token(id).join(),
        }
    }
}

/// Generates, for each scenario `fn name(kind: Kind)` in scope, `mod ureq { #[test] fn name() }`
/// and `mod reqwest { #[test] fn name() }` running it against each client.
#[macro_export]
macro_rules! for_both_clients {
    ($($scenario:ident),* $(,)?) => {
        mod ureq {
            $(
                #[test]
                fn $scenario() {
                    super::$scenario($crate::Kind::Ureq);
                }
            )*
        }
        mod reqwest {
            $(
                #[test]
                fn $scenario() {
                    super::$scenario($crate::Kind::Reqwest);
                }
            )*
        }
    };
}

/// For the benches: `rounds` rounds of `batch` calls of `a` and `batch` calls of `b`, alternating
/// which goes first, so that background load falls on both alike. Per round: the mean
/// microseconds of one `a`, of one `b`, and their ratio.
pub fn interleave(rounds: usize, batch: u32, mut a: impl FnMut(), mut b: impl FnMut()) -> Vec<[f64; 3]> {
    (0..rounds)
        .map(|round| {
            let mut t = [0.0; 2];
            for k in 0..2 {
                let which = (round + k) % 2;
                let started = std::time::Instant::now();
                for _ in 0..batch {
                    if which == 0 { a() } else { b() }
                }
                t[which] = started.elapsed().as_secs_f64() * 1e6 / f64::from(batch);
            }
            [t[0], t[1], t[0] / t[1]]
        })
        .collect()
}

/// The median of `values` (the upper one of an even count).
pub fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

/// `target/<profile>` of the running test binary (the parent of its `deps` folder), where cargo
/// puts the workspace's binaries, and their examples in `examples/`.
pub fn profile_dir() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    let dir = exe.parent().expect("the test binary's folder");
    if dir.ends_with("deps") {
        dir.parent().expect("target/<profile>").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// `cargo build -q -p package ARGS` in this test's profile (`--release` when it is the release
/// profile); fails the test if the build fails. A no-op when the build is up to date.
fn cargo_build(package: &str, args: &[&str]) {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut build = std::process::Command::new(cargo);
    build.args(["build", "-q", "-p", package]).args(args);
    if profile_dir().ends_with("release") {
        build.arg("--release");
    }
    let status = build.status().expect("run cargo build");
    assert!(status.success(), "cargo build -p {package} {}", args.join(" "));
}

/// Builds `package`'s example `example` (with `features`, if any) and returns its binary, so
/// that a test can run it many times without a `cargo run` each time.
pub fn build_example(package: &str, example: &str, features: Option<&str>) -> std::path::PathBuf {
    let mut args = vec!["--example", example];
    if let Some(features) = features {
        args.extend(["--features", features]);
    }
    cargo_build(package, &args);
    profile_dir()
        .join("examples")
        .join(format!("{example}{}", std::env::consts::EXE_SUFFIX))
}

/// Builds the `icr-app` CLI and returns its binary.
pub fn build_cli() -> std::path::PathBuf {
    cargo_build("icr-app-cli", &["--bin", "icr-app"]);
    profile_dir().join(format!("icr-app{}", std::env::consts::EXE_SUFFIX))
}

/// Another host: a loopback listener on a port of its own (so not the registry, by the core's
/// rule) that records the head of every request it is sent and answers each with `status`.
///
/// The answer's body is the registry's own refusal (`{"statusCode":401,"message":"Unauthorized"}`)
/// for a 401 and `{}` otherwise; with `date_ahead`, it carries a `Date` that far in the future (a
/// clock that trusted it would move), and no `Date` without.
pub struct Peer {
    url: String,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Peer {
    /// Starts the peer on a thread of its own; it serves until the test ends.
    pub fn start(status: u16, date_ahead: Option<Duration>) -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let url = serve(move |mut stream| {
            let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
            let head = read_head(&mut stream).unwrap_or_else(|partial| partial);
            record.lock().unwrap().push(String::from_utf8_lossy(&head).into_owned());
            let _ = stream.write_all(Self::answer(status, date_ahead).as_bytes());
        });
        Self { url, seen }
    }

    fn answer(status: u16, date_ahead: Option<Duration>) -> String {
        let (reason, body) = match status {
            401 => ("Unauthorized", r#"{"statusCode":401,"message":"Unauthorized"}"#),
            _ => ("X", "{}"),
        };
        let date = date_ahead
            .map(|ahead| format!("date: {}\r\n", now().plus(ahead).to_http_date()))
            .unwrap_or_default();
        format!(
            "HTTP/1.1 {status} {reason}\r\n{date}content-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
    }

    /// `http://127.0.0.1:<port>`, without a trailing slash.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The head of each request that reached the peer, in order (one per connection).
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// Listens on a loopback port of its own and passes each connection to `handle`, one after
/// another on a thread of its own, until the test ends; returns `http://127.0.0.1:<port>`.
fn serve(mut handle: impl FnMut(TcpStream) + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(stream) = stream else { return };
            handle(stream);
        }
    });
    url
}

/// Reads from `stream` up to and including the blank line that ends a request head (and
/// whatever came in the same reads); `Err` with what was read when the stream ends or fails
/// first.
fn read_head(stream: &mut TcpStream) -> Result<Vec<u8>, Vec<u8>> {
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return Err(head),
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    Ok(head)
}

/// A minimal HTTP forward proxy on loopback: `CONNECT host:port` opens a tunnel, and a request
/// in absolute form (`GET http://host:port/path`) is forwarded in origin form. It records every
/// byte clients send it, tunnels included.
pub struct RecordingProxy {
    url: String,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl RecordingProxy {
    /// Starts the proxy on a thread of its own; it serves until the test ends.
    pub fn start() -> Self {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let record = Arc::clone(&seen);
        let url = serve(move |client| {
            let record = Arc::clone(&record);
            std::thread::spawn(move || Self::forward(client, &record));
        });
        Self { url, seen }
    }

    /// `http://127.0.0.1:<port>`, to set as a client's proxy.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// Everything clients sent, as text.
    pub fn seen(&self) -> String {
        String::from_utf8_lossy(&self.seen.lock().unwrap()).into_owned()
    }

    /// Fails the test, showing what the proxy was sent, unless it was sent nothing at all.
    pub fn assert_untouched(&self) {
        let seen = self.seen();
        assert!(seen.is_empty(), "the proxy was used:\n{seen}");
    }

    /// Serves one proxy client: reads its request head, connects to the target, and passes
    /// bytes both ways, recording what the client sends.
    fn forward(mut client: TcpStream, record: &Mutex<Vec<u8>>) {
        let _ = client.set_read_timeout(Some(Duration::from_secs(10)));
        let Ok(head) = read_head(&mut client) else { return };
        record.lock().unwrap().extend_from_slice(&head);
        let text = String::from_utf8_lossy(&head).into_owned();
        let line = text.lines().next().unwrap_or_default().to_owned();
        let mut parts = line.split(' ');
        let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
        let (authority, rewritten) = if method == "CONNECT" {
            (target.to_owned(), None)
        } else {
            let rest = target.strip_prefix("http://").unwrap_or(target);
            let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
            let path = if path.is_empty() { "/" } else { path };
            let mut origin_form = format!("{method} {path} HTTP/1.1").into_bytes();
            origin_form.extend_from_slice(&head[line.len()..]);
            (authority.to_owned(), Some(origin_form))
        };
        let Ok(mut upstream) = TcpStream::connect(&authority) else {
            let _ = client.write_all(b"HTTP/1.1 502 Bad Gateway\r\ncontent-length: 0\r\n\r\n");
            return;
        };
        match rewritten {
            None => {
                let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
            }
            Some(head) => {
                let _ = upstream.write_all(&head);
            }
        }
        let (mut down_from, mut down_to) = (upstream.try_clone().unwrap(), client.try_clone().unwrap());
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut down_from, &mut down_to);
            let _ = down_to.shutdown(Shutdown::Both);
        });
        let mut buf = [0u8; 4096];
        loop {
            match client.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    record.lock().unwrap().extend_from_slice(&buf[..n]);
                    if upstream.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        let _ = upstream.shutdown(Shutdown::Both);
    }
}

/// Sends a request for the registry's own path (`GET /projects?limit=1&page=0`) as
/// `installation` with the blocking client, and expects 200: the token is still added there.
pub fn assert_registry_request_authorised(client: &icr_app_ureq::Client, installation: &InstallationId) {
    let request = client.request(Method::GET, "/projects?limit=1&page=0", None).unwrap();
    assert_eq!(
        client.send_as_installation(installation, request).unwrap().status(),
        200
    );
}

/// [`assert_registry_request_authorised`] with the async client.
pub async fn assert_registry_request_authorised_async(client: &icr_app_reqwest::Client, installation: &InstallationId) {
    let request = client.request(Method::GET, "/projects?limit=1&page=0", None).unwrap();
    assert_eq!(
        client
            .send_as_installation(installation, request)
            .await
            .unwrap()
            .status(),
        200
    );
}
