//! Calls two ICR endpoints through your own `ureq::Agent`, with the SDK's middleware adding the
//! installation's token: `GET /projects` and `GET /organizations/{id}` of the installation's
//! organization. Prints `{"projects": [names], "organization": name}`.
//!
//! ```text
//! cargo run -p icr-app-ureq --example ureq_middleware_auth -- \
//!     --base-url URL --app-id ID --private-key PATH --installation ID
//! ```
//!
//! Each flag falls back to `ICR_BASE_URL`, `ICR_APP_ID`, `ICR_PRIVATE_KEY` (a path, the PEM
//! itself or its base64) and `ICR_INSTALLATION_ID`; `--help` prints the usage. Failures go to
//! stderr with a non-zero exit.

use std::error::Error;
use std::process::ExitCode;

use icr_app_core::api::encode_segment;
use icr_app_settings::Settings;
use icr_app_ureq::Client;
use icr_app_ureq::middleware::{InstallationAuth, retry_if_refused};

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

fn run() -> Result<serde_json::Value, Box<dyn Error>> {
    let settings = Settings::from_args(std::env::args().skip(1))?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos().into());
    let client = Client::new(settings.app(seed)?);
    let installation = settings.installation()?;
    let (base_url, api_version) = client.with_app(|app| {
        let api = app.api();
        (api.base_url().to_owned(), api.api_version().to_owned())
    });

    // Which organization the installation is on: an app endpoint, asked by the SDK with the app JWT.
    let organization_id = client
        .installation(&installation)?
        .organization
        .map(|o| o.id)
        .ok_or("the registry gave no organization for this installation")?;

    // Your own agent: the middleware adds the installation's token to every request for the
    // registry, from the client's cache (one mint for both calls below).
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .middleware(InstallationAuth::new(client, installation))
        .build()
        .into();
    let get = |path: &str| -> Result<serde_json::Value, Box<dyn Error>> {
        let url = format!("{base_url}{path}");
        // Once more if the registry refused the token (revoked meanwhile): with a new one.
        let mut response = retry_if_refused(|| {
            agent
                .get(&url)
                .header("accept", "application/json")
                .header("x-icr-api-version", &api_version)
                .call()
        })?;
        Ok(serde_json::from_slice(&response.body_mut().read_to_vec()?)?)
    };

    let projects = get("/projects?limit=10&page=0")?;
    let organization = get(&format!("/organizations/{}", encode_segment(&organization_id)))?;
    let names: Vec<&str> = projects["projects"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|p| p["fullName"].as_str())
        .collect();
    Ok(serde_json::json!({ "projects": names, "organization": organization["fullName"] }))
}
