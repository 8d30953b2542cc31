//! The app JWT end to end: RFC 7515 A.2 through the signing path, verification with ring's RSA
//! public-key code and with python's `cryptography`, and the `jwt` example as a contract.

use std::path::PathBuf;
use std::process::Command;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use icr_app_core::encode_compact;
use icr_app_core::{AppId, AppKey, ClockOffset, JwtSigner, Timestamp};
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

fn fixture(name: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/keys")
        .join(name)
}

fn key(name: &str) -> AppKey {
    AppKey::parse(&std::fs::read(fixture(name)).unwrap()).unwrap()
}

#[test]
fn rfc7515_a2_reproduced_by_the_signing_path() {
    let jws = encode_compact(
        br#"{"alg":"RS256"}"#,
        b"{\"iss\":\"joe\",\r\n \"exp\":1300819380,\r\n \"http://example.com/is_root\":true}",
        &key("rfc7515-a2.pem"),
    )
    .unwrap();
    let expected = concat!(
        "eyJhbGciOiJSUzI1NiJ9",
        ".",
        "eyJpc3MiOiJqb2UiLA0KICJleHAiOjEzMDA4MTkzODAsDQogImh0dHA6Ly9leGFtcGxlLmNvbS9pc19yb290Ijp0cnVlfQ",
        ".",
        "cC4hiUPoj9Eetdgtv3hF80EGrhuB__dzERat0XF9g2VtQgr9PJbu3XOiZj5RZmh7",
        "AAuHIm4Bh-0Qc_lF5YKt_O8W2Fp5jujGbds9uJdbF9CUAr7t1dnZcAcQjbKBYNX4",
        "BAynRFdiuB--f_nZLgrnbyTyWzO75vRK5h6xBArLIARNPvkSjtQBMHlb1L07Qe7K",
        "0GarZRmB_eSN9383LcOLn6_dO--xi12jzDwusC-eOkHWEsqtFZESc6BfI7noOPqv",
        "hJ1phCnvWh6IeYI2w9QOYEUipUTI8np6LbgGY9Fs98rqVt5AXLIhWkWywlVmtVrB",
        "p0igcN_IoypGlUPQGe77Rw",
    );
    assert_eq!(jws, expected);
}

fn parts(jwt: &str) -> (serde_json::Value, serde_json::Value, Vec<u8>, String) {
    let mut it = jwt.split('.');
    let (h, c, s) = (it.next().unwrap(), it.next().unwrap(), it.next().unwrap());
    assert!(it.next().is_none());
    let json = |p: &str| serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap();
    (json(h), json(c), URL_SAFE_NO_PAD.decode(s).unwrap(), format!("{h}.{c}"))
}

#[test]
fn app_jwt_verifies_with_rings_public_key_code() {
    for name in ["rsa2048-pkcs1.pem", "rsa2048-pkcs8.der", "rsa4096-pkcs8.pem"] {
        let key = key(name);
        let public = key.public_key_pkcs1_der().to_vec();
        let signer = JwtSigner::new(
            AppId::new("d23967cc-dd16-452b-8af4-869965745978").unwrap(),
            Arc::new(key),
        );
        let jwt = signer
            .mint_at(Timestamp::from_unix_seconds(1_700_000_000), ClockOffset::default())
            .unwrap();
        let (header, claims, signature, input) = parts(jwt.token().expose());
        assert_eq!(header, serde_json::json!({"alg": "RS256", "typ": "JWT"}));
        assert_eq!(
            claims,
            serde_json::json!({"iat": 1_699_999_940, "exp": 1_700_000_540, "iss": "d23967cc-dd16-452b-8af4-869965745978", "alg": "RS256"})
        );
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public)
            .verify(input.as_bytes(), &signature)
            .unwrap();
        let mut forged = signature.clone();
        forged[0] ^= 1;
        assert!(
            UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public)
                .verify(input.as_bytes(), &forged)
                .is_err()
        );
    }
}

/// The example binary, built by `cargo test` (or built here if this test runs alone).
fn example() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    let path = dir.join(format!("jwt{}", std::env::consts::EXE_SUFFIX));
    if !path.exists() {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "icr-app-core", "--example", "jwt"])
            .status()
            .unwrap();
        assert!(status.success());
    }
    path
}

#[test]
fn example_prints_exactly_one_jwt_for_the_given_instant() {
    let out = Command::new(example())
        .args(["--app-id", "67890", "--private-key"])
        .arg(fixture("rsa2048-pkcs1.pem"))
        .args(["--now", "1700000000"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert_eq!(stdout.lines().count(), 1);
    assert!(stdout.ends_with('\n'));
    let (_, claims, signature, input) = parts(stdout.trim_end());
    assert_eq!(claims["iat"], 1_699_999_940);
    assert_eq!(claims["exp"], 1_700_000_540);
    assert_eq!(claims["iss"], "67890");
    let public = key("rsa2048-pkcs1.pem").public_key_pkcs1_der().to_vec();
    UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &public)
        .verify(input.as_bytes(), &signature)
        .unwrap();
    // The same instant and key give the same bytes (RSASSA-PKCS1-v1_5 is deterministic).
    let again = Command::new(example())
        .args(["--app-id", "67890", "--private-key"])
        .arg(fixture("rsa2048-pkcs8.pem"))
        .args(["--now", "1700000000"])
        .output()
        .unwrap();
    assert_eq!(String::from_utf8(again.stdout).unwrap(), stdout);
}

#[test]
fn example_verifies_with_python_cryptography() {
    let out = Command::new(example())
        .args(["--app-id", "app-1", "--private-key"])
        .arg(fixture("rsa2048-pkcs8.pem"))
        .output()
        .unwrap();
    assert!(out.status.success());
    let jwt = String::from_utf8(out.stdout).unwrap();
    let script = r#"
import base64, json, sys, time
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
jwt, pub = sys.argv[1].strip(), sys.argv[2]
h, c, s = jwt.split(".")
dec = lambda p: base64.urlsafe_b64decode(p + "=" * (-len(p) % 4))
key = serialization.load_pem_public_key(open(pub, "rb").read())
key.verify(dec(s), f"{h}.{c}".encode(), padding.PKCS1v15(), hashes.SHA256())
claims = json.loads(dec(c))
now = time.time()
assert claims["iss"] == "app-1", claims
assert claims["exp"] - now <= 600 and claims["exp"] > now, claims
assert claims["iat"] <= now, claims
print("ok")
"#;
    let py = Command::new("python3")
        .arg("-c")
        .arg(script)
        .arg(&jwt)
        .arg(fixture("rsa2048-public.pem"))
        .output();
    match py {
        Ok(o) if String::from_utf8_lossy(&o.stderr).contains("No module named 'cryptography'") => {
            eprintln!("python3 cryptography is not installed: skipped");
        }
        Ok(o) => assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            "ok",
            "{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(_) => eprintln!("python3 is not installed: skipped"),
    }
}

#[test]
fn example_fails_cleanly() {
    let run = |args: &[&str]| Command::new(example()).args(args).output().unwrap();
    let missing = run(&["--app-id", "a", "--private-key", "/nonexistent/key.pem"]);
    assert!(!missing.status.success());
    assert!(missing.stdout.is_empty());
    let err = String::from_utf8_lossy(&missing.stderr);
    assert!(
        // Which setting, not its value: the value may be the key itself rather than a path.
        err.contains("--private-key names no readable file")
            && !err.contains("/nonexistent/key.pem")
            && !err.contains("panicked"),
        "{err}"
    );

    let ec = fixture("ec-p256-sec1.pem");
    let bad = run(&["--app-id", "a", "--private-key", ec.to_str().unwrap()]);
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("EC") && !err.contains("panicked"), "{err}");

    for args in [
        &["--app-id", "a"][..],
        &["--private-key", "x"],
        &["--app-id", "", "--private-key", "x"],
        &["--now", "soon"],
        &["--bogus"],
    ] {
        let out = run(args);
        assert!(!out.status.success(), "{args:?}");
        assert!(!String::from_utf8_lossy(&out.stderr).contains("panicked"));
    }
}

/// Every run of 16 characters of `value`: none may appear in `text`.
fn assert_not_echoed(value: &str, text: &str) {
    let chars: Vec<char> = value.chars().collect();
    for window in chars.windows(16) {
        let run: String = window.iter().collect();
        assert!(!text.contains(&run), "the value is quoted (`{run}`): {text}");
    }
}

#[test]
fn example_never_quotes_its_private_key_value() {
    // A base64 key (the PEM's body: base64 of the DER) and a token, given where a path goes and
    // where nothing goes.
    let pem = std::fs::read_to_string(fixture("rsa2048-pkcs8.pem")).unwrap();
    let base64_key: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let token = "crs_19c9bd530ccd3e1187eed12dc4edb70abe757fc4c7be9c5b";
    for value in [base64_key.as_str(), token] {
        for args in [
            vec!["--app-id", "67890", "--private-key", value],
            vec!["--app-id", "67890", value],
        ] {
            let out = Command::new(example()).args(&args).output().unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(2), "{stderr}");
            assert!(out.stdout.is_empty());
            assert!(stderr.starts_with("error: "), "{stderr}");
            assert_not_echoed(value, &stderr);
        }
    }
    // A file that holds no key: neither its name nor its contents.
    let dir = std::env::temp_dir().join(format!("icr-app-jwt-example-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("secret-looking-name-0123456789abcdef.txt");
    std::fs::write(&path, token).unwrap();
    let out = Command::new(example())
        .args(["--app-id", "67890", "--private-key"])
        .arg(&path)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("holds no usable key"), "{stderr}");
    assert_not_echoed(token, &stderr);
    assert!(!stderr.contains("secret-looking-name"), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
