"""LineLink on a real TCP connection: lines go out without Nagle's delay."""

from twisted.internet import defer, endpoints, reactor
from twisted.internet.protocol import Factory
from twisted.trial import unittest

from jeisson.transports.stream import LineLink, LineLinkFactory


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
