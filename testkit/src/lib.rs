//! # icr-app-testkit
//!
//! A fake ICR (International Carbon Registry) API that runs in-process on `127.0.0.1`, for
//! testing ICR apps: point the app at [`FakeRegistry::demo`] instead of the real registry, then
//! ask the registry what it saw.
//!
//! ```
//! use icr_app_core::{App, AppKey, InstallationId};
//! use icr_app_testkit::FakeRegistry;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A registry with a demo app (its id and private key are in `demo`) and three installations.
//! let demo = FakeRegistry::demo();
//! assert!(demo.registry.base_url().starts_with("http://127.0.0.1:"));
//!
//! // The app under test, here the SDK's blocking client, talks to it.
//! let key = AppKey::from_pem(demo.private_key_pem)?;
//! let app = App::builder(demo.app_id.clone(), key).base_url(demo.registry.base_url()).build()?;
//! let client = icr_app_ureq::Client::new(app);
//! let installation = &demo.installation_ids[0];
//! let token = client.installation_token(&InstallationId::new(installation.clone())?)?;
//! client.installation_token(&InstallationId::new(installation.clone())?)?; // from the cache
//!
//! // The registry minted one token for that installation, and accepts it.
//! assert_eq!(demo.registry.mint_count(installation), 1);
//! assert!(demo.registry.token_is_valid(token.secret().expose()));
//! # Ok(())
//! # }
//! ```
//!
//! It behaves as the documented API does: it verifies every app JWT for real (RS256 against the
//! registered public key, `iss`, `exp` at most 10 minutes ahead, `iat` not in the future), issues
//! `crs_` tokens with an `expiresAt`, lists installations page by page, finds the app's
//! installation on an organization (`GET /app/organizations/{id}/installation`), and refuses
//! unknown, revoked or expired tokens and missing permissions with NestJS-style error bodies.
//! Tests can skew and advance its clock, inject faults, reinstall an organization (a new
//! installation id; the old one and its tokens stop working), count mints and lookups, and read
//! back every request.
//!
//! It shares no code with `icr-app-core`, so it checks the SDK rather than mirroring it.
//!
//! For tests of a shared token store, [`RedisServer`] runs a real `redis-server` (which must be
//! installed; `./run-tests` installs it) on a free loopback port, and can kill and restart it;
//! [`RedisCluster`] and [`RedisSentinel`] run a Redis Cluster and a Sentinel-watched primary
//! with its replica, and can kill a primary mid-run.
//!
//! For tests of proxies and private certificate authorities, [`TestCa`] makes a CA on the
//! spot, [`TlsFront`] puts TLS (a certificate from it, e.g. for `registry.test`) in front of a
//! registry, and [`ConnectProxy`] is a real `CONNECT` proxy that alone resolves such a name and
//! logs what it sees.
//!
//! ## `icr-app-testnet`: that network as a process
//!
//! For tests in other languages (the C tests of `bindings/c` use it), the binary
//! `icr-app-testnet` (feature `testnet`: `cargo build -p icr-app-testkit --features testnet
//! --bin icr-app-testnet`) starts the demo registry, a [`TlsFront`] for `registry.test` with a
//! certificate from a fresh [`TestCa`], and a [`ConnectProxy`] resolving `registry.test` to it
//! (`--proxy-user USER --proxy-password PASSWORD`: requiring those credentials), then prints
//! one line of JSON on stdout:
//!
//! ```text
//! {"app_id":"d23967cc-…","base_url":"https://registry.test","ca_file":"/tmp/icr-app-testnet-…/ca.pem",
//!  "dir":"/tmp/icr-app-testnet-…","installation_id":"…","organization_id":"…",
//!  "private_key_file":"/tmp/icr-app-testnet-…/demo-key.pem",
//!  "proxy_requests":"/tmp/icr-app-testnet-…/proxy/requests.log","proxy_tunnels":"/tmp/icr-app-testnet-…/proxy",
//!  "proxy_url":"http://127.0.0.1:41443","proxy_url_with_credentials":null,
//!  "registry_url":"http://127.0.0.1:32905","tls_front":"127.0.0.1:39439"}
//! ```
//!
//! `base_url` is the registry through the proxy (trust `ca_file`), `registry_url` the same
//! registry in plain HTTP on loopback, `tls_front` the TLS front's address (for `curl
//! --resolve`). What the proxy sees is in files, written before it answers or passes anything
//! on ([`ConnectProxyBuilder::record_to`]): each request line appended to `proxy_requests`, and
//! the first bytes a client sent into tunnel `n` in `proxy_tunnels/tunnel-n.bin`.
//! `proxy_url_with_credentials` is `null` without `--proxy-user`. It serves until SIGTERM or
//! Ctrl-C, or, when its standard input is a pipe or a socket, until that closes (the process
//! that started it is gone); then it removes its directory (`dir`, made `0700`).
//!
//! A registry of your own, with your app and installations:
//!
//! ```
//! use icr_app_testkit::{DEMO_PRIVATE_KEY_PEM, FakeRegistry};
//!
//! let registry = FakeRegistry::start();
//! registry.register_app_with_private_key("my-app", DEMO_PRIVATE_KEY_PEM).unwrap();
//! let installation = registry.add_installation("my-app", "Acme Carbon", &[("organization_info", "VIEW")]);
//! assert!(registry.base_url().starts_with("http://127.0.0.1:"));
//! assert_eq!(registry.mint_count(&installation), 0);
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod api;
mod der;
mod net;
mod redis;
mod redis_topology;
mod server;
mod state;

pub use net::{ConnectProxy, ConnectProxyBuilder, TestCa, TlsFront};

use std::fmt;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime};

use base64::Engine as _;
use serde_json::json;

pub use api::API_VERSION;
pub use redis::{RedisServer, RedisServerBuilder};
pub use redis_topology::{RedisCluster, RedisSentinel};
use state::{App, Installation, State};
pub use state::{Fault, FaultRates, InjectedFaults, RecordedRequest, TokenStatus};

/// The demo app's private key (PKCS#8 PEM, 2048-bit RSA). For tests only.
pub const DEMO_PRIVATE_KEY_PEM: &str = include_str!("../keys/demo-app.pem");
/// A second private key, registered to no app: JWTs signed with it are refused.
pub const OTHER_PRIVATE_KEY_PEM: &str = include_str!("../keys/other-app.pem");

/// Panics if `text` quotes `value`: any run of 16 of its characters. For tests that a message
/// about a secret given where it should not be (a key, a token) never repeats it.
///
/// ```
/// icr_app_testkit::assert_not_echoed("crs_0123456789abcdef", "not a key (20 characters)");
/// ```
pub fn assert_not_echoed(value: &str, text: &str) {
    let chars: Vec<char> = value.chars().collect();
    for window in chars.windows(16) {
        let run: String = window.iter().collect();
        assert!(!text.contains(&run), "the value is quoted (`{run}`): {text}");
    }
}

/// Why a registration was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TestkitError {
    /// The public key is not an RSA `PUBLIC KEY` or `RSA PUBLIC KEY` PEM.
    BadPublicKey,
    /// The private key is not an RSA PKCS#8 or PKCS#1 PEM that ring accepts.
    BadPrivateKey,
    /// A fault rate is negative or not a number, or the rates add up to more than 1.
    BadFaultRates,
}

impl fmt::Display for TestkitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TestkitError::BadPublicKey => {
                f.write_str("expected an RSA public key PEM (BEGIN PUBLIC KEY or BEGIN RSA PUBLIC KEY)")
            }
            TestkitError::BadPrivateKey => {
                f.write_str("expected an RSA private key PEM (BEGIN PRIVATE KEY or BEGIN RSA PRIVATE KEY)")
            }
            TestkitError::BadFaultRates => f.write_str(
                "fault rates are probabilities per request: each must be a number from 0 to 1, and together at most 1",
            ),
        }
    }
}

impl std::error::Error for TestkitError {}

/// A running fake registry. Stops when dropped.
pub struct FakeRegistry {
    state: Arc<Mutex<State>>,
    server: server::Handle,
}

impl fmt::Debug for FakeRegistry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("FakeRegistry")
            .field("addr", &self.server.addr)
            .finish_non_exhaustive()
    }
}

/// A registry with a demo app and three installations (see [`FakeRegistry::demo`]).
#[derive(Debug)]
pub struct Demo {
    /// The registry.
    pub registry: FakeRegistry,
    /// The demo app's id.
    pub app_id: String,
    /// The demo app's private key.
    pub private_key_pem: &'static str,
    /// The installations, in the order the registry lists them.
    pub installation_ids: Vec<String>,
    /// The organization of each installation, in the same order: what a scheduled job knows
    /// ("act as this organization"), whatever the installation's id.
    pub organization_ids: Vec<String>,
    /// A webhook secret for [`FakeRegistry::webhook_delivery`].
    pub webhook_secret: String,
}

impl FakeRegistry {
    /// Starts on a free port of 127.0.0.1.
    ///
    /// # Panics
    /// If no loopback port can be bound (a broken test machine).
    pub fn start() -> Self {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind a loopback port for the fake registry")
    }

    /// Starts on `addr`.
    pub fn start_on(addr: SocketAddr) -> std::io::Result<Self> {
        let listener = std::net::TcpListener::bind(addr)?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(State::new(format!("http://{addr}"))));
        let server = server::spawn(listener, state.clone())?;
        Ok(Self { state, server })
    }

    /// Starts a registry with the demo app and three installations.
    pub fn demo() -> Demo {
        Self::demo_on(SocketAddr::from(([127, 0, 0, 1], 0))).expect("bind a loopback port for the fake registry")
    }

    /// [`demo`](Self::demo) on `addr`.
    pub fn demo_on(addr: SocketAddr) -> std::io::Result<Demo> {
        let registry = Self::start_on(addr)?;
        let app_id = "d23967cc-dd16-452b-8af4-869965745978".to_owned();
        registry
            .register_app_with_private_key(&app_id, DEMO_PRIVATE_KEY_PEM)
            .expect("the demo key is valid");
        let installation_ids = vec![
            registry.add_installation(
                &app_id,
                "Nordic Peatland Restoration",
                &[
                    ("organization_info", "VIEW"),
                    ("organization_inventory", "REQUEST"),
                    ("organization_warehouse", "WRITE"),
                ],
            ),
            registry.add_installation(
                &app_id,
                "Andes Reforestation Cooperative",
                &[("organization_info", "VIEW")],
            ),
            registry.add_installation(
                &app_id,
                "Blue Carbon Mangroves",
                &[("organization_info", "VIEW"), ("organization_members", "VIEW")],
            ),
        ];
        let organization_ids = installation_ids
            .iter()
            .map(|id| registry.organization_id(id).expect("just installed"))
            .collect();
        Ok(Demo {
            registry,
            app_id,
            private_key_pem: DEMO_PRIVATE_KEY_PEM,
            installation_ids,
            organization_ids,
            webhook_secret: "demo-webhook-secret-6f1c2a".to_owned(),
        })
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// `http://127.0.0.1:PORT`, followed by the path set with [`serve_under`](Self::serve_under).
    pub fn base_url(&self) -> String {
        self.state().base_url.clone()
    }

    /// Serves the API under `path` (e.g. `/v1`), as a registry behind a path prefix:
    /// [`base_url`](Self::base_url) ends with it, the endpoints answer only under it (anything
    /// else is a 404), and [`inject_for`](Self::inject_for) prefixes are matched after it.
    /// Requests are recorded with the path they arrived with.
    ///
    /// ```
    /// let registry = icr_app_testkit::FakeRegistry::start();
    /// registry.serve_under("/v1/");
    /// assert!(registry.base_url().ends_with("/v1"));
    /// ```
    pub fn serve_under(&self, path: &str) {
        let path = format!("/{}", path.trim_matches('/'));
        let path = if path == "/" { String::new() } else { path };
        let mut state = self.state();
        state.base_url = format!("http://{}{path}", self.server.addr);
        state.base_path = path;
    }

    /// The address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// Registers an app with its RSA public key (`BEGIN PUBLIC KEY` or `BEGIN RSA PUBLIC KEY`).
    pub fn register_app(&self, app_id: &str, public_key_pem: &str) -> Result<(), TestkitError> {
        let pkcs1 = der::pem_block(public_key_pem, "PUBLIC KEY")
            .and_then(|spki| der::spki_to_pkcs1(&spki))
            .or_else(|| der::pem_block(public_key_pem, "RSA PUBLIC KEY"))
            .ok_or(TestkitError::BadPublicKey)?;
        self.insert_app(app_id, pkcs1);
        Ok(())
    }

    /// Registers an app, deriving its public key from the private key PEM.
    pub fn register_app_with_private_key(&self, app_id: &str, private_key_pem: &str) -> Result<(), TestkitError> {
        use ring::signature::{KeyPair as _, RsaKeyPair};
        let pair = der::pem_block(private_key_pem, "PRIVATE KEY")
            .and_then(|d| RsaKeyPair::from_pkcs8(&d).ok())
            .or_else(|| der::pem_block(private_key_pem, "RSA PRIVATE KEY").and_then(|d| RsaKeyPair::from_der(&d).ok()))
            .ok_or(TestkitError::BadPrivateKey)?;
        self.insert_app(app_id, pair.public_key().as_ref().to_vec());
        Ok(())
    }

    fn insert_app(&self, app_id: &str, public_key: Vec<u8>) {
        let name_id = app_id
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .take(24)
            .collect::<String>()
            .to_lowercase();
        self.state().apps.insert(app_id.to_owned(), App { public_key, name_id });
    }

    /// Installs `app_id` on a new organization named `organization_name` with `permissions`
    /// (e.g. `[("organization_info", "VIEW")]`); returns the installation id.
    pub fn add_installation(&self, app_id: &str, organization_name: &str, permissions: &[(&str, &str)]) -> String {
        let mut state = self.state();
        let now = state.now_ms();
        let organization = state.organization(organization_name, now);
        let id = state.uuid();
        state.installations.insert(
            id.clone(),
            Installation {
                id: id.clone(),
                app_id: app_id.to_owned(),
                created: now,
                permissions: permissions
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
                organization,
            },
        );
        id
    }

    /// Uninstalls: the installation is no longer listed and minting for it gives 404.
    pub fn remove_installation(&self, installation_id: &str) {
        self.state().installations.shift_remove(installation_id);
    }

    /// The organization uninstalls the app and installs it again: its installation gets a new
    /// id (returned), with the same permissions. The old id is gone (minting for it, or reading
    /// it, gives 404) and every token minted for it is revoked (requests with it give 401), as
    /// after a real reinstall. `None` when there is no such installation.
    ///
    /// ```
    /// let demo = icr_app_testkit::FakeRegistry::demo();
    /// let old = &demo.installation_ids[0];
    /// let new = demo.registry.reinstall(old).unwrap();
    /// assert_ne!(&new, old);
    /// assert_eq!(demo.registry.organization_id(&new), Some(demo.organization_ids[0].clone()));
    /// assert_eq!(demo.registry.organization_id(old), None);
    /// ```
    pub fn reinstall(&self, installation_id: &str) -> Option<String> {
        let mut state = self.state();
        let now = state.now_ms();
        let id = state.uuid();
        // The new id in the old one's place in the list.
        let index = state.installations.get_index_of(installation_id)?;
        let (_, mut installation) = state.installations.shift_remove_index(index)?;
        installation.id = id.clone();
        installation.created = now;
        state.installations.shift_insert(index, id.clone(), installation);
        for token in state.tokens.values_mut() {
            if token.installation.as_deref() == Some(installation_id) {
                token.revoked = true;
            }
        }
        Some(id)
    }

    /// The organization id of an installation.
    pub fn organization_id(&self, installation_id: &str) -> Option<String> {
        let state = self.state();
        let i = state.installations.get(installation_id)?;
        i.organization["id"].as_str().map(str::to_owned)
    }

    /// Sets the registry's clock to the real time plus `secs` (negative: behind).
    pub fn set_clock_offset(&self, secs: i64) {
        self.state().clock_offset_ms = secs * 1000;
    }

    /// Moves the registry's clock by `secs`.
    pub fn advance_clock(&self, secs: i64) {
        self.state().clock_offset_ms += secs * 1000;
    }

    /// The registry's current time.
    pub fn now(&self) -> SystemTime {
        self.state().now_system()
    }

    /// How long new access tokens live (default 2 hours).
    pub fn set_token_lifetime(&self, lifetime: Duration) {
        self.state().token_lifetime = lifetime;
    }

    /// Applies `fault` to each of the next `times` requests.
    pub fn inject(&self, fault: Fault, times: usize) {
        let mut state = self.state();
        for _ in 0..times {
            state.faults.push_back((None, fault.clone()));
        }
    }

    /// Applies `fault` to each of the next `times` requests whose path starts with `path_prefix`.
    pub fn inject_for(&self, path_prefix: &str, fault: Fault, times: usize) {
        let mut state = self.state();
        for _ in 0..times {
            state.faults.push_back((Some(path_prefix.to_owned()), fault.clone()));
        }
    }

    /// Drops every queued fault (the fault rates stay; see [`clear_fault_rates`](Self::clear_fault_rates)).
    pub fn clear_faults(&self) {
        self.state().faults.clear();
    }

    /// From now on, injects faults at random into every request at `rates` (see [`FaultRates`]),
    /// after any queued by [`inject`](Self::inject). Replaces earlier rates and restarts the
    /// generator from `rates.seed`.
    ///
    /// # Errors
    /// [`TestkitError::BadFaultRates`] if a rate is negative or not finite, or the rates add up
    /// to more than 1; the rates in force are then left unchanged.
    pub fn set_fault_rates(&self, rates: FaultRates) -> Result<(), TestkitError> {
        let bands = [
            rates.server_error,
            rates.drop_connection,
            rates.malformed_body,
            rates.retry_after,
            rates.delay,
        ];
        if !(bands.iter().all(|p| p.is_finite() && *p >= 0.0) && bands.iter().sum::<f64>() <= 1.0 + 1e-9) {
            return Err(TestkitError::BadFaultRates);
        }
        let rng = state::SplitMix(rates.seed);
        self.state().fault_rates = Some((rates, rng));
        Ok(())
    }

    /// Stops injecting random faults.
    pub fn clear_fault_rates(&self) {
        self.state().fault_rates = None;
    }

    /// How many faults the [fault rates](Self::set_fault_rates) have injected so far, by kind.
    pub fn injected_faults(&self) -> InjectedFaults {
        self.state().injected
    }

    /// Every request received so far, oldest first.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.state().requests.clone()
    }

    /// Takes the recorded requests, oldest first, and forgets them: for long runs that tally as
    /// they go rather than keep every request. A request still being answered keeps status 0 in
    /// what was taken.
    pub fn take_requests(&self) -> Vec<RecordedRequest> {
        let mut state = self.state();
        let taken = std::mem::take(&mut state.requests);
        state.requests_taken += taken.len();
        taken
    }

    /// Forgets the recorded requests.
    pub fn clear_requests(&self) {
        drop(self.take_requests());
    }

    /// How many installation tokens were minted for `installation_id`.
    pub fn mint_count(&self, installation_id: &str) -> usize {
        self.state()
            .installation_mints
            .get(installation_id)
            .copied()
            .unwrap_or(0)
    }

    /// How many times the app's installation on `organization_id` was looked up
    /// (`GET /app/organizations/{organizationId}/installation`, answered 200 or 404; a faulted
    /// request is not counted).
    pub fn lookup_count(&self, organization_id: &str) -> usize {
        self.state().lookups.get(organization_id).copied().unwrap_or(0)
    }

    /// How many app access tokens were minted.
    pub fn app_token_mint_count(&self) -> usize {
        self.state().app_mints
    }

    /// Revokes every token issued so far.
    pub fn revoke_all_tokens(&self) {
        for t in self.state().tokens.values_mut() {
            t.revoked = true;
        }
    }

    /// Makes `token` expire now.
    pub fn expire_token(&self, token: &str) {
        let mut state = self.state();
        let now = state.now_ms();
        if let Some(t) = state.tokens.get_mut(token) {
            t.expires = now;
        }
    }

    /// Whether the registry accepts `token` right now (issued, not revoked, not expired).
    pub fn token_is_valid(&self, token: &str) -> bool {
        self.token_status(token) == TokenStatus::Valid
    }

    /// What the registry thinks of `token` right now, on its own clock. Faults never touch this.
    pub fn token_status(&self, token: &str) -> TokenStatus {
        let state = self.state();
        let now = state.now_ms();
        match state.tokens.get(token) {
            None => TokenStatus::Unknown,
            Some(t) if t.revoked => TokenStatus::Revoked,
            Some(t) if t.expires <= now => TokenStatus::Expired,
            Some(_) => TokenStatus::Valid,
        }
    }

    /// A webhook delivery as ICR sends it: the body (the payload plus `signedData`, the base64
    /// of the payload's JSON) and the `x-icr-signature-256` header value
    /// (`sha256=` + hex HMAC-SHA256 of `signedData` keyed by `secret`).
    pub fn webhook_delivery(&self, secret: &str, event: &str, installation_id: &str) -> (Vec<u8>, String) {
        let state = self.state();
        let installation = state
            .installations
            .get(installation_id)
            .map_or(serde_json::Value::Null, |i| state.installation_json(i));
        let payload = json!({
            "event": event,
            "state": "",
            "installation": installation,
            "sender": {
                "id": state.uuid(),
                "email": "admin@example.org",
                "fullName": "Organization Admin",
                "profilePicture": null,
                "url": format!("{}/users/admin", state.base_url),
            },
        });
        drop(state);
        let signed_data = base64::engine::general_purpose::STANDARD.encode(payload.to_string());
        let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, secret.as_bytes());
        let tag = ring::hmac::sign(&key, signed_data.as_bytes());
        let signature = format!(
            "sha256={}",
            tag.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>()
        );
        let mut body = payload;
        body["signedData"] = json!(signed_data);
        (body.to_string().into_bytes(), signature)
    }
}
