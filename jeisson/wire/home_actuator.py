"""Home <-> actuator messages (protocol "jeisson-board", versions 1 and 2).

Short ASCII lines an 8-bit microcontroller can parse with ``strtok`` and
``atoi``: a verb and space-separated fields, at most ``MAX_LINE`` bytes.
Relays are numbered from 1, powers are whole watts, sequence and ping
numbers are 0-65535.  See ``docs/protocol.rst``.

Version 2 is version 1 authenticated (``jeisson.wire.board_auth``): its
``HELLO`` carries the board's nonce, its ``WELCOME`` the home's id and
nonce, ``AUTH`` is the board's proof, and every line after ends with a
counter and a MAC that ``board_auth.Channel`` adds and strips; the
messages here are the lines without them.
"""

import re

import attrs

from jeisson.wire.errors import ProtocolError

# Version 2: authenticated (jeisson.wire.board_auth).  Version 1, without
# authentication, only for a board whose home's config says key = none.
PROTOCOL_VERSION = 2
UNAUTHENTICATED_VERSION = 1
# 64 in version 1; version 2's trailer (" <counter> <MAC>", up to 28 bytes)
# and the WELCOME's home id and nonce need more: a board's receive buffer
# grows from 65 to 97 bytes.
MAX_LINE = 96
MAX_RELAYS = 8
MAX_WATTS = 65535
MAX_SEQ = 65535
ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,15}\Z")
# The home's id in a version 2 WELCOME: the aggregator protocol's ids.
HOME_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,31}\Z")
# A nonce: 8 bytes as 16 lowercase hex digits.
NONCE_PATTERN = re.compile(r"[0-9a-f]{16}\Z")
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
# Version 2: a line that is not authenticated (no MAC, a wrong MAC, a
# counter already seen), a WELCOME or AUTH that does not prove the key; and
# REFUSED auth, a HELLO in version 1 from a board the home holds a key for.
AUTH = "auth"
# "Say HELLO first": the home has no session for this board.  Over a radio
# there is no connection to lose, so this is how a board learns that the home
# restarted or dropped it; it answers with a new HELLO.
HELLO_FIRST = "hello"


@attrs.frozen
class Hello:
    """Actuator -> home, first line: its id, relay count, version, states;
    in version 2 also its nonce (16 lowercase hex digits)."""

    verb = "HELLO"
    actuator: str
    relays: int
    version: int
    states: tuple[bool, ...]
    nonce: str | None = None


@attrs.frozen
class Welcome:
    """Home -> actuator; in version 2 also the home's id and nonce (the
    line's counter and MAC are ``board_auth``'s)."""

    verb = "WELCOME"
    version: int
    heartbeat_s: int
    home: str | None = None
    nonce: str | None = None


@attrs.frozen
class Auth:
    """Actuator -> home, version 2: the board's proof (its counter, 0, and
    MAC are ``board_auth``'s)."""

    verb = "AUTH"


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


Message = Hello | Welcome | Auth | Refused | Set | Ack | Nak | Meas | Ping | Pong | Err

MESSAGES: dict[str, type[Message]] = {
    cls.verb: cls for cls in (Hello, Welcome, Auth, Refused, Set, Ack, Nak, Meas, Ping, Pong, Err)
}
# Fields per verb; HELLO and WELCOME have one count per version.
_ARITY: dict[str, tuple[int, ...]] = {
    "HELLO": (4, 5), "WELCOME": (2, 4), "AUTH": (0,), "REFUSED": (1,), "SET": (3,), "ACK": (3,), "NAK": (2,),
    "PING": (1,), "PONG": (1,), "ERR": (1,),
}


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
    arity = _ARITY[verb]
    if len(fields) not in arity:
        expected = " or ".join(map(str, arity))
        raise ProtocolError(FIELD, f"{verb}: expected {expected} fields, got {len(fields)}")
    if verb == "HELLO":
        return _hello(fields)
    if verb == "WELCOME":
        return _welcome(fields)
    if verb == "AUTH":
        return Auth()
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


def _version(token: str, verb: str, count: int) -> int:
    """A HELLO's or WELCOME's version, which must agree with its number of
    fields: version 1 without the nonce, 2 and above with it."""
    version = _number(token, "version", verb, 1, 255)
    short, _ = _ARITY[verb]
    if (version == UNAUTHENTICATED_VERSION) != (count == short):
        raise ProtocolError(FIELD, f"{verb}: version {version} has {_ARITY[verb][version > 1]} fields, "
                                   f"got {count}")
    return version


def _nonce(token: str, verb: str) -> str:
    if not NONCE_PATTERN.match(token):
        raise ProtocolError(FIELD, f"{verb}: nonce must be 16 lowercase hex digits, got {token[:20]!r}")
    return token


def _hello(fields: list[str]) -> Hello:
    actuator, relays, version, states = fields[:4]
    if not ID_PATTERN.match(actuator):
        raise ProtocolError(FIELD, f"HELLO: id must be 1-16 letters, digits, '_', '.', '-', got {actuator!r}")
    count = _number(relays, "relay count", "HELLO", 1, MAX_RELAYS)
    if len(states) != count or set(states) - {"0", "1"}:
        raise ProtocolError(FIELD, f"HELLO: states must be {count} digits 0 or 1, got {states!r}")
    number = _version(version, "HELLO", len(fields))
    nonce = _nonce(fields[4], "HELLO") if len(fields) == 5 else None
    return Hello(actuator, count, number, tuple(c == "1" for c in states), nonce)


def _welcome(fields: list[str]) -> Welcome:
    version = _version(fields[0], "WELCOME", len(fields))
    heartbeat = _number(fields[1], "heartbeat", "WELCOME", 1, 3600)
    if len(fields) == 2:
        return Welcome(version, heartbeat)
    home, nonce = fields[2:]
    if not HOME_ID_PATTERN.match(home):
        raise ProtocolError(FIELD, f"WELCOME: home id must be 1-32 letters, digits, '_', '.', '-', got {home!r}")
    return Welcome(version, heartbeat, home, _nonce(nonce, "WELCOME"))


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
        if message.nonce is not None:
            fields.append(message.nonce)
    elif type(message) is Welcome:
        fields = [message.version, message.heartbeat_s]
        if message.home is not None:
            fields += [message.home, message.nonce]
    elif type(message) is Meas:
        fields = list(message.watts)
    else:
        fields = list(attrs.astuple(message))
    return " ".join([message.verb, *map(str, fields)]).encode("ascii") + b"\n"


# What a home writes to a board line it has just opened (a serial port, a
# radio): the board's HELLO may predate the opening, which flushed it.
HELLO_PROMPT: bytes = serialize(Err(HELLO_FIRST))
