#!/usr/bin/env bash
# Installs the system packages Keybrake needs on Debian, only when something is missing.
set -euo pipefail

need=()
dpkg -s libargon2-dev >/dev/null 2>&1 || need+=(libargon2-dev)
[ -x /usr/lib/postgresql/15/bin/initdb ] || need+=(postgresql-15)
command -v psql >/dev/null 2>&1 || need+=(postgresql-client-15)
command -v pkg-config >/dev/null 2>&1 || need+=(pkg-config)
for pkg in "$@"; do dpkg -s "$pkg" >/dev/null 2>&1 || need+=("$pkg"); done

if [ ${#need[@]} -eq 0 ]; then exit 0; fi
echo "install-deps: installing ${need[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
