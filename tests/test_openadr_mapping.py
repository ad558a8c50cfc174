"""OpenADR events -> jeisson event offers, the opt decision and the usage report.

The offers go through jeisson's own ``EventBook`` (the rules every event
source meets), so what is checked is what the aggregator would do.
"""

import datetime

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jeisson.aggregator import events as jevents
from jeisson.openadr import mapping
from jeisson.openadr import messages as m
from jeisson.wire.aggregator_home_messages import ID_PATTERN

T0 = 2_000_000_000.0
LEVELS = {1: 9000.0, 2: 6000.0, 3: 3000.0}
SETTINGS = mapping.Settings(LEVELS, capacity_w=12000.0, ven_id="ven-1", resource_ids=("feeder-a",))
KW = m.Item("powerReal", "RealPower", "W", "k")
W = m.Item("powerReal", "RealPower", "W", "none")
EVERYONE = m.Targets()


def simple(*levels: float, each: float = 1800.0, name: str = "SIMPLE", type: str = "level",
           item: m.Item | None = None, targets: m.Targets | None = None) -> m.EventSignal:
    return m.EventSignal(name, type, f"{name}-sig", tuple(m.Interval(each, v, str(i)) for i, v in enumerate(levels)),
                         item, targets=targets)


def event(*signals: m.EventSignal, event_id: str = "ev1", modification: int = 0, status: str = "far",
          duration: float = 3600.0, start_after: float | None = None, test: bool = False,
          targets: m.Targets = EVERYONE) -> m.OadrEvent:
    return m.OadrEvent(event_id, modification, status, T0, duration, signals or (simple(1, 2),), "http://mc", T0 - 600,
                       targets, "always", start_after, test)


def limits(mapped: mapping.Mapped) -> list[tuple[str, float, float, float]]:
    return [(o.event.id, o.event.limit_w, o.event.start - T0, o.event.end - T0) for o in mapped.offers
            if not o.cancelled]


def book_verdicts(book: jevents.EventBook, mapped: mapping.Mapped, now: float = T0 - 60) -> list[str]:
    return [book.offer(offer, now).verdict for offer in mapped.offers]


def test_simple_levels_become_limits_per_interval() -> None:
    mapped = mapping.map_event(event(simple(1, 2)), SETTINGS)
    assert limits(mapped) == [("oadr-ev1.0", 9000, 0, 1800), ("oadr-ev1.1", 6000, 1800, 3600)]
    assert mapped.ids == ("oadr-ev1.0", "oadr-ev1.1")
    assert (mapped.opt, mapped.applied, mapped.test) == (m.OPT_IN, True, False)
    assert {o.event.version for o in mapped.offers} == {1}  # 2 x modificationNumber + 1
    assert [p.signals for p in mapped.pieces] == [("SIMPLE",), ("SIMPLE",)]


def test_level_zero_is_no_limit_and_missing_levels_take_the_stricter_side() -> None:
    mapped = mapping.map_event(event(simple(0, 2, 0, each=900)), SETTINGS)
    assert limits(mapped) == [("oadr-ev1.0", 6000, 900, 1800)]
    assert mapping.level_limit(4, LEVELS) == 3000
    assert mapping.level_limit(2, {1: 9000, 3: 3000}) == 3000
    assert mapping.level_limit(0, LEVELS) is None
    assert mapping.level_limit(1, {}) is None
    normal = mapping.map_event(event(simple(0, 0)), SETTINGS)
    assert (normal.offers, normal.opt, normal.applied) == ((), m.OPT_IN, False)
    assert "normal operation" in normal.reason


def test_equal_neighbours_merge() -> None:
    mapped = mapping.map_event(event(simple(2, 2, 1, each=1200)), SETTINGS)
    assert limits(mapped) == [("oadr-ev1.0", 6000, 0, 2400), ("oadr-ev1.1", 9000, 2400, 3600)]


def test_load_dispatch_setpoints_in_their_units() -> None:
    in_kw = mapping.map_event(event(simple(7.5, each=3600, name="LOAD_DISPATCH", type="setpoint", item=KW)), SETTINGS)
    assert limits(in_kw) == [("oadr-ev1.0", 7500, 0, 3600)]
    in_w = mapping.map_event(event(simple(7500, each=3600, name="LOAD_DISPATCH", type="setpoint", item=W)), SETTINGS)
    assert limits(in_w) == [("oadr-ev1.0", 7500, 0, 3600)]
    bare = mapping.map_event(event(simple(5, each=3600, name="LOAD_DISPATCH", type="setpoint")), SETTINGS)
    assert limits(bare) == [("oadr-ev1.0", 5000, 0, 3600)]


def test_load_dispatch_delta_needs_the_measured_total() -> None:
    signal = simple(-2, each=3600, name="LOAD_DISPATCH", type="delta", item=KW)
    assert limits(mapping.map_event(event(signal), SETTINGS, measured_w=10000)) == [("oadr-ev1.0", 8000, 0, 3600)]
    unknown = mapping.map_event(event(signal), SETTINGS)
    assert (unknown.opt, unknown.applied) == (m.OPT_OUT, False)
    assert "measured total is not known" in unknown.reason


def test_load_control_capacity_scales_the_fleet_capacity() -> None:
    signal = simple(0.5, 0.25, each=1800, name="LOAD_CONTROL", type="x-loadControlCapacity")
    assert limits(mapping.map_event(event(signal), SETTINGS)) == [("oadr-ev1.0", 6000, 0, 1800),
                                                                  ("oadr-ev1.1", 3000, 1800, 3600)]
    no_capacity = mapping.map_event(event(signal), mapping.Settings(LEVELS))
    assert (no_capacity.opt, no_capacity.offers) == (m.OPT_OUT, ())
    assert "no capacity_kw" in no_capacity.reason


def test_several_signals_take_the_lowest_limit_at_each_moment() -> None:
    mapped = mapping.map_event(event(simple(1, 3), simple(4.5, each=3600, name="LOAD_DISPATCH", type="setpoint",
                                                          item=KW)), SETTINGS)
    assert limits(mapped) == [("oadr-ev1.0", 4500, 0, 1800), ("oadr-ev1.1", 3000, 1800, 3600)]
    assert [p.signals for p in mapped.pieces] == [("LOAD_DISPATCH",), ("SIMPLE",)]


def test_prices_are_noted_not_acted_on() -> None:
    price = simple(0.3, each=3600, name="ELECTRICITY_PRICE", type="price")
    alone = mapping.map_event(event(price), SETTINGS)
    assert (alone.opt, alone.applied) == (m.OPT_OUT, False)
    assert "ELECTRICITY_PRICE (price): not a signal jeisson acts on" in alone.reason
    both = mapping.map_event(event(price, simple(2, 2)), SETTINGS)
    assert limits(both) == [("oadr-ev1.0", 6000, 0, 3600)]
    assert both.notes == ("ELECTRICITY_PRICE (price): not a signal jeisson acts on",)


def test_intervals_are_bounded_by_the_event_and_open_ended_events_by_the_setting() -> None:
    longer = mapping.map_event(event(simple(1, 2, each=3000)), SETTINGS)
    assert limits(longer) == [("oadr-ev1.0", 9000, 0, 3000), ("oadr-ev1.1", 6000, 3000, 3600)]
    open_ended = mapping.map_event(event(simple(2, each=0), duration=0), SETTINGS)
    assert limits(open_ended) == [("oadr-ev1.0", 6000, 0, jevents.MAX_EVENT_S)]
    by_intervals = mapping.map_event(event(simple(2, 1, each=600), duration=0), SETTINGS)
    assert limits(by_intervals) == [("oadr-ev1.0", 6000, 0, 600), ("oadr-ev1.1", 9000, 600, 1200)]


def test_start_after_becomes_the_windows() -> None:
    mapped = mapping.map_event(event(simple(1, 2), start_after=300), SETTINGS)
    first, second = (o.event for o in mapped.offers)
    # Nobody sheds before dtstart, everyone by dtstart + startafter ...
    assert (first.in_force_from, first.start, first.start_window_s, first.end_window_s) == (T0, T0 + 300, 300, 0)
    # ... and each restores within startafter after the end.
    assert (second.start, second.start_window_s, second.end, second.end_window_s) == (T0 + 1800, 0, T0 + 3600, 300)
    short = mapping.map_event(event(simple(2, each=400), duration=400, start_after=600), SETTINGS)
    (only,) = (o.event for o in short.offers)
    assert (only.start, only.start_window_s, only.end, only.end_window_s) == (T0 + 200, 200, T0 + 400, 600)


def test_modifications_raise_the_version_and_cancel_pieces_that_are_gone() -> None:
    book = jevents.EventBook()
    first = mapping.map_event(event(simple(1, 2)), SETTINGS)
    assert book_verdicts(book, first) == [jevents.ADDED, jevents.ADDED]
    again = mapping.map_event(event(simple(1, 2)), SETTINGS, known=first.ids)
    assert book_verdicts(book, again) == [jevents.DUPLICATE, jevents.DUPLICATE]
    modified = mapping.map_event(event(simple(3, each=3600), modification=1), SETTINGS, known=first.ids)
    assert [(o.event.id, o.cancelled, o.event.version) for o in modified.offers] == [
        ("oadr-ev1.1", True, 3), ("oadr-ev1.0", False, 3)]
    assert book_verdicts(book, modified) == [jevents.CANCELLED, jevents.MODIFIED]
    assert [(e.id, e.limit_w, e.version) for e in book] == [("oadr-ev1.0", 3000, 3)]


def test_cancellation_cancels_every_piece_offered() -> None:
    book = jevents.EventBook()
    offered = mapping.map_event(event(simple(1, 2), modification=3), SETTINGS)
    assert {o.event.version for o in offered.offers} == {7}
    book_verdicts(book, offered)
    # Some VTNs cancel without raising the modification number: the cancellation still wins.
    cancelled = event(simple(1, 2), modification=3, status="cancelled")
    mapped = mapping.map_event(cancelled, SETTINGS, known=offered.ids)
    assert [(o.event.id, o.cancelled, o.event.version) for o in mapped.offers] == [
        ("oadr-ev1.0", True, 8), ("oadr-ev1.1", True, 8)]
    assert (mapped.ids, mapped.opt, mapped.applied) == ((), m.OPT_IN, False)
    assert book_verdicts(book, mapped) == [jevents.CANCELLED, jevents.CANCELLED]
    assert list(book) == []
    # Sent again (VTNs repeat an event until it is gone): nothing changes.
    assert book_verdicts(book, mapping.map_event(cancelled, SETTINGS, known=offered.ids)) == [
        jevents.DUPLICATE, jevents.DUPLICATE]
    # One never offered (the VEN saw it first cancelled): nothing to cancel, nothing refused.
    assert mapping.map_event(event(simple(1, 2), event_id="ev9", status="cancelled"), SETTINGS).offers == ()
    # A later modification is the VTN's latest word: it holds again.
    revived = mapping.map_event(event(simple(2, 2), modification=4), SETTINGS)
    assert book_verdicts(book, revived) == [jevents.ADDED]
    assert [(e.id, e.limit_w, e.version) for e in book] == [("oadr-ev1.0", 6000, 9)]


def test_a_completed_event_offers_nothing_and_keeps_its_ids() -> None:
    mapped = mapping.map_event(event(simple(1), status="completed"), SETTINGS, known=("oadr-ev1.0",))
    assert (mapped.offers, mapped.ids) == ((), ("oadr-ev1.0",))


def test_a_test_event_is_answered_not_applied() -> None:
    mapped = mapping.map_event(event(simple(1, 2), test=True), SETTINGS)
    assert (mapped.offers, mapped.ids, mapped.applied, mapped.test, mapped.opt) == ((), (), False, True, m.OPT_IN)
    assert "test event" in mapped.reason
    assert mapped.response("r1") == m.EventResponse("ev1", 0, m.OPT_IN, "r1", 200, mapped.reason)
    cancelled = mapping.map_event(event(simple(1, 2), test=True, status="cancelled"), SETTINGS)
    assert cancelled.offers == ()


@pytest.mark.parametrize(("targets", "applied"), [
    (m.Targets(), True),
    (m.Targets(ven_ids=("ven-1",)), True),
    (m.Targets(ven_ids=("ven-2",), resource_ids=("feeder-a",)), True),
    (m.Targets(ven_ids=("ven-2",)), False),
    (m.Targets(group_ids=("north",)), False),
    (m.Targets(resource_ids=("feeder-b",)), False),
])
def test_targets_filter(targets: m.Targets, applied: bool) -> None:
    mapped = mapping.map_event(event(simple(1, 2), targets=targets), SETTINGS, known=("oadr-ev1.0",))
    assert mapped.applied is applied
    if not applied:
        assert mapped.opt == m.OPT_OUT and "not for this VEN" in mapped.reason
        assert [(o.event.id, o.cancelled) for o in mapped.offers] == [("oadr-ev1.0", True)]
    group = mapping.Settings(LEVELS, group_ids=("north",))
    assert mapping.targeted(m.Targets(group_names=("north",)), group)


def test_a_signal_for_other_targets_is_left_out() -> None:
    mine = simple(2, 2)
    theirs = simple(3, 3, targets=m.Targets(resource_ids=("feeder-z",)))
    mapped = mapping.map_event(event(mine, theirs), SETTINGS)
    assert limits(mapped) == [("oadr-ev1.0", 6000, 0, 3600)]
    assert "SIMPLE (SIMPLE-sig): for other targets" in mapped.notes


def test_opt_out_when_must_run_loads_exceed_the_limit_or_by_policy() -> None:
    held = mapping.map_event(event(simple(1, 3)), SETTINGS, must_run_w=2500)
    assert (held.opt, held.applied) == (m.OPT_IN, True)
    over = mapping.map_event(event(simple(1, 3)), SETTINGS, must_run_w=3500, known=held.ids)
    assert (over.opt, over.applied) == (m.OPT_OUT, False)
    assert over.reason == "the must-run loads alone draw 3.5 kW, above the event's 3.0 kW"
    assert (held.opt_reason, over.opt_reason) == ("participating", "mustRun")
    opt = over.create_opt("opt-1", "req-1", "ven-1", T0)
    assert opt == m.CreateOpt("opt-1", m.OPT_OUT, "mustRun", "ven-1", T0, "req-1", "ev1", 0)
    assert m.parse(m.render(opt)) == opt
    assert all(o.cancelled for o in over.offers) and len(over.offers) == 2
    out = mapping.map_event(event(simple(1)), mapping.Settings(LEVELS, opt="out"))
    assert (out.opt, out.offers, out.reason) == (m.OPT_OUT, (), "the operator's policy is to opt out")
    assert out.opt_reason == "notParticipating"
    forced_in = mapping.map_event(event(simple(3)), mapping.Settings(LEVELS, opt="in"), must_run_w=99999)
    assert (forced_in.opt, forced_in.applied) == (m.OPT_IN, True)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError, match="opt policy"):
        mapping.Settings(opt="maybe")
    with pytest.raises(ValueError, match="prefix"):
        mapping.Settings(prefix="has space")


def test_ids_fit_jeisson() -> None:
    assert mapping.jeisson_id("ev1", 0) == "oadr-ev1.0"
    uuid = "3f1c9a2e-77b0-4c2e-9f7e-0d2c6d1b9e55"
    long = mapping.jeisson_id(uuid, 12)
    assert ID_PATTERN.match(long) and long.startswith("oadr-3f1c9a2e-") and long.endswith(".12")
    odd = mapping.jeisson_id("event #7 / north", 0)
    assert ID_PATTERN.match(odd)
    assert odd != mapping.jeisson_id("event #7 / south", 0)
    assert mapping.jeisson_id("a b", 0) != mapping.jeisson_id("a-b", 0)


def test_the_answer_renders_as_created_event() -> None:
    answers = [mapping.map_event(event(simple(1)), SETTINGS),
               mapping.map_event(event(simple(1), event_id="ev2", modification=4, targets=m.Targets(
                   ven_ids=("x",))), SETTINGS)]
    created = mapping.created_event("ven-1", "req-7", answers)
    assert [(r.event_id, r.modification_number, r.opt_type, r.request_id) for r in created.event_responses] == [
        ("ev1", 0, m.OPT_IN, "req-7"), ("ev2", 4, m.OPT_OUT, "req-7")]
    assert m.parse(m.render(created)) == created


# ------------------------------------------------------------------ the invariants


@st.composite
def oadr_events(draw: st.DrawFn) -> m.OadrEvent:
    signals = []
    for _ in range(draw(st.integers(1, 3))):
        kind = draw(st.sampled_from(["simple", "dispatch", "control", "price"]))
        count = draw(st.integers(1, 5))
        durations = draw(st.lists(st.integers(0, 3600), min_size=count, max_size=count))
        if kind == "simple":
            values = draw(st.lists(st.integers(0, 5), min_size=count, max_size=count))
            name, type_, item = "SIMPLE", "level", None
        elif kind == "dispatch":
            values = draw(st.lists(st.integers(0, 20), min_size=count, max_size=count))
            name, type_, item = "LOAD_DISPATCH", "setpoint", KW
        elif kind == "control":
            values = draw(st.lists(st.floats(0, 1), min_size=count, max_size=count))
            name, type_, item = "LOAD_CONTROL", "x-loadControlCapacity", None
        else:
            values = draw(st.lists(st.floats(0, 1), min_size=count, max_size=count))
            name, type_, item = "ELECTRICITY_PRICE", "price", None
        signals.append(m.EventSignal(name, type_, f"s{len(signals)}", tuple(
            m.Interval(float(d), float(v)) for d, v in zip(durations, values, strict=True)), item))
    return m.OadrEvent(draw(st.sampled_from(["ev", "3f1c9a2e-77b0-4c2e-9f7e-0d2c6d1b9e55", "a b/c"])),
                       draw(st.integers(0, 50)), "far", T0, float(draw(st.integers(0, 7200))), tuple(signals),
                       start_after_s=draw(st.none() | st.integers(0, 900).map(float)))


def _limit_at(event: m.OadrEvent, moment: float) -> float | None:
    """The lowest limit any signal asks for at ``moment``, read directly."""
    end = mapping.event_end(event, SETTINGS)
    found = []
    for signal in event.signals:
        at = event.dtstart
        for interval in signal.intervals:
            until = end if interval.duration_s <= 0 else min(end, at + interval.duration_s)
            if at <= moment < until:
                if signal.name == "SIMPLE":
                    found.append(mapping.level_limit(int(interval.value), LEVELS))
                elif signal.name == "LOAD_DISPATCH":
                    found.append(interval.value * 1000)
                elif signal.name == "LOAD_CONTROL":
                    found.append(interval.value * 12000.0)
            at = until
            if at >= end:
                break
    limits_ = [f for f in found if f is not None]
    return min(limits_) if limits_ else None


@settings(max_examples=200, deadline=None)
@given(oadr_events())
def test_every_moment_holds_the_lowest_limit_asked(oadr: m.OadrEvent) -> None:
    mapped = mapping.map_event(oadr, SETTINGS)
    end = mapping.event_end(oadr, SETTINGS)
    previous_end = oadr.dtstart
    for piece in mapped.pieces:
        assert oadr.dtstart <= piece.start < piece.end <= end
        assert piece.start >= previous_end  # in order, never overlapping
        previous_end = piece.end
        for moment in (piece.start, (piece.start + piece.end) / 2):
            assert _limit_at(oadr, moment) == piece.limit_w
    covered = [(p.start, p.end) for p in mapped.pieces]
    for moment in range(int(oadr.dtstart), int(end), 97):
        inside = any(a <= moment < b for a, b in covered)
        assert inside == (_limit_at(oadr, moment) is not None)
    book = jevents.EventBook()
    verdicts = book_verdicts(book, mapped)
    assert all(v == jevents.ADDED for v in verdicts)
    assert all(ID_PATTERN.match(i) for i in mapped.ids)
    assert len(set(mapped.ids)) == len(mapped.ids)
    # The limit holds from each piece's start (after the first's window).
    for offer, piece in zip(mapped.offers, mapped.pieces, strict=True):
        assert offer.event.in_force_from == piece.start and offer.event.end == piece.end


# ------------------------------------------------------------------ reports


def test_usage_intervals_average_each_slot_and_carry_the_last_value() -> None:
    samples = [(T0 + 1, 1000.0), (T0 + 4, 3000.0), (T0 + 12, 5000.0), (T0 + 35, 7000.0)]
    intervals = mapping.usage_intervals(samples, T0, T0 + 40, 10)
    assert [(i.dtstart - T0, i.value, i.duration_s, i.r_id) for i in intervals] == [
        (0, 2000.0, 10, "fleet-power"), (10, 5000.0, 10, "fleet-power"), (20, 5000.0, 10, "fleet-power"),
        (30, 7000.0, 10, "fleet-power")]
    late = mapping.usage_intervals([(T0 + 25, 4000.0)], T0, T0 + 30, 10)
    assert [(i.dtstart - T0, i.value) for i in late] == [(20, 4000.0)]
    each = mapping.usage_intervals(samples, T0, T0 + 20, 0)
    assert [(i.dtstart - T0, i.value) for i in each] == [(1, 1000.0), (4, 3000.0), (12, 5000.0)]


def test_the_usage_report_round_trips_and_openleadr_reads_it() -> None:
    messaging = pytest.importorskip("openleadr.messaging")
    from jeisson.openadr import schema

    xsd = schema.load()
    register = mapping.telemetry_register("ven-1", "reg-1", T0, min_period_s=5, max_period_s=60)
    xsd.check(m.render(register))
    name, payload = messaging.parse_message(m.render(register))
    assert name == "oadrRegisterReport"
    (report,) = payload["reports"]
    assert (report["report_name"], report["report_specifier_id"]) == ("METADATA_TELEMETRY_USAGE", "TELEMETRY_USAGE")
    (description,) = report["report_descriptions"]
    assert (description["r_id"], description["report_type"], description["reading_type"]) == (
        "fleet-power", "usage", "Direct Read")
    assert (description["measurement"]["name"], description["measurement"]["unit"]) == ("powerReal", "W")
    assert description["sampling_rate"]["min_period"] == datetime.timedelta(seconds=5)

    request = m.ReportRequest("rr-1", "TELEMETRY_USAGE", ("fleet-power",), 10, 60)
    update = mapping.telemetry_update(request, [(T0 + 1, 8000.0), (T0 + 11, 7000.0)], T0, T0 + 20, T0 + 20, "up-1",
                                      "ven-1")
    assert m.parse(m.render(update)) == update
    xsd.check(m.render(update))
    name, payload = messaging.parse_message(m.render(update))
    (report,) = payload["reports"]
    assert report["report_request_id"] == "rr-1"
    assert [(i["report_payload"]["r_id"], i["report_payload"]["value"]) for i in report["intervals"]] == [
        ("fleet-power", 8000.0), ("fleet-power", 7000.0)]
    other = m.ReportRequest("rr-2", "TELEMETRY_USAGE", ("someone-else",), 10, 60)
    assert mapping.telemetry_update(other, [(T0 + 1, 8000.0)], T0, T0 + 20, T0, "up-2", None).reports[0].intervals == ()


@settings(max_examples=100, deadline=None)
@given(st.lists(st.tuples(oadr_events(), st.sampled_from(["far", "far", "active", "cancelled"]), st.booleans()),
                min_size=1, max_size=5))
def test_a_chain_of_modifications_leaves_exactly_the_latest_limits(steps) -> None:
    """Whatever the VTN sends one event id through, the aggregator's book
    holds the latest modification's limits and nothing of the earlier ones."""
    book = jevents.EventBook()
    known: tuple[str, ...] = ()
    for number, (drawn, status, test) in enumerate(steps):
        oadr = attrs.evolve(drawn, event_id="ev", modification_number=number, status=status, test_event=test,
                            start_after_s=None)
        mapped = mapping.map_event(oadr, SETTINGS, known=known)
        assert jevents.REFUSED not in book_verdicts(book, mapped, now=T0 - 60)
        known = mapped.ids
        end = mapping.event_end(oadr, SETTINGS)
        for moment in range(int(T0), int(end), 211):
            expected = _limit_at(oadr, moment) if mapped.applied else None
            assert book.limit_in_force(moment) == expected, (number, moment)
