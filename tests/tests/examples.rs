//! The `ureq_installation_token` and `reqwest_installation_token` examples, run as processes
//! against the fake registry: the happy path, a registry whose clock is hours off, and one whose
//! first answers are 5xx or 429; failures print a clear error and exit non-zero.

use std::process::{Command, Output};

use icr_app_testkit::{FakeRegistry, Fault};
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
            (vec!["--private-key", "/nonexistent/key.pem"], "/nonexistent/key.pem"),
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
