#!/usr/bin/env bash
# Browser test of the dashboard: real headless Chromium (Debian's chromium + chromium-driver) driven by selenium,
# against a live `keybrake serve` with a throwaway Postgres and a tiny fake Stripe upstream. The agent side uses
# the official stripe-python SDK. Screenshots of every page land in .keybrake/artifacts/ (git-ignored).
#
#   scripts/browser.sh             run it (≈30 s once installed)
#   scripts/browser.sh -k escaped  extra arguments go to pytest
#
# Environment (all optional):
#   KEYBRAKE_BIN        server binary (default: .build/debug/keybrake, brought up to date with `swift build`)
#   BROWSER_PG_PORT     port of the throwaway Postgres (default 24337)
#   BROWSER_KEEP_PG=1   leave the Postgres cluster running afterwards
#
# Everything lives under .keybrake/: the venv in browser-venv, Postgres in browser-pg, logs in browser/.
# Exit code: pytest's; "no tests collected" (5) counts as a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

STATE=.keybrake
VENV="$STATE/browser-venv"
WORK="$STATE/browser"
ARTIFACTS="$STATE/artifacts"
PG_DIR="$STATE/browser-pg"
PG_PORT="${BROWSER_PG_PORT:-24337}"
DB_NAME=keybrake_browser
PYTHON="${PYTHON:-python3}"

say() { echo "browser: $*" >&2; }
die() { say "$*"; exit 1; }
. scripts/serve-lib.sh   # (the script has cd-ed to the repository root)

mkdir -p "$WORK" "$ARTIFACTS"

# --- Chromium and chromedriver from Debian; selenium and the SDK from PyPI (pinned) -----------------------------
scripts/install-deps.sh chromium chromium-driver python3-venv
[ -x /usr/bin/chromium ] && [ -x /usr/bin/chromedriver ] || die "chromium or chromedriver is missing after install"
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
stamp="$VENV/.requirements.sha256"
want="$(sha256sum Tests/browser/requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  say "installing Tests/browser/requirements.txt into $VENV"
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r Tests/browser/requirements.txt
  echo "$want" > "$stamp"
fi

# --- the server binary ------------------------------------------------------------------------------------------
if [ -n "${KEYBRAKE_BIN:-}" ]; then
  BIN="$KEYBRAKE_BIN"
else
  BIN=.build/debug/keybrake
  swift build --product keybrake >"$WORK/build.log" 2>&1 || { tail -30 "$WORK/build.log" >&2; die "swift build failed"; }
fi
[ -x "$BIN" ] || die "no server binary at $BIN"

# --- processes we start, stopped by PID on exit -----------------------------------------------------------------
SERVER_PID=""
FAKE_PID=""
stop_pid() {
  local pid="$1"
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 0
  kill "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
}
cleanup() {
  local status=$?
  stop_pid "$SERVER_PID"
  stop_pid "$FAKE_PID"
  if [ "${BROWSER_KEEP_PG:-}" != "1" ]; then scripts/postgres.sh stop "$PG_DIR" || true; fi
  exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM


# --- throwaway Postgres -----------------------------------------------------------------------------------------
scripts/postgres.sh start "$PG_DIR" "$PG_PORT"
scripts/postgres.sh createdb "$PG_PORT" "$DB_NAME" --fresh

# --- fake Stripe upstream ---------------------------------------------------------------------------------------
STRIPE_SECRET="sk_test_browser$("$PYTHON" -c 'import secrets; print(secrets.token_hex(12))')"
FAKE_PORT="$(free_port "$PYTHON")"
"$VENV/bin/python" Tests/browser/fake_stripe.py "$FAKE_PORT" "$STRIPE_SECRET" >"$WORK/fake-stripe.log" 2>&1 &
FAKE_PID=$!

# --- the server -------------------------------------------------------------------------------------------------
PORT="$(free_port "$PYTHON")"
BASE="http://127.0.0.1:$PORT"
MASTER_KEYS="$("$BIN" generate-master-key --id d1)"
say "starting $BIN serve on $BASE (log: $WORK/server.log)"
DATABASE_URL="postgres://postgres@127.0.0.1:$PG_PORT/$DB_NAME" \
KEYBRAKE_MASTER_KEYS="$MASTER_KEYS" \
KEYBRAKE_UPSTREAM_STRIPE="http://127.0.0.1:$FAKE_PORT" \
KEYBRAKE_MIGRATIONS_DIR="$PWD/Migrations" \
KEYBRAKE_SIGNUPS_PER_MINUTE=1000 \
KEYBRAKE_WEBHOOK_ALLOW_PRIVATE=true KEYBRAKE_WEBHOOK_POLL_MS=200 \
  "$BIN" serve --port "$PORT" >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

wait_ready "$BASE" "$SERVER_PID" "$WORK/server.log"
kill -0 "$FAKE_PID" 2>/dev/null || { cat "$WORK/fake-stripe.log" >&2; die "the fake Stripe upstream did not start"; }

# --- a tenant ---------------------------------------------------------------------------------------------------
TENANT_NAME="Browser Test Co"
SIGNUP="$(curl -fsS -X POST "$BASE/v1/tenants" -H 'Content-Type: application/json' \
  -d "{\"name\":\"$TENANT_NAME\",\"email\":\"browser@keybrake.test\"}")" || die "signup failed"
ADMIN="$("$PYTHON" -c 'import json,sys; print(json.load(sys.stdin)["admin_token"])' <<<"$SIGNUP")"

# --- the browser ------------------------------------------------------------------------------------------------
rm -f "$ARTIFACTS"/*.png
export KB_BASE="$BASE" KB_ADMIN_TOKEN="$ADMIN" KB_STRIPE_SECRET="$STRIPE_SECRET" KB_TENANT_NAME="$TENANT_NAME" \
       KB_ARTIFACTS="$PWD/$ARTIFACTS" SE_OFFLINE=true
set +e
(cd Tests/browser && timeout 600 "../../$VENV/bin/python" -m pytest -q "$@")
status=$?
set -e
if [ "$status" -eq 5 ]; then
  say "no tests were collected"
  status=1
fi
say "screenshots in $ARTIFACTS/: $(cd "$ARTIFACTS" && ls *.png 2>/dev/null | tr '\n' ' ')"
exit "$status"
