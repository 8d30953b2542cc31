//! `App(app_id, private_key)`: the key as PEM text (`str` or `bytes`), DER `bytes`, or the path
//! of the key file (`str` or `os.PathLike`).
//!
//! No message ever quotes what was given (it may be a key, or a token pasted by mistake, and a
//! path says where a key lives): an error names the argument, what it looks like and its length.

use std::io::Read;
use std::path::{Path, PathBuf};

use icr_app_core::{AppKey, Error as CoreError, KeyError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};
use zeroize::Zeroizing;

use crate::errors::{InvalidKeyError, to_py};

/// No key file is this large: a 4096-bit key's PEM is about 3.3 KB.
const MAX_KEY_FILE: u64 = 1024 * 1024;

/// The key `private_key` gives.
pub(crate) fn app_key(private_key: &Bound<'_, PyAny>) -> PyResult<AppKey> {
    if let Ok(text) = private_key.cast::<PyString>() {
        let text = Zeroizing::new(text.to_cow()?.into_owned());
        // A PEM (or DER) as a file holds it; else the other ways a setting holds a key (base64
        // of the file), and the specific errors for a token or JWT pasted instead; else a path.
        let parsed = match AppKey::parse(text.as_bytes()) {
            Err(KeyError::NotAKey) => AppKey::from_text(&text),
            other => other,
        };
        return match parsed {
            Ok(key) => Ok(key),
            Err(error) => from_path(&text, error),
        };
    }
    if let Ok(bytes) = private_key.cast::<PyBytes>() {
        return AppKey::parse(bytes.as_bytes()).map_err(key_error);
    }
    if private_key.hasattr("__fspath__")? {
        let path: PathBuf = private_key.extract()?;
        if !path.is_file() {
            let what = if path.exists() {
                "names something that is not a file (a directory?)"
            } else {
                "names no file"
            };
            return Err(invalid(format!(
                "the path given as private_key {what}{}; {GIVE}",
                relative_hint(&path)
            )));
        }
        return read(&path);
    }
    Err(pyo3::exceptions::PyTypeError::new_err(
        "private_key must be the key's PEM text (str or bytes), its DER (bytes), or the path of the key file (str or os.PathLike)",
    ))
}

/// What to give instead.
const GIVE: &str = "pass the path of the key file downloaded from the app's Credentials tab (icr_private_key.pem), \
                    or the key's PEM text";

/// `text` is no key (`error` says why): the key file it names, if it is one line naming a file;
/// else a "no such file" error when it reads as a path, or `error`.
fn from_path(text: &str, error: KeyError) -> PyResult<AppKey> {
    let trimmed = text.trim();
    if trimmed.is_empty() || trimmed.contains(['\n', '\r']) || trimmed.contains("-----BEGIN") {
        return Err(key_error(error));
    }
    let path = Path::new(trimmed);
    if path.is_file() {
        return read(path);
    }
    match error {
        KeyError::Unrecognised { chars } if looks_like_path(trimmed) => {
            let what = if path.exists() {
                "names something that is not a file (a directory?)"
            } else {
                "looks like a file path, but there is no such file"
            };
            Err(invalid(format!(
                "private_key {what} ({chars} characters, not shown){}; {GIVE}",
                relative_hint(path)
            )))
        }
        other => Err(key_error(other)),
    }
}

/// Whether a value that is no key reads as a file's path (as the CLI's settings read it): one
/// line with a `.` (an extension, `./`), a backslash, a leading `~`, or a `/` where base64 would
/// not have one (other characters beside it, or too short to be a key's base64).
fn looks_like_path(value: &str) -> bool {
    let base64_only = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='));
    value.contains(['.', '\\']) || value.starts_with('~') || (value.contains('/') && (!base64_only || value.len() < 64))
}

fn relative_hint(path: &Path) -> &'static str {
    if path.to_str().is_some_and(|p| p.starts_with('~')) {
        "; a leading `~` is not expanded: give the full path (os.path.expanduser)"
    } else if path.is_relative() {
        "; a relative path is read from the current directory"
    } else {
        ""
    }
}

/// The key in the file at `path` (PEM, DER, or the file base64-encoded); its bytes are wiped.
fn read(path: &Path) -> PyResult<AppKey> {
    let cannot = |e: std::io::Error| {
        invalid(format!(
            "the key file named by private_key cannot be read ({}); check its permissions, or pass the key's PEM text",
            e.kind()
        ))
    };
    let file = std::fs::File::open(path).map_err(cannot)?;
    let mut bytes = Zeroizing::new(Vec::new());
    file.take(MAX_KEY_FILE + 1).read_to_end(&mut bytes).map_err(cannot)?;
    if bytes.len() as u64 > MAX_KEY_FILE {
        return Err(invalid(format!(
            "the file named by private_key is over {} KiB, far too large to be a private key; {GIVE}",
            MAX_KEY_FILE / 1024
        )));
    }
    let parsed = match AppKey::parse(&bytes) {
        // A file holding the key base64-encoded.
        Err(KeyError::NotAKey) => match std::str::from_utf8(&bytes) {
            Ok(text) => AppKey::from_text(text),
            Err(_) => Err(KeyError::NotAKey),
        },
        other => other,
    };
    parsed.map_err(|e| invalid(format!("the file named by private_key holds no usable key: {e}")))
}

fn key_error(error: KeyError) -> PyErr {
    to_py(CoreError::Key(error))
}

/// An `InvalidKeyError` worded as the core's key errors are (`private key: ...`).
fn invalid(message: String) -> PyErr {
    InvalidKeyError::new_err(format!("private key: {message}"))
}
