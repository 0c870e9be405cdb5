#!/usr/bin/env bash
# The hot-key ceiling of the ledger SQL alone (no Keybrake in the loop): pgbench runs the database work of one
# metered charge — one request per begin (current.sql) and begins batched 8 at a time (batched.sql) —
# against one hot key at 1, 4, 16 and 32 concurrent sessions. Uses the bench Postgres (.keybrake/bench-pg) and a
# throwaway database; about a minute. Usage: Benchmarks/pgbench/run.sh [SECONDS per run, default 5]
set -euo pipefail
cd "$(dirname "$0")/../.."
PG_PORT="${BENCH_PG_PORT:-24335}"
PG_DIR=".keybrake/bench-pg"
DB="keybrake_pgbench"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
SECONDS_PER_RUN="${1:-5}"
scripts/install-deps.sh
started=0
if ! "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$PG_PORT"; then scripts/postgres.sh start "$PG_DIR" "$PG_PORT"; started=1; fi
cleanup() { if [ "$started" = 1 ]; then scripts/postgres.sh stop "$PG_DIR"; fi; }
trap cleanup EXIT
scripts/postgres.sh createdb "$PG_PORT" "$DB" --fresh
psql_db() { psql -q -X -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PG_PORT" -U postgres -d "$DB" "$@"; }
for f in Migrations/*.sql; do psql_db -f "$f" >/dev/null; done
psql_db -c "INSERT INTO tenants (id, name, email, plan) VALUES ('ten_pgb', 'pgbench', 'pgbench@example.com', 'pro');
            INSERT INTO vault_keys (id, tenant_id, vendor, label, token_hash, allowed_endpoints, daily_cap_micros)
            VALUES ('key_pgb', 'ten_pgb', 'stripe', 'bench', '\$argon2id\$unused', '{POST /v1/charges}', 100000000000000);
            INSERT INTO spend_counters (key_id, period, period_start) VALUES ('key_pgb', 'day', current_date),
                   ('key_pgb', 'month', date_trunc('month', current_date)::date);" >/dev/null
printf '%-12s %8s %10s %12s %12s\n' script clients tps "latency ms" "requests/s"
for script in hot-update current batched; do
  per=1; [ "$script" = batched ] && per=8
  for clients in 1 4 16 32; do
    out="$("$PG_BIN/pgbench" -n -h 127.0.0.1 -p "$PG_PORT" -U postgres -M simple -c "$clients" -j 2 -T "$SECONDS_PER_RUN" \
           -f "Benchmarks/pgbench/$script.sql" "$DB" 2>&1)" || { echo "$out" >&2; exit 1; }
    tps="$(sed -n 's/^tps = \([0-9.]*\).*/\1/p' <<<"$out")"
    lat="$(sed -n 's/^latency average = \([0-9.]*\) ms/\1/p' <<<"$out")"
    printf '%-12s %8s %10.0f %12s %12.0f\n' "$script" "$clients" "$tps" "$lat" "$(awk -v t="$tps" -v p="$per" 'BEGIN{print t*p}')"
  done
done
