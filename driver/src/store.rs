//! [`SharedStore`] and [`AsyncSharedStore`]: a token store shared by every process of a fleet,
//! for blocking and for async drivers, and what a driver does with one.

use std::collections::hash_map::RandomState;
use std::fmt;
use std::future::Future;
use std::hash::BuildHasher;
use std::pin::Pin;

use icr_app_core::{Error, StoreCommand, StoreReply, StoreSettings};

/// A shared token store a blocking driver runs the core's [`StoreCommand`]s on, so that the
/// processes sharing it mint one token per installation between them (`icr-app-redis`'s
/// `RedisStore`, or your own). Every decision is the core's: run the command, within a short
/// timeout, and return the reply or why there is none.
///
/// `icr_app_ureq::SharedStore` is this trait.
pub trait SharedStore: Send + Sync + fmt::Debug {
    /// Runs `command` (see [`StoreCommand`] for what each means).
    fn run(&self, command: &StoreCommand) -> Result<StoreReply, Error>;

    /// How the core uses the store (the lease's time, the pause after a failure).
    fn settings(&self) -> StoreSettings {
        StoreSettings::default()
    }
}

/// What [`AsyncSharedStore::run`] returns.
pub type StoreFuture<'a> = Pin<Box<dyn Future<Output = Result<StoreReply, Error>> + Send + 'a>>;

/// A shared token store an async driver runs the core's [`StoreCommand`]s on, so that the
/// processes sharing it mint one token per installation between them (`icr-app-redis`'s
/// `RedisStore`, or your own). Every decision is the core's: run the command, within a short
/// timeout, and return the reply or why there is none.
///
/// `icr_app_reqwest::SharedStore` is this trait.
pub trait AsyncSharedStore: Send + Sync + fmt::Debug {
    /// Runs `command` (see [`StoreCommand`] for what each means).
    fn run<'a>(&'a self, command: &'a StoreCommand) -> StoreFuture<'a>;

    /// How the core uses the store (the lease's time, the pause after a failure).
    fn settings(&self) -> StoreSettings {
        StoreSettings::default()
    }
}

/// Runs a `Store` step's `command` on the driver's store, if it has one. The core asks only
/// when a store was attached, so `None` is the driver's own mistake, reported as the store's
/// failure (which the core survives by minting alone).
pub fn run_store(store: Option<&dyn SharedStore>, command: &StoreCommand) -> Result<StoreReply, Error> {
    match store {
        Some(store) => store.run(command),
        None => Err(no_store()),
    }
}

/// [`run_store`] for an async driver.
pub async fn run_async_store(
    store: Option<&dyn AsyncSharedStore>,
    command: &StoreCommand,
) -> Result<StoreReply, Error> {
    match store {
        Some(store) => store.run(command).await,
        None => Err(no_store()),
    }
}

fn no_store() -> Error {
    Error::config("shared token store", "none is attached to this client")
}

/// The seed of this process's lease owner id, for
/// [`App::attach_store`](icr_app_core::App::attach_store): it must differ between the processes
/// sharing a store, so it is a per-process random seed.
pub fn owner_seed() -> u64 {
    RandomState::new().hash_one(std::process::id())
}
