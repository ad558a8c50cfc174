"""The whole system in one process: real sessions over in-memory links.

An aggregator, its homes and their actuator boards run their real cores and
their real per-link sessions (``HomeSession``, ``UplinkSession``,
``BoardSession``, ``ActuatorSession``) on one ``task.Clock``; only the
sockets are replaced, by ``Network``: every line waits in a queue until the
simulation delivers it.  That makes whole negotiations of thousands of homes
run in seconds and exactly reproducibly, and it lets a test (or the
researcher's own script) deliver lines late, out of order across links, or
twice, cut links, and restart homes.

``random_fleet`` builds ini files for a random but realistic fleet; the
quality benchmark and the safety property tests both run on it.
"""

import heapq
import itertools
import random
from collections import deque
from collections.abc import Callable
from typing import Any

import attrs
import numpy as np
from twisted.internet.base import DelayedCall
from twisted.internet.error import ConnectionLost
from twisted.internet.interfaces import IReactorTime
from twisted.python.failure import Failure
from zope.interface import implementer

from jeisson.actuator import config as actuator_config
from jeisson.actuator.board import HOME, Board
from jeisson.actuator.home_link import ActuatorSession
from jeisson.aggregator import config as aggregator_config
from jeisson.aggregator.core import Aggregator
from jeisson.aggregator.home_link import HomeSession
from jeisson.home import config as home_config
from jeisson.home.aggregator_link import UplinkSession
from jeisson.home.board_link import BoardSession
from jeisson.home.core import Home
from jeisson.link import Session
from jeisson.store.sqlite import MEMORY, SqliteStore


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


class LinkEnd:
    """One end of an in-memory link: the wire interface of ``jeisson.link``."""

    def __init__(self, network: "Network", peer: str):
        self.network = network
        self.peer = peer
        self.connectionless = False
        self.expected_id: str | None = None
        self.session: Session | None = None
        self.other: LinkEnd | None = None
        self.closed = False

    def send_line(self, data: bytes) -> None:
        if not self.closed and self.other is not None:
            self.network.send(self.other, data)

    def close(self) -> None:
        self.network.cut(self)

    abort = close


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


@attrs.define
class RecordingBoard(Board):
    """A board that keeps every relay switch it makes, for whoever studies
    the run: ``(time, relay number, on, on its own)``, where *on its own*
    is a switch the home did not command (failsafe, cold-load pickup,
    power-up or power-down); ``causes`` has the same entries' causes
    (``jeisson.actuator.board.HOME``, ``FAILSAFE``, ...)."""

    switch_log: list = attrs.Factory(list)
    causes: list = attrs.Factory(list)

    def _apply(self, relay, on: bool, cause: str) -> None:
        super()._apply(relay, on, cause)
        self.switch_log.append((self.clock.seconds(), relay.config.number, on, cause != HOME))
        self.causes.append(cause)


@attrs.define
class SimHome:
    config: home_config.HomeConfig
    board_configs: dict[str, actuator_config.ActuatorConfig]
    core: Home | None = None
    boards: dict[str, RecordingBoard] = attrs.Factory(dict)
    uplink: LinkEnd | None = None
    store: SqliteStore | None = None
    board_links: dict[str, LinkEnd] = attrs.Factory(dict)


class Simulation:
    """An aggregator and its homes, each home with its boards, on ``clock``."""

    def __init__(self, aggregator_ini: str, homes: dict[str, tuple[str, list[str]]], clock: SimClock | None = None):
        self.clock = clock or SimClock()
        self.network = Network()
        self.aggregator = Aggregator(aggregator_config.config_from_string(aggregator_ini, "aggregator.ini",
                                                                          now=self.clock.seconds()), self.clock)
        self.homes: dict[str, SimHome] = {}
        for home_id, (home_ini, board_inis) in homes.items():
            boards = [actuator_config.config_from_string(text, f"{home_id}-board.ini") for text in board_inis]
            self.homes[home_id] = SimHome(home_config.config_from_string(home_ini, f"{home_id}.ini"),
                                          {b.id: b for b in boards})
        self.aggregator.start()
        for home_id in self.homes:
            self.start_home(home_id)

    # ------------------------------------------------------------ topology

    def start_home(self, home_id: str) -> None:
        """Power the home up: its core, its boards' links, and its uplink."""
        sim = self.homes[home_id]
        if sim.store is None and sim.config.store is not None:
            # Its store, in memory whatever the path (a simulation leaves no
            # files), kept across restart_home as a file would be.
            sim.store = SqliteStore(MEMORY, self.clock, batch_s=sim.config.store.batch_s)
            sim.store.open()
        sim.core = Home(sim.config, self.clock, store=sim.store)
        for board_id, config in sim.board_configs.items():
            if board_id not in sim.boards:
                board = sim.boards[board_id] = RecordingBoard.from_config(config, self.clock)
                board.start()
            self.connect_board(home_id, board_id)
        self.connect(home_id)

    def restart_home(self, home_id: str) -> None:
        """The home's process restarts: its links drop and come back; its
        boards keep their relays (and their failsafe timers)."""
        sim = self.homes[home_id]
        for link in [sim.uplink, *sim.board_links.values()]:
            if link is not None and not link.closed:
                link.close()
        self.network.deliver_all()
        if sim.core is not None:
            sim.core.stop()
        self.start_home(home_id)

    def connect(self, home_id: str) -> None:
        sim = self.homes[home_id]
        aggregator_end, home_end = self.network.pair(f"sim:{home_id}", "sim:aggregator")
        assert sim.core is not None, "start_home first"
        aggregator_end.session = HomeSession(self.aggregator, aggregator_end)
        home_end.session = UplinkSession(sim.core, home_end)
        sim.uplink = home_end

    def disconnect(self, home_id: str) -> None:
        link = self.homes[home_id].uplink
        if link is not None and not link.closed:
            link.close()

    def connect_board(self, home_id: str, board_id: str) -> None:
        sim = self.homes[home_id]
        home_end, board_end = self.network.pair(f"sim:{board_id}", f"sim:{home_id}")
        assert sim.core is not None, "start_home first"
        home_end.session = BoardSession(sim.core, home_end)
        board = ActuatorSession(board_end, sim.boards[board_id])
        board_end.session = board
        board.start()
        sim.board_links[board_id] = home_end

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
    keeps its store in memory across ``restart_home``); without it its ini
    says ``[store] path = none``, for fleets that never restart and would
    only pay for it."""
    home = [f"[home]\nid = {home_id}\nsecret = s-{home_id}\naggregator = {aggregator}\nactuators = tcp:0\n"
            f"heartbeat_s = {heartbeat_s}\ncommand_timeout_s = {command_timeout_s:g}\n"
            f"measure_period_s = {measure_period_s:g}\n" + ("" if store else "[store]\npath = none\n")]
    boards = []
    for b in range(0, len(loads), 8):
        board_id = f"{home_id}-b{b // 8}"
        group = loads[b:b + 8]
        home.append(f"[actuator:{board_id}]\nrelays = {len(group)}\n")
        board = [f"[actuator]\nid = {board_id}\nhome = tcp:127.0.0.1:7711\nfailsafe_after_s = {failsafe_after_s:g}\n"
                 f"measure_period_s = {board_measure_period_s:g}\nnoise = 0\nseed = {seed}\n"
                 f"cold_load_min_s = {cold_load_s[0]:g}\ncold_load_max_s = {cold_load_s[1]:g}\n"]
        for r, load in enumerate(group, 1):
            home.append(f"[load:{home_id}-l{b + r}]\nactuator = {board_id}\nrelay = {r}\nrated_w = {load.rated_w}\n"
                        f"priority = {load.priority}\ncritical = {'yes' if load.critical else 'no'}\n"
                        f"min_on_s = {load.min_on_s:g}\nmin_off_s = {load.min_off_s:g}\n"
                        f"desired = {'on' if load.desired else 'off'}\n"
                        + (f"max_off_s = {load.max_off_s:g}\n" if load.max_off_s is not None else ""))
            board.append(f"[relay:{r}]\nload_w = {load.rated_w}\nsafe_state = {'on' if load.critical else 'off'}\n"
                         "min_interval_s = 0\n")
        boards.append("".join(board))
    return "".join(home), boards


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
    aggregator_ini = [f"[aggregator]\nlisten = tcp:0\nheartbeat_s = {heartbeat_s}\nround_period_s = 300\n"
                      f"round_timeout_s = 10\nconverge_s = 120\n"]
    aggregator_ini += [f"[home:{h}]\nsecret = s-{h}\n" for h in fleet]
    if feeders:
        members = np.array_split(np.array(sorted(fleet)), feeders)
        for f, group in enumerate(members):
            group_kw = feeder_fraction * sum(demand[h] for h in group) / 1000
            aggregator_ini.append(f"[feeder:f{f}]\nlimit_kw = {group_kw:.3f}\nhomes = {', '.join(group)}\n")
    aggregator_ini.append(f"[event:peak]\nlimit_kw = {limit_kw:.3f}\nstart = +{event_start_s:g}\n"
                          f"end = +{event_end_s:g}\n")
    return "".join(aggregator_ini), fleet
