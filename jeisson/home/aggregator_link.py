"""The home's link to the aggregator, seen from the home.

States:

``hello-sent``
    Connected; ``HELLO`` sent with the home's id, secret and versions.
``active``
    ``WELCOME`` received: the home sends ``FLEX`` whenever its offers change,
    ``MEASURE`` every ``measure_period_s``, answers ``BUDGET`` and
    ``RELEASE`` with ``COMMIT`` once its relays have switched (preceded by a
    new ``FLEX`` if switching changed its offers), and runs heartbeats at
    the period the aggregator gave.
``closed``
    Refused, dead (no line for three heartbeat periods) or disconnected;
    ``ClientService`` connects again with backoff.  The home keeps its last
    budget until its event ends.
"""

from twisted.internet.defer import Deferred
from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from jeisson.heartbeat import Heartbeat
from jeisson.wire import aggregator_home as wire
from jeisson.wire.errors import ProtocolError

HEARTBEAT_MISSES = 3
# An aggregator that accepts the connection but never answers HELLO is as
# good as absent: drop the link and let ClientService try again.
WELCOME_TIMEOUT_S = 10.0


class UplinkSession:
    log = Logger()

    def __init__(self, home, link):
        self.home = home
        self.link = link
        self.peer = link.peer
        self.state = "hello-sent"
        self.heartbeat = None
        # The protocol version: 1 until WELCOME names the one agreed.
        self.version = 1
        self._measures = None
        self._answering = 0
        config = home.config
        self._welcome_timeout = home.clock.callLater(WELCOME_TIMEOUT_S, self._no_welcome)
        self.send(wire.Hello(config.id, config.secret, wire.PROTOCOL_VERSIONS))

    def send(self, message) -> None:
        self.link.send_line(wire.serialize(message, self.version))

    # -------------------------------------------------------------- session

    def line_received(self, line: bytes) -> None:
        if self.state == "closed":
            return
        if self.heartbeat is not None:
            self.heartbeat.seen()
        try:
            message = wire.parse_line(line, self.version)
        except ProtocolError as error:
            self._complain(error.code, error.detail)
            return
        handler = getattr(self, f"_on_{message.verb.lower()}", None)
        allowed = self.state == "active" or message.verb in ("WELCOME", "REFUSED", "ERROR", "PING", "PONG")
        if handler is None or not allowed:
            self._complain(wire.STATE, f"{message.verb} is not expected from the aggregator in state {self.state}")
            return
        handler(message)

    def line_too_long(self, error) -> None:
        self.send(wire.Error(wire.TOO_LONG, f"line longer than {wire.MAX_LINE} bytes; closing"))
        self._closed()

    def connection_lost(self, reason) -> None:
        if self.state == "active":
            self.log.warn("lost the aggregator at {peer}: {reason}; keeping the last budget until its event ends",
                          peer=self.peer, reason=reason.getErrorMessage())
        # ClientService sees this loss itself; failing ``welcomed`` here too
        # would report one failure twice.
        self._closed()

    # ------------------------------------------------------------- handlers

    def _on_welcome(self, welcome: wire.Welcome) -> None:
        if self.state != "hello-sent":
            self._complain(wire.STATE, "WELCOME after registration")
            return
        if welcome.version not in wire.PROTOCOL_VERSIONS:
            detail = f"WELCOME names version {welcome.version}; this home speaks {list(wire.PROTOCOL_VERSIONS)}"
            self._complain(wire.VERSION, detail)
            # Shown in the home's status, as a refusal is: it will happen again.
            self.home.refused = f"{wire.VERSION}: {detail}"
            self.link.close()
            self._closed()
            return
        self.state = "active"
        self.version = welcome.version
        self._cancel_welcome_timeout()
        self.home.refused = None
        self.log.info("registered with the aggregator at {peer} as {home} (protocol {v})", peer=self.peer,
                      home=welcome.home, v=welcome.version)
        clock = self.home.clock
        self.heartbeat = Heartbeat(clock, welcome.heartbeat_s, HEARTBEAT_MISSES * welcome.heartbeat_s,
                                   lambda n: self.send(wire.Ping(n)), self._dead)
        self.heartbeat.start()
        self._measures = LoopingCall(self._measure)
        self._measures.clock = clock
        self._measures.start(self.home.config.measure_period_s, now=False).addErrback(
            lambda failure: self.log.failure("the MEASURE loop stopped", failure))
        self.home.uplink = self
        self.send(self.home.new_flex())

    def _on_refused(self, refused: wire.Refused) -> None:
        self.log.error("the aggregator at {peer} refused home {home}: {code}: {detail}", peer=self.peer,
                       home=self.home.config.id, code=refused.code, detail=refused.detail)
        self.home.refused = f"{refused.code}: {refused.detail}"
        self.link.close()
        self._closed()

    def _on_error(self, error: wire.Error) -> None:
        self.log.warn("the aggregator at {peer} reported an error: {code}: {detail}", peer=self.peer,
                      code=error.code, detail=error.detail)

    def _on_ping(self, ping: wire.Ping) -> None:
        self.send(wire.Pong(ping.n))

    def _on_pong(self, pong: wire.Pong) -> None:
        pass

    def _on_ack(self, ack: wire.Ack) -> None:
        pass

    def _on_budget(self, budget: wire.Budget) -> None:
        self._answer(self.home.budget_received(budget))

    def _on_release(self, release: wire.Release) -> None:
        self._answer(self.home.release(release))

    # -------------------------------------------------------------- helpers

    def _answer(self, commitment: Deferred) -> None:
        self._answering += 1

        def commit(message):
            self._answering -= 1
            if self.state == "active":
                # The new bid first: the aggregator then knows, when this
                # commitment completes its round, that another should follow.
                self.loads_changed()
                self.send(message)

        def failed(failure):
            self._answering -= 1
            self.log.failure("could not answer the aggregator", failure)

        commitment.addCallbacks(commit, failed)

    def loads_changed(self) -> None:
        """Send a new bid if the offers changed (not while a commit is due)."""
        if self.state != "active" or self._answering:
            return
        flex = self.home.flex_if_changed()
        if flex is not None:
            self.send(flex)

    def _measure(self) -> None:
        # Caught here: an exception would stop the LoopingCall for good.
        try:
            home = self.home
            loads = tuple((load.id, load.measured_w) for load in home.loads.values()
                          if load.measured_w is not None)
            self.send(wire.Measure(home.clock.seconds(), home.measured_w(), loads))
        except Exception:
            self.log.failure("could not send MEASURE to {peer}", peer=self.peer)

    def _complain(self, code: str, detail: str) -> None:
        self.log.warn("aggregator at {peer}: bad input: {code}: {detail}", peer=self.peer, code=code, detail=detail)
        self.send(wire.Error(code, detail))

    def _no_welcome(self) -> None:
        self._welcome_timeout = None
        self.log.warn("the aggregator at {peer} did not answer HELLO within {t} s; dropping the link",
                      peer=self.peer, t=WELCOME_TIMEOUT_S)
        self.link.abort()
        self._closed()

    def _cancel_welcome_timeout(self) -> None:
        if self._welcome_timeout is not None and self._welcome_timeout.active():
            self._welcome_timeout.cancel()
        self._welcome_timeout = None

    def _dead(self) -> None:
        self.log.warn("the aggregator at {peer} is silent for {t} s; dropping the link", peer=self.peer,
                      t=self.heartbeat.timeout)
        self.link.abort()
        self._closed()

    def _closed(self) -> None:
        if self.state == "closed":
            return
        self.state = "closed"
        self._cancel_welcome_timeout()
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self._measures is not None and self._measures.running:
            self._measures.stop()
        if self.home.uplink is self:
            self.home.uplink = None
