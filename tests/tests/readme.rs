//! The README's Rust programs are the quick-start examples byte for byte, so what it shows is what
//! `cargo test` and clippy compile and what `examples.rs` runs against the fake registry: a reader
//! can paste it as it is (no hidden `# ` lines). Its `Cargo.toml` lines name exactly the crates
//! each program uses, at the version the workspace publishes.
//!
//! Its `sh` blocks run as shown, in bash with `set -euo pipefail`, against the README's own
//! `icr-app mock` block run in the background (stopped with SIGTERM), each block with the
//! `export` line the mock printed, as a reader pastes it. Three things differ from a reader's
//! terminal, each for a reason:
//!
//! - `cargo` is a stand-in first on `PATH`: `cargo run [--release] -p icr-app-cli -- ARGS` runs the
//!   `icr-app` binary and `cargo run -p PKG [--features F] --example X -- ARGS` the example's
//!   binary, both built by this test beforehand in its own profile (a `cargo run` per line would
//!   take the build lock a dozen times, and `--release` would build the whole tree again).
//!   Any other `cargo` line fails the test rather than run something else.
//! - The mock's `--port 8787` becomes `--port 0`: another test run on the machine may hold 8787,
//!   and the blocks after it read the port from its `export` line only.
//! - `./run-tests` is not run: it is the command that runs this test (the README says so beside
//!   it).

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use icr_app_e2e::{build_cli, build_example, profile_dir, without_settings};

/// The workspace root. `CARGO_MANIFEST_DIR` is read at run time when set (cargo sets it), so the
/// built test can also check another checkout.
fn root() -> PathBuf {
    let manifest_dir = std::env::var_os("CARGO_MANIFEST_DIR").unwrap_or_else(|| env!("CARGO_MANIFEST_DIR").into());
    PathBuf::from(manifest_dir).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(root().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The fenced blocks of a markdown text: `(info string, content)`.
fn fenced_blocks(markdown: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut open: Option<(String, String)> = None;
    for line in markdown.split_inclusive('\n') {
        let trimmed = line.trim_end();
        match open.take() {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    open = Some((info.to_owned(), String::new()));
                }
            }
            Some((info, content)) if trimmed == "```" => blocks.push((info, content)),
            Some((info, mut content)) => {
                content.push_str(line);
                open = Some((info, content));
            }
        }
    }
    assert!(open.is_none(), "an unclosed code fence");
    blocks
}

/// The text of the `## heading` section, up to the next `## `.
fn section<'a>(readme: &'a str, heading: &str) -> &'a str {
    let start = readme
        .find(&format!("\n## {heading}\n"))
        .unwrap_or_else(|| panic!("no section {heading:?}"));
    let rest = &readme[start + 1..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 4);
    &rest[..end]
}

/// `(section, example file)`: each section's program.
const PROGRAMS: [(&str, &str); 2] = [
    (
        "Using the SDK from blocking Rust",
        "transport-ureq/examples/ureq_quickstart.rs",
    ),
    (
        "Using the SDK from async Rust",
        "transport-reqwest/examples/reqwest_quickstart.rs",
    ),
];

fn blocks_of(readme: &str, heading: &str, info: &str) -> Vec<String> {
    fenced_blocks(section(readme, heading))
        .into_iter()
        .filter(|(i, _)| i == info)
        .map(|(_, content)| content)
        .collect()
}

#[test]
fn readme_rust_programs_are_the_quickstart_examples() {
    let readme = read("README.md");
    for (heading, file) in PROGRAMS {
        let programs = blocks_of(&readme, heading, "rust");
        assert_eq!(programs.len(), 1, "{heading}: one Rust block");
        assert!(
            programs[0] == read(file),
            "the README's {heading:?} block differs from {file}: copy the file into the README"
        );
    }
}

#[test]
fn readme_rust_blocks_have_no_hidden_lines_and_are_all_tested() {
    let readme = read("README.md");
    let blocks: Vec<String> = fenced_blocks(&readme)
        .into_iter()
        .filter(|(info, _)| info.starts_with("rust"))
        .map(|(_, content)| content)
        .collect();
    for line in blocks.iter().flat_map(|block| block.lines()) {
        let trimmed = line.trim_start();
        assert!(
            !(trimmed == "#" || trimmed.starts_with("# ")),
            "a rustdoc hidden line does not compile when pasted: {line:?}"
        );
    }
    let programs: Vec<String> = PROGRAMS.iter().map(|(_, file)| read(file)).collect();
    for block in blocks {
        assert!(
            programs.contains(&block),
            "every Rust block of the README is one of the tested examples:\n{block}"
        );
    }
}

/// The `[dependencies]` lines of a `Cargo.toml` block: `name -> the rest of the line`.
fn dependencies(toml: &str) -> Vec<(String, String)> {
    let mut lines = toml.lines();
    assert_eq!(lines.next(), Some("[dependencies]"));
    lines
        .map(|line| {
            let (name, spec) = line.split_once(" = ").unwrap_or_else(|| panic!("{line:?}"));
            (name.to_owned(), spec.to_owned())
        })
        .collect()
}

#[test]
fn readme_cargo_toml_lines_are_what_each_program_uses() {
    let readme = read("README.md");
    let root_manifest = read("Cargo.toml");
    let workspace_version = root_manifest
        .lines()
        .find_map(|l| l.strip_prefix("version = \""))
        .and_then(|v| v.strip_suffix('"'))
        .expect("[workspace.package] version");
    let published = ["icr-app-core", "icr-app-ureq", "icr-app-reqwest", "icr-app-testkit"];
    for (member, name) in [
        ("core", published[0]),
        ("transport-ureq", published[1]),
        ("transport-reqwest", published[2]),
        ("testkit", published[3]),
    ] {
        assert!(read(&format!("{member}/Cargo.toml")).contains(&format!("\nname = \"{name}\"\n")));
    }

    for (heading, file) in PROGRAMS {
        let program = read(file);
        let tomls = blocks_of(&readme, heading, "toml");
        assert_eq!(tomls.len(), 1, "{heading}: one Cargo.toml block");
        let deps = dependencies(&tomls[0]);

        // Exactly the crates the program names.
        let mut used: Vec<&str> = published
            .iter()
            .copied()
            .chain(["serde_json", "tokio"])
            .filter(|name| program.contains(&format!("{}::", name.replace('-', "_"))))
            .collect();
        used.sort_unstable();
        let mut listed: Vec<&str> = deps.iter().map(|(name, _)| name.as_str()).collect();
        listed.sort_unstable();
        assert_eq!(listed, used, "{heading}");

        for (name, spec) in &deps {
            assert!(!spec.contains("path") && !spec.contains("git"), "{name} = {spec}");
            if published.contains(&name.as_str()) {
                // "0.1" accepts the workspace's 0.1.x.
                assert_eq!(spec, "\"0.1\"", "{name}");
                assert!(workspace_version.starts_with("0.1."), "{workspace_version}");
            }
        }
        if program.contains("#[tokio::main]") {
            let (_, tokio) = deps.iter().find(|(name, _)| name == "tokio").unwrap();
            // `#[tokio::main]` without a flavor is the multi-threaded runtime.
            for feature in ["\"macros\"", "\"rt-multi-thread\""] {
                assert!(tokio.contains(feature), "tokio needs {feature}: {tokio}");
            }
        }
    }
}

/// The README's `sh` blocks.
fn sh_blocks(readme: &str) -> Vec<String> {
    fenced_blocks(readme)
        .into_iter()
        .filter(|(info, _)| info == "sh")
        .map(|(_, content)| content)
        .collect()
}

/// A line's command, without its trailing `# comment`.
fn command(line: &str) -> &str {
    line.split(" #").next().unwrap_or_default().trim()
}

/// The line the test does not run, and the README's reason for it.
const NOT_RUN: &str = "./run-tests";
const NOT_RUN_REASON: &str = "`./run-tests` is the command that runs that test";

/// The `cargo` stand-in (see the module docs).
const CARGO_SHIM: &str = r#"#!/bin/sh
# The README test's cargo: runs what `cargo run` would, from binaries the test built.
set -eu
if [ "${1:-}" != run ]; then
  echo "the README test's cargo stand-in runs only 'cargo run', not: cargo $*" >&2
  exit 97
fi
shift
package= example=
while [ $# -gt 0 ]; do
  case "$1" in
    --) shift; break ;;
    -p|--package) package=$2; shift ;;
    --example) example=$2; shift ;;
    --features) shift ;;
    --release|-q|--quiet) ;;
    *) echo "the README test's cargo stand-in does not know $1" >&2; exit 97 ;;
  esac
  shift
done
if [ -n "$example" ]; then exec "$ICR_README_TARGET/examples/$example" "$@"; fi
if [ "$package" = icr-app-cli ]; then exec "$ICR_README_TARGET/icr-app" "$@"; fi
echo "the README test's cargo stand-in does not know: cargo run -p $package" >&2
exit 97
"#;

/// Builds what the blocks' `cargo run` lines run: the CLI, and each example they name.
fn build_what_the_blocks_run(blocks: &[String]) {
    build_cli();
    for line in blocks.iter().flat_map(|b| b.lines()).map(command) {
        let words: Vec<&str> = line.split_whitespace().take_while(|w| *w != "--").collect();
        if words.len() < 2 || words[..2] != ["cargo", "run"] {
            continue;
        }
        let after = |flag: &str| words.iter().position(|w| *w == flag).map(|i| words[i + 1]);
        let package = after("-p")
            .or_else(|| after("--package"))
            .unwrap_or_else(|| panic!("no -p: {line}"));
        if let Some(example) = after("--example") {
            build_example(package, example, after("--features"));
        } else {
            assert_eq!(
                package, "icr-app-cli",
                "the README test runs the CLI and examples only: {line}"
            );
        }
    }
}

/// A scratch directory, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("icr-app-readme-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("bin")).unwrap();
        Self(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `bash -c SCRIPT` in `dir`, with the `cargo` stand-in first on `PATH` and none of the settings
/// the tools read but those `script` sets, in a process group of its own (so that SIGTERM to
/// the group stops whatever it started).
fn bash(dir: &Path, script: &str) -> Command {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let mut paths = vec![dir.join("bin")];
    paths.extend(std::env::split_paths(&path));
    let mut cmd = Command::new("bash");
    cmd.args(["-c", &format!("set -euo pipefail\n{script}")])
        .current_dir(dir)
        .env("PATH", std::env::join_paths(paths).unwrap())
        .env("ICR_README_TARGET", profile_dir());
    without_settings(&mut cmd);
    for var in [
        "ICR_ORGANIZATION_ID",
        "ICR_TOKEN",
        "ICR_TIMEOUT",
        "ICR_REDIS_URL",
        "ICR_WEBHOOK_SECRET",
        "RUST_LOG",
    ] {
        cmd.env_remove(var);
    }
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    cmd
}

/// SIGTERM to `child`'s process group.
fn terminate(child: &Child) {
    let _ = Command::new("kill")
        .args(["-TERM", "--", &format!("-{}", child.id())])
        .status();
}

/// The README's mock, stopped with SIGTERM when dropped.
struct Mock(Child);

impl Drop for Mock {
    fn drop(&mut self) {
        if matches!(self.0.try_wait(), Ok(None)) {
            terminate(&self.0);
            let _ = self.0.wait();
        }
    }
}

/// Waits for `child`, failing the test after `limit`.
fn wait(child: &mut Child, limit: Duration, what: &str) -> std::process::ExitStatus {
    let deadline = Instant::now() + limit;
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if Instant::now() > deadline {
            terminate(child);
            let _ = child.kill();
            panic!("{what}: not finished within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn readme_sh_blocks_run_as_shown_against_icr_app_mock() {
    let readme = read("README.md");
    let blocks = sh_blocks(&readme);
    assert!(blocks.len() >= 3, "{blocks:?}");
    for block in &blocks {
        for line in block.lines() {
            // `<your app id>`, `<id>`: a reader cannot paste that.
            let placeholder = line.split('<').skip(1).any(|rest| {
                rest.split_once('>').is_some_and(|(inside, _)| {
                    !inside.is_empty() && inside.chars().all(|c| c.is_ascii_lowercase() || c == ' ')
                })
            });
            assert!(!placeholder, "a placeholder a reader must replace: {line}");
        }
    }
    let not_run: Vec<&str> = blocks
        .iter()
        .flat_map(|b| b.lines())
        .filter(|l| command(l) == NOT_RUN)
        .collect();
    assert_eq!(not_run.len(), 1, "{not_run:?}");
    assert!(
        readme.contains(NOT_RUN_REASON),
        "the README says why {NOT_RUN} is not run"
    );
    let is_mock = |block: &String| {
        block
            .lines()
            .map(command)
            .filter(|c| !c.is_empty())
            .all(|c| c.starts_with("cargo run -p icr-app-cli -- mock"))
    };
    let mocks: Vec<&String> = blocks.iter().filter(|b| is_mock(b)).collect();
    assert_eq!(mocks.len(), 1, "one block starts the mock: {mocks:?}");
    assert!(mocks[0].contains("--port 8787"), "{}", mocks[0]);

    build_what_the_blocks_run(&blocks);
    let scratch = Scratch::new();
    let shim = scratch.0.join("bin/cargo");
    std::fs::write(&shim, CARGO_SHIM).unwrap();
    std::fs::set_permissions(&shim, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();

    // The mock, in the background; its `export` line is what the other blocks start with.
    let mut mock = Mock(
        bash(&scratch.0, &mocks[0].replace("--port 8787", "--port 0"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let mut lines = BufReader::new(mock.0.stdout.take().unwrap()).lines();
    let (mut export, mut key) = (None, None);
    while export.is_none() {
        let line = lines.next().expect("the mock's output").unwrap();
        if let Some(path) = line.strip_prefix("private key:") {
            key = Some(PathBuf::from(path.trim()));
        }
        if line.starts_with("export ") {
            export = Some(line);
        }
    }
    let export = export.unwrap();
    let key = key.expect("the mock prints its key's path");
    std::thread::spawn(move || lines.for_each(drop));

    for block in blocks.iter().filter(|b| !is_mock(b)) {
        let block: String = block
            .lines()
            .filter(|l| command(l) != NOT_RUN)
            .map(|l| format!("{l}\n"))
            .collect();
        let mut child = bash(&scratch.0, &format!("{export}\n{block}"))
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        // Read both pipes as the block runs, so that it never blocks on a full one.
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let read = |mut pipe: Box<dyn std::io::Read + Send>| {
            std::thread::spawn(move || {
                let mut text = String::new();
                let _ = pipe.read_to_string(&mut text);
                text
            })
        };
        let (stdout, stderr) = (read(Box::new(stdout)), read(Box::new(stderr)));
        let status = wait(&mut child, Duration::from_secs(300), &block);
        let (stdout, stderr) = (stdout.join().unwrap(), stderr.join().unwrap());
        assert!(
            status.success(),
            "this README block failed ({status}):\n{block}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
        assert!(!stderr.contains("panicked"), "{block}\n{stderr}");
        assert!(!format!("{stdout}{stderr}").contains("PRIVATE KEY"), "{block}");
    }

    // SIGTERM stops the mock, which removes its key.
    terminate(&mock.0);
    let status = wait(&mut mock.0, Duration::from_secs(30), "the mock");
    assert!(status.success(), "the mock: {status}");
    assert!(!key.exists(), "the mock left {}", key.display());
}
