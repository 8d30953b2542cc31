//! Prints one app JWT.
//!
//! ```text
//! cargo run -p icr-app-core --example jwt -- --app-id ID --private-key PATH [--now UNIX_SECONDS]
//! ```
//!
//! With `--now` the JWT is made for that instant (`iat` = now - 60, `exp` = now + 540);
//! otherwise for this machine's clock. `--help` prints the usage. Errors go to stderr with a
//! non-zero exit; they never quote the key file's path or contents.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::SystemTime;

use icr_app_core::{AppId, AppKey, ClockOffset, JwtSigner, Timestamp, excerpt};

const USAGE: &str = "usage: jwt --app-id ID --private-key PATH [--now UNIX_SECONDS]";
/// The options `--help` lists after the usage line.
const OPTIONS: &str = "  --app-id ID           the App ID on the app's dashboard
  --private-key PATH    the path of the app's PEM or DER key file
  --now UNIX_SECONDS    make the JWT for this instant (default: this machine's clock)
  -h, --help            print this help";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(jwt) => {
            println!("{jwt}");
            ExitCode::SUCCESS
        }
        Err(message) => {
            eprintln!("error: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Vec<String>) -> Result<String, String> {
    let (mut app_id, mut key_path, mut now) = (None, None, None);
    let mut args = args.into_iter();
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value; {USAGE}"));
        match flag.as_str() {
            "--app-id" => app_id = Some(value()?),
            "--private-key" => key_path = Some(value()?),
            "--now" => {
                let v = value()?;
                now = Some(
                    v.parse::<i64>()
                        .map_err(|_| format!("--now `{v}` is not a whole number of Unix seconds"))?,
                );
            }
            "-h" | "--help" => return Ok(format!("Prints one app JWT.\n\n{USAGE}\n\n{OPTIONS}")),
            // Quoted only in part, token-like runs redacted: a key pasted here must not be echoed.
            other => return Err(format!("unknown argument `{}`; {USAGE}", excerpt(other, 40))),
        }
    }
    let app_id =
        AppId::new(app_id.ok_or_else(|| format!("--app-id is required; {USAGE}"))?).map_err(|e| e.to_string())?;
    let key_path = key_path.ok_or_else(|| format!("--private-key is required; {USAGE}"))?;
    // Neither message quotes the value: it may be the key itself rather than a path.
    let bytes = std::fs::read(&key_path)
        .map_err(|e| format!("--private-key names no readable file ({e}); give the path of the app's key file"))?;
    let key = AppKey::parse(&bytes).map_err(|e| format!("the file given as --private-key holds no usable key: {e}"))?;
    let signer = JwtSigner::new(app_id, Arc::new(key));
    let at = match now {
        Some(secs) => Timestamp::from_unix_seconds(secs),
        None => Timestamp::from_system_time(SystemTime::now()),
    };
    let jwt = signer.mint_at(at, ClockOffset::default()).map_err(|e| e.to_string())?;
    Ok(jwt.token().expose().to_owned())
}
