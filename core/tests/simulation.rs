//! A deterministic simulation of the whole protocol, in the style of quinn-proto's test pair: no
//! sockets, no sleeping, no real clock.
//!
//! One [`App`] is driven by many operations at once (about 50 `GetToken`, `SendAs`,
//! `ListInstallations`, `Call`, `Revoke`, `RevokeAll` and a `Refresher`), interleaved step by
//! step by a seeded RNG, against an in-memory registry ([`Registry`]) that answers the core's
//! `http::Request`s the way the ICR API does: mints checked against the app JWT (loosely: the
//! claims against the registry's clock, not the signature), tokens that expire on the
//! registry's clock, `Date` headers, pagination, revocation, token-authorised reads.
//!
//! Each step the driver picks something that can happen now: poll an operation that is due (and
//! perform its `Step`), or deliver one of the answers in flight (in any order, each after its own
//! latency). When nothing can happen, simulated time jumps to the next thing that can. A finished
//! operation is replaced by a new one after a pause, and now and then nobody asks for anything
//! for up to two hours (tokens expire or are renewed by the refresher alone). Faults are
//! injected throughout: 5xx (with and without `Retry-After`), 429 with `Retry-After` (sometimes
//! absurd), malformed bodies, connections lost before or after the registry acted, the
//! registry's clock jumping (a little or by hours, either way), tokens revoked by the registry,
//! a signer that fails or panics (the poll is wrapped in `catch_unwind`, then the operation is
//! abandoned as a driver's guard would), and operations abandoned by their driver mid-flight.
//!
//! Checked on every step:
//! - no token is handed out (a `GetToken` finishing with it, or a request carrying it) that the
//!   registry considers expired, or with less than the asked-for life, on the registry's clock as
//!   the app could know it (from the last `Date` it was given), less the time its own mint answer
//!   spent in flight and a few seconds for `Date`'s resolution; nor one the app was told is dead
//!   (revoked by it, or refused with a 401);
//! - every operation but the refresher finishes within a bounded number of polls and simulated
//!   time, and errors only as the faults allow (a 401 for the app JWT only after a registry
//!   clock jump since shortly before the refused request began, which for a `GetToken` or
//!   `SendAs` may be another operation's mint: see `Sim::unexpected`);
//! - each operation has at most one request in flight, never sleeps into the past, never waits
//!   for nothing.
//!
//! At the end of a run: mints stay within one per scope and refresh window, plus what the faults
//! cost (no mint storm); once every operation is done or abandoned nothing is held (no scope
//! `Fetching` or `Refreshing`, and a new `GetToken` for any scope sends or finishes at once,
//! never waits).
//!
//! A failure prints the seed, the step, the invariant, the last steps that led there and every
//! scope's token state; a scenario can be run alone with `SIM_SEEDS=<seed>` (and lengthened with
//! `SIM_STEPS`). The driver's choices are a function of the seed alone, but the core iterates
//! `std` hash maps (random order per process) where several scopes are due at once (which
//! refresh `Refresher` starts first, the order `RevokeAll` revokes in), so two processes can
//! interleave one seed differently: a failure is rerun a few times to reproduce it.
//!
//! Open core bugs the simulation found are counted, not failed on, in the default runs (see
//! `Scenario::strict`); `every_scenario_strict` and one directed regression test per bug fail on
//! them and are ignored until the core is fixed.

use std::collections::{HashMap, HashSet, VecDeque};
use std::fmt::Write as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::{Method, Request, Response};
use icr_app_core::{
    App, Call, Error, GetToken, Installation, InstallationId, ListInstallations, Operation, Refresher, RequestId,
    RetryPolicy, Revoke, RevokeAll, SecretString, SendAs, Signer, Step, Timestamp, Token, TokenScope, TokenState,
    TransportErrorKind,
};

const T0_MS: i64 = 1_700_000_000_000;
const APP_ID: &str = "5d3c0f5e-7f7e-4a51-9d1c-6a6f0c1b2a30";
const BASE: &str = "https://api.carbonregistry.com";
/// What the registry's clock and `Date`'s one-second resolution may hide from the app, beyond a
/// mint answer's own time in flight: `Date` truncates (up to 1 s), the core rounds offsets under
/// 1 s to 0 and keeps an offset within 2 s of the last one.
const CLOCK_SLACK_MS: i64 = 4_000;
/// The longest a request or its answer spends in flight.
const MAX_LATENCY_MS: i64 = 20_000;
/// The longest an operation (but the refresher) may run, in simulated time.
const OP_TIME_LIMIT_MS: i64 = 10 * 60 * 1000;
/// The most polls of an operation that do something (send, sleep or finish).
const OP_ACTIVE_POLL_LIMIT: u32 = 64;
/// The most polls of an operation at all (a waiting one is polled whenever anything reports
/// back).
const OP_POLL_LIMIT: u32 = 20_000;

/// How the app learned a token is dead.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Death {
    /// It revoked the token, or a request with it was refused (401) and not retried.
    Told,
    /// A `SendAs` retry was refused with it: the core returns that 401 but keeps the token
    /// (a core bug; see `Scenario::strict`).
    RefusedOnRetry,
}

const KEPT_AFTER_RETRY: &str = "(known core bug: SendAs keeps a token refused on its retry)";

// ---------------------------------------------------------------------------------------------
// randomness

/// splitmix64.
#[derive(Clone, Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    /// True with probability `per_mille` / 1000.
    fn chance(&mut self, per_mille: u32) -> bool {
        self.next() % 1000 < u64::from(per_mille)
    }

    /// Uniform in `lo..=hi`.
    fn between(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % ((hi - lo) as u64 + 1)) as i64
    }
}

// ---------------------------------------------------------------------------------------------
// a signer that fails and panics

/// The payload of the signer's panics, so the panic hook can keep them quiet.
struct SimulatedPanic;

/// Signs with anything (the registry checks claims, not signatures); fails and panics at the
/// scenario's rates, drawn from its own seeded stream.
struct FlakySigner(Arc<SignerState>);

struct SignerState {
    rng: AtomicU64,
    panic_per_mille: AtomicU32,
    error_per_mille: u32,
    signed: AtomicU64,
    panicked: AtomicU64,
    failed: AtomicU64,
}

impl Signer for FlakySigner {
    fn sign_rs256(&self, _message: &[u8]) -> Result<Vec<u8>, Error> {
        let s = &self.0;
        let mut rng = Rng(s.rng.load(Ordering::Relaxed));
        let roll = rng.next() % 1000;
        s.rng.store(rng.0, Ordering::Relaxed);
        let panic_per_mille = s.panic_per_mille.load(Ordering::Relaxed);
        if roll < u64::from(panic_per_mille) {
            s.panicked.fetch_add(1, Ordering::Relaxed);
            std::panic::panic_any(SimulatedPanic);
        }
        if roll < u64::from(panic_per_mille + s.error_per_mille) {
            s.failed.fetch_add(1, Ordering::Relaxed);
            return Err(Error::Signing("the simulated HSM is offline".into()));
        }
        s.signed.fetch_add(1, Ordering::Relaxed);
        Ok(vec![0x5a; 256])
    }
}

/// Keeps the simulated panics out of the test output; any other panic is reported as usual.
fn quiet_simulated_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info.payload().is::<SimulatedPanic>() {
                default(info);
            }
        }));
    });
}

// ---------------------------------------------------------------------------------------------
// the registry

/// A token the registry issued.
#[derive(Debug)]
struct Issued {
    scope: TokenScope,
    expires_server: i64,
    revoked: bool,
    /// Local time the registry made it, and when its answer reached the app (never, if lost).
    created_local: i64,
    delivered_local: Option<i64>,
}

/// The in-memory ICR registry: its own clock (the local one plus `offset`), its installations,
/// and every token it issued.
struct Registry {
    offset_ms: i64,
    lifetime_ms: i64,
    installations: Vec<String>,
    tokens: HashMap<String, Issued>,
    next_token: u64,
    mints: u64,
    refused_jwts: u64,
    requests: u64,
}

fn bearer<B>(request: &Request<B>) -> Option<&str> {
    request
        .headers()
        .get(http::header::AUTHORIZATION)?
        .to_str()
        .ok()?
        .strip_prefix("Bearer ")
}

fn json_response(status: u16, server_ms: i64, body: &serde_json::Value) -> Response<Vec<u8>> {
    raw_response(status, server_ms, serde_json::to_vec(body).unwrap())
}

fn raw_response(status: u16, server_ms: i64, body: Vec<u8>) -> Response<Vec<u8>> {
    Response::builder()
        .status(status)
        .header("date", Timestamp::from_unix_millis(server_ms).to_http_date())
        .header("content-type", "application/json")
        .body(body)
        .unwrap()
}

fn api_error(status: u16, server_ms: i64, message: &str) -> Response<Vec<u8>> {
    let error = match status {
        401 => "Unauthorized",
        404 => "Not Found",
        429 => "Too Many Requests",
        _ => "Internal Server Error",
    };
    json_response(
        status,
        server_ms,
        &serde_json::json!({"statusCode": status, "message": message, "error": error}),
    )
}

impl Registry {
    fn server_now(&self, local: i64) -> i64 {
        local + self.offset_ms
    }

    /// A JWT checked loosely: present, three parts, claims that decode, `iss` the app, `iat` not
    /// in the future, `exp` in the future and at most ten minutes ahead (all on the registry's
    /// clock, with five seconds of leeway). The signature is not verified. Returns the 401 that
    /// refuses it, if it is refused.
    fn check_jwt(&mut self, request: &Request<Vec<u8>>, server_ms: i64) -> Option<Response<Vec<u8>>> {
        let why = Self::jwt_problem(request, server_ms)?;
        self.refused_jwts += 1;
        Some(api_error(401, server_ms, why))
    }

    fn jwt_problem(request: &Request<Vec<u8>>, server_ms: i64) -> Option<&'static str> {
        let Some(jwt) = bearer(request) else {
            return Some("no JWT");
        };
        let parts: Vec<&str> = jwt.split('.').collect();
        let claims = (parts.len() == 3)
            .then(|| URL_SAFE_NO_PAD.decode(parts[1]).ok())
            .flatten()
            .and_then(|c| serde_json::from_slice::<serde_json::Value>(&c).ok());
        let Some(claims) = claims else {
            return Some("not a JWT");
        };
        let now_s = server_ms.div_euclid(1000);
        match (claims["iss"].as_str(), claims["iat"].as_i64(), claims["exp"].as_i64()) {
            (Some(APP_ID), Some(iat), Some(exp)) => {
                if iat > now_s + 5 {
                    Some("JWT issued in the future")
                } else if exp <= now_s {
                    Some("JWT expired")
                } else if exp > now_s + 605 {
                    Some("JWT exp is more than 10 minutes ahead")
                } else {
                    None
                }
            }
            _ => Some("JWT claims are not this app's"),
        }
    }

    /// A token, if it is one the registry issued and still honours at `server_ms`.
    fn live_token(&self, token: &str, server_ms: i64) -> Option<&Issued> {
        self.tokens
            .get(token)
            .filter(|t| !t.revoked && t.expires_server > server_ms)
    }

    /// Answers `request` at local time `local`. Returns the response, and the token it issued
    /// (for a mint).
    fn serve(&mut self, request: &Request<Vec<u8>>, local: i64) -> (Response<Vec<u8>>, Option<String>) {
        self.requests += 1;
        let server_ms = self.server_now(local);
        let uri = request.uri();
        assert_eq!(
            format!("{}://{}", uri.scheme_str().unwrap_or(""), uri.authority().unwrap()),
            BASE,
            "every request goes to the registry"
        );
        let path = uri.path().to_owned();
        let segments: Vec<&str> = path.trim_start_matches('/').split('/').collect();
        match (request.method().as_str(), segments.as_slice()) {
            ("POST", ["app", "accessTokens"]) => self.mint(request, TokenScope::App, server_ms, local),
            ("POST", ["app", "installations", id, "accessTokens"]) => {
                if !self.installations.iter().any(|i| i == id) {
                    if let Some(refused) = self.check_jwt(request, server_ms) {
                        return (refused, None);
                    }
                    return (api_error(404, server_ms, "installation not found"), None);
                }
                let scope = TokenScope::Installation(InstallationId::new(*id).unwrap());
                self.mint(request, scope, server_ms, local)
            }
            ("GET", ["app", "installations"]) => {
                if let Some(refused) = self.check_jwt(request, server_ms) {
                    return (refused, None);
                }
                let query: HashMap<&str, usize> = uri
                    .query()
                    .unwrap_or("")
                    .split('&')
                    .filter_map(|kv| kv.split_once('='))
                    .filter_map(|(k, v)| Some((k, v.parse().ok()?)))
                    .collect();
                let limit = query.get("limit").copied().unwrap_or(10).max(1);
                let page = query.get("page").copied().unwrap_or(0);
                let items: Vec<serde_json::Value> = self
                    .installations
                    .iter()
                    .skip(page * limit)
                    .take(limit)
                    .map(|id| serde_json::json!({"id": id, "appId": APP_ID}))
                    .collect();
                let total = self.installations.len();
                let next = ((page + 1) * limit < total).then_some(page + 1);
                let body = serde_json::json!({
                    "installations": items,
                    "pagination": {"total": total, "currentPage": page, "nextPage": next},
                });
                (json_response(200, server_ms, &body), None)
            }
            ("GET", ["app", "installations", id]) => {
                if let Some(refused) = self.check_jwt(request, server_ms) {
                    return (refused, None);
                }
                if self.installations.iter().any(|i| i == id) {
                    (
                        json_response(200, server_ms, &serde_json::json!({"id": id, "appId": APP_ID})),
                        None,
                    )
                } else {
                    (api_error(404, server_ms, "installation not found"), None)
                }
            }
            ("DELETE", ["app", "installations", "token"]) => {
                let token = bearer(request).unwrap_or_default().to_owned();
                if self.live_token(&token, server_ms).is_none() {
                    return (api_error(401, server_ms, "invalid token"), None);
                }
                self.tokens.get_mut(&token).unwrap().revoked = true;
                (raw_response(204, server_ms, Vec::new()), None)
            }
            ("GET", _) => {
                let token = bearer(request).unwrap_or_default();
                match self.live_token(token, server_ms) {
                    Some(issued) => {
                        let body = serde_json::json!({"path": path, "scope": issued.scope.to_string()});
                        (json_response(200, server_ms, &body), None)
                    }
                    None => (api_error(401, server_ms, "invalid or expired token"), None),
                }
            }
            (method, _) => panic!("the core sent {method} {path}, which the registry has no route for"),
        }
    }

    fn mint(
        &mut self,
        request: &Request<Vec<u8>>,
        scope: TokenScope,
        server_ms: i64,
        local: i64,
    ) -> (Response<Vec<u8>>, Option<String>) {
        if let Some(refused) = self.check_jwt(request, server_ms) {
            return (refused, None);
        }
        self.next_token += 1;
        self.mints += 1;
        let token = format!("crs_{:048x}", self.next_token);
        let created = Timestamp::from_unix_millis(server_ms);
        let expires = Timestamp::from_unix_millis(server_ms + self.lifetime_ms);
        let installation = match &scope {
            TokenScope::Installation(id) => Some(id.as_str().to_owned()),
            TokenScope::App => None,
            TokenScope::Organization(_) => unreachable!("a mint's path names an installation or the app"),
        };
        let body = serde_json::json!({
            "id": format!("{:08x}-0000-4000-8000-000000000000", self.next_token),
            "token": token,
            "createdAt": created.to_rfc3339(),
            "updatedAt": created.to_rfc3339(),
            "expiresAt": expires.to_rfc3339(),
            "isActive": true,
            "permissions": {"organization_info": "VIEW"},
            "appId": APP_ID,
            "installationId": installation,
        });
        self.tokens.insert(
            token.clone(),
            Issued {
                scope,
                expires_server: expires.unix_millis(),
                revoked: false,
                created_local: local,
                delivered_local: None,
            },
        );
        (json_response(201, server_ms, &body), Some(token))
    }
}

// ---------------------------------------------------------------------------------------------
// scenarios

/// Fault rates, per mille.
#[derive(Clone, Copy, Debug)]
struct Faults {
    /// Per request: a 5xx instead of an answer (half with `Retry-After`).
    server_error: u32,
    /// Per request: a 429 with `Retry-After`.
    rate_limited: u32,
    /// Per request: a 200 whose body is not JSON (a proxy's page).
    malformed: u32,
    /// Per request: the connection is lost before the registry sees the request.
    lost_before: u32,
    /// Per request: the connection is lost after the registry acted.
    lost_after: u32,
    /// Per signature: the signer panics; fails.
    signer_panic: u32,
    signer_error: u32,
    /// Per step: the registry's clock jumps; the registry revokes a live token; the driver
    /// abandons an operation.
    clock_jump: u32,
    registry_revoke: u32,
    abandon: u32,
}

impl Faults {
    fn heavy() -> Self {
        Self {
            server_error: 40,
            rate_limited: 25,
            malformed: 20,
            lost_before: 25,
            lost_after: 20,
            signer_panic: 60,
            signer_error: 30,
            clock_jump: 2,
            registry_revoke: 2,
            abandon: 3,
        }
    }

    /// None at all (directed tests inject their own).
    fn none() -> Self {
        Self {
            server_error: 0,
            rate_limited: 0,
            malformed: 0,
            lost_before: 0,
            lost_after: 0,
            signer_panic: 0,
            signer_error: 0,
            clock_jump: 0,
            registry_revoke: 0,
            abandon: 0,
        }
    }

    fn light() -> Self {
        Self {
            server_error: 10,
            rate_limited: 5,
            malformed: 5,
            lost_before: 5,
            lost_after: 5,
            signer_panic: 20,
            signer_error: 10,
            clock_jump: 1,
            registry_revoke: 1,
            abandon: 1,
        }
    }
}

#[derive(Clone, Debug)]
struct Scenario {
    seed: u64,
    /// How long the registry's tokens live.
    lifetime: Duration,
    /// How many operations run at once.
    concurrency: usize,
    /// Whether a `Refresher` runs alongside.
    refresher: bool,
    faults: Faults,
    /// Run until this much simulated time has passed or this many steps were taken, whichever
    /// comes first; then let every operation finish.
    duration: Duration,
    steps: u64,
    /// Whether the six open core bugs fail the run; otherwise each occurrence is counted
    /// (or, for the fourth, avoided):
    /// - a refresher asking to wait until a time already past (regression test
    ///   `refresher_never_waits_for_a_time_already_past`): it is polled again when anything
    ///   reports back, or a minute later, as a driver that guards against spinning would;
    /// - a `GetToken` handing out the token its mint brought after it went bad while the
    ///   operation held it, between the answer and the next poll (revoked by a concurrent
    ///   `RevokeAll`, or cut short by a registry clock jump another answer showed; regression
    ///   tests `get_token_never_hands_out_a_token_revoked_while_it_held_it` and
    ///   `..._that_expired_while_it_held_it`). The token is checked as of the moment the answer
    ///   arrived instead;
    /// - a token a `SendAs` retry was refused with (401) staying cached and handed out
    ///   (regression test `a_token_refused_on_a_send_as_retry_is_dropped`);
    /// - a `GetToken` asking for a minimum life of zero being handed an expired token
    ///   (regression test `a_zero_min_life_is_never_handed_an_expired_token`): only strict runs
    ///   ask for zero;
    /// - a refresher whose signer panicked (in `poll` or `handle_response`) leaving its mint in
    ///   flight after it is abandoned, so the scope stays `Refreshing` until the cache's
    ///   `fetch_timeout` (regression test `a_refresher_abandoned_after_a_panic_holds_nothing`):
    ///   the end-of-run checks then wait that long first;
    /// - a `RevokeAll` that does not wait for a mint in flight because another mint record is
    ///   past its `fetch_timeout` (here, the one such a refresher left), and empties the cache
    ///   with the live mint's record: another mint for that scope starts while the first is in
    ///   flight, and the token the first brings is refused, never revoked (regression test
    ///   `revoke_all_waits_for_live_mints_whatever_stale_ones_there_are`).
    strict: bool,
}

// ---------------------------------------------------------------------------------------------
// operations

// One per slot, short-lived: boxing the large variants would buy nothing.
#[allow(clippy::large_enum_variant)]
enum Op {
    Get { op: GetToken, min_life: Duration },
    Send(SendAs),
    List(ListInstallations),
    Installation(Call<Installation>),
    Revoke(Revoke),
    RevokeAll(RevokeAll),
    Refresher(Refresher),
}

#[allow(clippy::large_enum_variant)]
enum Outcome {
    Token(Result<Token, Error>),
    Response(Result<Response<Vec<u8>>, Error>),
    List(Result<Vec<Installation>, Error>),
    Installation(Result<Installation, Error>),
    Unit(Result<(), Error>),
    Count(Result<usize, Error>),
}

impl Outcome {
    fn error(&self) -> Option<&Error> {
        match self {
            Outcome::Token(Err(e))
            | Outcome::Response(Err(e))
            | Outcome::List(Err(e))
            | Outcome::Installation(Err(e))
            | Outcome::Unit(Err(e))
            | Outcome::Count(Err(e)) => Some(e),
            _ => None,
        }
    }
}

enum Polled {
    Send(RequestId, Request<Vec<u8>>),
    Sleep(Timestamp),
    Wait(Timestamp),
    Done(Outcome),
}

fn lift<T>(step: Step<T>, done: fn(Result<T, Error>) -> Outcome) -> Polled {
    match step {
        Step::Send { id, request } => Polled::Send(id, request),
        Step::Sleep { until } => Polled::Sleep(until),
        Step::Wait { until, .. } => Polled::Wait(until),
        Step::Store { command, .. } => panic!("no store is attached, yet asked to run {command:?}"),
        Step::Sign { .. } => panic!("the app has a signer, yet asked to sign outside"),
        Step::Done(result) => Polled::Done(done(result)),
    }
}

macro_rules! each_op {
    ($op:expr, $o:ident => $body:expr) => {
        match $op {
            Op::Get { op: $o, .. } => $body,
            Op::Send($o) => $body,
            Op::List($o) => $body,
            Op::Installation($o) => $body,
            Op::Revoke($o) => $body,
            Op::RevokeAll($o) => $body,
            Op::Refresher($o) => $body,
        }
    };
}

impl Op {
    fn poll(&mut self, app: &mut App, now: Timestamp) -> Polled {
        match self {
            Op::Get { op, .. } => lift(op.poll(app, now), Outcome::Token),
            Op::Send(op) => lift(op.poll(app, now), Outcome::Response),
            Op::List(op) => lift(op.poll(app, now), Outcome::List),
            Op::Installation(op) => lift(op.poll(app, now), Outcome::Installation),
            Op::Revoke(op) => lift(op.poll(app, now), Outcome::Unit),
            Op::RevokeAll(op) => lift(op.poll(app, now), Outcome::Count),
            Op::Refresher(op) => lift(op.poll(app, now), Outcome::Unit),
        }
    }

    fn handle_response(&mut self, app: &mut App, id: RequestId, response: Response<Vec<u8>>, now: Timestamp) {
        each_op!(self, o => o.handle_response(app, id, response, now))
    }

    fn handle_failure(&mut self, app: &mut App, id: RequestId, error: Error, now: Timestamp) {
        each_op!(self, o => o.handle_failure(app, id, error, now))
    }

    fn abandon(&mut self, app: &mut App, now: Timestamp) {
        each_op!(self, o => o.abandon(app, now))
    }

    fn name(&self) -> &'static str {
        match self {
            Op::Get { .. } => "GetToken",
            Op::Send(_) => "SendAs",
            Op::List(_) => "ListInstallations",
            Op::Installation(_) => "Call::installation",
            Op::Revoke(_) => "Revoke",
            Op::RevokeAll(_) => "RevokeAll",
            Op::Refresher(_) => "Refresher",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum State {
    /// Starts at this local time.
    Pending(i64),
    /// Due for a poll.
    Ready,
    Sleeping(i64),
    /// Polled again when `generation` has moved on (something reported back or was abandoned),
    /// or at `until`.
    Waiting {
        until: i64,
        generation: u64,
    },
    /// Its request is in flight.
    InFlight(RequestId),
    Finished,
}

struct Slot {
    op: Op,
    /// What the operation is for, to judge its outcome.
    scope: Option<TokenScope>,
    state: State,
    started: i64,
    polls: u32,
    active_polls: u32,
    /// For a `RevokeAll`: whether it has emptied the cache yet.
    drained: bool,
    /// For a `GetToken` or `SendAs`: the token its own mint brought, and whether it could be
    /// handed out when the answer arrived.
    minted: Option<(String, bool)>,
    /// For a `SendAs`: how many 401s its requests got.
    refusals: u32,
}

/// What is in flight for one request.
enum Flight {
    /// Not yet seen by the registry: served when delivered.
    Unserved(Request<Vec<u8>>),
    /// Answered by the registry at `server_ms` (possibly with a token); delivered later.
    Answered {
        response: Response<Vec<u8>>,
        server_ms: i64,
    },
    /// The connection is lost: delivered as a failure.
    Lost,
}

struct InFlight {
    slot: usize,
    id: RequestId,
    /// Deliverable from this local time on.
    ready_at: i64,
    flight: Flight,
    /// The token a request carries (not the JWT), and whether it revokes that token.
    token: Option<String>,
    revokes: bool,
    /// For a mint: the scope.
    mint_for: Option<TokenScope>,
    /// The step it was sent at.
    sent: u64,
}

/// How one request travels in a directed test, instead of the RNG's choice: answered by the
/// registry when it is sent or when it is delivered, `latency_ms` later. Never lost.
#[derive(Clone, Copy, Debug)]
struct Planned {
    answered_when_sent: bool,
    latency_ms: i64,
}

// ---------------------------------------------------------------------------------------------
// the simulation

#[derive(Debug, Default)]
struct Stats {
    steps: u64,
    polls: u64,
    deliveries: u64,
    ops_done: u64,
    ops_abandoned: u64,
    quiet_spells: u64,
    /// The longest an operation took to finish (simulated ms), and the most polls one needed.
    longest_op_ms: i64,
    most_polls: u32,
    most_active_polls: u32,
    panics_caught: u64,
    tokens_handed_out: u64,
    failures_delivered: u64,
    server_errors: u64,
    rate_limited: u64,
    malformed: u64,
    clock_jumps: u64,
    big_forward_jumps: u64,
    registry_revocations: u64,
    revoke_alls_done: u64,
    revokes_done: u64,
    /// Hand-outs the app could not have avoided: expired on the registry's real clock after a
    /// jump it had not seen yet, or revoked by the registry without telling it.
    unknowable_expired: u64,
    unknowable_revoked: u64,
    /// Occurrences of the open core bugs (see `Scenario::strict`), and the refresher panics
    /// that lead to two of them.
    refresher_waits_in_the_past: u64,
    held_tokens_gone_bad: u64,
    retry_refusals_kept: u64,
    refresher_panics: u64,
    refresher_leaks: u64,
    live_mints_drained: u64,
    /// RevokeAll operations that emptied the cache; Revoke requests sent.
    drains: u64,
    revoke_sends: u64,
    errors: HashMap<String, u64>,
}

struct Sim {
    scenario: Scenario,
    rng: Rng,
    app: App,
    signer: Arc<SignerState>,
    registry: Registry,
    scopes: Vec<TokenScope>,
    slots: Vec<Slot>,
    flights: Vec<InFlight>,
    now: i64,
    generation: u64,
    /// The registry's clock minus ours, as the last response the app was given shows it.
    known_offset: i64,
    /// Tokens the app was told are dead: it revoked them, or the registry refused them.
    known_dead: HashMap<String, Death>,
    /// Tokens handed out recently (for `Revoke`).
    handed: VecDeque<String>,
    draining: bool,
    /// When the registry's clock last jumped by more than the 30 s that make the core retry.
    last_jump: Option<i64>,
    /// When each mint (a fetch's id, the same for its clock-skew retry) was first sent.
    mint_began: HashMap<RequestId, i64>,
    /// Per scope, when the mint whose 401 the cache holds as the scope's failure began: a
    /// `GetToken` or `SendAs` may be handed that refusal (see `unexpected`).
    refusal_began: HashMap<TokenScope, i64>,
    /// How the next request sent travels, instead of the RNG's choice (directed tests).
    planned: Option<Planned>,
    /// No operation starts before this (a quiet spell).
    quiet_until: i64,
    /// The step a `RevokeAll` last emptied the cache at.
    last_drain: Option<u64>,
    log: VecDeque<String>,
    stats: Stats,
}

impl Sim {
    fn new(scenario: Scenario) -> Self {
        quiet_simulated_panics();
        let mut rng = Rng(scenario.seed);
        let signer = Arc::new(SignerState {
            rng: AtomicU64::new(rng.next()),
            panic_per_mille: AtomicU32::new(scenario.faults.signer_panic),
            error_per_mille: scenario.faults.signer_error,
            signed: AtomicU64::new(0),
            panicked: AtomicU64::new(0),
            failed: AtomicU64::new(0),
        });
        let app = App::builder(APP_ID, FlakySigner(signer.clone()))
            .base_url(BASE)
            .retry(RetryPolicy::default())
            .seed(rng.next())
            .build()
            .unwrap();
        let installations: Vec<String> = (0..5)
            .map(|i| format!("{i:08x}-1111-4000-8000-{:012x}", scenario.seed))
            .collect();
        let mut scopes = vec![TokenScope::App];
        scopes.extend(
            installations
                .iter()
                .map(|i| TokenScope::Installation(InstallationId::new(i.as_str()).unwrap())),
        );
        // An installation the registry does not know.
        scopes.push(TokenScope::Installation(
            InstallationId::new("deadbeef-0000-4000-8000-000000000000").unwrap(),
        ));
        let registry = Registry {
            offset_ms: rng.between(-3_600_000, 3_600_000),
            lifetime_ms: scenario.lifetime.as_millis() as i64,
            installations,
            tokens: HashMap::new(),
            next_token: 0,
            mints: 0,
            refused_jwts: 0,
            requests: 0,
        };
        let mut sim = Sim {
            rng,
            app,
            signer,
            registry,
            scopes,
            slots: Vec::new(),
            flights: Vec::new(),
            now: T0_MS,
            generation: 0,
            known_offset: 0,
            known_dead: HashMap::new(),
            handed: VecDeque::new(),
            draining: false,
            last_jump: None,
            mint_began: HashMap::new(),
            refusal_began: HashMap::new(),
            planned: None,
            quiet_until: T0_MS,
            last_drain: None,
            log: VecDeque::new(),
            stats: Stats::default(),
            scenario,
        };
        if sim.scenario.refresher {
            let slot = sim.new_slot(Op::Refresher(Refresher::new()), None, T0_MS);
            sim.slots.push(slot);
        }
        for _ in 0..sim.scenario.concurrency {
            let start = T0_MS + sim.rng.between(0, 60_000);
            let slot = sim.random_op(start);
            sim.slots.push(slot);
        }
        sim
    }

    fn ts(&self) -> Timestamp {
        Timestamp::from_unix_millis(self.now)
    }

    fn note(&mut self, line: String) {
        if self.log.len() == 60 {
            self.log.pop_front();
        }
        self.log.push_back(format!(
            "step {} t+{:.3}s: {line}",
            self.stats.steps,
            (self.now - T0_MS) as f64 / 1000.0
        ));
    }

    /// Panics with everything needed to replay: the seed, the step, what broke, and the last
    /// steps.
    fn violated(&self, what: &str) -> ! {
        let mut report = format!(
            "simulation invariant violated: {what}\n  scenario: {:?}\n  step {}, local t+{:.3}s, registry offset {} ms, known offset {} ms\n  last steps:\n",
            self.scenario,
            self.stats.steps,
            (self.now - T0_MS) as f64 / 1000.0,
            self.registry.offset_ms,
            self.known_offset
        );
        for line in &self.log {
            let _ = writeln!(report, "    {line}");
        }
        let now = self.ts();
        let _ = writeln!(report, "  token states:");
        for scope in &self.scopes {
            let _ = writeln!(report, "    {scope}: {:?}", self.app.token_state(scope, now));
        }
        let mut counts: Vec<_> = self.stats.errors.iter().collect();
        counts.sort();
        let _ = writeln!(report, "  counts: {counts:?}");
        panic!("{report}");
    }

    fn new_slot(&self, op: Op, scope: Option<TokenScope>, start: i64) -> Slot {
        Slot {
            op,
            scope,
            state: State::Pending(start),
            started: start,
            polls: 0,
            active_polls: 0,
            drained: false,
            minted: None,
            refusals: 0,
        }
    }

    fn random_scope(&mut self) -> TokenScope {
        let n = self.scopes.len();
        let i = match self.rng.below(100) {
            0..15 => 0,
            15..18 => n - 1,
            _ => 1 + self.rng.below(n - 2),
        };
        self.scopes[i].clone()
    }

    fn random_op(&mut self, start: i64) -> Slot {
        let roll = self.rng.below(1000);
        let (op, scope) = match roll {
            0..420 => {
                let scope = self.random_scope();
                let min_life = match self.rng.below(100) {
                    0..60 => None,
                    // Zero only when strict: a zero minimum is handed expired tokens (a core
                    // bug; see `Scenario::strict`).
                    60..96 => {
                        let least = if self.scenario.strict { 0 } else { 1 };
                        Some(Duration::from_secs(self.rng.between(least, 180) as u64))
                    }
                    // More than any token lives: an error, never a mint storm.
                    _ => Some(self.scenario.lifetime + Duration::from_secs(600)),
                };
                let effective = min_life.unwrap_or(self.app.cache_config().min_remaining);
                (
                    Op::Get {
                        op: GetToken::new(scope.clone(), min_life),
                        min_life: effective,
                    },
                    Some(scope),
                )
            }
            420..750 => {
                let scope = self.random_scope();
                let path = [
                    "/organizations/me",
                    "/carbon-units?page=1",
                    "/app/installation/permissions",
                ][self.rng.below(3)];
                let request = Request::get(format!("{BASE}{path}")).body(Vec::new()).unwrap();
                (Op::Send(SendAs::new(scope.clone(), request)), Some(scope))
            }
            750..840 => (Op::List(ListInstallations::new(1 + self.rng.below(4) as u32)), None),
            840..940 => {
                let scope = self.random_scope();
                let TokenScope::Installation(id) = &scope else {
                    return self.random_op(start);
                };
                (Op::Installation(Call::installation(id.clone())), Some(scope))
            }
            940..990 => {
                let token = match self.handed.len() {
                    0 => "crs_never_issued_0000000000000000000000000000000000".to_owned(),
                    n => self.handed[self.rng.below(n)].clone(),
                };
                (Op::Revoke(Revoke::new(SecretString::new(token))), None)
            }
            _ => (Op::RevokeAll(RevokeAll::new()), None),
        };
        self.new_slot(op, scope, start)
    }

    /// Ends slot `i`'s operation and, unless the run is draining, starts another in its place
    /// after a pause.
    fn finish(&mut self, i: usize) {
        assert!(
            !self.flights.iter().any(|f| f.slot == i),
            "a finished operation has nothing in flight"
        );
        self.slots[i].state = State::Finished;
        if self.draining {
            return;
        }
        let refresher = matches!(self.slots[i].op, Op::Refresher(_));
        let after = if refresher {
            self.now
        } else {
            self.now.max(self.quiet_until)
        };
        let start = after + self.rng.between(0, 240_000);
        let slot = if refresher {
            self.new_slot(Op::Refresher(Refresher::new()), None, start)
        } else {
            self.random_op(start)
        };
        self.slots[i] = slot;
    }

    /// The driver gives slot `i`'s operation up (an error of its own, a panic, a dropped
    /// future): anything in flight for it is forgotten, and the operation is abandoned.
    fn abandon(&mut self, i: usize, why: &str) {
        self.flights.retain(|f| f.slot != i);
        let now = self.ts();
        let slot = &mut self.slots[i];
        let abandoned = catch_unwind(AssertUnwindSafe(|| slot.op.abandon(&mut self.app, now)));
        if abandoned.is_err() {
            self.violated("abandon panicked");
        }
        if matches!(self.slots[i].op, Op::Refresher(_)) {
            self.app.set_background_refresh(false);
        }
        self.generation += 1;
        self.stats.ops_abandoned += 1;
        let name = self.slots[i].op.name();
        self.note(format!("slot {i} {name} abandoned ({why})"));
        self.finish(i);
    }

    fn due(&self, state: State) -> bool {
        match state {
            State::Pending(at) | State::Sleeping(at) => at <= self.now,
            State::Ready => true,
            State::Waiting { until, generation } => until <= self.now || generation != self.generation,
            State::InFlight(_) | State::Finished => false,
        }
    }

    /// The next local time at which something can happen, if anything can.
    fn next_event(&self) -> Option<i64> {
        let slots = self.slots.iter().filter_map(|s| match s.state {
            State::Pending(at) | State::Sleeping(at) => Some(at),
            State::Waiting { until, .. } => Some(until),
            _ => None,
        });
        let flights = self.flights.iter().map(|f| f.ready_at);
        slots.chain(flights).min()
    }

    fn live_ops(&self) -> usize {
        self.slots
            .iter()
            .filter(|s| !matches!(s.op, Op::Refresher(_)) && s.state != State::Finished)
            .count()
    }

    fn run(mut self) -> Stats {
        let end = T0_MS + self.scenario.duration.as_millis() as i64;
        loop {
            if !self.draining && (self.now >= end || self.stats.steps >= self.scenario.steps) {
                self.draining = true;
                self.note("draining: no new operations, no more registry-side faults".into());
                for i in 0..self.slots.len() {
                    if let State::Pending(_) = self.slots[i].state {
                        self.slots[i].state = State::Finished;
                    }
                }
            }
            if self.draining && self.live_ops() == 0 {
                break;
            }
            self.stats.steps += 1;
            if self.stats.steps > self.scenario.steps * 4 + 100_000 {
                self.violated("the run does not end: operations keep going after the drain");
            }
            if !self.draining {
                self.registry_faults();
            }
            self.check_bounds();
            let due: Vec<usize> = (0..self.slots.len())
                .filter(|&i| self.due(self.slots[i].state))
                .collect();
            let ready: Vec<usize> = (0..self.flights.len())
                .filter(|&k| self.flights[k].ready_at <= self.now)
                .collect();
            if due.is_empty() && ready.is_empty() {
                match self.next_event() {
                    Some(t) if t > self.now => self.now = t,
                    Some(_) => self.violated("something is due now, yet nothing can be done"),
                    None => self.violated("operations are live, yet nothing will ever happen"),
                }
                continue;
            }
            let pick = self.rng.below(due.len() + ready.len());
            if pick < due.len() {
                self.poll(due[pick]);
            } else {
                self.deliver(ready[pick - due.len()]);
            }
        }
        self.finale();
        self.stats
    }

    /// The registry's clock jumps, it revokes a token, or the driver abandons an operation.
    fn registry_faults(&mut self) {
        let faults = self.scenario.faults;
        if self.rng.next().is_multiple_of(6000) {
            // A quiet spell: nobody asks for anything for a while (the refresher keeps going).
            self.quiet_until = self.now + self.rng.between(30 * 60_000, 2 * 3_600_000);
            for i in 0..self.slots.len() {
                if let State::Pending(at) = self.slots[i].state
                    && !matches!(self.slots[i].op, Op::Refresher(_))
                {
                    let start = at.max(self.quiet_until + self.rng.between(0, 240_000));
                    self.slots[i].state = State::Pending(start);
                    self.slots[i].started = start;
                }
            }
            self.stats.quiet_spells += 1;
            self.note(format!("quiet until t+{} s", (self.quiet_until - T0_MS) / 1000));
        }
        if self.rng.chance(faults.clock_jump) {
            let jump = if self.rng.chance(700) {
                self.rng.between(-3_000, 3_000)
            } else {
                let size = self.rng.between(60_000, 2 * 3_600_000);
                if self.rng.chance(500) { size } else { -size }
            };
            self.jump_clock(jump);
        }
        if self.rng.chance(faults.registry_revoke) {
            let server = self.registry.server_now(self.now);
            let mut live: Vec<&String> = self
                .registry
                .tokens
                .iter()
                .filter(|(_, t)| !t.revoked && t.expires_server > server)
                .map(|(k, _)| k)
                .collect();
            live.sort();
            if !live.is_empty() {
                let token = live[self.rng.below(live.len())].clone();
                self.registry.tokens.get_mut(&token).unwrap().revoked = true;
                self.stats.registry_revocations += 1;
                self.note(format!("registry revokes {}", short(&token)));
            }
        }
        if self.rng.chance(faults.abandon) {
            let live: Vec<usize> = (0..self.slots.len())
                .filter(|&i| !matches!(self.slots[i].state, State::Pending(_) | State::Finished))
                .collect();
            if !live.is_empty() {
                let i = live[self.rng.below(live.len())];
                self.abandon(i, "the driver dropped it");
            }
        }
    }

    /// The registry's clock jumps by `jump` ms.
    fn jump_clock(&mut self, jump: i64) {
        self.registry.offset_ms += jump;
        self.stats.clock_jumps += 1;
        if jump.abs() > 30_000 {
            self.last_jump = Some(self.now);
        }
        if jump > 60_000 {
            self.stats.big_forward_jumps += 1;
        }
        self.note(format!("registry clock jumps {jump:+} ms"));
    }

    /// Every live operation within its bounds.
    fn check_bounds(&self) {
        for (i, s) in self.slots.iter().enumerate() {
            if matches!(s.op, Op::Refresher(_)) || matches!(s.state, State::Pending(_) | State::Finished) {
                continue;
            }
            if self.now - s.started > OP_TIME_LIMIT_MS {
                self.violated(&format!(
                    "slot {i} {} has run for {} s of simulated time ({:?})",
                    s.op.name(),
                    (self.now - s.started) / 1000,
                    s.state
                ));
            }
            if s.active_polls > OP_ACTIVE_POLL_LIMIT || s.polls > OP_POLL_LIMIT {
                self.violated(&format!(
                    "slot {i} {} polled {} times ({} that did something)",
                    s.op.name(),
                    s.polls,
                    s.active_polls
                ));
            }
        }
    }

    fn poll(&mut self, i: usize) {
        let now = self.ts();
        if let State::Pending(_) = self.slots[i].state {
            self.slots[i].started = self.now;
            if matches!(self.slots[i].op, Op::Refresher(_)) {
                self.app.set_background_refresh(true);
            }
        }
        self.stats.polls += 1;
        self.slots[i].polls += 1;
        let slot = &mut self.slots[i];
        let polled = catch_unwind(AssertUnwindSafe(|| slot.op.poll(&mut self.app, now)));
        let name = self.slots[i].op.name();
        let Ok(polled) = polled else {
            self.stats.panics_caught += 1;
            if matches!(self.slots[i].op, Op::Refresher(_)) {
                self.stats.refresher_panics += 1;
            }
            self.abandon(i, "the signer panicked in poll");
            return;
        };
        if matches!(self.slots[i].op, Op::RevokeAll(_))
            && !self.slots[i].drained
            && matches!(polled, Polled::Send(..) | Polled::Done(_))
        {
            // Past its wait for mints in flight, it has emptied the cache.
            self.slots[i].drained = true;
            self.stats.drains += 1;
            self.last_drain = Some(self.stats.steps);
        }
        match polled {
            Polled::Send(id, request) => {
                self.slots[i].active_polls += 1;
                if self.flights.iter().any(|f| f.slot == i) {
                    self.violated(&format!("slot {i} {name} sends {id} with a request already in flight"));
                }
                self.note(format!(
                    "slot {i} {name} sends {id}: {} {}",
                    request.method(),
                    request.uri().path()
                ));
                self.send(i, id, request);
            }
            Polled::Sleep(until) => {
                self.slots[i].active_polls += 1;
                if until.unix_millis() < self.now {
                    self.violated(&format!("slot {i} {name} sleeps until {until}, in the past"));
                }
                self.note(format!("slot {i} {name} sleeps {} ms", until.unix_millis() - self.now));
                self.slots[i].state = State::Sleeping(until.unix_millis());
            }
            Polled::Wait(until) => {
                let mut until = until.unix_millis();
                if until <= self.now {
                    let refresher = matches!(self.slots[i].op, Op::Refresher(_));
                    if !refresher || self.scenario.strict {
                        self.violated(&format!(
                            "slot {i} {name} waits until {}, {} ms ago: a driver polls again at once, and again",
                            Timestamp::from_unix_millis(until),
                            self.now - until
                        ));
                    }
                    self.stats.refresher_waits_in_the_past += 1;
                    until = self.now + 60_000;
                }
                self.slots[i].state = State::Waiting {
                    until,
                    generation: self.generation,
                };
            }
            Polled::Done(outcome) => {
                self.slots[i].active_polls += 1;
                if matches!(self.slots[i].op, Op::Refresher(_)) {
                    self.violated("the refresher finished");
                }
                self.judge(i, outcome);
                self.stats.ops_done += 1;
                let slot = &self.slots[i];
                self.stats.longest_op_ms = self.stats.longest_op_ms.max(self.now - slot.started);
                self.stats.most_polls = self.stats.most_polls.max(slot.polls);
                self.stats.most_active_polls = self.stats.most_active_polls.max(slot.active_polls);
                self.finish(i);
            }
        }
    }

    /// Checks an operation's result.
    fn judge(&mut self, i: usize, outcome: Outcome) {
        let name = self.slots[i].op.name();
        if let Some(error) = outcome.error() {
            let kind = format!("{name}: {}", error_kind(error));
            *self.stats.errors.entry(kind).or_default() += 1;
            self.note(format!("slot {i} {name} fails: {error}"));
            if let Some(why) = self.unexpected(i, error) {
                let since = |t: i64| format!("t+{:.3}s", (t - T0_MS) as f64 / 1000.0);
                self.violated(&format!(
                    "slot {i} {name} failed unexpectedly ({why}): {error}\n  it started at {}; the last registry clock jump over 30 s was at {}",
                    since(self.slots[i].started),
                    self.last_jump.map_or("none".into(), since)
                ));
            }
            return;
        }
        match outcome {
            Outcome::Token(Ok(token)) => {
                let Op::Get { min_life, .. } = self.slots[i].op else {
                    unreachable!()
                };
                if token.remaining(self.ts()) < min_life {
                    self.violated(&format!(
                        "slot {i} GetToken got a token with {:?} left on the local clock, asked for {min_life:?}",
                        token.remaining(self.ts())
                    ));
                }
                let scope = self.slots[i].scope.clone().unwrap();
                let secret = token.secret().expose();
                let held = matches!(&self.slots[i].minted, Some((minted, true)) if minted == secret);
                self.check_handout(secret, &scope, min_life, &format!("slot {i} GetToken"), held);
                self.note(format!("slot {i} GetToken done: {}", short(token.secret().expose())));
            }
            Outcome::List(Ok(list)) => {
                let ids: Vec<&str> = list.iter().map(|i| i.id.as_str()).collect();
                if ids != self.registry.installations {
                    self.violated(&format!("ListInstallations returned {ids:?}"));
                }
                self.note(format!("slot {i} {name} done: {} installations", ids.len()));
            }
            Outcome::Installation(Ok(installation)) => {
                if !self.registry.installations.contains(&installation.id) {
                    self.violated(&format!("read installation {}", installation.id));
                }
                self.note(format!("slot {i} {name} done"));
            }
            Outcome::Response(Ok(response)) => {
                self.note(format!("slot {i} {name} done: {}", response.status()));
            }
            Outcome::Count(Ok(n)) => {
                self.stats.revoke_alls_done += 1;
                self.note(format!("slot {i} {name} done: {n} revoked"));
            }
            Outcome::Unit(Ok(())) => {
                self.stats.revokes_done += 1;
                self.note(format!("slot {i} {name} done"));
            }
            _ => unreachable!("errors are judged above"),
        }
    }

    /// Why `error` is not one the faults explain, if it is not.
    fn unexpected(&self, i: usize, error: &Error) -> Option<&'static str> {
        let slot = &self.slots[i];
        // A GetToken or SendAs may be handed another operation's refusal: it joined that
        // operation's mint for its scope while it was in flight, or found the mint's 401 recorded
        // as the scope's failure (during its back-off). The refusal is then as old as that mint,
        // which may have begun long before this operation (it may be the refresher's).
        let began = match slot.op {
            Op::Get { .. } | Op::Send(_) => slot
                .scope
                .as_ref()
                .and_then(|scope| self.refusal_began.get(scope))
                .map_or(slot.started, |&mint| mint.min(slot.started)),
            _ => slot.started,
        };
        // A registry clock jump while the refused request ran, or shortly before: answers that
        // left the registry before the jump and arrive after it (even after newer ones) teach
        // the app the old clock back, and a JWT signed for it is refused again after the one
        // clock-skew retry each request gets.
        let jumped = self.last_jump.is_some_and(|at| at >= began - MAX_LATENCY_MS);
        let ghost = slot.scope.as_ref() == self.scopes.last();
        match error {
            // Faults the retry budget gave up on.
            Error::Server { .. } | Error::RateLimited { .. } => None,
            Error::Transport { kind, .. } => {
                (*kind != TransportErrorKind::ConnectionLost).then_some("a transport error the driver never reported")
            }
            Error::MalformedBody { .. } => None,
            Error::Signing(_) => None,
            Error::NotFound { .. } => (!ghost).then_some("404 for an installation that exists"),
            Error::Config { .. } => match slot.op {
                Op::Get { min_life, .. } if min_life > self.scenario.lifetime => None,
                _ => Some("a configuration error for a setting that is fine"),
            },
            // A revocation of a token the registry no longer honours.
            Error::Unauthorized { .. } if matches!(slot.op, Op::Revoke(_) | Op::RevokeAll(_)) => None,
            // The skew retry is once per request: a second jump may beat it.
            Error::Unauthorized { .. } if jumped => None,
            Error::Unauthorized { .. } => Some("401 with no clock jump to explain it"),
            _ => Some("not a fault the simulation injects"),
        }
    }

    /// What is wrong with handing `token` out for `scope` to someone who needs `min_life`, now,
    /// if anything.
    fn handout_problem(&self, token: &str, scope: &TokenScope, min_life: Duration) -> Option<String> {
        let Some(issued) = self.registry.tokens.get(token) else {
            return Some(format!("{} was never issued", short(token)));
        };
        if &issued.scope != scope {
            return Some(format!(
                "{} is {}'s, handed out for {scope}",
                short(token),
                issued.scope
            ));
        }
        match self.known_dead.get(token) {
            Some(Death::Told) => {
                return Some(format!(
                    "{} handed out after the app was told it is revoked or refused",
                    short(token)
                ));
            }
            Some(Death::RefusedOnRetry) => {
                return Some(format!(
                    "{} handed out after a SendAs retry was refused with it (401) {KEPT_AFTER_RETRY}",
                    short(token)
                ));
            }
            None => {}
        }
        let Some(delivered) = issued.delivered_local else {
            return Some(format!("{} handed out before its mint was answered", short(token)));
        };
        let in_flight = delivered - issued.created_local;
        let known_left = issued.expires_server - (self.now + self.known_offset);
        let needed = min_life.as_millis() as i64 - in_flight - CLOCK_SLACK_MS;
        (known_left < needed).then(|| {
            format!(
                "{} has {known_left} ms left on the registry's clock as the app knows it; it asked for {} ms (its mint answer took {in_flight} ms)",
                short(token),
                min_life.as_millis()
            )
        })
    }

    /// A token is being handed out (to a caller, or on the wire) at `self.now`. `held` is the
    /// problem-free check made when the operation received the token from its own mint, if it
    /// did: it may have gone bad while the operation held it (a core bug; see `Scenario`).
    fn check_handout(&mut self, token: &str, scope: &TokenScope, min_life: Duration, what: &str, held: bool) {
        self.stats.tokens_handed_out += 1;
        if let Some(problem) = self.handout_problem(token, scope, min_life) {
            if self.scenario.strict {
                self.violated(&format!("{what}: {problem}"));
            }
            if held {
                self.stats.held_tokens_gone_bad += 1;
                self.note(format!(
                    "{what}: known core bug, a token held since its mint went bad: {problem}"
                ));
            } else if problem.ends_with(KEPT_AFTER_RETRY) {
                self.stats.retry_refusals_kept += 1;
                self.note(format!("{what}: known core bug: {problem}"));
            } else {
                self.violated(&format!("{what}: {problem}"));
            }
        }
        let issued = &self.registry.tokens[token];
        if issued.expires_server <= self.registry.server_now(self.now) {
            self.stats.unknowable_expired += 1;
        }
        if issued.revoked {
            self.stats.unknowable_revoked += 1;
        }
        if self.handed.len() == 32 {
            self.handed.pop_front();
        }
        self.handed.push_back(token.to_owned());
    }

    /// Slot `i` asks for a mint: only when nothing is cached for the scope, its refresh is due,
    /// or the cached token has less life than the asker needs; and never while another mint for
    /// the scope is in flight. Returns the scope.
    fn check_mint(&mut self, i: usize, request: &Request<Vec<u8>>) -> TokenScope {
        let path = request.uri().path();
        let scope = match path
            .strip_prefix("/app/installations/")
            .and_then(|p| p.strip_suffix("/accessTokens"))
        {
            Some(id) => TokenScope::Installation(InstallationId::new(id).unwrap()),
            None => TokenScope::App,
        };
        let now = self.ts();
        let name = self.slots[i].op.name();
        let needs = match self.slots[i].op {
            Op::Get { min_life, .. } => min_life,
            _ => self.app.cache_config().min_remaining,
        };
        let why = match self.app.token_state(&scope, now) {
            TokenState::Fetching => "nothing cached",
            TokenState::Refreshing(t) if now >= t.refresh_at() => "refresh due",
            TokenState::Refreshing(t) if t.remaining(now) < needs => "cached token too short",
            other => self.violated(&format!(
                "slot {i} {name} mints for {scope}, which is {other:?}: a mint nothing calls for"
            )),
        };
        if let Some(other) = self.flights.iter().find(|f| f.mint_for.as_ref() == Some(&scope)) {
            let problem = format!(
                "slot {i} {name} mints for {scope} while slot {}'s mint {} is in flight",
                other.slot, other.id
            );
            // A RevokeAll that emptied the cache since that mint was sent dropped its record.
            if self.scenario.strict || self.last_drain.is_none_or(|drain| drain < other.sent) {
                self.violated(&problem);
            }
            self.stats.live_mints_drained += 1;
            self.note(format!("known core bug, RevokeAll drained a live mint: {problem}"));
        }
        *self.stats.errors.entry(format!("(mints sent: {why})")).or_default() += 1;
        self.note(format!("slot {i} {name} mints for {scope}: {why}"));
        scope
    }

    /// Sends slot `i`'s request: decides its fate (answered now or later, lost before or after
    /// the registry acts, a fault instead of an answer) and puts it in flight.
    fn send(&mut self, i: usize, id: RequestId, request: Request<Vec<u8>>) {
        let token = bearer(&request).filter(|b| b.starts_with("crs_")).map(str::to_owned);
        let revokes = request.method() == Method::DELETE;
        if let (Some(token), false) = (&token, revokes) {
            // A request carrying a token (SendAs): the token is handed out on the wire.
            let scope = match &self.slots[i].op {
                Op::Send(_) => self.slots[i].scope.clone().unwrap(),
                other => self.violated(&format!("{} sent a token-authorised request", other.name())),
            };
            let min_life = self.app.cache_config().min_remaining;
            let held = matches!(&self.slots[i].minted, Some((minted, true)) if minted == token);
            self.check_handout(token, &scope, min_life, &format!("slot {i} SendAs request"), held);
        }
        let mint_for = request
            .uri()
            .path()
            .ends_with("accessTokens")
            .then(|| self.check_mint(i, &request));
        if matches!(self.slots[i].op, Op::Revoke(_)) {
            self.stats.revoke_sends += 1;
        }
        if token.is_none() && !revokes && !bearer(&request).is_some_and(|b| b.starts_with("eyJ")) {
            self.violated(&format!("slot {i} sent a request with neither a token nor a JWT"));
        }
        if mint_for.is_some() {
            // A clock-skew retry is sent as the same id: the mint began with its first send.
            self.mint_began.entry(id).or_insert(self.now);
        }
        let (latency, flight) = match self.planned.take() {
            Some(Planned {
                answered_when_sent,
                latency_ms,
            }) => {
                let flight = if answered_when_sent {
                    self.answer(&request)
                } else {
                    Flight::Unserved(request)
                };
                (latency_ms, flight)
            }
            None => {
                let latency = match self.rng.below(10) {
                    0..4 => 0,
                    4..9 => self.rng.between(1, 3_000),
                    _ => self.rng.between(3_000, MAX_LATENCY_MS),
                };
                let flight = if self.rng.chance(self.scenario.faults.lost_before) {
                    Flight::Lost
                } else if self.rng.chance(500) {
                    self.answer(&request)
                } else {
                    Flight::Unserved(request)
                };
                (latency, flight)
            }
        };
        self.flights.push(InFlight {
            slot: i,
            id,
            ready_at: self.now + latency,
            flight,
            token,
            revokes,
            mint_for,
            sent: self.stats.steps,
        });
        self.slots[i].state = State::InFlight(id);
    }

    /// The registry's answer to `request` now, or a fault in its place.
    fn answer(&mut self, request: &Request<Vec<u8>>) -> Flight {
        let faults = self.scenario.faults;
        let server_ms = self.registry.server_now(self.now);
        let roll = self.rng.below(1000) as u32;
        let response = if roll < faults.server_error {
            self.stats.server_errors += 1;
            let mut r = api_error(503, server_ms, "upstream unavailable");
            if self.rng.chance(500) {
                let secs = self.rng.between(0, 20);
                r.headers_mut().insert("retry-after", secs.to_string().parse().unwrap());
            }
            r
        } else if roll < faults.server_error + faults.rate_limited {
            self.stats.rate_limited += 1;
            let mut r = api_error(429, server_ms, "slow down");
            let secs = if self.rng.chance(100) {
                10_000_000
            } else {
                self.rng.between(0, 40)
            };
            r.headers_mut().insert("retry-after", secs.to_string().parse().unwrap());
            r
        } else if roll < faults.server_error + faults.rate_limited + faults.malformed {
            self.stats.malformed += 1;
            raw_response(200, server_ms, b"<html><body>Bad gateway</body></html>".to_vec())
        } else {
            let (response, _issued) = self.registry.serve(request, self.now);
            if self.rng.chance(faults.lost_after) {
                return Flight::Lost;
            }
            response
        };
        Flight::Answered { response, server_ms }
    }

    /// Delivers in-flight request `k` to its operation.
    fn deliver(&mut self, k: usize) {
        let InFlight {
            slot: i,
            id,
            flight,
            token,
            revokes,
            mint_for,
            ..
        } = self.flights.swap_remove(k);
        if self.slots[i].state != State::InFlight(id) {
            self.violated(&format!(
                "an answer for {id} reached slot {i}, which is {:?}",
                self.slots[i].state
            ));
        }
        self.stats.deliveries += 1;
        let flight = match flight {
            Flight::Unserved(request) => self.answer(&request),
            other => other,
        };
        let now = self.ts();
        let name = self.slots[i].op.name();
        // Whether this is the mint in flight for its scope (so a failure recorded now is its own).
        let live_mint = mint_for.as_ref().is_some_and(|scope| {
            matches!(
                self.app.token_state(scope, now),
                TokenState::Fetching | TokenState::Refreshing(_)
            )
        });
        let handled = match flight {
            Flight::Answered { response, server_ms } => {
                let status = response.status().as_u16();
                // What the app learns from this answer.
                self.known_offset = server_ms - self.now;
                if let Some(minted) = minted_token(&response) {
                    let issued = self.registry.tokens.get_mut(&minted).unwrap();
                    issued.delivered_local = Some(self.now);
                    let needs = match &self.slots[i].op {
                        Op::Get { min_life, .. } => Some(*min_life),
                        Op::Send(_) => Some(self.app.cache_config().min_remaining),
                        _ => None,
                    };
                    if let (Some(needs), Some(scope)) = (needs, &self.slots[i].scope) {
                        let fine = self.handout_problem(&minted, scope, needs).is_none();
                        self.slots[i].minted = Some((minted, fine));
                    }
                }
                if let Some(token) = &token
                    && (status == 401 || (revokes && (200..300).contains(&status)))
                {
                    let retried = matches!(self.slots[i].op, Op::Send(_)) && self.slots[i].refusals > 0;
                    let death = if retried { Death::RefusedOnRetry } else { Death::Told };
                    let known = self.known_dead.entry(token.clone()).or_insert(death);
                    if death == Death::Told {
                        *known = Death::Told;
                    }
                }
                if token.is_some() && status == 401 {
                    self.slots[i].refusals += 1;
                }
                self.note(format!("slot {i} {name} gets {id}: {status}"));
                let slot = &mut self.slots[i];
                catch_unwind(AssertUnwindSafe(|| {
                    slot.op.handle_response(&mut self.app, id, response, now)
                }))
            }
            Flight::Lost => {
                self.stats.failures_delivered += 1;
                self.note(format!("slot {i} {name} loses {id}: connection lost"));
                let error = Error::Transport {
                    kind: TransportErrorKind::ConnectionLost,
                    message: "simulated: connection reset".into(),
                };
                let slot = &mut self.slots[i];
                catch_unwind(AssertUnwindSafe(|| {
                    slot.op.handle_failure(&mut self.app, id, error, now)
                }))
            }
            Flight::Unserved(_) => unreachable!("served above"),
        };
        self.generation += 1;
        self.slots[i].state = State::Ready;
        if handled.is_err() {
            self.stats.panics_caught += 1;
            if matches!(self.slots[i].op, Op::Refresher(_)) {
                self.stats.refresher_panics += 1;
            }
            self.abandon(i, "the signer panicked in handle_response");
        }
        if let Some(scope) = mint_for {
            self.track_refusal(scope, id, live_mint);
        }
    }

    /// Mint `id` for `scope` was answered (`live`: it was the scope's mint in flight): when the
    /// scope's recorded failure is now its 401, notes when the mint began; once the recorded
    /// failure is anything else, or none, forgets the scope's entry.
    fn track_refusal(&mut self, scope: TokenScope, id: RequestId, live: bool) {
        match self.app.token_state(&scope, self.ts()) {
            // Sent again for clock skew: no failure is handed out meanwhile.
            TokenState::Fetching | TokenState::Refreshing(_) => {}
            TokenState::Failed {
                error: Error::Unauthorized { .. },
                ..
            } => {
                if live {
                    self.refusal_began.insert(scope, self.mint_began[&id]);
                }
            }
            _ => {
                self.refusal_began.remove(&scope);
            }
        }
    }

    /// Every operation is done or abandoned: nothing may be held, and mints stayed in bounds.
    fn finale(&mut self) {
        // Stop the refresher, as a driver shutting down would.
        for i in 0..self.slots.len() {
            if matches!(self.slots[i].op, Op::Refresher(_)) && self.slots[i].state != State::Finished {
                self.abandon(i, "shutdown");
            }
        }
        assert!(
            self.flights.is_empty(),
            "nothing is in flight once every operation is over"
        );
        let now = self.ts();
        let mut leaked = false;
        for scope in self.scopes.clone() {
            if let state @ (TokenState::Fetching | TokenState::Refreshing(_)) = self.app.token_state(&scope, now) {
                if self.scenario.strict || self.stats.refresher_panics == 0 {
                    self.violated(&format!("{scope} is still {state:?} after every operation ended"));
                }
                self.stats.refresher_leaks += 1;
                leaked = true;
                self.note(format!(
                    "known core bug: {scope} is still {state:?}, held by a refresher that panicked"
                ));
            }
        }
        if leaked {
            // Held until the cache presumes that mint abandoned.
            self.now += self.app.cache_config().fetch_timeout.as_millis() as i64;
        }
        // A new GetToken for any scope sends or finishes at once; it sleeps only for a back-off
        // a failure recorded, and after that has passed it sends or finishes too.
        for pass in 0..2 {
            let now = self.ts();
            for scope in self.scopes.clone() {
                let mut op = GetToken::new(scope.clone(), None);
                let polled = catch_unwind(AssertUnwindSafe(|| op.poll(&mut self.app, now)));
                match polled {
                    Err(_) => {
                        // The signer panicked: as a driver would, abandon and try once more.
                        op.abandon(&mut self.app, now);
                        let mut again = GetToken::new(scope.clone(), None);
                        if let Ok(Step::Wait { .. }) = catch_unwind(AssertUnwindSafe(|| again.poll(&mut self.app, now)))
                        {
                            self.violated(&format!("a new GetToken for {scope} waits after the run"));
                        }
                        again.abandon(&mut self.app, now);
                    }
                    Ok(Step::Wait { until, .. }) => self.violated(&format!(
                        "a new GetToken for {scope} waits (until {until}) after the run"
                    )),
                    Ok(Step::Sleep { until }) => {
                        let backing_off = matches!(
                            self.app.token_state(&scope, now),
                            TokenState::Failed { retry_at, .. } if retry_at > now
                        );
                        if pass == 1 || !backing_off {
                            self.violated(&format!(
                                "a new GetToken for {scope} sleeps until {until} with no back-off to explain it"
                            ));
                        }
                    }
                    Ok(Step::Send { .. } | Step::Done(_)) => {}
                    Ok(Step::Store { command, .. }) => {
                        self.violated(&format!("no store is attached, yet asked to run {command:?}"))
                    }
                    Ok(Step::Sign { .. }) => self.violated("the app has a signer, yet asked to sign outside"),
                }
                op.abandon(&mut self.app, now);
            }
            // Past every back-off (at most the cache's cap) for the second pass.
            self.now += 301_000;
        }
        // No mint storm: one mint per scope and refresh window, plus what the faults cost.
        let lifetime = self.scenario.lifetime.as_secs_f64();
        let margin = (300f64).max(lifetime * 0.10).min(lifetime / 2.0);
        let window_ms = (lifetime - margin) * 1000.0;
        let windows = ((self.now - T0_MS) as f64 / window_ms).ceil() as u64 + 1;
        let minted_scopes: HashSet<&TokenScope> = self.registry.tokens.values().map(|t| &t.scope).collect();
        let scopes = minted_scopes.len() as u64;
        let lost = self
            .registry
            .tokens
            .values()
            .filter(|t| t.delivered_local.is_none())
            .count() as u64;
        let allowed = scopes * windows
            + self.stats.registry_revocations
            + self.stats.revoke_sends
            + scopes * (self.stats.drains + self.stats.big_forward_jumps)
            + lost
            + 8;
        if self.registry.mints > allowed {
            self.violated(&format!(
                "mint storm: {} mints; allowed {allowed} ({scopes} scopes x {windows} windows, {} registry revocations, {} revocations sent, {} caches emptied, {} big forward jumps, {lost} tokens lost in flight)",
                self.registry.mints,
                self.stats.registry_revocations,
                self.stats.revoke_sends,
                self.stats.drains,
                self.stats.big_forward_jumps
            ));
        }
        self.stats.errors.insert("(mints)".into(), self.registry.mints);
        self.stats.errors.insert("(mints allowed)".into(), allowed);
        self.stats
            .errors
            .insert("(JWTs refused)".into(), self.registry.refused_jwts);
        self.stats
            .errors
            .insert("(signer panics)".into(), self.signer.panicked.load(Ordering::Relaxed));
        self.stats
            .errors
            .insert("(signer errors)".into(), self.signer.failed.load(Ordering::Relaxed));
        self.stats
            .errors
            .insert("(simulated minutes)".into(), ((self.now - T0_MS) / 60_000) as u64);
    }
}

/// The token a mint response carries.
fn minted_token(response: &Response<Vec<u8>>) -> Option<String> {
    if response.status() != 201 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_slice(response.body()).ok()?;
    Some(v.get("token")?.as_str()?.to_owned())
}

fn short(token: &str) -> String {
    format!("crs_…{}", &token[token.len().saturating_sub(6)..])
}

fn error_kind(e: &Error) -> String {
    let debug = format!("{e:?}");
    debug.split([' ', '(', '{']).next().unwrap_or_default().to_owned()
}

// ---------------------------------------------------------------------------------------------
// the runs

/// Seeds to run: `SIM_SEEDS` (comma-separated) overrides the defaults.
fn seeds(defaults: &[u64]) -> Vec<u64> {
    match std::env::var("SIM_SEEDS") {
        Ok(list) => list.split(',').filter_map(|s| s.trim().parse().ok()).collect(),
        Err(_) => defaults.to_vec(),
    }
}

fn steps(default: u64) -> u64 {
    std::env::var("SIM_STEPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default)
}

fn run(scenario: Scenario) -> Stats {
    let label = format!("{scenario:?}");
    let started = std::time::Instant::now();
    let stats = Sim::new(scenario).run();
    let mut errors: Vec<_> = stats.errors.iter().collect();
    errors.sort();
    eprintln!(
        "{label}\n  {} steps ({} polls, {} deliveries), {} ops done (longest {} s, at most {} polls, {} active), {} abandoned, {} panics caught, {} tokens handed out ({} after an unseen registry clock jump, {} revoked unseen); open core bugs seen: {} refresher waits in the past, {} held tokens gone bad, {} tokens kept after a refused retry, {} scopes held by a panicked refresher, {} live mints drained; {:?}\n  {errors:?}",
        stats.steps,
        stats.polls,
        stats.deliveries,
        stats.ops_done,
        stats.longest_op_ms / 1000,
        stats.most_polls,
        stats.most_active_polls,
        stats.ops_abandoned,
        stats.panics_caught,
        stats.tokens_handed_out,
        stats.unknowable_expired,
        stats.unknowable_revoked,
        stats.refresher_waits_in_the_past,
        stats.held_tokens_gone_bad,
        stats.retry_refusals_kept,
        stats.refresher_leaks,
        stats.live_mints_drained,
        started.elapsed(),
    );
    stats
}

/// Two-hour tokens, a refresher, every fault at a high rate.
fn heavy(seed: u64, strict: bool) -> Scenario {
    Scenario {
        seed,
        lifetime: Duration::from_secs(7200),
        concurrency: 50,
        refresher: true,
        faults: Faults::heavy(),
        duration: Duration::from_secs(16 * 3600),
        steps: steps(20_000),
        strict,
    }
}

/// Fifteen-minute tokens (a refresh window every ten minutes), no refresher: callers refresh.
fn short_tokens(seed: u64, strict: bool) -> Scenario {
    Scenario {
        seed,
        lifetime: Duration::from_secs(900),
        concurrency: 50,
        refresher: false,
        faults: Faults::heavy(),
        duration: Duration::from_secs(10 * 3600),
        steps: steps(20_000),
        strict,
    }
}

/// Fifteen-minute tokens, a refresher, light faults: long runs over many refresh windows.
fn light(seed: u64, strict: bool) -> Scenario {
    Scenario {
        seed,
        lifetime: Duration::from_secs(900),
        concurrency: 50,
        refresher: true,
        faults: Faults::light(),
        duration: Duration::from_secs(24 * 3600),
        steps: steps(30_000),
        strict,
    }
}

/// The run did exercise the core (a sanity check of the simulation itself).
fn assert_busy(stats: &Stats) {
    assert!(stats.ops_done > 300 && stats.tokens_handed_out > 100, "{stats:?}");
}

#[test]
fn heavy_faults_with_a_refresher() {
    for seed in seeds(&[1, 2, 3]) {
        assert_busy(&run(heavy(seed, false)));
    }
}

#[test]
fn short_tokens_without_a_refresher() {
    for seed in seeds(&[4, 5, 6]) {
        assert_busy(&run(short_tokens(seed, false)));
    }
}

#[test]
fn light_faults_many_refresh_windows() {
    for seed in seeds(&[7, 8]) {
        assert_busy(&run(light(seed, false)));
    }
}

/// The same runs, failing on the open core bugs too.
#[test]
fn every_scenario_strict() {
    for seed in seeds(&[1, 2, 3]) {
        run(heavy(seed, true));
    }
    for seed in seeds(&[4, 5, 6]) {
        run(short_tokens(seed, true));
    }
    for seed in seeds(&[7, 8]) {
        run(light(seed, true));
    }
}

// ---------------------------------------------------------------------------------------------
// the bugs the simulation found, each as one directed sequence

fn quiet_app() -> (App, Registry) {
    let (app, registry, _) = app_with_signer();
    (app, registry)
}

/// An app whose signer panics when told to, and a registry with 15-minute tokens.
fn app_with_signer() -> (App, Registry, Arc<SignerState>) {
    let signer = Arc::new(SignerState {
        rng: AtomicU64::new(1),
        panic_per_mille: AtomicU32::new(0),
        error_per_mille: 0,
        signed: AtomicU64::new(0),
        panicked: AtomicU64::new(0),
        failed: AtomicU64::new(0),
    });
    let app = App::builder(APP_ID, FlakySigner(signer.clone()))
        .base_url(BASE)
        .build()
        .unwrap();
    let registry = Registry {
        offset_ms: 0,
        lifetime_ms: 900_000,
        installations: Vec::new(),
        tokens: HashMap::new(),
        next_token: 0,
        mints: 0,
        refused_jwts: 0,
        requests: 0,
    };
    (app, registry, signer)
}

/// Polls `op` once, expecting a send, and answers it from `registry` at `now`.
fn send_and_answer<O: Operation>(op: &mut O, app: &mut App, registry: &mut Registry, now: Timestamp) {
    let Step::Send { id, request } = op.poll(app, now) else {
        panic!("expected a send")
    };
    let (response, _) = registry.serve(&request, now.unix_millis());
    op.handle_response(app, id, response, now);
}

/// Found by the simulation (seed 7, `light_faults_many_refresh_windows`): a cached token
/// expired without being refreshed (the refresher was restarted after a panic, or its refresh
/// kept failing until the token expired); `Refresher::poll` then returns `Wait { until }` with
/// `until` the token's refresh time, long past, on every poll. A driver that polls again at
/// `until` spins. `TokenCache::poll_timeout` counts expired tokens, which `poll_refresh`
/// rightly skips.
#[test]
fn refresher_never_waits_for_a_time_already_past() {
    let (mut app, mut registry) = quiet_app();
    let t0 = Timestamp::from_unix_millis(T0_MS);
    let mut get = GetToken::new(TokenScope::App, None);
    send_and_answer(&mut get, &mut app, &mut registry, t0);
    let Step::Done(Ok(token)) = get.poll(&mut app, t0) else {
        panic!("the mint is answered")
    };
    // The refresher starts after the token has expired (nothing refreshed it meanwhile).
    let later = token.expires_local().plus(Duration::from_secs(1));
    let mut refresher = Refresher::new();
    match refresher.poll(&mut app, later) {
        Step::Wait { until, .. } => assert!(
            until > later,
            "the refresher asks to be polled again at {until}, {} s before now ({later})",
            later.unix_seconds() - until.unix_seconds()
        ),
        other => panic!("nothing to refresh, yet {other:?}"),
    }
}

/// Found by the simulation (seed 1, `heavy_faults_with_a_refresher`): a `GetToken` whose mint
/// was answered holds the token until its next poll. If, in between, another operation
/// revokes it (`RevokeAll` drains the cache and revokes it, or `Revoke`) or an answer shows the
/// registry's clock jumped so that it has expired there, that poll still hands it out: the app
/// gives a caller a token it has itself revoked, or one it knows to be expired (next test).
#[test]
fn get_token_never_hands_out_a_token_revoked_while_it_held_it() {
    let t0 = Timestamp::from_unix_millis(T0_MS);
    // Revoked by a concurrent RevokeAll between the mint's answer and the next poll.
    let (mut app, mut registry) = quiet_app();
    let mut get = GetToken::new(TokenScope::App, None);
    send_and_answer(&mut get, &mut app, &mut registry, t0);
    let mut revoke_all = RevokeAll::new();
    send_and_answer(&mut revoke_all, &mut app, &mut registry, t0);
    assert!(matches!(revoke_all.poll(&mut app, t0), Step::Done(Ok(1))));
    if let Step::Done(Ok(token)) = get.poll(&mut app, t0) {
        let live = registry.live_token(token.secret().expose(), registry.server_now(T0_MS));
        assert!(
            live.is_some(),
            "GetToken handed out the token RevokeAll has just revoked"
        );
    }
}

/// The second way of the bug above: an answer shows the registry's clock has moved on, so the
/// held token has all but expired there, before the next poll.
#[test]
fn get_token_never_hands_out_a_token_that_expired_while_it_held_it() {
    let t0 = Timestamp::from_unix_millis(T0_MS);
    let (mut app, mut registry) = quiet_app();
    let mut get = GetToken::new(TokenScope::App, None);
    send_and_answer(&mut get, &mut app, &mut registry, t0);
    registry.offset_ms += 899_000;
    let mut call = Call::installations_page(10, 0);
    send_and_answer(&mut call, &mut app, &mut registry, t0);
    if let Step::Done(Ok(token)) = get.poll(&mut app, t0) {
        let left = registry.tokens[token.secret().expose()].expires_server - registry.server_now(T0_MS);
        assert!(
            left >= 60_000,
            "GetToken handed out a token with {left} ms left on the registry's clock, which the app had just seen"
        );
    }
}

/// Found by the simulation (seed 3, `heavy_faults_with_a_refresher`): a `SendAs` whose token is
/// refused (401) drops it, mints another and retries; when the retry is refused too (the new
/// token was revoked as well, or the installation is gone), it returns that 401 but keeps the
/// token cached, and every later `GetToken` and `SendAs` for the scope is handed the token the
/// registry has just refused, until it expires.
#[test]
fn a_token_refused_on_a_send_as_retry_is_dropped() {
    let t0 = Timestamp::from_unix_millis(T0_MS);
    let (mut app, mut registry) = quiet_app();
    let request = || {
        Request::get(format!("{BASE}/organizations/me"))
            .body(Vec::new())
            .unwrap()
    };
    // A cached token, which the registry then revokes.
    let mut get = GetToken::new(TokenScope::App, None);
    send_and_answer(&mut get, &mut app, &mut registry, t0);
    let Step::Done(Ok(first)) = get.poll(&mut app, t0) else {
        panic!("the mint is answered")
    };
    registry.tokens.get_mut(first.secret().expose()).unwrap().revoked = true;
    let mut send = SendAs::new(TokenScope::App, request());
    send_and_answer(&mut send, &mut app, &mut registry, t0); // 401: dropped, mint again
    send_and_answer(&mut send, &mut app, &mut registry, t0); // the new token
    // The registry revokes the new token too before the retry arrives.
    let Step::Send { id, request: retry } = send.poll(&mut app, t0) else {
        panic!("the retry is sent")
    };
    let second = bearer(&retry).unwrap().to_owned();
    assert_ne!(second, first.secret().expose());
    registry.tokens.get_mut(&second).unwrap().revoked = true;
    let (response, _) = registry.serve(&retry, T0_MS);
    send.handle_response(&mut app, id, response, t0);
    let Step::Done(Ok(response)) = send.poll(&mut app, t0) else {
        panic!("SendAs returns the response")
    };
    assert_eq!(response.status(), 401);
    // The refused token must not be handed out again.
    match GetToken::new(TokenScope::App, None).poll(&mut app, t0) {
        Step::Done(Ok(token)) => assert_ne!(
            token.secret().expose(),
            second,
            "GetToken hands out the token the registry has just refused"
        ),
        Step::Send { .. } => {}
        other => panic!("{other:?}"),
    }
}

/// Found by the simulation (seed 137, `light_faults_many_refresh_windows`, after a registry
/// clock jump cut every cached token short): a `GetToken` asking for a minimum life of zero is
/// handed a cached token that has already expired when its refresh is left to someone else (a
/// refresher runs, or another operation is minting): `remaining(now) >= min_life` holds for any
/// token when `min_life` is zero, so the caller gets a token the registry refuses.
#[test]
fn a_zero_min_life_is_never_handed_an_expired_token() {
    let t0 = Timestamp::from_unix_millis(T0_MS);
    let (mut app, mut registry) = quiet_app();
    let mut get = GetToken::new(TokenScope::App, None);
    send_and_answer(&mut get, &mut app, &mut registry, t0);
    let Step::Done(Ok(token)) = get.poll(&mut app, t0) else {
        panic!("the mint is answered")
    };
    let later = token.expires_local().plus(Duration::from_secs(60));
    // Both ways a due refresh is left to someone else: a refresher runs, or another operation
    // is minting already.
    let mut minting = GetToken::new(TokenScope::App, None);
    for refresher in [true, false] {
        app.set_background_refresh(refresher);
        if !refresher {
            assert!(matches!(minting.poll(&mut app, later), Step::Send { .. }));
        }
        let mut zero = GetToken::new(TokenScope::App, Some(Duration::ZERO));
        match zero.poll(&mut app, later) {
            Step::Done(Ok(handed)) => assert!(
                handed.remaining(later) > Duration::ZERO,
                "handed a token that expired {} s ago (background refresh {refresher})",
                later.unix_seconds() - handed.expires_local().unix_seconds()
            ),
            Step::Send { .. } | Step::Wait { .. } => {}
            other => panic!("{other:?}"),
        }
        // As a driver does on leaving it: a mint it started is released.
        zero.abandon(&mut app, later);
    }
    minting.abandon(&mut app, later);
}

/// Found by the simulation (seed 270, `heavy_faults_with_a_refresher`): the refresher's signer
/// panics while it signs a refresh (in `poll`, or re-signing after a clock-skew 401 in
/// `handle_response`). The cache has already recorded the mint in flight, but the refresher
/// only learns its id once signing returns, so `abandon` releases nothing and the scope stays
/// `Refreshing` (callers needing more life than the old token has wait) until `fetch_timeout`.
#[test]
fn a_refresher_abandoned_after_a_panic_holds_nothing() {
    quiet_simulated_panics();
    let t0 = Timestamp::from_unix_millis(T0_MS);
    let (mut app, mut registry, signer) = app_with_signer();
    let mut get = GetToken::new(TokenScope::App, None);
    send_and_answer(&mut get, &mut app, &mut registry, t0);
    let Step::Done(Ok(token)) = get.poll(&mut app, t0) else {
        panic!("the mint is answered")
    };
    // At the refresh time the app JWT has expired: the refresher signs a new one, and panics.
    let due = token.refresh_at();
    app.set_background_refresh(true);
    let mut refresher = Refresher::new();
    signer.panic_per_mille.store(1000, Ordering::Relaxed);
    let polled = catch_unwind(AssertUnwindSafe(|| refresher.poll(&mut app, due)));
    signer.panic_per_mille.store(0, Ordering::Relaxed);
    assert!(polled.is_err(), "the signer panicked");
    refresher.abandon(&mut app, due);
    app.set_background_refresh(false);
    let state = app.token_state(&TokenScope::App, due);
    assert!(
        !matches!(state, TokenState::Refreshing(_) | TokenState::Fetching),
        "the abandoned refresher still holds the scope: {state:?}"
    );
}

/// Found by the simulation (seeds 690 and 693, after the refresher leak above): `RevokeAll`
/// waits for mints in flight until `App`'s earliest in-flight deadline, which may belong to a
/// mint already past the cache's `fetch_timeout` (never answered: a hung request, or the record
/// a panicked refresher left). It then does not wait for a live mint, and `drain_tokens` drops
/// that mint's record: a second mint for the scope starts while the first is in flight, and the
/// token the first brings is refused as an unknown answer, so it is never cached nor revoked.
#[test]
fn revoke_all_waits_for_live_mints_whatever_stale_ones_there_are() {
    let t0 = Timestamp::from_unix_millis(T0_MS);
    let (mut app, mut registry) = quiet_app();
    registry
        .installations
        .push("00000000-1111-4000-8000-000000000001".into());
    let installation = TokenScope::Installation(InstallationId::new("00000000-1111-4000-8000-000000000001").unwrap());
    // A mint whose request hangs: never answered, never given up.
    let mut hung = GetToken::new(TokenScope::App, None);
    assert!(matches!(hung.poll(&mut app, t0), Step::Send { .. }));
    // Past the fetch timeout, a live mint for another scope.
    let later = t0.plus(app.cache_config().fetch_timeout + Duration::from_secs(60));
    let mut live = GetToken::new(installation.clone(), None);
    let Step::Send { id, request } = live.poll(&mut app, later) else {
        panic!("nothing cached for the installation: a mint")
    };
    // RevokeAll must wait for the live mint, so the token it brings is revoked too.
    let mut revoke_all = RevokeAll::new();
    let step = revoke_all.poll(&mut app, later);
    assert!(
        matches!(step, Step::Wait { .. }),
        "RevokeAll went ahead with a live mint in flight: {step:?}"
    );
    // And the live mint is still the one for its scope: its answer is taken.
    let (response, _) = registry.serve(&request, later.unix_millis());
    live.handle_response(&mut app, id, response, later);
    assert!(matches!(live.poll(&mut app, later), Step::Done(Ok(_))));
}

/// A `Sim` driven step by step by a directed test: no faults but those it injects, no operation
/// but those it starts, nothing started in a finished one's place.
fn directed_sim() -> Sim {
    let mut sim = Sim::new(Scenario {
        seed: 0,
        lifetime: Duration::from_secs(7200),
        concurrency: 0,
        refresher: false,
        faults: Faults::none(),
        duration: Duration::ZERO,
        steps: 0,
        strict: true,
    });
    sim.draining = true;
    sim
}

impl Sim {
    /// Starts a `GetToken` for `scope` now, and polls it once.
    fn start_get_token(&mut self, scope: &TokenScope) -> usize {
        let op = Op::Get {
            op: GetToken::new(scope.clone(), None),
            min_life: self.app.cache_config().min_remaining,
        };
        let slot = self.new_slot(op, Some(scope.clone()), self.now);
        self.slots.push(slot);
        let i = self.slots.len() - 1;
        self.poll(i);
        i
    }

    /// Delivers slot `i`'s request in flight, at the time it arrives.
    fn deliver_to(&mut self, i: usize) {
        let k = self
            .flights
            .iter()
            .position(|f| f.slot == i)
            .expect("a request in flight");
        self.now = self.now.max(self.flights[k].ready_at);
        self.deliver(k);
    }
}

/// Found by the simulation (seed 804, `heavy_faults_with_a_refresher`; the same check failed
/// once in CI with seed 3, not reproduced since): the oracle, not the core, was wrong. A
/// `GetToken` that starts more than `MAX_LATENCY_MS` after the registry's clock last jumped is
/// handed a 401 by the mint for its scope that another operation began before the jump. That
/// mint's JWT was refused, its 401 (which left the registry before the jump, and arrived late)
/// taught the app the old clock, and the one clock-skew retry, signed for the old clock, was
/// refused too. The newcomer joined the mint while it was in flight, or found its 401 recorded
/// as the scope's failure (during its back-off): the jump that explains the 401 is counted from
/// when that mint began, not from when the newcomer started.
fn an_inherited_refusal(jump_seen: bool) {
    let mut sim = directed_sim();
    let scope = sim.scopes[1].clone();
    // The registry's clock is 446 s behind ours; the app has seen none of its answers yet.
    sim.registry.offset_ms = -446_000;
    // t+0: a mint, signed for our own clock; the registry refuses the JWT (issued in the
    // future) at once, and the 401 spends 15 s in flight.
    sim.planned = Some(Planned {
        answered_when_sent: true,
        latency_ms: 15_000,
    });
    let first = sim.start_get_token(&scope);
    // t+1 s: the registry's clock jumps back 1117 s.
    sim.now += 1_000;
    if jump_seen {
        sim.jump_clock(-1_117_000);
    } else {
        sim.registry.offset_ms -= 1_117_000;
    }
    // t+15 s: the 401 teaches the app the clock of before the jump; the retry is signed for it
    // and served when it arrives, 15 s later.
    sim.deliver_to(first);
    sim.planned = Some(Planned {
        answered_when_sent: false,
        latency_ms: 15_000,
    });
    sim.poll(first);
    // t+22 s, more than MAX_LATENCY_MS after the jump: a second GetToken joins the mint.
    sim.now = T0_MS + 22_000;
    let joined = sim.start_get_token(&scope);
    assert!(matches!(sim.slots[joined].state, State::Waiting { .. }));
    // t+30 s: the retry is refused (issued in the future): the mint's 401 is recorded, and both
    // operations are handed it, the newcomer first.
    sim.deliver_to(first);
    sim.poll(joined);
    sim.poll(first);
    // A moment later, within the back-off: a third GetToken finds that 401 recorded.
    sim.now += 100;
    let later = sim.start_get_token(&scope);
    let refused = sim.stats.errors.get("GetToken: Unauthorized").copied();
    assert_eq!(refused, Some(3), "all three are refused");
    // Both started too long after the jump for their own requests to be refused for it.
    for i in [joined, later] {
        assert!(sim.slots[i].started > sim.last_jump.unwrap_or(T0_MS) + MAX_LATENCY_MS);
    }
}

#[test]
fn a_401_inherited_from_an_earlier_mint_is_explained_by_a_jump_after_that_mint_began() {
    an_inherited_refusal(true);
}

/// The excuse above is for a jump after the mint began: without one, the same 401 is reported.
#[test]
#[should_panic(expected = "slot 1 GetToken failed unexpectedly (401 with no clock jump to explain it)")]
fn a_401_inherited_with_no_jump_to_explain_it_is_reported() {
    an_inherited_refusal(false);
}
