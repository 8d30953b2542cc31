//! [`KeyError`]: why a private key could not be loaded, with the fix.

use std::fmt;

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
        /// Why, including the crypto provider's reason (*ring*'s, e.g. `ring: TooSmall`, or for
        /// a key only aws-lc-rs refuses, aws-lc-rs's).
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
