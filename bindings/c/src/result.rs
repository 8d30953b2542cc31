//! What a Done step made, and the accessors that read it: the status and error, a token, the
//! JWT, JSON, a response, a count.

use std::ffi::c_char;

use icr_app_core::{Error, Outcome};
use zeroize::Zeroizing;

use crate::io::{Out, c_text, lend, without_nul};
use crate::op::{LentHeader, icr_op, lend_from, lend_header, op_ref};
use crate::status::{Fail, copy_message, guard, icr_status};

/// What an operation made, kept until it is freed; secrets are wiped when it is.
pub(crate) enum Done {
    Failed {
        error: Error,
        message: String,
    },
    /// An access token: its text and its `{"token", "expiresAt", "permissions"}` summary (both
    /// NUL-terminated), and `expiresAt`.
    Token {
        text: Zeroizing<Vec<u8>>,
        json: Zeroizing<Vec<u8>>,
        expires_at_ms: i64,
    },
    /// The app JWT (NUL-terminated) and when it expires.
    Jwt {
        text: Zeroizing<Vec<u8>>,
        expires_at_ms: i64,
    },
    /// An installation, a page, every installation, as NUL-terminated JSON.
    Json(Vec<u8>),
    Response {
        status: u16,
        headers: Vec<LentHeader>,
        body: Zeroizing<Vec<u8>>,
    },
    Count(usize),
    Nothing,
}

/// `value` as NUL-terminated JSON.
fn json(value: &impl serde::Serialize) -> Vec<u8> {
    // Serialising the core's models cannot fail (string keys only); `null` would say it did.
    let mut buf = serde_json::to_vec(value).unwrap_or_else(|_| b"null".to_vec());
    buf.push(0);
    buf
}

/// The JSON string of `text` in a buffer allocated once (no unwiped copy of a secret).
fn json_string(text: &str) -> Zeroizing<Vec<u8>> {
    if text.bytes().all(|b| b.is_ascii_graphic() && b != b'"' && b != b'\\') {
        let mut buf = Vec::with_capacity(text.len() + 2);
        buf.push(b'"');
        buf.extend_from_slice(text.as_bytes());
        buf.push(b'"');
        return Zeroizing::new(buf);
    }
    Zeroizing::new(serde_json::to_vec(text).unwrap_or_default())
}

impl From<Result<Outcome, Error>> for Done {
    fn from(result: Result<Outcome, Error>) -> Self {
        match result {
            Err(error) => Done::Failed {
                message: error.to_string(),
                error,
            },
            Ok(Outcome::Token(token)) => {
                let access = token.access_token();
                let secret = token.secret().expose();
                // `{"token":...,"expiresAt":"...","permissions":...}`, as the Rust examples print.
                let token_json = json_string(secret);
                let expires = access.expires_at.to_rfc3339();
                let permissions = serde_json::to_vec(&access.permissions).unwrap_or_else(|_| b"{}".to_vec());
                let parts: [&[u8]; 7] = [
                    b"{\"token\":",
                    &token_json,
                    b",\"expiresAt\":\"",
                    expires.as_bytes(),
                    b"\",\"permissions\":",
                    &permissions,
                    b"}\0",
                ];
                let mut summary = Vec::with_capacity(parts.iter().map(|p| p.len()).sum());
                parts.iter().for_each(|p| summary.extend_from_slice(p));
                Done::Token {
                    text: c_text(secret),
                    json: Zeroizing::new(summary),
                    expires_at_ms: access.expires_at.unix_millis(),
                }
            }
            Ok(Outcome::Jwt(jwt)) => Done::Jwt {
                text: c_text(jwt.token().expose()),
                expires_at_ms: jwt.expires_at().unix_millis(),
            },
            Ok(Outcome::Installation(installation)) => Done::Json(json(&installation)),
            Ok(Outcome::Page(page)) => Done::Json(json(&page)),
            Ok(Outcome::Installations(all)) => Done::Json(json(&all)),
            Ok(Outcome::Created(created)) => Done::Json(json(&created)),
            Ok(Outcome::Response(response)) => Done::Response {
                status: response.status,
                headers: response.headers.into_iter().map(LentHeader::take).collect(),
                body: Zeroizing::new(response.body),
            },
            Ok(Outcome::Count(n)) => Done::Count(n),
            Ok(_) => Done::Nothing,
        }
    }
}

/// What a finished operation's result is not.
fn wrong(what: &str) -> Fail {
    Fail::state(format!("the operation did not make {what}"))
}

/// How a finished operation ended: `ICR_STATUS_OK` when it succeeded, else its error's status
/// (`ICR_STATUS_NOT_FOUND`, `ICR_STATUS_UNAUTHORIZED`, ...), whose message becomes this
/// thread's last error (`icr_last_error`; also kept by `icr_op_error_message`).
/// `ICR_STATUS_WRONG_STATE` before Done.
///
/// # Safety
///
/// `op` is NULL (refused) or live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_result(op: *const icr_op) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        match unsafe { op_ref(op) }?.done()? {
            Done::Failed { error, message } => Err(Fail::new(icr_status::of(error), message.clone())),
            _ => Ok(()),
        }
    })
}

/// For an operation that ended in an error: writes its status, the HTTP status it came from
/// (0 when it came from none: a transport failure, a key, ...) and the server's `Retry-After` in
/// milliseconds (-1 when none was sent). `ICR_STATUS_WRONG_STATE` when the operation is not done
/// or succeeded.
///
/// # Safety
///
/// `op` is live; each out-parameter points to writable memory of its type.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_error(
    op: *const icr_op,
    out_status: *mut icr_status,
    out_http_status: *mut u16,
    out_retry_after_ms: *mut i64,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out_status = unsafe { Out::new(out_status, "out_status") }?;
        // SAFETY: as above.
        let out_http_status = unsafe { Out::new(out_http_status, "out_http_status") }?;
        // SAFETY: as above.
        let out_retry_after_ms = unsafe { Out::new(out_retry_after_ms, "out_retry_after_ms") }?;
        // SAFETY: as above.
        let Done::Failed { error, .. } = unsafe { op_ref(op) }?.done()? else {
            return Err(Fail::state("the operation succeeded: it has no error"));
        };
        out_status.set(icr_status::of(error));
        out_http_status.set(error.status().unwrap_or(0));
        let retry_after = error
            .retry_after()
            .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        out_retry_after_ms.set(retry_after.unwrap_or(-1));
        Ok(())
    })
}

/// Copies the error message of an operation that ended in an error into `buf` (`cap` bytes),
/// as `icr_last_error` does (NUL-terminated, the length it needs in `*out_needed`, NUL
/// included; `ICR_STATUS_BUFFER_TOO_SMALL` when cut).
///
/// # Safety
///
/// `op` is live; `buf` is NULL or points to `cap` writable bytes; `out_needed` is writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_error_message(
    op: *const icr_op,
    buf: *mut c_char,
    cap: usize,
    out_needed: *mut usize,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out_needed = unsafe { Out::new(out_needed, "out_needed") }?;
        // SAFETY: as above.
        let Done::Failed { message, .. } = unsafe { op_ref(op) }?.done()? else {
            return Err(Fail::state("the operation succeeded: it has no error"));
        };
        copy_message(message, buf, cap, out_needed)
    })
}

/// Lends the access token an operation made (`icr_op_installation_token`,
/// `icr_op_organization_token`, `icr_op_app_token`), NUL-terminated (the NUL not counted), and
/// writes its `expiresAt` (as the registry said, Unix milliseconds). A secret: never log it; it
/// is wiped by `icr_op_free` (copies of your own are yours to wipe).
///
/// # Safety
///
/// `op` is live; each out-parameter points to writable memory of its type.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_token(
    op: *const icr_op,
    out: *mut *const c_char,
    out_len: *mut usize,
    out_expires_at_ms: *mut i64,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let out_len = unsafe { Out::new(out_len, "out_len") }?;
        // SAFETY: as above.
        let out_expires_at_ms = unsafe { Out::new(out_expires_at_ms, "out_expires_at_ms") }?;
        // SAFETY: as above.
        let Done::Token {
            text, expires_at_ms, ..
        } = unsafe { op_ref(op) }?.done()?
        else {
            return Err(wrong("an access token"));
        };
        lend(without_nul(text), out, out_len);
        out_expires_at_ms.set(*expires_at_ms);
        Ok(())
    })
}

/// Lends the token as the Rust examples print it, one line of JSON,
/// `{"token":"...","expiresAt":"...","permissions":{...}}`, NUL-terminated (the NUL not
/// counted). It holds the token: a secret, wiped by `icr_op_free`.
///
/// # Safety
///
/// As `icr_op_token`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_token_json(
    op: *const icr_op,
    out: *mut *const c_char,
    out_len: *mut usize,
) -> icr_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        lend_from(op, out, out_len, |op| match op.done()? {
            Done::Token { json, .. } => Ok(without_nul(json)),
            _ => Err(wrong("an access token")),
        })
    }
}

/// Lends the app JWT an `icr_op_app_jwt` operation made, NUL-terminated (the NUL not counted),
/// and writes when it expires (Unix milliseconds, local clock). A secret, wiped by
/// `icr_op_free`.
///
/// # Safety
///
/// As `icr_op_token`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_jwt(
    op: *const icr_op,
    out: *mut *const c_char,
    out_len: *mut usize,
    out_expires_at_ms: *mut i64,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let out_len = unsafe { Out::new(out_len, "out_len") }?;
        // SAFETY: as above.
        let out_expires_at_ms = unsafe { Out::new(out_expires_at_ms, "out_expires_at_ms") }?;
        // SAFETY: as above.
        let Done::Jwt { text, expires_at_ms } = unsafe { op_ref(op) }?.done()? else {
            return Err(wrong("the app JWT"));
        };
        lend(without_nul(text), out, out_len);
        out_expires_at_ms.set(*expires_at_ms);
        Ok(())
    })
}

/// Lends the JSON an operation made, NUL-terminated (the NUL not counted): an installation
/// (`icr_op_installation`, `icr_op_organization_installation`), a page
/// (`icr_op_installations_page`), or an array of installations (`icr_op_all_installations`).
///
/// # Safety
///
/// As `icr_op_token_json`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_json(op: *const icr_op, out: *mut *const c_char, out_len: *mut usize) -> icr_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        lend_from(op, out, out_len, |op| match op.done()? {
            Done::Json(json) => Ok(without_nul(json)),
            _ => Err(wrong("JSON")),
        })
    }
}

/// The response an `icr_op_send_as` operation made.
fn response(op: &icr_op) -> Result<(u16, &[LentHeader], &[u8]), Fail> {
    match op.done()? {
        Done::Response { status, headers, body } => Ok((*status, headers, body)),
        _ => Err(wrong("a response")),
    }
}

/// Writes the HTTP status of the response an `icr_op_send_as` operation made (whatever it is:
/// a 404 is a response, not an error).
///
/// # Safety
///
/// `op` is live; `out` points to a writable `uint16_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_response_status(op: *const icr_op, out: *mut u16) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let (status, _, _) = response(unsafe { op_ref(op) }?)?;
        out.set(status);
        Ok(())
    })
}

/// Writes how many headers the response an `icr_op_send_as` operation made has.
///
/// # Safety
///
/// `op` is live; `out` points to a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_response_header_count(op: *const icr_op, out: *mut usize) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let (_, headers, _) = response(unsafe { op_ref(op) }?)?;
        out.set(headers.len());
        Ok(())
    })
}

/// Lends header `index` (from 0) of the response an `icr_op_send_as` operation made: name and
/// value, each NUL-terminated (the NUL not counted).
///
/// # Safety
///
/// `op` is live; each out-parameter points to writable memory of its type.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_response_header(
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
            Ok(response(op_ref(op)?)?.1)
        })
    }
}

/// Lends the body of the response an `icr_op_send_as` operation made (wiped by `icr_op_free`).
///
/// # Safety
///
/// `op` is live; each out-parameter points to writable memory of its type.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_response_body(
    op: *const icr_op,
    out: *mut *const u8,
    out_len: *mut usize,
) -> icr_status {
    // SAFETY: the caller's contract, passed on.
    unsafe { lend_from(op, out, out_len, |op| Ok(response(op)?.2)) }
}

/// Writes how many tokens an `icr_op_revoke_all` operation revoked.
///
/// # Safety
///
/// `op` is live; `out` points to a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_count(op: *const icr_op, out: *mut usize) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let Done::Count(n) = unsafe { op_ref(op) }?.done()? else {
            return Err(wrong("a count"));
        };
        out.set(*n);
        Ok(())
    })
}
