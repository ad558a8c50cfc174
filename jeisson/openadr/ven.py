"""The aggregator as an OpenADR 2.0b VEN: what it sends, when, and what it keeps.

``VEN`` talks to the VTN only through ``post(service, body) -> Deferred[bytes]``
(``jeisson.openadr.transport.HTTPTransport`` in service, a fake in tests)
and to the aggregator only through a ``Fleet`` (``jeisson.openadr.service``
adapts the ``Aggregator``); time comes from an injected clock.  Each call
of ``cycle()`` does what is due and fires when done (or fails with
``VTNError``: the service waits, longer each time, and calls again);
``next_wake()`` says when the next is due.

The conversation, as the 2.0b profile has it for a pull VEN::

    unregistered --oadrQueryRegistration--> (the VTN's id, its poll interval)
        --oadrCreatePartyRegistration--> registered (registrationID, venID: kept)
        --oadrRegisterReport (METADATA_TELEMETRY_USAGE)--> oadrRegisteredReport (report requests: kept)
        --oadrCreatedReport--> --oadrRequestEvent--> oadrDistributeEvent
    registered --oadrPoll, every poll_s--> nothing (oadrResponse), or
        oadrDistributeEvent  -> offers to the aggregator; once durable, oadrCreatedEvent (optIn/optOut)
        oadrCreateReport     -> requests kept; oadrCreatedReport
        oadrCancelReport     -> requests dropped; oadrCanceledReport
        oadrRegisterReport   -> oadrRegisteredReport (the VTN's own reports: none wanted)
        oadrRequestReregistration (as a poll's or any request's answer) -> registered again from the top
        oadrCancelPartyRegistration -> oadrCanceledPartyRegistration, then registered again
      (after anything but oadrResponse it polls again at once, a few times at most)
    every report request's granularity: the fleet's measured total sampled;
    every report-back duration: oadrUpdateReport of TELEMETRY_USAGE

**What is kept** (the aggregator's store, scope ``openadr``), so that a
restart resumes and nothing acknowledged is lost: the registration
(``registrationID``, ``venID``, the VTN's id and poll interval, and the
``vtn_url`` it was made with: another URL registers anew); each event seen,
with its modification number, the jeisson event ids it became, its opt, and
whether the VTN has the answer yet; the report requests in force.  An
event's offers are durable in the aggregator's store before its
``oadrCreatedEvent`` is sent; an answer the VTN did not take (down, slow) is
owed and sent again at the next cycle, never recomputed; one it refused (a
failure code) is logged and not sent again.  An event the aggregator refuses
(too long, over) is answered optOut; one the VTN no longer lists is
cancelled.
"""

import uuid
from collections.abc import Callable, Sequence
from typing import Any, Protocol

import attrs
from twisted.internet.defer import Deferred, gatherResults
from twisted.internet.interfaces import IReactorTime
from twisted.logger import Logger

from jeisson.aggregator.events import REFUSED as REFUSED_VERDICT
from jeisson.aggregator.events import Offer, Outcome
from jeisson.openadr import messages as m
from jeisson.openadr.config import OpenADRConfig
from jeisson.openadr.transport import MALFORMED, VTNError

SCOPE = "openadr"
REGISTRATION = "registration"
EVENT_PREFIX = "event:"
REPORT_PREFIX = "report:"
# Services of the 2.0b simple HTTP profile.
REGISTER_PARTY = "EiRegisterParty"
EVENT = "EiEvent"
REPORT = "EiReport"
POLL = "OadrPoll"
# Messages one poll may bring before the VEN waits for the next interval.
MAX_POLLS_PER_CYCLE = 8
REFUSED = "refused"  # a VTNError kind: the VTN answered with a failure code


class Fleet(Protocol):
    """What the VEN needs of the aggregator."""

    def offer_event(self, offer: Offer, source: str, note: str = "") -> "Deferred[Outcome]":
        """Offer an event (durable when it fires)."""

    def cancel_event(self, event_id: str) -> "Deferred[Any]":
        """Cancel a jeisson event (its next version), durable when it fires."""

    def durable(self) -> "Deferred[None]":
        """Fires once everything announced so far is durable."""

    def measured_w(self) -> float:
        """The fleet's measured total now (W)."""

    def must_run_w(self) -> float:
        """What the fleet's must-run loads alone draw (W)."""

    def kept(self) -> dict[str, Any]:
        """What the store holds under ``openadr`` (at start-up)."""

    def keep(self, key: str, value: Any) -> None:
        """Put ``(openadr, key)`` in the store (None: delete it)."""


@attrs.define
class SeenEvent:
    """An OpenADR event as the VEN last took it."""

    modification: int
    ids: tuple[str, ...]  # the jeisson event ids it became
    opt: str
    answered: bool  # the VTN has its oadrCreatedEvent
    respond: bool  # response_required == always
    request_id: str  # the oadrDistributeEvent it came in (for the answer)
    end: float
    description: str = "OK"

    def as_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


@attrs.define
class OwedReport:
    """A report request in force: the samples taken, when the next is due
    and when the readings go to the VTN."""

    request: m.ReportRequest
    next_sample: float
    next_send: float
    since: float
    samples: list[tuple[float, float]] = attrs.field(factory=list)

    def as_json(self) -> dict[str, Any]:
        r = self.request
        return {"report_request_id": r.report_request_id, "report_specifier_id": r.report_specifier_id,
                "r_ids": list(r.r_ids), "granularity_s": r.granularity_s, "report_back_s": r.report_back_s,
                "reading_type": r.reading_type, "interval_start": r.interval_start,
                "interval_duration_s": r.interval_duration_s, "since": self.since}


def _request_of(kept: dict[str, Any]) -> m.ReportRequest:
    return m.ReportRequest(kept["report_request_id"], kept["report_specifier_id"], tuple(kept["r_ids"]),
                           float(kept["granularity_s"]), float(kept["report_back_s"]), kept["reading_type"],
                           kept["interval_start"], kept["interval_duration_s"])


class Reregister(Exception):
    """The VTN asked this VEN to register again."""


class VEN:
    log = Logger()

    def __init__(self, config: OpenADRConfig, post: Callable[[str, bytes], "Deferred[bytes]"], fleet: Fleet,
                 clock: IReactorTime, encode: Callable[[m.Message], bytes] | None = None,
                 decode: Callable[[bytes], m.Message] | None = None, new_id: Callable[[], str] | None = None):
        """``encode``/``decode``: a message to bytes and back (signing and
        checking signatures, when ``[openadr] signatures``); by default
        ``messages.render`` and ``messages.parse``."""
        from jeisson.openadr import mapping

        self.mapping = mapping
        self.config = config
        self.post = post
        self.fleet = fleet
        self.clock = clock
        self.encode = encode or m.render
        self.decode = decode or m.parse
        self.new_id = new_id or (lambda: uuid.uuid4().hex)
        self.registration_id: str | None = None
        self.ven_id: str | None = config.ven_id
        self.vtn_id: str | None = None
        self.poll_s = config.poll_s
        self.events: dict[str, SeenEvent] = {}
        self.reports: dict[str, OwedReport] = {}
        self.next_poll = 0.0
        self.registered_at: float | None = None
        self.last_error: VTNError | None = None
        self._resume(fleet.kept())

    # ------------------------------------------------------------ state kept

    def _resume(self, kept: dict[str, Any]) -> None:
        now = self.clock.seconds()
        registration = kept.get(REGISTRATION)
        if registration and registration.get("vtn_url", self.config.vtn_url) != self.config.vtn_url:
            self.log.warn("OpenADR: the registration kept is with {old}, not [openadr] vtn_url {new}: registering "
                          "anew", old=registration.get("vtn_url"), new=self.config.vtn_url)
            registration = None
        if registration:
            self.registration_id = registration.get("registration_id")
            self.ven_id = registration.get("ven_id") or self.ven_id
            self.vtn_id = registration.get("vtn_id")
            self.poll_s = float(registration.get("poll_s") or self.config.poll_s)
        for key, value in kept.items():
            if key.startswith(EVENT_PREFIX):
                self.events[key[len(EVENT_PREFIX):]] = SeenEvent(
                    int(value["modification"]), tuple(value["ids"]), value["opt"], bool(value["answered"]),
                    bool(value["respond"]), value["request_id"], float(value["end"]), value.get("description", "OK"))
            elif key.startswith(REPORT_PREFIX):
                request = _request_of(value)
                granularity = max(request.granularity_s, 1.0)
                self.reports[request.report_request_id] = OwedReport(
                    request, now + granularity, now + max(request.report_back_s, granularity), now)
        if self.registration_id is not None:
            owed = sum(1 for e in self.events.values() if e.respond and not e.answered)
            self.log.info("OpenADR: resuming as venID {ven_id} (registrationID {registration_id}) with {vtn}: "
                          "{events} event(s) known, {owed} answer(s) owed, {reports} report(s) in force",
                          ven_id=self.ven_id, registration_id=self.registration_id, vtn=self.vtn_id,
                          events=len(self.events), owed=owed, reports=len(self.reports))

    def _keep_registration(self) -> None:
        self.fleet.keep(REGISTRATION, None if self.registration_id is None else {
            "registration_id": self.registration_id, "ven_id": self.ven_id, "vtn_id": self.vtn_id,
            "poll_s": self.poll_s, "vtn_url": self.config.vtn_url})

    def _keep_event(self, event_id: str) -> None:
        seen = self.events.get(event_id)
        self.fleet.keep(EVENT_PREFIX + event_id, None if seen is None else seen.as_json())

    def _keep_report(self, request_id: str) -> None:
        owed = self.reports.get(request_id)
        self.fleet.keep(REPORT_PREFIX + request_id, None if owed is None else owed.as_json())

    def status(self) -> dict[str, Any]:
        """For operators (the manhole's ``openadr.status()``): the
        registration, the last failure if the VTN fails now, the events
        taken and the reports owed."""
        return {
            "vtn_url": self.config.vtn_url, "ven_name": self.config.ven_name, "registered": self.registered,
            "ven_id": self.ven_id, "registration_id": self.registration_id, "vtn_id": self.vtn_id,
            "poll_s": self.poll_s, "failing": None if self.last_error is None else str(self.last_error),
            "events": {event_id: {"modification": seen.modification, "opt": seen.opt, "answered": seen.answered,
                                  "jeisson_events": list(seen.ids)} for event_id, seen in self.events.items()},
            "reports": {request_id: {"report": owed.request.report_specifier_id,
                                     "granularity_s": owed.request.granularity_s,
                                     "report_back_s": owed.request.report_back_s}
                        for request_id, owed in self.reports.items()},
        }

    # ------------------------------------------------------------ timing

    @property
    def registered(self) -> bool:
        return self.registration_id is not None

    def next_wake(self) -> float:
        """When ``cycle()`` has something to do next (epoch seconds)."""
        wake = self.next_poll if self.registered else self.clock.seconds()
        for owed in self.reports.values():
            wake = min(wake, owed.next_sample, owed.next_send)
        return wake

    def cycle(self) -> "Deferred[None]":
        """Do what is due: register, send what is owed, sample and send
        reports, poll.  Fails with ``VTNError`` (the service backs off)."""
        return Deferred.fromCoroutine(self._cycle())

    async def _cycle(self) -> None:
        try:
            if not self.registered:
                await self._register()
            await self._answer_owed()
            await self._reports_due()
            if self.clock.seconds() >= self.next_poll:
                self.next_poll = self.clock.seconds() + self.poll_s
                await self._poll()
        except Reregister:
            self._forget_registration()
            try:
                await self._register()
            except Reregister:
                raise VTNError(REFUSED, "the VTN asked this VEN to register again right after registering it: "
                                        "trying again later") from None

    # ------------------------------------------------------------ requests

    async def _request(self, service: str, message: m.Message) -> m.Message:
        body = self.encode(message)
        reply = await self.post(service, body)
        if not reply.strip():
            # OpenLEADR answers an oadrResponse with an empty body.
            return m.Response(m.EiResponse())
        try:
            answer = self.decode(reply)
        except (ValueError, m.MessageError) as e:
            raise VTNError(MALFORMED, f"{self.config.service_url(service)}: the reply to {message.NAME} cannot be "
                                      f"read: {e}") from None
        if isinstance(answer, m.RequestReregistration):
            self.log.warn("OpenADR: the VTN asked venID {ven_id} to register again", ven_id=self.ven_id)
            raise Reregister()
        response = getattr(answer, "response", None)
        if isinstance(response, m.EiResponse) and not response.ok:
            raise VTNError(REFUSED, f"{self.config.service_url(service)}: the VTN refused {message.NAME}: "
                                    f"{response.code} {response.description}")
        return answer

    def _expect(self, answer: m.Message, kind: type, sent: str) -> Any:
        if not isinstance(answer, kind):
            raise VTNError(MALFORMED, f"the VTN answered {sent} with {answer.NAME}, not {kind.NAME}")  # type: ignore[attr-defined]
        return answer

    # ------------------------------------------------------------ registration

    def _forget_registration(self) -> None:
        self.registration_id = None
        self._keep_registration()

    async def _register(self) -> None:
        query = self._expect(await self._request(REGISTER_PARTY, m.QueryRegistration(self.new_id())),
                             m.CreatedPartyRegistration, "oadrQueryRegistration")
        self.vtn_id = query.vtn_id
        created = self._expect(await self._request(REGISTER_PARTY, m.CreatePartyRegistration(
            self.new_id(), self.config.ven_name, registration_id=None, ven_id=self.ven_id,
            xml_signature=self.config.signatures, http_pull_model=True)),
            m.CreatedPartyRegistration, "oadrCreatePartyRegistration")
        if not created.registration_id or not created.ven_id:
            raise VTNError(REFUSED, f"the VTN {created.vtn_id} did not register ven_name {self.config.ven_name!r}: "
                                    f"is this VEN's certificate fingerprint {self.config.own_fingerprint} known to it?")
        self.registration_id = created.registration_id
        self.ven_id = created.ven_id
        self.vtn_id = created.vtn_id
        poll_s = created.poll_freq_s or query.poll_freq_s
        self.poll_s = float(poll_s) if poll_s else self.config.poll_s
        self._keep_registration()
        await self.fleet.durable()
        self.registered_at = self.clock.seconds()
        self.log.info("OpenADR: registered with VTN {vtn} as venID {ven_id} (registrationID {registration_id}); "
                      "polling every {poll_s:g} s", vtn=self.vtn_id, ven_id=self.ven_id,
                      registration_id=self.registration_id, poll_s=self.poll_s)
        await self._register_reports()
        answer = await self._request(EVENT, m.RequestEvent(self.new_id(), self._ven()))
        await self._handle(answer)
        self.next_poll = self.clock.seconds() + self.poll_s

    def _ven(self) -> str:
        assert self.ven_id is not None
        return self.ven_id

    async def _register_reports(self) -> None:
        register = self.mapping.telemetry_register(self._ven(), self.new_id(), self.clock.seconds(),
                                                   min_period_s=1, max_period_s=3600)
        answer = await self._request(REPORT, register)
        if isinstance(answer, m.RegisteredReport) and answer.report_requests:
            await self._accept_reports(answer.report_requests, answer.response.request_id)

    # ------------------------------------------------------------ polling

    async def _poll(self) -> None:
        for _ in range(MAX_POLLS_PER_CYCLE):
            answer = await self._request(POLL, m.Poll(self._ven()))
            if isinstance(answer, m.Response):
                return
            await self._handle(answer)

    async def _handle(self, answer: m.Message) -> None:
        if isinstance(answer, m.Response):
            return
        if isinstance(answer, m.DistributeEvent):
            await self._distribute(answer)
        elif isinstance(answer, m.CreateReport):
            await self._accept_reports(answer.report_requests, answer.request_id)
        elif isinstance(answer, m.CancelReport):
            for request_id in answer.report_request_ids:
                self.reports.pop(request_id, None)
                self._keep_report(request_id)
            await self._request(REPORT, m.CanceledReport(m.EiResponse(request_id=answer.request_id),
                                                         tuple(self.reports), self._ven()))
        elif isinstance(answer, m.RegisterReport):
            await self._request(REPORT, m.RegisteredReport(m.EiResponse(request_id=answer.request_id), (),
                                                           self._ven()))
        elif isinstance(answer, m.CancelPartyRegistration):
            self.log.warn("OpenADR: the VTN cancelled registration {registration_id}: registering again",
                          registration_id=answer.registration_id)
            await self._request(REGISTER_PARTY, m.CanceledPartyRegistration(
                m.EiResponse(request_id=answer.request_id), answer.registration_id, self._ven()))
            raise Reregister()
        else:
            self.log.warn("OpenADR: the VTN sent {name}, which a VEN does not take: ignored", name=answer.NAME)

    # ------------------------------------------------------------ events

    def _source(self) -> str:
        return f"OpenADR {self.vtn_id}"

    def _settings(self) -> Any:
        return self.mapping.Settings(levels_w=self.config.levels_w, capacity_w=self.config.capacity_w,
                                     opt=self.config.opt, ven_id=self._ven())

    async def _distribute(self, distribute: m.DistributeEvent) -> None:
        now = self.clock.seconds()
        settings = self._settings()
        waits: list[Deferred[Any]] = []
        offered: list[tuple[str, int]] = []  # (OpenADR event id, index in waits) of each limit offered
        changed: list[str] = []
        present = set()
        for event in distribute.events:
            present.add(event.event_id)
            seen = self.events.get(event.event_id)
            if seen is not None and event.modification_number <= seen.modification:
                continue  # known: its answer, if owed, goes with the others
            mapped = self.mapping.map_event(event, settings, known=seen.ids if seen is not None else (),
                                            must_run_w=self.fleet.must_run_w(), measured_w=self.fleet.measured_w())
            for offer in mapped.offers:
                if not offer.cancelled:
                    offered.append((event.event_id, len(waits)))
                waits.append(self.fleet.offer_event(offer, self._source(), f" (OpenADR event {event.event_id} "
                                                                          f"modification {event.modification_number})"))
            self.events[event.event_id] = SeenEvent(
                event.modification_number, tuple(mapped.ids), mapped.opt, False,
                event.response_required == "always", distribute.request_id, event.end, mapped.reason or "OK")
            changed.append(event.event_id)
            self.log.info("OpenADR event {event} modification {modification}: {opt} ({reason}); jeisson events "
                          "{ids}", event=event.event_id, modification=event.modification_number, opt=mapped.opt,
                          reason=mapped.reason, ids=", ".join(mapped.ids) or "none")
        # An event the VTN no longer lists is cancelled (2.0b: a VEN's
        # events are the ones in the latest distribute).
        for event_id in [e for e in self.events if e not in present]:
            seen = self.events.pop(event_id)
            changed.append(event_id)
            if seen.end > now:
                for jeisson_id in seen.ids:
                    waits.append(self.fleet.cancel_event(jeisson_id))
                if seen.ids:
                    self.log.info("OpenADR event {event} is no longer distributed: its jeisson events {ids} "
                                  "cancelled", event=event_id, ids=", ".join(seen.ids))
        for event_id in changed:
            self._keep_event(event_id)
        # The offers (and what is kept) durable before the VTN hears of them.
        outcomes = await gatherResults(waits, consumeErrors=True) if waits else []
        for event_id, index in offered:
            outcome = outcomes[index]
            seen = self.events.get(event_id)
            if isinstance(outcome, Outcome) and outcome.verdict == REFUSED_VERDICT and seen is not None \
                    and seen.opt == m.OPT_IN:
                # jeisson will not run it (too long, already over...): the VTN must not count on it.
                seen.opt = m.OPT_OUT
                seen.description = f"jeisson refused it: {outcome.detail}"
                self._keep_event(event_id)
                self.log.warn("OpenADR event {event}: jeisson refused it ({why}): answering optOut", event=event_id,
                              why=outcome.detail)
        await self.fleet.durable()
        await self._answer_owed()

    async def _answer_owed(self) -> None:
        owed = [(event_id, seen) for event_id, seen in self.events.items() if seen.respond and not seen.answered]
        if not owed:
            return
        # What the answers promise is in the store first (after a failed
        # commit, an answer owed waits until the store works again).
        await self.fleet.durable()
        responses = [m.EventResponse(event_id, seen.modification, seen.opt, seen.request_id,
                                     description=seen.description[:200])
                     for event_id, seen in owed]
        created = m.CreatedEvent(m.EiResponse(request_id=owed[0][1].request_id), self._ven(), tuple(responses))
        try:
            await self._request(EVENT, created)
        except VTNError as e:
            if e.kind != REFUSED:
                raise  # not delivered: owed, sent again at the next cycle
            # Delivered, and refused: sending it again would be refused again
            # (and hold up every poll behind it).
            self.log.error("OpenADR: {error}: the answers for {events} are not sent again", error=str(e),
                           events=", ".join(event_id for event_id, _ in owed))
        for event_id, seen in owed:
            seen.answered = True
            self._keep_event(event_id)

    # ------------------------------------------------------------ reports

    async def _accept_reports(self, requests: Sequence[m.ReportRequest], request_id: str) -> None:
        now = self.clock.seconds()
        for request in requests:
            granularity = max(request.granularity_s, 1.0)
            back = max(request.report_back_s, granularity)
            start = request.interval_start if request.interval_start and request.interval_start > now else now
            self.reports[request.report_request_id] = OwedReport(request, start + granularity, start + back, start)
            self._keep_report(request.report_request_id)
            self.log.info("OpenADR: the VTN asks for {specifier} every {back:g} s at {granularity:g} s granularity "
                          "(report request {request})", specifier=request.report_specifier_id, back=back,
                          granularity=granularity, request=request.report_request_id)
        await self.fleet.durable()
        await self._request(REPORT, m.CreatedReport(m.EiResponse(request_id=request_id), tuple(self.reports),
                                                    self._ven()))

    def sample(self) -> None:
        """Take the fleet's measured total for every report whose sample is
        due: the reading of the slot of granularity that just ended, dated
        at its start (slots missed meanwhile, the VEN busy or the VTN down,
        are carried forward by the report)."""
        now = self.clock.seconds()
        for owed in self.reports.values():
            granularity = max(owed.request.granularity_s, 1.0)
            if owed.next_sample <= now:
                while owed.next_sample + granularity <= now:
                    owed.next_sample += granularity
                owed.samples.append((owed.next_sample - granularity, self.fleet.measured_w()))
                owed.next_sample += granularity

    async def _reports_due(self) -> None:
        self.sample()
        now = self.clock.seconds()
        for request_id, owed in list(self.reports.items()):
            request = owed.request
            if owed.next_send > now:
                continue
            back = max(request.report_back_s, request.granularity_s, 1.0)
            # Periods missed (the VTN down) are caught up in one report.
            while owed.next_send + back <= now:
                owed.next_send += back
            end = owed.next_send
            update = self.mapping.telemetry_update(request, owed.samples, owed.since, end, now, self.new_id(),
                                                   self._ven())
            if any(report.intervals for report in update.reports):
                try:
                    await self._request(REPORT, update)
                except VTNError as e:
                    if e.kind != REFUSED:
                        raise  # not delivered: these readings go with the next report
                    self.log.error("OpenADR: {error}: these readings are dropped", error=str(e))
            # The last reading before the next period carries into it.
            before = [s for s in owed.samples if s[0] < end][-1:]
            owed.samples = before + [s for s in owed.samples if s[0] >= end]
            owed.since = end
            owed.next_send = end + back
            if request.interval_start is not None and request.interval_duration_s and \
                    now >= request.interval_start + request.interval_duration_s:
                del self.reports[request_id]
                self._keep_report(request_id)
