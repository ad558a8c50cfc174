"""The actuator's side of one home <-> actuator connection.

A session lives for one connection and reaches it only through the wire
interface of ``jeisson.link`` (``send_line``, ``close``, ``abort``,
``peer``), so the same machine runs over TCP, TLS or a serial radio.  The
board outlives the session: its failsafe keeps counting while disconnected.
"""

from collections.abc import Callable

from twisted.internet.task import LoopingCall
from twisted.logger import Logger

from jeisson.actuator.board import OK, Board
from jeisson.heartbeat import Heartbeat
from jeisson.link import Wire
from jeisson.wire import home_actuator
from jeisson.wire.errors import ProtocolError
from jeisson.wire.home_actuator import (
    Ack,
    Err,
    Hello,
    Meas,
    Nak,
    Ping,
    Pong,
    Refused,
    Set,
    Welcome,
    parse_line,
    serialize,
)

HELLO_SENT = "hello-sent"
ACTIVE = "active"
CLOSED = "closed"


class ActuatorSession:
    """The board's conversation with its home, as a small state machine.

    States:

    ``hello-sent``
        Entered on connection, after sending ``HELLO <id> <relays> 1 <states>``.
        ``WELCOME`` -> ``active``; ``REFUSED`` -> ``closed`` (logged as an
        error, connection closed); ``PING`` is answered, ``ERR`` logged;
        anything else is answered ``ERR state``.  A home that has not
        welcomed us within ``failsafe_after_s`` is dropped, so that the
        client service connects again instead of waiting forever.
    ``active``
        Welcomed.  A heartbeat pings the home every WELCOME-heartbeat seconds
        and aborts the connection after ``failsafe_after_s`` of silence; the
        meter sends ``MEAS`` every ``measure_period_s``.  ``SET`` is answered
        ``ACK`` or ``NAK``, ``PING`` with ``PONG``; ``PONG`` is only a sign of
        life, ``ERR`` is logged; the messages a home never sends (``HELLO``,
        ``ACK``, ``NAK``, ``MEAS``) and a second ``WELCOME``/``REFUSED`` are
        answered ``ERR state``.  ``ERR hello`` (the home has no session for
        us), here or in ``hello-sent``, sends a new ``HELLO`` and goes (back)
        to ``hello-sent``.
    ``closed``
        Refused, or the connection is lost: timers stopped, lines ignored.

    In every open state a malformed line is answered ``ERR <code>`` and the
    connection stays up, and every line, valid or not, counts as a sign of
    life for the board's failsafe and for the heartbeat.
    """

    log = Logger()

    def __init__(self, wire: Wire, board: Board):
        self._wire = wire
        self._board = board
        self._config = board.config
        self.state = HELLO_SENT
        self.heartbeat: Heartbeat | None = None
        self._meter: LoopingCall | None = None
        self._hello_timeout = None
        self._handlers = {
            HELLO_SENT: {Welcome: self._welcome, Refused: self._refused, Ping: self._ping, Err: self._err},
            ACTIVE: {Set: self._set, Ping: self._ping, Pong: self._pong, Err: self._err},
        }

    def start(self) -> None:
        """The connection is up: introduce ourselves."""
        hello = Hello(self._config.id, len(self._board.relays), home_actuator.PROTOCOL_VERSION, self._board.states)
        # This HELLO carries every relay's true state, failsafe switches too.
        self._board.failsafe_switched = False
        self._send(hello)
        self._hello_timeout = self._board.clock.callLater(self._config.failsafe_after_s, self._not_welcomed)

    # -- Session interface (called by LineLink)

    def line_received(self, line: bytes) -> None:
        self._board.heard_from_home()
        if self.heartbeat is not None:
            self.heartbeat.seen()
        if self.state == CLOSED:
            return
        if self.state == ACTIVE and self._board.failsafe_switched:
            # The failsafe switched relays while this session stayed up (the
            # home fell silent for less than the heartbeat's patience): the
            # home must learn the true states before it commands anything.
            self.log.warn("home {peer} is back after the failsafe switched relays; saying HELLO again",
                          peer=self._wire.peer)
            self._close_state()
            self.state = HELLO_SENT
            self.start()
        try:
            message = parse_line(line)
        except ProtocolError as error:
            self.log.warn(
                "home {peer}: bad line ({detail}); answering ERR {code}",
                peer=self._wire.peer,
                detail=error.detail,
                code=error.code,
            )
            self._send(Err(error.code))
            return
        handler = self._handlers[self.state].get(type(message))
        if handler is None:
            self._unexpected(message)
        else:
            handler(message)

    def line_too_long(self, error) -> None:
        # LineLink logs and closes; the board still says why, as firmware would.
        self._send(Err(home_actuator.LONG))

    def connection_lost(self, reason) -> None:
        if self.state != CLOSED:
            self.log.info("home {peer}: connection lost ({reason})", peer=self._wire.peer, reason=reason.value)
        self._close_state()

    # -- hello-sent

    def _welcome(self, welcome: Welcome) -> None:
        if welcome.version != home_actuator.PROTOCOL_VERSION:
            self.log.error(
                "home {peer} speaks board protocol version {version}, we speak {ours}; closing",
                peer=self._wire.peer,
                version=welcome.version,
                ours=home_actuator.PROTOCOL_VERSION,
            )
            self._send(Err(home_actuator.VERSION))
            self._close_state()
            self._wire.close()
            return
        self._cancel_hello_timeout()
        self.state = ACTIVE
        self.log.info(
            "actuator {actuator} welcomed by home {peer}, heartbeat {heartbeat_s} s",
            actuator=self._config.id,
            peer=self._wire.peer,
            heartbeat_s=welcome.heartbeat_s,
        )
        if 2 * welcome.heartbeat_s > self._config.failsafe_after_s:
            self.log.error(
                "home {peer} pings every {heartbeat_s} s, but this board's failsafe acts after {failsafe} s of"
                " silence: a healthy link would trip it; set the home's heartbeat_s to at most half of it",
                peer=self._wire.peer, heartbeat_s=welcome.heartbeat_s, failsafe=self._config.failsafe_after_s)
        self.heartbeat = Heartbeat(
            self._board.clock,
            interval=welcome.heartbeat_s,
            timeout=self._config.failsafe_after_s,
            send_ping=lambda n: self._send(Ping(n)),
            on_dead=self._home_dead,
        )
        self.heartbeat.start()
        self._start_meter()

    def _refused(self, refused: Refused) -> None:
        self.log.error(
            "home {peer} refused actuator {actuator}: {code}",
            peer=self._wire.peer,
            actuator=self._config.id,
            code=refused.code,
        )
        self._close_state()
        self._wire.close()

    def _not_welcomed(self) -> None:
        self._hello_timeout = None
        self.log.warn(
            "home {peer}: no WELCOME within {seconds} s; dropping the connection",
            peer=self._wire.peer,
            seconds=self._config.failsafe_after_s,
        )
        self._close_state()
        self._wire.abort()

    # -- active

    def _set(self, command: Set) -> None:
        result = self._board.switch(command.relay, command.on)
        if result == OK:
            self._send(Ack(command.seq, command.relay, command.on))
        else:
            self._send(Nak(command.seq, result))

    def _home_dead(self) -> None:
        self.log.warn(
            "home {peer}: silent for {seconds} s; dropping the connection",
            peer=self._wire.peer,
            seconds=self._config.failsafe_after_s,
        )
        self._close_state()
        self._wire.abort()

    def _start_meter(self) -> None:
        self._meter = LoopingCall(self._send_meas)
        self._meter.clock = self._board.clock
        # The first reading goes out at once: the home learns the load now.
        done = self._meter.start(self._config.measure_period_s, now=True)
        done.addErrback(lambda failure: self.log.failure("the meter loop stopped", failure))

    def _send_meas(self) -> None:
        # Caught here: an exception would stop the LoopingCall for good.
        try:
            self._send(Meas(self._board.readings(self._board.rng)))
        except Exception:
            self.log.failure("home {peer}: could not send MEAS", peer=self._wire.peer)

    # -- any open state

    def _ping(self, ping: Ping) -> None:
        self._send(Pong(ping.n))

    def _pong(self, pong: Pong) -> None:
        """A sign of life, already counted in line_received."""

    def _err(self, err: Err) -> None:
        # Never answered: two peers answering each other's ERR would loop.
        self.log.warn("home {peer} reports an error: {code}", peer=self._wire.peer, code=err.code)
        if err.code == home_actuator.HELLO_FIRST:
            # The home has no session for us (it restarted, dropped a radio
            # link, or opened its serial port after our HELLO and flushed
            # it): introduce ourselves again.
            self._close_state()
            self.state = HELLO_SENT
            self.start()

    def _unexpected(self, message) -> None:
        self.log.warn(
            "home {peer}: {verb} not expected in state {state}; answering ERR state",
            peer=self._wire.peer,
            verb=message.verb,
            state=self.state,
        )
        self._send(Err(home_actuator.STATE))

    # -- helpers

    def _send(self, message) -> None:
        self._wire.send_line(serialize(message))

    def _cancel_hello_timeout(self) -> None:
        if self._hello_timeout is not None and self._hello_timeout.active():
            self._hello_timeout.cancel()
        self._hello_timeout = None

    def _close_state(self) -> None:
        """Stop this connection's timers; the board's failsafe keeps running."""
        self.state = CLOSED
        self._cancel_hello_timeout()
        if self.heartbeat is not None:
            self.heartbeat.stop()
        if self._meter is not None and self._meter.running:
            self._meter.stop()
        self._meter = None


def session_factory(board: Board) -> Callable[[Wire], ActuatorSession]:
    """``make_session`` for ``LineLinkFactory``: a started session per connection."""

    def make_session(wire: Wire) -> ActuatorSession:
        session = ActuatorSession(wire, board)
        session.start()
        return session

    return make_session
