#!/usr/bin/env python3
"""The rows of DESIGN §12 "At real vendor latency" (Benchmarks/latency.sh sets everything up and calls this).

For each upstream mode (tls-h2: https to nginx with HTTP/2, trusted through KEYBRAKE_UPSTREAM_CA_FILE; plain-h1:
keep-alive HTTP/1.1), starts `keybrake serve` pointed at the slow vendor, then for each number of agents in flight
(wrk connections, keep-alive) and each kind (GET of a customer: no money; metered charge on one key capped far above
the run) measures the vendor directly and through Keybrake, back to back. Then one capped row: charges on one key
whose cap is reached during the run — the charges that reach the vendor must equal the cap exactly. Reports
throughput and p50/p99 as ratios to direct, the added latency, Keybrake's peak RSS and RSS per 1,000 requests in
flight, and the upstream connections Keybrake held. Standard library only.
"""
import datetime
import json
import os
import platform
import subprocess
import sys
import threading
import time
import urllib.request

E = os.environ
ROOT = E["BENCH_ROOT"]
STATE = E["BENCH_STATE"]
BIN = E["BENCH_BIN"]
KB = int(E["BENCH_KEYBRAKE_PORT"])
# /metrics shows every tenant's traffic: the server serves it only behind this token (README "Configuration").
METRICS_TOKEN = E.get("KEYBRAKE_METRICS_TOKEN") or "bench-metrics-" + os.urandom(12).hex()
TLS = int(E["BENCH_SLOW_TLS_PORT"])
PLAIN = int(E["BENCH_SLOW_PLAIN_PORT"])
SLOW_PID = int(E["BENCH_SLOW_PID"])
OPERATOR = E["KEYBRAKE_OPERATOR_TOKEN"]
WRK = E.get("BENCH_WRK", "wrk")
LUA = os.path.join(ROOT, "Benchmarks", "wrk", "bench.lua")
AGENTS = [int(a) for a in E.get("BENCH_LATENCY_AGENTS", "100,1000,4000").split(",") if a]
DURATION = int(E.get("BENCH_LATENCY_DURATION", "15"))
MODES = [m for m in E.get("BENCH_LATENCY_MODES", "tls-h2,plain-h1").split(",") if m]
KINDS = [k for k in E.get("BENCH_LATENCY_KINDS", "get,charge").split(",") if k]
CAP_AGENTS = int(E.get("BENCH_LATENCY_CAP_AGENTS", "1000"))
CAP_USD = int(E.get("BENCH_LATENCY_CAP_USD", "1000"))
DELAY_MS = float(E.get("BENCH_LATENCY_DELAY", "0.2")) * 1000
CHARGES_LOG = os.path.join(STATE, "charges.log")
THREADS = 2


def log(msg):
    print(f"[bench-latency {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def api(method, path, body=None, token=None):
    req = urllib.request.Request(f"http://127.0.0.1:{KB}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as r:
        return json.loads(r.read() or b"{}")


def rss_kib(pid):
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def upstream_connections(port):
    """Established TCP connections to the slow vendor's port (Keybrake's upstream connections during its rows)."""
    out = subprocess.run(["ss", "-Htn", "state", "established", f"( dport = :{port} )"], capture_output=True, text=True)
    return len([l for l in out.stdout.splitlines() if l.strip()]) if out.returncode == 0 else None


def answers_by_code():
    """keybrake_proxy_requests_total summed by error code ("none" = answered by the vendor), from /metrics."""
    counts = {}
    try:
        request = urllib.request.Request(f"http://127.0.0.1:{KB}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"})
        text = urllib.request.urlopen(request, timeout=10).read().decode()
    except Exception:
        return counts
    for line in text.splitlines():
        if line.startswith("keybrake_proxy_requests_total{"):
            labels, value = line.rsplit(" ", 1)
            code = labels.split('code="', 1)[1].split('"', 1)[0] if 'code="' in labels else "?"
            counts[code] = counts.get(code, 0) + int(float(value))
    return counts


def charges_logged(prefix):
    """Charges that reached the vendor with this row's Idempotency-Key prefix (Keybrake forwards the agent's key
    unchanged), so requests of an earlier row still finishing upstream are not counted."""
    try:
        with open(CHARGES_LOG) as f:
            return sum(1 for line in f if line.startswith(prefix + "-"))
    except OSError:
        return 0


def settled_charges(prefix):
    """Waits until the vendor's log stops growing (requests Keybrake still had upstream when wrk stopped)."""
    last, stable = -1, 0
    while stable < 3:
        time.sleep(0.5)
        n = charges_logged(prefix)
        stable = stable + 1 if n == last else 0
        last = n
    return last


CLK_TCK = os.sysconf("SC_CLK_TCK")


def proc_ticks(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            rest = f.read().rsplit(")", 1)[1].split()
        return int(rest[11]) + int(rest[12])
    except OSError:
        return 0


def machine_busy():
    """(busy ticks, all ticks) of the whole machine."""
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:9]]
    return sum(parts) - parts[3] - parts[4], sum(parts)


class Sampler:
    """Peak RSS of Keybrake and peak upstream connections while a row runs."""
    def __init__(self, pid, port):
        self.pid, self.port, self.stop = pid, port, threading.Event()
        self.peak_rss, self.peak_conns = 0, 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.stop.wait(0.5):
            self.peak_rss = max(self.peak_rss, rss_kib(self.pid))
            c = upstream_connections(self.port)
            if c is not None:
                self.peak_conns = max(self.peak_conns, c)

    def __enter__(self):
        self.ticks0, self.machine0 = proc_ticks(self.pid), machine_busy()
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        self.thread.join()
        self.cpu_s = (proc_ticks(self.pid) - self.ticks0) / CLK_TCK
        busy, total = machine_busy()
        self.machine_busy = (busy - self.machine0[0]) / max(1, total - self.machine0[1])


def wrk(url, kind, path, agents, duration, *, auth=None, prefix="lat", tag="run"):
    out = os.path.join(STATE, f"wrk-{tag}.json")
    if os.path.exists(out):
        os.remove(out)
    env = dict(E, BENCH_KIND=kind, BENCH_PATH=path, BENCH_AUTH=auth or "", BENCH_RUN_ID="", BENCH_PREFIX=prefix,
               BENCH_RATE="", BENCH_THREADS=str(THREADS), BENCH_OUT=out)
    cmd = [WRK, f"-t{THREADS}", f"-c{agents}", f"-d{duration}s", "--timeout", "10s", "-s", LUA, url]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not os.path.exists(out):
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()} {proc.stdout.strip()[-500:]}")
    with open(out) as f:
        r = json.load(f)
    secs = r["duration_us"] / 1e6
    e = r["errors"]
    return {"rps": r["requests"] / secs, "requests": r["requests"],
            "p50_ms": r["latency_us"]["percentiles"]["50"] / 1000, "p99_ms": r["latency_us"]["percentiles"]["99"] / 1000,
            "errors": e["connect"] + e["read"] + e["write"] + e["timeout"], "non2xx": e["status"]}


class Keybrake:
    def __init__(self, mode):
        self.mode = mode
        env = dict(E)
        env["KEYBRAKE_METRICS_TOKEN"] = METRICS_TOKEN
        env["KEYBRAKE_UPSTREAM_STRIPE"] = f"https://127.0.0.1:{TLS}" if mode == "tls-h2" else f"http://127.0.0.1:{PLAIN}"
        self.log_path = os.path.join(STATE, f"keybrake-{mode}.log")
        self.proc = subprocess.Popen([BIN, "serve", "--port", str(KB)], env=env, stdout=open(self.log_path, "w"),
                                     stderr=subprocess.STDOUT)
        for _ in range(300):
            try:
                # /ready, not /health: a replica is live before its database pool is (signing up then answers 503).
                urllib.request.urlopen(f"http://127.0.0.1:{KB}/ready", timeout=1).read()
                break
            except Exception:
                if self.proc.poll() is not None:
                    raise RuntimeError(f"keybrake exited: {open(self.log_path).read()[-2000:]}")
                time.sleep(0.2)
        try:
            signup = api("POST", "/v1/tenants", {"name": "Bench", "email": f"bench-{mode}@example.com"})
            self.admin = signup["admin_token"]
            api("POST", f"/v1/operator/tenants/{signup['tenant']['id']}/plan", {"plan": "pro"}, OPERATOR)
            api("PUT", "/v1/vendors/stripe/credentials", {"secret_key": "sk_test_bench_12345678"}, self.admin)
            self.key_id, self.token = self.key("latency", 100_000_000)
        except BaseException:
            self.stop()  # a failed start must not leave the server holding its port for the next run
            raise

    def key(self, label, cap):
        made = api("POST", "/v1/keys", {"vendor": "stripe", "label": label, "duplicate_window_seconds": 0,
                                        "allowed_endpoints": ["GET /v1/customers/*", "POST /v1/charges"],
                                        "daily_usd_cap": cap}, self.admin)
        return made["key"]["id"], made["token"]

    def stop(self):
        self.proc.terminate()
        try:
            self.proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def main():
    stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    rows = []
    for mode in MODES:
        kb = Keybrake(mode)
        direct = f"https://127.0.0.1:{TLS}" if mode == "tls-h2" else f"http://127.0.0.1:{PLAIN}"
        try:
            # warm-up: connections on both sides, the verified-token cache
            wrk(f"http://127.0.0.1:{KB}", "get", "/stripe/v1/customers/cus_1", 50, 2, auth=f"Bearer {kb.token}", tag="warm")
            base_rss = rss_kib(kb.proc.pid)
            for agents in AGENTS:
                for kind in KINDS:
                    path = "/v1/customers/cus_1" if kind == "get" else "/v1/charges"
                    name = f"{mode}-{kind}-{agents}"
                    log(f"{name}: direct")
                    d = wrk(direct, kind, path, agents, DURATION, auth=f"Bearer {kb.token}", prefix=f"d-{name}", tag=f"{name}-direct")
                    log(f"{name}: keybrake")
                    codes0 = answers_by_code()
                    with Sampler(kb.proc.pid, TLS if mode == "tls-h2" else PLAIN) as s:
                        k = wrk(f"http://127.0.0.1:{KB}", kind, "/stripe" + path, agents, DURATION, auth=f"Bearer {kb.token}",
                                prefix=f"k-{name}", tag=f"{name}-keybrake")
                    row = {"name": name, "mode": mode, "kind": kind, "agents": agents, "direct": d, "keybrake": k,
                           "rps_ratio": k["rps"] / d["rps"] if d["rps"] else None,
                           "p50_added_ms": k["p50_ms"] - d["p50_ms"], "p99_added_ms": k["p99_ms"] - d["p99_ms"],
                           "p50_ratio": k["p50_ms"] / d["p50_ms"] if d["p50_ms"] else None,
                           "p99_ratio": k["p99_ms"] / d["p99_ms"] if d["p99_ms"] else None,
                           "rss_peak_mib": s.peak_rss / 1024, "rss_base_mib": base_rss / 1024,
                           "rss_per_1k_in_flight_mib": (s.peak_rss - base_rss) / 1024 / (agents / 1000),
                           "upstream_connections_peak": s.peak_conns,
                           "keybrake_cpu_us_per_request": s.cpu_s * 1e6 / max(1, k["requests"]),
                           "machine_busy": s.machine_busy,
                           "keybrake_codes": {c: n - codes0.get(c, 0) for c, n in answers_by_code().items() if n - codes0.get(c, 0) > 0}}
                    if kind == "charge":
                        row["upstream_charges"] = settled_charges(f"k-{name}")
                    rows.append(row)
                    log(f"{name}: direct {d['rps']:.0f}/s p50 {d['p50_ms']:.1f} p99 {d['p99_ms']:.1f} | keybrake {k['rps']:.0f}/s "
                        f"p50 {k['p50_ms']:.1f} p99 {k['p99_ms']:.1f} (×{row['rps_ratio']:.2f}) errors {k['errors']} non-2xx {k['non2xx']} "
                        f"codes {row['keybrake_codes']} rss {row['rss_peak_mib']:.0f} MiB conns {s.peak_conns} keybrake CPU {row['keybrake_cpu_us_per_request']:.0f} µs/req, machine busy {100 * s.machine_busy:.0f} %")
            # the cap: charges on one key whose cap is reached during the run
            if "charge" in KINDS:
                cap_id, cap_token = kb.key(f"cap-{mode}", CAP_USD)
                name = f"{mode}-cap-{CAP_AGENTS}"
                log(f"{name}: ${CAP_USD} cap, $1 charges")
                k = wrk(f"http://127.0.0.1:{KB}", "charge", "/stripe/v1/charges", CAP_AGENTS, DURATION, auth=f"Bearer {cap_token}",
                        prefix=f"c-{name}", tag=f"{name}-keybrake")
                reached = settled_charges(f"c-{name}")
                rows.append({"name": name, "mode": mode, "kind": "cap", "agents": CAP_AGENTS, "keybrake": k,
                             "cap_usd": CAP_USD, "upstream_charges": reached, "overshoot_charges": max(0, reached - CAP_USD),
                             "exact": reached == CAP_USD})
                log(f"{name}: {reached} charges reached the vendor for a ${CAP_USD} cap (overshoot {max(0, reached - CAP_USD)})")
        finally:
            kb.stop()

    meta = {"when": stamp, "machine": f"{platform.node()} {os.cpu_count()} cores {platform.machine()}",
            "kernel": platform.release(), "delay_ms": DELAY_MS, "duration_s": DURATION,
            "max_in_flight": E.get("KEYBRAKE_UPSTREAM_MAX_IN_FLIGHT"), "git": subprocess.run(
                ["git", "-C", ROOT, "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()}
    os.makedirs(os.path.join(ROOT, "Benchmarks", "results"), exist_ok=True)
    out = os.path.join(ROOT, "Benchmarks", "results", f"latency-{stamp}.json")
    with open(out, "w") as f:
        json.dump({"meta": meta, "rows": rows}, f, indent=1)
    print(table(meta, rows))
    log(f"results: {out}")
    return 1 if any(r.get("overshoot_charges", 0) > 0 for r in rows) else 0


def codes(r):
    refused = {c: n for c, n in r.get("keybrake_codes", {}).items() if c != "none"}
    return (" (" + ", ".join(f"{c} {n}" for c, n in sorted(refused.items())) + ")") if refused else ""


def table(meta, rows):
    lines = [f"At real vendor latency ({meta['delay_ms']:.0f} ms upstream), {meta['machine']}, {meta['duration_s']} s per row, git {meta['git']}",
             "",
             "| row | direct req/s | Keybrake req/s | ×direct | direct p50 / p99 ms | Keybrake p50 / p99 ms | added p50 / p99 ms | errors | RSS peak MiB | RSS per 1k in flight MiB | upstream conns | Keybrake CPU µs/req | machine busy |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        k = r["keybrake"]
        if r["kind"] == "cap":
            lines.append(f"| {r['name']} (${r['cap_usd']} cap) | | {k['rps']:.0f} | | | {k['p50_ms']:.1f} / {k['p99_ms']:.1f} | | "
                         f"{r['upstream_charges']} charges reached the vendor, overshoot {r['overshoot_charges']} | | | | | |")
            continue
        d = r["direct"]
        lines.append(f"| {r['name']} | {d['rps']:.0f} | {k['rps']:.0f} | {r['rps_ratio']:.2f} | {d['p50_ms']:.1f} / {d['p99_ms']:.1f} | "
                     f"{k['p50_ms']:.1f} / {k['p99_ms']:.1f} | {r['p50_added_ms']:+.1f} / {r['p99_added_ms']:+.1f} | "
                     f"{k['errors']} io, {k['non2xx']} non-2xx{codes(r)} | {r['rss_peak_mib']:.0f} | {r['rss_per_1k_in_flight_mib']:.1f} | "
                     f"{r['upstream_connections_peak']} | {r['keybrake_cpu_us_per_request']:.0f} | {100 * r['machine_busy']:.0f} % |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
