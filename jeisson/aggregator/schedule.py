"""The schedule of DR events and their live changes.

``Schedule`` holds the ``EventBook`` (events offered by the config, the
events file and the manhole), knows the *binding* event (among those in
force, from the start of their start window, the lowest limit), wakes at
each event's boundaries, and tells the aggregator when the binding event
changes.  It draws each home's own moments within an event's randomisation
windows (when it sheds, when it restores) and releases the homes when the
last event of a chain ends, each at its own time.
"""

import random
from collections.abc import Callable

from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from jeisson.aggregator import events as event_rules
from jeisson.aggregator.events import Event, EventBook, Offer
from jeisson.aggregator.homes import Homes
from jeisson.aggregator.listeners import AggregatorListener
from jeisson.timers import cancel
from jeisson.wire import aggregator_home as wire


class Schedule:
    log = Logger()

    def __init__(self, clock: IReactorTime, homes: Homes, announce: AggregatorListener, seed: int | None,
                 on_binding: Callable[[Event | None, Event | None], None],
                 on_limit: Callable[[], None] | None = None, max_event_s: float = event_rules.MAX_EVENT_S):
        """``on_binding(event, previous)``: the binding event changed (or
        may have: its limit or times); called after ``current`` is set.
        ``on_limit()``: an event's limit itself came into force (the end of
        its start window), the binding event unchanged.  ``max_event_s``:
        longer events are refused."""
        self.clock = clock
        self.homes = homes
        self.book = EventBook(max_event_s)
        self._announce = announce
        self._on_binding = on_binding
        # Draws for each home's own start and restore within an event's
        # randomisation windows; seeded from the config to replay a run.
        self.rng = random.Random(seed)
        self._draws: dict[tuple[str, str], tuple[float, float]] = {}
        self._releases: dict[str, IDelayedCall] = {}  # home -> its scheduled RELEASE
        self._boundary_call: IDelayedCall | None = None
        self._on_limit = on_limit
        self._limit_call: IDelayedCall | None = None
        self.running = False
        self.current: Event | None = None

    # ------------------------------------------------------------ lifecycle

    def start(self) -> None:
        self.running = True
        self.boundary()

    def stop(self) -> None:
        cancel(self._boundary_call)
        self._boundary_call = None
        cancel(self._limit_call)
        self._limit_call = None
        for call in self._releases.values():
            cancel(call)
        self._releases = {}
        self.running = False
        # Stopped: no event is ours to negotiate any more.
        self.current = None

    # --------------------------------------------------------------- events

    def active_event(self) -> Event | None:
        """The binding event now: among those in force (from the start of
        their start window), the lowest limit."""
        active = self.book.active(self.clock.seconds())
        return min(active, key=lambda e: e.limit_w) if active else None

    def offer(self, offer: Offer, source: str) -> event_rules.Outcome:
        """Add, change or cancel an event (config, events file, manhole):
        the book takes it at once and the listeners hear it; the verdict is
        logged by ``log_offer``, once what was taken is durable."""
        outcome = self.book.offer(offer, self.clock.seconds())
        self._announce.event_offered(offer, outcome, source)
        if outcome.changed and self.running:
            # The binding event may have changed now.
            self.boundary()
        return outcome

    def log_offer(self, offer: Offer, outcome: event_rules.Outcome, source: str, note: str = "") -> None:
        """The verdict on an offer, in the log; ``note`` follows a refusal
        (where its relative times counted from)."""
        event = offer.event
        if outcome.verdict == event_rules.REFUSED:
            self.log.warn("event {event} version {version} from {source} refused: {why}{note}", event=event.id,
                          version=event.version, source=source, why=outcome.detail, note=note)
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

    def restore(self, events: list[Event], cancelled: dict[str, int]) -> None:
        """The events a store remembered, before ``start``; ended ones are
        left out."""
        now = self.clock.seconds()
        live = sorted((e for e in events if e.end > now), key=lambda e: (e.start, e.id))
        self.book.restore(live, cancelled)
        for event in live:
            self.log.info("event {event} version {version} resumed: limit {limit:.0f} W from {start} to {end}",
                          event=event.id, version=event.version, limit=event.limit_w,
                          start=wire.format_utc(event.start), end=wire.format_utc(event.end))

    def boundary(self) -> None:
        """An event started or ended, or the book changed: which binds now."""
        self._schedule_boundary()
        event = self.active_event()
        previous, self.current = self.current, event
        if event is not None and (previous is None or previous.id != event.id):
            self.log.info("event {event} active: limit {limit:.0f} W until {end}", event=event.id,
                          limit=event.limit_w, end=wire.format_utc(event.end))
        self._on_binding(event, previous)
        if event != previous:
            self._announce.binding_event_changed(event, previous)

    def _schedule_boundary(self) -> None:
        now = self.clock.seconds()
        moment = self.book.next_boundary(now)
        call = self._boundary_call
        if call is not None and call.active():
            if moment is not None and call.getTime() == moment:
                return
            call.cancel()
        self._boundary_call = None if moment is None else self.clock.callLater(moment - now, self.boundary)
        self._schedule_limit()

    def _schedule_limit(self) -> None:
        now = self.clock.seconds()
        moment = self.book.next_limit(now)
        call = self._limit_call
        if call is not None and call.active():
            if moment is not None and call.getTime() == moment:
                return
            call.cancel()
        self._limit_call = None if moment is None else self.clock.callLater(moment - now, self._limit)

    def _limit(self) -> None:
        self._limit_call = None
        self._schedule_limit()
        if self._on_limit is not None:
            self._on_limit()

    def chain_end(self, event: Event) -> float:
        return self.book.chain_end(event)

    # ------------------------------------------------------- a home's moments

    def _draw(self, event: Event, home_id: str) -> tuple[float, float]:
        key = (event.id, home_id)
        if key not in self._draws:
            self._draws[key] = (self.rng.random(), self.rng.random())
        return self._draws[key]

    def home_start(self, event: Event, home_id: str) -> float:
        """When this home sheds for ``event``: uniformly within its start window."""
        if not event.start_window_s:
            return event.start
        return event.start - event.start_window_s * (1.0 - self._draw(event, home_id)[0])

    def home_restore(self, event: Event, home_id: str, chain_end: float) -> float:
        """When this home restores: ``chain_end``, the end of the chain of
        events, plus its own draw within the end window."""
        if not event.end_window_s:
            return chain_end
        return chain_end + event.end_window_s * self._draw(event, home_id)[1]

    # -------------------------------------------------------------- release

    def cancel_release(self, home_id: str) -> None:
        """A home gets a new budget: its pending RELEASE no longer holds."""
        cancel(self._releases.pop(home_id, None))

    def release(self, event: Event, round_number: int) -> None:
        """The event is over: each home is released at its own restore time,
        with RELEASE numbered ``round_number``."""
        now = self.clock.seconds()
        released, later = [], []
        for record in self.homes:
            if record.in_event is None:
                continue
            # From when it really ended: a cancelled event restores from now.
            at = min(event.end, now)
            if event.end_window_s:
                at += event.end_window_s * self._draw(event, record.id)[1]
            if at > now:
                self._releases[record.id] = self.clock.callLater(at - now, self._release_home, record.id, event,
                                                                 round_number)
                later.append(f"{record.id} at {wire.format_utc(at)}")
            elif self._release_home(record.id, event, round_number):
                released.append(record.id)
        self.log.info("event {event} ended; released homes: {homes}{later}", event=event.id,
                      homes=", ".join(released) or "none",
                      later=f"; later, each at its own time: {', '.join(later)}" if later else "")

    def _release_home(self, home_id: str, event: Event, round_number: int) -> bool:
        self._releases.pop(home_id, None)
        record = self.homes.records[home_id]
        if record.in_event is None or self.current is not None:
            return False
        record.in_event = None
        record.budget_w = None
        session = record.session
        if session is None:
            self._announce.changed()
            return False
        release = wire.Release(round_number, event.id)
        session.send(release)
        self._announce.home_released(home_id, release)
        return True
