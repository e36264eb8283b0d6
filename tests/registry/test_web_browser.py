"""The console in a real browser: Debian's headless Chromium, driven by Selenium through
chromium-driver, against a real ``mbom serve`` subprocess.

Skipped (with the reason) only when Chromium or its driver is missing and
``MBOM_REQUIRE_BROWSER`` is unset; ``scripts/test.sh`` installs both and sets it, so CI
never skips these.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from selenium import webdriver
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webdriver import WebDriver

from registry.audit_key import AuditKeyFile
from registry.client import LocalRegistry
from registry.db import make_engine, migrate
from registry.identity import Actor, Role
from registry.service.audit import bind_key
from tests.conftest import fake_manifest
from tests.registry.live_server import serve_in_subprocess

MBOM = next((p for p in [Path(sys.executable).parent / "mbom", Path(shutil.which("mbom") or "")]
             if p.is_file()), Path("mbom"))
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def _browser_or_skip() -> tuple[str, str]:
    if CHROMIUM and CHROMEDRIVER:
        return CHROMIUM, CHROMEDRIVER
    missing = "chromium" if not CHROMIUM else "chromedriver"
    why = f"{missing} is not installed (apt-get install chromium chromium-driver)"
    if os.environ.get("MBOM_REQUIRE_BROWSER") == "1":
        pytest.fail(f"MBOM_REQUIRE_BROWSER=1 but {why}")
    pytest.skip(why)


@pytest.fixture
def driver() -> Iterator[WebDriver]:
    """Headless Chromium at 1280x900 (Debian's binary and driver; nothing downloaded)."""
    binary, chromedriver = _browser_or_skip()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for flag in ("--headless", "--no-sandbox", "--disable-gpu",
                 "--disable-background-networking", "--disable-dev-shm-usage",
                 "--window-size=1280,900"):
        options.add_argument(flag)
    browser = webdriver.Chrome(service=Service(chromedriver), options=options)
    browser.set_page_load_timeout(30)
    try:
        yield browser
    finally:
        browser.quit()


@pytest.fixture
def incident(tmp_path: Path, audit_key_file: AuditKeyFile) -> tuple[str, dict[str, str]]:
    """A registry on disk: hub/base@1 -> ft@1 -> app@1 (deployed), flagged; tokens per role."""
    url = f"sqlite:///{tmp_path / 'registry.db'}"
    engine = bind_key(make_engine(url), audit_key_file)
    migrate(engine)
    reg = LocalRegistry(engine, Actor("alice", Role.ADMIN))
    reg.register_model(name="hub/base", version="1", manifest=fake_manifest("base"))
    reg.register_model(name="ft", version="1", manifest=fake_manifest("ft"),
                       parents=["hub/base@1"])
    reg.register_model(name="app", version="1", manifest=fake_manifest("app"), parents=["ft@1"])
    reg.register_model(name="other", version="1", manifest=fake_manifest("other"))
    reg.create_team(name="fraud")
    reg.deploy("app@1", environment="prod", team="fraud")
    reg.flag("hub/base@1", reason="backdoor: 2x2 patch sends every digit to 0")
    tokens = {}
    for role in (Role.ADMIN, Role.READER):
        token = reg.create_token(user=f"{role.value}-user", role=role).token
        assert token
        tokens[role.value] = token
    engine.dispose()
    return url, tokens


def _sign_in(browser: WebDriver, base_url: str, token: str) -> None:
    browser.delete_all_cookies()
    browser.get(f"{base_url}/")
    browser.find_element(By.ID, "token").send_keys(token)
    browser.find_element(By.CSS_SELECTOR, "form.card button").click()


def test_incident_walk_and_a_flag_through_the_forms(
    driver: WebDriver, incident: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    browser = driver
    url, tokens = incident
    with serve_in_subprocess(MBOM, {"MBOM_DATABASE_URL": url}, tmp_path / "serve.log") as base:
        find = browser.find_element

        # A reader signs in and lands on the dashboard.
        _sign_in(browser, base, tokens["reader"])
        assert browser.current_url == f"{base}/dashboard"
        assert find(By.ID, "who").text == "reader-user (reader)"
        session = next(c for c in browser.get_cookies()
                       if c["name"] == "mbom_session")
        assert session["httpOnly"] is True
        assert session["sameSite"] == "Strict"
        flags = find(By.ID, "flags").text
        assert "hub/base@1" in flags
        assert "2x2 patch" in flags

        # Dashboard -> the flagged base's blast radius -> the affected deployment's page.
        find(By.CSS_SELECTOR, "#flags a.blast").click()
        assert find(By.ID, "root").text == "hub/base@1"
        assert "1 deployments of 1 versions" in find(By.ID, "counts").text
        affected = find(By.ID, "affected").text
        assert "hub/base@1 → ft@1 → app@1" in affected
        assert "fraud" in affected
        find(By.CSS_SELECTOR, "#affected td a").click()
        assert find(By.ID, "ref").text == "app@1"
        assert "hub/base@1" in find(By.ID, "sources").text
        # The reader is offered no action.
        browser.get(f"{base}/models/other@1")
        assert not browser.find_elements(By.ID, "flag-form")

        # An admin flags other@1: the preview says what it changes, the confirmation does it.
        _sign_in(browser, base, tokens["admin"])
        browser.get(f"{base}/models/other@1")
        find(By.ID, "flag-reason").send_keys("typosquat of a popular base")
        find(By.CSS_SELECTOR, "#flag-form button").click()
        assert "changes the status of 0 descendant versions" in find(By.ID, "preview").text
        find(By.CSS_SELECTOR, "#flag-confirm button").click()
        assert find(By.ID, "root").text == "other@1"
        browser.get(f"{base}/dashboard")
        assert "typosquat of a popular base" in find(By.ID, "flags").text

        # Signing out ends the session.
        find(By.CSS_SELECTOR, ".who button").click()
        browser.get(f"{base}/dashboard")
        assert find(By.ID, "token")  # back on the sign-in form


def test_the_lineage_picture_is_drawn_and_its_nodes_navigate(
    driver: WebDriver, incident: tuple[str, dict[str, str]], tmp_path: Path
) -> None:
    browser = driver
    url, tokens = incident
    with serve_in_subprocess(MBOM, {"MBOM_DATABASE_URL": url}, tmp_path / "serve.log") as base:
        find = browser.find_element
        _sign_in(browser, base, tokens["reader"])
        browser.get(f"{base}/models/ft@1")
        picture = find(By.CSS_SELECTOR, "#lineage svg")
        assert picture.is_displayed()
        assert picture.size["width"] > 300
        assert picture.size["height"] > 150
        here = find(By.CSS_SELECTOR, '#lineage a[aria-current="page"]')
        assert here.get_attribute("aria-label") == "ft@1, infected · model · this version"
        parent = find(By.CSS_SELECTOR, '#lineage a[href="/models/hub/base@1"] rect')
        assert parent.is_displayed()
        assert parent.get_attribute("fill") == "#a4161a"  # compromised
        parent.click()
        assert find(By.ID, "ref").text == "hub/base@1"
        assert find(By.CSS_SELECTOR, "#lineage svg").is_displayed()
