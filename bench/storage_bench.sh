#!/usr/bin/env bash
# Drives the storage REST API of a fresh build/tessera over loopback with wrk and prints
# requests/s and p50/p99 latency for GET and PATCH, with and without --sync.
#
#   bash bench/storage_bench.sh [--duration 10s] [--runs 3] [--storages 64] [--connections 32]
#                               [--binary build/tessera]
#   ONLY_PATCH=1 (PATCH rows only) or ONLY_SYNC=1 (--sync rows only) narrow the run.
#
# Each configuration runs `runs` times against a fresh server and data dir; the median of the
# runs is reported. The "paced" rows run PATCH at about half the measured peak rate (wrk's
# delay() per connection) and report the latency there.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

duration=10s runs=3 storages=64 connections=32 bin=build/tessera
while (($#)); do
  case $1 in
    --duration) duration=$2; shift 2 ;;
    --runs) runs=$2; shift 2 ;;
    --storages) storages=$2; shift 2 ;;
    --connections) connections=$2; shift 2 ;;
    --binary) bin=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

work=$(mktemp -d)
server_pid=
cleanup() {
  [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

start_server() {
  rm -rf "$work/data" "$work/out"
  "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data" "$@" >"$work/out" 2>"$work/err" &
  server_pid=$!
  for _ in $(seq 100); do
    grep -q "listening on" "$work/out" 2>/dev/null && break
    sleep 0.05
  done
  port=$(grep -o '[0-9]*$' "$work/out")
  base=http://127.0.0.1:$port
  for i in $(seq 0 $((storages - 1))); do
    curl -sf -X POST "$base/api/storages" -H 'Content-Type: application/json' -d "{\"id\":\"bench-$i\",\"data\":{}}" >/dev/null
  done
}

stop_server() {
  kill "$server_pid"
  wait "$server_pid" || true
  server_pid=
}

# wrk_run SCRIPT [DELAY_MS [CONNECTIONS]] -> "rps p50_ms p99_ms"
wrk_run() {
  local script=$1 delay=${2:-0} conns=${3:-$connections}
  STORAGES=$storages DELAY_MS=$delay wrk -t1 -c"$conns" -d"$duration" --latency \
    -s "bench/$script" "$base" >"$work/wrk" 2>&1
  if grep -q "unexpected status\|Non-2xx" "$work/wrk"; then
    cat "$work/wrk" >&2
    echo "benchmark saw failed requests" >&2
    exit 1
  fi
  awk '
    function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
    /Requests\/sec/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    END { printf "%d %.2f %.2f\n", rps, p50, p99 }' "$work/wrk"
}

# CPU time stolen by the hypervisor, in percent, since the given snapshot of /proc/stat.
cpu_snapshot() { awk '/^cpu / { t = 0; for (i = 2; i <= NF; i++) t += $i; print t, $9 }' /proc/stat; }
steal_since() {
  local t0=$1 s0=$2 t1 s1
  read -r t1 s1 < <(cpu_snapshot)
  awk -v dt=$((t1 - t0)) -v ds=$((s1 - s0)) 'BEGIN { printf "%.0f", (dt > 0 ? 100 * ds / dt : 0) }'
}

median() { sort -n | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# measure LABEL SCRIPT [server args...]: peak rate, then PATCH paced at half of it
measure() {
  local label=$1 script=$2
  shift 2
  local rps=() p50=() p99=() paced50=() paced99=() pacedrps=() t0 s0
  read -r t0 s0 < <(cpu_snapshot)
  for _ in $(seq "$runs"); do
    start_server "$@"
    read -r r a b < <(wrk_run "$script")
    rps+=("$r") p50+=("$a") p99+=("$b")
    # Half the peak: with twice the connections (finer steps, delay() counts whole ms), each
    # connection's cycle (latency + delay) should last 2 * paced_connections / rps.
    local delay paced_connections=$((2 * connections))
    delay=$(awk -v c="$paced_connections" -v r="$r" -v p50="$a" \
      'BEGIN { d = 2000 * c / (r > 0 ? r : 1) - p50; printf "%d", (d < 1 ? 1 : d + 0.5) }')
    read -r r a b < <(wrk_run "$script" "$delay" "$paced_connections")
    pacedrps+=("$r") paced50+=("$a") paced99+=("$b")
    stop_server
  done
  printf '%-14s %7s req/s  p50 %5s ms  p99 %6s ms | paced %6s req/s  p50 %5s ms  p99 %6s ms | steal %s%%\n' \
    "$label" \
    "$(printf '%s\n' "${rps[@]}" | median)" "$(printf '%s\n' "${p50[@]}" | median)" \
    "$(printf '%s\n' "${p99[@]}" | median)" "$(printf '%s\n' "${pacedrps[@]}" | median)" \
    "$(printf '%s\n' "${paced50[@]}" | median)" "$(printf '%s\n' "${paced99[@]}" | median)" \
    "$(steal_since "$t0" "$s0")"
}

echo "tessera storage benchmark: $runs runs of $duration, $connections connections, $storages storages, wrk -t1"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
[[ ${ONLY_SYNC:-}${ONLY_PATCH:-} ]] || measure "GET" get.lua
[[ ${ONLY_SYNC:-} ]] || measure "PATCH" patch.lua
[[ ${ONLY_PATCH:-} ]] || measure "GET --sync" get.lua --sync
measure "PATCH --sync" patch.lua --sync
