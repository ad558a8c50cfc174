"""One home's link, seen from the aggregator.

States:

``hello``
    Connected; the only message accepted is ``HELLO``.  No ``HELLO`` within
    ``HELLO_TIMEOUT_S`` closes the link.  Over TLS the home is who its
    certificate says (``jeisson.tls.peer_certificate_id``): a ``HELLO`` for
    another home is refused (``REFUSED identity-mismatch``) before its
    secret is even looked at.
``registering``
    Admitted, waiting for its registration to be durable
    (``Aggregator.durable()``) before ``WELCOME``: what the aggregator
    would send meanwhile is held and follows the ``WELCOME``; lines are
    handled as in ``active``.  If the registration cannot be stored, the
    home is refused (``REFUSED unavailable``) and tries again later.
    Without a store this state is left within the ``HELLO``'s call.
``active``
    Registered: ``FLEX``, ``COMMIT``, ``MEASURE``, ``PING``/``PONG`` and
    ``ERROR`` are handled, in the protocol version agreed in ``WELCOME``;
    heartbeats run both ways.
``closed``
    Refused, superseded by a newer link of the same home, dead (no line for
    three heartbeat periods) or disconnected.

A malformed line or a message out of place (a ``COMMIT`` for a round never
run, too) is answered with ``ERROR`` and logged with the peer; the link
stays up.  A line over the maximum closes this link only.
"""

from typing import Any

from twisted.logger import Logger
from twisted.python.failure import Failure

from jeisson.link import AGGREGATOR_HOME, Handlers, LinkSession, Row, Wire
from jeisson.tls import peer_certificate_id
from jeisson.wire import aggregator_home as wire
from jeisson.wire.errors import ProtocolError

HELLO_TIMEOUT_S = 10.0

HELLO = "hello"
REGISTERING = "registering"
ACTIVE = "active"

# The REFUSED code when the aggregator cannot store a registration.
UNAVAILABLE = "unavailable"
# The REFUSED code when a HELLO names another home than the connection's
# certificate.
IDENTITY_MISMATCH = wire.IDENTITY_MISMATCH


class HomeSession(LinkSession):
    log = Logger()
    DIALECT = AGGREGATOR_HOME
    PEER_KIND = "a home"
    COMPLAINT_LOG = "{peer} ({home}): bad input: {code}: {detail}"
    REFUSAL_LOG = "refused {peer} claiming to be home {home}: {code}: {detail}"
    NO_HELLO_LOG = "{peer} sent no HELLO within {t} s; closing"
    DEAD_LOG = "home {home} at {peer} silent for {t} s; dropping the link"
    SUPERSEDED_DETAIL = "a newer connection of this home replaced this one"

    def __init__(self, aggregator, link: Wire):
        self.aggregator = aggregator
        self.home_id: str | None = None
        self._held: list[Any] | None = None  # what waits for WELCOME, while registering
        super().__init__(link, aggregator.clock, HELLO)
        self.expect_hello(HELLO_TIMEOUT_S)

    def handlers(self) -> Handlers:
        active: Row = {wire.Hello: self._hello_again, wire.Flex: self._flex, wire.Commit: self._commit,
                  wire.Measure: self._measure, wire.Ping: self.answer_ping, wire.Pong: self.sign_of_life,
                  wire.Error: self._error}
        return {
            HELLO: {wire.Hello: self._hello, wire.Ping: self.answer_ping, wire.Pong: self.sign_of_life,
                    wire.Error: self._error},
            REGISTERING: active,
            ACTIVE: active,
        }

    def send(self, message: Any) -> None:
        if self._held is not None:
            self._held.append(message)
            return
        super().send(message)

    def supersede(self) -> None:
        self._held = None  # the home is told, WELCOME or not
        super().supersede()

    # ----------------------------------------------------------- the hello

    def no_hello_message(self, seconds: float) -> wire.Error:
        return wire.Error(wire.TIMEOUT, f"no HELLO within {seconds} s")

    def log_fields(self) -> dict[str, Any]:
        return {"peer": self.peer, "home": self.home_id or "not registered"}

    # ------------------------------------------------------------- handlers

    def _hello(self, hello: wire.Hello) -> None:
        certified = peer_certificate_id(self.link)  # None: a plaintext wire
        if certified is not None and certified != hello.home:
            self.refuse(IDENTITY_MISMATCH, f"this connection's certificate is for home {certified or '(none)'!r}, "
                                           f"not {hello.home!r}", home=hello.home)
            return
        common = set(hello.versions) & set(wire.PROTOCOL_VERSIONS)
        if not common:
            self.refuse(wire.VERSION, f"this aggregator speaks versions {list(wire.PROTOCOL_VERSIONS)}, "
                                      f"the home offered {list(hello.versions)}", home=hello.home)
            return
        refusal = self.aggregator.register(self, hello)
        if refusal is not None:
            self.refuse(*refusal, home=hello.home)
            return
        self.introduced()
        self.home_id = hello.home
        self.state = REGISTERING
        self._held = []
        version = max(common)
        registered = self.aggregator.durable().addCallbacks(self._registered, self._not_stored, callbackArgs=(version,))
        registered.addErrback(lambda failure: self.log.failure("{peer} ({home}): welcoming the home failed", failure,
                                                               **self.log_fields()))

    def _registered(self, _: None, version: int) -> None:
        """The registration is durable: WELCOME, then what was held."""
        if self.state != REGISTERING:
            return  # closed meanwhile
        held, self._held = self._held or [], None
        self.state = ACTIVE
        assert self.home_id is not None  # set as it was admitted
        self.send(wire.Welcome(version, self.home_id, self.aggregator.config.heartbeat_s))
        self.version = version
        self.start_heartbeat(self.aggregator.config.heartbeat_s)
        for message in held:
            self.send(message)

    def _not_stored(self, failure: Failure) -> None:
        if self.state != REGISTERING:
            return
        self._held = None
        self.log.error("home {home} at {peer}: its registration could not be stored ({why}); refusing it until "
                       "the store works again", why=failure.getErrorMessage(), **self.log_fields())
        self.refuse(UNAVAILABLE, "the aggregator cannot store its records now; try again later")

    def _hello_again(self, hello: wire.Hello) -> None:
        raise ProtocolError(wire.STATE, f"already registered as {self.home_id}")

    def _error(self, error: wire.Error) -> None:
        if not self.may_log():
            return  # a peer may send ERROR line after line: its log budget (jeisson.limits)
        self.log.warn("{peer} ({home}) reported an error: {code}: {detail}", code=error.code, detail=error.detail,
                      **self.log_fields())

    def _flex(self, flex: wire.Flex) -> None:
        self.aggregator.flex_received(self.home_id, flex)
        if self.version < 2:
            # Version 2 leaves it out: the bid comes back in the next BUDGET.
            self.send(wire.Ack(flex.bid))

    def _commit(self, commit: wire.Commit) -> None:
        # A COMMIT for a round never run raises ProtocolError: answered ERROR.
        self.aggregator.commit_received(self.home_id, commit)

    def _measure(self, measure: wire.Measure) -> None:
        self.aggregator.measure_received(self.home_id, measure)

    # ------------------------------------------------------------ the ending

    def disconnected(self, reason: Failure) -> None:
        if self.home_id is not None:
            self.log.info("home {home} at {peer} disconnected: {reason}", home=self.home_id, peer=self.peer,
                          reason=reason.getErrorMessage())

    def ended(self, was: str) -> None:
        self._held = None
        if self.home_id is not None:
            self.aggregator.session_closed(self.home_id, self)
