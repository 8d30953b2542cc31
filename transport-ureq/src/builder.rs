//! [`ClientBuilder`]: the transport, and a token store shared by every process of a fleet.

use std::path::PathBuf;

use icr_app_core::{App, Error, Signer, TransportPolicy};
use icr_app_driver::{HeldSigner, ProxySetting, SharedStore};

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
    /// `None`: the environment's proxies.
    proxy: Option<Result<ProxySetting, Error>>,
    ca_file: Option<PathBuf>,
}

impl ClientBuilder {
    pub(crate) fn new(app: App) -> Self {
        Self {
            app,
            transport: None,
            store: None,
            signer: None,
            proxy: None,
            ca_file: None,
        }
    }

    /// Sends the requests through this proxy (`http://host:port`, or
    /// `http://user:password@host:port` for a proxy that asks for Basic credentials, which are
    /// never printed), in place of the environment's (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`).
    /// `NO_PROXY` still applies, and loopback registries are always reached directly. An
    /// `https://` registry is reached through a `CONNECT` tunnel (TLS end to end: the proxy
    /// sees only the host and encrypted bytes); a plain `http://` registry behind a proxy is
    /// refused by [`build`](Self::build) unless insecure HTTP was allowed on the transport.
    /// A URL that is not a proxy URL fails [`build`](Self::build).
    pub fn proxy(mut self, url: &str) -> Self {
        self.proxy = Some(ProxySetting::url(url));
        self
    }

    /// Uses no proxy at all, whatever the environment says.
    pub fn no_proxy(mut self) -> Self {
        self.proxy = Some(Ok(ProxySetting::Disabled));
        self
    }

    /// Trusts the CA certificates of this PEM file too (a private or corporate CA), on top of
    /// Mozilla's roots, for the registry and an `https://` proxy. The file `SSL_CERT_FILE`
    /// names, if set, is trusted as well. A file that cannot be read or holds no certificate
    /// fails [`build`](Self::build) with an error naming it.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_file = Some(path.into());
        self
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
    /// has no [`signer`](Self::signer) (or an App with its key has one); when the proxy
    /// setting, a proxy variable of the environment or a CA file is not valid; when a plain
    /// `http://` registry would be reached through a proxy without insecure HTTP allowed; and
    /// when a proxy or CA file is set on a transport around your own agent (set them on the
    /// agent).
    pub fn build(mut self) -> Result<Client, Error> {
        icr_app_driver::check_signer(self.app.signs_outside(), self.signer.is_some())?;
        if let Some(store) = &self.store {
            self.app.attach_store(store.settings(), icr_app_driver::owner_seed())?;
        }
        let transport = self.network_transport()?;
        if let Some(proxies) = transport.proxies() {
            // (A transport whose environment could not be read has none: its requests that
            // may use a proxy fail with the reason.)
            proxies.for_registry(self.app.api().base_url(), transport.policy().allow_insecure_http)?;
        }
        Ok(Client::from_parts(self.app, transport, self.store, self.signer))
    }

    /// The transport with the proxy and CA settings applied (a transport around your own agent
    /// is used as it is).
    fn network_transport(&mut self) -> Result<UreqTransport, Error> {
        let setting = self.proxy.take().transpose()?;
        match self.transport.take() {
            Some(transport) if transport.proxies().is_none() => {
                if setting.is_some() || self.ca_file.is_some() {
                    return Err(Error::config(
                        "proxy",
                        "the transport was built around your own ureq agent: set the proxy and the CA certificates on that agent, or leave the agent to the SDK",
                    ));
                }
                Ok(transport)
            }
            transport => {
                let policy = transport.map_or_else(TransportPolicy::default, |t| t.policy().clone());
                let explicit = setting.is_some() || self.ca_file.is_some();
                let built = icr_app_driver::extra_roots(self.ca_file.as_deref()).and_then(|roots| {
                    UreqTransport::with_network(policy.clone(), &setting.unwrap_or_default(), &roots)
                });
                match built {
                    Err(error) if !explicit => Ok(UreqTransport::deferred(policy, error)),
                    other => other,
                }
            }
        }
    }
}
