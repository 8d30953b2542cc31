//! [`ClientBuilder`]: the transport, and a token store shared by every process of a fleet.

use std::path::PathBuf;

use icr_app_core::{App, Error, TransportPolicy};
use icr_app_driver::{AsyncSharedStore, AsyncSigner, HeldSigner, ProxySetting};

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
    /// [`App::attach_store`]); when the proxy setting, a proxy variable of the environment or
    /// a CA file is not valid; when a plain `http://` registry would be reached through a
    /// proxy without insecure HTTP allowed; and when a proxy or CA file is set on a transport
    /// around your own reqwest client (set them on that client).
    pub fn build(mut self) -> Result<Client, Error> {
        icr_app_driver::check_signer(self.app.signs_outside(), self.signer.is_some())?;
        if let Some(store) = &self.store {
            self.app.attach_store(store.settings(), icr_app_driver::owner_seed())?;
        }
        let setting = self.proxy.take().transpose()?;
        let transport = match self.transport.take() {
            Some(transport) if transport.proxies().is_none() => {
                if setting.is_some() || self.ca_file.is_some() {
                    return Err(Error::config(
                        "proxy",
                        "the transport was built around your own reqwest client: set the proxy and the CA certificates on that client, or leave the client to the SDK",
                    ));
                }
                transport
            }
            Some(transport) if setting.is_none() && self.ca_file.is_none() => transport,
            transport => {
                let policy = transport.map_or_else(TransportPolicy::default, |t| t.policy().clone());
                let explicit = setting.is_some() || self.ca_file.is_some();
                let built = icr_app_driver::extra_roots(self.ca_file.as_deref()).and_then(|roots| {
                    ReqwestTransport::with_network(policy.clone(), &setting.unwrap_or_default(), &roots)
                });
                match built {
                    Err(error) if !explicit => ReqwestTransport::deferred(policy, error)?,
                    other => other?,
                }
            }
        };
        if let Some(proxies) = transport.proxies() {
            proxies.for_registry(self.app.api().base_url(), transport.policy().allow_insecure_http)?;
        }
        Ok(Client::from_parts(self.app, transport, self.store, self.signer))
    }
}
