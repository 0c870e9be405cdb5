"""Scenario 4: the endpoint allowlist, as the SDK sees it."""
import pytest
import stripe


def test_charges_only_key_cannot_refund(stack, tag, card):
    key = stack.new_key("stripe", ["charges.create", "charges.retrieve"], daily_usd_cap=100, label="charges-only")
    client = stack.stripe(key.token, max_network_retries=2)
    charge = client.v1.charges.create(params={"amount": 700, "currency": "usd", "source": card, "description": tag})
    assert client.v1.charges.retrieve(charge.id).id == charge.id

    with pytest.raises(stripe.PermissionError) as err:
        client.v1.refunds.create(params={"charge": charge.id, "amount": 100})
    e = err.value
    assert e.http_status == 403
    assert e.error.code == "endpoint_not_allowed"
    assert e.error.type == "invalid_request_error"
    assert "refunds.create" in e.user_message and "charges-only" in e.user_message, e.user_message

    # Other operations the key does not name are refused the same way.
    with pytest.raises(stripe.PermissionError) as err:
        client.v1.customers.create(params={"email": f"{tag}@example.com"})
    assert err.value.error.code == "endpoint_not_allowed"

    assert not any(charge.id in r["text"] for r in stack.chaos.requests("/v1/refunds")), "nothing reached Stripe"
    assert not any(r["charge"] == charge.id for r in stack.stripe_objects("refunds"))
    rows = stack.audit(key.id)
    assert [(r["method"], r["path"], r["decision"], r["error_code"]) for r in rows] == [
        ("POST", "/v1/charges", "allowed", None),
        ("GET", f"/v1/charges/{charge.id}", "allowed", None),
        ("POST", "/v1/refunds", "denied", "endpoint_not_allowed"),
        ("POST", "/v1/customers", "denied", "endpoint_not_allowed"),
    ], "each denial audited once: the SDK did not retry them"


def test_other_denials_raise_the_matching_sdk_errors(stack, tag, card):
    key = stack.new_key("stripe", ["charges.create"], daily_usd_cap=100)
    client = stack.stripe(key.token)
    # A connected account the key does not list.
    with pytest.raises(stripe.PermissionError) as err:
        client.v1.charges.create(params={"amount": 100, "currency": "usd", "source": card, "description": tag},
                                 options={"stripe_account": "acct_1NotListed"})
    assert err.value.error.code == "stripe_account_not_allowed"
    # A Twilio key used with the Stripe SDK.
    sms_key = stack.new_key("twilio", ["POST /2010-04-01/Accounts/*/Messages.json"])
    with pytest.raises(stripe.PermissionError) as err:
        stack.stripe(sms_key.token).v1.charges.create(params={"amount": 100, "currency": "usd", "source": card})
    assert err.value.error.code == "vendor_not_allowed"
    # A forged vault key.
    forged = key.token[:-1] + ("a" if key.token[-1] != "a" else "b")
    with pytest.raises(stripe.AuthenticationError) as err:
        stack.stripe(forged).v1.charges.create(params={"amount": 100, "currency": "usd", "source": card})
    assert err.value.error.code == "vault_key_invalid"
    # An unknown currency fails closed.
    with pytest.raises(stripe.InvalidRequestError) as err:
        client.v1.charges.create(params={"amount": 100, "currency": "xts", "source": card, "description": tag})
    assert err.value.code == "currency_not_supported"
    assert not any(tag in r["text"] for r in stack.chaos.requests("/v1/charges"))
