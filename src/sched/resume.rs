//! Continuing a claimed trial: from the last epoch its files hold completely (after writing to
//! the database whatever of it the database lacks), or from its first epoch when its files cannot
//! be used.

use super::dispenser::Dispenser;
use crate::error::{Error, Result};
use crate::experiment::TrialSpec;
use crate::train::{self, ResumeState, Unresumable};
use crate::trial::{Lease, TrialId};

impl Dispenser<'_> {
    /// Where a trial claimed under `lease` continues from, or `None` when this process lost it
    /// since the claim (it was stopped past the heartbeat timeout, say: then its files and
    /// rows are the new holder's to read and write), or when it is a population-based training
    /// member paused again to wait for the rest of its population.
    pub(super) fn resume_claimed(
        &mut self,
        id: i64,
        lease: Lease,
        trial: &TrialSpec,
    ) -> Result<Option<Option<ResumeState>>> {
        let resume = if self.still_holds(id, lease) {
            self.resume_or_reset(id, lease, trial)
                .and_then(|resume| match resume {
                    Some(state) => self
                        .population_step(id, lease, trial, state)
                        .map(|state| state.map(Some)),
                    None => Ok(Some(None)),
                })
        } else {
            Err(Error::LeaseLost { trial: id })
        };
        match resume {
            Ok(resume) => Ok(resume),
            Err(e @ Error::LeaseLost { .. }) => {
                tracing::warn!("{e}; going on with other trials");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    fn resume_or_reset(
        &mut self,
        id: i64,
        lease: Lease,
        trial: &TrialSpec,
    ) -> Result<Option<ResumeState>> {
        Ok(match self.resume_point(id, lease, trial) {
            Ok(state) => {
                tracing::info!(trial = id, epoch = state.epoch, "resuming");
                self.store.rewind_trial(TrialId(id), lease)?;
                self.resumed += 1;
                Some(state)
            }
            Err(StartOver::Store(e)) => return Err(e),
            Err(why) => {
                let recorded = self.store.epochs(TrialId(id))?.len();
                if recorded > 0 || !matches!(why, StartOver::Files(Unresumable::NoState)) {
                    tracing::warn!(
                        trial = id,
                        "starting over ({recorded} recorded epochs dropped): {why}"
                    );
                }
                self.store.reset_trial(TrialId(id), lease)?;
                None
            }
        })
    }

    /// The state to continue a claimed trial from, after writing to the database whatever its
    /// files hold and the database lacks; or why it must start over.
    fn resume_point(
        &self,
        id: i64,
        lease: Lease,
        trial: &TrialSpec,
    ) -> Result<ResumeState, StartOver> {
        let state = train::read_resume_state(&self.runs_dir.join(id.to_string()))
            .map_err(StartOver::Files)?;
        if state.epoch > trial.epochs {
            return Err(StartOver::Mismatch(format!(
                "its files are at epoch {} of a trial of {} epochs",
                state.epoch, trial.epochs
            )));
        }
        let recorded = self.store.epochs(TrialId(id)).map_err(StartOver::Store)?;
        if recorded.len() > state.epoch {
            return Err(StartOver::Mismatch(format!(
                "its files (epoch {}) are behind the database (epoch {})",
                state.epoch,
                recorded.len()
            )));
        }
        let agrees = recorded.iter().zip(&state.history).all(|(row, figures)| {
            row.epoch == figures.epoch as i64
                && row.train_loss == Some(figures.train_loss)
                && row.val_loss == Some(figures.val_loss)
        });
        if !agrees {
            return Err(StartOver::Mismatch(
                "its files are from another attempt than the recorded epochs".into(),
            ));
        }
        if recorded.len() < state.epoch {
            tracing::info!(
                trial = id,
                "recording epochs {}..={} from the trial's files (the run was killed before \
                 the database had them)",
                recorded.len() + 1,
                state.epoch
            );
            self.store
                .catch_up(
                    TrialId(id),
                    lease,
                    &state.history[recorded.len()..],
                    &state.checkpoints,
                    &state.copies,
                )
                .map_err(StartOver::Store)?;
        }
        Ok(state)
    }
}

/// Why a claimed trial trains from its first epoch again.
enum StartOver {
    /// Its checkpoint directory cannot be continued from.
    Files(Unresumable),
    /// Its files and its database rows disagree.
    Mismatch(String),
    /// The database could not be read or written.
    Store(Error),
}

impl std::fmt::Display for StartOver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartOver::Files(why) => why.fmt(f),
            StartOver::Mismatch(why) => f.write_str(why),
            StartOver::Store(e) => write!(f, "the database failed: {e}"),
        }
    }
}
