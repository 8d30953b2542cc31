//! # icr-app-core
//!
//! The sans-IO core of the ICR App SDK for the International Carbon Registry
//! (carbonregistry.com). It loads the app's RSA key, signs app JWTs, describes every app
//! endpoint as an [`http::Request`], parses responses into typed models, keeps installation
//! token state, and verifies webhook deliveries.
//!
//! It never does network I/O, reads a clock, spawns, or sleeps: time comes in as a
//! [`Timestamp`] argument, requests go out as `http::Request<Vec<u8>>` and answers come back as
//! `http::Response<Vec<u8>>` (or a reported failure). The `icr-app-ureq` and `icr-app-reqwest`
//! crates drive it over real HTTP; anything else (another runtime, a language binding) can too.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
pub mod app;
pub mod cache;
pub mod clock;
pub mod env;
pub mod error;
pub mod jwt;
pub mod keys;
pub mod models;
pub mod pager;
pub mod response;
pub mod retry;
pub mod secret;
pub mod webhook;

pub use api::{ApiConfig, InstallationId};
pub use app::{App, AppBuilder, CallStep, JwtCall, Refresh, TokenAnswer, TokenScope, TokenStep};
pub use cache::{CacheConfig, Poll, RequestId, Token, TokenCache, TokenState};
pub use clock::{ClockOffset, Timestamp};
pub use error::{ApiMessage, Credential, Error, TransportErrorKind};
pub use jwt::{AppId, AppJwt, JwtSigner};
pub use keys::{AppKey, KeyError, Signer};
pub use models::{
    AccessToken, CreateUserOrganization, CreatedUserOrganization, Installation, InstallationsPage, NewOrganization,
    NewUser, Organization, Pagination, PermissionLevel, Permissions,
};
pub use pager::InstallationPager;
pub use retry::RetryPolicy;
pub use secret::SecretString;
pub use webhook::{EventKind, SIGNATURE_HEADER, WebhookError, WebhookEvent, WebhookSecret};
