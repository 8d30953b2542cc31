//! The one error type of the core, with messages that name the cause and the fix.

use std::fmt;
use std::time::Duration;

use crate::api::OrganizationId;
use crate::keys::KeyError;
pub(crate) use crate::redact::excerpt;
use crate::webhook::WebhookError;

/// Which credential a request carried, so a 401 can say what to check.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Credential {
    /// The app JWT (app endpoints).
    AppJwt,
    /// An installation or app access token.
    AccessToken,
}

/// What the API said in an error body of the `{statusCode, message, error}` shape.
///
/// Both fields are `None` when the body was empty or not of that shape. Long messages are cut and
/// anything that looks like a token is replaced by `[redacted]`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ApiMessage {
    /// `message` (a list of messages is joined with `; `).
    pub message: Option<String>,
    /// `error`, e.g. `Unauthorized`.
    pub error: Option<String>,
}

impl ApiMessage {
    /// Reads an error body leniently; never fails.
    pub fn from_body(body: &[u8]) -> Self {
        let Ok(serde_json::Value::Object(mut fields)) = serde_json::from_slice::<serde_json::Value>(body) else {
            return Self::default();
        };
        let text = |v: serde_json::Value| -> Option<String> {
            match v {
                serde_json::Value::String(s) => Some(s),
                serde_json::Value::Array(items) => {
                    let parts: Vec<String> = items
                        .into_iter()
                        .map(|i| match i {
                            serde_json::Value::String(s) => s,
                            other => other.to_string(),
                        })
                        .collect();
                    Some(parts.join("; "))
                }
                serde_json::Value::Null => None,
                other => Some(other.to_string()),
            }
            .filter(|s| !s.is_empty())
            .map(|s| excerpt(&s, 300))
        };
        Self {
            message: fields.remove("message").and_then(text),
            error: fields.remove("error").and_then(text),
        }
    }
}

impl fmt::Display for ApiMessage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.error, &self.message) {
            (Some(e), Some(m)) => write!(f, " (server said: {e}: {m})"),
            (None, Some(m)) => write!(f, " (server said: {m})"),
            (Some(e), None) => write!(f, " (server said: {e})"),
            (None, None) => Ok(()),
        }
    }
}

/// What kind of I/O failure a driver reports for a request it could not complete.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum TransportErrorKind {
    /// The connection could not be made (refused, DNS, TLS handshake).
    Connect,
    /// The request or the response took longer than the timeout.
    Timeout,
    /// The connection broke before a whole response arrived.
    ConnectionLost,
    /// The response body was larger than the configured cap.
    BodyTooLarge,
    /// The request was refused before sending (e.g. credentials over plain `http://`).
    Refused,
    /// The caller gave up (a cancelled future, a dropped handle).
    Cancelled,
    /// Anything else.
    Other,
}

impl TransportErrorKind {
    /// Every kind, in the order of [`TransportErrorKind::as_str`]'s names.
    pub const ALL: [TransportErrorKind; 7] = [
        TransportErrorKind::Connect,
        TransportErrorKind::Timeout,
        TransportErrorKind::ConnectionLost,
        TransportErrorKind::BodyTooLarge,
        TransportErrorKind::Refused,
        TransportErrorKind::Cancelled,
        TransportErrorKind::Other,
    ];

    /// The kind's stable name, as bindings report and show it: `connect`, `timeout`,
    /// `connection_lost`, `body_too_large`, `refused`, `cancelled` or `other`.
    pub const fn as_str(self) -> &'static str {
        match self {
            TransportErrorKind::Connect => "connect",
            TransportErrorKind::Timeout => "timeout",
            TransportErrorKind::ConnectionLost => "connection_lost",
            TransportErrorKind::BodyTooLarge => "body_too_large",
            TransportErrorKind::Refused => "refused",
            TransportErrorKind::Cancelled => "cancelled",
            TransportErrorKind::Other => "other",
        }
    }

    /// The kind named `name` (see [`as_str`](Self::as_str)); any other name is
    /// [`TransportErrorKind::Other`], so that a driver's failure is never lost for its name.
    pub fn from_name(name: &str) -> Self {
        Self::ALL
            .into_iter()
            .find(|k| k.as_str() == name)
            .unwrap_or(TransportErrorKind::Other)
    }
}

/// The stable code of an [`Error`]: what a binding branches on, and what a C caller gets as a
/// number. The numbers and names never change; new codes may be added.
#[derive(Copy, Clone, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
#[non_exhaustive]
pub enum ErrorCode {
    /// [`Error::Key`]: the private key could not be loaded.
    Key = 1,
    /// [`Error::Signing`]: the signer failed.
    Signing = 2,
    /// [`Error::Config`]: a setting or argument is invalid.
    Config = 3,
    /// [`Error::Unauthorized`]: 401.
    Unauthorized = 4,
    /// [`Error::Forbidden`]: 403.
    Forbidden = 5,
    /// [`Error::NotFound`]: 404.
    NotFound = 6,
    /// [`Error::RateLimited`]: 429.
    RateLimited = 7,
    /// [`Error::Server`]: 5xx.
    Server = 8,
    /// [`Error::UnexpectedStatus`]: any other non-success status.
    UnexpectedStatus = 9,
    /// [`Error::MalformedBody`]: a success whose body is not the documented shape.
    MalformedBody = 10,
    /// [`Error::Transport`]: no response came.
    Transport = 11,
    /// [`Error::Store`]: the shared token store failed.
    Store = 12,
    /// [`Error::Webhook`]: a webhook delivery was refused.
    Webhook = 13,
    /// [`Error::UnknownRequest`]: an answer for a request nobody waits for (a driver's bug).
    UnknownRequest = 14,
}

impl ErrorCode {
    /// The code's stable name: `key`, `signing`, `config`, `unauthorized`, `forbidden`,
    /// `not_found`, `rate_limited`, `server`, `unexpected_status`, `malformed_body`,
    /// `transport`, `store`, `webhook` or `unknown_request`.
    pub const fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Key => "key",
            ErrorCode::Signing => "signing",
            ErrorCode::Config => "config",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::NotFound => "not_found",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Server => "server",
            ErrorCode::UnexpectedStatus => "unexpected_status",
            ErrorCode::MalformedBody => "malformed_body",
            ErrorCode::Transport => "transport",
            ErrorCode::Store => "store",
            ErrorCode::Webhook => "webhook",
            ErrorCode::UnknownRequest => "unknown_request",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Every failure of the SDK. Each message says what went wrong and what to check.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The private key could not be loaded.
    Key(KeyError),
    /// The signer failed to produce a signature.
    Signing(String),
    /// A setting or argument is invalid.
    Config {
        /// Which setting.
        setting: &'static str,
        /// What is wrong with it and how to fix it.
        problem: String,
    },
    /// 401: the credential was refused.
    Unauthorized {
        /// Which credential the request carried.
        credential: Credential,
        /// Server clock minus local clock when the server's `Date` showed more than 30 s of skew.
        clock_skew: Option<i64>,
        /// What the server said.
        api: ApiMessage,
    },
    /// 403: the credential is valid but lacks a permission.
    Forbidden {
        /// What the server said.
        api: ApiMessage,
    },
    /// 404: the installation or resource does not exist (or is not visible to this app).
    NotFound {
        /// What the server said.
        api: ApiMessage,
        /// Set when the 404 answered the lookup of the app's installation on this organization
        /// (`GET /app/organizations/{id}/installation`): the app is not installed there.
        organization: Option<OrganizationId>,
    },
    /// 429: too many requests.
    RateLimited {
        /// The server's `Retry-After`, when it sent one; once the token cache has recorded the
        /// failure, the wait it imposes instead (the server's, capped at
        /// [`CacheConfig::max_retry_after`](crate::CacheConfig::max_retry_after), or a longer
        /// back-off).
        retry_after: Option<Duration>,
        /// What the server said.
        api: ApiMessage,
    },
    /// 5xx: the server failed.
    Server {
        /// The status code.
        status: u16,
        /// The server's `Retry-After`, when it sent one; once the token cache has recorded the
        /// failure, the wait it imposes instead (as for [`Error::RateLimited`]).
        retry_after: Option<Duration>,
        /// What the server said.
        api: ApiMessage,
    },
    /// Any other non-success status (400 for an unsupported API version, 409, ...).
    UnexpectedStatus {
        /// The status code.
        status: u16,
        /// What the server said.
        api: ApiMessage,
    },
    /// A success status whose body is not the documented shape.
    MalformedBody {
        /// The status code.
        status: u16,
        /// What did not parse.
        problem: String,
        /// The start of the body, with anything token-like redacted.
        excerpt: String,
    },
    /// The request could not be completed (connection refused, dropped, timed out).
    Transport {
        /// The kind of failure.
        kind: TransportErrorKind,
        /// The driver's description.
        message: String,
    },
    /// The shared token store failed (unreachable, slow, refusing). Never a caller's error: the
    /// core mints without the store for a while and says so once per outage.
    Store {
        /// The kind of failure.
        kind: TransportErrorKind,
        /// The store driver's description (never a password).
        message: String,
    },
    /// A webhook delivery was refused.
    Webhook(WebhookError),
    /// A response or failure was handed back for a request id that is not waiting for one.
    UnknownRequest(u64),
}

impl Error {
    /// The error's stable code (see [`ErrorCode`]).
    pub fn code(&self) -> ErrorCode {
        match self {
            Error::Key(_) => ErrorCode::Key,
            Error::Signing(_) => ErrorCode::Signing,
            Error::Config { .. } => ErrorCode::Config,
            Error::Unauthorized { .. } => ErrorCode::Unauthorized,
            Error::Forbidden { .. } => ErrorCode::Forbidden,
            Error::NotFound { .. } => ErrorCode::NotFound,
            Error::RateLimited { .. } => ErrorCode::RateLimited,
            Error::Server { .. } => ErrorCode::Server,
            Error::UnexpectedStatus { .. } => ErrorCode::UnexpectedStatus,
            Error::MalformedBody { .. } => ErrorCode::MalformedBody,
            Error::Transport { .. } => ErrorCode::Transport,
            Error::Store { .. } => ErrorCode::Store,
            Error::Webhook(_) => ErrorCode::Webhook,
            Error::UnknownRequest(_) => ErrorCode::UnknownRequest,
        }
    }

    /// The kind of a [`Error::Transport`] or [`Error::Store`] failure.
    pub fn transport_kind(&self) -> Option<TransportErrorKind> {
        match self {
            Error::Transport { kind, .. } | Error::Store { kind, .. } => Some(*kind),
            _ => None,
        }
    }

    /// Whether trying again later may succeed (429, 5xx, transport failures).
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::RateLimited { .. } | Error::Server { .. } => true,
            Error::Transport { kind, .. } => {
                !matches!(kind, TransportErrorKind::Refused | TransportErrorKind::BodyTooLarge)
            }
            _ => false,
        }
    }

    /// The server's `Retry-After`, when it sent one.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } | Error::Server { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// The HTTP status this error came from, if it came from a response.
    pub fn status(&self) -> Option<u16> {
        match self {
            Error::Unauthorized { .. } => Some(401),
            Error::Forbidden { .. } => Some(403),
            Error::NotFound { .. } => Some(404),
            Error::RateLimited { .. } => Some(429),
            Error::Server { status, .. }
            | Error::UnexpectedStatus { status, .. }
            | Error::MalformedBody { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// This error with `wait` as its `Retry-After` (a 429 or 5xx that carries one): what the
    /// token cache imposed, which the message then states.
    pub(crate) fn with_retry_after(mut self, wait: Duration) -> Self {
        if let Error::RateLimited { retry_after, .. } | Error::Server { retry_after, .. } = &mut self
            && retry_after.is_some()
        {
            *retry_after = Some(wait);
        }
        self
    }

    /// A shorthand for [`Error::Transport`], what a driver reports with
    /// [`Operation::handle_failure`](crate::Operation::handle_failure) when no response came.
    pub fn transport(kind: TransportErrorKind, message: impl Into<String>) -> Self {
        Error::Transport {
            kind,
            message: message.into(),
        }
    }

    /// A shorthand for [`Error::Store`].
    pub fn store(kind: TransportErrorKind, message: impl Into<String>) -> Self {
        Error::Store {
            kind,
            message: message.into(),
        }
    }

    /// A shorthand for [`Error::Config`].
    pub fn config(setting: &'static str, problem: impl Into<String>) -> Self {
        Error::Config {
            setting,
            problem: problem.into(),
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Key(e) => write!(f, "private key: {e}"),
            Error::Signing(m) => write!(
                f,
                "signing the app JWT failed: {m}; check the signer (KMS/HSM) configuration"
            ),
            Error::Config { setting, problem } => write!(f, "invalid {setting}: {problem}"),
            Error::Unauthorized {
                credential: Credential::AppJwt,
                clock_skew,
                api,
            } => {
                write!(
                    f,
                    "401 Unauthorized: the registry refused the app JWT{api}; check that the app id is the one on the app's dashboard, that the private key is one registered for that app (compare `icr-app fingerprint` with the Credentials tab)"
                )?;
                match clock_skew {
                    Some(ms) => write!(
                        f,
                        ", and fix this machine's clock: it is {} s {} the server's (enable NTP)",
                        ms.unsigned_abs() / 1000,
                        if *ms > 0 { "behind" } else { "ahead of" }
                    ),
                    None => write!(f, ", and that this machine's clock is right (enable NTP)"),
                }
            }
            Error::Unauthorized {
                credential: Credential::AccessToken,
                api,
                ..
            } => write!(
                f,
                "401 Unauthorized: the access token was refused{api}; it has expired or was revoked, or the app was uninstalled: mint a new one"
            ),
            Error::Forbidden { api } => {
                // The advice about permissions only when the registry said that was the problem.
                let said = [&api.message, &api.error]
                    .into_iter()
                    .flatten()
                    .map(|s| s.to_ascii_lowercase())
                    .collect::<Vec<_>>();
                if said.iter().any(|s| s.contains("permission") || s.contains("scope")) {
                    write!(
                        f,
                        "403 Forbidden: the token lacks the permission this call needs{api}; request the permission on the app's dashboard and have the organization accept it"
                    )
                } else if [&api.message, &api.error]
                    .iter()
                    .all(|s| s.as_deref().is_none_or(|s| s.trim().is_empty()))
                {
                    write!(
                        f,
                        "403 Forbidden: the registry refused this call and did not say why; check that the token is for the organization the call names"
                    )
                } else {
                    write!(
                        f,
                        "403 Forbidden: the registry refused this call{api}; check that the token is for the organization the call names"
                    )
                }
            }
            Error::NotFound {
                api,
                organization: Some(organization),
            } => write!(
                f,
                "404 Not Found{api}: the app is not installed on organization {organization}; check the organization id, or have the organization install the app"
            ),
            Error::NotFound {
                api,
                organization: None,
            } => write!(
                f,
                "404 Not Found{api}; check the installation or resource id, and that the app is still installed on the organization"
            ),
            Error::RateLimited { retry_after, api } => {
                write!(f, "429 Too Many Requests{api}; slow down")?;
                match retry_after {
                    Some(d) => write!(f, " and retry after {} s", whole_seconds(*d)),
                    None => write!(f, " and retry later"),
                }
            }
            Error::Server {
                status,
                retry_after,
                api,
            } => {
                write!(
                    f,
                    "{status} server error from the registry{api}; this is on the server side, retry later"
                )?;
                match retry_after {
                    Some(d) => write!(f, " (retry after {} s)", whole_seconds(*d)),
                    None => Ok(()),
                }
            }
            Error::UnexpectedStatus { status, api } => {
                write!(f, "unexpected status {status}{api}")?;
                if *status == 400 {
                    write!(
                        f,
                        "; check the request and that the API version (x-icr-api-version) is one the registry supports"
                    )?;
                }
                Ok(())
            }
            Error::MalformedBody {
                status,
                problem,
                excerpt,
            } => write!(
                f,
                "the registry answered {status} with a body that is not the documented shape: {problem}; body starts with `{excerpt}`; check the base URL points at the ICR API"
            ),
            Error::Transport { kind, message } => {
                let hint = match kind {
                    TransportErrorKind::Connect => "check the base URL, the network and any proxy",
                    TransportErrorKind::Timeout => {
                        "the registry is slow or unreachable; retry later or raise the timeout"
                    }
                    TransportErrorKind::ConnectionLost => "the connection dropped; retry",
                    TransportErrorKind::BodyTooLarge => "the response exceeded the size cap; check the base URL",
                    TransportErrorKind::Refused => "nothing was sent",
                    TransportErrorKind::Cancelled => "the caller gave up",
                    TransportErrorKind::Other => "retry, and check the network",
                };
                write!(f, "request failed: {message}; {hint}")
            }
            Error::Store { message, .. } => write!(
                f,
                "the shared token store failed: {message}; tokens are minted without it until it answers again"
            ),
            Error::Webhook(e) => write!(f, "webhook refused: {e}"),
            Error::UnknownRequest(id) => write!(
                f,
                "request {id} is not waiting for an answer (already answered, or never issued); this is a bug in the driver"
            ),
        }
    }
}

impl std::error::Error for Error {}

/// `d` in seconds, rounded up: a wait is never stated shorter than it is.
fn whole_seconds(d: Duration) -> u128 {
    d.as_millis().div_ceil(1000)
}

impl From<KeyError> for Error {
    fn from(e: KeyError) -> Self {
        Error::Key(e)
    }
}

impl From<WebhookError> for Error {
    fn from(e: WebhookError) -> Self {
        Error::Webhook(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn excerpt_redacts_tokens_but_keeps_ids() {
        let body = r#"{"token":"crs_19c9bd530ccd3e1187eed12dc4edb70abe757fc4c7be9c5b","id":"123e4567-e89b-12d3-a456-426614174000","expiresAt":"soon"}"#;
        let e = excerpt(body, 500);
        assert!(!e.contains("19c9bd53"), "{e}");
        assert!(e.contains("123e4567-e89b-12d3-a456-426614174000"));
        assert!(e.contains("soon"));
        let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJqb2UifQ.c2lnbmF0dXJlc2lnbmF0dXJl";
        assert!(!excerpt(jwt, 500).contains("eyJ"));
        assert_eq!(excerpt("<html>bad gateway</html>", 10), "<html>bad …");
        // A body cut short inside a token or a JWT: its first characters are redacted too.
        let cut = excerpt(r#"{"id":"x","token":"crs_19c9bd5"#, 500);
        assert!(!cut.contains("19c9bd5"), "{cut}");
        assert!(cut.contains(r#""token":"[redacted]"#), "{cut}");
        assert!(!excerpt("Bearer eyJhbGc", 500).contains("hbGc"));
    }

    #[test]
    fn a_403_advises_on_permissions_only_when_the_registry_said_so() {
        let forbidden = |message: Option<&str>, error: Option<&str>| {
            Error::Forbidden {
                api: ApiMessage {
                    message: message.map(str::to_owned),
                    error: error.map(str::to_owned),
                },
            }
            .to_string()
        };
        for (message, error) in [
            (None, None),
            (Some(""), None),
            (None, Some("Forbidden")),
            (
                Some("Installation does not belong to that organization"),
                Some("Forbidden"),
            ),
        ] {
            let text = forbidden(message, error);
            assert!(
                text.starts_with("403 Forbidden: the registry refused this call"),
                "{text}"
            );
            assert!(!text.contains("permission"), "{message:?} {error:?}: {text}");
        }
        assert!(forbidden(None, None).contains("did not say why"));
        assert!(forbidden(Some(" "), None).contains("did not say why"));
        for (message, error) in [
            (Some("Missing permission: organization_info"), Some("Forbidden")),
            (None, Some("insufficient_scope")),
        ] {
            let text = forbidden(message, error);
            assert!(text.contains("request the permission"), "{message:?} {error:?}: {text}");
        }
    }

    #[test]
    fn codes_and_kind_names_are_stable() {
        let cases = [
            (Error::config("x", "y"), ErrorCode::Config, 3, "config"),
            (
                Error::transport(TransportErrorKind::Timeout, "slow"),
                ErrorCode::Transport,
                11,
                "transport",
            ),
            (
                Error::UnknownRequest(7),
                ErrorCode::UnknownRequest,
                14,
                "unknown_request",
            ),
        ];
        for (error, code, number, name) in cases {
            assert_eq!(error.code(), code);
            assert_eq!(code as u32, number);
            assert_eq!(code.as_str(), name);
        }
        for kind in TransportErrorKind::ALL {
            assert_eq!(TransportErrorKind::from_name(kind.as_str()), kind);
        }
        assert_eq!(TransportErrorKind::from_name("nonsense"), TransportErrorKind::Other);
        let e = Error::transport(TransportErrorKind::ConnectionLost, "reset");
        assert_eq!(e.transport_kind(), Some(TransportErrorKind::ConnectionLost));
    }

    #[test]
    fn api_message_shapes() {
        let m = ApiMessage::from_body(br#"{"statusCode":401,"message":"Invalid JWT","error":"Unauthorized"}"#);
        assert_eq!(m.message.as_deref(), Some("Invalid JWT"));
        assert_eq!(m.error.as_deref(), Some("Unauthorized"));
        let m = ApiMessage::from_body(br#"{"statusCode":400,"message":["a must be set","b too"]}"#);
        assert_eq!(m.message.as_deref(), Some("a must be set; b too"));
        assert_eq!(ApiMessage::from_body(b"<html>"), ApiMessage::default());
        assert_eq!(ApiMessage::from_body(b"[1,2]"), ApiMessage::default());
    }
}
