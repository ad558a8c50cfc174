"""The moments an operator types: one reading for every manhole call (and
the ``jeisson`` command after it).

``parse_moment(value, now)`` takes:

- None: ``now``;
- a number, or its text: seconds since the epoch;
- ``+SECONDS`` or ``-SECONDS``: that long after or before ``now``;
- ``HH:MM`` or ``HH:MM:SS``: that time today, UTC;
- UTC text: ``2026-12-03T18:05:00Z`` (the wire's form), or any ISO 8601
  date and time (``2026-12-03 18:05``; without an offset it is UTC).

Anything else raises ``ValueError`` saying what it takes, and so does a
moment outside the years 1 to 9999 (``1e300``, ``+1e20``, ``nan``): no
answer, journal line or log could write it.
"""

import re
from datetime import UTC, datetime
from typing import Any

from jeisson.wire.utc import format_utc

_CLOCK = re.compile(r"(\d{1,2}):(\d{2})(?::(\d{2}(?:\.\d*)?))?\Z")
_RELATIVE = re.compile(r"[+-]\d+(?:\.\d*)?\Z")

FORMS = "epoch seconds, +SECONDS or -SECONDS from now, HH:MM[:SS] (today, UTC) or UTC text (2026-12-03T18:05:00Z)"


def refusal(value: Any) -> str:
    """What a refused moment is told, the same in the API (after the field's
    name) and at the manhole (``refused: start: ...``)."""
    return f"expected a moment within the years 1 to 9999 ({FORMS}), got {value!r}"


def parse_moment(value: Any, now: float) -> float:
    """``value`` as seconds since the epoch (see the module)."""
    moment = _read(value, now)
    try:
        format_utc(moment)  # the years 1 to 9999: every answer and journal line writes it so
    except ValueError:
        raise ValueError(refusal(value)) from None
    return moment


def _read(value: Any, now: float) -> float:
    if value is None:
        return now
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, str):
        raise ValueError(f"cannot read {value!r} as a moment: give {FORMS}")
    text = value.strip()
    if _RELATIVE.match(text):
        return now + float(text)
    clock = _CLOCK.match(text)
    if clock:
        hours, minutes, seconds = int(clock.group(1)), int(clock.group(2)), float(clock.group(3) or 0)
        if hours < 24 and minutes < 60 and seconds < 60:
            return now - now % 86400 + hours * 3600 + minutes * 60 + seconds
    else:
        try:
            return float(text)
        except ValueError:
            pass
        try:
            parsed = datetime.fromisoformat(text.removesuffix(" UTC").removesuffix("UTC"))
        except ValueError:
            pass
        else:
            if parsed.tzinfo is None:
                parsed = parsed.replace(tzinfo=UTC)
            return parsed.timestamp()
    raise ValueError(f"cannot read {value!r} as a moment: give {FORMS}")
