//! The whole experiment file after layering, and its validation section by section.

use super::arch_options::ArchOptions;
use super::data_section::DataSection;
use super::grid_section::GridSection;
use super::optimizer_options::OptimizerOptions;
use super::problems::Problems;
use super::prune_section::{PruneMethod, PruneSection};
use super::schedule_options::ScheduleOptions;
use super::sweep_section::{SamplerName, SweepSection};
use serde::{Deserialize, Serialize};

/// A whole experiment file after layering defaults, the file, `SWEEP_*` variables and `--set`.
#[derive(Debug, Clone, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields)]
pub struct ExperimentSpec {
    /// `[sweep]`: naming, seeding and parallelism.
    #[serde(default)]
    pub sweep: SweepSection,
    /// `[data]`: where the images are and how they are split.
    #[serde(default)]
    pub data: DataSection,
    /// `[grid]`: the axes whose cartesian product gives the trials.
    #[serde(default)]
    pub grid: GridSection,
    /// `[arch.*]`: options of each architecture.
    #[serde(default)]
    pub arch: ArchOptions,
    /// `[optimizer.*]`: options of each optimizer.
    #[serde(default)]
    pub optimizer: OptimizerOptions,
    /// `[prune]`: early stopping of weak trials.
    #[serde(default)]
    pub prune: PruneSection,
    /// `[schedule.*]`: options of each learning-rate schedule.
    #[serde(default)]
    pub schedule: ScheduleOptions,
}

impl ExperimentSpec {
    /// Checks every section, and the rules that tie sections together.
    pub(super) fn validate(&self, problems: &mut Problems) {
        let searching = self.sweep.sampler != SamplerName::Grid;
        self.sweep.validate(problems);
        self.data.validate(problems, searching);
        self.grid.validate(problems, searching);
        self.prune.validate(problems, self.grid.most_epochs());
        self.schedule.validate(problems);
        self.arch.validate(problems);
        self.optimizer.validate(problems);
        if self.sweep.is_multi_objective() {
            problems.check(
                self.prune.method != PruneMethod::Median,
                "prune.method",
                "\"median\"".into(),
                "the median rule compares one value per epoch and cannot rank several \
                 objectives: use method = \"asha\", which ranks each rung by non-dominated \
                 sorting",
            );
        }
    }
}
