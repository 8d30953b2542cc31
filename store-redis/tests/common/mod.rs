//! Helpers shared by the test files: each test runs on both paths of the store.
#![allow(dead_code)]

use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use icr_app_core::{Error, StoreCommand, StoreReply};
use icr_app_redis::RedisStore;

/// One way of running a command: the blocking path, or the async one on a Tokio runtime.
/// The timeout of tests that check what a command does, not how fast: generous, so that a busy
/// machine (tests run in parallel) never turns a slow answer into a failure. The timeout
/// itself is tested in outages.rs with short values.
pub const SLOW_MACHINE: Duration = Duration::from_secs(5);

pub struct Path {
    pub name: &'static str,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Path {
    pub fn run(&self, store: &RedisStore, command: &StoreCommand) -> Result<StoreReply, Error> {
        match &self.runtime {
            None => store.run_blocking(command),
            Some(runtime) => runtime.block_on(store.run(command)),
        }
    }
}

/// The blocking path, then the async path.
pub fn paths() -> [Path; 2] {
    [
        Path {
            name: "blocking",
            runtime: None,
        },
        Path {
            name: "async",
            runtime: Some(
                tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                    .unwrap(),
            ),
        },
    ]
}

/// A plain connection to `url` to look at what the store did.
pub fn raw(url: &str) -> redis::Connection {
    redis::Client::open(url).unwrap().get_connection().unwrap()
}

pub fn get(key: &str) -> StoreCommand {
    StoreCommand::Get { key: key.into() }
}

pub fn lease(key: &str, owner: &[u8], ttl: Duration) -> StoreCommand {
    StoreCommand::Lease {
        key: key.into(),
        owner: owner.to_vec(),
        ttl,
    }
}

pub fn put(key: &str, value: &[u8], ttl: Duration, lease: &str, owner: &[u8]) -> StoreCommand {
    StoreCommand::Put {
        key: key.into(),
        value: value.to_vec(),
        ttl,
        lease: lease.into(),
        owner: owner.to_vec(),
    }
}

pub fn delete(key: &str, prefix: &[u8]) -> StoreCommand {
    StoreCommand::Delete {
        key: key.into(),
        prefix: prefix.to_vec(),
    }
}

/// A server on loopback that accepts connections and never reads or answers (a hung Redis, or
/// a firewall that black-holes replies). Holds what it accepted until dropped.
pub struct SilentServer {
    pub addr: SocketAddr,
    held: Arc<Mutex<Vec<TcpStream>>>,
}

impl SilentServer {
    pub fn start() -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let held = Arc::new(Mutex::new(Vec::new()));
        let keep = held.clone();
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                keep.lock().unwrap().push(stream);
            }
        });
        Self { addr, held }
    }

    pub fn accepted(&self) -> usize {
        self.held.lock().unwrap().len()
    }
}

/// A loopback port nothing listens on (bound, then let go).
pub fn closed_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Every `tracing` event emitted on this thread while `f` runs, as `target LEVEL name=value…`
/// lines. (Run an async client on a current-thread runtime inside `f` to catch its events.)
pub fn logged<T>(f: impl FnOnce() -> T) -> (T, Vec<String>) {
    let capture = Capture::default();
    let value = tracing::subscriber::with_default(capture.clone(), f);
    let lines = capture.0.lock().unwrap().clone();
    (value, lines)
}

#[derive(Clone, Default)]
struct Capture(Arc<Mutex<Vec<String>>>);

struct Line<'a>(&'a mut String);

impl tracing::field::Visit for Line<'_> {
    fn record_debug(&mut self, field: &tracing::field::Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={:?}", field.name(), value);
    }
}

impl tracing::Subscriber for Capture {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        let mut line = format!("{} {} span", span.metadata().target(), span.metadata().level());
        span.record(&mut Line(&mut line));
        self.0.lock().unwrap().push(line);
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, values: &tracing::span::Record<'_>) {
        let mut line = String::from("span record");
        values.record(&mut Line(&mut line));
        self.0.lock().unwrap().push(line);
    }
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let mut line = format!("{} {}", event.metadata().target(), event.metadata().level());
        event.record(&mut Line(&mut line));
        self.0.lock().unwrap().push(line);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// The store-outage warnings among `lines`.
pub fn store_warnings(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|line| line.starts_with("icr_app WARN") && line.contains("shared token store"))
        .collect()
}
