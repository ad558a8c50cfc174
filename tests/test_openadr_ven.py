"""The VEN: ``[openadr]``, its HTTP transport, and its state machine and service on a Clock.

The state machine runs against a fake VTN built from ``jeisson.openadr.messages``
(parsed and rendered as on the wire) and a fake fleet whose ``durable`` the
tests hold; the transport runs against twisted.web servers on loopback with
real TLS (the right VTN, one with a stranger's certificate, one that never
answers, one that answers too much).
"""

import attrs
import pytest
from twisted.internet import defer, reactor, ssl
from twisted.internet.defer import Deferred, succeed
from twisted.internet.task import Clock
from twisted.trial import unittest
from twisted.web import resource, server

from jeisson.aggregator.events import ADDED, CANCELLED, REFUSED, Offer, Outcome
from jeisson.config import ConfigError, IniFile
from jeisson.openadr import messages as m
from jeisson.openadr.config import OpenADRConfig, read_openadr
from jeisson.openadr.signature import fingerprint
from jeisson.openadr.transport import CERTIFICATE, DOWN, HTTP, SLOW, TOO_BIG, HTTPTransport, VTNError
from tests.openadr_vtn import make_credentials

# ------------------------------------------------------------------ credentials


@pytest.fixture(scope="module")
def oadr(credentials, tmp_path_factory):
    return make_credentials(str(tmp_path_factory.mktemp("oadr")), credentials.directory)


def section(oadr, **keys) -> str:
    values = {"vtn_url": "https://127.0.0.1:8443/OpenADR2/Simple/2.0b", "ven_name": "jeisson",
              "cert": oadr["aggregator"], "key": oadr["aggregator-key"], "vtn_ca": oadr["vtn-ca"],
              "levels_kw": "1: 9, 2: 6, 3: 3"}
    values.update(keys)
    return "[openadr]\n" + "".join(f"{k} = {v}\n" for k, v in values.items() if v is not None)


def read(text: str) -> OpenADRConfig | None:
    ini = IniFile(text, "agg.ini")
    config = read_openadr(ini)
    ini.check_unknown()
    return config


# ------------------------------------------------------------------ config


def test_openadr_is_off_without_the_section_or_when_disabled(oadr):
    assert read("") is None
    assert read(section(oadr, enabled="no")) is None
    with pytest.raises(ConfigError, match=r"\[openadr\] vtn_urll: unknown key"):
        read(section(oadr, enabled="no", vtn_urll="x"))


def test_a_full_section_is_read_with_its_files(oadr):
    config = read(section(oadr, vtn_fingerprint="1b:8e:ca:e2:59:66:94:ad:37:4d", capacity_kw="12", opt="out",
                          poll_s="3", timeout_s="2", max_reply_kib="64", signatures="no"))
    assert config is not None
    assert config.levels_w == {1: 9000.0, 2: 6000.0, 3: 3000.0}
    assert config.capacity_w == 12000.0
    assert config.vtn_fingerprint == "1B:8E:CA:E2:59:66:94:AD:37:4D"
    assert (config.opt, config.poll_s, config.timeout_s, config.max_reply_bytes, config.signatures) == \
        ("out", 3.0, 2.0, 65536, False)
    assert config.vtn_name == "127.0.0.1"
    assert config.service_url("OadrPoll") == "https://127.0.0.1:8443/OpenADR2/Simple/2.0b/OadrPoll"
    with open(oadr["aggregator"], "rb") as f:
        assert config.own_fingerprint == fingerprint(f.read())


@pytest.mark.parametrize("keys, error", [
    ({"vtn_url": "http://vtn/OpenADR2"}, r"\[openadr\] vtn_url: expected an https:// URL"),
    ({"ven_name": None}, r"\[openadr\] ven_name: missing key"),
    ({"cert": "/nonexistent.pem"}, r"\[openadr\] cert: /nonexistent.pem: no such file"),
    ({"vtn_ca": "AGG"}, r"\[openadr\] vtn_ca: .*aggregator.pem: not a CA certificate"),
    ({"key": "VTNKEY"}, r"\[openadr\] key: .*vtn.key: not the key of \[openadr\] cert"),
    ({"cert": "VTN", "key": "VTNKEY"}, r"\[openadr\] cert: .*vtn.pem: not a client certificate"),
    ({"vtn_fingerprint": "AB:CD"}, r"\[openadr\] vtn_fingerprint: 'AB:CD' is not an OpenADR fingerprint"),
    ({"levels_kw": "1: 5, 2: 7"}, r"\[openadr\] levels_kw: a higher level must not allow more"),
    ({"levels_kw": "one: 5"}, r"\[openadr\] levels_kw: expected LEVEL: KW pairs"),
    ({"levels_kw": None}, r"\[openadr\] levels_kw: give levels_kw .* or capacity_kw"),
    ({"opt": "maybe"}, r"\[openadr\] opt: expected one of auto, in, out"),
    ({"poll_s": "0"}, r"\[openadr\] poll_s: expected a number from 0.1"),
])
def test_bad_settings_are_refused_naming_the_file_and_key(oadr, keys, error):
    replace = {"AGG": oadr["aggregator"], "VTN": oadr["vtn"], "VTNKEY": oadr["vtn-key"]}
    keys = {k: replace.get(v, v) if v is not None else None for k, v in keys.items()}
    with pytest.raises(ConfigError, match="agg.ini: " + error):
        read(section(oadr, **keys))


def test_the_aggregator_config_carries_it(oadr, credentials):
    from jeisson.aggregator.config import config_from_string

    text = "[aggregator]\nlisten = tcp:0\n[home:h1]\nsecret = s\n" + credentials.aggregator_tls() + section(oadr)
    assert config_from_string(text, "agg.ini").openadr is not None
    assert config_from_string(text.split("[openadr]")[0], "agg.ini").openadr is None


# ------------------------------------------------------------------ transport (loopback TLS)


class Reply(resource.Resource):
    isLeaf = True

    def __init__(self, body=b"<ok/>", code=200, hang=False):
        super().__init__()
        self.body, self.code, self.hang = body, code, hang
        self.seen: list[tuple[bytes, bytes]] = []

    def render_POST(self, request):
        self.seen.append((request.path, request.content.read()))
        if self.hang:
            return server.NOT_DONE_YET
        request.setResponseCode(self.code)
        return self.body


class TransportTests(unittest.TestCase):
    """Real sockets on 127.0.0.1 and real TLS; each server stops at the end."""

    @pytest.fixture(autouse=True)
    def _files(self, oadr, credentials):
        self.oadr = oadr
        self.ven_ca = credentials.ca

    def serve(self, reply: Reply, cert="vtn", require_client=True) -> int:
        with open(self.oadr[cert], "rb") as c, open(self.oadr[f"{cert}-key"], "rb") as k:
            private = ssl.PrivateCertificate.loadPEM(c.read() + k.read())
        with open(self.ven_ca, "rb") as f:
            ven_ca = ssl.Certificate.loadPEM(f.read())
        options = private.options(ven_ca) if require_client else private.options()
        port = reactor.listenSSL(0, server.Site(reply), options, interface="127.0.0.1")
        self.addCleanup(port.stopListening)
        return port.getHost().port

    def transport(self, port: int, **keys) -> HTTPTransport:
        config = read(section(self.oadr, vtn_url=f"https://127.0.0.1:{port}/OpenADR2/Simple/2.0b", **keys))
        transport = HTTPTransport(config, reactor)
        self.addCleanup(transport.close)
        return transport

    async def failure(self, d: Deferred, kind: str) -> VTNError:
        try:
            await d
        except VTNError as e:
            self.assertEqual(e.kind, kind, str(e))
            return e
        raise AssertionError("the request did not fail")

    @defer.inlineCallbacks
    def test_a_post_reaches_the_service_with_the_client_certificate(self):
        reply = Reply(b"<answer/>")
        port = self.serve(reply)
        with open(self.oadr["vtn"], "rb") as f:
            vtn_fp = fingerprint(f.read())
        body = yield self.transport(port, vtn_fingerprint=vtn_fp).post("OadrPoll", b"<poll/>")
        self.assertEqual(body, b"<answer/>")
        self.assertEqual(reply.seen, [(b"/OpenADR2/Simple/2.0b/OadrPoll", b"<poll/>")])

    @defer.inlineCallbacks
    def test_a_vtn_that_is_down(self):
        from jeisson.demo import free_ports

        (port,) = free_ports(1)  # nothing listens there
        e = yield defer.Deferred.fromCoroutine(self.failure(self.transport(port).post("OadrPoll", b"x"), DOWN))
        self.assertIn("connection refused", str(e))

    @defer.inlineCallbacks
    def test_a_slow_vtn_is_abandoned_after_timeout_s(self):
        port = self.serve(Reply(hang=True))
        e = yield defer.Deferred.fromCoroutine(self.failure(
            self.transport(port, timeout_s="0.5").post("OadrPoll", b"x"), SLOW))
        self.assertIn("no reply within 0.5 s ([openadr] timeout_s)", str(e))

    @defer.inlineCallbacks
    def test_a_certificate_from_another_ca_is_refused(self):
        port = self.serve(Reply(), cert="stranger")
        e = yield defer.Deferred.fromCoroutine(self.failure(self.transport(port).post("OadrPoll", b"x"),
                                                            CERTIFICATE))
        self.assertIn("the VTN's certificate was refused", str(e))
        self.assertIn(self.oadr["vtn-ca"], str(e))

    @defer.inlineCallbacks
    def test_a_fingerprint_that_is_not_the_vtns_is_refused(self):
        port = self.serve(Reply())
        e = yield defer.Deferred.fromCoroutine(self.failure(
            self.transport(port, vtn_fingerprint="00:11:22:33:44:55:66:77:88:99").post("OadrPoll", b"x"),
            CERTIFICATE))
        self.assertIn("not vtn_fingerprint 00:11:22:33:44:55:66:77:88:99", str(e))

    @defer.inlineCallbacks
    def test_a_name_the_certificate_does_not_carry_is_refused(self):
        port = self.serve(Reply())
        e = yield defer.Deferred.fromCoroutine(self.failure(
            self.transport(port, vtn_name="vtn.example.net").post("OadrPoll", b"x"), CERTIFICATE))
        self.assertIn("does not name vtn.example.net", str(e))

    @defer.inlineCallbacks
    def test_an_http_error(self):
        port = self.serve(Reply(b"broken", code=500))
        e = yield defer.Deferred.fromCoroutine(self.failure(self.transport(port).post("OadrPoll", b"x"), HTTP))
        self.assertIn("HTTP 500", str(e))

    @defer.inlineCallbacks
    def test_a_reply_too_long_is_refused(self):
        port = self.serve(Reply(b"x" * 5000))
        e = yield defer.Deferred.fromCoroutine(self.failure(
            self.transport(port, max_reply_kib="1").post("OadrPoll", b"x"), TOO_BIG))
        self.assertIn("longer than 1024", str(e))


# ------------------------------------------------------------------ the state machine on a Clock


class FakeFleet:
    """The aggregator as the VEN sees it; ``hold()`` keeps ``durable`` waiting."""

    def __init__(self, kept=None):
        self.offers: list[tuple[Offer, str]] = []
        self.cancelled: list[str] = []
        self.store: dict = dict(kept or {})
        self.held: list[Deferred] | None = None
        self.total_w = 5000.0
        self.must_w = 1000.0
        self.max_event_s = 86400.0

    def hold(self):
        self.held = []

    def release(self):
        held, self.held = self.held or [], None
        for d in held:
            d.callback(None)

    def durable(self):
        if self.held is None:
            return succeed(None)
        d = Deferred()
        self.held.append(d)
        return d

    def offer_event(self, offer, source, note=""):
        self.offers.append((offer, source))
        verdict = CANCELLED if offer.cancelled else ADDED
        if not offer.cancelled and offer.event.end - offer.event.start > self.max_event_s:
            verdict = REFUSED
        return self.durable().addCallback(lambda _: Outcome(verdict, "it lasts too long" if verdict == REFUSED else ""))

    def cancel_event(self, event_id):
        self.cancelled.append(event_id)
        return self.durable()

    def measured_w(self):
        return self.total_w

    def must_run_w(self):
        return self.must_w

    def kept(self):
        return dict(self.store)

    def keep(self, key, value):
        if value is None:
            self.store.pop(key, None)
        else:
            self.store[key] = value


class FakeVTN:
    """Answers each service as a 2.0b VTN would, from messages; records what it got."""

    def __init__(self, clock, poll_s=5.0, granularity_s=10.0):
        self.clock = clock
        self.poll_s = poll_s
        self.granularity_s = granularity_s
        self.got: list[m.Message] = []
        self.pending: list[m.Message] = []
        self.events: dict[str, m.OadrEvent] = {}
        self.fail: Exception | None = None
        self.hang: list[Deferred] | None = None
        self.registrations = 0

    def post(self, service: str, body: bytes) -> Deferred:
        if self.fail is not None:
            return defer.fail(self.fail)
        if self.hang is not None:
            d = Deferred()
            self.hang.append(d)
            return d
        message = m.parse(body)
        self.got.append(message)
        return succeed(m.render(self.answer(message)))

    def of(self, kind):
        return [g for g in self.got if isinstance(g, kind)]

    def answer(self, message):
        ok = m.EiResponse(request_id=getattr(message, "request_id", ""))
        if isinstance(message, m.QueryRegistration):
            return m.CreatedPartyRegistration(ok, "vtn-1", poll_freq_s=self.poll_s)
        if isinstance(message, m.CreatePartyRegistration):
            self.registrations += 1
            return m.CreatedPartyRegistration(ok, "vtn-1", f"reg-{self.registrations}", "ven-7",
                                              poll_freq_s=self.poll_s)
        if isinstance(message, m.RegisterReport):
            request = m.ReportRequest("rr-1", message.reports[0].report_specifier_id,
                                      tuple(d.r_id for d in message.reports[0].descriptions), self.granularity_s,
                                      self.granularity_s)
            return m.RegisteredReport(ok, (request,), "ven-7")
        if isinstance(message, m.RequestEvent):
            return self.distribute()
        if isinstance(message, m.Poll):
            return self.pending.pop(0) if self.pending else m.Response(ok, "ven-7")
        if isinstance(message, m.UpdateReport):
            return m.UpdatedReport(ok, None, "ven-7")
        return m.Response(ok, "ven-7")

    def distribute(self):
        return m.DistributeEvent("dist-1", "vtn-1", tuple(self.events.values()))

    def publish(self, event: m.OadrEvent):
        self.events[event.event_id] = event
        self.pending.append(self.distribute())


def simple_event(event_id="ev-1", modification=0, level=2.0, start=1000.0, duration=600.0, status="far",
                 test=False, start_after=None):
    signal = m.EventSignal("SIMPLE", "level", "sig-1", (m.Interval(duration, level, "0"),))
    return m.OadrEvent(event_id, modification, status, start, duration, (signal,), "http://market", 0.0,
                       start_after_s=start_after, test_event=test)


def ven_config(oadr, **keys) -> OpenADRConfig:
    config = read(section(oadr, signatures="no", **keys))
    assert config is not None
    return config


@pytest.fixture
def rig(oadr):
    from jeisson.openadr.ven import VEN

    class Rig:
        def __init__(self, kept=None, **keys):
            self.clock = Clock()
            self.clock.advance(100.0)
            self.vtn = FakeVTN(self.clock)
            self.fleet = FakeFleet(kept)
            self.ven = VEN(ven_config(oadr, **keys), self.vtn.post, self.fleet, self.clock)

        def cycle(self):
            d = self.ven.cycle()
            result = []
            d.addBoth(result.append)
            return result[0] if result else d

        def deliver(self, event=None):
            """Publish ``event`` (or the VTN's events again) and poll once."""
            if event is not None:
                self.vtn.publish(event)
            else:
                self.vtn.pending.append(self.vtn.distribute())
            self.clock.advance(5.0)
            return self.cycle()

        def restart(self):
            self.fleet = FakeFleet(self.fleet.store)
            from jeisson.openadr.ven import VEN

            self.ven = VEN(self.ven.config, self.vtn.post, self.fleet, self.clock)

    return Rig


def test_registration_then_reports_then_events_in_the_order_of_the_profile(rig):
    r = rig()
    assert r.cycle() is None
    names = [g.NAME for g in r.vtn.got]
    assert names == ["oadrQueryRegistration", "oadrCreatePartyRegistration", "oadrRegisterReport",
                     "oadrCreatedReport", "oadrRequestEvent"]
    assert (r.ven.registration_id, r.ven.ven_id, r.ven.vtn_id, r.ven.poll_s) == ("reg-1", "ven-7", "vtn-1", 5.0)
    assert r.fleet.store["registration"] == {"registration_id": "reg-1", "ven_id": "ven-7", "vtn_id": "vtn-1",
                                             "poll_s": 5.0, "vtn_url": r.ven.config.vtn_url}
    created = r.vtn.of(m.CreatedReport)[0]
    assert created.pending == ("rr-1",)
    register = r.vtn.of(m.RegisterReport)[0]
    assert register.reports[0].report_name == "METADATA_TELEMETRY_USAGE"


def test_it_polls_at_the_interval_the_vtn_asks(rig):
    r = rig()
    r.cycle()
    assert r.ven.next_wake() == pytest.approx(105.0)
    r.clock.advance(5.0)
    r.cycle()
    assert len(r.vtn.of(m.Poll)) == 1
    assert r.ven.next_wake() == pytest.approx(110.0)


def test_an_event_is_offered_and_answered_only_once_durable(rig):
    r = rig()
    r.cycle()
    r.vtn.publish(simple_event())
    r.fleet.hold()
    r.clock.advance(5.0)
    d = r.cycle()
    assert isinstance(d, Deferred) and not d.called
    offers = [o for o, _ in r.fleet.offers]
    assert offers and all(not o.cancelled for o in offers)
    assert offers[0].event.limit_w == 6000.0
    assert r.vtn.of(m.CreatedEvent) == []  # not before the store has it
    assert r.fleet.store["event:ev-1"]["answered"] is False
    r.fleet.release()
    while r.fleet.held:
        r.fleet.release()
    assert d.called
    created = r.vtn.of(m.CreatedEvent)
    assert [(e.event_id, e.modification_number, e.opt_type) for e in created[0].event_responses] == \
        [("ev-1", 0, m.OPT_IN)]
    assert r.fleet.store["event:ev-1"]["answered"] is True


def test_a_modification_replaces_and_a_cancellation_cancels(rig):
    r = rig()
    r.cycle()
    r.deliver(simple_event())
    first = r.fleet.offers[-1][0].event
    r.deliver(simple_event(modification=1, level=3.0, start_after=120))
    second = r.fleet.offers[-1][0].event
    assert second.id == first.id and second.version > first.version and second.limit_w == 3000.0
    assert second.start_window_s == 120
    r.deliver(simple_event(modification=2, status="cancelled"))
    assert r.fleet.offers[-1][0].cancelled
    assert [(e.modification_number, e.opt_type) for c in r.vtn.of(m.CreatedEvent) for e in c.event_responses] == \
        [(0, m.OPT_IN), (1, m.OPT_IN), (2, m.OPT_IN)]


def test_the_same_modification_again_is_neither_offered_nor_answered_again(rig):
    r = rig()
    r.cycle()
    r.deliver(simple_event())
    offered, answered = len(r.fleet.offers), len(r.vtn.of(m.CreatedEvent))
    r.deliver()
    assert (len(r.fleet.offers), len(r.vtn.of(m.CreatedEvent))) == (offered, answered)


def test_a_test_event_is_answered_not_applied(rig):
    r = rig()
    r.cycle()
    r.deliver(simple_event(test=True))
    assert r.fleet.offers == []
    assert len(r.vtn.of(m.CreatedEvent)) == 1


def test_opt_policy_out_answers_opt_out(rig):
    r = rig(opt="out")
    r.cycle()
    r.deliver(simple_event())
    assert r.vtn.of(m.CreatedEvent)[0].event_responses[0].opt_type == m.OPT_OUT


def test_an_event_jeisson_refuses_is_answered_opt_out(rig):
    r = rig()
    r.fleet.max_event_s = 300.0
    r.cycle()
    r.deliver(simple_event(duration=600.0))
    response = r.vtn.of(m.CreatedEvent)[0].event_responses[0]
    assert response.opt_type == m.OPT_OUT
    assert "jeisson refused it: it lasts too long" in response.description


def test_an_answer_waits_for_a_store_that_fails_and_goes_once_it_works(rig):
    r = rig()
    r.cycle()
    r.fleet.hold()
    d = r.deliver(simple_event())
    for held in r.fleet.held:
        held.errback(RuntimeError("disk full"))
    r.fleet.held = None
    assert isinstance(d, Deferred) and d.called
    d.addErrback(lambda f: None)
    assert r.vtn.of(m.CreatedEvent) == []  # nothing promised that is not stored
    r.clock.advance(5.0)
    assert r.cycle() is None
    assert len(r.vtn.of(m.CreatedEvent)) == 1


def test_an_event_no_longer_distributed_is_cancelled(rig):
    r = rig()
    r.cycle()
    r.deliver(simple_event())
    ids = r.ven.events["ev-1"].ids
    del r.vtn.events["ev-1"]
    r.deliver()
    assert r.fleet.cancelled == list(ids)
    assert "event:ev-1" not in r.fleet.store


def test_an_answer_the_vtn_did_not_take_is_owed_and_sent_again_after_a_restart(rig):
    r = rig()
    r.cycle()
    r.vtn.publish(simple_event())
    r.clock.advance(5.0)
    real_post = r.vtn.post

    def fail_created(service, body):
        if b"oadrCreatedEvent" in body:
            return defer.fail(VTNError(DOWN, "connection refused"))
        return real_post(service, body)

    r.ven.post = fail_created
    failure = r.cycle()
    assert failure.check(VTNError)
    assert len(r.fleet.offers) == 1
    assert r.fleet.store["event:ev-1"]["answered"] is False
    r.restart()  # the aggregator restarts: what was kept comes back
    assert r.ven.registration_id == "reg-1"
    r.vtn.pending.clear()
    r.clock.advance(1.0)
    assert r.cycle() is None
    assert len(r.fleet.offers) == 0  # not offered again: the aggregator's store has it
    created = r.vtn.of(m.CreatedEvent)
    assert [(e.event_id, e.modification_number) for e in created[-1].event_responses] == [("ev-1", 0)]
    assert r.vtn.registrations == 1  # resumed, not registered again


def test_an_answer_the_vtn_refuses_is_not_sent_again_and_polls_go_on(rig):
    r = rig()
    r.cycle()
    real_answer = r.vtn.answer

    def refuse_created(message):
        if isinstance(message, m.CreatedEvent):
            return m.Response(m.EiResponse(452, "INVALID ID"), "ven-7")
        return real_answer(message)

    r.vtn.answer = refuse_created
    failure = r.deliver(simple_event())
    assert failure is None  # logged, not a failing VTN
    assert r.fleet.store["event:ev-1"]["answered"] is True
    r.clock.advance(5.0)
    r.cycle()
    assert len(r.vtn.of(m.CreatedEvent)) == 1
    assert len(r.vtn.of(m.Poll)) == 3  # the delivering poll, the one after it, and the next cycle's


def test_a_registration_with_another_vtn_is_not_resumed(rig, oadr):
    r = rig()
    r.cycle()
    kept = dict(r.fleet.store)
    other = rig(kept=kept, vtn_url="https://127.0.0.1:9999/OpenADR2/Simple/2.0b")
    assert not other.ven.registered
    other.cycle()
    assert other.vtn.registrations == 1


def test_reregistration_when_the_vtn_asks(rig):
    r = rig()
    r.cycle()
    r.vtn.pending.append(m.RequestReregistration("ven-7"))
    r.clock.advance(5.0)
    assert r.cycle() is None
    assert r.vtn.registrations == 2
    assert r.ven.registration_id == "reg-2"
    assert r.fleet.store["registration"]["registration_id"] == "reg-2"


def test_telemetry_reports_at_the_granularity_asked(rig):
    r = rig()
    r.cycle()
    for total in (5000.0, 7000.0):
        r.fleet.total_w = total
        r.clock.advance(5.0)
        r.cycle()
        r.clock.advance(5.0)
        r.cycle()
    updates = r.vtn.of(m.UpdateReport)
    assert len(updates) == 2
    values = [i.value for u in updates for rep in u.reports for i in rep.intervals]
    assert values[-1] == pytest.approx(7000.0)
    assert all(rep.report_request_id == "rr-1" for u in updates for rep in u.reports)


def test_a_malformed_reply_is_a_clear_error(rig):
    r = rig()
    r.cycle()
    r.vtn.post = lambda service, body: succeed(b"<oadrPayload><not-closed")
    r.ven.post = r.vtn.post
    r.clock.advance(5.0)
    failure = r.cycle()
    assert failure.check(VTNError)
    assert failure.value.kind == "malformed"
    assert "the reply to oadrPoll cannot be read" in str(failure.value)


def test_the_service_backs_off_and_keeps_what_was_accepted(rig):
    from jeisson.backoff import FullJitter
    from jeisson.openadr.service import OpenADRService

    r = rig()
    service = OpenADRService(r.ven, r.clock, backoff=FullJitter(base_s=5, cap_s=40, random=lambda: 1.0))
    service.startService()
    r.clock.advance(0)
    assert r.ven.registered
    r.vtn.publish(simple_event())
    r.clock.advance(5.0)
    assert len(r.fleet.offers) == 1
    r.vtn.fail = VTNError(DOWN, "https://vtn/OadrPoll: connection refused: the VTN is not listening")
    waits = []
    for _ in range(4):
        before = r.clock.seconds()
        r.clock.advance(r.ven.next_wake() - r.clock.seconds() if not service.failures else 0)
        r.clock.advance(service._call.getTime() - r.clock.seconds())
        waits.append(r.clock.seconds() - before)
    assert service.failures >= 3
    assert isinstance(r.ven.last_error, VTNError)
    assert "connection refused" in r.ven.status()["failing"]
    assert len(r.fleet.offers) == 1 and r.fleet.cancelled == []  # nothing undone
    r.vtn.fail = None
    r.clock.advance(service._call.getTime() - r.clock.seconds())
    assert service.failures == 0 and r.ven.status()["failing"] is None
    service.stopService()
    assert not r.clock.getDelayedCalls()


def test_the_status_an_operator_sees(rig):
    r = rig()
    assert r.ven.status()["registered"] is False
    r.cycle()
    r.deliver(simple_event())
    status = r.ven.status()
    assert (status["registered"], status["ven_id"], status["vtn_id"], status["failing"]) == \
        (True, "ven-7", "vtn-1", None)
    assert status["events"]["ev-1"]["opt"] == m.OPT_IN and status["events"]["ev-1"]["answered"] is True
    assert status["events"]["ev-1"]["jeisson_events"] == list(r.ven.events["ev-1"].ids)
    assert status["reports"]["rr-1"]["granularity_s"] == 10.0


def test_the_kept_state_is_json(rig):
    import json

    r = rig()
    r.cycle()
    r.deliver(simple_event())
    json.dumps(r.fleet.store)
    assert attrs.has(type(r.ven.events["ev-1"]))


# ------------------------------------------------------------------ signatures (the service's codec)


def test_the_codec_signs_with_the_vens_key_and_checks_the_vtns_signature(oadr, credentials):
    from jeisson.openadr import signature
    from jeisson.openadr.service import SIGNATURE, codec

    config = read(section(oadr))
    assert config is not None and config.signatures
    import time

    clock = Clock()
    clock.advance(time.time())  # the certificates are valid now
    encode, decode = codec(config, clock)
    body = encode(m.Poll("ven-7"))
    with open(credentials.ca, "rb") as f:
        assert signature.verify(body, clock.seconds(), ca_pem=f.read()) == m.Poll("ven-7")

    def signed_by(name: str) -> bytes:
        with open(oadr[name], "rb") as c, open(oadr[f"{name}-key"], "rb") as k:
            return signature.sign(m.render(m.Response(m.EiResponse(), "ven-7")), k.read(), c.read(), clock.seconds())

    assert decode(signed_by("vtn")) == m.Response(m.EiResponse(), "ven-7")
    with pytest.raises(VTNError) as refused:
        decode(signed_by("stranger"))
    assert refused.value.kind == SIGNATURE and "the VTN's reply is not signed as it must be" in str(refused.value)
    with pytest.raises(VTNError) as unsigned:
        decode(m.render(m.Response(m.EiResponse(), "ven-7")))
    assert unsigned.value.kind == SIGNATURE
    plain_encode, plain_decode = codec(read(section(oadr, signatures="no")), clock)
    assert not signature.is_signed(plain_encode(m.Poll("ven-7")))
