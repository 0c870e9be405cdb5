"""One tenant cannot hurt another (DESIGN §16). Tenant B (8 connections of proxied Resend reads) is measured alone,
then under tenant A's flood of admin reads (64 connections of `GET /v1/audit?error_code=zz&limit=500`) over a large
audit history, then under tenant C's flood (128 connections) of proxied requests past its free-plan quota — on a
replica of its own started with the default admission and admin-read settings, in one run.

Acceptance (issue 26): B's every request 2xx; under A's flood B's p99 ≤ 100 ms and A's reads answer (200, 429
too_many_reads) or time out (503 query_timeout) within the statement timeout; under C's flood B is served ≥ 0.4× the
requests it was served alone; every flood request answered, and audit rows = proxied requests answered.

Load comes from `load.py` processes (aiohttp, closed loop), one per tenant, so the Python clients do not share an
interpreter with each other. The history is seeded with one SQL statement (generate_series);
KEYBRAKE_E2E_NOISY_ROWS sets its size (default 2,000,000). KEYBRAKE_E2E_NOISY_ENV adds settings to the replica
(`NAME=value,NAME=value`), e.g. `KEYBRAKE_ADMISSION_SEATS=0,KEYBRAKE_ADMIN_READS_QUEUE_PER_TENANT=0` to see the test
fail without admission and with admin reads refused at once (the mutation check in docs/testing.md).
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import requests

from conftest import BIN, DB_NAME, E2E, OPERATOR_TOKEN, Key, free_port, wait_until

ROWS = int(os.environ.get("KEYBRAKE_E2E_NOISY_ROWS", "2000000"))
SECONDS = 4
STATEMENT_TIMEOUT_S = 5  # AdminReads' defaults: the statement timeout, and the longest wait for a read's turn
READ_WAIT_S = 1


def p(values: list[float], q: float) -> float:
    return values[min(len(values) - 1, int(len(values) * q))] if values else float("nan")


def start_load(url: str, token: str, connections: int, seconds: float, flood: bool = False) -> subprocess.Popen:
    # A flood's client runs at a lower CPU priority: on two cores its Python loop would otherwise delay B's client
    # itself, and the test measures the server's isolation, not this machine's scheduler. It still sends as fast as
    # the server answers it.
    nice = ["nice", "-n", "10"] if flood else []
    return subprocess.Popen(nice + [sys.executable, str(E2E / "load.py"), "--url", url, "--header", f"Authorization: Bearer {token}",
                                    "--connections", str(connections), "--duration", str(seconds)],
                            stdout=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> dict:
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0, out
    result = json.loads(out)
    result["answered"] = sum(result["statuses"].values())
    return result


def test_tenant_b_is_served_under_a_admin_flood_and_c_quota_flood(stack):
    # A replica of its own: fresh admission state, defaults for every fairness setting.
    port = free_port()
    env = dict(stack.replica_env)
    extra = os.environ.get("KEYBRAKE_E2E_NOISY_ENV", "")
    env.update(pair.split("=", 1) for pair in extra.split(",") if pair)
    proc = stack.spawn("keybrake-noisy", [BIN, "serve", "--port", port], env=env)
    url = f"http://127.0.0.1:{port}"
    wait_until(lambda: requests.get(url + "/ready", timeout=2).status_code == 200, 120, "noisy-neighbour replica")
    try:
        run(stack, url)
    finally:
        stack.procs.remove(proc)
        proc.stop()


def tenant(stack, url: str, name: str, plan: str) -> tuple[str, str, Key]:
    r = requests.post(url + "/v1/tenants", json={"name": name, "email": f"{name.lower()}@noisy.test"}, timeout=30)
    assert r.status_code == 201, r.text
    tenant_id, admin = r.json()["tenant"]["id"], r.json()["admin_token"]
    auth = {"Authorization": f"Bearer {admin}"}
    r = requests.put(url + "/v1/vendors/resend/credentials", json={"api_key": stack.resend_key}, headers=auth, timeout=30)
    assert r.status_code == 200, r.text
    r = requests.post(url + f"/v1/operator/tenants/{tenant_id}/plan", json={"plan": plan},
                      headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}, timeout=30)
    assert r.status_code == 200, r.text
    r = requests.post(url + "/v1/keys", json={"vendor": "resend", "label": f"{name}-agent", "allowed_endpoints": ["GET /emails/*"]},
                      headers=auth, timeout=30)
    assert r.status_code == 201, r.text
    return tenant_id, admin, Key(r.json()["key"]["id"], r.json()["token"], "resend")


def psql(stack, query: str, timeout: float) -> str:
    return subprocess.run(["psql", "-X", "-q", "-tA", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(stack.pg_port),
                           "-U", "postgres", "-d", DB_NAME, "-c", query],
                          check=True, capture_output=True, text=True, timeout=timeout).stdout.strip()


def rows_of(stack, key_id: str) -> int:
    """The key's audit rows, once none is still being completed (a read's row is written while it is upstream)."""
    deadline = time.monotonic() + 5
    while True:
        total, in_flight = psql(stack, f"SELECT count(*), count(*) FILTER (WHERE state = 'in_flight') FROM audit_events "
                                       f"WHERE key_id = '{key_id}'", 30).split("|")
        if int(in_flight) == 0 or time.monotonic() > deadline:
            return int(total)
        time.sleep(0.1)


def run(stack, url: str):
    a_id, a_admin, _ = tenant(stack, url, "Alpha", "pro")
    _, _, b_key = tenant(stack, url, "Bravo", "pro")
    c_id, _, c_key = tenant(stack, url, "Charlie", "free")

    # A's busy month: ROWS audit rows over the last weeks (one statement; the partitions take them by date).
    started = time.monotonic()
    psql(stack, f"""
        INSERT INTO audit_events (id, tenant_id, key_id, key_label, vendor, method, path, decision, upstream_status,
                                  outcome, amount_micros, created_at)
        SELECT 'aud_noisy' || g, '{a_id}', 'key_noisyseed', 'seed', 'stripe', 'POST', '/v1/charges', 'allowed', 200,
               'settled', 1000000, now() - make_interval(secs => g)
        FROM generate_series(1, {ROWS}) g""", timeout=600)
    psql(stack, "ANALYZE audit_events", timeout=120)
    seeded_in = time.monotonic() - started
    # C is past its free quota (1,000 a month by default).
    psql(stack, f"""INSERT INTO tenant_monthly_usage (tenant_id, month, requests)
                    VALUES ('{c_id}', date_trunc('month', now() AT TIME ZONE 'UTC')::date, 1000)
                    ON CONFLICT (tenant_id, month, shard) DO UPDATE SET requests = 1000""", timeout=30)

    b_url = url + "/resend/emails/em_noisy_b"
    c_url = url + "/resend/emails/em_noisy_c"
    a_url = url + "/v1/audit?error_code=zz&limit=500"
    # Warm: tokens verified (argon2 once), the upstream connection open, C's quota refusal seen once.
    assert requests.get(b_url, headers={"Authorization": f"Bearer {b_key.token}"}, timeout=30).status_code == 200
    assert requests.get(c_url, headers={"Authorization": f"Bearer {c_key.token}"}, timeout=30).status_code == 429
    assert requests.get(a_url, headers={"Authorization": f"Bearer {a_admin}"}, timeout=30).status_code == 200

    def b_load():
        return finish(start_load(b_url, b_key.token, 8, SECONDS))

    def under(flood_url: str, token: str, connections: int) -> tuple[dict, dict]:
        flood = start_load(flood_url, token, connections, SECONDS + 1.5, flood=True)
        time.sleep(0.75)
        b = b_load()
        return b, finish(flood)

    def summary(b: dict) -> dict:
        return {"n": b["answered"], "p50": round(p(b["latencies_ms"], .5), 1), "p99": round(p(b["latencies_ms"], .99), 1)}

    # Each flood phase follows a run of B alone, so the ratio compares moments of the same machine load. This
    # machine is shared (other builds come and go), so a phase that misses its bound is measured once more; the
    # failures this test exists for are far outside it (no admission and admin reads refused at once: B's p99
    # 207 ms under A, 0.15x under C — docs/testing.md).
    b_runs, a_runs, c_runs, figures = [], [], [], {"seeded_rows": ROWS, "seed_s": round(seeded_in, 1), "phases": []}
    for attempt in range(2):
        alone = b_load()
        under_a, a = under(a_url, a_admin, 64)
        b_runs += [alone, under_a]
        a_runs.append(a)
        figures["phases"].append({"b_alone": summary(alone), "b_under_a": summary(under_a),
                                  "a": {"statuses": a["statuses"], "codes": a["codes"], "max_ms": round(a["latencies_ms"][-1] if a["latencies_ms"] else 0, 1)}})
        if p(under_a["latencies_ms"], .99) <= 100:
            break
    a_p99 = p(under_a["latencies_ms"], .99)
    for attempt in range(2):
        alone = b_load()
        under_c, c = under(c_url, c_key.token, 128)
        b_runs += [alone, under_c]
        c_runs.append(c)
        share = under_c["answered"] / max(1, alone["answered"])
        figures["phases"].append({"b_alone": summary(alone), "b_under_c": summary(under_c), "share": round(share, 2),
                                  "c": {"statuses": c["statuses"], "codes": c["codes"], "n": c["answered"]}})
        if share >= 0.4:
            break
    print("noisy-neighbour figures:", json.dumps(figures))

    for b in b_runs:
        assert b["errors"] == 0 and set(b["statuses"]) == {"200"}, (b["statuses"], b["errors"], figures)
    assert a_p99 <= 100, figures
    assert share >= 0.4, figures

    for a in a_runs:
        # A's reads: answered (after waiting their turn) or timed out, never left hanging past the wait and the timeout.
        assert a["errors"] == 0 and a["answered"] > 0, figures
        assert set(a["statuses"]) <= {"200", "429", "503"}, figures
        assert set(a["codes"]) <= {"", "too_many_reads", "query_timeout"}, figures
        assert a["latencies_ms"][-1] <= (READ_WAIT_S + STATEMENT_TIMEOUT_S) * 1000 + 1000, figures
    for c in c_runs:
        # C's requests: every one answered, refused (never forwarded), and audited.
        assert c["errors"] == 0 and set(c["statuses"]) == {"429"}, figures
        assert set(c["codes"]) <= {"monthly_quota_exceeded", "tenant_busy"}, figures

    # Audit rows = proxied requests answered (the warm-up request included), for B and for C.
    assert rows_of(stack, b_key.id) == 1 + sum(b["answered"] for b in b_runs)
    assert rows_of(stack, c_key.id) == 1 + sum(c["answered"] for c in c_runs)
