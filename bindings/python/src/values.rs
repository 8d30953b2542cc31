//! Values handed to Python: [`Token`], [`Installation`], [`InstallationsPage`],
//! [`Organization`], and JSON.

use icr_app_core::{
    Installation as CoreInstallation, InstallationsPage as CorePage, Organization as CoreOrganization, Permissions,
    Timestamp, Token as CoreToken,
};
use pyo3::IntoPyObjectExt;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyList};

/// `serde_json::Value` as the Python objects `json.loads` would give.
pub(crate) fn json_to_py(py: Python<'_>, value: &serde_json::Value) -> PyResult<Py<PyAny>> {
    use serde_json::Value;
    Ok(match value {
        Value::Null => py.None(),
        Value::Bool(b) => b.into_py_any(py)?,
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                i.into_py_any(py)?
            } else if let Some(u) = n.as_u64() {
                u.into_py_any(py)?
            } else {
                n.as_f64().unwrap_or(f64::NAN).into_py_any(py)?
            }
        }
        Value::String(s) => s.into_py_any(py)?,
        Value::Array(items) => {
            let list = PyList::empty(py);
            for item in items {
                list.append(json_to_py(py, item)?)?;
            }
            list.into_any().unbind()
        }
        Value::Object(fields) => {
            let dict = PyDict::new(py);
            for (k, v) in fields {
                dict.set_item(k, json_to_py(py, v)?)?;
            }
            dict.into_any().unbind()
        }
    })
}

static FROM_TIMESTAMP: PyOnceLock<(Py<PyAny>, Py<PyAny>)> = PyOnceLock::new();

/// An aware `datetime` in UTC.
pub(crate) fn datetime(py: Python<'_>, t: Timestamp) -> PyResult<Py<PyAny>> {
    let (class, utc) = FROM_TIMESTAMP.get_or_try_init(py, || -> PyResult<_> {
        let module = py.import("datetime")?;
        let utc = module.getattr("timezone")?.getattr("utc")?;
        Ok((module.getattr("datetime")?.unbind(), utc.unbind()))
    })?;
    let secs = t.unix_millis() as f64 / 1000.0;
    class.call_method1(py, "fromtimestamp", (secs, utc.clone_ref(py)))
}

fn permissions_dict<'py>(py: Python<'py>, permissions: &Permissions) -> PyResult<Bound<'py, PyDict>> {
    let dict = PyDict::new(py);
    for (name, level) in permissions {
        dict.set_item(name, level.as_str())?;
    }
    Ok(dict)
}

/// An access token (an installation's or the app's). `repr()` and `str()` never show the token
/// itself: read it from `.token`.
#[pyclass(module = "icr_app", frozen)]
pub struct Token {
    pub(crate) inner: CoreToken,
}

#[pymethods]
impl Token {
    /// The token (`crs_...`), for `Authorization: Bearer`. The one way to read it.
    #[getter]
    fn token(&self) -> &str {
        self.inner.secret().expose()
    }

    /// When the registry stops accepting it: its `expiresAt`, an aware `datetime` in UTC.
    #[getter]
    fn expires_at(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        datetime(py, self.inner.access_token().expires_at)
    }

    /// When it expires on this machine's clock (`expiresAt` corrected for the registry's clock
    /// offset), an aware `datetime` in UTC.
    #[getter]
    fn expires_local(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        datetime(py, self.inner.expires_local())
    }

    /// Seconds of life left now, on this machine's clock.
    fn remaining(&self) -> f64 {
        self.inner.remaining(crate::app::now(None)).as_secs_f64()
    }

    /// The permissions it carries: permission name to level (`VIEW`, `REQUEST`, `WRITE`, ...).
    #[getter]
    fn permissions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        permissions_dict(py, &self.inner.access_token().permissions)
    }

    /// The installation it is for (`None` for an app token).
    #[getter]
    fn installation_id(&self) -> Option<&str> {
        self.inner.access_token().installation_id.as_deref()
    }

    /// The organization the installation belongs to (`None` for an app token).
    #[getter]
    fn organization_id(&self) -> Option<&str> {
        self.inner.access_token().organization_id.as_deref()
    }

    /// The app it belongs to, as the registry said.
    #[getter]
    fn app_id(&self) -> Option<&str> {
        self.inner.access_token().app_id.as_deref()
    }

    fn __repr__(&self) -> String {
        let access = self.inner.access_token();
        let scope = match &access.installation_id {
            Some(id) => format!("installation_id={id:?}"),
            None => "app".to_owned(),
        };
        format!(
            "Token({scope}, expires_at={:?}, token=[redacted])",
            access.expires_at.to_rfc3339()
        )
    }

    fn __str__(&self) -> String {
        self.__repr__()
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other.cast::<Token>().is_ok_and(|o| o.get().inner.same_as(&self.inner))
    }

    fn __hash__(&self) -> u64 {
        self.inner.access_token().expires_at.unix_millis() as u64
    }

    fn __reduce__(&self) -> PyResult<()> {
        Err(pyo3::exceptions::PyTypeError::new_err(
            "an icr_app.Token is not picklable: it holds a secret; pass installation ids between processes and mint there",
        ))
    }
}

/// An organization an app is installed on.
#[pyclass(module = "icr_app", frozen)]
pub struct Organization {
    inner: CoreOrganization,
}

#[pymethods]
impl Organization {
    /// The organization id.
    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }

    /// Its name: `fullName`, else `name`, else the id.
    #[getter]
    fn name(&self) -> &str {
        self.inner.display_name()
    }

    /// `fullName` as sent, if any.
    #[getter]
    fn full_name(&self) -> Option<&str> {
        self.inner.full_name.as_deref()
    }

    /// Every field as the registry sent it.
    #[getter]
    fn raw(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        json_to_py(py, &serde_json::to_value(&self.inner).unwrap_or_default())
    }

    fn __repr__(&self) -> String {
        format!(
            "Organization(id={:?}, name={:?})",
            self.inner.id,
            self.inner.display_name()
        )
    }
}

/// An installation of the app on an organization.
#[pyclass(module = "icr_app", frozen)]
pub struct Installation {
    inner: CoreInstallation,
}

impl Installation {
    pub(crate) fn new(inner: CoreInstallation) -> Self {
        Self { inner }
    }
}

#[pymethods]
impl Installation {
    /// The installation id.
    #[getter]
    fn id(&self) -> &str {
        &self.inner.id
    }

    /// The app id.
    #[getter]
    fn app_id(&self) -> Option<&str> {
        self.inner.app_id.as_deref()
    }

    /// The organization it is installed on (`None` if the registry did not say).
    #[getter]
    fn organization(&self, py: Python<'_>) -> PyResult<Option<Py<Organization>>> {
        self.inner
            .organization
            .clone()
            .map(|inner| Py::new(py, Organization { inner }))
            .transpose()
    }

    /// The permissions the organization granted: name to level.
    #[getter]
    fn permissions<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        permissions_dict(py, &self.inner.permissions)
    }

    /// Every field as the registry sent it.
    #[getter]
    fn raw(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        json_to_py(py, &serde_json::to_value(&self.inner).unwrap_or_default())
    }

    fn __repr__(&self) -> String {
        let org = self
            .inner
            .organization
            .as_ref()
            .map(|o| o.display_name())
            .unwrap_or("?");
        format!("Installation(id={:?}, organization={org:?})", self.inner.id)
    }
}

/// One page of the app's installations (`GET /app/installations?limit&page`): its
/// installations and where it stands in the whole list, as the registry said.
#[pyclass(module = "icr_app", frozen)]
pub struct InstallationsPage {
    inner: CorePage,
}

impl InstallationsPage {
    pub(crate) fn new(inner: CorePage) -> Self {
        Self { inner }
    }
}

#[pymethods]
impl InstallationsPage {
    /// The installations on this page.
    #[getter]
    fn installations<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        let list = PyList::empty(py);
        for i in &self.inner.installations {
            list.append(Py::new(py, Installation::new(i.clone()))?)?;
        }
        Ok(list)
    }

    /// How many installations there are in all (`pagination.total`), if the registry said.
    #[getter]
    fn total(&self) -> Option<u64> {
        self.inner.pagination.as_ref()?.total
    }

    /// This page's number (`pagination.currentPage`), if the registry said.
    #[getter]
    fn current_page(&self) -> Option<i64> {
        self.inner.pagination.as_ref()?.current_page
    }

    /// How many pages there are (`pagination.pageCount`), if the registry said.
    #[getter]
    fn page_count(&self) -> Option<u64> {
        self.inner.pagination.as_ref()?.page_count
    }

    /// The next page's number (`pagination.nextPage`): `None` on the last page, or if the
    /// registry did not say.
    #[getter]
    fn next_page(&self) -> Option<i64> {
        self.inner.pagination.as_ref()?.next_page.flatten()
    }

    /// The previous page's number (`pagination.prevPage`), if the registry said.
    #[getter]
    fn prev_page(&self) -> Option<i64> {
        self.inner.pagination.as_ref()?.prev_page
    }

    /// Whether another page follows this one, which was asked for with `limit` and brings the
    /// installations seen so far to `seen` (the core's rule, as `ListInstallations` follows it:
    /// an empty page ends the list; then the pagination block; then a page shorter than
    /// `limit`).
    fn has_more(&self, limit: u32, seen: usize) -> bool {
        self.inner.has_more(limit, seen)
    }

    /// The whole page as the registry sent it (the fields the core reads).
    #[getter]
    fn raw(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        json_to_py(py, &serde_json::to_value(&self.inner).unwrap_or_default())
    }

    fn __repr__(&self) -> String {
        let p = self.inner.pagination.as_ref();
        let shown = |v: Option<String>| v.unwrap_or_else(|| "None".to_owned());
        format!(
            "InstallationsPage(installations={}, current_page={}, total={})",
            self.inner.installations.len(),
            shown(p.and_then(|p| p.current_page).map(|v| v.to_string())),
            shown(p.and_then(|p| p.total).map(|v| v.to_string())),
        )
    }
}
