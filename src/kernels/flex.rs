//! Reading and making flex tensors as plain `f32` values, and the vectorisable sums the kernels
//! share.

use burn::tensor::Element;
use burn_flex::{FlexTensor, Layout};
use burn_std::{Bytes, Shape};
use rayon::prelude::*;

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

/// `values` in chunks of `size` for parallel tasks that each write one chunk, or, when `values`
/// is empty (an output a layer does not have: an unpooled layer's argmax, a first layer's input
/// gradient), `tasks` empty slices, so that it can be zipped with the tasks' inputs all the same.
pub(super) fn chunks_or_empty<T: Send>(
    values: &mut [T],
    size: usize,
    tasks: usize,
) -> impl IndexedParallelIterator<Item = &mut [T]> {
    let stand_ins = if values.is_empty() { tasks } else { 0 };
    values.par_chunks_mut(size.max(1)).chain(
        (0..stand_ins)
            .into_par_iter()
            .map(|_| <&mut [T]>::default()),
    )
}

/// Pieces a parallel loop is cut into at most: enough that the last piece a thread takes is
/// short, few enough that each is worth a job.
const PIECES: usize = 32;

/// `iter` in pieces of at most a [`PIECES`]th of its items. Why: rayon cuts a loop into as many
/// pieces as threads, halved twice, and cuts a piece again only when another thread takes it;
/// a thread that ran out of pieces then waited for the other's last quarter of the loop (batch
/// norm's loops over planes: the CNN with batch norm trained 12% faster with them cut finer).
/// Which thread computes an item does not change what it computes.
pub(super) fn balanced<I: IndexedParallelIterator>(iter: I) -> rayon::iter::MaxLen<I> {
    let most = iter.len().div_ceil(PIECES).max(1);
    iter.with_max_len(most)
}
