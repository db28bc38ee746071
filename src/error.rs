//! The one error type of the library: every failure a user can cause or meet names the problem
//! and, where there is one, the fix.

use std::path::PathBuf;

/// Everything that can go wrong in `sweep`, grouped by the room it comes from.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The experiment file could not be read or parsed, or a value in it is invalid.
    #[error("{0}")]
    Spec(String),
    /// The data set is missing, truncated or not in IDX format.
    #[error("{0}")]
    Data(String),
    /// A model could not be built, trained or loaded.
    #[error("{0}")]
    Train(String),
    /// The results database could not be opened, migrated, read or written.
    #[error("database {path}: {message}")]
    Store {
        /// The database file.
        path: PathBuf,
        /// What went wrong, with the fix where one is known.
        message: String,
    },
    /// The database server could not be reached (stopped, restarting, network lost), or a
    /// SQLite file stayed locked by other processes: the same operation may succeed later.
    #[error("database {path} is unreachable: {message}")]
    Unreachable {
        /// The database, its password hidden.
        path: PathBuf,
        /// What the driver said.
        message: String,
    },
    /// A file the run needs could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory concerned.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A query or report was asked for something that does not exist.
    #[error("{0}")]
    NotFound(String),
    /// The user asked for something the command line does not allow.
    #[error("{0}")]
    Usage(String),
    /// Another process took the trial over (this one's heartbeat was older than the timeout),
    /// so this one's writes for it are refused.
    #[error(
        "trial {trial} was taken over by another process (this one's heartbeat was older than \
         [sweep] heartbeat_timeout): its writes for the trial are refused"
    )]
    LeaseLost {
        /// The trial's database id.
        trial: i64,
    },
}

impl Error {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// The process exit status for this error: 2 for bad input, 1 for everything else.
    pub fn exit_code(&self) -> i32 {
        match self {
            Error::Spec(_) | Error::Usage(_) => 2,
            _ => 1,
        }
    }
}

/// What to do about a full disk, added to the error that met it.
pub const DISK_FULL_FIX: &str = "the disk is full: free space (`sweep gc` removes files no trial \
     needs) and run the same command again; finished trials are kept and unfinished ones continue \
     from their last complete epoch";

/// Whether an error's text says the disk (or the user's quota) is full. burn's recorders pass
/// I/O errors on as text, so the operating system's words are what is left to go by.
pub fn is_disk_full(message: &str) -> bool {
    message.contains("(os error 28)") || message.contains("(os error 122)")
}

/// Result with the crate's error type.
pub type Result<T, E = Error> = std::result::Result<T, E>;
