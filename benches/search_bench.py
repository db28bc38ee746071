"""Searching against Optuna on this machine, one run after the other, into BENCHMARKS.md.

The space and budget of experiments/search.toml (four architectures, adam / sgd momentum 0.9,
lr log-uniform 1e-4..1e-1, dropout 0..0.5, batch 32/64/128, up to 9 epochs on 10,000 training
images split in half: 5,000 to train, 5,000 to validate), each runner with every seed:
  - sweep, TPE with ASHA (rungs at 1, 3, 9 epochs);
  - Optuna: TPESampler + SuccessiveHalvingPruner, SQLite, n_jobs=2 (benches/optuna_search.py);
  - with --runners, also sweep's random sampler without early stopping (random), and sweep's
    TPE modelling each axis alone (tpe-independent, `sweep.multivariate=false`), and sweep's
    TPE after N random start-up trials instead of 10 (tpe-startupN, `sweep.startup_trials=N`),
    ASHA letting no trial leave a rung before 3 have reached it (tpe-fill-rungs,
    `prune.fill_rungs=true`; both: tpe-startupN-fill-rungs), and Optuna's TPE after N random
    start-up trials (optuna-startupN). sweep's runners otherwise take the start-up that
    experiments/search.toml ships.
Every runner trains two trials at a time with one compute thread each, and tests each trial
that trains every epoch on the 10,000 test images. A runner's best is its best validation
accuracy among trials that trained every epoch. Like for like:
  - time to target: when a trial that trained every epoch first reached the target (Optuna's
    median best minus 0.2 points), for each runner; a run that never reached it counts as
    infinitely late, so a median over seeds is finite only when most runs reached it;
  - best so far at 25%, 50% and 100% of Optuna's wall time on the same seed.

Run with a Python that has torch 2.9 and optuna:
  VENV/bin/python3 benches/search_bench.py --sweep target/release/sweep [--seeds 1,2,3,4,5]
      [--trials 30] [--runners tpe,optuna[,random][,tpe-independent][,tpe-startupN][,...]]
      [--out BENCHMARKS.md] [--resume]
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
    "sweep tpe (independent) + asha": ["--set", "sweep.multivariate=false"],
    "Optuna tpe + successive halving": None,
}
RUNNER_KEYS = {"random": "sweep random", "tpe": "sweep tpe + asha",
               "tpe-independent": "sweep tpe (independent) + asha",
               "optuna": "Optuna tpe + successive halving"}
OPTUNA = RUNNER_KEYS["optuna"]
# Optuna's runners, with their TPESampler's n_startup_trials.
OPTUNA_RUNNERS = {OPTUNA: 10}
# sweep's runners draw this many random start-up trials unless they set it.
SHIPPED_STARTUP = int(re.search(r"^startup_trials\s*=\s*(\d+)", open(
    os.path.join(ROOT, "experiments", "search.toml")).read(), re.M).group(1))
# Whether experiments/search.toml's ASHA waits for 3 trials at a rung before any goes on.
SHIPPED_FILL_RUNGS = bool(re.search(r"^fill_rungs\s*=\s*true", open(
    os.path.join(ROOT, "experiments", "search.toml")).read(), re.M))
OURS = RUNNER_KEYS["tpe"]
FRACTIONS = (0.25, 0.5, 1.0)
COLORS = {"sweep random": "#7f7f7f", "sweep tpe + asha": "#d62728",
          "sweep tpe (independent) + asha": "#ff9896",
          "Optuna tpe + successive halving": "#1f77b4"}


def when(text):
    """SQLite's '%Y-%m-%dT%H:%M:%fZ' as a UTC timestamp in seconds."""
    return datetime.datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


def timed(cmd):
    """Runs `cmd` to its end, leaving with its error output if it fails: its output, its wall
    seconds, and when it started (Unix time)."""
    start = time.time()
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        sys.exit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return out, wall, start


def replace_section(path, begin, end, section):
    """Puts `section` (which starts with `begin` and ends with `end`) in place of the one
    between those markers in the file at `path`, or at its end."""
    text = open(path).read() if os.path.exists(path) else "# Benchmarks\n"
    if begin in text:
        text = text[: text.index(begin)] + section + text[text.index(end) + len(end):]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    with open(path, "w") as f:
        f.write(text)


def run_missing(raw, path, seeds, labels, run, summary):
    """Runs `run(label, seed, tmp)` for each seed and label whose result `raw["results"]` lacks,
    saving the raw results to `path` after each run, so an interrupted benchmark goes on where
    it stopped; `summary(result)` is printed after each."""
    with tempfile.TemporaryDirectory() as tmp:
        for seed in seeds:
            for label in labels:
                if str(seed) in raw["results"][label]:
                    continue
                print(f"seed {seed}: {label}", file=sys.stderr, flush=True)
                result = run(label, seed, tmp)
                raw["results"][label][str(seed)] = result
                with open(path, "w") as f:
                    json.dump(raw, f, indent=1)
                print(f"  {result['wall_s']:.0f} s, {summary(result)}", file=sys.stderr, flush=True)


def run_sweep(args, tmp, label, seed):
    db = os.path.join(tmp, f"sweep-{seed}-{len(os.listdir(tmp))}.db")
    cmd = [args.sweep, "run", os.path.join(ROOT, "experiments", "search.toml"), "--db", db,
           "--runs", db + ".runs", "--data", args.data, "--jobs", "2", "--threads", "1", "-q",
           "--set", f"sweep.seed={seed}", "--set", f"sweep.trials={args.trials}",
           "--set", "data.test_limit=10000", "--set", f"grid.epochs={args.epochs}",
           "--set", f"data.limit={args.limit}", "--set", f"data.split={args.split}"] + RUNNERS[label]
    out, wall, start = timed(cmd)
    rows = sqlite3.connect(db).execute(
        "SELECT status, best_val_acc, test_acc, epochs_done, finished_at FROM trials ORDER BY id"
    ).fetchall()
    trials = [{"state": "complete" if status == "done" else status, "value": best,
               "test_acc": test, "epochs": epochs,
               "finished_s": round(when(finished) - start, 2) if finished else None}
              for status, best, test, epochs, finished in rows]
    return {"wall_s": round(wall, 2), "trials": trials}


def run_optuna(args, tmp, seed, startup=10):
    cmd = [sys.executable, os.path.join(HERE, "optuna_search.py"), "--data", args.data,
           "--startup", str(startup),
           "--ref", args.ref, "--storage", os.path.join(tmp, f"optuna-{seed}.db"),
           "--trials", str(args.trials), "--epochs", str(args.epochs), "--seed", str(seed),
           "--limit", str(args.limit), "--split", str(args.split)]
    out, wall, _ = timed(cmd)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result["wall_s"] = round(wall, 2)  # the whole process, as for sweep
    return result


def summarise(result, target=None):
    """Best value, test accuracy of the best, epochs trained, best-so-far line and time to target."""
    # Each trial's number in draw order (1-based): sweep's rows and Optuna's list are in that order.
    numbered = [dict(t, drawn=i + 1) for i, t in enumerate(result["trials"])]
    done = sorted((t for t in numbered if t["state"] == "complete" and t["value"] is not None),
                  key=lambda t: t["finished_s"])
    line, best, reached, reached_by = [], None, None, None
    for t in done:
        if best is None or t["value"] > best["value"]:
            best = t
            line.append((t["finished_s"], t["value"]))
        if target is not None and reached is None and t["value"] >= target:
            reached, reached_by = t["finished_s"], t["drawn"]
    return {"best": best["value"] if best else None, "test": best["test_acc"] if best else None,
            "epochs": sum(t["epochs"] for t in result["trials"]),
            "complete": len(done), "line": line, "reached_by": reached_by,
            "reached_s": reached if reached is not None else float("inf")}


def best_at(line, seconds):
    """The best value among trials done by `seconds` (None before the first)."""
    values = [v for s, v in line if s <= seconds]
    return values[-1] if values else None


def med(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def spread(values, fmt):
    values = [v for v in values if v is not None]
    if not values:
        return "-"
    return f"{fmt(statistics.median(values))} ({fmt(min(values))} to {fmt(max(values))})"


def secs(v):
    return "not reached" if v == float("inf") else f"{v:.0f} s"


def pct(v):
    return f"{100 * v:.2f}" if v is not None else "-"


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
    p.add_argument("--seeds", default="1,2,3,4,5")
    p.add_argument("--trials", type=int, default=30)
    p.add_argument("--runners", default="tpe,optuna",
                   help="of random, tpe, tpe-independent, tpe-startupN, tpe-fill-rungs, "
                   "tpe-startupN-fill-rungs, optuna, optuna-startupN (see the notes at the top)")
    p.add_argument("--limit", type=int, default=10000)
    p.add_argument("--split", type=float, default=0.5)
    p.add_argument("--epochs", type=int, default=9, help="fewer only for a quick check of the script")
    p.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    p.add_argument("--figure", default=os.path.join(HERE, "search-best-so-far.svg"))
    p.add_argument("--raw", default=os.path.join(HERE, "search-results.json"))
    p.add_argument("--replot", action="store_true", help="only redraw the figure and the section from --raw")
    p.add_argument("--resume", action="store_true",
                   help="keep the runs --raw already holds (same arguments) and run only the missing ones")
    args = p.parse_args()
    if args.replot:  # the runners the raw results were run with
        args.runners = json.load(open(args.raw))["args"].get("runners", args.runners)
    for key in args.runners.split(","):
        variant(key)
    labels = [RUNNER_KEYS[k] for k in args.runners.split(",")]
    if OURS not in labels or OPTUNA not in labels:
        sys.exit("--runners needs tpe and optuna: the verdict compares them")
    if args.replot:
        raw = json.load(open(args.raw))
        results = {label: {int(seed): r for seed, r in runs.items()}
                   for label, runs in raw["results"].items()}
        seeds, versions = sorted(results[OPTUNA]), raw["versions"]
        vars(args).update(raw["args"])
    else:
        seeds = [int(s) for s in args.seeds.split(",")]
        import torch, optuna  # noqa: E401  (versions for the header only)
        versions = {"sweep": subprocess.run([args.sweep, "--version"], capture_output=True,
                                            text=True).stdout.strip(),
                    "optuna": optuna.__version__, "torch": torch.__version__,
                    "date": str(datetime.date.today())}
        raw = {"versions": versions,
               "args": {k: vars(args)[k] for k in ["trials", "limit", "split", "epochs", "runners"]},
               "results": {label: {} for label in labels}}
        if args.resume and os.path.exists(args.raw):
            old = json.load(open(args.raw))
            same = ["trials", "limit", "split", "epochs"]
            if any(old["args"][k] != raw["args"][k] for k in same):
                sys.exit(f"{args.raw} holds runs with {old['args']}, not {raw['args']}: run without --resume")
            for label in labels:
                raw["results"][label] = old["results"].get(label, {})
        run_missing(raw, args.raw, seeds, labels,
                    lambda label, seed, tmp: run_optuna(args, tmp, seed, startup(label))
                    if label in OPTUNA_RUNNERS else run_sweep(args, tmp, label, seed),
                    lambda r: f"best {summarise(r)['best']}")
        results = {label: {seed: raw["results"][label][str(seed)] for seed in seeds} for label in labels}
    target = med(summarise(r)["best"] for r in results[OPTUNA].values()) - 0.002
    with open(args.raw, "w") as f:
        json.dump({"target": target, "versions": versions,
                   "args": {k: vars(args)[k] for k in ["trials", "limit", "split", "epochs", "runners"]},
                   "results": results}, f, indent=1)
    svg(results, target, args.figure)
    write_section(args, seeds, versions, results, target)


def variant(key):
    """Registers a runner named on the command line beyond the fixed ones: `tpe-startupN`
    (sweep's TPE after N random start-up trials), `tpe-fill-rungs` (ASHA waiting for 3 trials
    at a rung before any goes on), both (`tpe-startupN-fill-rungs`), or `optuna-startupN`
    (Optuna's TPESampler with n_startup_trials=N)."""
    if key in RUNNER_KEYS:
        return
    optuna_variant = re.fullmatch(r"optuna-startup(\d+)", key)
    if optuna_variant:
        n = int(optuna_variant.group(1))
        label = f"Optuna tpe ({n} start-up trials) + successive halving"
        RUNNER_KEYS[key] = label
        RUNNERS[label] = None
        OPTUNA_RUNNERS[label] = n
        COLORS.setdefault(label, "#17becf")
        return
    match = re.fullmatch(r"tpe(?:-startup(\d+))?(-fill-rungs)?", key)
    if not match:
        sys.exit(f"unknown runner {key!r}")
    n, fill = match.groups()
    label = ("sweep tpe" + (f" ({n} start-up trials)" if n else "") + " + asha"
             + (" (rungs filled)" if fill else ""))
    RUNNER_KEYS[key] = label
    RUNNERS[label] = ((["--set", f"sweep.startup_trials={n}"] if n else [])
                      + (["--set", "prune.fill_rungs=true"] if fill else []))
    COLORS.setdefault(label, "#2ca02c" if n else "#9467bd")


def startup(label):
    """How many random start-up trials a runner draws before its TPE models the history: its
    setting, else the one experiments/search.toml ships."""
    if label in OPTUNA_RUNNERS:
        return OPTUNA_RUNNERS[label]
    for arg in RUNNERS.get(label) or []:
        if arg.startswith("sweep.startup_trials="):
            return int(arg.split("=")[1])
    return SHIPPED_STARTUP


def write_section(args, seeds, versions, results, target):
    """The BENCHMARKS.md section: per runner, medians over seeds; the verdict; per run."""
    optuna_wall = {seed: results[OPTUNA][seed]["wall_s"] for seed in seeds}
    stats = {label: {seed: summarise(runs[seed], target) for seed in seeds} for label, runs in results.items()}
    at = {label: {f: [best_at(stats[label][seed]["line"], f * optuna_wall[seed]) for seed in seeds]
                  for f in FRACTIONS} for label in results}
    # A run that never reached the target sorts last; None (no trial done yet) counts as 0.
    median_at = {label: {f: statistics.median([v or 0.0 for v in at[label][f]]) for f in FRACTIONS}
                 for label in results}
    reached = {label: [stats[label][seed]["reached_s"] for seed in seeds] for label in results}
    median_reached = {label: statistics.median(reached[label]) for label in results}
    count = lambda f: lambda v: f"{v:.0f}"
    rows = []
    for label, runs in results.items():
        s = stats[label]
        hits = sum(r != float("inf") for r in reached[label])
        rows.append(
            f"| {label} | {secs(median_reached[label])}; {hits} of {len(seeds)} "
            + "".join(f"| {pct(median_at[label][f])} " for f in FRACTIONS)
            + f"| {spread([x['best'] for x in s.values()], pct)} "
            f"| {spread([x['test'] for x in s.values()], pct)} "
            f"| {spread([r['wall_s'] for r in runs.values()], lambda v: f'{v:.0f} s')} "
            f"| {spread([x['epochs'] for x in s.values()], count(0))} "
            f"| {spread([x['complete'] for x in s.values()], count(0))} |")
    per_seed = []
    for label, runs in results.items():
        for i, seed in enumerate(seeds):
            x = stats[label][seed]
            per_seed.append(
                f"| {label} | {seed} | {secs(x['reached_s'])}"
                + (f" (trial {x['reached_by']})" if x["reached_by"] else "") + " "
                + "".join(f"| {pct(at[label][f][i])} " for f in FRACTIONS)
                + f"| {pct(x['best'])} | {pct(x['test'])} | {runs[seed]['wall_s']:.0f} s | {x['epochs']} "
                f"| {x['complete']} |")
    ours, theirs = median_reached[OURS], median_reached[OPTUNA]
    ratio = ours / theirs if theirs not in (0, float("inf")) else float("nan")
    ahead = [f for f in FRACTIONS if median_at[OURS][f] >= median_at[OPTUNA][f]]
    verdict = [
        f"- Time to the target, like for like (median over the seeds): sweep {secs(ours)}, Optuna "
        f"{secs(theirs)}: " + (f"{ratio:.2f}x" if ratio == ratio else "no ratio")
        + f"; the target of at most 0.50x is {'met' if ratio <= 0.5 else 'not met'}.",
        "- Best so far at 25%, 50% and 100% of Optuna's wall time (medians): sweep "
        + " / ".join(pct(median_at[OURS][f]) for f in FRACTIONS) + ", Optuna "
        + " / ".join(pct(median_at[OPTUNA][f]) for f in FRACTIONS) + ": sweep is at or above Optuna at "
        + (f"{len(ahead)} of 3 points" if len(ahead) < 3 else "all 3 points")
        + f"; the target (all 3) is {'met' if len(ahead) == 3 else 'not met'}.",
        "- A run's first trials are drawn at random (its TPE's start-up: 10, or the N it names, "
        f"{SHIPPED_STARTUP} for `sweep tpe + asha`), so a target reached by one of them is luck no sampler steers. "
        "Runs whose first trial at the target was one of them: " + ", ".join(
            f"{label} {sum(1 for x in stats[label].values() if x['reached_by'] and x['reached_by'] <= startup(label))}"
            f" of {len(seeds)}" for label in results) + " (the trial is named in the per-run table).",
    ]
    header = "| runner | time to target; runs reaching it | best so far at 25% | at 50% | at 100% of Optuna's wall | best val acc % | test acc % of best | wall | epochs trained | trials trained every epoch |"
    rule = "| --- " * 10 + "|"
    section = [
        BEGIN,
        "## Searching: sweep against Optuna",
        "",
        f"Generated by `benches/search_bench.py` on {versions['date']}: {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; {versions['sweep']}, Optuna {versions['optuna']}, PyTorch {versions['torch']} CPU. "
        f"Seeds {', '.join(map(str, seeds))}; every run one after the other on an otherwise idle machine. "
        f"Raw results: [`benches/search-results.json`](benches/search-results.json).",
        "",
        f"The space of `experiments/search.toml`: mlp, cnn, lenet5, convnet; adam or sgd with momentum 0.9; lr "
        f"log-uniform 1e-4..1e-1; dropout uniform 0..0.5; batch 32, 64 or 128; up to {args.epochs} epochs on the "
        f"first {args.limit:,} training images, {int(args.limit * args.split):,} to train and "
        f"{args.limit - int(args.limit * args.split):,} to validate. Budget: {args.trials} trials. Each runner "
        f"trains two trials at a time with one compute thread each, and tests every trial that trains all "
        f"{args.epochs} epochs on the 10,000 test images. sweep: `sweep run experiments/search.toml --jobs 2 "
        f"--threads 1` with the seed, budget and testing set by `--set`"
        + (" (random: also `sweep.sampler=random`, `prune.method=none`)" if "sweep random" in results else "")
        + (" (independent: also `sweep.multivariate=false`)" if RUNNER_KEYS["tpe-independent"] in results else "")
        + f". Both TPEs are multivariate with one objective and count running trials as the constant liar "
        f"(Optuna 5's defaults); `experiments/search.toml` draws {SHIPPED_STARTUP} random start-up trials "
        f"(`[sweep] startup_trials`; Optuna's and sweep's default is 10), and a runner named with N start-up trials "
        f"sets it to N (`--set sweep.startup_trials=N`, Optuna's `n_startup_trials=N`); "
        + ("its ASHA lets no trial leave a rung before 3 have reached it (`[prune] fill_rungs = true`, the ASHA "
           "paper's rule; Optuna's successive halving lets the best of one or two trials at a rung go on). "
           if SHIPPED_FILL_RUNGS else "'rungs filled' is `--set prune.fill_rungs=true`. ")
        + f"Optuna: `benches/optuna_search.py`, TPESampler(seed) + SuccessiveHalvingPruner(min_resource=1, "
        f"reduction_factor=3), SQLite storage, `n_jobs=2`, `torch.set_num_threads(1)`, torch_ref.py's models "
        f"and loop; each trial reports validation accuracy after every epoch, the pruner is asked after every "
        f"epoch but the last, and the objective returns the best.",
        "",
        f"Best = best validation accuracy among trials that trained every epoch; with the same seed both "
        f"runners train and validate on the same images (optuna_search.py re-implements sweep's split), and "
        f"the test accuracy of that trial is on the 10,000 test images. Target = Optuna's median best minus "
        f"0.2 points (10 validation images) = {pct(target)}%. Time to target = when a trial that trained every "
        f"epoch first reached it, seconds after the runner's process started; a run that never reached it "
        f"counts as last. Best so far at a fraction of Optuna's wall time: on each seed, the best among the "
        f"runner's trials done by then. Cells: median over the seeds (min to max where shown).",
        "",
        header,
        rule,
        *rows,
        "",
        *verdict,
        "",
        f"![best so far against time](benches/{os.path.basename(args.figure)})",
        "",
        "Per run:",
        "",
        "| runner | seed | time to target | best so far at 25% | at 50% | at 100% of Optuna's wall | best val acc % | test acc % of best | wall | epochs trained | trials trained every epoch |",
        "| --- " * 11 + "|",
        *per_seed,
        END,
    ]
    replace_section(args.out, BEGIN, END, "\n".join(section))
    print("\n".join(verdict))


if __name__ == "__main__":
    main()
