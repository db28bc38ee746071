//! `[prune]`: early stopping of weak trials, median or ASHA.

use super::problems::Problems;
use serde::{Deserialize, Serialize};

/// `[prune]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PruneSection {
    /// Which early stopping rule, if any.
    pub method: PruneMethod,
    /// asha: the first rung; median: epochs a trial trains before it may be pruned.
    pub min_epochs: usize,
    /// asha: the top 1/reduction_factor at each rung go on.
    pub reduction_factor: usize,
    /// median: trials that must finish before pruning starts.
    pub startup_trials: usize,
    /// asha: a trial leaves a rung only once `reduction_factor` trials have reached it (the
    /// ASHA paper's promotion rule); unset or false: the best of fewer goes on at once, as in
    /// Optuna's successive halving.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fill_rungs: Option<bool>,
}

impl Default for PruneSection {
    fn default() -> Self {
        PruneSection {
            method: PruneMethod::None,
            min_epochs: 1,
            reduction_factor: 3,
            startup_trials: 5,
            fill_rungs: None,
        }
    }
}

/// Early-stopping rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PruneMethod {
    /// Every trial trains all its epochs.
    None,
    /// Stop a trial worse than the median of finished trials at the same epoch.
    Median,
    /// Asynchronous successive halving: pause at rungs, promote the best.
    Asha,
}

impl PruneMethod {
    /// The name in experiment files.
    pub fn as_str(self) -> &'static str {
        match self {
            PruneMethod::None => "none",
            PruneMethod::Median => "median",
            PruneMethod::Asha => "asha",
        }
    }
}

impl PruneSection {
    /// Whether ASHA waits for `reduction_factor` trials at a rung before any goes on.
    pub fn fills_rungs(&self) -> bool {
        self.method == PruneMethod::Asha && self.fill_rungs.unwrap_or(false)
    }

    /// Checks the rungs against `most_epochs`, the most epochs any trial trains.
    pub(super) fn validate(&self, problems: &mut Problems, most_epochs: usize) {
        if self.method != PruneMethod::None {
            problems.check(
                self.min_epochs >= 1,
                "prune.min_epochs",
                self.min_epochs.to_string(),
                "must be at least 1",
            );
        }
        if let Some(fill) = self.fill_rungs {
            problems.check(
                self.method == PruneMethod::Asha,
                "prune.fill_rungs",
                fill.to_string(),
                &format!(
                    "only ASHA has rungs: remove fill_rungs, or set method = \"asha\" (now \"{}\")",
                    self.method.as_str()
                ),
            );
        }
        if self.method == PruneMethod::Asha {
            problems.check(
                self.reduction_factor >= 2,
                "prune.reduction_factor",
                self.reduction_factor.to_string(),
                "must be at least 2 (3 keeps the top third at each rung)",
            );
            problems.check(
                self.min_epochs < most_epochs,
                "prune.min_epochs",
                self.min_epochs.to_string(),
                &format!(
                    "the first rung must come before the last epoch ({most_epochs}); lower \
                     min_epochs or raise grid.epochs"
                ),
            );
        }
    }
}
