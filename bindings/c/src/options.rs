//! [`icr_client_options`]: the settings of a blocking client, the signer and log sink function
//! pointers among them.

use std::ffi::{c_char, c_void};
use std::time::Duration;

use icr_app_core::{Error, Signer};
use zeroize::Zeroizing;

use crate::io::{Out, bytes, free_box, text};
use crate::status::{Fail, guard, icr_status};

/// Signs for a client whose app was made by `icr_app_new_without_key` (a KMS, an HSM): writes
/// the RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature of the `message_len` bytes at `message`
/// into `signature` (`signature_cap` bytes, 1024 at first: room for an 8192-bit key) and its
/// length to `*out_signature_len`, and returns `ICR_STATUS_OK`. When the buffer is too small,
/// it writes the length it needs to `*out_signature_len` and returns
/// `ICR_STATUS_BUFFER_TOO_SMALL`: it is called once more with that much room. Any other status
/// is a failure: the call that needed the JWT fails with `ICR_STATUS_SIGNING`.
///
/// It is called from the thread of a client call that needs a new app JWT (about every eight
/// minutes, once however many threads need it), outside the client's locks. It must not call
/// the client. `user_data` is the pointer given with it.
pub type icr_sign_fn = Option<
    unsafe extern "C" fn(
        user_data: *mut c_void,
        message: *const u8,
        message_len: usize,
        signature: *mut u8,
        signature_cap: usize,
        out_signature_len: *mut usize,
    ) -> u32,
>;

/// Receives the client's log records: `level` (an `icr_log_level`), and the message, UTF-8,
/// `message_len` bytes followed by a NUL (not counted), lent for the call only. For example
/// `request method=POST path=/app/installations/7/accessTokens status=201 took_ms=3.1`
/// (DEBUG), or `retrying what=token mint attempt=1 max_attempts=4 wait_ms=1000 cause=...`
/// (WARN). Never a key, a token, a JWT or a header.
///
/// It is called on the thread of the client call the record comes from, while the call runs.
/// It must not call the client. `user_data` is the pointer given with it.
pub type icr_log_fn =
    Option<unsafe extern "C" fn(user_data: *mut c_void, level: u32, message: *const c_char, message_len: usize)>;

/// The level of a log record (passed as a `uint32_t`).
#[repr(C)]
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
#[allow(non_camel_case_types)]
pub enum icr_log_level {
    /// Something failed for good.
    Error = 1,
    /// Worth a look: a retry, the shared store set aside.
    Warn = 2,
    /// Informational.
    Info = 3,
    /// Each request (method, path, status, time) and each token fetched.
    Debug = 4,
    /// More detail.
    Trace = 5,
}

/// A caller's `user_data` pointer, handed back to the caller's function as it was given.
#[derive(Clone, Copy)]
pub(crate) struct UserData(pub(crate) *mut c_void);

// SAFETY: the pointer is never read here, only handed back to the caller's function, which
// `icr_client_options_set_signer` and `icr_client_options_set_log_sink` ask to be callable
// from any thread with it (the client is shared between threads).
unsafe impl Send for UserData {}
// SAFETY: as above.
unsafe impl Sync for UserData {}

/// A caller's signer function and its user data.
#[derive(Clone, Copy)]
pub(crate) struct CSigner {
    pub(crate) sign: unsafe extern "C" fn(*mut c_void, *const u8, usize, *mut u8, usize, *mut usize) -> u32,
    pub(crate) user_data: UserData,
}

/// The largest signature a signer may ask room for: a 16384-bit key's is 2048 bytes.
const MAX_SIGNATURE: usize = 64 * 1024;

impl CSigner {
    /// One call of the caller's function with `cap` bytes of room: the signature, or the room
    /// it asks for.
    fn call(&self, message: &[u8], cap: usize) -> Result<Result<Vec<u8>, usize>, Error> {
        let mut signature = vec![0u8; cap];
        let mut len = 0usize;
        // SAFETY: the caller's contract (`icr_client_options_set_signer`): the function is
        // callable from any thread with its user data; the message and the buffer are valid
        // for the lengths passed, and `len` is a writable `size_t`, for the whole call.
        let status = unsafe {
            (self.sign)(
                self.user_data.0,
                message.as_ptr(),
                message.len(),
                signature.as_mut_ptr(),
                cap,
                &raw mut len,
            )
        };
        match status {
            s if s == icr_status::Ok as u32 && len > 0 && len <= cap => {
                signature.truncate(len);
                Ok(Ok(signature))
            }
            s if s == icr_status::Ok as u32 => Err(Error::Signing(format!(
                "the signer returned ICR_STATUS_OK with a signature of {len} bytes in a buffer of {cap}: write the signature's length, above 0, to *out_signature_len"
            ))),
            s if s == icr_status::BufferTooSmall as u32 && len > cap && len <= MAX_SIGNATURE => Ok(Err(len)),
            s => {
                let name = crate::status::status_text(s);
                Err(Error::Signing(format!(
                    "the signer returned {name} ({s}) instead of a signature; check the KMS or HSM it calls"
                )))
            }
        }
    }
}

impl Signer for CSigner {
    fn sign_rs256(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        match self.call(message, 1024)? {
            Ok(signature) => Ok(signature),
            Err(needed) => self.call(message, needed)?.map_err(|_| {
                Error::Signing(
                    "the signer asked for a larger buffer twice; it must sign once given the room it asked for"
                        .to_owned(),
                )
            }),
        }
    }
}

/// A caller's log sink and its user data.
#[derive(Clone, Copy)]
pub(crate) struct CLog {
    pub(crate) log: unsafe extern "C" fn(*mut c_void, u32, *const c_char, usize),
    pub(crate) user_data: UserData,
}

impl CLog {
    /// Hands one record to the caller's function.
    pub(crate) fn emit(&self, level: icr_log_level, message: &str) {
        let mut buf = Vec::with_capacity(message.len() + 1);
        buf.extend_from_slice(message.as_bytes());
        buf.push(0);
        // SAFETY: the caller's contract (`icr_client_options_set_log_sink`): the function is
        // callable from any thread with its user data; the message is valid (and NUL-terminated
        // after its length) for the call.
        unsafe { (self.log)(self.user_data.0, level as u32, buf.as_ptr().cast(), message.len()) };
    }
}

/// The settings of a blocking client, for `icr_client_new`: made by `icr_client_options_new`,
/// changed by the `icr_client_options_set_*` calls, freed by `icr_client_options_free` (once
/// the client is made, or any time: the client keeps a copy).
///
/// Threads: one thread at a time; it may move between threads.
#[derive(Clone, Default)]
pub struct icr_client_options {
    pub(crate) base_url: String,
    pub(crate) user_agent: String,
    pub(crate) timeout: Option<Duration>,
    pub(crate) retries: Option<u32>,
    pub(crate) allow_insecure_http: bool,
    pub(crate) redis_url: Option<Zeroizing<String>>,
    pub(crate) proxy: Option<Zeroizing<String>>,
    pub(crate) ca_file: Option<std::path::PathBuf>,
    pub(crate) sealing_secret: Option<Zeroizing<Vec<u8>>>,
    pub(crate) signer: Option<CSigner>,
    pub(crate) log: Option<CLog>,
}

/// The options behind `ptr`, to change them.
///
/// # Safety
///
/// `ptr` is NULL (refused) or live options no one else uses during the call.
unsafe fn options_mut<'a>(ptr: *mut icr_client_options) -> Result<&'a mut icr_client_options, Fail> {
    // SAFETY: passed on from the caller's contract.
    unsafe { ptr.as_mut() }.ok_or_else(|| Fail::null("options"))
}

/// Makes options with every default (the app's base URL, a 30 s timeout per request, 3 retries,
/// no store, no signer, no log sink) and writes them to `*out`; free them with
/// `icr_client_options_free`.
///
/// # Safety
///
/// `out` points to a writable `icr_client_options *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_client_options_new(out: *mut *mut icr_client_options) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        out.set(Box::into_raw(Box::default()));
        Ok(())
    })
}

/// Frees options (the Redis URL and the sealing secret are wiped). NULL does nothing.
///
/// # Safety
///
/// `options` is NULL or made by `icr_client_options_new` and not freed yet.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_client_options_free(options: *mut icr_client_options) {
    // SAFETY: the caller's contract (see above).
    unsafe { free_box(options) }
}

/// A text setting's body: the `len` bytes of UTF-8 at `ptr` (named `what` in errors), refused
/// when empty if `if_empty` gives the fix, then stored by `store`.
///
/// # Safety
///
/// `options` is live; `ptr` is NULL (refused unless `len` is 0) or points to `len` readable
/// bytes.
unsafe fn set_text(
    options: *mut icr_client_options,
    ptr: *const c_char,
    len: usize,
    what: &str,
    if_empty: Option<&str>,
    store: impl FnOnce(&mut icr_client_options, &str),
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let value = unsafe { text(ptr, len, what) }?;
        if let (true, Some(fix)) = (value.is_empty(), if_empty) {
            return Err(Fail::invalid(format!("{what} is empty: {fix}")));
        }
        // SAFETY: as above.
        store(unsafe { options_mut(options) }?, value);
        Ok(())
    })
}

/// Sets the registry's base URL (e.g. `http://127.0.0.1:8080`), replacing the app's; length 0
/// keeps the app's. Checked by `icr_client_new`.
///
/// # Safety
///
/// `options` is live; `url` is NULL (refused unless `url_len` is 0) or points to `url_len`
/// readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_client_options_set_base_url(
    options: *mut icr_client_options,
    url: *const c_char,
    url_len: usize,
) -> icr_status {
    // SAFETY: the caller's contract, passed on.
    unsafe { set_text(options, url, url_len, "url", None, |o, v| o.base_url = v.to_owned()) }
}

/// Sets the `user-agent` the client sends (length 0: the default). Checked by `icr_client_new`.
///
/// # Safety
///
/// As `icr_client_options_set_base_url`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_client_options_set_user_agent(
    options: *mut icr_client_options,
    user_agent: *const c_char,
    user_agent_len: usize,
) -> icr_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        set_text(options, user_agent, user_agent_len, "user_agent", None, |o, v| {
            o.user_agent = v.to_owned()
        })
    }
}

/// Sets the longest one request and its response may take, in milliseconds (default 30000;
/// connecting gets the shorter of 10 s and this). 0 is `ICR_STATUS_INVALID_ARGUMENT`.
///
/// # Safety
///
/// `options` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_client_options_set_timeout_ms(
    options: *mut icr_client_options,
    timeout_ms: u64,
) -> icr_status {
    guard(|| {
        if timeout_ms == 0 {
            return Err(Fail::invalid(
                "timeout_ms is 0: give the longest a request may take, in milliseconds (default 30000)",
            ));
        }
        // SAFETY: the caller's contract.
        unsafe { options_mut(options) }?.timeout = Some(Duration::from_millis(timeout_ms));
        Ok(())
    })
}

/// Sets how many times a failed mint or app call (a 5xx, a 429, no response) is tried again
/// (default 3, within 30 s of waiting in all; `Retry-After` is honoured); 0: never.
///
/// # Safety
///
/// `options` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_client_options_set_retries(options: *mut icr_client_options, retries: u32) -> icr_status {
    guard(|| {
        if retries > 100 {
            return Err(Fail::invalid(format!("retries is {retries}: at most 100")));
        }
        // SAFETY: the caller's contract.
        unsafe { options_mut(options) }?.retries = Some(retries);
        Ok(())
    })
}

/// Allows (`allow` not 0) credentials over plain `http://` to hosts other than loopback
/// (default: refused; loopback is always allowed). Only for a registry on a trusted network.
///
/// # Safety
///
/// `options` is live.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_client_options_set_allow_insecure_http(
    options: *mut icr_client_options,
    allow: u32,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe { options_mut(options) }?.allow_insecure_http = allow != 0;
        Ok(())
    })
}

/// Shares tokens with other processes through the Redis at `url`
/// (`redis://[user:password@]host[:port][/db]`, `rediss://` for TLS): one mint per
/// installation between them. The URL is wiped when the options and the client are freed and
/// never shown (a password in it is replaced by `***`). Checked by `icr_client_new`, which
/// connects lazily. An app made by `icr_app_new_without_key` also needs a sealing secret
/// (`icr_client_options_set_sealing_secret`).
///
/// # Safety
///
/// As `icr_client_options_set_base_url`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_client_options_set_redis_url(
    options: *mut icr_client_options,
    url: *const c_char,
    url_len: usize,
) -> icr_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        set_text(
            options,
            url,
            url_len,
            "url",
            Some("give a redis:// or rediss:// URL"),
            |o, v| o.redis_url = Some(Zeroizing::new(v.to_owned())),
        )
    }
}

/// Sends the client's requests through the proxy at `url` (`http://host:port`,
/// `http://user:password@host:port`, `https://...`) instead of the environment's
/// (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`, either case, which apply by default). `NO_PROXY`
/// still applies and loopback registries are reached directly. An `https://` registry is
/// reached through a `CONNECT` tunnel (the proxy sees the host and encrypted bytes only); an
/// `http://` registry behind a proxy is refused by `icr_client_new` unless insecure HTTP was
/// allowed. The URL is wiped when freed and never shown (a proxy named in an error is
/// `scheme://host:port`). Checked by `icr_client_new`.
///
/// # Safety
///
/// As `icr_client_options_set_base_url`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_client_options_set_proxy(
    options: *mut icr_client_options,
    url: *const c_char,
    url_len: usize,
) -> icr_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        set_text(
            options,
            url,
            url_len,
            "url",
            Some("give a proxy URL such as http://proxy.example:3128"),
            |o, v| o.proxy = Some(Zeroizing::new(v.to_owned())),
        )
    }
}

/// Trusts the CA certificates of the PEM file at `path` too (a private or corporate CA), on top
/// of Mozilla's roots, for the registry and an `https://` proxy, and as the CA of a `rediss://`
/// store. The file `SSL_CERT_FILE` names is trusted as well. A file that cannot be read or holds
/// no certificate fails `icr_client_new` with a message naming it.
///
/// # Safety
///
/// As `icr_client_options_set_base_url`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_client_options_set_ca_file(
    options: *mut icr_client_options,
    path: *const c_char,
    path_len: usize,
) -> icr_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        set_text(
            options,
            path,
            path_len,
            "path",
            Some("give the path of a PEM file of CA certificates"),
            |o, v| o.ca_file = Some(v.into()),
        )
    }
}

/// For an app made by `icr_app_new_without_key` with a Redis store: the secret tokens are
/// sealed under in the store, the same in every process, at least 32 random bytes (an app with
/// its key derives it from the key). Copied, and wiped when freed.
///
/// # Safety
///
/// `options` is live; `secret` is NULL (refused unless `secret_len` is 0) or points to
/// `secret_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_client_options_set_sealing_secret(
    options: *mut icr_client_options,
    secret: *const u8,
    secret_len: usize,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let secret = unsafe { bytes(secret, secret_len, "secret") }?;
        // SAFETY: as above.
        unsafe { options_mut(options) }?.sealing_secret = Some(Zeroizing::new(secret.to_vec()));
        Ok(())
    })
}

/// Sets the signer of a client whose app was made by `icr_app_new_without_key` (see
/// `icr_sign_fn`); `user_data` is passed to every call. Required for such an app, refused for
/// an app with its key (by `icr_client_new`).
///
/// # Safety
///
/// `options` is live; `sign` is NULL (refused) or a function with `icr_sign_fn`'s contract,
/// callable from any thread with `user_data` for as long as the client lives.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_client_options_set_signer(
    options: *mut icr_client_options,
    sign: icr_sign_fn,
    user_data: *mut c_void,
) -> icr_status {
    guard(|| {
        let sign = sign.ok_or_else(|| Fail::null("sign"))?;
        // SAFETY: the caller's contract.
        unsafe { options_mut(options) }?.signer = Some(CSigner {
            sign,
            user_data: UserData(user_data),
        });
        Ok(())
    })
}

/// Sets a log sink (see `icr_log_fn`): every record of the client's calls at `ICR_LOG_LEVEL_DEBUG`
/// and above goes to `log` with `user_data`; filter by level there. NULL removes it.
///
/// # Safety
///
/// `options` is live; `log` is NULL or a function with `icr_log_fn`'s contract, callable from
/// any thread with `user_data` for as long as the client lives.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_client_options_set_log_sink(
    options: *mut icr_client_options,
    log: icr_log_fn,
    user_data: *mut c_void,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        unsafe { options_mut(options) }?.log = log.map(|log| CLog {
            log,
            user_data: UserData(user_data),
        });
        Ok(())
    })
}
