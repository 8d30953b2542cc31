//! `verify_webhook`: the core's webhook verification.

use icr_app_core::WebhookSecret;
use icr_app_core::webhook::{WebhookEvent as CoreEvent, verify};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::errors::webhook_to_py;
use crate::values::{Installation, json_to_py};

/// A verified webhook event: the decoded `signedData`.
#[pyclass(module = "icr_app", frozen)]
pub struct WebhookEvent {
    inner: CoreEvent,
}

impl WebhookEvent {
    /// The core's event.
    pub(crate) fn inner(&self) -> &CoreEvent {
        &self.inner
    }
}

#[pymethods]
impl WebhookEvent {
    /// What happened: `installed`, `uninstalled`, `suspended`, `unsuspended`,
    /// `newPermissionsAccepted`, `warehouseTransaction`, `organizationTransaction`, or a newer
    /// kind as sent.
    #[getter]
    fn kind(&self) -> &str {
        self.inner.event.as_str()
    }

    /// The id of the installation it concerns, to pick the token to act with.
    #[getter]
    fn installation_id(&self) -> Option<&str> {
        self.inner.installation_id()
    }

    /// The installation it concerns, if the payload has one.
    #[getter]
    fn installation(&self, py: Python<'_>) -> PyResult<Option<Py<Installation>>> {
        self.inner
            .installation
            .clone()
            .map(|i| Py::new(py, Installation::new(i)))
            .transpose()
    }

    /// The whole signed payload (`event`, `installation`, `sender`, `transaction`, ...), as
    /// `json.loads` gives it.
    #[getter]
    fn data(&self, py: Python<'_>) -> PyResult<Py<PyAny>> {
        json_to_py(py, &self.inner.raw)
    }

    fn __repr__(&self) -> String {
        format!(
            "WebhookEvent(kind={:?}, installation_id={:?})",
            self.inner.event.as_str(),
            self.inner.installation_id()
        )
    }
}

/// Verifies a webhook delivery and returns its event.
///
/// `secret` is the webhook secret set on the app's General tab; `body` the raw request body,
/// exactly as received (bytes); `signature` the `x-icr-signature-256` header (`None` when
/// absent). The HMAC-SHA256 of `signedData` is compared in constant time; only then is the
/// payload decoded. Raises `icr_app.WebhookError` (answer 403) when the delivery is not
/// authentic or not well formed.
#[pyfunction]
#[pyo3(signature = (secret, body, signature))]
pub(crate) fn verify_webhook(
    secret: &Bound<'_, PyAny>,
    body: &Bound<'_, PyAny>,
    signature: Option<&Bound<'_, PyAny>>,
) -> PyResult<WebhookEvent> {
    let secret = if let Ok(s) = secret.cast::<PyString>() {
        s.to_cow()?.into_owned()
    } else if let Ok(b) = secret.cast::<PyBytes>() {
        String::from_utf8(b.as_bytes().to_vec())
            .map_err(|_| pyo3::exceptions::PyValueError::new_err("the webhook secret must be UTF-8 text"))?
    } else {
        return Err(pyo3::exceptions::PyTypeError::new_err("secret must be str or bytes"));
    };
    let secret = WebhookSecret::new(secret).map_err(webhook_to_py)?;
    let body: Vec<u8> = if let Ok(b) = body.cast::<PyBytes>() {
        b.as_bytes().to_vec()
    } else if let Ok(s) = body.cast::<PyString>() {
        s.to_cow()?.as_bytes().to_vec()
    } else {
        body.call_method0("__bytes__")
            .and_then(|b| b.extract::<Vec<u8>>())
            .map_err(|_| pyo3::exceptions::PyTypeError::new_err("body must be bytes (the raw request body)"))?
    };
    let signature = match signature {
        None => None,
        Some(s) if s.is_none() => None,
        Some(s) => Some(if let Ok(b) = s.cast::<PyBytes>() {
            String::from_utf8_lossy(b.as_bytes()).into_owned()
        } else {
            s.extract::<String>()?
        }),
    };
    let event = verify(&secret, signature.as_deref(), &body).map_err(webhook_to_py)?;
    Ok(WebhookEvent { inner: event })
}
