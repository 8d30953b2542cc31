//! The blocking path: [`RedisStore::run_blocking`] over [`Link`]s kept between calls.
//!
//! A call takes an idle connection out of the pool (or opens one), runs its command without any
//! lock held, and puts the connection back only if everything went well (see [`crate::pool`]).
//! So concurrent callers never wait on each other's I/O, a Redis that went away costs each
//! caller at most one call, and the next call reconnects.
//!
//! Every read and write of a call, connecting included, ends by the call's deadline, however
//! slowly the server sends (see [`Link`]).
//!
//! A command whose idle connection turns out to be closed (Redis restarted, or closed it after
//! its `timeout`) is retried once on a new connection within the same deadline; see
//! [`Request::again`] for why running it twice is harmless.

use std::time::Instant;

use icr_app_core::{Error, StoreCommand, StoreReply};

use redis::ConnectionInfo;

use crate::cluster::Cluster;
use crate::command::Request;
use crate::error::{Failure, Phase};
use crate::link::Link;
use crate::{Mode, RedisStore, sentinel};

/// The idle blocking connections.
pub(crate) type Pool = crate::pool::Pool<Link>;

impl RedisStore {
    /// Runs `command` on Redis, blocking the calling thread for at most the
    /// [timeout](Self::timeout) (connecting, then the answer, however slowly it comes); this is
    /// what its blocking
    /// [`SharedStore`](https://docs.rs/icr-app-driver/latest/icr_app_driver/trait.SharedStore.html)
    /// implementation (the blocking client's store) calls.
    ///
    /// Connects on first use, keeps connections between calls, and reconnects after any failure.
    ///
    /// # Errors
    /// [`Error::Store`] when Redis cannot be reached, does not answer in time, refuses the
    /// credentials, answers with an error, or answers with more than an entry can hold; the
    /// message names the cause and the fix, and shows the URL with its password replaced by `***`.
    pub fn run_blocking(&self, command: &StoreCommand) -> Result<StoreReply, Error> {
        if let Mode::Cluster(cluster) = &self.mode {
            return self.run_cluster_blocking(cluster, command);
        }
        let deadline = Instant::now() + self.timeout;
        let mut request = self.request(command);
        if let Some(mut link) = self.blocking.take() {
            link.set_deadline(deadline);
            match request.run_blocking(&mut link) {
                Ok(reply) => {
                    self.blocking.give(link);
                    return Ok(reply);
                }
                Err(failure) => {
                    self.failed(&failure);
                    if !failure.is_connection_dropped() {
                        return Err(self.describe(&failure, Phase::Command));
                    }
                    // A closed idle connection: try once on a new one.
                    request = Request::again(command);
                }
            }
        }
        let mut link = self.open_blocking(deadline)?;
        match request.run_blocking(&mut link) {
            Ok(reply) => {
                self.blocking.give(link);
                Ok(reply)
            }
            Err(failure) => {
                self.failed(&failure);
                Err(self.describe(&failure, Phase::Command))
            }
        }
    }

    /// A call failed with `failure`: a connection in doubt takes the idle ones with it, and
    /// with sentinels the primary is asked for again (a failover may have moved it).
    pub(crate) fn failed(&self, failure: &Failure) {
        let io = failure.is_io();
        if io {
            self.blocking.clear();
            #[cfg(feature = "tokio")]
            self.nonblocking.clear();
        }
        if let Mode::Sentinel { primary, .. } = &self.mode
            && (io || failure.is_read_only())
        {
            primary.set(None);
            self.blocking.clear();
            #[cfg(feature = "tokio")]
            self.nonblocking.clear();
        }
    }

    /// The server to connect to by `deadline`: the URL's, or the primary the sentinels name.
    fn server_blocking(&self, deadline: Instant) -> Result<ConnectionInfo, Failure> {
        match &self.mode {
            Mode::Single(client) => Ok(client.get_connection_info().clone()),
            Mode::Sentinel { sentinels, primary } => match primary.get() {
                Some(info) => Ok(info),
                None => {
                    let info = sentinel::discover_blocking(sentinels, &self.tls, deadline)?;
                    primary.set(Some(info.clone()));
                    Ok(info)
                }
            },
            Mode::Cluster(_) => Err(Failure::NotPrimary),
        }
    }

    /// A new connection (TCP or unix socket, TLS, `AUTH`, `SELECT`) by `deadline`, each command
    /// sent one at a time; with sentinels, to the primary they name, checked to be one.
    fn open_blocking(&self, deadline: Instant) -> Result<Link, Error> {
        let connect = |failure: Failure| {
            self.failed(&failure);
            self.describe(&failure, Phase::Connect)
        };
        let info = self.server_blocking(deadline).map_err(connect)?;
        let mut link = Link::open(&info, &self.tls, deadline).map_err(|e| connect(Failure::Redis(e)))?;
        log_in(&mut link, info.redis_settings()).map_err(|e| connect(Failure::Redis(e)))?;
        let settings = info.redis_settings();
        if settings.db() != 0 {
            redis::cmd("SELECT")
                .arg(settings.db())
                .query::<()>(&mut link)
                .map_err(|e| connect(Failure::Redis(e)))?;
        }
        if matches!(self.mode, Mode::Sentinel { .. }) {
            let role: redis::Value = redis::cmd("ROLE")
                .query(&mut link)
                .map_err(|e| connect(Failure::Redis(e)))?;
            if !sentinel::is_primary(&role) {
                return Err(connect(Failure::NotPrimary));
            }
        }
        Ok(link)
    }

    /// Runs `command` on the cluster: a kept connection (or a new one), which follows `MOVED`
    /// and `ASK` and learns the slots again after a failover.
    fn run_cluster_blocking(&self, cluster: &Cluster, command: &StoreCommand) -> Result<StoreReply, Error> {
        let mut connection = match cluster.blocking.take() {
            Some(connection) => connection,
            None => cluster
                .client(self.timeout, self.tls_pem.as_deref())
                .and_then(|client| client.get_connection())
                .map_err(|e| self.describe(&Failure::Redis(e), Phase::Connect))?,
        };
        // The lease script that counts the owner's own lease as taken: the cluster client may
        // have sent the command twice (a node failed under it, then its replica took over).
        match Request::again(command).run_blocking(&mut connection) {
            Ok(reply) => {
                cluster.blocking.give(connection);
                Ok(reply)
            }
            Err(failure) => {
                if failure.is_io() {
                    cluster.blocking.clear();
                }
                Err(self.describe(&failure, Phase::Command))
            }
        }
    }
}

/// `AUTH` with the credentials in `settings`, if any (and for Redis before 6, which knows no
/// users, `AUTH password` alone).
pub(crate) fn log_in(link: &mut Link, settings: &redis::RedisConnectionInfo) -> redis::RedisResult<()> {
    let Some(password) = settings.password() else {
        return Ok(());
    };
    let mut auth = redis::cmd("AUTH");
    auth.arg(settings.username()).arg(password);
    match auth.query::<()>(link) {
        Err(e) if settings.username().is_some() && e.to_string().contains("wrong number of arguments") => {
            redis::cmd("AUTH").arg(password).query::<()>(link)
        }
        done => done,
    }
}
