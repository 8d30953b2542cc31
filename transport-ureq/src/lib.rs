//! # icr-app-ureq
//!
//! A blocking client for ICR apps, driving [`icr_app_core`] over [ureq](https://docs.rs/ureq)
//! with rustls.
//!
//! ```no_run
//! use icr_app_core::{App, AppKey, InstallationId};
//! use icr_app_ureq::Client;
//!
//! # fn main() -> Result<(), icr_app_core::Error> {
//! let key = AppKey::from_pem(&std::env::var("ICR_PRIVATE_KEY").unwrap_or_default())?;
//! let client = Client::new(App::builder("d23967cc-dd16-452b-8af4-869965745978", key).build()?);
//! let installation = InstallationId::new("88f89df1-0a53-41c5-974d-dd99708b2f9f")?;
//! let token = client.installation_token(&installation)?; // cached, refreshed ahead of expiry
//! let org: serde_json::Value = client.get_json(&installation, "/projects?limit=10&page=0")?;
//! # let _ = (token, org);
//! # Ok(())
//! # }
//! ```
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod client;
mod transport;

pub use client::Client;
pub use transport::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_BODY, DEFAULT_TIMEOUT, Observer, RESOLVE_CACHE_TTL, UreqTransport,
};

pub use icr_app_core as core;
