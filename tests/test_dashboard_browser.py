"""The dashboard in a real browser, against the real processes.

Debian's chromium, headless, driven by Selenium through Debian's
chromedriver, each run with a fresh profile; against a real ``twistd
jeisson-aggregator`` (its API on a free loopback port) with two real homes
and their software boards, on the default secure path (mutual TLS,
authenticated boards, the stores on).  The tests check what an operator
would: the page loads with no console error and goes live; an event added
from the page's form reaches the aggregator and the homes (their budgets),
and a bad field is answered next to that field; the plot advances as
rounds run; a click on a load opens its audit chain; the owner's page of a
home loads and lists its loads.

A failing test saves a screenshot of the page (its path printed).  Skipped
only when chromium is not installed (``scripts/setup.sh --test`` installs
it).
"""

import contextlib
import json
import os
import shutil
import tempfile
import time
import urllib.request

import pytest

from tests.lab import start_lab
from tests.waiting import wait_for

CHROMIUM = shutil.which("chromium") or ("/usr/bin/chromium" if os.path.exists("/usr/bin/chromium") else None)
CHROMEDRIVER = shutil.which("chromedriver") or "/usr/bin/chromedriver"

pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                                                         "(scripts/setup.sh --test installs it)")

SHOTS = os.path.join(tempfile.gettempdir(), "jeisson-dashboard-failures")

HOMES = {
    "home-a": [("a1", 2000, 10, "no"), ("a2", 1500, 5, "no"), ("a3", 300, 50, "yes")],
    "home-b": [("b1", 2500, 8, "no"), ("b2", 1000, 3, "no")],
}


def api(port, path, method="GET", body=None):
    request = urllib.request.Request(f"http://127.0.0.1:{port}/api/v1{path}", method=method,
                                     data=None if body is None else json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"} if body is not None else {})
    with urllib.request.urlopen(request, timeout=10) as response:
        return json.load(response)


def api_or_none(port, path):
    try:
        return api(port, path)
    except OSError:
        return None


@pytest.fixture(scope="module")
def system(tmp_path_factory, credentials):
    lab = start_lab(str(tmp_path_factory.mktemp("browser")), HOMES, credentials)
    try:
        def ready():
            homes = api_or_none(lab.ports["api"], "/homes")
            return homes and all(h["connected"] and h["loads"] and all(load["on"] == load["wanted"]
                                                                       for load in h["loads"])
                                 for h in homes["homes"]) and homes

        wait_for(ready, 30, "both homes to connect and report, their loads as their owners set them")
        yield {"work": lab.work, "ports": lab.ports, "fleet": lab.fleet}
    finally:
        lab.stop()


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
                 "--window-size=1400,1800", f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(CHROMEDRIVER))
    try:
        yield driver
    finally:
        driver.quit()


@contextlib.contextmanager
def screenshot_on_failure(driver, name):
    """A failing block leaves a screenshot of the page behind, its path printed."""
    try:
        yield
    except BaseException:
        os.makedirs(SHOTS, exist_ok=True)
        path = os.path.join(SHOTS, f"{name}-{int(time.time())}.png")
        try:
            driver.save_screenshot(path)
            print(f"screenshot of the failing page: {path}")
        except Exception as e:  # the browser itself may be what failed
            print(f"no screenshot ({e})")
        raise


def console_errors(driver) -> list[str]:
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def js(driver, script, *args):
    return driver.execute_script(script, *args)


def until(driver, script, seconds, what, *args):
    """Wait (polling the page's state, no fixed sleep) until ``script`` returns a true value."""
    return wait_for(lambda: js(driver, script, *args), seconds, what)


def open_dashboard(driver, system):
    driver.get(f"http://127.0.0.1:{system['ports']['api']}/")
    until(driver, "return document.getElementById('link').dataset.state === 'live'", 15, "the stream to go live")
    until(driver, "return document.querySelectorAll('#homes tbody tr[data-home]').length === 2", 15,
          "both homes in the table")


def event_in_force(ports, event_id):
    """An event binds and a round ran under it (one added through the API
    for a test run alone; in file order, the page's own is in force)."""
    if api(ports["api"], "/status")["limit_w"] is None:
        api(ports["api"], "/events", "POST", {"id": event_id, "limit_kw": 4, "start": "+1", "end": "+600"})
    wait_for(lambda: api(ports["api"], "/status")["last_round"] is not None, 20, "a round")


def test_the_dashboard_loads_live_with_no_console_error(system, browser):
    with screenshot_on_failure(browser, "loads"):
        browser.get_log("browser")  # what an earlier page logged
        open_dashboard(browser, system)
        assert js(browser, "return document.getElementById('homes-count').textContent") == "2 / 2"
        loads = js(browser, "return [...document.querySelectorAll('#homes button.load')].map(b => b.dataset.load)")
        assert sorted(loads) == ["a1", "a2", "a3", "b1", "b2"]
        assert console_errors(browser) == []


def test_an_event_added_from_the_page_reaches_the_aggregator_and_the_homes(system, browser):
    ports = system["ports"]
    with screenshot_on_failure(browser, "event"):
        open_dashboard(browser, system)
        form = browser.find_element("id", "event-form")

        def fill(**values):
            for name, value in values.items():
                field = form.find_element("name", name)
                field.clear()
                field.send_keys(value)

        # A bad field first: the API's answer is shown next to it.
        fill(id="from-page", limit_kw="4", start="tomorrow-ish", end="+600")
        form.find_element("css selector", "button[type=submit]").click()
        message = until(browser, "return document.querySelector('.error[data-field=start]').textContent", 10,
                        "the API's error next to the start field")
        assert "start" in message or "tomorrow-ish" in message
        # The browser reports the refused request itself, and nothing else went wrong.
        refused = console_errors(browser)
        assert len(refused) == 1 and "/api/v1/events" in refused[0] and "422" in refused[0], refused
        # Then a good one: +2 s from now, ten minutes long.
        fill(start="+2")
        form.find_element("css selector", "button[type=submit]").click()
        until(browser, "return document.getElementById('event-result').textContent.includes('added')", 10,
              "the page to say the event was added")
        assert js(browser, "return document.querySelector('.error[data-field=start]').textContent") == ""
        # The aggregator has it, and the page lists it (pushed, not asked for).
        assert [e["id"] for e in api(ports["api"], "/events")["events"]] == ["from-page"]
        until(browser, "return document.querySelector('#events tr[data-event=\"from-page\"]') !== null", 10,
              "the event in the page's list")
        # The homes got their budgets: each home's own API, and the dashboard's table.
        for home in HOMES:
            wait_for(lambda home=home: api(ports[home + "-api"], "/status")["budget_w"] is not None, 20,
                     f"{home}'s budget")
        until(browser, "return [...document.querySelectorAll('#homes td.budget')].every(td => td.textContent !== '–')",
              10, "the budgets in the homes table")
        assert console_errors(browser) == []


def test_the_plot_advances_as_rounds_run(system, browser):
    ports = system["ports"]
    with screenshot_on_failure(browser, "plot"):
        event_in_force(ports, "for-the-plot")
        open_dashboard(browser, system)
        read = "const c = document.getElementById('plot'); return [Number(c.dataset.points), Number(c.dataset.rounds)]"
        points, rounds = js(browser, read)
        # The rows shown asked of the API (by id) at each round: the table is current within a round.
        fetched = ("return performance.getEntriesByType('resource')"
                   ".filter(e => e.name.endsWith('/api/v1/homes?id=home-a&id=home-b')).length")
        asked = js(browser, fetched)
        # Rounds run every 2 s while the event binds: three more reach the page.
        wait_for(lambda: js(browser, read)[1] >= rounds + 3 and js(browser, read)[0] > points, 20,
                 "the plot to take three more rounds and new points")
        until(browser, fetched + f" >= {asked + 3}", 5, "the page's rows asked of the API at each round")
        assert len(js(browser, "return document.querySelectorAll('#rounds tbody tr[data-round]')")) >= 3
        assert js(browser, "return document.getElementById('verdict').dataset.verdict") in ("within", "over")
        # Drawn, not blank: the plot's pixels are not all one colour.
        colours = js(browser, """const c = document.getElementById('plot');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            const seen = new Set();
            for (let i = 0; i < d.length; i += 4 * 97) seen.add(d[i] + ',' + d[i + 1] + ',' + d[i + 2]);
            return seen.size""")
        assert colours > 3
        assert console_errors(browser) == []


def test_a_click_on_a_load_opens_its_audit_chain(system, browser):
    ports = system["ports"]
    with screenshot_on_failure(browser, "why"):
        event_in_force(ports, "for-why")
        open_dashboard(browser, system)
        # Found and clicked in one step: the rows are drawn afresh as the push and each round's fetch bring them.
        js(browser, "document.querySelector(\"#homes button.load[data-home='home-a'][data-load='a1']\").click()")
        until(browser, "return document.getElementById('why').open", 5, "the dialog to open")
        until(browser, "return document.querySelectorAll('#why ol.chain li').length > 0", 15, "the chain's links")
        kinds = js(browser, "return [...document.querySelectorAll('#why ol.chain .kind')].map(k => k.textContent)")
        assert kinds[0] == "commit"
        assert "home home-a, load a1" in js(browser, "return document.querySelector('#why pre.why-text').textContent")
        browser.find_element("id", "why-close").click()
        until(browser, "return !document.getElementById('why').open", 5, "the dialog to close")
        assert console_errors(browser) == []


def test_the_owners_page_shows_the_homes_loads_live(system, browser):
    port = system["ports"]["home-a-api"]
    with screenshot_on_failure(browser, "home"):
        browser.get_log("browser")
        browser.get(f"http://127.0.0.1:{port}/")
        until(browser, "return document.getElementById('link').dataset.state === 'live'", 15, "the stream to go live")
        until(browser, "return document.querySelectorAll('#loads tbody tr[data-load]').length === 3", 10,
              "the home's three loads")
        assert js(browser, "return document.getElementById('home-id').textContent") == "home-a"
        # The owner wants a2 the other way: stored by the home, shown on the page.
        [wanted] = [load["desired"] for load in api(port, "/loads")["loads"] if load["id"] == "a2"]
        # Found and clicked in one step: the rows are drawn afresh as the push brings them (a stale element).
        js(browser, "document.querySelector(\"#loads button.load[data-load='a2']\").click()")
        until(browser, "return document.getElementById('load-result').textContent.includes('a2: you want it')", 10,
              "the page to say the setting was taken")
        [now] = [load["desired"] for load in api(port, "/loads")["loads"] if load["id"] == "a2"]
        assert now is (not wanted)
        assert console_errors(browser) == []
