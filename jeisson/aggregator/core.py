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

Home links (``home_link.HomeSession``) call the ``register``,
``session_closed`` and ``*_received`` methods here; the manhole calls
``add_event``, ``cancel_event`` and ``snapshot``.  Sessions reach the wire
only through ``HomeSession.send``.
"""

from collections.abc import Iterable
from typing import Any

from twisted.internet.interfaces import IReactorTime

from jeisson.aggregator import events as event_rules
from jeisson.aggregator import report
from jeisson.aggregator.config import AggregatorConfig
from jeisson.aggregator.events import Event, Offer
from jeisson.aggregator.homes import HomeLink, HomeRecord, Homes
from jeisson.aggregator.listeners import AggregatorListener, Announcer
from jeisson.aggregator.negotiation import Grid
from jeisson.aggregator.round import Round, RoundContext, RoundSummary
from jeisson.aggregator.rounds import SOLVE_IN_THREAD_ABOVE, Rounds, Solver
from jeisson.aggregator.schedule import Schedule
from jeisson.wire import aggregator_home as wire


class Aggregator:
    def __init__(self, config: AggregatorConfig, clock: IReactorTime, solve_in_thread: Solver | None = None,
                 listeners: Iterable[AggregatorListener] = (), solve_in_thread_above: int = SOLVE_IN_THREAD_ABOVE):
        """``solve_in_thread``, ``solve_in_thread_above``: see ``Rounds``;
        ``listeners`` are added after the round log, in order."""
        self.config = config
        self.clock = clock
        self.announce = Announcer()
        self.announce.add(report.RoundLog(config.converge_s, config.round_period_s))
        for listener in listeners:
            self.announce.add(listener)
        self.registry = Homes(config, self.announce)
        self.grid = Grid(tuple(f.id for f in config.feeders), tuple(f.limit_w for f in config.feeders),
                         {home: i for i, f in enumerate(config.feeders) for home in f.homes})
        self.schedule = Schedule(clock, self.registry, self.announce, config.seed, self._binding_event)
        self.rounds = Rounds(RoundContext(self.registry, self.grid, self.schedule, clock, config.round_timeout_s,
                                   self.announce), config.round_period_s, config.converge_s, solve_in_thread,
                             solve_in_thread_above)

    def add_listener(self, listener: AggregatorListener) -> None:
        self.announce.add(listener)

    def remove_listener(self, listener: AggregatorListener) -> None:
        self.announce.remove(listener)

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        for event in self.config.events:
            self.offer_event(Offer(event), "the config")
        self.schedule.start()

    def stop(self) -> None:
        self.schedule.stop()
        self.rounds.stop()

    def _binding_event(self, event: Event | None, previous: Event | None) -> None:
        self.rounds.binding_event(event, previous)

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
        if not self.registry.session_closed(home_id, session):
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

    # ------------------------------------------------------------- manhole

    def offer_event(self, offer: Offer, source: str) -> event_rules.Outcome:
        """Add, change or cancel an event while running (events file, manhole)."""
        return self.schedule.offer(offer, source)

    def add_event(self, event_id: str, limit_kw: float, start: Any, end: Any, version: int = 1,
                  start_window_s: float = 0.0, end_window_s: float = 0.0) -> str:
        """For the manhole: ``aggregator.add_event("gala", 8, "+60", "+1800")``.
        ``start`` and ``end``: UTC (``2026-11-23T18:00:00Z``), ``+SECONDS``
        from now, or epoch seconds."""
        now = self.clock.seconds()
        event = Event(event_id, float(limit_kw) * 1000.0, _moment(start, now), _moment(end, now), int(version),
                      float(start_window_s), float(end_window_s))
        if not wire.ID_PATTERN.match(event_id) or event.end <= event.start or event.limit_w < 0:
            return f"refused: check the id, the limit and that the end is after the start ({event})"
        outcome = self.offer_event(Offer(event), "the manhole")
        return f"{outcome.verdict}: {outcome.detail}" if outcome.detail else outcome.verdict

    def cancel_event(self, event_id: str, version: int | None = None) -> str:
        """For the manhole: ``aggregator.cancel_event("gala")`` (the next version)."""
        book = self.schedule.book
        known = book.events.get(event_id)
        if version is None:
            version = (known.version if known is not None else book.cancelled.get(event_id, 0)) + 1
        now = self.clock.seconds()
        outcome = self.offer_event(Offer(Event(event_id, 0.0, now, now, version), cancelled=True), "the manhole")
        return f"{outcome.verdict}: {outcome.detail}"


def _moment(value: Any, now: float) -> float:
    """A manhole time: epoch seconds, ``+SECONDS`` from now, or UTC text."""
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if text.startswith("+"):
        return now + float(text[1:])
    return wire.parse_utc(text)
