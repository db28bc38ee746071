//! Population-based training in the scheduler: before a member continues after an epoch at
//! which the population takes a step, the step is carried out (the member's files first, then
//! its rows, as an epoch is), and a member that got there before the rest of the population
//! waits, paused.

use super::dispenser::Dispenser;
use super::dispenser::curves;
use crate::error::Result;
use crate::experiment::TrialSpec;
use crate::search::{Member, PastTrial, Step, population_reached};
use crate::train::{self, ResumeState, TrainEvent, TrialEnd};
use crate::trial::{Lease, MemberCopy, TrialId};

/// The parameters a member trains with: its drawn ones, changed by the copies its files hold.
pub(super) fn member_spec(mut trial: TrialSpec, resume: Option<&ResumeState>) -> TrialSpec {
    if let Some(state) = resume.filter(|s| !s.copies.is_empty()) {
        trial.changes = MemberCopy::changes(&state.copies);
    }
    trial
}

impl Dispenser<'_> {
    /// Where claimed member `id` continues from: `state` after the population's step at its
    /// epoch, when it stopped at one, with every copy its files hold recorded in the database.
    /// `None` when the rest of the population has not reached that epoch yet: the member is
    /// paused again to wait for it.
    pub(super) fn population_step(
        &mut self,
        id: i64,
        lease: Lease,
        trial: &TrialSpec,
        mut state: ResumeState,
    ) -> Result<Option<ResumeState>> {
        let Some(pbt) = self.pbt.clone() else {
            return Ok(Some(state));
        };
        let epoch = state.epoch;
        if pbt.steps_after(epoch, trial.epochs) && !state.copies.iter().any(|c| c.epoch == epoch) {
            let past = self.store.past_trials(self.sweep_id, self.metric)?;
            if !population_reached(&curves(&past), epoch, pbt.population()) {
                tracing::info!(
                    trial = id,
                    epoch,
                    "waiting for the population to reach epoch"
                );
                let best_epoch = state.best.map_or(epoch, |b| b.1);
                self.store.apply(
                    &TrainEvent::Finished {
                        trial: id,
                        end: TrialEnd::Paused { best_epoch },
                        seconds: 0.0,
                    },
                    lease,
                )?;
                return Ok(None);
            }
            let members = self.members(&past, epoch)?;
            if let Step::Exploit {
                donor,
                donor_value,
                params,
            } = pbt.step(epoch, &members, id)
            {
                let own = members
                    .iter()
                    .find(|m| m.trial == id)
                    .expect("a member is in its population");
                let copy = MemberCopy {
                    epoch,
                    donor,
                    donor_value,
                    value: own.value.unwrap_or(f64::NAN),
                    before: params.iter().map(|&(h, _)| (h, h.of(&own.spec))).collect(),
                    after: params,
                };
                tracing::info!(trial = id, donor, epoch, "continuing from a better member");
                state = train::copy_member(
                    &self.runs_dir.join(id.to_string()),
                    &self.runs_dir.join(donor.to_string()),
                    copy,
                )?;
                crate::fault::kill_point("copy-before-record", epoch);
            }
        }
        if !state.copies.is_empty() {
            self.store
                .catch_up(TrialId(id), lease, &[], &state.checkpoints, &state.copies)?;
        }
        Ok(Some(state))
    }

    /// The population as the step after `epoch` sees it: each member's metric at that epoch
    /// and the hyperparameters it trained that epoch with.
    fn members(&self, past: &[PastTrial], epoch: usize) -> Result<Vec<Member>> {
        let copies = self.store.sweep_copies(self.sweep_id)?;
        Ok(past
            .iter()
            .enumerate()
            .map(|(index, t)| {
                let own: Vec<MemberCopy> = copies
                    .iter()
                    .filter(|(trial, copy)| *trial == TrialId(t.id) && copy.epoch < epoch)
                    .map(|(_, copy)| copy.clone())
                    .collect();
                let mut spec = t.spec.clone();
                spec.changes = MemberCopy::changes(&own);
                Member {
                    trial: t.id,
                    draw: t.spec.draw.unwrap_or(index as u64),
                    value: t.values.get(epoch - 1).copied().flatten(),
                    spec: spec.at_epoch(epoch),
                }
            })
            .collect())
    }
}
