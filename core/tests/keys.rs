//! Loading private keys in every accepted form, refusing every other input with its own error,
//! and signing RS256 (checked against RFC 7515 Appendix A.2 and openssl's fingerprint).
//!
//! `.ci/run` runs these (and `jwt.rs`) twice: with *ring* signing (the default) and with
//! `--features aws-lc-rs`.

use std::path::PathBuf;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use icr_app_core::{AppKey, Error, KeyError, Signer};
use proptest::prelude::*;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

fn fixture_path(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name)
}

fn fixture(name: &str) -> Vec<u8> {
    std::fs::read(fixture_path(name)).unwrap_or_else(|e| panic!("fixture {name}: {e}"))
}

fn fixture_text(name: &str) -> String {
    String::from_utf8(fixture(name)).unwrap()
}

/// The DER inside the first PEM block of `text` (skipping headers).
fn pem_body(text: &str) -> Vec<u8> {
    let body: String = text
        .lines()
        .skip_while(|l| !l.starts_with("-----BEGIN"))
        .skip(1)
        .take_while(|l| !l.starts_with("-----END"))
        .filter(|l| !l.contains(':'))
        .collect::<Vec<_>>()
        .concat();
    STANDARD.decode(body.trim()).unwrap()
}

fn rsa2048_fingerprint() -> String {
    fixture_text("rsa2048.fingerprint").trim().to_owned()
}

/// The 2048-bit key's public half as openssl wrote it (PKCS#1 `RSAPublicKey` DER).
fn rsa2048_public_pkcs1() -> Vec<u8> {
    pem_body(&fixture_text("rsa2048-public-pkcs1.pem"))
}

fn assert_verifies(key: &AppKey, public_pkcs1: &[u8]) {
    let message = b"eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiIxMjMifQ";
    let signature = key.sign_rs256(message).unwrap();
    assert_eq!(signature.len(), key.modulus_bits() / 8);
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, public_pkcs1)
        .verify(message, &signature)
        .expect("signature verifies with the fixture's public key");
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, key.public_key_pkcs1_der())
        .verify(message, &signature)
        .expect("signature verifies with the key's own public key");
}

/// Every way the 2048-bit key is accepted, each through the most specific loader and `parse`.
fn rsa2048_forms() -> Vec<(String, AppKey)> {
    let mut forms = Vec::new();
    for name in [
        "rsa2048-pkcs1.pem",
        "rsa2048-pkcs8.pem",
        "rsa2048-pkcs1-crlf.pem",
        "rsa2048-env.txt",
        "rsa2048-cert-and-key.pem",
    ] {
        forms.push((
            format!("{name} (from_pem)"),
            AppKey::from_pem(&fixture_text(name)).unwrap(),
        ));
        forms.push((format!("{name} (parse)"), AppKey::parse(&fixture(name)).unwrap()));
    }
    for name in ["rsa2048-pkcs1.der", "rsa2048-pkcs8.der"] {
        forms.push((format!("{name} (from_der)"), AppKey::from_der(&fixture(name)).unwrap()));
        forms.push((format!("{name} (parse)"), AppKey::parse(&fixture(name)).unwrap()));
    }
    forms
}

#[test]
fn every_accepted_form_has_the_openssl_fingerprint() {
    let expected = rsa2048_fingerprint();
    assert_eq!(expected.len(), 44, "a base64 SHA-256");
    for (form, key) in rsa2048_forms() {
        assert_eq!(key.fingerprint(), expected, "{form}");
        assert_eq!(key.modulus_bits(), 2048, "{form}");
    }
}

#[test]
fn every_accepted_form_signs_verifiably_and_identically() {
    let public = rsa2048_public_pkcs1();
    let forms = rsa2048_forms();
    let reference = forms[0].1.sign_rs256(b"same message").unwrap();
    for (form, key) in &forms {
        assert_verifies(key, &public);
        assert_eq!(key.public_key_pkcs1_der(), public.as_slice(), "{form}");
        // PKCS#1 v1.5 is deterministic: the same key gives the same signature.
        assert_eq!(key.sign_rs256(b"same message").unwrap(), reference, "{form}");
    }
}

#[test]
fn pasted_env_values_are_accepted() {
    let pem = fixture_text("rsa2048-pkcs1.pem");
    let escaped = pem.replace('\n', "\\n");
    let variants = [
        escaped.clone(),
        format!("\"{escaped}\""),
        format!("'{escaped}'"),
        format!("  \n\"{escaped}\"\n\n"),
        pem.replace('\n', "\\r\\n"),
        format!("ICR_PRIVATE_KEY=\"{escaped}\""),
        format!("\n\n   {pem}\n\n   "),
        pem.replace('\n', "\n\n"),
        pem.replace('\n', "\r"),
        // Some CI secret stores turn the line breaks into spaces.
        pem.replace('\n', " "),
        format!("\u{feff}{pem}"),
    ];
    let expected = rsa2048_fingerprint();
    for (i, text) in variants.iter().enumerate() {
        let key = AppKey::from_pem(text).unwrap_or_else(|e| panic!("variant {i}: {e}"));
        assert_eq!(key.fingerprint(), expected, "variant {i}");
        let key = AppKey::parse(text.as_bytes()).unwrap_or_else(|e| panic!("variant {i} (parse): {e}"));
        assert_eq!(key.fingerprint(), expected, "variant {i} (parse)");
    }
}

#[test]
fn utf16_text_with_a_byte_order_mark_is_read() {
    let pem = fixture_text("rsa2048-pkcs8.pem");
    let mut le = vec![0xff, 0xfe];
    let mut be = vec![0xfe, 0xff];
    for unit in pem.encode_utf16() {
        le.extend_from_slice(&unit.to_le_bytes());
        be.extend_from_slice(&unit.to_be_bytes());
    }
    assert_eq!(AppKey::parse(&le).unwrap().fingerprint(), rsa2048_fingerprint());
    assert_eq!(AppKey::parse(&be).unwrap().fingerprint(), rsa2048_fingerprint());
}

#[test]
fn a_4096_bit_key_loads() {
    let key = AppKey::parse(&fixture("rsa4096-pkcs8.pem")).unwrap();
    assert_eq!(key.modulus_bits(), 4096);
    assert_eq!(key.fingerprint(), fixture_text("rsa4096.fingerprint").trim());
    assert_verifies(&key, key.public_key_pkcs1_der());
    assert_eq!(key.sign_rs256(b"x").unwrap().len(), 512);
}

#[test]
fn the_public_half_matches_openssl() {
    let key = AppKey::from_pem(&fixture_text("rsa2048-pkcs1.pem")).unwrap();
    assert_eq!(key.public_key_spki_der(), fixture("rsa2048-public.der"));
    assert_eq!(key.public_key_pem(), fixture_text("rsa2048-public.pem"));
    let digest = ring::digest::digest(&ring::digest::SHA256, &key.public_key_spki_der());
    assert_eq!(STANDARD.encode(digest), key.fingerprint());
    assert!(key.public_key_pem().lines().all(|l| l.len() <= 64));
    // The 4096-bit key's SPKI needs two-byte lengths everywhere.
    let big = AppKey::parse(&fixture("rsa4096-pkcs8.pem")).unwrap();
    let spki = big.public_key_spki_der();
    assert_eq!(&spki[..4], &[0x30, 0x82, 0x02, 0x22]);
    assert_eq!(spki.len(), 4 + 0x222);
}

#[test]
fn rfc7515_appendix_a2_signature_is_reproduced() {
    let key = AppKey::parse(&fixture("rfc7515-a2.pem")).unwrap();
    assert_eq!(key.modulus_bits(), 2048);
    let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"RS256"}"#);
    let payload =
        URL_SAFE_NO_PAD.encode(b"{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}");
    let signing_input = format!("{header}.{payload}");
    assert_eq!(
        signing_input,
        concat!(
            "eyJhbGciOiJSUzI1NiJ9.",
            "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ"
        )
    );
    let signature = key.sign_rs256(signing_input.as_bytes()).unwrap();
    let expected = concat!(
        "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7",
        "AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4",
        "BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K",
        "0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqv",
        "hJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrB",
        "p0igcN_IoypGlUPQGe77Rw",
    );
    assert_eq!(URL_SAFE_NO_PAD.encode(&signature), expected);
    assert_eq!(signature, URL_SAFE_NO_PAD.decode(expected).unwrap());
}

#[test]
fn debug_shows_only_size_and_fingerprint() {
    let key = AppKey::parse(&fixture("rsa2048-pkcs1.pem")).unwrap();
    assert_eq!(
        format!("{key:?}"),
        format!("AppKey {{ bits: 2048, fingerprint: \"{}\" }}", rsa2048_fingerprint())
    );
}

#[test]
fn clones_share_the_key_and_it_works_as_a_shared_signer() {
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<AppKey>();
    let key = AppKey::parse(&fixture("rsa2048-pkcs8.pem")).unwrap();
    let signer: Arc<dyn Signer> = Arc::new(key.clone());
    assert_eq!(signer.sign_rs256(b"m").unwrap(), key.sign_rs256(b"m").unwrap());
    let threads: Vec<_> = (0..4)
        .map(|i| {
            let signer = Arc::clone(&signer);
            std::thread::spawn(move || signer.sign_rs256(format!("message {i}").as_bytes()).unwrap())
        })
        .collect();
    let public = rsa2048_public_pkcs1();
    for (i, t) in threads.into_iter().enumerate() {
        let signature = t.join().unwrap();
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public)
            .verify(format!("message {i}").as_bytes(), &signature)
            .unwrap();
    }
}

fn parse_err(bytes: &[u8]) -> KeyError {
    match AppKey::parse(bytes) {
        Ok(key) => panic!("expected an error, loaded {key:?}"),
        Err(e) => e,
    }
}

#[test]
fn each_rejected_file_has_its_own_error() {
    let cases: Vec<(&str, KeyError)> = vec![
        ("rsa2048-encrypted-pkcs8.pem", KeyError::Encrypted),
        ("rsa2048-encrypted-traditional.pem", KeyError::Encrypted),
        ("ec-p256-sec1.pem", KeyError::EcKey),
        (
            "ec-p256-pkcs8.pem",
            KeyError::NotRsa {
                algorithm: "EC (P-256)".into(),
            },
        ),
        (
            "ed25519-pkcs8.pem",
            KeyError::NotRsa {
                algorithm: "Ed25519".into(),
            },
        ),
        ("openssh-ed25519", KeyError::OpenSsh),
        ("openssh-rsa", KeyError::OpenSsh),
        ("rsa2048-public.pem", KeyError::PublicKey),
        ("rsa2048-public-pkcs1.pem", KeyError::PublicKey),
        ("rsa2048-public.der", KeyError::PublicKey),
        ("openssh-rsa.pub", KeyError::PublicKey),
        ("rsa2048-cert.pem", KeyError::Certificate),
        ("rsa2048-truncated.pem", KeyError::Truncated),
        ("rsa2048-bad-base64.pem", KeyError::Base64),
    ];
    for (name, expected) in cases {
        assert_eq!(parse_err(&fixture(name)), expected, "{name}");
        if !name.ends_with(".der") {
            let text = fixture_text(name);
            assert_eq!(AppKey::from_pem(&text).unwrap_err(), expected, "{name} (from_pem)");
        }
    }
}

#[test]
fn a_1024_bit_key_is_rejected_naming_the_minimum() {
    let err = parse_err(&fixture("rsa1024-pkcs1.pem"));
    let KeyError::Rejected { reason } = &err else {
        panic!("expected Rejected, got {err:?}");
    };
    assert!(reason.contains("1024-bit"), "{reason}");
    assert!(reason.contains("TooSmall"), "{reason}");
    assert!(err.to_string().contains("2048"), "{err}");
}

#[test]
fn der_forms_of_the_wrong_kinds_are_told_apart() {
    let der = |name: &str| pem_body(&fixture_text(name));
    assert_eq!(
        AppKey::from_der(&der("rsa2048-encrypted-pkcs8.pem")).unwrap_err(),
        KeyError::Encrypted
    );
    assert_eq!(
        AppKey::from_der(&der("rsa2048-cert.pem")).unwrap_err(),
        KeyError::Certificate
    );
    assert_eq!(
        AppKey::from_der(&der("rsa2048-public.pem")).unwrap_err(),
        KeyError::PublicKey
    );
    assert_eq!(
        AppKey::from_der(&der("rsa2048-public-pkcs1.pem")).unwrap_err(),
        KeyError::PublicKey
    );
    assert_eq!(
        AppKey::from_der(&der("ec-p256-pkcs8.pem")).unwrap_err(),
        KeyError::NotRsa {
            algorithm: "EC (P-256)".into()
        }
    );
    assert_eq!(
        AppKey::from_der(&der("ed25519-pkcs8.pem")).unwrap_err(),
        KeyError::NotRsa {
            algorithm: "Ed25519".into()
        }
    );
    // The EC PRIVATE KEY block follows an EC PARAMETERS block in this file.
    let sec1 = fixture_text("ec-p256-sec1.pem");
    let key_block = &sec1[sec1.find("-----BEGIN EC PRIVATE KEY").unwrap()..];
    assert_eq!(AppKey::from_der(&pem_body(key_block)).unwrap_err(), KeyError::EcKey);
    assert!(matches!(
        AppKey::from_der(&der("rsa1024-pkcs1.pem")).unwrap_err(),
        KeyError::Rejected { .. }
    ));
}

#[test]
fn der_that_ends_early_is_truncated() {
    for name in ["rsa2048-pkcs1.der", "rsa2048-pkcs8.der"] {
        let der = fixture(name);
        for len in 1..der.len() {
            assert_eq!(
                AppKey::from_der(&der[..len]).unwrap_err(),
                KeyError::Truncated,
                "{name}[..{len}]"
            );
        }
        let mut longer = der.clone();
        longer.push(0);
        assert_eq!(
            AppKey::from_der(&longer).unwrap_err(),
            KeyError::Truncated,
            "{name} + trailing byte"
        );
    }
    // A PEM missing lines in the middle (END line intact) decodes to DER that ends early.
    let pem = fixture_text("rsa2048-pkcs1.pem");
    let lines: Vec<&str> = pem.lines().collect();
    let cut = [&lines[..5], &lines[lines.len() - 1..]].concat().join("\n");
    assert_eq!(AppKey::from_pem(&cut).unwrap_err(), KeyError::Truncated);
}

#[test]
fn other_inputs_get_their_own_errors() {
    assert_eq!(parse_err(b""), KeyError::Empty);
    assert_eq!(parse_err(b"  \n\t\r\n "), KeyError::Empty);
    assert_eq!(AppKey::from_pem("").unwrap_err(), KeyError::Empty);
    assert_eq!(AppKey::from_pem(" \"\" ").unwrap_err(), KeyError::Empty);
    assert_eq!(AppKey::from_der(b"").unwrap_err(), KeyError::Empty);
    assert_eq!(parse_err(b"-----BEGIN RSA PRIVATE KEY-----"), KeyError::Truncated);
    assert_eq!(
        parse_err(b"-----BEGIN RSA PRIVATE KEY-----\n-----END RSA PRIVATE KEY-----\n"),
        KeyError::Truncated
    );
    assert_eq!(parse_err(b"-----BEGIN RSA PRIVATE KEY\nMIIB\n"), KeyError::Truncated);
    assert_eq!(parse_err(b"/home/me/icr_private_key.pem"), KeyError::NotAKey);
    assert_eq!(parse_err(b"hello world"), KeyError::NotAKey);
    assert_eq!(parse_err(b"0 is not DER"), KeyError::NotAKey);
    assert_eq!(parse_err(&[0xde, 0xad, 0xbe, 0xef, 0x00, 0xff]), KeyError::NotAKey);
    assert_eq!(
        AppKey::from_der(b"-----BEGIN PRIVATE KEY-----").unwrap_err(),
        KeyError::NotAKey
    );
    assert_eq!(
        parse_err(b"-----BEGIN CERTIFICATE REQUEST-----\nMIIB\n-----END CERTIFICATE REQUEST-----\n"),
        KeyError::UnknownPem {
            label: "CERTIFICATE REQUEST".into()
        }
    );
    assert_eq!(
        parse_err(b"-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nxx\n-----END PGP PRIVATE KEY BLOCK-----\n"),
        KeyError::UnknownPem {
            label: "PGP PRIVATE KEY BLOCK".into()
        }
    );
    assert_eq!(
        parse_err(b"-----BEGIN DSA PRIVATE KEY-----\nMIIB\n-----END DSA PRIVATE KEY-----\n"),
        {
            KeyError::NotRsa {
                algorithm: "DSA".into(),
            }
        }
    );
    // A label that is not safe to print is cleaned before it reaches a message.
    let KeyError::UnknownPem { label } = parse_err(b"-----BEGIN A\x1b[31mB-----\nxx\n-----END A\x1b[31mB-----") else {
        panic!("expected UnknownPem");
    };
    assert_eq!(label, "A31mB");
}

#[test]
fn messages_name_the_cause_and_the_fix() {
    let has = |e: KeyError, needles: &[&str]| {
        let text = e.to_string();
        for needle in needles {
            assert!(text.contains(needle), "{e:?}: {text:?} lacks {needle:?}");
        }
        // The crate's error type carries the same message.
        assert!(Error::from(e).to_string().contains(&text));
    };
    has(KeyError::Empty, &["empty", "icr_private_key.pem"]);
    has(
        KeyError::Encrypted,
        &["passphrase", "openssl pkey -in key.pem -out plain.pem"],
    );
    has(KeyError::EcKey, &["EC PRIVATE KEY", "RSA", "Credentials tab"]);
    has(
        KeyError::OpenSsh,
        &[
            "OPENSSH PRIVATE KEY",
            "ssh-keygen -p -m PEM -f key",
            "Ed25519",
            "icr_private_key.pem",
        ],
    );
    has(KeyError::PublicKey, &["public key", "private", "icr_private_key.pem"]);
    has(KeyError::Certificate, &["certificate", "icr_private_key.pem"]);
    has(
        KeyError::NotRsa {
            algorithm: "Ed25519".into(),
        },
        &["Ed25519", "RSA", "Credentials tab"],
    );
    has(KeyError::Rejected { reason: "x".into() }, &["2048", "Credentials tab"]);
    has(KeyError::Base64, &["base64", "copy"]);
    has(KeyError::Truncated, &["-----END", "whole file"]);
    has(
        KeyError::UnknownPem { label: "X".into() },
        &["`X`", "BEGIN RSA PRIVATE KEY"],
    );
    has(KeyError::NotAKey, &["contents of the PEM file", "path"]);
}

/// Base64 lines of a fixture (key material), including those of the one-line env form.
fn base64_lines(text: &str) -> Vec<String> {
    text.split(['\n', '\r'])
        .flat_map(|l| l.split("\\n"))
        .flat_map(|l| l.split(' '))
        .map(|l| l.trim_matches('"').to_owned())
        .filter(|l| l.len() >= 16 && l.chars().all(|c| c.is_ascii_alphanumeric() || "+/=".contains(c)))
        .collect()
}

#[test]
fn no_message_or_debug_output_contains_key_material() {
    let mut names: Vec<String> = std::fs::read_dir(fixture_path(""))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.ends_with(".fingerprint") && !n.ends_with(".sh"))
        .collect();
    names.sort();
    assert!(names.len() >= 20, "{names:?}");
    let mut material = Vec::new();
    for name in &names {
        if let Ok(text) = String::from_utf8(fixture(name)) {
            material.extend(base64_lines(&text));
        }
    }
    assert!(material.len() > 100);
    for name in &names {
        let bytes = fixture(name);
        let mut outputs = Vec::new();
        match AppKey::parse(&bytes) {
            Ok(key) => outputs.push(format!("{key:?}")),
            Err(e) => {
                outputs.push(e.to_string());
                outputs.push(format!("{e:?}"));
                outputs.push(Error::from(e.clone()).to_string());
                outputs.push(format!("{:?}", Error::from(e)));
            }
        }
        if let Ok(text) = std::str::from_utf8(&bytes)
            && let Err(e) = AppKey::from_pem(text)
        {
            outputs.push(e.to_string());
            outputs.push(format!("{e:?}"));
        }
        for output in outputs {
            for line in &material {
                assert!(
                    !output.contains(line.as_str()),
                    "{name}: output {output:?} contains key material"
                );
            }
        }
    }
}

#[test]
fn garbage_never_panics() {
    let pem = fixture("rsa2048-pkcs1.pem");
    let der = fixture("rsa2048-pkcs1.der");
    let mut inputs: Vec<Vec<u8>> = vec![
        vec![],
        b"   ".to_vec(),
        b"\n\n\t".to_vec(),
        b"-----BEGIN RSA PRIVATE KEY-----".to_vec(),
        b"-----BEGIN RSA PRIVATE KEY-----\n".to_vec(),
        b"-----BEGIN -----".to_vec(),
        b"-----BEGIN".to_vec(),
        b"-----END RSA PRIVATE KEY-----".to_vec(),
        b"-----BEGIN PRIVATE KEY-----\n====\n-----END PRIVATE KEY-----".to_vec(),
        b"-----BEGIN PRIVATE KEY-----\nMA==\n-----END PRIVATE KEY-----".to_vec(),
        b"\\".to_vec(),
        b"\"".to_vec(),
        b"'".to_vec(),
        vec![0x30],
        vec![0x30, 0x80],
        vec![0x30, 0x84, 0xff, 0xff, 0xff, 0xff],
        vec![0x30, 0x85, 0, 0, 0, 0, 1],
        vec![0x30, 0x03, 0x02, 0x01, 0x00],
        vec![0x30, 0x00],
        vec![0xff, 0xfe],
        vec![0xfe, 0xff, 0x00],
        vec![0xff, 0xfe, 0x00, 0xd8],
    ];
    // A deterministic pseudo-random stream (xorshift) for raw noise and single-byte damage.
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for len in [1, 2, 7, 64, 1000] {
        inputs.push((0..len).map(|_| next() as u8).collect());
    }
    for _ in 0..64 {
        let mut damaged = der.clone();
        let i = next() as usize % damaged.len();
        damaged[i] ^= 1 << (next() % 8);
        inputs.push(damaged);
        let mut damaged = pem.clone();
        let i = next() as usize % damaged.len();
        damaged[i] = next() as u8;
        inputs.push(damaged);
    }
    for input in &inputs {
        let _ = AppKey::parse(input);
        let _ = AppKey::from_der(input);
        let _ = AppKey::from_pem(&String::from_utf8_lossy(input));
    }
}

/// A change to a byte string, for proptest.
#[derive(Clone, Debug)]
enum Mutation {
    Set(usize, u8),
    Delete(usize, usize),
    Insert(usize, Vec<u8>),
    Truncate(usize),
}

fn apply(mut bytes: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = bytes.len().max(1);
        match m {
            Mutation::Set(i, b) => {
                if let Some(slot) = bytes.get_mut(i % len) {
                    *slot = *b;
                }
            }
            Mutation::Delete(i, n) => {
                let start = (i % len).min(bytes.len());
                let end = (start + n).min(bytes.len());
                bytes.drain(start..end);
            }
            Mutation::Insert(i, extra) => {
                let at = (i % len).min(bytes.len());
                bytes.splice(at..at, extra.iter().copied());
            }
            Mutation::Truncate(i) => bytes.truncate(i % len),
        }
    }
    bytes
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Set(i, b)),
        (any::<usize>(), 1usize..200).prop_map(|(i, n)| Mutation::Delete(i, n)),
        (any::<usize>(), proptest::collection::vec(any::<u8>(), 1..16)).prop_map(|(i, v)| Mutation::Insert(i, v)),
        any::<usize>().prop_map(Mutation::Truncate),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn parse_never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let _ = AppKey::parse(&bytes);
        let _ = AppKey::from_der(&bytes);
    }

    #[test]
    fn parse_never_panics_on_a_damaged_pem(mutations in proptest::collection::vec(mutation(), 1..6)) {
        let pem = fixture("rsa2048-pkcs8.pem");
        let damaged = apply(pem, &mutations);
        if let Ok(key) = AppKey::parse(&damaged) {
            // Damage ring does not check at load (e.g. in dP) may only surface as a signing error.
            let _ = key.sign_rs256(b"m");
        }
        let _ = AppKey::from_pem(&String::from_utf8_lossy(&damaged));
    }

    #[test]
    fn parse_never_panics_on_damaged_der(mutations in proptest::collection::vec(mutation(), 1..4)) {
        let damaged = apply(fixture("rsa2048-pkcs1.der"), &mutations);
        let _ = AppKey::parse(&damaged);
        let _ = AppKey::from_der(&damaged);
    }
}

/// The contents of the `index`th INTEGER of a PKCS#1 `RSAPrivateKey` (0 the version, 1 `n`,
/// 2 `e`, 3 `d`, then `p`, `q`, `dP`, `dQ`, `qInv`).
fn pkcs1_integer(der: &[u8], index: usize) -> std::ops::Range<usize> {
    let contents = |at: usize| -> (usize, usize) {
        let first = der[at + 1];
        if first < 0x80 {
            return (at + 2, usize::from(first));
        }
        let n = usize::from(first & 0x7f);
        let len = der[at + 2..at + 2 + n]
            .iter()
            .fold(0, |acc, b| (acc << 8) | usize::from(*b));
        (at + 2 + n, len)
    };
    let (mut at, _) = contents(0);
    for _ in 0..index {
        let (start, len) = contents(at);
        at = start + len;
    }
    let (start, len) = contents(at);
    start..start + len
}

#[test]
fn the_crypto_provider_is_the_one_the_features_choose() {
    let expected = if cfg!(feature = "aws-lc-rs") {
        "aws-lc-rs"
    } else {
        "ring"
    };
    assert_eq!(AppKey::CRYPTO_PROVIDER, expected);
}

#[test]
fn the_sealing_secret_does_not_depend_on_the_provider_or_the_form() {
    // HKDF-SHA256 (RFC 5869) of the PKCS#1 DER, salt "icr-app shared token store", info
    // "sealing secret v1", as Python's hmac module computes it from rsa2048-pkcs1.der: the same
    // bytes whichever provider signs, so processes built either way share a token store.
    let expected = "189ef2c5f55c3bed254538fc379c59008fd4d5eeda4aad87be05203da78008c7";
    for (name, key) in rsa2048_forms() {
        let secret = Signer::sealing_secret(&key).unwrap();
        let hex: String = secret.iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, expected, "{name}");
    }
}

#[test]
fn a_key_whose_private_exponent_is_damaged() {
    // ring never reads `d` (it signs with the CRT numbers), so it loads such a key and signs
    // correctly; aws-lc-rs checks `d` against the other numbers and refuses the key.
    let mut der = fixture("rsa2048-pkcs1.der");
    let d = pkcs1_integer(&der, 3);
    assert_eq!(d.len(), 256);
    der[d.start + 100] ^= 1;
    let loaded = AppKey::from_der(&der);
    if cfg!(feature = "aws-lc-rs") {
        let Err(KeyError::Rejected { reason }) = &loaded else {
            panic!("expected Rejected, got {loaded:?}");
        };
        assert!(reason.contains("do not fit together"), "{reason}");
        assert!(reason.contains("aws-lc-rs"), "{reason}");
    } else {
        assert_verifies(&loaded.unwrap(), &rsa2048_public_pkcs1());
    }
}
