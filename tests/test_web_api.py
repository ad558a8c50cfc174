"""The JSON API of the aggregator and of a home, over HTTP in memory.

A real ``Aggregator`` on a ``task.Clock`` with fake homes (``Net`` of
tests/peers.py), with a real SQLite store under ``tmp_path`` where the
store matters; a real ``Home`` with its store for the owner's API.  Each
request goes through the whole ``Site`` (guard, routes, rendering) on a
``StringTransport`` (tests/http_memory.py); the assertions are on what a
client reads: status, error body, JSON, CSV.
"""

import csv
import io
import json
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock

from jeisson.home.config import config_from_string as home_config
from jeisson.home.core import Home
from jeisson.store.sqlite import SqliteStore
from jeisson.web.aggregator_api import AggregatorApi, home_view
from jeisson.web.home_api import HomeApi
from jeisson.web.openapi import document
from jeisson.web.site import build_site
from jeisson.wire import aggregator_home as wire
from jeisson.wire.utc import format_utc
from tests.http_memory import IDLE, request
from tests.peers import Net, load
from tests.test_aggregator_memory import StoredNet

pytestmark = pytest.mark.usefixtures("logs")

START, END, LIMIT_W = 20.0, 200.0, 5000.0
CONFIG = f"""
[aggregator]
listen = tcp:7700:interface=127.0.0.1
heartbeat_s = 600
round_period_s = 30
round_timeout_s = 5
[home:h1]
secret = s1
max_kw = 0
[home:h2]
secret = s2
max_kw = 0
[event:peak]
limit_kw = {LIMIT_W / 1000:g}
start = +{START:g}
end = +{END:g}
"""
H1_LOADS = (load("oven", 3000, priority=10, on=True), load("dryer", 1000, priority=1, on=True))
H2_LOADS = (load("ev", 2000, priority=5, on=False),)


def api_site(net, **options):
    api = AggregatorApi(net.aggregator, **options)
    site = build_site(api.routes())
    site.reactor = net.clock  # the channels' idle timeouts on the net's clock, not the global reactor
    return api, site


@pytest.fixture
def plain():
    net = Net(CONFIG)
    api, site = api_site(net)
    return net, site


@pytest.fixture
def stored(tmp_path):
    net = StoredNet(CONFIG, tmp_path / "aggregator.sqlite")
    api, site = api_site(net, rounds_kept=2, max_rows=3)
    return net, site


def get(site, path, **kw):
    response = request(site, "GET", path, **kw)
    assert response.done, response
    return response


def ok(site, path, **kw):
    response = get(site, path, **kw)
    assert response.status == 200, response
    assert response.headers["content-type"].startswith("application/json")
    return response.json()


def error_of(response, status, code, field=None):
    assert response.status == status, response
    body = response.json()["error"]
    assert body["status"] == status and body["code"] == code, body
    assert body.get("field") == field, body
    assert body["message"]
    return body["message"]


def run_round(net, h1, h2):
    """The first round of ``peak``: h1 sheds to 3000 W, h2 is granted 2000 W."""
    net.run_until(START)
    h1.commit(1, 3000, on=("oven",))
    h2.commit(1, 2000, on=("ev",))
    assert net.summary.number == 1


# ------------------------------------------------------------------ status


def test_status_tells_the_limit_the_totals_and_the_verdict_judged_on_both(plain):
    net, site = plain
    h1 = net.home("h1", *H1_LOADS)
    h2 = net.home("h2", *H2_LOADS)
    before = ok(site, "/api/v1/status")
    assert before["limit_w"] is None and before["event"] is None and before["within_limit"] is True
    assert before["next_event"]["id"] == "peak" and before["next_event"]["starts_in_s"] == START
    assert before["homes"] == {"total": 2, "connected": 2, "silent": 0}
    run_round(net, h1, h2)
    during = ok(site, "/api/v1/status")
    assert during["limit_w"] == LIMIT_W and during["event"]["state"] == "in-force"
    assert during["committed_w"] == 5000.0 and during["within_limit"] is True and during["over_w"] == 0
    assert during["last_round"]["number"] == 1 and during["rounds_run"] == 1
    # Committed within, measured above: not within (the demo's 12.49 kW of 12.00).
    h1.say(wire.Measure(START + 1, 3490.0, ()))
    h2.say(wire.Measure(START + 1, 2000.0, ()))
    over = ok(site, "/api/v1/status")
    assert over["measured_w"] == 5490.0 and over["committed_w"] == 5000.0
    assert over["within_limit"] is False and over["over_w"] == pytest.approx(490.0)


# ------------------------------------------------------------------- homes


def test_homes_are_listed_by_id_filtered_and_named_one_by_one(plain):
    net, site = plain
    net.home("h2", *H2_LOADS)
    homes = ok(site, "/api/v1/homes")["homes"]
    assert [h["id"] for h in homes] == ["h1", "h2"]
    assert [h["id"] for h in ok(site, "/api/v1/homes?connected=true")["homes"]] == ["h2"]
    assert [h["id"] for h in ok(site, "/api/v1/homes?connected=false")["homes"]] == ["h1"]
    h2 = ok(site, "/api/v1/homes/h2")
    assert h2["connected"] is True and h2["link"]["since"] == format_utc(0) and h2["demand_w"] == 2000.0
    assert h2["loads"] == [{"id": "ev", "rated_w": 2000, "priority": 5, "mode": "may", "on": False,
                            "critical": False, "wanted": True}]
    error_of(get(site, "/api/v1/homes/h9"), 404, "not-found")
    error_of(get(site, "/api/v1/homes?connected=maybe"), 422, "bad-field", "connected")
    error_of(get(site, "/api/v1/homes?colour=red"), 400, "unknown-field", "colour")


# ------------------------------------------------------------------ events


def committed_state(path):
    db = sqlite3.connect(str(path))
    try:
        return {key: json.loads(value) for key, value in
                db.execute("SELECT key, value FROM state WHERE scope = 'event'").fetchall()}
    finally:
        db.close()


def test_an_event_added_modified_and_cancelled_is_durable_before_each_reply(stored, tmp_path):
    net, site = stored
    path = tmp_path / "aggregator.sqlite"
    added = request(site, "POST", "/api/v1/events", {"id": "gala", "limit_kw": 8, "start": "+60", "end": "+1800",
                                                     "start_window_s": 30})
    assert added.status == 201, added
    body = added.json()
    assert body["verdict"] == "added" and body["event"]["limit_w"] == 8000 and body["event"]["state"] == "scheduled"
    assert body["event"]["source"] == "the API" and body["event"]["start_window_s"] == 30
    assert committed_state(path)["gala"]["limit_w"] == 8000, "in the file when the reply came"
    modified = request(site, "PUT", "/api/v1/events/gala", {"limit_w": 7000})
    assert modified.status == 200 and modified.json()["event"]["version"] == 2, modified
    assert committed_state(path)["gala"]["limit_w"] == 7000
    cancelled = request(site, "DELETE", "/api/v1/events/gala")
    assert cancelled.status == 200 and cancelled.json()["verdict"] == "cancelled", cancelled
    assert "cancelled" in committed_state(path)["gala"]
    listed = ok(site, "/api/v1/events?state=cancelled")["events"]
    assert [(e["id"], e["limit_w"], e["state"]) for e in listed] == [("gala", 7000, "cancelled")]
    assert [e["id"] for e in ok(site, "/api/v1/events?state=scheduled")["events"]] == ["peak"]
    # Cancelled, the id can be added anew (a version above the cancellation).
    again = request(site, "POST", "/api/v1/events", {"id": "gala", "limit_kw": 6, "start": "+60", "end": "+120"})
    assert again.status == 201 and again.json()["event"]["version"] == 4, again


def test_the_events_reach_the_homes(plain):
    net, site = plain
    h1 = net.home("h1", *H1_LOADS)
    assert request(site, "POST", "/api/v1/events", {"id": "now", "limit_kw": 1, "start": "+0", "end": "+600"}
                   ).status == 201
    net.run_until(1)
    assert [b.event for b in h1.budgets()] == ["now"]


@pytest.mark.parametrize("body, status, code, field", [
    ({"id": "e", "limit_kw": "x", "start": "+1", "end": "+9"}, 422, "bad-field", "limit_kw"),
    ({"id": "e", "limit_kw": -1, "start": "+1", "end": "+9"}, 422, "bad-field", "limit_kw"),
    ({"id": "e", "limit_kw": True, "start": "+1", "end": "+9"}, 422, "bad-field", "limit_kw"),
    ({"id": "e", "limit_kw": 1, "limit_w": 1000, "start": "+1", "end": "+9"}, 422, "bad-field", "limit_w"),
    ({"id": "e", "start": "+1", "end": "+9"}, 422, "missing-field", "limit_kw"),
    ({"limit_kw": 1, "start": "+1", "end": "+9"}, 422, "missing-field", "id"),
    ({"id": "e e", "limit_kw": 1, "start": "+1", "end": "+9"}, 422, "bad-field", "id"),
    ({"id": "e", "limit_kw": 1, "start": "soon", "end": "+9"}, 422, "bad-field", "start"),
    ({"id": "e", "limit_kw": 1, "start": "+1"}, 422, "missing-field", "end"),
    ({"id": "e", "limit_kw": 1, "start": "+9", "end": "+1"}, 422, "bad-field", "end"),
    ({"id": "e", "limit_kw": 1, "start": "+0", "end": "+100000"}, 422, "bad-field", "end"),
    ({"id": "e", "limit_kw": 1, "start": "+1", "end": "+9", "colour": "red"}, 422, "unknown-field", "colour"),
    ({"id": "e", "limit_kw": 1, "start": "+1", "end": "+9", "start_window_s": -5}, 422, "bad-field",
     "start_window_s"),
    ({"id": "peak", "limit_kw": 1, "start": "+1", "end": "+9"}, 409, "conflict", "id"),
    ({"id": "e", "limit_kw": 1, "start": "-100", "end": "-10"}, 422, "refused", None),
    ({"id": "e", "limit_kw": 1, "start": 1e300, "end": "+60"}, 422, "bad-field", "start"),
    ({"id": "e", "limit_kw": 1, "start": "+60", "end": "1e309"}, 422, "bad-field", "end"),
    ({"id": "e", "limit_kw": 1, "start": -1, "end": "+100000"}, 422, "bad-field", "start"),  # past: its fault
    ({"id": "e", "limit_kw": 1, "start": "\u0663", "end": "+60"}, 422, "bad-field", "start"),  # Arabic-Indic 3
    ({"id": "e", "limit_kw": 1, "start": "+\u0663", "end": "+60"}, 422, "bad-field", "start"),
])
def test_a_bad_event_is_answered_with_the_field_named(plain, body, status, code, field):
    net, site = plain
    error_of(request(site, "POST", "/api/v1/events", body), status, code, field)
    assert set(net.aggregator.schedule.book.events) == {"peak"}


def test_bodies_that_are_not_a_json_object_are_refused(plain):
    _, site = plain
    deep = b'{"a":' * 5000 + b"1" + b"}" * 5000  # under the size cap, past the recursion limit
    for raw in (b"{", b"[1]", b"", b"\xff", b'{"limit_kw": NaN}', deep):
        response = request(site, "POST", "/api/v1/events", raw, headers={"Content-Type": "application/json"})
        error_of(response, 413 if len(raw) > 65536 else 400, "bad-json")
    error_of(request(site, "POST", "/api/v1/events", b" " * 70000, headers={"Content-Type": "application/json"}),
             413, "bad-json")


def test_modify_and_cancel_name_unknown_events_and_empty_changes(plain):
    _, site = plain
    error_of(request(site, "PUT", "/api/v1/events/none", {"limit_kw": 1}), 404, "not-found")
    error_of(request(site, "DELETE", "/api/v1/events/none"), 404, "not-found")
    error_of(request(site, "PUT", "/api/v1/events/peak", {}), 422, "missing-field", "limit_kw")
    error_of(request(site, "PUT", "/api/v1/events/peak", {"id": "other"}), 422, "bad-field", "id")
    error_of(request(site, "PUT", "/api/v1/events/peak", {"end": "+1"}), 422, "bad-field", "end")
    assert request(site, "DELETE", "/api/v1/events/peak").status == 200
    assert "already cancelled" in error_of(request(site, "DELETE", "/api/v1/events/peak"), 404, "not-found")


# ------------------------------------------------------------------ rounds


def test_rounds_are_paged_newest_first_from_memory_then_from_the_store(stored):
    net, site = stored  # two rounds kept in memory
    h1 = net.home("h1", *H1_LOADS)
    h2 = net.home("h2", *H2_LOADS)
    run_round(net, h1, h2)
    for number in (2, 3, 4):
        net.aggregator.rounds.run()
        h1.commit(number, 3000, on=("oven",))
        h2.commit(number, 2000, on=("ev",))
    assert net.summary.number == 4
    first = ok(site, "/api/v1/rounds?limit=3")
    assert [r["number"] for r in first["rounds"]] == [4, 3, 2] and first["next"] == 2
    rest = ok(site, "/api/v1/rounds?limit=3&before=2")
    assert [r["number"] for r in rest["rounds"]] == [1] and rest["next"] is None
    assert rest["rounds"][0]["limit_w"] == LIMIT_W and rest["rounds"][0]["within_limit"] is True
    recent = ok(site, "/api/v1/rounds/4")
    assert set(recent["homes"]) == {"h1", "h2"} and recent["committed_w"] == 5000
    older = ok(site, "/api/v1/rounds/1")
    assert older["number"] == 1 and "homes" not in older
    error_of(get(site, "/api/v1/rounds/99"), 404, "not-found")
    error_of(get(site, "/api/v1/rounds/x"), 422, "bad-field", "number")
    for number in ("%C2%B2", "1" * 5000, "1" * 20, "-1", "+1"):  # superscript two, past int()'s digits
        error_of(get(site, f"/api/v1/rounds/{number}"), 422, "bad-field", "number")
    error_of(get(site, "/api/v1/rounds?limit=0"), 422, "bad-field", "limit")


# ----------------------------------------------------- measurements and why


def test_measurements_in_json_and_csv_capped_per_reply(stored):
    net, site = stored  # at most 3 rows per reply
    h1 = net.home("h1", *H1_LOADS)
    h2 = net.home("h2", *H2_LOADS)
    for at in (1.0, 2.0):
        net.clock.advance(1)
        h1.say(wire.Measure(at, 4000.0 + at, ()))
        h2.say(wire.Measure(at, 10.0 * at, ()))
    one = ok(site, "/api/v1/measurements?home=h1&since=0")
    assert [(s["home"], s["watts"]) for s in one["samples"]] == [("h1", 4001.0), ("h1", 4002.0)]
    assert "truncated" not in one
    capped = ok(site, "/api/v1/measurements?since=0")
    assert len(capped["samples"]) == 3 and capped["truncated"] is True
    as_csv = get(site, "/api/v1/measurements?home=h2&since=0&format=csv")
    assert as_csv.status == 200 and as_csv.headers["content-type"].startswith("text/csv")
    rows = list(csv.reader(io.StringIO(as_csv.body.decode())))
    assert rows == [["home", "at", "watts", "span_s"], ["h2", format_utc(1), "10", "0"],
                    ["h2", format_utc(2), "20", "0"]]
    by_accept = get(site, "/api/v1/measurements?home=h2&since=0", headers={"Accept": "text/csv"})
    assert by_accept.body == as_csv.body
    error_of(get(site, "/api/v1/measurements?home=h9"), 404, "not-found")
    error_of(get(site, "/api/v1/measurements?since=yesterday"), 422, "bad-field", "since")
    error_of(get(site, "/api/v1/measurements?since=10&until=5"), 422, "bad-field", "until")


def test_a_capped_reply_asks_the_store_for_one_row_more_than_it_holds(stored):
    net, site = stored  # at most 3 rows per reply
    h1 = net.home("h1", *H1_LOADS)
    for at in range(1, 7):
        net.clock.advance(1)
        h1.say(wire.Measure(float(at), 100.0 * at, ()))
    read = net.store.measurements
    asked = []

    def measurements(*args, **kwargs):
        rows = read(*args, **kwargs)
        return rows.addCallback(lambda samples: asked.append(len(samples)) or samples)

    net.store.measurements = measurements
    capped = ok(site, "/api/v1/measurements?home=h1&since=0")
    assert [s["watts"] for s in capped["samples"]] == [100.0, 200.0, 300.0] and capped["truncated"] is True
    assert asked == [4]  # 6 in the range, 4 read: the three sent and one that says there are more
    rest = ok(site, f"/api/v1/measurements?home=h1&since={format_utc(3.5)}")
    assert [s["watts"] for s in rest["samples"]] == [400.0, 500.0, 600.0] and "truncated" not in rest
    assert asked == [4, 3]


def test_without_a_store_measurements_and_why_are_unavailable(plain):
    _, site = plain
    error_of(get(site, "/api/v1/measurements"), 503, "unavailable")
    error_of(get(site, "/api/v1/why?home=h1&load=oven"), 503, "unavailable")


def test_why_answers_the_chain_as_links_and_as_text(stored):
    net, site = stored
    h1 = net.home("h1", *H1_LOADS)
    h2 = net.home("h2", *H2_LOADS)
    run_round(net, h1, h2)
    net.run_until(START + 5)
    why = ok(site, "/api/v1/why?home=h1&load=dryer")
    assert why["on"] is False and why["home"] == "h1" and why["load"] == "dryer"
    assert [link["kind"] for link in why["chain"]] == ["commit", "budget", "round", "event"]
    assert why["chain"][1]["round"] == 1 and why["chain"][1]["detail"]["w"] == 3000
    assert why["chain"][3]["subject"] == "peak"
    assert why["text"].splitlines()[0] == f"home h1, load dryer at {format_utc(START + 5)}: off"
    assert why["text"] == net.aggregator.why("h1", "dryer").result
    before = ok(site, f"/api/v1/why?home=h1&load=oven&at={START - 1:g}")
    assert before["on"] is None and before["chain"] == [] and "no record" in before["text"]
    error_of(get(site, "/api/v1/why?load=oven"), 422, "missing-field", "home")
    error_of(get(site, "/api/v1/why?home=h1"), 422, "missing-field", "load")
    error_of(get(site, "/api/v1/why?home=h9&load=x"), 404, "not-found")
    error_of(get(site, "/api/v1/why?home=h1&load=oven&at=then"), 422, "bad-field", "at")
    # As the home's own API answers: a load its last bid does not name, an id the wire would not carry.
    error_of(get(site, "/api/v1/why?home=h1&load=no%20such%20load"), 422, "bad-field", "load")
    error_of(get(site, "/api/v1/why?home=h1&load=" + "x" * 3000), 422, "bad-field", "load")
    error_of(get(site, "/api/v1/why?home=h1&load=kettle"), 422, "bad-field", "load")


def test_a_plus_in_a_query_moment_means_from_now_not_1970(stored):
    """A query's ``+`` decodes to a space: ``?since=+600`` is read as
    ``+600`` (from now), as ``%2B600`` is."""
    net, site = stored
    h1 = net.home("h1", *H1_LOADS)
    h2 = net.home("h2", *H2_LOADS)
    run_round(net, h1, h2)
    for _ in range(3):
        net.clock.advance(1)
        h1.say(wire.Measure(net.clock.seconds(), 100.0, ()))
    assert ok(site, "/api/v1/measurements?home=h1&since=0")["samples"], "measured"
    assert ok(site, "/api/v1/measurements?home=h1&since=+600")["samples"] == []
    assert ok(site, "/api/v1/measurements?home=h1&since=%2B600")["samples"] == []
    why = ok(site, "/api/v1/why?home=h1&load=dryer&at=+60")
    assert why["at"] == format_utc(net.clock.seconds() + 60)


# ------------------------------------------------------------ the HTTP shell


def test_unknown_paths_and_methods_get_the_error_body(plain):
    _, site = plain
    error_of(get(site, "/api/v1/nothing"), 404, "not-found")
    error_of(get(site, "/elsewhere"), 404, "not-found")
    refused = request(site, "DELETE", "/api/v1/status")
    error_of(refused, 405, "method-not-allowed")
    assert refused.headers["allow"] == "GET"
    head = request(site, "HEAD", "/api/v1/status")
    assert head.status == 200 and head.body == b""


def test_the_openapi_document_is_served_and_names_every_route(plain):
    net, site = plain
    served = ok(site, "/api/v1/openapi.json")
    assert served == document("aggregator") and served["openapi"].startswith("3.1")
    for method, template in AggregatorApi(net.aggregator).routes().templates():
        assert method.lower() in served["paths"][template], (method, template)


def test_a_handler_that_fails_answers_500_with_the_body_and_logs_it(plain, logs):
    net, site = plain
    net.aggregator.registry.records["h1"].session = object()  # no peer: the view cannot be made
    message = error_of(get(site, "/api/v1/homes/h1"), 500, "internal")
    assert "logged" in message
    failures = [e for e in logs if "log_failure" in e]
    assert failures
    logs.clear()  # seen: the fixture fails a test on any logged failure


# -------------------------------------------------------------------- home


HOME = """
[home]
id = home-9
secret = s3cret
aggregator = tcp:127.0.0.1:7700
actuators = tcp:7711:interface=127.0.0.1
[actuator:a]
relays = 2
key = none
[load:heater]
actuator = a
relay = 1
rated_w = 2000
[load:fridge]
actuator = a
relay = 2
rated_w = 150
critical = yes
"""


@pytest.fixture
def home(tmp_path):
    clock = Clock()
    clock.advance(1_800_000_000)
    store = SqliteStore(str(tmp_path / "home.sqlite"), clock, batch_s=30, threaded=False)
    store.open()
    home = Home(home_config(HOME), clock, store=store)
    return home, build_site(HomeApi(home).routes(), mounts={}), tmp_path / "home.sqlite"


def owner_state(path):
    db = sqlite3.connect(str(path))
    try:
        return dict(db.execute("SELECT key, value FROM state WHERE scope = 'owner'").fetchall())
    finally:
        db.close()


def test_the_owner_sees_the_home_and_its_loads(home):
    home, site, _ = home
    status = ok(site, "/api/v1/status", host="localhost:8481")
    assert status["id"] == "home-9" and status["aggregator_connected"] is False and status["budget_w"] is None
    assert status["boards"] == [{"id": "a", "connected": False}]
    loads = ok(site, "/api/v1/loads")["loads"]
    assert [(x["id"], x["desired"], x["critical"], x["board"]) for x in loads] == [
        ("fridge", True, True, "a"), ("heater", True, False, "a")]
    error_of(get(site, "/api/v1/loads/oven"), 404, "not-found")


def test_the_owner_changes_a_load_and_opts_out_each_durable_before_the_reply(home):
    home, site, path = home
    changed = request(site, "PUT", "/api/v1/loads/heater", {"desired": False})
    assert changed.status == 200 and changed.json()["desired"] is False, changed
    assert home.loads["heater"].desired is False
    assert owner_state(path), "the owner's setting is in the file when the reply comes"
    error_of(request(site, "PUT", "/api/v1/loads/heater", {"desired": "off"}), 422, "bad-field", "desired")
    error_of(request(site, "PUT", "/api/v1/loads/heater", {}), 422, "missing-field", "desired")
    error_of(request(site, "PUT", "/api/v1/loads/oven", {"desired": True}), 404, "not-found")
    out = request(site, "POST", "/api/v1/opt-out", {"event": "peak"})
    assert out.status == 200 and out.json()["opted_out"] is True and home.opt_out_events == {"peak"}, out
    everything = request(site, "POST", "/api/v1/opt-out", {})
    assert everything.status == 200 and home.opt_out_all is True
    back = request(site, "POST", "/api/v1/opt-in", {})
    assert back.status == 200 and back.json()["opted_out"] is False and not home.opted_out()
    error_of(request(site, "POST", "/api/v1/opt-out", {"event": "a b"}), 422, "bad-field", "event")


def test_the_owner_asks_why(home):
    home, site, _ = home
    why = ok(site, "/api/v1/why?load=heater")
    assert why["load"] == "heater" and why["text"].startswith("heater at ")
    assert why["text"] == home.why("heater", home.clock.seconds()).result
    assert [link["kind"] for link in why["chain"]][0] == "state" and why["chain"][-1]["kind"] == "owner"
    assert why["on"] is None, "no board has said HELLO: unknown"
    error_of(get(site, "/api/v1/why?load=oven"), 422, "bad-field", "load")
    assert ok(site, "/api/v1/openapi.json") == document("home")


# --------------------------------------------------- the OpenAPI documents


def schema_check(role):
    """A function checking a body against the document's response schema
    for ``(path template, method, status)``."""
    jsonschema = pytest.importorskip("jsonschema")
    doc = document(role)

    def check(template, method, status, body):
        responses = doc["paths"][template][method]["responses"]
        assert str(status) in responses, (template, method, status)
        schema = responses[str(status)]["content"]["application/json"]["schema"]
        jsonschema.Draft202012Validator({**schema, "components": doc["components"]}).validate(body)

    return check


@pytest.mark.parametrize("role", ["aggregator", "home"])
def test_the_openapi_documents_are_valid_openapi_3_1(role):
    validator = pytest.importorskip("openapi_spec_validator")
    validator.validate(document(role))


def test_the_aggregator_answers_as_its_document_says(stored):
    net, site = stored
    check = schema_check("aggregator")
    h1 = net.home("h1", *H1_LOADS)
    h2 = net.home("h2", *H2_LOADS)
    run_round(net, h1, h2)
    h1.say(wire.Measure(START + 1, 3490.0, ()))
    net.run_until(START + 5)
    for path, template in [("/status", "/status"), ("/homes", "/homes"), ("/homes/h1", "/homes/{id}"),
                           ("/events", "/events"), ("/events/peak", "/events/{id}"), ("/rounds", "/rounds"),
                           ("/rounds/1", "/rounds/{number}"), ("/measurements?since=0", "/measurements"),
                           ("/why?home=h1&load=dryer", "/why")]:
        check(template, "get", 200, ok(site, "/api/v1" + path))
    added = request(site, "POST", "/api/v1/events", {"id": "gala", "limit_kw": 8, "start": "+60", "end": "+90"})
    check("/events", "post", 201, added.json())
    check("/events/{id}", "put", 200, request(site, "PUT", "/api/v1/events/gala", {"limit_kw": 7}).json())
    check("/events/{id}", "delete", 200, request(site, "DELETE", "/api/v1/events/gala").json())
    for method, path, template, body in [("get", "/homes/h9", "/homes/{id}", None),
                                         ("post", "/events", "/events", {"id": "x"}),
                                         ("post", "/events", "/events", {"id": "peak", "limit_kw": 1, "start": 1,
                                                                         "end": 2}),
                                         ("get", "/rounds?limit=x", "/rounds", None)]:
        response = request(site, method.upper(), "/api/v1" + path, body)
        check(template, method, response.status, response.json())


def test_the_home_answers_as_its_document_says(home):
    home, site, _ = home
    check = schema_check("home")
    check("/status", "get", 200, ok(site, "/api/v1/status"))
    check("/loads", "get", 200, ok(site, "/api/v1/loads"))
    check("/loads/{id}", "get", 200, ok(site, "/api/v1/loads/heater"))
    check("/loads/{id}", "put", 200, request(site, "PUT", "/api/v1/loads/heater", {"desired": False}).json())
    check("/opt-out", "post", 200, request(site, "POST", "/api/v1/opt-out", {"event": "x"}).json())
    check("/opt-in", "post", 200, request(site, "POST", "/api/v1/opt-in", {}).json())
    check("/why", "get", 200, ok(site, "/api/v1/why?load=heater"))
    check("/measurements", "get", 200, ok(site, "/api/v1/measurements"))
    bad = request(site, "PUT", "/api/v1/loads/heater", {"desired": 1})
    check("/loads/{id}", "put", bad.status, bad.json())


def test_the_examples_in_docs_api_rst_are_what_the_documents_describe():
    """Each ``.. response: TEMPLATE METHOD STATUS`` block of docs/api.rst
    is valid against the aggregator's document; the docs' copies of the
    documents are the shipped ones."""
    import os
    import re

    check = schema_check("aggregator")
    docs = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs")
    text = open(os.path.join(docs, "api.rst"), encoding="utf-8").read()
    found = re.findall(r"^\.\. response: (\S+) (\w+) (\d+)\n\n\.\. code-block:: json\n\n((?:    .*\n|\n)+)", text,
                       re.MULTILINE)
    assert len(found) >= 5, found
    for template, method, status, block in found:
        check(template, method, int(status), json.loads(block))
    for role in ("aggregator", "home"):
        with open(os.path.join(docs, "api", f"openapi-{role}.json"), encoding="utf-8") as f:
            assert json.load(f) == document(role)


# ------------------------------------------------ any body, any query string

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.floats(allow_nan=False) | st.text(max_size=20)
    | st.sampled_from(["+60", "-60", "+1800", "2026-12-03T18:00:00Z", "18:05", "gala", "", "1e309", "+1e20", 1e300,
                       "9999-12-31T23:59:59Z", -1e20]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3),
    max_leaves=6)
FIELD_NAMES = st.sampled_from(["id", "limit_kw", "limit_w", "start", "end", "start_window_s", "end_window_s",
                               "version", "x"])
BODIES = st.dictionaries(FIELD_NAMES, JSON_VALUES, max_size=7)


@settings(max_examples=200, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=BODIES, method=st.sampled_from(["POST", "PUT"]))
def test_any_event_body_gets_an_answer_the_document_describes_never_a_500(plain, body, method):
    net, site = plain
    check = schema_check("aggregator")
    before = dict(net.aggregator.schedule.book.events)
    path, template = ("/api/v1/events", "/events") if method == "POST" else ("/api/v1/events/peak", "/events/{id}")
    response = request(site, method, path, body)
    assert response.done and response.status in (200, 201, 400, 404, 409, 422), response
    check(template, method.lower(), response.status, response.json())
    if response.status >= 400:
        assert net.aggregator.schedule.book.events == before
    else:
        event = response.json()["event"]
        assert net.aggregator.schedule.book.events[event["id"]].version == event["version"]


QUERY_TEXT = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=12)


@settings(max_examples=100, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.sampled_from(["/status", "/homes", "/events", "/rounds", "/measurements", "/why", "/homes/h1",
                             "/rounds/1", "/events/peak"]),
       query=st.lists(st.tuples(st.sampled_from(["connected", "state", "limit", "before", "since", "until",
                                                 "home", "load", "at", "format", "q"]), QUERY_TEXT), max_size=3))
def test_any_query_string_gets_an_answer_the_document_describes(stored, path, query):
    from urllib.parse import urlencode

    net, site = stored
    check = schema_check("aggregator")
    response = request(site, "GET", "/api/v1" + path + ("?" + urlencode(query) if query else ""))
    assert response.done and response.status in (200, 400, 404, 422, 503), response
    template = {"/homes/h1": "/homes/{id}", "/rounds/1": "/rounds/{number}", "/events/peak": "/events/{id}"}.get(
        path, path)
    if response.headers["content-type"].startswith("application/json"):
        check(template, "get", response.status, response.json())
    else:
        assert response.headers["content-type"].startswith("text/csv")


# -------------------------------------------------- large replies, cooperatively


def test_many_homes_are_built_a_batch_per_turn_and_encoded_off_the_reactor():
    from twisted.internet.defer import succeed

    from jeisson.web.site import encode_in_pieces

    net = Net(CONFIG)
    net.home("h2", *H2_LOADS)
    offloaded = []

    def offload(function, *args):
        offloaded.append(function)
        return succeed(function(*args))

    api = AggregatorApi(net.aggregator, batch=1)
    site = build_site(api.routes(), offload=offload)
    pending = request(site, "GET", "/api/v1/homes")
    assert not pending.done, "the second home's view waits for the next turn"
    net.clock.advance(0)
    assert pending.read().status == 200 and offloaded == [encode_in_pieces]
    assert pending.json() == {"homes": [home_view(net.aggregator, net.aggregator.registry.records[h], api.links)
                                        for h in ("h1", "h2")], "total": 2}
    # A body encoded in pieces reads back as the whole.
    body = {"homes": [{"a": 1.5, "b": [None, "é"]}, {}], "truncated": True, "n": float("inf")}
    assert json.loads(encode_in_pieces(body)) == {**body, "n": None}


def test_a_body_too_large_for_the_wire_is_refused_before_it_is_read(plain):
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    from jeisson.web.site import MAX_REQUEST_BODY

    net, site = plain

    def connection():
        transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 1))
        protocol = site.buildProtocol(transport.getPeer())
        protocol.callLater = IDLE.callLater  # not the global reactor's (tests/http_memory.py says why)
        protocol.makeConnection(transport)
        return protocol, transport

    head = b"POST /api/v1/events HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
    protocol, transport = connection()
    protocol.dataReceived(head + b"Content-Length: %d\r\n\r\n{}" % (MAX_REQUEST_BODY + 1))
    assert transport.disconnecting and transport.value().startswith(b"HTTP/1.1 413")
    assert json.loads(transport.value().split(b"\r\n\r\n", 1)[1])["error"]["code"] == "bad-json"
    # Chunk by chunk, the same (no length said).
    protocol, transport = connection()
    protocol.dataReceived(head + b"Transfer-Encoding: chunked\r\n\r\n")
    chunk = b"x" * 65536
    for _ in range(MAX_REQUEST_BODY // len(chunk) + 2):
        if transport.disconnecting:
            break
        protocol.dataReceived(b"%x\r\n" % len(chunk) + chunk + b"\r\n")
    assert transport.disconnecting and transport.value().startswith(b"HTTP/1.1 413")
    assert set(net.aggregator.schedule.book.events) == {"peak"}
    # The Site still answers others.
    assert request(site, "GET", "/api/v1/status").status == 200


def test_many_measurement_rows_are_made_and_encoded_off_the_reactor(tmp_path):
    """Over the batch, a measurements reply's rows (JSON or CSV) are made
    in the offload (a thread in the daemons), not on the calling thread."""
    from twisted.internet.defer import Deferred

    from jeisson.web.site import encode_in_pieces

    net = StoredNet(CONFIG, tmp_path / "aggregator.sqlite")
    h1 = net.home("h1", *H1_LOADS)
    for at in (1.0, 2.0, 3.0):
        net.clock.advance(1)
        h1.say(wire.Measure(at, 100.0 * at, ()))
    offloaded = []

    def offload(function, *args):
        offloaded.append((function, args, Deferred()))
        return offloaded[-1][2]

    api = AggregatorApi(net.aggregator, max_rows=10, batch=2)
    site = build_site(api.routes(), offload=offload)
    for path, csv_wanted in (("/api/v1/measurements?home=h1&since=0", False),
                             ("/api/v1/measurements?home=h1&since=0&format=csv", True)):
        pending = request(site, "GET", path)
        for _ in range(20):
            if offloaded or pending.read().done:
                break
            net.clock.advance(0)
        assert len(offloaded) == 1 and not pending.read().done, "made in the offload, nothing written yet"
        function, args, d = offloaded.pop()
        assert function is not encode_in_pieces, "the rows themselves, not only their encoding"
        d.callback(function(*args))
        response = pending.read()
        assert response.status == 200
        if csv_wanted:
            assert response.headers["content-type"].startswith("text/csv") and response.body.count(b"\r\n") == 4
        else:
            assert [s["watts"] for s in response.json()["samples"]] == [100.0, 200.0, 300.0]
    small = AggregatorApi(net.aggregator, max_rows=10, batch=500)
    assert ok(build_site(small.routes(), offload=offload), "/api/v1/measurements?home=h1&since=0")["samples"]
    assert offloaded == [], "a few rows are made at once"
