#!/usr/bin/env bash
# tessera's one entry point for set-up, build, run and tests on Debian 12 (run as root).
#
#   bash scripts/dev.sh serve   install what is missing, build, run the server on its defaults
#   bash scripts/dev.sh test    install what is missing, build, run every test (CI runs this)
#   bash scripts/dev.sh build   install what is missing and build only
#   bash scripts/dev.sh bench   build and run the benchmarks in bench/
#   bash scripts/dev.sh cluster [N] [serve options...]
#                               build, run N nodes (default 3) on a throwaway PostgreSQL till Ctrl-C
#
# Idempotent: packages already installed are not fetched again, and ccache + Ninja make a
# rebuild with nothing changed take seconds.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

BUILD_PACKAGES=(cmake g++ ninja-build ccache mold pkg-config
  libcaf-dev librocksdb-dev libboost1.81-dev nlohmann-json3-dev prometheus-cpp-dev
  libtomlplusplus-dev libcli11-dev doctest-dev libhowardhinnant-date-dev tzdata
  pybind11-dev python3-dev python3-jinja2 libseccomp-dev bubblewrap libssl-dev libpq-dev)
TEST_PACKAGES=(python3 python3-pytest python3-requests prometheus curl clang-format runsc
  python3-websockets chromium chromium-driver python3-selenium python3-croniter iproute2
  postgresql)
BENCH_PACKAGES=(wrk curl python3-websockets)

# ccache hits across fresh clones (CI clones into a new directory every run).
export CCACHE_BASEDIR=$PWD CCACHE_NOHASHDIR=1

log() { printf '==> %s\n' "$*" >&2; }

install_missing() {
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if ((${#missing[@]})); then
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

jobs() { nproc 2>/dev/null || echo 2; }

# build DIR [extra cmake args...]
build() {
  local dir=$1
  shift
  if [[ ! -f $dir/build.ninja ]]; then
    cmake -S . -B "$dir" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo "$@" >/dev/null
  fi
  log "building $dir"
  cmake --build "$dir" -j "$(jobs)"
}

# The end-to-end suites whose outcome depends on how state is stored: they run on PostgreSQL
# too (a throwaway server the harness starts itself; tests/e2e/postgres.py).
STORAGE_SUITES=(test_storage_crud.py test_panels.py test_tasks.py test_durability.py
  test_atomic_actions.py test_concurrency.py test_batched_actions.py test_changes.py)

run_tests() {
  local dir=$1
  log "unit tests ($dir)"
  (cd "$dir" && ctest --output-on-failure)
  log "end-to-end tests ($dir)"
  TESSERA_BIN="$PWD/$dir/tessera" /usr/bin/python3 -m pytest tests/e2e -q -p no:cacheprovider
}

run_postgres_tests() {
  local dir=$1
  log "end-to-end tests on PostgreSQL ($dir): the suites of storage semantics"
  E2E_BACKEND=postgres TESSERA_BIN="$PWD/$dir/tessera" /usr/bin/python3 -m pytest -q \
    -p no:cacheprovider "${STORAGE_SUITES[@]/#/tests/e2e/}"
}

case "${1:-}" in
  serve)
    install_missing "${BUILD_PACKAGES[@]}"
    build build
    shift
    exec build/tessera serve "$@"
    ;;
  build)
    install_missing "${BUILD_PACKAGES[@]}"
    build build
    ;;
  test)
    install_missing "${BUILD_PACKAGES[@]}" "${TEST_PACKAGES[@]}"
    # The cron oracle tests compare against the npm package croner (pinned in package.json).
    command -v npm >/dev/null || install_missing nodejs npm
    npm install --prefix tests/e2e/cron_oracle --no-audit --no-fund --silent
    log "clang-format check"
    git ls-files '*.cpp' '*.hpp' | xargs clang-format --dry-run --Werror
    build build
    run_tests build
    run_postgres_tests build
    # The same suites again under AddressSanitizer and UBSan.
    build build-asan -DTESSERA_SANITIZE=ON -DCMAKE_BUILD_TYPE=Debug
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=halt_on_error=1:print_stacktrace=1 \
      run_tests build-asan
    log "all tests passed"
    ;;
  bench)
    install_missing "${BUILD_PACKAGES[@]}" "${BENCH_PACKAGES[@]}"
    build build
    shift
    bash bench/storage_bench.sh "$@"
    bash bench/memory_bench.sh
    /usr/bin/python3 bench/sandbox_bench.py
    /usr/bin/python3 bench/panel_bench.py
    /usr/bin/python3 bench/fanout_bench.py --receiver cxx
    ;;
  cluster)
    install_missing "${BUILD_PACKAGES[@]}" postgresql
    build build
    shift
    source scripts/cluster.sh
    cluster "$@"
    ;;
  *)
    sed -n '2,12p' "$0" | sed 's/^# \{0,1\}//'
    exit 2
    ;;
esac
