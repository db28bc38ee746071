//! What the web view reads beyond the query commands: sweep overviews, a cheap version of a
//! sweep to poll for changes, counted pages of trials, the epochs recorded since a moment, and
//! who holds a running trial. Reads only: `sweep serve` opens the store read-only.

use super::queries::bind_filter;
use super::{Store, TrialQuery};
use crate::error::Result;
use crate::experiment::Experiment;
use crate::store::EpochRow;
use crate::trial::TrialId;
use serde::Serialize;
use sqlx::Row;
use std::collections::BTreeMap;

/// One sweep as the sweeps page lists it.
#[derive(Debug, Clone, Serialize)]
pub struct SweepOverview {
    /// Sweep name.
    pub name: String,
    /// The resolved experiment it was last run with (JSON).
    #[serde(skip)]
    pub spec_json: String,
    /// The experiment file it was last run from ("" when not recorded).
    #[serde(skip)]
    pub source_path: String,
    /// When it was first registered.
    pub created_at: String,
    /// When it was last started or resumed.
    pub started_at: Option<String>,
    /// When its last run ended.
    pub finished_at: Option<String>,
    /// The latest heartbeat of any of its trials (every start, epoch and end moves it): when
    /// something last happened.
    pub last_activity: Option<String>,
    /// Trials by status.
    pub counts: BTreeMap<String, i64>,
    /// Best validation accuracy of its done trials.
    pub best_val_acc: Option<f64>,
    /// Lowest validation loss of its done trials.
    pub best_val_loss: Option<f64>,
}

/// What changes whenever a sweep's trials do: the counts by status move on every status
/// change, and the latest heartbeat on every start, epoch and end (and while a trial runs).
/// Two index lookups, so an open page can ask every second.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SweepVersion {
    /// Trials by status.
    pub counts: BTreeMap<String, i64>,
    /// The latest heartbeat of any of its trials.
    pub last_heartbeat: Option<String>,
}

/// One epoch row with the trial it belongs to and when it was recorded.
#[derive(Debug, Clone, Serialize)]
pub struct RecordedEpoch {
    /// The trial.
    pub trial: i64,
    /// When the row was written (ISO 8601, UTC).
    pub recorded_at: String,
    /// The row.
    #[serde(flatten)]
    pub row: EpochRow,
}

/// Which process holds a trial and when it last said so.
#[derive(Debug, Clone, Default, Serialize)]
pub struct TrialHolder {
    /// "host/pid/start" of the process holding (or that last held) it.
    pub owner: Option<String>,
    /// Its latest heartbeat.
    pub heartbeat_at: Option<String>,
    /// Seconds since that heartbeat.
    pub heartbeat_age_s: Option<f64>,
    /// When it started.
    pub started_at: Option<String>,
    /// When it ended.
    pub finished_at: Option<String>,
}

impl SweepOverview {
    /// The experiment the sweep was last run with, read from the row already fetched.
    pub fn experiment(&self) -> Result<Experiment> {
        Experiment::from_stored(
            &self.name,
            std::path::Path::new(&self.source_path),
            &self.spec_json,
        )
    }
}

fn counts_of(rows: &[(i64, String, i64)], sweep_id: i64) -> BTreeMap<String, i64> {
    rows.iter()
        .filter(|(id, _, _)| *id == sweep_id)
        .map(|(_, status, n)| (status.clone(), *n))
        .collect()
}

impl Store {
    /// Every sweep (or the one named) with its counts, best values and times, oldest first.
    pub fn sweep_overviews(&self, only: Option<&str>) -> Result<Vec<SweepOverview>> {
        self.runtime
            .block_on(async {
                let sweeps = sqlx::query(self.backend.sql(
                    "SELECT s.id, s.name, s.spec_json, s.created_at, s.started_at, s.finished_at,
                            COALESCE(s.source_path, ''),
                            (SELECT MAX(t.best_val_acc) FROM trials t
                             WHERE t.sweep_id = s.id AND t.status = 'done'),
                            (SELECT MIN(t.best_val_loss) FROM trials t
                             WHERE t.sweep_id = s.id AND t.status = 'done'),
                            (SELECT MAX(t.heartbeat_at) FROM trials t WHERE t.sweep_id = s.id)
                     FROM sweeps s WHERE (? IS NULL OR s.name = ?) ORDER BY s.id",
                ))
                .bind(only)
                .bind(only)
                .fetch_all(&self.pool)
                .await?;
                let counts: Vec<(i64, String, i64)> = sqlx::query_as(self.backend.sql(
                    "SELECT sweep_id, status, COUNT(*) FROM trials GROUP BY sweep_id, status",
                ))
                .fetch_all(&self.pool)
                .await?;
                Ok(sweeps
                    .iter()
                    .map(|r| {
                        let id: i64 = r.get(0);
                        SweepOverview {
                            name: r.get(1),
                            spec_json: r.get(2),
                            created_at: r.get(3),
                            started_at: r.get(4),
                            finished_at: r.get(5),
                            source_path: r.get(6),
                            best_val_acc: r.get(7),
                            best_val_loss: r.get(8),
                            last_activity: r.get(9),
                            counts: counts_of(&counts, id),
                        }
                    })
                    .collect())
            })
            .map_err(|e| self.err(e))
    }

    /// The sweep's [`SweepVersion`].
    pub fn sweep_version(&self, sweep_id: i64) -> Result<SweepVersion> {
        self.runtime
            .block_on(async {
                let counts: Vec<(i64, String, i64)> = sqlx::query_as(self.backend.sql(
                    "SELECT sweep_id, status, COUNT(*) FROM trials WHERE sweep_id = ?
                     GROUP BY sweep_id, status",
                ))
                .bind(sweep_id)
                .fetch_all(&self.pool)
                .await?;
                let last_heartbeat: Option<String> = sqlx::query_scalar(
                    self.backend
                        .sql("SELECT MAX(heartbeat_at) FROM trials WHERE sweep_id = ?"),
                )
                .bind(sweep_id)
                .fetch_one(&self.pool)
                .await?;
                Ok(SweepVersion {
                    counts: counts_of(&counts, sweep_id),
                    last_heartbeat,
                })
            })
            .map_err(|e| self.err(e))
    }

    /// How many trials a query selects, ignoring its limit and offset.
    pub fn count_trials(&self, query: &TrialQuery) -> Result<i64> {
        let mut sql = String::from(
            "SELECT COUNT(*) FROM trials t JOIN sweeps s ON s.id = t.sweep_id
             WHERE (? IS NULL OR s.name = ?)",
        );
        if let Some(filter) = &query.filter {
            sql.push_str(&format!(" AND ({})", filter.sql));
        }
        self.runtime
            .block_on(async {
                let statement = sqlx::query(self.backend.sql(&sql))
                    .bind(&query.sweep)
                    .bind(&query.sweep);
                let row = bind_filter(statement, query.filter.as_ref())
                    .fetch_one(&self.pool)
                    .await?;
                row.try_get(0)
            })
            .map_err(|e| self.err(e))
    }

    /// The epochs of these trials, in trial then epoch order; with `since`, only those
    /// recorded after it (an earlier answer's latest `recorded_at`).
    pub fn recorded_epochs(
        &self,
        trials: &[TrialId],
        since: Option<&str>,
    ) -> Result<Vec<RecordedEpoch>> {
        if trials.is_empty() {
            return Ok(Vec::new());
        }
        // Ids are integers we parsed, never text from a request, so they are written inline.
        let ids: Vec<String> = trials.iter().map(|t| t.0.to_string()).collect();
        let sql = format!(
            "SELECT trial_id, recorded_at, epoch, train_loss, train_acc, val_loss, val_acc,
                    seconds, train_seconds
             FROM epochs WHERE trial_id IN ({}) AND (?1 IS NULL OR recorded_at > ?1)
             ORDER BY trial_id, epoch",
            ids.join(",")
        );
        // Statements with inline ids are not kept (see `Backend::sql`): each page asks for
        // other trials, and keeping every text would grow without bound.
        let text = self.backend.sql_uncached(&sql);
        self.runtime
            .block_on(async {
                let rows = sqlx::query(&text).bind(since).fetch_all(&self.pool).await?;
                Ok(rows
                    .iter()
                    .map(|r| RecordedEpoch {
                        trial: r.get(0),
                        recorded_at: r.get(1),
                        row: EpochRow {
                            epoch: r.get(2),
                            train_loss: r.get(3),
                            train_acc: r.get(4),
                            val_loss: r.get(5),
                            val_acc: r.get(6),
                            seconds: r.get(7),
                            train_seconds: r.get(8),
                        },
                    })
                    .collect())
            })
            .map_err(|e| self.err(e))
    }

    /// Which process holds (or last held) a trial, and its times.
    pub fn trial_holder(&self, id: TrialId) -> Result<TrialHolder> {
        self.runtime
            .block_on(async {
                let row = sqlx::query(self.backend.sql(
                    "SELECT owner, heartbeat_at, age_s(heartbeat_at), started_at, finished_at
                     FROM trials WHERE id = ?",
                ))
                .bind(id)
                .fetch_optional(&self.pool)
                .await?;
                Ok(row
                    .map(|r| TrialHolder {
                        owner: r.get(0),
                        heartbeat_at: r.get(1),
                        heartbeat_age_s: r.get(2),
                        started_at: r.get(3),
                        finished_at: r.get(4),
                    })
                    .unwrap_or_default())
            })
            .map_err(|e| self.err(e))
    }
}
