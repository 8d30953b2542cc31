//! [`ClientBuilder`]: the transport, and a token store shared by every process of a fleet.

use icr_app_core::{App, Error, Signer};
use icr_app_driver::{HeldSigner, SharedStore};

use crate::client::Client;
use crate::transport::UreqTransport;

/// Builds a [`Client`]: the transport and an optional shared token store, e.g.
/// `Client::builder(app).store(RedisStore::connect("redis://127.0.0.1/")?).build()?` with
/// `icr-app-redis`.
#[must_use = "call build()"]
#[derive(Debug)]
pub struct ClientBuilder {
    app: App,
    transport: Option<UreqTransport>,
    store: Option<Box<dyn SharedStore>>,
    signer: Option<HeldSigner<dyn Signer>>,
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

    /// A transport you configured (default: [`UreqTransport::new`]).
    pub fn transport(mut self, transport: UreqTransport) -> Self {
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

    /// The signer of an App built without its private key (`App::builder_without_key`: a KMS,
    /// an HSM, a remote signer): the client calls it, without the app's lock, when the core asks
    /// for the JWT's signature (once however many callers need it, about every eight minutes).
    pub fn signer(mut self, signer: impl Signer + 'static) -> Self {
        self.signer = Some(HeldSigner(Box::new(signer)));
        self
    }

    /// The client. Fails when a store is given and the app's signer cannot derive the secret
    /// that seals tokens in it (see [`App::attach_store`]), and when an App without its key
    /// has no [`signer`](Self::signer) (or an App with its key has one).
    pub fn build(mut self) -> Result<Client, Error> {
        icr_app_driver::check_signer(self.app.signs_outside(), self.signer.is_some())?;
        if let Some(store) = &self.store {
            self.app.attach_store(store.settings(), icr_app_driver::owner_seed())?;
        }
        Ok(Client::from_parts(
            self.app,
            self.transport.unwrap_or_default(),
            self.store,
            self.signer,
        ))
    }
}
