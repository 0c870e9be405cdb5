"""Scenario 1: stripe-python pointed at Keybrake, both set-up styles, against localstripe.

Customer, payment method, charge, PaymentIntent with confirm=true and a partial refund all succeed,
and every call is audited with the right USD amount."""
import socket

import pytest
import requests
import stripe

ENDPOINTS = ["customers.create", "POST /v1/payment_methods", "charges.create", "charges.retrieve",
             "POST /v1/payment_intents", "refunds.create"]
CARD = {"number": "4242424242424242", "exp_month": 12, "exp_year": 2034, "cvc": "123"}


def run_flow_client(client, tag):
    """StripeClient(vault_token, base_addresses={"api": "<keybrake>/stripe"})"""
    customer = client.v1.customers.create(params={"email": f"{tag}@example.com", "description": tag})
    pm = client.v1.payment_methods.create(params={"type": "card", "card": CARD, "metadata": {"tag": tag}})
    charge = client.v1.charges.create(params={"amount": 1000, "currency": "usd", "source": pm.id,
                                              "description": f"{tag} charge"})
    fetched = client.v1.charges.retrieve(charge.id)
    intent = client.v1.payment_intents.create(params={"amount": 2500, "currency": "usd", "payment_method": pm.id,
                                                      "confirm": True, "metadata": {"tag": tag}})
    refund = client.v1.refunds.create(params={"charge": charge.id, "amount": 300, "metadata": {"tag": tag}})
    return customer, pm, charge, fetched, intent, refund


def run_flow_global(token, base, tag):
    """stripe.api_key = vault_token; stripe.api_base = "<keybrake>/stripe" """
    stripe.api_key = token
    stripe.api_base = base
    try:
        customer = stripe.Customer.create(email=f"{tag}@example.com", description=tag)
        pm = stripe.PaymentMethod.create(type="card", card=CARD, metadata={"tag": tag})
        charge = stripe.Charge.create(amount=1000, currency="usd", source=pm.id, description=f"{tag} charge")
        fetched = stripe.Charge.retrieve(charge.id)
        intent = stripe.PaymentIntent.create(amount=2500, currency="usd", payment_method=pm.id, confirm=True,
                                             metadata={"tag": tag})
        refund = stripe.Refund.create(charge=charge.id, amount=300, metadata={"tag": tag})
        return customer, pm, charge, fetched, intent, refund
    finally:
        stripe.api_key = None
        stripe.api_base = stripe.DEFAULT_API_BASE


@pytest.mark.parametrize("style", ["StripeClient", "stripe.api_base"])
def test_sdk_flow_succeeds_and_is_audited_in_usd(stack, tag, style):
    key = stack.new_key("stripe", ENDPOINTS, daily_usd_cap=500)
    if style == "StripeClient":
        flow = run_flow_client(stack.stripe(key.token, replica=0), tag)
    else:
        flow = run_flow_global(key.token, f"{stack.replicas[1].url}/stripe", tag)
    customer, pm, charge, fetched, intent, refund = flow

    assert customer.id.startswith("cus_") and customer.email == f"{tag}@example.com"
    assert pm.id.startswith("pm_") and pm.card.last4 == "4242"
    assert charge.id.startswith("ch_") and charge.status == "succeeded" and charge.amount == 1000
    assert fetched.id == charge.id
    assert intent.id.startswith("pi_") and intent.status == "succeeded" and intent.amount == 2500
    assert refund.id.startswith("re_") and refund.amount == 300 and refund.charge == charge.id

    # The objects really exist at localstripe (asked directly, with the real secret).
    assert [c["id"] for c in stack.charges(f"{tag} charge")] == [charge.id]
    direct = requests.get(f"{stack.localstripe_url}/v1/payment_intents/{intent.id}", auth=(stack.stripe_secret, ""), timeout=10)
    assert direct.json()["status"] == "succeeded"

    rows = stack.audit(key.id)
    summary = [(r["method"], r["path"], r["decision"], r["outcome"], r["amount_micros"], r["upstream_status"]) for r in rows]
    assert summary == [
        ("POST", "/v1/customers", "allowed", None, 0, 200),
        ("POST", "/v1/payment_methods", "allowed", None, 0, 200),
        ("POST", "/v1/charges", "allowed", "settled", 10_000_000, 200),
        ("GET", f"/v1/charges/{charge.id}", "allowed", None, 0, 200),
        ("POST", "/v1/payment_intents", "allowed", "settled", 25_000_000, 200),
        ("POST", "/v1/refunds", "allowed", "settled", 3_000_000, 200),
    ], summary
    # The SDK's own random Idempotency-Key is what Keybrake recorded for each POST.
    assert all(r["idempotency_key"] for r in rows if r["method"] == "POST")
    assert stack.ledger(key.id) == {"settled": 38_000_000, "reserved": 0, "unknown": 0}

    # The vault key went to Keybrake only: localstripe saw the tenant's real secret.
    sent = [r for r in stack.chaos.requests(method="POST") if tag in r["text"]]
    assert sent and all(r["headers"]["authorization"] == f"Bearer {stack.stripe_secret}" for r in sent)
    assert key.token not in stack.sql(f"SELECT string_agg(row_to_json(a)::text, '') FROM audit_events a "
                                      f"WHERE tenant_id = '{stack.tenant_id}'")[0]


def test_declined_card_is_the_vendors_card_error_and_releases_the_reservation(stack, tag):
    """localstripe declines 4000000000000341 with 402: that one really is a CardError, and nothing is spent."""
    key = stack.new_key("stripe", ["POST /v1/payment_methods", "charges.create"], daily_usd_cap=100)
    client = stack.stripe(key.token)
    pm = client.v1.payment_methods.create(params={"type": "card", "card": {**CARD, "number": "4000000000000341"}})
    with pytest.raises(stripe.CardError) as err:
        client.v1.charges.create(params={"amount": 4000, "currency": "usd", "source": pm.id, "description": tag})
    assert err.value.http_status == 402 and err.value.code == "card_declined"
    rows = stack.audit(key.id)
    assert [(r["path"], r["outcome"], r["upstream_status"]) for r in rows][-1] == ("/v1/charges", "released", 402)
    assert stack.ledger(key.id) == {"settled": 0, "reserved": 0, "unknown": 0}


def test_host_based_routing_for_sdks_that_take_only_a_host(stack, tag, monkeypatch):
    """stripe-node takes only host/port/protocol, so Keybrake also serves Stripe at the root of `stripe.<domain>`.

    The operator points stripe.<domain> at Keybrake with DNS or /etc/hosts; here getaddrinfo plays /etc/hosts, and
    stripe-python sends what stripe-node would: root paths with `Host: stripe.keybrake.test:<port>`."""
    real = socket.getaddrinfo

    def hosts_file(host, *args, **kwargs):
        return real("127.0.0.1" if host == "stripe.keybrake.test" else host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", hosts_file)
    key = stack.new_key("stripe", ["customers.create", "GET /v1/customers/*"])
    client = stripe.StripeClient(key.token, base_addresses={"api": f"http://stripe.keybrake.test:{stack.replicas[1].port}"})
    customer = client.v1.customers.create(params={"email": f"{tag}@example.com"})
    assert client.v1.customers.retrieve(customer.id).email == f"{tag}@example.com"
    assert [(r["method"], r["path"], r["decision"]) for r in stack.audit(key.id)] == [
        ("POST", "/v1/customers", "allowed"), ("GET", f"/v1/customers/{customer.id}", "allowed")]
    with pytest.raises(stripe.PermissionError) as err:
        client.v1.charges.create(params={"amount": 100, "currency": "usd"})
    assert err.value.error.code == "endpoint_not_allowed"


def test_amountless_requests_are_priced_by_looking_the_object_up(stack, tag, card):
    """A confirm or a full refund carries no amount: Keybrake prices it from localstripe's own objects."""
    key = stack.new_key("stripe", ["POST /v1/payment_intents", "POST /v1/payment_intents/*/confirm", "charges.create",
                                   "refunds.create"], daily_usd_cap=500)
    client = stack.stripe(key.token)
    # Created through Keybrake without confirm: nothing moves yet, and its confirm is priced at its current amount.
    mine = client.v1.payment_intents.create(params={"amount": 5000, "currency": "usd", "payment_method": card,
                                                    "metadata": {"tag": tag}})
    assert client.v1.payment_intents.confirm(mine.id).status == "succeeded"
    # Created elsewhere (directly at localstripe): the confirm is priced by looking the PaymentIntent up.
    outside = requests.post(f"{stack.localstripe_url}/v1/payment_intents", auth=(stack.stripe_secret, ""),
                            data={"amount": 700, "currency": "usd", "payment_method": card}, timeout=10).json()
    assert client.v1.payment_intents.confirm(outside["id"]).status == "succeeded"
    # A refund without amount refunds what is left of the charge: $12.00 - $2.00 already refunded = $10.00.
    # (localstripe itself refunds the full $12.00 again; real Stripe refunds the rest, which is what Keybrake prices.)
    charge = client.v1.charges.create(params={"amount": 1200, "currency": "usd", "source": card, "description": tag})
    client.v1.refunds.create(params={"charge": charge.id, "amount": 200})
    client.v1.refunds.create(params={"charge": charge.id})
    rows = stack.audit(key.id)
    assert [(r["path"].replace(mine.id, "MINE").replace(outside["id"], "OUTSIDE"), r["amount_micros"]) for r in rows] == [
        ("/v1/payment_intents", 0),
        ("/v1/payment_intents/MINE/confirm", 50_000_000),
        ("/v1/payment_intents/OUTSIDE/confirm", 7_000_000),
        ("/v1/charges", 12_000_000),
        ("/v1/refunds", 2_000_000),
        ("/v1/refunds", 10_000_000),
    ]
    assert stack.ledger(key.id) == {"settled": 81_000_000, "reserved": 0, "unknown": 0}
