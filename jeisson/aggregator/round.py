"""One negotiation round, as an explicit machine that owns its timers.

Phases:

``plan``
    The targets are being computed (``negotiation.plan``, perhaps in a
    thread): nothing is sent yet.
``shed``
    Homes whose target is below their present draw, and with them those
    kept at it, get their budget first, and the round waits for their
    commitments (or ``round_timeout_s``); with nobody to shed, this phase is
    over at once.
``grant``
    The other homes get their target, capped by the headroom left after the
    real commitments of the shed phase, and the round waits again.
``done``
    Every home answered or its time ran out: the round's ``RoundSummary``
    goes to ``on_done``.  An abandoned round (another event binds, the
    aggregator stops) also ends ``done``, without a summary.

Budgets go out ``DISPATCH_BATCH`` per reactor turn, or, before the event's
start, at each home's own moment in the start window, unless a limit
already in force (another event's, started) would be exceeded meanwhile:
then the homes with the earliest moments get theirs at once, as many as it
takes (``Round.hurry``).  A budget above what
its home draws goes out only once the records saying so are durable
(``budgets_due``, then ``RoundContext.durable``: one wait per phase; at
once without a store); the others go at once.  A phase's timeout starts
once its last batch is out, so every home has all of ``round_timeout_s``.
"""

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, succeed
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from jeisson.aggregator import negotiation
from jeisson.aggregator.events import Event
from jeisson.aggregator.homes import Homes
from jeisson.aggregator.listeners import AggregatorListener
from jeisson.aggregator.negotiation import Grid
from jeisson.aggregator.schedule import Schedule
from jeisson.timers import cancel
from jeisson.wire import aggregator_home as wire

# Budgets written per reactor turn: the first homes start switching while
# the aggregator writes the others' (at 1,000 homes, writing them all took
# 15 to 25 ms, during which no home had one).
DISPATCH_BATCH = 100

PLAN, SHED, GRANT, DONE = "plan", "shed", "grant", "done"


# Watts compared against a limit (or a budget against a home's level, to
# tell a raise, as ``memory.Memory`` does): a micro-watt absorbs float sums.
_SLACK_W = 1e-6


def _at_once() -> "Deferred[None]":
    return succeed(None)


@attrs.frozen
class RoundSummary:
    """A finished round, as its log lines, the status file and every listener see it.

    ``committed_w``: the commitments received.  ``unknown_w``: the homes not
    in the round (``away_w``, counted cautiously as the round was planned)
    and those in it that did not commit (counted as ``Round.counted_w``).
    ``measured_w``: every configured home at its latest measured power, or,
    without one, at what the round counts it.  ``must_w``: the must-run power
    planned (``negotiation.Plan.must``); ``feasible`` False when it and
    ``away_w`` exceed the limit or a feeder's.  ``feeders``: per feeder id,
    the same figures on that feeder (``limit_w``, ``committed_w``,
    ``unknown_w``, ``measured_w``, ``must_w``, ``away_w``).

    "Within limit" holds only when it is true of both what is committed
    (with what is unknown) and what is measured, in total and on every
    feeder.
    """

    number: int
    event: str
    limit_w: float
    committed_w: float
    unknown_w: float
    feasible: bool
    homes: dict[str, dict[str, Any]]
    started: float
    finished: float
    feeders: dict[str, dict[str, float]] = attrs.Factory(dict)
    # None: not measured (a summary built without the homes' measurements).
    measured_w: float | None = attrs.field(default=None, kw_only=True)
    must_w: float = attrs.field(default=0.0, kw_only=True)
    away_w: float = attrs.field(default=0.0, kw_only=True)

    @property
    def within_limit(self) -> bool:
        """Committed plus unknown, and measured, within the total and every feeder's limit."""
        return self.total_within_limit and all(self.feeder_within_limit(name) for name in self.feeders)

    @property
    def total_within_limit(self) -> bool:
        return not overs(self.limit_w, self.committed_w + self.unknown_w, self.measured_w)

    def feeder_within_limit(self, name: str) -> bool:
        f = self.feeders[name]
        return not overs(f["limit_w"], f["committed_w"] + f["unknown_w"], f.get("measured_w"))


def overs(limit_w: float, committed_w: float, measured_w: float | None) -> dict[str, float]:
    """How far above ``limit_w`` the committed (with unknown) and the
    measured figures are: ``{"committed": W, "measured": W}``, only those
    above; empty when within the limit."""
    found = {}
    if committed_w > limit_w + _SLACK_W:
        found["committed"] = committed_w - limit_w
    if measured_w is not None and measured_w > limit_w + _SLACK_W:
        found["measured"] = measured_w - limit_w
    return found


@attrs.define(eq=False)
class RoundContext:
    """What a round works in: the homes, the grid, the schedule, time."""

    homes: Homes
    grid: Grid
    schedule: Schedule
    clock: IReactorTime
    round_timeout_s: float
    announce: AggregatorListener
    # Fires once what was announced is durable (``Aggregator.durable``);
    # at once without a store, so a round sends within the call.
    durable: Callable[[], "Deferred[None]"] = _at_once


class Round:
    log = Logger()

    def __init__(self, context: RoundContext, number: int, event: Event, unknown_w: float, feeder_unknown_w: Any,
                 on_done: Callable[["Round", RoundSummary], None]):
        self.context = context
        self.number = number
        self.event = event
        self.started = context.clock.seconds()
        self.unknown_w = unknown_w
        self.feeder_unknown_w = feeder_unknown_w  # numpy array, per feeder (Grid layout)
        self._on_done = on_done
        self.phase = PLAN
        self.targets: dict[str, float] = {}
        self.bids: dict[str, int] = {}
        self.feasible = True
        self.must: dict[str, float] = {}  # each home's must-run power, as planned
        self.granted: dict[str, float] = {}
        self.waiting: set[str] = set()
        self.committed: dict[str, wire.Commit] = {}
        self.late: set[str] = set()
        # Some home did not commit in time: the next round should follow soon,
        # counting it as it stands (the others can make up for what it did
        # not shed).
        self.had_late = False
        self._timeout: IDelayedCall | None = None
        self._scheduled: list[IDelayedCall] = []  # budgets waiting for their batch
        # Budgets waiting for their home's moment in the start window: home -> (timer, budget).
        self._at_moment: dict[str, tuple[IDelayedCall, float]] = {}
        self._early: set[str] = set()  # homes whose budget goes at once, whatever their moment (``hurry``)
        self._latest = self.started  # the phase's latest moment a budget goes out (start window)

    # ----------------------------------------------------------- the machine

    def planned(self, result: negotiation.Plan, bids: dict[str, int]) -> None:
        """plan -> shed: the homes that shed go first."""
        if self.phase != PLAN:
            return
        self.targets, self.bids, self.feasible = result.budgets, bids, result.feasible
        self.must = result.must
        self._early = self._hurried()
        if not result.feasible:
            self.log.warn(
                "round {n} event {event}: must-run loads ({must:.0f} W) and homes that cannot answer ({unknown:.0f} W)"
                " exceed the limit of {limit:.0f} W or a feeder's; only the must-run loads are served there",
                n=self.number, event=self.event.id, must=result.must_w, unknown=self.unknown_w,
                limit=self.event.limit_w)
        self.phase = SHED
        self.context.announce.round_started(self.number, self.event, len(self.targets))
        # A home kept at what it draws takes nothing from the others and goes
        # with the shedding ones; with nobody to shed, every home is answered
        # at once in the grant.
        homes = self.context.homes.records
        first = {h: t for h, t in result.budgets.items() if t <= homes[h].level + 1e-6}
        if all(t >= homes[h].level - 1e-6 for h, t in first.items()):
            first = {}
        self._dispatch(first)

    def take(self, home_id: str, commit: wire.Commit) -> bool:
        """Count a home's commitment, if it answers this round; then
        ``advance``."""
        if commit.round != self.number or home_id not in self.granted or self.phase in (PLAN, DONE):
            return False
        self.committed[home_id] = commit
        self.waiting.discard(home_id)
        if commit.committed_w > self.granted[home_id] + 1e-6:
            self.log.warn(
                "home {home} committed {c:.0f} W above its budget {b:.0f} W (loads held on by their constraints)",
                home=home_id, c=commit.committed_w, b=self.granted[home_id])
        return True

    def home_gone(self, home_id: str) -> None:
        """A home's link closed: the round does not wait for it."""
        if home_id in self.waiting:
            self.waiting.discard(home_id)
            self.late.add(home_id)
            self.advance()
        elif self.phase == PLAN:
            self.late.add(home_id)

    def hurry(self) -> None:
        """A limit came into force (another event's start) while budgets
        wait for their homes' moments in the start window: send at once
        those it takes to stay within it (``_hurried``)."""
        if self.phase in (PLAN, DONE):
            return
        self._early = self._hurried()
        for home_id in sorted(self._early & self._at_moment.keys()):
            call, budget = self._at_moment.pop(home_id)
            cancel(call)
            self._send_at_moment(home_id, budget)

    def _hurried(self) -> set[str]:
        """The homes whose budget must go at once rather than at their
        moment in the start window: the event binds (it is the lowest) but
        its own limit holds only from its start; until each home's moment,
        that home draws what it draws, and a limit already in force (another
        event, started) must hold meanwhile.  Counting the homes that have
        their budget (or whose moment has come) at it, the others at what
        they draw, and those not in the round as planned: while that exceeds
        the limit in force, the home with the earliest moment among those
        whose budget lowers its draw goes now."""
        context = self.context
        now = context.clock.seconds()
        limit_w = context.schedule.book.limit_in_force(now)
        if limit_w is None or self.event.start <= now:
            return set()
        records = context.homes.records
        total = self.unknown_w
        waiting = []
        for home_id, target in self.targets.items():
            record = records[home_id]
            at = context.schedule.home_start(self.event, home_id)
            if at <= now or record.budget_round == self.number:
                total += target
            else:
                total += record.level
                if target < record.level:
                    waiting.append((at, home_id, record.level - target))
        waiting.sort()
        early = set()
        for _, home_id, saving in waiting:
            if total <= limit_w + _SLACK_W:
                break
            early.add(home_id)
            total -= saving
        if early:
            self.log.info("round {n} event {event}: {count} home(s) get their budget before their moment in the "
                          "start window, to hold the {limit:.0f} W in force", n=self.number, event=self.event.id,
                          count=len(early), limit=limit_w)
        return early

    def abandon(self) -> None:
        """Stop where it is: no more budgets, no timeout."""
        self.phase = DONE
        self._cancel_timers()

    # -------------------------------------------------------------- phases

    def _dispatch(self, budgets: dict[str, float]) -> None:
        """Send each home its budget: at once (``DISPATCH_BATCH`` per reactor
        turn), or, before the event's start, at the home's own moment in the
        start window.

        A budget above what its home draws (a *raise*) waits until the
        records saying so are durable: announced (``budgets_due``) once for
        the phase, then sent when ``context.durable()`` fires, after the
        phase's other budgets; a restart killed right after it then counts
        that home at its raise.  Without a store that fires at once."""
        context = self.context
        budgets = {h: b for h, b in budgets.items() if h not in self.late}
        self.granted.update(budgets)
        self.waiting = set(budgets)
        if not self.waiting:
            self.advance()
            return
        self._latest = context.clock.seconds()
        records = context.homes.records
        raises = {h: b for h, b in budgets.items() if b > records[h].level + _SLACK_W}
        if not raises:
            self._send_part(budgets, self._start_timeout)
            return
        schedule = context.schedule
        chain_end = schedule.chain_end(self.event)
        context.announce.budgets_due(self.number, self.event, {
            h: (b, schedule.home_restore(self.event, h, chain_end)) for h, b in raises.items()})
        durable = context.durable()
        phase = self.phase

        def stored(result: object) -> None:
            if isinstance(result, Failure):
                # The limit comes first: the raises go out, and the log says what a restart risks.
                self.log.error(
                    "round {n}: the raised budgets of {count} home(s) could not be stored ({why}); they go out "
                    "anyway: a restart before the store recovers would count those homes below them",
                    n=self.number, count=len(raises), why=result.getErrorMessage())
            if self.phase == phase:  # not abandoned, nor over, meanwhile
                self._send_part(raises, self._start_timeout)

        def raise_when_durable() -> None:
            durable.addBoth(stored).addErrback(
                lambda failure: self.log.failure("round {n}: sending its raised budgets failed", failure,
                                                 n=self.number))

        self._send_part({h: b for h, b in budgets.items() if h not in raises}, raise_when_durable)

    def _send_part(self, budgets: dict[str, float], then: Callable[[], None]) -> None:
        """``budgets`` now, a batch per reactor turn, or each at its home's
        moment in the start window (``_latest`` the latest); ``then()``
        after the last batch."""
        context = self.context
        now = context.clock.seconds()
        due = []
        for home_id, budget in budgets.items():
            context.schedule.cancel_release(home_id)
            at = context.schedule.home_start(self.event, home_id)
            if at > now and home_id not in self._early:
                self._at_moment[home_id] = (context.clock.callLater(at - now, self._send_at_moment, home_id, budget),
                                            budget)
                self._latest = max(self._latest, at)
            else:
                due.append((home_id, budget))
        self._send_batch(self.phase, due, 0, then)

    def _send_batch(self, phase: str, due: list[tuple[str, float]], start: int, then: Callable[[], None]) -> None:
        """Budgets ``due[start:]``, a batch per reactor turn; after the last
        batch, ``then()``."""
        if self.phase != phase:
            return
        # Once per batch: the events may change between two reactor turns.
        chain_end = self.context.schedule.chain_end(self.event)
        for home_id, budget in due[start:start + DISPATCH_BATCH]:
            self._send_budget(home_id, budget, chain_end)
        if self.phase != phase:
            return  # what a send set off (a link closing, the round abandoned) ended the phase
        if start + DISPATCH_BATCH < len(due):
            self._scheduled.append(self.context.clock.callLater(0, self._send_batch, phase, due,
                                                                start + DISPATCH_BATCH, then))
        else:
            then()

    def _start_timeout(self) -> None:
        """The phase's timeout, once its last budget is out: ``round_timeout_s``
        for every home from its budget (or from its moment in the start
        window, ``_latest`` the latest)."""
        clock = self.context.clock
        cancel(self._timeout)
        self._timeout = clock.callLater(max(self._latest - clock.seconds(), 0.0) + self.context.round_timeout_s,
                                        self._phase_timeout)

    def _send_at_moment(self, home_id: str, budget: float) -> None:
        self._at_moment.pop(home_id, None)
        self._send_budget(home_id, budget)

    def _send_budget(self, home_id: str, budget: float, chain_end: float | None = None) -> None:
        record = self.context.homes.records[home_id]
        session = record.session
        if self.phase == DONE or session is None:
            return
        if chain_end is None:
            chain_end = self.context.schedule.chain_end(self.event)
        # Sent, not yet acknowledged: ``HomeRecord.committed`` takes it as held.
        record.budget_w = budget
        record.in_event = self.event.id
        record.budget_round = self.number
        message = wire.Budget(self.number, self.bids[home_id], self.event.id, budget,
                              self.context.schedule.home_restore(self.event, home_id, chain_end))
        record.budget_end = message.end
        session.send(message)
        self.context.announce.budget_sent(home_id, message)

    def _phase_timeout(self) -> None:
        self._timeout = None
        if self.phase == DONE:
            return
        homes = self.context.homes
        silent = {home_id: homes[home_id].cautious_w(self.granted[home_id]) for home_id in sorted(self.waiting)}
        for home_id, counted_w in silent.items():
            self.log.warn("round {n}: home {home} did not commit within {t} s; counted at {w:.0f} W",
                          n=self.number, home=home_id, t=self.context.round_timeout_s, w=counted_w)
        self.late |= self.waiting
        self.waiting = set()
        self.had_late = True
        for home_id, counted_w in silent.items():
            homes.went_silent(homes[home_id], self.number, counted_w)
        self.advance()

    def advance(self) -> None:
        """To the next phase, if no home is awaited any more."""
        if self.waiting or self.phase in (PLAN, DONE):
            return
        cancel(self._timeout)
        self._timeout = None
        if self.phase == SHED:
            self.phase = GRANT
            self._grant()
        else:
            self._finish()

    def _grant(self) -> None:
        homes = self.context.homes.records
        rest = [h for h in self.targets if h not in self.granted and homes[h].connected and h not in self.late]
        if not rest:
            # Everyone was answered in the shed phase: nothing to grant, and
            # the round is done as its last commitment came in.
            self._finish()
            return
        # A shedding home that did not commit is counted cautiously (at the
        # most of its old level, measurement, the budget sent and the one it
        # last acknowledged, or its demand if it may hold none): the
        # headroom is what the homes' real commitments leave.
        grid = self.context.grid
        levels = {h: self.counted_w(h) for h in self.targets}
        headroom = self.event.limit_w - self.unknown_w - sum(levels.values())
        feeder_headroom = grid.rooms(self.feeder_unknown_w + grid.sums(levels))
        # Headroom falls short only when a home could not shed or the
        # must-run loads exceed the limit; then each home's must-run power
        # first, whatever the headroom, then the largest targets, in a
        # stable order.
        wanted = {h: self.targets[h] for h in sorted(rest, key=lambda h: (-self.targets[h], h))}
        self._dispatch(negotiation.grant_increases(wanted, levels, headroom, grid, feeder_headroom, self.must))

    def counted_w(self, home_id: str) -> float:
        """What a round counts a home at: its commitment if it made one,
        else its level, or cautiously if it was asked and did not answer
        (``HomeRecord.cautious_w``: not at the grant alone, which it may
        never have got, but at the most of it, the budget it last
        acknowledged, and its demand if it acknowledged none in force)."""
        if home_id in self.committed:
            return self.committed[home_id].committed_w
        record = self.context.homes.records[home_id]
        if home_id in self.late or not record.connected:
            return record.cautious_w(self.granted.get(home_id))
        return record.level

    def _finish(self) -> None:
        # The round is done as its last commitment is counted: what follows
        # is its bookkeeping.
        finished = self.context.clock.seconds()
        self.phase = DONE
        self._cancel_timers()
        self._on_done(self, self._summary(finished))

    def _cancel_timers(self) -> None:
        cancel(self._timeout)
        self._timeout = None
        for call in self._scheduled:
            cancel(call)
        self._scheduled = []
        for call, _ in self._at_moment.values():
            cancel(call)
        self._at_moment = {}

    def _summary(self, finished: float) -> RoundSummary:
        homes = {}
        committed = {}
        unknown_homes = {}
        measured = {}
        records = self.context.homes.records
        for home_id in self.targets:
            record = records[home_id]
            commit = self.committed.get(home_id)
            offers = record.flex.loads if record.flex is not None else ()
            if commit is not None:
                committed[home_id] = counted = commit.committed_w
            else:
                unknown_homes[home_id] = counted = self.counted_w(home_id)
            measured[home_id] = record.measured_w if record.measured_w is not None else counted
            on = commit.on if commit is not None else record.on
            on_ids = set(on)
            homes[home_id] = {
                "demand_w": record.offers.demand_w if record.offers is not None else None,
                "budget_w": self.granted.get(home_id),
                "committed_w": commit.committed_w if commit is not None else None,
                "on": list(on),
                "off": [o.id for o in offers if o.id not in on_ids],
            }
        if len(measured) < len(records):
            for home_id, record in records.items():
                if home_id not in measured:
                    # Not in the round: as ``Rounds.run`` counts the homes away.
                    measured[home_id] = (record.measured_w if record.measured_w is not None
                                         else record.cautious_w(now=finished))
        grid = self.context.grid
        feeders = {}
        if grid.names:
            # Each sum per feeder loops over its homes: only where there are feeders.
            feeder_committed = grid.sums(committed)
            feeder_unknown = self.feeder_unknown_w + grid.sums(unknown_homes)
            feeder_measured = grid.sums(measured)
            feeder_must = grid.sums(self.must)
            feeders = {
                name: {"limit_w": grid.limit_w[i], "committed_w": float(feeder_committed[i]),
                       "unknown_w": float(feeder_unknown[i]), "measured_w": float(feeder_measured[i]),
                       "must_w": float(feeder_must[i]), "away_w": float(self.feeder_unknown_w[i])}
                for i, name in enumerate(grid.names)
            }
        return RoundSummary(self.number, self.event.id, self.event.limit_w, sum(committed.values()),
                            self.unknown_w + sum(unknown_homes.values()), self.feasible, homes, self.started,
                            finished, feeders, measured_w=float(sum(measured.values())),
                            must_w=float(sum(self.must.values())), away_w=self.unknown_w)
