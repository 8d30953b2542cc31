//! # icr-app-settings
//!
//! Settings shared by the `icr-app` CLI, the examples and your programs: the `ICR_*` environment
//! variable names, `--flag value` settings that fall back to them, and loading the app's private
//! key given as a path, as its PEM text, or base64-encoded (as CI secret stores hold it). It reads
//! files and the environment so that the core never does.
//!
//! ```
//! use icr_app_settings::Settings;
//! # let dir = std::env::temp_dir().join(format!("icr-app-settings-doc-{}", std::process::id()));
//! # std::fs::create_dir_all(&dir)?;
//! # let key_file = dir.join("icr_private_key.pem");
//! # std::fs::write(&key_file, icr_app_testkit::DEMO_PRIVATE_KEY_PEM)?;
//! # let key_file = key_file.to_str().unwrap();
//!
//! // In your program: `Settings::from_args(std::env::args().skip(1))`. Each flag not given falls
//! // back to its variable (ICR_BASE_URL, ICR_APP_ID, ICR_PRIVATE_KEY, ICR_INSTALLATION_ID,
//! // ICR_ORGANIZATION_ID).
//! let args = ["--app-id", "my-app", "--private-key", key_file, "--installation", "inst-1"];
//! let settings = Settings::from_args(args.map(String::from))?;
//! let app = settings.app(0)?; // an icr_app_core::App, its key loaded, ready for a client
//! let installation = settings.installation()?;
//! assert_eq!((app.app_id().as_str(), installation.as_str()), ("my-app", "inst-1"));
//! # std::fs::remove_dir_all(&dir)?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! A program that acts for an organization, whatever its installation's id (which changes when
//! the organization reinstalls the app), takes `--organization ORG` (or `ICR_ORGANIZATION_ID`)
//! instead, and [`Settings::scope`] gives the one that was set:
//!
//! ```
//! use icr_app_core::TokenScope;
//! use icr_app_settings::Settings;
//!
//! let settings = Settings::from_args(["--organization", "org-1"].map(String::from))?;
//! let TokenScope::Organization(org) = settings.scope()? else { unreachable!() };
//! assert_eq!(org.as_str(), "org-1");
//! // Both flags at once name the installation twice: an error.
//! assert!(Settings::from_args(["--organization", "a", "--installation", "b"].map(String::from)).is_err());
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! `--help` (or `-h`) among the flags prints [`usage`] and exits with status 0; use
//! [`Settings::parse_args`] to handle it yourself.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use zeroize::Zeroizing;

use icr_app_core::{AppKey, Error, KeyError};

/// The registry's base URL.
pub const BASE_URL: &str = "ICR_BASE_URL";
/// The app id.
pub const APP_ID: &str = "ICR_APP_ID";
/// The private key: a path to its PEM or DER file, the PEM itself (as pasted into `.env`), or the
/// base64 encoding of the PEM or DER key (as CI secret stores hold it).
pub const PRIVATE_KEY: &str = "ICR_PRIVATE_KEY";
/// An installation id.
pub const INSTALLATION_ID: &str = "ICR_INSTALLATION_ID";
/// An organization id: act as the app's installation on that organization, whatever its id
/// (used when no installation id is given).
pub const ORGANIZATION_ID: &str = "ICR_ORGANIZATION_ID";
/// The `x-icr-api-version` to send.
pub const API_VERSION: &str = "ICR_API_VERSION";
/// The proxy every request goes through (`http://[user:password@]host:port`), in place of the
/// environment's `HTTPS_PROXY`, `HTTP_PROXY` and `ALL_PROXY` (`NO_PROXY` still applies).
pub const PROXY: &str = "ICR_PROXY";
/// A PEM file of CA certificates trusted on top of the built-in roots (a private or corporate
/// CA), for the registry, an `https://` proxy and `rediss://`.
pub const CA_FILE: &str = "ICR_CA_FILE";
/// Every variable [`Settings`] and the `icr-app` CLI's connection settings read (e.g. to clear
/// them around a child process in tests).
pub const VARIABLES: [&str; 8] = [
    BASE_URL,
    APP_ID,
    PRIVATE_KEY,
    INSTALLATION_ID,
    ORGANIZATION_ID,
    API_VERSION,
    PROXY,
    CA_FILE,
];

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
            format!(
                "none given; pass --private-key PATH or set {PRIVATE_KEY} to the key file's path, its PEM text or its base64"
            ),
        ));
    }
    let path = std::path::Path::new(trimmed);
    if !path.is_file() {
        return AppKey::from_text(value).map_err(|e| match e {
            KeyError::Unrecognised { chars } if looks_like_path(trimmed) => not_a_key_file(path, chars),
            other => other.into(),
        });
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

/// Whether a value that is no key reads as a file's path: one line with a `.` (an extension,
/// `./`), a backslash, a leading `~`, or a `/` where base64 would not have one (other characters
/// beside it, or too short to be a key's base64, which runs to over a thousand characters).
fn looks_like_path(value: &str) -> bool {
    let base64_only = value
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '/' | '='));
    !value.contains(['\n', '\r'])
        && (value.contains(['.', '\\'])
            || value.starts_with('~')
            || (value.contains('/') && (!base64_only || value.len() < 64)))
}

/// A path-like key setting that names no file: "no such file" said plainly, with the setting's
/// name and how to fix it, never the path (the value may be something else pasted by mistake).
fn not_a_key_file(path: &std::path::Path, chars: usize) -> Error {
    let what = if path.exists() {
        "names something that is not a file (a directory?)"
    } else {
        "looks like a file path, but there is no such file"
    };
    let mut hint = String::new();
    if path.to_str().is_some_and(|p| p.starts_with('~')) {
        hint.push_str("; a leading `~` is not expanded here: give the full path");
    } else if path.is_relative() {
        hint.push_str("; a relative path is read from the directory the program runs in");
    }
    Error::config(
        "private key",
        format!(
            "--private-key / {PRIVATE_KEY} {what} ({chars} characters, not shown){hint}; set it to the path of the key file downloaded from the app's Credentials tab (icr_private_key.pem), or to the key's PEM text or base64"
        ),
    )
}

/// A key file's problem, saying that it came from the file (never its contents or its name).
fn key_file_error(e: &KeyError) -> Error {
    Error::config("private key", format!("the key file given holds no usable key: {e}"))
}

/// The flags, their environment variables and what each holds, for [`usage`].
const FLAGS: [(&str, &str, &str); 6] = [
    (
        "--base-url URL",
        BASE_URL,
        "the registry's base URL (default https://api.carbonregistry.com)",
    ),
    ("--app-id ID", APP_ID, "the App ID on the app's dashboard"),
    (
        "--private-key KEY",
        PRIVATE_KEY,
        "the private key: its PEM or DER file's path, its PEM text, or its base64",
    ),
    ("--installation ID", INSTALLATION_ID, "the installation to act as"),
    (
        "--organization ID",
        ORGANIZATION_ID,
        "or the organization whose installation to act as, whatever its id",
    ),
    ("--api-version VERSION", API_VERSION, "the x-icr-api-version to send"),
];

/// The usage of a program whose flags are [`Settings`]'s, `program` being its name: what
/// `--help` prints.
pub fn usage(program: &str) -> String {
    let flags: Vec<&str> = FLAGS.iter().map(|(flag, ..)| *flag).collect();
    let mut text = format!("Usage: {program} [{}]\n\nOptions:\n", flags.join("] ["));
    for (flag, var, what) in FLAGS {
        text.push_str(&format!("  {flag:<23} {what} [env: {var}]\n"));
    }
    text.push_str("  -h, --help              print this help\n");
    text
}

/// This program's name, for [`usage`].
fn program_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|arg0| {
            let path = std::path::PathBuf::from(arg0);
            Some(path.file_stem()?.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "PROGRAM".to_owned())
}

/// What a command line asks for: see [`Settings::parse_args`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parsed {
    /// Run with these settings.
    Run(Settings),
    /// `--help` or `-h`: show [`usage`] and do nothing else.
    Help,
}

/// Settings given as `--flag value` pairs, each falling back to its environment variable:
/// `--base-url`/`ICR_BASE_URL`, `--app-id`/`ICR_APP_ID`, `--private-key`/`ICR_PRIVATE_KEY`,
/// `--installation`/`ICR_INSTALLATION_ID`, `--organization`/`ICR_ORGANIZATION_ID`,
/// `--api-version`/`ICR_API_VERSION`.
///
/// `--installation` and `--organization` both say whom to act as: giving both flags is an error.
/// A flag given wins over both variables; with neither flag, both variables are read, and
/// [`Settings::scope`] prefers the installation.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Settings {
    /// The base URL.
    pub base_url: Option<String>,
    /// The app id.
    pub app_id: Option<String>,
    /// The private key as given: a path to its PEM or DER file, the PEM itself, or its base64.
    /// Held in a buffer wiped on drop from the moment it is read (the process's argv and
    /// environment keep their own copies).
    pub private_key: Option<Zeroizing<String>>,
    /// An installation id.
    pub installation: Option<String>,
    /// An organization id: act as the app's installation there.
    pub organization: Option<String>,
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
            .field("organization", &self.organization)
            .field("api_version", &self.api_version)
            .finish()
    }
}

impl Settings {
    /// Reads the flags from `args` (without the program name), then fills what is missing from
    /// the environment.
    ///
    /// `--help` or `-h` in place of a flag prints [`usage`] (with this program's name) to
    /// standard output and exits the process with status 0, as a command-line program does; use
    /// [`Settings::parse_args`] to handle it yourself.
    pub fn from_args(args: impl IntoIterator<Item = String>) -> Result<Self, Error> {
        match Self::parse_args(args)? {
            Parsed::Run(settings) => Ok(settings),
            Parsed::Help => {
                use std::io::Write as _;
                let mut stdout = std::io::stdout().lock();
                let _ = stdout.write_all(usage(&program_name()).as_bytes());
                let _ = stdout.flush();
                std::process::exit(0)
            }
        }
    }

    /// As [`Settings::from_args`], but `--help` or `-h` is returned as [`Parsed::Help`] instead
    /// of printing the usage and exiting. Nothing is read from the environment then.
    pub fn parse_args(args: impl IntoIterator<Item = String>) -> Result<Parsed, Error> {
        let mut s = Self::default();
        let mut args = args.into_iter();
        while let Some(flag) = args.next() {
            let value = |args: &mut dyn Iterator<Item = String>| {
                args.next()
                    .ok_or_else(|| Error::config("arguments", format!("{flag} needs a value")))
            };
            match flag.as_str() {
                "-h" | "--help" => return Ok(Parsed::Help),
                // Straight into a buffer wiped on drop.
                "--private-key" => s.private_key = Some(Zeroizing::new(value(&mut args)?)),
                "--base-url" => s.base_url = Some(value(&mut args)?),
                "--app-id" => s.app_id = Some(value(&mut args)?),
                "--installation" => s.installation = Some(value(&mut args)?),
                "--organization" => s.organization = Some(value(&mut args)?),
                "--api-version" => s.api_version = Some(value(&mut args)?),
                other => {
                    return Err(Error::config(
                        "arguments",
                        format!(
                            "unknown flag `{}`; use --base-url, --app-id, --private-key, --installation, --organization, --api-version, or --help",
                            icr_app_core::excerpt(other, 40)
                        ),
                    ));
                }
            }
        }
        if s.installation.is_some() && s.organization.is_some() {
            return Err(Error::config(
                "arguments",
                "--installation and --organization both say whom to act as; give one of them",
            ));
        }
        // A flag naming whom to act as wins over both variables.
        let act_as_given = s.installation.is_some() || s.organization.is_some();
        if s.private_key.is_none() {
            s.private_key = std::env::var(PRIVATE_KEY)
                .ok()
                .map(Zeroizing::new)
                .filter(|v| !v.is_empty());
        }
        for (slot, var, read) in [
            (&mut s.base_url, BASE_URL, true),
            (&mut s.app_id, APP_ID, true),
            (&mut s.installation, INSTALLATION_ID, !act_as_given),
            (&mut s.organization, ORGANIZATION_ID, !act_as_given),
            (&mut s.api_version, API_VERSION, true),
        ] {
            if read && slot.is_none() {
                *slot = std::env::var(var).ok().filter(|v| !v.is_empty());
            }
        }
        Ok(Parsed::Run(s))
    }

    /// Builds the [`App`](https://docs.rs/icr-app-core/latest/icr_app_core/struct.App.html), loading the key; `seed` feeds the back-off jitter.
    pub fn app(&self, seed: u64) -> Result<icr_app_core::App, Error> {
        let key = load_private_key(self.private_key.as_deref().map_or("", String::as_str))?;
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

    /// The organization id.
    pub fn organization(&self) -> Result<icr_app_core::OrganizationId, Error> {
        let id = self.organization.clone().ok_or_else(|| {
            Error::config(
                "organization id",
                format!("none given; pass --organization or set {ORGANIZATION_ID}"),
            )
        })?;
        icr_app_core::OrganizationId::new(id)
    }

    /// Whom to act as: the installation when one is set, else the organization
    /// ([`TokenScope::Organization`](icr_app_core::TokenScope::Organization): its installation,
    /// looked up once and followed across reinstalls).
    pub fn scope(&self) -> Result<icr_app_core::TokenScope, Error> {
        match (&self.installation, &self.organization) {
            (Some(_), _) => Ok(icr_app_core::TokenScope::Installation(self.installation()?)),
            (None, Some(_)) => Ok(icr_app_core::TokenScope::Organization(self.organization()?)),
            (None, None) => Err(Error::config(
                "installation id",
                format!(
                    "none given; pass --installation (or set {INSTALLATION_ID}), or --organization (or set {ORGANIZATION_ID})"
                ),
            )),
        }
    }
}
