//! [`no_signer`]: the answer of a driver that cannot perform a `Sign` step.

use icr_app_core::Error;

/// The answer to a `Sign` step for a driver that has no signer: only an `App` built without its
/// private key (`App::builder_without_key`) asks, and the operations that need its JWT then fail
/// with this error, which says how to give the app its key.
pub fn no_signer() -> Error {
    Error::Signing(
        "this client has no signer to sign the App's JWT with (the App was built without its private key); \
         build it with App::builder and the key"
            .to_owned(),
    )
}
