#!/usr/bin/env bash
# storage.backend = "postgres" against RocksDB with --sync, both durable, side by side in one
# run (issue 28's figures; the machine's speed drifts by day, so only same-run ratios count).
#
#   bash bench/backend_bench.sh [--rounds 2] [--duration 5s] [--binary build/tessera]
#                               [--migrate 100000]
#
# Starts a throwaway PostgreSQL in a temp dir (unix socket only; fsync and synchronous_commit
# on, as a production server: a commit is durable when acknowledged), and per round, for
# rocksdb --sync then postgres (a fresh database each):
#   PATCH over 64 storages, 16 connections; PATCH of one storage, 16 connections (wrk);
#   one panel's actions (the todo demo's toggle) over HTTP, 16 connections (panel_bench.py);
# and for postgres the mean writes per commit at the peak (group commit), from /metrics.
# Then `tessera migrate` of N storages rocksdb -> postgres, in storages/s.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

rounds=2 duration=5s bin=build/tessera migrate_n=100000
while (($#)); do
  case $1 in
    --rounds) rounds=$2; shift 2 ;;
    --duration) duration=$2; shift 2 ;;
    --binary) bin=$2; shift 2 ;;
    --migrate) migrate_n=$2; shift 2 ;;
    *) echo "unknown option $1" >&2; exit 2 ;;
  esac
done

work=$(mktemp -d)
chmod 755 "$work"
pgbin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -1)
pg() { runuser -u postgres -- "$pgbin/$1" "${@:2}"; }
server_pid=
cleanup() {
  [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null
  pg pg_ctl -D "$work/pg/data" -m immediate -w stop >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
mkdir "$work/pg" && chown postgres: "$work/pg"
pg initdb -D "$work/pg/data" -U postgres -A trust -E UTF8 >/dev/null
pg pg_ctl -D "$work/pg/data" -l "$work/pg/log" -w \
  -o "-k $work/pg -p 5432 -c listen_addresses='' -c max_connections=200" start >/dev/null
fresh_db() {  # called in $(...): the name cannot come from a counter of this shell
  local name=b$(date +%s%N)
  pg psql "host=$work/pg port=5432 user=postgres" -qc "CREATE DATABASE $name" >/dev/null
  echo "host=$work/pg port=5432 user=postgres dbname=$name"
}

start_server() {
  rm -rf "$work/data" "$work/out"
  "$bin" serve --listen 127.0.0.1:0 --data-dir "$work/data" --set panels.demos=false "$@" \
    >"$work/out" 2>"$work/err" &
  server_pid=$!
  for _ in $(seq 200); do
    grep -q "listening on" "$work/out" 2>/dev/null && break
    sleep 0.05
  done
  port=$(grep -o '[0-9]*$' "$work/out")
  base=http://127.0.0.1:$port
}
stop_server() {
  kill "$server_pid"
  wait "$server_pid" || true
  server_pid=
}
create_storages() {
  for i in $(seq 0 $(($1 - 1))); do
    curl -sf -X POST "$base/api/storages" -H 'Content-Type: application/json' \
      -d "{\"id\":\"bench-$i\",\"data\":{}}" >/dev/null
  done
}
# patch_rate STORAGES -> "rps p99_ms"
patch_rate() {
  STORAGES=$1 DELAY_MS=0 wrk -t2 -c16 -d"$duration" --latency -s bench/patch.lua "$base" \
    >"$work/wrk" 2>&1
  if grep -q "unexpected status\|Non-2xx" "$work/wrk"; then cat "$work/wrk" >&2; exit 1; fi
  awk 'function ms(v) { if (v ~ /us$/) return v / 1000; if (v ~ /ms$/) return v + 0; if (v ~ /s$/) return v * 1000; return v }
       /Requests\/sec/ { rps = $2 } $1 == "99%" { p99 = ms($2) }
       END { printf "%d %.2f\n", rps, p99 }' "$work/wrk"
}
metric() {  # NAME -> value of an unlabelled sample
  curl -sf "$base/metrics" | awk -v n="$1" '$1 == n { print $2 }'
}

echo "backend benchmark: $rounds rounds, $duration per figure, wrk -t2 -c16"
echo "machine: $(nproc) cores, $(awk '/MemTotal/ {printf "%.0f GiB", $2/1048576}' /proc/meminfo), $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs); PostgreSQL $("$pgbin/postgres" --version | awk '{print $3}')"
for round in $(seq "$rounds"); do
  for side in rocksdb postgres; do
    if [[ $side == rocksdb ]]; then args=(--sync); else args=(--set storage.backend=postgres --set "storage.postgres_url=$(fresh_db)"); fi
    start_server "${args[@]}"
    create_storages 64
    ops0=$(metric tessera_postgres_commit_batch_ops_sum || true)
    n0=$(metric tessera_postgres_commit_batch_ops_count || true)
    read -r r64 p64 < <(patch_rate 64)
    batch=-
    if [[ $side == postgres ]]; then  # a storage merges its own queued writes: 64 storages
      ops1=$(metric tessera_postgres_commit_batch_ops_sum) n1=$(metric tessera_postgres_commit_batch_ops_count)
      batch=$(awk -v a="$ops0" -v b="$ops1" -v c="$n0" -v d="$n1" 'BEGIN { printf "%.1f", (b - a) / (d - c) }')
    fi
    read -r r1 p1 < <(patch_rate 1)
    stop_server
    if [[ $side == rocksdb ]]; then sets=(--set storage.sync=true); else sets=(--set storage.backend=postgres --set "storage.postgres_url=$(fresh_db)"); fi
    panel=$(TESSERA_BIN=$bin /usr/bin/python3 bench/panel_bench.py --runs 1 --duration "${duration%s}" \
      --connections 16 "${sets[@]}" 2>&1 | grep -E "toggle over HTTP, peak" | awk -F'|' '{gsub(/ /, "", $3); print $3}')
    printf 'round %d %-9s PATCH 64 storages %6s/s p99 %5s ms (writes per commit %s) | PATCH 1 storage %6s/s p99 %5s ms | panel actions %6s/s\n' \
      "$round" "$side" "$r64" "$p64" "$batch" "$r1" "$p1" "$panel"
  done
done

# migrate: N storages made in a files dir, brought into RocksDB, then timed into PostgreSQL.
if ((migrate_n > 0)); then
  /usr/bin/python3 - "$work/files" "$migrate_n" <<'PY'
import json, os, sys
root, n = sys.argv[1], int(sys.argv[2])
os.makedirs(f"{root}/storages")
for i in range(n):
    with open(f"{root}/storages/s{i:07d}.json", "w") as f:
        json.dump({"n": i, "name": f"storage {i}", "tags": ["a", "b"]}, f)
PY
  "$bin" migrate --from "files:$work/files" --to "rocksdb:$work/rocks" >/dev/null
  url=$(fresh_db)
  t0=$(date +%s.%N)
  "$bin" migrate --from "rocksdb:$work/rocks" --to "postgres:$url" >"$work/migrate.out"
  t1=$(date +%s.%N)
  grep -E "^storages" "$work/migrate.out"
  awk -v n="$migrate_n" -v a="$t0" -v b="$t1" 'BEGIN { printf "migrate rocksdb -> postgres: %d storages in %.1f s, %.0f storages/s (read back and checksummed included)\n", n, b - a, n / (b - a) }'
fi
