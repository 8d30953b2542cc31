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
//!
//! # Driving the core yourself
//!
//! Every user-level action is an [`Operation`] (or, for a binding that wants plain data and
//! one concrete type, an [`AnyOperation`]: see "Any operation, in plain data" below):
//! [`GetToken`] (an installation, organization or
//! app token), [`Call`] (one app-JWT request: a page of installations, one installation, the
//! installation on an organization, create a user and organization, or any request you build),
//! [`ListInstallations`] (every page), [`SendAs`] (any request as an installation, an
//! organization or the app), [`Revoke`], [`RevokeAll`], [`Refresher`] (background renewal) and
//! [`GetJwt`] (the app JWT itself).
//! The core decides everything (attempts and the wait budget, back-off with jitter and
//! `Retry-After`, the clock-skew retry, dropping a refused token and minting again once, single
//! flight per scope, finding an organization's installation and following it when it is
//! reinstalled, pagination, refresh ahead of expiry, one signature at a time for an app whose
//! key is elsewhere); a driver performs four effects (five with a shared token store, six for
//! an app without a key) and reports back. The contract:
//!
//! 1. Keep one [`App`] per app behind one lock, shared by every operation. Hold the lock only
//!    while calling into the core, never while sending, sleeping or waiting.
//! 2. Start an operation (`GetToken::new(scope, None)`, ...) and call [`Operation::poll`] with
//!    the local time. It returns a [`Step`]:
//!    - [`Step::Send`] `{ id, request }`: send `request` (apply [`TransportPolicy::check`]
//!      first, follow no redirect, cap the body, end the exchange within the policy's timeout;
//!      a driver without TLS refuses `https` itself), then report for that `id`:
//!      [`Operation::handle_response`] for any response, whatever its status, with every header;
//!      [`Operation::handle_failure`] when none came (refused, connection failed or dropped,
//!      timeout: an [`Error::Transport`]);
//!    - [`Step::Store`] `{ id, command }`: only after [`App::attach_store`]: run the
//!      [`StoreCommand`] on the shared store (without the lock, within a short timeout), then
//!      report the [`StoreReply`] or the failure with [`Operation::handle_store`]. A failure is
//!      never the caller's error: the core mints without the store for a while;
//!    - [`Step::Sign`] `{ id, message }`: only for an app built with
//!      [`App::builder_without_key`]: sign `message` with the app's key wherever it is (a KMS,
//!      an HSM, a signer in another language; RS256), without the lock, and report the
//!      signature or the signer's failure with [`Operation::handle_signature`];
//!    - [`Step::Sleep`] `{ until }`: sleep until then;
//!    - [`Step::Wait`] `{ until, change }`: another operation is minting a token (or signing
//!      the JWT) this one needs: wait until any operation on the same `App` reports back or is
//!      abandoned, that is until [`App::changes`] differs from `change`, or until `until`.
//!      Decide to wait under the same lock as the poll (compare the counter under it, or use a
//!      condition variable on that lock), so that no report is missed. A driver that runs one
//!      operation at a time can treat it as `Sleep` (only a [`Refresher`] with nothing due
//!      then waits);
//!    - [`Step::Done`] `(result)`: finished, for good: a finished operation never acts
//!      again (a later poll returns `Done(Err(..))` saying it already finished, later reports
//!      change nothing); to do the same again, start a new operation.
//! 3. After every call into the core that moved [`App::changes`] (every report and abandon, and
//!    a poll that ended a mint or lookup others wait for), wake the operations that are waiting
//!    (a driver that compares the counter needs nothing more: the core moves it).
//! 4. On every way out before `Done` (an error of the driver's own, a panic, a dropped future),
//!    call [`Operation::abandon`]: the operation releases what it holds at once (a mint in
//!    flight, so other callers mint again instead of waiting for the fetch timeout). A guard
//!    whose `Drop` does it covers every way out.
//!
//! A cache hit may be answered before any operation is made: [`App::hit`] is `GetToken`'s
//! first step (the token it would hand out with nothing to perform, or `None`: then start the
//! `GetToken`). The clients and the Python binding do this; it is the same decision, taken by
//! the core.
//!
//! The canonical loop, for a blocking driver (`send` is your HTTP stack; this example answers
//! from a canned registry):
//!
//! ```
//! use std::sync::{Condvar, Mutex};
//! use std::time::SystemTime;
//! use icr_app_core::{App, AppKey, Error, GetToken, Operation, Step, Timestamp, TokenScope};
//!
//! fn drive<O: Operation>(
//!     app: &Mutex<App>,
//!     changed: &Condvar,
//!     mut op: O,
//!     send: impl Fn(http::Request<Vec<u8>>) -> Result<http::Response<Vec<u8>>, Error>,
//! ) -> Result<O::Output, Error> {
//!     let now = || Timestamp::from_system_time(SystemTime::now());
//!     let mut guard = app.lock().unwrap();
//!     loop {
//!         let seen = guard.changes();
//!         let step = op.poll(&mut guard, now());
//!         if guard.changes() != seen {
//!             changed.notify_all(); // this poll ended something others wait for
//!         }
//!         match step {
//!             Step::Done(result) => return result,
//!             Step::Send { id, request } => {
//!                 drop(guard);
//!                 let answer = send(request);
//!                 guard = app.lock().unwrap();
//!                 match answer {
//!                     Ok(response) => op.handle_response(&mut guard, id, response, now()),
//!                     Err(error) => op.handle_failure(&mut guard, id, error, now()),
//!                 }
//!                 changed.notify_all();
//!             }
//!             // Only with a store attached (`App::attach_store`), or for an app built without
//!             // a key: run the command or sign like a send, without the lock, and report.
//!             Step::Store { id, .. } => {
//!                 op.handle_store(&mut guard, id, Err(Error::config("store", "none")), now());
//!                 changed.notify_all();
//!             }
//!             Step::Sign { id, .. } => {
//!                 op.handle_signature(&mut guard, id, Err(Error::config("signer", "none")), now());
//!                 changed.notify_all();
//!             }
//!             Step::Sleep { until } => {
//!                 drop(guard);
//!                 std::thread::sleep(until.saturating_since(now()));
//!                 guard = app.lock().unwrap();
//!             }
//!             Step::Wait { until, .. } => {
//!                 let timeout = until.saturating_since(now());
//!                 guard = changed.wait_timeout(guard, timeout).unwrap().0;
//!             }
//!         }
//!     }
//!     // A real driver also abandons `op` on every early way out (see point 4 above).
//! }
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let key = AppKey::from_pem(include_str!("../tests/fixtures/keys/rsa2048-pkcs8.pem"))?;
//! let app = Mutex::new(App::builder("67890", key).build()?);
//! let registry = |request: http::Request<Vec<u8>>| {
//!     assert_eq!(request.uri().path(), "/app/installations/i-1/accessTokens");
//!     let now = Timestamp::from_system_time(SystemTime::now());
//!     let body = format!(
//!         r#"{{"token":"crs_0123","createdAt":"{}","expiresAt":"{}","permissions":{{}}}}"#,
//!         now.to_rfc3339(),
//!         now.plus(std::time::Duration::from_secs(7200)).to_rfc3339()
//!     );
//!     Ok(http::Response::builder().status(200).body(body.into_bytes()).unwrap())
//! };
//! let scope = TokenScope::Installation(icr_app_core::InstallationId::new("i-1")?);
//! let token = drive(&app, &Condvar::new(), GetToken::new(scope, None), registry)?;
//! assert_eq!(token.access_token().permissions.len(), 0);
//! # Ok(())
//! # }
//! ```
//!
//! `icr-app-ureq` and `icr-app-reqwest` are exactly this loop (with the guard), over ureq with a
//! `Condvar` and over reqwest with a `tokio::sync::watch` change counter;
//! `core/examples/std_driver.rs` is the same over a bare `std::net::TcpStream`.
//!
//! ## Any operation, in plain data
//!
//! A binding to another language (the Python package, the C ABI, the Node package) or a driver
//! that is not a Rust generic drives [`AnyOperation`] instead: one concrete type over every
//! operation, whose [`AnyStep::Send`] carries a [`PlainRequest`] (method, URL, `(name, value)`
//! header pairs, body, and its [`Purpose`]: a mint, a lookup, an app call, the caller's own
//! request, a revocation), whose answer comes back as a [`PlainResponse`] (status, header pairs,
//! body) or as a failure's [`TransportErrorKind`] and message, and whose result is one
//! [`Outcome`]. Errors carry a stable [`ErrorCode`], the HTTP status and `Retry-After`. The loop
//! below is what a C or JavaScript caller writes: every value crossing it is a number, a string
//! or bytes. Its app has no key (the signature is one more step, performed here by a stand-in
//! for a KMS), and it waits by comparing two numbers.
//!
//! ```
//! use icr_app_core::{AnyOperation, AnyStep, App, Outcome, PlainResponse, Timestamp};
//! use icr_app_core::{InstallationId, TokenScope, TransportErrorKind};
//!
//! /// Your HTTP stack: method, URL, header pairs and body in; status, header pairs and body out,
//! /// or the kind and text of a failure.
//! fn http(
//!     method: &str,
//!     url: &str,
//!     _headers: &[(String, String)],
//!     _body: &[u8],
//!     now_ms: i64,
//! ) -> Result<(u16, Vec<(String, String)>, Vec<u8>), (&'static str, String)> {
//!     assert_eq!((method, url), ("POST", "https://api.carbonregistry.com/app/installations/i-1/accessTokens"));
//!     let now = Timestamp::from_unix_millis(now_ms);
//!     let body = format!(
//!         r#"{{"token":"crs_0123","createdAt":"{}","expiresAt":"{}","permissions":{{}}}}"#,
//!         now.to_rfc3339(),
//!         now.plus(std::time::Duration::from_secs(7200)).to_rfc3339()
//!     );
//!     Ok((201, vec![("content-type".into(), "application/json".into())], body.into_bytes()))
//! }
//!
//! /// Your signer (a KMS, an HSM, a function in another language): the RS256 signature of
//! /// `message`, or why there is none.
//! fn sign(message: &[u8]) -> Result<Vec<u8>, String> {
//! #   let key = icr_app_core::AppKey::from_pem(include_str!("../tests/fixtures/keys/rsa2048-pkcs8.pem")).unwrap();
//! #   use icr_app_core::Signer as _;
//!     key.sign_rs256(message).map_err(|e| e.to_string())
//! }
//!
//! /// Your clock, in Unix milliseconds, and your way to sleep.
//! fn now_ms() -> i64 { 1_700_000_000_000 }
//! fn sleep_until(_ms: i64) {}
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let mut app = App::builder_without_key("67890").build()?;
//! let at = |ms| Timestamp::from_unix_millis(ms);
//!
//! let scope = TokenScope::Installation(InstallationId::new("i-1")?);
//! let mut op = AnyOperation::token(scope, None);
//! let outcome = loop {
//!     match op.poll(&mut app, at(now_ms())) {
//!         AnyStep::Send { id, request } => match http(&request.method, &request.url, &request.headers, &request.body, now_ms()) {
//!             Ok((status, headers, body)) => {
//!                 op.handle_response(&mut app, id, PlainResponse::new(status, headers, body), at(now_ms()))
//!             }
//!             Err((kind, message)) => {
//!                 op.handle_failure(&mut app, id, TransportErrorKind::from_name(kind), &message, at(now_ms()))
//!             }
//!         },
//!         AnyStep::Sign { id, message } => op.handle_signature(&mut app, id, sign(&message), at(now_ms())),
//!         // Only with a shared store attached (`App::attach_store`).
//!         AnyStep::Store { id, .. } => {
//!             op.handle_store(&mut app, id, Err(icr_app_core::Error::config("store", "none")), at(now_ms()))
//!         }
//!         AnyStep::Sleep { until } => sleep_until(until.unix_millis()),
//!         // Another operation on this app is minting or signing what this one needs: poll again
//!         // once the counter has moved, or at `until` (one operation alone just sleeps).
//!         AnyStep::Wait { until, change } => {
//!             while app.changes() == change && now_ms() < until.unix_millis() {
//!                 sleep_until(now_ms() + 10);
//! #               break;
//!             }
//!         }
//!         AnyStep::Done(result) => break result,
//!     }
//! };
//! match outcome {
//!     Ok(Outcome::Token(token)) => assert_eq!(token.secret().expose(), "crs_0123"),
//!     Ok(_) => unreachable!("a token operation ends with a token"),
//!     Err(error) => panic!("{} ({}): {error}", error.code(), error.status().unwrap_or(0)),
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Acting for an organization
//!
//! An installation id changes when an organization uninstalls and reinstalls the app; the
//! organization's id does not. Wherever a scope is taken, name the organization instead
//! ([`TokenScope::Organization`] with an [`OrganizationId`]): the core looks its installation up
//! (`GET /app/organizations/{id}/installation`, once however many operations ask; the others
//! [`Step::Wait`]), remembers it, and mints and caches the token as that installation's (one
//! token, whichever way it was asked for). When a mint for the remembered installation answers
//! 404 (a request refused with 401 drops its token first, and its mint then meets the 404), the
//! core forgets it, looks the organization up once more and carries on with the new
//! installation; a second 404 is the caller's error. An organization without the app is
//! [`Error::NotFound`] with `organization` set, whose message says the app is not installed
//! there. [`Call::installation_for_organization`] returns the whole installation, and is
//! remembered too.
//!
//! For a driver nothing changes: the lookup is one more [`Step::Send`] of the same operation
//! (and [`Step::Store`]s with a store). Pass the organization's scope wherever a scope goes,
//! [`App::hit`] and [`App::invalidate`] included (a middleware that saw a 401 drops the token
//! by the scope it asked with); an organization's hit costs one more map lookup.
//!
//! ```
//! # use icr_app_core::{App, AppKey, GetToken, Operation, OrganizationId, Step, Timestamp, TokenScope};
//! # let key = AppKey::from_pem(include_str!("../tests/fixtures/keys/rsa2048-pkcs8.pem"))?;
//! let mut app = App::builder("67890", key).build()?;
//! let now = Timestamp::from_unix_seconds(1_700_000_000);
//! let org = TokenScope::Organization(OrganizationId::new("3f1c2b9e-7d3f-4c1d-9a0e-5b0f7c1e2a44")?);
//! let mut op = GetToken::new(org.clone(), None);
//! let Step::Send { id, request } = op.poll(&mut app, now) else { panic!("it looks up first") };
//! assert_eq!(request.uri().path(), "/app/organizations/3f1c2b9e-7d3f-4c1d-9a0e-5b0f7c1e2a44/installation");
//!
//! // Another caller for the same organization waits for that lookup.
//! assert!(matches!(GetToken::new(org, None).poll(&mut app, now), Step::Wait { .. }));
//!
//! // The registry names the installation: the operation mints for it.
//! let found = http::Response::builder().status(200).body(br#"{"id":"i-1"}"#.to_vec())?;
//! op.handle_response(&mut app, id, found, now);
//! let Step::Send { request, .. } = op.poll(&mut app, now) else { panic!("then it mints") };
//! assert_eq!(request.uri().path(), "/app/installations/i-1/accessTokens");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Sharing tokens across processes
//!
//! With [`App::attach_store`] (the clients' `Client::builder(app).store(..)` does it) the
//! operations use a shared store, described as [`StoreCommand`]s a driver runs (Redis with
//! `icr-app-redis`): a local miss reads the scope's entry, one process takes the lease and mints,
//! the others read what it stored; a refresh ahead of expiry is shared the same way. An
//! organization's installation is shared too: one process looks it up (under the same kind of
//! lease) and stores its id, the others read it instead of looking; a process that finds it gone
//! never reads that id back, and stores the new one once found. Tokens and ids are
//! sealed (AES-256-GCM under a key derived with HKDF from the app's private key, the entry's name
//! as associated data), names are namespaced by registry and app, and a store that fails is set
//! aside (one warning per outage) while the process mints alone.
//!
//! # Tracing and metrics
//!
//! Every fetch of a token (span `mint`), JWT call (`call`, an organization's lookup included),
//! request sent as a scope (`send_as`)
//! and revocation (`revoke`) is a `tracing` span with target `icr_app` at DEBUG, with its scope,
//! attempt, status and, for a mint, where the token came from and how long it took on the
//! core's clock. Retries are WARN events with their cause and wait, clock-skew resends and
//! refused tokens INFO, giving up WARN, a failing shared store WARN once per outage. No field
//! ever holds a key, a JWT or a token.
//!
//! [`App::stats`] counts what happened; with the `metrics` feature the same counters go to the
//! [`metrics`](https://docs.rs/metrics) facade (`icr_app_hits_total`, `icr_app_mints_total`,
//! `icr_app_failures_total{kind}`, ...):
//!
//! ```
//! # use icr_app_core::{App, AppKey, GetToken, Operation, Step, Timestamp, TokenScope};
//! # let key = AppKey::from_pem(include_str!("../tests/fixtures/keys/rsa2048-pkcs8.pem"))?;
//! let mut app = App::builder("67890", key).build()?;
//! let now = Timestamp::from_unix_seconds(1_700_000_000);
//! let Step::Send { .. } = GetToken::new(TokenScope::App, None).poll(&mut app, now) else { panic!() };
//! let stats = app.stats();
//! assert_eq!((stats.misses, stats.mints, stats.hits), (1, 1, 0));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Cargo features
//!
//! - `aws-lc-rs` (off by default): [`AppKey`] signs the app JWT with
//!   [aws-lc-rs](https://docs.rs/aws-lc-rs) instead of *ring*, the choice rustls offers for its
//!   crypto provider, made here when the crate is compiled ([`AppKey::CRYPTO_PROVIDER`] says
//!   which signs). A fresh JWT (RSA-2048) takes about 320 µs instead of 710 µs on the machine
//!   of the project's BENCHMARKS.md, where OpenSSL signs in 333 µs. The JWTs are byte for byte
//!   the same (RS256 is deterministic); *ring* still checks every key, so the same keys load
//!   with the same [`KeyError`]s (aws-lc-rs also refuses a key whose private exponent does not
//!   fit), and still derives the shared store's sealing key (the same bytes in both builds).
//!   AWS-LC is C and assembly: on Linux x86_64 the `cc` crate builds it with the system's C
//!   compiler (no cmake, no bindgen). Cargo unifies features, so one crate that enables it
//!   switches every `AppKey` in the build:
//!   `icr-app-core = { version = "0.1", features = ["aws-lc-rs"] }`.
//! - `metrics`: the [`Stats`] counters also through the `metrics` facade.
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
mod proxy;
mod proxy_config;
mod redact;
pub mod response;
mod retry;
mod secret;
mod signer;
mod stats;
mod store;
mod transport;
pub mod webhook;

pub use api::{ApiConfig, DEFAULT_API_VERSION, DEFAULT_BASE_URL, InstallationId, OrganizationId, OtherHost, Route};
pub use app::{App, AppBuilder, TokenScope};
pub use cache::{CacheConfig, Token, TokenState};
pub use clock::{ClockOffset, Timestamp};
pub use error::{ApiMessage, Credential, Error, ErrorCode, TransportErrorKind};
pub use jwt::{AppId, AppJwt, JwtSigner, encode_compact};
pub use keys::{AppKey, KeyError};
pub use models::{
    AccessToken, CreateUserOrganization, CreatedUserOrganization, Installation, InstallationsPage, NewOrganization,
    NewUser, Organization, Pagination, PermissionLevel, Permissions,
};
pub use ops::{
    AnyOperation, AnyStep, Call, Forget, GetJwt, GetToken, ListInstallations, Operation, Outcome, PlainRequest,
    PlainResponse, Purpose, Refresher, RequestId, Revoke, RevokeAll, SendAs, Step,
};
pub use pager::{DEFAULT_PAGE_SIZE, InstallationPager};
pub use proxy::ProxyEnv;
pub use proxy_config::{PROXY_VARIABLES, Proxies, ProxySource, ProxyUrl, no_proxy_matches};
pub use redact::excerpt;
pub use retry::RetryPolicy;
pub use secret::SecretString;
pub use signer::Signer;
pub use stats::Stats;
pub use store::{MAX_TTL_MS, StoreCommand, StoreReply, StoreSettings};
pub use transport::{DEFAULT_CONNECT_TIMEOUT, DEFAULT_MAX_BODY, DEFAULT_TIMEOUT, TransportPolicy};
pub use webhook::{EventKind, SIGNATURE_HEADER, WebhookError, WebhookEvent, WebhookSecret};
