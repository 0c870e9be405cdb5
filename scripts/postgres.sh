#!/usr/bin/env bash
# A private Postgres cluster for development or tests, under a folder of this checkout.
#   scripts/postgres.sh start DIR PORT   initdb if needed, start if not running (idempotent)
#   scripts/postgres.sh stop DIR
#   scripts/postgres.sh createdb PORT NAME [--fresh]
# Postgres refuses to run as root, so as root it runs as the `postgres` user.
# It listens on 127.0.0.1 only, with trust auth: a local throwaway, never a production setup.
set -euo pipefail

PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
cmd="${1:?usage: postgres.sh start|stop|createdb ...}"

as_owner() {
  if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}

case "$cmd" in
  start)
    dir="$(mkdir -p "$2" && cd "$2" && pwd)"; port="$3"
    if [ "$(id -u)" -eq 0 ]; then
      id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
      chown -R postgres:postgres "$dir"
      # Every parent must be traversable by the postgres user.
      p="$dir"; while [ "$p" != "/" ]; do p="$(dirname "$p")"; chmod o+x "$p" 2>/dev/null || true; done
    fi
    if [ ! -f "$dir/data/PG_VERSION" ]; then
      as_owner "$PG_BIN/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 --locale=C.UTF-8 >"$dir/initdb.log" 2>&1 \
        || { cat "$dir/initdb.log"; exit 1; }
    fi
    if as_owner "$PG_BIN/pg_ctl" -D "$dir/data" status >/dev/null 2>&1; then
      # Running already: on the asked port, nothing to do; on another (a checkout from before the ports moved
      # below 32768), restart it on this one.
      [ "$(sed -n 4p "$dir/data/postmaster.pid" 2>/dev/null)" = "$port" ] && exit 0
      as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null
    fi
    # A stale pid file from a killed machine would block start-up.
    rm -f "$dir/data/postmaster.pid"
    as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -l "$dir/postgres.log" -w -t 60 start \
      -o "-p $port -k $dir -c listen_addresses=127.0.0.1 -c max_connections=300 -c shared_buffers=256MB" >/dev/null \
      || { tail -20 "$dir/postgres.log"; exit 1; }
    ;;
  stop)
    dir="$2"
    [ -f "$dir/data/PG_VERSION" ] || exit 0
    as_owner "$PG_BIN/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    ;;
  createdb)
    port="$2"; name="$3"; fresh="${4:-}"
    for _ in $(seq 1 50); do "$PG_BIN/pg_isready" -q -h 127.0.0.1 -p "$port" && break; sleep 0.2; done
    if [ "$fresh" = "--fresh" ]; then
      psql -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "DROP DATABASE IF EXISTS \"$name\" WITH (FORCE)" >/dev/null
    fi
    exists="$(psql -qtA -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "SELECT 1 FROM pg_database WHERE datname = '$name'")"
    [ "$exists" = "1" ] || psql -q -h 127.0.0.1 -p "$port" -U postgres -d postgres -c "CREATE DATABASE \"$name\"" >/dev/null
    ;;
  *) echo "unknown command $cmd" >&2; exit 2 ;;
esac
