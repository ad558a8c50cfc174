"""Tests for jeisson.framing: sans-IO line framing."""

from itertools import pairwise

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent

from jeisson.framing import LineFeeder, LineFramer, LineTooLong

MAX = 40

# Line contents: any bytes but the terminator; a "\r" may appear inside a line
# but not at its end (the framer drops one trailing "\r" before "\n").
line_content = st.binary(max_size=MAX).filter(lambda b: b"\n" not in b and not b.endswith(b"\r"))


def feed_all(framer, chunks):
    lines = []
    for chunk in chunks:
        lines.extend(framer.feed(chunk))
    return lines


def split_at(data, cuts):
    points = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    return [data[a:b] for a, b in pairwise(points)]


# ------------------------------------------------------------------- framing


def test_single_line():
    framer = LineFramer(MAX)
    assert framer.feed(b"hello\n") == [b"hello"]
    assert framer.pending == 0


def test_several_lines_in_one_chunk():
    assert LineFramer(MAX).feed(b"a\nbb\n\nccc\n") == [b"a", b"bb", b"", b"ccc"]


def test_partial_line_is_held_until_its_terminator():
    framer = LineFramer(MAX)
    assert framer.feed(b"PING") == []
    assert framer.feed(b" 1") == []
    assert framer.feed(b"\nPO") == [b"PING 1"]
    assert framer.feed(b"NG 1\n") == [b"PONG 1"]


def test_empty_feed_returns_nothing():
    framer = LineFramer(MAX)
    assert framer.feed(b"") == []
    framer.feed(b"abc")
    assert framer.feed(b"") == []
    assert framer.pending == 3


def test_byte_at_a_time():
    data = b"first\r\nsecond\n\r\nthird\r\n"
    framer = LineFramer(MAX)
    out = []
    for i in range(len(data)):
        out.extend(framer.feed(data[i : i + 1]))
    assert out == [b"first", b"second", b"", b"third"]
    assert framer.pending == 0


@settings(max_examples=150)
@given(
    lines=st.lists(line_content, max_size=12),
    terminator=st.sampled_from([b"\n", b"\r\n"]),
    cuts=st.lists(st.integers(min_value=0, max_value=10_000), max_size=20),
    tail=st.binary(max_size=MAX).filter(lambda b: b"\n" not in b),
)
def test_random_chunking_yields_same_lines_in_order(lines, terminator, cuts, tail):
    data = b"".join(line + terminator for line in lines) + tail
    framer = LineFramer(MAX)
    assert feed_all(framer, split_at(data, cuts)) == lines
    assert framer.pending == len(tail)


@settings(max_examples=100)
@given(lines=st.lists(st.tuples(line_content, st.sampled_from([b"\n", b"\r\n"])), max_size=12))
def test_byte_at_a_time_with_mixed_terminators(lines):
    data = b"".join(content + term for content, term in lines)
    framer = LineFramer(MAX)
    assert feed_all(framer, [data[i : i + 1] for i in range(len(data))]) == [content for content, _ in lines]
    assert framer.pending == 0


# ------------------------------------------------------------------ "\r\n"


def test_crlf_terminator_is_stripped():
    assert LineFramer(MAX).feed(b"abc\r\ndef\r\n") == [b"abc", b"def"]


def test_crlf_split_between_chunks():
    framer = LineFramer(MAX)
    assert framer.feed(b"abc\r") == []
    assert framer.feed(b"\n") == [b"abc"]


def test_only_one_trailing_cr_is_stripped():
    assert LineFramer(MAX).feed(b"abc\r\r\n") == [b"abc\r"]


def test_cr_inside_a_line_is_kept():
    assert LineFramer(MAX).feed(b"a\rb\n") == [b"a\rb"]


def test_lone_cr_is_not_a_terminator():
    framer = LineFramer(MAX)
    assert framer.feed(b"a\rb\r") == []
    assert framer.pending == 4


def test_cr_only_line_is_empty():
    assert LineFramer(MAX).feed(b"\r\n") == [b""]


# ------------------------------------------------------------------- limits


@pytest.mark.parametrize("terminator", [b"\n", b"\r\n"])
def test_line_exactly_at_max_length_passes(terminator):
    framer = LineFramer(8)
    assert framer.feed(b"x" * 8 + terminator) == [b"x" * 8]


def test_line_exactly_at_max_length_passes_byte_at_a_time():
    framer = LineFramer(8)
    data = b"y" * 8 + b"\r\n"
    out = []
    for i in range(len(data)):
        out.extend(framer.feed(data[i : i + 1]))
    assert out == [b"y" * 8]


def test_pending_line_at_max_length_with_cr_is_still_accepted():
    # The "\r" may turn out to be part of the terminator, so it must not count yet.
    framer = LineFramer(8)
    assert framer.feed(b"z" * 8 + b"\r") == []
    assert framer.pending == 9
    assert framer.feed(b"\n") == [b"z" * 8]


@pytest.mark.parametrize("terminator", [b"\n", b"\r\n"])
def test_line_one_over_max_length_raises_with_terminator(terminator):
    framer = LineFramer(8)
    with pytest.raises(LineTooLong) as info:
        framer.feed(b"x" * 9 + terminator)
    assert info.value.limit == 8
    assert info.value.seen >= 9


def test_line_one_over_max_length_raises_without_terminator():
    framer = LineFramer(8)
    with pytest.raises(LineTooLong) as info:
        framer.feed(b"x" * 9)
    assert info.value.limit == 8
    assert info.value.seen == 9


def test_line_one_over_max_length_raises_on_the_byte_that_crosses_the_limit():
    framer = LineFramer(8)
    for _ in range(8):
        assert framer.feed(b"x") == []
    with pytest.raises(LineTooLong):
        framer.feed(b"x")


def test_over_long_pending_line_with_cr_raises_once_cr_is_not_the_terminator():
    framer = LineFramer(8)
    assert framer.feed(b"x" * 8 + b"\r") == []
    with pytest.raises(LineTooLong):
        framer.feed(b"y")


def test_endless_line_raises_instead_of_buffering_forever():
    framer = LineFramer(8)
    with pytest.raises(LineTooLong):
        for _ in range(1000):
            framer.feed(b"abc")
            assert framer.pending <= 8


def test_huge_chunk_without_newline_raises():
    with pytest.raises(LineTooLong) as info:
        LineFramer(8).feed(b"a" * 100_000)
    assert info.value.seen == 100_000


def test_over_long_line_after_good_lines_raises():
    framer = LineFramer(8)
    assert framer.feed(b"ok\n") == [b"ok"]
    with pytest.raises(LineTooLong):
        framer.feed(b"fine\n" + b"w" * 9 + b"\nnext\n")


def test_over_long_line_split_over_chunks_raises():
    framer = LineFramer(8)
    assert framer.feed(b"abcd") == []
    assert framer.feed(b"efgh") == []
    with pytest.raises(LineTooLong):
        framer.feed(b"i\n")


def test_line_too_long_message_names_the_limit():
    with pytest.raises(LineTooLong, match="longer than 8 bytes"):
        LineFramer(8).feed(b"x" * 20)


@settings(max_examples=100)
@given(
    limit=st.integers(min_value=0, max_value=30),
    extra=st.integers(min_value=1, max_value=30),
    terminated=st.booleans(),
    cuts=st.lists(st.integers(min_value=0, max_value=100), max_size=5),
)
def test_any_line_over_the_limit_raises(limit, extra, terminated, cuts):
    data = b"q" * (limit + extra) + (b"\n" if terminated else b"")
    framer = LineFramer(limit)
    with pytest.raises(LineTooLong):
        feed_all(framer, split_at(data, cuts))


@settings(max_examples=100)
@given(limit=st.integers(min_value=0, max_value=30), crlf=st.booleans(), cuts=st.lists(st.integers(0, 100), max_size=5))
def test_any_line_at_the_limit_passes(limit, crlf, cuts):
    data = b"q" * limit + (b"\r\n" if crlf else b"\n")
    framer = LineFramer(limit)
    assert feed_all(framer, split_at(data, cuts)) == [b"q" * limit]


# ------------------------------------------------------------------ pending


def test_pending_counts_buffered_bytes():
    framer = LineFramer(MAX)
    assert framer.pending == 0
    framer.feed(b"ab")
    assert framer.pending == 2
    framer.feed(b"c")
    assert framer.pending == 3
    assert framer.feed(b"\nde") == [b"abc"]
    assert framer.pending == 2
    assert framer.feed(b"\n") == [b"de"]
    assert framer.pending == 0


def test_pending_counts_a_trailing_cr():
    framer = LineFramer(MAX)
    framer.feed(b"ab\r")
    assert framer.pending == 3


def test_lines_before_an_over_long_one_come_with_the_error():
    framer = LineFramer(8)
    with pytest.raises(LineTooLong) as raised:
        framer.feed(b"one\ntwo\n" + b"x" * 20 + b"\nthree\n")
    assert raised.value.lines == [b"one", b"two"]


def test_a_line_link_delivers_the_lines_before_an_over_long_one_then_closes():
    from twisted.internet.testing import StringTransport

    from jeisson.transports.stream import LineLink

    received = []

    class Recorder:
        def line_received(self, line):
            received.append(line)

        def line_too_long(self, error):
            received.append("too long")

        def connection_lost(self, reason):
            pass

    clock = Clock()
    link = LineLink(8, lambda wire: Recorder(), clock=clock)
    transport = StringTransport()
    link.makeConnection(transport)
    link.dataReceived(b"PING 1\nPING 2\n" + b"x" * 30)
    assert received == [b"PING 1", b"PING 2", "too long"]
    assert transport.disconnecting and not transport.disconnected
    clock.advance(5)  # the peer never took it: aborted after the grace
    assert transport.disconnected


class Taker:
    def __init__(self):
        self.lines = []
        self.too_long = []

    def line_received(self, line):
        self.lines.append(line)

    def line_too_long(self, error):
        self.too_long.append(error)


@pytest.mark.parametrize("may", [True, False])
def test_a_feeder_logs_an_over_long_line_only_if_its_budget_allows_and_ends_the_link_either_way(may):
    ended = []
    feeder = LineFeeder(8, "192.0.2.1:4000", ended.append, may_log=lambda: may)
    feeder.session = taker = Taker()
    with capturedLogs() as events:
        feeder.feed(b"ok\n" + b"y" * 9)
    assert taker.lines == [b"ok"] and len(taker.too_long) == 1 and ended == ["line too long"]
    assert len([e for e in events if "longer than 8 bytes" in formatEvent(e)]) == (1 if may else 0)


def test_a_line_that_never_ends_is_cut_at_the_limit_however_slowly_it_comes():
    ended = []
    feeder = LineFeeder(64, "slowloris", ended.append)
    feeder.session = taker = Taker()
    for _ in range(64):
        feeder.feed(b"z")
    assert ended == [] and taker.too_long == []
    feeder.feed(b"z")
    assert ended == ["line too long"] and taker.too_long[0].seen == 65
