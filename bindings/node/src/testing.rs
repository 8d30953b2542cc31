//! `NativeFakeRegistry`: the project's fake registry (`icr-app-testkit`), in the addon, for
//! `FakeRegistry` from `icr-app/testing`. Its server runs on threads of its own: nothing here
//! blocks the event loop beyond a lock.

use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use icr_app_testkit::{ConnectProxy as Proxy, FakeRegistry as Registry, Fault, TestCa, TlsFront as Front, TokenStatus};
use napi::bindgen_prelude::Buffer;
use napi_derive::napi;

/// Which requests a fault applies to.
#[napi(object)]
pub struct FaultOptions {
    /// How many requests (default 1).
    pub times: Option<u32>,
    /// Only requests whose path starts with this.
    pub path_prefix: Option<String>,
    /// `Retry-After` in seconds (`injectStatus`).
    pub retry_after: Option<u32>,
    /// The redirect's status (`injectRedirect`, default 302).
    pub status: Option<u32>,
}

/// A request the registry received.
#[napi(object)]
pub struct RecordedRequest {
    /// `GET`, `POST`, ...
    pub method: String,
    /// The path with its query.
    pub path: String,
    /// Every header, flat `[name, value, ...]`, names in lower case.
    pub headers: Vec<String>,
    /// The status answered (0: the connection was dropped).
    pub status: u32,
}

/// The fake registry with the demo app and three installations, on `http://127.0.0.1:PORT`.
#[napi]
pub struct NativeFakeRegistry {
    registry: Mutex<Option<Registry>>,
    base_url: String,
    app_id: String,
    private_key: String,
    webhook_secret: String,
    installation_ids: Vec<String>,
    organization_ids: Vec<String>,
    /// Every installation made through this object, by its current id.
    known: Mutex<Vec<String>>,
}

fn closed() -> napi::Error {
    napi::Error::from_reason("the fake registry was closed")
}

fn seconds(secs: f64) -> napi::Result<Duration> {
    if secs.is_finite() && secs >= 0.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(napi::Error::from_reason(
            "a duration must be a number of seconds, 0 or more",
        ))
    }
}

impl NativeFakeRegistry {
    fn with<R>(&self, f: impl FnOnce(&Registry) -> R) -> napi::Result<R> {
        let guard = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        guard.as_ref().map(f).ok_or_else(closed)
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.known.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn queue(&self, fault: Fault, options: Option<&FaultOptions>) -> napi::Result<()> {
        let times = options.and_then(|o| o.times).unwrap_or(1) as usize;
        let prefix = options.and_then(|o| o.path_prefix.clone());
        self.with(|r| match prefix {
            Some(prefix) => r.inject_for(&prefix, fault, times),
            None => r.inject(fault, times),
        })
    }
}

#[napi]
impl NativeFakeRegistry {
    /// Starts the demo registry on a free loopback port.
    #[napi(constructor)]
    pub fn new() -> napi::Result<Self> {
        let demo = Registry::demo_on(std::net::SocketAddr::from(([127, 0, 0, 1], 0)))
            .map_err(|e| napi::Error::from_reason(format!("cannot start the fake registry: {e}")))?;
        Ok(Self {
            base_url: demo.registry.base_url(),
            registry: Mutex::new(Some(demo.registry)),
            app_id: demo.app_id,
            private_key: demo.private_key_pem.to_owned(),
            webhook_secret: demo.webhook_secret,
            known: Mutex::new(demo.installation_ids.clone()),
            installation_ids: demo.installation_ids,
            organization_ids: demo.organization_ids,
        })
    }

    /// The demo app's webhook secret (for `webhook_delivery` and `verifyWebhook`).
    #[napi(getter)]
    pub fn webhook_secret(&self) -> String {
        self.webhook_secret.clone()
    }

    /// A webhook delivery as ICR sends it, signed with `secret`: `[body, signature]`, the body
    /// (JSON with `signedData`) and the `x-icr-signature-256` header's value.
    #[napi]
    pub fn webhook_delivery(
        &self,
        secret: String,
        event: String,
        installation_id: String,
    ) -> napi::Result<Vec<String>> {
        let (body, signature) = self.with(|r| r.webhook_delivery(&secret, &event, &installation_id))?;
        let body = String::from_utf8(body).map_err(|_| napi::Error::from_reason("the delivery is not UTF-8"))?;
        Ok(vec![body, signature])
    }

    /// `http://127.0.0.1:PORT`.
    #[napi(getter)]
    pub fn url(&self) -> String {
        self.base_url.clone()
    }

    /// The demo app's id.
    #[napi(getter)]
    pub fn app_id(&self) -> String {
        self.app_id.clone()
    }

    /// The demo app's private key (PKCS#8 PEM).
    #[napi(getter)]
    pub fn private_key(&self) -> String {
        self.private_key.clone()
    }

    /// The demo installations.
    #[napi(getter)]
    pub fn installation_ids(&self) -> Vec<String> {
        self.installation_ids.clone()
    }

    /// The organization of each demo installation, in the same order.
    #[napi(getter)]
    pub fn organization_ids(&self) -> Vec<String> {
        self.organization_ids.clone()
    }

    /// Installs the demo app on a new organization; returns the installation id.
    #[napi]
    pub fn add_installation(
        &self,
        organization_name: String,
        permissions: Option<Vec<String>>,
    ) -> napi::Result<String> {
        let permissions = permissions.unwrap_or_else(|| vec!["organization_info".into(), "VIEW".into()]);
        let pairs: Vec<(&str, &str)> = permissions
            .chunks(2)
            .filter(|p| p.len() == 2)
            .map(|p| (p[0].as_str(), p[1].as_str()))
            .collect();
        let id = self.with(|r| r.add_installation(&self.app_id, &organization_name, &pairs))?;
        self.known().push(id.clone());
        Ok(id)
    }

    /// Uninstalls: no longer listed, and minting for it gives 404.
    #[napi]
    pub fn remove_installation(&self, installation_id: String) -> napi::Result<()> {
        self.with(|r| r.remove_installation(&installation_id))
    }

    /// The organization reinstalls the app: its installation gets a new id, returned.
    #[napi]
    pub fn reinstall(&self, organization_id: String) -> napi::Result<String> {
        let guard = self.registry.lock().unwrap_or_else(PoisonError::into_inner);
        let registry = guard.as_ref().ok_or_else(closed)?;
        let mut known = self.known();
        let slot = known
            .iter_mut()
            .find(|id| registry.organization_id(id).as_deref() == Some(organization_id.as_str()));
        if let Some(slot) = slot
            && let Some(new) = registry.reinstall(slot)
        {
            slot.clone_from(&new);
            return Ok(new);
        }
        Err(napi::Error::from_reason(format!(
            "no installation of this FakeRegistry is on organization {organization_id}"
        )))
    }

    /// The organization of an installation.
    #[napi]
    pub fn organization_id(&self, installation_id: String) -> napi::Result<Option<String>> {
        self.with(|r| r.organization_id(&installation_id))
    }

    /// Sets the registry's clock to the real time plus `seconds` (negative: behind).
    #[napi]
    pub fn set_clock_offset(&self, seconds: i64) -> napi::Result<()> {
        self.with(|r| r.set_clock_offset(seconds))
    }

    /// Moves the registry's clock by `seconds`.
    #[napi]
    pub fn advance_clock(&self, seconds: i64) -> napi::Result<()> {
        self.with(|r| r.advance_clock(seconds))
    }

    /// How long new access tokens live, in seconds (default 7200).
    #[napi]
    pub fn set_token_lifetime(&self, secs: f64) -> napi::Result<()> {
        let lifetime = seconds(secs)?;
        self.with(|r| r.set_token_lifetime(lifetime))
    }

    /// Answers the next requests with `status` and an error body.
    #[napi]
    pub fn inject_status(&self, status: u32, options: Option<FaultOptions>) -> napi::Result<()> {
        let fault = Fault::Status {
            status: u16::try_from(status).map_err(|_| napi::Error::from_reason("not an HTTP status"))?,
            retry_after: options.as_ref().and_then(|o| o.retry_after).map(u64::from),
        };
        self.queue(fault, options.as_ref())
    }

    /// Reads the next requests, then closes their connections without answering.
    #[napi]
    pub fn inject_drop_connection(&self, options: Option<FaultOptions>) -> napi::Result<()> {
        self.queue(Fault::DropConnection, options.as_ref())
    }

    /// Answers the next requests after `seconds`.
    #[napi]
    pub fn inject_delay(&self, secs: f64, options: Option<FaultOptions>) -> napi::Result<()> {
        self.queue(Fault::Delay(seconds(secs)?), options.as_ref())
    }

    /// Answers the next requests 200 with a body that is not JSON.
    #[napi]
    pub fn inject_malformed_body(&self, options: Option<FaultOptions>) -> napi::Result<()> {
        self.queue(Fault::MalformedBody, options.as_ref())
    }

    /// Answers the next requests with a redirect to `location`.
    #[napi]
    pub fn inject_redirect(&self, location: String, options: Option<FaultOptions>) -> napi::Result<()> {
        let status = options.as_ref().and_then(|o| o.status).unwrap_or(302);
        let fault = Fault::Redirect {
            location,
            status: u16::try_from(status).map_err(|_| napi::Error::from_reason("not an HTTP status"))?,
        };
        self.queue(fault, options.as_ref())
    }

    /// Drops every queued fault.
    #[napi]
    pub fn clear_faults(&self) -> napi::Result<()> {
        self.with(Registry::clear_faults)
    }

    /// Installation tokens minted for `installation_id`; without one, every token minted
    /// (the installations' and the app's).
    #[napi]
    pub fn mint_count(&self, installation_id: Option<String>) -> napi::Result<u32> {
        let known = self.known().clone();
        self.with(|r| match installation_id {
            Some(id) => r.mint_count(&id) as u32,
            None => (known.iter().map(|id| r.mint_count(id)).sum::<usize>() + r.app_token_mint_count()) as u32,
        })
    }

    /// App access tokens minted.
    #[napi]
    pub fn app_token_mint_count(&self) -> napi::Result<u32> {
        self.with(|r| r.app_token_mint_count() as u32)
    }

    /// Lookups of the app's installation on `organization_id`.
    #[napi]
    pub fn lookup_count(&self, organization_id: String) -> napi::Result<u32> {
        self.with(|r| r.lookup_count(&organization_id) as u32)
    }

    /// Every request received so far, oldest first.
    #[napi]
    pub fn requests(&self) -> napi::Result<Vec<RecordedRequest>> {
        self.with(|r| {
            r.requests()
                .into_iter()
                .map(|q| RecordedRequest {
                    method: q.method,
                    path: q.path,
                    headers: q.headers.into_iter().flat_map(|(n, v)| [n, v]).collect(),
                    status: u32::from(q.status),
                })
                .collect()
        })
    }

    /// Forgets the recorded requests.
    #[napi]
    pub fn clear_requests(&self) -> napi::Result<()> {
        self.with(Registry::clear_requests)
    }

    /// Revokes every token issued so far.
    #[napi]
    pub fn revoke_all_tokens(&self) -> napi::Result<()> {
        self.with(Registry::revoke_all_tokens)
    }

    /// Makes `token` expire now.
    #[napi]
    pub fn expire_token(&self, token: String) -> napi::Result<()> {
        self.with(|r| r.expire_token(&token))
    }

    /// `valid`, `expired`, `revoked` or `unknown`.
    #[napi]
    pub fn token_status(&self, token: String) -> napi::Result<String> {
        self.with(|r| {
            match r.token_status(&token) {
                TokenStatus::Valid => "valid",
                TokenStatus::Expired => "expired",
                TokenStatus::Revoked => "revoked",
                TokenStatus::Unknown => "unknown",
            }
            .to_owned()
        })
    }

    /// Stops the registry (idempotent).
    #[napi]
    pub fn close(&self) {
        let taken = self.registry.lock().unwrap_or_else(PoisonError::into_inner).take();
        drop(taken);
    }
}

fn loopback(port: u32) -> napi::Result<std::net::SocketAddr> {
    let port = u16::try_from(port).map_err(|_| napi::Error::from_reason("a port is a number from 1 to 65535"))?;
    Ok(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
}

/// TLS in front of a server on `127.0.0.1:backendPort` (a fake registry, or a proxy spoken to
/// over TLS), with a certificate for `host` from a CA made on the spot (the testkit's
/// `TlsFront` and `TestCa`).
#[napi]
pub struct NativeTlsFront {
    front: Mutex<Option<Front>>,
    port: u32,
    ca_pem: String,
}

#[napi]
impl NativeTlsFront {
    /// Starts it on a free port of `127.0.0.1`.
    #[napi(constructor)]
    pub fn new(backend_port: u32, host: String) -> napi::Result<Self> {
        let backend = loopback(backend_port)?;
        let ca = TestCa::new();
        let (cert, key) = ca.issue(&[&host]);
        let front = Front::start(backend, &cert, &key)
            .map_err(|e| napi::Error::from_reason(format!("cannot start the TLS front: {e}")))?;
        Ok(Self {
            port: u32::from(front.addr().port()),
            front: Mutex::new(Some(front)),
            ca_pem: ca.cert_pem().to_owned(),
        })
    }

    /// The port it listens on.
    #[napi(getter)]
    pub fn port(&self) -> u32 {
        self.port
    }

    /// The CA's certificate (PEM).
    #[napi(getter)]
    pub fn ca_pem(&self) -> String {
        self.ca_pem.clone()
    }

    /// Stops it (idempotent).
    #[napi]
    pub fn close(&self) {
        drop(self.front.lock().unwrap_or_else(PoisonError::into_inner).take());
    }
}

/// A forward proxy on `127.0.0.1` for tests (the testkit's `ConnectProxy`).
#[napi]
pub struct NativeConnectProxy {
    proxy: Mutex<Option<Proxy>>,
    url: String,
}

impl NativeConnectProxy {
    fn with<R>(&self, f: impl FnOnce(&Proxy) -> R) -> napi::Result<R> {
        let guard = self.proxy.lock().unwrap_or_else(PoisonError::into_inner);
        guard
            .as_ref()
            .map(f)
            .ok_or_else(|| napi::Error::from_reason("the proxy was closed"))
    }
}

#[napi]
impl NativeConnectProxy {
    /// Starts it: `resolve` flat `[host, port, ...]` (each host to `127.0.0.1:port`), Basic
    /// credentials required when `user` or `password` is given, every request refused with
    /// 403 when `forbid`.
    #[napi(constructor)]
    pub fn new(
        resolve: Vec<String>,
        user: Option<String>,
        password: Option<String>,
        forbid: bool,
    ) -> napi::Result<Self> {
        let mut builder = Proxy::builder();
        for pair in resolve.chunks(2) {
            if let [host, port] = pair {
                let port = port
                    .parse::<u32>()
                    .map_err(|_| napi::Error::from_reason(format!("resolve: {port} is not a port")))?;
                builder = builder.resolve(host, loopback(port)?);
            }
        }
        if user.is_some() || password.is_some() {
            builder = builder.basic_auth(user.as_deref().unwrap_or(""), password.as_deref().unwrap_or(""));
        }
        if forbid {
            builder = builder.forbid_all();
        }
        let proxy = builder
            .start()
            .map_err(|e| napi::Error::from_reason(format!("cannot start the proxy: {e}")))?;
        Ok(Self {
            url: proxy.url(),
            proxy: Mutex::new(Some(proxy)),
        })
    }

    /// `http://127.0.0.1:PORT`.
    #[napi(getter)]
    pub fn url(&self) -> String {
        self.url.clone()
    }

    /// `http://user:password@127.0.0.1:PORT`.
    #[napi]
    pub fn url_with_credentials(&self, user: String, password: String) -> napi::Result<String> {
        self.with(|p| p.url_with_credentials(&user, &password))
    }

    /// Every request line seen.
    #[napi]
    pub fn request_lines(&self) -> napi::Result<Vec<String>> {
        self.with(Proxy::request_lines)
    }

    /// The first bytes each client sent into a tunnel.
    #[napi]
    pub fn tunneled(&self) -> napi::Result<Vec<Buffer>> {
        self.with(|p| p.tunneled().into_iter().map(Buffer::from).collect())
    }

    /// Forgets what it saw.
    #[napi]
    pub fn clear(&self) -> napi::Result<()> {
        self.with(Proxy::clear)
    }

    /// Stops it (idempotent).
    #[napi]
    pub fn close(&self) {
        drop(self.proxy.lock().unwrap_or_else(PoisonError::into_inner).take());
    }
}
