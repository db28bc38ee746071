//! What a free slot does next: which configuration a searching sampler draws, and whether a
//! trial goes on after an epoch. Samplers and pruners decide from the sweep's history, handed
//! to them by the scheduler from the store; they never train and never touch the database.

mod prune;
mod random;
mod space;
mod tpe;

pub use prune::{Curve, Pruner, Verdict};
pub use space::{Domain, Param, Point, Space};

use crate::experiment::{ExperimentSpec, Metric, SamplerName, TrialSpec};
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
}

/// A searching sampler bound to an experiment.
#[derive(Debug, Clone)]
pub struct Sampler {
    kind: SamplerName,
    seed: u64,
    metric: Metric,
    space: Space,
    repeats: u32,
    budget: usize,
}

impl Sampler {
    /// The sampler an experiment asks for; `None` for a grid.
    pub fn new(spec: &ExperimentSpec) -> Option<Self> {
        let kind = spec.sweep.sampler;
        (kind != SamplerName::Grid).then(|| Sampler {
            kind,
            seed: spec.sweep.seed,
            metric: spec.sweep.metric,
            space: Space::new(spec),
            repeats: spec.sweep.repeats,
            budget: spec.sweep.trials.unwrap_or(0),
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

    /// The trials of draw number `draw` (one per repeat), given every stored trial of the sweep
    /// in draw order.
    pub fn draw(&self, draw: u64, past: &[PastTrial]) -> Vec<TrialSpec> {
        let mut rng = Rng::for_draw(self.seed, draw);
        let point = match self.kind {
            SamplerName::Tpe => tpe::draw(&self.space, &self.history(past), &mut rng),
            _ => random::draw(&self.space, &mut rng),
        };
        self.space.trials(&point, draw)
    }

    /// The observations TPE learns from: finished trials by their best value, pruned and
    /// paused ones by their last value, running ones as the worst (failed and other-space
    /// trials are left out).
    fn history(&self, past: &[PastTrial]) -> Vec<Observation> {
        let loss = |x: f64| match self.metric {
            Metric::ValAcc => -x,
            Metric::ValLoss => x,
        };
        past.iter()
            .filter_map(|t| {
                let point = self.space.point_of(&t.spec)?;
                let outcome = match t.status {
                    TrialStatus::Done => Outcome::Finished {
                        loss: loss(t.best?),
                    },
                    TrialStatus::Pruned | TrialStatus::Paused => Outcome::Stopped {
                        epoch: t.values.len(),
                        loss: loss(t.values.last().copied().flatten().unwrap_or(f64::NAN)),
                    },
                    TrialStatus::Running => Outcome::Running,
                    _ => return None,
                };
                Some(Observation { point, outcome })
            })
            .collect()
    }
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
