"""Review 6, in a real headless browser (Debian's chromium, as test_admin_browser.py): a
read-only store page draws the store's fence from what the page carries (its map used to
read inputs such a page does not have, and stayed blank), and the campaign page's live
preview says it is unavailable instead of keeping the previous one. The store page's map
draws an outline typed or pasted as the server takes it, and one across the antimeridian
around the store; an outline drawn or a pin dragged there gives longitudes on the globe."""

import pytest
from django.contrib.auth.models import Group, Permission, User

from tests.factories import StoreFactory
from tests.integration.test_admin_browser import browser, sign_in  # noqa: F401

pytestmark = [pytest.mark.integration, pytest.mark.django_db(transaction=True)]

PASSWORD = "a-long-test-password"


def log_in(browser, live_server, user: User) -> None:  # noqa: F811
    sign_in(browser, live_server, user.username, PASSWORD)


@pytest.mark.parametrize("may_change", [True, False])
def test_the_store_page_draws_the_fence_for_whoever_may_view_it(
    live_server,
    browser,  # noqa: F811
    settings,
    may_change,
):
    from selenium.webdriver.common.by import By

    settings.MAP_TILES_URL = ""  # offline: the fence still draws, says the README
    store = StoreFactory(latitude=48.8606, longitude=2.3417, radius_m=60)
    user = User.objects.create_user("vera", password=PASSWORD, is_staff=True)
    codenames = ["view_store", "view_zone"] + (["change_store"] if may_change else [])
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))
    log_in(browser, live_server, user)

    browser.get(f"{live_server.url}/admin/promotions/store/{store.pk}/change/")

    browser.find_element(By.ID, "store-map")
    fences = browser.find_elements(By.CSS_SELECTOR, "#store-map path.leaflet-interactive")
    pins = browser.find_elements(By.CSS_SELECTOR, "#store-map .leaflet-marker-icon")
    draggable = browser.find_elements(By.CSS_SELECTOR, "#store-map .leaflet-marker-draggable")
    buttons = browser.find_elements(By.CSS_SELECTOR, "#store-geocode, #store-draw, #store-circle")
    assert len(fences) == 1 and len(pins) == 1
    assert (len(draggable), len(buttons)) == ((1, 3) if may_change else (0, 0))


def test_a_read_only_store_page_draws_its_outline(live_server, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    square = [[2.3410, 48.8600], [2.3424, 48.8600], [2.3424, 48.8612], [2.3410, 48.8612]]
    store = StoreFactory(
        latitude=48.8606,
        longitude=2.3417,
        radius_m=None,
        polygon={"type": "Polygon", "coordinates": [[*square, square[0]]]},
    )
    user = User.objects.create_user("vera", password=PASSWORD, is_staff=True)
    user.user_permissions.add(*Permission.objects.filter(codename__in=["view_store"]))
    log_in(browser, live_server, user)

    browser.get(f"{live_server.url}/admin/promotions/store/{store.pk}/change/")

    [outline] = browser.find_elements(By.CSS_SELECTOR, "#store-map path.leaflet-interactive")
    # A polygon's path closes with "z"; a circle's is two arcs.
    assert outline.get_attribute("d").rstrip().lower().endswith("z")


def test_a_preview_the_server_refuses_says_so_instead_of_keeping_the_last(
    live_server,
    browser,  # noqa: F811
):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    StoreFactory(name="Passage Louvre")
    marketers = Group.objects.get(name="Marketers")
    user = User.objects.create_user("marie", password=PASSWORD, is_staff=True)
    user.groups.add(marketers)
    log_in(browser, live_server, user)
    wait = WebDriverWait(browser, 10)
    browser.get(live_server.url + "/admin/promotions/campaign/add/")
    template = browser.find_element(By.ID, "id_offer_template")
    template.clear()
    template.send_keys("Bonjour {first_name} at {store_name}: {code}")
    wait.until(
        expected_conditions.text_to_be_present_in_element(
            (By.ID, "sms-preview"), "Bonjour Léa at Passage Louvre"
        )
    )

    # Taken out of the group while the page is open: the next preview is refused.
    user.groups.remove(marketers)
    template.send_keys(" {first_name}")

    wait.until(
        expected_conditions.text_to_be_present_in_element(
            (By.ID, "sms-preview"), "Preview unavailable: Your account may not write campaigns."
        )
    )
    assert "Bonjour Léa" not in browser.find_element(By.ID, "sms-preview").text


# The store's outline as map editors export it; the page's map draws each as the server takes it
# (promotions.geo.outline_geometry), as the marketer types or pastes it.
SQUARE = [[2.3410, 48.8600], [2.3424, 48.8600], [2.3424, 48.8612], [2.3410, 48.8612]]
OUTLINE = {"type": "Polygon", "coordinates": [[*SQUARE, SQUARE[0]]]}
ONE_OUTLINE = "One outline per store: paste a single Polygon."


def marketer_on_store_page(browser, live_server, store):  # noqa: F811
    user = User.objects.create_user("marie", password=PASSWORD, is_staff=True)
    user.groups.add(Group.objects.get(name="Marketers"))
    log_in(browser, live_server, user)
    browser.get(f"{live_server.url}/admin/promotions/store/{store.pk}/change/")


@pytest.mark.parametrize(
    "pasted",
    [
        OUTLINE,
        {"type": "Feature", "properties": {"name": "Louvre"}, "geometry": OUTLINE},
        {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": OUTLINE}]},
        {"type": "MultiPolygon", "coordinates": [OUTLINE["coordinates"]]},
    ],
    ids=["a Polygon", "a Feature", "a FeatureCollection of one", "a MultiPolygon of one"],
)
def test_an_outline_typed_in_is_drawn_as_the_server_takes_it(
    live_server,
    browser,  # noqa: F811
    settings,
    pasted,
):
    import json

    from selenium.webdriver.common.by import By

    settings.MAP_TILES_URL = ""
    store = StoreFactory(latitude=48.8606, longitude=2.3417, radius_m=60)
    marketer_on_store_page(browser, live_server, store)
    browser.find_element(By.ID, "id_radius_m").clear()

    # Typed, each character redraws the map: it is not valid GeoJSON until the last one.
    browser.find_element(By.ID, "id_polygon").send_keys(json.dumps(pasted))

    [outline] = browser.find_elements(By.CSS_SELECTOR, "#store-map path.leaflet-interactive")
    assert outline.get_attribute("d").rstrip().lower().endswith("z")
    assert browser.find_element(By.ID, "store-map-status").text == ""


@pytest.mark.parametrize(
    "pasted",
    [
        {"type": "MultiPolygon", "coordinates": [OUTLINE["coordinates"]] * 2},
        {"type": "FeatureCollection", "features": [{"type": "Feature", "geometry": OUTLINE}] * 2},
    ],
    ids=["a MultiPolygon of two", "two Features"],
)
def test_two_outlines_typed_in_are_refused_as_the_server_refuses_them(
    live_server,
    browser,  # noqa: F811
    settings,
    pasted,
):
    import json

    from selenium.webdriver.common.by import By

    settings.MAP_TILES_URL = ""
    store = StoreFactory(latitude=48.8606, longitude=2.3417, radius_m=60)
    marketer_on_store_page(browser, live_server, store)
    browser.find_element(By.ID, "id_radius_m").clear()

    browser.find_element(By.ID, "id_polygon").send_keys(json.dumps(pasted))

    assert not browser.find_elements(By.CSS_SELECTOR, "#store-map path.leaflet-interactive")
    assert browser.find_element(By.ID, "store-map-status").text == ONE_OUTLINE


# Taveuni, Fiji: a store's two wings and their courtyard, the antimeridian through it.
TAVEUNI_U = [
    [179.999, -16.801],
    [-179.999, -16.801],
    [-179.999, -16.798],
    [-179.9995, -16.798],
    [-179.9995, -16.800],
    [179.9995, -16.800],
    [179.9995, -16.798],
    [179.999, -16.798],
]


@pytest.mark.parametrize("longitude", [180.0, -179.9995, 179.9995])
def test_an_outline_across_the_antimeridian_is_drawn_around_the_store(
    live_server,
    browser,  # noqa: F811
    settings,
    longitude,
):
    from selenium.webdriver.common.by import By

    settings.MAP_TILES_URL = ""
    store = StoreFactory(
        latitude=-16.7995,
        longitude=longitude,
        radius_m=None,
        polygon={"type": "Polygon", "coordinates": [[*TAVEUNI_U, TAVEUNI_U[0]]]},
        timezone="Pacific/Fiji",
    )
    marketer_on_store_page(browser, live_server, store)

    [outline] = browser.find_elements(By.CSS_SELECTOR, "#store-map path.leaflet-interactive")
    drawn = outline.rect
    pin = browser.find_element(By.CSS_SELECTOR, "#store-map .leaflet-marker-icon").rect
    pin_x = pin["x"] + pin["width"] / 2
    # Under 200 pixels wide at the page's zoom, around the pin: not across the world and back.
    assert drawn["width"] < 250
    assert drawn["x"] < pin_x < drawn["x"] + drawn["width"]


def test_an_outline_drawn_across_the_antimeridian_is_saved(
    live_server,
    browser,  # noqa: F811
    settings,
):
    import json

    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    settings.MAP_TILES_URL = ""
    store = StoreFactory(latitude=-16.7995, longitude=180.0, radius_m=60, timezone="Pacific/Fiji")
    marketer_on_store_page(browser, live_server, store)
    pin = browser.find_element(By.CSS_SELECTOR, "#store-map .leaflet-marker-icon")

    # The corners around the store's pin, on either side of the antimeridian.
    browser.find_element(By.ID, "store-draw").click()
    for x, y in [(-90, -70), (90, -70), (90, 70), (-90, 70)]:
        ActionChains(browser).move_to_element_with_offset(pin, x, y).click().perform()
    browser.find_element(By.ID, "store-draw").click()

    drawn = json.loads(browser.find_element(By.ID, "id_polygon").get_attribute("value"))
    longitudes = [lon for lon, _ in drawn["coordinates"][0]]
    assert all(-180 <= lon <= 180 for lon in longitudes)
    assert min(longitudes) < -179.99 and max(longitudes) > 179.99  # both sides of it
    browser.find_element(By.NAME, "_save").click()
    WebDriverWait(browser, 10).until(expected_conditions.url_matches(r"/store/$"))
    store.refresh_from_db()
    assert (store.radius_m, store.polygon) == (None, drawn)


def test_the_pin_dragged_across_the_antimeridian_gives_a_longitude_on_the_globe(
    live_server,
    browser,  # noqa: F811
    settings,
):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    settings.MAP_TILES_URL = ""
    store = StoreFactory(
        latitude=-16.7995,
        longitude=179.9995,
        radius_m=None,
        polygon={"type": "Polygon", "coordinates": [[*TAVEUNI_U, TAVEUNI_U[0]]]},
        timezone="Pacific/Fiji",
    )
    marketer_on_store_page(browser, live_server, store)
    pin = browser.find_element(By.CSS_SELECTOR, "#store-map .leaflet-marker-icon")

    # About 0.001 degrees east: past the antimeridian, still in the store's outline.
    ActionChains(browser).click_and_hold(pin).move_by_offset(40, 0).move_by_offset(
        60, 0
    ).release().perform()

    longitude = float(browser.find_element(By.ID, "id_longitude").get_attribute("value"))
    assert -180 < longitude < -179.999
    # The outline is still drawn around the pin, not on the far side of the world.
    [outline] = browser.find_elements(By.CSS_SELECTOR, "#store-map path.leaflet-interactive")
    drawn, at = outline.rect, pin.rect
    assert drawn["x"] < at["x"] + at["width"] / 2 < drawn["x"] + drawn["width"]
    browser.find_element(By.NAME, "_save").click()
    WebDriverWait(browser, 10).until(expected_conditions.url_matches(r"/store/$"))
    store.refresh_from_db()
    assert store.longitude == longitude


def test_use_a_circle_while_drawing_an_outline_stops_the_drawing(
    live_server,
    browser,  # noqa: F811
    settings,
):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By

    settings.MAP_TILES_URL = ""
    store = StoreFactory(latitude=48.8606, longitude=2.3417, radius_m=60)
    marketer_on_store_page(browser, live_server, store)
    pin = browser.find_element(By.CSS_SELECTOR, "#store-map .leaflet-marker-icon")
    draw = browser.find_element(By.ID, "store-draw")

    draw.click()
    for x, y in [(-90, -70), (90, -70), (90, 70)]:
        ActionChains(browser).move_to_element_with_offset(pin, x, y).click().perform()
    browser.find_element(By.ID, "store-circle").click()
    # A click on the map afterwards, to look at it: no corner is added.
    ActionChains(browser).move_to_element_with_offset(pin, -90, 70).click().perform()

    assert draw.text == "Draw the outline"
    assert not browser.find_elements(By.CSS_SELECTOR, "#store-map path[stroke-dasharray]")
    assert browser.find_element(By.ID, "id_polygon").get_attribute("value") == ""
    assert browser.find_element(By.ID, "store-map-status").text == (
        "A circle of the radius above: save the store to keep it."
    )
    draw.click()  # drawing again starts a new outline
    assert browser.find_element(By.ID, "store-map-status").text == (
        "Click the map at each corner of the store."
    )
