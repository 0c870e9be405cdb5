#!/usr/bin/env bash
# `make bench`: proxy overhead and cap throughput against baselines taken in the same run (DESIGN §12).
#
# Starts, all on 127.0.0.1 and all stopped by PID on exit:
#   - a fake upstream (nginx `return 200` with fixed Stripe-shaped JSON; it logs each charge it receives),
#   - nginx as a plain reverse proxy in front of it (the physical baseline),
#   - a throwaway Postgres (.keybrake/bench-pg) and a release-built `keybrake serve`,
# then Benchmarks/drive.py runs every scenario with wrk and prints the table (Benchmarks/report.py);
# results go to Benchmarks/results/ (git-ignored).
#
# Knobs (environment): BENCH_DURATION (s per run, default 10), BENCH_RATES (default 500,2000),
# BENCH_SAT_CONNECTIONS (default 32), BENCH_PROFILE=0 (skip the Postgres/perf profile), BENCH_QUICK=1
# (3 s runs, no profile: a smoke test), BENCH_*_PORT, BENCH_SCRATCH_PATH (default .build-release),
# BENCH_BIN (benchmark this keybrake binary instead of building one; BENCH_MIGRATIONS_DIR: its migrations), BENCH_ONLY=<regex on row names>
# (e.g. 'seq-' or 'keybrake-charge'), BENCH_DATABASE_URL (an external Postgres path, see Benchmarks/ha.sh), BENCH_HOLD=1 (set up, warm up, then keep everything running for manual
# profiling until .keybrake/bench/hold is deleted), BENCH_PG_SETTINGS="name=value …" (per-database Postgres
# settings for experiments). Variables such as KEYBRAKE_* pass through to `keybrake serve`.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

UPSTREAM_PORT="${BENCH_UPSTREAM_PORT:-18091}"
PROXY_PORT="${BENCH_PROXY_PORT:-18092}"
KEYBRAKE_PORT="${BENCH_KEYBRAKE_PORT:-18093}"
PG_PORT="${BENCH_PG_PORT:-24335}"
PG_DIR=".keybrake/bench-pg"
PG_DB="keybrake_bench"
STATE="$ROOT/.keybrake/bench"
SCRATCH="${BENCH_SCRATCH_PATH:-.build-release}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
if [ "${BENCH_QUICK:-0}" = "1" ]; then
  export BENCH_DURATION="${BENCH_DURATION:-3}" BENCH_PROFILE="${BENCH_PROFILE:-0}"
fi

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

# nginx and wrk from Debian, only when missing (scripts/install-deps.sh installs extra packages given as arguments).
bench_deps() {
  scripts/install-deps.sh
  local need=()
  command -v wrk >/dev/null 2>&1 || need+=(wrk)
  command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
  if [ ${#need[@]} -gt 0 ]; then scripts/install-deps.sh "${need[@]}"; fi
}

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_port() {  # PORT PID NAME LOG
  for _ in $(seq 1 300); do
    if ! port_free "$1"; then return 0; fi
    if ! kill -0 "$2" 2>/dev/null; then log "$3 exited during start-up:"; tail -30 "$4" >&2 || true; return 1; fi
    sleep 0.2
  done
  log "$3 did not open port $1 within 60 s"; tail -30 "$4" >&2 || true; return 1
}

UPSTREAM_PID="" PROXY_PID="" KEYBRAKE_PID="" PG_STARTED=0
cleanup() {
  local rc=$?
  trap - EXIT
  for pid in $KEYBRAKE_PID $PROXY_PID $UPSTREAM_PID; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in $KEYBRAKE_PID $PROXY_PID $UPSTREAM_PID; do
    for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    if kill -0 "$pid" 2>/dev/null; then log "pid $pid still running 15 s after SIGTERM: killing it"; kill -KILL "$pid" 2>/dev/null || true; fi
    wait "$pid" 2>/dev/null || true
  done
  if [ "$PG_STARTED" = "1" ]; then scripts/postgres.sh stop "$PG_DIR"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. packages and the release build (its own scratch path: it never waits on the debug build's lock)
bench_deps
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"
WRK="$(command -v wrk)"
if [ -n "${BENCH_BIN:-}" ]; then
  BIN="$BENCH_BIN"; log "using BENCH_BIN=$BIN (no build)"
else
  log "building keybrake in release (swift build -c release --scratch-path $SCRATCH; ~10 min the first time on 2 cores)"
  swift build -c release --product keybrake --scratch-path "$SCRATCH" 2>&1 | { grep -Ev '^\[[0-9]+/[0-9]+\]|unhandled|CMakeLists\.txt$' || true; }
  BIN="$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)/keybrake"
fi
[ -x "$BIN" ] || { log "release build failed: no $BIN"; exit 1; }

for p in "$UPSTREAM_PORT" "$PROXY_PORT" "$KEYBRAKE_PORT"; do
  port_free "$p" || { log "port $p is in use (a previous run still going?); set BENCH_*_PORT"; exit 1; }
done
ulimit -n 65536 2>/dev/null || true
rm -rf "$STATE" && mkdir -p "$STATE/tmp"

# 2. Postgres: the dev script's throwaway cluster, with pg_stat_statements preloaded (tracking off until the profile).
# Or someone else's (Benchmarks/ha.sh): BENCH_DATABASE_URL is what keybrake connects to (HAProxy, PgBouncer),
# BENCH_PG_PORT the Postgres that psql reads the results from and the database is created on.
psql_admin() { psql -qtAX -h 127.0.0.1 -p "$PG_PORT" -U postgres -d postgres -c "$1"; }
if [ -n "${BENCH_DATABASE_URL:-}" ]; then
  export BENCH_PROFILE=0
  scripts/postgres.sh createdb "$PG_PORT" "$PG_DB" --fresh
else
scripts/postgres.sh start "$PG_DIR" "$PG_PORT"
PG_STARTED=1
if [ -f "$("$PG_BIN/pg_config" --pkglibdir 2>/dev/null)/pg_stat_statements.so" ] \
   && ! psql_admin "SHOW shared_preload_libraries" | grep -q pg_stat_statements; then
  psql_admin "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'" >/dev/null
  scripts/postgres.sh stop "$PG_DIR"
  scripts/postgres.sh start "$PG_DIR" "$PG_PORT"
fi
if psql_admin "SHOW shared_preload_libraries" | grep -q pg_stat_statements; then
  psql_admin "ALTER SYSTEM SET pg_stat_statements.track = 'none'" >/dev/null
  psql_admin "SELECT pg_reload_conf()" >/dev/null
fi
scripts/postgres.sh createdb "$PG_PORT" "$PG_DB" --fresh
# Experiments only (e.g. BENCH_PG_SETTINGS="synchronous_commit=off" to see what the fsyncs cost): per-database settings.
for setting in ${BENCH_PG_SETTINGS:-}; do
  psql_admin "ALTER DATABASE \"$PG_DB\" SET ${setting%%=*} = '${setting#*=}'" >/dev/null
done
fi

# 3. nginx twice, each under its own prefix in $STATE: the fake upstream and the reverse-proxy baseline.
render() { sed -e "s#@PREFIX@#$STATE#g" -e "s#@UPSTREAM_PORT@#$UPSTREAM_PORT#g" -e "s#@PROXY_PORT@#$PROXY_PORT#g" "$1" > "$2"; }
render Benchmarks/nginx/upstream.conf.in "$STATE/upstream.conf"
render Benchmarks/nginx/proxy.conf.in "$STATE/proxy.conf"
"$NGINX" -p "$STATE" -e "$STATE/upstream.error.log" -c "$STATE/upstream.conf" &
UPSTREAM_PID=$!
"$NGINX" -p "$STATE" -e "$STATE/proxy.error.log" -c "$STATE/proxy.conf" &
PROXY_PID=$!
wait_port "$UPSTREAM_PORT" "$UPSTREAM_PID" "fake upstream (nginx)" "$STATE/upstream.error.log"
wait_port "$PROXY_PORT" "$PROXY_PID" "nginx reverse proxy" "$STATE/proxy.error.log"

# 4. keybrake serve (release), pointed at the fake upstream.
export DATABASE_URL="${BENCH_DATABASE_URL:-postgres://postgres@127.0.0.1:$PG_PORT/$PG_DB}"
KEYBRAKE_MASTER_KEYS="$("$BIN" generate-master-key --id b1)"
export KEYBRAKE_MASTER_KEYS
export KEYBRAKE_MIGRATIONS_DIR="${BENCH_MIGRATIONS_DIR:-$ROOT/Migrations}"
export KEYBRAKE_UPSTREAM_STRIPE="http://127.0.0.1:$UPSTREAM_PORT"
export KEYBRAKE_SIGNUPS_PER_MINUTE=1000 KEYBRAKE_KEY_CREATIONS_PER_MINUTE=100000 KEYBRAKE_CHILD_KEY_MINTS_PER_MINUTE=100000
KEYBRAKE_OPERATOR_TOKEN="bench-operator-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
export KEYBRAKE_OPERATOR_TOKEN
export LOG_LEVEL="${BENCH_LOG_LEVEL:-warning}"
SERVE_FLAGS=()
if [ -n "${BENCH_DATABASE_URL:-}" ]; then
  # Migrations straight to Postgres (a session-level advisory lock does not hold through PgBouncer).
  DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/$PG_DB" "$BIN" migrate --wait 60 > "$STATE/migrate.log" 2>&1
  SERVE_FLAGS=(--no-migrate)
fi
"$BIN" serve --port "$KEYBRAKE_PORT" "${SERVE_FLAGS[@]}" > "$STATE/keybrake.log" 2>&1 &
KEYBRAKE_PID=$!
wait_port "$KEYBRAKE_PORT" "$KEYBRAKE_PID" "keybrake serve" "$STATE/keybrake.log"

# 5. the runs
log "upstream :$UPSTREAM_PORT (pid $UPSTREAM_PID), nginx proxy :$PROXY_PORT (pid $PROXY_PID), keybrake :$KEYBRAKE_PORT (pid $KEYBRAKE_PID), postgres :$PG_PORT"
BENCH_ROOT="$ROOT" BENCH_STATE="$STATE" BENCH_UPSTREAM_PORT="$UPSTREAM_PORT" BENCH_PROXY_PORT="$PROXY_PORT" \
BENCH_KEYBRAKE_PORT="$KEYBRAKE_PORT" BENCH_PG_PORT="$PG_PORT" BENCH_PG_DB="$PG_DB" BENCH_PG_DATA="${BENCH_PG_DATA:-$ROOT/$PG_DIR/data}" \
BENCH_KEYBRAKE_PID="$KEYBRAKE_PID" BENCH_UPSTREAM_PID="$UPSTREAM_PID" BENCH_PROXY_PID="$PROXY_PID" \
BENCH_NGINX="$NGINX" BENCH_WRK="$WRK" \
  python3 Benchmarks/drive.py
