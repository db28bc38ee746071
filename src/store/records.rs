//! What training reports: epoch rows, checkpoints, trial ends, written as events arrive.

use super::lineage::record_copy;
use super::{Backend, Store, measured, missing};
use crate::error::{Error, Result};
use crate::train::{CheckpointInfo, Confusion, EpochMetrics, TrainEvent, TrialEnd};
use crate::trial::{Lease, MemberCopy, TrialId};

impl Store {
    /// Writes the epochs, checkpoint rows and population-based training copies that a trial's
    /// files hold and the database does not (a kill came between the two), all or none, under
    /// `lease`.
    pub fn catch_up(
        &self,
        trial_id: TrialId,
        lease: Lease,
        epochs: &[EpochMetrics],
        checkpoints: &[CheckpointInfo],
        copies: &[MemberCopy],
    ) -> Result<()> {
        self.runtime
            .block_on(async {
                let mut tx = self.pool.begin().await?;
                if !hold(&mut tx, self.backend, trial_id, lease).await? {
                    return Ok(false);
                }
                for metrics in epochs {
                    record_epoch(&mut tx, self.backend, trial_id.0, metrics).await?;
                }
                for checkpoint in checkpoints {
                    record_checkpoint(&mut tx, self.backend, trial_id.0, checkpoint).await?;
                }
                for copy in copies {
                    record_copy(&mut tx, self.backend, trial_id.0, copy).await?;
                }
                tx.commit().await.map(|_| true)
            })
            .map_err(|e| self.err(e))
            .and_then(|held| fenced(held, trial_id))
    }

    /// Persists one training event, made under `lease`: every write checks the lease in its
    /// transaction, so a process that lost the trial writes nothing ([`Error::LeaseLost`]).
    pub fn apply(&self, event: &TrainEvent, lease: Lease) -> Result<()> {
        let trial = match event {
            TrainEvent::Started { trial, .. }
            | TrainEvent::Epoch { trial, .. }
            | TrainEvent::Measured { trial, .. }
            | TrainEvent::Progress { trial, .. }
            | TrainEvent::Finished { trial, .. } => *trial,
        };
        if matches!(event, TrainEvent::Progress { .. }) {
            return Ok(());
        }
        self.runtime
            .block_on(async {
                let mut tx = self.pool.begin().await?;
                if !hold(&mut tx, self.backend, TrialId(trial), lease).await? {
                    return Ok(false);
                }
                if matches!(event, TrainEvent::Epoch { .. }) {
                    crate::fault::stop_point("in-epoch-write", trial);
                }
                match event {
                    TrainEvent::Started {
                        trial,
                        device,
                        threads,
                        fused_with,
                    } => {
                        let fused_with: Vec<String> =
                            fused_with.iter().map(i64::to_string).collect();
                        sqlx::query(self.backend.sql("UPDATE trials SET status = 'running', device = ?, threads = ?,
                             fused_with = NULLIF(?, ''),
                             started_at = now_utc(), heartbeat_at = now_utc(), error = NULL
                         WHERE id = ?"))
                        .bind(device)
                        .bind(*threads as i64)
                        .bind(fused_with.join(","))
                        .bind(trial)
                        .execute(&mut *tx)
                        .await?;
                    }
                    TrainEvent::Epoch {
                        trial,
                        metrics,
                        checkpoints,
                    } => {
                        record_epoch(&mut tx, self.backend, *trial, metrics).await?;
                        for checkpoint in checkpoints {
                            record_checkpoint(&mut tx, self.backend, *trial, checkpoint).await?;
                        }
                    }
                    TrainEvent::Measured {
                        trial,
                        params,
                        latency_ms,
                    } => {
                        sqlx::query(self.backend.sql(
                            "UPDATE trials SET params = ?,
                                 latency_ms = COALESCE(nan_null(?), latency_ms)
                             WHERE id = ?",
                        ))
                        .bind(*params as i64)
                        .bind(missing(*latency_ms))
                        .bind(trial)
                        .execute(&mut *tx)
                        .await?;
                    }
                    TrainEvent::Progress { .. } => {}
                    TrainEvent::Finished {
                        trial,
                        end,
                        seconds,
                    } => {
                        let Some(status) = end.status() else {
                            // A lost trial's row is its new holder's to write.
                            return Ok(true);
                        };
                        let (error, best_epoch, test_loss, test_acc) = match end {
                            TrialEnd::Done { test, best_epoch } => (
                                None,
                                Some(*best_epoch as i64),
                                test.as_ref().map(|t| t.loss),
                                test.as_ref().map(|t| t.accuracy),
                            ),
                            TrialEnd::Diverged { message } | TrialEnd::Failed { message } => {
                                (Some(message.clone()), None, None, None)
                            }
                            TrialEnd::Pruned { best_epoch } | TrialEnd::Paused { best_epoch } => {
                                (None, Some(*best_epoch as i64), None, None)
                            }
                            TrialEnd::Interrupted | TrialEnd::Lost => (None, None, None, None),
                        };
                        sqlx::query(self.backend.sql("UPDATE trials SET status = ?, finished_at = now_utc(), heartbeat_at = now_utc(),
                             duration_s = ?, error = ?, best_epoch = ?,
                             test_loss = nan_null(?), test_acc = nan_null(?)
                         WHERE id = ?"))
                        .bind(status)
                        .bind(seconds)
                        .bind(error)
                        .bind(best_epoch)
                        .bind(missing(test_loss))
                        .bind(missing(test_acc))
                        .bind(trial)
                        .execute(&mut *tx)
                        .await?;
                        if let TrialEnd::Done {
                            test: Some(test), ..
                        } = end
                        {
                            record_test(&mut tx, self.backend, *trial, &test.confusion).await?;
                        }
                    }
                }
                tx.commit().await.map(|_| true)
            })
            .map_err(|e| self.err(e))
            .and_then(|held| fenced(held, TrialId(trial)))
    }
}

/// Writes a test's per-class figures and confusion counts, one statement each (a statement per
/// row made the finish of a trial the slowest write a sweep makes).
async fn record_test(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    trial: i64,
    confusion: &Confusion,
) -> std::result::Result<(), sqlx::Error> {
    let per_class = confusion.per_class();
    let rows = vec!["(?, ?, ?, ?, nan_null(?))"; per_class.len()].join(", ");
    let mut classes = sqlx::query(backend.sql(&format!(
        "INSERT INTO class_metrics (trial_id, class, correct, total, accuracy)
         VALUES {rows}
         ON CONFLICT (trial_id, class) DO UPDATE SET
             correct = excluded.correct, total = excluded.total, accuracy = excluded.accuracy"
    )));
    for (class, (correct, total)) in per_class.iter().enumerate() {
        classes = classes
            .bind(trial)
            .bind(class as i64)
            .bind(*correct as i64)
            .bind(*total as i64)
            .bind(missing(
                (*total > 0).then(|| *correct as f64 / *total as f64),
            ));
    }
    classes.execute(&mut *tx).await?;

    let cells: Vec<(usize, usize, u64)> = confusion
        .counts
        .iter()
        .enumerate()
        .flat_map(|(actual, row)| {
            row.iter()
                .enumerate()
                .map(move |(predicted, count)| (actual, predicted, *count))
        })
        .collect();
    let rows = vec!["(?, ?, ?, ?)"; cells.len()].join(", ");
    let mut counts = sqlx::query(backend.sql(&format!(
        "INSERT INTO confusion (trial_id, actual, predicted, count)
         VALUES {rows}
         ON CONFLICT (trial_id, actual, predicted) DO UPDATE SET count = excluded.count"
    )));
    for (actual, predicted, count) in cells {
        counts = counts
            .bind(trial)
            .bind(actual as i64)
            .bind(predicted as i64)
            .bind(count as i64);
    }
    counts.execute(&mut *tx).await.map(|_| ())
}

/// Whether `lease` still holds `trial`, checked by a write that takes the trial's row (so a
/// takeover waits for this transaction, or this one sees the takeover).
pub(super) async fn hold(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    trial: TrialId,
    lease: Lease,
) -> std::result::Result<bool, sqlx::Error> {
    let held = sqlx::query(
        backend.sql("UPDATE trials SET heartbeat_at = now_utc() WHERE id = ? AND lease = ?"),
    )
    .bind(trial)
    .bind(lease)
    .execute(&mut *tx)
    .await?;
    Ok(held.rows_affected() == 1)
}

pub(super) fn fenced(held: bool, TrialId(trial): TrialId) -> Result<()> {
    if held {
        Ok(())
    } else {
        Err(Error::LeaseLost { trial })
    }
}

/// Writes one epoch's row and the trial's running figures.
async fn record_epoch(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    trial: i64,
    m: &EpochMetrics,
) -> std::result::Result<(), sqlx::Error> {
    sqlx::query(backend.sql(
        "INSERT INTO epochs (trial_id, epoch, train_loss, train_acc, val_loss,
             val_acc, seconds, train_seconds, recorded_at)
         VALUES (?, ?, nan_null(?), nan_null(?), nan_null(?), nan_null(?), ?, ?, now_utc())
         ON CONFLICT (trial_id, epoch) DO UPDATE SET
             train_loss = excluded.train_loss, train_acc = excluded.train_acc,
             val_loss = excluded.val_loss, val_acc = excluded.val_acc,
             seconds = excluded.seconds, train_seconds = excluded.train_seconds,
             recorded_at = excluded.recorded_at",
    ))
    .bind(trial)
    .bind(m.epoch as i64)
    .bind(measured(m.train_loss))
    .bind(measured(m.train_acc))
    .bind(measured(m.val_loss))
    .bind(measured(m.val_acc))
    .bind(m.seconds)
    .bind(m.train_seconds)
    .execute(&mut *tx)
    .await?;
    sqlx::query(backend.sql(
        "UPDATE trials SET epochs_done = ?1, train_loss = nan_null(?2),
             train_acc = nan_null(?3), val_loss = nan_null(?4), val_acc = nan_null(?5),
             heartbeat_at = now_utc(),
             best_val_acc = CASE WHEN best_val_acc IS NULL OR nan_null(?5) > best_val_acc
                                 THEN nan_null(?5) ELSE best_val_acc END,
             best_val_loss = CASE WHEN best_val_loss IS NULL OR nan_null(?4) < best_val_loss
                                  THEN nan_null(?4) ELSE best_val_loss END,
             epoch_seconds = (SELECT AVG(COALESCE(train_seconds, seconds)) FROM epochs
                              WHERE trial_id = ?6)
         WHERE id = ?6",
    ))
    .bind(m.epoch as i64)
    .bind(measured(m.train_loss))
    .bind(measured(m.train_acc))
    .bind(measured(m.val_loss))
    .bind(measured(m.val_acc))
    .bind(trial)
    .execute(&mut *tx)
    .await
    .map(|_| ())
}

async fn record_checkpoint(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    trial: i64,
    c: &CheckpointInfo,
) -> std::result::Result<(), sqlx::Error> {
    sqlx::query(backend.sql(
        "INSERT INTO checkpoints (trial_id, kind, epoch, path, size_bytes, sha256, created_at)
         VALUES (?, ?, ?, ?, ?, ?, now_utc())
         ON CONFLICT (trial_id, kind) DO UPDATE SET epoch = excluded.epoch,
             path = excluded.path, size_bytes = excluded.size_bytes,
             sha256 = excluded.sha256, created_at = excluded.created_at",
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
