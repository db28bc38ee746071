//! Convolutions computed directly, image by image, without unfolding the input into columns.
//!
//! Why: over unfolded columns a convolution writes nine (3x3) or 25 (5x5) copies of its input,
//! which the matrix product then copies again into its packed panels; for the first layers
//! (one image channel: an inner dimension of 9 or 25) that was all of the time, and for the
//! inner layers (16 to 64 filters, the products' narrow side) a fifth to a third of it. Directly, each
//! image is padded once into planes, and every output is a sum of kernel taps read at fixed
//! offsets from them: a block of [`FILTERS`] filters times [`POSITIONS`] outputs stays in
//! registers over all taps, each tap one load of the padded input and one broadcast weight per
//! filter. The input's gradient is the same sum over the output's gradient with the kernel
//! turned around; the weight's is a product of the output's gradient with the input read at each
//! tap's offset, [`GRAD_FILTERS`] filters by [`GRAD_TAPS`] taps at a time.
//!
//! Layout: an image's outputs are computed `wp` (padded width) apart per row, so that every tap
//! is one contiguous run over the padded plane; the last `kernel - 1` values of each output row
//! are not outputs and are never read back (their gradients are zero). Each filter's outputs
//! start `front` values into its row of the scratch planes, after zeros that the input
//! gradient's taps read when they reach above the first row.
//!
//! Strided layers: a stride-`s` convolution is a stride-1 one over its padded input's `s * s`
//! phases (the rows and columns with the same remainder by `s`), since tap `(i, j)` of output
//! `(y, x)` reads padded value `(s y + i, s x + j)`, which is value `(y + i / s, x + j / s)` of
//! phase `(i % s, j % s)`. So each channel is padded into its phases' planes, the taps are
//! offsets into them, and everything above holds with the phase width for `wp`; the input's
//! gradient is computed phase by phase (each phase's taps turned around) and put back together.
//! Resnet's 16-to-32-filter stage entry had spent more time unfolding and folding its columns
//! than multiplying them.

use super::flex::{Unzeroed, balanced};
use super::im2col::Geometry;
use super::pool::max_pool_row;
use rayon::prelude::*;
use std::cell::RefCell;

/// Filters whose outputs are summed together (one broadcast weight each per tap).
const FILTERS: usize = 8;

/// Outputs per filter summed together: two AVX-512 registers (four AVX2 ones).
const POSITIONS: usize = 32;

/// Filters and taps of one block of the weight's gradient, each a sum over [`LANES`] lanes.
const GRAD_FILTERS: usize = 4;
const GRAD_TAPS: usize = 4;

/// Independent partial sums per weight gradient value: one AVX-512 register. Fixed, not the
/// processor's width, so that the gradients are the same numbers on every x86 processor with FMA.
const LANES: usize = 16;

/// The most rows of columns (input channels x kernel positions) taken directly without AVX-512:
/// LeNet-5's first layer (one channel, 5x5).
const NARROW_ROWS: usize = 25;

/// The most filters of an inner layer taken directly (resnet's first two stages and the entry to
/// its second, LeNet-5's and convnet's inner layers).
const DIRECT_FILTERS: usize = 32;

/// Scratches a thread keeps ([`Scratch::with`]): resnet's direct layers have four sizes, eight
/// scratches with both passes.
const KEPT_SCRATCHES: usize = 8;

/// Images per parallel task: sizes the weight gradient's partial sums, which are added in task
/// order so that training is reproducible.
const IMAGES_PER_TASK: usize = 4;

impl Geometry {
    /// Whether this layer is taken directly: a kernel at least as wide as the stride (so that
    /// every phase of the input has taps, [`Geometry::phase_size`]), and either at most
    /// [`NARROW_ROWS`] rows of columns (a first layer) or, on a processor with AVX-512, at most
    /// [`DIRECT_FILTERS`] filters. With more filters the matrix product's tiles are full, and
    /// the direct layout's `kernel - 1` unused values per row (an eighth of 14-pixel rows) cost
    /// more than the unfolding saves (the CNN's 64-filter inner layer, resnet's 7x7 one and
    /// its strided entry to them were slower directly in `cargo bench --bench layers`). Without AVX-512 the compiler's
    /// vectorisation of one filter at a time loses to the product for inner layers.
    pub(super) fn direct(&self) -> bool {
        self.kernel >= self.stride
            && (self.rows() <= NARROW_ROWS
                || (self.filters <= DIRECT_FILTERS && matches!(simd(), Simd::Avx512)))
    }

    /// Padded height and width.
    fn padded(&self) -> (usize, usize) {
        (
            self.height + 2 * self.padding,
            self.width + 2 * self.padding,
        )
    }

    /// Height and width of one phase plane. A strided convolution is a stride-1 one over its
    /// padded input's `stride * stride` phases (the rows and columns that leave one remainder
    /// by the stride; each tap reads one phase): so each channel is padded into that many
    /// planes, and every tap is again one contiguous run. Stride 1: one phase, the padded image.
    /// A phase row is at least as wide as the outputs plus the farthest tap (`(wp - k) / s + 1 +
    /// (k - 1) / s <= (wp - 1) / s + 1`), so every row of outputs ends in unused values, which
    /// the input gradient's taps read as zeros.
    fn phase_size(&self) -> (usize, usize) {
        let (hp, wp) = self.padded();
        (hp.div_ceil(self.stride), wp.div_ceil(self.stride))
    }

    /// Values per channel of a padded image: all of its phase planes.
    fn padded_plane(&self) -> usize {
        let (hq, wq) = self.phase_size();
        self.stride * self.stride * hq * wq
    }

    /// The farthest tap's offset in a phase plane: the zeros before each filter's outputs.
    fn front(&self) -> usize {
        (self.kernel - 1) / self.stride * (self.phase_size().1 + 1)
    }

    /// Values per filter of one image's outputs in the phase-width layout.
    fn direct_outputs(&self) -> usize {
        self.conv_size().0 * self.phase_size().1
    }

    /// Positions computed per filter: the outputs, rounded up to whole blocks.
    fn computed_outputs(&self) -> usize {
        self.direct_outputs().next_multiple_of(POSITIONS)
    }

    /// The rows of the phase planes in row phase `p` that hold image rows: the first, and how
    /// many.
    fn phase_rows(&self, p: usize) -> (usize, usize) {
        let first = self.padding.saturating_sub(p).div_ceil(self.stride);
        let end = (self.padding + self.height)
            .saturating_sub(p)
            .div_ceil(self.stride);
        (first, end.saturating_sub(first))
    }

    /// Positions of the input's gradient computed per channel in row phase `p`: its rows that
    /// hold the image's rows, rounded up to whole blocks.
    fn computed_inputs(&self, p: usize) -> usize {
        (self.phase_rows(p).1 * self.phase_size().1).next_multiple_of(POSITIONS)
    }

    /// The most positions of the input's gradient computed per channel and phase.
    fn input_grad_stride(&self) -> usize {
        (0..self.stride)
            .map(|p| self.computed_inputs(p))
            .max()
            .unwrap_or(0)
    }

    /// Values per filter of the scratch outputs: the zeros in front, then the outputs (or
    /// their gradients) and zeros up to the last position the input gradient reads.
    fn output_stride(&self) -> usize {
        let wq = self.phase_size().1;
        let input_grad_reads = (0..self.stride)
            .map(|p| self.phase_rows(p).0 * wq + self.computed_inputs(p))
            .max()
            .unwrap_or(0);
        self.front() + self.computed_outputs().max(input_grad_reads)
    }

    /// Values of one image's padded planes in a scratch, with room for the last block's reads
    /// past the final plane (into outputs never read).
    fn padded_slot(&self) -> usize {
        self.channels * self.padded_plane() + self.front() + self.computed_outputs()
    }

    /// Values of one image's scratch outputs: every filter's, rounded up to whole blocks.
    fn outputs_slot(&self) -> usize {
        self.filters.next_multiple_of(FILTERS) * self.output_stride()
    }

    /// Tap `(i, j)`'s offset in a channel's padded planes: in its phase's plane, `(i, j)`
    /// divided by the stride.
    fn tap_offset(&self, i: usize, j: usize) -> usize {
        let ((hq, wq), s) = (self.phase_size(), self.stride);
        ((i % s) * s + j % s) * hq * wq + (i / s) * wq + j / s
    }

    /// Every kernel tap's offset in the padded image, in the order of the weight's values.
    fn taps(&self) -> Vec<usize> {
        let plane = self.padded_plane();
        (0..self.channels)
            .flat_map(move |c| {
                (0..self.kernel).flat_map(move |i| {
                    (0..self.kernel).map(move |j| c * plane + self.tap_offset(i, j))
                })
            })
            .collect()
    }

    /// The kernel positions `(i, j)` that read phase `(p, q)`, in the weight's order.
    fn phase_taps(&self, (p, q): (usize, usize)) -> impl Iterator<Item = (usize, usize)> + '_ {
        (p..self.kernel)
            .step_by(self.stride)
            .flat_map(move |i| (q..self.kernel).step_by(self.stride).map(move |j| (i, j)))
    }

    /// For the input's gradient in phase `(p, q)`: every filter's taps of that phase turned
    /// around, the offset in the scratch outputs at which the phase's first row holding image
    /// rows reads filter `f`'s gradient under tap `(i, j)`, in the order `(f, i, j)`.
    fn input_grad_taps(&self, (p, q): (usize, usize)) -> Vec<usize> {
        let (stride, wq, s) = (self.output_stride(), self.phase_size().1, self.stride);
        let first_row = self.front() + self.phase_rows(p).0 * wq;
        (0..self.filters)
            .flat_map(move |f| {
                self.phase_taps((p, q))
                    .map(move |(i, j)| f * stride + first_row - (i / s) * wq - j / s)
            })
            .collect()
    }
}

/// The weight `[filters, channels * k * k]` rearranged for [`weighted_sums`]: per block of
/// [`FILTERS`] filters, per tap, the block's weights (zero for filters past the last).
fn forward_weights(weight: &[f32], g: &Geometry) -> Vec<f32> {
    let rows = g.rows();
    let blocks = g.filters.div_ceil(FILTERS);
    let mut packed = vec![0.0; blocks * rows * FILTERS];
    for (filter, weights) in weight.chunks_exact(rows).enumerate() {
        let (block, lane) = (filter / FILTERS, filter % FILTERS);
        for (tap, &w) in weights.iter().enumerate() {
            packed[(block * rows + tap) * FILTERS + lane] = w;
        }
    }
    packed
}

/// What the input's gradient in one phase of the padded input takes (the one phase of a
/// stride-1 layer; see [`Geometry::phase_size`]).
struct PhaseGrad {
    /// The phase's row and column remainders by the stride.
    phase: (usize, usize),
    /// [`Geometry::input_grad_taps`] of the phase.
    taps: Vec<usize>,
    /// The weight as [`input_grad_weights`] arranges it for the phase.
    packed: Vec<f32>,
}

/// Every phase's [`PhaseGrad`], in the order of the phases' planes.
fn phase_grads(weight: &[f32], g: &Geometry) -> Vec<PhaseGrad> {
    (0..g.stride * g.stride)
        .map(|phase| {
            let phase = (phase / g.stride, phase % g.stride);
            PhaseGrad {
                phase,
                taps: g.input_grad_taps(phase),
                packed: input_grad_weights(weight, g, phase),
            }
        })
        .collect()
}

/// The weight rearranged for the input's gradient in `phase`: per block of [`FILTERS`]
/// channels, per filter and tap `(f, i, j)` of the phase, the weight joining that channel to
/// that filter under the tap.
fn input_grad_weights(weight: &[f32], g: &Geometry, phase: (usize, usize)) -> Vec<f32> {
    let kernel_taps: Vec<usize> = g.phase_taps(phase).map(|(i, j)| i * g.kernel + j).collect();
    let taps = kernel_taps.len();
    let turned = g.filters * taps;
    let blocks = g.channels.div_ceil(FILTERS);
    let mut packed = vec![0.0; blocks * turned * FILTERS];
    for (filter, weights) in weight.chunks_exact(g.rows()).enumerate() {
        for (channel, kernel) in weights.chunks_exact(g.kernel * g.kernel).enumerate() {
            let (block, lane) = (channel / FILTERS, channel % FILTERS);
            for (tap, &at) in kernel_taps.iter().enumerate() {
                packed[(block * turned + filter * taps + tap) * FILTERS + lane] = kernel[at];
            }
        }
    }
    packed
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
    let mut output = Unzeroed::new(g.batch * per_image);
    let mut argmax = Unzeroed::new(if g.pool { g.batch * per_image } else { 0 });
    let argmax_per_image = if g.pool { per_image } else { 0 };
    let taps = g.taps();
    let packed = forward_weights(weight, g);
    let layer = Layer { taps: &taps, g };
    balanced(
        output
            .chunks(per_image, g.batch)
            .zip(argmax.chunks(argmax_per_image, g.batch))
            .zip(x.par_chunks(g.input_size())),
    )
    .for_each(|((output, argmax), image)| {
        Scratch::with(g, Pass::Forward, |scratch| {
            scratch.pad(0, image, g);
            layer.forward_image(scratch, &packed, bias, output, argmax);
        })
    });
    (output.into_vec(), argmax.into_vec())
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
    let taps = g.taps();
    let phases = if input_grad {
        phase_grads(weight, g)
    } else {
        Vec::new()
    };
    let layer = Layer { taps: &taps, g };
    let mut x_grad = Unzeroed::new(if input_grad { x.len() } else { 0 });
    let chunk = |values: usize| (IMAGES_PER_TASK * values).max(1);
    let tasks = x
        .par_chunks(chunk(g.input_size()))
        .zip(grad.par_chunks(chunk(per_image)))
        .zip(x_grad.chunks(
            IMAGES_PER_TASK * g.input_size(),
            g.batch.div_ceil(IMAGES_PER_TASK),
        ))
        .enumerate();
    let partial_sums: Vec<Vec<f32>> = balanced(tasks)
        .map(|(task, ((images, grads), x_grads))| {
            Scratch::with(g, Pass::Backward, |scratch| {
                let mut weight_lanes =
                    vec![0.0f32; g.filters.next_multiple_of(FILTERS) * g.rows() * LANES];
                for (image, grad) in grads.chunks_exact(per_image).enumerate() {
                    let first = (task * IMAGES_PER_TASK + image) * per_image;
                    let argmax = if g.pool {
                        &argmax[first..first + per_image]
                    } else {
                        &[][..]
                    };
                    scratch.pad(
                        image,
                        &images[image * g.input_size()..][..g.input_size()],
                        g,
                    );
                    scatter(grad, argmax, scratch, image, g);
                }
                let count = grads.len() / per_image;
                let x_grads = input_grad.then_some((x_grads, &phases[..]));
                layer.backward_task(scratch, count, &mut weight_lanes, x_grads);
                // Each value's lanes added once per task (per image, the adding took longer than
                // the products for 7x7 planes).
                weight_lanes
                    .chunks_exact(LANES)
                    .take(g.filters * g.rows())
                    .map(|lanes| lanes.iter().sum())
                    .collect::<Vec<f32>>()
            })
        })
        .collect();
    let mut weight_grad = vec![0.0f32; g.filters * g.rows()];
    for partial in partial_sums {
        for (sum, value) in weight_grad.iter_mut().zip(partial) {
            *sum += value;
        }
    }
    (weight_grad, input_grad.then(|| x_grad.into_vec()))
}

/// One task's working planes: per image slot (one for a forward pass, a task's images for a
/// backward pass), the padded image and its outputs (or their gradients) per filter; and the
/// padded input's gradient per channel.
struct Scratch {
    padded: Vec<f32>,
    outputs: Vec<f32>,
    input_grad: Vec<f32>,
}

impl Scratch {
    fn new(g: &Geometry, pass: Pass) -> Scratch {
        let slots = match pass {
            Pass::Forward => 1,
            Pass::Backward => IMAGES_PER_TASK,
        };
        let channels = g.channels.next_multiple_of(FILTERS);
        Scratch {
            padded: vec![0.0; slots * g.padded_slot()],
            outputs: vec![0.0; slots * g.outputs_slot()],
            input_grad: Vec::with_capacity(g.stride * g.stride * channels * g.input_grad_stride()),
        }
    }

    /// Runs `work` with this thread's scratch for `g`'s sizes and the `pass` (forward or
    /// backward), made on first use and kept for the next layer of the same sizes (a network
    /// has a few), so that a loop's items need not each zero a new one. Every pass leaves a
    /// scratch fit for the next of its kind: the padding stays zero ([`Scratch::pad`] writes
    /// inside it), a forward pass writes outputs before it reads them, and a backward pass
    /// writes nothing but output gradients where outputs are ([`scatter`]).
    fn with<R>(g: &Geometry, pass: Pass, work: impl FnOnce(&mut Scratch) -> R) -> R {
        thread_local! {
            static KEPT: RefCell<Vec<((Geometry, Pass), Scratch)>> =
                const { RefCell::new(Vec::new()) };
        }
        // The sizes without the batch, which a scratch does not depend on.
        let sizes = (Geometry { batch: 0, ..*g }, pass);
        let kept = KEPT.with_borrow_mut(|kept| {
            let index = kept
                .iter()
                .position(|(kept_sizes, _)| *kept_sizes == sizes)?;
            Some(kept.swap_remove(index).1)
        });
        let mut scratch = kept.unwrap_or_else(|| Scratch::new(g, pass));
        let result = work(&mut scratch);
        KEPT.with_borrow_mut(|kept| {
            if kept.len() == KEPT_SCRATCHES {
                kept.remove(0);
            }
            kept.push((sizes, scratch));
        });
        result
    }

    /// Copies `image` into slot `slot`'s padded (phase) planes; the border stays zero from
    /// [`Scratch::new`].
    fn pad(&mut self, slot: usize, image: &[f32], g: &Geometry) {
        let (plane, (hq, wq), s) = (g.padded_plane(), g.phase_size(), g.stride);
        let padded = &mut self.padded[slot * g.padded_slot()..];
        for (channel, source) in image.chunks_exact(g.height * g.width).enumerate() {
            let target = &mut padded[channel * plane..];
            for (row, line) in source.chunks_exact(g.width).enumerate() {
                let r = row + g.padding;
                if s == 1 {
                    let start = r * wq + g.padding;
                    target[start..start + g.width].copy_from_slice(line);
                    continue;
                }
                // Column phase by column phase: every stride-th value, one run of the plane.
                let at = |first: usize| {
                    let c = first + g.padding;
                    ((r % s) * s + c % s) * hq * wq + (r / s) * wq + c / s
                };
                if s == 2 && g.width >= 2 {
                    let (a, b) = (at(0), at(1));
                    let (low, high) = target.split_at_mut(a.max(b));
                    let (even, odd) = if a < b {
                        (&mut low[a..], high)
                    } else {
                        (high, &mut low[b..])
                    };
                    split_pairs(line, even, odd);
                    continue;
                }
                for first in 0..s.min(g.width) {
                    let values = line[first..].iter().step_by(s);
                    for (target, &value) in target[at(first)..].iter_mut().zip(values) {
                        *target = value;
                    }
                }
            }
        }
    }

    /// Filter `filter`'s outputs (or their gradients) in the padded-width layout.
    fn filter_outputs(&self, filter: usize, g: &Geometry) -> &[f32] {
        &self.outputs[filter * g.output_stride() + g.front()..][..g.direct_outputs()]
    }
}

/// Which pass a [`Scratch`] serves: a backward pass's output gradients are zero wherever it does
/// not write them, which a forward pass's outputs are not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pass {
    Forward,
    Backward,
}

/// What the per-image passes share: the kernel's taps and the sizes.
struct Layer<'a> {
    taps: &'a [usize],
    g: &'a Geometry,
}

/// For the input's gradient: the task's images' gradients to write, and what each phase takes.
type InputGrad<'a> = (&'a mut [f32], &'a [PhaseGrad]);

impl Layer<'_> {
    /// [`Layer::forward`] with AVX-512's block sums, or compiled for AVX2 and FMA, when the
    /// processor has them (without FMA, `mul_add` is a library call per value).
    fn forward_image(
        &self,
        scratch: &mut Scratch,
        packed: &[f32],
        bias: &[f32],
        output: &mut [f32],
        argmax: &mut [u32],
    ) {
        #[cfg(target_arch = "x86_64")]
        match simd() {
            // The block sums are compiled for AVX-512 on their own.
            Simd::Avx512 => {
                return self.forward::<true, true>(scratch, packed, bias, output, argmax);
            }
            // SAFETY: the processor has AVX2 and FMA.
            Simd::Avx2 => {
                return unsafe { self.forward_avx2(scratch, packed, bias, output, argmax) };
            }
            Simd::None => {}
        }
        self.forward::<false, false>(scratch, packed, bias, output, argmax)
    }

    /// [`Layer::backward`], compiled as [`Layer::forward_image`] is.
    fn backward_task(
        &self,
        scratch: &mut Scratch,
        images: usize,
        weight_lanes: &mut [f32],
        x_grads: Option<InputGrad>,
    ) {
        #[cfg(target_arch = "x86_64")]
        match simd() {
            Simd::Avx512 => {
                return self.backward::<true, true>(scratch, images, weight_lanes, x_grads);
            }
            // SAFETY: the processor has AVX2 and FMA.
            Simd::Avx2 => {
                return unsafe { self.backward_avx2(scratch, images, weight_lanes, x_grads) };
            }
            Simd::None => {}
        }
        self.backward::<false, false>(scratch, images, weight_lanes, x_grads)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn forward_avx2(
        &self,
        scratch: &mut Scratch,
        packed: &[f32],
        bias: &[f32],
        output: &mut [f32],
        argmax: &mut [u32],
    ) {
        self.forward::<true, false>(scratch, packed, bias, output, argmax)
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    fn backward_avx2(
        &self,
        scratch: &mut Scratch,
        images: usize,
        weight_lanes: &mut [f32],
        x_grads: Option<InputGrad>,
    ) {
        self.backward::<true, false>(scratch, images, weight_lanes, x_grads)
    }

    /// One padded image's outputs, laid out in `output` (and `argmax` when pooled).
    #[inline(always)]
    fn forward<const FMA: bool, const WIDE: bool>(
        &self,
        scratch: &mut Scratch,
        packed: &[f32],
        bias: &[f32],
        output: &mut [f32],
        argmax: &mut [u32],
    ) {
        let g = self.g;
        let (stride, front, rows) = (g.output_stride(), g.front(), g.rows());
        for (block, outputs) in scratch
            .outputs
            .chunks_exact_mut(FILTERS * stride)
            .enumerate()
        {
            weighted_sums::<FMA, WIDE>(
                &scratch.padded,
                self.taps,
                &packed[block * rows * FILTERS..][..rows * FILTERS],
                g.computed_outputs(),
                &mut outputs[front..],
                stride,
            );
        }
        lay_out(scratch, bias, output, argmax, g);
    }

    /// The first `images` slots' share of the weight's gradient (padded, their output
    /// gradients scattered), added to `weight_lanes` (see [`Layer::accumulate_weight_grad`]),
    /// and each one's own gradient when `x_grads` is given.
    #[inline(always)]
    fn backward<const FMA: bool, const WIDE: bool>(
        &self,
        scratch: &mut Scratch,
        images: usize,
        weight_lanes: &mut [f32],
        x_grads: Option<InputGrad>,
    ) {
        self.accumulate_weight_grad::<FMA, WIDE>(scratch, images, weight_lanes);
        if let Some((x_grads, phases)) = x_grads {
            let size = self.g.input_size();
            for (slot, x_grad) in x_grads.chunks_exact_mut(size).take(images).enumerate() {
                self.input_gradient::<FMA, WIDE>(scratch, slot, phases, x_grad);
            }
        }
    }

    /// Adds the first `images` slots' share to the weight's gradient: for each filter and tap,
    /// the sum over images and outputs of the output's gradient times the input under that tap,
    /// kept as [`LANES`] partial sums per value (`weight_lanes` `[filters][rows][LANES]`,
    /// filters rounded up to [`FILTERS`]), which stay in registers over the images: read and
    /// written once per task rather than once per image, in the same order of sums.
    #[inline(always)]
    fn accumulate_weight_grad<const FMA: bool, const WIDE: bool>(
        &self,
        scratch: &Scratch,
        images: usize,
        weight_lanes: &mut [f32],
    ) {
        let g = self.g;
        let (stride, front, rows) = (g.output_stride(), g.front(), g.rows());
        let slots = Slots {
            images,
            outputs: g.outputs_slot(),
            padded: g.padded_slot(),
            positions: g.computed_outputs(),
        };
        for first_filter in (0..g.filters).step_by(GRAD_FILTERS) {
            // Past the last filter: blocks of zero gradients (from `scatter`).
            let grads = &scratch.outputs[first_filter * stride + front..];
            let grads = (grads, stride);
            let lanes = &mut weight_lanes[first_filter * rows * LANES..];
            let mut tap = 0;
            while tap + GRAD_TAPS <= rows {
                let taps = self.taps[tap..][..GRAD_TAPS].try_into().unwrap();
                tap_sums::<FMA, WIDE, GRAD_TAPS>(
                    grads,
                    &scratch.padded,
                    taps,
                    slots,
                    lanes,
                    tap,
                    rows,
                );
                tap += GRAD_TAPS;
            }
            for tap in tap..rows {
                tap_sums::<FMA, WIDE, 1>(
                    grads,
                    &scratch.padded,
                    &[self.taps[tap]],
                    slots,
                    lanes,
                    tap,
                    rows,
                );
            }
        }
    }

    /// Writes one image's input gradient: every output's gradient times each tap's weight, back
    /// to the input under the tap, as a sum per input position over the filters and taps
    /// (reading the scratch outputs' gradients at the taps' offsets turned around), phase by
    /// phase; then the padding cut off (and the phases put back together).
    #[inline(always)]
    fn input_gradient<const FMA: bool, const WIDE: bool>(
        &self,
        scratch: &mut Scratch,
        slot: usize,
        phases: &[PhaseGrad],
        x_grad: &mut [f32],
    ) {
        let g = self.g;
        let (n, wq, s) = (g.input_grad_stride(), g.phase_size().1, g.stride);
        let channels = g.channels.next_multiple_of(FILTERS);
        scratch.input_grad.resize(phases.len() * channels * n, 0.0);
        for (phase, sums) in phases
            .iter()
            .zip(scratch.input_grad.chunks_exact_mut(channels * n))
        {
            let turned = phase.taps.len();
            for (block, sums) in sums.chunks_exact_mut(FILTERS * n).enumerate() {
                weighted_sums::<FMA, WIDE>(
                    &scratch.outputs[slot * g.outputs_slot()..],
                    &phase.taps,
                    &phase.packed[block * turned * FILTERS..][..turned * FILTERS],
                    g.computed_inputs(phase.phase.0),
                    sums,
                    n,
                );
            }
        }
        let first_rows: Vec<usize> = (0..s).map(|p| g.phase_rows(p).0).collect();
        for (channel, target) in x_grad.chunks_exact_mut(g.height * g.width).enumerate() {
            for (row, line) in target.chunks_exact_mut(g.width).enumerate() {
                let (p, u) = ((row + g.padding) % s, (row + g.padding) / s);
                let at =
                    |q: usize| ((p * s + q) * channels + channel) * n + (u - first_rows[p]) * wq;
                if s == 1 {
                    line.copy_from_slice(&scratch.input_grad[at(0) + g.padding..][..g.width]);
                    continue;
                }
                let start = |first: usize| at((first + g.padding) % s) + (first + g.padding) / s;
                if s == 2 && g.width >= 2 {
                    let sums = &scratch.input_grad;
                    join_pairs(&sums[start(0)..], &sums[start(1)..], line);
                    continue;
                }
                for first in 0..s.min(g.width) {
                    let source = &scratch.input_grad[start(first)..];
                    for (value, &sum) in line[first..].iter_mut().step_by(s).zip(source) {
                        *value = sum;
                    }
                }
            }
        }
    }
}

/// `line`'s even values into `even`, its odd ones into `odd` (a stride-2 layer's padding into
/// phases, in a loop the compiler vectorises).
#[inline(always)]
fn split_pairs(line: &[f32], even: &mut [f32], odd: &mut [f32]) {
    let pairs = line.chunks_exact(2);
    if let [last] = pairs.remainder() {
        even[line.len() / 2] = *last;
    }
    for ((pair, even), odd) in pairs.zip(even.iter_mut()).zip(odd.iter_mut()) {
        *even = pair[0];
        *odd = pair[1];
    }
}

/// The inverse of [`split_pairs`]: `line`'s even values from `even`, its odd ones from `odd`.
#[inline(always)]
fn join_pairs(even: &[f32], odd: &[f32], line: &mut [f32]) {
    let len = line.len();
    let mut pairs = line.chunks_exact_mut(2);
    for ((pair, &even), &odd) in pairs.by_ref().zip(even).zip(odd) {
        pair[0] = even;
        pair[1] = odd;
    }
    if let [last] = pairs.into_remainder() {
        *last = even[len / 2];
    }
}

/// For [`FILTERS`] rows of output, `positions` values each (a multiple of [`POSITIONS`]): the
/// sum over `taps` of the tap's weight for that row (`packed` `[taps][FILTERS]`) times `source`
/// read at the tap's offset plus the position, in the taps' order. Row `r` is written at
/// `out[r * out_stride..]`. `WIDE`: with AVX-512 (the caller is compiled for it), whose 32
/// registers hold the whole block; elsewhere one filter at a time, as the compiler vectorises
/// it. Each output is the same sum either way.
#[inline(always)]
fn weighted_sums<const FMA: bool, const WIDE: bool>(
    source: &[f32],
    taps: &[usize],
    packed: &[f32],
    positions: usize,
    out: &mut [f32],
    out_stride: usize,
) {
    assert!(positions.is_multiple_of(POSITIONS) && packed.len() == taps.len() * FILTERS);
    assert!(
        taps.iter()
            .all(|&offset| offset + positions <= source.len())
    );
    assert!(positions == 0 || (FILTERS - 1) * out_stride + positions <= out.len());
    #[cfg(target_arch = "x86_64")]
    if WIDE {
        // SAFETY: the caller is compiled for AVX-512 (`WIDE`), and the assertions above keep
        // every read and write inside the slices.
        unsafe { avx512::weighted_sums(source, taps, packed, positions, out, out_stride) };
        return;
    }
    for row in 0..FILTERS {
        for start in (0..positions).step_by(POSITIONS) {
            let mut sums = [0.0f32; POSITIONS];
            for (&offset, weights) in taps.iter().zip(packed.chunks_exact(FILTERS)) {
                let inputs: &[f32; POSITIONS] =
                    source[offset + start..][..POSITIONS].try_into().unwrap();
                let w = weights[row];
                for lane in 0..POSITIONS {
                    sums[lane] = madd::<FMA>(w, inputs[lane], sums[lane]);
                }
            }
            out[row * out_stride + start..][..POSITIONS].copy_from_slice(&sums);
        }
    }
}

/// Where a backward scratch's image slots lie for [`tap_sums`]: the first `images` of them, one
/// image's outputs `outputs` values after the last's and its padded planes `padded` values after
/// the last's, each summed over its first `positions` outputs (a multiple of [`LANES`]).
#[derive(Clone, Copy)]
struct Slots {
    images: usize,
    outputs: usize,
    padded: usize,
    positions: usize,
}

/// For [`GRAD_FILTERS`] filters' output gradients (`grads`: the first filter's in the first
/// slot, and the distance between filters) and `T` taps: the sum over images and positions
/// ([`Slots`]) of the gradient times the padded input at the tap's offset plus the position,
/// added image by image into [`LANES`] independent partial sums per filter and tap: filter `f`'s
/// tap `first_tap + t` at `lanes[(f * rows + first_tap + t) * LANES..]`. `WIDE` as for
/// [`weighted_sums`]; the sums are the same numbers either way.
#[inline(always)]
fn tap_sums<const FMA: bool, const WIDE: bool, const T: usize>(
    (grads, grad_stride): (&[f32], usize),
    padded: &[f32],
    taps: &[usize; T],
    slots: Slots,
    lanes: &mut [f32],
    first_tap: usize,
    rows: usize,
) {
    let (n, last) = (slots.positions, slots.images.saturating_sub(1));
    assert!(n.is_multiple_of(LANES));
    assert!(
        slots.images == 0
            || (last * slots.outputs + (GRAD_FILTERS - 1) * grad_stride + n <= grads.len()
                && taps
                    .iter()
                    .all(|&offset| last * slots.padded + offset + n <= padded.len()))
    );
    assert!(first_tap + T <= rows && GRAD_FILTERS * rows * LANES <= lanes.len());
    #[cfg(target_arch = "x86_64")]
    if WIDE {
        // SAFETY: as in `weighted_sums`.
        unsafe {
            avx512::tap_sums(
                (grads, grad_stride),
                padded,
                taps,
                slots,
                lanes,
                first_tap,
                rows,
            )
        };
        return;
    }
    for f in 0..GRAD_FILTERS {
        for (t, &offset) in taps.iter().enumerate() {
            let sums: &mut [f32; LANES] = (&mut lanes[(f * rows + first_tap + t) * LANES..]
                [..LANES])
                .try_into()
                .unwrap();
            for image in 0..slots.images {
                let grad = &grads[image * slots.outputs + f * grad_stride..][..n];
                let inputs = &padded[image * slots.padded + offset..][..n];
                for (grad, inputs) in grad.chunks_exact(LANES).zip(inputs.chunks_exact(LANES)) {
                    for lane in 0..LANES {
                        sums[lane] = madd::<FMA>(grad[lane], inputs[lane], sums[lane]);
                    }
                }
            }
        }
    }
}

/// The two block sums in AVX-512 registers.
#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{FILTERS, GRAD_FILTERS, LANES, POSITIONS, Slots};
    use std::arch::x86_64::{
        __m512, _mm512_fmadd_ps, _mm512_loadu_ps, _mm512_set1_ps, _mm512_setzero_ps,
        _mm512_storeu_ps,
    };

    /// Registers per filter in [`weighted_sums`].
    const VECTORS: usize = POSITIONS / 16;

    /// [`super::weighted_sums`], whose assertions it relies on.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn weighted_sums(
        source: &[f32],
        taps: &[usize],
        packed: &[f32],
        positions: usize,
        out: &mut [f32],
        out_stride: usize,
    ) {
        for start in (0..positions).step_by(POSITIONS) {
            let mut sums = [_mm512_setzero_ps(); FILTERS * VECTORS];
            for (t, &offset) in taps.iter().enumerate() {
                // SAFETY (this block and the stores): inside the slices, as the caller asserts.
                unsafe {
                    let input = source.as_ptr().add(offset + start);
                    let inputs: [__m512; VECTORS] =
                        std::array::from_fn(|v| _mm512_loadu_ps(input.add(16 * v)));
                    let weights = packed.as_ptr().add(t * FILTERS);
                    for row in 0..FILTERS {
                        let w = _mm512_set1_ps(*weights.add(row));
                        for v in 0..VECTORS {
                            let sum = &mut sums[row * VECTORS + v];
                            *sum = _mm512_fmadd_ps(w, inputs[v], *sum);
                        }
                    }
                }
            }
            for row in 0..FILTERS {
                for v in 0..VECTORS {
                    unsafe {
                        let target = out.as_mut_ptr().add(row * out_stride + start + 16 * v);
                        _mm512_storeu_ps(target, sums[row * VECTORS + v]);
                    }
                }
            }
        }
    }

    /// [`super::tap_sums`], whose assertions it relies on.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn tap_sums<const T: usize>(
        (grads, grad_stride): (&[f32], usize),
        padded: &[f32],
        taps: &[usize; T],
        slots: Slots,
        lanes: &mut [f32],
        first_tap: usize,
        rows: usize,
    ) {
        let at = |f: usize, t: usize| (f * rows + first_tap + t) * LANES;
        // SAFETY (every block below): inside the slices, as the caller asserts.
        let mut sums: [[__m512; T]; GRAD_FILTERS] = std::array::from_fn(|f| {
            std::array::from_fn(|t| unsafe { _mm512_loadu_ps(lanes.as_ptr().add(at(f, t))) })
        });
        for image in 0..slots.images {
            let (grads, padded) = unsafe {
                (
                    grads.as_ptr().add(image * slots.outputs),
                    padded.as_ptr().add(image * slots.padded),
                )
            };
            for start in (0..slots.positions).step_by(LANES) {
                unsafe {
                    let inputs: [__m512; T] =
                        std::array::from_fn(|t| _mm512_loadu_ps(padded.add(taps[t] + start)));
                    for (f, sums) in sums.iter_mut().enumerate() {
                        let grad = _mm512_loadu_ps(grads.add(f * grad_stride + start));
                        for t in 0..T {
                            sums[t] = _mm512_fmadd_ps(grad, inputs[t], sums[t]);
                        }
                    }
                }
            }
        }
        for (f, sums) in sums.iter().enumerate() {
            for (t, &sum) in sums.iter().enumerate() {
                unsafe { _mm512_storeu_ps(lanes.as_mut_ptr().add(at(f, t)), sum) };
            }
        }
    }
}

/// One image's outputs in the layer's layout `[filters, height, width]`, pooled (with each
/// maximum's position in `argmax`) or not, plus the bias.
#[inline(always)]
fn lay_out(scratch: &Scratch, bias: &[f32], output: &mut [f32], argmax: &mut [u32], g: &Geometry) {
    let wp = g.phase_size().1;
    let (height, width) = g.output_size();
    let plane = height * width;
    for filter in 0..g.filters {
        let conv = scratch.filter_outputs(filter, g);
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
                max_pool_row(rows, None, bias[filter], output, argmax, top as u32);
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
/// its padded-width convolution outputs in slot `slot`: at each window's maximum when pooled, zero elsewhere
/// (and in front of and past each filter's outputs). `scratch` serves backward passes only
/// ([`Pass`]): nothing but this writes its outputs, and only where outputs are, so the values
/// that are not outputs stay zero from [`Scratch::new`], and an unpooled layer's outputs are
/// all written again.
#[inline(always)]
fn scatter(grad: &[f32], argmax: &[u32], scratch: &mut Scratch, slot: usize, g: &Geometry) {
    let (stride, front, wp) = (g.output_stride(), g.front(), g.phase_size().1);
    let (height, width) = g.output_size();
    let plane = height * width;
    for (filter, target) in scratch.outputs[slot * g.outputs_slot()..]
        .chunks_exact_mut(stride)
        .take(g.filters)
        .enumerate()
    {
        let target = &mut target[front..][..g.direct_outputs()];
        let grad = &grad[filter * plane..][..plane];
        if g.pool {
            target.fill(0.0);
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

/// `a * b + c`, with one rounding when `FMA` (in code compiled for it: elsewhere `mul_add` is a
/// library call per value).
#[inline(always)]
fn madd<const FMA: bool>(a: f32, b: f32, c: f32) -> f32 {
    if FMA { a.mul_add(b, c) } else { a * b + c }
}

/// The vector instructions the passes are compiled for.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
enum Simd {
    Avx512,
    Avx2,
    None,
}

/// The widest of [`Simd`] the processor has.
#[cfg(not(target_arch = "x86_64"))]
fn simd() -> Simd {
    Simd::None
}

/// The widest of [`Simd`] the processor has.
#[cfg(target_arch = "x86_64")]
fn simd() -> Simd {
    use std::arch::is_x86_feature_detected as has;
    if !(has!("avx2") && has!("fma")) {
        Simd::None
    } else if has!("avx512f") {
        Simd::Avx512
    } else {
        Simd::Avx2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values in -1..1 from a fixed sequence.
    fn values(len: usize, seed: u64) -> Vec<f32> {
        let mut state = seed;
        (0..len)
            .map(|_| {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                ((state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    }

    /// Both block sums are the sums they say, and the AVX-512 ones are the same numbers as the
    /// one-filter-at-a-time ones, so that training does not depend on the processor (the models'
    /// tests compare whole layers with burn's on whichever path this processor takes).
    #[test]
    fn block_sums_are_the_same_numbers_on_every_path() {
        let source = values(500, 1);
        let taps = [0, 1, 7, 30, 61];
        let packed = values(taps.len() * FILTERS, 2);
        let (positions, stride) = (2 * POSITIONS, 2 * POSITIONS + 5);
        let weighted = |wide: bool| {
            let mut out = vec![f32::NAN; FILTERS * stride];
            if wide {
                weighted_sums::<true, true>(&source, &taps, &packed, positions, &mut out, stride);
            } else {
                weighted_sums::<true, false>(&source, &taps, &packed, positions, &mut out, stride);
            }
            // Bits, so that the untouched NaNs between rows compare equal.
            out.iter().map(|v| v.to_bits()).collect::<Vec<u32>>()
        };
        let narrow = weighted(false);
        for row in 0..FILTERS {
            for p in 0..positions {
                let expected: f64 = taps
                    .iter()
                    .enumerate()
                    .map(|(t, &o)| packed[t * FILTERS + row] as f64 * source[o + p] as f64)
                    .sum();
                let got = f32::from_bits(narrow[row * stride + p]) as f64;
                assert!((got - expected).abs() < 1e-5, "row {row} position {p}");
            }
        }

        // Two image slots: each image's gradients 70 values per filter apart, 280 per image;
        // its padded input 230 values after the last's.
        let grads = values(2 * GRAD_FILTERS * 70, 10);
        let slots = Slots {
            images: 2,
            outputs: GRAD_FILTERS * 70,
            padded: 230,
            positions: 64,
        };
        let rows = 6;
        let tapped = |wide: bool| {
            let mut lanes = values(GRAD_FILTERS * rows * LANES, 3);
            let (grads, taps) = ((&grads[..], 70), [3, 40, 99, 200]);
            if wide {
                tap_sums::<true, true, 4>(grads, &source, &taps, slots, &mut lanes, 1, rows);
                tap_sums::<true, true, 1>(grads, &source, &[5], slots, &mut lanes, 5, rows);
            } else {
                tap_sums::<true, false, 4>(grads, &source, &taps, slots, &mut lanes, 1, rows);
                tap_sums::<true, false, 1>(grads, &source, &[5], slots, &mut lanes, 5, rows);
            }
            lanes
        };
        let narrow_lanes = tapped(false);
        let start = values(GRAD_FILTERS * rows * LANES, 3);
        for f in 0..GRAD_FILTERS {
            for (tap, offset) in [(0, None), (1, Some(3)), (2, Some(40)), (5, Some(5))] {
                let at = (f * rows + tap) * LANES;
                let added: f64 = (0..LANES)
                    .map(|lane| narrow_lanes[at + lane] as f64 - start[at + lane] as f64)
                    .sum();
                let expected: f64 = offset.map_or(0.0, |o| {
                    (0..2)
                        .flat_map(|image| (0..64).map(move |p| (image, p)))
                        .map(|(image, p)| {
                            grads[image * 280 + f * 70 + p] as f64
                                * source[image * 230 + o + p] as f64
                        })
                        .sum()
                });
                assert!((added - expected).abs() < 1e-4, "filter {f} tap {tap}");
            }
        }

        if matches!(simd(), Simd::Avx512) {
            assert_eq!(
                weighted(true),
                narrow,
                "weighted sums, AVX-512 against one filter"
            );
            assert_eq!(
                tapped(true),
                narrow_lanes,
                "tap sums, AVX-512 against one filter"
            );
        } else {
            eprintln!("no AVX-512 on this processor: only the one-filter-at-a-time sums checked");
        }
    }
}
