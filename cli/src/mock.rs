//! `icr-app mock`: the fake registry on 127.0.0.1 until Ctrl-C or SIGTERM, with the demo key in
//! a private temporary directory that is removed when it stops.

use std::io::Write as _;
use std::path::Path;

use crate::Failure;
use crate::out::outln;

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

    // The first installation and its organization, for the quick starts and `icr-app call`.
    let installation = demo.installation_ids.first().cloned().unwrap_or_default();
    let organization = demo.registry.organization_id(&installation).unwrap_or_default();
    let base_url = demo.registry.base_url();
    outln!("fake ICR registry listening on {base_url}")?;
    outln!("app id:          {}", demo.app_id)?;
    outln!("private key:     {}", key_path.display())?;
    outln!("installations:   {}", demo.installation_ids.join(" "))?;
    outln!("organization:    {organization} (of installation {installation})")?;
    outln!("")?;
    outln!("In another terminal:")?;
    outln!(
        "export ICR_BASE_URL={base_url} ICR_APP_ID={} ICR_PRIVATE_KEY={} ICR_INSTALLATION_ID={installation} ICR_ORGANIZATION_ID={organization}",
        demo.app_id,
        shell_word(&key_path.display().to_string()),
    )?;
    outln!("press Ctrl-C here to stop (the key file is removed then)")?;

    let _ = stopped.recv();
    let shown = dir.path().display().to_string();
    dir.close()
        .map_err(|e| Failure::Other(format!("cannot remove {shown}: {e}")))?;
    drop(demo);
    // Not eprintln!, which panics when stderr is a closed pipe.
    let _ = writeln!(std::io::stderr(), "stopped; removed {shown}");
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

/// `path` as one shell word: as it is when it holds only characters no shell treats specially,
/// else in single quotes (a temporary directory's path may hold spaces).
fn shell_word(path: &str) -> String {
    let plain = |c: char| c.is_ascii_alphanumeric() || "/._-+:,@%".contains(c);
    if !path.is_empty() && path.chars().all(plain) {
        path.to_owned()
    } else {
        format!("'{}'", path.replace('\'', r"'\''"))
    }
}
