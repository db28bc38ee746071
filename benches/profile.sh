#!/usr/bin/env bash
# Where one architecture's training time goes on flex: `perf record` of one epoch of `sweep run`
# on a subset (2 threads, batch 64, Adam), then the share of CPU samples under each of sweep's
# and burn's operations (inclusive, from DWARF call stacks), and the hottest functions on their
# own. Writes benches/profile-ARCH-results.txt.
#
#   [FREQ=HZ] benches/profile.sh [ARCH] [IMAGES]    (default: 499 Hz, resnet 2500; needs perf:
#                                                     apt-get install linux-perf)
#
# Shares are of all samples on both compute threads, so they add up across threads; data loading
# is a fixed cost that a full epoch spreads thinner. Nothing else should run meanwhile.
set -euo pipefail
arch=${1:-resnet}
limit=${2:-2500}
here=$(cd "$(dirname "$0")" && pwd)
sweep=${SWEEP:-$here/../target/release/sweep}
out=$here/profile-$arch-results.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
cat > "$tmp/profile.toml" <<EOF
[sweep]
name = "profile-$arch"
threads = 2
[data]
limit = $limit
split = 0.9
test_limit = 0
[grid]
arch = "$arch"
optimizer = "adam"
lr = 0.001
batch_size = 64
epochs = 1
dropout = 0.2
EOF
perf record -q --call-graph dwarf,16384 -F "${FREQ:-499}" -o "$tmp/perf.data" \
    "$sweep" run "$tmp/profile.toml" --db "$tmp/profile.db" -q
# `head` closes the pipes early: not a failure.
set +o pipefail
{
    echo "# benches/profile.sh $arch $limit on $(date -u +%F): $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
    echo "# $("$sweep" --version)"
    echo "# training: $(sqlite3 "$tmp/profile.db" 'SELECT printf("%.2f", train_seconds) FROM epochs') s for $((limit * 9 / 10)) images"
    echo
    echo "## Inclusive share of samples under each operation (sweep's and burn's)"
    perf report -i "$tmp/perf.data" --children --sort symbol -g none 2>/dev/null |
        grep -E '^ +[0-9.]+%' |
        grep -E 'sweep::kernels::[a-z_:]+|sweep::model::[a-z_]+::[A-Za-z_:]+|burn_flex::ops::[a-z_]+::[a-z_0-9]+$|burn_flex::ops::[a-z_]+::[a-z_0-9]+_f32' |
        grep -v 'closure' | head -40
    echo
    echo "## The two busiest threads: share of each one's samples by the step it was in"
    # A sample counts under the first of these frames on its call stack; without one, as a job
    # shared out by another thread or as waiting for one (by its innermost function). Shows
    # how much of the training thread's time is work no other thread shares.
    perf script -i "$tmp/perf.data" -F tid,ip,sym 2>/dev/null | python3 -c '
import collections, sys
steps = [("batch gather", "sweep::data::gather"), ("adam", "adam_step"),
         ("linear layers, backward", "fused_linear_backward"), ("linear layers, forward", "kernels::linear::forward"),
         ("conv layers, backward", "fused_conv2d_backward"), ("conv layers, forward", "ConvPool"),
         ("batch norm", "batch_norm"),
         ("dropout masks", "dense::linear_relu_dropout"), ("loss", "cross_entropy"),
         ("rest of the backward pass", "backward_impl"), ("rest of the step", "run_group")]
waits = ["sched", "yield", "syscall", "futex", "steal", "crossbeam", "rayon_core", "switch",
         "spin", "wake", "irq", "poll"]
counts, totals, tid, stack = collections.Counter(), collections.Counter(), None, []
def flush():
    if tid is None:
        return
    totals[tid] += 1
    frames = "\n".join(stack)
    step = next((name for name, frame in steps if frame in frames), None)
    if step is None:
        # No step on the stack: a job another thread shared out, or waiting for one.
        leaf = stack[0] if stack else ""
        idle = any(w in leaf for w in waits)
        step = "waiting for work" if idle else "jobs shared out (products, elementwise)"
    counts[tid, step] += 1
for line in sys.stdin:
    if not line.strip():
        flush(); tid, stack = None, []
    elif tid is None:
        tid = line.split()[0]
    else:
        stack.append(line)
flush()
for rank, (thread, total) in enumerate(totals.most_common(2)):
    print(f"thread {rank + 1}: {total} samples")
    for (t, name), n in counts.most_common():
        if t == thread and n * 100 >= total:
            print(f"  {100 * n / total:5.1f}%  {name}")
'
    echo
    echo "## Hottest functions, own samples"
    perf report -i "$tmp/perf.data" --no-children --sort symbol -g none 2>/dev/null |
        grep -E '^ +[0-9.]+%' | head -30
} | sed 's/ *$//' > "$out"
echo "wrote $out"
