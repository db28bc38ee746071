//! Handing trials to this process's workers: carries out the claim policy's decisions
//! (`policy.rs`) against the database: claims promotions, unfinished trials and draws while a
//! search's budget lasts, checks leases, and reads the sweep's trials again while waiting.
//! Continuing a claimed trial is `resume.rs`.

use super::holdings::Holdings;
use super::policy::{ClaimPolicy, Otherwise, Outage, Source, Waiting};
use super::population::member_spec;
use super::writer::Message;
use crate::error::{Error, Result};
use crate::experiment::{Metric, TrialSpec};
use crate::model::fused;
use crate::process;
use crate::search::{Curve, PastTrial, Pbt, Pruner, Sampler, Verdict};
use crate::store::Store;
use crate::train::ResumeState;
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
    /// Population-based training's step, in a PBT sweep.
    pub(super) pbt: Option<Pbt>,
    pub(super) metric: Metric,
    /// What to claim next, and when to wait or leave.
    pub(super) policy: ClaimPolicy,
    /// The leases of the trials this process holds.
    pub(super) holdings: Holdings,
    /// How old a holder's heartbeat may be before its trial is taken over.
    pub(super) stale_after: Duration,
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
        if self.error.is_some() || self.policy.at_limit() {
            return Next::Done;
        }
        match self.claim_next(settled).and_then(|next| match next {
            Next::Done if self.policy.waits_for_work() => self.look_again(),
            other => Ok(other),
        }) {
            Ok(Next::Run(id, trial, resume)) => {
                self.started(id);
                Next::Run(id, trial, resume)
            }
            Ok(other) => {
                self.policy.reachable();
                other
            }
            // Training goes on; claiming resumes once the database is back.
            Err(e @ Error::Unreachable { .. }) => match self.policy.unreachable(Instant::now()) {
                Outage::GiveUp => {
                    self.error = Some(e);
                    Next::Done
                }
                Outage::Retry { first } => {
                    if first {
                        tracing::warn!("{e}; retrying, running trials go on");
                    }
                    std::thread::sleep(Duration::from_millis(500));
                    Next::Wait
                }
            },
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
        if let Some((id, trial)) = self.policy.take_deferred(fits) {
            self.started(id);
            return Some((id, trial, None));
        }
        let full = |this: &Self| this.error.is_some() || this.policy.at_limit_with_deferred();
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
                    self.started(id);
                    return Some((id, member_spec(trial, resume.as_ref()), resume));
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
                    self.started(id);
                    return Some((id, trial, None));
                }
                Ok(Some(misfit)) => self.policy.defer(misfit),
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
            |draw, past, enqueued| sampler.draw_with(draw, past, enqueued),
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
            let TrialId(other_id) = other.id;
            if other.status == TrialStatus::Pending
                && other_id != id
                && !self.candidates.iter().any(|(c, _)| *c == other_id)
            {
                let _ = self.labels.send(Message::Label(other_id, spec.label()));
                self.candidates.push((other_id, spec));
            }
        }
        Ok(Some((id, trial)))
    }

    /// A slot took trial `id`.
    fn started(&mut self, id: i64) {
        self.policy.started(Instant::now());
        self.attempted.insert(id);
        self.taken_elsewhere.remove(&id);
    }

    /// Tries the policy's sources in its order.
    fn claim_next(&mut self, settled: bool) -> Result<Next> {
        let plan = self
            .policy
            .plan(settled, self.sampler.is_some(), self.pruner.pauses());
        for source in plan.sources {
            let found = match source {
                Source::Deferred => self
                    .policy
                    .take_deferred(|_| true)
                    .map(|(id, trial)| Next::Run(id, trial, None)),
                Source::Promotion => self.promote(false)?,
                // Without rungs that wait to fill, the first promotion has asked the same.
                Source::LastPromotion if self.pruner.fills_rungs() => self.promote(true)?,
                Source::LastPromotion => None,
                Source::Candidates => self.claim_candidates()?,
                Source::Draw => self.draw()?.map(|(id, trial)| Next::Run(id, trial, None)),
            };
            if let Some(next) = found {
                return Ok(next);
            }
        }
        Ok(match plan.otherwise {
            Otherwise::Wait => Next::Wait,
            Otherwise::Done => Next::Done,
        })
    }

    /// Claims the next unfinished trial that no other process holds.
    fn claim_candidates(&mut self) -> Result<Option<Next>> {
        while let Some((id, trial)) = self.candidates.get(self.next).cloned() {
            self.next += 1;
            match self.claim_candidate(id, &trial) {
                Ok(Some(resume)) => {
                    let trial = member_spec(trial, resume.as_ref());
                    return Ok(Some(Next::Run(id, trial, resume)));
                }
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
        Ok(None)
    }

    /// Whether this process still holds `trial` under `lease`; while the database is out of
    /// reach, yes without asking as long as the policy says (the writes are fenced anyway).
    pub(super) fn still_holds(&mut self, trial: i64, lease: Lease) -> bool {
        if !self.policy.lease_check_due(Instant::now()) {
            return true;
        }
        match self.store.holds(TrialId(trial), lease) {
            Ok(held) => {
                self.policy.reachable();
                held
            }
            Err(e @ Error::Unreachable { .. }) => {
                tracing::warn!("{e}; training goes on");
                self.policy.lease_check_unreachable(Instant::now());
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
        self.policy.ended(Instant::now());
    }

    /// Nothing was claimable: wait, reading the sweep's unfinished trials again when the policy
    /// says (a holder may die, a paused trial may qualify), until it says to leave; leave at once
    /// when every trial is final.
    fn look_again(&mut self) -> Result<Next> {
        match self.policy.nothing_claimable(Instant::now()) {
            Waiting::Leave => return Ok(Next::Done),
            Waiting::Wait => return Ok(Next::Wait),
            Waiting::Rescan => {}
        }
        let stored = self.store.sweep_trials(self.sweep_id)?;
        let budget_left = self
            .sampler
            .as_ref()
            .is_some_and(|s| stored.len() < s.total_trials());
        let unfinished: Vec<(i64, TrialSpec)> = stored
            .into_iter()
            .filter(|(row, _)| !row.status.is_final() && !self.attempted.contains(&row.id.0))
            .map(|(row, spec)| (row.id.0, spec))
            .collect();
        if unfinished.is_empty() && !budget_left && self.policy.running() == 0 {
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
        let claimed = self.store.claim_trial(
            TrialId(id),
            &self.owner,
            process::is_alive,
            self.stale_after,
            false,
        )?;
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

    /// Claims the paused trial that now qualifies best, continued from its rung; `drawn_out`:
    /// nothing is left to draw (see [`Pruner::promotion`]).
    fn promote(&mut self, drawn_out: bool) -> Result<Option<Next>> {
        let past = self.store.past_trials(self.sweep_id, self.metric)?;
        let Some(id) = self.pruner.promotion(&curves(&past), drawn_out) else {
            return Ok(None);
        };
        let claimed = self.store.claim_trial(
            TrialId(id),
            &self.owner,
            process::is_alive,
            self.stale_after,
            true,
        )?;
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
        Ok(Some(Next::Run(
            id,
            member_spec(trial, resume.as_ref()),
            resume,
        )))
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
            measures: t.measures,
        })
        .collect()
}
