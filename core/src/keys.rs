//! RSA private keys and the `Signer` seam. (Being written: see issue 2, item 1.)

use std::fmt;

use crate::error::Error;

/// Signs RS256 (RSASSA-PKCS1-v1_5 with SHA-256) for the app JWT.
///
/// [`AppKey`] (ring) is the default; implement this to sign in a KMS or HSM.
pub trait Signer: Send + Sync {
    /// The RS256 signature of `message`.
    fn sign_rs256(&self, message: &[u8]) -> Result<Vec<u8>, Error>;
}

/// Why a private key could not be loaded.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyError {
    /// The input is empty.
    Empty,
}

impl fmt::Display for KeyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KeyError::Empty => f.write_str("the key is empty"),
        }
    }
}

impl std::error::Error for KeyError {}

/// An RSA private key, parsed once.
pub struct AppKey {
    _private: (),
}
