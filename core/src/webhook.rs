//! Webhook signature verification. (Being written: see issue 2, item 7.)

use std::fmt;

/// Why a webhook delivery was refused.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebhookError {
    /// The `x-icr-signature-256` header is missing.
    MissingSignature,
}

impl fmt::Display for WebhookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebhookError::MissingSignature => f.write_str("the x-icr-signature-256 header is missing"),
        }
    }
}

impl std::error::Error for WebhookError {}
