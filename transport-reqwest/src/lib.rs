//! # icr-app-reqwest
//!
//! An async client for ICR apps, driving [`icr_app_core`] over
//! [reqwest](https://docs.rs/reqwest) with rustls on tokio.
//!
//! ```no_run
//! use icr_app_core::{App, AppKey, InstallationId};
//! use icr_app_reqwest::Client;
//!
//! # async fn run() -> Result<(), icr_app_core::Error> {
//! let key = AppKey::from_pem(&std::env::var("ICR_PRIVATE_KEY").unwrap_or_default())?;
//! let client = Client::new(App::builder("d23967cc-dd16-452b-8af4-869965745978", key).build()?)?;
//! let _refresher = client.spawn_refresher(); // renew tokens ahead of expiry
//! let installation = InstallationId::new("88f89df1-0a53-41c5-974d-dd99708b2f9f")?;
//! let token = client.installation_token(&installation).await?;
//! let projects: serde_json::Value = client.get_json(&installation, "/projects?limit=10&page=0").await?;
//! # let _ = (token, projects);
//! client.revoke_all().await?; // on shutdown
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
mod transport;

pub use client::{Client, RefresherHandle};
pub use transport::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_BODY, DEFAULT_TIMEOUT, ReqwestTransport};

pub use icr_app_core as core;
