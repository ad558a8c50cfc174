"""A relay board's link, seen from the home.

States:

``hello``
    Connected; the board must say ``HELLO`` first.  An unknown id, an id
    other than the one the wire carries (``expected_id``: a radio address,
    a serial line), a relay count that differs from the home's config or an
    unknown version is ``REFUSED`` and the link closed.  ``MEAS``, ``ACK``
    and ``NAK`` (a board that believes it is welcomed) are answered
    ``ERR hello``.  No ``HELLO`` within ``HELLO_TIMEOUT_S`` closes the link,
    except on a connectionless wire, where a silent board is simply not
    there yet.
``active``
    ``WELCOME`` sent: the home sends ``SET`` (each answered by ``ACK`` or
    ``NAK`` within ``command_timeout_s``, or the board is dropped as
    unhealthy), receives ``MEAS`` (one reading per relay, else ``ERR field``
    and the readings are ignored), and both sides ``PING``.  A ``HELLO``
    from the same board restarts it with its true relay states.
``closed``
    The board's loads become unknown and count at their rated power until
    it says ``HELLO`` again.  Lines still arriving are ignored.
"""

from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from jeisson.home.links import CommandFailed
from jeisson.link import HOME_ACTUATOR, Handlers, LinkSession, Row, Wire
from jeisson.timers import cancel
from jeisson.wire import home_actuator as wire
from jeisson.wire.errors import ProtocolError

HELLO_TIMEOUT_S = 10.0

HELLO = "hello"
ACTIVE = "active"


class BoardSession(LinkSession):
    log = Logger()
    DIALECT = HOME_ACTUATOR
    PEER_KIND = "a board"
    COMPLAINT_LOG = "{board}: bad input: {code}: {detail}"
    REFUSAL_LOG = "refused board at {peer}: {detail}"
    NO_HELLO_LOG = "board at {peer} sent no HELLO within {t} s; closing"
    DEAD_LOG = "{board} silent for {t} s; dropping it"

    def __init__(self, home, link: Wire):
        self.home = home
        self.actuator: str | None = None
        self.relays = 0
        self._seq = 0
        self._pending: dict[int, tuple[int, bool, Deferred, IDelayedCall]] = {}
        super().__init__(link, home.clock, HELLO)
        self.expect_hello(None if link.connectionless else HELLO_TIMEOUT_S)

    def handlers(self) -> Handlers:
        alive: Row = {wire.Ping: self.answer_ping, wire.Pong: self.sign_of_life, wire.Err: self._on_err}
        return {
            HELLO: {wire.Hello: self._on_hello, wire.Meas: self._hello_first, wire.Ack: self._hello_first,
                    wire.Nak: self._hello_first, **alive},
            ACTIVE: {wire.Hello: self._hello_again, wire.Ack: self._on_ack, wire.Nak: self._on_nak,
                     wire.Meas: self._on_meas, **alive},
        }

    @property
    def name(self) -> str:
        return f"{self.actuator or 'unidentified board'} at {self.peer}"

    # ----------------------------------------------------------- the hello

    def no_hello_message(self, seconds: float) -> wire.Err:
        return wire.Err(wire.STATE)

    def log_fields(self) -> dict[str, Any]:
        return {"peer": self.peer, "board": self.name}

    # --------------------------------------------------------------- commands

    def command(self, relay: int, on: bool) -> Deferred:
        """``SET`` a relay; fires on ``ACK``, fails with ``CommandFailed``."""
        self._seq = (self._seq + 1) % (wire.MAX_SEQ + 1)
        seq = self._seq
        d: Deferred = Deferred()
        timer = self.clock.callLater(self.home.config.command_timeout_s, self._command_timeout, seq)
        self._pending[seq] = (relay, on, d, timer)
        self.send(wire.Set(seq, relay, on))
        return d

    def _settle(self, seq: int) -> tuple[int, bool, Deferred]:
        relay, on, d, timer = self._pending.pop(seq)
        cancel(timer)
        return relay, on, d

    def _command_timeout(self, seq: int) -> None:
        relay, on, d, _ = self._pending.pop(seq)
        self.log.warn("{board}: no ACK for SET {seq} (relay {relay}) within {t} s; dropping the board",
                      board=self.name, seq=seq, relay=relay, t=self.home.config.command_timeout_s)
        # Drop the board before failing the command, so that whatever the
        # home does next (its commitment) already counts these loads as unknown.
        self.abort()
        d.errback(CommandFailed(f"{self.actuator}: no acknowledgement within {self.home.config.command_timeout_s} s"))

    def _fail(self, pending: dict[int, tuple[int, bool, Deferred, IDelayedCall]], why: str) -> None:
        for relay, _on, d, timer in pending.values():
            cancel(timer)
            d.errback(CommandFailed(f"{self.actuator}: {why} before relay {relay} acknowledged"))

    # --------------------------------------------------------------- handlers

    def _on_hello(self, hello: wire.Hello) -> None:
        expected = self.home.config.actuators.get(hello.actuator)
        only = self.link.expected_id
        if expected is None:
            self.refuse(wire.UNKNOWN, f"actuator {hello.actuator!r} is not configured in this home")
        elif only is not None and hello.actuator != only:
            self.refuse(wire.UNKNOWN, f"{self.peer} is configured for actuator {only}, not {hello.actuator}")
        elif hello.version != wire.PROTOCOL_VERSION:
            self.refuse(wire.VERSION, f"actuator {hello.actuator} speaks version {hello.version}, "
                                      f"this home {wire.PROTOCOL_VERSION}")
        elif hello.relays != expected:
            self.refuse(wire.RELAYS, f"actuator {hello.actuator} has {hello.relays} relays, the home's config "
                                     f"says {expected}")
        else:
            self.introduced()
            self.actuator = hello.actuator
            self.relays = hello.relays
            self.state = ACTIVE
            self.send(wire.Welcome(wire.PROTOCOL_VERSION, self.home.config.heartbeat_s))
            self.start_heartbeat(self.home.config.heartbeat_s)
            self.home.board_connected(hello.actuator, self, hello.states)

    def _hello_first(self, message: Any) -> None:
        # A board that believes it is welcomed (the home restarted, or a
        # radio link was dropped): ask it to introduce itself again.
        raise ProtocolError(wire.HELLO_FIRST, f"{message.verb} before HELLO; say HELLO first")

    def _hello_again(self, hello: wire.Hello) -> None:
        if hello.actuator != self.actuator:
            raise self.unexpected(hello)
        # The same board again on the same link: it restarted (or its
        # failsafe switched relays) where no disconnection can be seen, as
        # on a serial line or a radio.  Its HELLO has the true states.
        self.log.info("{board} said HELLO again: taking its relay states afresh", board=self.name)
        self.stop_timers()
        pending, self._pending = self._pending, {}
        self.state = HELLO
        self._on_hello(hello)
        self._fail(pending, "restarted")

    def _on_ack(self, ack: wire.Ack) -> None:
        pending = self._pending.get(ack.seq)
        if pending is None or pending[:2] != (ack.relay, ack.on):
            raise ProtocolError(wire.STATE, f"ACK {ack.seq} matches no outstanding SET")
        self._settle(ack.seq)[2].callback(ack)

    def _on_nak(self, nak: wire.Nak) -> None:
        if nak.seq not in self._pending:
            raise ProtocolError(wire.STATE, f"NAK {nak.seq} matches no outstanding SET")
        relay, on, d = self._settle(nak.seq)
        self.log.warn("{board} refused SET {seq} (relay {relay} {state}): {code}", board=self.name, seq=nak.seq,
                      relay=relay, state="on" if on else "off", code=nak.code)
        d.errback(CommandFailed(f"{self.actuator} refused relay {relay}: {nak.code}", nak.code))

    def _on_meas(self, meas: wire.Meas) -> None:
        if len(meas.watts) != self.relays:
            raise ProtocolError(wire.FIELD, f"MEAS has {len(meas.watts)} readings; {self.actuator} has "
                                            f"{self.relays} relays; ignored")
        self.home.board_measured(self.actuator, meas.watts)

    def _on_err(self, err: wire.Err) -> None:
        self.log.warn("{board} reported an error: {code}", board=self.name, code=err.code)

    # ------------------------------------------------------------ the ending

    def disconnected(self, reason: Failure) -> None:
        if self.state == ACTIVE:
            self.log.warn("{board} disconnected: {reason}", board=self.name, reason=reason.getErrorMessage())

    def ended(self, was: str) -> None:
        # The loads become unknown before their commands fail (see above).
        # Also from ``hello``: a board that said HELLO again (it restarted)
        # and was refused is still the home's board until it is lost.
        if self.actuator is not None:
            self.home.board_lost(self.actuator, self)
        pending, self._pending = self._pending, {}
        self._fail(pending, "link closed")
