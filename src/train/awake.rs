//! Keeping a trial's compute threads awake through its training batches.
//!
//! Why: between two of a batch's parallel operations the training thread spends a while alone
//! (autodiff bookkeeping, the loss, small tensors), long enough for rayon to put the other
//! compute threads to sleep; each operation then waits for one to wake, or runs alone. `perf`
//! showed an MLP's second thread idle more than half of an epoch, and its wake-ups a tenth of
//! the training thread's time.

use std::sync::atomic::{AtomicBool, Ordering};

/// Runs `work` on the calling compute thread while every other thread of its pool takes the
/// jobs `work` shares out as soon as they appear, without sleeping in between. Outside a pool,
/// or in a pool of one thread, just runs `work`. Only for work whose parallel jobs are rayon's
/// (flex): a waiting thread keeps its core busy.
pub(super) fn with_threads_awake<T: Send>(work: impl FnOnce() -> T + Send) -> T {
    let others = rayon::current_num_threads().saturating_sub(1);
    if others == 0 || rayon::current_thread_index().is_none() {
        return work();
    }
    let done = AtomicBool::new(false);
    rayon::scope(|scope| {
        // Each waiter is stolen by another thread before any job of `work` is (stealing takes
        // the oldest job first), so the calling thread never runs one itself while `done`
        // is unset.
        for _ in 0..others {
            scope.spawn(|_| {
                while !done.load(Ordering::Acquire) {
                    if rayon::yield_now() != Some(rayon::Yield::Executed) {
                        // Cheap when each thread has a core; when more threads than cores
                        // run, this hands the core to one that has work.
                        std::thread::yield_now();
                    }
                }
            });
        }
        let result = work();
        done.store(true, Ordering::Release);
        result
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rayon::prelude::*;
    use std::sync::atomic::AtomicUsize;

    /// The work's parallel jobs all run, on both threads, and the call returns its result; on
    /// one thread and outside a pool it is a plain call.
    #[test]
    fn work_runs_to_completion_with_the_other_threads_taking_its_jobs() {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(2)
            .build()
            .expect("a pool");
        let threads_used = AtomicUsize::new(0);
        let sum = pool.install(|| {
            with_threads_awake(|| {
                (0..50)
                    .map(|_| {
                        let seen = (0..64u64)
                            .into_par_iter()
                            .map(|i| {
                                let bit = 1 << rayon::current_thread_index().expect("in the pool");
                                threads_used.fetch_or(bit, Ordering::Relaxed);
                                // Long enough a job that the other thread takes some.
                                let busy: u64 = (0..20_000u64).map(std::hint::black_box).sum();
                                i + busy - 19_999 * 20_000 / 2
                            })
                            .sum::<u64>();
                        assert_eq!(seen, 63 * 64 / 2);
                        seen
                    })
                    .sum::<u64>()
            })
        });
        assert_eq!(sum, 50 * 63 * 64 / 2);
        assert_eq!(
            threads_used.load(Ordering::Relaxed),
            0b11,
            "both threads took jobs"
        );
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .expect("a pool");
        assert_eq!(one.install(|| with_threads_awake(|| 7)), 7);
        assert_eq!(with_threads_awake(|| 8), 8);
    }
}
