"""Two objectives at once against Optuna on this machine, one run after the other, into
BENCHMARKS.md.

The space of experiments/search.toml (four architectures, adam / sgd momentum 0.9, lr
log-uniform 1e-4..1e-1, dropout 0..0.5, batch 32/64/128, 9 epochs on 10,000 training images
split in half: 5,000 to train, 5,000 to validate) with objectives val_acc (the best epoch's,
maximised) and params (trainable parameters, minimised), 60 trials, each runner with every
seed, two trials at a time with one compute thread each, no test pass:
  - sweep: multi-objective TPE with multi-objective ASHA (rungs at 1, 3, 9 epochs);
  - Optuna NSGAIISampler (population 50) and multi-objective TPESampler, both at their
    defaults, no pruner (Optuna cannot prune several objectives), SQLite, n_jobs=2
    (benches/optuna_search.py --objectives val_acc,params).
The hypervolume of the trials that trained every epoch, in (1 - val_acc, params / 10^6)
against the fixed reference point (1, 1): the area of that square that a trial's front
dominates. For each seed, the target is Optuna's best final hypervolume (the larger of its two
samplers'); each runner's time to target is when its hypervolume first reached it (a run that
never did counts as infinitely late), and the ratio is sweep's over the Optuna sampler that
reached it first.

Run with a Python that has torch 2.9 and optuna:
  VENV/bin/python3 benches/mo_bench.py --sweep target/release/sweep [--seeds 1,2,3,4,5]
Each run is added to benches/mo-results.json as it ends (rerunning skips the runs there;
--from-raw only rewrites the section and figure). Writes the section between the mo-bench
markers of BENCHMARKS.md and the figure benches/mo-hypervolume.svg. Nothing else should run
meanwhile (2 cores: a build distorts every timing).
"""
import argparse, json, os, platform, sqlite3, sys

from search_bench import med, replace_section, run_missing, secs, spread, timed, when  # same clock and summaries as the search bench

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
BEGIN, END = "<!-- mo-bench -->", "<!-- /mo-bench -->"
OURS = "sweep tpe + mo-asha"
NSGA2 = "Optuna nsga2"
MOTPE = "Optuna tpe"
RUNNERS = [OURS, NSGA2, MOTPE]
COLORS = {OURS: "#d62728", NSGA2: "#2ca02c", MOTPE: "#1f77b4"}
REFERENCE = (1.0, 1.0)  # (1 - val_acc, millions of parameters)



def run_sweep(args, tmp, seed):
    db = os.path.join(tmp, f"sweep-{seed}.db")
    cmd = [args.sweep, "run", os.path.join(ROOT, "experiments", "search.toml"), "--db", db,
           "--runs", db + ".runs", "--data", args.data, "--jobs", "2", "--threads", "1", "-q",
           "--set", f"sweep.seed={seed}", "--set", f"sweep.trials={args.trials}",
           "--set", 'sweep.objectives=["val_acc", "params"]', "--set", "data.test_limit=0",
           # Optuna's TPESampler here draws its default 10 start-up trials; search.toml ships 5.
           "--set", "sweep.startup_trials=10"]
    out, wall, start = timed(cmd)
    rows = sqlite3.connect(db).execute(
        "SELECT status, best_val_acc, params, epochs_done, finished_at FROM trials").fetchall()
    trials = [{"state": "complete" if status == "done" else status, "value": best, "size": size,
               "epochs": epochs,
               "finished_s": round(when(finished) - start, 2) if finished else None}
              for status, best, size, epochs, finished in rows]
    return {"wall_s": round(wall, 2), "trials": trials}


def run_optuna(args, tmp, seed, sampler):
    cmd = [sys.executable, os.path.join(HERE, "optuna_search.py"), "--data", args.data,
           "--ref", args.ref, "--storage", os.path.join(tmp, f"optuna-{sampler}-{seed}.db"),
           "--trials", str(args.trials), "--seed", str(seed), "--objectives", "val_acc,params",
           "--sampler", sampler, "--no-test"]
    out, wall, _ = timed(cmd)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall_s"] = round(wall, 2)  # the whole process, as for sweep
    return result


def hypervolume(points):
    """Area dominated by (error, millions of parameters) points inside REFERENCE."""
    inside = sorted((e, p) for e, p in points if e < REFERENCE[0] and p < REFERENCE[1])
    area, ceiling = 0.0, REFERENCE[1]
    for k, (e, p) in enumerate(inside):
        right = inside[k + 1][0] if k + 1 < len(inside) else REFERENCE[0]
        ceiling = min(ceiling, p)
        area += (right - e) * (REFERENCE[1] - ceiling)
    return area


def curve(result):
    """Hypervolume after each finished trial (seconds, hypervolume, trials finished)."""
    done = sorted((t for t in result["trials"] if t["state"] == "complete"
                   and t["value"] is not None and t.get("size") is not None),
                  key=lambda t: t["finished_s"])
    points, line = [], []
    for n, t in enumerate(done, 1):
        points.append((1.0 - t["value"], t["size"] / 1e6))
        line.append((t["finished_s"], hypervolume(points), n))
    return line


def reached(line, target):
    return next((s for s, hv, _ in line if hv >= target - 1e-12), float("inf"))


def final(line):
    return line[-1][1] if line else 0.0





def svg(results, path):
    """Hypervolume against seconds, one line per run, coloured by runner."""
    w, h, left, right, top, bottom = 960, 480, 70, 230, 40, 50
    lines = {(label, seed): curve(r) for label, runs in results.items() for seed, r in runs.items()}
    x_max = max(r["wall_s"] for runs in results.values() for r in runs.values()) * 1.02
    finals = [final(l) for l in lines.values() if l]
    y_low, y_high = min(finals) - 0.02, max(finals) + 0.005
    x = lambda s: left + (w - left - right) * s / x_max
    y = lambda v: top + (h - top - bottom) * (y_high - max(v, y_low)) / (y_high - y_low)
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" font-family="sans-serif" font-size="12">',
           f'<rect width="{w}" height="{h}" fill="white"/>',
           f'<text x="{left}" y="20" font-size="14">Hypervolume of (1 - val_acc, parameters) '
           f'against wall time, one line per run</text>']
    for k in range(6):
        v = y_low + (y_high - y_low) * k / 5
        out.append(f'<line x1="{left}" x2="{w - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#eee"/>')
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" text-anchor="end">{v:.3f}</text>')
    for k in range(6):
        s = x_max * k / 5
        out.append(f'<text x="{x(s):.1f}" y="{h - bottom + 18}" text-anchor="middle">{s:.0f} s</text>')
    for (label, seed), line in lines.items():
        if not line:
            continue
        pts = [(x(0), y(y_low))]
        for s, hv, _ in line:
            pts.append((x(s), pts[-1][1]))
            pts.append((x(s), y(hv)))
        pts.append((x(results[label][seed]["wall_s"]), pts[-1][1]))
        d = " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
        out.append(f'<polyline points="{d}" fill="none" stroke="{COLORS[label]}" stroke-width="1.5" opacity="0.8"/>')
    for k, label in enumerate(RUNNERS):
        yy = top + 20 * k + 10
        out.append(f'<line x1="{w - right + 15}" x2="{w - right + 40}" y1="{yy}" y2="{yy}" stroke="{COLORS[label]}" stroke-width="3"/>')
        out.append(f'<text x="{w - right + 46}" y="{yy + 4}">{label}</text>')
    out.append("</svg>")
    with open(path, "w") as f:
        f.write("\n".join(out) + "\n")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sweep", default=os.path.join(ROOT, "target", "release", "sweep"))
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--ref", default=os.path.join(ROOT, "..", "shared", "bench"))
    p.add_argument("--seeds", default="1,2,3,4,5")
    p.add_argument("--trials", type=int, default=60)
    p.add_argument("--raw", default=os.path.join(HERE, "mo-results.json"))
    p.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    p.add_argument("--figure", default=os.path.join(HERE, "mo-hypervolume.svg"))
    p.add_argument("--from-raw", action="store_true")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    raw = load_raw(args.raw, RUNNERS)
    raw["args"] = {"trials": args.trials, "reference": REFERENCE}
    results = raw["results"]
    if not args.from_raw:
        def run(label, seed, tmp):
            if label == OURS:
                return run_sweep(args, tmp, seed)
            return run_optuna(args, tmp, seed, "nsga2" if label == NSGA2 else "tpe")
        run_missing(raw, args.raw, seeds, RUNNERS, run,
                    lambda r: f"final hypervolume {final(curve(r)):.4f}")
    svg(results, args.figure)
    write_section(args, raw)


def load_raw(path, runners):
    """The raw results saved at `path` (none yet for each of `runners` when it is missing), with
    this machine described."""
    raw = {"results": {label: {} for label in runners}}
    if os.path.exists(path):
        with open(path) as f:
            raw = json.load(f)
    raw["machine"] = {"cpu": cpu(), "cores": os.cpu_count(), "python": platform.python_version()}
    return raw


def cpu():
    try:
        with open("/proc/cpuinfo") as f:
            return next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def write_section(args, raw):
    results = raw["results"]
    seeds = sorted(set.intersection(*(set(results[l]) for l in RUNNERS)), key=int)
    lines = {l: {s: curve(results[l][s]) for s in seeds} for l in RUNNERS}
    rows, ratios = [], []
    reach = {l: [] for l in RUNNERS}
    for s in seeds:
        target = max(final(lines[NSGA2][s]), final(lines[MOTPE][s]))
        times = {l: reached(lines[l][s], target) for l in RUNNERS}
        for l in RUNNERS:
            reach[l].append(times[l])
        optuna_time = min(times[NSGA2], times[MOTPE])
        ratios.append(times[OURS] / optuna_time)
    table = ["| runner | final hypervolume | trials that trained every epoch | epochs trained | wall | time to Optuna's best final hypervolume |",
             "|---|---|---|---|---|---|"]
    for l in RUNNERS:
        runs = [results[l][s] for s in seeds]
        table.append("| " + " | ".join([
            l,
            spread([final(lines[l][s]) for s in seeds], lambda v: f"{v:.4f}"),
            spread([len(lines[l][s]) for s in seeds], lambda v: f"{v:.0f}"),
            spread([sum(t["epochs"] for t in r["trials"]) for r in runs], lambda v: f"{v:.0f}"),
            spread([r["wall_s"] for r in runs], lambda v: f"{v:.0f} s"),
            spread(reach[l], secs),
        ]) + " |")
    ratio_text = ", ".join("inf" if r == float("inf") else f"{r:.2f}x" for r in ratios)
    # Equal wall time: each runner's hypervolume when sweep had spent its whole budget.
    def at(line, seconds):
        return max([hv for s, hv, _ in line if s <= seconds], default=0.0)
    equal = {l: [at(lines[l][s], results[OURS][s]["wall_s"]) for s in seeds] for l in RUNNERS}
    equal_text = "; ".join(f"{l} {spread(equal[l], lambda v: f'{v:.4f}')}" for l in RUNNERS)
    m = raw["machine"]
    section = "\n".join([
        BEGIN,
        "## Two objectives: accuracy against size",
        "",
        f"`benches/mo_bench.py` ({len(seeds)} seeds: {', '.join(seeds)}; {m['cpu']}, {m['cores']} cores; "
        f"raw runs in `benches/mo-results.json`). The space of `experiments/search.toml` with "
        "`objectives = [\"val_acc\", \"params\"]`, 60 trials, 2 jobs x 1 thread, no test pass. "
        "Hypervolume of (1 - val_acc, parameters / 10^6) against the reference point (1, 1); "
        "median (range) over seeds. The target of each seed is Optuna's best final hypervolume "
        "(the larger of its two samplers').",
        "",
        *table,
        "",
        f"sweep's time to the target over the first Optuna sampler's to reach it, per seed: "
        f"{ratio_text}; median {med(ratios):.2f}x (target: at most 0.5x).",
        "",
        f"Hypervolume when sweep had spent its whole budget (its wall time on each seed): {equal_text}.",
        "",
        "![hypervolume against time](benches/mo-hypervolume.svg)",
        END,
    ])
    text = open(args.out).read() if os.path.exists(args.out) else ""
    replace_section(args.out, BEGIN, END, section)


if __name__ == "__main__":
    main()
