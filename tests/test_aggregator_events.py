"""Live events: the rules of jeisson.aggregator.events, and the aggregator acting on them.

Events added, modified and cancelled while the aggregator runs (manhole
calls and a real events file on disk, on a task.Clock), late and expired
ones, duplicates, and the randomised start and restore windows.
"""

import os

import pytest
from twisted.internet.task import Clock
from twisted.logger import capturedLogs
from twisted.python.failure import Failure

from jeisson.aggregator import events as ev
from jeisson.aggregator.events import Event, EventBook, EventSpec, Offer, Time, events_from_text
from jeisson.aggregator.eventsfile import EventsFileWatcher
from jeisson.config import ConfigError
from jeisson.wire import aggregator_home as wire
from tests.peers import Net, load
from tests.test_aggregator_core import CONFIG, ROUND_DEBOUNCE_S


def fired(d):
    """What a Deferred that has already fired holds (raises its failure)."""
    results = []
    d.addBoth(results.append)
    assert results, f"{d!r} has not fired"
    if isinstance(results[0], Failure):
        results[0].raiseException()
    return results[0]


# ------------------------------------------------------------------ the book


def test_the_rules_of_the_book():
    book = EventBook()
    peak = Event("peak", 5000.0, 100.0, 200.0)
    assert book.offer(Offer(peak), 0).verdict == ev.ADDED
    assert book.offer(Offer(peak), 0).verdict == ev.DUPLICATE
    lower = Event("peak", 4000.0, 100.0, 200.0, version=2)
    assert book.offer(Offer(lower), 0).verdict == ev.MODIFIED
    assert book.events["peak"] == lower
    refused = book.offer(Offer(peak), 0)
    assert refused.verdict == ev.REFUSED and "older" in refused.detail
    other = book.offer(Offer(Event("peak", 3000.0, 100.0, 200.0, version=2)), 0)
    assert other.verdict == ev.REFUSED and "raise the version" in other.detail
    assert book.offer(Offer(Event("peak", 0, 0, 0, version=3), cancelled=True), 0).verdict == ev.CANCELLED
    assert "peak" not in book.events
    assert book.offer(Offer(Event("peak", 0, 0, 0, version=3), cancelled=True), 0).verdict == ev.DUPLICATE
    assert book.offer(Offer(lower), 0).verdict == ev.REFUSED, "a cancelled version cannot come back"
    assert book.offer(Offer(Event("peak", 4000.0, 100.0, 200.0, version=4)), 0).verdict == ev.ADDED
    assert book.offer(Offer(Event("ghost", 0, 0, 0), cancelled=True), 0).verdict == ev.REFUSED


def test_expired_and_late_events():
    book = EventBook()
    expired = book.offer(Offer(Event("old", 5000.0, 10.0, 50.0)), 50.0)
    assert expired.verdict == ev.REFUSED and "expired" in expired.detail
    late = book.offer(Offer(Event("now", 5000.0, 10.0, 80.0)), 50.0)
    assert late.verdict == ev.LATE and "starts now and ends on time" in late.detail
    assert book.active(50.0) == [book.events["now"]]


def test_an_event_longer_than_max_event_s_is_refused():
    book = EventBook(max_event_s=3600.0)
    assert book.offer(Offer(Event("hour", 5000.0, 100.0, 3700.0)), 0).verdict == ev.ADDED
    long = book.offer(Offer(Event("long", 5000.0, 100.0, 3701.0)), 0)
    assert long.verdict == ev.REFUSED and "longer than the 3600 s" in long.detail and "max_event_s" in long.detail
    assert EventBook().max_event_s == ev.MAX_EVENT_S == 86400.0
    net = Net(NO_EVENT)
    assert fired(net.aggregator.add_event("decade", 4, "+60", "+315360000")).startswith("refused: it lasts")


def test_next_boundary_and_chains_count_the_start_window():
    book = EventBook()
    book.offer(Offer(Event("a", 5000.0, 100.0, 200.0, start_window_s=30.0)), 0)
    book.offer(Offer(Event("b", 4000.0, 220.0, 300.0, start_window_s=30.0)), 0)
    assert book.next_boundary(0) == 70.0
    assert book.next_boundary(70.0) == 190.0
    assert book.next_limit(0) == 100.0 and book.next_limit(100.0) == 220.0, "a limit holds from its start"
    assert book.limit_in_force(99.0) is None and book.limit_in_force(100.0) == 5000.0
    assert book.limit_in_force(220.0) == 4000.0
    # b is in force from 190, before a ends: one chain.
    assert book.chain_end(book.events["a"]) == 300.0


def test_an_events_file_reads_versions_windows_and_cancellations():
    specs = events_from_text(
        "[event:a]\nlimit_kw = 4\nstart = +10\nend = 2001-01-01T00:00:00Z\nversion = 3\nstart_window_s = 5\n"
        "end_window_s = 20\n[event:b]\nversion = 2\ncancelled = yes\n", "events.ini")
    assert specs == [EventSpec("a", 3, 4000.0, Time(10.0, relative=True), Time(978307200.0), 5.0, 20.0),
                     EventSpec("b", 2, cancelled=True)]
    # Resolved against an anchor: +SECONDS count from it, UTC times stay.
    assert specs[0].offer(978307000.0) == Offer(Event("a", 4000.0, 978307010.0, 978307200.0, 3, 5.0, 20.0))
    assert specs[1].offer(5.0) == Offer(Event("b", 0.0, 5.0, 5.0, 2), cancelled=True)


def test_an_event_that_ends_before_it_starts_once_resolved_is_refused():
    [spec] = events_from_text("[event:a]\nlimit_kw = 4\nstart = +100\nend = 1970-01-01T00:01:40Z\n", "x.ini")
    outcome = EventBook().offer(spec.offer(50.0), 0.0)
    assert outcome.verdict == ev.REFUSED and "must end after it starts" in outcome.detail


@pytest.mark.parametrize("text, what", [
    ("[event:a]\nlimit_kw = 4\nstart = +10\nend = +5\n", "[event:a] end: the event must end after it starts"),
    ("[event:a]\nlimit_kw = 4\nstart = +10\nend = +50\ncolour = red\n", "[event:a] colour: unknown key"),
    ("[event:a]\nlimit_kw = 4\nstart = +10\nend = +50\nversion = 0\n", "[event:a] version"),
    ("[home:a]\nsecret = x\n", "[home:a]: unknown section"),
])
def test_events_file_errors_name_the_file_section_and_key(text, what):
    with pytest.raises(ConfigError) as info:
        events_from_text(text, "events.ini")
    assert str(info.value).startswith("events.ini: ") and what in str(info.value)


# ------------------------------------------------------ the aggregator, live

NO_EVENT = CONFIG[:CONFIG.index("[event:peak]")]


def homes(net):
    # h1 draws 4000 W; h2 wants its 2000 W ev.
    h1 = net.home("h1", load("oven", 3000, priority=10, on=True), load("dryer", 1000, priority=1, on=True),
                  comply=0.1)
    h2 = net.home("h2", load("ev", 2000, priority=5), comply=0.1)
    return h1, h2


def test_an_event_added_from_the_manhole_runs_and_one_cancelled_releases():
    net = Net(NO_EVENT)
    h1, h2 = homes(net)
    net.run_until(10)
    assert net.aggregator.current_event is None
    assert fired(net.aggregator.add_event("gala", 4.5, "+20", "+600")) == "added"
    net.run_until(30 + ROUND_DEBOUNCE_S + 1)
    assert net.summary.event == "gala" and net.summary.limit_w == 4500
    assert net.summary.within_limit
    # Cancelled mid-event: every home is released at once (no end window).
    with capturedLogs() as events:
        assert fired(net.aggregator.cancel_event("gala")).startswith("cancelled")
    assert net.aggregator.current_event is None
    assert isinstance(h1.received[-1][1], wire.Release) and isinstance(h2.received[-1][1], wire.Release)
    assert any("cancelled by" in e["log_format"] and e["source"] == "the manhole" for e in events)


def test_a_modified_limit_abandons_the_round_and_negotiates_under_the_new_one():
    net = Net(NO_EVENT)
    h1, h2 = homes(net)
    net.aggregator.add_event("gala", 6, 5, 600)
    net.run_until(5 + ROUND_DEBOUNCE_S + 1)
    assert net.summary.limit_w == 6000
    assert fired(net.aggregator.add_event("gala", 3.5, 5, 600, version=2)).startswith("modified")
    net.run_until(net.clock.seconds() + ROUND_DEBOUNCE_S + 1)
    assert net.summary.limit_w == 3500 and net.summary.within_limit
    # A duplicate changes nothing; an older version is refused with a reason.
    rounds = net.aggregator.rounds_run
    assert fired(net.aggregator.add_event("gala", 3.5, 5, 600, version=2)).startswith("duplicate")
    with capturedLogs() as events:
        assert fired(net.aggregator.add_event("gala", 9, 5, 600, version=1)).startswith("refused")
    assert any(e["log_level"].name == "warn" and "older" in e["why"] for e in events)
    net.run_until(net.clock.seconds() + 1)
    assert net.aggregator.rounds_run == rounds


def test_expired_and_late_events_from_the_manhole():
    net = Net(NO_EVENT)
    homes(net)
    net.run_until(100)
    assert fired(net.aggregator.add_event("past", 4, 10, 50)).startswith("refused: it has already ended")
    assert fired(net.aggregator.add_event("now", 4, 50, "+100")).startswith("added late")
    assert net.aggregator.current_event.id == "now"
    assert fired(net.aggregator.add_event("bad id!", 4, "+1", "+2")).startswith("refused")


@pytest.mark.parametrize("value", [1e300, "1e300", "+1e20", "-1e20", "nan", float("inf"), "soon", "25:00"])
def test_a_moment_that_cannot_be_read_or_written_is_refused_by_the_manhole_in_the_apis_words(value):
    from jeisson.moments import FORMS, parse_moment

    with pytest.raises(ValueError):
        parse_moment(value, 1_800_000_000.0)
    net = Net(NO_EVENT)
    net.run_until(100)
    said = f"expected a moment within the years 1 to 9999 ({FORMS}), got {value!r}"  # the API's, after the field
    assert fired(net.aggregator.add_event("far", 4, value, "+60")) == f"refused: start: {said}"
    assert fired(net.aggregator.add_event("far", 4, "+10", value)) == f"refused: end: {said}"
    assert "far" not in net.aggregator.schedule.book.events
    assert fired(net.aggregator.add_event("far", 4, "+10", "+60")) == "added"


def test_homes_shed_at_their_own_moments_in_the_start_window_and_restore_in_the_end_window():
    net = Net(NO_EVENT.replace("[home:h1]", "seed = 7\n[home:h1]"))
    hs = [net.home(f"h{i}", load("heater", 2000, on=True), comply=0.1) for i in (1, 2, 3, 4)]
    net.aggregator.add_event("gala", 4, "+100", "+200", start_window_s=40, end_window_s=60)
    net.run_until(59)
    assert all(h.budgets() == [] for h in hs), "nothing before the start window"
    net.run_until(100)
    times = sorted(t for h in hs for t, m in h.received if isinstance(m, wire.Budget))
    assert len(times) == 4 and 60 <= times[0] and times[-1] <= 100
    assert times[-1] - times[0] > 1, "the homes do not all shed at once"
    assert net.summary.within_limit
    ends = sorted(m.end for h in hs for m in h.budgets())
    assert 200 <= ends[0] and ends[-1] <= 260 and ends[-1] - ends[0] > 1
    net.run_until(300)
    releases = sorted(t for h in hs for t, m in h.received if isinstance(m, wire.Release))
    assert len(releases) == 4 and 200 <= releases[0] and releases[-1] <= 260
    # Each home is released at the restore time its budget named.
    for h in hs:
        [released] = [t for t, m in h.received if isinstance(m, wire.Release)]
        assert released == pytest.approx(h.budgets()[-1].end, abs=1e-3)  # BUDGET carries milliseconds


def test_a_limit_in_force_holds_while_a_lower_event_binds_in_its_start_window():
    """"low" binds from the start of its 100 s start window, being the
    lowest, and each home would shed for it at its own moment; "mid", 4 kW,
    starts meanwhile: the homes with the earliest moments get low's budget
    at once, as many as mid's limit takes, and only those."""
    net = Net(NO_EVENT.replace("[home:h1]", "seed = 7\n[home:h1]"))
    hs = [net.home(f"h{i}", load("heater", 2000, on=True), comply=0.1) for i in (1, 2, 3, 4)]
    records = net.aggregator.homes

    def drawn() -> float:
        return sum(r.level for r in records.values())

    net.aggregator.add_event("base", 6, "+1", "+1000")
    net.run_until(30)
    assert drawn() == pytest.approx(6000)
    for h in hs:
        h.take()
    net.aggregator.add_event("low", 2, "+100", "+1000", start_window_s=100)
    net.aggregator.add_event("mid", 4, "+10", "+1000")
    net.run_until(39.9)
    early = [h for h in hs if any(b.event == "low" for b in h.budgets())]
    before = {h.id: records[h.id].level for h in hs}
    targets = net.aggregator.round.targets
    net.run_until(40.5)
    hurried = [h for h in hs if any(b.event == "low" for b in h.budgets())]
    assert drawn() <= 4000 + 1e-6
    assert len(early) < len(hurried) < 4, "only as many as mid's limit takes"
    moments = {h.id: net.aggregator.schedule.home_start(net.aggregator.schedule.book.events["low"], h.id)
               for h in hs}
    lowering = [h for h in hs if h not in early and targets[h.id] < before[h.id]]
    assert len(lowering) > len(hurried) - len(early)
    assert max(moments[h.id] for h in hurried if h not in early) < min(
        moments[h.id] for h in lowering if h not in hurried), "the earliest moments first, among the homes whose " \
                                                               "budget lowers their draw"
    net.run_until(131)
    assert all(any(b.event == "low" for b in h.budgets()) for h in hs)
    assert drawn() <= 2000 + 1e-6


# ------------------------------------------------------------ the events file


def test_the_events_file_is_watched_and_bad_versions_of_it_change_nothing(tmp_path):
    path = tmp_path / "events.ini"
    net = Net(NO_EVENT)
    homes(net)
    watcher = EventsFileWatcher(net.aggregator, str(path), 2.0, net.clock)
    with capturedLogs() as events:
        watcher.startService()
    assert any("does not exist" in e["log_format"] for e in events)

    def write(text, mtime):
        path.write_text(text)
        os.utime(path, (mtime, mtime))

    write("[event:gala]\nlimit_kw = 4.5\nstart = 2001-01-01T00:00:30Z\nend = 2001-01-01T00:10:00Z\n", 1)
    base = 978307200.0  # 2001-01-01T00:00:00Z
    net.clock.advance(base - net.clock.seconds())
    net.run_until(base + 2)
    assert [e.id for e in net.aggregator.events] == ["gala"]
    net.run_until(base + 31)
    assert net.aggregator.current_event.id == "gala"
    with capturedLogs() as events:
        write("[event:gala]\nlimit_kw = four\n", 2)
        net.run_until(base + 34)
    assert any(e["log_level"].name == "error" and "limit_kw" in e["error"] for e in events)
    assert net.aggregator.current_event.limit_w == 4500, "a bad file changes nothing"
    write("[event:gala]\nversion = 2\ncancelled = yes\n", 3)
    net.run_until(base + 36)
    assert net.aggregator.current_event is None
    watcher.stopService()


def test_the_aggregator_config_names_its_events_file_next_to_it(tmp_path):
    from jeisson.aggregator.config import read_config

    config_path = tmp_path / "aggregator.ini"
    config_path.write_text(NO_EVENT.replace("[home:h1]", "events_file = events.ini\nevents_poll_s = 1\nseed = 3\n"
                                                          "[home:h1]"))
    config = read_config(str(config_path))
    assert config.events_file == str(tmp_path / "events.ini")
    assert (config.events_poll_s, config.seed) == (1.0, 3)


def test_a_clock_for_the_watcher_is_any_reactor_time():
    assert EventsFileWatcher(None, "x", 1.0, Clock()).period_s == 1.0
