"""Scenario 13: budget alerts as signed webhooks, verified by the Standard Webhooks reference library.

A receiver (this process) checks every delivery with `standardwebhooks` — what a user would write — and fails the
first attempt of each event, so every event is also delivered by the retry 5 s later. The acceptance scenario: a $10
daily cap, $3 charges from 8 agents over two replicas → exactly one 50 % crossing, one 80 % crossing and one
cap-reached event, each delivered, verified, and none twice under its id. Then a replica is killed (SIGKILL) holding
a delivery in flight, and the other one delivers it when its lease runs out.
"""
from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import stripe
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from conftest import wait_until


class Receiver:
    """Verifies each POST with the endpoint's secret; answers 500 to the first attempt of each event id (or, with
    `hang`, holds the first attempt of those types for `hang_seconds`), 200 after."""

    def __init__(self):
        self.secret: str | None = None
        self.also: list[str] = []   # secrets that must verify every delivery too (a receiver not yet switched)
        self.lock = threading.Lock()
        self.attempts: dict[str, int] = {}
        self.delivered: dict[str, list[dict]] = {}   # event id -> payloads answered 200
        self.invalid: list[str] = []
        self.hang: set[str] = set()
        self.hang_seconds = 0.0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload = Webhook(receiver.secret).verify(body, headers)
                    for other in receiver.also:
                        Webhook(other).verify(body, headers)
                except WebhookVerificationError as e:
                    with receiver.lock:
                        receiver.invalid.append(f"{e}: {headers.get('webhook-id')}")
                    self.send_response(400)
                    self.end_headers()
                    return
                event_id = headers["webhook-id"]
                assert payload["id"] == event_id
                with receiver.lock:
                    n = receiver.attempts.get(event_id, 0) + 1
                    receiver.attempts[event_id] = n
                if n == 1 and payload["type"] in receiver.hang:
                    time.sleep(receiver.hang_seconds)
                if n == 1:
                    self.send_response(500)
                    self.end_headers()
                    return
                with receiver.lock:
                    receiver.delivered.setdefault(event_id, []).append(payload)
                self.send_response(200)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/keybrake"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def events(self, key_id: str, type_: str | None = None) -> list[dict]:
        with self.lock:
            return [p[0] for p in self.delivered.values() if p[0]["data"].get("key_id") == key_id
                    and (type_ is None or p[0]["type"] == type_)]

    def stop(self):
        self.server.shutdown()


@pytest.fixture
def receiver(stack):
    r = Receiver()
    created = stack.admin("POST", "/v1/webhook-endpoints", {
        "url": r.url, "events": ["key.spend.threshold_crossed", "key.cap.reached", "ping"], "description": "e2e receiver"})
    assert created.status_code == 201, created.text
    r.secret = created.json()["secret"]
    r.endpoint_id = created.json()["endpoint"]["id"]
    yield r
    stack.admin("DELETE", f"/v1/webhook-endpoints/{r.endpoint_id}")
    r.stop()


def test_acceptance_one_event_per_threshold_each_delivered_signed_and_retried(stack, tag, card, receiver):
    key = stack.new_key("stripe", ["charges.create"], daily_usd_cap=10, label="alerted-agent")
    clients = [stack.stripe(key.token, replica=r) for r in (0, 1)]
    barrier = threading.Barrier(8)

    def agent(i):
        barrier.wait()
        outcomes = []
        for n in range(2):
            try:
                clients[i % 2].v1.charges.create(params={"amount": 300, "currency": "usd", "source": card,
                                                         "description": f"{tag} agent {i} charge {n}"})
                outcomes.append("ok")
            except stripe.RateLimitError:
                outcomes.append("capped")
        return outcomes

    with ThreadPoolExecutor(8) as pool:
        results = [o for r in pool.map(agent, range(8)) for o in r]
    assert results.count("ok") == 3, results  # $9 of $10: a fourth $3 charge would pass the cap
    assert len(stack.charges(tag)) == 3

    # Each event is written once, whatever the concurrency...
    rows = stack.admin("GET", f"/v1/events?key_id={key.id}").json()["data"]
    kinds = sorted((e["type"], e["data"].get("threshold_percent")) for e in rows)
    assert kinds == [("key.cap.reached", None), ("key.spend.threshold_crossed", 50), ("key.spend.threshold_crossed", 80)], kinds
    # ...and delivered: the first attempt of each failed (500), the retry 5 s later was verified and accepted.
    wait_until(lambda: len(receiver.events(key.id)) == 3, 30, "three events delivered")
    assert receiver.invalid == []
    with receiver.lock:
        for e in rows:
            assert receiver.attempts[e["id"]] == 2, receiver.attempts
            assert len(receiver.delivered[e["id"]]) == 1, "none twice under its id"
    crossed = {e["data"]["threshold_percent"]: e for e in receiver.events(key.id, "key.spend.threshold_crossed")}
    assert crossed[50]["data"]["spent_usd"] == 6 and crossed[80]["data"]["spent_usd"] == 9
    assert crossed[50]["data"]["cap_field"] == "daily_usd_cap" and crossed[50]["data"]["key_label"] == "alerted-agent"
    reached = receiver.events(key.id, "key.cap.reached")[0]["data"]
    assert (reached["cap_usd"], reached["spent_usd"], reached["requested_usd"]) == (10, 9, 3)
    assert reached["tenant_id"] == stack.tenant_id

    # The endpoint's deliveries show both attempts of each.
    deliveries = stack.admin("GET", f"/v1/webhook-endpoints/{receiver.endpoint_id}/deliveries").json()["data"]
    mine = [d for d in deliveries if d["event_id"] in {e["id"] for e in rows}]
    assert len(mine) == 3
    for d in mine:
        assert d["state"] == "delivered"
        assert [a["status"] for a in d["attempts"]] == [500, 200]
        assert d["attempts"][0]["next_attempt_at"] is not None

    # Redelivered on request: the same id again, verified again.
    again = stack.admin("POST", f"/v1/events/{rows[0]['id']}/redeliver", {"endpoint_id": receiver.endpoint_id})
    assert again.status_code == 202, again.text
    wait_until(lambda: len(receiver.delivered[rows[0]["id"]]) == 2, 15, "redelivery")


def test_rotated_secret_and_the_old_one_both_verify(stack, receiver):
    rotated = stack.admin("POST", f"/v1/webhook-endpoints/{receiver.endpoint_id}/rotate-secret")
    assert rotated.status_code == 200, rotated.text
    old, receiver.secret = receiver.secret, rotated.json()["secret"]
    assert old != receiver.secret
    # A receiver still on the old secret verifies the same deliveries (two v1 signatures during the overlap).
    receiver.also = [old]
    ping = stack.admin("POST", f"/v1/webhook-endpoints/{receiver.endpoint_id}/test").json()["event_id"]
    wait_until(lambda: ping in receiver.delivered, 20, "ping delivered")
    assert receiver.invalid == []
    assert receiver.delivered[ping][0]["type"] == "ping"
    # And a secret that is neither is refused by the reference library: the check above can fail.
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "QUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUFBQUE=").verify(
            json.dumps(receiver.delivered[ping][0]), {"webhook-id": ping, "webhook-timestamp": str(int(time.time())),
                                                      "webhook-signature": "v1,AAAA"})


def test_a_delivery_held_by_a_killed_replica_is_delivered_by_the_other(stack, receiver):
    """Replica 2 is stopped, so replica 1 alone takes the ping; the receiver holds that attempt while replica 1 is
    killed with SIGKILL. Replica 2, started again, delivers the row when its lease runs out."""
    stack.replicas[1].proc.stop()
    receiver.hang = {"ping"}
    receiver.hang_seconds = 4
    try:
        ping = stack.admin("POST", f"/v1/webhook-endpoints/{receiver.endpoint_id}/test").json()["event_id"]
        wait_until(lambda: receiver.attempts.get(ping, 0) == 1, 10, "replica 1 posting the ping")
        stack.replicas[0].proc.kill()
        stack.restart_replica(1)
        wait_until(lambda: ping in receiver.delivered, 40, "the ping delivered by replica 2")
        assert receiver.invalid == []
        assert receiver.attempts[ping] == 2
    finally:
        receiver.hang = set()
        stack.restart_replica(0)
    rows = stack.sql(f"SELECT state || ' ' || attempts FROM webhook_deliveries WHERE event_id = '{ping}'")
    assert rows == ["delivered 2"], rows
