"""Tests for jeisson.wire.utc: the UTC times of the aggregator <-> home wire."""

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jeisson.wire import aggregator_home as ah
from jeisson.wire.utc import format_utc, parse_utc

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
FIRST_MS = int((datetime(1, 1, 1, tzinfo=UTC) - EPOCH).total_seconds()) * 1000
LAST_MS = int((datetime(9999, 12, 31, 23, 59, 59, tzinfo=UTC) - EPOCH).total_seconds()) * 1000 + 999


def exact_text(ms: int) -> str:
    """The text of a whole number of milliseconds, by integer arithmetic."""
    seconds, milli = divmod(ms, 1000)
    moment = EPOCH + timedelta(seconds=seconds)
    return f"{moment.year:04d}-{moment.month:02d}-{moment.day:02d}T{moment:%H:%M:%S}.{milli:03d}Z"


@pytest.mark.parametrize("epoch, text", [
    (0.0, "1970-01-01T00:00:00.000Z"),
    (1795456800.25, "2026-11-23T18:00:00.250Z"),
    (1795456800.1, "2026-11-23T18:00:00.100Z"),
    # Floored through the float's error, these were written .099 and .218.
    (31647243172.1, "2972-11-10T12:52:52.100Z"),
    (-42349447598.9, "0628-01-01T08:33:21.100Z"),
    (235241592237.219, "9424-07-05T14:43:57.219Z"),
    # Rounded to the nearest millisecond, not floored.
    (1795456800.0996, "2026-11-23T18:00:00.100Z"),
    (1795456800.0994, "2026-11-23T18:00:00.099Z"),
    (1795456799.9996, "2026-11-23T18:00:00.000Z"),
    (1798761599.9996, "2027-01-01T00:00:00.000Z"),
    (-0.001, "1969-12-31T23:59:59.999Z"),
    (-0.9, "1969-12-31T23:59:59.100Z"),
    # Years below 1000 in 4 digits (strftime wrote "999-...", "1-...").
    (FIRST_MS / 1000, "0001-01-01T00:00:00.000Z"),
    (FIRST_MS / 1000 + 0.1, "0001-01-01T00:00:00.100Z"),
    (-30610224000.001, "0999-12-31T23:59:59.999Z"),
    (-30610224000.0, "1000-01-01T00:00:00.000Z"),
    (LAST_MS / 1000, "9999-12-31T23:59:59.999Z"),
])
def test_format_utc_at_the_edges(epoch, text):
    assert format_utc(epoch) == text
    assert format_utc(parse_utc(text)) == text


@pytest.mark.parametrize("epoch", [FIRST_MS / 1000 - 0.001, LAST_MS / 1000 + 0.001, LAST_MS / 1000 + 0.0006,
                                   float("nan"), float("inf"), -float("inf"), 1e300])
def test_format_utc_refuses_moments_outside_the_years_1_to_9999(epoch):
    with pytest.raises(ValueError, match="within the years 1 to 9999"):
        format_utc(epoch)


@given(ms=st.integers(min_value=FIRST_MS, max_value=LAST_MS))
def test_every_millisecond_is_written_exactly_and_read_back(ms):
    text = format_utc(ms / 1000)
    assert text == exact_text(ms)
    assert round(parse_utc(text) * 1000) == ms
    assert format_utc(parse_utc(text)) == text


@given(epoch=st.floats(min_value=FIRST_MS / 1000, max_value=LAST_MS / 1000))
def test_any_moment_is_written_as_its_nearest_millisecond(epoch):
    text = format_utc(epoch)
    assert len(text) == len("2026-11-23T18:00:00.000Z")
    assert abs(parse_utc(text) - epoch) <= 0.0005 + abs(epoch) * 2**-50


@pytest.mark.parametrize("text, epoch", [
    ("2026-11-23T18:00:00Z", 1795456800.0),
    ("2026-11-23T18:00:00.1Z", 1795456800.1),
    ("2026-11-23T18:00:00.123456Z", 1795456800.123456),
    ("0999-12-31T23:59:59.999Z", -30610224000.001),
])
def test_parse_utc_reads_0_to_6_fraction_digits_and_any_4_digit_year(text, epoch):
    assert parse_utc(text) == pytest.approx(epoch, abs=1e-6)


def test_budget_and_measure_times_go_on_the_wire_exactly():
    budget = ah.Budget(1, 2, "e", 5.0, 1795456800.1)
    assert b'"end":"2026-11-23T18:00:00.100Z"' in ah.serialize(budget)
    early = ah.Measure(-30610224000.001, 0.0, ())
    line = ah.serialize(early)
    assert b'"at":"0999-12-31T23:59:59.999Z"' in line
    assert ah.parse_line(line[:-1]) == early
