"""OpenLEADR's VTN (or its VEN) as a separate process, for jeisson's OpenADR tests and bench.

jeisson did not write the other end: this script only drives OpenLEADR
(``openleadr`` on PyPI) and records what it sees.  Two commands::

    python tests/openadr_vtn.py vtn --port 0 --cert vtn.pem --key vtn.key --ca ven-ca.pem \\
        --ven aggregator=FINGERPRINT [--ven ref=FINGERPRINT] --poll-s 1 --report-s 2 --record vtn.jsonl
    python tests/openadr_vtn.py ven --url https://127.0.0.1:PORT/OpenADR2/Simple/2.0b --name ref \\
        --cert ven.pem --key ven.key --ca vtn-ca.pem --vtn-fingerprint FP --record ven.jsonl

**vtn**: ``openleadr.OpenADRServer`` over HTTPS with client certificates
(checked against ``--ca``) and XML signatures (its messages signed with
``--cert``/``--key``, the VENs' checked: a VEN is known by its name and the
OpenADR fingerprint of its certificate, ``--ven NAME=FINGERPRINT``; its
venID is ``NAME``, its registrationID ``reg-NAME``, so a restarted VTN
still knows it).  It offers TELEMETRY_USAGE reports a granularity of
``--report-s``.  Commands come as JSON lines on standard input:

``{"cmd": "event", "id": "e1", "signal": "SIMPLE", "intervals": [{"start": "+5", "duration_s": 60, "payload": 2}],
"randomize_s": 0, "test": false, "ven": ["aggregator"]}``
    A new event (to every known VEN unless ``ven`` names some).  ``signal``
    is ``SIMPLE`` (type ``level``), ``LOAD_DISPATCH`` (type ``setpoint``) or
    ``LOAD_CONTROL`` (type ``x-loadControlCapacity``), or give
    ``signal_type``; ``start``: epoch seconds or ``+SECONDS`` from now.
``{"cmd": "modify", "id": "e1", "intervals": [...], "randomize_s": 30}``
    New intervals or randomization: the modification number goes up.
``{"cmd": "cancel", "id": "e1"}``
``{"cmd": "mode", "mode": "ok" | "slow" | "malformed" | "error"}``, ``"delay_s"`` for ``slow``
    How the VTN answers from now on: as OpenLEADR does; after ``delay_s``;
    with bytes that are not XML; with HTTP 500.
``{"cmd": "stop"}``

Everything it sees is appended to ``--record`` as JSON lines with ``t``
(epoch seconds) and ``kind``: ``ready`` (``port``, ``fingerprint``),
``message`` (a VEN's request: ``type``, ``ven_id``), ``registered``,
``opt`` (``ven_id``, ``event_id``, ``modification_number``, ``opt_type``),
``report`` (``ven_id``, ``values`` as ``[dtstart, W]``), ``created_report``,
``event`` (``id``, ``modification_number``, ``what``: created, modified,
cancelled), ``distributed`` (``ven_id``, ``events`` as ``[id, modification]``),
``mode``, ``error``.

**ven**: ``openleadr.OpenADRClient``, the reference VEN for the bench: it
opts in to every event and records ``event`` (``event_id``,
``modification_number``) when its handler is called.
"""

import argparse
import asyncio
import json
import logging
import sys
import time
from datetime import UTC, datetime, timedelta
from typing import Any


def make_credentials(directory: str, ven_ca_dir: str, ven_names: tuple[str, ...] = ("aggregator",)) -> dict[str, str]:
    """The VTN's own CA and certificate (for 127.0.0.1 and localhost), a
    stranger's CA and a VTN certificate from it (a wrong certificate), and a
    client certificate for each VEN name from the CA of ``ven_ca_dir`` (a
    ``jeisson pki`` folder).  Returns their paths: ``vtn-ca``, ``vtn``,
    ``vtn-key``, ``stranger``, ``stranger-key``, and per VEN ``NAME``,
    ``NAME-key``."""
    import ipaddress
    import os

    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    from jeisson import pki

    os.makedirs(directory, exist_ok=True)
    paths: dict[str, str] = {}

    def write(name: str, key: Any, cert: Any) -> None:
        paths[name] = os.path.join(directory, f"{name}.pem")
        paths[f"{name}-key"] = os.path.join(directory, f"{name}.key")
        pki._write(paths[f"{name}-key"], pki._key_pem(key), private=True)
        pki._write(paths[name], pki._cert_pem(cert), private=False)

    names = [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
    ca_key, ca_cert = pki.make_ca("OpenLEADR test VTN CA")
    write("vtn-ca", ca_key, ca_cert)
    write("vtn", *pki.issue(ca_key, ca_cert, "localhost", names, ExtendedKeyUsageOID.SERVER_AUTH))
    other_key, other_cert = pki.make_ca("a stranger's CA")
    write("stranger", *pki.issue(other_key, other_cert, "localhost", names, ExtendedKeyUsageOID.SERVER_AUTH))
    ven_key, ven_cert = pki._load_ca(ven_ca_dir)
    for name in ven_names:
        write(name, *pki.issue(ven_key, ven_cert, name, [x509.DNSName(name)], ExtendedKeyUsageOID.CLIENT_AUTH))
    return paths


SIGNAL_TYPES = {"SIMPLE": "level", "LOAD_DISPATCH": "setpoint", "LOAD_CONTROL": "x-loadControlCapacity"}


class Recorder:
    def __init__(self, path: str):
        self.file = open(path, "a", buffering=1, encoding="utf-8")  # noqa: SIM115

    def __call__(self, kind: str, **fields: Any) -> None:
        fields.update(t=time.time(), kind=kind)
        self.file.write(json.dumps(fields, default=str) + "\n")


def _moment(value: Any) -> datetime:
    if isinstance(value, str) and value.startswith("+"):
        return datetime.now(UTC) + timedelta(seconds=float(value[1:]))
    return datetime.fromtimestamp(float(value), UTC)


def _intervals(spec: list[dict[str, Any]]) -> list[Any]:
    from openleadr import objects

    intervals = []
    start = None
    for i, interval in enumerate(spec):
        at = _moment(interval["start"]) if "start" in interval else start
        if at is None:
            raise ValueError("the first interval needs a start")
        duration = timedelta(seconds=float(interval["duration_s"]))
        intervals.append(objects.Interval(dtstart=at, duration=duration, signal_payload=float(interval["payload"]),
                                          uid=i))
        start = at + duration
    return intervals


class VTN:
    def __init__(self, args: argparse.Namespace, record: Recorder):
        from aiohttp import web
        from openleadr import OpenADRServer, hooks

        self.args = args
        self.record = record
        self.known = dict(entry.split("=", 1) for entry in args.ven)  # name -> fingerprint
        self.mode = "ok"
        self.delay_s = 0.0
        self.server = OpenADRServer(
            vtn_id=args.vtn_id, cert=args.cert, key=args.key, http_cert=args.cert, http_key=args.key,
            http_ca_file=args.ca, http_port=args.port, http_host="127.0.0.1", ven_lookup=self.ven_lookup,
            requested_poll_freq=timedelta(seconds=args.poll_s), show_fingerprint=False,
            verify_message_signatures=not args.no_signatures)
        self.server.add_handler("on_create_party_registration", self.on_create_party_registration)
        self.server.add_handler("on_register_report", self.on_register_report)
        self.server.add_handler("on_created_report", self.on_created_report)
        vtn = self

        @web.middleware
        async def answer(request: Any, handler: Any) -> Any:
            return await vtn.middleware(request, handler)

        self.server.app.middlewares.append(answer)
        hooks.register("before_handle", self.before_handle)
        hooks.register("after_handle", self.after_handle)

    # -- OpenLEADR's handlers

    def ven_lookup(self, ven_id: str) -> dict[str, str]:
        fingerprint = self.known.get(ven_id)
        if fingerprint is None:
            return {}
        return {"ven_id": ven_id, "ven_name": ven_id, "fingerprint": fingerprint, "registration_id": f"reg-{ven_id}"}

    def on_create_party_registration(self, payload: dict[str, Any]) -> Any:
        name = payload.get("ven_name")
        fingerprint = payload.get("fingerprint")
        if name not in self.known or self.known[name] != fingerprint:
            self.record("error", what="registration refused", ven_name=name, fingerprint=fingerprint)
            return False
        self.record("registered", ven_id=name, ven_name=name)
        return name, f"reg-{name}"

    def on_register_report(self, ven_id: str, resource_id: str, measurement: str, unit: str, scale: str,
                           min_sampling_interval: timedelta, max_sampling_interval: timedelta) -> Any:
        self.record("report_offered", ven_id=ven_id, resource_id=resource_id, measurement=measurement, unit=unit,
                    scale=scale, min_s=min_sampling_interval.total_seconds() if min_sampling_interval else None,
                    max_s=max_sampling_interval.total_seconds() if max_sampling_interval else None)

        def received(values: list[tuple[datetime, float]]) -> None:
            self.record("report", ven_id=ven_id, resource_id=resource_id,
                        values=[[at.timestamp(), value] for at, value in values])

        return received, timedelta(seconds=self.args.report_s)

    def on_created_report(self, payload: dict[str, Any]) -> None:
        self.record("created_report", ven_id=payload.get("ven_id"),
                    pending=[p.get("report_request_id") for p in payload.get("pending_reports") or []])

    async def before_handle(self, message_type: str, payload: dict[str, Any]) -> None:
        self.record("message", type=message_type, ven_id=payload.get("ven_id"))
        if message_type == "oadrCreatedEvent":
            for response in payload.get("event_responses") or []:
                self.record("opt", ven_id=payload.get("ven_id"), event_id=response.get("event_id"),
                            modification_number=response.get("modification_number"),
                            opt_type=response.get("opt_type"))

    async def after_handle(self, response_type: str, payload: dict[str, Any]) -> None:
        if response_type == "oadrDistributeEvent":
            from openleadr import utils

            self.record("distributed", ven_id=payload.get("ven_id"),
                        events=[[utils.getmember(e, "event_descriptor.event_id"),
                                 utils.getmember(e, "event_descriptor.modification_number")]
                                for e in payload.get("events") or []])

    async def middleware(self, request: Any, handler: Any) -> Any:
        from aiohttp import web

        if self.mode == "slow":
            await asyncio.sleep(self.delay_s)
        elif self.mode == "malformed":
            return web.Response(body=b"<oadrPayload><not-closed", content_type="application/xml")
        elif self.mode == "error":
            return web.Response(status=500, text="the VTN is broken")
        return await handler(request)

    # -- commands

    def targets(self, command: dict[str, Any]) -> list[str]:
        return list(command.get("ven") or self.known)

    def find(self, ven_id: str, event_id: str) -> Any:
        from openleadr import utils

        return utils.find_by(self.server.events.get(ven_id, []), "event_descriptor.event_id", event_id)

    def command(self, command: dict[str, Any]) -> None:
        from openleadr import utils

        cmd = command["cmd"]
        if cmd == "event":
            signal = command.get("signal", "SIMPLE")
            signal_type = command.get("signal_type", SIGNAL_TYPES.get(signal, "level"))
            for ven_id in self.targets(command):
                intervals = _intervals(command["intervals"])
                event_id = self.server.add_event(
                    ven_id=ven_id, signal_name=signal, signal_type=signal_type, intervals=intervals,
                    event_id=command["id"], callback=self.opted, response_required=command.get("response", "always"))
                event = self.find(ven_id, event_id)
                utils.setmember(event, "event_descriptor.test_event", bool(command.get("test", False)))
                if command.get("randomize_s"):
                    utils.setmember(event, "active_period.tolerance",
                                    {"startafter": timedelta(seconds=float(command["randomize_s"]))})
            self.record("event", id=command["id"], modification_number=0, what="created",
                        start=intervals[0].dtstart.timestamp())
        elif cmd == "modify":
            number = None
            for ven_id in self.targets(command):
                event = self.find(ven_id, command["id"])
                if event is None:
                    continue
                tolerance = utils.getmember(event, "active_period.tolerance", None)
                if "intervals" in command:
                    intervals = _intervals(command["intervals"])
                    utils.setmember(utils.getmember(event, "event_signals")[0], "intervals", intervals)
                    utils.setmember(event, "active_period", utils.get_active_period_from_intervals(intervals))
                if "randomize_s" in command:
                    tolerance = {"startafter": timedelta(seconds=float(command["randomize_s"]))}
                if tolerance:
                    utils.setmember(event, "active_period.tolerance", tolerance)
                number = utils.increment_event_modification_number(event)
                utils.setmember(event, "event_descriptor.modification_date_time", datetime.now(UTC))
                self.server.events_updated[ven_id] = True
            self.record("event", id=command["id"], modification_number=number, what="modified")
        elif cmd == "cancel":
            for ven_id in self.targets(command):
                self.server.cancel_event(ven_id, command["id"])
            event = self.find(self.targets(command)[0], command["id"])
            number = utils.getmember(event, "event_descriptor.modification_number") if event is not None else None
            self.record("event", id=command["id"], modification_number=number, what="cancelled")
        elif cmd == "mode":
            self.mode = command["mode"]
            self.delay_s = float(command.get("delay_s", 0))
            self.record("mode", mode=self.mode, delay_s=self.delay_s)
        elif cmd == "stop":
            raise SystemExit(0)
        else:
            raise ValueError(f"unknown command {cmd!r}")

    def opted(self, ven_id: str, event_id: str, opt_type: str) -> None:
        """OpenLEADR's callback for the first answer to an event (``opt``
        records every answer, from the message itself)."""

    async def run(self) -> None:
        from openleadr import utils

        await self.server.run()
        port = self.server.app_runner.addresses[0][1]
        with open(self.args.cert, "rb") as f:
            fingerprint = utils.certificate_fingerprint(f.read())
        self.record("ready", port=port, fingerprint=fingerprint)
        print(json.dumps({"ready": port, "fingerprint": fingerprint}), flush=True)
        await read_commands(self.command, self.record)


async def read_commands(handle: Any, record: Recorder) -> None:
    # A thread reads: standard input may be a file, which epoll refuses.
    loop = asyncio.get_running_loop()
    while True:
        line = await loop.run_in_executor(None, sys.stdin.buffer.readline)
        if not line:
            return  # the test closed our stdin: stop
        if not line.strip():
            continue
        try:
            handle(json.loads(line))
        except SystemExit:
            return
        except Exception as e:
            record("error", what="command", line=line.decode(errors="replace").strip(), why=repr(e))
        else:
            record("done", line=line.decode(errors="replace").strip())


async def ven(args: argparse.Namespace, record: Recorder) -> None:
    from openleadr import OpenADRClient

    client = OpenADRClient(ven_name=args.name, vtn_url=args.url, cert=args.cert, key=args.key, ca_file=args.ca,
                           vtn_fingerprint=args.vtn_fingerprint, show_fingerprint=False, ven_id=args.name)

    async def on_event(event: dict[str, Any]) -> str:
        descriptor = event["event_descriptor"]
        record("event", event_id=descriptor["event_id"], modification_number=descriptor["modification_number"])
        return "optIn"

    async def on_update_event(event: dict[str, Any]) -> str:
        return await on_event(event)

    client.add_handler("on_event", on_event)
    client.add_handler("on_update_event", on_update_event)
    await client.run()
    record("ready", ven_id=client.ven_id, registration_id=client.registration_id)
    print(json.dumps({"ready": client.ven_id}), flush=True)

    def command(line: dict[str, Any]) -> None:
        if line.get("cmd") == "stop":
            raise SystemExit(0)

    await read_commands(command, record)
    await client.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="role", required=True)
    v = sub.add_parser("vtn")
    v.add_argument("--port", type=int, default=0)
    v.add_argument("--vtn-id", default="openleadr-vtn")
    v.add_argument("--cert", required=True)
    v.add_argument("--key", required=True)
    v.add_argument("--ca", required=True, help="the CA the VENs' client certificates are checked against")
    v.add_argument("--ven", action="append", default=[], help="NAME=FINGERPRINT of a VEN it accepts")
    v.add_argument("--poll-s", type=float, default=1.0)
    v.add_argument("--report-s", type=float, default=2.0)
    v.add_argument("--no-signatures", action="store_true")
    v.add_argument("--record", required=True)
    c = sub.add_parser("ven")
    c.add_argument("--url", required=True)
    c.add_argument("--name", required=True)
    c.add_argument("--cert", required=True)
    c.add_argument("--key", required=True)
    c.add_argument("--ca", required=True)
    c.add_argument("--vtn-fingerprint")
    c.add_argument("--record", required=True)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    record = Recorder(args.record)
    if args.role == "vtn":
        asyncio.run(VTN(args, record).run())
    else:
        asyncio.run(ven(args, record))


if __name__ == "__main__":
    main()
