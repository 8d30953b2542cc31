//! The blocking path: [`RedisStore::run_blocking`] over `redis::Connection`s kept between calls.
//!
//! A call takes an idle connection out of the pool (or opens one), runs its command without any
//! lock held, and puts the connection back only if everything went well: a connection that
//! failed in any way is dropped, and an I/O failure empties the pool (the others are most likely
//! broken too). So concurrent callers never wait on each other's I/O, a Redis that went away
//! costs each caller at most one call, and the next call reconnects.
//!
//! A command whose idle connection turns out to be closed (Redis restarted, or closed it after
//! its `timeout`) is retried once on a new connection within the same deadline; see
//! [`Request::again`] for why running it twice is harmless.

use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

use icr_app_core::{Error, StoreCommand, StoreReply};

use crate::RedisStore;
use crate::command::Request;
use crate::error::{Failure, Phase};

/// Idle connections kept at most; more are closed when handed back.
const MAX_IDLE: usize = 8;

/// The idle blocking connections.
#[derive(Default)]
pub(crate) struct Pool {
    idle: Mutex<Vec<redis::Connection>>,
}

impl Pool {
    fn take(&self) -> Option<redis::Connection> {
        self.idle.lock().unwrap_or_else(PoisonError::into_inner).pop()
    }

    fn give(&self, connection: redis::Connection) {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        if idle.len() < MAX_IDLE {
            idle.push(connection);
        }
    }

    fn clear(&self) {
        let dropped = std::mem::take(&mut *self.idle.lock().unwrap_or_else(PoisonError::into_inner));
        drop(dropped);
    }
}

impl RedisStore {
    /// Runs `command` on Redis, blocking the calling thread for at most about the
    /// [timeout](Self::timeout) (connecting, then the answer); this is what the blocking
    /// client's [`SharedStore`](https://docs.rs/icr-app-ureq/latest/icr_app_ureq/trait.SharedStore.html)
    /// implementation calls.
    ///
    /// Connects on first use, keeps connections between calls, and reconnects after any failure.
    ///
    /// # Errors
    /// [`Error::Store`] when Redis cannot be reached, does not answer in time, refuses the
    /// credentials, or answers with an error; the message names the cause and the fix, and shows
    /// the URL with its password replaced by `***`.
    pub fn run_blocking(&self, command: &StoreCommand) -> Result<StoreReply, Error> {
        let deadline = Instant::now() + self.timeout;
        let mut request = Request::new(command);
        if let Some(mut connection) = self.blocking.take() {
            match request.run_blocking(&mut connection) {
                Ok(reply) => {
                    self.blocking.give(connection);
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
        let mut connection = self.open_blocking(deadline)?;
        match request.run_blocking(&mut connection) {
            Ok(reply) => {
                // Back to the per-call timeout, from what was left of this call's.
                if set_timeouts(&connection, self.timeout).is_ok() {
                    self.blocking.give(connection);
                }
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

    /// A new connection (TCP or unix socket, TLS, `AUTH`, `SELECT`) by `deadline`, with the
    /// time left as its read and write timeouts.
    ///
    /// The redis crate's own handshake pipelines `AUTH`, `SELECT` and `CLIENT SETINFO` and waits
    /// the whole read timeout for each reply even after one timed out (four times the timeout
    /// against a Redis that accepts and never answers), so the connection is opened bare and
    /// each command is sent here, one at a time, within what is left of the deadline.
    fn open_blocking(&self, deadline: Instant) -> Result<redis::Connection, Error> {
        let connect = |e| self.describe(&Failure::Redis(e), Phase::Connect);
        let info = self.client.get_connection_info();
        let bare = info
            .clone()
            .set_redis_settings(redis::RedisConnectionInfo::default().set_skip_set_lib_name());
        let mut connection = redis::Client::open(bare)
            .and_then(|bare| bare.get_connection_with_timeout(left(deadline)?))
            .map_err(connect)?;
        let settings = info.redis_settings();
        if let Some(password) = settings.password() {
            set_timeouts(&connection, left(deadline).map_err(connect)?).map_err(connect)?;
            let mut auth = redis::cmd("AUTH");
            auth.arg(settings.username()).arg(password);
            match auth.query::<()>(&mut connection) {
                // Redis before 6 knows no users: `AUTH password` alone.
                Err(e) if settings.username().is_some() && e.to_string().contains("wrong number of arguments") => {
                    redis::cmd("AUTH")
                        .arg(password)
                        .query::<()>(&mut connection)
                        .map_err(connect)?;
                }
                done => done.map_err(connect)?,
            }
        }
        if settings.db() != 0 {
            set_timeouts(&connection, left(deadline).map_err(connect)?).map_err(connect)?;
            redis::cmd("SELECT")
                .arg(settings.db())
                .query::<()>(&mut connection)
                .map_err(connect)?;
        }
        set_timeouts(&connection, left(deadline).map_err(connect)?).map_err(connect)?;
        Ok(connection)
    }
}

/// The time until `deadline` (at least a millisecond), or a timeout.
fn left(deadline: Instant) -> redis::RedisResult<Duration> {
    deadline
        .checked_duration_since(Instant::now())
        .filter(|left| *left >= Duration::from_millis(1))
        .ok_or_else(|| std::io::Error::from(std::io::ErrorKind::TimedOut).into())
}

fn set_timeouts(connection: &redis::Connection, timeout: Duration) -> redis::RedisResult<()> {
    connection.set_read_timeout(Some(timeout))?;
    connection.set_write_timeout(Some(timeout))
}
