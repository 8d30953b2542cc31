//! `fleet-registry`: the fake ICR registry as a process of its own, for fleet tests and
//! benchmarks (tests/tests/fleet.rs, `fleet-bench`): any number of apps and installations, and
//! a few line commands on stdin so the test can read the mint counts and inject faults.
//!
//! ```text
//! fleet-registry [--app APP_ID KEY N]...    KEY: demo | other (testkit's two private keys)
//! ```
//!
//! With no `--app`, the demo app with 3 installations. Prints, one per line:
//!
//! ```text
//! base-url http://127.0.0.1:PORT
//! app APP_ID KEY_PATH INSTALLATION...     (one line per app; the key in a private temp file)
//! ready
//! ```
//!
//! Then answers one line per command:
//!
//! | command | answer |
//! |---|---|
//! | `mints` | `mints TOTAL ID=N ID=N ...` (installation tokens minted, per installation) |
//! | `mint-requests` | `mint-requests N` (installation mints received, answered or not) |
//! | `organizations` | `organizations ORG...` (each installation's organization, in the order of the installations) |
//! | `lookups` | `lookups TOTAL ORG=N ORG=N ...` (lookups of an organization's installation, per organization) |
//! | `delay-mints MS [COUNT]` | `ok`: the next COUNT (default 1) mints are answered after MS |
//! | `token-lifetime MS` | `ok`: tokens minted from now on live MS |
//! | `add APP_ID N` | `installations ID...` (N new installations of APP_ID) |
//! | `quit` | `bye`, and exits (so does the end of stdin) |
//!
//! The key files are removed when it exits through `quit` or the end of stdin.

use std::io::{BufRead as _, Write as _};
use std::path::{Path, PathBuf};
use std::time::Duration;

use icr_app_testkit::{DEMO_PRIVATE_KEY_PEM, FakeRegistry, Fault, OTHER_PRIVATE_KEY_PEM};

const DEMO_APP_ID: &str = "d23967cc-dd16-452b-8af4-869965745978";

/// Where mints go: `POST /app/installations/{id}/accessTokens`.
const MINT_PREFIX: &str = "/app/installations/";

struct AppSpec {
    id: String,
    key: &'static str,
    installations: usize,
}

fn main() {
    let apps = match parse_args(std::env::args().skip(1).collect()) {
        Ok(apps) => apps,
        Err(message) => {
            eprintln!("fleet-registry: {message}");
            std::process::exit(2);
        }
    };
    let dir = private_dir();
    let registry = FakeRegistry::start();
    let mut installations: Vec<String> = Vec::new();
    let mut out = std::io::stdout().lock();
    writeln!(out, "base-url {}", registry.base_url()).unwrap();
    for (n, app) in apps.iter().enumerate() {
        registry
            .register_app_with_private_key(&app.id, app.key)
            .expect("testkit's keys are valid");
        let key_path = dir.join(format!("app-{n}.pem"));
        write_private(&key_path, app.key.as_bytes());
        let ids: Vec<String> = (0..app.installations).map(|i| add(&registry, &app.id, i)).collect();
        writeln!(out, "app {} {} {}", app.id, key_path.display(), ids.join(" ")).unwrap();
        installations.extend(ids);
    }
    writeln!(out, "ready").unwrap();
    out.flush().unwrap();

    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        let words: Vec<&str> = line.split_whitespace().collect();
        let answer = match words.as_slice() {
            ["mints"] => {
                let per: Vec<(String, usize)> = installations
                    .iter()
                    .map(|id| (id.clone(), registry.mint_count(id)))
                    .collect();
                let total: usize = per.iter().map(|(_, n)| n).sum();
                let per: Vec<String> = per.iter().map(|(id, n)| format!("{id}={n}")).collect();
                format!("mints {total} {}", per.join(" ")).trim_end().to_owned()
            }
            ["organizations"] => {
                let orgs: Vec<String> = installations
                    .iter()
                    .map(|id| registry.organization_id(id).unwrap_or_default())
                    .collect();
                format!("organizations {}", orgs.join(" ")).trim_end().to_owned()
            }
            ["lookups"] => {
                let per: Vec<(String, usize)> = installations
                    .iter()
                    .filter_map(|id| registry.organization_id(id))
                    .map(|org| {
                        let n = registry.lookup_count(&org);
                        (org, n)
                    })
                    .collect();
                let total: usize = per.iter().map(|(_, n)| n).sum();
                let per: Vec<String> = per.iter().map(|(org, n)| format!("{org}={n}")).collect();
                format!("lookups {total} {}", per.join(" ")).trim_end().to_owned()
            }
            ["mint-requests"] => {
                let n = registry
                    .requests()
                    .iter()
                    .filter(|r| r.method == "POST" && r.path.starts_with(MINT_PREFIX))
                    .count();
                format!("mint-requests {n}")
            }
            ["delay-mints", ms, rest @ ..] => match (ms.parse::<u64>(), rest.first().map_or(Ok(1), |c| c.parse())) {
                (Ok(ms), Ok(count)) => {
                    registry.inject_for(MINT_PREFIX, Fault::Delay(Duration::from_millis(ms)), count);
                    "ok".to_owned()
                }
                _ => "error delay-mints MS [COUNT]".to_owned(),
            },
            ["token-lifetime", ms] => match ms.parse::<u64>() {
                Ok(ms) => {
                    registry.set_token_lifetime(Duration::from_millis(ms));
                    "ok".to_owned()
                }
                Err(_) => "error token-lifetime MS".to_owned(),
            },
            ["add", app_id, n] => match n.parse::<usize>() {
                Ok(n) => {
                    let ids: Vec<String> = (0..n)
                        .map(|i| add(&registry, app_id, installations.len() + i))
                        .collect();
                    installations.extend(ids.iter().cloned());
                    format!("installations {}", ids.join(" "))
                }
                Err(_) => "error add APP_ID N".to_owned(),
            },
            ["quit"] => {
                writeln!(out, "bye").unwrap();
                out.flush().unwrap();
                break;
            }
            _ => format!("error unknown command: {line}"),
        };
        writeln!(out, "{answer}").unwrap();
        out.flush().unwrap();
    }
    drop(registry);
    let _ = std::fs::remove_dir_all(&dir);
}

fn add(registry: &FakeRegistry, app_id: &str, n: usize) -> String {
    registry.add_installation(
        app_id,
        &format!("Fleet organization {n}"),
        &[("organization_info", "VIEW")],
    )
}

fn parse_args(args: Vec<String>) -> Result<Vec<AppSpec>, String> {
    let mut apps = Vec::new();
    let mut args = args.into_iter();
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--app" => {
                let (Some(id), Some(key), Some(n)) = (args.next(), args.next(), args.next()) else {
                    return Err("--app APP_ID KEY N".to_owned());
                };
                let key = match key.as_str() {
                    "demo" => DEMO_PRIVATE_KEY_PEM,
                    "other" => OTHER_PRIVATE_KEY_PEM,
                    _ => return Err(format!("KEY is demo or other, not {key}")),
                };
                let installations = n.parse().map_err(|_| format!("N is a number, not {n}"))?;
                apps.push(AppSpec { id, key, installations });
            }
            other => {
                return Err(format!(
                    "unknown argument {other}; usage: fleet-registry [--app APP_ID KEY N]..."
                ));
            }
        }
    }
    if apps.is_empty() {
        apps.push(AppSpec {
            id: DEMO_APP_ID.to_owned(),
            key: DEMO_PRIVATE_KEY_PEM,
            installations: 3,
        });
    }
    Ok(apps)
}

/// A new directory only this user can enter, for the key files.
fn private_dir() -> PathBuf {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let dir = std::env::temp_dir().join(format!("icr-fleet-registry-{}-{nanos}", std::process::id()));
    let mut builder = std::fs::DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(&dir)
        .unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
    dir
}

/// Creates `path` (which must not exist) readable by this user only, with `bytes`.
fn write_private(path: &Path, bytes: &[u8]) {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options
        .open(path)
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    file.write_all(bytes).unwrap();
}
