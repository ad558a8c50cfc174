"""LineLink on a real TCP connection: lines go out without Nagle's delay, and
a peer that never reads is dropped once its writes pass the limit."""

import socket

from twisted.internet import defer, endpoints, reactor, ssl
from twisted.internet.error import ConnectionAborted
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import LoopingCall
from twisted.logger import formatEvent, globalLogPublisher
from twisted.trial import unittest

from jeisson import pki, tls
from jeisson.limits import Limits
from jeisson.transports.stream import LineLink, LineLinkFactory, innermost_transport
from tests.waiting import scratch_directory


class Recorder:
    def __init__(self, link):
        self.link = link
        self.lines = []
        Recorder.made.append(self)

    def line_received(self, line):
        self.lines.append(line)

    def line_too_long(self, error):
        pass

    def connection_lost(self, reason):
        pass


class NoDelayTests(unittest.TestCase):
    @defer.inlineCallbacks
    def test_both_ends_of_a_tcp_link_disable_nagle(self):
        Recorder.made = []
        port = yield endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            LineLinkFactory(100, Recorder))
        self.addCleanup(port.stopListening)
        client = yield endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port).connect(
            Factory.forProtocol(lambda: LineLink(100, Recorder)))
        self.addCleanup(client.transport.loseConnection)
        # Both ends' sessions exist once the server has accepted.
        for _ in range(100):
            if len(Recorder.made) == 2:
                break
            yield defer.Deferred(lambda d: None).addTimeout(0.01, reactor).addErrback(lambda f: None)
        self.assertEqual(len(Recorder.made), 2)
        for recorder in Recorder.made:
            self.assertTrue(recorder.link.transport.getTcpNoDelay())


class Flood:
    """A server session: echoes each line, except ``FLOOD``, after which it
    writes 16 KiB every millisecond until its link is lost."""

    def __init__(self, link):
        self.link = link
        self.lost: defer.Deferred = defer.Deferred()
        self.loop = None
        Flood.made.append(self)

    def line_received(self, line):
        if line == b"FLOOD":
            self.loop = LoopingCall(self.link.send_line, b"x" * 16383 + b"\n")
            self.loop.start(0.001)
        else:
            self.link.send_line(line + b"\n")

    def line_too_long(self, error):
        pass

    def connection_lost(self, reason):
        if self.loop is not None and self.loop.running:
            self.loop.stop()
        self.reason = reason
        self.lost.callback(None)


class Echoed(Recorder):
    def __init__(self, link):
        super().__init__(link)
        self.heard = defer.Deferred()
        self.gone = defer.Deferred()

    def line_received(self, line):
        super().line_received(line)
        if not self.heard.called:
            self.heard.callback(line)

    def connection_lost(self, reason):
        self.gone.callback(None)


def drop(transport, gone):
    """A cleanup: abort the connection and wait until it is gone."""
    transport.abortConnection()
    return gone


class BoundedWriteTests(unittest.TestCase):
    """A peer that never reads is dropped once what waits for it passes the
    limit (a real TCP connection: the kernel's buffers fill, then Twisted's,
    which pauses the link), and the server goes on serving others."""

    @defer.inlineCallbacks
    def test_a_peer_that_never_reads_is_dropped_and_others_are_served(self):
        Flood.made = []
        Recorder.made = []
        limits = Limits(max_write_buffer_bytes=256 * 1024)
        port = yield endpoints.TCP4ServerEndpoint(reactor, 0, interface="127.0.0.1").listen(
            LineLinkFactory(100, Flood, limits=limits))
        self.addCleanup(port.stopListening)
        address = ("127.0.0.1", port.getHost().port)

        # The peer that never reads: a plain socket with a small receive buffer.
        deaf = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.addCleanup(deaf.close)
        deaf.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        deaf.setblocking(False)
        try:
            deaf.connect(address)
        except BlockingIOError:
            pass
        yield self.until(lambda: len(Flood.made) == 1)
        flooded = Flood.made[0]
        deaf.send(b"FLOOD\n")

        # Another peer, connected while the flood goes on, is served.
        client = yield endpoints.TCP4ClientEndpoint(reactor, *address).connect(
            Factory.forProtocol(lambda: LineLink(100, Echoed)))
        echoed = Recorder.made[-1]
        self.addCleanup(drop, client.transport, echoed.gone)
        client.send_line(b"PING 1\n")
        line = yield echoed.heard.addTimeout(10, reactor)
        self.assertEqual(line, b"PING 1")

        yield flooded.lost.addTimeout(30, reactor)  # dropped, not waited for forever
        self.assertIsNotNone(flooded.loop)
        # What it held: the kernel's buffers, Twisted's (bufferSize), and at
        # most the limit written after Twisted paused the link.
        flooded.reason.trap(ConnectionAborted)

        late = yield endpoints.TCP4ClientEndpoint(reactor, *address).connect(
            Factory.forProtocol(lambda: LineLink(100, Echoed)))
        late_echoed = Recorder.made[-1]
        self.addCleanup(drop, late.transport, late_echoed.gone)
        late.send_line(b"PING 2\n")
        line = yield late_echoed.heard.addTimeout(10, reactor)
        self.assertEqual(line, b"PING 2")

    def until(self, condition, timeout=10.0):
        """A Deferred that fires once ``condition()`` holds (checked on each
        reactor turn), or fails after ``timeout`` seconds."""
        done: defer.Deferred = defer.Deferred()

        def check():
            if condition():
                loop.stop()
                done.callback(None)

        loop = LoopingCall(check)
        loop.start(0.01)
        return done.addTimeout(timeout, reactor)


class Deafening(Protocol):
    """A TLS client that asks for the flood, then stops reading its socket
    once the flood has begun (the TCP transport under the TLS layer)."""

    def __init__(self):
        self.flooding: defer.Deferred = defer.Deferred()
        self.gone: defer.Deferred = defer.Deferred()

    def connectionLost(self, reason):
        self.gone.callback(None)

    def connectionMade(self):
        self.transport.write(b"FLOOD\n")

    def dataReceived(self, data):
        if not self.flooding.called:
            innermost_transport(self.transport).stopReading()
            self.flooding.callback(None)


class BoundedWriteOverTLSTests(unittest.TestCase):
    """The same over TLS, the default path: the link is the producer of the
    TCP connection under the TLS layer, so the bound holds there too."""

    @defer.inlineCallbacks
    def test_a_tls_peer_that_never_reads_is_dropped_and_others_are_served(self):
        Flood.made = []
        Recorder.made = []
        folder = scratch_directory(self)
        pki.init(folder)
        with open(f"{folder}/{pki.AGGREGATOR_CERT}", "rb") as f:
            cert = f.read()
        with open(f"{folder}/{pki.AGGREGATOR_KEY}", "rb") as f:
            key = f.read()
        with open(f"{folder}/{pki.CA_CERT}", "rb") as f:
            ca = ssl.Certificate.loadPEM(f.read())
        server_options = ssl.PrivateCertificate.loadPEM(cert + key).options()
        port = yield endpoints.SSL4ServerEndpoint(reactor, 0, server_options, interface="127.0.0.1").listen(
            LineLinkFactory(100, Flood, limits=Limits(max_write_buffer_bytes=256 * 1024)))
        self.addCleanup(port.stopListening)
        client_options = ssl.optionsForClientTLS("localhost", trustRoot=ca)

        def tls_client(factory):
            inner = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
            return endpoints.wrapClientTLS(client_options, inner).connect(factory)

        said: list[str] = []

        def observe(event):
            said.append(formatEvent(event))

        globalLogPublisher.addObserver(observe)
        self.addCleanup(globalLogPublisher.removeObserver, observe)

        deaf = yield tls_client(Factory.forProtocol(Deafening))
        self.addCleanup(drop, deaf.transport, deaf.gone)
        yield deaf.flooding.addTimeout(10, reactor)
        flooded = Flood.made[0]

        client = yield tls_client(Factory.forProtocol(lambda: LineLink(100, Echoed)))
        echoed = Recorder.made[-1]
        self.addCleanup(drop, client.transport, echoed.gone)
        client.send_line(b"PING 1\n")
        line = yield echoed.heard.addTimeout(10, reactor)
        self.assertEqual(line, b"PING 1")

        yield flooded.lost.addTimeout(30, reactor)
        # TLS reports the abort below it as a lost connection: the log says why.
        self.assertTrue([m for m in said if "does not read" in m and "dropping the link" in m], said)


class Stranger(Protocol):
    """A TLS client with no certificate: the aggregator's handshake refuses it."""

    def __init__(self):
        self.gone: defer.Deferred = defer.Deferred()

    def connectionMade(self):
        self.transport.write(b"HELLO\n")

    def connectionLost(self, reason):
        self.reason = reason
        self.gone.callback(None)


class TLSLockoutTests(unittest.TestCase):
    """A certificate the listener refuses (another CA's) counts toward its
    address's lockout, as a wrong secret does; a client with no certificate
    or bytes that are not TLS do not (a stranger behind the same NAT as
    honest homes could otherwise lock them out with junk)."""

    def listen(self, lockout_failures=3):
        folder = scratch_directory(self)
        pki.init(folder)
        settings = tls.TLSConfig("agg.ini", ca=f"{folder}/{pki.CA_CERT}", cert=f"{folder}/{pki.AGGREGATOR_CERT}",
                                 key=f"{folder}/{pki.AGGREGATOR_KEY}", crl=f"{folder}/crl.pem")
        factory = LineLinkFactory(100, Recorder, limits=Limits(lockout_failures=lockout_failures,
                                                               auth_failure_delay_s=0))
        Recorder.made = []
        port = reactor.listenTCP(0, tls.ServerTLS(settings).wrap(factory), interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        with open(f"{folder}/{pki.CA_CERT}", "rb") as f:
            ca = ssl.Certificate.loadPEM(f.read())
        inner = endpoints.TCP4ClientEndpoint(reactor, "127.0.0.1", port.getHost().port)
        return factory, ca, inner

    def stranger_certificate(self):
        other = scratch_directory(self)
        pki.init(other)
        pki.issue_home(other, "home-a")
        with open(f"{other}/homes/home-a.pem", "rb") as f, open(f"{other}/homes/home-a.key", "rb") as k:
            return ssl.PrivateCertificate.loadPEM(f.read() + k.read())

    @defer.inlineCallbacks
    def test_certificates_refused_lock_the_address_out(self):
        factory, ca, inner = self.listen()
        client_options = ssl.optionsForClientTLS("localhost", trustRoot=ca,
                                                 clientCertificate=self.stranger_certificate())
        for _ in range(3):
            self.assertFalse(factory.guard.locked_out("127.0.0.1"))
            stranger = yield endpoints.wrapClientTLS(client_options, inner).connect(Factory.forProtocol(Stranger))
            yield stranger.gone.addTimeout(10, reactor)
        yield self.until(lambda: factory.guard.connections == 0)
        self.assertTrue(factory.guard.locked_out("127.0.0.1"))
        self.assertEqual([r.lines for r in Recorder.made], [[], [], []])  # no line reached a session

        late = yield endpoints.wrapClientTLS(client_options, inner).connect(Factory.forProtocol(Stranger))
        yield late.gone.addTimeout(10, reactor)  # aborted at accept: no session made
        self.assertEqual(len(Recorder.made), 3)
        self.assertEqual(factory.guard.connections, 0)

    @defer.inlineCallbacks
    def test_no_certificate_and_junk_do_not_lock_the_address_out(self):
        factory, ca, inner = self.listen(lockout_failures=2)
        no_certificate = ssl.optionsForClientTLS("localhost", trustRoot=ca)
        for _ in range(3):
            stranger = yield endpoints.wrapClientTLS(no_certificate, inner).connect(Factory.forProtocol(Stranger))
            yield stranger.gone.addTimeout(10, reactor)
            junk = yield inner.connect(Factory.forProtocol(Stranger))  # "HELLO\n" in clear: not TLS at all
            yield junk.gone.addTimeout(10, reactor)
        yield self.until(lambda: factory.guard.connections == 0)
        self.assertFalse(factory.guard.locked_out("127.0.0.1"))

    until = BoundedWriteTests.until
