#!/bin/bash
# Interleaved A/B of two builds on the same machine in one run, for figures that must be
# compared against a same-session baseline (the machine is shared and its speed drifts by day):
#
#   bash bench/ab_bench.sh BASE_BINARY NEW_BINARY [ROUNDS=3]
#
# Each round runs, for base then new: bench/sandbox_bench.py (8 warm keys), bench/panel_bench.py
# (todo, 8 clients; 16 counter panels; one client), each with --runs 1, so the two builds see
# the same drift. Take the median of the rounds per row. A baseline binary: check the base
# commit out with `git worktree add /tmp/base <commit>` and build it there (ccache makes it a
# minute or so).
set -euo pipefail
base=${1:?base binary}
new=${2:?new binary}
rounds=${3:-3}
cd "$(dirname "$0")/.."
for round in $(seq "$rounds"); do
  for side in base new; do
    bin=$base
    [ "$side" = new ] && bin=$new
    echo "== $side round $round ($bin)"
    TESSERA_BIN=$bin /usr/bin/python3 bench/sandbox_bench.py --runs 1 --duration 4 --warm-keys 8 \
      2>&1 | grep -E "trivial action|overhead|per call"
    TESSERA_BIN=$bin /usr/bin/python3 bench/panel_bench.py --runs 1 --duration 3 2>&1 | grep -E "\| toggle"
    TESSERA_BIN=$bin /usr/bin/python3 bench/panel_bench.py --runs 1 --duration 3 --panels 16 \
      --connections 16 2>&1 | grep -E "peak"
    TESSERA_BIN=$bin /usr/bin/python3 bench/panel_bench.py --runs 1 --duration 3 --connections 1 \
      2>&1 | grep -E "peak"
  done
done
