//! Optimizers with PyTorch's semantics and defaults (burn's differ: Adam epsilon 1e-5, SGD
//! dampening 0.1). Adam and AdamW step in one pass on flex ([`super::one_pass`]).

use super::one_pass;
use crate::experiment::{OptimizerName, TrialSpec};
use burn::optim::decay::WeightDecayConfig;
use burn::optim::momentum::MomentumConfig;
use burn::optim::{ModuleOptimizer, SgdConfig};

/// Builds the trial's optimizer.
pub fn build(trial: &TrialSpec) -> ModuleOptimizer {
    let l2 = (trial.weight_decay > 0.0).then_some(trial.weight_decay as f32);
    let [beta_1, beta_2] = trial.betas.unwrap_or([0.9, 0.999]);
    let eps = trial.eps.unwrap_or(1e-8) as f32;
    match trial.optimizer {
        OptimizerName::Sgd => {
            let momentum = trial.momentum.unwrap_or(0.0);
            let momentum = (momentum > 0.0).then(|| MomentumConfig {
                momentum,
                dampening: trial.dampening.unwrap_or(0.0),
                nesterov: trial.nesterov.unwrap_or(false),
            });
            SgdConfig::new()
                .with_momentum(momentum)
                .with_weight_decay(l2.map(WeightDecayConfig::new))
                .init()
        }
        OptimizerName::Adam => one_pass::adam(beta_1 as f32, beta_2 as f32, eps, l2),
        OptimizerName::Adamw => {
            one_pass::adamw(beta_1 as f32, beta_2 as f32, eps, trial.weight_decay as f32)
        }
    }
}
