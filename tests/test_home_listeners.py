"""The home's listener seam (jeisson.home.listeners): what a listener hears,
in order, while the home's boards and aggregator play their parts on a
task.Clock (the ``Rig`` of tests/peers.py)."""

import pytest
from twisted.logger import capturedLogs

from jeisson.home import listeners
from jeisson.home.listeners import HomeListener
from jeisson.wire import aggregator_home
from tests.peers import EVENT_END, Rig
from tests.test_home_core import CONFIG, settled_rig


class Recorder(HomeListener):
    """Every moment it hears, with the fields a test compares."""

    def __init__(self):
        self.moments: list[tuple] = []
        self.changes = 0

    def changed(self):
        self.changes += 1

    def aggregator_linked(self, peer, version):
        self.moments.append(("linked", peer, version))

    def aggregator_unlinked(self, peer):
        self.moments.append(("unlinked", peer))

    def aggregator_refused(self, reason):
        self.moments.append(("refused", reason))

    def budget_applied(self, event, budget_w, end, round_number):
        self.moments.append(("budget", event, budget_w, end, round_number))

    def budget_released(self, event, why):
        self.moments.append(("released", event, why))

    def load_switched(self, load, on, why):
        self.moments.append(("switched", load, on, why))

    def switch_failed(self, load, on, why, error, code):
        self.moments.append(("failed", load, on, why, code))

    def load_found(self, load, on, commanded):
        self.moments.append(("found", load, on, commanded))

    def owner_set(self, load, on):
        self.moments.append(("owner_set", load, on))

    def owner_opted_out(self, event):
        self.moments.append(("opted_out", event))

    def owner_opted_in(self, event):
        self.moments.append(("opted_in", event))

    def board_joined(self, actuator, peer, states):
        self.moments.append(("joined", actuator, states))

    def board_left(self, actuator, loads):
        self.moments.append(("left", actuator, loads))

    def measurement(self, actuator, watts):
        self.moments.append(("measured", actuator, watts))

    def take(self) -> list[tuple]:
        moments, self.moments = self.moments, []
        return moments


@pytest.fixture
def rig():
    return settled_rig()


@pytest.fixture
def heard(rig):
    recorder = Recorder()
    rig.home.add_listener(recorder)
    return recorder


BUDGET = (listeners.BUDGET,)


def test_a_budget_then_its_offs_then_its_ons_in_order(rig, heard, logs):
    rig.aggregator.budget(1050.0)
    assert heard.take() == [("budget", "ev-1", 1050.0, EVENT_END, 1)], "nothing switched before the ACK"
    rig.settle()
    assert heard.take() == [("switched", "z", False, BUDGET)]
    rig.aggregator.budget(950.0)  # x and y off, acknowledged, then z on
    rig.settle()
    assert heard.take() == [("budget", "ev-1", 950.0, EVENT_END, 2), ("switched", "x", False, BUDGET),
                            ("switched", "y", False, BUDGET), ("switched", "z", True, BUDGET)]
    assert heard.changes == 6


def test_a_release_and_the_end_of_an_event_say_why(rig, heard, logs):
    rig.aggregator.budget(1050.0)
    rig.settle()
    rig.aggregator.release()
    rig.settle()
    assert heard.take()[2:] == [("released", "ev-1", listeners.RELEASE),
                                ("switched", "z", True, (listeners.RELEASE,))]
    rig.aggregator.budget(1050.0)
    rig.settle()
    heard.take()
    rig.run_until(EVENT_END)
    assert heard.take() == [("released", "ev-1", listeners.EVENT_OVER),
                            ("switched", "z", True, (listeners.EVENT_OVER,))]


def test_boards_joining_measuring_and_leaving(rig, heard, logs):
    rig.boards["a"].say(b"MEAS 480 390 140")
    rig.boards["b"].lose()
    assert heard.take() == [("measured", "a", (480, 390, 140)), ("left", "b", ("z", "heater"))]
    rig.board("b", "00")
    rig.settle()
    # z was on but never commanded (nothing on record): found off, it counts
    # as just switched off.  The heater is off as the home took it at the
    # first HELLO.
    assert heard.take() == [("joined", "b", (False, False)), ("found", "z", False, None),
                            ("switched", "z", True, (listeners.BOARD_JOINED,))]


def test_states_the_home_did_not_command_are_found_not_switched(rig, heard, logs):
    rig.aggregator.budget(1050.0)
    rig.settle()  # z shed: commanded off
    rig.home.set_desired("x", False)
    rig.home.set_desired("x", True)
    rig.settle()  # x commanded on
    heard.take()
    rig.boards["a"].lose()
    rig.boards["b"].lose()
    rig.board("a", "011")  # x opened by a failsafe; y as commanded, the fridge on as ever (never commanded)
    rig.board("b", "10")  # z closed behind the home's back: the budget has no room for it
    rig.settle()
    moments = heard.take()
    assert [m for m in moments if m[0] == "found"] == [("found", "x", False, True), ("found", "fridge", True, None),
                                                       ("found", "z", True, False)]
    assert ("switched", "z", False, (listeners.BOARD_JOINED,)) in moments


def test_a_load_back_on_by_its_max_off_time_says_so(logs):
    from tests.test_home_memory import BUDGET_W
    from tests.test_home_memory import CONFIG as WITH_FREEZER

    rig = Rig(WITH_FREEZER)
    rig.board("a", "111")
    rig.board("b", "11")
    rig.connect_aggregator()
    rig.settle()
    heard = Recorder()
    rig.home.add_listener(heard)
    rig.aggregator.budget(BUDGET_W, end=1000.0)
    rig.settle()
    assert ("switched", "freezer", False, BUDGET) in heard.take()
    rig.run_until(120.001)  # the freezer's max_off_s
    assert heard.take() == [("switched", "washer", False, (listeners.MINIMUM_TIME,)),
                            ("switched", "freezer", True, (listeners.MINIMUM_TIME, listeners.MAX_OFF))]


def test_the_owner_and_why_loads_follow(rig, heard, logs):
    rig.home.set_desired("x", False)
    rig.settle()
    rig.home.opt_out("ev-1")
    rig.home.opt_in()
    assert heard.take() == [("owner_set", "x", False), ("switched", "x", False, (listeners.OWNER,)),
                            ("opted_out", "ev-1"), ("opted_in", None)]


def test_a_switch_refused_as_busy_fails_then_is_retried(rig, heard, logs):
    rig.aggregator.budget(1050.0)
    rig.boards["b"].nak("z", "busy")
    assert heard.take()[1:] == [("failed", "z", False, BUDGET, "busy")]
    rig.clock.advance(2.0)
    rig.settle()
    assert heard.take() == [("switched", "z", False, (listeners.RETRY,))]


def test_the_aggregator_link_coming_and_going(logs):
    rig = Rig(CONFIG)
    heard = Recorder()
    rig.home.add_listener(heard)
    rig.connect_aggregator().lose()
    assert heard.take() == [("linked", "198.51.100.7:7700", 1), ("unlinked", "198.51.100.7:7700")]
    # A refusal: no link was up.
    rig.connect_aggregator(welcome=False).say(aggregator_home.Refused(aggregator_home.BAD_CREDENTIAL, "wrong secret"))
    assert heard.take() == [("refused", "bad-credential: wrong secret")]


def test_a_listener_that_raises_is_logged_and_the_others_and_the_home_go_on():
    rig = Rig(CONFIG)

    class Broken(HomeListener):
        def board_joined(self, actuator, peer, states):
            raise RuntimeError("a listener's bug")

    heard = Recorder()
    rig.home.add_listener(Broken())
    rig.home.add_listener(heard)
    with capturedLogs() as events:
        rig.board("a", "000")
        rig.settle()
    failures = [e for e in events if "log_failure" in e]
    assert len(failures) == 1 and failures[0]["log_failure"].check(RuntimeError)
    assert heard.take()[0] == ("joined", "a", (False, False, False))
    assert rig.home.loads["x"].on is True, "the home went on switching"
