//! The Tree-structured Parzen Estimator (Bergstra et al. 2011) with Optuna's defaults: 10
//! random start-up trials, gamma(n) = min(ceil(0.1 n), 25), 24 candidates, prior weight 1,
//! magic clip on, endpoints off, weights ramping down the oldest trials past 25, each axis
//! modelled independently (Optuna's default, univariate). Pruned and paused trials count as
//! Optuna counts pruned ones: after every finished trial, those that went further first.
//! Running trials count as worse than all of them, as with Optuna's `constant_liar=True`, which
//! its documentation advises for parallel workers: two slots drawing from the same history
//! would otherwise draw beside each other. Start-up counts only trials that have ended.
//!
//!
//! With several objectives, Optuna's multi-objective rule: the good group is gamma(n) =
//! ceil(0.1 n) observations (no cap), filled front by front of the non-dominated sorting of the
//! finished trials, the front that does not fit whole cut by greedy hypervolume subset
//! selection; then stopped trials, those that went further first, then by their front among
//! themselves. Every good observation weighs the same (Optuna 4+ dropped the hypervolume
//! weights), n counts only ended trials, and the bad group is modelled as above.
//!
//! Written here rather than taken from the `tpe` crate, whose estimator differs from Optuna's
//! (no prior component, no magic clip, no handling of stopped trials), because matching Optuna
//! is what makes the two comparable.

use super::space::{Domain, Point, Space};
use super::{Observation, Outcome, pareto, random};
use crate::rng::Rng;

const STARTUP_TRIALS: usize = 10;
const CANDIDATES: usize = 24;
const PRIOR_WEIGHT: f64 = 1.0;

/// Draws the next point from the history (in draw order), or at random during start-up.
pub fn draw(space: &Space, history: &[Observation], rng: &mut Rng) -> Point {
    let ended = history
        .iter()
        .filter(|o| o.outcome != Outcome::Running)
        .count();
    if ended < STARTUP_TRIALS {
        return random::draw(space, rng);
    }
    let multi = history.first().is_some_and(|o| o.losses.len() > 1);
    let (below, above) = if multi {
        split_multi(history)
    } else {
        split(history)
    };
    space
        .params
        .iter()
        .enumerate()
        .map(|(axis, param)| {
            let coordinates =
                |set: &[&Observation]| set.iter().map(|o| o.point[axis]).collect::<Vec<_>>();
            let (good, bad) = (coordinates(&below), coordinates(&above));
            match &param.domain {
                Domain::Choice(labels) => {
                    let good = Categorical::new(&good, labels.len(), multi);
                    let bad = Categorical::new(&bad, labels.len(), false);
                    best_candidate(
                        rng,
                        |rng| good.sample(rng),
                        |x| good.log_pdf(x) - bad.log_pdf(x),
                    )
                }
                Domain::Drawn(d) => {
                    let scale = Scale::of(d);
                    let good = Parzen::new(&good, &scale, multi);
                    let bad = Parzen::new(&bad, &scale, false);
                    let internal = best_candidate(
                        rng,
                        |rng| good.sample(rng),
                        |x| good.log_pdf(x) - bad.log_pdf(x),
                    );
                    scale.to_value(internal)
                }
            }
        })
        .collect()
}

/// Splits the history into the best `gamma(n)` observations and the rest, each in draw order.
fn split(history: &[Observation]) -> (Vec<&Observation>, Vec<&Observation>) {
    let n_below = (history.len() as f64 * 0.1).ceil().min(25.0) as usize;
    let mut ranked: Vec<(usize, &Observation)> = history.iter().enumerate().collect();
    // Finished trials by loss, then stopped ones by how far they went, then by their loss there.
    ranked.sort_by(|(_, a), (_, b)| rank_key(a).partial_cmp(&rank_key(b)).unwrap());
    let mut below: Vec<(usize, &Observation)> = ranked[..n_below].to_vec();
    let mut above: Vec<(usize, &Observation)> = ranked[n_below..].to_vec();
    below.sort_by_key(|(i, _)| *i);
    above.sort_by_key(|(i, _)| *i);
    (
        below.into_iter().map(|(_, o)| o).collect(),
        above.into_iter().map(|(_, o)| o).collect(),
    )
}

/// The multi-objective split (see the module's notes), each group in draw order.
fn split_multi(history: &[Observation]) -> (Vec<&Observation>, Vec<&Observation>) {
    let ended = history
        .iter()
        .filter(|o| o.outcome != Outcome::Running)
        .count();
    let mut n_below = (ended as f64 * 0.1).ceil() as usize;
    let finished: Vec<usize> = (0..history.len())
        .filter(|&i| matches!(history[i].outcome, Outcome::Finished { .. }))
        .collect();
    let losses = |set: &[usize]| -> Vec<Vec<f64>> {
        set.iter().map(|&i| history[i].losses.clone()).collect()
    };
    let mut below: Vec<usize> =
        pareto::best_subset(&losses(&finished), n_below.min(finished.len()))
            .into_iter()
            .map(|k| finished[k])
            .collect();
    n_below -= below.len();
    let stopped: Vec<usize> = (0..history.len())
        .filter(|&i| matches!(history[i].outcome, Outcome::Stopped { .. }))
        .collect();
    let fronts = pareto::non_domination_ranks(&losses(&stopped));
    let mut ranked: Vec<(usize, usize)> = stopped.iter().copied().zip(fronts).collect();
    ranked.sort_by_key(|&(i, front)| {
        let Outcome::Stopped { epoch, .. } = history[i].outcome else {
            unreachable!("only stopped trials here")
        };
        (std::cmp::Reverse(epoch), front, i)
    });
    below.extend(ranked.iter().take(n_below).map(|&(i, _)| i));
    below.sort_unstable();
    let above = (0..history.len()).filter(|i| below.binary_search(i).is_err());
    (
        below.iter().map(|&i| &history[i]).collect(),
        above.map(|i| &history[i]).collect(),
    )
}

fn rank_key(o: &Observation) -> (u8, f64, f64) {
    let loss = |x: f64| if x.is_nan() { f64::INFINITY } else { x };
    match o.outcome {
        Outcome::Finished { loss: l } => (0, 0.0, loss(l)),
        Outcome::Stopped { epoch, loss: l } => (1, -(epoch as f64), loss(l)),
        Outcome::Running => (2, 0.0, f64::INFINITY),
    }
}

/// Optuna's default weights: equal up to 25 observations, then the oldest ramp down.
fn weights(n: usize) -> Vec<f64> {
    if n < 25 {
        return vec![1.0; n];
    }
    let ramp = n - 25;
    let mut w: Vec<f64> = (0..ramp)
        .map(|i| {
            let start = 1.0 / n as f64;
            if ramp == 1 {
                start
            } else {
                start + (1.0 - start) * i as f64 / (ramp - 1) as f64
            }
        })
        .collect();
    w.extend(std::iter::repeat_n(1.0, 25));
    w
}

/// Mixture weights for `n` observations plus the prior, summing to 1; `flat`: every
/// observation weighs the same (the good group of a multi-objective search).
fn mixture_weights(n: usize, flat: bool) -> Vec<f64> {
    let mut w = if flat { vec![1.0; n] } else { weights(n) };
    w.push(PRIOR_WEIGHT);
    let total: f64 = w.iter().sum();
    w.iter().map(|x| x / total).collect()
}

fn best_candidate(
    rng: &mut Rng,
    mut sample: impl FnMut(&mut Rng) -> f64,
    score: impl Fn(f64) -> f64,
) -> f64 {
    let candidates: Vec<f64> = (0..CANDIDATES).map(|_| sample(rng)).collect();
    let mut best = candidates[0];
    let mut best_score = f64::NEG_INFINITY;
    for x in candidates {
        let s = score(x);
        if s > best_score {
            best = x;
            best_score = s;
        }
    }
    best
}

fn pick(rng: &mut Rng, weights: &[f64]) -> usize {
    let u = rng.next_f64();
    let mut total = 0.0;
    for (i, w) in weights.iter().enumerate() {
        total += w;
        if u < total {
            return i;
        }
    }
    weights.len() - 1
}

/// A categorical axis: one smoothed row per observation plus the uniform prior.
struct Categorical {
    weights: Vec<f64>,
    rows: Vec<Vec<f64>>,
}

impl Categorical {
    fn new(observed: &[f64], choices: usize, flat: bool) -> Self {
        let n = observed.len();
        let base = PRIOR_WEIGHT / (n + 1) as f64;
        let mut rows: Vec<Vec<f64>> = observed
            .iter()
            .map(|&c| {
                let mut row = vec![base; choices];
                row[c as usize] += 1.0;
                row
            })
            .collect();
        rows.push(vec![base; choices]);
        for row in &mut rows {
            let total: f64 = row.iter().sum();
            row.iter_mut().for_each(|x| *x /= total);
        }
        Categorical {
            weights: mixture_weights(n, flat),
            rows,
        }
    }

    fn sample(&self, rng: &mut Rng) -> f64 {
        let row = &self.rows[pick(rng, &self.weights)];
        pick(rng, row) as f64
    }

    fn log_pdf(&self, choice: f64) -> f64 {
        let c = choice as usize;
        self.weights
            .iter()
            .zip(&self.rows)
            .map(|(w, row)| w * row[c])
            .sum::<f64>()
            .ln()
    }
}

/// Where a numeric axis is modelled: its log for log distributions, with integers widened by
/// half a unit on each side (Optuna's treatment).
struct Scale {
    low: f64,
    high: f64,
    log: bool,
    /// Integer step in the modelled space (linear integers only).
    step: f64,
    int: bool,
    bounds: (f64, f64),
}

impl Scale {
    fn of(d: &crate::experiment::Distribution) -> Self {
        let (log, int) = (d.kind.is_log(), d.kind.is_int());
        let (low, high, step) = match (int, log) {
            (false, false) => (d.low, d.high, 0.0),
            (false, true) => (d.low.ln(), d.high.ln(), 0.0),
            (true, false) => (d.low, d.high, 1.0),
            (true, true) => ((d.low - 0.5).ln(), (d.high + 0.5).ln(), 0.0),
        };
        Scale {
            low,
            high,
            log,
            step,
            int,
            bounds: (d.low, d.high),
        }
    }

    fn to_internal(&self, value: f64) -> f64 {
        if self.log { value.ln() } else { value }
    }

    fn to_value(&self, internal: f64) -> f64 {
        let x = if self.log { internal.exp() } else { internal };
        if self.int {
            x.round().clamp(self.bounds.0, self.bounds.1)
        } else {
            x.clamp(self.bounds.0, self.bounds.1)
        }
    }
}

/// A mixture of truncated normals over the modelled space: one per observation and the prior.
struct Parzen {
    weights: Vec<f64>,
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    /// Truncation interval (widened by half a step for linear integers).
    low: f64,
    high: f64,
    step: f64,
}

impl Parzen {
    fn new(observed: &[f64], scale: &Scale, flat: bool) -> Self {
        let (low, high, step) = (scale.low, scale.high, scale.step);
        let mus: Vec<f64> = observed.iter().map(|&x| scale.to_internal(x)).collect();
        let n = mus.len();
        let prior_mu = 0.5 * (low + high);
        let width = high - low + step;
        // Each kernel's width is the larger gap to its neighbours (the prior counts as one;
        // the bounds close the ends), except at the two ends, which take their inner gap.
        let mut order: Vec<usize> = (0..=n).collect();
        let with_prior: Vec<f64> = mus.iter().copied().chain([prior_mu]).collect();
        order.sort_by(|&a, &b| with_prior[a].total_cmp(&with_prior[b]));
        let mut sorted = vec![low - step / 2.0];
        sorted.extend(order.iter().map(|&i| with_prior[i]));
        sorted.push(high + step / 2.0);
        let m = sorted.len();
        let mut sorted_sigmas: Vec<f64> = (1..m - 1)
            .map(|i| (sorted[i] - sorted[i - 1]).max(sorted[i + 1] - sorted[i]))
            .collect();
        if m >= 4 {
            sorted_sigmas[0] = sorted[2] - sorted[1];
            let last = sorted_sigmas.len() - 1;
            sorted_sigmas[last] = sorted[m - 2] - sorted[m - 3];
        }
        let mut sigmas = vec![0.0; n + 1];
        for (rank, &i) in order.iter().enumerate() {
            sigmas[i] = sorted_sigmas[rank];
        }
        sigmas.truncate(n);
        let min_sigma = width / (100f64).min(1.0 + n as f64 + 1.0);
        for s in &mut sigmas {
            *s = s.clamp(min_sigma, width);
        }
        let mut mus = mus;
        mus.push(prior_mu);
        sigmas.push(width);
        Parzen {
            weights: mixture_weights(n, flat),
            mus,
            sigmas,
            low: low - step / 2.0,
            high: high + step / 2.0,
            step,
        }
    }

    fn sample(&self, rng: &mut Rng) -> f64 {
        let i = pick(rng, &self.weights);
        let x = truncated_normal(rng, self.mus[i], self.sigmas[i], self.low, self.high);
        if self.step > 0.0 {
            // Linear integers: round to the nearest integer inside the bounds.
            (self.low + (x - self.low).div_euclid(self.step) * self.step + self.step / 2.0)
                .clamp(self.low + self.step / 2.0, self.high - self.step / 2.0)
        } else {
            x
        }
    }

    fn log_pdf(&self, x: f64) -> f64 {
        let terms: Vec<f64> = (0..self.mus.len())
            .map(|i| {
                let (mu, sigma) = (self.mus[i], self.sigmas[i]);
                let mass = phi((self.high - mu) / sigma) - phi((self.low - mu) / sigma);
                let density = if self.step > 0.0 {
                    let h = self.step / 2.0;
                    (phi((x + h - mu) / sigma) - phi((x - h - mu) / sigma)).max(1e-300)
                } else {
                    let z = (x - mu) / sigma;
                    (-0.5 * z * z).exp() / (sigma * (2.0 * std::f64::consts::PI).sqrt())
                };
                self.weights[i].ln() + density.max(1e-300).ln() - mass.max(1e-300).ln()
            })
            .collect();
        log_sum_exp(&terms)
    }
}

fn log_sum_exp(terms: &[f64]) -> f64 {
    let top = terms.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    if top == f64::NEG_INFINITY {
        return top;
    }
    top + terms.iter().map(|t| (t - top).exp()).sum::<f64>().ln()
}

/// The standard normal distribution function.
fn phi(z: f64) -> f64 {
    0.5 * libm::erfc(-z / std::f64::consts::SQRT_2)
}

/// The standard normal quantile (Acklam's approximation refined by one Halley step).
fn phi_inverse(p: f64) -> f64 {
    let p = p.clamp(1e-300, 1.0 - 1e-16);
    const A: [f64; 6] = [
        -3.969683028665376e1,
        2.209460984245205e2,
        -2.759285104469687e2,
        1.38357751867269e2,
        -3.066479806614716e1,
        2.506628277459239,
    ];
    const B: [f64; 5] = [
        -5.447609879822406e1,
        1.615858368580409e2,
        -1.556989798598866e2,
        6.680131188771972e1,
        -1.328068155288572e1,
    ];
    const C: [f64; 6] = [
        -7.784894002430293e-3,
        -3.223964580411365e-1,
        -2.400758277161838,
        -2.549732539343734,
        4.374664141464968,
        2.938163982698783,
    ];
    const D: [f64; 4] = [
        7.784695709041462e-3,
        3.224671290700398e-1,
        2.445134137142996,
        3.754408661907416,
    ];
    let tail = |q: f64| {
        (((((C[0] * q + C[1]) * q + C[2]) * q + C[3]) * q + C[4]) * q + C[5])
            / ((((D[0] * q + D[1]) * q + D[2]) * q + D[3]) * q + 1.0)
    };
    let x = if p < 0.02425 {
        tail((-2.0 * p.ln()).sqrt())
    } else if p > 1.0 - 0.02425 {
        -tail((-2.0 * (1.0 - p).ln()).sqrt())
    } else {
        let q = p - 0.5;
        let r = q * q;
        (((((A[0] * r + A[1]) * r + A[2]) * r + A[3]) * r + A[4]) * r + A[5]) * q
            / (((((B[0] * r + B[1]) * r + B[2]) * r + B[3]) * r + B[4]) * r + 1.0)
    };
    let e = phi(x) - p;
    let u = e * (2.0 * std::f64::consts::PI).sqrt() * (x * x / 2.0).exp();
    x - u / (1.0 + x * u / 2.0)
}

/// A draw from N(mu, sigma) restricted to [low, high], by inverting the distribution function
/// (on the mirrored side when the interval lies in the upper tail, where it keeps precision).
fn truncated_normal(rng: &mut Rng, mu: f64, sigma: f64, low: f64, high: f64) -> f64 {
    let (a, b) = ((low - mu) / sigma, (high - mu) / sigma);
    let u = rng.next_f64();
    let z = if a > 0.0 {
        let (pa, pb) = (phi(-b), phi(-a));
        -phi_inverse(pa + u * (pb - pa))
    } else {
        let (pa, pb) = (phi(a), phi(b));
        phi_inverse(pa + u * (pb - pa))
    };
    (mu + sigma * z).clamp(low, high)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_quantile_inverts_the_distribution_function() {
        for p in [1e-10, 0.001, 0.02, 0.3, 0.5, 0.77, 0.999] {
            assert!((phi(phi_inverse(p)) - p).abs() < 1e-9 * p.max(1e-3), "{p}");
        }
    }

    #[test]
    fn weights_follow_optuna() {
        assert_eq!(weights(3), vec![1.0; 3]);
        let w = weights(30);
        assert_eq!(w.len(), 30);
        assert!((w[0] - 1.0 / 30.0).abs() < 1e-12);
        assert_eq!(w[4], 1.0);
        assert_eq!(&w[5..], &[1.0; 25]);
    }

    #[test]
    fn truncated_draws_stay_inside_and_follow_the_mean() {
        let mut rng = Rng::new(1);
        let draws: Vec<f64> = (0..4000)
            .map(|_| truncated_normal(&mut rng, 0.2, 0.1, 0.0, 1.0))
            .collect();
        assert!(draws.iter().all(|x| (0.0..=1.0).contains(x)));
        let mean = draws.iter().sum::<f64>() / draws.len() as f64;
        assert!((mean - 0.2055).abs() < 0.01, "{mean}");
        // Far in the upper tail the mirrored inversion still lands inside.
        let x = truncated_normal(&mut rng, -50.0, 1.0, 0.0, 1.0);
        assert!((0.0..=1.0).contains(&x));
    }
}
