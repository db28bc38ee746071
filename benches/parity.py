"""Parity of sweep's training ingredients with PyTorch: each configuration trained by sweep and by
benches/parity_torch.py (the same model, loop and ingredient in PyTorch) with two seeds, on the
full training set (90/10 split), one run after the other. Prints a markdown table of final test
accuracy (mean over the seeds) and the difference; the target is within 0.5 points.

  VENV/bin/python3 benches/parity.py --sweep target/release/sweep [--seeds 1,2] [--epochs 5]
      [--only LABEL] [--skip LABEL] > benches/parity-results.txt
"""
import argparse, json, os, sqlite3, statistics, subprocess, sys, tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
CONFIGS = [
    # label, [grid] lines for sweep, parity_torch.py flags
    ("cnn + batch norm", 'arch = "cnn"\nbatch_norm = true', ["--arch", "cnn", "--batch-norm"]),
    ("cnn + flip+crop", 'arch = "cnn"\naugment = "flip+crop"', ["--arch", "cnn", "--augment", "flip+crop"]),
    ("cnn + cosine, 1 warm-up epoch", 'arch = "cnn"\nschedule = "cosine"\nwarmup_epochs = 1',
     ["--arch", "cnn", "--schedule", "cosine", "--warmup", "1"]),
    ("resnet (16, 32, 64; 2 blocks)", 'arch = "resnet"', ["--arch", "resnet"]),
    ("mlp + label smoothing 0.1", 'arch = "mlp"\nlabel_smoothing = 0.1', ["--arch", "mlp", "--label-smoothing", "0.1"]),
]


def sweep_test_acc(args, tmp, label, grid, seed):
    name = f"parity{len(os.listdir(tmp))}"
    toml = os.path.join(tmp, f"{name}.toml")
    with open(toml, "w") as f:
        f.write(f'[sweep]\nname = "{name}"\nseed = {seed}\nthreads = {args.threads}\n[data]\nsplit = 0.9\n'
                f'[grid]\n{grid}\noptimizer = "adam"\nlr = 0.001\nbatch_size = 64\nepochs = {args.epochs}\n'
                f'dropout = 0.2\n')
    db = os.path.join(tmp, f"{name}.db")
    out = subprocess.run([args.sweep, "run", toml, "--db", db, "--data", args.data, "-q"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"sweep failed on {label}:\n{out.stderr}")
    return sqlite3.connect(db).execute("SELECT test_acc FROM trials").fetchone()[0]


def torch_test_acc(args, flags, seed):
    out = subprocess.run([sys.executable, os.path.join(HERE, "parity_torch.py"), "--data", args.data,
                          "--ref", args.ref, "--epochs", str(args.epochs), "--seed", str(seed),
                          "--threads", str(args.threads)] + flags, capture_output=True, text=True)
    if out.returncode != 0:
        sys.exit(f"parity_torch.py {' '.join(flags)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])["test_acc"]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sweep", default="target/release/sweep")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--ref", default=os.path.join(HERE, "..", "..", "shared", "bench"))
    p.add_argument("--seeds", default="1,2")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--only", default="", help="run the configurations whose label contains this")
    p.add_argument("--skip", default=None, help="leave out the configurations whose label contains this")
    args = p.parse_args()
    CONFIGS[:] = [c for c in CONFIGS if args.only in c[0] and not (args.skip and args.skip in c[0])]
    seeds = [int(s) for s in args.seeds.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for label, grid, flags in CONFIGS:
            ours = [sweep_test_acc(args, tmp, label, grid, s) for s in seeds]
            theirs = [torch_test_acc(args, flags, s) for s in seeds]
            diff = 100 * (statistics.mean(ours) - statistics.mean(theirs))
            rows.append(f"| {label} | {100 * statistics.mean(ours):.2f} ({', '.join(f'{100 * v:.2f}' for v in ours)}) "
                        f"| {100 * statistics.mean(theirs):.2f} ({', '.join(f'{100 * v:.2f}' for v in theirs)}) "
                        f"| {diff:+.2f} | {'yes' if abs(diff) <= 0.5 else 'no'} |")
            print(rows[-1], file=sys.stderr, flush=True)
    print(f"Adam lr 0.001, batch 64, dropout 0.2, {args.epochs} epochs, 54,000 training images, "
          f"{args.threads} threads; seeds {args.seeds}.\n")
    print("| configuration | sweep test acc % (per seed) | PyTorch test acc % (per seed) | difference | within 0.5 |")
    print("| --- | --- | --- | --- | --- |")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
