//! The results database: a SQLite file, or a PostgreSQL server that workers on many machines
//! share. Both go through sqlx's `Any` driver with the same statements, written once in a
//! portable form that [`dialect`] turns into each database's text. All SQL of the project lives
//! in this module. Calls block: the store owns a small tokio runtime so the rest of the code
//! stays synchronous.

mod claims;
mod dialect;
mod encoding;
mod filter;
mod housekeeping;
mod lineage;
mod location;
mod queries;
mod queue;
mod records;
mod views;

pub use claims::StoredTrial;
pub use dialect::Backend;
pub use filter::{Bind, Filter, SortKey, field_names, parse as parse_filter, parse_sort};
pub use housekeeping::HeldTrial;
pub use location::Location;
pub use queries::{CheckpointRow, EpochRow, TrialListing, TrialQuery};
pub use views::{RecordedEpoch, SweepOverview, SweepVersion, TrialHolder};

use crate::error::{DISK_FULL_FIX, Error, Result};
use crate::trial::{Lease, TrialId};
use sqlx::AnyPool;
use sqlx::any::AnyPoolOptions;
use sqlx::migrate::Migrator;
use std::path::PathBuf;
use std::time::Duration;

/// How long a SQLite connection waits for another process's write lock.
const SQLITE_BUSY_TIMEOUT_MS: u32 = 30_000;

/// How long a PostgreSQL session of ours may sit in an open transaction before the server ends
/// it. Our transactions never wait on anything but the server, so only a stalled process (a
/// SIGSTOP, a frozen machine) reaches it; without it, the row locks it holds would hide its trial
/// from every takeover (claims skip locked rows) for as long as it stays stalled.
const POSTGRES_STALLED_TRANSACTION_MS: u32 = 5_000;

static SQLITE_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/sqlite");
static POSTGRES_MIGRATIONS: Migrator = sqlx::migrate!("./migrations/postgres");

/// An open results database.
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    runtime: tokio::runtime::Runtime,
    location: Location,
}

/// What a connection may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Read and write, creating a SQLite file that is missing; migrations applied.
    Create,
    /// Read and write an existing database; migrations applied.
    Write,
    /// Read only, enforced by the database (`sweep serve`); migrations checked, never applied.
    ReadOnly,
}

/// A directory given as the SQLite file: SQLite would say only "unable to open database file".
fn refuse_directory(location: &Location) -> Result<()> {
    match location {
        Location::Sqlite(path) if path.is_dir() => Err(Error::Store {
            path: path.clone(),
            message: format!(
                "is a directory: --db takes a file (such as {}) or a postgres:// URL",
                path.join("sweep.db").display()
            ),
        }),
        _ => Ok(()),
    }
}

/// Whether SQLite said the file is not a database (its code 26, SQLITE_NOTADB).
fn is_not_a_database(e: &sqlx::Error) -> bool {
    matches!(e, sqlx::Error::Database(db) if db.code().as_deref() == Some("26"))
}

impl Store {
    /// Opens (creating a SQLite file if needed) the database and applies pending migrations.
    pub fn open(location: impl Into<Location>) -> Result<Store> {
        Self::connect(location.into(), Access::Create)
    }

    /// Opens an existing database; a missing SQLite file is an error that says how to make
    /// one.
    pub fn open_existing(location: impl Into<Location>) -> Result<Store> {
        Self::open_existing_as(location.into(), Access::Write)
    }

    /// Opens an existing database for reading only: the database itself refuses writes through
    /// this store (SQLite `mode=ro` and `query_only`, PostgreSQL
    /// `default_transaction_read_only`), and pending migrations are an error, not applied.
    pub fn open_read_only(location: impl Into<Location>) -> Result<Store> {
        Self::open_existing_as(location.into(), Access::ReadOnly)
    }

    fn open_existing_as(location: Location, access: Access) -> Result<Store> {
        refuse_directory(&location)?;
        if let Location::Sqlite(path) = &location
            && !path.is_file()
        {
            return Err(Error::NotFound(format!(
                "no results database at {}: run `sweep run EXPERIMENT.toml --db {}` first, \
                 or pass --db with the file a sweep wrote",
                path.display(),
                path.display()
            )));
        }
        Self::connect(location, access)
    }

    fn connect(location: Location, access: Access) -> Result<Store> {
        let create = access == Access::Create;
        let read_only = access == Access::ReadOnly;
        sqlx::any::install_default_drivers();
        refuse_directory(&location)?;
        if let Location::Sqlite(path) = &location
            && let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && create
        {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io(std::path::Path::new("tokio runtime"), e))?;
        let store_error = |message: String| Error::Store {
            path: PathBuf::from(location.to_string()),
            message,
        };
        let backend = location.backend();
        let url = match (&location, read_only) {
            (Location::Sqlite(_), true) => location.url(false).replace("mode=rw", "mode=ro"),
            _ => location.url(create),
        };
        let options = AnyPoolOptions::new()
            // The web view answers several requests at once (and computes analyses in the
            // background); everything else is one thread of work per store.
            .max_connections(if read_only { 4 } else { 1 })
            // Short, so that a server that is down fails each attempt quickly and the caller's
            // retries (with their own backoff) decide how long to wait.
            .acquire_timeout(Duration::from_secs(5))
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    use sqlx::Executor;
                    if read_only {
                        let statement = match backend {
                            Backend::Sqlite => format!(
                                "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS};
                                 PRAGMA query_only = ON;"
                            ),
                            Backend::Postgres => {
                                "SET default_transaction_read_only = on".to_string()
                            }
                        };
                        conn.execute(statement.as_str()).await?;
                    } else if backend == Backend::Sqlite {
                        // WAL lets readers work beside the one writer; NORMAL sync is safe
                        // with WAL (a power cut loses at most the last commits, never the file).
                        conn.execute(
                            format!(
                                "PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS};
                                 PRAGMA journal_mode = WAL;
                                 PRAGMA synchronous = NORMAL;
                                 PRAGMA foreign_keys = ON;"
                            )
                            .as_str(),
                        )
                        .await?;
                    } else {
                        conn.execute(
                            format!(
                                "SET idle_in_transaction_session_timeout = \
                                 {POSTGRES_STALLED_TRANSACTION_MS}"
                            )
                            .as_str(),
                        )
                        .await?;
                    }
                    Ok(())
                })
            });
        // A pool retries a file that is not SQLite's until its timeout and then reports only
        // that, so one plain connection asks first. (Through SQLite, never by reading the file
        // ourselves: closing any descriptor of the file drops this process's SQLite locks on it.)
        if let Location::Sqlite(path) = &location
            && path.metadata().is_ok_and(|m| m.len() > 0)
        {
            let probe = runtime.block_on(async {
                use sqlx::{Connection, Executor};
                let mut conn = sqlx::AnyConnection::connect(&url).await?;
                conn.execute("PRAGMA schema_version").await?;
                conn.close().await
            });
            if let Err(e) = probe
                && is_not_a_database(&e)
            {
                return Err(store_error(
                    "not a SQLite database, so not a sweep results file; it was left as it is: \
                     pass --db with another file"
                        .into(),
                ));
            }
        }
        // Two processes opening a new SQLite file at once race to create it and switch it to
        // WAL; the loser can see "database is locked" before its busy timeout applies. The file
        // is usable a moment later.
        let connect = || runtime.block_on(options.clone().connect(&url));
        let mut pool = connect();
        for _ in 0..5 {
            match &pool {
                Err(e) if e.to_string().contains("locked") => {
                    std::thread::sleep(Duration::from_millis(200));
                    pool = connect();
                }
                _ => break,
            }
        }
        let pool = pool.map_err(|e| store_error(location.connect_hint(&e)))?;
        // SQLite migrations take no cross-process lock: when two processes open a new file at
        // once, the loser's attempt fails on tables the winner just made. Trying again sees the
        // migrations applied. PostgreSQL's migrator holds an advisory lock while it works.
        let migrator = match backend {
            Backend::Sqlite => &SQLITE_MIGRATIONS,
            Backend::Postgres => &POSTGRES_MIGRATIONS,
        };
        if read_only {
            let store = Store {
                pool,
                backend,
                runtime,
                location,
            };
            store.require_migrations(migrator)?;
            return Ok(store);
        }
        let migrate = || runtime.block_on(migrator.run(&pool));
        let mut outcome = migrate();
        for _ in 0..3 {
            if outcome.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            outcome = migrate();
        }
        outcome.map_err(|e| {
            store_error(format!(
                "{e} (is this a sweep database? a database written by a newer sweep needs \
                 that version)"
            ))
        })?;
        Ok(Store {
            pool,
            backend,
            runtime,
            location,
        })
    }

    /// A read-only store cannot migrate, so a database an older sweep wrote is an error that
    /// says how to bring it up to date.
    fn require_migrations(&self, migrator: &Migrator) -> Result<()> {
        let latest = migrator.iter().map(|m| m.version).max().unwrap_or(0);
        let applied: Option<i64> = self
            .runtime
            .block_on(
                sqlx::query_scalar(
                    "SELECT MAX(version) FROM _sqlx_migrations WHERE success = TRUE",
                )
                .fetch_one(&self.pool),
            )
            .ok()
            .flatten();
        match applied {
            Some(applied) if applied >= latest => Ok(()),
            _ => Err(Error::Store {
                path: PathBuf::from(self.location.to_string()),
                message: format!(
                    "is not a sweep database of this version (its schema is not up to date), \
                     and a read-only connection cannot update it: run `sweep ls --db {}` once, \
                     which does",
                    self.location
                ),
            }),
        }
    }

    /// Where the database is.
    pub fn location(&self) -> &Location {
        &self.location
    }

    fn err(&self, e: sqlx::Error) -> Error {
        if unreachable(&e) {
            return Error::Unreachable {
                path: PathBuf::from(self.location.to_string()),
                message: e.to_string(),
            };
        }
        let message = match &e {
            sqlx::Error::Database(db) if db.message().contains("full") => {
                format!("{e} ({DISK_FULL_FIX})")
            }
            _ => e.to_string(),
        };
        Error::Store {
            path: PathBuf::from(self.location.to_string()),
            message,
        }
    }

    fn execute(&self, sql: &str, id: i64) -> Result<()> {
        self.runtime
            .block_on(
                sqlx::query(self.backend.sql(sql))
                    .bind(id)
                    .execute(&self.pool),
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Runs statements that each take the trial id as their one parameter, all or none, while
    /// `lease` holds the trial ([`Error::LeaseLost`] and nothing written otherwise).
    fn fenced_transaction(
        &self,
        trial_id: TrialId,
        lease: Lease,
        statements: &[&str],
    ) -> Result<()> {
        self.runtime
            .block_on(async {
                let mut tx = self.pool.begin().await?;
                if !records::hold(&mut tx, self.backend, trial_id, lease).await? {
                    return Ok(false);
                }
                for sql in statements {
                    sqlx::query(self.backend.sql(sql))
                        .bind(trial_id)
                        .execute(&mut *tx)
                        .await?;
                }
                tx.commit().await.map(|_| true)
            })
            .map_err(|e| self.err(e))
            .and_then(|held| records::fenced(held, trial_id))
    }
}

/// Whether an error says the server is out of reach rather than that the statement is wrong:
/// a broken or refused connection, PostgreSQL shutting down, starting up or dropping us (25P03:
/// it ended our transaction after [`POSTGRES_STALLED_TRANSACTION_MS`] stalled; the write is
/// tried again on a new connection, and refused there if the trial was taken over meanwhile);
/// and a SQLite file that other processes kept locked ([`sqlite_busy`]).
fn unreachable(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Io(_) | sqlx::Error::PoolTimedOut | sqlx::Error::Tls(_) => true,
        sqlx::Error::Protocol(_) => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| {
            code.starts_with("08")
                || code.starts_with("57P")
                || code == "25P03"
                || sqlite_busy(&code, db.message())
        }),
        _ => false,
    }
}

/// SQLite's "database is locked" (`SQLITE_BUSY`, `SQLITE_LOCKED` and their extended codes):
/// another connection held the lock past the busy timeout, or SQLite returned at once rather
/// than wait where waiting could deadlock. The same statement succeeds once the other
/// transaction ends, so callers retry it as they retry an unreachable server (seen under load:
/// a worker taking a trial over quit on it, losing nothing but leaving the trial to the next).
fn sqlite_busy(code: &str, message: &str) -> bool {
    code.parse::<u32>()
        .is_ok_and(|code| matches!(code & 0xff, 5 | 6))
        && message.contains("locked")
}

/// A measurement as bound: NaN and infinities (and missing values, see [`missing`]) become NaN,
/// which statements store as NULL through `nan_null(?)`. NULL rather than NaN, because
/// PostgreSQL would keep a NaN and sort it above every number.
fn measured(value: f64) -> f64 {
    if value.is_finite() { value } else { f64::NAN }
}

/// A measurement that may be absent, as bound (see [`measured`]).
fn missing(value: Option<f64>) -> f64 {
    value.map_or(f64::NAN, measured)
}

#[cfg(test)]
mod tests {
    use super::*;
    use sqlx::sqlite::{SqliteConnectOptions, SqlitePoolOptions};
    use std::str::FromStr;

    /// A real SQLite "database is locked" (a second writer that may not wait) is retried like
    /// an unreachable server; a wrong statement is not.
    #[test]
    fn a_locked_sqlite_file_is_retried_and_a_wrong_statement_is_not() {
        use sqlx::{Connection, Executor};
        let dir = tempfile::tempdir().unwrap();
        let url = format!("sqlite://{}?mode=rwc", dir.path().join("busy.db").display());
        sqlx::any::install_default_drivers();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let (locked, wrong) = runtime.block_on(async {
            let mut holder = sqlx::AnyConnection::connect(&url).await.unwrap();
            holder
                .execute("PRAGMA journal_mode = WAL; CREATE TABLE t (x INTEGER)")
                .await
                .unwrap();
            holder.execute("BEGIN IMMEDIATE").await.unwrap();
            let mut other = sqlx::AnyConnection::connect(&url).await.unwrap();
            other.execute("PRAGMA busy_timeout = 0").await.unwrap();
            let locked = other.execute("INSERT INTO t VALUES (1)").await.unwrap_err();
            let wrong = other
                .execute("INSERT INTO missing VALUES (1)")
                .await
                .unwrap_err();
            (locked, wrong)
        });
        assert!(unreachable(&locked), "{locked}");
        assert!(!unreachable(&wrong), "{wrong}");
    }

    /// A database made by the migrations before `pruned`/`paused`, with a trial and its
    /// children, keeps every row when opened by this version, and takes the new statuses.
    #[test]
    fn the_status_migration_keeps_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let options = SqliteConnectOptions::from_str("sqlite:")
                .unwrap()
                .filename(&path)
                .create_if_missing(true)
                .foreign_keys(true);
            let pool = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(options)
                .await
                .unwrap();
            let mut old = sqlx::migrate!("./migrations/sqlite");
            old.migrations = std::borrow::Cow::Owned(old.migrations[..3].to_vec());
            old.run(&pool).await.unwrap();
            for sql in [
                "INSERT INTO sweeps VALUES (1, 's', '{}', 'h', NULL, '0', '0', 't', NULL, NULL)",
                "INSERT INTO trials (id, sweep_id, ordinal, trial_key, params_json, arch,
                     optimizer, lr, batch_size, epochs, dropout, weight_decay, split, seed,
                     repeat, status, owner)
                 VALUES (7, 1, 0, 'k', '{}', 'mlp', 'adam', 0.1, 8, 2, 0, 0, 0.9, 0, 0, 'done',
                     'me')",
                "INSERT INTO epochs VALUES (7, 1, 0.5, 0.6, 0.7, 0.8, 1.5, 't', 1.25)",
                "INSERT INTO checkpoints VALUES (7, 'best', 1, 'p', 10, 'abc', 't')",
                "INSERT INTO class_metrics VALUES (7, 3, 4, 5, 0.8)",
                "INSERT INTO confusion VALUES (7, 1, 2, 3)",
            ] {
                sqlx::query(sql).execute(&pool).await.unwrap();
            }
            pool.close().await;
        });

        let store = Store::open_existing(&path).unwrap();
        let epochs = store.epochs(TrialId(7)).unwrap();
        assert_eq!(epochs.len(), 1);
        assert_eq!(epochs[0].train_seconds, Some(1.25));
        assert_eq!(store.checkpoints(TrialId(7)).unwrap()[0].sha256, "abc");
        assert_eq!(store.confusion(TrialId(7)).unwrap(), vec![(1, 2, 3)]);
        store
            .execute("UPDATE trials SET status = 'paused' WHERE id = ?", 7)
            .unwrap();
        assert_eq!(
            store.trial(TrialId(7)).unwrap().unwrap().status,
            crate::trial::TrialStatus::Paused
        );
        // Children still belong to the trial: deleting it cascades.
        store.execute("DELETE FROM trials WHERE id = ?", 7).unwrap();
        assert!(store.epochs(TrialId(7)).unwrap().is_empty());
        assert!(store.confusion(TrialId(7)).unwrap().is_empty());
    }
}
