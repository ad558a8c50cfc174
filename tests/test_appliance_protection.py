"""Appliance protection first: a load past its ``max_off_s`` comes back on
whatever the budget, and only must-run loads ever take a home over it.

The freezer scenario runs through the real ``Home`` core on a
``task.Clock`` with ``FakeBoard`` boards and a ``FakeAggregator``
(tests/peers.py ``Rig``); the rule itself is checked as a property of the
pure functions the home decides with (``jeisson.home.targets``).
"""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jeisson.home.config import LoadConfig
from jeisson.home.loads import Load
from jeisson.home.targets import ons_that_fit, targets
from tests.peers import Rig, messages

pytestmark = pytest.mark.usefixtures("logs")

SLACK_W = 1e-6

# Board a: the fridge (critical), the freezer (must come back on after 60 s
# off, then holds 30 s), and two flexible loads worth more per watt than the
# freezer, so a budget sheds the freezer first.
CONFIG = """
[home]
id = home-1
secret = s3cret
aggregator = tcp:127.0.0.1:7700
actuators = tcp:7711:interface=127.0.0.1
heartbeat_s = 5
command_timeout_s = 3
measure_period_s = 5

[actuator:a]
relays = 4

[load:fridge]
actuator = a
relay = 1
rated_w = 150
priority = 90
critical = yes

[load:freezer]
actuator = a
relay = 2
rated_w = 800
priority = 1
min_on_s = 30
min_off_s = 20
max_off_s = 60

[load:x]
actuator = a
relay = 3
rated_w = 500
priority = 10

[load:y]
actuator = a
relay = 4
rated_w = 400
priority = 10
"""


def shed_freezer() -> Rig:
    """Everything on at 0 s; at 30 s a budget of 1050 W sheds the freezer."""
    rig = Rig(CONFIG)
    rig.board("a", "1111")
    rig.connect_aggregator()
    rig.run_until(30.0)
    rig.aggregator.budget(1050.0)
    rig.settle()
    assert rig.switches() == [(30.0, "freezer", False)]
    return rig


def test_a_freezer_past_its_maximum_off_time_comes_back_on_when_the_must_run_loads_exceed_the_budget(logs):
    rig = shed_freezer()
    # A tighter budget: the fridge alone fills it.
    rig.run_until(40.0)
    rig.aggregator.budget(150.0)
    rig.settle()
    assert rig.home.drawn_w() == 150.0
    rig.run_until(89.9)
    assert rig.home.loads["freezer"].on is False
    # At 90 s the freezer has been off its 60 s: it must run, though the
    # fridge and the freezer (950 W) exceed the 150 W budget.
    rig.run_until(90.0)
    assert (90.0, "freezer", True) in rig.switches()
    assert rig.boards["a"].states == [True, True, False, False]
    assert rig.home.drawn_w() == 950.0, "only must-run loads above the budget"
    # The home says so, and its new bid tells the aggregator the freezer must run.
    assert any("loads that must run exceed the budget of 150 W" in m for m in messages(logs, "warn"))
    assert rig.aggregator.offers()["freezer"].mode == "must"
    # The aggregator's next budget: the home commits what it draws, above the budget.
    round_number = rig.aggregator.budget(150.0)
    rig.settle()
    commit = rig.aggregator.commits()[-1]
    assert (commit.round, commit.committed_w, commit.on) == (round_number, 950.0, ("fridge", "freezer"))
    # Its minimum on time holds it until 120 s; then it is shed again.
    rig.run_until(119.9)
    assert rig.home.loads["freezer"].on is True
    rig.run_until(120.0)
    assert (120.0, "freezer", False) in rig.switches()
    assert rig.home.drawn_w() == 150.0


def test_the_flexible_loads_are_shed_to_make_room_for_the_freezer():
    rig = shed_freezer()
    # 1050 W: the fridge, x and y (1050 W); at 90 s the freezer must run, so
    # x and y go off first and the freezer (800 W) fits beside the fridge.
    rig.run_until(89.9)
    assert rig.home.drawn_w() == 1050.0
    rig.draws.clear()
    rig.run_until(90.0)
    assert {(load, on) for t, load, on in rig.switches() if t == 90.0} == {("x", False), ("y", False),
                                                                          ("freezer", True)}
    # Offs were acknowledged before the freezer went on: never above the budget.
    assert max(w for _, w in rig.draws) <= 1050.0
    assert rig.home.drawn_w() == 950.0


def test_a_freezer_with_no_minimum_on_time_goes_on_once_a_budget_covers_it():
    # Nothing would hold it on over the budget: it would be shed the moment
    # it went on.  It waits for a budget that covers it, which the aggregator
    # sends once the bid says it must run.
    rig = Rig(CONFIG.replace("min_on_s = 30\nmin_off_s = 20\nmax_off_s = 60",
                             "min_on_s = 0\nmin_off_s = 20\nmax_off_s = 60"))
    rig.board("a", "1111")
    rig.connect_aggregator()
    rig.run_until(30.0)
    rig.aggregator.budget(150.0)
    rig.settle()
    rig.run_until(90.0)
    assert rig.home.loads["freezer"].on is False
    assert rig.home.drawn_w() == 150.0, "never above the budget"
    assert rig.aggregator.offers()["freezer"].mode == "must"
    rig.aggregator.budget(950.0)
    rig.settle()
    assert rig.home.loads["freezer"].on is True and rig.home.drawn_w() == 950.0


# -- the rule as a property of the home's pure decisions


def _load(i, rated_w, priority, critical, desired, on, since, max_off_s):
    config = LoadConfig(id=f"l{i}", actuator="a", relay=i + 1, rated_w=rated_w, priority=priority,
                        critical=critical, min_on_s=10.0, min_off_s=10.0, desired=True, max_off_s=max_off_s)
    return Load(config, on=on, last_switch=100.0 - since, desired=desired)


loads_st = st.lists(
    st.tuples(
        st.sampled_from([0.0, 100.0, 150.0, 800.0, 2000.0]),  # rated W
        st.integers(min_value=1, max_value=100),  # priority
        st.booleans(),  # critical
        st.booleans(),  # desired
        st.sampled_from([True, False, None]),  # on, off, unknown
        st.sampled_from([0.0, 5.0, 15.0, 70.0]),  # seconds since its last switch
        st.sampled_from([None, 30.0, 60.0]),  # max_off_s
    ),
    max_size=6,
).map(lambda rows: [_load(i, *row) for i, row in enumerate(rows)])


@settings(max_examples=300, deadline=None)
@given(loads_st, st.floats(min_value=0, max_value=6000))
def test_every_must_run_load_runs_and_only_must_run_loads_go_over_the_budget(loads, budget_w):
    """One pass of the home's reconcile: targets, offs, then the ons that fit."""
    now = 100.0
    must = [load for load in loads if load.mode(now) == "must"]
    chosen = targets(loads, budget_w, now)
    assert chosen.must_w == pytest.approx(sum(load.config.rated_w for load in must))
    assert chosen.feasible == (chosen.must_w <= budget_w + SLACK_W)
    for load in loads:
        if load.known and load.on and not chosen.on[load.id] and load.can_switch(False, now):
            load.on, load.last_switch = False, now
    room = budget_w - sum(load.cautious_w() for load in loads)
    for load in ons_that_fit(loads, chosen.on, room, now):
        load.on, load.last_switch = True, now
    # Every must-run load that stays must-run once on runs, whatever the budget.
    assert all(load.on is not False for load in must if load.held_once_on())
    # Over the budget only by loads that must run now.
    drawn = sum(load.cautious_w() for load in loads)
    must_now = sum(load.config.rated_w for load in loads if load.mode(now) == "must")
    assert drawn <= max(budget_w, must_now) + SLACK_W
