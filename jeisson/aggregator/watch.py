"""Between rounds: the measured total against the binding event's limit.

A round says "within limit" only when what is committed and what is
measured both are; but rounds come every ``round_period_s``, and a home can
draw more between them (a load its owner or a board switched that the home
did not command, a meter reading above a rated power).  ``MeasuredWatch`` is a listener that keeps
the measured total, in all and per feeder, as each home's ``MEASURE``
arrives, and when it goes above the limit of the event that binds, logs it
once per crossing and asks for a round at once::

    measured total 12050 W is above the limit 10000 W of event E: OVER LIMIT; a round follows
    feeder F: measured 4100 W is above the limit 3500 W of event E: OVER LIMIT; a round follows

and, once it is back within, once::

    measured total 9800 W is back within the limit 10000 W of event E

Each home counts at its latest measured power; without one, at what the
rounds count it: its level (last commitment or report) while it takes part,
else cautiously (``HomeRecord.cautious_w``, as ``Rounds.run`` counts the
homes away).  The totals are kept by difference, one home at a time, so a
measurement costs the same at ten thousand homes as at ten; they are
summed afresh after every round and whenever the binding event changes.
"""

from collections.abc import Callable

import numpy as np
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from jeisson.aggregator.events import Event
from jeisson.aggregator.homes import HomeRecord, Homes
from jeisson.aggregator.listeners import AggregatorListener
from jeisson.aggregator.negotiation import Grid
from jeisson.aggregator.round import RoundSummary
from jeisson.wire import aggregator_home as wire

_SLACK_W = 1e-6
TOTAL = None  # the key of the total in the crossing states; feeders by name


def measured_or_counted_w(record: HomeRecord, now: float | None = None) -> float:
    """A connected home's latest measured power, or, without one, what rounds
    count it at: its level while it takes part, else cautiously at ``now``.
    A home away is counted cautiously (its last measurement among the rest):
    what it measured before it left, or before the aggregator restarted, is
    no bound on what it may draw now."""
    if not record.connected:
        return record.cautious_w(now=now)
    if record.measured_w is not None:
        return record.measured_w
    if record.connected and record.offers is not None and not record.unresponsive:
        return record.level
    return record.cautious_w(now=now)


class MeasuredWatch(AggregatorListener):
    """Watches the measured total (and each feeder's) between rounds.

    ``homes``: the registry; ``grid``: the feeders; ``binding_event()``:
    the event that binds now, or None (``Schedule.active_event``);
    ``request_round(reason)``: asks for a round (``Rounds.request``);
    ``clock``: whether a home's budget is over (``HomeRecord.cautious_w``).
    """

    log = Logger()

    def __init__(self, homes: Homes, grid: Grid, binding_event: Callable[[], Event | None],
                 request_round: Callable[[str], None], clock: IReactorTime):
        self.homes = homes
        self.grid = grid
        self.clock = clock
        self.binding_event = binding_event
        self.request_round = request_round
        self._figure: dict[str, float] = {}  # what each home counts for, as last summed
        self.total_w = 0.0
        self.feeder_w = np.zeros(len(grid.names) + 1)  # Grid layout: feeders, then homes on none
        self.over: set[str | None] = set()  # TOTAL and the feeders above their limit, as last logged
        self._event: str | None = None  # the event ``over`` was judged against
        self.resum()

    # ------------------------------------------------------------ the totals

    def resum(self) -> None:
        """Sum every home afresh (no drift, and whatever was loaded since)."""
        now = self.clock.seconds()
        self._figure = {record.id: measured_or_counted_w(record, now) for record in self.homes}
        self.total_w = float(sum(self._figure.values()))
        self.feeder_w = self.grid.sums(self._figure)

    def _update(self, home_id: str) -> None:
        record = self.homes.records.get(home_id)
        if record is None:
            return
        new = measured_or_counted_w(record, self.clock.seconds())
        delta = new - self._figure.get(home_id, 0.0)
        if delta:
            self._figure[home_id] = new
            self.total_w += delta
            self.feeder_w[self.grid.index(home_id)] += delta

    # ------------------------------------------------------------ the moments

    def measurement(self, home_id: str, measure: wire.Measure) -> None:
        self._update(home_id)
        self.check()

    def commitment_received(self, home_id: str, commit: wire.Commit) -> None:
        self._update(home_id)

    def bid_received(self, home_id: str, flex: wire.Flex) -> None:
        self._update(home_id)

    def home_left(self, home_id: str, counted_w: float) -> None:
        self._update(home_id)

    def home_silent(self, home_id: str, round_number: int, counted_w: float) -> None:
        self._update(home_id)

    def home_answers_again(self, home_id: str) -> None:
        self._update(home_id)

    def budget_sent(self, home_id: str, budget: wire.Budget) -> None:
        self._update(home_id)

    def round_finished(self, summary: RoundSummary) -> None:
        self.resum()

    def binding_event_changed(self, event: Event | None, previous: Event | None) -> None:
        # A new limit: crossings are judged afresh at the next measurement.
        self.resum()
        self.over = set()
        self._event = None if event is None else event.id

    # ------------------------------------------------------------ the check

    def check(self) -> None:
        """Log each crossing of a limit, once, and ask for a round when above."""
        event = self.binding_event()
        if event is None:
            self.over = set()
            self._event = None
            return
        if event.id != self._event:
            self.over = set()
            self._event = event.id
        above = False
        if self._crossed(TOTAL, self.total_w, event.limit_w, event):
            above = True
        for i, name in enumerate(self.grid.names):
            if self._crossed(name, float(self.feeder_w[i]), self.grid.limit_w[i], event):
                above = True
        if above:
            self.request_round("measured power above the limit")

    def _crossed(self, key: str | None, measured_w: float, limit_w: float, event: Event) -> bool:
        """Whether ``key`` just went above its limit (logging either crossing)."""
        over = measured_w > limit_w + _SLACK_W
        if over == (key in self.over):
            return False
        where = "measured total" if key is TOTAL else f"feeder {key}: measured"
        if over:
            self.over.add(key)
            self.log.warn("{where} {measured:.0f} W is above the limit {limit:.0f} W of event {event}: OVER LIMIT;"
                          " a round follows", where=where, measured=measured_w, limit=limit_w, event=event.id,
                          feeder=key)
            return True
        self.over.discard(key)
        self.log.info("{where} {measured:.0f} W is back within the limit {limit:.0f} W of event {event}",
                      where=where, measured=measured_w, limit=limit_w, event=event.id, feeder=key)
        return False
