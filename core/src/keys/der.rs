//! DER: telling PKCS#1 from PKCS#8 by structure, and naming what is not an RSA key.

use super::provider::{Rejected, RsaSigner};
use super::{AppKey, KeyError};

const TAG_INTEGER: u8 = 0x02;
const TAG_BIT_STRING: u8 = 0x03;
const TAG_OCTET_STRING: u8 = 0x04;
const TAG_OID: u8 = 0x06;
pub(super) const TAG_SEQUENCE: u8 = 0x30;

/// rsaEncryption, 1.2.840.113549.1.1.1.
const OID_RSA_ENCRYPTION: &str = "1.2.840.113549.1.1.1";
/// id-RSASSA-PSS, 1.2.840.113549.1.1.10.
const OID_RSASSA_PSS: &str = "1.2.840.113549.1.1.10";

/// One DER element.
#[derive(Clone, Copy)]
struct Tlv<'a> {
    tag: u8,
    /// The contents.
    value: &'a [u8],
    /// Tag, length and contents.
    whole: &'a [u8],
}

/// Reads one DER element from the front of `input`; the rest follows.
fn read_tlv(input: &[u8]) -> Result<(Tlv<'_>, &[u8]), KeyError> {
    let [tag, first, rest @ ..] = input else {
        return Err(KeyError::Truncated);
    };
    if tag & 0x1f == 0x1f {
        return Err(KeyError::Truncated);
    }
    let (len, rest) = if *first < 0x80 {
        (usize::from(*first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return Err(KeyError::Truncated);
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(KeyError::Truncated);
    }
    let header = input.len() - rest.len();
    let tlv = Tlv {
        tag: *tag,
        value: &rest[..len],
        whole: &input[..header + len],
    };
    Ok((tlv, &rest[len..]))
}

/// The elements inside a constructed value.
fn children(mut value: &[u8]) -> Result<Vec<Tlv<'_>>, KeyError> {
    let mut items = Vec::new();
    while !value.is_empty() {
        let (tlv, rest) = read_tlv(value)?;
        items.push(tlv);
        value = rest;
    }
    Ok(items)
}

/// Reads exactly one SEQUENCE and its elements.
fn sequence(der: &[u8]) -> Result<(Tlv<'_>, Vec<Tlv<'_>>), KeyError> {
    let (outer, rest) = read_tlv(der)?;
    if outer.tag != TAG_SEQUENCE || !rest.is_empty() {
        return Err(KeyError::Truncated);
    }
    Ok((outer, children(outer.value)?))
}

/// Tells PKCS#1, PKCS#8 and the wrong kinds of DER apart, and loads an RSA key.
pub(super) fn load_der(der: &[u8]) -> Result<AppKey, KeyError> {
    if der.first() != Some(&TAG_SEQUENCE) {
        return Err(KeyError::NotAKey);
    }
    let (outer, items) = sequence(der)?;
    let tags: Vec<u8> = items.iter().map(|t| t.tag).collect();
    match tags.as_slice() {
        _ if is_rsa_private_key(&items) => load_pkcs1(outer, &items),
        [TAG_INTEGER, TAG_SEQUENCE, TAG_OCTET_STRING, ..] => load_pkcs8(&items),
        // SEC1 ECPrivateKey: version 1, the private scalar, [0] curve, [1] public point.
        [TAG_INTEGER, TAG_OCTET_STRING, ..] if items[0].value == [1] => Err(KeyError::EcKey),
        // DSAPrivateKey as written by OpenSSL: version, p, q, g, y, x.
        [
            TAG_INTEGER,
            TAG_INTEGER,
            TAG_INTEGER,
            TAG_INTEGER,
            TAG_INTEGER,
            TAG_INTEGER,
        ] => Err(KeyError::NotRsa {
            algorithm: "DSA".into(),
        }),
        // RSAPublicKey (n, e) or SubjectPublicKeyInfo (algorithm, key).
        [TAG_INTEGER, TAG_INTEGER] | [TAG_SEQUENCE, TAG_BIT_STRING] => Err(KeyError::PublicKey),
        // EncryptedPrivateKeyInfo: encryption algorithm, encrypted data.
        [TAG_SEQUENCE, TAG_OCTET_STRING] => Err(KeyError::Encrypted),
        // Certificate: tbsCertificate, signatureAlgorithm, signature.
        [TAG_SEQUENCE, TAG_SEQUENCE, TAG_BIT_STRING] => Err(KeyError::Certificate),
        _ => Err(KeyError::NotAKey),
    }
}

/// Whether the elements start like an `RSAPrivateKey`: nine INTEGERs (version, n, e, d, p, q,
/// dP, dQ, qInv), perhaps followed by other prime infos.
fn is_rsa_private_key(items: &[Tlv<'_>]) -> bool {
    items.len() >= 9 && items[..9].iter().all(|t| t.tag == TAG_INTEGER)
}

/// PrivateKeyInfo: version, AlgorithmIdentifier, OCTET STRING holding the algorithm's key.
fn load_pkcs8(items: &[Tlv<'_>]) -> Result<AppKey, KeyError> {
    let algorithm = children(items[1].value)?;
    let Some(oid) = algorithm.first().filter(|t| t.tag == TAG_OID) else {
        return Err(KeyError::Truncated);
    };
    let oid = oid_string(oid.value);
    match oid.as_str() {
        OID_RSA_ENCRYPTION => {}
        OID_RSASSA_PSS => {
            return Err(KeyError::Rejected {
                reason: format!(
                    "it is an RSASSA-PSS key (OID {OID_RSASSA_PSS}), restricted to PSS signatures, while RS256 \
                     uses PKCS#1 v1.5"
                ),
            });
        }
        _ => {
            return Err(KeyError::NotRsa {
                algorithm: algorithm_name(&oid, algorithm.get(1)),
            });
        }
    }
    let (outer, inner) = sequence(items[2].value)?;
    if !is_rsa_private_key(&inner) {
        return Err(KeyError::Truncated);
    }
    load_pkcs1(outer, &inner)
}

/// RSAPrivateKey, its shape checked by [`is_rsa_private_key`].
fn load_pkcs1(outer: Tlv<'_>, items: &[Tlv<'_>]) -> Result<AppKey, KeyError> {
    let bits = bit_length(items[1].value);
    match RsaSigner::from_pkcs1_der(outer.whole) {
        Ok(rsa) => Ok(AppKey::from_signer(rsa, outer.whole, bits)),
        Err(rejected) => Err(KeyError::Rejected {
            reason: rejection_reason(&rejected, bits),
        }),
    }
}

/// Explains a provider's `KeyRejected` description (*ring*'s, or aws-lc-rs's for a key *ring*
/// accepted) for a key of `bits` bits.
fn rejection_reason(rejected: &Rejected, bits: usize) -> String {
    let Rejected { provider, code } = rejected;
    let why = match code.as_str() {
        "TooSmall" if bits < 2048 => format!("it is a {bits}-bit key, below the minimum of 2048 bits"),
        "TooSmall" => "its public exponent is below 65537".to_owned(),
        "TooLarge" if bits > 4096 => format!("it is a {bits}-bit key, above the maximum of 4096 bits"),
        "TooLarge" => "its public exponent is too large".to_owned(),
        "PrivateModulusLenNotMultipleOf512Bits" => {
            format!("it is a {bits}-bit key; only 2048-, 3072- and 4096-bit keys are supported")
        }
        "VersionNotSupported" => "it is a multi-prime RSA key, which is not supported".to_owned(),
        "InconsistentComponents" | "InvalidComponent" => {
            "its numbers do not fit together (the file may be corrupted or edited)".to_owned()
        }
        "InvalidEncoding" => "its DER encoding is invalid".to_owned(),
        // aws-lc-rs, after *ring* accepted the key: AWS-LC's own check (`RSA_check_key`) failed,
        // which also covers the private exponent `d` that *ring* never reads.
        "UnexpectedError" | "Unspecified" if *provider == "aws-lc-rs" => {
            "its numbers do not fit together (the file may be corrupted or edited)".to_owned()
        }
        _ => "it was refused".to_owned(),
    };
    format!("{why} ({provider}: {code})")
}

/// The bit length of a DER INTEGER's unsigned value.
fn bit_length(integer: &[u8]) -> usize {
    let start = integer.iter().position(|b| *b != 0).unwrap_or(integer.len());
    match integer.get(start) {
        Some(first) => (integer.len() - start) * 8 - first.leading_zeros() as usize,
        None => 0,
    }
}

/// An OBJECT IDENTIFIER's contents in dotted form.
fn oid_string(bytes: &[u8]) -> String {
    let mut arcs: Vec<u64> = Vec::new();
    let mut value: u64 = 0;
    for b in bytes {
        if value > u64::MAX >> 7 {
            return "(unreadable OID)".to_owned();
        }
        value = (value << 7) | u64::from(b & 0x7f);
        if b & 0x80 == 0 {
            if arcs.is_empty() {
                let first = (value / 40).min(2);
                arcs.push(first);
                arcs.push(value - first * 40);
            } else {
                arcs.push(value);
            }
            value = 0;
        }
    }
    arcs.iter().map(u64::to_string).collect::<Vec<_>>().join(".")
}

/// A readable name for a PKCS#8 algorithm OID (and, for EC, the curve in `parameters`).
fn algorithm_name(oid: &str, parameters: Option<&Tlv<'_>>) -> String {
    let name = match oid {
        "1.2.840.10045.2.1" => {
            let curve = parameters.filter(|p| p.tag == TAG_OID).map(|p| oid_string(p.value));
            return match curve.as_deref() {
                Some("1.2.840.10045.3.1.7") => "EC (P-256)".to_owned(),
                Some("1.3.132.0.34") => "EC (P-384)".to_owned(),
                Some("1.3.132.0.35") => "EC (P-521)".to_owned(),
                Some("1.3.132.0.10") => "EC (secp256k1)".to_owned(),
                Some(other) => format!("EC (curve OID {other})"),
                None => "EC".to_owned(),
            };
        }
        "1.3.101.112" => "Ed25519",
        "1.3.101.113" => "Ed448",
        "1.3.101.110" => "X25519",
        "1.3.101.111" => "X448",
        "1.2.840.10040.4.1" => "DSA",
        "1.2.840.113549.1.3.1" | "1.2.840.10046.2.1" => "Diffie-Hellman",
        "1.2.156.10197.1.301" => "SM2",
        other => return format!("non-RSA (algorithm OID {other})"),
    };
    name.to_owned()
}

/// Appends a DER length.
fn push_der_len(out: &mut Vec<u8>, len: usize) {
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
}

/// Wraps a PKCS#1 `RSAPublicKey` in a `SubjectPublicKeyInfo` with the rsaEncryption algorithm
/// (and NULL parameters), as `openssl rsa -pubout -outform DER` writes it.
pub(super) fn spki_from_pkcs1(pkcs1: &[u8]) -> Vec<u8> {
    // SEQUENCE { OID 1.2.840.113549.1.1.1, NULL }
    const ALGORITHM: [u8; 15] = [
        0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
    ];
    let mut bit_string = vec![TAG_BIT_STRING];
    push_der_len(&mut bit_string, pkcs1.len() + 1);
    bit_string.push(0); // no unused bits
    bit_string.extend_from_slice(pkcs1);
    let mut spki = vec![TAG_SEQUENCE];
    push_der_len(&mut spki, ALGORITHM.len() + bit_string.len());
    spki.extend_from_slice(&ALGORITHM);
    spki.extend_from_slice(&bit_string);
    spki
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oids_read_in_dotted_form() {
        assert_eq!(
            oid_string(&[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01]),
            OID_RSA_ENCRYPTION
        );
        assert_eq!(oid_string(&[0x2b, 0x65, 0x70]), "1.3.101.112");
        assert_eq!(
            oid_string(&[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01]),
            "1.2.840.10045.2.1"
        );
    }

    #[test]
    fn der_lengths_are_minimal() {
        let mut out = Vec::new();
        push_der_len(&mut out, 0x7f);
        push_der_len(&mut out, 0x80);
        push_der_len(&mut out, 0x10e);
        assert_eq!(out, [0x7f, 0x81, 0x80, 0x82, 0x01, 0x0e]);
    }

    #[test]
    fn bit_lengths_ignore_sign_padding() {
        assert_eq!(bit_length(&[0x00, 0x80, 0x00]), 16);
        assert_eq!(bit_length(&[0x01]), 1);
        assert_eq!(bit_length(&[0x00]), 0);
        assert_eq!(bit_length(&[]), 0);
    }
}
