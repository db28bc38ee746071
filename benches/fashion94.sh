#!/usr/bin/env bash
# experiments/fashion94.toml run as a user runs it: `sweep run` from an empty database in an
# empty directory, timed by /usr/bin/time -v. Then the record: wall time and peak memory (time's
# report), `sweep ls` and `sweep best` (chosen by validation accuracy), `sweep show` of each trial
# (its per-epoch validation curve and test result) and `sweep report` (learning curves as SVG).
# Raw output goes to benches/fashion94-results.txt, the report to docs/fashion94/.
# Usage: benches/fashion94.sh [WORKDIR]   (SWEEP=path/to/sweep, default target/release/sweep;
#        REPORT_ONLY=1 writes the record of a run already in WORKDIR without training again)
# Nothing else should run meanwhile: the wall time is the result.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
sweep=$(realpath "${SWEEP:-$root/target/release/sweep}")
work=${1:-$(mktemp -d)}
out="$root/benches/fashion94-results.txt"
mkdir -p "$work/experiments"
cd "$work"
if [ "${REPORT_ONLY:-0}" != 1 ]; then
  if [ -e sweep.db ]; then
    echo "$work/sweep.db exists: the run starts from an empty database" >&2
    exit 1
  fi
  cp "$root/experiments/fashion94.toml" experiments/
  echo "$("$sweep" --version) at $(git -C "$root" rev-parse --short HEAD)" > binary.txt
  /usr/bin/time -v "$sweep" run experiments/fashion94.toml > run.log 2> time.log
fi
best=$("$sweep" best --sweep fashion94 --format csv | awk -F, 'NR == 2 { print $1 }')
{
  echo "# benches/fashion94.sh, recorded $(date -u +%F), $(nproc) cores; the run's binary: $(cat binary.txt 2>/dev/null || echo "not recorded")"
  echo "## /usr/bin/time -v sweep run experiments/fashion94.toml (from an empty database)"
  grep -E "Elapsed \(wall clock\)|Maximum resident set size|User time|System time|Exit status" time.log
  echo "## sweep ls fashion94"
  "$sweep" ls --sweep fashion94
  echo "## sweep best fashion94 (by validation accuracy)"
  "$sweep" best --sweep fashion94
  for id in $("$sweep" ls --sweep fashion94 --format csv | awk -F, 'NR > 1 { print $1 }'); do
    echo "## sweep show $id"
    "$sweep" show "$id"
  done
} > "$out"
"$sweep" report fashion94 -o "$root/docs/fashion94/report.md"
echo "wrote $out and docs/fashion94/report.md (trial $best)"
