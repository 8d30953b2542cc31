//! [`icr_token_scope`]: whose token, checked once. The Rust caller holds an `InstallationId` it
//! made once and hands it to every call; a C caller holds one of these.

use std::ffi::c_char;

use icr_app_core::TokenScope;

use crate::io::{Out, free_box, text};
use crate::op::scope_of;
use crate::status::{Fail, guard, icr_status};

/// Whose token: the app's, an installation's or an organization's installation's, its id
/// checked once. Made by `icr_token_scope_new`, freed by `icr_token_scope_free`; taken by
/// `icr_client_token`, which then checks nothing about the id on each call.
///
/// Threads: read-only; any thread may use it, and several at once.
pub struct icr_token_scope {
    pub(crate) scope: TokenScope,
}

/// Makes a scope and writes it to `*out` (free it with `icr_token_scope_free`): `kind` is an
/// `icr_scope` (`ICR_SCOPE_APP` takes no id: pass NULL and 0), `id` the installation's or the
/// organization's id, exactly as the registry shows it.
///
/// Errors: `ICR_STATUS_CONFIG` for an id that is empty, has whitespace or control characters,
/// or is longer than 256 characters; `ICR_STATUS_INVALID_ARGUMENT` for a `kind` that is not an
/// `icr_scope` or an id that is not UTF-8.
///
/// # Safety
///
/// `id` is NULL (refused unless `id_len` is 0) or points to `id_len` readable bytes; `out`
/// points to a writable `icr_token_scope *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_token_scope_new(
    kind: u32,
    id: *const c_char,
    id_len: usize,
    out: *mut *mut icr_token_scope,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let id = unsafe { text(id, id_len, "id") }?;
        let scope = scope_of(kind, id)?;
        out.set(Box::into_raw(Box::new(icr_token_scope { scope })));
        Ok(())
    })
}

/// Frees a scope. NULL does nothing.
///
/// # Safety
///
/// `scope` is NULL or made by `icr_token_scope_new` and not freed yet; no other thread uses it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_token_scope_free(scope: *mut icr_token_scope) {
    // SAFETY: the caller's contract (see above).
    unsafe { free_box(scope) }
}

/// The scope behind `ptr`.
///
/// # Safety
///
/// `ptr` is NULL (refused) or a live scope.
pub(crate) unsafe fn scope_ref<'a>(ptr: *const icr_token_scope) -> Result<&'a TokenScope, Fail> {
    // SAFETY: passed on from the caller's contract.
    unsafe { ptr.as_ref() }
        .map(|s| &s.scope)
        .ok_or_else(|| Fail::null("scope"))
}
