"""The aggregator's state and negotiation rounds, without any I/O.

``Aggregator`` holds the configured homes, their live sessions and latest
reports, and the DR events.  While an event is active it runs rounds:

1. *plan*: the latest flexibility of every connected home, minus the power of
   homes that are known but not taking part (disconnected, or silent in a
   round until heard from again: counted at their last known power, never
   at zero), gives each home a target budget of whole loads, within the
   total limit and every feeder's;
2. *shed*: homes whose target is below their present draw, and with them
   those kept at it, get their budget first, and the round waits for their
   commitments (or ``round_timeout_s``); with nobody to shed, this phase is
   skipped;
3. *grant*: the other homes get their target, capped by the headroom left
   after the real commitments of phase 2, and the round waits again;
4. *log*: each home's demand, budget, commitment and loads, and the totals
   against the limits.

A *negotiation* is the rounds that follow each other while bids change:
bids -> budgets -> commitments -> new bids, until a round brings no new bid,
so no commitment can change (converged), or ``converge_s`` has passed.  Then rounds run
every ``round_period_s``, and shortly after a home joins, leaves or reports a
change.  When the last active event ends, every home in it gets
``RELEASE``.  Sessions reach the wire only through ``HomeSession.send``.
"""

import random

import attrs
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from jeisson.aggregator import events as event_rules
from jeisson.aggregator import negotiation
from jeisson.aggregator.config import AggregatorConfig
from jeisson.aggregator.events import Event, EventBook, Offer
from jeisson.aggregator.negotiation import Grid, Offers
from jeisson.wire import aggregator_home as wire

# Coalesce bursts of joins and reports into one round.
ROUND_DEBOUNCE_S = 0.2
# Above this many homes in a round, one line sums the round up instead of a
# line per home (formatting them took most of a round's time at 1,000 homes).
PER_HOME_LOG_LIMIT = 20
# Budgets written per reactor turn: the first homes start switching while
# the aggregator writes the others' (at 1,000 homes, writing them all took
# 15 to 25 ms, during which no home had one).
DISPATCH_BATCH = 100


@attrs.define(eq=False)
class HomeRecord:
    """What the aggregator knows of one configured home."""

    id: str
    secret: str
    session: object = None
    flex: wire.Flex | None = None
    offers: Offers | None = None
    level_w: float | None = None  # last known draw: latest COMMIT or FLEX
    measured_w: float | None = None
    measured_at: float | None = None
    budget_w: float | None = None
    on: tuple[str, ...] = ()
    in_event: str | None = None
    # Did not commit in time in a round: planned as fixed demand (at its
    # cautious power) until it is heard from again with a FLEX or COMMIT.
    unresponsive: bool = False

    @property
    def connected(self) -> bool:
        return self.session is not None

    def cautious_w(self, granted_w: float | None = None) -> float:
        """The power to assume for a home that cannot answer now: the most
        of its last commitment or report, its last measurement, and what it
        was last granted."""
        known = [w for w in (self.level_w, self.measured_w, granted_w) if w is not None]
        return max(known) if known else 0.0


@attrs.define(eq=False)
class Round:
    number: int
    event: Event
    started: float
    targets: dict[str, float]
    bids: dict[str, int]
    feasible: bool
    unknown_w: float
    feeder_unknown_w: object  # numpy array, per feeder (Grid layout)
    phase: str = "shed"
    granted: dict[str, float] = attrs.Factory(dict)
    waiting: set[str] = attrs.Factory(set)
    committed: dict[str, wire.Commit] = attrs.Factory(dict)
    late: set[str] = attrs.Factory(set)
    timeout: object = None
    scheduled: list = attrs.Factory(list)  # budgets waiting for their home's start, or their batch


@attrs.frozen
class RoundSummary:
    number: int
    event: str
    limit_w: float
    committed_w: float
    unknown_w: float
    feasible: bool
    homes: dict[str, dict]
    started: float
    finished: float
    feeders: dict[str, dict] = attrs.Factory(dict)  # id -> limit_w, committed_w, unknown_w

    @property
    def within_limit(self) -> bool:
        """Commitments plus what is unknown within the total and every feeder."""
        if self.committed_w + self.unknown_w > self.limit_w + 1e-6:
            return False
        return all(f["committed_w"] + f["unknown_w"] <= f["limit_w"] + 1e-6 for f in self.feeders.values())


class Aggregator:
    log = Logger()

    def __init__(self, config: AggregatorConfig, clock: IReactorTime):
        self.config = config
        self.clock = clock
        self.homes = {h.id: HomeRecord(h.id, h.secret) for h in config.homes.values()}
        self.grid = Grid(tuple(f.id for f in config.feeders), tuple(f.limit_w for f in config.feeders),
                         {home: i for i, f in enumerate(config.feeders) for home in f.homes})
        self.book = EventBook()
        # Draws for each home's own start and restore within an event's
        # randomisation windows; seeded from the config to replay a run.
        self.rng = random.Random(config.seed)
        self._draws: dict[tuple[str, str], tuple[float, float]] = {}
        self._releases: dict[str, object] = {}  # home -> its scheduled RELEASE
        self._boundary_call = None
        self._running = False
        self.round: Round | None = None
        self.rounds_run = 0
        self.last_round: RoundSummary | None = None
        self.current_event: Event | None = None
        self._round_number = 0
        self._pending_call = None
        self._pending_after_round = False
        # The negotiation under way: when it began, and its rounds so far.
        self._negotiating_since: float | None = None
        self.negotiation_rounds = 0
        self._held = False  # a negotiation ran out of time: changes wait for the period
        self.converged_rounds: int | None = None  # rounds the last converged negotiation took
        self.changed = True  # the status snapshot needs rewriting

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        for event in self.config.events:
            self.offer_event(Offer(event), "the config")
        self._running = True
        self._event_boundary()

    def stop(self) -> None:
        for call in [self._boundary_call, self._pending_call, *self._releases.values()]:
            if call is not None and call.active():
                call.cancel()
        self._boundary_call = None
        self._releases = {}
        self._pending_call = None
        self._running = False
        # Stopped: no event is ours to negotiate any more.
        self.current_event = None
        if self.round is not None:
            # Its timeout and any budgets still waiting for their home's moment.
            self._abandon_round()

    @property
    def events(self) -> list[Event]:
        return list(self.book)

    def active_event(self) -> Event | None:
        """The binding event now: among those in force (from the start of
        their start window), the lowest limit."""
        now = self.clock.seconds()
        active = self.book.active(now)
        return min(active, key=lambda e: e.limit_w) if active else None

    # --------------------------------------------------------- live events

    def offer_event(self, offer: Offer, source: str) -> event_rules.Outcome:
        """Add, change or cancel an event while running (events file, manhole)."""
        event = offer.event
        outcome = self.book.offer(offer, self.clock.seconds())
        if outcome.verdict == event_rules.REFUSED:
            self.log.warn("event {event} version {version} from {source} refused: {why}", event=event.id,
                          version=event.version, source=source, why=outcome.detail)
        elif outcome.verdict == event_rules.DUPLICATE:
            self.log.debug("event {event} version {version} from {source}: a duplicate, no change",
                           event=event.id, version=event.version, source=source)
        elif outcome.verdict == event_rules.CANCELLED:
            self.log.info("event {event} cancelled by {source} ({why})", event=event.id, source=source,
                          why=outcome.detail)
        else:
            self.log.info("event {event} {verdict} from {source}: limit {limit:.0f} W from {start} to {end}"
                          "{windows}{why}", event=event.id, verdict=outcome.verdict, source=source,
                          limit=event.limit_w, start=wire.format_utc(event.start), end=wire.format_utc(event.end),
                          windows=f" (homes start within {event.start_window_s:g} s before it, restore within "
                                  f"{event.end_window_s:g} s after)" if event.start_window_s or event.end_window_s
                          else "", why=f"; {outcome.detail}" if outcome.detail else "")
        if outcome.changed:
            self.changed = True
            if self._running:
                # The binding event may have changed now.
                self._event_boundary()
        return outcome

    def add_event(self, event_id: str, limit_kw: float, start, end, version: int = 1,
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
        known = self.book.events.get(event_id)
        if version is None:
            version = (known.version if known is not None else self.book.cancelled.get(event_id, 0)) + 1
        now = self.clock.seconds()
        outcome = self.offer_event(Offer(Event(event_id, 0.0, now, now, version), cancelled=True), "the manhole")
        return f"{outcome.verdict}: {outcome.detail}"

    def _schedule_boundary(self) -> None:
        now = self.clock.seconds()
        moment = self.book.next_boundary(now)
        call = self._boundary_call
        if call is not None and call.active():
            if moment is not None and call.getTime() == moment:
                return
            call.cancel()
        self._boundary_call = None if moment is None else self.clock.callLater(moment - now, self._event_boundary)

    def _draw(self, event: Event, home_id: str) -> tuple[float, float]:
        key = (event.id, home_id)
        if key not in self._draws:
            self._draws[key] = (self.rng.random(), self.rng.random())
        return self._draws[key]

    def _home_start(self, event: Event, home_id: str) -> float:
        """When this home sheds for ``event``: uniformly within its start window."""
        if not event.start_window_s:
            return event.start
        return event.start - event.start_window_s * (1.0 - self._draw(event, home_id)[0])

    def _home_restore(self, event: Event, home_id: str, chain_end: float) -> float:
        """When this home restores: ``chain_end``, the end of the chain of
        events, plus its own draw within the end window."""
        if not event.end_window_s:
            return chain_end
        return chain_end + event.end_window_s * self._draw(event, home_id)[1]

    # -------------------------------------------------------------- sessions

    def register(self, session, hello: wire.Hello) -> tuple[str, str] | None:
        """Admit a home's session, or say why not as ``(code, detail)``."""
        import hmac

        record = self.homes.get(hello.home)
        if record is None:
            return wire.UNKNOWN_HOME, f"home {hello.home!r} is not configured on this aggregator"
        if not hmac.compare_digest(record.secret.encode(), hello.secret.encode()):
            return wire.BAD_CREDENTIAL, f"wrong secret for home {hello.home!r}"
        if record.session is not None:
            # The home reconnected before its old link was found dead.
            self.log.info("home {home} reconnected from {peer}; closing its old link", home=record.id,
                          peer=session.peer)
            # Detach first: the home has not left, only its old link has.
            old, record.session = record.session, None
            old.supersede()
        record.session = session
        self.changed = True
        self.log.info("home {home} registered from {peer}", home=record.id, peer=session.peer)
        return None

    def session_closed(self, home_id: str, session) -> None:
        record = self.homes[home_id]
        if record.session is not session:
            return
        record.session = None
        record.flex = None
        record.offers = None
        self.changed = True
        self.log.info("home {home} left; counted at {w:.0f} W while it is away", home=home_id,
                      w=record.cautious_w())
        if self.round is not None and home_id in self.round.waiting:
            self.round.waiting.discard(home_id)
            self.round.late.add(home_id)
            self._maybe_advance()
        self.request_round("home left")

    def flex_received(self, home_id: str, flex: wire.Flex) -> None:
        record = self.homes[home_id]
        offers = Offers.of(flex)
        if flex.opt_out != (record.flex is not None and record.flex.opt_out):
            if flex.opt_out:
                self.log.info("home {home} opted out: its {w:.0f} W are counted as fixed demand", home=home_id,
                              w=offers.must_w)
            elif record.flex is not None:
                self.log.info("home {home} opted back in", home=home_id)
        record.flex = flex
        record.offers = offers
        self._heard_again(record)
        record.level_w = record.offers.on_w
        self.changed = True
        self.request_round("flexibility changed")

    def measure_received(self, home_id: str, measure: wire.Measure) -> None:
        record = self.homes[home_id]
        record.measured_w = measure.power_w
        record.measured_at = measure.at
        self.changed = True

    def commit_received(self, home_id: str, commit: wire.Commit) -> None:
        record = self.homes[home_id]
        self._heard_again(record)
        current = self.round
        if current is None or commit.round != current.number or home_id not in current.granted:
            if commit.round == self._round_number and self.round is None:
                # The answer to a RELEASE, or a late commit to the last round.
                record.level_w = commit.committed_w
                record.on = commit.on
                self.changed = True
                return
            self.log.debug("home {home}: ignoring a commitment for old round {n}", home=home_id, n=commit.round)
            return
        record.level_w = commit.committed_w
        record.on = commit.on
        current.committed[home_id] = commit
        current.waiting.discard(home_id)
        self.changed = True
        if commit.committed_w > current.granted[home_id] + 1e-6:
            self.log.warn(
                "home {home} committed {c:.0f} W above its budget {b:.0f} W (loads held on by their constraints)",
                home=home_id, c=commit.committed_w, b=current.granted[home_id])
        self._maybe_advance()

    def _heard_again(self, record: HomeRecord) -> None:
        if record.unresponsive:
            record.unresponsive = False
            self.log.info("home {home} answers again; it takes part from the next round", home=record.id)
            self.request_round("a home answers again")

    # ---------------------------------------------------------------- events

    def _event_boundary(self) -> None:
        self._schedule_boundary()
        event = self.active_event()
        previous = self.current_event
        self.current_event = event
        self.changed = True
        if event is not None and (previous is None or previous.id != event.id):
            self.log.info("event {event} active: limit {limit:.0f} W until {end}", event=event.id,
                          limit=event.limit_w, end=wire.format_utc(event.end))
        if event is None and previous is not None:
            self._release(previous)
            return
        if self.round is not None and (event is None or self.round.event.id != event.id):
            # A round under another limit must not go on granting under it.
            self.log.info("round {n} abandoned: event {event} now binds", n=self.round.number,
                          event=event.id if event else "none")
            self._abandon_round()
        if event is not None:
            self._held = False
            # No burst to coalesce at a boundary, which is a known instant:
            # the round starts at once.
            self.request_round("event boundary", delay=0.0)

    def _release(self, event: Event) -> None:
        """The event is over: each home is released at its own restore time."""
        if self.round is not None:
            self._abandon_round()
        self._round_number += 1
        now = self.clock.seconds()
        released, later = [], []
        for record in self.homes.values():
            if record.in_event is None:
                continue
            # From when it really ended: a cancelled event restores from now.
            at = min(event.end, now)
            if event.end_window_s:
                at += event.end_window_s * self._draw(event, record.id)[1]
            if at > now:
                self._releases[record.id] = self.clock.callLater(at - now, self._release_home, record.id, event,
                                                                 self._round_number)
                later.append(f"{record.id} at {wire.format_utc(at)}")
            elif self._release_home(record.id, event, self._round_number):
                released.append(record.id)
        self.log.info("event {event} ended; released homes: {homes}{later}", event=event.id,
                      homes=", ".join(released) or "none",
                      later=f"; later, each at its own time: {', '.join(later)}" if later else "")

    def _release_home(self, home_id: str, event: Event, round_number: int) -> bool:
        self._releases.pop(home_id, None)
        record = self.homes[home_id]
        if record.in_event is None or self.current_event is not None:
            return False
        record.in_event = None
        record.budget_w = None
        self.changed = True
        if record.session is None:
            return False
        record.session.send(wire.Release(round_number, event.id))
        return True

    # ---------------------------------------------------------------- rounds

    def request_round(self, reason: str, delay: float = ROUND_DEBOUNCE_S) -> None:
        if self.current_event is None:
            return
        if self.round is not None:
            self._pending_after_round = True
            return
        self.log.debug("round requested: {reason}", reason=reason)
        pending = self._pending_call
        if pending is None or not pending.active():
            self._pending_call = self.clock.callLater(delay, self.run_round)
        elif self._held and delay > 0:
            # The last negotiation did not settle in time: the next round
            # comes on the period, so homes that keep changing cannot
            # keep the others switching.
            return
        elif pending.getTime() > self.clock.seconds() + delay:
            # The next periodic round is far off: a change brings it forward.
            pending.reset(delay)

    def run_round(self) -> None:
        self._pending_call = None
        event = self.active_event()
        if event is None or self.round is not None:
            return
        self._held = False
        if self._negotiating_since is None:
            self._negotiating_since = self.clock.seconds()
            self.negotiation_rounds = 0
        participants = {h: r for h, r in self.homes.items()
                        if r.connected and r.offers is not None and not r.unresponsive}
        away = {h: r.cautious_w(r.budget_w if r.in_event else None)
                for h, r in self.homes.items() if h not in participants}
        unknown_w = sum(away.values())
        feeder_unknown_w = self.grid.sums(away)
        result = negotiation.plan({h: r.offers for h, r in participants.items()}, event.limit_w - unknown_w,
                                  self.grid, self.grid.rooms(feeder_unknown_w))
        self._round_number += 1
        bids = {h: r.flex.bid for h, r in participants.items()}
        self.round = Round(self._round_number, event, self.clock.seconds(), result.budgets, bids, result.feasible,
                           unknown_w, feeder_unknown_w)
        if not result.feasible:
            self.log.warn(
                "round {n} event {event}: must-run loads and homes that cannot answer ({unknown:.0f} W) exceed"
                " the limit of {limit:.0f} W or a feeder's; only the must-run loads are served there",
                n=self._round_number, event=event.id, unknown=unknown_w, limit=event.limit_w)
        # The homes that shed go first.  A home kept at what it draws takes
        # nothing from the others and goes with them; with nobody to shed,
        # every home is answered at once in the grant.
        first = {h: t for h, t in result.budgets.items() if t <= self._level(h) + 1e-6}
        if all(t >= self._level(h) - 1e-6 for h, t in first.items()):
            first = {}
        self._dispatch(first)

    def _level(self, home_id: str) -> float:
        record = self.homes[home_id]
        return record.level_w if record.level_w is not None else 0.0

    def _dispatch(self, budgets: dict[str, float]) -> None:
        """Send each home its budget: at once (``DISPATCH_BATCH`` per reactor
        turn), or, before the event's start, at the home's own moment in the
        start window."""
        current = self.round
        current.granted.update(budgets)
        current.waiting = set(budgets)
        now = self.clock.seconds()
        last = now
        due = []
        for home_id, budget in budgets.items():
            pending = self._releases.pop(home_id, None)
            if pending is not None and pending.active():
                pending.cancel()
            at = self._home_start(current.event, home_id)
            if at > now:
                current.scheduled.append(self.clock.callLater(at - now, self._send_budget, current, home_id, budget))
                last = max(last, at)
            else:
                due.append((home_id, budget))
        if current.waiting:
            self._send_batch(current, current.phase, due, 0, last)
        else:
            self._maybe_advance()

    def _send_batch(self, current: Round, phase: str, due: list, start: int, last: float) -> None:
        """Budgets ``due[start:]``, a batch per reactor turn; after the last
        batch, the phase's timeout: ``round_timeout_s`` for every home from
        its budget (or from its moment in the start window, ``last`` the
        latest)."""
        if current is not self.round or current.phase != phase:
            return
        # Once per batch: the events may change between two reactor turns.
        chain_end = self.book.chain_end(current.event)
        for home_id, budget in due[start:start + DISPATCH_BATCH]:
            self._send_budget(current, home_id, budget, chain_end)
        if current is not self.round or current.phase != phase:
            return  # what the sending set off ended the phase: nothing more is its to do
        if start + DISPATCH_BATCH < len(due):
            current.scheduled.append(self.clock.callLater(0, self._send_batch, current, phase, due,
                                                          start + DISPATCH_BATCH, last))
        else:
            now = self.clock.seconds()
            current.timeout = self.clock.callLater(max(last - now, 0.0) + self.config.round_timeout_s,
                                                   self._phase_timeout, current)

    def _send_budget(self, current: Round, home_id: str, budget: float, chain_end: float | None = None) -> None:
        record = self.homes[home_id]
        if current is not self.round or record.session is None:
            return
        if chain_end is None:
            chain_end = self.book.chain_end(current.event)
        record.budget_w = budget
        record.in_event = current.event.id
        record.session.send(wire.Budget(current.number, current.bids[home_id], current.event.id, budget,
                                        self._home_restore(current.event, home_id, chain_end)))

    def _phase_timeout(self, current: Round) -> None:
        if current is not self.round:
            return
        current.timeout = None
        for home_id in sorted(current.waiting):
            self.log.warn("round {n}: home {home} did not commit within {t} s; counted at {w:.0f} W",
                          n=current.number, home=home_id, t=self.config.round_timeout_s,
                          w=self.homes[home_id].cautious_w(current.granted[home_id]))
        current.late |= current.waiting
        for home_id in current.waiting:
            self.homes[home_id].unresponsive = True
        current.waiting = set()
        # The others can make up for what the late homes did not shed: in a
        # round that counts those homes as they stand.
        self._pending_after_round = True
        self._maybe_advance()

    def _maybe_advance(self) -> None:
        current = self.round
        if current is None or current.waiting:
            return
        if current.timeout is not None and current.timeout.active():
            current.timeout.cancel()
        current.timeout = None
        if current.phase == "shed":
            current.phase = "grant"
            self._grant(current)
        else:
            self._finish(current)

    def _grant(self, current: Round) -> None:
        rest = [h for h in current.targets if h not in current.granted and self.homes[h].connected]
        if not rest:
            # Everyone was answered in the shed phase: nothing to grant, and
            # the round is done as its last commitment came in.
            self._finish(current)
            return
        # A shedding home that did not commit is counted cautiously (at the
        # most of its old level, measurement and budget): the headroom is
        # what the homes' real commitments leave.
        levels = {h: self._counted_w(h, current) for h in current.targets}
        headroom = current.event.limit_w - current.unknown_w - sum(levels.values())
        feeder_headroom = self.grid.rooms(current.feeder_unknown_w + self.grid.sums(levels))
        # Headroom falls short only when a home could not shed; then the
        # largest targets are served first, in a stable order.
        wanted = {h: current.targets[h] for h in sorted(rest, key=lambda h: (-current.targets[h], h))}
        self._dispatch(negotiation.grant_increases(wanted, levels, headroom, self.grid, feeder_headroom))

    def _counted_w(self, home_id: str, current: Round) -> float:
        """What a round counts a home at: its commitment if it made one,
        else its level, or cautiously if it was asked and did not answer."""
        if home_id in current.committed:
            return current.committed[home_id].committed_w
        record = self.homes[home_id]
        if home_id in current.late or not record.connected:
            return record.cautious_w(current.granted.get(home_id))
        return self._level(home_id)

    def _abandon_round(self) -> None:
        current, self.round = self.round, None
        for call in [current.timeout, *current.scheduled]:
            if call is not None and call.active():
                call.cancel()

    def _finish(self, current: Round) -> None:
        # The round is done as its last commitment is counted: what follows
        # is its bookkeeping.
        finished = self.clock.seconds()
        self.round = None
        self.rounds_run += 1
        homes = {}
        committed = {}
        unknown_homes = {}
        for home_id in current.targets:
            record = self.homes[home_id]
            commit = current.committed.get(home_id)
            offers = record.flex.loads if record.flex is not None else ()
            if commit is not None:
                committed[home_id] = commit.committed_w
            else:
                unknown_homes[home_id] = self._counted_w(home_id, current)
            on = commit.on if commit is not None else record.on
            on_ids = set(on)
            homes[home_id] = {
                "demand_w": record.offers.demand_w if record.offers is not None else None,
                "budget_w": current.granted.get(home_id),
                "committed_w": commit.committed_w if commit is not None else None,
                "on": list(on),
                "off": [o.id for o in offers if o.id not in on_ids],
            }
            if len(current.targets) <= PER_HOME_LOG_LIMIT:
                self.log.info(
                    "round {n} event {event}: home {home}: demand {demand} W, budget {budget} W, committed"
                    " {committed} W, on [{on}], off [{off}]",
                    n=current.number, event=current.event.id, home=home_id,
                    demand=_watts(homes[home_id]["demand_w"]), budget=_watts(homes[home_id]["budget_w"]),
                    committed=_watts(homes[home_id]["committed_w"]), on=", ".join(homes[home_id]["on"]),
                    off=", ".join(homes[home_id]["off"]))
        if len(current.targets) > PER_HOME_LOG_LIMIT:
            self.log.info(
                "round {n} event {event}: {count} homes, {late} of them late; per-home figures in the status file",
                n=current.number, event=current.event.id, count=len(current.targets), late=len(unknown_homes))
        committed_total = sum(committed.values())
        unknown = current.unknown_w + sum(unknown_homes.values())
        feeder_committed = self.grid.sums(committed)
        feeder_unknown = current.feeder_unknown_w + self.grid.sums(unknown_homes)
        feeders = {
            name: {"limit_w": self.grid.limit_w[i], "committed_w": float(feeder_committed[i]),
                   "unknown_w": float(feeder_unknown[i])}
            for i, name in enumerate(self.grid.names)
        }
        summary = RoundSummary(current.number, current.event.id, current.event.limit_w, committed_total, unknown,
                               current.feasible, homes, current.started, finished, feeders)
        self.last_round = summary
        self.changed = True
        for name, f in feeders.items():
            self.log.info(
                "round {n} event {event}: feeder {feeder}: committed {committed:.0f} W + unknown {unknown:.0f} W"
                " of limit {limit:.0f} W: {verdict}",
                n=current.number, event=current.event.id, feeder=name, committed=f["committed_w"],
                unknown=f["unknown_w"], limit=f["limit_w"],
                verdict="within limit" if f["committed_w"] + f["unknown_w"] <= f["limit_w"] + 1e-6 else "OVER LIMIT")
        self.log.info(
            "round {n} event {event}: committed {committed:.0f} W + unknown {unknown:.0f} W"
            " of limit {limit:.0f} W: {verdict} (round took {ms:.1f} ms)",
            n=current.number, event=current.event.id, committed=committed_total, unknown=unknown,
            limit=current.event.limit_w, verdict="within limit" if summary.within_limit else "OVER LIMIT",
            ms=(summary.finished - current.started) * 1e3)
        self._next_round(current)

    def _next_round(self, current: Round) -> None:
        """Follow up while bids change, within ``converge_s`` of the first round.

        A home that switched reports its new flexibility before it commits,
        so a round during which no new bid arrived cannot change anyone's
        commitment: the negotiation has converged.
        """
        self.negotiation_rounds += 1
        elapsed = self.clock.seconds() - self._negotiating_since
        if not self._pending_after_round:
            self.log.info("negotiation converged after {rounds} round(s) in {t:.1f} s",
                          rounds=self.negotiation_rounds, t=elapsed)
            self._negotiating_since = None
            self.converged_rounds = self.negotiation_rounds
        elif elapsed >= self.config.converge_s:
            self.log.warn("negotiation did not converge within {limit} s ({rounds} rounds); next round in"
                          " {period} s", limit=self.config.converge_s, rounds=self.negotiation_rounds,
                          period=self.config.round_period_s)
            self._negotiating_since = None
            self._held = True
            self._pending_after_round = False
        # Next round: soon if bids changed meanwhile, else on the period.
        if self._pending_after_round:
            self._pending_after_round = False
            self.request_round("bids changed during the last round")
        else:
            self._pending_call = self.clock.callLater(self.config.round_period_s, self.run_round)

    # ---------------------------------------------------------------- status

    def snapshot(self) -> dict:
        """A JSON-ready view for operators, the demo and the manhole."""
        event = self.current_event
        homes = {}
        for record in self.homes.values():
            flex = record.flex
            homes[record.id] = {
                "connected": record.connected,
                "peer": record.session.peer if record.session is not None else None,
                "feeder": self.grid.names[self.grid.feeder_of[record.id]] if record.id in self.grid.feeder_of
                else None,
                "demand_w": record.offers.demand_w if record.offers is not None else None,
                "opted_out": flex is not None and flex.opt_out,
                "level_w": record.level_w,
                "measured_w": record.measured_w,
                "budget_w": record.budget_w,
                "loads": [
                    {"id": o.id, "rated_w": o.rated_w, "priority": o.priority, "mode": o.mode, "on": o.on,
                     "critical": o.critical, "wanted": o.wanted}
                    for o in (flex.loads if flex is not None else ())
                ],
            }
        last = self.last_round
        return {
            "at": wire.format_utc(self.clock.seconds()),
            "event": None if event is None else {
                "id": event.id, "limit_w": event.limit_w, "start": wire.format_utc(event.start),
                "end": wire.format_utc(event.end)},
            "rounds_run": self.rounds_run,
            "negotiation": {
                "mode": ("idle" if event is None else "held" if self._held
                         else "converging" if self._negotiating_since is not None else "periodic"),
                "rounds": self.negotiation_rounds, "converged_rounds": self.converged_rounds},
            "last_round": None if last is None else {
                "number": last.number, "event": last.event, "limit_w": last.limit_w,
                "committed_w": last.committed_w, "unknown_w": last.unknown_w, "within_limit": last.within_limit,
                "feasible": last.feasible, "homes": last.homes, "feeders": last.feeders,
                "started": wire.format_utc(last.started), "finished": wire.format_utc(last.finished)},
            "homes": homes,
        }


def _watts(value) -> str:
    return "?" if value is None else f"{value:.0f}"


def _moment(value, now: float) -> float:
    """A manhole time: epoch seconds, ``+SECONDS`` from now, or UTC text."""
    if isinstance(value, int | float):
        return float(value)
    text = str(value).strip()
    if text.startswith("+"):
        return now + float(text[1:])
    return wire.parse_utc(text)
