"""The aggregator's JSON API: a thin shell over the ``Aggregator`` facade.

Views (pure functions of the aggregator's state, also what the live push
sends): ``status_view``, ``home_view``, ``event_view``, ``event_views``,
``round_view``.
Listeners kept by ``AggregatorApi``: ``RoundHistory`` (the last rounds,
with their per-home tables), ``LinkTimes`` (when each home's link came or
went, and when it was last heard), ``EventsSeen`` (what a cancelled event
was).  Handlers (``AggregatorApi.routes``) read a ``Call``, check it with
jeisson.web.errors, ask the facade and answer JSON; what changes an event
answers once the store has it (``Aggregator.offer_event``).

The paths and bodies are docs/api.rst's and jeisson/web/openapi/aggregator.json's.
"""

import collections
import re
import weakref
from collections.abc import Iterable
from typing import Any

from twisted.internet import task
from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from jeisson import store as kinds
from jeisson.aggregator import audit
from jeisson.aggregator import events as event_rules
from jeisson.aggregator.core import Aggregator
from jeisson.aggregator.events import Event, Offer, Outcome
from jeisson.aggregator.homes import HomeRecord
from jeisson.aggregator.listeners import AggregatorListener
from jeisson.aggregator.round import RoundSummary, overs
from jeisson.store import StoreError
from jeisson.web import errors, measurements
from jeisson.web.config import MAX_ROWS, ROUNDS_KEPT
from jeisson.web.errors import CONFLICT, REFUSED, UNAVAILABLE, ApiError
from jeisson.web.site import Call, Reply, Routes
from jeisson.wire import aggregator_home as wire
from jeisson.wire.utc import format_utc

SCHEDULED, IN_FORCE, ENDED, CANCELLED = "scheduled", "in-force", "ended", "cancelled"
STATES = (SCHEDULED, IN_FORCE, ENDED, CANCELLED)
ROUNDS_PAGE = 50
ROUND_NUMBER = re.compile(r"[0-9]{1,19}")
ROUNDS_MAX_PAGE = 500
EVENT_FIELDS = ("id", "limit_kw", "limit_w", "start", "end", "start_window_s", "end_window_s")
MAX_WINDOW_S = 86400.0
# The most homes one ``GET /homes?id=...`` names (a dashboard's page is 50).
HOMES_MAX_IDS = 500
# Home views built per reactor turn for /homes (about 30 us each: 15 ms).
BATCH = 500


def _utc(moment: float | None) -> str | None:
    return None if moment is None else format_utc(moment)


# ------------------------------------------------------------------- views


def event_state(event: Event, now: float, cancelled: bool = False) -> str:
    if cancelled:
        return CANCELLED
    if event.end <= now:
        return ENDED
    if event.active(now):
        return IN_FORCE
    return SCHEDULED


def event_view(event: Event, now: float, source: str | None = None, cancelled: bool = False) -> dict[str, Any]:
    """EVENT: an event with its state and countdowns (0 once passed)."""
    return {
        "id": event.id, "version": event.version, "limit_w": event.limit_w, "start": format_utc(event.start),
        "end": format_utc(event.end), "start_window_s": event.start_window_s, "end_window_s": event.end_window_s,
        "source": source, "state": event_state(event, now, cancelled),
        "starts_in_s": max(0.0, event.start - now), "ends_in_s": max(0.0, event.end - now),
    }


def round_view(summary: RoundSummary, with_homes: bool = False) -> dict[str, Any]:
    """ROUND, from a summary in memory."""
    view: dict[str, Any] = {
        "number": summary.number, "event": summary.event, "limit_w": summary.limit_w,
        "committed_w": summary.committed_w, "unknown_w": summary.unknown_w, "measured_w": summary.measured_w,
        "must_w": summary.must_w, "away_w": summary.away_w, "within_limit": summary.within_limit,
        "feasible": summary.feasible, "started": format_utc(summary.started), "finished": format_utc(summary.finished),
        "feeders": summary.feeders,
    }
    if with_homes:
        view["homes"] = summary.homes
    return view


def round_from_journal(entry: Any) -> dict[str, Any] | None:
    """ROUND, from the store's journal (``memory.summary_detail``): no
    per-home table there; None for an abandoned round."""
    d = entry.detail
    if "abandoned" in d:
        return None

    def moment(key: str) -> str | None:
        value = d.get(key)
        return None if value is None else format_utc(float(value))

    return {
        "number": entry.round if entry.round is not None else d.get("number"), "event": d.get("event", entry.subject),
        "limit_w": d.get("limit_w"), "committed_w": d.get("committed_w"), "unknown_w": d.get("unknown_w"),
        "measured_w": d.get("measured_w"), "must_w": d.get("must_w", 0.0), "away_w": d.get("away_w", 0.0),
        "within_limit": d.get("within_limit"), "feasible": d.get("feasible"), "started": moment("started"),
        "finished": moment("finished"), "feeders": d.get("feeders", {}),
    }


def counted_w(record: HomeRecord, now: float) -> float:
    """What the rounds count a home at: its level while it takes part (a
    connected home that answers), else cautiously."""
    if record.connected and record.offers is not None and not record.unresponsive:
        return record.level
    return record.cautious_w(now=now)


def home_view(aggregator: Aggregator, record: HomeRecord, links: "LinkTimes | None" = None) -> dict[str, Any]:
    """HOME: one home as the aggregator knows it."""
    now = aggregator.clock.seconds()
    grid = aggregator.grid
    flex = record.flex
    since = links.since.get(record.id) if links is not None else None
    heard = links.heard.get(record.id) if links is not None else None
    return {
        "id": record.id,
        "connected": record.connected,
        "peer": record.session.peer if record.session is not None else None,
        "feeder": grid.names[grid.feeder_of[record.id]] if record.id in grid.feeder_of else None,
        "demand_w": record.offers.demand_w if record.offers is not None else record.demand_w,
        "budget_w": record.budget_w if record.in_event is not None else None,
        "budget_end": _utc(record.budget_end) if record.in_event is not None else None,
        "committed_w": record.level_w,
        "measured_w": record.measured_w,
        "counted_w": counted_w(record, now),
        "opted_out": flex is not None and flex.opt_out,
        "silent": record.unresponsive,
        "link": {"connected": record.connected, "since": _utc(since), "last_heard": _utc(heard)},
        "loads": [
            {"id": o.id, "rated_w": o.rated_w, "priority": o.priority, "mode": o.mode, "on": o.on,
             "critical": o.critical, "wanted": o.wanted}
            for o in (flex.loads if flex is not None else ())
        ],
    }


def event_views(aggregator: Aggregator, seen: "EventsSeen") -> list[dict[str, Any]]:
    """Every EVENT the aggregator knows, the cancelled ones (as ``seen``
    kept them) too, by start then id: ``GET /api/v1/events``."""
    now = aggregator.clock.seconds()
    book = aggregator.schedule.book
    sources = aggregator.sources
    views = [event_view(e, now, sources.get(e.id)) for e in book]
    views += [event_view(e, now, sources.get(e.id), cancelled=True) for e in seen.cancelled.values()
              if e.id not in book.events]
    return sorted(views, key=lambda v: (v["start"], v["id"]))


def next_event(aggregator: Aggregator, now: float) -> Event | None:
    later = [e for e in aggregator.schedule.book if e.in_force_from > now]
    return min(later, key=lambda e: (e.in_force_from, e.id)) if later else None


def status_view(aggregator: Aggregator, links: "LinkTimes | None" = None) -> dict[str, Any]:
    """STATUS: the limit in force, what is committed and measured against it."""
    now = aggregator.clock.seconds()
    book = aggregator.schedule.book
    limit_w = book.limit_in_force(now)
    counted = {record.id: counted_w(record, now) for record in aggregator.registry}
    committed_w = float(sum(counted.values()))
    measured_w = float(aggregator.watch.total_w)
    over_w = 0.0
    if limit_w is not None:
        found = overs(limit_w, committed_w, measured_w)
        grid = aggregator.grid
        if grid.names:
            feeder_counted = grid.sums(counted)
            for i, feeder_limit in enumerate(grid.limit_w):
                for figure, w in overs(feeder_limit, float(feeder_counted[i]),
                                       float(aggregator.watch.feeder_w[i])).items():
                    found[f"feeder {grid.names[i]} {figure}"] = w
        over_w = max(found.values(), default=0.0)
        within = not found
    else:
        within = True
    binding = aggregator.active_event()
    coming = next_event(aggregator, now)
    negotiation = aggregator.rounds.negotiation
    last = aggregator.last_round
    records = list(aggregator.registry)
    return {
        "at": format_utc(now),
        "limit_w": limit_w,
        "committed_w": committed_w,
        "measured_w": measured_w,
        "within_limit": within,
        "over_w": over_w,
        "event": None if binding is None else event_view(binding, now, aggregator.sources.get(binding.id)),
        "next_event": None if coming is None else event_view(coming, now, aggregator.sources.get(coming.id)),
        "negotiation": {"mode": "idle" if aggregator.current_event is None else negotiation.mode,
                        "rounds": negotiation.rounds, "converged_rounds": negotiation.converged_rounds},
        "homes": {"total": len(records), "connected": sum(1 for r in records if r.connected),
                  "silent": sum(1 for r in records if r.unresponsive)},
        "rounds_run": aggregator.rounds_run,
        "last_round": None if last is None else round_view(last),
    }


# --------------------------------------------------------------- listeners


class RoundHistory(AggregatorListener):
    """The last ``kept`` rounds' summaries, newest last."""

    def __init__(self, kept: int = ROUNDS_KEPT):
        self.rounds: collections.deque[RoundSummary] = collections.deque(maxlen=kept)

    def round_finished(self, summary: RoundSummary) -> None:
        self.rounds.append(summary)

    def find(self, number: int) -> RoundSummary | None:
        return next((s for s in self.rounds if s.number == number), None)


class LinkTimes(AggregatorListener):
    """When each home's link last came up or went down (``since``), and
    when the home was last heard (a bid, a commitment, a measurement)."""

    def __init__(self, clock: Any):
        self.clock = clock
        self.since: dict[str, float] = {}
        self.heard: dict[str, float] = {}

    def home_joined(self, home_id: str, peer: str) -> None:
        self.since[home_id] = self.heard[home_id] = self.clock.seconds()

    def home_left(self, home_id: str, counted_w: float) -> None:
        self.since[home_id] = self.clock.seconds()

    def bid_received(self, home_id: str, flex: wire.Flex) -> None:
        self.heard[home_id] = self.clock.seconds()

    def commitment_received(self, home_id: str, commit: wire.Commit) -> None:
        self.heard[home_id] = self.clock.seconds()

    def measurement(self, home_id: str, measure: wire.Measure) -> None:
        self.heard[home_id] = self.clock.seconds()


class EventsSeen(AggregatorListener):
    """What each cancelled event was, for the events list (the book keeps
    only the version that cancelled it)."""

    def __init__(self, known: Iterable[Event] = ()):
        self.last: dict[str, Event] = {e.id: e for e in known}
        self.cancelled: dict[str, Event] = {}

    def event_offered(self, offer: Offer, outcome: Outcome, source: str) -> None:
        if outcome.verdict == event_rules.CANCELLED:
            before = self.last.get(offer.event.id)
            if before is not None:
                self.cancelled[offer.event.id] = before
        elif outcome.changed:
            self.last[offer.event.id] = offer.event
            self.cancelled.pop(offer.event.id, None)


# One LinkTimes and one EventsSeen per aggregator, whoever reads them (the
# API, the push): each home's message updates one table, not a copy each.
_SHARED: "weakref.WeakKeyDictionary[Aggregator, tuple[LinkTimes, EventsSeen]]" = weakref.WeakKeyDictionary()


def link_and_event_listeners(aggregator: Aggregator) -> tuple[LinkTimes, EventsSeen]:
    """``aggregator``'s ``LinkTimes`` and ``EventsSeen``, added to it the
    first time they are asked for (so before the listener that asks, which
    reads them from its own moments)."""
    shared = _SHARED.get(aggregator)
    if shared is None:
        shared = _SHARED[aggregator] = (LinkTimes(aggregator.clock), EventsSeen(aggregator.events))
        for listener in shared:
            aggregator.add_listener(listener)
    return shared


# ------------------------------------------------------------------- the API


class AggregatorApi:
    """The handlers of the aggregator's API, and the listeners they read."""

    log = Logger()

    def __init__(self, aggregator: Aggregator, rounds_kept: int = ROUNDS_KEPT, max_rows: int = MAX_ROWS,
                 openapi: Any = None, batch: int = BATCH):
        """``batch``: above this many homes, ``/homes`` builds its views that
        many per reactor turn, and large replies are marked to be encoded
        off the reactor's thread (``Reply.offload``)."""
        self.aggregator = aggregator
        self.batch = batch
        self.clock = aggregator.clock
        self.max_rows = max_rows
        self.history = RoundHistory(rounds_kept)
        aggregator.add_listener(self.history)
        self.links, self.seen = link_and_event_listeners(aggregator)
        self.openapi = openapi

    def routes(self) -> Routes:
        routes = Routes()
        routes.get("/status", self.status)
        routes.get("/homes", self.homes)
        routes.get("/homes/{id}", self.home)
        routes.get("/events", self.events)
        routes.add("POST", "/events", self.add_event)
        routes.get("/events/{id}", self.event)
        routes.add("PUT", "/events/{id}", self.modify_event)
        routes.add("DELETE", "/events/{id}", self.cancel_event)
        routes.get("/rounds", self.rounds)
        routes.get("/rounds/{number}", self.round)
        routes.get("/measurements", self.measurements)
        routes.get("/why", self.why)
        routes.get("/openapi.json", self.openapi_document)
        return routes

    def now(self) -> float:
        return self.clock.seconds()

    # -- status and homes

    def status(self, call: Call) -> dict[str, Any]:
        errors.query_only(call.args, ())
        return status_view(self.aggregator, self.links)

    def homes(self, call: Call) -> "Reply | Deferred[Reply]":
        """Every home by id, or those ``id`` names (repeated, at most
        ``HOMES_MAX_IDS``, in the order given, unknown ones left out),
        ``connected`` or not; then ``offset`` and ``limit`` (a page: a
        dashboard's visible rows).  ``total``: how many matched before
        the page was cut."""
        errors.query_only(call.args, ("connected", "id", "offset", "limit"))
        connected = errors.query_bool(call.args, "connected")
        wanted = errors.query_all(call.args, "id")
        if len(wanted) > HOMES_MAX_IDS:
            raise errors.bad_field("id", f"at most {HOMES_MAX_IDS} ids, got {len(wanted)}")
        offset = errors.query_int(call.args, "offset", 0, 0, 2**31)
        limit = errors.query_int(call.args, "limit", None, 1, 2**31)
        assert offset is not None
        registry = self.aggregator.registry.records
        chosen = ([registry[i] for i in dict.fromkeys(wanted) if i in registry] if wanted
                  else sorted(self.aggregator.registry, key=lambda r: r.id))
        records = [r for r in chosen if connected is None or r.connected == connected]
        total = len(records)
        records = records[offset:] if limit is None else records[offset:offset + limit]
        if len(records) <= self.batch:
            return Reply({"homes": [home_view(self.aggregator, r, self.links) for r in records], "total": total})
        return Deferred.fromCoroutine(self._homes_in_batches(records, total))

    async def _homes_in_batches(self, records: list[HomeRecord], total: int) -> Reply:
        """Thousands of homes' views, ``batch`` per reactor turn (each home
        as it is when its batch runs), encoded off the reactor's thread."""
        views: list[dict[str, Any]] = []
        for start in range(0, len(records), self.batch):
            if start:
                await task.deferLater(self.clock, 0, lambda: None)
            views += [home_view(self.aggregator, r, self.links) for r in records[start:start + self.batch]]
        return Reply({"homes": views, "total": total}, offload=True)

    def _record(self, home_id: str) -> HomeRecord:
        record = self.aggregator.registry.records.get(home_id)
        if record is None:
            raise errors.not_found(f"no home {home_id!r} is configured")
        return record

    def home(self, call: Call) -> dict[str, Any]:
        return home_view(self.aggregator, self._record(call.param("id")), self.links)

    # -- events

    def _source(self, call: Call) -> str:
        return "the API" + (f" ({call.who})" if call.who else "")

    def _event_views(self) -> list[dict[str, Any]]:
        return event_views(self.aggregator, self.seen)

    def events(self, call: Call) -> dict[str, Any]:
        errors.query_only(call.args, ("state",))
        state = errors.query_one(call.args, "state")
        if state is not None and state not in STATES:
            raise errors.bad_field("state", f"expected one of {', '.join(STATES)}, got {state!r}")
        return {"events": [v for v in self._event_views() if state is None or v["state"] == state]}

    def event(self, call: Call) -> dict[str, Any]:
        event_id = call.param("id")
        found = next((v for v in self._event_views() if v["id"] == event_id), None)
        if found is None:
            raise errors.not_found(f"no event {event_id!r}")
        return found

    def _limit_w(self, body: dict[str, Any], required: bool) -> float | None:
        if "limit_kw" in body and "limit_w" in body:
            raise errors.bad_field("limit_w", "give limit_kw or limit_w, not both")
        if "limit_kw" in body:
            return errors.number(body["limit_kw"], "limit_kw", 0, 1e6) * 1000.0
        if "limit_w" in body:
            return errors.number(body["limit_w"], "limit_w", 0, 1e9)
        if required:
            raise errors.missing("limit_kw", "limit_kw (or limit_w): the limit in force during the event")
        return None

    def _check_times(self, start: float, end: float) -> None:
        if end <= start:
            raise errors.bad_field("end", f"the event must end after it starts ({format_utc(end)} is not after "
                                          f"{format_utc(start)})")
        max_s = self.aggregator.schedule.book.max_event_s
        if end - start > max_s:
            # A start already past (epoch -1, a typo'd year) is the likelier mistake than the end.
            blamed = "start" if start < self.now() else "end"
            raise errors.bad_field(blamed, f"the event lasts {end - start:.0f} s ({format_utc(start)} to "
                                           f"{format_utc(end)}), longer than the {max_s:.0f} s an event may last "
                                           "([aggregator] max_event_s)")

    def _window(self, body: dict[str, Any], name: str, default: float) -> float:
        return errors.number(body[name], name, 0, MAX_WINDOW_S) if name in body else default

    def _offer(self, offer: Offer, call: Call) -> "Deferred[Outcome]":
        return self.aggregator.offer_event(offer, self._source(call)).addErrback(self._not_stored)

    @staticmethod
    def _not_stored(failure: Failure) -> Failure:
        failure.trap(StoreError)
        raise ApiError(503, UNAVAILABLE, f"the change holds now but could not be stored ({failure.getErrorMessage()})"
                                         ": it would be lost in a restart")

    def add_event(self, call: Call) -> "Deferred[Reply]":
        body = errors.json_body(call.body)
        errors.only(body, EVENT_FIELDS)
        if "id" not in body:
            raise errors.missing("id", "id: the event's id (1-32 letters, digits, '_', '.', '-')")
        event_id = errors.ident(body["id"], "id")
        book = self.aggregator.schedule.book
        if event_id in book.events:
            raise ApiError(409, CONFLICT, f"event {event_id!r} exists (version {book.events[event_id].version}): "
                                          f"change it with PUT /api/v1/events/{event_id}", "id")
        limit_w = self._limit_w(body, required=True)
        assert limit_w is not None
        now = self.now()
        for name in ("start", "end"):
            if name not in body:
                raise errors.missing(name, f"{name}: UTC text, +SECONDS from now or epoch seconds")
        start = errors.moment(body["start"], "start", now)
        end = errors.moment(body["end"], "end", now)
        self._check_times(start, end)
        version = book.cancelled.get(event_id, 0) + 1
        event = Event(event_id, limit_w, start, end, version, self._window(body, "start_window_s", 0.0),
                      self._window(body, "end_window_s", 0.0))
        return self._offer(Offer(event), call).addCallback(self._verdict, event, 201)

    def modify_event(self, call: Call) -> "Deferred[Reply]":
        event_id = call.param("id")
        body = errors.json_body(call.body)
        errors.only(body, EVENT_FIELDS)
        if "id" in body and body["id"] != event_id:
            raise errors.bad_field("id", f"the body names {body['id']!r}, the path {event_id!r}")
        known = self.aggregator.schedule.book.events.get(event_id)
        if known is None:
            raise errors.not_found(f"no event {event_id!r} to modify (add it with POST /api/v1/events)")
        if not set(body) - {"id"}:
            raise errors.missing("limit_kw", "nothing to change: give limit_kw, limit_w, start, end or a window")
        now = self.now()
        limit_w = self._limit_w(body, required=False)
        start = errors.moment(body["start"], "start", now) if "start" in body else known.start
        end = errors.moment(body["end"], "end", now) if "end" in body else known.end
        self._check_times(start, end)
        event = Event(event_id, known.limit_w if limit_w is None else limit_w, start, end, known.version + 1,
                      self._window(body, "start_window_s", known.start_window_s),
                      self._window(body, "end_window_s", known.end_window_s))
        return self._offer(Offer(event), call).addCallback(self._verdict, event, 200)

    def cancel_event(self, call: Call) -> "Deferred[Reply]":
        event_id = call.param("id")
        book = self.aggregator.schedule.book
        known = book.events.get(event_id)
        if known is None:
            if event_id in book.cancelled:
                raise errors.not_found(f"event {event_id!r} is already cancelled")
            raise errors.not_found(f"no event {event_id!r} to cancel")
        now = self.now()
        offer = Offer(Event(event_id, 0.0, now, now, known.version + 1), cancelled=True)
        return self._offer(offer, call).addCallback(self._verdict, None, 200)

    def _verdict(self, outcome: Outcome, event: Event | None, status: int) -> Reply:
        if outcome.verdict == event_rules.REFUSED:
            raise ApiError(422, REFUSED, f"refused: {outcome.detail}")
        verdict = "added" if outcome.verdict == event_rules.LATE else outcome.verdict
        body: dict[str, Any] = {"verdict": verdict, "detail": outcome.detail}
        if event is not None:
            body["event"] = event_view(event, self.now(), self.aggregator.sources.get(event.id))
        return Reply(body, status)

    # -- rounds

    def rounds(self, call: Call) -> "Deferred[dict[str, Any]] | dict[str, Any]":
        errors.query_only(call.args, ("limit", "before"))
        limit = errors.query_int(call.args, "limit", ROUNDS_PAGE, 1, ROUNDS_MAX_PAGE)
        before = errors.query_int(call.args, "before", None, 1, 2**62)
        assert limit is not None
        found = [round_view(s) for s in reversed(self.history.rounds) if before is None or s.number < before]
        found = found[:limit]
        store = self.aggregator.store
        if len(found) >= limit or store is None:
            return self._page(found, limit)
        below = found[-1]["number"] if found else before
        return Deferred.fromCoroutine(self._older(store, found, below, limit))

    @staticmethod
    def _page(found: list[dict[str, Any]], limit: int) -> dict[str, Any]:
        return {"rounds": found, "next": found[-1]["number"] if len(found) == limit and found else None}

    async def _older(self, store: Any, found: list[dict[str, Any]], below: int | None, limit: int) -> dict[str, Any]:
        """Rounds below ``below`` from the journal, newest first, a page of
        entries at a time (at most 10 pages)."""
        await self.aggregator.durable()
        until: float | None = None
        for _ in range(10):
            entries = await store.journal(kinds=[kinds.ROUND], until=until, limit=ROUNDS_MAX_PAGE, newest_first=True)
            for entry in entries:
                view = round_from_journal(entry)
                if view is None or view["number"] is None or (below is not None and view["number"] >= below):
                    continue
                found.append(view)
                below = view["number"]
                if len(found) >= limit:
                    return self._page(found, limit)
            if len(entries) < ROUNDS_MAX_PAGE:
                break
            until = entries[-1].at
        return self._page(found, limit)

    def round(self, call: Call) -> "Deferred[dict[str, Any]] | Reply":
        text = call.param("number")
        if not ROUND_NUMBER.fullmatch(text):
            raise errors.bad_field("number", f"expected a round number (1 to 19 digits 0-9), got {text[:40]!r}")
        number = int(text)
        summary = self.history.find(number)
        if summary is not None:
            return Reply(round_view(summary, with_homes=True), offload=len(summary.homes) > self.batch)
        store = self.aggregator.store
        if store is None:
            raise errors.not_found(f"round {number} is not among the last {self.history.rounds.maxlen} kept, and "
                                   "there is no store")
        return Deferred.fromCoroutine(self._stored_round(store, number))

    async def _stored_round(self, store: Any, number: int) -> dict[str, Any]:
        await self.aggregator.durable()
        until: float | None = None
        for _ in range(20):
            entries = await store.journal(kinds=[kinds.ROUND], until=until, limit=ROUNDS_MAX_PAGE, newest_first=True)
            for entry in entries:
                if entry.round == number:
                    view = round_from_journal(entry)
                    if view is None:
                        raise errors.not_found(f"round {number} was abandoned ({entry.detail.get('abandoned')})")
                    return view
                if entry.round is not None and entry.round < number:
                    raise errors.not_found(f"no record of round {number}")
            if len(entries) < ROUNDS_MAX_PAGE:
                break
            until = entries[-1].at
        raise errors.not_found(f"no record of round {number}")

    # -- measurements and why

    def _store(self, what: str) -> Any:
        store = self.aggregator.store
        if store is None:
            raise ApiError(503, UNAVAILABLE, f"this aggregator has no store ([store] path = none): no {what} kept")
        return store

    def measurements(self, call: Call) -> "Deferred[Reply]":
        errors.query_only(call.args, (*measurements.QUERY, "home"))
        store = self._store("measurements are")
        asked = measurements.read_range(call, self.now())
        homes = errors.query_all(call.args, "home")
        for home_id in homes:
            self._record(home_id)
        subjects = homes or sorted(self.aggregator.registry.records)
        limit = self.max_rows + 1  # one row more than a reply holds says that it is cut
        d = self.aggregator.durable().addCallback(
            lambda _: store.measurements(subjects, asked.since, asked.until, limit=limit))
        return d.addCallback(measurements.samples_reply, asked.as_csv, self.max_rows, self.batch)

    def why(self, call: Call) -> "Deferred[dict[str, Any]]":
        errors.query_only(call.args, ("home", "load", "at"))
        now = self.now()
        home_id = errors.query_one(call.args, "home")
        load_id = errors.query_one(call.args, "load")
        if not home_id:
            raise errors.missing("home", "home: the home's id")
        if not load_id:
            raise errors.missing("load", "load: the load's id")
        errors.ident(home_id, "home")
        errors.ident(load_id, "load")
        record = self._record(home_id)
        if record.flex is not None and load_id not in {o.id for o in record.flex.loads}:
            # As the home's own API answers: its last bid names its loads.
            raise errors.bad_field("load", f"home {home_id} has no load {load_id!r} (its loads: "
                                           f"{', '.join(o.id for o in record.flex.loads)})")
        at = errors.query_moment(call.args, "at", now)
        moment = now if at is None else at
        store = self._store("journal is")
        d = self.aggregator.durable().addCallback(lambda _: audit.why_chain(store, home_id, load_id, moment))
        return d.addCallback(lambda chain: chain.view())

    def openapi_document(self, call: Call) -> Any:
        if self.openapi is None:
            from jeisson.web.openapi import document

            return document("aggregator")
        return self.openapi

