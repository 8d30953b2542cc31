//! # icr-app-core
//!
//! The sans-IO core of the ICR App SDK for the International Carbon Registry
//! (carbonregistry.com): load the app's RSA key, sign app JWTs, and describe each API call as
//! an [`http::Request`](https://docs.rs/http/1/http/struct.Request.html) for any HTTP client to
//! send.
//!
//! ```
//! use icr_app_core::{App, AppKey, Call, Operation, Step, Timestamp};
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // The key file downloaded from the app's Credentials tab (PEM or DER, PKCS#1 or PKCS#8).
//! let key = AppKey::from_pem(include_str!("../tests/fixtures/keys/rsa2048-pkcs8.pem"))?;
//! let mut app = App::builder("d23967cc-dd16-452b-8af4-869965745978", key).build()?;
//!
//! // The app JWT (RS256), signed for the instant given: the core reads no clock.
//! let now = Timestamp::from_unix_seconds(1_700_000_000);
//! let jwt = app.jwt(now)?;
//! assert_eq!(jwt.token().expose().split('.').count(), 3); // header.claims.signature
//! assert!(jwt.expires_at() > now);
//!
//! // A request, described: `GET /app/installations` (first page), carrying the JWT.
//! let mut call = Call::installations_page(100, 0);
//! let Step::Send { id, request } = call.poll(&mut app, now) else { panic!("the first poll sends") };
//! assert_eq!(request.method(), "GET");
//! assert_eq!(request.uri(), "https://api.carbonregistry.com/app/installations?limit=100&page=0");
//! assert_eq!(request.headers()["authorization"], format!("Bearer {}", jwt.token().expose()));
//!
//! // Send it with any HTTP client and hand the answer back; the call reads it into typed models.
//! let body = br#"{"installations": [], "pagination": {"total": 0, "nextPage": null}}"#;
//! let response = http::Response::builder().status(200).body(body.to_vec())?;
//! call.handle_response(&mut app, id, response, now);
//! let Step::Done(page) = call.poll(&mut app, now) else { panic!("the answer finishes the call") };
//! assert!(page?.installations.is_empty());
//! # Ok(())
//! # }
//! ```
//!
//! Beyond that, it parses responses into typed models, keeps installation token state (one mint
//! per installation, refreshed ahead of expiry), and verifies webhook deliveries.
//!
//! It never does network I/O, reads a clock, spawns, or sleeps: time comes in as a
//! [`Timestamp`] argument, requests go out as `http::Request<Vec<u8>>` and answers come back as
//! `http::Response<Vec<u8>>` (or a reported failure). The
//! [`icr-app-ureq`](https://docs.rs/icr-app-ureq) (blocking) and
//! [`icr-app-reqwest`](https://docs.rs/icr-app-reqwest) (async) crates drive it over real HTTP;
//! anything else (another runtime, a language binding) can too.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod api;
mod app;
mod cache;
mod clock;
mod error;
mod jwt;
mod keys;
mod models;
mod ops;
mod pager;
mod redact;
pub mod response;
mod retry;
mod secret;
mod signer;
mod transport;
pub mod webhook;

pub use api::{ApiConfig, DEFAULT_API_VERSION, DEFAULT_BASE_URL, InstallationId, OtherHost, Route};
pub use app::{App, AppBuilder, TokenScope};
pub use cache::{CacheConfig, RequestId, Token, TokenState};
pub use clock::{ClockOffset, Timestamp};
pub use error::{ApiMessage, Credential, Error, TransportErrorKind};
pub use jwt::{AppId, AppJwt, JwtSigner, encode_compact};
pub use keys::{AppKey, KeyError};
pub use models::{
    AccessToken, CreateUserOrganization, CreatedUserOrganization, Installation, InstallationsPage, NewOrganization,
    NewUser, Organization, Pagination, PermissionLevel, Permissions,
};
pub use ops::{Call, GetToken, ListInstallations, Operation, Refresher, Revoke, RevokeAll, SendAs, Step};
pub use pager::{DEFAULT_PAGE_SIZE, InstallationPager};
pub use redact::excerpt;
pub use retry::RetryPolicy;
pub use secret::SecretString;
pub use signer::Signer;
pub use transport::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_BODY, DEFAULT_TIMEOUT, TransportPolicy};
pub use webhook::{EventKind, SIGNATURE_HEADER, WebhookError, WebhookEvent, WebhookSecret};
