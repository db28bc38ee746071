//! This machine's arithmetic peak as sweep's own products reach it: the `gemm` crate (which
//! `src/kernels/gemm.rs` and burn-flex call) on a 2048 x 2048 x 2048 float32 product, on 1 and
//! on 2 threads, median of the repeats, in GFLOP/s. The counterpart of `benches/peak.py`
//! (PyTorch's MKL), in the same output format for `benches/arithmetic.py --peak`: on AMD
//! processors MKL runs a slower code path, so the yardstick is the faster of the two.
//!
//! `cargo bench --bench peak_gemm [-- --repeats 20] > benches/peak-gemm-results.txt`
//! Nothing else should run meanwhile (2 cores).

use std::time::Instant;

fn main() {
    let mut args = std::env::args().skip(1);
    let (n, mut repeats) = (2048usize, 20usize);
    while let Some(arg) = args.next() {
        if arg == "--repeats" {
            repeats = args
                .next()
                .and_then(|v| v.parse().ok())
                .expect("--repeats N");
        }
    }
    let a: Vec<f32> = (0..n * n)
        .map(|i| ((i * 7919) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let b: Vec<f32> = (0..n * n)
        .map(|i| ((i * 104729) % 1000) as f32 / 1000.0 - 0.5)
        .collect();
    let mut out = vec![0.0f32; n * n];
    let mut json = format!(
        "{{\"n\": {n}, \"gemm\": \"gemm crate, x86-v4\", \"cores\": {}",
        std::thread::available_parallelism().map_or(0, |c| c.get())
    );
    for threads in [1usize, 2] {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .expect("a thread pool");
        let parallelism = if threads > 1 {
            gemm::Parallelism::Rayon(threads)
        } else {
            gemm::Parallelism::None
        };
        let product = |out: &mut [f32]| {
            // SAFETY: all three matrices are n x n, row-major, and `out` is written, not read.
            unsafe {
                gemm::gemm(
                    n,
                    n,
                    n,
                    out.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    a.as_ptr(),
                    1,
                    n as isize,
                    b.as_ptr(),
                    1,
                    n as isize,
                    0.0,
                    1.0,
                    false,
                    false,
                    false,
                    parallelism,
                )
            }
        };
        let seconds: Vec<f64> = pool.install(|| {
            product(&mut out); // warm-up
            (0..repeats)
                .map(|_| {
                    let start = Instant::now();
                    product(&mut out);
                    start.elapsed().as_secs_f64()
                })
                .collect()
        });
        let mut gflops: Vec<f64> = seconds
            .iter()
            .map(|s| 2.0 * (n as f64).powi(3) / s / 1e9)
            .collect();
        gflops.sort_by(f64::total_cmp);
        let median = gflops[gflops.len() / 2];
        let (min, max) = (gflops[0], gflops[gflops.len() - 1]);
        println!("{threads} thread(s): median {median:.1} GFLOP/s ({min:.1} to {max:.1})");
        json += &format!(
            ", \"threads_{threads}\": {{\"median_gflops\": {median:.1}, \"min_gflops\": {min:.1}, \"max_gflops\": {max:.1}, \"seconds\": {seconds:?}}}"
        );
    }
    println!("{json}}}");
}
