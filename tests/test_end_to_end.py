"""The whole chain as a user runs it: real twistd processes on loopback.

One aggregator, two homes and their two software actuators start with the
real ``twistd`` commands on free ports, over mutual TLS with credentials
made by ``jeisson.pki`` (the ``credentials`` fixture) and with board keys.  Events that cut the limit below the
homes' demand are written to the aggregator's events file by the tests that
need one, as an operator would.  The tests check what an operator would:
every round within the limit, the boards' relays as the last round
allocated, loads restored after the event, bad input answered and logged
while the others keep going.

Each test says what state it needs through a fixture (the homes connected,
an event in force and its negotiation settled) and waits for it on the
status file with a deadline; none sleeps, and they pass in any order.
"""

import calendar
import itertools
import json
import os
import re
import shlex
import socket
import ssl
import subprocess
import sys
import time

import pytest

from jeisson.demo import twistd_command
from jeisson.wire import home_actuator as board_wire
from tests.lab import start_lab
from tests.waiting import wait_for

LIMIT_W = 4000


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def parse_utc(text: str) -> float:
    return calendar.timegm(time.strptime(text[:19], "%Y-%m-%dT%H:%M:%S")) + float("0" + text[19:-1])


class EventsFile:
    """The aggregator's events file, written as an operator would: each
    event with its latest version, in absolute UTC times, replaced whole."""

    def __init__(self, path):
        self.path = path
        self.events = {}  # id -> (end, section text)
        self._ids = itertools.count(1)
        self._save()

    def add(self, limit_w, start_in_s, length_s) -> str:
        event_id = f"peak-{next(self._ids)}"
        start = int(time.time() + start_in_s)
        end = start + length_s
        self.events[event_id] = (end, f"[event:{event_id}]\nversion = 1\nlimit_kw = {limit_w / 1000}\n"
                                      f"start = {utc(start)}\nend = {utc(end)}\n")
        self._save()
        return event_id

    def cancel(self, event_id) -> None:
        end, _ = self.events[event_id]
        self.events[event_id] = (end, f"[event:{event_id}]\nversion = 2\ncancelled = yes\n")
        self._save()

    def _save(self) -> None:
        # Ended events are left out (removing a section cancels nothing):
        # read again, they would only be refused as expired.
        now = time.time()
        text = "".join(section for end, section in self.events.values() if end > now)
        write(self.path + ".new", text)
        os.replace(self.path + ".new", self.path)


HOMES = {
    "home-a": [("a1", 2000, 10, "no"), ("a2", 1500, 5, "no"), ("a3", 300, 50, "yes")],
    "home-b": [("b1", 2500, 8, "no"), ("b2", 1000, 3, "no")],
}


@pytest.fixture(scope="module")
def system(tmp_path_factory, credentials):
    """The lab of tests/lab.py (each home with its board, the APIs on free
    ports), with a status file, an events file and the SSH manhole."""
    work = str(tmp_path_factory.mktemp("e2e"))
    events = EventsFile(os.path.join(work, "events.ini"))
    manhole = credentials.manhole
    lab = start_lab(work, HOMES, credentials, extra_ports=("manhole",),
                    aggregator_keys=f"status_file = {work}/status.json\nevents_file = {events.path}\n"
                                    "events_poll_s = 0.2\n",
                    aggregator_extra=lambda ports: f"\n[manhole]\nlisten = {ports['manhole']}\n"
                                                   f"host_key = {manhole}/ssh_host_ed25519_key\n"
                                                   f"authorized_keys = {manhole}/authorized_keys\n")
    try:
        yield {"work": work, "ports": lab.ports, "fleet": lab.fleet, "homes": HOMES, "events": events,
               "credentials": credentials}
    finally:
        lab.stop()


def read_log(system, name):
    with open(os.path.join(system["work"], f"{name}.log"), encoding="utf-8", errors="replace") as f:
        return f.read()


def status(system):
    try:
        with open(os.path.join(system["work"], "status.json"), encoding="utf-8") as f:
            return json.load(f)
    except (OSError, ValueError):
        return None



def full_w(system, home) -> float:
    return sum(watts for _, watts, *_ in system["homes"][home])


def all_ready(snapshot) -> bool:
    """Both homes connected and reporting, with every load their boards'
    to switch: none counted as must-run (at its rated power) for want of
    its board, besides the critical one; and every load as its owner set it
    (boards power up open, and the homes switch on what their owners want:
    an event begun meanwhile would find them switching on).  The boards'
    ``min_interval_s`` is 0 here: an event right after that switching would
    otherwise find relays the guard holds, truly over the limit for a round
    (the guard is tested with the board itself)."""
    homes = snapshot["homes"].values()
    return len(homes) == 2 and all(h["connected"] and h["demand_w"] and h["loads"] for h in homes) \
        and all(load["mode"] != "must" or load["critical"] for h in homes for load in h["loads"]) \
        and all(load["on"] == load["wanted"] for h in homes for load in h["loads"])


@pytest.fixture
def connected(system):
    """Both homes registered with the aggregator and their boards with them."""
    return wait_for(lambda: (s := status(system)) and all_ready(s) and s, 20,
                    "both homes to connect and report, with their boards")


@pytest.fixture
def settled_event(system, connected):
    """An event of LIMIT_W in force and its negotiation converged: the
    event's id and the first status that says so.  Cancelled afterwards."""
    events = system["events"]
    event_id = events.add(LIMIT_W, start_in_s=0, length_s=120)

    def settled():
        s = status(system)
        return s and s["event"] and s["event"]["id"] == event_id and s["negotiation"]["mode"] == "periodic" \
            and s["negotiation"]["converged_rounds"] and s["last_round"] and s["last_round"]["event"] == event_id \
            and s

    try:
        yield event_id, wait_for(settled, 30, f"event {event_id}'s negotiation to converge")
    finally:
        events.cancel(event_id)
        wait_for(lambda: (s := status(system)) and s["event"] is None, 15, f"event {event_id} to be cancelled")


def relay_states(system, board, count):
    """Each relay's state as the board's own log tells it: open at power-up,
    then as the home switched it."""
    states = dict.fromkeys(range(1, count + 1), False)
    for match in re.finditer(r"relay (\d+) switched (on|off)", read_log(system, board)):
        states[int(match.group(1))] = match.group(2) == "on"
    return states


def tls_context(credentials, home: str | None) -> ssl.SSLContext:
    """A client's TLS, as a home's (with ``home``'s certificate) or a
    stranger's (none), trusting the aggregator's CA."""
    context = ssl.create_default_context(cafile=credentials.ca)
    if home is not None:
        context.load_cert_chain(*credentials.home(home))
    return context


def line_exchange(port, payload: bytes, timeout=5.0, tls: ssl.SSLContext | None = None) -> tuple[bytes, bool]:
    """Send ``payload`` (over ``tls`` if given); return what came back and
    whether the peer closed."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as plain, \
            (tls.wrap_socket(plain, server_hostname="localhost") if tls else plain) as s:
        s.sendall(payload)
        received = b""
        closed = False
        deadline = time.monotonic() + 1.5
        while time.monotonic() < deadline:
            s.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = s.recv(65536)
            except TimeoutError:
                break
            except (ConnectionResetError, ssl.SSLError):
                closed = True
                break
            if not chunk:
                closed = True
                break
            received += chunk
        return received, closed


def test_plugins_are_listed_by_twistd():
    output = subprocess.run(twistd_command() + ["--help"], capture_output=True, text=True, check=True).stdout
    for name in ("jeisson-aggregator", "jeisson-home", "jeisson-actuator"):
        assert name in output


def test_plugins_are_discovered():
    from twisted.application.service import IServiceMaker
    from twisted.plugin import getPlugins

    names = {plugin.tapname for plugin in getPlugins(IServiceMaker)}
    assert {"jeisson-aggregator", "jeisson-home", "jeisson-actuator"} <= names


def test_missing_config_is_a_clear_usage_error(tmp_path):
    result = subprocess.run(twistd_command() + ["-n", "--pidfile=", "jeisson-home", "--config",
                                                str(tmp_path / "nope.ini")], capture_output=True, text=True)
    assert result.returncode != 0
    assert "cannot read config file" in result.stdout + result.stderr
    assert "nope.ini" in result.stdout + result.stderr


def test_a_config_typo_is_one_clear_line_not_a_traceback(tmp_path):
    path = tmp_path / "aggregator.ini"
    path.write_text("[aggregator]\nlisten = tcp:0\nround_periode_s = 5\n[home:h]\nsecret = x\n")
    result = subprocess.run(twistd_command() + ["-n", "--pidfile=", "jeisson-aggregator", "--config", str(path)],
                            capture_output=True, text=True)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{path}: [aggregator] round_periode_s: unknown key" in output
    assert "Traceback" not in output


def test_no_tls_section_stops_the_start_saying_how_to_make_credentials(tmp_path):
    path = tmp_path / "aggregator.ini"
    path.write_text("[aggregator]\nlisten = tcp:0:interface=127.0.0.1\n[home:h]\nsecret = x\n[store]\npath = none\n")
    result = subprocess.run(twistd_command() + ["-n", "--pidfile=", "jeisson-aggregator", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{path}: [tls]: missing section: the aggregator speaks TLS only" in output
    assert f"jeisson pki init {tmp_path}/pki" in output and "Traceback" not in output


def test_an_expired_certificate_stops_the_start_naming_the_file_and_key(tmp_path, credentials):
    import datetime

    from jeisson import pki

    folder = str(tmp_path / "pki")
    pki.init(folder)
    now = pki.now()
    pki.issue_home(folder, "home-x", not_before=now - datetime.timedelta(days=2),
                   not_after=now - datetime.timedelta(days=1))
    path = tmp_path / "home.ini"
    path.write_text(f"[home]\nid = home-x\nsecret = x\naggregator = tcp:127.0.0.1:9\nactuators = tcp:0\n"
                    f"[actuator:b]\nrelays = 1\nkey = {credentials.board('b')}\n"
                    f"[load:lamp]\nactuator = b\nrelay = 1\nrated_w = 60\n[store]\npath = none\n"
                    f"[tls]\nca = pki/ca.pem\ncert = pki/homes/home-x.pem\nkey = pki/homes/home-x.key\n")
    result = subprocess.run(twistd_command() + ["-n", "--pidfile=", "jeisson-home", "--config", str(path)],
                            capture_output=True, text=True, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{path}: [tls] cert: {folder}/homes/home-x.pem: expired on " in output, output
    assert "Traceback" not in output


def test_event_rounds_keep_the_limit_and_switch_relays_as_allocated(system, settled_event):
    event_id, snapshot = settled_event
    # Both speak the newest protocol version (FLEX loads as arrays, no ACK).
    for home in system["homes"]:
        assert "(protocol 2)" in read_log(system, home)
    # The allocation the negotiation settled on.
    last = snapshot["last_round"]
    assert last["within_limit"], last
    assert last["committed_w"] + last["unknown_w"] <= LIMIT_W
    assert last["unknown_w"] == 0
    # The critical load runs; the most valuable whole loads fill the rest:
    # a1 (10), then b1 (8) does not fit the 1700 W left, a2 (5) does.
    on = {h: set(last["homes"][h]["on"]) for h in ("home-a", "home-b")}
    assert on == {"home-a": {"a1", "a2", "a3"}, "home-b": set()}, last

    def relays_as_allocated():
        return all(relay_states(system, f"{home}-board", len(loads))[relay] == (load in on[home])
                   for home, loads in system["homes"].items() for relay, (load, *_rest) in enumerate(loads, 1))

    wait_for(relays_as_allocated, 10, "the boards' relays to be as allocated")
    # Every round the aggregator logged stayed within the limit.
    lines = [line for line in read_log(system, "aggregator").splitlines() if re.search(r"of limit \d+ W: ", line)]
    assert lines and all(": within limit" in line for line in lines), "\n".join(lines)


def test_event_end_restores_loads(system, connected):
    event_id = system["events"].add(LIMIT_W, start_in_s=0, length_s=6)
    # Loads shed in the event first: a restore of loads never shed proves nothing.
    wait_for(lambda: (s := status(system)) and s["event"] and s["event"]["id"] == event_id
             and any(h["level_w"] < full_w(system, hid) for hid, h in s["homes"].items()),
             6, f"the homes to shed loads in event {event_id}")
    wait_for(lambda: (s := status(system)) and s["event"] is None
             and all(h["level_w"] == full_w(system, hid) for hid, h in s["homes"].items()),
             6 + 15, "the homes to restore every load after the event")
    wait_for(lambda: all(all(relay_states(system, f"{home}-board", len(loads)).values())
                         for home, loads in system["homes"].items()), 10, "every relay to be on again")
    assert f"event {event_id} ended; released homes: home-a, home-b" in read_log(system, "aggregator")


def test_boards_power_up_open_and_their_homes_switch_on_what_owners_want(system, connected):
    for home in system["homes"]:
        log = read_log(system, f"{home}-board")
        assert "powered up: relays open (no relay's safe state is on)" in log
        assert "pickup switched" not in log, "safe states off: nothing closes on its own"
    wait_for(lambda: all(all(relay_states(system, f"{home}-board", len(loads)).values())
                         for home, loads in system["homes"].items()), 10, "every relay to be switched on")


def test_garbage_and_unknown_ids_get_clear_errors_and_the_rest_keeps_working(system, connected):
    port = system["ports"]["aggregator"]
    # A stranger without a certificate, or in plaintext, never gets a line in.
    reply, closed = line_exchange(port, b'HELLO {"home": "home-a", "secret": "secret-home-a", "versions": [1]}\n',
                                  tls=tls_context(system["credentials"], None))
    assert reply == b"" and closed
    reply, closed = line_exchange(port, b'HELLO {"home": "home-a", "secret": "secret-home-a", "versions": [1]}\n')
    assert b"REFUSED" not in reply and b"WELCOME" not in reply and closed
    # With home-a's certificate (as home-a itself would, or a thief of its key).
    as_home_a = tls_context(system["credentials"], "home-a")
    reply, closed = line_exchange(port, b"this is not a message\nPING {\"n\": 3}\n", tls=as_home_a)
    assert b'ERROR {"code":"unknown-verb"' in reply and b'PONG {"n":3}' in reply and not closed
    reply, closed = line_exchange(port, b'FLEX {"bid": 1, "loads": []}\n', tls=as_home_a)
    assert b'ERROR {"code":"state"' in reply and not closed
    reply, closed = line_exchange(port, b'HELLO {"home": "home-b", "secret": "secret-home-b", "versions": [1]}\n',
                                  tls=as_home_a)
    assert b'REFUSED {"code":"identity-mismatch"' in reply and closed
    reply, closed = line_exchange(port, b'HELLO {"home": "home-a", "secret": "wrong", "versions": [1]}\n',
                                  tls=as_home_a)
    assert b'REFUSED {"code":"bad-credential"' in reply and closed
    reply, closed = line_exchange(port, b"X" * 20000 + b"\n", tls=as_home_a)
    assert closed
    log = read_log(system, "aggregator")
    assert re.search(r"127\.0\.0\.1:\d+: line longer than 16384 bytes", log)
    assert re.search(r"refused 127\.0\.0\.1:\d+ claiming to be home home-b: identity-mismatch: this "
                     r"connection's certificate is for home 'home-a'", log)
    assert re.search(r"TLS handshake with 127\.0\.0\.1:\d+ failed", log)
    # The board side of a home.
    board_port = system["ports"]["home-a"]
    reply, closed = line_exchange(board_port, b"\x00\xff garbage\n")
    assert b"ERR syntax" in reply and not closed
    reply, closed = line_exchange(board_port, b"HELLO stranger 2 1 00\n")
    assert b"REFUSED unknown" in reply and closed
    # An impostor saying HELLO as the real board, without its key.
    reply, closed = line_exchange(board_port, b"HELLO home-a-board 5 1 00000\n")
    assert b"REFUSED auth" in reply and closed
    reply, closed = line_exchange(board_port, b"Y" * (board_wire.MAX_LINE + 100))
    assert closed
    assert re.search(rf"127\.0\.0\.1:\d+: line longer than {board_wire.MAX_LINE} bytes", read_log(system, "home-a"))
    # Everyone else is still there, and the processes are alive: a status
    # written a second after the impostors still has every home connected.
    after = time.time()
    snapshot = wait_for(lambda: (s := status(system)) and parse_utc(s["at"]) > after + 1 and s, 10,
                        "a status written after the impostors")
    assert all(h["connected"] for h in snapshot["homes"].values())
    assert system["fleet"].dead() == []
    # The real board was never dropped by the impostors.
    assert "actuator home-a-board unreachable" not in read_log(system, "home-a")


def test_manhole_shows_the_live_aggregator(system):
    """The operator's path, as the demo prints it: ssh with the operator's key,
    the host key checked against a known_hosts line."""
    from jeisson.manhole import known_hosts_line, ssh_command

    port = system["ports"]["manhole"]
    wait_for(lambda: "manhole (ssh) on" in read_log(system, "aggregator"), 15, "the manhole to listen")
    manhole = system["credentials"].manhole
    known_hosts = os.path.join(system["work"], "known_hosts")
    write(known_hosts, known_hosts_line(os.path.join(manhole, "ssh_host_ed25519_key"), port))
    command = shlex.split(ssh_command(port, os.path.join(manhole, "operator_ed25519"), known_hosts))
    result = subprocess.run([*command[:1], "-T", "-o", "BatchMode=yes", *command[1:]],
                            input="print('homes:', '+'.join(sorted(aggregator.homes)))\n", capture_output=True,
                            text=True, timeout=60)
    assert "homes: home-a+home-b" in result.stdout, (result.stdout, result.stderr)


def test_no_process_logged_a_traceback(system, connected):
    for name in ("aggregator", "home-a", "home-b", "home-a-board", "home-b-board"):
        log = read_log(system, name)
        assert "Traceback" not in log and "Unhandled" not in log, (name, log[-3000:])


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-v"]))
