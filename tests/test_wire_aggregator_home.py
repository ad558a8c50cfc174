"""Tests for jeisson.wire.aggregator_home: the JSON-bodied aggregator <-> home lines."""

import json
from datetime import UTC, datetime
from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jeisson.framing import LineFramer
from jeisson.wire import aggregator_home as ah
from jeisson.wire import aggregator_home_quick as quick
from jeisson.wire.errors import ProtocolError

# ---------------------------------------------------------------- strategies

ids = st.from_regex(ah.ID_PATTERN, fullmatch=True)
watts = st.floats(min_value=0, max_value=ah.MAX_POWER_W, allow_nan=False, allow_infinity=False)
counters = st.integers(min_value=0, max_value=2**53)
texts = st.text(max_size=512)
codes = st.text(max_size=64)


def _epoch_ms(year):
    return int(datetime(year, 1, 1, tzinfo=UTC).timestamp() * 1000)


# Whole milliseconds, the precision of the wire's UTC format.
times = st.integers(min_value=_epoch_ms(2000), max_value=_epoch_ms(2100)).map(lambda ms: ms / 1000)

offers = st.builds(
    ah.LoadOffer,
    id=ids,
    rated_w=watts,
    priority=st.integers(min_value=1, max_value=100),
    mode=st.sampled_from(ah.LOAD_MODES),
    on=st.booleans(),
    critical=st.booleans(),
    wanted=st.booleans(),
)

STRATEGIES = {
    ah.Hello: st.builds(
        ah.Hello,
        home=ids,
        secret=texts,
        versions=st.lists(st.integers(min_value=1, max_value=2**53), min_size=1, max_size=16).map(tuple),
    ),
    ah.Welcome: st.builds(
        ah.Welcome,
        version=st.integers(min_value=1, max_value=65535),
        home=ids,
        heartbeat_s=st.floats(min_value=0, max_value=86400, exclude_min=True),
    ),
    ah.Refused: st.builds(ah.Refused, code=codes, detail=texts),
    ah.Flex: st.builds(ah.Flex, bid=counters, loads=st.lists(offers, max_size=12, unique_by=lambda o: o.id).map(tuple),
                       opt_out=st.booleans()),
    ah.Ack: st.builds(ah.Ack, bid=counters),
    ah.Budget: st.builds(ah.Budget, round=counters, bid=counters, event=ids, budget_w=watts, end=times),
    ah.Release: st.builds(ah.Release, round=counters, event=ids),
    ah.Commit: st.builds(
        ah.Commit,
        round=counters,
        bid=counters,
        committed_w=watts,
        on=st.lists(ids, max_size=12, unique=True).map(tuple),
    ),
    ah.Measure: st.builds(
        ah.Measure,
        at=times,
        power_w=watts,
        loads=st.lists(st.tuples(ids, watts), max_size=12, unique_by=lambda pair: pair[0]).map(tuple),
    ),
    ah.Ping: st.builds(ah.Ping, n=counters),
    ah.Pong: st.builds(ah.Pong, n=counters),
    ah.Error: st.builds(ah.Error, code=codes, detail=texts),
}

messages = st.one_of(list(STRATEGIES.values()))


def parse_error(line: bytes) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        ah.parse_line(line)
    return info.value


def line(verb: str, body) -> bytes:
    return f"{verb} {json.dumps(body)}".encode()


# ---------------------------------------------------------------- round trips


def test_strategies_cover_every_message():
    assert set(STRATEGIES) == set(ah.MESSAGES.values())


@pytest.mark.parametrize("version", ah.PROTOCOL_VERSIONS)
@pytest.mark.parametrize("cls", list(STRATEGIES), ids=lambda cls: cls.verb)
@settings(max_examples=40)
@given(data=st.data())
def test_round_trip(cls, version, data):
    message = data.draw(STRATEGIES[cls])
    wire = ah.serialize(message, version)
    assert wire.endswith(b"\n")
    assert wire.count(b"\n") == 1
    assert wire.startswith(cls.verb.encode() + b" ")
    parsed = ah.parse_line(wire[:-1], version)
    assert type(parsed) is cls
    assert parsed == message


@settings(max_examples=60)
@given(
    batch=st.lists(messages, min_size=1, max_size=6),
    cuts=st.lists(st.integers(min_value=0, max_value=50_000), max_size=15),
    crlf=st.booleans(),
)
def test_messages_survive_random_chunking_through_the_framer(batch, cuts, crlf):
    data = b"".join(ah.serialize(m) for m in batch)
    if crlf:
        data = data.replace(b"\n", b"\r\n")
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    framer = LineFramer(ah.MAX_LINE)
    lines = []
    for a, b in pairwise(points):
        lines.extend(framer.feed(data[a:b]))
    assert [ah.parse_line(x) for x in lines] == batch
    assert framer.pending == 0


def test_known_line_parses():
    parsed = ah.parse_line(
        b'BUDGET {"round": 7, "bid": 3, "event": "peak-1", "budget_w": 2500, "end": "2026-11-23T18:00:00Z"}'
    )
    assert parsed == ah.Budget(round=7, bid=3, event="peak-1", budget_w=2500.0, end=1795456800.0)


def test_budget_time_is_sent_as_utc_with_milliseconds():
    wire = ah.serialize(ah.Budget(round=1, bid=2, event="e", budget_w=1.5, end=1795456800.25))
    assert json.loads(wire[len("BUDGET ") :])["end"] == "2026-11-23T18:00:00.250Z"


def test_utc_with_microseconds_parses():
    parsed = ah.parse_line(line("MEASURE", {"at": "2026-11-23T18:00:00.123456Z", "power_w": 0, "loads": {}}))
    assert parsed.at == pytest.approx(1795456800.123456, abs=1e-6)


def test_non_ascii_text_is_sent_as_utf8():
    message = ah.Error(code="x", detail="Überlast ⚡")
    wire = ah.serialize(message)
    assert "Überlast ⚡".encode() in wire
    assert ah.parse_line(wire[:-1]) == message


def test_control_characters_in_text_are_escaped():
    message = ah.Refused(code="a\nb", detail="c\r\nd\x00")
    wire = ah.serialize(message)
    assert wire.count(b"\n") == 1
    assert b"\r" not in wire
    assert ah.parse_line(wire[:-1]) == message


def test_flex_with_the_most_loads_round_trips():
    loads = tuple(
        ah.LoadOffer(
            id=f"load-{i}",
            rated_w=float(i),
            priority=1 + i % 100,
            mode="may",
            on=bool(i % 2),
            critical=False,
            wanted=bool(i % 3),
        )
        for i in range(ah.MAX_LOADS)
    )
    message = ah.Flex(bid=1, loads=loads)
    assert ah.parse_line(ah.serialize(message)[:-1]) == message


def test_worst_case_lines_fit_max_line():
    long_id = "L" * 32
    long_float = 1.2345678901234567e-05  # one of the longest float reprs in range
    worst = [
        ah.Flex(
            bid=2**53,
            loads=tuple(
                ah.LoadOffer(
                    id=f"{i:02d}" + long_id[2:],
                    rated_w=long_float,
                    priority=100,
                    mode="must",
                    on=False,
                    critical=False,
                    wanted=False,
                )
                for i in range(ah.MAX_LOADS)
            ),
        ),
        ah.Hello(home=long_id, secret="\x00" * 512, versions=(2**53,) * 16),
        ah.Error(code="\x01" * 64, detail="\x02" * 512),
        ah.Refused(code="\U0001f600" * 64, detail="\U0001f600" * 512),
        ah.Commit(
            round=2**53,
            bid=2**53,
            committed_w=long_float,
            on=tuple(f"{i:02d}" + long_id[2:] for i in range(ah.MAX_LOADS)),
        ),
        ah.Measure(
            at=4102444799.999,
            power_w=long_float,
            loads=tuple((f"{i:02d}" + long_id[2:], long_float) for i in range(ah.MAX_LOADS)),
        ),
    ]
    for message in worst:
        wire = ah.serialize(message)
        assert len(wire) - 1 <= ah.MAX_LINE, message.verb
        assert ah.parse_line(wire[:-1]) == message


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(
    "raw",
    [b"PING \xff", b'ERROR {"code":"x","detail":"\xc3"}', b"\xe2\x82", b'PING {"n":1}\xed\xa0\x80'],
)
def test_not_utf8_is_a_syntax_error(raw):
    assert parse_error(raw).code == ah.SYNTAX


@pytest.mark.parametrize("raw", [b"", b" ", b"\t \t"])
def test_empty_line_is_a_syntax_error(raw):
    error = parse_error(raw)
    assert error.code == ah.SYNTAX
    assert "empty" in error.detail


@pytest.mark.parametrize("verb", ["HELO", "ping", "FLEXX", "{}", "Pong", "PING\t1"])
def test_unknown_verb(verb):
    error = parse_error(f'{verb} {{"n": 1}}'.encode())
    assert error.code == ah.UNKNOWN_VERB
    assert repr(verb) in error.detail


def test_unknown_verb_detail_is_bounded():
    error = parse_error(b"X" * 10_000 + b" {}")
    assert error.code == ah.UNKNOWN_VERB
    assert len(error.detail) < 100


@pytest.mark.parametrize("body", ["{", '{"n":1', "{'n': 1}", '{"n": 1}}', "n=1", '{"n": 1,}', "[" * 100_000])
def test_body_not_json(body):
    error = parse_error(f"PING {body}".encode())
    assert error.code == ah.SYNTAX
    assert "PING" in error.detail


@pytest.mark.parametrize("raw", [b"PING", b"PING ", b"ACK    ", b"RELEASE \t"])
def test_missing_body(raw):
    error = parse_error(raw)
    assert error.code == ah.SYNTAX
    assert raw.split()[0].decode() in error.detail


@pytest.mark.parametrize("body", ["[1]", "3", '"n"', "null", "true", "[]"])
def test_body_not_an_object(body):
    error = parse_error(f"ACK {body}".encode())
    assert error.code == ah.SYNTAX
    assert "ACK" in error.detail


VALID_OFFER = {
    "id": "boiler",
    "rated_w": 2000,
    "priority": 50,
    "mode": "may",
    "on": True,
    "critical": False,
    "wanted": True,
}

VALID_BODIES = {
    "HELLO": {"home": "h1", "secret": "s3cret", "versions": [1]},
    "WELCOME": {"version": 1, "home": "h1", "heartbeat_s": 30},
    "REFUSED": {"code": "version", "detail": "no common version"},
    "FLEX": {"bid": 4, "loads": [VALID_OFFER]},
    "ACK": {"bid": 4},
    "BUDGET": {"round": 1, "bid": 4, "event": "ev1", "budget_w": 1000.5, "end": "2026-11-23T18:00:00Z"},
    "RELEASE": {"round": 1, "event": "ev1"},
    "COMMIT": {"round": 1, "bid": 4, "committed_w": 800, "on": ["boiler", "heater"]},
    "MEASURE": {"at": "2026-11-23T18:00:00.500Z", "power_w": 812.5, "loads": {"boiler": 800, "fridge": 12.5}},
    "PING": {"n": 9},
    "PONG": {"n": 9},
    "ERROR": {"code": "state", "detail": "not now"},
}


def test_valid_bodies_cover_every_verb():
    assert set(VALID_BODIES) == set(ah.MESSAGES)


@pytest.mark.parametrize("verb", list(VALID_BODIES))
def test_valid_bodies_parse(verb):
    parsed = ah.parse_line(line(verb, VALID_BODIES[verb]))
    assert type(parsed) is ah.MESSAGES[verb]
    assert ah.parse_line(ah.serialize(parsed)[:-1]) == parsed


def test_extra_fields_are_ignored():
    assert ah.parse_line(line("PING", {"n": 3, "later": [1, 2]})) == ah.Ping(3)


@pytest.mark.parametrize(
    ("verb", "field"), [(verb, field) for verb, body in VALID_BODIES.items() for field in body], ids=str
)
def test_missing_field(verb, field):
    body = dict(VALID_BODIES[verb])
    del body[field]
    error = parse_error(line(verb, body))
    assert error.code == ah.BAD_FIELD
    assert verb in error.detail
    assert repr(field) in error.detail


@pytest.mark.parametrize("field", list(VALID_OFFER))
def test_missing_load_offer_field(field):
    offer = dict(VALID_OFFER)
    del offer[field]
    error = parse_error(line("FLEX", {"bid": 1, "loads": [VALID_OFFER | {"id": "other"}, offer]}))
    assert error.code == ah.BAD_FIELD
    assert "FLEX" in error.detail
    assert "loads[1]" in error.detail
    assert repr(field) in error.detail


def _with(verb, **changes):
    return line(verb, VALID_BODIES[verb] | changes)


def _with_offer(**changes):
    return line("FLEX", {"bid": 1, "loads": [VALID_OFFER | changes]})


HUGE_INT = "1" + "0" * 400  # valid JSON; too large for a float


BAD_FIELDS = [
    # integers
    (_with("ACK", bid="3"), "ACK", "bid"),
    (_with("FLEX", opt_out="yes"), "FLEX", "opt_out"),
    (_with("FLEX", opt_out=None), "FLEX", "opt_out"),
    (_with("ACK", bid=True), "ACK", "bid"),
    (_with("ACK", bid=False), "ACK", "bid"),
    (_with("ACK", bid=-1), "ACK", "bid"),
    (_with("ACK", bid=3.0), "ACK", "bid"),
    (_with("ACK", bid=2**53 + 1), "ACK", "bid"),
    (_with("ACK", bid=None), "ACK", "bid"),
    (_with("PING", n=[1]), "PING", "n"),
    (_with("PONG", n=-5), "PONG", "n"),
    (_with("BUDGET", round="1"), "BUDGET", "round"),
    (_with("RELEASE", round=-1), "RELEASE", "round"),
    (_with("COMMIT", bid=True), "COMMIT", "bid"),
    (_with("WELCOME", version=0), "WELCOME", "version"),
    (_with("WELCOME", version=65536), "WELCOME", "version"),
    (_with("FLEX", bid=1.5), "FLEX", "bid"),
    # watts
    (b'BUDGET {"round":1,"bid":4,"event":"e","budget_w":1e400,"end":"2026-11-23T18:00:00Z"}', "BUDGET", "budget_w"),
    (
        f'BUDGET {{"round":1,"bid":4,"event":"e","budget_w":{HUGE_INT},"end":"2026-11-23T18:00:00Z"}}'.encode(),
        "BUDGET",
        "budget_w",
    ),
    (_with("BUDGET", budget_w=-1), "BUDGET", "budget_w"),
    (_with("BUDGET", budget_w=-0.001), "BUDGET", "budget_w"),
    (_with("BUDGET", budget_w=1e7 + 1), "BUDGET", "budget_w"),
    (_with("BUDGET", budget_w=1e12), "BUDGET", "budget_w"),
    (_with("BUDGET", budget_w="100"), "BUDGET", "budget_w"),
    (_with("BUDGET", budget_w=True), "BUDGET", "budget_w"),
    (_with("COMMIT", committed_w=-5), "COMMIT", "committed_w"),
    (_with("MEASURE", power_w=None), "MEASURE", "power_w"),
    (_with("MEASURE", loads={"boiler": -1}), "MEASURE", "loads"),
    (_with_offer(rated_w=2e7), "FLEX", "rated_w"),
    (
        f'FLEX {{"bid":1,"loads":[{{"id":"a","rated_w":{HUGE_INT},"priority":1,"mode":"may","on":true,'
        f'"critical":false,"wanted":true}}]}}'.encode(),
        "FLEX",
        "rated_w",
    ),
    # seconds
    (_with("WELCOME", heartbeat_s=0), "WELCOME", "heartbeat_s"),
    (_with("WELCOME", heartbeat_s=-1), "WELCOME", "heartbeat_s"),
    (_with("WELCOME", heartbeat_s=86400.5), "WELCOME", "heartbeat_s"),
    (_with("WELCOME", heartbeat_s="30"), "WELCOME", "heartbeat_s"),
    (f'WELCOME {{"version":1,"home":"h","heartbeat_s":{HUGE_INT}}}'.encode(), "WELCOME", "heartbeat_s"),
    # load offers
    (_with_offer(priority=0), "FLEX", "priority"),
    (_with_offer(priority=101), "FLEX", "priority"),
    (_with_offer(priority=True), "FLEX", "priority"),
    (_with_offer(priority="5"), "FLEX", "priority"),
    (_with_offer(priority=5.0), "FLEX", "priority"),
    (_with_offer(mode="maybe"), "FLEX", "mode"),
    (_with_offer(mode="MUST"), "FLEX", "mode"),
    (_with_offer(mode=None), "FLEX", "mode"),
    (_with_offer(mode=["may"]), "FLEX", "mode"),
    (_with_offer(on=1), "FLEX", "on"),
    (_with_offer(on="true"), "FLEX", "on"),
    (_with_offer(critical=0), "FLEX", "critical"),
    (_with_offer(wanted=1), "FLEX", "wanted"),
    (_with_offer(wanted=None), "FLEX", "wanted"),
    (_with_offer(id=""), "FLEX", "id"),
    (_with_offer(id=7), "FLEX", "id"),
    (line("FLEX", {"bid": 1, "loads": [VALID_OFFER, VALID_OFFER]}), "FLEX", "loads"),
    (line("FLEX", {"bid": 1, "loads": [VALID_OFFER, "boiler"]}), "FLEX", "loads[1]"),
    (line("FLEX", {"bid": 1, "loads": {"boiler": VALID_OFFER}}), "FLEX", "loads"),
    (
        line("FLEX", {"bid": 1, "loads": [VALID_OFFER | {"id": f"l{i}"} for i in range(ah.MAX_LOADS + 1)]}),
        "FLEX",
        "loads",
    ),
    # ids
    (_with("HELLO", home=""), "HELLO", "home"),
    (_with("HELLO", home="-leading-dash"), "HELLO", "home"),
    (_with("HELLO", home="a" * 33), "HELLO", "home"),
    (_with("HELLO", home="has space"), "HELLO", "home"),
    (_with("HELLO", home="h\u00e9"), "HELLO", "home"),
    (_with("HELLO", home="h1\n"), "HELLO", "home"),
    (_with("HELLO", home=None), "HELLO", "home"),
    (_with("WELCOME", home="a/b"), "WELCOME", "home"),
    (_with("BUDGET", event="x y"), "BUDGET", "event"),
    (_with("RELEASE", event=5), "RELEASE", "event"),
    (_with("COMMIT", on=["ok", "not ok"]), "COMMIT", "on"),
    (_with("COMMIT", on=["boiler", "boiler"]), "COMMIT", "on"),
    (_with("COMMIT", on="boiler"), "COMMIT", "on"),
    (_with("COMMIT", on=[f"l{i}" for i in range(ah.MAX_LOADS + 1)]), "COMMIT", "on"),
    (_with("MEASURE", loads={"bad key": 1}), "MEASURE", "loads"),
    (_with("MEASURE", loads=[["boiler", 1]]), "MEASURE", "loads"),
    (_with("MEASURE", loads={f"l{i}": 1 for i in range(ah.MAX_LOADS + 1)}), "MEASURE", "loads"),
    # versions
    (_with("HELLO", versions=[]), "HELLO", "versions"),
    (_with("HELLO", versions=[0]), "HELLO", "versions"),
    (_with("HELLO", versions=[1, -1]), "HELLO", "versions"),
    (_with("HELLO", versions=[True]), "HELLO", "versions"),
    (_with("HELLO", versions=[1.0]), "HELLO", "versions"),
    (_with("HELLO", versions=["1"]), "HELLO", "versions"),
    (_with("HELLO", versions=1), "HELLO", "versions"),
    (_with("HELLO", versions=[1] * 17), "HELLO", "versions"),
    # text
    (_with("HELLO", secret=5), "HELLO", "secret"),
    (_with("HELLO", secret="s" * 513), "HELLO", "secret"),
    (_with("HELLO", secret="\ud800"), "HELLO", "secret"),
    (_with("ERROR", code="c" * 65), "ERROR", "code"),
    (_with("ERROR", detail=None), "ERROR", "detail"),
    (_with("REFUSED", detail="\udfff tail"), "REFUSED", "detail"),
    (_with("REFUSED", code=["version"]), "REFUSED", "code"),
    # UTC times
    (_with("BUDGET", end="2026-11-23 18:00:00Z"), "BUDGET", "end"),
    (_with("BUDGET", end="2026-11-23T18:00:00"), "BUDGET", "end"),
    (_with("BUDGET", end="2026-11-23T18:00:00+00:00"), "BUDGET", "end"),
    (_with("BUDGET", end="2026-11-23T18:00Z"), "BUDGET", "end"),
    (_with("BUDGET", end="2026-02-30T18:00:00Z"), "BUDGET", "end"),
    (_with("BUDGET", end="2026-11-23T24:00:00Z"), "BUDGET", "end"),
    (_with("BUDGET", end="2026-11-23T18:00:00.1234567Z"), "BUDGET", "end"),
    (_with("BUDGET", end="2026-11-23T18:00:00.Z"), "BUDGET", "end"),
    (_with("BUDGET", end="\uff12\uff10\uff12\uff16-11-23T18:00:00Z"), "BUDGET", "end"),
    (_with("BUDGET", end="2026-11-23T18:00:00Z\n"), "BUDGET", "end"),
    (_with("BUDGET", end=1795456800), "BUDGET", "end"),
    (_with("BUDGET", end=None), "BUDGET", "end"),
    (_with("MEASURE", at="yesterday"), "MEASURE", "at"),
    (_with("MEASURE", at="2026-11-23t18:00:00z"), "MEASURE", "at"),
]


@pytest.mark.parametrize(("raw", "verb", "field"), BAD_FIELDS, ids=[raw.decode()[:60] for raw, _, _ in BAD_FIELDS])
def test_bad_field(raw, verb, field):
    error = parse_error(raw)
    assert error.code == ah.BAD_FIELD
    assert error.detail.startswith(verb + ":")
    assert field in error.detail


# Python's json reads NaN, Infinity and -Infinity as numbers; RFC 8259 has
# no such numbers, so a body with one is not JSON: ``syntax``, not
# ``bad-field`` (these lines were bad-field cases until the wire refused them
# as JSON).  A number too large for a float (1e400) is JSON, out of range.
NOT_JSON_NUMBERS = [
    (b'BUDGET {"round":1,"bid":4,"event":"e","budget_w":NaN,"end":"2026-11-23T18:00:00Z"}', "BUDGET", "NaN"),
    (b'BUDGET {"round":1,"bid":4,"event":"e","budget_w":Infinity,"end":"2026-11-23T18:00:00Z"}', "BUDGET",
     "Infinity"),
    (b'MEASURE {"at":"2026-11-23T18:00:00Z","power_w":-Infinity,"loads":{}}', "MEASURE", "-Infinity"),
    (b'MEASURE {"at":"2026-11-23T18:00:00Z","power_w":1,"loads":{"a":NaN}}', "MEASURE", "NaN"),
    (_with_offer(rated_w=float("nan")), "FLEX", "NaN"),
    (_with_offer(rated_w=float("inf")), "FLEX", "Infinity"),
    (b'WELCOME {"version":1,"home":"h","heartbeat_s":NaN}', "WELCOME", "NaN"),
    (b'PING {"n":NaN}', "PING", "NaN"),
    (b'ERROR {"code":"x","detail":"d","extra":[Infinity]}', "ERROR", "Infinity"),
    (b'FLEX {"bid":1,"opt_out":false,"loads":[["a",NaN,1,"may",true,false,true]]}', "FLEX", "NaN"),
]


@pytest.mark.parametrize("version", ah.PROTOCOL_VERSIONS)
@pytest.mark.parametrize(("raw", "verb", "constant"), NOT_JSON_NUMBERS,
                         ids=[raw.decode()[:60] for raw, _, _ in NOT_JSON_NUMBERS])
def test_nan_and_infinity_are_not_json(raw, verb, constant, version):
    with pytest.raises(ProtocolError) as info:
        ah.parse_line(raw, version)
    assert info.value.code == ah.SYNTAX
    assert info.value.detail == f"{verb}: body is not valid JSON ({constant} is not a JSON number)"


def test_a_number_too_large_for_a_float_is_json_out_of_range():
    error = parse_error(b'BUDGET {"round":1,"bid":4,"event":"e","budget_w":1e400,"end":"2026-11-23T18:00:00Z"}')
    assert error.code == ah.BAD_FIELD


REPEATED_KEYS = [
    (b'PING {"n":1,"n":2}', "PING", "n"),
    (b'ACK {"bid":1,"bid":1}', "ACK", "bid"),
    (b'BUDGET {"round":1,"bid":4,"event":"e","budget_w":5,"end":"2026-11-23T18:00:00Z","budget_w":9}', "BUDGET",
     "budget_w"),
    (b'MEASURE {"at":"2026-11-23T18:00:00Z","power_w":1,"loads":{"a":1,"b":2,"a":3}}', "MEASURE", "a"),
    (b'ERROR {"code":"x","detail":"d","extra":{"k":1,"k":1}}', "ERROR", "k"),
    (line("FLEX", {"bid": 1, "loads": []})[:-1] + b',"bid":2}', "FLEX", "bid"),
    (b'FLEX {"bid":1,"loads":[{"id":"a","id":"b","rated_w":1,"priority":1,"mode":"may","on":true,'
     b'"critical":false,"wanted":true}]}', "FLEX", "id"),
    (b'FLEX {"bid":1,"opt_out":false,"loads":[],"opt_out":true}', "FLEX", "opt_out"),
    (b'COMMIT {"round":1,"bid":1,"committed_w":5.0,"on":[],"round":2}', "COMMIT", "round"),
]


@pytest.mark.parametrize("version", ah.PROTOCOL_VERSIONS)
@pytest.mark.parametrize(("raw", "verb", "key"), REPEATED_KEYS, ids=[raw.decode()[:60] for raw, _, _ in REPEATED_KEYS])
def test_a_key_repeated_in_an_object_is_a_syntax_error_naming_it(raw, verb, key, version):
    with pytest.raises(ProtocolError) as info:
        ah.parse_line(raw, version)
    assert info.value.code == ah.SYNTAX
    assert info.value.detail == f"{verb}: body is not valid JSON (key {key!r} repeated in an object)"


def test_the_same_key_in_two_objects_is_no_repetition():
    body = {"at": "2026-11-23T18:00:00Z", "power_w": 1, "loads": {"power_w": 1, "at": 2}}
    assert ah.parse_line(line("MEASURE", body)).loads == (("power_w", 1.0), ("at", 2.0))


@pytest.mark.parametrize("raw", [
    b'FLEX {"bid":1,"opt_out":false,"loads":[["a",NaN,1,"may",true,false,true]]}',
    b'FLEX {"bid":1,"opt_out":false,"loads":[["a",Infinity,1,"may",true,false,true]]}',
    b'FLEX {"bid":1,"opt_out":false,"opt_out":false,"loads":[]}',
    b'COMMIT {"round":1,"bid":1,"committed_w":NaN,"on":[]}',
    b'COMMIT {"round":1,"bid":1,"bid":1,"committed_w":5.0,"on":[]}',
    b'BUDGET {"round":1,"bid":1,"event":"e","budget_w":-Infinity,"end":"2026-11-23T18:00:00.000Z"}',
    b'BUDGET {"round":1,"round":1,"bid":1,"event":"e","budget_w":5.0,"end":"2026-11-23T18:00:00.000Z"}',
])
def test_the_quick_reading_refuses_what_rfc_8259_does_not_allow(raw):
    # Lines in jeisson's shape but for a non-JSON number or a repeated key:
    # the quick reading leaves them to the full checks, which say syntax.
    assert quick.read(raw, 2) is None
    with pytest.raises(ProtocolError) as info:
        ah.parse_line(raw, 2)
    assert info.value.code == ah.SYNTAX


def test_lone_surrogates_cannot_be_parsed_into_unserializable_text():
    # Regression: "\ud800" is valid JSON but not text; it used to parse and then crash serialize().
    for raw in (_with("HELLO", secret="ok\ud800"), _with("ERROR", detail="\udc00")):
        assert parse_error(raw).code == ah.BAD_FIELD


def test_protocol_error_str_has_code_and_detail():
    error = parse_error(_with("ACK", bid="3"))
    assert str(error).startswith(ah.BAD_FIELD + ": ACK:")


# -------------------------------------------------------- never-crash property


def _check_parse(raw: bytes, version: int = 1) -> None:
    try:
        message = ah.parse_line(raw, version)
    except ProtocolError as error:
        assert isinstance(error.code, str) and error.code
        assert isinstance(error.detail, str) and error.detail
    else:
        assert type(message) in ah.MESSAGES.values()
        if not isinstance(message, (ah.Budget, ah.Measure)):  # times are re-sent to the millisecond only
            assert ah.parse_line(ah.serialize(message, version)[:-1], version) == message


@settings(max_examples=300)
@given(raw=st.binary(max_size=200))
def test_arbitrary_bytes_never_crash(raw):
    _check_parse(raw)


FIELD_NAMES = sorted({name for body in VALID_BODIES.values() for name in body} | set(VALID_OFFER))

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**30), max_value=10**30)
    | st.sampled_from([10**400, -(10**400), 2**53 + 1])
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["2026-11-23T18:00:00Z", "boiler", "may", "must", "off", "\ud800", "a\udfffb"]),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=5), inner, max_size=6)
    ),
    max_leaves=10,
)


@settings(max_examples=150)
@given(
    verb=st.sampled_from(sorted(ah.MESSAGES)),
    body=st.dictionaries(st.sampled_from(FIELD_NAMES), json_values, max_size=8),
)
def test_arbitrary_json_bodies_never_crash(verb, body):
    _check_parse(line(verb, body))


@settings(max_examples=200)
@given(verb=st.sampled_from(sorted(ah.MESSAGES)), data=st.data())
def test_mutated_valid_bodies_never_crash(verb, data):
    body = dict(VALID_BODIES[verb])
    key = data.draw(st.sampled_from(sorted(body)))
    body[key] = data.draw(json_values)
    _check_parse(line(verb, body))


@pytest.mark.parametrize("version", ah.PROTOCOL_VERSIONS)
@settings(max_examples=200)
@given(message=messages, data=st.data())
def test_corrupted_valid_lines_never_crash(version, message, data):
    raw = bytearray(ah.serialize(message, version)[:-1])
    for _ in range(data.draw(st.integers(min_value=1, max_value=4))):
        position = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[position] = data.draw(st.integers(min_value=0, max_value=255))
    _check_parse(bytes(raw), version)


def test_a_flex_without_opt_out_is_not_opted_out():
    assert ah.parse_line(b'FLEX {"bid": 2, "loads": []}') == ah.Flex(2, (), False)
    assert ah.parse_line(b'FLEX {"bid": 2, "loads": [], "opt_out": true}').opt_out is True


def _outcome(parse, *args):
    try:
        return parse(*args)
    except ProtocolError as error:
        return (error.code, error.detail)


@settings(max_examples=400)
@given(data=st.data())
def test_the_quick_load_check_accepts_and_refuses_exactly_as_the_full_one(data):
    # A valid offer with some fields replaced by arbitrary JSON values, or
    # removed; or not an object at all.
    item = dict(VALID_OFFER)
    for key in data.draw(st.lists(st.sampled_from(sorted(VALID_OFFER)), max_size=3)):
        if data.draw(st.booleans()):
            item[key] = data.draw(json_values)
        else:
            item.pop(key, None)
    if data.draw(st.integers(min_value=0, max_value=9)) == 0:
        item = data.draw(json_values)
    assert _outcome(ah._offer, item, 3) == _outcome(ah._checked_offer, item, 3)


# ------------------------------------------------------------------ version 2


def _v2_error(loads) -> ProtocolError:
    with pytest.raises(ProtocolError) as info:
        ah.parse_line(line("FLEX", {"bid": 1, "loads": loads}), 2)
    return info.value


def test_a_version_2_flex_writes_each_load_as_an_array():
    flex = ah.Flex(7, (ah.LoadOffer("heater", 2000.0, 30, "may", True, False, True),))
    wire = ah.serialize(flex, 2)
    assert wire == b'FLEX {"bid":7,"opt_out":false,"loads":[["heater",2000.0,30,"may",true,false,true]]}\n'
    assert ah.parse_line(wire[:-1], 2) == flex


@settings(max_examples=100)
@given(flex=STRATEGIES[ah.Flex])
def test_a_flex_reads_the_same_in_both_versions_and_version_2_is_shorter(flex):
    v1, v2 = ah.serialize(flex, 1), ah.serialize(flex, 2)
    assert ah.parse_line(v1[:-1], 1) == ah.parse_line(v2[:-1], 2) == flex
    assert len(v2) <= len(v1)
    assert len(v2) < len(v1) or not flex.loads


@pytest.mark.parametrize(
    "loads, where",
    [
        ([VALID_OFFER], "loads[0] must be an array of 7 items: id, rated_w, priority, mode, on, critical, wanted"),
        ([["boiler", 2000.0, 5, "may", True, False]], "loads[0] must be an array of 7 items"),
        ([["boiler", 2000.0, 5, "may", True, False, True, 1]], "loads[0] must be an array of 7 items"),
        ([["a", 1.0, 1, "may", True, False, True], "boiler"], "loads[1] must be an array"),
        ([["a", 1.0, 1, "may", True, False, True], ["b", -1.0, 1, "may", True, False, True]], "loads[1].rated_w"),
        ([["a", 1.0, 0, "may", True, False, True]], "loads[0].priority"),
        ([["a", 1.0, 1, "maybe", True, False, True]], "loads[0].mode"),
        ([["a", 1.0, 1, "may", 1, False, True]], "loads[0].on"),
        ([["a b", 1.0, 1, "may", True, False, True]], "loads[0].id"),
        ([["a", 1.0, 1, "may", True, False, True], ["a", 2.0, 1, "may", True, False, True]], "duplicate load ids"),
    ],
)
def test_a_bad_version_2_load_is_named_with_its_place_and_field(loads, where):
    error = _v2_error(loads)
    assert error.code == ah.BAD_FIELD
    assert error.detail.startswith("FLEX: ")
    assert where in error.detail


def test_a_version_1_flex_must_have_object_loads():
    error = parse_error(line("FLEX", {"bid": 1, "loads": [["a", 1.0, 1, "may", True, False, True]]}))
    assert error.code == ah.BAD_FIELD
    assert "loads[0] must be an object" in error.detail


@settings(max_examples=400)
@given(data=st.data())
def test_a_version_2_load_is_accepted_and_refused_exactly_as_the_same_version_1_load(data):
    item = dict(VALID_OFFER)
    for key in data.draw(st.lists(st.sampled_from(sorted(VALID_OFFER)), max_size=3)):
        item[key] = data.draw(json_values)
    as_array = [item[name] for name in ah.LOAD_FIELDS]
    assert _outcome(ah._offer_v2, as_array, 3) == _outcome(ah._offer, item, 3)


# ------------------------------------------- lines as jeisson writes them


def _typed(parse, *args):
    """The outcome as text: 0 and 0.0, equal as numbers, differ here."""
    return repr(_outcome(parse, *args))

QUICK_KINDS = [ah.Flex, ah.Commit, ah.Budget]


@pytest.mark.parametrize("kind", QUICK_KINDS, ids=lambda kind: kind.verb)
@settings(max_examples=300)
@given(data=st.data())
def test_the_quick_reading_agrees_with_the_full_one_on_written_and_corrupted_lines(kind, data):
    version = data.draw(st.sampled_from(ah.PROTOCOL_VERSIONS))
    raw = bytearray(ah.serialize(data.draw(STRATEGIES[kind]), version)[:-1])
    for _ in range(data.draw(st.integers(min_value=0, max_value=3))):
        position = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
        raw[position] = data.draw(st.sampled_from(b'0123456789.,:"[]{}-eE tfx\\'))
    quickly = quick.read(bytes(raw), version)
    assert quickly is None or quickly == ah._parse_checked(bytes(raw), version)
    assert _typed(ah.parse_line, bytes(raw), version) == _typed(ah._parse_checked, bytes(raw), version)


# Each field of a line in jeisson's shape: (values jeisson writes, values
# at or past its limits, or in another form); mostly the first.
_COUNTS = (["0", "7", "999999999999999"], ["007", "-1", "1.0", "1e3", '"1"', "1000000000000000", str(2**53),
                                             str(2**53 + 1)])
_BOOLS = (["true", "false"], ["0", "null", '"true"'])
_IDS = (['"a"', '"b"', '"h1-x.y_z"', '"' + "a" * 32 + '"'], ['""', '"-a"', '"' + "a" * 33 + '"', '"\\u00e9"', "1"])
_WATTS = (["0", "0.0", "1234.5", "9999999.99"], ["10000000.5", "10000001", "10000000", "-1.0", "1e3", "1E-3", "NaN",
                                                  "Infinity", '"5"', "00.5", "1.", ".5"])
_PRIORITIES = (["1", "9", "10", "99", "100"], ["0", "101", "1.0", "05", '"1"'])
_MODES = (['"must"', '"may"', '"off"'], ['"MAY"', '""', "1"])
_ENDS = (['"2026-02-20T18:00:00.000Z"', '"2026-02-20T18:00:00Z"'],
         ['"2026-02-30T18:00:00.000Z"', '"2026-02-20T18:00:00.1234567Z"', '"2026-13-01T00:00:00.000Z"', "5"])


_SHAPES = {
    "FLEX": ('FLEX {{"bid":{},"opt_out":{},"loads":[{}]}}', [_COUNTS, _BOOLS],
             [_IDS, _WATTS, _PRIORITIES, _MODES, _BOOLS, _BOOLS, _BOOLS]),
    "COMMIT": ('COMMIT {{"round":{},"bid":{},"committed_w":{},"on":[{}]}}', [_COUNTS, _COUNTS, _WATTS], [_IDS]),
    "BUDGET": ('BUDGET {{"round":{},"bid":{},"event":{},"budget_w":{},"end":{}}}',
               [_COUNTS, _COUNTS, _IDS, _WATTS, _ENDS], None),
}


def _shaped_line(draw, verb):
    """A line in the shape jeisson writes, with at most one field (drawn) at
    or past its limits."""
    form, fields, item = _SHAPES[verb]
    items = draw(st.integers(min_value=0, max_value=3)) if item else 0
    slots = [*fields, *(item or []) * items]
    odd = draw(st.integers(min_value=-1, max_value=len(slots) - 1))
    values = [draw(st.sampled_from(unusual if i == odd else usual)) for i, (usual, unusual) in enumerate(slots)]
    head, rest = values[:len(fields)], values[len(fields):]
    if item is None:
        return form.format(*head)
    size = len(item)
    rows = [rest[k:k + size] for k in range(0, len(rest), size)]
    listed = ",".join(f"[{','.join(row)}]" if size > 1 else row[0] for row in rows)
    return form.format(*head, listed)


@settings(max_examples=600)
@given(verb=st.sampled_from(["FLEX", "COMMIT", "BUDGET"]), data=st.data())
def test_the_quick_reading_agrees_with_the_full_one_at_every_fields_limits(verb, data):
    raw = _shaped_line(data.draw, verb).encode()
    for version in ah.PROTOCOL_VERSIONS:
        assert _typed(ah.parse_line, raw, version) == _typed(ah._parse_checked, raw, version), raw


@pytest.mark.parametrize("count", [ah.MAX_LOADS, ah.MAX_LOADS + 1])
def test_the_quick_reading_agrees_with_the_full_one_at_the_most_loads(count):
    ids = [f"l{i}" for i in range(count)]
    lines = [ah.serialize(ah.Flex(1, tuple(ah.LoadOffer(i, 100.0, 1, "may", True, False, True) for i in ids)), 2),
             ah.serialize(ah.Commit(1, 1, 100.0, tuple(ids)), 2)]
    for raw in lines:
        outcome = _typed(ah.parse_line, raw[:-1], 2)
        assert outcome == _typed(ah._parse_checked, raw[:-1], 2)
        assert (quick.read(raw[:-1], 2) is not None) == (count <= ah.MAX_LOADS)
        assert ("at most 64 items" in outcome) == (count > ah.MAX_LOADS)


def test_the_quick_reading_takes_what_jeisson_writes():
    # Else the fast path would silently stop serving the rounds.
    flex = ah.Flex(12, (ah.LoadOffer("h1-heater", 2000.0, 100, "may", True, False, True),
                        ah.LoadOffer("h1.fridge_2", 0.0, 1, "must", False, True, False),
                        ah.LoadOffer("h1-oven", 1234.5678901234, 9, "off", False, False, True)), True)
    messages = [flex, ah.Flex(0, (), False), ah.Commit(3, 12, 9999999.75, ("h1-heater", "h1.fridge_2")),
                ah.Commit(2**53 // 1000, 0, 0.0, ()), ah.Budget(4, 12, "evening-peak", 3500.5, 1795000000.123)]
    for message in messages:
        raw = ah.serialize(message, 2)[:-1]
        assert quick.read(raw, 2) == message, raw


@pytest.mark.parametrize("raw, detail", [
    (b'FLEX {"bid":1,"opt_out":false,"loads":[["a",1.0,1,"may",true,false,true],["a",2.0,1,"may",true,false,true]]}',
     "FLEX: loads: duplicate load ids"),
    (b'COMMIT {"round":1,"bid":1,"committed_w":5.0,"on":["a","a"]}', "COMMIT: 'on': duplicate load ids"),
    (b'BUDGET {"round":1,"bid":1,"event":"e","budget_w":5.0,"end":"2026-02-30T18:00:00.000Z"}', "BUDGET: 'end'"),
    (b'BUDGET {"round":01,"bid":1,"event":"e","budget_w":5.0,"end":"2026-02-20T18:00:00.000Z"}', "not valid JSON"),
])
def test_a_line_in_jeissons_shape_but_wrong_is_named_by_the_full_checks(raw, detail):
    assert quick.read(raw, 2) is None
    with pytest.raises(ProtocolError, match=detail):
        ah.parse_line(raw, 2)
