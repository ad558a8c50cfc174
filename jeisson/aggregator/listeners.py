"""The aggregator's listener seam: the moments others care about.

The aggregator's rooms announce what happens; whoever observes (the status
file, the round log lines, and next a store, a web API, metrics) subscribes
with ``Aggregator.add_listener`` and overrides the moments it cares about.
The rooms never know who listens.

Every moment is called synchronously, in the order the listeners were added,
after the aggregator's own state reflects it (a listener reading
``Aggregator.snapshot()`` from a moment sees it).  After each moment a
listener is also told ``changed()``: anything a snapshot shows may have
moved.  A listener that raises is logged and skipped; the others and the
aggregator go on.  Listeners must not block: slow work (a database, a
network) goes to a thread or a queue of their own.
"""

from typing import TYPE_CHECKING

from jeisson.fanout import Fanout
from jeisson.wire import aggregator_home as wire

if TYPE_CHECKING:
    from jeisson.aggregator.events import Event, Offer, Outcome
    from jeisson.aggregator.round import RoundSummary


class AggregatorListener:
    """Every moment, as a no-op: subclass and override what you observe."""

    def changed(self) -> None:
        """After every moment: what a snapshot shows may have changed."""

    # -- events

    def event_offered(self, offer: "Offer", outcome: "Outcome", source: str) -> None:
        """An event was offered (config, events file, manhole): ``outcome.verdict``
        says added, modified, cancelled, duplicate or refused, and why."""

    def binding_event_changed(self, event: "Event | None", previous: "Event | None") -> None:
        """The event that binds now (the lowest limit in force) changed, or
        its limit or times did; None when no event is in force.  Announced
        once the rounds follow it (a round under the old one abandoned, the
        homes released)."""

    # -- homes

    def home_joined(self, home_id: str, peer: str) -> None:
        """A home registered (or reconnected, superseding its old link)."""

    def home_left(self, home_id: str, counted_w: float) -> None:
        """A home's link closed; it is counted at ``counted_w`` while away."""

    def home_silent(self, home_id: str, round_number: int, counted_w: float) -> None:
        """A home did not commit in time in a round: planned as fixed demand
        at ``counted_w`` until it is heard from again."""

    def home_answers_again(self, home_id: str) -> None:
        """A home that went silent in a round is heard from again."""

    def bid_received(self, home_id: str, flex: wire.Flex) -> None:
        """A home reported its flexibility (a new bid)."""

    def commitment_received(self, home_id: str, commit: wire.Commit) -> None:
        """A home committed (to a round's budget, or after a RELEASE)."""

    def measurement(self, home_id: str, measure: wire.Measure) -> None:
        """A home's boards measured its power."""

    # -- rounds

    def round_started(self, round_number: int, event: "Event", homes: int) -> None:
        """A round was planned for ``homes`` homes under ``event``."""

    def budgets_due(self, round_number: int, event: "Event", budgets: dict[str, tuple[float, float]]) -> None:
        """Budgets above what their homes draw are about to go out in a
        round's phase (``home id -> (budget W, end)``, in ``event``): they
        go once ``Aggregator.durable()`` fires, so a store writes now what
        a restart must count those homes at.  Announced once per phase with
        such budgets; ``budget_sent`` follows for each as it goes out (none
        if the round is abandoned meanwhile)."""

    def budget_sent(self, home_id: str, budget: wire.Budget) -> None:
        """A home was sent its budget."""

    def home_released(self, home_id: str, release: wire.Release) -> None:
        """The event a home was in ended: it was sent RELEASE."""

    def round_finished(self, summary: "RoundSummary") -> None:
        """A round's last commitment is in (or its time ran out)."""

    def round_abandoned(self, round_number: int, why: str) -> None:
        """A round stopped before finishing (another event binds, stop)."""

    def negotiation_settled(self, converged: bool, rounds: int, elapsed_s: float) -> None:
        """The rounds that followed each other while bids changed are over:
        converged, or held after ``converge_s`` (the next on the period)."""


class Announcer(AggregatorListener):
    """Fans every moment out to the listeners added."""

    def __init__(self) -> None:
        self._fanout: Fanout[AggregatorListener] = Fanout("listener", AggregatorListener)

    @property
    def listeners(self) -> list[AggregatorListener]:
        return self._fanout.listeners

    def add(self, listener: AggregatorListener) -> None:
        self._fanout.add(listener)

    def remove(self, listener: AggregatorListener) -> None:
        self._fanout.remove(listener)

    def changed(self) -> None:
        self._fanout.each(())

    def event_offered(self, offer: "Offer", outcome: "Outcome", source: str) -> None:
        self._fanout.each(self._fanout.calls("event_offered"), offer, outcome, source)

    def binding_event_changed(self, event: "Event | None", previous: "Event | None") -> None:
        self._fanout.each(self._fanout.calls("binding_event_changed"), event, previous)

    def home_joined(self, home_id: str, peer: str) -> None:
        self._fanout.each(self._fanout.calls("home_joined"), home_id, peer)

    def home_left(self, home_id: str, counted_w: float) -> None:
        self._fanout.each(self._fanout.calls("home_left"), home_id, counted_w)

    def home_silent(self, home_id: str, round_number: int, counted_w: float) -> None:
        self._fanout.each(self._fanout.calls("home_silent"), home_id, round_number, counted_w)

    def home_answers_again(self, home_id: str) -> None:
        self._fanout.each(self._fanout.calls("home_answers_again"), home_id)

    def bid_received(self, home_id: str, flex: wire.Flex) -> None:
        self._fanout.each(self._fanout.calls("bid_received"), home_id, flex)

    def commitment_received(self, home_id: str, commit: wire.Commit) -> None:
        self._fanout.each(self._fanout.calls("commitment_received"), home_id, commit)

    def measurement(self, home_id: str, measure: wire.Measure) -> None:
        self._fanout.each(self._fanout.calls("measurement"), home_id, measure)

    def round_started(self, round_number: int, event: "Event", homes: int) -> None:
        self._fanout.each(self._fanout.calls("round_started"), round_number, event, homes)

    def budgets_due(self, round_number: int, event: "Event", budgets: dict[str, tuple[float, float]]) -> None:
        self._fanout.each(self._fanout.calls("budgets_due"), round_number, event, budgets)

    def budget_sent(self, home_id: str, budget: wire.Budget) -> None:
        self._fanout.each(self._fanout.calls("budget_sent"), home_id, budget)

    def home_released(self, home_id: str, release: wire.Release) -> None:
        self._fanout.each(self._fanout.calls("home_released"), home_id, release)

    def round_finished(self, summary: "RoundSummary") -> None:
        self._fanout.each(self._fanout.calls("round_finished"), summary)

    def round_abandoned(self, round_number: int, why: str) -> None:
        self._fanout.each(self._fanout.calls("round_abandoned"), round_number, why)

    def negotiation_settled(self, converged: bool, rounds: int, elapsed_s: float) -> None:
        self._fanout.each(self._fanout.calls("negotiation_settled"), converged, rounds, elapsed_s)
