//! Reading and making flex tensors as plain `f32` values, and the vectorisable sums the kernels
//! share.

use burn::tensor::Element;
use burn_flex::{FlexTensor, Layout};
use burn_std::{Bytes, Shape};
use rayon::prelude::*;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicUsize, Ordering};

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

/// An output that parallel tasks write chunk by chunk, cleared chunk by chunk by the task that
/// writes it (in that core's cache, just before the writing) rather than all at once on the
/// calling thread: a layer's `vec![0.0; n]` was a pass over megabytes that the other compute
/// threads waited for (resnet: a tenth of all samples were such clearing).
pub(super) struct Unzeroed<T> {
    values: Vec<MaybeUninit<T>>,
    zeroed: AtomicUsize,
}

impl<T: Copy + Default + Send + Sync> Unzeroed<T> {
    /// `len` values, none written yet.
    pub(super) fn new(len: usize) -> Self {
        let mut values = Vec::with_capacity(len);
        values.resize_with(len, MaybeUninit::uninit);
        Unzeroed {
            values,
            zeroed: AtomicUsize::new(0),
        }
    }

    /// Chunks of `size` values, each cleared as its task takes it, as [`chunks_or_empty`] cuts
    /// them (`tasks` empty slices when there are no values).
    pub(super) fn chunks(
        &mut self,
        size: usize,
        tasks: usize,
    ) -> impl IndexedParallelIterator<Item = &mut [T]> {
        let zeroed = &self.zeroed;
        chunks_or_empty(&mut self.values, size, tasks).map(move |chunk| {
            chunk.fill(MaybeUninit::new(T::default()));
            zeroed.fetch_add(chunk.len(), Ordering::Relaxed);
            // SAFETY: every value of `chunk` was just written; MaybeUninit<T> has T's layout.
            unsafe { &mut *(chunk as *mut [MaybeUninit<T>] as *mut [T]) }
        })
    }

    /// The values, once every chunk has been taken.
    pub(super) fn into_vec(self) -> Vec<T> {
        assert_eq!(
            self.zeroed.into_inner(),
            self.values.len(),
            "a chunk of an output was never written"
        );
        let mut values = std::mem::ManuallyDrop::new(self.values);
        // SAFETY: each of the chunks (disjoint, covering the vector) was written, as the count
        // shows; MaybeUninit<T> has T's layout, so the allocation is a Vec<T>'s.
        unsafe { Vec::from_raw_parts(values.as_mut_ptr().cast(), values.len(), values.capacity()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every chunk a task takes starts cleared, whatever the allocation held before, and an
    /// output some chunk of which no task took is refused rather than read.
    #[test]
    fn unzeroed_chunks_start_cleared_and_all_must_be_taken() {
        // Freed memory full of ones, likely to be handed out again.
        drop(vec![1.0f32; 1000]);
        let mut output = Unzeroed::<f32>::new(1000);
        output.chunks(64, 0).for_each(|chunk| {
            assert!(chunk.iter().all(|&v| v == 0.0));
            chunk[0] = 1.0;
        });
        let values = output.into_vec();
        assert_eq!(
            values.iter().filter(|&&v| v == 1.0).count(),
            1000_usize.div_ceil(64)
        );
        let mut partly = Unzeroed::<u32>::new(100);
        partly
            .chunks(10, 0)
            .zip(rayon::iter::repeat_n((), 5))
            .for_each(|(chunk, ())| chunk.fill(7));
        let refused = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| partly.into_vec()));
        assert!(refused.is_err());
        // No chunks at all: empty outputs stand in for the tasks, and the output is empty.
        let mut none = Unzeroed::<f32>::new(0);
        assert_eq!(none.chunks(8, 3).count(), 3);
        assert!(none.into_vec().is_empty());
    }
}
