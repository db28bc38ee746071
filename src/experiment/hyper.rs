//! The hyperparameters that may change while a trial trains (population-based training's
//! explore step, or a `[schedule]` replaying one), and a trial's changes to them by epoch.

use super::axis::Axis;
use super::grid::TrialSpec;
use super::grid_section::GridSection;
use serde::{Deserialize, Serialize};

/// A hyperparameter a trial can change between two epochs without rebuilding its model's
/// weights or optimizer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Hyper {
    /// Learning rate (the base of the trial's learning-rate schedule).
    Lr,
    /// Dropout probability.
    Dropout,
    /// Weight decay.
    WeightDecay,
    /// Label smoothing of the training loss.
    LabelSmoothing,
}

/// Every hyperparameter that may change during training, in a fixed order.
pub const HYPERS: [Hyper; 4] = [
    Hyper::Lr,
    Hyper::Dropout,
    Hyper::WeightDecay,
    Hyper::LabelSmoothing,
];

/// Parameters that stay fixed for a trial's whole training, with why.
pub const FIXED: [(&str, &str); 6] = [
    (
        "arch",
        "the weights copied between members must fit the same model",
    ),
    (
        "batch_size",
        "a member's optimizer steps per epoch must not change",
    ),
    ("epochs", "every member trains the same number of epochs"),
    (
        "optimizer",
        "the optimizer state copied between members must fit",
    ),
    (
        "split",
        "members are compared on the same validation images",
    ),
    (
        "momentum",
        "it is an [optimizer.sgd] option, not a grid axis, so it has no range to explore",
    ),
];

impl Hyper {
    /// The name in experiment files.
    pub fn name(self) -> &'static str {
        match self {
            Hyper::Lr => "lr",
            Hyper::Dropout => "dropout",
            Hyper::WeightDecay => "weight_decay",
            Hyper::LabelSmoothing => "label_smoothing",
        }
    }

    /// The hyperparameter called `name`.
    pub fn from_name(name: &str) -> Option<Hyper> {
        HYPERS.into_iter().find(|h| h.name() == name)
    }

    /// Its value in `trial`.
    pub fn of(self, trial: &TrialSpec) -> f64 {
        match self {
            Hyper::Lr => trial.lr,
            Hyper::Dropout => trial.dropout,
            Hyper::WeightDecay => trial.weight_decay,
            Hyper::LabelSmoothing => trial.label_smoothing,
        }
    }

    /// Sets its value in `trial`.
    pub fn set(self, trial: &mut TrialSpec, value: f64) {
        match self {
            Hyper::Lr => trial.lr = value,
            Hyper::Dropout => trial.dropout = value,
            Hyper::WeightDecay => trial.weight_decay = value,
            Hyper::LabelSmoothing => trial.label_smoothing = value,
        }
    }

    /// Makes its `[grid]` axis the one value `value`.
    pub fn set_axis(self, grid: &mut GridSection, value: f64) {
        let axis = match self {
            Hyper::Lr => &mut grid.lr,
            Hyper::Dropout => &mut grid.dropout,
            Hyper::WeightDecay => &mut grid.weight_decay,
            Hyper::LabelSmoothing => &mut grid.label_smoothing,
        };
        *axis = Axis::one(value);
    }

    /// Why `value` cannot be this hyperparameter's, if it cannot.
    pub fn problem(self, value: f64) -> Option<&'static str> {
        let ok = value.is_finite()
            && match self {
                Hyper::Lr => value > 0.0,
                Hyper::Dropout | Hyper::LabelSmoothing => (0.0..1.0).contains(&value),
                Hyper::WeightDecay => value >= 0.0,
            };
        (!ok).then_some(match self {
            Hyper::Lr => "must be greater than 0",
            Hyper::Dropout | Hyper::LabelSmoothing => "must be at least 0 and below 1",
            Hyper::WeightDecay => "must be at least 0",
        })
    }
}

/// From epoch `epoch` on (1-based), hyperparameter `hyper` is `value`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Change {
    /// The first epoch trained with the new value.
    pub epoch: usize,
    /// Which hyperparameter.
    pub hyper: Hyper,
    /// Its value from then on.
    pub value: f64,
}

impl TrialSpec {
    /// The trial's parameters while it trains epoch `epoch`: its changes up to that epoch
    /// applied, in order.
    pub fn at_epoch(&self, epoch: usize) -> TrialSpec {
        let mut at = self.clone();
        for change in self.changes.iter().filter(|c| c.epoch <= epoch) {
            change.hyper.set(&mut at, change.value);
        }
        at
    }

    /// Whether the trial trains epoch `epoch` with other hyperparameters than the epoch before.
    pub fn changes_at(&self, epoch: usize) -> bool {
        epoch > 1 && self.changes.iter().any(|c| c.epoch == epoch)
    }

    /// The value of each hyperparameter by stretch of epochs: `(first epoch, value)` whenever
    /// it changes, starting at epoch 1.
    pub fn schedule_of(&self, hyper: Hyper) -> Vec<(usize, f64)> {
        let mut stretches = vec![(1, hyper.of(self))];
        let mut changes: Vec<&Change> = self.changes.iter().filter(|c| c.hyper == hyper).collect();
        changes.sort_by_key(|c| c.epoch);
        for change in changes {
            match stretches.last_mut() {
                Some(last) if last.0 == change.epoch => last.1 = change.value,
                Some(last) if last.1 == change.value => {}
                _ => stretches.push((change.epoch, change.value)),
            }
        }
        stretches
    }
}
