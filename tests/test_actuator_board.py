"""The sans-IO relay board: switching rules, meter, failsafe and power-up, on a task.Clock."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from jeisson.actuator.board import Board
from jeisson.actuator.config import config_from_string
from tests.peers import board_key_file


def make_config(relays=((2000, "off", 2),), failsafe=15, noise=0.02, seed=7, cold_load=(0, 0)):
    """Relays as ``(load_w, safe_state, min_interval_s)``."""
    text = f"[actuator]\nkey = {board_key_file('a1')}\nid = a1\nhome = tcp:127.0.0.1:7711\n"
    text += f"failsafe_after_s = {failsafe}\nnoise = {noise}\n"
    text += f"seed = {seed}\ncold_load_min_s = {cold_load[0]}\ncold_load_max_s = {cold_load[1]}\n"
    for number, (load_w, safe_state, min_interval) in enumerate(relays, start=1):
        text += f"[relay:{number}]\nload_w = {load_w}\n"
        text += f"safe_state = {safe_state}\nmin_interval_s = {min_interval}\n"
    return config_from_string(text)


def make_board(clock=None, **kwargs):
    clock = clock or Clock()
    board = Board.from_config(make_config(**kwargs), clock)
    return board, clock


def running_board(states, **kwargs):
    """A board powered up at 0 whose home welcomed it at once, then, once
    every relay's ``min_interval_s`` after power-up had passed, switched the
    relays to ``states`` (and was last heard then)."""
    board, clock = make_board(**kwargs)
    board.start()
    board.home_in_charge()
    clock.advance(max(relay.config.min_interval_s for relay in board.relays))
    board.heard_from_home()
    for number, on in enumerate(states, start=1):
        assert board.switch(number, on) == "ok"
    assert board.states == tuple(states)
    return board, clock


class FixedGauss:
    """An rng whose gauss() always returns the same deviation."""

    def __init__(self, deviation):
        self.deviation = deviation

    def gauss(self, mu, sigma):
        return mu + self.deviation


# -- switching


def test_switch_changes_the_relay():
    board, _ = make_board()
    assert board.switch(1, True) == "ok"
    assert board.states == (True,)


@pytest.mark.parametrize("number", [0, 2, 8])
def test_switch_refuses_a_relay_the_board_does_not_have(number):
    board, _ = make_board()
    assert board.switch(number, True) == "relay"
    assert board.states == (False,)


def test_switching_again_within_min_interval_is_busy_then_allowed():
    board, clock = running_board([True], relays=((2000, "off", 2),))
    clock.advance(1.9)
    assert board.switch(1, False) == "busy"
    assert board.states == (True,)
    clock.advance(0.1)
    assert board.switch(1, False) == "ok"
    assert board.states == (False,)


def test_switching_to_the_current_state_is_ok_and_does_not_restart_the_interval():
    board, clock = running_board([True], relays=((2000, "off", 2),))
    clock.advance(1.5)
    assert board.switch(1, True) == "ok"
    clock.advance(0.5)
    # Two seconds after the real switch: allowed, the "on" again did not count.
    assert board.switch(1, False) == "ok"
    assert board.relays[0].switches == 2


def test_min_interval_is_per_relay():
    board, clock = running_board([True, False], relays=((100, "off", 10), (200, "off", 10)))
    assert board.switch(2, True) == "ok"
    assert board.switch(1, False) == "busy"


# -- power-up


def test_power_up_opens_every_relay_whatever_its_safe_state():
    board, clock = make_board(relays=((100, "on", 2), (200, "off", 2), (300, "hold", 2)), cold_load=(5, 30))
    board.start()
    assert board.states == (False, False, False)
    assert board.readings(random.Random(1)) == (0, 0, 0)


def test_power_up_counts_as_a_switch_for_min_interval():
    board, clock = make_board(relays=((2000, "off", 60),))
    clock.advance(100)
    board.start()
    clock.advance(59.9)
    assert board.switch(1, True) == "busy", "a relay closed within min_interval_s of power-up"
    clock.advance(0.1)
    assert board.switch(1, True) == "ok"


def test_safe_on_relays_switch_on_at_the_drawn_delay_and_the_others_stay_open():
    board, clock = make_board(relays=((100, "on", 2), (200, "off", 2), (300, "hold", 2), (400, "on", 0)),
                              cold_load=(5, 30), seed=3)
    board.start()
    delay = board.cold_load_at
    assert 5 <= delay <= 30
    clock.advance(delay - 0.01)
    assert board.states == (False, False, False, False)
    assert not board.unreported_switch
    clock.advance(0.01)
    assert board.states == (True, False, False, True)
    assert board.unreported_switch, "the home must learn of a switch it did not command"
    clock.advance(1000)
    assert board.states == (True, False, False, True)


def test_the_delay_is_drawn_from_the_seed_and_spread_over_the_window():
    def delay(seed, clock=None):
        board, _ = make_board(relays=((100, "on", 0),), cold_load=(5, 30), seed=seed, clock=clock)
        board.start()
        return board.cold_load_at - board.clock.seconds()

    assert delay(1) == delay(1), "a seed replays its run"
    assert delay(1) != delay(2), "two boards with different seeds draw different delays"
    drawn = [delay(seed) for seed in range(200)]
    assert all(5 <= d <= 30 for d in drawn)
    # Uniform over the window: each sixth of it holds some of 200 draws.
    assert {int((d - 5) // (25 / 6)) for d in drawn} == set(range(6))


def test_a_safe_on_relay_waits_for_its_min_interval_after_power_up_whatever_the_delay():
    board, clock = make_board(relays=((100, "on", 40), (200, "on", 2)), cold_load=(5, 10), seed=4, failsafe=3600)
    board.start()
    clock.advance(10)
    assert board.states == (False, True)
    clock.advance(29.9)
    assert board.states == (False, True), "closed within min_interval_s of power-up"
    clock.advance(0.1)
    assert board.states == (True, True)


def test_a_zero_window_switches_safe_on_relays_at_power_up():
    board, clock = make_board(relays=((100, "on", 0), (200, "off", 0)), cold_load=(0, 0))
    board.start()
    assert board.states == (True, False)


def test_a_set_before_the_delay_cancels_the_pending_cold_load_switch():
    board, clock = make_board(relays=((100, "on", 2), (200, "on", 2)), cold_load=(20, 20), failsafe=3600)
    board.start()
    clock.advance(5)
    assert board.switch(1, False) == "ok", "already off: acknowledged"
    clock.advance(100)
    assert board.states == (False, True), "relay 1 is the home's; relay 2 came back on its own"


def test_a_set_on_before_the_delay_is_obeyed_once_min_interval_allows():
    board, clock = make_board(relays=((100, "on", 2),), cold_load=(20, 20), failsafe=3600)
    board.start()
    assert board.switch(1, True) == "busy"
    clock.advance(2)
    assert board.switch(1, True) == "ok"
    assert board.states == (True,) and not board.unreported_switch


def test_the_home_in_charge_cancels_every_pending_cold_load_switch():
    board, clock = make_board(relays=((100, "on", 2), (200, "on", 2)), cold_load=(20, 20), failsafe=3600)
    board.start()
    clock.advance(1)
    with capturedLogs() as events:
        board.home_in_charge()
    clock.advance(100)
    assert board.states == (False, False), "nothing closes behind the home's back"
    assert any("in charge" in formatEvent(e) for e in events)
    assert len(clock.getDelayedCalls()) == 1, "only the failsafe is left"


def test_the_failsafe_still_runs_from_power_up_and_never_closes_before_the_delay():
    board, clock = make_board(relays=((100, "on", 2), (200, "off", 2)), cold_load=(30, 30), failsafe=10)
    board.start()
    clock.advance(10)
    assert board.in_failsafe
    assert board.states == (False, False)
    clock.advance(19.9)
    assert board.states == (False, False), "the failsafe closed a relay before the cold-load delay"
    clock.advance(0.1)
    assert board.states == (True, False)


def test_a_restart_reapplies_the_power_up_rules():
    clock = Clock()
    board, _ = make_board(relays=((100, "on", 2), (200, "off", 30)), cold_load=(5, 30), clock=clock, failsafe=3600)
    board.start()
    board.home_in_charge()
    clock.advance(30)
    assert board.switch(2, True) == "ok"
    clock.advance(1)
    board.stop()
    assert board.states == (False, False), "powered down: relays open"
    # Power is back one second later: a new board (the firmware has no memory).
    clock.advance(1)
    again, _ = make_board(relays=((100, "on", 2), (200, "off", 30)), cold_load=(5, 30), clock=clock, seed=8,
                          failsafe=3600)
    again.start()
    assert again.states == (False, False)
    assert again.switch(2, True) == "busy", "relay 2 opened at power loss: min_interval_s holds"
    clock.advance(again.cold_load_at - clock.seconds())
    assert again.states == (True, False)
    clock.advance(30 - (clock.seconds() - 32))
    assert again.switch(2, True) == "ok"


def test_starting_the_same_board_again_opens_its_relays_as_a_power_cycle():
    board, clock = running_board([True, True], relays=((100, "on", 2), (200, "off", 2)))
    board.start()
    assert board.states == (False, False)
    assert board.unreported_switch
    assert board.switch(2, True) == "busy"


def test_power_up_is_logged_as_an_installer_reads_it():
    board, clock = make_board(relays=((100, "on", 2), (200, "off", 2)), cold_load=(5, 30), seed=3)
    with capturedLogs() as events:
        board.start()
        clock.advance(30)
    texts = [formatEvent(e) for e in events]
    delay = board.cold_load_at
    assert f"actuator a1: powered up: relays open; safe states in {delay:.1f} s (cold-load pickup): relays 1 on" \
        in texts
    assert "actuator a1: cold-load pickup switched relay 1 on (its safe state)" in texts
    board, _ = make_board(relays=((100, "off", 2),))
    with capturedLogs() as events:
        board.start()
    assert [formatEvent(e) for e in events] == [
        "actuator a1: powered up: relays open (no relay's safe state is on); they stay open until the home "
        "commands them"]


# -- meter


def test_readings_are_the_load_with_noise_and_zero_when_off():
    board, _ = running_board([True, False, True], relays=((2000, "off", 2), (1500, "off", 2), (800, "off", 2)))
    rng = random.Random(1)
    samples = [board.readings(rng) for _ in range(200)]
    assert all(sample[1] == 0 for sample in samples)
    heater = [sample[0] for sample in samples]
    # noise 0.02: 5 standard deviations is 10 %.
    assert all(1800 <= w <= 2200 for w in heater)
    assert 1980 <= sum(heater) / len(heater) <= 2020
    assert len(set(heater)) > 10, "the meter should be noisy"


def test_readings_are_deterministic_for_a_seed():
    board, _ = running_board([True], relays=((2000, "off", 2),))
    assert [board.readings(random.Random(3)) for _ in range(3)] == [board.readings(random.Random(3))] * 3
    first = random.Random(5)
    second = random.Random(5)
    assert [board.readings(first) for _ in range(20)] == [board.readings(second) for _ in range(20)]


def test_readings_without_noise_are_exactly_the_load():
    board, _ = running_board([True], relays=((2000, "off", 2),), noise=0)
    assert board.readings(random.Random()) == (2000,)


def test_readings_are_clipped_to_what_the_protocol_carries():
    board, _ = running_board([True, True], relays=((65535, "off", 2), (100, "off", 2)))
    assert board.readings(FixedGauss(0.5)) == (65535, 150)
    assert board.readings(FixedGauss(-3)) == (0, 0)


def test_board_rng_follows_the_config_seed():
    one, _ = running_board([True], relays=((2000, "off", 2),), seed=11)
    two, _ = running_board([True], relays=((2000, "off", 2),), seed=11)
    assert [one.readings(one.rng) for _ in range(10)] == [two.readings(two.rng) for _ in range(10)]


# -- failsafe


def test_failsafe_fires_after_exactly_failsafe_after_s_of_silence():
    board, clock = running_board([True], relays=((2000, "off", 2),), failsafe=15)
    clock.advance(14.9)
    assert board.states == (True,)
    assert not board.in_failsafe
    clock.advance(0.1)
    assert board.states == (False,)
    assert board.in_failsafe


def test_failsafe_counts_from_the_last_line_heard():
    board, clock = running_board([True], relays=((2000, "off", 2),), failsafe=15)
    clock.advance(10)
    board.heard_from_home()
    clock.advance(14.9)
    assert board.states == (True,)
    clock.advance(0.1)
    assert board.states == (False,)


def test_failsafe_counts_from_power_up_connected_or_not():
    board, clock = make_board(relays=((2000, "on", 2),), failsafe=15, cold_load=(30, 30))
    board.start()
    clock.advance(15)
    assert board.in_failsafe


def test_failsafe_keeps_a_single_timer_however_many_lines_are_heard():
    board, clock = make_board(failsafe=15)
    board.start()
    for _ in range(100):
        clock.advance(0.1)
        board.heard_from_home()
    assert len(clock.getDelayedCalls()) == 1


def test_failsafe_safe_states_off_on_hold():
    board, clock = running_board(
        [True, False, True, False],
        relays=((100, "off", 0), (200, "on", 0), (300, "hold", 0), (400, "hold", 0)),
    )
    clock.advance(15)
    assert board.states == (False, True, True, False)


def test_failsafe_waits_for_the_min_interval():
    board, clock = running_board([False, True], relays=((2000, "off", 20), (500, "off", 20)), failsafe=15)
    clock.advance(20)
    board.heard_from_home()
    assert board.switch(1, True) == "ok"  # at t=40, allowed again at t=60
    clock.advance(15)
    # Relay 2 last switched at 20, it goes off at once; relay 1 must wait.
    assert board.states == (True, False)
    assert board.in_failsafe
    clock.advance(4.9)
    assert board.states == (True, False)
    clock.advance(0.1)
    assert board.states == (False, False)


def test_a_command_from_the_home_cancels_a_waiting_safe_switch():
    board, clock = running_board([True], relays=((2000, "off", 20),), failsafe=15)
    clock.advance(15)
    assert board.in_failsafe
    board.heard_from_home()
    assert board.switch(1, True) == "ok"
    assert not board.in_failsafe
    clock.advance(10)
    assert board.states == (True,)


def test_hearing_from_the_home_ends_failsafe_and_rearms_it():
    board, clock = running_board([True], relays=((2000, "off", 0),), failsafe=15)
    assert not board.unreported_switch, "the home's own switches need no report"
    clock.advance(15)
    assert board.in_failsafe and board.unreported_switch
    board.heard_from_home()
    # The home is back in charge; the session tells it the true states.
    assert not board.in_failsafe and board.unreported_switch
    clock.advance(15)
    assert board.in_failsafe
    assert board.states == (False,)


def test_a_safe_switch_waiting_for_its_interval_does_not_fire_once_the_home_is_back():
    # safe_state on, but the home just shed it and the relay must wait 300 s.
    board, clock = running_board([True], relays=((2000, "on", 300),), failsafe=20)
    clock.advance(300)
    board.heard_from_home()
    board.switch(1, False)
    clock.advance(20)
    assert board.in_failsafe and board.states == (False,)
    # The home talks again, every 10 s, past the moment the switch waited for.
    for _ in range(30):
        board.heard_from_home()
        clock.advance(10)
    assert not board.in_failsafe
    assert board.states == (False,), "the pending safe switch fired behind the home's back"


def test_failsafe_actions_are_logged():
    board, clock = running_board([True, True], relays=((2000, "off", 0), (10, "hold", 0)))
    with capturedLogs() as events:
        clock.advance(15)
    texts = [(event["log_format"], event.get("relay")) for event in events]
    assert any("safe states" in text for text, _ in texts)
    assert any("switched relay" in text and relay == 1 for text, relay in texts)
    assert any("stays" in text and relay == 2 for text, relay in texts)


def test_stop_cancels_every_timer():
    board, clock = running_board([True], relays=((2000, "off", 20),), failsafe=15)
    clock.advance(15)  # a safe switch now waits until t=40
    board.heard_from_home()
    assert clock.getDelayedCalls()
    board.stop()
    assert clock.getDelayedCalls() == []
    board.heard_from_home()
    assert clock.getDelayedCalls() == [], "a stopped board arms no timer"


def test_stop_cancels_a_pending_cold_load_switch():
    board, clock = make_board(relays=((2000, "on", 2),), cold_load=(5, 30))
    board.start()
    board.stop()
    assert clock.getDelayedCalls() == []
    clock.advance(60)
    assert board.states == (False,)


# -- the safety invariant, under any sequence of commands and silences

STEP = 0.25  # binary-exact, so every scheduled time lands exactly on a step

operations = st.lists(
    st.one_of(
        st.tuples(st.just("set"), st.integers(1, 3), st.booleans()),
        st.tuples(st.just("heard"), st.none(), st.none()),
        st.tuples(st.just("wait"), st.integers(1, 40), st.none()),
    ),
    max_size=60,
)


@settings(max_examples=60, deadline=None, derandomize=True)
@given(
    operations,
    st.lists(st.sampled_from(["off", "on", "hold"]), min_size=3, max_size=3),
    st.lists(st.integers(2, 40), min_size=3, max_size=3),
    st.sampled_from([(0, 0), (0, 3), (2, 12)]),
)
def test_no_relay_ever_switches_faster_than_its_min_interval(ops, safe_states, intervals, cold_load):
    relays = tuple((1000, safe, n * STEP) for safe, n in zip(safe_states, intervals, strict=True))
    board, clock = make_board(relays=relays, failsafe=5, cold_load=cold_load)
    board.start()
    last = [0.0, 0.0, 0.0]  # power-up counts as a switch
    count = [0, 0, 0]
    commanded = set()

    def observe():
        for i, relay in enumerate(board.relays):
            if clock.seconds() < board.cold_load_at and i + 1 not in commanded:
                assert not relay.on, "a relay closed on its own before the cold-load delay"
            if relay.switches == count[i]:
                continue
            assert relay.switches == count[i] + 1, "two switches within one step"
            assert clock.seconds() - last[i] >= relay.config.min_interval_s
            last[i] = clock.seconds()
            count[i] = relay.switches

    for kind, a, b in ops:
        if kind == "set":
            board.heard_from_home()
            board.switch(a, b)
            commanded.add(a)
        elif kind == "heard":
            board.heard_from_home()
        else:
            for _ in range(a):
                clock.advance(STEP)
                observe()
        observe()
    board.stop()
