"""The home's link to the aggregator, seen from the home.

States:

``hello-sent``
    Connected; ``HELLO`` sent with the home's id, secret and versions.
    ``WELCOME`` naming a version the home did not offer, or another home, is
    answered ``ERROR`` (``version``, ``unknown-home``) and the link closed as
    after a refusal.
``active``
    ``WELCOME`` received: the home sends ``FLEX`` whenever its offers change,
    ``MEASURE`` every ``measure_period_s``, answers ``BUDGET`` and
    ``RELEASE`` with ``COMMIT`` once its relays have switched and what the
    commitment rests on (the budget, the switches it caused) is durable in
    the home's store (preceded by a new ``FLEX`` if switching changed its
    offers, and by a fresh ``MEASURE``, so that the aggregator's measured
    figure at the round's end reflects the switches), and runs heartbeats
    at the period the aggregator gave.  A store that cannot commit leaves
    the round unanswered: the aggregator counts the home cautiously.
``closed``
    Refused, dead (no line for three heartbeat periods) or disconnected;
    ``ClientService`` connects again with backoff (slower once after a
    refusal).  The home keeps its last budget until its event ends.
"""


from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from jeisson.link import AGGREGATOR_HOME, Handlers, LinkSession, Row, Wire
from jeisson.store import StoreError
from jeisson.wire import aggregator_home as wire

# An aggregator that accepts the connection but never answers HELLO is as
# good as absent: drop the link and let ClientService try again.
WELCOME_TIMEOUT_S = 10.0

HELLO_SENT = "hello-sent"
ACTIVE = "active"


class UplinkSession(LinkSession):
    log = Logger()
    DIALECT = AGGREGATOR_HOME
    PEER_KIND = "the aggregator"
    COMPLAINT_LOG = "aggregator at {peer}: bad input: {code}: {detail}"
    NO_HELLO_LOG = "the aggregator at {peer} did not answer HELLO within {t} s; dropping the link"
    DEAD_LOG = "the aggregator at {peer} is silent for {t} s; dropping the link"

    def __init__(self, home, link: Wire):
        self.home = home
        self._answering = 0
        super().__init__(link, home.clock, HELLO_SENT)
        self.expect_hello(WELCOME_TIMEOUT_S)
        config = home.config
        self.send(wire.Hello(config.id, config.secret, wire.PROTOCOL_VERSIONS))

    def handlers(self) -> Handlers:
        anytime: Row = {wire.Refused: self._on_refused, wire.Error: self._on_error, wire.Ping: self.answer_ping,
                   wire.Pong: self.sign_of_life}
        return {
            HELLO_SENT: {wire.Welcome: self._on_welcome, **anytime},
            ACTIVE: {wire.Budget: self._on_budget, wire.Release: self._on_release, wire.Ack: self.sign_of_life,
                     **anytime},
        }

    # ------------------------------------------------------------- handlers

    def _on_welcome(self, welcome: wire.Welcome) -> None:
        if welcome.version not in wire.PROTOCOL_VERSIONS:
            self._refuse_welcome(wire.VERSION, f"WELCOME names version {welcome.version}; "
                                               f"this home speaks {list(wire.PROTOCOL_VERSIONS)}")
            return
        if welcome.home != self.home.config.id:
            self._refuse_welcome(wire.UNKNOWN_HOME, f"WELCOME names home {welcome.home}; "
                                                    f"this is home {self.home.config.id}")
            return
        self.state = ACTIVE
        self.version = welcome.version
        self.introduced()
        self.log.info("registered with the aggregator at {peer} as {home} (protocol {v})", peer=self.peer,
                      home=welcome.home, v=welcome.version)
        self.start_heartbeat(welcome.heartbeat_s)
        self.repeat(self.home.config.measure_period_s, lambda: self.send(self.home.measurement()),
                    "could not send MEASURE to {peer}")
        self.home.aggregator_linked(self)
        flex = self.home.bid_if_changed(always=True)
        assert flex is not None
        self.send(flex)

    def _refuse_welcome(self, code: str, detail: str) -> None:
        # Shown in the home's status, as a refusal is: it will happen again.
        self.complain(code, detail)
        self.home.refused_by_aggregator(f"{code}: {detail}")
        self.close()

    def _on_refused(self, refused: wire.Refused) -> None:
        self.log.error("the aggregator at {peer} refused home {home}: {code}: {detail}", peer=self.peer,
                       home=self.home.config.id, code=refused.code, detail=refused.detail)
        self.home.refused_by_aggregator(f"{refused.code}: {refused.detail}")
        self.close()

    def _on_error(self, error: wire.Error) -> None:
        self.log.warn("the aggregator at {peer} reported an error: {code}: {detail}", peer=self.peer,
                      code=error.code, detail=error.detail)

    def _on_budget(self, budget: wire.Budget) -> None:
        self._answer(self.home.budget_received(budget))

    def _on_release(self, release: wire.Release) -> None:
        self._answer(self.home.release(release))

    # -------------------------------------------------------------- helpers

    def _answer(self, commitment: Deferred) -> None:
        self._answering += 1

        def durable(message):
            # Durable before acknowledged: a home killed after its COMMIT
            # resumes the budget and the switches the COMMIT speaks of.
            return self.home.durable().addCallback(lambda _: message)

        def commit(message):
            self._answering -= 1
            if self.state == ACTIVE:
                # The new bid first: the aggregator then knows, when this
                # commitment completes its round, that another should follow.
                self.loads_changed()
                self.send(self.home.measurement())
                self.send(message)

        def failed(failure):
            self._answering -= 1
            if failure.check(StoreError):
                self.log.error("not answering the aggregator: what the commitment rests on could not be stored: "
                               "{error}", error=failure.getErrorMessage())
            else:
                self.log.failure("could not answer the aggregator", failure)

        commitment.addCallback(durable).addCallbacks(commit, failed)

    def loads_changed(self) -> None:
        """Send a new bid if the offers changed (not while a commit is due)."""
        if self.state != ACTIVE or self._answering:
            return
        flex = self.home.bid_if_changed()
        if flex is not None:
            self.send(flex)

    # ------------------------------------------------------------ the ending

    def disconnected(self, reason: Failure) -> None:
        # ClientService sees this loss itself and connects again.
        if self.state == ACTIVE:
            self.log.warn("lost the aggregator at {peer}: {reason}; keeping the last budget until its event ends",
                          peer=self.peer, reason=reason.getErrorMessage())

    def ended(self, was: str) -> None:
        self.home.aggregator_unlinked(self)
