"""A relay board's link, seen from the home.

States:

``hello``
    Connected; the board must say ``HELLO`` first.  An unknown id, a relay
    count that differs from the home's config or an unknown version is
    ``REFUSED`` and the link closed.
``active``
    ``WELCOME`` sent: the home sends ``SET`` (each answered by ``ACK`` or
    ``NAK`` within ``command_timeout_s``, or the board is dropped as
    unhealthy), receives ``MEAS``, and both sides ``PING``.
``closed``
    The board's loads become unknown and count at their rated power until
    it says ``HELLO`` again.
"""

from twisted.internet.defer import Deferred
from twisted.logger import Logger

from jeisson.heartbeat import Heartbeat
from jeisson.home.core import CommandFailed
from jeisson.wire import home_actuator as wire
from jeisson.wire.errors import ProtocolError

HELLO_TIMEOUT_S = 10.0
HEARTBEAT_MISSES = 3


class BoardSession:
    log = Logger()

    def __init__(self, home, link, hello_timeout_s: float | None = HELLO_TIMEOUT_S, only: str | None = None,
                 prompt: bool = False):
        """``hello_timeout_s``: None on links with no connection to close
        (serial, radio), where a silent board is simply not there yet.
        ``only``: the one actuator id this link may carry (a radio address).
        ``prompt``: start by asking for a HELLO (``ERR hello``): on a serial
        line the board's HELLO may predate our opening the port, which
        flushes what was waiting."""
        self.home = home
        self.only = only
        self.link = link
        self.peer = link.peer
        self.state = "hello"
        self.actuator: str | None = None
        self._seq = 0
        self._pending: dict[int, tuple[int, bool, Deferred, object]] = {}
        clock = home.clock
        interval = home.config.heartbeat_s
        self.heartbeat = Heartbeat(clock, interval, HEARTBEAT_MISSES * interval,
                                   lambda n: self.send(wire.Ping(n)), self._dead)
        self._hello_timeout = None
        if hello_timeout_s is not None:
            self._hello_timeout = clock.callLater(hello_timeout_s, self._no_hello)
        if prompt:
            self.send(wire.Err(wire.HELLO_FIRST))

    def send(self, message) -> None:
        self.link.send_line(wire.serialize(message))

    @property
    def name(self) -> str:
        return f"{self.actuator or 'unidentified board'} at {self.peer}"

    # --------------------------------------------------------------- commands

    def command(self, relay: int, on: bool) -> Deferred:
        """``SET`` a relay; fires on ``ACK``, fails with ``CommandFailed``."""
        self._seq = (self._seq + 1) % (wire.MAX_SEQ + 1)
        seq = self._seq
        d = Deferred()
        timer = self.home.clock.callLater(self.home.config.command_timeout_s, self._command_timeout, seq)
        self._pending[seq] = (relay, on, d, timer)
        self.send(wire.Set(seq, relay, on))
        return d

    def _settle(self, seq: int):
        relay, on, d, timer = self._pending.pop(seq)
        if timer.active():
            timer.cancel()
        return relay, on, d

    def _command_timeout(self, seq: int) -> None:
        relay, on, d, _ = self._pending.pop(seq)
        self.log.warn("{board}: no ACK for SET {seq} (relay {relay}) within {t} s; dropping the board",
                      board=self.name, seq=seq, relay=relay, t=self.home.config.command_timeout_s)
        self.link.abort()
        # Drop the board before failing the command, so that whatever the
        # home does next (its commitment) already counts these loads as unknown.
        self._closed()
        d.errback(CommandFailed(f"{self.actuator}: no acknowledgement within {self.home.config.command_timeout_s} s"))

    def supersede(self) -> None:
        self.send(wire.Err(wire.SUPERSEDED))
        self.link.close()
        self._closed()

    # ---------------------------------------------------------------- session

    def line_received(self, line: bytes) -> None:
        if self.state == "closed":
            return
        self.heartbeat.seen()
        try:
            message = wire.parse_line(line)
        except ProtocolError as error:
            self._complain(error.code, error.detail)
            return
        handler = getattr(self, f"_on_{message.verb.lower()}", None)
        if self.state == "hello" and handler is not None and message.verb not in ("HELLO", "PING", "PONG", "ERR"):
            # A board that believes it is welcomed (the home restarted, or a
            # radio link was dropped): ask it to introduce itself again.
            self._complain(wire.HELLO_FIRST, f"{message.verb} before HELLO; say HELLO first")
            return
        if message.verb == "HELLO" and self.state == "active" and message.actuator == self.actuator:
            # The same board again on the same link: it restarted (or its
            # failsafe switched relays) where no disconnection can be seen,
            # as on a serial line or a radio.  Its HELLO has the true states.
            self._restart(message)
            return
        if handler is None or (message.verb == "HELLO" and self.state != "hello"):
            self._complain(wire.STATE, f"{message.verb} is not expected from a board in state {self.state}")
            return
        handler(message)

    def _restart(self, hello: wire.Hello) -> None:
        self.log.info("{board} said HELLO again: taking its relay states afresh", board=self.name)
        self.heartbeat.stop()
        pending, self._pending = self._pending, {}
        self.state = "hello"
        self._on_hello(hello)
        for relay, _on, d, timer in pending.values():
            if timer.active():
                timer.cancel()
            d.errback(CommandFailed(f"{self.actuator}: restarted before relay {relay} acknowledged"))

    def line_too_long(self, error) -> None:
        self.send(wire.Err(wire.LONG))
        self._closed()

    def connection_lost(self, reason) -> None:
        if self.state == "active":
            self.log.warn("{board} disconnected: {reason}", board=self.name, reason=reason.getErrorMessage())
        self._closed()

    # --------------------------------------------------------------- handlers

    def _on_hello(self, hello: wire.Hello) -> None:
        expected = self.home.config.actuators.get(hello.actuator)
        if expected is None:
            self._refuse(wire.UNKNOWN, f"actuator {hello.actuator!r} is not configured in this home")
        elif self.only is not None and hello.actuator != self.only:
            self._refuse(wire.UNKNOWN, f"{self.peer} is configured for actuator {self.only}, "
                                       f"not {hello.actuator}")
        elif hello.version != wire.PROTOCOL_VERSION:
            self._refuse(wire.VERSION, f"actuator {hello.actuator} speaks version {hello.version}, "
                                       f"this home {wire.PROTOCOL_VERSION}")
        elif hello.relays != expected:
            self._refuse(wire.RELAYS, f"actuator {hello.actuator} has {hello.relays} relays, the home's config "
                                      f"says {expected}")
        else:
            self._cancel_hello_timeout()
            self.actuator = hello.actuator
            self.state = "active"
            self.send(wire.Welcome(wire.PROTOCOL_VERSION, self.home.config.heartbeat_s))
            self.heartbeat.start()
            self.home.board_connected(hello.actuator, self, hello.states)

    def _on_ack(self, ack: wire.Ack) -> None:
        pending = self._pending.get(ack.seq)
        if pending is None or pending[:2] != (ack.relay, ack.on):
            self._complain(wire.STATE, f"ACK {ack.seq} matches no outstanding SET")
            return
        self._settle(ack.seq)[2].callback(ack)

    def _on_nak(self, nak: wire.Nak) -> None:
        if nak.seq not in self._pending:
            self._complain(wire.STATE, f"NAK {nak.seq} matches no outstanding SET")
            return
        relay, on, d = self._settle(nak.seq)
        self.log.warn("{board} refused SET {seq} (relay {relay} {state}): {code}", board=self.name, seq=nak.seq,
                      relay=relay, state="on" if on else "off", code=nak.code)
        d.errback(CommandFailed(f"{self.actuator} refused relay {relay}: {nak.code}", nak.code))

    def _on_meas(self, meas: wire.Meas) -> None:
        self.home.board_measured(self.actuator, meas.watts)

    def _on_ping(self, ping: wire.Ping) -> None:
        self.send(wire.Pong(ping.n))

    def _on_pong(self, pong: wire.Pong) -> None:
        pass

    def _on_err(self, err: wire.Err) -> None:
        self.log.warn("{board} reported an error: {code}", board=self.name, code=err.code)

    # ---------------------------------------------------------------- helpers

    def _complain(self, code: str, detail: str) -> None:
        self.log.warn("{board}: bad input: {code}: {detail}", board=self.name, code=code, detail=detail)
        self.send(wire.Err(code))

    def _refuse(self, code: str, detail: str) -> None:
        self.log.warn("refused board at {peer}: {detail}", peer=self.peer, detail=detail)
        self.send(wire.Refused(code))
        self.link.close()
        self._closed()

    def _no_hello(self) -> None:
        self._hello_timeout = None
        self.log.warn("board at {peer} sent no HELLO within {t} s; closing", peer=self.peer, t=HELLO_TIMEOUT_S)
        self.send(wire.Err(wire.STATE))
        self.link.close()
        self._closed()

    def _dead(self) -> None:
        self.log.warn("{board} silent for {t} s; dropping it", board=self.name, t=self.heartbeat.timeout)
        self.link.abort()
        self._closed()

    def _cancel_hello_timeout(self) -> None:
        if self._hello_timeout is not None and self._hello_timeout.active():
            self._hello_timeout.cancel()
        self._hello_timeout = None

    def _closed(self) -> None:
        if self.state == "closed":
            return
        was_active = self.state == "active"
        self.state = "closed"
        self._cancel_hello_timeout()
        self.heartbeat.stop()
        pending, self._pending = self._pending, {}
        # The loads become unknown before their commands fail (see above).
        if was_active:
            self.home.board_lost(self.actuator, self)
        for relay, _on, d, timer in pending.values():
            if timer.active():
                timer.cancel()
            d.errback(CommandFailed(f"{self.actuator}: link closed before relay {relay} acknowledged"))
