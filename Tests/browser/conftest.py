"""Fixtures for the dashboard's browser test: a live `keybrake serve` (started by scripts/browser.sh, which passes
its address and a signed-up tenant's admin token in the environment) and headless Chromium through selenium,
using Debian's chromium and chromedriver (nothing is downloaded).

Screenshots of every page go to .keybrake/artifacts/ (git-ignored).
"""
from __future__ import annotations

import base64
import os
import re
from pathlib import Path

import pytest
import requests
from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import WebDriverWait

ROOT = Path(__file__).resolve().parents[2]


def env(name: str) -> str:
    value = os.environ.get(name)
    if not value:
        pytest.exit(f"{name} is not set: run the browser test through scripts/browser.sh", returncode=2)
    return value


class Server:
    def __init__(self):
        self.base = env("KB_BASE")
        self.admin_token = env("KB_ADMIN_TOKEN")
        self.stripe_secret = env("KB_STRIPE_SECRET")
        self.tenant_name = env("KB_TENANT_NAME")
        self.artifacts = Path(os.environ.get("KB_ARTIFACTS", ROOT / ".keybrake" / "artifacts"))
        self.artifacts.mkdir(parents=True, exist_ok=True)

    def api(self, method: str, path: str, **kwargs) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.admin_token}"}
        return requests.request(method, self.base + path, headers=headers, timeout=10, **kwargs)


@pytest.fixture(scope="session")
def server() -> Server:
    return Server()


def make_driver(javascript: bool = True) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = os.environ.get("CHROMIUM_BIN", "/usr/bin/chromium")
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu", "--window-size=1280,900",
                "--no-first-run", "--disable-extensions", "--password-store=basic"):
        options.add_argument(arg)
    if not javascript:
        options.add_experimental_option("prefs", {"profile.managed_default_content_settings.javascript": 2})
    service = Service(executable_path=os.environ.get("CHROMEDRIVER_BIN", "/usr/bin/chromedriver"),
                      log_output=str(ROOT / ".keybrake" / "browser" / "chromedriver.log"))
    driver = webdriver.Chrome(options=options, service=service)
    # Lookups wait a little for the element; navigations are awaited explicitly by `click_and_wait`.
    driver.implicitly_wait(5)
    return driver


@pytest.fixture
def browser(server):
    driver = make_driver(javascript=True)
    yield driver
    driver.quit()


@pytest.fixture
def browser_without_js(server):
    driver = make_driver(javascript=False)
    yield driver
    driver.quit()


def screenshot(driver: webdriver.Chrome, server: Server, name: str):
    """A full-page screenshot (Chrome DevTools: the whole document, not just the window)."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    shot = driver.execute_cdp_cmd("Page.captureScreenshot", {
        "format": "png", "captureBeyondViewport": True,
        "clip": {"x": 0, "y": 0, "width": size["width"], "height": min(size["height"], 6000), "scale": 1},
    })
    path = server.artifacts / f"{name}.png"
    path.write_bytes(base64.b64decode(shot["data"]))
    return path


def click_and_wait(driver: webdriver.Chrome, element, timeout: float = 20):
    """Clicks a link or submit button and waits until the browser has left the current page (a form POST may
    take a moment: issuing a key hashes its token with argon2id)."""
    old = driver.find_element(By.TAG_NAME, "html")
    try:
        element.click()
    except WebDriverException as e:
        # chromedriver sometimes reports the click's own navigation as this error; the click did happen (if it did
        # not, the wait below fails plainly).
        if "does not belong to the document" not in str(e):
            raise

    def left_and_loaded(d) -> bool:
        try:
            old.is_enabled()
            return False  # still the old page
        except StaleElementReferenceException:
            pass
        except WebDriverException as e:
            if "does not belong to the document" in str(e):
                return False  # caught mid-navigation: look again
            raise
        try:
            return d.execute_script("return document.readyState") == "complete"
        except WebDriverException:
            return False

    WebDriverWait(driver, timeout, poll_frequency=0.1).until(left_and_loaded)


def sign_in(driver: webdriver.Chrome, server: Server, token: str | None = None):
    driver.get(server.base + "/dashboard")
    assert driver.current_url.endswith("/dashboard/login"), driver.current_url
    driver.find_element(By.ID, "token").send_keys(token or server.admin_token)
    click_and_wait(driver, driver.find_element(By.ID, "sign-in"))
    assert driver.current_url == server.base + "/dashboard", driver.current_url


def text(driver: webdriver.Chrome) -> str:
    return driver.find_element(By.TAG_NAME, "body").text


def money(s: str) -> str:
    return re.sub(r"\s+", " ", s)
