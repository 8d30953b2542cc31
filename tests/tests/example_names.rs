//! Every example (and every binary) of the workspace has its own file name. Cargo builds all
//! examples into one `target/*/examples/` folder (and binaries into one folder too), so two
//! members with an example of the same name overwrite each other's output and `cargo test`
//! warns "output filename collision" on every build.

use std::collections::BTreeMap;
use std::process::Command;

/// `(kind, name) -> packages` for every example and binary target of the workspace members, as
/// `cargo metadata` sees them (files under `examples/`, `src/bin/` and `[[example]]`/`[[bin]]`).
fn targets() -> BTreeMap<(String, String), Vec<String>> {
    // Read at run time when set (cargo sets it), so the built test can also check another checkout.
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    let manifest_dir = std::path::PathBuf::from(manifest_dir);
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["metadata", "--no-deps", "--format-version", "1", "--manifest-path"])
        .arg(manifest_dir.join("../Cargo.toml"))
        .output()
        .expect("run cargo metadata");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let metadata: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let mut targets: BTreeMap<(String, String), Vec<String>> = BTreeMap::new();
    for package in metadata["packages"].as_array().unwrap() {
        for target in package["targets"].as_array().unwrap() {
            for kind in target["kind"].as_array().unwrap() {
                let kind = kind.as_str().unwrap();
                if kind == "example" || kind == "bin" {
                    targets
                        .entry((kind.to_owned(), target["name"].as_str().unwrap().to_owned()))
                        .or_default()
                        .push(package["name"].as_str().unwrap().to_owned());
                }
            }
        }
    }
    targets
}

#[test]
fn no_two_workspace_examples_share_a_file_name() {
    let targets = targets();
    let shared: Vec<_> = targets.iter().filter(|(_, packages)| packages.len() > 1).collect();
    assert!(
        shared.is_empty(),
        "targets with the same output file name in several members: {shared:?}"
    );
    // The walk found the examples (a broken metadata call must not pass as "no duplicates").
    for (package, example) in [
        ("icr-app-core", "jwt"),
        ("icr-app-ureq", "ureq_installation_token"),
        ("icr-app-reqwest", "reqwest_installation_token"),
        ("icr-app-ureq", "ureq_quickstart"),
        ("icr-app-reqwest", "reqwest_quickstart"),
    ] {
        assert_eq!(
            targets.get(&("example".to_owned(), example.to_owned())),
            Some(&vec![package.to_owned()]),
            "{example}"
        );
    }
}
