"""A byte stream as a jeisson wire: TCP, TLS, or a serial line to an XBee in
transparent mode.

``LineLink`` is the thin Protocol shell: it frames bytes into lines for one
session (``jeisson.framing.LineFeeder``) and is that session's wire
(``send_line``, ``close``, ``abort``, ``peer``).
"""

from collections.abc import Callable

from twisted.internet.interfaces import ITransport
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure

from jeisson.framing import LineFeeder
from jeisson.link import Session


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

    def __init__(self, max_line: int, make_session: Callable[["LineLink"], Session], peer: str | None = None,
                 connectionless: bool = False, expected_id: str | None = None, prompt: bytes | None = None):
        """``peer``: how logs name the other end, where the transport cannot
        say (a serial device); ``connectionless`` and ``expected_id``: see
        ``jeisson.link.Wire``; ``prompt``: written first thing, before the
        session is made (the home's ``ERR hello`` on a serial line, whose
        opening flushed what the board had sent)."""
        self.connectionless = connectionless
        self.expected_id = expected_id
        self._prompt = prompt
        self._max_line = max_line
        self._make_session = make_session
        self.session: Session | None = None
        self._peer = peer
        self.peer = peer or "?"
        self._closing = False
        self._feeder: LineFeeder | None = None

    # -- Protocol

    def connectionMade(self):
        assert self.transport is not None
        self._out: ITransport = self.transport  # the wire's side: connected from here on
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
        self._feeder = LineFeeder(self._max_line, self.peer, lambda why: self.close())
        if self._prompt is not None:
            self._out.write(self._prompt)
        self.session = self._make_session(self)
        if not self._closing:
            self._feeder.session = self.session

    def _stop_delivery(self) -> None:
        self._closing = True
        if self._feeder is not None:
            self._feeder.session = None

    def dataReceived(self, data: bytes):
        if self._feeder is not None:
            self._feeder.feed(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stop_delivery()
        if self.session is not None:
            session, self.session = self.session, None
            session.connection_lost(reason)

    # -- Wire

    def send_line(self, data: bytes) -> None:
        if not self._closing:
            self._out.write(data)

    def close(self) -> None:
        """Close after what was sent is written."""
        if not self._closing:
            self._stop_delivery()
            self._out.loseConnection()

    def abort(self) -> None:
        """Drop the link now: the peer is dead or hostile."""
        self._stop_delivery()
        abort = getattr(self.transport, "abortConnection", None)
        (abort or self._out.loseConnection)()


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
