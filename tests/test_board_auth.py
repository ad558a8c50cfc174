"""jeisson-board version 2: a real board and a real home proving a shared key
to each other, and what neither obeys: a rogue home, a replayed line, an
impostor board, bad input.  On a task.Clock, the two sessions paired in
memory; the scheme's own functions (``jeisson.wire.board_auth``) too."""

import hmac
import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent
from twisted.trial import unittest as trial

from jeisson.actuator.board import Board
from jeisson.actuator.config import config_from_string as actuator_config
from jeisson.actuator.home_link import ACTIVE as BOARD_ACTIVE
from jeisson.actuator.home_link import HELLO_SENT, ActuatorSession
from jeisson.config import ConfigError
from jeisson.home.board_link import BoardSession
from jeisson.home.config import config_from_string as home_config
from jeisson.home.core import Home
from jeisson.wire import board_auth
from jeisson.wire import home_actuator as ha
from tests.peers import BoardEnd, FakeWire, bare, board_key, board_key_file, handshake

HOME = """
[home]
id = home-1
secret = s
aggregator = tcp:127.0.0.1:7700
actuators = tcp:7711:interface=127.0.0.1
heartbeat_s = 5
command_timeout_s = 3
measure_period_s = 5

[actuator:a]
relays = 2
key = {key}

[load:heater]
actuator = a
relay = 1
rated_w = 2000

[load:fridge]
actuator = a
relay = 2
rated_w = 150
critical = yes

[store]
path = none
"""

BOARD = """
[actuator]
id = a
home = tcp:127.0.0.1:7711
key = {key}
failsafe_after_s = 15
measure_period_s = 2
seed = 1
cold_load_min_s = 0
cold_load_max_s = 0
[relay:1]
load_w = 2000
min_interval_s = 0
[relay:2]
load_w = 150
min_interval_s = 0
"""


def write_key(path, key: bytes, mode=0o600) -> str:
    path.write_text(key.hex() + "\n")
    os.chmod(path, mode)
    return str(path)


class Pair:
    """A real board (its ``ActuatorSession``) and a real home (its
    ``BoardSession``) on one clock, each line delivered at once; every line
    either way is kept in ``trace``.  ``board_key`` may differ from the
    home's (a rogue)."""

    def __init__(self, home_key=None, board_key_=None, clock=None):
        self.clock = clock or Clock()
        self.home = Home(home_config(HOME.format(key=home_key or board_key_file("a"))), self.clock)
        self.board = Board.from_config(actuator_config(BOARD.format(key=board_key_ or board_key_file("a"))),
                                       self.clock)
        self.board.start()
        self.trace: list[tuple[str, bytes]] = []
        self.connect()

    def connect(self):
        self.to_board = FakeWire("home", heard=lambda line: self._deliver("H", line, self.board_session))
        self.to_home = FakeWire("board", heard=lambda line: self._deliver("B", line, self.home_session))
        self.home_session = BoardSession(self.home, self.to_board)
        self.board_session = ActuatorSession(self.to_home, self.board)
        self.board_session.start()

    def _deliver(self, who, line, session):
        self.trace.append((who, line))
        if session is not None:
            session.line_received(line)


def relays(board: Board):
    return tuple(relay.on for relay in board.relays)


# ------------------------------------------------------------- the scheme


def test_hmac_sha256_is_rfc_4231_test_case_2():
    # What a firmware author checks their SHA-256 and HMAC against first.
    digest = hmac.digest(b"Jefe", b"what do ya want for nothing?", "sha256")
    assert digest.hex() == "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    assert board_auth.mac(b"Jefe", b"what do ya want for nothing?") == b"5bdcc146bf60754e"


def test_a_sealed_line_opens_once_and_only_in_its_direction():
    to_board, to_home = board_auth.session_keys(bytes(32), b"HELLO a 2 2 00 0123456789abcdef", "home-1",
                                                "fedcba9876543210")
    home = board_auth.Channel(to_board, to_home)
    board = board_auth.Channel(to_home, to_board)
    line = home.seal(b"SET 1 1 1")
    assert line.startswith(b"SET 1 1 1 1 ") and line.endswith(b"\n")
    assert board.open(line[:-1]) == b"SET 1 1 1"
    with pytest.raises(board_auth.AuthError, match="counter 1 not above 1"):
        board.open(line[:-1])
    with pytest.raises(board_auth.AuthError, match="wrong MAC"):
        home.open(line[:-1])  # reflected back at its sender
    forged = line[:-1].replace(b"SET 1 1 1", b"SET 1 1 0")
    with pytest.raises(board_auth.AuthError, match="wrong MAC"):
        board.open(forged)
    with pytest.raises(board_auth.AuthError, match="no MAC"):
        board.open(b"SET 1 1 1")


def test_a_firmware_nonce_never_repeats_across_boots_and_hellos():
    key = bytes(range(32))
    nonces = {board_auth.firmware_nonce(key, boot, count) for boot in range(20) for count in range(50)}
    assert len(nonces) == 1000
    assert all(ha.NONCE_PATTERN.match(n) for n in nonces)


@pytest.mark.parametrize(("text", "why"), [
    ("00" * 31 + "\n", "expected 64 hex digits"),
    ("00" * 33 + "\n", "expected 64 hex digits"),
    ("AB" * 32 + "\n", "lowercase hex"),
    ("zz" * 32 + "\n", "lowercase hex"),
])
def test_a_bad_key_file_names_the_file_and_what_is_wrong(tmp_path, text, why):
    path = tmp_path / "a.key"
    path.write_text(text)
    os.chmod(path, 0o600)
    with pytest.raises(ConfigError) as info:
        home_config(HOME.format(key=path), "home.ini")
    assert str(path) in str(info.value) and why in str(info.value) and "[actuator:a] key" in str(info.value)


def test_a_missing_key_file_and_a_missing_key_are_errors(tmp_path):
    with pytest.raises(ConfigError, match="cannot read board key file .*nothing.key"):
        actuator_config(BOARD.format(key=tmp_path / "nothing.key"), "board.ini")
    with pytest.raises(ConfigError, match=r"\[actuator:a\] key: missing"):
        home_config(HOME.replace("key = {key}\n", ""), "home.ini")
    with pytest.raises(ConfigError, match=r"\[actuator\] key: missing"):
        actuator_config(BOARD.replace("key = {key}\n", ""), "board.ini")


def test_a_key_file_is_relative_to_the_ini_and_others_reading_it_is_warned(tmp_path):
    (tmp_path / "boards").mkdir()
    write_key(tmp_path / "boards" / "a.key", board_key("a"), mode=0o644)
    ini = tmp_path / "home.ini"
    ini.write_text(HOME.format(key="boards/a.key"))
    from jeisson.home.config import read_config
    with capturedLogs() as events:
        config = read_config(str(ini))
    assert config.board_keys == {"a": board_key("a")}
    warnings = [formatEvent(e) for e in events if e["log_level"].name == "warn"]
    assert any("may be read by others (mode 0644)" in w and "chmod 600" in w for w in warnings)


def test_key_none_is_a_lab_board_and_says_so():
    with capturedLogs() as events:
        config = home_config(HOME.format(key="none"), "home.ini")
    assert config.board_keys == {"a": None}
    assert any("not authenticated" in formatEvent(e) for e in events if e["log_level"].name == "warn")


# ---------------------------------------------------------- the sessions


def test_an_honest_board_and_home_prove_the_key_and_every_line_after_is_sealed():
    pair = Pair()
    assert pair.home_session.state == "active" and pair.board_session.state == BOARD_ACTIVE
    verbs = [(who, line.split()[0]) for who, line in pair.trace]
    assert verbs[:3] == [("B", b"HELLO"), ("H", b"WELCOME"), ("B", b"AUTH")]
    assert pair.home.boards == {"a": pair.home_session}
    # The fridge (critical) and the heater go on: sealed SETs, obeyed.
    assert relays(pair.board) == (True, True)
    for _who, line in pair.trace[2:]:
        assert board_auth.looks_sealed(line), line
    pair.clock.advance(60)  # heartbeats and readings, all sealed, none refused
    assert pair.home_session.state == "active" and pair.board_session.state == BOARD_ACTIVE
    assert not [line for _, line in pair.trace if line == b"ERR auth"]


def test_a_rogue_home_without_the_key_gets_nothing_obeyed_and_the_board_says_err_auth(tmp_path):
    rogue = write_key(tmp_path / "rogue.key", os.urandom(32))
    with capturedLogs() as events:
        pair = Pair(home_key=rogue)
    # The board refused the rogue's WELCOME: no AUTH, nothing obeyed.
    assert pair.board_session.state == HELLO_SENT
    assert ("B", b"ERR auth") in pair.trace
    assert not any(line.startswith(b"AUTH") for _, line in pair.trace)
    assert pair.home.boards == {}
    # Whatever the rogue says, no relay moves, and it is no sign of life.
    for line in (b"SET 1 1 1", b"SET 1 1 1 1 0123456789abcdef", b"WELCOME 2 5", b"PING 3"):
        pair.board_session.line_received(line)
    assert relays(pair.board) == (False, False)
    pair.clock.advance(16)
    assert pair.board.in_failsafe
    warned = [formatEvent(e) for e in events if e["log_level"].name == "warn" and "proves nothing" in
              formatEvent(e)]
    assert len(warned) == 1, warned  # once a minute, counted


def test_a_replayed_set_is_refused_in_its_session_and_in_the_next(tmp_path):
    pair = Pair()
    sets = [line for who, line in pair.trace if who == "H" and line.startswith(b"SET ")]
    off = pair.home_session.command(1, False)
    assert relays(pair.board) == (False, True) and off.called
    pair.trace.clear()
    # The heater's "on" SET, captured and played again: refused, no relay moves.
    pair.board_session.line_received(sets[0])
    assert pair.trace == [("B", b"ERR auth")] and relays(pair.board) == (False, True)
    # A new session (the board said HELLO again): still refused.
    pair.board_session.line_received(b"ERR hello")
    assert pair.board_session.state == BOARD_ACTIVE
    pair.home_session.command(1, False)  # the home, in the new session, wants the heater off
    assert relays(pair.board) == (False, True)
    pair.trace.clear()
    pair.board_session.line_received(sets[0])
    assert pair.trace == [("B", b"ERR auth")] and relays(pair.board) == (False, True)


def test_an_impostor_hello_does_not_supersede_the_real_board(tmp_path):
    pair = Pair()
    real = pair.home_session
    impostor, wire = BoardSession(pair.home, FakeWire("198.51.100.9:4444")), None
    wire = impostor.link
    # It copies the real board's HELLO, but cannot answer the WELCOME.
    hello = next(line for who, line in pair.trace if who == "B" and line.startswith(b"HELLO"))
    impostor.line_received(hello)
    assert wire.sent[0].startswith(b"WELCOME 2 ")
    assert pair.home.boards["a"] is real and impostor.state == "proving"
    replayed_auth = next(line for who, line in pair.trace if who == "B" and line.startswith(b"AUTH"))
    impostor.line_received(replayed_auth)  # the real board's AUTH, for another nonce
    assert wire.sent[-1] == b"REFUSED auth" and wire.closed
    assert pair.home.boards["a"] is real and real.state == "active"
    # Nor on the real board's own link: a HELLO there is only an offer.
    before = relays(pair.board)
    real.line_received(b"HELLO a 2 2 00 00000000000000ff")
    real.line_received(b"AUTH 0 0000000000000000")
    assert real.state == "active" and pair.home.boards["a"] is real
    assert pair.home.loads["heater"].on == before[0]


def test_an_impostor_that_says_hello_with_the_key_of_another_board_is_refused(tmp_path):
    clock = Clock()
    home = Home(home_config(HOME.format(key=board_key_file("a"))), clock)
    session, wire = BoardSession(home, FakeWire()), None
    wire = session.link
    end = BoardEnd(board_key("b"))
    session.line_received(end.hello("a", "11")[:-1])
    with pytest.raises(board_auth.AuthError):
        end.welcomed(wire.sent[0])
    session.line_received(b"AUTH 0 " + board_auth.mac(board_key("b"), b"AUTH 0"))
    assert wire.sent[-1] == b"REFUSED auth" and home.boards == {}


def test_a_version_1_board_is_refused_where_the_home_holds_its_key():
    home = Home(home_config(HOME.format(key=board_key_file("a"))), Clock())
    session = BoardSession(home, FakeWire())
    session.line_received(b"HELLO a 2 1 00")
    assert session.link.sent == [b"REFUSED auth"] and session.link.closed


def test_wrong_key_refusals_are_logged_once_a_minute_counted():
    clock = Clock()
    home = Home(home_config(HOME.format(key=board_key_file("a"))), clock)
    with capturedLogs() as events:
        for _ in range(50):
            session = BoardSession(home, FakeWire())
            handshake_failed = BoardEnd(board_key("rogue"))
            session.line_received(handshake_failed.hello("a", "00")[:-1])
            session.line_received(b"AUTH 0 0123456789abcdef")
            clock.advance(1)
        clock.advance(20)
        session = BoardSession(home, FakeWire())
        session.line_received(BoardEnd(board_key("rogue")).hello("a", "00")[:-1])
        session.line_received(b"AUTH 0 0123456789abcdef")
    refusals = [formatEvent(e) for e in events if "did not prove its key" in formatEvent(e)]
    assert len(refusals) == 2, refusals
    assert "(50 refusals since the last report)" in refusals[1]


def test_a_home_restart_over_a_connectionless_link_asks_the_board_for_a_new_hello():
    # The board still seals its lines for a session the home no longer holds.
    pair = Pair()
    fresh = BoardSession(pair.home, FakeWire(connectionless=True))
    fresh.line_received(pair.board_session._channel.seal(b"MEAS 0 0")[:-1])
    assert fresh.link.sent == [b"ERR hello"]


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=100).map(lambda b: b.replace(b"\n", b"")), max_size=20), st.booleans())
def test_bad_input_never_crashes_either_side_and_moves_no_relay(lines, to_board):
    pair = Pair()
    before = relays(pair.board)
    target = pair.board_session if to_board else pair.home_session
    for line in lines:
        target.line_received(line)
        target.line_received(b"SET 9 1 0 " + line[:10])
    assert relays(pair.board) == before


def test_bare_strips_the_counter_and_mac_only():
    assert bare(b"SET 1 1 1 7 0123456789abcdef") == b"SET 1 1 1"
    assert bare(b"HELLO a 2 2 00 0123456789abcdef") == b"HELLO a 2 2 00 0123456789abcdef"
    assert bare(b"SET 1 1 1") == b"SET 1 1 1"
    end = handshake(BoardSession(Home(home_config(HOME.format(key=board_key_file("a"))), Clock()),
                                 FakeWire()), FakeWire(), "a", "00")
    assert end.channel is None  # without a key: version 1


def test_a_flood_of_plain_err_lines_is_logged_once_a_minute_on_both_sides():
    pair = Pair()
    with capturedLogs() as events:
        for _ in range(100):
            pair.board_session.line_received(b"ERR nonsense")
            pair.home_session.line_received(b"ERR nonsense")
            pair.clock.advance(0.1)
    warned = [formatEvent(e) for e in events if "nonsense" in formatEvent(e)]
    assert len(warned) == 2, warned
    assert all("unauthenticated" in w for w in warned)
    assert pair.board_session.state == BOARD_ACTIVE and pair.home_session.state == "active"


def keyed_home():
    clock = Clock()
    return Home(home_config(HOME.format(key=board_key_file("a"))), clock), clock


def test_a_second_proven_link_supersedes_the_first():
    home, _ = keyed_home()
    first, first_wire = BoardSession(home, FakeWire("192.0.2.1:1")), None
    first_wire = first.link
    handshake(first, first_wire, "a", "11", board_key("a"))
    assert home.boards == {"a": first}
    second = BoardSession(home, FakeWire("192.0.2.2:2"))
    end = handshake(second, second.link, "a", "11", board_key("a"))
    assert home.boards == {"a": second} and end.channel is not None
    assert bare(first_wire.sent[-1]) == b"ERR superseded" and first_wire.closed
    assert board_auth.looks_sealed(first_wire.sent[-1])


def test_a_board_that_never_proves_the_key_is_closed_by_the_hello_timeout():
    from jeisson.home.board_link import HELLO_TIMEOUT_S

    home, clock = keyed_home()
    session = BoardSession(home, FakeWire())
    session.line_received(BoardEnd(board_key("a")).hello("a", "11")[:-1])
    assert session.state == "proving"
    clock.advance(HELLO_TIMEOUT_S)
    assert session.state == "closed" and home.boards == {}
    assert session.link.sent[-1] == b"ERR state"


def test_the_same_board_saying_hello_again_and_proving_it_is_taken_afresh():
    home, clock = keyed_home()
    session = BoardSession(home, FakeWire())
    end = handshake(session, session.link, "a", "11", board_key("a"))
    pending = session.command(1, False)
    failures = []
    pending.addErrback(failures.append)
    # The board restarted where no disconnection shows: a new HELLO, proven.
    again = BoardEnd(board_key("a"), nonce="00000000000000aa")
    session.line_received(again.hello("a", "01")[:-1])
    assert home.loads["heater"].on is True and not failures, "nothing taken before the proof"
    session.line_received(again.welcomed(session.link.sent[-1])[:-1])
    assert failures and home.loads["heater"].on is False and home.boards == {"a": session}
    # The old session's lines are no longer taken; the new one's are.
    session.link.take()
    session.line_received(end.seal(b"MEAS 5 5\n")[:-1])
    assert session.link.take() == [b"ERR auth"]
    session.line_received(again.seal(b"MEAS 5 5\n")[:-1])
    assert session.link.take() == []
    assert home.loads["fridge"].measured_w == 5.0


# ------------------------------------------------- a rogue listener, on TCP


class RogueListenerTests(trial.TestCase):
    """The issue's attack on a real socket: while the home is down, a process
    listens on its board port; the real software actuator (its twistd
    service) connects to it.  The rogue says WELCOME, in version 1 and with
    a forged version 2 proof, then SET: the board obeys nothing, answers
    ERR auth, and goes to its safe states when its failsafe runs out."""

    def test_the_software_actuator_obeys_nothing_from_a_rogue_listener(self):
        from twisted.internet import defer, endpoints, protocol, reactor, task

        from jeisson.actuator import tap
        from tests.waiting import eventually, scratch_directory

        heard: list[bytes] = []

        class Rogue(protocol.Protocol):
            def connectionMade(self):
                # A line every 0.2 s: were any a sign of life, the failsafe
                # (2 s) would never run out.
                self.pings = task.LoopingCall(self.transport.write, b"PING 9\n")
                self.pings.start(0.2)

            def connectionLost(self, reason):
                self.pings.stop()

            def dataReceived(self, data):
                heard.extend(data.splitlines())
                if any(line.startswith(b"HELLO ") for line in data.splitlines()):
                    self.transport.write(b"WELCOME 1 2\nWELCOME 2 2 home-1 0123456789abcdef 0 0123456789abcdef\n"
                                         b"SET 1 1 1\nSET 2 1 1 1 0123456789abcdef\nPING 1\n")

        factory = protocol.Factory.forProtocol(Rogue)
        listening = []

        @defer.inlineCallbacks
        def run():
            port = yield endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(factory)
            listening.append(port)
            text = (f"[actuator]\nid = a\nhome = tcp:127.0.0.1:{port.getHost().port}\nkey = {board_key_file('a')}\n"
                    "failsafe_after_s = 2\ncold_load_min_s = 0\ncold_load_max_s = 0\n"
                    "[relay:1]\nload_w = 2000\nmin_interval_s = 0\n[relay:2]\nload_w = 150\nmin_interval_s = 0\n")
            path = os.path.join(scratch_directory(self), "board.ini")
            with open(path, "w") as f:
                f.write(text)
            service = tap.makeService({"config": path}, reactor)
            self.addCleanup(service.stopService)
            board = service.services[0].board
            service.startService()
            yield eventually(lambda: heard.count(b"ERR auth") >= 4, timeout=10)
            self.assertEqual(board.states, (False, False))
            self.assertFalse(any(line.startswith((b"AUTH", b"ACK", b"PONG", b"MEAS")) for line in heard), heard)
            # Nothing it heard was a sign of life: the failsafe runs out.
            yield eventually(lambda: board.in_failsafe, timeout=5)
            self.assertEqual(board.states, (False, False))

        d = run()
        d.addBoth(lambda result: [port.stopListening() for port in listening] and result)
        return d
