//! The Tree-structured Parzen Estimator (Bergstra et al. 2011) with Optuna 5's defaults: 10
//! random start-up trials, gamma(n) = min(ceil(0.1 n), 25) with n the trials that have ended,
//! 24 candidates, prior weight 1, magic clip on, endpoints off, kernel widths from the gaps
//! between observations (the prior's centre left out), weights ramping down the oldest trials
//! past 25. With one objective the axes are modelled jointly (multivariate TPE, Falkner et al.
//! 2018's product kernels: a candidate takes every coordinate from one observation's kernel, so
//! a good learning rate for one architecture is not proposed for another); with several, each
//! axis alone; `[sweep] multivariate` overrides either. Pruned and paused trials count as
//! Optuna counts pruned ones: after every finished trial, those that went further first.
//! Running trials count as worse than all of them (Optuna's `constant_liar`, on by default):
//! two slots drawing from the same history would otherwise draw beside each other. Start-up
//! counts only trials that have ended.
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

const CANDIDATES: usize = 24;
const PRIOR_WEIGHT: f64 = 1.0;

/// Draws the next point from the history (in draw order), or at random while fewer than
/// `startup` trials have ended; `multivariate`: one mixture over every axis at once (each
/// kernel an observation's whole point) instead of one mixture per axis.
pub fn draw(
    space: &Space,
    history: &[Observation],
    multivariate: bool,
    startup: usize,
    rng: &mut Rng,
) -> Point {
    let ended = history
        .iter()
        .filter(|o| o.outcome != Outcome::Running)
        .count();
    if ended < startup.max(1) {
        return random::draw(space, rng);
    }
    let multi = history.first().is_some_and(|o| o.losses.len() > 1);
    let (below, above) = if multi {
        split_multi(history)
    } else {
        split(history, ended)
    };
    let axes = space.params.len();
    let groups: Vec<Vec<usize>> = if multivariate {
        vec![(0..axes).collect()]
    } else {
        (0..axes).map(|axis| vec![axis]).collect()
    };
    let mut point = vec![0.0; axes];
    for group in groups {
        let good = Mixture::new(space, &group, &below, multi);
        let bad = Mixture::new(space, &group, &above, false);
        let candidates: Vec<Vec<f64>> = (0..CANDIDATES).map(|_| good.sample(rng)).collect();
        let mut best = &candidates[0];
        let mut best_score = f64::NEG_INFINITY;
        for candidate in &candidates {
            let score = good.log_pdf(candidate) - bad.log_pdf(candidate);
            if score > best_score {
                best = candidate;
                best_score = score;
            }
        }
        for ((&axis, kernels), &x) in group.iter().zip(&good.axes).zip(best) {
            point[axis] = kernels.to_value(x);
        }
    }
    point
}

/// Splits the history into the best `gamma(n)` observations and the rest, each in draw order;
/// `n` counts the `ended` trials only, as Optuna's does (running ones always go above).
fn split(history: &[Observation], ended: usize) -> (Vec<&Observation>, Vec<&Observation>) {
    let n_below = (ended as f64 * 0.1).ceil().min(25.0) as usize;
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

/// A mixture of product kernels: kernel `i` is observation `i`'s (the last one the prior's),
/// one factor per modelled axis, all weighted by `weights`.
struct Mixture {
    weights: Vec<f64>,
    axes: Vec<Kernels>,
}

impl Mixture {
    /// Over the axes `group` of `space`, from `observed`; `flat`: equal weights.
    fn new(space: &Space, group: &[usize], observed: &[&Observation], flat: bool) -> Self {
        let axes = group
            .iter()
            .map(|&axis| {
                let coordinates: Vec<f64> = observed.iter().map(|o| o.point[axis]).collect();
                match &space.params[axis].domain {
                    Domain::Choice(labels) => Kernels::choice(&coordinates, labels.len()),
                    Domain::Drawn(d) => Kernels::Numeric(Parzen::new(&coordinates, Scale::of(d))),
                }
            })
            .collect();
        Mixture {
            weights: mixture_weights(observed.len(), flat),
            axes,
        }
    }

    /// One kernel picked by weight, then each axis drawn from it (modelled coordinates).
    fn sample(&self, rng: &mut Rng) -> Vec<f64> {
        let kernel = pick(rng, &self.weights);
        self.axes.iter().map(|k| k.sample(kernel, rng)).collect()
    }

    fn log_pdf(&self, x: &[f64]) -> f64 {
        let terms: Vec<f64> = (0..self.weights.len())
            .map(|kernel| {
                self.weights[kernel].ln()
                    + self
                        .axes
                        .iter()
                        .zip(x)
                        .map(|(k, &x)| k.log_density(kernel, x))
                        .sum::<f64>()
            })
            .collect();
        log_sum_exp(&terms)
    }
}

/// One axis's factor of every kernel.
enum Kernels {
    /// A categorical axis: one smoothed row of choice probabilities per kernel.
    Choice(Vec<Vec<f64>>),
    /// A numeric axis: truncated normals over the modelled space.
    Numeric(Parzen),
}

impl Kernels {
    fn choice(observed: &[f64], choices: usize) -> Self {
        let base = PRIOR_WEIGHT / (observed.len() + 1) as f64;
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
        Kernels::Choice(rows)
    }

    fn sample(&self, kernel: usize, rng: &mut Rng) -> f64 {
        match self {
            Kernels::Choice(rows) => pick(rng, &rows[kernel]) as f64,
            Kernels::Numeric(parzen) => parzen.sample(kernel, rng),
        }
    }

    fn log_density(&self, kernel: usize, x: f64) -> f64 {
        match self {
            Kernels::Choice(rows) => rows[kernel][x as usize].ln(),
            Kernels::Numeric(parzen) => parzen.log_density(kernel, x),
        }
    }

    /// The parameter value of a modelled coordinate.
    fn to_value(&self, x: f64) -> f64 {
        match self {
            Kernels::Choice(_) => x,
            Kernels::Numeric(parzen) => parzen.scale.to_value(x),
        }
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

/// Truncated normals over the modelled space: one per observation, then the prior's.
struct Parzen {
    scale: Scale,
    mus: Vec<f64>,
    sigmas: Vec<f64>,
    /// Truncation interval (widened by half a step for linear integers).
    low: f64,
    high: f64,
    step: f64,
}

impl Parzen {
    fn new(observed: &[f64], scale: Scale) -> Self {
        let (step, low, high) = (
            scale.step,
            scale.low - scale.step / 2.0,
            scale.high + scale.step / 2.0,
        );
        let mut mus: Vec<f64> = observed.iter().map(|&x| scale.to_internal(x)).collect();
        let n = mus.len();
        let width = high - low;
        // Each kernel's width is the larger gap to its neighbours (the bounds close the ends),
        // except at the two ends, which take their inner gap; the prior takes no part (Optuna
        // 5 left it out).
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&a, &b| mus[a].total_cmp(&mus[b]));
        let mut sorted = vec![low];
        sorted.extend(order.iter().map(|&i| mus[i]));
        sorted.push(high);
        let m = sorted.len();
        let mut sorted_sigmas: Vec<f64> = (1..m - 1)
            .map(|i| (sorted[i] - sorted[i - 1]).max(sorted[i + 1] - sorted[i]))
            .collect();
        if m >= 4 {
            sorted_sigmas[0] = sorted[2] - sorted[1];
            let last = sorted_sigmas.len() - 1;
            sorted_sigmas[last] = sorted[m - 2] - sorted[m - 3];
        }
        let mut sigmas = vec![0.0; n];
        for (rank, &i) in order.iter().enumerate() {
            sigmas[i] = sorted_sigmas[rank];
        }
        // The magic clip: no kernel narrower than the range over the kernels (prior included)
        // plus one.
        let min_sigma = width / (100f64).min(n as f64 + 2.0);
        for s in &mut sigmas {
            *s = s.clamp(min_sigma, width);
        }
        mus.push(0.5 * (low + high));
        sigmas.push(width);
        Parzen {
            scale,
            mus,
            sigmas,
            low,
            high,
            step,
        }
    }

    fn sample(&self, kernel: usize, rng: &mut Rng) -> f64 {
        let (mu, sigma) = (self.mus[kernel], self.sigmas[kernel]);
        let x = truncated_normal(rng, mu, sigma, self.low, self.high);
        if self.step > 0.0 {
            // Linear integers: round to the nearest integer inside the bounds.
            (self.low + (x - self.low).div_euclid(self.step) * self.step + self.step / 2.0)
                .clamp(self.low + self.step / 2.0, self.high - self.step / 2.0)
        } else {
            x
        }
    }

    /// The log density of kernel `kernel` at `x`, truncation included.
    fn log_density(&self, kernel: usize, x: f64) -> f64 {
        let (mu, sigma) = (self.mus[kernel], self.sigmas[kernel]);
        let mass = phi((self.high - mu) / sigma) - phi((self.low - mu) / sigma);
        let density = if self.step > 0.0 {
            let h = self.step / 2.0;
            phi((x + h - mu) / sigma) - phi((x - h - mu) / sigma)
        } else {
            let z = (x - mu) / sigma;
            (-0.5 * z * z).exp() / (sigma * (2.0 * std::f64::consts::PI).sqrt())
        };
        density.max(1e-300).ln() - mass.max(1e-300).ln()
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
    use crate::experiment::{Distribution, DistributionKind, Experiment};

    fn scale(kind: DistributionKind, low: f64, high: f64) -> Scale {
        Scale::of(&Distribution { kind, low, high })
    }

    fn finished(point: Point, loss: f64, draw: u64) -> Observation {
        Observation {
            point,
            outcome: Outcome::Finished { loss },
            losses: vec![loss],
            draw,
        }
    }

    /// Figures from Optuna 5.1's `_ParzenEstimator` on the same observations.
    #[test]
    fn kernel_widths_and_densities_follow_optuna_5() {
        let observed = [0.1, 0.15, 0.3, 0.5, 0.55, 0.62, 0.9, 0.95, 0.2, 0.7];
        let parzen = Parzen::new(&observed, scale(DistributionKind::Uniform, 0.0, 1.0));
        let clip = 1.0 / 12.0;
        let expected = [clip, clip, 0.2, 0.2, clip, clip, 0.2, clip, 0.1, 0.2, 1.0];
        for (got, want) in parzen.sigmas.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{:?}", parzen.sigmas);
        }
        let mixture = Mixture {
            weights: mixture_weights(observed.len(), false),
            axes: vec![Kernels::Numeric(parzen)],
        };
        for (x, want) in [
            (0.05, -0.06058493905759177),
            (0.33, -0.3833029961195935),
            (0.8, -0.3182822184899685),
        ] {
            assert!((mixture.log_pdf(&[x]) - want).abs() < 1e-9, "{x}");
        }
        // Jointly over a choice and a log axis: one kernel per observation across both.
        let lrs = [1e-3, 1e-2, 3e-2, 1e-4];
        let joint = Mixture {
            weights: mixture_weights(4, false),
            axes: vec![
                Kernels::choice(&[0.0, 1.0, 1.0, 2.0], 3),
                Kernels::Numeric(Parzen::new(
                    &lrs,
                    scale(DistributionKind::LogUniform, 1e-4, 1e-1),
                )),
            ],
        };
        for (choice, lr, want) in [
            (1.0, 0.01f64, -2.468217182278618),
            (0.0, 0.05, -3.494451919860854),
        ] {
            let got = joint.log_pdf(&[choice, lr.ln()]);
            assert!((got - want).abs() < 1e-9, "{got} against {want}");
        }
    }

    #[test]
    fn the_good_group_counts_only_ended_trials() {
        let mut history: Vec<Observation> =
            (0..10).map(|i| finished(vec![0.0], i as f64, i)).collect();
        history.extend((10..30).map(|i| Observation {
            point: vec![0.0],
            outcome: Outcome::Running,
            losses: vec![f64::NAN],
            draw: i,
        }));
        let (below, above) = split(&history, 10);
        assert_eq!(below.len(), 1, "ceil(10 / 10), not ceil(30 / 10)");
        assert_eq!(below[0].draw, 0);
        assert_eq!(above.len(), 29);
    }

    /// Good trials pair the MLP with a low learning rate and the CNN with a high one; bad ones
    /// the other way round. Each axis alone then looks flat, so only the joint model keeps
    /// proposing the good pairs.
    #[test]
    fn the_joint_model_keeps_good_pairs_together() {
        let space = space_of("arch = [\"mlp\", \"cnn\"]\nlr = { log_uniform = [1e-4, 1e-1] }\n");
        let mut history = Vec::new();
        for i in 0..40u64 {
            let mlp = i % 2 == 0;
            let low = (i / 2) % 2 == 0;
            let good = mlp == low;
            let lr: f64 = if low { 2e-4 } else { 3e-2 } * (1.0 + 0.05 * (i % 5) as f64);
            let point = vec![if mlp { 0.0 } else { 1.0 }, lr];
            history.push(finished(
                point,
                if good { -0.9 } else { -0.5 } - 1e-3 * i as f64,
                i,
            ));
        }
        let good_pairs = |multivariate: bool| {
            (0..200)
                .filter(|&draw| {
                    let point = draw_point(&space, &history, multivariate, draw);
                    (point[0] == 0.0) == (point[1] < 3e-3)
                })
                .count()
        };
        let (joint, alone) = (good_pairs(true), good_pairs(false));
        assert!(joint >= 170, "joint model: {joint} of 200 good pairs");
        assert!(alone <= 130, "axes alone: {alone} of 200 good pairs");
    }

    /// The space of a TPE search whose `[grid]` is `grid`, loaded as an experiment file is.
    fn space_of(grid: &str) -> Space {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("space.toml");
        std::fs::write(
            &path,
            format!("[sweep]\nsampler = \"tpe\"\ntrials = 40\n[grid]\n{grid}"),
        )
        .unwrap();
        Space::new(&Experiment::load(&path, &[]).unwrap().spec)
    }

    fn draw_point(space: &Space, history: &[Observation], multivariate: bool, seed: u64) -> Point {
        draw(space, history, multivariate, 10, &mut Rng::new(seed))
    }

    /// Start-up ends once `startup` trials have ended, running ones left out: until then a draw
    /// is the random sampler's, after it the model's (every good trial at lr 1e-3 keeps the
    /// model's draws near it).
    #[test]
    fn start_up_counts_ended_trials_up_to_its_setting() {
        let space = space_of("lr = { log_uniform = [1e-4, 1e-1] }\n");
        let mut history: Vec<Observation> = (0..4)
            .map(|i| finished(vec![if i == 0 { 1e-3 } else { 5e-2 }], i as f64, i))
            .collect();
        history.push(Observation {
            point: vec![1e-4],
            outcome: Outcome::Running,
            losses: vec![f64::NAN],
            draw: 4,
        });
        let near = |startup: usize| {
            (0..100u64)
                .filter(|&seed| {
                    let point = draw(&space, &history, true, startup, &mut Rng::new(seed));
                    let random = random::draw(&space, &mut Rng::new(seed));
                    assert_eq!(point == random, startup > 4, "startup {startup}");
                    (point[0].ln() - 1e-3f64.ln()).abs() < 1.0
                })
                .count()
        };
        let (modelled, at_random) = (near(4), near(5));
        assert!(
            modelled >= 60,
            "{modelled} of 100 model draws near the good trial"
        );
        assert!(at_random <= 40, "{at_random} of 100 random draws near it");
    }

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
