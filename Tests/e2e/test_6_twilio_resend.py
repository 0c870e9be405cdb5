"""Scenario 6: twilio-python and resend-python pointed at Keybrake."""
import pytest
import resend
from resend.exceptions import ResendError, ValidationError
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

SMS_ENDPOINTS = ["POST /2010-04-01/Accounts/*/Messages.json"]
SMS_MICROS = 8_300 + 3_000  # one GSM-7 segment, estimated: Twilio answers `price: null` and reports it later


def twilio_client(stack, token, replica=0):
    # As a user writes it: any AccountSid as the username (Keybrake swaps in the real one), the vault key as password.
    client = Client("AC" + "0" * 32, token)
    client.api.base_url = f"{stack.replicas[replica].url}/twilio"
    return client


@pytest.fixture
def resend_sdk(stack):
    saved = (resend.api_key, resend.api_url)

    def configure(token, replica=0):
        resend.api_key = token
        resend.api_url = f"{stack.replicas[replica].url}/resend"
        return resend

    yield configure
    resend.api_key, resend.api_url = saved


def test_twilio_sms_is_sent_once_and_audited(stack, tag):
    key = stack.new_key("twilio", SMS_ENDPOINTS, daily_usd_cap=1)
    client = twilio_client(stack, key.token)
    body = f"Your code is 123456 ({tag})"
    first = client.messages.create(to="+15550001111", from_="+15550002222", body=body)
    assert first.sid.startswith("SM") and first.status == "queued" and first.price is None
    assert first.account_sid == stack.twilio_sid, "the tenant's real SID replaced the SDK's placeholder"

    # The same SMS again (an agent retry on another replica): Twilio has no idempotency, Keybrake dedupes it.
    again = twilio_client(stack, key.token, replica=1).messages.create(to="+15550001111", from_="+15550002222", body=body)
    assert again.sid == first.sid
    sent = [r for r in stack.twilio.requests("/Messages.json", "POST") if tag in r["text"]]
    assert len(sent) == 1, "one SMS reached Twilio"
    assert sent[0]["path"] == f"/2010-04-01/Accounts/{stack.twilio_sid}/Messages.json"
    assert key.token not in str(sent[0]["headers"])

    rows = stack.audit(key.id)
    assert [(r["decision"], r["amount_micros"], r["upstream_status"]) for r in rows] == [
        ("allowed", SMS_MICROS, 201), ("replayed", 0, 201)]
    assert stack.ledger(key.id) == {"settled": SMS_MICROS, "reserved": 0, "unknown": 0}


def test_twilio_errors_raise_twilio_rest_exception_with_our_messages(stack, tag):
    key = stack.new_key("twilio", SMS_ENDPOINTS, daily_usd_cap=0.02, label="sms-agent")
    client = twilio_client(stack, key.token)
    # The vendor's own error passes through untouched, and releases the reservation.
    with pytest.raises(TwilioRestException) as err:
        client.messages.create(to="+15005550001", from_="+15550002222", body=f"hi {tag}")
    assert err.value.status == 400 and err.value.code == 21211
    client.messages.create(to="+15550001111", from_="+15550002222", body=f"first {tag}")
    # The second SMS would take the day to $0.0226, over the $0.02 cap.
    with pytest.raises(TwilioRestException) as err:
        client.messages.create(to="+15550001111", from_="+15550002222", body=f"second {tag}")
    e = err.value
    assert e.status == 429 and e.code == 20429
    assert "Daily cap of $0.02" in e.msg and "sms-agent" in e.msg and "[daily_usd_cap_exceeded]" in e.msg, e.msg
    # An endpoint the key does not allow.
    with pytest.raises(TwilioRestException) as err:
        client.calls.create(to="+15550001111", from_="+15550002222", url="http://example.com/twiml")
    assert err.value.status == 403 and "[endpoint_not_allowed]" in err.value.msg
    # A revoked key.
    assert stack.admin("POST", f"/v1/keys/{key.id}/revoke").status_code == 200
    with pytest.raises(TwilioRestException) as err:
        client.messages.create(to="+15550001111", from_="+15550002222", body=f"third {tag}")
    assert err.value.status == 401 and "[vault_key_revoked]" in err.value.msg
    assert len([r for r in stack.twilio.requests("/Messages.json", "POST") if tag in r["text"]]) == 2
    assert stack.ledger(key.id) == {"settled": SMS_MICROS, "reserved": 0, "unknown": 0}


def test_resend_email_and_batch(stack, tag, resend_sdk):
    key = stack.new_key("resend", ["POST /emails", "POST /emails/batch"], daily_usd_cap=1)
    sdk = resend_sdk(key.token)
    email = {"from": "Acme <billing@acme.test>", "to": ["ann@example.com"], "subject": f"Receipt {tag}",
             "html": "<p>Thanks</p>"}
    sent = sdk.Emails.send(email)
    assert sent["id"]
    batch = sdk.Batch.send([{**email, "to": [f"user{i}@example.com"], "subject": f"Newsletter {tag} #{i}"} for i in range(3)])
    assert len(batch["data"]) == 3
    # The same email again: replayed, not sent twice.
    assert sdk.Emails.send(email)["id"] == sent["id"]

    assert len([r for r in stack.resend.requests("/emails", "POST") if tag in r["text"]]) == 2
    upstream = stack.resend.requests("/emails", "POST")[-1]
    assert upstream["headers"]["authorization"] == f"Bearer {stack.resend_key}"
    rows = stack.audit(key.id)
    assert [(r["path"], r["decision"], r["amount_micros"]) for r in rows] == [
        ("/emails", "allowed", 900), ("/emails/batch", "allowed", 2_700), ("/emails", "replayed", 0)]
    assert stack.ledger(key.id) == {"settled": 3_600, "reserved": 0, "unknown": 0}


def test_resend_errors_raise_resend_exceptions_with_our_messages(stack, tag, resend_sdk):
    key = stack.new_key("resend", ["POST /emails"], daily_usd_cap=0.01, label="mail-agent")
    sdk = resend_sdk(key.token, replica=1)
    email = {"from": "billing@acme.test", "to": ["ann@example.com"], "html": "<p>x</p>"}
    # The vendor's own validation error passes through as the SDK's ValidationError.
    with pytest.raises(ValidationError) as err:
        sdk.Emails.send({**email, "subject": ""})
    assert "subject" in err.value.message
    # Batch is not on this key's allowlist.
    with pytest.raises(ResendError) as err:
        sdk.Batch.send([{**email, "subject": f"a {tag}"}])
    assert str(err.value.code) == "403" and err.value.error_type == "endpoint_not_allowed"
    assert "POST /emails/batch" in err.value.message
    # $0.01 allows 11 emails at $0.0009; the 12th is over the cap.
    for i in range(11):
        sdk.Emails.send({**email, "subject": f"{tag} #{i}"})
    with pytest.raises(ResendError) as err:
        sdk.Emails.send({**email, "subject": f"{tag} #11"})
    e = err.value
    assert str(e.code) == "429" and e.error_type == "daily_usd_cap_exceeded"
    assert "Daily cap of $0.01" in e.message and "mail-agent" in e.message, e.message
    assert stack.ledger(key.id) == {"settled": 9_900, "reserved": 0, "unknown": 0}
