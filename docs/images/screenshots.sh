#!/usr/bin/env bash
# Regenerates the web view's screenshots in docs/images: a small real search and the quick grid
# (Fashion-MNIST subsets, seconds on 2 cores) into a throwaway database, `sweep serve` on it, and
# headless Chromium's --screenshot of a sweep page, a search page, a trial page and compare.
#   bash docs/images/screenshots.sh [path/to/sweep]
set -euo pipefail
cd "$(dirname "$0")/../.."
sweep="${1:-${CARGO_TARGET_DIR:-target}/release/sweep}"
work="$(mktemp -d)"
trap 'kill "$server" 2>/dev/null || true; rm -rf "$work"' EXIT
"$sweep" run experiments/search.toml --db "$work/shots.db" --runs "$work/runs" -q \
  --set data.limit=1500 --set sweep.trials=24 --set 'grid.arch=["mlp","lenet5"]' --set grid.epochs=4
"$sweep" run experiments/quick.toml --db "$work/shots.db" --runs "$work/runs" -q
"$sweep" serve --db "$work/shots.db" --bind 127.0.0.1:8798 > "$work/url" 2>/dev/null &
server=$!
sleep 2
shoot() { # URL-path file height
  chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --virtual-time-budget=4000 \
    --window-size=1280,"$3" --screenshot="docs/images/$2" "http://127.0.0.1:8798/$1" 2>/dev/null
}
shoot sweeps/quick web-quick.png 1500
shoot sweeps/search web-search.png 3600
shoot trials/28 web-trial.png 1900
shoot 'compare?ids=1,3,5' web-compare.png 1500
