"""OpenADR 2.0b -> jeisson: an ``oadrEvent`` into event offers, the opt decision, the usage report.

Pure: no reactor, no transport, no clock; what it needs is given.

An OpenADR event is a stream of intervals per signal; a jeisson event is one
limit over a window.  ``map_event`` cuts the OpenADR event into *pieces*, the
stretches over which the lowest limit any of its signals asks for stays the
same, and offers one jeisson event per piece:

- ``SIMPLE`` (``level``): the level through ``Settings.levels_w`` (level 0:
  no limit; a level the table lacks takes the next configured level above
  it, or the highest);
- ``LOAD_DISPATCH`` ``setpoint``: the power itself (its ``itemBase``'s units;
  kW without one); ``delta``: the measured total plus the delta, when the
  measured total is known;
- ``LOAD_CONTROL`` ``x-loadControlCapacity``: that fraction of
  ``Settings.capacity_w``;
- other signals (prices...) are noted and not acted on.

Intervals follow each other from the event's ``dtstart``; the event's
duration bounds them (0: open-ended, then its intervals, else
``Settings.open_ended_s``).  ``startafter`` (randomisation) becomes jeisson's
windows: the first piece is in force from ``dtstart`` and holds from
``dtstart + startafter`` (each home sheds at its own moment between), the
last restores within ``startafter`` after the end.  The version of each
jeisson event is 2 x ``modificationNumber`` + 1, a cancellation's one more:
a cancellation wins over the values of its own modification number (some
VTNs cancel without raising it), and any later modification wins over
both, so the aggregator always holds the VTN's latest word.  Targets filter: an event (or a signal)
for other VENs, resources, groups or parties is not applied.  A test event
is answered and never applied.

The opt decision: ``optOut`` when the operator's policy says so, when the
must-run loads alone exceed the event's lowest limit (``auto``), when the
event is not for this VEN, or when no signal is one jeisson acts on; an
opted-out event is not applied.

The usage report: ``telemetry_register`` describes ``TELEMETRY_USAGE`` (one
data point, the fleet's measured total in W); ``telemetry_update`` turns
measured totals into its intervals at the granularity the VTN asked.
"""

import hashlib
import re
from collections.abc import Collection, Iterable, Mapping, Sequence

import attrs

from jeisson.aggregator.events import MAX_EVENT_S, Event, Offer
from jeisson.openadr import messages as m

SIMPLE = "SIMPLE"
LOAD_DISPATCH = "LOAD_DISPATCH"
LOAD_CONTROL = "LOAD_CONTROL"
TELEMETRY_USAGE = "TELEMETRY_USAGE"
METADATA_TELEMETRY_USAGE = "METADATA_TELEMETRY_USAGE"
FLEET_R_ID = "fleet-power"

OPT_POLICIES = ("auto", "in", "out")
# A jeisson id: 32 characters at most (``wire.ID_FORM``); room is kept for
# ``.NNN``, the piece's number.
_ID_CHARS = re.compile(r"[^A-Za-z0-9_.\-]")
_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9_\-]{0,7}\Z")


@attrs.frozen
class Settings:
    """What the mapping needs from ``[openadr]`` and the registration.

    ``levels_w``: SIMPLE level -> the fleet's limit (W).  ``capacity_w``:
    what ``x-loadControlCapacity`` fractions multiply (None: such signals
    are not acted on).  ``opt``: ``auto`` | ``in`` | ``out``.  ``ven_id`` and
    the ids below: what targets this VEN.  ``prefix``: jeisson's event ids
    start with it (``oadr-...``).
    """

    levels_w: Mapping[int, float] = attrs.field(factory=dict)
    capacity_w: float | None = None
    opt: str = attrs.field(default="auto")
    ven_id: str = ""
    resource_ids: tuple[str, ...] = ()
    group_ids: tuple[str, ...] = ()
    party_ids: tuple[str, ...] = ()
    open_ended_s: float = MAX_EVENT_S
    prefix: str = attrs.field(default="oadr")

    @opt.validator
    def _opt(self, _: object, value: str) -> None:
        if value not in OPT_POLICIES:
            raise ValueError(f"opt policy {value!r}: expected one of {', '.join(OPT_POLICIES)}")

    @prefix.validator
    def _prefix(self, _: object, value: str) -> None:
        if not _PREFIX.match(value):
            raise ValueError(f"event id prefix {value!r}: up to 8 letters, digits, '-' or '_'")


@attrs.frozen
class Piece:
    """A stretch of the event with one limit: [start, end), ``limit_w``,
    and the signals that set it."""

    start: float
    end: float
    limit_w: float
    signals: tuple[str, ...]


@attrs.frozen
class Mapped:
    """What one ``oadrEvent`` becomes.

    ``offers``: for ``Aggregator.offer_event``, in order (the cancellations
    of pieces that are gone first).  ``ids``: the jeisson event ids this
    OpenADR event holds now (give them back as ``known`` with its next
    modification).  ``opt`` and ``reason``: the answer.  ``applied``:
    whether its limits are offered.  ``notes``: signals not acted on.
    """

    event_id: str
    modification_number: int
    offers: tuple[Offer, ...]
    ids: tuple[str, ...]
    opt: str
    reason: str
    applied: bool
    test: bool = False
    pieces: tuple[Piece, ...] = ()
    notes: tuple[str, ...] = ()
    opt_reason: str = "participating"

    def response(self, request_id: str) -> m.EventResponse:
        """This event's line in an ``oadrCreatedEvent``."""
        return m.EventResponse(self.event_id, self.modification_number, self.opt, request_id, 200, self.reason)

    def create_opt(self, opt_id: str, request_id: str, ven_id: str, created: float,
                   market_context: str | None = None) -> m.CreateOpt:
        """The same answer as an ``oadrCreateOpt`` (EiOpt), for a VTN that
        wants opts beside, or after, the created-event."""
        return m.CreateOpt(opt_id, self.opt, self.opt_reason, ven_id, created, request_id, self.event_id,
                           self.modification_number, market_context)


def jeisson_id(event_id: str, piece: int, prefix: str = "oadr") -> str:
    """The jeisson event id of an OpenADR event's piece: ``oadr-ID.N``,
    or, for an id too long or with other characters, its first characters
    and a digest (``oadr-3f1c9a2e-77b0-b2c41d9e.0``)."""
    clean = _ID_CHARS.sub("-", event_id)
    if clean != event_id or len(prefix) + 1 + len(clean) > 26:
        digest = hashlib.sha256(event_id.encode()).hexdigest()[:8]
        clean = f"{clean[:26 - len(prefix) - 10]}-{digest}"
    return f"{prefix}-{clean}.{piece}"


def targeted(targets: m.Targets, settings: Settings) -> bool:
    """Whether targets name this VEN: no targets (everyone), or its venID,
    or one of its resources, groups or parties."""
    if targets.empty:
        return True
    return bool((settings.ven_id and settings.ven_id in targets.ven_ids)
                or set(settings.resource_ids) & set(targets.resource_ids)
                or set(settings.group_ids) & (set(targets.group_ids) | set(targets.group_names))
                or set(settings.party_ids) & set(targets.party_ids))


def level_limit(level: int, levels_w: Mapping[int, float]) -> float | None:
    """A SIMPLE level's limit: the table's; a level it lacks takes the
    next configured level above it, or the highest (the stricter side);
    level 0 (or an empty table): no limit."""
    if level <= 0 or not levels_w:
        return None
    if level in levels_w:
        return levels_w[level]
    above = [k for k in levels_w if k > level]
    return levels_w[min(above)] if above else levels_w[max(levels_w)]


@attrs.frozen
class _Segment:
    start: float
    end: float
    limit_w: float | None
    signal: str


def _signal_limit(signal: m.EventSignal, value: float, settings: Settings,
                  measured_w: float | None) -> tuple[bool, float | None, str]:
    """(acted on, limit or None, note) for one interval's value."""
    kind = f"{signal.name} ({signal.type})"
    if signal.name == SIMPLE:
        return True, level_limit(int(round(value)), settings.levels_w), ""
    if signal.name == LOAD_DISPATCH and signal.type in ("setpoint", "delta"):
        factor = signal.item.factor if signal.item is not None else 1000.0
        if signal.type == "setpoint":
            return True, max(0.0, value * factor), ""
        if measured_w is None:
            return False, None, f"{kind}: the measured total is not known yet"
        return True, max(0.0, measured_w + value * factor), ""
    if signal.name == LOAD_CONTROL and signal.type == "x-loadControlCapacity":
        if settings.capacity_w is None:
            return False, None, f"{kind}: no capacity_kw to scale it"
        return True, max(0.0, min(1.0, value)) * settings.capacity_w, ""
    return False, None, f"{kind}: not a signal jeisson acts on"


def event_end(event: m.OadrEvent, settings: Settings) -> float:
    """When the event ends: its duration, or (open-ended) its intervals',
    or ``open_ended_s`` after its start."""
    if event.duration_s > 0:
        return event.dtstart + event.duration_s
    longest = max((sum(i.duration_s for i in s.intervals) for s in event.signals), default=0.0)
    return event.dtstart + (longest if longest > 0 else settings.open_ended_s)


def pieces_of(event: m.OadrEvent, settings: Settings,
              measured_w: float | None = None) -> tuple[tuple[Piece, ...], bool, tuple[str, ...]]:
    """(pieces with a limit, whether any signal was acted on, notes)."""
    end = event_end(event, settings)
    segments: list[_Segment] = []
    acted = False
    notes: list[str] = []
    for signal in event.signals:
        if signal.targets is not None and not targeted(signal.targets, settings):
            notes.append(f"{signal.name} ({signal.signal_id}): for other targets")
            continue
        at = event.dtstart
        for interval in signal.intervals:
            until = end if interval.duration_s <= 0 else min(end, at + interval.duration_s)
            used, limit, note = _signal_limit(signal, interval.value, settings, measured_w)
            acted = acted or used
            if note and note not in notes:
                notes.append(note)
            if used and until > at:
                segments.append(_Segment(at, until, limit, signal.name))
            at = until
            if at >= end:
                break
    moments = sorted({s.start for s in segments} | {s.end for s in segments})
    pieces: list[Piece] = []
    for a, b in zip(moments, moments[1:], strict=False):
        covering = [s for s in segments if s.start <= a < s.end and s.limit_w is not None]
        if not covering:
            continue
        limit = min(s.limit_w for s in covering if s.limit_w is not None)
        names = tuple(sorted({s.signal for s in covering if s.limit_w == limit}))
        last = pieces[-1] if pieces else None
        if last is not None and last.end == a and last.limit_w == limit:
            pieces[-1] = Piece(last.start, b, limit, tuple(sorted(set(last.signals) | set(names))))
        else:
            pieces.append(Piece(a, b, limit, names))
    return tuple(pieces), acted, tuple(notes)


def _cancel(ids: Iterable[str], version: int, at: float) -> tuple[Offer, ...]:
    return tuple(Offer(Event(i, 0.0, at, at, version), cancelled=True) for i in sorted(ids))


def opt_decision(policy: str, lowest_limit_w: float | None, must_run_w: float) -> tuple[str, str, str]:
    """(optIn | optOut, why, EiOpt's reason code): the operator's policy,
    else (``auto``) out when the must-run loads alone exceed the lowest
    limit."""
    if policy == "in":
        return m.OPT_IN, "the operator's policy is to opt in", "participating"
    if policy == "out":
        return m.OPT_OUT, "the operator's policy is to opt out", "notParticipating"
    if lowest_limit_w is not None and must_run_w > lowest_limit_w:
        return m.OPT_OUT, (f"the must-run loads alone draw {must_run_w / 1000:.1f} kW, above the event's "
                           f"{lowest_limit_w / 1000:.1f} kW"), "mustRun"
    return m.OPT_IN, "the fleet can hold the limit", "participating"


def map_event(event: m.OadrEvent, settings: Settings, *, known: Collection[str] = (), must_run_w: float = 0.0,
              measured_w: float | None = None) -> Mapped:
    """One ``oadrEvent`` -> the jeisson offers and the answer.

    ``known``: the jeisson ids offered for this OpenADR event before (its
    pieces that are gone are cancelled).  ``must_run_w``: what the homes'
    must-run loads draw however deep they shed.  ``measured_w``: the
    fleet's measured total (for ``LOAD_DISPATCH`` deltas).
    """
    version = 2 * event.modification_number + 1
    at = event.dtstart

    def answer(offers: tuple[Offer, ...], ids: Iterable[str], opt: str, reason: str, applied: bool = False,
               pieces: tuple[Piece, ...] = (), notes: tuple[str, ...] = (), code: str = "") -> Mapped:
        code = code or ("participating" if opt == m.OPT_IN else "notParticipating")
        return Mapped(event.event_id, event.modification_number, offers, tuple(ids), opt, reason, applied,
                      event.test_event, pieces, notes, code)

    pieces, acted, notes = pieces_of(event, settings, measured_w)
    if event.status == "cancelled":
        return answer(_cancel(known, version + 1, at), (), m.OPT_IN, "cancelled by the VTN")
    if event.status == "completed":
        return answer((), known, m.OPT_IN, "completed")

    lowest = min((p.limit_w for p in pieces), default=None)

    def not_applied(opt: str, reason: str, code: str = "") -> Mapped:
        return answer(_cancel(known, version, at), (), opt, reason, False, pieces, notes, code)

    if not targeted(event.targets, settings):
        return not_applied(m.OPT_OUT, "not for this VEN (its targets name others)")
    if not acted:
        return not_applied(m.OPT_OUT, "no signal jeisson acts on" + (f" ({'; '.join(notes)})" if notes else ""))
    opt, reason, code = opt_decision(settings.opt, lowest, must_run_w)
    if event.test_event:
        return not_applied(opt, f"a test event: answered, not applied ({reason})", code)
    if opt == m.OPT_OUT:
        return not_applied(opt, reason, code)
    if not pieces:
        return not_applied(m.OPT_IN, "no limit in it (normal operation)")

    window = event.start_after_s or 0.0
    first = min(pieces, key=lambda p: p.start)
    last = max(pieces, key=lambda p: p.end)
    offers: list[Offer] = []
    ids: list[str] = []
    for number, piece in enumerate(pieces):
        start, start_window = piece.start, 0.0
        if piece is first and window:
            # Each home starts at its own moment in [dtstart, dtstart + startafter].
            start_window = min(window, (piece.end - piece.start) / 2)
            start = piece.start + start_window
        end_window = window if piece is last else 0.0
        jid = jeisson_id(event.event_id, number, settings.prefix)
        ids.append(jid)
        offers.append(Offer(Event(jid, piece.limit_w, start, piece.end, version, start_window, end_window)))
    gone = _cancel(set(known) - set(ids), version, at)
    return answer(gone + tuple(offers), ids, opt, reason, True, pieces, notes, code)


def created_event(ven_id: str, request_id: str, answers: Sequence[Mapped]) -> m.CreatedEvent:
    """The ``oadrCreatedEvent`` answering a distribute-event: one response
    per event that asked for one (``response_required`` ``always``: the
    caller passes those)."""
    return m.CreatedEvent(m.EiResponse(200, "OK", request_id), ven_id,
                          tuple(a.response(request_id) for a in answers))


# ------------------------------------------------------------------ reports


def telemetry_description(r_id: str = FLEET_R_ID, min_period_s: float = 10.0, max_period_s: float = 3600.0,
                          market_context: str | None = None) -> m.ReportDescription:
    """The one data point jeisson reports: the fleet's measured total
    power (``usage``, ``Direct Read``, ``powerReal`` in W)."""
    return m.ReportDescription(r_id, "usage", "Direct Read",
                               m.Item("powerReal", "RealPower", "W", "none", m.PowerAttributes()),
                               market_context, m.SamplingRate(min_period_s, max_period_s, False))


def telemetry_register(ven_id: str | None, request_id: str, created: float, *,
                       report_specifier_id: str = TELEMETRY_USAGE, r_id: str = FLEET_R_ID,
                       min_period_s: float = 10.0, max_period_s: float = 3600.0,
                       market_context: str | None = None) -> m.RegisterReport:
    """The ``oadrRegisterReport`` offering ``METADATA_TELEMETRY_USAGE``."""
    report = m.Report(report_specifier_id, METADATA_TELEMETRY_USAGE, created,
                      descriptions=(telemetry_description(r_id, min_period_s, max_period_s, market_context),))
    return m.RegisterReport(request_id, (report,), ven_id)


def usage_intervals(samples: Sequence[tuple[float, float]], start: float, end: float, granularity_s: float,
                    r_id: str = FLEET_R_ID) -> tuple[m.ReportInterval, ...]:
    """Measured totals ``(time, W)`` (in time order) -> one interval per
    ``granularity_s`` over [start, end): the mean of the samples in it, or
    the last one before it when none fell in it; nothing before the first
    sample.  A granularity of 0 (as often as measured): one per sample."""
    if granularity_s <= 0:
        return tuple(m.ReportInterval(t, r_id, w) for t, w in samples if start <= t < end)
    intervals: list[m.ReportInterval] = []
    index = 0
    last: float | None = None
    slot = start
    while slot < end:
        until = min(end, slot + granularity_s)
        inside: list[float] = []
        while index < len(samples) and samples[index][0] < until:
            t, w = samples[index]
            if t >= slot:
                inside.append(w)
            last = w
            index += 1
        value = sum(inside) / len(inside) if inside else last
        if value is not None:
            intervals.append(m.ReportInterval(slot, r_id, value, until - slot))
        slot = until
    return tuple(intervals)


def telemetry_update(request: m.ReportRequest, samples: Sequence[tuple[float, float]], start: float, end: float,
                     created: float, request_id: str, ven_id: str | None, *, r_id: str = FLEET_R_ID,
                     report_id: str | None = None) -> m.UpdateReport:
    """The ``oadrUpdateReport`` for one report request: the measured totals
    over [start, end) at the request's granularity."""
    intervals = usage_intervals(samples, start, end, request.granularity_s, r_id) if r_id in request.r_ids else ()
    report = m.Report(request.report_specifier_id, TELEMETRY_USAGE, created,
                      report_id=report_id or f"{request.report_request_id}-{int(start)}",
                      report_request_id=request.report_request_id, dtstart=start, duration_s=end - start,
                      intervals=intervals)
    return m.UpdateReport(request_id, (report,), ven_id)
