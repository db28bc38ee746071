"""Population-based training against TPE with ASHA and random search at equal compute, with Ray
Tune's PopulationBasedTraining as the anchor, one run after the other, into BENCHMARKS.md.

The space of experiments/pbt.toml, where schedules matter: the CNN, SGD with momentum 0.9, lr
log-uniform 1e-3..0.3, weight decay log-uniform 1e-6..1e-3, batch 64, 12 epochs on 6,000
training images (4,800 to train, 1,200 to validate, split as sweep splits them), every member or
trial that trains all 12 epochs tested on 2,000 test images. The compute budget is the
population's, 8 x 12 = 96 epochs, for every runner:
  - sweep pbt: population 8, a step every 2 epochs, quantile 0.25, resample probability 0.25,
    factors 0.8 and 1.2 (experiments/pbt.toml);
  - sweep tpe + asha: TPE with ASHA (rungs at 1, 3, 9 epochs, reduction factor 3), drawing
    until its trials have trained 96 epochs, counted in the order the epochs were recorded;
  - sweep random: 8 configurations, every one trained 12 epochs;
  - Ray Tune pbt: PopulationBasedTraining with the same settings, synchronous
    (benches/ray_pbt.py; torch_ref.py's CNN in PyTorch).
Two at a time, one compute thread each. A runner's result on a seed is the trial (member) with
the best final validation accuracy among those that trained all 12 epochs within the budget,
and that trial's test accuracy (both of the same final weights).

Run with a Python that has torch 2.9 and ray[tune]:
  VENV/bin/python3 benches/pbt_bench.py --sweep target/release/sweep [--seeds 1,2,3]
Each run is added to benches/pbt-results.json as it ends (rerunning skips the runs there;
--from-raw only rewrites the section). Writes the section between the pbt-bench markers of
BENCHMARKS.md. Nothing else should run meanwhile (2 cores).
"""
import argparse, json, os, re, sqlite3, sys

from search_bench import replace_section, run_missing, spread, timed, when  # same clock and summaries as the search bench
from mo_bench import load_raw

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(HERE, "..")
BEGIN, END = "<!-- pbt-bench -->", "<!-- /pbt-bench -->"
PBT, TPE, RANDOM, RAY = "sweep pbt", "sweep tpe + asha", "sweep random", "Ray Tune pbt"
RUNNERS = [PBT, TPE, RANDOM, RAY]
POPULATION, EPOCHS = 8, 12
BUDGET = POPULATION * EPOCHS
TPE_TRIALS = 36  # about the budget's worth of ASHA trials; epochs past the budget do not count


def experiment(label):
    """experiments/pbt.toml, or the same space searched by `label`'s sampler."""
    with open(os.path.join(ROOT, "experiments", "pbt.toml")) as f:
        text = f.read()
    if label == PBT:
        return text
    text = re.sub(r"\[pbt\]\n(.+\n)+\n", "", text)
    trials = TPE_TRIALS if label == TPE else POPULATION
    sampler = "tpe" if label == TPE else "random"
    text = text.replace('sampler = "pbt"', f'sampler = "{sampler}"\ntrials = {trials}')
    if label == TPE:
        text += '\n[prune]\nmethod = "asha"\nmin_epochs = 1\nreduction_factor = 3\n'
    return text


def run_sweep(args, tmp, label, seed):
    db = os.path.join(tmp, f"{label.split()[1]}-{seed}.db")
    path = db + ".toml"
    with open(path, "w") as f:
        f.write(experiment(label))
    cmd = [args.sweep, "run", path, "--db", db, "--runs", db + ".runs", "--data", args.data,
           "--jobs", "2", "--threads", "1", "-q", "--set", f"sweep.seed={seed}"]
    out, wall, start = timed(cmd)
    conn = sqlite3.connect(db)
    epochs = conn.execute("SELECT trial_id, epoch, recorded_at FROM epochs").fetchall()
    trials = conn.execute(
        "SELECT id, status, val_acc, test_acc, epochs_done FROM trials").fetchall()
    copies = conn.execute("SELECT COUNT(*) FROM trial_copies").fetchone()[0]
    # The epochs in the order they were recorded; a trial counts if its last one is within
    # the budget.
    order = sorted(epochs, key=lambda e: when(e[2]))
    within = {}
    for n, (trial, epoch, _) in enumerate(order[:BUDGET], 1):
        within[trial] = max(within.get(trial, 0), epoch)
    members = [{"val_acc": val, "test_acc": test, "epochs": done,
                "within_budget": status == "done" and within.get(id_, 0) == done}
               for id_, status, val, test, done in trials]
    return {"wall_s": round(wall, 2), "epochs": len(epochs), "copies": copies,
            "start": start, "members": members}


def run_ray(args, seed):
    cmd = [sys.executable, os.path.join(HERE, "ray_pbt.py"), "--data", args.data, "--ref",
           args.ref, "--seed", str(seed), "--population", str(POPULATION), "--epochs",
           str(EPOCHS), "--interval", "2", "--limit", "6000", "--split", "0.8",
           "--test-limit", "2000"]
    out, wall, _ = timed(cmd)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for m in result["members"]:
        m["within_budget"] = m["epochs"] == EPOCHS and m["error"] is None
    result["epochs"] = sum(m["epochs"] or 0 for m in result["members"])
    result["wall_s"] = round(wall, 2)
    return result


def best(result):
    """The best final validation accuracy within the budget, and that trial's test accuracy."""
    done = [m for m in result["members"] if m["within_budget"] and m["val_acc"] is not None]
    top = max(done, key=lambda m: m["val_acc"], default=None)
    return (top["val_acc"], top["test_acc"]) if top else (None, None)


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--sweep", default=os.path.join(ROOT, "target", "release", "sweep"))
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--ref", default=os.path.join(ROOT, "..", "shared", "bench"))
    p.add_argument("--seeds", default="1,2,3")
    p.add_argument("--runners", default=",".join(RUNNERS))
    p.add_argument("--raw", default=os.path.join(HERE, "pbt-results.json"))
    p.add_argument("--out", default=os.path.join(ROOT, "BENCHMARKS.md"))
    p.add_argument("--from-raw", action="store_true")
    args = p.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    raw = load_raw(args.raw, RUNNERS)
    if not args.from_raw:
        def run(label, seed, tmp):
            return run_ray(args, seed) if label == RAY else run_sweep(args, tmp, label, seed)
        run_missing(raw, args.raw, seeds, args.runners.split(","), run,
                    lambda r: "best val {}, its test {}".format(*best(r)))
    write_section(args, raw)


def write_section(args, raw):
    results = raw["results"]
    runners = [l for l in RUNNERS if results[l]]
    seeds = sorted(set.intersection(*(set(results[l]) for l in runners)), key=int)
    acc = lambda v: f"{100 * v:.2f}"
    table = ["| runner | best validation accuracy | its test accuracy | epochs trained | "
             "copies | wall |", "|---|---|---|---|---|---|"]
    for l in runners:
        runs = [results[l][s] for s in seeds]
        table.append("| " + " | ".join([
            l,
            spread([best(r)[0] for r in runs], acc),
            spread([best(r)[1] for r in runs], acc),
            spread([r["epochs"] for r in runs], lambda v: f"{v:.0f}"),
            spread([r.get("copies", 0) for r in runs], lambda v: f"{v:.0f}") if l != RAY else "-",
            spread([r["wall_s"] for r in runs], lambda v: f"{v:.0f} s"),
        ]) + " |")
    per_seed = []
    for s in seeds:
        ours, theirs = best(results[PBT][s])[0], best(results[TPE][s])[0]
        per_seed.append(f"seed {s}: {acc(ours)} against {acc(theirs)} "
                        f"({'+' if ours >= theirs else ''}{100 * (ours - theirs):.2f} points)")
    wins = sum(best(results[PBT][s])[0] >= best(results[TPE][s])[0] for s in seeds)
    m = raw["machine"]
    section = "\n".join([
        BEGIN,
        "## Population-based training at equal compute",
        "",
        f"`benches/pbt_bench.py` ({len(seeds)} seeds: {', '.join(seeds)}; {m['cpu']}, "
        f"{m['cores']} cores; raw runs in `benches/pbt-results.json`). The space of "
        "`experiments/pbt.toml`: the CNN, SGD with momentum 0.9, lr log-uniform 1e-3..0.3, weight "
        "decay log-uniform 1e-6..1e-3, 12 epochs on 6,000 images (4,800 to train, 1,200 to "
        "validate), tests on 2,000 test images; every runner gets the population's compute, "
        f"{BUDGET} epochs (TPE + ASHA counts its epochs in the order they were recorded and "
        "stops counting at the budget), 2 jobs x 1 thread. A runner's result is its trial with "
        "the best final validation accuracy among those that trained all 12 epochs within the "
        "budget, and that trial's test accuracy (the same weights); median (range) over seeds, "
        "in percent. Ray Tune's `PopulationBasedTraining` (synchronous, the same settings, "
        "torch_ref.py's CNN in PyTorch) is the anchor.",
        "",
        *table,
        "",
        "sweep pbt against sweep tpe + asha, best validation accuracy per seed: "
        + "; ".join(per_seed) + f". PBT is at least as good on {wins} of {len(seeds)} seeds "
        "(target: PBT's best at least tpe + asha's at equal compute).",
        "",
        "The wall times are for reading, not for ranking: Ray Tune trains in PyTorch and "
        "restores members from checkpoints in new worker processes.",
        END,
    ])
    replace_section(args.out, BEGIN, END, section)


if __name__ == "__main__":
    main()
