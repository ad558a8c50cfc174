"""The actuator's side of one home <-> actuator connection.

A session lives for one connection and reaches it only through the wire
interface of ``jeisson.link`` (``send_line``, ``close``, ``abort``,
``peer``), so the same machine runs over TCP, TLS or a serial radio.  The
board outlives the session: its failsafe keeps counting while disconnected.
"""

from collections.abc import Callable

from twisted.logger import Logger
from twisted.python.failure import Failure

from jeisson.actuator.board import OK, Board
from jeisson.link import CLOSED, HOME_ACTUATOR, Handlers, LinkSession, Wire
from jeisson.wire import home_actuator
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
)

HELLO_SENT = "hello-sent"
ACTIVE = "active"
__all__ = ["ACTIVE", "CLOSED", "HELLO_SENT", "ActuatorSession", "session_factory"]


class ActuatorSession(LinkSession):
    """The board's conversation with its home, as a small state machine.

    States:

    ``hello-sent``
        Entered on connection, after sending ``HELLO <id> <relays> 1 <states>``.
        ``WELCOME`` -> ``active``, and the home is in charge: a cold-load
        pickup still waiting is cancelled; but if the board switched a relay
        on its own since the ``HELLO``, it says ``HELLO`` again instead and
        stays in ``hello-sent``.  ``REFUSED`` -> ``closed`` (logged as an
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
        to ``hello-sent``; so does any line from the home once the board
        switched a relay on its own (its failsafe) while the session stayed
        up: the ``HELLO`` first, then the line is handled in ``hello-sent``.
    ``closed``
        Refused, the home silent, or the connection is lost: timers stopped.
        A line still arriving (a late ``PONG``) is not answered, but counts
        as a sign of life for the board's failsafe.

    In every open state a malformed line is answered ``ERR <code>`` and the
    connection stays up, and every line, valid or not, counts as a sign of
    life for the board's failsafe and for the heartbeat.
    """

    log = Logger()
    DIALECT = HOME_ACTUATOR
    PEER_KIND = "the home"
    COMPLAINT_LOG = "home {peer}: bad input: {code}: {detail}; answering ERR {code}"
    NO_HELLO_LOG = "home {peer}: no WELCOME within {t} s; dropping the connection"
    DEAD_LOG = "home {peer}: silent for {t} s; dropping the connection"

    def __init__(self, wire: Wire, board: Board):
        self._board = board
        self._config = board.config
        super().__init__(wire, board.clock, HELLO_SENT)

    def handlers(self) -> Handlers:
        return {
            HELLO_SENT: {Welcome: self._welcome, Refused: self._refused, Ping: self.answer_ping, Err: self._err},
            ACTIVE: {Set: self._set, Ping: self.answer_ping, Pong: self.sign_of_life, Err: self._err},
        }

    def start(self) -> None:
        """The connection is up (or the home asked): introduce ourselves."""
        hello = Hello(self._config.id, len(self._board.relays), home_actuator.PROTOCOL_VERSION, self._board.states)
        # This HELLO carries every relay's true state, the board's own
        # switches (cold-load pickup, failsafe) too.
        self._board.unreported_switch = False
        self.send(hello)
        self.expect_hello(self._config.failsafe_after_s)

    # -- every line

    def heard(self) -> None:
        self._board.heard_from_home()
        super().heard()
        if self.state == ACTIVE and self._board.unreported_switch:
            # The board switched relays on its own while this session stayed
            # up (the failsafe, the home silent for less than the heartbeat's
            # patience): the home must learn the true states before it
            # commands anything.
            self.log.warn("home {peer} is back after the board switched relays on its own; saying HELLO again",
                          peer=self.peer)
            self._hello_again()

    def late_line(self, line: bytes) -> None:
        self._board.heard_from_home()

    # -- hello-sent

    def _welcome(self, welcome: Welcome) -> None:
        if welcome.version != home_actuator.PROTOCOL_VERSION:
            self.log.error(
                "home {peer} speaks board protocol version {version}, we speak {ours}; closing",
                peer=self.peer,
                version=welcome.version,
                ours=home_actuator.PROTOCOL_VERSION,
            )
            self.send(Err(home_actuator.VERSION))
            self.close()
            return
        self.introduced()
        if self._board.unreported_switch:
            # A relay switched since our HELLO (the cold-load pickup, the
            # failsafe): this WELCOME took states that are no longer true.
            self.log.warn("home {peer} welcomed states the board has since changed on its own; saying HELLO again",
                          peer=self.peer)
            self._hello_again()
            return
        self._board.home_in_charge()
        self.state = ACTIVE
        self.log.info(
            "actuator {actuator} welcomed by home {peer}, heartbeat {heartbeat_s} s",
            actuator=self._config.id,
            peer=self.peer,
            heartbeat_s=welcome.heartbeat_s,
        )
        if 2 * welcome.heartbeat_s > self._config.failsafe_after_s:
            self.log.error(
                "home {peer} pings every {heartbeat_s} s, but this board's failsafe acts after {failsafe} s of"
                " silence: a healthy link would trip it; set the home's heartbeat_s to at most half of it",
                peer=self.peer, heartbeat_s=welcome.heartbeat_s, failsafe=self._config.failsafe_after_s)
        self.start_heartbeat(welcome.heartbeat_s, timeout=self._config.failsafe_after_s)
        # The first reading goes out at once: the home learns the load now.
        self.repeat(self._config.measure_period_s, lambda: self.send(Meas(self._board.readings(self._board.rng))),
                    "home {peer}: could not send MEAS", now=True)

    def _refused(self, refused: Refused) -> None:
        self.log.error(
            "home {peer} refused actuator {actuator}: {code}",
            peer=self.peer,
            actuator=self._config.id,
            code=refused.code,
        )
        self.close()

    # -- active

    def _set(self, command: Set) -> None:
        result = self._board.switch(command.relay, command.on)
        if result == OK:
            self.send(Ack(command.seq, command.relay, command.on))
        else:
            self.send(Nak(command.seq, result))

    # -- any open state

    def _err(self, err: Err) -> None:
        # Never answered: two peers answering each other's ERR would loop.
        self.log.warn("home {peer} reports an error: {code}", peer=self.peer, code=err.code)
        if err.code == home_actuator.HELLO_FIRST:
            # The home has no session for us (it restarted, dropped a radio
            # link, or opened its serial port after our HELLO and flushed
            # it): introduce ourselves again.
            self._hello_again()

    def _hello_again(self) -> None:
        self.stop_timers()
        self.state = HELLO_SENT
        self.start()

    def disconnected(self, reason: Failure) -> None:
        self.log.info("home {peer}: connection lost ({reason})", peer=self.peer, reason=reason.value)


def session_factory(board: Board) -> Callable[[Wire], ActuatorSession]:
    """``make_session`` for ``LineLinkFactory``: a started session per connection."""

    def make_session(wire: Wire) -> ActuatorSession:
        session = ActuatorSession(wire, board)
        session.start()
        return session

    return make_session
