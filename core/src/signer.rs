//! [`Signer`]: the seam that signs the app JWT, with the app's key or in a KMS/HSM.

use crate::error::Error;
use crate::keys::AppKey;

/// Signs RS256 (RSASSA-PKCS1-v1_5 with SHA-256) for the app JWT.
///
/// [`AppKey`] (*ring*, or aws-lc-rs with the `aws-lc-rs` feature) is the default; implement this
/// to sign in a KMS or HSM.
pub trait Signer: Send + Sync {
    /// The RS256 signature of `message`.
    fn sign_rs256(&self, message: &[u8]) -> Result<Vec<u8>, Error>;

    /// A secret derived from the private key, under which a shared token store seals tokens
    /// (every process holding the key derives the same one). `None` (the default) for a signer
    /// that cannot derive one, such as a KMS: a shared store then cannot be used.
    fn sealing_secret(&self) -> Option<zeroize::Zeroizing<[u8; 32]>> {
        None
    }
}

impl Signer for AppKey {
    fn sign_rs256(&self, message: &[u8]) -> Result<Vec<u8>, Error> {
        self.sign_pkcs1_sha256(message).ok_or_else(|| {
            Error::Signing(format!(
                "{} could not compute the RSA signature",
                AppKey::CRYPTO_PROVIDER
            ))
        })
    }

    fn sealing_secret(&self) -> Option<zeroize::Zeroizing<[u8; 32]>> {
        Some(AppKey::sealing_secret(self))
    }
}
