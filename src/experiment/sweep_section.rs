//! `[sweep]`: naming, seeding, parallelism, devices, the sampler and its budget, and what is
//! kept; with the names it takes.

use super::objective::Objective;
use super::problems::Problems;
use serde::{Deserialize, Serialize};

/// TPE's random start-up trials when `startup_trials` is unset: Optuna's `n_startup_trials`.
pub const DEFAULT_STARTUP_TRIALS: usize = 10;

/// `[sweep]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SweepSection {
    /// Name of the sweep in the database; defaults to the file's stem.
    pub name: Option<String>,
    /// Base seed; repeat `r` of every configuration trains with seed `seed + r`.
    pub seed: u64,
    /// How many seeds each configuration is trained with.
    pub repeats: u32,
    /// Trials trained at once.
    pub jobs: usize,
    /// CPU threads per trial; defaults to the cores divided by `jobs`.
    pub threads: Option<usize>,
    /// The metric that picks the best epoch and the best trial.
    pub metric: Metric,
    /// What a multi-objective sweep trades off (two or three); empty: `metric` alone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub objectives: Vec<Objective>,
    /// NSGA-II: trials per generation (Optuna's default, 50).
    pub population: usize,
    /// TPE: model every axis jointly (Optuna's multivariate TPE) rather than each alone; unset,
    /// jointly with one objective and each alone with several, as Optuna 5 does.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multivariate: Option<bool>,
    /// TPE: trials drawn at random before it models the history (Optuna's `n_startup_trials`);
    /// unset, 10 as Optuna's default.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub startup_trials: Option<usize>,
    /// Where trials run: `cpu` (burn flex), `tch-cpu` (libtorch CPU) or `cuda:N`.
    pub devices: Vec<DeviceName>,
    /// Trials sharing each GPU at once (small models leave a GPU mostly idle).
    pub trials_per_gpu: usize,
    /// How trials are chosen: every grid point, or drawn by a searching sampler.
    pub sampler: SamplerName,
    /// Configurations a searching sampler draws in all, across every process sharing the
    /// database (each runs `repeats` times).
    pub trials: Option<usize>,
    /// Which checkpoint files a trial keeps once it is final (done, diverged or pruned).
    pub keep: Keep,
    /// Seconds without a heartbeat after which another process (on another machine) takes a
    /// running trial over; the holder's later writes for it are refused.
    pub heartbeat_timeout: u64,
    /// Trials trained as one model: up to this many unfinished trials of one architecture,
    /// batch size and data split are advanced together by each slot (1: each alone).
    pub fuse: usize,
    /// Earlier sweeps in the same database whose final trials inside this space join the
    /// sampler's history (tpe, nsga2, pbt's first population).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warm_start: Vec<String>,
}

impl Default for SweepSection {
    fn default() -> Self {
        SweepSection {
            name: None,
            seed: 0,
            repeats: 1,
            jobs: 1,
            threads: None,
            metric: Metric::ValAcc,
            objectives: Vec::new(),
            population: 50,
            multivariate: None,
            startup_trials: None,
            devices: vec![DeviceName::Cpu],
            trials_per_gpu: 1,
            sampler: SamplerName::Grid,
            trials: None,
            keep: Keep::Best,
            heartbeat_timeout: 60,
            fuse: 1,
            warm_start: Vec::new(),
        }
    }
}

/// Which checkpoints a final trial keeps. Whatever it keeps, the files only resumption needs
/// (optimizer state, resume state) go once the trial cannot run again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Keep {
    /// The model of the best epoch, which `predict` uses.
    Best,
    /// The model of the last epoch.
    Last,
    /// Both.
    Both,
    /// No model file: the trial's directory goes.
    None,
}

impl Keep {
    /// The name in experiment files.
    pub fn as_str(self) -> &'static str {
        match self {
            Keep::Best => "best",
            Keep::Last => "last",
            Keep::Both => "both",
            Keep::None => "none",
        }
    }

    /// Whether the best epoch's model stays.
    pub fn best(self) -> bool {
        matches!(self, Keep::Best | Keep::Both)
    }

    /// Whether the last epoch's model stays.
    pub fn last(self) -> bool {
        matches!(self, Keep::Last | Keep::Both)
    }
}

/// How a sweep chooses its trials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SamplerName {
    /// Every combination of the listed values.
    Grid,
    /// Independent random draws.
    Random,
    /// Tree-structured Parzen Estimator (Optuna's defaults).
    Tpe,
    /// NSGA-II's genetic search for several objectives (Optuna's defaults).
    Nsga2,
    /// Population-based training: members copy better members' weights and explore their
    /// hyperparameters as they train (`[pbt]`).
    Pbt,
}

impl SamplerName {
    /// The name in experiment files.
    pub fn as_str(self) -> &'static str {
        match self {
            SamplerName::Grid => "grid",
            SamplerName::Random => "random",
            SamplerName::Tpe => "tpe",
            SamplerName::Nsga2 => "nsga2",
            SamplerName::Pbt => "pbt",
        }
    }
}

/// A device named in `[sweep] devices` or `--devices`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum DeviceName {
    /// burn's pure-Rust CPU backend (flex).
    Cpu,
    /// libtorch on the CPU (needs the `tch` build).
    TchCpu,
    /// libtorch on CUDA GPU N (needs the `tch` build and that GPU).
    Cuda(usize),
}

impl DeviceName {
    /// Whether it computes on the CPU cores (and so takes CPU job slots).
    pub fn is_cpu(self) -> bool {
        !matches!(self, DeviceName::Cuda(_))
    }
}

impl std::fmt::Display for DeviceName {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            DeviceName::Cpu => f.write_str("cpu"),
            DeviceName::TchCpu => f.write_str("tch-cpu"),
            DeviceName::Cuda(n) => write!(f, "cuda:{n}"),
        }
    }
}

impl std::str::FromStr for DeviceName {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "cpu" => Ok(DeviceName::Cpu),
            "tch-cpu" => Ok(DeviceName::TchCpu),
            _ => s
                .strip_prefix("cuda:")
                .and_then(|n| n.parse().ok())
                .map(DeviceName::Cuda)
                .ok_or_else(|| {
                    format!("unknown device {s:?}: use cpu, tch-cpu or cuda:N (e.g. cuda:0)")
                }),
        }
    }
}

impl TryFrom<String> for DeviceName {
    type Error = String;

    fn try_from(s: String) -> std::result::Result<Self, String> {
        s.parse()
    }
}

impl From<DeviceName> for String {
    fn from(d: DeviceName) -> String {
        d.to_string()
    }
}

/// A metric to optimise, with its direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Metric {
    /// Validation accuracy, higher is better.
    ValAcc,
    /// Validation loss, lower is better.
    ValLoss,
}

impl Metric {
    /// The column/key name of the metric.
    pub fn name(self) -> &'static str {
        match self {
            Metric::ValAcc => "val_acc",
            Metric::ValLoss => "val_loss",
        }
    }

    /// Whether `candidate` is better than `incumbent` under this metric.
    pub fn improves(self, candidate: f64, incumbent: Option<f64>) -> bool {
        match incumbent {
            None => !candidate.is_nan(),
            Some(best) => match self {
                Metric::ValAcc => candidate > best,
                Metric::ValLoss => candidate < best,
            },
        }
    }
}

impl SweepSection {
    /// What the sweep optimises: `objectives`, or `metric` alone.
    pub fn objectives(&self) -> Vec<Objective> {
        if self.objectives.is_empty() {
            vec![self.metric.into()]
        } else {
            self.objectives.clone()
        }
    }

    /// Whether TPE models the axes jointly: `multivariate`, else with one objective only.
    pub fn tpe_multivariate(&self) -> bool {
        self.multivariate.unwrap_or(!self.is_multi_objective())
    }

    /// TPE's random start-up trials: `startup_trials`, else Optuna's default.
    pub fn tpe_startup_trials(&self) -> usize {
        self.startup_trials.unwrap_or(DEFAULT_STARTUP_TRIALS)
    }

    /// The sampler's name as reports show it, TPE's modelling included.
    pub fn sampler_label(&self) -> String {
        if self.sampler != SamplerName::Tpe {
            return self.sampler.as_str().into();
        }
        let model = if self.tpe_multivariate() {
            "multivariate"
        } else {
            "independent"
        };
        match self.tpe_startup_trials() {
            DEFAULT_STARTUP_TRIALS => format!("tpe ({model})"),
            startup => format!("tpe ({model}, {startup} start-up trials)"),
        }
    }

    /// Whether the sweep trades off several objectives.
    pub fn is_multi_objective(&self) -> bool {
        self.objectives.len() > 1
    }

    /// With `objectives`, `metric` becomes the validation metric among them (the one that picks
    /// each trial's best epoch), or validation accuracy when none is.
    pub(super) fn settle_metric(&mut self) {
        if !self.objectives.is_empty() {
            self.metric = self
                .objectives
                .iter()
                .find_map(|o| o.metric())
                .unwrap_or(Metric::ValAcc);
        }
    }

    /// Checks counts, devices and the search budget.
    pub(super) fn validate(&self, problems: &mut Problems) {
        for (key, value) in [
            ("sweep.repeats", self.repeats as usize),
            ("sweep.jobs", self.jobs),
            ("sweep.trials_per_gpu", self.trials_per_gpu),
        ] {
            problems.check(value >= 1, key, value.to_string(), "must be at least 1");
        }
        if let Some(threads) = self.threads {
            problems.check(
                threads >= 1,
                "sweep.threads",
                threads.to_string(),
                "must be at least 1",
            );
        }
        self.validate_devices(problems);
        problems.check(
            self.fuse >= 1,
            "sweep.fuse",
            self.fuse.to_string(),
            "must be at least 1 (1 trains each trial alone; 4 to 16 suit small models)",
        );
        problems.check(
            self.heartbeat_timeout >= 1,
            "sweep.heartbeat_timeout",
            self.heartbeat_timeout.to_string(),
            "must be at least 1 second (60 suits most clusters)",
        );
        self.validate_budget(problems);
        self.validate_objectives(problems);
        self.validate_warm_start(problems);
        if let Some(startup) = self.startup_trials {
            problems.check(
                startup >= 1,
                "sweep.startup_trials",
                startup.to_string(),
                "must be at least 1 (TPE models nothing before one trial has ended; Optuna's \
                 default is 10)",
            );
            problems.check(
                self.sampler == SamplerName::Tpe,
                "sweep.startup_trials",
                startup.to_string(),
                &format!(
                    "only TPE has random start-up trials: remove startup_trials, or set \
                     sampler = \"tpe\" (now \"{}\")",
                    self.sampler.as_str()
                ),
            );
        }
        if let Some(multivariate) = self.multivariate {
            problems.check(
                self.sampler == SamplerName::Tpe,
                "sweep.multivariate",
                multivariate.to_string(),
                &format!(
                    "only TPE models the axes jointly or alone: remove multivariate, or set \
                     sampler = \"tpe\" (now \"{}\")",
                    self.sampler.as_str()
                ),
            );
        }
    }

    fn validate_warm_start(&self, problems: &mut Problems) {
        if self.warm_start.is_empty() {
            return;
        }
        let shown = format!("{:?}", self.warm_start);
        problems.check(
            matches!(
                self.sampler,
                SamplerName::Tpe | SamplerName::Nsga2 | SamplerName::Pbt
            ),
            "sweep.warm_start",
            shown.clone(),
            &format!(
                "sampler = \"{}\" does not learn from earlier trials: warm starts need \
                 sampler = \"tpe\", \"nsga2\" or \"pbt\"",
                self.sampler.as_str()
            ),
        );
        let repeated = self
            .warm_start
            .iter()
            .enumerate()
            .find(|(i, name)| self.warm_start[..*i].contains(name));
        problems.check(
            repeated.is_none() && self.warm_start.iter().all(|n| !n.trim().is_empty()),
            "sweep.warm_start",
            shown,
            "name each earlier sweep once (`sweep ls` lists them)",
        );
    }

    fn validate_objectives(&self, problems: &mut Problems) {
        let shown = format!(
            "{:?}",
            self.objectives.iter().map(|o| o.name()).collect::<Vec<_>>()
        );
        problems.check(
            self.objectives.len() <= 3,
            "sweep.objectives",
            shown.clone(),
            "at most three objectives: a front of more is too large to read or to search",
        );
        let repeated = self
            .objectives
            .iter()
            .enumerate()
            .find(|(i, o)| self.objectives[..*i].contains(o));
        problems.check(
            repeated.is_none(),
            "sweep.objectives",
            shown.clone(),
            &format!(
                "{} is listed twice: list each objective once",
                repeated.map_or("", |(_, o)| o.name())
            ),
        );
        problems.check(
            self.objectives
                .iter()
                .filter(|o| o.metric().is_some())
                .count()
                <= 1,
            "sweep.objectives",
            shown.clone(),
            "val_acc and val_loss measure the same thing: keep one of them",
        );
        problems.check(
            self.objectives.is_empty() || !problems.is_set("sweep.metric"),
            "sweep.metric",
            format!("{:?}", self.metric.name()),
            &format!(
                "objectives = {shown} already says what is optimised: remove metric (the                  validation metric among the objectives picks each trial's best epoch)"
            ),
        );
        problems.check(
            self.sampler != SamplerName::Nsga2 || self.is_multi_objective(),
            "sweep.sampler",
            "\"nsga2\"".into(),
            "NSGA-II trades off several objectives; with one, use sampler = \"tpe\" (or list              two or three objectives, e.g. objectives = [\"val_acc\", \"params\"])",
        );
        if self.sampler == SamplerName::Nsga2 {
            problems.check(
                self.population >= 2,
                "sweep.population",
                self.population.to_string(),
                "NSGA-II needs at least 2 trials per generation (Optuna's default is 50)",
            );
        }
    }

    fn validate_devices(&self, problems: &mut Problems) {
        let devices = &self.devices;
        problems.check(
            !devices.is_empty(),
            "sweep.devices",
            "[]".into(),
            "name at least one device, e.g. [\"cpu\"]",
        );
        let shown = format!(
            "{:?}",
            devices.iter().map(|d| d.to_string()).collect::<Vec<_>>()
        );
        problems.check(
            devices
                .iter()
                .enumerate()
                .all(|(i, d)| !devices[..i].contains(d)),
            "sweep.devices",
            shown.clone(),
            "each device may appear once",
        );
        problems.check(
            !(devices.contains(&DeviceName::Cpu) && devices.contains(&DeviceName::TchCpu)),
            "sweep.devices",
            shown,
            "cpu and tch-cpu share the same cores: pick one of them",
        );
    }

    /// A searching sampler needs a budget; a grid must not have one.
    fn validate_budget(&self, problems: &mut Problems) {
        let searching = !matches!(self.sampler, SamplerName::Grid | SamplerName::Pbt);
        if self.sampler == SamplerName::Pbt {
            if let Some(n) = self.trials {
                problems.check(
                    false,
                    "sweep.trials",
                    n.to_string(),
                    "population-based training trains [pbt] population members: remove \
                     trials and set [pbt] population = N",
                );
            }
            return;
        }
        match (searching, self.trials) {
            (true, None) => problems.check(
                false,
                "sweep.trials",
                "(missing)".into(),
                &format!(
                    "sampler = \"{}\" draws configurations until a budget is spent: set \
                     [sweep] trials = N (e.g. 40)",
                    self.sampler.as_str()
                ),
            ),
            (true, Some(n)) => {
                problems.check(n >= 1, "sweep.trials", n.to_string(), "must be at least 1")
            }
            (false, Some(n)) => problems.check(
                false,
                "sweep.trials",
                n.to_string(),
                "a grid runs every combination: remove trials, or set [sweep] sampler = \
                 \"random\", \"tpe\", \"nsga2\" or \"pbt\"",
            ),
            (false, None) => {}
        }
    }
}
