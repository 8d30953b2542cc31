//! Mints an installation access token and prints `{"token", "expiresAt", "permissions"}`.
//!
//! ```text
//! cargo run -p icr-app-ureq --example ureq_installation_token -- \
//!     --base-url URL --app-id ID --private-key PATH --installation ID
//! ```
//!
//! Each flag falls back to `ICR_BASE_URL`, `ICR_APP_ID`, `ICR_PRIVATE_KEY` (a path, the PEM
//! itself or its base64) and `ICR_INSTALLATION_ID`; `--help` prints the usage. Failures go to
//! stderr with a non-zero exit.

use std::process::ExitCode;

use icr_app_core::Error;
use icr_app_settings::Settings;
use icr_app_ureq::Client;

fn main() -> ExitCode {
    match run() {
        Ok(json) => {
            println!("{json}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<serde_json::Value, Error> {
    let settings = Settings::from_args(std::env::args().skip(1))?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos().into());
    let client = Client::new(settings.app(seed)?);
    let token = client.installation_token(&settings.installation()?)?;
    Ok(token.summary_json())
}
