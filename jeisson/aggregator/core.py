"""The aggregator: a small facade that wires its rooms, without any I/O.

The rooms, each its own module:

``homes``
    The configured homes, their links and what is known of their power.
``schedule``
    The DR events and their live changes; which event binds now; each
    home's own moments in an event's windows; the release at the end.
``rounds`` and ``round``
    When rounds run (the negotiation's mode: converging, periodic, held)
    and each round as a machine (plan, shed, grant, done) owning its timers.
``report``
    The round log lines (a listener) and the operators' snapshot.
``listeners``
    The seam: every moment others care about, announced to the listeners
    added with ``add_listener`` (the status file, the round log, and next a
    store, a web API, metrics).

``watch``
    ``MeasuredWatch``, a listener: the measured total against the binding
    limit between rounds (a round at once when it goes above).
``memory``
    With a store: the journal and the state a restart resumes (a
    listener), read back here before ``start`` (events with their absolute
    times, each event id's anchor, the round numbering, the homes' last
    records).

Home links (``home_link.HomeSession``) call the ``register``,
``session_closed`` and ``*_received`` methods here, and wait for
``durable()`` before they answer; the manhole calls ``add_event``,
``cancel_event`` (both answer once the event is durable), ``snapshot``,
``why`` and ``export_csv``.  Sessions reach the wire only through
``HomeSession.send``.

What is acknowledged is durable first: a home's ``WELCOME`` waits for its
registration, the manhole's verdict on an event for the event, a round's
budgets for the round's number, a budget above what its home draws for
the home's record saying so; an event from the config or the events
file is logged as taken once it (and its anchor) is durable, though it
binds at once.  Without a store, ``durable()`` has already fired and all of
it happens within the call.
"""

from collections.abc import Iterable
from typing import Any

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from jeisson.aggregator import audit, memory, report
from jeisson.aggregator import events as event_rules
from jeisson.aggregator.config import AggregatorConfig
from jeisson.aggregator.events import Event, EventSpec, Offer
from jeisson.aggregator.homes import HomeLink, HomeRecord, Homes
from jeisson.aggregator.listeners import AggregatorListener, Announcer
from jeisson.aggregator.negotiation import Grid
from jeisson.aggregator.round import Round, RoundContext, RoundSummary
from jeisson.aggregator.rounds import SOLVE_IN_THREAD_ABOVE, Rounds, Solver
from jeisson.aggregator.schedule import Schedule
from jeisson.aggregator.watch import MeasuredWatch
from jeisson.moments import parse_moment, refusal
from jeisson.store import Store, StoreError
from jeisson.text import Text
from jeisson.wire import aggregator_home as wire


class Aggregator:
    log = Logger()

    def __init__(self, config: AggregatorConfig, clock: IReactorTime, solve_in_thread: Solver | None = None,
                 listeners: Iterable[AggregatorListener] = (), solve_in_thread_above: int = SOLVE_IN_THREAD_ABOVE,
                 store: Store | None = None):
        """``solve_in_thread``, ``solve_in_thread_above``: see ``Rounds``;
        ``listeners`` are added after the round log, in order.  ``store``
        (open): what is remembered is read back now, and written from now
        on (``memory.Memory``, added after ``listeners``); then the
        ``MeasuredWatch``."""
        self.config = config
        self.clock = clock
        self.store = store
        self.announce = Announcer()
        self.announce.add(report.RoundLog(config.converge_s, config.round_period_s))
        for listener in listeners:
            self.announce.add(listener)
        self.registry = Homes(config, self.announce)
        self.grid = Grid(tuple(f.id for f in config.feeders), tuple(f.limit_w for f in config.feeders),
                         {home: i for i, f in enumerate(config.feeders) for home in f.homes})
        self.schedule = Schedule(clock, self.registry, self.announce, config.seed, self._binding_event,
                                 on_limit=self._limit_in_force, max_event_s=config.max_event_s)
        self.memory = memory.Memory(store, clock, self.registry) if store is not None else None
        context = RoundContext(self.registry, self.grid, self.schedule, clock, config.round_timeout_s, self.announce,
                               self.durable)
        self.rounds = Rounds(context, config.round_period_s, config.converge_s, solve_in_thread,
                             solve_in_thread_above, self.memory.number_taken if self.memory is not None else None)
        # When each event id from the config or the events file was first
        # read: what its +SECONDS count from (kept in the store).
        self.anchors: dict[str, float] = {}
        self.sources: dict[str, str] = {}  # event id -> who offered it last (config, file, manhole)
        if store is not None and self.memory is not None:
            self._resume(store, self.memory)
            self.announce.add(self.memory)
        # Built once the records are restored: it sums them as it starts.
        self.watch = MeasuredWatch(self.registry, self.grid, self.schedule.active_event, self.rounds.request, clock)
        self.announce.add(self.watch)

    def _resume(self, store: Store, memory_: memory.Memory) -> None:
        """What the store remembers, back in the rooms (before ``start``)."""
        kept = memory.resume(store)
        now = self.clock.seconds()
        self.schedule.restore(kept.events, kept.cancelled)
        self.sources.update(kept.sources)
        self.anchors.update(kept.anchors)
        self.rounds.resume_numbering(kept.last_number)
        restored = self.registry.restore(kept.homes, now)
        memory_.resumed(kept.homes)
        if not (kept.events or kept.cancelled or kept.anchors or kept.homes or kept.last_number):
            self.log.info("store {path} is new: nothing to resume", path=store.path)
            return
        self.log.info("resumed from store {path}: {events} event(s), {homes} home record(s), rounds continue "
                      "after {n}", path=store.path, events=len(self.schedule.book.events), homes=len(restored),
                      n=kept.last_number)

    def add_listener(self, listener: AggregatorListener) -> None:
        self.announce.add(listener)

    def remove_listener(self, listener: AggregatorListener) -> None:
        self.announce.remove(listener)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        now = self.clock.seconds()
        for spec in self.config.events:
            # A store failure is logged by offer_event; the event holds.
            self.offer_spec(spec, "the config", now).addErrback(lambda _: None)
        self.schedule.start()

    def stop(self) -> None:
        self.schedule.stop()
        self.rounds.stop()
        if self.memory is not None:
            self.memory.stop()

    def durable(self) -> "Deferred[None]":
        """Fires once everything announced so far is durable (at once
        without a store); errbacks with ``StoreError`` if it cannot be."""
        if self.store is None:
            return succeed(None)
        try:
            return self.store.durable()
        except StoreError:
            return fail()

    def _binding_event(self, event: Event | None, previous: Event | None) -> None:
        self.rounds.binding_event(event, previous)

    def _limit_in_force(self) -> None:
        """An event's limit came into force: the round under way sends at
        once the budgets that limit needs (``Round.hurry``)."""
        if self.rounds.current is not None:
            self.rounds.current.hurry()

    # --------------------------------------------------------------- views

    @property
    def homes(self) -> dict[str, HomeRecord]:
        return self.registry.records

    @property
    def events(self) -> list[Event]:
        return list(self.schedule.book)

    @property
    def current_event(self) -> Event | None:
        return self.schedule.current

    def active_event(self) -> Event | None:
        return self.schedule.active_event()

    @property
    def round(self) -> Round | None:
        return self.rounds.current

    @property
    def last_round(self) -> RoundSummary | None:
        return self.rounds.last

    @property
    def rounds_run(self) -> int:
        return self.rounds.rounds_run

    @property
    def converged_rounds(self) -> int | None:
        return self.rounds.negotiation.converged_rounds

    def snapshot(self) -> dict[str, Any]:
        """A JSON-ready view for operators, the demo and the manhole."""
        return report.snapshot(self.clock, self.registry, self.grid, self.schedule, self.rounds)

    # ------------------------------------------------------------ home links

    def register(self, session: HomeLink, hello: wire.Hello) -> tuple[str, str] | None:
        """Admit a home's session, or say why not as ``(code, detail)``."""
        return self.registry.register(session, hello)

    def session_closed(self, home_id: str, session: HomeLink) -> None:
        if not self.registry.session_closed(home_id, session, self.clock.seconds()):
            return
        if self.rounds.current is not None:
            self.rounds.current.home_gone(home_id)
        self.rounds.request("home left")

    def flex_received(self, home_id: str, flex: wire.Flex) -> None:
        if self.registry.bid_received(home_id, flex):
            self.rounds.request("a home answers again")
        self.rounds.request("flexibility changed")

    def commit_received(self, home_id: str, commit: wire.Commit) -> None:
        """Raises ``ProtocolError`` for a round that never was (and the
        home's commitment then counts for nothing, not even a sign that a
        silent home answers again)."""
        self.rounds.check(commit)
        if self.registry.heard_again(self.registry[home_id]):
            self.rounds.request("a home answers again")
        self.rounds.commit(home_id, commit)

    def measure_received(self, home_id: str, measure: wire.Measure) -> None:
        self.registry.measure_received(home_id, measure)

    # ---------------------------------------------------------------- events

    def offer_event(self, offer: Offer, source: str, note: str = "") -> "Deferred[event_rules.Outcome]":
        """Add, change or cancel an event while running (config, events
        file, manhole).  It binds at once; the Deferred fires with the
        outcome once it is durable (and logged then), or errbacks with
        ``StoreError``, logged (it binds, but would not survive a restart)."""
        outcome = self.schedule.offer(offer, source)
        if outcome.changed:
            self.sources[offer.event.id] = source

        def durable(_: None) -> event_rules.Outcome:
            self.schedule.log_offer(offer, outcome, source, note)
            return outcome

        def not_stored(failure: Failure) -> Failure:
            self.log.error("event {event} version {version} from {source}: {verdict}, but it could not be stored "
                           "({why}): it holds now, and would be lost in a restart", event=offer.event.id,
                           version=offer.event.version, source=source, verdict=outcome.verdict,
                           why=failure.getErrorMessage())
            return failure

        return self.durable().addCallbacks(durable, not_stored)

    def offer_spec(self, spec: EventSpec, source: str, read_at: float) -> "Deferred[event_rules.Outcome]":
        """An event as the config or the events file writes it, read at
        ``read_at``: its ``+SECONDS`` count from its id's anchor, the first
        time that id was read (kept in the store: resolved once, never moved
        by a restart or an edit)."""
        anchor = self.anchors.get(spec.id)
        if anchor is None:
            anchor = self.anchors[spec.id] = read_at
            if self.memory is not None:
                self.memory.anchor(spec.id, anchor)
        note = (f" (its +SECONDS count from {wire.format_utc(anchor)}, when event id {spec.id} was first read; "
                f"give a new id, or UTC times, to schedule it anew)") if spec.relative else ""
        return self.offer_event(spec.offer(anchor), source, note)

    # ------------------------------------------------------------- manhole

    def add_event(self, event_id: str, limit_kw: float, start: Any, end: Any, version: int = 1,
                  start_window_s: float = 0.0, end_window_s: float = 0.0) -> "Deferred[str]":
        """For the manhole: ``aggregator.add_event("gala", 8, "+60", "+1800")``.
        ``start`` and ``end``: UTC (``2026-11-23T18:00:00Z``), ``+SECONDS``
        from now, or epoch seconds.  Fires with the verdict once the event
        is durable (``added``, ``modified: ...``, ``refused: ...``)."""
        now = self.clock.seconds()
        moments = {}
        for field, value in (("start", start), ("end", end)):
            try:
                moments[field] = parse_moment(value, now)
            except ValueError:  # the API's words for it (jeisson.moments)
                return succeed(f"refused: {field}: {refusal(value)}")
        event = Event(event_id, float(limit_kw) * 1000.0, moments["start"], moments["end"],
                      int(version), float(start_window_s), float(end_window_s))
        if not wire.ID_PATTERN.match(event_id) or event.end <= event.start or event.limit_w < 0:
            return succeed(f"refused: check the id, the limit and that the end is after the start ({event})")
        return self.offer_event(Offer(event), "the manhole").addCallback(_verdict)

    def cancel_event(self, event_id: str, version: int | None = None) -> "Deferred[str]":
        """For the manhole: ``aggregator.cancel_event("gala")`` (the next
        version); fires with the verdict once the cancellation is durable."""
        book = self.schedule.book
        known = book.events.get(event_id)
        if version is None:
            version = (known.version if known is not None else book.cancelled.get(event_id, 0)) + 1
        now = self.clock.seconds()
        return self.offer_event(Offer(Event(event_id, 0.0, now, now, version), cancelled=True),
                                "the manhole").addCallback(_verdict)

    def why(self, home_id: str, load_id: str, at: Any = None) -> "Deferred[str]":
        """For the manhole: why ``load_id`` of ``home_id`` was on or off at
        ``at`` (UTC text, epoch seconds, ``-SECONDS`` ago; now if None): the
        chain commitment, budget, round, event, from the journal."""
        if self.store is None:
            return succeed(Text("no record: this aggregator has no store ([store] path = none), so it keeps no "
                                "journal"))
        now = self.clock.seconds()
        moment = now if at is None else parse_moment(at, now)
        store = self.store
        # What is queued is committed first: the journal up to now.
        return self.durable().addCallback(lambda _: audit.why(store, home_id, load_id, moment)).addCallback(Text)

    def export_csv(self, path: str, since: Any = None, until: Any = None, home: str | None = None) -> "Deferred[int]":
        """For the manhole: the homes' measured power (or one home's) to a
        CSV file at ``path``; fires with the number of rows."""
        if self.store is None:
            return fail(StoreError("no store ([store] path = none): no measurements are kept"))
        now = self.clock.seconds()
        store = self.store
        return self.durable().addCallback(
            lambda _: store.export_csv(path, subjects=[home] if home is not None else None,
                                       since=None if since is None else parse_moment(since, now),
                                       until=None if until is None else parse_moment(until, now)))


def _verdict(outcome: event_rules.Outcome) -> str:
    return f"{outcome.verdict}: {outcome.detail}" if outcome.detail else outcome.verdict
