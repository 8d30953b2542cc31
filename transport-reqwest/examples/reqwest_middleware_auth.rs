//! Calls two ICR endpoints through your own `reqwest` client, with the SDK's
//! `reqwest-middleware` middleware adding the installation's token: `GET /projects` and
//! `GET /organizations/{id}` of the installation's organization. Prints
//! `{"projects": [names], "organization": name}`.
//!
//! ```text
//! cargo run -p icr-app-reqwest --features middleware --example reqwest_middleware_auth -- \
//!     --base-url URL --app-id ID --private-key PATH --installation ID
//! ```
//!
//! Each flag falls back to `ICR_BASE_URL`, `ICR_APP_ID`, `ICR_PRIVATE_KEY` (a path, the PEM
//! itself or its base64) and `ICR_INSTALLATION_ID`; `--help` prints the usage. Failures go to
//! stderr with a non-zero exit.

use std::error::Error;
use std::process::ExitCode;

use icr_app_core::api::encode_segment;
use icr_app_reqwest::middleware::InstallationAuth;
use icr_app_reqwest::{Client, ReqwestTransport};
use icr_app_settings::Settings;
use reqwest_middleware::ClientWithMiddleware;

#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    match run().await {
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

async fn run() -> Result<serde_json::Value, Box<dyn Error>> {
    let settings = Settings::from_args(std::env::args().skip(1))?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos().into());
    let client = Client::new(settings.app(seed)?)?;
    let installation = settings.installation()?;
    let base_url = client.with_app(|app| app.api().base_url().to_owned());

    // Which organization the installation is on: an app endpoint, asked by the SDK with the app JWT.
    let organization_id = client
        .installation(&installation)
        .await?
        .organization
        .map(|o| o.id)
        .ok_or("the registry gave no organization for this installation")?;

    // Your own client (here one with the SDK's TLS settings; any `reqwest::Client` will do): the
    // middleware adds the installation's token to every request for the registry, from the
    // client's cache (one mint for both calls below), and sends a request refused with 401 once
    // more with a new token.
    let own = ReqwestTransport::client_builder()?.build()?;
    let http: ClientWithMiddleware = reqwest_middleware::ClientBuilder::new(own)
        .with(InstallationAuth::new(client.clone(), installation))
        .build();

    let projects = get(&http, &client, &format!("{base_url}/projects?limit=10&page=0")).await?;
    let organization = get(
        &http,
        &client,
        &format!("{base_url}/organizations/{}", encode_segment(&organization_id)),
    )
    .await?;
    let names: Vec<&str> = projects["projects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["fullName"].as_str())
        .collect();
    Ok(serde_json::json!({ "projects": names, "organization": organization["fullName"] }))
}

async fn get(http: &ClientWithMiddleware, client: &Client, url: &str) -> Result<serde_json::Value, Box<dyn Error>> {
    let api_version = client.with_app(|app| app.api().api_version().to_owned());
    let response = http
        .get(url)
        .header("accept", "application/json")
        .header("x-icr-api-version", api_version)
        .send()
        .await?
        .error_for_status()?;
    Ok(serde_json::from_slice(&response.bytes().await?)?)
}
