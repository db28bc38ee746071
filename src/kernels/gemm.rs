//! The matrix product the convolution kernels run on: gemm's microkernels over strided operands,
//! so that a transposed operand is read in place rather than copied.

use super::im2col::filled;
use std::marker::PhantomData;
use std::mem::MaybeUninit;
use std::ops::Range;

/// One operand of [`matmul`]: its values and the distance between rows and between columns.
pub(super) struct Operand<'a> {
    values: &'a [f32],
    row_stride: usize,
    column_stride: usize,
}

impl<'a> Operand<'a> {
    pub(super) fn rows(values: &'a [f32], columns: usize) -> Self {
        Operand {
            values,
            row_stride: columns,
            column_stride: 1,
        }
    }

    /// The transpose of a row-major matrix with `columns` columns.
    pub(super) fn transposed(values: &'a [f32], columns: usize) -> Self {
        Operand {
            values,
            row_stride: 1,
            column_stride: columns,
        }
    }

    pub(super) fn covers(&self, rows: usize, columns: usize) -> bool {
        rows == 0
            || columns == 0
            || (rows - 1) * self.row_stride + (columns - 1) * self.column_stride < self.values.len()
    }
}

/// `lhs [m, k] x rhs [k, n]` as a row-major `[m, n]`, with the gemm crate that flex itself
/// uses; on the trial's compute threads when there is more than one and the product is large.
pub(super) fn matmul(m: usize, k: usize, n: usize, lhs: Operand, rhs: Operand) -> Vec<f32> {
    let parallelism = if rayon::current_num_threads() > 1 && m * n * k >= 1 << 21 {
        gemm::Parallelism::Rayon(0)
    } else {
        gemm::Parallelism::None
    };
    filled(m * n, |product| {
        product_into(k, lhs, rhs, &mut Block::whole(product, n), parallelism);
    })
}

/// `lhs [m, k] x rhs [k, n]` written over `target` (`m` rows of `n` columns), on the calling
/// thread alone.
pub(super) fn matmul_into(k: usize, lhs: Operand, rhs: Operand, target: &mut Block) {
    product_into(k, lhs, rhs, target, gemm::Parallelism::None);
}

fn product_into(
    k: usize,
    lhs: Operand,
    rhs: Operand,
    target: &mut Block,
    parallelism: gemm::Parallelism,
) {
    let (m, n) = (target.rows, target.columns);
    assert!(
        lhs.covers(m, k) && rhs.covers(k, n),
        "matmul operands too short"
    );
    // SAFETY: the assertion above keeps every strided read inside `lhs` and `rhs`; `target`
    // holds `m` rows of `n` values `row_stride` apart, all written (not read: `read_dst` is
    // false).
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            target.start,
            1,
            target.row_stride as isize,
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
    target.written = true;
}

/// A block of columns of a row-major matrix, not yet written, that one thread fills with a
/// product while others fill the other blocks: `rows` rows of `columns` values, `row_stride`
/// apart.
pub(super) struct Block<'a> {
    start: *mut f32,
    rows: usize,
    columns: usize,
    row_stride: usize,
    /// Whether a product has written every value (before that they may be uninitialised).
    written: bool,
    borrowed: PhantomData<&'a mut [MaybeUninit<f32>]>,
}

// SAFETY: a block is the only handle to its values (`column_blocks` hands out disjoint ones
// and holds the matrix borrowed meanwhile), so moving it to another thread shares nothing.
unsafe impl Send for Block<'_> {}

impl<'a> Block<'a> {
    /// All of `matrix` (`width` columns per row) as one block.
    pub(super) fn whole(matrix: &'a mut [MaybeUninit<f32>], width: usize) -> Self {
        let all_columns = 0..width;
        column_blocks(matrix, width, std::slice::from_ref(&all_columns))
            .pop()
            .expect("one range, one block")
    }

    /// Row `row` of the block, once a product has written it.
    pub(super) fn row_mut(&mut self, row: usize) -> &mut [f32] {
        assert!(
            self.written,
            "a block is read only after a product wrote it"
        );
        assert!(
            row < self.rows,
            "row {row} of a block of {} rows",
            self.rows
        );
        // SAFETY: in bounds of the matrix `column_blocks` checked, written, and no other
        // block holds these columns.
        unsafe {
            std::slice::from_raw_parts_mut(self.start.add(row * self.row_stride), self.columns)
        }
    }
}

/// The blocks of `matrix` (`width` columns per row) at the ascending, disjoint column `ranges`.
pub(super) fn column_blocks<'a>(
    matrix: &'a mut [MaybeUninit<f32>],
    width: usize,
    ranges: &[Range<usize>],
) -> Vec<Block<'a>> {
    let rows = matrix.len().checked_div(width).unwrap_or(0);
    assert_eq!(rows * width, matrix.len(), "a matrix of whole rows");
    let start = matrix.as_mut_ptr().cast::<f32>();
    let mut end = 0;
    ranges
        .iter()
        .map(|range| {
            assert!(
                end <= range.start && range.start <= range.end && range.end <= width,
                "column blocks must be ascending, disjoint and inside the matrix"
            );
            end = range.end;
            Block {
                // SAFETY: `range.start <= width`, so the offset stays inside (or one past)
                // the matrix.
                start: unsafe { start.add(range.start) },
                rows,
                columns: range.len(),
                row_stride: width,
                written: false,
                borrowed: PhantomData,
            }
        })
        .collect()
}

/// `extent` split into `pieces` ranges of nearly equal length, each but the last a multiple of
/// 16 values (one AVX-512 register) where `extent` allows it.
pub(super) fn split(extent: usize, pieces: usize) -> Vec<Range<usize>> {
    let step = extent
        .div_ceil(pieces.max(1))
        .next_multiple_of(16)
        .min(extent.max(1));
    (0..extent)
        .step_by(step)
        .map(|start| start..(start + step).min(extent))
        .collect()
}
