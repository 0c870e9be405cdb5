#!/usr/bin/env bash
# End-to-end suite: the official SDKs (stripe, twilio, resend) through two `keybrake serve` replicas, with
# localstripe and fake vendors upstream and a throwaway Postgres (.keybrake/e2e-pg, port 24331).
#   scripts/e2e.sh                 the whole suite
#   scripts/e2e.sh -k caps -x      extra arguments go to pytest
# Exit code: pytest's. "No tests collected" (5) counts as a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

VENV=Tests/e2e/.venv
PYTHON="${PYTHON:-python3}"

scripts/install-deps.sh python3-venv
if [ ! -x "$VENV/bin/python" ]; then
  "$PYTHON" -m venv "$VENV"
fi
# Reinstall only when requirements.txt changed since the last successful install.
stamp="$VENV/.requirements.sha256"
want="$(sha256sum Tests/e2e/requirements.txt | cut -d' ' -f1)"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  "$VENV/bin/python" -m pip install -q --disable-pip-version-check -r Tests/e2e/requirements.txt
  echo "$want" > "$stamp"
fi

if [ ! -x .build/debug/keybrake ]; then
  swift build --product keybrake
fi

set +e
(cd Tests/e2e && timeout 900 .venv/bin/python -m pytest -q "$@")
status=$?
set -e
if [ "$status" -eq 5 ]; then
  echo "e2e: no tests were collected" >&2
  exit 1
fi
exit "$status"
