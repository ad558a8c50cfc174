"""When rounds run: the negotiation and its mode.

A *negotiation* is the rounds that follow each other while bids change:
bids -> budgets -> commitments -> new bids, until a round brings no new bid,
so no commitment can change (converged), or ``converge_s`` has passed
(held).  ``Negotiation`` is that mode as one object:

``converging``
    Rounds follow each other, each soon after the last (a change during a
    round, or a home that did not answer, asks for the next).
``periodic``
    Converged: rounds run every ``round_period_s``, and shortly
    (``ROUND_DEBOUNCE_S``) after a home joins, leaves or reports a change.
``held``
    The last negotiation ran out of time: changes wait for the period, so
    homes that keep changing cannot keep the others switching.  The next
    event boundary or periodic round starts converging again.

``Rounds`` runs each ``Round`` (``jeisson.aggregator.round``): it plans it
(``negotiation.plan``, pure; in a thread above ``SOLVE_IN_THREAD_ABOVE``
homes, so that a large solve does not stall every link), routes the homes'
commitments to it, and numbers rounds and releases from one counter.

With a store, a number is durable before anything carrying it goes out
(``reserve(n)``, a Deferred: the round's plan and that wait run side by
side), so that a restarted aggregator, which continues above the last
number kept (``resume_numbering``), never sends a number a home has already
seen.  Without one, a round is planned and sent within the call that
starts it.
"""

from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from jeisson.aggregator import negotiation
from jeisson.aggregator.events import Event
from jeisson.aggregator.round import Round, RoundContext, RoundSummary
from jeisson.timers import cancel
from jeisson.wire import aggregator_home as wire
from jeisson.wire.errors import ProtocolError

# Coalesce bursts of joins and reports into one round.
ROUND_DEBOUNCE_S = 0.2
# Above this many homes a round's plan is solved in a thread: on the reactor
# thread its solve stalls every link for its whole duration, past 10 ms
# between 3,500 and 4,000 homes (bench/solve_thread.py, docs/performance.rst).
SOLVE_IN_THREAD_ABOVE = 3500

CONVERGING, PERIODIC, HELD = "converging", "periodic", "held"

Solver = Callable[[Callable[[], negotiation.Plan]], "Deferred[negotiation.Plan]"]
# ``reserve(n)``: keep ``n`` as the last number used; fires once it is durable.
Reserve = Callable[[int], "Deferred[None]"]


@attrs.define
class Negotiation:
    """The negotiation's mode (converging, periodic, held) and its rounds."""

    mode: str = PERIODIC
    since: float | None = None
    rounds: int = 0
    converged_rounds: int | None = None  # rounds the last converged negotiation took

    def round_starting(self, now: float) -> None:
        if self.mode != CONVERGING:
            self.mode, self.since, self.rounds = CONVERGING, now, 0

    def round_done(self, now: float, changes_pending: bool, converge_s: float) -> str:
        """After a round: converging still, or settled as periodic or held."""
        self.rounds += 1
        if not changes_pending:
            self.mode, self.since, self.converged_rounds = PERIODIC, None, self.rounds
        elif self.since is not None and now - self.since >= converge_s:
            self.mode, self.since = HELD, None
        return self.mode


class Rounds:
    log = Logger()

    def __init__(self, context: RoundContext, round_period_s: float, converge_s: float,
                 solve_in_thread: Solver | None = None, solve_in_thread_above: int = SOLVE_IN_THREAD_ABOVE,
                 reserve: Reserve | None = None):
        """``solve_in_thread(plan)``: runs ``plan()`` off the reactor thread
        (``threads.deferToThread``) for rounds of more than
        ``solve_in_thread_above`` homes; None solves every round in line.
        ``reserve(n)``: see the module; None without a store."""
        self.context = context
        self.solve_in_thread_above = solve_in_thread_above
        self.round_period_s = round_period_s
        self.converge_s = converge_s
        self._solve_in_thread = solve_in_thread
        self._reserve = reserve
        self.negotiation = Negotiation()
        self.current: Round | None = None
        self.event: Event | None = None  # the binding event rounds run under
        self.rounds_run = 0
        self.last: RoundSummary | None = None
        self._number = 0  # rounds and releases
        self._next: IDelayedCall | None = None
        self._follow_soon = False  # a change came during the round

    @property
    def number(self) -> int:
        """The latest round or release number given."""
        return self._number

    def resume_numbering(self, last: int) -> None:
        """Continue above ``last``, the last number a store kept."""
        self._number = max(self._number, last)

    def _take_number(self) -> tuple[int, "Deferred[None] | None"]:
        """The next round or release number, and what to wait for before it
        goes out (None: nothing)."""
        self._number += 1
        number = self._number
        if self._reserve is None:
            return number, None
        waiting = self._reserve(number)

        def failed(failure: Failure) -> None:
            # The limit comes first: the round goes on, and says what it risks.
            self.log.error("number {n} could not be stored ({why}): what carries it goes out anyway; a restart "
                           "before the store recovers could use it again", n=number, why=failure.getErrorMessage())

        return number, waiting.addErrback(failed)

    def stop(self) -> None:
        cancel(self._next)
        self._next = None
        self.event = None
        if self.current is not None:
            self.abandon("the aggregator stops")

    # -------------------------------------------------------------- events

    def binding_event(self, event: Event | None, previous: Event | None) -> None:
        """The schedule's binding event changed (or may have)."""
        self.event = event
        if event is None and previous is not None:
            if self.current is not None:
                self.abandon(f"event {previous.id} ended")
            number, waiting = self._take_number()
            if waiting is None:
                self.context.schedule.release(previous, number)
            else:
                waiting.addCallback(lambda _: self.context.schedule.release(previous, number))
                waiting.addErrback(lambda failure: self.log.failure("releasing the homes of event {event} failed",
                                                                    failure, event=previous.id))
            return
        if self.current is not None and (event is None or self.current.event.id != event.id):
            # A round under another limit must not go on granting under it.
            self.log.info("round {n} abandoned: event {event} now binds", n=self.current.number,
                          event=event.id if event else "none")
            self.abandon(f"event {event.id if event else 'none'} now binds")
        elif self.current is not None:
            # The same event binds, but a limit may have come into force
            # (another event started) while budgets wait for their moments.
            self.current.hurry()
        if event is not None:
            if self.negotiation.mode == HELD:
                self.negotiation.mode = PERIODIC
            # No burst to coalesce at a boundary, which is a known instant:
            # the round starts at once.
            self.request("event boundary", delay=0.0)

    def abandon(self, why: str) -> None:
        current, self.current = self.current, None
        if current is not None:
            current.abandon()
            self.context.announce.round_abandoned(current.number, why)

    # -------------------------------------------------------------- rounds

    def request(self, reason: str, delay: float = ROUND_DEBOUNCE_S) -> None:
        if self.event is None:
            return
        if self.current is not None:
            self._follow_soon = True
            return
        self.log.debug("round requested: {reason}", reason=reason)
        pending = self._next
        clock = self.context.clock
        if pending is None or not pending.active():
            self._next = clock.callLater(delay, self.run)
        elif self.negotiation.mode == HELD and delay > 0:
            # The last negotiation did not settle in time: the next round
            # comes on the period, so homes that keep changing cannot
            # keep the others switching.
            return
        elif pending.getTime() > clock.seconds() + delay:
            # The next periodic round is far off: a change brings it forward.
            pending.reset(delay)

    def run(self) -> None:
        self._next = None
        event = self.context.schedule.active_event()
        if event is None or self.current is not None:
            return
        context = self.context
        self.negotiation.round_starting(context.clock.seconds())
        participants = context.homes.participants()
        # The homes that cannot answer, each at its last record (never 0 W
        # unless known to be): see ``HomeRecord.cautious_w``.
        now = context.clock.seconds()
        away = {r.id: r.cautious_w(now=now) for r in context.homes if r.id not in participants}
        unknown_w = sum(away.values())
        feeder_unknown_w = context.grid.sums(away)
        number, waiting = self._take_number()
        current = self.current = Round(context, number, event, unknown_w, feeder_unknown_w, self._done)
        offers = {h: r.offers for h, r in participants.items() if r.offers is not None}  # all of them
        bids = {h: r.flex.bid for h, r in participants.items() if r.flex is not None}
        grid = context.grid

        def plan() -> negotiation.Plan:
            return negotiation.plan(offers, event.limit_w - unknown_w, grid, grid.rooms(feeder_unknown_w))

        solving: Deferred[negotiation.Plan]
        if self._solve_in_thread is None or len(offers) <= self.solve_in_thread_above:
            try:
                result = plan()
            except Exception:
                self._plan_failed(Failure(), current)
                return
            if waiting is None:
                current.planned(result, bids)
                return
            solving = waiting.addCallback(lambda _: result)
        else:
            solving = self._solve_in_thread(plan)
            if waiting is not None:
                # Both the plan and the number: no budget before the number is durable.
                both: list[Deferred[Any]] = [solving, waiting]
                solving = gatherResults(both, consumeErrors=True).addCallbacks(
                    lambda results: results[0], lambda failure: failure.value.subFailure)
        solving.addCallbacks(current.planned, self._plan_failed, callbackArgs=(bids,), errbackArgs=(current,))
        solving.addErrback(lambda failure: self.log.failure("round {n}: sending its budgets failed", failure,
                                                            n=current.number))

    def _plan_failed(self, failure: Failure, current: Round) -> None:
        """The plan raised: no round under this plan; the next on the
        period (a round left in ``plan`` would hold every later one)."""
        self.log.failure("round {n}: planning failed", failure, n=current.number)
        if current is self.current:
            self.abandon("planning failed")
            self._next = self.context.clock.callLater(self.round_period_s, self.run)

    def check(self, commit: wire.Commit) -> None:
        """Raise ``ProtocolError`` for a COMMIT naming a round never run."""
        if commit.round > self._number:
            raise ProtocolError(wire.STATE, f"COMMIT for round {commit.round}, which was never run "
                                            f"(the latest is {self._number})")

    def commit(self, home_id: str, commit: wire.Commit) -> None:
        """A home's commitment: to the round under way, a late one to the
        last round or the answer to a RELEASE (taken as its draw, and as
        what it acknowledges: ``HomeRecord.committed`` keeps the budget it
        now holds, or none after a RELEASE), or for an old round (ignored)."""
        self.check(commit)
        record = self.context.homes.records[home_id]
        current = self.current
        if current is not None and commit.round == current.number:
            if current.take(home_id, commit):
                record.committed(commit)
                self.context.announce.commitment_received(home_id, commit)
                current.advance()
                return
        elif current is None and commit.round == self._number:
            # The answer to a RELEASE, or a late commit to the last round.
            record.committed(commit)
            self.context.announce.commitment_received(home_id, commit)
            return
        self.log.debug("home {home}: ignoring a commitment for old round {n}", home=home_id, n=commit.round)

    def _done(self, current: Round, summary: RoundSummary) -> None:
        self.current = None
        self.rounds_run += 1
        self.last = summary
        # Follow up while bids change, within ``converge_s`` of the first
        # round.  A home that switched reports its new flexibility before it
        # commits, so a round during which no new bid arrived cannot change
        # anyone's commitment: the negotiation has converged.
        follow = self._follow_soon or current.had_late
        self._follow_soon = False
        negotiation_ = self.negotiation
        since = negotiation_.since
        now = self.context.clock.seconds()
        mode = negotiation_.round_done(now, follow, self.converge_s)
        if mode == CONVERGING:
            self.request("bids changed during the last round")
        else:
            self._next = self.context.clock.callLater(self.round_period_s, self.run)
        # Announced once the negotiation reflects the round.
        self.context.announce.round_finished(summary)
        if mode != CONVERGING:
            elapsed = now - since if since is not None else 0.0
            self.context.announce.negotiation_settled(mode == PERIODIC, negotiation_.rounds, elapsed)
