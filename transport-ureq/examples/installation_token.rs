//! Mints an installation access token and prints `{"token", "expiresAt", "permissions"}`.
//!
//! ```text
//! cargo run -p icr-app-ureq --example installation_token -- \
//!     --base-url URL --app-id ID --private-key PATH --installation ID
//! ```
//!
//! Each flag falls back to `ICR_BASE_URL`, `ICR_APP_ID`, `ICR_PRIVATE_KEY` (a path or the PEM
//! itself) and `ICR_INSTALLATION_ID`. Failures go to stderr with a non-zero exit.

use std::process::ExitCode;

use icr_app_core::{App, InstallationId, env};
use icr_app_ureq::Client;

fn main() -> ExitCode {
    match run() {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<String, String> {
    let mut args = std::env::args().skip(1);
    let (mut base_url, mut app_id, mut key, mut installation) = (None, None, None, None);
    while let Some(flag) = args.next() {
        let value = args.next().ok_or_else(|| format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--base-url" => base_url = Some(value),
            "--app-id" => app_id = Some(value),
            "--private-key" => key = Some(value),
            "--installation" => installation = Some(value),
            other => {
                return Err(format!(
                    "unknown flag `{other}`; use --base-url, --app-id, --private-key, --installation"
                ));
            }
        }
    }
    let setting = |flag: Option<String>, var: &str, name: &str| {
        flag.or_else(|| std::env::var(var).ok())
            .ok_or_else(|| format!("{name} is missing: pass it or set {var}"))
    };
    let key = env::load_private_key(&setting(key, env::PRIVATE_KEY, "--private-key")?).map_err(|e| e.to_string())?;
    let mut builder = App::builder(setting(app_id, env::APP_ID, "--app-id")?, key);
    if let Some(url) = base_url.or_else(|| std::env::var(env::BASE_URL).ok()) {
        builder = builder.base_url(url);
    }
    let installation = InstallationId::new(setting(installation, env::INSTALLATION_ID, "--installation")?)
        .map_err(|e| e.to_string())?;
    let client = Client::new(builder.seed(rand_seed()).build().map_err(|e| e.to_string())?);
    let token = client.installation_token(&installation).map_err(|e| e.to_string())?;
    let access = token.access_token();
    let out = serde_json::json!({
        "token": token.secret().expose(),
        "expiresAt": access.expires_at.to_rfc3339(),
        "permissions": access.permissions,
    });
    Ok(out.to_string())
}

/// Jitter seed from the clock's nanoseconds (good enough to de-synchronise retries).
fn rand_seed() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos().into())
}
