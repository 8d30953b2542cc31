//! The examples of both clients, run as processes against the fake registry.
//!
//! `ureq_installation_token` and `reqwest_installation_token`: the happy path, a registry whose
//! clock is hours off, and one whose first answers are 5xx or 429; failures print a clear error
//! and exit non-zero.
//!
//! `ureq_quickstart` and `reqwest_quickstart` (the README's two Rust programs, byte for byte, see
//! `readme.rs`): run as a user runs them, settings in the environment and the key in a file; a
//! value of `ICR_PRIVATE_KEY` they cannot read is never quoted.
//!
//! Every example that takes flags prints its usage on `--help` and `-h`, and exits 0.

use std::path::Path;
use std::process::{Command, Output};

use icr_app_e2e::{build_example, cargo_example, without_settings};
use icr_app_testkit::{FakeRegistry, Fault, TokenStatus, assert_not_echoed};
/// A private key written to a temporary file, removed on drop.
struct KeyFile(std::path::PathBuf);

impl KeyFile {
    fn new(pem: &str) -> Self {
        let path = std::env::temp_dir().join(format!(
            "icr-e2e-key-{}-{:?}.pem",
            std::process::id(),
            std::thread::current().id()
        ));
        std::fs::write(&path, pem).unwrap();
        Self(path)
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

fn run((package, example): (&str, &str), args: &[&str], envs: &[(&str, &str)]) -> Output {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.args(["run", "-q", "-p", package, "--example", example, "--"])
        .args(args);
    for var in ["ICR_BASE_URL", "ICR_APP_ID", "ICR_PRIVATE_KEY", "ICR_INSTALLATION_ID"] {
        cmd.env_remove(var);
    }
    cmd.envs(envs.iter().copied());
    cmd.output().unwrap()
}

/// Runs a built example with exactly `envs` of the `ICR_*` settings.
fn run_binary(binary: &Path, envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(binary);
    without_settings(&mut cmd);
    cmd.envs(envs.iter().copied());
    cmd.output().unwrap()
}

fn check_token(out: &Output, registry: &FakeRegistry) {
    assert!(out.status.success(), "stderr: {}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    let token = v["token"].as_str().unwrap();
    assert!(registry.token_is_valid(token));
    assert!(v["expiresAt"].as_str().unwrap().ends_with('Z'));
    assert_eq!(v["permissions"]["organization_info"], "VIEW");
}

#[test]
fn both_examples_mint_through_flags_and_environment() {
    for package in [
        ("icr-app-ureq", "ureq_installation_token"),
        ("icr-app-reqwest", "reqwest_installation_token"),
    ] {
        let demo = FakeRegistry::demo();
        let key = KeyFile::new(demo.private_key_pem);
        let key_path = key.0.to_str().unwrap();
        let base = demo.registry.base_url();
        let id = demo.installation_ids[0].as_str();

        let out = run(
            package,
            &[
                "--base-url",
                &base,
                "--app-id",
                &demo.app_id,
                "--private-key",
                key_path,
                "--installation",
                id,
            ],
            &[],
        );
        check_token(&out, &demo.registry);

        // Environment fallbacks, with the PEM itself in ICR_PRIVATE_KEY.
        let env = [
            ("ICR_BASE_URL", base.as_str()),
            ("ICR_APP_ID", demo.app_id.as_str()),
            ("ICR_PRIVATE_KEY", demo.private_key_pem),
            ("ICR_INSTALLATION_ID", id),
        ];
        check_token(&run(package, &[], &env), &demo.registry);

        // A registry clock three hours off, either way.
        for offset in [3 * 3600, -3 * 3600] {
            demo.registry.set_clock_offset(offset);
            check_token(&run(package, &[], &env), &demo.registry);
        }
        demo.registry.set_clock_offset(0);

        // First answers 503 and 429.
        demo.registry.inject(
            Fault::Status {
                status: 503,
                retry_after: None,
            },
            2,
        );
        demo.registry.inject(
            Fault::Status {
                status: 429,
                retry_after: Some(1),
            },
            1,
        );
        check_token(&run(package, &[], &env), &demo.registry);

        // Failures: a clear message on stderr, a non-zero exit, never a panic.
        for (args, expect) in [
            (vec!["--installation", "00000000-0000-4000-8000-000000000000"], "404"),
            (vec!["--private-key", "/nonexistent/key.pem"], "no such file"),
            (vec!["--app-id", "someone-else"], "401"),
            (vec!["--bogus", "x"], "unknown flag"),
        ] {
            let out = run(package, &args, &env);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?}");
            assert!(
                stderr.contains(expect) && !stderr.contains("panicked"),
                "{args:?}: {stderr}"
            );
            assert!(out.stdout.is_empty());
        }
        let out = run(package, &[], &[("ICR_APP_ID", "x")]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("ICR_PRIVATE_KEY"));
    }
}

#[test]
fn quickstart_examples_run_against_the_demo_registry() {
    for example in [
        ("icr-app-ureq", "ureq_quickstart"),
        ("icr-app-reqwest", "reqwest_quickstart"),
    ] {
        let binary = build_example(example.0, example.1, None);
        let demo = FakeRegistry::demo();
        let key = KeyFile::new(demo.private_key_pem);
        let base = demo.registry.base_url();
        let id = demo.installation_ids[0].as_str();
        let env = [
            ("ICR_BASE_URL", base.as_str()),
            ("ICR_APP_ID", demo.app_id.as_str()),
            ("ICR_PRIVATE_KEY", key.0.to_str().unwrap()),
            ("ICR_INSTALLATION_ID", id),
        ];
        let out = run_binary(&binary, &env);
        let stdout = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{example:?}: {stdout}{stderr}");
        assert!(stderr.is_empty(), "{example:?}: {stderr}");

        let lines: Vec<&str> = stdout.lines().collect();
        let expires = lines[0]
            .strip_prefix(&format!("token for {id} expires "))
            .unwrap_or_else(|| panic!("{example:?}: {stdout}"));
        assert!(expires.ends_with('Z') && expires.len() >= 20, "{expires}");
        assert_eq!(
            lines[1..],
            [
                "project Sample project 1".to_owned(),
                "project Sample project 2".to_owned(),
                "project Sample project 3".to_owned(),
                format!("installation {} Nordic Peatland Restoration", demo.installation_ids[0]),
                format!(
                    "installation {} Andes Reforestation Cooperative",
                    demo.installation_ids[1]
                ),
                format!("installation {} Blue Carbon Mangroves", demo.installation_ids[2]),
                "revoked 1 token(s)".to_owned(),
            ],
            "{example:?}"
        );
        assert!(!stdout.contains("crs_"), "the token itself is never printed");

        // One mint, used for the projects call, then revoked.
        assert_eq!(demo.registry.mint_count(id), 1);
        let requests = demo.registry.requests();
        let projects = requests
            .iter()
            .find(|r| r.method == "GET" && r.path == "/projects?limit=10&page=0")
            .expect("GET /projects");
        let token = projects
            .header("authorization")
            .unwrap()
            .strip_prefix("Bearer ")
            .unwrap();
        assert_eq!(demo.registry.token_status(token), TokenStatus::Revoked);

        // Failures: a message naming what is wrong, a non-zero exit, nothing on stdout.
        for (change, expect) in [
            (("ICR_APP_ID", "someone-else"), "Unauthorized"),
            (
                ("ICR_INSTALLATION_ID", "00000000-0000-4000-8000-000000000000"),
                "NotFound",
            ),
        ] {
            let env: Vec<_> = env
                .iter()
                .map(|&(k, v)| if k == change.0 { change } else { (k, v) })
                .collect();
            let out = run_binary(&binary, &env);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{change:?}");
            assert!(
                stderr.contains(expect) && !stderr.contains("panicked"),
                "{change:?}: {stderr}"
            );
            assert!(out.stdout.is_empty(), "{change:?}");
        }
        let out = run_binary(&binary, &env[..2]);
        assert!(!out.status.success());
        assert!(String::from_utf8_lossy(&out.stderr).contains("ICR_PRIVATE_KEY is not set"));

        // ICR_PRIVATE_KEY holding something other than a path (these programs read a key file):
        // a missing file, the key itself base64-encoded (the PEM's body, base64 of its DER), a
        // token pasted by mistake. The message names the variable and what it should hold, and
        // never quotes the value.
        let missing = std::env::temp_dir().join("icr-e2e-no-such-key-0123456789abcdef.pem");
        let base64_key: String = demo
            .private_key_pem
            .lines()
            .filter(|l| !l.starts_with("-----"))
            .collect();
        let token = "crs_19c9bd530ccd3e1187eed12dc4edb70abe757fc4c7be9c5b";
        for value in [missing.to_str().unwrap(), base64_key.as_str(), token] {
            let env: Vec<_> = env
                .iter()
                .map(|&(k, v)| if k == "ICR_PRIVATE_KEY" { (k, value) } else { (k, v) })
                .collect();
            let out = run_binary(&binary, &env);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{example:?}: {stderr}");
            assert!(out.stdout.is_empty(), "{example:?}");
            assert!(
                stderr.contains("ICR_PRIVATE_KEY names no readable file") && stderr.contains("path"),
                "{example:?}: {stderr}"
            );
            assert_not_echoed(value, &stderr);
        }
    }
}

#[test]
fn examples_that_take_flags_print_their_usage_on_help() {
    for (package, example, features) in [
        ("icr-app-ureq", "ureq_installation_token", None),
        ("icr-app-reqwest", "reqwest_installation_token", None),
        ("icr-app-ureq", "ureq_middleware_auth", None),
        ("icr-app-reqwest", "reqwest_middleware_auth", Some("middleware")),
        ("icr-app-core", "jwt", None),
    ] {
        for help in ["--help", "-h"] {
            // No settings at all: help needs none, and nothing is sent.
            let out = cargo_example(package, example, features)
                .args(["--", help])
                .output()
                .unwrap();
            let (stdout, stderr) = (
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
            );
            assert_eq!(out.status.code(), Some(0), "{example} {help}: {stdout}{stderr}");
            assert!(
                stdout.to_lowercase().contains(&format!("usage: {example} "))
                    && stdout.contains("--app-id")
                    && stdout.contains("--private-key"),
                "{example} {help}: {stdout}"
            );
        }
    }
}
