//! `[schedule.*]`: options of the learning-rate schedules.

use super::problems::Problems;
use serde::{Deserialize, Serialize};

/// `[schedule.*]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleOptions {
    /// `[schedule.step]`.
    pub step: StepOptions,
}

/// `[schedule.step]`: PyTorch's StepLR, stepped once per epoch.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StepOptions {
    /// Epochs between two reductions.
    pub every: usize,
    /// Factor of each reduction.
    pub gamma: f64,
}

impl Default for StepOptions {
    fn default() -> Self {
        StepOptions {
            every: 5,
            gamma: 0.5,
        }
    }
}

impl ScheduleOptions {
    /// Checks the step schedule's interval and factor.
    pub(super) fn validate(&self, problems: &mut Problems) {
        let step = &self.step;
        problems.check(
            step.every >= 1,
            "schedule.step.every",
            step.every.to_string(),
            "must be at least 1 (epochs between two reductions)",
        );
        problems.check(
            step.gamma.is_finite() && step.gamma > 0.0,
            "schedule.step.gamma",
            step.gamma.to_string(),
            "must be greater than 0 (0.5 halves the rate)",
        );
    }
}
