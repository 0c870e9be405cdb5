# Shared by scripts/contract.sh and scripts/browser.sh (sourced; they define `die`): a free port, and waiting for a
# `keybrake serve` they started to answer /ready.

# free_port [PYTHON]: an unused TCP port on 127.0.0.1.
free_port() { "${1:-python3}" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_ready BASE_URL PID LOG: until BASE_URL/ready answers 200 (60 s); dies with the log's tail if the server exits.
wait_ready() {
  local base="$1" pid="$2" log="$3"
  for _ in $(seq 1 300); do
    curl -fsS -o /dev/null "$base/ready" 2>/dev/null && return 0
    kill -0 "$pid" 2>/dev/null || { tail -30 "$log" >&2; die "the server exited during start-up"; }
    sleep 0.2
  done
  tail -30 "$log" >&2
  die "the server did not become ready"
}
