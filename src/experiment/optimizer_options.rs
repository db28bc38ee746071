//! `[optimizer.*]`: options of each optimizer, with PyTorch's defaults.

use super::problems::Problems;
use serde::{Deserialize, Serialize};

/// `[optimizer.*]`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct OptimizerOptions {
    /// `[optimizer.sgd]`.
    pub sgd: SgdOptions,
    /// `[optimizer.adam]`.
    pub adam: AdamOptions,
    /// `[optimizer.adamw]`.
    pub adamw: AdamOptions,
}

/// `[optimizer.sgd]`, PyTorch's defaults.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct SgdOptions {
    /// Momentum factor; 0 is plain SGD.
    pub momentum: f64,
    /// Dampening of the momentum.
    pub dampening: f64,
    /// Nesterov momentum (needs momentum > 0).
    pub nesterov: bool,
}

/// `[optimizer.adam]` and `[optimizer.adamw]`, PyTorch's defaults (epsilon 1e-8, not burn's 1e-5).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AdamOptions {
    /// Decay rates of the first and second moment estimates.
    pub betas: [f64; 2],
    /// Term added to the denominator for numerical stability.
    pub eps: f64,
}

impl Default for AdamOptions {
    fn default() -> Self {
        AdamOptions {
            betas: [0.9, 0.999],
            eps: 1e-8,
        }
    }
}

impl OptimizerOptions {
    /// Checks momentum, dampening, betas and epsilons against PyTorch's ranges.
    pub(super) fn validate(&self, problems: &mut Problems) {
        let sgd = &self.sgd;
        problems.check(
            (0.0..1.0).contains(&sgd.momentum),
            "optimizer.sgd.momentum",
            sgd.momentum.to_string(),
            "must be in [0, 1)",
        );
        problems.check(
            (0.0..=1.0).contains(&sgd.dampening),
            "optimizer.sgd.dampening",
            sgd.dampening.to_string(),
            "must be in [0, 1]",
        );
        problems.check(
            !sgd.nesterov || (sgd.momentum > 0.0 && sgd.dampening == 0.0),
            "optimizer.sgd.nesterov",
            "true".into(),
            "Nesterov momentum needs momentum > 0 and dampening = 0",
        );
        for (key, adam) in [
            ("optimizer.adam", &self.adam),
            ("optimizer.adamw", &self.adamw),
        ] {
            problems.check(
                adam.betas.iter().all(|b| (0.0..1.0).contains(b)),
                &format!("{key}.betas"),
                format!("{:?}", adam.betas),
                "each beta must be in [0, 1)",
            );
            problems.check(
                adam.eps.is_finite() && adam.eps > 0.0,
                &format!("{key}.eps"),
                adam.eps.to_string(),
                "must be greater than 0 (PyTorch uses 1e-8)",
            );
        }
    }
}
