"""A home that stops (as with kill -9) and starts again on the same store.

Each test runs a real ``Home`` on a ``task.Clock`` with fake boards and a fake
aggregator (tests/peers.py), keeping a real ``SqliteStore`` file under
``tmp_path`` (tests/test_home_memory.py's ``StoredRig``).  Killing it is
dropping it: nothing of the old home runs again (its clock is never advanced
again, its store never closed, so what was not yet committed is lost, as in
a real kill -9).  The new home is another ``StoredRig`` on the same file, its
clock starting where the old one stopped; its boards say HELLO again with
their relays as they are; the aggregator is unreachable unless a test says
otherwise.  ``Rig.draws`` is what the closed relays draw after every switch.
"""

import pytest

from jeisson.home.core import RETRY_BUSY_S
from tests.peers import HeldJobs, messages
from tests.test_home_memory import BUDGET_W, T0, StoredRig, fired, settled

pytestmark = pytest.mark.usefixtures("logs")

EVENT_END = T0 + 300


@pytest.fixture
def path(tmp_path):
    return tmp_path / "home-9.sqlite"


def under_budget(path) -> StoredRig:
    """Settled at T0, then a budget of BUDGET_W until EVENT_END from T0 + 10:
    the heater, the ev and the freezer shed; the fridge and the washer on."""
    rig = settled(path)
    rig.run_until(T0 + 10)
    rig.aggregator.budget(BUDGET_W, end=EVENT_END)
    rig.settle()
    assert sorted(load for _, load, on in rig.switches() if not on) == ["ev", "freezer", "heater"]
    assert rig.drawn_w() == 950.0
    return rig


def restarted(path, at, a="010", b="01", settle=True) -> StoredRig:
    """A new home on the same store at ``at``; its boards say HELLO with
    relays ``a`` and ``b`` (by default, as the home under budget left them)."""
    rig = StoredRig(path, at=at)
    rig.board("a", a)
    rig.board("b", b)
    if settle:
        rig.settle()
    return rig


def draws_between(rig, start, end) -> list[float]:
    return [w for t, w in rig.draws if start <= t < end]


# -- the budget


def test_a_home_restarted_without_its_aggregator_obeys_its_budget_until_the_event_ends(path, logs):
    old = under_budget(path)
    old.run_until(T0 + 60)  # killed: nothing of it runs again
    new = StoredRig(path, at=T0 + 60)
    # Its state is read before any board or the aggregator speaks.
    assert new.home.budget is not None and (new.home.budget.budget_w, new.home.budget.end) == (BUDGET_W, EVENT_END)
    assert "resumed the budget of round 1 event ev-1: 1200 W until 2027-01-15T08:05:00.000Z, obeyed with or without " \
           "the aggregator" in messages(logs, "info")
    new.board("a", "010")
    new.board("b", "01")
    new.settle()
    new.run_until(EVENT_END - 0.001)
    # Nothing restored mid-event: the heater and the ev stay shed.  The
    # freezer, shed at T0 + 10 before the restart, is off its max_off_s at
    # T0 + 130 (its clock survived): it comes back for its min_on_s, the
    # washer making room, then they swap back.
    assert [(t - T0, load, on) for t, load, on in new.switches()] == [
        (130, "washer", False), (130, "freezer", True), (190, "freezer", False), (190, "washer", True)]
    assert max(w for _, w in new.draws) <= BUDGET_W
    before = len(new.trace)
    new.run_until(EVENT_END + 0.001)
    restored = new.switches(before)
    assert sorted((load, on) for _, load, on in restored) == [("ev", True), ("freezer", True), ("heater", True)]
    assert {t for t, _, _ in restored} == {EVENT_END}
    assert new.home.budget is None
    fired(new.store.durable())
    assert new.state("budget") == {}
    assert new.journal("release")[-1][2:] == ("ev-1", None, {"why": "event over"})


def test_a_home_restarted_after_its_event_ended_restores_at_once(path):
    under_budget(path)
    new = restarted(path, EVENT_END + 5)
    assert new.home.budget is None
    assert sorted(load for _, load, on in new.switches() if on) == ["ev", "freezer", "heater"]
    fired(new.store.durable())
    assert new.state("budget") == {}
    [release] = new.journal("release")
    assert release[:3] == (EVENT_END, "release", "ev-1") and release[4]["stopped"] is True


def test_a_budget_the_aggregator_sends_after_the_restart_takes_over(path):
    under_budget(path)
    new = restarted(path, T0 + 80)  # the heater, off since T0 + 10, may go on again (min_off_s 60)
    new.connect_aggregator()
    new.settle()
    new.aggregator.round = 7
    new.aggregator.budget(BUDGET_W + 2000, end=EVENT_END)
    new.settle()
    assert [(load, on) for _, load, on in new.switches()] == [("heater", True)]
    assert new.aggregator.commits()[-1].round == 8
    assert new.state("budget")["active"]["round"] == 8


# -- the owner's settings


def test_the_owners_settings_survive_a_restart(path):
    rig = settled(path)
    fired(rig.home.set_desired("washer", False))
    fired(rig.home.opt_out("ev-9"))
    rig.settle()
    new = restarted(path, T0 + 30, a="111", b="00")
    assert new.home.loads["washer"].desired is False
    assert new.home.opt_out_events == {"ev-9"} and not new.home.opt_out_all
    new.run_until(T0 + 100)
    assert [load for _, load, on in new.switches() if on] == ["ev"]  # the washer stays off, as its owner set it
    new.connect_aggregator()
    new.settle()
    new.aggregator.budget(100.0, end=EVENT_END, event="ev-9")
    new.settle()
    assert [load for _, load, on in new.switches() if not on] == []  # opted out of ev-9: loads run as set


# -- minimum times


def test_a_load_switched_on_just_before_the_restart_stays_on_its_minimum_time(path):
    rig = settled(path)
    rig.run_until(T0 + 40)
    rig.home.set_desired("ev", False)
    rig.settle()
    rig.run_until(T0 + 100)
    rig.home.set_desired("ev", True)  # on at T0 + 100 by the home: min_on_s 60 holds it until T0 + 160
    rig.settle()
    assert rig.switches()[-1] == (T0 + 100, "ev", True)
    fired(rig.store.durable())
    rig.run_until(T0 + 105)
    new = restarted(path, T0 + 105, a="111", b="11")
    fired(new.home.set_desired("ev", False))
    new.run_until(T0 + 159.999)
    assert new.switches() == []
    new.run_until(T0 + 160.001)
    assert new.switches() == [(T0 + 160, "ev", False)]


def test_a_switch_on_is_durable_before_its_set_so_a_kill_right_after_keeps_its_minimum_time(path):
    rig = settled(path)
    rig.run_until(T0 + 40)
    fired(rig.home.set_desired("ev", False))
    rig.settle()
    rig.run_until(T0 + 100)
    fired(rig.home.set_desired("ev", True))  # on at T0 + 100; nothing asks the store for durability after it
    commits = rig.store.stats.commits
    assert rig.boards["b"].pending() == [("ev", True)]  # the SET went out only once the intent was committed
    assert rig.state("load")["ev"] == {"on": True, "last_switch": T0 + 100, "actuator": "b", "relay": 1}
    rig.settle()
    assert rig.switches()[-1] == (T0 + 100, "ev", True)
    rig.run_until(T0 + 105)  # killed: the ACK's own record waits for the batch (T0 + 130), never written
    assert rig.store.stats.commits == commits
    new = restarted(path, T0 + 105, a="111", b="11")
    assert new.switches() == []  # as the home left it: its own switch, not one it did not command
    assert fired(new.home.why("ev", T0 + 106)).splitlines()[0] == (
        "ev at 2027-01-15 08:01:46 UTC: on, as the home had left it, switched on at 2027-01-15 08:01:40 UTC, when "
        "board b said HELLO again at 2027-01-15 08:01:45 UTC: the home had commanded it on but recorded no "
        "acknowledgement (the ACK was lost, or the home stopped first)")
    fired(new.home.set_desired("ev", False))
    new.run_until(T0 + 159.999)
    assert new.switches() == []
    new.run_until(T0 + 160.001)
    assert new.switches() == [(T0 + 160, "ev", False)]


def test_a_load_switched_off_just_before_the_restart_stays_off_its_minimum_time(path):
    rig = settled(path)
    rig.run_until(T0 + 100)
    fired(rig.home.set_desired("ev", False))  # off at T0 + 100 by the home: min_off_s 60 until T0 + 160
    rig.settle()
    fired(rig.store.durable())
    rig.run_until(T0 + 105)
    new = restarted(path, T0 + 105, a="111", b="01")
    fired(new.home.set_desired("ev", True))
    new.run_until(T0 + 159.999)
    assert new.switches() == []
    new.run_until(T0 + 160.001)
    assert new.switches() == [(T0 + 160, "ev", True)]  # from the switch before the restart, not from the HELLO


# -- states the home did not command


def test_a_board_that_powered_up_into_its_initial_states_is_switched_off_at_once_under_the_budget(path, logs):
    under_budget(path)
    # Home and board b both lost power: the board came back with its
    # initial states (every relay closed), the ev that the budget excludes too.
    new = restarted(path, T0 + 30, b="11", settle=False)
    assert new.switches() == [(T0 + 30, "ev", False)]  # at once: its min_on_s does not hold, not our switch
    new.settle()
    assert new.drawn_w() <= BUDGET_W
    assert "load ev found on, which the home did not command (last commanded off): it may be switched off at " \
           "once" in messages(logs, "warn")
    fired(new.store.durable())
    found = [(e[2], e[4]["cause"]) for e in new.journal("switch", T0 + 30) if not e[4]["commanded"]]
    assert ("ev", "uncommanded") in found


def test_a_busy_board_refusing_that_switch_off_is_asked_again(path):
    under_budget(path)
    new = restarted(path, T0 + 30, b="11", settle=False)
    new.boards["b"].nak("ev", "busy")  # its own min_interval_s: power-up counts as a switch
    new.settle()
    assert new.boards["b"].states == [True, True]
    new.run_until(T0 + 30 + RETRY_BUSY_S)
    assert new.switches()[-1] == (T0 + 30 + RETRY_BUSY_S, "ev", False)
    assert new.boards["b"].states == [False, True]


# -- durable before acknowledged


def test_the_commit_waits_until_the_budget_and_its_switches_are_durable(path):
    held = HeldJobs()
    rig = StoredRig(path, executor=held)
    rig.board("a", "111")
    rig.board("b", "11")
    rig.connect_aggregator()
    rig.settle()
    held.run_all()
    seen_at_commit = []
    aggregator_heard = rig.aggregator.wire.heard

    def heard(line):
        if line.startswith(b"COMMIT"):
            seen_at_commit.append((rig.state("budget"), {e[2] for e in rig.journal("switch", T0 + 10)}))
        aggregator_heard(line)

    rig.aggregator.wire.heard = heard
    rig.clock.advance(10)
    rig.aggregator.budget(BUDGET_W, end=EVENT_END)
    rig.settle()
    assert len(rig.switches()) == 3 and rig.aggregator.commits() == []  # switched, not yet durable
    held.run_all()
    [commit] = rig.aggregator.commits()
    assert commit.round == 1
    [(budget, switched)] = seen_at_commit
    assert budget["active"]["budget_w"] == BUDGET_W and switched == {"heater", "ev", "freezer"}


def test_no_commit_while_the_store_cannot_commit(path, logs):
    import sqlite3

    class Failing(HeldJobs):
        def run_all(self):
            self.fail_all(sqlite3.OperationalError("disk I/O error"))

    failing = Failing()
    rig = StoredRig(path, executor=failing)
    rig.board("a", "111")
    rig.board("b", "11")
    rig.connect_aggregator()
    rig.settle()
    rig.clock.advance(10)
    rig.aggregator.budget(BUDGET_W, end=EVENT_END)
    rig.settle()
    failing.run_all()
    assert rig.aggregator.commits() == []
    assert any("not answering the aggregator: what the commitment rests on could not be stored" in m
               for m in messages(logs, "error"))
    assert [e["log_failure"].check(sqlite3.OperationalError) for e in logs if "log_failure" in e] \
        == [sqlite3.OperationalError]
    logs[:] = [e for e in logs if "log_failure" not in e]  # the store's own report: expected here


# -- a switch-on is durable before its SET


def ev_off_at_40(path, executor=None) -> StoredRig:
    """Settled at T0 (everything on), the ev switched off by its owner at
    T0 + 40 and committed, the clock at T0 + 100 (its min_off_s over)."""
    if executor is None:
        rig = settled(path)
    else:
        rig = StoredRig(path, executor=executor)
        rig.board("a", "111")
        rig.board("b", "11")
        rig.connect_aggregator()
        rig.settle()
    rig.run_until(T0 + 40)
    rig.home.set_desired("ev", False)
    rig.settle()
    if executor is not None:
        executor.run_all()
    fired(rig.store.durable())
    rig.run_until(T0 + 100)
    assert rig.state("load")["ev"] == EV_OFF_AT_40
    return rig


EV_OFF_AT_40 = {"on": False, "last_switch": T0 + 40, "actuator": "b", "relay": 1}


def test_a_switch_on_the_board_refuses_leaves_the_home_and_its_store_as_they_were(path):
    rig = ev_off_at_40(path)
    fired(rig.home.set_desired("ev", True))
    assert rig.state("load")["ev"]["on"] is True  # stored before the SET
    assert rig.home.commanded["ev"] is True
    rig.boards["b"].nak("ev", "relay")
    assert rig.home.commanded["ev"] is False and rig.home.intents == {}
    assert (rig.home.loads["ev"].on, rig.home.loads["ev"].last_switch) == (False, T0 + 40)
    fired(rig.store.durable())
    assert rig.state("load")["ev"] == EV_OFF_AT_40  # the correction
    [failed] = rig.journal("switch failed")
    assert (failed[2], failed[4]["on"], failed[4]["code"]) == ("ev", True, "relay")


def test_a_home_killed_after_a_refused_switch_on_before_its_correction_holds_the_load_off(path, logs):
    rig = ev_off_at_40(path)
    fired(rig.home.set_desired("ev", True))
    rig.boards["b"].nak("ev", "relay")
    rig.run_until(T0 + 105)  # killed: the correction waits for the batch (T0 + 130)
    # The store still says commanded on at T0 + 100: the board's HELLO shows
    # it off, so it counts as just switched off, the cautious direction (its
    # min_off_s from the HELLO), never as on.
    new = restarted(path, T0 + 105, a="111", b="01")
    assert new.home.commanded["ev"] is False and new.home.loads["ev"].last_switch == T0 + 105
    assert "load ev found off though the home had it on (a failsafe or a power blip): counted as just switched " \
           "off" in messages(logs, "warn")
    new.run_until(T0 + 164.999)
    assert new.switches() == []
    new.run_until(T0 + 165.001)
    assert new.switches() == [(T0 + 165, "ev", True)]


@pytest.mark.parametrize("lost", ["timeout", "hello again"])
def test_a_switch_on_whose_ack_is_lost_is_still_the_homes_own_switch(path, lost, logs):
    rig = ev_off_at_40(path)
    logged = len(logs)
    fired(rig.home.set_desired("ev", True))
    board = rig.boards["b"]
    board.silent = True
    board.states[0] = True  # the relay closed; its ACK never arrives
    if lost == "timeout":
        rig.run_until(T0 + 103.001)  # command_timeout_s: the board is dropped, its loads unknown
        assert rig.home.loads["ev"].on is None and rig.home.commanded["ev"] is True
        assert "b" not in rig.home.boards
        rig.board("b", "11")  # back, the ev on
    else:
        board.start()  # it restarted after switching: HELLO again on the same link, the SET fails
        board.silent = False
    rig.settle()
    assert (rig.home.loads["ev"].on, rig.home.loads["ev"].last_switch) == (True, T0 + 100)
    assert not [m for m in messages(logs[logged:], "warn") if m.startswith("load ev found")]
    assert rig.state("load")["ev"]["on"] is True
    before = len(rig.trace)
    fired(rig.home.set_desired("ev", False))  # min_on_s 60 from T0 + 100
    rig.run_until(T0 + 159.999)
    assert rig.switches(before) == []
    rig.run_until(T0 + 160.001)
    assert rig.switches(before) == [(T0 + 160, "ev", False)]


def test_switch_ons_waiting_for_a_slow_store_give_way_to_a_budget_whose_offs_go_at_once(path):
    held = HeldJobs()
    rig = ev_off_at_40(path, executor=held)
    before = len(rig.trace)
    rig.home.set_desired("ev", True)
    rig.settle()
    assert rig.switches(before) == [] and rig.home.commanded["ev"] is True  # its commit is in flight
    rig.aggregator.budget(BUDGET_W, end=EVENT_END)
    assert sorted(rig.boards["a"].pending()) == [("freezer", False), ("heater", False)]  # not waiting on the store
    assert rig.home.commanded["ev"] is False and rig.home.intents == {}  # the ev gave way
    rig.settle()
    assert rig.aggregator.commits() == []
    held.run_all()
    rig.settle()
    assert [load for _, load, on in rig.switches(before)] == ["heater", "freezer"]  # the ev does not fit
    assert rig.aggregator.commits()[-1].round == 1
    assert rig.state("load")["ev"] == EV_OFF_AT_40
    assert rig.drawn_w() <= BUDGET_W


def test_a_store_that_cannot_keep_a_switch_on_holds_it_back_unless_the_load_must_run(path, logs):
    rig = ev_off_at_40(path)
    fired(rig.home.set_desired("heater", False))
    fired(rig.home.set_desired("fridge", False))
    rig.settle()
    fired(rig.store.close())
    rig.run_until(T0 + 160)  # the heater's min_off_s is over
    before = len(rig.trace)
    rig.home.set_desired("fridge", True).addErrback(lambda _: None)  # critical: it must run
    rig.home.set_desired("heater", True).addErrback(lambda _: None)
    rig.settle()
    assert rig.switches(before) == [(T0 + 160, "fridge", True)]
    assert rig.home.commanded["heater"] is False and rig.home.intents == {}
    errors = messages(logs, "error")
    assert any(m.startswith("could not store the switch-on of fridge (store ") and m.endswith(
        "switching them on anyway: they must run (critical, or off their max_off_s), though a restart before the "
        "store recovers may not hold their min_on_s") for m in errors)
    refused = "; not switching them on, trying again in 10 s"
    assert [m.startswith("could not store the switch-on of heater") for m in errors if m.endswith(refused)] == [True]
    rig.run_until(T0 + 170.001)  # tried again: still not stored
    assert rig.switches(before) == [(T0 + 160, "fridge", True)]
    assert len([m for m in messages(logs, "error") if m.endswith(refused)]) == 2
    logs[:] = [e for e in logs if "log_failure" not in e]  # the listeners' writes to the closed store: expected


# -- the audit trail


@pytest.fixture
def story(path):
    """08:00:00 first start; 08:00:10 the owner sets the heater off; 08:00:20
    a budget of 1200 W sheds the ev and the freezer; 08:02:20 the freezer,
    off its max_off_s (120 s), comes back on whatever the budget (the washer
    goes); 08:03:00 the home is killed and started again; 08:03:05 its
    boards say HELLO, the relays as it left them."""
    rig = settled(path)
    rig.run_until(T0 + 10)
    fired(rig.home.set_desired("heater", False))
    rig.settle()
    rig.run_until(T0 + 20)
    rig.aggregator.budget(BUDGET_W, end=T0 + 600)
    rig.settle()
    rig.run_until(T0 + 140.001)
    assert (T0 + 140, "freezer", True) in rig.switches()
    rig.run_until(T0 + 180)
    new = StoredRig(path, at=T0 + 180)
    new.run_until(T0 + 185)
    new.board("a", "011")
    new.board("b", "00")
    new.settle()
    return new


def test_why_a_load_was_shed_by_a_budget(story):
    answer = fired(story.home.why("ev", "08:01"))
    assert answer.splitlines() == [
        "ev at 2027-01-15 08:01:00 UTC: off since 2027-01-15 08:00:20 UTC",
        "  last switch: switched off at 2027-01-15 08:00:20 UTC by the budget of round 1 of event ev-1 at 1200 W "
        "(until 2027-01-15 08:10:00 UTC); the home chose again because a budget came from the aggregator",
        "  budget in force then: round 1 of event ev-1: 1200 W until 2027-01-15 08:10:00 UTC, applied at "
        "2027-01-15 08:00:20 UTC",
        "  owner's settings then: ev wanted on; opted out of no event",
    ]


def test_why_a_load_was_off_by_its_owners_setting(story):
    answer = fired(story.home.why("heater", T0 + 15))
    assert answer.splitlines()[:2] == [
        "heater at 2027-01-15 08:00:15 UTC: off since 2027-01-15 08:00:10 UTC",
        "  last switch: switched off at 2027-01-15 08:00:10 UTC by the owner's setting (heater wanted off); the "
        "home chose again because the owner changed a setting",
    ]
    assert answer.splitlines()[-2:] == ["  budget in force then: none on record",
                                        "  owner's settings then: heater wanted off; opted out of no event"]


def test_why_a_load_came_back_on_by_the_max_off_rule_and_was_shed_before(story):
    back = fired(story.home.why("freezer", "2027-01-15T08:02:30Z")).splitlines()
    assert back[0] == "freezer at 2027-01-15 08:02:30 UTC: on since 2027-01-15 08:02:20 UTC"
    assert back[1] == ("  last switch: switched on at 2027-01-15 08:02:20 UTC by the max_off_s safety rule: off "
                       "since 2027-01-15 08:00:20 UTC, longer than its max_off_s of 120 s, it comes back on whatever "
                       "the budget; the home chose again because a minimum on or off time ran out")
    before = fired(story.home.why("freezer", "08:01:00")).splitlines()
    assert before[0] == "freezer at 2027-01-15 08:01:00 UTC: off since 2027-01-15 08:00:20 UTC"
    assert "by the budget of round 1 of event ev-1 at 1200 W" in before[1]


def test_why_after_the_restart_tells_the_unknown_then_the_known(story):
    # Between the restart and the boards' HELLO nothing is known of the relays.
    assert fired(story.home.why("washer", T0 + 182)).splitlines()[:2] == [
        "washer at 2027-01-15 08:03:02 UTC: unknown since 2027-01-15 08:03:00 UTC: the home started and board b "
        "had not said HELLO yet (counted at its rated 800 W)",
        "  last switch: switched off at 2027-01-15 08:02:20 UTC by the budget of round 1 of event ev-1 at 1200 W "
        "(until 2027-01-15 08:10:00 UTC); the home chose again because a minimum on or off time ran out",
    ]
    assert fired(story.home.why("washer", T0 + 190)).splitlines()[0] == (
        "washer at 2027-01-15 08:03:10 UTC: off, as the home had left it, when board b said HELLO again at "
        "2027-01-15 08:03:05 UTC")
    # The fridge was on from the first start, never switched by the home.
    assert fired(story.home.why("fridge", T0 + 190)).splitlines()[:2] == [
        "fridge at 2027-01-15 08:03:10 UTC: on since 2027-01-15 08:03:05 UTC",
        "  last switch: found on at 2027-01-15 08:03:05 UTC, not commanded by the home: board a reported it on "
        "when it said HELLO (no command on record; it powered up so, or was switched by hand), so its min_on_s "
        "did not hold",
    ]
