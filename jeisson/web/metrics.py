"""``GET /metrics``: the aggregator's and the home's figures in Prometheus's text format.

Each process builds one ``CollectorRegistry`` of its own (never
prometheus_client's global one), so two processes, or two tests, never mix
their figures.  What is in it:

*Gauges read the live state at scrape time.*  A custom collector
(``AggregatorCollector``, ``HomeCollector``) reads the core's facade when
Prometheus asks, and nothing is kept up to date between scrapes: a scrape
at 10,000 homes walks the homes once (``bench/metrics_scrape.py``).

*Counters come from moments.*  The aggregator's and the home's listener
seams (``AggregatorCounts``, ``HomeCounts``: rounds by outcome, budgets,
relay switches by load and cause, ...) and the low rooms' seam,
``jeisson.observe`` (``LowRooms``: protocol errors by link and code,
connections refused and failed authentications by listener and reason, the
store's commit latency).  Each count is a plain integer in a dict, turned
into a metric family only when scraped: a round's ten thousand budgets cost
ten thousand increments, not ten thousand label look-ups.

*Process figures* (CPU, memory, open files) from prometheus_client's
``ProcessCollector`` and ``PlatformCollector``, on the same registry.

The scrape runs on the reactor thread (the state it reads is the reactor's),
never in a thread pool as ``prometheus_client.twisted.MetricsResource``
would; ``jeisson_metrics_scrape_seconds`` says what the previous one took.
Every metric, its labels and example alerts: ``docs/metrics.rst``.

Build them with ``aggregator_metrics(aggregator, reactor)`` and
``home_metrics(home, reactor)``: each returns the ``Resource`` to mount at
``/metrics``, subscribed to its core's moments and to ``jeisson.observe``
until ``MetricsResource.stop()``.
"""

import bisect
import collections
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, InfoMetricFamily
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.web.resource import Resource
from twisted.web.server import Request

import jeisson
from jeisson import observe
from jeisson.aggregator import listeners as aggregator_listeners
from jeisson.home import listeners as home_listeners
from jeisson.limits import ABORTED_LOCKED, ABORTED_RATE, ABORTED_TOO_MANY, ABORTED_TOTAL
from jeisson.web.errors import METHOD_NOT_ALLOWED, NOT_FOUND, ApiError, encode
from jeisson.wire import aggregator_home as wire

# A round takes milliseconds at ten homes and a few seconds at ten thousand
# with late homes; its timeout is ``round_timeout_s`` per phase.
ROUND_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, float("inf"))
# A commit is a fsync or two: a millisecond on an SSD, tens on a card.
COMMIT_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, float("inf"))

# The guards' reasons for turning a connection away at accept, as labels.
_TURNED_AWAY = {ABORTED_TOO_MANY: "per-address limit", ABORTED_TOTAL: "total limit", ABORTED_LOCKED: "locked out",
                ABORTED_RATE: "per-address rate"}

WITHIN_LIMIT = "within_limit"
OVER_LIMIT = "over_limit"
ABANDONED = "abandoned"

NEGOTIATION_MODES = ("idle", "converging", "periodic", "held")


def listener_label(name: str) -> str:
    """A guard's name as a label: ``homes listener`` -> ``homes``."""
    return name.removesuffix(" listener")


def _counter(name: str, documentation: str, labels: tuple[str, ...], counts: dict[Any, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=labels)
    for key, value in counts.items():
        family.add_metric(key if isinstance(key, tuple) else (key,), value)
    return family


def _gauge(name: str, documentation: str, value: float | None) -> GaugeMetricFamily:
    """A gauge without labels; no sample when ``value`` is None (nothing to say)."""
    family = GaugeMetricFamily(name, documentation)
    if value is not None:
        family.add_metric((), value)
    return family


def _labelled(name: str, documentation: str, label: str, values: Iterable[tuple[str, float]]) -> GaugeMetricFamily:
    family = GaugeMetricFamily(name, documentation, labels=(label,))
    for key, value in values:
        family.add_metric((key,), value)
    return family


def _info(role: str, **labels: str) -> InfoMetricFamily:
    return InfoMetricFamily("jeisson", "What this process is: its role and jeisson's version.",
                            value={"role": role, "version": jeisson.__version__, **labels})


class Histogram:
    """Observations counted into fixed buckets, a family only when scraped
    (prometheus_client's own would take a lock per observation and add a
    ``_created`` series)."""

    def __init__(self, name: str, documentation: str, buckets: tuple[float, ...]):
        assert buckets[-1] == float("inf")
        self.name = name
        self.documentation = documentation
        self.bounds = buckets
        self.counts = [0] * len(buckets)
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def family(self) -> HistogramMetricFamily:
        cumulative, total = [], 0
        for bound, count in zip(self.bounds, self.counts, strict=True):
            total += count
            cumulative.append(("+Inf" if bound == float("inf") else repr(bound), total))
        return HistogramMetricFamily(self.name, self.documentation, buckets=cumulative, sum_value=self.sum)


# --------------------------------------------------------------- low rooms


class LowRooms(observe.Observer):
    """The counts of ``jeisson.observe``: what the links, the listeners'
    guards and the store report.  Only the store at ``store_path`` (the
    core's) is timed; the rest is the process's (one role per process)."""

    def __init__(self, store_path: str | None):
        self.store_path = store_path
        self.protocol_errors: collections.Counter[tuple[str, str]] = collections.Counter()
        self.refused: collections.Counter[tuple[str, str]] = collections.Counter()
        self.auth_failures: collections.Counter[tuple[str, str]] = collections.Counter()
        self.commit_seconds = (Histogram("jeisson_store_commit_seconds",
                                         "How long the store took to commit a batch of writes (seconds).",
                                         COMMIT_BUCKETS)
                               if store_path is not None else None)

    def protocol_error(self, link: str, code: str) -> None:
        self.protocol_errors[link, code] += 1

    def connection_refused(self, listener: str, reason: str) -> None:
        self.refused[listener_label(listener), _TURNED_AWAY.get(reason, reason)] += 1

    def auth_failed(self, listener: str, reason: str) -> None:
        self.auth_failures[listener_label(listener), reason] += 1

    def store_committed(self, path: str, seconds: float, rows: int) -> None:
        if self.commit_seconds is not None and path == self.store_path:
            self.commit_seconds.observe(seconds)

    def families(self) -> Iterator[Metric]:
        yield _counter("jeisson_protocol_errors", "Bad lines from a link's peer, by what the link talks to (home, "
                       "aggregator, board) and the wire's error code.", ("link", "code"), self.protocol_errors)
        yield _counter("jeisson_refused_connections", "Connections a listener turned away at accept, or whose "
                       "introduction it refused, by listener and reason.", ("listener", "reason"), self.refused)
        yield _counter("jeisson_auth_failures", "Failed authentications (a wrong secret or key, an unknown id, a "
                       "certificate refused), by listener and reason.", ("listener", "reason"),
                       self.auth_failures)
        if self.commit_seconds is not None:
            yield self.commit_seconds.family()


def _store_families(store: Any) -> Iterator[Metric]:
    """The store's own tallies (``SqliteStore.stats``), when it keeps them."""
    stats = getattr(store, "stats", None)
    if stats is None:
        return
    yield _counter("jeisson_store_commits", "Batches of writes the store committed.", (), {(): stats.commits})
    yield _counter("jeisson_store_rows_written", "Rows (state, journal entries, measurements) committed.", (),
                   {(): stats.rows_written})
    yield _counter("jeisson_store_commit_failures", "Commits that failed (their rows are kept and retried).", (),
                   {(): stats.failures})
    yield _counter("jeisson_store_commit_hangs", "Commits that had not returned after the store's hang_s.", (),
                   {(): stats.hangs})
    yield _counter("jeisson_store_rows_dropped", "Rows dropped while commits failed (past max_pending_rows).", (),
                   {(): stats.rows_dropped})
    try:
        size = stats.size_bytes()
    except OSError:
        size = None
    yield _gauge("jeisson_store_size_bytes", "The store's database file and its write-ahead log (bytes).", size)


# --------------------------------------------------------------- the resource


class MetricsResource(Resource):
    """``GET /metrics`` (and ``HEAD``): the registry in the format the
    scraper asks for (Prometheus text, or OpenMetrics by ``Accept``).

    ``stop()`` unsubscribes what was subscribed for it (its core's
    listener, the ``jeisson.observe`` observer)."""

    isLeaf = True
    log = Logger()

    def __init__(self, registry: CollectorRegistry, stops: Iterable[Callable[[], None]] = ()):
        super().__init__()
        self.registry = registry
        self.last_scrape_s: float | None = None
        self._stops = list(stops)
        # The API's requests by status, counted by its Site (jeisson.web.site.ApiSite.log).
        self.http_requests: collections.Counter[str] = collections.Counter()

    def render_GET(self, request: Request) -> bytes:
        started = time.perf_counter()
        accept = request.getHeader("accept")
        encoder, content_type = choose_encoder(accept or "")
        body = encoder(self.registry)
        self.last_scrape_s = time.perf_counter() - started
        request.setHeader(b"Content-Type", content_type.encode())
        request.setHeader(b"Cache-Control", b"no-store")
        return body

    def render(self, request: Request) -> bytes:
        """GET and HEAD; anything else, or a path below, is the API's error body."""
        if request.postpath not in ([], [b""]):
            error = ApiError(404, NOT_FOUND, "no such path: /metrics has nothing below it")
        elif request.method not in (b"GET", b"HEAD"):
            method = request.method.decode("latin-1")[:16]
            error = ApiError(405, METHOD_NOT_ALLOWED, f"/metrics takes GET or HEAD, not {method}",
                             headers={"Allow": "GET, HEAD"})
        else:
            return super().render(request)
        request.setResponseCode(error.status)
        request.setHeader(b"Content-Type", b"application/json; charset=utf-8")
        request.setHeader(b"Cache-Control", b"no-store")
        for name, value in error.headers.items():
            request.setHeader(name.encode(), value.encode())
        return encode(error.body())

    def scrape_family(self) -> GaugeMetricFamily:
        return _gauge("jeisson_metrics_scrape_seconds", "How long the previous scrape of /metrics took to render, "
                      "on the reactor thread (seconds).", self.last_scrape_s)

    def stop(self) -> None:
        stops, self._stops = self._stops, []
        for stop in stops:
            stop()


class CoreCollector:
    """A core's figures, as a prometheus_client collector: the live ones a
    subclass reads from ``core`` (``live()``), then its moments counted
    (``counts``), the low rooms' (``low``), its store's and the previous
    scrape's time.  No ``describe``: the registry does not collect at
    registration."""

    def __init__(self, core: Any, counts: Any, low: LowRooms, resource: MetricsResource):
        self.core = core
        self.counts = counts
        self.low = low
        self.resource = resource

    def live(self) -> Iterator[Metric]:
        raise NotImplementedError

    def collect(self) -> Iterator[Metric]:
        yield from self.live()
        yield from self.counts.families()
        yield from self.low.families()
        if self.core.store is not None:
            yield from _store_families(self.core.store)
        yield self.resource.scrape_family()
        yield _counter("jeisson_http_requests", "HTTP requests the API answered, by status code.", ("code",),
                       self.resource.http_requests)


def _resource(core: Any, counts: Any, collector: type[CoreCollector]) -> MetricsResource:
    """A registry of its own with the process collectors and ``collector``
    over ``core``; ``counts`` (a listener) added to ``core``, the low rooms'
    observer to ``jeisson.observe``, both until ``MetricsResource.stop``."""
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    store = core.store
    low = LowRooms(getattr(store, "path", None) if store is not None else None)
    core.add_listener(counts)
    observe.add(low)
    resource = MetricsResource(registry, [lambda: core.remove_listener(counts), lambda: observe.remove(low)])
    registry.register(collector(core, counts, low, resource))
    return resource


# --------------------------------------------------------------- aggregator


class AggregatorCounts(aggregator_listeners.AggregatorListener):
    """The aggregator's moments, counted."""

    def __init__(self) -> None:
        self.rounds: dict[str, int] = dict.fromkeys((WITHIN_LIMIT, OVER_LIMIT, ABANDONED), 0)
        self.round_seconds = Histogram("jeisson_round_duration_seconds", "How long a finished round took, from its "
                                       "plan to its last commitment or its timeout (seconds).", ROUND_BUCKETS)
        self.budgets_sent = 0
        self.releases_sent = 0
        self.measurements = 0
        self.bids = 0
        self.commitments = 0
        self.joined = 0
        self.left = 0
        self.went_silent = 0
        self.offers: collections.Counter[tuple[str, str]] = collections.Counter()

    def round_finished(self, summary: Any) -> None:
        self.rounds[WITHIN_LIMIT if summary.within_limit else OVER_LIMIT] += 1
        self.round_seconds.observe(max(0.0, summary.finished - summary.started))

    def round_abandoned(self, round_number: int, why: str) -> None:
        self.rounds[ABANDONED] += 1

    def budget_sent(self, home_id: str, budget: wire.Budget) -> None:
        self.budgets_sent += 1

    def home_released(self, home_id: str, release: wire.Release) -> None:
        self.releases_sent += 1

    def measurement(self, home_id: str, measure: wire.Measure) -> None:
        self.measurements += 1

    def bid_received(self, home_id: str, flex: wire.Flex) -> None:
        self.bids += 1

    def commitment_received(self, home_id: str, commit: wire.Commit) -> None:
        self.commitments += 1

    def home_joined(self, home_id: str, peer: str) -> None:
        self.joined += 1

    def home_left(self, home_id: str, counted_w: float) -> None:
        self.left += 1

    def home_silent(self, home_id: str, round_number: int, counted_w: float) -> None:
        self.went_silent += 1

    def event_offered(self, offer: Any, outcome: Any, source: str) -> None:
        self.offers[outcome.verdict, source] += 1

    def families(self) -> Iterator[Metric]:
        yield _counter("jeisson_rounds", "Rounds that ended, by outcome: within_limit (committed with unknown, "
                       "and measured, within every limit), over_limit, abandoned (another event bound, or a stop).",
                       ("outcome",), self.rounds)
        yield self.round_seconds.family()
        yield _counter("jeisson_budgets_sent", "BUDGET lines sent to homes.", (), {(): self.budgets_sent})
        yield _counter("jeisson_releases_sent", "RELEASE lines sent to homes (their event ended).", (),
                       {(): self.releases_sent})
        yield _counter("jeisson_measurements_received", "MEASURE lines received from homes.", (),
                       {(): self.measurements})
        yield _counter("jeisson_bids_received", "FLEX lines (bids) received from homes.", (), {(): self.bids})
        yield _counter("jeisson_commitments_received", "COMMIT lines received from homes.", (),
                       {(): self.commitments})
        yield _counter("jeisson_home_joins", "Homes registered (a reconnection counts again).", (),
                       {(): self.joined})
        yield _counter("jeisson_home_departures", "Homes whose link closed.", (), {(): self.left})
        yield _counter("jeisson_homes_gone_silent", "Times a home did not commit in time in a round.", (),
                       {(): self.went_silent})
        yield _counter("jeisson_event_offers", "Events offered (added, modified, cancelled, duplicate, refused), "
                       "by verdict and by whom.", ("verdict", "source"), self.offers)


class AggregatorCollector(CoreCollector):
    """The aggregator's live state, read at scrape time from its facade."""

    def live(self) -> Iterator[Metric]:
        # The API's own figures, so that both say the same (imported here:
        # a home's process need not load the aggregator's rooms).
        from jeisson.web.aggregator_api import CANCELLED, STATES, counted_w, event_state

        aggregator = self.core
        now = aggregator.clock.seconds()
        yield _info("aggregator")
        book = aggregator.schedule.book
        yield _gauge("jeisson_limit_watts", "The limit that holds now: the lowest of the events from their start to "
                     "their end (W); no sample when none does.", book.limit_in_force(now))
        grid = aggregator.grid
        yield _labelled("jeisson_feeder_limit_watts", "Each feeder's own limit (W), checked while an event binds.",
                        "feeder", zip(grid.names, grid.limit_w, strict=True))
        # One walk over the homes: what the API's status counts (each home
        # at what the rounds count it), and how many are connected, silent,
        # opted out.
        configured = connected = silent = opted_out = 0
        committed = 0.0
        per_feeder = [0.0] * (len(grid.names) + 1)  # Grid layout: feeders, then homes on none
        feeder_of = grid.feeder_of
        on_none = len(grid.names)
        for record in aggregator.registry:
            configured += 1
            if record.session is not None:
                connected += 1
            if record.unresponsive:
                silent += 1
            flex = record.flex
            if flex is not None and flex.opt_out:
                opted_out += 1
            watts = counted_w(record, now)
            committed += watts
            if feeder_of:
                per_feeder[feeder_of.get(record.id, on_none)] += watts
        yield _gauge("jeisson_committed_watts", "What the aggregator counts the homes at now, as its API's status "
                     "does: each home's last commitment while it takes part, else cautiously (W).", committed)
        yield _labelled("jeisson_feeder_committed_watts", "The same, per feeder (W).", "feeder",
                        zip(grid.names, per_feeder, strict=False))
        watch = aggregator.watch
        yield _gauge("jeisson_measured_watts", "Every configured home at its latest measured power, or without one "
                     "at what the rounds count it (W), live.", watch.total_w)
        yield _labelled("jeisson_feeder_measured_watts", "The measured power on each feeder (W), live.", "feeder",
                        ((name, float(watch.feeder_w[i])) for i, name in enumerate(grid.names)))
        yield _gauge("jeisson_homes_configured", "Homes configured on this aggregator.", configured)
        yield _gauge("jeisson_homes_connected", "Homes with a live, registered link.", connected)
        yield _gauge("jeisson_homes_silent", "Homes that did not commit in time in a round and have not been heard "
                     "from since.", silent)
        yield _gauge("jeisson_homes_opted_out", "Connected homes whose owner opted out of the event.", opted_out)
        last = aggregator.last_round
        yield _gauge("jeisson_last_round_committed_watts", "What the homes committed to in the last finished round "
                     "(W).", None if last is None else last.committed_w)
        yield _gauge("jeisson_last_round_unknown_watts", "What the last finished round counted without a commitment: "
                     "homes away or late, counted cautiously (W).", None if last is None else last.unknown_w)
        yield _gauge("jeisson_last_round_number", "The last finished round's number.",
                     None if last is None else last.number)
        yield _gauge("jeisson_last_round_finished_timestamp_seconds", "When the last round finished (Unix time).",
                     None if last is None else last.finished)
        yield _gauge("jeisson_last_round_within_limit", "1 if the last round was within every limit, else 0.",
                     None if last is None else float(last.within_limit))
        states = dict.fromkeys(STATES, 0)
        for known in book:
            states[event_state(known, now)] += 1
        states[CANCELLED] = len(book.cancelled)
        yield _labelled("jeisson_events", "Events known, by state.", "state", states.items())
        negotiation = aggregator.rounds.negotiation
        mode = "idle" if aggregator.current_event is None else negotiation.mode
        yield _labelled("jeisson_negotiation_mode", "1 for the negotiation's mode now, 0 for the others.", "mode",
                        ((m, float(m == mode)) for m in NEGOTIATION_MODES))
        yield _gauge("jeisson_round_in_progress", "1 while a round is under way.",
                     float(aggregator.round is not None))


def aggregator_metrics(aggregator: Any, reactor: IReactorTime | None = None) -> MetricsResource:
    """The aggregator's ``/metrics``: a registry of its own, the aggregator's
    moments counted from now on (a listener added to it) and the low rooms'
    (``jeisson.observe``).  ``reactor``: unused today (the scrape reads the
    aggregator's own clock); taken so that every builder of a resource in
    ``jeisson.web`` looks alike."""
    return _resource(aggregator, AggregatorCounts(), AggregatorCollector)


# --------------------------------------------------------------------- home


class HomeCounts(home_listeners.HomeListener):
    """The home's moments, counted."""

    def __init__(self) -> None:
        # (load, cause, to): cause the first reason the home chose its
        # relays again (``max_off_s`` when that rule brought it back).
        self.switches: collections.Counter[tuple[str, str, str]] = collections.Counter()
        self.switch_failures: collections.Counter[tuple[str, str]] = collections.Counter()
        self.found: collections.Counter[str] = collections.Counter()
        self.budgets_applied = 0
        self.released: collections.Counter[str] = collections.Counter()
        self.linked = 0
        self.unlinked = 0
        self.refusals = 0
        self.board_joins = 0
        self.board_departures = 0

    def load_switched(self, load: str, on: bool, why: tuple[str, ...]) -> None:
        self.switches[load, switch_cause(why), "on" if on else "off"] += 1

    def switch_failed(self, load: str, on: bool, why: tuple[str, ...], error: str, code: str | None) -> None:
        self.switch_failures[load, code or "timeout"] += 1

    def load_found(self, load: str, on: bool, commanded: bool | None) -> None:
        self.found[load] += 1

    def budget_applied(self, event: str, budget_w: float, end: float, round_number: int) -> None:
        self.budgets_applied += 1

    def budget_released(self, event: str, why: str) -> None:
        self.released[why] += 1

    def aggregator_linked(self, peer: str, version: int) -> None:
        self.linked += 1

    def aggregator_unlinked(self, peer: str) -> None:
        self.unlinked += 1

    def aggregator_refused(self, reason: str) -> None:
        self.refusals += 1

    def board_joined(self, actuator: str, peer: str, states: tuple[bool, ...]) -> None:
        self.board_joins += 1

    def board_left(self, actuator: str, loads: tuple[str, ...]) -> None:
        self.board_departures += 1

    def families(self) -> Iterator[Metric]:
        yield _counter("jeisson_relay_switches", "Relays a board acknowledged switching, by load, cause (the first "
                       "reason the home chose its relays again; max_off_s when that rule brought the load back) and "
                       "the state switched to.", ("load", "cause", "to"), self.switches)
        yield _counter("jeisson_relay_switch_failures", "Switches that failed, by load and code (the board's NAK "
                       "code; timeout for no answer or a board gone).", ("load", "code"), self.switch_failures)
        yield _counter("jeisson_loads_found", "Loads a board's HELLO reported in a state the home did not command.",
                       ("load",), {(load,): n for load, n in self.found.items()})
        yield _counter("jeisson_budgets_applied", "Budgets the home put in force.", (), {(): self.budgets_applied})
        yield _counter("jeisson_budgets_released", "Budgets that stopped holding, by why (release, event over).",
                       ("why",), {(why,): n for why, n in self.released.items()})
        yield _counter("jeisson_uplink_links", "Times the aggregator welcomed the home.", (), {(): self.linked})
        yield _counter("jeisson_uplink_losses", "Times the welcomed link to the aggregator closed.", (),
                       {(): self.unlinked})
        yield _counter("jeisson_uplink_refusals", "Times the aggregator refused the home, or the home its WELCOME.",
                       (), {(): self.refusals})
        yield _counter("jeisson_board_joins", "Boards that said HELLO (a reconnection counts again).", (),
                       {(): self.board_joins})
        yield _counter("jeisson_board_departures", "Boards lost.", (), {(): self.board_departures})


def switch_cause(why: tuple[str, ...]) -> str:
    """One cause for a switch: ``max_off_s`` if that rule brought the load
    back, else the first reason the home chose again, else ``unknown``."""
    if home_listeners.MAX_OFF in why:
        return home_listeners.MAX_OFF
    return why[0] if why else "unknown"


class HomeCollector(CoreCollector):
    """The home's live state, read at scrape time."""

    def live(self) -> Iterator[Metric]:
        home = self.core
        yield _info("home", id=home.config.id)
        budget = home.budget
        yield _gauge("jeisson_budget_watts", "The budget in force from the aggregator (W); no sample when none is.",
                     None if budget is None else budget.budget_w)
        yield _gauge("jeisson_budget_end_timestamp_seconds", "When the budget in force ends (Unix time).",
                     None if budget is None else budget.end)
        yield _gauge("jeisson_drawn_watts", "What the home counts its loads at for the aggregator: rated power for "
                     "each load on or unknown (W).", home.drawn_w())
        yield _gauge("jeisson_measured_watts", "The boards' measured power; a load without a reading at its rated "
                     "power if on or unknown (W).", home.measured_w())
        on = off = unknown = 0
        load_on = GaugeMetricFamily("jeisson_load_on", "1 if the load is on, 0 if off; no sample while unknown "
                                    "(its board unreachable).", labels=("load",))
        load_measured = GaugeMetricFamily("jeisson_load_measured_watts", "Each load's last meter reading (W).",
                                          labels=("load",))
        for load in home.loads.values():
            if load.on is None:
                unknown += 1
            else:
                load_on.add_metric((load.id,), float(load.on))
                if load.on:
                    on += 1
                else:
                    off += 1
            if load.measured_w is not None:
                load_measured.add_metric((load.id,), load.measured_w)
        yield _labelled("jeisson_loads", "The home's loads by state (unknown: their board is unreachable).", "state",
                        (("on", on), ("off", off), ("unknown", unknown)))
        yield load_on
        yield load_measured
        yield _gauge("jeisson_boards_configured", "Boards (actuators) configured.", len(home.config.actuators))
        yield _gauge("jeisson_boards_connected", "Boards with a live link.", len(home.boards))
        yield _gauge("jeisson_uplink_up", "1 while the aggregator has welcomed the home on a live link.",
                     float(home.uplink is not None))
        yield _gauge("jeisson_uplink_refused", "1 if the aggregator refused the home since its last welcome.",
                     float(home.uplink is None and home.refused is not None))
        yield _gauge("jeisson_opted_out", "1 if the owner opted out of the event in progress (or of all).",
                     float(home.opted_out()))


def home_metrics(home: Any, reactor: IReactorTime | None = None) -> MetricsResource:
    """The home's ``/metrics``, as ``aggregator_metrics`` for the aggregator."""
    return _resource(home, HomeCounts(), HomeCollector)
