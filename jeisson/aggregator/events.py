"""The DR events the aggregator knows, and how they change while it runs.

Events come from the aggregator's config at start-up, from an events file it
watches (``events_file``), and from the manhole (``aggregator.add_event``,
``aggregator.cancel_event``).  Each offer is judged by ``EventBook.offer``:

- a new id: **added**; one that has already ended is **refused** (expired);
  one whose start has passed starts now and ends on time (**late**);
- the same id at a higher ``version``: **modified** (the newer supersedes);
  with ``cancelled``: **cancelled**;
- the same id, version and values: a **duplicate**, which changes nothing;
- an older version, or the same version with other values: **refused**.

The book is pure: the aggregator acts on what it returns.  The config's
events and the events file are read as written (``EventSpec``, by
``event_from_section`` and ``events_from_text``): a ``+SECONDS`` time counts
from the event id's *anchor*, the first time the aggregator read that id
(kept in its store), so it is resolved once and never moves, whatever
restarts and edits follow; the aggregator resolves it into an ``Offer``.
"""

from collections.abc import Iterator

import attrs

from jeisson.config import IniFile

ADDED = "added"
LATE = "added late"
MODIFIED = "modified"
CANCELLED = "cancelled"
DUPLICATE = "duplicate"
REFUSED = "refused"


@attrs.frozen
class Event:
    """A capacity limit (W) over a window [start, end) in UTC epoch seconds.

    Each home's own start and restore are drawn uniformly within
    ``start_window_s`` before ``start`` and ``end_window_s`` after ``end``,
    so houses do not all switch at once (the rebound peak); the limit holds
    over the whole window [start, end).
    """

    id: str
    limit_w: float
    start: float
    end: float
    version: int = 1
    start_window_s: float = 0.0
    end_window_s: float = 0.0

    @property
    def in_force_from(self) -> float:
        """When negotiation for it begins: its start, less its start window."""
        return self.start - self.start_window_s

    def active(self, now: float) -> bool:
        return self.in_force_from <= now < self.end


@attrs.frozen
class Offer:
    """An event as a source offers it: its values, or its cancellation."""

    event: Event
    cancelled: bool = False


@attrs.frozen
class Outcome:
    verdict: str  # one of the constants above
    detail: str

    @property
    def changed(self) -> bool:
        return self.verdict in (ADDED, LATE, MODIFIED, CANCELLED)


# The longest an event may last by default (``[aggregator] max_event_s``):
# a day.  Utility DR events last hours; an event without a sane end (a typo,
# a forged line) would otherwise shed homes for years.
MAX_EVENT_S = 86400.0


class EventBook:
    def __init__(self, max_event_s: float = MAX_EVENT_S) -> None:
        self.max_event_s = max_event_s
        self.events: dict[str, Event] = {}
        self.cancelled: dict[str, int] = {}  # id -> the version that cancelled it

    def __iter__(self) -> Iterator[Event]:
        return iter(self.events.values())

    def offer(self, offer: Offer, now: float) -> Outcome:
        event = offer.event
        known = self.events.get(event.id)
        gone = self.cancelled.get(event.id)
        current_version = known.version if known is not None else gone
        if current_version is not None:
            if event.version < current_version:
                return Outcome(REFUSED, f"version {event.version} is older than the version {current_version} "
                                        "already known")
            if event.version == current_version:
                same = (known is None) if offer.cancelled else (known == event)
                if same:
                    return Outcome(DUPLICATE, f"version {event.version} is already known")
                return Outcome(REFUSED, f"version {event.version} is already known with other values; raise the "
                                        "version to change it")
        if offer.cancelled:
            if known is None:
                if gone is None:
                    return Outcome(REFUSED, "no such event to cancel")
                self.cancelled[event.id] = event.version
                return Outcome(DUPLICATE, "already cancelled")
            del self.events[event.id]
            self.cancelled[event.id] = event.version
            return Outcome(CANCELLED, f"version {event.version} cancels it")
        if event.end <= event.start:
            return Outcome(REFUSED, "it must end after it starts")
        if event.end - event.start > self.max_event_s:
            return Outcome(REFUSED, f"it lasts {event.end - event.start:.0f} s, longer than the {self.max_event_s:.0f} "
                                    "s an event may last ([aggregator] max_event_s)")
        if event.end <= now:
            return Outcome(REFUSED, "it has already ended (expired)")
        self.cancelled.pop(event.id, None)
        self.events[event.id] = event
        if known is not None:
            return Outcome(MODIFIED, f"version {event.version} supersedes version {known.version}")
        if event.start < now:
            return Outcome(LATE, "it arrived after its start: it starts now and ends on time")
        return Outcome(ADDED, "")

    def restore(self, events: list[Event], cancelled: dict[str, int]) -> None:
        """What a store remembered: the events known and the ids cancelled,
        as they were (no verdict: they were judged when offered)."""
        self.events.update({e.id: e for e in events})
        self.cancelled.update(cancelled)

    def active(self, now: float) -> list[Event]:
        return [e for e in self.events.values() if e.active(now)]

    def next_boundary(self, now: float) -> float | None:
        """The next start (of a start window) or end after ``now``."""
        moments = [m for e in self.events.values() for m in (e.in_force_from, e.end) if m > now]
        return min(moments) if moments else None

    def next_limit(self, now: float) -> float | None:
        """The next moment after ``now`` when an event's limit itself comes
        into force, where that is not already a boundary (its start window's end)."""
        moments = [e.start for e in self.events.values() if e.start_window_s and e.start > now]
        return min(moments) if moments else None

    def limit_in_force(self, now: float) -> float | None:
        """The lowest limit of the events whose limit holds now (from their
        start, not from their start window), or None."""
        limits = [e.limit_w for e in self.events.values() if e.start <= now < e.end]
        return min(limits) if limits else None

    def chain_end(self, event: Event) -> float:
        """When the chain of overlapping or back-to-back events that ``event``
        belongs to ends."""
        until = event.end
        extended = True
        while extended:
            extended = False
            for other in self.events.values():
                if other.in_force_from <= until < other.end:
                    until = other.end
                    extended = True
        return until


@attrs.frozen
class Time:
    """A time as written: UTC epoch seconds, or ``+SECONDS`` (``relative``)
    from an anchor the aggregator keeps per event id."""

    seconds: float
    relative: bool = False

    def resolve(self, anchor: float) -> float:
        return anchor + self.seconds if self.relative else self.seconds


@attrs.frozen
class EventSpec:
    """An ``[event:ID]`` section as written (config or events file), its
    ``+SECONDS`` times not yet resolved.

    ``offer(anchor)`` resolves them against ``anchor``: the first time this
    id was read, which the aggregator keeps (in its store) so that a
    restart or an edit of another key never moves the event.
    """

    id: str
    version: int = 1
    limit_w: float = 0.0
    start: Time = Time(0.0)
    end: Time = Time(0.0)
    start_window_s: float = 0.0
    end_window_s: float = 0.0
    cancelled: bool = False

    @property
    def relative(self) -> bool:
        return self.start.relative or self.end.relative

    def offer(self, anchor: float) -> Offer:
        if self.cancelled:
            return Offer(Event(self.id, 0.0, anchor, anchor, self.version), cancelled=True)
        return Offer(Event(self.id, self.limit_w, self.start.resolve(anchor), self.end.resolve(anchor), self.version,
                           self.start_window_s, self.end_window_s))


def _time(ini: IniFile, name: str, key: str) -> Time:
    text = ini.raw(name, key)
    # ``IniFile.time`` checks the text; against 0, a ``+SECONDS`` is its offset.
    return Time(ini.time(name, key, 0.0), text.startswith("+"))


def event_from_section(ini: IniFile, name: str, event_id: str) -> EventSpec:
    """One ``[event:ID]`` section: limit, window, version, randomisation."""
    cancelled = ini.boolean(name, "cancelled", False)
    version = ini.number(name, "version", 1, low=1, high=2**31, integer=True)
    if cancelled:
        # A cancellation needs only the id and its version.
        for key in ("limit_kw", "start", "end", "start_window_s", "end_window_s"):
            ini.raw(name, key, None)
        return EventSpec(event_id, version, cancelled=True)
    limit_kw = ini.number(name, "limit_kw", low=0, high=1e6)
    start = _time(ini, name, "start")
    end = _time(ini, name, "end")
    if start.relative == end.relative and end.seconds <= start.seconds:
        raise ini.error(name, "end", "the event must end after it starts")
    start_window = ini.number(name, "start_window_s", 0.0, low=0, high=86400)
    end_window = ini.number(name, "end_window_s", 0.0, low=0, high=86400)
    return EventSpec(event_id, version, limit_kw * 1000.0, start, end, start_window, end_window)


def events_from_text(text: str, source: str) -> list[EventSpec]:
    """An events file: ``[event:ID]`` sections only, as written: each
    ``+SECONDS`` counts from its id's anchor, which the aggregator keeps."""
    ini = IniFile(text, source)
    specs = [event_from_section(ini, name, event_id) for name, event_id in ini.sections("event")]
    ini.check_unknown()
    return specs
