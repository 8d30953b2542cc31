//! `icr-app mock`: the fake registry on 127.0.0.1 until Ctrl-C or SIGTERM, with the demo key in
//! a private temporary directory that is removed when it stops.

use std::io::Write as _;
use std::path::Path;

use crate::Failure;

pub(crate) fn run(port: u16) -> Result<(), Failure> {
    // The handler first, so no signal can stop the mock between writing the key and being able
    // to remove it.
    let (stop, stopped) = std::sync::mpsc::channel();
    ctrlc::set_handler(move || {
        let _ = stop.send(());
    })
    .map_err(|e| Failure::Other(format!("cannot handle Ctrl-C and SIGTERM: {e}")))?;

    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let demo = icr_app_testkit::FakeRegistry::demo_on(addr)
        .map_err(|e| Failure::Other(format!("cannot listen on {addr}: {e}")))?;
    // A new directory only this user can enter (0700 on Unix; asked for explicitly, as tempfile
    // leaves a directory's mode to the umask), so no one can plant a file or a
    // symlink where the key goes, nor read it.
    let mut builder = tempfile::Builder::new();
    builder.prefix("icr-app-mock-");
    #[cfg(unix)]
    builder.permissions(std::os::unix::fs::PermissionsExt::from_mode(0o700));
    let dir = builder
        .tempdir()
        .map_err(|e| Failure::Other(format!("cannot create a temporary directory: {e}")))?;
    let key_path = dir.path().join("demo-key.pem");
    write_private(&key_path, demo.private_key_pem.as_bytes())
        .map_err(|e| Failure::Other(format!("cannot write {}: {e}", key_path.display())))?;

    println!("fake ICR registry listening on {}", demo.registry.base_url());
    println!("app id:          {}", demo.app_id);
    println!("private key:     {}", key_path.display());
    println!("installations:   {}", demo.installation_ids.join(" "));
    println!();
    println!("In another terminal:");
    println!(
        "export ICR_BASE_URL={} ICR_APP_ID={} ICR_PRIVATE_KEY={}",
        demo.registry.base_url(),
        demo.app_id,
        key_path.display()
    );
    println!("press Ctrl-C here to stop (the key file is removed then)");
    let _ = std::io::stdout().flush();

    let _ = stopped.recv();
    let shown = dir.path().display().to_string();
    dir.close()
        .map_err(|e| Failure::Other(format!("cannot remove {shown}: {e}")))?;
    drop(demo);
    eprintln!("stopped; removed {shown}");
    Ok(())
}

/// Creates `path` (it must not exist: a planted file or symlink is an error) readable and
/// writable by this user only, and writes `bytes` to it.
fn write_private(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let mut file = options.open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}
