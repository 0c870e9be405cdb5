#!/usr/bin/env bash
# `make bench-latency` (and the last part of `make bench`): DESIGN §12 "At real vendor latency".
#
# A vendor that answers after 200 ms (nginx + echo_sleep, Benchmarks/nginx/slow-upstream.conf.in), reached over
# TLS with HTTP/2 (a throwaway CA Keybrake trusts through KEYBRAKE_UPSTREAM_CA_FILE) and over plain HTTP/1.1;
# 100, 1,000 and 4,000 agents in flight (wrk connections); GETs and metered charges; each row against the same
# vendor called directly in the same run. Benchmarks/latency.py runs the rows and prints the table; results go to
# Benchmarks/results/latency-<UTC time>.json.
#
# Knobs: BENCH_LATENCY_AGENTS (default 100,1000,4000), BENCH_LATENCY_DURATION (s per row, default 15),
# BENCH_LATENCY_DELAY (s, default 0.2), BENCH_LATENCY_MODES (default tls-h2,plain-h1), BENCH_LATENCY_KINDS
# (default get,charge), BENCH_QUICK=1 (5 s rows), BENCH_BIN, BENCH_SCRATCH_PATH, BENCH_PG_PORT (default 24336),
# BENCH_SLOW_TLS_PORT / BENCH_SLOW_PLAIN_PORT / BENCH_LATENCY_KEYBRAKE_PORT. KEYBRAKE_* pass through to `keybrake serve`
# (the run sets KEYBRAKE_UPSTREAM_MAX_IN_FLIGHT=4096 unless given, so the 4,000-agent rows measure the proxy and
# not the refusal policy).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"

TLS_PORT="${BENCH_SLOW_TLS_PORT:-18095}"
PLAIN_PORT="${BENCH_SLOW_PLAIN_PORT:-18096}"
KEYBRAKE_PORT="${BENCH_LATENCY_KEYBRAKE_PORT:-18097}"
PG_PORT="${BENCH_PG_PORT:-24336}"
PG_DIR=".keybrake/bench-latency-pg"
PG_DB="keybrake_bench_latency"
STATE="$ROOT/.keybrake/bench-latency"
SCRATCH="${BENCH_SCRATCH_PATH:-.build-release}"
DELAY="${BENCH_LATENCY_DELAY:-0.2}"
if [ "${BENCH_QUICK:-0}" = "1" ]; then export BENCH_LATENCY_DURATION="${BENCH_LATENCY_DURATION:-5}"; fi

log() { echo "[bench-latency $(date +%H:%M:%S)] $*" >&2; }
port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
wait_port() {  # PORT PID NAME LOG
  for _ in $(seq 1 300); do
    if ! port_free "$1"; then return 0; fi
    if ! kill -0 "$2" 2>/dev/null; then log "$3 exited during start-up:"; tail -30 "$4" >&2 || true; return 1; fi
    sleep 0.2
  done
  log "$3 did not open port $1 within 60 s"; tail -30 "$4" >&2 || true; return 1
}

SLOW_PID="" PG_STARTED=0
cleanup() {
  local rc=$?
  trap - EXIT
  if [ -n "$SLOW_PID" ]; then
    kill -TERM "$SLOW_PID" 2>/dev/null || true
    for _ in $(seq 1 150); do kill -0 "$SLOW_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SLOW_PID" 2>/dev/null || true
    wait "$SLOW_PID" 2>/dev/null || true
  fi
  if [ "$PG_STARTED" = "1" ]; then scripts/postgres.sh stop "$PG_DIR"; fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# 1. packages: nginx with ssl + http2 (Debian's nginx-light has both), its echo module, wrk, openssl
scripts/install-deps.sh
need=()
command -v wrk >/dev/null 2>&1 || need+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || need+=(nginx-light)
[ -f /usr/lib/nginx/modules/ngx_http_echo_module.so ] || need+=(libnginx-mod-http-echo)
command -v openssl >/dev/null 2>&1 || need+=(openssl)
if [ ${#need[@]} -gt 0 ]; then scripts/install-deps.sh "${need[@]}"; fi
NGINX="$(command -v nginx || echo /usr/sbin/nginx)"

if [ -n "${BENCH_BIN:-}" ]; then
  BIN="$BENCH_BIN"; log "using BENCH_BIN=$BIN (no build)"
else
  log "building keybrake in release (swift build -c release --scratch-path $SCRATCH)"
  swift build -c release --product keybrake --scratch-path "$SCRATCH" 2>&1 | { grep -Ev '^\[[0-9]+/[0-9]+\]|unhandled|CMakeLists\.txt$' || true; }
  BIN="$(swift build -c release --scratch-path "$SCRATCH" --show-bin-path)/keybrake"
fi
[ -x "$BIN" ] || { log "release build failed: no $BIN"; exit 1; }
for p in "$TLS_PORT" "$PLAIN_PORT" "$KEYBRAKE_PORT"; do
  port_free "$p" || { log "port $p is in use; set BENCH_SLOW_TLS_PORT / BENCH_SLOW_PLAIN_PORT / BENCH_LATENCY_KEYBRAKE_PORT"; exit 1; }
done
# 4,000 agents: 4,000 client sockets in wrk, as many in Keybrake plus its upstream connections, and in nginx.
ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
[ "$(ulimit -n)" -ge 12000 ] || log "warning: ulimit -n is $(ulimit -n); the 4,000-agent rows need ~12,000"
rm -rf "$STATE" && mkdir -p "$STATE/tmp" "$STATE/tls"

# 2. a throwaway CA and a server certificate for 127.0.0.1 / localhost signed by it
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj "/CN=Keybrake bench CA" -keyout "$STATE/tls/ca.key" -out "$STATE/tls/ca.pem" \
  -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$STATE/tls/server.key" -out "$STATE/tls/server.csr" 2>/dev/null
printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' > "$STATE/tls/ext.cnf"
openssl x509 -req -in "$STATE/tls/server.csr" -CA "$STATE/tls/ca.pem" -CAkey "$STATE/tls/ca.key" -CAcreateserial -days 2 \
  -extfile "$STATE/tls/ext.cnf" -out "$STATE/tls/server.pem" 2>/dev/null

# 3. Postgres and the slow vendor
scripts/postgres.sh start "$PG_DIR" "$PG_PORT"
PG_STARTED=1
scripts/postgres.sh createdb "$PG_PORT" "$PG_DB" --fresh
sed -e "s#@PREFIX@#$STATE#g" -e "s#@TLS_PORT@#$TLS_PORT#g" -e "s#@PLAIN_PORT@#$PLAIN_PORT#g" -e "s#@DELAY@#$DELAY#g" \
    -e "s#@ECHO_MODULE@#/usr/lib/nginx/modules/ngx_http_echo_module.so#g" Benchmarks/nginx/slow-upstream.conf.in > "$STATE/slow.conf"
"$NGINX" -p "$STATE" -e "$STATE/slow.error.log" -c "$STATE/slow.conf" &
SLOW_PID=$!
wait_port "$TLS_PORT" "$SLOW_PID" "slow upstream (nginx)" "$STATE/slow.error.log"
wait_port "$PLAIN_PORT" "$SLOW_PID" "slow upstream (nginx)" "$STATE/slow.error.log"

# 4. the rows (latency.py starts `keybrake serve` once per upstream mode)
export DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/$PG_DB"
KEYBRAKE_MASTER_KEYS="$("$BIN" generate-master-key --id b1)"
export KEYBRAKE_MASTER_KEYS
export KEYBRAKE_MIGRATIONS_DIR="$ROOT/Migrations"
export KEYBRAKE_SIGNUPS_PER_MINUTE=1000
export KEYBRAKE_UPSTREAM_CA_FILE="$STATE/tls/ca.pem"
export KEYBRAKE_UPSTREAM_MAX_IN_FLIGHT="${KEYBRAKE_UPSTREAM_MAX_IN_FLIGHT:-4096}"
KEYBRAKE_OPERATOR_TOKEN="bench-operator-$(od -An -N12 -tx1 /dev/urandom | tr -d ' \n')"
export KEYBRAKE_OPERATOR_TOKEN
export LOG_LEVEL="${BENCH_LOG_LEVEL:-warning}"
BENCH_ROOT="$ROOT" BENCH_STATE="$STATE" BENCH_BIN="$BIN" BENCH_KEYBRAKE_PORT="$KEYBRAKE_PORT" \
BENCH_SLOW_TLS_PORT="$TLS_PORT" BENCH_SLOW_PLAIN_PORT="$PLAIN_PORT" BENCH_SLOW_PID="$SLOW_PID" BENCH_PG_PORT="$PG_PORT" \
BENCH_PG_DB="$PG_DB" BENCH_WRK="$(command -v wrk)" BENCH_LATENCY_DELAY="$DELAY" \
  python3 Benchmarks/latency.py
