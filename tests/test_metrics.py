"""GET /metrics (jeisson.web.metrics) on a task.Clock: a real aggregator with
fake homes (``Net``), a real home with fake boards and aggregator (``Rig``),
each scrape rendered by the resource and read back with prometheus_client's
own parser, the figures checked against what the cores did."""

import json
import math
import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client.parser import text_string_to_metric_families
from twisted.internet.task import Clock
from twisted.web.test.requesthelper import DummyRequest

from jeisson import observe
from jeisson.limits import Limits, ListenerGuard
from jeisson.store.sqlite import SqliteStore
from jeisson.web.metrics import aggregator_metrics, home_metrics
from jeisson.wire import aggregator_home as wire
from tests.peers import Net, Rig, load
from tests.test_aggregator_core import CONFIG, END, FEEDERS, FIRST_ROUND, TIMEOUT
from tests.test_home_core import CONFIG as HOME_CONFIG
from tests.test_home_core import settled_rig

pytestmark = pytest.mark.usefixtures("logs")


class Scrape:
    """One scrape, parsed back: ``value(name, **labels)``; ``families``."""

    def __init__(self, text: str):
        self.text = text
        self.families = {f.name: f for f in text_string_to_metric_families(text)}
        self.samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
                        for f in self.families.values() for s in f.samples}

    def value(self, name: str, **labels: str) -> float | None:
        """The sample's value, None when there is no such sample."""
        return self.samples.get((name, tuple(sorted(labels.items()))))

    def labelled(self, name: str) -> dict[tuple, float]:
        return {labels: v for (n, labels), v in self.samples.items() if n == name}


def get(resource, method: bytes = b"GET", accept: str | None = None) -> tuple[DummyRequest, bytes]:
    request = DummyRequest([b""])
    request.method = method
    if accept is not None:
        request.requestHeaders.setRawHeaders(b"accept", [accept.encode()])
    return request, resource.render(request)


def scrape(resource) -> Scrape:
    request, body = get(resource)
    assert request.responseHeaders.getRawHeaders(b"content-type")[0].startswith(b"text/plain")
    return Scrape(body.decode("utf-8"))


@pytest.fixture
def stops():
    """Resources to stop after the test (their observers unsubscribed)."""
    made: list = []
    yield made
    for resource in made:
        resource.stop()


def metrics_of(net, stops):
    resource = aggregator_metrics(net.aggregator, net.clock)
    stops.append(resource)
    return resource


# ------------------------------------------------------------- the aggregator


def test_the_figures_follow_a_round(stops):
    net = Net(FEEDERS)
    metrics = metrics_of(net, stops)
    before = scrape(metrics)
    assert before.value("jeisson_homes_configured") == 4
    assert before.value("jeisson_homes_connected") == 0
    assert before.value("jeisson_limit_watts") is None, "no event binds yet: no sample"
    assert before.value("jeisson_events", state="scheduled") == 1
    assert before.value("jeisson_last_round_committed_watts") is None
    assert before.value("jeisson_committed_watts") == 0, "every home known to draw nothing (max_kw = 0)"
    assert before.value("jeisson_rounds_total", outcome="within_limit") == 0
    h1 = net.home("h1", load("oven", 2000, priority=10, on=True), comply=0.25)
    net.home("h2", load("ev", 1000, priority=1), comply=0.25)
    net.run_until(FIRST_ROUND + 1)
    after = scrape(metrics)
    assert after.value("jeisson_homes_connected") == 2
    assert after.value("jeisson_home_joins_total") == 2
    assert after.value("jeisson_limit_watts") == 5000
    assert after.value("jeisson_feeder_limit_watts", feeder="street-a") == 3500
    assert after.value("jeisson_events", state="in-force") == 1
    assert after.value("jeisson_events", state="scheduled") == 0
    assert after.value("jeisson_rounds_total", outcome="within_limit") == 1
    assert after.value("jeisson_budgets_sent_total") == 2
    assert after.value("jeisson_commitments_received_total") == 2
    summary = net.summary
    assert after.value("jeisson_last_round_committed_watts") == summary.committed_w == 3000
    assert after.value("jeisson_last_round_unknown_watts") == 0
    assert after.value("jeisson_committed_watts") == 3000, "live, as the API's status counts"
    assert after.value("jeisson_feeder_committed_watts", feeder="street-a") == 2000
    assert after.value("jeisson_last_round_number") == 1
    assert after.value("jeisson_last_round_within_limit") == 1
    assert after.value("jeisson_last_round_finished_timestamp_seconds") == pytest.approx(FIRST_ROUND + 0.25)
    # The round took the homes' 0.25 s on the clock: in the histogram's 0.25 bucket, not the 0.1 one.
    assert after.value("jeisson_round_duration_seconds_count") == 1
    assert after.value("jeisson_round_duration_seconds_sum") == pytest.approx(0.25)
    assert after.value("jeisson_round_duration_seconds_bucket", le="0.1") == 0
    assert after.value("jeisson_round_duration_seconds_bucket", le="0.25") == 1
    assert after.value("jeisson_negotiation_mode", mode="periodic") == 1
    assert after.value("jeisson_negotiation_mode", mode="idle") == 0
    # h1 measures more than it committed: the live measured figure follows, in all and on its feeder.
    assert h1.say(wire.Measure(net.clock.seconds(), 2600.0, ())) == []
    measured = scrape(metrics)
    assert measured.value("jeisson_measured_watts") == pytest.approx(2600 + 1000)
    assert measured.value("jeisson_feeder_measured_watts", feeder="street-a") == pytest.approx(2600)
    assert measured.value("jeisson_measurements_received_total") == 1


def test_a_round_over_the_limit_a_silent_home_and_a_home_gone(stops):
    net = Net(FEEDERS)
    metrics = metrics_of(net, stops)
    # A must-run furnace over street-a's limit; h2 never commits.
    net.home("h1", load("furnace", 4000, mode="must", on=True), comply=0.1)
    h2 = net.home("h2", load("ev", 1000, priority=1))
    net.run_until(FIRST_ROUND + 2 * TIMEOUT + 1)
    figures = scrape(metrics)
    assert figures.value("jeisson_rounds_total", outcome="over_limit") >= 1
    assert figures.value("jeisson_last_round_within_limit") == 0
    assert figures.value("jeisson_homes_silent") == 1
    assert figures.value("jeisson_homes_gone_silent_total") == 1
    assert figures.value("jeisson_last_round_unknown_watts") > 0
    h2.leave()
    gone = scrape(metrics)
    assert gone.value("jeisson_homes_connected") == 1
    assert gone.value("jeisson_committed_watts") == 4000 + 1000, "the furnace, and h2 away counted at its demand"
    assert gone.value("jeisson_home_departures_total") == 1


def test_events_by_state_and_offers_by_verdict(stops):
    net = Net(CONFIG)
    metrics = metrics_of(net, stops)
    net.aggregator.add_event("later", 3, "+1000", "+2000")
    net.aggregator.add_event("bad", 3, "+2000", "+1000")  # refused before it is offered: the end is first
    net.aggregator.add_event("later", 4, "+1000", "+2000")  # same version, other values: refused
    net.aggregator.add_event("gone", 3, "+1000", "+2000")
    net.aggregator.cancel_event("gone")
    figures = scrape(metrics)
    assert figures.value("jeisson_events", state="scheduled") == 2  # peak and later
    assert figures.value("jeisson_events", state="cancelled") == 1
    assert figures.value("jeisson_event_offers_total", verdict="added", source="the manhole") == 2
    assert figures.value("jeisson_event_offers_total", verdict="refused", source="the manhole") == 1
    assert figures.value("jeisson_event_offers_total", verdict="cancelled", source="the manhole") == 1
    net.run_until(END + 1)
    ended = scrape(metrics)
    assert ended.value("jeisson_events", state="ended") == 1
    assert ended.value("jeisson_limit_watts") is None
    assert ended.value("jeisson_negotiation_mode", mode="idle") == 1


def test_a_round_abandoned_when_its_event_is_cancelled(stops):
    net = Net(CONFIG)
    metrics = metrics_of(net, stops)
    net.home("h1", load("oven", 3000, priority=10, on=True), load("dryer", 3000, priority=1, on=True))
    net.run_until(FIRST_ROUND)
    assert scrape(metrics).value("jeisson_round_in_progress") == 1
    net.aggregator.cancel_event("peak")
    figures = scrape(metrics)
    assert figures.value("jeisson_rounds_total", outcome="abandoned") == 1
    assert figures.value("jeisson_round_in_progress") == 0
    assert figures.value("jeisson_round_duration_seconds_count") == 0, "only finished rounds are timed"


def test_protocol_errors_refusals_and_failed_authentications_by_link_and_reason(stops):
    net = Net(CONFIG)
    metrics = metrics_of(net, stops)
    h1 = net.home("h1")
    h1.say(b"BOGUS 1")
    h1.say(b"COMMIT x")
    stranger = net.connect()
    stranger.hello("h2", secret="wrong")
    net.connect().hello("nobody", secret="x")
    net.clock.advance(5)  # the refusals wait out their delay (none without a guard)
    figures = scrape(metrics)
    errors = figures.labelled("jeisson_protocol_errors_total")
    assert sum(errors.values()) == 2
    assert all(dict(labels)["link"] == "home" for labels in errors)
    assert figures.value("jeisson_refused_connections_total", listener="homes", reason=wire.BAD_CREDENTIAL) == 1
    assert figures.value("jeisson_refused_connections_total", listener="homes", reason=wire.UNKNOWN_HOME) == 1
    assert figures.value("jeisson_auth_failures_total", listener="homes", reason=wire.BAD_CREDENTIAL) == 1
    assert figures.value("jeisson_auth_failures_total", listener="homes", reason=wire.UNKNOWN_HOME) == 1


def test_connections_turned_away_at_accept_by_a_listeners_guard(stops):
    net = Net(CONFIG)
    metrics = metrics_of(net, stops)
    guard = ListenerGuard(Limits(max_connections=1, max_connections_per_address=0), Clock(), "homes listener")
    assert guard.admit("192.0.2.1", "192.0.2.1:1") is None
    assert guard.admit("192.0.2.2", "192.0.2.2:1") is not None
    assert guard.admit("192.0.2.3", "192.0.2.3:1") is not None
    assert scrape(metrics).value("jeisson_refused_connections_total", listener="homes",
                                 reason="total limit") == 2


def test_the_store_commit_latency_and_rows(tmp_path, stops):
    clock = Clock()
    store = SqliteStore(str(tmp_path / "aggregator.sqlite"), clock, batch_s=0.5, threaded=False)
    store.open()
    from jeisson.aggregator.config import config_from_string
    from jeisson.aggregator.core import Aggregator

    aggregator = Aggregator(config_from_string(CONFIG, now=0), clock, store=store)
    metrics = aggregator_metrics(aggregator, clock)
    stops.append(metrics)
    # Another store in the same process (another test's, another role's) is not this one's.
    other = SqliteStore(str(tmp_path / "other.sqlite"), clock, batch_s=0.5, threaded=False)
    other.open()
    aggregator.start()
    clock.advance(1)
    other.put("x", "y", 1)
    clock.advance(1)
    figures = scrape(metrics)
    commits = figures.value("jeisson_store_commits_total")
    assert commits >= 1 and commits == store.stats.commits
    assert figures.value("jeisson_store_commit_seconds_count") == commits
    assert 0 < figures.value("jeisson_store_commit_seconds_sum") < 60
    assert figures.value("jeisson_store_rows_written_total") == store.stats.rows_written > 0
    assert figures.value("jeisson_store_size_bytes") > 0
    assert figures.value("jeisson_store_commit_failures_total") == 0
    aggregator.stop()
    store.close_now()
    other.close_now()


def test_without_a_store_there_are_no_store_figures(stops):
    figures = scrape(metrics_of(Net(CONFIG), stops))
    assert not [name for name in figures.families if name.startswith("jeisson_store")]


def test_two_aggregators_never_mix_and_a_stopped_resource_counts_nothing_more(stops):
    first, second = Net(CONFIG), Net(CONFIG)
    one, two = metrics_of(first, stops), metrics_of(second, stops)
    first.home("h1")
    assert scrape(one).value("jeisson_home_joins_total") == 1
    assert scrape(two).value("jeisson_home_joins_total") == 0
    subscribed = len(observe.observers())
    stops.remove(one)
    one.stop()
    one.stop()  # stopping twice is harmless
    assert len(observe.observers()) == subscribed - 1
    first.home("h2").say(b"BOGUS")
    assert scrape(one).value("jeisson_home_joins_total") == 1
    assert scrape(one).labelled("jeisson_protocol_errors_total") == {}
    assert sum(scrape(two).labelled("jeisson_protocol_errors_total").values()) == 1, "the process's, seen by two"


def test_the_process_figures_are_on_the_registry(stops):
    figures = scrape(metrics_of(Net(CONFIG), stops))
    assert figures.value("process_resident_memory_bytes") > 0
    assert figures.value("jeisson_info", role="aggregator", version=__import__("jeisson").__version__) == 1


def test_the_previous_scrapes_time_is_a_figure(stops):
    metrics = metrics_of(Net(CONFIG), stops)
    assert scrape(metrics).value("jeisson_metrics_scrape_seconds") is None
    took = scrape(metrics).value("jeisson_metrics_scrape_seconds")
    assert took is not None and 0 < took < 5


# ----------------------------------------------------------------- HTTP


def test_head_openmetrics_and_other_methods(stops):
    metrics = metrics_of(Net(CONFIG), stops)
    request, body = get(metrics, accept="application/openmetrics-text; version=1.0.0")
    assert request.responseHeaders.getRawHeaders(b"content-type")[0].startswith(b"application/openmetrics-text")
    assert body.endswith(b"# EOF\n")
    request, _ = get(metrics, method=b"HEAD")
    assert request.responseCode in (None, 200)
    request, body = get(metrics, method=b"POST")
    assert request.responseCode == 405
    assert request.responseHeaders.getRawHeaders(b"allow") == [b"GET, HEAD"]
    assert json.loads(body)["error"] == {"status": 405, "code": "method-not-allowed",
                                         "message": "/metrics takes GET or HEAD, not POST"}
    request = DummyRequest([b"below"])
    body = metrics.render(request)
    assert request.responseCode == 404 and json.loads(body)["error"]["code"] == "not-found"


def test_names_follow_prometheus_conventions_with_help_and_the_docs_list_them_all(stops, tmp_path):
    net = Net(FEEDERS)
    rig = settled_rig()
    figures = [scrape(metrics_of(net, stops))]
    resource = home_metrics(rig.home, rig.clock)
    stops.append(resource)
    figures.append(scrape(resource))
    docs = (Path(__file__).parent.parent / "docs" / "metrics.rst").read_text()
    for scraped in figures:
        for name, family in scraped.families.items():
            if not name.startswith("jeisson"):
                continue
            assert family.documentation, f"{name} has no HELP"
            assert re.fullmatch(r"jeisson(_[a-z0-9]+)*", name), name
            if family.type == "counter":
                assert any(s.name == f"{name}_total" for s in family.samples) or not family.samples, name
            if name.endswith(("_watts", "_seconds", "_bytes")):
                assert family.type in ("gauge", "histogram"), name
            documented = f"{name}_total" if family.type == "counter" else name
            if family.type == "info":
                documented = f"{name}_info"
            assert f"``{documented}``" in docs, f"{documented} is not in docs/metrics.rst"


# --------------------------------------------------------------------- home


@pytest.fixture
def home(stops):
    rig = settled_rig()
    resource = home_metrics(rig.home, rig.clock)
    stops.append(resource)
    return rig, resource


def test_the_homes_figures_follow_its_budget_and_relays(home):
    rig, metrics = home
    before = scrape(metrics)
    assert before.value("jeisson_info", role="home", id=rig.home.config.id,
                        version=__import__("jeisson").__version__) == 1
    assert before.value("jeisson_budget_watts") is None
    assert before.value("jeisson_boards_connected") == before.value("jeisson_boards_configured") == 2
    assert before.value("jeisson_uplink_up") == 1
    assert before.value("jeisson_loads", state="on") == 4  # x, y, fridge, z; the heater is off
    assert before.value("jeisson_loads", state="off") == 1
    assert before.value("jeisson_load_on", load="heater") == 0
    assert before.value("jeisson_drawn_watts") == rig.home.drawn_w() == 1850
    rig.aggregator.budget(1050.0)
    rig.settle()
    after = scrape(metrics)
    assert after.value("jeisson_budget_watts") == 1050
    assert after.value("jeisson_budget_end_timestamp_seconds") == 600
    assert after.value("jeisson_budgets_applied_total") == 1
    assert after.value("jeisson_relay_switches_total", load="z", cause="budget", to="off") == 1
    assert after.value("jeisson_load_on", load="z") == 0
    assert after.value("jeisson_drawn_watts") == 1050
    rig.boards["a"].say(b"MEAS 480 390 140")
    measured = scrape(metrics)
    assert measured.value("jeisson_load_measured_watts", load="x") == 480
    assert measured.value("jeisson_measured_watts") == rig.home.measured_w()
    rig.aggregator.release()
    rig.settle()
    released = scrape(metrics)
    assert released.value("jeisson_budget_watts") is None
    assert released.value("jeisson_budgets_released_total", why="release") == 1
    assert released.value("jeisson_relay_switches_total", load="z", cause="release", to="on") == 1


def test_a_home_losing_a_board_and_its_aggregator(home):
    rig, metrics = home
    rig.boards["b"].lose()
    rig.aggregator.lose()
    figures = scrape(metrics)
    assert figures.value("jeisson_boards_connected") == 1
    assert figures.value("jeisson_board_departures_total") == 1
    assert figures.value("jeisson_loads", state="unknown") == 2  # z and the heater
    assert figures.value("jeisson_load_on", load="z") is None
    assert figures.value("jeisson_uplink_up") == 0
    assert figures.value("jeisson_uplink_losses_total") == 1
    refused = rig.connect_aggregator(welcome=False)
    refused.say(wire.Refused(wire.BAD_CREDENTIAL, "wrong secret"))
    again = scrape(metrics)
    assert again.value("jeisson_uplink_refused") == 1
    assert again.value("jeisson_uplink_refusals_total") == 1


def test_a_switch_refused_and_a_board_that_does_not_prove_its_key(home):
    rig, metrics = home
    rig.aggregator.budget(1050.0)
    rig.boards["b"].nak("z", "busy")
    assert scrape(metrics).value("jeisson_relay_switch_failures_total", load="z", code="busy") == 1
    rig.boards["a"].say_raw(b"MEAS 1 2 3 ~0000000000000000")  # a sealed-looking line that proves nothing
    rig.boards["a"].say(b"PONG 99 extra")  # a bad line, sealed
    figures = scrape(metrics)
    assert sum(figures.labelled("jeisson_auth_failures_total").values()) >= 1
    assert set(dict(k)["listener"] for k in figures.labelled("jeisson_auth_failures_total")) == {"boards"}
    assert any(dict(k)["link"] == "board" for k in figures.labelled("jeisson_protocol_errors_total"))


def test_a_home_without_boards_or_uplink(stops):
    rig = Rig(HOME_CONFIG)
    resource = home_metrics(rig.home, rig.clock)
    stops.append(resource)
    figures = scrape(resource)
    assert figures.value("jeisson_boards_connected") == 0
    assert figures.value("jeisson_uplink_up") == 0
    assert figures.value("jeisson_loads", state="unknown") == 5
    assert figures.value("jeisson_drawn_watts") == sum(c.rated_w for c in rig.home.config.loads.values())
    assert not math.isnan(figures.value("jeisson_measured_watts"))


def test_an_observer_that_raises_does_not_stop_the_link(stops, logs):
    class Broken(observe.Observer):
        def protocol_error(self, link, code):
            raise RuntimeError("an observer's bug")

    broken = Broken()
    observe.add(broken)
    try:
        net = Net(CONFIG)
        metrics = metrics_of(net, stops)
        h1 = net.home("h1")
        answer = h1.say(b"BOGUS 1")
        assert answer and isinstance(answer[0], wire.Error)
        assert sum(scrape(metrics).labelled("jeisson_protocol_errors_total").values()) == 1
    finally:
        observe.remove(broken)
    failures = [e for e in logs if "log_failure" in e]
    assert failures
    logs.clear()  # logged, as it should be: not a failure of this test


@given(st.lists(st.floats(min_value=0, max_value=100, allow_nan=False), max_size=50))
def test_our_histogram_counts_as_prometheus_clients_own(values):
    from prometheus_client import CollectorRegistry
    from prometheus_client import Histogram as Theirs

    from jeisson.web.metrics import COMMIT_BUCKETS, Histogram

    ours = Histogram("h_seconds", "doc", COMMIT_BUCKETS)
    theirs = Theirs("h_seconds", "doc", buckets=COMMIT_BUCKETS, registry=CollectorRegistry())
    for value in values:
        ours.observe(value)
        theirs.observe(value)

    def samples(family):
        return {(s.name, tuple(sorted(s.labels.items()))): s.value for s in family.samples
                if not s.name.endswith("_created")}

    mine, reference = samples(ours.family()), samples(theirs.collect()[0])
    assert mine.keys() == reference.keys()
    for key, value in reference.items():
        assert mine[key] == pytest.approx(value), key


def test_a_refused_manhole_login_is_a_failed_authentication(stops):
    from twisted.internet.address import IPv4Address

    from jeisson.manhole.config import ManholeConfig
    from jeisson.manhole.watch import _Guard, _Watch

    net = Net(CONFIG)
    metrics = metrics_of(net, stops)
    guard = _Guard(ManholeConfig("tcp:7790:interface=127.0.0.1"), net.clock)
    watch = _Watch(guard, IPv4Address("TCP", "127.0.0.1", 5000), "ssh", lambda kind, text: None, lambda: None)
    watch.auth_failed("key SHA256:x for user root")
    watch.auth_failed("key SHA256:y for user admin")
    assert scrape(metrics).labelled("jeisson_auth_failures_total") == {
        (("listener", "manhole"), ("reason", "login")): 2}
    watch.lost()
