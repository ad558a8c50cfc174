"""What every jeisson link is made of, whatever carries it.

A link is a *session* (the conversation's state machine) talking to a
*wire* (a transport in ``jeisson.transports``).  Sessions never see a
transport, so the same session serves TCP, TLS, a serial line or a radio.

``LinkSession`` is the skeleton the four sessions share (each end of
aggregator-home and of home-board): one dispatch table, the hello timeout,
the heartbeat, complaints, refusals and the idempotent close, written once.
"""

from collections.abc import Callable
from typing import Any, ClassVar
from typing import Protocol as TypingProtocol

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.internet.task import LoopingCall
from twisted.logger import Logger
from twisted.python.failure import Failure

from jeisson import observe
from jeisson.framing import LineTooLong
from jeisson.heartbeat import HEARTBEAT_MISSES, Heartbeat
from jeisson.limits import ConnectionGuard
from jeisson.timers import cancel, guarded
from jeisson.wire import aggregator_home, home_actuator
from jeisson.wire.errors import ProtocolError


class Session(TypingProtocol):
    """What a wire calls on its session."""

    def line_received(self, line: bytes) -> None: ...
    def line_too_long(self, error: LineTooLong) -> None: ...
    def connection_lost(self, reason) -> None: ...


class Wire(TypingProtocol):
    """What a session calls on its wire.

    ``peer``: how logs name the other end.  ``connectionless``: True where
    no connection can be seen to open or close (a serial line, a radio): a
    silent peer there is simply not there yet, so no hello timeout closes
    anything.  ``expected_id``: the one peer id this wire may carry (the
    actuator configured for a radio address or a serial line), or None.

    A wire may also carry ``guard``, a ``jeisson.limits.ConnectionGuard``
    (``LineLink`` does): the session then rate-limits its complaints, caps
    the bad lines before the peer's introduction and delays a failed
    authentication.  A wire without one (an in-memory test wire, the
    simulation's) is not limited.
    """

    peer: str
    connectionless: bool
    expected_id: str | None

    def send_line(self, data: bytes) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...


CLOSED = "closed"
# Why a link was dropped before its peer introduced itself (``jeisson.observe``).
TOO_MANY_BAD_LINES = "too many bad lines before hello"

# A state's row of the table: message class -> handler.
Row = dict[type, Callable[[Any], None]]
Handlers = dict[str, Row]


@attrs.frozen
class Dialect:
    """What the skeleton itself says and reads in one wire protocol.

    ``parse(line, version)`` and ``serialize(message, version)``: the
    protocol's codec (``version`` is the session's, agreed in its hello;
    the board protocol has one).  ``ping(n)``, ``pong(n)``: the heartbeat's
    messages.  ``error(code, detail)``: the line a complaint sends (the
    aggregator-home ``ERROR`` has a detail, the board ``ERR`` only a code);
    ``refusal(code, detail)``: the answer to an introduction refused.  The
    codes for a message out of place, a link superseded and a line too
    long, and the longest line.  ``auth_codes``: the refusal codes that are
    a failed authentication (an unknown id, a wrong credential): delayed,
    and counted toward the address's lockout (``jeisson.limits``).
    """

    parse: Callable[[bytes, int], Any]
    serialize: Callable[[Any, int], bytes]
    ping: Callable[[int], Any]
    pong: Callable[[int], Any]
    error: Callable[[str, str], Any]
    refusal: Callable[[str, str], Any]
    state: str
    superseded: str
    too_long: str
    max_line: int
    auth_codes: frozenset[str] = frozenset()


AGGREGATOR_HOME = Dialect(
    aggregator_home.parse_line, aggregator_home.serialize, aggregator_home.Ping, aggregator_home.Pong,
    aggregator_home.Error, aggregator_home.Refused, aggregator_home.STATE, aggregator_home.SUPERSEDED,
    aggregator_home.TOO_LONG, aggregator_home.MAX_LINE,
    # "identity-mismatch": a HELLO for another home than the connection's
    # certificate (jeisson.aggregator.home_link, a floor above this one).
    frozenset({aggregator_home.UNKNOWN_HOME, aggregator_home.BAD_CREDENTIAL, aggregator_home.IDENTITY_MISMATCH}))

HOME_ACTUATOR = Dialect(
    lambda line, version: home_actuator.parse_line(line),
    lambda message, version: home_actuator.serialize(message),
    home_actuator.Ping, home_actuator.Pong,
    lambda code, detail: home_actuator.Err(code), lambda code, detail: home_actuator.Refused(code),
    home_actuator.STATE, home_actuator.SUPERSEDED, home_actuator.LONG, home_actuator.MAX_LINE,
    # "auth": a board whose proof does not hold (jeisson.wire.board_auth).
    frozenset({home_actuator.UNKNOWN, "auth"}))


class LinkSession:
    """The skeleton of every link session, written once.

    A session is a small state machine over one wire.  Its states are
    strings (each session documents its own), plus ``closed``, the end
    shared by all.  A subclass declares:

    - ``handlers()``: the whole conversation as ONE table,
      ``{state: {message class: handler}}``.  A message that is not in the
      current state's row is answered as ``unexpected`` (``state`` error).
      A handler may raise ``ProtocolError(code, detail)``: the peer is
      answered with that error and the link stays up.
    - its wire protocol: ``DIALECT`` (``AGGREGATOR_HOME`` or
      ``HOME_ACTUATOR``), read and written in the session's ``version``;
    - how its logs name the peer (``log_fields()``) and its log texts
      (``COMPLAINT_LOG``, ``REFUSAL_LOG``, ``NO_HELLO_LOG``, ``DEAD_LOG``),
      formatted with those fields plus ``code``, ``detail`` or ``t``;
    - ``disconnected(reason)``: what it logs when the wire is lost while
      open; ``ended(was)``: called exactly once when the session closes,
      ``was`` the state it closed from; ``late_line(line)``: a line that
      arrives once closed (ignored by default).

    The skeleton owns the rest: dispatch, complaints, refusals, the wait for
    the peer's introduction (``expect_hello``: ``HELLO`` or ``WELCOME``), the
    heartbeat (dead after ``HEARTBEAT_MISSES`` periods of silence, or a
    session's own timeout), repeating jobs (``repeat``), and the idempotent
    close that stops every one of those timers.  A timer of a session's own
    (a command's timeout) is the subclass's to stop in ``ended``.

    Every line received while open, valid or not, is a sign of life for the
    heartbeat (``heard``).

    On a wire with a guard (``Wire``; every ``LineLink``), a stranger cannot
    make the session work for it: complaints (the error reply and its log
    line) are rate-limited per connection and per listener, the rest
    counted and summarised once an interval; past
    ``max_bad_lines_before_hello`` bad lines before the peer introduced
    itself (``introduced()``) the link is aborted without a reply (not on a
    connectionless wire, where a board that believes it is welcomed
    legitimately sends lines before its ``HELLO``); a refusal that is a
    failed authentication (``refuse(..., auth_failed=True)``, or a code in
    the dialect's ``auth_codes``) ends the session at once but is answered
    only after ``auth_failure_delay_s``, and counts toward the address's
    lockout.
    """

    log: ClassVar[Logger]
    DIALECT: ClassVar[Dialect]
    # The protocol version: 1 until the hello agrees on another.
    version: int = 1
    # How a complaint about the peer's unexpected message names the peer.
    PEER_KIND: ClassVar[str]
    COMPLAINT_LOG: ClassVar[str]
    REFUSAL_LOG: ClassVar[str] = ""
    NO_HELLO_LOG: ClassVar[str] = ""
    DEAD_LOG: ClassVar[str]
    SUPERSEDED_DETAIL: ClassVar[str] = "a newer connection replaced this one"

    def __init__(self, link: Wire, clock: IReactorTime, state: str):
        self.link = link
        self.peer = link.peer
        self.clock = clock
        self._handlers = self.handlers()
        self.state = state
        self.heartbeat: Heartbeat | None = None
        self._hello_timer: IDelayedCall | None = None
        self._loops: list[LoopingCall] = []
        self.guard: ConnectionGuard | None = getattr(link, "guard", None)
        self._introduced = False
        self._refusal: IDelayedCall | None = None  # a refusal waiting out its delay

    @property
    def state(self) -> str:
        return self._state

    @state.setter
    def state(self, state: str) -> None:
        self._state = state
        self._row: Row = self._handlers.get(state, {})  # what this state accepts, looked up once

    # ------------------------------------------------- what a session declares

    def handlers(self) -> Handlers:
        raise NotImplementedError

    def log_fields(self) -> dict[str, Any]:
        return {"peer": self.peer}

    @property
    def link_name(self) -> str:
        """What this link talks to, for ``jeisson.observe``: ``home``,
        ``aggregator``, ``board`` (the last word of ``PEER_KIND``)."""
        return self.PEER_KIND.rsplit(" ", 1)[-1]

    @property
    def listener_name(self) -> str:
        """The listener this link came through, for ``jeisson.observe``: its
        guard's name; without a guard (a serial line, a radio) named as the
        taps name theirs (``homes listener``, ``boards listener``)."""
        guard = self.guard
        return guard.listener.name if guard is not None else f"{self.link_name}s listener"

    def unexpected(self, message: Any) -> ProtocolError:
        return ProtocolError(self.DIALECT.state, f"{message.verb} is not expected from {self.PEER_KIND} "
                                         f"in state {self.state}")

    def no_hello_message(self, seconds: float) -> Any:
        """What to say to a peer that did not introduce itself in time
        before closing; None: nothing, the link is aborted."""
        return None

    def disconnected(self, reason: Failure) -> None:
        """The wire was lost while the session was open."""

    def ended(self, was: str) -> None:
        """The session closed (once), from state ``was``."""

    def late_line(self, line: bytes) -> None:
        """A line that arrived after the session closed."""

    # ------------------------------------------------------- Session interface

    def line_received(self, line: bytes) -> None:
        if self._state == CLOSED:
            self.late_line(line)
            return
        self.heard()
        try:
            message = self.DIALECT.parse(line, self.version)
            handler = self._row.get(type(message))
            if handler is None:
                raise self.unexpected(message)
            handler(message)
        except ProtocolError as error:
            self._bad_line(error.code, error.detail)

    def line_too_long(self, error: LineTooLong) -> None:
        # The wire closes itself after this; the session ends now.
        dialect = self.DIALECT
        observe.protocol_error(self.link_name, dialect.too_long)
        self.send(dialect.error(dialect.too_long, f"line longer than {dialect.max_line} bytes; closing"))
        self._closed()

    def connection_lost(self, reason: Failure) -> None:
        cancel(self._refusal)
        self._refusal = None
        if self.state != CLOSED:
            self.disconnected(reason)
        self._closed()

    # --------------------------------------------------------------- the parts

    def send(self, message: Any) -> None:
        self.link.send_line(self.DIALECT.serialize(message, self.version))

    def heard(self) -> None:
        """A line from the peer, valid or not: it is alive."""
        if self.heartbeat is not None:
            self.heartbeat.seen()

    def complain(self, code: str, detail: str) -> None:
        """Tell the peer its last line was wrong; the link stays up.  With a
        guard, only within its budget (the rest is counted and summarised)."""
        observe.protocol_error(self.link_name, code)
        if self.guard is not None and not self.guard.error():
            return
        self.log.warn(self.COMPLAINT_LOG, code=code, detail=detail, **self.log_fields())
        self.send(self.DIALECT.error(code, detail))

    def refuse(self, code: str, detail: str, auth_failed: bool | None = None, quiet: bool = False,
               **fields: Any) -> None:
        """Refuse the peer's introduction and close; ``fields`` complete or
        override ``log_fields()`` for the log line.

        ``auth_failed``: whether the refusal is a failed authentication (a
        wrong secret or key, an unknown id, a certificate naming another id);
        None: if ``code`` is one of the dialect's ``auth_codes``.  With a
        guard, such a refusal ends the session now, is reported to the guard
        (the address's lockout) and answered after its delay; the log line
        is within the guard's budget.  ``quiet``: the session logs the
        refusal its own way (a tally once an interval).
        """
        guard = self.guard
        observe.connection_refused(self.listener_name, code)
        if not quiet and (guard is None or guard.error()):
            self.log.warn(self.REFUSAL_LOG, code=code, detail=detail, **{**self.log_fields(), **fields})
        if auth_failed is None:
            auth_failed = code in self.DIALECT.auth_codes
        delay = self.authentication_failed(code) if auth_failed else 0.0
        if delay <= 0:
            self.send(self.DIALECT.refusal(code, detail))
            self.close()
            return
        line = self.DIALECT.serialize(self.DIALECT.refusal(code, detail), self.version)
        self._closed()  # nothing the peer says now is heard
        self._refusal = self.clock.callLater(delay, self._refuse_late, line)

    def may_log(self) -> bool:
        """Whether one more line about this peer fits its budget (a wire
        without a guard: always).  For a session's own log lines that a peer
        can cause at will (an ``ERROR`` it reports, line after line)."""
        return self.guard is None or self.guard.may_log()

    def authentication_failed(self, reason: str = "auth") -> float:
        """The peer failed to authenticate (without being refused here: a
        line whose MAC does not hold): counted toward its address's lockout.
        Returns the delay its answer should wait (0 on a wire without a
        guard).  ``refuse`` calls it for a refusal that is one, with its
        code as the ``reason`` (``jeisson.observe``)."""
        observe.auth_failed(self.listener_name, reason)
        return self.guard.auth_failed() if self.guard is not None else 0.0

    def supersede(self) -> None:
        """A newer link of the same peer replaced this one (the accepting side)."""
        self.send(self.DIALECT.error(self.DIALECT.superseded, self.SUPERSEDED_DETAIL))
        self.close()

    def answer_ping(self, ping: Any) -> None:
        self.send(self.DIALECT.pong(ping.n))

    def sign_of_life(self, message: Any) -> None:
        """A message that only says the peer is alive (counted in ``heard``)."""

    def expect_hello(self, seconds: float | None) -> None:
        """(Re)start the wait for the peer's introduction; None: no limit."""
        cancel(self._hello_timer)
        self._hello_timer = None
        if seconds is not None:
            self._hello_timer = self.clock.callLater(seconds, self._no_hello, seconds)

    def introduced(self) -> None:
        """The peer introduced itself: stop waiting (and counting its bad lines)."""
        self._introduced = True
        cancel(self._hello_timer)
        self._hello_timer = None

    def start_heartbeat(self, interval: float, timeout: float | None = None) -> None:
        """Ping every ``interval``; dead after ``timeout`` of silence
        (``HEARTBEAT_MISSES`` intervals unless given)."""
        if self.heartbeat is not None:
            self.heartbeat.stop()
        patience = HEARTBEAT_MISSES * interval if timeout is None else timeout
        ping = self.DIALECT.ping
        self.heartbeat = Heartbeat(self.clock, interval, patience, lambda n: self.send(ping(n)), self._dead)
        self.heartbeat.start()

    def repeat(self, period: float, job: Callable[[], None], failure_log: str, now: bool = False) -> None:
        """Run ``job`` every ``period`` while the session is in its state;
        an exception is logged (``failure_log`` with ``log_fields()``) and
        the job runs again next time."""

        loop = LoopingCall(guarded(job, self.log, failure_log, **self.log_fields()))
        loop.clock = self.clock
        self._loops.append(loop)
        loop.start(period, now=now).addErrback(lambda failure: self.log.failure("a repeating job stopped",
                                                                                failure))

    def stop_timers(self) -> None:
        """Stop the hello wait, the heartbeat and the repeating jobs (the
        session starts over, or ends)."""
        cancel(self._hello_timer)
        self._hello_timer = None
        if self.heartbeat is not None:
            self.heartbeat.stop()
        loops, self._loops = self._loops, []
        for loop in loops:
            if loop.running:
                loop.stop()

    def close(self) -> None:
        """Close the wire once what was sent is written, and end (a
        ``LineLink`` aborts it if the peer has not taken it within its
        ``close_grace_s``)."""
        self.link.close()
        self._closed()

    def abort(self) -> None:
        """Drop the wire now (a dead or hostile peer), and end."""
        self.link.abort()
        self._closed()

    # --------------------------------------------------------------- internals

    def _bad_line(self, code: str, detail: str) -> None:
        guard = self.guard
        if (guard is not None and not self._introduced and not self.link.connectionless
                and guard.bad_line_before_hello()):
            if guard.may_log():
                self.log.warn("{peer}: more than {n} bad lines before introducing itself; aborting the link without "
                              "a reply", peer=self.peer, n=guard.limits.max_bad_lines_before_hello)
            observe.protocol_error(self.link_name, code)
            observe.connection_refused(self.listener_name, TOO_MANY_BAD_LINES)
            self.abort()
            return
        self.complain(code, detail)

    def _refuse_late(self, line: bytes) -> None:
        self._refusal = None
        self.link.send_line(line)
        self.link.close()

    def _no_hello(self, seconds: float) -> None:
        self._hello_timer = None
        if self.may_log():
            self.log.warn(self.NO_HELLO_LOG, t=seconds, **self.log_fields())
        message = self.no_hello_message(seconds)
        if message is None:
            self.abort()
        else:
            self.send(message)
            self.close()

    def _dead(self) -> None:
        assert self.heartbeat is not None
        self.log.warn(self.DEAD_LOG, t=self.heartbeat.timeout, **self.log_fields())
        self.abort()

    def _closed(self) -> None:
        if self.state == CLOSED:
            return
        was, self.state = self.state, CLOSED
        self.stop_timers()
        self.ended(was)
