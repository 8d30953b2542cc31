//! The blocking path's own connection to Redis: a socket (TCP, TLS over TCP, or a unix socket)
//! read through the redis crate's RESP parser, under a deadline for the whole call and a cap on
//! the size of one reply.
//!
//! Why not `redis::Connection`: its read and write timeouts apply to each system call, so a
//! server that sends a byte every 100 ms (or a 2 GB reply at full speed) keeps a call going for
//! as long as it likes, and the connection does not let us at its socket to stop it. Here every
//! read and write first sets the socket's timeout to the time left before the call's deadline
//! (and fails at once when none is left), so a call ends by its deadline however the bytes
//! trickle, TLS handshake included; and a reply is parsed from a reader that refuses to go
//! past [`REPLY_CAP`], so a huge reply is never read into memory. A [`Link`] is a
//! `redis::ConnectionLike`, so commands and scripts (`EVALSHA`, then `SCRIPT LOAD`) run on it
//! as on the crate's own connections.

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs as _};
#[cfg(unix)]
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::{ConnectionAddr, ConnectionInfo, RedisResult, Value};
use rustls::pki_types::{CertificateDer, ServerName};

/// The most bytes one reply may take: an entry is a few hundred bytes, the other replies a few;
/// room for the largest value the store reads ([`crate::command::MAX_VALUE`] and one byte) and
/// its framing.
pub(crate) const REPLY_CAP: usize = crate::command::MAX_VALUE + 1024;

/// A socket whose timeouts can be set.
trait Socket: Read + Write {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl Socket for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }
}

#[cfg(unix)]
impl Socket for UnixStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_read_timeout(self, timeout)
    }
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        UnixStream::set_write_timeout(self, timeout)
    }
}

/// A socket whose every read and write ends by `deadline`.
struct Timed<S> {
    socket: S,
    deadline: Instant,
}

impl<S> Timed<S> {
    /// The time left, or a timeout error when there is none (less than a millisecond).
    fn left(&self) -> io::Result<Duration> {
        left(self.deadline)
    }
}

/// A timeout error when `e` is the one a socket timeout gives (`WouldBlock` on Unix).
fn timed_out(e: io::Error) -> io::Error {
    if e.kind() == io::ErrorKind::WouldBlock {
        io::ErrorKind::TimedOut.into()
    } else {
        e
    }
}

impl<S: Socket> Read for Timed<S> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.socket.set_read_timeout(Some(self.left()?))?;
        self.socket.read(buf).map_err(timed_out)
    }
}

impl<S: Socket> Write for Timed<S> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.socket.set_write_timeout(Some(self.left()?))?;
        self.socket.write(buf).map_err(timed_out)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.socket.flush()
    }
}

/// The time until `deadline` (at least a millisecond), or a timeout error.
pub(crate) fn left(deadline: Instant) -> io::Result<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| *left >= Duration::from_millis(1))
        .ok_or_else(|| io::ErrorKind::TimedOut.into())
}

enum Stream {
    Tcp(Timed<TcpStream>),
    Tls(Box<rustls::StreamOwned<rustls::ClientConnection, Timed<TcpStream>>>),
    #[cfg(unix)]
    Unix(Timed<UnixStream>),
}

impl Stream {
    fn set_deadline(&mut self, deadline: Instant) {
        match self {
            Stream::Tcp(timed) => timed.deadline = deadline,
            Stream::Tls(tls) => tls.sock.deadline = deadline,
            #[cfg(unix)]
            Stream::Unix(timed) => timed.deadline = deadline,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(timed) => timed.read(buf),
            Stream::Tls(tls) => tls.read(buf),
            #[cfg(unix)]
            Stream::Unix(timed) => timed.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(timed) => timed.write(buf),
            Stream::Tls(tls) => tls.write(buf),
            #[cfg(unix)]
            Stream::Unix(timed) => timed.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(timed) => timed.flush(),
            Stream::Tls(tls) => tls.flush(),
            #[cfg(unix)]
            Stream::Unix(timed) => timed.flush(),
        }
    }
}

/// A reader that gives out at most `left` bytes, then fails (and says so in `over`).
struct Capped<'a, R> {
    inner: &'a mut R,
    left: usize,
    over: &'a mut bool,
}

impl<R: Read> Read for Capped<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            *self.over = true;
            return Err(io::Error::other("the reply is larger than the store takes"));
        }
        let len = buf.len().min(self.left);
        let n = self.inner.read(&mut buf[..len])?;
        self.left -= n;
        Ok(n)
    }
}

/// One blocking connection. Every command on it ends by the deadline of the call it is used
/// for ([`set_deadline`](Self::set_deadline)); a connection that failed in any way must be
/// dropped (a reply may be half read).
pub(crate) struct Link {
    stream: Stream,
    parser: redis::Parser,
    db: i64,
    /// The last reply went over [`REPLY_CAP`].
    oversized: bool,
    broken: bool,
}

/// TLS settings for `rediss://` (both paths): the roots to trust (`None`: this machine's).
#[derive(Clone, Default)]
pub(crate) struct Tls {
    config: Arc<std::sync::OnceLock<Result<Arc<rustls::ClientConfig>, String>>>,
    roots: Option<Arc<Vec<CertificateDer<'static>>>>,
}

impl Tls {
    /// Trusts only `roots`.
    pub(crate) fn with_roots(roots: Vec<CertificateDer<'static>>) -> Self {
        Self {
            config: Arc::default(),
            roots: Some(Arc::new(roots)),
        }
    }

    /// The client configuration, made on first use (loading this machine's roots takes a
    /// while) and kept; both paths use it.
    pub(crate) fn config(&self) -> RedisResult<Arc<rustls::ClientConfig>> {
        self.config
            .get_or_init(|| self.make_config())
            .clone()
            .map_err(|e| io::Error::other(e).into())
    }

    fn make_config(&self) -> Result<Arc<rustls::ClientConfig>, String> {
        let mut store = rustls::RootCertStore::empty();
        match &self.roots {
            Some(roots) => {
                for root in roots.iter() {
                    store
                        .add(root.clone())
                        .map_err(|e| format!("a root certificate: {e}"))?;
                }
            }
            None => {
                let found = rustls_native_certs::load_native_certs();
                let (added, _) = store.add_parsable_certificates(found.certs);
                if added == 0 {
                    return Err(match found.errors.first() {
                        Some(e) => format!("no root certificate on this machine ({e})"),
                        None => "no root certificate on this machine".to_owned(),
                    });
                }
            }
        }
        let provider = rustls::crypto::CryptoProvider::get_default()
            .cloned()
            .unwrap_or_else(|| Arc::new(rustls::crypto::ring::default_provider()));
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(store)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }
}

impl Link {
    /// A connection to `info`'s address by `deadline` (nothing sent yet: no `AUTH`, no
    /// `SELECT`). Only the name resolution of a host name is not bounded by the deadline.
    pub(crate) fn open(info: &ConnectionInfo, tls: &Tls, deadline: Instant) -> RedisResult<Self> {
        let stream = match info.addr() {
            ConnectionAddr::Tcp(host, port) => Stream::Tcp(Timed {
                socket: tcp(host, *port, deadline)?,
                deadline,
            }),
            ConnectionAddr::TcpTls { host, port, .. } => {
                let name = server_name(host)?;
                let connection = rustls::ClientConnection::new(tls.config()?, name).map_err(io::Error::other)?;
                let socket = Timed {
                    socket: tcp(host, *port, deadline)?,
                    deadline,
                };
                Stream::Tls(Box::new(rustls::StreamOwned::new(connection, socket)))
            }
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => Stream::Unix(Timed {
                socket: UnixStream::connect(path)?,
                deadline,
            }),
            _ => {
                return Err(io::Error::new(io::ErrorKind::Unsupported, "this kind of address is not supported").into());
            }
        };
        Ok(Self {
            stream,
            parser: redis::Parser::new(),
            db: info.redis_settings().db(),
            oversized: false,
            broken: false,
        })
    }

    /// Every command from now on ends by `deadline`.
    pub(crate) fn set_deadline(&mut self, deadline: Instant) {
        self.stream.set_deadline(deadline);
    }

    /// Whether the last reply was refused for going over [`REPLY_CAP`].
    pub(crate) fn oversized(&self) -> bool {
        self.oversized
    }

    fn send(&mut self, bytes: &[u8]) -> RedisResult<()> {
        self.oversized = false;
        let sent = self.stream.write_all(bytes).and_then(|()| self.stream.flush());
        sent.map_err(|e| self.fail(e))
    }

    fn receive(&mut self) -> RedisResult<Value> {
        let reader = Capped {
            inner: &mut self.stream,
            left: REPLY_CAP,
            over: &mut self.oversized,
        };
        let value = self.parser.parse_value(reader);
        if value.is_err() {
            self.broken = true;
        }
        value
    }

    fn fail(&mut self, e: io::Error) -> redis::RedisError {
        self.broken = true;
        e.into()
    }
}

/// `host` as the name the server's certificate must hold.
pub(crate) fn server_name(host: &str) -> io::Result<ServerName<'static>> {
    ServerName::try_from(host)
        .map(|name| name.to_owned())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))
}

/// A TCP connection to `host:port` by `deadline`, trying each of its addresses in turn.
fn tcp(host: &str, port: u16, deadline: Instant) -> io::Result<TcpStream> {
    let mut last = None;
    for addr in (host, port).to_socket_addrs()? {
        match TcpStream::connect_timeout(&addr, left(deadline)?) {
            Ok(stream) => {
                stream.set_nodelay(true)?;
                return Ok(stream);
            }
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::NotFound, "the host name has no address")))
}

impl redis::ConnectionLike for Link {
    fn req_packed_command(&mut self, cmd: &[u8]) -> RedisResult<Value> {
        self.send(cmd)?;
        self.receive()
    }

    fn req_packed_commands(&mut self, cmd: &[u8], offset: usize, count: usize) -> RedisResult<Vec<Value>> {
        self.send(cmd)?;
        let mut values = Vec::with_capacity(offset.saturating_add(count).min(64));
        for _ in 0..offset.saturating_add(count) {
            values.push(self.receive()?);
        }
        Ok(values.split_off(offset.min(values.len())))
    }

    fn get_db(&self) -> i64 {
        self.db
    }

    fn check_connection(&mut self) -> bool {
        redis::cmd("PING").query::<()>(self).is_ok()
    }

    fn is_open(&self) -> bool {
        !self.broken
    }
}
