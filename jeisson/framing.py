"""Sans-IO line framing shared by every jeisson link.

Both wire protocols are line based: one message per line, ended by ``\\n``
(a ``\\r`` before it is dropped).  ``LineFramer.feed`` takes bytes split
anywhere and returns the complete lines; it raises ``LineTooLong`` as soon as
a line is known to exceed the link's maximum, so a peer cannot make us buffer
without bound.  ``LineFeeder`` hands a stream's lines to its session and
handles an over-long line the same way on every transport (TCP, a serial
line, each radio of an XBee coordinator, a board's own XBee).
"""

from collections.abc import Callable
from typing import Protocol

import attrs
from twisted.logger import Logger


class LineTooLong(Exception):
    """A line exceeded the link's documented maximum length.

    ``lines`` holds the complete lines that came before it in the same data:
    they are valid and still due to the receiver.
    """

    def __init__(self, limit: int, seen: int, lines: list[bytes] | None = None):
        super().__init__(f"line longer than {limit} bytes (at least {seen} bytes seen)")
        self.limit = limit
        self.seen = seen
        self.lines = lines or []


@attrs.define
class LineFramer:
    """Split a byte stream into lines of at most ``max_length`` bytes.

    ``max_length`` counts the line's content, without its terminator.
    """

    max_length: int
    _buffer: bytearray = attrs.field(factory=bytearray, init=False)

    def feed(self, data: bytes) -> list[bytes]:
        buffer = self._buffer
        start = len(buffer)
        buffer += data
        lines: list[bytes] = []
        begin = 0
        while True:
            end = buffer.find(b"\n", max(begin, start))
            if end < 0:
                break
            line = bytes(buffer[begin:end])
            if line.endswith(b"\r"):
                line = line[:-1]
            if len(line) > self.max_length:
                del buffer[:]
                raise LineTooLong(self.max_length, len(line), lines)
            lines.append(line)
            begin = end + 1
            start = begin
        del buffer[:begin]
        # A pending partial line may still lose a trailing "\r".
        if len(buffer) - buffer.endswith(b"\r") > self.max_length:
            seen = len(buffer)
            del buffer[:]
            raise LineTooLong(self.max_length, seen, lines)
        return lines

    @property
    def pending(self) -> int:
        """Bytes buffered that are not yet a complete line."""
        return len(self._buffer)


class LineReceiver(Protocol):
    """What a line feeder delivers to: a link's session."""

    def line_received(self, line: bytes) -> None: ...
    def line_too_long(self, error: LineTooLong) -> None: ...


class LineFeeder:
    """Delivers the lines of one byte stream to its session, for every transport.

    ``session`` is the session taking lines; the transport sets it to None
    as soon as the link is closing: a line may close the link, and what
    follows it is dropped.  A line over the maximum first delivers the
    complete lines before it (they are valid), then tells the session, logs,
    and calls ``end(why)``, which ends the link (a connection closed, a
    radio link dropped).
    """

    log = Logger()

    def __init__(self, max_line: int, peer: str, end: Callable[[str], None],
                 may_log: Callable[[], bool] | None = None):
        """``may_log``: asked before the over-long line's log line (a
        listener's budget, ``jeisson.limits``); None: always logged."""
        self.peer = peer
        self.session: LineReceiver | None = None
        self._framer = LineFramer(max_line)
        self._end = end
        self._may_log = may_log

    def feed(self, data: bytes) -> None:
        try:
            lines = self._framer.feed(data)
        except LineTooLong as error:
            self._deliver(error.lines)
            session = self.session
            if session is None:
                return
            if self._may_log is None or self._may_log():
                self.log.warn("{peer}: {error}; closing this link", peer=self.peer, error=error)
            session.line_too_long(error)
            self._end("line too long")
            return
        self._deliver(lines)

    def _deliver(self, lines: list[bytes]) -> None:
        for line in lines:
            session = self.session
            if session is None:
                return
            session.line_received(line)
