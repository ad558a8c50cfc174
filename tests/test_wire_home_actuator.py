"""Tests for jeisson.wire.home_actuator: the short ASCII home <-> relay board lines."""

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jeisson.framing import LineFramer
from jeisson.wire import home_actuator as ha
from jeisson.wire.errors import ProtocolError

# ---------------------------------------------------------------- strategies

ids = st.from_regex(ha.ID_PATTERN, fullmatch=True)
codes = st.from_regex(ha.CODE_PATTERN, fullmatch=True)
seqs = st.integers(min_value=0, max_value=ha.MAX_SEQ)
relays = st.integers(min_value=1, max_value=ha.MAX_RELAYS)
versions = st.integers(min_value=1, max_value=255)


nonces = st.from_regex(ha.NONCE_PATTERN, fullmatch=True)
home_ids = st.from_regex(ha.HOME_ID_PATTERN, fullmatch=True)


@st.composite
def hellos(draw):
    count = draw(relays)
    states = draw(st.lists(st.booleans(), min_size=count, max_size=count).map(tuple))
    version = draw(versions)
    nonce = None if version == 1 else draw(nonces)
    return ha.Hello(actuator=draw(ids), relays=count, version=version, states=states, nonce=nonce)


@st.composite
def welcomes(draw):
    version = draw(versions)
    heartbeat = draw(st.integers(min_value=1, max_value=3600))
    if version == 1:
        return ha.Welcome(version, heartbeat)
    return ha.Welcome(version, heartbeat, draw(home_ids), draw(nonces))


STRATEGIES = {
    ha.Hello: hellos(),
    ha.Welcome: welcomes(),
    ha.Auth: st.just(ha.Auth()),
    ha.Refused: st.builds(ha.Refused, code=codes),
    ha.Set: st.builds(ha.Set, seq=seqs, relay=relays, on=st.booleans()),
    ha.Ack: st.builds(ha.Ack, seq=seqs, relay=relays, on=st.booleans()),
    ha.Nak: st.builds(ha.Nak, seq=seqs, code=codes),
    ha.Meas: st.builds(
        ha.Meas,
        watts=st.lists(st.integers(min_value=0, max_value=ha.MAX_WATTS), min_size=1, max_size=ha.MAX_RELAYS).map(tuple),
    ),
    ha.Ping: st.builds(ha.Ping, n=seqs),
    ha.Pong: st.builds(ha.Pong, n=seqs),
    ha.Err: st.builds(ha.Err, code=codes),
}

messages = st.one_of(list(STRATEGIES.values()))


def parse_error(line: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        ha.parse_line(line)
    return info.value


# ---------------------------------------------------------------- round trips


def test_strategies_cover_every_message():
    assert set(STRATEGIES) == set(ha.MESSAGES.values())


@pytest.mark.parametrize("cls", list(STRATEGIES), ids=lambda cls: cls.verb)
@settings(max_examples=60)
@given(data=st.data())
def test_round_trip(cls, data):
    message = data.draw(STRATEGIES[cls])
    wire = ha.serialize(message)
    assert wire.endswith(b"\n")
    assert wire.count(b"\n") == 1
    assert wire.isascii()
    assert len(wire) - 1 <= ha.MAX_LINE
    assert all(32 <= byte < 127 for byte in wire[:-1])
    assert wire[:-1].split(b" ")[0] == cls.verb.encode()
    parsed = ha.parse_line(wire[:-1])
    assert type(parsed) is cls
    assert parsed == message


@settings(max_examples=100)
@given(
    batch=st.lists(messages, min_size=1, max_size=10),
    cuts=st.lists(st.integers(min_value=0, max_value=1000), max_size=15),
    crlf=st.booleans(),
)
def test_messages_survive_random_chunking_through_the_framer(batch, cuts, crlf):
    data = b"".join(ha.serialize(m) for m in batch)
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    framer = LineFramer(ha.MAX_LINE)
    lines = []
    for a, b in pairwise(points):
        lines.extend(framer.feed(data[a:b]))
    assert [ha.parse_line(x) for x in lines] == batch
    assert framer.pending == 0


@pytest.mark.parametrize(
    ("message", "wire"),
    [
        (ha.Hello("board-1", 4, 1, (True, False, False, True)), b"HELLO board-1 4 1 1001\n"),
        (ha.Welcome(1, 30), b"WELCOME 1 30\n"),
        (ha.Refused("relays"), b"REFUSED relays\n"),
        (ha.Set(17, 3, True), b"SET 17 3 1\n"),
        (ha.Ack(17, 3, False), b"ACK 17 3 0\n"),
        (ha.Nak(65535, "relay"), b"NAK 65535 relay\n"),
        (ha.Meas((0, 1500, 65535)), b"MEAS 0 1500 65535\n"),
        (ha.Ping(0), b"PING 0\n"),
        (ha.Pong(42), b"PONG 42\n"),
        (ha.Err("long"), b"ERR long\n"),
    ],
    ids=lambda value: value.decode().strip() if isinstance(value, bytes) else None,
)
def test_exact_wire_form(message, wire):
    assert ha.serialize(message) == wire
    assert ha.parse_line(wire[:-1]) == message


def test_worst_case_lines_fit_max_line():
    longest_id = "A" * 16
    longest_code = "z" * 16
    worst = [
        ha.Hello(longest_id, ha.MAX_RELAYS, 255, (True,) * ha.MAX_RELAYS, "f" * 16),
        ha.Welcome(255, 3600, "h" * 32, "f" * 16),
        ha.Auth(),
        ha.Refused(longest_code),
        ha.Set(ha.MAX_SEQ, ha.MAX_RELAYS, True),
        ha.Ack(ha.MAX_SEQ, ha.MAX_RELAYS, True),
        ha.Nak(ha.MAX_SEQ, longest_code),
        ha.Meas((ha.MAX_WATTS,) * ha.MAX_RELAYS),
        ha.Ping(ha.MAX_SEQ),
        ha.Pong(ha.MAX_SEQ),
        ha.Err(longest_code),
    ]
    assert {type(m) for m in worst} == set(ha.MESSAGES.values())
    for message in worst:
        wire = ha.serialize(message)
        assert wire.isascii()
        # Room for version 2's " <counter> <MAC>" (at most 10 digits and 16).
        assert len(wire) - 1 + 28 <= ha.MAX_LINE, wire
        assert LineFramer(ha.MAX_LINE).feed(wire) == [wire[:-1]]
        assert ha.parse_line(wire[:-1]) == message


def test_extra_spaces_between_fields_are_tolerated():
    assert ha.parse_line(b"SET  5   2 1 ") == ha.Set(5, 2, True)


def test_leading_zeros_are_plain_decimal():
    assert ha.parse_line(b"PING 00007") == ha.Ping(7)


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize("raw", [b"PING \xff", b"ERR caf\xc3\xa9", b"\x80", b"MEAS 1 2 \xa03"])
def test_non_ascii_is_a_syntax_error(raw):
    assert parse_error(raw).code == ha.SYNTAX


@pytest.mark.parametrize("raw", [b"PING\t1", b"PING 1\x00", b"\x1bPING 1", b"PING 1\r", b"SET 1 1\x7f 1", b"PONG\x0b1"])
def test_control_characters_are_a_syntax_error(raw):
    error = parse_error(raw)
    assert error.code == ha.SYNTAX
    assert "control" in error.detail


@pytest.mark.parametrize("raw", [b"", b" ", b"    "])
def test_empty_line_is_a_syntax_error(raw):
    error = parse_error(raw)
    assert error.code == ha.SYNTAX
    assert "empty" in error.detail


@pytest.mark.parametrize("verb", ["HELO", "ping", "Set", "OK", "MEASURE", "1"])
def test_unknown_verb(verb):
    error = parse_error(f"{verb} 1".encode())
    assert error.code == ha.VERB
    assert repr(verb) in error.detail


VALID_LINES = {
    "HELLO": b"HELLO b1 3 1 010",
    "WELCOME": b"WELCOME 1 30",
    "AUTH": b"AUTH",
    "REFUSED": b"REFUSED version",
    "SET": b"SET 1 2 1",
    "ACK": b"ACK 1 2 0",
    "NAK": b"NAK 1 busy",
    "PING": b"PING 7",
    "PONG": b"PONG 7",
    "ERR": b"ERR syntax",
}


def test_valid_lines_cover_every_fixed_arity_verb():
    assert set(VALID_LINES) == set(ha.MESSAGES) - {"MEAS"}


@pytest.mark.parametrize("line", [b"HELLO b1 3 2 010", b"HELLO b1 3 1 010 0123456789abcdef", b"WELCOME 2 30",
                                  b"WELCOME 1 30 home-1 0123456789abcdef"])
def test_version_1_has_no_nonce_and_version_2_has_one(line):
    error = parse_error(line)
    assert error.code == ha.FIELD and "fields" in error.detail


@pytest.mark.parametrize("line", [b"HELLO b1 3 2 010 0123456789ABCDEF", b"HELLO b1 3 2 010 0123456789abcde",
                                  b"WELCOME 2 30 home-1 0123456789abcdeg"])
def test_a_nonce_is_16_lowercase_hex_digits(line):
    error = parse_error(line)
    assert error.code == ha.FIELD and "nonce" in error.detail


@pytest.mark.parametrize("verb", [v for v in VALID_LINES if v != "AUTH"])
def test_wrong_arity(verb):
    assert type(ha.parse_line(VALID_LINES[verb])) is ha.MESSAGES[verb]
    fields = VALID_LINES[verb].split()[1:]
    for wrong in (fields[:-1], [*fields, b"1"]):
        error = parse_error(b" ".join([verb.encode(), *wrong]))
        assert error.code == ha.FIELD
        assert error.detail.startswith(verb + ":")
        assert f"got {len(wrong)}" in error.detail


@pytest.mark.parametrize("count", [0, ha.MAX_RELAYS + 1])
def test_meas_reading_count(count):
    error = parse_error(b" ".join([b"MEAS", *[b"5"] * count]))
    assert error.code == ha.FIELD
    assert error.detail.startswith("MEAS:")
    assert "readings" in error.detail


BAD_FIELDS = [
    # relays
    (b"SET 1 0 1", "SET", "relay"),
    (b"SET 1 9 1", "SET", "relay"),
    (b"ACK 1 0 1", "ACK", "relay"),
    (b"ACK 1 9 0", "ACK", "relay"),
    (b"SET 1 x 1", "SET", "relay"),
    # states
    (b"SET 1 1 2", "SET", "state"),
    (b"ACK 1 1 2", "ACK", "state"),
    (b"SET 1 1 01", "SET", "state"),
    (b"SET 1 1 on", "SET", "state"),
    (b"SET 1 1 -1", "SET", "state"),
    # sequence and ping numbers
    (b"SET 65536 1 1", "SET", "seq"),
    (b"ACK 99999 1 1", "ACK", "seq"),
    (b"NAK 65536 busy", "NAK", "seq"),
    (b"PING 65536", "PING", "n"),
    (b"PONG 100000", "PONG", "n"),
    (b"PING 000001", "PING", "n"),
    (b"PING 1.0", "PING", "n"),
    (b"PING 0x10", "PING", "n"),
    (b"PING 1e3", "PING", "n"),
    (b"PING one", "PING", "n"),
    # signed numbers: atoi would accept them, the protocol does not
    (b"PING +1", "PING", "n"),
    (b"PING -1", "PING", "n"),
    (b"PONG -0", "PONG", "n"),
    (b"SET -1 1 1", "SET", "seq"),
    (b"SET +1 1 1", "SET", "seq"),
    (b"SET 1 +1 1", "SET", "relay"),
    (b"SET 1 -1 1", "SET", "relay"),
    (b"MEAS 1 -1", "MEAS", "reading 2"),
    (b"MEAS +1", "MEAS", "reading 1"),
    (b"MEAS 65536", "MEAS", "reading 1"),
    (b"MEAS 1 2 3 4 5 6 7 x", "MEAS", "reading 8"),
    # WELCOME
    (b"WELCOME 0 30", "WELCOME", "version"),
    (b"WELCOME 256 30", "WELCOME", "version"),
    (b"WELCOME 1 0", "WELCOME", "heartbeat"),
    (b"WELCOME 1 3601", "WELCOME", "heartbeat"),
    (b"WELCOME 1 -30", "WELCOME", "heartbeat"),
    # codes
    (b"ERR Syntax", "ERR", "code"),
    (b"ERR 1", "ERR", "code"),
    (b"ERR -x", "ERR", "code"),
    (b"ERR a_b", "ERR", "code"),
    (b"ERR " + b"a" * 17, "ERR", "code"),
    (b"REFUSED VERSION", "REFUSED", "code"),
    (b"NAK 1 Busy", "NAK", "code"),
    (b"NAK 1 2", "NAK", "code"),
    # HELLO
    (b"HELLO b1 3 1 01", "HELLO", "states"),
    (b"HELLO b1 3 1 0101", "HELLO", "states"),
    (b"HELLO b1 1 1 00000000", "HELLO", "states"),
    (b"HELLO b1 3 1 012", "HELLO", "states"),
    (b"HELLO b1 2 1 ab", "HELLO", "states"),
    (b"HELLO b1 0 1 0", "HELLO", "relay count"),
    (b"HELLO b1 9 1 000000000", "HELLO", "relay count"),
    (b"HELLO b1 +3 1 010", "HELLO", "relay count"),
    (b"HELLO b1 3 0 010", "HELLO", "version"),
    (b"HELLO b1 3 256 010", "HELLO", "version"),
    (b"HELLO b1 3 -1 010", "HELLO", "version"),
    (b"HELLO -b1 3 1 010", "HELLO", "id"),
    (b"HELLO " + b"b" * 17 + b" 3 1 010", "HELLO", "id"),
    (b"HELLO b/1 3 1 010", "HELLO", "id"),
]


@pytest.mark.parametrize(("raw", "verb", "field"), BAD_FIELDS, ids=[raw.decode() for raw, _, _ in BAD_FIELDS])
def test_bad_field(raw, verb, field):
    error = parse_error(raw)
    assert error.code == ha.FIELD
    assert error.detail.startswith(verb + ":")
    assert field in error.detail


def test_hello_accepts_every_relay_count_with_matching_states():
    for count in range(1, ha.MAX_RELAYS + 1):
        states = "10" * 4
        parsed = ha.parse_line(f"HELLO b1 {count} 1 {states[:count]}".encode())
        assert parsed.relays == count
        assert len(parsed.states) == count
        assert parsed.states == tuple(c == "1" for c in states[:count])


# -------------------------------------------------------- never-crash property


def _check_parse(raw: bytes) -> None:
    try:
        message = ha.parse_line(raw)
    except ProtocolError as error:
        assert error.code in (ha.SYNTAX, ha.VERB, ha.FIELD)
        assert isinstance(error.detail, str) and error.detail
    else:
        assert type(message) in ha.MESSAGES.values()
        # Whatever parses is a message we could send ourselves.
        wire = ha.serialize(message)
        assert len(wire) - 1 <= ha.MAX_LINE
        assert ha.parse_line(wire[:-1]) == message


@settings(max_examples=300)
@given(raw=st.binary(max_size=80))
def test_arbitrary_bytes_never_crash(raw):
    _check_parse(raw)


tokens = st.one_of(
    st.sampled_from(sorted(ha.MESSAGES)),
    st.integers(min_value=-5, max_value=70_000).map(str),
    st.sampled_from(["+1", "-0", "0", "1", "01", "0101", "11111111", "busy", "x", ""]),
    st.from_regex(ha.ID_PATTERN, fullmatch=True),
    st.text(alphabet=st.characters(max_codepoint=127), max_size=6),
)


@settings(max_examples=300)
@given(verb=st.sampled_from(sorted(ha.MESSAGES)), fields=st.lists(tokens, max_size=9))
def test_arbitrary_fields_never_crash(verb, fields):
    _check_parse(" ".join([verb, *fields]).encode("ascii"))


def _outcome(parse, raw):
    try:
        return parse(raw)
    except ProtocolError as error:
        return (error.code, error.detail)


@settings(max_examples=500)
@given(
    verb=st.sampled_from([b"SET", b"ACK", b"NAK", b"set", b"SETT"]),
    fields=st.lists(st.sampled_from([b"0", b"1", b"2", b"8", b"9", b"00012", b"65535", b"65536", b"99999", b"123456",
                                     b"-1", b"+1", b"1.0", b"", b"x", b"\xd9\xa1"]), max_size=4),
    spaces=st.sampled_from([b" ", b"  ", b"\t"]),
    tail=st.sampled_from([b"", b" ", b"\n", b"\r"]),
)
def test_the_quick_set_and_ack_reading_agrees_with_the_full_one(verb, fields, spaces, tail):
    raw = spaces.join([verb, *fields]) + tail
    assert _outcome(ha.parse_line, raw) == _outcome(ha._parse_checked, raw)


def test_the_quick_reading_takes_canonical_set_and_ack_lines():
    assert ha.parse_line(b"SET 65535 8 1") == ha.Set(65535, 8, True)
    assert ha.parse_line(b"ACK 0 1 0") == ha.Ack(0, 1, False)
    with pytest.raises(ProtocolError, match="seq must be a whole number from 0 to 65535"):
        ha.parse_line(b"SET 65536 1 1")
    with pytest.raises(ProtocolError, match="relay must be a whole number from 1 to 8"):
        ha.parse_line(b"ACK 1 9 1")
