"""What the OpenADR messages cost, beside OpenLEADR's: ``python bench/openadr_messages.py``.

Side by side in the same run, per message:

- reading a VTN's ``oadrDistributeEvent`` (two events, a SIMPLE signal of
  four intervals each): ``messages.parse`` against OpenLEADR's
  ``parse_message``;
- writing the VEN's ``oadrCreatedEvent``: ``messages.render`` against
  OpenLEADR's ``create_message``;
- signing it: ``signature.render_signed`` against ``create_message`` with a
  certificate and key (both P-256 ECDSA, signxml underneath);
- checking a signed distribute-event: ``signature.verify`` (OpenLEADR's
  check keeps a process-wide nonce cache, so it cannot be repeated on one
  message: not timed);
- the mapping of one event into jeisson offers (``mapping.map_event``).

The last line has the figures in microseconds per message.
"""

import datetime
import os
import sys
import time

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
if REPO not in sys.path:  # this tree's jeisson, not a copy installed in the virtualenv
    sys.path.insert(0, REPO)

from cryptography import x509  # noqa: E402
from cryptography.hazmat.primitives import serialization  # noqa: E402
from cryptography.x509.oid import ExtendedKeyUsageOID  # noqa: E402
from timing import per_call_seconds  # noqa: E402

from jeisson import pki  # noqa: E402
from jeisson.openadr import mapping, signature  # noqa: E402
from jeisson.openadr import messages as m  # noqa: E402

UTC = datetime.UTC


def _event(number: int, start: datetime.datetime):
    from openleadr import objects

    return objects.Event(
        event_descriptor=objects.EventDescriptor(event_id=f"event-{number}", modification_number=1,
                                                 market_context="http://market", event_status="far",
                                                 created_date_time=start),
        active_period=objects.ActivePeriod(dtstart=start, duration=datetime.timedelta(hours=2),
                                           tolerance={"startafter": datetime.timedelta(minutes=5)}),
        event_signals=[objects.EventSignal(
            intervals=[objects.Interval(dtstart=start + datetime.timedelta(minutes=30 * i),
                                        duration=datetime.timedelta(minutes=30), signal_payload=1 + i % 3)
                       for i in range(4)],
            signal_name="SIMPLE", signal_type="level", signal_id="simple")],
        targets=[objects.Target(ven_id="ven-1")])


def main() -> None:
    from openleadr import messaging

    start = datetime.datetime.now(UTC) + datetime.timedelta(days=1)
    distribute = messaging.create_message("oadrDistributeEvent", request_id="r1", vtn_id="vtn",
                                          events=[_event(1, start), _event(2, start)]).encode()
    ca_key, ca_cert = pki.make_ca("bench CA")
    key, cert = pki.issue(ca_key, ca_cert, "ven", [x509.DNSName("ven")], ExtendedKeyUsageOID.CLIENT_AUTH)
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)

    message = m.parse(distribute)
    assert isinstance(message, m.DistributeEvent)
    answers = [mapping.map_event(e, mapping.Settings({1: 9000.0, 2: 6000.0, 3: 3000.0}, ven_id="ven-1"))
               for e in message.events]
    created = mapping.created_event("ven-1", "r1", answers)
    theirs = dict(response={"response_code": 200, "response_description": "OK", "request_id": "r1"},
                  ven_id="ven-1", event_responses=[
                      {"response_code": 200, "response_description": a.reason, "request_id": "r1",
                       "event_id": a.event_id, "modification_number": a.modification_number, "opt_type": a.opt}
                      for a in answers])

    parse_ours = per_call_seconds(lambda: m.parse(distribute), 300)
    parse_theirs = per_call_seconds(lambda: messaging.parse_message(distribute), 300)
    render_ours = per_call_seconds(lambda: m.render(created), 300)
    render_theirs = per_call_seconds(lambda: messaging.create_message("oadrCreatedEvent", **theirs), 300)
    sign_ours = per_call_seconds(lambda: signature.render_signed(created, key_pem, cert_pem, time.time()), 100)
    sign_theirs = per_call_seconds(
        lambda: messaging.create_message("oadrCreatedEvent", cert=cert_pem, key=key_pem, **theirs), 100)
    signed = signature.render_signed(message, key_pem, cert_pem, time.time())
    verify_ours = per_call_seconds(lambda: signature.verify(signed, time.time(), cert_pem=cert_pem), 100)
    settings = mapping.Settings({1: 9000.0, 2: 6000.0, 3: 3000.0}, ven_id="ven-1")
    map_one = per_call_seconds(lambda: mapping.map_event(message.events[0], settings), 1000)

    def us(seconds: float) -> float:
        return seconds * 1e6

    print(f"parse oadrDistributeEvent ({len(distribute)} bytes): {us(parse_ours):.0f} us jeisson, "
          f"{us(parse_theirs):.0f} us OpenLEADR")
    print(f"render oadrCreatedEvent: {us(render_ours):.0f} us jeisson, {us(render_theirs):.0f} us OpenLEADR")
    print(f"sign oadrCreatedEvent: {us(sign_ours):.0f} us jeisson, {us(sign_theirs):.0f} us OpenLEADR")
    print(f"verify a signed oadrDistributeEvent: {us(verify_ours):.0f} us jeisson")
    print(f"map one event (4 intervals) into offers: {us(map_one):.0f} us")
    print(f"parse_us={us(parse_ours):.0f} parse_openleadr_us={us(parse_theirs):.0f} render_us={us(render_ours):.0f} "
          f"render_openleadr_us={us(render_theirs):.0f} sign_us={us(sign_ours):.0f} "
          f"sign_openleadr_us={us(sign_theirs):.0f} verify_us={us(verify_ours):.0f} map_us={us(map_one):.0f}")


if __name__ == "__main__":
    main()
