"""sweep against PyTorch on this machine, one after the other, written to BENCHMARKS.md.

1. One epoch of training (54,000 images, batch 64, Adam 0.001, dropout 0.2) per architecture (and
   for cnn with batch norm, with batch norm and flip+crop, and resnet) on
   each sweep backend (flex; tch-cpu when the binary has it) and with ../shared/bench/torch_ref.py
   at the same thread count, back to back within each run (--runs; --short-runs in all for the
   architectures whose epochs take seconds). Reported: median training seconds
   (the batches alone: sweep's epochs.train_seconds, torch_ref's train_s), the ratio sweep /
   PyTorch of each run and their median and range, peak memory of the one-trial process, and
   where the rest of sweep's wall time went.
2. Forward + backward per CNN layer, burn flex against PyTorch (cargo bench --bench layers).
3. A whole 12-trial sweep (mlp, cnn, lenet5 x adam, sgd momentum 0.9 x lr 0.001, 0.01; 1 epoch on
   10k images, batch 64): sweep run --jobs 2, a loop of torch_ref.py processes, and Optuna's
   GridSampler in one process with SQLite storage and n_jobs=2 (benches/optuna_grid.py); sweep
   both as it runs by default (every trial tested on 10,000 images) and with test_limit = 0.

Run with a Python that has torch 2.9 (and optuna):
  VENV/bin/python3 benches/bench.py --sweep target/release/sweep [--runs 3] [--short-runs 9]
      [--out BENCHMARKS.md]
      [--backends cpu,tch-cpu] [--no-layers] [--archs mlp,cnn,...]
The raw results go to benches/bench-results.json (--raw), the tables to BENCHMARKS.md.
Nothing else should run meanwhile (2 cores: a build distorts every timing).
"""
import argparse, datetime, json, os, platform, re, sqlite3, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
# Architectures whose epoch (the whole process, each side) took under this many seconds in every
# one of the first runs get --short-runs runs in all.
SHORT_S = 20
ARCHS = ["mlp", "cnn", "lenet5", "convnet", "cnn-bn", "cnn-bn-flip-crop", "resnet"]
TORCH_ARCH = {"mlp": "mlp", "cnn": "cnn", "lenet5": "lenet5", "convnet": "seed000"}
# Configurations beyond the seed architectures: sweep's [grid] lines, and the flags of
# benches/parity_torch.py, which trains the same model in PyTorch (torch_ref.py has only the seeds').
INGREDIENTS = {
    "cnn-bn": ('arch = "cnn"\nbatch_norm = true', ["--arch", "cnn", "--batch-norm"]),
    "cnn-bn-flip-crop": ('arch = "cnn"\nbatch_norm = true\naugment = "flip+crop"',
                         ["--arch", "cnn", "--batch-norm", "--augment", "flip+crop"]),
    "resnet": ('arch = "resnet"', ["--arch", "resnet"]),
}


def run(cmd, env=None):
    """Runs cmd; returns (wall seconds, stdout, stderr, peak RSS in MiB of that process)."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    out, err = proc.communicate()
    wall = time.perf_counter() - start
    # The child is reaped by communicate(); its own peak RSS comes from /usr/bin/time instead.
    return proc.returncode, wall, out, err


def timed(cmd, env=None):
    """Like run() but through /usr/bin/time -v for the process's peak RSS and CPU seconds (user +
    system; NaN where the machine has no /usr/bin/time, as the lent GPU machine may not)."""
    if not os.path.exists("/usr/bin/time"):
        code, wall, out, err = run(cmd, env)
        return code, wall, out, err, float("nan"), float("nan")
    code, wall, out, err = run(["/usr/bin/time", "-v"] + cmd, env)
    rss = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    cpu = [float(m) for m in re.findall(r"(?:User|System) time \(seconds\): ([\d.]+)", err)]
    return (code, wall, out, err, (int(rss.group(1)) / 1024 if rss else float("nan")),
            sum(cpu) if len(cpu) == 2 else float("nan"))


def model_lines(arch):
    """The [grid] lines that pick `arch` (an architecture or an INGREDIENTS configuration)."""
    return INGREDIENTS[arch][0] if arch in INGREDIENTS else f'arch = "{arch}"'


def experiment(path, name, arch, limit=None, grid=None, jobs=1, threads=2):
    lines = [f'[sweep]\nname = "{name}"\njobs = {jobs}\nthreads = {threads}\n',
             "[data]\nsplit = 0.9\n" + (f"limit = {limit}\n" if limit else ""),
             grid or f'[grid]\n{model_lines(arch)}\noptimizer = "adam"\n'
                     'lr = 0.001\nbatch_size = 64\nepochs = 1\ndropout = 0.2\n']
    with open(path, "w") as f:
        f.write("\n".join(lines))


def sweep_epoch(args, tmp, arch, device, i):
    name = f"{arch}-{device}-{i}"
    toml = os.path.join(tmp, f"{name}.toml")
    db = os.path.join(tmp, f"{name}.db")
    experiment(toml, name, arch)
    code, wall, _, err, rss, cpu = timed([args.sweep, "run", toml, "--db", db, "--devices", device,
                                     "--data", args.data])
    if code != 0:
        if "--features tch" in err:
            return None
        sys.exit(f"sweep failed:\n{err}")
    con = sqlite3.connect(db)
    train_s, epoch_s, val_acc = con.execute("SELECT train_seconds, seconds, val_acc FROM epochs").fetchone()
    duration = con.execute("SELECT duration_s FROM trials").fetchone()[0]
    con.close()
    writes = re.search(r"database writes took ([\d.]+) s", err)
    return {"train_s": train_s, "epoch_s": epoch_s, "val_acc": val_acc, "trial_s": duration, "wall_s": wall,
            "rss_mib": rss, "cpu_s": cpu, "db_s": float(writes.group(1)) if writes else float("nan")}


def torch_epoch(args, arch, device="cpu"):
    """One epoch of `arch` in PyTorch on `device` (a seed architecture for any but "cpu")."""
    if arch in INGREDIENTS:
        script = [os.path.join(HERE, "parity_torch.py"), "--ref", args.ref] + INGREDIENTS[arch][1]
    else:
        script = [os.path.join(args.ref, "torch_ref.py"), "--arch", TORCH_ARCH[arch], "--device", device]
    code, wall, out, err, rss, cpu = timed([sys.executable] + script + [
        "--data", args.data, "--epochs", "1", "--batch", "64", "--opt", "adam", "--lr", "0.001",
        "--dropout", "0.2", "--split", "0.9", "--threads", str(args.threads)])
    if code != 0:
        sys.exit(f"torch_ref failed:\n{err}")
    result = json.loads(out.strip().splitlines()[-1])
    return {"train_s": result["epochs"][0]["train_s"], "wall_s": wall, "rss_mib": rss, "cpu_s": cpu,
            "val_acc": result["epochs"][0]["val_acc"], "torch": result["torch"]}


GRID12 = """[grid]
arch = ["mlp", "cnn", "lenet5"]
optimizer = ["adam", "sgd"]
lr = [0.001, 0.01]
batch_size = 64
epochs = 1
dropout = 0.2
[optimizer.sgd]
momentum = 0.9
"""


def sweep12(args, tmp, i, test=True):
    """sweep run of the grid; test=False sets test_limit = 0 (no per-trial test pass), which is
    the work Optuna's objective does: train and validate."""
    name = f"grid12-{i}" + ("" if test else "-notest")
    toml = os.path.join(tmp, f"{name}.toml")
    experiment(toml, name, None, limit=10000, grid=GRID12, jobs=2, threads=1)
    extra = [] if test else ["--set", "data.test_limit=0"]
    code, wall, _, err = run([args.sweep, "run", toml, "--db", os.path.join(tmp, f"{name}.db"),
                              "--data", args.data] + extra)
    if code != 0:
        sys.exit(f"sweep failed:\n{err}")
    return wall


def torch_loop12(args):
    start = time.perf_counter()
    for arch in ["mlp", "cnn", "lenet5"]:
        for opt in ["adam", "sgdm"]:
            for lr in ["0.001", "0.01"]:
                code, _, _, err = run([sys.executable, os.path.join(args.ref, "torch_ref.py"),
                                       "--data", args.data, "--arch", arch, "--opt", opt, "--lr", lr,
                                       "--epochs", "1", "--batch", "64", "--limit", "10000", "--split", "0.9"])
                if code != 0:
                    sys.exit(f"torch_ref failed:\n{err}")
    return time.perf_counter() - start


def optuna12(args, tmp, i):
    code, wall, out, err = run([sys.executable, os.path.join(HERE, "optuna_grid.py"), "--data", args.data,
                                "--ref", args.ref, "--storage", os.path.join(tmp, f"optuna-{i}.db")])
    if code != 0:
        sys.exit(f"optuna failed:\n{err}")
    return wall, json.loads(out.strip().splitlines()[-1])


def med(values):
    values = [v for v in values if v == v]
    return statistics.median(values) if values else float("nan")


def ratios(numerators, denominators):
    """Each run's ratio (the two measured back to back in that run)."""
    return [n / d for n, d in zip(numerators, denominators) if n == n and d == d and d > 0]


def ratio_cell(values):
    """Median of per-run ratios and their range."""
    if not values:
        return "-"
    if len(values) == 1:
        return f"{values[0]:.2f}x"
    return f"{med(values):.2f}x ({min(values):.2f}-{max(values):.2f})"


# A section that another script or a person wrote, which this script keeps as it is.
MARKED = r"<!-- ([\w-]+) -->.*?<!-- /\1 -->"


def stray_paragraphs(old, new):
    """The paragraphs of `old` outside marked sections whose opening `new` lacks: text a person
    added beside the tables, which rewriting the file would drop. (The tables' own paragraphs
    open the same way in every run; only their figures change. A table is known by its first
    column's heading: a column added after it is still the script's table.)"""
    outside = re.sub(MARKED, "", old, flags=re.S)
    paragraphs = (p.strip() for p in re.split(r"\n\s*\n", outside))

    def opening(paragraph):
        first = paragraph.splitlines()[0]
        return first[:first.index("|", 1) + 1] if first.startswith("|") and "|" in first[1:] else first[:30]

    return [p for p in paragraphs if p and opening(p) not in new]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--sweep", default="target/release/sweep")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--ref", default=os.path.join(HERE, "..", "..", "shared", "bench"))
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--short-runs", type=int, default=9,
                   help=f"runs in all for the architectures whose epochs took under {SHORT_S} s on both sides")
    p.add_argument("--out", default="BENCHMARKS.md")
    p.add_argument("--skip-sweep12", action="store_true")
    p.add_argument("--backends", default="cpu,tch-cpu", help="sweep devices to time (tch-cpu only when built)")
    p.add_argument("--raw", default=os.path.join(HERE, "bench-results.json"))
    p.add_argument("--no-layers", action="store_true", help="skip the per-layer table (cargo bench)")
    p.add_argument("--archs", default=",".join(ARCHS), help="comma-separated subset (a quick check)")
    p.add_argument("--from-raw", action="store_true", help="only rewrite the tables from --raw")
    args = p.parse_args()
    if args.from_raw:
        return write_markdown(args, json.load(open(args.raw)))
    ARCHS[:] = args.archs.split(",")
    args.ref = os.path.abspath(args.ref)
    tmp = tempfile.mkdtemp(prefix="sweep-bench-")
    layers = None
    if not args.no_layers:
        # First, so that building the bench is over before any timing starts.
        out = subprocess.run(["cargo", "bench", "--bench", "layers", "--", "--python", sys.executable,
                              "--threads", str(args.threads)], capture_output=True, text=True, cwd=os.path.join(HERE, ".."))
        if out.returncode != 0:
            sys.exit(f"cargo bench --bench layers failed:\n{out.stderr}")
        layers = [l for l in out.stdout.splitlines() if l.startswith("|")]
        print("\n".join(layers), flush=True)
    results = {arch: {"cpu": [], "tch-cpu": [], "torch": []} for arch in ARCHS}
    has_tch = "tch-cpu" in args.backends.split(",")

    def pair(i, arch, runs):
        """One run of `arch`: sweep on each device, then PyTorch, back to back."""
        nonlocal has_tch
        for device in ["cpu", "tch-cpu"] if has_tch else ["cpu"]:
            r = sweep_epoch(args, tmp, arch, device, i)
            if r is None:
                has_tch = False
                continue
            results[arch][device].append(r)
            print(f"[{i + 1}/{runs}] sweep {device:7} {arch:8} train {r['train_s']:.2f} s", flush=True)
        r = torch_epoch(args, arch)
        results[arch]["torch"].append(r)
        print(f"[{i + 1}/{runs}] torch         {arch:8} train {r['train_s']:.2f} s", flush=True)

    for i in range(args.runs):
        for arch in ARCHS:
            pair(i, arch, args.runs)
    # This machine has slow spells (another tenant on the host: the same binary's MLP epoch takes
    # 0.51 s or 0.78 s, and as much more CPU time, from one minute to the next) that a median of
    # three runs does not outvote. Where a pair costs seconds, more pairs are cheap.
    short = [arch for arch in ARCHS
             if max(r["wall_s"] for k in ["cpu", "torch"] for r in results[arch][k]) < SHORT_S]
    for i in range(args.runs, args.short_runs):
        for arch in short:
            pair(i, arch, args.short_runs)

    whole = {"sweep": [], "sweep_notest": [], "loop": [], "optuna": []}
    optuna_version = "-"
    if not args.skip_sweep12:
        for i in range(args.runs):
            whole["sweep"].append(sweep12(args, tmp, i))
            whole["sweep_notest"].append(sweep12(args, tmp, i, test=False))
            whole["loop"].append(torch_loop12(args))
            wall, info = optuna12(args, tmp, i)
            whole["optuna"].append(wall)
            optuna_version = info["optuna"]
            print(f"[{i + 1}/{args.runs}] 12 trials: sweep {whole['sweep'][-1]:.1f} s (without test "
                  f"{whole['sweep_notest'][-1]:.1f} s), torch loop "
                  f"{whole['loop'][-1]:.1f} s, optuna {wall:.1f} s", flush=True)

    cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
    meta = {"date": str(datetime.date.today()), "cpu": cpu, "cores": os.cpu_count(),
            "os": f"{platform.system()} {platform.release()}",
            "sweep": subprocess.run([args.sweep, "--version"], capture_output=True, text=True).stdout.strip(),
            "torch": results[ARCHS[0]]["torch"][0]["torch"], "python": platform.python_version(),
            "optuna": optuna_version, "runs": args.runs, "short_runs": args.short_runs, "threads": args.threads}
    raw = {"meta": meta, "epoch": results, "sweep12": whole, "layers": layers}
    with open(args.raw, "w") as f:
        json.dump(raw, f, indent=1)
    write_markdown(args, raw)


def write_markdown(args, raw):
    """BENCHMARKS.md's sections from the raw results (also on their own: --from-raw)."""
    meta, results, whole, layers = raw["meta"], raw["epoch"], raw["sweep12"], raw["layers"]
    archs = list(results)
    raw_link = os.path.relpath(args.raw, os.path.dirname(os.path.abspath(args.out)))
    md = ["# Benchmarks", "",
          f"Generated by `benches/bench.py` on {meta['date']}: {meta['cpu']}, {meta['cores']} cores, "
          f"{meta['os']}; {meta['sweep']}, PyTorch {meta['torch']} CPU, Python {meta['python']}, "
          f"Optuna {meta['optuna']}. {meta['runs']} runs (of one epoch: more where an epoch takes seconds, see "
          "the runs column); in each run every program ran one after the other "
          "on an otherwise idle machine, so each run's ratio compares programs measured back to back. "
          f"Raw results: [`{raw_link}`]({raw_link}).", "",
          "## One epoch of training per architecture", "",
          f"54,000 training images, batch 64, Adam lr 0.001, dropout 0.2, {meta['threads']} threads. Seconds "
          "of the training batches alone (sweep: `epochs.train_seconds`; PyTorch: `torch_ref.py` `train_s`, "
          "preloaded tensors; `parity_torch.py` for the batch-norm, augmented and resnet rows). Seconds are "
          "medians over the runs; a ratio is sweep / PyTorch within each run, then the median of those "
          "ratios (range in brackets). Lower is better; 1.00x is parity. Runs: back-to-back pairs; "
          f"architectures whose whole processes took under {SHORT_S} s on each side in every one of the "
          f"first {meta['runs']} runs get {meta.get('short_runs', meta['runs'])} in all: this machine has "
          "slow spells (another tenant on the host) that can take two of three runs, and there pairs are "
          "cheap.", "",
          "| architecture | runs | PyTorch | flex | flex / PyTorch | tch-cpu | tch-cpu / PyTorch | "
          "val acc PyTorch / flex / tch-cpu |",
          "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for arch in archs:
        train = {k: [r["train_s"] for r in results[arch][k]] for k in ["torch", "cpu", "tch-cpu"]}
        t, f, c = med(train["torch"]), med(train["cpu"]), med(train["tch-cpu"])
        tch = (f"{c:.2f} s | {ratio_cell(ratios(train['tch-cpu'], train['torch']))}" if c == c
               else "not measured | -")
        acc = " / ".join(f"{med([r['val_acc'] for r in results[arch][k]]):.4f}" if results[arch][k] else "-"
                         for k in ["torch", "cpu", "tch-cpu"])
        md.append(f"| {arch} | {len(train['cpu'])} | {t:.2f} s | {f:.2f} s | {ratio_cell(ratios(train['cpu'], train['torch']))} "
                  f"| {tch} | {acc} |")
    md += ["", "Validation accuracy after the epoch (6,000 images, one seed each; sweep and PyTorch draw "
           "different initial weights and batch orders, so single-epoch figures differ by up to about a "
           "point from that alone)."]
    md += ["", "## Peak memory and time outside training (flex, one trial per process)", "",
           "Peak RSS of the whole `sweep run` process (one trial) and of the PyTorch script. Outside "
           "training: the share of sweep's process wall time not spent in training batches (process start, "
           "data loading, validation and test evaluation, checkpoints, database); database writes are "
           "timed by the writer thread. Medians over the runs.", "",
           "| architecture | sweep peak RSS | PyTorch peak RSS | sweep wall | training | validation | "
           "outside training | database writes |",
           "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for arch in archs:
        rs = results[arch]["cpu"]
        wall = med([r["wall_s"] for r in rs])
        train = med([r["train_s"] for r in rs])
        val = med([r["epoch_s"] - r["train_s"] for r in rs])
        db = med([r["db_s"] for r in rs])
        md.append(f"| {arch} | {med([r['rss_mib'] for r in rs]):.0f} MiB | "
                  f"{med([r['rss_mib'] for r in results[arch]['torch']]):.0f} MiB | {wall:.2f} s | {train:.2f} s | "
                  f"{val:.2f} s | {100 * (wall - train) / wall:.1f}% | {db:.3f} s ({100 * db / wall:.2f}%) |")
    if layers:
        md += ["", "## Per layer: where flex stands", "",
               "`cargo bench --bench layers`: one forward + backward of each CNN layer at batch 64, loss "
               "sum(y * y), gradients of the input and the weights read back, in burn flex and in PyTorch "
               "(`benches/layers_torch.py`, gradients zeroed before each repeat), same threads; milliseconds, "
               "median of the repeats. Rows marked (sweep) are the formulations the models use on flex "
               "(`sweep::model::layers`, `sweep::model::norm`): each convolution + pool pair "
               "(`src/kernels/conv_pool.rs`; on AVX-512 a stride-1 layer with at most 32 filters computed "
               "directly, `src/kernels/direct.rs`, the others over unfolded columns), resnet's convolutions, "
               "the strided ones included, and batch norm with its pool or ReLU (`src/kernels/batch_norm.rs`); "
               "the unmarked rows are burn's own kernels, but for batch norm, which is always sweep's. "
               "A row's two timings come from one run of each program, so a row's PyTorch time moves with "
               "the machine's hour as much as the table's other columns do.", ""] + layers
    if whole["sweep"]:
        s, n, l, o = (med(whole["sweep"]), med(whole["sweep_notest"]), med(whole["loop"]),
                      med(whole["optuna"]))
        rel = lambda other, ours: ratio_cell(ratios(whole[other], whole[ours]))
        md += ["", "## A whole sweep: 12 trials", "",
               "mlp, cnn, lenet5 x Adam, SGD momentum 0.9 x lr 0.001, 0.01; 1 epoch on the first 10,000 "
               "training images (90/10 split), batch 64. Wall time of the whole command, data loading "
               "included. sweep: `sweep run --jobs 2` (1 thread per trial, flex). PyTorch loop: one "
               "`torch_ref.py` process per trial, one after the other (the seed scripts' way). Optuna: "
               "GridSampler, SQLite storage, `n_jobs=2` with one PyTorch thread per job, in one process "
               "(`benches/optuna_grid.py`). sweep by default also tests every trial on the 10,000 test "
               "images and records per-class results; Optuna's objective only trains and validates, which "
               "is what sweep does with `test_limit = 0`. Throughput relative: the other runner's wall time "
               "over sweep's within each run, median of the runs (range).", "",
               "| runner | wall | trials per hour | sweep's throughput relative to it | "
               "sweep's (test_limit = 0) relative to it |",
               "| --- | --- | --- | --- | --- |",
               f"| sweep (flex, --jobs 2), every trial tested | {s:.1f} s | {12 * 3600 / s:.0f} | 1.00x | "
               f"{rel('sweep', 'sweep_notest')} |",
               f"| sweep (flex, --jobs 2), test_limit = 0 | {n:.1f} s | {12 * 3600 / n:.0f} | "
               f"{rel('sweep_notest', 'sweep')} | 1.00x |",
               f"| PyTorch process loop | {l:.1f} s | {12 * 3600 / l:.0f} | {rel('loop', 'sweep')} | "
               f"{rel('loop', 'sweep_notest')} |",
               f"| Optuna in-process | {o:.1f} s | {12 * 3600 / o:.0f} | {rel('optuna', 'sweep')} | "
               f"{rel('optuna', 'sweep_notest')} |"]
    # The sections other scripts and runs write (between `<!-- name -->` and `<!-- /name -->`:
    # the search benchmark, the ingredients, the store, fused trials) are kept as they were.
    if os.path.exists(args.out):
        old = open(args.out).read()
        for section in re.finditer(MARKED, old, re.S):
            md += ["", section.group(0), ""]
        stray = stray_paragraphs(old, "\n".join(md))
        if stray:
            sys.exit(f"{args.out} has text outside the tables this script writes and outside any "
                     "<!-- name --> ... <!-- /name --> section, which rewriting it would lose:\n\n"
                     + "\n\n".join(stray) + "\n\nWrap that text in such markers (or delete it), then "
                     "write the tables from the raw results: benches/bench.py --from-raw")
    with open(args.out, "w") as f:
        f.write("\n".join(md))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
