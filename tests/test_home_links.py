"""The home's two kinds of link: its boards (jeisson.home.board_link) and its aggregator (jeisson.home.aggregator_link).

Sessions run over a fake wire that records what they send, or over a real
``LineLink`` on a ``StringTransport``; a ``task.Clock`` (or a
``MemoryReactorClock`` for the reconnecting service) is the home's clock.
"""

import attrs
import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.task import Clock
from twisted.internet.testing import MemoryReactorClock, StringTransport
from twisted.python.failure import Failure

from jeisson.backoff import FullJitter
from jeisson.home.aggregator_link import WELCOME_TIMEOUT_S, UplinkSession
from jeisson.home.board_link import HELLO_TIMEOUT_S, BoardSession
from jeisson.home.config import config_from_string
from jeisson.home.core import Home
from jeisson.home.tap import RETRY_AFTER_REFUSAL_S, board_factory, uplink_factory, uplink_service
from jeisson.wire import aggregator_home as dr
from tests.peers import FakeWire, connect_board, messages, say

CONFIG = """
[home]
id = home-1
secret = s3cret
aggregator = tcp:127.0.0.1:7700
actuators = tcp:7711:interface=127.0.0.1
heartbeat_s = 2
command_timeout_s = 3
measure_period_s = 5

[actuator:a]
key = none
relays = 3
[actuator:b]
key = none
relays = 2

[load:heater]
actuator = a
relay = 1
rated_w = 2000
priority = 30
min_on_s = 10
min_off_s = 10

[load:washer]
actuator = a
relay = 2
rated_w = 800
priority = 40

[load:fridge]
actuator = a
relay = 3
rated_w = 150
priority = 90
critical = yes

[load:ev]
actuator = b
relay = 1
rated_w = 3600
priority = 10
"""




# Every test's log, and a failure logged anywhere fails the test (tests/conftest.py).
pytestmark = pytest.mark.usefixtures("logs")


@pytest.fixture
def home():
    return Home(config_from_string(CONFIG), Clock())


@pytest.fixture
def board(home):
    """Board a, said HELLO with its loads on, as their owner wants them."""
    session, wire = connect_board(home)
    assert say(session, wire, b"HELLO a 3 1 111") == [b"WELCOME 1 2"]
    return session, wire


# -- board link: HELLO


def test_a_configured_board_is_welcomed_and_its_states_taken(board, home):
    session, wire = board
    assert session.state == "active"
    assert home.boards == {"a": session}
    assert [home.loads[n].on for n in ("heater", "washer", "fridge", "ev")] == [True, True, True, None]


@pytest.mark.parametrize(("hello", "code"), [
    (b"HELLO z 3 1 000", b"unknown"),
    (b"HELLO a 2 1 00", b"relays"),
    (b"HELLO a 4 1 0000", b"relays"),
    (b"HELLO a 3 3 000 0123456789abcdef", b"version"),
])
def test_a_board_that_does_not_fit_the_config_is_refused_and_closed(home, hello, code, logs):
    session, wire = connect_board(home)
    assert say(session, wire, hello) == [b"REFUSED " + code]
    assert wire.closed and session.state == "closed"
    assert home.boards == {}
    assert any(m.startswith("refused board at 192.0.2.10:40000: ") for m in messages(logs, "warn"))
    assert say(session, wire, b"PING 1") == []


def test_a_second_hello_for_the_same_board_supersedes_the_first_link(home, board):
    first, first_wire = board
    second, second_wire = connect_board(home, "192.0.2.11:40001")
    assert say(second, second_wire, b"HELLO a 3 1 111") == [b"WELCOME 1 2"]
    assert first_wire.take() == [b"ERR superseded"] and first_wire.closed and first.state == "closed"
    assert home.boards == {"a": second}
    assert home.loads["heater"].on is True
    home.set_desired("fridge", False)
    assert first_wire.take() == [] and second_wire.take() == [b"SET 1 3 0"]


def test_a_second_hello_of_another_board_on_the_same_link_is_a_state_error(board):
    home = board[0].home
    home.config.actuators["b"] = 1  # even a board the home knows
    assert say(*board, b"HELLO b 1 1 0") == [b"ERR state"]
    assert board[0].state == "active" and board[0].actuator == "a"


def test_the_same_board_saying_hello_again_restarts_with_its_true_states(board, home):
    # A board that rebooted, or whose failsafe switched relays, on a link
    # where no disconnection shows (serial, radio).
    session, wire = board
    assert {load.id: load.on for load in home.loads_of("a")}[next(iter(home.loads_of("a"))).id] is True
    answer = say(session, wire, b"HELLO a 3 1 000")
    assert answer[0] == b"WELCOME 1 2"
    assert session.state == "active"
    assert all(load.on is False for load in home.loads_of("a"))
    assert all(load.last_switch == home.clock.seconds() for load in home.loads_of("a"))


def test_a_board_refused_when_it_says_hello_again_is_lost_and_its_loads_count_at_rated_power(board, home):
    session, wire = board
    assert "a" in home.boards
    answer = say(session, wire, b"HELLO a 2 1 00")  # now with 2 relays: not the board the home knows
    assert answer == [b"REFUSED relays"] and wire.closed and session.state == "closed"
    assert "a" not in home.boards
    assert all(load.on is None for load in home.loads_of("a"))
    assert home.drawn_w() >= sum(load.config.rated_w for load in home.loads_of("a"))


def test_a_board_that_never_says_hello_is_closed(home, logs):
    session, wire = connect_board(home)
    home.clock.advance(HELLO_TIMEOUT_S - 0.001)
    assert not wire.closed
    home.clock.advance(0.001)
    assert wire.sent == [b"ERR state"] and wire.closed
    assert any("sent no HELLO" in m for m in messages(logs, "warn"))


@pytest.mark.parametrize(("line", "answer"), [
    # What a board sends when it believes it is welcomed: "say HELLO first".
    (b"MEAS 1 2 3", b"ERR hello"), (b"ACK 1 1 1", b"ERR hello"), (b"NAK 1 busy", b"ERR hello"),
    (b"PING 7", b"ERR hello"), (b"PONG 7", b"ERR hello"),
    # What only a home sends.
    (b"SET 1 1 1", b"ERR state"), (b"WELCOME 1 5", b"ERR state"),
])
def test_only_hello_is_taken_before_hello(home, line, answer):
    session, wire = connect_board(home)
    assert say(session, wire, line) == [answer]
    assert session.state == "hello" and not wire.closed
    assert say(session, wire, b"ERR busy") == [], "an error is never answered"
    assert say(session, wire, b"HELLO a 3 1 000")[0] == b"WELCOME 1 2"


# -- board link: the conversation


def test_ping_is_answered_with_pong(board):
    assert say(*board, b"PING 65535") == [b"PONG 65535"]
    assert say(*board, b"PONG 4") == []


@pytest.mark.parametrize(("line", "code"), [
    (b"", b"syntax"),
    (b"   ", b"syntax"),
    (b"\xffHELLO", b"syntax"),
    (b"PING\x07 1", b"syntax"),
    (b"JUMP 1", b"verb"),
    (b"ping 1", b"verb"),
    (b"PING", b"field"),
    (b"PING 65536", b"field"),
    (b"ACK 1 9 1", b"field"),
    (b"ACK 1 1 2", b"field"),
    (b"NAK 1 BUSY", b"field"),
    (b"MEAS", b"field"),
    (b"MEAS 1 2 3 4 5 6 7 8 9", b"field"),
    (b"MEAS -5", b"field"),
])
def test_a_malformed_line_is_an_error_and_the_link_stays_up(board, line, code, logs):
    session, wire = board
    assert say(session, wire, line) == [b"ERR " + code]
    assert session.state == "active" and not wire.closed and not wire.aborted
    assert say(session, wire, b"PING 1") == [b"PONG 1"]
    assert any("bad input" in m for m in messages(logs, "warn"))


def test_an_acknowledgement_for_no_outstanding_set_is_a_state_error(board, home):
    session, wire = board
    assert say(session, wire, b"ACK 9 1 0") == [b"ERR state"]
    assert say(session, wire, b"NAK 9 busy") == [b"ERR state"]
    home.set_desired("fridge", False)
    assert wire.take() == [b"SET 1 3 0"]
    assert say(session, wire, b"ACK 1 2 0") == [b"ERR state"]  # right seq, wrong relay
    assert say(session, wire, b"ACK 1 3 1") == [b"ERR state"]  # right seq, wrong state
    assert home.loads["fridge"].on is True
    assert say(session, wire, b"ACK 1 3 0") == []
    assert home.loads["fridge"].on is False
    assert say(session, wire, b"ACK 1 3 0") == [b"ERR state"]  # only once


def test_a_nak_leaves_the_load_as_it_was(board, home, logs):
    session, wire = board
    home.set_desired("fridge", False)
    assert wire.take() == [b"SET 1 3 0"]
    assert say(session, wire, b"NAK 1 relay") == []
    assert home.loads["fridge"].on is True
    assert any("refused SET 1 (relay 3 off): relay" in m for m in messages(logs, "warn"))
    assert session.state == "active"


def test_an_err_from_the_board_is_logged(board, logs):
    assert say(*board, b"ERR long") == []
    assert any("reported an error: long" in m for m in messages(logs, "warn"))


def test_meas_updates_the_measured_power(board, home):
    # Unread loads count at rated when on or unknown.
    assert home.measured_w() == 2000 + 800 + 150 + 3600
    assert say(*board, b"MEAS 1890 0 120") == []
    assert home.measured_w() == 1890.0 + 0 + 120 + 3600
    assert home.loads["washer"].measured_w == 0.0
    assert say(*board, b"MEAS 1950 0 120") == []
    assert home.measured_w() == 1950.0 + 0 + 120 + 3600


@pytest.mark.parametrize("line", [b"MEAS 1950", b"MEAS 1950 0", b"MEAS 1950 0 120 7"])
def test_meas_with_a_reading_count_other_than_the_relays_is_an_error_and_ignored(board, home, line, logs):
    session, wire = board
    say(session, wire, b"MEAS 1890 0 120")
    assert say(session, wire, line) == [b"ERR field"]
    assert home.measured_w() == 1890.0 + 0 + 120 + 3600
    assert session.state == "active" and not wire.closed
    assert any("readings" in m and "3 relays" in m for m in messages(logs, "warn"))


def test_a_lost_boards_readings_are_forgotten(board, home):
    say(*board, b"MEAS 1890 0 120")
    board[0].connection_lost(Failure(ConnectionDone()))
    assert home.measured_w() == 2000 + 800 + 150 + 3600


def test_the_home_pings_a_board_every_heartbeat_and_keeps_it_while_it_answers(board, home):
    session, wire = board
    for n in range(1, 11):
        home.clock.advance(2)
        assert wire.take() == [b"PING %d" % n]
        session.line_received(b"PONG %d" % n)
    assert session.state == "active" and not wire.aborted


def test_a_silent_board_is_aborted_after_three_heartbeats(board, home, logs):
    session, wire = board
    home.clock.pump([2, 2, 1.999])
    assert wire.take() == [b"PING 1", b"PING 2"] and not wire.aborted
    home.clock.advance(0.001)
    assert wire.aborted and session.state == "closed"
    assert home.boards == {} and home.loads["heater"].on is None
    assert any("silent for 6" in m for m in messages(logs, "warn"))


def test_any_line_counts_as_a_sign_of_life(board, home):
    session, wire = board
    for _ in range(5):
        home.clock.advance(4)
        session.line_received(b"MEAS 2000 0 150")
    assert not wire.aborted


# -- board link over a LineLink


def link_for(factory, peer_port):
    transport = StringTransport(peerAddress=IPv4Address("TCP", "192.0.2.20", peer_port))
    link = factory.buildProtocol(None)
    link.makeConnection(transport)
    return link, transport


def test_a_board_over_a_line_link_in_pieces(home):
    link, transport = link_for(board_factory(home), 5001)
    for byte in b"HELLO a 3 1 111\r\nPI":
        link.dataReceived(bytes([byte]))
    link.dataReceived(b"NG 3\nMEAS 1950 0 12")
    assert transport.value() == b"WELCOME 1 2\nPONG 3\n"
    assert home.boards["a"].peer == "192.0.2.20:5001"
    link.dataReceived(b"0\n")
    assert home.loads["fridge"].measured_w == 120.0


def test_an_over_long_line_closes_that_link_only(home, logs):
    factory = board_factory(home)
    link_a, transport_a = link_for(factory, 5001)
    link_b, transport_b = link_for(factory, 5002)
    link_a.dataReceived(b"HELLO a 3 1 101\n")
    link_b.dataReceived(b"HELLO b 2 1 10\n")
    transport_a.clear()
    transport_b.clear()
    link_a.dataReceived(b"MEAS " + b"1" * 100)
    assert transport_a.value() == b"ERR long\n" and transport_a.disconnecting
    assert any("192.0.2.20:5001" in m and "longer than 96 bytes" in m for m in messages(logs, "warn"))
    assert set(home.boards) == {"b"}
    assert home.loads["heater"].on is None
    link_b.dataReceived(b"PING 1\n")
    assert transport_b.value() == b"PONG 1\n" and not transport_b.disconnecting
    link_a.dataReceived(b"\nPING 2\n")
    assert transport_a.value() == b"ERR long\n"


def test_a_board_link_lost_makes_its_loads_unknown(home):
    link, transport = link_for(board_factory(home), 5001)
    link.dataReceived(b"HELLO a 3 1 101\n")
    link.connectionLost(Failure(ConnectionDone()))
    assert home.boards == {}
    assert [home.loads[n].on for n in ("heater", "washer", "fridge")] == [None, None, None]


# -- uplink


def welcome(heartbeat_s=30.0, version=1) -> bytes:
    return dr.serialize(dr.Welcome(version, "home-1", heartbeat_s))[:-1]


def parsed(lines):
    return [dr.parse_line(line) for line in lines]


@pytest.fixture
def uplink(home):
    wire = FakeWire("198.51.100.7:7700")
    session = UplinkSession(home, wire)
    return session, wire


@pytest.fixture
def active(uplink):
    session, wire = uplink
    session.line_received(welcome())
    wire.take()
    return session, wire


def test_hello_on_connection_with_id_secret_and_versions(uplink):
    session, wire = uplink
    assert parsed(wire.sent) == [dr.Hello("home-1", "s3cret", (1, 2))]
    assert session.state == "hello-sent"


def test_the_home_writes_its_flex_in_the_version_welcome_names(uplink):
    session, wire = uplink
    [line] = say(session, wire, welcome(version=2))
    assert session.version == 2
    assert line.startswith(b'FLEX {"bid":1,"opt_out":false,"loads":[["heater",2000.0,30,"must",true,false,true],')
    assert dr.parse_line(line, 2).loads[0] == dr.LoadOffer("heater", 2000.0, 30, "must", True, False, True)


def test_a_welcome_naming_a_version_the_home_did_not_offer_closes_the_link(uplink, home, logs):
    session, wire = uplink
    [error] = parsed(say(session, wire, welcome(version=3)))
    assert error.code == dr.VERSION and "version 3" in error.detail
    assert wire.closed and session.state == "closed" and home.uplink is None
    assert home.refused.startswith("version: WELCOME names version 3")
    assert any("198.51.100.7:7700" in m and "version 3" in m for m in messages(logs, "warn"))


def test_a_welcome_naming_another_home_is_an_error_and_closes_the_link(uplink, home, logs):
    session, wire = uplink
    [error] = parsed(say(session, wire, dr.serialize(dr.Welcome(1, "home-2", 30.0))[:-1]))
    assert error.code == dr.UNKNOWN_HOME and "home-2" in error.detail and "home-1" in error.detail
    assert wire.closed and session.state == "closed" and home.uplink is None
    assert home.refused.startswith("unknown-home: WELCOME names home home-2")
    assert home.bid == 0, "no bid was sent"
    assert any("198.51.100.7:7700" in m and "home-2" in m for m in messages(logs, "warn"))


def test_welcome_brings_a_flex_with_every_load(uplink, home, logs):
    session, wire = uplink
    [flex] = parsed(say(session, wire, welcome()))
    assert session.state == "active" and home.uplink is session
    assert flex == dr.Flex(1, (
        dr.LoadOffer("heater", 2000.0, 30, "must", True, False, True),
        dr.LoadOffer("washer", 800.0, 40, "must", True, False, True),
        dr.LoadOffer("fridge", 150.0, 90, "must", True, True, True),
        dr.LoadOffer("ev", 3600.0, 10, "must", True, False, True),
    ))
    assert any("registered with the aggregator at 198.51.100.7:7700 as home-1" in m for m in messages(logs, "info"))


@pytest.mark.parametrize("message", [dr.Budget(1, 1, "ev-1", 100.0, 600.0), dr.Release(1, "ev-1"), dr.Ack(1)])
def test_nothing_but_the_registration_is_taken_before_welcome(uplink, message):
    session, wire = uplink
    [error] = parsed(say(session, wire, dr.serialize(message)[:-1]))
    assert error.code == dr.STATE
    assert session.state == "hello-sent"


def test_measure_every_measure_period(active, home, board):
    session, wire = active
    say(*board, b"MEAS 1890 0 120")
    home.clock.advance(4.999)
    assert [m for m in parsed(wire.take()) if isinstance(m, dr.Measure)] == []
    home.clock.advance(0.001)
    measures = [m for m in parsed(wire.take()) if isinstance(m, dr.Measure)]
    assert measures == [dr.Measure(5.0, 1890.0 + 120 + 3600, (("heater", 1890.0), ("washer", 0.0),
                                                              ("fridge", 120.0)))]
    home.clock.advance(5)
    assert [m.at for m in parsed(wire.take()) if isinstance(m, dr.Measure)] == [10.0]


def test_refused_is_logged_and_closes_and_is_remembered(uplink, home, logs):
    session, wire = uplink
    refusal = dr.serialize(dr.Refused(dr.BAD_CREDENTIAL, "wrong secret for home-1"))[:-1]
    assert say(session, wire, refusal) == []
    assert wire.closed and session.state == "closed"
    assert home.refused == "bad-credential: wrong secret for home-1"
    errors = messages(logs, "error")
    assert len(errors) == 1 and "bad-credential" in errors[0] and "198.51.100.7:7700" in errors[0]
    assert say(session, wire, welcome()) == []


def test_a_welcome_on_a_later_link_forgets_the_refusal(uplink, home):
    session, wire = uplink
    session.line_received(dr.serialize(dr.Refused(dr.UNKNOWN_HOME, "who?"))[:-1])
    again = UplinkSession(home, FakeWire())
    again.line_received(welcome())
    assert home.refused is None


def test_error_from_the_aggregator_is_logged_and_the_link_stays(active, logs):
    session, wire = active
    assert say(session, wire, dr.serialize(dr.Error(dr.BAD_FIELD, "COMMIT: 'on' item"))[:-1]) == []
    assert session.state == "active" and not wire.closed
    assert any("reported an error: bad-field: COMMIT: 'on' item" in m for m in messages(logs, "warn"))


@pytest.mark.parametrize("fixture", ["uplink", "active"])
def test_ping_is_answered_with_pong_in_any_state(request, fixture):
    session, wire = request.getfixturevalue(fixture)
    assert parsed(say(session, wire, b'PING {"n":41}')) == [dr.Pong(41)]


@pytest.mark.parametrize(("line", "code"), [
    (b"", dr.SYNTAX), (b"BUDGET {", dr.SYNTAX), (b"BUDGET []", dr.SYNTAX), (b"\xff", dr.SYNTAX),
    (b'TELEPORT {"n":1}', dr.UNKNOWN_VERB), (b'PING {"n":-1}', dr.BAD_FIELD),
    (b'BUDGET {"round":1,"bid":1,"event":"e","budget_w":5,"end":"tomorrow"}', dr.BAD_FIELD),
    (b'WELCOME {"version":1,"home":"home-1","heartbeat_s":5}', dr.STATE),
    (b'COMMIT {"round":1,"bid":1,"committed_w":5,"on":[]}', dr.STATE),
])
def test_a_bad_line_from_the_aggregator_is_an_error_and_the_link_stays(active, line, code):
    session, wire = active
    [error] = parsed(say(session, wire, line))
    assert error.code == code
    assert session.state == "active" and not wire.closed


def test_flex_is_sent_again_only_when_the_offers_change(active, home, board):
    session, wire = active
    flexes = [m for m in parsed(wire.take()) if isinstance(m, dr.Flex)]
    assert [f.bid for f in flexes] == [2]  # board a connected: its loads are known now
    # The heater was on when its board said HELLO, not by the home's switch:
    # its minimum on time does not hold.
    assert {o.id: o.mode for o in flexes[0].loads} == {"heater": "may", "washer": "may", "fridge": "must",
                                                       "ev": "must"}

    def answer(until):
        while True:
            for line in board[1].take():
                board[0].line_received(line.replace(b"PING", b"PONG").replace(b"SET", b"ACK"))
            if home.clock.seconds() >= until - 1e-9:
                return
            home.clock.advance(min(0.5, until - home.clock.seconds()))

    # The home switches it off, and on once its minimum off time allows:
    # from then on, its minimum on time holds.
    home.set_desired("heater", False)
    answer(5.0)
    home.set_desired("heater", True)
    answer(10.0)
    assert home.loads["heater"].on and home.loads["heater"].last_switch == 10.0
    flexes = [m for m in parsed(wire.take()) if isinstance(m, dr.Flex)]
    assert flexes[-1].loads[0].mode == "must"
    home.set_desired("washer", True)  # as it was
    session.line_received(b'PING {"n":1}')
    answer(19.999)
    assert [m for m in parsed(wire.take()) if isinstance(m, dr.Flex)] == []
    answer(20.0)  # the heater's minimum on time is over: it may be shed now
    [flex] = [m for m in parsed(wire.take()) if isinstance(m, dr.Flex)]
    assert flex.bid == flexes[-1].bid + 1 and flex.loads[0].mode == "may"


def test_a_commit_is_not_sent_on_a_link_that_closed_meanwhile(active, home, board):
    session, wire = active
    bid = home.bid
    # The heater (held on) and the fridge must run, the ev may draw 3600 W: the washer goes.
    session.line_received(dr.serialize(dr.Budget(1, bid, "ev-1", 2150.0 + 3600, 600.0))[:-1])
    assert board[1].take() == [b"SET 1 2 0"]
    session.connection_lost(Failure(ConnectionDone()))
    wire.take()
    say(*board, b"ACK 1 2 0")
    assert wire.sent == []


def test_a_silent_aggregator_is_dropped_after_three_heartbeats(active, home, logs):
    session, wire = active
    home.clock.pump([30, 30, 29.999])
    assert not wire.aborted
    home.clock.advance(0.001)
    assert wire.aborted and session.state == "closed" and home.uplink is None
    assert any("silent for 90" in m for m in messages(logs, "warn"))


def test_an_over_long_line_from_the_aggregator_closes_the_uplink(home):
    link, transport = link_for(uplink_factory(home), 7700)
    transport.clear()
    link.dataReceived(b"PING " + b" " * dr.MAX_LINE)
    [error] = parsed(transport.value().splitlines())
    assert error.code == dr.TOO_LONG and transport.disconnecting


# -- the reconnecting service


def connect_uplink(reactor, attempts):
    """Complete the service's latest connection attempt over a StringTransport."""
    assert len(reactor.tcpClients) == attempts
    host, port, factory, _timeout, _bind = reactor.tcpClients[-1]
    assert (host, port) == ("127.0.0.1", 7700)
    transport = StringTransport()
    protocol = factory.buildProtocol(None)
    protocol.makeConnection(transport)
    return protocol, transport


# The uplink's retries as a lab sets them, each draw at the top of its
# window (the worst case, and deterministic): 2 s after the first failure,
# then 4, 8, ... up to 15.
LAB_RECONNECT = FullJitter(2.0, 15.0, random=lambda: 1.0)


@pytest.fixture
def service():
    reactor = MemoryReactorClock()
    home = Home(attrs.evolve(config_from_string(CONFIG), reconnect=LAB_RECONNECT), reactor)
    service = uplink_service(home, reactor)
    service.startService()
    yield reactor, home
    service.stopService()
    home.stop()


def refuse(protocol, transport):
    protocol.dataReceived(dr.serialize(dr.Refused(dr.BAD_CREDENTIAL, "wrong secret")))
    assert transport.disconnecting
    protocol.connectionLost(Failure(ConnectionDone()))


def welcome_then_lose(protocol):
    protocol.dataReceived(dr.serialize(dr.Welcome(1, "home-1", 30.0)))
    protocol.connectionLost(Failure(ConnectionDone()))


def test_the_service_waits_at_least_30_s_after_a_refusal(service):
    reactor, home = service
    protocol, transport = connect_uplink(reactor, 1)
    assert transport.value().startswith(b"HELLO ")
    refuse(protocol, transport)
    reactor.advance(29.999)
    assert len(reactor.tcpClients) == 1
    reactor.advance(RETRY_AFTER_REFUSAL_S - 29.999)
    assert len(reactor.tcpClients) == 2


def test_the_service_retries_within_2_s_after_a_plain_loss(service):
    reactor, home = service
    welcome_then_lose(connect_uplink(reactor, 1)[0])
    reactor.advance(2.0)
    protocol, transport = connect_uplink(reactor, 2)
    assert transport.value().startswith(b"HELLO ")


def fail_to_connect(reactor, attempts):
    """The service's latest connection attempt fails (the aggregator is down)."""
    assert len(reactor.tcpClients) == attempts
    _host, _port, factory, _timeout, _bind = reactor.tcpClients[-1]
    factory.clientConnectionFailed(None, Failure(ConnectionRefusedError("connection refused")))


def refuse_welcome(protocol, transport):
    """The home cannot take the aggregator's WELCOME: its version."""
    protocol.dataReceived(dr.serialize(dr.Welcome(3, "home-1", 30.0), 1))
    assert transport.disconnecting
    protocol.connectionLost(Failure(ConnectionDone()))


@pytest.mark.parametrize("refusal", [refuse, refuse_welcome])
def test_only_the_attempt_after_a_refusal_waits_30_s(service, refusal, logs):
    reactor, home = service
    refusal(*connect_uplink(reactor, 1))
    reactor.advance(RETRY_AFTER_REFUSAL_S - 0.001)
    assert len(reactor.tcpClients) == 1
    reactor.advance(0.001)
    # The aggregator is down now: an unrelated failure, the normal backoff
    # (the second failure in a row: within 4 s).
    fail_to_connect(reactor, 2)
    reactor.advance(LAB_RECONNECT.window(2) - 0.001)
    assert len(reactor.tcpClients) == 2
    reactor.advance(0.001)
    assert len(reactor.tcpClients) == 3
    assert home.refused is not None, "the status still says why we were refused"


def test_a_second_refusal_waits_30_s_again(service):
    reactor, home = service
    refuse(*connect_uplink(reactor, 1))
    reactor.advance(RETRY_AFTER_REFUSAL_S)
    refuse(*connect_uplink(reactor, 2))
    reactor.advance(RETRY_AFTER_REFUSAL_S - 1)
    assert len(reactor.tcpClients) == 2
    reactor.advance(1)
    connect_uplink(reactor, 3)


def test_a_welcome_after_a_refusal_makes_retries_short_again(service):
    reactor, home = service
    refuse(*connect_uplink(reactor, 1))
    reactor.advance(RETRY_AFTER_REFUSAL_S)
    welcome_then_lose(connect_uplink(reactor, 2)[0])
    assert home.refused is None
    reactor.advance(2.0)
    connect_uplink(reactor, 3)


def test_an_aggregator_that_never_answers_hello_is_dropped(uplink, home, logs):
    session, wire = uplink
    home.clock.advance(WELCOME_TIMEOUT_S - 0.1)
    assert not wire.aborted
    home.clock.advance(0.1)
    assert wire.aborted and session.state == "closed"
    assert any("did not answer HELLO" in m and "198.51.100.7:7700" in m for m in messages(logs, "warn"))


def test_a_welcome_cancels_the_hello_timeout(active, home):
    session, wire = active
    home.clock.advance(WELCOME_TIMEOUT_S * 2)
    assert not wire.aborted and session.state == "active"


def test_a_link_for_one_actuator_refuses_another(home):
    session = BoardSession(home, wire := FakeWire("xbee:0013A20040A1B2C3", connectionless=True, expected_id="b"))
    assert say(session, wire, b"HELLO a 3 1 000") == [b"REFUSED unknown"]
    assert wire.closed


def test_a_radio_link_has_no_hello_timeout(home):
    session = BoardSession(home, wire := FakeWire("xbee:0013A20040A1B2C3", connectionless=True, expected_id="a"))
    home.clock.advance(3600)
    assert not wire.closed and session.state == "hello"
    assert say(session, wire, b"HELLO a 3 1 000")[0] == b"WELCOME 1 2"


# -- the home's service


def test_the_home_service_warns_when_the_home_keeps_no_store(home, logs):
    from jeisson.home.tap import HomeService

    service = HomeService(home)
    service.startService()
    service.stopService()
    assert "home home-1: no store ([store] path = none): a restart forgets the budget in force, the owner's " \
           "settings and the loads' minimum-time clocks, and nothing is journaled" in messages(logs, "warn")


def test_the_home_service_says_where_the_home_remembers(tmp_path, logs):
    from jeisson.home.tap import HomeService
    from jeisson.store.sqlite import SqliteStore

    clock = Clock()
    store = SqliteStore(str(tmp_path / "home-1.sqlite"), clock)
    store.open()
    service = HomeService(Home(config_from_string(CONFIG), clock, store=store))
    service.startService()
    service.stopService()
    assert f"home home-1: remembering in {tmp_path / 'home-1.sqlite'}" in messages(logs, "info")
    assert not [m for m in messages(logs, "warn") if "not authenticated" not in m]  # its boards: key = none
