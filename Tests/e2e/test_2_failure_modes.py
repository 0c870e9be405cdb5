"""Scenario 2: the failure modes of the briefs, each shown to move money exactly once.

stripe-python adds a fresh random Idempotency-Key to every call, and localstripe has no idempotency at all,
so only Keybrake's own duplicate guard stands between these and a double charge."""
import threading
from concurrent.futures import ThreadPoolExecutor

ENDPOINTS = ["charges.create", "customers.create"]


def test_flow_retry_with_a_fresh_sdk_call_charges_once(stack, tag, card):
    """The agent's flow fails after the charge and is retried: a new SDK call, so a new random Idempotency-Key."""
    key = stack.new_key("stripe", ENDPOINTS, daily_usd_cap=100)
    client = stack.stripe(key.token)
    params = {"amount": 2000, "currency": "usd", "source": card, "description": f"{tag} Pro plan"}
    first = client.v1.charges.create(params=params)
    retry = client.v1.charges.create(params=dict(reversed(params.items())))  # same request, params in another order
    assert retry.id == first.id
    assert retry.last_response.headers.get("Idempotent-Replayed") == "true"
    assert retry.last_response.headers.get("Keybrake-Duplicate-Of", "").startswith("aud_")

    sent = stack.chaos.requests("/v1/charges", "POST")
    sent = [r for r in sent if tag in r["text"]]
    assert len(sent) == 1, "the retry never reached the vendor"
    assert len(stack.charges(tag)) == 1
    rows = stack.audit(key.id)
    assert [(r["decision"], r["amount_micros"]) for r in rows] == [("allowed", 20_000_000), ("replayed", 0)]
    assert rows[0]["idempotency_key"] != rows[1]["idempotency_key"], "the SDK really sent two different random keys"
    assert rows[1]["duplicate_of"] == rows[0]["id"]
    assert stack.ledger(key.id)["settled"] == 20_000_000

    # A legitimately repeated operation differs in its body (as the briefs advise): it is charged.
    renewal = client.v1.charges.create(params={**params, "description": f"{tag} Pro plan renewal"})
    assert renewal.id != first.id
    assert len(stack.charges(tag)) == 2


def test_duplicate_webhook_on_two_replicas_at_once_charges_once(stack, tag, card):
    """The same webhook delivered twice, handled concurrently by two workers behind two Keybrake replicas."""
    key = stack.new_key("stripe", ENDPOINTS, daily_usd_cap=100)
    # Slow the vendor so the two requests really overlap.
    stack.chaos.faults({"path": "/v1/charges", "method": "POST", "mode": "delay", "delay_ms": 400})
    clients = [stack.stripe(key.token, replica=0), stack.stripe(key.token, replica=1)]
    barrier = threading.Barrier(2)
    params = {"amount": 4500, "currency": "usd", "source": card, "description": f"{tag} invoice.paid in_123",
              "metadata": {"event": "evt_123"}}

    def handle(client):
        barrier.wait()
        return client.v1.charges.create(params=params)

    with ThreadPoolExecutor(2) as pool:
        results = list(pool.map(handle, clients))
    assert results[0].id == results[1].id
    assert len(stack.charges(tag)) == 1
    rows = stack.audit(key.id)
    assert sorted(r["decision"] for r in rows) == ["allowed", "replayed"]
    assert stack.ledger(key.id) == {"settled": 45_000_000, "reserved": 0, "unknown": 0}


def test_ten_parallel_tool_calls_charge_once_and_nobody_sees_an_error(stack, tag, card):
    key = stack.new_key("stripe", ENDPOINTS, daily_usd_cap=100)
    stack.chaos.faults({"path": "/v1/charges", "method": "POST", "mode": "delay", "delay_ms": 300})
    clients = [stack.stripe(key.token, replica=i % 2) for i in range(10)]
    barrier = threading.Barrier(10)
    params = {"amount": 1500, "currency": "usd", "source": card, "description": f"{tag} setup fee"}

    def tool_call(client):
        barrier.wait()
        return client.v1.charges.create(params=params)

    with ThreadPoolExecutor(10) as pool:
        results = list(pool.map(tool_call, clients))
    assert len({r.id for r in results}) == 1, "all ten see the one charge"
    assert len(stack.charges(tag)) == 1
    rows = stack.audit(key.id)
    assert [r["decision"] for r in rows].count("allowed") == 1
    assert [r["decision"] for r in rows].count("replayed") == 9
    assert stack.ledger(key.id) == {"settled": 15_000_000, "reserved": 0, "unknown": 0}


class Crash(Exception):
    pass


def test_batch_rerun_after_a_crash_charges_each_customer_once(stack, tag, card):
    """200 customers; the job crashes at #134 and the operator re-runs all 200 (on another replica)."""
    key = stack.new_key("stripe", ENDPOINTS, label="nightly-billing")
    setup = stack.stripe(key.token)
    customers = [setup.v1.customers.create(params={"email": f"c{i}.{tag}@example.com"}).id for i in range(200)]

    def billing_run(client, crash_at=None):
        done = []
        for i, customer in enumerate(customers):
            if i == crash_at:
                raise Crash(i)
            done.append(client.v1.charges.create(params={
                "amount": 500 + i, "currency": "usd", "customer": customer, "source": card,
                "description": f"{tag} monthly invoice for {customer}"}))
        return done

    try:
        billing_run(stack.stripe(key.token, replica=0), crash_at=134)
    except Crash:
        pass
    assert len(stack.charges(tag)) == 134
    rerun = billing_run(stack.stripe(key.token, replica=1))

    charges = stack.charges(tag)
    assert len(charges) == 200, f"{len(charges)} charges at localstripe (a naive re-run makes 334)"
    assert len({c["customer"] for c in charges}) == 200
    assert sorted(c["id"] for c in charges) == sorted(c.id for c in rerun)
    replayed = [r.last_response.headers.get("Idempotent-Replayed") for r in rerun]
    assert replayed.count("true") == 134
    charge_rows = [r for r in stack.audit(key.id) if r["path"] == "/v1/charges"]
    assert [r["decision"] for r in charge_rows].count("allowed") == 200
    assert [r["decision"] for r in charge_rows].count("replayed") == 134
    expected = sum(500 + i for i in range(200)) * 10_000
    assert stack.ledger(key.id) == {"settled": expected, "reserved": 0, "unknown": 0}
