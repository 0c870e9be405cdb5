#!/usr/bin/env bash
# A local high-availability Postgres, built from Debian's own packages — docs/operations.md "High availability".
#
#   etcd ◀── Patroni node1 (Postgres 15) ──stream, synchronous──▶ Patroni node2 (Postgres 15) ──▶ etcd
#                 ▲  REST /primary, /replica                              ▲
#   HAProxy  write port ──▶ the leader  ·  read port ──▶ the standby     │
#   PgBouncer (transaction mode) ──▶ HAProxy write port
#
#   scripts/ha.sh up             install what is missing, start whatever is not running, wait for a sync standby
#   scripts/ha.sh down [--clean] stop everything (--clean also deletes the state under .keybrake/ha/)
#   scripts/ha.sh status         Patroni's view of the cluster and the ports
#   scripts/ha.sh kill-primary   SIGKILL the leader's Patroni, postmaster and backends (an unplanned failover)
#   scripts/ha.sh failover       a planned `patronictl switchover` to the sync standby
#   scripts/ha.sh leader         print the leader's node name
#   scripts/ha.sh hold-standby on|drop   SIGSTOP / SIGKILL the standby's WAL receiver (tests: a standby that lags)
#   scripts/ha.sh env            print the connection URLs as shell assignments
#
# Ports: HA_PORT_BASE (default 24370) and the next 9. Runs as root (Postgres, Patroni and PgBouncer as `postgres`)
# or as an ordinary user who owns everything. Everything listens on 127.0.0.1, with trust auth: a local stack.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT="$(pwd)"

BASE="${HA_PORT_BASE:-24370}"
ETCD_PORT=$BASE;            ETCD_PEER=$((BASE + 1))
PG1=$((BASE + 2));          REST1=$((BASE + 3))
PG2=$((BASE + 4));          REST2=$((BASE + 5))
WRITE_PORT=$((BASE + 6));   READ_PORT=$((BASE + 7))
STATS_PORT=$((BASE + 8));   BOUNCER_PORT=$((BASE + 9))
DB="${HA_DB:-keybrake}"
HA="${HA_DIR:-$ROOT/.keybrake/ha}"
PG_BIN="${PG_BIN:-/usr/lib/postgresql/15/bin}"
SCOPE=keybrake

log() { echo "ha: $*" >&2; }
step() { [ -z "${HA_VERBOSE:-}" ] || echo "ha: $((SECONDS - t0)) s $*" >&2; }
as_pg() { if [ "$(id -u)" -eq 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi; }
alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
sql() { "$PG_BIN/psql" -qtAX -h 127.0.0.1 -U postgres -p "$1" -d "${3:-postgres}" -c "$2"; }
rest_port() { if [ "$1" = node1 ]; then echo "$REST1"; else echo "$REST2"; fi; }
pg_port() { if [ "$1" = node1 ]; then echo "$PG1"; else echo "$PG2"; fi; }

wait_for() { # seconds, description, command...
  local limit=$1 what=$2; shift 2
  local end=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    if [ $SECONDS -ge $end ]; then log "timed out after ${limit}s waiting for $what"; return 1; fi
    sleep 0.2
  done
}

install_missing() {
  local need=()
  command -v patroni >/dev/null || need+=(patroni)
  command -v etcd >/dev/null || need+=(etcd-server)
  command -v haproxy >/dev/null || need+=(haproxy)
  command -v pgbouncer >/dev/null || need+=(pgbouncer)
  scripts/install-deps.sh "${need[@]}"
  # Debian starts the packages' own daemons where it can (default ports, /etc configs): ours use other ports and
  # configs, so those are left alone.
}

prepare_dirs() {
  mkdir -p "$HA"/{etcd,node1/log,node2/log,run,log}
  if [ "$(id -u)" -eq 0 ]; then
    id postgres >/dev/null 2>&1 || useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
    chown postgres:postgres "$HA"/node1 "$HA"/node2 "$HA"/node1/log "$HA"/node2/log "$HA"/run "$HA"/log
    local p="$HA"; while [ "$p" != "/" ]; do chmod o+x "$p" 2>/dev/null || true; p="$(dirname "$p")"; done
  fi
  chmod 700 "$HA"/node1 "$HA"/node2
}

write_patroni_config() { # node pg_port rest_port
  local node=$1 pgp=$2 rp=$3
  cat > "$HA/$node.yml" <<EOF
scope: $SCOPE
namespace: /keybrake-ha/
name: $node
log: {level: WARNING, dir: $HA/$node/log, file_num: 2}
restapi: {listen: 127.0.0.1:$rp, connect_address: 127.0.0.1:$rp}
etcd3: {hosts: 127.0.0.1:$ETCD_PORT}
bootstrap:
  dcs:
    # loop_wait + 2 x retry_timeout <= ttl (Patroni's rule). The leader key's TTL is the unplanned failover time.
    ttl: 10
    loop_wait: 1
    retry_timeout: 4
    maximum_lag_on_failover: ${HA_MAX_LAG:-1048576}
    # An acknowledged commit is on both nodes; only the sync standby may be promoted.
    synchronous_mode: ${HA_SYNCHRONOUS_MODE:-true}
    postgresql:
      use_pg_rewind: true
      parameters:
        max_connections: 300
        shared_buffers: 128MB
        wal_level: replica
        hot_standby: "on"
        wal_log_hints: "on"
        max_wal_senders: 10
        max_replication_slots: 10
        wal_keep_size: 256MB
        hot_standby_feedback: "on"
  initdb: [{encoding: UTF8}, {locale: C.UTF-8}, {auth: trust}]
postgresql:
  listen: 127.0.0.1:$pgp
  connect_address: 127.0.0.1:$pgp
  data_dir: $HA/$node/data
  bin_dir: $PG_BIN
  pgpass: $HA/$node/pgpass
  authentication:
    superuser: {username: postgres, password: postgres}
    replication: {username: replicator, password: replicator}
    rewind: {username: postgres, password: postgres}
  parameters: {unix_socket_directories: '$HA/$node'}
  pg_hba:
    - local all all trust
    - host all all 127.0.0.1/32 trust
    - host replication replicator 127.0.0.1/32 trust
tags: {nofailover: false, noloadbalance: false, clonefrom: false, nosync: false}
EOF
  [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$HA/$node.yml"
}

write_haproxy_config() {
  cat > "$HA/haproxy.cfg" <<EOF
global
  maxconn 2000
  pidfile $HA/run/haproxy.pid
defaults
  mode tcp
  timeout connect 2s
  timeout client 30m
  timeout server 30m
  timeout check 1s
  # Checks every 500 ms; a server is out after 2 failures and its sessions are cut, so clients reconnect at once.
  default-server inter 500ms fall 2 rise 1 on-marked-down shutdown-sessions
listen write
  bind 127.0.0.1:$WRITE_PORT
  option httpchk GET /primary
  http-check expect status 200
  server node1 127.0.0.1:$PG1 check port $REST1
  server node2 127.0.0.1:$PG2 check port $REST2
listen read
  bind 127.0.0.1:$READ_PORT
  option httpchk GET /replica
  http-check expect status 200
  server node1 127.0.0.1:$PG1 check port $REST1
  server node2 127.0.0.1:$PG2 check port $REST2
listen stats
  mode http
  bind 127.0.0.1:$STATS_PORT
  stats enable
  stats uri /
EOF
}

write_pgbouncer_config() {
  cat > "$HA/pgbouncer.ini" <<EOF
[databases]
* = host=127.0.0.1 port=$WRITE_PORT
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $BOUNCER_PORT
unix_socket_dir = $HA/run
auth_type = trust
auth_file = $HA/userlist.txt
pool_mode = transaction
max_client_conn = 2000
default_pool_size = 64
server_reset_query =
server_login_retry = 1
server_connect_timeout = 2
ignore_startup_parameters = extra_float_digits,options
logfile = $HA/log/pgbouncer.log
pidfile = $HA/run/pgbouncer.pid
EOF
  echo '"postgres" ""' > "$HA/userlist.txt"
  [ "$(id -u)" -ne 0 ] || chown postgres:postgres "$HA/pgbouncer.ini" "$HA/userlist.txt"
}

start_etcd() {
  alive "$HA/run/etcd.pid" && return 0
  nohup etcd --name ha --data-dir "$HA/etcd" \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$ETCD_PEER" --initial-advertise-peer-urls "http://127.0.0.1:$ETCD_PEER" \
    --initial-cluster "ha=http://127.0.0.1:$ETCD_PEER" --enable-v2=false \
    >> "$HA/log/etcd.log" 2>&1 < /dev/null &
  echo $! > "$HA/run/etcd.pid"
  wait_for 30 "etcd on $ETCD_PORT" curl -sf "http://127.0.0.1:$ETCD_PORT/health" || { tail -20 "$HA/log/etcd.log" >&2; return 1; }
}

start_patroni() { # node
  local node=$1
  alive "$HA/run/$node.pid" && return 0
  # A postmaster left over from a killed Patroni would keep the port: Patroni adopts a running one, so leave it.
  as_pg bash -c "echo \$\$ > '$HA/run/$node.pid'; exec patroni '$HA/$node.yml'" >> "$HA/log/$node.out" 2>&1 < /dev/null &
  for _ in $(seq 1 25); do [ -s "$HA/run/$node.pid" ] && break; sleep 0.1; done
}

start_haproxy() {
  alive "$HA/run/haproxy.pid" && return 0
  haproxy -D -f "$HA/haproxy.cfg"
}

start_pgbouncer() {
  alive "$HA/run/pgbouncer.pid" && return 0
  as_pg pgbouncer -d -q "$HA/pgbouncer.ini"
}

leader() { # the node whose REST API answers /primary with 200
  local n
  for n in node1 node2; do
    if [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$(rest_port "$n")/primary")" = 200 ]; then
      echo "$n"; return 0
    fi
  done
  return 1
}

sync_standby_streaming() { # Patroni's view (its REST /sync), which is what a switchover or failover goes by
  local n
  for n in node1 node2; do
    [ "$(curl -s -o /dev/null -w '%{http_code}' --max-time 1 "http://127.0.0.1:$(rest_port "$n")/sync")" = 200 ] && return 0
  done
  return 1
}

streaming_standby() { [ "$(sql "$WRITE_PORT" "SELECT count(*) FROM pg_stat_replication WHERE state = 'streaming'")" -ge 1 ]; }

writable() { [ "$(sql "$WRITE_PORT" "SELECT NOT pg_is_in_recovery()")" = t ]; }

show_logs() {
  local f
  for f in "$HA"/log/etcd.log "$HA"/log/node1.out "$HA"/node1/log/patroni.log "$HA"/log/node2.out "$HA"/node2/log/patroni.log; do
    [ -f "$f" ] && { echo "---- $f" >&2; tail -n 15 "$f" >&2; }
  done
  # Postgres writes to its Patroni's output, above Patroni's traceback: why a postmaster did not start.
  for f in "$HA"/log/node1.out "$HA"/log/node2.out; do
    [ -f "$f" ] && grep -E "FATAL|PANIC|could not|LOG: +database system is" "$f" | tail -n 8 | sed "s|^|$(basename "$f" .out) postgres: |" >&2
  done
  return 0
}

cmd_up() {
  local t0=$SECONDS
  install_missing
  prepare_dirs
  write_patroni_config node1 "$PG1" "$REST1"
  write_patroni_config node2 "$PG2" "$REST2"
  write_haproxy_config
  write_pgbouncer_config
  start_etcd; step etcd
  # On a fresh stack the first node bootstraps alone and the second then clones it with pg_basebackup instead of
  # racing it; on a restart both start together (either may hold the /sync key that says who may lead).
  local fresh=; [ -f "$HA/node1/data/PG_VERSION" ] || fresh=1
  start_patroni node1
  [ -z "$fresh" ] || { wait_for 60 "a leader" leader || { show_logs; return 1; }; step leader; }
  start_patroni node2
  start_haproxy
  start_pgbouncer
  wait_for 60 "the write port ($WRITE_PORT)" writable || { show_logs; return 1; }; step writable
  if [ "${HA_SYNCHRONOUS_MODE:-true}" = true ]; then
    wait_for 90 "a streaming synchronous standby" sync_standby_streaming || { show_logs; return 1; }
  else
    wait_for 90 "a streaming standby" streaming_standby
  fi
  [ "$(sql "$WRITE_PORT" "SELECT 1 FROM pg_database WHERE datname = '$DB'")" = 1 ] \
    || sql "$WRITE_PORT" "CREATE DATABASE \"$DB\""
  wait_for 30 "PgBouncer ($BOUNCER_PORT)" sql "$BOUNCER_PORT" "SELECT 1" "$DB"
  log "up in $((SECONDS - t0)) s — leader $(leader)"
  cmd_env
}

stop_pid() { # pidfile [signal]
  local f=$1 sig=${2:-TERM}
  alive "$f" || { rm -f "$f"; return 0; }
  local pid; pid="$(cat "$f")"
  kill -"$sig" "$pid" 2>/dev/null || true
  for _ in $(seq 1 150); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
  rm -f "$f"
}

postmaster_pid() { head -1 "$HA/$1/data/postmaster.pid" 2>/dev/null; }

cmd_down() {
  stop_pid "$HA/run/pgbouncer.pid"
  stop_pid "$HA/run/haproxy.pid"
  # The standby first, then the leader: stopping both at once can let the standby promote itself for a moment.
  local n first=node2 second=node1
  [ "$(leader 2>/dev/null)" = node2 ] && { first=node1; second=node2; }
  stop_pid "$HA/run/$first.pid"; stop_pid "$HA/run/$second.pid"
  # Patroni stops its Postgres on SIGTERM; one orphaned by a kill-primary is stopped here.
  for n in node1 node2; do
    if [ -f "$HA/$n/data/PG_VERSION" ] && as_pg "$PG_BIN/pg_ctl" -D "$HA/$n/data" status >/dev/null 2>&1; then
      as_pg "$PG_BIN/pg_ctl" -D "$HA/$n/data" -m immediate -w stop >/dev/null 2>&1 || true
    fi
  done
  stop_pid "$HA/run/etcd.pid"
  if [ "${1:-}" = --clean ]; then rm -rf "$HA"; log "stopped; state deleted"; else log "stopped"; fi
}

cmd_kill_primary() {
  local node; node="$(leader)" || { log "no leader to kill"; return 1; }
  local patroni pm; patroni="$(cat "$HA/run/$node.pid")"; pm="$(postmaster_pid "$node")"
  # Patroni first (it would restart a lone postmaster in place: not a failover), then the postmaster and
  # every backend together, as when the host dies.
  local kids; kids="$(pgrep -P "$pm" || true)"
  kill -KILL "$patroni" "$pm" $kids 2>/dev/null || true
  rm -f "$HA/run/$node.pid"
  date +%s.%N > "$HA/run/killed-at"
  log "killed $node (patroni $patroni, postmaster $pm and its backends)"
  echo "$node"
}

cmd_failover() {
  local from; from="$(leader)" || { log "no leader"; return 1; }
  local to=node1; [ "$from" = node1 ] && to=node2
  # With synchronous_mode only the sync standby may take over: wait until Patroni names one.
  [ "${HA_SYNCHRONOUS_MODE:-true}" != true ] || wait_for 60 "a synchronous standby" sync_standby_streaming
  patronictl -c "$HA/node1.yml" switchover "$SCOPE" --leader "$from" --candidate "$to" --force >&2
  wait_for 30 "$to to lead" bash -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$(rest_port "$to")/primary)\" = 200 ]"
  echo "$to"
}

cmd_hold_standby() { # on: SIGSTOP the standby's WAL receiver; drop: SIGKILL it, which also discards the WAL still
  # in its socket buffer (the postmaster restarts the standby from what it had written). With synchronous_mode off,
  # what the leader acknowledged meanwhile is then on the leader only: the mutation check of the failover test.
  if [ "$1" = drop ]; then
    [ -f "$HA/run/held" ] && kill -KILL $(cat "$HA/run/held") 2>/dev/null || true
    rm -f "$HA/run/held"; log "standby WAL receiver killed"; return 0
  fi
  local leader_node standby pm pids
  leader_node="$(leader)" || { log "no leader"; return 1; }
  standby=node1; [ "$leader_node" = node1 ] && standby=node2
  pm="$(postmaster_pid "$standby")"
  pids="$(pgrep -P "$pm" -f walreceiver || true)"
  [ -n "$pids" ] || { log "no WAL receiver on $standby"; return 1; }
  kill -STOP $pids; echo $pids > "$HA/run/held"
  log "standby $standby: WAL receiver held ($pids)"
}

cmd_env() {
  cat <<EOF
HA_WRITE_URL=postgres://postgres@127.0.0.1:$WRITE_PORT/$DB
HA_READ_URL=postgres://postgres@127.0.0.1:$READ_PORT/$DB
HA_BOUNCER_URL=postgres://postgres@127.0.0.1:$BOUNCER_PORT/$DB
HA_STATS_URL=http://127.0.0.1:$STATS_PORT/
EOF
}

case "${1:-}" in
  up) cmd_up ;;
  down) cmd_down "${2:-}" ;;
  status) patronictl -c "$HA/node1.yml" list; cmd_env ;;
  kill-primary) cmd_kill_primary ;;
  failover) cmd_failover ;;
  leader) leader ;;
  hold-standby) cmd_hold_standby "${2:?on or drop}" ;;
  env) cmd_env ;;
  *) echo "usage: scripts/ha.sh up|down [--clean]|status|kill-primary|failover|leader|env" >&2; exit 2 ;;
esac
