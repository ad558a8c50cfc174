"""The sans-IO relay board: switching rules, meter and failsafe, on a task.Clock."""

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.logger import capturedLogs

from jeisson.actuator.board import Board
from jeisson.actuator.config import config_from_string


def make_config(relays=((2000, "off", "off", 2),), failsafe=15, noise=0.02, seed=7):
    text = f"[actuator]\nid = a1\nhome = tcp:127.0.0.1:7711\nfailsafe_after_s = {failsafe}\nnoise = {noise}\n"
    text += f"seed = {seed}\n"
    for number, (load_w, initial, safe_state, min_interval) in enumerate(relays, start=1):
        text += f"[relay:{number}]\nload_w = {load_w}\ninitial = {initial}\n"
        text += f"safe_state = {safe_state}\nmin_interval_s = {min_interval}\n"
    return config_from_string(text)


def make_board(**kwargs):
    clock = Clock()
    board = Board.from_config(make_config(**kwargs), clock)
    return board, clock


class FixedGauss:
    """An rng whose gauss() always returns the same deviation."""

    def __init__(self, deviation):
        self.deviation = deviation

    def gauss(self, mu, sigma):
        return mu + self.deviation


# -- switching


def test_initial_states_come_from_the_config():
    board, _ = make_board(relays=((100, "on", "off", 2), (200, "off", "off", 2), (300, "on", "off", 2)))
    assert board.states == (True, False, True)


def test_switch_changes_the_relay():
    board, _ = make_board()
    assert board.switch(1, True) == "ok"
    assert board.states == (True,)


@pytest.mark.parametrize("number", [0, 2, 8])
def test_switch_refuses_a_relay_the_board_does_not_have(number):
    board, _ = make_board()
    assert board.switch(number, True) == "relay"
    assert board.states == (False,)


def test_first_switch_after_power_up_is_allowed_at_once():
    board, clock = make_board(relays=((2000, "off", "off", 60),))
    clock.advance(0.5)
    assert board.switch(1, True) == "ok"


def test_switching_again_within_min_interval_is_busy_then_allowed():
    board, clock = make_board(relays=((2000, "off", "off", 2),))
    assert board.switch(1, True) == "ok"
    clock.advance(1.9)
    assert board.switch(1, False) == "busy"
    assert board.states == (True,)
    clock.advance(0.1)
    assert board.switch(1, False) == "ok"
    assert board.states == (False,)


def test_switching_to_the_current_state_is_ok_and_does_not_restart_the_interval():
    board, clock = make_board(relays=((2000, "off", "off", 2),))
    board.switch(1, True)
    clock.advance(1.5)
    assert board.switch(1, True) == "ok"
    clock.advance(0.5)
    # Two seconds after the real switch: allowed, the "on" again did not count.
    assert board.switch(1, False) == "ok"
    assert board.relays[0].switches == 2


def test_min_interval_is_per_relay():
    board, _ = make_board(relays=((100, "off", "off", 10), (200, "off", "off", 10)))
    assert board.switch(1, True) == "ok"
    assert board.switch(2, True) == "ok"


# -- meter


def test_readings_are_the_load_with_noise_and_zero_when_off():
    board, _ = make_board(relays=((2000, "on", "off", 2), (1500, "off", "off", 2), (800, "on", "off", 2)))
    rng = random.Random(1)
    samples = [board.readings(rng) for _ in range(200)]
    assert all(sample[1] == 0 for sample in samples)
    heater = [sample[0] for sample in samples]
    # noise 0.02: 5 standard deviations is 10 %.
    assert all(1800 <= w <= 2200 for w in heater)
    assert 1980 <= sum(heater) / len(heater) <= 2020
    assert len(set(heater)) > 10, "the meter should be noisy"


def test_readings_are_deterministic_for_a_seed():
    board, _ = make_board(relays=((2000, "on", "off", 2),))
    assert [board.readings(random.Random(3)) for _ in range(3)] == [board.readings(random.Random(3))] * 3
    first = random.Random(5)
    second = random.Random(5)
    assert [board.readings(first) for _ in range(20)] == [board.readings(second) for _ in range(20)]


def test_readings_without_noise_are_exactly_the_load():
    board, _ = make_board(relays=((2000, "on", "off", 2),), noise=0)
    assert board.readings(random.Random()) == (2000,)


def test_readings_are_clipped_to_what_the_protocol_carries():
    board, _ = make_board(relays=((65535, "on", "off", 2), (100, "on", "off", 2)))
    assert board.readings(FixedGauss(0.5)) == (65535, 150)
    assert board.readings(FixedGauss(-3)) == (0, 0)


def test_board_rng_follows_the_config_seed():
    one, _ = make_board(relays=((2000, "on", "off", 2),), seed=11)
    two, _ = make_board(relays=((2000, "on", "off", 2),), seed=11)
    assert [one.readings(one.rng) for _ in range(10)] == [two.readings(two.rng) for _ in range(10)]


# -- failsafe


def test_failsafe_fires_after_exactly_failsafe_after_s_of_silence():
    board, clock = make_board(relays=((2000, "on", "off", 2),), failsafe=15)
    board.start()
    clock.advance(14.9)
    assert board.states == (True,)
    assert not board.in_failsafe
    clock.advance(0.1)
    assert board.states == (False,)
    assert board.in_failsafe


def test_failsafe_counts_from_the_last_line_heard():
    board, clock = make_board(relays=((2000, "on", "off", 2),), failsafe=15)
    board.start()
    clock.advance(10)
    board.heard_from_home()
    clock.advance(14.9)
    assert board.states == (True,)
    clock.advance(0.1)
    assert board.states == (False,)


def test_failsafe_keeps_a_single_timer_however_many_lines_are_heard():
    board, clock = make_board(failsafe=15)
    board.start()
    for _ in range(100):
        clock.advance(0.1)
        board.heard_from_home()
    assert len(clock.getDelayedCalls()) == 1


def test_failsafe_safe_states_off_on_hold():
    board, clock = make_board(
        relays=((100, "on", "off", 0), (200, "off", "on", 0), (300, "on", "hold", 0), (400, "off", "hold", 0)),
    )
    board.start()
    clock.advance(15)
    assert board.states == (False, True, True, False)


def test_failsafe_waits_for_the_min_interval():
    board, clock = make_board(relays=((2000, "off", "off", 20), (500, "on", "off", 20)), failsafe=15)
    board.start()
    assert board.switch(1, True) == "ok"  # at t=0, allowed again at t=20
    clock.advance(15)
    # Relay 2 never switched, it goes off at once; relay 1 must wait.
    assert board.states == (True, False)
    assert board.in_failsafe
    clock.advance(4.9)
    assert board.states == (True, False)
    clock.advance(0.1)
    assert board.states == (False, False)


def test_a_command_from_the_home_cancels_a_waiting_safe_switch():
    board, clock = make_board(relays=((2000, "off", "off", 20),), failsafe=15)
    board.start()
    board.switch(1, True)
    clock.advance(15)
    assert board.in_failsafe
    board.heard_from_home()
    assert board.switch(1, True) == "ok"
    assert not board.in_failsafe
    clock.advance(10)
    assert board.states == (True,)


def test_hearing_from_the_home_ends_failsafe_and_rearms_it():
    board, clock = make_board(relays=((2000, "on", "off", 0),), failsafe=15)
    board.start()
    clock.advance(15)
    assert board.in_failsafe and board.failsafe_switched
    board.heard_from_home()
    # The home is back in charge; the session tells it the true states.
    assert not board.in_failsafe and board.failsafe_switched
    clock.advance(15)
    assert board.in_failsafe
    assert board.states == (False,)


def test_a_safe_switch_waiting_for_its_interval_does_not_fire_once_the_home_is_back():
    # safe_state on, but the home just shed it and the relay must wait 300 s.
    board, clock = make_board(relays=((2000, "on", "on", 300),), failsafe=20)
    board.start()
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
    board, clock = make_board(relays=((2000, "on", "off", 0), (10, "on", "hold", 0)))
    board.start()
    with capturedLogs() as events:
        clock.advance(15)
    texts = [(event["log_format"], event.get("relay")) for event in events]
    assert any("safe states" in text for text, _ in texts)
    assert any("switched relay" in text and relay == 1 for text, relay in texts)
    assert any("stays" in text and relay == 2 for text, relay in texts)


def test_stop_cancels_every_timer():
    board, clock = make_board(relays=((2000, "off", "off", 20),), failsafe=15)
    board.start()
    board.switch(1, True)
    clock.advance(15)  # a safe switch now waits until t=20
    board.heard_from_home()
    assert clock.getDelayedCalls()
    board.stop()
    assert clock.getDelayedCalls() == []
    board.heard_from_home()
    assert clock.getDelayedCalls() == [], "a stopped board arms no timer"


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
)
def test_no_relay_ever_switches_faster_than_its_min_interval(ops, safe_states, intervals):
    relays = tuple((1000, "off", safe, n * STEP) for safe, n in zip(safe_states, intervals, strict=True))
    board, clock = make_board(relays=relays, failsafe=5)
    board.start()
    last = [None, None, None]
    count = [0, 0, 0]

    def observe():
        for i, relay in enumerate(board.relays):
            if relay.switches == count[i]:
                continue
            assert relay.switches == count[i] + 1, "two switches within one step"
            if last[i] is not None:
                assert clock.seconds() - last[i] >= relay.config.min_interval_s
            last[i] = clock.seconds()
            count[i] = relay.switches

    for kind, a, b in ops:
        if kind == "set":
            board.heard_from_home()
            board.switch(a, b)
        elif kind == "heard":
            board.heard_from_home()
        else:
            for _ in range(a):
                clock.advance(STEP)
                observe()
        observe()
    board.stop()
