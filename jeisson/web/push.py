"""The live push: server-sent events from the aggregator and the home.

``GET /api/v1/stream`` answers ``text/event-stream`` and keeps the
response open.  What it sends, each a ``event: NAME`` and one ``data:``
line of JSON:

``snapshot``
    On connect: everything a page shows at first: the status, the events,
    the latest rounds and the first ``PAGE`` homes by id
    (``homes_pending``: how many follow, as ``homes`` frames with
    ``pending``, a page per reactor turn).
``round``
    A finished round (the API's ROUND without its per-home figures), at once.
``events``
    The events list, at once when an event is added, modified, cancelled or
    starts binding or stops.
``power``
    ``{"at", "limit_w", "committed_w", "measured_w"}`` and the status's
    verdict (``within_limit``, ``over_w``), ``negotiation``, ``homes``
    (counts) and ``rounds_run``: at most once a second, when a figure may
    have moved.
``homes``
    ``{"homes": [HOME, ...]}``: only the homes that changed since the last
    push, at most once a second and at most ``HOMES_PER_PUSH`` a push (the
    rest the next second, oldest change first).

and a comment line (``: heartbeat``) every ``HEARTBEAT_S`` so that proxies
and the browser know the stream lives.  The home's stream is the same shape:
``snapshot``, then ``status`` (at most once a second) and ``loads`` (the
loads that changed, at most once a second), ``switch`` (a load switched or
failed to, with why, at once).

How it is built: a listener (``AggregatorPush``, ``HomePush``) on the
process's seam marks what changed; a ``Coalescer`` on the clock turns a
burst of marks into one push a second; ``Streams`` writes each frame to
every open ``Client``.  A client is a push producer registered on its
request: when its socket's buffer is full Twisted pauses it.  What
happened once (a round, the events, a heartbeat) then waits in its own
queue, bounded (``MAX_QUEUED_BYTES``): a client that falls further behind
is cut off (logged), the others and the process go on.  What is state
(power, homes) is not queued but *owed*: once the client reads again it is
sent the figures as they are then, and the homes it missed, a page per
reactor turn.  Each pushed frame is encoded once for all clients; nothing
is built while no stream is open.  The views are the API's
(``jeisson.web.aggregator_api``, ``jeisson.web.home_api``).
"""

import json
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime
from twisted.logger import Logger
from twisted.web import server
from twisted.web.resource import Resource
from twisted.web.server import Request
from zope.interface import implementer

from jeisson import timers
from jeisson.aggregator.events import Event
from jeisson.aggregator.listeners import AggregatorListener
from jeisson.aggregator.round import RoundSummary
from jeisson.home.listeners import HomeListener
from jeisson.web import aggregator_api, home_api
from jeisson.web.aggregator_api import event_views, home_view, link_and_event_listeners, status_view
from jeisson.wire import aggregator_home as wire

HEARTBEAT_S = 15.0
COALESCE_S = 1.0  # power and homes at most this often
MAX_QUEUED_BYTES = 1 << 20  # what one paused client may fall behind before it is cut off
RECENT_ROUNDS = 20  # the latest rounds a snapshot carries
PAGE = 250  # homes per frame when a client is owed them (a snapshot's, a paused client's)
HOMES_PER_PUSH = 250  # the most homes one push carries: the rest stay for the next second
SHARED_S = 5.0  # the longest a snapshot page's encoding is shared (a round's end clears them sooner)
# What a ``power`` push carries of the status.
POWER_FIELDS = ("at", "limit_w", "committed_w", "measured_w", "within_limit", "over_w", "negotiation", "homes",
                "rounds_run")


# ------------------------------------------------------------ the format


def frame(event: str, data: Any) -> bytes:
    """One server-sent event: its name and its data as one line of JSON."""
    body = json.dumps(data, separators=(",", ":"), allow_nan=False)
    return b"event: " + event.encode("ascii") + b"\ndata: " + body.encode("utf-8") + b"\n\n"


HEARTBEAT = b": heartbeat\n\n"


def take(ordered: dict[str, None], count: int) -> list[str]:
    """The first ``count`` keys of ``ordered`` (oldest first), removed from it."""
    keys = []
    for key in ordered:
        keys.append(key)
        if len(keys) == count:
            break
    for key in keys:
        del ordered[key]
    return keys


# --------------------------------------------------------------- clients


@implementer(IPushProducer)
class Client:
    """One open stream.  Discrete frames (a round, the events, a heartbeat)
    are written while its socket takes them and queued while Twisted has
    paused it (its buffer full); past ``max_queued`` bytes queued the
    client is cut off.  What is *state* (the power figures, the homes) is
    never queued: a client that cannot take it now is *owed* it
    (``owe_power``, ``owed`` ids), and is sent the current figures once it
    can, a page at a time (``Streams``)."""

    log = Logger()

    def __init__(self, request: Request, max_queued: int = MAX_QUEUED_BYTES,
                 resumed: Callable[["Client"], None] | None = None):
        self.request = request
        self.max_queued = max_queued
        self.resumed = resumed
        self.paused = False
        self.queue: deque[bytes] = deque()
        self.queued = 0
        self.gone = False
        self.owed: dict[str, None] = {}  # ids owed, oldest first
        self.owe_power = False
        self.peer = str(request.getClientAddress())

    @property
    def ready(self) -> bool:
        """Takes state as it is pushed: not paused, owing it nothing."""
        return not self.paused and not self.owed and not self.owe_power and not self.gone

    def send(self, data: bytes) -> None:
        if self.gone:
            return
        if not self.paused:
            self.request.write(data)
            return
        self.queue.append(data)
        self.queued += len(data)
        if self.queued > self.max_queued:
            self.log.warn("stream client {peer} is {n} bytes behind: cut off", peer=self.peer, n=self.queued)
            self.drop()

    def drop(self) -> None:
        """Cut the client off: it may reconnect (EventSource does), and gets a new snapshot."""
        if self.gone:
            return
        self.gone = True
        self.queue.clear()
        self.queued = 0
        self.owed.clear()
        channel = self.request.channel
        if channel is not None and channel.transport is not None:
            # Not loseConnection: that waits for the buffer this client does not read.
            channel.forceAbortClient()

    # IPushProducer, called by the request's channel.
    def pauseProducing(self) -> None:  # noqa: N802
        self.paused = True

    def resumeProducing(self) -> None:  # noqa: N802
        self.paused = False
        while self.queue and not self.paused and not self.gone:
            data = self.queue.popleft()
            self.queued -= len(data)
            self.request.write(data)
        if not self.paused and not self.gone and self.resumed is not None:
            self.resumed(self)

    def stopProducing(self) -> None:  # noqa: N802
        self.gone = True
        self.queue.clear()
        self.owed.clear()


class Streams:
    """The open streams of one process.

    ``snapshot()`` gives a new client's first frame and the ids it is still
    owed (sent after it, ``PAGE`` at a time, one page per reactor turn: a
    10,000-home snapshot never holds the reactor for long);
    ``page(ids, pending)`` is the frame of those ids' current views
    (``pending``: how many are still owed after it); ``power()`` the
    current power frame.  ``opened`` and ``closed`` tell the listener when
    the first opens and the last closes (it tracks nothing without
    clients).  A heartbeat comment goes to every client every
    ``HEARTBEAT_S`` while any is open."""

    log = Logger()

    def __init__(self, clock: IReactorTime, snapshot: Callable[[], tuple[bytes, list[str]]],
                 page: Callable[[list[str], int], bytes], power: Callable[[], bytes] | None,
                 opened: Callable[[], None], closed: Callable[[], None], max_queued: int = MAX_QUEUED_BYTES):
        self.clock = clock
        self.snapshot = snapshot
        self.page = page
        self.power = power
        self.opened = opened
        self.closed = closed
        self.max_queued = max_queued
        self.clients: list[Client] = []
        self._heartbeat: IDelayedCall | None = None
        self._serving: dict[Client, IDelayedCall] = {}

    def open(self, request: Request) -> Client:
        """A new stream on ``request`` (its headers set by the resource)."""
        client = Client(request, self.max_queued, self._serve_soon)
        request.registerProducer(client, True)
        request.notifyFinish().addBoth(lambda _: self._finished(client))
        if not self.clients:
            self.opened()
            self._heartbeat = self.clock.callLater(HEARTBEAT_S, self._beat)
        self.clients.append(client)
        first, owed = self.snapshot()
        client.send(first)
        client.owed.update(dict.fromkeys(owed))
        self._serve_soon(client)
        return client

    def push(self, data: bytes) -> None:
        """A discrete frame, to every client (queued for those paused)."""
        for client in list(self.clients):
            client.send(data)
            if client.gone:
                self._finished(client)

    def push_state(self, ids: list[str], homes: Callable[[], bytes] | None, power: bytes | None) -> None:
        """What changed: ``power`` (a frame) and ``homes()`` (the frame of
        ``ids``) to the clients ready for it; owed to the others."""
        ready = [c for c in self.clients if c.ready]
        data = b"" if power is None else power
        if ids and homes is not None and ready:
            data += homes()
        if data:
            for client in ready:
                client.send(data)
        for client in self.clients:
            if client in ready or client.gone:
                continue
            client.owed.update(dict.fromkeys(ids))
            client.owe_power = client.owe_power or power is not None
            self._serve_soon(client)

    def _serve_soon(self, client: Client) -> None:
        if client not in self._serving and not client.gone and (client.owed or client.owe_power):
            self._serving[client] = self.clock.callLater(0, self._serve, client)

    def _serve(self, client: Client) -> None:
        """One page of what ``client`` is owed; the next on the next turn.
        A paused client is served again when it resumes."""
        del self._serving[client]
        if client.gone or client.paused:
            return
        if client.owe_power and self.power is not None:
            client.owe_power = False
            client.send(self.power())
        client.owe_power = False
        if client.owed:
            ids = take(client.owed, PAGE)
            client.send(self.page(ids, len(client.owed)))
        self._serve_soon(client)

    def _beat(self) -> None:
        self._heartbeat = self.clock.callLater(HEARTBEAT_S, self._beat)
        self.push(HEARTBEAT)

    def _finished(self, client: Client) -> None:
        client.gone = True
        timers.cancel(self._serving.pop(client, None))
        if client not in self.clients:
            return
        self.clients.remove(client)
        if not self.clients:
            timers.cancel(self._heartbeat)
            self._heartbeat = None
            self.closed()


class Coalescer:
    """Runs ``flush`` once after a burst of ``poke()``, at most once every
    ``interval`` s: the first poke after a quiet spell flushes at once, one
    within ``interval`` of the last flush waits for its turn."""

    log = Logger()

    def __init__(self, clock: IReactorTime, interval: float, flush: Callable[[], None]):
        self.clock = clock
        self.interval = interval
        self.flush = flush
        self.last: float | None = None
        self._call: IDelayedCall | None = None

    def poke(self) -> None:
        if self._call is not None:
            return
        now = self.clock.seconds()
        delay = 0.0 if self.last is None else max(0.0, self.last + self.interval - now)
        self._call = self.clock.callLater(delay, self._run)

    def _run(self) -> None:
        self._call = None
        self.last = self.clock.seconds()
        try:
            self.flush()
        except Exception:
            self.log.failure("a push failed; the next change pushes again")

    def stop(self) -> None:
        timers.cancel(self._call)
        self._call = None


class StreamResource(Resource):
    """``GET /api/v1/stream``: a server-sent events stream from ``streams``."""

    isLeaf = True

    def __init__(self, streams: Streams):
        super().__init__()
        self.streams = streams

    def render_GET(self, request: Request) -> int:  # noqa: N802
        request.setHeader(b"content-type", b"text/event-stream; charset=utf-8")
        request.setHeader(b"cache-control", b"no-store")
        request.setHeader(b"x-accel-buffering", b"no")  # a proxy in front must not hold the frames
        # The first bytes go out now: the browser's EventSource opens.
        request.write(b"retry: 2000\n\n")
        self.streams.open(request)
        return server.NOT_DONE_YET


class Changes:
    """What both pushes share: while a stream is open (``watching``), the
    ids that changed (``mark``, oldest first) and whether the figures did
    (``moved``), pushed by ``flush`` at most once every ``COALESCE_S``:
    ``state()`` (the figures' frame) and ``page(ids)`` (those ids' frame),
    at most ``per_push`` ids a push, the rest the next second."""

    def __init__(self, clock: IReactorTime, snapshot: Callable[[], tuple[bytes, list[str]]],
                 page: Callable[[list[str], int | None], bytes], state: Callable[[], bytes], per_push: int,
                 max_queued: int = MAX_QUEUED_BYTES):
        self.page = page
        self.state = state
        self.per_push = per_push
        self.streams = Streams(clock, snapshot, page, state, self._opened, self._closed, max_queued)
        self.coalescer = Coalescer(clock, COALESCE_S, self.flush)
        self.watching = False
        self.dirty: dict[str, None] = {}
        self.moved = False

    def _opened(self) -> None:
        self.watching = True

    def _closed(self) -> None:
        self.watching = False
        self.dirty.clear()
        self.moved = False
        self.coalescer.stop()

    def mark(self, *ids: str) -> None:
        """The figures moved, and these ids changed (nothing while no stream is open)."""
        if self.watching:
            self.dirty.update(dict.fromkeys(ids))
            self.moved = True
            self.coalescer.poke()

    def flush(self) -> None:
        if not self.watching:
            return
        state = None
        if self.moved:
            self.moved = False
            state = self.state()
        ids = take(self.dirty, self.per_push)
        self.streams.push_state(ids, lambda: self.page(ids, None), state)
        if self.dirty:
            # More changed than one push carries: the rest next second.
            self.coalescer.poke()


# ------------------------------------------------------- the aggregator


class AggregatorPush(AggregatorListener):
    """The aggregator's stream: a listener marking what changed, pushed
    through ``streams`` (rounds and events at once; power and the changed
    homes at most once every ``COALESCE_S``).  The views are the API's
    (``jeisson.web.aggregator_api``), read with the aggregator's one
    ``LinkTimes`` and ``EventsSeen`` (``link_and_event_listeners``: the
    API's, added to the aggregator before this one)."""

    log = Logger()

    def __init__(self, aggregator: Any, clock: IReactorTime, max_queued: int = MAX_QUEUED_BYTES):
        self.aggregator = aggregator
        self.clock = clock
        self.links, self.seen = link_and_event_listeners(aggregator)
        self.changes = Changes(clock, self.snapshot_frame, self.homes_frame, self.power_frame, HOMES_PER_PUSH,
                               max_queued)
        self.streams = self.changes.streams
        self.recent: deque[dict[str, Any]] = deque(maxlen=RECENT_ROUNDS)
        # Snapshot pages' encoded homes this round, by their ids: (when built, JSON).
        self.shared: dict[tuple[str, ...], tuple[float, bytes]] = {}
        self.shared_of: dict[str, tuple[str, ...]] = {}  # home id -> its shared page's key
        # The rounds before this listener was added (its last one, at least).
        if aggregator.last_round is not None:
            self.recent.append(round_view(aggregator.last_round))

    @property
    def watching(self) -> bool:
        return self.changes.watching

    # -- views (the API's)

    def homes_view(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        records = self.aggregator.homes
        return [home_view(self.aggregator, records[i], self.links) for i in ids]

    def homes_frame(self, ids: list[str], pending: int | None = None) -> bytes:
        """``homes``: those homes as they are now.  A page of what a client
        is owed (a snapshot's, a paused client's) says how many are still
        ``pending`` after it (0: the last); its homes are encoded once for
        every client owed the same page within a round (``shared_page``)."""
        if pending is None:
            return frame("homes", {"homes": self.homes_view(ids)})
        return (b'event: homes\ndata: {"homes":' + self.shared_page(ids) + b',"pending":'
                + str(pending).encode("ascii") + b"}\n\n")

    def shared_page(self, ids: list[str]) -> bytes:
        """The JSON list of those homes' views, as encoded for the first
        client owed that page, while none of them has changed since (and
        within the round, at most ``SHARED_S``): ten dashboards opened
        together build a 10,000-home snapshot once, not ten times."""
        key = tuple(ids)
        now = self.clock.seconds()
        found = self.shared.get(key)
        if found is None or now - found[0] >= SHARED_S:
            body = json.dumps(self.homes_view(ids), separators=(",", ":"), allow_nan=False).encode("utf-8")
            found = self.shared[key] = (now, body)
            self.shared_of.update(dict.fromkeys(ids, key))
        return found[1]

    def _unshare(self, home_id: str) -> None:
        key = self.shared_of.pop(home_id, None)
        if key is not None:
            self.shared.pop(key, None)

    def _unshare_all(self) -> None:
        self.shared.clear()
        self.shared_of.clear()

    def events_view(self) -> list[dict[str, Any]]:
        """The events as ``GET /api/v1/events`` lists them."""
        return event_views(self.aggregator, self.seen)

    def power_view(self) -> dict[str, Any]:
        """``power``: the status's figures (``at``, the limit in force,
        what the homes are counted at and measure, the verdict, the
        negotiation, the homes' counts), without its events and last round."""
        status = status_view(self.aggregator, self.links)
        return {key: status[key] for key in POWER_FIELDS}

    def power_frame(self) -> bytes:
        return frame("power", self.power_view())

    def snapshot_frame(self) -> tuple[bytes, list[str]]:
        """The status, the events, the latest rounds and the first ``PAGE``
        homes (by id); the others follow as ``homes`` frames, a page per
        reactor turn (``homes_pending`` says how many)."""
        ids = sorted(self.aggregator.homes)
        first, rest = ids[:PAGE], ids[PAGE:]
        body = json.dumps({"status": status_view(self.aggregator, self.links), "homes_pending": len(rest),
                           "events": self.events_view(), "rounds": list(self.recent)},
                          separators=(",", ":"), allow_nan=False).encode("utf-8")
        # The first page's homes spliced in, as encoded for every client opened this round.
        return b'event: snapshot\ndata: {"homes":' + self.shared_page(first) + b"," + body[1:] + b"\n\n", rest

    # -- pushing

    def _home(self, home_id: str) -> None:
        self._unshare(home_id)
        self.changes.mark(home_id)

    def _events(self) -> None:
        if self.watching:
            self.streams.push(frame("events", {"events": self.events_view()}))

    # -- the moments

    def event_offered(self, offer: Any, outcome: Any, source: str) -> None:
        self._events()

    def binding_event_changed(self, event: Event | None, previous: Event | None) -> None:
        self._unshare_all()
        self._events()
        self.changes.mark()

    def home_joined(self, home_id: str, peer: str) -> None:
        self._home(home_id)

    def home_left(self, home_id: str, counted_w: float) -> None:
        self._home(home_id)

    def home_silent(self, home_id: str, round_number: int, counted_w: float) -> None:
        self._home(home_id)

    def home_answers_again(self, home_id: str) -> None:
        self._home(home_id)

    def bid_received(self, home_id: str, flex: wire.Flex) -> None:
        self._home(home_id)

    def commitment_received(self, home_id: str, commit: wire.Commit) -> None:
        self._home(home_id)

    def measurement(self, home_id: str, measure: wire.Measure) -> None:
        self._home(home_id)

    def budget_sent(self, home_id: str, budget: wire.Budget) -> None:
        self._home(home_id)

    def home_released(self, home_id: str, release: wire.Release) -> None:
        self._home(home_id)

    def round_finished(self, summary: RoundSummary) -> None:
        self._unshare_all()  # a new round: pages are built afresh
        view = round_view(summary)
        self.recent.append(view)
        if self.watching:
            self.streams.push(frame("round", view))
            self.log.debug("round {n} pushed to {clients} stream(s), {ms:.1f} ms after it finished",
                           n=summary.number, clients=len(self.streams.clients),
                           ms=(self.clock.seconds() - summary.finished) * 1e3)


def round_view(summary: RoundSummary) -> dict[str, Any]:
    """ROUND as the API shows it, with the number of homes in it (not
    their table: that is ``GET /api/v1/rounds/{n}``)."""
    return {**aggregator_api.round_view(summary), "homes": len(summary.homes)}


def aggregator_stream(aggregator: Any, clock: IReactorTime) -> Resource:
    """``/api/v1/stream`` of ``aggregator`` (``jeisson.aggregator.core.Aggregator``):
    adds the push's listener to it and returns the resource."""
    push = AggregatorPush(aggregator, clock)
    aggregator.add_listener(push)
    resource = StreamResource(push.streams)
    resource.push = push  # type: ignore[attr-defined]
    return resource


# -------------------------------------------------------------- the home


class HomePush(HomeListener):
    """The home's stream: its status and the loads that changed at most
    once every ``COALESCE_S``, each switch at once."""

    def __init__(self, home: Any, clock: IReactorTime, max_queued: int = MAX_QUEUED_BYTES):
        self.home = home
        self.clock = clock
        # Every load that changed in a push: a home has a few.
        self.changes = Changes(clock, self.snapshot_frame, self.loads_frame, self.status_frame, len(home.loads) or 1,
                               max_queued)
        self.streams = self.changes.streams

    @property
    def watching(self) -> bool:
        return self.changes.watching

    def snapshot_frame(self) -> tuple[bytes, list[str]]:
        return frame("snapshot", {"status": home_api.status_view(self.home),
                                  "loads": self.loads_view(sorted(self.home.loads))}), []

    def loads_view(self, ids: Iterable[str]) -> list[dict[str, Any]]:
        return [home_api.load_view(self.home, load_id) for load_id in ids]

    def loads_frame(self, ids: list[str], pending: int | None = None) -> bytes:
        return frame("loads", {"loads": self.loads_view(ids)})

    def status_frame(self) -> bytes:
        return frame("status", home_api.status_view(self.home))

    def _moved(self, *loads: str) -> None:
        self.changes.mark(*sorted(load for load in loads if load in self.home.loads))

    def changed(self) -> None:
        self._moved()

    def load_switched(self, load: str, on: bool, why: tuple[str, ...]) -> None:
        if self.watching:
            self.streams.push(frame("switch", {"load": load, "on": on, "why": list(why), "ok": True,
                                               "at": wire.format_utc(self.clock.seconds())}))
        self._moved(load)

    def switch_failed(self, load: str, on: bool, why: tuple[str, ...], error: str, code: str | None) -> None:
        if self.watching:
            self.streams.push(frame("switch", {"load": load, "on": on, "why": list(why), "ok": False,
                                               "error": error, "at": wire.format_utc(self.clock.seconds())}))
        self._moved(load)

    def load_found(self, load: str, on: bool, commanded: bool | None) -> None:
        self._moved(load)

    def owner_set(self, load: str, on: bool) -> None:
        self._moved(load)

    def board_left(self, actuator: str, loads: tuple[str, ...]) -> None:
        self._moved(*loads)

    def board_joined(self, actuator: str, peer: str, states: tuple[bool, ...]) -> None:
        self._moved(*[load.id for load in self.home.loads_of(actuator)])

    def measurement(self, actuator: str, watts: tuple[int, ...]) -> None:
        self._moved(*[load.id for load in self.home.loads_of(actuator)])


def home_stream(home: Any, clock: IReactorTime) -> Resource:
    """``/api/v1/stream`` of ``home`` (``jeisson.home.core.Home``): adds
    the push's listener to it and returns the resource."""
    push = HomePush(home, clock)
    home.add_listener(push)
    resource = StreamResource(push.streams)
    resource.push = push  # type: ignore[attr-defined]
    return resource
