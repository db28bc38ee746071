//! Everything the commands print: data on standard output ([`print`]), messages for people on
//! standard error ([`note!`]).

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

/// Writes a line for people on standard error, where messages and logs go (data goes to
/// standard output through [`print`]). A standard error that cannot be written is no reason to
/// fail a command whose work is done.
pub fn write_note(line: std::fmt::Arguments) {
    let _ = writeln!(std::io::stderr().lock(), "{line}");
}

/// `note!(...)`: a line for people on standard error, formatted as `format!` does.
macro_rules! note {
    ($($arg:tt)*) => {
        $crate::commands::output::write_note(format_args!($($arg)*))
    };
}
pub(crate) use note;
