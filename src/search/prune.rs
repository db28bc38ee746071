//! Early stopping: decides from the per-epoch validation values of the sweep's trials whether a
//! trial goes on, and which paused trial a free slot should continue first.
//!
//! With several objectives, ASHA ranks the trials at a rung as multi-objective ASHA does
//! (Schmucker et al. 2021, "Multi-objective Asynchronous Successive Halving"; Syne Tune's
//! `MOASHA` with its NSGA-II ranking): by their front in the non-dominated sorting of their
//! objectives at that rung (the metric at the rung's epoch, the others as measured), then within
//! a front by crowding distance, widest first, so that a rung keeps both ends of the front and
//! its spread rather than one crowded corner. The top 1/reduction_factor of that order go on.

use super::{Measures, pareto};
use crate::experiment::{Metric, Objective, PruneMethod, PruneSection};
use crate::trial::TrialStatus;

/// One trial's validation metric by epoch, as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Curve {
    /// Database id.
    pub trial: i64,
    /// Its status.
    pub status: TrialStatus,
    /// The metric after epoch 1, 2, ... (`None` where it was not finite).
    pub values: Vec<Option<f64>>,
    /// Its size and speed, for objectives other than the metric.
    pub measures: Measures,
}

/// What a trial does after an epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Train the next epoch.
    Continue,
    /// Stop for good.
    Prune,
    /// Stop at this rung, keeping the files to be promoted later.
    Pause,
}

/// An early-stopping rule with its settings.
#[derive(Debug, Clone)]
pub struct Pruner {
    settings: PruneSection,
    metric: Metric,
    /// Empty, or the objectives a multi-objective ASHA ranks.
    objectives: Vec<Objective>,
    /// Population-based training's population and interval: members pause after every
    /// interval until the whole population has reached that epoch.
    pbt: Option<(usize, usize)>,
}

impl Pruner {
    /// The rule `settings` describes, judging `metric`.
    pub fn new(settings: &PruneSection, metric: Metric) -> Self {
        Pruner {
            settings: settings.clone(),
            metric,
            objectives: Vec::new(),
            pbt: None,
        }
    }

    /// The same rule for population-based training (`settings` given): members pause after
    /// every interval, and continue once every member has reached that epoch.
    pub fn with_pbt(mut self, settings: Option<&crate::experiment::PbtSection>) -> Self {
        self.pbt = settings.map(|s| (s.population, s.interval.max(1)));
        self
    }

    /// The same rule ranking several objectives at each rung (one: the metric alone).
    pub fn with_objectives(mut self, objectives: &[Objective]) -> Self {
        self.objectives = if objectives.len() > 1 {
            objectives.to_vec()
        } else {
            Vec::new()
        };
        self
    }

    /// Whether this rule ever stops trials.
    pub fn is_active(&self) -> bool {
        self.settings.method != PruneMethod::None || self.pbt.is_some()
    }

    /// Whether trials may be paused (and so free slots should look for promotions).
    pub fn pauses(&self) -> bool {
        self.settings.method == PruneMethod::Asha || self.pbt.is_some()
    }

    /// Whether ASHA waits for its rungs to fill (see [`PruneSection::fill_rungs`]), so that a
    /// rung left short when nothing is left to draw still promotes its best.
    pub fn fills_rungs(&self) -> bool {
        self.pbt.is_none() && self.settings.fills_rungs()
    }

    /// Whether paused trials wait for each other (population-based training) rather than
    /// being pruned when nothing is left to draw.
    pub fn waits_for_population(&self) -> bool {
        self.pbt.is_some()
    }

    fn better(&self, a: f64, b: f64) -> bool {
        match self.metric {
            Metric::ValAcc => a > b,
            Metric::ValLoss => a < b,
        }
    }

    /// The verdict for a trial of `epochs` epochs after `own.len()` of them, whose values are
    /// `own`, given the other trials' curves.
    pub fn judge(&self, trial: i64, epochs: usize, own: &[f64], curves: &[Curve]) -> Verdict {
        let epoch = own.len();
        if epoch == 0 || epoch >= epochs {
            return Verdict::Continue;
        }
        if let Some((_, interval)) = self.pbt {
            return if epoch.is_multiple_of(interval) {
                Verdict::Pause
            } else {
                Verdict::Continue
            };
        }
        let others = curves.iter().filter(|c| c.trial != trial);
        match self.settings.method {
            PruneMethod::None => Verdict::Continue,
            PruneMethod::Median => self.median(epoch, own, others),
            PruneMethod::Asha => {
                if !self.is_rung(epoch) {
                    return Verdict::Continue;
                }
                let value = own[epoch - 1];
                let measures = curves
                    .iter()
                    .find(|c| c.trial == trial)
                    .map_or_else(Measures::default, |c| c.measures);
                if self.qualifies(trial, (value, &measures), epoch, others, false) {
                    Verdict::Continue
                } else {
                    Verdict::Pause
                }
            }
        }
    }

    /// Optuna's MedianPruner: once `startup_trials` have finished and the trial has trained
    /// `min_epochs`, stop it when its best value so far is worse than the median of the
    /// finished trials' values at this epoch.
    fn median<'a>(
        &self,
        epoch: usize,
        own: &[f64],
        others: impl Iterator<Item = &'a Curve>,
    ) -> Verdict {
        if epoch < self.settings.min_epochs {
            return Verdict::Continue;
        }
        let finished: Vec<&Curve> = others.filter(|c| c.status == TrialStatus::Done).collect();
        if finished.is_empty() || finished.len() < self.settings.startup_trials {
            return Verdict::Continue;
        }
        let best = own.iter().copied().fold(f64::NAN, |best, x| {
            if best.is_nan() || self.better(x, best) {
                x
            } else {
                best
            }
        });
        if best.is_nan() {
            return Verdict::Prune;
        }
        let mut at_epoch: Vec<f64> = finished
            .iter()
            .filter_map(|c| c.values.get(epoch - 1).copied().flatten())
            .collect();
        if at_epoch.is_empty() {
            return Verdict::Continue;
        }
        let median = percentile_50(&mut at_epoch);
        if self.better(median, best) {
            Verdict::Prune
        } else {
            Verdict::Continue
        }
    }

    /// ASHA's rungs: `min_epochs * reduction_factor^k`.
    fn is_rung(&self, epoch: usize) -> bool {
        let mut rung = self.settings.min_epochs.max(1);
        while rung < epoch {
            rung = rung.saturating_mul(self.settings.reduction_factor.max(2));
        }
        rung == epoch
    }

    /// How many of `n` trials recorded at a rung go on: the top 1/reduction_factor. With fewer
    /// than reduction_factor, none while the rung fills (`fill_rungs`), else the best, as in
    /// Optuna's successive halving; `drawn_out` (nothing is left to draw) the best either way,
    /// so that a small budget still trains some trial to its end.
    fn rung_places(&self, n: usize, drawn_out: bool) -> usize {
        let top = n / self.settings.reduction_factor.max(2);
        if self.settings.fills_rungs() && !drawn_out {
            top
        } else {
            top.max(1)
        }
    }

    /// Whether trial `trial`, with `value` and `measures` at rung `epoch`, is among the
    /// [`rung_places`](Self::rung_places) best of every trial recorded at that rung (itself
    /// included).
    fn qualifies<'a>(
        &self,
        trial: i64,
        (value, measures): (f64, &Measures),
        epoch: usize,
        others: impl Iterator<Item = &'a Curve>,
        drawn_out: bool,
    ) -> bool {
        if value.is_nan() {
            return false;
        }
        if !self.objectives.is_empty() {
            return self.qualifies_on_front(trial, (value, measures), epoch, others, drawn_out);
        }
        let competitors: Vec<f64> = others
            .filter_map(|c| c.values.get(epoch - 1).copied().flatten())
            .collect();
        let top = self.rung_places(competitors.len() + 1, drawn_out);
        let ahead = competitors
            .iter()
            .filter(|&&x| self.better(x, value))
            .count();
        ahead < top
    }

    /// Multi-objective ASHA's rule (see the module's notes).
    fn qualifies_on_front<'a>(
        &self,
        trial: i64,
        (value, measures): (f64, &Measures),
        epoch: usize,
        others: impl Iterator<Item = &'a Curve>,
        drawn_out: bool,
    ) -> bool {
        let mut ids = vec![trial];
        let mut points = vec![self.losses(value, measures)];
        for c in others {
            if let Some(v) = c.values.get(epoch - 1).copied().flatten() {
                ids.push(c.trial);
                points.push(self.losses(v, &c.measures));
            }
        }
        let top = self.rung_places(points.len(), drawn_out);
        pareto::ranking(&points, &ids)[..top].contains(&0)
    }

    /// The objectives of a trial whose metric is `value`, in loss form.
    fn losses(&self, value: f64, measures: &Measures) -> Vec<f64> {
        self.objectives
            .iter()
            .map(|&o| {
                let v = match o {
                    Objective::ValAcc | Objective::ValLoss => Some(value),
                    Objective::Params => measures.params,
                    Objective::EpochSeconds => measures.epoch_seconds,
                    Objective::LatencyMs => measures.latency_ms,
                };
                v.map_or(f64::NAN, |v| o.loss(v))
            })
            .collect()
    }

    /// The paused trial a free slot should continue now: of those that now qualify at their
    /// rung, the one at the highest rung, then with the best value. `drawn_out`: nothing is
    /// left to draw, so a rung that has not filled will not fill: its best qualifies.
    pub fn promotion(&self, curves: &[Curve], drawn_out: bool) -> Option<i64> {
        if let Some((population, _)) = self.pbt {
            return population_step(curves, population);
        }
        if !self.pauses() {
            return None;
        }
        curves
            .iter()
            .filter(|c| c.status == TrialStatus::Paused && !c.values.is_empty())
            .filter_map(|c| {
                let epoch = c.values.len();
                let value = c.values[epoch - 1]?;
                let others = curves.iter().filter(|o| o.trial != c.trial);
                self.qualifies(c.trial, (value, &c.measures), epoch, others, drawn_out)
                    .then_some((epoch, value, c.trial))
            })
            .max_by(|a, b| {
                a.0.cmp(&b.0).then(if self.better(a.1, b.1) {
                    std::cmp::Ordering::Greater
                } else if self.better(b.1, a.1) {
                    std::cmp::Ordering::Less
                } else {
                    b.2.cmp(&a.2)
                })
            })
            .map(|(_, _, trial)| trial)
    }
}

/// Population-based training's next member to continue: of the members paused after an
/// epoch that the whole population has reached, the one paused earliest, then the lowest id.
fn population_step(curves: &[Curve], population: usize) -> Option<i64> {
    curves
        .iter()
        .filter(|c| {
            c.status == TrialStatus::Paused
                && population_reached(curves, c.values.len(), population)
        })
        .min_by_key(|c| (c.values.len(), c.trial))
        .map(|c| c.trial)
}

/// Whether every member of a population of `population` has trained `epoch` epochs or ended
/// before (a failed member is retried by a later run, from its own files, and must not hold
/// the others back meanwhile).
pub fn population_reached(curves: &[Curve], epoch: usize, population: usize) -> bool {
    curves.len() >= population
        && curves.iter().all(|c| {
            c.values.len() >= epoch || c.status.is_final() || c.status == TrialStatus::Failed
        })
}

/// The median as numpy's percentile computes it (linear interpolation).
fn percentile_50(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        0.5 * (values[n / 2 - 1] + values[n / 2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn curve(trial: i64, status: TrialStatus, values: &[f64]) -> Curve {
        Curve {
            trial,
            status,
            values: values.iter().map(|&v| Some(v)).collect(),
            measures: Measures::default(),
        }
    }

    fn settings(method: PruneMethod, min_epochs: usize, startup: usize) -> PruneSection {
        PruneSection {
            method,
            min_epochs,
            reduction_factor: 3,
            startup_trials: startup,
            fill_rungs: None,
        }
    }

    #[test]
    fn median_prunes_below_the_median_of_finished_trials_at_the_same_epoch() {
        let pruner = Pruner::new(&settings(PruneMethod::Median, 2, 3), Metric::ValAcc);
        // Finished trials at epoch 2: 0.60, 0.70, 0.80, 0.90 -> median 0.75.
        let mut history = vec![
            curve(1, TrialStatus::Done, &[0.5, 0.60, 0.7]),
            curve(2, TrialStatus::Done, &[0.5, 0.70, 0.7]),
            curve(3, TrialStatus::Done, &[0.5, 0.80, 0.9]),
            curve(4, TrialStatus::Done, &[0.5, 0.90, 0.9]),
            // Running and pruned trials do not count.
            curve(5, TrialStatus::Running, &[0.1, 0.1]),
            curve(6, TrialStatus::Pruned, &[0.1, 0.1]),
        ];
        // Best so far 0.74 < 0.75: pruned. Best so far 0.76 (from epoch 1): kept.
        assert_eq!(pruner.judge(9, 5, &[0.3, 0.74], &history), Verdict::Prune);
        assert_eq!(
            pruner.judge(9, 5, &[0.76, 0.5], &history),
            Verdict::Continue
        );
        // Before min_epochs: never.
        assert_eq!(pruner.judge(9, 5, &[0.0], &history), Verdict::Continue);
        // Fewer finished trials than startup_trials: never.
        history.truncate(2);
        assert_eq!(pruner.judge(9, 5, &[0.3, 0.1], &history), Verdict::Continue);
        // Minimising a loss: worse is higher.
        let loss = Pruner::new(&settings(PruneMethod::Median, 1, 1), Metric::ValLoss);
        let history = vec![
            curve(1, TrialStatus::Done, &[1.0]),
            curve(2, TrialStatus::Done, &[2.0]),
        ];
        assert_eq!(loss.judge(9, 3, &[1.6], &history), Verdict::Prune);
        assert_eq!(loss.judge(9, 3, &[1.4], &history), Verdict::Continue);
    }

    #[test]
    fn multi_objective_asha_keeps_the_ends_of_the_front_at_a_rung() {
        let pruner = Pruner::new(&settings(PruneMethod::Asha, 1, 0), Metric::ValAcc)
            .with_objectives(&[Objective::ValAcc, Objective::Params]);
        let trial = |id: i64, acc: f64, params: f64| Curve {
            measures: Measures {
                params: Some(params),
                ..Measures::default()
            },
            ..curve(id, TrialStatus::Running, &[acc])
        };
        // Front 0: 1 (0.90, 1000), 2 (0.80, 100), 3 (0.70, 10). Front 1: 4 (0.85, 2000, below
        // 1), 5 (0.60, 50, below 3), 6 (0.75, 500, below 2). Six at the rung keep two: within
        // front 0 the ends have infinite crowding distance, so 1 and 3 go on and 2 pauses,
        // though single-objective ASHA would keep 1 and 4, the two most accurate.
        let rung = vec![
            trial(1, 0.90, 1000.0),
            trial(2, 0.80, 100.0),
            trial(3, 0.70, 10.0),
            trial(4, 0.85, 2000.0),
            trial(5, 0.60, 50.0),
            trial(6, 0.75, 500.0),
        ];
        let verdict = |id: i64| {
            let acc = rung[id as usize - 1].values[0].unwrap();
            pruner.judge(id, 9, &[acc], &rung)
        };
        assert_eq!(verdict(1), Verdict::Continue);
        assert_eq!(verdict(3), Verdict::Continue);
        for id in [2, 4, 5, 6] {
            assert_eq!(verdict(id), Verdict::Pause, "trial {id}");
        }
        let single = Pruner::new(&settings(PruneMethod::Asha, 1, 0), Metric::ValAcc);
        assert_eq!(single.judge(4, 9, &[0.85], &rung), Verdict::Continue);
        assert_eq!(single.judge(3, 9, &[0.70], &rung), Verdict::Pause);
        // A missing measure counts as the worst: without its size, trial 3 falls behind.
        let mut unmeasured = rung.clone();
        unmeasured[2].measures = Measures::default();
        assert_eq!(pruner.judge(3, 9, &[0.70], &unmeasured), Verdict::Pause);
    }

    #[test]
    fn asha_pauses_outside_the_top_third_at_rungs_and_promotes_when_qualified() {
        let pruner = Pruner::new(
            &PruneSection {
                fill_rungs: Some(true),
                ..settings(PruneMethod::Asha, 1, 0)
            },
            Metric::ValAcc,
        );
        // Rungs at 1, 3, 9.
        assert!(pruner.is_rung(1) && pruner.is_rung(3) && pruner.is_rung(9));
        assert!(!pruner.is_rung(2) && !pruner.is_rung(4));
        // Alone at a rung, or one of two: it waits for the rung to fill.
        assert_eq!(pruner.judge(1, 9, &[0.5], &[]), Verdict::Pause);
        let two = [curve(1, TrialStatus::Paused, &[0.5])];
        assert_eq!(pruner.judge(2, 9, &[0.6], &two), Verdict::Pause);
        // With nothing left to draw the rung will not fill: its best goes on.
        assert_eq!(pruner.promotion(&two, false), None);
        assert_eq!(pruner.promotion(&two, true), Some(1));
        // Optuna's rule (fill_rungs unset): the best of fewer than three goes on at once.
        let optuna = Pruner::new(&settings(PruneMethod::Asha, 1, 0), Metric::ValAcc);
        assert_eq!(optuna.judge(1, 9, &[0.5], &[]), Verdict::Continue);
        assert_eq!(optuna.judge(2, 9, &[0.6], &two), Verdict::Continue);
        assert_eq!(optuna.judge(2, 9, &[0.4], &two), Verdict::Pause);
        let history = vec![
            curve(1, TrialStatus::Running, &[0.5]),
            curve(2, TrialStatus::Paused, &[0.4]),
        ];
        // Third at rung 1 with 0.55: top 1 of 3 -> it goes on.
        assert_eq!(pruner.judge(3, 9, &[0.55], &history), Verdict::Continue);
        // Third at rung 1 with 0.45: top 1 of 3 is 0.5 -> paused.
        assert_eq!(pruner.judge(3, 9, &[0.45], &history), Verdict::Pause);
        // Not at a rung: go on.
        assert_eq!(
            pruner.judge(3, 9, &[0.45, 0.1], &history),
            Verdict::Continue
        );
        // The last epoch is never a pause.
        assert_eq!(pruner.judge(3, 1, &[0.1], &history), Verdict::Continue);
        // Nothing paused qualifies yet (trial 1 holds the single top place).
        assert_eq!(pruner.promotion(&history, false), None);
        // Six values at rung 1 -> top 2: the paused 0.4 is second now and is promoted.
        let mut more = history.clone();
        more.extend([
            curve(3, TrialStatus::Paused, &[0.3]),
            curve(4, TrialStatus::Paused, &[0.2]),
            curve(5, TrialStatus::Paused, &[0.1]),
            curve(6, TrialStatus::Paused, &[0.05]),
        ]);
        assert_eq!(pruner.promotion(&more, false), Some(2));
        // Alone at rung 3, trial 7 waits for that rung to fill (and its 0.9 at rung 1 takes
        // one of that rung's two places from trial 2)...
        more.push(curve(7, TrialStatus::Paused, &[0.9, 0.9, 0.9]));
        assert_eq!(pruner.promotion(&more, false), None);
        // ...unless nothing is left to draw: then the higher rung's best goes first.
        assert_eq!(pruner.promotion(&more, true), Some(7));
        assert_eq!(optuna.promotion(&more, false), Some(7));
    }

    #[test]
    fn population_members_pause_every_interval_and_wait_for_the_whole_population() {
        let settings = crate::experiment::PbtSection {
            population: 3,
            interval: 2,
            ..Default::default()
        };
        let pruner =
            Pruner::new(&PruneSection::default(), Metric::ValAcc).with_pbt(Some(&settings));
        assert!(pruner.pauses() && pruner.waits_for_population());
        assert_eq!(pruner.judge(1, 6, &[0.5], &[]), Verdict::Continue);
        assert_eq!(pruner.judge(1, 6, &[0.5, 0.6], &[]), Verdict::Pause);
        assert_eq!(
            pruner.judge(1, 6, &[0.5, 0.6, 0.7, 0.8, 0.8, 0.9], &[]),
            Verdict::Continue
        );
        let mut population = vec![
            curve(1, TrialStatus::Paused, &[0.5, 0.6]),
            curve(2, TrialStatus::Running, &[0.4]),
        ];
        // A member not yet drawn, then one short of the epoch: nobody goes on.
        assert_eq!(pruner.promotion(&population, false), None);
        population.push(curve(3, TrialStatus::Paused, &[0.3, 0.2]));
        assert_eq!(pruner.promotion(&population, false), None);
        // Every member has reached epoch 2: the lowest id goes first.
        population[1] = curve(2, TrialStatus::Paused, &[0.4, 0.45]);
        assert_eq!(pruner.promotion(&population, false), Some(1));
        // A member that ended early (diverged) no longer holds the others back.
        population[1] = curve(2, TrialStatus::Diverged, &[0.4]);
        assert_eq!(pruner.promotion(&population, false), Some(1));
        // The earliest step first.
        population[0] = curve(1, TrialStatus::Paused, &[0.5, 0.6, 0.6, 0.7]);
        assert_eq!(pruner.promotion(&population, false), Some(3));
    }
}
