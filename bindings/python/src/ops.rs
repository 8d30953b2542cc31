//! The core's erased operation ([`AnyOperation`]) as Python objects: `poll(now) -> Send |
//! Store | Sign | Sleep | Wait | Done`, `handle_response`, `handle_failure`, `handle_store`,
//! `handle_signature`, `abandon`.
//! Every step, answer and result crosses as the core's plain data ([`AnyStep`],
//! [`PlainResponse`], [`Outcome`]); this module only turns them into Python objects.

use std::sync::Arc;

use http::Request;
use icr_app_core::{
    AnyOperation, AnyStep, Error as CoreError, Outcome, PlainRequest, PlainResponse, Purpose, Route, SecretString,
    TokenScope, TransportErrorKind, TransportPolicy as CorePolicy,
};
use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::app::{App, Shared, duration, now, seconds};
use crate::errors::to_py;
use crate::fork_generation;
use crate::scope::{named, scope};
use crate::store::{StoreReply, StoreStep};
use crate::values::{Installation, InstallationsPage, Token, json_to_py};

/// How a `SendAs` hands back its response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendMode {
    /// `(status, headers, body)`, whatever the status.
    Raw,
    /// The body parsed as JSON ([`PlainResponse::json`]); a non-2xx status raises the core's
    /// error for it.
    Json,
}

/// The Python class an operation is made as.
#[derive(Clone, Copy)]
pub(crate) enum Class {
    GetToken,
}

/// The text of a token given as an `icr_app.Token` or a `str`.
pub(crate) fn token_text(token: &Bound<'_, PyAny>) -> PyResult<SecretString> {
    if let Ok(t) = token.cast::<Token>() {
        return Ok(t.get().inner.secret().clone());
    }
    if let Ok(s) = token.cast::<PyString>() {
        return Ok(SecretString::new(s.to_cow()?));
    }
    Err(pyo3::exceptions::PyTypeError::new_err(
        "token must be an icr_app.Token or a str",
    ))
}

/// One of the core's operations on an `App`, driven by polling. Subclasses: `GetToken`, `GetJwt`,
/// `CallInstallation`, `CallInstallationsPage`, `ListInstallations`, `SendAs`, `Revoke`,
/// `RevokeAll`, `Refresher`.
///
/// The contract (the core's "Driving the core yourself"): call `poll(now)` and perform the step
/// it returns: `Send` (send it; report `handle_response` for any status, or `handle_failure`
/// when no response came), `Store` (only when the App has a shared store: `reply = step.run()`,
/// off the event loop, then report `handle_store(step.id, reply)`), `Sign` (only for an App
/// made with `signer=`: have `.message` signed, RS256, and report
/// `handle_signature(step.id, signature=...)`, or `error=...` when the signer failed), `Sleep` (sleep until
/// `.until`), `Wait` (another operation on the same `App` is minting: wait until any operation
/// on it reports back or is abandoned, or until `.until`), `Done` (`.value` is the result; a
/// failure is raised by `poll` instead). After every report and abandon, wake the operations
/// that wait. On every way out before `Done`, call `abandon()`. `now` is seconds since the
/// epoch (`time.time()`); `None` reads the clock.
#[pyclass(module = "icr_app", subclass)]
pub struct Operation {
    shared: Arc<Shared>,
    generation: u64,
    op: AnyOperation,
    /// How a `SendAs`'s response is handed back (`Raw` for every other operation).
    mode: SendMode,
    /// A step already polled (the fast path's first poll), handed out by the next `poll`.
    first: Option<AnyStep>,
    done: bool,
}

impl Operation {
    fn new(shared: Arc<Shared>, op: AnyOperation) -> Self {
        Self {
            generation: shared.generation,
            shared,
            op,
            mode: SendMode::Raw,
            first: None,
            done: false,
        }
    }

    fn check_fork(&self) -> PyResult<()> {
        if self.generation == fork_generation() {
            return Ok(());
        }
        Err(to_py(CoreError::config(
            "operation",
            "it was started before this process was forked; start it again in this process",
        )))
    }

    fn step_to_py(&mut self, py: Python<'_>, step: AnyStep) -> PyResult<Py<PyAny>> {
        match step {
            AnyStep::Send { id, request } => Py::new(py, SendStep { id, request })?.into_py_any(py),
            AnyStep::Store { id, command } => {
                Py::new(py, StoreStep::new(id, command, self.shared.store.load_full()))?.into_py_any(py)
            }
            AnyStep::Sign { id, message } => Py::new(py, Sign { id, message })?.into_py_any(py),
            AnyStep::Sleep { until } => Py::new(py, Sleep { until: seconds(until) })?.into_py_any(py),
            AnyStep::Wait { until, change } => Py::new(
                py,
                Wait {
                    until: seconds(until),
                    change,
                },
            )?
            .into_py_any(py),
            AnyStep::Done(result) => {
                self.done = true;
                let value = match result {
                    Ok(outcome) => self.value(py, outcome)?,
                    Err(error) => return Err(to_py(error)),
                };
                Py::new(py, Done { value })?.into_py_any(py)
            }
        }
    }

    /// The Python value of an operation's result.
    fn value(&self, py: Python<'_>, outcome: Outcome) -> PyResult<Py<PyAny>> {
        match outcome {
            Outcome::Token(inner) => Py::new(py, Token { inner })?.into_py_any(py),
            Outcome::Installation(i) => Py::new(py, Installation::new(i))?.into_py_any(py),
            Outcome::Page(page) => Py::new(py, InstallationsPage::new(page))?.into_py_any(py),
            Outcome::Installations(all) => installation_list(py, all)?.into_py_any(py),
            Outcome::Response(response) => match self.mode {
                SendMode::Json => {
                    let value: serde_json::Value = response.json().map_err(to_py)?;
                    json_to_py(py, &value)
                }
                SendMode::Raw => response_tuple(py, response),
            },
            Outcome::Count(n) => n.into_py_any(py),
            Outcome::Jwt(jwt) => jwt.token().expose().into_py_any(py),
            Outcome::Nothing => Ok(py.None()),
            Outcome::Forgot(forgot) => forgot.into_py_any(py),
            // No Python class makes one today; as the JSON it came as, should one ever finish.
            Outcome::Created(created) => json_to_py(py, &serde_json::to_value(&created).unwrap_or_default()),
            other => Err(to_py(CoreError::config(
                "operation",
                format!("its result is one this version of icr_app cannot show: {other:?}"),
            ))),
        }
    }
}

/// `installations` as a `list[icr_app.Installation]`.
pub(crate) fn installation_list(
    py: Python<'_>,
    installations: Vec<icr_app_core::Installation>,
) -> PyResult<Bound<'_, PyList>> {
    let list = PyList::empty(py);
    for i in installations {
        list.append(Py::new(py, Installation::new(i))?)?;
    }
    Ok(list)
}

/// A response as `(status, [(name, value), ...], body)`.
fn response_tuple(py: Python<'_>, response: PlainResponse) -> PyResult<Py<PyAny>> {
    let PlainResponse { status, headers, body } = response;
    let headers = PyList::new(py, headers)?;
    PyTuple::new(
        py,
        [
            status.into_py_any(py)?,
            headers.into_py_any(py)?,
            PyBytes::new(py, &body).into_py_any(py)?,
        ],
    )?
    .into_py_any(py)
}

/// Makes `op` (already polled once, `first` its step) an operation of Python class `class`.
pub(crate) fn new_operation(
    py: Python<'_>,
    shared: Arc<Shared>,
    op: AnyOperation,
    first: AnyStep,
    class: Class,
) -> PyResult<Py<PyAny>> {
    let mut op = Operation::new(shared, op);
    op.first = Some(first);
    let init = PyClassInitializer::from(op);
    match class {
        Class::GetToken => Py::new(py, init.add_subclass(GetToken))?.into_py_any(py),
    }
}

/// A header's name or value given as `str` or `bytes` (bytes that are not UTF-8 are read
/// lossily: the core reads only ASCII headers).
fn text_of(value: &Bound<'_, PyAny>) -> PyResult<String> {
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(String::from_utf8_lossy(b.as_bytes()).into_owned());
    }
    Ok(value.cast::<PyString>()?.to_cow()?.into_owned())
}

/// `(name, value)` pairs of `str` or `bytes`, as the core's header pairs.
fn header_pairs(headers: &Bound<'_, PyAny>) -> PyResult<Vec<(String, String)>> {
    let mut pairs = Vec::new();
    for pair in headers.try_iter()? {
        let (name, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair?.extract()?;
        pairs.push((text_of(&name)?, text_of(&value)?));
    }
    Ok(pairs)
}

#[pymethods]
impl Operation {
    /// What to do next: `Send`, `Store`, `Sign`, `Sleep`, `Wait` or `Done`; raises the operation's error
    /// (an `icr_app.Error`) when it finished with one. Once it has finished (after `Done`, its
    /// error, or `abandon`) it raises `ConfigError` and does nothing.
    #[pyo3(signature = (now = None))]
    fn poll(&mut self, py: Python<'_>, now: Option<f64>) -> PyResult<Py<PyAny>> {
        if self.done {
            // Never again: polled after `Done` (or after `abandon`) an operation must not act
            // (a `SendAs` would otherwise authorise and hand out its request once more).
            return Err(to_py(CoreError::config(
                "operation",
                "it has finished (returned Done, raised, or was abandoned) and does nothing more; start a new one",
            )));
        }
        self.check_fork()?;
        let step = match self.first.take() {
            Some(first) => first,
            None => {
                let t = crate::app::now(now);
                let op = &mut self.op;
                self.shared.with(py, |app| op.poll(app, t))
            }
        };
        self.step_to_py(py, step)
    }

    /// Reports the response to request `id` (any status, with every header: a list of
    /// `(name, value)` pairs of `str` or `bytes`). Ignored once the operation has finished.
    #[pyo3(signature = (id, status, headers, body, now = None))]
    fn handle_response(
        &mut self,
        py: Python<'_>,
        id: u64,
        status: u16,
        headers: &Bound<'_, PyAny>,
        body: &[u8],
        now: Option<f64>,
    ) -> PyResult<()> {
        if self.done {
            return Ok(());
        }
        self.check_fork()?;
        let response = PlainResponse::new(status, header_pairs(headers)?, body.to_vec());
        let t = crate::app::now(now);
        let op = &mut self.op;
        self.shared.with(py, |app| op.handle_response(app, id, response, t));
        Ok(())
    }

    /// Reports that request `id` got no response. `kind`: `connect`, `timeout`,
    /// `connection_lost`, `body_too_large`, `refused`, `cancelled` or `other` (any other name
    /// is `other`); `message`: what happened (never a credential).
    #[pyo3(signature = (id, kind, message, now = None))]
    fn handle_failure(&mut self, py: Python<'_>, id: u64, kind: &str, message: &str, now: Option<f64>) -> PyResult<()> {
        if self.done {
            return Ok(());
        }
        self.check_fork()?;
        let kind = TransportErrorKind::from_name(kind);
        let t = crate::app::now(now);
        let op = &mut self.op;
        self.shared.with(py, |app| op.handle_failure(app, id, kind, message, t));
        Ok(())
    }

    /// Reports what the `Store` step `id` gave: the `StoreReply` its `run()` returned. A failed
    /// reply is no error: the core mints without the store for a while.
    #[pyo3(signature = (id, reply, now = None))]
    fn handle_store(&mut self, py: Python<'_>, id: u64, reply: &StoreReply, now: Option<f64>) -> PyResult<()> {
        if self.done {
            return Ok(());
        }
        self.check_fork()?;
        let reply = reply.reply.clone();
        let t = crate::app::now(now);
        let op = &mut self.op;
        self.shared.with(py, |app| op.handle_store(app, id, reply, t));
        Ok(())
    }

    /// Reports what the `Sign` step `id` gave: the RS256 `signature` of its message, or the
    /// signer's failure as `error` (a message; never a credential). Ignored once the operation
    /// has finished.
    #[pyo3(signature = (id, signature = None, error = None, now = None))]
    fn handle_signature(
        &mut self,
        py: Python<'_>,
        id: u64,
        signature: Option<Vec<u8>>,
        error: Option<String>,
        now: Option<f64>,
    ) -> PyResult<()> {
        if self.done {
            return Ok(());
        }
        self.check_fork()?;
        let signature = match (signature, error) {
            (Some(signature), None) => Ok(signature),
            (None, Some(error)) => Err(error),
            _ => {
                return Err(to_py(CoreError::config(
                    "handle_signature",
                    "give either signature= (the RS256 signature) or error= (why the signer gave none)",
                )));
            }
        };
        let t = crate::app::now(now);
        let op = &mut self.op;
        self.shared.with(py, |app| op.handle_signature(app, id, signature, t));
        Ok(())
    }

    /// Leaves the operation before `Done`: it releases what it holds at once (a mint in flight,
    /// so that others mint again rather than wait for it). Does nothing after `Done`.
    #[pyo3(signature = (now = None))]
    fn abandon(&mut self, py: Python<'_>, now: Option<f64>) {
        self.first = None;
        if self.done || self.generation != fork_generation() {
            self.done = true;
            return;
        }
        self.done = true;
        let t = crate::app::now(now);
        let op = &mut self.op;
        self.shared.with(py, |app| op.abandon(app, t));
    }

    /// Whether the operation has finished (`Done` returned or raised, or abandoned).
    #[getter]
    fn done(&self) -> bool {
        self.done
    }

    fn __repr__(slf: &Bound<'_, Self>) -> PyResult<String> {
        let name = slf.get_type().name()?;
        Ok(format!(
            "<icr_app.{name} done={}>",
            if slf.borrow().done { "True" } else { "False" }
        ))
    }
}

impl Drop for Operation {
    fn drop(&mut self) {
        // A driver abandons on every way out; this covers an operation dropped half-way by hand.
        if !self.done && self.generation == fork_generation() {
            let t = now(None);
            self.op.abandon(&mut self.shared.lock().core, t);
        }
    }
}

/// A `GetJwt` operation on `shared` (what `App.jwt()` drives for an App with a signer).
pub(crate) fn jwt_operation(py: Python<'_>, shared: Arc<Shared>) -> PyResult<Py<PyAny>> {
    let init = PyClassInitializer::from(Operation::new(shared, AnyOperation::app_jwt()));
    Py::new(py, init.add_subclass(GetJwt))?.into_py_any(py)
}

/// `GetJwt(app)`: the app JWT valid now, for requests you send yourself. With the private key it
/// is signed in the core and the first poll is `Done`; with a `signer` it is a `Sign` step (once
/// however many operations need it; the others `Wait`). `Done.value` is the JWT (`str`).
#[pyclass(module = "icr_app", extends = Operation)]
pub struct GetJwt;

#[pymethods]
impl GetJwt {
    #[new]
    fn new(app: &Bound<'_, App>) -> (Self, Operation) {
        (GetJwt, Operation::new(app.get().shared(), AnyOperation::app_jwt()))
    }
}

/// `GetToken(app, installation_id=None, *, min_life=None)`: a token for the installation (a
/// `str`, or a `ByOrganization`: the app's installation on that organization, looked up first
/// if it is not known; or, with `None`, the app) with at least `min_life` seconds left; from the
/// cache, or minted once however many ask (the others `Wait`). `Done.value` is an
/// `icr_app.Token`.
#[pyclass(module = "icr_app", extends = Operation)]
pub struct GetToken;

#[pymethods]
impl GetToken {
    #[new]
    #[pyo3(signature = (app, installation_id = None, *, min_life = None))]
    fn new(
        app: &Bound<'_, App>,
        installation_id: Option<&Bound<'_, PyAny>>,
        min_life: Option<f64>,
    ) -> PyResult<(Self, Operation)> {
        let op = AnyOperation::token(scope(installation_id)?, duration("min_life", min_life)?);
        Ok((GetToken, Operation::new(app.get().shared(), op)))
    }
}

/// `CallInstallation(app, installation_id)`: `GET /app/installations/{id}` with the app JWT;
/// with a `ByOrganization`, `GET /app/organizations/{id}/installation` (the app's installation
/// on that organization, remembered for it; a 404 says the app is not installed there).
/// `Done.value` is an `icr_app.Installation`.
#[pyclass(module = "icr_app", extends = Operation)]
pub struct CallInstallation;

#[pymethods]
impl CallInstallation {
    #[new]
    fn new(app: &Bound<'_, App>, installation_id: &Bound<'_, PyAny>) -> PyResult<(Self, Operation)> {
        let op = match named(installation_id, "an installation id (str) or an icr_app.ByOrganization")? {
            TokenScope::Organization(org) => AnyOperation::installation_for_organization(org),
            TokenScope::Installation(id) => AnyOperation::installation(id),
            TokenScope::App => return Err(pyo3::exceptions::PyTypeError::new_err("no installation named")),
        };
        Ok((CallInstallation, Operation::new(app.get().shared(), op)))
    }
}

/// `CallInstallationsPage(app, limit=100, page=0)`: one page of the app's installations
/// (`GET /app/installations?limit&page`, `page` counted from 0) with the app JWT. `Done.value`
/// is an `icr_app.InstallationsPage` (its installations and the registry's pagination).
#[pyclass(module = "icr_app", extends = Operation)]
pub struct CallInstallationsPage;

#[pymethods]
impl CallInstallationsPage {
    #[new]
    #[pyo3(signature = (app, limit = icr_app_core::DEFAULT_PAGE_SIZE, page = 0))]
    fn new(app: &Bound<'_, App>, limit: u32, page: u32) -> (Self, Operation) {
        let op = AnyOperation::installations_page(limit, page);
        (CallInstallationsPage, Operation::new(app.get().shared(), op))
    }
}

/// `ListInstallations(app, limit=100)`: every installation of the app, page after page.
/// `Done.value` is a `list[icr_app.Installation]`.
#[pyclass(module = "icr_app", extends = Operation)]
pub struct ListInstallations;

#[pymethods]
impl ListInstallations {
    #[new]
    #[pyo3(signature = (app, limit = icr_app_core::DEFAULT_PAGE_SIZE))]
    fn new(app: &Bound<'_, App>, limit: u32) -> (Self, Operation) {
        let op = AnyOperation::all_installations(limit);
        (ListInstallations, Operation::new(app.get().shared(), op))
    }
}

/// `SendAs(app, installation_id, method, url, *, headers=None, body=None, json=False)`: any
/// request, authorised as the installation (a `str`, or a `ByOrganization`: the app's
/// installation on that organization, followed when it is reinstalled; or, with `None`, as the
/// app). `url` is a path relative to the base URL, starting with `/` (then the standard headers
/// are added; a `://` in its query changes nothing), or an absolute URL (`https://...`) on the
/// registry (tokens go to no other host: any other host is a `ConfigError`). On a 401 the token
/// is dropped, a new one minted, and the request sent once more. The `Send` of the request
/// itself has `.target` true and `.purpose` `request` (any other `Send` is a mint or a lookup).
/// `Done.value` is `(status, headers, body)`, or with `json=True` the body parsed as JSON (a
/// non-2xx status raises its error).
#[pyclass(module = "icr_app", extends = Operation)]
pub struct SendAs;

#[pymethods]
impl SendAs {
    #[new]
    #[pyo3(signature = (app, installation_id, method, url, *, headers = None, body = None, json = false))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        app: &Bound<'_, App>,
        installation_id: Option<&Bound<'_, PyAny>>,
        method: &str,
        url: &str,
        headers: Option<&Bound<'_, PyAny>>,
        body: Option<&[u8]>,
        json: bool,
    ) -> PyResult<(Self, Operation)> {
        let scope = scope(installation_id)?;
        if !url.starts_with('/') && !url.contains("://") {
            // Neither a path nor an absolute URL: a path that lacks its `/` (the core would read
            // it as a host).
            return Err(to_py(CoreError::config(
                "request path",
                format!("`{}` must start with `/`", icr_app_core::excerpt(url, 80)),
            )));
        }
        let headers = match headers {
            Some(headers) => headers
                .try_iter()?
                .map(|pair| pair?.extract::<(String, String)>())
                .collect::<PyResult<Vec<_>>>()?,
            None => Vec::new(),
        };
        let body = body.map(<[u8]>::to_vec);
        let shared = app.get().shared();
        let op = shared
            .with(py, |a| AnyOperation::send_as(a, scope, method, url, &headers, body))
            .map_err(to_py)?;
        let mut op = Operation::new(shared, op);
        op.mode = if json { SendMode::Json } else { SendMode::Raw };
        Ok((SendAs, op))
    }
}

/// `Revoke(app, token)`: revokes one token (`DELETE /app/installations/token`) and drops it from
/// the cache. `Done.value` is `None`.
#[pyclass(module = "icr_app", extends = Operation)]
pub struct Revoke;

#[pymethods]
impl Revoke {
    #[new]
    fn new(app: &Bound<'_, App>, token: &Bound<'_, PyAny>) -> PyResult<(Self, Operation)> {
        let op = AnyOperation::revoke(token_text(token)?);
        Ok((Revoke, Operation::new(app.get().shared(), op)))
    }
}

/// `HandleEvent(app, event)`: acts on a verified webhook event (`verify_webhook`'s): on
/// `uninstalled`, `suspended` and `newPermissionsAccepted`, drops the installation's token here
/// and in the shared store (an unconditional delete), and the organization's remembered
/// installation. `Done.value` is whether the event dropped anything.
#[pyclass(module = "icr_app", extends = Operation)]
pub struct HandleEvent;

#[pymethods]
impl HandleEvent {
    #[new]
    fn new(app: &Bound<'_, App>, event: &Bound<'_, crate::webhook::WebhookEvent>) -> (Self, Operation) {
        let op = AnyOperation::handle_event(event.get().inner());
        (HandleEvent, Operation::new(app.get().shared(), op))
    }
}

/// `Forget(app, installation_id)`: forgets an installation (a `str`: its token) or an
/// organization (a `ByOrganization`: its remembered installation and that one's token), here
/// and in the shared store; the next call mints anew. `Done.value` is `True`.
#[pyclass(module = "icr_app", extends = Operation)]
pub struct Forget;

#[pymethods]
impl Forget {
    #[new]
    fn new(app: &Bound<'_, App>, installation_id: &Bound<'_, PyAny>) -> PyResult<(Self, Operation)> {
        let scope = named(installation_id, "an installation id (str) or an icr_app.ByOrganization")?;
        Ok((Forget, Operation::new(app.get().shared(), AnyOperation::forget(scope))))
    }
}

/// `RevokeAll(app)`: revokes every cached token (after waiting for mints in flight) and empties
/// the cache. `Done.value` is how many were revoked; the first failure is raised after all were
/// tried.
#[pyclass(module = "icr_app", extends = Operation)]
pub struct RevokeAll;

#[pymethods]
impl RevokeAll {
    #[new]
    fn new(app: &Bound<'_, App>) -> (Self, Operation) {
        (
            RevokeAll,
            Operation::new(app.get().shared(), AnyOperation::revoke_all()),
        )
    }
}

/// `Refresher(app)`: renews cached tokens ahead of expiry while the old ones keep serving; never
/// finishes (abandon it to stop). While it exists un-abandoned, callers are handed a still-valid
/// token whose refresh is due instead of waiting for the refresh.
#[pyclass(module = "icr_app", extends = Operation)]
pub struct Refresher;

#[pymethods]
impl Refresher {
    #[new]
    fn new(py: Python<'_>, app: &Bound<'_, App>) -> (Self, Operation) {
        let shared = app.get().shared();
        let op = shared.with(py, AnyOperation::refresher);
        (Refresher, Operation::new(shared, op))
    }
}

/// A step: send this request and report back for `.id`.
#[pyclass(module = "icr_app", frozen, name = "Send")]
pub struct SendStep {
    id: u64,
    request: PlainRequest,
}

impl SendStep {
    /// Whether the transport policy lets this request go, and by which route.
    pub(crate) fn route(&self, policy: &CorePolicy) -> Result<Route, CoreError> {
        let uri = self.request.url.parse::<http::Uri>().map_err(|_| {
            CoreError::transport(
                TransportErrorKind::Refused,
                "the request's URL is not a valid absolute URL",
            )
        })?;
        if self.request.header("authorization").is_some() {
            return policy.check_credential_target(&uri);
        }
        let mut probe = Request::new(());
        *probe.uri_mut() = uri;
        policy.check(&probe)
    }
}

#[pymethods]
impl SendStep {
    /// The id to report back with.
    #[getter]
    fn id(&self) -> u64 {
        self.id
    }

    /// `GET`, `POST`, ...
    #[getter]
    fn method(&self) -> &str {
        &self.request.method
    }

    /// The absolute URL.
    #[getter]
    fn url(&self) -> &str {
        &self.request.url
    }

    /// Every header, as `(name, value)` pairs (the credential included: never log them).
    #[getter]
    fn headers(&self) -> Vec<(String, String)> {
        self.request.headers.clone()
    }

    /// The value of header `name` (any case), if present.
    fn header(&self, name: &str) -> Option<&str> {
        self.request.header(name)
    }

    /// The `Authorization` header's value (the credential: never log it).
    #[getter]
    fn authorization(&self) -> Option<&str> {
        self.request.header("authorization")
    }

    /// The body.
    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.request.body)
    }

    /// What the request is for, by the core's stable name: `mint` (an access token), `lookup`
    /// (an organization's installation), `call` (an app-JWT call whose answer is the result),
    /// `request` (the request a `SendAs` was made for) or `revoke`.
    #[getter]
    fn purpose(&self) -> &'static str {
        self.request.purpose.as_str()
    }

    /// Whether this is the request a `SendAs` was made for (`purpose == "request"`; `False`: a
    /// mint or a lookup it needs first).
    #[getter]
    fn target(&self) -> bool {
        self.request.purpose == Purpose::Request
    }

    fn __repr__(&self) -> String {
        format!(
            "Send(id={}, method={:?}, url={:?}, purpose={:?})",
            self.id,
            self.request.method,
            self.request.url,
            self.request.purpose.as_str()
        )
    }
}

/// A step: sleep until `.until` (seconds since the epoch), then poll again.
#[pyclass(module = "icr_app", frozen)]
pub struct Sleep {
    /// When to poll again.
    #[pyo3(get)]
    until: f64,
}

#[pymethods]
impl Sleep {
    fn __repr__(&self) -> String {
        format!("Sleep(until={})", self.until)
    }
}

/// A step: another operation on the same `App` is minting the token this one needs: poll again
/// when any operation on it reports back or is abandoned (the core's change counter of the App,
/// `.change` when this was decided, has moved on since), or at `.until` at the latest.
#[pyclass(module = "icr_app", frozen)]
pub struct Wait {
    /// When to poll again at the latest.
    #[pyo3(get)]
    until: f64,
    /// The core's change counter of the App when the wait was decided (it moves whenever any
    /// operation on the App is reported to or abandoned).
    #[pyo3(get)]
    change: u64,
}

#[pymethods]
impl Wait {
    fn __repr__(&self) -> String {
        format!("Wait(until={}, change={})", self.until, self.change)
    }
}

/// A step: sign `.message` with the app's private key, held outside this process (RS256:
/// RSASSA-PKCS1-v1_5 with SHA-256), and report with `handle_signature(id, signature=...)` or
/// `handle_signature(id, error=...)`. Only for an App without a key.
#[pyclass(module = "icr_app", frozen)]
pub struct Sign {
    /// The id to report back with.
    #[pyo3(get)]
    id: u64,
    message: Vec<u8>,
}

#[pymethods]
impl Sign {
    /// The bytes to sign (the JWT's signing input).
    #[getter]
    fn message<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, &self.message)
    }

    fn __repr__(&self) -> String {
        format!("Sign(id={}, message=<{} bytes>)", self.id, self.message.len())
    }
}

/// A step: the operation finished; `.value` is its result.
#[pyclass(module = "icr_app", frozen)]
pub struct Done {
    /// The result.
    #[pyo3(get)]
    value: Py<PyAny>,
}

#[pymethods]
impl Done {
    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        Ok(format!("Done({})", self.value.bind(py).repr()?))
    }
}
