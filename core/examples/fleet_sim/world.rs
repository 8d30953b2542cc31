//! The simulated outside world: a Redis that runs the core's store commands (and loses a second
//! of writes when it fails over), and a registry that mints 2-hour installation tokens.

use std::collections::{HashMap, VecDeque};

use http::{Request, Response};
use icr_app_core::{StoreCommand, StoreReply};

/// How long the registry's tokens live.
pub const TOKEN_LIFETIME_S: i64 = 2 * 3600;

/// One key's value and when it expires (simulated µs), as Redis keeps it.
#[derive(Clone, Debug)]
struct Value {
    bytes: Vec<u8>,
    expires_us: Option<u64>,
}

/// A single Redis node, in memory: the commands of [`StoreCommand`] with Redis's semantics
/// (`GETRANGE`, `SET NX PX` with the lease script, `SET PX` and compare-and-delete in one
/// script), keys expiring with their TTL, and a journal of the last writes so a failover can
/// lose them (asynchronous replication: the replica promoted lags by up to a second).
#[derive(Debug, Default)]
pub struct Redis {
    keys: HashMap<String, Value>,
    /// (when, key, the value before the write), oldest first, for as long as a failover may
    /// lose them.
    journal: VecDeque<(u64, String, Option<Value>)>,
    /// How long writes stay in the journal.
    keep_us: u64,
}

impl Redis {
    /// A Redis whose failover loses the writes of the last `loss_us`.
    pub fn new(loss_us: u64) -> Self {
        Self {
            keep_us: loss_us,
            ..Self::default()
        }
    }

    /// How many keys it holds (some may have expired without being read since).
    pub fn len(&self) -> usize {
        self.keys.len()
    }

    fn live(&mut self, key: &str, now: u64) -> Option<&Value> {
        if self
            .keys
            .get(key)
            .is_some_and(|v| v.expires_us.is_some_and(|e| e <= now))
        {
            self.keys.remove(key);
        }
        self.keys.get(key)
    }

    fn write(&mut self, key: &str, value: Option<Value>, now: u64) {
        let before = match value {
            Some(v) => self.keys.insert(key.to_owned(), v),
            None => self.keys.remove(key),
        };
        if self.keep_us > 0 {
            self.journal.push_back((now, key.to_owned(), before));
            while self.journal.front().is_some_and(|(at, ..)| at + self.keep_us < now) {
                self.journal.pop_front();
            }
        }
    }

    /// Runs `command` at `now`.
    pub fn run(&mut self, command: &StoreCommand, now: u64) -> StoreReply {
        let ttl = |d: std::time::Duration| Some(now + d.as_micros() as u64);
        match command {
            StoreCommand::Get { key } => StoreReply::Value(self.live(key, now).map(|v| v.bytes.clone())),
            StoreCommand::Lease { key, owner, ttl: lease } => {
                if self.live(key, now).is_some() {
                    return StoreReply::Leased(false);
                }
                let value = Value {
                    bytes: owner.clone(),
                    expires_us: ttl(*lease),
                };
                self.write(key, Some(value), now);
                StoreReply::Leased(true)
            }
            StoreCommand::Put {
                key,
                value,
                ttl: life,
                lease,
                owner,
            } => {
                let value = Value {
                    bytes: value.clone(),
                    expires_us: ttl(*life),
                };
                self.write(key, Some(value), now);
                if self.live(lease, now).is_some_and(|v| v.bytes == *owner) {
                    self.write(lease, None, now);
                }
                StoreReply::Done
            }
            StoreCommand::Delete { key, prefix } => {
                if self.live(key, now).is_some_and(|v| v.bytes.starts_with(prefix)) {
                    self.write(key, None, now);
                }
                StoreReply::Done
            }
            // A command this simulation does not know (a newer core): Redis would run it; say so.
            #[allow(unreachable_patterns)]
            _ => panic!("the simulated Redis does not know {command:?}"),
        }
    }

    /// The primary fails over at `now`: the promoted replica lacks the writes of the last
    /// `loss_us`. Returns how many writes were lost.
    pub fn fail_over(&mut self, now: u64) -> usize {
        let mut lost = 0;
        while let Some((at, key, before)) = self.journal.pop_back() {
            if at + self.keep_us < now {
                break;
            }
            lost += 1;
            match before {
                Some(v) => self.keys.insert(key, v),
                None => self.keys.remove(&key),
            };
        }
        self.journal.clear();
        lost
    }
}

/// The registry: mints installation tokens that live [`TOKEN_LIFETIME_S`], remembering each
/// token's expiry so that a token handed out can be checked.
#[derive(Debug, Default)]
pub struct Registry {
    minted: u64,
    /// The `expiresAt` of the last token minted, simulated µs.
    last_expiry: Option<u64>,
    /// Token -> its `expiresAt`, simulated µs.
    expiry: HashMap<String, u64>,
}

impl Registry {
    /// How many tokens it minted.
    pub fn mints(&self) -> u64 {
        self.minted
    }

    /// When the last token minted expires (simulated µs).
    pub fn last_expiry(&self) -> Option<u64> {
        self.last_expiry
    }

    /// When `token` expires (simulated µs), if this registry minted it.
    pub fn expiry(&self, token: &str) -> Option<u64> {
        self.expiry.get(token).copied()
    }

    /// Answers `request` received at `now` (simulated µs; `epoch_ms` is the wall-clock
    /// milliseconds of simulated time 0): a mint for the installation in its path, or a 404.
    pub fn answer(&mut self, request: &Request<Vec<u8>>, now: u64, epoch_ms: i64) -> Response<Vec<u8>> {
        let path = request.uri().path();
        let installation = path
            .strip_prefix("/app/installations/")
            .and_then(|rest| rest.strip_suffix("/accessTokens"));
        let authorized = request
            .headers()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("Bearer ey"));
        let (Some(installation), true, &http::Method::POST) = (installation, authorized, request.method()) else {
            return Response::builder()
                .status(404)
                .body(br#"{"message":"not found"}"#.to_vec())
                .unwrap_or_default();
        };
        self.minted += 1;
        // Whole seconds, as the registry writes them; the token dies at the second it names.
        let created_s = (epoch_ms + (now / 1000) as i64) / 1000;
        let expires_s = created_s + TOKEN_LIFETIME_S;
        let token = format!("crs_{:048x}", self.minted);
        let expires_us = ((expires_s * 1000 - epoch_ms) as u64) * 1000;
        self.expiry.insert(token.clone(), expires_us);
        self.last_expiry = Some(expires_us);
        let rfc3339 = |s: i64| icr_app_core::Timestamp::from_unix_seconds(s).to_rfc3339();
        let body = serde_json::json!({
            "token": token,
            "createdAt": rfc3339(created_s),
            "expiresAt": rfc3339(expires_s),
            "permissions": {"organization_info": "VIEW"},
            "installationId": installation,
        });
        Response::builder()
            .status(200)
            .header("content-type", "application/json")
            .body(body.to_string().into_bytes())
            .unwrap_or_default()
    }
}
