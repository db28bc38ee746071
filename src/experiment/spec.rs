//! The whole experiment file after layering, and its validation section by section.

use super::arch_options::ArchOptions;
use super::data_section::DataSection;
use super::grid_section::GridSection;
use super::optimizer_options::OptimizerOptions;
use super::pbt_section::PbtSection;
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
    /// `[schedule]`: options of each learning-rate schedule, and values by epoch.
    #[serde(default)]
    pub schedule: ScheduleOptions,
    /// `[pbt]`: population-based training (with `sampler = "pbt"`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pbt: Option<PbtSection>,
}

impl ExperimentSpec {
    /// Checks every section, and the rules that tie sections together.
    pub(super) fn validate(&self, problems: &mut Problems) {
        let searching = self.sweep.sampler != SamplerName::Grid;
        self.sweep.validate(problems);
        self.data.validate(problems, searching);
        self.grid.validate(problems, searching);
        self.prune.validate(problems, self.grid.most_epochs());
        self.schedule.validate(
            problems,
            self.grid.most_epochs(),
            &self.grid.searched_names(),
        );
        self.arch.validate(problems);
        self.optimizer.validate(problems);
        self.validate_pbt(problems);
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

impl ExperimentSpec {
    /// The `[pbt]` settings of a population-based training sweep (defaults when the section is
    /// absent); `None` for other samplers.
    pub fn pbt_settings(&self) -> Option<PbtSection> {
        (self.sweep.sampler == SamplerName::Pbt).then(|| self.pbt.clone().unwrap_or_default())
    }

    /// `[pbt]` only with its sampler, and the rules a population obeys.
    fn validate_pbt(&self, problems: &mut Problems) {
        let Some(pbt) = self.pbt_settings() else {
            problems.check(
                self.pbt.is_none(),
                "pbt",
                "[pbt]".into(),
                &format!(
                    "[pbt] is read only by population-based training: set [sweep] sampler = \
                     \"pbt\" (now {:?}), or remove [pbt]",
                    self.sweep.sampler.as_str()
                ),
            );
            return;
        };
        let searched = self.grid.searched_names();
        pbt.validate(problems, &searched, fewest_epochs(&self.grid));
        problems.check(
            self.sweep.repeats == 1,
            "sweep.repeats",
            self.sweep.repeats.to_string(),
            "population-based training's members are its repeats: remove repeats (or run the \
             sweep again with another seed)",
        );
        problems.check(
            self.prune.method == PruneMethod::None,
            "prune.method",
            format!("{:?}", self.prune.method),
            "population-based training stops members at every interval itself: remove [prune]",
        );
        problems.check(
            !self.sweep.is_multi_objective(),
            "sweep.objectives",
            format!("{:?}", self.sweep.objectives),
            "population-based training ranks members by one metric: set metric instead (use \
             sampler = \"nsga2\" for several objectives)",
        );
        problems.check(
            self.sweep.fuse == 1,
            "sweep.fuse",
            self.sweep.fuse.to_string(),
            "population-based training trains each member alone: remove fuse",
        );
        problems.check(
            self.schedule.changes().is_empty(),
            "schedule",
            "values by epoch".into(),
            "population-based training sets each member's hyperparameters by epoch itself: \
             remove the [schedule] values (keep [schedule.step] if you use it)",
        );
    }
}

/// The fewest epochs any trial of the grid trains.
fn fewest_epochs(grid: &GridSection) -> usize {
    match grid.epochs.distribution() {
        Some(d) => d.low.max(1.0) as usize,
        None => grid.epochs.values().iter().copied().min().unwrap_or(1),
    }
}
