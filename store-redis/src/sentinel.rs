//! Redis Sentinel (`redis+sentinel://`, `rediss+sentinel://`): the sentinels are asked which
//! server is the primary they watch (`SENTINEL get-master-addr-by-name`), that server is
//! checked to be one (`ROLE`), and the store's own connections (the one-server path's, with
//! their deadline and reply cap) go to it. The answer is kept until a call fails; then the next
//! connection asks the sentinels again, which after a failover name the new primary.
//!
//! The sentinels are asked on the store's own connections rather than through the redis
//! crate's sentinel client, whose blocking lookups have no timeout: a sentinel that accepts
//! connections and never answers would hang every caller.

use std::sync::{Mutex, PoisonError};
use std::time::Instant;

use redis::{ConnectionInfo, RedisResult, Value};

use crate::error::Failure;
use crate::link::{Link, Tls};
use crate::target::Sentinels;

/// The primary last named by the sentinels, shared by both paths.
#[derive(Default)]
pub(crate) struct Primary(Mutex<Option<ConnectionInfo>>);

impl Primary {
    pub(crate) fn get(&self) -> Option<ConnectionInfo> {
        self.0.lock().unwrap_or_else(PoisonError::into_inner).clone()
    }

    pub(crate) fn set(&self, info: Option<ConnectionInfo>) {
        *self.0.lock().unwrap_or_else(PoisonError::into_inner) = info;
    }
}

/// Whether `e` is a server's refusal of `AUTH` because it has no password (a sentinel without
/// one): it is then asked without credentials.
fn no_password_set(e: &redis::RedisError) -> bool {
    let said = e.to_string();
    said.contains("without any password configured") || said.contains("no password is set")
}

/// The `SENTINEL get-master-addr-by-name` reply: `[host, port]`, or nil for an unknown name.
fn address(reply: Value) -> Option<(String, u16)> {
    let Value::Array(items) = reply else { return None };
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    match items.as_slice() {
        [host, port] => Some((text(host)?, text(port)?.parse().ok()?)),
        _ => None,
    }
}

/// Whether a `ROLE` reply is a primary's.
pub(crate) fn is_primary(reply: &Value) -> bool {
    match reply {
        Value::Array(items) => {
            matches!(items.first(),
            Some(Value::BulkString(b)) if b == b"master")
                || matches!(items.first(), Some(Value::SimpleString(s)) if s == "master")
        }
        _ => false,
    }
}

/// The failure when no sentinel named a primary.
fn none_named(sentinels: &Sentinels, last: Option<redis::RedisError>) -> Failure {
    Failure::NoPrimary {
        master: sentinels.master.clone(),
        cause: last,
    }
}

/// Asks the sentinels, in turn, for the primary by `deadline` (blocking path).
pub(crate) fn discover_blocking(
    sentinels: &Sentinels,
    tls: &Tls,
    deadline: Instant,
) -> Result<ConnectionInfo, Failure> {
    let mut last = None;
    for (with, without) in sentinels.sentinels.iter().zip(&sentinels.sentinels_without_credentials) {
        let asked = ask_blocking(sentinels, with, tls, deadline).or_else(|e| {
            if no_password_set(&e) {
                ask_blocking(sentinels, without, tls, deadline)
            } else {
                Err(e)
            }
        });
        match asked {
            Ok(Some((host, port))) => return sentinels.primary(&host, port).map_err(Failure::Redis),
            Ok(None) => {}
            Err(e) => last = Some(e),
        }
    }
    Err(none_named(sentinels, last))
}

fn ask_blocking(
    sentinels: &Sentinels,
    sentinel: &ConnectionInfo,
    tls: &Tls,
    deadline: Instant,
) -> RedisResult<Option<(String, u16)>> {
    let mut link = Link::open(sentinel, tls, deadline)?;
    crate::blocking::log_in(&mut link, sentinel.redis_settings())?;
    let reply: Value = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(&sentinels.master)
        .query(&mut link)?;
    Ok(address(reply))
}

/// Asks the sentinels, in turn, for the primary (async path, under the caller's timer).
#[cfg(feature = "tokio")]
pub(crate) async fn discover_async(
    sentinels: &Sentinels,
    tls: &Tls,
    config: &redis::AsyncConnectionConfig,
) -> Result<ConnectionInfo, Failure> {
    let mut last = None;
    for (with, without) in sentinels.sentinels.iter().zip(&sentinels.sentinels_without_credentials) {
        let mut asked = ask_async(sentinels, with, tls, config).await;
        if let Err(e) = &asked
            && no_password_set(e)
        {
            asked = ask_async(sentinels, without, tls, config).await;
        }
        match asked {
            Ok(Some((host, port))) => return sentinels.primary(&host, port).map_err(Failure::Redis),
            Ok(None) => {}
            Err(e) => last = Some(e),
        }
    }
    Err(none_named(sentinels, last))
}

#[cfg(feature = "tokio")]
async fn ask_async(
    sentinels: &Sentinels,
    sentinel: &ConnectionInfo,
    tls: &Tls,
    config: &redis::AsyncConnectionConfig,
) -> RedisResult<Option<(String, u16)>> {
    let mut link = crate::async_link::AsyncLink::open(sentinel, tls, config.clone()).await?;
    let reply: Value = redis::cmd("SENTINEL")
        .arg("get-master-addr-by-name")
        .arg(&sentinels.master)
        .query_async(link.connection())
        .await?;
    Ok(address(reply))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replies_are_read() {
        let bulk = |s: &str| Value::BulkString(s.as_bytes().to_vec());
        assert_eq!(
            address(Value::Array(vec![bulk("127.0.0.1"), bulk("6380")])),
            Some(("127.0.0.1".to_owned(), 6380))
        );
        assert_eq!(address(Value::Nil), None);
        assert_eq!(address(Value::Array(vec![bulk("h"), bulk("port")])), None);
        assert!(is_primary(&Value::Array(vec![bulk("master"), Value::Int(0)])));
        assert!(!is_primary(&Value::Array(vec![bulk("slave"), bulk("h")])));
    }
}
