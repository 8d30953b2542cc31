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
            .env_remove("ICR_ORGANIZATION_ID")
            .env_remove("ICR_REDIS_URL")
            .env_remove("ICR_API_VERSION")
            .env_remove("ICR_TOKEN")
            .env_remove("ICR_TIMEOUT")
            .env_remove("ICR_WEBHOOK_SECRET")
            .env_remove("RUST_LOG");
        c
    }

    fn installation(&self) -> &str {
        &self.demo.installation_ids[0]
    }

    /// The first installation's organization.
    fn organization(&self) -> &str {
        &self.demo.organization_ids[0]
    }
}

fn bare() -> Command {
    let mut c = Command::cargo_bin("icr-app").unwrap();
    // The settings' variables, and the ones only the CLI reads.
    for var in
        icr_app_settings::VARIABLES
            .into_iter()
            .chain(["ICR_TOKEN", "ICR_TIMEOUT", "ICR_WEBHOOK_SECRET", "RUST_LOG"])
    {
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
    // The token alone on stdout (for `> token.txt`), what people read beside it on stderr.
    let out = e
        .cmd()
        .args(["token", "--installation", e.installation()])
        .assert()
        .success()
        .stderr(predicate::str::contains("expires at:").and(predicate::str::contains("organization_info=VIEW")));
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    let token = stdout.strip_suffix('\n').unwrap();
    assert!(
        token.starts_with("crs_") && !token.contains(char::is_whitespace),
        "{stdout}"
    );
    assert!(e.demo.registry.token_is_valid(token));
    // What `token` prints is what `revoke -` reads.
    e.cmd()
        .args(["revoke", "-"])
        .write_stdin(stdout.clone())
        .assert()
        .success();
    assert!(!e.demo.registry.token_is_valid(token));
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
    e.cmd()
        .args(["revoke", "-"])
        .write_stdin(token.clone())
        .assert()
        .success()
        .stdout("revoked\n");
    assert!(!e.demo.registry.token_is_valid(&token));
    let out = e.cmd().arg("revoke").env("ICR_TOKEN", &token).assert().code(3);
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
    let mut mock = MockProcess(
        StdCommand::new(assert_cmd::cargo::cargo_bin("icr-app"))
            .args(["mock", "--port", "0"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let child = &mut mock.0;
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let base_url = first.rsplit(' ').next().unwrap().to_owned();
    let app_id = lines.next().unwrap().unwrap().rsplit(' ').next().unwrap().to_owned();
    let key_path = lines.next().unwrap().unwrap().rsplit(' ').next().unwrap().to_owned();
    let installations = lines.next().unwrap().unwrap();
    let installation = installations.split_whitespace().nth(1).unwrap().to_owned();
    // The export line sets what the CLI, the examples and the quick starts read, the first
    // installation and its organization included.
    let export = lines
        .by_ref()
        .map(Result::unwrap)
        .find(|l| l.starts_with("export "))
        .unwrap();
    let exported: Vec<(String, String)> = export["export ".len()..]
        .split_whitespace()
        .map(|pair| {
            let (name, value) = pair.split_once('=').unwrap();
            (name.to_owned(), value.to_owned())
        })
        .collect();
    let names: Vec<&str> = exported.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "ICR_BASE_URL",
            "ICR_APP_ID",
            "ICR_PRIVATE_KEY",
            "ICR_INSTALLATION_ID",
            "ICR_ORGANIZATION_ID"
        ],
        "{export}"
    );
    assert_eq!(exported[3].1, installation);
    std::thread::spawn(move || lines.for_each(drop));
    let with_exported = || {
        let mut c = bare();
        c.envs(exported.iter().map(|(n, v)| (n, v)));
        c
    };
    // `token` and `call` with no flags but the exported settings.
    let out = with_exported().args(["token", "--json"]).assert().success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert!(v["token"].as_str().unwrap().starts_with("crs_"));
    let organization = &exported[4].1;
    let out = with_exported()
        .args(["call", "GET", &format!("/organizations/{organization}")])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    assert_eq!(v["id"].as_str(), Some(organization.as_str()));
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
    // SIGTERM, not SIGKILL, so the mock removes its key file.
    signal(child, "-TERM");
    assert!(wait_for_exit(child).success());
}

/// Sends `sig` (e.g. `-TERM`) to `child` with kill(1).
fn signal(child: &std::process::Child, sig: &str) {
    let sent = StdCommand::new("kill")
        .args([sig, &child.id().to_string()])
        .status()
        .unwrap();
    assert!(sent.success());
}

/// A mock process that is stopped with SIGTERM when dropped, so a failed test leaves no mock
/// running and no key file behind.
struct MockProcess(std::process::Child);

impl Drop for MockProcess {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            let _ = StdCommand::new("kill")
                .args(["-TERM", &self.0.id().to_string()])
                .status();
            let _ = self.0.wait();
        }
    }
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
    // 2 as well: a key that is not usable is a settings problem.
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
        .code(2)
        .stderr(predicate::str::contains("EC"));
    e.cmd()
        .args(["--private-key", "/nonexistent/key.pem", "jwt"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("private key"));
    // 1: anything else, e.g. a webhook delivery that does not verify (see verify_webhook).
}

/// Fails if `text` holds any secret of the demo app: key text, a JWT, an access token or the
/// webhook secret.
fn assert_no_secret(text: &str) {
    let demo_secret = FakeRegistry::demo().webhook_secret;
    assert!(!text.contains("eyJ"), "a JWT leaked:\n{text}");
    assert!(!regex_like_token(text), "a token leaked:\n{text}");
    assert!(!text.contains(&demo_secret), "the webhook secret leaked:\n{text}");
    assert!(!text.contains("PRIVATE KEY"), "key text leaked:\n{text}");
    let pem = FakeRegistry::demo().private_key_pem;
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        for chunk in line.as_bytes().chunks(16).filter(|c| c.len() == 16) {
            let chunk = std::str::from_utf8(chunk).unwrap();
            assert!(!text.contains(chunk), "private key material leaked: {chunk}");
        }
    }
}

/// stdout and stderr of a finished command, checked for secrets.
fn outputs(out: &assert_cmd::assert::Assert) -> (String, String) {
    let o = out.get_output();
    let (stdout, stderr) = (
        String::from_utf8(o.stdout.clone()).unwrap(),
        String::from_utf8(o.stderr.clone()).unwrap(),
    );
    assert_no_secret(&stderr);
    (stdout, stderr)
}

fn mint(e: &Env) -> String {
    let out = e
        .cmd()
        .args(["token", "--json", "--installation", e.installation()])
        .assert()
        .success();
    let v: serde_json::Value = serde_json::from_slice(&out.get_output().stdout).unwrap();
    v["token"].as_str().unwrap().to_owned()
}

// Item 2: the token to revoke never travels on the command line.
#[test]
fn revoke_reads_the_token_from_stdin_or_icr_token_never_from_argv() {
    let e = env();
    // A token as the argument is refused, without being echoed, and not revoked.
    let token = mint(&e);
    let out = e.cmd().args(["revoke", &token]).assert().code(2);
    let (stdout, stderr) = outputs(&out);
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("standard input") && stderr.contains("ICR_TOKEN") && !stderr.contains(&token[4..]),
        "{stderr}"
    );
    assert!(e.demo.registry.token_is_valid(&token));
    // `-`: from stdin.
    let out = e
        .cmd()
        .args(["revoke", "-"])
        .write_stdin(format!("{token}\n"))
        .assert()
        .success()
        .stdout("revoked\n");
    outputs(&out);
    assert!(!e.demo.registry.token_is_valid(&token));
    // No argument: ICR_TOKEN.
    let token = mint(&e);
    let out = e.cmd().arg("revoke").env("ICR_TOKEN", &token).assert().success();
    outputs(&out);
    assert!(!e.demo.registry.token_is_valid(&token));
    // No argument, no ICR_TOKEN: stdin, when it is not a terminal.
    let token = mint(&e);
    let out = e
        .cmd()
        .args(["revoke", "--json"])
        .write_stdin(token.clone())
        .assert()
        .success();
    outputs(&out);
    assert!(!e.demo.registry.token_is_valid(&token));
    // Nothing on stdin: a usage error.
    e.cmd()
        .arg("revoke")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("no token on standard input"));
    // --help says where the token comes from.
    e.cmd()
        .args(["revoke", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("ICR_TOKEN").and(predicate::str::contains("standard input")));
}

// Item 2: a PEM given as a flag value is read as the key, and an unusable one is never echoed.
#[test]
fn a_pem_flag_is_read_and_never_echoed() {
    let e = env();
    let expected = icr_app_core::AppKey::from_pem(e.demo.private_key_pem)
        .unwrap()
        .fingerprint();
    bare()
        .args(["fingerprint", "--private-key", e.demo.private_key_pem])
        .assert()
        .success()
        .stdout(format!("{expected}\n"));
    bare()
        .args(["--private-key", e.demo.private_key_pem, "fingerprint"])
        .assert()
        .success()
        .stdout(format!("{expected}\n"));
    // Cut short: not a key. The message must not quote any of it.
    let cut = &e.demo.private_key_pem[..e.demo.private_key_pem.len() / 2];
    for args in [
        vec!["fingerprint", "--private-key", cut],
        vec!["--private-key", cut, "fingerprint", "--json"],
    ] {
        let out = bare().args(&args).assert().code(2);
        let (stdout, stderr) = outputs(&out);
        assert!(stdout.is_empty());
        assert!(stderr.contains("private key"), "{stderr}");
    }
    let secret = e.demo.webhook_secret.clone();
    let out = e
        .cmd()
        .args([
            "verify-webhook",
            "--signature",
            "sha256=00",
            "--secret",
            &format!("-{secret}"),
        ])
        .write_stdin("{}")
        .assert()
        .code(1);
    outputs(&out);
}

// Item 7: 2 for anything wrong in the command line or the settings.
#[test]
fn exit_code_2_for_every_command_line_or_settings_problem() {
    let e = env();
    let i = e.installation().to_owned();
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["--app-id", "", "installations"], "app id"),
        (vec!["installations", "--app-id", "  "], "app id"),
        (
            vec!["call", "GET", "projects", "--installation", &i],
            "must start with `/`",
        ),
        (
            vec!["call", "FOO", "/projects", "--installation", &i],
            "GET, POST, PUT, PATCH or DELETE",
        ),
        (vec!["call", "GET", "/projects"], "--installation"),
        (
            vec!["--base-url", "http://registry.invalid", "installations"],
            "--allow-insecure-http",
        ),
        (
            vec!["--base-url", "ftp://registry.invalid", "installations"],
            "base URL",
        ),
        (vec!["--base-url", "not a url", "installations"], "base URL"),
        (vec!["installation", "has space"], "installation id"),
        (vec!["token", "--installation", ".."], "installation id"),
        (vec!["installations", "--timeout", "0"], "--timeout"),
        (vec!["installations", "--timeout", "soon"], "--timeout"),
        (
            vec![
                "token",
                "--installation",
                &i,
                "--redis",
                "redis://127.0.0.1:1",
                "--redis-timeout",
                "soon",
            ],
            "--redis-timeout",
        ),
        (
            vec![
                "token",
                "--installation",
                &i,
                "--redis",
                "redis+sentinel://:hunter2@127.0.0.1:1",
            ],
            "MASTER_NAME",
        ),
    ];
    for (args, says) in cases {
        let out = e.cmd().args(&args).assert().code(2);
        let (_, stderr) = outputs(&out);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("see the message"), "{args:?}: {stderr}");
        assert!(!stderr.contains("retry"), "{args:?}: {stderr}");
    }
    // The same without the environment: a missing key or app id.
    bare()
        .args(["installations", "--app-id", "x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--private-key is required"));
    // The rule is in --help.
    bare().arg("--help").assert().success().stdout(
        predicate::str::contains("Exit codes").and(predicate::str::contains("2  anything wrong in the command line")),
    );
}

/// Accepts connections on loopback and never answers; the listener and its connections live
/// as long as the test process.
fn silent_registry() -> std::net::SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming() {
            held.push(conn);
        }
    });
    addr
}

// Item 8: a registry that never answers.
#[test]
fn a_registry_that_never_answers_times_out_retrying_out_loud() {
    let e = env();
    let addr = silent_registry();
    let base = format!("http://{addr}");
    for (flag, value) in [(true, "1"), (false, "0.5")] {
        let mut cmd = e.cmd();
        cmd.args(["installations", "--base-url", &base]);
        if flag {
            cmd.args(["--timeout", value]);
        } else {
            cmd.env("ICR_TIMEOUT", value);
        }
        let started = std::time::Instant::now();
        let out = cmd.timeout(std::time::Duration::from_secs(60)).assert().code(5);
        let took = started.elapsed();
        let (_, stderr) = outputs(&out);
        assert!(took < std::time::Duration::from_secs(25), "took {took:?}: {stderr}");
        let retries: Vec<&str> = stderr.lines().filter(|l| l.starts_with("retrying: ")).collect();
        assert!(!retries.is_empty(), "no retry line: {stderr}");
        assert!(
            retries[0].contains("(attempt 1 of ") && retries[0].contains("; next try in "),
            "{stderr}"
        );
        assert!(stderr.contains("error: request failed"), "{stderr}");
        // The last word says how to allow more time, in this program's terms.
        let error = stderr.lines().last().unwrap_or_default();
        assert!(
            error.contains("--timeout SECONDS") && error.contains("ICR_TIMEOUT"),
            "{stderr}"
        );
    }
}

// Item 8: -v shows each request from the clients' events; RUST_LOG cannot show the HTTP
// crates' internals (headers).
#[test]
fn verbose_shows_requests_and_rust_log_never_shows_headers() {
    let e = env();
    let out = e
        .cmd()
        .args(["installations", "-v"])
        .env("RUST_LOG", "trace,ureq=trace,ureq_proto=trace,rustls=trace")
        .assert()
        .success();
    let (_, stderr) = outputs(&out);
    assert!(stderr.contains("> GET /app/installations 200 "), "{stderr}");
    assert!(!stderr.to_ascii_lowercase().contains("authorization"), "{stderr}");
    assert!(!stderr.contains("Bearer"), "{stderr}");
    // Without -v, nothing on stderr for a request that works.
    e.cmd().arg("installations").assert().success().stderr("");
}

/// The `error` object of a `--json` failure: stderr is JSON lines (retries first, if any), the
/// last one the error.
fn json_error(out: &assert_cmd::assert::Assert) -> serde_json::Value {
    let (stdout, stderr) = outputs(out);
    assert!(stdout.is_empty(), "{stdout}");
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|err| panic!("{err}: {stderr}")))
        .collect();
    let (last, before) = lines.split_last().unwrap_or_else(|| panic!("no error on stderr"));
    assert!(before.iter().all(|l| l.get("retrying").is_some()), "{stderr}");
    assert!(
        last["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{last}"
    );
    last["error"].clone()
}

// Item 9: --json errors, commands without a JSON form, and call's body.
#[test]
fn json_errors_are_one_object_on_stderr() {
    let e = env();
    let out = e
        .cmd()
        .args(["installation", "--json", "00000000-0000-4000-8000-000000000000"])
        .assert()
        .code(4);
    let err = json_error(&out);
    assert_eq!(
        (err["kind"].as_str(), err["status"].as_u64()),
        (Some("not_found"), Some(404))
    );
    let other = e.demo.registry.organization_id(&e.demo.installation_ids[1]).unwrap();
    let out = e
        .cmd()
        .args([
            "--json",
            "call",
            "GET",
            &format!("/organizations/{other}"),
            "--installation",
            e.installation(),
        ])
        .assert()
        .code(3);
    let err = json_error(&out);
    assert_eq!(
        (err["kind"].as_str(), err["status"].as_u64()),
        (Some("forbidden"), Some(403))
    );
    let other_key = NamedTempFile::new().unwrap();
    std::fs::write(other_key.path(), OTHER_PRIVATE_KEY_PEM).unwrap();
    let out = e
        .cmd()
        .args(["installations", "--json", "--private-key"])
        .arg(other_key.path())
        .assert()
        .code(3);
    assert_eq!(json_error(&out)["kind"], "unauthorized");
    // Usage errors, ours and clap's: no status.
    for args in [
        vec!["token", "--json"],
        vec!["installations", "--json", "--no-such-flag"],
        vec!["call", "FOO", "/projects", "--json", "--installation", "x"],
        vec!["installations", "--json", "--app-id", ""],
    ] {
        let out = e.cmd().args(&args).assert().code(2);
        let err = json_error(&out);
        assert_eq!(err["kind"], "usage", "{args:?}");
        assert!(err.get("status").is_none(), "{args:?}");
    }
    let out = e
        .cmd()
        .args(["fingerprint", "--json", "--private-key", "/nonexistent/key.pem"])
        .assert()
        .code(2);
    assert_eq!(json_error(&out)["kind"], "config");
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let out = e
        .cmd()
        .args(["installations", "--json", "--base-url", &format!("http://{closed}")])
        .assert()
        .code(5);
    let err = json_error(&out);
    assert_eq!(err["kind"], "transport");
    assert!(err.get("status").is_none());
    e.demo.registry.inject(
        Fault::Status {
            status: 503,
            retry_after: None,
        },
        100,
    );
    let out = e.cmd().args(["installations", "--json"]).assert().code(5);
    let err = json_error(&out);
    assert_eq!(
        (err["kind"].as_str(), err["status"].as_u64()),
        (Some("server"), Some(503))
    );
    e.demo.registry.clear_faults();
    // No JSON form: refused, not ignored.
    for args in [
        vec!["demo", "--json"],
        vec!["jwt", "--json"],
        vec!["mock", "--json"],
        vec!["--json", "demo"],
    ] {
        let out = e
            .cmd()
            .args(&args)
            .timeout(std::time::Duration::from_secs(30))
            .assert()
            .code(2);
        let err = json_error(&out);
        assert_eq!(err["kind"], "usage", "{args:?}");
        assert!(err["message"].as_str().unwrap().contains("no JSON output"), "{err}");
    }
    // call prints the body exactly as received when stdout is not a terminal.
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
    let stdout = out.get_output().stdout.clone();
    let v: serde_json::Value = serde_json::from_slice(&stdout).unwrap();
    assert_eq!(String::from_utf8(stdout).unwrap(), serde_json::to_string(&v).unwrap());
}

// Item 9: call pretty-prints JSON when stdout is a terminal (util-linux `script` gives it one).
#[test]
fn call_pretty_prints_json_on_a_terminal() {
    if StdCommand::new("script").arg("--version").output().is_err() {
        eprintln!("skipped: no `script` to run the CLI on a terminal");
        return;
    }
    let e = env();
    let org = e.demo.registry.organization_id(e.installation()).unwrap();
    let bin = assert_cmd::cargo::cargo_bin("icr-app");
    let line = format!(
        "{} call GET /organizations/{org} --installation {}",
        bin.display(),
        e.installation()
    );
    let out = StdCommand::new("script")
        .args(["-qec", &line, "/dev/null"])
        .env("ICR_BASE_URL", e.demo.registry.base_url())
        .env("ICR_APP_ID", &e.demo.app_id)
        .env("ICR_PRIVATE_KEY", e.key.path())
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(out.status.success(), "{stdout}");
    assert!(stdout.contains(&format!("\n  \"id\": \"{org}\"")), "{stdout}");
}

// Item 10: the organization's id beside its name, and 403s that say what the registry said.
#[test]
fn text_output_names_organizations_and_403s_say_what_the_registry_said() {
    let e = env();
    let org = e.demo.registry.organization_id(e.installation()).unwrap();
    e.cmd()
        .arg("installations")
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("({org})")));
    e.cmd()
        .args(["installation", e.installation()])
        .assert()
        .success()
        .stdout(predicate::str::contains(format!("({org})")));
    // Another organization's data: not a permission problem, so no advice about permissions.
    let other = e.demo.registry.organization_id(&e.demo.installation_ids[1]).unwrap();
    let out = e
        .cmd()
        .args([
            "call",
            "GET",
            &format!("/organizations/{other}"),
            "--installation",
            e.installation(),
        ])
        .assert()
        .code(3);
    let (_, stderr) = outputs(&out);
    assert!(
        stderr.contains("403") && stderr.contains("does not belong to that organization"),
        "{stderr}"
    );
    assert!(!stderr.contains("permission"), "{stderr}");
    // A missing permission: the advice.
    let bare_install = e
        .demo
        .registry
        .add_installation(&e.demo.app_id, "No Info Org", &[("projects", "VIEW")]);
    let bare_org = e.demo.registry.organization_id(&bare_install).unwrap();
    let out = e
        .cmd()
        .args([
            "call",
            "GET",
            &format!("/organizations/{bare_org}"),
            "--installation",
            &bare_install,
        ])
        .assert()
        .code(3);
    let (_, stderr) = outputs(&out);
    assert!(
        stderr.contains("Missing permission") && stderr.contains("request the permission"),
        "{stderr}"
    );
}

/// `icr-app mock` started as a process: the child, the key file's path and the base URL.
fn start_mock() -> (MockProcess, std::path::PathBuf, String) {
    let mut child = StdCommand::new(assert_cmd::cargo::cargo_bin("icr-app"))
        .args(["mock", "--port", "0"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut printed = String::new();
    let (mut key, mut base) = (None, None);
    while key.is_none() || base.is_none() {
        let line = lines.next().unwrap().unwrap();
        printed.push_str(&line);
        printed.push('\n');
        if let Some(path) = line.strip_prefix("private key:") {
            key = Some(std::path::PathBuf::from(path.trim()));
        }
        if let Some(url) = line.strip_prefix("fake ICR registry listening on ") {
            base = Some(url.trim().to_owned());
        }
    }
    assert_no_secret(&printed);
    // Keep reading so the mock never blocks on a full pipe.
    std::thread::spawn(move || lines.for_each(drop));
    (MockProcess(child), key.unwrap(), base.unwrap())
}

fn wait_for_exit(child: &mut std::process::Child) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the mock did not stop");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

// Item 11: the mock's key file is private and removed when the mock stops.
#[test]
fn mock_key_file_is_private_and_removed_on_sigterm_and_sigint() {
    use std::os::unix::fs::PermissionsExt as _;
    for signal in ["-TERM", "-INT"] {
        let (mut mock, key, base) = start_mock();
        let dir = key.parent().unwrap().to_owned();
        assert!(
            dir.file_name().unwrap().to_str().unwrap().starts_with("icr-app-mock-"),
            "{}",
            key.display()
        );
        assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
        assert_eq!(std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777, 0o700);
        // The key works against the mock.
        bare()
            .args([
                "installations",
                "--base-url",
                &base,
                "--app-id",
                "d23967cc-dd16-452b-8af4-869965745978",
            ])
            .arg("--private-key")
            .arg(&key)
            .assert()
            .success();
        self::signal(&mock.0, signal);
        let status = wait_for_exit(&mut mock.0);
        assert!(status.success(), "{signal}: {status:?}");
        assert!(!key.exists(), "{signal}: {} is still there", key.display());
        assert!(!dir.exists(), "{signal}: {} is still there", dir.display());
    }
}

// Item 12: each subcommand's help lists only the flags it reads.
#[test]
fn each_subcommand_lists_only_its_flags() {
    let help = |sub: &str| {
        let out = bare().args([sub, "--help"]).assert().success();
        String::from_utf8(out.get_output().stdout.clone()).unwrap()
    };
    let all = [
        "--base-url",
        "--app-id",
        "--private-key",
        "--api-version",
        "--timeout",
        "--json",
        "--verbose",
        "--allow-insecure-http",
        "--installation",
        "--organization",
        "--secret",
        "--port",
    ];
    let expected: [(&str, &[&str]); 10] = [
        ("demo", &["--verbose"]),
        ("mock", &["--port"]),
        ("fingerprint", &["--private-key", "--json"]),
        ("jwt", &["--app-id", "--private-key"]),
        ("verify-webhook", &["--secret", "--json"]),
        (
            "token",
            &[
                "--installation",
                "--organization",
                "--base-url",
                "--app-id",
                "--private-key",
                "--api-version",
                "--timeout",
                "--json",
                "--verbose",
                "--allow-insecure-http",
            ],
        ),
        (
            "installations",
            &[
                "--base-url",
                "--app-id",
                "--private-key",
                "--api-version",
                "--timeout",
                "--json",
                "--verbose",
                "--allow-insecure-http",
            ],
        ),
        (
            "installation",
            &[
                "--organization",
                "--base-url",
                "--app-id",
                "--private-key",
                "--api-version",
                "--timeout",
                "--json",
                "--verbose",
                "--allow-insecure-http",
            ],
        ),
        (
            "revoke",
            &[
                "--installation",
                "--organization",
                "--base-url",
                "--app-id",
                "--private-key",
                "--api-version",
                "--timeout",
                "--json",
                "--verbose",
                "--allow-insecure-http",
            ],
        ),
        (
            "call",
            &[
                "--installation",
                "--organization",
                "--base-url",
                "--app-id",
                "--private-key",
                "--api-version",
                "--timeout",
                "--json",
                "--verbose",
                "--allow-insecure-http",
            ],
        ),
    ];
    for (sub, flags) in expected {
        let text = help(sub);
        for flag in all {
            assert_eq!(
                text.contains(&format!("{flag} ")) || text.contains(&format!("{flag}\n")),
                flags.contains(&flag),
                "{sub} --help and {flag}:\n{text}"
            );
        }
    }
    // A setting from the environment is not shown as a missing flag in the usage line.
    let out = bare()
        .args(["call", "GET"])
        .env("ICR_INSTALLATION_ID", "x")
        .assert()
        .code(2);
    let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
    assert!(
        stderr.contains("<PATH>") && !stderr.contains("--installation <"),
        "{stderr}"
    );
    // ICR_INSTALLATION_ID does not conflict with `token --app`.
    let e = env();
    e.cmd()
        .args(["token", "--app", "--json"])
        .env("ICR_INSTALLATION_ID", e.installation())
        .assert()
        .success();
    // `token` with neither flag names both.
    bare()
        .arg("token")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--installation").and(predicate::str::contains("--app")));
    // Settings before the subcommand still work, and a flag a subcommand does not read is refused.
    e.cmd()
        .args(["--json", "-v", "--timeout", "5", "installations"])
        .assert()
        .success();
    e.cmd().args(["--app-id", "x", "demo"]).assert().code(2);
}

// Item 7 (and the secrets rule): a key, token or anything else given where no argument goes is
// never quoted back, as clap quotes it ("unexpected argument 'MIIEv...' found").
#[test]
fn a_misplaced_argument_is_never_echoed() {
    let e = env();
    let pem = e.demo.private_key_pem;
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    let token = "crs_19c9bd530ccd3e1187eed12dc4edb70abe757fc4c7be9c5b";
    let cases: Vec<Vec<&str>> = vec![
        vec!["fingerprint", &body],
        vec!["fingerprint", "--json", &body],
        vec!["fingerprint", "--", pem],
        vec!["installations", token],
        vec!["installation", "some-id", token],
        vec!["call", "GET", "/projects", token],
        vec![&body],
        vec![token, "installations"],
    ];
    for args in cases {
        let out = bare().args(&args).assert().code(2);
        let (stdout, stderr) = outputs(&out);
        assert!(stdout.is_empty(), "{args:?}");
        assert!(!stderr.contains(token), "{args:?}: {stderr}");
        assert!(!stderr.contains("crs_"), "{args:?}: {stderr}");
        assert!(stderr.contains("characters, not shown"), "{args:?}: {stderr}");
        if args.contains(&"--json") {
            assert_eq!(json_error(&out)["kind"], "usage", "{args:?}");
        } else {
            assert!(stderr.contains("Usage: icr-app"), "{args:?}: {stderr}");
        }
    }
    // A mistyped flag before a key: clap stops at the flag, and the key is not quoted.
    let out = bare().args(["jwt", "--private-ke", &body]).assert().code(2);
    let (_, stderr) = outputs(&out);
    assert!(
        stderr.contains("'--private-ke'") && !stderr.contains(&body[..16]),
        "{stderr}"
    );
    let out = bare().args(["fingerprint", &body]).assert().code(2);
    let chars = body.chars().count();
    assert!(
        outputs(&out)
            .1
            .starts_with(&format!("error: unexpected argument ({chars} characters, not shown")),
        "{chars}"
    );
    // A mistyped flag is still named, with clap's suggestion; so is a mistyped command's match.
    bare()
        .args(["installations", "--app-i", "x"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("'--app-i'").and(predicate::str::contains("'--app-id'")));
    bare()
        .arg("instalations")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("'installations'").and(predicate::str::contains("instalations").not()));
}

// Issue 21, 11: `mock --help` says what the mock prints.
#[test]
fn mock_help_says_what_it_prints() {
    let out = bare().args(["mock", "--help"]).assert().success();
    let stdout = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    for says in [
        "export",
        "ICR_BASE_URL",
        "ICR_APP_ID",
        "ICR_PRIVATE_KEY",
        "ICR_INSTALLATION_ID",
        "ICR_ORGANIZATION_ID",
    ] {
        assert!(stdout.contains(says), "{says}: {stdout}");
    }
}

// Issue 21, 6a: a value a flag does not accept is never quoted back (it may be a token or a key
// given in the wrong place); the message names the flag and what it takes, exit 2.
#[test]
fn a_value_a_flag_refuses_is_never_echoed() {
    let token = "crs_19c9bd530ccd3e1187eed12dc4edb70abe757fc4c7be9c5b";
    let jwt = "eyJhbGciOiJSUzI1NiJ9.eyJpc3MiOiJhcHAtMSJ9.c2lnbmF0dXJlLW9mLXRoZS1qd3QtaGVyZQ";
    let timeout_eq = format!("--timeout={token}");
    let cases: Vec<(Vec<&str>, &str, &str, &str)> = vec![
        (vec!["mock", "--port", token], token, "--port", "a port number"),
        (
            vec!["mock", "--port", "99999999"],
            "99999999",
            "--port",
            "a port number",
        ),
        (vec!["token", "--timeout", jwt], jwt, "--timeout", "a number of seconds"),
        (
            vec!["installations", &timeout_eq],
            token,
            "--timeout",
            "a number of seconds",
        ),
        (
            vec!["--timeout", jwt, "installations"],
            jwt,
            "--timeout",
            "a number of seconds",
        ),
        (
            vec!["token", "--timeout", "7777777"],
            "7777777",
            "--timeout",
            "at most 3600",
        ),
    ];
    for (args, value, flag, expects) in cases {
        for json in [false, true] {
            let mut cmd = bare();
            cmd.args(&args);
            if json {
                cmd.arg("--json");
            }
            let out = cmd.assert().code(2);
            let (stdout, stderr) = outputs(&out);
            assert!(stdout.is_empty(), "{args:?}");
            assert!(!stderr.contains(value), "{args:?}: {stderr}");
            let chars = value.chars().count();
            assert!(
                stderr.contains(flag)
                    && stderr.contains(expects)
                    && stderr.contains(&format!("({chars} characters, not shown")),
                "{args:?}: {stderr}"
            );
            if json {
                assert_eq!(json_error(&out)["kind"], "usage", "{args:?}");
            }
        }
    }
    // An empty value is said to be empty.
    let out = bare().args(["installations", "--timeout="]).assert().code(2);
    assert!(outputs(&out).1.contains("invalid value (empty) for '--timeout"));
}

/// `icr-app ARGS` with standard output a pipe whose reader is already gone: its exit status and
/// stderr.
fn with_closed_stdout(mut cmd: StdCommand) -> (Option<i32>, String) {
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = cmd.stdout(writer).stderr(Stdio::piped()).output().unwrap();
    (out.status.code(), String::from_utf8(out.stderr).unwrap())
}

// Issue 21, 9: a closed stdout (`icr-app token | true`) ends the command quietly, with the
// status a shell gives a program stopped by SIGPIPE (documented in --help and the README).
#[test]
fn a_closed_stdout_ends_the_command_quietly_with_141() {
    let e = env();
    let i = e.installation().to_owned();
    let org = e.demo.registry.organization_id(&i).unwrap();
    let key = e.key.path().to_str().unwrap().to_owned();
    let org_path = format!("/organizations/{org}");
    let commands: Vec<Vec<&str>> = vec![
        vec!["demo"],
        vec!["token", "--installation", &i],
        vec!["token", "--json", "--installation", &i],
        vec!["installations"],
        vec!["installations", "--json"],
        vec!["installation", &i],
        vec!["call", "GET", &org_path, "--installation", &i],
        vec!["jwt"],
        vec!["fingerprint", "--private-key", &key],
    ];
    for args in commands {
        let mut cmd = StdCommand::new(assert_cmd::cargo::cargo_bin("icr-app"));
        cmd.args(&args)
            .env("ICR_BASE_URL", e.demo.registry.base_url())
            .env("ICR_APP_ID", &e.demo.app_id)
            .env("ICR_PRIVATE_KEY", e.key.path())
            .env("RUST_BACKTRACE", "1")
            .env_remove("RUST_LOG");
        let (code, stderr) = with_closed_stdout(cmd);
        assert_eq!(code, Some(141), "{args:?}: {stderr}");
        for never in ["panicked", "Broken pipe", "error", "backtrace"] {
            assert!(!stderr.contains(never), "{args:?}: {stderr}");
        }
    }
    // `revoke` reads the token from stdin, then prints.
    let token = mint(&e);
    let mut cmd = StdCommand::new(assert_cmd::cargo::cargo_bin("icr-app"));
    cmd.args(["revoke"])
        .env("ICR_BASE_URL", e.demo.registry.base_url())
        .env("ICR_APP_ID", &e.demo.app_id)
        .env("ICR_PRIVATE_KEY", e.key.path())
        .env("ICR_TOKEN", &token);
    let (code, stderr) = with_closed_stdout(cmd);
    assert_eq!(code, Some(141), "{stderr}");
    assert!(!e.demo.registry.token_is_valid(&token), "revoked before printing");

    // The mock stops as well, and removes its key file.
    let tmp = tempfile::tempdir().unwrap();
    let mut cmd = StdCommand::new(assert_cmd::cargo::cargo_bin("icr-app"));
    cmd.args(["mock"]).env("TMPDIR", tmp.path());
    let (code, stderr) = with_closed_stdout(cmd);
    assert_eq!(code, Some(141), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert_eq!(
        std::fs::read_dir(tmp.path()).unwrap().count(),
        0,
        "the mock left its key behind"
    );
}

/// The lines of `stderr` a span closing wrote: `LEVEL target: name{fields} closed after N ms`.
fn span_lines<'a>(stderr: &'a str, name: &str) -> Vec<&'a str> {
    let start = format!("DEBUG icr_app: {name}{{");
    stderr
        .lines()
        .filter(|l| l.starts_with(&start) && l.contains("} closed after ") && l.ends_with(" ms"))
        .collect()
}

// Issue 21, 8: RUST_LOG shows what it asks for, the core's spans included, and never a secret
// nor a line of the HTTP crates.
#[test]
fn rust_log_shows_the_cores_spans_and_never_a_secret() {
    let e = env();
    let i = e.installation().to_owned();
    for rust_log in [
        "trace",
        "debug",
        "icr_app=debug",
        "trace,ureq=trace,hyper=trace,rustls=trace,[mint]=trace",
    ] {
        let run = |args: &[&str], stdin: Option<String>| {
            let mut cmd = e.cmd();
            cmd.args(args).env("RUST_LOG", rust_log);
            if let Some(stdin) = stdin {
                cmd.write_stdin(stdin);
            }
            let out = cmd.assert().success();
            let (stdout, stderr) = outputs(&out);
            for line in stderr.lines() {
                let target = line.split_whitespace().nth(1).unwrap_or_default();
                for http in ["ureq", "hyper", "rustls", "h2", "reqwest"] {
                    assert!(!target.starts_with(http), "{rust_log}: {line}");
                }
            }
            assert!(!stderr.to_ascii_lowercase().contains("authorization"), "{stderr}");
            assert!(!stderr.contains("Bearer"), "{stderr}");
            (stdout, stderr)
        };
        let (token, stderr) = run(&["token", "--installation", &i], None);
        assert!(!stderr.contains(token.trim()), "the token leaked: {stderr}");
        let mint = span_lines(&stderr, "mint");
        assert_eq!(mint.len(), 1, "{rust_log}: {stderr}");
        assert!(
            mint[0].contains(&format!("scope=\"installation {i}\""))
                && mint[0].contains("attempt=1")
                && mint[0].contains("source=registry")
                && mint[0].contains("duration_ms="),
            "{rust_log}: {stderr}"
        );
        let (_, stderr) = run(&["installations"], None);
        assert!(!span_lines(&stderr, "call").is_empty(), "{rust_log}: {stderr}");
        let (_, stderr) = run(&["call", "GET", "/projects", "--installation", &i], None);
        let send_as = span_lines(&stderr, "send_as");
        assert!(
            send_as.len() == 1 && send_as[0].contains("method=GET") && send_as[0].contains("status=200"),
            "{rust_log}: {stderr}"
        );
        let (_, stderr) = run(&["revoke", "-"], Some(token));
        let revoke = span_lines(&stderr, "revoke");
        assert!(
            revoke.len() == 1 && revoke[0].contains("status=200"),
            "{rust_log}: {stderr}"
        );
    }
    // A level below DEBUG for icr_app shows no span, and a request that works prints nothing.
    for rust_log in ["icr_app=info", "info", "warn,icr_app=info"] {
        e.cmd()
            .args(["token", "--installation", &i])
            .env("RUST_LOG", rust_log)
            .assert()
            .success()
            .stderr(
                predicate::str::contains("closed after")
                    .not()
                    .and(predicate::str::contains("> POST").not()),
            );
    }
    // -v still shows each request, with or without RUST_LOG, and so do the spans.
    for rust_log in [None, Some("info"), Some("icr_app=warn")] {
        let mut cmd = e.cmd();
        cmd.args(["token", "-v", "--installation", &i]);
        if let Some(rust_log) = rust_log {
            cmd.env("RUST_LOG", rust_log);
        }
        let out = cmd.assert().success();
        let (_, stderr) = outputs(&out);
        assert!(
            stderr.contains(&format!("> POST /app/installations/{i}/accessTokens 200 ")),
            "{rust_log:?}: {stderr}"
        );
        assert_eq!(span_lines(&stderr, "mint").len(), 1, "{rust_log:?}: {stderr}");
    }
    // With --json, a span is one JSON line.
    let out = e
        .cmd()
        .args(["token", "--json", "--installation", &i])
        .env("RUST_LOG", "debug")
        .assert()
        .success();
    let (_, stderr) = outputs(&out);
    let spans: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("span").is_some())
        .collect();
    assert!(
        spans
            .iter()
            .any(|v| v["span"]["name"] == "mint" && v["span"]["fields"]["source"] == "registry"),
        "{stderr}"
    );
}

/// The stdout of a successful run, as JSON.
fn json_out(cmd: &mut Command) -> serde_json::Value {
    let out = cmd.assert().success();
    serde_json::from_slice(&out.get_output().stdout).unwrap()
}

// Issue 22: `installation --organization ORG`, and `--organization ORG` (or ICR_ORGANIZATION_ID)
// wherever an installation is taken.
#[test]
fn installation_by_organization() {
    let e = env();
    let org = e.organization();
    e.cmd()
        .args(["installation", "--organization", org])
        .assert()
        .success()
        .stdout(
            predicate::str::starts_with(format!("{}  ", e.installation()))
                .and(predicate::str::contains(format!("Nordic Peatland Restoration ({org})"))),
        );
    assert_eq!(e.demo.registry.lookup_count(org), 1);
    let v = json_out(e.cmd().args(["installation", "--json", "--organization", org]));
    assert_eq!(v["id"], e.installation());
    assert_eq!(v["organization"]["id"], org);
    // ICR_ORGANIZATION_ID in place of the flag.
    let v = json_out(e.cmd().args(["installation", "--json"]).env("ICR_ORGANIZATION_ID", org));
    assert_eq!(v["id"], e.installation());
    assert_eq!(e.demo.registry.lookup_count(org), 3);
    // A flag wins over both variables: the mock exports ICR_INSTALLATION_ID beside it.
    let other = &e.demo.organization_ids[1];
    let v = json_out(
        e.cmd()
            .args(["installation", "--json", "--organization", other])
            .env("ICR_INSTALLATION_ID", e.installation())
            .env("ICR_ORGANIZATION_ID", org),
    );
    assert_eq!(v["id"], e.demo.installation_ids[1].as_str());
    // With both variables and no flag, the installation id is used, as before (no lookup).
    let v = json_out(
        e.cmd()
            .args(["installation", "--json"])
            .env("ICR_INSTALLATION_ID", &e.demo.installation_ids[2])
            .env("ICR_ORGANIZATION_ID", org),
    );
    assert_eq!(v["id"], e.demo.installation_ids[2].as_str());
    assert_eq!(e.demo.registry.lookup_count(org), 3);
}

#[test]
fn token_by_organization_is_the_installations_token() {
    let e = env();
    let org = e.organization();
    // One process: one lookup, one mint, for the organization's installation.
    let out = e.cmd().args(["token", "--organization", org]).assert().success();
    let token = String::from_utf8(out.get_output().stdout.clone()).unwrap();
    assert!(e.demo.registry.token_is_valid(token.trim()));
    assert_eq!(e.demo.registry.lookup_count(org), 1);
    assert_eq!(e.demo.registry.mint_count(e.installation()), 1);
    let v = json_out(e.cmd().args(["token", "--json"]).env("ICR_ORGANIZATION_ID", org));
    assert!(e.demo.registry.token_is_valid(v["token"].as_str().unwrap()));
    assert_eq!(e.demo.registry.mint_count(e.installation()), 2);

    // Processes sharing tokens through Redis: the token by organization is the token by
    // installation id, minted once.
    let redis = icr_app_testkit::RedisServer::start();
    let e = env();
    let org = e.organization();
    let shared = |args: &[&str]| json_out(e.cmd().args(args).env("ICR_REDIS_URL", redis.url()));
    let by_org = shared(&["token", "--json", "--organization", org]);
    let by_id = shared(&["token", "--json", "--installation", e.installation()]);
    let by_org_again = shared(&["token", "--json", "--organization", org]);
    assert_eq!(by_org["token"], by_id["token"]);
    assert_eq!(by_org["token"], by_org_again["token"]);
    assert_eq!(e.demo.registry.mint_count(e.installation()), 1);
    // The last process read the organization's installation from Redis too.
    assert_eq!(e.demo.registry.lookup_count(org), 1);
}

#[test]
fn call_by_organization() {
    let e = env();
    let org = e.organization();
    let path = format!("/organizations/{org}");
    let v = json_out(e.cmd().args(["call", "GET", &path, "--organization", org]));
    assert_eq!(v["id"], org);
    let v = json_out(e.cmd().args(["call", "GET", &path]).env("ICR_ORGANIZATION_ID", org));
    assert_eq!(v["id"], org);
    // Another organization's installation may not read this one: 403.
    e.cmd()
        .args(["call", "GET", &path, "--organization", &e.demo.organization_ids[1]])
        .assert()
        .code(3)
        .stderr(predicate::str::contains("403"));
}

#[test]
fn organization_and_installation_together_or_an_organization_without_the_app() {
    let e = env();
    let org = e.organization();
    let path = format!("/organizations/{org}");
    for args in [
        &["token", "--installation", e.installation(), "--organization", org][..],
        &[
            "call",
            "GET",
            &path,
            "--installation",
            e.installation(),
            "--organization",
            org,
        ],
        &["installation", e.installation(), "--organization", org],
    ] {
        let out = e.cmd().args(args).assert().code(2);
        let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
        assert!(
            stderr.contains("--organization") && stderr.contains("give one of them"),
            "{args:?}: {stderr}"
        );
    }
    e.cmd().args(["token", "--app", "--organization", org]).assert().code(2);
    assert_eq!(e.demo.registry.lookup_count(org), 0);
    assert_eq!(e.demo.registry.mint_count(e.installation()), 0);

    // An organization the app is not installed on: exit 4, saying so, by every command.
    let nowhere = "00000000-0000-4000-8000-00000000abcd";
    for args in [
        &["installation", "--organization", nowhere][..],
        &["token", "--organization", nowhere],
        &["call", "GET", "/projects", "--organization", nowhere],
    ] {
        let out = e.cmd().args(args).assert().code(4);
        let stderr = String::from_utf8(out.get_output().stderr.clone()).unwrap();
        assert!(
            stderr.contains("not installed on organization") && stderr.contains(nowhere),
            "{args:?}: {stderr}"
        );
    }
    let out = e
        .cmd()
        .args(["installation", "--json", "--organization", nowhere])
        .assert()
        .code(4);
    let v = json_error(&out);
    assert_eq!(
        (v["kind"].as_str(), v["status"].as_u64()),
        (Some("not_found"), Some(404))
    );
    // Neither an installation nor an organization: a usage error naming both.
    bare()
        .arg("installation")
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--organization").and(predicate::str::contains("ICR_ORGANIZATION_ID")));
}
