//! What the query commands, reports and `predict` read.

use super::{Backend, Bind, Filter, SortKey, Store};
use crate::error::{Error, Result};
use crate::experiment::Experiment;
use crate::trial::{TrialId, TrialStatus};
use serde::Serialize;
use sqlx::Row;
use std::collections::HashMap;

/// One trial with its parameters and final figures, for listings.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrialListing {
    /// Database id.
    pub id: i64,
    /// Sweep name.
    pub sweep: String,
    /// Status.
    pub status: TrialStatus,
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
    /// Lowest validation loss over the epochs.
    pub best_val_loss: Option<f64>,
    /// Test loss of the final model.
    pub test_loss: Option<f64>,
    /// Test accuracy of the final model.
    pub test_acc: Option<f64>,
    /// Why it failed or diverged.
    pub error: Option<String>,
    /// Trainable parameters of its model.
    #[serde(rename = "params")]
    pub param_count: Option<i64>,
    /// Mean seconds of an epoch's training batches.
    pub epoch_seconds: Option<f64>,
    /// Milliseconds per image evaluated at batch 1 (measured when a sweep optimises it).
    pub latency_ms: Option<f64>,
    /// The trials it trained fused with, comma-separated (`[sweep] fuse`); absent when it
    /// trained alone.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fused_with: Option<String>,
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
    /// Skip this many first (pages).
    pub offset: usize,
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

/// Binds a `--where` filter's values, in order, after what `statement` already has.
pub(super) fn bind_filter<'q>(
    mut statement: sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>>,
    filter: Option<&Filter>,
) -> sqlx::query::Query<'q, sqlx::Any, sqlx::any::AnyArguments<'q>> {
    for bind in filter.iter().flat_map(|f| &f.binds) {
        statement = match bind {
            Bind::Number(n) => statement.bind(*n),
            Bind::Text(t) => statement.bind(t.clone()),
        };
    }
    statement
}

impl Store {
    /// Every trial, optionally of one sweep, in sweep then grid order.
    pub fn list_trials(&self, sweep: Option<&str>) -> Result<Vec<TrialListing>> {
        self.query_trials(&TrialQuery {
            sweep: sweep.map(str::to_string),
            ..TrialQuery::default()
        })
    }

    /// The trials a query selects, in its order (then sweep and grid order).
    pub fn query_trials(&self, query: &TrialQuery) -> Result<Vec<TrialListing>> {
        let mut selected = String::from(
            "FROM trials t JOIN sweeps s ON s.id = t.sweep_id WHERE (? IS NULL OR s.name = ?)",
        );
        if let Some(filter) = &query.filter {
            selected.push_str(&format!(" AND ({})", filter.sql));
        }
        let mut order = String::from(" ORDER BY ");
        for key in &query.sort {
            // Trials without the value (not finished) go last either way.
            let direction = if key.descending { "DESC" } else { "ASC" };
            order.push_str(&format!("{0} IS NULL, {0} {direction}, ", key.sql));
        }
        order.push_str("s.id, t.ordinal");
        let columns = "SELECT t.id, s.name, t.status, t.params_json, t.device, t.threads,
                    t.epochs_done, t.duration_s, t.train_loss, t.train_acc, t.val_loss,
                    t.val_acc, t.best_epoch, t.best_val_acc, t.test_loss, t.test_acc,
                    t.error, t.fused_with, t.params, t.epoch_seconds, t.latency_ms,
                    t.best_val_loss";
        // A page is chosen by sorting ids alone, then only its rows are read: sorting whole
        // rows (their parameters' JSON included) to keep 50 of 100,000 costs ten times more.
        let sql = if query.limit.is_some() || query.offset > 0 {
            format!(
                "{columns} FROM trials t JOIN sweeps s ON s.id = t.sweep_id WHERE t.id IN \
                 (SELECT t.id {selected}{order} LIMIT ? OFFSET ?){order}"
            )
        } else {
            format!("{columns} {selected}{order} LIMIT ? OFFSET ?")
        };
        self.runtime.block_on(async {
            let statement = sqlx::query(self.backend.sql(&sql))
                .bind(&query.sweep)
                .bind(&query.sweep);
            let statement = bind_filter(statement, query.filter.as_ref());
            // No limit: SQLite reads a negative one so, PostgreSQL a NULL.
            let limit = query.limit.map(|n| n.min(i64::MAX as usize) as i64);
            let limit = match self.backend {
                Backend::Sqlite => Some(limit.unwrap_or(-1)),
                Backend::Postgres => limit,
            };
            let rows = statement
                .bind(limit)
                .bind(query.offset.min(i64::MAX as usize) as i64)
                .fetch_all(&self.pool)
                .await
                .map_err(|e| self.err(e))?;
            rows.iter().map(|row| self.listing(row)).collect()
        })
    }

    /// One trial by id.
    pub fn trial(&self, id: TrialId) -> Result<Option<TrialListing>> {
        let query = TrialQuery {
            filter: Some(Filter {
                sql: "t.id = ?".into(),
                binds: vec![Bind::Number(id.0 as f64)],
            }),
            ..TrialQuery::default()
        };
        Ok(self.query_trials(&query)?.into_iter().next())
    }

    fn listing(&self, row: &sqlx::any::AnyRow) -> Result<TrialListing> {
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
                    path: self.location.to_string().into(),
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
            fused_with: row.get(17),
            param_count: row.get(18),
            epoch_seconds: row.get(19),
            latency_ms: row.get(20),
            best_val_loss: row.get(21),
        })
    }

    /// The resolved spec (JSON) and source file a sweep was last run with.
    pub fn sweep_spec(&self, name: &str) -> Result<Option<(String, String)>> {
        self.runtime
            .block_on(
                sqlx::query_as(
                    self.backend.sql(
                        "SELECT spec_json, COALESCE(source_path, '') FROM sweeps WHERE name = ?",
                    ),
                )
                .bind(name)
                .fetch_optional(&self.pool),
            )
            .map_err(|e| self.err(e))
    }

    /// The experiment a stored sweep was last run with, read through the experiment types;
    /// `None` when no sweep has that name.
    pub fn stored_experiment(&self, name: &str) -> Result<Option<Experiment>> {
        let Some((spec_json, source)) = self.sweep_spec(name)? else {
            return Ok(None);
        };
        Experiment::from_stored(name, source.as_ref(), &spec_json).map(Some)
    }

    /// The experiment a stored sweep was last run with, or an error naming the sweeps this
    /// database knows.
    pub fn require_experiment(&self, name: &str) -> Result<Experiment> {
        match self.stored_experiment(name)? {
            Some(experiment) => Ok(experiment),
            None => Err(self.unknown_sweep(name)?),
        }
    }

    /// Fails when `name` is given and names no sweep of this database.
    pub fn require_sweep(&self, name: Option<&str>) -> Result<()> {
        match name {
            Some(name) if !self.sweep_names()?.iter().any(|n| n == name) => {
                Err(self.unknown_sweep(name)?)
            }
            _ => Ok(()),
        }
    }

    /// The error for a sweep name this database does not hold, naming those it does.
    pub fn unknown_sweep(&self, name: &str) -> Result<Error> {
        let known = self.sweep_names()?;
        Ok(Error::NotFound(format!(
            "no sweep named {name:?} in {}; known: {}",
            self.location(),
            if known.is_empty() {
                "none yet (`sweep run FILE --db ...` registers one)".into()
            } else {
                known.join(", ")
            }
        )))
    }

    /// A sweep's id by name.
    pub fn sweep_id(&self, name: &str) -> Result<Option<i64>> {
        self.runtime
            .block_on(
                sqlx::query_scalar(self.backend.sql("SELECT id FROM sweeps WHERE name = ?"))
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
                sqlx::query_as(self.backend.sql(
                    "WITH sweep_epochs AS (
                         SELECT e.trial_id, epoch_s(e.recorded_at) AS at, e.seconds
                         FROM epochs e JOIN trials t ON t.id = e.trial_id
                         WHERE t.sweep_id = ?)
                     SELECT trial_id, MAX(at) - (SELECT MIN(at - seconds) FROM sweep_epochs)
                     FROM sweep_epochs GROUP BY trial_id",
                ))
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
                sqlx::query_scalar(self.backend.sql("SELECT name FROM sweeps ORDER BY id"))
                    .fetch_all(&self.pool),
            )
            .map_err(|e| self.err(e))
    }

    /// A trial's epoch rows in order.
    pub fn epochs(&self, trial_id: TrialId) -> Result<Vec<EpochRow>> {
        self.runtime
            .block_on(
                sqlx::query(self.backend.sql(
                    "SELECT epoch, train_loss, train_acc, val_loss, val_acc, seconds, train_seconds
                     FROM epochs WHERE trial_id = ? ORDER BY epoch",
                ))
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
    pub fn checkpoints(&self, trial_id: TrialId) -> Result<Vec<CheckpointRow>> {
        self.runtime
            .block_on(
                sqlx::query(self.backend.sql(
                    "SELECT kind, epoch, path, size_bytes, sha256 FROM checkpoints
                     WHERE trial_id = ? ORDER BY kind",
                ))
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
    pub fn confusion(&self, trial_id: TrialId) -> Result<Vec<(i64, i64, i64)>> {
        self.runtime
            .block_on(
                sqlx::query_as(self.backend.sql(
                    "SELECT actual, predicted, count FROM confusion WHERE trial_id = ?
                     ORDER BY actual, predicted",
                ))
                .bind(trial_id)
                .fetch_all(&self.pool),
            )
            .map_err(|e| self.err(e))
    }
}
