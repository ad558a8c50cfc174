"""Aggregator <-> home messages (protocol "jeisson-dr", versions 1 and 2).

A line is ``VERB SP JSON-object``, UTF-8, at most ``MAX_LINE`` bytes.  Powers
are in watts, durations in seconds, times are UTC in ISO 8601 with a ``Z``.
See ``docs/protocol.rst`` for the conversation.  Everything here is pure:
``parse_line(bytes, version) -> message`` and ``serialize(message, version)
-> bytes``.

The versions differ in ``FLEX`` only: version 1 writes each load as an
object, version 2 as an array of the same fields in ``LOAD_FIELDS`` order
(half the bytes, and cheaper to read and write); and in version 2 a
``FLEX`` is not answered with ``ACK`` (its bid comes back in the next
``BUDGET``).
"""

import functools
import json
import math
import re
from datetime import UTC, datetime
from typing import NamedTuple

import attrs

from jeisson.wire.errors import ProtocolError

PROTOCOL_VERSIONS = (1, 2)
# Version 2's FLEX: each load an array of these fields, in this order.
LOAD_FIELDS = ("id", "rated_w", "priority", "mode", "on", "critical", "wanted")
MAX_LINE = 16384
MAX_LOADS = 64
MAX_POWER_W = 1e7
_ID_FORM = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}"
ID_PATTERN = re.compile(_ID_FORM + r"\Z")
LOAD_MODES = ("must", "may", "off")

# Error codes, sent in ERROR and REFUSED.
SYNTAX = "syntax"
UNKNOWN_VERB = "unknown-verb"
BAD_FIELD = "bad-field"
STATE = "state"
TOO_LONG = "too-long"
UNKNOWN_HOME = "unknown-home"
BAD_CREDENTIAL = "bad-credential"
VERSION = "version"
SUPERSEDED = "superseded"
TIMEOUT = "timeout"


@functools.lru_cache(maxsize=256)
def format_utc(epoch: float) -> str:
    # Cached: a round's budgets and a status file repeat the same moments.
    moment = datetime.fromtimestamp(epoch, tz=UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


_UTC_FORM = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?Z"
_UTC = re.compile(_UTC_FORM + r"\Z")


def parse_utc(text: str) -> float:
    """Parse ``YYYY-MM-DDTHH:MM:SS[.ffffff]Z`` into seconds since the epoch."""
    if not isinstance(text, str) or not _UTC.match(text):
        raise ValueError(f"not a UTC time like 2026-11-23T18:00:00Z: {text!r}")
    return _utc_seconds(text)


@functools.lru_cache(maxsize=256)
def _utc_seconds(text: str) -> float:
    return datetime.fromisoformat(text[:-1]).replace(tzinfo=UTC).timestamp()


# ----------------------------------------------------------------- messages


class LoadOffer(NamedTuple):
    """One load as a home offers it in a flexibility report: one row of
    ``LOAD_FIELDS``, as version 2 writes it.  A named tuple rather than a
    frozen attrs class: a report of 8 loads is built in 2 us instead of 5.

    ``mode`` is what the aggregator may do with it: ``must`` run (critical,
    held on by its minimum on time, or on an unreachable board and so counted
    at its rated power), ``may`` run or be shed, or is ``off`` (its owner
    wants it off, or its minimum off time holds it off).
    """

    id: str
    rated_w: float
    priority: int
    mode: str
    on: bool
    critical: bool
    wanted: bool  # the owner wants it on: what it would draw without an event


assert LoadOffer._fields == LOAD_FIELDS


@attrs.frozen
class Hello:
    verb = "HELLO"
    home: str
    secret: str
    versions: tuple[int, ...]


@attrs.frozen
class Welcome:
    verb = "WELCOME"
    version: int
    home: str
    heartbeat_s: float


@attrs.frozen
class Refused:
    verb = "REFUSED"
    code: str
    detail: str


@attrs.frozen
class Flex:
    """A home's bid: its loads, and whether its owner opted out of the event.

    An opted-out home runs its loads as its owner set them; the aggregator
    counts them as fixed demand.
    """

    verb = "FLEX"
    bid: int
    loads: tuple[LoadOffer, ...]
    opt_out: bool = False


@attrs.frozen
class Ack:
    verb = "ACK"
    bid: int


@attrs.frozen
class Budget:
    verb = "BUDGET"
    round: int
    bid: int
    event: str
    budget_w: float
    end: float


@attrs.frozen
class Release:
    verb = "RELEASE"
    round: int
    event: str


@attrs.frozen
class Commit:
    verb = "COMMIT"
    round: int
    bid: int
    committed_w: float
    on: tuple[str, ...]


@attrs.frozen
class Measure:
    verb = "MEASURE"
    at: float
    power_w: float
    loads: tuple[tuple[str, float], ...]


@attrs.frozen
class Ping:
    verb = "PING"
    n: int


@attrs.frozen
class Pong:
    verb = "PONG"
    n: int


@attrs.frozen
class Error:
    verb = "ERROR"
    code: str
    detail: str


MESSAGES = {
    cls.verb: cls
    for cls in (Hello, Welcome, Refused, Flex, Ack, Budget, Release, Commit, Measure, Ping, Pong, Error)
}

# --------------------------------------------------------------- field checks


def _field(body: dict, name: str, verb: str):
    try:
        return body[name]
    except KeyError:
        raise ProtocolError(BAD_FIELD, f"{verb}: missing field {name!r}") from None


def _int(body, name, verb, low=0, high=2**53):
    value = _field(body, name, verb)
    if type(value) is not int or not low <= value <= high:
        raise ProtocolError(BAD_FIELD, f"{verb}: {name!r} must be an integer from {low} to {high}, got {value!r}")
    return value


def _watts(value, where):
    if type(value) not in (int, float) or not 0 <= value <= MAX_POWER_W or not math.isfinite(value):
        raise ProtocolError(BAD_FIELD, f"{where} must be a power in W from 0 to {MAX_POWER_W:.0f}, got {value!r}")
    return float(value)


def _positive_seconds(body, name, verb):
    value = _field(body, name, verb)
    if type(value) not in (int, float) or not 0 < value <= 86400 or not math.isfinite(value):
        raise ProtocolError(BAD_FIELD, f"{verb}: {name!r} must be seconds in (0, 86400], got {value!r}")
    return float(value)


def _text(body, name, verb, limit=512):
    value = _field(body, name, verb)
    if not isinstance(value, str) or len(value) > limit:
        raise ProtocolError(BAD_FIELD, f"{verb}: {name!r} must be a string of at most {limit} characters")
    # JSON's "\ud800" escapes decode to lone surrogates, which are not text: no UTF-8 line can carry them.
    if any("\ud800" <= c <= "\udfff" for c in value):
        raise ProtocolError(BAD_FIELD, f"{verb}: {name!r} must be Unicode text, not a lone surrogate escape")
    return value


def _ident(value, where):
    if not isinstance(value, str) or not ID_PATTERN.match(value):
        raise ProtocolError(BAD_FIELD, f"{where} must be an id of 1-32 letters, digits, '_', '.', '-', got {value!r}")
    return value


def _bool(value, where):
    if type(value) is not bool:
        raise ProtocolError(BAD_FIELD, f"{where} must be true or false, got {value!r}")
    return value


def _utc(body, name, verb):
    value = _field(body, name, verb)
    try:
        return parse_utc(value)
    except ValueError as e:
        raise ProtocolError(BAD_FIELD, f"{verb}: {name!r}: {e}") from None


def _list(body, name, verb, limit):
    value = _field(body, name, verb)
    if not isinstance(value, list) or len(value) > limit:
        raise ProtocolError(BAD_FIELD, f"{verb}: {name!r} must be a list of at most {limit} items")
    return value


def _quick_offer(load_id, rated_w, priority, mode, on, critical, wanted) -> LoadOffer | None:
    # The common case in one test, with no message built; None sends the
    # load through the checks that name what is wrong.
    if (type(load_id) is str and ID_PATTERN.match(load_id) and (type(rated_w) is float or type(rated_w) is int)
            and 0 <= rated_w <= MAX_POWER_W and math.isfinite(rated_w) and type(priority) is int
            and 1 <= priority <= 100 and type(mode) is str and mode in LOAD_MODES and type(on) is bool
            and type(critical) is bool and type(wanted) is bool):
        return LoadOffer(load_id, float(rated_w), priority, mode, on, critical, wanted)
    return None


def _offer(item, index) -> LoadOffer:
    """Version 1: a load is an object."""
    try:
        offer = _quick_offer(item["id"], item["rated_w"], item["priority"], item["mode"], item["on"],
                             item["critical"], item["wanted"])
    except (KeyError, TypeError):
        offer = None
    return offer if offer is not None else _checked_offer(item, index)


def _offer_v2(item, index) -> LoadOffer:
    """Version 2: a load is an array of ``LOAD_FIELDS``."""
    if type(item) is not list or len(item) != len(LOAD_FIELDS):
        raise ProtocolError(BAD_FIELD, f"FLEX: loads[{index}] must be an array of {len(LOAD_FIELDS)} items: "
                                       f"{', '.join(LOAD_FIELDS)}")
    offer = _quick_offer(*item)
    return offer if offer is not None else _checked_offer(dict(zip(LOAD_FIELDS, item, strict=True)), index)


def _checked_offer(item, index) -> LoadOffer:
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


def _unique(ids, where):
    if len(set(ids)) != len(ids):
        raise ProtocolError(BAD_FIELD, f"{where}: duplicate load ids")
    return tuple(ids)


def _from_body(verb: str, body: dict, version: int):
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
    if verb in ("REFUSED", "ERROR"):
        return MESSAGES[verb](_text(body, "code", verb, 64), _text(body, "detail", verb))
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
    # PING, PONG
    return MESSAGES[verb](_int(body, "n", verb))


# Lines as jeisson writes them, most of the traffic (a round is a BUDGET to
# every home and a FLEX and a COMMIT from each): one pattern recognises such a
# line whole, values and all, and the message is built without the per-field
# checks, which the pattern has made.  Any other line, valid or not, takes the
# full path, which names what is wrong; a property test holds the two paths to
# the same answers.
_Q_ID = _ID_FORM.encode()  # in a bytes pattern, \d and the classes are ASCII only
_Q_COUNT = rb"(?:0|[1-9][0-9]{0,14})"  # at most 15 digits: below 2**53
_Q_WATTS = rb"(?:0|[1-9][0-9]{0,6})(?:\.[0-9]+)?"  # below MAX_POWER_W, no exponent
_Q_FLOAT_WATTS = rb"(?:0|[1-9][0-9]{0,6})\.[0-9]+"  # and with a point: a JSON float
_Q_BOOL = rb"(?:true|false)"
_Q_IDS = rb'(?:"%s"(?:,"%s"){0,%d})?' % (_Q_ID, _Q_ID, MAX_LOADS - 1)
_Q_LOAD = rb'\["%s",%s,(?:100|[1-9][0-9]?),"(?:must|may|off)",%s,%s,%s\]' % (_Q_ID, _Q_FLOAT_WATTS, _Q_BOOL,
                                                                            _Q_BOOL, _Q_BOOL)
_row = LoadOffer._make
_Q_FLEX_V2 = re.compile(rb'FLEX \{"bid":%s,"opt_out":%s,"loads":\[(?:%s(?:,%s){0,%d})?\]\}\Z'
                        % (_Q_COUNT, _Q_BOOL, _Q_LOAD, _Q_LOAD, MAX_LOADS - 1))
_Q_COMMIT = re.compile(rb'COMMIT \{"round":(%s),"bid":(%s),"committed_w":(%s),"on":\[(%s)\]\}\Z'
                       % (_Q_COUNT, _Q_COUNT, _Q_WATTS, _Q_IDS))
_Q_BUDGET = re.compile(rb'BUDGET \{"round":(%s),"bid":(%s),"event":"(%s)","budget_w":(%s),"end":"(%s)"\}\Z'
                       % (_Q_COUNT, _Q_COUNT, _Q_ID, _Q_WATTS, _UTC_FORM.encode()))


def _quick(line: bytes, version: int):
    """The message of a line as jeisson writes it, or None."""
    if line.startswith(b"FLEX ") and version >= 2 and _Q_FLEX_V2.match(line):
        body = json.loads(line[5:].decode())  # str: json.loads works out bytes' encoding in Python
        # The pattern makes each power a JSON float (it has a point), as the
        # full path's float() would.
        loads = tuple(map(_row, body["loads"]))
        if len({load.id for load in loads}) == len(loads):
            return Flex(body["bid"], loads, body["opt_out"])
    elif line.startswith(b"COMMIT ") and (match := _Q_COMMIT.match(line)):
        round_, bid, committed_w, on = match.groups()
        ids = tuple(on[1:-1].decode("ascii").split('","')) if on else ()
        if len(set(ids)) == len(ids):
            return Commit(int(round_), int(bid), float(committed_w), ids)
    elif line.startswith(b"BUDGET ") and (match := _Q_BUDGET.match(line)):
        round_, bid, event, budget_w, end = match.groups()
        try:
            end_s = _utc_seconds(end.decode("ascii"))
        except ValueError:  # no such day: the full path says so
            return None
        return Budget(int(round_), int(bid), event.decode("ascii"), float(budget_w), end_s)
    return None


def parse_line(line: bytes, version: int = 1):
    """Parse one line (without its terminator) into a message object, as
    protocol ``version`` writes it.

    Raises ``ProtocolError`` naming what is wrong.
    """
    message = _quick(line, version)
    return message if message is not None else _parse_checked(line, version)


def _parse_checked(line: bytes, version: int):
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
        body = json.loads(rest) if rest.strip() else None
    except (ValueError, RecursionError) as e:
        raise ProtocolError(SYNTAX, f"{verb}: body is not valid JSON ({str(e)[:80]})") from None
    if not isinstance(body, dict):
        raise ProtocolError(SYNTAX, f"{verb}: body must be a JSON object")
    return _from_body(verb, body, version)


# ---------------------------------------------------------------- serializing


def _to_body(message, version: int) -> dict:
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


def serialize(message, version: int = 1) -> bytes:
    """The line for ``message`` in protocol ``version``, with its ``\\n``
    terminator."""
    body = _ENCODER.encode(_to_body(message, version))
    return f"{message.verb} {body}\n".encode()
