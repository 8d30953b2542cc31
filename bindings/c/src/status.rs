//! [`icr_status`], the per-thread last error, and the panic boundary every export sits behind.

use std::cell::RefCell;
use std::ffi::c_char;
use std::panic::{AssertUnwindSafe, catch_unwind};

use icr_app_core::{Error, ErrorCode};

use crate::io::Out;

/// What a call did: `ICR_STATUS_OK`, one of the core's error codes (the same numbers as
/// `ErrorCode` in icr-app-core, 1 to 14), or a misuse of the C API (100 and up). The numbers
/// never change; new ones may be added. `icr_status_name` names each.
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum icr_status {
    /// Success.
    Ok = 0,
    /// The private key could not be loaded (encrypted, not RSA, truncated, ...).
    Key = 1,
    /// The signer failed.
    Signing = 2,
    /// A setting or argument is invalid (app id, base URL, installation id, method, ...).
    Config = 3,
    /// 401: the credential was refused (check the app id, the key, the clock).
    Unauthorized = 4,
    /// 403: a permission is missing.
    Forbidden = 5,
    /// 404: the installation or resource does not exist, or the app cannot see it.
    NotFound = 6,
    /// 429: too many requests.
    RateLimited = 7,
    /// 5xx: the registry failed.
    Server = 8,
    /// Any other non-success status.
    UnexpectedStatus = 9,
    /// A success whose body is not the documented shape.
    MalformedBody = 10,
    /// No response came (connection refused, dropped, timed out).
    Transport = 11,
    /// The shared token store failed.
    Store = 12,
    /// A webhook delivery was refused.
    Webhook = 13,
    /// An answer for a request id nobody waits for (a driver's bug).
    UnknownRequest = 14,
    /// An error of the core this version of the C API has no number for.
    OtherError = 99,
    /// A pointer that must not be NULL was NULL.
    NullArgument = 100,
    /// An argument is out of range or not valid (text that is not UTF-8, an unknown kind, a
    /// header index past the count).
    InvalidArgument = 101,
    /// The call does not fit the operation's state (the request of a step that is not a Send,
    /// the token of an operation that is not done or did not make a token, ...).
    WrongState = 102,
    /// The caller's buffer is too small: the length it needs was written.
    BufferTooSmall = 103,
    /// A bug inside the library panicked; the call did nothing reliable. Free the handles it
    /// was given.
    Panic = 104,
}

impl icr_status {
    /// The status of a core error.
    pub(crate) fn of(error: &Error) -> Self {
        match error.code() {
            ErrorCode::Key => Self::Key,
            ErrorCode::Signing => Self::Signing,
            ErrorCode::Config => Self::Config,
            ErrorCode::Unauthorized => Self::Unauthorized,
            ErrorCode::Forbidden => Self::Forbidden,
            ErrorCode::NotFound => Self::NotFound,
            ErrorCode::RateLimited => Self::RateLimited,
            ErrorCode::Server => Self::Server,
            ErrorCode::UnexpectedStatus => Self::UnexpectedStatus,
            ErrorCode::MalformedBody => Self::MalformedBody,
            ErrorCode::Transport => Self::Transport,
            ErrorCode::Store => Self::Store,
            ErrorCode::Webhook => Self::Webhook,
            ErrorCode::UnknownRequest => Self::UnknownRequest,
            _ => Self::OtherError,
        }
    }

    /// Every status, for `icr_status_name` and the tests.
    pub(crate) const ALL: [icr_status; 21] = [
        Self::Ok,
        Self::Key,
        Self::Signing,
        Self::Config,
        Self::Unauthorized,
        Self::Forbidden,
        Self::NotFound,
        Self::RateLimited,
        Self::Server,
        Self::UnexpectedStatus,
        Self::MalformedBody,
        Self::Transport,
        Self::Store,
        Self::Webhook,
        Self::UnknownRequest,
        Self::OtherError,
        Self::NullArgument,
        Self::InvalidArgument,
        Self::WrongState,
        Self::BufferTooSmall,
        Self::Panic,
    ];

    /// The stable name, NUL-terminated: the core's code names (`key`, `not_found`, ...) and
    /// `ok`, `other_error`, `null_argument`, `invalid_argument`, `wrong_state`,
    /// `buffer_too_small`, `panic`.
    pub(crate) const fn name(self) -> &'static str {
        match self {
            Self::Ok => "ok\0",
            Self::Key => "key\0",
            Self::Signing => "signing\0",
            Self::Config => "config\0",
            Self::Unauthorized => "unauthorized\0",
            Self::Forbidden => "forbidden\0",
            Self::NotFound => "not_found\0",
            Self::RateLimited => "rate_limited\0",
            Self::Server => "server\0",
            Self::UnexpectedStatus => "unexpected_status\0",
            Self::MalformedBody => "malformed_body\0",
            Self::Transport => "transport\0",
            Self::Store => "store\0",
            Self::Webhook => "webhook\0",
            Self::UnknownRequest => "unknown_request\0",
            Self::OtherError => "other_error\0",
            Self::NullArgument => "null_argument\0",
            Self::InvalidArgument => "invalid_argument\0",
            Self::WrongState => "wrong_state\0",
            Self::BufferTooSmall => "buffer_too_small\0",
            Self::Panic => "panic\0",
        }
    }
}

/// The stable name of the status numbered `status` (`"unknown"` for none), without its NUL.
pub(crate) fn status_text(status: u32) -> &'static str {
    icr_status::ALL
        .into_iter()
        .find(|s| *s as u32 == status)
        .map_or("unknown", |s| s.name().trim_end_matches('\0'))
}

/// A failed call: its status and the message `icr_last_error` hands out.
#[derive(Debug)]
pub(crate) struct Fail {
    pub(crate) status: icr_status,
    pub(crate) message: String,
}

impl Fail {
    pub(crate) fn new(status: icr_status, message: impl Into<String>) -> Self {
        Self {
            status,
            message: message.into(),
        }
    }

    pub(crate) fn null(what: &str) -> Self {
        Self::new(icr_status::NullArgument, format!("{what} is NULL"))
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Self {
        Self::new(icr_status::InvalidArgument, message)
    }

    pub(crate) fn state(message: impl Into<String>) -> Self {
        Self::new(icr_status::WrongState, message)
    }
}

impl From<Error> for Fail {
    fn from(error: Error) -> Self {
        Self::new(icr_status::of(&error), error.to_string())
    }
}

impl From<icr_app_core::KeyError> for Fail {
    fn from(error: icr_app_core::KeyError) -> Self {
        Error::Key(error).into()
    }
}

thread_local! {
    /// The message of the last call on this thread that failed.
    static LAST_ERROR: RefCell<String> = const { RefCell::new(String::new()) };
}

fn set_last_error(message: String) {
    // A thread being torn down has no last error to keep: dropping the message is all it can do.
    let _ = LAST_ERROR.try_with(|last| {
        if let Ok(mut last) = last.try_borrow_mut() {
            *last = message;
        }
    });
}

/// Runs the body of an export: a failure becomes its status (and this thread's last error), a
/// panic becomes [`icr_status::Panic`] instead of unwinding into C (which would abort).
pub(crate) fn guard(body: impl FnOnce() -> Result<(), Fail>) -> icr_status {
    match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(())) => icr_status::Ok,
        Ok(Err(fail)) => {
            set_last_error(fail.message);
            fail.status
        }
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "no message".to_owned());
            set_last_error(format!(
                "a bug in libicr_app panicked ({what}); free the handles this call was given and report it"
            ));
            icr_status::Panic
        }
    }
}

/// Copies `message` into the caller's buffer `buf` of `cap` bytes, NUL-terminated, and writes
/// the length it needs (message and NUL) to `out_needed`. The message is cut at a character
/// boundary when it does not fit: then the status is [`icr_status::BufferTooSmall`], whose
/// message (this thread's last error) is `message` itself.
pub(crate) fn copy_message(message: &str, buf: *mut c_char, cap: usize, out_needed: Out<usize>) -> Result<(), Fail> {
    let needed = message.len() + 1;
    out_needed.set(needed);
    if cap > 0 && buf.is_null() {
        return Err(Fail::null("buf (with a capacity above 0)"));
    }
    let mut fit = message.len().min(cap.saturating_sub(1));
    while !message.is_char_boundary(fit) {
        fit -= 1;
    }
    if cap > 0 {
        // SAFETY: `buf` is not NULL (checked above) and the caller promises `cap` writable bytes
        // there; `fit + 1 <= cap` bytes are written, from a `str` that cannot overlap the
        // caller's buffer (it lives in this library's memory).
        unsafe {
            std::ptr::copy_nonoverlapping(message.as_ptr(), buf.cast::<u8>(), fit);
        }
        // SAFETY: as above: index `fit < cap` is inside the caller's buffer.
        unsafe {
            buf.add(fit).write(0);
        }
    }
    if cap < needed {
        // The last error stays the message asked for, so that a second call with a larger
        // buffer gets it whole.
        return Err(Fail::new(icr_status::BufferTooSmall, message));
    }
    Ok(())
}

/// The stable name of `status` (an `icr_status` value), as a static NUL-terminated string:
/// `"ok"`, `"key"`, `"not_found"`, ...; `"unknown"` for a number that is no status. Never NULL;
/// never free it.
#[unsafe(no_mangle)]
pub extern "C" fn icr_status_name(status: u32) -> *const c_char {
    let name = icr_status::ALL
        .into_iter()
        .find(|s| *s as u32 == status)
        .map_or("unknown\0", icr_status::name);
    name.as_ptr().cast()
}

/// Copies the message of the last call on this thread that did not return `ICR_STATUS_OK`
/// (empty when there was none) into `buf`, which holds `cap` bytes, NUL-terminated, and writes
/// the length it needs, NUL included, to `*out_needed`. When the message does not fit it is cut
/// (still NUL-terminated, at a UTF-8 character boundary) and the status is
/// `ICR_STATUS_BUFFER_TOO_SMALL`; call again with `*out_needed` bytes. `buf` may be NULL when
/// `cap` is 0 (to learn the length). This call does not change the last error, unless it fails
/// itself. Messages never hold a key, a token or a JWT.
///
/// # Safety
///
/// `buf` is NULL or points to `cap` writable bytes; `out_needed` is NULL or points to a
/// writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_last_error(buf: *mut c_char, cap: usize, out_needed: *mut usize) -> icr_status {
    guard(|| {
        // SAFETY: the caller promises `out_needed` is NULL (refused) or writable.
        let out_needed = unsafe { Out::new(out_needed, "out_needed") }?;
        let message = LAST_ERROR.with(|last| last.borrow().clone());
        copy_message(&message, buf, cap, out_needed)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn last_error() -> String {
        LAST_ERROR.with(|last| last.borrow().clone())
    }

    #[test]
    fn a_panic_becomes_a_status_and_a_message() {
        let status = guard(|| panic!("boom"));
        assert_eq!(status, icr_status::Panic);
        assert!(last_error().contains("boom"), "{}", last_error());
        // The next call works as before.
        assert_eq!(guard(|| Ok(())), icr_status::Ok);
    }

    #[test]
    fn a_failure_sets_the_last_error_and_success_keeps_it() {
        assert_eq!(guard(|| Err(Fail::invalid("bad"))), icr_status::InvalidArgument);
        assert_eq!(guard(|| Ok(())), icr_status::Ok);
        assert_eq!(last_error(), "bad");
    }

    #[test]
    fn the_last_error_is_per_thread() {
        assert_eq!(
            guard(|| Err(Fail::invalid("on this thread"))),
            icr_status::InvalidArgument
        );
        let other = std::thread::spawn(last_error).join().unwrap();
        assert_eq!(other, "");
        assert_eq!(last_error(), "on this thread");
    }

    #[test]
    fn messages_are_cut_at_character_boundaries() {
        let mut buf = [0x7f_u8; 8];
        let mut needed = 0_usize;
        // SAFETY: `needed` is a live, writable usize.
        let out = unsafe { Out::new(&raw mut needed, "out_needed") }.unwrap();
        // "ab" then a 3-byte character: 5 bytes fit before the NUL, the character does not.
        let fail = copy_message("abcd\u{20ac}x", buf.as_mut_ptr().cast(), 6, out).unwrap_err();
        assert_eq!(fail.status, icr_status::BufferTooSmall);
        assert_eq!(needed, 9);
        assert_eq!(&buf[..5], b"abcd\0");
        assert_eq!(buf[6], 0x7f, "nothing written past the capacity");
    }

    #[test]
    fn an_empty_message_still_needs_its_nul() {
        let mut needed = 0_usize;
        // SAFETY: `needed` is a live, writable usize.
        let out = unsafe { Out::new(&raw mut needed, "out_needed") }.unwrap();
        let fail = copy_message("", std::ptr::null_mut(), 0, out).unwrap_err();
        assert_eq!((fail.status, needed), (icr_status::BufferTooSmall, 1));
        let mut buf = [0x7f_u8; 1];
        // SAFETY: as above.
        let out = unsafe { Out::new(&raw mut needed, "out_needed") }.unwrap();
        copy_message("", buf.as_mut_ptr().cast(), 1, out).unwrap();
        assert_eq!(buf, [0]);
    }

    #[test]
    fn every_status_has_a_distinct_name() {
        let mut names: Vec<&str> = icr_status::ALL.iter().map(|s| s.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), icr_status::ALL.len());
        assert!(names.iter().all(|n| n.ends_with('\0')));
        for code in 1..=14_u32 {
            let status = icr_status::ALL.iter().find(|s| **s as u32 == code).unwrap();
            assert_ne!(status.name(), "other_error\0");
        }
    }

    #[test]
    fn core_error_codes_keep_their_numbers() {
        let error = Error::config("x", "y");
        assert_eq!(icr_status::of(&error) as u32, error.code() as u32);
        let error = Error::transport(icr_app_core::TransportErrorKind::Timeout, "slow");
        assert_eq!(icr_status::of(&error) as u32, error.code() as u32);
    }
}
