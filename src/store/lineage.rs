//! Population-based training's lineage: which member continued from which, after which epoch,
//! with which hyperparameters before and after.

use super::{Backend, Store};
use crate::error::Result;
use crate::trial::{MemberCopy, TrialId};

/// A stored copy row: member, epoch, donor, donor's value, member's value, before, after.
type CopyRow = (i64, i64, i64, Option<f64>, Option<f64>, String, String);

/// Records a copy a member's files hold, unless it is recorded already.
pub(super) async fn record_copy(
    tx: &mut sqlx::AnyConnection,
    backend: Backend,
    trial: i64,
    copy: &MemberCopy,
) -> std::result::Result<(), sqlx::Error> {
    sqlx::query(backend.sql(
        "INSERT INTO trial_copies (trial_id, epoch, donor_id, donor_value, value,
             before_json, after_json, recorded_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, now_utc())
         ON CONFLICT (trial_id, epoch) DO NOTHING",
    ))
    .bind(trial)
    .bind(copy.epoch as i64)
    .bind(copy.donor)
    .bind(copy.donor_value.is_finite().then_some(copy.donor_value))
    .bind(copy.value.is_finite().then_some(copy.value))
    .bind(serde_json::to_string(&copy.before).expect("pairs serialise"))
    .bind(serde_json::to_string(&copy.after).expect("pairs serialise"))
    .execute(&mut *tx)
    .await
    .map(|_| ())
}

impl Store {
    /// Every copy recorded for the trials of a sweep, by epoch then member.
    pub fn sweep_copies(&self, sweep_id: i64) -> Result<Vec<(TrialId, MemberCopy)>> {
        let rows: Vec<CopyRow> = self
            .runtime
            .block_on(
                sqlx::query_as(self.backend.sql(
                    "SELECT c.trial_id, c.epoch, c.donor_id, c.donor_value, c.value,
                         c.before_json, c.after_json
                     FROM trial_copies c JOIN trials t ON t.id = c.trial_id
                     WHERE t.sweep_id = ? ORDER BY c.epoch, c.trial_id",
                ))
                .bind(sweep_id)
                .fetch_all(&self.pool),
            )
            .map_err(|e| self.err(e))?;
        rows.into_iter()
            .map(|(trial, epoch, donor, donor_value, value, before, after)| {
                let pairs = |json: &str| {
                    serde_json::from_str(json).map_err(|e| crate::error::Error::Store {
                        path: self.location.to_string().into(),
                        message: format!("trial {trial} has an unreadable copy record: {e}"),
                    })
                };
                Ok((
                    TrialId(trial),
                    MemberCopy {
                        epoch: epoch as usize,
                        donor,
                        donor_value: donor_value.unwrap_or(f64::NAN),
                        value: value.unwrap_or(f64::NAN),
                        before: pairs(&before)?,
                        after: pairs(&after)?,
                    },
                ))
            })
            .collect()
    }
}
