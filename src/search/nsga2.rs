//! NSGA-II (Deb et al. 2002) with Optuna's `NSGAIISampler` defaults: generations of
//! `population` draws (draw d belongs to generation d / population; the first is drawn at
//! random); each later generation breeds from an elite of `population` trials, chosen from the
//! previous generation's finished trials and its own parents by non-dominated sorting, the
//! last front cut by crowding distance. A child: with probability 0.9, a uniform crossover of
//! two parents, each picked by a binary tournament on dominance (otherwise a copy of one parent
//! at random); then each parameter, with probability 1 / parameters, redrawn at random (Optuna's
//! default mutation). Only finished trials breed, as in Optuna; no constraints.
//!
//! Optuna numbers a generation by the trials that finished in it when a trial starts; here the
//! draw number alone decides, so that every process sharing a sweep agrees without storing it.

use super::space::{Point, Space};
use super::{Observation, Outcome, pareto, random};
use crate::rng::Rng;

const CROSSOVER_PROBABILITY: f64 = 0.9;
const SWAPPING_PROBABILITY: f64 = 0.5;

/// Draws the point of draw number `draw` from the history (in draw order).
/// `borrowed` (final trials of earlier sweeps) are the parents of the first generation.
pub fn draw(
    space: &Space,
    history: &[Observation],
    borrowed: &[Observation],
    draw: u64,
    population: usize,
    rng: &mut Rng,
) -> Point {
    let generation = draw as usize / population.max(1);
    let parents = parents(history, borrowed, generation, population);
    if parents.is_empty() {
        return random::draw(space, rng);
    }
    let mut child = if parents.len() >= 2 && rng.next_f64() < CROSSOVER_PROBABILITY {
        let first = tournament(&parents, rng);
        let rest: Vec<&Observation> = parents
            .iter()
            .copied()
            .filter(|p| !std::ptr::eq(*p, first))
            .collect();
        let second = tournament(&rest, rng);
        first
            .point
            .iter()
            .zip(&second.point)
            .map(|(&a, &b)| {
                if rng.next_f64() < SWAPPING_PROBABILITY {
                    b
                } else {
                    a
                }
            })
            .collect()
    } else {
        parents[rng.below(parents.len())].point.clone()
    };
    let mutation = 1.0 / space.params.len().max(1) as f64;
    for (value, param) in child.iter_mut().zip(&space.params) {
        if rng.next_f64() < mutation {
            *value = random::draw_one(param, rng);
        }
    }
    child
}

/// The parents of `generation`: for the first, the elite of the borrowed trials (none without
/// them); else the elite of the previous generation's finished trials together with that
/// generation's own parents.
fn parents<'a>(
    history: &'a [Observation],
    borrowed: &'a [Observation],
    generation: usize,
    population: usize,
) -> Vec<&'a Observation> {
    let mut parents: Vec<&Observation> = elite(
        borrowed
            .iter()
            .filter(|o| matches!(o.outcome, Outcome::Finished { .. }))
            .collect(),
        population,
    );
    for previous in 0..generation {
        let members = history.iter().filter(|o| {
            matches!(o.outcome, Outcome::Finished { .. })
                && o.draw as usize / population.max(1) == previous
        });
        let mut pool: Vec<&Observation> = members.collect();
        pool.extend(parents);
        parents = elite(pool, population);
    }
    parents
}

/// `size` of `pool`: whole fronts while they fit, then the next front by crowding distance,
/// widest first.
fn elite(pool: Vec<&Observation>, size: usize) -> Vec<&Observation> {
    let losses: Vec<Vec<f64>> = pool.iter().map(|o| o.losses.clone()).collect();
    let ranks = pareto::non_domination_ranks(&losses);
    let mut chosen: Vec<&Observation> = Vec::new();
    for front in 0.. {
        let members: Vec<usize> = (0..pool.len()).filter(|&i| ranks[i] == front).collect();
        if members.is_empty() || chosen.len() >= size {
            break;
        }
        if chosen.len() + members.len() <= size {
            chosen.extend(members.iter().map(|&i| pool[i]));
        } else {
            let front_losses: Vec<Vec<f64>> = members.iter().map(|&i| losses[i].clone()).collect();
            let crowding = pareto::crowding_distances(&front_losses);
            let mut order: Vec<usize> = (0..members.len()).collect();
            order.sort_by(|&a, &b| crowding[b].total_cmp(&crowding[a]));
            let need = size - chosen.len();
            chosen.extend(order[..need].iter().map(|&k| pool[members[k]]));
        }
    }
    chosen
}

/// Binary tournament: two picked at random (perhaps the same), the first if it dominates the
/// second, else the second.
fn tournament<'a>(candidates: &[&'a Observation], rng: &mut Rng) -> &'a Observation {
    let a = candidates[rng.below(candidates.len())];
    let b = candidates[rng.below(candidates.len())];
    if pareto::dominates(&a.losses, &b.losses) {
        a
    } else {
        b
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::experiment::Experiment;
    use crate::search::space::Domain;

    fn space() -> Space {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mo.toml");
        std::fs::write(
            &path,
            "[sweep]\nsampler = \"nsga2\"\ntrials = 40\nobjectives = [\"val_acc\", \"params\"]\n\
             population = 4\n[grid]\narch = [\"mlp\", \"cnn\", \"lenet5\"]\n\
             lr = { log_uniform = [1e-4, 1e-1] }\nbatch_size = { int_uniform = [16, 128] }\n\
             dropout = { uniform = [0.0, 0.5] }\n",
        )
        .unwrap();
        Space::new(&Experiment::load(&path, &[]).unwrap().spec)
    }

    fn observation(point: Point, draw: u64, losses: [f64; 2]) -> Observation {
        Observation {
            point,
            outcome: Outcome::Finished { loss: losses[0] },
            losses: losses.to_vec(),
            draw,
        }
    }

    #[test]
    fn children_stay_inside_the_bounds_and_on_valid_choices() {
        let space = space();
        let mut rng = Rng::for_draw(7, 0);
        let history: Vec<Observation> = (0..8)
            .map(|d| {
                let point = random::draw(&space, &mut rng);
                observation(point, d, [-(d as f64) / 10.0, (8 - d) as f64])
            })
            .collect();
        for d in 8..400 {
            let child = draw(&space, &history, &[], d, 4, &mut Rng::for_draw(7, d));
            for (value, param) in child.iter().zip(&space.params) {
                match &param.domain {
                    Domain::Choice(labels) => {
                        assert!(value.fract() == 0.0 && (*value as usize) < labels.len())
                    }
                    Domain::Drawn(d) => {
                        assert!(*value >= d.low && *value <= d.high, "{value} outside {d:?}");
                        if d.kind.is_int() {
                            assert_eq!(value.fract(), 0.0);
                        }
                    }
                }
            }
        }
        // The same seed and draw give the same child.
        let again = |d| draw(&space, &history, &[], d, 4, &mut Rng::for_draw(7, d));
        assert_eq!(again(9), again(9));
    }

    #[test]
    fn the_elite_keeps_whole_fronts_then_the_widest_spread() {
        let at = |x: f64| vec![x, 0.0, 0.0, 0.0];
        // Front 0: (0,4), (1,2), (2,1), (4,0); front 1: (3,3).
        let losses = [[0.0, 4.0], [1.0, 2.0], [2.0, 1.0], [4.0, 0.0], [3.0, 3.0]];
        let pool: Vec<Observation> = losses
            .iter()
            .enumerate()
            .map(|(i, &l)| observation(at(i as f64), i as u64, l))
            .collect();
        let refs: Vec<&Observation> = pool.iter().collect();
        let ids =
            |chosen: Vec<&Observation>| -> Vec<f64> { chosen.iter().map(|o| o.point[0]).collect() };
        assert_eq!(ids(elite(refs.clone(), 5)), vec![0.0, 1.0, 2.0, 3.0, 4.0]);
        // Four of front 0 fit whole.
        assert_eq!(ids(elite(refs.clone(), 4)), vec![0.0, 1.0, 2.0, 3.0]);
        // Two of front 0: the extremes, whose crowding distance is infinite.
        let two = ids(elite(refs.clone(), 2));
        assert!(two.contains(&0.0) && two.contains(&3.0), "{two:?}");
        // Generation 1 breeds from generation 0's elite; generation 0 has no parents.
        assert!(parents(&pool, &[], 0, 4).is_empty());
        assert_eq!(parents(&pool, &[], 1, 4).len(), 4);
        // Borrowed trials of an earlier sweep are the first generation's parents.
        assert_eq!(ids(parents(&[], &pool, 0, 2)).len(), 2);
    }
}
