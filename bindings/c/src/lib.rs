//! The C ABI of the ICR App SDK: `libicr_app.so` / `libicr_app.a` and `include/icr_app.h`.
//!
//! Two layers. The **sans-IO layer** is icr-app-core's state machine ([`AnyOperation`]) with the time
//! passed in and the effects handed out, as quiche's and hyper's C APIs are. A C caller makes an
//! app ([`icr_app_new`]), an operation ([`icr_op_installation_token`], ...), and loops on
//! [`icr_op_poll`]: it sends the request a Send step lends, hands the response back with
//! [`icr_op_handle_response`] (or the failure with [`icr_op_handle_failure`]), signs what a Sign
//! step lends, runs on its shared token store what a Store step lends (an app given one by
//! [`icr_app_attach_store`]; [`icr_op_store_command`], [`icr_op_handle_store_value`], ...),
//! sleeps or waits, until the step is Done; then reads the result ([`icr_op_result`],
//! [`icr_op_token`], ...). `bindings/c/README.md` has the complete loop.
//!
//! The **blocking client** ([`icr_client_new`], [`icr_client_installation_token`],
//! [`icr_client_request`], ...) is the workspace's blocking client (`icr_app_ureq::Client`) for C
//! callers who just want a token: thread-safe, with a Redis store by URL, a signer function for
//! a key in a KMS or an HSM, and a log sink ([`icr_client_options`]).
//!
//! Conventions (rustls-ffi's and hyper's): every fallible function returns an [`icr_status`];
//! outputs go through out-parameters written only on success; inputs are pointer and length
//! pairs (NUL terminators neither needed nor read); every handle made by a `_new` or a
//! constructor is freed by its `_free`, once, NULL accepted; the last error's message is copied
//! into the caller's buffer by [`icr_last_error`]; every export catches panics (a panic becomes
//! [`icr_status::Panic`]); secrets (a token, the JWT, a request's credential) are wiped when
//! freed.
//!
//! `unsafe` is confined to this crate (the rest of the workspace forbids it), each block with a
//! `// SAFETY:` comment; every pointer from C is checked and read in the `io` module's helpers or where
//! a handle is borrowed.
//!
//! [`AnyOperation`]: icr_app_core::AnyOperation

#![allow(non_camel_case_types)]

mod app;
mod client;
mod io;
mod log;
mod op;
mod options;
mod result;
mod scope;
mod status;
mod store;

pub use app::{icr_app, icr_app_attach_store, icr_app_changes, icr_app_free, icr_app_new, icr_app_new_without_key};
pub use client::{
    icr_client, icr_client_app_token, icr_client_free, icr_client_installation_token, icr_client_new,
    icr_client_organization_token, icr_client_request, icr_client_revoke, icr_client_revoke_all, icr_client_stats_json,
    icr_client_token, icr_response, icr_response_body, icr_response_free, icr_response_header,
    icr_response_header_count, icr_response_status,
};
pub use op::{
    icr_header, icr_op, icr_op_abandon, icr_op_all_installations, icr_op_app_jwt, icr_op_app_token, icr_op_free,
    icr_op_handle_failure, icr_op_handle_response, icr_op_handle_signature, icr_op_handle_signature_failure,
    icr_op_installation, icr_op_installation_token, icr_op_installations_page, icr_op_organization_installation,
    icr_op_organization_token, icr_op_poll, icr_op_refresher, icr_op_request_body, icr_op_request_header,
    icr_op_request_header_count, icr_op_request_method, icr_op_request_purpose, icr_op_request_route,
    icr_op_request_url, icr_op_revoke, icr_op_revoke_all, icr_op_send_as, icr_op_sign_message, icr_purpose, icr_route,
    icr_scope, icr_step, icr_transport_defaults, icr_transport_kind,
};
pub use options::{
    icr_client_options, icr_client_options_free, icr_client_options_new, icr_client_options_set_allow_insecure_http,
    icr_client_options_set_base_url, icr_client_options_set_log_sink, icr_client_options_set_redis_url,
    icr_client_options_set_retries, icr_client_options_set_sealing_secret, icr_client_options_set_signer,
    icr_client_options_set_timeout_ms, icr_client_options_set_user_agent, icr_log_fn, icr_log_level, icr_sign_fn,
};
pub use result::{
    icr_op_count, icr_op_error, icr_op_error_message, icr_op_json, icr_op_jwt, icr_op_response_body,
    icr_op_response_header, icr_op_response_header_count, icr_op_response_status, icr_op_result, icr_op_token,
    icr_op_token_json,
};
pub use scope::{icr_token_scope, icr_token_scope_free, icr_token_scope_new};
pub use status::{icr_last_error, icr_status, icr_status_name};
pub use store::{
    icr_op_handle_store_done, icr_op_handle_store_failure, icr_op_handle_store_leased, icr_op_handle_store_value,
    icr_op_store_command, icr_op_store_lease, icr_op_store_ttl_ms, icr_op_store_value, icr_store_command,
};

/// The library's version (the crate's), as a static NUL-terminated string, e.g. `"0.1.0"`.
/// Never free it.
#[unsafe(no_mangle)]
pub extern "C" fn icr_version() -> *const std::ffi::c_char {
    concat!(env!("CARGO_PKG_VERSION"), "\0").as_ptr().cast()
}
