#!/usr/bin/env bash
# Sourced by scripts/dev.sh for `bash scripts/dev.sh cluster [N] [serve options...]`; uses its
# log() and runs from the repository root.

# cluster N [serve options...]: N nodes of build/tessera on 127.0.0.1:CLUSTER_BASE_PORT.. (default
# 8081..) sharing one throwaway PostgreSQL, started the way tests/e2e/postgres.py starts it:
# initdb in a temp dir, a unix socket there and no TCP port, as the `postgres` user when run as
# root; the machine's own cluster is never touched. Runs until Ctrl-C (or SIGTERM), then stops
# the nodes (SIGTERM, SIGKILL after 10 s), PostgreSQL, and removes the temp dir.
# (CLUSTER_BASE_PORT, not TESSERA_*: the server refuses TESSERA_* variables it does not know,
# and the nodes inherit this environment.)
CLUSTER_DIR=
CLUSTER_PG_BIN=
CLUSTER_PG_STARTED=
CLUSTER_URL=
CLUSTER_NAMES=()
CLUSTER_PIDS=()
CLUSTER_DONE=

# pg_tool TOOL ARGS...: a PostgreSQL tool from CLUSTER_PG_BIN, as `postgres` when run as root
# (initdb and postgres refuse root). Run from the temp dir, which `postgres` can enter.
pg_tool() {
  local tool=$CLUSTER_PG_BIN/$1
  shift
  if ((EUID == 0)); then
    (cd "$CLUSTER_DIR" && runuser -u postgres -- "$tool" "$@")
  else
    (cd "$CLUSTER_DIR" && "$tool" "$@")
  fi
}

# The last lines of a node's (or PostgreSQL's) log, indented.
log_tail() { tail -n 20 "$1" 2>/dev/null | sed 's/^/    /' >&2 || true; }

cluster_start_postgres() {
  CLUSTER_PG_BIN=$(printf '%s\n' /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
  if [[ ! -x $CLUSTER_PG_BIN/initdb ]]; then
    log "PostgreSQL is not installed (/usr/lib/postgresql/*/bin/initdb)"
    exit 1
  fi
  if ((EUID == 0)); then chown postgres:postgres "$CLUSTER_DIR"; fi
  log "starting a throwaway PostgreSQL in $CLUSTER_DIR ($CLUSTER_PG_BIN)"
  if ! pg_tool initdb -D "$CLUSTER_DIR/data" -U postgres -A trust --no-sync -E UTF8 \
    >"$CLUSTER_DIR/initdb.log" 2>&1; then
    log "initdb failed:"
    log_tail "$CLUSTER_DIR/initdb.log"
    exit 1
  fi
  CLUSTER_PG_STARTED=1
  if ! pg_tool pg_ctl -D "$CLUSTER_DIR/data" -l "$CLUSTER_DIR/log" -w -o \
    "-k $CLUSTER_DIR -p 5432 -c listen_addresses='' -c max_connections=200" start >/dev/null; then
    log "PostgreSQL did not start:"
    log_tail "$CLUSTER_DIR/log"
    exit 1
  fi
}

# cluster_start_node NAME PORT [serve options...]: starts it in the background and waits (30 s
# at most) for its "tessera listening on HOST:PORT" line.
cluster_start_node() {
  local name=$1 port=$2
  shift 2
  local out=$CLUSTER_DIR/$name.out err=$CLUSTER_DIR/$name.log
  # A session of its own: Ctrl-C reaches only this script, which stops the nodes itself.
  setsid build/tessera serve --listen "127.0.0.1:$port" --data-dir "$CLUSTER_DIR/$name" \
    --set storage.backend=postgres --set "storage.postgres_url=$CLUSTER_URL" \
    --set cluster.enabled=true --set "cluster.node_name=$name" --set cluster.listen=127.0.0.1:0 \
    "$@" >"$out" 2>"$err" &
  CLUSTER_NAMES+=("$name")
  CLUSTER_PIDS+=($!)
  local pid=$! deadline=$((SECONDS + 30))
  until grep -q "tessera listening on" "$out" 2>/dev/null; do
    if ! kill -0 "$pid" 2>/dev/null; then
      local status=0
      wait "$pid" || status=$?
      unset 'CLUSTER_PIDS[-1]'
      log "$name exited (status $status) before it listened; the end of $err:"
      log_tail "$err"
      exit 1
    fi
    if ((SECONDS >= deadline)); then
      log "$name did not listen within 30 s; the end of $err:"
      log_tail "$err"
      exit 1
    fi
    sleep 0.2
  done
}

cluster_stop() {
  [[ -z $CLUSTER_DONE ]] || return 0
  CLUSTER_DONE=1
  trap '' INT TERM
  local i n alive
  # CLUSTER_PIDS holds the nodes not yet reaped (an index is unset when its node is), by the
  # index of their name in CLUSTER_NAMES.
  if ((${#CLUSTER_PIDS[@]})); then
    log "stopping ${#CLUSTER_PIDS[@]} node(s)"
    for i in "${!CLUSTER_PIDS[@]}"; do kill -TERM "${CLUSTER_PIDS[i]}" 2>/dev/null || true; done
    for ((alive = 1, n = 0; alive && n < 100; n++)); do
      alive=0
      for i in "${!CLUSTER_PIDS[@]}"; do
        if kill -0 "${CLUSTER_PIDS[i]}" 2>/dev/null; then alive=1; fi
      done
      if ((alive)); then sleep 0.1; fi
    done
    for i in "${!CLUSTER_PIDS[@]}"; do
      if kill -0 "${CLUSTER_PIDS[i]}" 2>/dev/null; then
        log "${CLUSTER_NAMES[i]} still running 10 s after SIGTERM: SIGKILL"
        kill -KILL "${CLUSTER_PIDS[i]}" 2>/dev/null || true
      fi
      wait "${CLUSTER_PIDS[i]}" 2>/dev/null || true
    done
  fi
  if [[ -n $CLUSTER_PG_STARTED ]]; then
    log "stopping PostgreSQL"
    pg_tool pg_ctl -D "$CLUSTER_DIR/data" -m fast -w stop >/dev/null 2>&1 ||
      pg_tool pg_ctl -D "$CLUSTER_DIR/data" -m immediate -w stop >/dev/null 2>&1 || true
  fi
  if [[ -n $CLUSTER_DIR ]]; then rm -rf "$CLUSTER_DIR"; fi
}

cluster() {
  local n=3
  if [[ ${1:-} =~ ^[0-9]+$ ]]; then
    n=$((10#$1))
    shift
  fi
  local base=${CLUSTER_BASE_PORT:-8081}
  if ((n < 1)) || ! [[ $base =~ ^[0-9]+$ ]] || ((base < 1 || base + n - 1 > 65535)); then
    log "cluster: N must be 1 or more, CLUSTER_BASE_PORT a port (N=$n, CLUSTER_BASE_PORT=$base)"
    exit 2
  fi
  base=$((10#$base))
  CLUSTER_DIR=$(mktemp -d "${TMPDIR:-/tmp}/tessera-cluster.XXXXXX")
  trap cluster_stop EXIT
  trap 'cluster_stop; exit 130' INT
  trap 'cluster_stop; exit 143' TERM
  cluster_start_postgres
  CLUSTER_URL="host=$CLUSTER_DIR port=5432 user=postgres dbname=postgres"
  local i
  for ((i = 1; i <= n; i++)); do
    log "starting node$i on 127.0.0.1:$((base + i - 1))"
    cluster_start_node "node$i" $((base + i - 1)) "$@"
  done
  echo
  echo "tessera cluster: $n node(s)"
  for ((i = 1; i <= n; i++)); do
    printf '  %-8s http://127.0.0.1:%-6s log %s\n' "node$i" $((base + i - 1)) \
      "$CLUSTER_DIR/node$i.log"
  done
  echo "  PostgreSQL: $CLUSTER_URL"
  echo "GET /api/cluster on any node lists the members; Ctrl-C stops everything"
  # Watch the nodes until Ctrl-C: one that exits by itself is reported, the others keep running.
  while ((${#CLUSTER_PIDS[@]})); do
    sleep 1 &
    wait $! || true
    for i in "${!CLUSTER_PIDS[@]}"; do
      if kill -0 "${CLUSTER_PIDS[i]}" 2>/dev/null; then continue; fi
      local status=0
      wait "${CLUSTER_PIDS[i]}" || status=$?
      unset 'CLUSTER_PIDS[i]'
      local err=$CLUSTER_DIR/${CLUSTER_NAMES[i]}.log
      log "${CLUSTER_NAMES[i]} exited by itself (status $status); the end of $err:"
      log_tail "$err"
    done
  done
  log "every node has exited"
  exit 1
}
