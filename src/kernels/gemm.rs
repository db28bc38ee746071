//! The matrix product the convolution kernels run on: gemm's microkernels over strided operands,
//! so that a transposed operand is read in place rather than copied.

use super::im2col::filled;

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
