//! Each [`StoreCommand`] as Redis commands, and their replies as [`StoreReply`]s: one place for
//! both the blocking and the async path.
//!
//! | command | Redis |
//! |---|---|
//! | `Get` | `GETRANGE key 0 MAX_VALUE`: at most [`MAX_VALUE`] bytes and one more, whatever is stored |
//! | `Lease` | script [`LEASE`]: `SET key owner NX PX ttl`; a lease held without a TTL gets one |
//! | `Put` | script [`PUT`]: `SET key value PX ttl`, then `DEL lease` if it holds `owner` |
//! | `Delete` | script [`DELETE`]: `DEL key` if its value starts with `prefix` |
//!
//! The scripts run by `EVALSHA` (loaded with `SCRIPT LOAD` the first time a server does not know
//! them), so each is atomic on the server and costs one round trip.
//!
//! `GETRANGE` rather than `GET`: a value planted at an entry (200 MB, say) would otherwise be
//! sent whole on every read; Redis sends no more than the cap and one byte, and a value over the
//! cap is refused ([`Failure::Oversized`]). `GETRANGE` answers an empty string for a missing key:
//! an entry is never empty (it is sealed), so empty is read as no entry.
//!
//! A lease someone else set without a TTL (`SET lease x`) would never lapse, and every process
//! would wait for it as long as the core waits (twice the lease's time) before minting alone; the
//! lease scripts give such a lease the TTL a lease has, so it lapses by then like any other.
//!
//! A command retried after its connection broke ([`Request::again`]) may have run already: `Get`,
//! `Put` and `Delete` do no harm twice, and a `Lease` is then taken by the script
//! [`LEASE_AGAIN`], which also counts a lease this owner holds already as taken (plain `SET NX`
//! would report it held by someone else, and the owner would wait for its own lease to lapse).

use std::sync::LazyLock;

use icr_app_core::{StoreCommand, StoreReply};
use redis::{Cmd, Script, ScriptInvocation, Value};

use crate::error::Failure;
use crate::link::Link;

/// `KEYS[1]` the entry, `KEYS[2]` the lease; `ARGV[1]` the value, `ARGV[2]` its TTL in ms,
/// `ARGV[3]` the owner whose lease is released.
const PUT: &str = r"
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('DEL', KEYS[2])
end
return 1
";

/// `KEYS[1]` the key; `ARGV[1]` what its value must start with to be deleted.
const DELETE: &str = r"
local value = redis.call('GET', KEYS[1])
if value and string.sub(value, 1, string.len(ARGV[1])) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
";

/// `KEYS[1]` the lease; `ARGV[1]` the owner, `ARGV[2]` the TTL in ms. 1 if the lease was
/// free and is now the owner's, 0 if it is held (by anyone: a lease is taken once). A held
/// lease without a TTL gets this one.
const LEASE: &str = r"
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return 1
end
if redis.call('PTTL', KEYS[1]) == -1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
";

/// `KEYS[1]` the lease; `ARGV[1]` the owner, `ARGV[2]` the TTL in ms. 1 if the lease is now
/// the owner's (taken, or held already and extended), 0 if someone else holds it (and it gets
/// this TTL if it has none).
const LEASE_AGAIN: &str = r"
local holder = redis.call('GET', KEYS[1])
if holder and holder ~= ARGV[1] then
  if redis.call('PTTL', KEYS[1]) == -1 then
    redis.call('PEXPIRE', KEYS[1], ARGV[2])
  end
  return 0
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
";

static LEASE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LEASE));
static LEASE_AGAIN_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(LEASE_AGAIN));
static PUT_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(PUT));
static DELETE_SCRIPT: LazyLock<Script> = LazyLock::new(|| Script::new(DELETE));

/// The largest value `Get` reads: an entry (a sealed token) is a few hundred bytes.
pub(crate) const MAX_VALUE: usize = 64 * 1024;

/// A blocking connection that may refuse a reply over the store's cap.
pub(crate) trait Capped: redis::ConnectionLike {
    /// Whether the last reply was refused for its size.
    fn oversized(&self) -> bool;
}

impl Capped for Link {
    fn oversized(&self) -> bool {
        Link::oversized(self)
    }
}

/// A cluster connection reads replies whole (see [`crate::cluster`]).
impl Capped for redis::cluster::ClusterConnection {
    fn oversized(&self) -> bool {
        false
    }
}

/// One store command, ready to send.
pub(crate) struct Request {
    call: Call,
    expect: Expect,
}

enum Call {
    Command(Cmd),
    Script(ScriptInvocation<'static>),
}

#[derive(Clone, Copy)]
enum Expect {
    Value,
    Leased,
    Done,
}

impl Request {
    /// `command` retried after its connection broke, when it may have run already.
    pub(crate) fn again(command: &StoreCommand) -> Self {
        match command {
            StoreCommand::Lease { key, owner, ttl } => {
                let mut script = LEASE_AGAIN_SCRIPT.key(key);
                script.arg(owner.as_slice()).arg(StoreCommand::ttl_ms(*ttl));
                Self {
                    call: Call::Script(script),
                    expect: Expect::Leased,
                }
            }
            _ => Self::new(command),
        }
    }

    /// `command`, sent for the first time.
    pub(crate) fn new(command: &StoreCommand) -> Self {
        match command {
            StoreCommand::Get { key } => {
                let mut cmd = redis::cmd("GETRANGE");
                cmd.arg(key).arg(0).arg(MAX_VALUE);
                Self {
                    call: Call::Command(cmd),
                    expect: Expect::Value,
                }
            }
            StoreCommand::Lease { key, owner, ttl } => {
                let mut script = LEASE_SCRIPT.key(key);
                script.arg(owner.as_slice()).arg(StoreCommand::ttl_ms(*ttl));
                Self {
                    call: Call::Script(script),
                    expect: Expect::Leased,
                }
            }
            StoreCommand::Put {
                key,
                value,
                ttl,
                lease,
                owner,
            } => {
                let mut script = PUT_SCRIPT.key(key);
                script
                    .key(lease)
                    .arg(value.as_slice())
                    .arg(StoreCommand::ttl_ms(*ttl))
                    .arg(owner.as_slice());
                Self {
                    call: Call::Script(script),
                    expect: Expect::Done,
                }
            }
            StoreCommand::Delete { key, prefix } => {
                let mut script = DELETE_SCRIPT.key(key);
                script.arg(prefix.as_slice());
                Self {
                    call: Call::Script(script),
                    expect: Expect::Done,
                }
            }
        }
    }

    /// Runs it on a blocking connection.
    pub(crate) fn run_blocking<C: Capped>(&self, link: &mut C) -> Result<StoreReply, Failure> {
        let value = match &self.call {
            Call::Command(cmd) => cmd.query::<Value>(link),
            Call::Script(script) => script.invoke::<Value>(link),
        };
        match value {
            Ok(value) => self.reply(value),
            Err(_) if link.oversized() => Err(Failure::Oversized {
                command: self.expect.command(),
            }),
            Err(e) => Err(Failure::Redis(e)),
        }
    }

    /// Runs it on an async connection.
    #[cfg(feature = "tokio")]
    pub(crate) async fn run_async(&self, link: &mut crate::async_link::AsyncLink) -> Result<StoreReply, Failure> {
        let value = self.send_async(link.connection()).await;
        match value {
            Ok(value) => self.reply(value),
            Err(_) if link.oversized() => Err(Failure::Oversized {
                command: self.expect.command(),
            }),
            Err(e) => Err(Failure::Redis(e)),
        }
    }

    /// Runs it on a cluster's async connection.
    #[cfg(feature = "tokio")]
    pub(crate) async fn run_cluster_async(
        &self,
        connection: &mut redis::cluster_async::ClusterConnection,
    ) -> Result<StoreReply, Failure> {
        match self.send_async(connection).await {
            Ok(value) => self.reply(value),
            Err(e) => Err(Failure::Redis(e)),
        }
    }

    #[cfg(feature = "tokio")]
    async fn send_async(&self, connection: &mut impl redis::aio::ConnectionLike) -> redis::RedisResult<Value> {
        match &self.call {
            Call::Command(cmd) => cmd.query_async::<Value>(connection).await,
            Call::Script(script) => script.invoke_async::<Value>(connection).await,
        }
    }

    fn reply(&self, value: Value) -> Result<StoreReply, Failure> {
        match (self.expect, value) {
            (Expect::Value, Value::Nil) => Ok(StoreReply::Value(None)),
            (Expect::Value, Value::BulkString(bytes)) if bytes.is_empty() => Ok(StoreReply::Value(None)),
            (Expect::Value, Value::BulkString(bytes)) if bytes.len() > MAX_VALUE => Err(Failure::Oversized {
                command: self.expect.command(),
            }),
            (Expect::Value, Value::BulkString(bytes)) => Ok(StoreReply::Value(Some(bytes))),
            (Expect::Leased, Value::Okay) => Ok(StoreReply::Leased(true)),
            (Expect::Leased, Value::SimpleString(s)) if s == "OK" => Ok(StoreReply::Leased(true)),
            (Expect::Leased, Value::Nil | Value::Int(0)) => Ok(StoreReply::Leased(false)),
            (Expect::Leased, Value::Int(1)) => Ok(StoreReply::Leased(true)),
            (Expect::Done, Value::Int(_)) => Ok(StoreReply::Done),
            (expect, other) => Err(unexpected(expect.command(), &other)),
        }
    }
}

impl Expect {
    /// The command, as messages name it.
    fn command(self) -> &'static str {
        match self {
            Expect::Value => "GETRANGE",
            Expect::Leased => "the lease script",
            Expect::Done => "EVALSHA",
        }
    }
}

fn unexpected(command: &'static str, value: &Value) -> Failure {
    if let Value::ServerError(e) = value {
        return Failure::Redis(e.clone().into());
    }
    let reply = match value {
        Value::Nil => "nil",
        Value::Int(_) => "an integer",
        Value::BulkString(_) => "a string",
        Value::Array(_) => "an array",
        Value::SimpleString(_) | Value::Okay => "a status",
        Value::Map(_) => "a map",
        Value::Set(_) => "a set",
        Value::Double(_) => "a double",
        Value::Boolean(_) => "a boolean",
        _ => "a reply of another type",
    };
    Failure::Unexpected { command, reply }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn replies_of_the_wrong_type_are_failures() {
        let get = Request::new(&StoreCommand::Get { key: "k".into() });
        assert_eq!(get.reply(Value::Nil).unwrap(), StoreReply::Value(None));
        assert!(matches!(
            get.reply(Value::Int(1)),
            Err(Failure::Unexpected {
                command: "GETRANGE",
                reply: "an integer"
            })
        ));
        // GETRANGE's answer for a missing key; and a value over the cap.
        assert_eq!(get.reply(Value::BulkString(vec![])).unwrap(), StoreReply::Value(None));
        assert_eq!(
            get.reply(Value::BulkString(vec![1; MAX_VALUE])).unwrap(),
            StoreReply::Value(Some(vec![1; MAX_VALUE]))
        );
        assert!(matches!(
            get.reply(Value::BulkString(vec![1; MAX_VALUE + 1])),
            Err(Failure::Oversized { command: "GETRANGE" })
        ));
        let lease = Request::new(&StoreCommand::Lease {
            key: "k".into(),
            owner: b"me".to_vec(),
            ttl: Duration::from_secs(1),
        });
        assert_eq!(lease.reply(Value::Okay).unwrap(), StoreReply::Leased(true));
        assert_eq!(lease.reply(Value::Nil).unwrap(), StoreReply::Leased(false));
        assert!(lease.reply(Value::Int(2)).is_err());
    }

    /// A connection to `redis` for a minute, and a plain one to look at what was done.
    fn connections(redis: &icr_app_testkit::RedisServer) -> (Link, redis::Connection) {
        let info = redis::Client::open(redis.url()).unwrap().get_connection_info().clone();
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        let link = Link::open(&info, &crate::link::Tls::default(), deadline).unwrap();
        let raw = redis::Client::open(redis.url()).unwrap().get_connection().unwrap();
        (link, raw)
    }

    fn take(owner: &[u8], ttl_ms: u64) -> StoreCommand {
        StoreCommand::Lease {
            key: "lease".into(),
            owner: owner.to_vec(),
            ttl: Duration::from_millis(ttl_ms),
        }
    }

    #[test]
    fn a_lease_taken_again_counts_the_owners_own_lease_as_taken() {
        let redis = icr_app_testkit::RedisServer::start();
        let (mut link, mut raw) = connections(&redis);
        let mut again = |command: &StoreCommand| Request::again(command).run_blocking(&mut link).unwrap();
        // Free: taken.
        assert_eq!(again(&take(b"me", 1000)), StoreReply::Leased(true));
        // Mine already (the first try ran, its answer was lost): taken, and extended.
        assert_eq!(again(&take(b"me", 60_000)), StoreReply::Leased(true));
        let left: i64 = redis::cmd("PTTL").arg("lease").query(&mut raw).unwrap();
        assert!(left > 59_000, "{left}");
        // Someone else's: not taken, and left alone.
        assert_eq!(again(&take(b"you", 1000)), StoreReply::Leased(false));
        let holder: Vec<u8> = redis::cmd("GET").arg("lease").query(&mut raw).unwrap();
        assert_eq!(holder, b"me");
        let left: i64 = redis::cmd("PTTL").arg("lease").query(&mut raw).unwrap();
        assert!(left > 59_000, "{left}: its TTL is left alone too");
    }

    #[test]
    fn a_lease_held_without_a_ttl_gets_the_lease_ttl_and_one_with_a_ttl_keeps_it() {
        let redis = icr_app_testkit::RedisServer::start();
        let (mut link, mut raw) = connections(&redis);
        let pttl = |raw: &mut redis::Connection| redis::cmd("PTTL").arg("lease").query::<i64>(raw).unwrap();
        for request in [Request::new, Request::again] {
            let () = redis::cmd("SET").arg("lease").arg("someone").query(&mut raw).unwrap();
            assert_eq!(pttl(&mut raw), -1);
            let reply = request(&take(b"me", 2000)).run_blocking(&mut link).unwrap();
            assert_eq!(reply, StoreReply::Leased(false), "held: not taken");
            let left = pttl(&mut raw);
            assert!(1000 < left && left <= 2000, "{left}: the lease's TTL");
            // A TTL it has is kept, even a longer one.
            let () = redis::cmd("SET")
                .arg("lease")
                .arg("someone")
                .arg("PX")
                .arg(60_000)
                .query(&mut raw)
                .unwrap();
            let reply = request(&take(b"me", 2000)).run_blocking(&mut link).unwrap();
            assert_eq!(reply, StoreReply::Leased(false));
            assert!(pttl(&mut raw) > 59_000);
            let holder: Vec<u8> = redis::cmd("GET").arg("lease").query(&mut raw).unwrap();
            assert_eq!(holder, b"someone");
        }
    }
}
