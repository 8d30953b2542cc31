//! [`ClientBuilder`], and [`SharedStore`]: a token store shared by every process of a fleet.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;

use icr_app_core::{App, Error, StoreCommand, StoreReply, StoreSettings};

use crate::client::Client;
use crate::transport::ReqwestTransport;

/// What [`SharedStore::run`] returns.
pub type StoreFuture<'a> = Pin<Box<dyn Future<Output = Result<StoreReply, Error>> + Send + 'a>>;

/// A shared token store the async client runs the core's [`StoreCommand`]s on, so that the
/// processes sharing it mint one token per installation between them (`icr-app-redis`'s
/// `RedisStore`, or your own). Every decision is the core's: run the command, within a short
/// timeout, and return the reply or why there is none.
pub trait SharedStore: Send + Sync + fmt::Debug {
    /// Runs `command` (see [`StoreCommand`] for what each means).
    fn run<'a>(&'a self, command: &'a StoreCommand) -> StoreFuture<'a>;

    /// How the core uses the store (the lease's time, the pause after a failure).
    fn settings(&self) -> StoreSettings {
        StoreSettings::default()
    }
}

/// Builds a [`Client`]: the transport and an optional shared token store, e.g.
/// `Client::builder(app).store(RedisStore::connect("redis://127.0.0.1/")?).build()?` with
/// `icr-app-redis`.
#[must_use = "call build()"]
#[derive(Debug)]
pub struct ClientBuilder {
    app: App,
    transport: Option<ReqwestTransport>,
    store: Option<Box<dyn SharedStore>>,
}

impl ClientBuilder {
    pub(crate) fn new(app: App) -> Self {
        Self {
            app,
            transport: None,
            store: None,
        }
    }

    /// A transport you configured (default: [`ReqwestTransport::new`]).
    pub fn transport(mut self, transport: ReqwestTransport) -> Self {
        self.transport = Some(transport);
        self
    }

    /// A store shared with other processes: a local miss reads it before minting, one process
    /// mints per installation, and a store that fails is set aside (minting alone) until it
    /// answers again.
    pub fn store(mut self, store: impl SharedStore + 'static) -> Self {
        self.store = Some(Box::new(store));
        self
    }

    /// The client. Fails when the default transport cannot be built, or when a store is given
    /// and the app's signer cannot derive the secret that seals tokens in it (see
    /// [`App::attach_store`]).
    pub fn build(mut self) -> Result<Client, Error> {
        if let Some(store) = &self.store {
            // The lease owner id must differ between processes: a per-process random seed.
            let seed = RandomState::new().hash_one(std::process::id());
            self.app.attach_store(store.settings(), seed)?;
        }
        let transport = match self.transport {
            Some(transport) => transport,
            None => ReqwestTransport::new()?,
        };
        Ok(Client::from_parts(self.app, transport, self.store))
    }
}
