"""OpenADR end to end: a real ``twistd jeisson-aggregator`` as a VEN of OpenLEADR's VTN.

The VTN is OpenLEADR's ``OpenADRServer`` (jeisson did not write it), run
by ``tests/openadr_vtn.py`` as a separate process on a free port, over
TLS with client certificates and XML signatures both ways.  The aggregator
(``[openadr]`` on, its own store), two homes and their software boards run
with the real ``twistd`` commands over mutual TLS, as in
``tests/test_end_to_end.py``.  The VTN creates, modifies (with
randomization) and cancels events and asks for TELEMETRY_USAGE reports;
the tests check what the homes physically draw (the boards' measurements)
against each event's limit, and what the VTN recorded: the opt responses
and the reports.  Then the VTN fails every way it can (malformed XML, slow,
HTTP errors, down, a certificate from another CA): the aggregator's log
says so clearly, the event it had accepted keeps holding the homes, and
when the VTN is back nothing it was told is lost.

Every wait is on state (the VTN's record, the status file, the log) with
a deadline; nothing sleeps.
"""

import json
import os
import subprocess
import sys
import time

import pytest

from jeisson.demo import Fleet, free_ports
from jeisson.openadr.signature import fingerprint
from tests.openadr_vtn import make_credentials
from tests.waiting import wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
VTN_SCRIPT = os.path.join(HERE, "openadr_vtn.py")
LEVELS = {1: 5000.0, 2: 4000.0, 3: 2500.0}
# The homes: a (2000, 1500, critical 300) and b (2500, 1000): 7.3 kW wanted.
HOMES = {
    "home-a": [("a1", 2000, 10, "no"), ("a2", 1500, 5, "no"), ("a3", 300, 50, "yes")],
    "home-b": [("b1", 2500, 8, "no"), ("b2", 1000, 3, "no")],
}
FULL_W = sum(w for loads in HOMES.values() for _, w, *_ in loads)
NOISE = 0.03  # the boards' measurement noise is 1 %; a margin above it


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def der_fingerprint(path: str) -> str:
    with open(path, "rb") as f:
        return fingerprint(f.read())


class VTNProcess:
    """OpenLEADR's VTN in its own process, commanded through its stdin;
    what it saw is read from its record (JSON lines)."""

    def __init__(self, work: str, port: int, cert: str, key: str, ven_ca: str, vens: dict[str, str],
                 name: str = "vtn"):
        self.record_path = os.path.join(work, f"{name}.jsonl")
        self.log = open(os.path.join(work, f"{name}.log"), "ab")  # noqa: SIM115
        command = [sys.executable, VTN_SCRIPT, "vtn", "--port", str(port), "--cert", cert, "--key", key,
                   "--ca", ven_ca, "--poll-s", "1", "--report-s", "2", "--record", self.record_path]
        for ven, fp in vens.items():
            command += ["--ven", f"{ven}={fp}"]
        self.offset = self._size()
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=self.log, stderr=self.log,
                                        cwd=os.path.dirname(HERE))
        wait_for(lambda: self.records("ready") or self.process.poll() is not None, 30, "the VTN to listen")
        assert self.process.poll() is None, f"the VTN stopped: see {self.log.name}"

    def _size(self) -> int:
        try:
            return os.path.getsize(self.record_path)
        except OSError:
            return 0

    def records(self, kind: str | None = None) -> list[dict]:
        try:
            with open(self.record_path, encoding="utf-8") as f:
                f.seek(self.offset)
                lines = [json.loads(line) for line in f if line.strip()]
        except OSError:
            return []
        return [r for r in lines if kind is None or r["kind"] == kind]

    def command(self, **command) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write((json.dumps(command) + "\n").encode())
        self.process.stdin.flush()
        wait_for(lambda: any(json.loads(r["line"]) == command for r in self.records("done") + self.records("error")),
                 10, f"the VTN to take {command}")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.log.close()


@pytest.fixture(scope="module")
def lab(tmp_path_factory, credentials):
    work = str(tmp_path_factory.mktemp("openadr"))
    certs = make_credentials(os.path.join(work, "certs"), credentials.directory)
    vtn_port, agg_port, port_a, port_b = free_ports(4)
    ven_fp = der_fingerprint(certs["aggregator"])
    vtn_fp = der_fingerprint(certs["vtn"])
    vtn = VTNProcess(work, vtn_port, certs["vtn"], certs["vtn-key"], credentials.ca, {"aggregator": ven_fp})
    levels = ", ".join(f"{level}: {w / 1000:g}" for level, w in LEVELS.items())
    write(os.path.join(work, "aggregator.ini"), f"""
[aggregator]
listen = tcp:{agg_port}:interface=127.0.0.1
heartbeat_s = 1
round_period_s = 2
round_timeout_s = 2
status_file = {work}/status.json

[home:home-a]
secret = secret-a

[home:home-b]
secret = secret-b

[openadr]
vtn_url = https://127.0.0.1:{vtn_port}/OpenADR2/Simple/2.0b
ven_name = aggregator
cert = {certs['aggregator']}
key = {certs['aggregator-key']}
vtn_ca = {certs['vtn-ca']}
vtn_fingerprint = {vtn_fp}
levels_kw = {levels}
capacity_kw = {FULL_W / 1000:g}
poll_s = 1
timeout_s = 2
backoff_max_s = 2
""" + credentials.aggregator_tls())
    ports = {"home-a": port_a, "home-b": port_b}
    for home, loads in HOMES.items():
        board = f"{home}-board"
        text = f"""
[home]
reconnect_base_s = 1
reconnect_cap_s = 4
id = {home}
secret = secret-{home[-1]}
aggregator = tcp:127.0.0.1:{agg_port}
actuators = tcp:{ports[home]}:interface=127.0.0.1
heartbeat_s = 1
command_timeout_s = 2
measure_period_s = 1

[actuator:{board}]
relays = {len(loads)}
key = {credentials.board(board)}
""" + credentials.home_tls(home)
        board_text = f"""
[actuator]
id = {board}
home = tcp:127.0.0.1:{ports[home]}
failsafe_after_s = 5
measure_period_s = 0.5
noise = 0.01
seed = 7
cold_load_min_s = 0
cold_load_max_s = 1
key = {credentials.board(board)}
"""
        for relay, (load, watts, priority, critical) in enumerate(loads, 1):
            text += f"\n[load:{load}]\nactuator = {board}\nrelay = {relay}\nrated_w = {watts}\n" \
                    f"priority = {priority}\ncritical = {critical}\n"
            board_text += f"\n[relay:{relay}]\nload_w = {watts}\nsafe_state = off\nmin_interval_s = 0\n"
        write(os.path.join(work, f"{home}.ini"), text)
        write(os.path.join(work, f"{board}.ini"), board_text)
    fleet = Fleet(work)
    fleet.start("aggregator", "jeisson-aggregator", os.path.join(work, "aggregator.ini"))
    for home in HOMES:
        fleet.start(home, "jeisson-home", os.path.join(work, f"{home}.ini"))
        fleet.start(f"{home}-board", "jeisson-actuator", os.path.join(work, f"{home}-board.ini"))
    state = {"work": work, "vtn": vtn, "fleet": fleet, "certs": certs, "vtn_port": vtn_port,
             "ven_fp": ven_fp, "credentials": credentials}
    try:
        yield state
    finally:
        fleet.stop()
        state["vtn"].stop()


def status(lab):
    try:
        with open(os.path.join(lab["work"], "status.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None


def aggregator_log(lab) -> str:
    with open(os.path.join(lab["work"], "aggregator.log"), encoding="utf-8", errors="replace") as f:
        return f.read()


def drawn_w(snapshot) -> float | None:
    """What the homes' boards measure, in all (None until both report)."""
    homes = snapshot["homes"].values()
    if len(homes) != 2 or any(h["measured_w"] is None or not h["connected"] for h in homes):
        return None
    return sum(h["measured_w"] for h in homes)


def ready(lab):
    def all_on():
        s = status(lab)
        drawn = drawn_w(s) if s else None
        return s and drawn is not None and drawn > FULL_W * (1 - NOISE) and \
            all(load["on"] == load["wanted"] for h in s["homes"].values() for load in h["loads"])

    wait_for(all_on, 30, "both homes to connect with every load on")


def opts(lab, event_id):
    return [(r["modification_number"], r["opt_type"]) for r in lab["vtn"].records("opt") if r["event_id"] == event_id]


def held_under(lab, limit_w: float, deadline_s: float, what: str) -> float:
    """Wait until the boards measure the homes under ``limit_w``; return
    when (epoch seconds)."""
    wait_for(lambda: (s := status(lab)) and (d := drawn_w(s)) is not None and d <= limit_w * (1 + NOISE),
             deadline_s, what)
    return time.time()


def test_the_aggregator_registers_and_reports_its_measured_total(lab):
    vtn = lab["vtn"]
    wait_for(lambda: vtn.records("registered"), 30, "the aggregator to register with the VTN")
    assert vtn.records("registered")[0]["ven_id"] == "aggregator"
    offered = wait_for(lambda: vtn.records("report_offered"), 20, "the aggregator to offer its reports")
    assert offered[0]["measurement"] and offered[0]["ven_id"] == "aggregator"
    wait_for(lambda: vtn.records("created_report"), 20, "the aggregator to create the report the VTN asked for")
    ready(lab)
    reports = wait_for(lambda: [r for r in vtn.records("report") if r["values"] and r["values"][-1][1] > 0], 20,
                       "a TELEMETRY_USAGE report with the measured total")
    value = reports[-1]["values"][-1][1]
    assert FULL_W * 0.5 < value < FULL_W * 1.5, reports[-1]
    assert "registered with VTN openleadr-vtn as venID aggregator" in aggregator_log(lab)


def test_an_event_created_modified_and_cancelled_by_the_vtn_holds_the_homes(lab):
    vtn = lab["vtn"]
    ready(lab)
    start = time.time() + 4
    vtn.command(cmd="event", id="peak-1", signal="SIMPLE", randomize_s=2,
                intervals=[{"start": start, "duration_s": 60, "payload": 2}])
    wait_for(lambda: (0, "optIn") in opts(lab, "peak-1"), 15, "the aggregator's optIn to peak-1")
    # The limit holds within a few rounds of its start (the start window included).
    held_under(lab, LEVELS[2], start + 2 + 15 - time.time(), "the homes under level 2's limit")
    vtn.command(cmd="modify", id="peak-1", randomize_s=2,
                intervals=[{"start": time.time() + 3, "duration_s": 60, "payload": 3}])
    wait_for(lambda: (1, "optIn") in opts(lab, "peak-1"), 15, "the aggregator's answer to modification 1")
    held_under(lab, LEVELS[3], 20, "the homes under level 3's limit after the modification")
    vtn.command(cmd="cancel", id="peak-1")
    wait_for(lambda: (2, "optIn") in opts(lab, "peak-1"), 15, "the aggregator's answer to the cancellation")
    wait_for(lambda: (s := status(lab)) and s["event"] is None and (d := drawn_w(s)) and d > LEVELS[1], 20,
             "the homes' loads back once the event is cancelled")
    log = aggregator_log(lab)
    assert "OpenADR event peak-1 modification 0: optIn" in log
    assert "OpenADR event peak-1 modification 2" in log


def test_a_test_event_is_answered_and_not_applied(lab):
    vtn = lab["vtn"]
    ready(lab)
    vtn.command(cmd="event", id="drill-1", signal="SIMPLE", test=True,
                intervals=[{"start": "+1", "duration_s": 30, "payload": 3}])
    wait_for(lambda: opts(lab, "drill-1"), 15, "the aggregator's answer to the test event")
    assert (s := status(lab)) and s["event"] is None


def test_load_dispatch_setpoints_interval_by_interval(lab):
    vtn = lab["vtn"]
    ready(lab)
    start = time.time() + 3
    # OpenLEADR sends LOAD_DISPATCH setpoints without an item: kW.
    vtn.command(cmd="event", id="dispatch-1", signal="LOAD_DISPATCH",
                intervals=[{"start": start, "duration_s": 20, "payload": 4.5},
                           {"duration_s": 20, "payload": 2.5}])
    wait_for(lambda: (0, "optIn") in opts(lab, "dispatch-1"), 15, "the aggregator's optIn to dispatch-1")
    held_under(lab, 4500, start + 15 - time.time(), "the homes under the first interval's 4.5 kW")
    assert time.time() < start + 20, "the first interval ended before the homes were under its setpoint"
    held_under(lab, 2500, start + 20 + 15 - time.time(), "the homes under the second interval's 2.5 kW")
    wait_for(lambda: (s := status(lab)) and s["event"] is None and (d := drawn_w(s)) and d > 4500, 30,
             "the homes' loads back after the last interval")


def test_load_control_capacity_as_a_fraction_of_capacity_kw(lab):
    vtn = lab["vtn"]
    ready(lab)
    vtn.command(cmd="event", id="capacity-1", signal="LOAD_CONTROL", signal_type="x-loadControlCapacity",
                intervals=[{"start": "+2", "duration_s": 25, "payload": 0.45}])
    wait_for(lambda: (0, "optIn") in opts(lab, "capacity-1"), 15, "the aggregator's optIn to capacity-1")
    limit = 0.45 * FULL_W
    s = wait_for(lambda: (s := status(lab)) and s["event"] and s, 15, "capacity-1 in force")
    assert s["event"]["limit_w"] == pytest.approx(limit)
    held_under(lab, limit, 20, "the homes under 45 % of capacity_kw")
    wait_for(lambda: (s := status(lab)) and s["event"] is None and (d := drawn_w(s)) and d > limit, 40,
             "the homes' loads back after capacity-1")


def test_a_failing_vtn_is_said_clearly_and_the_accepted_event_keeps_running(lab):
    vtn = lab["vtn"]
    ready(lab)
    vtn.command(cmd="event", id="long-1", signal="SIMPLE",
                intervals=[{"start": "+2", "duration_s": 300, "payload": 2}])
    wait_for(lambda: (0, "optIn") in opts(lab, "long-1"), 15, "the aggregator's optIn to long-1")
    held_under(lab, LEVELS[2], 25, "the homes under long-1's limit")

    def logged(text, what, timeout=20):
        offset = len(aggregator_log(lab))
        wait_for(lambda: text in aggregator_log(lab)[offset:], timeout, what)

    for mode, text in (("malformed", "malformed: "), ("error", "http: "), ("slow", "slow: ")):
        vtn.command(cmd="mode", mode=mode, delay_s=4)
        logged(text, f"the aggregator to log the VTN's {mode} answers")
        vtn.command(cmd="mode", mode="ok")
        logged("the VTN answers again", f"the aggregator to find the VTN again after {mode}")
    # Down: the VTN's process is gone.
    vtn.stop()
    logged("connection refused: the VTN is not listening", "the aggregator to log the VTN down")
    # A VTN with a certificate from another CA on the same port.
    certs = lab["certs"]
    lab["vtn"] = vtn = VTNProcess(lab["work"], lab["vtn_port"], certs["stranger"], certs["stranger-key"],
                                  lab["credentials"].ca, {"aggregator": lab["ven_fp"]}, name="stranger")
    logged("the VTN's certificate was refused", "the aggregator to refuse the stranger's certificate")
    assert vtn.records("registered") == [] and vtn.records("message") == []
    # All along, long-1 held the homes.
    s = status(lab)
    assert s["event"] is not None and s["event"]["limit_w"] == LEVELS[2]
    assert drawn_w(s) <= LEVELS[2] * (1 + NOISE)
    vtn.stop()
    # The real VTN back (a new process: it knows the VEN by its certificate).
    lab["vtn"] = vtn = VTNProcess(lab["work"], lab["vtn_port"], certs["vtn"], certs["vtn-key"],
                                  lab["credentials"].ca, {"aggregator": lab["ven_fp"]}, name="vtn-again")
    wait_for(lambda: any(r["type"] == "oadrPoll" for r in vtn.records("message")), 20,
             "the aggregator to poll the VTN again")
    log = aggregator_log(lab)
    assert "Traceback" not in log
    assert (s := status(lab)) and s["event"] is not None  # still held: nothing acknowledged was lost


def test_an_aggregator_restart_resumes_without_registering_again_or_losing_the_event(lab):
    import signal

    vtn = lab["vtn"]
    # long-1 (the test before) may still hold the homes: long-2 goes lower.
    wait_for(lambda: (s := status(lab)) and drawn_w(s) is not None, 30, "both homes connected and measuring")
    vtn.command(cmd="event", id="long-2", signal="SIMPLE",
                intervals=[{"start": "+2", "duration_s": 300, "payload": 3}])
    wait_for(lambda: (0, "optIn") in opts(lab, "long-2"), 15, "the aggregator's optIn to long-2")
    held_under(lab, LEVELS[3], 25, "the homes under long-2's limit")
    registered = len(vtn.records("registered"))
    fleet = lab["fleet"]
    name, process = next((n, p) for n, p in fleet.running if n == "aggregator")
    process.send_signal(signal.SIGTERM)
    process.wait(20)
    fleet.running.remove((name, process))
    polls = len([r for r in vtn.records("message") if r["type"] == "oadrPoll"])
    fleet.start("aggregator", "jeisson-aggregator", os.path.join(lab["work"], "aggregator.ini"))
    wait_for(lambda: "OpenADR: resuming as venID aggregator" in aggregator_log(lab), 30,
             "the aggregator to resume its registration from its store")
    wait_for(lambda: len([r for r in vtn.records("message") if r["type"] == "oadrPoll"]) > polls + 2, 30,
             "the aggregator to poll again after its restart")
    assert len(vtn.records("registered")) == registered  # resumed, not registered again
    assert opts(lab, "long-2") == [(0, "optIn")]  # answered once, not forgotten nor repeated
    s = wait_for(lambda: (s := status(lab)) and s["event"] and drawn_w(s) is not None and s, 30,
                 "the homes back with the restarted aggregator")
    assert s["event"]["limit_w"] == LEVELS[3]
    held_under(lab, LEVELS[3], 20, "the homes still under long-2's limit after the restart")
