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
from jeisson.link import CLOSED, HOME_ACTUATOR, Handlers, Wire
from jeisson.sealed_link import SealedLinkSession
from jeisson.wire import board_auth, home_actuator
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
)

HELLO_SENT = "hello-sent"
ACTIVE = "active"
__all__ = ["ACTIVE", "CLOSED", "HELLO_SENT", "ActuatorSession", "session_factory"]


class ActuatorSession(SealedLinkSession):
    """The board's conversation with its home, as a small state machine.

    States:

    ``hello-sent``
        Entered on connection, after sending ``HELLO <id> <relays> 2 <states>
        <nonce>`` (version 1, without the nonce, for a board with ``key =
        none``).  In version 2 a ``WELCOME`` must prove the key (its MAC,
        with the session's keys derived from our HELLO, the home's id and
        nonce); one that does not is answered ``ERR auth``, changes nothing
        and is no sign of life.  A proven ``WELCOME`` is answered ``AUTH``.
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
    connection stays up.  In version 1 every line, valid or not, counts as a
    sign of life for the board's failsafe and for the heartbeat.

    In version 2, in every state, the board takes only ``WELCOME`` (which
    proves itself), ``REFUSED`` and ``ERR <code>`` without a MAC; every
    other line without a valid MAC and a counter above the last taken is
    answered ``ERR auth`` and ignored.  Only authenticated lines (and a
    proven ``WELCOME``) are signs of life: a board that reached a rogue
    listener goes to its safe states as if alone.  Failures are logged once
    a minute, counted (``Board.auth_failures``).
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
        self._key = board.config.key
        # Version 2: the session's channel once the home proved the key, and
        # the HELLO line it must answer; whether the line being handled is
        # authenticated (always in version 1).
        self._channel: board_auth.Channel | None = None
        self._auth_line = b""
        self._hello_line = b""
        self._authentic = True
        super().__init__(wire, board.clock, HELLO_SENT)

    def handlers(self) -> Handlers:
        return {
            HELLO_SENT: {Welcome: self._welcome, Refused: self._refused, Ping: self.answer_ping, Err: self._err},
            ACTIVE: {Set: self._set, Ping: self.answer_ping, Pong: self.sign_of_life, Err: self._err},
        }

    @property
    def speaks(self) -> int:
        return home_actuator.UNAUTHENTICATED_VERSION if self._key is None else home_actuator.PROTOCOL_VERSION

    def start(self) -> None:
        """The connection is up (or the home asked): introduce ourselves."""
        nonce = None if self._key is None else board_auth.new_nonce()
        hello = Hello(self._config.id, len(self._board.relays), self.speaks, self._board.states, nonce)
        # This HELLO carries every relay's true state, the board's own
        # switches (cold-load pickup, failsafe) too.
        self._board.unreported_switch = False
        self._channel = None  # a new session: the old one's lines are no longer taken
        line = home_actuator.serialize(hello)
        self._hello_line = line[:-1]
        # The wait first: the WELCOME may come within the sending.
        self.expect_hello(self._config.failsafe_after_s)
        self.link.send_line(line)

    # -- authentication

    def line_received(self, line: bytes) -> None:
        if self._key is None or self.state == CLOSED:
            super().line_received(line)
            return
        if self.open_sealed(line):
            return
        self._authentic = False
        if board_auth.is_plain(line):
            super().line_received(line)
        elif self.state == HELLO_SENT and board_auth.verb(line) == b"WELCOME":
            self._check_welcome(line)
        else:
            self._auth_failed("no MAC" if self._channel is not None else "no session: a line before a proven "
                                                                         "WELCOME")

    def _check_welcome(self, line: bytes) -> None:
        assert self._key is not None
        body = board_auth.welcome_body(line)
        try:
            welcome = home_actuator.parse_line(body)
        except ProtocolError:
            self._auth_failed("a WELCOME that cannot be read")
            return
        if not isinstance(welcome, Welcome) or welcome.home is None or welcome.nonce is None:
            self._auth_failed("a WELCOME without authentication (version 1)")
            return
        try:
            self._auth_line, channel = board_auth.accept_welcome(self._key, self._hello_line, line, welcome.home,
                                                                 welcome.nonce)
        except board_auth.AuthError as e:
            self._auth_failed(f"WELCOME: {e.reason}")
            return
        self._channel = channel
        self._authentic = True
        super().line_received(body)

    def _auth_failed(self, reason: str) -> None:
        count = self._board.auth_failures.failed(self.clock.seconds())
        if count is not None:
            self.log.warn("home {peer}: a line that proves nothing ({reason}); answering ERR auth, obeying nothing"
                          "{counted}", peer=self.peer, reason=reason,
                          counted=f" ({count} such lines since the last report)" if count > 1 else
                          " (further ones logged once a minute, counted)")
        self.link.send_line(home_actuator.serialize(Err(home_actuator.AUTH)))

    def send(self, message) -> None:
        line = home_actuator.serialize(message)
        sealed = self.seal(line) if self._channel is not None else line
        if sealed is not None:
            self.link.send_line(sealed)

    # -- every line

    def heard(self) -> None:
        if not self._authentic:
            return
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
        if self._key is None:  # in version 2 an ended session's lines prove nothing
            self._board.heard_from_home()

    # -- hello-sent

    def _welcome(self, welcome: Welcome) -> None:
        if welcome.version != self.speaks:
            self.log.error(
                "home {peer} speaks board protocol version {version}, we speak {ours}; closing",
                peer=self.peer,
                version=welcome.version,
                ours=self.speaks,
            )
            self._channel = None
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
        if self._channel is not None:
            # Our proof before any other line of ours; once active, since
            # the home may answer it at once with a SET.
            self.link.send_line(self._auth_line)
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
        if self._authentic:
            self.log.warn("home {peer} reports an error: {code}", peer=self.peer, code=err.code)
        else:
            # Version 2, a plain ERR: anyone on the path may send it, so it
            # is logged once a minute, counted.
            count = self._board.plain_errors.failed(self.clock.seconds())
            if count is not None:
                self.log.warn("home {peer} reports an error: {code} (unauthenticated; {count} such line(s) since the "
                              "last report, logged once a minute)", peer=self.peer, code=err.code, count=count)
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
