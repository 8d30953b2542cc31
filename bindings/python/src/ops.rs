//! The core's operations as Python objects: `poll(now) -> Send | Sleep | Wait | Done`,
//! `handle_response`, `handle_failure`, `abandon`.

use std::sync::Arc;

use http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use http::{Method, Request, Response};
use icr_app_core::{
    App as CoreApp, Call, Credential, Error as CoreError, GetToken as CoreGetToken, Installation as CoreInstallation,
    ListInstallations as CoreListInstallations, Operation as _, Refresher as CoreRefresher, RequestId,
    Revoke as CoreRevoke, RevokeAll as CoreRevokeAll, SecretString, SendAs as CoreSendAs, Step, StoreCommand,
    StoreReply as CoreStoreReply, Timestamp, Token as CoreToken, TokenScope,
};
use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::app::{App, Shared, duration, now, seconds};
use crate::errors::{self, to_py};
use crate::fork_generation;
use crate::scope::{named, scope};
use crate::store::{StoreReply, StoreStep};
use crate::values::{Installation, Token, json_to_py};

/// Marks the request a `SendAs` was made for (as opposed to a mint it needs first).
#[derive(Clone, Copy, Debug)]
struct Target;

/// How a `SendAs` hands back its response.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SendMode {
    /// `(status, headers, body)`, whatever the status.
    Raw,
    /// The body parsed as JSON; a non-2xx status raises the core's error for it.
    Json,
}

#[allow(clippy::large_enum_variant)] // one per operation, made once
pub(crate) enum Kind {
    GetToken(CoreGetToken),
    Installation(Call<CoreInstallation>),
    List(CoreListInstallations),
    SendAs(CoreSendAs, SendMode),
    Revoke(CoreRevoke),
    RevokeAll(CoreRevokeAll),
    Refresher(CoreRefresher),
}

#[allow(clippy::large_enum_variant)] // short-lived: converted to Python at once
pub(crate) enum DoneValue {
    Token(CoreToken),
    Installation(CoreInstallation),
    Installations(Vec<CoreInstallation>),
    Response(Response<Vec<u8>>),
    Unit(()),
    Count(usize),
}

pub(crate) enum RawStep {
    Send { id: RequestId, request: Request<Vec<u8>> },
    Store { id: RequestId, command: StoreCommand },
    Sleep(Timestamp),
    Wait(Timestamp),
    Done(Result<DoneValue, CoreError>),
}

pub(crate) fn raw_step<T>(step: Step<T>, done: impl FnOnce(T) -> DoneValue) -> RawStep {
    match step {
        Step::Send { id, request } => RawStep::Send { id, request },
        Step::Store { id, command } => RawStep::Store { id, command },
        Step::Sleep { until } => RawStep::Sleep(until),
        Step::Wait { until, .. } => RawStep::Wait(until),
        Step::Done(result) => RawStep::Done(result.map(done)),
    }
}

macro_rules! each {
    ($kind:expr, $op:ident => $body:expr) => {
        match $kind {
            Kind::GetToken($op) => $body,
            Kind::Installation($op) => $body,
            Kind::List($op) => $body,
            Kind::SendAs($op, _) => $body,
            Kind::Revoke($op) => $body,
            Kind::RevokeAll($op) => $body,
            Kind::Refresher($op) => $body,
        }
    };
}

impl Kind {
    fn poll(&mut self, app: &mut CoreApp, now: Timestamp) -> RawStep {
        match self {
            Kind::GetToken(op) => raw_step(op.poll(app, now), DoneValue::Token),
            Kind::Installation(op) => raw_step(op.poll(app, now), DoneValue::Installation),
            Kind::List(op) => raw_step(op.poll(app, now), DoneValue::Installations),
            Kind::SendAs(op, _) => raw_step(op.poll(app, now), DoneValue::Response),
            Kind::Revoke(op) => raw_step(op.poll(app, now), DoneValue::Unit),
            Kind::RevokeAll(op) => raw_step(op.poll(app, now), DoneValue::Count),
            Kind::Refresher(op) => raw_step(op.poll(app, now), DoneValue::Unit),
        }
    }

    fn handle_response(&mut self, app: &mut CoreApp, id: RequestId, response: Response<Vec<u8>>, now: Timestamp) {
        each!(self, op => op.handle_response(app, id, response, now))
    }

    fn handle_failure(&mut self, app: &mut CoreApp, id: RequestId, error: CoreError, now: Timestamp) {
        each!(self, op => op.handle_failure(app, id, error, now))
    }

    fn handle_store(
        &mut self,
        app: &mut CoreApp,
        id: RequestId,
        reply: Result<CoreStoreReply, CoreError>,
        now: Timestamp,
    ) {
        each!(self, op => op.handle_store(app, id, reply, now))
    }

    fn abandon(&mut self, app: &mut CoreApp, now: Timestamp) {
        each!(self, op => op.abandon(app, now));
        if matches!(self, Kind::Refresher(_)) {
            app.set_background_refresh(false);
        }
    }
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

/// One of the core's operations on an `App`, driven by polling. Subclasses: `GetToken`,
/// `CallInstallation`, `ListInstallations`, `SendAs`, `Revoke`, `RevokeAll`, `Refresher`.
///
/// The contract (the core's "Driving the core yourself"): call `poll(now)` and perform the step
/// it returns: `Send` (send it; report `handle_response` for any status, or `handle_failure`
/// when no response came), `Store` (only when the App has a shared store: `reply = step.run()`,
/// off the event loop, then report `handle_store(step.id, reply)`), `Sleep` (sleep until `.until`), `Wait` (another operation on the same
/// `App` is minting: wait until any operation on it reports back or is abandoned, or until
/// `.until`), `Done` (`.value` is the result; a failure is raised by `poll` instead). After every
/// report and abandon, wake the operations that wait. On every way out before `Done`, call
/// `abandon()`. `now` is seconds since the epoch (`time.time()`); `None` reads the clock.
#[pyclass(module = "icr_app", subclass)]
pub struct Operation {
    shared: Arc<Shared>,
    generation: u64,
    kind: Kind,
    first: Option<RawStep>,
    done: bool,
}

impl Operation {
    fn new(shared: Arc<Shared>, kind: Kind) -> Self {
        Self {
            generation: shared.generation,
            shared,
            kind,
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

    fn step_to_py(&mut self, py: Python<'_>, step: RawStep) -> PyResult<Py<PyAny>> {
        match step {
            RawStep::Send { id, request } => {
                let target = request.extensions().get::<Target>().is_some();
                Py::new(
                    py,
                    SendStep {
                        id: id.0,
                        request,
                        target,
                    },
                )?
                .into_py_any(py)
            }
            RawStep::Store { id, command } => {
                Py::new(py, StoreStep::new(id.0, command, self.shared.store.load_full()))?.into_py_any(py)
            }
            RawStep::Sleep(until) => Py::new(py, Sleep { until: seconds(until) })?.into_py_any(py),
            RawStep::Wait(until) => Py::new(py, Wait { until: seconds(until) })?.into_py_any(py),
            RawStep::Done(result) => {
                self.done = true;
                let value = match result {
                    Ok(value) => self.value(py, value)?,
                    Err(error) => return Err(to_py(error)),
                };
                Py::new(py, Done { value })?.into_py_any(py)
            }
        }
    }

    fn value(&self, py: Python<'_>, value: DoneValue) -> PyResult<Py<PyAny>> {
        match value {
            DoneValue::Token(inner) => Py::new(py, Token { inner })?.into_py_any(py),
            DoneValue::Installation(i) => Py::new(py, Installation::new(i))?.into_py_any(py),
            DoneValue::Installations(all) => {
                let list = PyList::empty(py);
                for i in all {
                    list.append(Py::new(py, Installation::new(i))?)?;
                }
                list.into_py_any(py)
            }
            DoneValue::Response(response) => match &self.kind {
                Kind::SendAs(_, SendMode::Json) => {
                    let value: serde_json::Value =
                        icr_app_core::response::parse_json(&response, Credential::AccessToken).map_err(to_py)?;
                    json_to_py(py, &value)
                }
                _ => {
                    let headers = PyList::empty(py);
                    for (name, value) in response.headers() {
                        headers.append((name.as_str(), String::from_utf8_lossy(value.as_bytes())))?;
                    }
                    let body = PyBytes::new(py, response.body());
                    PyTuple::new(
                        py,
                        [
                            response.status().as_u16().into_py_any(py)?,
                            headers.into_py_any(py)?,
                            body.into_py_any(py)?,
                        ],
                    )?
                    .into_py_any(py)
                }
            },
            DoneValue::Unit(()) => Ok(py.None()),
            DoneValue::Count(n) => n.into_py_any(py),
        }
    }
}

pub(crate) fn new_operation(
    py: Python<'_>,
    _app: &App,
    shared: Arc<Shared>,
    kind: Kind,
    first: Option<RawStep>,
    class: Class,
) -> PyResult<Py<PyAny>> {
    let mut op = Operation::new(shared, kind);
    op.first = first;
    let init = PyClassInitializer::from(op);
    match class {
        Class::GetToken => Py::new(py, init.add_subclass(GetToken))?.into_py_any(py),
    }
}

fn response_from(status: u16, headers: &Bound<'_, PyAny>, body: &[u8]) -> PyResult<Response<Vec<u8>>> {
    let mut response = Response::new(body.to_vec());
    *response.status_mut() = http::StatusCode::from_u16(status)
        .map_err(|_| pyo3::exceptions::PyValueError::new_err(format!("{status} is not an HTTP status")))?;
    let map = response.headers_mut();
    for pair in headers.try_iter()? {
        let pair = pair?;
        let (name, value): (Bound<'_, PyAny>, Bound<'_, PyAny>) = pair.extract()?;
        let name = bytes_of(&name)?;
        let value = bytes_of(&value)?;
        // A header the http crate cannot hold is left out (the core reads only standard ones).
        if let (Ok(name), Ok(value)) = (HeaderName::from_bytes(&name), HeaderValue::from_bytes(&value)) {
            map.append(name, value);
        }
    }
    Ok(response)
}

fn bytes_of(value: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if let Ok(b) = value.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    Ok(value.cast::<PyString>()?.to_cow()?.as_bytes().to_vec())
}

#[pymethods]
impl Operation {
    /// What to do next: `Send`, `Sleep`, `Wait` or `Done`; raises the operation's error (an
    /// `icr_app.Error`) when it finished with one. Once it has finished (after `Done`, its error,
    /// or `abandon`) it raises `ConfigError` and does nothing.
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
                let kind = &mut self.kind;
                self.shared.with(py, |app| kind.poll(app, t))
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
        let response = response_from(status, headers, body)?;
        let t = crate::app::now(now);
        let kind = &mut self.kind;
        self.shared
            .with(py, |app| kind.handle_response(app, RequestId(id), response, t));
        Ok(())
    }

    /// Reports that request `id` got no response. `kind`: `connect`, `timeout`,
    /// `connection_lost`, `body_too_large`, `refused`, `cancelled` or `other`; `message`: what
    /// happened (never a credential).
    #[pyo3(signature = (id, kind, message, now = None))]
    fn handle_failure(&mut self, py: Python<'_>, id: u64, kind: &str, message: &str, now: Option<f64>) -> PyResult<()> {
        if self.done {
            return Ok(());
        }
        self.check_fork()?;
        let error = CoreError::transport(errors::parse_kind(kind), message);
        let t = crate::app::now(now);
        let op = &mut self.kind;
        self.shared
            .with(py, |app| op.handle_failure(app, RequestId(id), error, t));
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
        let op = &mut self.kind;
        self.shared
            .with(py, |app| op.handle_store(app, RequestId(id), reply, t));
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
        let kind = &mut self.kind;
        self.shared.with(py, |app| kind.abandon(app, t));
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
            self.kind.abandon(&mut self.shared.lock().core, t);
        }
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
        let op = CoreGetToken::new(scope(installation_id)?, duration("min_life", min_life)?);
        Ok((GetToken, Operation::new(app.get().shared(), Kind::GetToken(op))))
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
        let call = match named(installation_id, "an installation id (str) or an icr_app.ByOrganization")? {
            TokenScope::Organization(org) => Call::installation_for_organization(org),
            TokenScope::Installation(id) => Call::installation(id),
            TokenScope::App => return Err(pyo3::exceptions::PyTypeError::new_err("no installation named")),
        };
        Ok((
            CallInstallation,
            Operation::new(app.get().shared(), Kind::Installation(call)),
        ))
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
        (
            ListInstallations,
            Operation::new(app.get().shared(), Kind::List(CoreListInstallations::new(limit))),
        )
    }
}

/// `SendAs(app, installation_id, method, url, *, headers=None, body=None, json=False)`: any
/// request, authorised as the installation (a `str`, or a `ByOrganization`: the app's
/// installation on that organization, followed when it is reinstalled; or, with `None`, as the
/// app). `url` is a path
/// relative to the base URL, starting with `/` (then the standard headers are added; a `://`
/// in its query changes nothing), or an absolute URL (`https://...`) on the registry (tokens go to no other host: any other host is a
/// `ConfigError`). On a 401 the token is dropped, a new one minted, and
/// the request sent once more. The `Send` of the request itself has `.target` true (any other
/// `Send` is a mint). `Done.value` is `(status, headers, body)`, or with `json=True` the body
/// parsed as JSON (a non-2xx status raises its error).
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
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| to_py(CoreError::config("request method", "it is not an HTTP method")))?;
        let shared = app.get().shared();
        let body = body.map(<[u8]>::to_vec);
        // A path (it starts with `/`) is a path whatever its query holds (`/x?next=https://...`).
        let mut request = if url.starts_with('/') || !url.contains("://") {
            shared.with(py, |a| a.api().request(method, url, body)).map_err(to_py)?
        } else {
            let mut request = Request::new(body.unwrap_or_default());
            *request.method_mut() = method;
            *request.uri_mut() = url
                .parse()
                .map_err(|_| to_py(CoreError::config("request URL", "it is not a valid absolute URL")))?;
            request
        };
        if let Some(headers) = headers {
            for pair in headers.try_iter()? {
                let (name, value): (String, String) = pair?.extract()?;
                let name = HeaderName::from_bytes(name.as_bytes())
                    .map_err(|_| to_py(CoreError::config("request header", "a header name is not valid")))?;
                let value = HeaderValue::from_str(&value)
                    .map_err(|_| to_py(CoreError::config("request header", "a header value is not valid")))?;
                request.headers_mut().insert(name, value);
            }
        }
        request.extensions_mut().insert(Target);
        let mode = if json { SendMode::Json } else { SendMode::Raw };
        Ok((
            SendAs,
            Operation::new(shared, Kind::SendAs(CoreSendAs::new(scope, request), mode)),
        ))
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
        let token = token_text(token)?;
        Ok((
            Revoke,
            Operation::new(app.get().shared(), Kind::Revoke(CoreRevoke::new(token))),
        ))
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
            Operation::new(app.get().shared(), Kind::RevokeAll(CoreRevokeAll::new())),
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
        shared.with(py, |a| a.set_background_refresh(true));
        (Refresher, Operation::new(shared, Kind::Refresher(CoreRefresher::new())))
    }
}

/// A step: send this request and report back for `.id`.
#[pyclass(module = "icr_app", frozen, name = "Send")]
pub struct SendStep {
    id: u64,
    pub(crate) request: Request<Vec<u8>>,
    target: bool,
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
        self.request.method().as_str()
    }

    /// The absolute URL.
    #[getter]
    fn url(&self) -> String {
        self.request.uri().to_string()
    }

    /// Every header, as `(name, value)` pairs (the credential included: never log them).
    #[getter]
    fn headers(&self) -> Vec<(String, String)> {
        self.request
            .headers()
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect()
    }

    /// The value of header `name`, if present.
    fn header(&self, name: &str) -> Option<String> {
        self.request
            .headers()
            .get(name)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
    }

    /// The `Authorization` header's value (the credential: never log it).
    #[getter]
    fn authorization(&self) -> Option<String> {
        self.header(AUTHORIZATION.as_str())
    }

    /// The body.
    #[getter]
    fn body<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        PyBytes::new(py, self.request.body())
    }

    /// Whether this is the request a `SendAs` was made for (`False`: a mint it needs first).
    #[getter]
    fn target(&self) -> bool {
        self.target
    }

    fn __repr__(&self) -> String {
        format!(
            "Send(id={}, method={:?}, url={:?}, target={})",
            self.id,
            self.request.method().as_str(),
            self.request.uri().to_string(),
            if self.target { "True" } else { "False" }
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
/// when any operation on it reports back or is abandoned, or at `.until` at the latest.
#[pyclass(module = "icr_app", frozen)]
pub struct Wait {
    /// When to poll again at the latest.
    #[pyo3(get)]
    until: f64,
}

#[pymethods]
impl Wait {
    fn __repr__(&self) -> String {
        format!("Wait(until={})", self.until)
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
