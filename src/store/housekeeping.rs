//! What disk housekeeping reads and changes: where a sweep's files are, which checkpoint rows
//! point at them, who still runs its trials, and deleting a sweep.

use super::Store;
use crate::disk::SweepFiles;
use crate::error::Result;
use crate::trial::TrialId;
use std::path::PathBuf;

/// A trial some process holds as running, and how fresh its holder's heartbeat is.
#[derive(Debug, Clone, PartialEq)]
pub struct HeldTrial {
    /// Database id.
    pub id: TrialId,
    /// The holder (`host/pid/start`).
    pub owner: Option<String>,
    /// Seconds since its last heartbeat.
    pub heartbeat_age: Option<f64>,
}

impl Store {
    /// The names of every sweep with its files, for `gc`; or only the sweep called `only`.
    pub fn sweep_files(&self, only: Option<&str>) -> Result<Vec<SweepFiles>> {
        self.runtime
            .block_on(async {
                let sweeps: Vec<(i64, String, Option<String>)> = sqlx::query_as(self.backend.sql(
                    "SELECT id, name, runs_dir FROM sweeps
                     WHERE ?1 IS NULL OR name = ?1 ORDER BY id",
                ))
                .bind(only)
                .fetch_all(&self.pool)
                .await?;
                let mut out = Vec::with_capacity(sweeps.len());
                for (id, name, runs_dir) in sweeps {
                    let trials = sqlx::query_as(
                        self.backend
                            .sql("SELECT id, status FROM trials WHERE sweep_id = ? ORDER BY id"),
                    )
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await?;
                    let checkpoints: Vec<(i64, String, String)> = sqlx::query_as(self.backend.sql(
                        "SELECT c.trial_id, c.kind, c.path FROM checkpoints c
                         JOIN trials t ON t.id = c.trial_id
                         WHERE t.sweep_id = ? ORDER BY c.trial_id, c.kind",
                    ))
                    .bind(id)
                    .fetch_all(&self.pool)
                    .await?;
                    out.push(SweepFiles {
                        id,
                        name,
                        runs_dir: runs_dir.map(PathBuf::from),
                        trials,
                        checkpoints: checkpoints
                            .into_iter()
                            .map(|(t, k, p)| (t, k, PathBuf::from(p)))
                            .collect(),
                    });
                }
                Ok::<_, sqlx::Error>(out)
            })
            .map_err(|e| self.err(e))
    }

    /// Where the sweep's trial directories are, as its last run recorded (`None` when the sweep
    /// is unknown or was last run before the directory was recorded).
    pub fn sweep_runs_dir(&self, sweep: &str) -> Result<Option<PathBuf>> {
        self.runtime
            .block_on(
                sqlx::query_scalar::<_, Option<String>>(
                    self.backend
                        .sql("SELECT runs_dir FROM sweeps WHERE name = ?"),
                )
                .bind(sweep)
                .fetch_optional(&self.pool),
            )
            .map(|dir| dir.flatten().map(PathBuf::from))
            .map_err(|e| self.err(e))
    }

    /// Deletes the checkpoint rows of `kinds` (`best`, `last`) for a trial, before their files
    /// go.
    pub fn forget_checkpoints(&self, trial_id: TrialId, kinds: &[&str]) -> Result<()> {
        self.runtime
            .block_on(async {
                let mut tx = self.pool.begin().await?;
                for kind in kinds {
                    sqlx::query(
                        self.backend
                            .sql("DELETE FROM checkpoints WHERE trial_id = ? AND kind = ?"),
                    )
                    .bind(trial_id)
                    .bind(kind)
                    .execute(&mut *tx)
                    .await?;
                }
                tx.commit().await
            })
            .map_err(|e| self.err(e))
    }

    /// The sweep's trials that some process holds as running.
    pub fn held_trials(&self, sweep_id: i64) -> Result<Vec<HeldTrial>> {
        let rows: Vec<(TrialId, Option<String>, Option<f64>)> = self
            .runtime
            .block_on(
                sqlx::query_as(self.backend.sql(
                    "SELECT id, owner, age_s(heartbeat_at)
                     FROM trials WHERE sweep_id = ? AND status = 'running' ORDER BY id",
                ))
                .bind(sweep_id)
                .fetch_all(&self.pool),
            )
            .map_err(|e| self.err(e))?;
        Ok(rows
            .into_iter()
            .map(|(id, owner, heartbeat_age)| HeldTrial {
                id,
                owner,
                heartbeat_age,
            })
            .collect())
    }

    /// How many epoch rows a sweep's trials hold.
    pub fn epoch_count(&self, sweep_id: i64) -> Result<i64> {
        self.runtime
            .block_on(
                sqlx::query_scalar(self.backend.sql(
                    "SELECT COUNT(*) FROM epochs e JOIN trials t ON t.id = e.trial_id
                     WHERE t.sweep_id = ?",
                ))
                .bind(sweep_id)
                .fetch_one(&self.pool),
            )
            .map_err(|e| self.err(e))
    }

    /// Deletes a sweep and every row of its trials.
    pub fn delete_sweep(&self, sweep_id: i64) -> Result<()> {
        self.execute("DELETE FROM sweeps WHERE id = ?", sweep_id)
    }
}
