//! What a free slot does next: which configuration a searching sampler draws, and whether a
//! trial goes on after an epoch. Samplers and pruners decide from the sweep's history, handed
//! to them by the scheduler from the store; they never train and never touch the database.

mod nsga2;
pub mod pareto;
mod pbt;
mod prune;
mod random;
mod space;
mod tpe;

pub use pbt::{Member, Pbt, Step};
pub use prune::{Curve, Pruner, Verdict, population_reached};
pub use space::{Domain, Param, Point, Space};

use crate::experiment::{ExperimentSpec, Metric, Objective, SamplerName, TrialSpec};
use crate::rng::Rng;
use crate::trial::TrialStatus;

/// How a past trial ended, as a sampler sees it, in loss form (lower is better).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Outcome {
    /// Trained every epoch; its best value.
    Finished {
        /// The best metric value over its epochs, negated when higher is better.
        loss: f64,
    },
    /// Pruned or paused after `epoch` epochs.
    Stopped {
        /// Epochs it trained.
        epoch: usize,
        /// The metric at that epoch, negated when higher is better.
        loss: f64,
    },
    /// Being trained now: counted as the worst outcome (Optuna's constant liar), so that
    /// draws made while it runs look elsewhere instead of beside it.
    Running,
}

/// A past trial: where it was in the space and how it ended.
#[derive(Debug, Clone, PartialEq)]
pub struct Observation {
    /// Its point in the space.
    pub point: Point,
    /// Its result.
    pub outcome: Outcome,
    /// Every objective in loss form where it ended (NaN where not measured); with one
    /// objective, the loss of `outcome`.
    pub losses: Vec<f64>,
    /// The draw that made it.
    pub draw: u64,
}

/// What a trial measured besides its validation curve.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Measures {
    /// Trainable parameters.
    pub params: Option<f64>,
    /// Mean seconds of an epoch's training batches.
    pub epoch_seconds: Option<f64>,
    /// Milliseconds per image at batch 1.
    pub latency_ms: Option<f64>,
}

/// A stored trial as the scheduler hands it to a sampler.
#[derive(Debug, Clone)]
pub struct PastTrial {
    /// Database id.
    pub id: i64,
    /// Its parameters.
    pub spec: TrialSpec,
    /// Its status.
    pub status: TrialStatus,
    /// Its best metric value (finished trials).
    pub best: Option<f64>,
    /// Its metric by epoch.
    pub values: Vec<Option<f64>>,
    /// Its size and speed.
    pub measures: Measures,
}

impl PastTrial {
    /// Its value of `objective` after `epoch` epochs (the metric at that epoch; the others as
    /// measured), or at its end (`None`: the metric's best).
    pub fn objective(&self, objective: Objective, epoch: Option<usize>) -> Option<f64> {
        match objective {
            Objective::ValAcc | Objective::ValLoss => match epoch {
                Some(e) => self.values.get(e.checked_sub(1)?).copied().flatten(),
                None => self.best,
            },
            Objective::Params => self.measures.params,
            Objective::EpochSeconds => self.measures.epoch_seconds,
            Objective::LatencyMs => self.measures.latency_ms,
        }
    }

    /// Its objectives in loss form (NaN where missing), after `epoch` epochs or at its end.
    pub fn losses(&self, objectives: &[Objective], epoch: Option<usize>) -> Vec<f64> {
        objectives
            .iter()
            .map(|&o| self.objective(o, epoch).map_or(f64::NAN, |v| o.loss(v)))
            .collect()
    }
}

/// The coordinates an enqueued configuration fixes (`sweep enqueue`), by parameter name: a
/// drawn value, or the index of a listed one.
pub type Fixed = std::collections::BTreeMap<String, f64>;

/// A searching sampler bound to an experiment.
#[derive(Debug, Clone)]
pub struct Sampler {
    kind: SamplerName,
    seed: u64,
    metric: Metric,
    objectives: Vec<Objective>,
    population: usize,
    /// TPE models the axes jointly.
    multivariate: bool,
    /// TPE's random start-up trials.
    startup: usize,
    space: Space,
    repeats: u32,
    budget: usize,
    /// Final trials of earlier sweeps that fall inside this space (`[sweep] warm_start`).
    borrowed: Vec<PastTrial>,
}

impl Sampler {
    /// The sampler an experiment asks for; `None` for a grid.
    pub fn new(spec: &ExperimentSpec) -> Option<Self> {
        let kind = spec.sweep.sampler;
        (kind != SamplerName::Grid).then(|| Sampler {
            kind,
            seed: spec.sweep.seed,
            metric: spec.sweep.metric,
            objectives: spec.sweep.objectives(),
            population: spec.sweep.population,
            multivariate: spec.sweep.tpe_multivariate(),
            startup: spec.sweep.tpe_startup_trials(),
            space: Space::new(spec),
            repeats: spec.sweep.repeats,
            budget: spec
                .pbt_settings()
                .map_or(spec.sweep.trials.unwrap_or(0), |pbt| pbt.population),
            borrowed: Vec::new(),
        })
    }

    /// Trials in all when the budget is spent (configurations x repeats).
    pub fn total_trials(&self) -> usize {
        self.budget * self.repeats as usize
    }

    /// Trials per configuration.
    pub fn repeats(&self) -> usize {
        self.repeats as usize
    }

    /// The searched space.
    pub fn space(&self) -> &Space {
        &self.space
    }

    /// How many trials of earlier sweeps it learns from.
    pub fn borrowed(&self) -> usize {
        self.borrowed.len()
    }

    /// Learns also from `trials`, final trials of earlier sweeps (those outside this space are
    /// left out); returns how many borrowed trials it learns from now.
    pub fn borrow(&mut self, trials: Vec<PastTrial>) -> usize {
        self.borrowed.extend(
            trials
                .into_iter()
                .filter(|t| t.status.is_final() && self.space.point_of(&t.spec).is_some()),
        );
        self.borrowed.len()
    }

    /// The trials of draw number `draw` (one per repeat), given every stored trial of the sweep
    /// in draw order.
    pub fn draw(&self, draw: u64, past: &[PastTrial]) -> Vec<TrialSpec> {
        self.draw_with(draw, past, None)
    }

    /// The same, with the coordinates `fixed` names taken as given (an enqueued configuration):
    /// the sampler draws as it would, then those parameters are set.
    pub fn draw_with(
        &self,
        draw: u64,
        past: &[PastTrial],
        fixed: Option<&Fixed>,
    ) -> Vec<TrialSpec> {
        let mut rng = Rng::for_draw(self.seed, draw);
        let borrowed = self.history(&self.borrowed);
        let mut point = match self.kind {
            SamplerName::Tpe => {
                let mut history = borrowed;
                history.extend(self.history(past));
                tpe::draw(
                    &self.space,
                    &history,
                    self.multivariate,
                    self.startup,
                    &mut rng,
                )
            }
            SamplerName::Nsga2 => nsga2::draw(
                &self.space,
                &self.history(past),
                &borrowed,
                draw,
                self.population,
                &mut rng,
            ),
            // PBT's first population starts from the best borrowed configurations, then is
            // drawn at random; its members then explore as they train.
            SamplerName::Pbt => match best_first(borrowed).get(draw as usize) {
                Some(o) => o.point.clone(),
                None => random::draw(&self.space, &mut rng),
            },
            SamplerName::Random | SamplerName::Grid => random::draw(&self.space, &mut rng),
        };
        for (name, &coordinate) in fixed.into_iter().flatten() {
            if let Some(i) = self.space.params.iter().position(|p| p.name == name) {
                point[i] = coordinate;
            }
        }
        self.space.trials(&point, draw)
    }

    /// The observations samplers learn from, in draw order: finished trials by their best
    /// value, pruned and paused ones by their last value, running ones as the worst (failed and
    /// other-space trials are left out).
    fn history(&self, past: &[PastTrial]) -> Vec<Observation> {
        let loss = |x: f64| match self.metric {
            Metric::ValAcc => -x,
            Metric::ValLoss => x,
        };
        past.iter()
            .enumerate()
            .filter_map(|(index, t)| {
                let point = self.space.point_of(&t.spec)?;
                let (outcome, at) = match t.status {
                    TrialStatus::Done => (
                        Outcome::Finished {
                            loss: loss(t.best?),
                        },
                        None,
                    ),
                    TrialStatus::Pruned | TrialStatus::Paused => (
                        Outcome::Stopped {
                            epoch: t.values.len(),
                            loss: loss(t.values.last().copied().flatten().unwrap_or(f64::NAN)),
                        },
                        Some(t.values.len()),
                    ),
                    TrialStatus::Running => (Outcome::Running, None),
                    _ => return None,
                };
                let losses = if outcome == Outcome::Running {
                    vec![f64::INFINITY; self.objectives.len()]
                } else {
                    t.losses(&self.objectives, at)
                };
                Some(Observation {
                    point,
                    outcome,
                    losses,
                    draw: t.spec.draw.unwrap_or(index as u64),
                })
            })
            .collect()
    }
}

/// Finished observations, best first.
fn best_first(mut history: Vec<Observation>) -> Vec<Observation> {
    history.retain(|o| matches!(o.outcome, Outcome::Finished { .. }));
    history.sort_by(|a, b| a.losses[0].total_cmp(&b.losses[0]));
    history
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Experiment;

    #[test]
    fn running_trials_push_draws_away_from_where_they_run() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("search.toml");
        std::fs::write(
            &path,
            "[sweep]\nsampler = \"tpe\"\ntrials = 40\n[grid]\narch = \"mlp\"\n\
             dropout = { uniform = [0.0, 0.5] }\n",
        )
        .unwrap();
        let sampler = Sampler::new(&Experiment::load(&path, &[]).unwrap().spec).unwrap();
        let trial = |x: f64, status, best| PastTrial {
            id: 0,
            spec: sampler.space().trials(&[x], 0).remove(0),
            status,
            best,
            values: vec![],
            measures: Measures::default(),
        };
        // 20 finished trials across the range; the closer to dropout 0.1, the better.
        let mut past: Vec<PastTrial> = (0..20)
            .map(|i| {
                let x = 0.025 * i as f64;
                trial(x, TrialStatus::Done, Some(0.9 - (x - 0.1).abs()))
            })
            .collect();
        let mean_distance = |past: &[PastTrial]| {
            let draws = 400;
            (0..draws)
                .map(|d| (sampler.draw(100 + d, past)[0].dropout - 0.1).abs())
                .sum::<f64>()
                / draws as f64
        };
        let alone = mean_distance(&past);
        past.extend((0..4).map(|_| trial(0.1, TrialStatus::Running, None)));
        let beside_running = mean_distance(&past);
        assert!(
            beside_running > alone * 1.2,
            "mean distance from 0.1: {alone} without running trials, {beside_running} with"
        );
        // Running trials are not ended trials: they do not shorten the random start-up.
        let early: Vec<PastTrial> = (0..9)
            .map(|i| trial(0.05 * i as f64, TrialStatus::Done, Some(0.5)))
            .chain((0..4).map(|_| trial(0.1, TrialStatus::Running, None)))
            .collect();
        let random = Sampler {
            kind: SamplerName::Random,
            ..sampler.clone()
        };
        assert_eq!(sampler.draw(7, &early), random.draw(7, &early));
    }
}
