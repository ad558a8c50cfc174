"""Round latency over real sockets: ``python bench/round_latency.py --homes N``.

One aggregator process (the real ``twistd jeisson-aggregator``) and N
simulated homes in a few helper processes, each home on its own loopback
TCP connection and with its own board, joined to its home in memory through
the reactor: a ``FakeBoard`` of ``tests/peers.py`` answering at once, as
the field's boards are firmware, or
with ``--software-boards`` jeisson's software board (the real ``Board`` and
``ActuatorSession``).  A simulated home speaks the real protocol on both
links (the newest version both sides offer on its uplink, 2 today; with
its board, version 2, authenticated with the key ``jeisson.simulation``
gives the board, as every board by default: ``jeisson.wire.board_auth``'s
WELCOME, AUTH and a MAC on every line): on a
budget it keeps its most valuable loads that fit, switches off, waits for
its board's ``ACK`` of each, switches on, waits again, then sends its new
``FLEX`` and its ``COMMIT``.  With ``--real-homes``, each home is instead the real
``Home`` core with its ``UplinkSession`` and ``BoardSession``.

The aggregator's listener is configured for a bench whose homes all come
from 127.0.0.1: its limits per address (``max_connections_per_address``
and ``max_new_connections_per_address``) are 0, off.  The homes' link is
measured both ways in one run (``--links``), one after the other, each
with a floor of its own kind: plaintext (``[tls] plaintext = yes``,
loopback only), the baseline this bench has measured from the start; then
mutual TLS, the default path (``jeisson pki``'s credentials, a certificate
for each home, the revocation list checked; the floor bare Twisted's
``CertificateOptions`` with a client certificate required).

Events are added live through the aggregator's events file; for each, the
bench measures the **cycle**: the event's first round as the aggregator
logs it, from its start (the event's, on the aggregator's timer) to the
last commitment it counted, every home's switches acknowledged by its board
before.  Before each event, in the same run, a round of the **floor**: as
many bare Twisted connections (a server and helper processes of their own,
up from start to end), one line out to every connection and one line back;
so each cycle and its floor are measured in the same conditions, about a
second apart.  Also: the aggregator's memory per home (RSS with all homes
connected, less RSS before), and its CPU use while idle with all homes
connected.

The helpers carry hundreds of homes each, where each would have its own
board in the field: they log warnings and errors only, and take what they
built at start-up out of the garbage collector's way (``gc.freeze``).  Each
round's line reports when the homes saw their first and last ``BUDGET`` and
sent their first and last ``COMMIT``, the CPU the helpers spent per home,
and the CPU the aggregator spent, from just before the event's start to the
end of its first round.

The floor's server's memory per connection (its RSS with every
connection up and past its handshake, less its RSS before) is given beside
the aggregator's per home: what jeisson adds above a bare connection of
the same kind.

Last line: ``homes=N cycle_p50_ms=... cycle_p99_ms=... floor_p50_ms=...
ratio=... rss_per_home_kib=... floor_rss_per_conn_kib=... idle_cpu_pct=...
lost=...`` and the same fields prefixed ``tls_`` for the TLS link.
"""

import argparse
import gc
import importlib
import json
import os
import pathlib
import random
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

HERE = pathlib.Path(__file__).resolve()
BIN = pathlib.Path(sys.executable).parent


def utc(epoch: float) -> str:
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_listening(port: int, seconds: float) -> None:
    """Wait until something listens on ``port``, read from /proc: a probing
    connection would be a failed handshake at a TLS listener."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for line in pathlib.Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
                return
        time.sleep(0.05)
    raise SystemExit(f"nothing listens on port {port} after {seconds} s")


def rss_kib(pid: int) -> int:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise SystemExit(f"no VmRSS for {pid}")


def cpu_seconds(pid: int) -> float:
    """The process's CPU time so far, every thread's (numpy's BLAS has worker
    threads), to the nanosecond as the scheduler counts it; the clock ticks
    of /proc/PID/stat are 10 ms."""
    total = 0
    for task in pathlib.Path(f"/proc/{pid}/task").iterdir():
        try:
            total += int((task / "schedstat").read_text().split()[0])
        except (FileNotFoundError, ProcessLookupError):
            pass  # the thread ended meanwhile
    return total / 1e9


def percentile(values, q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]


def home_id(i: int) -> str:
    return f"h{i:05d}"


def loads_of(i: int, loads: int) -> list[tuple[int, int]]:
    rng = random.Random(i)
    return [(rng.randint(100, 5000), rng.randint(1, 10)) for _ in range(loads)]


# ------------------------------------------------------------ the helpers


class Tally:
    """What a helper reports: ready once every home is welcomed, then for
    each event the moments of its homes' first BUDGET and first COMMIT."""

    def __init__(self, count: int):
        self.count = count
        self.welcomed: set = set()
        self.budgets: dict[str, list] = {}  # event -> [time each BUDGET arrived]
        self.commits: dict[str, list] = {}  # event -> [time of each home's first COMMIT]
        self.committed: set = set()
        self.cpu_at: dict[str, float] = {}  # event -> this process's CPU time at its first BUDGET

    def welcome(self, home: str) -> None:
        self.welcomed.add(home)
        if len(self.welcomed) == self.count:
            # Everything built so far lives as long as the run: out of the
            # collector's way (one process here carries hundreds of homes,
            # whose heaps would be separate on real boards).
            gc.collect()
            gc.freeze()
            print(json.dumps({"ready": self.count}), flush=True)

    def budget(self, event: str) -> None:
        if event not in self.budgets:
            self.cpu_at[event] = time.process_time()
        self.budgets.setdefault(event, []).append(time.time())

    def commit(self, event: str, home: str) -> None:
        if (event, home) in self.committed:
            return
        self.committed.add((event, home))
        commits = self.commits.setdefault(event, [])
        commits.append(time.time())
        if len(commits) == self.count:
            arrived = self.budgets.get(event, [0.0])
            print(json.dumps({"event": event, "last": max(commits), "count": self.count,
                              "first_budget": min(arrived), "last_budget": max(arrived),
                              "first_commit": min(commits), "cpu": time.process_time() - self.cpu_at[event]}),
                  flush=True)


def board_pipes(reactor):
    """``jeisson.simulation``'s in-memory links, delivered by the reactor: a
    line waits for the reactor's next turn (not within the sender's call),
    as over a socket; one timer for all of them."""
    from jeisson.simulation import Network

    class BoardPipes(Network):
        def send(self, end, data) -> None:
            if not self.queue:
                reactor.callLater(0, self.deliver_queued)
            super().send(end, data)

        def deliver_queued(self) -> None:
            for _ in range(len(self.queue)):
                self.deliver()
            if self.queue:
                reactor.callLater(0, self.deliver_queued)

    return BoardPipes()


def quiet_logging(reactor) -> None:
    """Log warnings and errors only, to stderr; nothing once stopping.  One
    set lookup per event: Twisted's level filter walks the event's namespace,
    a microsecond on each of the boards' switches."""
    from twisted.logger import ILogObserver, LogLevel, globalLogBeginner, textFileLogObserver
    from zope.interface import provider

    shown = {LogLevel.warn, LogLevel.error, LogLevel.critical}
    to_stderr = textFileLogObserver(sys.stderr)

    @provider(ILogObserver)
    def observer(event) -> None:
        if event.get("log_level") in shown:
            to_stderr(event)

    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    # Stopped by the bench: the links' loss is no news.
    reactor.addSystemEventTrigger("before", "shutdown", shown.difference_update, {LogLevel.warn, LogLevel.error})


def run_reactor(reactor, first: int) -> None:
    profile_to = os.environ.get("JEISSON_PROFILE_HOMES")
    if profile_to:
        import cProfile

        cProfile.runctx("reactor.run()", globals(), {"reactor": reactor}, f"{profile_to}.{first}")
    else:
        reactor.run()


def start_in_batches(reactor, first: int, count: int, start) -> None:
    # In batches, so that the server's accept backlog never overflows.
    def batch(at: int) -> None:
        for i in range(at, min(at + 100, first + count)):
            start(i)
        if at + 100 < first + count:
            reactor.callLater(0.05, batch, at + 100)

    reactor.callWhenRunning(batch, first)


def board_ini(hid: str, loads: list[tuple[int, int]]) -> str:
    from jeisson.simulation import SimLoad, home_inis

    _, [board] = home_inis(hid, [SimLoad(rated, priority) for rated, priority in loads],
                           failsafe_after_s=600, board_measure_period_s=3600)
    return board


def uplink_endpoint(reactor, port: int, hid: str, pki_dir: str | None):
    """A home's endpoint to the aggregator: plain TCP, or with ``pki_dir``
    mutual TLS as a home speaks it (``jeisson.tls.client_endpoint``, the
    home's own certificate, the aggregator verified as ``localhost``)."""
    from twisted.internet import endpoints

    if pki_dir is None:
        return endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=60)
    from tls_memory import home_tls

    from jeisson import tls

    config, loaded = home_tls(pki_dir, hid)
    return tls.client_endpoint(reactor, f"tcp:127.0.0.1:{port}:timeout=60", config, loaded)


def peers():
    """``tests/peers.py``: the fake peers the tests play against jeisson's
    sessions, here over TCP and the board pipes.  Appended to the path, so
    that ``jeisson`` is still the one this interpreter would import."""
    root = str(HERE.parent.parent)
    if root not in sys.path:
        sys.path.append(root)
    # Imported by name: the tests are not type-checked, the bench is.
    return importlib.import_module("tests.peers")


def run_simulated_homes(port: int, first: int, count: int, loads: int, software_boards: bool = False,
                        pki_dir: str | None = None) -> None:
    """A helper process of *simulated* homes.  Each speaks the real protocol
    on its own TCP connection to the aggregator, and the real board protocol
    with its own board, in memory (the tests' ``FakeBoard``, answering at once
    as firmware does: no failsafe timer, meter or log line of its own; or with
    ``software_boards`` jeisson's software board: the real ``ActuatorSession``
    and ``Board``): on a budget it keeps its most valuable loads that fit (by
    priority, first fit), switches off, waits for every ``ACK``, switches
    on, waits for every ``ACK``, then sends its new ``FLEX`` and its
    ``COMMIT``, as a real home does.  What it leaves out is the home's own
    machinery (its constraints, its MILP choice, its Deferreds), which in
    the field runs on each home's own computer.  With ``pki_dir``, each
    home's uplink is mutual TLS, with its own certificate."""
    from twisted.internet import reactor

    from jeisson.actuator import config as actuator_config
    from jeisson.actuator.board import Board
    from jeisson.actuator.home_link import ActuatorSession
    from jeisson.transports.stream import LineLinkFactory
    from jeisson.wire import aggregator_home as wire
    from jeisson.wire import board_auth
    from jeisson.wire import home_actuator as board_wire

    tally = Tally(count)
    pipes = board_pipes(reactor)

    from_tests = peers()
    FakeBoard = from_tests.FakeBoard  # noqa: N806 (a class)
    FakeHome: Any = from_tests.FakeHome  # noqa: N806 (a class, from a module found at run time)

    class SimulatedHome(FakeHome):
        """The tests' ``FakeHome`` (its HELLO, its bids numbered, the
        protocol version WELCOME names) under a ``LineLink``, answering each
        budget as a home with a board does.  ``line_received`` is the
        bench's own: a test's home records every message with its time,
        which a thousand homes need not do."""

        version: int  # FakeHome's: the uplink's protocol version, as WELCOME named it

        def __init__(self, i: int, link):
            super().__init__(reactor, out=link)
            self.id = home_id(i)
            rated = loads_of(i, loads)
            self.table = [(f"{self.id}-l{k + 1}", float(w), p, k + 1) for k, (w, p) in enumerate(rated)]
            # Most valuable first: the order a budget is filled in.
            self.by_value = sorted(self.table, key=lambda load: -load[2])
            # Each load's offer, off and on: a bid is one of these per load.
            self.offers = [(wire.LoadOffer(load_id, w, p, "may", False, False, True),
                            wire.LoadOffer(load_id, w, p, "may", True, False, True))
                           for load_id, w, p, _ in self.table]
            self.on: list[bool] = []  # relay states, from the board's HELLO
            self.pending: set[int] = set()  # SET sequence numbers not yet acknowledged
            self.seq = 0
            self.queued: wire.Budget | wire.Release | None = None  # one that came while switching
            self.answering: wire.Budget | wire.Release | None = None
            self.then: Callable[[], None] | None = None  # what to do once every pending SET is acknowledged
            config = actuator_config.config_from_string(board_ini(self.id, rated), self.id)
            # The key this home shares with its board (board protocol
            # version 2, as every board by default): the WELCOME's offer
            # until the board's AUTH proves it, then the session's channel.
            self.board_key = config.key
            self.offer_to_board: board_auth.Offer | None = None
            self.channel: board_auth.Channel | None = None
            self.to_board, board_end = pipes.pair(f"mem:{self.id}-board", f"mem:{self.id}")
            self.to_board.session = self.BoardLink(self)
            if software_boards:
                board = Board.from_config(config, reactor)
                board.start()
                board_end.session = ActuatorSession(board_end, board)
            else:
                board_end.session = FakeBoard(config.id, [False] * len(config.relays), out=board_end,
                                              auto=True, key=config.key)
            board_end.session.start()
            self.hello(self.id, f"s-{self.id}", wire.PROTOCOL_VERSIONS)

        class BoardLink:
            def __init__(self, home):
                self.home = home

            def line_received(self, line: bytes) -> None:
                home = self.home
                if home.offer_to_board is not None and board_auth.verb(line) == b"AUTH":
                    board_auth.check_auth(home.offer_to_board, line)  # AuthError: the bench's bug, raised
                    home.channel, home.offer_to_board = home.offer_to_board.channel, None
                    return
                if home.channel is not None and not board_auth.is_plain(line):
                    line = home.channel.open(line)
                message = board_wire.parse_line(line)
                if isinstance(message, board_wire.Ack):
                    home.pending.discard(message.seq)
                    home.on[message.relay - 1] = message.on
                    if not home.pending and home.then is not None:
                        then, home.then = home.then, None
                        then()
                elif isinstance(message, board_wire.Hello):
                    home.on = list(message.states)
                    if home.board_key is None:
                        home.send_board(board_wire.Welcome(board_wire.UNAUTHENTICATED_VERSION, 30))
                    else:
                        home.channel = None
                        home.offer_to_board = board_auth.welcome(home.board_key, line, home.id, 30,
                                                                 board_auth.new_nonce())
                        home.to_board.send_line(home.offer_to_board.welcome)
                elif isinstance(message, board_wire.Ping):
                    home.send_board(board_wire.Pong(message.n))
                elif isinstance(message, board_wire.Nak):
                    raise SystemExit(f"{home.id}: the board refused a switch: {message}")

        def send_board(self, message) -> None:
            line = board_wire.serialize(message)
            self.to_board.send_line(line if self.channel is None else self.channel.seal(line[:-1]))

        def offer(self) -> None:
            """A new FLEX: each load as it is now."""
            self.flex(*(offer[on] for offer, on in zip(self.offers, self.on, strict=True)))

        def switch(self, relays: list[int], on: bool, then) -> None:
            if not relays:
                then()
                return
            self.then = then
            for relay in relays:
                self.seq += 1
                self.pending.add(self.seq)
                self.send_board(board_wire.Set(self.seq, relay, on))

        def line_received(self, line: bytes) -> None:
            message = wire.parse_line(line, self.version)
            if isinstance(message, (wire.Budget, wire.Release)):
                if isinstance(message, wire.Budget):
                    tally.budget(message.event)
                if self.answering is not None:
                    self.queued = message
                else:
                    self.answer(message)
            elif isinstance(message, wire.Welcome):
                self.version = message.version
                self.offer()
                tally.welcome(self.id)
            elif isinstance(message, wire.Ping):
                self.send(wire.Pong(message.n))

        def answer(self, message) -> None:
            self.answering = message
            room = message.budget_w if isinstance(message, wire.Budget) else float("inf")
            wanted = set()
            for _, w, _, relay in self.by_value:
                if w <= room:
                    wanted.add(relay)
                    room -= w
            offs = [relay for _, _, _, relay in self.table if self.on[relay - 1] and relay not in wanted]
            ons = [relay for _, _, _, relay in self.table if not self.on[relay - 1] and relay in wanted]
            # Off first, on once the offs are acknowledged: never above the budget.
            self.switch(offs, False, lambda: self.switch(ons, True, self.finish))

        def finish(self) -> None:
            """Every switch acknowledged: the new FLEX, then the COMMIT
            (naming the bid the budget answered)."""
            message, self.answering = self.answering, None
            if message is None:
                raise SystemExit(f"{self.id}: switches acknowledged with no budget to answer")
            answered = self.bid
            self.offer()
            on = tuple(load_id for load_id, _, _, relay in self.table if self.on[relay - 1])
            committed = sum(w for _, w, _, relay in self.table if self.on[relay - 1])
            self.send(wire.Commit(message.round, answered, committed, on))
            if isinstance(message, wire.Budget):
                tally.commit(message.event, self.id)
            if self.queued is not None:
                queued, self.queued = self.queued, None
                self.answer(queued)

        def connection_lost(self, reason) -> None:
            pass

        def line_too_long(self, error) -> None:
            raise SystemExit(f"{self.id}: a line from the aggregator is too long: {error}")

    def start(i: int) -> None:
        uplink_endpoint(reactor, port, home_id(i), pki_dir).connect(
            LineLinkFactory(wire.MAX_LINE, lambda link: SimulatedHome(i, link)))

    start_in_batches(reactor, first, count, start)
    quiet_logging(reactor)
    run_reactor(reactor, first)


def run_homes(port: int, first: int, count: int, loads: int, pki_dir: str | None = None) -> None:
    """A helper process of real homes: each its real ``Home`` core and
    ``UplinkSession`` on its own TCP connection, its board the real
    ``BoardSession``, ``ActuatorSession`` and ``Board`` in memory; with
    ``pki_dir``, over mutual TLS."""
    from twisted.internet import reactor

    from jeisson.actuator import config as actuator_config
    from jeisson.actuator.board import Board
    from jeisson.actuator.home_link import ActuatorSession
    from jeisson.home import config as home_config
    from jeisson.home.aggregator_link import UplinkSession
    from jeisson.home.board_link import BoardSession
    from jeisson.home.core import Home
    from jeisson.simulation import SimLoad, home_inis
    from jeisson.transports.stream import LineLinkFactory
    from jeisson.wire import aggregator_home as wire

    tally = Tally(count)
    pipes = board_pipes(reactor)

    class MeasuredUplink(UplinkSession):
        def _on_budget(self, budget):
            tally.budget(budget.event)
            super()._on_budget(budget)

        def send(self, message):
            super().send(message)
            if isinstance(message, wire.Commit) and self.home.budget is not None:
                tally.commit(self.home.budget.event, self.home.config.id)

        def _on_welcome(self, welcome):
            super()._on_welcome(welcome)
            tally.welcome(self.home.config.id)

    def start(i: int) -> None:
        hid = home_id(i)
        home_ini, board_inis = home_inis(
            hid, [SimLoad(rated, priority) for rated, priority in loads_of(i, loads)],
            aggregator=f"tcp:127.0.0.1:{port}", heartbeat_s=30, command_timeout_s=10, measure_period_s=3600,
            failsafe_after_s=600, board_measure_period_s=3600)
        home = Home(home_config.config_from_string(home_ini, hid), reactor)
        for text in board_inis:
            relays = Board.from_config(actuator_config.config_from_string(text, hid), reactor)
            relays.start()
            home_end, board_end = pipes.pair(f"mem:{relays.config.id}", f"mem:{hid}")
            home_end.session = BoardSession(home, home_end)
            board_end.session = ActuatorSession(board_end, relays)
            board_end.session.start()
        endpoint = uplink_endpoint(reactor, port, hid, pki_dir)
        endpoint.connect(LineLinkFactory(wire.MAX_LINE, lambda link: MeasuredUplink(home, link))).addErrback(
            lambda f: print(json.dumps({"error": f"{hid}: {f.getErrorMessage()}"}), flush=True))

    start_in_batches(reactor, first, count, start)
    quiet_logging(reactor)
    run_reactor(reactor, first)


def run_floor_server(port: int, connections: int, pki_dir: str | None = None) -> None:
    """The floor: once every connection is up, one line out to every
    connection and one line back, each time the bench asks (a line on
    standard input); each round's time on standard output.  With
    ``pki_dir``, over mutual TLS as bare Twisted sets it up
    (``CertificateOptions``: a client certificate required and verified)."""
    from twisted.internet import protocol, stdio
    from twisted.internet import reactor as _reactor
    from twisted.internet.protocol import connectionDone
    from twisted.protocols.basic import LineReceiver
    from twisted.python.failure import Failure

    reactor: Any = _reactor  # listenSSL: the reactor's, which its stubs leave out
    clients = []
    state = {"replies": 0, "t0": 0.0}

    class Echoed(LineReceiver):
        def connectionMade(self):  # noqa: N802 (Twisted)
            clients.append(self)
            if len(clients) == connections:
                print(json.dumps({"ready": connections}), flush=True)

        def lineReceived(self, line):  # noqa: N802 (Twisted)
            state["replies"] += 1
            if state["replies"] == connections:
                print(json.dumps({"floor_ms": (time.perf_counter() - state["t0"]) * 1e3}), flush=True)

    class Bench(LineReceiver):
        delimiter = b"\n"

        def lineReceived(self, line):  # noqa: N802 (Twisted)
            state["replies"] = 0
            state["t0"] = time.perf_counter()
            for client in clients:
                client.sendLine(b"PING {\"n\":1}")

        def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802 (Twisted)
            if reactor.running:
                reactor.stop()

    stdio.StandardIO(Bench())
    factory = protocol.ServerFactory()
    factory.protocol = Echoed
    if pki_dir is None:
        reactor.listenTCP(port, factory, backlog=4096, interface="127.0.0.1")
    else:
        from tls_memory import bare_server_options

        reactor.listenSSL(port, factory, bare_server_options(pki_dir), backlog=4096, interface="127.0.0.1")
    reactor.run()


def run_floor_clients(port: int, count: int, pki_dir: str | None = None) -> None:
    from twisted.internet import endpoints, protocol, reactor
    from twisted.internet.protocol import connectionDone
    from twisted.protocols.basic import LineReceiver
    from twisted.python.failure import Failure

    class Echo(LineReceiver):
        def lineReceived(self, line):  # noqa: N802 (Twisted)
            self.sendLine(b"PONG {\"n\":1}")

        def connectionLost(self, reason: Failure = connectionDone) -> None:  # noqa: N802 (Twisted)
            # The server is done: this helper is too (once, whichever
            # connection closes first).
            if not stopping:
                stopping.append(True)
                reactor.callLater(0, reactor.stop)

    stopping: list = []

    factory = protocol.Factory.forProtocol(Echo)
    options = None
    if pki_dir is not None:
        from tls_memory import bare_client_options

        # One client certificate for every connection: the floor is bare Twisted.
        options = bare_client_options(pki_dir, home_id(0))

    def connect(_: int) -> None:
        endpoint: Any = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port, timeout=60)
        if options is not None:
            endpoint = endpoints.wrapClientTLS(options, endpoint)
        endpoint.connect(factory)

    start_in_batches(reactor, 0, count, connect)
    reactor.run()


# ---------------------------------------------------------------- the bench


def spread(total: int, parts: int) -> list[tuple[int, int]]:
    size, extra = divmod(total, parts)
    out, at = [], 0
    for p in range(parts):
        n = size + (p < extra)
        if n:
            out.append((at, n))
        at += n
    return out


def stop(process, seconds: float = 30) -> None:
    """SIGTERM, then SIGKILL if it has not ended within ``seconds``."""
    process.terminate()
    try:
        process.wait(seconds)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def read_json_line(process, seconds: float) -> dict:
    """The helper's next JSON line, waiting at most ``seconds``."""
    deadline = time.monotonic() + seconds
    while True:
        left = deadline - time.monotonic()
        # readline() would block past the deadline: wait for data first.
        if left <= 0 or not select.select([process.stdout], [], [], left)[0]:
            raise TimeoutError(f"a helper said nothing within {seconds} s")
        line = process.stdout.readline()
        if not line:
            raise SystemExit(f"helper {process.args} ended: {process.poll()}")
        line = line.strip()
        if line.startswith("{"):
            return json.loads(line)


def read_log(work: pathlib.Path) -> str:
    # twistd rotates its log every megabyte: read every piece.
    return "".join(path.read_text() for path in sorted(work.glob("aggregator.log*"), reverse=True))


def round_took(work: pathlib.Path, event: str, seconds: float) -> float:
    """How long the first round of ``event`` took, as the aggregator logged
    it: from the round's start (the event's, on the aggregator's timer) to
    the last commitment it counted, in ms."""
    pattern = re.compile(rf"round \d+ event {event}: committed .* \(round took ([\d.]+) ms\)")
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        match = pattern.search(read_log(work))
        if match:
            return float(match.group(1))
        time.sleep(0.05)
    raise SystemExit(f"the aggregator logged no round of event {event} within {seconds} s")


class Floor:
    """The floor's server and clients, kept up through the run so that each
    event's cycle is preceded by a floor round in the same conditions."""

    def __init__(self, homes: int, procs: int, pki_dir: str | None = None):
        port = free_port()
        tls = ["--pki", pki_dir] if pki_dir is not None else []
        self.server = subprocess.Popen([sys.executable, str(HERE), "--floor-server", str(port), str(homes), *tls],
                                       stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.clients: list[subprocess.Popen[bytes]] = []
        try:
            wait_for_listening(port, 30)
            time.sleep(0.5)
            rss_before = rss_kib(self.server.pid)
            self.clients = [subprocess.Popen([sys.executable, str(HERE), "--floor-clients", str(port), str(n), *tls],
                                             stdout=subprocess.DEVNULL) for _, n in spread(homes, procs)]
            read_json_line(self.server, 300)  # every connection is up
            # Every handshake done (the first rounds), the server's memory per connection.
            for _ in range(3):
                self.round()
            time.sleep(1.0)
            self.rss_per_connection_kib = (rss_kib(self.server.pid) - rss_before) / homes
        except BaseException:
            self.stop()
            raise

    def round(self) -> float:
        stdin = self.server.stdin
        if stdin is None:
            raise SystemExit("the floor's server has no standard input")
        stdin.write("go\n")
        stdin.flush()
        return read_json_line(self.server, 60)["floor_ms"]

    def stop(self) -> None:
        processes: list[subprocess.Popen[Any]] = [self.server, *self.clients]
        for p in processes:
            p.kill()
            p.wait()



LINKS = ("plaintext", "tls")


def measure(args: argparse.Namespace, link: str) -> dict[str, Any]:
    """One aggregator and its homes on ``link`` (``plaintext`` or ``tls``),
    with a floor of the same kind: the cycles, the floors, the memory."""
    n = args.homes
    work = pathlib.Path(tempfile.mkdtemp(prefix=f"jeisson-latency-{link}-"))
    port = free_port()
    demand = sum(w for i in range(n) for w, _ in loads_of(i, args.loads))
    # Every home connects from 127.0.0.1: the limits per address (64 open,
    # 600 new a minute by default) are off.  The homes' link is mutual TLS
    # (each home its own certificate, as jeisson pki issues them: the
    # default path), or plaintext on loopback (the baseline).
    pki_dir: str | None = None
    if link == "tls":
        started = time.monotonic()
        pki_dir = str(work / "pki")
        from tls_memory import fleet_credentials

        fleet_credentials(pki_dir, [home_id(i) for i in range(n)])
        print(f"[{link}] credentials for {n} homes made in {time.monotonic() - started:.1f} s", flush=True)
        tls_section = "[tls]\nca = pki/ca.pem\ncert = pki/aggregator.pem\nkey = pki/aggregator.key\ncrl = pki/crl.pem\n"
    else:
        tls_section = "[tls]\nplaintext = yes\n"
    config = [f"[aggregator]\nlisten = tcp:{port}:interface=127.0.0.1:backlog=4096\nheartbeat_s = 30\n"
              "round_period_s = 3600\nround_timeout_s = 60\nconverge_s = 0\nevents_file = events.ini\n"
              "events_poll_s = 0.1\nseed = 1\nmax_connections_per_address = 0\n"
              "max_new_connections_per_address = 0\n" + tls_section]
    config += [f"[home:{home_id(i)}]\nsecret = s-{home_id(i)}\n" for i in range(n)]
    (work / "aggregator.ini").write_text("".join(config))
    (work / "events.ini").write_text("")
    profile = [f"--profile={work / 'aggregator.prof'}", "--profiler=cprofile", "--savestats"] if args.profile else []
    aggregator = subprocess.Popen(
        [str(BIN / "twistd"), "-n", "--pidfile=", "--logfile", str(work / "aggregator.log"), *profile,
         "jeisson-aggregator", "--config", str(work / "aggregator.ini")], cwd=work)
    helpers, floor = [], None
    try:
        floor = Floor(n, args.procs, pki_dir)
        # Warm up the floor's connections.
        for _ in range(3):
            floor.round()
        wait_for_listening(port, 60)
        time.sleep(1.0)
        rss_before = rss_kib(aggregator.pid)
        started = time.monotonic()
        kind = "--run-homes" if args.real_homes else "--run-simulated-homes"
        boards = ["--software-boards"] if args.software_boards else []
        tls = ["--pki", pki_dir] if pki_dir is not None else []
        helpers = [subprocess.Popen([sys.executable, str(HERE), kind, str(port), str(first), str(count),
                                     str(args.loads), *boards, *tls], stdout=subprocess.PIPE, text=True)
                   for first, count in spread(n, args.procs)]
        for helper in helpers:
            reply = read_json_line(helper, 600)
            if "ready" not in reply:
                raise SystemExit(f"a helper failed: {reply}")
        print(f"[{link}] {n} homes registered in {time.monotonic() - started:.1f} s", flush=True)
        time.sleep(3.0)
        rss_after = rss_kib(aggregator.pid)
        cpu0, wall0 = cpu_seconds(aggregator.pid), time.monotonic()
        time.sleep(10.0)
        idle_pct = 100 * (cpu_seconds(aggregator.pid) - cpu0) / (time.monotonic() - wall0)

        cycles, floor_ms, lost, incomplete = [], [], 0, 0
        events = []
        # Long enough for every home to commit before the event ends (the
        # simulated homes take about 1 s per thousand on this machine).
        length = 2.0 + 2.0 * n / 1000
        for k in range(args.rounds):
            floor_ms.append(floor.round())
            start = time.time() + 1.0
            event = f"trial-{k}"
            events.append(f"[event:{event}]\nlimit_kw = {0.6 * demand / 1000:.3f}\nstart = {utc(start)}\n"
                          f"end = {utc(start + length)}\n")
            (work / "events.ini").write_text("".join(events[-1:]))
            replies = []
            aggregator_cpu = cpu_seconds(aggregator.pid)
            try:
                for helper in helpers:
                    reply = read_json_line(helper, length + 30)
                    if reply.get("event") != event:
                        raise SystemExit(f"unexpected from a helper: {reply}")
                    replies.append(reply)
            except TimeoutError:
                # Some homes never committed in this event: the run says so.
                print(f"[{link}] round {k + 1}: not every home committed within the event", flush=True)
                incomplete += 1
                break
            took = round_took(work, event, 30)
            aggregator_cpu = cpu_seconds(aggregator.pid) - aggregator_cpu
            cycles.append(took)
            print(f"[{link}] round {k + 1}: floor {floor_ms[-1]:.1f} ms, cycle {took:.1f} ms (homes: first BUDGET "
                  f"after {(min(r['first_budget'] for r in replies) - start) * 1e3:.1f} ms, last BUDGET after "
                  f"{(max(r['last_budget'] for r in replies) - start) * 1e3:.1f} ms, first COMMIT sent after "
                  f"{(min(r['first_commit'] for r in replies) - start) * 1e3:.1f} ms, last after "
                  f"{(max(r['last'] for r in replies) - start) * 1e3:.1f} ms; CPU: helpers "
                  f"{sum(r['cpu'] for r in replies) * 1e6 / n:.0f} us per home, aggregator "
                  f"{aggregator_cpu * 1e3:.0f} ms)", flush=True)
            # After the event's end, and the homes' restoring, before the next.
            time.sleep(max(start + length + 0.5 + n / 2000 - time.time(), 0))
        if not cycles:
            raise SystemExit("no event in which every home committed: see the helpers' errors above"
                             + ("" if args.keep else " (--keep keeps the aggregator's log)"))
        log = read_log(work)
        over = log.count("OVER LIMIT")
        # A commitment that did not reach the aggregator within its round is
        # a late home in that round's summary line.
        lost = sum(int(m) for m in re.findall(r"homes, (\d+) of them late", log))
        floor_p50 = percentile(floor_ms, 0.5)
        print(f"[{link}] floor, {n} bare connections, one round before each event: p50 {floor_p50:.1f} ms, "
              f"p99 {percentile(floor_ms, 0.99):.1f} ms; its server's RSS {floor.rss_per_connection_kib:.1f} KiB "
              "per connection")
        print(f"[{link}] aggregator RSS {rss_before} KiB before the homes, {rss_after} KiB with them; rounds over "
              f"the limit: {over}; events in which not every home committed: {incomplete}", flush=True)
        return {"cycle_p50": percentile(cycles, 0.5), "cycle_p99": percentile(cycles, 0.99), "floor_p50": floor_p50,
                "per_home": (rss_after - rss_before) / n, "floor_per_connection": floor.rss_per_connection_kib,
                "idle_pct": idle_pct, "lost": lost}
    finally:
        # The homes first (else each would log the aggregator's loss), then
        # SIGTERM: twistd stops cleanly (and writes its profile).
        for process in [*helpers, aggregator]:
            stop(process)
        if floor is not None:
            floor.stop()
        if not args.keep and not args.profile:
            shutil.rmtree(work, ignore_errors=True)
        else:
            print(f"work directory kept: {work}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homes", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--procs", type=int, default=3, help="helper processes for the homes")
    parser.add_argument("--loads", type=int, default=8)
    parser.add_argument("--links", default=",".join(LINKS), help="the homes' links to measure, in turn, each "
                        "against a floor of its kind: " + ", ".join(LINKS) + " (default: both)")
    parser.add_argument("--real-homes", action="store_true", help="run each home's real core and sessions "
                        "(Home, UplinkSession, BoardSession) instead of a simulated home; its board is the same")
    parser.add_argument("--software-boards", action="store_true", help="give each simulated home jeisson's software "
                        "board (Board and ActuatorSession) instead of a simulated board")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (configs, the log)")
    parser.add_argument("--profile", action="store_true", help="profile the aggregator (cProfile, kept in the "
                        "work directory; implies --keep)")
    args = parser.parse_args()
    links = args.links.split(",")
    for link in links:
        if link not in LINKS:
            raise SystemExit(f"--links: unknown link {link!r}: one of {', '.join(LINKS)}")
    results = {link: measure(args, link) for link in links}
    fields = [f"homes={args.homes}"]
    for link, r in results.items():
        prefix = "" if link == "plaintext" else "tls_"
        fields += [f"{prefix}cycle_p50_ms={r['cycle_p50']:.1f}", f"{prefix}cycle_p99_ms={r['cycle_p99']:.1f}",
                   f"{prefix}floor_p50_ms={r['floor_p50']:.1f}", f"{prefix}ratio={r['cycle_p50'] / r['floor_p50']:.2f}",
                   f"{prefix}rss_per_home_kib={r['per_home']:.1f}",
                   f"{prefix}floor_rss_per_conn_kib={r['floor_per_connection']:.1f}",
                   f"{prefix}idle_cpu_pct={r['idle_pct']:.2f}", f"{prefix}lost={r['lost']}"]
    print(" ".join(fields))



def pki_argument() -> str | None:
    """A helper's ``--pki DIR``: its link is mutual TLS with the credentials in DIR."""
    if "--pki" in sys.argv:
        return sys.argv[sys.argv.index("--pki") + 1]
    return None


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] in ("--run-homes", "--run-simulated-homes"):
        if sys.argv[1] == "--run-homes":
            run_homes(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]), pki_dir=pki_argument())
        else:
            run_simulated_homes(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5]),
                                software_boards="--software-boards" in sys.argv[6:], pki_dir=pki_argument())
    elif len(sys.argv) > 1 and sys.argv[1] == "--floor-server":
        run_floor_server(int(sys.argv[2]), int(sys.argv[3]), pki_dir=pki_argument())
    elif len(sys.argv) > 1 and sys.argv[1] == "--floor-clients":
        run_floor_clients(int(sys.argv[2]), int(sys.argv[3]), pki_dir=pki_argument())
    else:
        main()
