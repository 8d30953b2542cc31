//! Core errors as JavaScript values: an [`ErrorInfo`] in an `error` step's JSON (what
//! `index.js` turns into an `IcrError` subclass), or a thrown `Error` whose message starts with
//! `[icr:CODE] `.

use icr_app_core::Error as CoreError;
use serde::Serialize;

/// A failure of the core, as plain data: `code` is the core's stable name (`key`, `signing`,
/// `config`, `unauthorized`, `forbidden`, `not_found`, `rate_limited`, `server`,
/// `unexpected_status`, `malformed_body`, `transport`, `store`, ...), `message` what went wrong
/// and what to do (never a key, JWT or token).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorInfo {
    /// The core's stable name for the failure.
    pub code: String,
    /// What went wrong and what to check.
    pub message: String,
    /// The HTTP status the registry answered, if it answered.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<u32>,
    /// The registry's `Retry-After`, in seconds, if it sent one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_after: Option<f64>,
    /// For a transport failure: `connect`, `timeout`, `connection_lost`, `body_too_large`,
    /// `refused`, `cancelled` or `other`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    /// For a 404 to the lookup of an organization's installation: the organization.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub organization_id: Option<String>,
}

impl From<&CoreError> for ErrorInfo {
    fn from(error: &CoreError) -> Self {
        let (kind, organization_id) = match error {
            CoreError::Transport { kind, .. } => (Some(kind.as_str().to_owned()), None),
            CoreError::NotFound {
                organization: Some(organization),
                ..
            } => (None, Some(organization.as_str().to_owned())),
            _ => (None, None),
        };
        Self {
            code: error.code().as_str().to_owned(),
            message: error.to_string(),
            status: error.status().map(u32::from),
            retry_after: error.retry_after().map(|d| d.as_secs_f64()),
            kind,
            organization_id,
        }
    }
}

/// `error` thrown: a JavaScript `Error` whose message is `[icr:CODE] ` and the core's message
/// (`index.js` makes it the `IcrError` subclass for `CODE`).
pub(crate) fn throw(error: CoreError) -> napi::Error {
    napi::Error::from_reason(format!("[icr:{}] {error}", error.code().as_str()))
}
