//! The Pareto front of a multi-objective sweep, read from its listings: what `sweep ls
//! --pareto`, `sweep best` and the report show.

use super::front_plot::{self, Axis};
use super::table::listing_rows;
use super::{Format, Measure};
use crate::error::Result;
use crate::experiment::Objective;
use crate::search::pareto;
use crate::store::TrialListing;
use crate::trial::TrialStatus;
use serde::Serialize;
use std::collections::HashMap;
use std::fmt::Write;
use std::path::{Path, PathBuf};

/// A finished trial's objectives in loss form; `None` when one of them was not recorded.
pub fn losses(trial: &TrialListing, objectives: &[Objective]) -> Option<Vec<f64>> {
    objectives
        .iter()
        .map(|&o| Measure::from(o).of(trial).map(|v| o.loss(v)))
        .collect()
}

/// The non-dominated trials among the finished ones of `trials` (those with every objective
/// recorded), best first by the first objective.
pub fn pareto_front<'a>(
    trials: &'a [TrialListing],
    objectives: &[Objective],
) -> Vec<&'a TrialListing> {
    let (members, points): (Vec<&TrialListing>, Vec<Vec<f64>>) = trials
        .iter()
        .filter(|t| t.status == TrialStatus::Done)
        .filter_map(|t| Some((t, losses(t, objectives)?)))
        .unzip();
    let mut front: Vec<(&TrialListing, &Vec<f64>)> = pareto::front(&points)
        .into_iter()
        .map(|i| (members[i], &points[i]))
        .collect();
    front.sort_by(|a, b| {
        a.1.iter()
            .zip(b.1)
            .fold(std::cmp::Ordering::Equal, |o, (x, y)| {
                o.then(x.total_cmp(y))
            })
            .then(a.0.id.cmp(&b.0.id))
    });
    front.into_iter().map(|(t, _)| t).collect()
}

/// A finished trial as the Pareto plot draws it.
#[derive(Debug, Clone, Serialize)]
pub struct FrontPoint {
    /// Database id.
    pub id: i64,
    /// Its objectives, in their own units.
    pub values: Vec<f64>,
    /// Whether no other finished trial beats it on every objective.
    pub on_front: bool,
}

/// A multi-objective sweep's front and the growth of its hypervolume, as the report and the
/// web view show them.
#[derive(Debug, Clone, Serialize)]
pub struct FrontSummary {
    /// The objectives' names.
    pub objectives: Vec<&'static str>,
    /// Which of them are maximised.
    pub maximised: Vec<bool>,
    /// Every finished trial with every objective recorded, in draw order.
    pub trials: Vec<FrontPoint>,
    /// The ids on the front, best first by the first objective.
    pub front: Vec<i64>,
    /// The hypervolume's reference point, in the objectives' units: each one's worst finished
    /// value pushed 10% further out (Optuna's rule), fixed for the whole history.
    pub reference: Vec<f64>,
    /// (trials finished in draw order, hypervolume) after each.
    pub hypervolume_by_trial: Vec<(f64, f64)>,
    /// (seconds since the sweep's first epoch, hypervolume) after each trial, by time.
    pub hypervolume_by_time: Vec<(f64, f64)>,
}

impl FrontSummary {
    /// The front of `trials` (in draw order) under `objectives`; `finished_s`: seconds from
    /// the sweep's first epoch to each trial's last, by id.
    pub fn of(
        trials: &[TrialListing],
        objectives: &[Objective],
        finished_s: &HashMap<i64, f64>,
    ) -> FrontSummary {
        let (members, points): (Vec<&TrialListing>, Vec<Vec<f64>>) = trials
            .iter()
            .filter(|t| t.status == TrialStatus::Done)
            .filter_map(|t| Some((t, losses(t, objectives)?)))
            .unzip();
        let front: Vec<i64> = pareto_front(trials, objectives)
            .iter()
            .map(|t| t.id)
            .collect();
        let reference = pareto::reference_point(&points);
        let growth = |order: &mut dyn Iterator<Item = (f64, usize)>| -> Vec<(f64, f64)> {
            let mut so_far = Running::default();
            order
                .map(|(x, i)| (x, so_far.add(&points[i], &reference)))
                .collect()
        };
        let mut timed: Vec<(f64, usize)> = (0..members.len())
            .filter_map(|i| Some((*finished_s.get(&members[i].id)?, i)))
            .collect();
        timed.sort_by(|a, b| a.0.total_cmp(&b.0));
        FrontSummary {
            objectives: objectives.iter().map(|o| o.name()).collect(),
            maximised: objectives.iter().map(|o| o.maximised()).collect(),
            trials: members
                .iter()
                .zip(&points)
                .map(|(t, p)| FrontPoint {
                    id: t.id,
                    values: objectives.iter().zip(p).map(|(o, v)| o.loss(*v)).collect(),
                    on_front: front.contains(&t.id),
                })
                .collect(),
            front,
            reference: objectives
                .iter()
                .zip(&reference)
                .map(|(o, r)| o.loss(*r))
                .collect(),
            hypervolume_by_trial: growth(&mut (0..points.len()).map(|i| ((i + 1) as f64, i))),
            hypervolume_by_time: growth(&mut timed.into_iter()),
        }
    }
}

/// The front of the points added so far and its hypervolume: only a point that no earlier one
/// dominates changes it, so each step measures the front, not the whole history.
#[derive(Default)]
struct Running {
    front: Vec<Vec<f64>>,
    volume: f64,
}

impl Running {
    fn add(&mut self, point: &[f64], reference: &[f64]) -> f64 {
        if !self
            .front
            .iter()
            .any(|f| pareto::dominates(f, point) || f == point)
        {
            self.front.retain(|f| !pareto::dominates(point, f));
            self.front.push(point.to_vec());
            self.volume = pareto::hypervolume(&self.front, reference);
        }
        self.volume
    }
}

/// The report's section for a sweep with several objectives: the front as a table, the
/// Pareto plot, and the hypervolume against trial number and time.
pub fn front_section(
    trials: &[TrialListing],
    summary: &FrontSummary,
    dir: &Path,
    stem: &str,
) -> Result<(String, Vec<PathBuf>)> {
    let mut md = String::from("## Pareto front\n\n");
    let names: Vec<String> = summary
        .objectives
        .iter()
        .zip(&summary.maximised)
        .map(|(o, &max)| format!("`{o}` ({})", if max { "max" } else { "min" }))
        .collect();
    let _ = writeln!(
        md,
        "Objectives {}. Of {} trials that trained every epoch with every objective recorded, {} \
         are on the front: no other finished trial is at least as good on every objective and \
         better on one. Sorted by the first objective.\n",
        names.join(", "),
        summary.trials.len(),
        summary.front.len()
    );
    let mut figures = Vec::new();
    if summary.front.is_empty() {
        return Ok((md, figures));
    }
    let on_front: Vec<TrialListing> = summary
        .front
        .iter()
        .filter_map(|id| trials.iter().find(|t| t.id == *id).cloned())
        .collect();
    md.push_str(&listing_rows(&on_front).render(Format::Md));
    md.push('\n');

    let axes: Vec<Axis> = summary
        .objectives
        .iter()
        .enumerate()
        .map(|(k, name)| Axis {
            name,
            maximised: summary.maximised[k],
            values: summary.trials.iter().map(|p| p.values[k]).collect(),
        })
        .collect();
    let flags: Vec<bool> = summary.trials.iter().map(|p| p.on_front).collect();
    let file = format!("{stem}-pareto.svg");
    front_plot::pareto(&dir.join(&file), &axes, &flags)?;
    let _ = writeln!(md, "![Pareto front]({file})\n");
    figures.push(dir.join(file));

    let shown: Vec<String> = summary
        .objectives
        .iter()
        .zip(&summary.reference)
        .map(|(o, r)| format!("{o} {}", super::human(*r)))
        .collect();
    let _ = writeln!(
        md,
        "Hypervolume: the region the front dominates, bounded by the reference point ({}: each \
         objective's worst finished value pushed 10% further out, Optuna's rule), in the \
         objectives' own units. Final: {}.\n",
        shown.join(", "),
        super::human(summary.hypervolume_by_trial.last().map_or(0.0, |p| p.1))
    );
    let file = format!("{stem}-hypervolume.svg");
    front_plot::hypervolume(
        &dir.join(&file),
        &summary.hypervolume_by_trial,
        &summary.hypervolume_by_time,
    )?;
    let _ = writeln!(md, "![hypervolume]({file})\n");
    figures.push(dir.join(file));
    Ok((md, figures))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_front_keeps_the_non_dominated_finished_trials_sorted_by_the_first_objective() {
        let trial = |id: i64, status, acc: f64, params: Option<i64>| TrialListing {
            id,
            status,
            best_val_acc: Some(acc),
            param_count: params,
            ..TrialListing::default()
        };
        let trials = [
            trial(1, TrialStatus::Done, 0.80, Some(100)),
            trial(2, TrialStatus::Done, 0.90, Some(1000)),
            trial(3, TrialStatus::Done, 0.85, Some(2000)), // dominated by 2
            trial(4, TrialStatus::Pruned, 0.95, Some(10)), // not finished
            trial(5, TrialStatus::Done, 0.99, None),       // size not recorded
            trial(6, TrialStatus::Done, 0.70, Some(10)),
            trial(7, TrialStatus::Done, 0.90, Some(1000)), // equal to 2: on the front too
        ];
        let ids: Vec<i64> = pareto_front(&trials, &[Objective::ValAcc, Objective::Params])
            .iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(ids, vec![2, 7, 1, 6]);

        // The hypervolume after each trial equals the hypervolume of all trials so far.
        let objectives = [Objective::ValAcc, Objective::Params];
        let summary = FrontSummary::of(&trials, &objectives, &HashMap::new());
        assert_eq!(summary.front, vec![2, 7, 1, 6]);
        assert_eq!(summary.trials.len(), 5);
        let loss_points: Vec<Vec<f64>> = trials
            .iter()
            .filter(|t| t.status == TrialStatus::Done)
            .filter_map(|t| losses(t, &objectives))
            .collect();
        let reference = pareto::reference_point(&loss_points);
        for (k, &(n, volume)) in summary.hypervolume_by_trial.iter().enumerate() {
            assert_eq!(n, (k + 1) as f64);
            let direct = pareto::hypervolume(&loss_points[..=k], &reference);
            assert!(
                (volume - direct).abs() < 1e-9,
                "after {n}: {volume} vs {direct}"
            );
        }
        assert!(summary.hypervolume_by_time.is_empty(), "no times given");
    }
}
