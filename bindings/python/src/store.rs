//! The shared token store (`Client(app, redis_url=...)`): the Redis store an `App` shares its
//! tokens through, the `Store` step an operation asks a driver to perform, and the `StoreReply`
//! the driver reports back with `handle_store`.
//!
//! As with `Send`, the core decides every command (read the entry, take the lease, put the sealed
//! token, compare-and-delete); the Python drivers only run it, by calling `Store.run()`, which
//! runs it on Redis from Rust ([`RedisStore::run_blocking`], a few hundred ms at most) with the
//! GIL released; the async driver calls it in a worker thread.

use std::hash::BuildHasher;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use icr_app_core::{Error as CoreError, StoreCommand, StoreReply as CoreReply};
use icr_app_redis::{DEFAULT_TIMEOUT, RedisStore};
use pyo3::prelude::*;
use zeroize::Zeroizing;

use crate::{fork_generation, logs};

/// What the store of an `App` was made from: kept to compare a second client's URL with, and to
/// make a new store (new connections, a new lease owner id) in the child of a fork.
pub(crate) struct StoreConfig {
    /// As given (it may hold a password): never shown.
    url: Zeroizing<String>,
    /// The URL with its password replaced by `***`.
    pub(crate) shown: String,
    /// The longest one command may take.
    pub(crate) timeout: Duration,
    /// How long a lease to mint lasts (`None`: the store's default, 15 s).
    pub(crate) lease_ttl: Option<Duration>,
    /// The CA certificates (PEM) trusted for `rediss://`, from the App's `ca_file`.
    ca_pem: Option<Vec<u8>>,
}

impl StoreConfig {
    /// A store on the Redis at `url` whose commands give up after `timeout` (default 300 ms),
    /// with leases of `lease_ttl` (default 15 s) and, for a TLS URL, `ca_pem` as the only CA
    /// (default: this machine's roots): parses the URL (nothing is dialled until the first
    /// command).
    pub(crate) fn connect(
        url: &str,
        timeout: Option<Duration>,
        lease_ttl: Option<Duration>,
        ca_pem: Option<Vec<u8>>,
    ) -> Result<(Self, RedisStore), CoreError> {
        let config = Self {
            url: Zeroizing::new(url.to_owned()),
            shown: String::new(),
            timeout: timeout.unwrap_or(DEFAULT_TIMEOUT),
            lease_ttl,
            ca_pem,
        };
        let store = config.reconnect()?;
        let config = Self {
            shown: store.url().to_owned(),
            ..config
        };
        Ok((config, store))
    }

    /// Whether `url` is the one this store was made from.
    pub(crate) fn is(&self, url: &str) -> bool {
        self.url.as_str() == url
    }

    /// A new store on the same Redis (the child of a fork must not use its parent's connections).
    pub(crate) fn reconnect(&self) -> Result<RedisStore, CoreError> {
        let mut store = RedisStore::connect(&self.url)?.timeout(self.timeout);
        if let Some(lease_ttl) = self.lease_ttl {
            store = store.lease_ttl(lease_ttl);
        }
        if let Some(pem) = &self.ca_pem
            && store.is_tls()
        {
            store = store.tls_root_certificates(pem)?;
        }
        Ok(store)
    }
}

/// A lease owner seed of this process: it must differ between the processes sharing a Redis,
/// the children of one fork included (they inherit the parent's hasher state, not its pid).
pub(crate) fn owner_seed() -> u64 {
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::collections::hash_map::RandomState::new().hash_one((std::process::id(), nanos))
}

/// A step: run a command on the App's shared token store (Redis), with `run()`, and report its
/// reply for `.id` with `handle_store`. A store that fails is never an error for the caller: the
/// failure is reported too, and the core mints without the store for a while.
#[pyclass(module = "icr_app", frozen, name = "Store")]
pub struct StoreStep {
    id: u64,
    command: StoreCommand,
    store: Option<Arc<RedisStore>>,
    /// The fork generation it was made in: the store's connections are that process's.
    generation: u64,
}

impl StoreStep {
    pub(crate) fn new(id: u64, command: StoreCommand, store: Option<Arc<RedisStore>>) -> Self {
        Self {
            id,
            command,
            store,
            generation: fork_generation(),
        }
    }
}

#[pymethods]
impl StoreStep {
    /// The id to report back with.
    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// What to do: `get`, `lease`, `put` or `delete`.
    #[getter]
    fn command(&self) -> &'static str {
        match self.command {
            StoreCommand::Get { .. } => "get",
            StoreCommand::Lease { .. } => "lease",
            StoreCommand::Put { .. } => "put",
            StoreCommand::Delete { .. } => "delete",
        }
    }

    /// The name of the Redis key it acts on.
    #[getter]
    fn key(&self) -> &str {
        self.command.key()
    }

    /// Runs the command on the App's store and returns its reply (or its failure, as a reply:
    /// this never raises for Redis being down, slow or refusing). Blocks the calling thread for
    /// at most about the store's timeout (`redis_timeout`, 300 ms by default), with the GIL
    /// released.
    fn run(&self, py: Python<'_>) -> StoreReply {
        let reply = match &self.store {
            // Its connections belong to the parent: never write on them from the child.
            Some(_) if self.generation != fork_generation() => Err(CoreError::config(
                "shared token store",
                "this step was made before this process was forked; start the operation again in this process",
            )),
            Some(store) => {
                let store = Arc::clone(store);
                let command = &self.command;
                py.detach(move || store.run_blocking(command))
            }
            None => Err(CoreError::config("shared token store", "none is attached to this App")),
        };
        logs::flush(py);
        StoreReply { reply }
    }

    fn __repr__(&self) -> String {
        format!(
            "Store(id={}, command={:?}, key={:?})",
            self.id,
            self.command(),
            self.key()
        )
    }
}

/// What a `Store` step's `run()` gave: the store's reply, or why it gave none. Report it with
/// `Operation.handle_store(step.id, reply)`.
#[pyclass(module = "icr_app", frozen)]
pub struct StoreReply {
    pub(crate) reply: Result<CoreReply, CoreError>,
}

#[pymethods]
impl StoreReply {
    /// Whether the store answered.
    #[getter]
    fn ok(&self) -> bool {
        self.reply.is_ok()
    }

    /// Why the store gave no answer (its message names the cause; a password never shows), or
    /// `None`.
    #[getter]
    fn error(&self) -> Option<String> {
        self.reply.as_ref().err().map(ToString::to_string)
    }

    fn __repr__(&self) -> String {
        match &self.reply {
            Ok(reply) => format!("StoreReply({reply:?})"),
            Err(error) => format!("StoreReply(error={:?})", error.to_string()),
        }
    }
}
