//! The 2x2 max pool after a convolution, its bias added on the way, and its backward scatter;
//! also the convolution's output laid out without a pool. A window's maximum keeps its position,
//! so the backward pass is a scatter, and a row of windows is branch-free.

use super::flex::balanced;
use super::im2col::Geometry;
use rayon::prelude::*;

/// The 2x2 max pool of `conv` `[filters, batch * out pixels]` plus the bias, into `output`
/// `[batch, filters, out_height / 2, out_width / 2]`, and for every output the position of its
/// maximum in its filter's row of `conv` into `argmax` (see [`pool_row_pair`]).
pub(super) fn max_pool_into(
    conv: &[f32],
    bias: &[f32],
    g: &Geometry,
    output: &mut [f32],
    argmax: &mut [u32],
) {
    let (out_height, out_width) = g.conv_size();
    let (pooled_height, pooled_width) = (out_height / 2, out_width / 2);
    let plane = pooled_height * pooled_width;
    balanced(
        output
            .par_chunks_mut(plane)
            .zip(argmax.par_chunks_mut(plane))
            .enumerate(),
    )
    .for_each(|(plane_index, (output, argmax))| {
        let (image, filter) = (plane_index / g.filters, plane_index % g.filters);
        let row_start = image * out_height * out_width;
        let row = &conv[filter * g.pixels()..][..g.pixels()];
        let source = &row[row_start..][..out_height * out_width];
        for (py, (output, argmax)) in output
            .chunks_exact_mut(pooled_width)
            .zip(argmax.chunks_exact_mut(pooled_width))
            .enumerate()
        {
            let top = row_start + 2 * py * out_width;
            max_pool_row(
                &source[2 * py * out_width..][..2 * out_width],
                None,
                bias[filter],
                output,
                argmax,
                top as u32,
            );
        }
    });
}

/// One row of a 2x2 max pool: `rows` holds two input rows of `2 * output.len()` values each;
/// each window's maximum of `transform(value)`, plus `offset`, goes to `output`, and its
/// position (`top` being that of the first value of `rows`, rows `rows.len() / 2` apart) to
/// `argmax`. The first of equal values wins, as in burn's and PyTorch's pools, and NaN wins,
/// as in PyTorch's pool: a diverging trial must show it.
///
/// Arithmetic without branches, so that the compiler vectorises it: with a branch per
/// comparison, mispredicted on every other window of real activations, the pools cost 15-20 ns
/// an output, a tenth of a CNN's training step. A row holding NaN takes the scalar path.
#[inline(always)]
fn pool_row_pair(
    rows: &[f32],
    transform: impl Fn(f32) -> f32 + Copy,
    offset: f32,
    output: &mut [f32],
    argmax: &mut [u32],
    top: u32,
) {
    let width = rows.len() / 2;
    let (upper, lower) = rows.split_at(width);
    let (upper, lower) = (&upper[..2 * output.len()], &lower[..2 * output.len()]);
    let mut nan = false;
    for (px, (((up, down), output), argmax)) in upper
        .chunks_exact(2)
        .zip(lower.chunks_exact(2))
        .zip(output.iter_mut())
        .zip(argmax.iter_mut())
        .enumerate()
    {
        let window = [
            transform(up[0]),
            transform(up[1]),
            transform(down[0]),
            transform(down[1]),
        ];
        let best = window[0].max(window[1]).max(window[2].max(window[3]));
        // The first position holding the maximum: 0, 1, 2 or 3.
        let not = |k: usize| (window[k] != best) as u32;
        let corner = not(0) * (1 + not(1) * (1 + not(2)));
        nan |= window.iter().any(|v| v.is_nan());
        *output = best + offset;
        *argmax = top + (corner >> 1) * width as u32 + 2 * px as u32 + (corner & 1);
    }
    if nan {
        pool_row_pair_with_nan(
            [upper, lower],
            width as u32,
            transform,
            offset,
            output,
            argmax,
            top,
        );
    }
}

/// [`pool_row_pair`] of the values themselves or, with `affine` `(scale, shift)`, of `value *
/// scale + shift` (batch norm's), 16 windows at a time where the processor has AVX-512: the
/// compiler's own vectorisation of a row's stride-2 reads and first-maximum
/// positions left the pools (the CNNs' and LeNet-5's, 7 to 14 windows a row) about a tenth of the
/// CNN's epoch (measured: the epoch with a pool that only copied one value per window, 8-10%
/// shorter). The same values and positions; a row holding NaN takes the portable path.
#[inline(always)]
pub(super) fn max_pool_row(
    rows: &[f32],
    affine: Option<(f32, f32)>,
    offset: f32,
    output: &mut [f32],
    argmax: &mut [u32],
    top: u32,
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512f") {
        assert!(2 * output.len() <= rows.len() / 2 && argmax.len() == output.len());
        // SAFETY: the processor has AVX-512F; the assertion keeps every read inside `rows`
        // (each row holds twice the windows' values) and every write inside `output`/`argmax`.
        if unsafe { avx512::max_pool_row(rows, affine, offset, output, argmax, top) } {
            return;
        }
    }
    match affine {
        None => pool_row_pair(rows, |v| v, offset, output, argmax, top),
        Some((scale, shift)) => {
            pool_row_pair(rows, |v| v * scale + shift, offset, output, argmax, top)
        }
    }
}

/// [`max_pool_row`] in AVX-512 registers.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    /// Pools a row as [`super::pool_row_pair`] does, 16 windows at a time: each window's four
    /// values are deinterleaved into four registers (upper left, upper right, lower left,
    /// lower right), and the first position that holds the maximum is picked by masks. Returns
    /// false, having written nothing that matters, when the row holds NaN.
    ///
    /// # Safety
    /// AVX-512F; `rows` holds two rows of `rows.len() / 2` values, at least twice as many as
    /// `output` has windows, and `argmax` is as long as `output`.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn max_pool_row(
        rows: &[f32],
        affine: Option<(f32, f32)>,
        offset: f32,
        output: &mut [f32],
        argmax: &mut [u32],
        top: u32,
    ) -> bool {
        let width = rows.len() / 2;
        let (upper, lower) = (rows.as_ptr(), unsafe { rows.as_ptr().add(width) });
        let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
        let steps = _mm512_slli_epi32::<1>(_mm512_setr_epi32(
            0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
        ));
        let offset = _mm512_set1_ps(offset);
        let (row_step, one) = (_mm512_set1_epi32(width as i32), _mm512_set1_epi32(1));
        // Multiplied, then added: the portable path's two roundings.
        let transform = |v| match affine {
            None => v,
            Some((scale, shift)) => _mm512_add_ps(
                _mm512_mul_ps(v, _mm512_set1_ps(scale)),
                _mm512_set1_ps(shift),
            ),
        };
        for first in (0..output.len()).step_by(16) {
            let windows = (output.len() - first).min(16);
            // Lanes of the first and second 16 values, and of the windows.
            let low = (1u32 << (2 * windows).min(16)) - 1;
            let high = ((1u64 << (2 * windows).saturating_sub(16)) - 1) as u16;
            let kept = ((1u32 << windows) - 1) as u16;
            let split = |row: *const f32| unsafe {
                let a = _mm512_maskz_loadu_ps(low as u16, row.add(2 * first));
                let b = _mm512_maskz_loadu_ps(high, row.add(2 * first + 16));
                (
                    transform(_mm512_permutex2var_ps(a, even, b)),
                    transform(_mm512_permutex2var_ps(a, odd, b)),
                )
            };
            let ((up_left, up_right), (down_left, down_right)) = (split(upper), split(lower));
            let unordered = |v| _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(v, v);
            if (unordered(up_left)
                | unordered(up_right)
                | unordered(down_left)
                | unordered(down_right))
                & kept
                != 0
            {
                return false;
            }
            let best = _mm512_max_ps(
                _mm512_max_ps(up_left, up_right),
                _mm512_max_ps(down_left, down_right),
            );
            let differs = |v| _mm512_cmp_ps_mask::<_CMP_NEQ_UQ>(v, best);
            // The first of the four holding the maximum: past the first, the second, the third.
            let past_first = differs(up_left);
            let past_second = past_first & differs(up_right);
            let past_third = past_second & differs(down_left);
            let right = (past_first & !past_second) | past_third;
            let base =
                _mm512_add_epi32(_mm512_set1_epi32((top as usize + 2 * first) as i32), steps);
            let position = _mm512_mask_add_epi32(base, past_second, base, row_step);
            let position = _mm512_mask_add_epi32(position, right, position, one);
            unsafe {
                _mm512_mask_storeu_ps(
                    output.as_mut_ptr().add(first),
                    kept,
                    _mm512_add_ps(best, offset),
                );
                _mm512_mask_storeu_epi32(argmax.as_mut_ptr().add(first).cast(), kept, position);
            }
        }
        true
    }
}

/// [`pool_row_pair`] one window at a time, for rows that hold NaN (`f32::max` skips it).
#[cold]
fn pool_row_pair_with_nan(
    [upper, lower]: [&[f32]; 2],
    width: u32,
    transform: impl Fn(f32) -> f32,
    offset: f32,
    output: &mut [f32],
    argmax: &mut [u32],
    top: u32,
) {
    for (px, (output, argmax)) in output.iter_mut().zip(argmax.iter_mut()).enumerate() {
        let x = 2 * px;
        let window = [upper[x], upper[x + 1], lower[x], lower[x + 1]].map(&transform);
        let (mut corner, mut best) = (0, window[0]);
        for (k, &value) in window.iter().enumerate().skip(1) {
            if value > best || value.is_nan() {
                (corner, best) = (k as u32, value);
            }
        }
        *output = best + offset;
        *argmax = top + (corner >> 1) * width + x as u32 + (corner & 1);
    }
}

/// The unpooled layer's output: `conv` `[filters, batch * out pixels]` plus the bias, into
/// `output` `[batch, filters, out_height, out_width]`.
pub(super) fn arrange_into(conv: &[f32], bias: &[f32], g: &Geometry, output: &mut [f32]) {
    let (height, width) = g.conv_size();
    let plane = height * width;
    balanced(output.par_chunks_mut(plane).enumerate()).for_each(|(plane_index, output)| {
        let (image, filter) = (plane_index / g.filters, plane_index % g.filters);
        let source = &conv[filter * g.pixels() + image * plane..][..plane];
        for (value, &sum) in output.iter_mut().zip(source) {
            *value = sum + bias[filter];
        }
    });
}

/// The adjoint of [`arrange_into`]: the output's gradient as `[filters, batch * out pixels]`.
pub(super) fn disarrange(grad: &[f32], g: &Geometry) -> Vec<f32> {
    let (height, width) = g.conv_size();
    let plane = height * width;
    let mut conv_grad = vec![0.0; g.filters * g.pixels()];
    balanced(conv_grad.par_chunks_mut(g.pixels()).enumerate()).for_each(|(filter, row)| {
        for (image, target) in row.chunks_exact_mut(plane).enumerate() {
            target.copy_from_slice(&grad[(image * g.filters + filter) * plane..][..plane]);
        }
    });
    conv_grad
}

/// The pool's backward pass: each output's gradient at its maximum's position in `[filters,
/// batch * out pixels]`, zero elsewhere.
pub(super) fn unpool(grad: &[f32], argmax: &[u32], g: &Geometry) -> Vec<f32> {
    let plane = grad.len() / (g.batch * g.filters);
    let mut conv_grad = vec![0.0; g.filters * g.pixels()];
    balanced(conv_grad.par_chunks_mut(g.pixels()).enumerate()).for_each(|(filter, row)| {
        for image in 0..g.batch {
            let start = (image * g.filters + filter) * plane;
            for (&value, &position) in grad[start..start + plane]
                .iter()
                .zip(&argmax[start..start + plane])
            {
                row[position as usize] = value;
            }
        }
    });
    conv_grad
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The vectorised row (on this processor: AVX-512 where it has it) against the portable
    /// one, value for value and position for position: rows of 1 to 40 windows (more than two
    /// registers' worth, and a last partial one), wider than their windows as the direct
    /// layers' padded rows are, with ties, infinities, signed zeros and, in some rows, NaN (which
    /// the vectorised row hands to the portable one), without and with batch norm's transform.
    #[test]
    fn vectorised_pool_row_matches_the_portable_one() {
        let mut rng = crate::rng::Rng::new(11);
        let special = [f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, f32::NAN];
        for case in 0..400 {
            let windows = 1 + case % 40;
            let width = 2 * windows + case % 3;
            let rows: Vec<f32> = (0..2 * width)
                .map(|_| match rng.below(16) {
                    0 => special[rng.below(if case % 4 == 0 { 5 } else { 4 })],
                    k => (k % 5) as f32 - 2.0,
                })
                .collect();
            let affine = (case % 2 == 1).then_some((-1.5, 0.25));
            let top = 7 * case as u32;
            let (mut output, mut argmax) = (vec![0.0; windows], vec![0; windows]);
            max_pool_row(&rows, affine, 0.5, &mut output, &mut argmax, top);
            let (mut expected, mut expected_argmax) = (vec![0.0; windows], vec![0; windows]);
            let (scale, shift) = affine.unwrap_or((1.0, 0.0));
            let transform = |v: f32| {
                if affine.is_some() {
                    v * scale + shift
                } else {
                    v
                }
            };
            pool_row_pair(
                &rows,
                transform,
                0.5,
                &mut expected,
                &mut expected_argmax,
                top,
            );
            assert_eq!(argmax, expected_argmax, "case {case}: {rows:?}");
            for (value, expected) in output.iter().zip(&expected) {
                assert!(
                    value.to_bits() == expected.to_bits() || (value.is_nan() && expected.is_nan()),
                    "case {case}: {value} against {expected}"
                );
            }
        }
    }

    /// The branch-free pool row against a plain window-by-window one: ties (integer values)
    /// go to the first position, NaN wins and the last NaN of a window is the one kept (as in
    /// PyTorch), infinities are maxima, with a transform that flips the order.
    #[test]
    fn pool_row_pair_matches_a_plain_loop() {
        let mut rng = crate::rng::Rng::new(5);
        let special = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0];
        for case in 0..200 {
            let width = 2 * (1 + case % 7);
            let rows: Vec<f32> = (0..2 * width)
                .map(|_| match rng.below(12) {
                    0 if case % 3 == 0 => special[rng.below(special.len())],
                    k => (k % 4) as f32,
                })
                .collect();
            let (scale, offset) = if case % 2 == 0 {
                (1.0, 0.5)
            } else {
                (-2.0, 0.0)
            };
            let transform = |v: f32| v * scale + 1.0;
            let (mut output, mut argmax) = (vec![0.0; width / 2], vec![0; width / 2]);
            pool_row_pair(&rows, transform, offset, &mut output, &mut argmax, 100);
            for px in 0..width / 2 {
                let positions = [2 * px, 2 * px + 1, width + 2 * px, width + 2 * px + 1];
                let mut best = positions[0];
                for &p in &positions[1..] {
                    let (value, best_value) = (transform(rows[p]), transform(rows[best]));
                    if value > best_value || value.is_nan() {
                        best = p;
                    }
                }
                let expected = transform(rows[best]) + offset;
                assert_eq!(
                    argmax[px],
                    100 + best as u32,
                    "case {case}, window {px}: {rows:?}"
                );
                assert!(
                    output[px] == expected || (output[px].is_nan() && expected.is_nan()),
                    "case {case}, window {px}"
                );
            }
        }
    }
}
