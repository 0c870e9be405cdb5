"""The dashboard in real headless Chromium: sign in, store vendor credentials, issue a key, call Stripe through the
official SDK with it, find the call in the audit list and the spend bars, revoke the key and watch the next SDK
call fail. Plus: user text is shown as text, and the forms work with JavaScript switched off."""
from __future__ import annotations

import pytest
import stripe
from selenium.common.exceptions import NoAlertPresentException
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select, WebDriverWait

from conftest import click_and_wait, screenshot, sign_in, text


def sdk(server, token: str) -> stripe.StripeClient:
    return stripe.StripeClient(token, base_addresses={"api": server.base + "/stripe"}, max_network_retries=0)


def test_acceptance_flow(browser, server):
    b = browser
    # 1. Sign in with the admin token.
    b.get(server.base + "/dashboard")
    assert b.current_url.endswith("/dashboard/login")
    screenshot(b, server, "01-sign-in")
    sign_in(b, server)
    assert server.tenant_name in text(b)
    cookie = b.get_cookie("kb_session")
    assert cookie and cookie["httpOnly"] and cookie["sameSite"] == "Strict", cookie

    # 2. Vendor credentials: store the Stripe secret; only its fingerprint comes back.
    click_and_wait(b, b.find_element(By.LINK_TEXT, "Vendor credentials"))
    stripe_card = b.find_element(By.ID, "vendor-stripe")
    stripe_card.find_element(By.NAME, "secret_key").send_keys(server.stripe_secret)
    click_and_wait(b, stripe_card.find_element(By.CSS_SELECTOR, "button[type=submit]"))
    assert "Credentials saved" in text(b)
    fingerprint = b.find_element(By.CSS_SELECTOR, "#vendor-stripe .fingerprint").text
    assert fingerprint == "…" + server.stripe_secret[-4:]
    assert server.stripe_secret not in b.page_source
    screenshot(b, server, "02-vendor-credentials")

    # 3. Issue a key with a $50 daily cap; the token is shown once, with a copy button.
    click_and_wait(b, b.find_element(By.LINK_TEXT, "Keys"))
    click_and_wait(b, b.find_element(By.ID, "issue-key"))
    screenshot(b, server, "03-issue-key-form")
    b.find_element(By.ID, "label").send_keys("billing-agent")
    endpoints = b.find_element(By.ID, "allowed_endpoints")
    endpoints.clear()
    endpoints.send_keys("POST /v1/charges")
    b.find_element(By.NAME, "daily_usd_cap").send_keys("50")
    b.find_element(By.NAME, "monthly_usd_cap").send_keys("500")
    click_and_wait(b, b.find_element(By.ID, "create-key"))
    token = b.find_element(By.ID, "new-token").get_attribute("value")
    assert token.startswith("kb_vault_"), token
    copy = b.find_element(By.ID, "copy-token")
    assert copy.is_displayed(), "the copy button is revealed by the script"
    copy.click()
    WebDriverWait(b, 5).until(lambda _: copy.text == "Copied")
    screenshot(b, server, "04-key-issued")
    key_href = b.find_element(By.ID, "key-link").get_attribute("href")
    key_id = key_href.rsplit("/", 1)[-1]

    # 4. A proxied call through the official SDK.
    charge = sdk(server, token).v1.charges.create(params={"amount": 1234, "currency": "usd", "source": "tok_visa",
                                                          "description": "browser test"})
    assert charge.id.startswith("ch_fake") and charge.amount == 1234

    # 5. The call is in the audit list (filtered by the key, through the filter form) and has a detail page.
    click_and_wait(b, b.find_element(By.LINK_TEXT, "Audit"))
    Select(b.find_element(By.NAME, "key_id")).select_by_value(key_id)
    Select(b.find_element(By.NAME, "decision")).select_by_value("allowed")
    click_and_wait(b, b.find_element(By.CSS_SELECTOR, "#audit-filters button[type=submit]"))
    assert f"key_id={key_id}" in b.current_url
    rows = b.find_elements(By.CSS_SELECTOR, "#audit tbody tr")
    assert len(rows) == 1, [r.text for r in rows]
    row = rows[0].text
    assert "POST /v1/charges" in row and "$12.34" in row and "allowed" in row and "settled" in row, row
    screenshot(b, server, "05-audit")
    click_and_wait(b, rows[0].find_element(By.CSS_SELECTOR, "td a"))
    assert b.find_element(By.ID, "detail-amount").text.startswith("$12.34")
    assert b.find_element(By.ID, "detail-outcome").text == "settled"
    assert b.find_element(By.ID, "detail-upstream-request-id").text.startswith("req_fake")
    assert b.find_element(By.ID, "detail-idempotency").text.strip() not in ("", "—")
    screenshot(b, server, "06-audit-detail")

    # 6. The spend bars: $12.34 of the $50 daily cap, per key and per label.
    click_and_wait(b, b.find_element(By.LINK_TEXT, "Overview"))
    key_row = b.find_element(By.CSS_SELECTOR, f'#spend-by-key tr[data-key-id="{key_id}"]')
    assert "$12.34" in key_row.text and "$50.00" in key_row.text, key_row.text
    settled = key_row.find_element(By.CSS_SELECTOR, "svg.bar rect.settled")
    assert int(settled.get_attribute("width")) == 247, settled.get_attribute("width")  # 12.34 / 50 of 1000 units
    assert "$12.34 of $50.00 cap" in key_row.find_element(By.CSS_SELECTOR, "svg.bar").get_attribute("aria-label")
    label_row = b.find_element(By.XPATH, "//table[@id='spend-by-label']//tr[td[contains(., 'billing-agent')]]")
    assert "$12.34" in label_row.text
    assert "Proxied requests in" in b.find_element(By.ID, "usage").text
    # The 30-day chart (server-rendered SVG): today's bar is the $12.34, in the label's colour.
    bars = b.find_elements(By.CSS_SELECTOR, "svg#spend-chart rect[data-usd]")
    assert [r.get_attribute("data-usd") for r in bars] == ["12.34"], [r.get_attribute("data-usd") for r in bars]
    assert int(bars[0].get_attribute("height")) > 100, "the only spend fills most of the chart's height"
    assert "billing-agent" in b.find_element(By.CSS_SELECTOR, "#spend-chart + figcaption").text
    screenshot(b, server, "07-overview")

    # 7. Revoke with a confirm step.
    b.get(key_href)
    assert b.find_element(By.ID, "key-status").text == "active"
    # Today by hour and 30 days by day, with the $50 daily cap drawn across; the lifetime row has no cap: no bar.
    assert [r.get_attribute("data-usd") for r in b.find_elements(By.CSS_SELECTOR, "svg#key-hours-chart rect[data-usd]")] == ["12.34"]
    assert "daily cap $50.00" in b.find_element(By.CSS_SELECTOR, "svg#key-days-chart .caplabel").text
    lifetime = b.find_element(By.XPATH, "//table[@id='key-spend']//tr[td[contains(., 'Lifetime')]]")
    assert not lifetime.find_elements(By.CSS_SELECTOR, "svg.bar") and "no cap" in lifetime.text, lifetime.text
    screenshot(b, server, "08-key")
    click_and_wait(b, b.find_element(By.ID, "revoke-key"))
    assert "/revoke" in b.current_url and "cannot be undone" in text(b)
    screenshot(b, server, "09-revoke-confirm")
    click_and_wait(b, b.find_element(By.ID, "confirm-revoke"))
    assert b.find_element(By.ID, "key-status").text == "revoked"
    assert "Key revoked" in b.find_element(By.ID, "flash").text
    screenshot(b, server, "10-key-revoked")

    # 8. The next SDK call with the revoked key fails.
    with pytest.raises(stripe.AuthenticationError) as failure:
        sdk(server, token).v1.charges.create(params={"amount": 500, "currency": "usd", "source": "tok_visa",
                                                     "description": "after revoke"})
    assert failure.value.http_status == 401
    assert failure.value.json_body["error"]["code"] == "vault_key_revoked", failure.value.json_body

    # The denial is audited too.
    b.get(server.base + f"/dashboard/audit?key_id={key_id}&decision=denied")
    denied = b.find_elements(By.CSS_SELECTOR, "#audit tbody tr")
    assert len(denied) == 1 and "vault_key_revoked" in denied[0].text

    # 9. Sign out ends the session.
    click_and_wait(b, b.find_element(By.ID, "sign-out"))
    assert b.current_url.endswith("/dashboard/login?notice=signed_out")
    assert "You are signed out." in text(b)
    screenshot(b, server, "11-signed-out")
    b.get(server.base + "/dashboard/keys")
    assert b.current_url.endswith("/dashboard/login")


def test_user_text_is_shown_as_text(browser, server):
    label = "<script>alert(1)</script>"
    r = server.api("POST", "/v1/keys", json={"vendor": "stripe", "label": label, "allowed_endpoints": ["POST /v1/charges"],
                                              "daily_usd_cap": 10})
    assert r.status_code == 201, r.text
    key_id = r.json()["key"]["id"]
    b = browser
    sign_in(b, server)
    for page in ("/dashboard/keys", "/dashboard", f"/dashboard/keys/{key_id}"):
        b.get(server.base + page)
        with pytest.raises(NoAlertPresentException):
            b.switch_to.alert.text  # noqa: B018 - no script ran
        assert label in text(b), page
        assert "<script" not in b.find_element(By.TAG_NAME, "main").get_attribute("innerHTML"), page
    screenshot(b, server, "12-escaped-label")


def test_forms_work_without_javascript(browser_without_js, server):
    b = browser_without_js
    sign_in(b, server)
    b.get(server.base + "/dashboard/keys/new")
    assert not b.find_element(By.ID, "label").get_attribute("value")
    b.find_element(By.ID, "label").send_keys("no-js-agent")
    b.find_element(By.NAME, "daily_usd_cap").send_keys("20")
    click_and_wait(b, b.find_element(By.ID, "create-key"))
    token = b.find_element(By.ID, "new-token").get_attribute("value")
    assert token.startswith("kb_vault_")
    assert not b.find_element(By.ID, "copy-token").is_displayed(), "without JS the copy button stays hidden"
    click_and_wait(b, b.find_element(By.ID, "key-link"))
    # Edit caps: a refused value is explained, a valid one saved.
    caps = b.find_element(By.ID, "edit-caps")
    daily = caps.find_element(By.NAME, "daily_usd_cap")
    daily.clear()
    daily.send_keys("abc")
    click_and_wait(b, b.find_element(By.ID, "save-caps"))
    assert "daily_usd_cap" in b.find_element(By.ID, "flash").text
    daily = b.find_element(By.NAME, "daily_usd_cap")
    daily.clear()
    daily.send_keys("30")
    click_and_wait(b, b.find_element(By.ID, "save-caps"))
    assert "Caps saved" in b.find_element(By.ID, "flash").text
    assert "$30.00/day" in text(b)
    screenshot(b, server, "13-no-js-caps-saved")
    click_and_wait(b, b.find_element(By.ID, "revoke-key"))
    click_and_wait(b, b.find_element(By.ID, "confirm-revoke"))
    assert b.find_element(By.ID, "key-status").text == "revoked"
    click_and_wait(b, b.find_element(By.ID, "sign-out"))
    assert "You are signed out." in text(b)


def test_webhook_endpoints_page(browser, server):
    """Add an endpoint (the secret shown once), send a test event and see it delivered, rotate the secret."""
    import threading
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    received = []

    class Receiver(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def do_POST(self):
            received.append(self.headers.get("webhook-id"))
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(204)
            self.end_headers()

    hook = ThreadingHTTPServer(("127.0.0.1", 0), Receiver)
    threading.Thread(target=hook.serve_forever, daemon=True).start()
    try:
        b = browser
        sign_in(b, server)
        click_and_wait(b, b.find_element(By.LINK_TEXT, "Webhooks"))
        b.find_element(By.ID, "webhook-url").send_keys(f"http://127.0.0.1:{hook.server_address[1]}/keybrake")
        b.find_element(By.ID, "webhook-description").send_keys("ops alerts")
        b.find_element(By.NAME, "ev_key.spend.threshold_crossed").click()
        screenshot(b, server, "14-webhooks-add")
        click_and_wait(b, b.find_element(By.ID, "add-webhook"))
        secret = b.find_element(By.ID, "webhook-secret").get_attribute("value")
        assert secret.startswith("whsec_"), secret
        click_and_wait(b, b.find_element(By.ID, "webhook-link"))
        assert secret not in b.page_source
        click_and_wait(b, b.find_element(By.ID, "send-test"))
        assert "Test event queued" in b.find_element(By.ID, "flash").text
        WebDriverWait(b, 15, poll_frequency=0.5).until(lambda d: (d.refresh() or True) and "delivered" in d.find_element(By.ID, "deliveries").text)
        row = b.find_element(By.CSS_SELECTOR, "#deliveries tbody tr")
        assert "ping" in row.text and "HTTP 204" in row.text, row.text
        assert received == [row.get_attribute("data-event-id")]
        screenshot(b, server, "15-webhook-deliveries")
        click_and_wait(b, b.find_element(By.ID, "rotate-secret"))
        rotated = b.find_element(By.ID, "webhook-secret").get_attribute("value")
        assert rotated.startswith("whsec_") and rotated != secret
        b.get(server.base + "/dashboard/webhooks")
        assert "ops alerts" in text(b) and "key.spend.threshold_crossed" in text(b)
        screenshot(b, server, "16-webhooks")
    finally:
        hook.shutdown()
