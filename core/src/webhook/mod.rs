//! Webhook deliveries: checking the `x-icr-signature-256` signature and reading the signed event.
//!
//! When a webhook secret is set on the app's "General" tab, every delivery the registry POSTs
//! carries a header `x-icr-signature-256: sha256=<hex>`, the HMAC-SHA256 (keyed with that secret)
//! of the body's root `signedData` string. `signedData` is the base64 of the event's JSON, so the
//! signature covers the exact bytes that are later decoded: no re-serialisation can break it.
//! [`verify`] checks the header in constant time and only then decodes `signedData` into a
//! [`WebhookEvent`].
//!
//! Everything else in the body (`event`, `installation`, ... next to `signedData`) is **not**
//! covered by the signature, so it is ignored: the event is read from `signedData` alone.
//!
//! No timestamp or delivery id is signed, so a captured delivery can be replayed; make handlers
//! idempotent (e.g. key transaction events by `transaction.id`). Cap the body size before
//! calling [`verify`]; this module reads whatever it is given.
//!
//! ```
//! use icr_app_core::webhook::{self, EventKind, WebhookSecret};
//!
//! let secret = WebhookSecret::new("whsec-entered-on-the-general-tab")?;
//!
//! // What the registry would send (tests and the fake registry make deliveries this way).
//! let payload = serde_json::json!({
//!     "event": "installed",
//!     "state": "",
//!     "installation": {
//!         "id": "123",
//!         "organization": { "id": "org1", "name": "Organization 1" },
//!         "permissions": { "organization_info": "VIEW" },
//!         "appId": "1"
//!     }
//! });
//! let delivery = webhook::Delivery::new(&secret, &payload);
//!
//! // In the handler: the raw body bytes and the header, as received.
//! let event = webhook::verify(&secret, Some(&delivery.signature), &delivery.body)?;
//! assert_eq!(event.event, EventKind::Installed);
//! assert_eq!(event.installation_id(), Some("123"));
//! assert_eq!(event.raw["installation"]["appId"], "1");
//!
//! // A body altered on the way (or re-serialised by a framework) is refused.
//! let tampered = String::from_utf8(delivery.body.clone())?.replacen("signedData\":\"e", "signedData\":\"f", 1);
//! assert_eq!(
//!     webhook::verify(&secret, Some(&delivery.signature), tampered.as_bytes()),
//!     Err(webhook::WebhookError::Mismatch)
//! );
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod event;

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::{DecodePaddingMode, general_purpose};
use ring::hmac;

use crate::redact::excerpt;
use crate::secret::SecretString;

pub use event::{EventKind, Sender, Transaction, WebhookEvent};

/// The header carrying the signature, as `http` spells header names (lower case).
pub const SIGNATURE_HEADER: &str = "x-icr-signature-256";

/// The scheme prefix of the header value.
const PREFIX: &str = "sha256=";

/// Standard alphabet; padding optional (the registry pads, some relays strip it); trailing bits
/// tolerated like Node's `Buffer.from(s, "base64")`, since the bytes are already authenticated.
const BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_padding_mode(DecodePaddingMode::Indifferent)
        .with_decode_allow_trailing_bits(true),
);

/// The app's webhook secret (the "Webhook secret" on the app's "General" tab).
///
/// Used as the HMAC key exactly as given: no trimming, so a secret read from a file must not keep
/// its trailing newline. Redacted in `Debug` and `Display`, wiped from memory on drop.
#[derive(Clone)]
pub struct WebhookSecret(SecretString);

impl WebhookSecret {
    /// Wraps the secret.
    ///
    /// # Errors
    ///
    /// [`WebhookError::EmptySecret`] when it is empty or only whitespace: an HMAC with an empty
    /// key is computable by anyone, so it would authenticate nothing.
    pub fn new(secret: impl Into<String>) -> Result<Self, WebhookError> {
        let secret = SecretString::new(secret);
        if secret.expose().trim().is_empty() {
            return Err(WebhookError::EmptySecret);
        }
        Ok(Self(secret))
    }

    /// The secret itself; call it only where it must be stored or handed to another signer.
    pub fn expose(&self) -> &str {
        self.0.expose()
    }

    fn key(&self) -> hmac::Key {
        hmac::Key::new(hmac::HMAC_SHA256, self.0.expose().as_bytes())
    }
}

impl TryFrom<SecretString> for WebhookSecret {
    type Error = WebhookError;

    /// Same rules as [`WebhookSecret::new`].
    fn try_from(secret: SecretString) -> Result<Self, WebhookError> {
        if secret.expose().trim().is_empty() {
            return Err(WebhookError::EmptySecret);
        }
        Ok(Self(secret))
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("WebhookSecret([redacted])")
    }
}

impl fmt::Display for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

/// Why a webhook delivery was refused.
///
/// Messages name the cause and the fix; none contains the secret or the signature.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum WebhookError {
    /// The `x-icr-signature-256` header is missing.
    MissingSignature,
    /// The request carries more than one `x-icr-signature-256` header.
    DuplicateSignature,
    /// The header does not start with `sha256=`.
    WrongPrefix,
    /// The header is `sha256=` but not followed by exactly 64 hex digits.
    BadSignatureEncoding,
    /// The signature is well-formed but does not match: wrong secret, or altered body.
    Mismatch,
    /// The body is not UTF-8.
    NotUtf8,
    /// The body is not a JSON object.
    NotJson {
        /// What is wrong, with a redacted excerpt of the body.
        problem: String,
    },
    /// The body has no string `signedData` at its root.
    MissingSignedData,
    /// `signedData` is correctly signed but is not base64.
    SignedDataNotBase64,
    /// The decoded `signedData` is correctly signed but is not the documented event shape.
    SignedPayloadInvalid {
        /// What is wrong (values redacted where they look like tokens).
        problem: String,
    },
    /// The webhook secret is empty or only whitespace.
    EmptySecret,
}

impl fmt::Display for WebhookError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WebhookError::MissingSignature => f.write_str(
                "the delivery has no x-icr-signature-256 header; the registry sends it only when a webhook secret is set on the app's General tab: set there the same secret this server verifies with, and check that no proxy strips the header",
            ),
            WebhookError::DuplicateSignature => f.write_str(
                "the delivery has more than one x-icr-signature-256 header; the registry sends one: check for a proxy that adds or copies it",
            ),
            WebhookError::WrongPrefix => f.write_str(
                "the x-icr-signature-256 header does not start with `sha256=`; the registry writes `sha256=` and 64 lower-case hex digits: check that the header comes from the registry",
            ),
            WebhookError::BadSignatureEncoding => f.write_str(
                "the x-icr-signature-256 header is not `sha256=` followed by 64 hex digits; it was cut or altered on the way (check proxies) or does not come from the registry",
            ),
            WebhookError::Mismatch => f.write_str(
                "the x-icr-signature-256 signature does not match the delivery: either the secret differs from the \"Webhook secret\" set on the app's General tab (check for a stray space or newline, or a rotated secret), or the body was altered in transit or re-serialized by a framework (pass the raw request body bytes, not parsed and re-encoded JSON)",
            ),
            WebhookError::NotUtf8 => f.write_str(
                "the delivery body is not UTF-8; the registry sends JSON: pass the raw request body bytes, undecoded",
            ),
            WebhookError::NotJson { problem } => write!(
                f,
                "the delivery body is not a JSON object ({problem}); the registry sends a JSON object: pass the raw request body, and check the webhook URL receives only ICR deliveries"
            ),
            WebhookError::MissingSignedData => f.write_str(
                "the delivery body has no string `signedData` at its root; the signature covers that field: check the webhook URL receives ICR deliveries and that the whole raw body is passed",
            ),
            WebhookError::SignedDataNotBase64 => f.write_str(
                "`signedData` is correctly signed but is not base64; the registry produced it, so report it to ICR",
            ),
            WebhookError::SignedPayloadInvalid { problem } => write!(
                f,
                "the signed payload (the base64-decoded `signedData`) is not the documented event shape: {problem}; the signature is valid, so the registry sent it: update this SDK or report it to ICR"
            ),
            WebhookError::EmptySecret => f.write_str(
                "the webhook secret is empty; use the \"Webhook secret\" entered on the app's General tab (without a secret the registry sends unsigned deliveries, which cannot be verified)",
            ),
        }
    }
}

impl std::error::Error for WebhookError {}

/// The `x-icr-signature-256` header value for `signed_data`: `sha256=` and the lower-case hex
/// HMAC-SHA256 of its bytes, keyed with `secret`. This is what the registry sends.
pub fn sign(secret: &WebhookSecret, signed_data: &str) -> String {
    let tag = hmac::sign(&secret.key(), signed_data.as_bytes());
    let mut out = String::with_capacity(PREFIX.len() + 64);
    out.push_str(PREFIX);
    for b in tag.as_ref() {
        out.push(char::from(HEX[usize::from(b >> 4)]));
        out.push(char::from(HEX[usize::from(b & 0x0f)]));
    }
    out
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Verifies a delivery and returns the signed event.
///
/// `signature_header` is the `x-icr-signature-256` value (`None` when absent); `body` is the raw
/// request body, exactly as received. Checks, in order: the header is `sha256=` and 64 hex digits
/// (either case); the body is a UTF-8 JSON object with a root string `signedData`; the
/// HMAC-SHA256 of `signedData` matches, compared in constant time. Only then is `signedData`
/// base64-decoded (standard alphabet, padding optional) and parsed as the event.
///
/// # Errors
///
/// A [`WebhookError`] saying which check failed; answer such deliveries with `403`.
pub fn verify(
    secret: &WebhookSecret,
    signature_header: Option<&str>,
    body: &[u8],
) -> Result<WebhookEvent, WebhookError> {
    let tag = parse_signature(signature_header)?;
    let signed_data = signed_data(body)?;
    hmac::verify(&secret.key(), signed_data.as_bytes(), &tag).map_err(|_| WebhookError::Mismatch)?;
    let payload = BASE64
        .decode(signed_data.as_bytes())
        .map_err(|_| WebhookError::SignedDataNotBase64)?;
    WebhookEvent::from_signed_payload(&payload)
}

/// [`verify`] for an [`http::Request`], reading the [`SIGNATURE_HEADER`] from it.
///
/// # Errors
///
/// As [`verify`]; also [`WebhookError::DuplicateSignature`] when the header appears more than
/// once, and [`WebhookError::BadSignatureEncoding`] when its value is not visible ASCII.
pub fn verify_request<B: AsRef<[u8]>>(
    secret: &WebhookSecret,
    request: &http::Request<B>,
) -> Result<WebhookEvent, WebhookError> {
    let mut values = request.headers().get_all(SIGNATURE_HEADER).iter();
    let header = match (values.next(), values.next()) {
        (None, _) => None,
        (Some(v), None) => Some(v.to_str().map_err(|_| WebhookError::BadSignatureEncoding)?),
        (Some(_), Some(_)) => return Err(WebhookError::DuplicateSignature),
    };
    verify(secret, header, request.body().as_ref())
}

/// The 32 signature bytes from a header value.
fn parse_signature(header: Option<&str>) -> Result<[u8; 32], WebhookError> {
    let header = header.ok_or(WebhookError::MissingSignature)?.trim();
    let hex = match header.get(..PREFIX.len()) {
        Some(p) if p.eq_ignore_ascii_case(PREFIX) => &header[PREFIX.len()..],
        _ => return Err(WebhookError::WrongPrefix),
    };
    let hex = hex.as_bytes();
    if hex.len() != 64 {
        return Err(WebhookError::BadSignatureEncoding);
    }
    let mut out = [0u8; 32];
    for (byte, pair) in out.iter_mut().zip(hex.chunks_exact(2)) {
        let hi = hex_value(pair[0]).ok_or(WebhookError::BadSignatureEncoding)?;
        let lo = hex_value(pair[1]).ok_or(WebhookError::BadSignatureEncoding)?;
        *byte = (hi << 4) | lo;
    }
    Ok(out)
}

fn hex_value(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        b'A'..=b'F' => Some(c - b'A' + 10),
        _ => None,
    }
}

/// The root `signedData` string of the body (JSON escapes resolved, as the registry's own
/// reference handler reads it).
fn signed_data(body: &[u8]) -> Result<String, WebhookError> {
    let text = std::str::from_utf8(body).map_err(|_| WebhookError::NotUtf8)?;
    let value: serde_json::Value = serde_json::from_str(text).map_err(|e| WebhookError::NotJson {
        problem: format!("{e}; body starts with `{}`", excerpt(text, 60)),
    })?;
    let serde_json::Value::Object(mut root) = value else {
        return Err(WebhookError::NotJson {
            problem: format!("its root is {}, not an object", json_kind(&value)),
        });
    };
    match root.remove("signedData") {
        Some(serde_json::Value::String(s)) => Ok(s),
        _ => Err(WebhookError::MissingSignedData),
    }
}

pub(crate) fn json_kind(v: &serde_json::Value) -> &'static str {
    match v {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// A delivery as the registry makes it: the body with `signedData` and the signature header.
///
/// For tests and fake registries; a real app only receives deliveries.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Delivery {
    /// The JSON body: the payload's fields plus `signedData` (base64 of the payload's JSON).
    pub body: Vec<u8>,
    /// The [`SIGNATURE_HEADER`] value.
    pub signature: String,
}

impl Delivery {
    /// Signs `payload` the way the registry does.
    ///
    /// A payload that is not a JSON object is still carried in `signedData`, but the body then
    /// holds `signedData` alone.
    pub fn new(secret: &WebhookSecret, payload: &serde_json::Value) -> Self {
        let signed_data = general_purpose::STANDARD.encode(payload.to_string());
        let signature = sign(secret, &signed_data);
        let mut body = match payload {
            serde_json::Value::Object(fields) => fields.clone(),
            _ => serde_json::Map::new(),
        };
        body.insert("signedData".to_owned(), serde_json::Value::String(signed_data));
        Self {
            body: serde_json::Value::Object(body).to_string().into_bytes(),
            signature,
        }
    }

    /// The delivery as the `POST` the registry would send to `url`.
    ///
    /// # Errors
    ///
    /// When `url` is not a valid URI.
    pub fn into_request(self, url: &str) -> Result<http::Request<Vec<u8>>, http::Error> {
        http::Request::post(url)
            .header(http::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, self.signature)
            .body(self.body)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parsing() {
        assert_eq!(parse_signature(None), Err(WebhookError::MissingSignature));
        assert_eq!(parse_signature(Some("")), Err(WebhookError::WrongPrefix));
        assert_eq!(parse_signature(Some("sha1=00")), Err(WebhookError::WrongPrefix));
        assert_eq!(
            parse_signature(Some("sha256=00")),
            Err(WebhookError::BadSignatureEncoding)
        );
        let zeros = format!("sha256={}", "0".repeat(64));
        assert_eq!(parse_signature(Some(&zeros)), Ok([0; 32]));
        let mixed = format!("SHA256={}", "aB".repeat(32));
        assert_eq!(parse_signature(Some(&mixed)), Ok([0xab; 32]));
        let bad = format!("sha256={}g", "0".repeat(63));
        assert_eq!(parse_signature(Some(&bad)), Err(WebhookError::BadSignatureEncoding));
        // Multi-byte characters must not panic the slicing.
        assert_eq!(parse_signature(Some("ßha256=")), Err(WebhookError::WrongPrefix));
        let wide = format!("sha256={}", "é".repeat(32));
        assert_eq!(parse_signature(Some(&wide)), Err(WebhookError::BadSignatureEncoding));
    }

    #[test]
    fn sign_is_lower_case_hex() {
        let s = WebhookSecret::new("k").unwrap();
        let h = sign(&s, "data");
        assert!(h.starts_with("sha256="));
        assert_eq!(h.len(), 71);
        assert!(h[7..].bytes().all(|c| c.is_ascii_digit() || (b'a'..=b'f').contains(&c)));
    }
}
