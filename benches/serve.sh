#!/usr/bin/env bash
# The web view at scale, side by side: `sweep serve` (benches/serve_scale.rs) and
# optuna-dashboard (benches/serve_optuna.py) on studies of the same shape: a random search over
# lr (log-uniform) and dropout, 10 epochs (intermediate values) per trial, every third trial
# pruned at epoch 3. Synthetic rows, written through each tool's own storage. The databases are
# built first (kept in $BENCH_DIR, reused when present), then every timing runs, one tool after
# the other, on an otherwise idle machine. Raw output: benches/serve-results.txt.
#
#   VENV=/path/to/venv-with-optuna-dashboard bash benches/serve.sh
# (python3 -m venv VENV && VENV/bin/pip install optuna optuna-dashboard)
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VENV:?set VENV to a virtualenv with optuna and optuna-dashboard}"
BENCH_DIR="${BENCH_DIR:-$HOME/.cache/sweep-bench}"
mkdir -p "$BENCH_DIR"
out=benches/serve-results.txt
cargo bench --bench serve_scale --no-run
{
  echo "# benches/serve.sh, $(date -u +%Y-%m-%dT%H:%M:%SZ), $(nproc) cores, $(uname -m)"
  "$VENV/bin/python3" -c 'import optuna, optuna_dashboard; print("# optuna", optuna.__version__, "optuna-dashboard", optuna_dashboard.__version__)'
  echo "# sweep $(git rev-parse --short HEAD)"
} > "$out"
# Build what is missing first, so that no build runs while anything is timed.
for n in 1000 10000 100000; do
  test -e "$BENCH_DIR/optuna-$n.db" ||
    "$VENV/bin/python3" benches/serve_optuna.py --trials "$n" --db "$BENCH_DIR/optuna-$n.db" --build-only | tee -a "$out"
done
test -e "$BENCH_DIR/sweep-100000.db" ||
  SWEEP_BENCH_DB="$BENCH_DIR/sweep-100000.db" SWEEP_BENCH_BUILD_ONLY=1 cargo bench --bench serve_scale | tee -a "$out"
# Then the timings, one tool after the other.
SWEEP_BENCH_DB="$BENCH_DIR/sweep-100000.db" cargo bench --bench serve_scale | tee -a "$out"
for n in 1000 10000 100000; do
  "$VENV/bin/python3" benches/serve_optuna.py --trials "$n" --db "$BENCH_DIR/optuna-$n.db" | tee -a "$out"
done
