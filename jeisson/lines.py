"""Sans-IO line framing shared by every jeisson link.

Both wire protocols are line based: one message per line, ended by ``\\n``
(a ``\\r`` before it is dropped).  ``LineFramer.feed`` takes bytes split
anywhere and returns the complete lines; it raises ``LineTooLong`` as soon as
a line is known to exceed the link's maximum, so a peer cannot make us buffer
without bound.
"""

import attrs


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
        lines = []
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
