//! # icr-app-reqwest
//!
//! An async client for ICR apps, driving [`icr-app-core`](https://docs.rs/icr-app-core) over
//! [reqwest](https://docs.rs/reqwest) with rustls on tokio: installation tokens minted once,
//! cached and refreshed ahead of expiry (optionally by a background task), and API calls made
//! with them.
//!
//! ```
//! use icr_app_core::{App, AppKey, InstallationId};
//! use icr_app_reqwest::Client;
//! use icr_app_testkit::FakeRegistry;
//!
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // A fake registry on 127.0.0.1 with a demo app and three installations. Against the real
//! // registry, leave out `base_url` and pass your app id and the key from its Credentials tab.
//! let demo = FakeRegistry::demo();
//! let key = AppKey::from_pem(demo.private_key_pem)?;
//! let client = Client::new(App::builder(demo.app_id.clone(), key).base_url(demo.registry.base_url()).build()?)?;
//! let _refresher = client.spawn_refresher(); // renews tokens ahead of expiry until dropped
//!
//! let installation = InstallationId::new(demo.installation_ids[0].clone())?;
//! let token = client.installation_token(&installation).await?; // minted
//! let again = client.installation_token(&installation).await?; // served from the cache
//! assert!(token.same_as(&again));
//! assert_eq!(demo.registry.mint_count(installation.as_str()), 1);
//!
//! let projects: serde_json::Value = client.get_json(&installation, "/projects?limit=10&page=0").await?;
//! assert_eq!(projects["projects"][0]["fullName"], "Sample project 1");
//! client.revoke_all().await?; // on shutdown
//! # Ok(())
//! # }
//! ```
//!
//! A scheduled job usually knows the organization it acts for, not the installation: name the
//! organization wherever an installation goes ([`Client::organization_token`],
//! [`Client::send_as_organization`], [`Client::get_json_as`] with
//! [`TokenScope::Organization`](icr_app_core::TokenScope::Organization), and the middleware's
//! `OrganizationAuth`). Its installation is looked up once
//! ([`Client::installation_for_organization`] does just that; tasks asking at once share one
//! lookup) and followed when the organization reinstalls the app:
//!
//! ```
//! # use icr_app_core::{App, AppKey, InstallationId, OrganizationId};
//! # use icr_app_reqwest::Client;
//! # use icr_app_testkit::FakeRegistry;
//! # #[tokio::main(flavor = "current_thread")]
//! # async fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let demo = FakeRegistry::demo();
//! # let key = AppKey::from_pem(demo.private_key_pem)?;
//! # let client = Client::new(App::builder(demo.app_id.clone(), key).base_url(demo.registry.base_url()).build()?)?;
//! let org = OrganizationId::new(demo.organization_ids[0].clone())?;
//! let token = client.organization_token(&org).await?; // one lookup, one mint
//! let installation = InstallationId::new(demo.installation_ids[0].clone())?;
//! assert!(client.installation_token(&installation).await?.same_as(&token)); // the same token
//! assert_eq!(demo.registry.lookup_count(org.as_str()), 1);
//!
//! // The organization reinstalls the app: the next request finds the new installation.
//! let new = demo.registry.reinstall(installation.as_str()).unwrap();
//! let request = client.request(http::Method::GET, &format!("/organizations/{org}"), None)?;
//! assert_eq!(client.send_as_organization(&org, request).await?.status(), 200);
//! assert_eq!((demo.registry.lookup_count(org.as_str()), demo.registry.mint_count(&new)), (2, 1));
//! # Ok(())
//! # }
//! ```
//!
//! # Features
//!
//! - `middleware` (off by default): `middleware::InstallationAuth`,
//!   `middleware::OrganizationAuth` and `middleware::AppAuth`, a
//!   [`reqwest-middleware`](https://docs.rs/reqwest-middleware) middleware that adds the
//!   installation's, the organization's installation's or the app's token to every request your
//!   own `reqwest` client sends to the
//!   registry (and to no other host), through this client's token cache, dropping a refused
//!   token and sending the request once more.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod builder;
mod client;
mod drive;
#[cfg(feature = "middleware")]
pub mod middleware;
mod refresher;
mod transport;

pub use builder::ClientBuilder;
pub use client::Client;
pub use drive::Driven;
pub use icr_app_driver::{AsyncSharedStore as SharedStore, AsyncSigner, SignFuture, StoreFuture};
pub use refresher::RefresherHandle;
pub use transport::ReqwestTransport;

pub use icr_app_core as core;
