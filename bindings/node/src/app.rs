//! [`NativeApp`]: the core `App` behind one mutex, its transport policy, and the operations
//! started on it.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use http::Request;
use icr_app_core::{
    AnyOperation, App as CoreApp, AppKey, Error as CoreError, InstallationId, KeyError, OrganizationId, ProxyUrl,
    RetryPolicy, Route as CoreRoute, SecretString, Timestamp, Token, TokenScope, TransportErrorKind, TransportPolicy,
};
use icr_app_driver::{ProxySetting, SSL_CERT_FILE, extra_roots_with, through_proxy};
use icr_app_redis::{DEFAULT_TIMEOUT, RedisStore};
use napi::bindgen_prelude::{Buffer, Either};
use napi_derive::napi;
use zeroize::Zeroizing;

use crate::errors::throw;
use crate::ops::{NativeOperation, token_value};
use crate::webhook::WebhookEvent;

/// The drivers' wall clock.
pub(crate) fn now() -> Timestamp {
    icr_app_driver::now()
}

/// What the mutex guards: the core app, and for each scope the token last handed out by
/// [`NativeApp::hit`] with its serial number (so that JavaScript can hand back the object it
/// made for it).
pub(crate) struct Locked {
    pub(crate) core: CoreApp,
    memo: HashMap<TokenScope, (Token, u32)>,
    serial: u32,
    /// The token of the last hit whose serial JavaScript has not seen yet.
    fresh: Option<Token>,
}

/// The core app, shared by the app and its operations.
pub(crate) type Shared = Arc<Mutex<Locked>>;

pub(crate) fn lock(shared: &Shared) -> MutexGuard<'_, Locked> {
    shared.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The settings `createAppAuth` passes down (already type-checked by `index.js`).
#[napi(object)]
pub struct AppOptions {
    /// The app's id.
    pub app_id: String,
    /// The PEM (PKCS#1 or PKCS#8; `\n`-escaped too) or DER; absent with a signer.
    pub private_key: Option<Either<String, Buffer>>,
    /// Whether the JWT is signed by the user's signer (`Sign` steps) instead of a key.
    pub signer: Option<bool>,
    /// The shared store's sealing secret (with a signer only).
    pub store_key: Option<Buffer>,
    /// The registry's base URL (default `https://api.carbonregistry.com`).
    pub base_url: Option<String>,
    /// The `x-icr-api-version` sent.
    pub api_version: Option<String>,
    /// The `User-Agent` sent.
    pub user_agent: Option<String>,
    /// Send credentials over plain `http://` to hosts other than loopback.
    pub allow_insecure_http: Option<bool>,
    /// Seconds one exchange may take.
    pub timeout: Option<f64>,
    /// How many attempts a failed mint or app call gets.
    pub retry_attempts: Option<u32>,
    /// Seconds the retries of one call may wait in all.
    pub retry_max_wait: Option<f64>,
    /// The largest response body accepted, in bytes.
    pub max_body: Option<f64>,
    /// Share tokens with every process on this Redis (`redis://`, `rediss://`, `unix://`).
    pub redis_url: Option<String>,
    /// Seconds one Redis command may take before the app mints without the store for a while
    /// (default 0.3).
    pub redis_timeout: Option<f64>,
    /// The proxy of every request to the registry (`http://[user:password@]host:port`, or
    /// `https://`), in place of the environment's proxy variables (`NO_PROXY` still applies).
    pub proxy: Option<String>,
    /// A PEM file of CA certificates trusted on top of the built-in roots.
    pub ca_file: Option<String>,
    /// Whether the package's own requests are made (no `fetch` of the user's, which is used as
    /// it is): the proxy and CA settings then apply. Default true.
    pub own_transport: Option<bool>,
    /// This thread's values of the proxy variables (`HTTPS_PROXY`, `https_proxy`, ...,
    /// `NO_PROXY`) and of `SSL_CERT_FILE`; the addon reads no environment itself.
    pub environment: Option<HashMap<String, String>>,
}

/// How the package's own transport reaches the registry, when `fetch` cannot (Node's global
/// `fetch` honours neither a proxy nor extra CA certificates): decided once, by the core's
/// rule ([`icr_app_core::Proxies`]: the explicit proxy or the environment's, `NO_PROXY`,
/// loopback never proxied, a plain `http://` registry never behind a proxy unless insecure
/// HTTP is allowed).
#[napi(object)]
pub struct Network {
    /// The proxy's whole URL, credentials included, for the transport only: never print it.
    pub proxy: Option<String>,
    /// The proxy as `scheme://host:port` (no credentials), to name it.
    pub proxy_shown: Option<String>,
    /// The extra trusted CA certificates (DER): `caFile`'s, then `SSL_CERT_FILE`'s.
    pub ca_certificates: Vec<Buffer>,
}

/// The registry's proxy and the extra CA certificates, when either applies.
struct NetworkPlan {
    proxy: Option<ProxyUrl>,
    ca: Vec<Vec<u8>>,
}

/// What the package's own transport needs (see [`Network`]), checked now: a bad proxy URL or
/// variable, a CA file that cannot be read or holds no certificate, a plain `http://` registry
/// behind a proxy are [`CoreError::Config`] errors naming the setting. `None`: `fetch` does.
fn network_plan(
    options_proxy: Option<&str>,
    ca_file: Option<&str>,
    own_transport: bool,
    environment: &HashMap<String, String>,
    base_url: &str,
    policy: &TransportPolicy,
) -> Result<Option<NetworkPlan>, CoreError> {
    let var = |name: &str| environment.get(name).filter(|v| !v.is_empty()).cloned();
    let setting = match options_proxy {
        Some(url) => ProxySetting::url(url)?,
        None => ProxySetting::Environment,
    };
    let ca_file = ca_file.map(Path::new);
    if !own_transport {
        // The user's fetch is used as it is; a CA file given is still checked.
        extra_roots_with(ca_file, None)?;
        return Ok(None);
    }
    let roots = extra_roots_with(ca_file, var(SSL_CERT_FILE).map(PathBuf::from))?;
    let proxy = match setting.proxies_with(var) {
        Ok(proxies) => proxies
            .for_registry(base_url, policy.allow_insecure_http)
            .map_err(|error| match error {
                CoreError::Config { setting, problem } => CoreError::config(
                    setting,
                    format!("{problem}; in Node: createAppAuth({{ ..., allowInsecureHttp: true }})"),
                ),
                other => other,
            })?
            .cloned(),
        // A proxy variable that is not a proxy URL matters only to a registry it may apply to.
        Err(error) => match base_url.parse::<http::Uri>() {
            Ok(uri) if matches!(policy.check_credential_target(&uri), Ok(CoreRoute::Direct)) => None,
            _ => return Err(error),
        },
    };
    // The CA certificates matter only to TLS: an https registry, or a proxy spoken to over TLS
    // (a plain http registry, loopback in tests, keeps the global fetch).
    let tls = base_url.get(..8).is_some_and(|s| s.eq_ignore_ascii_case("https://"))
        || proxy.as_ref().is_some_and(|p| p.scheme() == "https");
    let roots = if tls { roots } else { Vec::new() };
    Ok((proxy.is_some() || !roots.is_empty()).then(|| NetworkPlan {
        proxy,
        ca: roots.into_iter().map(|cert| cert.to_vec()).collect(),
    }))
}

/// What every exchange must respect: the core's [`TransportPolicy`] in milliseconds and bytes.
#[napi(object)]
pub struct Policy {
    /// The longest one exchange may take.
    pub timeout_ms: f64,
    /// The longest connecting may take.
    pub connect_timeout_ms: f64,
    /// The largest response body accepted.
    pub max_body: f64,
    /// Whether credentials may go over plain `http://` to hosts other than loopback.
    pub allow_insecure_http: bool,
    /// The message of the failure to report when a body exceeds `max_body`.
    pub body_too_large: String,
}

/// Whether a request may be sent: `route` is `direct` (never through a proxy) or `proxy`;
/// otherwise `refused` says why (report it as a `refused` failure).
#[napi(object)]
pub struct Route {
    /// `direct` or `proxy`, when it may be sent.
    pub route: Option<String>,
    /// Why it must not be sent.
    pub refused: Option<String>,
}

/// An app's counters, as the core counts them.
#[napi(object)]
pub struct Stats {
    /// Tokens handed out from the cache without asking anyone.
    pub hits: f64,
    /// Token requests the cache could not answer at once.
    pub misses: f64,
    /// Mint requests sent to the registry.
    pub mints: f64,
    /// Mints of a scope that still held a token.
    pub refreshes: f64,
    /// Failed mint attempts (a retried 503 counts too), a number like the others.
    pub failures: f64,
    /// The same by kind: `unauthorized`, `forbidden`, `not_found`, `rate_limited`, `server`,
    /// `transport`, `malformed`, `signing`, `other` (only kinds that happened).
    pub failures_by_kind: serde_json::Value,
    /// Times a caller waited for a mint in flight.
    pub waits: f64,
    /// Tokens read from the shared store instead of minted.
    pub shared_hits: f64,
    /// Shared store failures.
    pub shared_fallbacks: f64,
    /// Lookups of the app's installation on an organization sent to the registry.
    pub lookups: f64,
    /// Those read from the shared store instead.
    pub shared_lookups: f64,
}

/// The scope named by `kind` (`installation`, `organization` or `app`) and `id`.
pub(crate) fn scope(kind: &str, id: Option<String>) -> napi::Result<TokenScope> {
    match (kind, id) {
        ("app", _) => Ok(TokenScope::App),
        ("installation", Some(id)) => Ok(TokenScope::Installation(InstallationId::new(id).map_err(throw)?)),
        ("organization", Some(id)) => Ok(TokenScope::Organization(OrganizationId::new(id).map_err(throw)?)),
        _ => Err(throw(CoreError::config(
            "scope",
            "name an installation (installationId), an organization (organizationId) or the app",
        ))),
    }
}

fn seconds(what: &'static str, secs: Option<f64>) -> napi::Result<Option<Duration>> {
    match secs {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(_) => Err(throw(CoreError::config(
            what,
            "it must be a number of seconds, 0 or more",
        ))),
    }
}

/// The key `private_key` gives; no message quotes it.
fn app_key(private_key: &Either<String, Buffer>) -> Result<AppKey, CoreError> {
    let parsed = match private_key {
        Either::A(text) => {
            let text = Zeroizing::new(text.clone());
            match AppKey::parse(text.as_bytes()) {
                Err(KeyError::NotAKey) => AppKey::from_text(&text),
                other => other,
            }
        }
        Either::B(bytes) => {
            let bytes: &[u8] = bytes;
            match AppKey::parse(bytes) {
                Err(KeyError::NotAKey) => match std::str::from_utf8(bytes) {
                    Ok(text) => AppKey::from_text(text),
                    Err(_) => Err(KeyError::NotAKey),
                },
                other => other,
            }
        }
    };
    parsed.map_err(CoreError::Key)
}

/// One ICR app: its id, key (or signer), settings, learned clock offset and token cache.
#[napi]
pub struct NativeApp {
    shared: Shared,
    policy: Arc<TransportPolicy>,
    store: Option<Arc<RedisStore>>,
    network: Option<NetworkPlan>,
}

/// A seed for the store's lease owner id, different in every process and every app.
fn owner_seed() -> u64 {
    use std::hash::BuildHasher;
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    std::collections::hash_map::RandomState::new().hash_one((std::process::id(), nanos))
}

#[napi]
impl NativeApp {
    /// Builds the core app; throws `[icr:key]` for a bad key and `[icr:config]` for a bad
    /// setting.
    #[napi(constructor)]
    pub fn new(options: AppOptions) -> napi::Result<Self> {
        let signer = options.signer.unwrap_or(false);
        let mut builder = match (&options.private_key, signer) {
            (Some(_), true) => {
                return Err(throw(CoreError::config(
                    "privateKey",
                    "give either privateKey (the key itself) or signer (a function that signs with a key kept elsewhere, a KMS or an HSM), not both",
                )));
            }
            (None, false) => {
                return Err(throw(CoreError::config(
                    "privateKey",
                    "give the app's private key (privateKey: its PEM), or signer: an async function returning the RS256 signature of the bytes it is given, for a key kept in a KMS or an HSM",
                )));
            }
            (Some(key), false) => {
                if options.store_key.is_some() {
                    return Err(throw(CoreError::config(
                        "storeKey",
                        "with its private key the app seals shared tokens under a secret derived from the key; give storeKey only with signer",
                    )));
                }
                CoreApp::builder(options.app_id.clone(), app_key(key).map_err(throw)?)
            }
            (None, true) => {
                let builder = CoreApp::builder_without_key(options.app_id.clone());
                match &options.store_key {
                    Some(secret) => builder.sealing_secret(secret),
                    None => builder,
                }
            }
        };
        if let Some(url) = options.base_url {
            builder = builder.base_url(url);
        }
        if let Some(v) = options.api_version {
            builder = builder.api_version(v);
        }
        if let Some(ua) = options.user_agent {
            builder = builder.user_agent(ua);
        }
        if options.retry_attempts.is_some() || options.retry_max_wait.is_some() {
            let default = RetryPolicy::default();
            builder = builder.retry(RetryPolicy {
                max_attempts: options.retry_attempts.unwrap_or(default.max_attempts).max(1),
                max_wait: seconds("retryMaxWait", options.retry_max_wait)?.unwrap_or(default.max_wait),
            });
        }
        let mut core = builder.build().map_err(throw)?;
        let store = match options.redis_url {
            Some(url) => {
                let timeout = seconds("redisTimeout", options.redis_timeout)?
                    .unwrap_or(DEFAULT_TIMEOUT)
                    .max(Duration::from_millis(1));
                let store = RedisStore::connect(&url).map_err(throw)?.timeout(timeout);
                core.attach_store(store.settings(), owner_seed()).map_err(|error| match error {
                    CoreError::Config { setting, problem } if signer => CoreError::config(
                        setting,
                        format!(
                            "{problem}. In Node: createAppAuth({{ appId, signer, storeKey, redisUrl }}), storeKey being at least 32 random bytes, the same in every process sharing the store"
                        ),
                    ),
                    other => other,
                }).map_err(throw)?;
                Some(Arc::new(store))
            }
            None if options.redis_timeout.is_some() => {
                return Err(throw(CoreError::config(
                    "redisTimeout",
                    "it applies to a shared store: give redisUrl too",
                )));
            }
            None => None,
        };
        let mut policy = match seconds("timeout", options.timeout)? {
            Some(total) => TransportPolicy::with_timeout(total),
            None => TransportPolicy::default(),
        };
        policy.allow_insecure_http = options.allow_insecure_http.unwrap_or(false);
        if let Some(cap) = options.max_body {
            if !(cap.is_finite() && cap >= 1.0) {
                return Err(throw(CoreError::config(
                    "maxBody",
                    "it must be a number of bytes, 1 or more",
                )));
            }
            policy.max_body = cap as u64;
        }
        let network = network_plan(
            options.proxy.as_deref(),
            options.ca_file.as_deref(),
            options.own_transport.unwrap_or(true),
            &options.environment.unwrap_or_default(),
            core.api().base_url(),
            &policy,
        )
        .map_err(throw)?;
        Ok(Self {
            shared: Arc::new(Mutex::new(Locked {
                core,
                memo: HashMap::new(),
                serial: 0,
                fresh: None,
            })),
            policy: Arc::new(policy),
            store,
            network,
        })
    }

    /// How the package's own transport reaches the registry (a proxy, extra CA certificates),
    /// or `null` when the global `fetch` can (or the user's `fetch` is used).
    #[napi]
    pub fn network(&self) -> Option<Network> {
        self.network.as_ref().map(|plan| Network {
            proxy: plan.proxy.as_ref().map(|p| p.expose_url().to_owned()),
            proxy_shown: plan.proxy.as_ref().map(ToString::to_string),
            ca_certificates: plan.ca.iter().map(|der| Buffer::from(der.clone())).collect(),
        })
    }

    /// `message` (a failure of an exchange through the registry's proxy; `kind` `connect`,
    /// `timeout`, `connection_lost` or `other`) naming the proxy without its credentials, with
    /// what to check, as every driver words it.
    #[napi]
    pub fn through_proxy(&self, kind: String, message: String) -> String {
        let Some(proxy) = self.network.as_ref().and_then(|plan| plan.proxy.as_ref()) else {
            return message;
        };
        let error = CoreError::Transport {
            kind: TransportErrorKind::from_name(&kind),
            message,
        };
        match through_proxy(error, proxy) {
            CoreError::Transport { message, .. } => message,
            other => other.to_string(),
        }
    }

    /// The cached token for the scope, handed out now: 0 when there is none to hand out (drive
    /// a `token` operation), else its serial number: the same as last time for the same token
    /// (reuse the object made for it), a new one for a new token (take it with `freshToken`).
    #[napi]
    pub fn hit(&self, kind: String, id: Option<String>) -> napi::Result<u32> {
        let scope = scope(&kind, id)?;
        let mut guard = lock(&self.shared);
        let Locked {
            core,
            memo,
            serial,
            fresh,
        } = &mut *guard;
        let Some(token) = core.hit(&scope, now(), None) else {
            return Ok(0);
        };
        if let Some((known, n)) = memo.get(&scope)
            && known.same_as(&token)
        {
            return Ok(*n);
        }
        *serial = serial.wrapping_add(1).max(1);
        let n = *serial;
        memo.insert(scope, (token.clone(), n));
        *fresh = Some(token);
        Ok(n)
    }

    /// The token of the last `hit` that returned a new serial, as the value `auth()` returns,
    /// with `serveUntil`: until when (milliseconds since the epoch, this machine's clock) the
    /// core would hand it out again without a refresh, its refresh time or its minimum
    /// remaining life, whichever comes first. Until then, and while no operation on the app
    /// has reported back, `index.js` hands out the same object without calling in (counting
    /// those hits itself).
    #[napi]
    pub fn fresh_token(&self) -> Option<serde_json::Value> {
        let mut guard = lock(&self.shared);
        let token = guard.fresh.take()?;
        let min_remaining = guard.core.cache_config().min_remaining;
        let until = token.refresh_at().min(token.expires_local().minus(min_remaining));
        let mut value = token_value(&token);
        value["serveUntil"] = serde_json::Value::from(until.unix_millis());
        Some(value)
    }

    /// A token for the scope with at least `min_life` seconds left.
    #[napi]
    pub fn token(&self, kind: String, id: Option<String>, min_life: Option<f64>) -> napi::Result<NativeOperation> {
        let scope = scope(&kind, id)?;
        let min_life = seconds("minLife", min_life)?;
        Ok(self.operation(AnyOperation::token(scope, min_life)))
    }

    /// The app JWT.
    #[napi]
    pub fn jwt(&self) -> NativeOperation {
        self.operation(AnyOperation::app_jwt())
    }

    /// One installation (`GET /app/installations/{id}`).
    #[napi]
    pub fn installation(&self, id: String) -> napi::Result<NativeOperation> {
        let id = InstallationId::new(id).map_err(throw)?;
        Ok(self.operation(AnyOperation::installation(id)))
    }

    /// The app's installation on an organization.
    #[napi]
    pub fn installation_for_organization(&self, id: String) -> napi::Result<NativeOperation> {
        let id = OrganizationId::new(id).map_err(throw)?;
        Ok(self.operation(AnyOperation::installation_for_organization(id)))
    }

    /// One page of installations (`page` from 0); `seen` installations were listed before
    /// it, and its value's `hasMore` says whether to ask for the next one.
    #[napi]
    pub fn installations_page(&self, limit: u32, page: u32, seen: u32) -> NativeOperation {
        self.operation(AnyOperation::installations_page(limit, page))
            .with_page(limit, seen as usize)
    }

    /// Any request, authorised as the scope: `url` a path starting with `/` or an absolute
    /// URL on the registry; `headers` flat `[name, value, ...]`.
    #[napi]
    pub fn send_as(
        &self,
        kind: String,
        id: Option<String>,
        method: String,
        url: String,
        headers: Vec<String>,
        body: Option<Buffer>,
    ) -> napi::Result<NativeOperation> {
        let scope = scope(&kind, id)?;
        if !url.starts_with('/') && !url.contains("://") {
            return Err(throw(CoreError::config(
                "request path",
                format!("`{}` must start with `/`", icr_app_core::excerpt(&url, 80)),
            )));
        }
        let pairs: Vec<(&str, &str)> = headers
            .chunks(2)
            .filter(|pair| pair.len() == 2)
            .map(|pair| (pair[0].as_str(), pair[1].as_str()))
            .collect();
        let body = body.map(|b| b.to_vec());
        let op = {
            let guard = lock(&self.shared);
            AnyOperation::send_as(&guard.core, scope, &method, &url, &pairs, body).map_err(throw)?
        };
        Ok(self.operation(op))
    }

    /// Revokes one token and drops it from the cache.
    #[napi]
    pub fn revoke(&self, token: String) -> NativeOperation {
        self.operation(AnyOperation::revoke(SecretString::new(token)))
    }

    /// What a verified webhook event drops (`uninstalled`, `suspended`,
    /// `newPermissionsAccepted`: the installation's token and the organization's remembered
    /// installation, here and in the shared store); the result is whether it dropped anything.
    #[napi]
    pub fn handle_event(&self, event: &WebhookEvent) -> NativeOperation {
        self.operation(AnyOperation::handle_event(&event.inner))
    }

    /// Forgets the scope (an installation's token, or an organization's remembered installation
    /// and that one's token), here and in the shared store.
    #[napi]
    pub fn forget(&self, kind: String, id: Option<String>) -> napi::Result<NativeOperation> {
        Ok(self.operation(AnyOperation::forget(scope(&kind, id)?)))
    }

    /// Revokes every cached token; the result is how many.
    #[napi]
    pub fn revoke_all(&self) -> NativeOperation {
        self.operation(AnyOperation::revoke_all())
    }

    /// The core's change counter: it moves whenever any operation on this app is reported to
    /// or abandoned.
    #[napi]
    pub fn changes(&self) -> f64 {
        lock(&self.shared).core.changes() as f64
    }

    /// The app's counters.
    #[napi]
    pub fn stats(&self) -> Stats {
        let s = lock(&self.shared).core.stats();
        Stats {
            hits: s.hits as f64,
            misses: s.misses as f64,
            mints: s.mints as f64,
            refreshes: s.refreshes as f64,
            failures: s.failures.values().sum::<u64>() as f64,
            failures_by_kind: serde_json::Value::Object(
                s.failures
                    .into_iter()
                    .map(|(k, v)| (k.to_owned(), serde_json::Value::from(v)))
                    .collect(),
            ),
            waits: s.waits as f64,
            shared_hits: s.shared_hits as f64,
            shared_fallbacks: s.shared_fallbacks as f64,
            lookups: s.lookups as f64,
            shared_lookups: s.shared_lookups as f64,
        }
    }

    /// Where this app shares its tokens: the Redis URL with its password replaced by `***`,
    /// or `null` without a shared store.
    #[napi(getter)]
    pub fn redis_url(&self) -> Option<String> {
        self.store.as_ref().map(|store| store.url().to_owned())
    }

    /// The registry's base URL.
    #[napi(getter)]
    pub fn base_url(&self) -> String {
        lock(&self.shared).core.api().base_url().to_owned()
    }

    /// Server clock minus this machine's, in seconds, as learned so far.
    #[napi(getter)]
    pub fn clock_offset(&self) -> f64 {
        lock(&self.shared).core.clock_offset().millis as f64 / 1000.0
    }

    /// The transport policy every exchange follows.
    #[napi]
    pub fn policy(&self) -> Policy {
        Policy {
            timeout_ms: self.policy.timeout.as_secs_f64() * 1000.0,
            connect_timeout_ms: self.policy.connect_timeout.as_secs_f64() * 1000.0,
            max_body: self.policy.max_body as f64,
            allow_insecure_http: self.policy.allow_insecure_http,
            body_too_large: match self.policy.body_too_large() {
                CoreError::Transport { message, .. } => message,
                other => other.to_string(),
            },
        }
    }

    /// Whether a request to `url` may be sent (`credential`: it carries one), and how. (A
    /// `send` step carries this check already, as `refused`.)
    #[napi]
    pub fn route(&self, url: String, credential: bool) -> Route {
        match check_route(&self.policy, &url, credential) {
            Ok(CoreRoute::Direct) => Route {
                route: Some("direct".into()),
                refused: None,
            },
            Ok(_) => Route {
                route: Some("proxy".into()),
                refused: None,
            },
            Err(CoreError::Transport { message, .. }) => Route {
                route: None,
                refused: Some(message),
            },
            Err(other) => Route {
                route: None,
                refused: Some(other.to_string()),
            },
        }
    }

    /// Whether `url` is on the configured registry (same scheme, host and port, a path under
    /// the base URL's).
    #[napi]
    pub fn is_registry(&self, url: String) -> bool {
        let Ok(uri) = url.parse::<http::Uri>() else {
            return false;
        };
        lock(&self.shared).core.api().is_registry(&uri)
    }
}

impl NativeApp {
    fn operation(&self, op: AnyOperation) -> NativeOperation {
        NativeOperation::new(
            Arc::clone(&self.shared),
            Arc::clone(&self.policy),
            self.store.clone(),
            op,
        )
    }
}

/// The transport policy's verdict on a request to `url` (`credential`: it carries one).
pub(crate) fn check_route(policy: &TransportPolicy, url: &str, credential: bool) -> Result<CoreRoute, CoreError> {
    match url.parse::<http::Uri>() {
        Err(_) => Err(CoreError::transport(
            TransportErrorKind::Refused,
            "the request's URL is not a valid absolute URL",
        )),
        Ok(uri) if credential => policy.check_credential_target(&uri),
        Ok(uri) => {
            let mut probe = Request::new(());
            *probe.uri_mut() = uri;
            policy.check(&probe)
        }
    }
}
