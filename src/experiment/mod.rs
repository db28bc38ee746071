//! The experiment file: load it with figment (defaults < file < `SWEEP_*` < `--set`), check every
//! value, and expand the grid into trials. Each section's type sits with its own validation in
//! a file of its own; `spec` puts them together, `problems` collects what they find.

mod arch_options;
mod axis;
mod data_section;
mod grid;
mod grid_section;
mod hyper;
mod objective;
mod optimizer_options;
mod pbt_section;
mod problems;
mod prune_section;
mod schedule_options;
mod spec;
mod sweep_section;

pub use arch_options::{
    ArchOptions, CnnOptions, ConvnetOptions, MlpOptions, NoOptions, ResnetOptions,
};
pub use axis::{Axis, Distribution, DistributionKind};
pub use data_section::DataSection;
pub use grid::{AxisValues, TrialSpec, expand, omitted_defaults, trial};
pub use grid_section::{ArchName, Augment, GridSection, OptimizerName, ScheduleName};
pub use hyper::{Change, FIXED, HYPERS, Hyper};
pub use objective::{ALL_OBJECTIVES, Objective};
pub use optimizer_options::{AdamOptions, OptimizerOptions, SgdOptions};
pub use pbt_section::PbtSection;
pub use prune_section::{PruneMethod, PruneSection};
pub use schedule_options::{ScheduleOptions, StepOptions, ValuesByEpoch};
pub use spec::ExperimentSpec;
pub use sweep_section::{DeviceName, Keep, Metric, SamplerName, SweepSection};

use crate::error::{Error, Result};
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use problems::Problems;
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
        let mut experiment = Experiment {
            path: path.to_path_buf(),
            name,
            spec,
        };
        experiment.validate(&figment)?;
        experiment.spec.sweep.settle_metric();
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

    /// Checks the name and every section; all problems are reported at once.
    fn validate(&self, figment: &Figment) -> Result<()> {
        let mut problems = Problems::new(figment, &self.path);
        let name_ok = !self.name.is_empty()
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
            && !self.name.starts_with('.');
        problems.check(
            name_ok,
            "sweep.name",
            format!("{:?}", self.name),
            "use letters, digits, '-', '_' and '.' only (it names a directory under runs/)",
        );
        self.spec.validate(&mut problems);
        problems.into_result()
    }
}

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
        "invalid experiment {}:\n  {}\n  (see the experiment file reference in docs/experiment-file.md)",
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
