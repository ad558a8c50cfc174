"""OpenADR 2.0b messages, signatures and schema, checked against an independent peer.

OpenLEADR's own messaging module is the peer: what ``create_message``
renders, ``messages.parse`` reads; what ``messages.render`` writes,
OpenLEADR's ``parse_message`` reads to the same dictionary and the 2.0b
schema (OpenLEADR's copy) accepts.  Signatures go both ways too.
"""

import datetime
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID
from hypothesis import given, settings
from hypothesis import strategies as st

from jeisson import pki
from jeisson.openadr import messages as m
from jeisson.openadr import schema
from jeisson.openadr import signature as s

openleadr_messaging = pytest.importorskip("openleadr.messaging")
from openleadr import objects  # noqa: E402  (after the skip: the peer is a test dependency)
from openleadr import utils as openleadr_utils  # noqa: E402

UTC = datetime.UTC
# Far ahead: OpenLEADR sets an event's status by the wall clock as it renders.
NOW = datetime.datetime(2036, 12, 3, 12, 0, tzinfo=UTC)
T0 = NOW.timestamp()
# Signatures are checked against certificates valid now.
SIGNED_AT = float(int(time.time()))
RESPONSE = {"response_code": 200, "response_description": "OK", "request_id": "q1"}


def _event(**descriptor: object) -> objects.Event:
    fields = {"event_id": "ev1", "modification_number": 2, "market_context": "http://mc", "event_status": "far",
              "created_date_time": NOW, "test_event": False, "priority": 1, "modification_date_time": NOW}
    fields.update(descriptor)
    start = NOW + datetime.timedelta(minutes=5)
    return objects.Event(
        event_descriptor=objects.EventDescriptor(**fields),
        active_period=objects.ActivePeriod(dtstart=start, duration=datetime.timedelta(hours=1),
                                           tolerance={"startafter": datetime.timedelta(minutes=2)}),
        event_signals=[
            objects.EventSignal(intervals=[
                objects.Interval(dtstart=start, duration=datetime.timedelta(minutes=30), signal_payload=1),
                objects.Interval(dtstart=start + datetime.timedelta(minutes=30),
                                 duration=datetime.timedelta(minutes=30), signal_payload=2)],
                signal_name="SIMPLE", signal_type="level", signal_id="s1"),
            objects.EventSignal(
                intervals=[objects.Interval(dtstart=start, duration=datetime.timedelta(hours=1), signal_payload=7.5)],
                signal_name="LOAD_DISPATCH", signal_type="setpoint", signal_id="s2",
                measurement=objects.Measurement(name="powerReal", description="RealPower", unit="W", scale="k",
                                                power_attributes=objects.PowerAttributes(50, 230, True)))],
        targets=[objects.Target(ven_id="ven123"), objects.Target(resource_id="r1")], response_required="always")


REPORT_REQUEST = objects.ReportRequest(
    report_request_id="rr1",
    report_specifier=objects.ReportSpecifier(
        report_specifier_id="TELEMETRY_USAGE", granularity=datetime.timedelta(seconds=10),
        report_back_duration=datetime.timedelta(seconds=60),
        specifier_payloads=[objects.SpecifierPayload(r_id="fleet", reading_type="Direct Read")]))

# What OpenLEADR renders, as ``create_message`` takes it: the VTN's messages
# and the VEN's, each a case.
CASES = {
    "oadrCreatedPartyRegistration": dict(
        response=RESPONSE, registration_id="reg1", ven_id="ven123", vtn_id="vtn",
        profiles=[{"profile_name": "2.0b", "transports": [{"transport_name": "simpleHttp"}]}],
        requested_oadr_poll_freq=datetime.timedelta(seconds=10)),
    "oadrCanceledPartyRegistration": dict(response=RESPONSE, registration_id="reg1", ven_id="ven123"),
    "oadrCancelPartyRegistration": dict(request_id="c0", registration_id="reg1", ven_id="ven123"),
    "oadrRequestReregistration": dict(ven_id="ven123"),
    "oadrResponse": dict(response=RESPONSE, ven_id="ven123"),
    "oadrDistributeEvent": dict(request_id="r1", vtn_id="vtn", events=[_event(), _event(
        event_id="ev2", modification_number=0, event_status="cancelled", test_event=True)]),
    "oadrRegisteredReport": dict(response=RESPONSE, report_requests=[REPORT_REQUEST], ven_id="ven123"),
    "oadrCreateReport": dict(request_id="c1", report_requests=[REPORT_REQUEST], ven_id="ven123"),
    "oadrCancelReport": dict(request_id="x1", report_request_id="rr1", report_to_follow=False, ven_id="ven123"),
    "oadrUpdatedReport": dict(response=RESPONSE, ven_id="ven123"),
    "oadrCreatedReport": dict(response=RESPONSE, pending_reports=[{"report_request_id": "rr1"}], ven_id="ven123"),
    "oadrCanceledReport": dict(response=RESPONSE, pending_reports=[], ven_id="ven123"),
    "oadrQueryRegistration": dict(request_id="q1"),
    "oadrCreatePartyRegistration": dict(
        request_id="q2", ven_name="jeisson", profile_name="2.0b", transport_name="simpleHttp",
        transport_address="https://ven.example",
        report_only=False, xml_signature=True, http_pull_model=True),
    "oadrPoll": dict(ven_id="ven123"),
    "oadrCreatedEvent": dict(response=RESPONSE, ven_id="ven123", event_responses=[
        {"response_code": 200, "response_description": "OK", "request_id": "r1", "event_id": "ev1",
         "modification_number": 2, "opt_type": "optIn"}]),
    "oadrRequestEvent": dict(request_id="re1", ven_id="ven123"),
    "oadrRegisterReport": dict(request_id="rq", ven_id="ven123", reports=[objects.Report(
        report_specifier_id="TELEMETRY_USAGE", report_name="METADATA_TELEMETRY_USAGE", created_date_time=NOW,
        report_descriptions=[objects.ReportDescription(
            r_id="fleet", market_context="http://mc", reading_type="Direct Read", report_subject=None,
            report_data_source=None, report_type="usage",
            sampling_rate=objects.SamplingRate(datetime.timedelta(seconds=10), datetime.timedelta(seconds=60), False),
            measurement=objects.Measurement(name="powerReal", description="RealPower", unit="W", scale="none",
                                            power_attributes=objects.PowerAttributes(50, 230, True)))])]),
    "oadrCreateOpt": dict(
        opt_id="o1", opt_type="optOut", opt_reason="mustRun", market_context="http://mc", ven_id="ven123",
        created_date_time=NOW, request_id="op1", event_id="ev1", modification_number=2,
        vavailability=objects.Vavailability([objects.VavailabilityComponent(NOW, datetime.timedelta(hours=1))]),
        targets=[objects.Target(resource_id="feeder-a")]),
    "oadrCreatedOpt": dict(response=RESPONSE, opt_id="o1"),
    "oadrCancelOpt": dict(request_id="op2", opt_id="o1", ven_id="ven123"),
    "oadrCanceledOpt": dict(response=RESPONSE, opt_id="o1"),
    "oadrUpdateReport": dict(request_id="u1", ven_id="ven123", reports=[dict(
        report_specifier_id="TELEMETRY_USAGE", report_name="TELEMETRY_USAGE", report_id="rep1",
        report_request_id="rr1", created_date_time=NOW,
        intervals=[dict(dtstart=NOW, duration=datetime.timedelta(seconds=10),
                        report_payload=dict(r_id="fleet", value=8123.5))])]),
}


@pytest.fixture(scope="module")
def xsd() -> schema.Schema:
    return schema.load()


def _theirs(name: str) -> bytes:
    return openleadr_messaging.create_message(name, **CASES[name]).encode()


@pytest.mark.parametrize("name", sorted(CASES))
def test_openleadr_renders_we_parse_we_render_it_reads_the_same(name: str, xsd: schema.Schema) -> None:
    theirs = _theirs(name)
    message = m.parse(theirs)
    assert message.NAME == name
    ours = m.render(message)
    xsd.check(ours)
    assert openleadr_messaging.parse_message(ours) == openleadr_messaging.parse_message(theirs)
    assert m.parse(ours) == message


def test_every_message_class_has_a_case() -> None:
    assert set(m.MESSAGES) == set(CASES)


def test_a_distribute_event_reads_as_the_vtn_wrote_it() -> None:
    message = m.parse(_theirs("oadrDistributeEvent"))
    assert isinstance(message, m.DistributeEvent)
    assert (message.request_id, message.vtn_id) == ("r1", "vtn")
    first, second = message.events
    assert (first.event_id, first.modification_number, first.status, first.test_event) == ("ev1", 2, "far", False)
    assert first.dtstart == T0 + 300 and first.duration_s == 3600 and first.end == T0 + 3900
    assert first.start_after_s == 120
    assert first.response_required == "always" and first.priority == 1 and first.created == T0
    assert first.targets == m.Targets(resource_ids=("r1",), ven_ids=("ven123",))
    simple, dispatch = first.signals
    assert (simple.name, simple.type, simple.signal_id) == ("SIMPLE", "level", "s1")
    assert [(i.duration_s, i.value, i.uid) for i in simple.intervals] == [(1800, 1.0, "0"), (1800, 2.0, "1")]
    assert dispatch.item is not None and (dispatch.item.name, dispatch.item.scale, dispatch.item.factor) == (
        "powerReal", "k", 1000.0)
    assert dispatch.intervals[0].value == 7.5
    assert (second.event_id, second.modification_number, second.test_event) == ("ev2", 0, True)
    # OpenLEADR sets the status by the clock as it renders: a cancellation is written here.
    cancelled = m.parse(_theirs("oadrDistributeEvent").replace(b"<ei:eventStatus>far</ei:eventStatus>",
                                                               b"<ei:eventStatus>cancelled</ei:eventStatus>"))
    assert [e.status for e in cancelled.events] == ["cancelled", "cancelled"]


def test_the_registration_answer_gives_ids_and_poll_frequency() -> None:
    message = m.parse(_theirs("oadrCreatedPartyRegistration"))
    assert message == m.CreatedPartyRegistration(
        m.EiResponse(200, "OK", "q1"), "vtn", "reg1", "ven123", (m.Profile("2.0b", ("simpleHttp",)),), 10.0)
    assert message.response.ok


def test_a_report_request_reads_its_granularity_and_data_points() -> None:
    message = m.parse(_theirs("oadrCreateReport"))
    assert message == m.CreateReport("c1", (m.ReportRequest("rr1", "TELEMETRY_USAGE", ("fleet",), 10.0, 60.0),),
                                     "ven123")


# What jeisson renders, built directly, read by OpenLEADR as what it renders itself.
OURS = {
    "oadrQueryRegistration": m.QueryRegistration("q1"),
    "oadrCreatePartyRegistration": m.CreatePartyRegistration("q2", "jeisson", xml_signature=True,
                                                          transport_address="https://ven.example"),
    "oadrPoll": m.Poll("ven123"),
    # OpenLEADR leaves the outer requestID empty when there are event responses.
    "oadrCreatedEvent": m.CreatedEvent(m.EiResponse(200, "OK", ""), "ven123",
                                       (m.EventResponse("ev1", 2, m.OPT_IN, "r1"),)),
    "oadrRegisterReport": m.RegisterReport("rq", (m.Report(
        "TELEMETRY_USAGE", "METADATA_TELEMETRY_USAGE", T0,
        descriptions=(m.ReportDescription("fleet", market_context="http://mc",
                                          sampling_rate=m.SamplingRate(10, 60, False)),)),), "ven123"),
    "oadrUpdateReport": m.UpdateReport("u1", (m.Report(
        "TELEMETRY_USAGE", "TELEMETRY_USAGE", T0, report_id="rep1", report_request_id="rr1",
        intervals=(m.ReportInterval(T0, "fleet", 8123.5, 10),)),), "ven123"),
    "oadrCreatedReport": m.CreatedReport(m.EiResponse(200, "OK", "q1"), ("rr1",), "ven123"),
    "oadrCanceledReport": m.CanceledReport(m.EiResponse(200, "OK", "q1"), (), "ven123"),
    "oadrResponse": m.Response(m.EiResponse(200, "OK", "q1"), "ven123"),
    "oadrCancelPartyRegistration": m.CancelPartyRegistration("c0", "reg1", "ven123"),
    "oadrRequestEvent": m.RequestEvent("re1", "ven123"),
    "oadrCreateOpt": m.CreateOpt("o1", m.OPT_OUT, "mustRun", "ven123", T0, "op1", "ev1", 2, "http://mc",
                                 (m.Availability(T0, 3600),), m.Targets(resource_ids=("feeder-a",))),
    "oadrCancelOpt": m.CancelOpt("op2", "o1", "ven123"),
}


@pytest.mark.parametrize("name", sorted(OURS))
def test_what_we_render_openleadr_reads_as_its_own(name: str, xsd: schema.Schema) -> None:
    ours = m.render(OURS[name])
    xsd.check(ours)
    assert openleadr_messaging.parse_message(ours) == openleadr_messaging.parse_message(_theirs(name))
    assert m.parse(ours) == OURS[name]


def test_a_whole_event_round_trips() -> None:
    event = m.OadrEvent(
        "e.1", 4, "active", T0, 1800.0,
        (m.EventSignal("LOAD_CONTROL", "x-loadControlCapacity", "sig", (m.Interval(900, 0.5, "0"),
                                                                         m.Interval(900, 0.25, "1")),
                       targets=m.Targets(resource_ids=("feeder-1",)), current_value=0.5),),
        "http://market", T0 - 60, m.Targets(group_ids=("g1",), party_ids=("p",)), "never", 300.0, True, 3,
        T0 - 30, "price spike", "hello", 600.0, 60.0, 120.0)
    message = m.DistributeEvent("r9", "vtn-9", (event,), m.EiResponse(200, "OK", ""))
    assert m.parse(m.render(message)) == message
    assert schema.load().valid(m.render(message))


# ------------------------------------------------------------------ bad input


def _payload(inner: str) -> bytes:
    return (f'<oadr:oadrPayload xmlns:oadr="{m.OADR}" xmlns:ei="{m.EI}" xmlns:pyld="{m.PYLD}">'
            f'<oadr:oadrSignedObject oadr:Id="oadrSignedObject">{inner}</oadr:oadrSignedObject>'
            '</oadr:oadrPayload>').encode()


def _error(body: bytes) -> m.MessageError:
    with pytest.raises(m.MessageError) as caught:
        m.parse(body)
    return caught.value


def test_errors_name_the_element() -> None:
    theirs = _theirs("oadrDistributeEvent").decode()
    bad = theirs.replace("<ei:modificationNumber>2</ei:modificationNumber>",
                         "<ei:modificationNumber>two</ei:modificationNumber>", 1)
    error = _error(bad.encode())
    assert error.where == "oadrDistributeEvent/oadrEvent[1]/eiEvent/eventDescriptor/modificationNumber"
    assert "'two' is not an integer" in str(error)

    no_id = _error(theirs.replace("<ei:eventID>ev2</ei:eventID>", "").encode())
    assert no_id.where == "oadrDistributeEvent/oadrEvent[2]/eiEvent/eventDescriptor"
    assert "eventID is missing" in no_id.what

    duration = _error(theirs.replace("<duration>PT1H</duration>", "<duration>an hour</duration>", 1).encode())
    assert duration.where.endswith("eiActivePeriod/properties/duration/duration")
    assert "not a duration" in duration.what

    status = _error(theirs.replace("<ei:eventStatus>far</ei:eventStatus>",
                                   "<ei:eventStatus>soon</ei:eventStatus>").encode())
    assert status.where.endswith("eventDescriptor/eventStatus") and "'soon'" in status.what

    date = _error(theirs.replace("2036-12-03T12:05:00.000000Z", "2036-13-03T12:05:00Z", 1).encode())
    assert "date-time" in date.what


def test_a_poll_answer_without_vtn_id_names_it() -> None:
    error = _error(_payload('<oadr:oadrDistributeEvent><pyld:requestID>r</pyld:requestID></oadr:oadrDistributeEvent>'))
    assert (error.where, error.what) == ("oadrDistributeEvent", "vtnID is missing")


def test_a_str_reads_as_its_utf8() -> None:
    assert m.parse(_theirs("oadrPoll").decode()) == m.Poll("ven123")  # type: ignore[arg-type]


def test_refused_documents() -> None:
    assert "not well-formed" in _error(b"<oadr:oadrPayload").what
    assert "not well-formed" in _error(b"").what
    assert "oadrPayload" in _error(b"<html><body>502 Bad Gateway</body></html>").what
    assert "DOCTYPE" in _error(b'<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">]>'
                               b'<oadr:oadrPayload xmlns:oadr="http://openadr.org/oadr-2.0b/2012/07"/>').what
    assert "more than" in _error(b" " * (m.MAX_BODY + 1)).what
    unknown = _error(_payload("<oadr:oadrSomethingElse/>"))
    assert unknown.where == "oadrPayload/oadrSignedObject" and "oadrSomethingElse" in unknown.what
    two = _error(_payload("<oadr:oadrPoll><ei:venID>a</ei:venID></oadr:oadrPoll>"
                          "<oadr:oadrPoll><ei:venID>b</ei:venID></oadr:oadrPoll>"))
    assert "2 elements inside" in two.what
    assert _error(_payload("<oadr:oadrPoll><ei:venID/></oadr:oadrPoll>")).what == "is empty"


def test_an_external_entity_is_never_fetched_or_expanded(tmp_path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("do not read")
    body = (f'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file://{secret}">]>'
            f'<oadr:oadrPayload xmlns:oadr="{m.OADR}" xmlns:ei="{m.EI}">'
            '<oadr:oadrSignedObject oadr:Id="oadrSignedObject">'
            '<oadr:oadrPoll><ei:venID>&e;</ei:venID></oadr:oadrPoll></oadr:oadrSignedObject></oadr:oadrPayload>')
    error = _error(body.encode())
    assert "do not read" not in str(error)


# ------------------------------------------------------------------ times


def test_durations() -> None:
    assert m.parse_duration("PT1H30M") == 5400
    assert m.parse_duration("P1DT1S") == 86401
    assert m.parse_duration("P2W") == 14 * 86400
    assert m.parse_duration("-PT5M") == -300
    assert m.parse_duration("PT0S") == 0
    for bad in ("P", "PT", "1H", "P1Y", "P1M", "PT1.5", "PTH"):
        with pytest.raises(ValueError):
            m.parse_duration(bad)
    assert m.format_duration(0) == "PT0S"
    assert m.format_duration(86400) == "P1D"
    assert m.format_duration(90061) == "P1DT1H1M1S"


def test_date_times() -> None:
    assert m.parse_datetime("2036-12-03T12:00:00Z") == T0
    assert m.parse_datetime("2036-12-03T12:00:00") == T0
    assert m.parse_datetime("2036-12-03T13:00:00+01:00") == T0
    assert m.parse_datetime("2036-12-03T12:00:00.250Z") == T0 + 0.25
    assert m.format_datetime(T0) == "2036-12-03T12:00:00Z"
    assert m.format_datetime(T0 + 0.5) == "2036-12-03T12:00:00.500000Z"


@given(st.integers(min_value=-10 ** 8, max_value=10 ** 8))
def test_durations_round_trip(seconds: int) -> None:
    text = m.format_duration(seconds)
    assert m.parse_duration(text) == seconds
    assert openleadr_utils.parse_duration(text).total_seconds() == seconds


@given(st.integers(min_value=0, max_value=4 * 10 ** 9), st.integers(min_value=0, max_value=999_999))
def test_date_times_round_trip(whole: int, micro: int) -> None:
    moment = whole + micro / 1e6
    text = m.format_datetime(moment)
    assert abs(m.parse_datetime(text) - moment) < 1e-6
    assert abs(openleadr_utils.parse_datetime(text).timestamp() - moment) < 1e-6


# ------------------------------------------------------------------ signatures


def _pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _key_pem(key) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


class Party:
    def __init__(self, ca_key, ca_cert, name: str, **validity) -> None:
        key, cert = pki.issue(ca_key, ca_cert, name, [x509.DNSName(name)], ExtendedKeyUsageOID.CLIENT_AUTH,
                              **validity)
        self.key_pem, self.cert_pem, self.cert = _key_pem(key), _pem(cert), cert


@pytest.fixture(scope="module")
def ca():
    return pki.make_ca("OpenADR test CA")


@pytest.fixture(scope="module")
def ven(ca) -> Party:
    return Party(*ca, "ven")


@pytest.fixture(scope="module")
def vtn(ca) -> Party:
    return Party(*ca, "vtn")


def test_fingerprint_is_openleadrs(vtn: Party) -> None:
    expected = openleadr_utils.certificate_fingerprint(vtn.cert_pem)
    assert s.fingerprint(vtn.cert_pem) == expected
    assert s.fingerprint(vtn.cert.public_bytes(serialization.Encoding.DER)) == expected
    assert s.fingerprint(vtn.cert) == expected
    assert len(expected) == 29
    assert s.normalize_fingerprint(expected.lower().replace(":", ": ")) == expected
    with pytest.raises(ValueError, match="not an OpenADR fingerprint"):
        s.normalize_fingerprint("12:34")


def test_openleadr_signs_we_verify(vtn: Party, ca) -> None:
    body = openleadr_messaging.create_message("oadrDistributeEvent", cert=vtn.cert_pem, key=vtn.key_pem,
                                              **CASES["oadrDistributeEvent"]).encode()
    assert s.is_signed(body)
    now = time.time()  # OpenLEADR stamps its signature with the wall clock
    message = s.verify(body, now, expected_fingerprint=s.fingerprint(vtn.cert_pem))
    assert message == m.parse(_theirs("oadrDistributeEvent"))
    assert s.verify(body, now, ca_pem=_pem(ca[1])) == message
    assert s.verify(body, now, cert_pem=vtn.cert_pem) == message


def test_we_sign_openleadr_verifies(ven: Party, xsd: schema.Schema) -> None:
    for message in OURS.values():
        body = s.render_signed(message, ven.key_pem, ven.cert_pem, time.time())
        xsd.check(body)
        tree = openleadr_messaging.validate_xml_schema(body)
        openleadr_messaging.validate_xml_signature(tree, cert_fingerprint=s.fingerprint(ven.cert_pem))
        assert openleadr_messaging.parse_message(body) == openleadr_messaging.parse_message(m.render(message))


def test_an_rsa_key_signs_too(ca) -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    ca_key, ca_cert = ca
    cert = (x509.CertificateBuilder().subject_name(x509.Name.from_rfc4514_string("CN=rsa-ven"))
            .issuer_name(ca_cert.subject).public_key(key.public_key()).serial_number(7)
            .not_valid_before(pki.now() - datetime.timedelta(days=1))
            .not_valid_after(pki.now() + datetime.timedelta(days=9))
            .sign(ca_key, pki.hashes.SHA256()))
    body = s.render_signed(m.Poll("v"), _key_pem(key), _pem(cert), SIGNED_AT)
    assert b"rsa-sha256" in body
    assert s.verify(body, SIGNED_AT, ca_pem=_pem(ca_cert)) == m.Poll("v")


POLL = m.Poll("ven123")


def _signed_by(party: Party, at: float = SIGNED_AT, message: m.Message = POLL) -> bytes:
    return s.render_signed(message, party.key_pem, party.cert_pem, at)


def _refused(body: bytes, now: float = SIGNED_AT, **trust) -> str:
    with pytest.raises(s.SignatureError) as caught:
        s.verify(body, now, **trust)
    return str(caught.value)


def test_a_tampered_message_is_refused(vtn: Party) -> None:
    body = _signed_by(vtn, message=m.Poll("ven123"))
    assert "does not hold" in _refused(body.replace(b"ven123", b"ven124"), cert_pem=vtn.cert_pem)
    # The timestamp is signed as well.
    stamp = m.format_datetime(SIGNED_AT).encode()
    shifted = body.replace(stamp, m.format_datetime(SIGNED_AT + 1).encode())
    assert shifted != body and "does not hold" in _refused(shifted, cert_pem=vtn.cert_pem)


def test_a_certificate_not_the_vtns_is_refused(vtn: Party, ven: Party) -> None:
    body = _signed_by(ven)
    assert "not the VTN's" in _refused(body, expected_fingerprint=s.fingerprint(vtn.cert_pem))
    assert "another certificate" in _refused(body, cert_pem=vtn.cert_pem)
    other_ca_key, other_ca = pki.make_ca("another CA")
    assert "did not issue" in _refused(body, ca_pem=_pem(other_ca))
    stranger = Party(other_ca_key, other_ca, "vtn")
    assert "did not issue" in _refused(_signed_by(stranger), ca_pem=_pem(pki.make_ca()[1]))
    assert "nothing to check" in _refused(body)


def test_an_expired_certificate_is_refused(ca) -> None:
    old = Party(*ca, "vtn", not_before=pki.now() - datetime.timedelta(days=30),
                not_after=pki.now() - datetime.timedelta(days=1))
    assert "not now" in _refused(_signed_by(old), ca_pem=_pem(ca[1]))


def test_old_future_and_replayed_signatures_are_refused(vtn: Party) -> None:
    body = _signed_by(vtn, at=SIGNED_AT)
    assert "s ago" in _refused(body, now=SIGNED_AT + 61, cert_pem=vtn.cert_pem)
    assert "from now" in _refused(body, now=SIGNED_AT - 61, cert_pem=vtn.cert_pem)
    guard = s.ReplayGuard()
    s.verify(body, SIGNED_AT + 1, cert_pem=vtn.cert_pem, replay=guard)
    assert "replayed" in _refused(body, now=SIGNED_AT + 2, cert_pem=vtn.cert_pem, replay=guard)
    s.verify(_signed_by(vtn, at=SIGNED_AT), SIGNED_AT + 2, cert_pem=vtn.cert_pem, replay=guard)  # a new nonce


def test_unsigned_and_mangled_signatures_are_refused(vtn: Party) -> None:
    assert not s.is_signed(m.render(m.Poll("v")))
    assert "not signed" in _refused(m.render(m.Poll("v")), cert_pem=vtn.cert_pem)
    body = _signed_by(vtn)
    start = body.index(b"<ds:X509Certificate>") + len(b"<ds:X509Certificate>")
    assert "cannot be read" in _refused(body[:start] + b"!!" + body[start:], cert_pem=vtn.cert_pem)
    moved = body.replace(b'oadr:Id="oadrSignedObject"', b'oadr:Id="elsewhere"')
    assert "oadr:Id" in _refused(moved, cert_pem=vtn.cert_pem)
    with pytest.raises(s.SignatureError, match="already signed"):
        s.sign(body, vtn.key_pem, vtn.cert_pem, SIGNED_AT)


# ------------------------------------------------------------------ schema


def test_the_schema_refuses_what_is_not_2_0b(xsd: schema.Schema) -> None:
    body = m.render(m.Poll("v")).replace(b"<ei:venID>v</ei:venID>", b"<ei:vtnID>v</ei:vtnID>")
    with pytest.raises(schema.SchemaError) as caught:
        xsd.check(body)
    assert "vtnID" in str(caught.value)
    assert not xsd.valid(b"<not-closed")


def test_the_schema_names_where_it_looked(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="oadr_20b.xsd"):
        schema.load(str(tmp_path))
    assert schema.installed_directory() is not None


@pytest.mark.parametrize("name", sorted(CASES))
def test_any_element_removed_or_garbled_gives_a_message_error_or_a_message(name: str) -> None:
    """Every mutation of a valid message either still reads or fails with a
    ``MessageError`` naming an element: never another exception."""
    from lxml import etree

    original = etree.fromstring(_theirs(name))
    count = len(list(original.iter()))
    for index in range(1, count):
        for mutation in ("remove", "garble", "empty", "double"):
            root = etree.fromstring(_theirs(name))
            element = list(root.iter())[index]
            if not isinstance(element.tag, str):
                continue
            if mutation == "remove":
                element.getparent().remove(element)
            elif mutation == "garble":
                element.text = "-x!"
            elif mutation == "empty":
                element.text = None
                for child in list(element):
                    element.remove(child)
            else:
                element.addnext(etree.fromstring(etree.tostring(element)))
            try:
                m.parse(etree.tostring(root))
            except m.MessageError as e:
                assert e.where.startswith(("oadrPayload", "oadr")) or e.where == "", (mutation, index, e)


# ------------------------------------------------------------------ round trips of anything


_WORDS = st.text(alphabet="abcXYZ019-_.:/ <>&'\"é", min_size=1, max_size=12).map(str.strip).filter(bool)
_TIMES = st.builds(lambda s, us: s + us / 1e6, st.integers(0, 4 * 10 ** 9), st.integers(0, 999_999))
_SECONDS = st.integers(0, 10 ** 7).map(float)
_VALUES = st.floats(allow_nan=False, allow_infinity=False, width=32)
_TARGETS = st.builds(m.Targets, *(st.lists(_WORDS, max_size=2).map(tuple) for _ in range(5)))
_ITEMS = st.none() | st.builds(m.Item, st.sampled_from(sorted(m.ITEM_NAMESPACES)), _WORDS, _WORDS,
                               st.sampled_from(["none", "k", "M", "m"]),
                               st.none() | st.builds(m.PowerAttributes, _VALUES, _VALUES, st.booleans()))
_SIGNALS = st.builds(
    m.EventSignal, _WORDS, _WORDS, _WORDS,
    st.lists(st.builds(m.Interval, _SECONDS, _VALUES, st.none() | _WORDS, st.none() | _TIMES), min_size=1,
             max_size=3).map(tuple),
    _ITEMS, st.none() | _VALUES, st.none() | _TARGETS)
_EVENTS = st.builds(
    m.OadrEvent, _WORDS, st.integers(0, 2 ** 31), st.sampled_from(m.EVENT_STATUSES), _TIMES, _SECONDS,
    st.lists(_SIGNALS, min_size=1, max_size=2).map(tuple), _WORDS, _TIMES, _TARGETS,
    st.sampled_from(m.RESPONSE_REQUIRED), st.none() | _SECONDS, st.booleans(), st.none() | st.integers(0, 99),
    st.none() | _TIMES, st.none() | _WORDS, st.none() | _WORDS, st.none() | _SECONDS, st.none() | _SECONDS,
    st.none() | _SECONDS)
_REPORTS = st.builds(
    m.Report, _WORDS, st.none() | _WORDS, _TIMES, st.none() | _WORDS, _WORDS, st.none() | _TIMES,
    st.none() | _SECONDS,
    st.lists(st.builds(m.ReportDescription, _WORDS, _WORDS, _WORDS, _ITEMS, st.none() | _WORDS,
                       st.none() | st.builds(m.SamplingRate, _SECONDS, _SECONDS, st.booleans()),
                       st.none() | _TARGETS), max_size=2).map(tuple),
    st.lists(st.builds(m.ReportInterval, _TIMES, _WORDS, _VALUES, st.none() | _SECONDS,
                       st.none() | st.integers(0, 100), st.none() | _VALUES, st.none() | _WORDS),
             max_size=3).map(tuple))
_RESPONSES = st.builds(m.EiResponse, st.integers(100, 599), _WORDS, _WORDS)
_ANY = st.one_of(
    st.builds(m.DistributeEvent, _WORDS, _WORDS, st.lists(_EVENTS, max_size=2).map(tuple), st.none() | _RESPONSES),
    st.builds(m.UpdateReport, _WORDS, st.lists(_REPORTS, max_size=2).map(tuple), st.none() | _WORDS),
    st.builds(m.RegisterReport, _WORDS, st.lists(_REPORTS, max_size=2).map(tuple), st.none() | _WORDS),
    st.builds(m.CreatedEvent, _RESPONSES, _WORDS, st.lists(st.builds(
        m.EventResponse, _WORDS, st.integers(0, 99), st.sampled_from(m.OPT_TYPES), _WORDS, st.integers(100, 599),
        st.none() | _WORDS), max_size=2).map(tuple)),
    st.builds(m.CreateReport, _WORDS, st.lists(st.builds(
        m.ReportRequest, _WORDS, _WORDS, st.lists(_WORDS, min_size=1, max_size=2).map(tuple), _SECONDS, _SECONDS,
        _WORDS, _TIMES, st.none() | _SECONDS) | st.builds(
        m.ReportRequest, _WORDS, _WORDS, st.lists(_WORDS, min_size=1, max_size=2).map(tuple), _SECONDS, _SECONDS,
        _WORDS), min_size=1, max_size=2).map(tuple), st.none() | _WORDS),
    st.builds(m.CreatedPartyRegistration, _RESPONSES, _WORDS, st.none() | _WORDS, st.none() | _WORDS,
              st.lists(st.builds(m.Profile, _WORDS, st.lists(_WORDS, max_size=2).map(tuple)), min_size=1,
                       max_size=2).map(tuple), st.none() | _SECONDS),
)


@settings(max_examples=100, deadline=None)
@given(_ANY)
def test_anything_rendered_parses_back_the_same(message: m.Message) -> None:
    assert m.parse(m.render(message)) == message
