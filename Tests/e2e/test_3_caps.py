"""Scenario 3: a $100 daily cap under 64 concurrent $10 charges split across both replicas."""
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import stripe


def test_daily_cap_holds_under_concurrency_across_two_replicas(stack, tag, card):
    key = stack.new_key("stripe", ["charges.create"], daily_usd_cap=100, label="capped-agent")
    # Let the SDK retry as much as users often configure it: the cap denial must still not be retried.
    clients = [stack.stripe(key.token, replica=r, max_network_retries=3) for r in (0, 1)]
    barrier = threading.Barrier(64)

    def charge(i):
        barrier.wait()
        try:
            c = clients[i % 2].v1.charges.create(params={"amount": 1000, "currency": "usd", "source": card,
                                                         "description": f"{tag} order {i}"})
            return ("ok", c.id)
        except stripe.StripeError as e:
            return ("error", e)

    with ThreadPoolExecutor(64) as pool:
        results = list(pool.map(charge, range(64)))

    ok = [r for kind, r in results if kind == "ok"]
    errors = [r for kind, r in results if kind == "error"]
    assert len(ok) == 10, [str(e) for e in errors[:3]]
    assert len(stack.charges(tag)) == 10, "exactly ten charges exist at localstripe"
    assert len(errors) == 54
    for e in errors:
        assert type(e) is stripe.RateLimitError, f"{type(e).__name__}: {e}"  # never CardError
        assert not isinstance(e, stripe.CardError)
        assert e.http_status == 429
        assert e.error.code == "daily_usd_cap_exceeded"  # stripe-python sets .code only on Card/InvalidRequest errors
        assert "Daily cap of $100.00" in e.user_message and "capped-agent" in e.user_message, e.user_message
        assert header(e.headers, "Stripe-Should-Retry") == "false"
        assert int(header(e.headers, "Retry-After")) > 0

    # Count attempts at the proxy: one audit row per request, so the SDK retried none of the 54 denials.
    rows = stack.audit(key.id)
    assert len(rows) == 64, f"{len(rows)} requests reached Keybrake for 64 SDK calls"
    assert sum(1 for r in rows if r["error_code"] == "daily_usd_cap_exceeded") == 54
    assert {r["decision"] for r in rows} == {"allowed", "denied"}
    assert sum(r["amount_micros"] for r in rows if r["decision"] == "allowed") == 100_000_000
    assert stack.ledger(key.id) == {"settled": 100_000_000, "reserved": 0, "unknown": 0}
    assert len([r for r in stack.chaos.requests("/v1/charges", "POST") if tag in r["text"]]) == 10


def header(headers, name):
    return next((v for k, v in (headers or {}).items() if k.lower() == name.lower()), None)


def test_over_cap_requests_are_answered_once_even_with_sdk_retries(stack, tag, card):
    """One request over the daily cap, and one over max_request_usd: each reaches Keybrake exactly once."""
    key = stack.new_key("stripe", ["charges.create"], daily_usd_cap=5)
    client = stack.stripe(key.token, max_network_retries=3)
    with pytest.raises(stripe.RateLimitError) as err:
        client.v1.charges.create(params={"amount": 600, "currency": "usd", "source": card, "description": tag})
    assert err.value.error.code == "daily_usd_cap_exceeded"
    assert "$5.00" in err.value.user_message and "$6.00" in err.value.user_message
    assert len(stack.audit(key.id)) == 1, "exactly one attempt reached Keybrake"
    assert not any(tag in r["text"] for r in stack.chaos.requests("/v1/charges", "POST"))

    # A per-request cap is a PermissionError (403), also never retried and never a CardError.
    key2 = stack.new_key("stripe", ["charges.create"], max_request_usd=25)
    with pytest.raises(stripe.PermissionError) as err2:
        stack.stripe(key2.token, max_network_retries=3).v1.charges.create(
            params={"amount": 2600, "currency": "usd", "source": card, "description": tag + " big"})
    assert err2.value.error.code == "request_cap_exceeded"
    assert len(stack.audit(key2.id)) == 1
