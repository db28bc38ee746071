"""This machine's arithmetic peak: PyTorch's (MKL) 2048 x 2048 x 2048 float32 matrix product on 1
and on 2 threads, median of the repeats, in GFLOP/s (2 n^3 operations per product). The yardstick
for the training benchmarks: an epoch cannot take less than its arithmetic at this rate.

  VENV/bin/python3 benches/peak.py [--repeats 20] > benches/peak-results.txt
Nothing else should run meanwhile (2 cores).
"""
import argparse, json, os, platform, statistics, time

import torch

p = argparse.ArgumentParser()
p.add_argument("--n", type=int, default=2048)
p.add_argument("--repeats", type=int, default=20)
a = p.parse_args()
a_mat = torch.randn(a.n, a.n)
b_mat = torch.randn(a.n, a.n)
out = torch.empty(a.n, a.n)
result = {"n": a.n, "torch": torch.__version__, "cores": os.cpu_count(), "machine": platform.machine()}
for threads in [1, 2]:
    torch.set_num_threads(threads)
    torch.mm(a_mat, b_mat, out=out)  # warm-up: MKL's first call sets up its buffers
    seconds = []
    for _ in range(a.repeats):
        start = time.perf_counter()
        torch.mm(a_mat, b_mat, out=out)
        seconds.append(time.perf_counter() - start)
    gflops = [2 * a.n ** 3 / s / 1e9 for s in seconds]
    result[f"threads_{threads}"] = {"median_gflops": round(statistics.median(gflops), 1),
                                    "min_gflops": round(min(gflops), 1),
                                    "max_gflops": round(max(gflops), 1), "seconds": seconds}
    print(f"{threads} thread(s): median {statistics.median(gflops):.1f} GFLOP/s "
          f"({min(gflops):.1f} to {max(gflops):.1f})", flush=True)
print(json.dumps(result))
