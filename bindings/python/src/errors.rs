//! The exceptions: `icr_app.Error` and its subclasses, each carrying the core error's message.

use icr_app_core::{Error as CoreError, ErrorCode, WebhookError as CoreWebhookError};
use pyo3::create_exception;
use pyo3::exceptions::PyException;
use pyo3::prelude::*;

create_exception!(
    icr_app,
    Error,
    PyException,
    "Every failure of the ICR App SDK. `str(e)` is the core's message (what went wrong and what to check); `.code` the core's stable name for the failure, to branch on (key, signing, config, unauthorized, forbidden, not_found, rate_limited, server, unexpected_status, malformed_body, transport, store, webhook, unknown_request; new names may be added); `.status` is the HTTP status it came from, if any; `.retry_after` the server's Retry-After in seconds, if any. No message ever contains a key, JWT, token or webhook secret."
);
create_exception!(
    icr_app,
    InvalidKeyError,
    Error,
    "The private key could not be loaded (encrypted, not RSA, a public key or certificate, truncated, too small, ...): the message says which and how to fix it."
);
create_exception!(
    icr_app,
    AuthError,
    Error,
    "The registry refused the credential: 401 (the app JWT or an access token; `.status` is 401) or 403 (a missing permission; `.status` is 403)."
);
create_exception!(
    icr_app,
    NotFoundError,
    Error,
    "404: the installation or resource does not exist, or is not visible to this app. `.organization_id` is set when the 404 answered the lookup of the app's installation on an organization (`ByOrganization`, `installation_for_organization`): the app is not installed there."
);
create_exception!(
    icr_app,
    RateLimitedError,
    Error,
    "429: too many requests (after the retries the core allows); `.retry_after` is the server's Retry-After in seconds, if it sent one."
);
create_exception!(
    icr_app,
    ServerError,
    Error,
    "A 5xx answer from the registry (after the retries the core allows); `.status` is the status."
);
create_exception!(
    icr_app,
    TransportError,
    Error,
    "No response came (connection refused, dropped, timed out, body over the cap) or the request was refused before sending (the transport policy). `.kind` is one of connect, timeout, connection_lost, body_too_large, refused, cancelled, other; `.detail` the driver's description."
);
create_exception!(
    icr_app,
    WebhookError,
    Error,
    "A webhook delivery was refused (missing or wrong signature, malformed body): answer it with 403."
);
create_exception!(
    icr_app,
    ConfigError,
    Error,
    "A setting or argument is invalid (app id, base URL, installation id, minimum token life, request path, ...)."
);

pub(crate) fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    let base = py.get_type::<Error>();
    // Every error the SDK raises sets its own `.code`; these are what an exception made by hand
    // (a test's stand-in, say) reads.
    base.setattr("code", "other")?;
    for (ty, code) in [
        (py.get_type::<InvalidKeyError>(), ErrorCode::Key),
        (py.get_type::<AuthError>(), ErrorCode::Unauthorized),
        (py.get_type::<NotFoundError>(), ErrorCode::NotFound),
        (py.get_type::<RateLimitedError>(), ErrorCode::RateLimited),
        (py.get_type::<ServerError>(), ErrorCode::Server),
        (py.get_type::<TransportError>(), ErrorCode::Transport),
        (py.get_type::<WebhookError>(), ErrorCode::Webhook),
        (py.get_type::<ConfigError>(), ErrorCode::Config),
    ] {
        ty.setattr("code", code.as_str())?;
    }
    base.setattr("status", py.None())?;
    base.setattr("retry_after", py.None())?;
    py.get_type::<NotFoundError>().setattr("organization_id", py.None())?;
    let transport = py.get_type::<TransportError>();
    transport.setattr("kind", "other")?;
    transport.setattr("detail", "")?;
    for (name, ty) in [
        ("Error", base),
        ("InvalidKeyError", py.get_type::<InvalidKeyError>()),
        ("AuthError", py.get_type::<AuthError>()),
        ("NotFoundError", py.get_type::<NotFoundError>()),
        ("RateLimitedError", py.get_type::<RateLimitedError>()),
        ("ServerError", py.get_type::<ServerError>()),
        ("TransportError", transport),
        ("WebhookError", py.get_type::<WebhookError>()),
        ("ConfigError", py.get_type::<ConfigError>()),
    ] {
        ty.setattr("__module__", "icr_app")?;
        m.add(name, ty)?;
    }
    Ok(())
}

/// The Python exception for a core error (its message is the core's `Display`).
pub(crate) fn to_py(error: CoreError) -> PyErr {
    let message = error.to_string();
    let code = error.code().as_str();
    let status = error.status();
    let retry_after = error.retry_after().map(|d| d.as_secs_f64());
    let err = match &error {
        CoreError::Key(_) => InvalidKeyError::new_err(message),
        CoreError::Unauthorized { .. } | CoreError::Forbidden { .. } => AuthError::new_err(message),
        CoreError::NotFound { .. } => NotFoundError::new_err(message),
        CoreError::RateLimited { .. } => RateLimitedError::new_err(message),
        CoreError::Server { .. } => ServerError::new_err(message),
        CoreError::Transport { .. } => TransportError::new_err(message),
        CoreError::Webhook(_) => WebhookError::new_err(message),
        CoreError::Config { .. } => ConfigError::new_err(message),
        _ => Error::new_err(message),
    };
    Python::attach(|py| {
        let value = err.value(py);
        let _ = value.setattr("code", code);
        if let Some(status) = status {
            let _ = value.setattr("status", status);
        }
        if let Some(secs) = retry_after {
            let _ = value.setattr("retry_after", secs);
        }
        if let CoreError::Transport { kind, message } = &error {
            let _ = value.setattr("kind", kind.as_str());
            let _ = value.setattr("detail", message.as_str());
        }
        if let CoreError::NotFound {
            organization: Some(organization),
            ..
        } = &error
        {
            let _ = value.setattr("organization_id", organization.as_str());
        }
    });
    err
}

pub(crate) fn webhook_to_py(error: CoreWebhookError) -> PyErr {
    to_py(CoreError::Webhook(error))
}
