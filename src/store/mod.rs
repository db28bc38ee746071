//! The results database (SQLite through sqlx). All SQL of the project lives in this module.
//! Calls block: the store owns a small tokio runtime so the rest of the code stays synchronous.

mod filter;

pub use filter::{Bind, Filter, SortKey, field_names, parse as parse_filter, parse_sort};

use crate::error::{Error, Result};
use crate::experiment::{Metric, TrialSpec};
use crate::search::PastTrial;
use crate::train::{CheckpointInfo, EpochMetrics, TrainEvent, TrialEnd};
use serde::Serialize;
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Row, SqlitePool};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

const NOW: &str = "strftime('%Y-%m-%dT%H:%M:%fZ', 'now')";

/// An open results database.
pub struct Store {
    pool: SqlitePool,
    runtime: tokio::runtime::Runtime,
    path: PathBuf,
}

/// A trial as stored: its database id and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTrial {
    /// Database id.
    pub id: i64,
    /// Position in the expanded grid.
    pub ordinal: i64,
    /// Parameter fingerprint.
    pub key: String,
    /// pending, running, done, failed, diverged or interrupted.
    pub status: String,
}

/// One trial with its parameters and final figures, for listings.
#[derive(Debug, Clone, Serialize)]
pub struct TrialListing {
    /// Database id.
    pub id: i64,
    /// Sweep name.
    pub sweep: String,
    /// Status.
    pub status: String,
    /// Every parameter by its experiment-file name.
    #[serde(flatten)]
    pub params: serde_json::Map<String, serde_json::Value>,
    /// Device it ran on.
    pub device: Option<String>,
    /// Threads it was given.
    pub threads: Option<i64>,
    /// Epochs recorded.
    pub epochs_done: i64,
    /// Wall seconds.
    pub duration_s: Option<f64>,
    /// Final epoch's training loss.
    pub train_loss: Option<f64>,
    /// Final epoch's training accuracy.
    pub train_acc: Option<f64>,
    /// Final epoch's validation loss.
    pub val_loss: Option<f64>,
    /// Final epoch's validation accuracy.
    pub val_acc: Option<f64>,
    /// Epoch with the best validation metric.
    pub best_epoch: Option<i64>,
    /// Best validation accuracy over the epochs.
    pub best_val_acc: Option<f64>,
    /// Test loss of the final model.
    pub test_loss: Option<f64>,
    /// Test accuracy of the final model.
    pub test_acc: Option<f64>,
    /// Why it failed or diverged.
    pub error: Option<String>,
}

/// Which trials to list, and in what order.
#[derive(Debug, Clone, Default)]
pub struct TrialQuery {
    /// Only this sweep.
    pub sweep: Option<String>,
    /// Only trials matching this `--where` filter.
    pub filter: Option<Filter>,
    /// Sort keys, most significant first.
    pub sort: Vec<SortKey>,
    /// At most this many.
    pub limit: Option<usize>,
}

/// One stored epoch row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct EpochRow {
    /// 1-based epoch.
    pub epoch: i64,
    /// Training loss.
    pub train_loss: Option<f64>,
    /// Training accuracy.
    pub train_acc: Option<f64>,
    /// Validation loss.
    pub val_loss: Option<f64>,
    /// Validation accuracy.
    pub val_acc: Option<f64>,
    /// Wall seconds, training and validation.
    pub seconds: f64,
    /// Wall seconds of the training batches alone (absent in databases from before it was kept).
    pub train_seconds: Option<f64>,
}

/// One stored checkpoint row.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CheckpointRow {
    /// last or best.
    pub kind: String,
    /// Epoch it holds.
    pub epoch: i64,
    /// File path.
    pub path: String,
    /// Size in bytes.
    pub size_bytes: i64,
    /// Hex sha256.
    pub sha256: String,
}

impl Store {
    /// Opens (creating if needed) the database at `path` and applies pending migrations.
    pub fn open(path: &Path) -> Result<Store> {
        Self::connect(path, true)
    }

    /// Opens an existing database; a missing file is an error that says how to make one.
    pub fn open_existing(path: &Path) -> Result<Store> {
        if !path.is_file() {
            return Err(Error::NotFound(format!(
                "no results database at {}: run `sweep run EXPERIMENT.toml --db {}` first, \
                 or pass --db with the file a sweep wrote",
                path.display(),
                path.display()
            )));
        }
        Self::connect(path, false)
    }

    fn connect(path: &Path, create: bool) -> Result<Store> {
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty())
            && create
        {
            std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(|e| Error::io(path, e))?;
        let options = SqliteConnectOptions::from_str("sqlite:")
            .expect("static URL")
            .filename(path)
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(30));
        let store_error = |e: &dyn std::fmt::Display| Error::Store {
            path: path.to_path_buf(),
            message: e.to_string(),
        };
        // Two processes opening a new file at once race to create it and switch it to WAL;
        // the loser can see "database is locked" before its busy timeout applies. The file is
        // usable a moment later.
        let connect = || {
            runtime.block_on(
                SqlitePoolOptions::new()
                    .max_connections(1)
                    .connect_with(options.clone()),
            )
        };
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
        let pool = pool.map_err(|e| store_error(&e))?;
        // SQLite migrations take no cross-process lock: when two processes open a new file at
        // once, the loser's attempt fails on tables the winner just made. Trying again sees the
        // migrations applied.
        let migrate = || runtime.block_on(sqlx::migrate!("./migrations").run(&pool));
        let mut outcome = migrate();
        for _ in 0..3 {
            if outcome.is_ok() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
            outcome = migrate();
        }
        outcome.map_err(|e| Error::Store {
            path: path.to_path_buf(),
            message: format!(
                "{e} (is this a sweep database? a database written by a newer sweep needs \
                     that version)"
            ),
        })?;
        Ok(Store {
            pool,
            runtime,
            path: path.to_path_buf(),
        })
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    fn err(&self, e: sqlx::Error) -> Error {
        let hint = match &e {
            sqlx::Error::Database(db) if db.message().contains("full") => {
                " (the disk is full: free space and run the same command again; finished \
                 trials are kept)"
            }
            _ => "",
        };
        Error::Store {
            path: self.path.clone(),
            message: format!("{e}{hint}"),
        }
    }

    /// Creates the sweep, or returns the id of the existing sweep of that name with its spec
    /// updated to the latest file.
    pub fn upsert_sweep(
        &self,
        name: &str,
        spec_json: &str,
        spec_hash: &str,
        source: &Path,
    ) -> Result<i64> {
        self.runtime.block_on(async {
            let sql = format!(
                "INSERT INTO sweeps (name, spec_json, spec_hash, source_path, sweep_version,
                                     burn_version, created_at, started_at)
                 VALUES (?, ?, ?, ?, ?, ?, {NOW}, {NOW})
                 ON CONFLICT (name) DO UPDATE SET spec_json = excluded.spec_json,
                     spec_hash = excluded.spec_hash, source_path = excluded.source_path,
                     sweep_version = excluded.sweep_version, started_at = {NOW},
                     finished_at = NULL
                 RETURNING id"
            );
            sqlx::query(&sql)
                .bind(name)
                .bind(spec_json)
                .bind(spec_hash)
                .bind(source.display().to_string())
                .bind(env!("CARGO_PKG_VERSION"))
                .bind(crate::BURN_VERSION)
                .fetch_one(&self.pool)
                .await
                .map(|row| row.get::<i64, _>(0))
                .map_err(|e| self.err(e))
        })
    }

    /// Records the end time of a sweep run.
    pub fn finish_sweep(&self, sweep_id: i64) -> Result<()> {
        self.execute(
            &format!("UPDATE sweeps SET finished_at = {NOW} WHERE id = ?"),
            sweep_id,
        )
    }

    fn execute(&self, sql: &str, id: i64) -> Result<()> {
        self.runtime
            .block_on(sqlx::query(sql).bind(id).execute(&self.pool))
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Adds the trials the sweep does not hold yet and returns every listed trial's row, in the
    /// order given.
    pub fn sync_trials(&self, sweep_id: i64, trials: &[TrialSpec]) -> Result<Vec<StoredTrial>> {
        self.runtime.block_on(async {
            let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
            let mut stored = Vec::with_capacity(trials.len());
            for (ordinal, trial) in trials.iter().enumerate() {
                let key = trial.key();
                insert_trial(&mut tx, sweep_id, ordinal as i64, trial)
                    .await
                    .map_err(|e| self.err(e))?;
                let row = sqlx::query(
                    "SELECT id, ordinal, status FROM trials WHERE sweep_id = ? AND trial_key = ?",
                )
                .bind(sweep_id)
                .bind(&key)
                .fetch_one(&mut *tx)
                .await
                .map_err(|e| self.err(e))?;
                stored.push(StoredTrial {
                    id: row.get(0),
                    ordinal: row.get(1),
                    key,
                    status: row.get(2),
                });
            }
            tx.commit().await.map_err(|e| self.err(e))?;
            Ok(stored)
        })
    }

    /// Takes an unfinished trial for the process `owner`, in one write transaction so that two
    /// processes never both take it. A trial held by another process is only taken over when
    /// `holder_alive` says that process is gone, or, when it cannot tell (another host), when
    /// the holder's heartbeat is older than `stale_after`. Returns the status the trial had, or
    /// `None` when it is finished or held by a live process.
    pub fn claim_trial(
        &self,
        trial_id: i64,
        owner: &str,
        holder_alive: impl Fn(&str) -> Option<bool>,
        stale_after: Duration,
        promote: bool,
    ) -> Result<Option<String>> {
        self.runtime
            .block_on(async {
                let mut conn = self.pool.acquire().await?;
                // IMMEDIATE takes the write lock before reading, so the read below cannot go
                // stale before the update.
                sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
                let claim = async {
                    let row: Option<(String, Option<String>, Option<f64>)> = sqlx::query_as(
                        "SELECT status, owner,
                                (julianday('now') - julianday(heartbeat_at)) * 86400.0
                         FROM trials WHERE id = ?",
                    )
                    .bind(trial_id)
                    .fetch_optional(&mut *conn)
                    .await?;
                    let Some((status, holder, heartbeat_age)) = row else {
                        return Ok(None);
                    };
                    let free = match status.as_str() {
                        "done" | "diverged" | "pruned" => false,
                        // Paused trials are continued only by a promotion.
                        "paused" => promote,
                        "running" => match holder.as_deref().map(&holder_alive) {
                            Some(Some(alive)) => !alive,
                            _ => heartbeat_age.is_none_or(|age| age > stale_after.as_secs_f64()),
                        },
                        _ => true,
                    };
                    if !free {
                        return Ok(None);
                    }
                    sqlx::query(&format!(
                        "UPDATE trials SET status = 'running', owner = ?, heartbeat_at = {NOW}
                         WHERE id = ?"
                    ))
                    .bind(owner)
                    .bind(trial_id)
                    .execute(&mut *conn)
                    .await?;
                    Ok::<_, sqlx::Error>(Some(status))
                }
                .await;
                let end = if claim.is_ok() { "COMMIT" } else { "ROLLBACK" };
                sqlx::query(end).execute(&mut *conn).await?;
                claim
            })
            .map_err(|e| self.err(e))
    }

    /// Draws new trials inside one write transaction, so two processes never draw the same
    /// number and the budget holds exactly: when the sweep has fewer than `limit` trials,
    /// `draw(number, history)` gives the trials of draw `number` (from the sweep's trials in
    /// draw order), which are added, the first claimed for `owner`. Returns its id and spec.
    pub fn claim_new_trial(
        &self,
        sweep_id: i64,
        owner: &str,
        limit: usize,
        per_draw: usize,
        metric: Metric,
        draw: impl FnOnce(u64, &[PastTrial]) -> Vec<TrialSpec>,
    ) -> Result<Option<(i64, TrialSpec)>> {
        self.runtime
            .block_on(async {
                let mut conn = self.pool.acquire().await?;
                sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
                let claim = async {
                    let count: i64 =
                        sqlx::query_scalar("SELECT COUNT(*) FROM trials WHERE sweep_id = ?")
                            .bind(sweep_id)
                            .fetch_one(&mut *conn)
                            .await?;
                    if count as usize >= limit {
                        return Ok(None);
                    }
                    let past = read_past_trials(&mut conn, sweep_id, metric).await?;
                    let trials = draw(count as u64 / per_draw.max(1) as u64, &past);
                    let mut first = None;
                    for (i, trial) in trials.iter().enumerate() {
                        let id = insert_trial(&mut conn, sweep_id, count + i as i64, trial).await?;
                        if i == 0 {
                            sqlx::query(&format!(
                                "UPDATE trials SET status = 'running', owner = ?,
                                     heartbeat_at = {NOW} WHERE id = ?"
                            ))
                            .bind(owner)
                            .bind(id)
                            .execute(&mut *conn)
                            .await?;
                            first = Some((id, trial.clone()));
                        }
                    }
                    Ok::<_, sqlx::Error>(first)
                }
                .await;
                let end = if claim.is_ok() { "COMMIT" } else { "ROLLBACK" };
                sqlx::query(end).execute(&mut *conn).await?;
                claim
            })
            .map_err(|e| self.err(e))
    }

    /// Every trial of a sweep in draw order, with its `metric` by epoch, for samplers and
    /// pruners.
    pub fn past_trials(&self, sweep_id: i64, metric: Metric) -> Result<Vec<PastTrial>> {
        self.runtime
            .block_on(async {
                let mut conn = self.pool.acquire().await?;
                read_past_trials(&mut conn, sweep_id, metric).await
            })
            .map_err(|e| self.err(e))
    }

    /// Ends the sweep's paused trials as pruned, unless a trial of it is still running (which
    /// may yet make one of them promotable). Returns how many were pruned.
    pub fn prune_paused(&self, sweep_id: i64) -> Result<u64> {
        self.runtime
            .block_on(
                sqlx::query(
                    "UPDATE trials SET status = 'pruned'
                     WHERE sweep_id = ?1 AND status = 'paused' AND NOT EXISTS
                         (SELECT 1 FROM trials WHERE sweep_id = ?1 AND status = 'running')",
                )
                .bind(sweep_id)
                .execute(&self.pool),
            )
            .map(|r| r.rows_affected())
            .map_err(|e| self.err(e))
    }

    /// A sweep's trials as stored: id, status and parameters, in draw order.
    pub fn sweep_trials(&self, sweep_id: i64) -> Result<Vec<(StoredTrial, TrialSpec)>> {
        let rows: Vec<(i64, i64, String, String, String)> = self
            .runtime
            .block_on(
                sqlx::query_as(
                    "SELECT id, ordinal, trial_key, status, params_json FROM trials
                     WHERE sweep_id = ? ORDER BY ordinal",
                )
                .bind(sweep_id)
                .fetch_all(&self.pool),
            )
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(id, ordinal, key, status, params)| {
                let spec = serde_json::from_str(&params).map_err(|e| Error::Store {
                    path: self.path.clone(),
                    message: format!("trial {id} has unreadable parameters: {e}"),
                })?;
                Ok((
                    StoredTrial {
                        id,
                        ordinal,
                        key,
                        status,
                    },
                    spec,
                ))
            })
            .collect()
    }

    /// Marks every trial that `owner` is running as alive now.
    pub fn heartbeat(&self, owner: &str) -> Result<()> {
        self.runtime
            .block_on(
                sqlx::query(&format!(
                    "UPDATE trials SET heartbeat_at = {NOW} WHERE owner = ? AND status = 'running'"
                ))
                .bind(owner)
                .execute(&self.pool),
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Clears what an unfinished attempt of a claimed trial left (epochs, checkpoints, results)
    /// so it can start again cleanly.
    pub fn reset_trial(&self, trial_id: i64) -> Result<()> {
        self.in_one_transaction(
            trial_id,
            &[
                "DELETE FROM epochs WHERE trial_id = ?",
                "DELETE FROM checkpoints WHERE trial_id = ?",
                "DELETE FROM class_metrics WHERE trial_id = ?",
                "DELETE FROM confusion WHERE trial_id = ?",
                "UPDATE trials SET epochs_done = 0, started_at = NULL,
                     finished_at = NULL, duration_s = NULL,
                     train_loss = NULL, train_acc = NULL, val_loss = NULL, val_acc = NULL,
                     best_epoch = NULL, best_val_acc = NULL, best_val_loss = NULL,
                     test_loss = NULL, test_acc = NULL, error = NULL
                 WHERE id = ?",
            ],
        )
    }

    /// Prepares an unfinished, claimed trial to continue after its recorded epochs: keeps its epoch and
    /// checkpoint rows, clears its end state.
    pub fn rewind_trial(&self, trial_id: i64) -> Result<()> {
        self.in_one_transaction(
            trial_id,
            &[
                "DELETE FROM class_metrics WHERE trial_id = ?",
                "DELETE FROM confusion WHERE trial_id = ?",
                "UPDATE trials SET finished_at = NULL, duration_s = NULL,
                     test_loss = NULL, test_acc = NULL, error = NULL
                 WHERE id = ?",
            ],
        )
    }

    /// Writes the epochs and checkpoint rows that a trial's files hold and the database does not
    /// (a kill came between the two), all or none.
    pub fn catch_up(
        &self,
        trial_id: i64,
        epochs: &[EpochMetrics],
        checkpoints: &[CheckpointInfo],
    ) -> Result<()> {
        self.runtime
            .block_on(async {
                let mut tx = self.pool.begin().await?;
                for metrics in epochs {
                    record_epoch(&mut tx, trial_id, metrics).await?;
                }
                for checkpoint in checkpoints {
                    record_checkpoint(&mut tx, trial_id, checkpoint).await?;
                }
                tx.commit().await
            })
            .map_err(|e| self.err(e))
    }

    /// Runs statements that each take the trial id as their one parameter, all or none.
    fn in_one_transaction(&self, trial_id: i64, statements: &[&str]) -> Result<()> {
        self.runtime.block_on(async {
            let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
            for sql in statements {
                sqlx::query(sql)
                    .bind(trial_id)
                    .execute(&mut *tx)
                    .await
                    .map_err(|e| self.err(e))?;
            }
            tx.commit().await.map_err(|e| self.err(e))
        })
    }

    /// Persists one training event.
    pub fn apply(&self, event: &TrainEvent) -> Result<()> {
        self.runtime
            .block_on(async {
                match event {
                    TrainEvent::Started {
                        trial,
                        device,
                        threads,
                    } => {
                        sqlx::query(&format!(
                            "UPDATE trials SET status = 'running', device = ?, threads = ?,
                             started_at = {NOW}, heartbeat_at = {NOW}, error = NULL
                         WHERE id = ?"
                        ))
                        .bind(device)
                        .bind(*threads as i64)
                        .bind(trial)
                        .execute(&self.pool)
                        .await?;
                    }
                    TrainEvent::Epoch {
                        trial,
                        metrics,
                        checkpoints,
                    } => {
                        let mut tx = self.pool.begin().await?;
                        record_epoch(&mut tx, *trial, metrics).await?;
                        for checkpoint in checkpoints {
                            record_checkpoint(&mut tx, *trial, checkpoint).await?;
                        }
                        tx.commit().await?;
                    }
                    TrainEvent::Progress { .. } => {}
                    TrainEvent::Finished {
                        trial,
                        end,
                        seconds,
                    } => {
                        let mut tx = self.pool.begin().await?;
                        let (error, best_epoch, test_loss, test_acc) = match end {
                            TrialEnd::Done { test, best_epoch } => (
                                None,
                                Some(*best_epoch as i64),
                                test.as_ref().and_then(|t| finite(t.loss)),
                                test.as_ref().map(|t| t.accuracy),
                            ),
                            TrialEnd::Diverged { message } | TrialEnd::Failed { message } => {
                                (Some(message.clone()), None, None, None)
                            }
                            TrialEnd::Pruned { best_epoch } | TrialEnd::Paused { best_epoch } => {
                                (None, Some(*best_epoch as i64), None, None)
                            }
                            TrialEnd::Interrupted => (None, None, None, None),
                        };
                        sqlx::query(&format!(
                        "UPDATE trials SET status = ?, finished_at = {NOW}, heartbeat_at = {NOW},
                             duration_s = ?, error = ?, best_epoch = ?, test_loss = ?,
                             test_acc = ?
                         WHERE id = ?"
                    ))
                        .bind(end.status())
                        .bind(seconds)
                        .bind(error)
                        .bind(best_epoch)
                        .bind(test_loss)
                        .bind(test_acc)
                        .bind(trial)
                        .execute(&mut *tx)
                        .await?;
                        if let TrialEnd::Done {
                            test: Some(test), ..
                        } = end
                        {
                            for (class, (correct, total)) in
                                test.confusion.per_class().iter().enumerate()
                            {
                                sqlx::query(
                                    "INSERT OR REPLACE INTO class_metrics
                                     (trial_id, class, correct, total, accuracy)
                                 VALUES (?, ?, ?, ?, ?)",
                                )
                                .bind(trial)
                                .bind(class as i64)
                                .bind(*correct as i64)
                                .bind(*total as i64)
                                .bind((*total > 0).then(|| *correct as f64 / *total as f64))
                                .execute(&mut *tx)
                                .await?;
                            }
                            for (actual, row) in test.confusion.counts.iter().enumerate() {
                                for (predicted, count) in row.iter().enumerate() {
                                    sqlx::query(
                                        "INSERT OR REPLACE INTO confusion
                                         (trial_id, actual, predicted, count)
                                     VALUES (?, ?, ?, ?)",
                                    )
                                    .bind(trial)
                                    .bind(actual as i64)
                                    .bind(predicted as i64)
                                    .bind(*count as i64)
                                    .execute(&mut *tx)
                                    .await?;
                                }
                            }
                        }
                        tx.commit().await?;
                    }
                }
                Ok::<(), sqlx::Error>(())
            })
            .map_err(|e| self.err(e))
    }

    /// Every trial, optionally of one sweep, in sweep then grid order.
    pub fn list_trials(&self, sweep: Option<&str>) -> Result<Vec<TrialListing>> {
        self.query_trials(&TrialQuery {
            sweep: sweep.map(str::to_string),
            ..TrialQuery::default()
        })
    }

    /// The trials a query selects, in its order (then sweep and grid order).
    pub fn query_trials(&self, query: &TrialQuery) -> Result<Vec<TrialListing>> {
        let mut sql = String::from(
            "SELECT t.id, s.name, t.status, t.params_json, t.device, t.threads,
                    t.epochs_done, t.duration_s, t.train_loss, t.train_acc, t.val_loss,
                    t.val_acc, t.best_epoch, t.best_val_acc, t.test_loss, t.test_acc,
                    t.error
             FROM trials t JOIN sweeps s ON s.id = t.sweep_id
             WHERE (? IS NULL OR s.name = ?)",
        );
        if let Some(filter) = &query.filter {
            sql.push_str(&format!(" AND ({})", filter.sql));
        }
        sql.push_str(" ORDER BY ");
        for key in &query.sort {
            // Trials without the value (not finished) go last either way.
            let direction = if key.descending { "DESC" } else { "ASC" };
            sql.push_str(&format!("{0} IS NULL, {0} {direction}, ", key.sql));
        }
        sql.push_str("s.id, t.ordinal LIMIT ?");
        self.runtime.block_on(async {
            let mut statement = sqlx::query(&sql).bind(&query.sweep).bind(&query.sweep);
            for bind in query.filter.iter().flat_map(|f| &f.binds) {
                statement = match bind {
                    Bind::Number(n) => statement.bind(*n),
                    Bind::Text(t) => statement.bind(t.clone()),
                };
            }
            let limit = query.limit.map_or(-1, |n| n.min(i64::MAX as usize) as i64);
            let rows = statement
                .bind(limit)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
            rows.iter().map(|row| self.listing(row)).collect()
        })
    }

    /// One trial by id.
    pub fn trial(&self, id: i64) -> Result<Option<TrialListing>> {
        let query = TrialQuery {
            filter: Some(Filter {
                sql: "t.id = ?".into(),
                binds: vec![Bind::Number(id as f64)],
            }),
            ..TrialQuery::default()
        };
        Ok(self.query_trials(&query)?.into_iter().next())
    }

    fn listing(&self, row: &sqlx::sqlite::SqliteRow) -> Result<TrialListing> {
        let params: String = row.get(3);
        let params = match serde_json::from_str(&params) {
            Ok(serde_json::Value::Object(mut map)) => {
                for (key, default) in crate::experiment::omitted_defaults() {
                    map.entry(key).or_insert(default);
                }
                map
            }
            _ => {
                return Err(Error::Store {
                    path: self.path.clone(),
                    message: format!("trial {} has unreadable parameters", row.get::<i64, _>(0)),
                });
            }
        };
        Ok(TrialListing {
            id: row.get(0),
            sweep: row.get(1),
            status: row.get(2),
            params,
            device: row.get(4),
            threads: row.get(5),
            epochs_done: row.get(6),
            duration_s: row.get(7),
            train_loss: row.get(8),
            train_acc: row.get(9),
            val_loss: row.get(10),
            val_acc: row.get(11),
            best_epoch: row.get(12),
            best_val_acc: row.get(13),
            test_loss: row.get(14),
            test_acc: row.get(15),
            error: row.get(16),
        })
    }

    /// The resolved spec (JSON) and source file a sweep was last run with.
    pub fn sweep_spec(&self, name: &str) -> Result<Option<(String, String)>> {
        self.runtime
            .block_on(
                sqlx::query_as(
                    "SELECT spec_json, COALESCE(source_path, '') FROM sweeps WHERE name = ?",
                )
                .bind(name)
                .fetch_optional(&self.pool),
            )
            .map_err(|e| self.err(e))
    }

    /// A sweep's id by name.
    pub fn sweep_id(&self, name: &str) -> Result<Option<i64>> {
        self.runtime
            .block_on(
                sqlx::query_scalar("SELECT id FROM sweeps WHERE name = ?")
                    .bind(name)
                    .fetch_optional(&self.pool),
            )
            .map_err(|e| self.err(e))
    }

    /// When each trial of a sweep recorded its latest epoch, in seconds after the sweep's
    /// first epoch began (the clock of an optimisation history), by trial id.
    pub fn result_times(&self, sweep_id: i64) -> Result<HashMap<i64, f64>> {
        let rows: Vec<(i64, f64)> = self
            .runtime
            .block_on(
                sqlx::query_as(
                    "WITH sweep_epochs AS (
                         SELECT e.trial_id, julianday(e.recorded_at) * 86400.0 AS at, e.seconds
                         FROM epochs e JOIN trials t ON t.id = e.trial_id
                         WHERE t.sweep_id = ?)
                     SELECT trial_id, MAX(at) - (SELECT MIN(at - seconds) FROM sweep_epochs)
                     FROM sweep_epochs GROUP BY trial_id",
                )
                .bind(sweep_id)
                .fetch_all(&self.pool),
            )
            .map_err(|e| self.err(e))?;
        Ok(rows.into_iter().collect())
    }

    /// Names of the stored sweeps, oldest first.
    pub fn sweep_names(&self) -> Result<Vec<String>> {
        self.runtime
            .block_on(
                sqlx::query_scalar("SELECT name FROM sweeps ORDER BY id").fetch_all(&self.pool),
            )
            .map_err(|e| self.err(e))
    }

    /// A trial's epoch rows in order.
    pub fn epochs(&self, trial_id: i64) -> Result<Vec<EpochRow>> {
        self.runtime
            .block_on(
                sqlx::query(
                    "SELECT epoch, train_loss, train_acc, val_loss, val_acc, seconds, train_seconds
                     FROM epochs WHERE trial_id = ? ORDER BY epoch",
                )
                .bind(trial_id)
                .fetch_all(&self.pool),
            )
            .map(|rows| {
                rows.iter()
                    .map(|r| EpochRow {
                        epoch: r.get(0),
                        train_loss: r.get(1),
                        train_acc: r.get(2),
                        val_loss: r.get(3),
                        val_acc: r.get(4),
                        seconds: r.get(5),
                        train_seconds: r.get(6),
                    })
                    .collect()
            })
            .map_err(|e| self.err(e))
    }

    /// A trial's checkpoint rows.
    pub fn checkpoints(&self, trial_id: i64) -> Result<Vec<CheckpointRow>> {
        self.runtime
            .block_on(
                sqlx::query(
                    "SELECT kind, epoch, path, size_bytes, sha256 FROM checkpoints
                     WHERE trial_id = ? ORDER BY kind",
                )
                .bind(trial_id)
                .fetch_all(&self.pool),
            )
            .map(|rows| {
                rows.iter()
                    .map(|r| CheckpointRow {
                        kind: r.get(0),
                        epoch: r.get(1),
                        path: r.get(2),
                        size_bytes: r.get(3),
                        sha256: r.get(4),
                    })
                    .collect()
            })
            .map_err(|e| self.err(e))
    }

    /// A trial's confusion counts as `[actual][predicted]`, empty when it has none.
    pub fn confusion(&self, trial_id: i64) -> Result<Vec<(i64, i64, i64)>> {
        self.runtime
            .block_on(
                sqlx::query_as(
                    "SELECT actual, predicted, count FROM confusion WHERE trial_id = ?
                     ORDER BY actual, predicted",
                )
                .bind(trial_id)
                .fetch_all(&self.pool),
            )
            .map_err(|e| self.err(e))
    }
}

/// Adds a trial to a sweep (or, when the sweep holds its key, moves it to `ordinal`); returns
/// its id.
async fn insert_trial(
    conn: &mut sqlx::SqliteConnection,
    sweep_id: i64,
    ordinal: i64,
    trial: &TrialSpec,
) -> std::result::Result<i64, sqlx::Error> {
    sqlx::query_scalar(
        "INSERT INTO trials (sweep_id, ordinal, trial_key, params_json, arch,
             optimizer, lr, batch_size, epochs, dropout, weight_decay, split, seed,
             repeat)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (sweep_id, trial_key) DO UPDATE SET ordinal = excluded.ordinal
         RETURNING id",
    )
    .bind(sweep_id)
    .bind(ordinal)
    .bind(trial.key())
    .bind(trial.to_json().to_string())
    .bind(trial.arch.as_str())
    .bind(trial.optimizer.as_str())
    .bind(trial.lr)
    .bind(trial.batch_size as i64)
    .bind(trial.epochs as i64)
    .bind(trial.dropout)
    .bind(trial.weight_decay)
    .bind(trial.split)
    .bind(trial.seed as i64)
    .bind(trial.repeat as i64)
    .fetch_one(&mut *conn)
    .await
}

/// Every trial of a sweep with its metric by epoch, in draw order.
async fn read_past_trials(
    conn: &mut sqlx::SqliteConnection,
    sweep_id: i64,
    metric: Metric,
) -> std::result::Result<Vec<PastTrial>, sqlx::Error> {
    let (best, value) = match metric {
        Metric::ValAcc => ("best_val_acc", "val_acc"),
        Metric::ValLoss => ("best_val_loss", "val_loss"),
    };
    let trials: Vec<(i64, String, String, Option<f64>)> = sqlx::query_as(&format!(
        "SELECT id, status, params_json, {best} FROM trials WHERE sweep_id = ? ORDER BY ordinal"
    ))
    .bind(sweep_id)
    .fetch_all(&mut *conn)
    .await?;
    let epochs: Vec<(i64, i64, Option<f64>)> = sqlx::query_as(&format!(
        "SELECT e.trial_id, e.epoch, e.{value} FROM epochs e JOIN trials t ON t.id = e.trial_id
         WHERE t.sweep_id = ? ORDER BY e.trial_id, e.epoch"
    ))
    .bind(sweep_id)
    .fetch_all(&mut *conn)
    .await?;
    let mut curves: HashMap<i64, Vec<Option<f64>>> = Default::default();
    for (trial, epoch, v) in epochs {
        let curve = curves.entry(trial).or_default();
        if curve.len() + 1 == epoch as usize {
            curve.push(v);
        }
    }
    Ok(trials
        .into_iter()
        .filter_map(|(id, status, params, best)| {
            Some(PastTrial {
                id,
                spec: serde_json::from_str(&params).ok()?,
                status,
                best,
                values: curves.remove(&id).unwrap_or_default(),
            })
        })
        .collect())
}

/// Writes one epoch's row and the trial's running figures.
async fn record_epoch(
    tx: &mut sqlx::SqliteConnection,
    trial: i64,
    m: &EpochMetrics,
) -> std::result::Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO epochs (trial_id, epoch, train_loss, train_acc, val_loss,
             val_acc, seconds, train_seconds, recorded_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, {NOW})
         ON CONFLICT (trial_id, epoch) DO UPDATE SET
             train_loss = excluded.train_loss, train_acc = excluded.train_acc,
             val_loss = excluded.val_loss, val_acc = excluded.val_acc,
             seconds = excluded.seconds, train_seconds = excluded.train_seconds,
             recorded_at = excluded.recorded_at"
    ))
    .bind(trial)
    .bind(m.epoch as i64)
    .bind(finite(m.train_loss))
    .bind(finite(m.train_acc))
    .bind(finite(m.val_loss))
    .bind(finite(m.val_acc))
    .bind(m.seconds)
    .bind(m.train_seconds)
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "UPDATE trials SET epochs_done = ?, train_loss = ?, train_acc = ?,
             val_loss = ?, val_acc = ?, heartbeat_at = {NOW},
             best_val_acc = MAX(COALESCE(best_val_acc, ?), ?),
             best_val_loss = MIN(COALESCE(best_val_loss, ?), ?)
         WHERE id = ?"
    ))
    .bind(m.epoch as i64)
    .bind(finite(m.train_loss))
    .bind(finite(m.train_acc))
    .bind(finite(m.val_loss))
    .bind(finite(m.val_acc))
    .bind(finite(m.val_acc))
    .bind(finite(m.val_acc))
    .bind(finite(m.val_loss))
    .bind(finite(m.val_loss))
    .bind(trial)
    .execute(&mut *tx)
    .await
    .map(|_| ())
}

async fn record_checkpoint(
    tx: &mut sqlx::SqliteConnection,
    trial: i64,
    c: &CheckpointInfo,
) -> std::result::Result<(), sqlx::Error> {
    sqlx::query(&format!(
        "INSERT INTO checkpoints (trial_id, kind, epoch, path, size_bytes, sha256, created_at)
         VALUES (?, ?, ?, ?, ?, ?, {NOW})
         ON CONFLICT (trial_id, kind) DO UPDATE SET epoch = excluded.epoch,
             path = excluded.path, size_bytes = excluded.size_bytes,
             sha256 = excluded.sha256, created_at = excluded.created_at"
    ))
    .bind(trial)
    .bind(c.kind.as_str())
    .bind(c.epoch as i64)
    .bind(c.path.display().to_string())
    .bind(c.size as i64)
    .bind(&c.sha256)
    .execute(&mut *tx)
    .await
    .map(|_| ())
}

/// SQLite stores NaN as NULL anyway; make that explicit.
fn finite(value: f64) -> Option<f64> {
    value.is_finite().then_some(value)
}

#[cfg(test)]
mod tests {
    use super::*;

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
            let mut old = sqlx::migrate!("./migrations");
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
        let epochs = store.epochs(7).unwrap();
        assert_eq!(epochs.len(), 1);
        assert_eq!(epochs[0].train_seconds, Some(1.25));
        assert_eq!(store.checkpoints(7).unwrap()[0].sha256, "abc");
        assert_eq!(store.confusion(7).unwrap(), vec![(1, 2, 3)]);
        store
            .execute("UPDATE trials SET status = 'paused' WHERE id = ?", 7)
            .unwrap();
        assert_eq!(store.trial(7).unwrap().unwrap().status, "paused");
        // Children still belong to the trial: deleting it cascades.
        store.execute("DELETE FROM trials WHERE id = ?", 7).unwrap();
        assert!(store.epochs(7).unwrap().is_empty());
        assert!(store.confusion(7).unwrap().is_empty());
    }
}
