//! [`NativeOperation`]: the core's erased operation ([`AnyOperation`]), driven from JavaScript:
//! `poll()` returns each step as one JSON text; `handleResponse`, `handleFailure`, `handleSignature`
//! report back; `abandon` leaves it before it is done.

use std::sync::Arc;

use icr_app_core::{
    AnyOperation, AnyStep, Error as CoreError, Outcome, PlainResponse, StoreCommand, StoreReply, Token,
    TransportErrorKind, TransportPolicy,
};
use icr_app_redis::RedisStore;
use napi::bindgen_prelude::{AsyncTask, Buffer};
use napi::{Env, Task};
use napi_derive::napi;
use serde::Serialize;

use crate::app::{Shared, check_route, lock, now};
use crate::errors::ErrorInfo;

/// One step of an operation, written as the JSON text `poll()` returns (see there).
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Step<'a> {
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    method: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    headers: Option<Headers<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    body: Option<&'a str>,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    binary: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    purpose: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    refused: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    until: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    change: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    value: Option<serde_json::Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    error: Option<ErrorInfo>,
}

impl Step<'_> {
    fn new(kind: &'static str) -> Self {
        Self {
            kind,
            id: None,
            method: None,
            url: None,
            headers: None,
            body: None,
            binary: false,
            purpose: None,
            refused: None,
            until: None,
            change: None,
            value: None,
            error: None,
        }
    }

    fn failed(error: &CoreError) -> String {
        let mut step = Step::new("error");
        step.error = Some(ErrorInfo::from(error));
        step.text()
    }

    fn text(&self) -> String {
        // Strings, numbers and JSON values only, so writing cannot fail; if it ever did, the
        // operation fails with a message rather than a panic.
        serde_json::to_string(self).unwrap_or_else(|_| {
            r#"{"kind":"error","error":{"code":"other","message":"icr-app: a step could not be written"}}"#.to_owned()
        })
    }
}

/// A request's headers as a JSON object (names are unique in the core's requests; the
/// caller's own were copied from a `Headers`, which joins repeated names).
struct Headers<'a>(&'a [(String, String)]);

impl Serialize for Headers<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_map(self.0.iter().map(|(name, value)| (name, value)))
    }
}

/// A token as `auth()` returns it (without `type`, which `index.js` adds).
pub(crate) fn token_value(token: &Token) -> serde_json::Value {
    let access = token.access_token();
    let mut value = serde_json::json!({
        "token": access.token.expose(),
        "expiresAt": access.expires_at.to_rfc3339(),
        "permissions": access.permissions,
    });
    for (name, field) in [
        ("installationId", &access.installation_id),
        ("organizationId", &access.organization_id),
        ("appId", &access.app_id),
    ] {
        if let Some(v) = field {
            value[name] = serde_json::Value::from(v.as_str());
        }
    }
    value
}

fn outcome_value(outcome: Outcome, page: Option<(u32, usize)>) -> serde_json::Value {
    match outcome {
        Outcome::Page(p) => {
            let (limit, seen) = page.unwrap_or((0, 0));
            // Whether to ask for the next page is the core's decision (`has_more`).
            let more = p.has_more(limit, seen + p.installations.len());
            let mut value = serde_json::to_value(&p).unwrap_or_default();
            value["hasMore"] = serde_json::Value::Bool(more);
            value
        }
        Outcome::Token(token) => token_value(&token),
        Outcome::Jwt(jwt) => serde_json::json!({
            "token": jwt.token().expose(),
            "expiresAt": jwt.expires_at().to_rfc3339(),
        }),
        Outcome::Installation(i) => serde_json::to_value(&i).unwrap_or_default(),
        Outcome::Installations(all) => serde_json::to_value(&all).unwrap_or_default(),
        Outcome::Created(created) => serde_json::to_value(&created).unwrap_or_default(),
        Outcome::Response(response) => serde_json::json!({ "status": response.status }),
        Outcome::Count(n) => serde_json::Value::from(n),
        Outcome::Forgot(dropped) => serde_json::Value::Bool(dropped),
        _ => serde_json::Value::Null,
    }
}

/// One of the core's operations on an app, driven by polling (the core's contract: poll,
/// perform the step, report back; abandon on every way out before `done`).
#[napi]
pub struct NativeOperation {
    shared: Shared,
    policy: Arc<TransportPolicy>,
    store: Option<Arc<RedisStore>>,
    /// The store command asked for by the last `store` step, until `runStore` takes it.
    pending: Option<StoreCommand>,
    op: AnyOperation,
    done: bool,
    /// For a page of installations: the page size asked for and how many were seen before.
    page: Option<(u32, usize)>,
    /// The bytes of the last step that are not text, until `bytes()` takes them.
    bytes: Option<Vec<u8>>,
}

impl NativeOperation {
    pub(crate) fn new(
        shared: Shared,
        policy: Arc<TransportPolicy>,
        store: Option<Arc<RedisStore>>,
        op: AnyOperation,
    ) -> Self {
        Self {
            shared,
            policy,
            store,
            pending: None,
            op,
            done: false,
            page: None,
            bytes: None,
        }
    }

    pub(crate) fn with_page(mut self, limit: u32, seen: usize) -> Self {
        self.page = Some((limit, seen));
        self
    }
}

#[napi]
impl NativeOperation {
    /// What to do next: the step as JSON text. One string crosses into JavaScript per step
    /// (`JSON.parse` there), not an object of many values. `kind` says which fields are set:
    /// - `send`: send `method` `url` with `headers` (an object of name to value, the credential
    ///   included: never log them) and `body` (text; with `binary` the body is not UTF-8 and
    ///   `bytes()` gives it); `purpose` is `mint`, `lookup`, `call`, `request` (the caller's own
    ///   request) or `revoke`; report for `id`. With `refused`, do not send: report it as a
    ///   `refused` failure (the transport policy's verdict);
    /// - `sleep`: poll again at `until` (milliseconds since the epoch);
    /// - `wait`: poll again once another operation on the app reported back or was abandoned (the
    ///   app's `changes()` differs from `change`), or at `until` at the latest;
    /// - `sign`: have the bytes `bytes()` gives signed (RS256) and report with
    ///   `handleSignature(id, ...)`;
    /// - `store`: run the shared store's command (`runStore()`, a Promise: it runs on libuv's
    ///   thread pool) and report its reply with `handleStore(id, reply)`;
    /// - `done`: `value` is the result (an access token as `auth()` returns it, a JWT, an
    ///   installation, a page, a count, or for a `request` the response's status);
    /// - `error`: `error` is why the operation failed ([`ErrorInfo`]'s fields).
    #[napi]
    pub fn poll(&mut self) -> String {
        self.bytes = None;
        if self.done {
            return Step::failed(&CoreError::config(
                "operation",
                "it has finished (done, failed or abandoned) and does nothing more; start a new one",
            ));
        }
        let polled = {
            let mut guard = lock(&self.shared);
            self.op.poll(&mut guard.core, now())
        };
        match polled {
            AnyStep::Send { id, request } => {
                let credential = request
                    .headers
                    .iter()
                    .any(|(name, _)| name.eq_ignore_ascii_case("authorization"));
                let refused = match check_route(&self.policy, &request.url, credential) {
                    Ok(_) => None,
                    Err(CoreError::Transport { message, .. }) => Some(message),
                    Err(other) => Some(other.to_string()),
                };
                let mut step = Step::new("send");
                step.id = Some(id);
                step.method = Some(&request.method);
                step.url = Some(&request.url);
                step.headers = Some(Headers(&request.headers));
                step.purpose = Some(request.purpose.as_str());
                step.refused = refused;
                match std::str::from_utf8(&request.body) {
                    Ok("") => {}
                    Ok(text) => step.body = Some(text),
                    Err(_) => step.binary = true,
                }
                let text = step.text();
                if step.binary {
                    self.bytes = Some(request.body);
                }
                text
            }
            AnyStep::Sign { id, message } => {
                let mut step = Step::new("sign");
                step.id = Some(id);
                self.bytes = Some(message);
                step.text()
            }
            AnyStep::Sleep { until } => {
                let mut step = Step::new("sleep");
                step.until = Some(until.unix_millis());
                step.text()
            }
            AnyStep::Wait { until, change } => {
                let mut step = Step::new("wait");
                step.until = Some(until.unix_millis());
                step.change = Some(change);
                step.text()
            }
            AnyStep::Store { id, command } => {
                if self.store.is_none() {
                    // Only an app with a store is asked; never leave a command unanswered.
                    let mut guard = lock(&self.shared);
                    let error = CoreError::config("redisUrl", "no shared store is attached to this app");
                    self.op.handle_store(&mut guard.core, id, Err(error), now());
                    drop(guard);
                    return self.poll();
                }
                self.pending = Some(command);
                let mut step = Step::new("store");
                step.id = Some(id);
                step.text()
            }
            AnyStep::Done(Ok(outcome)) => {
                self.done = true;
                let mut step = Step::new("done");
                step.value = Some(outcome_value(outcome, self.page));
                step.text()
            }
            AnyStep::Done(Err(error)) => {
                self.done = true;
                Step::failed(&error)
            }
        }
    }

    /// The bytes of the last step that are not text: a `send` step's body marked `binary`, or
    /// the message of a `sign` step. Taken once.
    #[napi]
    pub fn bytes(&mut self) -> Option<Buffer> {
        self.bytes.take().map(Buffer::from)
    }

    /// The response to request `id` (any status; `headers` flat `[name, value, ...]`).
    #[napi]
    pub fn handle_response(&mut self, id: f64, status: u32, headers: Vec<String>, body: Option<Buffer>) {
        if self.done {
            return;
        }
        let mut pairs = Vec::with_capacity(headers.len() / 2);
        let mut it = headers.into_iter();
        while let (Some(name), Some(value)) = (it.next(), it.next()) {
            pairs.push((name, value));
        }
        let body = body.map(|b| b.to_vec()).unwrap_or_default();
        let status = u16::try_from(status).unwrap_or(0);
        let response = PlainResponse::new(status, pairs, body);
        let mut guard = lock(&self.shared);
        self.op.handle_response(&mut guard.core, id as u64, response, now());
    }

    /// Request `id` got no response: `kind` is `connect`, `timeout`, `connection_lost`,
    /// `body_too_large`, `refused`, `cancelled` or `other`; `message` what happened (never a
    /// credential).
    #[napi]
    pub fn handle_failure(&mut self, id: f64, kind: String, message: String) {
        if self.done {
            return;
        }
        let kind = TransportErrorKind::from_name(&kind);
        let mut guard = lock(&self.shared);
        self.op
            .handle_failure(&mut guard.core, id as u64, kind, &message, now());
    }

    /// The answer to `sign` step `id`: the signature, or why the signer gave none.
    #[napi]
    pub fn handle_signature(&mut self, id: f64, signature: Option<Buffer>, error: Option<String>) {
        if self.done {
            return;
        }
        let signature = match (signature, error) {
            (Some(signature), None) => Ok(signature.to_vec()),
            (_, Some(error)) => Err(error),
            (None, None) => Err("the signer gave no signature".to_owned()),
        };
        let mut guard = lock(&self.shared);
        self.op.handle_signature(&mut guard.core, id as u64, signature, now());
    }

    /// Runs the command of the last `store` step on the shared store, on libuv's thread pool
    /// (at most the store's timeout): a Promise of the reply to hand to `handleStore`. A
    /// failure is a reply too (the core then mints without the store for a while).
    #[napi(ts_return_type = "Promise<NativeStoreReply>")]
    pub fn run_store(&mut self) -> AsyncTask<StoreTask> {
        AsyncTask::new(StoreTask {
            store: self.store.clone(),
            command: self.pending.take(),
        })
    }

    /// Reports the shared store's reply to `store` step `id`.
    #[napi]
    pub fn handle_store(&mut self, id: f64, reply: &NativeStoreReply) {
        if self.done {
            return;
        }
        let mut guard = lock(&self.shared);
        self.op
            .handle_store(&mut guard.core, id as u64, reply.reply.clone(), now());
    }

    /// Leaves the operation before it is done: it releases what it holds at once (a mint in
    /// flight, so that others mint again rather than wait for it). Does nothing after `done`.
    #[napi]
    pub fn abandon(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        let mut guard = lock(&self.shared);
        self.op.abandon(&mut guard.core, now());
    }

    /// Whether the operation has finished (done, failed or abandoned).
    #[napi(getter)]
    pub fn done(&self) -> bool {
        self.done
    }
}

impl Drop for NativeOperation {
    fn drop(&mut self) {
        // JavaScript abandons on every way out; this covers an operation collected half-way.
        if !self.done {
            let mut guard = lock(&self.shared);
            self.op.abandon(&mut guard.core, now());
        }
    }
}

/// A shared store command, run on libuv's thread pool.
pub struct StoreTask {
    store: Option<Arc<RedisStore>>,
    command: Option<StoreCommand>,
}

impl Task for StoreTask {
    type Output = Result<StoreReply, CoreError>;
    type JsValue = NativeStoreReply;

    fn compute(&mut self) -> napi::Result<Self::Output> {
        Ok(match (&self.store, &self.command) {
            (Some(store), Some(command)) => store.run_blocking(command),
            _ => Err(CoreError::config("shared token store", "no store command is pending")),
        })
    }

    fn resolve(&mut self, _env: Env, output: Self::Output) -> napi::Result<Self::JsValue> {
        Ok(NativeStoreReply { reply: output })
    }
}

/// The shared store's reply to a command (opaque: hand it to `handleStore`).
#[napi]
pub struct NativeStoreReply {
    reply: Result<StoreReply, CoreError>,
}

#[napi]
impl NativeStoreReply {
    /// Whether the command succeeded.
    #[napi(getter)]
    pub fn ok(&self) -> bool {
        self.reply.is_ok()
    }
}
