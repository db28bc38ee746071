//! The unfolding of convolution inputs into columns (im2col) and its inverse (col2im), with the
//! sizes of one fused layer and the blocks of images it works in.
//!
//! Why blocks: a block's columns take about [`BLOCK_VALUES`] values, so that they stay in a core's
//! cache between being written and being multiplied; the backward pass unfolds each block again
//! rather than keep every block's columns (measured: as fast, and less memory).

use super::flex::balanced;
use rayon::prelude::*;
use std::mem::MaybeUninit;

/// About how many values of columns one block of images unfolds to (1 MiB: within a core's L2).
const BLOCK_VALUES: usize = 1 << 18;

/// The sizes of one fused layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    pub(super) batch: usize,
    pub(super) channels: usize,
    pub(super) height: usize,
    pub(super) width: usize,
    pub(super) filters: usize,
    pub(super) kernel: usize,
    pub(super) padding: usize,
    /// The step between kernel positions, in both directions.
    pub(super) stride: usize,
    /// Whether a 2x2 max pool follows the convolution.
    pub(super) pool: bool,
}

impl Geometry {
    /// The convolution's output height and width.
    pub(super) fn conv_size(&self) -> (usize, usize) {
        let size = |input: usize| (input + 2 * self.padding - self.kernel) / self.stride + 1;
        (size(self.height), size(self.width))
    }

    /// The layer's output height and width: the convolution's, halved when pooled.
    pub(super) fn output_size(&self) -> (usize, usize) {
        let (height, width) = self.conv_size();
        if self.pool {
            (height / 2, width / 2)
        } else {
            (height, width)
        }
    }

    /// Values per input image.
    pub(super) fn input_size(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// `values` (`per_image` values per image) cut into blocks of whole images, each with its
    /// first image's index and its own geometry, in parallel: a block's columns take about
    /// [`BLOCK_VALUES`] values, so that they stay in cache between being written and being
    /// multiplied.
    pub(super) fn blocks<'a>(
        &self,
        values: &'a [f32],
        per_image: usize,
    ) -> impl IndexedParallelIterator<Item = (usize, Geometry, &'a [f32])> + use<'a> {
        let images = self.block_images();
        let geometry = *self;
        balanced(values.par_chunks(images * per_image).enumerate()).map(move |(index, block)| {
            let block_geometry = Geometry {
                batch: block.len() / per_image,
                ..geometry
            };
            (index * images, block_geometry, block)
        })
    }

    /// Images per block of [`Geometry::blocks`]: as many blocks as [`BLOCK_VALUES`] asks for,
    /// sharing the images evenly (a short last block left one thread waiting on the others).
    /// Not from the thread count, so that results do not depend on it.
    pub(super) fn block_images(&self) -> usize {
        let (height, width) = self.conv_size();
        let batch = self.batch.max(1);
        let most = (BLOCK_VALUES / (self.rows() * height * width).max(1)).clamp(1, batch);
        batch.div_ceil(batch.div_ceil(most))
    }

    /// Rows of the columns matrix: one per input channel and kernel position.
    pub(super) fn rows(&self) -> usize {
        self.channels * self.kernel * self.kernel
    }

    /// Columns of the columns matrix: one per image and output pixel.
    pub(super) fn pixels(&self) -> usize {
        let (height, width) = self.conv_size();
        self.batch * height * width
    }

    /// The output columns `x0..x1` whose input column `x * stride + j - padding` lies inside
    /// the image, for kernel column `j`.
    pub(super) fn valid_columns(&self, j: usize) -> (usize, usize) {
        let (_, out_width) = self.conv_size();
        let x0 = self.padding.saturating_sub(j).div_ceil(self.stride);
        let x1 = (self.width + self.padding)
            .saturating_sub(j)
            .div_ceil(self.stride)
            .min(out_width);
        (x0, x1.max(x0))
    }

    /// The input row that output row `y` reads at kernel row `i`, if inside the image.
    pub(super) fn input_row(&self, y: usize, i: usize) -> Option<usize> {
        (y * self.stride + i)
            .checked_sub(self.padding)
            .filter(|&row| row < self.height)
    }

    /// The input values of one output row's valid columns `x0..x1` at kernel column `j`:
    /// `line[x * stride + j - padding]` for each.
    fn row_inputs(
        &self,
        line: &[f32],
        (x0, x1): (usize, usize),
        j: usize,
    ) -> impl Iterator<Item = f32> {
        let first = x0 * self.stride + j - self.padding;
        line[first..]
            .iter()
            .step_by(self.stride)
            .take(x1 - x0)
            .copied()
    }
}

/// `x` `[batch, channels, height, width]` unfolded: row `(channel, i, j)` holds, for every
/// image and output pixel, the input value under kernel position `(i, j)` (0 in the padding).
pub(super) fn unfold(x: &[f32], g: &Geometry) -> Vec<f32> {
    let (out_height, out_width) = g.conv_size();
    let plane = g.height * g.width;
    filled(g.rows() * g.pixels(), |columns| {
        balanced(columns.par_chunks_mut(g.pixels()).enumerate()).for_each(|(row, out)| {
            let (channel, i, j) = (
                row / (g.kernel * g.kernel),
                row / g.kernel % g.kernel,
                row % g.kernel,
            );
            let (x0, x1) = g.valid_columns(j);
            for (image, out) in out.chunks_exact_mut(out_height * out_width).enumerate() {
                let input = &x[(image * g.channels + channel) * plane..][..plane];
                if g.stride == 1 && out_width == g.width {
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
                    if g.stride == 1 {
                        for (value, &input) in middle
                            .iter_mut()
                            .zip(&line[x0 + j - g.padding..x1 + j - g.padding])
                        {
                            *value = MaybeUninit::new(input);
                        }
                    } else {
                        for (value, input) in middle.iter_mut().zip(g.row_inputs(line, (x0, x1), j))
                        {
                            *value = MaybeUninit::new(input);
                        }
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
pub(super) fn unfold_same_width(
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
pub(super) fn filled(len: usize, fill: impl FnOnce(&mut [MaybeUninit<f32>])) -> Vec<f32> {
    let mut values = Vec::with_capacity(len);
    fill(&mut values.spare_capacity_mut()[..len]);
    // SAFETY: every caller writes all `len` values (each is a loop over the whole slice).
    unsafe { values.set_len(len) };
    values
}

/// The adjoint of [`unfold`]: every column entry added back to the input value it came from,
/// in `x` (`[batch, channels, height, width]`, zeros to begin with).
pub(super) fn fold_into(columns: &[f32], g: &Geometry, x: &mut [f32]) {
    let (out_height, out_width) = g.conv_size();
    let pixels = g.pixels();
    // One task per image plane: its k*k rows of columns add into that plane only.
    balanced(x.par_chunks_mut(g.height * g.width).enumerate()).for_each(|(plane_index, plane)| {
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
                        let line = &mut line[x0 * g.stride + j - g.padding..];
                        let source = &source[y * out_width + x0..y * out_width + x1];
                        if g.stride == 1 {
                            for (value, add) in line.iter_mut().zip(source) {
                                *value += add;
                            }
                        } else {
                            for (value, add) in line.iter_mut().step_by(g.stride).zip(source) {
                                *value += add;
                            }
                        }
                    }
                }
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The adjoint of `unfold` by its definition, output row by output row, in the order
    /// `fold_into` adds: kernel position `(i, j)`, then output row, then column.
    fn fold_by_definition(columns: &[f32], g: &Geometry) -> Vec<f32> {
        let (out_height, out_width) = g.conv_size();
        let mut x = vec![0.0f32; g.batch * g.input_size()];
        for (plane_index, plane) in x.chunks_exact_mut(g.height * g.width).enumerate() {
            let (image, channel) = (plane_index / g.channels, plane_index % g.channels);
            for i in 0..g.kernel {
                for j in 0..g.kernel {
                    let row = (channel * g.kernel + i) * g.kernel + j;
                    for y in 0..out_height {
                        for x in 0..out_width {
                            let (row_in, column_in) = (
                                (y * g.stride + i) as isize - g.padding as isize,
                                (x * g.stride + j) as isize - g.padding as isize,
                            );
                            let inside = (0..g.height as isize).contains(&row_in)
                                && (0..g.width as isize).contains(&column_in);
                            if inside {
                                plane[row_in as usize * g.width + column_in as usize] += columns
                                    [row * g.pixels() + (image * out_height + y) * out_width + x];
                            }
                        }
                    }
                }
            }
        }
        x
    }

    /// Folding gives the definition's sums bit for bit, in layers whose output is as wide as
    /// their input and in strided and unpadded ones; the columns hold values at every position,
    /// the padding's included (negative zeros among them), as a product's gradient does.
    #[test]
    fn folding_matches_the_definition_bit_for_bit() {
        let mut state = 7u64;
        let mut next = move || {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            match state >> 60 {
                0 => -0.0,
                1 => 0.0,
                _ => ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.0,
            }
        };
        let shapes = [
            // (channels, side, kernel, padding, stride)
            (3, 7, 3, 1, 1),
            (2, 14, 3, 1, 1),
            (1, 28, 5, 2, 1),
            (4, 14, 1, 0, 1),
            (2, 28, 3, 1, 2),
            (2, 14, 1, 0, 2),
            (3, 12, 3, 0, 1),
        ];
        for (channels, side, kernel, padding, stride) in shapes {
            let g = Geometry {
                batch: 3,
                channels,
                height: side,
                width: side,
                filters: 4,
                kernel,
                padding,
                stride,
                pool: false,
            };
            let columns: Vec<f32> = (0..g.rows() * g.pixels()).map(|_| next()).collect();
            let mut folded = vec![0.0f32; g.batch * g.input_size()];
            fold_into(&columns, &g, &mut folded);
            let expected = fold_by_definition(&columns, &g);
            let bits = |values: &[f32]| values.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&folded), bits(&expected), "{g:?}");
        }
    }
}
