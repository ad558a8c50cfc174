"""An aggregator killed and restarted on its store resumes, and counts honestly.

Each test runs a real ``Aggregator`` with fake homes (tests/peers.py) on a
``task.Clock`` and a real SQLite file under ``tmp_path``.  A *kill -9* is
the old aggregator and its store dropped as they are: its clock is never
advanced again, so nothing more of it runs, and what its store had not
committed is lost.  The new aggregator opens the same file on a clock of its
own, at the moment of the restart.
"""

import json
import os
import sqlite3

import pytest
from twisted.internet.defer import Deferred
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from jeisson.aggregator import memory
from jeisson.aggregator.config import read_config
from jeisson.aggregator.core import Aggregator
from jeisson.aggregator.eventsfile import EventsFileWatcher
from jeisson.aggregator.home_link import UNAVAILABLE
from jeisson.aggregator.homes import HomeRecord
from jeisson.wire import aggregator_home as wire
from tests.peers import HeldJobs, Net, load
from tests.test_aggregator_events import fired
from tests.test_aggregator_memory import StoredNet, committed

START, END, LIMIT_W, TIMEOUT = 20.0, 600.0, 10_000.0, 5.0

CONFIG = f"""
[aggregator]
listen = tcp:7700:interface=127.0.0.1
heartbeat_s = 600
round_period_s = 30
round_timeout_s = {TIMEOUT:g}
[home:h1]
secret = s1
[home:h2]
secret = s2
[home:h3]
secret = s3
[event:peak]
limit_kw = {LIMIT_W / 1000:g}
start = +{START:g}
end = +{END:g}
"""

# Together they want 15,050 W; the event allows 10,000.
LOADS = {
    "h1": (load("heater", 4000, priority=10, on=True), load("ev", 3000, priority=5, on=True)),
    "h2": (load("oven", 3000, priority=8, on=True), load("dryer", 2000, priority=2, on=True)),
    "h3": (load("pump", 2000, priority=9, on=True), load("sauna", 1050, priority=1, on=True)),
}


def clock_at(moment: float) -> Clock:
    clock = Clock()
    clock.advance(moment)
    return clock


def restarted(old: Net, path, config=CONFIG, **options) -> StoredNet:
    """Kill -9 ``old`` (it is never run again) and start a new aggregator on
    the same store file, at the same moment."""
    return StoredNet(config, path, clock=clock_at(old.clock.seconds()), **options)


@pytest.fixture
def path(tmp_path):
    return tmp_path / "aggregator.sqlite"


def negotiated(path):
    """Three homes in the event, the first round's commitments in."""
    net = StoredNet(CONFIG, path)
    homes = {home_id: net.home(home_id, *loads, comply=0.5) for home_id, loads in LOADS.items()}
    net.run_until(START + 1)
    summary = net.summary
    assert summary.number == 1 and summary.within_limit and summary.committed_w >= 9000
    return net, homes, summary


# --------------------------------------------------- the scenario of the issue


def test_after_a_kill_the_first_home_back_is_not_granted_its_whole_demand(path):
    old, homes, summary = negotiated(path)
    granted = {home_id: home.budgets()[-1].budget_w for home_id, home in homes.items()}
    last_number = old.aggregator.rounds.number
    # kill -9 mid-event; the homes keep drawing under their budgets.
    net = restarted(old, path)
    assert [(e.id, e.start, e.end, e.limit_w) for e in net.aggregator.events] == [("peak", START, END, LIMIT_W)]
    assert net.aggregator.current_event.id == "peak"
    # h1 comes back first, wanting all it has.
    h1 = net.home("h1", *LOADS["h1"], comply=0.5)
    with capturedLogs() as events:
        net.run_until(net.clock.seconds() + 1)
    [budget] = h1.budgets()
    others = granted["h2"] + granted["h3"]
    assert budget.round == last_number + 1, "the numbering goes on above the old"
    assert budget.budget_w <= LIMIT_W - others + 1e-6 and budget.budget_w < 7000
    summary = net.summary
    assert summary.unknown_w == pytest.approx(others), "the others count at their last records"
    assert summary.committed_w + summary.unknown_w <= LIMIT_W + 1e-6 and summary.within_limit
    [line] = [formatEvent(e) for e in events if "of limit" in e["log_format"] and e.get("feeder") is None]
    assert f"unknown {others:.0f} W" in line and "within limit" in line
    # The others come back: nothing is unknown any more.
    h2 = net.home("h2", *LOADS["h2"], comply=0.5)
    h3 = net.home("h3", *LOADS["h3"], comply=0.5)
    net.run_until(net.clock.seconds() + 2)
    assert net.summary.unknown_w == 0 and net.summary.within_limit
    assert min(m.round for h in (h1, h2, h3) for m in h.budgets()) > last_number


def test_a_kill_during_a_round_never_reuses_a_number_a_home_has_seen(path):
    old = StoredNet(CONFIG, path)
    homes = [old.home(home_id, *loads) for home_id, loads in LOADS.items()]  # they never commit
    old.run_until(START)
    seen = max(m.round for h in homes for m in h.budgets())
    net = restarted(old, path)
    h1 = net.home("h1", *LOADS["h1"])
    net.run_until(net.clock.seconds() + 1)
    assert h1.budgets()[0].round == seen + 1
    # A late COMMIT to the old round is not a round "never run".
    assert h1.commit(seen, 1000) == []


def test_a_released_home_away_counts_at_its_demand_and_the_release_number_is_kept(path):
    old, homes, _ = negotiated(path)
    old.run_until(END + 1)
    released = [m for m in homes["h2"].received if isinstance(m[1], wire.Release)]
    assert released
    net = restarted(old, path)
    assert net.aggregator.rounds.number == old.aggregator.rounds.number
    record = net.aggregator.homes["h2"]
    assert record.in_event is None and record.budget_w is None
    # Away and without a budget, it runs its loads as its owner set them.
    assert record.cautious_w(now=net.clock.seconds()) == 5000.0


def test_a_home_that_never_acknowledged_a_lower_budget_counts_at_the_one_it_did_across_a_kill(path):
    old, homes, _ = negotiated(path)
    h2 = homes["h2"]
    [acknowledged] = h2.budgets()
    # h2 switched its loads off a while, and h1's ev comes first now: the
    # next round sends h2 less, but h2 goes deaf and its link is lost before
    # it commits.  It may still hold round 1's budget (and switch its loads
    # back on under it): it counts so, not at what it reported (0 W) nor at
    # the budget it never got, now and after a kill (the record written as
    # it left says so).
    h2.comply = None
    h2.flex(*(load(o.id, o.rated_w, o.priority, on=False) for o in LOADS["h2"]))
    homes["h1"].flex(load("heater", 4000, priority=10, on=True), load("ev", 3000, priority=20, on=False))
    old.run_until(old.clock.seconds() + 1)
    sent = h2.budgets()[-1]
    assert sent.round == 2 and sent.budget_w < acknowledged.budget_w
    h2.leave()
    old.run_until(old.clock.seconds() + old.store.batch_s)  # the record written as it left, committed
    now = old.clock.seconds()
    assert old.aggregator.homes["h2"].cautious_w(now=now) == acknowledged.budget_w
    net = restarted(old, path)
    record = net.aggregator.homes["h2"]
    assert (record.budget_w, record.held_w, record.held_event) == (sent.budget_w, acknowledged.budget_w, "peak")
    assert record.cautious_w(now=now) == acknowledged.budget_w


def test_a_home_that_never_acknowledged_a_budget_counts_at_its_demand_across_a_kill(path):
    old = StoredNet(CONFIG, path)
    for home_id in ("h1", "h3"):
        old.home(home_id, *LOADS[home_id], comply=0.5)
    # h2 draws 3000 W and its owner wants 5000: it never commits to its
    # first budget (deaf), so it runs its loads as set and may draw 5000 W.
    h2 = old.home("h2", load("oven", 3000, priority=8, on=True), load("dryer", 2000, priority=2, on=False))
    old.run_until(START + TIMEOUT + 1)
    [sent] = h2.budgets()
    assert sent.budget_w < 5000
    assert old.aggregator.homes["h2"].cautious_w(now=old.clock.seconds()) == 5000.0
    h2.leave()
    old.run_until(old.clock.seconds() + old.store.batch_s)
    net = restarted(old, path)
    record = net.aggregator.homes["h2"]
    assert record.budget_w == sent.budget_w and record.held_event is None
    assert record.cautious_w(now=net.clock.seconds()) == 5000.0


def test_a_budget_whose_end_passed_while_the_aggregator_was_down_counts_at_least_the_demand(path):
    old, homes, _ = negotiated(path)
    h1_budget = homes["h1"].budgets()[-1].budget_w
    assert h1_budget < 7000
    # Down across the event's end: the homes restored their loads at it.
    net = StoredNet(CONFIG, path, clock=clock_at(END + 60))
    record = net.aggregator.homes["h1"]
    assert record.budget_end == END and record.in_event is None
    assert record.cautious_w(now=net.clock.seconds()) == 7000.0
    assert [e.id for e in net.aggregator.events] == [], "an event that ended while down is over"


# --------------------------------------------------------- honest accounting


def test_right_after_a_first_start_homes_never_heard_from_count_at_their_max_kw(path):
    config = CONFIG.replace("secret = s2\n", "secret = s2\nmax_kw = 7.5\n")
    net = StoredNet(config, path)
    h1 = net.home("h1", *LOADS["h1"], comply=0.5)
    with capturedLogs() as events:
        net.run_until(START + 1)
    # h2 at its max_kw, h3 at the default 10 kW: only h1's must-run... nothing fits.
    assert net.summary.unknown_w == 7500 + 10_000
    assert any("unknown 17500 W" in formatEvent(e) for e in events)
    assert h1.budgets()[0].budget_w == 0.0


def test_what_a_home_that_cannot_answer_is_counted_at():
    record = HomeRecord("h", "s", registered_max_w=9000.0)
    assert record.cautious_w(now=0) == 9000.0, "no record at all: its registered maximum"
    record.max_w = 6050.0
    assert record.cautious_w(now=0) == 6050.0, "it reported its loads: their sum"
    record.level_w, record.demand_w = 2000.0, 5000.0
    assert record.cautious_w(now=0) == 5000.0, "no budget: it runs as set, at its demand"
    record.budget_w, record.budget_end, record.in_event, record.budget_round = 3000.0, 100.0, "peak", 1
    assert record.cautious_w(now=50) == 5000.0, "a budget sent, never acknowledged: it may run as set"
    record.committed(wire.Commit(1, 1, 2000.0, ()))
    assert (record.held_w, record.held_end, record.held_event) == (3000.0, 100.0, "peak")
    assert record.cautious_w(now=50) == 3000.0, "under its budget: the most of level, measurement, budget"
    record.measured_w = 3500.0
    assert record.cautious_w(now=50) == 3500.0
    assert record.cautious_w(now=100) == 5000.0, "its budget ended: it restored its loads"
    # A lower budget sent in round 2, never acknowledged: it may still hold the one of round 1.
    record.measured_w = None
    record.budget_w, record.budget_round = 1000.0, 2
    assert record.cautious_w(now=50) == 3000.0, "the budget it acknowledged, not the one merely sent"
    assert record.cautious_w(granted_w=500.0, now=50) == 3000.0
    record.committed(wire.Commit(2, 1, 1000.0, ()))
    assert record.cautious_w(now=50) == 1000.0, "it acknowledged the lower one"
    # Released (``Schedule`` forgets the budget sent) and not yet answered: it may run as set.
    record.in_event = record.budget_w = None
    assert record.cautious_w(now=50) == 5000.0
    record.committed(wire.Commit(3, 1, 4000.0, ()))
    assert record.held_event is None, "the answer to its RELEASE: it holds no budget"
    assert record.cautious_w(now=50) == 5000.0
    record.level_w = record.measured_w = record.demand_w = None
    record.budget_w, record.in_event, record.budget_round = 0.0, "peak", 4
    record.committed(wire.Commit(4, 1, 0.0, ()))
    assert record.cautious_w(now=50) == 0.0, "known to be zero"


# ------------------------------------------------------- durable before said


def test_welcome_only_once_the_registration_is_durable_and_what_waits_follows_it(path):
    held = HeldJobs()
    net = StoredNet(CONFIG, path, executor=held)
    held.run_all()
    home = net.connect()
    assert home.hello("h1") == [], "no WELCOME before the registration is on disk"
    assert home.say(wire.Ping(7)) == []
    assert committed(path, "SELECT subject FROM journal WHERE kind = 'registered'") == []
    held.run_all()
    assert committed(path, "SELECT subject FROM journal WHERE kind = 'registered'") == [("h1",)]
    assert home.take() == [wire.Welcome(1, "h1", 600.0), wire.Pong(7)]
    assert home.flex(*LOADS["h1"]) == [wire.Ack(1)]


def test_a_home_whose_registration_cannot_be_stored_is_refused_and_welcomed_later(path):
    net = StoredNet(CONFIG, path, busy_timeout_s=0)
    # Another process holds the file locked (a backup, the sqlite3 shell).
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    home = net.connect()
    with capturedLogs() as events:
        answer = home.hello("h1")
    assert [(m.verb, m.code) for m in answer] == [("REFUSED", UNAVAILABLE)] and home.closed
    assert any(e["log_level"].name == "error" and "could not be stored" in formatEvent(e) for e in events)
    assert not net.home_status("h1")["connected"]
    other.execute("COMMIT")
    other.close()
    # The home tries again: welcome once the store's retry commits.
    home = net.connect()
    assert home.hello("h1") == []
    net.run_until(net.clock.seconds() + net.store.batch_s)
    assert home.take() == [wire.Welcome(1, "h1", 600.0)] and net.home_status("h1")["connected"]


def test_the_manhole_says_added_only_once_the_event_is_durable(path):
    held = HeldJobs()
    net = StoredNet(CONFIG, path, executor=held)
    held.run_all()
    with capturedLogs() as events:
        verdict = net.aggregator.add_event("gala", 4, "+100", "+400")
        assert not verdict.called and not any("gala added" in formatEvent(e) for e in events)
        assert net.aggregator.events[-1].id == "gala", "it holds at once"
        held.run_all()
    assert fired(verdict) == "added"
    assert any("event gala added from the manhole" in formatEvent(e) for e in events)
    [(value,)] = committed(path, "SELECT value FROM state WHERE scope = 'event' AND key = 'gala'")
    assert json.loads(value)["start"] == 100.0
    # And it is there after a kill.
    net2 = restarted(net, path)
    assert [e.id for e in net2.aggregator.events] == ["peak", "gala"]


def test_a_round_waits_for_its_number_to_be_durable_before_its_budgets(path):
    held = HeldJobs()
    net = StoredNet(CONFIG, path, executor=held)
    held.run_all()
    h1 = net.connect()
    h1.hello("h1")
    held.run_all()
    h1.flex(*LOADS["h1"])
    net.run_until(START)
    assert h1.budgets() == [], "round 1 is planned, its number not yet on disk"
    held.run_all()
    assert [b.round for b in h1.budgets()] == [1]
    assert committed(path, "SELECT value FROM state WHERE scope = 'meta'") == [("1",)]


def test_with_the_store_failing_rounds_go_on_the_limit_first_and_say_what_they_risk(path):
    net = StoredNet(CONFIG, path, busy_timeout_s=0)
    h1 = net.home("h1", *LOADS["h1"])
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with capturedLogs() as events:
            net.run_until(START)
            assert h1.budgets() == [], "until the store's next attempt fails"
            net.run_until(START + net.store.batch_s)
    finally:
        other.execute("COMMIT")
        other.close()
    assert [b.round for b in h1.budgets()] == [1]
    assert any(e["log_level"].name == "error" and formatEvent(e).startswith(
        "number 1 could not be stored (") and "a restart before the store recovers could use it again"
        in formatEvent(e) for e in events)


# ------------------------------------------------------ +SECONDS never move


def test_config_events_in_plus_seconds_do_not_move_across_restarts(path):
    net = StoredNet(CONFIG, path)
    assert [(e.start, e.end) for e in net.aggregator.events] == [(START, END)]
    net2 = restarted(net, path)  # at 0 still
    net2.run_until(90)
    net3 = restarted(net2, path)  # 90 s later: without a store it would be 110 to 690
    assert [(e.start, e.end) for e in net3.aggregator.events] == [(START, END)]
    assert net3.aggregator.anchors == {"peak": 0.0}
    # Without a store, they count from this run's start.
    assert [(e.start, e.end) for e in Net(CONFIG).aggregator.events] == [(START, END)]


def test_a_config_event_anchored_long_ago_is_refused_as_over_saying_why(path):
    StoredNet(CONFIG, path)
    with capturedLogs() as events:
        StoredNet(CONFIG, path, clock=clock_at(END + 3600))
    [warning] = [formatEvent(e) for e in events if e["log_level"].name == "warn"]
    assert "event peak version 1 from the config refused: it has already ended (expired)" in warning
    assert "its +SECONDS count from 1970-01-01T00:00:00.000Z, when event id peak was first read" in warning


def write_events(path, text, mtime):
    path.write_text(text)
    os.utime(path, (mtime, mtime))


GALA = "[event:gala]\nversion = {version}\nlimit_kw = {limit}\nstart = {start}\nend = +400\n"


def test_events_file_plus_seconds_hold_across_restarts_and_edits_of_other_keys(tmp_path, path):
    events_path = tmp_path / "events.ini"
    write_events(events_path, GALA.format(version=1, limit=7, start="+100"), 10)
    net = StoredNet(CONFIG, path)
    EventsFileWatcher(net.aggregator, str(events_path), 1.0, net.clock).startService()
    gala = {e.id: e for e in net.aggregator.events}["gala"]
    assert (gala.start, gala.end) == (110.0, 410.0), "from the file's time when gala was first read"
    net.run_until(150)
    assert net.aggregator.current_event.id == "gala" and net.aggregator.active_event().limit_w == 7000
    # kill -9, and a restart that reads the same file again: nothing moves.
    net = restarted(net, path)
    EventsFileWatcher(net.aggregator, str(events_path), 1.0, net.clock).startService()
    gala = {e.id: e for e in net.aggregator.events}["gala"]
    assert (gala.start, gala.end, gala.limit_w) == (110.0, 410.0, 7000.0)
    # The operator tightens the running event: a new version, a saved file.
    write_events(events_path, GALA.format(version=2, limit=4, start="+100"), 160)
    net.run_until(161)
    gala = {e.id: e for e in net.aggregator.events}["gala"]
    assert (gala.start, gala.end, gala.limit_w, gala.version) == (110.0, 410.0, 4000.0, 2)
    # An edit of the time text itself counts from the same anchor.
    write_events(events_path, GALA.format(version=3, limit=4, start="+120"), 170)
    net.run_until(171)
    assert {e.id: e for e in net.aggregator.events}["gala"].start == 130.0
    net = restarted(net, path)
    assert {e.id: (e.start, e.end, e.version) for e in net.aggregator.events}["gala"] == (130.0, 410.0, 3)


def test_a_bad_edit_of_the_events_file_names_file_section_and_key_and_changes_nothing(tmp_path, path):
    events_path = tmp_path / "events.ini"
    write_events(events_path, GALA.format(version=1, limit=7, start="+100"), 10)
    net = StoredNet(CONFIG, path)
    EventsFileWatcher(net.aggregator, str(events_path), 1.0, net.clock).startService()
    net.run_until(150)
    before = list(net.aggregator.events)
    fired(net.store.durable())
    kept = committed(path, "SELECT scope, key, value FROM state WHERE scope IN ('event', 'anchor') ORDER BY 1, 2")
    with capturedLogs() as events:
        write_events(events_path, GALA.format(version=2, limit=3, start="soon"), 160)
        net.run_until(161)
    [error] = [formatEvent(e) for e in events if e["log_level"].name == "error"]
    assert error.startswith(f"{events_path}: [event:gala] start: expected a UTC time")
    assert "the events stay as they were" in error
    assert net.aggregator.events == before and net.aggregator.active_event().limit_w == 7000
    fired(net.store.durable())
    assert committed(path, "SELECT scope, key, value FROM state WHERE scope IN ('event', 'anchor') "
                           "ORDER BY 1, 2") == kept


def test_the_events_file_is_found_next_to_the_config_wherever_the_aggregator_runs(tmp_path, monkeypatch):
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "aggregator.ini").write_text(CONFIG.replace("heartbeat_s", "events_file = events.ini\nheartbeat_s"))
    write_events(etc / "events.ini", GALA.format(version=1, limit=7, start="+100"), 10)
    elsewhere = tmp_path / "run"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = read_config("../etc/aggregator.ini")
    clock = Clock()
    aggregator = Aggregator(config, clock)
    aggregator.start()
    EventsFileWatcher(aggregator, config.events_file, 1.0, clock).startService()
    assert [e.id for e in aggregator.events] == ["peak", "gala"]


# -------------------------------------------------------- the store's upkeep


def test_without_a_store_the_aggregator_says_what_a_restart_forgets():
    from jeisson.aggregator.tap import AggregatorService

    service = AggregatorService(Net(CONFIG).aggregator)  # no store given
    with capturedLogs() as events:
        service.startService()
    service.stopService()
    assert any(e["log_level"].name == "warn" and formatEvent(e) == (
        "no store ([store] path = none): events added while running, the round numbering and the homes' last "
        "power do not survive a restart") for e in events)


def test_a_clean_stop_writes_what_waits_and_a_restart_resumes_the_homes_records(path):
    net = StoredNet(CONFIG, path)
    h1 = net.home("h1", *LOADS["h1"])
    h1.say(wire.Measure(1.0, 6900.0, ()))
    net.aggregator.stop()  # before FLUSH_S: written at stop
    fired(net.store.close())
    net = StoredNet(CONFIG, path, clock=clock_at(5))
    record = net.aggregator.homes["h1"]
    assert (record.level_w, record.measured_w, record.demand_w, record.max_w) == (7000.0, 6900.0, 7000.0, 7000.0)
    assert not record.connected
    assert net.store.state(memory.HOME)["h1"]["measured_at"] == 1.0


# ------------------------------------------------- durable before it can rise


def kill_when(home, condition, path, snapshot):
    """As ``condition(message)`` first holds of a message reaching ``home``,
    copy what is on disk then to ``snapshot``: a kill -9 at that instant
    (the store's queue, and any timer due at the same moment, lost).  The
    list returned gets ``(time, message)``."""
    taken = []
    heard = home.line_received

    def line_received(line):
        heard(line)
        if not taken and condition(home.received[-1][1]):
            with sqlite3.connect(str(path)) as live, sqlite3.connect(str(snapshot)) as copy:
                live.backup(copy)
            taken.append(home.received[-1])

    home.line_received = line_received
    return taken


def kept_home(path, home_id):
    [(value,)] = committed(path, "SELECT value FROM state WHERE scope = 'home' AND key = ?", home_id)
    return json.loads(value)


def test_a_raised_budget_is_on_disk_before_it_goes_out_so_a_kill_right_after_counts_it(path, tmp_path):
    old = StoredNet(CONFIG, path)
    h1 = old.home("h1", *LOADS["h1"], comply=0.5)
    h2 = old.home("h2", *LOADS["h2"], comply=0.5)
    # h3, never heard from, counts at its max_kw (10 kW): h1 and h2 get 0 W.
    old.run_until(START + 1)
    assert [b.budget_w for b in h1.budgets() + h2.budgets()] == [0.0, 0.0]
    old.run_until(25)
    # The round h3 brings raises h1; the kill falls as its BUDGET arrives.
    snapshot = tmp_path / "killed.sqlite"
    killed = kill_when(h1, lambda m: isinstance(m, wire.Budget) and m.budget_w > 0, path, snapshot)
    old.home("h3", *LOADS["h3"], comply=0.5)
    old.run_until(40)
    [(killed_at, raised)] = killed
    assert raised.budget_w >= 3000
    kept = kept_home(snapshot, "h1")
    assert (kept["budget_w"], kept["in_event"], kept["budget_end"]) == (raised.budget_w, "peak", raised.end), \
        "the raise was durable before it went out"
    net = StoredNet(CONFIG, snapshot, clock=clock_at(killed_at))
    assert net.aggregator.homes["h1"].cautious_w(now=net.clock.seconds()) >= raised.budget_w
    # h2 and h3 come back; h1 is slow, and keeps drawing under its raise.
    homes = [net.home(home_id, *LOADS[home_id], comply=0.5) for home_id in ("h2", "h3")]
    net.run_until(net.clock.seconds() + 2)
    drawn = raised.budget_w + sum(home.budgets()[-1].budget_w for home in homes)
    assert drawn <= LIMIT_W + 1e-6
    assert net.summary.within_limit and net.summary.unknown_w >= raised.budget_w


def test_a_home_whose_draw_rises_in_an_event_is_written_at_once_not_at_its_next_budget(path):
    # h2 and h3 away at 1.5 kW each: h1 (nothing on) is granted its 7000 W.
    config = CONFIG.replace("secret = s2\n", "secret = s2\nmax_kw = 1.5\n").replace(
        "secret = s3\n", "secret = s3\nmax_kw = 1.5\n")
    old = StoredNet(config, path)
    h1 = old.home("h1", load("heater", 4000, priority=10), load("ev", 3000, priority=5))
    old.run_until(START + 1)
    [budget] = h1.budgets()
    assert budget.budget_w == 7000.0
    # Its loads held on by their constraints: it commits 10 kW.
    h1.commit(budget.round, 10_000, on=("heater", "ev"))
    old.run_until(START + 21)
    kept = kept_home(path, "h1")
    assert kept["level_w"] == 10_000.0, "the rise is on disk within a batch, not at the event's end"
    net = restarted(old, path)
    assert net.aggregator.homes["h1"].cautious_w(now=net.clock.seconds()) == 10_000.0


def connected(net, held, home_id, loads, comply=None):
    """A home registered and its bid taken, on a store whose commits ``held`` holds."""
    home = net.connect(comply)
    home.hello(home_id)
    held.run_all()
    home.flex(*loads)
    return home


def counted_after_a_kill(path, home_id, now):
    """What an aggregator restarted on ``path`` at ``now`` counts an away home at."""
    record = HomeRecord(home_id, "")
    record.restore(kept_home(path, home_id), now)
    return record.cautious_w(now=now)


def test_a_raise_waits_for_its_record_and_a_shed_does_not(path):
    held = HeldJobs()
    net = StoredNet(CONFIG, path, executor=held)
    held.run_all()
    h1 = connected(net, held, "h1", LOADS["h1"])
    h2 = connected(net, held, "h2", LOADS["h2"])
    net.run_until(START)
    held.run_all()  # the round's number
    # h3, never heard from, counts at 10 kW: both shed to 0 W.
    for home in (h1, h2):
        [budget] = home.budgets()
        assert budget.budget_w == 0.0
        home.commit(1, 0.0, on=())
    h3 = connected(net, held, "h3", LOADS["h3"])
    net.run_until(START + 1)
    held.run_all()  # round 2's number
    [shed] = h3.budgets()
    assert shed.budget_w < 3050 and len(h1.budgets()) == len(h2.budgets()) == 1, "the shed goes at once"
    h3.commit(2, shed.budget_w)
    assert len(h1.budgets()) == len(h2.budgets()) == 1, "the raises wait for their records"
    now = net.clock.seconds()
    assert counted_after_a_kill(path, "h1", now) == 0.0
    held.run_all()
    raised = {home_id: home.budgets()[-1].budget_w for home_id, home in (("h1", h1), ("h2", h2))}
    assert min(raised.values()) > 0 and sum(raised.values()) + shed.budget_w <= LIMIT_W + 1e-6
    assert {home_id: counted_after_a_kill(path, home_id, now) for home_id in raised} == raised
    # The phase's timeout counts from the raises, as from any budget.
    [timeout] = [c for c in net.clock.getDelayedCalls() if c.func.__name__ == "_phase_timeout"]
    assert timeout.getTime() == now + TIMEOUT
    # Had the round been abandoned during the wait, nothing would have gone.


def test_a_round_abandoned_while_its_raises_wait_for_the_store_sends_them_not(path):
    held = HeldJobs()
    net = StoredNet(CONFIG, path, executor=held)
    held.run_all()
    homes = [connected(net, held, home_id, LOADS[home_id], comply=0.5) for home_id in ("h1", "h2")]
    net.run_until(START)
    held.run_all()
    net.run_until(START + 1)
    h3 = connected(net, held, "h3", LOADS["h3"])
    net.run_until(START + 2)
    held.run_all()
    h3.commit(2, h3.budgets()[0].budget_w)  # the grant: raises for h1 and h2, waiting
    net.aggregator.cancel_event("peak")
    held.run_all()
    net.run_until(START + 4 * TIMEOUT)
    assert [b.budget_w for home in homes for b in home.budgets()] == [0.0, 0.0], "no raise after the abandon"


def test_a_raise_the_store_cannot_keep_goes_out_anyway_and_says_what_a_restart_risks(path):
    net = StoredNet(CONFIG, path, busy_timeout_s=0)
    h1 = net.home("h1", *LOADS["h1"], comply=0.5)
    net.home("h2", *LOADS["h2"], comply=0.5)
    net.run_until(START + 1)
    h3 = net.home("h3", *LOADS["h3"])
    net.run_until(START + 2)
    other = sqlite3.connect(str(path), isolation_level=None)
    other.execute("BEGIN EXCLUSIVE")
    try:
        with capturedLogs() as events:
            h3.commit(2, h3.budgets()[0].budget_w)
    finally:
        other.execute("COMMIT")
        other.close()
    assert h1.budgets()[-1].budget_w > 0, "the limit first: the round goes on"
    assert any(e["log_level"].name == "error" and formatEvent(e).startswith(
        "round 2: the raised budgets of 2 home(s) could not be stored (") and
        "a restart before the store recovers would count those homes below them" in formatEvent(e)
        for e in events)


def test_a_raise_in_the_start_window_goes_at_its_moment_once_durable_and_never_before(path):
    config = CONFIG.replace(f"start = +{START:g}\n", f"start = +{START:g}\nstart_window_s = 10\n").replace(
        "secret = s1\n", "secret = s1\nmax_kw = 1\n").replace("secret = s3\n", "secret = s3\nmax_kw = 1\n")
    net = Net(config)  # no store: the durable wait is played by a gate
    gate = Deferred()
    net.aggregator.rounds.context.durable = lambda: gate
    h2 = net.home("h2", load("oven", 3000, priority=8), load("dryer", 2000, priority=2))
    net.run_until(START)
    assert h2.budgets() == [], "its moment passed, its record not yet durable"
    gate.callback(None)
    [(at, raised)] = [(t, m) for t, m in h2.received if isinstance(m, wire.Budget)]
    assert (at, raised.budget_w) == (START, 5000.0)
    # Once durable before its moment, it waits for its moment.
    net = Net(config)
    gate = Deferred()
    net.aggregator.rounds.context.durable = lambda: gate
    h2 = net.home("h2", load("oven", 3000, priority=8), load("dryer", 2000, priority=2))
    net.run_until(START - 10)
    gate.callback(None)
    assert h2.budgets() == []
    net.run_until(START)
    [(at, raised)] = [(t, m) for t, m in h2.received if isinstance(m, wire.Budget)]
    assert START - 10 < at < START and raised.budget_w == 5000.0, "at h2's own moment in the window"
