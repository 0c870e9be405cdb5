"""Scenario 7: faults. An upstream that dies mid-request or answers 500 leaves an unknown outcome that still counts
against the cap; a Postgres restart makes Keybrake fail closed and then recover without a restart of its own.

This file runs last: it restarts the Stripe-side fake and Postgres."""
import os
import threading
import time
from collections import Counter

import pytest
import requests
import resend
import stripe
from resend.exceptions import ResendError
from twilio.base.exceptions import TwilioRestException

from test_6_twilio_resend import SMS_ENDPOINTS, twilio_client


def wait_for(check, timeout=15, what="condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what}")


def test_stripe_upstream_killed_mid_request(stack, tag, card):
    key = stack.new_key("stripe", ["charges.create"], daily_usd_cap=30)
    client = stack.stripe(key.token, replica=1)
    params = {"amount": 2000, "currency": "usd", "source": card, "description": f"{tag} killed"}
    # The request reaches Stripe (the charge is made), then the process in front of it dies before answering.
    stack.chaos.faults({"path": "/v1/charges", "method": "POST", "mode": "hang"})
    outcome = {}

    def call():
        try:
            outcome["charge"] = client.v1.charges.create(params=params)
        except stripe.StripeError as e:
            outcome["error"] = e

    worker = threading.Thread(target=call)
    worker.start()
    wait_for(lambda: len(stack.charges(f"{tag} killed")) == 1, what="the charge to exist at localstripe")
    stack.chaos_proc.kill()
    worker.join(15)
    stack.restart_chaos()

    e = outcome.get("error")
    assert isinstance(e, stripe.APIError), f"expected an APIError, got {outcome!r}"
    assert e.http_status == 502 and e.error.code == "upstream_error"
    assert "outcome is unknown" in e.user_message
    rows = stack.audit(key.id)
    assert [(r["decision"], r["outcome"], r["error_code"], r["amount_micros"]) for r in rows] == [
        ("allowed", "outcome_unknown", "upstream_error", 20_000_000)]
    assert stack.ledger(key.id) == {"settled": 0, "reserved": 0, "unknown": 20_000_000}

    # The unknown $20 still counts: another $15 charge would pass the $30 cap.
    with pytest.raises(stripe.RateLimitError) as err:
        client.v1.charges.create(params={**params, "amount": 1500, "description": f"{tag} next"})
    assert err.value.error.code == "daily_usd_cap_exceeded" and "$20.00" in err.value.user_message

    # The agent retries the same charge (a fresh SDK call, so a new random key): Keybrake resends it with the
    # original Idempotency-Key, so that Stripe itself answers with the first charge, and settles the held
    # reservation instead of taking a second one. (localstripe has no idempotency, so it makes a second object.)
    retry = client.v1.charges.create(params=params)
    assert retry.amount == 2000
    resent = [r for r in stack.chaos.requests("/v1/charges", "POST") if f"{tag} killed" in r["text"]]
    assert [r["headers"].get("idempotency-key") for r in resent] == [rows[0]["idempotency_key"]]
    assert stack.ledger(key.id) == {"settled": 20_000_000, "reserved": 0, "unknown": 0}


def test_stripe_upstream_500_is_an_unknown_outcome_that_counts(stack, tag, card):
    key = stack.new_key("stripe", ["charges.create"], daily_usd_cap=30)
    client = stack.stripe(key.token)
    stack.chaos.faults({"path": "/v1/charges", "method": "POST", "mode": "status", "status": 500, "times": 1})
    with pytest.raises(stripe.APIError) as err:
        client.v1.charges.create(params={"amount": 2000, "currency": "usd", "source": card, "description": f"{tag} a"})
    assert err.value.http_status == 500
    rows = stack.audit(key.id)
    assert [(r["outcome"], r["upstream_status"], r["amount_micros"]) for r in rows] == [("outcome_unknown", 500, 20_000_000)]
    assert stack.ledger(key.id)["unknown"] == 20_000_000
    with pytest.raises(stripe.RateLimitError):
        client.v1.charges.create(params={"amount": 1500, "currency": "usd", "source": card, "description": f"{tag} b"})

    # With SDK retries on, its own retry (same Idempotency-Key) settles the held reservation: one charge, once.
    key2 = stack.new_key("stripe", ["charges.create"], daily_usd_cap=30)
    stack.chaos.faults({"path": "/v1/charges", "method": "POST", "mode": "status", "status": 500, "times": 1})
    charge = stack.stripe(key2.token, max_network_retries=2).v1.charges.create(
        params={"amount": 2000, "currency": "usd", "source": card, "description": f"{tag} c"})
    assert charge.status == "succeeded"
    assert len(stack.charges(f"{tag} c")) == 1
    assert [r["outcome"] for r in stack.audit(key2.id)] == ["outcome_unknown", "settled"]
    assert stack.ledger(key2.id) == {"settled": 20_000_000, "reserved": 0, "unknown": 0}


def test_twilio_unknown_outcome_is_never_resent(stack, tag):
    key = stack.new_key("twilio", SMS_ENDPOINTS, daily_usd_cap=1)
    client = twilio_client(stack, key.token)
    sms = {"to": "+15550001111", "from_": "+15550002222"}
    for n, fault in enumerate([{"mode": "status", "status": 500}, {"mode": "drop"}]):
        stack.twilio.faults({"path": "/Messages.json", "times": 1, **fault})
        body = f"{tag} message {n}"
        with pytest.raises(TwilioRestException) as err:
            client.messages.create(body=body, **sms)
        assert err.value.status in (500, 502)
        # An identical retry is refused: a duplicate SMS is worse than a failed retry.
        with pytest.raises(TwilioRestException) as err:
            client.messages.create(body=body, **sms)
        assert err.value.status == 409 and "[outcome_unknown]" in err.value.msg and "aud_" in err.value.msg
        assert len([r for r in stack.twilio.requests("/Messages.json", "POST") if body in r["text"]]) == 1
    rows = stack.audit(key.id)
    assert [r["outcome"] or r["error_code"] for r in rows] == ["outcome_unknown", "outcome_unknown",
                                                               "outcome_unknown", "outcome_unknown"]
    assert stack.ledger(key.id)["unknown"] == 2 * 11_300


def test_resend_lost_answer_is_retried_with_the_same_idempotency_key(stack, tag):
    """Resend sent the email but the answer was lost. Resend dedupes on Idempotency-Key, so Keybrake resends the
    retry with the original key, gets the first email back, and settles the held reservation: one email, paid once."""
    key = stack.new_key("resend", ["POST /emails"], daily_usd_cap=1)
    saved = (resend.api_key, resend.api_url)
    resend.api_key, resend.api_url = key.token, f"{stack.replicas[0].url}/resend"
    try:
        email = {"from": "billing@acme.test", "to": ["ann@example.com"], "subject": f"Receipt {tag}", "html": "<p>x</p>"}
        stack.resend.faults({"path": "/emails", "mode": "drop_after_forward", "times": 1})
        with pytest.raises(ResendError) as err:
            resend.Emails.send(email)
        assert str(err.value.code) == "502" and err.value.error_type == "upstream_error"
        assert stack.ledger(key.id) == {"settled": 0, "reserved": 0, "unknown": 900}
        resend.api_url = f"{stack.replicas[1].url}/resend"  # the retry lands on the other replica
        retry = resend.Emails.send(email)
    finally:
        resend.api_key, resend.api_url = saved
    sent = [r for r in stack.resend.requests("/emails", "POST") if tag in r["text"]]
    assert len(sent) == 2 and sent[0]["headers"]["idempotency-key"] == sent[1]["headers"]["idempotency-key"]
    assert retry["id"], retry
    assert stack.ledger(key.id) == {"settled": 900, "reserved": 0, "unknown": 0}
    assert [r["outcome"] for r in stack.audit(key.id)] == ["outcome_unknown", "settled"]


def test_postgres_restart_fails_closed_then_recovers(stack, tag, card):
    """Postgres stops under traffic on both replicas, stays down ~6 s, and comes back.

    While it is down every request must fail closed and fast: 503 `unavailable` (an APIError in stripe-python),
    nothing forwarded, not even later. Once it is back, both replicas serve again without being restarted."""
    # A cap the traffic cannot reach: a replica that recovers late must fail the recovery bound below, not hide
    # behind 429s once the other replica has spent the cap (a slow CI run once ended that way).
    key = stack.new_key("stripe", ["charges.create"], daily_usd_cap=100_000)
    clients = [stack.stripe(key.token, replica=r) for r in (0, 1)]
    impatient = [stack.stripe(key.token, replica=r, http_client=stripe.RequestsClient(timeout=4)) for r in (0, 1)]
    results = []  # (started, finished, replica, "ok" | exception)
    stop = threading.Event()

    def charge(client, replica, description):
        started = time.time()
        try:
            client.v1.charges.create(params={"amount": 100, "currency": "usd", "source": card, "description": description})
            results.append((started, time.time(), replica, "ok"))
        except stripe.StripeError as e:
            results.append((started, time.time(), replica, e))
            time.sleep(0.05)

    def traffic(replica):
        for i in range(2000):
            if stop.is_set():
                return
            charge(clients[replica], replica, f"{tag} r{replica} #{i}")

    workers = [threading.Thread(target=traffic, args=(r,)) for r in (0, 1)]
    for w in workers:
        w.start()
    try:
        wait_for(lambda: sum(1 for r in results if r[3] == "ok") >= 10, what="traffic before the outage")
        stack.stop_postgres()
        down_from = time.time()
        # Two agents with a 4 s HTTP timeout call during the outage.
        probes = [threading.Thread(target=charge, args=(impatient[r], r, f"{tag} probe {r}")) for r in (0, 1)]
        for p in probes:
            p.start()
        ready = [requests.get(r.url + "/ready", timeout=10).status_code for r in stack.replicas]
        for p in probes:
            p.join(10)
        time.sleep(max(0.0, down_from + float(os.environ.get("KEYBRAKE_E2E_PG_DOWN_SECONDS", "6")) - time.time()))
        down_until = time.time()
        stack.start_postgres()
        up_at = time.time()
        try:
            wait_for(lambda: all(any(r[3] == "ok" and r[2] == rep and r[0] > up_at for r in results) for rep in (0, 1)),
                     timeout=150, what="both replicas to succeed again after the restart")
        except AssertionError:
            def said(o):
                return o if o == "ok" else f"{o.http_status} {getattr(getattr(o, 'error', None), 'code', None)} {getattr(getattr(o, 'error', None), 'message', None)}"
            after = {rep: Counter(said(o) for s, f, r, o in results if r == rep and s > up_at) for rep in (0, 1)}
            tail = [(round(s - up_at, 2), rep, said(o)) for s, f, rep, o in results[-6:]]
            raise AssertionError(f"replicas did not recover after the restart; per replica since: {after}; last results: {tail}")
        recovered_after = max(min(r[1] for r in results if r[3] == "ok" and r[2] == rep and r[0] > up_at) for rep in (0, 1)) - up_at
    finally:
        stop.set()
        for w in workers:
            w.join(90)
    time.sleep(1)  # anything still queued inside Keybrake from the outage would be forwarded by now

    def show(o):
        if o == "ok":
            return "ok"
        return f"{type(o).__name__} {o.http_status} {getattr(getattr(o, 'error', None), 'code', None)}"

    timeline = "\n".join(f"  {s - down_from:+7.2f}s → {f - down_from:+7.2f}s replica{rep + 1}: {show(o)}"
                         for s, f, rep, o in sorted(results, key=lambda r: r[0]) if down_from - 0.5 < f and s < up_at + 1)
    late = stack.charges(f"{tag} probe")
    report = (f"Postgres down at +0.00s, back at +{up_at - down_from:.2f}s; both replicas OK again "
              f"{recovered_after:.2f}s later; /ready while down: {ready}; requests made during the outage and "
              f"executed at localstripe afterwards: {len(late)}\n{timeline}")
    print(report)

    # Requests answered while Postgres was down must all be prompt 503s. A request that was still waiting within
    # its deadline when Postgres came back may go through (it reserves and forwards only after the database is up);
    # the forwarding check below is what proves nothing went upstream during the outage.
    probe_results = [r for r in results if r[0] >= down_from and r[1] < up_at]
    assert all(r.proc.alive() for r in stack.replicas), "no replica restarted"
    assert ready == [503, 503], report
    for started, finished, replica, outcome in probe_results:
        assert outcome != "ok", f"a request succeeded while Postgres was down\n{report}"
        assert isinstance(outcome, stripe.APIError) and outcome.http_status == 503 \
            and outcome.error.code == "unavailable", f"expected a prompt 503 unavailable, got {show(outcome)}\n{report}"
    forwarded = [r for r in stack.chaos.requests("/v1/charges", "POST") if tag in r["text"] and down_from + 0.3 < r["t"] < up_at]
    assert forwarded == [], f"forwarded while the database was down: {[r['text'] for r in forwarded]}"
    assert late == [], f"a request made during the outage was executed later\n{report}"
    # Both replicas serve again within 5 s of Postgres accepting connections, without a restart. (PostgresNIO's pool
    # backs off 100 ms × 1.25^n between reconnection attempts: measured 0.7 s after this 6 s outage, 4.3 s after a
    # 30 s one (KEYBRAKE_E2E_PG_DOWN_SECONDS=30); much longer outages can take up to its 60 s cap.)
    assert recovered_after < 5, report
    # Every charge at localstripe is one the agent was told succeeded.
    assert len(stack.charges(tag)) == sum(1 for r in results if r[3] == "ok"), report
