//! Failures of a store call, told as the SDK's [`Error::Store`] with the cause and the fix,
//! the URL shown with its password replaced, and any secret scrubbed from Redis's own words.

use std::time::Duration;

use icr_app_core::{Error, TransportErrorKind};

use crate::target::Target;

/// What went wrong in one call.
#[derive(Debug)]
pub(crate) enum Failure {
    /// The redis crate's error (I/O, a refusal, an error reply).
    Redis(redis::RedisError),
    /// The call's deadline passed (the async path's own timer).
    #[cfg_attr(not(feature = "tokio"), allow(dead_code))]
    TimedOut,
    /// Redis answered `command` with a reply of another type.
    Unexpected { command: &'static str, reply: &'static str },
    /// Redis answered `command` with a reply over the store's cap (not read, or not whole).
    Oversized { command: &'static str },
    /// No sentinel named the primary `master` (the last one's error, if any).
    NoPrimary {
        master: String,
        cause: Option<redis::RedisError>,
    },
    /// The server the sentinels named is not (or no longer) a primary: a failover under way.
    NotPrimary,
}

impl From<redis::RedisError> for Failure {
    fn from(e: redis::RedisError) -> Self {
        Failure::Redis(e)
    }
}

impl Failure {
    /// The connection broke under an idle connection (Redis restarted, or closed it): a new
    /// connection may well succeed at once.
    pub(crate) fn is_connection_dropped(&self) -> bool {
        matches!(self, Failure::Redis(e) if e.is_connection_dropped() && !e.is_timeout())
    }

    /// The server is a replica (a primary demoted by a failover).
    pub(crate) fn is_read_only(&self) -> bool {
        matches!(self, Failure::Redis(e) if e.code() == Some("READONLY"))
    }

    /// The connection itself is in doubt (not only this command): the idle ones go too.
    pub(crate) fn is_io(&self) -> bool {
        match self {
            Failure::Redis(e) => e.is_io_error() || e.is_connection_dropped() || e.is_timeout(),
            Failure::TimedOut | Failure::NoPrimary { .. } | Failure::NotPrimary => true,
            Failure::Unexpected { .. } | Failure::Oversized { .. } => false,
        }
    }
}

/// When the failure happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Opening a connection (TCP, TLS, AUTH, SELECT).
    Connect,
    /// Running a command on an open connection.
    Command,
}

/// The SDK error for `failure`, talking to `target` with `timeout`.
pub(crate) fn describe(target: &Target, timeout: Duration, failure: &Failure, phase: Phase) -> Error {
    let at = &target.shown;
    let ms = timeout.as_millis();
    let e = match failure {
        Failure::TimedOut => return timed_out(at, ms),
        Failure::Unexpected { command, reply } => {
            return Error::store(
                TransportErrorKind::Other,
                format!(
                    "Redis at {at} answered {command} with {reply}; the store URL must point at Redis or a Redis-compatible server (Valkey, KeyDB), not a proxy that rewrites replies"
                ),
            );
        }
        Failure::Oversized { command } => {
            let cap = crate::command::MAX_VALUE / 1024;
            return Error::store(
                TransportErrorKind::Other,
                format!(
                    "Redis at {at} answered {command} with more than {cap} KiB, which the store does not read (an entry is a few hundred bytes); something other than this SDK writes to its keys, or the store URL does not point at Redis"
                ),
            );
        }
        Failure::NoPrimary { master, cause } => {
            let said = cause
                .as_ref()
                .map(|e| format!(" (the last one: {})", target.scrub(&e.to_string())))
                .unwrap_or_default();
            return Error::store(
                TransportErrorKind::Connect,
                format!(
                    "no sentinel of {at} named a primary called {master}{said}; check the sentinels' hosts and ports and the name after the hosts in the store URL (redis+sentinel://host:port[,host:port...]/MASTER_NAME[/DB])"
                ),
            );
        }
        Failure::NotPrimary => {
            return Error::store(
                TransportErrorKind::Connect,
                format!(
                    "the server the sentinels of {at} named is not a primary (a failover is under way); the next call asks the sentinels again"
                ),
            );
        }
        Failure::Redis(e) => e,
    };
    if e.is_timeout() {
        return timed_out(at, ms);
    }
    let said = target.scrub(&e.to_string());
    let code = e.code().unwrap_or_default();
    let (kind, message) = if e.is_connection_refusal() {
        (
            TransportErrorKind::Connect,
            format!(
                "Redis at {at} refused the connection ({said}); start Redis there, or fix the host and port of the store URL"
            ),
        )
    } else if e.kind() == redis::ErrorKind::AuthenticationFailed || matches!(code, "NOAUTH" | "WRONGPASS") {
        (
            TransportErrorKind::Connect,
            format!(
                "Redis at {at} refused the credentials ({said}); check the user and password in the store URL (percent-encode @ : / in them)"
            ),
        )
    } else if code == "NOPERM" {
        (
            TransportErrorKind::Other,
            format!(
                "Redis at {at} does not let this user run the store's commands ({said}); grant it +getrange +get +set +del +pttl +pexpire +eval +evalsha +script|load on the icr-app:* keys (and +cluster|slots on a cluster, +role behind sentinels)"
            ),
        )
    } else if code == "CLUSTERDOWN" {
        (
            TransportErrorKind::Other,
            format!("the Redis Cluster at {at} is down ({said}); it serves again once every slot has a primary"),
        )
    } else if matches!(code, "CROSSSLOT" | "MOVED" | "ASK") || said.contains("CROSSSLOT") {
        (
            TransportErrorKind::Other,
            format!(
                "Redis at {at} answered {code} ({said}): it is a Redis Cluster; use a redis+cluster:// URL (redis+cluster://host:port[,host:port...])"
            ),
        )
    } else if code == "READONLY" {
        (
            TransportErrorKind::Other,
            format!("Redis at {at} is a read-only replica ({said}); point the store URL at the primary"),
        )
    } else if phase == Phase::Connect {
        let hint = if target.tls {
            "check the host and port, and that the server's certificate is valid for that host and signed by a CA this machine trusts (or one given with RedisStore::tls_root_certificates)"
        } else {
            "check the host and port of the store URL, and whether the server expects TLS (rediss://)"
        };
        (
            TransportErrorKind::Connect,
            format!("could not connect to Redis at {at} ({said}); {hint}"),
        )
    } else if e.is_connection_dropped() {
        (
            TransportErrorKind::ConnectionLost,
            format!("Redis at {at} dropped the connection ({said}); the next call reconnects"),
        )
    } else {
        (TransportErrorKind::Other, format!("Redis at {at} failed ({said})"))
    };
    Error::store(kind, message)
}

fn timed_out(at: &str, ms: u128) -> Error {
    Error::store(
        TransportErrorKind::Timeout,
        format!(
            "Redis at {at} did not answer within {ms} ms; check that it is up and reachable, or raise RedisStore::timeout"
        ),
    )
}
