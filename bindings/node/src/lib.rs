//! `icr-app-node`: the ICR App SDK core (`icr-app-core`) as a Node.js addon (napi-rs 3).
//!
//! Everything the protocol decides (single flight, refresh ahead of expiry, clock-skew
//! correction, retries, back-off, error messages) is the core's. This addon exposes the core's
//! [`App`](icr_app_core::App) as [`NativeApp`] and its erased operation
//! ([`AnyOperation`](icr_app_core::AnyOperation)) as [`NativeOperation`], whose `poll()`
//! returns each step (`send`, `sleep`, `wait`, `sign`, `store`, `done`, `error`) as one JSON
//! text and whose `handleResponse`, `handleFailure`, `handleSignature`,
//! `handleStore` and `abandon` report back. The JavaScript layer (`index.js`) performs the
//! effects: `fetch` for a `send`, timers for `sleep` and `wait`, the user's signer for `sign`,
//! libuv's thread pool for a shared store's command (`runStore`). Every other call into the
//! addon is synchronous and short: nothing here does I/O on the event loop or blocks it.

#![deny(clippy::all)]

mod app;
mod errors;
mod ops;
#[cfg(feature = "testkit")]
mod testing;
mod webhook;

pub use app::{AppOptions, NativeApp, Network, Policy, Route, Stats};
pub use errors::ErrorInfo;
pub use ops::{NativeOperation, NativeStoreReply, StoreTask};
#[cfg(feature = "testkit")]
pub use testing::{FaultOptions, NativeConnectProxy, NativeFakeRegistry, NativeTlsFront, RecordedRequest};
pub use webhook::{WebhookEvent, verify_webhook};
