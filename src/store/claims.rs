//! Who runs what: sweeps and their trials, claims, heartbeats, and the history samplers and
//! pruners decide from.

use super::queue::{next_enqueued, take_enqueued};
use super::{Backend, Store};
use crate::error::{Error, Result};
use crate::experiment::{Metric, TrialSpec};
use crate::search::{Fixed, Measures, PastTrial};
use crate::trial::{Lease, TrialId, TrialStatus};
use sqlx::Row;
use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

/// A trial as stored: its database id and where it stands.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredTrial {
    /// Database id.
    pub id: TrialId,
    /// Position in the expanded grid.
    pub ordinal: i64,
    /// Parameter fingerprint.
    pub key: String,
    /// Where it stands.
    pub status: TrialStatus,
}

impl Store {
    /// Creates the sweep, or returns the id of the existing sweep of that name with its spec
    /// updated to the latest file.
    pub fn upsert_sweep(
        &self,
        name: &str,
        spec_json: &str,
        spec_hash: &str,
        source: &Path,
        runs_dir: &Path,
    ) -> Result<i64> {
        self.runtime.block_on(async {
            let sql = "INSERT INTO sweeps (name, spec_json, spec_hash, source_path, sweep_version,
                                     burn_version, runs_dir, created_at, started_at)
                 VALUES (?, ?, ?, ?, ?, ?, ?, now_utc(), now_utc())
                 ON CONFLICT (name) DO UPDATE SET spec_json = excluded.spec_json,
                     spec_hash = excluded.spec_hash, source_path = excluded.source_path,
                     sweep_version = excluded.sweep_version, runs_dir = excluded.runs_dir,
                     started_at = now_utc(), finished_at = NULL
                 RETURNING id";
            sqlx::query(self.backend.sql(sql))
                .bind(name)
                .bind(spec_json)
                .bind(spec_hash)
                .bind(source.display().to_string())
                .bind(env!("CARGO_PKG_VERSION"))
                .bind(crate::BURN_VERSION)
                .bind(runs_dir.display().to_string())
                .fetch_one(&self.pool)
                .await
                .map(|row| row.get::<i64, _>(0))
                .map_err(|e| self.err(e))
        })
    }

    /// Records the end time of a sweep run.
    pub fn finish_sweep(&self, sweep_id: i64) -> Result<()> {
        self.execute(
            "UPDATE sweeps SET finished_at = now_utc() WHERE id = ?",
            sweep_id,
        )
    }

    /// Adds the trials the sweep does not hold yet and returns every listed trial's row, in the
    /// order given.
    pub fn sync_trials(&self, sweep_id: i64, trials: &[TrialSpec]) -> Result<Vec<StoredTrial>> {
        self.runtime.block_on(async {
            let mut tx = self.pool.begin().await.map_err(|e| self.err(e))?;
            let mut stored = Vec::with_capacity(trials.len());
            for (ordinal, trial) in trials.iter().enumerate() {
                let key = trial.key();
                insert_trial(&mut tx, self.backend, sweep_id, ordinal as i64, trial)
                    .await
                    .map_err(|e| self.err(e))?;
                let row = sqlx::query(self.backend.sql(
                    "SELECT id, ordinal, status FROM trials WHERE sweep_id = ? AND trial_key = ?",
                ))
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
    /// the holder's heartbeat is older than `stale_after`. Returns the status the trial had and
    /// the new lease (one more than the last holder's), or `None` when it is finished or held by
    /// a live process.
    pub fn claim_trial(
        &self,
        trial_id: TrialId,
        owner: &str,
        holder_alive: impl Fn(&str) -> Option<bool>,
        stale_after: Duration,
        promote: bool,
    ) -> Result<Option<(TrialStatus, Lease)>> {
        self.runtime
            .block_on(async {
                let mut conn = self.pool.acquire().await?;
                // SQLite: IMMEDIATE takes the write lock before reading, so the read below
                // cannot go stale before the update. PostgreSQL: the row lock does that, and a
                // row another worker is claiming right now is skipped, not waited for.
                sqlx::query(self.backend.begin_write())
                    .execute(&mut *conn)
                    .await?;
                let claim = async {
                    let row: Option<(TrialStatus, Option<String>, Option<f64>)> =
                        sqlx::query_as(self.backend.sql(&format!(
                            "SELECT status, owner, age_s(heartbeat_at)
                         FROM trials WHERE id = ?{}",
                            self.backend.lock_row_or_skip()
                        )))
                        .bind(trial_id)
                        .fetch_optional(&mut *conn)
                        .await?;
                    let Some((status, holder, heartbeat_age)) = row else {
                        return Ok(None);
                    };
                    let free = match status {
                        _ if status.is_final() => false,
                        // Paused trials are continued only by a promotion.
                        TrialStatus::Paused => promote,
                        // Its own trial, whose first claim was cut short (the database
                        // went away before the claim's follow-up): claimed again.
                        TrialStatus::Running if holder.as_deref() == Some(owner) => true,
                        TrialStatus::Running => match holder.as_deref().map(&holder_alive) {
                            Some(Some(alive)) => !alive,
                            _ => heartbeat_age.is_none_or(|age| age > stale_after.as_secs_f64()),
                        },
                        _ => true,
                    };
                    if !free {
                        return Ok(None);
                    }
                    let lease: Lease = sqlx::query_scalar(self.backend.sql(
                        "UPDATE trials SET status = 'running', owner = ?, heartbeat_at = now_utc(),
                             lease = lease + 1
                         WHERE id = ? RETURNING lease",
                    ))
                    .bind(owner)
                    .bind(trial_id)
                    .fetch_one(&mut *conn)
                    .await?;
                    Ok::<_, sqlx::Error>(Some((status, lease)))
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
    /// `draw(number, history, enqueued)` gives the trials of draw `number` (from the sweep's
    /// trials in draw order, and the oldest configuration queued for it, which this draw takes),
    /// which are added, the first claimed for `owner`. Returns its id, spec and lease.
    pub fn claim_new_trial(
        &self,
        sweep_id: i64,
        owner: &str,
        limit: usize,
        per_draw: usize,
        metric: Metric,
        draw: impl FnOnce(u64, &[PastTrial], Option<&Fixed>) -> Vec<TrialSpec>,
    ) -> Result<Option<(TrialId, TrialSpec, Lease)>> {
        self.runtime
            .block_on(async {
                let mut conn = self.pool.acquire().await?;
                sqlx::query(self.backend.begin_write())
                    .execute(&mut *conn)
                    .await?;
                let claim = async {
                    // Draws of one sweep take turns, so the count below holds until the commit.
                    if self.backend == Backend::Postgres {
                        sqlx::query("SELECT id FROM sweeps WHERE id = $1 FOR UPDATE")
                            .bind(sweep_id)
                            .execute(&mut *conn)
                            .await?;
                    }
                    let count: i64 = sqlx::query_scalar(
                        self.backend
                            .sql("SELECT COUNT(*) FROM trials WHERE sweep_id = ?"),
                    )
                    .bind(sweep_id)
                    .fetch_one(&mut *conn)
                    .await?;
                    if count as usize >= limit {
                        return Ok(None);
                    }
                    let past = read_past_trials(&mut conn, self.backend, sweep_id, metric).await?;
                    let number = count as u64 / per_draw.max(1) as u64;
                    let enqueued = next_enqueued(&mut conn, self.backend, sweep_id).await?;
                    let trials = draw(number, &past, enqueued.as_ref().map(|(_, fixed)| fixed));
                    if let Some((id, _)) = enqueued {
                        take_enqueued(&mut conn, self.backend, id, number).await?;
                    }
                    let mut first = None;
                    for (i, trial) in trials.iter().enumerate() {
                        let id = insert_trial(
                            &mut conn,
                            self.backend,
                            sweep_id,
                            count + i as i64,
                            trial,
                        )
                        .await?;
                        if i == 0 {
                            let lease: Lease = sqlx::query_scalar(self.backend.sql(
                                "UPDATE trials SET status = 'running', owner = ?,
                                     heartbeat_at = now_utc(), lease = lease + 1
                                 WHERE id = ? RETURNING lease",
                            ))
                            .bind(owner)
                            .bind(id)
                            .fetch_one(&mut *conn)
                            .await?;
                            first = Some((TrialId(id), trial.clone(), lease));
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
                read_past_trials(&mut conn, self.backend, sweep_id, metric).await
            })
            .map_err(|e| self.err(e))
    }

    /// Ends the sweep's paused trials as pruned, unless a trial of it is still running (which
    /// may yet make one of them promotable). Returns the ids pruned.
    pub fn prune_paused(&self, sweep_id: i64) -> Result<Vec<TrialId>> {
        self.runtime
            .block_on(
                sqlx::query_scalar(self.backend.sql(
                    "UPDATE trials SET status = 'pruned'
                     WHERE sweep_id = ?1 AND status = 'paused' AND NOT EXISTS
                         (SELECT 1 FROM trials WHERE sweep_id = ?1 AND status = 'running')
                     RETURNING id",
                ))
                .bind(sweep_id)
                .fetch_all(&self.pool),
            )
            .map_err(|e| self.err(e))
    }

    /// A sweep's trials as stored: id, status and parameters, in draw order.
    pub fn sweep_trials(&self, sweep_id: i64) -> Result<Vec<(StoredTrial, TrialSpec)>> {
        let rows: Vec<(TrialId, i64, String, TrialStatus, String)> = self
            .runtime
            .block_on(
                sqlx::query_as(self.backend.sql(
                    "SELECT id, ordinal, trial_key, status, params_json FROM trials
                     WHERE sweep_id = ? ORDER BY ordinal",
                ))
                .bind(sweep_id)
                .fetch_all(&self.pool),
            )
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(id, ordinal, key, status, params)| {
                let spec = serde_json::from_str(&params).map_err(|e| Error::Store {
                    path: self.location.to_string().into(),
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

    /// Whether `lease` is still the trial's latest lease (no other process took it over).
    pub fn holds(&self, trial_id: TrialId, lease: Lease) -> Result<bool> {
        self.runtime
            .block_on(
                sqlx::query_scalar::<_, Lease>(
                    self.backend.sql("SELECT lease FROM trials WHERE id = ?"),
                )
                .bind(trial_id)
                .fetch_optional(&self.pool),
            )
            .map(|current| current == Some(lease))
            .map_err(|e| self.err(e))
    }

    /// Marks every trial that `owner` is running as alive now.
    pub fn heartbeat(&self, owner: &str) -> Result<()> {
        self.runtime
            .block_on(
                sqlx::query(self.backend.sql("UPDATE trials SET heartbeat_at = now_utc() WHERE owner = ? AND status = 'running'"))
                .bind(owner)
                .execute(&self.pool),
            )
            .map(|_| ())
            .map_err(|e| self.err(e))
    }

    /// Clears what an unfinished attempt of a claimed trial left (epochs, checkpoints, results)
    /// so it can start again cleanly, if `lease` still holds it.
    pub fn reset_trial(&self, trial_id: TrialId, lease: Lease) -> Result<()> {
        self.fenced_transaction(
            trial_id,
            lease,
            &[
                "DELETE FROM epochs WHERE trial_id = ?",
                "DELETE FROM checkpoints WHERE trial_id = ?",
                "DELETE FROM class_metrics WHERE trial_id = ?",
                "DELETE FROM confusion WHERE trial_id = ?",
                "DELETE FROM trial_copies WHERE trial_id = ?",
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
    /// checkpoint rows, clears its end state, if `lease` still holds it.
    pub fn rewind_trial(&self, trial_id: TrialId, lease: Lease) -> Result<()> {
        self.fenced_transaction(
            trial_id,
            lease,
            &[
                "DELETE FROM class_metrics WHERE trial_id = ?",
                "DELETE FROM confusion WHERE trial_id = ?",
                "UPDATE trials SET finished_at = NULL, duration_s = NULL,
                     test_loss = NULL, test_acc = NULL, error = NULL
                 WHERE id = ?",
            ],
        )
    }
}

/// Adds a trial to a sweep (or, when the sweep holds its key, moves it to `ordinal`); returns
/// its id.
async fn insert_trial(
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    sweep_id: i64,
    ordinal: i64,
    trial: &TrialSpec,
) -> std::result::Result<i64, sqlx::Error> {
    sqlx::query_scalar(backend.sql(
        "INSERT INTO trials (sweep_id, ordinal, trial_key, params_json, arch,
             optimizer, lr, batch_size, epochs, dropout, weight_decay, split, seed,
             repeat)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (sweep_id, trial_key) DO UPDATE SET ordinal = excluded.ordinal
         RETURNING id",
    ))
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
    conn: &mut sqlx::AnyConnection,
    backend: Backend,
    sweep_id: i64,
    metric: Metric,
) -> std::result::Result<Vec<PastTrial>, sqlx::Error> {
    let (best, value) = match metric {
        Metric::ValAcc => ("best_val_acc", "val_acc"),
        Metric::ValLoss => ("best_val_loss", "val_loss"),
    };
    type Row = (
        i64,
        TrialStatus,
        String,
        Option<f64>,
        Option<i64>,
        Option<f64>,
        Option<f64>,
    );
    let trials: Vec<Row> = sqlx::query_as(backend.sql(&format!(
        "SELECT id, status, params_json, {best}, params, epoch_seconds, latency_ms
         FROM trials WHERE sweep_id = ? ORDER BY ordinal"
    )))
    .bind(sweep_id)
    .fetch_all(&mut *conn)
    .await?;
    let epochs: Vec<(i64, i64, Option<f64>)> = sqlx::query_as(backend.sql(&format!(
        "SELECT e.trial_id, e.epoch, e.{value} FROM epochs e JOIN trials t ON t.id = e.trial_id
         WHERE t.sweep_id = ? ORDER BY e.trial_id, e.epoch"
    )))
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
        .filter_map(
            |(id, status, params, best, size, epoch_seconds, latency_ms)| {
                Some(PastTrial {
                    id,
                    spec: serde_json::from_str(&params).ok()?,
                    status,
                    best,
                    values: curves.remove(&id).unwrap_or_default(),
                    measures: Measures {
                        params: size.map(|n| n as f64),
                        epoch_seconds,
                        latency_ms,
                    },
                })
            },
        )
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::{ExperimentSpec, expand};
    use crate::trial::{Lease, TrialStatus};

    /// A SQLite store holding sweep `s` with two pending trials.
    fn two_trials(dir: &Path) -> (Store, Vec<StoredTrial>) {
        let store = Store::open(dir.join("claims.db")).unwrap();
        let sweep = store
            .upsert_sweep("s", "{}", "h", Path::new("s.toml"), dir)
            .unwrap();
        let first = expand(&ExperimentSpec::default()).remove(0);
        let mut second = first.clone();
        second.lr *= 10.0;
        let rows = store.sync_trials(sweep, &[first, second]).unwrap();
        (store, rows)
    }

    const MINUTE: Duration = Duration::from_secs(60);

    #[test]
    fn a_claim_takes_a_trial_once_and_each_takeover_raises_the_lease() {
        let dir = tempfile::tempdir().unwrap();
        let (store, rows) = two_trials(dir.path());
        let id = rows[0].id;
        assert_eq!(rows[0].status, TrialStatus::Pending);
        let alive = |_: &str| Some(true);
        let dead = |_: &str| Some(false);
        let unknown = |_: &str| None;

        let claimed = store.claim_trial(id, "a", alive, MINUTE, false).unwrap();
        assert_eq!(claimed, Some((TrialStatus::Pending, Lease(1))));
        // Held by a live process, or by one whose heartbeat is fresh: left alone.
        assert_eq!(
            store.claim_trial(id, "b", alive, MINUTE, false).unwrap(),
            None
        );
        assert_eq!(
            store.claim_trial(id, "b", unknown, MINUTE, false).unwrap(),
            None
        );
        // Its own claim, cut short, is taken again.
        assert_eq!(
            store.claim_trial(id, "a", alive, MINUTE, false).unwrap(),
            Some((TrialStatus::Running, Lease(2)))
        );
        // A dead holder's trial, or a stale heartbeat's on another host, is taken over.
        assert_eq!(
            store.claim_trial(id, "b", dead, MINUTE, false).unwrap(),
            Some((TrialStatus::Running, Lease(3)))
        );
        // (Ages are read to the millisecond: let this one be older than none.)
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(
            store
                .claim_trial(id, "c", unknown, Duration::ZERO, false)
                .unwrap(),
            Some((TrialStatus::Running, Lease(4)))
        );
        assert!(store.holds(id, Lease(4)).unwrap());
        assert!(!store.holds(id, Lease(3)).unwrap());
        // The loser's writes are refused.
        assert!(matches!(
            store.reset_trial(id, Lease(3)),
            Err(Error::LeaseLost { .. })
        ));
        store.reset_trial(id, Lease(4)).unwrap();
        // The other trial was never touched.
        assert!(store.holds(rows[1].id, Lease(0)).unwrap());
    }

    #[test]
    fn final_trials_are_never_claimed_and_paused_ones_only_by_a_promotion() {
        let dir = tempfile::tempdir().unwrap();
        let (store, rows) = two_trials(dir.path());
        let dead = |_: &str| Some(false);
        for (row, status) in rows.iter().zip([TrialStatus::Done, TrialStatus::Paused]) {
            store
                .execute(
                    &format!("UPDATE trials SET status = '{status}' WHERE id = ?"),
                    row.id.0,
                )
                .unwrap();
        }
        let (done, paused) = (rows[0].id, rows[1].id);
        for promote in [false, true] {
            assert_eq!(
                store.claim_trial(done, "a", dead, MINUTE, promote).unwrap(),
                None
            );
        }
        assert_eq!(
            store.claim_trial(paused, "a", dead, MINUTE, false).unwrap(),
            None
        );
        assert_eq!(
            store.claim_trial(paused, "a", dead, MINUTE, true).unwrap(),
            Some((TrialStatus::Paused, Lease(1)))
        );
    }
}
