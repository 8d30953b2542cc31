//! [`icr_client`]: the blocking client (`icr_app_ureq::Client`) for C callers who just want a
//! token or a response: every call blocks until it has one, sending, retrying, sleeping and
//! waiting as the core decides, and the client is shared by any number of threads.

use std::borrow::Cow;
use std::ffi::c_char;
use std::time::Duration;

use icr_app_core::{RetryPolicy, SecretString, SendAs, Token, TokenScope};
use icr_app_redis::RedisStore;
use icr_app_ureq::{Client, UreqTransport};
use tracing::Dispatch;
use zeroize::Zeroizing;

use crate::app::{icr_app, seed};
use crate::io::{Out, bytes, free_box, lend, text};
use crate::log::SinkSubscriber;
use crate::op::{LentHeader, headers_in, lend_header};
use crate::options::icr_client_options;
use crate::scope::{icr_token_scope, scope_ref};
use crate::status::{Fail, copy_message, guard, icr_status};

/// A blocking client: its own app (made from an `icr_app`'s id, key and base URL, with the
/// options' settings), its token cache, its connections, and the optional Redis store, signer
/// and log sink. Made by `icr_client_new`, freed by `icr_client_free`.
///
/// Threads: thread-safe. Any number of threads may call it at once with no lock of theirs:
/// threads asking for one installation's token cause one mint between them, and never hold up
/// other installations. Only `icr_client_free` must not overlap another call.
pub struct icr_client {
    client: Client,
    /// The log sink's subscriber, made current around each call.
    log: Option<Dispatch>,
}

impl icr_client {
    /// Runs `f` with the client, its log sink (if any) listening on this thread meanwhile.
    fn run<R>(&self, f: impl FnOnce(&Client) -> R) -> R {
        match &self.log {
            Some(dispatch) => tracing::dispatcher::with_default(dispatch, || f(&self.client)),
            None => f(&self.client),
        }
    }
}

/// The client behind `ptr`.
///
/// # Safety
///
/// `ptr` is NULL (refused) or a live client (not being freed).
unsafe fn client_ref<'a>(ptr: *const icr_client) -> Result<&'a icr_client, Fail> {
    // SAFETY: passed on from the caller's contract.
    unsafe { ptr.as_ref() }.ok_or_else(|| Fail::null("client"))
}

/// Makes a blocking client and writes it to `*out` (free it with `icr_client_free`).
///
/// - `app`: its id, key (or its lack of one) and base URL are copied: the client has its own
///   token cache; `app` is still the caller's, to free whenever.
/// - `options`: the settings (`icr_client_options_*`), copied; NULL for every default.
///
/// An app made by `icr_app_new_without_key` needs a signer (`icr_client_options_set_signer`),
/// and an app with its key takes none: `ICR_STATUS_CONFIG` otherwise, as for a bad base URL,
/// user agent or Redis URL (the message never quotes the URL).
///
/// # Safety
///
/// `app` is NULL (refused) or a live app not changed by another thread during the call;
/// `options` is NULL or live; `out` points to a writable `icr_client *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_client_new(
    app: *const icr_app,
    options: *const icr_client_options,
    out: *mut *mut icr_client,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let recipe = &unsafe { app.as_ref() }.ok_or_else(|| Fail::null("app"))?.recipe;
        // SAFETY: as above.
        let options = unsafe { options.as_ref() }.cloned().unwrap_or_default();
        match (recipe.key.is_some(), options.signer.is_some()) {
            (false, false) => {
                return Err(Fail::new(
                    icr_status::Config,
                    "invalid signer: the app was made by icr_app_new_without_key: give the client a signer (icr_client_options_set_signer)",
                ));
            }
            (true, true) => {
                return Err(Fail::new(
                    icr_status::Config,
                    "invalid signer: the app was made by icr_app_new with its key, which signs: a signer (icr_client_options_set_signer) is only for an app made by icr_app_new_without_key",
                ));
            }
            _ => {}
        }
        let mut builder = recipe.builder(&options.base_url).seed(seed());
        if !options.user_agent.is_empty() {
            builder = builder.user_agent(options.user_agent.as_str());
        }
        if let Some(retries) = options.retries {
            builder = builder.retry(RetryPolicy {
                max_attempts: retries + 1,
                ..RetryPolicy::default()
            });
        }
        if let Some(secret) = &options.sealing_secret {
            builder = builder.sealing_secret(secret);
        }
        let transport = options
            .timeout
            .map_or_else(UreqTransport::new, UreqTransport::with_timeout)
            .allow_insecure_http(options.allow_insecure_http);
        let mut client = Client::builder(builder.build()?).transport(transport);
        if let Some(proxy) = &options.proxy {
            client = client.proxy(proxy);
        }
        if let Some(path) = &options.ca_file {
            client = client.ca_file(path);
        }
        if let Some(url) = &options.redis_url {
            let mut store = RedisStore::connect(url)?;
            if let Some(path) = &options.ca_file
                && store.is_tls()
            {
                let pem = std::fs::read(path).map_err(|e| {
                    Fail::new(
                        icr_status::Config,
                        format!(
                            "invalid ca_file: cannot read {} ({e}): give the path of a PEM file of CA certificates",
                            path.display()
                        ),
                    )
                })?;
                store = store.tls_root_certificates(&pem)?;
            }
            client = client.store(store);
        }
        if let Some(signer) = options.signer {
            client = client.signer(signer);
        }
        let client = icr_client {
            client: client.build()?,
            log: options.log.map(|log| Dispatch::new(SinkSubscriber(log))),
        };
        out.set(Box::into_raw(Box::new(client)));
        Ok(())
    })
}

/// Frees a client (its cached tokens are wiped; they are not revoked: call
/// `icr_client_revoke_all` first for that). NULL does nothing.
///
/// # Safety
///
/// `client` is NULL or made by `icr_client_new` and not freed yet, and no other call on it is
/// running or starts afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_client_free(client: *mut icr_client) {
    // SAFETY: the caller's contract (see above).
    unsafe { free_box(client) }
}

/// Copies `token`'s text into the caller's buffer, NUL-terminated, and writes its length and
/// expiry; when the buffer is too small, writes only the length.
fn hand_token(
    token: &Token,
    buf: *mut c_char,
    cap: usize,
    out_len: Out<usize>,
    out_expires_at_ms: Out<i64>,
) -> Result<(), Fail> {
    let secret = token.secret().expose().as_bytes();
    if cap <= secret.len() {
        let needed = secret.len() + 1;
        out_len.set(secret.len());
        return Err(Fail::new(
            icr_status::BufferTooSmall,
            format!(
                "the buffer holds {cap} bytes and the token needs {needed} (*out_len and a NUL): call again with {needed} bytes or more (the token is cached)"
            ),
        ));
    }
    // SAFETY: `buf` is not NULL (checked before the call was made: `cap` is above 0 here) and
    // the caller promises `cap` writable bytes there; `secret.len() + 1 <= cap` bytes are
    // written, from this library's memory, which cannot overlap the caller's buffer.
    unsafe {
        std::ptr::copy_nonoverlapping(secret.as_ptr(), buf.cast::<u8>(), secret.len());
        buf.add(secret.len()).write(0);
    }
    out_len.set(secret.len());
    out_expires_at_ms.set(token.access_token().expires_at.unix_millis());
    Ok(())
}

/// The body of every token call: checks the out-parameters and the client, then `scope`, gets
/// the token (from the cache, or minted) and hands it to the caller.
///
/// # Safety
///
/// `client` is NULL (refused) or live; each out-pointer is NULL (refused; `buf` only when
/// `cap` is above 0) or valid for its type (`buf` for `cap` bytes) until the call returns.
unsafe fn token_export<'a>(
    client: *const icr_client,
    min_life_ms: u64,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
    out_expires_at_ms: *mut i64,
    scope: impl FnOnce() -> Result<Cow<'a, TokenScope>, Fail>,
) -> icr_status {
    guard(|| {
        if cap > 0 && buf.is_null() {
            return Err(Fail::null("buf (with a capacity above 0)"));
        }
        // SAFETY: the caller's contract, for each pointer.
        let out_len = unsafe { Out::new(out_len, "out_len") }?;
        // SAFETY: as above.
        let out_expires_at_ms = unsafe { Out::new(out_expires_at_ms, "out_expires_at_ms") }?;
        // SAFETY: as above.
        let client = unsafe { client_ref(client) }?;
        let scope = scope()?;
        let min_life = (min_life_ms > 0).then(|| Duration::from_millis(min_life_ms));
        let token = client.run(|c| c.token(&scope, min_life))?;
        hand_token(&token, buf, cap, out_len, out_expires_at_ms)
    })
}

/// The scope of kind `kind` (an `icr_scope`) named by the `id_len` bytes at `id`, checked.
///
/// # Safety
///
/// `id` is NULL (refused unless `id_len` is 0) or points to `id_len` readable bytes.
unsafe fn scope_from(kind: u32, id: *const c_char, id_len: usize, what: &str) -> Result<TokenScope, Fail> {
    // SAFETY: passed on from the caller's contract.
    let id = unsafe { text(id, id_len, what) }?;
    crate::op::scope_of(kind, id)
}

/// An installation access token for the installation `installation_id`, from the cache or
/// minted (retried as the core decides), with at least `min_life_ms` milliseconds left (0: the
/// default, 60 s). The token is copied into `buf` (`cap` bytes) followed by a NUL, its length
/// (the NUL not counted) written to `*out_len` and its expiry (Unix milliseconds, as the
/// registry said) to `*out_expires_at_ms`.
///
/// When `cap` is not above the token's length, nothing is copied, `*out_len` is still written
/// and the status is `ICR_STATUS_BUFFER_TOO_SMALL`: call again with `*out_len + 1` bytes (the
/// token is served from the cache). `buf` may be NULL when `cap` is 0. Tokens are about 40
/// bytes; 256 is plenty. The token is a secret: wipe your copy when done, never log it.
///
/// Errors: the core's (`ICR_STATUS_NOT_FOUND`, `ICR_STATUS_UNAUTHORIZED`, `ICR_STATUS_SERVER`,
/// `ICR_STATUS_TRANSPORT`, ...), with the message in `icr_last_error`.
///
/// # Safety
///
/// `client` is live; `installation_id` is NULL (refused) or points to `installation_id_len`
/// readable bytes; `buf` is NULL (only with `cap` 0) or points to `cap` writable bytes; the
/// out-parameters point to writable memory of their types.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_client_installation_token(
    client: *const icr_client,
    installation_id: *const c_char,
    installation_id_len: usize,
    min_life_ms: u64,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
    out_expires_at_ms: *mut i64,
) -> icr_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        token_export(client, min_life_ms, buf, cap, out_len, out_expires_at_ms, || {
            scope_from(1, installation_id, installation_id_len, "installation_id").map(Cow::Owned)
        })
    }
}

/// The access token of the app's installation on the organization `organization_id` (looked up
/// once, then remembered), as `icr_client_installation_token`.
///
/// # Safety
///
/// As `icr_client_installation_token`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_client_organization_token(
    client: *const icr_client,
    organization_id: *const c_char,
    organization_id_len: usize,
    min_life_ms: u64,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
    out_expires_at_ms: *mut i64,
) -> icr_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        token_export(client, min_life_ms, buf, cap, out_len, out_expires_at_ms, || {
            scope_from(2, organization_id, organization_id_len, "organization_id").map(Cow::Owned)
        })
    }
}

/// An app access token (`POST /app/accessTokens`), as `icr_client_installation_token`.
///
/// # Safety
///
/// As `icr_client_installation_token`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_client_app_token(
    client: *const icr_client,
    min_life_ms: u64,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
    out_expires_at_ms: *mut i64,
) -> icr_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        token_export(client, min_life_ms, buf, cap, out_len, out_expires_at_ms, || {
            Ok(Cow::Owned(TokenScope::App))
        })
    }
}

/// The token of `scope` (made once with `icr_token_scope_new`), as
/// `icr_client_installation_token`: the call to make in a loop, as it checks nothing about the
/// id (that was done once, when the scope was made).
///
/// ```c
/// icr_token_scope *installation;
/// icr_token_scope_new(ICR_SCOPE_INSTALLATION, id, strlen(id), &installation);
/// icr_client_token(client, installation, 0, token, sizeof token, &len, &expires_at_ms);
/// ```
///
/// # Safety
///
/// `client` and `scope` are live; the rest as `icr_client_installation_token`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_client_token(
    client: *const icr_client,
    scope: *const icr_token_scope,
    min_life_ms: u64,
    buf: *mut c_char,
    cap: usize,
    out_len: *mut usize,
    out_expires_at_ms: *mut i64,
) -> icr_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        token_export(client, min_life_ms, buf, cap, out_len, out_expires_at_ms, || {
            scope_ref(scope).map(Cow::Borrowed)
        })
    }
}

/// A response the blocking client received: status, headers and body, kept until
/// `icr_response_free` (the body is wiped then). Made by `icr_client_request`.
///
/// Threads: read-only; any thread may read it, and several at once.
pub struct icr_response {
    status: u16,
    headers: Vec<LentHeader>,
    body: Zeroizing<Vec<u8>>,
}

/// The response behind `ptr`.
///
/// # Safety
///
/// `ptr` is NULL (refused) or a live response.
unsafe fn response_ref<'a>(ptr: *const icr_response) -> Result<&'a icr_response, Fail> {
    // SAFETY: passed on from the caller's contract.
    unsafe { ptr.as_ref() }.ok_or_else(|| Fail::null("response"))
}

/// Sends any request authorised with the token of `scope` (an `icr_scope`: the app, the
/// installation `scope_id`, or the app's installation on the organization `scope_id`), and
/// writes the response, whatever its status, to `*out` (free it with `icr_response_free`).
/// `url` is a path starting with `/` (the standard headers are then added) or an absolute URL
/// on the registry (a token goes to no other host). `headers` replace any of the same name;
/// `body` NULL is no body. A token the registry refuses (401) is minted again and the request
/// sent once more. No redirect is followed.
///
/// Errors: no response (`ICR_STATUS_TRANSPORT`), no token (the core's status), a bad method,
/// URL or header (`ICR_STATUS_CONFIG`; a header value is never quoted).
///
/// # Safety
///
/// `client` is live; every pointer is NULL (refused unless its length or count is 0) or valid
/// for its length or count; `out` points to a writable `icr_response *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_client_request(
    client: *const icr_client,
    scope: u32,
    scope_id: *const c_char,
    scope_id_len: usize,
    method: *const c_char,
    method_len: usize,
    url: *const c_char,
    url_len: usize,
    headers: *const crate::op::icr_header,
    header_count: usize,
    body: *const u8,
    body_len: usize,
    out: *mut *mut icr_response,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract, for each pointer.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let client = unsafe { client_ref(client) }?;
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
        let scope = crate::op::scope_of(scope, scope_id)?;
        let pairs: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (n.as_str(), v.as_str())).collect();
        let response = client.run(|c| {
            let op = c.with_app(|app| SendAs::plain(app, scope, method, url, &pairs, body))?;
            c.drive(op)
        })?;
        let (parts, body) = response.into_parts();
        let headers = parts
            .headers
            .iter()
            .map(|(name, value)| {
                let value = String::from_utf8_lossy(value.as_bytes()).into_owned();
                LentHeader::take((name.as_str().to_owned(), value))
            })
            .collect();
        let response = icr_response {
            status: parts.status.as_u16(),
            headers,
            body: Zeroizing::new(body),
        };
        out.set(Box::into_raw(Box::new(response)));
        Ok(())
    })
}

/// Writes the response's HTTP status (200, 404, ...).
///
/// # Safety
///
/// `response` is live; `out` points to a writable `uint16_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_response_status(response: *const icr_response, out: *mut u16) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        out.set(unsafe { response_ref(response) }?.status);
        Ok(())
    })
}

/// Writes how many headers the response has.
///
/// # Safety
///
/// `response` is live; `out` points to a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_response_header_count(response: *const icr_response, out: *mut usize) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        out.set(unsafe { response_ref(response) }?.headers.len());
        Ok(())
    })
}

/// Lends header `index` (from 0) of the response: its name (lower case) and value, each
/// NUL-terminated (the NUL not counted), until `icr_response_free`.
///
/// # Safety
///
/// `response` is live; the out-parameters point to writable memory of their types.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_response_header(
    response: *const icr_response,
    index: usize,
    out_name: *mut *const c_char,
    out_name_len: *mut usize,
    out_value: *mut *const c_char,
    out_value_len: *mut usize,
) -> icr_status {
    // SAFETY: the caller's contract, passed on.
    unsafe {
        lend_header(index, out_name, out_name_len, out_value, out_value_len, || {
            Ok(&response_ref(response)?.headers)
        })
    }
}

/// Lends the response's body until `icr_response_free` (possibly empty: then the pointer is not
/// NULL but must not be read).
///
/// # Safety
///
/// `response` is live; the out-parameters point to writable memory of their types.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_response_body(
    response: *const icr_response,
    out: *mut *const u8,
    out_len: *mut usize,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let (out, out_len) = unsafe { (Out::new(out, "out")?, Out::new(out_len, "out_len")?) };
        // SAFETY: as above.
        lend(&unsafe { response_ref(response) }?.body, out, out_len);
        Ok(())
    })
}

/// Frees a response (its body is wiped). NULL does nothing.
///
/// # Safety
///
/// `response` is NULL or made by `icr_client_request` and not freed yet; nothing it lent is
/// used afterwards.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_response_free(response: *mut icr_response) {
    // SAFETY: the caller's contract (see above).
    unsafe { free_box(response) }
}

/// Revokes the access token `token` (`DELETE /app/installations/token`) and drops it from the
/// client's cache.
///
/// # Safety
///
/// `client` is live; `token` is NULL (refused) or points to `token_len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_client_revoke(
    client: *const icr_client,
    token: *const c_char,
    token_len: usize,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let client = unsafe { client_ref(client) }?;
        // SAFETY: as above.
        let token = unsafe { text(token, token_len, "token") }?;
        if token.is_empty() {
            return Err(Fail::invalid("token is empty"));
        }
        let token = SecretString::new(token);
        client.run(|c| c.revoke(&token))?;
        Ok(())
    })
}

/// Revokes every token the client has cached (after the mints in flight) and empties its
/// cache; writes how many were revoked. Call it on shutdown.
///
/// # Safety
///
/// `client` is live; `out_count` points to a writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_client_revoke_all(client: *const icr_client, out_count: *mut usize) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out_count = unsafe { Out::new(out_count, "out_count") }?;
        // SAFETY: as above.
        let client = unsafe { client_ref(client) }?;
        out_count.set(client.run(Client::revoke_all)?);
        Ok(())
    })
}

/// Copies the client's counters as one JSON object into `buf` (`cap` bytes), as
/// `icr_last_error` copies (NUL-terminated, the length it needs in `*out_needed`, NUL included;
/// `ICR_STATUS_BUFFER_TOO_SMALL` when cut): `{"hits": ..., "misses": ..., "mints": ...,
/// "refreshes": ..., "failures": {"server": ...}, "waits": ..., "shared_hits": ...,
/// "shared_fallbacks": ..., "lookups": ..., "shared_lookups": ...}`.
///
/// # Safety
///
/// `client` is live; `buf` is NULL or points to `cap` writable bytes; `out_needed` points to a
/// writable `size_t`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_client_stats_json(
    client: *const icr_client,
    buf: *mut c_char,
    cap: usize,
    out_needed: *mut usize,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out_needed = unsafe { Out::new(out_needed, "out_needed") }?;
        // SAFETY: as above.
        let client = unsafe { client_ref(client) }?;
        let json = serde_json::to_string(&client.client.stats()).unwrap_or_else(|_| "null".to_owned());
        copy_message(&json, buf, cap, out_needed)
    })
}
