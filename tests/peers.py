"""Protocol-speaking fake peers, and the small rigs the tests build from them.

Each fake plays the far end of one link against a real jeisson session:

- ``FakeHome`` speaks jeisson-dr to an aggregator's ``HomeSession``;
- ``FakeAggregator`` speaks jeisson-dr to a home's ``UplinkSession``;
- ``FakeBoard`` speaks jeisson-board to a home's ``BoardSession``.

A fake is shaped like a session: lines come in through ``line_received``
and its own lines go out through ``out``, anything with ``send_line`` (a
``LineLink``, a ``jeisson.simulation`` pipe, or ``Into`` a session in
memory).  The tests pair a fake with a real session in memory: the session
writes to a ``FakeWire`` that records every line and hands it to the fake at
once (a ``FakeHome`` is that wire itself, so a test can wrap its
``send_line``), and the fake's lines go ``Into`` the session, in the same
call.  The
bench (``bench/round_latency.py``) runs the same fakes over TCP and its
in-memory board pipes.

The rigs: ``Net``, a real ``Aggregator`` on a ``task.Clock`` with fake
homes; ``Rig``, a real ``Home`` on a ``task.Clock`` with fake boards and a
fake aggregator, every line either way kept in ``Rig.trace`` with its time.
"""

import atexit
import hashlib
import os
import re
import shutil
import tempfile

from twisted.internet.defer import Deferred
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.task import Clock
from twisted.logger import formatEvent
from twisted.python.failure import Failure

from jeisson.wire import aggregator_home as dr
from jeisson.wire import board_auth
from jeisson.wire import home_actuator as board_wire


def messages(events, level: str) -> list[str]:
    """The text of the logged events at ``level`` (``"info"``, ``"warn"``, ...)."""
    return [formatEvent(e) for e in events if e["log_level"].name == level]


# ------------------------------------------------------------ board keys

_KEYS_DIR: str | None = None


def board_key(board_id: str) -> bytes:
    """The test key of board ``board_id``: the same in every test."""
    return hashlib.sha256(b"jeisson test board key " + board_id.encode()).digest()


def board_key_file(board_id: str) -> str:
    """A key file (mode 0600) holding ``board_key(board_id)``, in a folder
    of this test process's, removed at its exit."""
    global _KEYS_DIR
    if _KEYS_DIR is None:
        _KEYS_DIR = tempfile.mkdtemp(prefix="jeisson-test-keys-")
        atexit.register(shutil.rmtree, _KEYS_DIR, True)
    path = os.path.join(_KEYS_DIR, f"{board_id}.key")
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(board_key(board_id).hex() + "\n")
    return path


_ACTUATOR_SECTION = re.compile(r"^\[actuator:([^\]]+)\][ \t]*$", re.MULTILINE)


def keyed(config_text: str) -> str:
    """A home's config with ``key = <file>`` added to every
    ``[actuator:ID]`` section that names none (``board_key_file``): the
    secure default path, for tests about something else."""
    def add(match: re.Match) -> str:
        section_end = config_text.find("\n[", match.end())
        body = config_text[match.end():section_end if section_end >= 0 else len(config_text)]
        if re.search(r"^key\s*=", body, re.MULTILINE):
            return match.group(0)
        return f"{match.group(0)}\nkey = {board_key_file(match.group(1))}"
    return _ACTUATOR_SECTION.sub(add, config_text)


def bare(line: bytes) -> bytes:
    """A board line without its counter and MAC (version 2), if it has them."""
    if board_auth.looks_sealed(line):
        return line.rsplit(b" ", 2)[0]
    return line


class BoardEnd:
    """The board's side of a version 2 session, for a fake board or a test
    playing one against a real ``BoardSession``: its HELLO, the check of the
    home's WELCOME, and the lines sealed and opened."""

    def __init__(self, key: bytes | None, nonce: str = "0123456789abcdef"):
        self.key = key
        self.nonce = nonce
        self.hello_line = b""
        self.channel: board_auth.Channel | None = None

    def hello(self, board_id: str, states) -> bytes:
        """The HELLO line (with LF): version 2 with a key, else 1."""
        states = tuple(c == "1" for c in states) if isinstance(states, str) else tuple(states)
        version = board_wire.PROTOCOL_VERSION if self.key else board_wire.UNAUTHENTICATED_VERSION
        line = board_wire.serialize(board_wire.Hello(board_id, len(states), version, states,
                                                     self.nonce if self.key else None))
        self.hello_line = line[:-1]
        self.channel = None
        return line

    def welcomed(self, line: bytes) -> bytes | None:
        """A WELCOME from the home: the AUTH line to answer (with LF) if it
        proves the key (raises ``AuthError`` if not); None in version 1."""
        if self.key is None:
            return None
        welcome = board_wire.parse_line(board_auth.welcome_body(line))
        auth, self.channel = board_auth.accept_welcome(self.key, self.hello_line, line, welcome.home, welcome.nonce)
        return auth

    def open(self, line: bytes) -> bytes:
        """A line from the home, without its counter and MAC."""
        if self.channel is None or board_auth.is_plain(line):
            return line
        return self.channel.open(line)

    def seal(self, line: bytes) -> bytes:
        """A line (with LF) to the home, sealed in a session."""
        if self.channel is None:
            return line
        return self.channel.seal(line[:-1])


# ------------------------------------------------------------------ the wires


class FakeWire:
    """The wire interface of jeisson.link, recording what the session does.

    ``heard``, if given, is told every line sent (without its terminator), so
    a test can play the peer as the lines go out.  ``connectionless`` and
    ``expected_id`` play a serial line or a radio (see ``jeisson.link.Wire``).
    """

    def __init__(self, peer: str = "192.0.2.10:40000", heard=None, connectionless: bool = False,
                 expected_id: str | None = None):
        self.peer = peer
        self.connectionless = connectionless
        self.expected_id = expected_id
        self.heard = heard
        self.sent: list[bytes] = []
        self.closed = False
        self.aborted = False

    def send_line(self, data: bytes) -> None:
        assert data.endswith(b"\n") and b"\n" not in data[:-1]
        self.sent.append(data[:-1])
        if self.heard is not None:
            self.heard(data[:-1])

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def take(self) -> list[bytes]:
        sent, self.sent = self.sent, []
        return sent


class Into:
    """Where a fake's lines go in memory: each is the real session's next
    line, within the call that sends it.  ``heard``, if given, sees it first."""

    def __init__(self, session, heard=None):
        self.session = session
        self.heard = heard

    def send_line(self, data: bytes) -> None:
        assert data.endswith(b"\n") and b"\n" not in data[:-1]
        if self.heard is not None:
            self.heard(data[:-1])
        self.session.line_received(data[:-1])


def say(session, wire: FakeWire, line: bytes) -> list[bytes]:
    """A line from the peer to ``session``; what the session answered on ``wire``."""
    wire.take()
    session.line_received(line)
    return wire.take()


# ------------------------------------------------- a home, for an aggregator


class FakeHome:
    """A home speaking jeisson-dr to an aggregator.

    It records every message it is sent, with the time it came
    (``received``), in the protocol version the WELCOME named.  With
    ``comply`` set, it answers every BUDGET by committing exactly its budget
    that many seconds later.  ``say`` sends a message (or a raw line) and
    returns what the aggregator answered within that call; the answer is not
    kept in ``received``.  In memory (``Net``) it is also the wire of the
    aggregator's session: ``closed``, ``aborted`` and ``peer`` are that link's.
    """

    def __init__(self, clock, out=None, comply=None, secrets=None):
        self.clock = clock
        self.out = out  # where this home's lines go
        self.comply = comply
        self.secrets = secrets or {}
        self.version = 1  # until a WELCOME names the one agreed
        self.received: list[tuple[float, object]] = []
        self.loads: tuple = ()
        self.bid = 0
        self.session = None  # the aggregator's session, in memory
        # In memory the home is also the wire that session writes to.
        self.peer = "10.0.0.1:4000"
        self.connectionless = False
        self.expected_id = None
        self.closed = self.aborted = False

    # -- the wire interface, for a session in memory

    def send_line(self, data: bytes) -> None:
        assert data.endswith(b"\n") and b"\n" not in data[:-1]
        self.line_received(data[:-1])

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    # -- what the aggregator sends

    def line_received(self, line: bytes) -> None:
        message = dr.parse_line(line, self.version)
        self.received.append((self.clock.seconds(), message))
        if isinstance(message, dr.Welcome):
            self.version = message.version
        elif self.comply is not None and isinstance(message, dr.Budget):
            self.clock.callLater(self.comply, self.commit, message.round, message.budget_w)

    def connection_lost(self, reason) -> None:
        pass

    # -- the home's side

    def send(self, message) -> None:
        self.out.send_line(dr.serialize(message, self.version))

    def say(self, message) -> list:
        line = message if isinstance(message, bytes) else dr.serialize(message, self.version)[:-1]
        before = len(self.received)
        self.out.send_line(line + b"\n")
        answer = [m for _, m in self.received[before:]]
        del self.received[before:]
        return answer

    def hello(self, home_id, secret=None, versions=(1,)) -> list:
        self.id = home_id
        return self.say(dr.Hello(home_id, self.secrets.get(home_id, "?") if secret is None else secret, versions))

    def flex(self, *loads) -> list:
        self.bid += 1
        self.loads = loads
        return self.say(dr.Flex(self.bid, loads))

    def commit(self, round_number, watts, on=None) -> list:
        on = tuple(o.id for o in self.loads if o.on) if on is None else on
        return self.say(dr.Commit(round_number, self.bid, float(watts), on))

    def leave(self) -> None:
        self.session.connection_lost(Failure(ConnectionDone()))

    lost = leave

    def take(self) -> list:
        """What the aggregator sent since the last take, as messages."""
        taken = [m for _, m in self.received]
        self.received = []
        return taken

    def budgets(self) -> list[dr.Budget]:
        return [m for _, m in self.received if isinstance(m, dr.Budget)]

    @property
    def open(self) -> bool:
        return not (self.closed or self.aborted)


class Net:
    """A real ``Aggregator`` (``config_text``, extra keyword arguments for
    it) on a ``task.Clock``, and the fake homes connected to it."""

    def __init__(self, config_text, **options):
        from jeisson.aggregator.config import config_from_string
        from jeisson.aggregator.core import Aggregator

        self.clock = Clock()
        self.config = config_from_string(config_text, now=0)
        self.aggregator = Aggregator(self.config, self.clock, **options)
        self.aggregator.start()
        self._port = 4000

    def connect(self, comply=None) -> FakeHome:
        """A new link from a home that has not said HELLO yet."""
        from jeisson.aggregator.home_link import HomeSession

        self._port += 1
        home = FakeHome(self.clock, comply=comply,
                        secrets={home_id: entry.secret for home_id, entry in self.config.homes.items()})
        home.peer = f"10.0.0.1:{self._port}"
        home.session = HomeSession(self.aggregator, home)
        home.out = Into(home.session)
        return home

    def home(self, home_id, *loads, comply=None) -> FakeHome:
        """A home registered with its configured secret, and its bid of ``loads`` acknowledged."""
        home = self.connect(comply)
        assert home.hello(home_id) == [dr.Welcome(1, home_id, self.config.heartbeat_s)]
        if loads:
            assert home.flex(*loads) == [dr.Ack(home.bid)]
        return home

    registered = home

    def home_status(self, home_id) -> dict:
        return self.aggregator.snapshot()["homes"][home_id]

    def run_until(self, moment: float) -> None:
        """Advance to ``moment``, running each timer at its own time."""
        while True:
            due = [call.getTime() for call in self.clock.getDelayedCalls() if call.getTime() <= moment]
            if not due:
                break
            self.clock.advance(max(min(due) - self.clock.seconds(), 0))
        self.clock.advance(moment - self.clock.seconds())

    @property
    def summary(self):
        return self.aggregator.last_round


def load(load_id, rated_w, priority=1, mode="may", on=False, wanted=True) -> dr.LoadOffer:
    """One load of a FLEX."""
    return dr.LoadOffer(load_id, float(rated_w), priority, mode, on, mode == "must", wanted)


# ---------------------------------------------------------- a board, for a home


class FakeBoard:
    """A board speaking jeisson-board to a home: ``start`` says HELLO with
    its relays' ``states`` (a string of 0 and 1, or booleans).

    With ``auto``, it answers at once, as the field's firmware does: each
    SET with ACK (NAK ``relay`` for a relay it does not have), each PING
    with PONG.  Otherwise it records them (``unanswered``, ``pings``) and
    answers when told (``ack``, ``nak``, ``answer_pings``); a ``silent``
    board is one its rig never tells.  ``load_at(relay)`` names a relay's
    load; ``switched()`` is called after each relay switches.
    """

    def __init__(self, board_id: str, states, out=None, auto=False, silent=False, load_at=None, switched=None,
                 key: bytes | None = None):
        self.id = self.actuator = board_id
        self.end = BoardEnd(key)
        self.states = [c == "1" for c in states] if isinstance(states, str) else list(states)
        self.out = out  # where this board's lines go
        self.auto = auto
        self.silent = silent
        self.load_at = load_at
        self.switched = switched
        self.unanswered: list[board_wire.Set] = []
        self.pings: list[int] = []
        self.wire: FakeWire | None = None  # what the home's session writes to, in memory
        self.session = None  # that session

    def start(self) -> None:
        """HELLO: version 2 if the board has a key (``key``), else 1."""
        self.out.send_line(self.end.hello(self.id, self.states))

    def send(self, message) -> None:
        self.out.send_line(self.end.seal(board_wire.serialize(message)))

    def say(self, line: bytes) -> None:
        """A line as the board says it (sealed in a session)."""
        self.out.send_line(self.end.seal(line + b"\n"))

    def say_raw(self, line: bytes) -> None:
        """A line exactly as given: no counter, no MAC."""
        self.out.send_line(line + b"\n")

    # -- what the home sends

    def line_received(self, line: bytes) -> None:
        if board_auth.verb(line) == b"WELCOME" and self.end.key is not None:
            self.out.send_line(self.end.welcomed(line))
            return
        message = board_wire.parse_line(self.end.open(line))
        if isinstance(message, board_wire.Set):
            if not self.auto:
                self.unanswered.append(message)
            elif message.relay > len(self.states):
                self.send(board_wire.Nak(message.seq, board_wire.RELAY))
            else:
                self.states[message.relay - 1] = message.on
                self.send(board_wire.Ack(message.seq, message.relay, message.on))
        elif isinstance(message, board_wire.Ping):
            if self.auto:
                self.send(board_wire.Pong(message.n))
            else:
                self.pings.append(message.n)

    def connection_lost(self, reason) -> None:
        pass

    # -- answering when told

    def pending(self) -> list[tuple[str, bool]]:
        return [(self.load_at(s.relay), s.on) for s in self.unanswered]

    def _take(self, load):
        taken = [s for s in self.unanswered if load is None or self.load_at(s.relay) == load]
        self.unanswered = [s for s in self.unanswered if s not in taken]
        return taken

    def ack(self, load=None) -> int:
        """Switch and acknowledge the outstanding SETs (of one load, or all)."""
        taken = self._take(load)
        for s in taken:
            self.states[s.relay - 1] = s.on
            if self.switched is not None:
                self.switched()
            self.say(b"ACK %d %d %d" % (s.seq, s.relay, s.on))
        return len(taken)

    def nak(self, load, code="busy") -> None:
        for s in self._take(load):
            self.say(b"NAK %d %s" % (s.seq, code.encode()))

    def answer_pings(self) -> None:
        pings, self.pings = self.pings, []
        for n in pings:
            self.say(b"PONG %d" % n)

    def lose(self) -> None:
        self.session.connection_lost(Failure(ConnectionLost("the cable was cut")))


def connect_board(home, peer="192.0.2.10:40000"):
    """A link from a board to ``home``: its real ``BoardSession`` and the fake wire it writes to."""
    from jeisson.home.board_link import BoardSession

    wire = FakeWire(peer)
    return BoardSession(home, wire), wire


def handshake(session, wire: FakeWire, board_id: str, states, key: bytes | None = None) -> BoardEnd:
    """A board says HELLO to ``session`` (the home's) and, with ``key``,
    proves it: the ``BoardEnd`` to seal and open the session's lines."""
    end = BoardEnd(key)
    wire.take()
    session.line_received(end.hello(board_id, states)[:-1])
    answer = wire.take()
    if key is not None:
        assert answer and answer[0].startswith(b"WELCOME 2 "), answer
        session.line_received(end.welcomed(answer[0])[:-1])
    return end


# ------------------------------------------------------ an aggregator, for a home


EVENT_END = 600.0  # when a fake aggregator's BUDGET says the event ends, unless told


class FakeAggregator:
    """The aggregator at the other end of a home's uplink: it records every
    line the home sends (``lines``) and sends WELCOME, BUDGET and RELEASE."""

    def __init__(self, home_id: str, out=None):
        self.home_id = home_id
        self.out = out  # where this aggregator's lines go
        self.round = 0
        self.lines: list[bytes] = []
        self.wire: FakeWire | None = None  # what the home's session writes to, in memory
        self.session = None  # that session

    def line_received(self, line: bytes) -> None:
        self.lines.append(line)

    def connection_lost(self, reason) -> None:
        pass

    def received(self, kind=None) -> list:
        parsed = [dr.parse_line(line) for line in self.lines]
        return [m for m in parsed if kind is None or isinstance(m, kind)]

    def say(self, message) -> None:
        self.out.send_line(dr.serialize(message))

    def welcome(self, heartbeat_s=3600.0) -> None:
        self.say(dr.Welcome(1, self.home_id, heartbeat_s))

    @property
    def bid(self) -> int:
        return self.received(dr.Flex)[-1].bid

    def offers(self) -> dict[str, dr.LoadOffer]:
        return {offer.id: offer for offer in self.received(dr.Flex)[-1].loads}

    def commits(self) -> list[dr.Commit]:
        return self.received(dr.Commit)

    def budget(self, budget_w, end=EVENT_END, bid=None, event="ev-1") -> int:
        self.round += 1
        self.say(dr.Budget(self.round, self.bid if bid is None else bid, event, budget_w, end))
        return self.round

    def release(self, event="ev-1") -> int:
        self.round += 1
        self.say(dr.Release(self.round, event))
        return self.round

    def lose(self) -> None:
        self.session.connection_lost(Failure(ConnectionDone()))


class Rig:
    """A real ``Home`` (``config_text``) on a ``task.Clock``, its fake boards
    and its fake aggregator, each on a real session.  Every line either way
    is in ``trace`` as (time, sender, receiver, line); ``draws`` is what the
    relays draw after every switch."""

    def __init__(self, config_text):
        from jeisson.home.config import config_from_string
        from jeisson.home.core import Home

        self.clock = Clock()
        self.home = Home(config_from_string(keyed(config_text)), self.clock)
        self.boards: dict[str, FakeBoard] = {}
        self.trace: list[tuple[float, str, str, bytes]] = []
        self.aggregator: FakeAggregator | None = None
        self.draws: list[tuple[float, float]] = []

    def _traced(self, sender: str, receiver: str, then=None):
        def heard(line: bytes) -> None:
            self.trace.append((self.clock.seconds(), sender, receiver, line))
            if then is not None:
                then(line)
        return heard

    def load_at(self, actuator, relay) -> str:
        for entry in self.home.config.loads.values():
            if (entry.actuator, entry.relay) == (actuator, relay):
                return entry.id
        raise AssertionError(f"no load on relay {relay} of {actuator}")

    def board(self, actuator, states, silent=False) -> FakeBoard:
        """Board ``actuator`` connects and says HELLO with ``states``."""
        from jeisson.home.board_link import BoardSession

        board = FakeBoard(actuator, states, silent=silent, load_at=lambda relay: self.load_at(actuator, relay),
                          switched=lambda: self.draws.append((self.clock.seconds(), self.drawn_w())),
                          key=self.home.config.board_keys.get(actuator))
        board.wire = FakeWire(f"192.0.2.{len(self.boards) + 10}:40000",
                              self._traced("home", actuator, board.line_received))
        board.session = BoardSession(self.home, board.wire)
        board.out = Into(board.session, self._traced(actuator, "home"))
        self.boards[actuator] = board
        board.start()
        return board

    def connect_aggregator(self, welcome=True) -> FakeAggregator:
        """The aggregator's link comes up; with ``welcome``, it welcomes the home's HELLO."""
        from jeisson.home.aggregator_link import UplinkSession

        aggregator = FakeAggregator(self.home.config.id)
        aggregator.wire = FakeWire("198.51.100.7:7700", self._traced("home", "aggregator", aggregator.line_received))
        aggregator.session = UplinkSession(self.home, aggregator.wire)
        aggregator.out = Into(aggregator.session, self._traced("aggregator", "home"))
        if welcome:
            self.aggregator = aggregator
            aggregator.welcome()
        return aggregator

    def drawn_w(self) -> float:
        """What the relays that are really closed draw, at rated power."""
        return sum(self.home.config.loads[self.load_at(board.actuator, relay)].rated_w
                   for board in self.boards.values() if board.session.state != "closed"
                   for relay, on in enumerate(board.states, 1) if on)

    def settle(self) -> None:
        """Let every live board acknowledge everything, until the home is quiet."""
        while True:
            busy = [board for board in self.boards.values()
                    if not board.silent and board.session.state == "active" and (board.unanswered or board.pings)]
            if not busy:
                return
            for board in busy:
                board.answer_pings()
                board.ack()

    def run_until(self, moment: float) -> None:
        """Advance the clock to ``moment``, the live boards answering at each step."""
        while True:
            due = [call.getTime() for call in self.clock.getDelayedCalls() if call.getTime() <= moment]
            step = min(due) if due else moment
            self.clock.rightNow = max(self.clock.rightNow, step)
            self.clock.advance(0)
            self.settle()
            if not due:
                return

    def switches(self, since=0) -> list[tuple[float, str, bool]]:
        """Every SET the home sent, as (time, load, on)."""
        found = []
        for moment, sender, receiver, line in self.trace[since:]:
            if sender == "home" and line.startswith(b"SET "):
                message = board_wire.parse_line(bare(line))
                found.append((moment, self.load_at(receiver, message.relay), message.on))
        return found

    def events(self, since=0) -> list[tuple]:
        """SETs and ACKs by load, and COMMITs, in the order they crossed the wires."""
        found = []
        for _moment, sender, receiver, line in self.trace[since:]:
            verb = line.split()[0]
            if verb in (b"SET", b"ACK"):
                message = board_wire.parse_line(bare(line))
                board = receiver if sender == "home" else sender
                found.append((verb.decode(), self.load_at(board, message.relay), message.on))
            elif verb == b"COMMIT":
                found.append(("COMMIT",))
        return found


class HeldJobs:
    """A store executor (``SqliteStore(executor=...)``) that runs each job
    only when the test says: a commit held in flight, as on the writer
    thread of a slow disk (or an SD card)."""

    def __init__(self):
        self.waiting = []  # (role, job, deferred)

    def __call__(self, role, job):
        d = Deferred()
        self.waiting.append((role, job, d))
        return d

    def run_one(self):
        """Run the oldest job; its role (the writer or the reader)."""
        role, job, d = self.waiting.pop(0)
        try:
            result = job()
        except Exception:
            d.errback()
        else:
            d.callback(result)
        return role

    def run_all(self):
        while self.waiting:
            self.run_one()

    def fail_all(self, error: Exception):
        """Every job waiting fails with ``error``, as a disk that fails."""
        while self.waiting:
            _, _, d = self.waiting.pop(0)
            d.errback(error)
