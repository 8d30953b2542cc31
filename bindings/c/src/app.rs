//! [`icr_app`]: one app (its id, key, registry and token cache), shared by its operations.

use std::ffi::c_char;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use icr_app_core::{App, AppBuilder, AppKey, StoreSettings};

use crate::io::{Out, bytes, free_box, text};
use crate::status::{Fail, guard, icr_status};

/// One ICR app: its id, its key (unless it signs outside), the registry's base URL, the learned
/// clock offset and the token cache. Made by `icr_app_new` or `icr_app_new_without_key`, freed
/// by `icr_app_free`.
///
/// Threads: every call that takes an `icr_app *` (even `icr_app_changes`) reads or changes it.
/// An app used from several threads must be behind one lock of the caller's, held across each
/// such call (and never while sending, sleeping or waiting). An app used by one thread at a
/// time needs no lock, and may move between threads.
pub struct icr_app {
    pub(crate) app: App,
    /// What the app was made from, for `icr_client_new`, which makes the client's own app.
    pub(crate) recipe: Recipe,
    /// Whether an operation has used it (polled, answered, abandoned, or made the refresher):
    /// a keyless app can no longer be remade with a sealing secret by `icr_app_attach_store`.
    pub(crate) used: bool,
}

/// An app's id, key (none for an app without one) and base URL as given (empty: the default).
#[derive(Clone)]
pub(crate) struct Recipe {
    pub(crate) app_id: String,
    pub(crate) key: Option<AppKey>,
    pub(crate) base_url: String,
}

impl Recipe {
    /// A builder for an app with this id, key and base URL (`base_url` replaces it when not
    /// empty).
    pub(crate) fn builder(&self, base_url: &str) -> AppBuilder {
        let builder = match &self.key {
            Some(key) => App::builder(self.app_id.clone(), key.clone()),
            None => App::builder_without_key(self.app_id.clone()),
        };
        let base_url = if base_url.is_empty() { &self.base_url } else { base_url };
        if base_url.is_empty() {
            builder
        } else {
            builder.base_url(base_url)
        }
    }
}

/// A seed for the back-off jitter: randomness from the standard library's hasher keys (no
/// clock: the library reads none).
pub(crate) fn seed() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u8(0);
    hasher.finish()
}

/// Builds the app from `recipe`, and hands it out.
fn build(recipe: Recipe, out: Out<*mut icr_app>) -> Result<(), Fail> {
    let app = recipe.builder("").seed(seed()).build()?;
    out.set(Box::into_raw(Box::new(icr_app {
        app,
        recipe,
        used: false,
    })));
    Ok(())
}

/// Makes an app from its id, its private key and the registry's base URL, and writes it to
/// `*out` (free it with `icr_app_free`).
///
/// - `app_id`, `app_id_len`: the app's id, UTF-8.
/// - `key`, `key_len`: the private key's bytes as a key file holds them: PKCS#1 or PKCS#8 PEM,
///   or DER. The bytes are not kept (wipe your copy when you no longer need it). A key that
///   cannot be used is `ICR_STATUS_KEY`, with a message naming the problem (encrypted, not RSA,
///   truncated, ...) that never quotes the key.
/// - `base_url`, `base_url_len`: the registry, e.g. `http://127.0.0.1:8080`; length 0 for the
///   default, `https://api.carbonregistry.com`.
///
/// # Safety
///
/// Each pointer is NULL (refused, except with a length of 0) or points to its length of
/// readable bytes; `out` points to a writable `icr_app *`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_app_new(
    app_id: *const c_char,
    app_id_len: usize,
    key: *const u8,
    key_len: usize,
    base_url: *const c_char,
    base_url_len: usize,
    out: *mut *mut icr_app,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract, above, for each pointer.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let app_id = unsafe { text(app_id, app_id_len, "app_id") }?;
        // SAFETY: as above.
        let key = unsafe { bytes(key, key_len, "key") }?;
        // SAFETY: as above.
        let base_url = unsafe { text(base_url, base_url_len, "base_url") }?;
        let recipe = Recipe {
            app_id: app_id.to_owned(),
            key: Some(AppKey::parse(key)?),
            base_url: base_url.to_owned(),
        };
        build(recipe, out)
    })
}

/// Makes an app whose private key is not in this process (a KMS, an HSM): every app JWT's
/// signature is then a step `icr_op_poll` hands out (`ICR_STEP_SIGN`), answered with
/// `icr_op_handle_signature`. Otherwise as `icr_app_new`.
///
/// # Safety
///
/// As `icr_app_new`.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_app_new_without_key(
    app_id: *const c_char,
    app_id_len: usize,
    base_url: *const c_char,
    base_url_len: usize,
    out: *mut *mut icr_app,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract, as for `icr_app_new`.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: as above.
        let app_id = unsafe { text(app_id, app_id_len, "app_id") }?;
        // SAFETY: as above.
        let base_url = unsafe { text(base_url, base_url_len, "base_url") }?;
        let recipe = Recipe {
            app_id: app_id.to_owned(),
            key: None,
            base_url: base_url.to_owned(),
        };
        build(recipe, out)
    })
}

/// Frees an app (its cached tokens are wiped). NULL does nothing. Free every operation that
/// used it before or after, but use none of them with it again.
///
/// # Safety
///
/// `app` is NULL or an app made by `icr_app_new*` and not freed yet; no other thread uses it.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_app_free(app: *mut icr_app) {
    // SAFETY: the caller's contract (see above).
    unsafe { free_box(app) }
}

/// Writes the app's change counter to `*out`: it moves whenever an operation on the app reports
/// back or is abandoned (or a poll ends a mint others wait for). An `ICR_STEP_WAIT` step is over
/// once it differs from the step's `change`.
///
/// # Safety
///
/// `app` is NULL or a live app (used under the caller's lock if shared); `out` is NULL or
/// writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_app_changes(app: *const icr_app, out: *mut u64) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let out = unsafe { Out::new(out, "out") }?;
        // SAFETY: the caller's contract: a live app not being changed by another thread.
        let app = unsafe { app.as_ref() }.ok_or_else(|| Fail::null("app"))?;
        out.set(app.app.changes());
        Ok(())
    })
}

/// The app behind `ptr`, for an operation's call that changes it (the app is then used).
///
/// # Safety
///
/// `ptr` is NULL (refused) or a live app no one else uses during the call.
pub(crate) unsafe fn app_mut<'a>(ptr: *mut icr_app) -> Result<&'a mut icr_app, Fail> {
    // SAFETY: passed on from the caller's contract.
    let app = unsafe { ptr.as_mut() }.ok_or_else(|| Fail::null("app"))?;
    app.used = true;
    Ok(app)
}

/// Tells the app that you run a shared token store for it (Redis, or any store with the same
/// atomic commands: see `icr_store_command`): from then on its token operations hand out
/// `ICR_STEP_STORE` steps to read a token another process minted before minting, to take the
/// store's lease to mint (one process of the fleet mints, the others wait and read), and to put
/// what they mint. Tokens are sealed (AES-256-GCM) before they reach the store: it never sees one.
///
/// - `lease_ttl_ms`: how long a lease to mint lasts when its holder dies without releasing it;
///   longer than a mint takes. 0: the default, 15000.
/// - `owner_seed`: makes this process's lease owner id: pass randomness (two processes with the
///   same seed would take each other's leases for their own).
/// - `sealing_secret`, `sealing_secret_len`: what tokens are sealed under. An app made by
///   `icr_app_new` derives it from its key: pass NULL and 0. An app made by
///   `icr_app_new_without_key` needs one: at least 32 random bytes (`openssl rand 32`), the same
///   in every process sharing the store; the bytes are not kept (the key derived from them is
///   wiped when the app is freed). A secret where none applies, none where one is needed, or
///   one too short is `ICR_STATUS_CONFIG`.
///
/// A store that fails (`icr_op_handle_store_failure`) is set aside for 5 s of `now_ms`: tokens
/// are minted without it meanwhile, and no operation fails for it. Calling it again replaces the
/// store's settings and the lease owner id.
///
/// Call it before the app's first operation. An app made by `icr_app_new_without_key` is remade
/// with the secret, which would drop what its operations learned: once an operation has used it
/// (polled, answered, abandoned, or `icr_op_refresher`), this call is `ICR_STATUS_WRONG_STATE`.
///
/// # Safety
///
/// `app` is NULL (refused) or a live app no one else uses during the call; `sealing_secret` is
/// NULL (refused unless `sealing_secret_len` is 0) or points to `sealing_secret_len` readable
/// bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn icr_app_attach_store(
    app: *mut icr_app,
    lease_ttl_ms: u64,
    owner_seed: u64,
    sealing_secret: *const u8,
    sealing_secret_len: usize,
) -> icr_status {
    guard(|| {
        // SAFETY: the caller's contract.
        let secret = unsafe { bytes(sealing_secret, sealing_secret_len, "sealing_secret") }?;
        // SAFETY: as above: a live app not used elsewhere during the call (not `app_mut`, which
        // would count this call as an operation's).
        let app = unsafe { app.as_mut() }.ok_or_else(|| Fail::null("app"))?;
        let mut settings = StoreSettings::default();
        if lease_ttl_ms > 0 {
            settings.lease_ttl = Duration::from_millis(lease_ttl_ms);
        }
        match (app.recipe.key.is_some(), secret.is_empty()) {
            (true, true) => app.app.attach_store(settings, owner_seed)?,
            (true, false) => {
                return Err(Fail::new(
                    icr_status::Config,
                    "invalid sealing secret: an app made by icr_app_new seals shared tokens under a secret derived from its key: pass none (NULL, 0)",
                ));
            }
            (false, true) => {
                return Err(Fail::new(
                    icr_status::Config,
                    "invalid sealing secret: an app made by icr_app_new_without_key needs one to share tokens: at least 32 random bytes (e.g. `openssl rand 32`), the same in every process sharing the store",
                ));
            }
            (false, false) if app.used => {
                return Err(Fail::state(
                    "an operation has used this app (made by icr_app_new_without_key), which attaching a store with a sealing secret would remake: attach the store before the app's first operation",
                ));
            }
            (false, false) => {
                let mut remade = app.recipe.builder("").seed(seed()).sealing_secret(secret).build()?;
                remade.attach_store(settings, owner_seed)?;
                app.app = remade;
            }
        }
        Ok(())
    })
}
