//! `core/examples/std_driver.rs` (the core driven with the standard library alone: HTTP/1.1 over
//! a `TcpStream`) run as a process against the fake registry: it mints through flags and through
//! the environment, against a registry clock hours off, through 503, a dropped connection and
//! 429 with `Retry-After`; failures print the core's message on stderr with a non-zero exit and
//! never a credential.
//!
//! Every case runs twice: against the Rust example and against `bindings/c/examples/installation_token.c`,
//! the C ABI's sans-IO layer driven over libcurl, which takes the same flags and environment,
//! prints the same line and exits the same way (it speaks TLS, so the two differ only where
//! std_driver refuses `https://`).
//!
//! Each example is built once and its binary run directly: a `cargo run` per case would cost
//! more than the cases themselves. The C one needs a C compiler and libcurl's headers
//! (`libcurl4-openssl-dev`, which `./run-tests` installs when missing).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;
use std::time::Duration;

use icr_app_e2e::without_settings;
use icr_app_testkit::{FakeRegistry, Fault, RecordedRequest};

/// A key the fake registry's demo app does not know: JWTs signed with it are refused.
const OTHER_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../core/tests/fixtures/keys/rsa2048-pkcs8.pem"
);
const UNKNOWN_INSTALLATION: &str = "00000000-0000-4000-8000-000000000000";

/// The two drivers every case runs.
#[derive(Clone, Copy, Debug)]
enum Driver {
    /// `core/examples/std_driver.rs`.
    Rust,
    /// `bindings/c/examples/installation_token.c` over libicr_app and libcurl.
    C,
}

const DRIVERS: [Driver; 2] = [Driver::Rust, Driver::C];

impl Driver {
    fn binary(self) -> &'static Path {
        match self {
            Driver::Rust => rust_driver(),
            Driver::C => c_driver(),
        }
    }

    /// The program's name in its usage line.
    fn name(self) -> &'static str {
        match self {
            Driver::Rust => "std_driver",
            Driver::C => "installation_token",
        }
    }

    /// What it says for a registry it reaches over `https://` that answers plain HTTP:
    /// std_driver speaks no TLS; libcurl's handshake fails (a connection failure, retried).
    fn https_to_plain_http(self) -> &'static str {
        match self {
            Driver::Rust => "std_driver has no TLS",
            Driver::C => "check the base URL, the network and any proxy",
        }
    }
}

/// The profile's directory (`target/<profile>`): the test binary is
/// `target/<profile>/deps/std_driver-<hash>`.
fn profile_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().unwrap().parent().unwrap().to_path_buf()
}

/// Builds libicr_app (a no-op when up to date), then compiles the C example against it with
/// exactly the README's command (plus an rpath, so that it runs from anywhere); once.
fn c_driver() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "icr-app-ffi"])
            .status()
            .unwrap();
        assert!(status.success(), "cargo build -p icr-app-ffi");
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let lib_dir = profile_dir();
        let exe = lib_dir.join("examples").join("installation_token_c");
        std::fs::create_dir_all(exe.parent().unwrap()).unwrap();
        let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
        let out = Command::new(&cc)
            .arg("-std=c99")
            .arg("-I")
            .arg(root.join("bindings/c/include"))
            .arg(root.join("bindings/c/examples/installation_token.c"))
            .arg("-L")
            .arg(&lib_dir)
            .arg(format!("-Wl,-rpath,{}", lib_dir.display()))
            .args(["-licr_app", "-lcurl", "-o"])
            .arg(&exe)
            .output()
            .unwrap_or_else(|e| panic!("cannot run `{cc}` to build the C example: {e}; install a C compiler"));
        assert!(
            out.status.success(),
            "compiling bindings/c/examples/installation_token.c failed (libcurl's headers come with libcurl4-openssl-dev, which ./run-tests installs):\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
        exe
    })
}

/// Builds the Rust example once (a no-op when it is up to date) and returns its binary.
fn rust_driver() -> &'static Path {
    static BINARY: OnceLock<PathBuf> = OnceLock::new();
    BINARY.get_or_init(|| {
        let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
        let status = Command::new(cargo)
            .args(["build", "-q", "-p", "icr-app-core", "--example", "std_driver"])
            .status()
            .unwrap();
        assert!(status.success(), "cargo build --example std_driver");
        profile_dir()
            .join("examples")
            .join(format!("std_driver{}", std::env::consts::EXE_SUFFIX))
    })
}

/// Runs `driver` with `args` and exactly `envs` of the `ICR_*` settings.
fn run(driver: Driver, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(driver.binary());
    without_settings(&mut cmd);
    cmd.args(args).envs(envs.iter().copied());
    cmd.output().unwrap()
}

/// A private key written to a temporary file, removed on drop.
struct KeyFile(PathBuf);

impl KeyFile {
    fn new(pem: &str, label: &str) -> Self {
        let name = format!("icr-e2e-std-driver-{}-{label}.pem", std::process::id());
        let path = std::env::temp_dir().join(name);
        std::fs::write(&path, pem).unwrap();
        Self(path)
    }

    fn path(&self) -> &str {
        self.0.to_str().unwrap()
    }
}

impl Drop for KeyFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The demo registry and the settings that reach it, as environment variables.
struct Setup {
    demo: icr_app_testkit::Demo,
    base_url: String,
}

impl Setup {
    fn new() -> Self {
        let demo = FakeRegistry::demo();
        let base_url = demo.registry.base_url();
        Self { demo, base_url }
    }

    fn registry(&self) -> &FakeRegistry {
        &self.demo.registry
    }

    fn env(&self) -> [(&str, &str); 4] {
        [
            ("ICR_BASE_URL", self.base_url.as_str()),
            ("ICR_APP_ID", self.demo.app_id.as_str()),
            ("ICR_PRIVATE_KEY", self.demo.private_key_pem),
            ("ICR_INSTALLATION_ID", self.demo.installation_ids[0].as_str()),
        ]
    }

    /// The statuses the registry answered the mints with, oldest first; forgets them.
    fn mint_statuses(&self) -> Vec<u16> {
        let requests: Vec<RecordedRequest> = self.registry().take_requests();
        requests
            .iter()
            .filter(|r| r.method == "POST" && r.path.ends_with("/accessTokens"))
            .map(|r| r.status)
            .collect()
    }
}

/// A success: one line of JSON on stdout with a token the registry accepts, nothing on stderr.
fn check_token(out: &Output, registry: &FakeRegistry) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    assert!(stderr.is_empty(), "{stderr}");
    let stdout = String::from_utf8(out.stdout.clone()).unwrap();
    assert_eq!(stdout.lines().count(), 1, "{stdout}");
    let v: serde_json::Value = serde_json::from_str(&stdout).unwrap();
    assert!(registry.token_is_valid(v["token"].as_str().unwrap()), "{stdout}");
    assert!(v["expiresAt"].as_str().unwrap().ends_with('Z'), "{stdout}");
    assert_eq!(v["permissions"]["organization_info"], "VIEW", "{stdout}");
    assert_eq!(
        v.as_object().unwrap().len(),
        3,
        "token, expiresAt, permissions: {stdout}"
    );
}

/// A failure: a non-zero exit, nothing on stdout, `expect` on stderr, no panic, no credential.
fn check_failure(out: &Output, expect: &str) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "{expect}: {stderr}");
    assert!(
        out.stdout.is_empty(),
        "{expect}: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert!(stderr.starts_with("error: "), "{stderr}");
    assert!(stderr.contains(expect), "expected `{expect}` in: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    for secret in ["crs_", "eyJ", "PRIVATE KEY", "Bearer"] {
        assert!(!stderr.contains(secret), "`{secret}` in: {stderr}");
    }
    stderr
}

#[test]
fn mints_through_flags_and_through_the_environment() {
    for driver in DRIVERS {
        let setup = Setup::new();
        let key = KeyFile::new(setup.demo.private_key_pem, driver.name());
        let id = setup.demo.installation_ids[1].as_str();
        let args = [
            "--base-url",
            &setup.base_url,
            "--app-id",
            &setup.demo.app_id,
            "--private-key",
            key.path(),
            "--installation",
            id,
        ];
        check_token(&run(driver, &args, &[]), setup.registry());
        assert_eq!(setup.registry().mint_count(id), 1, "{driver:?}");
        assert_eq!(setup.mint_statuses(), [200], "{driver:?}");

        // Environment fallbacks, with the PEM itself in ICR_PRIVATE_KEY.
        check_token(&run(driver, &[], &setup.env()), setup.registry());
        assert_eq!(setup.registry().mint_count(&setup.demo.installation_ids[0]), 1);

        // --help: the usage on stdout, exit 0, nothing sent.
        let out = run(driver, &["--help"], &[]);
        assert!(out.status.success());
        let usage = String::from_utf8(out.stdout).unwrap();
        assert!(
            usage.starts_with(&format!("usage: {}", driver.name())) && usage.contains("ICR_PRIVATE_KEY"),
            "{usage}"
        );
    }
}

#[test]
fn mints_against_a_registry_clock_hours_off() {
    for driver in DRIVERS {
        let setup = Setup::new();
        for offset in [3 * 3600, -3 * 3600] {
            setup.registry().set_clock_offset(offset);
            check_token(&run(driver, &[], &setup.env()), setup.registry());
            // The first JWT is refused for the skew; the registry's `Date` header, kept by the
            // driver, lets the core sign a second one on the registry's clock.
            assert_eq!(setup.mint_statuses(), [401, 200], "{driver:?}, offset {offset} s");
        }
    }
}

#[test]
fn retries_503_a_dropped_connection_and_429_with_retry_after() {
    for driver in DRIVERS {
        let setup = Setup::new();
        let mints = "/app/installations/";
        let busy = |status, retry_after| Fault::Status { status, retry_after };
        setup.registry().inject_for(mints, busy(503, None), 1);
        setup.registry().inject_for(mints, Fault::DropConnection, 1);
        setup.registry().inject_for(mints, busy(429, Some(1)), 1);
        check_token(&run(driver, &[], &setup.env()), setup.registry());

        let requests = setup.registry().take_requests();
        let statuses: Vec<u16> = requests.iter().map(|r| r.status).collect();
        // The dropped connection was never answered (status 0): the driver reported a failure.
        assert_eq!(statuses, [503, 0, 429, 200], "{driver:?}");
        let waited = requests[3].at.duration_since(requests[2].at).unwrap();
        assert!(
            waited >= Duration::from_millis(950),
            "{driver:?}: Retry-After: 1 honoured, waited {waited:?}"
        );
    }
}

#[test]
fn failures_print_the_core_error_and_no_credential() {
    for driver in DRIVERS {
        let setup = Setup::new();
        let env = setup.env();
        let https = setup.base_url.replace("http://", "https://");
        let cases: [(Vec<&str>, &str); 6] = [
            // The core's answer to a 404 and to a JWT signed with a key the app does not have.
            (vec!["--installation", UNKNOWN_INSTALLATION], "404 Not Found"),
            (
                vec!["--private-key", OTHER_KEY],
                "401 Unauthorized: the registry refused the app JWT",
            ),
            // The transport policy, before anything is sent (and TLS, which std_driver lacks).
            (vec!["--base-url", &https], driver.https_to_plain_http()),
            (
                vec!["--base-url", "http://192.0.2.1"],
                "refusing to send credentials over plain http://",
            ),
            // Arguments.
            (vec!["--bogus", "x"], "unknown flag `--bogus`"),
            (
                vec!["--private-key", "/nonexistent/icr-key.pem"],
                "the key file given cannot be read",
            ),
        ];
        for (args, expect) in cases {
            check_failure(&run(driver, &args, &env), expect);
        }
        // Only the 404 and the 401 reached the registry, once each: neither is retried.
        assert_eq!(setup.mint_statuses(), [404, 401], "{driver:?}");

        // A bad installation id and a bad key: refused before anything is sent.
        check_failure(
            &run(driver, &["--installation", "bad id"], &env),
            "invalid installation id",
        );
        let garbage = KeyFile::new("not a key", &format!("{}-garbage", driver.name()));
        check_failure(&run(driver, &["--private-key", garbage.path()], &env), "private key: ");
        assert!(setup.mint_statuses().is_empty(), "{driver:?}");

        // An unreachable registry (a port nothing listens on): a connection failure, retried
        // as the core decides, then its message.
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let unreachable = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        check_failure(
            &run(driver, &["--base-url", &unreachable], &env),
            "check the base URL, the network and any proxy",
        );

        let out = run(driver, &[], &[("ICR_APP_ID", "x")]);
        check_failure(&out, "none given; pass --private-key or set ICR_PRIVATE_KEY");
    }
    // No base URL: the real registry, over https, which std_driver cannot speak.
    let setup = Setup::new();
    check_failure(&run(Driver::Rust, &[], &setup.env()[1..]), "std_driver has no TLS");
}
