"""What the aggregator remembers: its journal, and the state a restart resumes.

``Memory`` is a listener (``listeners.AggregatorListener``) that writes to a
store (``jeisson.store.Store``):

the journal (the audit trail, ``Aggregator.why``)
    each event offered, with its verdict and source (``event``, subject the
    event id); each registration with its peer (``registered``); each
    budget sent (``budget``) and commitment (``commit``), subject the home,
    with the round's number; each release (``release``); each round's
    summary (``round``, subject the event id: its figures, not the
    per-home table, which the budgets and commitments already hold); each
    round abandoned, and each home silent in a round (``silent``).
state
    scope ``event``: every event known, with its absolute times, version
    and source, and every id cancelled with its cancelling version
    (``{"cancelled": version}``); scope ``anchor``: when each event id from
    the config or the events file was first read (what its ``+SECONDS``
    count from); scope ``home``: each home's record
    (``homes.REMEMBERED``: with the last budget sent and its round, and the
    last budget the home acknowledged, so a restart counts a home that did
    not commit to the one sent at the most of both, or at its demand if it
    acknowledged none); scope ``meta``: ``round``, the last round or
    release number used.
measurements
    each home's reported power (``store.measure``, subject the home id).

``resume(store)`` reads that state back, for ``Aggregator`` to restore
before it starts.

A record on disk is never below what its home may draw, as a restart
counts it (``HomeRecord.cautious_w``):

- a budget above what the home draws (a *raise*) is written before it goes
  out: the round announces its raises (``budgets_due``), and sends them once
  ``Aggregator.durable()`` fires (one wait per phase);
- every other change is judged right before the next commit
  (``store.before_commit``; the store commits within its ``batch_s`` of the
  first change, ``store.soon``): a home whose cautious figure is then above
  that of the record last written (a bid, a commitment above its budget, a
  measurement above every other figure, a budget or RELEASE sent to a home
  that acknowledged none in force, so counted at its demand) is written in
  that commit, as it stands then; so is a shedding home that committed (its
  lower draw: until then its record holds its old, higher one), and a home
  granted a raise (its record with the raise's end);
- what lowers it waits: other changes (a release, a lower measurement)
  within ``FLUSH_S``, or, while an event is in force, with the home's next
  write or at the event's end.  A joining or leaving home is written at
  once.

A home heard three times in a round (its budget, its new bid, its
commitment) is judged once, so the cost per round stays small: a budget and
a commitment in the journal per home, and at most one write of its record;
in an event, a measurement writes only when it rises above all the record
says (meter noise below the home's budget or level writes nothing; outside
events a changed record is written within ``FLUSH_S``).
"""

import math
from typing import Any

import attrs
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from jeisson import store as kinds
from jeisson.aggregator.events import Event, Offer, Outcome
from jeisson.aggregator.homes import HomeRecord, Homes
from jeisson.aggregator.listeners import AggregatorListener
from jeisson.aggregator.round import RoundSummary
from jeisson.store import Store
from jeisson.timers import cancel
from jeisson.wire import aggregator_home as wire

EVENT, ANCHOR, HOME, META = "event", "anchor", "home", "meta"
SILENT = "silent"  # a journal kind: a home did not commit in time in a round
ROUND_KEY = "round"  # in scope meta: the last round or release number used
# Changes to a home's record outside its budgets are written within this long.
FLUSH_S = 2.0
# A home's cautious figure above the written one's by more than this is a rise.
_RISE_SLACK_W = 1e-6


def event_state(event: Event, source: str) -> dict[str, Any]:
    return {"limit_w": event.limit_w, "start": event.start, "end": event.end, "version": event.version,
            "start_window_s": event.start_window_s, "end_window_s": event.end_window_s, "source": source}


def event_from_state(event_id: str, kept: dict[str, Any]) -> Event:
    return Event(event_id, float(kept["limit_w"]), float(kept["start"]), float(kept["end"]), int(kept["version"]),
                 float(kept.get("start_window_s", 0.0)), float(kept.get("end_window_s", 0.0)))


def summary_detail(summary: RoundSummary) -> dict[str, Any]:
    """A round's summary for the journal: every field (those added later
    too) but the per-home table, with its verdict and who was late."""
    detail = attrs.asdict(summary, filter=lambda field, value: field.name != "homes")
    detail["within_limit"] = summary.within_limit
    detail["homes"] = len(summary.homes)
    detail["late"] = sorted(h for h, figures in summary.homes.items() if figures.get("committed_w") is None)
    return detail


@attrs.frozen
class Resumed:
    """What a store gives back to a restarting aggregator."""

    events: list[Event]
    cancelled: dict[str, int]  # event id -> the version that cancelled it
    sources: dict[str, str]  # event id -> who offered it
    anchors: dict[str, float]  # event id -> when it was first read
    homes: dict[str, dict[str, Any]]
    last_number: int


def resume(store: Store) -> Resumed:
    """Read the state back (at start-up: ``state`` may block)."""
    events, cancelled, sources = [], {}, {}
    for event_id, kept in store.state(EVENT).items():
        if "cancelled" in kept:
            cancelled[event_id] = int(kept["cancelled"])
        else:
            events.append(event_from_state(event_id, kept))
            sources[event_id] = str(kept.get("source", "?"))
    anchors = {key: float(value) for key, value in store.state(ANCHOR).items()}
    meta = store.state(META)
    return Resumed(events, cancelled, sources, anchors, store.state(HOME), int(meta.get(ROUND_KEY, 0)))


class Memory(AggregatorListener):
    """Writes the journal, the state and the measurements (see the module)."""

    log = Logger()

    def __init__(self, store: Store, clock: IReactorTime, homes: Homes):
        self.store = store
        self.clock = clock
        self.homes = homes
        self._dirty: set[str] = set()
        self._written: dict[str, dict[str, Any]] = {}  # home -> its record as last written
        # home -> that record's cautious figure, and until when it holds (the
        # next end of a budget it names): asked on every change (``_rose``).
        self._written_w: dict[str, tuple[float, float]] = {}
        self._budget_end: dict[str, float] = {}  # home -> its last BUDGET's end
        self._awaiting: dict[str, int] = {}  # home -> the round whose commitment writes its record
        self._flush: IDelayedCall | None = None
        self._in_event = False
        # Changes seen since the last commit, judged right before the next
        # (``store.before_commit``): a home heard three times in a round is
        # judged once.  ``_check``: write if its figure rose (else dirty);
        # ``_due``: write if its record changed.
        self._check: set[str] = set()
        self._due: set[str] = set()
        store.before_commit(self._before_commit)

    # -------------------------------------------------- called by the aggregator

    def resumed(self, homes: dict[str, dict[str, Any]]) -> None:
        """The records a restart gave back: what is already written."""
        self._written.update(homes)
        for home_id in homes:
            self._written_w.pop(home_id, None)

    def number_taken(self, number: int) -> "Deferred[None]":
        """``Rounds``' reserve: the number kept; fires once durable."""
        self.store.put(META, ROUND_KEY, number)
        return self.store.durable()

    def anchor(self, event_id: str, at: float) -> None:
        self.store.put(ANCHOR, event_id, at)

    def stop(self) -> None:
        """Write what is waiting (the store commits it as it closes)."""
        cancel(self._flush)
        self._flush = None
        self._before_commit()
        self._write_dirty()

    # ------------------------------------------------------------- events

    def event_offered(self, offer: Offer, outcome: Outcome, source: str) -> None:
        event = offer.event
        detail: dict[str, Any] = {"verdict": outcome.verdict, "why": outcome.detail, "source": source,
                                  "version": event.version}
        if offer.cancelled:
            detail["cancelled"] = True
        else:
            detail.update(limit_w=event.limit_w, start=event.start, end=event.end)
        self.store.record(kinds.EVENT, event.id, self.clock.seconds(), detail)
        if outcome.changed:
            value = {"cancelled": event.version} if offer.cancelled else event_state(event, source)
            self.store.put(EVENT, event.id, value)

    def binding_event_changed(self, event: Event | None, previous: Event | None) -> None:
        self._in_event = event is not None
        if event is None and self._dirty:
            self._schedule_flush()

    # -------------------------------------------------------------- homes

    def home_joined(self, home_id: str, peer: str) -> None:
        self.store.record(kinds.REGISTERED, home_id, self.clock.seconds(), {"peer": peer})
        self._write(home_id)

    def home_left(self, home_id: str, counted_w: float) -> None:
        self.store.record(kinds.REGISTERED, home_id, self.clock.seconds(), {"left": True, "counted_w": counted_w})
        self._write(home_id)

    def home_silent(self, home_id: str, round_number: int, counted_w: float) -> None:
        self.store.record(SILENT, home_id, self.clock.seconds(), {"counted_w": counted_w}, round=round_number)

    def bid_received(self, home_id: str, flex: wire.Flex) -> None:
        self._to_check(home_id)

    def commitment_received(self, home_id: str, commit: wire.Commit) -> None:
        self.store.record(kinds.COMMIT, home_id, self.clock.seconds(),
                          {"w": commit.committed_w, "on": list(commit.on), "bid": commit.bid}, round=commit.round)
        if self._awaiting.get(home_id) == commit.round:
            del self._awaiting[home_id]
            self._due_write(home_id)
        else:
            self._to_check(home_id)

    def measurement(self, home_id: str, measure: wire.Measure) -> None:
        self.store.measure(home_id, measure.at, measure.power_w)
        self._to_check(home_id)

    # -------------------------------------------------------------- rounds

    def budgets_due(self, round_number: int, event: Event, budgets: dict[str, tuple[float, float]]) -> None:
        """Each raise's record as it will be once sent, unless the record
        written already counts the home at least as high."""
        now = self.clock.seconds()
        records = self.homes.records
        for home_id, (budget_w, end) in budgets.items():
            record = records[home_id]
            row = record.remembered()
            row.update(budget_w=budget_w, budget_end=end, in_event=event.id, budget_round=round_number)
            if HomeRecord.cautious_of(row, record.registered_max_w, now) > self._written_cautious_w(home_id, now):
                self._put(home_id, row)

    def budget_sent(self, home_id: str, budget: wire.Budget) -> None:
        self.store.record(kinds.BUDGET, home_id, self.clock.seconds(),
                          {"w": budget.budget_w, "end": budget.end, "event": budget.event, "bid": budget.bid},
                          round=budget.round)
        self._budget_end[home_id] = budget.end
        if budget.budget_w > self.homes.records[home_id].level + 1e-6:
            # It may rise: the record says so before it can.
            self._awaiting.pop(home_id, None)
            self._due_write(home_id)
        else:
            self._awaiting[home_id] = budget.round
            self._to_check(home_id)

    def home_released(self, home_id: str, release: wire.Release) -> None:
        self.store.record(kinds.RELEASE, home_id, self.clock.seconds(), {"event": release.event},
                          round=release.round)
        self._to_check(home_id)

    def round_finished(self, summary: RoundSummary) -> None:
        self.store.record(kinds.ROUND, summary.event, self.clock.seconds(), summary_detail(summary),
                          round=summary.number)

    def round_abandoned(self, round_number: int, why: str) -> None:
        self.store.record(kinds.ROUND, "", self.clock.seconds(), {"abandoned": why}, round=round_number)

    # ------------------------------------------------------- home records

    def _to_check(self, home_id: str) -> None:
        if not self._check:
            self.store.soon()
        self._check.add(home_id)

    def _due_write(self, home_id: str) -> None:
        if not self._due:
            self.store.soon()
        self._due.add(home_id)

    def _before_commit(self) -> None:
        """Right before a commit: the records of the homes heard since the
        last, as the rules of the module say (their latest state)."""
        due, self._due = self._due, set()
        check, self._check = self._check, set()
        for home_id in due:
            self._write(home_id)
        for home_id in check - due:
            self._changed(home_id)

    def _changed(self, home_id: str) -> None:
        if self._rose(home_id):
            self._write(home_id)  # a restart must not count it below what it may draw now
            return
        self._dirty.add(home_id)
        if not self._in_event:
            self._schedule_flush()

    def _rose(self, home_id: str) -> bool:
        """Whether the home's cautious figure is above that of its record
        as last written (what a restart would count it at)."""
        now = self.clock.seconds()
        return self.homes.records[home_id].cautious_w(now=now) > self._written_cautious_w(home_id, now)

    def _written_cautious_w(self, home_id: str, now: float) -> float:
        """The cautious figure of the home's record as last written (nothing
        written: its registered maximum), as a restart at ``now`` would
        count it, plus the slack a rise must pass."""
        cached = self._written_w.get(home_id)
        if cached is not None and now < cached[1]:
            return cached[0]
        row = self._written.get(home_id, {})
        figure = HomeRecord.cautious_of(row, self.homes.records[home_id].registered_max_w, now) + _RISE_SLACK_W
        ends = [end for end in (row.get("budget_end"), row.get("held_end")) if end is not None and end > now]
        self._written_w[home_id] = (figure, min(ends, default=math.inf))
        return figure

    def _schedule_flush(self) -> None:
        if self._flush is None or not self._flush.active():
            self._flush = self.clock.callLater(FLUSH_S, self._flushing)

    def _flushing(self) -> None:
        self._flush = None
        if self._in_event:
            return  # each waits for its next budget, or the event's end
        try:
            self._write_dirty()
        except Exception:
            self.log.failure("writing the homes' records failed")

    def _write_dirty(self) -> None:
        dirty, self._dirty = self._dirty, set()
        for home_id in sorted(dirty):
            self._write(home_id)

    def _write(self, home_id: str) -> None:
        """The home's record, if it changed since it was last written."""
        self._dirty.discard(home_id)
        record = self.homes.records[home_id]
        row = record.remembered()
        if row["budget_end"] is None and record.in_event is not None:
            row["budget_end"] = self._budget_end.get(home_id)
        if self._written.get(home_id) == row:
            return
        self._put(home_id, row)

    def _put(self, home_id: str, row: dict[str, Any]) -> None:
        self._written[home_id] = row
        self._written_w.pop(home_id, None)
        self.store.put(HOME, home_id, row)
