//! Population-based training's exploit and explore step (Jaderberg et al. 2017; Ray Tune's
//! `PopulationBasedTraining`), decided from the members' metric at the step's epoch.
//!
//! Members are ranked by their metric after the step's epoch. With `n` ranked members, the
//! bottom `ceil(n * quantile)` (at most half) each copy a member of the top as many, drawn at
//! random among those that share every parameter but the explored ones (so the weights and
//! optimizer state fit). Explore: each explored hyperparameter takes the donor's value,
//! redrawn from its declared range with `resample_probability`, else multiplied by one of
//! `factors` and clipped to the range (a listed value moves to a neighbour in the list
//! instead). Every random choice comes from a generator seeded by the sweep's seed, the step's
//! epoch and the member's draw number, so the step is the same whichever process takes it and
//! however often it is taken.

use super::random::draw_one;
use super::space::{Domain, Param, Space};
use crate::experiment::{ExperimentSpec, Hyper, Metric, PbtSection, TrialSpec};
use crate::rng::Rng;

/// One member of the population as the step sees it.
#[derive(Debug, Clone)]
pub struct Member {
    /// Database id.
    pub trial: i64,
    /// Its draw number (the member's place in the population).
    pub draw: u64,
    /// Its metric after the step's epoch; `None` when it has none (it diverged or failed).
    pub value: Option<f64>,
    /// Its parameters while it trained up to the step's epoch.
    pub spec: TrialSpec,
}

/// What a step does to one member.
#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// It goes on as it is.
    Keep,
    /// It continues from `donor`'s weights after the step's epoch with `params`.
    Exploit {
        /// The member copied.
        donor: i64,
        /// The donor's metric at the step's epoch.
        donor_value: f64,
        /// The explored hyperparameters' new values.
        params: Vec<(Hyper, f64)>,
    },
}

/// Population-based training's settings bound to an experiment.
#[derive(Debug, Clone)]
pub struct Pbt {
    settings: PbtSection,
    mutable: Vec<Param>,
    metric: Metric,
    seed: u64,
}

impl Pbt {
    /// The step of a validated PBT experiment; `None` for other samplers.
    pub fn new(spec: &ExperimentSpec) -> Option<Pbt> {
        let settings = spec.pbt_settings()?;
        let space = Space::new(spec);
        let explored = settings.mutable(&spec.grid.searched_names());
        let mutable = space
            .params
            .into_iter()
            .filter(|p| explored.iter().any(|h| h.name() == p.name))
            .collect();
        Some(Pbt {
            settings,
            mutable,
            metric: spec.sweep.metric,
            seed: spec.sweep.seed,
        })
    }

    /// Epochs between two steps.
    pub fn interval(&self) -> usize {
        self.settings.interval
    }

    /// Members in all.
    pub fn population(&self) -> usize {
        self.settings.population
    }

    /// Whether members stop after `epoch` for a step (never after their last).
    pub fn steps_after(&self, epoch: usize, epochs: usize) -> bool {
        epoch > 0 && epoch < epochs && epoch.is_multiple_of(self.settings.interval)
    }

    /// The step after epoch `epoch` for member `trial`, given the whole population.
    pub fn step(&self, epoch: usize, members: &[Member], trial: i64) -> Step {
        let mut ranked: Vec<&Member> = members
            .iter()
            .filter(|m| m.value.is_some_and(f64::is_finite))
            .collect();
        // Worst first; ties by draw, so every process ranks alike.
        ranked.sort_by(|a, b| {
            let (a_value, b_value) = (a.value.unwrap_or(f64::NAN), b.value.unwrap_or(f64::NAN));
            let order = match self.metric {
                Metric::ValAcc => a_value.total_cmp(&b_value),
                Metric::ValLoss => b_value.total_cmp(&a_value),
            };
            order.then(b.draw.cmp(&a.draw))
        });
        let n = ranked.len();
        let quantile = ((n as f64 * self.settings.quantile).ceil() as usize).min(n / 2);
        let Some(member) = ranked[..quantile].iter().find(|m| m.trial == trial) else {
            return Step::Keep;
        };
        let step_seed =
            self.seed ^ 0x5042_545f_5354_4550 ^ (epoch as u64).wrapping_mul(0x9E37_79B9);
        let mut rng = Rng::for_draw(step_seed, member.draw);
        let donors: Vec<&&Member> = ranked[n - quantile..]
            .iter()
            .filter(|d| compatible(&d.spec, &member.spec))
            .collect();
        if donors.is_empty() {
            return Step::Keep;
        }
        let donor = donors[rng.below(donors.len())];
        let params = self
            .mutable
            .iter()
            .filter_map(|param| {
                let hyper = Hyper::from_name(param.name)?;
                Some((hyper, self.explore(param, hyper.of(&donor.spec), &mut rng)))
            })
            .collect();
        Step::Exploit {
            donor: donor.trial,
            donor_value: donor.value.unwrap_or(f64::NAN),
            params,
        }
    }

    /// A new value near `value` for `param`.
    fn explore(&self, param: &Param, value: f64, rng: &mut Rng) -> f64 {
        let resample = rng.next_f64() < self.settings.resample_probability;
        match &param.domain {
            Domain::Choice(labels) => {
                let values: Vec<f64> = labels.iter().filter_map(|l| l.parse().ok()).collect();
                if resample {
                    return values[rng.below(values.len())];
                }
                let at = values.iter().position(|&v| v == value).unwrap_or(0);
                let next = if rng.below(2) == 0 {
                    at.saturating_sub(1)
                } else {
                    (at + 1).min(values.len() - 1)
                };
                values[next]
            }
            Domain::Drawn(d) => {
                if resample {
                    return draw_one(param, rng);
                }
                let factor = self.settings.factors[rng.below(self.settings.factors.len())];
                let moved = (value * factor).clamp(d.low, d.high);
                if d.kind.is_int() {
                    moved.round()
                } else {
                    moved
                }
            }
        }
    }
}

/// Whether a member can continue from `donor`'s weights: every parameter but the explored
/// hyperparameters and their changes is the same.
fn compatible(donor: &TrialSpec, member: &TrialSpec) -> bool {
    let neutral = |spec: &TrialSpec| {
        let mut spec = spec.clone();
        for hyper in crate::experiment::HYPERS {
            hyper.set(&mut spec, 0.0);
        }
        spec.changes.clear();
        spec.draw = None;
        spec
    };
    neutral(donor) == neutral(member)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Experiment;

    fn bound(extra: &str) -> (Pbt, Space) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pbt.toml");
        std::fs::write(
            &path,
            format!(
                "[sweep]\nsampler = \"pbt\"\n[pbt]\npopulation = 8\ninterval = 2\n{extra}\n\
                 [grid]\narch = \"mlp\"\nepochs = 6\nlr = {{ log_uniform = [0.001, 0.1] }}\n\
                 dropout = [0.0, 0.1, 0.2, 0.3]\n"
            ),
        )
        .unwrap();
        let spec = Experiment::load(&path, &[]).unwrap().spec;
        (Pbt::new(&spec).unwrap(), Space::new(&spec))
    }

    fn population(space: &Space, values: &[f64]) -> Vec<Member> {
        values
            .iter()
            .enumerate()
            .map(|(i, &value)| {
                // lr 0.01 * (i + 1) / 8, dropout index i % 4.
                let point = vec![0.01 * (i + 1) as f64 / 8.0, (i % 4) as f64];
                Member {
                    trial: 100 + i as i64,
                    draw: i as u64,
                    value: Some(value),
                    spec: space.trials(&point, i as u64).remove(0),
                }
            })
            .collect()
    }

    #[test]
    fn the_bottom_quarter_copies_the_top_quarter_and_explores_near_the_donor() {
        let (pbt, space) =
            bound("quantile = 0.25\nresample_probability = 0.0\nfactors = [0.8, 1.2]");
        // Accuracies: members 3 and 6 are the worst two, 1 and 4 the best two (8 * 0.25 = 2).
        let members = population(&space, &[0.70, 0.90, 0.75, 0.50, 0.95, 0.80, 0.40, 0.85]);
        for keeper in [100, 101, 102, 104, 105, 107] {
            assert_eq!(pbt.step(2, &members, keeper), Step::Keep, "trial {keeper}");
        }
        for weak in [103, 106] {
            let Step::Exploit {
                donor,
                donor_value,
                params,
            } = pbt.step(2, &members, weak)
            else {
                panic!("trial {weak} is in the bottom quarter");
            };
            assert!([101, 104].contains(&donor), "donor {donor}");
            let donor_spec = &members[(donor - 100) as usize].spec;
            assert_eq!(donor_value, members[(donor - 100) as usize].value.unwrap());
            let lr = params.iter().find(|(h, _)| *h == Hyper::Lr).unwrap().1;
            let ratio = lr / donor_spec.lr;
            assert!(
                (ratio - 0.8).abs() < 1e-12 || (ratio - 1.2).abs() < 1e-12,
                "lr {lr} from {}",
                donor_spec.lr
            );
            // Dropout is listed: it moves to a neighbour of the donor's value.
            let dropout = params.iter().find(|(h, _)| *h == Hyper::Dropout).unwrap().1;
            let levels = [0.0, 0.1, 0.2, 0.3];
            let at = levels
                .iter()
                .position(|&d| d == donor_spec.dropout)
                .unwrap();
            let moved = levels.iter().position(|&d| d == dropout).unwrap();
            assert!(
                moved.abs_diff(at) <= 1,
                "{dropout} from {}",
                donor_spec.dropout
            );
            // The same step, asked again, decides the same.
            assert_eq!(
                pbt.step(2, &members, weak),
                pbt.step(2, &members, weak),
                "trial {weak}"
            );
        }
        // A member with no value (diverged) is not ranked; seven ranked keep ceil(1.75) = 2.
        let mut diverged = members.clone();
        diverged[0].value = None;
        assert_eq!(pbt.step(2, &diverged, 100), Step::Keep);
        assert!(matches!(pbt.step(2, &diverged, 106), Step::Exploit { .. }));
        // Minimising a loss turns the ranking around.
        let (mut by_loss, _) = bound("resample_probability = 0.0");
        by_loss.metric = Metric::ValLoss;
        assert!(matches!(
            by_loss.step(2, &members, 104),
            Step::Exploit { .. }
        ));
        assert_eq!(by_loss.step(2, &members, 106), Step::Keep);
    }

    #[test]
    fn explored_values_stay_inside_the_declared_range() {
        let (pbt, space) = bound("resample_probability = 0.5\nfactors = [0.1, 10.0]");
        let members = population(&space, &[0.70, 0.90, 0.75, 0.50, 0.95, 0.80, 0.40, 0.85]);
        for epoch in [2, 4, 6, 8, 10, 12, 14, 16] {
            for weak in [103, 106] {
                let Step::Exploit { params, .. } = pbt.step(epoch, &members, weak) else {
                    panic!("trial {weak} is in the bottom quarter");
                };
                let lr = params.iter().find(|(h, _)| *h == Hyper::Lr).unwrap().1;
                assert!((0.001..=0.1).contains(&lr), "lr {lr} at epoch {epoch}");
            }
        }
    }

    #[test]
    fn members_copy_only_members_whose_weights_fit() {
        let (pbt, space) = bound("quantile = 0.5");
        let mut members = population(&space, &[0.1, 0.2, 0.9, 0.8]);
        // The two best have other hidden widths: nothing fits, nobody copies.
        for m in &mut members[2..] {
            m.spec.hidden = Some(vec![7]);
        }
        assert_eq!(pbt.step(2, &members, 100), Step::Keep);
    }
}
