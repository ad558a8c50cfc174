"""From a VTN's event to every home's budget: ``python bench/openadr.py --homes 1000``.

One OpenLEADR VTN (``tests/openadr_vtn.py vtn``, a process of its own, over
TLS with client certificates and XML signatures both ways) and two VENs of
it, polling at the interval it asks (``--poll-s``):

- **jeisson**: the real ``twistd jeisson-aggregator`` with ``[openadr]``
  on, and N simulated homes in a few helper processes (``bench/round_latency.py``'s:
  each on its own loopback connection, speaking the real protocol, with a
  board answering at once; their links are plaintext on loopback, as
  round_latency's baseline: this bench measures the OpenADR side);
- **OpenLEADR**: its own ``OpenADRClient`` (``tests/openadr_vtn.py ven``),
  the baseline, whose event handler opts in at once.

For each trial the VTN creates an event for both that starts at once
(SIMPLE level 2: 60 % of the homes' demand); measured, per VEN:

``event``
    From the VTN's ``add_event`` to: for jeisson, the last home's first
    ``BUDGET`` under that event (every home has its budget); for
    OpenLEADR, its event handler's call (it has the event; it has no homes).
``delivered``
    The same, from the moment the VTN answered that VEN's poll with the
    event (so without the wait for the next poll, the same for both).  The
    VTN records that moment from an OpenLEADR hook that runs as a task
    after its handler, so it is good to a few tens of milliseconds (a
    VEN may even seem to have an event a little before it was sent).
``file`` (jeisson only)
    The baseline of jeisson's own path in the same run: the same event
    written to the aggregator's events file (read every 100 ms), from its
    writing to every home's budget.  ``delivered`` less ``file`` is about
    what the OpenADR side adds (reading, checking the signature, mapping).

The VTN is the same process for both, and the trials alternate nothing:
both VENs see each event on their own next poll.  Last line::

    homes=N trials=T poll_s=P jeisson_event_p50_ms=... jeisson_event_p99_ms=... jeisson_delivered_p50_ms=...
    jeisson_delivered_p99_ms=... jeisson_file_p50_ms=... jeisson_file_p99_ms=... openleadr_event_p50_ms=...
    openleadr_event_p99_ms=...
    openleadr_delivered_p50_ms=... openleadr_delivered_p99_ms=... missed=...
"""

import argparse
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import time

HERE = pathlib.Path(__file__).resolve()
ROOT = HERE.parent.parent
sys.path[:0] = [str(HERE.parent), str(ROOT)]

import round_latency as rl  # noqa: E402  (bench/ is not a package)

VTN_SCRIPT = ROOT / "tests" / "openadr_vtn.py"


def records(path: pathlib.Path) -> list[dict]:
    try:
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    except OSError:
        return []


def wait_record(path: pathlib.Path, match, seconds: float, what: str) -> dict:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        for record in records(path):
            if match(record):
                return record
        time.sleep(0.02)
    raise SystemExit(f"timed out after {seconds} s waiting for {what} (see {path})")


def every_budget(helpers: list[subprocess.Popen], event: str, length: float) -> float | None:
    """When the last home had its budget under ``event`` (each helper says
    once all its homes have committed); None if not within the event."""
    try:
        replies = [rl.read_json_line(helper, length + 30) for helper in helpers]
    except TimeoutError:
        return None
    if any(r.get("event") != event for r in replies):
        raise SystemExit(f"unexpected from a helper: {replies}")
    return max(r["last_budget"] for r in replies)


def delivered(vtn_record: pathlib.Path, event_id: str, ven_id: str) -> float:
    """When the VTN first answered ``ven_id``'s poll with ``event_id``."""
    def match(record: dict) -> bool:
        return record["kind"] == "distributed" and record["ven_id"] == ven_id and \
            any(i == event_id for i, _ in record["events"])

    return wait_record(vtn_record, match, 30, f"{event_id} delivered to {ven_id}")["t"]


def fingerprint_of(path: str) -> str:
    from jeisson.openadr.signature import fingerprint

    with open(path, "rb") as f:
        return fingerprint(f.read())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homes", type=int, default=1000)
    parser.add_argument("--trials", type=int, default=10)
    parser.add_argument("--procs", type=int, default=3, help="helper processes for the homes")
    parser.add_argument("--loads", type=int, default=8)
    parser.add_argument("--poll-s", type=float, default=1.0, help="the poll interval the VTN asks of its VENs")
    parser.add_argument("--keep", action="store_true", help="keep the work directory")
    args = parser.parse_args()

    from jeisson import pki
    from jeisson.openadr.mapping import jeisson_id
    from tests.openadr_vtn import make_credentials

    n = args.homes
    work = pathlib.Path(tempfile.mkdtemp(prefix="jeisson-openadr-"))
    processes: list[subprocess.Popen] = []
    helpers: list[subprocess.Popen] = []
    stdin_of: dict[str, subprocess.Popen] = {}
    try:
        pki.init(str(work / "pki"))
        certs = make_credentials(str(work / "certs"), str(work / "pki"), ("aggregator", "openleadr"))
        vtn_port, agg_port = rl.free_port(), rl.free_port()
        vtn_record = work / "vtn.jsonl"
        vtn = subprocess.Popen(
            [sys.executable, str(VTN_SCRIPT), "vtn", "--port", str(vtn_port), "--cert", certs["vtn"],
             "--key", certs["vtn-key"], "--ca", str(work / "pki" / "ca.pem"), "--poll-s", f"{args.poll_s:g}",
             "--report-s", "60", "--record", str(vtn_record),
             "--ven", f"aggregator={fingerprint_of(certs['aggregator'])}",
             "--ven", f"openleadr={fingerprint_of(certs['openleadr'])}"],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=open(work / "vtn.log", "wb"), cwd=ROOT)
        processes.append(vtn)
        stdin_of["vtn"] = vtn
        wait_record(vtn_record, lambda r: r["kind"] == "ready", 60, "the VTN")
        url = f"https://127.0.0.1:{vtn_port}/OpenADR2/Simple/2.0b"

        demand = sum(w for i in range(n) for w, _ in rl.loads_of(i, args.loads))
        level_kw = 0.6 * demand / 1000
        config = [f"[aggregator]\nlisten = tcp:{agg_port}:interface=127.0.0.1:backlog=4096\nheartbeat_s = 30\n"
                  "round_period_s = 3600\nround_timeout_s = 60\nconverge_s = 0\nseed = 1\n"
                  "events_file = events.ini\nevents_poll_s = 0.1\n"
                  "max_connections_per_address = 0\nmax_new_connections_per_address = 0\n"
                  "[tls]\nplaintext = yes\n"
                  f"[openadr]\nvtn_url = {url}\nven_name = aggregator\ncert = {certs['aggregator']}\n"
                  f"key = {certs['aggregator-key']}\nvtn_ca = {certs['vtn-ca']}\n"
                  f"vtn_fingerprint = {fingerprint_of(certs['vtn'])}\n"
                  f"levels_kw = 1: {demand / 1000:.3f}, 2: {level_kw:.3f}, 3: {0.3 * demand / 1000:.3f}\n"
                  "timeout_s = 10\n"]
        config += [f"[home:{rl.home_id(i)}]\nsecret = s-{rl.home_id(i)}\n" for i in range(n)]
        (work / "aggregator.ini").write_text("".join(config))
        (work / "events.ini").write_text("")
        aggregator = subprocess.Popen(
            [str(rl.BIN / "twistd"), "-n", "--pidfile=", "--logfile", str(work / "aggregator.log"),
             "jeisson-aggregator", "--config", str(work / "aggregator.ini")], cwd=work)
        processes.append(aggregator)
        ven_record = work / "openleadr.jsonl"
        ven = subprocess.Popen(
            [sys.executable, str(VTN_SCRIPT), "ven", "--url", url, "--name", "openleadr", "--cert",
             certs["openleadr"], "--key", certs["openleadr-key"], "--ca", certs["vtn-ca"],
             "--vtn-fingerprint", fingerprint_of(certs["vtn"]), "--record", str(ven_record)],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=open(work / "openleadr.log", "wb"), cwd=ROOT)
        processes.append(ven)
        rl.wait_for_listening(agg_port, 60)
        started = time.monotonic()
        helpers = [subprocess.Popen([sys.executable, str(HERE.parent / "round_latency.py"), "--run-simulated-homes",
                                     str(agg_port), str(first), str(count), str(args.loads)],
                                    stdout=subprocess.PIPE, text=True)
                   for first, count in rl.spread(n, args.procs)]
        for helper in helpers:
            reply = rl.read_json_line(helper, 600)
            if "ready" not in reply:
                raise SystemExit(f"a helper failed: {reply}")
        print(f"{n} homes registered in {time.monotonic() - started:.1f} s", flush=True)
        for name in ("aggregator", "openleadr"):
            wait_record(vtn_record, lambda r, name=name: r["kind"] == "registered" and r["ven_id"] == name, 60,
                        f"{name} to register with the VTN")
        wait_record(ven_record, lambda r: r["kind"] == "ready", 60, "OpenLEADR's VEN")

        length = 3.0 + 2.0 * n / 1000
        rows: dict[str, dict[str, list[float]]] = {"jeisson": {"event": [], "delivered": [], "file": []},
                                                    "openleadr": {"event": [], "delivered": []}}
        missed = 0
        for k in range(args.trials):
            event_id = f"bench-{k}"
            command = {"cmd": "event", "id": event_id, "signal": "SIMPLE",
                       "intervals": [{"start": "+0", "duration_s": length, "payload": 2}]}
            vtn.stdin.write((json.dumps(command) + "\n").encode())
            vtn.stdin.flush()
            created = wait_record(vtn_record, lambda r, e=event_id: r["kind"] == "event" and r["id"] == e, 10,
                                  f"the VTN to create {event_id}")["t"]

            last_budget = every_budget(helpers, jeisson_id(event_id, 0), length)
            if last_budget is None:
                print(f"trial {k + 1}: not every home had its budget and committed within the event", flush=True)
                missed += 1
                continue
            theirs = wait_record(ven_record, lambda r, e=event_id: r["kind"] == "event" and r["event_id"] == e, 30,
                                 f"OpenLEADR's VEN to get {event_id}")["t"]
            to_us = delivered(vtn_record, event_id, "aggregator")
            to_them = delivered(vtn_record, event_id, "openleadr")
            rows["jeisson"]["event"].append((last_budget - created) * 1e3)
            rows["jeisson"]["delivered"].append((last_budget - to_us) * 1e3)
            rows["openleadr"]["event"].append((theirs - created) * 1e3)
            rows["openleadr"]["delivered"].append((theirs - to_them) * 1e3)
            print(f"trial {k + 1}: every home's budget {rows['jeisson']['event'][-1]:.0f} ms after the VTN's event "
                  f"({rows['jeisson']['delivered'][-1]:.0f} ms after its delivery); OpenLEADR's VEN had it after "
                  f"{rows['openleadr']['event'][-1]:.0f} ms ({rows['openleadr']['delivered'][-1]:.0f} ms after "
                  "delivery)", flush=True)
            # The event's end and the homes' restoring, before the next.
            time.sleep(max(created + length + 1.0 + n / 2000 - time.time(), 0))
            # The baseline in the same run: the same event through jeisson's
            # own events file (read every 100 ms), from its writing.
            file_event = f"file-{k}"
            written = time.time()
            (work / "events.ini").write_text(
                f"[event:{file_event}]\nlimit_kw = {level_kw:.3f}\nstart = {rl.utc(written)}\n"
                f"end = {rl.utc(written + length)}\n")
            last_budget = every_budget(helpers, file_event, length)
            if last_budget is None:
                print(f"trial {k + 1}: not every home had its budget under the events file's event", flush=True)
                missed += 1
                continue
            rows["jeisson"]["file"].append((last_budget - written) * 1e3)
            print(f"trial {k + 1}: the same event through the events file: every home's budget "
                  f"{rows['jeisson']['file'][-1]:.0f} ms after it was written", flush=True)
            time.sleep(max(written + length + 1.0 + n / 2000 - time.time(), 0))
        if not rows["jeisson"]["event"]:
            raise SystemExit("no trial in which every home had its budget")
        fields = [f"homes={n}", f"trials={len(rows['jeisson']['event'])}", f"poll_s={args.poll_s:g}"]
        for who, figures in rows.items():
            for what, values in figures.items():
                if not values:
                    continue
                fields += [f"{who}_{what}_p50_ms={rl.percentile(values, 0.5):.1f}",
                           f"{who}_{what}_p99_ms={rl.percentile(values, 0.99):.1f}"]
        fields.append(f"missed={missed}")
        print(" ".join(fields))
    finally:
        for helper in helpers:
            rl.stop(helper)
        for process in reversed(processes):
            rl.stop(process)
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
