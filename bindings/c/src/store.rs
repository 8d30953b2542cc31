//! The Store step: the shared token store's command an operation hands out ([`icr_store_command`]
//! and the `icr_op_store_*` accessors that lend it), and the replies a driver hands back
//! (`icr_op_handle_store_*`). The core decides every command; the driver runs each, atomically,
//! on its store.

use std::ffi::c_char;

use icr_app_core::{Error, StoreCommand, StoreReply, Timestamp, TransportErrorKind};

use crate::app::icr_app;
use crate::io::{Out, bytes, c_text, lend, without_nul};
use crate::op::{Lent, icr_op, lend_from, op_and_app, op_ref};
use crate::status::{Fail, guard, icr_status};

/// The kind of the command an `ICR_STEP_STORE` step hands out (`icr_op_store_command`). Each
/// runs atomically on the store (Redis terms in brackets; any store with the same semantics
/// will do, shared by every process of the fleet):
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum icr_store_command {
    /// Read the entry `key` (`GET`; the Redis store reads at most 64 KiB). Reply with
    /// `icr_op_handle_store_value`: found and its bytes, or not found.
    Get = 1,
    /// Take the lease `key`: set it to the owner bytes (`icr_op_store_value`) with a lifetime of
    /// `icr_op_store_ttl_ms` **only if `key` does not exist** (`SET key owner NX PX ttl`). Reply
    /// with `icr_op_handle_store_leased`: taken (it was free) or not (someone holds it).
    Lease = 2,
    /// Set the entry `key` to the value (`icr_op_store_value`) with a lifetime of
    /// `icr_op_store_ttl_ms`, then delete the lease (`icr_op_store_lease`) **only if it still
    /// holds the owner bytes**, both in one atomic step (a script). Reply with
    /// `icr_op_handle_store_done`.
    Put = 3,
    /// Delete `key` **only if its value starts with the prefix** (`icr_op_store_value`), in one
    /// atomic step (compare-and-delete: a script). Reply with `icr_op_handle_store_done`,
    /// whether or not anything was deleted.
    Delete = 4,
}

impl icr_store_command {
    fn name(self) -> &'static str {
        match self {
            Self::Get => "Get",
            Self::Lease => "Lease",
            Self::Put => "Put",
            Self::Delete => "Delete",
        }
    }

    /// The call that answers this kind (besides `icr_op_handle_store_failure`).
    fn reply_call(self) -> &'static str {
        match self {
            Self::Get => "icr_op_handle_store_value",
            Self::Lease => "icr_op_handle_store_leased",
            Self::Put | Self::Delete => "icr_op_handle_store_done",
        }
    }
}

/// A Store step's command as C reads it.
pub(crate) struct LentStore {
    id: u64,
    kind: icr_store_command,
    /// The key, NUL-terminated.
    key: Vec<u8>,
    /// Lease: the owner; Put: the value (sealed); Delete: the prefix; Get: nothing.
    bytes: Vec<u8>,
    /// Lease and Put: the lifetime in whole milliseconds.
    ttl_ms: Option<u64>,
    /// Put: the lease to release (NUL-terminated) and the owner it must hold.
    lease: Option<(Vec<u8>, Vec<u8>)>,
}

/// A copy of `text` with a NUL after it, for C.
fn nul_terminated(text: &str) -> Vec<u8> {
    c_text(text).to_vec()
}

impl LentStore {
    pub(crate) fn take(id: u64, command: StoreCommand) -> Self {
        let (kind, key, bytes, ttl_ms, lease) = match command {
            StoreCommand::Get { key } => (icr_store_command::Get, key, Vec::new(), None, None),
            StoreCommand::Lease { key, owner, ttl } => (
                icr_store_command::Lease,
                key,
                owner,
                Some(StoreCommand::ttl_ms(ttl)),
                None,
            ),
            StoreCommand::Put {
                key,
                value,
                ttl,
                lease,
                owner,
            } => (
                icr_store_command::Put,
                key,
                value,
                Some(StoreCommand::ttl_ms(ttl)),
                Some((nul_terminated(&lease), owner)),
            ),
            StoreCommand::Delete { key, prefix } => (icr_store_command::Delete, key, prefix, None, None),
        };
        Self {
            id,
            kind,
            key: nul_terminated(&key),
            bytes,
            ttl_ms,
            lease,
        }
    }
}

impl icr_op {
    /// The current Store step's command.
    fn store(&self) -> Result<&LentStore, Fail> {
        match &self.step {
            Lent::Store(store) => Ok(store),
            _ => Err(Fail::state(
                "the current step is not a Store (a command is lent from the Store step until the next call that changes the operation)",
            )),
        }
    }
}

/// Writes the kind of the current Store step's command (`icr_store_command`) and lends its key,
/// NUL-terminated (the NUL not counted in `*out_key_len`). Keys start with `icr-app:v2:` and
/// hold one Redis Cluster hash tag (`{...}`): a command with two keys (Put) has both in one slot.
///
/// # Safety
///
/// `op` is live; the out-parameters point to writable memory of their types.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_store_command(
    op: *const icr_op,
    out_kind: *mut icr_store_command,
    out_key: *mut *const c_char,
    out_key_len: *mut usize,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract, for each out-parameter.
        let out_kind = unsafe { Out::new(out_kind, "out_kind") }?;
        // SAFETY: as above.
        let (out_key, out_key_len) = unsafe { (Out::new(out_key, "out_key")?, Out::new(out_key_len, "out_key_len")?) };
        // SAFETY: as above.
        let store = unsafe { op_ref(op) }?.store()?;
        out_kind.set(store.kind);
        lend(without_nul(&store.key), out_key, out_key_len);
        Ok(())
    })
}

/// Lends the current Store step's bytes: a Lease's owner, a Put's value, a Delete's prefix
/// (binary: not NUL-terminated; store and compare them as bytes). A Get has none:
/// `ICR_STATUS_WRONG_STATE`.
///
/// # Safety
///
/// As `icr_op_store_command`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_store_value(op: *const icr_op, out: *mut *const u8, out_len: *mut usize) -> icr_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        lend_from(op, out, out_len, |op| {
            let store = op.store()?;
            match store.kind {
                icr_store_command::Get => Err(Fail::state(
                    "the current Store step is a Get, which has a key and no value",
                )),
                _ => Ok(&store.bytes),
            }
        })
    }
}

/// Writes the lifetime of what the current Store step sets, in whole milliseconds (rounded up,
/// at least 1, at most 2^42 as Redis takes it): a Lease's or a Put's. A Get or a Delete has none: `ICR_STATUS_WRONG_STATE`.
///
/// # Safety
///
/// As `icr_op_store_command`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_store_ttl_ms(op: *const icr_op, out: *mut u64) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let store = unsafe { op_ref(op) }?.store()?;
        let ttl = store.ttl_ms.ok_or_else(|| {
            Fail::state(format!(
                "the current Store step is a {}, which sets nothing and has no lifetime",
                store.kind.name()
            ))
        })?;
        out.set(ttl);
        Ok(())
    })
}

/// Lends the current Put step's lease, NUL-terminated (the NUL not counted), and the owner it
/// must hold to be deleted (bytes). Another kind has none: `ICR_STATUS_WRONG_STATE`.
///
/// # Safety
///
/// As `icr_op_store_command`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_store_lease(
    op: *const icr_op,
    out_lease: *mut *const c_char,
    out_lease_len: *mut usize,
    out_owner: *mut *const u8,
    out_owner_len: *mut usize,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract, for each out-parameter.
        let (out_lease, out_lease_len) = unsafe {
            (
                Out::new(out_lease, "out_lease")?,
                Out::new(out_lease_len, "out_lease_len")?,
            )
        };
        // SAFETY: as above.
        let (out_owner, out_owner_len) = unsafe {
            (
                Out::new(out_owner, "out_owner")?,
                Out::new(out_owner_len, "out_owner_len")?,
            )
        };
        // SAFETY: as above.
        let store = unsafe { op_ref(op) }?.store()?;
        let (lease, owner) = store.lease.as_ref().ok_or_else(|| {
            Fail::state(format!(
                "the current Store step is a {}: only a Put releases a lease",
                store.kind.name()
            ))
        })?;
        lend(without_nul(lease), out_lease, out_lease_len);
        lend(owner, out_owner, out_owner_len);
        Ok(())
    })
}

/// Hands `reply` (made by `reply`) to the operation for Store step `id`, when `id` is the
/// pending Store step's and `fits` its kind; nothing changes otherwise.
///
/// # Safety
///
/// `op` and `app` are NULL (refused) or live handles no one else uses during the call.
unsafe fn answer(
    op: *mut icr_op,
    app: *mut icr_app,
    id: u64,
    fits: fn(icr_store_command) -> bool,
    reply: impl FnOnce() -> Result<StoreReply, Error>,
    now_ms: i64,
) -> Result<(), Fail> {
    // SAFETY: the caller's contract; the reference ends before `op_and_app` takes the handle.
    let pending = unsafe { op_ref(op) }?;
    if app.is_null() {
        return Err(Fail::null("app"));
    }
    let Lent::Store(store) = &pending.step else {
        return Err(Fail::state(
            "no Store step is pending: answer the Store step icr_op_poll handed out before the next call that changes the operation (polling again gives its command up)",
        ));
    };
    if store.id != id {
        return Err(Fail::new(
            icr_status::UnknownRequest,
            format!(
                "{id} is not the pending Store step's id ({}): answer the id icr_op_poll wrote",
                store.id
            ),
        ));
    }
    if !fits(store.kind) {
        return Err(Fail::state(format!(
            "the pending Store step is a {}: answer it with {} (or icr_op_handle_store_failure)",
            store.kind.name(),
            store.kind.reply_call()
        )));
    }
    // SAFETY: as above.
    let (op, app) = unsafe { op_and_app(op, app) }?;
    op.op
        .handle_store(&mut app.app, id, reply(), Timestamp::from_unix_millis(now_ms));
    Ok(())
}

/// Answers Store step `id`, a Get, at `now_ms`: `found` not 0 and the entry's `value_len` bytes
/// at `value`, or `found` 0 for no entry (`value` is then not read). Copied.
///
/// A call for another id than the pending Store step's is `ICR_STATUS_UNKNOWN_REQUEST`; with no
/// Store step pending, or one of another kind, `ICR_STATUS_WRONG_STATE`; nothing changes then.
///
/// # Safety
///
/// `op` and `app` are live (as for `icr_op_poll`); `value` is NULL (refused unless `value_len`
/// is 0) or points to `value_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_handle_store_value(
    op: *mut icr_op,
    app: *mut icr_app,
    id: u64,
    found: u32,
    value: *const u8,
    value_len: usize,
    now_ms: i64,
) -> icr_status {
    guard(|| {
        let value = if found == 0 {
            None
        } else {
            // SAFETY: the caller's contract.
            Some(unsafe { bytes(value, value_len, "value") }?.to_vec())
        };
        let fits = |kind| kind == icr_store_command::Get;
        // SAFETY: the caller's contract, passed on.
        unsafe { answer(op, app, id, fits, || Ok(StoreReply::Value(value)), now_ms) }
    })
}

/// Answers Store step `id`, a Lease, at `now_ms`: `taken` not 0 if the lease was free and is
/// now the owner's, 0 if someone holds it. Errors as `icr_op_handle_store_value`.
///
/// # Safety
///
/// `op` and `app` are live (as for `icr_op_poll`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_handle_store_leased(
    op: *mut icr_op,
    app: *mut icr_app,
    id: u64,
    taken: u32,
    now_ms: i64,
) -> icr_status {
    guard(|| {
        let fits = |kind| kind == icr_store_command::Lease;
        // SAFETY: the caller's contract, passed on.
        unsafe { answer(op, app, id, fits, || Ok(StoreReply::Leased(taken != 0)), now_ms) }
    })
}

/// Answers Store step `id`, a Put or a Delete, at `now_ms`: it ran (whether or not a Delete
/// deleted anything). Errors as `icr_op_handle_store_value`.
///
/// # Safety
///
/// `op` and `app` are live (as for `icr_op_poll`).
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_handle_store_done(
    op: *mut icr_op,
    app: *mut icr_app,
    id: u64,
    now_ms: i64,
) -> icr_status {
    guard(|| {
        let fits = |kind| matches!(kind, icr_store_command::Put | icr_store_command::Delete);
        // SAFETY: the caller's contract, passed on.
        unsafe { answer(op, app, id, fits, || Ok(StoreReply::Done), now_ms) }
    })
}

/// Reports that the store could not run Store step `id`'s command (of any kind), at `now_ms`:
/// `message` says why (UTF-8; never a password). The operation goes on without the store (it
/// mints alone, with no error for it), and the app sets the store aside for 5 s of `now_ms`.
/// Errors as `icr_op_handle_store_value`.
///
/// # Safety
///
/// `op` and `app` are live (as for `icr_op_poll`); `message` is NULL (refused unless
/// `message_len` is 0) or points to `message_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_op_handle_store_failure(
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
        let reply = || Err(Error::store(TransportErrorKind::Other, message));
        // SAFETY: the caller's contract, passed on.
        unsafe { answer(op, app, id, |_| true, reply, now_ms) }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn a_put_lends_its_key_value_lifetime_lease_and_owner() {
        let store = LentStore::take(
            7,
            StoreCommand::Put {
                key: "k".into(),
                value: vec![1, 0, 2],
                ttl: Duration::from_millis(1_500),
                lease: "k:lease".into(),
                owner: b"me".to_vec(),
            },
        );
        assert_eq!((store.id, store.kind), (7, icr_store_command::Put));
        assert_eq!(store.key, b"k\0");
        assert_eq!(store.bytes, [1, 0, 2]);
        assert_eq!(store.ttl_ms, Some(1_500));
        assert_eq!(store.lease, Some((b"k:lease\0".to_vec(), b"me".to_vec())));
        let get = LentStore::take(8, StoreCommand::Get { key: "k".into() });
        assert_eq!(
            (get.kind, get.ttl_ms, get.bytes.len()),
            (icr_store_command::Get, None, 0)
        );
    }
}
