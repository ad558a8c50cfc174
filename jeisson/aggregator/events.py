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

The book is pure: the aggregator acts on what it returns.  Events files are
read by ``events_from_text`` into the same ``Offer`` objects.
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


class EventBook:
    def __init__(self) -> None:
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
        if event.end <= now:
            return Outcome(REFUSED, "it has already ended (expired)")
        self.cancelled.pop(event.id, None)
        self.events[event.id] = event
        if known is not None:
            return Outcome(MODIFIED, f"version {event.version} supersedes version {known.version}")
        if event.start < now:
            return Outcome(LATE, "it arrived after its start: it starts now and ends on time")
        return Outcome(ADDED, "")

    def active(self, now: float) -> list[Event]:
        return [e for e in self.events.values() if e.active(now)]

    def next_boundary(self, now: float) -> float | None:
        """The next start or end after ``now``."""
        moments = [m for e in self.events.values() for m in (e.in_force_from, e.end) if m > now]
        return min(moments) if moments else None

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


def event_from_section(ini: IniFile, name: str, event_id: str, now: float) -> Offer:
    """One ``[event:ID]`` section: limit, window, version, randomisation."""
    cancelled = ini.boolean(name, "cancelled", False)
    version = ini.number(name, "version", 1, low=1, high=2**31, integer=True)
    if cancelled:
        # A cancellation needs only the id and its version.
        for key in ("limit_kw", "start", "end", "start_window_s", "end_window_s"):
            ini.raw(name, key, None)
        return Offer(Event(event_id, 0.0, now, now, version), cancelled=True)
    limit_kw = ini.number(name, "limit_kw", low=0, high=1e6)
    start = ini.time(name, "start", now)
    end = ini.time(name, "end", now)
    if end <= start:
        raise ini.error(name, "end", "the event must end after it starts")
    start_window = ini.number(name, "start_window_s", 0.0, low=0, high=86400)
    end_window = ini.number(name, "end_window_s", 0.0, low=0, high=86400)
    return Offer(Event(event_id, limit_kw * 1000.0, start, end, version, start_window, end_window))


def events_from_text(text: str, source: str, now: float) -> list[Offer]:
    """An events file: ``[event:ID]`` sections only.  ``+SECONDS`` count from
    ``now`` (the watcher passes the file's modification time, so reading an
    unchanged file again gives the same events)."""
    ini = IniFile(text, source)
    offers = [event_from_section(ini, name, event_id, now) for name, event_id in ini.sections("event")]
    ini.check_unknown()
    return offers
