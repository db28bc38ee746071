#!/usr/bin/env python3
"""sweep on a GPU against PyTorch on the same GPU, one program after the other (issue 16).

1. One epoch per seed architecture (mlp, cnn, lenet5; 54,000 training images, batch 64, Adam
   0.001, dropout 0.2): sweep's `epochs.train_seconds` on DEVICE against torch_ref.py's
   `train_s` with `--device cuda`.
2. Throughput: TRIALS one-epoch MLP trials (TRIALS learning rates) as one `sweep run` for each
   `trials_per_gpu` and `fuse`, whole process, against PyTorch's way, one torch_ref.py process
   per trial one after the other (timed over --loop-trials processes and counted per trial).
   The issue's target: at least 10x the throughput of that loop.

Prints markdown tables (and writes them to --out). Built for the lent GPU machine, which has a
python3 with PyTorch (2.11) but no Rust: build sweep here against that PyTorch
(`LIBTORCH_USE_PYTORCH=1 LIBTORCH_BYPASS_VERSION_CHECK=1 cargo build --release --features tch`
with a torch==2.11.0 venv's python3 first on PATH), carry the binary, the four IDX .gz files
and ../shared/bench/torch_ref.py in a git-ignored folder, and run there with LD_LIBRARY_PATH
set to that python's torch/lib. `--device tch-cpu --limit 2000` tries the script on a CPU.

  python3 benches/gpu.py --sweep .gpu/sweep --data .gpu/data --ref .gpu [--device cuda:0]
      [--trials 32] [--per-gpu 1,4,8] [--fuse 1,8,32] [--runs 3] [--parts epoch,throughput]
"""
import argparse, os, sqlite3, statistics, sys, tempfile, time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench import experiment, run, sweep_epoch, torch_epoch  # noqa: E402

def torch_device(device):
    """torch_ref.py's name for sweep's device: cuda:N stays, tch-cpu is cpu."""
    return "cpu" if device == "tch-cpu" else device


def epoch_table(args, tmp):
    rows = ["| architecture | PyTorch train (s) | sweep train (s) | sweep / PyTorch | val acc PyTorch / sweep |",
            "| --- | --- | --- | --- | --- |"]
    for arch in args.archs.split(","):
        ours, theirs = [], []
        for i in range(args.runs):
            r = sweep_epoch(args, tmp, arch, args.device, i)
            if r is None:
                sys.exit(f"{args.sweep} has no libtorch backend: build it with --features tch")
            ours.append(r)
            theirs.append(torch_epoch(args, arch, torch_device(args.device)))
            print(f"[{i + 1}/{args.runs}] {arch}: sweep {ours[-1]['train_s']:.2f} s, "
                  f"PyTorch {theirs[-1]['train_s']:.2f} s", flush=True)
        s = statistics.median(r["train_s"] for r in ours)
        t = statistics.median(r["train_s"] for r in theirs)
        rows.append(f"| {arch} | {t:.2f} | {s:.2f} | {s / t:.2f}x | "
                    f"{theirs[0]['val_acc']:.4f} / {ours[0]['val_acc']:.4f} |")
    return rows


def lrs(trials):
    return [round(0.0005 + 0.0015 * i / max(trials - 1, 1), 6) for i in range(trials)]


def sweep_throughput(args, tmp, per_gpu, fuse, i):
    """Whole-process seconds of one `sweep run` of the TRIALS MLP trials."""
    name = f"mlp{args.trials}-{per_gpu}-{fuse}-{i}"
    toml = os.path.join(tmp, f"{name}.toml")
    grid = (f'[grid]\narch = "mlp"\noptimizer = "adam"\nlr = {lrs(args.trials)}\n'
            'batch_size = 64\nepochs = 1\ndropout = 0.2\n')
    experiment(toml, name, None, limit=args.limit, grid=grid, jobs=per_gpu, threads=args.threads)
    # On a GPU the slots are trials_per_gpu; on a CPU device (trying the script) they are jobs.
    code, wall, _, err = run([args.sweep, "run", toml, "--db", os.path.join(tmp, f"{name}.db"),
                              "--runs", os.path.join(tmp, "runs"), "--data", args.data,
                              "--devices", args.device, "--set", f"sweep.trials_per_gpu={per_gpu}",
                              "--set", f"sweep.fuse={fuse}"])
    if code != 0:
        sys.exit(f"sweep failed:\n{err}")
    con = sqlite3.connect(os.path.join(tmp, f"{name}.db"))
    done = con.execute("SELECT count(*) FROM trials WHERE status = 'done'").fetchone()[0]
    con.close()
    if done != args.trials:
        sys.exit(f"sweep finished {done} of {args.trials} trials:\n{err}")
    return wall


def torch_loop_per_trial(args):
    """Seconds per trial of PyTorch's way: one torch_ref.py process per trial, in turn."""
    start = time.perf_counter()
    for lr in lrs(args.trials)[:args.loop_trials]:
        cmd = [sys.executable, os.path.join(args.ref, "torch_ref.py"), "--data", args.data,
               "--arch", "mlp", "--opt", "adam", "--lr", str(lr), "--epochs", "1", "--batch", "64",
               "--dropout", "0.2", "--split", "0.9", "--device", torch_device(args.device)]
        if args.limit:
            cmd += ["--limit", str(args.limit)]
        code, _, _, err = run(cmd)
        if code != 0:
            sys.exit(f"torch_ref failed:\n{err}")
    return (time.perf_counter() - start) / args.loop_trials


def throughput_table(args, tmp):
    loop = statistics.median(torch_loop_per_trial(args) for _ in range(args.runs))
    loop_wall = loop * args.trials
    print(f"PyTorch loop: {loop:.2f} s per trial", flush=True)
    rows = [f"{args.trials} one-epoch MLP trials; PyTorch, one process per trial in turn: {loop:.2f} s "
            f"per trial (median of {args.runs} timings of {args.loop_trials} processes), "
            f"{loop_wall:.1f} s for {args.trials}.", "",
            "| trials_per_gpu | fuse | runs (s) | median (s) | trials / min | vs PyTorch loop |",
            "| --- | --- | --- | --- | --- | --- |"]
    for per_gpu in args.per_gpu:
        for fuse in args.fuse:
            walls = [sweep_throughput(args, tmp, per_gpu, fuse, i) for i in range(args.runs)]
            m = statistics.median(walls)
            print(f"trials_per_gpu {per_gpu} fuse {fuse}: {m:.1f} s", flush=True)
            rows.append(f"| {per_gpu} | {fuse} | {' / '.join(f'{w:.1f}' for w in walls)} | {m:.1f} | "
                        f"{args.trials * 60 / m:.1f} | {loop_wall / m:.2f}x |")
    return rows


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweep", required=True, help="a sweep binary built with --features tch")
    p.add_argument("--data", required=True, help="the directory of the four Fashion-MNIST IDX files")
    p.add_argument("--ref", required=True, help="the directory holding torch_ref.py")
    p.add_argument("--device", default="cuda:0", help="sweep's device: cuda:N, or tch-cpu to try the script")
    p.add_argument("--threads", type=int, default=2, help="threads per slot (and PyTorch's for part 1)")
    p.add_argument("--archs", default="mlp,cnn,lenet5", help="part 1's architectures")
    p.add_argument("--trials", type=int, default=32)
    p.add_argument("--loop-trials", type=int, default=4)
    p.add_argument("--per-gpu", default="1,4,8")
    p.add_argument("--fuse", default="1,8,32")
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--limit", type=int, default=0, help="part 2 trains on the first N images (0: all)")
    p.add_argument("--parts", default="epoch,throughput")
    p.add_argument("--out", help="also write the tables to this file")
    args = p.parse_args()
    args.per_gpu = [int(v) for v in args.per_gpu.split(",")]
    args.fuse = [int(v) for v in args.fuse.split(",")]
    args.limit = args.limit or None
    args.ref = os.path.abspath(args.ref)
    tmp = tempfile.mkdtemp(prefix="sweep-gpu-")
    md = [f"sweep on `{args.device}` against PyTorch on the same device, {args.runs} runs, medians.", ""]
    if "epoch" in args.parts:
        md += epoch_table(args, tmp) + [""]
    if "throughput" in args.parts:
        md += throughput_table(args, tmp)
    print("\n".join(md))
    if args.out:
        with open(args.out, "w") as f:
            f.write("\n".join(md) + "\n")


if __name__ == "__main__":
    main()
