//! A Redis that misbehaves: replies trickled a byte at a time or flooded, huge values planted at
//! an entry, leases planted without a TTL. Every call ends within the store's timeout, no reply
//! over the store's cap is taken, and the clients never fail for it (they mint alone).
//!
//! The misbehaving servers are real RESP servers on loopback ([`HostileServer`]): they answer
//! connection set-up (`AUTH`, `SELECT`, `CLIENT`, `PING`, `HELLO`, `SCRIPT`) as Redis does, then
//! misbehave on the store's commands.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, mpsc};
use std::time::{Duration, Instant};

use common::{Path, SLOW_MACHINE, delete, get, lease, logged, paths, put, raw, store_warnings};
use icr_app_core::{App, AppKey, Error, InstallationId, StoreCommand, TransportErrorKind};
use icr_app_redis::RedisStore;
use icr_app_testkit::{Demo, FakeRegistry, RedisServer};
use redis::Commands as _;

/// What a [`HostileServer`] does once a connection is set up.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Misbehaviour {
    /// Answers the store's command with a 2 GB bulk string's header, then one byte every
    /// 20 ms: no single read ever waits long, the reply never ends.
    TrickleReply,
    /// Answers `AUTH` with a status line trickled a byte every 20 ms that never ends.
    TrickleHandshake,
    /// Answers the store's command with a 2 GB bulk string, as fast as the socket takes it.
    FloodReply,
}

/// A RESP server on loopback that misbehaves as told. Its threads end when the client closes.
struct HostileServer {
    addr: SocketAddr,
    /// Bytes of misbehaving replies the kernel took from it, all connections together.
    sent: Arc<AtomicU64>,
    /// Connections still open (their thread still serving).
    open: Arc<AtomicUsize>,
}

/// Counts a connection open until dropped.
struct Open(Arc<AtomicUsize>);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl HostileServer {
    fn start(misbehaviour: Misbehaviour) -> Self {
        let listener = listener();
        let addr = listener.local_addr().unwrap();
        let sent = Arc::new(AtomicU64::new(0));
        let open = Arc::new(AtomicUsize::new(0));
        let (counter, connections) = (sent.clone(), open.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                connections.fetch_add(1, Ordering::Relaxed);
                let (counter, open) = (counter.clone(), Open(connections.clone()));
                std::thread::spawn(move || {
                    serve(stream, misbehaviour, &counter);
                    drop(open);
                });
            }
        });
        Self { addr, sent, open }
    }

    /// Waits until the clients have closed every connection: a connection given up on is
    /// closed, not kept with half a reply in it (nor read on for nothing). The server notices
    /// at its next write.
    fn assert_all_closed(&self) {
        let started = Instant::now();
        while self.open.load(Ordering::Relaxed) > 0 {
            assert!(
                started.elapsed() < Duration::from_secs(2),
                "{} connections still open",
                self.open.load(Ordering::Relaxed)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// A URL with a password and a database, so that set-up sends `AUTH` and `SELECT`.
    fn url(&self) -> String {
        format!("redis://:hunter2@{}/1", self.addr)
    }

    fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }
}

/// A listener on loopback whose connections have a small send buffer (16 KiB, which Linux
/// doubles), fixed rather than grown by the kernel up to megabytes: what a flood gets out is
/// then what the client read, give or take its own receive buffer, not what the kernel buffered.
fn listener() -> TcpListener {
    // Tokio's socket builder sets the size (std's cannot); accepted connections inherit it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .unwrap();
    let _entered = runtime.enter();
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(16 << 10).unwrap();
    socket.bind(SocketAddr::from(([127, 0, 0, 1], 0))).unwrap();
    let listener = socket.listen(64).unwrap().into_std().unwrap();
    listener.set_nonblocking(false).unwrap();
    listener
}

/// One connection: reads commands, answers set-up, misbehaves on the rest.
fn serve(stream: TcpStream, misbehaviour: Misbehaviour, sent: &AtomicU64) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    while let Some(command) = read_command(&mut reader) {
        let name = command.first().map(|n| n.to_ascii_uppercase()).unwrap_or_default();
        let answered = match name.as_slice() {
            b"AUTH" if misbehaviour == Misbehaviour::TrickleHandshake => {
                trickle(&mut writer, b"+", sent);
                return;
            }
            b"AUTH" | b"SELECT" | b"CLIENT" => writer.write_all(b"+OK\r\n"),
            b"PING" => writer.write_all(b"+PONG\r\n"),
            b"HELLO" => writer.write_all(b"-ERR unknown command 'HELLO'\r\n"),
            b"SCRIPT" => writer.write_all(b"$40\r\n0000000000000000000000000000000000000000\r\n"),
            _ => {
                match misbehaviour {
                    Misbehaviour::FloodReply => flood(&mut writer, sent),
                    _ => trickle(&mut writer, b"$2000000000\r\n", sent),
                }
                return;
            }
        };
        if answered.is_err() {
            return;
        }
    }
}

/// A RESP command (an array of bulk strings), or `None` at the end of the stream.
fn read_command(reader: &mut impl BufRead) -> Option<Vec<Vec<u8>>> {
    let mut line = String::new();
    reader.read_line(&mut line).ok()?;
    let count: usize = line.trim().strip_prefix('*')?.parse().ok()?;
    (0..count)
        .map(|_| {
            let mut line = String::new();
            reader.read_line(&mut line).ok()?;
            let len: usize = line.trim().strip_prefix('$')?.parse().ok()?;
            let mut arg = vec![0; len + 2];
            reader.read_exact(&mut arg).ok()?;
            arg.truncate(len);
            Some(arg)
        })
        .collect()
}

/// Writes `head`, then one byte every 20 ms until the client goes.
fn trickle(writer: &mut TcpStream, head: &[u8], sent: &AtomicU64) {
    if writer.write_all(head).is_err() {
        return;
    }
    while writer.write_all(b"O").is_ok() {
        sent.fetch_add(1, Ordering::Relaxed);
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Announces 2 GB and writes it as fast as it goes, until the client goes.
fn flood(writer: &mut TcpStream, sent: &AtomicU64) {
    if writer.write_all(b"$2000000000\r\n").is_err() {
        return;
    }
    let chunk = vec![b'x'; 4 << 10];
    let mut left: u64 = 2_000_000_000;
    while left > 0 {
        let n = usize::try_from(left.min(chunk.len() as u64)).unwrap();
        if writer.write_all(&chunk[..n]).is_err() {
            return;
        }
        sent.fetch_add(n as u64, Ordering::Relaxed);
        left -= n as u64;
    }
}

/// Runs `call` on another thread; `None` if it has not returned within `limit` (the thread is
/// left behind: a hung call must fail the test, not hang it).
fn within<T: Send + 'static>(limit: Duration, call: impl FnOnce() -> T + Send + 'static) -> Option<(T, Duration)> {
    let (done, result) = mpsc::channel();
    std::thread::spawn(move || {
        let started = Instant::now();
        let value = call();
        let _ = done.send((value, started.elapsed()));
    });
    result.recv_timeout(limit).ok()
}

fn kind(error: &Error) -> TransportErrorKind {
    match error {
        Error::Store { kind, .. } => *kind,
        other => panic!("not a store error: {other:?}"),
    }
}

/// Every store command, each on a key of its own.
fn every_command() -> [StoreCommand; 4] {
    [
        get("entry"),
        lease("entry:lease", b"owner", Duration::from_secs(15)),
        put("entry", b"sealed", Duration::from_secs(60), "entry:lease", b"owner"),
        delete("entry", b"sealed"),
    ]
}

/// Each command on each path, twice on one store: the call fails with a timeout, within the
/// timeout and a generous second.
fn assert_every_call_times_out(server: &HostileServer, timeout: Duration) {
    let limit = timeout + Duration::from_secs(1);
    for path in paths().map(Arc::new) {
        for command in every_command() {
            let store = Arc::new(RedisStore::connect(&server.url()).unwrap().timeout(timeout));
            for attempt in 0..2 {
                let (store, path2, command2) = (store.clone(), path.clone(), command.clone());
                let Some((result, took)) = within(limit, move || path2.run(&store, &command2)) else {
                    panic!(
                        "{} {command:?} attempt {attempt}: still running after {limit:?}",
                        path.name
                    );
                };
                let error = result.expect_err("a hostile server's reply is never taken");
                assert_eq!(
                    kind(&error),
                    TransportErrorKind::Timeout,
                    "{} {command:?}: {error}",
                    path.name
                );
                assert!(took < limit, "{} {command:?}: {took:?}", path.name);
                assert!(!error.to_string().contains("hunter2"), "{error}");
                // While the store lives: the connection given up on is closed, not kept.
                server.assert_all_closed();
            }
        }
    }
}

#[test]
fn a_reply_trickled_a_byte_at_a_time_ends_within_the_timeout() {
    let server = HostileServer::start(Misbehaviour::TrickleReply);
    assert_every_call_times_out(&server, Duration::from_millis(300));
    assert!(server.sent() > 0, "the server did trickle");
}

#[test]
fn a_handshake_trickled_a_byte_at_a_time_ends_within_the_timeout() {
    let server = HostileServer::start(Misbehaviour::TrickleHandshake);
    assert_every_call_times_out(&server, Duration::from_millis(300));
    assert!(server.sent() > 0, "the server did trickle");
}

/// What a flooding server may get out before the store refuses its reply: the 64 KiB cap, and
/// what the kernel buffers on both ends of a loopback connection (some hundreds of KiB).
const FLOOD_OUT_AT_MOST: u64 = 1 << 20;

#[test]
fn a_flooded_2_gb_reply_is_refused_at_the_cap_without_being_read() {
    let server = HostileServer::start(Misbehaviour::FloodReply);
    let timeout = Duration::from_millis(300);
    let limit = timeout + Duration::from_secs(1);
    for path in paths().map(Arc::new) {
        let before = server.sent();
        let store = Arc::new(RedisStore::connect(&server.url()).unwrap().timeout(timeout));
        let path2 = path.clone();
        let Some((result, took)) = within(limit, move || path2.run(&store, &get("entry"))) else {
            panic!("{}: still running after {limit:?}", path.name);
        };
        let error = result.expect_err("a 2 GB reply is never taken");
        // The store (and with it any idle connection) is gone: the server has written its last.
        server.assert_all_closed();
        let out = server.sent() - before;
        eprintln!(
            "{}: gave up after {took:?}, the server got {} KiB out ({error})",
            path.name,
            out / 1024
        );
        assert!(took < limit, "{}: {took:?}", path.name);
        // Refused at the cap, not read on until the timeout (hundreds of MB on loopback).
        assert!(
            out < FLOOD_OUT_AT_MOST,
            "{}: the server got {out} bytes out: the reply was read past the cap",
            path.name
        );
        assert!(error.to_string().contains("64 KiB"), "{}: {error}", path.name);
    }
}

/// `INFO stats`' `total_net_output_bytes`: what the server has sent to all its clients.
fn bytes_sent(connection: &mut redis::Connection) -> u64 {
    let info: String = redis::cmd("INFO").arg("stats").query(connection).unwrap();
    info.lines()
        .find_map(|line| line.strip_prefix("total_net_output_bytes:"))
        .unwrap()
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn a_huge_value_at_an_entry_is_refused_without_redis_sending_it() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url()).unwrap().timeout(SLOW_MACHINE);
    let mut raw = raw(&redis.url());
    let huge = vec![b'v'; 8 << 20];
    for path in paths() {
        let entry = format!("{}:entry", path.name);
        let () = raw.set(&entry, &huge[..]).unwrap();
        let before = bytes_sent(&mut raw);
        let error = path.run(&store, &get(&entry)).unwrap_err();
        let sent = bytes_sent(&mut raw) - before;
        assert!(sent < 128 << 10, "{}: Redis sent {sent} bytes", path.name);
        let message = error.to_string();
        assert!(message.contains("64 KiB"), "{}: {message}", path.name);
        assert!(!message.contains("vvvv"), "{}: {message}", path.name);
        // The store goes on working.
        path.run(&store, &put(&entry, b"sealed", Duration::from_secs(60), "l", b"o"))
            .unwrap();
        assert_eq!(
            path.run(&store, &get(&entry)).unwrap(),
            icr_app_core::StoreReply::Value(Some(b"sealed".to_vec()))
        );
    }
}

#[test]
fn a_value_of_exactly_the_cap_is_read_and_one_byte_more_is_refused() {
    let redis = RedisServer::start();
    let store = RedisStore::connect(&redis.url()).unwrap().timeout(SLOW_MACHINE);
    let mut raw = raw(&redis.url());
    let cap = 64 << 10;
    for path in paths() {
        let entry = format!("{}:entry", path.name);
        let () = raw.set(&entry, vec![7u8; cap]).unwrap();
        assert_eq!(
            path.run(&store, &get(&entry)).unwrap(),
            icr_app_core::StoreReply::Value(Some(vec![7u8; cap])),
            "{}",
            path.name
        );
        let () = raw.set(&entry, vec![7u8; cap + 1]).unwrap();
        assert!(path.run(&store, &get(&entry)).is_err(), "{}", path.name);
    }
}

fn app(demo: &Demo) -> App {
    App::builder(demo.app_id.clone(), AppKey::from_pem(demo.private_key_pem).unwrap())
        .base_url(demo.registry.base_url())
        .build()
        .unwrap()
}

/// The names of the keys in `connection`'s database.
fn keys(connection: &mut redis::Connection) -> Vec<String> {
    connection.keys("*").unwrap()
}

/// The entry of the demo's first installation in `redis`, found by minting its token once with
/// a client on `path` (the entry's name is the core's business).
fn entry_name(demo: &Demo, redis: &RedisServer, path: &Path) -> String {
    let installation = InstallationId::new(demo.installation_ids[0].clone()).unwrap();
    let mut raw = raw(&redis.url());
    let () = redis::cmd("FLUSHDB").query(&mut raw).unwrap();
    blocking_or_async_token(demo, redis, path, &installation, Duration::from_secs(15));
    let names = keys(&mut raw);
    assert_eq!(names.len(), 1, "{names:?}");
    names[0].clone()
}

/// A fresh client on `path` (cold: nothing cached) gets `installation`'s token.
fn blocking_or_async_token(
    demo: &Demo,
    redis: &RedisServer,
    path: &Path,
    installation: &InstallationId,
    lease_ttl: Duration,
) {
    let store = || {
        RedisStore::connect(&redis.url())
            .unwrap()
            .timeout(SLOW_MACHINE)
            .lease_ttl(lease_ttl)
    };
    if path.name == "blocking" {
        let client = icr_app_ureq::Client::builder(app(demo)).store(store()).build().unwrap();
        client.installation_token(installation).unwrap();
    } else {
        // On this thread, so that `logged` sees what the client logs.
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let client = icr_app_reqwest::Client::builder(app(demo))
                .store(store())
                .build()
                .unwrap();
            client.installation_token(installation).await.unwrap();
        });
    }
}

#[test]
fn a_lease_planted_without_a_ttl_is_not_waited_on_longer_than_a_lease_lasts() {
    let demo = FakeRegistry::demo();
    let redis = RedisServer::start();
    let installation = InstallationId::new(demo.installation_ids[0].clone()).unwrap();
    let mut raw = raw(&redis.url());
    let lease_ttl = Duration::from_secs(2);
    for path in paths() {
        let entry = entry_name(&demo, &redis, &path);
        // Another writer's lease, with no expiry, and no entry: a cold call finds it held.
        let () = raw.del(&entry).unwrap();
        let () = raw.set(format!("{entry}:lease"), "someone").unwrap();
        let mints = demo.registry.mint_count(installation.as_str());
        let started = Instant::now();
        blocking_or_async_token(&demo, &redis, &path, &installation, lease_ttl);
        let took = started.elapsed();
        assert!(
            took < lease_ttl + Duration::from_secs(1),
            "{}: waited {took:?} on a lease of {lease_ttl:?}",
            path.name
        );
        assert_eq!(
            demo.registry.mint_count(installation.as_str()) - mints,
            1,
            "{}: one mint",
            path.name
        );
    }
}

#[test]
fn a_huge_planted_entry_costs_the_clients_no_error() {
    let demo = FakeRegistry::demo();
    let redis = RedisServer::start();
    let installation = InstallationId::new(demo.installation_ids[0].clone()).unwrap();
    let mut raw = raw(&redis.url());
    for path in paths() {
        let entry = entry_name(&demo, &redis, &path);
        let () = raw.set(&entry, vec![b'v'; 8 << 20]).unwrap();
        let mints = demo.registry.mint_count(installation.as_str());
        let started = Instant::now();
        let ((), lines) =
            logged(|| blocking_or_async_token(&demo, &redis, &path, &installation, Duration::from_secs(15)));
        assert!(started.elapsed() < Duration::from_secs(2), "{}", path.name);
        assert_eq!(
            demo.registry.mint_count(installation.as_str()) - mints,
            1,
            "{}",
            path.name
        );
        // The oddity is told once, without the value.
        let warnings = store_warnings(&lines);
        assert_eq!(warnings.len(), 1, "{}: {lines:#?}", path.name);
        assert!(warnings[0].contains("64 KiB"), "{}: {}", path.name, warnings[0]);
        assert!(
            lines.iter().all(|line| !line.contains("vvvv")),
            "{}: {lines:#?}",
            path.name
        );
    }
}
