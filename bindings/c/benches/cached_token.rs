//! The blocking client's cached token call from C (`icr_client_token` with a scope made once, and
//! `icr_client_installation_token` with the id as text, in `benches/cached_token.c`) against the
//! Rust client's own (`icr_app_ureq::Client::installation_token`), in one run, release builds,
//! against one fake registry: rounds alternate, Rust then C, each the mean of ITERATIONS calls
//! after a warm-up; the medians and their ratios are printed.
//!
//! ```sh
//! cargo bench -p icr-app-ffi --bench cached_token            # ROUNDS=7 ITERATIONS=2000000
//! ROUNDS=9 ITERATIONS=5000000 cargo bench -p icr-app-ffi --bench cached_token
//! ```
//!
//! It builds `libicr_app` in release (`cargo build --release -p icr-app-ffi`) and compiles the C
//! program with `cc -O2` against it.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use icr_app_core::{App, AppKey, InstallationId};
use icr_app_testkit::FakeRegistry;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// Builds the release library and the C program; returns the program.
fn c_program() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--release", "-q", "-p", "icr-app-ffi"])
        .status()
        .unwrap();
    assert!(status.success(), "cargo build --release -p icr-app-ffi");
    // The bench binary is target/release/deps/cached_token-<hash>.
    let exe = std::env::current_exe().unwrap();
    let release = exe.parent().unwrap().parent().unwrap().to_path_buf();
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    let program = release.join("cached_token_c");
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".into());
    let status = Command::new(cc)
        .args(["-std=c99", "-O2", "-I"])
        .arg(here.join("include"))
        .arg(here.join("benches/cached_token.c"))
        .arg("-L")
        .arg(&release)
        .arg(format!("-Wl,-rpath,{}", release.display()))
        .args(["-licr_app", "-o"])
        .arg(&program)
        .status()
        .unwrap();
    assert!(status.success(), "cc benches/cached_token.c");
    program
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not: then do nothing.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let rounds = setting("ROUNDS", 7);
    let iterations = setting("ITERATIONS", 2_000_000);
    let program = c_program();
    let demo = FakeRegistry::demo();
    let base_url = demo.registry.base_url();
    let key = AppKey::from_pem(demo.private_key_pem).unwrap();
    let app = App::builder(demo.app_id.clone(), key)
        .base_url(&base_url)
        .build()
        .unwrap();
    let client = icr_app_ureq::Client::new(app);
    let id = InstallationId::new(demo.installation_ids[0].clone()).unwrap();
    for _ in 0..iterations / 10 + 1 {
        std::hint::black_box(client.installation_token(&id).unwrap());
    }
    // The C ABI's function called in this process (linked as an rlib: no PLT, no dynamic TLS),
    // to tell the function's own cost from the shared library's.
    let mut abi_app = std::ptr::null_mut();
    let mut abi_client = std::ptr::null_mut();
    // SAFETY: valid pointers and lengths for each call; the handles are freed once, below.
    unsafe {
        let pem = demo.private_key_pem;
        let status = icr_app::icr_app_new(
            demo.app_id.as_ptr().cast(),
            demo.app_id.len(),
            pem.as_ptr(),
            pem.len(),
            base_url.as_ptr().cast(),
            base_url.len(),
            &raw mut abi_app,
        );
        assert_eq!(status, icr_app::icr_status::Ok);
        let status = icr_app::icr_client_new(abi_app, std::ptr::null(), &raw mut abi_client);
        assert_eq!(status, icr_app::icr_status::Ok);
        icr_app::icr_app_free(abi_app);
    }
    let abi_call = || {
        let mut buf = [0u8; 256];
        let (mut len, mut expires) = (0usize, 0i64);
        // SAFETY: a live client, the id's bytes, a buffer of 256 bytes, writable out-parameters.
        let status = unsafe {
            icr_app::icr_client_installation_token(
                abi_client,
                id.as_str().as_ptr().cast(),
                id.as_str().len(),
                0,
                buf.as_mut_ptr().cast(),
                buf.len(),
                &raw mut len,
                &raw mut expires,
            )
        };
        std::hint::black_box((status, buf[0], len, expires));
    };
    for _ in 0..iterations / 10 + 1 {
        abi_call();
    }
    let (mut rust, mut c, mut c_text, mut abi) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for round in 1..=rounds {
        let start = Instant::now();
        for _ in 0..iterations {
            std::hint::black_box(client.installation_token(std::hint::black_box(&id)).unwrap());
        }
        let ns = start.elapsed().as_nanos() as f64 / iterations as f64;
        rust.push(ns);
        let out = Command::new(&program)
            .arg(iterations.to_string())
            .env("ICR_BASE_URL", &base_url)
            .env("ICR_APP_ID", &demo.app_id)
            .env("ICR_PRIVATE_KEY", demo.private_key_pem)
            .env("ICR_INSTALLATION_ID", id.as_str())
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8_lossy(&out.stdout);
        let mut figures = stdout.split_whitespace().map(|f| f.parse::<f64>().unwrap());
        let (from_c, from_c_text) = (figures.next().unwrap(), figures.next().unwrap());
        c.push(from_c);
        c_text.push(from_c_text);
        let start = Instant::now();
        for _ in 0..iterations {
            abi_call();
        }
        let in_process = start.elapsed().as_nanos() as f64 / iterations as f64;
        abi.push(in_process);
        println!(
            "round {round}: Rust client {ns:.2} ns, from C {from_c:.2} ns (the id as text: {from_c_text:.2} ns), the C function from Rust {in_process:.2} ns"
        );
    }
    // SAFETY: made above, freed once.
    unsafe { icr_app::icr_client_free(abi_client) };
    let (rust, c, c_text, abi) = (median(rust), median(c), median(c_text), median(abi));
    println!(
        "cached installation token, median of {rounds} rounds of {iterations}: Rust client {rust:.2} ns, from C {c:.2} ns (C / Rust = {:.3}; the id as text: {c_text:.2} ns, {:.3}), the C function from Rust {abi:.2} ns",
        c / rust,
        c_text / rust
    );
}
