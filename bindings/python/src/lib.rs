//! `icr_app._icr_app`: the ICR App SDK core (`icr-app-core`), bound to Python with PyO3.
//!
//! Everything the protocol decides (single flight, refresh ahead of expiry, clock-skew
//! correction, retries, back-off, error messages) is the core's. This module exposes the core's
//! [`App`](app::App) behind one Rust mutex and its operations as Python objects that a driver
//! polls (`poll(now) -> Send | Store | Sleep | Wait | Done`: the core's erased
//! operation, `AnyOperation`, whose steps and results are plain data) and reports back to
//! (`handle_response`, `handle_failure`, `handle_store`, `abandon`); the pure-Python package
//! `icr_app` performs the effects with httpx, and runs the shared store's commands (`Store`) by
//! calling back into this module, which runs them on Redis with the GIL released.
//!
//! Locking rules (the GIL and the core's mutex):
//! - nothing that holds the core's mutex ever needs the GIL: the core's log records are buffered
//!   per thread while it runs and handed to Python's `logging` after the mutex is released, and
//!   no Python object is made while the mutex is held;
//! - a thread that has to wait for the mutex releases the GIL while it waits.

mod app;
mod errors;
mod key;
mod logs;
mod ops;
mod scope;
mod stats;
mod store;
#[cfg(feature = "testkit")]
mod testing;
mod values;
mod webhook;

use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::prelude::*;

/// Bumped in a child process after `fork()`: every `App` then rebuilds its core (fresh cache, no
/// mint in flight, an unlocked mutex) the next time it is used, and operations started before the
/// fork refuse to go on.
pub(crate) static FORK_GENERATION: AtomicU64 = AtomicU64::new(0);

pub(crate) fn fork_generation() -> u64 {
    FORK_GENERATION.load(Ordering::Acquire)
}

/// Called by `os.register_at_fork(after_in_child=...)` (see `icr_app/__init__.py`).
#[pyfunction]
fn _after_fork_in_child() {
    FORK_GENERATION.fetch_add(1, Ordering::AcqRel);
    logs::clear();
}

/// The extension module.
#[pymodule]
fn _icr_app(m: &Bound<'_, PyModule>) -> PyResult<()> {
    logs::install();
    errors::register(m)?;
    m.add_class::<app::App>()?;
    m.add_class::<app::TransportPolicy>()?;
    m.add_class::<app::TokenGetter>()?;
    m.add_class::<scope::ByOrganization>()?;
    m.add_class::<values::Token>()?;
    m.add_class::<values::Installation>()?;
    m.add_class::<values::Organization>()?;
    m.add_class::<values::InstallationsPage>()?;
    m.add_class::<ops::Operation>()?;
    m.add_class::<ops::GetToken>()?;
    m.add_class::<ops::GetJwt>()?;
    m.add_class::<ops::CallInstallation>()?;
    m.add_class::<ops::CallInstallationsPage>()?;
    m.add_class::<ops::ListInstallations>()?;
    m.add_class::<ops::SendAs>()?;
    m.add_class::<ops::Revoke>()?;
    m.add_class::<ops::HandleEvent>()?;
    m.add_class::<ops::Forget>()?;
    m.add_class::<ops::RevokeAll>()?;
    m.add_class::<ops::Refresher>()?;
    m.add_class::<ops::SendStep>()?;
    m.add_class::<store::StoreStep>()?;
    m.add_class::<store::StoreReply>()?;
    m.add_class::<stats::Stats>()?;
    m.add_class::<ops::Sign>()?;
    m.add_class::<ops::Sleep>()?;
    m.add_class::<ops::Wait>()?;
    m.add_class::<ops::Done>()?;
    m.add_class::<webhook::WebhookEvent>()?;
    m.add_function(wrap_pyfunction!(webhook::verify_webhook, m)?)?;
    m.add_function(wrap_pyfunction!(_after_fork_in_child, m)?)?;
    m.add("DEFAULT_BASE_URL", icr_app_core::DEFAULT_BASE_URL)?;
    m.add("DEFAULT_API_VERSION", icr_app_core::DEFAULT_API_VERSION)?;
    m.add("SIGNATURE_HEADER", icr_app_core::SIGNATURE_HEADER)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    #[cfg(feature = "testkit")]
    m.add_class::<testing::FakeRegistry>()?;
    m.add_class::<testing::TlsFront>()?;
    m.add_class::<testing::ConnectProxy>()?;
    m.add("HAS_TESTKIT", cfg!(feature = "testkit"))?;
    Ok(())
}
