//! # icr-app-redis
//!
//! A Redis shared token store for the ICR App SDK: give one [`RedisStore`] to each process's
//! client, and the processes of a fleet mint one token per installation between them.
//!
//! ```
//! use icr_app_core::{App, AppKey, InstallationId};
//! use icr_app_redis::RedisStore;
//! use icr_app_testkit::{FakeRegistry, RedisServer};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let demo = FakeRegistry::demo();
//! let redis = RedisServer::start(); // a real redis-server on a free loopback port
//! let app = || App::builder(demo.app_id.clone(), AppKey::from_pem(demo.private_key_pem)?)
//!     .base_url(demo.registry.base_url())
//!     .build();
//!
//! // Two processes of a fleet, say: each its own client and cache, one Redis between them.
//! // In production the URL is yours, e.g. "rediss://:password@redis.internal:6380/0".
//! let web = icr_app_ureq::Client::builder(app()?).store(RedisStore::connect(&redis.url())?).build()?;
//! let worker = icr_app_ureq::Client::builder(app()?).store(RedisStore::connect(&redis.url())?).build()?;
//!
//! let installation = InstallationId::new(demo.installation_ids[0].clone())?;
//! let minted = web.installation_token(&installation)?;
//! let shared = worker.installation_token(&installation)?; // read from Redis, not minted
//! assert_eq!(minted.secret().expose(), shared.secret().expose());
//! assert_eq!(demo.registry.mint_count(&demo.installation_ids[0]), 1);
//! # Ok(())
//! # }
//! ```
//!
//! The store only runs the commands the SDK's core decides on (`GET` the entry; take a lease
//! with `SET NX PX`; put the sealed token and release the lease in one script; compare-and-delete
//! a refused or revoked token); see [`StoreCommand`]. Tokens are sealed (AES-256-GCM) before
//! they reach Redis, and every entry expires with its token.
//!
//! **Redis is never a single point of failure.** [`RedisStore::connect`] only parses the URL:
//! nothing is dialled until the first call, so a Redis that is down when the process starts does
//! not stop it. Every call (connecting included) gives up after the [timeout](RedisStore::timeout)
//! (300 ms by default), however slowly the server sends, and a failed call drops its connection,
//! so the next one reconnects; the client then mints on its own for
//! [`retry_after_failure`](RedisStore::retry_after_failure) and logs one warning per outage.
//! An entry is a few hundred bytes: a value over 64 KiB at an entry is not read (Redis is asked
//! for no more than that), nor is any reply over that size from a server that sends one anyway
//! (the read stops at the cap, on both paths); either fails the call the same way. A lease
//! someone set without a TTL lapses after [`lease_ttl`](RedisStore::lease_ttl) like any other.
//!
//! URLs are those of the [`redis`](https://docs.rs/redis) crate: `redis://[[user]:password@]host[:port][/db]`,
//! `rediss://…` for TLS (rustls, with this machine's root certificates, or the CA given to
//! [`tls_root_certificates`](RedisStore::tls_root_certificates)), and
//! `unix:///path/to/redis.sock[?db=N&user=U&pass=P]`. Percent-encode `@`, `:` and `/` in a
//! password. No message, log line or `Debug` output shows the password: the URL is shown with
//! `***` in its place (in the user's place for a user without a password, as in
//! `redis://PASSWORD@host`).
//!
//! **Redis Cluster and Sentinel.** `redis+cluster://[user:password@]host:port[,host:port...]`
//! (`rediss+cluster://` for TLS) names a cluster by its seed nodes; the redis crate's cluster
//! clients (blocking and async) follow `MOVED` and `ASK`, learn the slots again after a failover
//! and load the scripts on every primary. Every key the SDK names carries its scope's hash tag
//! (`…:{installation:ID}` and `…:{installation:ID}:lease`), so each script touches one slot. On
//! a cluster a reply is read by the crate's own connections: each connect, read and write is
//! bounded by the timeout (the async path's whole call too), but a reply is not capped in size.
//! `redis+sentinel://[user:password@]host:port[,host:port...]/MASTER_NAME[/DB]`
//! (`rediss+sentinel://`) names the sentinels, asked in turn on the store's own connections
//! (within the call's deadline) for the primary called `MASTER_NAME`, which is checked with
//! `ROLE`; the answer is kept until a call fails (or the server answers `READONLY`), then the
//! sentinels are asked again: after a failover, the next call finds the new primary. A host
//! without a port takes 6379 (cluster) or 26379 (sentinel).
//!
//! ```
//! use icr_app_redis::RedisStore;
//!
//! let cluster = RedisStore::connect("redis+cluster://:s3cret@10.0.0.1:7000,10.0.0.2:7000")?;
//! assert_eq!(cluster.url(), "redis+cluster://:***@10.0.0.1:7000,10.0.0.2:7000");
//! let sentinel = RedisStore::connect("rediss+sentinel://app:s3cret@10.0.0.1:26379,10.0.0.2/primary/2")?;
//! assert_eq!(sentinel.url(), "rediss+sentinel://app:***@10.0.0.1:26379,10.0.0.2/primary/2");
//! # Ok::<(), icr_app_core::Error>(())
//! ```
//!
//! Features: `ureq` (on by default) implements the blocking
//! [`SharedStore`](https://docs.rs/icr-app-driver/latest/icr_app_driver/trait.SharedStore.html)
//! (the blocking client's, `icr_app_ureq::SharedStore`); `reqwest` (on by default) the async
//! [`AsyncSharedStore`](https://docs.rs/icr-app-driver/latest/icr_app_driver/trait.AsyncSharedStore.html)
//! (the async client's, `icr_app_reqwest::SharedStore`), and brings `tokio`, which alone gives the
//! async [`RedisStore::run`]. Both traits are `icr-app-driver`'s: neither feature pulls in an HTTP
//! client. With `default-features = false, features = ["ureq"]` nothing async is compiled and
//! Tokio is not pulled in.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

#[cfg(feature = "tokio")]
mod async_link;
mod blocking;
mod cluster;
mod command;
mod error;
mod link;
#[cfg(feature = "tokio")]
mod nonblocking;
mod pool;
mod sentinel;
mod target;

use std::fmt;
use std::time::Duration;

pub use icr_app_core::{Error, StoreCommand, StoreReply, StoreSettings};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject as _;

use crate::command::Request;
use crate::error::{Failure, Phase};
use crate::target::{Sentinels, Target, Topology};

/// The default [timeout](RedisStore::timeout) of every call: 300 ms.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_millis(300);

/// A token store on one Redis (or Valkey, or any Redis-compatible server), a Redis Cluster, or
/// the primary sentinels name, shared by every process whose client is built with it.
///
/// Cheap to make: [`connect`](Self::connect) does not connect. Safe to share between threads
/// and tasks: blocking calls ([`run_blocking`](Self::run_blocking)) and async calls
/// ([`run`](Self::run)) each keep a few idle connections, each used by one call at a time.
pub struct RedisStore {
    mode: Mode,
    target: Target,
    timeout: Duration,
    settings: StoreSettings,
    tls_roots: bool,
    /// The CA certificates given (PEM), for the cluster client.
    tls_pem: Option<Vec<u8>>,
    /// Both paths' TLS settings (`client` only parses the URL).
    tls: link::Tls,
    blocking: blocking::Pool,
    #[cfg(feature = "tokio")]
    nonblocking: nonblocking::Pool,
}

/// What the store connects to.
enum Mode {
    /// One server.
    Single(redis::Client),
    /// A Redis Cluster, through the redis crate's cluster clients.
    Cluster(cluster::Cluster),
    /// The primary the sentinels name (the last answer kept until a call fails).
    Sentinel {
        sentinels: Sentinels,
        primary: sentinel::Primary,
    },
}

/// The URL with its password replaced by `***`, and the settings.
impl fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RedisStore")
            .field("url", &self.target.shown)
            .field("timeout", &self.timeout)
            .field("lease_ttl", &self.settings.lease_ttl)
            .field("retry_after_failure", &self.settings.retry_after_failure)
            .field("tls_root_certificates", &self.tls_roots)
            .finish_non_exhaustive()
    }
}

impl RedisStore {
    /// A store on the Redis at `url`. Parses the URL and does nothing else: the first call
    /// connects, so a Redis that is down now does not fail the client.
    ///
    /// ```
    /// use std::time::Duration;
    /// use icr_app_redis::RedisStore;
    ///
    /// let store = RedisStore::connect("redis://:s3cret@127.0.0.1:6379/2")?
    ///     .timeout(Duration::from_millis(200))
    ///     .lease_ttl(Duration::from_secs(10));
    /// assert_eq!(
    ///     format!("{store:?}"),
    ///     "RedisStore { url: \"redis://:***@127.0.0.1:6379/2\", timeout: 200ms, lease_ttl: 10s, \
    ///      retry_after_failure: 5s, tls_root_certificates: false, .. }"
    /// );
    /// # Ok::<(), icr_app_core::Error>(())
    /// ```
    ///
    /// # Errors
    /// [`Error::Config`] when `url` is not a Redis URL (the message never quotes it): not a
    /// URL, another scheme, a bad port or database number, a wildcard host (`0.0.0.0`),
    /// `rediss://…#insecure` (use [`tls_root_certificates`](Self::tls_root_certificates)), a
    /// cluster URL with a path, or a sentinel URL without the primary's name.
    pub fn connect(url: &str) -> Result<Self, Error> {
        let (topology, target) = target::parse_any(url)?;
        if target.tls {
            install_crypto_provider();
        }
        let mode = match topology {
            Topology::Single(client) => Mode::Single(client),
            Topology::Cluster { nodes } => Mode::Cluster(cluster::Cluster::new(nodes)),
            Topology::Sentinel(sentinels) => Mode::Sentinel {
                sentinels,
                primary: sentinel::Primary::default(),
            },
        };
        Ok(Self {
            mode,
            target,
            timeout: DEFAULT_TIMEOUT,
            settings: StoreSettings::default(),
            tls_roots: false,
            tls_pem: None,
            tls: link::Tls::default(),
            blocking: blocking::Pool::default(),
            #[cfg(feature = "tokio")]
            nonblocking: nonblocking::Pool::default(),
        })
    }

    /// The longest one call may take, connecting included (TCP, TLS, `AUTH`, `SELECT`), before it
    /// fails with [`TransportErrorKind::Timeout`](icr_app_core::TransportErrorKind::Timeout).
    /// Default 300 ms: the client waits this long at most before minting on its own, so keep it
    /// short. A zero timeout is taken as 1 ms.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout.max(Duration::from_millis(1));
        self.fresh_cluster();
        self
    }

    /// How long a lease to mint lasts: if the process holding it dies, another mints after this.
    /// Longer than a mint takes. Default 15 s. See [`StoreSettings::lease_ttl`].
    pub fn lease_ttl(mut self, lease_ttl: Duration) -> Self {
        self.settings.lease_ttl = lease_ttl;
        self
    }

    /// After a failed call, how long the client mints on its own before using the store again.
    /// Default 5 s. See [`StoreSettings::retry_after_failure`].
    pub fn retry_after_failure(mut self, pause: Duration) -> Self {
        self.settings.retry_after_failure = pause;
        self
    }

    /// Trusts only the CA certificates in `pem` (one or more `BEGIN CERTIFICATE` blocks) for
    /// `rediss://` instead of this machine's root certificates: for a Redis whose certificate a
    /// private CA signed. (The system's roots also take `SSL_CERT_FILE` and `SSL_CERT_DIR`.)
    ///
    /// # Errors
    /// [`Error::Config`] when the URL is not `rediss://`, or `pem` holds no certificate or one
    /// that cannot be parsed.
    pub fn tls_root_certificates(mut self, pem: &[u8]) -> Result<Self, Error> {
        const SETTING: &str = "Redis TLS root certificates";
        if !self.target.tls {
            return Err(Error::config(
                SETTING,
                "they apply to rediss:// URLs only; use rediss:// to connect with TLS",
            ));
        }
        let certificates = CertificateDer::pem_slice_iter(pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| Error::config(SETTING, format!("not PEM certificates ({e})")))?;
        if certificates.is_empty() {
            return Err(Error::config(
                SETTING,
                "no certificate found; expected one or more -----BEGIN CERTIFICATE----- blocks",
            ));
        }
        self.tls = link::Tls::with_roots(certificates);
        self.tls_roots = true;
        self.tls_pem = Some(pem.to_vec());
        self.fresh_cluster();
        // Connections made with the old roots go.
        self.blocking = blocking::Pool::default();
        #[cfg(feature = "tokio")]
        {
            self.nonblocking = nonblocking::Pool::default();
        }
        Ok(self)
    }

    /// How the client's core uses this store: [`lease_ttl`](Self::lease_ttl) and
    /// [`retry_after_failure`](Self::retry_after_failure).
    pub fn settings(&self) -> StoreSettings {
        self.settings.clone()
    }

    /// The URL, with its password replaced by `***` (as messages and `Debug` show it):
    /// `redis://user:***@host`, and `redis://***@host` for a user without a password (most
    /// likely a password written in the user's place).
    ///
    /// ```
    /// use icr_app_redis::RedisStore;
    ///
    /// assert_eq!(RedisStore::connect("redis://app:s3cret@h/1")?.url(), "redis://app:***@h/1");
    /// assert_eq!(RedisStore::connect("rediss://s3cret@h:6380")?.url(), "rediss://***@h:6380");
    /// # Ok::<(), icr_app_core::Error>(())
    /// ```
    pub fn url(&self) -> &str {
        &self.target.shown
    }

    /// Whether the store speaks TLS (`rediss://`, `rediss+cluster://`, `rediss+sentinel://`,
    /// `valkeys://`): the only stores [`tls_root_certificates`](Self::tls_root_certificates)
    /// applies to.
    pub fn is_tls(&self) -> bool {
        self.target.tls
    }

    fn describe(&self, failure: &Failure, phase: Phase) -> Error {
        error::describe(&self.target, self.timeout, failure, phase)
    }

    /// `command` as sent first: on one server the plain form; behind sentinels the form that is
    /// harmless twice (a failover may cut a call whose command already ran).
    fn request(&self, command: &StoreCommand) -> Request {
        match self.mode {
            Mode::Single(_) => Request::new(command),
            Mode::Cluster(_) | Mode::Sentinel { .. } => Request::again(command),
        }
    }

    /// A cluster's client is made anew with the settings changed.
    fn fresh_cluster(&mut self) {
        if let Mode::Cluster(cluster) = &self.mode {
            self.mode = Mode::Cluster(cluster.fresh());
        }
    }
}

/// redis's rustls needs a process-wide crypto provider when more than one (or none) is compiled
/// in; install ring, the SDK's, unless the application chose one.
fn install_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Fails only when another thread installed one meanwhile, which is as good.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// The blocking clients' store: [`RedisStore::run_blocking`].
#[cfg(feature = "ureq")]
impl icr_app_driver::SharedStore for RedisStore {
    fn run(&self, command: &StoreCommand) -> Result<StoreReply, Error> {
        self.run_blocking(command)
    }

    fn settings(&self) -> StoreSettings {
        RedisStore::settings(self)
    }
}

/// The async clients' store: [`RedisStore::run`].
#[cfg(feature = "reqwest")]
impl icr_app_driver::AsyncSharedStore for RedisStore {
    fn run<'a>(&'a self, command: &'a StoreCommand) -> icr_app_driver::StoreFuture<'a> {
        Box::pin(RedisStore::run(self, command))
    }

    fn settings(&self) -> StoreSettings {
        RedisStore::settings(self)
    }
}
