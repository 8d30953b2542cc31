//! [`ClientBuilder`]: the transport, and a token store shared by every process of a fleet.

use icr_app_core::{App, Error};
use icr_app_driver::AsyncSharedStore;

use crate::client::Client;
use crate::transport::ReqwestTransport;

/// Builds a [`Client`]: the transport and an optional shared token store, e.g.
/// `Client::builder(app).store(RedisStore::connect("redis://127.0.0.1/")?).build()?` with
/// `icr-app-redis`.
#[must_use = "call build()"]
#[derive(Debug)]
pub struct ClientBuilder {
    app: App,
    transport: Option<ReqwestTransport>,
    store: Option<Box<dyn AsyncSharedStore>>,
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
    pub fn store(mut self, store: impl AsyncSharedStore + 'static) -> Self {
        self.store = Some(Box::new(store));
        self
    }

    /// The client. Fails when the default transport cannot be built, or when a store is given
    /// and the app's signer cannot derive the secret that seals tokens in it (see
    /// [`App::attach_store`]).
    pub fn build(mut self) -> Result<Client, Error> {
        if let Some(store) = &self.store {
            self.app.attach_store(store.settings(), icr_app_driver::owner_seed())?;
        }
        let transport = match self.transport {
            Some(transport) => transport,
            None => ReqwestTransport::new()?,
        };
        Ok(Client::from_parts(self.app, transport, self.store))
    }
}
