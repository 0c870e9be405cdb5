"""Failover: 32 agents charging capped keys on two Keybrake replicas in front of the HA stack of `scripts/ha.sh`
(etcd, two Patroni nodes with a synchronous standby, HAProxy, PgBouncer) while the leader's Postgres is killed with
SIGKILL (host gone: Patroni, postmaster and backends at once) and then, once the old node is back as the standby, a
planned `patronictl switchover`.

    agents ──▶ replica 1 ──▶ PgBouncer (transaction mode, unnamed statements) ──▶ HAProxy write port ──▶ leader
           └─▶ replica 2 ──────────────────────────────────────────────────────▶ HAProxy write port ──▶ leader
               (each replica's key-change listener: HAProxy's write port)

After it: money moved ≤ every cap; nothing executed twice; every charge that moved money has its audit row; every
reservation acknowledged to an agent (2xx) is on the new primary; the ledger equals what moved once unknown outcomes
are resolved; both replicas serve within 10 s of the new leader. Prints kill → first 200 and the requests failed
closed meanwhile, and the same for the switchover.

Mutation check (docs/operations.md "High availability"): `KEYBRAKE_E2E_HA_MUTATION=1` bootstraps the stack with
`synchronous_mode: false`, holds the standby's WAL receiver (SIGSTOP) 4 s before the kill and SIGKILLs it just after
(which discards the WAL in its socket buffer): this test then fails on acknowledged reservations missing from the new
primary.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import threading
import time
from collections import Counter

import pytest
import requests

from conftest import BIN, LEASE_SECONDS, OPERATOR_TOKEN, ROOT, STATE, Replica, Stack, wait_until

AGENTS = 32
HA_BASE = int(os.environ.get("KEYBRAKE_E2E_HA_PORT_BASE", "24390"))
HA_DIR = STATE / "ha-e2e"
HA_DB = "keybrake_ha"
MUTATION = os.environ.get("KEYBRAKE_E2E_HA_MUTATION") == "1"
WRITE_PORT, READ_PORT, BOUNCER_PORT = HA_BASE + 6, HA_BASE + 7, HA_BASE + 9


def ha(*args: str, check: bool = True, timeout: float = 180) -> str:
    env = {**os.environ, "HA_DIR": str(HA_DIR), "HA_PORT_BASE": str(HA_BASE), "HA_DB": HA_DB}
    if MUTATION:
        env.update({"HA_SYNCHRONOUS_MODE": "false", "HA_MAX_LAG": str(1 << 30)})
    out = subprocess.run([ROOT / "scripts" / "ha.sh", *args], env=env, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        raise RuntimeError(f"ha.sh {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
    return out.stdout.strip()


class HAStack(Stack):
    """The e2e stack's fakes and helpers, with Postgres behind HAProxy and PgBouncer instead of one cluster."""

    def __init__(self):
        super().__init__()
        self.pg_port = WRITE_PORT
        self.write_url = f"postgres://postgres@127.0.0.1:{WRITE_PORT}/{HA_DB}"
        self.bouncer_url = f"postgres://postgres@127.0.0.1:{BOUNCER_PORT}/{HA_DB}"

    def sql(self, query: str) -> list[str]:
        out = subprocess.run(["psql", "-X", "-q", "-tA", "-h", "127.0.0.1", "-p", str(WRITE_PORT), "-U", "postgres",
                              "-d", HA_DB, "-c", query], check=True, capture_output=True, text=True, timeout=30)
        return [line for line in out.stdout.splitlines() if line]

    def start_ha_replicas(self):
        master_key = subprocess.run([BIN, "generate-master-key", "--id", "ha"], check=True, capture_output=True,
                                    text=True).stdout.strip()
        base = {k: v for k, v in os.environ.items() if not k.startswith("KEYBRAKE_") and k != "DATABASE_URL"}
        base.update({
            "KEYBRAKE_MASTER_KEYS": master_key,
            "KEYBRAKE_UPSTREAM_STRIPE": f"http://127.0.0.1:{self.chaos_port}",
            "KEYBRAKE_UPSTREAM_TWILIO": f"http://127.0.0.1:{self.twilio_port}",
            "KEYBRAKE_UPSTREAM_RESEND": f"http://127.0.0.1:{self.resend_port}",
            "KEYBRAKE_OPERATOR_TOKEN": OPERATOR_TOKEN,
            "KEYBRAKE_TRUSTED_PROXIES": "127.0.0.1,::1",
            "KEYBRAKE_UPSTREAM_TIMEOUT_MS": "4000",
            "KEYBRAKE_LEASE_MARGIN_MS": "1000",
            "KEYBRAKE_MIGRATIONS_DIR": str(ROOT / "Migrations"),
            "KEYBRAKE_LISTEN_DATABASE_URL": self.write_url,
        })
        # Migrations straight to the leader (they hold a session-level advisory lock: not through PgBouncer).
        subprocess.run([BIN, "migrate", "--wait", "60"], env={**base, "DATABASE_URL": self.write_url}, check=True,
                       capture_output=True, timeout=120)
        base["KEYBRAKE_READ_DATABASE_URL"] = f"postgres://postgres@127.0.0.1:{READ_PORT}/{HA_DB}"
        envs = [{**base, "DATABASE_URL": self.bouncer_url, "KEYBRAKE_DB_PREPARED_STATEMENTS": "off"},
                {**base, "DATABASE_URL": self.write_url}]
        for i, env in enumerate(envs):
            port = self.free_port()
            proc = self.spawn(f"ha-keybrake-{i + 1}", [BIN, "serve", "--port", port, "--no-migrate"], env=env)
            self.replicas.append(Replica(f"replica{i + 1}", port, proc))
        for r in self.replicas:
            self.wait_ready(r)

    @staticmethod
    def free_port() -> int:
        from conftest import free_port
        return free_port()


@pytest.fixture(scope="module")
def ha_stack():
    if not BIN.exists():
        pytest.exit(f"{BIN} is missing: run `swift build --product keybrake`", returncode=2)
    install = subprocess.run([ROOT / "scripts" / "install-deps.sh", "patroni", "etcd-server", "haproxy", "pgbouncer"],
                             capture_output=True, text=True)
    missing = [b for b in ("patroni", "etcd", "haproxy", "pgbouncer") if shutil.which(b) is None]
    if install.returncode != 0 or missing:
        pytest.skip(f"the HA packages cannot be installed here (Debian's patroni, etcd-server, haproxy, pgbouncer; "
                    f"missing: {missing or 'none'}): {install.stderr.strip()[-300:]}")
    ha("down", "--clean")
    s = HAStack()
    try:
        t0 = time.monotonic()
        ha("up")
        print(f"failover: HA stack up in {time.monotonic() - t0:.1f} s ({'MUTATION: async, held standby' if MUTATION else 'synchronous'})")
        s.start_localstripe()
        s.start_chaos()
        s.start_fakes()
        s.start_ha_replicas()
        s.sign_up()
        yield s
    finally:
        s.stop_all()
        ha("down", check=False)  # its logs stay in .keybrake/ha-e2e/ until the next run


def card(s: HAStack) -> str:
    r = requests.post(s.localstripe_url + "/v1/payment_methods", auth=(s.stripe_secret, ""),
                      data={"type": "card", "card[number]": "4242424242424242", "card[exp_month]": "12",
                            "card[exp_year]": "2034", "card[cvc]": "123"}, timeout=30)
    r.raise_for_status()
    return r.json()["id"]


class Traffic:
    """32 agents, each charging with a fresh Idempotency-Key and retrying it (other replica) until a definitive answer."""

    def __init__(self, s: HAStack, keys: dict, tag: str, pm: str):
        self.s, self.keys, self.tag, self.pm = s, keys, tag, pm
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.events: list[tuple[float, float, int, int, str]] = []  # (sent, done, replica, status, error code)
        self.acknowledged: set[str] = set()
        self.finals: list[tuple[str, str]] = []

    def agent(self, n: int):
        local = random.Random(n)
        i = 0
        while not self.stop.is_set():
            i += 1
            op = f"{self.tag}-a{n}-{i}"
            name = local.choice(list(self.keys))
            amount = local.choice([10, 20, 30])
            replica = local.randrange(2)
            final, deadline = "gave_up", time.monotonic() + 60
            while time.monotonic() < deadline:
                sent = time.monotonic()
                try:
                    r = requests.post(self.s.replicas[replica].url + "/stripe/v1/charges", timeout=15, headers={
                        "Authorization": f"Bearer {self.keys[name].token}", "Idempotency-Key": op},
                        data={"amount": amount, "currency": "usd", "source": self.pm, "description": f"{self.tag} {op}",
                              "metadata[key]": name})
                except requests.RequestException:
                    replica = 1 - replica
                    time.sleep(0.1)
                    continue
                code = r.headers.get("Keybrake-Error-Code") or ""
                with self.lock:
                    self.events.append((sent, time.monotonic(), replica, r.status_code, code))
                if r.status_code < 300:
                    with self.lock:
                        self.acknowledged.add(op)
                    final = "ok"
                    break
                if code == "outcome_unknown":
                    final = "unknown"
                    break
                if r.status_code >= 500 or r.status_code == 409:
                    replica = 1 - replica
                    time.sleep(0.1)
                    continue
                final = f"denied:{code or r.status_code}"
                break
            with self.lock:
                self.finals.append((op, final))

    def first_ok_after(self, t: float, replica: int | None = None) -> float | None:
        with self.lock:
            done = [d for (sent, d, rep, status, _) in self.events
                    if sent >= t and status < 300 and (replica is None or rep == replica)]
        return min(done, default=None)

    def failed_closed(self, start: float, end: float) -> int:
        with self.lock:
            return sum(1 for (_, d, _, status, code) in self.events if start <= d <= end and status == 503)


def wait_new_leader(old: str, timeout: float = 60) -> float:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        leader = ha("leader", check=False)
        if leader and leader != old:
            return time.monotonic()
        time.sleep(0.1)
    raise AssertionError(f"no new leader within {timeout} s")


def measure(traffic: Traffic, what: str, t_event: float, t_leader: float) -> float:
    try:
        wait_until(lambda: all(traffic.first_ok_after(t_leader, i) is not None for i in (0, 1)), 30,
                   f"both replicas serving after the {what}")
    except RuntimeError:
        with traffic.lock:
            seen = Counter((rep, status, code) for (sent, _, rep, status, code) in traffic.events if sent >= t_leader)
        raise AssertionError(f"{what}: a replica answered no 2xx in 30 s after the new leader; answers since: {dict(seen)}")
    first = traffic.first_ok_after(t_event)
    per_replica = [traffic.first_ok_after(t_leader, i) - t_leader for i in (0, 1)]
    # The longest stretch with no 2xx at all (a switchover lets requests finish on the old leader until it steps down).
    with traffic.lock:
        oks = sorted(d for (_, d, _, status, _) in traffic.events if status < 300 and t_event - 1 <= d <= t_leader + 5)
    gap, gap_end = max(((b - a, b) for a, b in zip(oks, oks[1:])), default=(0.0, first))
    failed = traffic.failed_closed(gap_end - gap, gap_end)
    print(f"failover: {what}: first 200 sent after it {first - t_event:.2f} s; longest stretch with no 2xx {gap:.2f} s, "
          f"{failed} requests failed closed in it; new leader after {t_leader - t_event:.2f} s; replicas serving "
          f"{per_replica[0]:.2f} s / {per_replica[1]:.2f} s after it")
    assert max(per_replica) <= 10, f"{what}: a replica did not serve within 10 s of the new leader: {per_replica}"
    return first - t_event


def test_leader_killed_then_switched_over_loses_nothing_acknowledged(ha_stack, tag):
    s = ha_stack
    caps = {"a": 4, "b": 2000, "c": 2000}  # a reaches its cap early; b and c take charges all along
    keys = {name: s.new_key("stripe", ["charges.create"], daily_usd_cap=cap, label=f"ha-{name}") for name, cap in caps.items()}
    traffic = Traffic(s, keys, tag, card(s))
    agents = [threading.Thread(target=traffic.agent, args=(n,)) for n in range(AGENTS)]
    for t in agents:
        t.start()
    try:
        time.sleep(4)
        if MUTATION:
            ha("hold-standby", "on")
            time.sleep(4)
        old = ha("leader")
        t_kill = time.monotonic()
        ha("kill-primary")
        if MUTATION:
            ha("hold-standby", "drop")
        measure(traffic, "kill -9 of the leader", t_kill, wait_new_leader(old))
        # No standby now (the killed node is away): audit reads come from the primary, on both replicas.
        for i in (0, 1):
            r = s.admin("GET", "/v1/audit?limit=5", replica=i)
            assert r.status_code == 200 and r.headers.get("Keybrake-Read-From") == "primary", (i, r.status_code, dict(r.headers))
        time.sleep(1)
        if not MUTATION:  # (the mutation's diverged old leader has no sync standby to switch over to)
            ha("up")  # the killed node rejoins as the synchronous standby
            old = ha("leader")
            t_switch = time.monotonic()
            ha("failover")
            measure(traffic, "switchover", t_switch, wait_new_leader(old))
            # The old leader is the standby now: audit reads come from it again, with their lag.
            for i in (0, 1):
                wait_until(lambda: s.admin("GET", "/v1/audit?limit=5", replica=i).headers.get("Keybrake-Read-From") == "standby",
                           15, f"replica {i + 1} reading from the standby")
            lag = s.admin("GET", "/v1/audit?limit=5").headers.get("Keybrake-Read-Lag")
            print(f"failover: audit read from the standby, Keybrake-Read-Lag: {lag}")
            assert lag is not None and float(lag) >= 0
            for path in ("/v1/spend", "/v1/usage"):
                assert s.admin("GET", path).headers.get("Keybrake-Read-From") == "standby", path
            assert s.admin("GET", "/v1/keys").headers.get("Keybrake-Read-From") == "primary", "key lists never read the standby"
        time.sleep(2)
    finally:
        traffic.stop.set()
        for t in agents:
            t.join(90)
    time.sleep(LEASE_SECONDS + 6)  # leases of requests cut off by the kill have run out and been swept

    finals = Counter(f for _, f in traffic.finals)
    print(f"failover: {len(traffic.finals)} charges, {dict(finals)}")
    assert not [op for op, f in traffic.finals if f == "gave_up"]

    charges = s.charges(tag)
    per_op = Counter(c["description"].split(" ", 1)[1] for c in charges)
    assert max(per_op.values(), default=0) <= 1, f"executed twice: {[op for op, n in per_op.items() if n > 1][:5]}"
    moved = Counter()
    for c in charges:
        moved[c["metadata"]["key"]] += c["amount"] * 10_000
    for name, cap in caps.items():
        assert moved[name] <= cap * 1_000_000, f"key {name}: {moved[name]} moved past its ${cap} cap"
    assert moved["a"] > 3_000_000, "key a's cap was never approached: the cap check above proved nothing"

    rows = {name: s.audit(key.id) for name, key in keys.items()}
    allowed = {r["idempotency_key"] for name in keys for r in rows[name] if r["decision"] == "allowed" and r["idempotency_key"]}
    lost = traffic.acknowledged - allowed
    assert not lost, f"{len(lost)} reservations acknowledged to agents (2xx) are missing from the new primary: {sorted(lost)[:5]}"
    for name in keys:
        audited = {r["idempotency_key"] for r in rows[name] if r["idempotency_key"]}
        ops_moved = {c["description"].split(" ", 1)[1] for c in charges if c["metadata"]["key"] == name}
        assert ops_moved <= audited, f"charges with no audit row: {sorted(ops_moved - audited)[:5]}"

    for name, key in keys.items():
        listed = s.admin("GET", f"/v1/audit?key_id={key.id}&outcome=outcome_unknown&limit=500").json()["data"]
        for row in listed:
            target = row.get("resolves") or row["id"]
            if s.sql(f"SELECT state FROM reservations WHERE id = '{target}'") != ["unknown"]:
                continue
            op = s.sql(f"SELECT upstream_key FROM idempotency_records WHERE reservation_id = '{target}' LIMIT 1")
            executed = bool(op) and per_op.get(op[0], 0) == 1
            amount = next((c["amount"] for c in charges if c["description"].endswith(op[0])), 0) / 100 if executed else None
            r = s.admin("POST", f"/v1/audit/{row['id']}/resolve",
                        {"outcome": "settled", "amount_usd": amount} if executed else {"outcome": "released"})
            assert r.status_code == 201, r.text
        ledger = s.ledger(key.id)
        print(f"failover: key {name}: ${moved[name] / 1e6:.2f} moved of ${caps[name]}, {len(listed)} unknown outcomes resolved")
        assert ledger["reserved"] == 0 and ledger["unknown"] == 0, (name, ledger)
        assert ledger["settled"] == moved[name], f"key {name}: ledger {ledger['settled']} != moved {moved[name]}"
