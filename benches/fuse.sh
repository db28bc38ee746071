#!/usr/bin/env bash
# Sweep throughput with `[sweep] fuse` K: 16 trials of one architecture (16 learning rates),
# one epoch on the full training set (54,000 training, 6,000 validation images, the 10,000 test
# images), for each K; runs one after the other, RUNS times each. "vs first row" compares with
# the first fuse value of the same invocation.
# Prints a markdown table of median whole-process seconds and trials per minute.
# Usage: benches/fuse.sh [ARCH...]   (default: mlp lenet5); RUNS=3 FUSE="1 4 8 16" override,
# DEVICES=tch-cpu runs on libtorch (a binary built with --features tch; SWEEP names it);
# JOBS=2 THREADS=1 splits the cores into slots (default: one slot of 2 threads).
set -euo pipefail
sweep=${SWEEP:-target/release/sweep}
runs=${RUNS:-3}
fuse_values=${FUSE:-"1 4 8 16"}
devices=${DEVICES:-cpu}
jobs=${JOBS:-1}
threads=${THREADS:-2}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
echo "| architecture | device | jobs x threads | fuse | runs (s) | median (s) | trials / min | vs first row |"
echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
for arch in "${@:-mlp lenet5}"; do
  for a in $arch; do
    cat > "$work/fuse.toml" <<TOML
[sweep]
name = "fuse"
jobs = $jobs
threads = $threads
[data]
split = 0.9
[grid]
arch = "$a"
optimizer = "adam"
lr = [0.0005, 0.0006, 0.0007, 0.0008, 0.0009, 0.001, 0.0011, 0.0012,
      0.0013, 0.0014, 0.0015, 0.0016, 0.0017, 0.0018, 0.0019, 0.002]
batch_size = 64
epochs = 1
dropout = 0.2
TOML
    base=""
    for k in $fuse_values; do
      times=()
      for _ in $(seq "$runs"); do
        rm -rf "$work/db.sqlite" "$work/runs"
        start=$(date +%s.%N)
        "$sweep" run "$work/fuse.toml" --db "$work/db.sqlite" --runs "$work/runs" -q \
          --devices "$devices" --set "sweep.fuse=$k" >/dev/null
        end=$(date +%s.%N)
        times+=("$(echo "$end - $start" | bc -l)")
      done
      median=$(printf '%s\n' "${times[@]}" | sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}')
      [ -z "$base" ] && base=$median
      shown=$(printf '%.1f / ' "${times[@]}")
      printf '| %s | %s | %s x %s | %s | %s | %.1f | %.1f | %.2fx |\n' "$a" "$devices" "$jobs" "$threads" "$k" "${shown% / }" "$median" \
        "$(echo "16 * 60 / $median" | bc -l)" "$(echo "$base / $median" | bc -l)"
    done
  done
done
