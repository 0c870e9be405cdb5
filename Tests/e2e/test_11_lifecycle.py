"""Scenario 11: operable while the database is down (docs/operations.md).

Each case runs a fresh `keybrake serve` (or `keybrake migrate`) against a Postgres of its own that the test stops and
starts (.keybrake/lifecycle-pg, port 24351 unless KEYBRAKE_LIFECYCLE_PG_PORT says otherwise), so nothing here
touches the shared stack of the other scenarios.

    1. SIGTERM with the database down after serving: exit 0 within 15 s; a second signal during a drain: within 3 s.
       The same with the network to Postgres cut (nothing answers, nothing closes): waits nothing can cut short.
    2. Started with the database down: /health 200 at once, /ready 503 database_unreachable, proxied and admin calls
       503 `unavailable`; /ready 200 within 5 s of the database coming back.
    3. `migrate` with the database down: a non-zero exit within 30 s naming the address and the cause.
    4. A replica started before the schema exists says so once, waits quietly, and is ready soon after `migrate`.

Measured times are printed (pytest -s shows them) and asserted against the bounds above.
"""
from __future__ import annotations

import http.server
import json
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path

import pytest
import requests

from conftest import BIN, LOGS, ROOT, Proc, free_port

PG_DIR = ROOT / ".keybrake" / "lifecycle-pg"
PG_PORT = int(os.environ.get("KEYBRAKE_LIFECYCLE_PG_PORT", "24351"))
PG_BIN = os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin")
ADDRESS = f"127.0.0.1:{PG_PORT}"


class Postgres:
    """A throwaway cluster the tests stop and start."""

    def start(self):
        subprocess.run([ROOT / "scripts" / "postgres.sh", "start", PG_DIR, str(PG_PORT)], check=True)

    def stop(self):
        subprocess.run([ROOT / "scripts" / "postgres.sh", "stop", PG_DIR], check=True)

    def fresh_database(self, name: str) -> str:
        subprocess.run([ROOT / "scripts" / "postgres.sh", "createdb", str(PG_PORT), name, "--fresh"], check=True)
        return f"postgres://postgres@{ADDRESS}/{name}"


@pytest.fixture(scope="module")
def pg():
    if not BIN.exists():
        pytest.exit(f"{BIN} is missing: run `swift build --product keybrake`", returncode=2)
    p = Postgres()
    p.start()
    try:
        yield p
    finally:
        p.stop()


def environment(db_url: str) -> dict:
    master_key = subprocess.run([BIN, "generate-master-key", "--id", "life"], check=True, capture_output=True,
                                text=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEYBRAKE_") and k != "DATABASE_URL"}
    env.update({
        "DATABASE_URL": db_url,
        "KEYBRAKE_MASTER_KEYS": master_key,
        "KEYBRAKE_MIGRATIONS_DIR": str(ROOT / "Migrations"),
        # The default upstream timeout (30 s) keeps the drain's bound at 40 s: an exit within 15 s means nothing hung.
        "KEYBRAKE_SIGNUPS_PER_MINUTE": "1000",
    })
    return env


class Server:
    """One `keybrake serve` process on a port of its own."""

    def __init__(self, name: str, db_url: str, *args: str, env: dict | None = None):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc = Proc(f"lifecycle-{name}", [BIN, "serve", "--port", self.port, *args],
                         env={**environment(db_url), **(env or {})})
        self.started = time.monotonic()

    def get(self, path: str, **kw) -> requests.Response:
        return requests.get(self.url + path, timeout=5, **kw)

    def wait(self, check, timeout: float, what: str) -> float:
        """Seconds until `check()` held (failing after `timeout`)."""
        start = time.monotonic()
        last = None
        while time.monotonic() - start < timeout:
            assert self.proc.alive(), f"the server exited:\n{self.proc.tail()}"
            try:
                if check():
                    return time.monotonic() - start
            except requests.RequestException as e:
                last = e
            time.sleep(0.05)
        raise AssertionError(f"timed out after {timeout}s waiting for {what} (last error: {last!r})\n{self.proc.tail()}")

    def ready(self) -> bool:
        return self.get("/ready").status_code == 200

    def signal(self, sig: int):
        os.kill(self.proc.pid, sig)

    def exit_within(self, seconds: float) -> tuple[int, float]:
        """Waits for the process to exit; returns its exit code and how long it took."""
        start = time.monotonic()
        try:
            code = self.proc.popen.wait(seconds)
        except subprocess.TimeoutExpired:
            tail = self.proc.tail()
            self.proc.kill()
            raise AssertionError(f"still running {seconds}s after the signal:\n{tail}")
        return code, time.monotonic() - start

    def log(self) -> str:
        return self.proc.log_path.read_text(errors="replace").split("==== ")[-1]

    def close(self):
        if self.proc.alive():
            self.proc.kill()
        self.proc.log.close()


@pytest.fixture
def servers():
    started: list[Server] = []
    yield started
    for s in started:
        s.close()


def serve(servers, name, db_url, *args, env: dict | None = None) -> Server:
    s = Server(name, db_url, *args, env=env)
    servers.append(s)
    return s


def sign_up(server: Server) -> str:
    """Signs a tenant up; returns its admin token."""
    r = requests.post(server.url + "/v1/tenants", json={"name": "Lifecycle", "email": "ops@life.test"}, timeout=10)
    assert r.status_code == 201, r.text
    return r.json()["admin_token"]


class HeldStripe:
    """Stripe's charge endpoint, answering only when the test lets it: a request is upstream for as long as the
    test wants (`arrived` is set when it is)."""

    def __init__(self):
        self.arrived, self.answer = threading.Event(), threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                outer.arrived.set()
                outer.answer.wait(30)
                body = json.dumps({"id": "ch_held", "object": "charge", "amount": 100, "currency": "usd"}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.answer.set()
        self.server.shutdown()
        self.server.server_close()


def hold_a_request_open(server: Server) -> socket.socket:
    """A request whose body never finishes arriving: it stays in flight, so a graceful drain waits for it."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=5)
    sock.sendall(b"POST /v1/tenants HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 400\r\n\r\n{")
    return sock


# ---- 1. stopping ------------------------------------------------------------------------------------------------

def test_sigterm_with_the_database_down_after_serving_exits_0_within_15s(pg, servers):
    db = pg.fresh_database("keybrake_life1")
    server = serve(servers, "sigterm", db)
    server.wait(server.ready, 30, "/ready 200")
    sign_up(server)  # pool connections, the key-change listener and a lease: all in use
    pg.stop()
    try:
        server.wait(lambda: server.get("/ready").status_code == 503, 10, "/ready 503 once Postgres is gone")
        time.sleep(1)  # the listener has noticed and is retrying
        server.signal(signal.SIGTERM)
        code, took = server.exit_within(15)
        print(f"\nSIGTERM with the database down: exit {code} after {took:.2f}s")
        assert code == 0, server.log()
        lost = [l for l in server.log().splitlines() if "warning" in l and "key-change listener lost" in l]
        assert len(lost) == 1, lost  # said once, then retried quietly
    finally:
        pg.start()


class Partition:
    """A TCP relay in front of Postgres that can cut the network without closing anything, as when a host or a link
    dies: after `cut()` the bytes in either direction are dropped, and new connections are accepted and left silent
    (no RST, no FIN). A query on the wire then never answers, and a connection attempt lasts its whole connect
    timeout: waits that nothing can cut short from inside the replica."""

    def __init__(self, target_port: int):
        self.target = ("127.0.0.1", target_port)
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.is_cut = threading.Event()
        self.sockets: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, database: str) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{database}"

    def cut(self):
        self.is_cut.set()

    def _accept(self):
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            self.sockets.append(client)
            if self.is_cut.is_set():
                continue  # accepted, never answered
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            self.sockets.append(upstream)
            threading.Thread(target=self._pump, args=(client, upstream), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket):
        try:
            while data := source.recv(65536):
                if not self.is_cut.is_set():
                    sink.sendall(data)
        except OSError:
            pass

    def close(self):
        self.listener.close()
        for sock in self.sockets:
            try:
                sock.close()
            except OSError:
                pass


@pytest.fixture
def partition(pg):
    relay = Partition(PG_PORT)
    yield relay
    relay.close()


def test_sigterm_after_the_network_to_postgres_is_cut_exits_0_within_15s(pg, servers, partition):
    pg.fresh_database("keybrake_life1c")
    server = serve(servers, "partition-sigterm", partition.url("keybrake_life1c"))
    server.wait(server.ready, 30, "/ready 200")
    sign_up(server)  # pool connections, the key-change listener and a lease: all open through the relay
    partition.cut()
    time.sleep(1)
    server.signal(signal.SIGTERM)
    code, took = server.exit_within(15)
    print(f"\nSIGTERM with the network to Postgres cut: exit {code} after {took:.2f}s")
    assert code == 0, server.log()


class Outage:
    """Postgres goes away as `how` says: `stopped` (every connection attempt refused at once) or `cut` (the network,
    through a `Partition`: nothing answers, nothing fails)."""

    def __init__(self, pg, how: str, database: str):
        pg.fresh_database(database)
        self.pg = pg
        self.relay = Partition(PG_PORT) if how == "cut" else None
        self.url = self.relay.url(database) if self.relay else f"postgres://postgres@{ADDRESS}/{database}"

    def begin(self):
        if self.relay:
            self.relay.cut()
        else:
            self.pg.stop()

    def end(self):
        if self.relay:
            self.relay.close()
        else:
            self.pg.start()


@pytest.mark.parametrize("second", [signal.SIGTERM, signal.SIGINT], ids=["sigterm", "sigint"])
@pytest.mark.parametrize("how", ["stopped", "cut"])
def test_a_second_signal_during_the_drain_exits_within_3s(pg, servers, how, second):
    outage = Outage(pg, how, "keybrake_life1b")
    server = serve(servers, f"second-signal-{how}", outage.url)
    server.wait(server.ready, 30, "/ready 200")
    held = hold_a_request_open(server)
    outage.begin()
    try:
        time.sleep(0.3)
        server.signal(signal.SIGTERM)
        time.sleep(1.5)
        assert server.proc.alive(), "the drain waits for the request in flight"
        server.signal(second)
        code, took = server.exit_within(3)
        print(f"\nsecond signal ({signal.Signals(second).name}) during the drain, Postgres {how}: exit {code} after {took:.2f}s")
        assert code == 128 + second, server.log()
    finally:
        held.close()
        outage.end()


def test_a_settlement_sent_into_a_cut_network_does_not_hold_the_agent_past_the_deadline(pg, servers, partition):
    """The vendor answers after the network to Postgres was cut: the settle statement is sent into the cut and never
    answers. The agent still gets the vendor's answer, once the database deadline has passed (not when the connection
    finally fails); the attempts go on detached, and the amount stays counted meanwhile, left to the request's lease
    if they never land. A drain then has nothing to wait for. (Without the deadline: 7 s and counting.)"""
    pg.fresh_database("keybrake_life1e")
    stripe = HeldStripe()
    deadline_s = 2.0
    try:
        server = serve(servers, "partition-settle", partition.url("keybrake_life1e"),
                       env={"KEYBRAKE_UPSTREAM_STRIPE": stripe.url, "KEYBRAKE_DB_DEADLINE_MS": str(int(deadline_s * 1000))})
        server.wait(server.ready, 30, "/ready 200")
        admin = {"Authorization": f"Bearer {sign_up(server)}"}
        r = requests.put(server.url + "/v1/vendors/stripe/credentials", json={"secret_key": "sk_test_held"}, headers=admin, timeout=10)
        assert r.status_code == 200, r.text
        r = requests.post(server.url + "/v1/keys", json={"vendor": "stripe", "label": "held", "allowed_endpoints": ["POST /v1/charges"],
                                                         "daily_usd_cap": "10"}, headers=admin, timeout=10)
        assert r.status_code == 201, r.text
        token = r.json()["token"]
        answered = {}

        def charge_once():
            try:
                a = requests.post(server.url + "/stripe/v1/charges", data={"amount": "100", "currency": "usd"},
                                  headers={"Authorization": f"Bearer {token}"}, timeout=60)
                answered.update(status=a.status_code, body=a.text, at=time.monotonic())
            except requests.RequestException as e:
                answered.update(error=repr(e), at=time.monotonic())
        charge = threading.Thread(target=charge_once, daemon=True)
        charge.start()
        assert stripe.arrived.wait(10), f"the charge never reached the vendor:\n{server.proc.tail()}"
        partition.cut()
        vendor_answered = time.monotonic()
        stripe.answer.set()  # the vendor answers; the settle statement goes into the cut
        charge.join(deadline_s + 5)
        took = answered.get("at", time.monotonic()) - vendor_answered
        print(f"\nsettle statement in a cut network: the agent had the vendor's answer {took:.2f}s after it "
              f"(deadline {deadline_s:.1f}s)")
        assert answered.get("status") == 200 and "ch_held" in answered.get("body", ""), (answered, server.log())
        assert took < deadline_s + 1.5, f"answered {took:.2f}s after the vendor: {server.log()}"
        assert "not recorded within the database deadline" in server.log(), server.log()
        # Still counted: the reservation is held (the settle never landed), so the cap counts it until the lease
        # turns it into an unknown outcome. Read past the relay.
        held = subprocess.run(["psql", "-qtAX", "-h", "127.0.0.1", "-p", str(PG_PORT), "-U", "postgres", "-d", "keybrake_life1e",
                               "-c", "SELECT state, amount_micros FROM reservations"], capture_output=True, text=True, check=True).stdout.split()
        assert held == ["held|1000000"], held
    finally:
        stripe.close()


# ---- 2. starting without a database -----------------------------------------------------------------------------

def test_started_with_the_database_down_it_is_live_not_ready_and_fails_closed(pg, servers):
    db = pg.fresh_database("keybrake_life2")
    pg.stop()
    try:
        server = serve(servers, "no-db", db)
        took = server.wait(lambda: server.get("/health").status_code == 200, 5, "/health 200")
        print(f"\n/health 200 after {took:.2f}s with the database down")

        ready = server.get("/ready")
        assert ready.status_code == 503, ready.text
        assert ready.json()["reason"] == "database_unreachable", ready.text
        assert ADDRESS in ready.json()["message"] and "refused" in ready.json()["message"], ready.text

        proxied = requests.post(server.url + "/stripe/v1/charges", data={"amount": "100", "currency": "usd"},
                                headers={"Authorization": "Bearer kb_vault_x_y"}, timeout=5)
        assert proxied.status_code == 503, proxied.text
        assert proxied.headers["Keybrake-Error-Code"] == "unavailable"
        assert proxied.json()["error"]["code"] == "unavailable", proxied.text  # Stripe's own envelope
        admin = requests.post(server.url + "/v1/tenants", json={"name": "x", "email": "x@life.test"}, timeout=5)
        assert admin.status_code == 503 and admin.headers["Keybrake-Error-Code"] == "unavailable", admin.text

        time.sleep(2)  # several attempts: still one line about it
        lines = [l for l in server.log().splitlines() if f"cannot connect to the database at {ADDRESS}" in l]
        assert len(lines) == 1, lines
        assert "connection refused" in lines[0]
    finally:
        pg.start()
    back = server.wait(server.ready, 5, "/ready 200 after Postgres came back")
    print(f"/ready 200 {back:.2f}s after Postgres came back")
    sign_up(server)


def test_sigterm_while_waiting_for_the_database_exits_0_at_once(pg, servers):
    db = pg.fresh_database("keybrake_life2b")
    pg.stop()
    try:
        server = serve(servers, "no-db-stop", db)
        server.wait(lambda: server.get("/health").status_code == 200, 5, "/health 200")
        server.signal(signal.SIGTERM)
        code, took = server.exit_within(5)
        print(f"\nSIGTERM before the database was ever reached: exit {code} after {took:.2f}s")
        assert code == 0, server.log()
    finally:
        pg.start()


# ---- 3. migrate -------------------------------------------------------------------------------------------------

def run_migrate(db_url: str, *args: str, timeout: float = 30) -> tuple[subprocess.CompletedProcess, float]:
    start = time.monotonic()
    out = subprocess.run([BIN, "migrate", *args], env=environment(db_url), capture_output=True, text=True, timeout=timeout)
    return out, time.monotonic() - start


def test_migrate_with_the_database_down_fails_fast_naming_the_address(pg):
    db = pg.fresh_database("keybrake_life3")
    pg.stop()
    try:
        out, took = run_migrate(db)
        print(f"\nmigrate, database down: exit {out.returncode} after {took:.2f}s: {out.stderr.strip()}")
        assert out.returncode == 69, out
        assert took < 30
        assert out.stderr.strip().count("\n") == 0, "one line"
        assert f"cannot connect to the database at {ADDRESS}: connection refused" in out.stderr

        out, took = run_migrate(db, "--wait", "2")
        print(f"migrate --wait 2, database down: exit {out.returncode} after {took:.2f}s")
        assert out.returncode == 69 and 1.5 <= took < 10, (took, out)
    finally:
        pg.start()
    out, _ = run_migrate(db)
    assert out.returncode == 0, out


def test_migrate_wait_succeeds_once_the_database_comes_up(pg):
    db = pg.fresh_database("keybrake_life3b")
    pg.stop()
    start = time.monotonic()
    migrate = subprocess.Popen([BIN, "migrate", "--wait", "30"], env=environment(db), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(2)
        assert migrate.poll() is None, "still waiting"
    finally:
        pg.start()
    up = time.monotonic()
    stdout, stderr = migrate.communicate(timeout=30)
    print(f"\nmigrate --wait: Postgres up {up - start:.2f}s after migrate started, migrations done {time.monotonic() - up:.2f}s later")
    assert migrate.returncode == 0, (stdout, stderr)
    assert "migrations: applied" in stdout
    assert stderr.count("waiting for the database") == 1, stderr


def test_migrate_names_an_unresolvable_host_and_a_missing_role(pg):
    out, took = run_migrate("postgres://postgres:s3cret-pw@no-such-host.invalid:5432/keybrake")
    print(f"\nmigrate, unresolvable host: exit {out.returncode} after {took:.2f}s: {out.stderr.strip()}")
    assert out.returncode == 69 and "no-such-host.invalid:5432" in out.stderr and "resolved" in out.stderr, out
    assert "s3cret-pw" not in out.stderr + out.stdout

    out, took = run_migrate(f"postgres://nobody:s3cret-pw@{ADDRESS}/keybrake_life3")
    print(f"migrate, unknown role: exit {out.returncode} after {took:.2f}s: {out.stderr.strip()}")
    assert out.returncode == 78 and ADDRESS in out.stderr and "authentication failed" in out.stderr, out
    assert "s3cret-pw" not in out.stderr + out.stdout


# ---- 4. no schema yet -------------------------------------------------------------------------------------------

def test_a_replica_started_before_the_schema_exists_says_so_once_then_serves_after_migrate(pg, servers):
    db = pg.fresh_database("keybrake_life4")
    server = serve(servers, "no-schema", db, "--no-migrate")
    server.wait(lambda: server.get("/ready").status_code == 503, 5, "/ready 503")
    ready = server.get("/ready").json()
    assert ready["reason"] == "schema_missing", ready
    time.sleep(3)  # several attempts
    log = server.log()
    assert log.count("no Keybrake schema yet") == 1, log
    assert "key-change listener lost" not in log, log

    out, _ = run_migrate(db)
    assert out.returncode == 0, out
    took = server.wait(server.ready, 5, "/ready 200 after migrate")
    print(f"\n/ready 200 {took:.2f}s after `migrate` finished")
    sign_up(server)
    assert "key-change listener lost" not in server.log()
