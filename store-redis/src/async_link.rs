//! The async path's connection: the redis crate's multiplexed connection over a socket of our
//! own (TCP, TLS over TCP, or a unix socket) that refuses to read a reply past [`REPLY_CAP`].
//!
//! Why not the connection `redis::Client` opens: it reads a reply whole into memory before the
//! store sees any of it, so a server that floods a 2 GB reply has it read (at loopback speed,
//! some 400 MB) until the call's timer fires, and its socket is out of reach. Here the socket is
//! ours and the redis crate does the rest on it: connection set-up (`AUTH`, with the retry
//! without a user for Redis before 6; `SELECT`; `HELLO` for RESP3; `CLIENT SETINFO`), RESP,
//! scripts.
//!
//! The cap counts the bytes read since the last write. A connection carries one call's command
//! at a time (calls take connections from a [`Pool`](crate::pool::Pool) and use them alone), and
//! a server answers a command only once it has it whole, so what is read since a write is that
//! command's reply: one byte past the cap and the read fails, the connection with it, and the
//! call is told why ([`AsyncLink::oversized`]). Set-up sends its commands at once and
//! reads their few small replies under the same cap; bytes a server sends unasked count too.
//!
//! The connection's driver (the task that reads and writes the socket) is spawned on the
//! caller's Tokio runtime and aborted when the [`AsyncLink`] is dropped: a connection given up
//! on (a call that timed out, or failed) is closed at once, not read on in the background.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, ConnectionAddr, ConnectionInfo, RedisResult};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::task::AbortHandle;

use crate::link::{REPLY_CAP, Tls, server_name};

/// A socket the redis crate can drive.
trait Socket: AsyncRead + AsyncWrite + Unpin + Send {}

impl<S: AsyncRead + AsyncWrite + Unpin + Send> Socket for S {}

/// A socket that gives out at most [`REPLY_CAP`] bytes after each write, then fails (and says so
/// in `over`).
struct Capped {
    socket: Box<dyn Socket>,
    /// Bytes still to be read before the cap.
    left: usize,
    over: Arc<AtomicBool>,
}

impl AsyncRead for Capped {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if buf.remaining() == 0 {
            return Pin::new(&mut this.socket).poll_read(cx, buf);
        }
        // Room for one byte past the cap, which tells a reply over it from one that ends there.
        let len = buf.remaining().min(this.left.saturating_add(1));
        let mut limited = ReadBuf::new(buf.initialize_unfilled_to(len));
        ready!(Pin::new(&mut this.socket).poll_read(cx, &mut limited))?;
        let n = limited.filled().len();
        if n > this.left {
            // Seen by the call through the driver's reply channel, which orders it before.
            this.over.store(true, Ordering::Relaxed);
            return Poll::Ready(Err(io::Error::other("the reply is larger than the store takes")));
        }
        this.left -= n;
        buf.advance(n);
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Capped {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let n = ready!(Pin::new(&mut this.socket).poll_write(cx, data))?;
        if n > 0 {
            // A command went out: its reply may take the whole cap.
            this.left = REPLY_CAP;
        }
        Poll::Ready(Ok(n))
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().socket).poll_shutdown(cx)
    }
}

/// One async connection, used by one call at a time; a connection that failed in any way must
/// be dropped. Dropping it closes it (its driver task is aborted).
pub(crate) struct AsyncLink {
    connection: MultiplexedConnection,
    driver: AbortHandle,
    oversized: Arc<AtomicBool>,
}

impl Drop for AsyncLink {
    fn drop(&mut self) {
        self.driver.abort();
    }
}

impl AsyncLink {
    /// A connection to `info`'s address, set up by the redis crate (`AUTH`, `SELECT`, …) with
    /// `config`. Must be awaited within a Tokio runtime, which runs the connection's driver.
    /// Not bounded in time: the caller's timer is.
    pub(crate) async fn open(info: &ConnectionInfo, tls: &Tls, config: AsyncConnectionConfig) -> RedisResult<Self> {
        let socket: Box<dyn Socket> = match info.addr() {
            ConnectionAddr::Tcp(host, port) => Box::new(tcp(host, *port).await?),
            ConnectionAddr::TcpTls { host, port, .. } => {
                let connector = tokio_rustls::TlsConnector::from(tls.config()?);
                let name = server_name(host)?;
                Box::new(connector.connect(name, tcp(host, *port).await?).await?)
            }
            #[cfg(unix)]
            ConnectionAddr::Unix(path) => Box::new(tokio::net::UnixStream::connect(path).await?),
            _ => {
                return Err(io::Error::new(io::ErrorKind::Unsupported, "this kind of address is not supported").into());
            }
        };
        let oversized = Arc::new(AtomicBool::new(false));
        let capped = Capped {
            socket,
            left: REPLY_CAP,
            over: oversized.clone(),
        };
        let (connection, driver) =
            MultiplexedConnection::new_with_config(info.redis_settings(), capped, config).await?;
        let driver = tokio::spawn(driver).abort_handle();
        Ok(Self {
            connection,
            driver,
            oversized,
        })
    }

    /// The connection, to run commands and scripts on.
    pub(crate) fn connection(&mut self) -> &mut MultiplexedConnection {
        &mut self.connection
    }

    /// Whether a reply went over [`REPLY_CAP`] (and the connection failed for it).
    pub(crate) fn oversized(&self) -> bool {
        self.oversized.load(Ordering::Relaxed)
    }
}

/// A TCP connection to `host:port`, trying each of its addresses in turn.
async fn tcp(host: &str, port: u16) -> io::Result<TcpStream> {
    let stream = TcpStream::connect((host, port)).await?;
    stream.set_nodelay(true)?;
    Ok(stream)
}

#[cfg(test)]
mod tests {
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    use super::*;

    #[tokio::test]
    async fn a_reply_is_read_up_to_the_cap_and_the_cap_starts_over_at_each_write() {
        let (client, mut server) = tokio::io::duplex(4 * REPLY_CAP);
        let over = Arc::new(AtomicBool::new(false));
        let mut capped = Capped {
            socket: Box::new(client),
            left: REPLY_CAP,
            over: over.clone(),
        };
        let mut reply = vec![0; REPLY_CAP];
        // A reply of exactly the cap is read whole, twice: each command may have that much.
        for _ in 0..2 {
            capped.write_all(b"*1\r\n$4\r\nPING\r\n").await.unwrap();
            server.write_all(&vec![b'x'; REPLY_CAP]).await.unwrap();
            capped.read_exact(&mut reply).await.unwrap();
        }
        assert!(!over.load(Ordering::Relaxed));
        // One byte more, and the read fails, saying why.
        server.write_all(b"y").await.unwrap();
        let error = capped.read(&mut [0; 64]).await.unwrap_err();
        assert!(error.to_string().contains("larger than the store takes"), "{error}");
        assert!(over.load(Ordering::Relaxed));
    }

    #[tokio::test]
    async fn bytes_sent_unasked_count_against_the_cap() {
        let (client, mut server) = tokio::io::duplex(4 * REPLY_CAP);
        let over = Arc::new(AtomicBool::new(false));
        let mut capped = Capped {
            socket: Box::new(client),
            left: REPLY_CAP,
            over: over.clone(),
        };
        server.write_all(&vec![b'x'; 2 * REPLY_CAP]).await.unwrap();
        let mut read = 0;
        let error = loop {
            match capped.read(&mut [0; 4096]).await {
                Ok(n) => read += n,
                Err(e) => break e,
            }
        };
        // The read that goes past the cap fails whole.
        assert!(REPLY_CAP - 4096 < read && read <= REPLY_CAP, "{read}: {error}");
        assert!(over.load(Ordering::Relaxed));
    }
}
