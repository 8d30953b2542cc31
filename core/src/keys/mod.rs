//! The app's RSA private key, and the [`Signer`] seam that signs the app JWT with it.
//!
//! # Formats
//!
//! ICR's Credentials tab hands out the private key as a PEM file (`icr_private_key.pem`). The
//! docs do not say which PEM form, so [`AppKey`] reads both, and their binary DER encodings:
//!
//! | Form | Starts with |
//! |------|-------------|
//! | PKCS#1 PEM (`RSAPrivateKey`) | `-----BEGIN RSA PRIVATE KEY-----` |
//! | PKCS#8 PEM (`PrivateKeyInfo`) | `-----BEGIN PRIVATE KEY-----` |
//! | PKCS#1 or PKCS#8 DER | the byte `0x30` (detected by structure) |
//!
//! PEM text may have CRLF line ends, surrounding whitespace, blank lines, text around the
//! block, a byte-order mark, surrounding quotes, and literal two-character `\n` escapes (a key
//! pasted into an environment variable or a `.env` file). A certificate or `EC PARAMETERS`
//! block next to the key is skipped.
//!
//! Everything else gets its own [`KeyError`] whose message says what the input is and how to
//! fix it: encrypted keys, EC/Ed25519/DSA keys, OpenSSH keys, public keys, certificates,
//! damaged base64, truncated files, and RSA keys that are too small.
//!
//! The key is parsed once and then signs any number of JWTs; an [`AppKey`] is cheap to clone.
//! *ring* signs by default; with the `aws-lc-rs` feature aws-lc-rs signs instead
//! ([`AppKey::CRYPTO_PROVIDER`] says which). *ring* checks every key in both builds, so the same
//! keys load and the same [`KeyError`]s come back whichever provider signs. Nothing in this module prints key material: [`AppKey`]'s `Debug` shows
//! only the size and the fingerprint, and decoded buffers are wiped after parsing.
//!
//! # Fingerprint
//!
//! ICR shows a SHA-256 fingerprint for each key on the Credentials tab, so a local key can be
//! matched to the key registered there. [`AppKey::fingerprint`] computes the standard base64 of
//! the SHA-256 of the public key's `SubjectPublicKeyInfo` DER, the same as this command (the one
//! GitHub documents for its app keys; ICR's published docs do not show theirs):
//!
//! ```text
//! openssl rsa -in icr_private_key.pem -pubout -outform DER | openssl sha256 -binary | openssl base64
//! ```
//!
//! ```
//! use icr_app_core::AppKey;
//!
//! let key = AppKey::from_pem(include_str!("../../tests/fixtures/keys/rsa2048-pkcs8.pem"))?;
//! println!("{}", key.fingerprint());
//! assert_eq!(key.fingerprint(), include_str!("../../tests/fixtures/keys/rsa2048.fingerprint").trim());
//! assert_eq!(key.modulus_bits(), 2048);
//! # Ok::<(), icr_app_core::KeyError>(())
//! ```
//!
//! # Signing elsewhere
//!
//! Implement [`Signer`] to keep the key in a KMS or HSM; the SDK only ever asks for RS256
//! signatures of app JWTs.

mod der;
mod error;
mod pem;
mod provider;

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, STANDARD_PAD_INDIFFERENT, URL_SAFE_NO_PAD};
use zeroize::Zeroizing;

use der::{TAG_SEQUENCE, load_der, spki_from_pkcs1};
pub use error::KeyError;
use pem::{normalise, pem_blocks, printable_label};
use provider::RsaSigner;

/// An RSA private key, parsed once; signs RS256 for the app JWT.
///
/// Cloning is cheap (the parsed key is shared). `Debug` shows only the size and the
/// [fingerprint](AppKey::fingerprint).
///
/// *ring* signs, or aws-lc-rs when the crate is built with the `aws-lc-rs` feature
/// ([`CRYPTO_PROVIDER`](AppKey::CRYPTO_PROVIDER) says which). Both give the same signatures
/// (PKCS#1 v1.5 is deterministic); *ring* checks every key in both builds, so the same keys load
/// and the same [`KeyError`]s come back, except that aws-lc-rs also refuses a key whose private
/// exponent `d` does not fit the other numbers (*ring* never reads `d`).
#[derive(Clone)]
pub struct AppKey {
    rsa: Arc<RsaSigner>,
    spki: Arc<[u8]>,
    fingerprint: Arc<str>,
    bits: usize,
    /// HKDF-SHA256 of the key's PKCS#1 DER (canonical, whatever form it was read in): the
    /// secret a shared token store seals tokens under (see [`Signer::sealing_secret`]).
    sealing: Arc<Zeroizing<[u8; 32]>>,
}

impl fmt::Debug for AppKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AppKey")
            .field("bits", &self.bits)
            .field("fingerprint", &&*self.fingerprint)
            .finish()
    }
}

impl AppKey {
    /// The crypto provider that signs: `"ring"` (the default) or `"aws-lc-rs"` (the `aws-lc-rs`
    /// feature), chosen when the crate is compiled.
    ///
    /// ```
    /// let provider = icr_app_core::AppKey::CRYPTO_PROVIDER;
    /// assert_eq!(provider, if cfg!(feature = "aws-lc-rs") { "aws-lc-rs" } else { "ring" });
    /// ```
    pub const CRYPTO_PROVIDER: &'static str = RsaSigner::PROVIDER;

    /// Reads a PEM private key: PKCS#1 (`BEGIN RSA PRIVATE KEY`) or PKCS#8 (`BEGIN PRIVATE KEY`).
    ///
    /// Tolerates CRLF, surrounding whitespace, quotes and text, and literal `\n` escapes as found
    /// in environment variables.
    pub fn from_pem(pem: &str) -> Result<AppKey, KeyError> {
        let text = normalise(pem);
        let text = text.trim();
        if text.is_empty() {
            return Err(KeyError::Empty);
        }
        let blocks = pem_blocks(text);
        let Some(block) = blocks
            .iter()
            .find(|b| b.label.ends_with("PRIVATE KEY"))
            .or_else(|| blocks.first())
        else {
            let ssh_public = ["ssh-rsa ", "ssh-ed25519 ", "ssh-dss ", "ecdsa-sha2-", "sk-"];
            if text.contains("BEGIN SSH2 PUBLIC KEY") || ssh_public.iter().any(|p| text.starts_with(p)) {
                return Err(KeyError::PublicKey);
            }
            return Err(KeyError::NotAKey);
        };
        match block.label {
            "RSA PRIVATE KEY" | "PRIVATE KEY" => {}
            "ENCRYPTED PRIVATE KEY" => return Err(KeyError::Encrypted),
            "EC PRIVATE KEY" | "EC PARAMETERS" => return Err(KeyError::EcKey),
            "OPENSSH PRIVATE KEY" => return Err(KeyError::OpenSsh),
            "DSA PRIVATE KEY" => {
                return Err(KeyError::NotRsa {
                    algorithm: "DSA".into(),
                });
            }
            "PUBLIC KEY" | "RSA PUBLIC KEY" => return Err(KeyError::PublicKey),
            "CERTIFICATE" | "X509 CERTIFICATE" | "TRUSTED CERTIFICATE" => return Err(KeyError::Certificate),
            other => {
                return Err(KeyError::UnknownPem {
                    label: printable_label(other),
                });
            }
        }
        let body = block.body.ok_or(KeyError::Truncated)?;
        let mut base64_text = Zeroizing::new(String::with_capacity(body.len()));
        for line in body.lines() {
            if line.contains(':') {
                // An RFC 1421 header, as written by `openssl rsa -aes256` (traditional encryption).
                if line.trim_start().starts_with("Proc-Type") && line.contains("ENCRYPTED") {
                    return Err(KeyError::Encrypted);
                }
                continue;
            }
            base64_text.extend(line.chars().filter(|c| !c.is_whitespace()));
        }
        if base64_text.is_empty() {
            return Err(KeyError::Truncated);
        }
        let mut der = Zeroizing::new(Vec::with_capacity(base64_text.len() / 4 * 3 + 3));
        STANDARD_PAD_INDIFFERENT
            .decode_vec(base64_text.as_bytes(), &mut der)
            .map_err(|_| KeyError::Base64)?;
        load_der(&der)
    }

    /// Reads a DER private key: PKCS#1 `RSAPrivateKey` or PKCS#8 `PrivateKeyInfo`, told apart by
    /// structure.
    pub fn from_der(der: &[u8]) -> Result<AppKey, KeyError> {
        if der.is_empty() {
            return Err(KeyError::Empty);
        }
        load_der(der)
    }

    /// Reads a key file's bytes, PEM text or binary DER (detected).
    ///
    /// UTF-8 text (with or without a byte-order mark) and UTF-16 text with a byte-order mark
    /// (as written by Windows PowerShell) are read as PEM.
    pub fn parse(bytes: &[u8]) -> Result<AppKey, KeyError> {
        if bytes.iter().all(u8::is_ascii_whitespace) {
            return Err(KeyError::Empty);
        }
        let has_begin = bytes.windows(10).any(|w| w == b"-----BEGIN");
        // DER starts with a SEQUENCE tag, `0`; a key's DER is never printable UTF-8 text.
        let printable = |t: &str| t.chars().all(|c| !c.is_control() || c.is_whitespace());
        if bytes[0] == TAG_SEQUENCE && !has_begin && !std::str::from_utf8(bytes).is_ok_and(printable) {
            return load_der(bytes);
        }
        if let Ok(text) = std::str::from_utf8(bytes) {
            return Self::from_pem(text);
        }
        let utf16 = |be: bool| -> Zeroizing<String> {
            let units = bytes[2..].chunks_exact(2).map(|c| {
                if be {
                    u16::from_be_bytes([c[0], c[1]])
                } else {
                    u16::from_le_bytes([c[0], c[1]])
                }
            });
            // Sized up front (a UTF-16 unit becomes at most 3 UTF-8 bytes) so no unwiped copy is left.
            let mut text = Zeroizing::new(String::with_capacity(bytes.len() / 2 * 3));
            text.extend(char::decode_utf16(units).map(|c| c.unwrap_or('\u{fffd}')));
            text
        };
        match bytes {
            [0xff, 0xfe, ..] => Self::from_pem(&utf16(false)),
            [0xfe, 0xff, ..] => Self::from_pem(&utf16(true)),
            _ if has_begin => Self::from_pem(&Zeroizing::new(String::from_utf8_lossy(bytes).into_owned())),
            _ => Err(KeyError::NotAKey),
        }
    }

    /// Reads a key given as text in a setting (an environment variable, a secret store, a flag):
    /// PEM as [`from_pem`](Self::from_pem) reads it, or the base64 encoding of a PEM file or of
    /// a DER key (as CI secret stores often hold it, e.g. `base64 -w0 icr_private_key.pem`).
    ///
    /// Anything else gets a specific error that never quotes the input: a PEM body without its
    /// BEGIN/END lines, an access token or a JWT pasted by mistake, or text of a given length.
    ///
    /// ```
    /// use base64::Engine as _;
    /// use icr_app_core::{AppKey, KeyError};
    ///
    /// let pem = include_str!("../../tests/fixtures/keys/rsa2048-pkcs1.pem");
    /// let encoded = base64::engine::general_purpose::STANDARD.encode(pem);
    /// assert_eq!(AppKey::from_text(&encoded)?.fingerprint(), AppKey::from_pem(pem)?.fingerprint());
    /// assert_eq!(AppKey::from_text("crs_19c9bd530ccd3e1187eed12dc4edb70a").unwrap_err(), KeyError::AccessToken);
    /// # Ok::<(), KeyError>(())
    /// ```
    pub fn from_text(value: &str) -> Result<AppKey, KeyError> {
        if value.contains("-----BEGIN") {
            return Self::from_pem(value);
        }
        let text = normalise(value);
        let text = text.trim();
        if text.is_empty() {
            return Err(KeyError::Empty);
        }
        let compact: Zeroizing<String> = Zeroizing::new(text.chars().filter(|c| !c.is_whitespace()).collect());
        let is_base64 = |c: char| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '=' | '-' | '_');
        if compact.starts_with("crs_") && compact.len() >= 20 && compact.chars().all(is_base64) {
            return Err(KeyError::AccessToken);
        }
        if compact.starts_with("eyJ") && compact.matches('.').count() == 2 {
            return Err(KeyError::Jwt);
        }
        let chars = value.chars().count();
        let ssh_public = ["ssh-rsa ", "ssh-ed25519 ", "ssh-dss ", "ecdsa-sha2-", "sk-"];
        if text.contains("BEGIN SSH2 PUBLIC KEY") || ssh_public.iter().any(|p| text.starts_with(p)) {
            return Err(KeyError::PublicKey);
        }
        if compact.len() < 64 || !compact.chars().all(is_base64) {
            return Err(KeyError::Unrecognised { chars });
        }
        let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
        let pem_layout = lines.len() > 1 && lines[..lines.len() - 1].iter().all(|l| l.len() == 64);
        let mut decoded = Zeroizing::new(Vec::with_capacity(compact.len() / 4 * 3 + 3));
        let engine = if compact.contains(['-', '_']) {
            URL_SAFE_NO_PAD
        } else {
            STANDARD_NO_PAD
        };
        if engine
            .decode_vec(compact.trim_end_matches('=').as_bytes(), &mut decoded)
            .is_err()
        {
            return Err(KeyError::Unrecognised { chars });
        }
        if decoded.windows(10).any(|w| w == b"-----BEGIN") {
            return Self::parse(&decoded);
        }
        if pem_layout {
            return Err(KeyError::PemBodyWithoutArmour);
        }
        match decoded.first() {
            Some(&TAG_SEQUENCE) => load_der(&decoded),
            _ => Err(KeyError::Unrecognised { chars }),
        }
    }

    /// The RS256 signature (RSASSA-PKCS1-v1_5, SHA-256) of `message`; `None` only if the
    /// provider fails (with *ring*, its random source for blinding).
    pub(crate) fn sign_pkcs1_sha256(&self, message: &[u8]) -> Option<Vec<u8>> {
        self.rsa.sign(message)
    }

    /// The SHA-256 fingerprint ICR shows on the Credentials tab: standard padded base64 of the
    /// SHA-256 of the public key's `SubjectPublicKeyInfo` DER, as printed by
    /// `openssl rsa -in KEY.pem -pubout -outform DER | openssl sha256 -binary | openssl base64`.
    pub fn fingerprint(&self) -> String {
        self.fingerprint.to_string()
    }

    /// The public key as `SubjectPublicKeyInfo` DER (what `openssl rsa -pubout -outform DER` writes).
    pub fn public_key_spki_der(&self) -> Vec<u8> {
        self.spki.to_vec()
    }

    /// The public key as PKCS#1 `RSAPublicKey` DER, the form
    /// `ring::signature::UnparsedPublicKey` verifies RS256 signatures with.
    pub fn public_key_pkcs1_der(&self) -> &[u8] {
        self.rsa.public_pkcs1_der()
    }

    /// The public key as PEM (`-----BEGIN PUBLIC KEY-----`, 64-column lines, final newline).
    pub fn public_key_pem(&self) -> String {
        let b64 = STANDARD.encode(&self.spki);
        let mut pem = String::with_capacity(b64.len() + b64.len() / 64 + 64);
        pem.push_str("-----BEGIN PUBLIC KEY-----\n");
        let mut start = 0;
        while start < b64.len() {
            let end = (start + 64).min(b64.len());
            pem.push_str(&b64[start..end]);
            pem.push('\n');
            start = end;
        }
        pem.push_str("-----END PUBLIC KEY-----\n");
        pem
    }

    /// The size of the RSA modulus in bits (2048, 3072 or 4096).
    pub fn modulus_bits(&self) -> usize {
        self.bits
    }

    /// The secret that shared token stores seal this app's tokens under.
    pub(crate) fn sealing_secret(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(**self.sealing)
    }

    fn from_signer(rsa: RsaSigner, pkcs1_der: &[u8], bits: usize) -> AppKey {
        let spki = spki_from_pkcs1(rsa.public_pkcs1_der());
        let digest = ring::digest::digest(&ring::digest::SHA256, &spki);
        AppKey {
            rsa: Arc::new(rsa),
            fingerprint: STANDARD.encode(digest.as_ref()).into(),
            spki: spki.into(),
            bits,
            sealing: Arc::new(sealing_secret(pkcs1_der)),
        }
    }
}

/// HKDF-SHA256 (RFC 5869) of a private key's PKCS#1 DER (or of the secret given to an app
/// without a key), for sealing shared tokens: every process holding the key derives the same
/// secret, and nothing about it leaks the key.
pub(crate) fn sealing_secret(pkcs1_der: &[u8]) -> Zeroizing<[u8; 32]> {
    struct Len32;
    impl ring::hkdf::KeyType for Len32 {
        fn len(&self) -> usize {
            32
        }
    }
    let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, b"icr-app shared token store").extract(pkcs1_der);
    let mut out = Zeroizing::new([0u8; 32]);
    // Expanding 32 bytes from SHA-256 cannot fail (the limit is 255 * 32).
    if let Ok(okm) = prk.expand(&[b"sealing secret v1"], Len32) {
        let _ = okm.fill(&mut out[..]);
    }
    out
}
