//! What a token is for, as Python names it: an installation id (`str`), an
//! [`ByOrganization`] (whatever installation the app has on that organization), or `None` (the
//! app), read into the core's `TokenScope` in one place.

use icr_app_core::{InstallationId, OrganizationId, TokenScope};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyString, PyTuple};

use crate::errors::to_py;

/// `ByOrganization(organization_id)`: act as the app's installation on this organization,
/// whatever its id. Pass it wherever an installation id goes (`installation_token`,
/// `get_json`, `request`, `InstallationAuth`, `RequestsAuth`, `GetToken`, `SendAs`,
/// `App.invalidate`, `installation`).
///
/// An organization keeps its id when it uninstalls and reinstalls the app; the installation
/// gets a new one. The core looks the installation up once
/// (`GET /app/organizations/{id}/installation`, one lookup however many threads or tasks ask,
/// shared through Redis with `redis_url`), remembers it, and the token is that installation's
/// (one token, one mint, whichever way it is asked for). When the registry no longer knows the
/// installation remembered (a request answered 401, then the mint for it 404), the organization
/// is looked up again, once, and the call goes on as the new installation. An organization
/// without the app raises `NotFoundError` saying so.
///
/// A value: immutable, equal (and hashing equal) when the ids are; never equal to a `str`.
/// The id is checked as an installation id is (not empty, no whitespace or control
/// characters, at most 256 characters): `ConfigError` otherwise; anything but a `str` is a
/// `TypeError`.
#[pyclass(module = "icr_app", frozen, eq, hash)]
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ByOrganization {
    pub(crate) id: OrganizationId,
}

#[pymethods]
impl ByOrganization {
    #[new]
    fn new(organization_id: &Bound<'_, PyAny>) -> PyResult<Self> {
        let Ok(text) = organization_id.cast::<PyString>() else {
            return Err(PyTypeError::new_err(format!(
                "ByOrganization takes the organization's id as a str, not {}",
                type_name(organization_id)
            )));
        };
        let id = OrganizationId::new(text.to_cow()?).map_err(to_py)?;
        Ok(Self { id })
    }

    /// The organization's id.
    #[getter]
    fn organization_id(&self) -> &str {
        self.id.as_str()
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let id = PyString::new(py, self.id.as_str()).repr()?;
        Ok(format!("ByOrganization({id})"))
    }

    /// For `copy` and `pickle`: made again from its id.
    fn __getnewargs__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        PyTuple::new(py, [self.id.as_str()])
    }
}

/// The type's name, for a `TypeError`.
fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "this type".to_owned())
}

/// The scope named by an `installation_id` argument: `None` the app, a `str` the installation,
/// a `ByOrganization` the organization's installation; anything else is a `TypeError`, and an
/// id that cannot be one a `ConfigError`.
pub(crate) fn scope(installation_id: Option<&Bound<'_, PyAny>>) -> PyResult<TokenScope> {
    match installation_id {
        None => Ok(TokenScope::App),
        Some(value) => named(
            value,
            "an installation id (str), an icr_app.ByOrganization, or None (the app)",
        ),
    }
}

/// The installation or organization `value` names (`expected`: what the `TypeError` says it
/// must be).
pub(crate) fn named(value: &Bound<'_, PyAny>, expected: &str) -> PyResult<TokenScope> {
    if let Ok(text) = value.cast::<PyString>() {
        return Ok(TokenScope::Installation(
            InstallationId::new(text.to_cow()?).map_err(to_py)?,
        ));
    }
    if let Ok(by) = value.cast::<ByOrganization>() {
        return Ok(TokenScope::Organization(by.get().id.clone()));
    }
    Err(PyTypeError::new_err(format!(
        "installation_id must be {expected}, not {}",
        type_name(value)
    )))
}

/// Whether `memo` (the argument a kept token was asked for) and `asked` name the same scope,
/// without running any Python code (the core's mutex may be held): the same object (the usual
/// case), `str`s of equal text (compared in Rust: a subclass's `__eq__` is not asked, and the
/// scope is the text anyway), or equal `ByOrganization`s.
pub(crate) fn same_scope(memo: Option<&Bound<'_, PyAny>>, asked: Option<&Bound<'_, PyAny>>) -> bool {
    match (memo, asked) {
        (None, None) => true,
        (Some(memo), Some(asked)) => {
            if memo.is(asked) {
                return true;
            }
            if let (Ok(memo), Ok(asked)) = (memo.cast::<PyString>(), asked.cast::<PyString>()) {
                return matches!((memo.to_cow(), asked.to_cow()), (Ok(a), Ok(b)) if a == b);
            }
            match (memo.cast::<ByOrganization>(), asked.cast::<ByOrganization>()) {
                (Ok(memo), Ok(asked)) => memo.get().id == asked.get().id,
                _ => false,
            }
        }
        _ => false,
    }
}
