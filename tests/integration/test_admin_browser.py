"""A marketer's afternoon in a real headless browser (Debian's chromium and chromedriver):
log in, create a store and a campaign, watch the SMS preview, activate, let the simulator's
shoppers walk in, and read non-zero results (a screenshot of the results page is kept in
test-artifacts/); draw a store's outline on its map."""

import json
import os
from pathlib import Path

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command

from promotions import geo
from promotions.models import Campaign, Store
from tests.integration.conftest import ROOT

pytestmark = pytest.mark.integration

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"


@pytest.fixture
def browser():
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        message = "chromium and chromium-driver are not installed (make test installs them)."
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    os.environ["SE_OFFLINE"] = "true"  # never let Selenium download a browser or a driver
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        "--window-size=1280,1400",
    ):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.implicitly_wait(5)
    yield driver
    driver.quit()


def sign_in(browser, live_server, username: str, password: str):
    """Sign in through the admin's login form; returns a WebDriverWait for the pages that
    follow. It waits for the index page: the login page has the admin's header too, and a
    page asked for before the login's redirect lands is answered as anonymous."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 10)
    browser.get(live_server.url + "/admin/login/")
    browser.find_element(By.ID, "id_username").send_keys(username)
    browser.find_element(By.ID, "id_password").send_keys(password)
    browser.find_element(By.CSS_SELECTOR, "input[type=submit]").click()
    wait.until(expected_conditions.title_contains("Site administration"))
    return wait


def log_in(browser, live_server):
    """Log a new superuser in; returns a WebDriverWait for the pages that follow."""
    User.objects.create_superuser("marie", password="a-long-test-password")
    return sign_in(browser, live_server, "marie", "a-long-test-password")


def add_store(browser, live_server, **values: str) -> None:
    """Open the store form and type these values (a Paris store unless told otherwise)."""
    from selenium.webdriver.common.by import By

    browser.get(live_server.url + "/admin/promotions/store/add/")
    for name, value in {"timezone": "Europe/Paris", **values}.items():
        browser.find_element(By.ID, f"id_{name}").send_keys(value)


def test_a_marketer_creates_a_campaign_and_reads_its_results(postgres, live_server, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import Select

    wait = log_in(browser, live_server)

    def field(name):
        return browser.find_element(By.ID, f"id_{name}")

    add_store(
        browser,
        live_server,
        code="LOUVRE",
        name="Passage Louvre",
        address="99 Rue de Rivoli, 75001 Paris",
        latitude="48.8611",
        longitude="2.3364",
        radius_m="80",
    )
    assert browser.find_element(By.ID, "store-map").is_displayed()
    browser.find_element(By.NAME, "_save").click()
    wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".success")))

    browser.get(live_server.url + "/admin/promotions/campaign/add/")
    field("name").send_keys("Louvre welcome")
    field("offer_template").clear()
    field("offer_template").send_keys("Bonjour {first_name}, welcome to {store_name}: {code}")
    wait.until(
        expected_conditions.text_to_be_present_in_element(
            # No store chosen yet, so every store: the preview names one of them.
            (By.ID, "sms-preview"),
            "Bonjour Léa, welcome to Passage Louvre",
        )
    )
    assert "GSM-7 · 1 segment" in browser.find_element(By.ID, "sms-preview").text
    browser.find_element(By.NAME, "_save").click()
    wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".success")))
    campaign = Campaign.objects.get(name="Louvre welcome")

    browser.get(live_server.url + "/admin/promotions/campaign/")
    browser.find_element(
        By.CSS_SELECTOR, f"input[name=_selected_action][value='{campaign.pk}']"
    ).click()
    Select(browser.find_element(By.NAME, "action")).select_by_value("activate")
    browser.find_element(By.NAME, "index").click()
    wait.until(
        expected_conditions.text_to_be_present_in_element(
            (By.CSS_SELECTOR, ".messagelist"), "1 campaign(s) activated."
        )
    )

    call_command("simulate", shoppers=30, minutes=8, seed=2, quiet=True)

    browser.get(f"{live_server.url}/admin/promotions/campaign/{campaign.pk}/results/")
    sent = int(browser.find_element(By.ID, "sent").text)
    decisions = int(browser.find_element(By.ID, "decisions").text)
    artifacts = ROOT / "test-artifacts"
    artifacts.mkdir(exist_ok=True)
    browser.save_screenshot(str(artifacts / "campaign-results.png"))
    assert sent > 0 and decisions >= sent
    assert browser.find_element(By.CSS_SELECTOR, "svg rect") is not None


def test_a_marketer_draws_a_store_s_outline_on_its_map(postgres, live_server, browser):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions

    wait = log_in(browser, live_server)
    add_store(
        browser,
        live_server,
        code="OPERA",
        name="Passage Opéra",
        latitude="48.8712",
        longitude="2.3316",
        radius_m="60",
    )
    outline = browser.find_element(By.ID, "store-draw")
    outline.click()
    the_map = browser.find_element(By.ID, "store-map")
    for dx, dy in ((-80, -60), (80, -60), (90, 70), (-70, 80)):  # around the pin, in pixels
        ActionChains(browser).move_to_element_with_offset(the_map, dx, dy).click().perform()
    outline.click()

    drawn = json.loads(browser.find_element(By.ID, "id_polygon").get_attribute("value"))
    assert browser.find_element(By.ID, "id_radius_m").get_attribute("value") == ""
    browser.find_element(By.NAME, "_save").click()
    wait.until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, ".success")))

    store = Store.objects.get(code="OPERA")
    assert store.radius_m is None and store.polygon == drawn
    ring = drawn["coordinates"][0]
    assert len(ring) == 5 and ring[0] == ring[-1]
    fence = geo.fence_from_store(store.pk, store.latitude, store.longitude, None, store.polygon)
    assert geo.signed_distance_m(fence, store.latitude, store.longitude) < 0  # the pin inside
