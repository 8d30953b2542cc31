//! [`ClientBuilder`]: the transport, and a token store shared by every process of a fleet.

use icr_app_core::{App, Error};
use icr_app_driver::{AsyncSharedStore, AsyncSigner, HeldSigner};

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
    signer: Option<HeldSigner<dyn AsyncSigner>>,
}

impl ClientBuilder {
    pub(crate) fn new(app: App) -> Self {
        Self {
            app,
            transport: None,
            store: None,
            signer: None,
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

    /// The signer of an App built without its private key (`App::builder_without_key`: a KMS,
    /// an HSM, a remote signer), awaited when the core asks for the JWT's signature (once
    /// however many callers need it, about every eight minutes), never under the app's lock.
    pub fn signer(mut self, signer: impl AsyncSigner + 'static) -> Self {
        self.signer = Some(HeldSigner(Box::new(signer)));
        self
    }

    /// The client. Fails when the default transport cannot be built, or when a store is given
    /// and the app's signer cannot derive the secret that seals tokens in it (see
    /// [`App::attach_store`]).
    pub fn build(mut self) -> Result<Client, Error> {
        icr_app_driver::check_signer(self.app.signs_outside(), self.signer.is_some())?;
        if let Some(store) = &self.store {
            self.app.attach_store(store.settings(), icr_app_driver::owner_seed())?;
        }
        let transport = match self.transport {
            Some(transport) => transport,
            None => ReqwestTransport::new()?,
        };
        Ok(Client::from_parts(self.app, transport, self.store, self.signer))
    }
}
