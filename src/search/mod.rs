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
    /// paused ones by their last value (running, failed and other-space trials are left out).
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
                    _ => return None,
                };
                Some(Observation { point, outcome })
            })
            .collect()
    }
}
