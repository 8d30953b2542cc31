//! The async path: [`RedisStore::run`] over [`AsyncLink`]s kept between calls.
//!
//! A call takes an idle connection out of the pool (or opens one), runs its command on it alone,
//! without any lock held across an `.await`, and puts it back only if everything went well (see
//! [`crate::pool`]); a connection is never shared by two calls at once, which is what lets it
//! cap each reply ([`AsyncLink`]). Every call runs under one Tokio timer of
//! [`RedisStore::timeout`], connecting included; a call that times out drops its connection
//! (closing it) and the idle ones. As on the blocking path, a command whose idle connection
//! turns out to be closed is retried once on a new connection (see [`Request::again`]).

use icr_app_core::{Error, StoreCommand, StoreReply};
use redis::AsyncConnectionConfig;

use crate::RedisStore;
use crate::async_link::AsyncLink;
use crate::command::Request;
use crate::error::{Failure, Phase};

/// The idle async connections.
pub(crate) type Pool = crate::pool::Pool<AsyncLink>;

impl RedisStore {
    /// Runs `command` on Redis within the [timeout](Self::timeout) (connecting included); this
    /// is what its
    /// [`AsyncSharedStore`](https://docs.rs/icr-app-driver/latest/icr_app_driver/trait.AsyncSharedStore.html)
    /// implementation (the async client's store) awaits. Must be awaited within a Tokio runtime (with its timer and I/O
    /// drivers, as `#[tokio::main]` makes).
    ///
    /// Connects on first use, keeps a few idle connections between calls (each used by one call
    /// at a time), and reconnects after any failure. Dropping the future abandons the call and
    /// closes its connection.
    ///
    /// # Errors
    /// As [`run_blocking`](Self::run_blocking): [`Error::Store`] naming the cause and the
    /// fix, with the URL's password replaced by `***`.
    pub async fn run(&self, command: &StoreCommand) -> Result<StoreReply, Error> {
        match tokio::time::timeout(self.timeout, self.run_untimed(command)).await {
            Ok(done) => done,
            Err(_elapsed) => {
                // The call's connection went with its future; the idle ones are in doubt too.
                self.nonblocking.clear();
                Err(self.describe(&Failure::TimedOut, Phase::Command))
            }
        }
    }

    async fn run_untimed(&self, command: &StoreCommand) -> Result<StoreReply, Error> {
        let mut request = Request::new(command);
        if let Some(mut link) = self.nonblocking.take() {
            match request.run_async(&mut link).await {
                Ok(reply) => {
                    self.nonblocking.give(link);
                    return Ok(reply);
                }
                Err(failure) => {
                    drop(link);
                    if failure.is_io() {
                        self.nonblocking.clear();
                    }
                    if !failure.is_connection_dropped() {
                        return Err(self.describe(&failure, Phase::Command));
                    }
                    // A closed idle connection: try once on a new one.
                    request = Request::again(command);
                }
            }
        }
        let mut link = self.open_async().await?;
        match request.run_async(&mut link).await {
            Ok(reply) => {
                self.nonblocking.give(link);
                Ok(reply)
            }
            Err(failure) => {
                drop(link);
                if failure.is_io() {
                    self.nonblocking.clear();
                }
                Err(self.describe(&failure, Phase::Command))
            }
        }
    }

    /// A new connection (TCP or unix socket, TLS, `AUTH`, `SELECT`), bounded by the caller's timer.
    async fn open_async(&self) -> Result<AsyncLink, Error> {
        let config = AsyncConnectionConfig::new().set_response_timeout(Some(self.timeout));
        AsyncLink::open(self.client.get_connection_info(), &self.tls, config)
            .await
            .map_err(|e| self.describe(&Failure::Redis(e), Phase::Connect))
    }
}
