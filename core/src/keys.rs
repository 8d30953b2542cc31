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
//! The key is parsed once (with *ring*) and then signs any number of JWTs; an [`AppKey`] is
//! cheap to clone. Nothing in this module prints key material: [`AppKey`]'s `Debug` shows
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
//! let key = AppKey::from_pem(include_str!("../tests/fixtures/keys/rsa2048-pkcs8.pem"))?;
//! println!("{}", key.fingerprint());
//! assert_eq!(key.fingerprint(), include_str!("../tests/fixtures/keys/rsa2048.fingerprint").trim());
//! assert_eq!(key.modulus_bits(), 2048);
//! # Ok::<(), icr_app_core::KeyError>(())
//! ```
//!
//! # Signing elsewhere
//!
//! Implement [`Signer`] to keep the key in a KMS or HSM; the SDK only ever asks for RS256
//! signatures of app JWTs.

use std::fmt;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, STANDARD_PAD_INDIFFERENT, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use zeroize::Zeroizing;

use crate::error::Error;

/// Signs RS256 (RSASSA-PKCS1-v1_5 with SHA-256) for the app JWT.
///
/// [`AppKey`] (ring) is the default; implement this to sign in a KMS or HSM.
pub trait Signer: Send + Sync {
    /// The RS256 signature of `message`.
    fn sign_rs256(&self, message: &[u8]) -> Result<Vec<u8>, Error>;
}

/// Why a private key could not be loaded.
///
/// Each variant's message names what the input was and how to get a usable key. No variant
/// carries key material.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The input is empty or only whitespace.
    Empty,
    /// The key is encrypted with a passphrase (`BEGIN ENCRYPTED PRIVATE KEY`, or a
    /// `Proc-Type: 4,ENCRYPTED` header).
    Encrypted,
    /// An elliptic-curve key in SEC1 form (`BEGIN EC PRIVATE KEY`); ICR needs RSA.
    EcKey,
    /// An OpenSSH private key (`BEGIN OPENSSH PRIVATE KEY`), which is not PEM.
    OpenSsh,
    /// A public key (`BEGIN PUBLIC KEY`, `BEGIN RSA PUBLIC KEY`, an `ssh-rsa ...` line) instead of
    /// the private key.
    PublicKey,
    /// A certificate (`BEGIN CERTIFICATE`), which holds only the public key.
    Certificate,
    /// A PKCS#8 (or DSA) private key for an algorithm other than RSA.
    NotRsa {
        /// The algorithm, e.g. `EC (P-256)`, `Ed25519`, or the OID when it is not known.
        algorithm: String,
    },
    /// An RSA key that cannot sign RS256 here, e.g. one smaller than 2048 bits.
    Rejected {
        /// Why, including ring's reason.
        reason: String,
    },
    /// The text between the PEM lines is not valid base64.
    Base64,
    /// A `-----BEGIN` line without its `-----END` line, or DER that ends early or is malformed.
    Truncated,
    /// A PEM block whose label is not a key this SDK reads.
    UnknownPem {
        /// The label after `-----BEGIN`.
        label: String,
    },
    /// Neither PEM nor DER (e.g. a file path, or random text).
    NotAKey,
    /// Base64 laid out in 64-character lines, as between a PEM block's BEGIN and END lines, with
    /// those lines missing.
    PemBodyWithoutArmour,
    /// An ICR access token (`crs_...`) where the key was expected.
    AccessToken,
    /// A JWT (`eyJ...`) where the key was expected.
    Jwt,
    /// Text that is not a key in any form the SDK reads: not PEM, not base64 of a PEM or DER key,
    /// and (where a path is accepted) not a readable file. Only its length is kept.
    Unrecognised {
        /// How many characters the value has.
        chars: usize,
    },
}

/// How to get a key that works, appended to most messages.
const GET_A_KEY: &str = "pass the RSA private key downloaded from the app's Credentials tab \
     (icr_private_key.pem, starting `-----BEGIN RSA PRIVATE KEY-----` or `-----BEGIN PRIVATE KEY-----`)";

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Empty => write!(f, "the private key is empty: {GET_A_KEY}, or a path to that file"),
            KeyError::Encrypted => f.write_str(
                "the private key is encrypted with a passphrase, which the SDK cannot use: decrypt it once with \
                 `openssl pkey -in key.pem -out plain.pem` (it asks for the passphrase) and pass plain.pem \
                 (keep it out of version control)",
            ),
            KeyError::EcKey => write!(
                f,
                "this is an elliptic-curve key (`BEGIN EC PRIVATE KEY`), but ICR app JWTs are signed with RS256 and \
                 need an RSA key: generate a private key on the app's Credentials tab and {GET_A_KEY}"
            ),
            KeyError::OpenSsh => write!(
                f,
                "this is an OpenSSH private key (`BEGIN OPENSSH PRIVATE KEY`), not PEM: an OpenSSH RSA key can be \
                 rewritten as PEM with `ssh-keygen -p -m PEM -f key` (on a copy: it converts the file in place), \
                 but that does not work for Ed25519 or ECDSA keys, which ICR cannot use anyway; better, {GET_A_KEY}"
            ),
            KeyError::PublicKey => write!(
                f,
                "this is a public key, but signing needs the private half (ICR already holds the public key): \
                 {GET_A_KEY}"
            ),
            KeyError::Certificate => write!(
                f,
                "this is a certificate (`BEGIN CERTIFICATE`), which holds only the public key, but signing needs \
                 the private key: {GET_A_KEY}"
            ),
            KeyError::NotRsa { algorithm } => write!(
                f,
                "this is a {algorithm} private key, but ICR app JWTs are signed with RS256 and need an RSA key: \
                 generate a private key on the app's Credentials tab and {GET_A_KEY}"
            ),
            KeyError::Rejected { reason } => write!(
                f,
                "the RSA private key cannot be used: {reason}; the SDK needs an RSA key of at least 2048 bits \
                 (2048, 3072 or 4096) with public exponent 65537, such as the one the app's Credentials tab \
                 generates: {GET_A_KEY}"
            ),
            KeyError::Base64 => write!(
                f,
                "the PEM data is not valid base64 (a character was changed, or lines were altered while copying): \
                 copy the key file again unchanged, or generate a new key on the app's Credentials tab and \
                 {GET_A_KEY}"
            ),
            KeyError::Truncated => f.write_str(
                "the private key is truncated or malformed (a `-----BEGIN` line without its `-----END` line, or \
                 data that ends early): copy the whole file, from `-----BEGIN` to the `-----END ...-----` line; in \
                 an environment variable keep the line breaks or write them as `\\n`",
            ),
            KeyError::UnknownPem { label } => write!(
                f,
                "a PEM block labelled `{label}` is not a private key the SDK reads: {GET_A_KEY}"
            ),
            KeyError::NotAKey => f.write_str(
                "this is not a private key (no `-----BEGIN` line, and not DER): pass the contents of the PEM file \
                 downloaded from the app's Credentials tab (icr_private_key.pem), or, where a path is accepted \
                 (ICR_PRIVATE_KEY, --private-key), the path of that file",
            ),
            KeyError::PemBodyWithoutArmour => write!(
                f,
                "this looks like a PEM body without its BEGIN/END lines (base64 in 64-character lines): pass the \
                 whole PEM file, from its `-----BEGIN ...-----` line to its `-----END ...-----` line, or the \
                 file's path, or the whole file base64-encoded on one line (`base64 -w0 icr_private_key.pem`)"
            ),
            KeyError::AccessToken => f.write_str(
                "this looks like an ICR access token (crs_...), not a private key: an app signs its JWTs with \
                 the RSA private key downloaded from the app's Credentials tab (icr_private_key.pem); pass that \
                 file's path or its PEM text",
            ),
            KeyError::Jwt => f.write_str(
                "this looks like a JWT (eyJ...), not a private key: the SDK signs the app JWT itself; pass the RSA \
                 private key downloaded from the app's Credentials tab (icr_private_key.pem), as a path or as \
                 its PEM text",
            ),
            KeyError::Unrecognised { chars } => write!(
                f,
                "the value given ({chars} characters) is not a private key: it has no `-----BEGIN` line, is not \
                 base64 of a PEM or DER key, and (where a path is accepted) names no readable file; pass the \
                 path of the PEM file downloaded from the app's Credentials tab (icr_private_key.pem), its PEM \
                 text, or the file base64-encoded (`base64 -w0 icr_private_key.pem`)"
            ),
        }
    }
}

impl std::error::Error for KeyError {}

/// An RSA private key, parsed once; signs RS256 for the app JWT.
///
/// Cloning is cheap (the parsed key is shared). `Debug` shows only the size and the
/// [fingerprint](AppKey::fingerprint).
#[derive(Clone)]
pub struct AppKey {
    pair: Arc<RsaKeyPair>,
    rng: SystemRandom,
    spki: Arc<[u8]>,
    fingerprint: Arc<str>,
    bits: usize,
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
    /// let pem = include_str!("../tests/fixtures/keys/rsa2048-pkcs1.pem");
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
        self.pair.public().as_ref()
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

    fn from_pair(pair: RsaKeyPair, bits: usize) -> AppKey {
        let spki = spki_from_pkcs1(pair.public().as_ref());
        let digest = ring::digest::digest(&ring::digest::SHA256, &spki);
        AppKey {
            pair: Arc::new(pair),
            rng: SystemRandom::new(),
            fingerprint: STANDARD.encode(digest.as_ref()).into(),
            spki: spki.into(),
            bits,
        }
    }
}

impl Signer for AppKey {
    fn sign_rs256(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        let mut signature = vec![0; self.pair.public().modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &self.rng, message, &mut signature)
            .map_err(|_| Error::Signing("ring could not compute the RSA signature".to_owned()))?;
        Ok(signature)
    }
}

/// Undoes what copying a PEM through environment variables, `.env` files and Windows does:
/// byte-order mark, surrounding quotes, literal `\n`/`\r` escapes, CR line ends.
fn normalise(text: &str) -> Zeroizing<String> {
    let mut t = text.trim_start_matches('\u{feff}').trim();
    for quote in ['"', '\''] {
        if t.len() >= 2 && t.starts_with(quote) && t.ends_with(quote) {
            t = t[1..t.len() - 1].trim();
        }
    }
    let mut out = Zeroizing::new(String::with_capacity(t.len()));
    let mut chars = t.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            // A PEM never holds a backslash: `\n` and `\r` are escaped line breaks, others are dropped.
            '\\' => {
                if matches!(chars.peek(), Some('n' | 'r')) {
                    chars.next();
                    out.push('\n');
                }
            }
            '\r' => out.push('\n'),
            c => out.push(c),
        }
    }
    out
}

/// One PEM block: its label and the text between the BEGIN and END lines (`None` when the END
/// line is missing or does not match).
struct Block<'a> {
    label: &'a str,
    body: Option<&'a str>,
}

/// Every `-----BEGIN X-----` ... `-----END X-----` block in `text`, ignoring text around them.
fn pem_blocks(text: &str) -> Vec<Block<'_>> {
    const BEGIN: &str = "-----BEGIN";
    const END: &str = "-----END";
    const DASHES: &str = "-----";
    let mut blocks = Vec::new();
    let mut rest = text;
    while let Some(i) = rest.find(BEGIN) {
        let after = &rest[i + BEGIN.len()..];
        let line = &after[..after.find('\n').unwrap_or(after.len())];
        let Some(dash) = line.find(DASHES) else {
            // A BEGIN line without its closing dashes: the armour is cut.
            blocks.push(Block {
                label: line.trim().trim_end_matches('-').trim(),
                body: None,
            });
            break;
        };
        let label = line[..dash].trim();
        let inner = &after[dash + DASHES.len()..];
        let Some(j) = inner.find(END) else {
            blocks.push(Block { label, body: None });
            break;
        };
        let body = &inner[..j];
        if let Some(k) = body.find(BEGIN) {
            // Another block starts before this one ends: this one is cut.
            blocks.push(Block { label, body: None });
            rest = &body[k..];
            continue;
        }
        let end_line = &inner[j + END.len()..];
        let (end_label, next) = match end_line.find(DASHES) {
            Some(d) => (end_line[..d].trim(), &end_line[d + DASHES.len()..]),
            None => ("", ""),
        };
        let body = (end_label == label).then_some(body);
        blocks.push(Block { label, body });
        rest = next;
    }
    blocks
}

/// A PEM label made safe to print: letters, digits, spaces and dashes, at most 64 characters.
///
/// A real label is a few short words (`RSA PRIVATE KEY`). A word of 16 or more characters is
/// key material that ended up on the `-----BEGIN` line (a PEM flattened onto one line with its
/// dashes damaged), so the label is cut before it, marked `…`, and no key material is shown.
fn printable_label(label: &str) -> String {
    let clean: String = label
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '_'))
        .collect();
    let words: Vec<&str> = clean.split(' ').filter(|w| !w.is_empty()).collect();
    let short = words.iter().take_while(|w| w.len() < 16).count();
    let mut out: String = words[..short].join(" ").chars().take(64).collect();
    if short < words.len() {
        out.push('…');
    }
    out
}

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
const TAG_SEQUENCE: u8 = 0x30;

/// rsaEncryption, 1.2.840.113549.1.1.1.
const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
/// id-RSASSA-PSS, 1.2.840.113549.1.1.10.
const OID_RSASSA_PSS: &str = "1.2.840.113549.1.1.10";

/// One DER element.
#[derive(Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    /// The contents.
    value: &'a [u8],
    /// Tag, length and contents.
    whole: &'a [u8],
}

/// Reads one DER element from the front of `input`; the rest follows.
fn read_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), KeyError> {
    let [tag, first, rest @ ..] = input else {
        return Err(KeyError::Truncated);
    };
    if tag & 0x1f == 0x1f {
        return Err(KeyError::Truncated);
    }
    let (len, rest) = if *first < 0x80 {
        (usize::from(*first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(KeyError::Truncated);
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(KeyError::Truncated);
    }
    let header = input.len() - rest.len();
    let tlv = Tlv {
        tag: *tag,
        value: &rest[..len],
        whole: &input[..header + len],
    };
    Ok((tlv, &rest[len..]))
}

/// The elements inside a constructed value.
fn children(mut value: &[u8]) -> Result<Vec<Tlv<'_>>, KeyError> {
    let mut items = Vec::new();
    while !value.is_empty() {
        let (tlv, rest) = read_tlv(value)?;
        items.push(tlv);
        value = rest;
    }
    Ok(items)
}

/// Reads exactly one SEQUENCE and its elements.
fn sequence(der: &[u8]) -> Result<(Tlv<'_>, Vec<Tlv<'_>>), KeyError> {
    let (outer, rest) = read_tlv(der)?;
    if outer.tag != TAG_SEQUENCE || !rest.is_empty() {
        return Err(KeyError::Truncated);
    }
    Ok((outer, children(outer.value)?))
}

/// Tells PKCS#1, PKCS#8 and the wrong kinds of DER apart, and loads an RSA key.
fn load_der(der: &[u8]) -> Result<AppKey, KeyError> {
    if der.first() != Some(&TAG_SEQUENCE) {
        return Err(KeyError::NotAKey);
    }
    let (outer, items) = sequence(der)?;
    let tags: Vec<u8> = items.iter().map(|t| t.tag).collect();
    match tags.as_slice() {
        _ if is_rsa_private_key(&items) => load_pkcs1(outer, &items),
        [TAG_INTEGER, TAG_SEQUENCE, TAG_OCTET_STRING, ..] => load_pkcs8(&items),
        // SEC1 ECPrivateKey: version 1, the private scalar, [0] curve, [1] public point.
        [TAG_INTEGER, TAG_OCTET_STRING, ..] if items[0].value == [1] => Err(KeyError::EcKey),
        // DSAPrivateKey as written by OpenSSL: version, p, q, g, y, x.
        [
            TAG_INTEGER,
            TAG_INTEGER,
            TAG_INTEGER,
            TAG_INTEGER,
            TAG_INTEGER,
            TAG_INTEGER,
        ] => Err(KeyError::NotRsa {
            algorithm: "DSA".into(),
        }),
        // RSAPublicKey (n, e) or SubjectPublicKeyInfo (algorithm, key).
        [TAG_INTEGER, TAG_INTEGER] | [TAG_SEQUENCE, TAG_BIT_STRING] => Err(KeyError::PublicKey),
        // EncryptedPrivateKeyInfo: encryption algorithm, encrypted data.
        [TAG_SEQUENCE, TAG_OCTET_STRING] => Err(KeyError::Encrypted),
        // Certificate: tbsCertificate, signatureAlgorithm, signature.
        [TAG_SEQUENCE, TAG_SEQUENCE, TAG_BIT_STRING] => Err(KeyError::Certificate),
        _ => Err(KeyError::NotAKey),
    }
}

/// Whether the elements start like an `RSAPrivateKey`: nine INTEGERs (version, n, e, d, p, q,
/// dP, dQ, qInv), perhaps followed by other prime infos.
fn is_rsa_private_key(items: &[Tlv<'_>]) -> bool {
    items.len() >= 9 && items[..9].iter().all(|t| t.tag == TAG_INTEGER)
}

/// PrivateKeyInfo: version, AlgorithmIdentifier, OCTET STRING holding the algorithm's key.
fn load_pkcs8(items: &[Tlv<'_>]) -> Result<AppKey, KeyError> {
    let algorithm = children(items[1].value)?;
    let Some(oid) = algorithm.first().filter(|t| t.tag == TAG_OID) else {
        return Err(KeyError::Truncated);
    };
    let oid = oid_string(oid.value);
    match oid.as_str() {
        OID_RSA_ENCRYPTION => {}
        OID_RSASSA_PSS => {
            return Err(KeyError::Rejected {
                reason: format!(
                    "it is an RSASSA-PSS key (OID {OID_RSASSA_PSS}), restricted to PSS signatures, while RS256 \
                     uses PKCS#1 v1.5"
                ),
            });
        }
        _ => {
            return Err(KeyError::NotRsa {
                algorithm: algorithm_name(&oid, algorithm.get(1)),
            });
        }
    }
    let (outer, inner) = sequence(items[2].value)?;
    if !is_rsa_private_key(&inner) {
        return Err(KeyError::Truncated);
    }
    load_pkcs1(outer, &inner)
}

/// RSAPrivateKey, its shape checked by [`is_rsa_private_key`].
fn load_pkcs1(outer: Tlv<'_>, items: &[Tlv<'_>]) -> Result<AppKey, KeyError> {
    let bits = bit_length(items[1].value);
    match RsaKeyPair::from_der(outer.whole) {
        Ok(pair) => Ok(AppKey::from_pair(pair, bits)),
        Err(rejected) => Err(KeyError::Rejected {
            reason: rejection_reason(&rejected.to_string(), bits),
        }),
    }
}

/// Explains ring's `KeyRejected` description for a key of `bits` bits.
fn rejection_reason(ring: &str, bits: usize) -> String {
    let why = match ring {
        "TooSmall" if bits < 2048 => format!("it is a {bits}-bit key, below the minimum of 2048 bits"),
        "TooSmall" => "its public exponent is below 65537".to_owned(),
        "TooLarge" if bits > 4096 => format!("it is a {bits}-bit key, above the maximum of 4096 bits"),
        "TooLarge" => "its public exponent is too large".to_owned(),
        "PrivateModulusLenNotMultipleOf512Bits" => {
            format!("it is a {bits}-bit key; only 2048-, 3072- and 4096-bit keys are supported")
        }
        "VersionNotSupported" => "it is a multi-prime RSA key, which is not supported".to_owned(),
        "InconsistentComponents" | "InvalidComponent" => {
            "its numbers do not fit together (the file may be corrupted or edited)".to_owned()
        }
        "InvalidEncoding" => "its DER encoding is invalid".to_owned(),
        _ => "it was refused".to_owned(),
    };
    format!("{why} (ring: {ring})")
}

/// The bit length of a DER INTEGER's unsigned value.
fn bit_length(integer: &[u8]) -> usize {
    let start = integer.iter().position(|b| *b != 0).unwrap_or(integer.len());
    match integer.get(start) {
        Some(first) => (integer.len() - start) * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

/// An OBJECT IDENTIFIER's contents in dotted form.
fn oid_string(bytes: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for b in bytes {
        if value > u64::MAX >> 7 {
            return "(unreadable OID)".to_owned();
        }
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    arcs.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

/// A readable name for a PKCS#8 algorithm OID (and, for EC, the curve in `parameters`).
fn algorithm_name(oid: &str, parameters: Option<&Tlv<'_>>) -> String {
    let name = match oid {
        "1.2.840.10045.2.1" => {
            let curve = parameters.filter(|p| p.tag == TAG_OID).map(|p| oid_string(p.value));
            return match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "EC (P-256)".to_owned(),
                Some("1.3.132.0.34") => "EC (P-384)".to_owned(),
                Some("1.3.132.0.35") => "EC (P-521)".to_owned(),
                Some("1.3.132.0.10") => "EC (secp256k1)".to_owned(),
                Some(other) => format!("EC (curve OID {other})"),
                None => "EC".to_owned(),
            };
        }
        "1.3.101.112" => "Ed25519",
        "1.3.101.113" => "Ed448",
        "1.3.101.110" => "X25519",
        "1.3.101.111" => "X448",
        "1.2.840.10040.4.1" => "DSA",
        "1.2.840.113549.1.3.1" | "1.2.840.10046.2.1" => "Diffie-Hellman",
        "1.2.156.10197.1.301" => "SM2",
        other => return format!("non-RSA (algorithm OID {other})"),
    };
    name.to_owned()
}

/// Appends a DER length.
fn push_der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Wraps a PKCS#1 `RSAPublicKey` in a `SubjectPublicKeyInfo` with the rsaEncryption algorithm
/// (and NULL parameters), as `openssl rsa -pubout -outform DER` writes it.
fn spki_from_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    // SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }
    const ALGORITHM: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bit_string = vec![TAG_BIT_STRING];
    push_der_len(&mut bit_string, pkcs1.len() + 1);
    bit_string.push(0); // no unused bits
    bit_string.extend_from_slice(pkcs1);
    let mut spki = vec![TAG_SEQUENCE];
    push_der_len(&mut spki, ALGORITHM.len() + bit_string.len());
    spki.extend_from_slice(&ALGORITHM);
    spki.extend_from_slice(&bit_string);
    spki
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_read_in_dotted_form() {
        assert_eq!(
            oid_string(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]),
            OID_RSA_ENCRYPTION
        );
        assert_eq!(oid_string(&[0x2b, 0x65, 0x70]), "1.3.101.112");
        assert_eq!(
            oid_string(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
            "1.2.840.10045.2.1"
        );
    }

    #[test]
    fn der_lengths_are_minimal() {
        let mut out = Vec::new();
        push_der_len(&mut out, 0x7f);
        push_der_len(&mut out, 0x80);
        push_der_len(&mut out, 0x10e);
        assert_eq!(out, [0x7f, 0x81, 0x80, 0x82, 0x01, 0x0e]);
    }

    #[test]
    fn bit_lengths_ignore_sign_padding() {
        assert_eq!(bit_length(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(bit_length(&[0x01]), 1);
        assert_eq!(bit_length(&[0x00]), 0);
        assert_eq!(bit_length(&[]), 0);
    }

    #[test]
    fn escapes_and_line_ends_are_normalised() {
        assert_eq!(&*normalise("\"a\\nb\\r\\nc\r\nd\""), "a\nb\n\nc\n\nd");
        assert_eq!(&*normalise("\u{feff}  'x'  "), "x");
    }

    #[test]
    fn labels_never_show_key_material() {
        // Found by `cargo fuzz run keys`: key text on a BEGIN line whose dashes were damaged
        // became the label, and up to 64 characters of it were printed.
        assert_eq!(printable_label("RSA PRIVATE KEY"), "RSA PRIVATE KEY");
        assert_eq!(
            printable_label("PRIVATE KEY--t1snGN5bhGgEweTuU1TxmKSz2nrX6MlxaBeH"),
            "PRIVATE…"
        );
        assert_eq!(
            printable_label("RSA PRIVATE KEY MIIEpAIBAAKCAQEAx/y+z Q"),
            "RSA PRIVATE KEY…"
        );
        assert_eq!(printable_label("MIIEpAIBAAKCAQEAx"), "…");
        assert_eq!(printable_label(" A\u{1b}[31mB  "), "A31mB");
    }

    #[test]
    fn blocks_are_found_and_cut_blocks_marked() {
        let text = "junk\n-----BEGIN A-----\nQUJD\n-----END A-----\n-----BEGIN B-----\nxx";
        let blocks = pem_blocks(text);
        assert_eq!(blocks.len(), 2);
        assert_eq!((blocks[0].label, blocks[0].body), ("A", Some("\nQUJD\n")));
        assert_eq!((blocks[1].label, blocks[1].body), ("B", None));
        let mismatched = pem_blocks("-----BEGIN A-----\nQUJD\n-----END B-----");
        assert_eq!(mismatched[0].body, None);
    }
}
