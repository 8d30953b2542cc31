//! `icr-app-testnet`: the network of `tests/tests/proxies.rs` as a process, for tests written
//! in other languages (the C tests of `bindings/c`): the fake registry with the demo app, TLS in
//! front of it with a certificate for `registry.test` from a CA made on the spot, and a
//! `CONNECT` proxy that alone resolves `registry.test` (to the TLS front) and records what it
//! sees. Prints one line of JSON (see the crate's README) and serves until SIGTERM or Ctrl-C,
//! or, when its standard input is a pipe or a socket, until that closes (its parent is gone).
//! Its files (the CA, the demo key, the proxy's records) are in a private temporary
//! directory, removed when it stops.
//!
//! usage: icr-app-testnet [--proxy-user USER --proxy-password PASSWORD]

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use icr_app_testkit::{ConnectProxy, FakeRegistry, TestCa, TlsFront};

/// The registry's name, which only the proxy resolves.
const HOST: &str = "registry.test";

const USAGE: &str = "usage: icr-app-testnet [--proxy-user USER --proxy-password PASSWORD]

Starts a fake ICR registry, TLS in front of it for registry.test (a certificate from a CA made
now) and a CONNECT proxy that alone resolves registry.test; prints one line of JSON (the URLs,
the app id, the paths of the demo key, of the CA and of the proxy's records); serves until
SIGTERM or Ctrl-C, or until its standard input closes when that is a pipe or a socket.
With --proxy-user and --proxy-password the proxy requires those credentials (407 otherwise).";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            let _ = writeln!(std::io::stderr(), "icr-app-testnet: {message}");
            ExitCode::FAILURE
        }
    }
}

/// `--proxy-user` and `--proxy-password`, both or neither.
fn credentials() -> Result<Option<(String, String)>, String> {
    let (mut user, mut password) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let slot = match arg.as_str() {
            "--proxy-user" => &mut user,
            "--proxy-password" => &mut password,
            "-h" | "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other:?}\n{USAGE}")),
        };
        *slot = Some(args.next().ok_or_else(|| format!("{arg} needs a value\n{USAGE}"))?);
    }
    match (user, password) {
        (Some(user), Some(password)) => Ok(Some((user, password))),
        (None, None) => Ok(None),
        _ => Err(format!(
            "give both --proxy-user and --proxy-password, or neither\n{USAGE}"
        )),
    }
}

fn run() -> Result<(), String> {
    let credentials = credentials()?;
    // The handler first, so no signal stops it between making its directory and removing it.
    let (stop, stopped) = std::sync::mpsc::channel();
    let on_signal = stop.clone();
    ctrlc::set_handler(move || {
        let _ = on_signal.send(());
    })
    .map_err(|e| format!("cannot handle Ctrl-C and SIGTERM: {e}"))?;
    if stdin_is_a_pipe() {
        std::thread::spawn(move || {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            let _ = stop.send(());
        });
    }

    let dir = Dir::new()?;
    let records = dir.0.join("proxy");
    std::fs::create_dir(&records).map_err(|e| format!("cannot create {}: {e}", records.display()))?;
    let demo = FakeRegistry::demo();
    let ca = TestCa::new();
    let (cert, key) = ca.issue(&[HOST]);
    let front = TlsFront::start(demo.registry.addr(), &cert, &key).map_err(|e| format!("cannot start TLS: {e}"))?;
    let mut proxy = ConnectProxy::builder().resolve(HOST, front.addr()).record_to(&records);
    if let Some((user, password)) = &credentials {
        proxy = proxy.basic_auth(user, password);
    }
    let proxy = proxy.start().map_err(|e| format!("cannot start the proxy: {e}"))?;
    let ca_file = dir.write("ca.pem", ca.cert_pem())?;
    let key_file = dir.write("demo-key.pem", demo.private_key_pem)?;

    let path = |p: &Path| p.display().to_string();
    let line = serde_json::json!({
        "base_url": format!("https://{HOST}"),
        "app_id": demo.app_id,
        "private_key_file": path(&key_file),
        "ca_file": path(&ca_file),
        "installation_id": demo.installation_ids[0],
        "organization_id": demo.organization_ids[0],
        "registry_url": demo.registry.base_url(),
        "tls_front": front.addr().to_string(),
        "proxy_url": proxy.url(),
        "proxy_url_with_credentials": credentials.as_ref().map(|(u, p)| proxy.url_with_credentials(u, p)),
        "proxy_requests": path(&records.join("requests.log")),
        "proxy_tunnels": path(&records),
        "dir": path(&dir.0),
    });
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")
        .and_then(|()| out.flush())
        .map_err(|e| format!("cannot write to stdout: {e}"))?;
    drop(out);

    let _ = stopped.recv();
    drop(proxy);
    drop(front);
    drop(demo);
    let shown = path(&dir.0);
    drop(dir);
    let _ = writeln!(std::io::stderr(), "icr-app-testnet: stopped; removed {shown}");
    Ok(())
}

/// Whether standard input is a pipe or a socket (held by the process that started this one),
/// not a terminal or `/dev/null`, which a shell gives a background job.
fn stdin_is_a_pipe() -> bool {
    #[cfg(unix)]
    {
        use std::os::fd::AsFd as _;
        use std::os::unix::fs::FileTypeExt as _;
        let Ok(fd) = std::io::stdin().as_fd().try_clone_to_owned() else {
            return false;
        };
        std::fs::File::from(fd)
            .metadata()
            .is_ok_and(|m| m.file_type().is_fifo() || m.file_type().is_socket())
    }
    #[cfg(not(unix))]
    {
        false
    }
}

/// A new directory only this user can enter, removed on drop.
struct Dir(PathBuf);

impl Dir {
    fn new() -> Result<Self, String> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let path = std::env::temp_dir().join(format!("icr-app-testnet-{}-{nanos}", std::process::id()));
        let mut builder = std::fs::DirBuilder::new();
        #[cfg(unix)]
        std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
        // `create`, not `create_all`: a directory or link someone planted there is an error.
        builder
            .create(&path)
            .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
        Ok(Self(path))
    }

    /// Writes `text` to the new file `name` in it, readable by this user only.
    fn write(&self, name: &str, text: &str) -> Result<PathBuf, String> {
        let path = self.0.join(name);
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create_new(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        options
            .open(&path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
