//! What a process's free slots do next, decided only from what the policy is told: how many
//! trials this process claimed and runs, whether the database answered, the draws that wait for a
//! fused group, and the time, which the caller passes in. It holds no store and reads no clock,
//! so unit tests drive it with a fake clock and a history held in memory; the dispenser
//! (`dispenser.rs`) carries out its decisions against the database.

use crate::experiment::TrialSpec;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// How long a process keeps retrying a database it cannot reach (a PostgreSQL restart, a
/// network cut) before it gives up; what it owes is written once the database is back.
pub(super) const RECONNECT_PATIENCE: Duration = Duration::from_secs(600);

/// While the database is out of reach, how long training goes on without asking it again
/// whether this process still holds its trials.
pub(super) const OUTAGE_RECHECK: Duration = Duration::from_secs(10);

/// How often a waiting worker reads the sweep's trials again.
pub(super) const RESCAN_EVERY: Duration = Duration::from_secs(1);

/// Where a free slot looks for its next trial, in the order a [`Plan`] lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Source {
    /// A trial drawn (and claimed) for a fused group it did not fit.
    Deferred,
    /// The paused trial that now qualifies best for promotion.
    Promotion,
    /// The next unfinished trial of the sweep.
    Candidates,
    /// A new draw from the sampler while the budget lasts.
    Draw,
    /// With nothing left to draw or claim, the best paused trial of a rung that did not fill.
    LastPromotion,
}

/// What a slot does when none of a plan's sources gives it a trial.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Otherwise {
    /// Ask again shortly: something running may yet make a trial claimable.
    Wait,
    /// Nothing is left for this process (unless it waits for work: see
    /// [`ClaimPolicy::nothing_claimable`]).
    Done,
}

/// The sources to try in order, and what to do when none gives a trial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Plan {
    /// Tried first to last.
    pub(super) sources: Vec<Source>,
    /// When none of them gives a trial.
    pub(super) otherwise: Otherwise,
}

/// What a waiting process does after finding nothing claimable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Waiting {
    /// It has had nothing to do for its whole patience: it leaves.
    Leave,
    /// Ask again shortly, without reading the trials.
    Wait,
    /// Read the sweep's unfinished trials again (a holder may have died, a paused trial may
    /// qualify).
    Rescan,
}

/// What to do about a database that did not answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Outage {
    /// Retry shortly; `first` when this outage just began (worth a warning).
    Retry {
        /// The outage began with this failure.
        first: bool,
    },
    /// Out of reach for longer than [`RECONNECT_PATIENCE`]: stop claiming.
    GiveUp,
}

/// The wait of a process that stays for work (`sweep worker --idle-exit`).
#[derive(Debug, Clone, Copy)]
struct IdleClock {
    patience: Duration,
    /// Since when this process has had nothing to train.
    since: Instant,
    /// When the sweep's trials were last read.
    scanned: Instant,
}

/// The claim policy of one process.
#[derive(Debug)]
pub(super) struct ClaimPolicy {
    /// `--max-trials`.
    max_trials: Option<usize>,
    /// Trials this process has claimed and handed to its slots.
    claimed: usize,
    /// Trials its slots are training now.
    running: usize,
    idle: Option<IdleClock>,
    /// Since when the database has been out of reach, while it is.
    outage: Option<Instant>,
    /// Drawn and claimed trials that did not fit the fused group they were drawn for: the next
    /// groups take them first.
    deferred: VecDeque<(i64, TrialSpec)>,
}

impl ClaimPolicy {
    /// A process that leaves after `max_trials` claims (if given) and, when `idle_patience` is
    /// given, waits that long for claimable trials before leaving; it starts at `now`.
    pub(super) fn new(
        max_trials: Option<usize>,
        idle_patience: Option<Duration>,
        now: Instant,
    ) -> Self {
        ClaimPolicy {
            max_trials,
            claimed: 0,
            running: 0,
            idle: idle_patience.map(|patience| IdleClock {
                patience,
                since: now,
                scanned: now,
            }),
            outage: None,
            deferred: VecDeque::new(),
        }
    }

    /// Whether `--max-trials` stops this process from taking another trial.
    pub(super) fn at_limit(&self) -> bool {
        self.max_trials.is_some_and(|max| self.claimed >= max)
    }

    /// Whether `--max-trials` stops this process from claiming another trial for a fused group:
    /// the draws waiting for a later group count, as they are claimed already.
    pub(super) fn at_limit_with_deferred(&self) -> bool {
        self.max_trials
            .is_some_and(|max| self.claimed + self.deferred.len() >= max)
    }

    /// A slot took a claimed trial at `now`.
    pub(super) fn started(&mut self, now: Instant) {
        self.claimed += 1;
        self.running += 1;
        if let Some(idle) = &mut self.idle {
            idle.since = now;
        }
    }

    /// A trial trained here ended at `now`: a waiting process's patience counts from here.
    pub(super) fn ended(&mut self, now: Instant) {
        self.running -= 1;
        if let Some(idle) = &mut self.idle {
            idle.since = now;
        }
    }

    /// Trials training here now.
    pub(super) fn running(&self) -> usize {
        self.running
    }

    /// Whether this process waits for claimable trials instead of leaving when none is left.
    pub(super) fn waits_for_work(&self) -> bool {
        self.idle.is_some()
    }

    /// Where a free slot looks, in order. `settled`: every event this process sent is in the
    /// database; `searching`: a sampler draws new trials; `pausing`: the pruner pauses trials at
    /// rungs (ASHA).
    pub(super) fn plan(&self, settled: bool, searching: bool, pausing: bool) -> Plan {
        // A trial drawn for a fused group it did not fit is claimed already: it goes first.
        if !self.deferred.is_empty() {
            return Plan {
                sources: vec![Source::Deferred],
                otherwise: Otherwise::Wait,
            };
        }
        // Samplers and promotions decide from the history: let it include every event this
        // process has sent (with one slot, that makes a search reproducible).
        if (searching || pausing) && !settled {
            return Plan {
                sources: Vec::new(),
                otherwise: Otherwise::Wait,
            };
        }
        let mut sources = Vec::with_capacity(4);
        if pausing {
            sources.push(Source::Promotion);
        }
        sources.extend([Source::Candidates, Source::Draw]);
        if pausing {
            sources.push(Source::LastPromotion);
        }
        // A running trial may still make a paused one promotable.
        let otherwise = if pausing && self.running > 0 {
            Otherwise::Wait
        } else {
            Otherwise::Done
        };
        Plan { sources, otherwise }
    }

    /// Nothing was claimable at `now`: what a process that waits for work does next. A free
    /// slot beside a training one keeps looking (its trial may end in a holder's death or a
    /// promotion), so the patience counts only while nothing runs here.
    pub(super) fn nothing_claimable(&mut self, now: Instant) -> Waiting {
        let running = self.running;
        let Some(idle) = &mut self.idle else {
            return Waiting::Leave;
        };
        if running > 0 {
            idle.since = now;
        }
        if now.saturating_duration_since(idle.since) >= idle.patience {
            return Waiting::Leave;
        }
        if now.saturating_duration_since(idle.scanned) < RESCAN_EVERY {
            return Waiting::Wait;
        }
        idle.scanned = now;
        Waiting::Rescan
    }

    /// A claim failed at `now` because the database did not answer.
    pub(super) fn unreachable(&mut self, now: Instant) -> Outage {
        let first = self.outage.is_none();
        let since = *self.outage.get_or_insert(now);
        if now.saturating_duration_since(since) > RECONNECT_PATIENCE {
            Outage::GiveUp
        } else {
            Outage::Retry { first }
        }
    }

    /// The database answered.
    pub(super) fn reachable(&mut self) {
        self.outage = None;
    }

    /// Whether to ask the database at `now` if a trial is still held. While it is out of reach
    /// the answer is taken as yes for [`OUTAGE_RECHECK`] at a time, so training goes on instead
    /// of waiting on the connection (its writes are fenced by the lease anyway).
    pub(super) fn lease_check_due(&self, now: Instant) -> bool {
        self.outage
            .is_none_or(|since| now.saturating_duration_since(since) >= OUTAGE_RECHECK)
    }

    /// A lease check at `now` found the database out of reach.
    pub(super) fn lease_check_unreachable(&mut self, now: Instant) {
        self.outage = Some(now);
    }

    /// A drawn trial that did not fit its fused group waits for a later one.
    pub(super) fn defer(&mut self, trial: (i64, TrialSpec)) {
        self.deferred.push_back(trial);
    }

    /// The oldest deferred draw whose trial `fits`, if any.
    pub(super) fn take_deferred(
        &mut self,
        fits: impl Fn(&TrialSpec) -> bool,
    ) -> Option<(i64, TrialSpec)> {
        let at = self.deferred.iter().position(|(_, trial)| fits(trial))?;
        self.deferred.remove(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::{ExperimentSpec, Metric, PruneMethod, PruneSection, expand};
    use crate::search::{Curve, Pruner};
    use crate::trial::TrialStatus;

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    /// A trial of the default experiment with batch size `batch_size`.
    fn spec(batch_size: usize) -> TrialSpec {
        let mut trial = expand(&ExperimentSpec::default()).remove(0);
        trial.batch_size = batch_size;
        trial
    }

    #[test]
    fn idle_patience_counts_from_the_end_of_the_last_trial_not_from_its_claim() {
        let t0 = Instant::now();
        let mut policy = ClaimPolicy::new(None, Some(secs(20)), t0);
        policy.started(t0);
        // The trial outlasts the patience: a free slot beside it keeps looking.
        assert_eq!(policy.nothing_claimable(t0 + secs(25)), Waiting::Rescan);
        policy.ended(t0 + secs(30));
        assert_eq!(policy.nothing_claimable(t0 + secs(45)), Waiting::Rescan);
        assert_eq!(policy.nothing_claimable(t0 + secs(45)), Waiting::Wait);
        assert_eq!(policy.nothing_claimable(t0 + secs(49)), Waiting::Rescan);
        assert_eq!(policy.nothing_claimable(t0 + secs(50)), Waiting::Leave);
    }

    #[test]
    fn a_process_that_does_not_wait_leaves_when_nothing_is_claimable() {
        let t0 = Instant::now();
        let mut policy = ClaimPolicy::new(None, None, t0);
        assert!(!policy.waits_for_work());
        assert_eq!(policy.nothing_claimable(t0), Waiting::Leave);
    }

    #[test]
    fn an_outage_is_retried_for_the_reconnect_patience_and_a_reply_resets_it() {
        let t0 = Instant::now();
        let mut policy = ClaimPolicy::new(None, None, t0);
        assert_eq!(policy.unreachable(t0), Outage::Retry { first: true });
        assert_eq!(
            policy.unreachable(t0 + RECONNECT_PATIENCE),
            Outage::Retry { first: false }
        );
        policy.reachable();
        // A new outage starts its own clock.
        let t1 = t0 + RECONNECT_PATIENCE + secs(1);
        assert_eq!(policy.unreachable(t1), Outage::Retry { first: true });
        assert_eq!(
            policy.unreachable(t1 + RECONNECT_PATIENCE + secs(1)),
            Outage::GiveUp
        );
    }

    #[test]
    fn leases_are_not_asked_for_while_an_outage_is_fresh() {
        let t0 = Instant::now();
        let mut policy = ClaimPolicy::new(None, None, t0);
        assert!(policy.lease_check_due(t0));
        policy.lease_check_unreachable(t0);
        assert!(!policy.lease_check_due(t0 + OUTAGE_RECHECK - secs(1)));
        assert!(policy.lease_check_due(t0 + OUTAGE_RECHECK));
        policy.reachable();
        assert!(policy.lease_check_due(t0 + secs(1)));
    }

    #[test]
    fn max_trials_stops_claims_and_counts_draws_waiting_for_a_group() {
        let t0 = Instant::now();
        let mut policy = ClaimPolicy::new(Some(3), None, t0);
        policy.started(t0);
        policy.started(t0);
        assert!(!policy.at_limit() && !policy.at_limit_with_deferred());
        policy.defer((7, spec(32)));
        assert!(!policy.at_limit(), "the deferred draw may still be run");
        assert!(
            policy.at_limit_with_deferred(),
            "no further draw for a group"
        );
        policy.started(t0);
        assert!(policy.at_limit());
        assert!(!ClaimPolicy::new(None, None, t0).at_limit());
    }

    #[test]
    fn draws_that_miss_a_fused_group_go_to_the_next_groups_first_in_order() {
        let t0 = Instant::now();
        let mut policy = ClaimPolicy::new(None, None, t0);
        let fits = |batch: usize| move |t: &TrialSpec| t.batch_size == batch;
        policy.defer((4, spec(32)));
        policy.defer((5, spec(128)));
        policy.defer((6, spec(32)));
        // A free slot takes the deferred draws before anything else.
        assert_eq!(policy.plan(true, true, false).sources, [Source::Deferred]);
        assert_eq!(policy.take_deferred(fits(64)), None);
        assert_eq!(policy.take_deferred(fits(32)).map(|(id, _)| id), Some(4));
        assert_eq!(policy.take_deferred(fits(32)).map(|(id, _)| id), Some(6));
        assert_eq!(policy.take_deferred(|_| true).map(|(id, _)| id), Some(5));
        assert_eq!(
            policy.plan(true, true, false).sources,
            [Source::Candidates, Source::Draw]
        );
    }

    #[test]
    fn a_search_waits_for_its_history_and_promotions_come_before_other_trials() {
        let t0 = Instant::now();
        let mut policy = ClaimPolicy::new(None, None, t0);
        let unsettled = policy.plan(false, true, false);
        assert!(unsettled.sources.is_empty() && unsettled.otherwise == Otherwise::Wait);
        let grid = policy.plan(false, false, false);
        assert_eq!(grid.sources, [Source::Candidates, Source::Draw]);
        assert_eq!(grid.otherwise, Otherwise::Done);
        let asha = policy.plan(true, true, true);
        assert_eq!(
            asha.sources,
            [
                Source::Promotion,
                Source::Candidates,
                Source::Draw,
                Source::LastPromotion
            ]
        );
        assert_eq!(asha.otherwise, Otherwise::Done);
        // While a trial runs here it may make a paused one promotable.
        policy.started(t0);
        assert_eq!(policy.plan(true, true, true).otherwise, Otherwise::Wait);
    }

    /// ASHA with reduction factor 3 over a history held in memory: the paused trials at the
    /// first rung are promoted best first, one per free slot, and no further once the rung's
    /// top third has gone on.
    #[test]
    fn asha_promotes_the_best_paused_trials_first() {
        let settings = PruneSection {
            method: PruneMethod::Asha,
            min_epochs: 1,
            reduction_factor: 3,
            ..PruneSection::default()
        };
        let pruner = Pruner::new(&settings, Metric::ValAcc);
        let policy = ClaimPolicy::new(None, None, Instant::now());
        let values = [0.50, 0.80, 0.65, 0.90, 0.55, 0.70];
        let mut history: Vec<Curve> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| Curve {
                trial: i as i64 + 1,
                status: TrialStatus::Paused,
                values: vec![Some(v)],
                measures: Default::default(),
            })
            .collect();
        let mut promoted = Vec::new();
        while policy.plan(true, true, true).sources[0] == Source::Promotion
            && let Some(id) = pruner.promotion(&history, false)
        {
            promoted.push(id);
            let trial = history.iter_mut().find(|c| c.trial == id).unwrap();
            trial.status = TrialStatus::Running;
            trial.values.push(Some(0.95));
        }
        assert_eq!(promoted, [4, 2], "the top third of six, best first");
    }
}
