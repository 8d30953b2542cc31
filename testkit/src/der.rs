//! Just enough DER and PEM to turn a public key file into ring's RSAPublicKey form.

use base64::Engine as _;

/// The contents of the PEM block labelled `label`, decoded.
pub(crate) fn pem_block(pem: &str, label: &str) -> Option<Vec<u8>> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = pem.find(&begin)? + begin.len();
    let stop = start + pem[start..].find(&end)?;
    let b64: String = pem[start..stop].chars().filter(|c| !c.is_whitespace()).collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// Reads one TLV at the start of `input`: (tag, contents, rest).
pub(crate) fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
        rest = &rest[n..];
        len
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// The RSAPublicKey (PKCS#1) inside a SubjectPublicKeyInfo.
pub(crate) fn spki_to_pkcs1(spki: &[u8]) -> Option<Vec<u8>> {
    let (0x30, seq, _) = tlv(spki)? else { return None };
    let (0x30, alg, rest) = tlv(seq)? else { return None };
    // rsaEncryption, 1.2.840.113549.1.1.1
    let (0x06, oid, _) = tlv(alg)? else { return None };
    if oid != [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01] {
        return None;
    }
    let (0x03, bits, _) = tlv(rest)? else { return None };
    let (&0, key) = bits.split_first()? else { return None };
    Some(key.to_vec())
}
