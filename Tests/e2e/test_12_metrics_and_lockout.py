"""/metrics is not public (DESIGN §9), and a stranger who knows a key id cannot lock its holder out (DESIGN §4)."""
import requests

from conftest import METRICS_TOKEN


def test_metrics_need_the_token_on_every_replica(stack):
    for replica in stack.replicas:
        without = requests.get(replica.url + "/metrics", timeout=10)
        assert without.status_code == 401, without.text
        assert without.json()["error"]["code"] == "metrics_token_invalid"
        assert "keybrake_" not in without.text
        wrong = requests.get(replica.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}x"}, timeout=10)
        assert wrong.status_code == 401
        ok = requests.get(replica.url + "/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}, timeout=10)
        assert ok.status_code == 200
        assert "# TYPE" in ok.text


def test_a_stranger_with_the_key_id_cannot_lock_out_the_holder(stack, tag, card):
    """A stranger (another client address, named by the trusted proxy's X-Forwarded-For) sends wrong secrets for the
    holder's key id to both replicas: cut off after 10 per replica, never audited one row each. The holder's SDK,
    whose token neither replica has verified yet (a cache miss), charges on both."""
    key = stack.new_key("stripe", ["charges.create"], daily_usd_cap=1000, label="holder")
    prefix, secret = key.token.rsplit("_", 1)
    wrong = prefix + "_" + ("A" if secret[0] != "A" else "B") + secret[1:]
    for replica in stack.replicas:
        statuses = [requests.post(replica.url + "/stripe/v1/charges", data={"amount": 100, "currency": "usd"},
                                  headers={"Authorization": f"Bearer {wrong}", "X-Forwarded-For": "198.51.100.7"},
                                  timeout=30).status_code for _ in range(30)]
        assert statuses.count(401) == 10 and statuses.count(429) == 20, statuses
    for replica in range(len(stack.replicas)):
        charge = stack.stripe(key.token, replica=replica).v1.charges.create(
            params={"amount": 100, "currency": "usd", "source": card, "description": f"{tag} holder {replica}"})
        assert charge.amount == 100
    audit = stack.admin("GET", f"/v1/audit?key_id={key.id}").json()["data"]
    refused = [row for row in audit if row["decision"] == "denied"]
    # Summary rows come once a minute (or at shutdown); none of the 60 attempts has a row of its own.
    assert all(row["error_code"] == "unverified_attempts" for row in refused), refused
    assert len([row for row in audit if row["decision"] == "allowed"]) == 2
