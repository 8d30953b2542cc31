//! # icr-app-settings
//!
//! Settings shared by the `icr-app` CLI, the examples and your programs: the `ICR_*` environment
//! variable names, `--flag value` settings that fall back to them, and loading the app's private
//! key given as a path, as its PEM text, or base64-encoded (as CI secret stores hold it).
//!
//! This crate reads files and the environment so that the core never does.
//!
//! ```no_run
//! // ICR_APP_ID, ICR_PRIVATE_KEY, ICR_BASE_URL (optional), ICR_INSTALLATION_ID from the environment.
//! let settings = icr_app_settings::Settings::from_args(std::env::args().skip(1))?;
//! let app = settings.app(0)?; // an icr_app_core::App, ready for a client
//! let installation = settings.installation()?;
//! # let _ = (app, installation);
//! # Ok::<(), icr_app_core::Error>(())
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use zeroize::Zeroizing;

use icr_app_core::{AppKey, Error, KeyError};

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

/// Loads a private key from `value`, in any of three forms: the PEM itself (literal `\n`
/// escapes allowed), the base64 encoding of a PEM or DER key (as CI secret stores hold it), or a
/// path to a PEM or DER file.
///
/// No message ever quotes `value` (it may be a key, or a token pasted by mistake): an error says
/// what was expected and what was seen (its length, "a PEM body without its BEGIN/END lines", "an
/// access token, not a key"). The file's bytes are wiped once parsed.
pub fn load_private_key(value: &str) -> Result<AppKey, Error> {
    if value.contains("-----BEGIN") {
        return Ok(AppKey::from_pem(value)?);
    }
    let trimmed = value.trim();
    if trimmed.is_empty() {
        return Err(Error::config(
            "private key",
            format!("none given; pass --private-key PATH or set {PRIVATE_KEY} to the key file's path or its PEM text"),
        ));
    }
    let path = std::path::Path::new(trimmed);
    if !path.is_file() {
        return Ok(AppKey::from_text(value)?);
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| {
        Error::config(
            "private key",
            format!(
                "the key file given cannot be read ({}); check its permissions, or pass the PEM text itself",
                e.kind()
            ),
        )
    })?);
    match AppKey::parse(&bytes) {
        // A file holding the key base64-encoded.
        Err(KeyError::NotAKey) => match std::str::from_utf8(&bytes) {
            Ok(text) => AppKey::from_text(text).map_err(|e| key_file_error(&e)),
            Err(_) => Err(key_file_error(&KeyError::NotAKey)),
        },
        other => other.map_err(|e| key_file_error(&e)),
    }
}

/// A key file's problem, saying that it came from the file (never its contents or its name).
fn key_file_error(e: &KeyError) -> Error {
    Error::config("private key", format!("the key file given holds no usable key: {e}"))
}

/// Settings given as `--flag value` pairs, each falling back to its environment variable:
/// `--base-url`/`ICR_BASE_URL`, `--app-id`/`ICR_APP_ID`, `--private-key`/`ICR_PRIVATE_KEY`,
/// `--installation`/`ICR_INSTALLATION_ID`, `--api-version`/`ICR_API_VERSION`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// The base URL.
    pub base_url: Option<String>,
    /// The app id.
    pub app_id: Option<String>,
    /// The private key: a path or the PEM itself.
    pub private_key: Option<String>,
    /// An installation id.
    pub installation: Option<String>,
    /// The API version.
    pub api_version: Option<String>,
}

impl std::fmt::Debug for Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Settings")
            .field("base_url", &self.base_url)
            .field("app_id", &self.app_id)
            .field("private_key", &self.private_key.as_ref().map(|_| "[redacted]"))
            .field("installation", &self.installation)
            .field("api_version", &self.api_version)
            .finish()
    }
}

impl Settings {
    /// Reads the flags from `args` (without the program name), then fills what is missing from
    /// the environment.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Self, Error> {
        let mut s = Self::default();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let slot = match flag.as_str() {
                "--base-url" => &mut s.base_url,
                "--app-id" => &mut s.app_id,
                "--private-key" => &mut s.private_key,
                "--installation" => &mut s.installation,
                "--api-version" => &mut s.api_version,
                other => {
                    return Err(Error::config(
                        "arguments",
                        format!(
                            "unknown flag `{}`; use --base-url, --app-id, --private-key, --installation, --api-version",
                            icr_app_core::excerpt(other, 40)
                        ),
                    ));
                }
            };
            *slot = Some(
                args.next()
                    .ok_or_else(|| Error::config("arguments", format!("{flag} needs a value")))?,
            );
        }
        for (slot, var) in [
            (&mut s.base_url, BASE_URL),
            (&mut s.app_id, APP_ID),
            (&mut s.private_key, PRIVATE_KEY),
            (&mut s.installation, INSTALLATION_ID),
            (&mut s.api_version, API_VERSION),
        ] {
            if slot.is_none() {
                *slot = std::env::var(var).ok().filter(|v| !v.is_empty());
            }
        }
        Ok(s)
    }

    /// Builds the [`App`](https://docs.rs/icr-app-core/latest/icr_app_core/struct.App.html), loading the key; `seed` feeds the back-off jitter.
    pub fn app(&self, seed: u64) -> Result<icr_app_core::App, Error> {
        let key = load_private_key(self.private_key.as_deref().unwrap_or(""))?;
        let app_id = self.app_id.clone().ok_or_else(|| {
            Error::config(
                "app id",
                format!("none given; pass --app-id or set {APP_ID} to the App ID on the app's dashboard"),
            )
        })?;
        let mut builder = icr_app_core::App::builder(app_id, key).seed(seed);
        if let Some(url) = &self.base_url {
            builder = builder.base_url(url.clone());
        }
        if let Some(v) = &self.api_version {
            builder = builder.api_version(v.clone());
        }
        builder.build()
    }

    /// The installation id.
    pub fn installation(&self) -> Result<icr_app_core::InstallationId, Error> {
        let id = self.installation.clone().ok_or_else(|| {
            Error::config(
                "installation id",
                format!("none given; pass --installation or set {INSTALLATION_ID}"),
            )
        })?;
        icr_app_core::InstallationId::new(id)
    }
}
