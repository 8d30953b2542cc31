//! Settings shared by the CLI, the examples and users' programs: the environment variable
//! names, and loading a private key given either as a path or as the PEM itself.
//!
//! This is the one place the core touches the file system (to read a key file); it never does
//! network I/O.

use crate::error::Error;
use crate::keys::AppKey;

/// The registry's base URL.
pub const BASE_URL: &str = "ICR_BASE_URL";
/// The app id.
pub const APP_ID: &str = "ICR_APP_ID";
/// The private key: a path to the PEM/DER file, or the PEM itself (as pasted into `.env`).
pub const PRIVATE_KEY: &str = "ICR_PRIVATE_KEY";
/// An installation id.
pub const INSTALLATION_ID: &str = "ICR_INSTALLATION_ID";
/// The `x-icr-api-version` to send.
pub const API_VERSION: &str = "ICR_API_VERSION";

/// Loads a private key from `value`: the PEM itself when it contains `-----BEGIN` (literal `\n`
/// escapes allowed), otherwise a path to a PEM or DER file.
pub fn load_private_key(value: &str) -> Result<AppKey, Error> {
    if value.contains("-----BEGIN") {
        return Ok(AppKey::from_pem(value)?);
    }
    let path = value.trim();
    if path.is_empty() {
        return Err(Error::config(
            "private key",
            format!("none given; pass --private-key PATH or set {PRIVATE_KEY} to the key file's path or its PEM text"),
        ));
    }
    let bytes = std::fs::read(path).map_err(|e| {
        Error::config(
            "private key",
            format!("cannot read the key file `{path}`: {e}; pass the path of the PEM file downloaded from the app's Credentials tab, or the PEM text itself"),
        )
    })?;
    AppKey::parse(&bytes).map_err(|e| Error::config("private key", format!("{path}: {e}")))
}
