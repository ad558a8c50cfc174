"""The messages of the aggregator <-> home wire (``jeisson-dr``) and their limits.

The vocabulary shared by the full reading (``aggregator_home``) and the
quick one (``aggregator_home_quick``); import them from
``jeisson.wire.aggregator_home``, which is the wire's face.
"""

import re
from typing import Any, NamedTuple

import attrs

PROTOCOL_VERSIONS = (1, 2)
# Version 2's FLEX: each load an array of these fields, in this order.
LOAD_FIELDS = ("id", "rated_w", "priority", "mode", "on", "critical", "wanted")
MAX_LINE = 16384
MAX_LOADS = 64
MAX_POWER_W = 1e7
ID_FORM = r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}"
ID_PATTERN = re.compile(ID_FORM + r"\Z")
LOAD_MODES = ("must", "may", "off")

# Error codes, sent in ERROR and REFUSED.
SYNTAX = "syntax"
UNKNOWN_VERB = "unknown-verb"
BAD_FIELD = "bad-field"
STATE = "state"
TOO_LONG = "too-long"
UNKNOWN_HOME = "unknown-home"
BAD_CREDENTIAL = "bad-credential"
# REFUSED: the HELLO names another home than the connection's certificate.
IDENTITY_MISMATCH = "identity-mismatch"
VERSION = "version"
SUPERSEDED = "superseded"
TIMEOUT = "timeout"


# ------------------------------------------------------------ JSON, strictly
# Python's json reads more than RFC 8259: the names NaN, Infinity and
# -Infinity as numbers, and an object that repeats a key (the last value
# wins).  Both are refused, as a body that is not JSON (``syntax``).


class NotJson(ValueError):
    """Text that Python's json reads but RFC 8259 does not allow."""


def reject_constant(name: str) -> Any:
    """``parse_constant``: NaN, Infinity and -Infinity are not JSON numbers."""
    raise NotJson(f"{name} is not a JSON number")


def unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """``object_pairs_hook``: an object names each key once."""
    body = dict(pairs)
    if len(body) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise NotJson(f"key {key[:32]!r} repeated in an object")
            seen.add(key)
    return body


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


Message = Hello | Welcome | Refused | Flex | Ack | Budget | Release | Commit | Measure | Ping | Pong | Error

MESSAGES: dict[str, type[Message]] = {
    cls.verb: cls
    for cls in (Hello, Welcome, Refused, Flex, Ack, Budget, Release, Commit, Measure, Ping, Pong, Error)
}
