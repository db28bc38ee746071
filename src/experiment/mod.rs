//! The experiment file: load it with figment (defaults < file < `SWEEP_*` < `--set`), check every
//! value, and expand the grid into trials.

mod axis;
mod file;
mod grid;

pub use axis::{Axis, Distribution, DistributionKind};
pub use file::*;
pub use grid::{AxisValues, TrialSpec, expand, omitted_defaults, trial};

use crate::error::{Error, Result};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use std::path::{Path, PathBuf};

/// An experiment file after loading and validation, ready to expand.
#[derive(Debug, Clone)]
pub struct Experiment {
    /// The file it came from.
    pub path: PathBuf,
    /// The sweep's name: `[sweep] name`, or the file's stem.
    pub name: String,
    /// The resolved spec, every layer applied.
    pub spec: ExperimentSpec,
}

/// What the error for an empty experiment file suggests (a test checks that it is valid).
pub const SMALLEST_EXPERIMENT: &str = "[grid]\narch = \"mlp\"\nepochs = 1\n";

impl Experiment {
    /// Loads `path`, applies `SWEEP_<SECTION>__<KEY>` variables and `--set key=value` overrides,
    /// and validates the result.
    pub fn load(path: &Path, overrides: &[String]) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Spec(format!(
                "cannot read experiment file {}: {e}{}",
                path.display(),
                if e.kind() == std::io::ErrorKind::NotFound {
                    " (check the path; example files are in experiments/)"
                } else {
                    ""
                }
            ))
        })?;
        // Parse with the toml crate first: its errors carry line and column and a snippet.
        match text.parse::<toml::Table>() {
            Err(e) => {
                return Err(Error::Spec(format!(
                    "{} is not valid TOML: {e}",
                    path.display()
                )));
            }
            // Defaults alone would run one trial nobody asked for.
            Ok(table) if table.is_empty() => {
                return Err(Error::Spec(format!(
                    "{} declares nothing (it is empty or only comments); the smallest \
                     experiment file is\n\n{SMALLEST_EXPERIMENT}\n(experiments/quick.toml is a \
                     fuller example)",
                    path.display()
                )));
            }
            Ok(_) => {}
        }
        let mut figment = Figment::from(Serialized::defaults(ExperimentSpec::default()))
            .merge(Toml::file_exact(path))
            // Only variables with a section separator are settings: SWEEP_DATA names the data
            // directory and must not be read as the `[data]` table.
            .merge(
                Env::prefixed("SWEEP_")
                    .filter(|key| key.as_str().contains("__"))
                    .split("__"),
            );
        for set in overrides {
            let (key, value) = parse_override(set)?;
            figment = figment.merge(Serialized::global(&key, value));
        }
        let spec: ExperimentSpec = figment.extract().map_err(|e| spec_error(path, e))?;
        let name = match &spec.sweep.name {
            Some(name) => name.clone(),
            None => path
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "sweep".into()),
        };
        let experiment = Experiment {
            path: path.to_path_buf(),
            name,
            spec,
        };
        experiment.validate(&figment)?;
        Ok(experiment)
    }

    /// Rebuilds an experiment from the resolved spec a sweep stored (see `sweep resume`).
    pub fn from_stored(name: &str, source: &Path, spec_json: &str) -> Result<Self> {
        let spec: ExperimentSpec = serde_json::from_str(spec_json).map_err(|e| {
            Error::Spec(format!(
                "the stored spec of sweep {name:?} cannot be read ({e}); run its experiment \
                 file again with `sweep run`"
            ))
        })?;
        Ok(Experiment {
            path: source.to_path_buf(),
            name: name.to_owned(),
            spec,
        })
    }

    /// Expands the grid into one trial per combination and repeat, in a stable order.
    pub fn trials(&self) -> Vec<TrialSpec> {
        grid::expand(&self.spec)
    }

    fn validate(&self, figment: &Figment) -> Result<()> {
        let s = &self.spec;
        let mut problems = Vec::new();
        let mut check = |ok: bool, key: &str, value: String, rule: &str| {
            if !ok {
                let origin = figment
                    .find_metadata(key)
                    .map_or_else(|| self.path.display().to_string(), origin_of);
                problems.push(format!("{origin}: {key} = {value}: {rule}"));
            }
        };

        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !self.name.starts_with('.');
        check(
            name_ok,
            "sweep.name",
            format!("{:?}", self.name),
            "use letters, digits, '-', '_' and '.' only (it names a directory under runs/)",
        );
        check(
            s.sweep.repeats >= 1,
            "sweep.repeats",
            s.sweep.repeats.to_string(),
            "must be at least 1",
        );
        check(
            s.sweep.jobs >= 1,
            "sweep.jobs",
            s.sweep.jobs.to_string(),
            "must be at least 1",
        );
        if let Some(threads) = s.sweep.threads {
            check(
                threads >= 1,
                "sweep.threads",
                threads.to_string(),
                "must be at least 1",
            );
        }
        check(
            !s.sweep.devices.is_empty(),
            "sweep.devices",
            "[]".into(),
            "name at least one device, e.g. [\"cpu\"]",
        );
        let devices = &s.sweep.devices;
        let shown = format!(
            "{:?}",
            devices.iter().map(|d| d.to_string()).collect::<Vec<_>>()
        );
        check(
            devices
                .iter()
                .enumerate()
                .all(|(i, d)| !devices[..i].contains(d)),
            "sweep.devices",
            shown.clone(),
            "each device may appear once",
        );
        check(
            !(devices.contains(&DeviceName::Cpu) && devices.contains(&DeviceName::TchCpu)),
            "sweep.devices",
            shown.clone(),
            "cpu and tch-cpu share the same cores: pick one of them",
        );
        check(
            s.sweep.trials_per_gpu >= 1,
            "sweep.trials_per_gpu",
            s.sweep.trials_per_gpu.to_string(),
            "must be at least 1",
        );
        check(
            s.sweep.fuse >= 1,
            "sweep.fuse",
            s.sweep.fuse.to_string(),
            "must be at least 1 (1 trains each trial alone; 4 to 16 suit small models)",
        );
        check(
            s.sweep.heartbeat_timeout >= 1,
            "sweep.heartbeat_timeout",
            s.sweep.heartbeat_timeout.to_string(),
            "must be at least 1 second (60 suits most clusters)",
        );
        if let Some(limit) = s.data.limit {
            check(
                limit >= 2,
                "data.limit",
                limit.to_string(),
                "must be at least 2 (one training and one validation image)",
            );
        }

        let g = &s.grid;
        let searching = s.sweep.sampler != SamplerName::Grid;
        for (key, listed, drawn) in [
            ("grid.arch", g.arch.values().len(), g.arch.distribution()),
            (
                "grid.optimizer",
                g.optimizer.values().len(),
                g.optimizer.distribution(),
            ),
            (
                "grid.augment",
                g.augment.values().len(),
                g.augment.distribution(),
            ),
            (
                "grid.schedule",
                g.schedule.values().len(),
                g.schedule.distribution(),
            ),
            (
                "grid.batch_norm",
                g.batch_norm.as_ref().map_or(1, |axis| axis.values().len()),
                g.batch_norm.as_ref().and_then(|axis| axis.distribution()),
            ),
        ] {
            check(
                drawn.is_none(),
                key,
                drawn.map(|d| d.to_string()).unwrap_or_default(),
                "takes a value or a list of values (a choice), not a distribution",
            );
            check(
                listed > 0 || drawn.is_some(),
                key,
                "[]".into(),
                "the grid is empty: give at least one value",
            );
        }
        let numeric: [NumericAxis; 8] = [
            (
                "grid.lr",
                g.lr.values().to_vec(),
                g.lr.distribution(),
                false,
                (
                    |x| x.is_finite() && x > 0.0,
                    "the learning rate must be greater than 0 (e.g. 0.001)",
                ),
            ),
            (
                "grid.batch_size",
                g.batch_size.values().iter().map(|&b| b as f64).collect(),
                g.batch_size.distribution(),
                true,
                (|x| x >= 1.0, "must be at least 1"),
            ),
            (
                "grid.epochs",
                g.epochs.values().iter().map(|&e| e as f64).collect(),
                g.epochs.distribution(),
                true,
                (|x| x >= 1.0, "must be at least 1"),
            ),
            (
                "grid.dropout",
                g.dropout.values().to_vec(),
                g.dropout.distribution(),
                false,
                (|x| (0.0..1.0).contains(&x), "dropout must be in [0, 1)"),
            ),
            (
                "grid.weight_decay",
                g.weight_decay.values().to_vec(),
                g.weight_decay.distribution(),
                false,
                (|x| x.is_finite() && x >= 0.0, "must be 0 or greater"),
            ),
            (
                "data.split",
                s.data.split.values().to_vec(),
                s.data.split.distribution(),
                false,
                (
                    |x| x > 0.0 && x < 1.0,
                    "the train fraction must be strictly between 0 and 1 (e.g. 0.8 for an \
                     80/20 split)",
                ),
            ),
            (
                "grid.warmup_epochs",
                g.warmup_epochs.values().iter().map(|&e| e as f64).collect(),
                g.warmup_epochs.distribution(),
                true,
                (|x| x >= 0.0, "must be 0 or more"),
            ),
            (
                "grid.label_smoothing",
                g.label_smoothing.values().to_vec(),
                g.label_smoothing.distribution(),
                false,
                (
                    |x| (0.0..1.0).contains(&x),
                    "label smoothing must be in [0, 1) (0.1 is usual)",
                ),
            ),
        ];
        for (key, values, drawn, integer, (valid, rule)) in &numeric {
            let Some(d) = drawn else {
                check(
                    !values.is_empty(),
                    key,
                    "[]".into(),
                    "the grid is empty: give at least one value",
                );
                for &x in values {
                    check(valid(x), key, x.to_string(), rule);
                }
                continue;
            };
            let shown = format!("{{ {} = [{}, {}] }}", d.kind.as_str(), d.low, d.high);
            check(
                searching,
                key,
                shown.clone(),
                "a distribution needs a searching sampler: set [sweep] sampler = \"random\" or \
                 \"tpe\" (with trials = N), or list values for the grid",
            );
            if let Some(problem) = d.problem() {
                check(false, key, shown.clone(), &problem);
            } else if *integer && !d.kind.is_int() {
                check(
                    false,
                    key,
                    shown.clone(),
                    "takes whole numbers: use int_uniform or int_log_uniform",
                );
            } else if !*integer && d.kind.is_int() {
                check(
                    false,
                    key,
                    shown.clone(),
                    "takes real numbers: use uniform or log_uniform",
                );
            } else {
                check(
                    valid(d.low) && valid(d.high),
                    key,
                    shown.clone(),
                    &format!("both bounds: {rule}"),
                );
            }
        }
        match (searching, s.sweep.trials) {
            (true, None) => check(
                false,
                "sweep.trials",
                "(missing)".into(),
                &format!(
                    "sampler = \"{}\" draws configurations until a budget is spent: set \
                     [sweep] trials = N (e.g. 40)",
                    s.sweep.sampler.as_str()
                ),
            ),
            (true, Some(n)) => check(n >= 1, "sweep.trials", n.to_string(), "must be at least 1"),
            (false, Some(n)) => check(
                false,
                "sweep.trials",
                n.to_string(),
                "a grid runs every combination: remove trials, or set [sweep] sampler = \
                 \"random\" or \"tpe\"",
            ),
            (false, None) => {}
        }
        // The extremes an integer axis takes, listed or drawn.
        let most = |axis: &Axis<usize>| {
            axis.distribution().map_or_else(
                || axis.values().iter().copied().max().unwrap_or(0),
                |d| d.high as usize,
            )
        };
        let fewest = |axis: &Axis<usize>| {
            axis.distribution().map_or_else(
                || axis.values().iter().copied().min().unwrap_or(0),
                |d| d.low as usize,
            )
        };
        let p = &s.prune;
        if p.method != PruneMethod::None {
            check(
                p.min_epochs >= 1,
                "prune.min_epochs",
                p.min_epochs.to_string(),
                "must be at least 1",
            );
        }
        if p.method == PruneMethod::Asha {
            check(
                p.reduction_factor >= 2,
                "prune.reduction_factor",
                p.reduction_factor.to_string(),
                "must be at least 2 (3 keeps the top third at each rung)",
            );
            let most_epochs = most(&g.epochs);
            check(
                p.min_epochs < most_epochs,
                "prune.min_epochs",
                p.min_epochs.to_string(),
                &format!(
                    "the first rung must come before the last epoch ({most_epochs}); lower \
                     min_epochs or raise grid.epochs"
                ),
            );
        }

        // The warm-up must leave at least one epoch of the schedule, in every combination.
        let (warmup, epochs) = (most(&g.warmup_epochs), fewest(&g.epochs));
        check(
            warmup == 0 || warmup < epochs,
            "grid.warmup_epochs",
            warmup.to_string(),
            &format!(
                "the warm-up must end before the last epoch (a trial may have as few as \
                 {epochs} epochs); lower warmup_epochs or raise grid.epochs"
            ),
        );
        let step = &s.schedule.step;
        check(
            step.every >= 1,
            "schedule.step.every",
            step.every.to_string(),
            "must be at least 1 (epochs between two reductions)",
        );
        check(
            step.gamma.is_finite() && step.gamma > 0.0,
            "schedule.step.gamma",
            step.gamma.to_string(),
            "must be greater than 0 (0.5 halves the rate)",
        );
        check(
            s.data.crop_padding <= 14,
            "data.crop_padding",
            s.data.crop_padding.to_string(),
            "must be at most 14 (half the image); 2 or 4 are usual",
        );

        // Batch norm follows convolutions: mlp has none, and resnet is defined with it.
        if let Some(batch_norm) = &g.batch_norm {
            let declared = batch_norm.values();
            let archs = g.arch.values();
            check(
                !(declared.contains(&true) && archs.contains(&ArchName::Mlp)),
                "grid.batch_norm",
                "true".into(),
                "mlp has no convolutions to normalise: use batch_norm with cnn, lenet5 or \
                 convnet, and put mlp in an experiment of its own",
            );
            check(
                !(declared.contains(&false) && archs.contains(&ArchName::Resnet)),
                "grid.batch_norm",
                "false".into(),
                "resnet always uses batch norm: leave batch_norm out for resnet (or put resnet \
                 in an experiment of its own)",
            );
        }

        let a = &s.arch;
        check(
            (1..=4).contains(&a.resnet.channels.len()) && a.resnet.channels.iter().all(|&c| c > 0),
            "arch.resnet.channels",
            format!("{:?}", a.resnet.channels),
            "give 1 to 4 stage widths, each at least 1 (e.g. [16, 32, 64])",
        );
        check(
            (1..=8).contains(&a.resnet.blocks),
            "arch.resnet.blocks",
            a.resnet.blocks.to_string(),
            "must be 1 to 8 basic blocks per stage (2 is the default)",
        );
        check(
            !a.mlp.hidden.is_empty() && a.mlp.hidden.iter().all(|&h| h > 0),
            "arch.mlp.hidden",
            format!("{:?}", a.mlp.hidden),
            "give one or more layer widths, each at least 1",
        );
        check(
            a.cnn.channels.iter().chain(&a.cnn.hidden).all(|&c| c > 0),
            "arch.cnn",
            format!("channels {:?}, hidden {:?}", a.cnn.channels, a.cnn.hidden),
            "every width must be at least 1",
        );
        check(
            a.convnet.channels.iter().all(|&c| c > 0),
            "arch.convnet.channels",
            format!("{:?}", a.convnet.channels),
            "every width must be at least 1",
        );

        let o = &s.optimizer;
        check(
            (0.0..1.0).contains(&o.sgd.momentum),
            "optimizer.sgd.momentum",
            o.sgd.momentum.to_string(),
            "must be in [0, 1)",
        );
        check(
            (0.0..=1.0).contains(&o.sgd.dampening),
            "optimizer.sgd.dampening",
            o.sgd.dampening.to_string(),
            "must be in [0, 1]",
        );
        check(
            !o.sgd.nesterov || (o.sgd.momentum > 0.0 && o.sgd.dampening == 0.0),
            "optimizer.sgd.nesterov",
            "true".into(),
            "Nesterov momentum needs momentum > 0 and dampening = 0",
        );
        for (key, adam) in [("optimizer.adam", &o.adam), ("optimizer.adamw", &o.adamw)] {
            check(
                adam.betas.iter().all(|b| (0.0..1.0).contains(b)),
                &format!("{key}.betas"),
                format!("{:?}", adam.betas),
                "each beta must be in [0, 1)",
            );
            check(
                adam.eps.is_finite() && adam.eps > 0.0,
                &format!("{key}.eps"),
                adam.eps.to_string(),
                "must be greater than 0 (PyTorch uses 1e-8)",
            );
        }

        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Spec(format!(
                "invalid experiment {}:\n  {}",
                self.path.display(),
                problems.join("\n  ")
            )))
        }
    }
}

/// A check on one numeric value of an axis, and the rule it enforces.
type NumberRule = (fn(f64) -> bool, &'static str);

/// A numeric axis as validation sees it: key, listed values, distribution, whether it takes
/// whole numbers, and the rule every value must meet.
type NumericAxis<'a> = (
    &'static str,
    Vec<f64>,
    Option<&'a Distribution>,
    bool,
    NumberRule,
);

/// Splits `key=value`; the value is read as TOML (`0.1`, `[1, 2]`, `"x"`), or else as a string.
fn parse_override(set: &str) -> Result<(String, toml::Value)> {
    let (key, raw) = set.split_once('=').ok_or_else(|| {
        Error::Spec(format!(
            "--set {set:?}: expected KEY=VALUE, e.g. --set grid.lr=0.01 or --set 'grid.arch=[\"mlp\",\"cnn\"]'"
        ))
    })?;
    let key = key.trim();
    if key.is_empty() || key.split('.').any(str::is_empty) {
        return Err(Error::Spec(format!(
            "--set {set:?}: the key must be a dotted path such as grid.lr"
        )));
    }
    let raw = raw.trim();
    let value = format!("v = {raw}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()));
    Ok((key.to_owned(), value))
}

/// Names the layer a value came from: the file, the environment, or `--set`.
fn origin_of(meta: &figment::Metadata) -> String {
    match &meta.source {
        Some(figment::Source::File(p)) => p.display().to_string(),
        _ if meta.name.contains("SWEEP_") => meta.name.to_string(),
        _ => "--set".into(),
    }
}

fn spec_error(path: &Path, error: figment::Error) -> Error {
    let lines: Vec<String> = error
        .into_iter()
        .map(|e| {
            let key = if e.path.is_empty() {
                String::new()
            } else {
                format!(" at key {}", e.path.join("."))
            };
            let origin = e
                .metadata
                .as_ref()
                .map_or_else(|| path.display().to_string(), origin_of);
            format!("{origin}{key}: {}", e.kind)
        })
        .collect();
    Error::Spec(format!(
        "invalid experiment {}:\n  {}\n  (see the experiment file reference in README.md)",
        path.display(),
        lines.join("\n  ")
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn override_values_parse_as_toml_or_fall_back_to_strings() {
        assert_eq!(
            parse_override("grid.lr=0.5").unwrap().1,
            toml::Value::Float(0.5)
        );
        assert_eq!(
            parse_override("grid.arch=cnn").unwrap().1,
            toml::Value::String("cnn".into())
        );
        assert!(parse_override("grid.lr").is_err());
        assert!(parse_override("grid..lr=1").is_err());
    }
}
