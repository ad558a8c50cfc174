"""One home's link to the aggregator: registration, heartbeats and bad input.

Each home is a ``FakeHome`` (tests/peers.py): the fake wire (what the
aggregator sends it, and whether it closed or aborted the link) of a real
``HomeSession``; a few tests run
the real ``LineLink`` over a ``StringTransport``.  Time is a ``task.Clock``.
"""

import json

import pytest
from twisted.internet.address import IPv4Address
from twisted.internet.error import ConnectionDone
from twisted.internet.testing import StringTransport
from twisted.logger import capturedLogs, formatEvent
from twisted.python.failure import Failure

from jeisson.aggregator.home_link import HELLO_TIMEOUT_S
from jeisson.aggregator.tap import home_factory
from jeisson.wire import aggregator_home as wire
from tests.peers import Net

CONFIG = """
[aggregator]
listen = tcp:7700:interface=127.0.0.1
heartbeat_s = 5
[home:h1]
secret = one
[home:h2]
secret = two
"""
SECRETS = {"h1": "one", "h2": "two"}
LOAD = wire.LoadOffer("heater", 2000.0, 5, "may", True, False, True)


@pytest.fixture
def net():
    return Net(CONFIG)


def codes(messages):
    return [(m.verb, m.code) for m in messages]


def warnings(events):
    return [e for e in events if e["log_level"].name == "warn"]


# --------------------------------------------------------------- registration


def test_hello_is_welcomed_with_version_and_heartbeat(net):
    home = net.connect()
    assert home.hello("h1", versions=(3, 1, 2)) == [wire.Welcome(2, "h1", 5.0)]
    assert home.open
    assert net.home_status("h1")["connected"] is True
    assert net.home_status("h1")["peer"] == home.peer


@pytest.mark.parametrize(
    "home_id, secret, versions, code",
    [
        ("h9", "one", (1,), wire.UNKNOWN_HOME),
        ("h1", "two", (1,), wire.BAD_CREDENTIAL),
        ("h1", "", (1,), wire.BAD_CREDENTIAL),
        ("h1", "one", (3, 4), wire.VERSION),
    ],
)
def test_refused_hellos_are_answered_logged_and_closed(net, home_id, secret, versions, code):
    home = net.connect()
    with capturedLogs() as events:
        answer = home.hello(home_id, secret, versions)
    assert codes(answer) == [("REFUSED", code)]
    assert home.closed
    assert [(e["peer"], e["home"], e["code"]) for e in warnings(events)] == [(home.peer, home_id, code)]
    assert not any(h["connected"] for h in net.aggregator.snapshot()["homes"].values())
    # The refused session is finished: nothing more is read or sent.
    assert home.say(wire.Ping(1)) == []
    net.clock.advance(HELLO_TIMEOUT_S * 3)
    assert home.take() == []


def test_bad_credential_names_no_secret(net):
    home = net.connect()
    [refused] = home.hello("h1", "guess")
    assert "one" not in refused.detail and "guess" not in refused.detail


def test_a_second_connection_supersedes_the_first(net):
    first = net.registered("h1")
    first.say(wire.Flex(1, (LOAD,)))
    second = net.connect()
    assert second.hello("h1") == [wire.Welcome(1, "h1", 5.0)]
    assert codes(first.take()) == [("ERROR", wire.SUPERSEDED)]
    assert first.closed
    assert second.open
    assert net.home_status("h1")["peer"] == second.peer
    # The old link is deaf, and its late disconnection does not unregister the new one.
    assert first.say(wire.Flex(2, (LOAD,))) == []
    first.lost()
    assert net.home_status("h1")["connected"] is True
    assert second.say(wire.Flex(3, (LOAD,))) == [wire.Ack(3)]


def test_no_hello_within_ten_seconds_closes_the_link(net):
    home = net.connect()
    net.clock.advance(9.9)
    assert home.take() == [] and home.open
    with capturedLogs() as events:
        net.clock.advance(0.1)
    assert codes(home.take()) == [("ERROR", wire.TIMEOUT)]
    assert home.closed
    assert [e["peer"] for e in warnings(events)] == [home.peer]


def test_a_ping_before_hello_is_answered_but_does_not_postpone_the_hello_timeout(net):
    home = net.connect()
    net.clock.advance(9)
    assert home.say(wire.Ping(7)) == [wire.Pong(7)]
    net.clock.advance(1)
    assert home.closed


def test_hello_cancels_the_hello_timeout(net):
    home = net.registered("h1")
    net.clock.advance(HELLO_TIMEOUT_S + 1)
    home.say(wire.Pong(1))
    assert home.open


# -------------------------------------------------------------------- active


def test_flex_is_acked_with_its_bid_and_shown(net):
    home = net.registered("h1")
    assert home.say(wire.Flex(42, (LOAD,))) == [wire.Ack(42)]
    status = net.home_status("h1")
    assert status["level_w"] == 2000.0 and status["demand_w"] == 2000.0
    assert [load["id"] for load in status["loads"]] == ["heater"]


def test_a_version_2_flex_has_array_loads_and_no_ack(net):
    home = net.connect()
    assert home.hello("h1", versions=(1, 2)) == [wire.Welcome(2, "h1", 5.0)]
    line = wire.serialize(wire.Flex(42, (LOAD,)), 2)[:-1]
    assert b'"loads":[["heater",2000.0,5,"may",true,false,true]]' in line
    assert home.say(line) == []
    status = net.home_status("h1")
    assert status["level_w"] == 2000.0 and [load["id"] for load in status["loads"]] == ["heater"]


def test_a_version_1_flex_on_a_version_2_link_is_a_bad_field_naming_the_load(net):
    home = net.connect()
    home.hello("h1", versions=(2,))
    with capturedLogs() as events:
        answer = home.say(wire.serialize(wire.Flex(42, (LOAD,)), 1)[:-1])
    assert codes(answer) == [("ERROR", wire.BAD_FIELD)]
    assert "loads[0] must be an array" in answer[0].detail
    assert home.open
    assert any(home.peer in formatEvent(e) and "loads[0]" in formatEvent(e) for e in warnings(events))
    assert net.home_status("h1")["loads"] == []


def test_measure_is_recorded_silently(net):
    home = net.registered("h1")
    assert home.say(wire.Measure(12.5, 1234.0, (("heater", 1234.0),))) == []
    assert net.home_status("h1")["measured_w"] == 1234.0


def test_a_commit_for_a_round_never_run_is_a_state_error_and_the_link_stays(net):
    home = net.registered("h1")
    with capturedLogs() as events:
        [error] = home.say(wire.Commit(7, 1, 2000.0, ("heater",)))
    assert (error.code, "round 7" in error.detail) == (wire.STATE, True)
    [event] = warnings(events)
    assert (event["peer"], event["home"], event["code"]) == (home.peer, "h1", wire.STATE)
    assert home.open and net.home_status("h1")["connected"] is True
    assert home.say(wire.Ping(3)) == [wire.Pong(3)]


def test_an_error_from_a_home_is_logged_not_answered(net):
    home = net.registered("h1")
    with capturedLogs() as events:
        assert home.say(wire.Error("syntax", "your BUDGET was odd")) == []
    [event] = warnings(events)
    assert (event["peer"], event["home"], event["code"]) == (home.peer, "h1", "syntax")
    assert home.open


# ---------------------------------------------------------------- heartbeat


def test_pings_every_heartbeat_and_an_answering_home_stays(net):
    home = net.registered("h1")
    for n in range(1, 11):
        net.clock.advance(5)
        assert home.take() == [wire.Ping(n)]
        home.say(wire.Pong(n))
    assert home.open


def test_any_line_counts_as_a_sign_of_life(net):
    home = net.registered("h1")
    for _ in range(10):
        net.clock.advance(5)
        home.say(b"nonsense")
    assert home.open


def test_a_home_silent_for_three_heartbeats_is_dropped_and_counted_as_left(net):
    home = net.registered("h1")
    home.say(wire.Flex(1, (LOAD,)))
    net.clock.advance(5)
    net.clock.advance(5)
    assert home.take() == [wire.Ping(1), wire.Ping(2)]
    net.clock.advance(4.9)
    assert not home.aborted
    with capturedLogs() as events:
        net.clock.advance(0.1)
    assert home.aborted
    assert net.home_status("h1")["connected"] is False
    messages = [e["log_format"] for e in events]
    assert any("silent" in m for m in messages) and any("left" in m for m in messages)
    left = [e for e in events if "left" in e["log_format"]]
    assert left[0]["home"] == "h1" and left[0]["w"] == 2000.0, "counted at its last known power"
    # Nothing keeps running for the dead link.
    net.clock.advance(60)
    assert home.take() == []


# ----------------------------------------------------------------- bad input

BUDGET_FROM_A_HOME = wire.Budget(1, 1, "peak", 100.0, 0.0)


@pytest.mark.parametrize(
    "line, code",
    [
        (b"garbage", wire.UNKNOWN_VERB),
        (b"", wire.SYNTAX),
        (b"\xff\xfe PING", wire.SYNTAX),
        (b"FLEX {", wire.SYNTAX),
        (b"FLEX []", wire.SYNTAX),
        (b"FLEX", wire.SYNTAX),
        (b'FLEX {"bid": -1, "loads": []}', wire.BAD_FIELD),
        (b'FLEX {"bid": 1, "loads": [{"id": "x"}]}', wire.BAD_FIELD),
        (b'COMMIT {"round": 1, "bid": 1, "committed_w": 1e99, "on": []}', wire.BAD_FIELD),
        (wire.serialize(BUDGET_FROM_A_HOME)[:-1], wire.STATE),
        (wire.serialize(wire.Welcome(1, "h1", 5.0))[:-1], wire.STATE),
        (wire.serialize(wire.Ack(1))[:-1], wire.STATE),
        (wire.serialize(wire.Hello("h1", "one", (1,)))[:-1], wire.STATE),
    ],
)
def test_bad_input_from_a_registered_home_is_an_error_and_the_link_stays(net, line, code):
    home = net.registered("h1")
    other = net.registered("h2")
    with capturedLogs() as events:
        assert codes(home.say(line)) == [("ERROR", code)]
    [event] = warnings(events)
    assert (event["peer"], event["home"], event["code"]) == (home.peer, "h1", code)
    assert home.open
    assert home.say(wire.Flex(5, (LOAD,))) == [wire.Ack(5)]
    assert other.say(wire.Flex(6, (LOAD,))) == [wire.Ack(6)]
    assert net.home_status("h1")["connected"] and net.home_status("h2")["connected"]


@pytest.mark.parametrize(
    "message",
    [wire.Flex(1, (LOAD,)), wire.Commit(1, 1, 0.0, ()), wire.Measure(0.0, 1.0, ()), BUDGET_FROM_A_HOME, wire.Pong(1)],
)
def test_anything_but_hello_before_registration_is_a_state_error(net, message):
    home = net.connect()
    answer = home.say(message)
    if isinstance(message, wire.Pong):
        assert answer == []
    else:
        assert codes(answer) == [("ERROR", wire.STATE)]
    assert home.open
    assert home.hello("h1") == [wire.Welcome(1, "h1", 5.0)]


def test_bad_input_before_hello_is_answered_too(net):
    home = net.connect()
    assert codes(home.say(b"HELLO {}")) == [("ERROR", wire.BAD_FIELD)]
    assert codes(home.say(b"hello")) == [("ERROR", wire.UNKNOWN_VERB)]
    assert home.open


# ------------------------------------------------- over LineLink and bytes


def linked(net, port):
    link = home_factory(net.aggregator).buildProtocol(None)
    transport = StringTransport(peerAddress=IPv4Address("TCP", "10.0.0.2", port))
    link.makeConnection(transport)
    return link, transport


def lines(transport) -> list:
    data = transport.value()
    transport.clear()
    return [wire.parse_line(line) for line in data.split(b"\n")[:-1]]


def hello_bytes(home_id):
    return wire.serialize(wire.Hello(home_id, SECRETS[home_id], (1,)))


def test_line_link_carries_a_session_split_anywhere(net):
    link, transport = linked(net, 5001)
    data = hello_bytes("h1").replace(b"\n", b"\r\n") + wire.serialize(wire.Flex(9, (LOAD,)))
    for i in range(len(data)):
        link.dataReceived(data[i : i + 1])
    assert lines(transport) == [wire.Welcome(1, "h1", 5.0), wire.Ack(9)]
    assert net.home_status("h1")["peer"] == "10.0.0.2:5001"
    assert not transport.disconnecting


def test_line_link_refusal_closes_the_transport(net):
    link, transport = linked(net, 5001)
    link.dataReceived(wire.serialize(wire.Hello("h1", "wrong", (1,))) + wire.serialize(wire.Ping(1)))
    assert lines(transport) == [], "a failed authentication is answered after a delay (jeisson.limits)"
    net.clock.advance(1.0)
    assert codes(lines(transport)) == [("REFUSED", wire.BAD_CREDENTIAL)]
    assert transport.disconnecting


def test_an_over_long_line_closes_only_that_link_and_is_logged(net):
    link1, transport1 = linked(net, 5001)
    link2, transport2 = linked(net, 5002)
    link1.dataReceived(hello_bytes("h1"))
    link2.dataReceived(hello_bytes("h2"))
    lines(transport1), lines(transport2)
    flood = b"FLEX " + json.dumps({"bid": 1, "pad": "x" * wire.MAX_LINE}).encode()
    with capturedLogs() as events:
        for start in range(0, len(flood), 4096):  # no newline ever comes
            link1.dataReceived(flood[start : start + 4096])
    assert codes(lines(transport1)) == [("ERROR", wire.TOO_LONG)]
    assert transport1.disconnecting
    assert any(e.get("peer") == "10.0.0.2:5001" and "closing" in e["log_format"] for e in warnings(events))
    assert net.home_status("h1")["connected"] is False
    # The other home is untouched.
    link2.dataReceived(wire.serialize(wire.Flex(4, (LOAD,))))
    assert lines(transport2) == [wire.Ack(4)]
    assert not transport2.disconnecting
    assert net.home_status("h2")["connected"] is True
    # Whatever the closed link still delivers is dropped.
    link1.dataReceived(wire.serialize(wire.Ping(1)))
    assert transport1.value() == b""


def test_a_line_of_exactly_max_line_is_accepted(net):
    link, transport = linked(net, 5001)
    link.dataReceived(hello_bytes("h1"))
    lines(transport)
    line = b'ERROR {"code": "x", "detail": "padded with JSON whitespace"}'
    line = line[:-1] + b" " * (wire.MAX_LINE - len(line)) + line[-1:]
    assert len(line) == wire.MAX_LINE
    link.dataReceived(line + b"\n")
    assert transport.value() == b""
    assert not transport.disconnecting


def test_heartbeat_death_aborts_the_transport(net):
    link, transport = linked(net, 5001)
    link.dataReceived(hello_bytes("h1"))
    for _ in range(3):
        net.clock.advance(5)
    assert transport.disconnecting
    link.connectionLost(Failure(ConnectionDone()))
    assert net.home_status("h1")["connected"] is False


# ------------------------------------------------- registering, with a store


def test_a_link_superseded_or_lost_while_registering_is_never_welcomed(tmp_path):
    from tests.test_aggregator_memory import StoredNet
    from tests.test_aggregator_restart import HeldJobs

    held = HeldJobs()
    net = StoredNet(CONFIG, tmp_path / "aggregator.sqlite", executor=held)
    first = net.connect()
    assert first.hello("h1", "one") == []
    second = net.connect()
    # The home came back before its first link's registration was on disk.
    assert codes(second.hello("h1", "one")) == []
    assert codes(first.take()) == [("ERROR", wire.SUPERSEDED)] and first.closed
    lost = net.connect()
    assert lost.hello("h2", "two") == []
    lost.leave()
    held.run_all()
    assert first.take() == [] and lost.take() == []
    assert second.take() == [wire.Welcome(1, "h1", 5.0)]
    assert net.home_status("h1")["connected"] and not net.home_status("h2")["connected"]
