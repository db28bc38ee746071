//! `[schedule]`: options of the learning-rate schedules, and hyperparameters that change from
//! a given epoch on (what `sweep show N --format toml` writes to replay a population-based
//! training member's schedule).

use super::hyper::{Change, HYPERS, Hyper};
use super::problems::Problems;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A hyperparameter's values from given epochs on: `{ 1 = 0.01, 5 = 0.012 }`.
pub type ValuesByEpoch = BTreeMap<String, f64>;

/// `[schedule]` and `[schedule.*]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ScheduleOptions {
    /// `[schedule.step]`.
    pub step: StepOptions,
    /// Learning rate from each listed epoch on.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub lr: ValuesByEpoch,
    /// Dropout from each listed epoch on.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub dropout: ValuesByEpoch,
    /// Weight decay from each listed epoch on.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub weight_decay: ValuesByEpoch,
    /// Label smoothing from each listed epoch on.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub label_smoothing: ValuesByEpoch,
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
    /// The values given for `hyper`.
    pub fn values_of(&self, hyper: Hyper) -> &ValuesByEpoch {
        match hyper {
            Hyper::Lr => &self.lr,
            Hyper::Dropout => &self.dropout,
            Hyper::WeightDecay => &self.weight_decay,
            Hyper::LabelSmoothing => &self.label_smoothing,
        }
    }

    /// Every listed value as a change, by epoch (keys that are not epochs are left to
    /// validation).
    pub fn changes(&self) -> Vec<Change> {
        let mut changes: Vec<Change> = HYPERS
            .into_iter()
            .flat_map(|hyper| {
                self.values_of(hyper)
                    .iter()
                    .filter_map(move |(epoch, &value)| {
                        Some(Change {
                            epoch: epoch.parse().ok()?,
                            hyper,
                            value,
                        })
                    })
            })
            .collect();
        changes.sort_by_key(|c| (c.epoch, c.hyper));
        changes
    }

    /// Sets `hyper` to `value` from `epoch` on.
    pub fn set(&mut self, hyper: Hyper, epoch: usize, value: f64) {
        let values = match hyper {
            Hyper::Lr => &mut self.lr,
            Hyper::Dropout => &mut self.dropout,
            Hyper::WeightDecay => &mut self.weight_decay,
            Hyper::LabelSmoothing => &mut self.label_smoothing,
        };
        values.insert(epoch.to_string(), value);
    }

    /// Checks the step schedule's interval and factor, and each value by epoch against the
    /// trials' epochs and the value's range; a scheduled hyperparameter must not also be a
    /// searched or listed axis (`searched` names those).
    pub(super) fn validate(&self, problems: &mut Problems, most_epochs: usize, searched: &[&str]) {
        for hyper in HYPERS {
            let name = hyper.name();
            let values = self.values_of(hyper);
            if values.is_empty() {
                continue;
            }
            problems.check(
                !searched.contains(&name),
                &format!("schedule.{name}"),
                format!("{values:?}"),
                &format!(
                    "grid.{name} lists several values or a distribution: give it one value \
                     (the one of the first epochs) when [schedule] sets it by epoch"
                ),
            );
            for (epoch, &value) in values {
                let key = format!("schedule.{name}.{epoch}");
                match epoch.parse::<usize>() {
                    Ok(e) if (1..=most_epochs).contains(&e) => {}
                    _ => problems.check(
                        false,
                        &key,
                        value.to_string(),
                        &format!(
                            "{epoch:?} is not an epoch of these trials: the keys are the \
                             epochs (1 to {most_epochs}) from which each value holds, e.g. \
                             {name} = {{ 1 = 0.01, 5 = 0.005 }}"
                        ),
                    ),
                }
                if let Some(rule) = hyper.problem(value) {
                    problems.check(false, &key, value.to_string(), rule);
                }
            }
        }
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
