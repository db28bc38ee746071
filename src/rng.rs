//! A small seeded generator (SplitMix64). Every random draw of a trial (split, shuffle, dropout
//! masks) comes from streams derived from the trial seed, never from a global generator, so a trial
//! gives the same numbers however many others run beside it.

/// Seeded pseudo-random generator; not for cryptography.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rng {
    state: u64,
}

/// Named streams derived from one trial seed.
#[derive(Debug, Clone, Copy)]
pub enum Stream {
    /// Train/validation split.
    Split = 1,
    /// Per-epoch shuffling.
    Shuffle = 2,
    /// Dropout masks.
    Dropout = 3,
    /// Weight initialisation.
    Init = 4,
    /// A searching sampler's draws (mixed with the draw number).
    Search = 5,
    /// Flips and crops of training images.
    Augment = 6,
}

impl Rng {
    /// A generator for one stream of a seed.
    pub fn for_stream(seed: u64, stream: Stream) -> Self {
        let mut base = Rng::new(seed);
        let offset = base.next_u64();
        Rng::new(offset ^ (stream as u64).wrapping_mul(0xD6E8_FEB8_6659_FD93))
    }

    /// A generator starting from `seed`.
    pub fn new(seed: u64) -> Self {
        Rng { state: seed }
    }

    /// The generator's whole state, for checkpoints.
    pub fn state(&self) -> u64 {
        self.state
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(GOLDEN);
        mix(self.state)
    }

    /// Uniform in [0, 1).
    pub fn next_f32(&mut self) -> f32 {
        unit_f32(self.next_u64())
    }

    /// Fills `mask` with dropout factors: each is `scale` where [`Rng::next_f32`] would have drawn
    /// below `keep`, else 0, drawing exactly what as many `next_f32` calls would. Why not those
    /// calls: the choice is a select, not a branch that a random draw mispredicts one time in
    /// five (`perf` put that at 6% of an MLP's epoch), and the `k`th draw is computed from the
    /// state and `k` alone, so that the loop runs eight draws at a time where the processor has
    /// AVX-512's 64-bit multiplies (drawing the masks was 5% of the MLP's training thread).
    pub fn fill_dropout_mask(&mut self, mask: &mut [f32], keep: f32, scale: f32) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
        {
            // SAFETY: the processor has AVX-512 F and DQ.
            unsafe { dropout_mask_avx512(self.state, mask, keep, scale) };
        } else {
            dropout_mask(self.state, mask, keep, scale);
        }
        #[cfg(not(target_arch = "x86_64"))]
        dropout_mask(self.state, mask, keep, scale);
        self.state = self
            .state
            .wrapping_add(GOLDEN.wrapping_mul(mask.len() as u64));
    }

    /// The generator of a sampler's draw number `draw` under `seed`: the same file and seed give
    /// the same sequence of configurations, whichever process makes each draw.
    pub fn for_draw(seed: u64, draw: u64) -> Self {
        let mut base = Rng::for_stream(seed, Stream::Search);
        Rng::new(base.next_u64() ^ draw.wrapping_mul(0x9E37_79B9_7F4A_7C15))
    }

    /// Uniform in [0, 1), with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, bound).
    pub fn below(&mut self, bound: usize) -> usize {
        ((self.next_u64() as u128 * bound as u128) >> 64) as usize
    }

    /// Fisher-Yates shuffle.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

/// The step between successive states.
const GOLDEN: u64 = 0x9E37_79B9_7F4A_7C15;

/// A uniform draw in [0, 1) from 64 random bits: their top 24. Those are below 2^24, so their
/// conversion to `f32` is exact, and taken from 32 bits it vectorises.
#[inline(always)]
fn unit_f32(bits: u64) -> f32 {
    (bits >> 40) as u32 as f32 / (1u32 << 24) as f32
}

/// [`Rng::fill_dropout_mask`] from state `start`: draw `k` (from 0) is [`Rng::next_f32`] after
/// `k + 1` steps.
#[inline(always)]
fn dropout_mask(start: u64, mask: &mut [f32], keep: f32, scale: f32) {
    for (k, m) in mask.iter_mut().enumerate() {
        let state = start.wrapping_add(GOLDEN.wrapping_mul(k as u64 + 1));
        *m = if unit_f32(mix(state)) < keep {
            scale
        } else {
            0.0
        };
    }
}

/// [`dropout_mask`] compiled for AVX-512 (F and DQ: 64-bit multiplies on eight lanes).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq")]
unsafe fn dropout_mask_avx512(start: u64, mask: &mut [f32], keep: f32, scale: f32) {
    dropout_mask(start, mask, keep, scale)
}

/// SplitMix64's output function of a state.
#[inline(always)]
fn mix(state: u64) -> u64 {
    let mut z = state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn streams_are_reproducible_and_distinct() {
        let mut a = Rng::for_stream(7, Stream::Split);
        let mut b = Rng::for_stream(7, Stream::Split);
        let mut c = Rng::for_stream(7, Stream::Shuffle);
        let xs: Vec<u64> = (0..4).map(|_| a.next_u64()).collect();
        let ys: Vec<u64> = (0..4).map(|_| b.next_u64()).collect();
        let zs: Vec<u64> = (0..4).map(|_| c.next_u64()).collect();
        assert_eq!(xs, ys);
        assert_ne!(xs, zs);
    }

    #[test]
    fn a_dropout_mask_draws_what_next_f32_would() {
        let (keep, scale) = (0.8f32, 1.25f32);
        // Lengths around the vector loop's eight and sixteen lanes, and an MLP layer's mask.
        for len in [0, 1, 7, 8, 17, 1000, 1003, 64 * 256] {
            let mut one_by_one = Rng::new(11);
            let expected: Vec<f32> = (0..len)
                .map(|_| {
                    if one_by_one.next_f32() < keep {
                        scale
                    } else {
                        0.0
                    }
                })
                .collect();
            let mut filled = Rng::new(11);
            let mut mask = vec![f32::NAN; len];
            filled.fill_dropout_mask(&mut mask, keep, scale);
            assert_eq!(mask, expected, "{len} values");
            assert_eq!(
                filled, one_by_one,
                "the generator continues where the calls would"
            );
            if len >= 1000 {
                assert!(mask.contains(&0.0) && mask.contains(&scale));
            }
        }
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut items: Vec<u32> = (0..100).collect();
        Rng::new(3).shuffle(&mut items);
        assert_ne!(items, (0..100).collect::<Vec<_>>());
        items.sort();
        assert_eq!(items, (0..100).collect::<Vec<_>>());
    }
}
