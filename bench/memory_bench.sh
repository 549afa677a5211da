#!/usr/bin/env bash
# Memory stays bounded however many storages are on disk: create COUNT storages (each one
# activates its actor), record the server's peak RSS, wait until idle actors are passivated,
# record RSS again, then read a sample back (reactivation).
#
#   bash bench/memory_bench.sh [--count 200000] [--idle-ms 2000]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

count=200000 idle_ms=2000
while (($#)); do
  case $1 in
    --count) count=$2; shift 2 ;;
    --idle-ms) idle_ms=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

work=$(mktemp -d)
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -rf "$work"' EXIT
build/tessera serve --listen 127.0.0.1:0 --data-dir "$work/data" \
  --set storage.idle_passivate_ms="$idle_ms" >"$work/out" 2>"$work/err" &
pid=$!
until grep -q "listening on" "$work/out" 2>/dev/null; do sleep 0.05; done
base=http://127.0.0.1:$(grep -o '[0-9]*$' "$work/out")

rss_mib() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$pid/status"; }
metric() { curl -s "$base/metrics" | awk -v m="$1" '$1 == m {print $2}'; }

echo "idle server: $(rss_mib) MiB"
start=$(date +%s%N)
# Runs until every storage is created (then it only hits /healthz) for at most 10 minutes.
PREFIX=many COUNT=$count wrk -t1 -c32 -d600s -s bench/create.lua "$base" >"$work/wrk" 2>&1 &
wrk_pid=$!
# wrk builds its first request during set-up and never sends it, so many-0 is never created:
# the run is complete at count - 1 storages (many-1 .. many-<count-1>).
target=$((count - 1))
peak=0
while :; do
  created=$(metric 'tessera_storage_commits_total')
  r=$(rss_mib)
  ((r > peak)) && peak=$r
  [[ ${created%.*} -ge $target ]] && break
  sleep 0.5
done
kill $wrk_pid 2>/dev/null || true
wait $wrk_pid 2>/dev/null || true
elapsed=$(( ($(date +%s%N) - start) / 1000000 ))
echo "created $target storages in ${elapsed} ms; live actors $(metric 'tessera_actors_live{kind="storage"}'); peak RSS ${peak} MiB"
until [[ $(metric 'tessera_actors_live{kind="storage"}') == 0 ]]; do sleep 0.5; done
echo "after passivation: live actors 0, passivations $(metric 'tessera_actor_passivations_total{kind="storage"}'), RSS $(rss_mib) MiB"
for i in 1 $((count / 2)) $((count - 1)); do
  curl -sf "$base/api/storages/many-$i" | grep -q "\"n\":$((i + 1))}" || { echo "many-$i did not read back" >&2; exit 1; }
done
echo "read back many-1, many-$((count / 2)), many-$((count - 1)): ok; RocksDB on disk $(du -sm "$work/data" | cut -f1) MiB"
