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

use crate::async_link::AsyncLink;
use crate::cluster::Cluster;
use crate::command::Request;
use crate::error::{Failure, Phase};
use crate::{Mode, RedisStore, sentinel};

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
                // The call's connection went with its future; the idle ones are in doubt too
                // (and with sentinels, which server is the primary).
                self.failed(&Failure::TimedOut);
                if let Mode::Cluster(cluster) = &self.mode {
                    cluster.keep_async(None);
                }
                Err(self.describe(&Failure::TimedOut, Phase::Command))
            }
        }
    }

    async fn run_untimed(&self, command: &StoreCommand) -> Result<StoreReply, Error> {
        if let Mode::Cluster(cluster) = &self.mode {
            return self.run_cluster_async(cluster, command).await;
        }
        let mut request = self.request(command);
        if let Some(mut link) = self.nonblocking.take() {
            match request.run_async(&mut link).await {
                Ok(reply) => {
                    self.nonblocking.give(link);
                    return Ok(reply);
                }
                Err(failure) => {
                    drop(link);
                    self.failed(&failure);
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
                self.failed(&failure);
                Err(self.describe(&failure, Phase::Command))
            }
        }
    }

    /// A new connection (TCP or unix socket, TLS, `AUTH`, `SELECT`), bounded by the caller's
    /// timer; with sentinels, to the primary they name, checked to be one.
    async fn open_async(&self) -> Result<AsyncLink, Error> {
        let config = AsyncConnectionConfig::new().set_response_timeout(Some(self.timeout));
        let connect = |failure: Failure| {
            self.failed(&failure);
            self.describe(&failure, Phase::Connect)
        };
        let info = match &self.mode {
            Mode::Single(client) => client.get_connection_info().clone(),
            Mode::Sentinel { sentinels, primary } => match primary.get() {
                Some(info) => info,
                None => {
                    let info = sentinel::discover_async(sentinels, &self.tls, &config)
                        .await
                        .map_err(connect)?;
                    primary.set(Some(info.clone()));
                    info
                }
            },
            Mode::Cluster(_) => return Err(connect(Failure::NotPrimary)),
        };
        let mut link = AsyncLink::open(&info, &self.tls, config)
            .await
            .map_err(|e| connect(Failure::Redis(e)))?;
        if matches!(self.mode, Mode::Sentinel { .. }) {
            let role: redis::Value = redis::cmd("ROLE")
                .query_async(link.connection())
                .await
                .map_err(|e| connect(Failure::Redis(e)))?;
            if !sentinel::is_primary(&role) {
                return Err(connect(Failure::NotPrimary));
            }
        }
        Ok(link)
    }

    /// Runs `command` on the cluster's async connection (made by the first call, on its
    /// runtime, and kept; dropped after a failure of the connection, so the next call makes a
    /// new one).
    async fn run_cluster_async(&self, cluster: &Cluster, command: &StoreCommand) -> Result<StoreReply, Error> {
        let mut connection = match cluster.async_connection() {
            Some(connection) => connection,
            None => {
                let client = cluster
                    .client(self.timeout, self.tls_pem.as_deref())
                    .map_err(|e| self.describe(&Failure::Redis(e), Phase::Connect))?;
                let connection = client
                    .get_async_connection()
                    .await
                    .map_err(|e| self.describe(&Failure::Redis(e), Phase::Connect))?;
                cluster.keep_async(Some(connection.clone()));
                connection
            }
        };
        // As on the blocking path: a lease the cluster client sent twice is still this owner's.
        Request::again(command)
            .run_cluster_async(&mut connection)
            .await
            .map_err(|failure| {
                if failure.is_io() {
                    cluster.keep_async(None);
                }
                self.describe(&failure, Phase::Command)
            })
    }
}
