"""How far apart two runs of the same search land: the best-so-far verdict of search_bench.py
applied to every pair of its committed runs.

search_bench.py's second target asks that sweep's best so far, as a median over 5 seeds, be at
or above Optuna's at 25%, 50% and 100% of Optuna's wall time. Every run of the benchmark keeps
Optuna's own runs of the same seeds, so the same verdict can be asked of Optuna against another
run of itself: how often does the reference pass its own test? A test that the reference passes
against itself as often as not cannot tell a better runner from an equal one; one it never
passes against itself says that a single run decides little.

For each raw file (search_bench.py --raw), on the seeds both runs share:
  - every runner of the file against that file's Optuna (the verdict search_bench.py prints);
  - Optuna of each file against Optuna of each other file, both ways, at the other's wall times
    (pairs sharing a run, as a file extended by --resume does, left out).
Also, over all files, each runner's differences from its own file's Optuna at the three points.

  python3 benches/search_noise.py FILE.json... > benches/search-noise-results.txt
"""
import itertools, json, os, statistics, sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from search_bench import FRACTIONS, OPTUNA, best_at, summarise  # noqa: E402


def points(runs, walls, seeds):
    """Median over `seeds` of the best so far at each fraction of `walls` (0 before any)."""
    return [statistics.median([best_at(summarise(runs[s])["line"], f * walls[s]) or 0.0
                               for s in seeds]) for f in FRACTIONS]


def show(values):
    return " / ".join(f"{100 * v:.2f}" for v in values)


def main():
    files = sys.argv[1:]
    if not files:
        sys.exit(__doc__)
    raws = {os.path.basename(path): json.load(open(path))["results"] for path in files}
    print("# python3 benches/search_noise.py " + " ".join(files))
    print("# best so far at 25% / 50% / 100% of the reference's wall time, medians over the seeds")
    print()
    print("## Each runner against its own file's Optuna")
    differences = {}
    for name, results in raws.items():
        reference = results[OPTUNA]
        for label, runs in results.items():
            if label == OPTUNA:
                continue
            seeds = sorted(set(runs) & set(reference), key=int)
            walls = {s: reference[s]["wall_s"] for s in seeds}
            ours, theirs = points(runs, walls, seeds), points(reference, walls, seeds)
            verdict = all(a >= b for a, b in zip(ours, theirs))
            differences.setdefault(label, []).append([a - b for a, b in zip(ours, theirs)])
            print(f"{name}, seeds {','.join(seeds)}: {label} {show(ours)} against {show(theirs)}: "
                  f"{'at or above at all 3' if verdict else 'not at all 3'}")
    print()
    print("## Optuna against another run of itself (same seeds)")
    passed = pairs = 0
    compared = set()
    for (a, ra), (b, rb) in itertools.permutations(raws.items(), 2):
        seeds = sorted(set(ra[OPTUNA]) & set(rb[OPTUNA]), key=int)
        # A file extended by search_bench.py --resume holds the same runs as the file it grew
        # from: a run against itself, or a pair already compared, says nothing new.
        key = json.dumps([[ra[OPTUNA][s] for s in seeds], [rb[OPTUNA][s] for s in seeds]])
        if any(ra[OPTUNA][s] == rb[OPTUNA][s] for s in seeds) or key in compared:
            continue
        compared.add(key)
        walls = {s: rb[OPTUNA][s]["wall_s"] for s in seeds}
        ours, theirs = points(ra[OPTUNA], walls, seeds), points(rb[OPTUNA], walls, seeds)
        verdict = all(x >= y for x, y in zip(ours, theirs))
        passed, pairs = passed + verdict, pairs + 1
        print(f"Optuna of {a} against Optuna of {b}, seeds {','.join(seeds)}: {show(ours)} against "
              f"{show(theirs)}: {'at or above at all 3' if verdict else 'not at all 3'}")
    print(f"Optuna passes the test against itself in {passed} of {pairs} ordered pairs.")
    print()
    print("## Each runner's difference from its own file's Optuna, points (one line per file)")
    for label, rows in differences.items():
        cells = "; ".join(" / ".join(f"{100 * d:+.2f}" for d in row) for row in rows)
        print(f"{label}: {cells}")


if __name__ == "__main__":
    main()
