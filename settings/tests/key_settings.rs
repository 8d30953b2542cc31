//! A key given as a setting (`--private-key`, `ICR_PRIVATE_KEY`, a secret store): the three
//! accepted forms (PEM, base64 of a PEM or DER key, a path), and that no message about a value we
//! could not use ever quotes it.

use std::path::PathBuf;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use icr_app_core::{AppKey, Error, KeyError};
use icr_app_settings::{Settings, load_private_key};
use icr_app_testkit::assert_not_echoed;

const PEM: &str = include_str!("../../core/tests/fixtures/keys/rsa2048-pkcs1.pem");
const PKCS8: &str = include_str!("../../core/tests/fixtures/keys/rsa2048-pkcs8.pem");
const DER: &[u8] = include_bytes!("../../core/tests/fixtures/keys/rsa2048-pkcs8.der");
const FINGERPRINT: &str = include_str!("../../core/tests/fixtures/keys/rsa2048.fingerprint");
const TOKEN: &str = "crs_19c9bd530ccd3e1187eed12dc4edb70abe757fc4c7be9c5b";
const JWT: &str = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJhcHAtMSJ9.c2lnbmF0dXJlLW9mLXRoZS1qd3QtaGVyZQ";

/// The PEM body lines, as a stripped PEM would hold them.
fn body_lines(pem: &str) -> Vec<&str> {
    pem.lines()
        .filter(|l| !l.starts_with("-----") && !l.trim().is_empty())
        .collect()
}

fn temp_file(name: &str, bytes: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("icr-app-key-settings-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

#[test]
fn base64_of_a_pem_or_der_key_is_a_third_form() {
    let expected = FINGERPRINT.trim();
    let forms = [
        ("base64 of PKCS#1 PEM", STANDARD.encode(PEM)),
        ("base64 of PKCS#8 PEM", STANDARD.encode(PKCS8)),
        ("base64 of DER", STANDARD.encode(DER)),
        ("base64url of DER, no padding", URL_SAFE_NO_PAD.encode(DER)),
        // `base64 key.pem` wraps at 76 columns.
        (
            "base64 of PEM wrapped at 76",
            STANDARD
                .encode(PEM)
                .as_bytes()
                .chunks(76)
                .map(|c| std::str::from_utf8(c).unwrap())
                .collect::<Vec<_>>()
                .join("\n"),
        ),
        (
            "base64 of PEM with surrounding spaces",
            format!("  {}\n", STANDARD.encode(PEM)),
        ),
    ];
    for (what, value) in forms {
        assert_eq!(AppKey::from_text(&value).unwrap().fingerprint(), expected, "{what}");
        assert_eq!(
            load_private_key(&value).unwrap().fingerprint(),
            expected,
            "{what} through the loader"
        );
    }
    // A file that holds the key base64-encoded.
    let path = temp_file("encoded.txt", STANDARD.encode(PEM).as_bytes());
    assert_eq!(
        load_private_key(path.to_str().unwrap()).unwrap().fingerprint(),
        expected
    );
    // The usual forms still load.
    assert_eq!(load_private_key(PEM).unwrap().fingerprint(), expected);
    let path = temp_file("key.der", DER);
    assert_eq!(
        load_private_key(path.to_str().unwrap()).unwrap().fingerprint(),
        expected
    );
}

#[test]
fn what_is_not_a_key_is_named_without_being_quoted() {
    let stripped = body_lines(PKCS8).join("\n");
    let escaped = body_lines(PKCS8).join("\\n");
    type Expect = Box<dyn Fn(&KeyError) -> bool>;
    let cases: Vec<(&str, String, Expect)> = vec![
        (
            "a PEM body without BEGIN/END",
            stripped,
            Box::new(|e| *e == KeyError::PemBodyWithoutArmour),
        ),
        (
            "the same with \\n escapes",
            escaped,
            Box::new(|e| *e == KeyError::PemBodyWithoutArmour),
        ),
        (
            "an access token",
            TOKEN.to_owned(),
            Box::new(|e| *e == KeyError::AccessToken),
        ),
        ("a JWT", JWT.to_owned(), Box::new(|e| *e == KeyError::Jwt)),
        (
            "base64 of something else",
            STANDARD.encode("this is not a key, only a long sentence that happens to be encoded in base64"),
            Box::new(|e| matches!(e, KeyError::Unrecognised { .. })),
        ),
        (
            "random text",
            "correct horse battery staple and more words".to_owned(),
            Box::new(|e| matches!(e, KeyError::Unrecognised { .. })),
        ),
    ];
    for (what, value, expected) in cases {
        let e = AppKey::from_text(&value).unwrap_err();
        assert!(expected(&e), "{what}: got {e:?}");
        let loaded = load_private_key(&value).unwrap_err();
        assert!(
            matches!(&loaded, Error::Key(k) if expected(k)),
            "{what}: the loader gave {loaded:?}"
        );
        for message in [
            e.to_string(),
            format!("{e:?}"),
            loaded.to_string(),
            format!("{loaded:?}"),
        ] {
            assert_not_echoed(&value, &message);
        }
    }
    // Read as text or as a file, an OpenSSH public key is named as what it is.
    let ssh = "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 someone@example";
    assert_eq!(AppKey::from_text(ssh).unwrap_err(), KeyError::PublicKey);
    assert_eq!(AppKey::parse(ssh.as_bytes()).unwrap_err(), KeyError::PublicKey);
    let e = AppKey::from_text(TOKEN).unwrap_err().to_string();
    assert!(e.contains("access token"), "{e}");
    let e = AppKey::from_text(&body_lines(PEM).join("\n")).unwrap_err().to_string();
    assert!(e.contains("BEGIN/END"), "{e}");
}

#[test]
fn a_key_file_that_holds_no_key_is_not_quoted_either() {
    let path = temp_file("token.txt", TOKEN.as_bytes());
    let e = load_private_key(path.to_str().unwrap()).unwrap_err();
    assert!(e.to_string().contains("access token"), "{e}");
    assert_not_echoed(TOKEN, &e.to_string());
    assert_not_echoed(TOKEN, &format!("{e:?}"));
    let body = body_lines(PEM).join("\n");
    let path = temp_file("body.txt", body.as_bytes());
    let e = load_private_key(path.to_str().unwrap()).unwrap_err();
    assert_not_echoed(&body, &e.to_string());
    assert!(e.to_string().contains("BEGIN/END"), "{e}");
}

#[test]
fn every_settings_path_keeps_the_key_out_of_messages() {
    let body = body_lines(PKCS8).join("\n");
    for bad in [body.as_str(), TOKEN, JWT] {
        let settings = Settings::from_args(
            [
                "--app-id",
                "app-1",
                "--private-key",
                bad,
                "--base-url",
                "http://127.0.0.1:1",
            ]
            .map(String::from),
        )
        .unwrap();
        assert_not_echoed(bad, &format!("{settings:?}"));
        let e = settings.app(1).unwrap_err();
        assert_not_echoed(bad, &e.to_string());
        assert_not_echoed(bad, &format!("{e:?}"));
    }
    // A flag whose value is a key, given in the wrong place, is not echoed either.
    let e = Settings::from_args([PEM.to_owned()]).unwrap_err();
    for line in body_lines(PEM) {
        assert!(!e.to_string().contains(line), "{e}");
    }
}

/// A value that reads as a path but names no file says "no such file" and the setting, and never
/// quotes the path (it may be something else pasted by mistake); a value that reads as base64
/// does not.
#[test]
fn a_path_that_names_no_file_says_no_such_file() {
    let cases = [
        "/nonexistent/secret-looking-dir/my-app-key.pem",
        "./no-such-dir-0123456789/my-app-key.pem",
        "no-such-dir-0123456789/my-app-key.pem",
        "~/no-such-dir-0123456789/my-app-key.pem",
        "/nonexistent/secret-looking-dir/no-extension",
        "C:\\Users\\someone\\no-such-dir\\my-app-key.pem",
    ];
    for value in cases {
        assert!(
            matches!(AppKey::from_text(value), Err(KeyError::Unrecognised { .. })),
            "{value}"
        );
        let e = load_private_key(value).unwrap_err();
        let through_settings = Settings::from_args(["--app-id", "app-1", "--private-key", value].map(String::from))
            .unwrap()
            .app(1)
            .unwrap_err();
        for message in [e.to_string(), through_settings.to_string()] {
            assert!(
                message.contains("no such file")
                    && message.contains("ICR_PRIVATE_KEY")
                    && message.contains("--private-key"),
                "{value}: {message}"
            );
            assert!(
                !message.contains("no-such-dir") && !message.contains("secret-looking"),
                "{message}"
            );
            assert_not_echoed(value, &message);
        }
        assert!(matches!(e, Error::Config { .. }), "{value}: {e:?}");
        assert_not_echoed(value, &format!("{e:?}"));
    }
    let e = load_private_key("~/no-such-dir-0123456789/key.pem")
        .unwrap_err()
        .to_string();
    assert!(e.contains("`~` is not expanded"), "{e}");
    let e = load_private_key("no-such-dir-0123456789/key.pem")
        .unwrap_err()
        .to_string();
    assert!(e.contains("relative path"), "{e}");

    // A directory is not a key file either.
    let dir = std::env::temp_dir().join(format!("icr-app-key-settings-dir-{}.d", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let e = load_private_key(dir.to_str().unwrap()).unwrap_err().to_string();
    assert!(e.contains("not a file") && e.contains("ICR_PRIVATE_KEY"), "{e}");
    assert_not_echoed(dir.to_str().unwrap(), &e);
    std::fs::remove_dir(&dir).unwrap();

    // Base64 that is not a key, `/` and all, is still named as what it is.
    let not_a_key = STANDARD.encode([0xfb_u8; 96]);
    assert!(not_a_key.contains('/'), "{not_a_key}");
    let e = load_private_key(&not_a_key).unwrap_err();
    assert!(matches!(e, Error::Key(KeyError::Unrecognised { .. })), "{e:?}");
    assert!(!e.to_string().contains("no such file"), "{e}");
}
