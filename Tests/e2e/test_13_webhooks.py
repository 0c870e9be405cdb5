"""Scenario 11: budget alerts as signed webhooks (DESIGN §14), verified by the Standard Webhooks reference library.

A receiver a user would write: every delivery is verified with `standardwebhooks` (PyPI), the first attempt of every
event is answered 500, so each event must come again (the retry schedule's first step is 5 s) and is then accepted.
"""
import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import stripe
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from conftest import wait_until


class Receiver:
    def __init__(self):
        self.secret = None
        self.lock = threading.Lock()
        self.attempts = []      # (webhook-id, status answered)
        self.accepted = {}      # webhook-id -> payload, the deliveries answered 200
        self.rejected = []      # signature failures
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    payload = Webhook(receiver.secret).verify(body, headers)
                except WebhookVerificationError as e:
                    with receiver.lock:
                        receiver.rejected.append(str(e))
                    self.send_response(400)
                    self.end_headers()
                    return
                msg_id = headers["webhook-id"]
                with receiver.lock:
                    first = not any(a[0] == msg_id for a in receiver.attempts)
                    status = 500 if first else 200
                    receiver.attempts.append((msg_id, status))
                    if status == 200:
                        assert msg_id not in receiver.accepted, f"{msg_id} accepted twice"
                        receiver.accepted[msg_id] = payload
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/keybrake-hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self):
        self.server.shutdown()


def test_ten_dollar_cap_three_dollar_charges_eight_agents_two_replicas_alerts_once_each(stack, tag, card):
    receiver = Receiver()
    try:
        r = stack.admin("POST", "/v1/webhook-endpoints", {
            "url": receiver.url, "description": "e2e receiver",
            "events": ["key.spend.threshold_crossed", "key.cap.reached"]})
        assert r.status_code == 201, r.text
        receiver.secret = r.json()["secret"]
        assert receiver.secret.startswith("whsec_")
        endpoint_id = r.json()["endpoint"]["id"]
        assert "secret" not in stack.admin("GET", f"/v1/webhook-endpoints/{endpoint_id}").json()

        key = stack.new_key("stripe", ["charges.create"], daily_usd_cap=10, label="alerted-agent")
        clients = [stack.stripe(key.token, replica=i % 2) for i in range(8)]
        barrier = threading.Barrier(8)

        def agent(i):
            barrier.wait()
            try:
                clients[i].v1.charges.create(params={"amount": 300, "currency": "usd", "source": card,
                                                     "description": f"{tag} agent {i}"})
                return "ok"
            except stripe.RateLimitError:
                return "capped"

        with ThreadPoolExecutor(8) as pool:
            results = list(pool.map(agent, range(8)))
        assert results.count("ok") == 3 and results.count("capped") == 5, results

        events = stack.admin("GET", f"/v1/events?key_id={key.id}").json()["data"]
        kinds = sorted((e["type"], e["data"].get("threshold_percent")) for e in events)
        assert kinds == [("key.cap.reached", None), ("key.spend.threshold_crossed", 50),
                         ("key.spend.threshold_crossed", 80)], kinds
        ids = {e["id"] for e in events}

        # Each event: a failed first attempt, retried about 5 s later, then accepted — once, under its id.
        wait_until(lambda: ids <= set(receiver.accepted), 40, "every event accepted by the receiver")
        assert not receiver.rejected, receiver.rejected
        for event_id in ids:
            statuses = [s for i, s in receiver.attempts if i == event_id]
            assert statuses == [500, 200], (event_id, statuses)
            payload = receiver.accepted[event_id]
            assert payload["id"] == event_id
            assert payload["data"]["key_id"] == key.id
            assert payload["data"]["key_label"] == "alerted-agent"
            assert payload["data"]["cap_field"] == "daily_usd_cap"
            assert payload["data"]["cap_usd"] == 10
        crossing = {p["data"]["threshold_percent"]: p["data"] for p in receiver.accepted.values()
                    if p["type"] == "key.spend.threshold_crossed" and p["data"]["key_id"] == key.id}
        assert crossing[50]["spent_usd"] == 6 and crossing[80]["spent_usd"] == 9, crossing

        # The replica records the outcome just after the receiver answered.
        def recorded():
            deliveries = stack.admin("GET", f"/v1/webhook-endpoints/{endpoint_id}/deliveries").json()["data"]
            mine = [d for d in deliveries if d["event_id"] in ids]
            return len(mine) == 3 and all(d["status"] == "succeeded" and d["attempts"] == 2 and d["last_status"] == 200
                                          for d in mine)
        wait_until(recorded, 10, "three deliveries recorded as succeeded at the second attempt")

        # Redelivery: the same event again, under the same id (the receiver has seen it: it answers 200).
        some = sorted(ids)[0]
        assert stack.admin("POST", f"/v1/events/{some}/redeliver").status_code == 202
        wait_until(lambda: [s for i, s in receiver.attempts if i == some] == [500, 200, 200], 20, "the redelivery")

        # Rotation: the old secret keeps verifying for 24 h (two signatures), and so does the new one.
        old = receiver.secret
        rot = stack.admin("POST", f"/v1/webhook-endpoints/{endpoint_id}/rotate-secret")
        assert rot.status_code == 200, rot.text
        assert stack.admin("POST", f"/v1/events/{some}/redeliver").status_code == 202
        wait_until(lambda: len([1 for i, _ in receiver.attempts if i == some]) == 4, 20, "a delivery after rotation")
        receiver.secret = rot.json()["secret"]
        assert stack.admin("POST", f"/v1/events/{some}/redeliver").status_code == 202
        wait_until(lambda: len([1 for i, _ in receiver.attempts if i == some]) == 5, 20, "a delivery verified by the new secret")
        assert not receiver.rejected, receiver.rejected
        assert old != receiver.secret
    finally:
        receiver.stop()
        stack.admin("DELETE", f"/v1/webhook-endpoints/{endpoint_id}") if "endpoint_id" in locals() else None


def test_deliveries_due_while_every_replica_was_killed_are_sent_after_a_restart(stack, tag, card):
    """kill -9 both replicas while deliveries are pending (their first attempt failed, the retry is due 5 s later);
    a replica started again sends them: the outbox is in Postgres, not in a process."""
    receiver = Receiver()
    endpoint_id = None
    try:
        r = stack.admin("POST", "/v1/webhook-endpoints", {"url": receiver.url, "events": ["key.revoked"]})
        assert r.status_code == 201, r.text
        receiver.secret = r.json()["secret"]
        endpoint_id = r.json()["endpoint"]["id"]
        key = stack.new_key("stripe", ["charges.create"], daily_usd_cap=10)
        assert stack.admin("POST", f"/v1/keys/{key.id}/revoke").status_code == 200
        event_id = stack.admin("GET", f"/v1/events?type=key.revoked&key_id={key.id}").json()["data"][0]["id"]
        wait_until(lambda: [s for i, s in receiver.attempts if i == event_id] == [500], 20, "the first (failed) attempt")
        for replica in stack.replicas:
            replica.proc.kill()
        time.sleep(6)  # the retry is due while no replica runs
        assert [s for i, s in receiver.attempts if i == event_id] == [500]
        stack.restart_replica(0)
        wait_until(lambda: event_id in receiver.accepted, 20, "the retry sent by the restarted replica")
        assert [s for i, s in receiver.attempts if i == event_id] == [500, 200]
        assert not receiver.rejected, receiver.rejected
    finally:
        receiver.stop()
        if not stack.replicas[1].proc.alive():
            stack.restart_replica(1)
        if not stack.replicas[0].proc.alive():
            stack.restart_replica(0)
        if endpoint_id:
            stack.admin("DELETE", f"/v1/webhook-endpoints/{endpoint_id}")
