"""Scenario 10: per-run child keys, minted by the flow with its own vault key (no admin token), used by stripe-python.

The recipe of the README: the flow's first step mints a child key for the run with a $ cap, the Stripe step uses
the child's token, and the key dies with the run."""
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
import stripe


def mint(stack, parent_token, replica=0, **body):
    r = requests.post(f"{stack.replicas[replica].url}/v1/child-keys", json=body,
                      headers={"Authorization": f"Bearer {parent_token}"}, timeout=30)
    assert r.status_code == 201, r.text
    return r.json()


def test_a_run_key_minted_by_the_flow_caps_the_run_and_keeps_the_duplicate_guard(stack, tag, card):
    parent = stack.new_key("stripe", ["charges.create"], daily_usd_cap=500, label="flow-runner")
    run = mint(stack, parent.token, label=f"{tag} run", run_id=f"{tag}-run", total_usd_cap=30, expires_in_seconds=600)
    assert run["key"]["parent_key_id"] == parent.id
    client = stack.stripe(run["token"], replica=1)

    params = {"amount": 2000, "currency": "usd", "source": card, "description": f"{tag} order 1"}
    first = client.v1.charges.create(params=params)
    # The flow step is retried (a new SDK call, so a new random Idempotency-Key): the duplicate guard still answers.
    again = client.v1.charges.create(params=params)
    assert again.id == first.id
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"
    # The run's cap: $20 spent of $30, so another $20 is refused, never sent.
    with pytest.raises(stripe.RateLimitError) as err:
        client.v1.charges.create(params={**params, "description": f"{tag} order 2"})
    assert err.value.error.code == "total_usd_cap_exceeded"
    assert len(stack.charges(tag)) == 1

    rows = stack.audit(run["key"]["id"])
    assert [r["decision"] for r in rows] == ["allowed", "replayed", "denied"]
    assert {r["run_id"] for r in rows} == {f"{tag}-run"}, "the run's rows carry its run id"
    # The parent's spend holds its run's.
    assert stack.ledger(parent.id) == {"settled": 20_000_000, "reserved": 0, "unknown": 0}
    listed = stack.admin("GET", f"/v1/audit?parent_key_id={parent.id}").json()["data"]
    assert len(listed) == 3 and all(r["parent_key_ids"] == [parent.id] for r in listed)

    # Revoking the parent stops the run on its next request, on the other replica too.
    assert stack.admin("POST", f"/v1/keys/{parent.id}/revoke").status_code == 200
    with pytest.raises(stripe.AuthenticationError) as revoked:
        stack.stripe(run["token"], replica=0).v1.charges.create(params={**params, "description": f"{tag} order 3"})
    assert revoked.value.error.code == "vault_key_revoked"
    assert len(stack.charges(tag)) == 1


def test_runs_racing_on_two_replicas_never_take_the_parent_past_its_cap(stack, tag, card):
    """Four runs of one flow, each capped at $30, race 32 charges of $10 across both replicas under a $50 parent."""
    parent = stack.new_key("stripe", ["charges.create"], daily_usd_cap=50, label="fleet")
    runs = [mint(stack, parent.token, replica=i % 2, label=f"run {i}", run_id=f"{tag}-{i}", total_usd_cap=30)
            for i in range(4)]
    clients = [stack.stripe(run["token"], replica=i % 2) for i, run in enumerate(runs)]
    barrier = threading.Barrier(32)

    def charge(i):
        barrier.wait()
        try:
            c = clients[i % 4].v1.charges.create(params={"amount": 1000, "currency": "usd", "source": card,
                                                         "description": f"{tag} item {i}"})
            return ("ok", c.id)
        except stripe.StripeError as e:
            return ("error", e)

    with ThreadPoolExecutor(32) as pool:
        results = list(pool.map(charge, range(32)))
    ok = [r for kind, r in results if kind == "ok"]
    errors = [r for kind, r in results if kind == "error"]
    assert len(ok) == 5, [str(e) for e in errors[:3]]
    assert len(stack.charges(tag)) == 5, "exactly the parent's $50 reached the vendor"
    assert all(type(e) is stripe.RateLimitError for e in errors), {type(e).__name__ for e in errors}
    assert stack.ledger(parent.id) == {"settled": 50_000_000, "reserved": 0, "unknown": 0}
    for run in runs:
        assert stack.ledger(run["key"]["id"], period="total")["settled"] <= 30_000_000
