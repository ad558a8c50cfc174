"""The VEN as a Twisted service of the aggregator: a thin shell around ``ven.VEN``.

``OpenADRService`` calls ``VEN.cycle()`` when ``VEN.next_wake()`` says so,
on an injected clock.  A cycle that fails (the VTN down, slow, answering
with what cannot be read, a certificate refused) is logged at each
attempt, with what failed and why, and tried again after a full-jitter backoff
(``jeisson.backoff.FullJitter``: the poll interval at first, doubling up to
``[openadr] backoff_max_s``); the spell's end is logged too.  Nothing the
VTN sent before is undone: the events already accepted are the
aggregator's, and keep running whatever the VTN does.

``AggregatorFleet`` is what the VEN sees of the aggregator: its events
(``offer_event``, ``cancel_event``, ``durable``), its measured total (the
``MeasuredWatch``), its must-run loads (each home's must loads from its
last report; a home that cannot answer at what it is counted at), and its
store (scope ``openadr``).  ``openadr_service`` builds it all from
``[openadr]``.
"""

from typing import Any

from twisted.application.service import Service
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger
from twisted.python.failure import Failure

from jeisson.aggregator.events import Offer, Outcome
from jeisson.backoff import FullJitter
from jeisson.openadr import messages as m
from jeisson.openadr.config import OpenADRConfig
from jeisson.openadr.transport import HTTPTransport, VTNError
from jeisson.openadr.ven import SCOPE, VEN

SIGNATURE = "signature"  # a VTNError kind: a reply whose signature does not hold
# The shortest wait after a failure (full jitter may draw nearly 0).
MIN_RETRY_S = 0.5


class AggregatorFleet:
    """The ``ven.Fleet`` of a running ``Aggregator``."""

    def __init__(self, aggregator: Any):
        self.aggregator = aggregator
        self.memory: dict[str, Any] = {}  # without a store: kept while running only

    def offer_event(self, offer: Offer, source: str, note: str = "") -> "Deferred[Outcome]":
        return self.aggregator.offer_event(offer, source, note)

    def cancel_event(self, event_id: str) -> "Deferred[Any]":
        return self.aggregator.cancel_event(event_id)

    def durable(self) -> "Deferred[None]":
        return self.aggregator.durable()

    def measured_w(self) -> float:
        return float(self.aggregator.watch.total_w)

    def must_run_w(self) -> float:
        now = self.aggregator.clock.seconds()
        total = 0.0
        for record in self.aggregator.registry:
            offers = record.offers
            if record.connected and offers is not None:
                total += float((offers.rated * offers.low).sum())
            else:
                total += record.cautious_w(now=now)
        return total

    def kept(self) -> dict[str, Any]:
        store = self.aggregator.store
        return dict(store.state(SCOPE)) if store is not None else dict(self.memory)

    def keep(self, key: str, value: Any) -> None:
        store = self.aggregator.store
        if value is None:
            self.memory.pop(key, None)
            if store is not None:
                store.delete(SCOPE, key)
        else:
            self.memory[key] = value
            if store is not None:
                store.put(SCOPE, key, value)


def codec(config: OpenADRConfig, clock: IReactorTime) -> tuple[Any, Any]:
    """``(encode, decode)`` for the VEN: signed and checked with
    ``[openadr] signatures``, plain otherwise."""
    if not config.signatures:
        return m.render, m.parse
    from jeisson.openadr import signature

    guard = signature.ReplayGuard()

    def encode(message: m.Message) -> bytes:
        return signature.sign(m.render(message), config.key_pem, config.cert_pem, clock.seconds())

    def decode(body: bytes) -> m.Message:
        try:
            return signature.verify(body, clock.seconds(), expected_fingerprint=config.vtn_fingerprint,
                                    ca_pem=config.vtn_ca_pem, replay=guard)
        except signature.SignatureError as e:
            raise VTNError(SIGNATURE, f"the VTN's reply is not signed as it must be ([openadr] signatures): {e}") \
                from None

    return encode, decode


class OpenADRService(Service):
    """Runs a VEN's cycles on ``clock``, backing off while they fail."""

    log = Logger()
    name = "openadr"

    def __init__(self, ven: VEN, clock: IReactorTime, backoff: FullJitter | None = None,
                 transport: HTTPTransport | None = None):
        self.ven = ven
        self.clock = clock
        self.backoff = backoff or FullJitter(base_s=max(ven.poll_s, MIN_RETRY_S),
                                             cap_s=max(ven.config.backoff_max_s, ven.poll_s, MIN_RETRY_S))
        self.transport = transport
        self.failures = 0
        self.failing_since: float | None = None
        self._call: IDelayedCall | None = None
        self._running: Deferred[None] | None = None

    def startService(self) -> None:
        super().startService()
        config = self.ven.config
        self.log.info("OpenADR VEN {name} for VTN {url} (fingerprint of this VEN's certificate {fingerprint}; "
                      "signatures {signatures})", name=config.ven_name, url=config.vtn_url,
                      fingerprint=config.own_fingerprint, signatures="on" if config.signatures else "off")
        for warning in config.warnings:
            self.log.warn("{warning}", warning=warning)
        self._schedule(0.0)

    def stopService(self) -> "Deferred[None] | None":
        super().stopService()
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = None
        if self._running is not None:
            self._running.cancel()
        if self.transport is not None:
            return self.transport.close()
        return None

    def _schedule(self, delay: float) -> None:
        if not self.running:
            return
        if self._call is not None and self._call.active():
            self._call.cancel()
        self._call = self.clock.callLater(max(0.0, delay), self._run)

    def _run(self) -> None:
        self._call = None
        running = self._running = self.ven.cycle()
        running.addCallbacks(self._done, self._failed)
        running.addErrback(self._bug)

    def _done(self, _: None) -> None:
        self._running = None
        if self.failures:
            self.log.info("OpenADR: the VTN answers again after {n} failed attempt(s) over {s:.0f} s",
                          n=self.failures, s=self.clock.seconds() - (self.failing_since or self.clock.seconds()))
        self.failures = 0
        self.failing_since = None
        self.ven.last_error = None
        self._schedule(self.ven.next_wake() - self.clock.seconds())

    def _failed(self, failure: Failure) -> None:
        self._running = None
        if not self.running:
            return
        self.failures += 1
        if self.failing_since is None:
            self.failing_since = self.clock.seconds()
        wait = max(MIN_RETRY_S, self.backoff(self.failures))
        error = failure.value
        if isinstance(error, VTNError):
            self.ven.last_error = error
            self.log.error("OpenADR: {error} (attempt {n} failed; again in {wait:.1f} s; the events already "
                           "accepted keep running)", error=str(error), n=self.failures, wait=wait, kind=error.kind)
        else:
            self.log.failure("OpenADR: a cycle failed (attempt {n}; again in {wait:.1f} s)", failure,
                             n=self.failures, wait=wait)
        self._schedule(wait)

    def _bug(self, failure: Failure) -> None:
        self.log.failure("OpenADR: the VEN's loop failed", failure)
        self._schedule(max(MIN_RETRY_S, self.ven.poll_s))


def openadr_service(config: OpenADRConfig, aggregator: Any, reactor: Any) -> OpenADRService:
    """The VEN of ``aggregator``, on ``reactor``, from ``[openadr]``."""
    transport = HTTPTransport(config, reactor)
    encode, decode = codec(config, reactor)
    ven = VEN(config, transport.post, AggregatorFleet(aggregator), reactor, encode=encode, decode=decode)
    return OpenADRService(ven, reactor, transport=transport)
