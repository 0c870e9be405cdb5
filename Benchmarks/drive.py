#!/usr/bin/env python3
"""Drives `make bench` once everything is running (Benchmarks/run.sh starts the processes and calls this).

Sets up a tenant and vault keys through the admin API, runs every scenario with wrk (Benchmarks/wrk/bench.lua),
measures CPU per request from /proc, counts the charges that reached the fake upstream, reads Keybrake's own
audit rows and ledger, then profiles the hot path (Postgres statements per request, fsyncs, perf). Writes
Benchmarks/results/bench-<UTC time>.json and prints the table (Benchmarks/report.py).

Standard library only. Configuration comes from the environment run.sh sets (BENCH_*).
"""
import datetime
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import time
import http.client
import urllib.parse
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import report  # noqa: E402

E = os.environ
ROOT = E["BENCH_ROOT"]
STATE = E["BENCH_STATE"]                      # run folder: nginx prefix, logs, wrk outputs
UPSTREAM = int(E["BENCH_UPSTREAM_PORT"])
PROXY = int(E["BENCH_PROXY_PORT"])
KB = int(E["BENCH_KEYBRAKE_PORT"])
PG_PORT = E["BENCH_PG_PORT"]
PG_DB = E["BENCH_PG_DB"]
PG_DATA = E["BENCH_PG_DATA"]
OPERATOR = E["KEYBRAKE_OPERATOR_TOKEN"]
PIDS = {"keybrake": int(E["BENCH_KEYBRAKE_PID"]), "nginx_upstream": int(E["BENCH_UPSTREAM_PID"]),
        "nginx_proxy": int(E["BENCH_PROXY_PID"])}
DURATION = int(E.get("BENCH_DURATION", "10"))
RATES = [int(r) for r in E.get("BENCH_RATES", "500,2000").split(",") if r]
SAT_CONNS = int(E.get("BENCH_SAT_CONNECTIONS", "32"))
PROFILE = E.get("BENCH_PROFILE", "1") != "0"
ONLY = E.get("BENCH_ONLY", "")                  # regex on row names (seq-keybrake-get, sat-nginx-charge, …)
HOLD = E.get("BENCH_HOLD", "0") == "1"
WRK = E.get("BENCH_WRK", "wrk")
LUA = os.path.join(ROOT, "Benchmarks", "wrk", "bench.lua")
CHARGES_LOG = os.path.join(STATE, "charges.log")
PRICE_USD = 1.00                                # amount=100 currency=usd
CLK_TCK = os.sysconf("SC_CLK_TCK")


def log(msg):
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------- Postgres

def sql(query, db=None):
    out = subprocess.run(["psql", "-qtAX", "-F", "\t", "-h", "127.0.0.1", "-p", PG_PORT, "-U", "postgres", "-d", db or PG_DB,
                          "-c", query], capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"psql failed: {out.stderr.strip()} — {query[:200]}")
    return out.stdout.strip()


def sql_rows(query):
    text = sql(query)
    return [line.split("\t") for line in text.splitlines() if line]


def sql_json(query):
    text = sql(query)
    return json.loads(text) if text else None


# ---------------------------------------------------------------------------------------------- admin API

def api(method, path, body=None, token=None):
    req = urllib.request.Request(f"http://127.0.0.1:{KB}{path}", method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(req, timeout=30) as r:
            return json.loads(r.read() or b"{}")
    except urllib.error.HTTPError as e:
        raise RuntimeError(f"{method} {path} → {e.code}: {e.read()[:300]!r}") from None


def create_key(admin, label, daily_cap=None):
    body = {"vendor": "stripe", "label": label, "allowed_endpoints": ["GET /v1/customers/*", "POST /v1/charges"],
            "duplicate_window_seconds": 0}
    if daily_cap is not None:
        body["daily_usd_cap"] = daily_cap
    made = api("POST", "/v1/keys", body, admin)
    return made["key"]["id"], made["token"]


# ---------------------------------------------------------------------------------------------- CPU accounting

def proc_table():
    """pid → (ppid, cpu ticks) for every process we can see."""
    table = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as f:
                text = f.read()
        except OSError:
            continue
        rest = text[text.rindex(")") + 2:].split()
        table[int(name)] = (int(rest[1]), int(rest[11]) + int(rest[12]))
    return table


def tree_ticks(table, root):
    if root not in table:
        return 0
    children = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    total, stack = 0, [root]
    while stack:
        pid = stack.pop()
        total += table.get(pid, (0, 0))[1]
        stack.extend(children.get(pid, []))
    return total


def machine_ticks():
    with open("/proc/stat") as f:
        parts = [int(x) for x in f.readline().split()[1:]]
    idle = parts[3] + parts[4]
    return sum(parts[:8]) - idle, sum(parts[:8])


def postmaster_pid():
    with open(os.path.join(PG_DATA, "postmaster.pid")) as f:
        return int(f.readline())


def ctx_switches(pid):
    total = 0
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/status") as f:
                    for line in f:
                        if line.startswith(("voluntary_ctxt_switches", "nonvoluntary_ctxt_switches")):
                            total += int(line.split()[1])
            except OSError:
                pass
    except OSError:
        pass
    return total


def cpu_snapshot():
    table = proc_table()
    busy, total = machine_ticks()
    ru = resource.getrusage(resource.RUSAGE_CHILDREN)
    snap = {name: tree_ticks(table, pid) for name, pid in PIDS.items()}
    snap["postgres"] = tree_ticks(table, postmaster_pid())
    snap["machine_busy"], snap["machine_total"] = busy, total
    snap["wrk_s"] = ru.ru_utime + ru.ru_stime
    snap["keybrake_ctxsw"] = ctx_switches(PIDS["keybrake"])
    return snap


def cpu_delta(a, b, requests):
    """CPU µs per request for each component (ticks → µs), plus the machine's busy share."""
    per = {}
    n = max(requests, 1)
    for name in ["keybrake", "postgres", "nginx_upstream", "nginx_proxy"]:
        per[name] = round((b[name] - a[name]) * 1e6 / CLK_TCK / n, 1)
    per["wrk"] = round((b["wrk_s"] - a["wrk_s"]) * 1e6 / n, 1)
    busy = b["machine_busy"] - a["machine_busy"]
    total = max(b["machine_total"] - a["machine_total"], 1)
    per["machine"] = round(busy * 1e6 / CLK_TCK / n, 1)
    known = sum(per[k] for k in ["keybrake", "postgres", "nginx_upstream", "nginx_proxy", "wrk"])
    per["other"] = round(max(per["machine"] - known, 0), 1)   # everything else running on the box
    per["machine_busy_pct"] = round(100.0 * busy / total, 1)
    per["keybrake_ctx_switches"] = round(max(0, b["keybrake_ctxsw"] - a["keybrake_ctxsw"]) / n, 1)
    return per


# ---------------------------------------------------------------------------------------------- wrk

def count_charges(prefix):
    if not os.path.exists(CHARGES_LOG):
        return 0
    needle = (prefix + "-").encode()
    with open(CHARGES_LOG, "rb") as f:
        return sum(1 for line in f if line.startswith(needle))


def wrk(url, kind, path, connections, threads, duration, *, auth=None, run_id=None, prefix=None, rate=None, tag="run",
        auths=None):
    out = os.path.join(STATE, f"wrk-{tag}.json")
    if os.path.exists(out):
        os.remove(out)
    env = dict(E, BENCH_KIND=kind, BENCH_PATH=path, BENCH_AUTH=auth or "", BENCH_RUN_ID=run_id or "",
               BENCH_PREFIX=prefix or "bench", BENCH_RATE=str(rate or ""), BENCH_THREADS=str(threads), BENCH_OUT=out,
               BENCH_AUTHS=",".join(auths or []))
    cmd = [WRK, f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "5s", "-s", LUA, url]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0 or not os.path.exists(out):
        raise RuntimeError(f"wrk failed ({proc.returncode}): {proc.stderr.strip()} {proc.stdout.strip()[-500:]}")
    with open(out) as f:
        return json.load(f)


# ---------------------------------------------------------------------------------------------- scenarios

class Bench:
    def __init__(self):
        self.rows = []
        self.meta = {}
        self.profile = {}
        self.run_stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y%m%dT%H%M%SZ")

    # -- set-up ---------------------------------------------------------------------------------------
    def setup(self):
        signup = api("POST", "/v1/tenants", {"name": "Bench", "email": "bench@example.com"})
        self.admin = signup["admin_token"]
        self.tenant_id = signup["tenant"]["id"]
        api("POST", f"/v1/operator/tenants/{self.tenant_id}/plan", {"plan": "pro"}, OPERATOR)
        api("PUT", "/v1/vendors/stripe/credentials", {"secret_key": "sk_test_bench_12345678"}, self.admin)
        # The main key: capped far above what a run spends, so every request is reserved and settled.
        self.key_id, self.token = create_key(self.admin, "bench", daily_cap=100_000_000)
        self.targets = {
            "direct": (f"http://127.0.0.1:{UPSTREAM}", ""),
            "nginx": (f"http://127.0.0.1:{PROXY}", ""),
            "keybrake": (f"http://127.0.0.1:{KB}", "/stripe"),
        }

    def argon2_cold_vs_cached(self):
        """First request of a fresh key pays one argon2id verify; later ones hit the verified-token cache."""
        _, token = create_key(self.admin, "bench-argon2", daily_cap=1000)
        conn = http.client.HTTPConnection("127.0.0.1", KB, timeout=10)

        def once():
            t = time.perf_counter()
            conn.request("GET", "/stripe/v1/customers/cus_1", headers={"Authorization": f"Bearer {token}"})
            r = conn.getresponse()
            r.read()
            assert r.status == 200, r.status
            return (time.perf_counter() - t) * 1e3

        first = once()
        warm = sorted(once() for _ in range(50))
        conn.close()
        self.profile["argon2"] = {"first_request_ms": round(first, 2), "cached_p50_ms": round(warm[len(warm) // 2], 3),
                                  "verify_cost_ms": round(first - warm[len(warm) // 2], 2)}
        log(f"argon2: first request {first:.1f} ms, cached p50 {warm[len(warm) // 2]:.2f} ms")

    def hold(self):
        """BENCH_HOLD=1: keep everything up for manual profiling until $BENCH_STATE/hold is deleted."""
        marker = os.path.join(STATE, "hold")
        with open(marker, "w") as f:
            f.write(f"export KB=http://127.0.0.1:{KB} UPSTREAM=http://127.0.0.1:{UPSTREAM} PROXY=http://127.0.0.1:{PROXY} "
                    f"TOKEN={self.token} ADMIN={self.admin} KEYBRAKE_PID={PIDS['keybrake']} "
                    f"PGURL=postgres://postgres@127.0.0.1:{PG_PORT}/{PG_DB}\n")
        log(f"holding: `source {marker}` for URLs and the token; delete it to stop")
        while os.path.exists(marker):
            time.sleep(1)

    # -- one measured run -----------------------------------------------------------------------------
    def run(self, mode, target, kind, *, connections, threads, rate=None, token=None, label=None, extra=None, tokens=None):
        base, prefix_path = self.targets[target]
        path = prefix_path + ("/v1/customers/cus_1" if kind == "get" else "/v1/charges")
        wrk_kind = "charge" if kind in ("charge", "cap", "childcap") else kind
        name = label or f"{mode}-{target}-{kind}"
        if ONLY and not re.search(ONLY, name):
            return None
        run_id = f"{self.run_stamp}-{name}"
        prefix = f"{name}-{self.run_stamp}"
        auth = f"Bearer {token or self.token}"
        if target == "keybrake":
            sql("CHECKPOINT")
        charges_before = count_charges(prefix)
        snap_a = cpu_snapshot()
        result = wrk(base + path, wrk_kind, path, connections, threads, DURATION, auth=auth, run_id=run_id, prefix=prefix,
                     rate=rate, tag=name, auths=[f"Bearer {t}" for t in tokens or []])
        snap_b = cpu_snapshot()
        time.sleep(0.3)  # let in-flight requests finish and write their audit rows
        requests = result["requests"]
        row = {
            "name": name, "mode": mode, "target": target, "kind": kind, "connections": connections, "threads": threads,
            "rate_target": rate, "requests": requests, "duration_s": round(result["duration_us"] / 1e6, 3),
            "rps": round(requests / (result["duration_us"] / 1e6), 1),
            "latency_us": result["latency_us"], "errors": result["errors"],
            "non_2xx": result["errors"]["status"],
            "cpu_us_per_request": cpu_delta(snap_a, snap_b, requests),
        }
        if wrk_kind == "charge":
            row["upstream_charges"] = count_charges(prefix) - charges_before
        if target == "keybrake":
            row["audit"] = self.audit_stats(run_id)
        if extra:
            row.update(extra)
        self.rows.append(row)
        p = row["latency_us"]["percentiles"]
        log(f"{name:28s} {row['rps']:9.1f} req/s  p50 {p['50'] / 1e3:.3f} ms  p99 {p['99'] / 1e3:.3f} ms  "
            f"non-2xx {row['non_2xx']}  cpu/req {row['cpu_us_per_request']}")
        return row

    def audit_stats(self, run_id):
        rid = run_id.replace("'", "")
        return sql_json(f"""
            SELECT json_build_object(
              'rows', count(*),
              'by_outcome', (SELECT json_object_agg(k, n) FROM (
                  SELECT decision || coalesce(':' || error_code, '') AS k, count(*) AS n FROM audit_events
                  WHERE run_id = '{rid}' GROUP BY 1) x),
              'overhead_us', json_build_object('p50', percentile_cont(0.5) WITHIN GROUP (ORDER BY overhead_us),
                                               'p90', percentile_cont(0.9) WITHIN GROUP (ORDER BY overhead_us),
                                               'p99', percentile_cont(0.99) WITHIN GROUP (ORDER BY overhead_us)),
              'upstream_us', json_build_object('p50', percentile_cont(0.5) WITHIN GROUP (ORDER BY upstream_us),
                                               'p99', percentile_cont(0.99) WITHIN GROUP (ORDER BY upstream_us)),
              'allowed', count(*) FILTER (WHERE decision = 'allowed'),
              'allowed_span_s', extract(epoch FROM max(created_at) FILTER (WHERE decision = 'allowed')
                                                 - min(created_at) FILTER (WHERE decision = 'allowed')),
              'first_denial_after_s', extract(epoch FROM min(created_at) FILTER (WHERE decision = 'denied') - min(created_at)))
            FROM audit_events WHERE run_id = '{rid}'
            """)

    def warm_up(self):
        log("warm-up (unmeasured): every target and kind, 2 s at saturation")
        for target in ["direct", "nginx", "keybrake"]:
            base, prefix_path = self.targets[target]
            for kind in ["get", "charge"]:
                path = prefix_path + ("/v1/customers/cus_1" if kind == "get" else "/v1/charges")
                wrk(base + path, kind, path, SAT_CONNS, 2, 2, auth=f"Bearer {self.token}", run_id="warmup",
                    prefix=f"warmup-{self.run_stamp}", tag="warmup")

    # -- the plan -------------------------------------------------------------------------------------
    def scenarios(self):
        # 1. Per-request overhead: one connection, sequential requests.
        for target, kind in [("direct", "get"), ("nginx", "get"), ("keybrake", "get"),
                             ("direct", "charge"), ("nginx", "charge"), ("keybrake", "charge"), ("keybrake", "replay")]:
            self.run("seq", target, kind, connections=1, threads=1)
        # 2. Fixed rates (paced by bench.lua's delay()).
        for rate in RATES:
            conns = max(4, rate // 125)
            for target, kind in [("direct", "get"), ("nginx", "get"), ("keybrake", "get"),
                                 ("direct", "charge"), ("nginx", "charge"), ("keybrake", "charge")]:
                self.run(f"r{rate}", target, kind, connections=conns, threads=1, rate=rate)
        # 3. Saturation.
        sat_metered = None
        for target, kind in [("direct", "get"), ("nginx", "get"), ("keybrake", "get"),
                             ("direct", "charge"), ("nginx", "charge"), ("keybrake", "charge")]:
            row = self.run("sat", target, kind, connections=SAT_CONNS, threads=2)
            if row and target == "keybrake" and kind == "charge":
                sat_metered = row
        # 4. One hot key whose daily cap is reached half-way: cap = price × N, N ≈ half of what the run above managed.
        n = max(200, int(sat_metered["rps"] * DURATION / 2)) if sat_metered else 1000
        cap_key_id, cap_token = create_key(self.admin, "bench-hot", daily_cap=int(n * PRICE_USD))
        row = self.run("sat", "keybrake", "cap", connections=SAT_CONNS, threads=2, token=cap_token, label="sat-keybrake-cap",
                       extra={"cap_usd": n * PRICE_USD, "cap_charges": n})
        self.cap_outcome(row, cap_key_id, n)
        # 5. Child keys (per run): minting, and the same cap on one hot parent spread over its children.
        self.child_keys(n)

    def cap_outcome(self, row, cap_key_id, n):
        """Adds the ledger and the overshoot to a run against a key whose cap is `n` charges."""
        if not row:
            return
        ledger = sql_rows(f"SELECT settled_micros, reserved_micros, unknown_micros FROM spend_ledger "
                          f"WHERE key_id = '{cap_key_id}' AND period = 'day'")
        settled, reserved, unknown = (int(x) for x in ledger[0]) if ledger else (0, 0, 0)
        cap_micros = int(n * PRICE_USD * 1_000_000)
        row["ledger_micros"] = {"settled": settled, "reserved": reserved, "unknown": unknown, "cap": cap_micros}
        row["overshoot_charges"] = max(0, row["upstream_charges"] - n)
        row["overshoot_usd"] = round(max(0.0, row["upstream_charges"] * PRICE_USD - n * PRICE_USD), 2)
        row["ledger_over_cap"] = settled + reserved + unknown > cap_micros
        row["cap_reached"] = (row.get("audit") or {}).get("allowed", 0) >= n
        audit = row.get("audit") or {}
        if audit.get("allowed") and audit.get("allowed_span_s"):
            row["allowed_rps_until_cap"] = round(audit["allowed"] / float(audit["allowed_span_s"]), 1)
        log(f"cap run {row['name']}: cap {n} charges, upstream saw {row['upstream_charges']}, ledger settled {settled / 1e6:.2f} "
            f"reserved {reserved / 1e6:.2f} unknown {unknown / 1e6:.2f} (cap {cap_micros / 1e6:.2f}), "
            f"overshoot {row['overshoot_charges']}")

    def mint(self, parent_token, label):
        return api("POST", "/v1/child-keys", {"label": label, "run_id": label, "expires_in_seconds": 3600}, parent_token)

    def child_keys(self, n):
        """Minting children per second (each costs one argon2id hash), sequentially and from 4 clients; then charges
        on 32 children of one hot parent whose daily cap is reached half-way (the parent's counter is the hot row)."""
        if ONLY and not re.search(ONLY, "child"):
            return
        parent_id, parent_token = create_key(self.admin, "bench-fleet", daily_cap=int(n * PRICE_USD))
        self.mint(parent_token, "warm")  # the parent's own first use pays its argon2 verify
        count = 60
        t = time.perf_counter()
        for i in range(count):
            self.mint(parent_token, f"seq-{i}")
        sequential = count / (time.perf_counter() - t)
        from concurrent.futures import ThreadPoolExecutor
        t = time.perf_counter()
        with ThreadPoolExecutor(4) as pool:
            children = list(pool.map(lambda i: self.mint(parent_token, f"par-{i}"), range(2 * count)))
        parallel = 2 * count / (time.perf_counter() - t)
        self.profile["child_keys"] = {"mint_sequential_per_s": round(sequential, 1), "mint_4_clients_per_s": round(parallel, 1)}
        log(f"child keys: {sequential:.1f} minted/s from one client, {parallel:.1f}/s from 4")
        tokens = [c["token"] for c in children[:32]]
        for token in tokens:  # each child's first use pays its argon2 verify; keep that out of the measured run
            conn = http.client.HTTPConnection("127.0.0.1", KB, timeout=10)
            conn.request("GET", "/stripe/v1/customers/cus_1", headers={"Authorization": f"Bearer {token}"})
            conn.getresponse().read()
            conn.close()
        row = self.run("sat", "keybrake", "childcap", connections=SAT_CONNS, threads=2, tokens=tokens,
                       label="sat-keybrake-childcap", extra={"cap_usd": n * PRICE_USD, "cap_charges": n, "children": len(tokens)})
        self.cap_outcome(row, parent_id, n)

    # -- profile --------------------------------------------------------------------------------------
    def pg_profile(self):
        """Statements, commits, WAL flushes and WAL bytes per request (seq, one connection)."""
        if sql("SELECT count(*) FROM pg_available_extensions WHERE name = 'pg_stat_statements'") != "1":
            log("pg_stat_statements not available: skipping the statement profile")
            return
        if "pg_stat_statements" not in sql("SHOW shared_preload_libraries"):
            log("pg_stat_statements not preloaded: skipping the statement profile")
            return
        sql("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
        sql("ALTER SYSTEM SET pg_stat_statements.track = 'all'")
        sql("SELECT pg_reload_conf()")
        seconds = min(DURATION, 5)
        out = {}
        time.sleep(11)  # backends flush their pending WAL/commit counters at most every 10 s when idle
        for kind in ["get", "charge"]:
            sql("SELECT pg_stat_statements_reset()")
            sql("SELECT pg_stat_reset_shared('wal')")
            db0 = sql_rows(f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{PG_DB}'")[0]
            lsn0 = sql("SELECT pg_current_wal_lsn()")
            base, prefix_path = self.targets["keybrake"]
            path = prefix_path + ("/v1/customers/cus_1" if kind == "get" else "/v1/charges")
            res = wrk(base + path, kind, path, 1, 1, seconds, auth=f"Bearer {self.token}", run_id=f"profile-{kind}",
                      prefix=f"profile-{kind}-{self.run_stamp}", tag=f"profile-{kind}")
            n = res["requests"]
            lsn1 = sql("SELECT pg_current_wal_lsn()")
            stmts = sql_json("""
                SELECT json_agg(s ORDER BY s.total DESC) FROM (
                  SELECT toplevel, calls, round(total_exec_time::numeric, 3) AS total, round(mean_exec_time::numeric * 1000, 1) AS mean_us,
                         wal_records, wal_bytes, left(regexp_replace(query, '\\s+', ' ', 'g'), 110) AS query
                  FROM pg_stat_statements WHERE dbid = (SELECT oid FROM pg_database WHERE datname = current_database())
                    AND query NOT LIKE '%pg_current_wal_lsn%' AND query NOT LIKE '%pg_stat_%' AND query NOT LIKE '%pg_reload_conf%'
                  ORDER BY total_exec_time DESC LIMIT 25) s
                """) or []
            time.sleep(11)
            db1 = sql_rows(f"SELECT xact_commit FROM pg_stat_database WHERE datname = '{PG_DB}'")[0]
            wal = sql_rows("SELECT wal_records, wal_bytes, wal_write, wal_sync FROM pg_stat_wal")[0]
            wal_bytes = int(sql(f"SELECT pg_wal_lsn_diff('{lsn1}', '{lsn0}')"))
            top = [s for s in stmts if s["toplevel"]]
            nested = [s for s in stmts if not s["toplevel"]]
            out[kind] = {
                "requests": n, "latency_p50_us": res["latency_us"]["percentiles"]["50"],
                "round_trips_per_request": round(sum(s["calls"] for s in top) / max(n, 1), 2),
                "commits_per_request": round((int(db1[0]) - int(db0[0]) - 4) / max(n, 1), 2),  # minus our own 4 psql statements
                "wal_fsyncs_per_request": round(int(wal[3]) / max(n, 1), 2),
                "wal_writes_per_request": round(int(wal[2]) / max(n, 1), 2),
                "wal_bytes_per_request": round(wal_bytes / max(n, 1)),
                "db_exec_us_per_request": round(sum(float(s["total"]) for s in top) * 1000 / max(n, 1), 1),
                "top_level": [{"calls_per_request": round(s["calls"] / max(n, 1), 2), "mean_us": float(s["mean_us"]),
                               "wal_bytes_per_call": round(int(s["wal_bytes"]) / max(s["calls"], 1)), "query": s["query"]}
                              for s in top],
                "nested": [{"calls_per_request": round(s["calls"] / max(n, 1), 2), "mean_us": float(s["mean_us"]), "query": s["query"]}
                           for s in nested[:10]],
            }
            log(f"pg profile {kind}: {out[kind]['round_trips_per_request']} statements, {out[kind]['wal_fsyncs_per_request']} "
                f"WAL fsyncs, {out[kind]['db_exec_us_per_request']} µs executing per request")
        sql("ALTER SYSTEM SET pg_stat_statements.track = 'none'")
        sql("SELECT pg_reload_conf()")
        self.profile["postgres"] = out

    def dashboard_pages(self):
        """Issue 7's target: dashboard pages render in < 50 ms server-side with 10,000+ audit rows. Signs in as the
        bench tenant (whose audit trail the runs above filled) and reads each page's own `Server-Timing: total`."""
        rows = int(sql(f"SELECT count(*) FROM audit_events WHERE tenant_id = '{self.tenant_id}'") or 0)
        conn = http.client.HTTPConnection("127.0.0.1", KB, timeout=30)

        def request(method, path, body=None, cookies=None):
            headers = {"Cookie": "; ".join(f"{k}={v}" for k, v in (cookies or {}).items())} if cookies else {}
            if body is not None:
                headers["Content-Type"] = "application/x-www-form-urlencoded"
            conn.request(method, path, body=body, headers=headers)
            r = conn.getresponse()
            r.read()
            set_cookies = {}
            for name, value in r.getheaders():
                if name.lower() == "set-cookie":
                    k, _, rest = value.partition("=")
                    set_cookies[k] = rest.split(";", 1)[0]
            return r, set_cookies

        _, login_cookies = request("GET", "/dashboard/login")
        csrf = login_cookies.get("kb_login", "")
        form = urllib.parse.urlencode({"token": self.admin, "login_csrf": csrf})
        r, session = request("POST", "/dashboard/login", form, {"kb_login": csrf})
        if "kb_session" not in session:
            log(f"dashboard sign-in failed ({r.status}): skipping the page timings")
            return
        some_key = sql(f"SELECT id FROM vault_keys WHERE tenant_id = '{self.tenant_id}' ORDER BY created_at LIMIT 1")
        some_event = sql(f"SELECT id FROM audit_events WHERE tenant_id = '{self.tenant_id}' ORDER BY created_at DESC LIMIT 1 OFFSET 500")
        pages = ["/dashboard", "/dashboard/keys", "/dashboard/audit", f"/dashboard/audit?key_id={some_key}",
                 "/dashboard/audit?decision=denied&vendor=stripe", f"/dashboard/audit/{some_event}",
                 f"/dashboard/keys/{some_key}", "/dashboard/vendors"]
        out = {"audit_rows": rows, "pages": {}}
        for page in pages:
            times = []
            for _ in range(21):
                r, _ = request("GET", page, cookies={"kb_session": session["kb_session"]})
                timing = r.getheader("Server-Timing") or ""
                m = re.search(r"total;dur=([0-9.]+)", timing)
                if r.status == 200 and m:
                    times.append(float(m.group(1)))
            times.sort()
            if times:
                out["pages"][page] = {"p50_ms": times[len(times) // 2], "max_ms": times[-1], "samples": len(times)}
        conn.close()
        self.profile["dashboard"] = out
        worst = max((v["p50_ms"] for v in out["pages"].values()), default=None)
        log(f"dashboard: {rows} audit rows, slowest page p50 {worst} ms server-side")

    def anchors(self):
        """Keybrake's own floor, one connection: /health (HTTP server only) and /ready (plus one `SELECT 1`)."""
        out = {}
        base = f"http://127.0.0.1:{KB}"
        for name, path, conns, threads in [("health", "/health", 1, 1), ("ready", "/ready", 1, 1),
                                           ("health_saturation", "/health", SAT_CONNS, 2)]:
            a = cpu_snapshot()
            res = wrk(base + path, "get", path, conns, threads, 3, tag=f"anchor-{name}")
            b = cpu_snapshot()
            cpu = cpu_delta(a, b, res["requests"])
            out[name] = {"p50_us": res["latency_us"]["percentiles"]["50"], "rps": round(res["requests"] * 1e6 / res["duration_us"]),
                         "keybrake_cpu_us": cpu["keybrake"], "keybrake_ctx_switches": cpu["keybrake_ctx_switches"]}
            log(f"anchor {path}: p50 {out[name]['p50_us']} µs, keybrake CPU {cpu['keybrake']} µs/request")
        self.profile["anchors"] = out

    def perf_profile(self):
        """Sampled CPU profile of the keybrake process, one connection (cpu-clock; self time by category, and
        inclusive time of the pipeline's own frames through frame-pointer call graphs)."""
        perf = shutil.which("perf")
        if not perf or subprocess.run([perf, "stat", "-e", "task-clock", "true"], capture_output=True).returncode != 0:
            log("perf not usable here: skipping the CPU profile")
            return
        demangler = shutil.which("swift-demangle") or shutil.which("swift")

        def demangle(names, simplified):
            if not demangler or not names:
                return names
            args = [demangler] if demangler.endswith("swift-demangle") else [demangler, "demangle"]
            if simplified:
                args.append("--simplified")
            dem = subprocess.run(args, input="\n".join(names), capture_output=True, text=True).stdout.splitlines()
            return dem if len(dem) == len(names) else names

        def report_lines(data, *args):
            rep = subprocess.run([perf, "report", "-i", data, "--stdio", "-g", "none", "--percent-limit", "0.05", *args],
                                 capture_output=True, text=True).stdout
            return [l for l in rep.splitlines() if l.strip() and not l.startswith("#")]

        out = {}
        seconds = 5
        for kind in ["get", "charge"]:
            data = os.path.join(STATE, f"perf-{kind}.data")
            base, prefix_path = self.targets["keybrake"]
            path = prefix_path + ("/v1/customers/cus_1" if kind == "get" else "/v1/charges")
            env = dict(E, BENCH_KIND=kind, BENCH_PATH=path, BENCH_AUTH=f"Bearer {self.token}", BENCH_RUN_ID=f"perf-{kind}",
                       BENCH_PREFIX=f"perf-{kind}-{self.run_stamp}", BENCH_THREADS="1", BENCH_OUT=os.path.join(STATE, f"wrk-perf-{kind}.json"))
            load = subprocess.Popen([WRK, "-t1", "-c1", f"-d{seconds + 2}s", "--timeout", "5s", "-s", LUA, base + path], env=env,
                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(1)
            a = cpu_snapshot()
            subprocess.run([perf, "record", "-e", "cpu-clock", "-F", "999", "--call-graph", "fp", "-p", str(PIDS["keybrake"]),
                            "-o", data, "--", "sleep", str(seconds)], capture_output=True)
            b = cpu_snapshot()
            load.wait()
            with open(os.path.join(STATE, f"wrk-perf-{kind}.json")) as f:
                res = json.load(f)
            requests = res["requests"] * seconds * 1e6 / res["duration_us"]     # requests inside the perf window
            cpu = cpu_delta(a, b, int(requests))
            # Self time by symbol → categories.
            entries = []
            for line in report_lines(data, "--no-children", "--sort", "dso,sym"):
                m = re.match(r"\s*([\d.]+)%\s+(\S+)\s+\[([.k])\]\s+(.*)$", line)
                if m:
                    entries.append([float(m.group(1)), m.group(2), m.group(4).strip()])
            full = demangle([e[2] for e in entries], False)
            short = demangle([e[2] for e in entries], True)
            cats = categorize([[e[0], e[1], f] for e, f in zip(entries, full)])
            # Inclusive time of named frames (async functions are split into partial functions: each counts separately).
            inclusive = {}
            lines = report_lines(data, "--children", "--sort", "sym")
            syms, pcts = [], []
            for line in lines:
                m = re.match(r"\s*([\d.]+)%\s+([\d.]+)%\s+\[([.k])\]\s+(.*)$", line)
                if m:
                    pcts.append(float(m.group(1)))
                    syms.append(m.group(4).strip())
            for pct_, name in zip(pcts, demangle(syms, True)):
                if FRAMES.search(name):
                    key = re.sub(r"^(specialized |partial apply for |closure #\d+ in |thunk for |protocol witness for |outlined .* of )+", "", name)
                    key = re.sub(r" \(inlined\)$", "", key)[:120]
                    inclusive[key] = max(inclusive.get(key, 0.0), pct_)
            threads = {}
            for line in report_lines(data, "--no-children", "--sort", "comm"):
                m = re.match(r"\s*([\d.]+)%\s+(.*)$", line)
                if m:
                    threads[m.group(2).strip()] = float(m.group(1))
            # Sampling inflates the process's CPU; convert shares to µs with the same row measured without perf.
            plain = find_row(self.rows, f"seq-keybrake-{kind}")
            cpu_us = plain["cpu_us_per_request"]["keybrake"] if plain else cpu["keybrake"]
            out[kind] = {
                "requests_in_window": int(requests), "keybrake_cpu_us_per_request": cpu_us,
                "keybrake_cpu_us_per_request_under_perf": cpu["keybrake"],
                "keybrake_ctx_switches_per_request": cpu["keybrake_ctx_switches"],
                "threads_pct": threads,
                "categories": cats,
                "inclusive": [{"pct": p, "us_per_request": round(p * cpu_us / 100, 1), "frame": k}
                              for k, p in sorted(inclusive.items(), key=lambda kv: -kv[1])[:30]],
                "top": [{"pct": e[0], "dso": e[1], "symbol": sh[:160]} for e, sh in zip(entries[:30], short[:30])],
            }
            os.remove(data)
            log(f"perf {kind}: keybrake {cpu_us} µs CPU/request; " + ", ".join(f"{k} {v}%" for k, v in list(cats.items())[:6]))
        self.profile["perf"] = out

    def audit_phase_profile(self):
        """Keybrake's own per-request timings (audit overhead_us excludes the final settle+audit statement)."""
        self.profile["audit_overhead_us"] = {r["name"]: r["audit"]["overhead_us"] for r in self.rows if r.get("audit")}

    # -- metadata -------------------------------------------------------------------------------------
    def machine(self):
        def cmd(*args):
            try:
                return subprocess.run(args, capture_output=True, text=True, timeout=20).stdout.strip()
            except Exception:
                return ""
        cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), platform.processor())
        mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
        self.meta = {
            "started_utc": self.run_stamp, "cpu": cpu, "cores": os.cpu_count(), "memory_mib": mem, "kernel": platform.release(),
            "os": cmd("sh", "-c", ". /etc/os-release && echo $PRETTY_NAME"),
            "git_commit": cmd("git", "-C", ROOT, "rev-parse", "--short", "HEAD"),
            "git_dirty": bool(cmd("git", "-C", ROOT, "status", "--porcelain", "--untracked-files=no")),
            "nginx": cmd("sh", "-c", f"{E.get('BENCH_NGINX', 'nginx')} -v 2>&1"), "wrk": cmd("sh", "-c", f"{WRK} -v 2>&1 | head -1"),
            "postgres": sql("SHOW server_version"), "swift": cmd("swift", "--version").splitlines()[0] if cmd("swift", "--version") else "",
            "duration_s": DURATION, "sat_connections": SAT_CONNS, "load_avg_start": open("/proc/loadavg").read().split()[:3],
        }


CATEGORIES = [
    ("argon2", re.compile(r"argon2|blake2|fill_segment", re.I)),
    ("Swift runtime: generic metadata, casts", re.compile(
        r"getGenericMetadata|getCache|MetadataCache|ConcurrentReadableHashMap|swift_getAssociatedType|swift_dynamicCast|"
        r"swift_conformsToProtocol|instantiateConcreteType|swift_getEnumCaseMultiPayload|swift_getWitnessTable|TupleCacheEntry|"
        r"swift_checkMetadataState|swift_getTypeByMangledName|swift_getSingletonMetadata|_swift_getGeneric|swift_getTupleTypeMetadata")),
    ("alloc/ARC", re.compile(r"malloc|free|_int_|swift_retain|swift_release|swift_allocObject|swift_deallocObject|swift_slowAlloc|"
                             r"swift_slowDealloc|swift_bridgeObjectRetain|swift_bridgeObjectRelease|swift_arrayDestroy|tcache|"
                             r"swift_isUniquelyReferenced|swift_beginAccess|swift_endAccess|unknownObjectRetain|unknownObjectRelease")),
    ("JSON", re.compile(r"JSON|jsonb", re.I)),
    ("crypto (SHA/AES)", re.compile(r"SHA256|sha256|AES|GCM|Crypto|aes_|gcm_|boringssl|CCryptoBoringSSL", re.I)),
    ("Foundation (Date/Calendar/String fmt)", re.compile(r"Foundation|Calendar|TimeZone|DateComponents|NSString|CFString|icu|ucal_|String\(format")),
    ("PostgresNIO", re.compile(r"PostgresNIO|Postgres")),
    ("AsyncHTTPClient", re.compile(r"AsyncHTTPClient|HTTPClient")),
    ("Hummingbird", re.compile(r"Hummingbird")),
    ("NIO", re.compile(r"NIO")),
    ("Swift concurrency", re.compile(r"swift_task|swift_job|swift::|Concurrency|continuation|TaskGroup|swift_asyncLet", re.I)),
    ("Keybrake code", re.compile(r"\b(Proxy|Keys|KeybrakeCore|Audit|Vault|TokenAuth|HTTPLayer|Storage|Tenants|KeybrakeServer)\.")),
]


def find_row(rows, name):
    return next((r for r in rows if r["name"] == name), None)


FRAMES = re.compile(r"ProxyPipeline|SpendLedger|IdempotencyStore|VaultKeyAuthenticator|TokenVerifier|CredentialStore|Deadline\.run|"
                    r"AuditEvent|Forwarder\.send|PostgresClient\.query|HTTPClient\.execute\(|Task<>\._sleep|Logger\.subscript\.setter|"
                    r"JSONSerialization\.data|RouterResponder\.respond|FormBody|CanonicalBody|StripePricer|ExpiringCache|"
                    r"RequestEnvelopeMiddleware|MetricsMiddleware")


def categorize(entries):
    cats = {}
    for pct, dso, sym in entries:
        name = "kernel (network, scheduling)" if dso.startswith("[kernel") else None
        if name is None:
            for cat, rx in CATEGORIES:
                if rx.search(sym) or (cat == "JSON" and "JSON" in dso):
                    name = cat
                    break
        if name is None:
            name = "Swift stdlib" if "libswiftCore" in dso else ("libc" if dso.startswith("libc") else "other")
        cats[name] = round(cats.get(name, 0) + pct, 1)
    cats["(symbols under 0.05% each)"] = round(max(0.0, 100.0 - sum(cats.values())), 1)
    return dict(sorted(cats.items(), key=lambda kv: -kv[1]))


def main():
    bench = Bench()
    bench.machine()
    log(f"machine: {bench.meta['cpu']}, {bench.meta['cores']} cores, load {' '.join(bench.meta['load_avg_start'])}")
    bench.setup()
    bench.warm_up()
    if HOLD:
        bench.hold()
        return 0
    bench.argon2_cold_vs_cached()
    bench.scenarios()
    if PROFILE:
        bench.audit_phase_profile()
        bench.dashboard_pages()
        bench.anchors()
        bench.pg_profile()
        bench.perf_profile()
    bench.meta["load_avg_end"] = open("/proc/loadavg").read().split()[:3]
    results = {"meta": bench.meta, "rows": bench.rows, "profile": bench.profile}
    results["summary"] = report.summarize(results)
    os.makedirs(os.path.join(ROOT, "Benchmarks", "results"), exist_ok=True)
    path = os.path.join(ROOT, "Benchmarks", "results", f"bench-{bench.run_stamp}.json")
    with open(path, "w") as f:
        json.dump(results, f, indent=1)
    shutil.copyfile(path, os.path.join(ROOT, "Benchmarks", "results", "latest.json"))
    print(report.render(results))
    print(f"\nresults: {os.path.relpath(path, ROOT)} (compare runs: python3 Benchmarks/report.py OLD.json NEW.json)")
    return 1 if results["summary"].get("overshoot_charges", 0) > 0 else 0


if __name__ == "__main__":
    sys.exit(main())
