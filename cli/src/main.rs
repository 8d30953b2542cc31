//! `icr-app`: the command-line tool for ICR apps. See `icr-app --help`.
#![forbid(unsafe_code)]

mod demo;

use std::io::Read as _;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use http::Method;
use icr_app_core::webhook::{self, WebhookSecret};
use icr_app_core::{App, AppKey, Error, Installation, InstallationId, TokenScope, env};
use icr_app_ureq::{Client, UreqTransport};

/// Command-line tool for ICR apps (International Carbon Registry, carbonregistry.com).
///
/// Exit codes: 0 success, 2 usage, 3 authentication or permission refused (401/403), 4 not
/// found, 5 network or server failure, 1 anything else.
#[derive(Parser, Debug)]
#[command(name = "icr-app", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: Global,
    #[command(subcommand)]
    command: Command,
}

#[derive(Args, Debug)]
struct Global {
    /// The registry's base URL.
    #[arg(long, global = true, env = env::BASE_URL, default_value = icr_app_core::api::DEFAULT_BASE_URL)]
    base_url: String,
    /// The app id (from the app's dashboard).
    #[arg(long, global = true, env = env::APP_ID)]
    app_id: Option<String>,
    /// The private key: a path to the PEM file, or the PEM itself.
    #[arg(long, global = true, env = env::PRIVATE_KEY, hide_env_values = true)]
    private_key: Option<String>,
    /// The `x-icr-api-version` to send.
    #[arg(long, global = true, env = env::API_VERSION, default_value = icr_app_core::api::DEFAULT_API_VERSION)]
    api_version: String,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    /// Show each request's method, path, status and time on stderr.
    #[arg(short, long, global = true)]
    verbose: bool,
    /// Allow credentials over plain http:// to hosts other than loopback.
    #[arg(long, global = true)]
    allow_insecure_http: bool,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Walk through the whole flow against an embedded fake registry (no flags, files or network).
    Demo,
    /// Print an app JWT.
    Jwt,
    /// Mint and print an installation token (--installation ID) or an app token (--app).
    Token {
        /// The installation to mint for.
        #[arg(long, env = env::INSTALLATION_ID, conflicts_with = "app", required_unless_present = "app")]
        installation: Option<String>,
        /// Mint an app access token instead.
        #[arg(long)]
        app: bool,
    },
    /// List every installation (all pages).
    Installations,
    /// Show one installation.
    Installation {
        /// The installation id.
        id: String,
    },
    /// Revoke an access token.
    Revoke {
        /// The token to revoke (crs_...).
        token: String,
    },
    /// Send any API request as an installation and print the response body.
    Call {
        /// GET, POST, PUT, PATCH or DELETE.
        method: String,
        /// The path and query, e.g. /organizations/ID.
        path: String,
        /// The installation to act as.
        #[arg(long, env = env::INSTALLATION_ID)]
        installation: String,
        /// A JSON request body.
        #[arg(long)]
        data: Option<String>,
    },
    /// Verify a webhook delivery read from stdin and print the decoded event.
    VerifyWebhook {
        /// The webhook secret set on the app's General tab.
        #[arg(long, env = "ICR_WEBHOOK_SECRET", hide_env_values = true)]
        secret: String,
        /// The x-icr-signature-256 header value.
        #[arg(long)]
        signature: Option<String>,
    },
    /// Print the private key's SHA-256 fingerprint (compare it with the Credentials tab).
    Fingerprint,
    /// Serve the fake registry for local development.
    Mock {
        /// The port to listen on (127.0.0.1); 0 picks a free one.
        #[arg(long, default_value_t = 0)]
        port: u16,
    },
}

/// A failure and the exit code it maps to.
enum Failure {
    Usage(String),
    Sdk(Error),
    Other(String),
}

impl From<Error> for Failure {
    fn from(e: Error) -> Self {
        Failure::Sdk(e)
    }
}

impl Failure {
    fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Other(_) => 1,
            Failure::Sdk(e) => match e {
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
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Failure::Usage(m) | Failure::Other(m) => f.write_str(m),
            Failure::Sdk(e) => write!(f, "{e}"),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(failure) => {
            eprintln!("error: {failure}");
            ExitCode::from(failure.code())
        }
    }
}

fn run(cli: Cli) -> Result<(), Failure> {
    let g = &cli.global;
    match &cli.command {
        Command::Demo => demo::run(g.verbose).map_err(Failure::Other),
        Command::Mock { port } => mock(*port),
        Command::Fingerprint => {
            let key = key(g)?;
            if g.json {
                println!(
                    "{}",
                    serde_json::json!({ "fingerprint": key.fingerprint(), "bits": key.modulus_bits() })
                );
            } else {
                println!("{}", key.fingerprint());
            }
            Ok(())
        }
        Command::Jwt => {
            let jwt = app(g)?.jwt(now())?;
            println!("{}", jwt.token().expose());
            Ok(())
        }
        Command::Token { installation, app: _ } => {
            let client = client(g)?;
            let token = match installation {
                Some(id) => client.installation_token(&InstallationId::new(id.clone())?)?,
                None => client.token(&TokenScope::App, None)?,
            };
            let summary = token.summary_json();
            if g.json {
                println!("{summary}");
            } else {
                println!("token:       {}", token.secret().expose());
                println!("expires at:  {}", token.access_token().expires_at);
                println!("permissions: {}", permissions_text(&token.access_token().permissions));
            }
            Ok(())
        }
        Command::Installations => {
            let all = client(g)?.installations()?;
            if g.json {
                println!(
                    "{}",
                    serde_json::to_string(&all).map_err(|e| Failure::Other(e.to_string()))?
                );
            } else if all.is_empty() {
                println!("no installations");
            } else {
                for i in &all {
                    println!("{}", installation_line(i));
                }
            }
            Ok(())
        }
        Command::Installation { id } => {
            let i = client(g)?.installation(&InstallationId::new(id.clone())?)?;
            if g.json {
                println!(
                    "{}",
                    serde_json::to_string(&i).map_err(|e| Failure::Other(e.to_string()))?
                );
            } else {
                println!("{}", installation_line(&i));
            }
            Ok(())
        }
        Command::Revoke { token } => {
            client(g)?.revoke(&icr_app_core::SecretString::new(token.trim()))?;
            if g.json {
                println!("{}", serde_json::json!({ "revoked": true }));
            } else {
                println!("revoked");
            }
            Ok(())
        }
        Command::Call {
            method,
            path,
            installation,
            data,
        } => call(g, method, path, installation, data.as_deref()),
        Command::VerifyWebhook { secret, signature } => verify_webhook(g, secret, signature.as_deref()),
    }
}

fn now() -> icr_app_core::Timestamp {
    icr_app_core::Timestamp::from_system_time(std::time::SystemTime::now())
}

fn key(g: &Global) -> Result<AppKey, Failure> {
    let value = g.private_key.as_deref().ok_or_else(|| {
        Failure::Usage(format!(
            "--private-key is required (or set {}): the path of the app's PEM file, or the PEM itself",
            env::PRIVATE_KEY
        ))
    })?;
    Ok(env::load_private_key(value)?)
}

fn app(g: &Global) -> Result<App, Failure> {
    let app_id = g.app_id.clone().ok_or_else(|| {
        Failure::Usage(format!(
            "--app-id is required (or set {}): the App ID on the app's dashboard",
            env::APP_ID
        ))
    })?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos().into());
    Ok(App::builder(app_id, key(g)?)
        .base_url(g.base_url.clone())
        .api_version(g.api_version.clone())
        .seed(seed)
        .build()?)
}

fn client(g: &Global) -> Result<Client, Failure> {
    let mut transport = UreqTransport::new().allow_insecure_http(g.allow_insecure_http);
    if g.verbose {
        transport = transport.observe(verbose_observer());
    }
    Ok(Client::with_transport(app(g)?, transport))
}

/// Logs `METHOD path status time` to stderr: never a header, a body or a query value that
/// could hold a secret.
pub(crate) fn verbose_observer() -> icr_app_ureq::Observer {
    Arc::new(
        |method: &Method, uri: &http::Uri, status: Option<http::StatusCode>, took: Duration| {
            let status = status.map_or_else(|| "no response".to_owned(), |s| s.as_u16().to_string());
            eprintln!(
                "> {method} {} {status} {:.1} ms",
                uri.path(),
                took.as_secs_f64() * 1000.0
            );
        },
    )
}

fn permissions_text(p: &icr_app_core::Permissions) -> String {
    if p.is_empty() {
        return "(none)".to_owned();
    }
    p.iter()
        .map(|(name, level)| format!("{name}={level}"))
        .collect::<Vec<_>>()
        .join(", ")
}

fn installation_line(i: &Installation) -> String {
    let org = i
        .organization
        .as_ref()
        .map_or("(no organization)", |o| o.display_name());
    format!("{}  {}  {}", i.id, org, permissions_text(&i.permissions))
}

fn call(g: &Global, method: &str, path: &str, installation: &str, data: Option<&str>) -> Result<(), Failure> {
    let method = Method::from_bytes(method.to_ascii_uppercase().as_bytes()).map_err(|_| {
        Failure::Usage(format!(
            "`{method}` is not an HTTP method; use GET, POST, PUT, PATCH or DELETE"
        ))
    })?;
    if let Some(d) = data {
        serde_json::from_str::<serde_json::Value>(d)
            .map_err(|e| Failure::Usage(format!("--data is not valid JSON: {e}")))?;
    }
    let client = client(g)?;
    let request = client.request(method, path, data.map(|d| d.as_bytes().to_vec()))?;
    let response = client.send_as_installation(&InstallationId::new(installation)?, request)?;
    let body = String::from_utf8_lossy(response.body());
    if response.status().is_success() {
        println!("{body}");
        return Ok(());
    }
    Err(Failure::Sdk(icr_app_core::response::status_error(
        response.status().as_u16(),
        response.headers(),
        response.body(),
        icr_app_core::Credential::AccessToken,
        None,
    )))
}

fn verify_webhook(g: &Global, secret: &str, signature: Option<&str>) -> Result<(), Failure> {
    let secret = WebhookSecret::new(secret).map_err(|e| Failure::Usage(e.to_string()))?;
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
    if g.json {
        println!("{}", event.raw);
    } else {
        println!("verified: {} event", event.event);
        if let Some(i) = &event.installation {
            println!("{}", installation_line(i));
        }
        if let Some(s) = &event.sender {
            println!("sender: {} {}", s.id, s.email.as_deref().unwrap_or(""));
        }
    }
    Ok(())
}

fn mock(port: u16) -> Result<(), Failure> {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let demo = icr_app_testkit::FakeRegistry::demo_on(addr)
        .map_err(|e| Failure::Other(format!("cannot listen on {addr}: {e}")))?;
    let key_path = std::env::temp_dir().join(format!("icr-app-mock-{}.pem", demo.registry.addr().port()));
    std::fs::write(&key_path, demo.private_key_pem)
        .map_err(|e| Failure::Other(format!("cannot write {}: {e}", key_path.display())))?;
    println!("fake ICR registry listening on {}", demo.registry.base_url());
    println!("app id:          {}", demo.app_id);
    println!("private key:     {}", key_path.display());
    println!("installations:   {}", demo.installation_ids.join(" "));
    println!();
    println!(
        "export ICR_BASE_URL={} ICR_APP_ID={} ICR_PRIVATE_KEY={}",
        demo.registry.base_url(),
        demo.app_id,
        key_path.display()
    );
    println!("press Ctrl-C to stop");
    loop {
        std::thread::park();
    }
}
