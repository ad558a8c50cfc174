"""The thin Protocol shell every jeisson link runs in.

``LineLink`` only frames bytes into lines and hands each line to a *session*
(the link's state machine), which answers through the small wire interface
below: ``send_line``, ``close``, ``abort`` and ``peer``.  Sessions never see a
transport, so the same session serves TCP, TLS or a serial radio.
"""

from collections.abc import Callable
from typing import Protocol as TypingProtocol

from twisted.internet.protocol import Factory, Protocol
from twisted.logger import Logger

from jeisson.lines import LineFramer, LineTooLong


class Session(TypingProtocol):
    def line_received(self, line: bytes) -> None: ...
    def line_too_long(self, error: LineTooLong) -> None: ...
    def connection_lost(self, reason) -> None: ...


class Wire(TypingProtocol):
    peer: str

    def send_line(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


def describe_peer(transport) -> str:
    try:
        peer = transport.getPeer()
    except (AttributeError, NotImplementedError):
        return type(transport).__name__
    host = getattr(peer, "host", None)
    port = getattr(peer, "port", None)
    if host is not None and port is not None:
        return f"{host}:{port}"
    return str(peer)


class LineLink(Protocol):
    """Frames lines for one session; the wire interface of that session."""

    log = Logger()

    def __init__(self, max_line: int, make_session: Callable[["LineLink"], Session], peer: str | None = None):
        """``peer``: how logs name the other end, where the transport cannot
        say (a serial device)."""
        self._framer = LineFramer(max_line)
        self._make_session = make_session
        self.session = None
        self._peer = peer
        self.peer = peer or "?"
        self._closing = False

    # -- Protocol

    def connectionMade(self):
        self.peer = self._peer or describe_peer(self.transport)
        # Lines are small and answered at once: without TCP_NODELAY, a
        # second line written before the first is acknowledged (FLEX then
        # COMMIT) waits for the peer's delayed ACK, 40 ms on Linux.
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            try:
                set_no_delay(True)
            except OSError:
                pass  # not a TCP socket after all (a UNIX socket, a pty)
        self.session = self._make_session(self)

    def dataReceived(self, data: bytes):
        try:
            lines = self._framer.feed(data)
        except LineTooLong as error:
            # The complete lines before the over-long one are still valid.
            self._deliver(error.lines)
            if self.session is None or self._closing:
                return
            self.log.warn(
                "{peer}: {error}; closing this connection", peer=self.peer, error=error
            )
            self.session.line_too_long(error)
            self.close()
            return
        self._deliver(lines)

    def _deliver(self, lines: list[bytes]) -> None:
        for line in lines:
            # A line may close the link; drop what follows it.
            if self._closing or self.session is None:
                return
            self.session.line_received(line)

    def connectionLost(self, reason):
        self._closing = True
        if self.session is not None:
            session, self.session = self.session, None
            session.connection_lost(reason)

    # -- Wire

    def send_line(self, data: bytes) -> None:
        if not self._closing:
            self.transport.write(data)

    def close(self) -> None:
        """Close after what was sent is written."""
        if not self._closing:
            self._closing = True
            self.transport.loseConnection()

    def abort(self) -> None:
        """Drop the link now: the peer is dead or hostile."""
        self._closing = True
        abort = getattr(self.transport, "abortConnection", None)
        (abort or self.transport.loseConnection)()


class LineLinkFactory(Factory):
    """Builds a ``LineLink`` per connection, with its session."""

    # Sessions log what matters; "Starting factory" on every reconnect does not.
    noisy = False

    def __init__(self, max_line: int, make_session: Callable[[LineLink], Session]):
        self.max_line = max_line
        self.make_session = make_session

    def buildProtocol(self, addr):
        link = LineLink(self.max_line, self.make_session)
        link.factory = self
        return link
