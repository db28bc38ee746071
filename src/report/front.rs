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

/// The report's section for a sweep with several objectives: the front as a table, the
/// Pareto plot, and the hypervolume against trial number and time. `trials` in draw order;
/// `finished_s`: seconds from the sweep's first epoch to each trial's last.
pub fn front_section(
    trials: &[TrialListing],
    objectives: &[Objective],
    finished_s: &HashMap<i64, f64>,
    dir: &Path,
    stem: &str,
) -> Result<(String, Vec<PathBuf>)> {
    let mut md = String::from(
        "## Pareto front

",
    );
    let names: Vec<String> = objectives
        .iter()
        .map(|o| format!("`{o}` ({})", if o.maximised() { "max" } else { "min" }))
        .collect();
    let (members, points): (Vec<&TrialListing>, Vec<Vec<f64>>) = trials
        .iter()
        .filter(|t| t.status == TrialStatus::Done)
        .filter_map(|t| Some((t, losses(t, objectives)?)))
        .unzip();
    let front = pareto_front(trials, objectives);
    let _ = writeln!(
        md,
        "Objectives {}. Of {} trials that trained every epoch with every objective recorded, {} \
         are on the front: no other finished trial is at least as good on every objective and \
         better on one. Sorted by the first objective.\n",
        names.join(", "),
        members.len(),
        front.len()
    );
    let mut figures = Vec::new();
    if front.is_empty() {
        return Ok((md, figures));
    }
    let owned: Vec<TrialListing> = front.iter().map(|t| (*t).clone()).collect();
    md.push_str(&listing_rows(&owned).render(Format::Md));
    md.push('\n');

    let on_front: Vec<bool> = members
        .iter()
        .map(|m| front.iter().any(|f| f.id == m.id))
        .collect();
    let axes: Vec<Axis> = objectives
        .iter()
        .enumerate()
        .map(|(k, o)| Axis {
            name: o.name(),
            maximised: o.maximised(),
            values: points.iter().map(|p| o.loss(p[k])).collect(),
        })
        .collect();
    let file = format!("{stem}-pareto.svg");
    front_plot::pareto(&dir.join(&file), &axes, &on_front)?;
    let _ = writeln!(md, "![Pareto front]({file})\n");
    figures.push(dir.join(file));

    // One reference point for the whole history, so that the curve only ever rises.
    let reference = pareto::reference_point(&points);
    let growth =
        |order: &[usize]| -> Vec<Vec<f64>> { order.iter().map(|&i| points[i].clone()).collect() };
    let by_number: Vec<(f64, f64)> = (1..=points.len())
        .map(|k| {
            let order: Vec<usize> = (0..k).collect();
            (k as f64, pareto::hypervolume(&growth(&order), &reference))
        })
        .collect();
    let mut timed: Vec<(f64, usize)> = (0..members.len())
        .filter_map(|i| Some((*finished_s.get(&members[i].id)?, i)))
        .collect();
    timed.sort_by(|a, b| a.0.total_cmp(&b.0));
    let by_time: Vec<(f64, f64)> = (1..=timed.len())
        .map(|k| {
            let order: Vec<usize> = timed[..k].iter().map(|&(_, i)| i).collect();
            (
                timed[k - 1].0,
                pareto::hypervolume(&growth(&order), &reference),
            )
        })
        .collect();
    let shown: Vec<String> = objectives
        .iter()
        .zip(&reference)
        .map(|(o, r)| format!("{o} {}", super::human(o.loss(*r))))
        .collect();
    let _ = writeln!(
        md,
        "Hypervolume: the region the front dominates, bounded by the reference point ({}: each \
         objective's worst finished value pushed 10% further out, Optuna's rule), in the \
         objectives' own units. Final: {}.\n",
        shown.join(", "),
        super::human(by_number.last().map_or(0.0, |p| p.1))
    );
    let file = format!("{stem}-hypervolume.svg");
    front_plot::hypervolume(&dir.join(&file), &by_number, &by_time)?;
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
    }
}
