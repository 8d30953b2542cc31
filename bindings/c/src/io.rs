//! Reading the caller's inputs (pointer and length pairs) and writing its out-parameters, each
//! NULL-checked; every raw pointer of the crate is turned into a slice or written here or in
//! the handle functions.

use std::ffi::c_char;
use std::ptr::NonNull;

use crate::status::{Fail, guard};

/// An out-parameter checked not to be NULL. Every one of a call is checked before anything is
/// done, and written only once the call has succeeded.
pub(crate) struct Out<T>(NonNull<T>);

impl<T> Out<T> {
    /// # Safety
    ///
    /// `ptr` is NULL (refused here) or valid for a write of a `T` until the call returns.
    pub(crate) unsafe fn new(ptr: *mut T, what: &str) -> Result<Self, Fail> {
        NonNull::new(ptr).map(Self).ok_or_else(|| Fail::null(what))
    }

    /// Writes `value` (the caller's memory may be uninitialised: nothing is read or dropped).
    pub(crate) fn set(self, value: T) {
        // SAFETY: `new`'s contract: the pointer is not NULL and valid for a write of a `T`.
        unsafe { self.0.as_ptr().write(value) }
    }
}

/// The `len` bytes at `ptr`; NULL is accepted when `len` is 0.
///
/// # Safety
///
/// `ptr` is NULL or points to `len` readable bytes that stay unchanged until the call returns.
pub(crate) unsafe fn bytes<'a>(ptr: *const u8, len: usize, what: &str) -> Result<&'a [u8], Fail> {
    if len == 0 {
        return Ok(&[]);
    }
    if ptr.is_null() {
        return Err(Fail::null(&format!("{what} (with a length above 0)")));
    }
    if isize::try_from(len).is_err() {
        return Err(Fail::invalid(format!("the length of {what} is larger than any buffer")));
    }
    // SAFETY: `ptr` is not NULL, `len` fits an `isize`, and the caller promises `len` readable
    // bytes there, unchanged for the call (the slice does not outlive it).
    Ok(unsafe { std::slice::from_raw_parts(ptr, len) })
}

/// The `len` bytes of text at `ptr`, which must be UTF-8 (no NUL terminator needed or read).
///
/// # Safety
///
/// As [`bytes`].
pub(crate) unsafe fn text<'a>(ptr: *const c_char, len: usize, what: &str) -> Result<&'a str, Fail> {
    // SAFETY: passed on from the caller's contract.
    let bytes = unsafe { bytes(ptr.cast(), len, what) }?;
    std::str::from_utf8(bytes).map_err(|_| Fail::invalid(format!("{what} is not UTF-8")))
}

/// Lends `buf` as a pointer and a length through two out-parameters.
pub(crate) fn lend<T>(buf: &[u8], out_ptr: Out<*const T>, out_len: Out<usize>) {
    out_ptr.set(buf.as_ptr().cast());
    out_len.set(buf.len());
}

/// Text with a NUL after it (not counted in its length) for C: a copy of `text` in a buffer
/// allocated once at its final size, so that wiping it on drop leaves no other copy behind.
pub(crate) fn c_text(text: &str) -> zeroize::Zeroizing<Vec<u8>> {
    let mut buf = Vec::with_capacity(text.len() + 1);
    buf.extend_from_slice(text.as_bytes());
    buf.push(0);
    zeroize::Zeroizing::new(buf)
}

/// The text of a NUL-terminated buffer made by [`c_text`], without its NUL.
pub(crate) fn without_nul(buf: &[u8]) -> &[u8] {
    buf.strip_suffix(&[0]).unwrap_or(buf)
}

/// Frees a handle made by `Box::into_raw` (every `_free` function). NULL does nothing; a panic
/// in a destructor is kept from unwinding into C.
///
/// # Safety
///
/// `ptr` is NULL or made by `Box::into_raw` of a `Box<T>`, not freed yet, and not in use
/// elsewhere; it is freed exactly once here.
pub(crate) unsafe fn free_box<T>(ptr: *mut T) {
    let _ = guard(|| {
        if !ptr.is_null() {
            // SAFETY: the caller's contract, passed on.
            drop(unsafe { Box::from_raw(ptr) });
        }
        Ok(())
    });
}
