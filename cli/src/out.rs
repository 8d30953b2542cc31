//! Standard output for the commands. Every line the CLI prints goes through here rather than
//! `println!`, which panics when standard output is a pipe whose reader has gone
//! (`icr-app token | true`, `icr-app installations | head -1`).
//!
//! A closed pipe ends the command quietly with exit code 141, the status a shell reports for a
//! program stopped by SIGPIPE (as `cat` or `yes` are there), so `set -o pipefail` scripts treat
//! the CLI as they treat those. Any other write error (a full disk) is reported, exit code 1.

use std::io::Write as _;

use crate::Failure;

/// `outln!("...", args)`: one line on standard output, flushed; `Err(Failure::ClosedStdout)`
/// when the pipe is closed.
macro_rules! outln {
    ($($arg:tt)*) => {
        $crate::out::line(format_args!($($arg)*))
    };
}
pub(crate) use outln;

/// Writes one line to standard output and flushes it.
pub(crate) fn line(args: std::fmt::Arguments<'_>) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    checked(writeln!(stdout, "{args}").and_then(|()| stdout.flush()))
}

/// Writes `bytes` as they are to standard output and flushes them.
pub(crate) fn bytes(bytes: &[u8]) -> Result<(), Failure> {
    let mut stdout = std::io::stdout().lock();
    checked(stdout.write_all(bytes).and_then(|()| stdout.flush()))
}

/// A write's outcome: a closed pipe ends the command quietly, anything else is reported.
pub(crate) fn checked(result: std::io::Result<()>) -> Result<(), Failure> {
    result.map_err(|e| match e.kind() {
        std::io::ErrorKind::BrokenPipe => Failure::ClosedStdout,
        _ => Failure::Other(format!("cannot write to standard output: {e}")),
    })
}
