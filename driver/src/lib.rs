//! # icr-app-driver
//!
//! The drive-loop helpers shared by the SDK's drivers: the blocking client (`icr-app-ureq`), the
//! async client (`icr-app-reqwest`), the Redis token store (`icr-app-redis`) and the bindings. The
//! core ([`icr-app-core`](https://docs.rs/icr-app-core)) decides everything and touches no clock,
//! socket or store; a driver performs what it asks and reports back (see the core's "Driving the
//! core yourself"). What every driver needs for that beyond its own I/O is here, once, as rustls
//! keeps its `complete_io` loop apart from the protocol:
//!
//! - [`now`]: the wall clock passed to the core, read at the kernel tick's resolution;
//! - [`Running`]: the guard that abandons an operation on every way out of the loop but `Done`;
//! - [`SharedStore`] and [`AsyncSharedStore`]: the token store a fleet shares, as a blocking and
//!   an async driver runs it ([`run_store`], [`run_async_store`]), and the lease owner's
//!   [`owner_seed`];
//! - [`report_sent`] and [`date_only`]: an exchange's outcome reported to its operation, and the
//!   registry's clock learned from an answer no operation asked for;
//! - [`AsyncSigner`], [`run_signer`] and [`run_async_signer`]: the `Sign` step of an app whose
//!   key is elsewhere, performed with the signer a client was given (and [`check_signer`]);
//! - [`ProxySetting`], [`extra_roots`] and [`through_proxy`]: the proxy of each URL (the core's
//!   [`Proxies`](icr_app_core::Proxies) from the environment read here), extra trusted CA
//!   certificates (`ca_file`, `SSL_CERT_FILE`), and errors that name the proxy;
//! - with the feature `tracing`, `RequestEvent`: the `request` event of each exchange.
//!
//! It depends on no HTTP client and no async runtime.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

mod clock;
#[cfg(feature = "tracing")]
mod event;
mod exchange;
mod net;
mod running;
mod signer;
mod store;

pub use clock::now;
#[cfg(feature = "tracing")]
pub use event::RequestEvent;
pub use exchange::{date_only, report_sent};
pub use net::{PROXY_ENV, ProxySetting, SSL_CERT_FILE, extra_roots, extra_roots_with, load_ca_file, through_proxy};
pub use running::Running;
pub use signer::{AsyncSigner, HeldSigner, SignFuture, check_signer, run_async_signer, run_signer};
pub use store::{AsyncSharedStore, SharedStore, StoreFuture, owner_seed, run_async_store, run_store};
