//! The report's section for searched sweeps: the optimisation history, the intermediate
//! values with pruned trials marked, the metric against each numeric parameter, and which
//! parameters mattered.

use super::search_plot::{self, Outcome, ParamPanel};
use super::{Format, Rows};
use crate::error::Result;
use crate::experiment::Metric;
use crate::search::{Domain, PastTrial, Sampler, Space};
use crate::store::Store;
use crate::trial::TrialStatus;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// A searched sweep's history, read from the store.
pub struct SearchInput {
    /// The searched space, from the sweep's stored experiment.
    pub space: Space,
    /// The metric the sampler optimises.
    pub metric: Metric,
    /// Sampler and early stopping, as the experiment names them.
    pub method: String,
    /// Every trial in draw order, with its metric by epoch.
    pub trials: Vec<PastTrial>,
    /// When each trial recorded its latest epoch, in seconds from the sweep's first epoch.
    pub result_s: HashMap<i64, f64>,
}

/// A searched sweep's history as its report and the web view show it; `None` for a grid.
pub fn search_input(store: &Store, sweep: &str) -> Result<Option<SearchInput>> {
    let (Some(experiment), Some(sweep_id)) =
        (store.stored_experiment(sweep)?, store.sweep_id(sweep)?)
    else {
        return Ok(None);
    };
    let Some(sampler) = Sampler::new(&experiment.spec) else {
        return Ok(None);
    };
    let spec = &experiment.spec;
    let metric = spec.sweep.metric;
    Ok(Some(SearchInput {
        space: sampler.space().clone(),
        metric,
        method: match spec.pbt_settings() {
            Some(pbt) => format!(
                "Population-based training: {} members, a step every {} epochs, quantile {}",
                pbt.population, pbt.interval, pbt.quantile
            ),
            None => format!(
                "Sampler `{}` with a budget of {} configurations x {} repeats; early stopping \
                 `{}`",
                spec.sweep.sampler_label(),
                spec.sweep.trials.unwrap_or(0),
                spec.sweep.repeats,
                spec.prune.method.as_str()
            ),
        },
        trials: store.past_trials(sweep_id, metric)?,
        result_s: store.result_times(sweep_id)?,
    }))
}

/// One trial of the history as the figures draw it.
#[derive(Debug, Clone, Serialize)]
pub struct HistoryPoint {
    /// 1-based position in draw order.
    pub number: usize,
    /// Database id.
    pub id: i64,
    /// How it ended.
    pub outcome: Outcome,
    /// Its best value when done, its last value when stopped early.
    pub value: f64,
    /// Seconds from the sweep's first epoch to its latest one.
    pub at_s: Option<f64>,
}

impl SearchInput {
    /// Every trial with a result, in draw order, as the optimisation history draws it.
    pub fn points(&self) -> Vec<HistoryPoint> {
        self.trials
            .iter()
            .enumerate()
            .filter_map(|(i, t)| {
                let outcome = outcome_of(t.status)?;
                let value = match outcome {
                    Outcome::Done => t.best?,
                    _ => t.values.iter().rev().find_map(|v| *v)?,
                };
                Some(HistoryPoint {
                    number: i + 1,
                    id: t.id,
                    outcome,
                    value,
                    at_s: self.result_s.get(&t.id).copied(),
                })
            })
            .collect()
    }

    /// Whether metric value `a` is better than `b`.
    pub fn better(&self, a: f64, b: f64) -> bool {
        match self.metric {
            Metric::ValAcc => a > b,
            Metric::ValLoss => a < b,
        }
    }
}

/// Writes the search section's figures into `dir` and returns its markdown and their paths.
pub fn search_section(
    input: &SearchInput,
    dir: &Path,
    stem: &str,
) -> Result<(String, Vec<PathBuf>)> {
    let mut md = String::new();
    let metric = input.metric.name();
    let objective = format!("best {metric}");
    let points = input.points();
    let done: Vec<&HistoryPoint> = points
        .iter()
        .filter(|p| p.outcome == Outcome::Done)
        .collect();
    let count = |o: Outcome| points.iter().filter(|p| p.outcome == o).count();
    let _ = writeln!(md, "## Search\n");
    let _ = writeln!(
        md,
        "{}. {} trials drawn: {} trained every epoch, {} pruned, {} paused. A done trial's value is \
         its `{objective}`; a stopped one's is its `{metric}` at the epoch it stopped.\n",
        input.method,
        input.trials.len(),
        done.len(),
        count(Outcome::Pruned),
        count(Outcome::Paused),
    );
    let mut best: Option<&HistoryPoint> = None;
    for p in &done {
        if best.is_none_or(|b| input.better(p.value, b.value)) {
            best = Some(p);
        }
    }
    if let Some(b) = best {
        let _ = writeln!(
            md,
            "The best, {:.4}, came from trial #{} (the {} drawn){}.\n",
            b.value,
            b.id,
            ordinal(b.number),
            b.at_s
                .map(|s| format!(", {s:.0} s after the first epoch began"))
                .unwrap_or_default()
        );
    }
    let mut figures = Vec::new();
    if points.is_empty() {
        let _ = writeln!(md, "No trial has a result yet.\n");
        return Ok((md, figures));
    }
    let higher = input.metric == Metric::ValAcc;

    let file = format!("{stem}-history.svg");
    search_plot::history(&dir.join(&file), metric, higher, &points)?;
    let _ = writeln!(
        md,
        "### Optimisation history\n\nEach trial's value against its draw number and against wall \
         time; the line is the best done trial so far.\n\n![optimisation history]({file})\n"
    );
    figures.push(dir.join(file));

    let file = format!("{stem}-intermediate.svg");
    let curves: Vec<(Outcome, Vec<Option<f64>>)> = intermediate_curves(input)
        .into_iter()
        .map(|(_, outcome, values)| (outcome, values))
        .collect();
    search_plot::intermediate(&dir.join(&file), metric, &curves)?;
    let _ = writeln!(
        md,
        "### Intermediate values\n\n`{metric}` after each epoch of every trial; a cross marks where \
         a pruned or paused trial stopped.\n\n![intermediate values]({file})\n"
    );
    figures.push(dir.join(file));

    let panels = param_panels(input, &points);
    if !panels.is_empty() {
        let file = format!("{stem}-params.svg");
        search_plot::params(&dir.join(&file), metric, &panels)?;
        let _ = writeln!(
            md,
            "### Metric against each numeric parameter\n\nCircles: done trials; crosses: pruned or \
             paused ones at the epoch they stopped. Parameters drawn from log distributions have a \
             log axis.\n\n![metric against parameters]({file})\n"
        );
        figures.push(dir.join(file));
    }

    let _ = writeln!(md, "### Parameter importance\n");
    let table = importance_table(input);
    if table.rows.is_empty() {
        let _ = writeln!(
            md,
            "Too few trials with a result ({}) to say which parameters mattered; it takes at \
             least 4.\n",
            table.trials
        );
    } else {
        let _ = writeln!(
            md,
            "A first-order variance decomposition over {}: for each parameter the trials are \
             grouped by its value (a choice by value, a distribution into {} quantile bins, in \
             log space for log distributions), and ε² is the share of the variance between the \
             groups, corrected for the number of groups (0 when the parameter explains no more \
             than chance). Share is ε² over the sum of all ε². Unlike Optuna's fANOVA it does \
             not credit interactions between parameters.\n",
            table.basis,
            bins(table.trials)
        );
        let rows = table
            .rows
            .iter()
            .map(|row| {
                vec![
                    row.parameter.to_string(),
                    row.searched_as.clone(),
                    format!("{:.3}", row.epsilon2),
                    row.share
                        .map_or_else(|| "-".into(), |s| format!("{:.0}%", 100.0 * s)),
                ]
            })
            .collect();
        md.push_str(
            &Rows {
                header: ["parameter", "searched as", "ε²", "share"]
                    .map(String::from)
                    .to_vec(),
                rows,
            }
            .render(Format::Md),
        );
        md.push('\n');
    }
    Ok((md, figures))
}

/// The importance table: which parameters explain the metric's variance.
#[derive(Debug, Clone, Serialize)]
pub struct ImportanceTable {
    /// Which trials and values it is computed over, in words.
    pub basis: String,
    /// How many trials that is.
    pub trials: usize,
    /// One row per searched parameter, largest ε² first; empty under 4 trials.
    pub rows: Vec<ImportanceRow>,
}

/// One parameter's share of the variance.
#[derive(Debug, Clone, Serialize)]
pub struct ImportanceRow {
    /// The parameter.
    pub parameter: &'static str,
    /// How it is searched: `choice of N` or the distribution's kind.
    pub searched_as: String,
    /// ε²: the share of the variance between its groups, corrected for their number.
    pub epsilon2: f64,
    /// ε² over the sum of all ε²; `None` when every ε² is 0.
    pub share: Option<f64>,
}

/// The importance table of a searched sweep (the report's and the web view's).
pub fn importance_table(input: &SearchInput) -> ImportanceTable {
    let (basis, with_points) = importance_basis(input);
    let importances = importance(&input.space, &with_points);
    let total: f64 = importances.iter().map(|(_, e)| e).sum();
    ImportanceTable {
        basis,
        trials: with_points.len(),
        rows: importances
            .iter()
            .map(|(param, eps)| ImportanceRow {
                parameter: param.name,
                searched_as: match &param.domain {
                    Domain::Choice(labels) => format!("choice of {}", labels.len()),
                    Domain::Drawn(d) => d.kind.as_str().to_string(),
                },
                epsilon2: *eps,
                share: (total > 0.0).then(|| eps / total),
            })
            .collect(),
    }
}

/// Every trial with a result: how it ended and its metric after each epoch (the intermediate
/// values figure).
pub fn intermediate_curves(input: &SearchInput) -> Vec<(i64, Outcome, Vec<Option<f64>>)> {
    input
        .trials
        .iter()
        .filter_map(|t| Some((t.id, outcome_of(t.status)?, t.values.clone())))
        .collect()
}

/// How a trial with this status ended, for trials that have a result to draw.
fn outcome_of(status: TrialStatus) -> Option<Outcome> {
    match status {
        TrialStatus::Done => Some(Outcome::Done),
        TrialStatus::Pruned => Some(Outcome::Pruned),
        TrialStatus::Paused => Some(Outcome::Paused),
        _ => None,
    }
}

fn ordinal(n: usize) -> String {
    let suffix = match (n % 10, n % 100) {
        (_, 11..=13) => "th",
        (1, _) => "st",
        (2, _) => "nd",
        (3, _) => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// One panel per searched parameter with numeric values: distributions, and choices whose
/// values are all numbers.
pub fn param_panels(input: &SearchInput, points: &[HistoryPoint]) -> Vec<ParamPanel> {
    let by_id: HashMap<i64, &PastTrial> = input.trials.iter().map(|t| (t.id, t)).collect();
    input
        .space
        .params
        .iter()
        .enumerate()
        .filter_map(|(index, param)| {
            let (log, numbers): (bool, Option<Vec<f64>>) = match &param.domain {
                Domain::Drawn(d) => (d.kind.is_log(), None),
                Domain::Choice(labels) => (
                    false,
                    Some(
                        labels
                            .iter()
                            .map(|l| l.parse().ok())
                            .collect::<Option<_>>()?,
                    ),
                ),
            };
            let values = points
                .iter()
                .filter_map(|p| {
                    let coordinate = input.space.point_of(&by_id[&p.id].spec)?[index];
                    let x = match &numbers {
                        Some(numbers) => numbers[coordinate as usize],
                        None => coordinate,
                    };
                    Some((x, p.value, p.outcome, p.id))
                })
                .collect();
            Some(ParamPanel {
                name: param.name,
                log,
                points: values,
            })
        })
        .collect()
}

/// Trials for the importance table need one comparable value each. Done trials' best values
/// are, when there are enough of them; under early stopping most trials stop early, so then
/// every trial that reached the deepest epoch enough trials reached is taken at that epoch.
fn importance_basis(input: &SearchInput) -> (String, Vec<(Vec<f64>, f64)>) {
    const ENOUGH: usize = 8;
    let metric = input.metric.name();
    let located = || {
        input
            .trials
            .iter()
            .filter_map(|t| Some((t, input.space.point_of(&t.spec)?)))
    };
    let done: Vec<(Vec<f64>, f64)> = located()
        .filter(|(t, _)| t.status == TrialStatus::Done)
        .filter_map(|(t, p)| Some((p, t.best?)))
        .collect();
    let stopped = input
        .trials
        .iter()
        .any(|t| matches!(t.status, TrialStatus::Pruned | TrialStatus::Paused));
    if done.len() >= ENOUGH || !stopped {
        return (
            format!("the {} done trials, by their best `{metric}`", done.len()),
            done,
        );
    }
    let at = |t: &PastTrial, epoch: usize| t.values.get(epoch - 1).copied().flatten();
    let deepest = (1..=input
        .trials
        .iter()
        .map(|t| t.values.len())
        .max()
        .unwrap_or(0))
        .rev()
        .find(|&e| input.trials.iter().filter(|t| at(t, e).is_some()).count() >= ENOUGH);
    let Some(epoch) = deepest else {
        return (String::new(), done);
    };
    let reached: Vec<(Vec<f64>, f64)> = located()
        .filter_map(|(t, p)| Some((p, at(t, epoch)?)))
        .collect();
    (
        format!(
            "the {} trials that reached epoch {epoch} (the deepest epoch that at least {ENOUGH} \
             trials reached; only {} trained every epoch), by their `{metric}` at that epoch",
            reached.len(),
            done.len()
        ),
        reached,
    )
}

/// How many quantile bins a distribution's values are grouped into for `n` trials.
pub fn bins(n: usize) -> usize {
    ((n as f64).sqrt().round() as usize).clamp(2, 5)
}

/// ε² of the objective grouped by each searched parameter, largest first; empty when fewer
/// than 4 trials are given.
fn importance<'a>(
    space: &'a Space,
    trials: &[(Vec<f64>, f64)],
) -> Vec<(&'a crate::search::Param, f64)> {
    let n = trials.len();
    if n < 4 {
        return Vec::new();
    }
    let mean = trials.iter().map(|(_, y)| y).sum::<f64>() / n as f64;
    let total: f64 = trials.iter().map(|(_, y)| (y - mean).powi(2)).sum();
    let mut out: Vec<(&crate::search::Param, f64)> = space
        .params
        .iter()
        .enumerate()
        .map(|(index, param)| {
            let groups = group(param, trials.iter().map(|(p, _)| p[index]).collect(), n);
            let mut sums: HashMap<usize, (f64, usize)> = HashMap::new();
            for (g, (_, y)) in groups.iter().zip(trials) {
                let entry = sums.entry(*g).or_default();
                entry.0 += y;
                entry.1 += 1;
            }
            let k = sums.len();
            if total <= 0.0 || k < 2 || n <= k {
                return (param, 0.0);
            }
            let between: f64 = sums
                .values()
                .map(|(sum, count)| *count as f64 * (sum / *count as f64 - mean).powi(2))
                .sum();
            let within = total - between;
            let eps = (between - (k - 1) as f64 * within / (n - k) as f64) / total;
            (param, eps.clamp(0.0, 1.0))
        })
        .collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

/// Each trial's group for one parameter: the chosen index for a choice, the quantile bin of
/// the (log) value for a distribution.
pub fn group(param: &crate::search::Param, coordinates: Vec<f64>, n: usize) -> Vec<usize> {
    match &param.domain {
        Domain::Choice(_) => coordinates.iter().map(|c| *c as usize).collect(),
        Domain::Drawn(d) => {
            let key = |x: f64| if d.kind.is_log() { x.ln() } else { x };
            let mut order: Vec<usize> = (0..n).collect();
            order.sort_by(|&a, &b| key(coordinates[a]).total_cmp(&key(coordinates[b])));
            let k = bins(n);
            let mut groups = vec![0; n];
            for (rank, &trial) in order.iter().enumerate() {
                groups[trial] = rank * k / n;
            }
            groups
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::{Axis, Distribution, DistributionKind, ExperimentSpec};

    fn space() -> Space {
        let mut spec = ExperimentSpec::default();
        spec.grid.optimizer = Axis::list(vec![
            crate::experiment::OptimizerName::Adam,
            crate::experiment::OptimizerName::Sgd,
        ]);
        spec.grid.dropout = Axis::drawn(Distribution {
            kind: DistributionKind::Uniform,
            low: 0.0,
            high: 0.5,
        });
        Space::new(&spec)
    }

    #[test]
    fn the_parameter_that_decides_the_metric_takes_the_variance() {
        let space = space();
        // The optimizer alone decides the value; dropout is noise around it.
        let trials: Vec<(Vec<f64>, f64)> = (0..16)
            .map(|i| {
                let opt = (i % 2) as f64;
                let dropout = (i as f64 * 0.37) % 0.5;
                (vec![opt, dropout], 0.8 + 0.1 * opt + 0.001 * (i % 3) as f64)
            })
            .collect();
        let result = importance(&space, &trials);
        assert_eq!(result[0].0.name, "optimizer");
        assert!(result[0].1 > 0.99, "{result:?}");
        assert!(result[1].1 < 0.1 * result[0].1, "{result:?}");
    }

    #[test]
    fn a_hand_computed_decomposition() {
        let space = space();
        // Optimizer groups {1, 3} and {5, 7}: mean 4, SS_total = 9+1+1+9 = 20,
        // SS_between = 2*(2-4)^2 + 2*(6-4)^2 = 16, SS_within = 4, k = 2, n = 4:
        // eps^2 = (16 - 1 * 4/2) / 20 = 0.7.
        let trials = vec![
            (vec![0.0, 0.1], 1.0),
            (vec![0.0, 0.2], 3.0),
            (vec![1.0, 0.3], 5.0),
            (vec![1.0, 0.4], 7.0),
        ];
        let result = importance(&space, &trials);
        let optimizer = result.iter().find(|(p, _)| p.name == "optimizer").unwrap();
        assert!((optimizer.1 - 0.7).abs() < 1e-12, "{result:?}");
        // Dropout bins (2 of 2 trials) hold the same groups here: the same figure.
        let dropout = result.iter().find(|(p, _)| p.name == "dropout").unwrap();
        assert!((dropout.1 - 0.7).abs() < 1e-12, "{result:?}");
        assert!(importance(&space, &trials[..3]).is_empty());
    }

    #[test]
    fn ordinals() {
        let names: Vec<String> = [1, 2, 3, 4, 11, 12, 13, 21, 22, 101, 111]
            .map(ordinal)
            .to_vec();
        assert_eq!(
            names,
            [
                "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "22nd", "101st",
                "111th"
            ]
        );
    }
}
