//! The `icr-app` binary driven as a process against the fake registry: every command and every
//! exit code.

use std::io::{BufRead as _, BufReader};
use std::process::{Command as StdCommand, Stdio};

use assert_cmd::Command;
use icr_app_testkit::{Demo, FakeRegistry, Fault, OTHER_PRIVATE_KEY_PEM};
use predicates::prelude::*;
use tempfile::NamedTempFile;

struct Env {
    demo: Demo,
    key: NamedTempFile,
}

fn env() -> Env {
    let demo = FakeRegistry::demo();
    let key = NamedTempFile::new().unwrap();
    std::fs::write(key.path(), demo.private_key_pem).unwrap();
    Env { demo, key }
}

impl Env {
    /// `icr-app` with the registry, app id and key in the environment.
    fn cmd(&self) -> Command {
        let mut c = Command::cargo_bin("icr-app").unwrap();
        c.env("ICR_BASE_URL", self.demo.registry.base_url())
            .env("ICR_APP_ID", &self.demo.app_id)
            .env("ICR_PRIVATE_KEY", self.key.path())
            .env_remove("ICR_INSTALLATION_ID")
            .env_remove("ICR_API_VERSION");
        c
    }

    fn installation(&self) -> &str {
        &self.demo.installation_ids[0]
    }
}

fn bare() -> Command {
    let mut c = Command::cargo_bin("icr-app").unwrap();
    for var in [
        "ICR_BASE_URL",
        "ICR_APP_ID",
        "ICR_PRIVATE_KEY",
        "ICR_INSTALLATION_ID",
        "ICR_API_VERSION",
    ] {
        c.env_remove(var);
    }
    c
}

#[test]
fn demo_runs_the_whole_flow_without_flags_or_secrets() {
    let out = bare().arg("demo").arg("-v").assert().success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    for step in [
        "sign the app JWT",
        "list installations",
        "mint an installation access token",
        "served from the cache",
        "GET /projects",
        "GET /organizations",
        "webhook",
        "revoke",
        "refuses it",
    ] {
        assert!(stdout.contains(step), "missing step {step}:\n{stdout}");
    }
    assert!(stderr.contains("> POST /app/installations/"), "{stderr}");
    // Secret hygiene through the whole demo with -v: the demo's key material, its webhook
    // secret, any JWT and any access token must appear nowhere on stdout or stderr.
    let all = format!("{stdout}{stderr}");
    let demo = FakeRegistry::demo();
    assert!(!all.contains("eyJ"), "a JWT leaked");
    assert!(!regex_like_token(&all), "a token leaked");
    assert!(!all.contains(&demo.webhook_secret), "the webhook secret leaked");
    assert!(
        !all.contains("demo-webhook-secret"),
        "part of the webhook secret leaked"
    );
    assert!(!all.contains("PRIVATE KEY"));
    for line in demo.private_key_pem.lines().filter(|l| !l.starts_with("-----")) {
        for chunk in line.as_bytes().chunks(16).filter(|c| c.len() == 16) {
            let chunk = std::str::from_utf8(chunk).unwrap();
            assert!(!all.contains(chunk), "private key material leaked: {chunk}");
        }
    }
}

/// Whether `text` holds `crs_` followed by hex (a token).
fn regex_like_token(text: &str) -> bool {
    text.match_indices("crs_")
        .any(|(i, _)| text[i + 4..].chars().take(8).filter(char::is_ascii_hexdigit).count() == 8)
}

#[test]
fn jwt_prints_one_jwt() {
    let e = env();
    let out = e.cmd().arg("jwt").assert().success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert_eq!(stdout.lines().count(), 1);
    assert_eq!(stdout.trim().split('.').count(), 3);
    assert!(stdout.starts_with("eyJ"));
}

#[test]
fn token_human_and_json() {
    let e = env();
    e.cmd()
        .args(["token", "--installation", e.installation()])
        .assert()
        .success()
        .stdout(predicate::str::contains("token:       crs_").and(predicate::str::contains("organization_info=VIEW")));
    let out = e
        .cmd()
        .args(["token", "--json", "--installation", e.installation()])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert!(v["token"].as_str().unwrap().starts_with("crs_"));
    assert!(v["expiresAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["permissions"]["organization_info"], "VIEW");
    let out = e.cmd().args(["token", "--app", "--json"]).assert().success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert!(v["token"].as_str().unwrap().starts_with("crs_"));
    assert_eq!(e.demo.registry.app_token_mint_count(), 1);
}

#[test]
fn installations_and_installation() {
    let e = env();
    for i in 0..12 {
        e.demo
            .registry
            .add_installation(&e.demo.app_id, &format!("Extra {i}"), &[("organization_info", "VIEW")]);
    }
    let out = e.cmd().args(["installations", "--json"]).assert().success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v.as_array().unwrap().len(), 15);
    e.cmd()
        .arg("installations")
        .assert()
        .success()
        .stdout(predicate::str::contains("Nordic Peatland Restoration"));
    e.cmd()
        .args(["installation", e.installation()])
        .assert()
        .success()
        .stdout(predicate::str::contains(e.installation()));
    let out = e
        .cmd()
        .args(["installation", "--json", e.installation()])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["id"], e.installation());
    e.cmd()
        .args(["installation", "00000000-0000-4000-8000-000000000000"])
        .assert()
        .code(4)
        .stderr(predicate::str::contains("404"));
}

#[test]
fn revoke_then_refused() {
    let e = env();
    let out = e
        .cmd()
        .args(["token", "--json", "--installation", e.installation()])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    let token = v["token"].as_str().unwrap().to_owned();
    e.cmd().args(["revoke", &token]).assert().success().stdout("revoked\n");
    assert!(!e.demo.registry.token_is_valid(&token));
    let out = e.cmd().args(["revoke", &token]).assert().code(3);
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(stderr.contains("401") && !stderr.contains(&token[4..]), "{stderr}");
}

#[test]
fn call_any_endpoint() {
    let e = env();
    let org = e.demo.registry.organization_id(e.installation()).unwrap();
    let out = e
        .cmd()
        .args([
            "call",
            "GET",
            &format!("/organizations/{org}"),
            "--installation",
            e.installation(),
        ])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["id"], org.as_str());
    e.cmd()
        .args(["call", "get", "/projects?limit=2", "--installation", e.installation()])
        .assert()
        .success()
        .stdout(predicate::str::contains("projects"));
    // Another organization: 403 -> 3. An unknown path: 404 -> 4.
    let other = e.demo.registry.organization_id(&e.demo.installation_ids[1]).unwrap();
    e.cmd()
        .args([
            "call",
            "GET",
            &format!("/organizations/{other}"),
            "--installation",
            e.installation(),
        ])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("403"));
    e.cmd()
        .args(["call", "GET", "/nowhere", "--installation", e.installation()])
        .assert()
        .code(4);
    e.cmd()
        .args([
            "call",
            "POST",
            "/projects",
            "--installation",
            e.installation(),
            "--data",
            "{not json",
        ])
        .assert()
        .code(2);
    e.cmd()
        .args(["call", "NOT A METHOD", "/projects", "--installation", e.installation()])
        .assert()
        .code(2);
}

#[test]
fn verify_webhook() {
    let e = env();
    let (body, signature) = e
        .demo
        .registry
        .webhook_delivery(&e.demo.webhook_secret, "installed", e.installation());
    e.cmd()
        .args([
            "verify-webhook",
            "--secret",
            &e.demo.webhook_secret,
            "--signature",
            &signature,
        ])
        .write_stdin(body.clone())
        .assert()
        .success()
        .stdout(predicate::str::contains("verified: installed event"));
    let out = e
        .cmd()
        .args([
            "verify-webhook",
            "--json",
            "--secret",
            &e.demo.webhook_secret,
            "--signature",
            &signature,
        ])
        .write_stdin(body.clone())
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["event"], "installed");
    let out = e
        .cmd()
        .args(["verify-webhook", "--secret", "wrong-secret", "--signature", &signature])
        .write_stdin(body.clone())
        .assert()
        .code(1);
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(
        stderr.contains("does not match") && !stderr.contains("wrong-secret"),
        "{stderr}"
    );
    e.cmd()
        .args(["verify-webhook", "--secret", &e.demo.webhook_secret])
        .write_stdin(body)
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--signature is required"));
}

#[test]
fn fingerprint_matches_the_key() {
    let e = env();
    let expected = icr_app_core::AppKey::from_pem(e.demo.private_key_pem)
        .unwrap()
        .fingerprint();
    bare()
        .args(["fingerprint", "--private-key"])
        .arg(e.key.path())
        .assert()
        .success()
        .stdout(format!("{expected}\n"));
}

#[test]
fn mock_serves_the_fake_registry() {
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("icr-app"))
        .args(["mock", "--port", "0"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let base_url = first.rsplit(' ').next().unwrap().to_owned();
    let app_id = lines.next().unwrap().unwrap().rsplit(' ').next().unwrap().to_owned();
    let key_path = lines.next().unwrap().unwrap().rsplit(' ').next().unwrap().to_owned();
    let installations = lines.next().unwrap().unwrap();
    let installation = installations.split_whitespace().nth(1).unwrap().to_owned();
    let out = bare()
        .args([
            "--base-url",
            &base_url,
            "--app-id",
            &app_id,
            "--private-key",
            &key_path,
            "token",
            "--json",
            "--installation",
            &installation,
        ])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert!(v["token"].as_str().unwrap().starts_with("crs_"));
    child.kill().unwrap();
    let _ = child.wait();
}

#[test]
fn exit_codes() {
    // 2: usage.
    bare().assert().code(2);
    bare().arg("--no-such-flag").assert().code(2);
    bare()
        .arg("jwt")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--app-id"));
    bare().args(["token"]).assert().code(2);

    let e = env();
    // 3: the registry refuses a JWT signed with another key, and the message says what to check.
    let other = NamedTempFile::new().unwrap();
    std::fs::write(other.path(), OTHER_PRIVATE_KEY_PEM).unwrap();
    let out = e
        .cmd()
        .arg("--private-key")
        .arg(other.path())
        .args(["token", "--installation", e.installation()])
        .assert()
        .code(3);
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(
        stderr.contains("private key") && stderr.contains("app id") && stderr.contains("clock"),
        "{stderr}"
    );
    e.cmd()
        .args(["--app-id", "not-registered", "installations"])
        .assert()
        .code(3);
    // 4: not found.
    e.cmd()
        .args(["token", "--installation", "00000000-0000-4000-8000-000000000000"])
        .assert()
        .code(4);
    // 5: network (nothing listens) and server failures.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    e.cmd()
        .args(["--base-url", &format!("http://{closed}"), "installations"])
        .assert()
        .code(5)
        .stderr(predicate::str::contains("request failed"));
    e.demo.registry.inject(
        Fault::Status {
            status: 503,
            retry_after: None,
        },
        100,
    );
    e.cmd()
        .args(["token", "--installation", e.installation()])
        .assert()
        .code(5)
        .stderr(predicate::str::contains("503"));
    e.demo.registry.clear_faults();
    // 1: anything else, e.g. a key file that is not a key.
    let bad = NamedTempFile::new().unwrap();
    std::fs::write(
        bad.path(),
        "-----BEGIN EC PRIVATE KEY-----\nAAAA\n-----END EC PRIVATE KEY-----\n",
    )
    .unwrap();
    e.cmd()
        .arg("--private-key")
        .arg(bad.path())
        .arg("jwt")
        .assert()
        .code(1)
        .stderr(predicate::str::contains("EC"));
    e.cmd()
        .args(["--private-key", "/nonexistent/key.pem", "jwt"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("/nonexistent/key.pem"));
    // Plain http to a remote host is refused with the way to allow it.
    e.cmd()
        .args(["--base-url", "http://registry.invalid", "installations"])
        .assert()
        .code(5)
        .stderr(predicate::str::contains("allow"));
}
