#!/usr/bin/env bash
# Where one layer's forward + backward pass goes on flex: `perf record` of `cargo bench --bench
# layers --only NAME` (batch 64, 2 threads, its repeats), then the share of CPU samples under
# each of sweep's kernels and the `gemm` crate's (inclusive, from DWARF call stacks).
#
#   benches/profile_layer.sh NAME...    (a substring of a row of the per-layer table, e.g.
#                                        "64->64 3x3 7x7 (sweep)"; needs perf: linux-perf)
#
# Writes benches/profile-layer-results.txt, one part per NAME. Nothing else should run meanwhile.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
out=$here/profile-layer-results.txt
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bench=$(cd "$here/.." && cargo bench --bench layers --no-run 2>&1 |
    sed -n 's/.*Executable benches\/layers.rs (\(.*\))/\1/p')
set +o pipefail
{
    echo "# benches/profile_layer.sh on $(date -u +%F): $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"
    for name in "$@"; do
        echo
        echo "## $name"
        perf record -q --call-graph dwarf,8192 -F 499 -o "$tmp/perf.data" "$bench" --only "$name" \
            2>/dev/null | grep '^| ' | tail -1
        echo
        perf report -i "$tmp/perf.data" --children --sort symbol -g none 2>/dev/null |
            grep -E '^ +[0-9.]+%' | sed -E 's/ +- +- *$//' |
            grep -E 'sweep::kernels::[a-z_0-9]+::[a-z_0-9]+ *$|gemm_f32::microkernel|gemm_common::pack_operands::pack_[a-z]+ *$|__memset|__memmove' |
            head -16
    done
} | sed 's/ *$//' > "$out"
echo "wrote $out"
