//! The Pareto front of a multi-objective sweep, read from its listings: what `sweep ls
//! --pareto`, `sweep best` and the report show.

use super::Measure;
use crate::experiment::Objective;
use crate::search::pareto;
use crate::store::TrialListing;
use crate::trial::TrialStatus;

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
