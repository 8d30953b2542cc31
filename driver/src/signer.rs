//! Signing the app JWT for an app without its key ([`Step::Sign`](icr_app_core::Step::Sign)):
//! the signer a client is given, blocking ([`Signer`](icr_app_core::Signer), the core's trait)
//! or async ([`AsyncSigner`]), and how a driver performs the step with it ([`run_signer`],
//! [`run_async_signer`]).

use std::future::Future;
use std::pin::Pin;

use icr_app_core::{Error, Signer};

/// What [`AsyncSigner::sign_rs256`] returns.
pub type SignFuture<'a> = Pin<Box<dyn Future<Output = Result<Vec<u8>, Error>> + Send + 'a>>;

/// A signer the async client awaits for an app built without its key
/// (`App::builder_without_key`): a KMS or an HSM reached over the network, or any signer that
/// must not block the runtime. It is called once however many operations need the JWT, outside
/// the app's lock, about every eight minutes.
pub trait AsyncSigner: Send + Sync {
    /// The RS256 (RSASSA-PKCS1-v1_5 with SHA-256) signature of `message` with the app's
    /// private key, or why there is none ([`Error::Signing`], whose message every operation
    /// that needed the JWT then fails with: never put a credential in it).
    fn sign_rs256<'a>(&'a self, message: &'a [u8]) -> SignFuture<'a>;
}

/// The signature of `message` by `signer`, or, without one, the error that says the client
/// needs one. A blocking driver calls it without the app's lock.
pub fn run_signer(signer: Option<&HeldSigner<dyn Signer>>, message: &[u8]) -> Result<Vec<u8>, Error> {
    signer.map_or_else(|| Err(no_signer()), |signer| signer.0.sign_rs256(message))
}

/// [`run_signer`] for an async driver.
pub async fn run_async_signer(signer: Option<&HeldSigner<dyn AsyncSigner>>, message: &[u8]) -> Result<Vec<u8>, Error> {
    match signer {
        Some(signer) => signer.0.sign_rs256(message).await,
        None => Err(no_signer()),
    }
}

/// A client's signer, held so that the client stays `Debug` (shown as `Signer(..)`, whatever
/// the signer is) without asking signers to be.
pub struct HeldSigner<S: ?Sized>(pub Box<S>);

impl<S: ?Sized> std::fmt::Debug for HeldSigner<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

/// The answer to a `Sign` step for a client given no signer.
fn no_signer() -> Error {
    Error::Signing(
        "this client has no signer for an App built without its private key: give it one \
         (ClientBuilder::signer), or build the App with App::builder and the key"
            .to_owned(),
    )
}

/// Checks a client's signer against its app, when the client is built: an app without its key
/// needs a signer, and an app with one takes none (it signs in the core).
pub fn check_signer(signs_outside: bool, has_signer: bool) -> Result<(), Error> {
    match (signs_outside, has_signer) {
        (true, false) => Err(Error::config(
            "signer",
            "the App was built without its private key (App::builder_without_key): give the client a signer with ClientBuilder::signer",
        )),
        (false, true) => Err(Error::config(
            "signer",
            "the App signs with its own key: a client signer is only for an App built with App::builder_without_key",
        )),
        _ => Ok(()),
    }
}
