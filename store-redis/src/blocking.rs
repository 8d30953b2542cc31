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

use crate::RedisStore;
use crate::command::Request;
use crate::error::{Failure, Phase};
use crate::link::Link;

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
        let deadline = Instant::now() + self.timeout;
        let mut request = Request::new(command);
        if let Some(mut link) = self.blocking.take() {
            link.set_deadline(deadline);
            match request.run_blocking(&mut link) {
                Ok(reply) => {
                    self.blocking.give(link);
                    return Ok(reply);
                }
                Err(failure) => {
                    if failure.is_io() {
                        self.blocking.clear();
                    }
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
                if failure.is_io() {
                    self.blocking.clear();
                }
                Err(self.describe(&failure, Phase::Command))
            }
        }
    }

    /// A new connection (TCP or unix socket, TLS, `AUTH`, `SELECT`) by `deadline`, each command
    /// sent one at a time.
    fn open_blocking(&self, deadline: Instant) -> Result<Link, Error> {
        let connect = |e| self.describe(&Failure::Redis(e), Phase::Connect);
        let info = self.client.get_connection_info();
        let mut link = Link::open(info, &self.tls, deadline).map_err(connect)?;
        let settings = info.redis_settings();
        if let Some(password) = settings.password() {
            let mut auth = redis::cmd("AUTH");
            auth.arg(settings.username()).arg(password);
            match auth.query::<()>(&mut link) {
                // Redis before 6 knows no users: `AUTH password` alone.
                Err(e) if settings.username().is_some() && e.to_string().contains("wrong number of arguments") => {
                    redis::cmd("AUTH")
                        .arg(password)
                        .query::<()>(&mut link)
                        .map_err(connect)?;
                }
                done => done.map_err(connect)?,
            }
        }
        if settings.db() != 0 {
            redis::cmd("SELECT")
                .arg(settings.db())
                .query::<()>(&mut link)
                .map_err(connect)?;
        }
        Ok(link)
    }
}
