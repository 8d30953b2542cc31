//! The async path: [`RedisStore::run`] over one multiplexed connection that every task shares.
//!
//! The connection is opened on first use and dropped after any failure, so the next call opens
//! a new one. No lock is held across an `.await`: a call clones the shared connection (a handle
//! to its driver task) and lets go of the lock. Every call runs under one Tokio timer of
//! [`RedisStore::timeout`], connecting included. As on the blocking path, a command whose shared
//! connection turns out to be closed is retried once on a new connection (see
//! [`Request::again`]).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, PoisonError};

use icr_app_core::{Error, StoreCommand, StoreReply};
use redis::AsyncConnectionConfig;
use redis::aio::MultiplexedConnection;

use crate::RedisStore;
use crate::command::Request;
use crate::error::{Failure, Phase};

/// The connection every task shares, numbered so that a task that saw it fail drops that one and
/// not a newer one.
#[derive(Default)]
pub(crate) struct Shared {
    slot: Mutex<Option<(u64, MultiplexedConnection)>>,
    next: AtomicU64,
}

impl Shared {
    fn current(&self) -> Option<(u64, MultiplexedConnection)> {
        self.slot.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    /// Shares `connection` if none is shared; returns its number.
    fn offer(&self, connection: MultiplexedConnection) -> (u64, MultiplexedConnection) {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.is_none() {
            *slot = Some((id, connection.clone()));
        }
        (id, connection)
    }

    /// Drops connection `id` if it is the shared one.
    fn reset(&self, id: u64) {
        let mut slot = self.slot.lock().unwrap_or_else(PoisonError::into_inner);
        if slot.as_ref().is_some_and(|(shared, _)| *shared == id) {
            *slot = None;
        }
    }

    /// Drops the shared connection, whichever it is.
    fn reset_any(&self) {
        *self.slot.lock().unwrap_or_else(PoisonError::into_inner) = None;
    }
}

impl RedisStore {
    /// Runs `command` on Redis within the [timeout](Self::timeout) (connecting included); this
    /// is what the async client's
    /// [`SharedStore`](https://docs.rs/icr-app-reqwest/latest/icr_app_reqwest/trait.SharedStore.html)
    /// implementation awaits. Must be awaited within a Tokio runtime (with its timer and I/O
    /// drivers, as `#[tokio::main]` makes).
    ///
    /// Tasks share one multiplexed connection, opened on first use and opened again after any
    /// failure. Dropping the future abandons the call.
    ///
    /// # Errors
    /// As [`run_blocking`](Self::run_blocking): [`Error::Store`] naming the cause and the
    /// fix, with the URL's password replaced by `***`.
    pub async fn run(&self, command: &StoreCommand) -> Result<StoreReply, Error> {
        match tokio::time::timeout(self.timeout, self.run_untimed(command)).await {
            Ok(done) => done,
            Err(_elapsed) => {
                // Whatever was in flight is abandoned; its connection is in doubt.
                self.shared.reset_any();
                Err(self.describe(&Failure::TimedOut, Phase::Command))
            }
        }
    }

    async fn run_untimed(&self, command: &StoreCommand) -> Result<StoreReply, Error> {
        let mut request = Request::new(command);
        if let Some((id, mut connection)) = self.shared.current() {
            match request.run_async(&mut connection).await {
                Ok(reply) => return Ok(reply),
                Err(failure) => {
                    self.shared.reset(id);
                    if !failure.is_connection_dropped() {
                        return Err(self.describe(&failure, Phase::Command));
                    }
                    request = Request::again(command);
                }
            }
        }
        let (id, mut connection) = self.open_async().await?;
        request.run_async(&mut connection).await.map_err(|failure| {
            self.shared.reset(id);
            self.describe(&failure, Phase::Command)
        })
    }

    async fn open_async(&self) -> Result<(u64, MultiplexedConnection), Error> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(self.timeout))
            .set_response_timeout(Some(self.timeout));
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await
            .map_err(|e| self.describe(&Failure::Redis(e), Phase::Connect))?;
        Ok(self.shared.offer(connection))
    }
}
