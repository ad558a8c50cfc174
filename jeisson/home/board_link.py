"""A relay board's link, seen from the home.

States:

``hello``
    Connected; the board must say ``HELLO`` first.  An unknown id, an id
    other than the one the wire carries (``expected_id``: a radio address,
    a serial line), a version other than the one its key calls for
    (``auth``: version 1 from a board the home holds a key for; ``version``:
    version 2 from a ``key = none`` board), or a relay count that differs
    from the home's config is ``REFUSED`` and the link closed.  ``MEAS``,
    ``ACK`` and ``NAK``, and any line with a MAC (a board that believes it
    is welcomed), are answered ``ERR hello``.  No ``HELLO`` within
    ``HELLO_TIMEOUT_S`` closes the link, except on a connectionless wire,
    where a silent board is simply not there yet.  Version 1 (``key =
    none``) goes straight to ``active``.
``proving``
    Version 2: ``WELCOME`` sent, with the home's nonce and its proof; the
    board must answer ``AUTH`` proving the key.  Until then the board is
    nobody: the home's board of that id, if any, stays as it is (an
    impostor's ``HELLO`` changes nothing).  A wrong ``AUTH`` is ``REFUSED
    auth`` and the link closed, logged once a minute per board id
    (counted).  The ``HELLO`` timeout still runs.
``active``
    Welcomed (version 1) or proven (version 2): the home sends ``SET`` (each
    answered by ``ACK`` or ``NAK`` within ``command_timeout_s``, or the board
    is dropped as unhealthy), receives ``MEAS`` (one reading per relay, else
    ``ERR field`` and the readings are ignored), and both sides ``PING``.
    In version 2 every line either way carries a counter and a MAC
    (``jeisson.wire.board_auth``); a line without a valid one, or with a
    counter already seen, is answered ``ERR auth``, ignored, and is no sign
    of life.  A ``HELLO`` from the same board restarts it with its true
    relay states: at once in version 1; in version 2 once its ``AUTH``
    proves it, the session going on meanwhile (a wrong ``AUTH`` is answered
    ``ERR auth`` and the session kept).
``closed``
    The board's loads become unknown and count at their rated power until
    it says ``HELLO`` again.  Lines still arriving are ignored.
"""

import weakref
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from jeisson import observe
from jeisson.home.links import CommandFailed
from jeisson.link import CLOSED, HOME_ACTUATOR, TOO_MANY_BAD_LINES, Handlers, Row, Wire
from jeisson.sealed_link import SealedLinkSession
from jeisson.timers import cancel
from jeisson.wire import board_auth
from jeisson.wire import home_actuator as wire
from jeisson.wire.errors import ProtocolError

HELLO_TIMEOUT_S = 10.0
# Authentication failures are logged once per this interval per board id.
AUTH_LOG_INTERVAL_S = 60.0

HELLO = "hello"
PROVING = "proving"
ACTIVE = "active"

# Per home, per claimed board id: its authentication failures, across links
# (an impostor that connects again is counted, not logged again).
_failures: "weakref.WeakKeyDictionary[Any, dict[str, board_auth.Tally]]" = weakref.WeakKeyDictionary()
_plain_errors: "weakref.WeakKeyDictionary[Any, dict[str, board_auth.Tally]]" = weakref.WeakKeyDictionary()


class BoardSession(SealedLinkSession):
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
        # Version 2: the session's channel once proven; the handshake under
        # way (the WELCOME's offer and the HELLO it answers).
        self._channel: board_auth.Channel | None = None
        self._offer: tuple[board_auth.Offer, wire.Hello] | None = None
        self._raw_hello = b""
        # Whether the line being handled is authenticated (always in
        # version 1): only those are signs of life.
        self._authentic = True
        self._seq = 0
        self._pending: dict[int, tuple[int, bool, Deferred, IDelayedCall]] = {}
        super().__init__(link, home.clock, HELLO)
        self.expect_hello(None if link.connectionless else HELLO_TIMEOUT_S)

    def handlers(self) -> Handlers:
        alive: Row = {wire.Ping: self.answer_ping, wire.Pong: self.sign_of_life, wire.Err: self._on_err}
        return {
            # Before HELLO nothing but HELLO is taken: anything else is a bad
            # line (answered "ERR hello" within the link's budget, and
            # counted toward the cap on bad lines before HELLO).
            HELLO: {wire.Hello: self._on_hello, wire.Meas: self._hello_first, wire.Ack: self._hello_first,
                    wire.Nak: self._hello_first, wire.Ping: self._hello_first, wire.Pong: self._hello_first,
                    wire.Err: self._err_before_hello},
            PROVING: {wire.Hello: self._on_hello, wire.Err: self._on_err},
            ACTIVE: {wire.Hello: self._hello_again, wire.Ack: self._on_ack, wire.Nak: self._on_nak,
                     wire.Meas: self._on_meas, **alive},
        }

    # ------------------------------------------------------- authentication

    def line_received(self, line: bytes) -> None:
        if self.state == CLOSED:
            self.late_line(line)
            return
        if self._offer is not None and board_auth.verb(line) == b"AUTH":
            self._check_auth(line)
            return
        if self.open_sealed(line):
            return
        if self._channel is None and board_auth.looks_sealed(line):
            # A board in a session this home does not hold (the home
            # restarted, a radio link dropped): it must say HELLO again.
            # Within the link's budget, and counted before HELLO: a stranger
            # can send such lines at will.
            self._authentic = False
            self._bad_line(wire.HELLO_FIRST, "a sealed line in no session this home holds; say HELLO first")
            return
        # Plain: HELLO, ERR; or anything in version 1.
        self._authentic = self._channel is None and self.state == ACTIVE
        if board_auth.verb(line) == b"HELLO":
            self._raw_hello = line
        super().line_received(line)

    def heard(self) -> None:
        if self._authentic:
            super().heard()

    def send(self, message: Any) -> None:
        line = wire.serialize(message)
        plain = self._channel is None or (type(message) is wire.Err and message.code == wire.AUTH)
        sealed = line if plain else self.seal(line)
        if sealed is not None:
            self.link.send_line(sealed)

    def _auth_failed(self, reason: str, board: str | None = None) -> None:
        """A line or AUTH that does not prove the key: ``ERR auth``, and a
        log line once per interval per board id, counted."""
        board = board or self.actuator or "an unidentified board"
        tally = _failures.setdefault(self.home, {}).setdefault(board, board_auth.Tally(AUTH_LOG_INTERVAL_S))
        count = tally.failed(self.clock.seconds())
        if count is not None:
            self.log.warn("board {board} at {peer}: authentication failed ({reason}); nothing of it obeyed"
                          "{counted}", board=board, peer=self.peer, reason=reason,
                          counted=f" ({count} failures since the last report)" if count > 1 else
                          f" (further failures logged once per {AUTH_LOG_INTERVAL_S:g} s)")
        # Counted toward the address's lockout (jeisson.limits).
        self.authentication_failed()
        self.link.send_line(wire.serialize(wire.Err(wire.AUTH)))

    def _check_auth(self, line: bytes) -> None:
        assert self._offer is not None
        (offer, hello), self._offer = self._offer, None
        try:
            board_auth.check_auth(offer, line)
        except board_auth.AuthError as e:
            if self.state == ACTIVE:
                # A HELLO of that id on the established link, not proven:
                # the session goes on as before.
                self._auth_failed(e.reason, hello.actuator)
                return
            self._refuse_auth(hello.actuator, e.reason)
            return
        self._channel = offer.channel
        if self.state == ACTIVE:
            self._restarted(hello)
        else:
            self._establish(hello)

    def _refuse_auth(self, board: str, reason: str) -> None:
        tally = _failures.setdefault(self.home, {}).setdefault(board, board_auth.Tally(AUTH_LOG_INTERVAL_S))
        count = tally.failed(self.clock.seconds())
        if count is not None:
            self.log.warn("refused board {board} at {peer}: it did not prove its key ({reason}){counted}",
                          board=board, peer=self.peer, reason=reason,
                          counted=f" ({count} refusals since the last report)" if count > 1 else
                          f" (further refusals logged once per {AUTH_LOG_INTERVAL_S:g} s)")
        # Delayed and counted toward the address's lockout, as any failed
        # authentication (jeisson.limits); logged above, by the tally.
        self.refuse(wire.AUTH, reason, auth_failed=True, quiet=True)

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

    def _hello_refusal(self, hello: wire.Hello) -> tuple[str, str] | None:
        """Why ``hello`` cannot be welcomed (code, detail), or None."""
        config = self.home.config
        expected = config.actuators.get(hello.actuator)
        only = self.link.expected_id
        if expected is None:
            return wire.UNKNOWN, f"actuator {hello.actuator!r} is not configured in this home"
        if only is not None and hello.actuator != only:
            return wire.UNKNOWN, f"{self.peer} is configured for actuator {only}, not {hello.actuator}"
        keyed = config.board_keys.get(hello.actuator) is not None
        if keyed and hello.version == wire.UNAUTHENTICATED_VERSION:
            return wire.AUTH, (f"actuator {hello.actuator} speaks version 1, without authentication; this home holds "
                               f"its key and speaks version {wire.PROTOCOL_VERSION}")
        speaks = wire.PROTOCOL_VERSION if keyed else wire.UNAUTHENTICATED_VERSION
        if hello.version != speaks:
            why = "" if keyed else " (key = none: unauthenticated)"
            return wire.VERSION, f"actuator {hello.actuator} speaks version {hello.version}, this home {speaks}{why}"
        if hello.relays != expected:
            return wire.RELAYS, (f"actuator {hello.actuator} has {hello.relays} relays, the home's config says "
                                 f"{expected}")
        return None

    def _on_hello(self, hello: wire.Hello) -> None:
        refusal = self._hello_refusal(hello)
        if refusal is not None:
            self._offer = None
            self.refuse(*refusal)
            return
        key = self.home.config.board_keys.get(hello.actuator)
        if key is None:
            self._establish(hello)
            return
        self.state = PROVING  # first: the AUTH may come within the WELCOME's sending
        self._offer_welcome(key, hello)

    def _offer_welcome(self, key: bytes, hello: wire.Hello) -> None:
        """Version 2: WELCOME with a fresh nonce; the board is nobody until
        its AUTH proves the key."""
        config = self.home.config
        offer = board_auth.welcome(key, self._raw_hello, config.id, config.heartbeat_s, board_auth.new_nonce())
        self._offer = (offer, hello)
        self.link.send_line(offer.welcome)

    def _establish(self, hello: wire.Hello) -> None:
        """Welcomed (version 1) or proven (version 2): the board is the
        home's, with the relay states of its HELLO."""
        self.introduced()
        self.actuator = hello.actuator
        self.relays = hello.relays
        self.state = ACTIVE
        if self._channel is None:
            self.send(wire.Welcome(wire.UNAUTHENTICATED_VERSION, self.home.config.heartbeat_s))
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
        key = self.home.config.board_keys.get(hello.actuator)
        if key is None:
            self._restarted(hello)
            return
        # Version 2: only once it proves the key; until then the session
        # goes on, and a HELLO that cannot be welcomed changes nothing.
        refusal = self._hello_refusal(hello)
        if refusal is not None:
            raise ProtocolError(*refusal)
        self._offer_welcome(key, hello)

    def _restarted(self, hello: wire.Hello) -> None:
        self.log.info("{board} said HELLO again: taking its relay states afresh", board=self.name)
        self.stop_timers()
        pending, self._pending = self._pending, {}
        self.state = HELLO
        if self._channel is None:
            self._on_hello(hello)
        else:
            self._establish(hello)
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

    def _err_before_hello(self, err: wire.Err) -> None:
        """An ``ERR`` before any ``HELLO``: not answered (an error is never
        answered), logged within the link's budget, counted as a bad line."""
        guard = self.guard
        if guard is not None and not self.link.connectionless and guard.bad_line_before_hello():
            if guard.may_log():
                self.log.warn("{peer}: more than {n} bad lines before introducing itself; aborting the link "
                              "without a reply", peer=self.peer, n=guard.limits.max_bad_lines_before_hello)
            observe.connection_refused(self.listener_name, TOO_MANY_BAD_LINES)
            self.abort()
            return
        if self.may_log():
            self.log.warn("{peer} reported an error before HELLO: {code}", peer=self.peer, code=err.code)

    def _on_err(self, err: wire.Err) -> None:
        if self._authentic and self._channel is not None:
            self.log.warn("{board} reported an error: {code}", board=self.name, code=err.code)
            return
        if self._channel is None:
            # Version 1 (a lab board), or not proven yet: anyone on the
            # link may send it, line after line.
            if self.may_log():
                self.log.warn("{board} reported an error: {code}", board=self.name, code=err.code)
            return
        # Version 2, a plain ERR in a session: anyone on the path may send
        # it, so it is logged once a minute per board, counted.
        board = self.actuator or "an unidentified board"
        tally = _plain_errors.setdefault(self.home, {}).setdefault(board, board_auth.Tally(AUTH_LOG_INTERVAL_S))
        count = tally.failed(self.clock.seconds())
        if count is not None:
            self.log.warn("{board} reported an error: {code} (unauthenticated; {count} such line(s) since the last "
                          "report, logged once per {interval:g} s)", board=self.name, code=err.code, count=count,
                          interval=AUTH_LOG_INTERVAL_S)

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
