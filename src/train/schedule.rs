//! The learning rate of every optimizer step: an optional linear warm-up, then a constant,
//! cosine, step or one-cycle schedule. A pure function of the step number, so a resumed trial
//! continues its schedule exactly.

use crate::experiment::{ScheduleName, TrialSpec};
use std::f64::consts::PI;

/// A trial's learning rate by optimizer step.
#[derive(Debug, Clone, PartialEq)]
pub struct LrSchedule {
    base: f64,
    kind: ScheduleName,
    step_every: usize,
    step_gamma: f64,
    batches_per_epoch: usize,
    warmup_steps: usize,
    total_steps: usize,
}

impl LrSchedule {
    /// The schedule of `trial` when each epoch takes `batches_per_epoch` optimizer steps.
    pub fn new(trial: &TrialSpec, batches_per_epoch: usize) -> Self {
        LrSchedule {
            base: trial.lr,
            kind: trial.schedule,
            step_every: trial.step_every.unwrap_or(1).max(1),
            step_gamma: trial.step_gamma.unwrap_or(1.0),
            batches_per_epoch: batches_per_epoch.max(1),
            warmup_steps: trial.warmup_epochs * batches_per_epoch,
            total_steps: trial.epochs * batches_per_epoch,
        }
    }

    /// The learning rate of optimizer step `step` (0-based, counted over the whole trial).
    pub fn at(&self, step: usize) -> f64 {
        if step < self.warmup_steps {
            return self.base * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let t = step - self.warmup_steps;
        let span = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        match self.kind {
            ScheduleName::Constant => self.base,
            ScheduleName::Cosine => self.base * 0.5 * (1.0 + (PI * t as f64 / span as f64).cos()),
            ScheduleName::Step => {
                let epoch = t / self.batches_per_epoch;
                self.base * self.step_gamma.powi((epoch / self.step_every) as i32)
            }
            ScheduleName::Onecycle => one_cycle(self.base, t, span),
        }
    }

    /// The step number of batch `batch` (0-based) of epoch `epoch` (1-based).
    pub fn step_of(&self, epoch: usize, batch: usize) -> usize {
        (epoch - 1) * self.batches_per_epoch + batch
    }
}

/// PyTorch's OneCycleLR with its defaults (pct_start 0.3, cosine annealing, div_factor 25,
/// final_div_factor 1e4, two phases) over `total` steps, peaking at `max_lr`. The momentum it
/// also cycles by default is left as configured.
fn one_cycle(max_lr: f64, step: usize, total: usize) -> f64 {
    let initial = max_lr / 25.0;
    let min = initial / 1e4;
    let rise_end = 0.3 * total as f64 - 1.0;
    let fall_end = total as f64 - 1.0;
    let s = step as f64;
    if s <= rise_end && rise_end > 0.0 {
        anneal(initial, max_lr, s / rise_end)
    } else if fall_end > rise_end {
        anneal(max_lr, min, (s - rise_end) / (fall_end - rise_end))
    } else {
        min
    }
}

/// Cosine annealing from `start` (at 0) to `end` (at 1).
fn anneal(start: f64, end: f64, fraction: f64) -> f64 {
    end + (start - end) / 2.0 * ((PI * fraction).cos() + 1.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::{ExperimentSpec, expand};

    fn trial(schedule: ScheduleName, epochs: usize, warmup: usize) -> TrialSpec {
        let mut t = expand(&ExperimentSpec::default()).remove(0);
        t.lr = 0.1;
        t.epochs = epochs;
        t.schedule = schedule;
        t.warmup_epochs = warmup;
        if schedule == ScheduleName::Step {
            t.step_every = Some(2);
            t.step_gamma = Some(0.5);
        }
        t
    }

    fn close(a: f64, b: f64) -> bool {
        (a - b).abs() <= 1e-12 * b.abs().max(1e-12)
    }

    #[test]
    fn constant_and_warmup() {
        let s = LrSchedule::new(&trial(ScheduleName::Constant, 4, 1), 10);
        // Warm-up: (step + 1) / 10 of the rate over the first epoch's 10 steps.
        assert!(close(s.at(0), 0.01));
        assert!(close(s.at(4), 0.05));
        assert!(close(s.at(9), 0.1));
        assert!(close(s.at(10), 0.1));
        assert!(close(s.at(39), 0.1));
    }

    #[test]
    fn cosine_falls_to_zero_over_the_steps_after_warmup() {
        let s = LrSchedule::new(&trial(ScheduleName::Cosine, 5, 1), 10);
        // 40 steps after warm-up: step 10 + t has 0.05 * (1 + cos(pi t / 40)).
        assert!(close(s.at(10), 0.1));
        assert!(close(s.at(30), 0.05)); // t = 20, cos(pi/2) = 0
        assert!(close(s.at(20), 0.05 * (1.0 + (PI / 4.0).cos()))); // t = 10
        assert!(s.at(49) > 0.0 && s.at(49) < 0.1 * 0.002);
        let plain = LrSchedule::new(&trial(ScheduleName::Cosine, 2, 0), 2);
        let rates: Vec<f64> = (0..4).map(|i| plain.at(i)).collect();
        let expected = [
            0.1,
            0.05 * (1.0 + (PI / 4.0).cos()),
            0.05,
            0.05 * (1.0 - (PI / 4.0).cos()),
        ];
        for (r, e) in rates.iter().zip(expected) {
            assert!(close(*r, e), "{rates:?}");
        }
    }

    #[test]
    fn step_halves_every_two_epochs_after_warmup() {
        let s = LrSchedule::new(&trial(ScheduleName::Step, 7, 1), 3);
        let by_epoch: Vec<f64> = (1..=7).map(|e| s.at(s.step_of(e, 1))).collect();
        let expected = [0.1 * 2.0 / 3.0, 0.1, 0.1, 0.05, 0.05, 0.025, 0.025];
        for (r, e) in by_epoch.iter().zip(expected) {
            assert!(close(*r, e), "{by_epoch:?}");
        }
    }

    #[test]
    fn one_cycle_matches_pytorch() {
        // torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.1, total_steps=20,
        // cycle_momentum=False) on torch 2.9.0: the rates of steps 0, 1, 5, 6, 10 and 19.
        let s = LrSchedule::new(&trial(ScheduleName::Onecycle, 2, 0), 10);
        let pytorch = [
            (0, 0.0040000000000000036),
            (1, 0.013167184270002533),
            (5, 0.1),
            (6, 0.09874640062350874),
            (10, 0.07169430017913009),
            (19, 4e-07),
        ];
        for (step, expected) in pytorch {
            assert!(
                (s.at(step) - expected).abs() < 1e-9,
                "step {step}: {} against {expected}",
                s.at(step)
            );
        }
    }
}
