//! # icr-app-ureq
//!
//! A blocking client for ICR apps, driving [`icr-app-core`](https://docs.rs/icr-app-core) over
//! [ureq](https://docs.rs/ureq) with rustls: installation tokens minted once, cached and
//! refreshed ahead of expiry, and API calls made with them.
//!
//! ```
//! use icr_app_core::{App, AppKey, InstallationId};
//! use icr_app_testkit::FakeRegistry;
//! use icr_app_ureq::Client;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A fake registry on 127.0.0.1 with a demo app and three installations. Against the real
//! // registry, leave out `base_url` and pass your app id and the key from its Credentials tab.
//! let demo = FakeRegistry::demo();
//! let key = AppKey::from_pem(demo.private_key_pem)?;
//! let client = Client::new(App::builder(demo.app_id.clone(), key).base_url(demo.registry.base_url()).build()?);
//!
//! let installation = InstallationId::new(demo.installation_ids[0].clone())?;
//! let token = client.installation_token(&installation)?; // minted
//! let again = client.installation_token(&installation)?; // served from the cache
//! assert!(token.same_as(&again));
//! assert_eq!(demo.registry.mint_count(installation.as_str()), 1);
//!
//! let projects: serde_json::Value = client.get_json(&installation, "/projects?limit=10&page=0")?;
//! assert_eq!(projects["projects"][0]["fullName"], "Sample project 1");
//! client.revoke_all()?; // on shutdown
//! # Ok(())
//! # }
//! ```
//!
//! A scheduled job usually knows the organization it acts for, not the installation: name the
//! organization wherever an installation goes ([`Client::organization_token`],
//! [`Client::send_as_organization`], [`Client::get_json_as`] with
//! [`TokenScope::Organization`](icr_app_core::TokenScope::Organization),
//! [`middleware::OrganizationAuth`]). Its installation is looked up once
//! ([`Client::installation_for_organization`] does just that) and followed when the
//! organization reinstalls the app:
//!
//! ```
//! # use icr_app_core::{App, AppKey, InstallationId, OrganizationId};
//! # use icr_app_testkit::FakeRegistry;
//! # use icr_app_ureq::Client;
//! # let demo = FakeRegistry::demo();
//! # let key = AppKey::from_pem(demo.private_key_pem)?;
//! # let client = Client::new(App::builder(demo.app_id.clone(), key).base_url(demo.registry.base_url()).build()?);
//! let org = OrganizationId::new(demo.organization_ids[0].clone())?;
//! let token = client.organization_token(&org)?; // one lookup, one mint
//! let installation = InstallationId::new(demo.installation_ids[0].clone())?;
//! assert!(client.installation_token(&installation)?.same_as(&token)); // the same token
//! assert_eq!(demo.registry.lookup_count(org.as_str()), 1);
//!
//! // The organization reinstalls the app: the next request finds the new installation.
//! let new = demo.registry.reinstall(installation.as_str()).unwrap();
//! let response = client.send_as_organization(&org, client.request(http::Method::GET, &format!("/organizations/{org}"), None)?)?;
//! assert_eq!(response.status(), 200);
//! assert_eq!((demo.registry.lookup_count(org.as_str()), demo.registry.mint_count(&new)), (2, 1));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Your own `ureq::Agent` can send the rest of the API: [`middleware::InstallationAuth`],
//! [`middleware::OrganizationAuth`] and [`middleware::AppAuth`] are ureq 3 middlewares that add
//! the installation's, the organization's installation's or the app's token to every request for
//! the registry (and to no other host), through this client's token cache. They need no cargo
//! feature: ureq's own middleware trait is all they use.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod client;
mod drive;
pub mod middleware;
mod transport;

pub use builder::ClientBuilder;
pub use client::Client;
pub use icr_app_driver::SharedStore;
pub use transport::{RESOLVE_CACHE_TTL, UreqTransport};

pub use icr_app_core as core;
