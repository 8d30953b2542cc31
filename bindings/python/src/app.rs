//! [`App`]: the core `App` behind one Rust mutex, and the [`TransportPolicy`] drivers apply.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, TryLockError};
use std::time::Duration;

use arc_swap::{ArcSwap, ArcSwapOption};
use icr_app_core::{
    AnyOperation, AnyStep, App as CoreApp, AppKey, Error as CoreError, Outcome, RetryPolicy, Route, Timestamp,
    Token as CoreToken, TokenScope, TransportPolicy as CorePolicy,
};
use icr_app_driver::ProxySetting;
use icr_app_redis::RedisStore;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::{PyTraverseError, PyVisit};
use zeroize::Zeroizing;

use crate::errors::to_py;
use crate::ops::{self, SendStep};
use crate::scope::{same_scope, scope};
use crate::stats::Stats;
use crate::store::{StoreConfig, owner_seed};
use crate::values::Token;
use crate::{fork_generation, logs};

/// `now` given in seconds since the epoch (`time.time()`), or the drivers' wall clock.
pub(crate) fn now(now: Option<f64>) -> Timestamp {
    match now {
        Some(secs) if secs.is_finite() => Timestamp::from_unix_millis((secs * 1000.0) as i64),
        _ => icr_app_driver::now(),
    }
}

pub(crate) fn seconds(t: Timestamp) -> f64 {
    t.unix_millis() as f64 / 1000.0
}

/// One core `App`, the fork generation it was built in, and the shared token store attached to
/// it (if any).
pub(crate) struct Shared {
    pub(crate) app: Mutex<Locked>,
    pub(crate) generation: u64,
    pub(crate) store: ArcSwapOption<RedisStore>,
}

/// What the mutex guards: the core app, and the token last handed out by `installation_token`
/// (so that a hit is one lock).
pub(crate) struct Locked {
    pub(crate) core: CoreApp,
    memo: Option<Memo>,
}

impl Shared {
    fn new(app: CoreApp, generation: u64) -> Self {
        Self {
            app: Mutex::new(Locked { core: app, memo: None }),
            generation,
            store: ArcSwapOption::empty(),
        }
    }

    /// Attaches `store` to the core app (a new lease owner id): from now on its operations
    /// share tokens through it.
    fn attach(&self, py: Python<'_>, store: RedisStore) -> Result<(), CoreError> {
        let settings = store.settings();
        // The step that asks for a command finds the store here: set it before the core asks.
        self.store.store(Some(Arc::new(store)));
        let attached = self.with(py, |app| app.attach_store(settings, owner_seed()));
        if attached.is_err() {
            self.store.store(None);
        }
        attached
    }

    /// Runs `f` on the core app. Takes the mutex without releasing the GIL when it is free;
    /// otherwise releases the GIL while waiting for it. Then hands the core's buffered log records
    /// to Python.
    pub(crate) fn with<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut CoreApp) -> R + Send) -> R {
        let result = match self.app.try_lock() {
            Ok(mut guard) => f(&mut guard.core),
            Err(TryLockError::Poisoned(poisoned)) => f(&mut poisoned.into_inner().core),
            Err(TryLockError::WouldBlock) => py.detach(|| f(&mut self.lock().core)),
        };
        logs::flush(py);
        result
    }

    pub(crate) fn lock(&self) -> MutexGuard<'_, Locked> {
        self.app.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// How the app JWT is signed.
enum Credential {
    /// With the private key, in the core.
    Key(AppKey),
    /// By the signer given (`App(signer=...)`), performed by the drivers as the core's `Sign`
    /// step; `sealing` is the shared store's sealing secret, as given.
    Signer {
        signer: Py<PyAny>,
        sealing: Option<Zeroizing<Vec<u8>>>,
    },
}

/// What rebuilds the core app (in the child of a fork).
struct Config {
    app_id: String,
    credential: Credential,
    base_url: Option<String>,
    api_version: Option<String>,
    user_agent: Option<String>,
    retry: Option<RetryPolicy>,
}

impl Config {
    /// The key's fingerprint; `None` without the key.
    fn fingerprint(&self) -> Option<String> {
        match &self.credential {
            Credential::Key(key) => Some(key.fingerprint()),
            Credential::Signer { .. } => None,
        }
    }

    fn build(&self) -> Result<CoreApp, CoreError> {
        let seed = RandomState::new().build_hasher().finish();
        let mut builder = match &self.credential {
            Credential::Key(key) => CoreApp::builder(self.app_id.clone(), key.clone()),
            Credential::Signer { sealing, .. } => {
                let builder = CoreApp::builder_without_key(self.app_id.clone());
                match sealing {
                    Some(secret) => builder.sealing_secret(secret),
                    None => builder,
                }
            }
        }
        .seed(seed);
        if let Some(url) = &self.base_url {
            builder = builder.base_url(url.clone());
        }
        if let Some(v) = &self.api_version {
            builder = builder.api_version(v.clone());
        }
        if let Some(ua) = &self.user_agent {
            builder = builder.user_agent(ua.clone());
        }
        if let Some(retry) = &self.retry {
            builder = builder.retry(retry.clone());
        }
        builder.build()
    }
}

/// One ICR app: its id, private key, settings, learned clock offset and token cache (the core's
/// `App`, behind one mutex). Share one `App` between every client of the app, in every thread:
/// they then share one token cache.
///
/// `private_key` is the key downloaded from the app's Credentials tab: its PEM as `str` or
/// `bytes` (PKCS#1 `BEGIN RSA PRIVATE KEY` or PKCS#8 `BEGIN PRIVATE KEY`; DER bytes too; a PEM
/// pasted into an environment variable with `\n` escapes works as well), or the path of the
/// file (`pathlib.Path`, any `os.PathLike`, or a `str` that is no key and names a file). No
/// error ever quotes it.
///
/// Keyword options: `api_version` (`x-icr-api-version`, default `2023-06-16`), `user_agent`,
/// `allow_insecure_http` (send credentials over plain `http://` to hosts other than loopback;
/// loopback needs no opt-in), `timeout` (seconds for one exchange, default 30), `max_body`
/// (response body cap in bytes, default 8 MiB), `retry_attempts` and `retry_max_wait` (how
/// often and how long a failed mint or app call is retried: default 4 attempts within 30 s),
/// `redis_url` (share tokens with every process on that Redis: see `Client`) and
/// `redis_timeout` (seconds one Redis command may take before the App mints without the store
/// for a while; default 0.3), `proxy` (`http://host:port` or `http://user:password@host:port`:
/// the proxy of the package's own HTTP clients, in place of the environment's `HTTPS_PROXY`,
/// `HTTP_PROXY`, `ALL_PROXY`; `NO_PROXY` still applies; loopback is never proxied; a plain
/// `http://` registry behind a proxy raises `ConfigError` unless `allow_insecure_http`) and
/// `ca_file` (a PEM file of CA certificates trusted on top of the default roots, for the
/// registry and an `https://` proxy; `SSL_CERT_FILE` is honoured too).
///
/// The shared token store belongs to the App: `App(..., redis_url=URL)`, or the first
/// `Client(app, redis_url=URL)` / `AsyncClient(app, redis_url=URL)`, attaches it, and every
/// client of the App then shares tokens through it, with or without `redis_url`. The same URL
/// again is fine; another URL raises `ConfigError` (one App, one store: make another App).
#[pyclass(module = "icr_app", frozen, dict, weakref)]
pub struct App {
    config: Config,
    policy: CorePolicy,
    shared: ArcSwap<Shared>,
    /// What the shared token store was made from (read lock-free: a fork can happen anywhere).
    store: ArcSwapOption<StoreConfig>,
    /// `proxy=` (or the environment's), and `ca_file=`.
    proxy: ProxySetting,
    ca_file: Option<PathBuf>,
    /// `ca_file`'s certificates (PEM), read when the App was made: the only CA for `rediss://`.
    ca_pem: Option<Vec<u8>>,
}

impl App {
    /// The core app of this process: in the child of a fork, the first time it is used there,
    /// the parent's (see [`inherited`](Self::inherited)), else a new one.
    pub(crate) fn shared(&self) -> Arc<Shared> {
        let current = self.shared.load();
        let generation = fork_generation();
        if current.generation == generation {
            return Arc::clone(&current);
        }
        let mut core = self.inherited(&current).unwrap_or_else(|| {
            self.config
                .build()
                .expect("the settings were valid when the App was made")
        });
        // The shared store again, with new connections and a new lease owner id: this process
        // must neither use its parent's sockets nor pass for its parent.
        let store = self.store.load_full().and_then(|config| {
            let store = config.reconnect().ok()?;
            core.attach_store(store.settings(), owner_seed()).ok()?;
            Some(Arc::new(store))
        });
        let fresh = Shared::new(core, generation);
        fresh.store.store(store);
        let fresh = Arc::new(fresh);
        let previous = self.shared.compare_and_swap(&current, Arc::clone(&fresh));
        if Arc::ptr_eq(&previous, &current) || previous.generation != generation {
            fresh
        } else {
            // Another thread of this process rebuilt it first: use that one.
            Arc::clone(&previous)
        }
    }
}

impl App {
    /// The core app the parent of this forked process used, made this process's own
    /// (`CoreApp::after_fork`): its cached tokens and learned clock kept, what was in flight given
    /// up, the shared store detached. `None` when another thread of the parent held it at the
    /// moment of the fork (it may be half changed, and that lock is never released here): the
    /// child then starts with an empty cache.
    fn inherited(&self, parent: &Shared) -> Option<CoreApp> {
        let mut guard = parent.app.try_lock().ok()?;
        let placeholder = self.config.build().ok()?;
        let mut core = std::mem::replace(&mut guard.core, placeholder);
        drop(guard);
        core.after_fork(RandomState::new().build_hasher().finish(), now(None));
        Some(core)
    }
}

/// The last token `installation_token` handed out without a `min_life`, with its Python object:
/// asked again for the same id (or `ByOrganization`), and the core still handing out that token,
/// the same object goes back (no UTF-8 copy of the id, no allocation).
struct Memo {
    /// The `installation_id` object it was asked for (compared by identity, then by value).
    id: Option<Py<PyAny>>,
    scope: TokenScope,
    token: CoreToken,
    object: Py<Token>,
}

impl App {
    /// Runs `f` on this process's core app (without touching the `Arc`'s count when the core is
    /// current).
    fn with_core<R: Send>(&self, py: Python<'_>, f: impl FnOnce(&mut CoreApp) -> R + Send) -> R {
        let current = self.shared.load();
        if current.generation == fork_generation() {
            return current.with(py, f);
        }
        drop(current);
        self.shared().with(py, f)
    }

    /// Attaches the shared store at `url` (`timeout`: `redis_timeout` in seconds); see
    /// `_attach_store`.
    fn attach_store(&self, py: Python<'_>, url: &str, timeout: Option<f64>, lease_ttl: Option<f64>) -> PyResult<()> {
        let timeout = duration("redis_timeout", timeout)?;
        let lease_ttl = duration("redis_lease_ttl", lease_ttl)?;
        let one_store = |config: &StoreConfig| {
            if !config.is(url) {
                return Err(to_py(CoreError::config(
                    "redis_url",
                    format!(
                        "this App already shares its tokens through the Redis at {}; an App has one store: make another App for another one",
                        config.shown
                    ),
                )));
            }
            match timeout {
                Some(t) if t.max(Duration::from_millis(1)) != config.timeout => Err(to_py(CoreError::config(
                    "redis_timeout",
                    format!(
                        "this App's store at {} gives up after {} ms; an App has one store: give its clients the same redis_timeout, or none",
                        config.shown,
                        config.timeout.as_millis()
                    ),
                ))),
                _ if lease_ttl.is_some() && lease_ttl != config.lease_ttl => Err(to_py(CoreError::config(
                    "redis_lease_ttl",
                    format!(
                        "this App's store at {} has another lease time; an App has one store: give its clients the same redis_lease_ttl, or none",
                        config.shown
                    ),
                ))),
                _ => Ok(()),
            }
        };
        if let Some(config) = self.store.load().as_ref() {
            return one_store(config);
        }
        let (config, store) = StoreConfig::connect(
            url,
            timeout.map(|t| t.max(Duration::from_millis(1))),
            lease_ttl,
            self.ca_pem.clone(),
        )
        .map_err(to_py)?;
        let config = Arc::new(config);
        let previous = self
            .store
            .compare_and_swap(&None::<Arc<StoreConfig>>, Some(Arc::clone(&config)));
        if let Some(previous) = previous.as_ref() {
            // Another thread attached one meanwhile.
            return one_store(previous);
        }
        let attached = self.shared().attach(py, store);
        if let Err(error) = attached {
            self.store.store(None);
            return Err(to_py(self.for_python(error)));
        }
        Ok(())
    }

    /// The token for `installation_id` (a `str`, a `ByOrganization`, or `None`: the app) with
    /// `min_life` seconds left, from the cache, or the `GetToken` operation to drive (polled
    /// once: its first step is kept for the driver).
    pub(crate) fn token_or_operation(
        &self,
        py: Python<'_>,
        installation_id: Option<&Bound<'_, PyAny>>,
        min_life: Option<f64>,
    ) -> PyResult<Found> {
        if min_life.is_none()
            && let Some(hit) = self.hit(py, installation_id)
        {
            return Ok(Found::Token(match hit {
                Hit::Kept(object) => object,
                Hit::New(scope, token) => {
                    let object = Py::new(py, Token { inner: token.clone() })?;
                    self.remember(py, installation_id, &scope, token, &object);
                    object
                }
            }));
        }
        let scope = scope(installation_id)?;
        let min_life_given = min_life.is_some();
        let mut op = AnyOperation::token(scope.clone(), duration("min_life", min_life)?);
        let t = now(None);
        let step = self.with_core(py, |app| op.poll(app, t));
        match step {
            AnyStep::Done(Ok(Outcome::Token(token))) => {
                let object = Py::new(py, Token { inner: token.clone() })?;
                if !min_life_given {
                    self.remember(py, installation_id, &scope, token, &object);
                }
                Ok(Found::Token(object))
            }
            AnyStep::Done(Err(error)) => Err(to_py(error)),
            first => {
                let shared = self.shared();
                let op = ops::new_operation(py, shared, op, first, ops::Class::GetToken)?;
                Ok(Found::Operation(op))
            }
        }
    }

    /// The hit: the memo is for `installation_id` and the core hands out a token for it now
    /// (one lock, one clock read): the memo's object when it is the same token, else the new
    /// token (counted as a hit already). `None` for anything else (another id, a mint to drive,
    /// the lock taken), which the caller then asks the core for in full: a failed hit changes
    /// nothing but a recency mark.
    fn hit(&self, py: Python<'_>, installation_id: Option<&Bound<'_, PyAny>>) -> Option<Hit> {
        let current = self.shared.load();
        if current.generation != fork_generation() {
            return None;
        }
        // `try_lock`: never wait for the lock here, with the GIL held.
        let mut guard = current.app.try_lock().ok()?;
        let Locked { core, memo } = &mut *guard;
        let memo = memo
            .as_ref()
            .filter(|m| same_scope(m.id.as_ref().map(|id| id.bind(py)), installation_id))?;
        let token = core.hit(&memo.scope, now(None), None)?;
        Some(if token.same_as(&memo.token) {
            Hit::Kept(memo.object.clone_ref(py))
        } else {
            // Its Python object is made after the lock (making one can run Python code).
            Hit::New(memo.scope.clone(), token)
        })
    }

    /// Makes `object` the memo for `installation_id`.
    fn remember(
        &self,
        py: Python<'_>,
        installation_id: Option<&Bound<'_, PyAny>>,
        scope: &TokenScope,
        token: CoreToken,
        object: &Py<Token>,
    ) {
        let memo = Memo {
            id: installation_id.map(|id| id.clone().unbind()),
            scope: scope.clone(),
            token,
            object: object.clone_ref(py),
        };
        let current = self.shared.load();
        if current.generation == fork_generation()
            && let Ok(mut guard) = current.app.try_lock()
        {
            // The old memo's objects are dropped after the lock (dropping a Python object can
            // run Python code, which may ask for a token).
            let old = guard.memo.replace(memo);
            drop(guard);
            drop(old);
        }
    }
}

impl App {
    /// The core's refusal to attach a store to an app without a key and a sealing secret, with
    /// the Python setting named.
    fn for_python(&self, error: CoreError) -> CoreError {
        match (&self.config.credential, error) {
            (Credential::Signer { sealing: None, .. }, CoreError::Config { setting, problem }) => CoreError::config(
                setting,
                format!(
                    "{problem}. In Python: App(app_id, signer=..., sealing_secret=SECRET, redis_url=...), SECRET being at least 32 random bytes, the same in every process sharing the store"
                ),
            ),
            (_, error) => error,
        }
    }
}

/// What [`App::hit`] found.
enum Hit {
    /// The memo's object: its token is still the one to hand out.
    Kept(Py<Token>),
    /// Another token for the memo's scope (a refresh landed): it needs an object of its own.
    New(TokenScope, CoreToken),
}

/// What [`App::token_or_operation`] found.
pub(crate) enum Found {
    /// A token, at once.
    Token(Py<Token>),
    /// The operation that gets it, to drive.
    Operation(Py<PyAny>),
}

/// `Client.installation_token` without a Python frame: cached tokens straight from Rust; a
/// needed mint goes to the driver's `run(operation)`.
#[pyclass(module = "icr_app", frozen)]
pub struct TokenGetter {
    app: Py<App>,
    run: Py<PyAny>,
}

#[pymethods]
impl TokenGetter {
    /// A token for the installation (a `str`, a `ByOrganization`, or `None`: the app) with at
    /// least `min_life` seconds left.
    #[pyo3(signature = (installation_id, *, min_life = None))]
    fn get(
        &self,
        py: Python<'_>,
        installation_id: Option<&Bound<'_, PyAny>>,
        min_life: Option<f64>,
    ) -> PyResult<Py<PyAny>> {
        self.__call__(py, installation_id, min_life)
    }

    #[pyo3(signature = (installation_id, *, min_life = None))]
    fn __call__(
        &self,
        py: Python<'_>,
        installation_id: Option<&Bound<'_, PyAny>>,
        min_life: Option<f64>,
    ) -> PyResult<Py<PyAny>> {
        match self.app.get().token_or_operation(py, installation_id, min_life)? {
            Found::Token(token) => Ok(token.into_any()),
            Found::Operation(op) => self.run.call1(py, (op,)),
        }
    }
}

/// How `App(private_key=..., signer=..., sealing_secret=...)` signs: exactly one of the key and
/// the signer; the sealing secret only with a signer. No message quotes what was given.
fn credential(
    private_key: Option<&Bound<'_, PyAny>>,
    signer: Option<&Bound<'_, PyAny>>,
    sealing_secret: Option<&Bound<'_, PyAny>>,
) -> PyResult<Credential> {
    match (private_key, signer) {
        (Some(_), Some(_)) => Err(to_py(CoreError::config(
            "private_key",
            "give either private_key (the key itself) or signer (a function that signs with a key kept elsewhere, a KMS or an HSM), not both",
        ))),
        (None, None) => Err(to_py(CoreError::config(
            "private_key",
            "give the app's private key (private_key=: the key file's path or its PEM), or signer=: a function that returns the RS256 signature of the bytes it is given, for a key kept in a KMS or an HSM",
        ))),
        (Some(key), None) => {
            if sealing_secret.is_some() {
                return Err(to_py(CoreError::config(
                    "sealing_secret",
                    "an App with its private key seals shared tokens under a secret derived from the key; give sealing_secret only with signer=",
                )));
            }
            Ok(Credential::Key(crate::key::app_key(key)?))
        }
        (None, Some(signer)) => {
            if !signer.is_callable() {
                return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                    "signer must be a function (or an async def coroutine function) taking the bytes to sign and returning their RS256 signature as bytes, not {}",
                    signer.get_type().name()?
                )));
            }
            let sealing = match sealing_secret {
                None => None,
                Some(secret) => match secret.cast::<PyBytes>() {
                    Ok(bytes) => Some(Zeroizing::new(bytes.as_bytes().to_vec())),
                    Err(_) => {
                        return Err(pyo3::exceptions::PyTypeError::new_err(
                            "sealing_secret must be bytes: at least 32 random bytes (e.g. `openssl rand 32`), the same in every process sharing the store",
                        ));
                    }
                },
            };
            Ok(Credential::Signer {
                signer: signer.clone().unbind(),
                sealing,
            })
        }
    }
}

fn no_url() -> PyErr {
    to_py(CoreError::config(
        "redis_timeout",
        "it (like redis_lease_ttl) applies to a shared store: give redis_url too",
    ))
}

/// The CA certificates in the file at `path` (PEM), read now so that a missing or unreadable
/// file is a `ConfigError` when the App is made, naming the file.
fn read_ca_file(path: &std::path::Path) -> PyResult<Vec<u8>> {
    let pem = std::fs::read(path).map_err(|e| {
        to_py(CoreError::config(
            "ca_file",
            format!(
                "could not read {} ({e}); give the path of a PEM file of CA certificates",
                path.display()
            ),
        ))
    })?;
    if !pem.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") {
        return Err(to_py(CoreError::config(
            "ca_file",
            format!(
                "{} holds no certificate; expected one or more -----BEGIN CERTIFICATE----- blocks",
                path.display()
            ),
        )));
    }
    Ok(pem)
}

pub(crate) fn duration(what: &str, secs: Option<f64>) -> PyResult<Option<Duration>> {
    match secs {
        None => Ok(None),
        Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
        Some(_) => Err(to_py(CoreError::config(
            "duration",
            format!("{what} must be a number of seconds, 0 or more"),
        ))),
    }
}

#[pymethods]
impl App {
    #[new]
    #[pyo3(signature = (app_id, private_key = None, base_url = None, *, signer = None, sealing_secret = None, api_version = None, user_agent = None, allow_insecure_http = false, timeout = None, max_body = None, retry_attempts = None, retry_max_wait = None, redis_url = None, redis_timeout = None, redis_lease_ttl = None, proxy = None, ca_file = None))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        app_id: String,
        private_key: Option<&Bound<'_, PyAny>>,
        base_url: Option<String>,
        signer: Option<&Bound<'_, PyAny>>,
        sealing_secret: Option<&Bound<'_, PyAny>>,
        api_version: Option<String>,
        user_agent: Option<String>,
        allow_insecure_http: bool,
        timeout: Option<f64>,
        max_body: Option<u64>,
        retry_attempts: Option<u32>,
        retry_max_wait: Option<f64>,
        redis_url: Option<String>,
        redis_timeout: Option<f64>,
        redis_lease_ttl: Option<f64>,
        proxy: Option<String>,
        ca_file: Option<PathBuf>,
    ) -> PyResult<Self> {
        let credential = credential(private_key, signer, sealing_secret)?;
        let proxy = match proxy {
            Some(url) => ProxySetting::url(&url).map_err(to_py)?,
            None => ProxySetting::Environment,
        };
        let ca_pem = ca_file.as_deref().map(read_ca_file).transpose()?;
        let retry = if retry_attempts.is_some() || retry_max_wait.is_some() {
            let default = RetryPolicy::default();
            Some(RetryPolicy {
                max_attempts: retry_attempts.unwrap_or(default.max_attempts).max(1),
                max_wait: duration("retry_max_wait", retry_max_wait)?.unwrap_or(default.max_wait),
            })
        } else {
            None
        };
        let config = Config {
            app_id,
            credential,
            base_url,
            api_version,
            user_agent,
            retry,
        };
        let app = config.build().map_err(to_py)?;
        let mut policy = match duration("timeout", timeout)? {
            Some(total) => CorePolicy::with_timeout(total),
            None => CorePolicy::default(),
        };
        policy.allow_insecure_http = allow_insecure_http;
        if let Some(cap) = max_body {
            policy.max_body = cap;
        }
        // The proxy settings and the CA files are checked now (the same rules as the Rust
        // clients): a bad proxy URL, a plain http:// registry behind a proxy, a CA file that
        // cannot be read.
        // (The environment's variables, when they cannot be read, fail only the requests that
        // may use a proxy, with the reason; an explicit proxy fails here.)
        match proxy.proxies() {
            Ok(proxies) => proxies
                .for_registry(app.api().base_url(), allow_insecure_http)
                .map(drop)
                .map_err(to_py)?,
            Err(error) if matches!(proxy, ProxySetting::Url(_)) => return Err(to_py(error)),
            Err(_) => {}
        }
        icr_app_driver::extra_roots(ca_file.as_deref()).map_err(to_py)?;
        let app = Self {
            config,
            policy,
            shared: ArcSwap::from_pointee(Shared::new(app, fork_generation())),
            store: ArcSwapOption::empty(),
            proxy,
            ca_file,
            ca_pem,
        };
        match redis_url {
            Some(url) => app.attach_store(py, &url, redis_timeout, redis_lease_ttl)?,
            None if redis_timeout.is_some() || redis_lease_ttl.is_some() => return Err(no_url()),
            None => {}
        }
        Ok(app)
    }

    /// Shares this App's tokens through the Redis at `url` (what `Client(app, redis_url=url,
    /// redis_timeout=timeout)` calls): nothing is dialled yet. The same URL again does nothing;
    /// another URL, or another timeout, raises `ConfigError`, as does a URL that is not a Redis
    /// URL (the message never quotes it). `timeout` without `url` raises `ConfigError`.
    #[pyo3(signature = (url, timeout = None, lease_ttl = None))]
    fn _attach_store(
        &self,
        py: Python<'_>,
        url: Option<&str>,
        timeout: Option<f64>,
        lease_ttl: Option<f64>,
    ) -> PyResult<()> {
        match url {
            Some(url) => self.attach_store(py, url, timeout, lease_ttl),
            None if timeout.is_some() || lease_ttl.is_some() => Err(no_url()),
            None => Ok(()),
        }
    }

    /// The proxy set with `proxy=`, as `scheme://host:port` (never its credentials), or `None`
    /// (the environment's proxy variables apply).
    #[getter]
    fn proxy(&self) -> Option<String> {
        match &self.proxy {
            ProxySetting::Url(proxy) => Some(proxy.to_string()),
            _ => None,
        }
    }

    /// The CA file set with `ca_file=`, or `None`.
    #[getter]
    fn ca_file(&self) -> Option<String> {
        self.ca_file.as_ref().map(|p| p.display().to_string())
    }

    /// The proxy URL (credentials included, for the HTTP client only) the package's own
    /// clients use for `url`, by the rule every driver applies (`proxy=`, else the
    /// environment's variables as they are now; `NO_PROXY`; loopback direct); `None`: direct.
    fn _proxy_for(&self, url: &str) -> PyResult<Option<String>> {
        let proxies = self.proxy.proxies().map_err(to_py)?;
        let Ok(uri) = url.parse::<http::Uri>() else {
            return Ok(None);
        };
        Ok(proxies.proxy_for(&uri).map(|p| p.expose_url().to_owned()))
    }

    /// The CA files to trust on top of the default roots: `ca_file=`, then `SSL_CERT_FILE`'s
    /// (each checked: a file that cannot be read or holds no certificate raises `ConfigError`).
    fn _ca_files(&self) -> PyResult<Vec<PathBuf>> {
        icr_app_driver::extra_roots(self.ca_file.as_deref()).map_err(to_py)?;
        let ssl_cert_file = std::env::var_os(icr_app_driver::SSL_CERT_FILE).filter(|v| !v.is_empty());
        Ok(self
            .ca_file
            .iter()
            .cloned()
            .chain(ssl_cert_file.map(PathBuf::from))
            .collect())
    }

    /// `message` (of an exchange sent through the proxy `proxy_url`) naming the proxy without
    /// its credentials, with what to check (as the Rust clients word it).
    fn _through_proxy(&self, proxy_url: &str, kind: &str, message: String) -> String {
        let Ok(proxy) = icr_app_core::ProxyUrl::parse(proxy_url) else {
            return message;
        };
        let kind = match kind {
            "connect" => icr_app_core::TransportErrorKind::Connect,
            "timeout" => icr_app_core::TransportErrorKind::Timeout,
            _ => icr_app_core::TransportErrorKind::Other,
        };
        match icr_app_driver::through_proxy(CoreError::Transport { kind, message }, &proxy) {
            CoreError::Transport { message, .. } => message,
            other => other.to_string(),
        }
    }

    /// Where this App shares its tokens: the Redis URL with its password replaced by `***`, or
    /// `None` without a shared store.
    #[getter]
    fn redis_url(&self) -> Option<String> {
        self.store.load().as_ref().map(|config| config.shown.clone())
    }

    /// The core's change counter: it moves whenever any operation on this App is reported to
    /// or abandoned. A `Wait` step is over once it differs from the step's `.change`.
    #[getter]
    fn changes(&self, py: Python<'_>) -> u64 {
        self.with_core(py, |app| app.changes())
    }

    /// A snapshot of this App's counters in this process (shared by all its clients).
    fn stats(&self, py: Python<'_>) -> Stats {
        let stats = self.with_core(py, |app| app.stats());
        Stats::from(stats)
    }

    /// The app id.
    #[getter]
    fn app_id(&self) -> &str {
        &self.config.app_id
    }

    /// The registry's base URL.
    #[getter]
    fn base_url(&self, py: Python<'_>) -> String {
        self.shared().with(py, |app| app.api().base_url().to_owned())
    }

    /// The `x-icr-api-version` sent.
    #[getter]
    fn api_version(&self, py: Python<'_>) -> String {
        self.shared().with(py, |app| app.api().api_version().to_owned())
    }

    /// The key's SHA-256 fingerprint (base64), as `icr-app fingerprint` prints it and the app's
    /// Credentials tab shows it; `None` for an App with a `signer` (its key is not here).
    #[getter]
    fn fingerprint(&self) -> Option<String> {
        self.config.fingerprint()
    }

    /// The function given as `signer` (the drivers perform the core's `Sign` step with it), or
    /// `None` for an App with its private key.
    #[getter]
    fn signer(&self, py: Python<'_>) -> Option<Py<PyAny>> {
        match &self.config.credential {
            Credential::Signer { signer, .. } => Some(signer.clone_ref(py)),
            Credential::Key(_) => None,
        }
    }

    /// The transport policy every exchange follows.
    #[getter]
    fn policy(&self) -> TransportPolicy {
        TransportPolicy {
            inner: self.policy.clone(),
        }
    }

    /// Whether `url` is on the configured registry: the same scheme, host and port as the base
    /// URL, and a path under its path (the auth classes report only such responses to the core).
    fn _is_registry(&self, py: Python<'_>, url: &str) -> bool {
        let Ok(uri) = url.parse::<http::Uri>() else {
            return false;
        };
        self.with_core(py, |app| app.api().is_registry(&uri))
    }

    /// Server clock minus this machine's, in seconds, as learned from the registry's `Date`
    /// headers so far.
    #[getter]
    fn clock_offset(&self, py: Python<'_>) -> f64 {
        self.shared().with(py, |app| app.clock_offset().millis as f64 / 1000.0)
    }

    /// The app JWT (RS256), signed now or taken from the cache (re-signed about a minute before
    /// it expires), on the registry's clock as learned so far. With a `signer`: the cached JWT,
    /// or one signed now by calling the signer (one call however many threads ask); a
    /// coroutine-function signer cannot be awaited here (`ConfigError`, unless a JWT is cached).
    fn jwt(slf: &Bound<'_, Self>) -> PyResult<String> {
        let py = slf.py();
        let this = slf.get();
        let t = now(None);
        let shared = this.shared();
        let cached = shared.with(py, |app| app.jwt(t));
        match cached {
            Ok(jwt) => Ok(jwt.token().expose().to_owned()),
            Err(_) if matches!(this.config.credential, Credential::Signer { .. }) => {
                // Signed by the signer: the blocking driver performs the `GetJwt` operation's
                // `Sign` step.
                let op = ops::jwt_operation(py, shared)?;
                let drive = py.import("icr_app._drive")?;
                drive.getattr("jwt_with_signer")?.call1((slf, op))?.extract()
            }
            Err(error) => Err(to_py(error)),
        }
    }

    /// Drops `token` from the cache if it is still cached for `installation_id` (a `str`, a
    /// `ByOrganization`: its installation's, or `None`: the app token), so the next request
    /// mints a new one. Returns whether it was cached.
    #[pyo3(signature = (installation_id, token))]
    fn invalidate(
        &self,
        py: Python<'_>,
        installation_id: Option<&Bound<'_, PyAny>>,
        token: &Bound<'_, PyAny>,
    ) -> PyResult<bool> {
        let scope = scope(installation_id)?;
        let secret = ops::token_text(token)?;
        Ok(self.shared().with(py, |app| app.invalidate(&scope, secret.expose())))
    }

    /// The hot path of `installation_token`/`app_token`: a cached token, or the `GetToken`
    /// operation to drive (already polled once: its first step is kept for the driver).
    #[pyo3(signature = (installation_id = None, min_life = None))]
    fn _token(
        &self,
        py: Python<'_>,
        installation_id: Option<&Bound<'_, PyAny>>,
        min_life: Option<f64>,
    ) -> PyResult<Py<PyAny>> {
        Ok(match self.token_or_operation(py, installation_id, min_life)? {
            Found::Token(token) => token.into_any(),
            Found::Operation(op) => op,
        })
    }

    /// A callable `(installation_id, *, min_life=None) -> Token` that serves cached tokens
    /// without leaving Rust and hands a needed mint to `run(operation)` (the driver).
    fn _token_getter(slf: Py<Self>, run: Py<PyAny>) -> TokenGetter {
        TokenGetter { app: slf, run }
    }

    fn __repr__(&self) -> String {
        format!(
            "App(app_id={:?}, base_url={:?}, {})",
            self.config.app_id,
            self.config
                .base_url
                .as_deref()
                .unwrap_or(icr_app_core::DEFAULT_BASE_URL),
            match self.config.fingerprint() {
                Some(fingerprint) => format!("fingerprint={fingerprint:?}"),
                None => "signer=...".to_owned(),
            }
        )
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Credential::Signer { signer, .. } = &self.config.credential {
            visit.call(signer)?;
        }
        Ok(())
    }

    fn __reduce__(&self) -> PyResult<()> {
        Err(pyo3::exceptions::PyTypeError::new_err(
            "an icr_app.App is not picklable: it holds the private key; make the App in each process from its settings",
        ))
    }
}

/// What every driver enforces on every exchange (the core's `TransportPolicy`): only `https`,
/// or `http` to loopback (or with `allow_insecure_http`); loopback and plain `http` never
/// through a proxy; no redirect followed; the body capped at `max_body`; every exchange within
/// `timeout` (connecting within `connect_timeout`).
#[pyclass(module = "icr_app", frozen)]
pub struct TransportPolicy {
    inner: CorePolicy,
}

#[pymethods]
impl TransportPolicy {
    /// Whether credentials may go over plain `http://` to hosts other than loopback.
    #[getter]
    fn allow_insecure_http(&self) -> bool {
        self.inner.allow_insecure_http
    }

    /// The largest response body accepted, in bytes.
    #[getter]
    fn max_body(&self) -> u64 {
        self.inner.max_body
    }

    /// The longest connecting may take, in seconds.
    #[getter]
    fn connect_timeout(&self) -> f64 {
        self.inner.connect_timeout.as_secs_f64()
    }

    /// The longest one exchange may take, in seconds.
    #[getter]
    fn timeout(&self) -> f64 {
        self.inner.timeout.as_secs_f64()
    }

    /// Whether `step` may be sent, and how: `"direct"` (never through a proxy) or `"proxy"`
    /// (through the HTTP client's proxy, if it has one). Raises `TransportError` (kind
    /// `refused`) for what must not be sent; report that with `handle_failure`.
    fn check(&self, step: &SendStep) -> PyResult<&'static str> {
        match step.route(&self.inner) {
            Ok(Route::Direct) => Ok("direct"),
            Ok(Route::ProxyAllowed) => Ok("proxy"),
            Err(error) => Err(to_py(error)),
        }
    }

    /// The message of the `body_too_large` failure to report when a body exceeds the cap.
    fn body_too_large(&self) -> String {
        match self.inner.body_too_large() {
            CoreError::Transport { message, .. } => message,
            other => other.to_string(),
        }
    }

    fn __repr__(&self) -> String {
        format!(
            "TransportPolicy(allow_insecure_http={}, max_body={}, connect_timeout={}, timeout={})",
            if self.inner.allow_insecure_http {
                "True"
            } else {
                "False"
            },
            self.inner.max_body,
            self.inner.connect_timeout.as_secs_f64(),
            self.inner.timeout.as_secs_f64()
        )
    }
}
