//! [`icr_op`]: one operation of the core (`AnyOperation`), its constructors, `icr_op_poll`, the
//! answers a driver hands back, and the accessors lending the current step's request.

use std::ffi::c_char;
use std::time::Duration;

use icr_app_core::{AnyOperation, AnyStep, InstallationId, OrganizationId, PlainRequest, PlainResponse, Purpose};
use icr_app_core::{Error, Route, SecretString, Timestamp, TokenScope, TransportErrorKind, TransportPolicy};
use zeroize::{Zeroize, Zeroizing};

use crate::app::{app_mut, icr_app};
use crate::io::{Out, bytes, c_text, free_box, lend, text, without_nul};
use crate::result::Done;
use crate::status::{Fail, guard, icr_status};
use crate::store::LentStore;

/// One operation: a token, the app JWT, an installation, a page, a request sent as a scope, a
/// revocation, the refresher. Made by an `icr_op_*` constructor, driven with `icr_op_poll` and
/// the `icr_op_handle_*` calls against the app it is used with (always the same app), freed by
/// `icr_op_free`.
///
/// Threads: an operation is used by one thread at a time (it may move between threads). The
/// pointers its accessors lend stay valid until the next call that changes it (`icr_op_poll`,
/// `icr_op_handle_*`, `icr_op_abandon`, `icr_op_free`); a Done step's results stay valid until
/// `icr_op_free`.
pub struct icr_op {
    pub(crate) op: AnyOperation,
    /// What the current step lends.
    pub(crate) step: Lent,
    /// Set once the operation is done, for good.
    done: Option<Done>,
}

/// What the current step lends the caller.
pub(crate) enum Lent {
    Nothing,
    Send(LentRequest),
    Sign(Vec<u8>),
    /// A store command: also what an answer must be for (its id and kind).
    Store(LentStore),
}

/// A header as C reads it: name and value, each followed by a NUL (not counted); the value is
/// wiped when dropped (it may be a credential).
pub(crate) struct LentHeader {
    pub(crate) name: Vec<u8>,
    pub(crate) value: Zeroizing<Vec<u8>>,
}

impl LentHeader {
    /// Copies a header pair, wiping the value it was given.
    pub(crate) fn take((name, mut value): (String, String)) -> Self {
        let header = Self {
            name: c_text(&name).to_vec(),
            value: c_text(&value),
        };
        value.zeroize();
        header
    }
}

/// A Send step's request as C reads it.
pub(crate) struct LentRequest {
    method: Zeroizing<Vec<u8>>,
    url: Zeroizing<Vec<u8>>,
    headers: Vec<LentHeader>,
    body: Zeroizing<Vec<u8>>,
    purpose: icr_purpose,
}

impl LentRequest {
    fn take(request: PlainRequest) -> Self {
        let PlainRequest {
            method,
            url,
            headers,
            body,
            purpose,
            ..
        } = request;
        Self {
            method: c_text(&method),
            url: c_text(&url),
            headers: headers.into_iter().map(LentHeader::take).collect(),
            body: Zeroizing::new(body),
            purpose: icr_purpose::of(purpose),
        }
    }
}

/// What `icr_op_poll` asks of the driver next.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum icr_step {
    /// Send the request the `icr_op_request_*` accessors lend, then report for `id` with
    /// `icr_op_handle_response` (any response, whatever its status, with every header) or
    /// `icr_op_handle_failure` (no response).
    Send = 1,
    /// Run the command the `icr_op_store_*` accessors lend on the shared token store (see
    /// `icr_store_command`), then report for `id` with the reply its kind takes
    /// (`icr_op_handle_store_value`, `_leased`, `_done`) or `icr_op_handle_store_failure`.
    /// Polling again instead gives the command up (the core then mints without it). Only for an
    /// app given a store by `icr_app_attach_store`.
    Store = 2,
    /// Sign the message `icr_op_sign_message` lends (RS256, with the app's key wherever it is),
    /// then report for `id` with `icr_op_handle_signature` or
    /// `icr_op_handle_signature_failure`. Only for an app made by `icr_app_new_without_key`.
    Sign = 3,
    /// Poll again at `until_ms`.
    Sleep = 4,
    /// Another operation on the same app is minting or signing what this one needs: poll again
    /// once `icr_app_changes` differs from `change`, or at `until_ms` at the latest. One
    /// operation alone at a time may treat it as a sleep.
    Wait = 5,
    /// Finished, for good: `icr_op_result` says how; the result accessors read what it made.
    Done = 6,
}

/// What a request handed out by a Send step is for.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum icr_purpose {
    /// Minting an access token (with the app JWT).
    Mint = 1,
    /// Finding an organization's installation (with the app JWT).
    Lookup = 2,
    /// An app-JWT call whose answer is the operation's result.
    Call = 3,
    /// The caller's own request (`icr_op_send_as`), authorised with a token.
    Request = 4,
    /// Revoking an access token.
    Revoke = 5,
    /// A purpose this version of the C API has no number for.
    Other = 99,
}

impl icr_purpose {
    fn of(purpose: Purpose) -> Self {
        match purpose {
            Purpose::Mint => Self::Mint,
            Purpose::Lookup => Self::Lookup,
            Purpose::Call => Self::Call,
            Purpose::Request => Self::Request,
            Purpose::Revoke => Self::Revoke,
            _ => Self::Other,
        }
    }
}

/// How a request failed without a response, for `icr_op_handle_failure` (passed as a
/// `uint32_t`).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum icr_transport_kind {
    /// The connection could not be made (refused, DNS, TLS handshake).
    Connect = 1,
    /// The request or the response took longer than the timeout.
    Timeout = 2,
    /// The connection broke before a whole response arrived.
    ConnectionLost = 3,
    /// The response body was larger than the cap.
    BodyTooLarge = 4,
    /// The request was refused before sending (credentials over plain `http://`, ...).
    Refused = 5,
    /// The caller gave up.
    Cancelled = 6,
    /// Anything else.
    Other = 7,
}

/// Which token a request sent with `icr_op_send_as` carries (passed as a `uint32_t`).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum icr_scope {
    /// The app's access token (`scope_id` unused).
    App = 0,
    /// The token of the installation `scope_id`.
    Installation = 1,
    /// The token of the app's installation on the organization `scope_id`.
    Organization = 2,
}

fn transport_kind(kind: u32) -> Result<TransportErrorKind, Fail> {
    Ok(match kind {
        1 => TransportErrorKind::Connect,
        2 => TransportErrorKind::Timeout,
        3 => TransportErrorKind::ConnectionLost,
        4 => TransportErrorKind::BodyTooLarge,
        5 => TransportErrorKind::Refused,
        6 => TransportErrorKind::Cancelled,
        7 => TransportErrorKind::Other,
        _ => return Err(Fail::invalid(format!("{kind} is not an icr_transport_kind"))),
    })
}

/// A header as the caller passes one in (a response's, or a request's for
/// `icr_op_send_as`): name and value as pointer and length, no NUL needed.
#[repr(C)]
#[derive(Copy, Clone, Debug)]
#[allow(non_camel_case_types)]
pub struct icr_header {
    /// The name's bytes (ASCII).
    pub name: *const c_char,
    /// The name's length.
    pub name_len: usize,
    /// The value's bytes.
    pub value: *const c_char,
    /// The value's length.
    pub value_len: usize,
}

/// The caller's `count` headers at `ptr` as pairs; a value that is not UTF-8 is read lossily
/// (the core reads ASCII values only), and so is a name (a name that is not a header name is
/// then left out).
///
/// # Safety
///
/// `ptr` is NULL (refused unless `count` is 0) or points to `count` headers, each of whose
/// pointers is valid for its length.
pub(crate) unsafe fn headers_in(
    ptr: *const icr_header,
    count: usize,
) -> Result<Vec<(String, Zeroizing<String>)>, Fail> {
    if count == 0 {
        return Ok(Vec::new());
    }
    if ptr.is_null() {
        return Err(Fail::null("headers (with a count above 0)"));
    }
    if count > isize::MAX as usize / size_of::<icr_header>() {
        return Err(Fail::invalid("the header count is larger than any array"));
    }
    // SAFETY: not NULL, the size fits an `isize`, and the caller promises `count` readable,
    // initialised `icr_header`s (a plain-data struct; any bit pattern of its fields is valid).
    let headers = unsafe { std::slice::from_raw_parts(ptr, count) };
    headers
        .iter()
        .map(|h| {
            // SAFETY: the caller promises each pointer is valid for its length.
            let name = unsafe { bytes(h.name.cast(), h.name_len, "a header name") }?;
            // SAFETY: as above.
            let value = unsafe { bytes(h.value.cast(), h.value_len, "a header value") }?;
            Ok((
                String::from_utf8_lossy(name).into_owned(),
                Zeroizing::new(String::from_utf8_lossy(value).into_owned()),
            ))
        })
        .collect()
}

/// The token scope `scope` (an `icr_scope`) names, with `scope_id`.
pub(crate) fn scope_of(scope: u32, scope_id: &str) -> Result<TokenScope, Fail> {
    Ok(match scope {
        0 => TokenScope::App,
        1 => TokenScope::Installation(scope_id.parse()?),
        2 => TokenScope::Organization(scope_id.parse()?),
        other => return Err(Fail::invalid(format!("{other} is not an icr_scope"))),
    })
}

/// Hands a new operation out through `out`.
fn make(op: AnyOperation, out: Out<*mut icr_op>) -> Result<(), Fail> {
    let op = icr_op {
        op,
        step: Lent::Nothing,
        done: None,
    };
    out.set(Box::into_raw(Box::new(op)));
    Ok(())
}

/// `min_life_ms` as the core's minimum remaining life: 0 is the app's default.
fn min_life(min_life_ms: u64) -> Option<Duration> {
    (min_life_ms > 0).then(|| Duration::from_millis(min_life_ms))
}

/// The operation and the app behind `op` and `app`, for a call that changes them: once both
/// are checked, the current step's loans end.
///
/// # Safety
///
/// Each pointer is NULL (refused) or a live handle no one else uses during the call.
pub(crate) unsafe fn op_and_app<'a>(
    op: *mut icr_op,
    app: *mut icr_app,
) -> Result<(&'a mut icr_op, &'a mut icr_app), Fail> {
    // SAFETY: passed on from the caller's contract.
    let op = unsafe { op.as_mut() }.ok_or_else(|| Fail::null("op"))?;
    // SAFETY: as above (an app and an operation are distinct allocations).
    let app = unsafe { app_mut(app) }?;
    op.step = Lent::Nothing;
    Ok((op, app))
}

/// The operation behind `ptr`, to read it.
///
/// # Safety
///
/// `ptr` is NULL (refused) or a live operation no one changes during the call.
pub(crate) unsafe fn op_ref<'a>(ptr: *const icr_op) -> Result<&'a icr_op, Fail> {
    // SAFETY: passed on from the caller's contract.
    unsafe { ptr.as_ref() }.ok_or_else(|| Fail::null("op"))
}

/// The body of an accessor that lends bytes of an operation through `out` and `out_len`: checks
/// both out-parameters (in that order), borrows the operation, and lends what `pick` chooses.
///
/// # Safety
///
/// `op` is NULL (refused) or a live operation no one changes during the call; `out` and
/// `out_len` are NULL (refused) or writable.
pub(crate) unsafe fn lend_from<T>(
    op: *const icr_op,
    out: *mut *const T,
    out_len: *mut usize,
    pick: fn(&icr_op) -> Result<&[u8], Fail>,
) -> icr_status {
    guard(|| {
        // SAFETY: passed on from the caller's contract.
        let (out, out_len) = unsafe { (Out::new(out, "out")?, Out::new(out_len, "out_len")?) };
        // SAFETY: as above.
        let op = unsafe { op_ref(op) }?;
        lend(pick(op)?, out, out_len);
        Ok(())
    })
}

impl icr_op {
    /// The result, once done.
    pub(crate) fn done(&self) -> Result<&Done, Fail> {
        self.done
            .as_ref()
            .ok_or_else(|| Fail::state("the operation is not done: poll it until ICR_STEP_DONE"))
    }

    fn request(&self) -> Result<&LentRequest, Fail> {
        match &self.step {
            Lent::Send(request) => Ok(request),
            _ => Err(Fail::state(
                "the current step is not a Send (a request is lent from the Send step until the next call that changes the operation)",
            )),
        }
    }
}

/// An installation access token for the installation `installation_id`, with at least
/// `min_life_ms` milliseconds left when handed out (0: the app's default, 60 s). Done makes a
/// token (`icr_op_token`, `icr_op_token_json`).
///
/// # Safety
///
/// `installation_id` is NULL (refused) or points to `installation_id_len` readable bytes; `out`
/// points to a writable `icr_op *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_installation_token(
    installation_id: *const c_char,
    installation_id_len: usize,
    min_life_ms: u64,
    out: *mut *mut icr_op,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let id = unsafe { text(installation_id, installation_id_len, "installation_id") }?;
        let scope = TokenScope::Installation(id.parse::<InstallationId>()?);
        make(AnyOperation::token(scope, min_life(min_life_ms)), out)
    })
}

/// The access token of the app's installation on the organization `organization_id` (looked up
/// once and remembered), as `icr_op_installation_token`.
///
/// # Safety
///
/// As `icr_op_installation_token`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_organization_token(
    organization_id: *const c_char,
    organization_id_len: usize,
    min_life_ms: u64,
    out: *mut *mut icr_op,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let id = unsafe { text(organization_id, organization_id_len, "organization_id") }?;
        let scope = TokenScope::Organization(id.parse::<OrganizationId>()?);
        make(AnyOperation::token(scope, min_life(min_life_ms)), out)
    })
}

/// An app access token (`POST /app/accessTokens`), as `icr_op_installation_token`.
///
/// # Safety
///
/// `out` points to a writable `icr_op *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_app_token(min_life_ms: u64, out: *mut *mut icr_op) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        make(AnyOperation::token(TokenScope::App, min_life(min_life_ms)), out)
    })
}

/// The app JWT valid now, for requests the caller sends itself. Done makes a JWT (`icr_op_jwt`).
///
/// # Safety
///
/// `out` points to a writable `icr_op *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_app_jwt(out: *mut *mut icr_op) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        make(AnyOperation::app_jwt(), out)
    })
}

/// One installation (`GET /app/installations/{id}`). Done makes its JSON (`icr_op_json`).
///
/// # Safety
///
/// As `icr_op_installation_token`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_installation(
    installation_id: *const c_char,
    installation_id_len: usize,
    out: *mut *mut icr_op,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let id = unsafe { text(installation_id, installation_id_len, "installation_id") }?;
        make(AnyOperation::installation(id.parse::<InstallationId>()?), out)
    })
}

/// The app's installation on the organization `organization_id`
/// (`GET /app/organizations/{id}/installation`), remembered for it. Done makes its JSON.
///
/// # Safety
///
/// As `icr_op_installation_token`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_organization_installation(
    organization_id: *const c_char,
    organization_id_len: usize,
    out: *mut *mut icr_op,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let id = unsafe { text(organization_id, organization_id_len, "organization_id") }?;
        make(
            AnyOperation::installation_for_organization(id.parse::<OrganizationId>()?),
            out,
        )
    })
}

/// One page of installations (`GET /app/installations?limit&page`, `page` from 0). Done makes
/// the page's JSON (`{"pagination": ..., "installations": [...]}`).
///
/// # Safety
///
/// `out` points to a writable `icr_op *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_installations_page(limit: u32, page: u32, out: *mut *mut icr_op) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        make(AnyOperation::installations_page(limit, page), out)
    })
}

/// Every installation, `limit` a page. Done makes a JSON array of installations.
///
/// # Safety
///
/// `out` points to a writable `icr_op *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_all_installations(limit: u32, out: *mut *mut icr_op) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        make(AnyOperation::all_installations(limit), out)
    })
}

/// Any request, authorised with the token of `scope` (an `icr_scope`: the app, the installation
/// `scope_id`, or the app's installation on the organization `scope_id`). `url` is a path
/// starting with `/` (the standard headers are then added) or an absolute URL on the registry
/// (a token goes to no other host). `headers` replace any of the same name. `body` NULL is no
/// body. Done makes the response, whatever its status (`icr_op_response_*`). The app is read
/// for its base URL.
///
/// # Safety
///
/// `app` is a live app (under the caller's lock if shared); every pointer is NULL (refused
/// unless its length or count is 0) or valid for its length or count; `out` points to a
/// writable `icr_op *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_send_as(
    app: *const icr_app,
    scope: u32,
    scope_id: *const c_char,
    scope_id_len: usize,
    method: *const c_char,
    method_len: usize,
    url: *const c_char,
    url_len: usize,
    headers: *const icr_header,
    header_count: usize,
    body: *const u8,
    body_len: usize,
    out: *mut *mut icr_op,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract, for each pointer.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let app = unsafe { app.as_ref() }.ok_or_else(|| Fail::null("app"))?;
        // SAFETY: as above.
        let scope_id = unsafe { text(scope_id, scope_id_len, "scope_id") }?;
        // SAFETY: as above.
        let method = unsafe { text(method, method_len, "method") }?;
        // SAFETY: as above.
        let url = unsafe { text(url, url_len, "url") }?;
        // SAFETY: as above.
        let headers = unsafe { headers_in(headers, header_count) }?;
        let body = if body.is_null() {
            None
        } else {
            // SAFETY: as above.
            Some(unsafe { bytes(body, body_len, "body") }?.to_vec())
        };
        let scope = scope_of(scope, scope_id)?;
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        make(AnyOperation::send_as(&app.app, scope, method, url, &pairs, body)?, out)
    })
}

/// Revokes the access token `token` (`DELETE /app/installations/token`) and drops it from the
/// cache. Done makes nothing.
///
/// # Safety
///
/// As `icr_op_installation_token`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_revoke(token: *const c_char, token_len: usize, out: *mut *mut icr_op) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let token = unsafe { text(token, token_len, "token") }?;
        if token.is_empty() {
            return Err(Fail::invalid("token is empty"));
        }
        make(AnyOperation::revoke(SecretString::new(token)), out)
    })
}

/// Revokes every cached token and empties the cache. Done makes a count (`icr_op_count`).
///
/// # Safety
///
/// `out` points to a writable `icr_op *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_revoke_all(out: *mut *mut icr_op) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        make(AnyOperation::revoke_all(), out)
    })
}

/// The background refresher: renews cached tokens ahead of expiry and never finishes; abandon
/// it (`icr_op_abandon`) to stop. Until then, callers are handed a still-valid token whose
/// refresh is due instead of waiting for the refresh (this changes `app`).
///
/// # Safety
///
/// `app` is a live app (under the caller's lock if shared); `out` points to a writable
/// `icr_op *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_refresher(app: *mut icr_app, out: *mut *mut icr_op) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let app = unsafe { app_mut(app) }?;
        make(AnyOperation::refresher(&mut app.app), out)
    })
}

/// Frees an operation. NULL does nothing. Abandon an operation that is not done first
/// (`icr_op_abandon`): freeing it alone leaves what it holds (a mint in flight) to time out.
/// Secrets it holds (a token, a JWT, a request's credential) are wiped.
///
/// # Safety
///
/// `op` is NULL or an operation made by an `icr_op_*` constructor and not freed yet; nothing
/// it lent is used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_free(op: *mut icr_op) {
    // SAFETY: the caller's contract (see above).
    unsafe { free_box(op) }
}

/// Asks the operation what to do next, at `now_ms` (the local time, Unix milliseconds), and
/// writes the step's kind (`icr_step`) and its numbers: `*out_id` for a Send, a Store or a Sign
/// (which request to answer), `*out_until_ms` for a Sleep or a Wait, `*out_change` for a Wait (0
/// where they do not apply). A Send's request, a Store's command and a Sign's message are lent by
/// the accessors until the next call that changes the operation. Once Done, polling again
/// returns Done again.
///
/// # Safety
///
/// `op` and `app` are live (the app under the caller's lock if shared, always the same app for
/// one operation); each out-parameter points to writable memory of its type.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_poll(
    op: *mut icr_op,
    app: *mut icr_app,
    now_ms: i64,
    out_step: *mut icr_step,
    out_id: *mut u64,
    out_until_ms: *mut i64,
    out_change: *mut u64,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract, for each out-parameter.
        let out_step = unsafe { Out::new(out_step, "out_step") }?;
        // SAFETY: as above.
        let out_id = unsafe { Out::new(out_id, "out_id") }?;
        // SAFETY: as above.
        let out_until_ms = unsafe { Out::new(out_until_ms, "out_until_ms") }?;
        // SAFETY: as above.
        let out_change = unsafe { Out::new(out_change, "out_change") }?;
        // SAFETY: the caller's contract: live, and not used elsewhere during the call.
        let (op, app) = unsafe { op_and_app(op, app) }?;
        let (step, id, until, change) = if op.done.is_some() {
            (icr_step::Done, 0, 0, 0)
        } else {
            match op.op.poll(&mut app.app, Timestamp::from_unix_millis(now_ms)) {
                AnyStep::Send { id, request } => {
                    op.step = Lent::Send(LentRequest::take(request));
                    (icr_step::Send, id, 0, 0)
                }
                AnyStep::Sign { id, message } => {
                    op.step = Lent::Sign(message);
                    (icr_step::Sign, id, 0, 0)
                }
                AnyStep::Store { id, command } => {
                    op.step = Lent::Store(LentStore::take(id, command));
                    (icr_step::Store, id, 0, 0)
                }
                AnyStep::Sleep { until } => (icr_step::Sleep, 0, until.unix_millis(), 0),
                AnyStep::Wait { until, change } => (icr_step::Wait, 0, until.unix_millis(), change),
                AnyStep::Done(result) => {
                    op.done = Some(Done::from(result));
                    (icr_step::Done, 0, 0, 0)
                }
            }
        };
        out_step.set(step);
        out_id.set(id);
        out_until_ms.set(until);
        out_change.set(change);
        Ok(())
    })
}

/// Lends the current Send step's method (`"GET"`, `"POST"`, ...), NUL-terminated (the NUL not
/// counted in `*out_len`).
///
/// # Safety
///
/// `op` is live; the out-parameters point to writable memory of their types.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_request_method(
    op: *const icr_op,
    out: *mut *const c_char,
    out_len: *mut usize,
) -> icr_status {
    // SAFETY: the caller's contract, passed on.
    unsafe { lend_from(op, out, out_len, |op| Ok(without_nul(&op.request()?.method))) }
}

/// Lends the current Send step's absolute URL, NUL-terminated (the NUL not counted).
///
/// # Safety
///
/// As `icr_op_request_method`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_request_url(
    op: *const icr_op,
    out: *mut *const c_char,
    out_len: *mut usize,
) -> icr_status {
    // SAFETY: the caller's contract, passed on.
    unsafe { lend_from(op, out, out_len, |op| Ok(without_nul(&op.request()?.url))) }
}

/// Writes how many headers the current Send step's request has.
///
/// # Safety
///
/// As `icr_op_request_method`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_request_header_count(op: *const icr_op, out: *mut usize) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let request = unsafe { op_ref(op) }?.request()?;
        out.set(request.headers.len());
        Ok(())
    })
}

/// Lends header `index` (from 0) of the current Send step's request: its name (lower case) and
/// value, each NUL-terminated (the NUL not counted). The value may be a credential
/// (`authorization`): never log it.
///
/// # Safety
///
/// As `icr_op_request_method`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_request_header(
    op: *const icr_op,
    index: usize,
    out_name: *mut *const c_char,
    out_name_len: *mut usize,
    out_value: *mut *const c_char,
    out_value_len: *mut usize,
) -> icr_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        lend_header(index, out_name, out_name_len, out_value, out_value_len, || {
            Ok(&op_ref(op)?.request()?.headers)
        })
    }
}

/// The body of every `_header` accessor: lends header `index` of what `headers` gives, its
/// name and its value (each NUL-terminated, the NUL not counted), through the out-parameters.
///
/// # Safety
///
/// Each out-parameter is NULL (refused) or valid for a write of its type.
pub(crate) unsafe fn lend_header<'a>(
    index: usize,
    out_name: *mut *const c_char,
    out_name_len: *mut usize,
    out_value: *mut *const c_char,
    out_value_len: *mut usize,
    headers: impl FnOnce() -> Result<&'a [LentHeader], Fail>,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract, for each out-parameter.
        let out_name = unsafe { Out::new(out_name, "out_name") }?;
        // SAFETY: as above.
        let out_name_len = unsafe { Out::new(out_name_len, "out_name_len") }?;
        // SAFETY: as above.
        let out_value = unsafe { Out::new(out_value, "out_value") }?;
        // SAFETY: as above.
        let out_value_len = unsafe { Out::new(out_value_len, "out_value_len") }?;
        let headers = headers()?;
        let header = headers
            .get(index)
            .ok_or_else(|| Fail::invalid(format!("header {index} of {}", headers.len())))?;
        lend(without_nul(&header.name), out_name, out_name_len);
        lend(without_nul(&header.value), out_value, out_value_len);
        Ok(())
    })
}

/// Lends the current Send step's body (possibly empty: then the pointer is not NULL but must
/// not be read).
///
/// # Safety
///
/// As `icr_op_request_method`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_request_body(
    op: *const icr_op,
    out: *mut *const u8,
    out_len: *mut usize,
) -> icr_status {
    // SAFETY: the caller's contract, passed on.
    unsafe { lend_from(op, out, out_len, |op| Ok(&op.request()?.body)) }
}

/// Writes what the current Send step's request is for (`icr_purpose`).
///
/// # Safety
///
/// As `icr_op_request_method`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_request_purpose(op: *const icr_op, out: *mut icr_purpose) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let request = unsafe { op_ref(op) }?.request()?;
        out.set(request.purpose);
        Ok(())
    })
}

/// The route the transport policy allows a request (`icr_op_request_route`).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum icr_route {
    /// Straight to the host, never through a proxy (loopback hosts, and plain `http://` the
    /// caller has not opted into): with libcurl, `CURLOPT_NOPROXY` `"*"`.
    Direct = 1,
    /// Through the HTTP stack's proxy, if it has one (`https://`, or plain `http://` with
    /// `allow_insecure_http`).
    ProxyAllowed = 2,
}

/// Applies the core's transport policy to the current Send step's request, before it is sent:
/// writes the route it may take (`icr_route`), or refuses it with `ICR_STATUS_TRANSPORT`: a
/// scheme other than `https` or `http`, or credentials over plain `http://` to a host other
/// than loopback unless `allow_insecure_http` is not 0. A refused request must not be sent:
/// report it with `icr_op_handle_failure`, `ICR_TRANSPORT_KIND_REFUSED` and this call's
/// message (`icr_last_error`). The driver also follows no redirect, caps the body
/// (`icr_transport_defaults`) and times out.
///
/// # Safety
///
/// `op` is live; `out` points to a writable `icr_route`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_request_route(
    op: *const icr_op,
    allow_insecure_http: u32,
    out: *mut icr_route,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let request = unsafe { op_ref(op) }?.request()?;
        let url = std::str::from_utf8(without_nul(&request.url)).unwrap_or_default();
        let mut probe = http::Request::new(());
        *probe.uri_mut() = url
            .parse()
            .map_err(|_| Fail::new(icr_status::Transport, "the request's URL is not valid"))?;
        for header in &request.headers {
            let name = http::HeaderName::from_bytes(without_nul(&header.name));
            let value = http::HeaderValue::from_bytes(without_nul(&header.value));
            if let (Ok(name), Ok(value)) = (name, value) {
                probe.headers_mut().append(name, value);
            }
        }
        let policy = TransportPolicy {
            allow_insecure_http: allow_insecure_http != 0,
            ..TransportPolicy::default()
        };
        match policy.check(&probe) {
            Ok(Route::Direct) => out.set(icr_route::Direct),
            Ok(_) => out.set(icr_route::ProxyAllowed),
            // The bare message, for `icr_op_handle_failure` to wrap as the core does.
            Err(Error::Transport { message, .. }) => return Err(Fail::new(icr_status::Transport, message)),
            Err(error) => return Err(error.into()),
        }
        Ok(())
    })
}

/// Writes the transport policy's defaults every driver applies: the longest one exchange may
/// take (30000 ms), the longest connecting may take (10000 ms), and the largest response body
/// (8 MiB: a larger one is reported as `ICR_TRANSPORT_KIND_BODY_TOO_LARGE`).
///
/// # Safety
///
/// Each out-parameter points to writable memory of its type.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_transport_defaults(
    out_timeout_ms: *mut u64,
    out_connect_timeout_ms: *mut u64,
    out_max_body: *mut u64,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out_timeout_ms = unsafe { Out::new(out_timeout_ms, "out_timeout_ms") }?;
        // SAFETY: as above.
        let out_connect_timeout_ms = unsafe { Out::new(out_connect_timeout_ms, "out_connect_timeout_ms") }?;
        // SAFETY: as above.
        let out_max_body = unsafe { Out::new(out_max_body, "out_max_body") }?;
        let policy = TransportPolicy::default();
        let millis = |d: Duration| u64::try_from(d.as_millis()).unwrap_or(u64::MAX);
        out_timeout_ms.set(millis(policy.timeout));
        out_connect_timeout_ms.set(millis(policy.connect_timeout));
        out_max_body.set(policy.max_body);
        Ok(())
    })
}

/// Lends the current Sign step's message: the bytes to sign (RS256).
///
/// # Safety
///
/// As `icr_op_request_method`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_sign_message(
    op: *const icr_op,
    out: *mut *const u8,
    out_len: *mut usize,
) -> icr_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        lend_from(op, out, out_len, |op| match &op.step {
            Lent::Sign(message) => Ok(message),
            _ => Err(Fail::state("the current step is not a Sign")),
        })
    }
}

/// Hands back the response to request `id`, whatever its status: `status`, every header
/// (`header_count` of them at `headers`; the `Date` header teaches the core the registry's
/// clock), and the body, received at `now_ms`. Nothing is kept of the caller's memory.
///
/// # Safety
///
/// `op` and `app` are live (as for `icr_op_poll`); `headers` is NULL (refused unless
/// `header_count` is 0) or points to `header_count` headers whose pointers are valid for their
/// lengths; `body` is NULL (refused unless `body_len` is 0) or points to `body_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_handle_response(
    op: *mut icr_op,
    app: *mut icr_app,
    id: u64,
    status: u16,
    headers: *const icr_header,
    header_count: usize,
    body: *const u8,
    body_len: usize,
    now_ms: i64,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract, for each pointer.
        let headers = unsafe { headers_in(headers, header_count) }?;
        // SAFETY: as above.
        let body = unsafe { bytes(body, body_len, "body") }?;
        // SAFETY: as above.
        let (op, app) = unsafe { op_and_app(op, app) }?;
        let headers = headers.into_iter().map(|(n, v)| (n, v.to_string())).collect();
        let response = PlainResponse::new(status, headers, body.to_vec());
        op.op
            .handle_response(&mut app.app, id, response, Timestamp::from_unix_millis(now_ms));
        Ok(())
    })
}

/// Reports that request `id` got no response: `kind` (an `icr_transport_kind`) says how it
/// failed, `message` (UTF-8; never put a credential in it) what happened.
///
/// # Safety
///
/// As `icr_op_handle_response`; `message` is NULL (refused unless `message_len` is 0) or points
/// to `message_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_handle_failure(
    op: *mut icr_op,
    app: *mut icr_app,
    id: u64,
    kind: u32,
    message: *const c_char,
    message_len: usize,
    now_ms: i64,
) -> icr_status {
    guard(|| {
        let kind = transport_kind(kind)?;
        // SAFETY: the caller's contract.
        let message = unsafe { bytes(message.cast(), message_len, "message") }?;
        let message = String::from_utf8_lossy(message);
        // SAFETY: as above.
        let (op, app) = unsafe { op_and_app(op, app) }?;
        op.op
            .handle_failure(&mut app.app, id, kind, &message, Timestamp::from_unix_millis(now_ms));
        Ok(())
    })
}

/// Hands back the RS256 signature of Sign step `id`'s message (`signature_len` bytes).
///
/// # Safety
///
/// As `icr_op_handle_response`; `signature` points to `signature_len` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_handle_signature(
    op: *mut icr_op,
    app: *mut icr_app,
    id: u64,
    signature: *const u8,
    signature_len: usize,
    now_ms: i64,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let signature = unsafe { bytes(signature, signature_len, "signature") }?;
        if signature.is_empty() {
            return Err(Fail::invalid(
                "the signature is empty; report a signer's failure with icr_op_handle_signature_failure",
            ));
        }
        // SAFETY: as above.
        let (op, app) = unsafe { op_and_app(op, app) }?;
        op.op.handle_signature(
            &mut app.app,
            id,
            Ok(signature.to_vec()),
            Timestamp::from_unix_millis(now_ms),
        );
        Ok(())
    })
}

/// Reports that the signer could not sign Sign step `id`'s message: `message` says why (never a
/// credential). The operation ends with `ICR_STATUS_SIGNING`.
///
/// # Safety
///
/// As `icr_op_handle_failure`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_handle_signature_failure(
    op: *mut icr_op,
    app: *mut icr_app,
    id: u64,
    message: *const c_char,
    message_len: usize,
    now_ms: i64,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let message = unsafe { bytes(message.cast(), message_len, "message") }?;
        let message = String::from_utf8_lossy(message).into_owned();
        // SAFETY: as above.
        let (op, app) = unsafe { op_and_app(op, app) }?;
        op.op
            .handle_signature(&mut app.app, id, Err(message), Timestamp::from_unix_millis(now_ms));
        Ok(())
    })
}

/// Leaves the operation before Done, at `now_ms`: it releases what it holds at once (a mint in
/// flight, so that other operations mint again instead of waiting for it to time out). Call it
/// on every way out before Done; it does nothing after Done. Free the operation afterwards.
///
/// # Safety
///
/// As `icr_op_poll`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_abandon(op: *mut icr_op, app: *mut icr_app, now_ms: i64) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let (op, app) = unsafe { op_and_app(op, app) }?;
        op.op.abandon(&mut app.app, Timestamp::from_unix_millis(now_ms));
        Ok(())
    })
}
