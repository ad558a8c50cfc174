"""A dead peer is found within three heartbeats plus 1 s, on every link.

The check used to run only with the pings, so a peer silent just after a
tick was found up to a whole period late (16.8 s with a 5 s heartbeat); it
is now a timer of its own at ``last_seen + timeout``.  Time is a
``task.Clock``; the sessions are the real ones (the aggregator's, and the
home's toward its aggregator and its boards), on the tests' fake wires.
"""

import pytest
from twisted.internet.task import Clock

from jeisson.heartbeat import HEARTBEAT_MISSES, Heartbeat
from jeisson.wire import aggregator_home as dr
from tests.peers import Net, Rig


class Recorder:
    def __init__(self, clock):
        self.clock = clock
        self.pings: list[tuple[float, int]] = []
        self.dead: list[float] = []

    def ping(self, n):
        self.pings.append((self.clock.seconds(), n))

    def died(self):
        self.dead.append(self.clock.seconds())


def walk(clock, until):
    """Advance to ``until``, running each timer at its own time."""
    while True:
        due = [call.getTime() for call in clock.getDelayedCalls() if call.getTime() <= until]
        if not due:
            break
        clock.advance(max(min(due) - clock.seconds(), 0))
    clock.advance(until - clock.seconds())


def heartbeat(interval=5.0, timeout=15.0):
    clock = Clock()
    seen = Recorder(clock)
    beat = Heartbeat(clock, interval, timeout, seen.ping, seen.died)
    beat.start()
    return clock, beat, seen


def test_a_silent_peer_is_dead_exactly_its_timeout_after_its_last_line():
    clock, beat, seen = heartbeat()
    walk(clock, 5.2)  # just after the first tick: a check run with the pings found it at 25 s
    beat.seen()
    walk(clock, 20.1)
    assert seen.dead == []
    clock.advance(0.1)  # 20.2 = 5.2 + 15
    assert seen.dead == [pytest.approx(20.2)]
    assert not beat.running
    walk(clock, 60)
    assert len(seen.dead) == 1


def test_each_line_moves_the_deadline_and_pings_go_out_every_period():
    clock, beat, seen = heartbeat()
    for moment in (4, 13, 27):
        walk(clock, moment)
        beat.seen()
    walk(clock, 41.9)
    assert seen.dead == []
    walk(clock, 42.0)
    assert seen.dead == [pytest.approx(42.0)]
    assert [n for _, n in seen.pings] == list(range(1, 9))
    assert [t for t, _ in seen.pings] == pytest.approx([5 * n for n in range(1, 9)])


def test_stopped_it_neither_pings_nor_dies():
    clock, beat, seen = heartbeat()
    clock.advance(3)
    beat.stop()
    walk(clock, 100)
    assert seen.pings == [] and seen.dead == []


def test_started_again_it_waits_a_whole_timeout():
    clock, beat, seen = heartbeat()
    clock.advance(14)
    beat.start()  # a session starting over (a board's HELLO again)
    walk(clock, 28.9)
    assert seen.dead == []
    walk(clock, 29.0)
    assert seen.dead == [pytest.approx(29.0)]


# --------------------------------------------------------- on every link

PROMISE_S = HEARTBEAT_MISSES * 5 + 1  # three heartbeats plus 1 s, with heartbeat_s = 5

AGGREGATOR = """
[aggregator]
listen = tcp:7700:interface=127.0.0.1
heartbeat_s = 5
[home:h1]
secret = one
"""


def test_the_aggregator_drops_a_blackholed_home_within_three_heartbeats():
    net = Net(AGGREGATOR)
    home = net.home("h1")
    net.run_until(7.3)
    home.say(dr.Pong(1))  # its last line
    net.run_until(7.3 + 15 - 0.01)
    assert home.open
    net.run_until(7.3 + 15)
    assert home.aborted
    assert 7.3 + 15 <= 7.3 + PROMISE_S


HOME = """
[home]
id = home-1
secret = s3cret
aggregator = tcp:127.0.0.1:7700
actuators = tcp:7711:interface=127.0.0.1
heartbeat_s = 5
[actuator:a]
relays = 1
[load:heater]
actuator = a
relay = 1
rated_w = 2000
priority = 30
"""


def test_the_home_drops_a_blackholed_aggregator_within_three_heartbeats():
    rig = Rig(HOME)
    aggregator = rig.connect_aggregator(welcome=False)
    aggregator.say(dr.Welcome(1, "home-1", 5.0))
    rig.clock.advance(2.6)
    aggregator.say(dr.Ping(1))  # its last line
    walk(rig.clock, 2.6 + 15 - 0.05)
    assert not aggregator.wire.aborted
    walk(rig.clock, 2.6 + 15)
    assert aggregator.wire.aborted


def test_the_home_drops_a_blackholed_board_within_three_heartbeats():
    rig = Rig(HOME)
    board = rig.board("a", (False,))
    rig.settle()
    assert board.session.state == "active"
    rig.clock.advance(1.7)
    board.say(b"PING 7")  # its last line
    board.silent = True
    walk(rig.clock, 1.7 + 15 - 0.05)
    assert not board.wire.aborted
    walk(rig.clock, 1.7 + 15)
    assert board.wire.aborted
