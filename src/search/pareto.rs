//! Comparing trials on several objectives at once: Pareto dominance, non-dominated sorting,
//! crowding distance and hypervolume. Every value is in loss form (lower is better); a NaN
//! (a value never measured) counts as the worst.

/// Whether `a` is at least as good as `b` everywhere and better somewhere.
pub fn dominates(a: &[f64], b: &[f64]) -> bool {
    let mut better = false;
    for (&x, &y) in a.iter().zip(b) {
        let (x, y) = (worst_if_nan(x), worst_if_nan(y));
        if x > y {
            return false;
        }
        better |= x < y;
    }
    better
}

fn worst_if_nan(x: f64) -> f64 {
    if x.is_nan() { f64::INFINITY } else { x }
}

/// Each point's front: 0 for the non-dominated ones, 1 for those dominated only by front 0,
/// and so on (Deb et al. 2002's fast non-dominated sort). Equal points share a front.
pub fn non_domination_ranks(points: &[Vec<f64>]) -> Vec<usize> {
    let n = points.len();
    let mut dominated_by = vec![0usize; n];
    let mut dominating: Vec<Vec<usize>> = vec![Vec::new(); n];
    for i in 0..n {
        for j in 0..n {
            if i != j && dominates(&points[i], &points[j]) {
                dominating[i].push(j);
                dominated_by[j] += 1;
            }
        }
    }
    let mut ranks = vec![0usize; n];
    let mut current: Vec<usize> = (0..n).filter(|&i| dominated_by[i] == 0).collect();
    let mut rank = 0;
    while !current.is_empty() {
        let mut next = Vec::new();
        for &i in &current {
            ranks[i] = rank;
            for &j in &dominating[i] {
                dominated_by[j] -= 1;
                if dominated_by[j] == 0 {
                    next.push(j);
                }
            }
        }
        current = next;
        rank += 1;
    }
    ranks
}

/// The indices of the non-dominated points, in their given order. In lexicographic order no
/// point can be dominated by a later one, so one pass against the front found so far decides
/// each point: O(n log n + n x front) rather than the full sort's O(n^2), for the web view's
/// sweeps of 100,000 trials.
pub fn front(points: &[Vec<f64>]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| {
        points[a]
            .iter()
            .zip(&points[b])
            .map(|(&x, &y)| worst_if_nan(x).total_cmp(&worst_if_nan(y)))
            .find(|o| o.is_ne())
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let mut on_front: Vec<usize> = Vec::new();
    for i in order {
        if !on_front.iter().any(|&f| dominates(&points[f], &points[i])) {
            on_front.push(i);
        }
    }
    on_front.sort_unstable();
    on_front
}

/// The indices of `points` best first, as NSGA-II ranks them: by front, then within a front by
/// crowding distance (widest first), then by `ids` (smaller first) so that ties fall the same
/// way in every process.
pub fn ranking(points: &[Vec<f64>], ids: &[i64]) -> Vec<usize> {
    let fronts = non_domination_ranks(points);
    let mut crowding = vec![0.0; points.len()];
    for front in 0..=fronts.iter().copied().max().unwrap_or(0) {
        let members: Vec<usize> = (0..points.len()).filter(|&i| fronts[i] == front).collect();
        let values: Vec<Vec<f64>> = members.iter().map(|&i| points[i].clone()).collect();
        for (&i, d) in members.iter().zip(crowding_distances(&values)) {
            crowding[i] = d;
        }
    }
    let mut order: Vec<usize> = (0..points.len()).collect();
    order.sort_by(|&a, &b| {
        fronts[a]
            .cmp(&fronts[b])
            .then(crowding[b].total_cmp(&crowding[a]))
            .then(ids[a].cmp(&ids[b]))
    });
    order
}

/// NSGA-II's crowding distance, as Optuna computes it: per objective, the gap between each
/// point's two neighbours over the range of the finite values (the extremes get an infinite
/// gap), summed over objectives; an objective where every point is equal adds nothing.
pub fn crowding_distances(points: &[Vec<f64>]) -> Vec<f64> {
    let n = points.len();
    let mut distance = vec![0.0; n];
    let Some(dims) = points.first().map(Vec::len) else {
        return distance;
    };
    for d in 0..dims {
        let column: Vec<f64> = points.iter().map(|p| worst_if_nan(p[d])).collect();
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| column[a].total_cmp(&column[b]));
        let value = |k: usize| column[order[k]];
        if value(0) == value(n - 1) {
            continue;
        }
        let finite: Vec<f64> = (0..n).map(value).filter(|v| v.is_finite()).collect();
        let width = match (finite.first(), finite.last()) {
            (Some(lo), Some(hi)) if hi > lo => hi - lo,
            _ => 1.0,
        };
        for k in 0..n {
            let below = if k == 0 {
                f64::NEG_INFINITY
            } else {
                value(k - 1)
            };
            let above = if k + 1 == n {
                f64::INFINITY
            } else {
                value(k + 1)
            };
            let gap = if below == above { 0.0 } else { above - below };
            distance[order[k]] += gap / width;
        }
    }
    distance
}

/// The volume dominated by `points` and bounded by `reference` (points not better than the
/// reference everywhere add nothing). Exact, by slicing along the last objective; meant for
/// two or three objectives and fronts of a few hundred points.
pub fn hypervolume(points: &[Vec<f64>], reference: &[f64]) -> f64 {
    let inside: Vec<&[f64]> = points
        .iter()
        .map(Vec::as_slice)
        .filter(|p| p.iter().zip(reference).all(|(x, r)| x < r))
        .collect();
    volume(&inside, reference)
}

fn volume(points: &[&[f64]], reference: &[f64]) -> f64 {
    let dims = reference.len();
    if points.is_empty() {
        return 0.0;
    }
    if dims == 1 {
        let best = points.iter().map(|p| p[0]).fold(f64::INFINITY, f64::min);
        return reference[0] - best;
    }
    let last = dims - 1;
    let mut sorted: Vec<&[f64]> = points.to_vec();
    sorted.sort_by(|a, b| a[last].total_cmp(&b[last]));
    let mut total = 0.0;
    for k in 0..sorted.len() {
        let top = sorted.get(k + 1).map_or(reference[last], |p| p[last]);
        let height = top - sorted[k][last];
        if height > 0.0 {
            let slice: Vec<&[f64]> = sorted[..=k].iter().map(|p| &p[..last]).collect();
            total += height * volume(&slice, &reference[..last]);
        }
    }
    total
}

/// Optuna's reference point for a set of loss vectors: each objective's worst value pushed
/// 10% further out (a zero becomes a tiny positive number).
pub fn reference_point(points: &[Vec<f64>]) -> Vec<f64> {
    let dims = points.first().map_or(0, Vec::len);
    (0..dims)
        .map(|d| {
            let worst = points
                .iter()
                .map(|p| p[d])
                .fold(f64::NEG_INFINITY, f64::max);
            let r = (1.1 * worst).max(0.9 * worst);
            if r == 0.0 { 1e-12 } else { r }
        })
        .collect()
}

/// The `k` best of `points`, as Optuna's multi-objective TPE picks its good group: whole
/// fronts of the non-dominated sorting while they fit, then the front that does not fit cut by
/// [`greedy_subset`] against that front's [`reference_point`] (its first points when a value
/// is missing). Returns indices into `points`, in order.
pub fn best_subset(points: &[Vec<f64>], k: usize) -> Vec<usize> {
    let ranks = non_domination_ranks(points);
    let mut chosen: Vec<usize> = Vec::new();
    let mut front = 0;
    while chosen.len() < k.min(points.len()) {
        let members: Vec<usize> = (0..points.len()).filter(|&i| ranks[i] == front).collect();
        if chosen.len() + members.len() <= k {
            chosen.extend(&members);
        } else {
            let need = k - chosen.len();
            let values: Vec<Vec<f64>> = members.iter().map(|&i| points[i].clone()).collect();
            let reference = reference_point(&values);
            if reference.iter().all(|r| r.is_finite()) {
                chosen.extend(
                    greedy_subset(&values, need, &reference)
                        .iter()
                        .map(|&j| members[j]),
                );
            } else {
                chosen.extend(&members[..need]);
            }
        }
        front += 1;
    }
    chosen.sort_unstable();
    chosen
}

/// Greedy hypervolume subset selection: `k` of `points` chosen one at a time, each adding the
/// most hypervolume to those already chosen (Guerreiro et al. 2016; Optuna's tie-break when
/// a front must be cut). Returns indices into `points`; ties go to the earlier point.
pub fn greedy_subset(points: &[Vec<f64>], k: usize, reference: &[f64]) -> Vec<usize> {
    let mut chosen: Vec<usize> = Vec::new();
    let mut chosen_points: Vec<Vec<f64>> = Vec::new();
    let mut volume_so_far = 0.0;
    while chosen.len() < k.min(points.len()) {
        let mut best: Option<(usize, f64)> = None;
        for (i, p) in points.iter().enumerate() {
            if chosen.contains(&i) {
                continue;
            }
            chosen_points.push(p.clone());
            let gain = hypervolume(&chosen_points, reference) - volume_so_far;
            chosen_points.pop();
            if best.is_none_or(|(_, g)| gain > g) {
                best = Some((i, gain));
            }
        }
        let (i, gain) = best.expect("fewer chosen than points");
        chosen.push(i);
        chosen_points.push(points[i].clone());
        volume_so_far += gain;
    }
    chosen
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pts(rows: &[&[f64]]) -> Vec<Vec<f64>> {
        rows.iter().map(|r| r.to_vec()).collect()
    }

    #[test]
    fn fronts_in_two_dimensions_with_ties_and_duplicates() {
        let p = pts(&[
            &[1.0, 5.0],      // front 0
            &[2.0, 3.0],      // front 0
            &[2.0, 3.0],      // duplicate: front 0 as well
            &[4.0, 1.0],      // front 0
            &[2.0, 4.0],      // dominated by [2,3] only -> front 1
            &[4.0, 4.0],      // dominated by [2,4] too -> front 2
            &[5.0, 1.0],      // dominated by [4,1] (tie on the second) -> front 1
            &[f64::NAN, 0.5], // NaN is the worst first value; best second: front 0
        ]);
        assert_eq!(non_domination_ranks(&p), vec![0, 0, 0, 0, 1, 2, 1, 0]);
        assert_eq!(front(&p), vec![0, 1, 2, 3, 7]);
        assert!(!dominates(&p[1], &p[2]) && !dominates(&p[2], &p[1]));
    }

    #[test]
    fn the_one_pass_front_is_the_first_rank() {
        let mut state = 7u64;
        let mut next = || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            // Few distinct values, so that ties and duplicates are common.
            ((state >> 33) % 8) as f64
        };
        for dims in [2, 3] {
            for _ in 0..50 {
                let p: Vec<Vec<f64>> = (0..30)
                    .map(|_| (0..dims).map(|_| next()).collect())
                    .collect();
                let ranks = non_domination_ranks(&p);
                let first: Vec<usize> = (0..p.len()).filter(|&i| ranks[i] == 0).collect();
                assert_eq!(front(&p), first, "{p:?}");
            }
        }
    }

    #[test]
    fn fronts_in_three_dimensions() {
        let p = pts(&[
            &[1.0, 1.0, 3.0],
            &[1.0, 3.0, 1.0],
            &[3.0, 1.0, 1.0],
            &[2.0, 2.0, 2.0], // incomparable with all three: front 0
            &[2.0, 2.0, 3.0], // dominated by [2,2,2]
            &[3.0, 3.0, 3.0], // dominated by all above
        ]);
        assert_eq!(non_domination_ranks(&p), vec![0, 0, 0, 0, 1, 2]);
    }

    #[test]
    fn hypervolume_matches_hand_computed_areas_and_volumes() {
        // Staircase in 2-D against (4, 4): 3x1 + 2x1 + 1x1 = 6 ... by columns:
        // x in [1,2): height 4-3 = 1; [2,3): 4-2 = 2; [3,4): 4-1 = 3 -> 6.
        let p = pts(&[&[1.0, 3.0], &[2.0, 2.0], &[3.0, 1.0]]);
        assert_eq!(hypervolume(&p, &[4.0, 4.0]), 6.0);
        // A dominated point, a duplicate and a point outside the reference add nothing.
        let mut more = p.clone();
        more.extend(pts(&[&[3.0, 3.0], &[2.0, 2.0], &[0.0, 5.0]]));
        assert_eq!(hypervolume(&more, &[4.0, 4.0]), 6.0);
        // 3-D: the cube from the origin to (2,2,2) -> 8.
        assert_eq!(
            hypervolume(&pts(&[&[0.0, 0.0, 0.0]]), &[2.0, 2.0, 2.0]),
            8.0
        );
        // Points (0,1,1) and (1,0,1) against (2,2,2): each alone 2*1*1 = 2; overlap [1,2]x[1,2]x[1,2] = 1 -> union 3.
        let two = pts(&[&[0.0, 1.0, 1.0], &[1.0, 0.0, 1.0]]);
        assert_eq!(hypervolume(&two, &[2.0, 2.0, 2.0]), 3.0);
        // Plus (1,1,0): alone 1*1*2 = 2, overlaps each of the others in 1, all three in 1
        // -> 3 + 2 - 1 - 1 + 1 = 4.
        let three = pts(&[&[0.0, 1.0, 1.0], &[1.0, 0.0, 1.0], &[1.0, 1.0, 0.0]]);
        assert_eq!(hypervolume(&three, &[2.0, 2.0, 2.0]), 4.0);
    }

    #[test]
    fn crowding_distance_follows_optuna() {
        // Sorted by the first objective: 1, 2, 4 (width 3); by the second: 1, 3, 5 (width 4).
        let p = pts(&[&[1.0, 5.0], &[2.0, 3.0], &[4.0, 1.0]]);
        let d = crowding_distances(&p);
        assert!(d[0].is_infinite() && d[2].is_infinite());
        assert!((d[1] - ((4.0 - 1.0) / 3.0 + (5.0 - 1.0) / 4.0)).abs() < 1e-12);
        // An objective where all are equal adds nothing.
        let flat = pts(&[&[1.0, 2.0], &[2.0, 2.0], &[3.0, 2.0]]);
        assert_eq!(crowding_distances(&flat)[1], 1.0);
    }

    #[test]
    fn greedy_subset_keeps_the_points_that_add_most_volume() {
        // Against (10, 10): (1,9) alone 9, (5,5) alone 25, (9,1) alone 9, (4.9,5.1) 24.99.
        let p = pts(&[&[1.0, 9.0], &[5.0, 5.0], &[9.0, 1.0], &[4.9, 5.1]]);
        let r = [10.0, 10.0];
        assert_eq!(greedy_subset(&p, 1, &r), vec![1]);
        // Next: (1,9) adds 4*1 = 4, (9,1) adds 4, (4.9,5.1) adds 0.1*4.9 = 0.49 -> (1,9) by tie.
        assert_eq!(greedy_subset(&p, 2, &r), vec![1, 0]);
        let reference = reference_point(&p);
        assert!(
            reference.iter().all(|r| (r - 9.9).abs() < 1e-9),
            "{reference:?}"
        );
        assert_eq!(reference_point(&pts(&[&[-1.0, 0.0]])), vec![-0.9, 1e-12]);
    }
}
