//! A convolution (stride 1), its bias and optionally a 2x2 max pool as one flex operation with
//! a hand-written backward pass, reached through a burn backend extension.
//!
//! Why: on flex, burn's kernels for a CNN's inner convolution and pool were most of a training
//! step -- the weight gradient is a convolution over swapped axes, the input gradient a
//! transposed convolution, and the pool spends integer divisions on every output (`cargo bench
//! --bench layers` has the per-layer figures). Here the layer is three matrix products over the
//! unfolded input (im2col): the forward product, the weight gradient and the columns' gradient,
//! which col2im sums back into the input's gradient. The pool keeps the position of each
//! window's maximum, so its backward is a scatter. The work goes in blocks of a few images whose
//! columns fit in a core's cache; the backward pass unfolds each block again rather than keep
//! every block's columns (measured: as fast, and less memory). Same numbers as burn's layers up
//! to the order of summation (tests below compare values and all three gradients).

use burn::backend::autodiff::checkpoint::base::Checkpointer;
use burn::backend::autodiff::checkpoint::strategy::CheckpointStrategy;
use burn::backend::autodiff::grads::Gradients;
use burn::backend::autodiff::ops::{Backward, Ops, OpsKind};
use burn::backend::tensor::{FloatTensor, IntTensor};
use burn::backend::{Autodiff, Backend, Flex, backend_extension};
use burn::tensor::Element;
use burn_flex::{FlexTensor, Layout};
use burn_std::{Bytes, Shape};
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// About how many values of columns one block of images unfolds to (1 MiB: within a core's L2).
const BLOCK_VALUES: usize = 1 << 18;

/// `max_pool2d(conv2d(x, weight, bias), 2x2, stride 2)` (or the convolution alone) as one
/// operation.
#[backend_extension(Flex, Autodiff)]
pub trait ConvPool: Backend {
    /// `x` `[batch, channels, height, width]`, `weight` `[filters, channels, k, k]`, `bias`
    /// `[filters]`, `padding` zeros on every side; stride 1, and an even convolution output when
    /// `pool`. Returns `[batch, filters, out_height / 2, out_width / 2]` when `pool`, the
    /// convolution's `[batch, filters, out_height, out_width]` otherwise.
    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        padding: usize,
        pool: bool,
    ) -> FloatTensor<Self>;
}

/// The two halves of [`ConvPool`] when training: a forward pass that keeps what the backward
/// pass needs (the input and where each window's maximum was), and that backward pass.
pub trait ConvPoolKernels: Backend {
    /// The pooled output, and for the backward pass the input, the weight, the position of
    /// each output's maximum in its filter's row of the convolution, and the sizes.
    fn fused_conv2d_saving(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        padding: usize,
        pool: bool,
    ) -> (FloatTensor<Self>, Saved<Self>);

    /// Gradients of the input (when `input_grad`), the weight and the bias from the output's.
    fn fused_conv2d_backward(
        grad: FloatTensor<Self>,
        saved: Saved<Self>,
        input_grad: bool,
    ) -> LayerGradients<Self>;
}

/// Gradients of the layer's input (when asked for), weight and bias.
pub type LayerGradients<B> = (Option<FloatTensor<B>>, FloatTensor<B>, FloatTensor<B>);

/// What [`ConvPoolKernels::fused_conv2d_saving`] keeps for the backward pass.
#[derive(Clone, Debug)]
pub struct Saved<B: Backend> {
    x: FloatTensor<B>,
    argmax: IntTensor<B>,
    weight: FloatTensor<B>,
    geometry: Geometry,
}

/// The sizes of one fused layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    batch: usize,
    channels: usize,
    height: usize,
    width: usize,
    filters: usize,
    kernel: usize,
    padding: usize,
    /// Whether a 2x2 max pool follows the convolution.
    pool: bool,
}

impl Geometry {
    /// The convolution's output height and width.
    fn conv_size(&self) -> (usize, usize) {
        let grow = 2 * self.padding + 1;
        (
            self.height + grow - self.kernel,
            self.width + grow - self.kernel,
        )
    }

    /// The layer's output height and width: the convolution's, halved when pooled.
    fn output_size(&self) -> (usize, usize) {
        let (height, width) = self.conv_size();
        if self.pool {
            (height / 2, width / 2)
        } else {
            (height, width)
        }
    }

    /// Values per input image.
    fn input_size(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// `values` (`per_image` values per image) cut into blocks of whole images, each with its
    /// first image's index and its own geometry, in parallel: a block's columns take about
    /// [`BLOCK_VALUES`] values, so that they stay in cache between being written and being
    /// multiplied.
    fn blocks<'a>(
        &self,
        values: &'a [f32],
        per_image: usize,
    ) -> impl IndexedParallelIterator<Item = (usize, Geometry, &'a [f32])> + use<'a> {
        let (height, width) = self.conv_size();
        let images =
            (BLOCK_VALUES / (self.rows() * height * width).max(1)).clamp(1, self.batch.max(1));
        let geometry = *self;
        values
            .par_chunks(images * per_image)
            .enumerate()
            .map(move |(index, block)| {
                let block_geometry = Geometry {
                    batch: block.len() / per_image,
                    ..geometry
                };
                (index * images, block_geometry, block)
            })
    }

    /// Rows of the columns matrix: one per input channel and kernel position.
    fn rows(&self) -> usize {
        self.channels * self.kernel * self.kernel
    }

    /// Columns of the columns matrix: one per image and output pixel.
    fn pixels(&self) -> usize {
        let (height, width) = self.conv_size();
        self.batch * height * width
    }

    /// The output columns `x0..x1` whose input column `x + j - padding` lies inside the image,
    /// for kernel column `j`.
    fn valid_columns(&self, j: usize) -> (usize, usize) {
        let (_, out_width) = self.conv_size();
        let x0 = self.padding.saturating_sub(j);
        let x1 = (self.width + self.padding).saturating_sub(j).min(out_width);
        (x0, x1.max(x0))
    }

    /// The input row that output row `y` reads at kernel row `i`, if inside the image.
    fn input_row(&self, y: usize, i: usize) -> Option<usize> {
        (y + i)
            .checked_sub(self.padding)
            .filter(|&row| row < self.height)
    }
}

/// `x` `[batch, channels, height, width]` unfolded: row `(channel, i, j)` holds, for every
/// image and output pixel, the input value under kernel position `(i, j)` (0 in the padding).
fn unfold(x: &[f32], g: &Geometry) -> Vec<f32> {
    let (out_height, out_width) = g.conv_size();
    let plane = g.height * g.width;
    filled(g.rows() * g.pixels(), |columns| {
        columns
            .par_chunks_mut(g.pixels())
            .enumerate()
            .for_each(|(row, out)| {
                let (channel, i, j) = (
                    row / (g.kernel * g.kernel),
                    row / g.kernel % g.kernel,
                    row % g.kernel,
                );
                let (x0, x1) = g.valid_columns(j);
                for (image, out) in out.chunks_exact_mut(out_height * out_width).enumerate() {
                    let input = &x[(image * g.channels + channel) * plane..][..plane];
                    if out_width == g.width {
                        unfold_same_width(input, out, (i, j), g);
                        continue;
                    }
                    for (y, out) in out.chunks_exact_mut(out_width).enumerate() {
                        let Some(source) = g.input_row(y, i) else {
                            out.fill(ZERO);
                            continue;
                        };
                        let line = &input[source * g.width..][..g.width];
                        let (left, rest) = out.split_at_mut(x0);
                        let (middle, right) = rest.split_at_mut(x1 - x0);
                        left.fill(ZERO);
                        // A loop, not `copy_from_slice`: these runs are a dozen values long,
                        // too short to pay for a call to memcpy.
                        for (value, &input) in middle
                            .iter_mut()
                            .zip(&line[x0 + j - g.padding..x1 + j - g.padding])
                        {
                            *value = MaybeUninit::new(input);
                        }
                        right.fill(ZERO);
                    }
                }
            })
    })
}

const ZERO: MaybeUninit<f32> = MaybeUninit::new(0.0);

/// One image's columns for kernel position `(i, j)` when the output is as wide as the input
/// (a "same" convolution): then they are the input plane shifted by a constant, so one long copy,
/// and the few values that the shift wraps around from the other edge zeroed afterwards. Short
/// runs row by row cost three times as much for the CNN's 14-pixel rows.
fn unfold_same_width(
    input: &[f32],
    out: &mut [MaybeUninit<f32>],
    (i, j): (usize, usize),
    g: &Geometry,
) {
    let width = g.width;
    let (out_height, _) = g.conv_size();
    // Output rows y0..y1 read input rows y0 + i - padding onwards.
    let y0 = g.padding.saturating_sub(i).min(out_height);
    let y1 = (g.height + g.padding)
        .saturating_sub(i)
        .clamp(y0, out_height);
    let (above, rest) = out.split_at_mut(y0 * width);
    let (inside, below) = rest.split_at_mut((y1 - y0) * width);
    above.fill(ZERO);
    below.fill(ZERO);
    if inside.is_empty() {
        return;
    }
    // Output value k of `inside` is input value `start + k`, outside the plane at the ends.
    let start = ((y0 + i - g.padding) * width + j) as isize - g.padding as isize;
    let first = (-start).max(0) as usize;
    let last = ((input.len() as isize - start).max(0) as usize).min(inside.len());
    inside[..first].fill(ZERO);
    inside[last.max(first)..].fill(ZERO);
    if first < last {
        let source = &input[(start + first as isize) as usize..][..last - first];
        for (value, &input) in inside[first..last].iter_mut().zip(source) {
            *value = MaybeUninit::new(input);
        }
    }
    let (x0, x1) = g.valid_columns(j);
    for row in inside.chunks_exact_mut(width) {
        row[..x0].fill(ZERO);
        row[x1..].fill(ZERO);
    }
}

/// A vector of `len` values, all written by `fill` (which must write every one), without first
/// zeroing memory that is about to be overwritten.
fn filled(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut values = Vec::with_capacity(len);
    fill(&mut values.spare_capacity_mut()[..len]);
    // SAFETY: every caller writes all `len` values (each is a loop over the whole slice).
    unsafe { values.set_len(len) };
    values
}

/// The adjoint of [`unfold`]: every column entry added back to the input value it came from.
fn fold(columns: &[f32], g: &Geometry) -> Vec<f32> {
    let (out_height, out_width) = g.conv_size();
    let pixels = g.pixels();
    let mut x = vec![0.0; g.batch * g.channels * g.height * g.width];
    // One task per image plane: its k*k rows of columns add into that plane only.
    x.par_chunks_mut(g.height * g.width)
        .enumerate()
        .for_each(|(plane_index, plane)| {
            let (image, channel) = (plane_index / g.channels, plane_index % g.channels);
            for i in 0..g.kernel {
                for j in 0..g.kernel {
                    let row = (channel * g.kernel + i) * g.kernel + j;
                    let source = &columns[row * pixels + image * out_height * out_width..]
                        [..out_height * out_width];
                    let (x0, x1) = g.valid_columns(j);
                    for y in 0..out_height {
                        if let Some(target) = g.input_row(y, i) {
                            let line = &mut plane[target * g.width..][..g.width];
                            let line = &mut line[x0 + j - g.padding..x1 + j - g.padding];
                            let source = &source[y * out_width + x0..y * out_width + x1];
                            for (value, add) in line.iter_mut().zip(source) {
                                *value += add;
                            }
                        }
                    }
                }
            }
        });
    x
}

/// One operand of [`matmul`]: its values and the distance between rows and between columns.
struct Operand<'a> {
    values: &'a [f32],
    row_stride: usize,
    column_stride: usize,
}

impl<'a> Operand<'a> {
    fn rows(values: &'a [f32], columns: usize) -> Self {
        Operand {
            values,
            row_stride: columns,
            column_stride: 1,
        }
    }

    /// The transpose of a row-major matrix with `columns` columns.
    fn transposed(values: &'a [f32], columns: usize) -> Self {
        Operand {
            values,
            row_stride: 1,
            column_stride: columns,
        }
    }

    fn covers(&self, rows: usize, columns: usize) -> bool {
        rows == 0
            || columns == 0
            || (rows - 1) * self.row_stride + (columns - 1) * self.column_stride < self.values.len()
    }
}

/// `lhs [m, k] x rhs [k, n]` as a row-major `[m, n]`, with the gemm crate that flex itself
/// uses; on the trial's compute threads when there is more than one and the product is large.
fn matmul(m: usize, k: usize, n: usize, lhs: Operand, rhs: Operand) -> Vec<f32> {
    assert!(
        lhs.covers(m, k) && rhs.covers(k, n),
        "matmul operands too short"
    );
    let parallelism = if rayon::current_num_threads() > 1 && m * n * k >= 1 << 21 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    filled(m * n, |product| {
        // SAFETY: the assertion above keeps every strided read inside `lhs` and `rhs`;
        // `product` holds exactly `m * n` values, all written (not read: `read_dst` is false)
        // with row stride `n`.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                product.as_mut_ptr().cast::<f32>(),
                1,
                n as isize,
                false,
                lhs.values.as_ptr(),
                lhs.column_stride as isize,
                lhs.row_stride as isize,
                rhs.values.as_ptr(),
                rhs.column_stride as isize,
                rhs.row_stride as isize,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
    })
}

/// The 2x2 max pool of `conv` `[filters, batch * out pixels]` plus the bias, as `[batch,
/// filters, out_height / 2, out_width / 2]`, and for every output the position of its maximum
/// in its filter's row of `conv` (see [`pool_row_pair`]).
fn max_pool(conv: &[f32], bias: &[f32], g: &Geometry) -> (Vec<f32>, Vec<u32>) {
    let (out_height, out_width) = g.conv_size();
    let (pooled_height, pooled_width) = (out_height / 2, out_width / 2);
    let plane = pooled_height * pooled_width;
    let mut output = vec![0.0; g.batch * g.filters * plane];
    let mut argmax = vec![0u32; output.len()];
    output
        .par_chunks_mut(plane)
        .zip(argmax.par_chunks_mut(plane))
        .enumerate()
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
                pool_row_pair(
                    &source[2 * py * out_width..][..2 * out_width],
                    |v| v,
                    bias[filter],
                    output,
                    argmax,
                    top as u32,
                );
            }
        });
    (output, argmax)
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
pub(super) fn pool_row_pair(
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

/// The unpooled layer's output: `conv` `[filters, batch * out pixels]` plus the bias, as
/// `[batch, filters, out_height, out_width]`.
fn arrange(conv: &[f32], bias: &[f32], g: &Geometry) -> Vec<f32> {
    let (height, width) = g.conv_size();
    let plane = height * width;
    let mut output = vec![0.0; g.batch * g.filters * plane];
    output
        .par_chunks_mut(plane)
        .enumerate()
        .for_each(|(plane_index, output)| {
            let (image, filter) = (plane_index / g.filters, plane_index % g.filters);
            let source = &conv[filter * g.pixels() + image * plane..][..plane];
            for (value, &sum) in output.iter_mut().zip(source) {
                *value = sum + bias[filter];
            }
        });
    output
}

/// The adjoint of [`arrange`]: the output's gradient as `[filters, batch * out pixels]`.
fn disarrange(grad: &[f32], g: &Geometry) -> Vec<f32> {
    let (height, width) = g.conv_size();
    let plane = height * width;
    let mut conv_grad = vec![0.0; g.filters * g.pixels()];
    conv_grad
        .par_chunks_mut(g.pixels())
        .enumerate()
        .for_each(|(filter, row)| {
            for (image, target) in row.chunks_exact_mut(plane).enumerate() {
                target.copy_from_slice(&grad[(image * g.filters + filter) * plane..][..plane]);
            }
        });
    conv_grad
}

/// The pool's backward pass: each output's gradient at its maximum's position in `[filters,
/// batch * out pixels]`, zero elsewhere.
fn unpool(grad: &[f32], argmax: &[u32], g: &Geometry) -> Vec<f32> {
    let plane = grad.len() / (g.batch * g.filters);
    let mut conv_grad = vec![0.0; g.filters * g.pixels()];
    conv_grad
        .par_chunks_mut(g.pixels())
        .enumerate()
        .for_each(|(filter, row)| {
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

/// The values of a contiguous flex tensor in row-major order.
pub(super) fn values(tensor: &FlexTensor) -> &[f32] {
    let (start, end) = tensor
        .layout()
        .contiguous_offsets()
        .expect("a contiguous tensor");
    &tensor.storage::<f32>()[start..end]
}

/// `sum(f(a[i], b[i]))` over 8 lanes, so that the compiler vectorises it (a plain float sum
/// must keep its order and cannot).
pub(super) fn lane_sum(a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32) -> f32 {
    let mut lanes = [0.0f32; 8];
    let (a_chunks, b_chunks) = (a.chunks_exact(8), b.chunks_exact(8));
    let tail: f32 = a_chunks
        .remainder()
        .iter()
        .zip(b_chunks.remainder())
        .map(|(&x, &y)| f(x, y))
        .sum();
    for (x, y) in a_chunks.zip(b_chunks) {
        for k in 0..8 {
            lanes[k] += f(x[k], y[k]);
        }
    }
    lanes.iter().sum::<f32>() + tail
}

/// A contiguous flex tensor of `values` with shape `dims`.
pub(super) fn flex_tensor<E: Element>(values: Vec<E>, dims: Vec<usize>) -> FlexTensor {
    FlexTensor::new(
        Bytes::from_elems(values),
        Layout::contiguous(Shape::from(dims)),
        E::dtype(),
    )
}

/// The flex forward pass, in plain values.
struct Forward {
    output: Vec<f32>,
    argmax: Vec<u32>,
    x: FlexTensor,
    weight: FlexTensor,
    geometry: Geometry,
}

impl Forward {
    /// Block by block of images (see [`Geometry::blocks`]): unfold, multiply, pool (or add
    /// the bias and lay out).
    fn run(
        x: FlexTensor,
        weight: FlexTensor,
        bias: FlexTensor,
        padding: usize,
        pool: bool,
    ) -> Forward {
        let (x, weight, bias) = (
            x.to_contiguous(),
            weight.to_contiguous(),
            bias.to_contiguous(),
        );
        let dims = x.layout().shape().to_vec();
        let weight_dims = weight.layout().shape().to_vec();
        let geometry = Geometry {
            batch: dims[0],
            channels: dims[1],
            height: dims[2],
            width: dims[3],
            filters: weight_dims[0],
            kernel: weight_dims[2],
            padding,
            pool,
        };
        let g = &geometry;
        let (weight_rows, bias_values) = (values(&weight), values(&bias));
        let blocks: Vec<(Vec<f32>, Vec<u32>)> = g
            .blocks(values(&x), g.input_size())
            .map(|(_, block, x)| {
                let columns = unfold(x, &block);
                let conv = matmul(
                    block.filters,
                    block.rows(),
                    block.pixels(),
                    Operand::rows(weight_rows, block.rows()),
                    Operand::rows(&columns, block.pixels()),
                );
                if block.pool {
                    max_pool(&conv, bias_values, &block)
                } else {
                    (arrange(&conv, bias_values, &block), Vec::new())
                }
            })
            .collect();
        let (output, argmax) = blocks.into_iter().fold(
            (Vec::new(), Vec::new()),
            |(mut output, mut argmax), (block_output, block_argmax)| {
                output.extend_from_slice(&block_output);
                argmax.extend_from_slice(&block_argmax);
                (output, argmax)
            },
        );
        Forward {
            output,
            argmax,
            x,
            weight,
            geometry,
        }
    }

    fn output(output: Vec<f32>, g: &Geometry) -> FlexTensor {
        let (height, width) = g.output_size();
        flex_tensor(output, vec![g.batch, g.filters, height, width])
    }
}

impl ConvPool for Flex {
    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        padding: usize,
        pool: bool,
    ) -> FloatTensor<Self> {
        let forward = Forward::run(x, weight, bias, padding, pool);
        Forward::output(forward.output, &forward.geometry)
    }
}

impl ConvPoolKernels for Flex {
    fn fused_conv2d_saving(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        padding: usize,
        pool: bool,
    ) -> (FloatTensor<Self>, Saved<Self>) {
        let forward = Forward::run(x, weight, bias, padding, pool);
        let g = forward.geometry;
        let count = forward.argmax.len();
        let saved = Saved {
            x: forward.x,
            argmax: flex_tensor(forward.argmax, vec![count]),
            weight: forward.weight,
            geometry: g,
        };
        (Forward::output(forward.output, &g), saved)
    }

    fn fused_conv2d_backward(
        grad: FloatTensor<Self>,
        saved: Saved<Self>,
        input_grad: bool,
    ) -> LayerGradients<Self> {
        let g = &saved.geometry;
        let grad = grad.to_contiguous();
        let grad = values(&grad);
        let argmax = saved.argmax.storage::<u32>();
        let weight_rows = values(&saved.weight);
        let plane = grad.len() / (g.batch * g.filters);
        let mut bias_grad = vec![0.0f32; g.filters];
        for (index, chunk) in grad.chunks_exact(plane).enumerate() {
            bias_grad[index % g.filters] += lane_sum(chunk, chunk, |v, _| v);
        }
        // Per block: the columns again (cheaper than keeping them: they are in cache now), the
        // convolution's gradient, this block's share of the weight's gradient, and its images'
        // gradient.
        let output_size = g.filters * plane;
        let blocks: Vec<(Vec<f32>, Option<Vec<f32>>)> = g
            .blocks(values(&saved.x), g.input_size())
            .map(|(first_image, block, x)| {
                let outputs = first_image * output_size..(first_image + block.batch) * output_size;
                let columns = unfold(x, &block);
                let conv_grad = if block.pool {
                    unpool(&grad[outputs.clone()], &argmax[outputs], &block)
                } else {
                    disarrange(&grad[outputs], &block)
                };
                let weight_grad = matmul(
                    block.filters,
                    block.pixels(),
                    block.rows(),
                    Operand::rows(&conv_grad, block.pixels()),
                    Operand::transposed(&columns, block.pixels()),
                );
                let x_grad = input_grad.then(|| {
                    let columns_grad = matmul(
                        block.rows(),
                        block.filters,
                        block.pixels(),
                        Operand::transposed(weight_rows, block.rows()),
                        Operand::rows(&conv_grad, block.pixels()),
                    );
                    fold(&columns_grad, &block)
                });
                (weight_grad, x_grad)
            })
            .collect();
        let mut weight_grad = vec![0.0f32; g.filters * g.rows()];
        let mut x_grad = input_grad.then(|| Vec::with_capacity(g.batch * g.input_size()));
        for (block_weight_grad, block_x_grad) in blocks {
            for (sum, value) in weight_grad.iter_mut().zip(block_weight_grad) {
                *sum += value;
            }
            if let (Some(x_grad), Some(block_x_grad)) = (&mut x_grad, block_x_grad) {
                x_grad.extend_from_slice(&block_x_grad);
            }
        }
        (
            x_grad.map(|x_grad| flex_tensor(x_grad, vec![g.batch, g.channels, g.height, g.width])),
            flex_tensor(weight_grad, vec![g.filters, g.channels, g.kernel, g.kernel]),
            flex_tensor(bias_grad, vec![g.filters]),
        )
    }
}

impl<B: Backend + ConvPool + ConvPoolKernels, C: CheckpointStrategy> ConvPool for Autodiff<B, C> {
    fn fused_conv2d(
        x: FloatTensor<Self>,
        weight: FloatTensor<Self>,
        bias: FloatTensor<Self>,
        padding: usize,
        pool: bool,
    ) -> FloatTensor<Self> {
        #[derive(Debug)]
        struct ConvPoolBackward;

        impl<B: Backend + ConvPoolKernels> Backward<B, 3> for ConvPoolBackward {
            type State = Saved<B>;

            fn backward(
                self,
                ops: Ops<Self::State, 3>,
                grads: &mut Gradients,
                _checkpointer: &mut Checkpointer,
            ) {
                let [x_node, weight_node, bias_node] = ops.parents;
                let grad = grads.consume::<B>(&ops.node);
                let (x_grad, weight_grad, bias_grad) =
                    B::fused_conv2d_backward(grad, ops.state, x_node.is_some());
                if let (Some(node), Some(x_grad)) = (x_node, x_grad) {
                    grads.register::<B>(node.id, x_grad);
                }
                if let Some(node) = weight_node {
                    grads.register::<B>(node.id, weight_grad);
                }
                if let Some(node) = bias_node {
                    grads.register::<B>(node.id, bias_grad);
                }
            }
        }

        let nodes = [x.node(), weight.node(), bias.node()];
        match ConvPoolBackward
            .prepare::<C>(nodes)
            .compute_bound()
            .stateful()
        {
            OpsKind::Tracked(prep) => {
                let (output, saved) = B::fused_conv2d_saving(
                    x.into_primitive(),
                    weight.into_primitive(),
                    bias.into_primitive(),
                    padding,
                    pool,
                );
                prep.finish(saved, output)
            }
            OpsKind::UnTracked(prep) => prep.finish(B::fused_conv2d(
                x.into_primitive(),
                weight.into_primitive(),
                bias.into_primitive(),
                padding,
                pool,
            )),
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use crate::model::layers::{conv2d, conv2d_max_pool};
    use burn::module::Param;
    use burn::nn::PaddingConfig2d;
    use burn::nn::conv::Conv2dConfig;
    use burn::nn::pool::MaxPool2dConfig;
    use burn::prelude::*;
    use burn::tensor::Distribution;

    /// Largest difference between `a` and `b` relative to `a`'s largest magnitude.
    pub(in crate::model) fn relative_difference<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> f32 {
        assert_eq!(a.dims(), b.dims());
        let scale = a.clone().abs().max().into_scalar::<f32>().max(1.0);
        (a - b).abs().max().into_scalar::<f32>() / scale
    }

    /// The branch-free pool row against a plain window-by-window one: ties (integer values)
    /// go to the first position, NaN wins and the last NaN of a window is the one kept (as in
    /// PyTorch), infinities are maxima, with a transform that flips the order.
    #[test]
    fn pool_row_pair_matches_a_plain_loop() {
        use super::pool_row_pair;
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

    /// Output and input, weight and bias gradients equal burn's conv + pool for the CNN's and
    /// LeNet-5's inner layers and a small padded one; on integer-valued inputs too, where
    /// windows hold equal maxima and the gradient must go to the same (first) one. 20 images
    /// make several blocks, the last one partial, for both inner layers.
    #[test]
    fn fused_layer_matches_burn_in_values_and_all_gradients() {
        let device = Device::flex().autodiff();
        device.seed(3);
        let pool = MaxPool2dConfig::new([2, 2]).init();
        let shapes = [(32, 64, 3, 1, 14), (6, 16, 5, 0, 14), (3, 4, 3, 2, 6)];
        for (inputs, filters, kernel, pad, size) in shapes {
            for integers in [false, true] {
                let mut conv = Conv2dConfig::new([inputs, filters], [kernel, kernel])
                    .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                    .init(&device);
                let mut x = Tensor::<4>::random(
                    [20, inputs, size, size + 2],
                    Distribution::Normal(0.0, 1.0),
                    &device,
                );
                if integers {
                    x = x.round().clamp(-1.0, 1.0).detach();
                    conv.weight = Param::from_tensor(conv.weight.val().sign().detach());
                }
                let run = |fused: bool| {
                    let x = x.clone().require_grad();
                    let y = if fused {
                        conv2d_max_pool(&conv, &pool, x.clone())
                    } else {
                        pool.forward(conv.forward(x.clone()))
                    };
                    let grads = (y.clone() * y.clone()).sum().backward();
                    let weight = conv.weight.val().grad(&grads).unwrap();
                    let bias = conv.bias.as_ref().unwrap().val().grad(&grads).unwrap();
                    (y.inner(), x.grad(&grads).unwrap(), weight, bias)
                };
                let (y0, x0, w0, b0) = run(false);
                let (y1, x1, w1, b1) = run(true);
                let case = format!("{inputs}->{filters} k{kernel} p{pad}, integers {integers}");
                assert!(relative_difference(y0, y1) < 1e-5, "output, {case}");
                assert!(relative_difference(x0, x1) < 1e-5, "input grad, {case}");
                assert!(relative_difference(w0, w1) < 1e-5, "weight grad, {case}");
                assert!(relative_difference(b0, b1) < 1e-5, "bias grad, {case}");
            }
        }
    }

    /// Without autodiff (evaluation), and with an input that needs no gradient (a first layer),
    /// the fused layer still agrees with burn's.
    #[test]
    fn fused_layer_matches_burn_when_evaluating_and_for_constant_inputs() {
        let pool = MaxPool2dConfig::new([2, 2]).init();
        let device = Device::flex();
        device.seed(11);
        let conv = Conv2dConfig::new([2, 8], [3, 3])
            .with_padding(PaddingConfig2d::Explicit(1, 1, 1, 1))
            .init(&device);
        let x = Tensor::<4>::random([3, 2, 10, 12], Distribution::Normal(0.0, 1.0), &device);
        let expected = pool.forward(conv.forward(x.clone()));
        let got = conv2d_max_pool(&conv, &pool, x.clone());
        assert!(relative_difference(expected, got) < 1e-5);
        // A NaN input (a diverging trial) reaches the output instead of losing to the maximum.
        let poisoned = x.slice_assign(
            [0..1, 0..1, 4..5, 4..5],
            Tensor::full([1, 1, 1, 1], f32::NAN, &device),
        );
        let nans = conv2d_max_pool(&conv, &pool, poisoned).is_nan().int().sum();
        assert_eq!(
            nans.into_scalar::<i64>(),
            8 * 4,
            "3x3 NaN neighbourhood, 2x2 outputs, 8 filters"
        );

        let device = Device::flex().autodiff();
        let conv = Conv2dConfig::new([1, 8], [5, 5])
            .with_padding(PaddingConfig2d::Explicit(2, 2, 2, 2))
            .init(&device);
        let x = Tensor::<4>::random([3, 1, 12, 12], Distribution::Uniform(0.0, 1.0), &device);
        let weight_grad = |fused: bool| {
            let y = if fused {
                conv2d_max_pool(&conv, &pool, x.clone())
            } else {
                pool.forward(conv.forward(x.clone()))
            };
            let grads = (y.clone() * y).sum().backward();
            conv.weight.val().grad(&grads).unwrap()
        };
        assert!(relative_difference(weight_grad(false), weight_grad(true)) < 1e-5);
    }

    /// Without the pool the operation is burn's convolution, with a bias and without one (as
    /// before batch norm), in the output and all gradients.
    #[test]
    fn unpooled_layer_matches_burn_with_and_without_bias() {
        let device = Device::flex().autodiff();
        device.seed(8);
        for (bias, pad) in [(true, 1), (false, 1), (false, 0)] {
            let conv = Conv2dConfig::new([4, 6], [3, 3])
                .with_padding(PaddingConfig2d::Explicit(pad, pad, pad, pad))
                .with_bias(bias)
                .init(&device);
            let x = Tensor::<4>::random([9, 4, 7, 9], Distribution::Normal(0.0, 1.0), &device);
            let run = |fused: bool| {
                let x = x.clone().require_grad();
                let y = if fused {
                    conv2d(&conv, x.clone())
                } else {
                    conv.forward(x.clone())
                };
                let grads = (y.clone() * y.clone()).sum().backward();
                let weight = conv.weight.val().grad(&grads).unwrap();
                (y.inner(), x.grad(&grads).unwrap(), weight)
            };
            let (y0, x0, w0) = run(false);
            let (y1, x1, w1) = run(true);
            assert!(relative_difference(y0, y1) < 1e-5, "output, bias {bias}");
            assert!(
                relative_difference(x0, x1) < 1e-5,
                "input grad, bias {bias}"
            );
            assert!(
                relative_difference(w0, w1) < 1e-5,
                "weight grad, bias {bias}"
            );
        }
    }
}
