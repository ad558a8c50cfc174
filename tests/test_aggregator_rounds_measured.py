"""Honest rounds: "within limit" only when what is committed and what is
measured both are; must-run loads above the limit served and reported; the
measured total watched between rounds.

A real ``Aggregator`` on a ``task.Clock`` with ``FakeHome`` peers
(tests/peers.py ``Net``); ``MeasuredWatch`` built directly on the real
``Homes`` registry and ``Grid`` of that aggregator.
"""

import json

import pytest
from twisted.logger import capturedLogs, formatEvent

from jeisson import demo
from jeisson.aggregator.report import verdict_detail
from jeisson.aggregator.round import RoundSummary
from jeisson.aggregator.watch import MeasuredWatch, measured_or_counted_w
from jeisson.wire import aggregator_home as wire
from tests.peers import Net, load

START, END, LIMIT_W = 20.0, 200.0, 5000.0
PERIOD, TIMEOUT = 30.0, 5.0
SLACK_W = 1e-6

CONFIG = f"""
[aggregator]
listen = tcp:7700:interface=127.0.0.1
heartbeat_s = 600
round_period_s = {PERIOD:g}
round_timeout_s = {TIMEOUT:g}
[home:h1]
secret = s1
max_kw = 0
[home:h2]
secret = s2
max_kw = 0
[home:h3]
secret = s3
max_kw = 0
[event:peak]
limit_kw = {LIMIT_W / 1000:g}
start = +{START:g}
end = +{END:g}
"""

FEEDERS = CONFIG + """
[feeder:street-a]
limit_kw = 3.5
homes = h1, h3
"""


def measure(home, watts, at=None):
    assert home.say(wire.Measure(home.clock.seconds() if at is None else at, float(watts), ())) == []


def total_line(events, n):
    """The round's total line (the one that says how long it took), formatted."""
    [line] = [formatEvent(e) for e in events if e.get("n") == n and "ms" in e]
    return line


# ----------------------------------------------------- measured in every round


def test_a_round_is_over_the_limit_when_the_measured_total_is_whatever_the_commitments_say():
    net = Net(CONFIG)
    h1 = net.home("h1", load("oven", 3000, on=True))
    h2 = net.home("h2", load("ev", 2000, on=True))
    net.run_until(START)
    with capturedLogs() as events:
        # Both commit within the limit, but h1's boards measure more than it committed.
        measure(h1, 3000)
        measure(h2, 2000)
        h1.commit(1, 3000)
        measure(h1, 5050)
        h2.commit(1, 2000)
    summary = net.summary
    assert summary.committed_w + summary.unknown_w == 5000.0
    assert summary.measured_w == 7050.0
    assert not summary.within_limit and not summary.total_within_limit
    line = total_line(events, 1)
    assert "round 1 event peak: committed 5000 W + unknown 0 W, measured 7050 W of limit 5000 W:" \
           " OVER LIMIT (measured 2050 W above)" in line
    last = net.aggregator.snapshot()["last_round"]
    assert json.loads(json.dumps(last)) == last
    assert (last["measured_w"], last["must_w"], last["within_limit"]) == (7050.0, 0.0, False)


def test_within_limit_is_said_when_both_committed_and_measured_are():
    net = Net(CONFIG)
    h1 = net.home("h1", load("oven", 3000, on=True))
    h2 = net.home("h2", load("ev", 2000, on=True))
    net.run_until(START)
    with capturedLogs() as events:
        measure(h1, 2950)
        h1.commit(1, 3000)
        h2.commit(1, 2000)  # no measurement: counted at its commitment
    summary = net.summary
    assert summary.measured_w == 4950.0 and summary.within_limit
    assert ("committed 5000 W + unknown 0 W, measured 4950 W of limit 5000 W: within limit (round took"
            in total_line(events, 1))


def test_homes_not_in_the_round_count_at_their_measurement_else_cautiously():
    net = Net(CONFIG)
    net.home("h1", load("oven", 2000, on=True), comply=0.1)
    h2 = net.home("h2", load("sauna", 1000, on=True))
    h3 = net.home("h3", load("ev", 1500, on=True))
    measure(h3, 1200)
    h2.leave()
    h3.leave()
    net.run_until(START + 1)
    summary = net.summary
    # h2 away at its level (1000 W, no measurement); h3 at the larger of its
    # level and measurement in unknown, at its measurement in measured.
    assert summary.committed_w == 2000.0
    assert summary.unknown_w == 2500.0 and summary.away_w == 2500.0
    assert summary.measured_w == 2000.0 + 1000.0 + 1200.0
    assert summary.within_limit
    assert measured_or_counted_w(net.aggregator.registry["h2"]) == 1000.0


def test_a_home_never_heard_from_counts_at_its_registered_maximum_in_measured_too():
    net = Net(CONFIG.replace("secret = s3\nmax_kw = 0", "secret = s3\nmax_kw = 2.5"))
    net.home("h1", load("oven", 2000, on=True), comply=0.1)
    net.run_until(START + 1)
    summary = net.summary
    assert (summary.committed_w, summary.unknown_w, summary.measured_w) == (2000.0, 2500.0, 4500.0)
    assert summary.within_limit


def test_a_feeder_is_over_its_limit_when_its_measured_power_is():
    net = Net(FEEDERS)
    h1 = net.home("h1", load("oven", 3000, on=True))
    h2 = net.home("h2", load("ev", 1000, on=True))
    net.run_until(START)
    with capturedLogs() as events:
        h1.commit(1, 3000)
        measure(h1, 3600)
        h2.commit(1, 1000)
    summary = net.summary
    street = summary.feeders["street-a"]
    assert (street["committed_w"], street["unknown_w"], street["measured_w"]) == (3000.0, 0.0, 3600.0)
    assert summary.total_within_limit, "4600 W in all is within the 5000 W"
    assert not summary.feeder_within_limit("street-a") and not summary.within_limit
    [feeder_line] = [formatEvent(e) for e in events if e.get("feeder") == "street-a" and "n" in e]
    assert ("feeder street-a: committed 3000 W + unknown 0 W, measured 3600 W of limit 3500 W: OVER LIMIT"
            " (measured 100 W above)") in feeder_line
    assert "measured 4600 W of limit 5000 W: OVER LIMIT (round took" in total_line(events, 1)


# ----------------------------------------------------- must-run above the limit


def test_must_run_loads_above_the_limit_are_served_and_the_round_says_so():
    net = Net(CONFIG)
    h1 = net.home("h1", load("furnace", 4000, mode="must", on=True), load("tv", 300, on=True))
    h2 = net.home("h2", load("freezer", 2000, mode="must", on=False), load("ev", 1000))
    with capturedLogs() as events:
        net.run_until(START)
        [shed] = h1.budgets()
        assert shed.budget_w == pytest.approx(4000)
        h1.commit(1, 4000, on=("furnace",))
        # The headroom left is 1000 W, but h2's freezer must run: its budget covers it, and nothing more.
        [grant] = h2.budgets()
        assert grant.budget_w == pytest.approx(2000)
        h2.commit(1, 2000, on=("freezer",))
    summary = net.summary
    assert summary.feasible is False and summary.must_w == 6000.0 and summary.away_w == 0.0
    assert not summary.within_limit
    warned = [formatEvent(e) for e in events if e["log_level"].name == "warn"]
    assert any("must-run loads (6000 W) and homes that cannot answer (0 W) exceed the limit of 5000 W" in m
               for m in warned)
    assert ("committed 6000 W + unknown 0 W, measured 6000 W of limit 5000 W: OVER LIMIT: must-run 6000 W"
            " + away 0 W, 1000 W above the limit (committed + unknown 1000 W above, measured 1000 W above)"
            in total_line(events, 1))
    assert net.aggregator.snapshot()["last_round"]["must_w"] == 6000.0


def test_every_budget_covers_its_homes_must_run_loads_when_the_plan_is_infeasible():
    net = Net(CONFIG)
    homes = [net.home(f"h{i}", load("pump", 2000, mode="must", on=i == 1), load("lamp", 100, on=True), comply=0.1)
             for i in (1, 2, 3)]
    net.run_until(START + 1)
    for home in homes:
        [budget] = home.budgets()
        assert budget.budget_w == pytest.approx(2000), "only the must-run pump, and all of it"
    assert net.summary.must_w == 6000.0 and not net.summary.feasible


def test_a_feeder_whose_must_run_loads_exceed_its_limit_says_so():
    net = Net(FEEDERS)
    h1 = net.home("h1", load("furnace", 4000, mode="must", on=True), comply=0.1)
    h3 = net.home("h3", load("sauna", 1000, on=True), comply=0.1)
    with capturedLogs() as events:
        net.run_until(START + 1)
    assert h1.budgets()[0].budget_w == pytest.approx(4000)
    assert h3.budgets()[0].budget_w == pytest.approx(0)
    street = net.summary.feeders["street-a"]
    assert (street["must_w"], street["away_w"]) == (4000.0, 0.0)
    [feeder_line] = [formatEvent(e) for e in events if e.get("feeder") == "street-a" and "n" in e]
    assert ": OVER LIMIT: must-run 4000 W + away 0 W, 500 W above the limit (committed + unknown 500 W above," \
           " measured 500 W above)" in feeder_line
    # The total is within its 5000 W: no must-run clause there.
    assert net.summary.total_within_limit


def test_verdict_detail_says_nothing_within_the_limit():
    assert verdict_detail(1000.0, 1000.0, 1000.0, 2000.0, 0.0) == ""
    assert verdict_detail(1000.0, 900.0, None, 0.0, 0.0) == ""
    assert verdict_detail(1000.0, 1200.0, None, 0.0, 0.0) == " (committed + unknown 200 W above)"


# ------------------------------------------------------------------ the demo


def _summary(**changes) -> RoundSummary:
    fields = dict(number=7, event="E", limit_w=10000.0, committed_w=9550.0, unknown_w=0.0, feasible=True,
                  homes={}, started=0.0, finished=0.002, measured_w=12050.0)
    fields.update(changes)
    return RoundSummary(**fields)


def test_the_demo_parses_the_round_line_with_its_measured_total(tmp_path):
    net = Net(CONFIG)
    with capturedLogs() as events:
        net.aggregator.announce.round_finished(_summary())
        net.aggregator.announce.round_finished(_summary(number=8, measured_w=9600.0))
    lines = [formatEvent(e) for e in events if "ms" in e]
    assert lines[0].startswith(
        "round 7 event E: committed 9550 W + unknown 0 W, measured 12050 W of limit 10000 W: OVER LIMIT"
        " (measured 2050 W above)")
    match = demo.ROUND_LINE.search(lines[0])
    assert match is not None
    assert (match["number"], match["committed"], match["unknown"], match["measured"], match["limit"],
            match["verdict"]) == ("7", "9550", "0", "12050", "10000", "OVER LIMIT")
    log = tmp_path / "aggregator.log"
    # An older line without the measured figure still parses.
    old = "round 6 event E: committed 9000 W + unknown 0 W of limit 10000 W: within limit (round took 1.0 ms)"
    log.write_text("\n".join([old, *lines]) + "\n", encoding="utf-8")
    assert demo.summary(str(log)) == ("3 rounds; highest committed + unknown 9.55 kW, highest measured 12.05 kW"
                                      " against a limit of 10.00 kW; rounds over the limit: 1")


def _status(last: dict, measured_now: float) -> dict:
    return {
        "event": {"id": "E", "limit_w": 10000.0, "end": "2026-11-23T20:34:07.703Z"},
        "last_round": last,
        "homes": {"h1": {"connected": True, "demand_w": 12000.0, "level_w": 9550.0, "measured_w": measured_now,
                         "loads": []}},
    }


def _last(**changes) -> dict:
    last = {"number": 7, "event": "E", "limit_w": 10000.0, "committed_w": 9550.0, "unknown_w": 0.0,
            "measured_w": 9600.0, "must_w": 0.0, "away_w": 0.0, "within_limit": True, "feasible": True,
            "finished": "2026-11-23T20:33:25.396Z", "homes": {}}
    last.update(changes)
    return last


def test_the_demo_never_says_within_limit_while_measured_is_over():
    within = demo.render(_status(_last(), 9600.0), 0.0, 100.0)
    assert "measured 9.60 kW of limit 10.00 kW: within limit" in within
    # The round's own measured total over the limit, whatever the flag says.
    view = demo.render(_status(_last(measured_w=12050.0), 9600.0), 0.0, 100.0)
    assert "within limit" not in view
    assert "measured 12.05 kW of limit 10.00 kW: OVER LIMIT (measured 2.05 kW above)" in view
    # Measured now (between rounds) over the limit.
    view = demo.render(_status(_last(), 11000.0), 0.0, 100.0)
    assert "within limit" not in view and "measured now 1.00 kW above" in view
    # Must-run loads above the limit.
    view = demo.render(_status(_last(committed_w=10500.0, measured_w=10500.0, must_w=10500.0, within_limit=False,
                                     feasible=False), 10500.0), 0.0, 100.0)
    assert "OVER LIMIT (must-run 10.50 kW + away 0.00 kW, 0.50 kW above the limit;" in view


# --------------------------------------------------- between rounds: the watch


class Watched:
    """A ``Net`` whose aggregator's own ``MeasuredWatch`` has its round
    requests recorded, then passed to the real ``Rounds.request``."""

    def __init__(self, text=CONFIG, forward=True):
        self.net = Net(text)
        aggregator = self.net.aggregator
        self.requests: list[str] = []

        def request(reason):
            self.requests.append(reason)
            if forward:
                aggregator.rounds.request(reason)

        self.watch = aggregator.watch
        assert isinstance(self.watch, MeasuredWatch)
        self.watch.request_round = request


def settled(watched: Watched, *homes):
    """The first round done, every home committing its budget."""
    net = watched.net
    net.run_until(START + 1)
    assert net.summary is not None and net.summary.number == 1
    return homes


def test_the_watch_logs_a_crossing_once_and_asks_for_a_round():
    w = Watched()
    net = w.net
    h1 = net.home("h1", load("oven", 3000, on=True), comply=0.1)
    h2 = net.home("h2", load("ev", 2000, on=True), comply=0.1)
    settled(w)
    assert w.watch.total_w == 5000.0
    with capturedLogs() as events:
        measure(h1, 3000)
        measure(h2, 2100)
        measure(h2, 2300)  # still above: no second line, no second request
    warned = [formatEvent(e) for e in events if e["log_level"].name == "warn"]
    assert warned == ["measured total 5100 W is above the limit 5000 W of event peak: OVER LIMIT; a round follows"]
    assert w.requests == ["measured power above the limit"]
    assert w.watch.total_w == 5300.0
    # The round it asked for follows at once (the debounce), not on the period.
    before = len(h1.budgets())
    net.run_until(net.clock.seconds() + 0.2)
    assert len(h1.budgets()) == before + 1
    # Back within: said once.
    with capturedLogs() as events:
        measure(h2, 1900)
        measure(h2, 1800)
    assert [formatEvent(e) for e in events if "back within" in e["log_format"]] == [
        "measured total 4900 W is back within the limit 5000 W of event peak"]
    assert w.requests == ["measured power above the limit"]
    # Above again: a new crossing, a new line and request.
    with capturedLogs() as events:
        measure(h2, 2500)
    assert len([e for e in events if "OVER LIMIT" in e["log_format"]]) == 1
    assert len(w.requests) == 2


def test_the_watch_counts_homes_without_a_measurement_as_the_rounds_do():
    w = Watched(forward=False)
    net = w.net
    h1 = net.home("h1", load("oven", 3000, on=True), comply=0.1)
    h2 = net.home("h2", load("ev", 2000, on=True), comply=0.1)
    h3 = net.home("h3", load("sauna", 1500, on=True))
    h3.leave()  # away: at its level, 1500 W
    settled(w, h1, h2)
    # The round shed h1 or h2 to fit 5000 W beside h3's 1500 W.
    committed = net.summary.committed_w
    assert w.watch.total_w == pytest.approx(committed + 1500.0)
    with capturedLogs() as events:
        measure(h1, 4000)
    assert w.watch.total_w == pytest.approx(4000.0 + net.aggregator.registry["h2"].level + 1500.0)
    assert any("OVER LIMIT" in e["log_format"] for e in events) == (w.watch.total_w > LIMIT_W)


def test_the_watch_says_nothing_outside_events():
    w = Watched()
    net = w.net
    h1 = net.home("h1", load("oven", 3000, on=True))
    with capturedLogs() as events:
        measure(h1, 9000)
    assert w.requests == [] and not [e for e in events if "limit" in e["log_format"]]
    assert w.watch.total_w == 9000.0, "kept all the same, for when an event starts"


def test_the_watch_judges_each_event_afresh():
    w = Watched(forward=False)
    net = w.net
    h1 = net.home("h1", load("oven", 3000, on=True))
    net.run_until(START)
    measure(h1, 6000)
    assert len(w.requests) == 1
    net.aggregator.cancel_event("peak")
    assert w.watch.over == set()
    # A new event under which the home is still over: a new crossing.
    net.aggregator.add_event("later", 4, "+0", "+100")
    with capturedLogs() as events:
        measure(h1, 6000)
    assert [formatEvent(e) for e in events if e["log_level"].name == "warn"] == [
        "measured total 6000 W is above the limit 4000 W of event later: OVER LIMIT; a round follows"]
    assert len(w.requests) == 2


def test_the_watch_watches_every_feeder():
    w = Watched(FEEDERS, forward=False)
    net = w.net
    h1 = net.home("h1", load("oven", 3000, on=True))
    h2 = net.home("h2", load("ev", 1000, on=True))
    net.run_until(START)
    with capturedLogs() as events:
        measure(h1, 3600)
        measure(h2, 1000)
    warned = [formatEvent(e) for e in events if e["log_level"].name == "warn"]
    assert warned == ["feeder street-a: measured 3600 W is above the limit 3500 W of event peak: OVER LIMIT;"
                      " a round follows"]
    assert w.requests == ["measured power above the limit"]
    assert w.watch.feeder_w[0] == 3600.0 and w.watch.total_w == 4600.0
    with capturedLogs() as events:
        measure(h1, 3400)
    assert [formatEvent(e) for e in events if "back within" in e["log_format"]] == [
        "feeder street-a: measured 3400 W is back within the limit 3500 W of event peak"]


def test_the_watchs_running_totals_match_a_fresh_sum():
    w = Watched(FEEDERS, forward=False)
    net = w.net
    homes = [net.home(h, load("l", 1000 * i, on=True), comply=0.1) for i, h in enumerate(("h1", "h2", "h3"), 1)]
    net.run_until(START + 1)
    for i, watts in enumerate((700.0, 2200.0, 3100.5, 10.0, 0.0, 1234.5)):
        measure(homes[i % 3], watts)
    homes[1].leave()
    running, feeders = w.watch.total_w, w.watch.feeder_w.copy()
    w.watch.resum()
    assert running == pytest.approx(w.watch.total_w) and feeders == pytest.approx(w.watch.feeder_w)


def test_a_home_away_is_watched_at_its_cautious_figure_not_its_last_measurement():
    from jeisson.aggregator.homes import HomeRecord

    away = HomeRecord("h1", "s", level_w=1000.0, measured_w=1000.0, budget_w=5000.0, in_event="peak",
                      budget_end=2000.0)
    # Before it left it drew 1 kW; its budget lets it draw 5 kW now.
    assert measured_or_counted_w(away, now=1000.0) == 5000.0
