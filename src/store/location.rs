//! Where the results live: `--db` / `SWEEP_DB` names a SQLite file or a PostgreSQL URL.

use super::Backend;
use std::path::{Path, PathBuf};

/// A results database: a SQLite file (the default), or a PostgreSQL database that workers on
/// many machines share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A `postgres://` or `postgresql://` URL.
    Postgres(String),
}

impl Location {
    /// Reads `--db`: a PostgreSQL URL, or else a file path.
    pub fn parse(text: &str) -> Location {
        if text.starts_with("postgres://") || text.starts_with("postgresql://") {
            Location::Postgres(text.to_string())
        } else {
            Location::Sqlite(PathBuf::from(text))
        }
    }

    /// Which database it is.
    pub fn backend(&self) -> Backend {
        match self {
            Location::Sqlite(_) => Backend::Sqlite,
            Location::Postgres(_) => Backend::Postgres,
        }
    }

    /// The SQLite file, if it is one.
    pub fn file(&self) -> Option<&Path> {
        match self {
            Location::Sqlite(path) => Some(path),
            Location::Postgres(_) => None,
        }
    }

    /// The URL sqlx connects to; a SQLite file is created when `create` is set.
    pub(super) fn url(&self, create: bool) -> String {
        match self {
            Location::Postgres(url) => url.clone(),
            Location::Sqlite(path) => {
                // Any byte that could read as URL syntax (`?`, `#`, `%`, spaces) is escaped;
                // sqlx decodes the path back.
                let mut encoded = String::new();
                for byte in path.as_os_str().as_encoded_bytes() {
                    match byte {
                        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'/' | b'.' | b'-' | b'_' => {
                            encoded.push(*byte as char)
                        }
                        other => encoded.push_str(&format!("%{other:02X}")),
                    }
                }
                let mode = if create { "rwc" } else { "rw" };
                format!("sqlite://{encoded}?mode={mode}")
            }
        }
    }

    /// The message for a failed connection, with what to check.
    pub(super) fn connect_hint(&self, e: &sqlx::Error) -> String {
        match self {
            Location::Sqlite(_) => e.to_string(),
            Location::Postgres(_) => format!(
                "cannot connect: {e} (is the PostgreSQL server running and reachable, and do \
                 the user, password and database in the URL exist? `psql URL` tries the same)"
            ),
        }
    }
}

impl Default for Location {
    /// `sweep.db` in the working directory, as `--db` defaults to.
    fn default() -> Location {
        Location::Sqlite(PathBuf::from("sweep.db"))
    }
}

impl std::fmt::Display for Location {
    /// The file path, or the URL with its password hidden.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Sqlite(path) => path.display().fmt(f),
            Location::Postgres(url) => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
                let shown = match rest.split_once('@') {
                    Some((credentials, host)) => match credentials.split_once(':') {
                        Some((user, _)) => format!("{user}:***@{host}"),
                        None => rest.to_string(),
                    },
                    None => rest.to_string(),
                };
                write!(f, "{scheme}://{shown}")
            }
        }
    }
}

impl std::str::FromStr for Location {
    type Err = std::convert::Infallible;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Ok(Location::parse(text))
    }
}

impl From<&Path> for Location {
    fn from(path: &Path) -> Location {
        path.to_str()
            .map_or_else(|| Location::Sqlite(path.to_path_buf()), Location::parse)
    }
}

impl From<&PathBuf> for Location {
    fn from(path: &PathBuf) -> Location {
        Location::from(path.as_path())
    }
}

impl From<PathBuf> for Location {
    fn from(path: PathBuf) -> Location {
        Location::from(path.as_path())
    }
}

impl From<&Location> for Location {
    fn from(location: &Location) -> Location {
        location.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_postgres_and_the_rest_are_files() {
        let pg = Location::parse("postgres://sweep:secret@db.example:5432/sweeps");
        assert_eq!(pg.backend(), Backend::Postgres);
        assert_eq!(
            pg.to_string(),
            "postgres://sweep:***@db.example:5432/sweeps"
        );
        assert_eq!(
            Location::parse("postgresql://db/sweeps").to_string(),
            "postgresql://db/sweeps"
        );
        let file = Location::parse("results/a b?.db");
        assert_eq!(file.file(), Some(Path::new("results/a b?.db")));
        assert_eq!(file.url(true), "sqlite://results/a%20b%3F.db?mode=rwc");
    }
}
