//! `[pbt]`: population-based training (Jaderberg et al. 2017): its population, how often its
//! members exchange, and how a copied member's hyperparameters are explored.

use super::hyper::{FIXED, HYPERS, Hyper};
use super::problems::Problems;
use serde::{Deserialize, Serialize};

/// `[pbt]`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PbtSection {
    /// Members trained side by side (`[sweep] jobs` decides how many at once).
    pub population: usize,
    /// Epochs between two exploit/explore steps.
    pub interval: usize,
    /// The bottom fraction of members copies from the top fraction (at most one half).
    pub quantile: f64,
    /// Chance that an explored hyperparameter is drawn afresh instead of perturbed.
    pub resample_probability: f64,
    /// Factors one of which multiplies an explored number.
    pub factors: Vec<f64>,
    /// The hyperparameters explored; absent: every searched one among `lr`, `dropout`,
    /// `weight_decay` and `label_smoothing`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mutate: Option<Vec<String>>,
}

impl Default for PbtSection {
    fn default() -> Self {
        PbtSection {
            population: 8,
            interval: 2,
            quantile: 0.25,
            resample_probability: 0.25,
            factors: vec![0.8, 1.2],
            mutate: None,
        }
    }
}

impl PbtSection {
    /// The hyperparameters explored, given the grid's searched axes.
    pub fn mutable(&self, searched: &[&str]) -> Vec<Hyper> {
        match &self.mutate {
            Some(names) => names.iter().filter_map(|n| Hyper::from_name(n)).collect(),
            None => HYPERS
                .into_iter()
                .filter(|h| searched.contains(&h.name()))
                .collect(),
        }
    }

    /// Checks the settings against the grid's searched axes and the fewest epochs a member
    /// trains.
    pub(super) fn validate(&self, problems: &mut Problems, searched: &[&str], epochs: usize) {
        problems.check(
            self.population >= 2,
            "pbt.population",
            self.population.to_string(),
            "must be at least 2: members copy from one another (Ray Tune's examples use 4 to 16)",
        );
        problems.check(
            self.interval >= 1,
            "pbt.interval",
            self.interval.to_string(),
            "must be at least 1 epoch between two exploit/explore steps",
        );
        problems.check(
            self.interval < epochs,
            "pbt.interval",
            self.interval.to_string(),
            &format!(
                "members train {epochs} epochs, so they would never exchange: use an interval \
                 below the epochs (e.g. {})",
                (epochs / 4).max(1)
            ),
        );
        problems.check(
            self.quantile > 0.0 && self.quantile <= 0.5,
            "pbt.quantile",
            self.quantile.to_string(),
            "must be above 0 and at most 0.5 (0.25: the bottom quarter copies the top quarter)",
        );
        problems.check(
            (0.0..=1.0).contains(&self.resample_probability),
            "pbt.resample_probability",
            self.resample_probability.to_string(),
            "must be between 0 and 1",
        );
        problems.check(
            !self.factors.is_empty() && self.factors.iter().all(|f| f.is_finite() && *f > 0.0),
            "pbt.factors",
            format!("{:?}", self.factors),
            "list one or more factors above 0, e.g. [0.8, 1.2]",
        );
        let shown = |names: &[String]| format!("{names:?}");
        if let Some(names) = &self.mutate {
            for name in names {
                if let Some((_, why)) = FIXED.iter().find(|(fixed, _)| fixed == name) {
                    problems.check(
                        false,
                        "pbt.mutate",
                        shown(names),
                        &format!("{name} is fixed for a member's whole training: {why}"),
                    );
                } else if Hyper::from_name(name).is_none() {
                    problems.check(
                        false,
                        "pbt.mutate",
                        shown(names),
                        &format!(
                            "unknown hyperparameter {name:?}: PBT explores lr, dropout, \
                             weight_decay and label_smoothing"
                        ),
                    );
                } else {
                    problems.check(
                        searched.contains(&name.as_str()),
                        "pbt.mutate",
                        shown(names),
                        &format!(
                            "{name} has one value in [grid]: declare its range to explore, e.g. \
                             {name} = {{ log_uniform = [1e-4, 1e-1] }} or a list of values"
                        ),
                    );
                }
            }
        }
        problems.check(
            !self.mutable(searched).is_empty(),
            "pbt.mutate",
            self.mutate
                .as_deref()
                .map_or("(every searched one)".into(), shown),
            "nothing to explore: declare a range for lr, dropout, weight_decay or \
             label_smoothing in [grid], e.g. lr = { log_uniform = [1e-3, 0.3] }",
        );
    }
}
