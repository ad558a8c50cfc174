"""What a home writes to its store (jeisson.home.memory), moment by moment.

A real ``Home`` on a ``task.Clock`` with its fake boards and aggregator (the
``Rig`` of tests/peers.py), keeping a real ``SqliteStore`` in a file under
``tmp_path`` (``threaded=False``: a commit runs at once, when its batch is due
on the clock or when something is acknowledged).  What is committed is read
back through another SQLite connection, as another process (or the home
after a restart) would see it.
"""

import csv
import json
import os
import sqlite3

import pytest
from twisted.internet.task import Clock

from jeisson.home.config import read_config
from jeisson.home.core import Home
from jeisson.moments import parse_moment
from jeisson.store import StoreError
from jeisson.store.sqlite import SqliteStore
from tests.peers import Rig

pytestmark = pytest.mark.usefixtures("logs")

# 2027-01-15 08:00:00 UTC: the tests' clocks start here, so that times read
# as a user would give them ("08:05").
T0 = 1_800_000_000.0

CONFIG = """
[home]
id = home-9
secret = s3cret
aggregator = tcp:127.0.0.1:7700
actuators = tcp:7711:interface=127.0.0.1
heartbeat_s = 5
command_timeout_s = 3
measure_period_s = 5

[actuator:a]
relays = 3
[actuator:b]
relays = 2

[load:heater]
actuator = a
relay = 1
rated_w = 2000
priority = 30
min_on_s = 60
min_off_s = 60

[load:fridge]
actuator = a
relay = 2
rated_w = 150
priority = 90
critical = yes

[load:freezer]
actuator = a
relay = 3
rated_w = 300
priority = 5
min_on_s = 60
min_off_s = 30
max_off_s = 120

[load:ev]
actuator = b
relay = 1
rated_w = 3600
priority = 10
min_on_s = 60
min_off_s = 60

[load:washer]
actuator = b
relay = 2
rated_w = 800
priority = 40
min_on_s = 5
min_off_s = 5
"""

# Under 1200 W: the fridge must run, the washer is worth the most that fits;
# the heater, the ev and the freezer are shed.
BUDGET_W = 1200.0


def fired(d):
    """The result of an already-fired Deferred (raising its failure)."""
    results = []
    d.addBoth(results.append)
    assert results, "the Deferred has not fired"
    if hasattr(results[0], "raiseException"):
        results[0].raiseException()
    return results[0]


class StoredRig(Rig):
    """A ``Rig`` whose home keeps a real ``SqliteStore`` in ``path``, its
    clock starting at ``at`` (a restarted home: the same file, a new clock
    at the time of the restart, nothing of the old process running)."""

    def __init__(self, path, at=T0, config_text=CONFIG, batch_s=30.0, executor=None):
        super().__init__(config_text)
        self.clock = Clock()
        self.clock.advance(at)
        self.path = str(path)
        self.store = SqliteStore(self.path, self.clock, batch_s=batch_s, executor=executor)
        self.store.open()
        self.home = Home(self.home.config, self.clock, store=self.store)

    def state(self, scope) -> dict:
        """``scope`` as committed, seen from another connection."""
        return {key: json.loads(value) for key, value in
                committed(self.path, "SELECT key, value FROM state WHERE scope = ?", (scope,))}

    def journal(self, kind=None, since=None) -> list[tuple]:
        """Committed journal entries (at, kind, subject, round, detail), in order."""
        rows = committed(self.path, "SELECT at, kind, subject, round, detail FROM journal ORDER BY at, id")
        return [(at, k, subject, round_number, json.loads(detail)) for at, k, subject, round_number, detail in rows
                if (kind is None or k == kind) and (since is None or at >= since)]

    def samples(self) -> list[tuple]:
        return committed(self.path, "SELECT subject, at, watts FROM measurements ORDER BY at, rowid")


def committed(path, sql, params=()):
    db = sqlite3.connect(path)
    try:
        return db.execute(sql, params).fetchall()
    finally:
        db.close()


def settled(path, at=T0) -> StoredRig:
    """Both boards said HELLO with every relay closed (none commanded yet:
    a first start), the aggregator welcomed the home, and all is committed."""
    rig = StoredRig(path, at)
    rig.board("a", "111")
    rig.board("b", "11")
    rig.connect_aggregator()
    rig.settle()
    fired(rig.store.durable())
    return rig


@pytest.fixture
def rig(tmp_path):
    return settled(tmp_path / "home-9.sqlite")


# -- what each moment writes


def test_a_first_start_journals_the_boards_and_their_loads_found_on_not_commanded(rig):
    start, *rest = rig.journal()
    assert start[1:3] == ("start", "home-9")
    assert start[4]["settings"] == {"desired": dict.fromkeys(rig.home.loads, True), "opt_out_all": False,
                                    "opt_out_events": []}
    joined = [(subject, detail["states"]) for _, kind, subject, _, detail in rest if kind == "board"]
    assert joined == [("a", "111"), ("b", "11")]
    found = {subject: (detail["on"], detail["cause"], detail["commanded"], detail["was"])
             for _, kind, subject, _, detail in rest if kind == "switch"}
    assert found == dict.fromkeys(rig.home.loads, (True, "uncommanded", False, None))
    assert rig.state("load") == {}  # nothing commanded yet
    assert rig.switches() == []


def test_a_budget_is_kept_with_its_round_until_it_is_released(rig):
    rig.clock.advance(10)
    round_number = rig.aggregator.budget(BUDGET_W, end=T0 + 900)
    rig.settle()
    # The COMMIT was sent: what it rests on is committed.
    assert rig.aggregator.commits()[-1].round == round_number
    assert rig.state("budget") == {"active": {"event": "ev-1", "budget_w": BUDGET_W, "end": T0 + 900,
                                              "round": round_number}}
    [budget] = rig.journal("budget")
    assert budget == (T0 + 10, "budget", "ev-1", round_number, {"budget_w": BUDGET_W, "end": T0 + 900,
                                                                "opted_out": False})
    rig.clock.advance(10)
    release_round = rig.aggregator.release()
    rig.settle()
    assert rig.state("budget") == {}
    [release] = rig.journal("release")
    assert release == (T0 + 20, "release", "ev-1", None, {"why": "release"})
    assert rig.aggregator.commits()[-1].round == release_round


def test_each_switch_is_journaled_with_its_cause_and_the_budget_in_force(rig):
    rig.clock.advance(10)
    round_number = rig.aggregator.budget(BUDGET_W, end=T0 + 900)
    rig.settle()
    switches = {subject: (at, round_n, detail) for at, _, subject, round_n, detail in rig.journal("switch", T0 + 10)}
    assert sorted(switches) == ["ev", "freezer", "heater"]
    at, round_n, detail = switches["ev"]
    assert (at, round_n) == (T0 + 10, round_number)
    assert detail == {"on": False, "cause": "budget", "why": ["budget"], "commanded": True, "actuator": "b",
                      "relay": 1, "desired": True, "opted_out": False,
                      "budget": {"event": "ev-1", "budget_w": BUDGET_W, "end": T0 + 900, "round": round_number}}
    # Each load's last commanded state and switch, for its minimum times after a restart.
    assert rig.state("load") == {load: {"on": False, "last_switch": T0 + 10, "actuator": actuator, "relay": relay}
                                 for load, actuator, relay in (("heater", "a", 1), ("freezer", "a", 3),
                                                               ("ev", "b", 1))}


def test_the_owners_changes_are_kept_and_journaled_with_every_setting_then(rig):
    rig.clock.advance(5)
    d = rig.home.set_desired("washer", False)
    assert fired(d) is None  # durable: committed at once, not at the end of the batch
    assert rig.state("owner") == {"load:washer": {"desired": False, "configured": True}}
    fired(rig.home.opt_out("ev-7"))
    assert rig.state("owner")["opt_out"] == {"all": False, "events": ["ev-7"], "configured": [False, []]}
    fired(rig.home.opt_in())
    assert rig.state("owner")["opt_out"] == {"all": False, "events": [], "configured": [False, []]}
    rig.settle()
    fired(rig.store.durable())
    owner = [(subject, detail["change"], detail["settings"]["desired"]["washer"], detail["settings"]["opt_out_events"])
             for _, _, subject, _, detail in rig.journal("owner")]
    assert owner == [("washer", "set washer off", False, []), ("home-9", "opted out of event ev-7", False, ["ev-7"]),
                     ("home-9", "opted back in to every event", False, [])]
    # The switch it caused, and why.
    [switch] = rig.journal("switch", T0 + 5)
    assert (switch[2], switch[4]["on"], switch[4]["cause"], switch[4]["why"]) == ("washer", False, "owner", ["owner"])


def test_the_owners_calls_still_act_at_once_and_fail_when_the_store_cannot_commit(rig, logs):
    fired(rig.store.close())
    d = rig.home.set_desired("washer", False)  # the listener's write fails (logged); the setting holds
    assert rig.home.loads["washer"].desired is False
    failure = []
    d.addErrback(failure.append)
    assert failure and failure[0].check(StoreError)
    logged = [e for e in logs if "log_failure" in e]
    assert [e["log_failure"].check(StoreError) for e in logged] == [StoreError]
    logs[:] = [e for e in logs if "log_failure" not in e]  # expected here: not a test failure


def test_boards_leaving_and_a_load_found_off_though_the_home_had_it_on(rig):
    rig.run_until(T0 + 10)
    rig.aggregator.budget(BUDGET_W, end=T0 + 900)
    rig.settle()
    rig.run_until(T0 + 20)
    rig.boards["b"].lose()
    rig.run_until(T0 + 30)
    rig.board("b", "00")  # a failsafe opened the washer, which the home had on (as found)... and the ev, already off
    rig.settle()
    fired(rig.store.durable())
    boards = [(at - T0, subject, detail) for at, _, subject, _, detail in rig.journal("board", T0 + 1)]
    assert boards == [(20, "b", {"left": True, "loads": ["ev", "washer"]}),
                      (30, "b", {"joined": True, "peer": "192.0.2.12:40000", "states": "00"})]
    # The washer was on but never commanded: found off, with nothing on
    # record it counts as just switched off (min_off_s holds from now).
    [washer] = [e for e in rig.journal("switch", T0 + 30) if e[2] == "washer"]
    assert (washer[4]["on"], washer[4]["cause"], washer[4]["commanded"]) == (False, "board joined", False)
    assert rig.state("load")["washer"]["last_switch"] == T0 + 30
    assert "ev" not in {e[2] for e in rig.journal("switch", T0 + 30)}  # as the home commanded: nothing new


def test_a_failsafe_that_opened_a_load_the_home_had_on_is_journaled_as_such(rig):
    rig.run_until(T0 + 100)
    fired(rig.home.set_desired("washer", False))
    rig.settle()
    rig.run_until(T0 + 110)
    fired(rig.home.set_desired("washer", True))
    rig.settle()
    rig.boards["b"].lose()
    rig.run_until(T0 + 120)
    rig.board("b", "10")
    rig.settle()
    fired(rig.store.durable())
    [found] = [e for e in rig.journal("switch", T0 + 120) if e[2] == "washer" and not e[4]["commanded"]]
    assert (found[4]["on"], found[4]["cause"], found[4]["was"]) == (False, "failsafe", True)


def test_a_refused_switch_is_journaled_with_the_boards_code(tmp_path):
    rig = StoredRig(tmp_path / "h.sqlite")
    rig.board("a", "111", silent=True)
    rig.home.set_desired("heater", False)
    rig.boards["a"].nak("heater", "busy")
    fired(rig.store.durable())
    [failed] = rig.journal("switch failed")
    assert failed[2] == "heater" and failed[4]["code"] == "busy" and failed[4]["on"] is False


def test_readings_are_kept_per_board_per_load_and_for_the_home_at_most_every_measure_period(rig):
    rig.clock.advance(1)
    rig.boards["a"].say(b"MEAS 1990 140 310")
    rig.clock.advance(1)
    rig.boards["b"].say(b"MEAS 3580 790")
    rig.clock.advance(3)
    rig.boards["a"].say(b"MEAS 1900 150 300")  # 4 s after the last kept: not kept (measure_period_s 5)
    rig.clock.advance(1)
    rig.boards["a"].say(b"MEAS 1985 0 305")
    fired(rig.store.durable())
    assert rig.samples() == [
        ("board:a", T0 + 1, 2440.0), ("load:heater", T0 + 1, 1990.0), ("load:fridge", T0 + 1, 140.0),
        ("load:freezer", T0 + 1, 310.0), ("home", T0 + 1, 2440.0 + 3600 + 800),
        ("board:b", T0 + 2, 4370.0), ("load:ev", T0 + 2, 3580.0), ("load:washer", T0 + 2, 790.0),
        ("board:a", T0 + 6, 2290.0), ("load:heater", T0 + 6, 1985.0), ("load:fridge", T0 + 6, 0.0),
        ("load:freezer", T0 + 6, 305.0), ("home", T0 + 6, 2290.0 + 3580 + 790),
    ]


def test_the_csv_export_holds_every_reading_in_the_window(rig, tmp_path):
    for _ in range(3):
        rig.clock.advance(5)  # measure_period_s: every reading kept
        rig.boards["b"].say(b"MEAS 3600 800")
    out = str(tmp_path / "home.csv")
    assert fired(rig.home.export_csv(out, since=T0 + 10, until="2027-01-15T08:00:15Z")) == 8
    with open(out, newline="") as f:
        lines = list(csv.reader(f))
    assert lines[0] == ["subject", "at_utc", "at", "watts", "span_s"]
    assert sorted((row[0], row[1]) for row in lines[1:]) == sorted(
        (subject, f"2027-01-15T08:00:{s}.000Z") for subject in ("board:b", "home", "load:ev", "load:washer")
        for s in (10, 15))


# -- the SD card: what is not acknowledged waits for the batch


def test_writes_wait_for_the_batch_unless_something_is_acknowledged(tmp_path):
    rig = StoredRig(tmp_path / "h.sqlite")
    rig.board("a", "111")
    rig.settle()
    assert rig.journal() == []  # the board's HELLO waits for the batch
    rig.run_until(T0 + 29.9)
    assert rig.journal() == []
    rig.run_until(T0 + 30)
    assert [kind for _, kind, *_ in rig.journal()] == ["start", "board", "switch", "switch", "switch"]
    assert rig.store.stats.commits == 1


def test_the_write_rate_of_the_shipped_home_1_outside_events(tmp_path):
    """home-1: two boards (3 and 2 relays, 5 loads) reading every second, as
    the shipped actuators do, kept every measure_period_s (2 s), and the
    home's total as often.  Each minute: about 2 commits (batch_s 30 s) and
    (2 + 5 + 1) x 30 = 240 rows."""
    from tests.test_home_config import shipped
    config = read_config(shipped(os.path.join(os.path.dirname(__file__), "..", "etc", "jeisson", "home-1.ini"),
                                 tmp_path))
    assert config.store is not None and config.store.batch_s == 30.0
    clock = Clock()
    store = SqliteStore(":memory:", clock, batch_s=config.store.batch_s)
    store.open()
    home = Home(config, clock, store=store)
    fired(store.durable())
    commits, rows = store.stats.commits, store.stats.rows_written
    for _ in range(600):
        clock.advance(1)
        home.board_measured("home-1-a", (2000, 3000, 150))
        home.board_measured("home-1-b", (3600, 800))
    assert store.stats.commits - commits == 19  # one every 31 s: 30 s after the first write following a commit
    fired(store.durable())
    assert store.stats.rows_written - rows == 2400


# -- what a restart reads back is tested in tests/test_home_restart.py; here the rules of reading


def test_an_owners_setting_older_than_the_configs_edit_gives_way_to_the_config(tmp_path, logs):
    path = tmp_path / "h.sqlite"
    rig = StoredRig(path)
    fired(rig.home.set_desired("washer", False))
    fired(rig.home.set_desired("heater", True))  # as configured, then
    edited = CONFIG.replace("priority = 30\n", "priority = 30\ndesired = off\n")  # an installer's edit
    again = StoredRig(path, config_text=edited)
    assert again.home.loads["washer"].desired is False  # the owner's setting survives
    assert again.home.loads["heater"].desired is False  # the config's edit is newer


def test_parse_moment_takes_epoch_seconds_utc_text_and_todays_hh_mm():
    now = T0 + 3600 * 10 + 17  # 18:00:17 UTC
    assert parse_moment(None, now) == now
    assert parse_moment(T0 + 5, now) == T0 + 5
    assert parse_moment("18:05", now) == T0 + 3600 * 10 + 300
    assert parse_moment("08:00:30", now) == T0 + 30
    assert parse_moment("2027-01-15T08:00:05Z", now) == T0 + 5
    assert parse_moment("2027-01-15 08:00:05", now) == T0 + 5
    assert parse_moment(str(T0), now) == T0
    assert parse_moment("-60", now) == now - 60 and parse_moment("+90", now) == now + 90
    assert parse_moment("2027-01-15T09:00:05+01:00", now) == T0 + 5
    with pytest.raises(ValueError, match="HH:MM"):
        parse_moment("yesterday", now)
    with pytest.raises(ValueError, match="HH:MM"):
        parse_moment(True, now)
    with pytest.raises(ValueError):
        parse_moment("25:00", now)


def test_why_without_a_store_or_a_record_says_so(tmp_path):
    bare = Rig(CONFIG)
    assert "no record: this home keeps no store" in fired(bare.home.why("heater"))
    with pytest.raises(KeyError, match="no load 'boiler'"):
        bare.home.why("boiler")
    rig = StoredRig(tmp_path / "h.sqlite")
    rig.clock.advance(60)
    assert "heater at 2027-01-15 08:00:30 UTC: unknown since 2027-01-15 08:00:00 UTC: the home started and " \
           "board a had not said HELLO yet" in fired(rig.home.why("heater", "08:00:30"))
    assert "heater at 2027-01-15 07:00:00 UTC: no record" in fired(rig.home.why("heater", "07:00"))
