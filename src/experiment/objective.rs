//! `[sweep] objectives`: what a multi-objective sweep trades off, each with its direction.

use super::sweep_section::Metric;
use serde::{Deserialize, Serialize};

/// One quantity a sweep optimises.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Objective {
    /// The best epoch's validation accuracy (maximised).
    ValAcc,
    /// The best epoch's validation loss (minimised).
    ValLoss,
    /// Trainable parameters (minimised), known before training.
    Params,
    /// Mean seconds of an epoch's training batches (minimised).
    EpochSeconds,
    /// Milliseconds to evaluate one image at batch 1 on the trial's device (minimised).
    LatencyMs,
}

/// Every objective, in the order the docs list them.
pub const ALL_OBJECTIVES: [Objective; 5] = [
    Objective::ValAcc,
    Objective::ValLoss,
    Objective::Params,
    Objective::EpochSeconds,
    Objective::LatencyMs,
];

impl Objective {
    /// The key in experiment files, result columns and `--where`.
    pub fn name(self) -> &'static str {
        match self {
            Objective::ValAcc => "val_acc",
            Objective::ValLoss => "val_loss",
            Objective::Params => "params",
            Objective::EpochSeconds => "epoch_seconds",
            Objective::LatencyMs => "latency_ms",
        }
    }

    /// Whether higher is better.
    pub fn maximised(self) -> bool {
        self == Objective::ValAcc
    }

    /// `value` turned so that lower is better (the form samplers and pruners compare).
    pub fn loss(self, value: f64) -> f64 {
        if self.maximised() { -value } else { value }
    }

    /// The validation metric it is, if it is one.
    pub fn metric(self) -> Option<Metric> {
        match self {
            Objective::ValAcc => Some(Metric::ValAcc),
            Objective::ValLoss => Some(Metric::ValLoss),
            _ => None,
        }
    }
}

impl From<Metric> for Objective {
    fn from(metric: Metric) -> Self {
        match metric {
            Metric::ValAcc => Objective::ValAcc,
            Metric::ValLoss => Objective::ValLoss,
        }
    }
}

impl std::fmt::Display for Objective {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
