//! Random search: every searched axis drawn independently, from a generator seeded by the
//! sweep seed and the draw number.

use super::space::{Domain, Param, Point, Space};
use crate::rng::Rng;

/// A point drawn uniformly (in the logarithm for log distributions).
pub fn draw(space: &Space, rng: &mut Rng) -> Point {
    space.params.iter().map(|p| draw_one(p, rng)).collect()
}

/// One parameter's value drawn uniformly (in the logarithm for log distributions).
pub fn draw_one(param: &Param, rng: &mut Rng) -> f64 {
    match &param.domain {
        Domain::Choice(labels) => rng.below(labels.len()) as f64,
        Domain::Drawn(d) => {
            let (low, high) = (d.low, d.high);
            let u = rng.next_f64();
            match (d.kind.is_int(), d.kind.is_log()) {
                (false, false) => low + u * (high - low),
                (false, true) => (low.ln() + u * (high.ln() - low.ln())).exp(),
                (true, false) => low + rng.below((high - low) as usize + 1) as f64,
                // Even in the logarithm over the integers' half-unit cells, as Optuna does.
                (true, true) => {
                    let (a, b) = ((low - 0.5).ln(), (high + 0.5).ln());
                    (a + u * (b - a)).exp().round().clamp(low, high)
                }
            }
        }
    }
}
