//! A real `redis-server` on a free loopback port, for tests of shared token stores.
//!
//! Started as a child process (`redis-server --port N --bind 127.0.0.1 --save "" --appendonly
//! no`, nothing written to disk), waited for until it answers, and killed when dropped. Tests can
//! kill it mid-run ([`RedisServer::stop`]) and start it again on the same port
//! ([`RedisServer::restart`]), empty.
//!
//! `redis-server` must be installed: the workspace's `./run-tests` installs it when it is
//! missing. This module speaks RESP over a plain `TcpStream` (a `PING`), so the testkit does not
//! depend on any Redis client crate.

use std::fmt;
use std::io::{BufRead as _, BufReader, Write as _};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a server may take to answer after it was started.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Which `redis-server` settings a [`RedisServer`] starts with; see [`RedisServer::builder`].
#[derive(Clone, Default)]
#[must_use = "call start()"]
pub struct RedisServerBuilder {
    password: Option<String>,
    users: Vec<(String, String)>,
    tls: Option<(String, String)>,
    unix_socket: bool,
    args: Vec<String>,
}

/// Passwords and the TLS key are not printed.
impl fmt::Debug for RedisServerBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisServerBuilder")
            .field("requirepass", &self.password.is_some())
            .field("users", &self.users.iter().map(|(name, _)| name).collect::<Vec<_>>())
            .field("tls", &self.tls.is_some())
            .field("unix_socket", &self.unix_socket)
            .finish()
    }
}

impl RedisServerBuilder {
    /// `requirepass PASSWORD`: clients must `AUTH` (as the `default` user) before any command.
    pub fn requirepass(mut self, password: &str) -> Self {
        self.password = Some(password.to_owned());
        self
    }

    /// An ACL user `name` with `password`, allowed every command on every key
    /// (`user NAME on >PASSWORD ~* &* +@all`), for `redis://NAME:PASSWORD@…` URLs. Neither
    /// may hold a space.
    pub fn acl_user(mut self, name: &str, password: &str) -> Self {
        self.users.push((name.to_owned(), password.to_owned()));
        self
    }

    /// TLS only (`rediss://`): the plain port is closed and the server presents `cert_pem`
    /// (a certificate chain, PEM) with `key_pem` (its private key, PEM). Clients are not asked
    /// for certificates.
    pub fn tls(mut self, cert_pem: &str, key_pem: &str) -> Self {
        self.tls = Some((cert_pem.to_owned(), key_pem.to_owned()));
        self
    }

    /// Also listens on a unix socket, in a directory of its own (see
    /// [`RedisServer::unix_socket`]).
    pub fn unix_socket(mut self) -> Self {
        self.unix_socket = true;
        self
    }

    /// More `redis-server` arguments, as given (e.g. `["--cluster-enabled", "yes"]`).
    pub fn args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Starts the server on a free port of 127.0.0.1 and waits until it answers.
    ///
    /// # Panics
    /// If `redis-server` is not installed (run `./run-tests`, which installs it), or it does not
    /// start within 10 s (the message has the end of its log).
    pub fn start(self) -> RedisServer {
        self.start_with(free_port)
    }

    /// Starts the server on a port `port` picks.
    pub(crate) fn start_with(self, port: impl Fn() -> u16) -> RedisServer {
        let mut last_failure = String::new();
        // A free port is found by binding port 0 and letting it go; another process may take it
        // before redis-server binds it, so try a few.
        for _ in 0..5 {
            let port = port();
            let mut server = RedisServer {
                options: self.clone(),
                port,
                dir: scratch_dir(),
                child: None,
            };
            match server.launch() {
                Ok(()) => return server,
                Err(failure) => last_failure = failure,
            }
        }
        panic!("redis-server did not start: {last_failure}");
    }
}

/// A running `redis-server` on 127.0.0.1. Killed when dropped.
///
/// ```no_run
/// use icr_app_testkit::RedisServer;
///
/// let mut redis = RedisServer::start();
/// let url = redis.url(); // redis://127.0.0.1:PORT
/// # let _ = url;
/// redis.stop(); // SIGKILL: clients now get "connection refused"
/// redis.restart(); // the same port, empty
/// ```
pub struct RedisServer {
    options: RedisServerBuilder,
    port: u16,
    /// Its working directory (and the TLS files), removed on drop.
    dir: PathBuf,
    child: Option<Child>,
}

impl fmt::Debug for RedisServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisServer")
            .field("port", &self.port)
            .field("running", &self.child.is_some())
            .field("options", &self.options)
            .finish()
    }
}

impl RedisServer {
    /// Starts a server with no password and no TLS on a free port of 127.0.0.1.
    ///
    /// # Panics
    /// As [`RedisServerBuilder::start`]: if `redis-server` is not installed (run `./run-tests`,
    /// which installs it) or does not start.
    pub fn start() -> Self {
        Self::builder().start()
    }

    /// A server with a password, ACL users or TLS: `RedisServer::builder().requirepass("pw").start()`.
    pub fn builder() -> RedisServerBuilder {
        RedisServerBuilder::default()
    }

    /// `redis://127.0.0.1:PORT`, or `rediss://127.0.0.1:PORT` with TLS; never with credentials
    /// (add `:PASSWORD@` or `USER:PASSWORD@` yourself).
    pub fn url(&self) -> String {
        let scheme = if self.options.tls.is_some() { "rediss" } else { "redis" };
        format!("{scheme}://127.0.0.1:{}", self.port)
    }

    /// The port it listens on (the same after a restart).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from((Ipv4Addr::LOCALHOST, self.port))
    }

    /// The path of its unix socket, if it was started with
    /// [`unix_socket`](RedisServerBuilder::unix_socket) (`unix://` + this path is its URL).
    pub fn unix_socket(&self) -> Option<PathBuf> {
        self.options.unix_socket.then(|| self.dir.join("redis.sock"))
    }

    /// Whether it was started and not stopped since.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// Kills it with SIGKILL (no shutdown, nothing saved) and waits until it is gone: from now on
    /// connections to its port are refused. Does nothing if it is stopped already.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Stops it if it runs, then starts it again on the same port, with no data, and waits until
    /// it answers.
    ///
    /// # Panics
    /// If it does not start again (the port was taken meanwhile, say).
    pub fn restart(&mut self) {
        self.stop();
        if let Err(failure) = self.launch() {
            panic!("redis-server did not restart on port {}: {failure}", self.port);
        }
    }

    fn log_path(&self) -> PathBuf {
        self.dir.join(format!("redis-{}.log", self.port))
    }

    /// Spawns redis-server on `self.port` and waits until it answers.
    fn launch(&mut self) -> Result<(), String> {
        let log = self.log_path();
        let mut command = Command::new("redis-server");
        command
            .args([
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--daemonize",
                "no",
            ])
            .arg("--dir")
            .arg(&self.dir)
            .arg("--logfile")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        let port = self.port.to_string();
        match &self.options.tls {
            None => {
                command.args(["--port", &port]);
            }
            Some((cert, key)) => {
                let cert_path = write_file(&self.dir, "server.crt", cert)?;
                let key_path = write_file(&self.dir, "server.key", key)?;
                command
                    .args(["--port", "0", "--tls-port", &port, "--tls-auth-clients", "no"])
                    .arg("--tls-cert-file")
                    .arg(cert_path)
                    .arg("--tls-key-file")
                    .arg(key_path);
            }
        }
        if let Some(socket) = self.unix_socket() {
            command
                .arg("--unixsocket")
                .arg(socket)
                .args(["--unixsocketperm", "700"]);
        }
        if let Some(password) = &self.options.password {
            command.args(["--requirepass", password]);
        }
        command.args(&self.options.args);
        for (name, password) in &self.options.users {
            // One argument per word: redis-server quotes an argument that holds a space.
            command
                .args(["--user", name, "on"])
                .arg(format!(">{password}"))
                .args(["~*", "&*", "+@all"]);
        }
        let child = match command.spawn() {
            Ok(child) => child,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => panic!(
                "redis-server is not installed (or not on PATH): run ./run-tests, which installs it \
                 (apt-get install -y redis-server), or install it yourself"
            ),
            Err(e) => return Err(format!("could not run redis-server: {e}")),
        };
        self.child = Some(child);
        let ready = self.wait_until_ready();
        if ready.is_err() {
            self.stop();
        }
        ready
    }

    fn wait_until_ready(&mut self) -> Result<(), String> {
        let deadline = Instant::now() + START_TIMEOUT;
        let tls = self.options.tls.is_some();
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                return Err(format!("it exited ({status}); its log ends:\n{}", self.log_tail()));
            }
            // Plain: any RESP reply to PING (`+PONG`, or `-NOAUTH` with a password) means it
            // serves. TLS: it accepts connections only once it serves, and its log says so.
            let answered = if tls {
                TcpStream::connect_timeout(&self.addr(), Duration::from_millis(200)).is_ok()
                    && std::fs::read_to_string(self.log_path())
                        .is_ok_and(|log| log.contains("Ready to accept connections"))
            } else {
                ping(self.addr())
            };
            if answered {
                return Ok(());
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "it did not answer within {} s; its log ends:\n{}",
                    START_TIMEOUT.as_secs(),
                    self.log_tail()
                ));
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.log_path()).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(10)..].join("\n")
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Sends `PING` and reads one RESP line back.
pub(crate) fn ping(addr: SocketAddr) -> bool {
    let Ok(mut stream) = TcpStream::connect_timeout(&addr, Duration::from_millis(200)) else {
        return false;
    };
    let _ = stream.set_read_timeout(Some(Duration::from_millis(500)));
    if stream.write_all(b"*1\r\n$4\r\nPING\r\n").is_err() {
        return false;
    }
    let mut line = String::new();
    BufReader::new(stream).read_line(&mut line).is_ok() && (line.starts_with('+') || line.starts_with('-'))
}

pub(crate) fn free_port() -> u16 {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind a loopback port to find a free one for redis-server")
}

pub(crate) fn scratch_dir() -> PathBuf {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let dir = std::env::temp_dir().join(format!(
        "icr-app-testkit-redis-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

fn write_file(dir: &Path, name: &str, contents: &str) -> Result<PathBuf, String> {
    let path = dir.join(name);
    std::fs::write(&path, contents).map_err(|e| format!("write {}: {e}", path.display()))?;
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read as _;

    /// Sends one command (RESP array of bulk strings) and returns the first reply line.
    fn command(addr: SocketAddr, args: &[&str]) -> std::io::Result<String> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        let mut out = format!("*{}\r\n", args.len());
        for a in args {
            out.push_str(&format!("${}\r\n{a}\r\n", a.len()));
        }
        stream.write_all(out.as_bytes())?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line)?;
        Ok(line.trim_end().to_owned())
    }

    #[test]
    fn starts_answers_stops_and_restarts_empty_on_the_same_port() {
        let mut redis = RedisServer::start();
        assert!(redis.url().starts_with("redis://127.0.0.1:"));
        assert_eq!(command(redis.addr(), &["PING"]).unwrap(), "+PONG");
        assert_eq!(command(redis.addr(), &["SET", "k", "v"]).unwrap(), "+OK");
        let port = redis.port();

        redis.stop();
        assert!(!redis.is_running());
        let refused = TcpStream::connect(redis.addr()).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);

        redis.restart();
        assert_eq!(redis.port(), port);
        assert_eq!(command(redis.addr(), &["GET", "k"]).unwrap(), "$-1", "nothing survives");
    }

    #[test]
    fn a_password_is_required_and_acl_users_log_in() {
        let redis = RedisServer::builder()
            .requirepass("s3cret pass")
            .acl_user("alice", "wonder")
            .start();
        assert!(command(redis.addr(), &["GET", "k"]).unwrap().starts_with("-NOAUTH"));
        let mut stream = TcpStream::connect(redis.addr()).unwrap();
        stream
            .write_all(b"*2\r\n$4\r\nAUTH\r\n$11\r\ns3cret pass\r\n*3\r\n$4\r\nAUTH\r\n$5\r\nalice\r\n$6\r\nwonder\r\n")
            .unwrap();
        stream.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
        let mut replies = [0; 10];
        stream.read_exact(&mut replies).unwrap();
        assert_eq!(&replies, b"+OK\r\n+OK\r\n");
        assert!(!format!("{redis:?}").contains("s3cret"));
        assert!(!format!("{redis:?}").contains("wonder"));
    }

    #[test]
    fn dropping_it_kills_it() {
        let redis = RedisServer::start();
        let addr = redis.addr();
        let dir = redis.dir.clone();
        drop(redis);
        assert!(TcpStream::connect(addr).is_err());
        assert!(!dir.exists());
    }
}
