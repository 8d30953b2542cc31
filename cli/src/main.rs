//! `icr-app`: the command-line tool for ICR apps. See `icr-app --help`.
#![forbid(unsafe_code)]

mod demo;
mod logging;
mod mock;
mod out;

use std::ffi::OsString;
use std::io::{IsTerminal as _, Read as _, Write as _};
use std::process::ExitCode;
use std::time::Duration;

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Args, Parser, Subcommand};
use http::Method;
use icr_app_core::TransportErrorKind;
use icr_app_core::webhook::{self, WebhookSecret};
use icr_app_core::{App, AppKey, Error, Installation, InstallationId, OrganizationId, TokenScope};
use icr_app_driver::now;
use icr_app_redis::RedisStore;
use icr_app_settings as env;
use icr_app_ureq::{Client, UreqTransport};
use out::outln;
use zeroize::Zeroizing;

/// The environment variable `revoke` reads the token from.
const TOKEN_ENV: &str = "ICR_TOKEN";
/// The environment variable `verify-webhook` reads the secret from.
const WEBHOOK_SECRET_ENV: &str = "ICR_WEBHOOK_SECRET";
/// The environment variable for `--timeout`.
const TIMEOUT_ENV: &str = "ICR_TIMEOUT";
const REDIS_ENV: &str = "ICR_REDIS_URL";
/// The environment variable `--redis-timeout` falls back to.
const REDIS_TIMEOUT_ENV: &str = "ICR_REDIS_TIMEOUT";
/// `--timeout`'s default.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);

const EXIT_CODES: &str = "\
Settings may also be given before the subcommand (icr-app --app-id ID installations).

Exit codes:
  0  success
  2  anything wrong in the command line or the settings: a missing or invalid app id, private
     key, base URL, method, path or id, or plain http:// to a remote host without
     --allow-insecure-http
  3  refused by the registry (401 or 403)
  4  not found (404), or the app is not installed on the organization given (--organization)
  5  network or server failure (no answer, timeout, 429, 5xx)
  1  anything else (e.g. a webhook delivery that does not verify)
  141  standard output closed before all was written (`icr-app installations | head -1`):
       the command stops quietly, with the status a shell gives a program stopped by SIGPIPE";

/// Command-line tool for ICR apps (International Carbon Registry, carbonregistry.com).
#[derive(Parser, Debug)]
#[command(name = "icr-app", version, about, long_about = None, after_help = EXIT_CODES)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Reads a secret flag (a PEM, a webhook secret) straight into a buffer wiped on drop.
///
/// clap's own parsed copy of the raw argument cannot be avoided (nor can the process's argv):
/// this moves the value into `Zeroizing` as soon as clap hands it over, so every copy the CLI
/// itself makes is wiped.
fn secret_value(raw: &str) -> Result<Zeroizing<String>, std::convert::Infallible> {
    Ok(Zeroizing::new(raw.to_owned()))
}

// Settings fall back to their environment variables here rather than through clap's `env`:
// clap counts a value from the environment as given on the command line, so its usage lines
// showed `--installation <ID>` as a flag to pass when ICR_INSTALLATION_ID had set it, and
// ICR_INSTALLATION_ID conflicted with `token --app`.

/// An environment variable's value; unset, empty or not UTF-8 is `None`.
fn env_value(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// A secret environment variable's value, wiped on drop from the moment it is read (the
/// process environment keeps its own copy).
fn env_secret(name: &str) -> Option<Zeroizing<String>> {
    std::env::var(name).ok().map(Zeroizing::new).filter(|v| !v.is_empty())
}

/// `--port PORT`: 0 to 65535. clap's own parser would quote the value in its message.
fn parse_port(raw: &str) -> Result<u16, String> {
    raw.trim()
        .parse()
        .map_err(|_| "expected a port number from 0 to 65535 (0 picks a free one)".to_owned())
}

/// `--timeout SECONDS`: more than 0, at most an hour; fractions allowed.
fn parse_timeout(raw: &str) -> Result<Duration, String> {
    let secs: f64 = raw
        .trim()
        .parse()
        .map_err(|_| "expected a number of seconds, e.g. 30 or 2.5".to_owned())?;
    if !(secs.is_finite() && secs > 0.0 && secs <= 3600.0) {
        return Err("must be more than 0 and at most 3600 seconds".to_owned());
    }
    Ok(Duration::from_secs_f64(secs))
}

#[derive(Args, Debug)]
struct KeyArgs {
    /// The private key: a path to its PEM or DER file, the PEM itself, or its base64 [env: ICR_PRIVATE_KEY]
    // Hyphen values allowed: a PEM starts with `-----BEGIN`, and clap would otherwise refuse it
    // as an unknown flag, quoting it in the error.
    #[arg(long, value_name = "PATH|PEM", value_parser = secret_value, allow_hyphen_values = true)]
    private_key: Option<Zeroizing<String>>,
}

impl KeyArgs {
    fn value(&self) -> Option<Zeroizing<String>> {
        self.private_key.clone().or_else(|| env_secret(env::PRIVATE_KEY))
    }
}

#[derive(Args, Debug)]
struct AppArgs {
    /// The app id (from the app's dashboard) [env: ICR_APP_ID]
    #[arg(long, value_name = "ID")]
    app_id: Option<String>,
    #[command(flatten)]
    key: KeyArgs,
}

/// The settings of every command that talks to the registry.
#[derive(Args, Debug)]
struct ApiArgs {
    #[command(flatten)]
    app: AppArgs,
    #[arg(
        long,
        value_name = "URL",
        help = "The registry's base URL [env: ICR_BASE_URL] [default: https://api.carbonregistry.com]"
    )]
    base_url: Option<String>,
    /// The `x-icr-api-version` to send [env: ICR_API_VERSION] [default: 2023-06-16]
    #[arg(long, value_name = "VERSION")]
    api_version: Option<String>,
    /// The longest one request may take, in seconds; failed requests are retried on top
    /// [env: ICR_TIMEOUT] [default: 30]
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeout)]
    timeout: Option<Duration>,
    /// Allow credentials over plain http:// to hosts other than loopback.
    #[arg(long)]
    allow_insecure_http: bool,
    // The help in an attribute: rustdoc would read the URL's brackets as links.
    #[arg(
        long,
        value_name = "URL",
        value_parser = secret_value,
        help = "Share tokens with other processes through this Redis (redis://[user:password@]host[:port][/db], rediss:// for TLS; a Redis Cluster: redis+cluster://[user:password@]host:port[,host:port...]; a primary under Sentinel: redis+sentinel://[user:password@]host:port[,host:port...]/MASTER_NAME[/DB]; rediss+cluster://, rediss+sentinel:// for TLS): one mint per installation between them. Prefer the variable when the URL holds a password (a flag is visible to every process of the machine) [env: ICR_REDIS_URL]"
    )]
    redis: Option<Zeroizing<String>>,
    #[arg(
        long,
        value_name = "URL",
        value_parser = secret_value,
        help = "Send requests through this proxy (http://host:port, http://user:password@host:port) instead of the environment's HTTPS_PROXY, HTTP_PROXY and ALL_PROXY (NO_PROXY still applies; loopback registries are reached directly). Prefer the variable when the URL holds a password [env: ICR_PROXY]"
    )]
    proxy: Option<Zeroizing<String>>,
    /// Trust the CA certificates of this PEM file too (a private or corporate CA), for the
    /// registry, an https:// proxy and rediss://; SSL_CERT_FILE is honoured as well [env: ICR_CA_FILE]
    #[arg(long, value_name = "PATH")]
    ca_file: Option<std::path::PathBuf>,
    /// The longest one call to the Redis of --redis may take, in seconds, connecting included;
    /// past it the command mints on its own [env: ICR_REDIS_TIMEOUT] [default: 0.3]
    #[arg(long, value_name = "SECONDS", value_parser = parse_timeout)]
    redis_timeout: Option<Duration>,
    /// Show each request's method, path, status and time, and the core's spans, on stderr (RUST_LOG sets finer filters).
    #[arg(short, long)]
    verbose: bool,
}

impl ApiArgs {
    fn base_url(&self) -> String {
        self.base_url
            .clone()
            .or_else(|| env_value(env::BASE_URL))
            .unwrap_or_else(|| icr_app_core::api::DEFAULT_BASE_URL.to_owned())
    }

    fn api_version(&self) -> String {
        self.api_version
            .clone()
            .or_else(|| env_value(env::API_VERSION))
            .unwrap_or_else(|| icr_app_core::api::DEFAULT_API_VERSION.to_owned())
    }

    /// The shared store, when `--redis` or ICR_REDIS_URL names one. Connects lazily: a Redis
    /// that is down costs nothing but the sharing.
    fn store(&self) -> Result<Option<RedisStore>, Failure> {
        let url = self.redis.clone().or_else(|| env_secret(REDIS_ENV));
        let Some(url) = url else { return Ok(None) };
        let timeout = match (self.redis_timeout, env_value(REDIS_TIMEOUT_ENV)) {
            (Some(t), _) => t,
            (None, Some(v)) => {
                parse_timeout(&v).map_err(|e| Failure::Usage(format!("invalid {REDIS_TIMEOUT_ENV}: {e}")))?
            }
            (None, None) => icr_app_redis::DEFAULT_TIMEOUT,
        };
        let store = RedisStore::connect(&url)?.timeout(timeout);
        // A Redis over TLS whose certificate the private CA signed: that CA is the one trusted.
        match self.ca_file() {
            Some(path) if store.is_tls() => {
                let pem = std::fs::read(&path).map_err(|e| {
                    Failure::Usage(format!(
                        "cannot read the CA file {} ({e}): give --ca-file (or {}) the path of a PEM file of CA certificates",
                        path.display(),
                        env::CA_FILE
                    ))
                })?;
                Ok(Some(store.tls_root_certificates(&pem)?))
            }
            _ => Ok(Some(store)),
        }
    }

    /// `--proxy`, else ICR_PROXY; `None`: the environment's proxy variables.
    fn proxy(&self) -> Option<Zeroizing<String>> {
        self.proxy.clone().or_else(|| env_secret(env::PROXY))
    }

    /// `--ca-file`, else ICR_CA_FILE.
    fn ca_file(&self) -> Option<std::path::PathBuf> {
        self.ca_file
            .clone()
            .or_else(|| std::env::var_os(env::CA_FILE).filter(|v| !v.is_empty()).map(Into::into))
    }

    /// Whether a shared store is named (`--redis` or ICR_REDIS_URL).
    fn has_store(&self) -> bool {
        self.redis.is_some() || env_secret(REDIS_ENV).is_some()
    }

    fn timeout(&self) -> Result<Duration, Failure> {
        match (self.timeout, env_value(TIMEOUT_ENV)) {
            (Some(t), _) => Ok(t),
            (None, Some(v)) => parse_timeout(&v).map_err(|e| Failure::Usage(format!("invalid {TIMEOUT_ENV}: {e}"))),
            (None, None) => Ok(DEFAULT_TIMEOUT),
        }
    }
}

#[derive(Args, Debug)]
struct JsonArg {
    /// Print JSON instead of text; errors go to stderr as one JSON object.
    #[arg(long)]
    json: bool,
}

/// For commands with no JSON form: `--json` is refused with a usage error rather than ignored.
#[derive(Args, Debug)]
struct NoJson {
    #[arg(long, hide = true)]
    json: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Walk through the whole flow against an embedded fake registry (no flags, files or network).
    Demo {
        /// Show each request's method, path, status and time, and the core's spans, on stderr.
        #[arg(short, long)]
        verbose: bool,
        #[command(flatten)]
        no_json: NoJson,
    },
    /// Print an app JWT.
    Jwt {
        #[command(flatten)]
        app: AppArgs,
        #[command(flatten)]
        no_json: NoJson,
    },
    /// Mint and print an installation token (--installation ID, or --organization ORG for the
    /// app's installation on that organization) or an app token (--app).
    ///
    /// Prints the token alone on standard output (for `> token.txt` or `$(icr-app token ...)`),
    /// and its expiry and permissions on standard error; with --json, all three as one object
    /// on standard output.
    Token {
        /// The installation to mint for [env: ICR_INSTALLATION_ID]
        #[arg(long, value_name = "ID", conflicts_with = "app")]
        installation: Option<String>,
        /// Or the organization whose installation to mint for, whatever its id (it changes when
        /// the organization reinstalls the app) [env: ICR_ORGANIZATION_ID]
        #[arg(long, value_name = "ORG", conflicts_with = "app")]
        organization: Option<String>,
        /// Mint an app access token instead.
        #[arg(long)]
        app: bool,
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// List every installation (all pages).
    Installations {
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Show one installation: by its id, or the app's installation on an organization
    /// (--organization ORG: `GET /app/organizations/ORG/installation`).
    Installation {
        /// The installation id [env: ICR_INSTALLATION_ID]
        id: Option<String>,
        /// Or the organization whose installation to show, whatever its id [env: ICR_ORGANIZATION_ID]
        #[arg(long, value_name = "ORG")]
        organization: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Revoke an access token, read from standard input or ICR_TOKEN.
    ///
    /// The token is never taken from the command line, where every process on the machine can
    /// read it (/proc/*/cmdline). Pass `-` to read it from standard input; with no argument it
    /// comes from the ICR_TOKEN environment variable, else from standard input when that is not
    /// a terminal.
    ///
    /// With a shared store (--redis), the token's shared entry goes too, so no other process
    /// reads it back: the entry of --installation (or of the installation on --organization)
    /// when given, else of every installation of the app (listed with the app's JWT). Only an
    /// entry that holds this very token is deleted (compared by the token's keyed id, which
    /// every entry starts with), never a newer one.
    Revoke {
        /// `-`: read the token from standard input.
        #[arg(value_name = "-")]
        from: Option<String>,
        /// The installation the token is for (its shared entry is deleted with it) [env: ICR_INSTALLATION_ID]
        #[arg(long, value_name = "ID")]
        installation: Option<String>,
        /// Or the organization whose installation the token is for [env: ICR_ORGANIZATION_ID]
        #[arg(long, value_name = "ORG")]
        organization: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Send any API request as an installation and print the response body.
    ///
    /// The body is pretty-printed when it is JSON and standard output is a terminal, and
    /// printed exactly as received otherwise.
    Call {
        /// GET, POST, PUT, PATCH or DELETE.
        method: String,
        /// The path and query, starting with `/`, e.g. /organizations/ID.
        path: String,
        /// The installation to act as [env: ICR_INSTALLATION_ID]
        #[arg(long, value_name = "ID")]
        installation: Option<String>,
        /// Or the organization whose installation to act as, whatever its id (it changes when
        /// the organization reinstalls the app) [env: ICR_ORGANIZATION_ID]
        #[arg(long, value_name = "ORG")]
        organization: Option<String>,
        /// A JSON request body.
        #[arg(long, value_name = "JSON")]
        data: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Verify a webhook delivery read from stdin and print the decoded event.
    VerifyWebhook {
        /// The webhook secret set on the app's General tab [env: ICR_WEBHOOK_SECRET]
        #[arg(long, value_parser = secret_value, allow_hyphen_values = true)]
        secret: Option<Zeroizing<String>>,
        /// The x-icr-signature-256 header value.
        #[arg(long, value_name = "sha256=HEX")]
        signature: Option<String>,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Print the private key's SHA-256 fingerprint (compare it with the Credentials tab).
    Fingerprint {
        #[command(flatten)]
        key: KeyArgs,
        #[command(flatten)]
        out: JsonArg,
    },
    /// Serve the fake registry for local development until Ctrl-C or SIGTERM.
    ///
    /// Prints its URL, the demo app id, the demo key's path, the installation ids, and an
    /// `export` line to paste in another terminal, setting ICR_BASE_URL, ICR_APP_ID,
    /// ICR_PRIVATE_KEY, ICR_INSTALLATION_ID (the first installation) and ICR_ORGANIZATION_ID
    /// (its organization): the settings the CLI, the examples and the quick starts read.
    ///
    /// The demo key is written to a new private directory (mode 0700, the file 0600), whose
    /// path is printed; both are removed when the mock stops.
    Mock {
        /// The port to listen on (127.0.0.1); 0 picks a free one.
        #[arg(long, value_name = "PORT", default_value_t = 0, value_parser = parse_port)]
        port: u16,
        #[command(flatten)]
        no_json: NoJson,
    },
}

impl Command {
    fn name(&self) -> &'static str {
        match self {
            Command::Demo { .. } => "demo",
            Command::Jwt { .. } => "jwt",
            Command::Token { .. } => "token",
            Command::Installations { .. } => "installations",
            Command::Installation { .. } => "installation",
            Command::Revoke { .. } => "revoke",
            Command::Call { .. } => "call",
            Command::VerifyWebhook { .. } => "verify-webhook",
            Command::Fingerprint { .. } => "fingerprint",
            Command::Mock { .. } => "mock",
        }
    }

    /// Whether `--json` was given (including to a command that refuses it).
    fn json(&self) -> bool {
        match self {
            Command::Demo { no_json, .. } | Command::Jwt { no_json, .. } | Command::Mock { no_json, .. } => {
                no_json.json
            }
            Command::Token { out, .. }
            | Command::Installations { out, .. }
            | Command::Installation { out, .. }
            | Command::Revoke { out, .. }
            | Command::Call { out, .. }
            | Command::VerifyWebhook { out, .. }
            | Command::Fingerprint { out, .. } => out.json,
        }
    }

    fn verbose(&self) -> bool {
        match self {
            Command::Demo { verbose, .. } => *verbose,
            Command::Token { api, .. }
            | Command::Installations { api, .. }
            | Command::Installation { api, .. }
            | Command::Revoke { api, .. }
            | Command::Call { api, .. } => api.verbose,
            _ => false,
        }
    }
}

/// A failure and the exit code it maps to.
enum Failure {
    /// Something wrong in the command line or the settings.
    Usage(String),
    Sdk(Error),
    Other(String),
    /// Standard output is a pipe whose reader has gone: the command ends quietly (see `out`).
    ClosedStdout,
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Sdk(e)
    }
}

impl Failure {
    /// 2 command line or settings, 3 refused, 4 not found, 5 network or server, 1 anything else.
    fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Other(_) => 1,
            Failure::ClosedStdout => 141,
            Failure::Sdk(e) => match e {
                Error::Config { .. }
                | Error::Key(_)
                | Error::Transport {
                    kind: TransportErrorKind::Refused,
                    ..
                } => 2,
                Error::Unauthorized { .. } | Error::Forbidden { .. } => 3,
                Error::NotFound { .. } => 4,
                Error::Transport { .. }
                | Error::Server { .. }
                | Error::RateLimited { .. }
                | Error::MalformedBody { .. } => 5,
                _ => 1,
            },
        }
    }

    /// The `kind` of the `--json` error object.
    fn kind(&self) -> &'static str {
        match self {
            Failure::Usage(_) => "usage",
            Failure::Other(_) => "other",
            Failure::ClosedStdout => "closed_stdout",
            Failure::Sdk(e) => match e {
                Error::Config { .. }
                | Error::Key(_)
                | Error::Transport {
                    kind: TransportErrorKind::Refused,
                    ..
                } => "config",
                Error::Unauthorized { .. } => "unauthorized",
                Error::Forbidden { .. } => "forbidden",
                Error::NotFound { .. } => "not_found",
                Error::RateLimited { .. } => "rate_limited",
                Error::Server { .. } | Error::MalformedBody { .. } => "server",
                Error::Transport { .. } => "transport",
                Error::Webhook(_) => "webhook",
                _ => "other",
            },
        }
    }

    fn status(&self) -> Option<u16> {
        match self {
            Failure::Sdk(e) => e.status(),
            _ => None,
        }
    }

    /// Writes the failure to stderr: `error: ...`, or with `--json` one JSON object; nothing
    /// for a closed standard output, which ends a command quietly.
    fn report(&self, json: bool) {
        if let Failure::ClosedStdout = self {
            return;
        }
        let mut stderr = std::io::stderr().lock();
        let _ = if json {
            let mut error = serde_json::json!({ "kind": self.kind(), "message": self.to_string() });
            if let Some(status) = self.status() {
                error["status"] = status.into();
            }
            writeln!(stderr, "{}", serde_json::json!({ "error": error }))
        } else {
            writeln!(stderr, "error: {self}")
        };
    }
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Other(m) => f.write_str(m),
            Failure::ClosedStdout => f.write_str("standard output was closed"),
            // The core advises raising the timeout; here, how.
            Failure::Sdk(Error::Transport {
                kind: TransportErrorKind::Timeout,
                message,
            }) => write!(
                f,
                "request failed: {message}; the registry is slow or unreachable: retry later, or allow each request more time with --timeout SECONDS (or {TIMEOUT_ENV})"
            ),
            Failure::Sdk(e) => write!(f, "{e}"),
        }
    }
}

/// The flags that may come before the subcommand; those taking a value.
const HOISTED_WITH_VALUE: [&str; 7] = [
    "--base-url",
    "--app-id",
    "--private-key",
    "--api-version",
    "--timeout",
    "--proxy",
    "--ca-file",
];
/// The flags that may come before the subcommand; switches.
const HOISTED_SWITCHES: [&str; 4] = ["--json", "-v", "--verbose", "--allow-insecure-http"];

/// `icr-app --app-id X installations` is read as `icr-app installations --app-id X`: settings
/// may come before the subcommand, while each subcommand declares (and lists in `--help`) only
/// the flags it reads. Anything else is left for clap to report.
fn hoist_settings(args: Vec<OsString>) -> Vec<OsString> {
    let mut i = 1;
    while let Some(arg) = args.get(i).and_then(|a| a.to_str()) {
        let name = arg.split_once('=').map_or(arg, |(name, _)| name);
        if HOISTED_WITH_VALUE.contains(&name) {
            i += if arg.contains('=') { 1 } else { 2 };
        } else if HOISTED_SWITCHES.contains(&arg) {
            i += 1;
        } else {
            break;
        }
    }
    match args.get(i).and_then(|a| a.to_str()) {
        Some(sub) if i > 1 && !sub.starts_with('-') => {
            let mut out = Vec::with_capacity(args.len());
            out.push(args[0].clone());
            out.push(args[i].clone());
            out.extend_from_slice(&args[1..i]);
            out.extend_from_slice(&args[i + 1..]);
            out
        }
        _ => args,
    }
}

fn main() -> ExitCode {
    let args = hoist_settings(std::env::args_os().collect());
    let json_requested = args.iter().skip(1).take_while(|a| *a != "--").any(|a| a == "--json");
    let cli = match Cli::try_parse_from(&args) {
        Ok(cli) => cli,
        Err(e) if withheld_value_message(&e).is_some() => {
            let message = withheld_value_message(&e).unwrap_or_default();
            if json_requested {
                Failure::Usage(message.split_whitespace().collect::<Vec<_>>().join(" ")).report(true);
            } else {
                let usage = match e.get(ContextKind::Usage) {
                    Some(ContextValue::StyledStr(usage)) => format!("\n\n{usage}"),
                    _ => String::new(),
                };
                // Not eprintln!, which panics when stderr is a closed pipe.
                let _ = writeln!(
                    std::io::stderr(),
                    "error: {message}{usage}\n\nFor more information, try '--help'."
                );
            }
            return ExitCode::from(2);
        }
        Err(e) if json_requested && e.use_stderr() => {
            Failure::Usage(clap_message(&e)).report(true);
            return ExitCode::from(2);
        }
        Err(e) => e.exit(),
    };
    let json = cli.command.json();
    logging::init(cli.command.verbose(), json);
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            failure.report(json);
            ExitCode::from(failure.code())
        }
    }
}

/// For a clap error that would quote what the user gave: a value where nothing was expected
/// (`icr-app fingerprint MIIEv...`, a key pasted where no argument goes), or a value a flag does
/// not accept (`mock --port crs_...`): the message with its length instead, and clap's
/// suggestions of our own names or what the flag takes. `None` for other errors (they quote only
/// our own names), and for an unknown flag (`--bogus`), which is quoted as clap quotes it.
///
/// clap quotes the value in full ("unexpected argument 'MIIEv...' found", and again in its tip
/// "to pass 'MIIEv...' as a value, use '-- MIIEv...'"; "invalid value 'crs_...' for
/// `--port <PORT>`"), and it may be a key or a token. Of clap's error kinds, these five are those that
/// hold text the user gave: `InvalidValue`, `ValueValidation`, `UnknownArgument`,
/// `InvalidSubcommand` and `TooManyValues`.
fn withheld_value_message(e: &clap::Error) -> Option<String> {
    if matches!(e.kind(), ErrorKind::InvalidValue | ErrorKind::ValueValidation) {
        return Some(invalid_value_message(e));
    }
    let (context, what) = match e.kind() {
        ErrorKind::UnknownArgument => (ContextKind::InvalidArg, "unexpected argument"),
        ErrorKind::InvalidSubcommand => (ContextKind::InvalidSubcommand, "unrecognized subcommand"),
        ErrorKind::TooManyValues => (ContextKind::InvalidValue, "unexpected value"),
        _ => return None,
    };
    let Some(ContextValue::String(given)) = e.get(context) else {
        return None;
    };
    if is_flag_name(given) {
        return None;
    }
    let mut message = format!("{what} ({}) found", withheld(given));
    if let Some(ContextValue::String(flag)) = e.get(ContextKind::InvalidArg)
        && e.kind() == ErrorKind::TooManyValues
    {
        message.push_str(&format!(" for '{flag}'; no more were expected"));
    }
    for (kind, name) in [
        (ContextKind::SuggestedSubcommand, "subcommand"),
        (ContextKind::SuggestedArg, "argument"),
    ] {
        let ours: Vec<&str> = match e.get(kind) {
            Some(ContextValue::String(one)) => vec![one],
            Some(ContextValue::Strings(list)) => list.iter().map(String::as_str).collect(),
            _ => continue,
        };
        match ours[..] {
            [] => {}
            [one] => message.push_str(&format!("\n\n  tip: a similar {name} exists: '{one}'")),
            _ => message.push_str(&format!("\n\n  tip: similar {name}s exist: '{}'", ours.join("', '"))),
        }
    }
    Some(message)
}

/// For a value a flag or argument does not accept (`mock --port crs_...`, `--timeout <JWT>`):
/// which flag, and what it takes, never the value, which may be a token or a key given in the
/// wrong place.
fn invalid_value_message(e: &clap::Error) -> String {
    let given = match e.get(ContextKind::InvalidValue) {
        Some(ContextValue::String(given)) => given.as_str(),
        _ => "",
    };
    let flag = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(flag)) => format!(" for '{flag}'"),
        _ => String::new(),
    };
    // Our value parsers say what they expect without quoting the value; a parser of clap's own
    // may quote it ("99999999 is not in 0..=65535"), and then only --help is pointed to.
    let expected = match (e.get(ContextKind::ValidValue), std::error::Error::source(e)) {
        (Some(ContextValue::Strings(valid)), _) => format!("expected one of: {}", valid.join(", ")),
        (_, Some(source)) if given.is_empty() || !source.to_string().contains(given) => source.to_string(),
        _ => "see --help for what it takes".to_owned(),
    };
    format!("invalid value ({}){flag}: {expected}", withheld(given))
}

/// How a withheld value is described: its length only.
fn withheld(given: &str) -> String {
    match given.chars().count() {
        0 => "empty".to_owned(),
        1 => "1 character, not shown: it may be a secret".to_owned(),
        n => format!("{n} characters, not shown: it may be a secret"),
    }
}

/// `--name` or `-n`, as a flag the user mistyped: safe to quote, and useful to.
fn is_flag_name(arg: &str) -> bool {
    let name = match arg.strip_prefix("--") {
        Some(long) => long,
        None => match arg.strip_prefix('-') {
            Some(short) if short.chars().count() == 1 => short,
            _ => return false,
        },
    };
    name.len() <= 40
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// clap's message without its `error: ` prefix, usage and tips, on one line.
fn clap_message(e: &clap::Error) -> String {
    let text = e.render().to_string();
    let first = text.split("\n\n").next().unwrap_or_default();
    let first = first.strip_prefix("error: ").unwrap_or(first);
    first.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn run(command: Command) -> Result<(), Failure> {
    if let Command::Demo { no_json, .. } | Command::Jwt { no_json, .. } | Command::Mock { no_json, .. } = &command
        && no_json.json
    {
        return Err(Failure::Usage(format!(
            "`icr-app {}` has no JSON output; drop --json",
            command.name()
        )));
    }
    match command {
        Command::Demo { .. } => demo::run(),
        Command::Mock { port, .. } => mock::run(port),
        Command::Fingerprint { key, out } => {
            let key = load_key(&key)?;
            if out.json {
                outln!(
                    "{}",
                    serde_json::json!({ "fingerprint": key.fingerprint(), "bits": key.modulus_bits() })
                )?;
            } else {
                outln!("{}", key.fingerprint())?;
            }
            Ok(())
        }
        Command::Jwt { app, .. } => {
            let jwt = build_app(&app, None)?.jwt(now())?;
            outln!("{}", jwt.token().expose())?;
            Ok(())
        }
        Command::Token {
            installation,
            organization,
            app,
            api,
            out,
        } => {
            let scope = match (app, act_as("--installation", installation, organization)?) {
                (true, _) => TokenScope::App,
                (false, Some(scope)) => scope,
                (false, None) => {
                    return Err(Failure::Usage(format!(
                        "`icr-app token` needs --installation ID (or {}) or --organization ORG (or {}) for an installation token, or --app for an app token",
                        env::INSTALLATION_ID,
                        env::ORGANIZATION_ID
                    )));
                }
            };
            let client = client(&api)?;
            let token = client.token(&scope, None)?;
            if out.json {
                outln!("{}", token.summary_json())?;
            } else {
                // The token alone on stdout, for `> token.txt` and `$(icr-app token ...)`; what
                // people read beside it on stderr.
                outln!("{}", token.secret().expose())?;
                let _ = writeln!(
                    std::io::stderr(),
                    "expires at:  {}\npermissions: {}",
                    token.access_token().expires_at,
                    permissions_text(&token.access_token().permissions)
                );
            }
            Ok(())
        }
        Command::Installations { api, out } => {
            let all = client(&api)?.installations()?;
            if out.json {
                outln!(
                    "{}",
                    serde_json::to_string(&all).map_err(|e| Failure::Other(e.to_string()))?
                )?;
            } else if all.is_empty() {
                outln!("no installations")?;
            } else {
                for i in &all {
                    outln!("{}", installation_line(i))?;
                }
            }
            Ok(())
        }
        Command::Installation {
            id,
            organization,
            api,
            out,
        } => {
            let i = match act_as("an installation ID", id, organization)? {
                Some(TokenScope::Organization(org)) => client(&api)?.installation_for_organization(&org)?,
                Some(TokenScope::Installation(id)) => client(&api)?.installation(&id)?,
                _ => {
                    return Err(Failure::Usage(format!(
                        "`icr-app installation` needs an installation ID (or {}), or --organization ORG (or {}) for the app's installation on that organization",
                        env::INSTALLATION_ID,
                        env::ORGANIZATION_ID
                    )));
                }
            };
            if out.json {
                outln!(
                    "{}",
                    serde_json::to_string(&i).map_err(|e| Failure::Other(e.to_string()))?
                )?;
            } else {
                outln!("{}", installation_line(&i))?;
            }
            Ok(())
        }
        Command::Revoke {
            from,
            installation,
            organization,
            api,
            out,
        } => {
            let token = token_to_revoke(from.as_deref())?;
            let token = icr_app_core::SecretString::new(token.trim());
            let client = client(&api)?;
            if api.has_store() {
                let scopes = match act_as("--installation", installation, organization)? {
                    Some(TokenScope::Organization(org)) => {
                        let found = client.installation_for_organization(&org)?;
                        vec![TokenScope::Installation(InstallationId::new(found.id)?)]
                    }
                    Some(scope) => vec![scope],
                    None => {
                        let mut scopes = vec![TokenScope::App];
                        for found in client.installations()? {
                            scopes.push(TokenScope::Installation(InstallationId::new(found.id)?));
                        }
                        scopes
                    }
                };
                client.revoke_held_by(&token, &scopes)?;
            } else {
                client.revoke(&token)?;
            }
            if out.json {
                outln!("{}", serde_json::json!({ "revoked": true }))?;
            } else {
                outln!("revoked")?;
            }
            Ok(())
        }
        Command::Call {
            method,
            path,
            installation,
            organization,
            data,
            api,
            ..
        } => call(&api, &method, &path, installation, organization, data.as_deref()),
        Command::VerifyWebhook { secret, signature, out } => verify_webhook(secret, signature.as_deref(), out.json),
    }
}

/// Whom a command acts as: the installation (`installation`, given as `what`) or the
/// organization given on the command line (both at once is a usage error), else
/// ICR_INSTALLATION_ID, else ICR_ORGANIZATION_ID. `None` when none of the four is set.
fn act_as(
    what: &str,
    installation: Option<String>,
    organization: Option<String>,
) -> Result<Option<TokenScope>, Failure> {
    let (installation, organization) = match (installation, organization) {
        (Some(_), Some(_)) => {
            return Err(Failure::Usage(format!(
                "{what} and --organization both say which installation to act as; give one of them (--organization ORG acts as the app's installation on that organization, whatever its id)"
            )));
        }
        (None, None) => (env_value(env::INSTALLATION_ID), env_value(env::ORGANIZATION_ID)),
        given => given,
    };
    Ok(match (installation, organization) {
        (Some(id), _) => Some(TokenScope::Installation(InstallationId::new(id)?)),
        (None, Some(org)) => Some(TokenScope::Organization(OrganizationId::new(org)?)),
        (None, None) => None,
    })
}

fn load_key(k: &KeyArgs) -> Result<AppKey, Failure> {
    let value = k.value().filter(|v| !v.trim().is_empty()).ok_or_else(|| {
        Failure::Usage(format!(
            "--private-key is required (or set {}): the path of the app's PEM file, the PEM itself, or its base64",
            env::PRIVATE_KEY
        ))
    })?;
    Ok(env::load_private_key(&value)?)
}

/// The app, from the app id and key, and from `api` the base URL and API version.
fn build_app(a: &AppArgs, api: Option<&ApiArgs>) -> Result<App, Failure> {
    let app_id = a.app_id.clone().or_else(|| env_value(env::APP_ID));
    let app_id = match app_id.as_deref().map(str::trim) {
        None => {
            return Err(Failure::Usage(format!(
                "--app-id is required (or set {}): the App ID on the app's dashboard",
                env::APP_ID
            )));
        }
        Some("") => {
            return Err(Failure::Usage(format!(
                "the app id is empty: pass --app-id (or set {}) to the App ID on the app's dashboard",
                env::APP_ID
            )));
        }
        Some(id) => id.to_owned(),
    };
    let key = load_key(&a.key)?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos().into());
    let mut builder = App::builder(app_id, key).seed(seed);
    if let Some(api) = api {
        builder = builder.base_url(api.base_url()).api_version(api.api_version());
    }
    Ok(builder.build()?)
}

/// The client for a command that talks to the registry, after checking its settings.
fn client(api: &ApiArgs) -> Result<Client, Failure> {
    let base_url = api.base_url();
    if icr_app_core::api::is_insecure_url(&base_url) && !api.allow_insecure_http {
        let host = base_url
            .parse::<http::Uri>()
            .ok()
            .and_then(|u| u.host().map(str::to_owned))
            .unwrap_or_default();
        return Err(Failure::Usage(format!(
            "the base URL is plain http:// to {}, which is not this machine: the app's credentials would cross the network unencrypted; use https://, or pass --allow-insecure-http on a network you trust",
            icr_app_core::excerpt(&host, 80)
        )));
    }
    let timeout = api.timeout()?;
    let app = build_app(&api.app, Some(api))?;
    let transport = UreqTransport::with_timeout(timeout).allow_insecure_http(api.allow_insecure_http);
    let mut builder = Client::builder(app).transport(transport);
    if let Some(proxy) = api.proxy() {
        builder = builder.proxy(&proxy);
    }
    if let Some(ca_file) = api.ca_file() {
        builder = builder.ca_file(ca_file);
    }
    if let Some(store) = api.store()? {
        builder = builder.store(store);
    }
    Ok(builder.build()?)
}

/// The token for `revoke`: from stdin with `-`; with no argument from ICR_TOKEN, else from
/// stdin when it is not a terminal. Never from the command line.
fn token_to_revoke(from: Option<&str>) -> Result<Zeroizing<String>, Failure> {
    let from_stdin = match from {
        Some("-") => true,
        Some(_) => {
            return Err(Failure::Usage(format!(
                "`icr-app revoke` does not take the token as an argument, where other processes can read it; pass `-` and write the token to standard input, or set {TOKEN_ENV}"
            )));
        }
        None => match std::env::var(TOKEN_ENV) {
            Ok(value) => {
                let value = Zeroizing::new(value);
                if !value.trim().is_empty() {
                    return Ok(value);
                }
                !std::io::stdin().is_terminal()
            }
            Err(_) => !std::io::stdin().is_terminal(),
        },
    };
    if !from_stdin {
        return Err(Failure::Usage(format!(
            "`icr-app revoke` needs the token: set {TOKEN_ENV}, or pipe it in (`icr-app revoke - < token.txt`)"
        )));
    }
    // Room for any token up front, so reading does not reallocate and leave unwiped copies.
    let mut token = Zeroizing::new(String::with_capacity(4096));
    std::io::stdin()
        .take(4000)
        .read_to_string(&mut token)
        .map_err(|e| Failure::Usage(format!("cannot read the token from standard input: {}", e.kind())))?;
    if token.trim().is_empty() {
        return Err(Failure::Usage(
            "no token on standard input: write the access token (crs_...) to it".into(),
        ));
    }
    Ok(token)
}

pub(crate) fn permissions_text(p: &icr_app_core::Permissions) -> String {
    if p.is_empty() {
        return "(none)".to_owned();
    }
    p.iter()
        .map(|(name, level)| format!("{name}={level}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// `installation-id  Organization name (organization-id)  permissions`.
pub(crate) fn installation_line(i: &Installation) -> String {
    let org = i.organization.as_ref().map_or_else(
        || "(no organization)".to_owned(),
        |o| {
            if o.display_name() == o.id {
                o.id.clone()
            } else {
                format!("{} ({})", o.display_name(), o.id)
            }
        },
    );
    format!("{}  {}  {}", i.id, org, permissions_text(&i.permissions))
}

/// The methods `call` sends.
const METHODS: [&str; 5] = ["GET", "POST", "PUT", "PATCH", "DELETE"];

fn call(
    api: &ApiArgs,
    method: &str,
    path: &str,
    installation: Option<String>,
    organization: Option<String>,
    data: Option<&str>,
) -> Result<(), Failure> {
    let upper = method.to_ascii_uppercase();
    if !METHODS.contains(&upper.as_str()) {
        return Err(Failure::Usage(format!(
            "`{}` is not a method `call` sends; use GET, POST, PUT, PATCH or DELETE",
            icr_app_core::excerpt(method, 20)
        )));
    }
    let method = Method::from_bytes(upper.as_bytes()).map_err(|_| Failure::Usage("invalid method".into()))?;
    if !path.starts_with('/') {
        return Err(Failure::Usage(
            "the path must start with `/`, e.g. /projects?limit=10 or /organizations/ID".into(),
        ));
    }
    if let Some(d) = data {
        serde_json::from_str::<serde_json::Value>(d)
            .map_err(|e| Failure::Usage(format!("--data is not valid JSON: {e}")))?;
    }
    let scope = act_as("--installation", installation, organization)?.ok_or_else(|| {
        Failure::Usage(format!(
            "`icr-app call` needs --installation ID (or {}), or --organization ORG (or {}): the installation to act as",
            env::INSTALLATION_ID,
            env::ORGANIZATION_ID
        ))
    })?;
    let client = client(api)?;
    let request = client.request(method, path, data.map(|d| d.as_bytes().to_vec()))?;
    let response = client.send_as(&scope, request)?;
    if !response.status().is_success() {
        return Err(Failure::Sdk(icr_app_core::response::status_error(
            response.status().as_u16(),
            response.headers(),
            response.body(),
            icr_app_core::Credential::AccessToken,
            None,
        )));
    }
    let pretty = std::io::stdout()
        .is_terminal()
        .then(|| serde_json::from_slice::<serde_json::Value>(response.body()).ok())
        .flatten()
        .and_then(|v| serde_json::to_string_pretty(&v).ok());
    match pretty {
        Some(text) => outln!("{text}"),
        None => out::bytes(response.body()),
    }
}

fn verify_webhook(secret: Option<Zeroizing<String>>, signature: Option<&str>, json: bool) -> Result<(), Failure> {
    let secret = secret.or_else(|| env_secret(WEBHOOK_SECRET_ENV)).ok_or_else(|| {
        Failure::Usage(format!(
            "--secret is required (or set {WEBHOOK_SECRET_ENV}): the webhook secret set on the app's General tab"
        ))
    })?;
    let secret = WebhookSecret::new(secret.as_str()).map_err(|e| Failure::Usage(e.to_string()))?;
    if signature.is_none() {
        return Err(Failure::Usage(
            "--signature is required: the value of the delivery's x-icr-signature-256 header (sha256=...)".into(),
        ));
    }
    let mut body = Vec::new();
    std::io::stdin()
        .read_to_end(&mut body)
        .map_err(|e| Failure::Other(format!("cannot read the delivery from stdin: {e}")))?;
    let event = webhook::verify(&secret, signature, &body).map_err(|e| Failure::Sdk(Error::Webhook(e)))?;
    if json {
        outln!("{}", event.raw)?;
    } else {
        outln!("verified: {} event", event.event)?;
        if let Some(i) = &event.installation {
            outln!("{}", installation_line(i))?;
        }
        if let Some(s) = &event.sender {
            outln!("sender: {} {}", s.id, s.email.as_deref().unwrap_or(""))?;
        }
    }
    Ok(())
}
