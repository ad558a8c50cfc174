"""The API's one error body, and the checks that produce it.

Every error the API answers has the same shape::

    {"error": {"status": 422, "code": "bad-field", "field": "limit_kw",
               "message": "expected a number >= 0, got 'x'"}}

``field`` is there only when one field is to blame.  The checks below
read a request's query and JSON body and raise ``ApiError`` naming the
field and what was wrong; they are pure (no request, no reactor), so the
API's resources only route and render.
"""

import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

from jeisson.moments import FORMS, parse_moment, refusal
from jeisson.wire.aggregator_home import ID_PATTERN

# The codes of the contract (docs/api.rst).
BAD_JSON = "bad-json"
BAD_FIELD = "bad-field"
MISSING_FIELD = "missing-field"
UNKNOWN_FIELD = "unknown-field"
NOT_FOUND = "not-found"
METHOD_NOT_ALLOWED = "method-not-allowed"
CONFLICT = "conflict"
REFUSED = "refused"
UNAUTHORIZED = "unauthorized"
FORBIDDEN = "forbidden"
UNAVAILABLE = "unavailable"
INTERNAL = "internal"

# Reason phrases for the codes the API answers that Twisted has none for
# (it would send "Unknown Status"): RFC 9110's.
PHRASES = {422: b"Unprocessable Content"}

# The most a JSON body may weigh: an event or a load's setting is a few
# hundred bytes.
MAX_BODY = 64 * 1024


class ApiError(Exception):
    """An answer other than success: its status, code, message and field."""

    def __init__(self, status: int, code: str, message: str, field: str | None = None,
                 headers: Mapping[str, str] | None = None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"status": self.status, "code": self.code}
        if self.field is not None:
            error["field"] = self.field
        error["message"] = self.message
        return {"error": error}

    def __repr__(self) -> str:
        return f"ApiError({self.status}, {self.code!r}, {self.message!r}, field={self.field!r})"


def bad_field(field: str, message: str) -> ApiError:
    return ApiError(422, BAD_FIELD, message, field)


def missing(field: str, what: str) -> ApiError:
    return ApiError(422, MISSING_FIELD, f"missing: {what}", field)


def not_found(message: str) -> ApiError:
    return ApiError(404, NOT_FOUND, message)


def encode(body: Any) -> bytes:
    """A reply's JSON: UTF-8, no NaN (JSON has none: a float that is not
    finite is written as null)."""
    try:  # the common case, at C speed: no float that is not finite
        text = json.dumps(body, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    except ValueError:
        text = json.dumps(_finite(body), ensure_ascii=False, separators=(",", ":"))
    return text.encode("utf-8")


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def json_body(data: bytes) -> dict[str, Any]:
    """A request's body as a JSON object, or ``ApiError`` bad-json."""
    if len(data) > MAX_BODY:
        raise ApiError(413, BAD_JSON, f"the body is {len(data)} bytes; at most {MAX_BODY} are taken")
    if not data.strip():
        raise ApiError(400, BAD_JSON, "the body is empty: expected a JSON object")
    try:
        value = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except UnicodeDecodeError:
        raise ApiError(400, BAD_JSON, "the body is not UTF-8") from None
    except ValueError as e:
        raise ApiError(400, BAD_JSON, f"the body is not JSON: {e}") from None
    except RecursionError:
        raise ApiError(400, BAD_JSON, "the body is not JSON this API takes: nested too deeply") from None
    if not isinstance(value, dict):
        raise ApiError(400, BAD_JSON, f"expected a JSON object, got {type(value).__name__}")
    return value


def only(body: Mapping[str, Any], known: Iterable[str]) -> None:
    """Refuse a field not in ``known`` (a typo would otherwise be ignored)."""
    allowed = set(known)
    for name in body:
        if name not in allowed:
            raise ApiError(422, UNKNOWN_FIELD, f"unknown field (known: {', '.join(sorted(allowed))})", name)


def number(value: Any, field: str, low: float = -math.inf, high: float = math.inf) -> float:
    """A JSON number (not a bool, not text) within [low, high]."""
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise bad_field(field, f"expected a number{_range(low, high)}, got {value!r}")
    if not low <= value <= high:
        raise bad_field(field, f"expected a number{_range(low, high)}, got {value!r}")
    return float(value)


def _range(low: float, high: float) -> str:
    if math.isfinite(low) and math.isfinite(high):
        return f" from {low:g} to {high:g}"
    if math.isfinite(low):
        return f" >= {low:g}"
    if math.isfinite(high):
        return f" <= {high:g}"
    return ""


def boolean(value: Any, field: str) -> bool:
    if not isinstance(value, bool):
        raise bad_field(field, f"expected true or false, got {value!r}")
    return value


def ident(value: Any, field: str) -> str:
    """An id as the wire takes it (1-32 letters, digits, ``_ . -``)."""
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise bad_field(field, f"expected an id of 1-32 letters, digits, '_', '.', '-', got {value!r}")
    return value


def moment(value: Any, field: str, now: float) -> float:
    """Anything ``parse_moment`` takes: UTC text, ``+SECONDS``, epoch seconds."""
    if value is None or isinstance(value, bool):
        raise bad_field(field, f"expected a moment ({FORMS}), got {value!r}")
    if isinstance(value, str) and not value.isascii():  # float() would read "٣" as 3
        raise bad_field(field, f"expected a moment ({FORMS}) in ASCII digits, got {value!r}")
    try:
        return parse_moment(value, now)  # within the years 1 to 9999, as every answer writes it
    except (ValueError, OverflowError):
        raise bad_field(field, refusal(value)) from None


def query_one(args: Mapping[bytes, list[bytes]], name: str) -> str | None:
    """One query parameter as text (the last if repeated), or None."""
    values = args.get(name.encode())
    if not values:
        return None
    try:
        return values[-1].decode("utf-8")
    except UnicodeDecodeError:
        raise bad_field(name, "not UTF-8") from None


def query_all(args: Mapping[bytes, list[bytes]], name: str) -> list[str]:
    try:
        return [v.decode("utf-8") for v in args.get(name.encode(), [])]
    except UnicodeDecodeError:
        raise bad_field(name, "not UTF-8") from None


def query_int(args: Mapping[bytes, list[bytes]], name: str, default: int | None, low: int, high: int) -> int | None:
    text = query_one(args, name)
    if text is None or text == "":
        return default
    try:
        value = int(text)
    except ValueError:
        raise bad_field(name, f"expected a whole number from {low} to {high}, got {text!r}") from None
    if not low <= value <= high:
        raise bad_field(name, f"expected a whole number from {low} to {high}, got {text!r}")
    return value


def query_bool(args: Mapping[bytes, list[bytes]], name: str) -> bool | None:
    text = query_one(args, name)
    if text is None or text == "":
        return None
    lowered = text.lower()
    if lowered in ("true", "yes", "1"):
        return True
    if lowered in ("false", "no", "0"):
        return False
    raise bad_field(name, f"expected true or false, got {text!r}")


def query_moment(args: Mapping[bytes, list[bytes]], name: str, now: float) -> float | None:
    """A moment in the query.  A query's ``+`` decodes to a space, so a
    value that starts with a space is read as starting with ``+``
    (``?since=+600``: ten minutes from now, not 600 s after 1970); ``%2B``
    is the same."""
    text = query_one(args, name)
    if text is None or text == "":
        return None
    if text.startswith(" "):
        text = "+" + text[1:]
    return moment(text, name, now)


def query_only(args: Mapping[bytes, list[bytes]], known: Iterable[str]) -> None:
    """Refuse a query parameter not in ``known``."""
    allowed = set(known)
    for raw in args:
        name = raw.decode("utf-8", "replace")
        if name not in allowed:
            known_names = ", ".join(sorted(allowed)) or "none"
            raise ApiError(400, UNKNOWN_FIELD, f"unknown query parameter (known: {known_names})", name)
