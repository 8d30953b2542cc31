//! A private CA, TLS in front of a registry, and a `CONNECT` proxy: the network of a company
//! that inspects TLS with its own CA and reaches the internet through a proxy, on loopback.

use std::collections::HashMap;
use std::io;
use std::io::Write as _;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::JoinHandle;

use base64::Engine as _;
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;

/// A certificate authority made on the spot, to issue server certificates that only a client
/// told to trust [`cert_pem`](Self::cert_pem) accepts.
///
/// ```
/// let ca = icr_app_testkit::TestCa::new();
/// assert!(ca.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
/// let (cert, key) = ca.issue(&["registry.test"]);
/// assert!(cert.contains("CERTIFICATE") && key.contains("PRIVATE KEY"));
/// ```
pub struct TestCa {
    cert_pem: String,
    issuer: Issuer<'static, KeyPair>,
}

impl std::fmt::Debug for TestCa {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TestCa").finish_non_exhaustive()
    }
}

impl Default for TestCa {
    fn default() -> Self {
        Self::new()
    }
}

impl TestCa {
    /// A new CA (an ECDSA P-256 key, valid for the usual rcgen span).
    pub fn new() -> Self {
        let key = KeyPair::generate().expect("generate the CA key");
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA parameters");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A name of its own: OpenSSL picks a CA by its name, and two CAs of one name in one
        // bundle would be mistaken for each other.
        static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let name = format!("icr-app-testkit private CA {}-{n}", std::process::id());
        params.distinguished_name.push(DnType::CommonName, name);
        let cert = params.self_signed(&key).expect("self-sign the CA");
        Self {
            cert_pem: cert.pem(),
            issuer: Issuer::new(params, key),
        }
    }

    /// The CA's certificate (PEM), what a client trusts (`ca_file`).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// A server certificate for `names` (host names or IP addresses) signed by this CA, and
    /// its private key: `(certificate PEM, key PEM)`.
    pub fn issue(&self, names: &[&str]) -> (String, String) {
        let key = KeyPair::generate().expect("generate a server key");
        let names: Vec<String> = names.iter().map(|n| (*n).to_owned()).collect();
        let params = CertificateParams::new(names).expect("server certificate parameters");
        let cert = params.signed_by(&key, &self.issuer).expect("sign a server certificate");
        (cert.pem(), key.serialize_pem())
    }
}

/// One tokio runtime on its own thread, stopped (and joined) on drop.
struct Worker {
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Drop for Worker {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Accepts connections on `listener` and runs `serve` on each until dropped.
fn spawn<F, Fut>(name: String, listener: std::net::TcpListener, serve: F) -> io::Result<Worker>
where
    F: Fn(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    let (tx, mut rx) = oneshot::channel::<()>();
    let thread = std::thread::Builder::new().name(name).spawn(move || {
        runtime.block_on(async move {
            let Ok(listener) = TcpListener::from_std(listener) else {
                return;
            };
            loop {
                tokio::select! {
                    _ = &mut rx => break,
                    accepted = listener.accept() => {
                        let Ok((stream, _)) = accepted else { continue };
                        tokio::spawn(serve(stream));
                    }
                }
            }
        });
        runtime.shutdown_background();
    })?;
    Ok(Worker {
        shutdown: Some(tx),
        thread: Some(thread),
    })
}

/// TLS in front of a plain HTTP server: accepts TLS connections on `127.0.0.1` with a
/// certificate (e.g. from a [`TestCa`]) and passes the decrypted bytes to `backend` (e.g. a
/// [`FakeRegistry`](crate::FakeRegistry)'s [`addr`](crate::FakeRegistry::addr)). Speaks
/// HTTP/1.1 only (ALPN).
///
/// ```
/// use icr_app_testkit::{FakeRegistry, TestCa, TlsFront};
///
/// let registry = FakeRegistry::start();
/// let ca = TestCa::new();
/// let (cert, key) = ca.issue(&["registry.test"]);
/// let front = TlsFront::start(registry.addr(), &cert, &key).unwrap();
/// assert!(front.addr().ip().is_loopback());
/// ```
pub struct TlsFront {
    addr: SocketAddr,
    _worker: Worker,
}

impl std::fmt::Debug for TlsFront {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsFront").field("addr", &self.addr).finish()
    }
}

impl TlsFront {
    /// Starts it on a free port of `127.0.0.1`, with the certificate chain `cert_pem` and its
    /// key `key_pem`.
    pub fn start(backend: SocketAddr, cert_pem: &str, key_pem: &str) -> io::Result<Self> {
        let invalid = |e: String| io::Error::new(io::ErrorKind::InvalidInput, e);
        let chain = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| invalid(e.to_string()))?;
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).map_err(|e| invalid(e.to_string()))?;
        let mut config =
            rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
                .with_safe_default_protocol_versions()
                .map_err(|e| invalid(e.to_string()))?
                .with_no_client_auth()
                .with_single_cert(chain, key)
                .map_err(|e| invalid(e.to_string()))?;
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let worker = spawn(format!("tls-front-{}", addr.port()), listener, move |stream| {
            let acceptor = acceptor.clone();
            async move {
                let Ok(mut tls) = acceptor.accept(stream).await else {
                    return;
                };
                let Ok(mut plain) = TcpStream::connect(backend).await else {
                    return;
                };
                let _ = tokio::io::copy_bidirectional(&mut tls, &mut plain).await;
            }
        })?;
        Ok(Self { addr, _worker: worker })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

/// What a [`ConnectProxy`] saw.
#[derive(Debug, Default)]
struct Seen {
    /// The request line of each request, e.g. `CONNECT registry.test:443 HTTP/1.1`.
    lines: Vec<String>,
    /// The first bytes each client sent into its tunnel after `CONNECT`, capped.
    tunneled: Vec<Vec<u8>>,
}

/// How much of each tunnel's client bytes a [`ConnectProxy`] keeps.
const TUNNEL_SAMPLE: usize = 64 * 1024;

/// A forward proxy on `127.0.0.1` for tests: it tunnels `CONNECT host:port` (HTTPS through a
/// proxy) and forwards absolute-form `GET http://...` requests, logs every request line it
/// sees (and keeps the first bytes of each tunnel, to check that they are encrypted), resolves
/// the names it was told ([`resolve`](ConnectProxyBuilder::resolve); others only as IP
/// addresses or `localhost`, never through DNS), and can require Basic credentials (`407`
/// without the right ones) or refuse every tunnel (`403`). It can also write what it sees to
/// files as it sees it ([`record_to`](ConnectProxyBuilder::record_to)), for tests in another
/// process or language.
///
/// ```
/// use icr_app_testkit::ConnectProxy;
///
/// let proxy = ConnectProxy::builder().basic_auth("user", "pass").start().unwrap();
/// assert!(proxy.url().starts_with("http://127.0.0.1:"));
/// assert!(proxy.url_with_credentials("user", "pass").starts_with("http://user:pass@127.0.0.1:"));
/// assert!(proxy.request_lines().is_empty());
/// ```
pub struct ConnectProxy {
    addr: SocketAddr,
    seen: Arc<Mutex<Seen>>,
    _worker: Worker,
}

impl std::fmt::Debug for ConnectProxy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectProxy").field("addr", &self.addr).finish()
    }
}

/// Builds a [`ConnectProxy`].
#[derive(Debug, Default)]
#[must_use = "call start()"]
pub struct ConnectProxyBuilder {
    hosts: HashMap<String, SocketAddr>,
    credentials: Option<String>,
    forbid: bool,
    record: Option<PathBuf>,
}

impl ConnectProxyBuilder {
    /// The proxy connects `host` (any port asked) to `addr`, as its own DNS would.
    pub fn resolve(mut self, host: &str, addr: SocketAddr) -> Self {
        self.hosts.insert(host.to_ascii_lowercase(), addr);
        self
    }

    /// Requires `Proxy-Authorization: Basic` with these credentials (`407` otherwise).
    pub fn basic_auth(mut self, user: &str, password: &str) -> Self {
        self.credentials = Some(base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}")));
        self
    }

    /// Refuses every request with `403 Forbidden` (a proxy whose rules do not allow the host).
    pub fn forbid_all(mut self) -> Self {
        self.forbid = true;
        self
    }

    /// Also writes what it sees into the directory `dir` (which must exist), each thing before
    /// the proxy answers or passes it on, so a client that got its answer finds it there: each
    /// request line appended to `dir/requests.log` (one a line, e.g. `CONNECT
    /// registry.test:443 HTTP/1.1`), and the first bytes (up to 64 KiB) the client sent into
    /// tunnel `n` (from 0, in the order they opened) to `dir/tunnel-n.bin`.
    ///
    /// ```
    /// use icr_app_testkit::ConnectProxy;
    ///
    /// let dir = std::env::temp_dir().join(format!("icr-testkit-record-doc-{}", std::process::id()));
    /// std::fs::create_dir_all(&dir).unwrap();
    /// let proxy = ConnectProxy::builder().record_to(&dir).start().unwrap();
    /// let mut stream = std::net::TcpStream::connect(proxy.addr()).unwrap();
    /// std::io::Write::write_all(&mut stream, b"CONNECT nowhere.test:443 HTTP/1.1\r\n\r\n").unwrap();
    /// let mut answer = String::new();
    /// std::io::Read::read_to_string(&mut stream, &mut answer).unwrap(); // 502: not resolved
    /// assert!(answer.starts_with("HTTP/1.1 502"));
    /// let log = std::fs::read_to_string(dir.join("requests.log")).unwrap();
    /// assert_eq!(log, "CONNECT nowhere.test:443 HTTP/1.1\n");
    /// std::fs::remove_dir_all(&dir).unwrap();
    /// ```
    pub fn record_to(mut self, dir: impl Into<PathBuf>) -> Self {
        self.record = Some(dir.into());
        self
    }

    /// Starts it on a free port of `127.0.0.1`.
    pub fn start(self) -> io::Result<ConnectProxy> {
        let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?;
        let seen = Arc::new(Mutex::new(Seen::default()));
        let rules = Arc::new(self);
        let worker = {
            let seen = seen.clone();
            spawn(format!("connect-proxy-{}", addr.port()), listener, move |stream| {
                proxy_connection(stream, rules.clone(), seen.clone())
            })?
        };
        Ok(ConnectProxy {
            addr,
            seen,
            _worker: worker,
        })
    }
}

impl ConnectProxy {
    /// A proxy builder.
    pub fn builder() -> ConnectProxyBuilder {
        ConnectProxyBuilder::default()
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:port`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// `http://user:password@127.0.0.1:port`.
    pub fn url_with_credentials(&self, user: &str, password: &str) -> String {
        format!("http://{user}:{password}@{}", self.addr)
    }

    /// Every request line seen so far, e.g. `CONNECT registry.test:443 HTTP/1.1`.
    pub fn request_lines(&self) -> Vec<String> {
        self.seen.lock().unwrap_or_else(PoisonError::into_inner).lines.clone()
    }

    /// The first bytes (up to 64 KiB) each client sent into a tunnel, one entry per tunnel.
    pub fn tunneled(&self) -> Vec<Vec<u8>> {
        self.seen
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .tunneled
            .clone()
    }

    /// Forgets what it saw.
    pub fn clear(&self) {
        *self.seen.lock().unwrap_or_else(PoisonError::into_inner) = Seen::default();
    }
}

async fn reply(stream: &mut TcpStream, status: &str, extra: &str) {
    let text = format!("HTTP/1.1 {status}\r\n{extra}content-length: 0\r\nconnection: close\r\n\r\n");
    let _ = stream.write_all(text.as_bytes()).await;
}

async fn proxy_connection(mut client: TcpStream, rules: Arc<ConnectProxyBuilder>, seen: Arc<Mutex<Seen>>) {
    // The request head.
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let rest = loop {
        let Ok(n) = client.read(&mut buf).await else { return };
        if n == 0 {
            return;
        }
        head.extend_from_slice(&buf[..n]);
        if let Some(end) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            break head.split_off(end + 4);
        }
        if head.len() > 64 * 1024 {
            return;
        }
    };
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or_default().to_owned();
    seen.lock()
        .unwrap_or_else(PoisonError::into_inner)
        .lines
        .push(line.clone());
    if let Some(dir) = &rules.record {
        append(&dir.join("requests.log"), format!("{line}\n").as_bytes());
    }
    let authorization = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("proxy-authorization"))
        .map(|(_, value)| value.trim().to_owned());
    if rules.forbid {
        return reply(&mut client, "403 Forbidden", "").await;
    }
    if let Some(expected) = &rules.credentials {
        let given = authorization
            .as_deref()
            .and_then(|v| v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic ")));
        if given != Some(expected.as_str()) {
            return reply(
                &mut client,
                "407 Proxy Authentication Required",
                "proxy-authenticate: Basic realm=\"icr-app-testkit\"\r\n",
            )
            .await;
        }
    }
    let mut parts = line.split(' ');
    let (method, target) = (parts.next().unwrap_or_default(), parts.next().unwrap_or_default());
    let connect = method.eq_ignore_ascii_case("CONNECT");
    let authority = if connect {
        target.to_owned()
    } else {
        match target.split_once("://") {
            Some((_, rest)) => rest.split('/').next().unwrap_or_default().to_owned(),
            None => return reply(&mut client, "400 Bad Request", "").await,
        }
    };
    let Some(addr) = resolve(&rules.hosts, &authority) else {
        return reply(&mut client, "502 Bad Gateway", "").await;
    };
    let Ok(mut upstream) = TcpStream::connect(addr).await else {
        return reply(&mut client, "502 Bad Gateway", "").await;
    };
    if connect {
        if client
            .write_all(b"HTTP/1.1 200 Connection Established\r\n\r\n")
            .await
            .is_err()
        {
            return;
        }
        let index = {
            let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
            seen.tunneled.push(Vec::new());
            seen.tunneled.len() - 1
        };
        let record = rules.record.as_ref().map(|dir| dir.join(format!("tunnel-{index}.bin")));
        // Kept (and recorded) before it is passed on.
        let sample = |bytes: &[u8]| {
            let mut seen = seen.lock().unwrap_or_else(PoisonError::into_inner);
            let sample = &mut seen.tunneled[index];
            let room = TUNNEL_SAMPLE.saturating_sub(sample.len()).min(bytes.len());
            sample.extend_from_slice(&bytes[..room]);
            if let Some(path) = &record {
                append(path, &bytes[..room]);
            }
        };
        sample(&rest);
        let _ = upstream.write_all(&rest).await;
        // Client to upstream, sampling; upstream to client as is.
        let (mut client_read, mut client_write) = client.into_split();
        let (mut upstream_read, mut upstream_write) = upstream.into_split();
        let up = async {
            let mut buf = [0u8; 16 * 1024];
            while let Ok(n) = client_read.read(&mut buf).await {
                if n == 0 {
                    break;
                }
                sample(&buf[..n]);
                if upstream_write.write_all(&buf[..n]).await.is_err() {
                    break;
                }
            }
            let _ = upstream_write.shutdown().await;
        };
        let down = async {
            let _ = tokio::io::copy(&mut upstream_read, &mut client_write).await;
            let _ = client_write.shutdown().await;
        };
        tokio::join!(up, down);
    } else {
        // A forward request: the whole head as it came (with its absolute-form target, which
        // the registry accepts), then both ways.
        let mut forwarded = head;
        forwarded.extend_from_slice(&rest);
        if upstream.write_all(&forwarded).await.is_err() {
            return;
        }
        let _ = tokio::io::copy_bidirectional(&mut client, &mut upstream).await;
    }
}

/// Appends `bytes` to the file at `path` (made if missing); a failure is ignored (the proxy
/// still works, and the test reading the file finds out).
fn append(path: &Path, bytes: &[u8]) {
    if let Ok(mut file) = std::fs::OpenOptions::new().create(true).append(true).open(path) {
        let _ = file.write_all(bytes);
    }
}

/// `host:port` to an address: a name the proxy was told, an IP address, or `localhost`.
fn resolve(hosts: &HashMap<String, SocketAddr>, authority: &str) -> Option<SocketAddr> {
    let (host, port) = match authority.rsplit_once(':') {
        Some((host, port)) if !host.ends_with(':') => (host, port.parse::<u16>().ok()?),
        _ => (authority, 80),
    };
    let host = host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase();
    if let Some(addr) = hosts.get(&host) {
        return Some(*addr);
    }
    if host == "localhost" {
        return Some(SocketAddr::from(([127, 0, 0, 1], port)));
    }
    host.parse::<IpAddr>().ok().map(|ip| SocketAddr::new(ip, port))
}
