"""A byte stream as a jeisson wire: TCP, TLS, or a serial line to an XBee in
transparent mode.

``LineLink`` is the thin Protocol shell: it frames bytes into lines for one
session (``jeisson.framing.LineFeeder``) and is that session's wire
(``send_line``, ``close``, ``abort``, ``peer``, ``guard``).
``LineLinkFactory`` builds one per connection, all under one
``jeisson.limits.ListenerGuard``: limits are on unless a test asks
otherwise.

What a link does so that no stranger can tip it over (``jeisson.limits``):

- at ``connectionMade``, before any session or TLS handshake, a connection
  over the listener's limits (in total, per address, new ones per address
  and minute) or from an address locked out is aborted; a TLS handshake
  that fails on a listener (no client certificate, an unknown or revoked
  one) counts toward the address's lockout, as a wrong secret does;
- ``close()`` (a refusal, a timeout, a line too long, a link superseded)
  writes what was sent, asks the transport to close, and aborts it if it is
  still open ``close_grace_s`` later: a peer that never reads cannot keep it
  (``loseConnection`` alone waits for a buffer it never drains);
- writes are bounded.  The link is a streaming producer (``IPushProducer``)
  registered with the innermost transport, the TCP connection under any TLS
  layer: Twisted pauses it once that transport holds more than its
  ``bufferSize`` (64 KiB) unsent, and resumes it once drained.  What is
  written while paused is counted; past ``max_write_buffer_bytes`` the peer
  is not reading and the link is aborted.  (Registered with the TLS layer
  instead, the producer would hold up a ``loseConnection`` that others, as
  ``ClientService.stopService``, call on the TLS transport.)
"""

import ipaddress
from collections.abc import Callable

from twisted.internet.address import IPv4Address, IPv6Address
from twisted.internet.interfaces import IDelayedCall, IPushProducer, IReactorTime, ITransport
from twisted.internet.protocol import Factory, Protocol, connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper
from twisted.python.failure import Failure
from zope.interface import implementer

from jeisson import observe
from jeisson.framing import LineFeeder
from jeisson.limits import ConnectionGuard, Limits, ListenerGuard
from jeisson.link import Session
from jeisson.timers import cancel


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


def peer_host(transport, ipv6_prefix: int = 64) -> str | None:
    """The address the listener's limits count the peer under: its IPv4
    address, or for IPv6 its network of ``ipv6_prefix`` bits (/64 by
    default: one subscriber's, which holds more addresses than anyone could
    be limited by one by one); None where it has no IP address (a serial
    line, a UNIX socket)."""
    try:
        peer = transport.getPeer()
    except (AttributeError, NotImplementedError):
        return None
    if isinstance(peer, IPv4Address):
        return peer.host
    if isinstance(peer, IPv6Address):
        try:
            address = ipaddress.IPv6Address(peer.host.split("%")[0])
        except ValueError:
            return peer.host
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, ipv6_prefix), strict=False))
    return None


def innermost_transport(transport):
    """The transport under any wrapping protocol (TLS): the one whose write
    buffer fills when the peer does not read."""
    while isinstance(transport, ProtocolWrapper) and transport.transport is not None:
        transport = transport.transport
    return transport


def tls_refused(transport, reason: Failure) -> bool:
    """Whether ``reason`` is our TLS server refusing the certificate a
    client presented (one the CA did not sign, expired, revoked, for
    another purpose: ``HomeTLSProtocol.verify_error``): for the listener's
    guard, a failed authentication.  Bytes that are not TLS, or a client
    with no certificate at all, are not a guess at any credential: they do
    not count toward the address's lockout (a stranger sharing the address
    of honest homes, behind one NAT, could otherwise lock them out with
    junk); the per-address rate of new connections bounds them."""
    try:
        from OpenSSL import SSL
    except ImportError:
        return False
    if not reason.check(SSL.Error) or getattr(transport, "verify_error", None) is None:
        return False
    # Only a server's failure counts (a home failing to verify a rogue
    # aggregator is not a guess at anything): the accepted TCP connection
    # under the TLS layer says which side this is.
    from twisted.internet import tcp

    return isinstance(innermost_transport(transport), tcp.Server)


TLS_HANDSHAKE_FAILED = "tls handshake failed"


def observe_tls_failure(listener: str, transport, refused: bool) -> None:
    """A server's TLS handshake that never completed, for ``jeisson.observe``:
    a certificate refused (``refused``, ``tls_refused``) is a failed
    authentication, its reason what was wrong with it (the certificate's
    subject left out: a label takes no stranger's words); any other (no
    client certificate, bytes that are not TLS, a peer gone mid-handshake)
    a connection refused.  Nothing for a link that is not TLS, or whose
    handshake held."""
    if getattr(transport, "_handshakeDone", True):
        return
    from twisted.internet import tcp

    if not isinstance(innermost_transport(transport), tcp.Server):
        return
    if refused:
        observe.auth_failed(listener, str(transport.verify_error).split(" (", 1)[0])
    else:
        observe.connection_refused(listener, TLS_HANDSHAKE_FAILED)


def _reactor() -> IReactorTime:
    from twisted.internet import reactor

    return reactor


@implementer(IPushProducer)
class LineLink(Protocol):
    """Frames lines for one session; the wire interface of that session."""

    log = Logger()

    def __init__(self, max_line: int, make_session: Callable[["LineLink"], Session], peer: str | None = None,
                 connectionless: bool = False, expected_id: str | None = None, prompt: bytes | None = None,
                 listener: ListenerGuard | None = None, clock: IReactorTime | None = None):
        """``peer``: how logs name the other end, where the transport cannot
        say (a serial device); ``connectionless`` and ``expected_id``: see
        ``jeisson.link.Wire``; ``prompt``: written first thing, before the
        session is made (the home's ``ERR hello`` on a serial line, whose
        opening flushed what the board had sent).  ``listener``: the guard of
        the listener this link belongs to (its factory's); None: a guard of
        its own with the default ``Limits``, on ``clock`` (the reactor unless
        given)."""
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
        self._listener = listener
        self._clock = clock
        self.host: str | None = None
        self.guard: ConnectionGuard | None = None  # once admitted
        self._producing_for = None  # the transport this link is registered with as a producer
        self._paused = False
        self._unread = 0  # bytes written since the transport asked us to pause
        self._grace: IDelayedCall | None = None
        self._heard = False  # any bytes from the peer (over TLS: once its handshake held)

    @property
    def clock(self) -> IReactorTime:
        """The link's own timers' clock (its close grace): the one given,
        else its session's, else its listener's."""
        if self._clock is not None:
            return self._clock
        session_clock = getattr(self.session, "clock", None)
        if session_clock is not None:
            return session_clock
        return self._listener.clock if self._listener is not None else _reactor()

    # -- Protocol

    def connectionMade(self):
        assert self.transport is not None
        self._out: ITransport = self.transport  # the wire's side: connected from here on
        self.peer = self._peer or describe_peer(self.transport)
        if self._listener is None:
            self._listener = ListenerGuard(Limits(), self._clock or _reactor(), name=self.peer)
        self.host = peer_host(self.transport, self._listener.limits.ipv6_prefix)
        if self._listener.admit(self.host, self.peer) is not None:
            self._closing = True
            self._abort_transport()
            return
        self.guard = self._listener.connection(self.peer, self.host)
        # Lines are small and answered at once: without TCP_NODELAY, a
        # second line written before the first is acknowledged (FLEX then
        # COMMIT) waits for the peer's delayed ACK, 40 ms on Linux.
        set_no_delay = getattr(self.transport, "setTcpNoDelay", None)
        if set_no_delay is not None:
            try:
                set_no_delay(True)
            except OSError:
                pass  # not a TCP socket after all (a UNIX socket, a pty)
        self._register_producer()
        guard = self.guard
        self._feeder = LineFeeder(self._max_line, self.peer, lambda why: self.close(), may_log=guard.may_log)
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
        self._heard = True
        if self._feeder is not None:
            self._feeder.feed(data)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._stop_delivery()
        cancel(self._grace)
        self._grace = None
        self._producing_for = None
        if self.guard is not None:
            guard, self.guard = self.guard, None
            guard.stop()
            assert self._listener is not None
            if not self._heard:
                refused = tls_refused(self.transport, reason)
                if refused:
                    self._listener.auth_failed(self.host, self.peer)
                observe_tls_failure(self._listener.name, self.transport, refused)
            self._listener.release(self.host)
        if self.session is not None:
            session, self.session = self.session, None
            session.connection_lost(reason)

    # -- IPushProducer: the innermost transport's flow control

    def _register_producer(self) -> None:
        inner = innermost_transport(self.transport)
        register = getattr(inner, "registerProducer", None)
        if register is None:
            return
        try:
            register(self, True)
        except RuntimeError:
            return  # another producer is registered there: no bound from us
        self._producing_for = inner

    def _unregister_producer(self) -> None:
        inner, self._producing_for = self._producing_for, None
        if inner is not None:
            try:
                inner.unregisterProducer()
            except RuntimeError:
                pass  # already gone

    def pauseProducing(self) -> None:
        # Twisted says so again on every write while its buffer stays full:
        # count from the first time only.
        if not self._paused:
            self._paused = True
            self._unread = 0

    def resumeProducing(self) -> None:
        self._paused = False
        self._unread = 0
        inner = self._producing_for
        if inner is not None and getattr(inner, "disconnecting", False):
            # The transport resumes a paused producer instead of closing:
            # someone asked it to close, and it waits for us to leave.
            self._unregister_producer()

    def stopProducing(self) -> None:
        self._producing_for = None

    # -- Wire

    def send_line(self, data: bytes) -> None:
        if self._closing:
            return
        self._out.write(data)
        if self._paused:
            self._unread += len(data)
            guard = self.guard
            if guard is not None and self._unread > guard.limits.max_write_buffer_bytes:
                if guard.may_log():
                    self.log.warn("{peer} does not read: {n} bytes written since its connection's buffer filled; "
                                  "dropping the link", peer=self.peer, n=self._unread)
                self.abort()

    def close(self) -> None:
        """Close after what was sent is written; abort if the peer has not
        taken it within ``close_grace_s``."""
        if self._closing:
            return
        self._stop_delivery()
        self._unregister_producer()
        self._out.loseConnection()
        if self.guard is not None and self._grace is None:
            self._grace = self.clock.callLater(self.guard.limits.close_grace_s, self._closed_too_slowly)

    def abort(self) -> None:
        """Drop the link now: the peer is dead or hostile."""
        self._stop_delivery()
        self._abort_transport()

    def _abort_transport(self) -> None:
        cancel(self._grace)
        self._grace = None
        self._unregister_producer()
        transport = self.transport
        if transport is None:
            return
        abort = getattr(transport, "abortConnection", None)
        (abort or transport.loseConnection)()

    def _closed_too_slowly(self) -> None:
        self._grace = None
        guard = self.guard
        if guard is not None and guard.may_log():
            self.log.info("{peer} did not take the link's last lines within {t} s; aborting it", peer=self.peer,
                          t=guard.limits.close_grace_s)
        self._abort_transport()


class LineLinkFactory(Factory):
    """Builds a ``LineLink`` per connection, with its session, under one
    ``ListenerGuard`` (``self.guard``) with ``limits`` (the defaults unless
    given) on ``clock`` (the reactor unless given)."""

    # Sessions log what matters; "Starting factory" on every reconnect does not.
    noisy = False

    def __init__(self, max_line: int, make_session: Callable[[LineLink], Session], limits: Limits | None = None,
                 clock: IReactorTime | None = None, name: str = "listener"):
        self.max_line = max_line
        self.make_session = make_session
        self.limits = limits if limits is not None else Limits()
        self._clock = clock
        self._name = name
        self._guard: ListenerGuard | None = None

    @property
    def guard(self) -> ListenerGuard:
        if self._guard is None:
            self._guard = ListenerGuard(self.limits, self._clock or _reactor(), self._name)
        return self._guard

    def buildProtocol(self, addr):
        link = LineLink(self.max_line, self.make_session, listener=self.guard)
        link.factory = self
        return link

    def stopFactory(self):
        if self._guard is not None:
            self._guard.stop()
