//! Blocking quick start: mint an installation token, call the API with it, list the app's
//! installations, and revoke the token on the way out.
//!
//! Settings come from the environment: `ICR_APP_ID`, `ICR_PRIVATE_KEY` (the path of the key file
//! downloaded from the app's Credentials tab), `ICR_INSTALLATION_ID`, and `ICR_BASE_URL` (optional,
//! the production API when unset).

use icr_app_core::{App, AppKey, InstallationId};
use icr_app_ureq::Client;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let base_url = std::env::var("ICR_BASE_URL").unwrap_or_else(|_| "https://api.carbonregistry.com".to_owned());
    let app_id = setting("ICR_APP_ID")?;
    let key_path = setting("ICR_PRIVATE_KEY")?;
    let installation = InstallationId::new(setting("ICR_INSTALLATION_ID")?)?;

    // The message never quotes the value: it may be the key itself rather than a path.
    let pem = std::fs::read_to_string(&key_path).map_err(|e| {
        format!("ICR_PRIVATE_KEY names no readable file ({e}); set it to the path of the app's PEM key file")
    })?;
    let key = AppKey::from_pem(&pem)?;
    let client = Client::new(App::builder(app_id, key).base_url(base_url).build()?);

    // Minted once, then served from the cache and refreshed ahead of expiry.
    let token = client.installation_token(&installation)?;
    println!("token for {installation} expires {}", token.access_token().expires_at);

    // Any GET as the installation: the token goes in the Authorization header.
    let page: serde_json::Value = client.get_json(&installation, "/projects?limit=10&page=0")?;
    for project in page["projects"].as_array().into_iter().flatten() {
        println!("project {}", project["fullName"].as_str().unwrap_or("(no name)"));
    }

    // Every installation of the app, all pages.
    for i in client.installations()? {
        let organization = i.organization.as_ref().map(|o| o.display_name());
        println!("installation {} {}", i.id, organization.unwrap_or("(no organization)"));
    }

    // On shutdown: revoke every token this client minted.
    let revoked = client.revoke_all()?;
    println!("revoked {revoked} token(s)");
    Ok(())
}

fn setting(name: &str) -> Result<String, String> {
    std::env::var(name).map_err(|_| format!("{name} is not set"))
}
