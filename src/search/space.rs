//! The space a searching sampler draws from: every axis that lists several values (a choice) or
//! names a distribution. A point of the space is one number per searched axis: the index of
//! the chosen value for a choice, the value itself for a distribution.

use crate::experiment::{
    Axis, AxisValues, Distribution, ExperimentSpec, TrialSpec, trial as build_trial,
};

/// The values one searched axis may take.
#[derive(Debug, Clone, PartialEq)]
pub enum Domain {
    /// One of the listed values, by index; the labels are for display.
    Choice(Vec<String>),
    /// A number drawn from a distribution.
    Drawn(Distribution),
}

/// One searched axis.
#[derive(Debug, Clone, PartialEq)]
pub struct Param {
    /// Its key in `[grid]` (or `split` for `[data] split`).
    pub name: &'static str,
    /// What it may take.
    pub domain: Domain,
}

/// The searched axes of an experiment, in a fixed order.
#[derive(Debug, Clone)]
pub struct Space {
    spec: ExperimentSpec,
    /// The searched axes.
    pub params: Vec<Param>,
}

/// One number per searched axis, in the order of [`Space::params`].
pub type Point = Vec<f64>;

fn domain<T: ToString>(name: &'static str, axis: &Axis<T>) -> Option<Param> {
    let domain = match axis.distribution() {
        Some(d) => Domain::Drawn(*d),
        None if axis.values().len() > 1 => {
            Domain::Choice(axis.values().iter().map(ToString::to_string).collect())
        }
        None => return None,
    };
    Some(Param { name, domain })
}

/// The value of an axis at a point: the drawn number, the chosen listed value, or the one value.
fn value_at<T: Copy>(axis: &Axis<T>, coordinate: Option<f64>, from_number: fn(f64) -> T) -> T {
    match (axis.distribution(), coordinate) {
        (Some(d), Some(x)) => from_number(if d.kind.is_int() { x.round() } else { x }),
        (None, Some(i)) => axis.values()[i as usize],
        _ => axis.values()[0],
    }
}

fn no_number<T>(_: f64) -> T {
    unreachable!("validation refuses distributions on this axis")
}

impl Space {
    /// The searched axes of a validated experiment.
    pub fn new(spec: &ExperimentSpec) -> Space {
        let g = &spec.grid;
        let params = [
            domain("arch", &g.arch.clone().map_display(|a| a.as_str())),
            domain(
                "optimizer",
                &g.optimizer.clone().map_display(|o| o.as_str()),
            ),
            domain("lr", &g.lr),
            domain("batch_size", &g.batch_size),
            domain("epochs", &g.epochs),
            domain("dropout", &g.dropout),
            domain("weight_decay", &g.weight_decay),
            domain("split", &spec.data.split),
            domain("augment", &g.augment.clone().map_display(|a| a.as_str())),
            domain("schedule", &g.schedule.clone().map_display(|s| s.as_str())),
            domain("warmup_epochs", &g.warmup_epochs),
            domain("label_smoothing", &g.label_smoothing),
            g.batch_norm
                .as_ref()
                .and_then(|axis| domain("batch_norm", axis)),
        ]
        .into_iter()
        .flatten()
        .collect();
        Space {
            spec: spec.clone(),
            params,
        }
    }

    fn coordinate(&self, point: &[f64], name: &str) -> Option<f64> {
        self.params
            .iter()
            .position(|p| p.name == name)
            .map(|i| point[i])
    }

    /// The axis values at `point`.
    pub fn values(&self, point: &[f64]) -> AxisValues {
        let g = &self.spec.grid;
        let at = |name| self.coordinate(point, name);
        let arch = value_at(&g.arch, at("arch"), no_number);
        AxisValues {
            arch,
            optimizer: value_at(&g.optimizer, at("optimizer"), no_number),
            lr: value_at(&g.lr, at("lr"), |x| x),
            batch_size: value_at(&g.batch_size, at("batch_size"), |x| x as usize),
            epochs: value_at(&g.epochs, at("epochs"), |x| x as usize),
            dropout: value_at(&g.dropout, at("dropout"), |x| x),
            weight_decay: value_at(&g.weight_decay, at("weight_decay"), |x| x),
            split: value_at(&self.spec.data.split, at("split"), |x| x),
            augment: value_at(&g.augment, at("augment"), no_number),
            schedule: value_at(&g.schedule, at("schedule"), no_number),
            warmup_epochs: value_at(&g.warmup_epochs, at("warmup_epochs"), |x| x as usize),
            label_smoothing: value_at(&g.label_smoothing, at("label_smoothing"), |x| x),
            batch_norm: match &g.batch_norm {
                Some(axis) => value_at(axis, at("batch_norm"), no_number),
                None => arch.batch_norm_by_default(),
            },
        }
    }

    /// The coordinate of `value` (as written after `--set grid.NAME=`) for the searched
    /// parameter `name`, or why it is not a point of this space.
    pub fn coordinate_of(&self, name: &str, value: &str) -> Result<f64, String> {
        let value = value.trim().trim_matches('"');
        let searched: Vec<&str> = self.params.iter().map(|p| p.name).collect();
        let Some(param) = self.params.iter().find(|p| p.name == name) else {
            return Err(format!(
                "{name} is not searched in this sweep (its searched parameters: {}); a fixed \
                 value cannot be changed for one trial",
                searched.join(", ")
            ));
        };
        match &param.domain {
            Domain::Choice(labels) => {
                let number = value.parse::<f64>().ok();
                labels
                    .iter()
                    .position(|l| {
                        l == value || number.is_some_and(|n| l.parse::<f64>().ok() == Some(n))
                    })
                    .map(|i| i as f64)
                    .ok_or_else(|| {
                        format!(
                            "{value} is not one of {name}'s values ({})",
                            labels.join(", ")
                        )
                    })
            }
            Domain::Drawn(d) => {
                let number: f64 = value
                    .parse()
                    .map_err(|_| format!("{name} takes a number, not {value:?}"))?;
                if !(d.low..=d.high).contains(&number) {
                    return Err(format!(
                        "{name} = {value} is outside the space: {} [{}, {}]",
                        d.kind.as_str(),
                        d.low,
                        d.high
                    ));
                }
                if d.kind.is_int() && number.fract() != 0.0 {
                    return Err(format!("{name} takes a whole number, not {value}"));
                }
                Ok(number)
            }
        }
    }

    /// The trials of draw `draw` at `point`, one per repeat.
    pub fn trials(&self, point: &[f64], draw: u64) -> Vec<TrialSpec> {
        let values = self.values(point);
        (0..self.spec.sweep.repeats)
            .map(|repeat| build_trial(&self.spec, &values, repeat, Some(draw)))
            .collect()
    }

    /// Where a stored trial lies in this space; `None` when it does not (the file changed).
    pub fn point_of(&self, trial: &TrialSpec) -> Option<Point> {
        let arch = trial.arch.as_str();
        let optimizer = trial.optimizer.as_str();
        self.params
            .iter()
            .map(|p| {
                let number = match p.name {
                    "lr" => trial.lr,
                    "batch_size" => trial.batch_size as f64,
                    "epochs" => trial.epochs as f64,
                    "dropout" => trial.dropout,
                    "weight_decay" => trial.weight_decay,
                    "split" => trial.split,
                    "warmup_epochs" => trial.warmup_epochs as f64,
                    "label_smoothing" => trial.label_smoothing,
                    _ => f64::NAN,
                };
                match &p.domain {
                    Domain::Drawn(d) => (number >= d.low && number <= d.high).then_some(number),
                    Domain::Choice(labels) => {
                        let label = match p.name {
                            "arch" => arch.to_owned(),
                            "optimizer" => optimizer.to_owned(),
                            "augment" => trial.augment.as_str().to_owned(),
                            "schedule" => trial.schedule.as_str().to_owned(),
                            "batch_norm" => trial.batch_norm.to_string(),
                            _ => number.to_string(),
                        };
                        labels.iter().position(|l| *l == label).map(|i| i as f64)
                    }
                }
            })
            .collect::<Option<Point>>()
            .filter(|point| self.values(point) == trial.axis_values())
    }
}

impl<T> Axis<T> {
    /// The same axis with its listed values turned into display labels.
    fn map_display(self, label: fn(&T) -> &'static str) -> Axis<&'static str> {
        match self.distribution() {
            Some(d) => Axis::drawn(*d),
            None => Axis::list(self.values().iter().map(label).collect()),
        }
    }
}
