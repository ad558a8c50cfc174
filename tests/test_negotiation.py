"""jeisson.aggregator.negotiation: a round's budgets, as pure functions."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jeisson.aggregator.negotiation import Grid, Offers, grant_increases, plan
from jeisson.wire.aggregator_home import Flex, LoadOffer

SLACK_W = 1e-6


def offer(load_id, rated_w, priority=1, mode="may", on=False, critical=False, wanted=False):
    return LoadOffer(load_id, float(rated_w), priority, mode, on, critical, wanted)


def flex(*offers, bid=1):
    return Flex(bid, tuple(offers))


load_st = st.tuples(
    st.one_of(st.just(0.0), st.floats(min_value=1e-3, max_value=5000)),  # rated W
    st.integers(min_value=1, max_value=100),  # priority
    st.sampled_from(["must", "may", "off"]),
    st.booleans(),  # on
    st.booleans(),  # wanted
)
offers_st = st.lists(load_st, max_size=6).map(
    lambda loads: flex(*(offer(f"l{i}", r, p, m, on=on, wanted=w) for i, (r, p, m, on, w) in enumerate(loads)))
)
flexes_st = st.dictionaries(st.sampled_from([f"home-{i}" for i in range(6)]), offers_st, max_size=6)
rooms_st = st.floats(min_value=-5000, max_value=40000, allow_nan=False)


def must_w(f):
    return sum(o.rated_w for o in f.loads if o.mode == "must")


def servable_w(f):
    return sum(o.rated_w for o in f.loads if o.mode != "off")


# ---------------------------------------------------------------------- plan


@settings(max_examples=100, deadline=None)
@given(flexes_st, rooms_st)
def test_plan_budgets_fit_the_room_and_each_home_bounds(flexes, room):
    result = plan(flexes, room)
    assert set(result.budgets) == set(flexes)
    total_must = sum(must_w(f) for f in flexes.values())
    # A negative room (homes away already over the limit) is infeasible, whatever the loads.
    assert result.feasible == (total_must <= room + SLACK_W)
    for home, f in flexes.items():
        # Every home keeps its must loads and never gets an off load.
        assert must_w(f) - SLACK_W <= result.budgets[home] <= servable_w(f) + SLACK_W
    if result.feasible:
        assert sum(result.budgets.values()) <= max(room, 0) + SLACK_W
    else:
        assert result.budgets == {h: must_w(f) for h, f in flexes.items()}


@settings(max_examples=100, deadline=None)
@given(st.dictionaries(st.sampled_from(["a", "b", "c"]),
                       st.lists(st.floats(min_value=0, max_value=5000), min_size=1, max_size=4), min_size=1),
       st.floats(min_value=0, max_value=40000))
def test_plan_homes_with_only_must_loads_get_them(musts, room):
    flexes = {h: flex(*(offer(f"m{i}", w, mode="must", on=True) for i, w in enumerate(ws)))
              for h, ws in musts.items()}
    result = plan(flexes, room)
    assert result.budgets == {h: sum(ws) for h, ws in musts.items()}
    assert result.feasible == (sum(sum(ws) for ws in musts.values()) <= room + SLACK_W)


def test_plan_serves_higher_priority_first_across_homes():
    flexes = {
        "a": flex(offer("heater", 3000, priority=2), offer("fridge", 200, mode="must")),
        "b": flex(offer("ev", 4000, priority=1), offer("pump", 1000, priority=9)),
    }
    result = plan(flexes, 5000)
    assert result.feasible
    # fridge (must), pump (9), heater (2); the ev's 4000 W do not fit the 800 W left.
    assert result.budgets == {"a": 3200.0, "b": 1000.0}


def test_plan_without_loads_gives_zero_budgets():
    assert plan({"a": flex(), "b": flex()}, 1000).budgets == {"a": 0.0, "b": 0.0}


@pytest.mark.parametrize("musts", [(100,), ()])
def test_plan_with_a_negative_room_serves_only_must_loads_and_is_infeasible(musts):
    offers = [offer(f"m{i}", w, mode="must") for i, w in enumerate(musts)]
    result = plan({"a": flex(*offers, offer("x", 500)), "b": flex()}, -200)
    assert not result.feasible
    assert result.budgets == {"a": float(sum(musts)), "b": 0.0}
    assert not plan({"a": flex()}, -200).feasible


# ----------------------------------------------------------- grant_increases


wanted_levels_st = st.lists(
    st.tuples(st.floats(min_value=0, max_value=10000), st.floats(min_value=0, max_value=10000)), max_size=6
).map(lambda pairs: ({f"h{i}": t for i, (t, _) in enumerate(pairs)}, {f"h{i}": lv for i, (_, lv) in enumerate(pairs)}))


@settings(max_examples=200, deadline=None)
@given(wanted_levels_st, st.floats(min_value=-20000, max_value=20000))
def test_grant_increases_within_levels_plus_headroom(wanted_levels, headroom):
    wanted, levels = wanted_levels
    granted = grant_increases(wanted, levels, headroom)
    assert set(granted) == set(wanted)
    assert sum(granted.values()) <= sum(levels[h] for h in wanted) + max(headroom, 0) + SLACK_W
    for home, target in wanted.items():
        assert granted[home] >= levels[home]
        assert granted[home] <= max(target, levels[home]) + SLACK_W
    # In the order given: once a home is cut short, the later ones get only their level.
    short = False
    for home, target in wanted.items():
        if short:
            assert granted[home] == levels[home]
        short = short or granted[home] < max(target, levels[home]) - SLACK_W


def test_grant_increases_fills_in_order_and_keeps_levels():
    granted = grant_increases({"a": 3000, "b": 2500, "c": 100}, {"a": 1000, "b": 500, "c": 400}, 2500)
    assert granted == {"a": 3000, "b": 1000, "c": 400}


def test_grant_increases_without_headroom_grants_levels():
    assert grant_increases({"a": 3000}, {"a": 1000}, -500) == {"a": 1000}


must_st = st.dictionaries(st.sampled_from([f"h{i}" for i in range(6)]), st.floats(min_value=0, max_value=10000))


@settings(max_examples=200, deadline=None)
@given(wanted_levels_st, st.floats(min_value=-20000, max_value=20000), must_st)
def test_grant_increases_cover_every_must_run_load_whatever_the_headroom(wanted_levels, headroom, musts):
    wanted, levels = wanted_levels
    # A plan's targets always cover its must-run loads.
    must = {h: min(w, wanted[h]) for h, w in musts.items() if h in wanted}
    granted = grant_increases(wanted, levels, headroom, must=must)
    raised = sum(max(must.get(h, 0.0) - levels[h], 0.0) for h in wanted)
    for home, target in wanted.items():
        assert granted[home] >= max(levels[home], must.get(home, 0.0)) - SLACK_W
        assert granted[home] <= max(target, levels[home]) + SLACK_W
    # Only must-run power goes beyond the headroom; it is counted first.
    assert sum(granted.values()) <= sum(levels.values()) + max(headroom, raised) + SLACK_W


def test_grant_increases_serve_the_must_run_raise_before_anything_flexible():
    # b's freezer (800 W above its level) must run: the 500 W of headroom go
    # to it, and a, first in order, gets nothing above its level.
    granted = grant_increases({"a": 3000, "b": 1000}, {"a": 1000, "b": 200}, 500, must={"b": 1000})
    assert granted == {"a": 1000, "b": 1000}
    # With room to spare, the flexible raise comes after it.
    granted = grant_increases({"a": 3000, "b": 1000}, {"a": 1000, "b": 200}, 1300, must={"b": 1000})
    assert granted == {"a": 1500, "b": 1000}


def test_grant_increases_count_a_must_run_raise_against_its_feeder():
    grid = Grid(("f0",), (0.0,), {"a": 0, "b": 0})
    granted = grant_increases({"a": 3000, "b": 1000, "c": 700}, {"a": 1000, "b": 0, "c": 0}, 10000, grid,
                              [900.0, np.inf], must={"b": 1000})
    # b's 1000 W exceed the feeder's 900 W: a gets nothing more there; c, on no feeder, all it wants.
    assert granted == {"a": 1000, "b": 1000, "c": 700}


@settings(max_examples=100, deadline=None)
@given(flexes_st, rooms_st)
def test_plan_says_each_homes_must_run_power_and_budgets_cover_it(flexes, room):
    result = plan(flexes, room, GRID)
    assert result.must == {h: pytest.approx(must_w(f)) for h, f in flexes.items() if must_w(f) > 0}
    assert result.must_w == pytest.approx(sum(must_w(f) for f in flexes.values()))
    for home, watts in result.must.items():
        assert result.budgets[home] >= watts - SLACK_W


# --------------------------------------------------------------- home powers


def test_on_and_demand():
    f = flex(
        offer("a", 1000, on=True, wanted=True),
        offer("b", 500, on=False, wanted=True),
        offer("c", 200, mode="must", on=True),
        offer("d", 300, on=True, wanted=False),
    )
    assert Offers.of(f).on_w == 1500.0
    assert Offers.of(f).demand_w == 1700.0


# ------------------------------------------------------------------ feeders

GRID = Grid(("street-a", "street-b"), (4000.0, 6000.0), {"home-0": 0, "home-1": 0, "home-2": 1})


def subset_sums(f):
    """Every power a home can draw with whole loads: its musts plus any set of may loads."""
    must = must_w(f)
    sums = {must}
    for o in f.loads:
        if o.mode == "may":
            sums |= {s + o.rated_w for s in sums}
    return sums


@settings(max_examples=100, deadline=None)
@given(flexes_st, rooms_st)
def test_plan_under_feeders_keeps_every_limit_with_whole_loads(flexes, room):
    result = plan(flexes, room, GRID)
    feeder_must = GRID.sums({h: must_w(f) for h, f in flexes.items()})
    feasible = (sum(must_w(f) for f in flexes.values()) <= room + SLACK_W
                and bool(np.all(feeder_must <= GRID.rooms() + SLACK_W)))
    assert result.feasible == feasible
    for home, f in flexes.items():
        # Budgets are whole sets of loads, so a home can meet them exactly.
        assert any(abs(result.budgets[home] - s) <= 1e-6 for s in subset_sums(f))
    if feasible:
        assert sum(result.budgets.values()) <= room + SLACK_W
        assert np.all(GRID.sums(result.budgets) <= GRID.rooms() + SLACK_W)
        assert result.value <= result.bound + 1e-6


def test_plan_a_loaded_transformer_sends_power_to_another_street():
    flexes = {
        "home-0": flex(offer("ev", 3000, priority=9), offer("heater", 2000, priority=8)),
        "home-1": flex(offer("pump", 1000, priority=7)),
        "home-2": flex(offer("dryer", 2000, priority=1), offer("oven", 2500, priority=2)),
    }
    # The total (10 kW) would serve all; street-a's 4 kW transformer cannot.
    result = plan(flexes, 10000, GRID)
    assert result.feasible
    assert result.budgets == {"home-0": 3000.0, "home-1": 1000.0, "home-2": 4500.0}


@settings(max_examples=200, deadline=None)
@given(wanted_levels_st, st.floats(min_value=-20000, max_value=20000),
       st.lists(st.floats(min_value=-5000, max_value=20000), min_size=2, max_size=2))
def test_grant_increases_within_every_feeder_headroom(wanted_levels, headroom, feeder_headroom):
    wanted, levels = wanted_levels
    grid = Grid(("f0", "f1"), (0.0, 0.0), {h: i % 3 for i, h in enumerate(wanted) if i % 3 < 2})
    rooms = np.append(feeder_headroom, np.inf)
    granted = grant_increases(wanted, levels, headroom, grid, rooms)
    extra = grid.sums({h: granted[h] - levels[h] for h in wanted})
    assert sum(granted[h] - levels[h] for h in wanted) <= max(headroom, 0) + SLACK_W
    assert np.all(extra <= np.maximum(rooms, 0) + SLACK_W)
    assert all(granted[h] >= levels[h] for h in wanted)
