//! Writing a command's output to standard output: data there, messages on standard error.

use std::io::Write;
use sweep::{Error, Result};

/// Writes a command's output. A closed pipe (`sweep ls | head`) is not an error worth a
/// message; any other failure (a full disk under `sweep export > results.csv`) is, since the
/// output is then incomplete.
pub fn print(text: &str) -> Result<i32> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|_| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => {
            Err(Error::io("standard output", e))
        }
        _ => Ok(0),
    }
}
