"""Session fixtures for the end-to-end suite: the official SDKs talk to two real `keybrake serve` processes.

    SDK ──▶ keybrake replica 1 ─┐                 ┌─▶ chaos proxy ──▶ localstripe   (Stripe)
    SDK ──▶ keybrake replica 2 ─┴─ one Postgres ──┼─▶ fake Twilio
                                                  └─▶ fake Resend

Everything listens on 127.0.0.1 and is stopped by PID at the end. Logs go to .keybrake/e2e-logs/.
"""
from __future__ import annotations

import json
import os
import random
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from fakes import FakeClient

E2E = Path(__file__).resolve().parent
ROOT = E2E.parents[1]
STATE = ROOT / ".keybrake"
PG_DIR = STATE / "e2e-pg"
PG_PORT = int(os.environ.get("KEYBRAKE_E2E_PG_PORT", "24331"))
PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
DB_NAME = "keybrake_e2e"
LOGS = STATE / "e2e-logs"
BIN = Path(os.environ.get("KEYBRAKE_BIN", str(ROOT / ".build" / "debug" / "keybrake")))
VENV_BIN = Path(sys.executable).parent
OPERATOR_TOKEN = "e2e-operator-" + secrets.token_hex(8)
# /metrics shows every tenant's traffic: the replicas serve it only behind this token (README "Configuration").
METRICS_TOKEN = "e2e-metrics-" + secrets.token_hex(8)
UPSTREAM_TIMEOUT_MS = 4000
# A request's lease is the upstream timeout plus this margin: how long a killed replica's request can hold its
# records and reservation before any replica turns them into an unknown outcome (5 s here; 60 s by default).
LEASE_MARGIN_MS = 1000
LEASE_SECONDS = (UPSTREAM_TIMEOUT_MS + LEASE_MARGIN_MS) / 1000


_handed_out: set[int] = set()


def free_port() -> int:
    """A port nobody listens on, below Linux's ephemeral range (32768-60999). A port in that range can become the
    local end of any client connection on the machine between this call and the server's bind, or before a
    Postgres restarts on it; that blocks a listener's bind (even with SO_REUSEADDR) while the connection and its
    TIME_WAIT last. The suite's fixed ports (243xx) are below the range for the same reason."""
    for _ in range(500):
        port = random.randrange(25000, 32000)
        if port in _handed_out:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
        _handed_out.add(port)
        return port
    raise RuntimeError("no free port in 25000-31999")


def wait_until(check, timeout: float, what: str, interval: float = 0.1):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        try:
            if check():
                return
        except Exception as e:  # noqa: BLE001 - anything means "not yet"
            last = e
        time.sleep(interval)
    raise RuntimeError(f"timed out after {timeout}s waiting for {what} (last error: {last!r})")


class Proc:
    """A child process with its own log file and session, stopped by PID."""

    def __init__(self, name: str, argv: list[str], env: dict | None = None, cwd: Path = ROOT):
        LOGS.mkdir(parents=True, exist_ok=True)
        self.name = name
        self.log_path = LOGS / f"{name}.log"
        self.log = open(self.log_path, "ab")
        self.log.write(f"\n==== {time.strftime('%H:%M:%S')} start {' '.join(map(str, argv))}\n".encode())
        self.log.flush()
        self.popen = subprocess.Popen([str(a) for a in argv], env=env, cwd=str(cwd), stdout=self.log,
                                      stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        self.pid = self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def kill(self):
        """SIGKILL: the process dies in the middle of whatever it was doing."""
        if self.alive():
            os.kill(self.pid, signal.SIGKILL)
        self.popen.wait(10)

    def stop(self, grace: float = 10):
        if self.alive():
            os.kill(self.pid, signal.SIGTERM)
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                os.kill(self.pid, signal.SIGKILL)
                self.popen.wait(10)
        self.log.close()

    def tail(self, n: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""


@dataclass
class Key:
    id: str
    token: str
    vendor: str


@dataclass
class Replica:
    name: str
    port: int
    proc: Proc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"


class Stack:
    """Everything a test needs: replicas, fakes, the tenant, and direct reads of Postgres and localstripe."""

    def __init__(self):
        self.procs: list[Proc] = []
        self.pg_port = PG_PORT
        self.db_url = f"postgres://postgres@127.0.0.1:{PG_PORT}/{DB_NAME}"
        self.stripe_secret = "sk_test_e2e_" + secrets.token_hex(12)
        self.twilio_sid = "AC" + secrets.token_hex(16)
        self.twilio_token = secrets.token_hex(16)
        self.resend_key = "re_e2e_" + secrets.token_hex(12)
        self.replicas: list[Replica] = []
        self.http = requests.Session()

    # ---- processes ------------------------------------------------------------------------------------------

    def spawn(self, name, argv, env=None, cwd=ROOT) -> Proc:
        proc = Proc(name, argv, env, cwd)
        self.procs.append(proc)
        return proc

    def start_postgres(self):
        subprocess.run([ROOT / "scripts" / "postgres.sh", "start", PG_DIR, str(PG_PORT)], check=True)

    def stop_postgres(self):
        subprocess.run([ROOT / "scripts" / "postgres.sh", "stop", PG_DIR], check=True)

    def start_localstripe(self):
        self.localstripe_port = free_port()
        self.localstripe_url = f"http://127.0.0.1:{self.localstripe_port}"
        self.localstripe = self.spawn("localstripe", [VENV_BIN / "localstripe", "--port", self.localstripe_port, "--from-scratch"])
        wait_until(lambda: requests.get(self.localstripe_url + "/v1/customers?limit=1", auth=(self.stripe_secret, ""),
                                        timeout=2).status_code == 200, 30, "localstripe")

    def start_chaos(self, port: int | None = None):
        self.chaos_port = port or free_port()
        self.chaos_proc = self.spawn("chaos", [sys.executable, E2E / "fakes.py", "chaos", "--port", self.chaos_port,
                                               "--target", self.localstripe_url])
        self.chaos = FakeClient(f"http://127.0.0.1:{self.chaos_port}")
        wait_until(lambda: self.chaos.requests() is not None, 15, "chaos proxy")

    def restart_chaos(self):
        """Starts the Stripe-side fake again on the same port (after a test killed it)."""
        self.procs.remove(self.chaos_proc)
        self.chaos_proc.stop()
        self.start_chaos(self.chaos_port)

    def start_fakes(self):
        self.twilio_port, self.resend_port = free_port(), free_port()
        self.spawn("fake-twilio", [sys.executable, E2E / "fakes.py", "twilio", "--port", self.twilio_port,
                                   "--account-sid", self.twilio_sid, "--auth-token", self.twilio_token])
        self.spawn("fake-resend", [sys.executable, E2E / "fakes.py", "resend", "--port", self.resend_port,
                                   "--api-key", self.resend_key])
        self.twilio = FakeClient(f"http://127.0.0.1:{self.twilio_port}")
        self.resend = FakeClient(f"http://127.0.0.1:{self.resend_port}")
        wait_until(lambda: self.twilio.requests() is not None and self.resend.requests() is not None, 15, "fake vendors")

    def start_replicas(self, count: int = 2):
        master_key = subprocess.run([BIN, "generate-master-key", "--id", "e2e"], check=True, capture_output=True,
                                    text=True).stdout.strip()
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEYBRAKE_") and k != "DATABASE_URL"}
        env.update({
            "DATABASE_URL": self.db_url,
            "KEYBRAKE_MASTER_KEYS": master_key,
            "KEYBRAKE_UPSTREAM_STRIPE": f"http://127.0.0.1:{self.chaos_port}",
            "KEYBRAKE_UPSTREAM_TWILIO": f"http://127.0.0.1:{self.twilio_port}",
            "KEYBRAKE_UPSTREAM_RESEND": f"http://127.0.0.1:{self.resend_port}",
            "KEYBRAKE_OPERATOR_TOKEN": OPERATOR_TOKEN,
            "KEYBRAKE_METRICS_TOKEN": METRICS_TOKEN,
            # The tests are a load balancer's clients: X-Forwarded-For from loopback names the client address that
            # per-client limits count (test_11 plays a stranger at another address).
            "KEYBRAKE_TRUSTED_PROXIES": "127.0.0.1,::1",
            "KEYBRAKE_SIGNUPS_PER_MINUTE": "1000",
            "KEYBRAKE_KEY_CREATIONS_PER_MINUTE": "1000",
            "KEYBRAKE_UPSTREAM_TIMEOUT_MS": str(UPSTREAM_TIMEOUT_MS),
            "KEYBRAKE_LEASE_MARGIN_MS": str(LEASE_MARGIN_MS),
            "KEYBRAKE_MIGRATIONS_DIR": str(ROOT / "Migrations"),
            # Budget alerts (test_13): the receiver listens on 127.0.0.1; due deliveries are looked for every 200 ms,
            # and a killed replica's delivery is due again 2 s + 5 s after it was taken.
            "KEYBRAKE_WEBHOOK_ALLOW_PRIVATE": "true",
            "KEYBRAKE_WEBHOOK_POLL_MS": "200",
            "KEYBRAKE_WEBHOOK_TIMEOUT_MS": "2000",
        })
        self.replica_env = env
        for i in range(count):  # started together: migrations are advisory-locked
            port = free_port()
            proc = self.spawn(f"keybrake-{i + 1}", [BIN, "serve", "--port", port], env=env)
            self.replicas.append(Replica(f"replica{i + 1}", port, proc))
        for r in self.replicas:
            self.wait_ready(r)

    def wait_ready(self, r: "Replica"):
        def ready():
            if not r.proc.alive():
                raise RuntimeError(f"{r.name} exited:\n{r.proc.tail()}")
            return requests.get(r.url + "/ready", timeout=2).status_code == 200
        wait_until(ready, 120, f"{r.name} /ready")

    def restart_replica(self, index: int):
        """Starts replica `index` again on its port (after a test killed or stopped it)."""
        r = self.replicas[index]
        if r.proc in self.procs:
            self.procs.remove(r.proc)
        if r.proc.alive():
            r.proc.stop()
        r.proc = self.spawn(f"keybrake-{index + 1}", [BIN, "serve", "--port", r.port], env=self.replica_env)
        self.wait_ready(r)

    def stop_all(self):
        for proc in reversed(self.procs):
            try:
                proc.stop()
            except Exception:  # noqa: BLE001 - keep stopping the rest
                pass
        self.procs.clear()

    # ---- admin API ------------------------------------------------------------------------------------------

    def admin(self, method: str, path: str, body=None, token: str | None = None, replica: int = 0) -> requests.Response:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return self.http.request(method, self.replicas[replica].url + path, json=body, headers=headers, timeout=30)

    def sign_up(self):
        r = self.http.post(self.replicas[0].url + "/v1/tenants", json={"name": "E2E Corp", "email": "ops@e2e.test"}, timeout=30)
        assert r.status_code == 201, r.text
        self.tenant_id = r.json()["tenant"]["id"]
        self.admin_token = r.json()["admin_token"]
        for vendor, creds in [("stripe", {"secret_key": self.stripe_secret}),
                              ("twilio", {"account_sid": self.twilio_sid, "auth_token": self.twilio_token}),
                              ("resend", {"api_key": self.resend_key})]:
            r = self.admin("PUT", f"/v1/vendors/{vendor}/credentials", creds)
            assert r.status_code == 200, r.text
        r = self.http.post(self.replicas[1].url + f"/v1/operator/tenants/{self.tenant_id}/plan", json={"plan": "pro"},
                           headers={"Authorization": f"Bearer {OPERATOR_TOKEN}"}, timeout=30)
        assert r.status_code == 200, r.text

    def new_key(self, vendor: str = "stripe", endpoints=("POST /v1/charges",), **policy) -> Key:
        body = {"vendor": vendor, "label": policy.pop("label", f"e2e-{vendor}-{uuid.uuid4().hex[:6]}"),
                "allowed_endpoints": list(endpoints), **policy}
        r = self.admin("POST", "/v1/keys", body)
        assert r.status_code == 201, r.text
        return Key(r.json()["key"]["id"], r.json()["token"], vendor)

    # ---- SDK clients, set up exactly as a user would -------------------------------------------------------------

    def stripe(self, token: str, replica: int = 0, **options):
        import stripe
        return stripe.StripeClient(token, base_addresses={"api": f"{self.replicas[replica].url}/stripe"}, **options)

    # ---- direct reads -------------------------------------------------------------------------------------------

    def sql(self, query: str) -> list[str]:
        out = subprocess.run(["psql", "-X", "-q", "-tA", "-h", "127.0.0.1", "-p", str(self.pg_port), "-U", "postgres",
                              "-d", DB_NAME, "-c", query], check=True, capture_output=True, text=True, timeout=30)
        return [line for line in out.stdout.splitlines() if line]

    def audit(self, key_id: str) -> list[dict]:
        """The key's audit rows. A call that moves no money gets its answer written into its row just after the agent
        got it (not awaited), so wait a moment for rows still marked in flight to be completed."""
        assert key_id.startswith("key_") and key_id.replace("_", "").isalnum()
        deadline = time.monotonic() + 2
        while True:
            rows = [json.loads(line) for line in self.sql(
                f"SELECT row_to_json(a) FROM audit_events a WHERE key_id = '{key_id}' ORDER BY created_at, id")]
            if time.monotonic() > deadline or not any(r["state"] == "in_flight" for r in rows):
                return rows
            time.sleep(0.05)

    def ledger(self, key_id: str, period: str = "day") -> dict:
        rows = self.sql(f"SELECT row_to_json(l) FROM spend_ledger l WHERE key_id = '{key_id}' AND period = '{period}' "
                        "ORDER BY period_start DESC LIMIT 1")
        row = json.loads(rows[0]) if rows else {}
        out = {k: int(row.get(f"{k}_micros") or 0) for k in ("settled", "reserved", "unknown")}
        # The counter the caps are checked against always equals the reservations' breakdown.
        assert int(row.get("counted_micros") or 0) == sum(out.values()), row
        return out

    def stripe_objects(self, kind: str = "charges") -> list[dict]:
        """Every object of a kind that exists at localstripe (asked directly, not through Keybrake)."""
        out, after = [], None
        while True:
            params = {"limit": 100, **({"starting_after": after} if after else {})}
            r = requests.get(f"{self.localstripe_url}/v1/{kind}", params=params, auth=(self.stripe_secret, ""), timeout=30)
            r.raise_for_status()
            page = r.json()
            out += page["data"]
            if not page["has_more"] or not page["data"]:
                return out
            after = page["data"][-1]["id"]

    def charges(self, tag: str) -> list[dict]:
        """Charges at localstripe whose description or metadata carries `tag`."""
        return [c for c in self.stripe_objects("charges")
                if tag in (c.get("description") or "") or tag in json.dumps(c.get("metadata") or {})]


def pytest_configure(config):
    # `timeout` (scripts/e2e.sh) and CI stop the run with SIGTERM: turn it into KeyboardInterrupt so that the
    # session teardown below still stops every process it started.
    def interrupt(signum, frame):
        raise KeyboardInterrupt(f"signal {signum}")
    signal.signal(signal.SIGTERM, interrupt)


@pytest.fixture(scope="session")
def stack():
    if not BIN.exists():
        pytest.exit(f"{BIN} is missing: run `swift build --product keybrake` (scripts/e2e.sh does)", returncode=2)
    shutil.rmtree(LOGS, ignore_errors=True)
    s = Stack()
    try:
        s.start_postgres()
        subprocess.run([ROOT / "scripts" / "postgres.sh", "createdb", str(PG_PORT), DB_NAME, "--fresh"], check=True)
        s.start_localstripe()
        s.start_chaos()
        s.start_fakes()
        s.start_replicas(2)
        s.sign_up()
        yield s
    finally:
        s.stop_all()
        s.stop_postgres()


@pytest.fixture
def tag() -> str:
    """A unique marker for this test's request bodies (the duplicate guard fingerprints bodies per tenant)."""
    return "e2e-" + uuid.uuid4().hex[:10]


@pytest.fixture(scope="session")
def card(stack) -> str:
    """A `pm_…` for the test card 4242… (localstripe has no tok_visa), created directly at localstripe."""
    r = requests.post(stack.localstripe_url + "/v1/payment_methods", auth=(stack.stripe_secret, ""),
                      data={"type": "card", "card[number]": "4242424242424242", "card[exp_month]": "12",
                            "card[exp_year]": "2034", "card[cvc]": "123"}, timeout=30)
    r.raise_for_status()
    return r.json()["id"]


@pytest.fixture(autouse=True)
def clean_faults(request):
    """No fault outlives its test."""
    yield
    if "stack" in request.fixturenames:
        s = request.getfixturevalue("stack")
        for fake in (s.chaos, s.twilio, s.resend):
            try:
                fake.faults()
            except Exception:  # noqa: BLE001 - a test may have killed it; it restarts it itself
                pass


def pytest_runtest_makereport(item, call):
    """On failure, show the tail of each replica's log (that is where a server-side error shows)."""
    if call.when == "call" and call.excinfo is not None and "stack" in item.fixturenames:
        s = item.funcargs.get("stack")
        if s:
            for r in s.replicas:
                item.add_report_section("call", f"{r.name} log", r.proc.tail(15))
