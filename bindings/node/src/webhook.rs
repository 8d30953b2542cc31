//! Webhooks: [`verify_webhook`] (the core's verification) and the [`WebhookEvent`] it gives,
//! which `auth.handleEvent` takes.

use icr_app_core::WebhookSecret;
use icr_app_core::webhook::{WebhookEvent as CoreEvent, verify};
use napi::bindgen_prelude::{Buffer, Either};
use napi_derive::napi;

/// A verified webhook event: the decoded `signedData`.
#[napi]
pub struct WebhookEvent {
    pub(crate) inner: CoreEvent,
}

#[napi]
impl WebhookEvent {
    /// What happened: `installed`, `uninstalled`, `suspended`, `unsuspended`,
    /// `newPermissionsAccepted`, a transaction event, or another name as sent.
    #[napi(getter)]
    pub fn event(&self) -> String {
        self.inner.event.as_str().to_owned()
    }

    /// The installation it concerns, if any.
    #[napi(getter)]
    pub fn installation_id(&self) -> Option<String> {
        self.inner.installation_id().map(str::to_owned)
    }

    /// The whole decoded payload, as sent.
    #[napi(getter)]
    pub fn payload(&self) -> serde_json::Value {
        self.inner.raw.clone()
    }
}

/// Verifies a webhook delivery: `body` exactly as received, `signature` the
/// `x-icr-signature-256` header (`undefined` when absent), with the app's webhook `secret`.
/// Throws (code `webhook`) saying which check failed: answer such deliveries with 403.
#[napi]
pub fn verify_webhook(
    secret: String,
    body: Either<String, Buffer>,
    signature: Option<String>,
) -> napi::Result<WebhookEvent> {
    let secret = WebhookSecret::new(secret).map_err(|e| napi::Error::from_reason(format!("[icr:config] {e}")))?;
    let body: &[u8] = match &body {
        Either::A(text) => text.as_bytes(),
        Either::B(bytes) => bytes,
    };
    verify(&secret, signature.as_deref(), body)
        .map(|inner| WebhookEvent { inner })
        .map_err(|e| napi::Error::from_reason(format!("[icr:webhook] {e}")))
}
