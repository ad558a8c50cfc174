"""The actuator's session with its home, through a fake wire or a LineLink, on a task.Clock."""

import pytest
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure

from jeisson.actuator.board import Board
from jeisson.actuator.config import config_from_string
from jeisson.actuator.home_link import ACTIVE, CLOSED, HELLO_SENT, session_factory
from jeisson.transports.stream import LineLinkFactory
from jeisson.wire import home_actuator
from tests.peers import FakeWire, say

CONFIG = """
[actuator]
key = none
id = home-1-a
home = tcp:127.0.0.1:7711
failsafe_after_s = 15
measure_period_s = 2
noise = 0.02
seed = 42
cold_load_min_s = 0
cold_load_max_s = 0
[relay:1]
load_w = 2000
min_interval_s = 2
[relay:2]
load_w = 1500
min_interval_s = 2
[relay:3]
load_w = 800
safe_state = on
min_interval_s = 2
"""


class Connection:
    """A board powered up at 0 whose home switched relays 1 and 3 on at 2 s
    (their min_interval_s after power-up), as it would after WELCOME; then
    a new connection to the home, its session started at 2 s."""

    def __init__(self, config=CONFIG):
        self.clock = Clock()
        self.board = Board.from_config(config_from_string(config), self.clock)
        self.board.start()
        self.board.home_in_charge()
        self.clock.advance(2)
        self.board.heard_from_home()
        assert self.board.switch(1, True) == "ok" and self.board.switch(3, True) == "ok"
        self.wire = FakeWire("127.0.0.1:7711")
        self.session = session_factory(self.board)(self.wire)

    def say(self, line: bytes) -> list[bytes]:
        """Send a line from the home; return what the board answered."""
        return say(self.session, self.wire, line)

    def welcome(self, heartbeat_s=5) -> None:
        self.say(b"WELCOME 1 %d" % heartbeat_s)
        assert self.session.state == ACTIVE
        self.wire.take()

    def lost(self) -> None:
        self.session.connection_lost(Failure(ConnectionDone()))


@pytest.fixture
def conn():
    return Connection()


@pytest.fixture
def active(conn):
    conn.welcome()
    return conn


def verbs(lines):
    return [line.split()[0] for line in lines]


# -- hello-sent


def test_hello_on_connection_with_the_present_states(conn):
    assert conn.wire.sent == [b"HELLO home-1-a 3 1 101"]
    assert conn.session.state == HELLO_SENT


def test_hello_reports_the_current_states():
    first = Connection()
    first.clock.advance(2)
    first.board.switch(2, True)
    wire = FakeWire()
    session_factory(first.board)(wire)
    assert wire.sent == [b"HELLO home-1-a 3 1 111"]


def test_welcome_makes_the_session_active_and_starts_the_meter(conn):
    answer = conn.say(b"WELCOME 1 5")
    assert conn.session.state == ACTIVE
    assert verbs(answer) == [b"MEAS"]
    assert conn.session.heartbeat.running


def test_welcome_with_another_protocol_version_is_an_error(conn):
    assert conn.say(b"WELCOME 3 5 home-1 0123456789abcdef") == [b"ERR version"]
    assert conn.wire.closed
    assert conn.session.state == CLOSED


def test_refused_is_logged_with_code_and_peer_and_closes(conn):
    with capturedLogs() as events:
        assert conn.say(b"REFUSED unknown") == []
    assert conn.wire.closed
    assert conn.session.state == CLOSED
    errors = [e for e in events if e["log_level"].name == "error"]
    assert len(errors) == 1
    assert errors[0]["code"] == "unknown" and errors[0]["peer"] == "127.0.0.1:7711"
    assert "{code}" in errors[0]["log_format"] and "{peer}" in errors[0]["log_format"]


def test_ping_is_answered_before_welcome(conn):
    assert conn.say(b"PING 3") == [b"PONG 3"]
    assert conn.session.state == HELLO_SENT


@pytest.mark.parametrize("line", [b"SET 1 1 1", b"PONG 1", b"HELLO x 1 1 0", b"ACK 1 1 1", b"NAK 1 busy", b"MEAS 5"])
def test_anything_else_before_welcome_is_a_state_error(conn, line):
    assert conn.say(line) == [b"ERR state"]
    assert conn.session.state == HELLO_SENT
    assert conn.board.states == (True, False, True)


def test_a_home_that_never_welcomes_is_dropped_after_failsafe_after_s(conn):
    conn.clock.advance(14.9)
    assert not conn.wire.aborted
    conn.clock.advance(0.1)
    assert conn.wire.aborted


# -- active


def test_set_switches_the_relay_and_acks(active):
    assert active.say(b"SET 7 2 1") == [b"ACK 7 2 1"]
    assert active.board.states == (True, True, True)


def test_set_on_a_relay_the_board_does_not_have_is_nak_relay(active):
    assert active.say(b"SET 8 4 1") == [b"NAK 8 relay"]


def test_set_within_min_interval_is_nak_busy_then_works(active):
    assert active.say(b"SET 1 2 1") == [b"ACK 1 2 1"]
    active.clock.advance(1)
    assert active.say(b"SET 2 2 0") == [b"NAK 2 busy"]
    assert active.board.states[1] is True
    active.clock.advance(1)
    assert active.say(b"SET 3 2 0") == [b"ACK 3 2 0"]
    assert active.board.states[1] is False


def test_set_to_the_current_state_is_acked(active):
    assert active.say(b"SET 4 1 1") == [b"ACK 4 1 1"]


def test_ping_pong(active):
    assert active.say(b"PING 65535") == [b"PONG 65535"]
    assert active.say(b"PONG 1") == []


def test_err_from_the_home_is_logged_not_answered(active):
    with capturedLogs() as events:
        assert active.say(b"ERR syntax") == []
    assert [e["code"] for e in events if e["log_level"].name == "warn"] == ["syntax"]
    assert active.session.state == ACTIVE


@pytest.mark.parametrize(
    "line", [b"HELLO x 1 1 0", b"ACK 1 1 1", b"NAK 1 busy", b"MEAS 5 6", b"WELCOME 1 5", b"REFUSED unknown"]
)
def test_messages_the_home_never_sends_are_state_errors(active, line):
    assert active.say(line) == [b"ERR state"]
    assert active.session.state == ACTIVE
    assert not active.wire.closed


@pytest.mark.parametrize(
    "line, code",
    [
        (b"SET x 1 1", b"field"),
        (b"SET 1 1", b"field"),
        (b"SET 1 9 1", b"field"),
        (b"JUMP 1", b"verb"),
        (b"", b"syntax"),
        (b"PING \x01", b"syntax"),
        (b"SET 1 1 \xff", b"syntax"),
    ],
)
def test_malformed_line_is_answered_err_code_and_the_link_stays_up(active, line, code):
    with capturedLogs() as events:
        assert active.say(line) == [b"ERR " + code]
    warning = [e for e in events if e["log_level"].name == "warn"]
    assert warning and warning[0]["peer"] == "127.0.0.1:7711" and warning[0]["detail"]
    assert not active.wire.closed and not active.wire.aborted
    assert active.say(b"PING 1") == [b"PONG 1"]


def test_malformed_line_before_welcome_is_answered_too(conn):
    assert conn.say(b"WELCOME one 5") == [b"ERR field"]
    assert conn.session.state == HELLO_SENT


# -- meter


def meas_lines(lines):
    return [[int(w) for w in line.split()[1:]] for line in lines if line.startswith(b"MEAS ")]


def test_meas_every_period_with_noise_around_the_load(conn):
    conn.say(b"WELCOME 1 600")  # no PING in the way
    conn.wire.take()
    conn.clock.advance(1.9)
    assert conn.wire.take() == []
    readings = []
    for _ in range(50):
        conn.clock.advance(2)
        sent = conn.wire.take()
        assert verbs(sent) == [b"MEAS"]
        readings += meas_lines(sent)
        conn.say(b"PONG 0")  # keep the home alive
    assert all(r[1] == 0 for r in readings), "relay 2 is off"
    assert all(1800 <= r[0] <= 2200 and 720 <= r[2] <= 880 for r in readings)
    assert 1980 <= sum(r[0] for r in readings) / len(readings) <= 2020
    assert len({r[0] for r in readings}) > 10


def test_meas_is_deterministic_for_a_seed():
    def run():
        conn = Connection()
        conn.welcome(heartbeat_s=600)
        for _ in range(5):
            conn.clock.advance(2)
        return conn.wire.take()

    first = run()
    assert len(first) == 5
    assert first == run()


def test_meas_follows_the_relays(active):
    active.clock.advance(2)  # relay 1's min_interval_s after the home switched it on
    active.wire.take()
    assert active.say(b"SET 1 1 0") == [b"ACK 1 1 0"]
    active.clock.advance(2)
    assert meas_lines(active.wire.take())[0][0] == 0


# -- liveness


def test_heartbeat_pings_and_aborts_a_silent_home(conn):
    conn.welcome(heartbeat_s=5)
    # Clock.advance runs a call that falls inside a long step at the step's
    # end, so walk in steps no longer than the heartbeat.
    conn.clock.advance(5)
    assert b"PING 1" in conn.wire.take()
    conn.clock.advance(5)
    assert b"PING 2" in conn.wire.take()
    conn.clock.advance(4.9)
    assert not conn.wire.aborted
    conn.clock.advance(0.1)
    assert conn.wire.aborted
    assert conn.session.state == CLOSED
    assert conn.board.in_failsafe, "the board went safe at the same moment"


def test_heartbeat_keeps_an_answering_home(active):
    for n in range(1, 20):
        active.clock.advance(5)
        assert b"PING %d" % n in active.wire.take()
        active.say(b"PONG %d" % n)
    assert not active.wire.aborted
    assert not active.board.in_failsafe


def test_every_line_even_invalid_keeps_the_board_out_of_failsafe(active):
    for _ in range(10):
        active.clock.advance(10)
        active.say(b"garbage")
    assert not active.board.in_failsafe
    assert not active.wire.aborted


def test_failsafe_while_connected_puts_relays_in_safe_state(active):
    # The home says nothing at all after its WELCOME.
    active.clock.advance(14.9)
    assert active.board.states == (True, False, True)
    active.clock.advance(0.1)
    assert active.board.states == (False, False, True)


def test_connection_lost_stops_heartbeat_and_meter_but_not_failsafe(active):
    active.lost()
    assert active.session.state == CLOSED
    assert not active.session.heartbeat.running
    # Only the board's failsafe timer is left.
    assert len(active.clock.getDelayedCalls()) == 1
    active.clock.advance(60)
    assert active.wire.take() == []
    assert active.board.states == (False, False, True)


def test_a_late_line_after_the_session_ended_is_not_answered_but_keeps_the_failsafe_away(active):
    # A wire that still delivers once the session ended (a late PONG).
    active.lost()
    active.clock.advance(10)
    assert active.say(b"PONG 1") == [] and active.say(b"SET 1 1 0") == []
    assert active.board.states == (True, False, True), "nothing is done"
    active.clock.advance(14.9)
    assert not active.board.in_failsafe, "heard at 10 s: the failsafe acts at 25 s"
    active.clock.advance(0.1)
    assert active.board.in_failsafe


def test_connection_lost_before_welcome_cancels_the_hello_timeout(conn):
    conn.lost()
    assert len(conn.clock.getDelayedCalls()) == 1
    conn.clock.advance(20)
    assert not conn.wire.aborted


# -- over a real LineLink and a StringTransport


def linked():
    conn = Connection()
    link = LineLinkFactory(home_actuator.MAX_LINE, session_factory(conn.board)).buildProtocol(None)
    transport = StringTransport()
    link.makeConnection(transport)
    return link, transport, conn.board, conn.clock


def test_line_link_sends_hello_and_handles_bytes_split_anywhere():
    link, transport, board, clock = linked()
    assert transport.value() == b"HELLO home-1-a 3 1 101\n"
    transport.clear()
    for byte in b"WELCOME 1 5\r\nSET 9 2 1\n":
        link.dataReceived(bytes([byte]))
    lines = transport.value().split(b"\n")
    assert lines[0].startswith(b"MEAS ") and lines[1] == b"ACK 9 2 1"
    assert board.states == (True, True, True)
    assert not transport.disconnecting


def test_line_too_long_is_answered_err_long_and_closed():
    link, transport, board, clock = linked()
    transport.clear()
    link.dataReceived(b"PING " + b"1" * 100 + b"\n")
    assert transport.value() == b"ERR long\n"
    assert transport.disconnecting


def test_heartbeat_death_aborts_the_transport():
    link, transport, board, clock = linked()
    link.dataReceived(b"WELCOME 1 5\n")
    for _ in range(3):
        clock.advance(5)
    assert transport.disconnecting
    link.connectionLost(Failure(ConnectionDone()))
    assert board.in_failsafe
    assert clock.getDelayedCalls() == [], "the board went safe; nothing else is left running"


def test_err_hello_from_the_home_brings_a_new_hello(active):
    # The home restarted or dropped a radio link: no disconnection was seen.
    with capturedLogs():
        answer = active.say(b"ERR hello")
    assert [line for line in answer if line.startswith(b"HELLO")] == [b"HELLO home-1-a 3 1 101"]
    assert active.session.state == HELLO_SENT
    # Its meter stopped until it is welcomed again.
    active.clock.advance(10)
    assert b"MEAS" not in b"".join(active.wire.take())
    active.welcome()
    assert active.session.state == ACTIVE


def test_after_the_failsafe_switched_relays_the_board_says_hello_again_when_the_home_returns(active):
    # The home falls silent long enough for the failsafe (15 s), and the
    # link outlives it: the software actuator's heartbeat gives up at that
    # same instant (its timeout is failsafe_after_s), so it is stopped here,
    # as on firmware that ends no link on silence.
    active.session.heartbeat.stop()
    with capturedLogs():
        active.clock.advance(2)
        active.say(b"PONG 1")  # last heard at t=2: failsafe at 17
        for _ in range(31):  # small steps: Clock runs due calls at the step's end
            active.clock.advance(0.5)
        assert active.board.states == (False, False, True)
        assert active.session.state == ACTIVE
        answer = active.say(b"PING 9")
    assert b"HELLO home-1-a 3 1 001" in answer
    assert active.session.state == HELLO_SENT


def test_a_heartbeat_that_would_trip_the_failsafe_is_reported(conn):
    with capturedLogs() as events:
        conn.say(b"WELCOME 1 8")
    assert any("would trip it" in formatEvent(e) for e in events if e["log_level"].name == "error")


# -- power-up and the cold-load pickup

COLD_10 = CONFIG.replace("cold_load_min_s = 0\ncold_load_max_s = 0", "cold_load_min_s = 10\ncold_load_max_s = 10")


def powered_up(config=COLD_10):
    """A board that has just powered up and connected to its home."""
    clock = Clock()
    board = Board.from_config(config_from_string(config), clock)
    board.start()
    wire = FakeWire("127.0.0.1:7711")
    return board, clock, wire, session_factory(board)(wire)


def test_a_board_powers_up_open_and_says_so():
    board, clock, wire, session = powered_up()
    assert wire.sent == [b"HELLO home-1-a 3 1 000"]


def test_a_zero_cold_load_window_closes_safe_on_relays_before_the_first_hello():
    board, clock, wire, session = powered_up(CONFIG.replace("min_interval_s = 2", "min_interval_s = 0"))
    assert wire.sent == [b"HELLO home-1-a 3 1 001"]
    assert not board.unreported_switch, "that HELLO told the home"


def test_a_welcome_before_the_delay_puts_the_home_in_charge_and_nothing_closes_on_its_own():
    board, clock, wire, session = powered_up()
    clock.advance(1)
    answer = say(session, wire, b"WELCOME 1 600")
    assert session.state == ACTIVE and verbs(answer) == [b"MEAS"]
    for _ in range(10):
        clock.advance(2)
        say(session, wire, b"PONG 1")
    assert board.states == (False, False, False)
    assert b"HELLO" not in b"".join(wire.sent)


def test_a_cold_load_switch_before_the_welcome_makes_the_board_say_hello_again():
    board, clock, wire, session = powered_up()
    # The home is slow to answer: the cold-load pickup closes relay 3 at 10 s.
    clock.advance(10)
    assert board.states == (False, False, True) and session.state == HELLO_SENT
    with capturedLogs() as events:
        answer = say(session, wire, b"WELCOME 1 5")
    # That WELCOME took 000: the board tells the true states before anything else.
    assert answer == [b"HELLO home-1-a 3 1 001"]
    assert session.state == HELLO_SENT
    assert any("saying HELLO again" in formatEvent(e) for e in events)
    answer = say(session, wire, b"WELCOME 1 5")
    assert session.state == ACTIVE and verbs(answer) == [b"MEAS"]
    assert say(session, wire, b"SET 1 3 0") == [b"NAK 1 busy"], "it closed less than min_interval_s ago"
    clock.advance(2)
    assert say(session, wire, b"SET 2 3 0") == [b"ACK 2 3 0"]


def test_a_set_that_arrives_after_a_cold_load_switch_on_a_live_link_is_not_obeyed_before_hello():
    # The home's WELCOME and its first SET were already on their way.
    board, clock, wire, session = powered_up()
    clock.advance(10)
    with capturedLogs():
        say(session, wire, b"WELCOME 1 5")
    assert say(session, wire, b"SET 1 1 1") == [b"ERR state"]
    assert board.states == (False, False, True)


def test_a_restarted_board_says_hello_open_whatever_it_had_before():
    conn = Connection()
    conn.welcome()
    assert conn.board.states == (True, False, True)
    conn.board.stop()
    conn.lost()
    # Power back: a new board on the same clock, a new connection.
    board = Board.from_config(config_from_string(COLD_10), conn.clock)
    board.start()
    wire = FakeWire()
    session = session_factory(board)(wire)
    assert wire.sent == [b"HELLO home-1-a 3 1 000"]
    say(session, wire, b"WELCOME 1 600")
    assert say(session, wire, b"SET 2 1 1") == [b"NAK 2 busy"], "power-up counts as a switch"
    conn.clock.advance(2)
    assert say(session, wire, b"SET 3 1 1") == [b"ACK 3 1 1"]
    for _ in range(30):
        conn.clock.advance(2)
        say(session, wire, b"PONG 1")
    assert board.states == (True, False, False), "the home is in charge: relay 3 stays open"
