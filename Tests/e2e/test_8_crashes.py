"""A replica killed (-9) in the middle of a money-moving request (DESIGN §7 Leases).

The request's in-flight records and held reservation outlive it by its lease (upstream timeout + margin: 5 s in this
suite, see conftest.LEASE_SECONDS). Then any replica turns them into `outcome_unknown`, with an audit row, still
counted: an identical retry on the surviving replica is resent to Stripe with the first attempt's Idempotency-Key and
settles it (no 409 for a day, no second charge, no phantom hold); a Twilio retry is refused with 409
`outcome_unknown` naming the audit id, and the tenant can list and resolve it.
"""
from __future__ import annotations

import threading
import time

import requests

from conftest import LEASE_SECONDS
from test_6_twilio_resend import SMS_ENDPOINTS, SMS_MICROS


def post(stack, replica: int, path: str, token: str, data: dict, headers: dict | None = None, timeout: float = 30):
    return requests.post(stack.replicas[replica].url + path, data=data, timeout=timeout,
                         headers={"Authorization": f"Bearer {token}", **(headers or {})})


def kill_during(stack, send, upstream, path: str, hold_ms: int = 2500):
    """Sends one request on replica 1 while the upstream holds it, kills replica 1 while it waits, restarts it."""
    upstream.faults({"path": path, "method": "POST", "times": 1, "mode": "delay", "delay_ms": hold_ms})
    thread = threading.Thread(target=lambda: _swallow(send))
    thread.start()
    deadline = time.monotonic() + 10
    while not upstream.requests(path, "POST") and time.monotonic() < deadline:
        time.sleep(0.02)
    stack.replicas[0].proc.kill()
    thread.join(15)
    killed_at = time.monotonic()
    stack.restart_replica(0)
    return killed_at


def _swallow(send):
    try:
        send()
    except requests.RequestException:
        pass  # the replica died under it: the agent sees a connection error


def test_a_stripe_charge_killed_mid_flight_is_settled_by_its_retry_on_the_other_replica(stack, tag, card):
    key = stack.new_key("stripe", ["charges.create"], daily_usd_cap=100)
    body = {"amount": "4000", "currency": "usd", "source": card, "description": tag}
    headers = {"Idempotency-Key": f"{tag}-k1"}
    stack.chaos.reset()
    kill_during(stack, lambda: post(stack, 0, "/stripe/v1/charges", key.token, body, headers), stack.chaos, "/v1/charges")
    time.sleep(3)  # the held answer reaches the dead replica's socket; the charge exists at the vendor
    assert len(stack.charges(tag)) == 1, "the vendor acted on the killed request"

    # The agent retries on the surviving replica. It may wait out the dead request's lease (in-flight wait), never 409.
    started = time.monotonic()
    retry = post(stack, 1, "/stripe/v1/charges", key.token, body, headers)
    waited = time.monotonic() - started
    assert retry.status_code == 200, retry.text
    assert retry.json()["id"] == stack.charges(tag)[0]["id"], "the retry answers with the first attempt's charge"
    assert waited < LEASE_SECONDS + 3, f"the retry waited {waited:.1f} s"
    assert len(stack.charges(tag)) == 1, "charged once"
    assert stack.ledger(key.id) == {"settled": 40_000_000, "reserved": 0, "unknown": 0}
    rows = stack.audit(key.id)
    # The killed request's row was written before it was forwarded; the lease sweep marked it.
    dead = [r for r in rows if r["state"] == "lease_expired"]
    assert len(dead) == 1 and dead[0]["outcome"] == "outcome_unknown" and dead[0]["amount_micros"] == 40_000_000, rows
    assert rows[-1]["outcome"] == "settled" and rows[-1]["resolves"] == dead[0]["id"], rows[-1]
    assert len(rows) == 2, "one row per request"


def test_a_killed_request_leaves_no_phantom_hold_and_an_unknown_outcome_the_tenant_can_resolve(stack, tag, card):
    key = stack.new_key("stripe", ["charges.create"], daily_usd_cap=100)
    body = {"amount": "2500", "currency": "usd", "source": card, "description": tag}
    stack.chaos.reset()
    kill_during(stack, lambda: post(stack, 0, "/stripe/v1/charges", key.token, body), stack.chaos, "/v1/charges")
    # Nobody retries. Within the lease plus one sweep, the hold becomes an unknown outcome (still counted).
    deadline = time.monotonic() + LEASE_SECONDS + 10
    while stack.ledger(key.id)["reserved"] and time.monotonic() < deadline:
        time.sleep(0.2)
    assert stack.ledger(key.id) == {"settled": 0, "reserved": 0, "unknown": 25_000_000}
    listed = stack.admin("GET", f"/v1/audit?key_id={key.id}&outcome=outcome_unknown").json()["data"]
    assert [(r["state"], r["error_code"]) for r in listed] == [("lease_expired", None)], listed
    # The charge happened (the upstream held it, then acted): the tenant says so on the listed row, and the amount
    # is settled.
    resolved = stack.admin("POST", f"/v1/audit/{listed[0]['id']}/resolve", {"outcome": "settled", "amount_usd": 25})
    assert resolved.status_code == 201, resolved.text
    assert resolved.json()["event"]["resolves"] == (listed[0]["resolves"] or listed[0]["id"])
    assert stack.ledger(key.id) == {"settled": 25_000_000, "reserved": 0, "unknown": 0}


def test_a_twilio_message_killed_mid_flight_is_refused_on_retry_with_its_audit_id(stack, tag):
    key = stack.new_key("twilio", SMS_ENDPOINTS, daily_usd_cap=1)
    sid = stack.twilio_sid
    path = f"/twilio/2010-04-01/Accounts/{sid}/Messages.json"
    form = {"To": "+15550001111", "From": "+15550002222", "Body": f"once {tag}"}
    stack.twilio.reset()
    kill_during(stack, lambda: post(stack, 0, path, key.token, form), stack.twilio, "/Messages.json")
    retry = post(stack, 1, path, key.token, form)
    assert retry.status_code == 409, retry.text
    assert retry.headers["Keybrake-Error-Code"] == "outcome_unknown"
    assert len([r for r in stack.twilio.requests("/Messages.json", "POST") if tag in r["text"]]) == 1, "sent once"
    assert stack.ledger(key.id) == {"settled": 0, "reserved": 0, "unknown": SMS_MICROS}
    dead = [r for r in stack.audit(key.id) if r["state"] == "lease_expired"][0]
    dead_request = dead["resolves"] or dead["id"]
    assert dead_request in retry.json()["message"], retry.text


def test_sigterm_drains_a_replica_the_charge_in_flight_finishes_and_settles(stack, tag, card):
    """A rolling restart: SIGTERM takes the replica out of service at once (/ready 503 or refused, new proxy
    requests 503 `shutting_down` or refused: nothing of them is sent), lets the charge in flight finish and settle,
    and exits cleanly; the other replica serves throughout."""
    import os
    import signal

    key = stack.new_key("stripe", ["charges.create"], daily_usd_cap=100)
    stack.chaos.reset()
    stack.chaos.faults({"path": "/v1/charges", "method": "POST", "times": 1, "mode": "delay", "delay_ms": 2000})
    results = {}

    def in_flight():
        results["charge"] = post(stack, 0, "/stripe/v1/charges", key.token,
                                 {"amount": "1500", "currency": "usd", "source": card, "description": f"{tag} in flight"})

    thread = threading.Thread(target=in_flight)
    thread.start()
    deadline = time.monotonic() + 10
    while not stack.chaos.requests("/v1/charges", "POST") and time.monotonic() < deadline:
        time.sleep(0.02)
    proc = stack.replicas[0].proc
    os.kill(proc.pid, signal.SIGTERM)
    time.sleep(0.3)
    try:
        late = post(stack, 0, "/stripe/v1/charges", key.token,
                    {"amount": "1500", "currency": "usd", "source": card, "description": f"{tag} late"}, timeout=5)
        assert late.status_code == 503 and late.headers["Keybrake-Error-Code"] == "shutting_down", late.text
    except requests.ConnectionError:
        pass  # the listener is already closed: the load balancer sends it elsewhere
    try:
        assert requests.get(stack.replicas[0].url + "/ready", timeout=5).status_code == 503
    except requests.ConnectionError:
        pass
    other = post(stack, 1, "/stripe/v1/charges", key.token,
                 {"amount": "1500", "currency": "usd", "source": card, "description": f"{tag} elsewhere"})
    assert other.status_code == 200, other.text
    thread.join(20)
    assert results["charge"].status_code == 200, results["charge"].text
    assert proc.popen.wait(20) == 0, "the replica exits cleanly once drained"
    stack.restart_replica(0)
    assert [c["description"] for c in stack.charges(tag)] .count(f"{tag} late") == 0, "nothing of the refused request was sent"
    assert stack.ledger(key.id) == {"settled": 30_000_000, "reserved": 0, "unknown": 0}
