//! Convolutions over few input rows (a network's first layer: one image channel under a 3x3 or
//! 5x5 kernel) computed directly, image by image, without unfolding the input into columns.
//!
//! Why: unfolded, such a layer is a matrix product with an inner dimension of 9 or 25, which
//! spends its time writing and packing nine copies of the images rather than multiplying; and
//! a first layer has the largest outputs of a CNN. Directly, each image is padded once into a
//! small plane; every output is a sum of kernel taps read at fixed offsets from it, kept in
//! registers over all taps, and the pool reads the image's outputs while they are in cache.
//!
//! Layout: an image's outputs are computed `wp` (padded width) apart per row, so that every tap
//! is one contiguous run over the padded plane; the last `kernel - 1` values of each output row
//! are not outputs and are never read back (their gradients are zero).

use super::flex::chunks_or_empty;
use super::im2col::Geometry;
use super::pool::pool_row_pair;
use rayon::prelude::*;

/// The most rows of columns (input channels x kernel positions) taken directly: LeNet-5's first
/// layer (one channel, 5x5). Layers with more are matrix products over unfolded columns.
const DIRECT_ROWS: usize = 25;

/// Outputs kept in registers at a time while the kernel's taps are summed.
const LANES: usize = 64;

/// Images per parallel task: sizes the weight gradient's partial sums, which are added in task
/// order so that training is reproducible.
const IMAGES_PER_TASK: usize = 4;

impl Geometry {
    /// Whether this layer is taken directly: stride 1 and at most [`DIRECT_ROWS`] rows.
    pub(super) fn direct(&self) -> bool {
        self.stride == 1 && self.rows() <= DIRECT_ROWS
    }

    /// Padded height and width.
    fn padded(&self) -> (usize, usize) {
        (
            self.height + 2 * self.padding,
            self.width + 2 * self.padding,
        )
    }

    /// Values per channel of a padded image: the plane, then zeros for the last taps' reads
    /// past the final row.
    fn padded_plane(&self) -> usize {
        let (hp, wp) = self.padded();
        hp * wp + self.kernel
    }

    /// Values per filter of one image's outputs in the padded-width layout.
    fn direct_outputs(&self) -> usize {
        self.conv_size().0 * self.padded().1
    }

    /// Every kernel tap's offset in the padded image, in the order of the weight's values.
    fn taps(&self) -> impl Iterator<Item = usize> + '_ {
        let (plane, wp) = (self.padded_plane(), self.padded().1);
        (0..self.channels).flat_map(move |c| {
            (0..self.kernel)
                .flat_map(move |i| (0..self.kernel).map(move |j| c * plane + i * wp + j))
        })
    }
}

/// The layer's forward pass: `x` `[batch, channels, height, width]`, `weight` `[filters, rows]`.
/// Returns the output (pooled or not, as [`super::conv_pool`] lays it out) and, when pooled, the
/// position of each output's maximum in its filter's padded-width outputs.
pub(super) fn forward(
    x: &[f32],
    weight: &[f32],
    bias: &[f32],
    g: &Geometry,
) -> (Vec<f32>, Vec<u32>) {
    let (height, width) = g.output_size();
    let per_image = g.filters * height * width;
    let mut output = vec![0.0f32; g.batch * per_image];
    let mut argmax = vec![0u32; if g.pool { output.len() } else { 0 }];
    let argmax_per_image = if g.pool { per_image } else { 0 };
    let taps: Vec<usize> = g.taps().collect();
    output
        .par_chunks_mut(per_image)
        .zip(chunks_or_empty(&mut argmax, argmax_per_image, g.batch))
        .zip(x.par_chunks(g.input_size()))
        .for_each_init(
            || Scratch::new(g),
            |scratch, ((output, argmax), image)| {
                scratch.pad(image, g);
                let layer = Layer {
                    taps: &taps,
                    weight,
                    g,
                };
                layer.forward_image(scratch, bias, output, argmax);
            },
        );
    (output, argmax)
}

/// The weight's gradient `[filters, rows]` and, when `input_grad`, the input's, from the
/// output's gradient `grad` and the forward pass's `argmax`.
pub(super) fn backward(
    grad: &[f32],
    argmax: &[u32],
    x: &[f32],
    weight: &[f32],
    g: &Geometry,
    input_grad: bool,
) -> (Vec<f32>, Option<Vec<f32>>) {
    let per_image = grad.len() / g.batch.max(1);
    let taps: Vec<usize> = g.taps().collect();
    let mut x_grad = vec![0.0f32; if input_grad { x.len() } else { 0 }];
    let chunk = |values: usize| (IMAGES_PER_TASK * values).max(1);
    let partial_sums: Vec<Vec<f32>> = x
        .par_chunks(chunk(g.input_size()))
        .zip(grad.par_chunks(chunk(per_image)))
        .zip(chunks_or_empty(
            &mut x_grad,
            IMAGES_PER_TASK * g.input_size(),
            g.batch.div_ceil(IMAGES_PER_TASK),
        ))
        .enumerate()
        .map(|(task, ((images, grads), x_grads))| {
            let mut scratch = Scratch::new(g);
            let mut weight_grad = vec![0.0f32; g.filters * g.rows()];
            for (image, grad) in grads.chunks_exact(per_image).enumerate() {
                let first = (task * IMAGES_PER_TASK + image) * per_image;
                let argmax = if g.pool {
                    &argmax[first..first + per_image]
                } else {
                    &[][..]
                };
                scratch.pad(&images[image * g.input_size()..][..g.input_size()], g);
                let x_grad =
                    input_grad.then(|| &mut x_grads[image * g.input_size()..][..g.input_size()]);
                let layer = Layer {
                    taps: &taps,
                    weight,
                    g,
                };
                layer.backward_image(&mut scratch, grad, argmax, &mut weight_grad, x_grad);
            }
            weight_grad
        })
        .collect();
    let mut weight_grad = vec![0.0f32; g.filters * g.rows()];
    for partial in partial_sums {
        for (sum, value) in weight_grad.iter_mut().zip(partial) {
            *sum += value;
        }
    }
    (weight_grad, input_grad.then_some(x_grad))
}

/// One task's working planes: a padded image and one image's outputs (or their gradients).
struct Scratch {
    padded: Vec<f32>,
    outputs: Vec<f32>,
}

impl Scratch {
    fn new(g: &Geometry) -> Scratch {
        Scratch {
            padded: vec![0.0; g.channels * g.padded_plane()],
            outputs: vec![0.0; g.filters * g.direct_outputs()],
        }
    }

    /// Copies `image` into the padded planes; the border stays zero from [`Scratch::new`].
    fn pad(&mut self, image: &[f32], g: &Geometry) {
        let (plane, wp) = (g.padded_plane(), g.padded().1);
        for (channel, source) in image.chunks_exact(g.height * g.width).enumerate() {
            let target = &mut self.padded[channel * plane..];
            for (row, line) in source.chunks_exact(g.width).enumerate() {
                let start = (row + g.padding) * wp + g.padding;
                target[start..start + g.width].copy_from_slice(line);
            }
        }
    }
}

/// What the per-image passes share: the kernel's taps, the weight `[filters, rows]`, the sizes.
struct Layer<'a> {
    taps: &'a [usize],
    weight: &'a [f32],
    g: &'a Geometry,
}

impl Layer<'_> {
    /// [`Layer::forward`], compiled for AVX2 and FMA when the processor has them (without
    /// FMA, `mul_add` is a library call per value).
    fn forward_image(
        &self,
        scratch: &mut Scratch,
        bias: &[f32],
        output: &mut [f32],
        argmax: &mut [u32],
    ) {
        #[cfg(target_arch = "x86_64")]
        if has_fma() {
            // SAFETY: the processor has AVX2 and FMA.
            return unsafe { self.forward_fma(scratch, bias, output, argmax) };
        }
        self.forward::<false>(scratch, bias, output, argmax)
    }

    /// [`Layer::backward`], compiled for AVX2 and FMA when the processor has them.
    fn backward_image(
        &self,
        scratch: &mut Scratch,
        grad: &[f32],
        argmax: &[u32],
        weight_grad: &mut [f32],
        x_grad: Option<&mut [f32]>,
    ) {
        #[cfg(target_arch = "x86_64")]
        if has_fma() {
            // SAFETY: the processor has AVX2 and FMA.
            return unsafe { self.backward_fma(scratch, grad, argmax, weight_grad, x_grad) };
        }
        self.backward::<false>(scratch, grad, argmax, weight_grad, x_grad)
    }

    /// [`Layer::forward`] compiled for AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn forward_fma(
        &self,
        scratch: &mut Scratch,
        bias: &[f32],
        output: &mut [f32],
        argmax: &mut [u32],
    ) {
        self.forward::<true>(scratch, bias, output, argmax)
    }

    /// One padded image's outputs, laid out in `output` (and `argmax` when pooled).
    #[inline(always)]
    fn forward<const FMA: bool>(
        &self,
        scratch: &mut Scratch,
        bias: &[f32],
        output: &mut [f32],
        argmax: &mut [u32],
    ) {
        self.convolve::<FMA>(&scratch.padded, &mut scratch.outputs);
        lay_out(&scratch.outputs, bias, output, argmax, self.g);
    }

    /// [`Layer::backward`] compiled for AVX2 and FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn backward_fma(
        &self,
        scratch: &mut Scratch,
        grad: &[f32],
        argmax: &[u32],
        weight_grad: &mut [f32],
        x_grad: Option<&mut [f32]>,
    ) {
        self.backward::<true>(scratch, grad, argmax, weight_grad, x_grad)
    }

    /// One padded image's share of the weight's gradient, added to `weight_grad`, and its own
    /// gradient when `x_grad` is given.
    #[inline(always)]
    fn backward<const FMA: bool>(
        &self,
        scratch: &mut Scratch,
        grad: &[f32],
        argmax: &[u32],
        weight_grad: &mut [f32],
        x_grad: Option<&mut [f32]>,
    ) {
        scatter(grad, argmax, &mut scratch.outputs, self.g);
        self.accumulate_weight_grad::<FMA>(scratch, weight_grad);
        if let Some(x_grad) = x_grad {
            self.input_gradient::<FMA>(scratch, x_grad);
        }
    }

    /// Every filter's outputs over one padded image, without the bias.
    #[inline(always)]
    fn convolve<const FMA: bool>(&self, padded: &[f32], outputs: &mut [f32]) {
        let n = self.g.direct_outputs();
        for (out, weights) in outputs
            .chunks_exact_mut(n)
            .zip(self.weight.chunks_exact(self.g.rows()))
        {
            let mut start = 0;
            let mut chunks = out.chunks_exact_mut(LANES);
            for chunk in &mut chunks {
                let mut sums = [0.0f32; LANES];
                for (&offset, &w) in self.taps.iter().zip(weights) {
                    let inputs: &[f32; LANES] =
                        padded[offset + start..][..LANES].try_into().unwrap();
                    for lane in 0..LANES {
                        sums[lane] = madd::<FMA>(w, inputs[lane], sums[lane]);
                    }
                }
                chunk.copy_from_slice(&sums);
                start += LANES;
            }
            let rest = chunks.into_remainder();
            rest.fill(0.0);
            for (&offset, &w) in self.taps.iter().zip(weights) {
                for (sum, &input) in rest.iter_mut().zip(&padded[offset + start..]) {
                    *sum = madd::<FMA>(w, input, *sum);
                }
            }
        }
    }

    /// Adds one image's share to the weight's gradient: for each filter and tap, the sum over
    /// outputs of the output's gradient times the input under that tap.
    #[inline(always)]
    fn accumulate_weight_grad<const FMA: bool>(&self, scratch: &Scratch, weight_grad: &mut [f32]) {
        let n = self.g.direct_outputs();
        for (grad, sums) in scratch
            .outputs
            .chunks_exact(n)
            .zip(weight_grad.chunks_exact_mut(self.g.rows()))
        {
            for (&offset, sum) in self.taps.iter().zip(sums) {
                *sum += dot::<FMA>(grad, &scratch.padded[offset..][..n]);
            }
        }
    }

    /// Adds one image's input gradient: every output's gradient times each tap's weight, back
    /// to the input under the tap, then the padding cut off.
    #[inline(always)]
    fn input_gradient<const FMA: bool>(&self, scratch: &mut Scratch, x_grad: &mut [f32]) {
        let g = self.g;
        let (n, (_, wp), plane) = (g.direct_outputs(), g.padded(), g.padded_plane());
        scratch.padded.fill(0.0);
        for (grad, weights) in scratch
            .outputs
            .chunks_exact(n)
            .zip(self.weight.chunks_exact(g.rows()))
        {
            for (&offset, &w) in self.taps.iter().zip(weights) {
                for (sum, &value) in scratch.padded[offset..][..n].iter_mut().zip(grad) {
                    *sum = madd::<FMA>(w, value, *sum);
                }
            }
        }
        for (channel, target) in x_grad.chunks_exact_mut(g.height * g.width).enumerate() {
            let source = &scratch.padded[channel * plane..];
            for (row, line) in target.chunks_exact_mut(g.width).enumerate() {
                line.copy_from_slice(&source[(row + g.padding) * wp + g.padding..][..g.width]);
            }
        }
        // The next image's padding must be zero again.
        scratch.padded.fill(0.0);
    }
}

/// One image's outputs in the layer's layout `[filters, height, width]`, pooled (with each
/// maximum's position in `argmax`) or not, plus the bias.
#[inline(always)]
fn lay_out(outputs: &[f32], bias: &[f32], output: &mut [f32], argmax: &mut [u32], g: &Geometry) {
    let (n, wp) = (g.direct_outputs(), g.padded().1);
    let (height, width) = g.output_size();
    let plane = height * width;
    for (filter, conv) in outputs.chunks_exact(n).enumerate() {
        let output = &mut output[filter * plane..][..plane];
        if g.pool {
            let argmax = &mut argmax[filter * plane..][..plane];
            for (py, (output, argmax)) in output
                .chunks_exact_mut(width)
                .zip(argmax.chunks_exact_mut(width))
                .enumerate()
            {
                let top = 2 * py * wp;
                let rows = &conv[top..top + 2 * wp];
                pool_row_pair(rows, |v| v, bias[filter], output, argmax, top as u32);
            }
        } else {
            for (row, output) in output.chunks_exact_mut(width).enumerate() {
                for (value, &sum) in output.iter_mut().zip(&conv[row * wp..]) {
                    *value = sum + bias[filter];
                }
            }
        }
    }
}

/// The gradient of one image's outputs, `grad` `[filters, height, width]`, as the gradient of
/// its padded-width convolution outputs: at each window's maximum when pooled, zero elsewhere.
#[inline(always)]
fn scatter(grad: &[f32], argmax: &[u32], outputs: &mut [f32], g: &Geometry) {
    let (n, wp) = (g.direct_outputs(), g.padded().1);
    let (height, width) = g.output_size();
    let plane = height * width;
    outputs.fill(0.0);
    for (filter, target) in outputs.chunks_exact_mut(n).enumerate() {
        let grad = &grad[filter * plane..][..plane];
        if g.pool {
            for (&value, &position) in grad.iter().zip(&argmax[filter * plane..][..plane]) {
                target[position as usize] = value;
            }
        } else {
            for (row, grad) in grad.chunks_exact(width).enumerate() {
                target[row * wp..][..width].copy_from_slice(grad);
            }
        }
    }
}

/// `sum(a[i] * b[i])` over [`LANES`] lanes: independent sums, so that the vectorised additions
/// do not wait on each other.
#[inline(always)]
fn dot<const FMA: bool>(a: &[f32], b: &[f32]) -> f32 {
    let mut lanes = [0.0f32; LANES];
    let (a_chunks, b_chunks) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(&x, &y)| x * y)
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for k in 0..LANES {
            lanes[k] = madd::<FMA>(x[k], y[k], lanes[k]);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// `a * b + c`, with one rounding when `FMA` (in code compiled for it: elsewhere `mul_add` is a
/// library call per value).
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// Whether the processor has AVX2 and FMA, for the passes compiled for them.
#[cfg(target_arch = "x86_64")]
fn has_fma() -> bool {
    std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
}
