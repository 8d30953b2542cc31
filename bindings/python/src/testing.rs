//! `icr_app.testing.FakeRegistry`: the project's fake registry (`icr-app-testkit`), in-process.

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use icr_app_testkit::{
    ConnectProxy as Proxy, DEMO_PRIVATE_KEY_PEM, FakeRegistry as Registry, Fault, FaultRates, TestCa,
    TlsFront as Front, TokenStatus,
};
use pyo3::exceptions::{PyRuntimeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList};

/// A fake ICR registry on `http://127.0.0.1:PORT`, for tests: it verifies app JWTs for real
/// (RS256, `iss`, `exp`, `iat`), mints `crs_` tokens, lists installations page by page, finds
/// the app's installation on an organization, revokes, refuses unknown, revoked or expired
/// tokens, and answers with NestJS-style error bodies. Its clock can be skewed, faults
/// injected, and an organization can reinstall the app. Stops on `close()` or at the end of a
/// `with` block.
#[pyclass(module = "icr_app.testing", frozen)]
pub struct FakeRegistry {
    registry: Mutex<Option<Arc<Registry>>>,
    /// The installations made through this object (the demo's, `add_installation`'s), by their
    /// current ids: `reinstall` finds an organization's among them.
    installations: Mutex<Vec<String>>,
    base_url: String,
    /// The demo app's id (`None` for a registry made empty with `FakeRegistry()`).
    #[pyo3(get)]
    app_id: Option<String>,
    /// The demo app's private key (PKCS#8 PEM; `None` for an empty registry).
    #[pyo3(get)]
    private_key_pem: Option<&'static str>,
    /// The demo installations, in the order the registry lists them (as `demo()` made them:
    /// `reinstall` returns an installation's new id).
    #[pyo3(get)]
    installation_ids: Vec<String>,
    /// The organization of each demo installation, in the same order: what a job that acts "as
    /// this organization" knows, whatever the installation's id (`icr_app.ByOrganization`).
    #[pyo3(get)]
    organization_ids: Vec<String>,
    /// A webhook secret for `webhook_delivery` (test-only).
    #[pyo3(get)]
    webhook_secret: Option<String>,
}

fn duration(secs: f64) -> PyResult<Duration> {
    if secs.is_finite() && secs >= 0.0 {
        Ok(Duration::from_secs_f64(secs))
    } else {
        Err(PyValueError::new_err(
            "a duration must be a number of seconds, 0 or more",
        ))
    }
}

impl FakeRegistry {
    fn get(&self) -> PyResult<Arc<Registry>> {
        self.registry
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| PyRuntimeError::new_err("the fake registry was closed"))
    }

    fn known(&self) -> std::sync::MutexGuard<'_, Vec<String>> {
        self.installations.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn queue(&self, fault: Fault, times: usize, path_prefix: Option<&str>) -> PyResult<()> {
        let registry = self.get()?;
        match path_prefix {
            Some(prefix) => registry.inject_for(prefix, fault, times),
            None => registry.inject(fault, times),
        }
        Ok(())
    }
}

#[pymethods]
impl FakeRegistry {
    /// An empty registry: register apps with `register_app_with_private_key` and add
    /// installations with `add_installation`.
    #[new]
    fn new(py: Python<'_>) -> PyResult<Self> {
        let registry = py
            .detach(|| Registry::start_on(std::net::SocketAddr::from(([127, 0, 0, 1], 0))))
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start the fake registry: {e}")))?;
        Ok(Self {
            base_url: registry.base_url(),
            registry: Mutex::new(Some(Arc::new(registry))),
            installations: Mutex::new(Vec::new()),
            app_id: None,
            private_key_pem: None,
            installation_ids: Vec::new(),
            organization_ids: Vec::new(),
            webhook_secret: None,
        })
    }

    /// A registry with the demo app (`.app_id`, `.private_key_pem`) and three installations
    /// (`.installation_ids`), each on an organization of its own (`.organization_ids`).
    #[staticmethod]
    fn demo(py: Python<'_>) -> PyResult<Self> {
        let demo = py
            .detach(|| Registry::demo_on(std::net::SocketAddr::from(([127, 0, 0, 1], 0))))
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start the fake registry: {e}")))?;
        Ok(Self {
            base_url: demo.registry.base_url(),
            registry: Mutex::new(Some(Arc::new(demo.registry))),
            installations: Mutex::new(demo.installation_ids.clone()),
            app_id: Some(demo.app_id),
            private_key_pem: Some(demo.private_key_pem),
            installation_ids: demo.installation_ids,
            organization_ids: demo.organization_ids,
            webhook_secret: Some(demo.webhook_secret),
        })
    }

    /// The demo app's private key PEM (also usable for apps you register).
    #[classattr]
    const DEMO_PRIVATE_KEY_PEM: &'static str = DEMO_PRIVATE_KEY_PEM;

    /// `http://127.0.0.1:PORT`.
    #[getter]
    fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Stops the registry (idempotent).
    fn close(&self, py: Python<'_>) {
        let taken = self.registry.lock().unwrap_or_else(PoisonError::into_inner).take();
        py.detach(move || drop(taken));
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }

    /// Registers an app with its RSA public key PEM.
    fn register_app(&self, app_id: &str, public_key_pem: &str) -> PyResult<()> {
        self.get()?
            .register_app(app_id, public_key_pem)
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Registers an app, deriving its public key from the private key PEM.
    fn register_app_with_private_key(&self, app_id: &str, private_key_pem: &str) -> PyResult<()> {
        self.get()?
            .register_app_with_private_key(app_id, private_key_pem)
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Installs `app_id` on a new organization; `permissions` maps names to levels, e.g.
    /// `{"organization_info": "VIEW"}`. Returns the installation id.
    #[pyo3(signature = (app_id, organization_name, permissions = None))]
    fn add_installation(
        &self,
        app_id: &str,
        organization_name: &str,
        permissions: Option<Vec<(String, String)>>,
    ) -> PyResult<String> {
        let permissions = permissions.unwrap_or_else(|| vec![("organization_info".into(), "VIEW".into())]);
        let pairs: Vec<(&str, &str)> = permissions.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect();
        let id = self.get()?.add_installation(app_id, organization_name, &pairs);
        self.known().push(id.clone());
        Ok(id)
    }

    /// Uninstalls: no longer listed, and minting for it gives 404.
    fn remove_installation(&self, installation_id: &str) -> PyResult<()> {
        self.get()?.remove_installation(installation_id);
        Ok(())
    }

    /// The organization uninstalls the app and installs it again: its installation (one made by
    /// `demo()` or `add_installation`) gets a new id, returned, with the same permissions. The
    /// old id is gone (minting for it, or reading it, answers 404) and every token minted for it
    /// is revoked (requests with one answer 401), as after a real reinstall; the organization
    /// keeps its id. (The Rust testkit's `reinstall` takes the installation's id; this takes the
    /// organization's, which a test that acts `ByOrganization` holds.) `ValueError` when no
    /// installation of this registry is on that organization.
    fn reinstall(&self, organization_id: &str) -> PyResult<String> {
        let registry = self.get()?;
        let mut known = self.known();
        let slot = known
            .iter_mut()
            .find(|id| registry.organization_id(id).as_deref() == Some(organization_id));
        if let Some(slot) = slot
            && let Some(new) = registry.reinstall(slot)
        {
            slot.clone_from(&new);
            return Ok(new);
        }
        Err(PyValueError::new_err(
            if registry.organization_id(organization_id).is_some() {
                format!(
                    "{organization_id} is an installation id: reinstall takes the organization's id (registry.organization_id(installation_id))"
                )
            } else {
                format!(
                    "no installation made by this FakeRegistry (demo() or add_installation) is on organization {organization_id}"
                )
            },
        ))
    }

    /// How many times the app's installation on `organization_id` was looked up
    /// (`GET /app/organizations/{id}/installation`, answered 200 or 404; a faulted request is
    /// not counted).
    fn lookup_count(&self, organization_id: &str) -> PyResult<usize> {
        Ok(self.get()?.lookup_count(organization_id))
    }

    /// The organization id of an installation.
    fn organization_id(&self, installation_id: &str) -> PyResult<Option<String>> {
        Ok(self.get()?.organization_id(installation_id))
    }

    /// Sets the registry's clock to the real time plus `seconds` (negative: behind).
    fn set_clock_offset(&self, seconds: i64) -> PyResult<()> {
        self.get()?.set_clock_offset(seconds);
        Ok(())
    }

    /// Moves the registry's clock by `seconds`.
    fn advance_clock(&self, seconds: i64) -> PyResult<()> {
        self.get()?.advance_clock(seconds);
        Ok(())
    }

    /// How long new access tokens live, in seconds (default 7200).
    fn set_token_lifetime(&self, seconds: f64) -> PyResult<()> {
        self.get()?.set_token_lifetime(duration(seconds)?);
        Ok(())
    }

    /// Answers the next `times` requests (whose path starts with `path_prefix`, if given) with
    /// `status` and a NestJS-style error body, with `Retry-After: retry_after` if given.
    #[pyo3(signature = (status, *, retry_after = None, times = 1, path_prefix = None))]
    fn inject_status(
        &self,
        status: u16,
        retry_after: Option<u64>,
        times: usize,
        path_prefix: Option<&str>,
    ) -> PyResult<()> {
        self.queue(Fault::Status { status, retry_after }, times, path_prefix)
    }

    /// Reads the next `times` requests, then closes their connections without answering.
    #[pyo3(signature = (*, times = 1, path_prefix = None))]
    fn inject_drop_connection(&self, times: usize, path_prefix: Option<&str>) -> PyResult<()> {
        self.queue(Fault::DropConnection, times, path_prefix)
    }

    /// Answers the next `times` requests after `seconds`.
    #[pyo3(signature = (seconds, *, times = 1, path_prefix = None))]
    fn inject_delay(&self, seconds: f64, times: usize, path_prefix: Option<&str>) -> PyResult<()> {
        self.queue(Fault::Delay(duration(seconds)?), times, path_prefix)
    }

    /// Answers the next `times` requests 200 with a body that is not JSON.
    #[pyo3(signature = (*, times = 1, path_prefix = None))]
    fn inject_malformed_body(&self, times: usize, path_prefix: Option<&str>) -> PyResult<()> {
        self.queue(Fault::MalformedBody, times, path_prefix)
    }

    /// Answers the next `times` requests with a redirect to `location`.
    #[pyo3(signature = (location, *, status = 302, times = 1, path_prefix = None))]
    fn inject_redirect(&self, location: String, status: u16, times: usize, path_prefix: Option<&str>) -> PyResult<()> {
        self.queue(Fault::Redirect { location, status }, times, path_prefix)
    }

    /// Drops every queued fault.
    fn clear_faults(&self) -> PyResult<()> {
        self.get()?.clear_faults();
        Ok(())
    }

    /// From now on injects faults at random into every request, with these probabilities per
    /// request (together at most 1), from a seeded generator.
    #[pyo3(signature = (*, server_error = 0.0, drop_connection = 0.0, malformed_body = 0.0, retry_after = 0.0, retry_after_secs = 1, delay = 0.0, max_delay = 0.0, seed = 0))]
    #[allow(clippy::too_many_arguments)]
    fn set_fault_rates(
        &self,
        server_error: f64,
        drop_connection: f64,
        malformed_body: f64,
        retry_after: f64,
        retry_after_secs: u64,
        delay: f64,
        max_delay: f64,
        seed: u64,
    ) -> PyResult<()> {
        let rates = FaultRates {
            server_error,
            drop_connection,
            malformed_body,
            retry_after,
            retry_after_secs,
            delay,
            max_delay: duration(max_delay)?,
            seed,
        };
        self.get()?
            .set_fault_rates(rates)
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// Stops injecting random faults.
    fn clear_fault_rates(&self) -> PyResult<()> {
        self.get()?.clear_fault_rates();
        Ok(())
    }

    /// Every request received so far, oldest first, as dicts (`method`, `path`, `headers`,
    /// `body`, `status`).
    fn requests<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for r in self.get()?.requests() {
            let d = PyDict::new(py);
            d.set_item("method", r.method)?;
            d.set_item("path", r.path)?;
            d.set_item("headers", r.headers)?;
            d.set_item("body", PyBytes::new(py, &r.body))?;
            d.set_item("status", r.status)?;
            list.append(d)?;
        }
        Ok(list)
    }

    /// Forgets the recorded requests.
    fn clear_requests(&self) -> PyResult<()> {
        self.get()?.clear_requests();
        Ok(())
    }

    /// How many installation tokens were minted for `installation_id`.
    fn mint_count(&self, installation_id: &str) -> PyResult<usize> {
        Ok(self.get()?.mint_count(installation_id))
    }

    /// How many app access tokens were minted.
    fn app_token_mint_count(&self) -> PyResult<usize> {
        Ok(self.get()?.app_token_mint_count())
    }

    /// Revokes every token issued so far.
    fn revoke_all_tokens(&self) -> PyResult<()> {
        self.get()?.revoke_all_tokens();
        Ok(())
    }

    /// Makes `token` (an `icr_app.Token` or its text) expire now.
    fn expire_token(&self, token: &Bound<'_, PyAny>) -> PyResult<()> {
        let token = crate::ops::token_text(token)?;
        self.get()?.expire_token(token.expose());
        Ok(())
    }

    /// What the registry thinks of `token` now: `valid`, `expired`, `revoked` or `unknown`.
    fn token_status(&self, token: &Bound<'_, PyAny>) -> PyResult<&'static str> {
        let token = crate::ops::token_text(token)?;
        Ok(match self.get()?.token_status(token.expose()) {
            TokenStatus::Valid => "valid",
            TokenStatus::Expired => "expired",
            TokenStatus::Revoked => "revoked",
            TokenStatus::Unknown => "unknown",
        })
    }

    /// Whether the registry accepts `token` now.
    fn token_is_valid(&self, token: &Bound<'_, PyAny>) -> PyResult<bool> {
        Ok(self.token_status(token)? == "valid")
    }

    /// A webhook delivery as ICR sends it: `(body, signature_header)`.
    fn webhook_delivery<'py>(
        &self,
        py: Python<'py>,
        secret: &str,
        event: &str,
        installation_id: &str,
    ) -> PyResult<(Bound<'py, PyBytes>, String)> {
        let (body, signature) = self.get()?.webhook_delivery(secret, event, installation_id);
        Ok((PyBytes::new(py, &body), signature))
    }

    fn __repr__(&self) -> String {
        format!("FakeRegistry(base_url={:?})", self.base_url)
    }
}

/// TLS in front of a `FakeRegistry` (or of a `ConnectProxy`: a proxy spoken to over TLS), with a
/// certificate for `host` from a CA made on the spot.
#[pyclass(module = "icr_app.testing", frozen)]
pub struct TlsFront {
    front: Mutex<Option<Front>>,
    /// The CA's certificate (PEM).
    #[pyo3(get)]
    ca_pem: String,
    /// The port it listens on, on `127.0.0.1`.
    #[pyo3(get)]
    port: u16,
}

#[pymethods]
impl TlsFront {
    #[new]
    #[pyo3(signature = (registry, host = "registry.test"))]
    fn new(py: Python<'_>, registry: &Bound<'_, PyAny>, host: &str) -> PyResult<Self> {
        // In front of a registry, or of a proxy (a proxy spoken to over TLS).
        let backend = if let Ok(registry) = registry.cast::<FakeRegistry>() {
            registry.get().get()?.addr()
        } else if let Ok(proxy) = registry.cast::<ConnectProxy>() {
            proxy.get().get()?.addr()
        } else {
            return Err(PyValueError::new_err(
                "TlsFront goes in front of a FakeRegistry or a ConnectProxy",
            ));
        };
        let ca = TestCa::new();
        let (cert, key) = ca.issue(&[host]);
        let front = py
            .detach(|| Front::start(backend, &cert, &key))
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start the TLS front: {e}")))?;
        Ok(Self {
            port: front.addr().port(),
            front: Mutex::new(Some(front)),
            ca_pem: ca.cert_pem().to_owned(),
        })
    }

    /// Stops it (idempotent).
    fn close(&self, py: Python<'_>) {
        let taken = self.front.lock().unwrap_or_else(PoisonError::into_inner).take();
        py.detach(move || drop(taken));
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }
}

/// A forward proxy on `127.0.0.1` for tests (see the testkit's `ConnectProxy`).
#[pyclass(module = "icr_app.testing", frozen)]
pub struct ConnectProxy {
    proxy: Mutex<Option<Arc<Proxy>>>,
    /// `http://127.0.0.1:PORT`.
    #[pyo3(get)]
    url: String,
}

impl ConnectProxy {
    fn get(&self) -> PyResult<Arc<Proxy>> {
        self.proxy
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
            .ok_or_else(|| PyRuntimeError::new_err("the proxy was closed"))
    }
}

#[pymethods]
impl ConnectProxy {
    #[new]
    #[pyo3(signature = (resolve = None, user = None, password = None, forbid = false))]
    fn new(
        py: Python<'_>,
        resolve: Option<std::collections::HashMap<String, u16>>,
        user: Option<String>,
        password: Option<String>,
        forbid: bool,
    ) -> PyResult<Self> {
        let mut builder = Proxy::builder();
        for (host, port) in resolve.unwrap_or_default() {
            builder = builder.resolve(&host, std::net::SocketAddr::from(([127, 0, 0, 1], port)));
        }
        if user.is_some() || password.is_some() {
            builder = builder.basic_auth(user.as_deref().unwrap_or(""), password.as_deref().unwrap_or(""));
        }
        if forbid {
            builder = builder.forbid_all();
        }
        let proxy = py
            .detach(|| builder.start())
            .map_err(|e| PyRuntimeError::new_err(format!("cannot start the proxy: {e}")))?;
        Ok(Self {
            url: proxy.url(),
            proxy: Mutex::new(Some(Arc::new(proxy))),
        })
    }

    /// `http://user:password@127.0.0.1:PORT`.
    fn url_with_credentials(&self, user: &str, password: &str) -> PyResult<String> {
        Ok(self.get()?.url_with_credentials(user, password))
    }

    /// Every request line seen.
    fn request_lines(&self) -> PyResult<Vec<String>> {
        Ok(self.get()?.request_lines())
    }

    /// The first bytes each client sent into a tunnel.
    fn tunneled<'py>(&self, py: Python<'py>) -> PyResult<Vec<Bound<'py, PyBytes>>> {
        Ok(self.get()?.tunneled().iter().map(|b| PyBytes::new(py, b)).collect())
    }

    /// Forgets what it saw.
    fn clear(&self) -> PyResult<()> {
        self.get()?.clear();
        Ok(())
    }

    /// Stops it (idempotent).
    fn close(&self, py: Python<'_>) {
        let taken = self.proxy.lock().unwrap_or_else(PoisonError::into_inner).take();
        py.detach(move || drop(taken));
    }

    fn __enter__(slf: Py<Self>) -> Py<Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, py: Python<'_>, _args: &Bound<'_, pyo3::types::PyTuple>) -> bool {
        self.close(py);
        false
    }
}
