//! The figures a trial is ranked by in `sweep best` and in reports, each knowing which way is
//! better, so no name is judged by its spelling.

use crate::experiment::{Metric, Objective};
use crate::store::TrialListing;
use std::fmt;

/// A recorded figure of a trial that trials can be ranked by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Measure {
    /// Validation accuracy after the trial's best epoch.
    ValAcc,
    /// The best validation accuracy of any epoch.
    BestValAcc,
    /// Test accuracy of the best checkpoint.
    TestAcc,
    /// Training accuracy of the last epoch.
    TrainAcc,
    /// Validation loss after the trial's best epoch.
    ValLoss,
    /// Test loss of the best checkpoint.
    TestLoss,
    /// Training loss of the last epoch.
    TrainLoss,
    /// Wall-clock seconds the trial took.
    DurationS,
    /// The lowest validation loss of any epoch.
    BestValLoss,
    /// Trainable parameters of the model.
    Params,
    /// Mean seconds of an epoch's training batches.
    EpochSeconds,
    /// Milliseconds per image evaluated at batch 1.
    LatencyMs,
}

impl Measure {
    /// Its name as a column of listings and exports.
    pub fn name(self) -> &'static str {
        match self {
            Measure::ValAcc => "val_acc",
            Measure::BestValAcc => "best_val_acc",
            Measure::TestAcc => "test_acc",
            Measure::TrainAcc => "train_acc",
            Measure::ValLoss => "val_loss",
            Measure::TestLoss => "test_loss",
            Measure::TrainLoss => "train_loss",
            Measure::DurationS => "duration_s",
            Measure::BestValLoss => "best_val_loss",
            Measure::Params => "params",
            Measure::EpochSeconds => "epoch_seconds",
            Measure::LatencyMs => "latency_ms",
        }
    }

    /// Whether larger values are better (accuracies), or smaller ones (losses, time).
    pub fn higher_is_better(self) -> bool {
        matches!(
            self,
            Measure::ValAcc | Measure::BestValAcc | Measure::TestAcc | Measure::TrainAcc
        )
    }

    /// The trial's value, where it has one.
    pub fn of(self, listing: &TrialListing) -> Option<f64> {
        // Read from the fields, not through a serialisation: rankings call this per trial.
        match self {
            Measure::ValAcc => listing.val_acc,
            Measure::BestValAcc => listing.best_val_acc,
            Measure::TestAcc => listing.test_acc,
            Measure::TrainAcc => listing.train_acc,
            Measure::ValLoss => listing.val_loss,
            Measure::TestLoss => listing.test_loss,
            Measure::TrainLoss => listing.train_loss,
            Measure::DurationS => listing.duration_s,
            Measure::BestValLoss => listing.best_val_loss,
            Measure::Params => listing.param_count.map(|n| n as f64),
            Measure::EpochSeconds => listing.epoch_seconds,
            Measure::LatencyMs => listing.latency_ms,
        }
    }
}

impl From<Objective> for Measure {
    /// Where a listing keeps an objective: the validation metrics' best epoch values.
    fn from(objective: Objective) -> Measure {
        match objective {
            Objective::ValAcc => Measure::BestValAcc,
            Objective::ValLoss => Measure::BestValLoss,
            Objective::Params => Measure::Params,
            Objective::EpochSeconds => Measure::EpochSeconds,
            Objective::LatencyMs => Measure::LatencyMs,
        }
    }
}

impl From<Metric> for Measure {
    fn from(metric: Metric) -> Measure {
        match metric {
            Metric::ValAcc => Measure::ValAcc,
            Metric::ValLoss => Measure::ValLoss,
        }
    }
}

impl fmt::Display for Measure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::ValueEnum;

    #[test]
    fn names_are_the_listing_columns_and_the_command_line_values() {
        let listing_columns = serde_json::to_value(TrialListing::default()).unwrap();
        for measure in Measure::value_variants() {
            let value = measure.to_possible_value().unwrap();
            assert_eq!(value.get_name(), measure.name());
            assert!(
                listing_columns.get(measure.name()).is_some(),
                "{measure} is not a listing column"
            );
        }
        assert!(Measure::TestAcc.higher_is_better());
        assert!(!Measure::TrainLoss.higher_is_better() && !Measure::DurationS.higher_is_better());
    }

    #[test]
    fn each_measure_reads_its_own_column() {
        let listing = TrialListing {
            train_loss: Some(1.0),
            train_acc: Some(2.0),
            val_loss: Some(3.0),
            val_acc: Some(4.0),
            best_val_acc: Some(5.0),
            test_loss: Some(6.0),
            test_acc: Some(7.0),
            duration_s: Some(8.0),
            best_val_loss: Some(9.0),
            param_count: Some(10),
            epoch_seconds: Some(11.0),
            latency_ms: Some(12.0),
            ..TrialListing::default()
        };
        for measure in Measure::value_variants() {
            assert_eq!(
                measure.of(&listing),
                super::super::numeric_field(&listing, measure.name()),
                "{measure}"
            );
        }
    }
}
