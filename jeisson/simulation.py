"""The whole system in one process: real sessions over in-memory links.

An aggregator, its homes and their actuator boards run their real cores and
their real per-link sessions (``HomeSession``, ``UplinkSession``,
``BoardSession``, ``ActuatorSession``) on one ``SimClock``; only the
sockets are replaced, by ``Network``: every line waits in a queue until the
simulation delivers it.  That makes whole negotiations of thousands of homes
run in seconds and exactly reproducibly, and it lets a test (or the
researcher's own script) deliver lines late, out of order across links, or
twice, cut links, and kill and restart every part.

Each simulated *process* (the aggregator, each home, each board) sees the
clock through a ``ProcessClock`` of its own, so that it can die as a
``kill -9`` or a power cut kills it: every timer it set is dropped at once,
nothing it would have done on the way out happens, and its peers hear only
what the operating system or the wire would tell them.

- ``aggregator_down()`` / ``aggregator_up()`` (``restart_aggregator()``):
  the aggregator killed; each home hears its link lost (the kernel closes
  the sockets of a killed process) and reconnects with its own backoff, as
  ``ClientService`` does in ``jeisson.home.tap``; a new ``Aggregator`` on
  the same store resumes.
- ``kill_home(h)`` / ``start_home(h)`` (``restart_home(h)``): the home
  killed, its boards hear their links lost, its relays stay as they are; a
  new ``Home`` on the same store resumes, and its boards connect to it.
- ``power_blip(board)``: the board loses power, its relays open at that
  instant (a coil without power releases) and its link goes silent (no
  connection is closed: the home finds out by its heartbeat or a command's
  timeout); after the outage a new ``Board`` powers up on the same clock
  (relays open, power-up a switch for ``min_interval_s``, the cold-load
  delay) and connects to its home.
- ``block_uplink(h)`` / ``unblock_uplink(h)``: the home cannot reach the
  aggregator (its connection attempts fail), to keep one home from coming
  back.

Stores are real SQLite files (``SqliteStore``, ``threaded=False``), one per
aggregator and per home that keeps one, in ``store_dir`` (a temporary
folder by default, removed by ``close()``).  A restart opens a *new* store
object on the same file, so it reads back only what was committed: whatever
the killed process had queued and not committed is lost, as it is to a
``kill -9``.  The files are written with ``synchronous=OFF``: a killed
process loses nothing the operating system was handed, so the durability a
power cut would need is not what is simulated here (and it spares the
disk).

``physical_draw()`` (and ``feeder_draws()``) is the truth the limit is about:
the power of every relay closed on the simulated boards now, whatever the
homes or the aggregator believe; ``switches`` is every relay switch of the
run, in order, with its board, home and power, to follow it over time.

``random_fleet`` builds ini files for a random but realistic fleet; the
quality benchmark and the safety property tests both run on it.
"""

import atexit
import hashlib
import heapq
import itertools
import os
import random
import shutil
import tempfile
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np
from twisted.internet.base import DelayedCall
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from jeisson.actuator import config as actuator_config
from jeisson.actuator.board import HOME, Board
from jeisson.actuator.home_link import ActuatorSession
from jeisson.aggregator import config as aggregator_config
from jeisson.aggregator.core import Aggregator
from jeisson.aggregator.home_link import HomeSession
from jeisson.aggregator.listeners import AggregatorListener
from jeisson.aggregator.round import RoundSummary
from jeisson.home import config as home_config
from jeisson.home.aggregator_link import UplinkSession
from jeisson.home.board_link import BoardSession
from jeisson.home.core import Home
from jeisson.home.listeners import HomeListener
from jeisson.link import CLOSED, Session
from jeisson.store.sqlite import SqliteStore

# A home's uplink retries as jeisson.home.tap's ClientService does, with
# full jitter (jeisson.backoff); the simulated homes' ini says these (a
# lab's: the default window, 120 s, spreads 1,000 homes after an outage).
UPLINK_BACKOFF = {"base_s": 0.5, "cap_s": 15.0}
RETRY_AFTER_REFUSAL_S = 30.0


@implementer(IReactorTime)
class SimClock:
    """An ``IReactorTime`` on a heap, for thousands of timers.

    ``task.Clock`` sorts all its calls on every ``callLater`` and ``reset``;
    with a heartbeat per link reset on every line, that is quadratic at a
    thousand homes.  Here a reset to an earlier time pushes a new heap entry
    and the old one is skipped when it surfaces; a reset to a later time is
    applied when the call surfaces, as Twisted's reactors do.  Calls run at
    exactly their time.
    """

    def __init__(self, now: float = 0.0):
        self.now = now
        self._heap: list[tuple[float, int, DelayedCall]] = []
        self._order = itertools.count()

    def seconds(self) -> float:
        return self.now

    def callLater(self, delay: float, callable: Callable[..., Any], *args: object,  # noqa: N802 (IReactorTime)
                  **kw: object) -> DelayedCall:
        call = DelayedCall(self.now + delay, callable, args, kw, lambda c: None, self._push, seconds=self.seconds)
        self._push(call)
        return call

    def _push(self, call: DelayedCall) -> None:
        heapq.heappush(self._heap, (call.getTime(), next(self._order), call))

    def getDelayedCalls(self) -> list[DelayedCall]:  # noqa: N802 (IReactorTime)
        return list({id(c): c for _, _, c in self._heap if c.active()}.values())

    def next_time(self) -> float | None:
        """When the next live call is due, dropping cancelled and moved entries."""
        heap = self._heap
        while heap:
            moment, _, call = heap[0]
            if not call.active():
                heapq.heappop(heap)
            elif call.delayed_time:
                # reset() to a later time is lazy (as in the reactors): move
                # the call now that it surfaces.
                heapq.heappop(heap)
                call.activate_delay()
                self._push(call)
            elif call.time != moment:
                heapq.heappop(heap)  # the old place of a call reset earlier
            else:
                return moment
        return None

    def run_due(self) -> bool:
        """Run the first call due now, if any."""
        moment = self.next_time()
        if moment is None or moment > self.now:
            return False
        _, _, call = heapq.heappop(self._heap)
        call.called = 1
        call.func(*call.args, **call.kw)
        return True

    def advance(self, amount: float) -> None:
        target = self.now + amount
        while (moment := self.next_time()) is not None and moment <= target:
            self.now = max(self.now, moment)
            self.run_due()
        self.now = target


@implementer(IReactorTime)
class ProcessClock:
    """The simulation's clock as one simulated process sees it.

    Every call the process schedules is remembered, so that ``kill()`` can
    drop them all at once: a process killed with ``kill -9`` (or a board
    whose power goes) runs no timer again, and writes nothing more.  A
    process that is dead schedules nothing (a late ``callLater`` gets a
    call already cancelled).  The link ends the process owns (``own``) go deaf
    with it: nothing reaches a dead process.
    """

    def __init__(self, clock: IReactorTime):
        self.clock = clock
        self.dead = False
        self._calls: list[IDelayedCall] = []
        self._prune_at = 64
        self._ends: list[LinkEnd] = []

    def own(self, end: "LinkEnd") -> None:
        """``end`` is this process's end of a link."""
        # Those whose session has ended hear nothing more anyway.
        self._ends = [e for e in self._ends if getattr(e.session, "state", None) not in (None, CLOSED)] + [end]

    def seconds(self) -> float:
        return self.clock.seconds()

    def callLater(self, delay: float, callable: Callable[..., Any], *args: object,  # noqa: N802 (IReactorTime)
                  **kw: object) -> IDelayedCall:
        call = self.clock.callLater(delay, callable, *args, **kw)
        if self.dead:
            call.cancel()
            return call
        calls = self._calls
        calls.append(call)
        if len(calls) >= self._prune_at:
            calls[:] = [c for c in calls if c.active()]
            self._prune_at = max(64, 2 * len(calls))
        return call

    def getDelayedCalls(self) -> list[IDelayedCall]:  # noqa: N802 (IReactorTime)
        return [call for call in self._calls if call.active()]

    def kill(self) -> list["LinkEnd"]:
        """The process is gone: none of its timers runs again, and its
        link ends hear nothing more; returns those ends (whoever kills it
        decides whether its peers hear the links close)."""
        self.dead = True
        calls, self._calls = self._calls, []
        for call in calls:
            if call.active():
                call.cancel()
        ends, self._ends = self._ends, []
        for end in ends:
            end.die()
        return ends


class LinkEnd:
    """One end of an in-memory link: the wire interface of ``jeisson.link``.

    ``on_closed``, if set, is called once when this end's session learns
    that the link is gone: the loss delivered to it, or its own ``close``
    or ``abort`` (what a ``ClientService`` sees as the connection lost)."""

    def __init__(self, network: "Network", peer: str):
        self.network = network
        self.peer = peer
        self.connectionless = False
        self.expected_id: str | None = None
        self.session: Session | None = None
        self.other: LinkEnd | None = None
        self.closed = False
        self.on_closed: Callable[[LinkEnd], None] | None = None

    def send_line(self, data: bytes) -> None:
        if not self.closed and self.other is not None:
            self.network.send(self.other, data)

    def close(self) -> None:
        self.network.cut(self)
        self.heard_closed()

    abort = close

    def heard_closed(self) -> None:
        callback, self.on_closed = self.on_closed, None
        if callback is not None:
            callback(self)

    def die(self) -> None:
        """The process at this end is gone: it hears nothing more."""
        self.session = None
        self.on_closed = None


class Network:
    """Links whose lines wait in one queue, delivered in order by default."""

    def __init__(self):
        self.queue: deque = deque()  # (receiving end, line) or (end, None) for a lost connection
        self.delivered = 0
        self.held: set[LinkEnd] = set()  # ends whose lines wait: a peer that does not answer

    def send(self, end: LinkEnd, data: bytes) -> None:
        """Queue a line (with or without its terminator) for ``end``."""
        self.queue.append((end, data.rstrip(b"\n")))

    def pair(self, a_peer: str, b_peer: str) -> tuple[LinkEnd, LinkEnd]:
        a, b = LinkEnd(self, a_peer), LinkEnd(self, b_peer)
        a.other, b.other = b, a
        return a, b

    def cut(self, end: LinkEnd) -> None:
        """Close the link of ``end``: both sessions hear so, after what is queued."""
        for side in (end, end.other):
            if side is not None and not side.closed:
                side.closed = True
                self.queue.append((side, None))

    def deliver(self, index: int = 0, again: bool = False) -> None:
        """Deliver the ``index``-th waiting item (``again``: and keep it queued,
        so it arrives twice)."""
        end, line = self.queue[index]
        if not again:
            del self.queue[index]
        if end.session is None:
            return
        if line is None:
            end.session.connection_lost(Failure(ConnectionLost("the simulated link was cut")))
            end.heard_closed()
            return
        # Lines in flight when a link is cut still arrive, before the loss
        # (queued after them), as over TCP.
        self.delivered += 1
        end.session.line_received(line)

    def deliver_all(self, limit: int = 10_000_000) -> None:
        """Deliver until only lines for held ends wait (they keep their order)."""
        if not self.held:
            while self.queue and limit:
                self.deliver()
                limit -= 1
            return
        waiting: deque[tuple[LinkEnd, bytes | None]] = deque()
        while self.queue and limit:
            item = self.queue[0]
            if item[0] in self.held:
                waiting.append(self.queue.popleft())
                continue
            self.deliver()
            limit -= 1
        self.queue.extendleft(reversed(waiting))

    def first_for(self, end: "LinkEnd") -> int | None:
        """The queue index of the next item for ``end`` (lines of one link stay in order)."""
        for index, (receiver, _) in enumerate(self.queue):
            if receiver is end:
                return index
        return None


@attrs.frozen
class Switch:
    """One relay switch of a simulated run (``Simulation.switches``)."""

    at: float
    home: str
    board: str
    relay: int
    on: bool
    own: bool  # the board's own doing (power-up or -down, cold-load pickup, failsafe), not the home's SET
    cause: str
    load_w: float


@attrs.define
class RecordingBoard(Board):
    """A board that keeps every relay switch it makes, for whoever studies
    the run: ``(time, relay number, on, on its own)``, where *on its own*
    is a switch the home did not command (failsafe, cold-load pickup,
    power-up or power-down); ``causes`` has the same entries' causes
    (``jeisson.actuator.board.HOME``, ``FAILSAFE``, ...).  A board powered
    up again after an outage continues the logs of the one before it.
    ``observer``, if set, hears each switch as a ``Switch``."""

    switch_log: list = attrs.Factory(list)
    causes: list = attrs.Factory(list)
    home_id: str = ""
    observer: Callable[[Switch], None] | None = None

    def _apply(self, relay, on: bool, cause: str) -> None:
        super()._apply(relay, on, cause)
        now = self.clock.seconds()
        self.switch_log.append((now, relay.config.number, on, cause != HOME))
        self.causes.append(cause)
        if self.observer is not None:
            self.observer(Switch(now, self.home_id, self.config.id, relay.config.number, on, cause != HOME, cause,
                                 relay.config.load_w))


@attrs.frozen
class Found:
    """A load a home found in a state it did not command (``Home.board_connected``)."""

    at: float
    home: str
    load: str
    on: bool
    commanded: bool | None


@attrs.frozen
class Finished:
    """A round finished (``Simulation.rounds``), after ``switches`` relay
    switches of the run (``Simulation.switches``): it can tell what came
    before it from what came after, within one instant."""

    summary: RoundSummary
    switches: int


@attrs.frozen
class Planned:
    """A round planned (``Simulation.plans``), after ``switches`` relay
    switches of the run: its limit, whether its must-run power and the
    homes it counts as unknown (away) fit in it, in total and per feeder
    (``feeders``: feeder id -> ``(must W, unknown W, limit W)``)."""

    number: int
    at: float
    switches: int
    limit_w: float
    feasible: bool
    must_w: float
    unknown_w: float
    feeders: dict[str, tuple[float, float, float]]


class _RoundsListener(AggregatorListener):
    def __init__(self, rounds: list[Finished], plans: list[Planned], switches: list[Switch]):
        self.rounds = rounds
        self.plans = plans
        self.switches = switches
        self.aggregator: Aggregator | None = None

    def round_started(self, round_number: int, event: Any, homes: int) -> None:
        current = self.aggregator.round if self.aggregator is not None else None
        if current is None or current.number != round_number:
            return
        grid = current.context.grid
        must = grid.sums(current.must)
        feeders = {name: (float(must[i]), float(current.feeder_unknown_w[i]), float(grid.limit_w[i]))
                   for i, name in enumerate(grid.names)}
        self.plans.append(Planned(round_number, current.context.clock.seconds(), len(self.switches),
                                  event.limit_w, current.feasible, float(sum(current.must.values())),
                                  float(current.unknown_w), feeders))

    def round_finished(self, summary: RoundSummary) -> None:
        self.rounds.append(Finished(summary, len(self.switches)))


class _FoundListener(HomeListener):
    def __init__(self, home_id: str, clock: IReactorTime, found: list[Found]):
        self.home_id = home_id
        self.clock = clock
        self.found = found

    def load_found(self, load: str, on: bool, commanded: bool | None) -> None:
        self.found.append(Found(self.clock.seconds(), self.home_id, load, on, commanded))


@attrs.define
class SimHome:
    """One simulated home: its process (``core``, ``clock``, ``store``, the
    ends of its links) and its boards, each a process of its own."""

    config: home_config.HomeConfig
    board_configs: dict[str, actuator_config.ActuatorConfig]
    core: Home | None = None  # None while the home is down
    boards: dict[str, RecordingBoard] = attrs.Factory(dict)
    uplink: LinkEnd | None = None
    store: SqliteStore | None = None
    board_links: dict[str, LinkEnd] = attrs.Factory(dict)  # the home's end of each board's link
    clock: ProcessClock | None = None
    board_clocks: dict[str, ProcessClock] = attrs.Factory(dict)
    powered: dict[str, bool] = attrs.Factory(dict)  # board id -> has power now
    power_ups: dict[str, int] = attrs.Factory(dict)  # board id -> times powered up
    power_returns: dict[str, IDelayedCall] = attrs.Factory(dict)  # board id -> its pending power-up
    failed_attempts: int = 0  # the uplink's, as ClientService counts them
    retry: IDelayedCall | None = None  # the uplink's next attempt
    blocked: bool = False  # the aggregator cannot be reached from this home
    jitter: random.Random = attrs.Factory(random.Random)

    @property
    def alive(self) -> bool:
        return self.core is not None


class Simulation:
    """An aggregator and its homes, each home with its boards, on ``clock``.

    ``store_dir``: where the aggregator's and the homes' SQLite files go
    (``aggregator.sqlite``, ``<home id>.sqlite``); by default a temporary
    folder, made when the first store is opened and removed by ``close()``.
    A part whose ini says ``[store] path = none`` keeps no store; any other
    path is replaced by that folder's file.
    """

    def __init__(self, aggregator_ini: str, homes: dict[str, tuple[str, list[str]]], clock: SimClock | None = None,
                 store_dir: str | None = None):
        self.clock = clock or SimClock()
        self.network = Network()
        self.store_dir = store_dir
        self._own_dir: str | None = None
        self._cleanup: Any = None
        self.switches: list[Switch] = []  # every relay switch, in order
        self.found: list[Found] = []  # every state a home found and did not command
        self.rounds: list[Finished] = []  # every round finished, by every aggregator of the run
        self.plans: list[Planned] = []  # every round planned, likewise
        self._home_listeners: list[Callable[[str, Home], HomeListener]] = []
        self._aggregator_listeners: list[Callable[[Aggregator], AggregatorListener]] = []
        self.aggregator_config = aggregator_config.config_from_string(aggregator_ini, "aggregator.ini")
        self.aggregator_clock = ProcessClock(self.clock)
        self.aggregator_store: SqliteStore | None = None
        self.aggregator_running = False
        self.aggregator_starts = 0
        self.homes: dict[str, SimHome] = {}
        for home_id, (home_ini, board_inis) in homes.items():
            boards = [actuator_config.config_from_string(text, f"{home_id}-board.ini") for text in board_inis]
            self.homes[home_id] = SimHome(home_config.config_from_string(home_ini, f"{home_id}.ini"),
                                          {b.id: b for b in boards}, jitter=random.Random(home_id))
        self.aggregator = self._new_aggregator()
        self.aggregator.start()
        self.aggregator_running = True
        for home_id in self.homes:
            self.start_home(home_id)

    # ------------------------------------------------------------- stores

    def _store(self, name: str, clock: IReactorTime, batch_s: float) -> SqliteStore:
        """A new store object on ``name``'s file: it reads what was committed."""
        folder = self.store_dir
        if folder is None:
            if self._own_dir is None:
                self._own_dir = tempfile.mkdtemp(prefix="jeisson-sim-")
                self._cleanup = weakref.finalize(self, shutil.rmtree, self._own_dir, True)
            folder = self._own_dir
        store = SqliteStore(os.path.join(folder, f"{name}.sqlite"), clock, batch_s=batch_s, threaded=False,
                            synchronous="OFF")
        store.open()
        return store

    def close(self) -> None:
        """Stop every timer and remove the temporary store folder (if the
        simulation made one).  The simulation cannot run after this."""
        self.aggregator_clock.kill()
        for sim in self.homes.values():
            if sim.clock is not None:
                sim.clock.kill()
            for clock in sim.board_clocks.values():
                clock.kill()
            for call in sim.power_returns.values():
                if call.active():
                    call.cancel()
        if self._cleanup is not None:
            self._cleanup()

    # ---------------------------------------------------------- aggregator

    def _new_aggregator(self) -> Aggregator:
        config = self.aggregator_config
        self.aggregator_clock = ProcessClock(self.clock)
        self.aggregator_store = None
        if config.store is not None:
            self.aggregator_store = self._store("aggregator", self.aggregator_clock, config.store.batch_s)
        self.aggregator_starts += 1
        rounds = _RoundsListener(self.rounds, self.plans, self.switches)
        aggregator = Aggregator(config, self.aggregator_clock, listeners=[rounds], store=self.aggregator_store)
        rounds.aggregator = aggregator
        for factory in self._aggregator_listeners:
            aggregator.add_listener(factory(aggregator))
        return aggregator

    def add_aggregator_listener(self, factory: Callable[[Aggregator], AggregatorListener]) -> None:
        """``factory(aggregator)``: a listener for the aggregator running
        now and every one started from now on."""
        self._aggregator_listeners.append(factory)
        if self.aggregator_running:
            self.aggregator.add_listener(factory(self.aggregator))

    def aggregator_down(self) -> None:
        """``kill -9`` of the aggregator: its timers and whatever its store
        had not committed are gone; every home hears its link lost (the
        kernel closes a killed process's sockets) and keeps trying to
        reconnect with its backoff."""
        if not self.aggregator_running:
            return
        self.aggregator_running = False
        for end in self.aggregator_clock.kill():
            self.network.cut(end)

    def aggregator_up(self) -> None:
        """A new aggregator process on the same store: it resumes what was
        committed and starts; the homes come back at their next attempt."""
        if self.aggregator_running:
            return
        self.aggregator = self._new_aggregator()
        self.aggregator.start()
        self.aggregator_running = True

    def restart_aggregator(self) -> None:
        """``kill -9`` and start again at once (the homes reconnect with
        their backoff)."""
        self.aggregator_down()
        self.aggregator_up()

    # --------------------------------------------------------------- homes

    def start_home(self, home_id: str) -> None:
        """Start the home's process: its core on its store, its boards'
        links (a board without power is left alone), and its uplink's
        first attempt."""
        sim = self.homes[home_id]
        if sim.alive:
            return
        sim.clock = clock = ProcessClock(self.clock)
        if sim.config.store is not None:
            sim.store = self._store(home_id, clock, sim.config.store.batch_s)
        sim.core = Home(sim.config, clock, store=sim.store)
        sim.core.add_listener(_FoundListener(home_id, clock, self.found))
        for factory in self._home_listeners:
            sim.core.add_listener(factory(home_id, sim.core))
        sim.failed_attempts = 0
        for board_id in sim.board_configs:
            if board_id not in sim.boards:
                self._power_up(home_id, board_id)  # the first start: the boards power up with the home
            elif sim.powered[board_id]:
                self.connect_board(home_id, board_id)
        self._attempt(home_id)

    def add_home_listener(self, factory: Callable[[str, Home], HomeListener]) -> None:
        """``factory(home_id, core)``: a listener for each home process,
        those running now and every one started from now on."""
        self._home_listeners.append(factory)
        for home_id, sim in self.homes.items():
            if sim.core is not None:
                sim.core.add_listener(factory(home_id, sim.core))

    def kill_home(self, home_id: str) -> None:
        """``kill -9`` of the home: its timers and what its store had not
        committed are gone; its boards hear their links lost and keep their
        relays (and their failsafe timers); the aggregator hears its link
        lost.  Start it again with ``start_home``."""
        sim = self.homes[home_id]
        if not sim.alive:
            return
        assert sim.clock is not None
        for end in sim.clock.kill():
            self.network.cut(end)
        sim.core = None
        sim.store = None
        sim.retry = None
        sim.board_links = {}

    def restart_home(self, home_id: str) -> None:
        """``kill -9`` of the home's process, and a new one on its store at
        once; with the aggregator down too, it resumes without it."""
        self.kill_home(home_id)
        self.start_home(home_id)

    def connect(self, home_id: str) -> None:
        """A new uplink from the home to the aggregator, now."""
        sim = self.homes[home_id]
        assert sim.core is not None, "start_home first"
        assert self.aggregator_running, "the aggregator is down"
        aggregator_end, home_end = self.network.pair(f"sim:{home_id}", "sim:aggregator")
        assert sim.clock is not None
        self.aggregator_clock.own(aggregator_end)
        sim.clock.own(home_end)
        aggregator_end.session = HomeSession(self.aggregator, aggregator_end)
        home_end.session = UplinkSession(sim.core, home_end)
        home_end.on_closed = lambda end: self._uplink_lost(home_id, end)
        sim.uplink = home_end

    def disconnect(self, home_id: str) -> None:
        """Cut the home's uplink (both ends hear it); the home reconnects
        with its backoff."""
        link = self.homes[home_id].uplink
        if link is not None and not link.closed:
            link.close()

    def block_uplink(self, home_id: str) -> None:
        """From now, the home's attempts to reach the aggregator fail (a
        link already up stays up: cut it with ``disconnect``)."""
        self.homes[home_id].blocked = True

    def unblock_uplink(self, home_id: str) -> None:
        self.homes[home_id].blocked = False

    def _uplink_lost(self, home_id: str, end: LinkEnd) -> None:
        sim = self.homes[home_id]
        if sim.uplink is end and sim.alive:
            self._retry_later(home_id)

    def _retry_later(self, home_id: str) -> None:
        """As ``ClientService`` waits between attempts (``jeisson.home.tap``)."""
        sim = self.homes[home_id]
        assert sim.core is not None and sim.clock is not None
        sim.failed_attempts += 1
        delay = attrs.evolve(sim.core.config.reconnect, random=sim.jitter.random)(sim.failed_attempts)
        if sim.core.take_refusal():
            delay = max(delay, RETRY_AFTER_REFUSAL_S)
        if sim.retry is not None and sim.retry.active():
            sim.retry.cancel()
        sim.retry = sim.clock.callLater(delay, self._attempt, home_id)

    def _attempt(self, home_id: str) -> None:
        sim = self.homes[home_id]
        sim.retry = None
        if not sim.alive:
            return
        if not self.aggregator_running or sim.blocked:
            self._retry_later(home_id)
            return
        sim.failed_attempts = 0
        self.connect(home_id)

    # --------------------------------------------------------------- boards

    def connect_board(self, home_id: str, board_id: str) -> None:
        sim = self.homes[home_id]
        assert sim.core is not None, "start_home first"
        home_end, board_end = self.network.pair(f"sim:{board_id}", f"sim:{home_id}")
        assert sim.clock is not None
        sim.clock.own(home_end)
        sim.board_clocks[board_id].own(board_end)
        home_end.session = BoardSession(sim.core, home_end)
        board = ActuatorSession(board_end, sim.boards[board_id])
        board_end.session = board
        board.start()
        sim.board_links[board_id] = home_end

    def _power_up(self, home_id: str, board_id: str) -> None:
        sim = self.homes[home_id]
        sim.power_returns.pop(board_id, None)
        config = sim.board_configs[board_id]
        sim.board_clocks[board_id] = clock = ProcessClock(self.clock)
        board = RecordingBoard.from_config(config, clock)
        old = sim.boards.get(board_id)
        if old is not None:
            board.switch_log, board.causes = old.switch_log, old.causes
        count = sim.power_ups[board_id] = sim.power_ups.get(board_id, 0) + 1
        if count > 1:
            # Each power-up draws its own cold-load delay.
            board.rng = random.Random(f"{config.seed}:{board_id}:{count}")
        board.home_id = home_id
        board.observer = self.switches.append
        sim.boards[board_id] = board
        sim.powered[board_id] = True
        board.start()
        if sim.alive:
            self.connect_board(home_id, board_id)

    def board_home(self, board_id: str) -> str:
        """The id of the home ``board_id`` belongs to."""
        for home_id, sim in self.homes.items():
            if board_id in sim.board_configs:
                return home_id
        raise KeyError(f"no board {board_id!r}")

    def power_blip(self, board_id: str, outage_s: float = 1.0) -> None:
        """The board loses its power for ``outage_s``: its relays open now
        (``POWER_DOWN``, on its own), its link goes silent, and a new board
        powers up after the outage (relays open, each counted as switched
        then, its safe states after the cold-load delay) and connects to its
        home if the home runs.  A blip during an outage moves the power's
        return."""
        home_id = self.board_home(board_id)
        sim = self.homes[home_id]
        pending = sim.power_returns.pop(board_id, None)
        if pending is not None and pending.active():
            pending.cancel()
        if sim.powered.get(board_id):
            sim.powered[board_id] = False
            board = sim.boards[board_id]
            board.stop()
            # No connection closes: the home finds out by its heartbeat.
            sim.board_clocks[board_id].kill()
        sim.power_returns[board_id] = self.clock.callLater(outage_s, self._power_up, home_id, board_id)

    # ---------------------------------------------------------------- time

    def settle(self) -> None:
        """Deliver every line, and every line those cause."""
        self.network.deliver_all()

    def run_until(self, moment: float) -> None:
        """Advance to ``moment``: each timer runs at its own time, and the
        lines it causes are delivered before the next timer runs."""
        self.settle()
        clock = self.clock
        while (due := clock.next_time()) is not None and due <= moment:
            clock.now = max(clock.now, due)
            clock.run_due()
            self.settle()
        clock.now = max(clock.now, moment)

    # --------------------------------------------------------------- views

    def relays_w(self, home_id: str) -> float:
        """What a home's closed relays draw, at each load's rated power."""
        sim = self.homes[home_id]
        total = 0.0
        for load in sim.config.loads.values():
            if sim.boards[load.actuator].relays[load.relay - 1].on:
                total += load.rated_w
        return total

    def home_draw(self, home_id: str) -> float:
        """What the home's boards' closed relays draw now (their ``load_w``)."""
        return float(sum(relay.config.load_w for board in self.homes[home_id].boards.values()
                         for relay in board.relays if relay.on))

    def physical_draw(self, feeder: str | None = None) -> float:
        """The truth: the power of every relay closed now on the simulated
        boards (of ``feeder``'s homes only, if given), whatever the homes
        or the aggregator believe."""
        if feeder is None:
            homes: Any = self.homes
        else:
            homes = next(f.homes for f in self.aggregator_config.feeders if f.id == feeder)
        return float(sum(self.home_draw(home_id) for home_id in homes))

    def feeder_draws(self) -> dict[str, float]:
        """``physical_draw`` of each configured feeder."""
        return {f.id: self.physical_draw(f.id) for f in self.aggregator_config.feeders}

    def value_served(self) -> float:
        """Priority x rated power of every load whose relay is closed."""
        total = 0.0
        for sim in self.homes.values():
            for load in sim.config.loads.values():
                if sim.boards[load.actuator].relays[load.relay - 1].on:
                    total += load.priority * load.rated_w
        return total


# ------------------------------------------------------------------ fleets


@attrs.frozen
class SimLoad:
    """One simulated load: its rules at the home and its relay on a board."""

    rated_w: int
    priority: int = 1
    critical: bool = False
    min_on_s: float = 0
    min_off_s: float = 0
    max_off_s: float | None = None
    desired: bool = True
    min_interval_s: float = 0  # the board's: a relay never switches twice within it (power-up counts)


def home_inis(home_id: str, loads: list[SimLoad], *, heartbeat_s: int = 30, measure_period_s: float = 600,
              command_timeout_s: float = 3, failsafe_after_s: float = 120, board_measure_period_s: float = 2,
              aggregator: str = "tcp:127.0.0.1:7700", seed: int = 1, cold_load_s: tuple[float, float] = (0, 0),
              store: bool = True) -> tuple[str, list[str]]:
    """Ini files for one home and its boards, eight relays to a board:
    ``(home_ini, [board_ini, ...])``.  The home's secret is ``s-<id>``; load
    ``n`` (from 1) is ``<id>-l<n>``; a critical load's safe state is on.

    Boards power up with their relays open, as real ones do; the home
    switches on what its owner wants.  Their cold-load pickup window is
    ``cold_load_s``: 0 to 0 by default, so a critical load's relay closes at
    power-up and the home's first ``HELLO`` already says so (a simulated
    board powers up with its home, which is there to take charge at once);
    give a window to study boards that come back without their home.

    With ``store`` the home remembers as a real one does (``Simulation``
    gives it a SQLite file that outlives its process); without it its ini
    says ``[store] path = none``, for fleets that never restart and would
    only pay for it.  ``SimLoad.min_interval_s`` is its relay's on the
    board."""
    home = [f"[home]\nid = {home_id}\nsecret = s-{home_id}\naggregator = {aggregator}\nactuators = tcp:0\n"
            f"heartbeat_s = {heartbeat_s}\ncommand_timeout_s = {command_timeout_s:g}\n"
            f"measure_period_s = {measure_period_s:g}\nreconnect_base_s = {UPLINK_BACKOFF['base_s']:g}\n"
            f"reconnect_cap_s = {UPLINK_BACKOFF['cap_s']:g}\n" + ("" if store else "[store]\npath = none\n")]
    boards = []
    for b in range(0, len(loads), 8):
        board_id = f"{home_id}-b{b // 8}"
        group = loads[b:b + 8]
        key = board_key_file(board_id)
        home.append(f"[actuator:{board_id}]\nrelays = {len(group)}\nkey = {key}\n")
        board = [f"[actuator]\nid = {board_id}\nhome = tcp:127.0.0.1:7711\nkey = {key}\n"
                 f"failsafe_after_s = {failsafe_after_s:g}\n"
                 f"measure_period_s = {board_measure_period_s:g}\nnoise = 0\nseed = {seed}\n"
                 f"cold_load_min_s = {cold_load_s[0]:g}\ncold_load_max_s = {cold_load_s[1]:g}\n"]
        for r, load in enumerate(group, 1):
            home.append(f"[load:{home_id}-l{b + r}]\nactuator = {board_id}\nrelay = {r}\nrated_w = {load.rated_w}\n"
                        f"priority = {load.priority}\ncritical = {'yes' if load.critical else 'no'}\n"
                        f"min_on_s = {load.min_on_s:g}\nmin_off_s = {load.min_off_s:g}\n"
                        f"desired = {'on' if load.desired else 'off'}\n"
                        + (f"max_off_s = {load.max_off_s:g}\n" if load.max_off_s is not None else ""))
            board.append(f"[relay:{r}]\nload_w = {load.rated_w}\nsafe_state = {'on' if load.critical else 'off'}\n"
                         f"min_interval_s = {load.min_interval_s:g}\n")
        boards.append("".join(board))
    return "".join(home), boards



_KEYS: str | None = None


def board_key_file(board_id: str) -> str:
    """The key file a simulated board shares with its home (authenticated
    like every real board): a key drawn from the board's id, in a folder of
    this process's, removed at its exit."""
    global _KEYS
    if _KEYS is None:
        _KEYS = tempfile.mkdtemp(prefix="jeisson-sim-keys-")
        atexit.register(shutil.rmtree, _KEYS, True)
    path = os.path.join(_KEYS, f"{board_id}.key")
    if not os.path.exists(path):
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(hashlib.sha256(b"jeisson simulated board " + board_id.encode()).hexdigest() + "\n")
    return path

def random_fleet(homes: int, seed: int, loads_per_home: int = 8, limit_fraction: float = 0.6,
                 event_start_s: float = 90.0, event_end_s: float = 3600.0, feeders: int = 0,
                 feeder_fraction: float = 0.55, heartbeat_s: int = 30) -> tuple[str, dict]:
    """Ini files for a random, realistic fleet: ``(aggregator_ini, homes)``.

    Each home has one board per eight loads of 0.1 to 5 kW, with priorities
    1 to 10; about one load in ten is critical, one in five is held on by a
    long minimum on time when the event starts, one in ten is off because
    its owner wants it so.  The boards power up open at 0 and the homes
    switch their owners' loads on as each load's ``min_off_s`` (at most
    60 s, counted from power-up) allows: an event should start after that,
    as by default.  The event's limit is ``limit_fraction`` of what the
    owners want on; with ``feeders``, homes are spread over that many
    feeders, each limited to ``feeder_fraction`` of its homes' demand.
    """
    rng = random.Random(seed)
    fleet = {}
    demand = {}
    for h in range(homes):
        home_id = f"h{h:05d}"
        loads = []
        for _ in range(loads_per_home):
            rated = round(rng.uniform(100, 5000))
            kind = rng.random()
            held = 0.2 <= kind < 0.4
            min_on = 2 * event_start_s if held else rng.choice((0, 0, 30, 60))
            min_off = rng.choice((0, 30, 60))
            loads.append(SimLoad(rated, rng.randint(1, 10), critical=kind < 0.1, min_on_s=min_on, min_off_s=min_off,
                                 desired=not (0.1 <= kind < 0.2)))
        fleet[home_id] = home_inis(home_id, loads, heartbeat_s=heartbeat_s, failsafe_after_s=4 * heartbeat_s,
                                   seed=seed, store=False)
        demand[home_id] = float(sum(load.rated_w for load in loads if load.desired))
    limit_kw = limit_fraction * sum(demand.values()) / 1000
    # Fleets never restart: the aggregator goes without a store too.
    aggregator_ini = [f"[aggregator]\nlisten = tcp:0\nheartbeat_s = {heartbeat_s}\nround_period_s = 300\n"
                      f"round_timeout_s = 10\nconverge_s = 120\n[store]\npath = none\n"]
    aggregator_ini += [f"[home:{h}]\nsecret = s-{h}\n" for h in fleet]
    if feeders:
        members = np.array_split(np.array(sorted(fleet)), feeders)
        for f, group in enumerate(members):
            group_kw = feeder_fraction * sum(demand[h] for h in group) / 1000
            aggregator_ini.append(f"[feeder:f{f}]\nlimit_kw = {group_kw:.3f}\nhomes = {', '.join(group)}\n")
    aggregator_ini.append(f"[event:peak]\nlimit_kw = {limit_kw:.3f}\nstart = +{event_start_s:g}\n"
                          f"end = +{event_end_s:g}\n")
    return "".join(aggregator_ini), fleet
