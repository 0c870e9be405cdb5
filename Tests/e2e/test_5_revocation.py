"""Scenario 5: revoking a key takes effect on the next request, on every replica."""
import threading
import time

import stripe


def test_revoke_while_an_agent_is_charging_through_replica_two(stack, tag, card):
    key = stack.new_key("stripe", ["charges.create"], daily_usd_cap=1000, label="looping-agent")
    agent = stack.stripe(key.token, replica=1)
    results = []  # (started, finished, outcome)
    stop = threading.Event()

    def loop():
        i = 0
        while not stop.is_set() and i < 500:
            started = time.monotonic()
            try:
                agent.v1.charges.create(params={"amount": 100, "currency": "usd", "source": card,
                                                "description": f"{tag} tick {i}"})
                results.append((started, time.monotonic(), "ok"))
            except stripe.StripeError as e:
                results.append((started, time.monotonic(), e))
                if isinstance(e, stripe.AuthenticationError):
                    return
            i += 1

    worker = threading.Thread(target=loop)
    worker.start()
    deadline = time.monotonic() + 20
    while sum(1 for r in results if r[2] == "ok") < 5 and time.monotonic() < deadline:
        time.sleep(0.02)
    r = stack.admin("POST", f"/v1/keys/{key.id}/revoke", replica=0)
    assert r.status_code == 200, r.text
    revoked_at = time.monotonic()
    worker.join(20)
    stop.set()
    assert not worker.is_alive()

    ok = [x for x in results if x[2] == "ok"]
    assert len(ok) >= 5
    # Nothing started after the revocation succeeded. The request in flight while it committed may have been
    # refused already (status is read in the request's own statement), so the loop's last result is the 401.
    after = [x for x in results if x[0] > revoked_at]
    assert all(x[2] != "ok" for x in after), "a request made after the revocation succeeded"
    last = results[-1][2]
    assert isinstance(last, stripe.AuthenticationError), f"the loop ended with {last!r}"
    assert last.http_status == 401 and last.error.code == "vault_key_revoked"
    assert "looping-agent" in last.user_message
    assert sum(1 for x in results if x[2] != "ok") == 1, "exactly one refusal: the loop stops at the first 401"

    # The other replica refuses it too.
    try:
        stack.stripe(key.token, replica=0).v1.charges.create(params={"amount": 100, "currency": "usd", "source": card,
                                                                     "description": f"{tag} other replica"})
        raise AssertionError("replica 1 accepted a revoked key")
    except stripe.AuthenticationError as e:
        assert e.error.code == "vault_key_revoked"

    # Money moved only for the requests that succeeded before the revocation.
    assert len(stack.charges(tag)) == len(ok)
    assert stack.ledger(key.id)["settled"] == 1_000_000 * len(ok)
    rows = stack.audit(key.id)
    assert [r["error_code"] for r in rows if r["decision"] == "denied"] == ["vault_key_revoked", "vault_key_revoked"]
