"""What the aggregator writes to its store, moment by moment.

A real ``Aggregator`` on a ``task.Clock`` with fake homes (tests/peers.py)
and a real ``SqliteStore`` file under ``tmp_path`` (``threaded=False``:
commits run at once, the batch timer on the same clock).  Each test reads
back what a restart or the audit trail would: the journal, the state
scopes, the measurements, through the store's own queries or another
connection to the file.
"""

import json
import sqlite3

import pytest
from twisted.internet.task import Clock

from jeisson import store as kinds
from jeisson.aggregator import memory
from jeisson.aggregator.config import config_from_string
from jeisson.aggregator.core import Aggregator
from jeisson.store.sqlite import SqliteStore
from jeisson.wire import aggregator_home as wire
from tests.peers import Net, load
from tests.test_aggregator_events import fired

START, END, LIMIT_W, TIMEOUT = 20.0, 200.0, 5000.0, 5.0

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
[event:peak]
limit_kw = {LIMIT_W / 1000:g}
start = +{START:g}
end = +{END:g}
"""

H1_LOADS = (load("oven", 3000, priority=10, on=True), load("dryer", 1000, priority=1, on=True))
H2_LOADS = (load("ev", 2000, priority=5, on=False),)


class CountingStore(SqliteStore):
    """The real store, counting the state writes it is asked for."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.puts: list[tuple[str, str]] = []

    def put(self, scope, key, value):
        self.puts.append((scope, key))
        super().put(scope, key, value)


class StoredNet(Net):
    """``Net`` with a store: a real SQLite file on the same clock (or on
    ``clock``, already at the time a restart happens)."""

    def __init__(self, config_text, path, clock=None, start=True, executor=None, busy_timeout_s=5.0, **options):
        self.clock = clock if clock is not None else Clock()
        self.store = CountingStore(str(path), self.clock, batch_s=0.5, threaded=False, executor=executor,
                                   busy_timeout_s=busy_timeout_s)
        self.store.open()
        self.config = config_from_string(config_text)
        self.aggregator = Aggregator(self.config, self.clock, store=self.store, **options)
        if start:
            self.aggregator.start()
        self._port = 4000


def fired_journal(store, **query):
    """The journal as a query reads it: what is committed (so commit first)."""
    fired(store.durable())
    return fired(store.journal(**query))


def committed(path, sql, *params):
    """What is on disk, through a connection of its own."""
    with sqlite3.connect(str(path)) as db:
        return db.execute(sql, params).fetchall()


@pytest.fixture
def path(tmp_path):
    return tmp_path / "aggregator.sqlite"


@pytest.fixture
def net(path):
    return StoredNet(CONFIG, path)


def run_round(net, h1, h2):
    """The first round of ``peak``: h1 sheds to 3000 W, h2 is granted 2000 W."""
    net.run_until(START)
    h1.commit(1, 3000, on=("oven",))
    h2.commit(1, 2000, on=("ev",))
    assert net.summary.number == 1


# ------------------------------------------------------------------ events


def test_a_config_event_is_kept_with_its_absolute_times_its_anchor_and_its_offer(net, path):
    net.store.durable()
    assert net.store.state(memory.EVENT) == {"peak": {
        "limit_w": LIMIT_W, "start": START, "end": END, "version": 1, "start_window_s": 0.0, "end_window_s": 0.0,
        "source": "the config"}}
    assert net.store.state(memory.ANCHOR) == {"peak": 0.0}
    [offered] = fired_journal(net.store, kinds=[kinds.EVENT])
    assert (offered.subject, offered.detail["verdict"], offered.detail["source"]) == ("peak", "added", "the config")
    assert (offered.detail["start"], offered.detail["end"], offered.detail["limit_w"]) == (START, END, LIMIT_W)


def test_manhole_events_are_durable_before_their_verdict_and_a_cancellation_is_kept_with_its_version(net, path):
    net.run_until(5)
    verdict = net.aggregator.add_event("gala", 4, "+100", "+400", version=3)
    # Fired: so it is on disk, read by another connection.
    assert fired(verdict) == "added"
    [(value,)] = committed(path, "SELECT value FROM state WHERE scope = 'event' AND key = 'gala'")
    assert json.loads(value) == {"limit_w": 4000.0, "start": 105.0, "end": 405.0, "version": 3,
                                 "start_window_s": 0.0, "end_window_s": 0.0, "source": "the manhole"}
    assert fired(net.aggregator.cancel_event("gala")).startswith("cancelled")
    [(value,)] = committed(path, "SELECT value FROM state WHERE scope = 'event' AND key = 'gala'")
    assert json.loads(value) == {"cancelled": 4}
    # A refusal changes no state; the journal has every offer and its verdict.
    assert fired(net.aggregator.add_event("gala", 4, "+100", "+400", version=2)).startswith("refused")
    verdicts = [(e.detail["verdict"], e.detail["version"]) for e in
                fired_journal(net.store, subjects=["gala"], kinds=[kinds.EVENT])]
    assert verdicts == [("added", 3), ("cancelled", 4), ("refused", 2)]


# ------------------------------------------------------------------- homes


def test_a_registration_is_journaled_with_its_peer_and_the_home_record_written(net, path):
    h1 = net.home("h1", *H1_LOADS)
    [registered] = fired_journal(net.store, kinds=[kinds.REGISTERED])
    assert (registered.subject, registered.detail) == ("h1", {"peer": h1.peer})
    net.run_until(memory.FLUSH_S)  # no event yet: the bid's figures follow within FLUSH_S
    kept = net.store.state(memory.HOME)["h1"]
    assert (kept["level_w"], kept["demand_w"], kept["max_w"]) == (4000.0, 4000.0, 4000.0)
    assert kept["budget_w"] is None and kept["in_event"] is None


def test_budgets_and_commitments_are_journaled_and_each_record_written_once_a_round(net, path):
    h1 = net.home("h1", *H1_LOADS)
    h2 = net.home("h2", *H2_LOADS)
    net.run_until(START)
    net.store.puts.clear()
    h1.commit(1, 3000, on=("oven",))
    h2.commit(1, 2000, on=("ev",))
    budgets = fired_journal(net.store, kinds=[kinds.BUDGET])
    assert [(b.subject, b.round, b.detail["w"], b.detail["event"], b.detail["end"]) for b in budgets] == [
        ("h1", 1, 3000.0, "peak", END), ("h2", 1, 2000.0, "peak", END)]
    commits = fired_journal(net.store, kinds=[kinds.COMMIT])
    assert [(c.subject, c.round, c.detail["w"], c.detail["on"]) for c in commits] == [
        ("h1", 1, 3000.0, ["oven"]), ("h2", 1, 2000.0, ["ev"])]
    kept = net.store.state(memory.HOME)
    # h1 shed: written when it committed its lower draw (until then its
    # record held its old, higher one).
    assert (kept["h1"]["budget_w"], kept["h1"]["budget_end"], kept["h1"]["in_event"], kept["h1"]["level_w"]) == \
        (3000.0, END, "peak", 3000.0)
    # h2 was granted more than it drew: its raise was written before its
    # budget went out (``budgets_due``); the record the commit after its
    # commitment holds is its latest, with the draw it committed.
    assert (kept["h2"]["budget_w"], kept["h2"]["in_event"], kept["h2"]["level_w"]) == (2000.0, "peak", 2000.0)
    assert sorted(key for scope, key in net.store.puts if scope == memory.HOME) == ["h1", "h2"], \
        "each home's record once in the round's commit"
    # After the event, the release and the commitments that answer it are written.
    net.run_until(END)
    h1.commit(net.aggregator.rounds.number, 4000, on=("oven", "dryer"))
    net.run_until(END + memory.FLUSH_S)
    kept = net.store.state(memory.HOME)["h1"]
    assert (kept["budget_w"], kept["in_event"], kept["level_w"], kept["on"]) == (None, None, 4000.0, ["oven", "dryer"])
    [release] = [e for e in fired_journal(net.store, kinds=[kinds.RELEASE]) if e.subject == "h1"]
    assert release.round == net.aggregator.rounds.number and release.detail == {"event": "peak"}


def test_a_home_leaving_is_written_at_once_with_what_it_is_counted_at(net, path):
    h1 = net.home("h1", *H1_LOADS)
    h1.say(wire.Measure(3.0, 4100.0, ()))
    h1.leave()
    [left] = [e for e in fired_journal(net.store, kinds=[kinds.REGISTERED]) if e.detail.get("left")]
    assert left.subject == "h1" and left.detail["counted_w"] == 4100.0
    assert net.store.state(memory.HOME)["h1"]["measured_w"] == 4100.0


def test_in_an_event_a_rise_is_in_the_next_commit_and_noise_and_falls_wait(net, path):
    h1 = net.home("h1", *H1_LOADS)
    h2 = net.home("h2", *H2_LOADS)
    run_round(net, h1, h2)
    net.run_until(START + 1)
    net.store.puts.clear()

    def written():
        return [key for scope, key in net.store.puts if scope == memory.HOME]

    # Below what the records count (h1 committed 3000 W, h2 holds 2000 W): nothing.
    h1.say(wire.Measure(START + 1, 2990.0, ()))
    h2.say(wire.Measure(START + 1, 1950.0, ()))
    fired(net.store.durable())
    assert written() == []
    # h2 draws above its budget: written in the next commit (judged right
    # before it), on disk within a batch without anyone asking.
    h2.say(wire.Measure(START + 2, 2600.0, ()))
    net.run_until(START + 2 + net.store.batch_s)
    assert written() == ["h2"]
    [(value,)] = committed(path, "SELECT value FROM state WHERE scope = 'home' AND key = 'h2'")
    assert json.loads(value)["measured_w"] == 2600.0
    # Noise below that high mark, and a fall, wait (the record stays above).
    for watts in (2550.0, 2590.0, 2000.0):
        h2.say(wire.Measure(START + 3, watts, ()))
    fired(net.store.durable())
    assert written() == ["h2"]
    h2.say(wire.Measure(START + 4, 2700.0, ()))
    fired(net.store.durable())
    assert written() == ["h2", "h2"]
    # A bid above what is written rises too (h1 switched its dryer back on).
    h1.flex(*H1_LOADS)
    fired(net.store.durable())
    assert written()[-1] == "h1"
    # Three changes of one home before a commit: its record written once, as it stands then.
    for watts in (2800.0, 2900.0, 3000.0):
        h2.say(wire.Measure(START + 5, watts, ()))
    fired(net.store.durable())
    assert written()[-1] == "h2" and written().count("h2") == 3
    assert net.store.state(memory.HOME)["h2"]["measured_w"] == 3000.0


def test_measurements_go_to_the_store(net, path):
    h1 = net.home("h1", *H1_LOADS)
    h1.say(wire.Measure(3.0, 4100.0, ()))
    h1.say(wire.Measure(4.0, 3900.0, ()))
    net.store.durable()
    samples = fired(net.store.measurements(subjects=["h1"]))
    assert [(s.at, s.watts, s.span_s) for s in samples] == [(3.0, 4100.0, 0.0), (4.0, 3900.0, 0.0)]


def test_a_silent_home_is_journaled_with_its_round(net, path):
    h1 = net.home("h1", *H1_LOADS)
    net.home("h2", *H2_LOADS)
    net.run_until(START + TIMEOUT)  # h1 never commits its shed
    [silent] = fired_journal(net.store, kinds=[memory.SILENT])
    assert (silent.subject, silent.round, silent.detail) == ("h1", 1, {"counted_w": 4000.0})
    assert h1.open


# ------------------------------------------------------------------ rounds


def test_a_round_summary_is_journaled_compactly_and_the_numbers_kept(net, path):
    h1 = net.home("h1", *H1_LOADS)
    h2 = net.home("h2", *H2_LOADS)
    run_round(net, h1, h2)
    [entry] = fired_journal(net.store, kinds=[kinds.ROUND])
    assert (entry.subject, entry.round) == ("peak", 1)
    detail = entry.detail
    assert (detail["limit_w"], detail["committed_w"], detail["unknown_w"]) == (LIMIT_W, 5000.0, 0.0)
    assert detail["within_limit"] is True and detail["homes"] == 2 and detail["late"] == []
    assert "number" in detail and "started" in detail and "feeders" in detail
    # The round's number was durable before its first budget went out.
    assert committed(path, "SELECT value FROM state WHERE scope = 'meta' AND key = 'round'") == [("1",)]
    net.run_until(END)
    assert net.store.state(memory.META) == {"round": net.aggregator.rounds.number}


def test_each_home_is_written_at_most_once_a_round(path):
    homes = 30
    text = CONFIG.split("[home:h1]")[0] + "".join(f"[home:h{i}]\nsecret = s{i}\n" for i in range(1, homes + 1))
    text += f"[event:peak]\nlimit_kw = {homes * 0.05:g}\nstart = +{START:g}\nend = +{END:g}\n"
    net = StoredNet(text, path)
    fleet = [net.home(f"h{i}", load(f"l{i}", 100, on=True), comply=0.5) for i in range(1, homes + 1)]
    net.run_until(START + 10)
    rounds = net.aggregator.rounds_run
    # Every home measures a new power before each periodic round, and
    # commits to each budget: its record changes every round, and is
    # written once, with the budget (in an event, what changes between
    # budgets and does not raise what the record counts waits for the next).
    for k in range(5):
        net.store.puts.clear()
        next_round = min(c.getTime() for c in net.clock.getDelayedCalls() if c.func.__name__ == "run")
        assert next_round - net.clock.seconds() > memory.FLUSH_S + 1
        for i, home in enumerate(fleet):
            # A new figure each time, meter noise below what the home was
            # granted (above it, a rise, written at once), the total within
            # the limit (above it, the measured watch asks for a round).
            budget_w = home.budgets()[-1].budget_w
            home.say(wire.Measure(net.clock.seconds(), max(budget_w - 10.0 + (i + k) % 5, 0.0), ()))
        net.run_until(next_round - 0.01)
        assert [key for scope, key in net.store.puts if scope == memory.HOME] == []
        net.run_until(next_round + 1)
        written = sorted(key for scope, key in net.store.puts if scope == memory.HOME)
        assert written == sorted(f"h{i}" for i in range(1, homes + 1)), "each home once a round: with its budget"
    assert net.aggregator.rounds_run - rounds == 5


# ------------------------------------------------------------ the audit trail


def test_why_a_load_was_on_or_off_tells_the_chain(net, path):
    h1 = net.home("h1", *H1_LOADS)
    h2 = net.home("h2", *H2_LOADS)
    run_round(net, h1, h2)
    net.run_until(START + 5)
    why = fired(net.aggregator.why("h1", "dryer"))
    lines = why.splitlines()
    assert lines[0] == f"home h1, load dryer at {wire.format_utc(START + 5)}: off"
    assert lines[1] == f"- committed at {wire.format_utc(START)} in round 1: 3000 W, on: oven (dryer is not among them)"
    assert lines[2] == (f"- answering the BUDGET of round 1 sent at {wire.format_utc(START)}: 3000 W in event peak, "
                        f"until {wire.format_utc(END)}")
    assert lines[3].startswith("- round 1 in event peak: limit 5000 W, committed 5000 W + unknown 0 W")
    assert lines[3].endswith("within limit")
    assert lines[4] == (f"- event peak version 1 (added) from the config: limit 5000 W from {wire.format_utc(START)} "
                        f"to {wire.format_utc(END)}")
    assert fired(net.aggregator.why("h1", "oven")).splitlines()[0].endswith(": on")
    # At an instant before the round, the chain is the one in force then.
    assert "no record: home h1 made no commitment on record by then; it last registered or left at" in \
        fired(net.aggregator.why("h1", "oven", START - 1))


def test_why_after_the_event_names_the_release_and_a_home_never_seen_has_no_record(net, path):
    h1 = net.home("h1", *H1_LOADS)
    h2 = net.home("h2", *H2_LOADS)
    run_round(net, h1, h2)
    net.run_until(END)
    number = net.aggregator.rounds.number
    h1.commit(number, 4000, on=("oven", "dryer"))
    why = fired(net.aggregator.why("h1", "dryer", "+1")).splitlines()
    assert why[0].endswith(": on")
    assert why[2] == (f"- answering the RELEASE of round {number} sent at {wire.format_utc(END)}: event peak over, "
                      "its loads as its owner set them")
    assert why[3].startswith("- event peak version 1 (added) from the config")
    text = fired(net.aggregator.why("h9", "x"))
    assert "no record: home h9 made no commitment on record by then; nor did it ever register by then" in text


def test_why_without_a_store_says_there_is_no_journal():
    net = Net(CONFIG)
    assert fired(net.aggregator.why("h1", "oven")).startswith("no record: this aggregator has no store")


def test_the_homes_measurements_export_to_csv(net, path, tmp_path):
    h1 = net.home("h1", *H1_LOADS)
    h2 = net.home("h2", *H2_LOADS)
    for at in (1.0, 2.0, 3.0):
        h1.say(wire.Measure(at, 4000.0 + at, ()))
        h2.say(wire.Measure(at, 10.0 * at, ()))
    fired(net.store.durable())
    out = tmp_path / "h1.csv"
    assert fired(net.aggregator.export_csv(str(out), since=2.0, home="h1")) == 2
    rows = out.read_text().splitlines()
    assert rows[0] == "subject,at_utc,at,watts,span_s"
    assert [row.split(",")[0] + "," + row.split(",")[3] for row in rows[1:]] == ["h1,4002.0", "h1,4003.0"]
    assert fired(net.aggregator.export_csv(str(tmp_path / "all.csv"))) == 6
