"""One home's link, seen from the aggregator.

States:

``hello``
    Connected; the only message accepted is ``HELLO``.  No ``HELLO`` within
    ``HELLO_TIMEOUT_S`` closes the link.
``active``
    Registered: ``FLEX``, ``COMMIT``, ``MEASURE``, ``PING``/``PONG`` and
    ``ERROR`` are handled, in the protocol version agreed in ``WELCOME``;
    heartbeats run both ways.
``closed``
    Refused, superseded by a newer link of the same home, dead (no line for
    three heartbeat periods) or disconnected.

A malformed line or a message out of place is answered with ``ERROR`` and
logged with the peer; the link stays up.  A line over the maximum closes
this link only.
"""

from twisted.logger import Logger

from jeisson.heartbeat import Heartbeat
from jeisson.wire import aggregator_home as wire
from jeisson.wire.errors import ProtocolError

HELLO_TIMEOUT_S = 10.0
HEARTBEAT_MISSES = 3


class HomeSession:
    log = Logger()

    def __init__(self, aggregator, link):
        self.aggregator = aggregator
        self.link = link
        self.peer = link.peer
        self.home_id: str | None = None
        self.state = "hello"
        # The protocol version: 1 until WELCOME names the one agreed.
        self.version = 1
        clock = aggregator.clock
        interval = aggregator.config.heartbeat_s
        self.heartbeat = Heartbeat(clock, interval, HEARTBEAT_MISSES * interval,
                                   lambda n: self.send(wire.Ping(n)), self._dead)
        self._hello_timeout = clock.callLater(HELLO_TIMEOUT_S, self._no_hello)

    # -------------------------------------------------------- wire interface

    def send(self, message) -> None:
        self.link.send_line(wire.serialize(message, self.version))

    def supersede(self) -> None:
        self.send(wire.Error(wire.SUPERSEDED, "a newer connection of this home replaced this one"))
        self._close()

    # -------------------------------------------------------------- session

    def line_received(self, line: bytes) -> None:
        if self.state == "closed":
            return
        self.heartbeat.seen()
        try:
            message = wire.parse_line(line, self.version)
        except ProtocolError as error:
            self._complain(error.code, error.detail)
            return
        handler = getattr(self, f"_{self.state}_{message.verb.lower()}", None)
        if handler is None:
            self._complain(wire.STATE, f"{message.verb} is not expected from a home in state {self.state}")
            return
        handler(message)

    def line_too_long(self, error) -> None:
        self.send(wire.Error(wire.TOO_LONG, f"line longer than {wire.MAX_LINE} bytes; closing"))
        self._closed()

    def connection_lost(self, reason) -> None:
        if self.home_id is not None and self.state != "closed":
            self.log.info("home {home} at {peer} disconnected: {reason}", home=self.home_id, peer=self.peer,
                          reason=reason.getErrorMessage())
        self._closed()

    # ------------------------------------------------------------- handlers

    def _hello_hello(self, hello: wire.Hello) -> None:
        common = set(hello.versions) & set(wire.PROTOCOL_VERSIONS)
        if not common:
            self._refuse(wire.VERSION, f"this aggregator speaks versions {list(wire.PROTOCOL_VERSIONS)}, "
                                       f"the home offered {list(hello.versions)}", hello.home)
            return
        refusal = self.aggregator.register(self, hello)
        if refusal is not None:
            self._refuse(*refusal, hello.home)
            return
        self._cancel_hello_timeout()
        self.home_id = hello.home
        self.state = "active"
        self.send(wire.Welcome(max(common), hello.home, self.aggregator.config.heartbeat_s))
        self.version = max(common)
        self.heartbeat.start()

    def _hello_ping(self, ping: wire.Ping) -> None:
        self.send(wire.Pong(ping.n))

    _active_ping = _hello_ping

    def _hello_pong(self, pong) -> None:
        pass

    _active_pong = _hello_pong

    def _hello_error(self, error: wire.Error) -> None:
        self.log.warn("{peer} ({home}) reported an error: {code}: {detail}", peer=self.peer,
                      home=self.home_id or "not registered", code=error.code, detail=error.detail)

    _active_error = _hello_error

    def _active_hello(self, hello) -> None:
        self._complain(wire.STATE, f"already registered as {self.home_id}")

    def _active_flex(self, flex: wire.Flex) -> None:
        self.aggregator.flex_received(self.home_id, flex)
        if self.version < 2:
            # Version 2 leaves it out: the bid comes back in the next BUDGET.
            self.send(wire.Ack(flex.bid))

    def _active_commit(self, commit: wire.Commit) -> None:
        self.aggregator.commit_received(self.home_id, commit)

    def _active_measure(self, measure: wire.Measure) -> None:
        self.aggregator.measure_received(self.home_id, measure)

    # -------------------------------------------------------------- helpers

    def _complain(self, code: str, detail: str) -> None:
        self.log.warn("{peer} ({home}): bad input: {code}: {detail}", peer=self.peer,
                      home=self.home_id or "not registered", code=code, detail=detail)
        self.send(wire.Error(code, detail))

    def _refuse(self, code: str, detail: str, claimed: str) -> None:
        self.log.warn("refused {peer} claiming to be home {home}: {code}: {detail}", peer=self.peer, home=claimed,
                      code=code, detail=detail)
        self.send(wire.Refused(code, detail))
        self._close()

    def _no_hello(self) -> None:
        self._hello_timeout = None
        self.log.warn("{peer} sent no HELLO within {t} s; closing", peer=self.peer, t=HELLO_TIMEOUT_S)
        self.send(wire.Error(wire.TIMEOUT, f"no HELLO within {HELLO_TIMEOUT_S} s"))
        self._close()

    def _dead(self) -> None:
        self.log.warn("home {home} at {peer} silent for {t} s; dropping the link", home=self.home_id,
                      peer=self.peer, t=self.heartbeat.timeout)
        self.link.abort()
        self._closed()

    def _close(self) -> None:
        self.link.close()
        self._closed()

    def _cancel_hello_timeout(self) -> None:
        if self._hello_timeout is not None and self._hello_timeout.active():
            self._hello_timeout.cancel()
        self._hello_timeout = None

    def _closed(self) -> None:
        if self.state == "closed":
            return
        self.state = "closed"
        self._cancel_hello_timeout()
        self.heartbeat.stop()
        if self.home_id is not None:
            self.aggregator.session_closed(self.home_id, self)
