"""The UTC times of the aggregator <-> home wire: ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z``.

jeisson writes exactly 3 fraction digits (``format_utc``: the moment
rounded to the nearest millisecond, the year always 4 digits) and reads 0
to 6 (``parse_utc``).  Both are pure, and cached: a round's budgets and a
status file repeat the same moments.
"""

import functools
import re
from datetime import UTC, datetime, timedelta

UTC_FORM = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z"
_UTC = re.compile(UTC_FORM + r"\Z")
_EPOCH = datetime(1970, 1, 1)  # naive: isoformat() then writes no offset


@functools.lru_cache(maxsize=256)
def format_utc(epoch: float) -> str:
    """``epoch`` seconds as ``YYYY-MM-DDTHH:MM:SS.mmmZ``.

    The milliseconds are rounded to the nearest, from the whole count of
    them: a moment read back from its own text is not moved (a float's
    error would floor ``...00.100`` to ``...00.099``).  Raises
    ``ValueError`` outside the years 1 to 9999.
    """
    try:
        moment = _EPOCH + timedelta(milliseconds=round(epoch * 1000))
    except (OverflowError, ValueError):  # ValueError: not a number
        raise ValueError(f"{epoch!r} is not a moment within the years 1 to 9999") from None
    # Not strftime: its %Y writes the year 999 as "999"; isoformat always
    # writes 4 digits.
    return moment.isoformat(timespec="milliseconds") + "Z"


def parse_utc(text: str) -> float:
    """Parse ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` into seconds since the epoch."""
    if not isinstance(text, str) or not _UTC.match(text):
        raise ValueError(f"not a UTC time like 2026-11-23T18:00:00Z: {text!r}")
    return utc_seconds(text)


@functools.lru_cache(maxsize=256)
def utc_seconds(text: str) -> float:
    """``parse_utc`` for a text already known to have the form (``UTC_FORM``);
    raises ``ValueError`` for a day or time that does not exist."""
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC).timestamp()
