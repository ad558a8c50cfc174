"""Aggregator <-> home messages (protocol "jeisson-dr", versions 1 and 2).

A line is ``VERB SP JSON-object``, UTF-8, at most ``MAX_LINE`` bytes.  Powers
are in watts, durations in seconds, times are UTC in ISO 8601 with a ``Z``
(``jeisson.wire.utc``).  See ``docs/protocol.rst`` for the conversation.
Everything here is pure: ``parse_line(bytes, version) -> message`` and
``serialize(message, version) -> bytes``.

The versions differ in ``FLEX`` only: version 1 writes each load as an
object, version 2 as an array of the same fields in ``LOAD_FIELDS`` order
(half the bytes, and cheaper to read and write); and in version 2 a
``FLEX`` is not answered with ``ACK`` (its bid comes back in the next
``BUDGET``).

The body is JSON as RFC 8259 has it: ``NaN``, ``Infinity``, ``-Infinity``
and an object that repeats a key are ``syntax`` errors, although Python's
json reads them.

This module is the wire's face and its full reading, which checks every
field and names what is wrong.  The messages and limits are in
``aggregator_home_messages``; the lines jeisson writes most are read by
``aggregator_home_quick`` first, which gives exactly what the full reading
would.
"""

import json
import math
from typing import Any

import attrs

from jeisson.wire.aggregator_home_messages import (
    BAD_CREDENTIAL,
    BAD_FIELD,
    ID_PATTERN,
    IDENTITY_MISMATCH,
    LOAD_FIELDS,
    LOAD_MODES,
    MAX_LINE,
    MAX_LOADS,
    MAX_POWER_W,
    MESSAGES,
    PROTOCOL_VERSIONS,
    STATE,
    SUPERSEDED,
    SYNTAX,
    TIMEOUT,
    TOO_LONG,
    UNKNOWN_HOME,
    UNKNOWN_VERB,
    VERSION,
    Ack,
    Budget,
    Commit,
    Error,
    Flex,
    Hello,
    LoadOffer,
    Measure,
    Message,
    Ping,
    Pong,
    Refused,
    Release,
    Welcome,
    reject_constant,
    unique_keys,
)
from jeisson.wire.aggregator_home_quick import read as _quick
from jeisson.wire.errors import ProtocolError
from jeisson.wire.utc import format_utc, parse_utc

__all__ = [
    "BAD_CREDENTIAL", "BAD_FIELD", "ID_PATTERN", "IDENTITY_MISMATCH", "LOAD_FIELDS", "LOAD_MODES", "MAX_LINE",
    "MAX_LOADS", "MAX_POWER_W", "MESSAGES", "PROTOCOL_VERSIONS", "STATE", "SUPERSEDED", "SYNTAX", "TIMEOUT", "TOO_LONG",
    "UNKNOWN_HOME", "UNKNOWN_VERB", "VERSION",
    "Ack", "Budget", "Commit", "Error", "Flex", "Hello", "LoadOffer", "Measure", "Message", "Ping", "Pong",
    "Refused", "Release", "Welcome",
    "format_utc", "parse_line", "parse_utc", "serialize",
]

Body = dict[str, Any]  # a JSON object as json reads it

# --------------------------------------------------------------- field checks


def _field(body: Body, name: str, verb: str) -> Any:
    try:
        return body[name]
    except KeyError:
        raise ProtocolError(BAD_FIELD, f"{verb}: missing field {name!r}") from None


def _int(body: Body, name: str, verb: str, low: int = 0, high: int = 2**53) -> int:
    value = _field(body, name, verb)
    if type(value) is not int or not low <= value <= high:
        raise ProtocolError(BAD_FIELD, f"{verb}: {name!r} must be an integer from {low} to {high}, got {value!r}")
    return value


def _watts(value: Any, where: str) -> float:
    if type(value) not in (int, float) or not 0 <= value <= MAX_POWER_W or not math.isfinite(value):
        raise ProtocolError(BAD_FIELD, f"{where} must be a power in W from 0 to {MAX_POWER_W:.0f}, got {value!r}")
    return float(value)


def _positive_seconds(body: Body, name: str, verb: str) -> float:
    value = _field(body, name, verb)
    if type(value) not in (int, float) or not 0 < value <= 86400 or not math.isfinite(value):
        raise ProtocolError(BAD_FIELD, f"{verb}: {name!r} must be seconds in (0, 86400], got {value!r}")
    return float(value)


def _text(body: Body, name: str, verb: str, limit: int = 512) -> str:
    value = _field(body, name, verb)
    if not isinstance(value, str) or len(value) > limit:
        raise ProtocolError(BAD_FIELD, f"{verb}: {name!r} must be a string of at most {limit} characters")
    # JSON's "\ud800" escapes decode to lone surrogates, which are not text: no UTF-8 line can carry them.
    if any("\ud800" <= c <= "\udfff" for c in value):
        raise ProtocolError(BAD_FIELD, f"{verb}: {name!r} must be Unicode text, not a lone surrogate escape")
    return value


def _ident(value: Any, where: str) -> str:
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise ProtocolError(BAD_FIELD, f"{where} must be an id of 1-32 letters, digits, '_', '.', '-', got {value!r}")
    return value


def _bool(value: Any, where: str) -> bool:
    if type(value) is not bool:
        raise ProtocolError(BAD_FIELD, f"{where} must be true or false, got {value!r}")
    return value


def _utc(body: Body, name: str, verb: str) -> float:
    value = _field(body, name, verb)
    try:
        return parse_utc(value)
    except ValueError as e:
        raise ProtocolError(BAD_FIELD, f"{verb}: {name!r}: {e}") from None


def _list(body: Body, name: str, verb: str, limit: int) -> list[Any]:
    value = _field(body, name, verb)
    if not isinstance(value, list) or len(value) > limit:
        raise ProtocolError(BAD_FIELD, f"{verb}: {name!r} must be a list of at most {limit} items")
    return value


def _quick_offer(load_id: Any, rated_w: Any, priority: Any, mode: Any, on: Any, critical: Any,
                 wanted: Any) -> LoadOffer | None:
    # The common case in one test, with no message built; None sends the
    # load through the checks that name what is wrong.
    if (type(load_id) is str and ID_PATTERN.match(load_id) and (type(rated_w) is float or type(rated_w) is int)
            and 0 <= rated_w <= MAX_POWER_W and math.isfinite(rated_w) and type(priority) is int
            and 1 <= priority <= 100 and type(mode) is str and mode in LOAD_MODES and type(on) is bool
            and type(critical) is bool and type(wanted) is bool):
        return LoadOffer(load_id, float(rated_w), priority, mode, on, critical, wanted)
    return None


def _offer(item: Any, index: int) -> LoadOffer:
    """Version 1: a load is an object."""
    try:
        offer = _quick_offer(item["id"], item["rated_w"], item["priority"], item["mode"], item["on"],
                             item["critical"], item["wanted"])
    except (KeyError, TypeError):
        offer = None
    return offer if offer is not None else _checked_offer(item, index)


def _offer_v2(item: Any, index: int) -> LoadOffer:
    """Version 2: a load is an array of ``LOAD_FIELDS``."""
    if type(item) is not list or len(item) != len(LOAD_FIELDS):
        raise ProtocolError(BAD_FIELD, f"FLEX: loads[{index}] must be an array of {len(LOAD_FIELDS)} items: "
                                       f"{', '.join(LOAD_FIELDS)}")
    offer = _quick_offer(*item)
    return offer if offer is not None else _checked_offer(dict(zip(LOAD_FIELDS, item, strict=True)), index)


def _checked_offer(item: Any, index: int) -> LoadOffer:
    where = f"FLEX: loads[{index}]"
    if not isinstance(item, dict):
        raise ProtocolError(BAD_FIELD, f"{where} must be an object")
    load_id = _ident(_field(item, "id", where), f"{where}.id")
    priority = _field(item, "priority", where)
    if type(priority) is not int or not 1 <= priority <= 100:
        raise ProtocolError(BAD_FIELD, f"{where}.priority must be an integer from 1 to 100, got {priority!r}")
    mode = _field(item, "mode", where)
    if mode not in LOAD_MODES:
        raise ProtocolError(BAD_FIELD, f"{where}.mode must be one of {', '.join(LOAD_MODES)}, got {mode!r}")
    return LoadOffer(
        id=load_id,
        rated_w=_watts(_field(item, "rated_w", where), f"{where}.rated_w"),
        priority=priority,
        mode=mode,
        on=_bool(_field(item, "on", where), f"{where}.on"),
        critical=_bool(_field(item, "critical", where), f"{where}.critical"),
        wanted=_bool(_field(item, "wanted", where), f"{where}.wanted"),
    )


def _unique(ids: list[str], where: str) -> tuple[str, ...]:
    if len(set(ids)) != len(ids):
        raise ProtocolError(BAD_FIELD, f"{where}: duplicate load ids")
    return tuple(ids)


def _from_body(verb: str, body: Body, version: int) -> Message:
    if verb == "HELLO":
        versions = _list(body, "versions", verb, 16)
        if not versions or any(type(v) is not int or v < 1 for v in versions):
            raise ProtocolError(BAD_FIELD, "HELLO: 'versions' must be a non-empty list of positive integers")
        return Hello(_ident(_field(body, "home", verb), "HELLO: 'home'"), _text(body, "secret", verb), tuple(versions))
    if verb == "WELCOME":
        return Welcome(
            _int(body, "version", verb, 1, 65535),
            _ident(_field(body, "home", verb), "WELCOME: 'home'"),
            _positive_seconds(body, "heartbeat_s", verb),
        )
    if verb == "REFUSED":
        return Refused(_text(body, "code", verb, 64), _text(body, "detail", verb))
    if verb == "ERROR":
        return Error(_text(body, "code", verb, 64), _text(body, "detail", verb))
    if verb == "FLEX":
        offer = _offer if version < 2 else _offer_v2
        offers = tuple(offer(item, i) for i, item in enumerate(_list(body, "loads", verb, MAX_LOADS)))
        _unique([o.id for o in offers], "FLEX: loads")
        # Optional: version 1 homes that never opt out may leave it out.
        opt_out = _bool(body.get("opt_out", False), "FLEX: 'opt_out'")
        return Flex(_int(body, "bid", verb), offers, opt_out)
    if verb == "ACK":
        return Ack(_int(body, "bid", verb))
    if verb == "BUDGET":
        return Budget(
            _int(body, "round", verb),
            _int(body, "bid", verb),
            _ident(_field(body, "event", verb), "BUDGET: 'event'"),
            _watts(_field(body, "budget_w", verb), "BUDGET: 'budget_w'"),
            _utc(body, "end", verb),
        )
    if verb == "RELEASE":
        return Release(_int(body, "round", verb), _ident(_field(body, "event", verb), "RELEASE: 'event'"))
    if verb == "COMMIT":
        on = [_ident(v, "COMMIT: 'on' item") for v in _list(body, "on", verb, MAX_LOADS)]
        return Commit(
            _int(body, "round", verb),
            _int(body, "bid", verb),
            _watts(_field(body, "committed_w", verb), "COMMIT: 'committed_w'"),
            _unique(on, "COMMIT: 'on'"),
        )
    if verb == "MEASURE":
        loads = _field(body, "loads", verb)
        if not isinstance(loads, dict) or len(loads) > MAX_LOADS:
            raise ProtocolError(BAD_FIELD, f"MEASURE: 'loads' must be an object of at most {MAX_LOADS} entries")
        pairs = tuple(
            (_ident(k, "MEASURE: 'loads' key"), _watts(v, f"MEASURE: loads[{k!r}]")) for k, v in loads.items()
        )
        return Measure(_utc(body, "at", verb), _watts(_field(body, "power_w", verb), "MEASURE: 'power_w'"), pairs)
    if verb == "PING":
        return Ping(_int(body, "n", verb))
    return Pong(_int(body, "n", verb))


def parse_line(line: bytes, version: int = 1) -> Message:
    """Parse one line (without its terminator) into a message object, as
    protocol ``version`` writes it.

    Raises ``ProtocolError`` naming what is wrong.
    """
    message = _quick(line, version)
    return message if message is not None else _parse_checked(line, version)


# RFC 8259's JSON: NaN, Infinity, -Infinity and a repeated key are refused.
_decode = json.JSONDecoder(parse_constant=reject_constant, object_pairs_hook=unique_keys).decode


def _parse_checked(line: bytes, version: int) -> Message:
    """Every line, every check."""
    try:
        text = line.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ProtocolError(SYNTAX, f"not UTF-8 (byte {e.start})") from None
    verb, _, rest = text.strip(" \t").partition(" ")
    if not verb:
        raise ProtocolError(SYNTAX, "empty line")
    if verb not in MESSAGES:
        raise ProtocolError(UNKNOWN_VERB, f"unknown message {verb[:32]!r}")
    try:
        body = _decode(rest) if rest.strip() else None
    except (ValueError, RecursionError) as e:
        raise ProtocolError(SYNTAX, f"{verb}: body is not valid JSON ({str(e)[:80]})") from None
    if not isinstance(body, dict):
        raise ProtocolError(SYNTAX, f"{verb}: body must be a JSON object")
    return _from_body(verb, body, version)


# ---------------------------------------------------------------- serializing


def _to_body(message: Message, version: int) -> Body:
    if isinstance(message, Hello):
        return {"home": message.home, "secret": message.secret, "versions": list(message.versions)}
    if isinstance(message, Flex):
        # Each load is a row of LOAD_FIELDS: version 2 sends the rows (JSON
        # writes a tuple as an array), version 1 an object per row.
        return {
            "bid": message.bid,
            "opt_out": message.opt_out,
            "loads": message.loads if version >= 2 else [dict(zip(LOAD_FIELDS, row, strict=True))
                                                         for row in message.loads],
        }
    if isinstance(message, Budget):
        return {
            "round": message.round,
            "bid": message.bid,
            "event": message.event,
            "budget_w": message.budget_w,
            "end": format_utc(message.end),
        }
    if isinstance(message, Commit):
        return {
            "round": message.round,
            "bid": message.bid,
            "committed_w": message.committed_w,
            "on": list(message.on),
        }
    if isinstance(message, Measure):
        return {"at": format_utc(message.at), "power_w": message.power_w, "loads": dict(message.loads)}
    if isinstance(message, Ack):
        return {"bid": message.bid}
    return attrs.asdict(message)


# One encoder for every line (json.dumps with options builds one per call).
_ENCODER = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)


def serialize(message: Message, version: int = 1) -> bytes:
    """The line for ``message`` in protocol ``version``, with its ``\\n``
    terminator."""
    body = _ENCODER.encode(_to_body(message, version))
    return f"{message.verb} {body}\n".encode()
