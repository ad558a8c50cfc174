"""Home <-> actuator messages (protocol "jeisson-board", version 1).

Short ASCII lines an 8-bit microcontroller can parse with ``strtok`` and
``atoi``: a verb and space-separated fields, at most ``MAX_LINE`` bytes.
Relays are numbered from 1, powers are whole watts, sequence and ping
numbers are 0-65535.  See ``docs/protocol.rst``.
"""

import re

import attrs

from jeisson.wire.errors import ProtocolError

PROTOCOL_VERSION = 1
MAX_LINE = 64
MAX_RELAYS = 8
MAX_WATTS = 65535
MAX_SEQ = 65535
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,15}\Z")
CODE_PATTERN = re.compile(r"[a-z][a-z\-]{0,15}\Z")

# Error codes (ERR, NAK and REFUSED).
SYNTAX = "syntax"
VERB = "verb"
FIELD = "field"
STATE = "state"
LONG = "long"
RELAY = "relay"
BUSY = "busy"
UNKNOWN = "unknown"
RELAYS = "relays"
VERSION = "version"
SUPERSEDED = "superseded"
# "Say HELLO first": the home has no session for this board.  Over a radio
# there is no connection to lose, so this is how a board learns that the home
# restarted or dropped it; it answers with a new HELLO.
HELLO_FIRST = "hello"


@attrs.frozen
class Hello:
    """Actuator -> home, first line: its id, relay count, version, states."""

    verb = "HELLO"
    actuator: str
    relays: int
    version: int
    states: tuple[bool, ...]


@attrs.frozen
class Welcome:
    verb = "WELCOME"
    version: int
    heartbeat_s: int


@attrs.frozen
class Refused:
    verb = "REFUSED"
    code: str


@attrs.frozen
class Set:
    verb = "SET"
    seq: int
    relay: int
    on: bool


@attrs.frozen
class Ack:
    verb = "ACK"
    seq: int
    relay: int
    on: bool


@attrs.frozen
class Nak:
    verb = "NAK"
    seq: int
    code: str


@attrs.frozen
class Meas:
    verb = "MEAS"
    watts: tuple[int, ...]


@attrs.frozen
class Ping:
    verb = "PING"
    n: int


@attrs.frozen
class Pong:
    verb = "PONG"
    n: int


@attrs.frozen
class Err:
    verb = "ERR"
    code: str


Message = Hello | Welcome | Refused | Set | Ack | Nak | Meas | Ping | Pong | Err

MESSAGES: dict[str, type[Message]] = {
    cls.verb: cls for cls in (Hello, Welcome, Refused, Set, Ack, Nak, Meas, Ping, Pong, Err)
}
_ARITY = {"HELLO": 4, "WELCOME": 2, "REFUSED": 1, "SET": 3, "ACK": 3, "NAK": 2, "PING": 1, "PONG": 1, "ERR": 1}


def _number(token: str, name: str, verb: str, low: int, high: int) -> int:
    # Plain decimal digits only: what atoi() on a board would accept.
    if not token.isdigit() or len(token) > 5 or not low <= int(token) <= high:
        raise ProtocolError(FIELD, f"{verb}: {name} must be a whole number from {low} to {high}, got {token!r}")
    return int(token)


def _bit(token: str, name: str, verb: str) -> bool:
    if token not in ("0", "1"):
        raise ProtocolError(FIELD, f"{verb}: {name} must be 0 or 1, got {token!r}")
    return token == "1"


def _code(token: str, verb: str) -> str:
    if not CODE_PATTERN.match(token):
        raise ProtocolError(FIELD, f"{verb}: code must be 1-16 lowercase letters or '-', got {token!r}")
    return token


# SET and ACK as jeisson writes them: most of the traffic, read in one match.
assert MAX_RELAYS <= 9  # one digit in the pattern below
_SET_OR_ACK = re.compile(rb"(SET|ACK) ([0-9]{1,5}) ([1-%d]) ([01])\Z" % MAX_RELAYS)


def parse_line(line: bytes) -> Message:
    """Parse one line (without its terminator); raises ``ProtocolError``."""
    match = _SET_OR_ACK.match(line)
    if match is not None:
        verb, seq, relay, state = match.groups()
        if int(seq) <= MAX_SEQ:
            return (Set if verb == b"SET" else Ack)(int(seq), int(relay), state == b"1")
    return _parse_checked(line)


def _parse_checked(line: bytes) -> Message:
    """Every line, every check; names what is wrong."""
    if not line.isascii():
        raise ProtocolError(SYNTAX, "line is not ASCII")
    text = line.decode("ascii")
    if not text.isprintable():
        raise ProtocolError(SYNTAX, "line has control characters")
    tokens = text.split()
    if not tokens:
        raise ProtocolError(SYNTAX, "empty line")
    verb, fields = tokens[0], tokens[1:]
    if verb not in MESSAGES:
        raise ProtocolError(VERB, f"unknown message {verb[:16]!r}")
    if verb == "MEAS":
        if not 1 <= len(fields) <= MAX_RELAYS:
            raise ProtocolError(FIELD, f"MEAS: expected 1 to {MAX_RELAYS} readings, got {len(fields)}")
        return Meas(tuple(_number(f, f"reading {i + 1}", verb, 0, MAX_WATTS) for i, f in enumerate(fields)))
    if len(fields) != _ARITY[verb]:
        raise ProtocolError(FIELD, f"{verb}: expected {_ARITY[verb]} fields, got {len(fields)}")
    if verb == "HELLO":
        actuator, relays, version, states = fields
        if not ID_PATTERN.match(actuator):
            raise ProtocolError(FIELD, f"HELLO: id must be 1-16 letters, digits, '_', '.', '-', got {actuator!r}")
        count = _number(relays, "relay count", verb, 1, MAX_RELAYS)
        if len(states) != count or set(states) - {"0", "1"}:
            raise ProtocolError(FIELD, f"HELLO: states must be {count} digits 0 or 1, got {states!r}")
        return Hello(actuator, count, _number(version, "version", verb, 1, 255), tuple(c == "1" for c in states))
    if verb == "WELCOME":
        return Welcome(_number(fields[0], "version", verb, 1, 255), _number(fields[1], "heartbeat", verb, 1, 3600))
    if verb in ("REFUSED", "ERR"):
        return (Refused if verb == "REFUSED" else Err)(_code(fields[0], verb))
    if verb in ("SET", "ACK"):
        return (Set if verb == "SET" else Ack)(
            _number(fields[0], "seq", verb, 0, MAX_SEQ),
            _number(fields[1], "relay", verb, 1, MAX_RELAYS),
            _bit(fields[2], "state", verb),
        )
    if verb == "NAK":
        return Nak(_number(fields[0], "seq", verb, 0, MAX_SEQ), _code(fields[1], verb))
    return (Ping if verb == "PING" else Pong)(_number(fields[0], "n", verb, 0, MAX_SEQ))


def serialize(message: Message) -> bytes:
    """The line for ``message``, with its ``\\n`` terminator."""
    # SET and ACK, most of the traffic, first; ``type(message) is`` is the
    # cheapest test that also narrows the type.
    if type(message) is Set or type(message) is Ack:
        return f"{message.verb} {message.seq} {message.relay} {int(message.on)}\n".encode("ascii")
    if type(message) is Ping or type(message) is Pong:
        return f"{message.verb} {message.n}\n".encode("ascii")
    fields: list[object]
    if type(message) is Hello:
        states = "".join("1" if s else "0" for s in message.states)
        fields = [message.actuator, message.relays, message.version, states]
    elif type(message) is Meas:
        fields = list(message.watts)
    else:
        fields = list(attrs.astuple(message))
    return " ".join([message.verb, *map(str, fields)]).encode("ascii") + b"\n"


# What a home writes to a board line it has just opened (a serial port, a
# radio): the board's HELLO may predate the opening, which flushed it.
HELLO_PROMPT: bytes = serialize(Err(HELLO_FIRST))
