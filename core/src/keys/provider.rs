//! The RSA signer behind [`AppKey`](super::AppKey), chosen at compile time as rustls chooses its
//! crypto provider: *ring* by default, aws-lc-rs with the `aws-lc-rs` feature.
//!
//! Whichever signs, *ring* reads the key first, so its checks decide which keys load (2048 to
//! 4096 bits, public exponent at least 65537, two primes) and every [`KeyError`](super::KeyError)
//! is the same in both builds. aws-lc-rs then checks a little more: the private exponent `d`,
//! which *ring* never uses, must fit the other numbers. Everything else about a key (its
//! fingerprint, its public half, the sealing secret derived from its DER) does not depend on the
//! provider.

/// Why a provider refused a key: the provider's name and its reason code (*ring*'s or
/// aws-lc-rs's `KeyRejected` description, e.g. `TooSmall`).
pub(super) struct Rejected {
    pub(super) provider: &'static str,
    pub(super) code: String,
}

#[cfg(not(feature = "aws-lc-rs"))]
pub(super) use self::ring_rsa::RsaSigner;

#[cfg(feature = "aws-lc-rs")]
pub(super) use self::aws_lc_rsa::RsaSigner;

/// *ring* checks the key (in both builds).
fn ring_pair(pkcs1_der: &[u8]) -> Result<ring::signature::RsaKeyPair, Rejected> {
    ring::signature::RsaKeyPair::from_der(pkcs1_der).map_err(|rejected| Rejected {
        provider: "ring",
        code: rejected.to_string(),
    })
}

#[cfg(not(feature = "aws-lc-rs"))]
mod ring_rsa {
    use ring::rand::SystemRandom;
    use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};

    use super::{Rejected, ring_pair};

    /// *ring*'s RSA key pair, with the random source its blinding draws from.
    pub(in crate::keys) struct RsaSigner {
        pair: RsaKeyPair,
        rng: SystemRandom,
    }

    impl RsaSigner {
        /// The provider that signs.
        pub(in crate::keys) const PROVIDER: &'static str = "ring";

        /// Parses and checks a PKCS#1 `RSAPrivateKey`.
        pub(in crate::keys) fn from_pkcs1_der(pkcs1_der: &[u8]) -> Result<RsaSigner, Rejected> {
            Ok(RsaSigner {
                pair: ring_pair(pkcs1_der)?,
                rng: SystemRandom::new(),
            })
        }

        /// RSASSA-PKCS1-v1_5 with SHA-256; `None` only if the random source fails (blinding).
        pub(in crate::keys) fn sign(&self, message: &[u8]) -> Option<Vec<u8>> {
            let mut signature = vec![0; self.pair.public().modulus_len()];
            self.pair
                .sign(&RSA_PKCS1_SHA256, &self.rng, message, &mut signature)
                .ok()?;
            Some(signature)
        }

        /// The public key as PKCS#1 `RSAPublicKey` DER.
        pub(in crate::keys) fn public_pkcs1_der(&self) -> &[u8] {
            self.pair.public().as_ref()
        }
    }
}

#[cfg(feature = "aws-lc-rs")]
mod aws_lc_rsa {
    use aws_lc_rs::rand::SystemRandom;
    use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256, RsaKeyPair};

    use super::{Rejected, ring_pair};

    /// aws-lc-rs's RSA key pair (AWS-LC blinds with its own random source).
    pub(in crate::keys) struct RsaSigner {
        pair: RsaKeyPair,
        rng: SystemRandom,
    }

    impl RsaSigner {
        /// The provider that signs.
        pub(in crate::keys) const PROVIDER: &'static str = "aws-lc-rs";

        /// Checks a PKCS#1 `RSAPrivateKey` with *ring* (which keys load, and why one does not,
        /// stay those of the default build), then parses it with aws-lc-rs, which also checks
        /// the private exponent.
        pub(in crate::keys) fn from_pkcs1_der(pkcs1_der: &[u8]) -> Result<RsaSigner, Rejected> {
            drop(ring_pair(pkcs1_der)?);
            let pair = RsaKeyPair::from_der(pkcs1_der).map_err(|rejected| Rejected {
                provider: "aws-lc-rs",
                code: rejected.to_string(),
            })?;
            Ok(RsaSigner {
                pair,
                rng: SystemRandom::new(),
            })
        }

        /// RSASSA-PKCS1-v1_5 with SHA-256; `None` only if AWS-LC fails.
        pub(in crate::keys) fn sign(&self, message: &[u8]) -> Option<Vec<u8>> {
            let mut signature = vec![0; self.pair.public_modulus_len()];
            self.pair
                .sign(&RSA_PKCS1_SHA256, &self.rng, message, &mut signature)
                .ok()?;
            Some(signature)
        }

        /// The public key as PKCS#1 `RSAPublicKey` DER.
        pub(in crate::keys) fn public_pkcs1_der(&self) -> &[u8] {
            self.pair.public_key().as_ref()
        }
    }
}
