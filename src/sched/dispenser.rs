//! Handing trials to this process's workers: claims in the database (promotions, unfinished
//! trials, draws while a search's budget lasts), resumption from a trial's files, waiting for
//! claimable work, and what to do while the database is out of reach.

use super::holdings::Holdings;
use super::writer::{Message, RECONNECT_PATIENCE};
use crate::error::{Error, Result};
use crate::experiment::{Metric, TrialSpec};
use crate::model::fused;
use crate::process;
use crate::search::{Curve, PastTrial, Pruner, Sampler, Verdict};
use crate::store::Store;
use crate::train::{self, ResumeState, Unresumable};
use crate::trial::{Lease, TrialId, TrialStatus};
use std::collections::HashSet;
use std::path::Path;
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Hands trials to this process's workers, claiming each in the database first so that another
/// `sweep run` on the same database never trains the same trial.
pub(super) struct Dispenser<'a> {
    pub(super) store: Store,
    pub(super) owner: String,
    pub(super) sweep_id: i64,
    pub(super) candidates: Vec<(i64, TrialSpec)>,
    pub(super) next: usize,
    pub(super) sampler: Option<Sampler>,
    pub(super) pruner: Pruner,
    pub(super) metric: Metric,
    /// Trials this process's slots are training now.
    pub(super) running_here: usize,
    /// Trials this process has claimed.
    pub(super) claimed_here: usize,
    /// Since when the database has been out of reach, while it is.
    pub(super) outage: Option<Instant>,
    /// The leases of the trials this process holds.
    pub(super) holdings: Holdings,
    /// How old a holder's heartbeat may be before its trial is taken over.
    pub(super) stale_after: Duration,
    pub(super) max_trials: Option<usize>,
    /// Set when this process waits for claimable trials instead of leaving.
    pub(super) idle: Option<Idle>,
    /// Trials this process has run: a rescan leaves them (failed ones included) to others.
    pub(super) attempted: HashSet<i64>,
    pub(super) runs_dir: &'a Path,
    /// Trials found finished or held by another live process.
    pub(super) taken_elsewhere: HashSet<i64>,
    pub(super) resumed: usize,
    pub(super) promoted: usize,
    pub(super) error: Option<Error>,
    /// Names drawn trials for the progress display.
    pub(super) labels: mpsc::Sender<Message>,
    /// Drawn (and claimed) trials that did not fit the fused group they were drawn for: the
    /// next groups take them first.
    pub(super) deferred: std::collections::VecDeque<(i64, TrialSpec)>,
}

/// While the database is out of reach, how long training goes on without asking it again
/// whether this process still holds its trials.
const OUTAGE_RECHECK: Duration = Duration::from_secs(10);

/// How often a waiting worker reads the sweep's trials again.
const RESCAN_EVERY: Duration = Duration::from_secs(1);

/// A process's wait for claimable trials.
pub(super) struct Idle {
    /// How long nothing may be claimable before the process leaves.
    pub(super) patience: Duration,
    /// Since when nothing was, while nothing ran here.
    pub(super) since: Instant,
    /// When the trials were last read.
    pub(super) scanned: Instant,
}

/// What a free slot does next.
// Returned once per trial and unpacked at once: boxing the large variant buys nothing.
#[allow(clippy::large_enum_variant)]
pub(super) enum Next {
    /// Train this trial, continuing from the state when there is one.
    Run(i64, TrialSpec, Option<ResumeState>),
    /// Nothing now, but a running trial may yet make a paused one promotable.
    Wait,
    /// Nothing is left for this process.
    Done,
}

impl Dispenser<'_> {
    /// The next thing for a free slot: promote a paused trial that now qualifies, else take the
    /// next unfinished trial, else draw a new one while the budget lasts. `settled` says every
    /// event sent so far is in the database. A database failure ends the run's claiming (the
    /// error is kept for the end of the run).
    pub(super) fn next(&mut self, settled: bool) -> Next {
        if self.error.is_some() || self.max_trials.is_some_and(|max| self.claimed_here >= max) {
            return Next::Done;
        }
        match self.claim_next(settled).and_then(|next| match next {
            Next::Done if self.idle.is_some() => self.look_again(),
            other => Ok(other),
        }) {
            Ok(Next::Run(id, trial, resume)) => {
                self.running_here += 1;
                self.claimed_here += 1;
                self.attempted.insert(id);
                self.taken_elsewhere.remove(&id);
                if let Some(idle) = &mut self.idle {
                    idle.since = Instant::now();
                }
                Next::Run(id, trial, resume)
            }
            Ok(other) => {
                self.outage = None;
                other
            }
            Err(e @ Error::Unreachable { .. }) => {
                // Training goes on; claiming resumes once the database is back.
                let since = *self.outage.get_or_insert_with(|| {
                    tracing::warn!("{e}; retrying, running trials go on");
                    Instant::now()
                });
                if since.elapsed() > RECONNECT_PATIENCE {
                    self.error = Some(e);
                    return Next::Done;
                }
                std::thread::sleep(Duration::from_millis(500));
                Next::Wait
            }
            Err(e) => {
                self.error = Some(e);
                Next::Done
            }
        }
    }

    /// Another trial to train fused with a group whose trials have fuse key `key`: a drawn one
    /// waiting for a group that fits, else the next candidate with that key that this process
    /// can claim, else (in a search) a new draw; draws that do not fit wait for a later group,
    /// up to `patience` of them per call. A database failure ends the search for members (the
    /// group trains as it is).
    pub(super) fn next_matching(
        &mut self,
        key: &str,
        patience: usize,
    ) -> Option<(i64, TrialSpec, Option<ResumeState>)> {
        let fits = |trial: &TrialSpec| fused::fuse_key(trial).as_deref() == Some(key);
        let claimed = |this: &mut Self, id: i64| {
            this.running_here += 1;
            this.claimed_here += 1;
            this.attempted.insert(id);
            this.taken_elsewhere.remove(&id);
        };
        if let Some(at) = self.deferred.iter().position(|(_, trial)| fits(trial)) {
            let (id, trial) = self.deferred.remove(at).expect("found");
            claimed(self, id);
            return Some((id, trial, None));
        }
        let full = |this: &Self| {
            this.error.is_some()
                || this
                    .max_trials
                    .is_some_and(|max| this.claimed_here + this.deferred.len() >= max)
        };
        if full(self) {
            return None;
        }
        let mut at = self.next;
        while at < self.candidates.len() {
            if !fits(&self.candidates[at].1) {
                at += 1;
                continue;
            }
            let (id, trial) = self.candidates.remove(at);
            match self.claim_candidate(id, &trial) {
                Ok(Some(resume)) => {
                    claimed(self, id);
                    return Some((id, trial, resume));
                }
                Ok(None) => {
                    self.taken_elsewhere.insert(id);
                }
                Err(e) => {
                    tracing::warn!("cannot claim trial {id} to fuse it: {e}");
                    self.candidates.insert(at, (id, trial));
                    return None;
                }
            }
        }
        // A search draws the group's other members now, as Optuna's parallel workers each ask
        // before any has told: from the same history.
        for _ in 0..=patience {
            if full(self) {
                return None;
            }
            match self.draw() {
                Ok(Some((id, trial))) if fits(&trial) => {
                    claimed(self, id);
                    return Some((id, trial, None));
                }
                Ok(Some(misfit)) => self.deferred.push_back(misfit),
                Ok(None) => return None,
                Err(e) => {
                    tracing::warn!("cannot draw a trial to fuse: {e}");
                    return None;
                }
            }
        }
        None
    }

    /// Draws and claims a new trial while the search's budget lasts (`None` without a sampler
    /// or budget); its other repeats join the candidates as pending trials.
    fn draw(&mut self) -> Result<Option<(i64, TrialSpec)>> {
        let Some(sampler) = &self.sampler else {
            return Ok(None);
        };
        let drawn = self.store.claim_new_trial(
            self.sweep_id,
            &self.owner,
            sampler.total_trials(),
            sampler.repeats(),
            self.metric,
            |draw, past| sampler.draw(draw, past),
        )?;
        let Some((TrialId(id), trial, lease)) = drawn else {
            return Ok(None);
        };
        self.holdings.take(id, lease);
        let _ = self.labels.send(Message::Label(id, trial.label()));
        tracing::debug!(trial = id, "drawn: {}", trial.label());
        let repeats = if sampler.repeats() > 1 {
            self.store.sweep_trials(self.sweep_id)?
        } else {
            Vec::new()
        };
        for (other, spec) in repeats {
            if other.status == TrialStatus::Pending
                && other.id != id
                && !self.candidates.iter().any(|(c, _)| *c == other.id)
            {
                let _ = self.labels.send(Message::Label(other.id, spec.label()));
                self.candidates.push((other.id, spec));
            }
        }
        Ok(Some((id, trial)))
    }

    fn claim_next(&mut self, settled: bool) -> Result<Next> {
        // A trial drawn for a fused group it did not fit is claimed already: it goes first.
        if let Some((id, trial)) = self.deferred.pop_front() {
            return Ok(Next::Run(id, trial, None));
        }
        // Samplers and promotions decide from the history: let it include every event this
        // process has sent (with one slot, that makes a search reproducible).
        if (self.sampler.is_some() || self.pruner.pauses()) && !settled {
            return Ok(Next::Wait);
        }
        if self.pruner.pauses()
            && let Some(found) = self.promote()?
        {
            return Ok(found);
        }
        while let Some((id, trial)) = self.candidates.get(self.next).cloned() {
            self.next += 1;
            match self.claim_candidate(id, &trial) {
                Ok(Some(resume)) => return Ok(Next::Run(id, trial, resume)),
                Ok(None) => {
                    tracing::debug!(trial = id, "finished or running in another process");
                    self.taken_elsewhere.insert(id);
                }
                Err(e) => {
                    // Not skipped: the next attempt (once the database is back) asks again,
                    // and a claim of ours that was cut short is ours to take again.
                    self.next -= 1;
                    return Err(e);
                }
            }
        }
        if let Some((id, trial)) = self.draw()? {
            return Ok(Next::Run(id, trial, None));
        }
        if self.pruner.pauses() && (self.running_here > 0 || !settled) {
            return Ok(Next::Wait);
        }
        Ok(Next::Done)
    }

    /// Whether this process still holds `trial` under `lease`. While the database is out of
    /// reach the answer is yes without asking (for [`OUTAGE_RECHECK`] at a time), so training
    /// goes on instead of waiting on the connection; the writes are fenced anyway.
    pub(super) fn still_holds(&mut self, trial: i64, lease: Lease) -> bool {
        if self
            .outage
            .is_some_and(|since| since.elapsed() < OUTAGE_RECHECK)
        {
            return true;
        }
        match self.store.holds(trial, lease) {
            Ok(held) => {
                self.outage = None;
                held
            }
            Err(e @ Error::Unreachable { .. }) => {
                tracing::warn!("{e}; training goes on");
                self.outage = Some(Instant::now());
                true
            }
            Err(e) => {
                tracing::warn!("cannot check the lease of trial {trial}: {e}");
                true
            }
        }
    }

    /// A trial trained here ended: idle time counts from now.
    pub(super) fn trial_ended(&mut self) {
        self.running_here -= 1;
        if let Some(idle) = &mut self.idle {
            idle.since = Instant::now();
        }
    }

    /// Nothing was claimable: wait, reading the sweep's unfinished trials again every
    /// [`RESCAN_EVERY`] (a holder may die, a paused trial may qualify), until nothing was
    /// claimable for the patience given; leave at once when every trial is final.
    fn look_again(&mut self) -> Result<Next> {
        let idle = self
            .idle
            .as_mut()
            .expect("called when waiting is asked for");
        // The patience is for a process with nothing to do: a free slot beside a training one
        // keeps looking (its trial may end in a holder's death or a promotion).
        if self.running_here > 0 {
            idle.since = Instant::now();
        }
        if idle.since.elapsed() >= idle.patience {
            return Ok(Next::Done);
        }
        if idle.scanned.elapsed() < RESCAN_EVERY {
            return Ok(Next::Wait);
        }
        idle.scanned = Instant::now();
        let stored = self.store.sweep_trials(self.sweep_id)?;
        let budget_left = self
            .sampler
            .as_ref()
            .is_some_and(|s| stored.len() < s.total_trials());
        let unfinished: Vec<(i64, TrialSpec)> = stored
            .into_iter()
            .filter(|(row, _)| !row.status.is_final() && !self.attempted.contains(&row.id))
            .map(|(row, spec)| (row.id, spec))
            .collect();
        if unfinished.is_empty() && !budget_left && self.running_here == 0 {
            return Ok(Next::Done);
        }
        self.candidates = unfinished;
        self.next = 0;
        Ok(Next::Wait)
    }

    /// Claims an unfinished trial: `Some` with where it continues from, `None` when another
    /// process finished it or holds it.
    fn claim_candidate(
        &mut self,
        id: i64,
        trial: &TrialSpec,
    ) -> Result<Option<Option<ResumeState>>> {
        let claimed =
            self.store
                .claim_trial(id, &self.owner, process::is_alive, self.stale_after, false)?;
        let Some((previous, lease)) = claimed else {
            return Ok(None);
        };
        self.holdings.take(id, lease);
        crate::fault::stop_point("after-claim", id);
        if previous == TrialStatus::Pending {
            return Ok(Some(None));
        }
        // Left by a killed process, interrupted, or failed: continue after the last epoch
        // whose files are complete, else start over.
        self.resume_claimed(id, lease, trial)
    }

    /// Where a trial claimed under `lease` continues from, or `None` when this process lost it
    /// since the claim (it was stopped past the heartbeat timeout, say): then its files and
    /// rows are the new holder's to read and write.
    fn resume_claimed(
        &mut self,
        id: i64,
        lease: Lease,
        trial: &TrialSpec,
    ) -> Result<Option<Option<ResumeState>>> {
        let resume = if self.still_holds(id, lease) {
            self.resume_or_reset(id, lease, trial)
        } else {
            Err(Error::LeaseLost { trial: id })
        };
        match resume {
            Ok(resume) => Ok(Some(resume)),
            Err(e @ Error::LeaseLost { .. }) => {
                tracing::warn!("{e}; going on with other trials");
                Ok(None)
            }
            Err(e) => Err(e),
        }
    }

    /// Claims the paused trial that now qualifies best, continued from its rung.
    fn promote(&mut self) -> Result<Option<Next>> {
        let past = self.store.past_trials(self.sweep_id, self.metric)?;
        let Some(id) = self.pruner.promotion(&curves(&past)) else {
            return Ok(None);
        };
        let claimed =
            self.store
                .claim_trial(id, &self.owner, process::is_alive, self.stale_after, true)?;
        let Some((_, lease)) = claimed else {
            return Ok(None);
        };
        self.holdings.take(id, lease);
        let trial = past
            .into_iter()
            .find(|t| t.id == id)
            .expect("the promoted trial is in the history")
            .spec;
        let Some(resume) = self.resume_claimed(id, lease, &trial)? else {
            return Ok(None);
        };
        tracing::info!(trial = id, "promoted");
        self.promoted += 1;
        Ok(Some(Next::Run(id, trial, resume)))
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
                self.store.rewind_trial(id, lease)?;
                self.resumed += 1;
                Some(state)
            }
            Err(StartOver::Store(e)) => return Err(e),
            Err(why) => {
                let recorded = self.store.epochs(id)?.len();
                if recorded > 0 || !matches!(why, StartOver::Files(Unresumable::NoState)) {
                    tracing::warn!(
                        trial = id,
                        "starting over ({recorded} recorded epochs dropped): {why}"
                    );
                }
                self.store.reset_trial(id, lease)?;
                None
            }
        })
    }

    /// The early-stopping verdict for trial `id` of `epochs` epochs after the epochs in `curve`.
    pub(super) fn judge(&mut self, id: i64, epochs: usize, curve: &[f64]) -> Verdict {
        match self.store.past_trials(self.sweep_id, self.metric) {
            Ok(past) => self.pruner.judge(id, epochs, curve, &curves(&past)),
            Err(e) => {
                tracing::warn!(
                    trial = id,
                    "cannot read the sweep's history to judge it: {e}"
                );
                Verdict::Continue
            }
        }
    }
}

pub(super) fn curves(past: &[PastTrial]) -> Vec<Curve> {
    past.iter()
        .map(|t| Curve {
            trial: t.id,
            status: t.status,
            values: t.values.clone(),
        })
        .collect()
}

impl Dispenser<'_> {
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
        let recorded = self.store.epochs(id).map_err(StartOver::Store)?;
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
                    id,
                    lease,
                    &state.history[recorded.len()..],
                    &state.checkpoints,
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
