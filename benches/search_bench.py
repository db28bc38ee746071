"""Searching against Optuna on this machine, one run after the other, into BENCHMARKS.md.

The space and budget of experiments/search.toml (four architectures, adam / sgd momentum 0.9,
lr log-uniform 1e-4..1e-1, dropout 0..0.5, batch 32/64/128, up to 9 epochs on 10,000 training
images split 90/10), three runners, each with every seed:
  - sweep, random sampler, no early stopping;
  - sweep, TPE with ASHA (rungs at 1, 3, 9 epochs);
  - Optuna: TPESampler + SuccessiveHalvingPruner, SQLite, n_jobs=2 (benches/optuna_search.py).
Every runner trains two trials at a time with one compute thread each, and tests each trial
that trains every epoch on the 10,000 test images. A runner's best is its best validation
accuracy among trials that trained every epoch; its time to target is when a trial that
trained every epoch first reached the target (Optuna's median best minus 0.2 points).

Run with a Python that has torch 2.9 and optuna:
  VENV/bin/python3 benches/search_bench.py --sweep target/release/sweep [--seeds 1,2,3]
      [--trials 30] [--out BENCHMARKS.md]
Writes the section between the search-bench markers of BENCHMARKS.md, the best-so-far figure
benches/search-best-so-far.svg and the raw results benches/search-results.json.
Nothing else should run meanwhile (2 cores: a build distorts every timing).
"""
import argparse, datetime, json, os, platform, re, sqlite3, statistics, subprocess, sys, tempfile, time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
BEGIN, END = "<!-- search-bench -->", "<!-- /search-bench -->"
RUNNERS = {
    "sweep random": ["--set", "sweep.sampler=random", "--set", "prune.method=none"],
    "sweep tpe + asha": [],
    "Optuna tpe + successive halving": None,
}
COLORS = {"sweep random": "#7f7f7f", "sweep tpe + asha": "#d62728",
          "Optuna tpe + successive halving": "#1f77b4"}


def when(text):
    """SQLite's '%Y-%m-%dT%H:%M:%fZ' as a UTC timestamp in seconds."""
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def run_sweep(args, tmp, label, seed):
    db = os.path.join(tmp, f"sweep-{seed}-{len(os.listdir(tmp))}.db")
    cmd = [args.sweep, "run", os.path.join(ROOT, "experiments", "search.toml"), "--db", db,
           "--runs", db + ".runs", "--data", args.data, "--jobs", "2", "--threads", "1", "-q",
           "--set", f"sweep.seed={seed}", "--set", f"sweep.trials={args.trials}",
           "--set", "data.test_limit=10000", "--set", f"grid.epochs={args.epochs}"] + RUNNERS[label]
    start = time.time()
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    rows = sqlite3.connect(db).execute(
        "SELECT status, best_val_acc, test_acc, epochs_done, finished_at FROM trials").fetchall()
    trials = [{"state": "complete" if status == "done" else status, "value": best,
               "test_acc": test, "epochs": epochs,
               "finished_s": round(when(finished) - start, 2) if finished else None}
              for status, best, test, epochs, finished in rows]
    return {"wall_s": round(wall, 2), "trials": trials}


def run_optuna(args, tmp, seed):
    cmd = [sys.executable, os.path.join(HERE, "optuna_search.py"), "--data", args.data,
           "--ref", args.ref, "--storage", os.path.join(tmp, f"optuna-{seed}.db"),
           "--trials", str(args.trials), "--epochs", str(args.epochs), "--seed", str(seed)]
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall_s"] = round(wall, 2)  # the whole process, as for sweep
    return result


def summarise(result, target=None):
    """Best value, test accuracy of the best, epochs trained, best-so-far line and time to target."""
    done = sorted((t for t in result["trials"] if t["state"] == "complete" and t["value"] is not None),
                  key=lambda t: t["finished_s"])
    line, best, reached = [], None, None
    for t in done:
        if best is None or t["value"] > best["value"]:
            best = t
            line.append((t["finished_s"], t["value"]))
        if target is not None and reached is None and t["value"] >= target:
            reached = t["finished_s"]
    return {"best": best["value"] if best else None, "test": best["test_acc"] if best else None,
            "epochs": sum(t["epochs"] for t in result["trials"]),
            "complete": len(done), "line": line, "reached_s": reached}


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values, fmt):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{fmt(statistics.median(values))} ({fmt(min(values))} to {fmt(max(values))})"


def svg(results, target, path):
    """Best-so-far against seconds, one line per run, coloured by runner."""
    w, h, left, right, top, bottom = 960, 480, 70, 280, 40, 50
    lines = {(label, seed): summarise(r)["line"] for label, runs in results.items()
             for seed, r in runs.items()}
    walls = [r["wall_s"] for runs in results.values() for r in runs.values()]
    values = [v for line in lines.values() for _, v in line] + [target]
    x_max = max(walls) * 1.02
    # The region around the target: early weak trials would squash it into a line.
    y_low, y_high = target - 0.03, max(values) + 0.005
    x = lambda s: left + (w - left - right) * s / x_max
    y = lambda v: top + (h - top - bottom) * (y_high - max(v, y_low)) / (y_high - y_low)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{w / 2 - 100}" y="22" text-anchor="middle" font-size="15">Best validation accuracy so far (trials that trained every epoch; lower values sit on the axis)</text>',
           f'<line x1="{left}" y1="{h - bottom}" x2="{w - right}" y2="{h - bottom}" stroke="black"/>',
           f'<line x1="{left}" y1="{top}" x2="{left}" y2="{h - bottom}" stroke="black"/>',
           f'<text x="{(left + w - right) / 2}" y="{h - 12}" text-anchor="middle">seconds since the runner started</text>']
    for i in range(6):
        s = x_max * i / 5
        out.append(f'<text x="{x(s):.1f}" y="{h - bottom + 16}" text-anchor="middle">{s:.0f}</text>')
        v = y_low + (y_high - y_low) * i / 5
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.3f}</text>')
        out.append(f'<line x1="{left}" y1="{y(v):.1f}" x2="{w - right}" y2="{y(v):.1f}" stroke="#eee"/>')
    out.append(f'<line x1="{left}" y1="{y(target):.1f}" x2="{w - right}" y2="{y(target):.1f}" '
               f'stroke="black" stroke-dasharray="6 4"/>')
    out.append(f'<text x="{w - right + 6}" y="{y(target) + 4:.1f}">target {target:.4f}</text>')
    for (label, seed), line in lines.items():
        if not line:
            continue
        wall = results[label][seed]["wall_s"]
        points = []
        for i, (s, v) in enumerate(line):
            if i:
                points.append(f"{x(s):.1f},{y(line[i - 1][1]):.1f}")
            points.append(f"{x(s):.1f},{y(v):.1f}")
        points.append(f"{x(wall):.1f},{y(line[-1][1]):.1f}")
        out.append(f'<polyline fill="none" stroke="{COLORS[label]}" stroke-width="2" points="{" ".join(points)}"/>')
        out.append(f'<circle cx="{x(wall):.1f}" cy="{y(line[-1][1]):.1f}" r="3" fill="{COLORS[label]}"/>')
    for i, label in enumerate(results):
        ly = top + 60 + 22 * i
        out.append(f'<line x1="{w - right + 10}" y1="{ly}" x2="{w - right + 34}" y2="{ly}" stroke="{COLORS[label]}" stroke-width="3"/>')
        out.append(f'<text x="{w - right + 40}" y="{ly + 4}">{label}</text>')
    out.append(f'<text x="{w - right + 10}" y="{top + 64 + 22 * len(results)}">dot: the runner ended</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out))


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sweep", default="target/release/sweep")
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--ref", default=os.path.join(ROOT, "..", "shared", "bench"))
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--epochs", type=int, default=9, help="fewer only for a quick check of the script")
    p.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    p.add_argument("--figure", default=os.path.join(HERE, "search-best-so-far.svg"))
    p.add_argument("--raw", default=os.path.join(HERE, "search-results.json"))
    p.add_argument("--replot", action="store_true", help="only redraw the figure from --raw")
    args = p.parse_args()
    if args.replot:
        raw = json.load(open(args.raw))
        results = {label: {int(seed): r for seed, r in runs.items()}
                   for label, runs in raw["results"].items()}
        return svg(results, raw["target"], args.figure)
    seeds = [int(s) for s in args.seeds.split(",")]
    version = subprocess.run([args.sweep, "--version"], capture_output=True, text=True).stdout.strip()
    results = {label: {} for label in RUNNERS}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for label in RUNNERS:
                print(f"seed {seed}: {label} ...", file=sys.stderr, flush=True)
                r = run_optuna(args, tmp, seed) if RUNNERS[label] is None else run_sweep(args, tmp, label, seed)
                results[label][seed] = r
                print(f"  {r['wall_s']:.0f} s, best {summarise(r)['best']}", file=sys.stderr, flush=True)
    optuna_label = "Optuna tpe + successive halving"
    optuna_wall = med(r["wall_s"] for r in results[optuna_label].values())
    target = med(summarise(r)["best"] for r in results[optuna_label].values()) - 0.002
    with open(args.raw, "w") as f:
        json.dump({"target": target, "results": results}, f, indent=1)
    svg(results, target, args.figure)

    pct = lambda v: f"{100 * v:.2f}"
    secs = lambda v: f"{v:.0f} s"
    rows = []
    for label, runs in results.items():
        s = {seed: summarise(r, target) for seed, r in runs.items()}
        reached = [s[seed]["reached_s"] for seed in seeds]
        rows.append(
            f"| {label} | {spread([r['wall_s'] for r in runs.values()], secs)} "
            f"| {spread([x['epochs'] for x in s.values()], lambda v: f'{v:.0f}')} "
            f"| {spread([x['complete'] for x in s.values()], lambda v: f'{v:.0f}')} "
            f"| {spread([x['best'] for x in s.values()], pct)} "
            f"| {spread([x['test'] for x in s.values()], pct)} "
            f"| {spread(reached, secs)}; {sum(r is not None for r in reached)} of {len(seeds)} "
            f"| {(med(reached) / optuna_wall if med(reached) is not None and sum(r is not None for r in reached) * 2 > len(seeds) else float('nan')):.2f} |")
    per_seed = []
    for label, runs in results.items():
        for seed in seeds:
            x = summarise(runs[seed], target)
            per_seed.append(f"| {label} | {seed} | {runs[seed]['wall_s']:.0f} s | {x['epochs']} | {x['complete']} "
                            f"| {pct(x['best']) if x['best'] else '-'} | {pct(x['test']) if x['test'] else '-'} "
                            f"| {secs(x['reached_s']) if x['reached_s'] is not None else 'not reached'} |")
    ours = [summarise(results["sweep tpe + asha"][seed], target)["reached_s"] for seed in seeds]
    ours_med = med(ours) if sum(r is not None for r in ours) * 2 > len(seeds) else None
    verdict = (f"sweep tpe + asha reached the target in a median {ours_med:.0f} s, "
               f"{ours_med / optuna_wall:.2f}x Optuna's median wall time of {optuna_wall:.0f} s: the "
               f"target of at most 0.50x is {'met' if ours_med / optuna_wall <= 0.5 else 'not met'}."
               if ours_med is not None else
               f"sweep tpe + asha reached the target in only {sum(r is not None for r in ours)} of "
               f"{len(seeds)} runs: the target is not met.")
    import torch, optuna  # noqa: E401  (versions for the header only)
    section = [
        BEGIN,
        "## Searching: sweep against Optuna",
        "",
        f"Generated by `benches/search_bench.py` on {datetime.date.today()}: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; {version}, Optuna {optuna.__version__}, PyTorch {torch.__version__} CPU. "
        f"Seeds {', '.join(map(str, seeds))}; every run one after the other on an otherwise idle machine.",
        "",
        f"The space of `experiments/search.toml`: mlp, cnn, lenet5, convnet; adam or sgd with momentum 0.9; lr "
        f"log-uniform 1e-4..1e-1; dropout uniform 0..0.5; batch 32, 64 or 128; up to 9 epochs on the first "
        f"10,000 training images split 90/10. Budget: {args.trials} trials. Each runner trains two trials at a "
        f"time with one compute thread each, and tests every trial that trains all {args.epochs} epochs on the "
        f"10,000 test images. sweep: `sweep run experiments/search.toml --jobs 2 --threads 1` with the seed, budget and "
        f"testing set by `--set` (random: also `sweep.sampler=random`, `prune.method=none`). Optuna: "
        f"`benches/optuna_search.py`, TPESampler(seed) + SuccessiveHalvingPruner(min_resource=1, "
        f"reduction_factor=3), SQLite storage, `n_jobs=2`, `torch.set_num_threads(1)`, torch_ref.py's models "
        f"and loop; each trial reports validation accuracy after every epoch and returns the best.",
        "",
        f"Best = best validation accuracy among trials that trained every epoch; with the same seed both "
        f"runners train and validate on the same images (optuna_search.py re-implements sweep's split), and "
        f"the test accuracy of that trial is on the 10,000 test images. Target = Optuna's median best minus 0.2 points = {pct(target)}%. Time to target = "
        f"when a trial that trained every epoch first reached it, seconds after the runner started. "
        f"Cells: median (min to max) over the seeds.",
        "",
        "| runner | wall | epochs trained | trials trained every epoch | best val acc % | test acc % of best | time to target; runs reaching it | time to target / Optuna's wall |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        "",
        verdict,
        "",
        f"![best so far against time](benches/{os.path.basename(args.figure)})",
        "",
        "Per run:",
        "",
        "| runner | seed | wall | epochs trained | trials trained every epoch | best val acc % | test acc % of best | time to target |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *per_seed,
        END,
    ]
    text = open(args.out).read() if os.path.exists(args.out) else "# Benchmarks\n"
    if BEGIN in text:
        text = text[: text.index(BEGIN)] + "\n".join(section) + text[text.index(END) + len(END):]
    else:
        text = text.rstrip("\n") + "\n\n" + "\n".join(section) + "\n"
    with open(args.out, "w") as f:
        f.write(text)
    print(verdict)


if __name__ == "__main__":
    main()
