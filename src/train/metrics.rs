//! Metrics: per-epoch figures and the final test evaluation (confusion matrix, per-class accuracy).

use crate::data::NUM_CLASSES;
use serde::{Deserialize, Serialize};

/// One epoch's figures.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct EpochMetrics {
    /// 1-based epoch number.
    pub epoch: usize,
    /// Mean training loss over the epoch's batches (weighted by batch size).
    pub train_loss: f64,
    /// Training accuracy over the epoch (dropout on, weights moving).
    pub train_acc: f64,
    /// Validation loss after the epoch.
    pub val_loss: f64,
    /// Validation accuracy after the epoch.
    pub val_acc: f64,
    /// Wall seconds of the epoch, training and validation.
    pub seconds: f64,
    /// Wall seconds of the training batches alone (forward, backward, optimizer steps).
    pub train_seconds: f64,
}

/// Counts of (actual, predicted) pairs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Confusion {
    /// `counts[actual][predicted]`.
    pub counts: [[u64; NUM_CLASSES]; NUM_CLASSES],
}

impl Default for Confusion {
    fn default() -> Self {
        Confusion {
            counts: [[0; NUM_CLASSES]; NUM_CLASSES],
        }
    }
}

impl Confusion {
    /// Adds one prediction.
    pub fn add(&mut self, actual: usize, predicted: usize) {
        self.counts[actual][predicted] += 1;
    }

    /// Number of examples counted.
    pub fn total(&self) -> u64 {
        self.counts.iter().flatten().sum()
    }

    /// Correctly classified examples.
    pub fn correct(&self) -> u64 {
        (0..NUM_CLASSES).map(|c| self.counts[c][c]).sum()
    }

    /// Overall accuracy (0 when empty).
    pub fn accuracy(&self) -> f64 {
        let total = self.total();
        if total == 0 {
            0.0
        } else {
            self.correct() as f64 / total as f64
        }
    }

    /// Per class: (correct, total) of the examples whose true label is that class.
    pub fn per_class(&self) -> [(u64, u64); NUM_CLASSES] {
        std::array::from_fn(|c| (self.counts[c][c], self.counts[c].iter().sum()))
    }
}

/// The result of evaluating a model on a set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Evaluation {
    /// Mean cross-entropy.
    pub loss: f64,
    /// Fraction classified correctly.
    pub accuracy: f64,
    /// Every (actual, predicted) count.
    pub confusion: Confusion,
    /// The predicted label of each example, in order.
    pub predictions: Vec<u8>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn confusion_counts_accuracy_per_class() {
        let mut c = Confusion::default();
        c.add(0, 0);
        c.add(0, 6);
        c.add(6, 6);
        c.add(1, 1);
        assert_eq!(c.total(), 4);
        assert_eq!(c.correct(), 3);
        assert_eq!(c.accuracy(), 0.75);
        assert_eq!(c.per_class()[0], (1, 2));
        assert_eq!(c.per_class()[6], (1, 1));
        assert_eq!(c.per_class()[2], (0, 0));
    }
}
