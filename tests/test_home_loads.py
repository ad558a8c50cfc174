"""A load's switching rules (jeisson.home.loads): pure functions of its state and the time."""

import math

import pytest

from jeisson.home.config import LoadConfig
from jeisson.home.loads import Load
from jeisson.home.targets import ons_that_fit, targets


def load(on, *, last_switch=0.0, desired=True, critical=False, min_on_s=10.0, min_off_s=20.0, rated_w=1000.0,
         max_off_s=None):
    config = LoadConfig(id="heater", actuator="home-1-a", relay=1, rated_w=rated_w, priority=5, critical=critical,
                        min_on_s=min_on_s, min_off_s=min_off_s, desired=True, max_off_s=max_off_s)
    return Load(config, on=on, last_switch=last_switch, desired=desired)


# -- mode: what the aggregator may do with the load


@pytest.mark.parametrize("desired", [True, False])
@pytest.mark.parametrize("critical", [True, False])
def test_an_unknown_load_must_run_whatever_its_settings(desired, critical):
    assert load(None, desired=desired, critical=critical).mode(now=1e6) == "must"


def test_a_critical_load_on_that_its_owner_wants_must_run_long_after_its_min_on():
    assert load(True, critical=True, desired=True).mode(now=1e6) == "must"


@pytest.mark.parametrize("desired", [True, False])
@pytest.mark.parametrize("now", [0.0, 5.0, 9.999])
def test_a_load_on_within_its_min_on_time_must_run(desired, now):
    assert load(True, desired=desired).mode(now) == "must"


@pytest.mark.parametrize("critical", [True, False])
def test_a_load_on_that_its_owner_wants_off_is_off_once_its_min_on_time_is_over(critical):
    assert load(True, desired=False, critical=critical).mode(now=10.0) == "off"


@pytest.mark.parametrize("desired", [True, False])
@pytest.mark.parametrize("critical", [True, False])
@pytest.mark.parametrize("now", [0.0, 19.999])
def test_a_load_off_within_its_min_off_time_is_off_even_if_critical_and_desired(desired, critical, now):
    assert load(False, desired=desired, critical=critical).mode(now) == "off"


def test_a_critical_load_off_that_its_owner_wants_must_run_once_its_min_off_time_is_over():
    assert load(False, desired=True, critical=True).mode(now=20.0) == "must"


def test_a_load_off_that_its_owner_wants_off_stays_off():
    assert load(False, desired=False).mode(now=1e6) == "off"


@pytest.mark.parametrize(("on", "now"), [(True, 10.0), (False, 20.0), (True, 1e6), (False, 1e6)])
def test_an_ordinary_wanted_load_past_its_minimum_time_may_run(on, now):
    assert load(on, desired=True).mode(now) == "may"


def test_a_load_never_switched_is_free_at_once():
    fresh = Load(LoadConfig("fan", "a", 1, 100.0, 1, False, 60.0, 60.0, True), on=False)
    assert fresh.last_switch == -math.inf and fresh.desired is True
    assert fresh.mode(now=0.0) == "may"
    assert fresh.can_switch(True, 0.0)
    assert fresh.next_change(0.0) is None


def test_desired_defaults_to_the_owners_setting_in_the_config():
    config = LoadConfig("fan", "a", 1, 100.0, 1, False, 0.0, 0.0, False)
    assert Load(config).desired is False
    assert Load(config, desired=True).desired is True


# -- can_switch: minimum on and off times, inclusive


def test_can_switch_off_exactly_when_the_min_on_time_is_over():
    on = load(True, last_switch=100.0)
    assert not on.can_switch(False, 109.999)
    assert on.can_switch(False, 110.0)


def test_can_switch_on_exactly_when_the_min_off_time_is_over():
    off = load(False, last_switch=100.0)
    assert not off.can_switch(True, 119.999)
    assert off.can_switch(True, 120.0)


@pytest.mark.parametrize("on", [True, False])
def test_switching_to_the_current_state_is_not_a_switch(on):
    assert not load(on).can_switch(on, 1e6)


@pytest.mark.parametrize("to_on", [True, False])
def test_an_unknown_load_cannot_be_switched(to_on):
    assert not load(None).can_switch(to_on, 1e6)


# -- next_change: when the mode changes by time alone


def test_next_change_of_a_load_on_is_the_end_of_its_min_on_time():
    assert load(True, last_switch=100.0).next_change(101.0) == 110.0


def test_next_change_of_a_load_off_is_the_end_of_its_min_off_time():
    assert load(False, last_switch=100.0).next_change(101.0) == 120.0


@pytest.mark.parametrize("now", [110.0, 500.0])
def test_no_next_change_once_the_minimum_time_is_over(now):
    assert load(True, last_switch=100.0).next_change(now) is None


def test_no_next_change_for_an_unknown_load_or_without_minimum_times():
    assert load(None).next_change(0.0) is None
    assert load(True, min_on_s=0.0).next_change(0.0) is None


def test_the_mode_only_changes_at_next_change():
    held = load(True, last_switch=0.0, desired=False)
    moment = held.next_change(3.0)
    assert held.mode(moment - 0.001) == "must"
    assert held.mode(moment) == "off"


# -- cautious_w: what the home counts


@pytest.mark.parametrize(("on", "counted"), [(True, 1000.0), (None, 1000.0), (False, 0.0)])
def test_cautious_power_counts_loads_on_or_unknown_at_their_rated_power(on, counted):
    assert load(on).cautious_w() == counted


# -- max_off_s: a shed load comes back


def test_a_shed_load_must_come_back_on_after_its_maximum_off_time():
    shed = load(False, last_switch=100.0, max_off_s=60.0)
    assert shed.mode(119.0) == "off", "its minimum off time holds first"
    assert shed.mode(120.0) == "may"
    assert shed.next_change(120.0) == 160.0
    assert shed.mode(159.9) == "may"
    assert shed.mode(160.0) == "must"
    assert shed.next_change(160.0) is None


def test_back_on_its_minimum_on_time_holds_it_and_it_may_be_shed_again():
    back = load(True, last_switch=160.0, max_off_s=60.0)
    assert back.mode(169.9) == "must"
    assert back.mode(170.0) == "may"


def test_a_load_its_owner_wants_off_is_never_due_back_on():
    assert load(False, last_switch=0.0, desired=False, max_off_s=30.0).mode(1000.0) == "off"
    assert load(False, last_switch=0.0, desired=False, max_off_s=30.0).next_change(25.0) is None


def test_no_maximum_off_time_means_never_due():
    assert load(False, last_switch=0.0).mode(1e9) == "may"


# -- targets and ons_that_fit (jeisson.home.targets): appliance protection first


def named(load_id, on, *, rated_w, priority=5, critical=False, desired=True, last_switch=0.0, min_on_s=0.0,
          min_off_s=0.0, max_off_s=None):
    config = LoadConfig(id=load_id, actuator="a", relay=1, rated_w=rated_w, priority=priority, critical=critical,
                        min_on_s=min_on_s, min_off_s=min_off_s, desired=True, max_off_s=max_off_s)
    return Load(config, on=on, last_switch=last_switch, desired=desired)


def freezer_due(now=100.0, min_on_s=30.0):
    """A freezer shed at 0 s, past its 60 s maximum off time at ``now``;
    once on, its minimum on time holds it."""
    freezer = named("freezer", False, rated_w=800.0, priority=1, max_off_s=60.0, min_on_s=min_on_s)
    assert freezer.mode(now) == "must"
    return freezer


def test_targets_turn_a_load_past_its_maximum_off_time_on_even_when_the_must_run_loads_exceed_the_budget():
    fridge = named("fridge", True, rated_w=150.0, critical=True)
    lamp = named("lamp", True, rated_w=100.0, priority=50)
    chosen = targets([fridge, freezer_due(), lamp], 500.0, now=100.0)
    assert chosen.on == {"fridge": True, "freezer": True, "lamp": False}, "the flexible lamp is shed first"
    assert chosen.feasible is False
    assert chosen.must_w == 950.0


def test_targets_count_loads_on_unreachable_boards_in_the_must_run_power():
    unknown = named("heater", None, rated_w=2000.0)
    chosen = targets([unknown, freezer_due()], 5000.0, now=100.0)
    assert chosen.on == {"freezer": True} and chosen.feasible and chosen.must_w == 2800.0


def test_ons_that_fit_never_skips_a_must_run_load_for_lack_of_room():
    fridge = named("fridge", True, rated_w=150.0, critical=True)
    freezer = freezer_due()
    on = {"fridge": True, "freezer": True}
    assert ons_that_fit([fridge, freezer], on, room_w=0.0, now=100.0) == [freezer]
    assert ons_that_fit([fridge, freezer], on, room_w=-500.0, now=100.0) == [freezer]


def test_ons_that_fit_counts_the_must_run_loads_before_the_flexible_ones():
    # In the home's order the fan comes first, but the freezer must run: the
    # 1000 W of room holds the freezer and the lamp, not the fan.
    fan = named("fan", False, rated_w=500.0)
    freezer = freezer_due()
    lamp = named("lamp", False, rated_w=200.0)
    on = {"fan": True, "freezer": True, "lamp": True}
    assert ons_that_fit([fan, freezer, lamp], on, room_w=1000.0, now=100.0) == [freezer, lamp]
    # Without a budget, everything wanted goes on.
    assert ons_that_fit([fan, freezer, lamp], on, room_w=None, now=100.0) == [fan, freezer, lamp]


def test_a_must_run_load_nothing_would_hold_on_goes_on_only_where_it_fits():
    # No minimum on time: over the budget it would be flexible, and shed,
    # the moment it went on.  It still comes before anything flexible.
    fridge = named("fridge", True, rated_w=150.0, critical=True)
    freezer = freezer_due(min_on_s=0.0)
    lamp = named("lamp", True, rated_w=100.0, priority=50)
    assert not freezer.held_once_on() and fridge.held_once_on() and freezer_due().held_once_on()
    chosen = targets([fridge, freezer, lamp], 500.0, now=100.0)
    assert chosen.on == {"fridge": True, "freezer": False, "lamp": True}
    assert chosen.feasible is False and chosen.must_w == 950.0
    assert ons_that_fit([freezer], {"freezer": True}, room_w=799.0, now=100.0) == []
    # Where it fits, it goes on before the flexible loads, which make room for it.
    chosen = targets([fridge, freezer, lamp], 1000.0, now=100.0)
    assert chosen.on == {"fridge": True, "freezer": True, "lamp": False} and chosen.feasible
    assert ons_that_fit([freezer], {"freezer": True}, room_w=800.0, now=100.0) == [freezer]


def test_ons_that_fit_still_respects_minimum_times_and_the_targets():
    # Critical and wanted, but within its minimum off time: not yet, whatever the room.
    held = named("heater", False, rated_w=100.0, critical=True, last_switch=90.0, min_off_s=20.0)
    assert held.mode(100.0) == "off"
    assert ons_that_fit([held], {"heater": True}, room_w=1e6, now=100.0) == []
    assert ons_that_fit([held], {"heater": True}, room_w=1e6, now=110.0) == [held]
    # Only what the targets turn on: a must-run load they leave off (its
    # owner just set it off) stays off.
    assert ons_that_fit([freezer_due()], {"freezer": False}, room_w=1e6, now=100.0) == []
