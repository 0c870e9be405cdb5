#!/usr/bin/env bash
# `make bench-ha`: the metered and GET rows (sequential and saturated) with Keybrake's Postgres reached directly,
# through HAProxy's write port and through PgBouncer (transaction mode, KEYBRAKE_DB_PREPARED_STATEMENTS=off), one
# after the other in the same run, then the failover time (SIGKILL of the leader → first 2xx, median of
# BENCH_FAILOVER_RUNS, default 5) from the e2e failover test run with the same binary.
#
# Knobs: BENCH_BIN (default: the release build Benchmarks/run.sh makes), BENCH_ONLY (default the four rows below),
# BENCH_QUICK=1 (3 s rows), BENCH_FAILOVER_RUNS, BENCH_HA_PORT_BASE (default 24380: 24380-24389).
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$PWD"
export BENCH_ONLY="${BENCH_ONLY:-^(seq|sat)-keybrake-(get|charge)$}"
BASE="${BENCH_HA_PORT_BASE:-24380}"
export HA_DIR="$ROOT/.keybrake/ha-bench" HA_PORT_BASE="$BASE" HA_DB=keybrake
WRITE=$((BASE + 6)); BOUNCER=$((BASE + 9))
OUT="$ROOT/Benchmarks/results/ha-$(date -u +%Y%m%dT%H%M%SZ).txt"
mkdir -p "$ROOT/Benchmarks/results"
log() { echo "[bench-ha $(date +%H:%M:%S)] $*" | tee -a "$OUT" >&2; }

if [ -z "${BENCH_BIN:-}" ]; then
  swift build -c release --product keybrake --scratch-path .build-release 2>&1 | { grep -Ev '^\[[0-9]+/[0-9]+\]|unhandled|CMakeLists\.txt$' || true; }
  BENCH_BIN="$(swift build -c release --scratch-path .build-release --show-bin-path)/keybrake"
fi
export BENCH_BIN

scripts/ha.sh down --clean >/dev/null 2>&1 || true
trap 'scripts/ha.sh down --clean >/dev/null 2>&1 || true' EXIT
scripts/ha.sh up >/dev/null
leader_data() { echo "$HA_DIR/$(scripts/ha.sh leader)/data"; }

rows() { # label, then env assignments for run.sh
  local label=$1; shift
  log "---- $label"
  env "$@" Benchmarks/run.sh 2>&1 | grep -E '^\[bench .*(req/s|keybrake :)' | sed "s/^/[$label] /" | tee -a "$OUT" >&2
}
rows direct
# The leader's own port: synchronous replication without the HAProxy hop.
if [ "$(scripts/ha.sh leader)" = node1 ]; then leader_port=$((BASE + 2)); else leader_port=$((BASE + 4)); fi
rows leader BENCH_DATABASE_URL="postgres://postgres@127.0.0.1:$leader_port/keybrake_bench" BENCH_PG_PORT="$WRITE" \
  BENCH_PG_DATA="$(leader_data)"
rows haproxy BENCH_DATABASE_URL="postgres://postgres@127.0.0.1:$WRITE/keybrake_bench" BENCH_PG_PORT="$WRITE" \
  BENCH_PG_DATA="$(leader_data)"
rows pgbouncer BENCH_DATABASE_URL="postgres://postgres@127.0.0.1:$BOUNCER/keybrake_bench" BENCH_PG_PORT="$WRITE" \
  BENCH_PG_DATA="$(leader_data)" KEYBRAKE_DB_PREPARED_STATEMENTS=off \
  KEYBRAKE_LISTEN_DATABASE_URL="postgres://postgres@127.0.0.1:$WRITE/keybrake_bench"
scripts/ha.sh down --clean >/dev/null 2>&1 || true

# Failover: the e2e test's kill phase, timed by the test itself (it prints "first 200 sent after it X s").
runs="${BENCH_FAILOVER_RUNS:-5}"
times=()
for i in $(seq 1 "$runs"); do
  line="$(KEYBRAKE_BIN="$BENCH_BIN" scripts/e2e.sh test_15_failover.py -s -q 2>&1 | grep 'kill -9 of the leader' || true)"
  t="$(sed -nE 's/.*first 200 sent after it ([0-9.]+) s.*/\1/p' <<< "$line")"
  log "failover run $i: ${line#*failover: }"
  [ -n "$t" ] && times+=("$t")
done
if [ ${#times[@]} -gt 0 ]; then
  median="$(printf '%s\n' "${times[@]}" | sort -n | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')"
  log "failover: SIGKILL of the leader → first 2xx, median of ${#times[@]}: ${median} s"
fi
log "results in $OUT"
