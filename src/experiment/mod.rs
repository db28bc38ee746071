//! The experiment file: load it with figment (defaults < file < `SWEEP_*` < `--set`), check every
//! value, and expand the grid into trials.

mod axis;
mod file;
mod grid;

pub use axis::Axis;
pub use file::*;
pub use grid::TrialSpec;

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
        if let Err(e) = text.parse::<toml::Table>() {
            return Err(Error::Spec(format!(
                "{} is not valid TOML: {e}",
                path.display()
            )));
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
        if let Some(limit) = s.data.limit {
            check(
                limit >= 2,
                "data.limit",
                limit.to_string(),
                "must be at least 2 (one training and one validation image)",
            );
        }

        let g = &s.grid;
        for (key, len) in [
            ("grid.arch", g.arch.values().len()),
            ("grid.optimizer", g.optimizer.values().len()),
            ("grid.lr", g.lr.values().len()),
            ("grid.batch_size", g.batch_size.values().len()),
            ("grid.epochs", g.epochs.values().len()),
            ("grid.dropout", g.dropout.values().len()),
            ("grid.weight_decay", g.weight_decay.values().len()),
            ("data.split", s.data.split.values().len()),
        ] {
            check(
                len > 0,
                key,
                "[]".into(),
                "the grid is empty: give at least one value",
            );
        }
        for &lr in g.lr.values() {
            check(
                lr.is_finite() && lr > 0.0,
                "grid.lr",
                lr.to_string(),
                "the learning rate must be greater than 0 (e.g. 0.001)",
            );
        }
        for &b in g.batch_size.values() {
            check(
                b > 0,
                "grid.batch_size",
                b.to_string(),
                "must be at least 1",
            );
        }
        for &e in g.epochs.values() {
            check(e > 0, "grid.epochs", e.to_string(), "must be at least 1");
        }
        for &p in g.dropout.values() {
            check(
                (0.0..1.0).contains(&p),
                "grid.dropout",
                p.to_string(),
                "dropout must be in [0, 1)",
            );
        }
        for &w in g.weight_decay.values() {
            check(
                w.is_finite() && w >= 0.0,
                "grid.weight_decay",
                w.to_string(),
                "must be 0 or greater",
            );
        }
        for &split in s.data.split.values() {
            check(
                split > 0.0 && split < 1.0,
                "data.split",
                split.to_string(),
                "the train fraction must be strictly between 0 and 1 (e.g. 0.8 for an 80/20 split)",
            );
        }

        let a = &s.arch;
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
