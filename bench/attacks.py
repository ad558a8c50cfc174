"""Issue 15's attacks against the real lab: ``python bench/attacks.py [--quick]``.

The lab is the shipped one (``etc/jeisson``: the aggregator, three homes,
five software boards, the simulated radio), started as real ``twistd``
processes by ``bench/procs.py`` on the default, secure path: mutual TLS
between the homes and the aggregator, boards on protocol version 2 (every
line sealed), an SSH manhole (keys only, loopback), every listener's
default limits.  One DR event is in force for the whole run with a limit
(100 kW) far above the homes' demand, so the aggregator runs a round every
``round_period_s`` and no honest round has any reason to switch a relay.
Beside what ``bench/procs.py`` lays out: the manhole is the default SSH one
(``jeisson.demo.manhole_ssh``), the radio simulator has one more radio (the
rogue's), and board home-1-b reaches its home through a ``Tap`` (someone on
that LAN link, there from the start, who sees every line: see
``replayed_set``).

Each attack runs from its own loopback address (127.0.0.2 and up: any
127/8 address reaches a listener on 127.0.0.1 on Linux), so that the
per-address limits and lockouts it provokes fall on the attacker, never on
the honest homes and boards, which all use 127.0.0.1.  After each attack
the bench waits for the next round, then judges the attack's window, from
its first byte to that round:

refused
    the attack's own criterion (each function's docstring), and
honest homes served
    every round within ``round_period_s + round_timeout_s + 2 s`` of the
    previous one (or of the window's start), no honest home lost its
    aggregator, no board's failsafe tripped, and no relay moved.

How a relay moved by the attack is told from one moved by an honest round:
with the limit far above the demand and the homes settled before the first
attack, an honest round switches nothing, so *any* switch a board logs
(``switched ... by the home`` or ``... switched relay N ... (its safe
state)``) inside a window counts as moved, whoever caused it.  The one
exception is the attack that stops a home on purpose (a rogue listener on
its board port): its boards are meant to go to their safe states (that is
the pass criterion), and what its home does once restarted is honest; so
for that home and its boards only the switches *by the home* while it is
down count (none can be honest then).

One line per attack, then ``attacks=N refused=N honest_homes_dropped=N
relays_moved=N``.  An attack not refused is said loudly (``NOT REFUSED``)
and the run goes on.  ``--quick`` uses small counts (10^4 junk lines, 8
flooding connections, 50 peers that never read, 8 slowloris peers);
the default, the issue's (10^6, 64, 1,000, 64).  ``--only NAME`` runs
some attacks (names as printed, repeatable); ``--workdir`` keeps the lab's
folder (configs, credentials, JSON logs) for a look afterwards.
"""

import argparse
import contextlib
import datetime
import importlib
import os
import resource
import shutil
import signal
import socket
import ssl
import struct
import subprocess
import sys
import tempfile
import termios
import threading
import time
import tty
import warnings
from collections.abc import Callable
from typing import Any

import attrs

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from procs import BenchError, Fleet, Layout, lay_out, read_ini, said, text, write_ini  # noqa: E402

from jeisson import pki  # noqa: E402
from jeisson.demo import PKI, free_ports, manhole_ssh, port_of  # noqa: E402
from jeisson.wire import aggregator_home as dr  # noqa: E402
from jeisson.wire import board_auth, xbee  # noqa: E402

LIMIT_KW = 100.0  # far above the homes' demand: no honest round sheds anything
ROUND_SLACK_S = 2.0
HELLO_TIMEOUT_S = 10.0  # jeisson.aggregator.home_link and jeisson.home.board_link
CLOSE_GRACE_S = 5.0  # [aggregator] close_grace_s's default
BAD_LINES_CAP = 10  # max_bad_lines_before_hello's default (and errors_per_interval's)
ROGUE_HOME = "home-3"  # the home stopped for the rogue listener (boards home-3-a, home-3-b)
ROGUE_RADIO = 0x0013A200DEADBEEF
QUIET_S = 12.0  # no relay switched for this long: the lab has settled (a home staggers its loads 5 s apart)


@attrs.frozen
class Sizes:
    junk_lines: int
    floods: int
    flood_s: float
    non_readers: int
    slowloris: int
    manhole_guesses: int


QUICK = Sizes(junk_lines=10**4, floods=8, flood_s=8.0, non_readers=50, slowloris=8, manhole_guesses=15)
FULL = Sizes(junk_lines=10**6, floods=64, flood_s=20.0, non_readers=1000, slowloris=64, manhole_guesses=15)


@attrs.define
class Outcome:
    """What an attack saw: ``refused`` by its own criterion, and why."""

    refused: bool
    detail: str
    skipped: bool = False
    excused_home: str | None = None  # a home the attack stopped on purpose
    excused_until: float | None = None  # when that home was started again


@attrs.frozen
class Health:
    max_gap_s: float
    dropped: tuple[str, ...]
    moved: tuple[str, ...]
    failsafes: tuple[str, ...]
    bound_s: float

    @property
    def ok(self) -> bool:
        return self.max_gap_s <= self.bound_s and not self.dropped and not self.moved and not self.failsafes

    def line(self) -> str:
        said_ = f"rounds max gap {self.max_gap_s:.1f} s (bound {self.bound_s:g} s)"
        said_ += f", homes dropped {len(self.dropped)}" + (f" {list(self.dropped)}" if self.dropped else "")
        said_ += f", relays moved {len(self.moved)}" + (f" {list(self.moved)}" if self.moved else "")
        said_ += f", failsafes {len(self.failsafes)}" + (f" {list(self.failsafes)}" if self.failsafes else "")
        return said_


# ------------------------------------------------------------------ the lab


class Lab:
    """The lab's processes, the attackers' addresses and credentials."""

    def __init__(self, workdir: str, sizes: Sizes):
        self.sizes = sizes
        self.workdir = workdir
        self.layout: Layout = lay_out(workdir, limit_kw=LIMIT_KW, event_start=time.time() + 5,
                                      event_length=6 * 3600, manhole=True)
        self.pki = os.path.join(workdir, PKI)
        aggregator_ini = self.layout.specs["aggregator"].config
        aggregator = read_ini(aggregator_ini)
        assert self.layout.manhole is not None
        self.manhole_port = self.layout.manhole[0]
        aggregator["manhole"] = manhole_ssh(self.manhole_port)  # the default: SSH, keys only
        write_ini(aggregator, aggregator_ini)
        self.aggregator_config = aggregator["aggregator"]
        self.round_bound_s = (float(self.aggregator_config["round_period_s"])
                              + float(self.aggregator_config["round_timeout_s"]) + ROUND_SLACK_S)
        self.secrets = {name[5:]: aggregator[name]["secret"] for name in aggregator.sections()
                        if name.startswith("home:")}
        self.board_ports = {home: port_of(read_ini(self.layout.specs[home].config)["home"]["actuators"])
                            for home in self.layout.homes
                            if "actuators" in read_ini(self.layout.specs[home].config)["home"]}
        self.radio_tty: str | None = None
        if "radio" in self.layout.specs:
            radio_ini = self.layout.specs["radio"].config
            radio = read_ini(radio_ini)
            radio["device:rogue"] = {"link": "rogue.tty", "address": f"{ROGUE_RADIO:016X}", "mode": "api2"}
            write_ini(radio, radio_ini)
            self.radio_tty = os.path.join(workdir, "rogue.tty")
            self.board_radio = {name[7:]: int(radio[name]["address"], 16) for name in radio.sections()
                                if name.startswith("device:") and name != "device:rogue"}
            self.coordinator_radio = int(radio["radio"]["address"], 16)
        # Someone on home-1-b's LAN link from the start (replayed_set).
        self.tap_board: str | None = "home-1-b" if "home-1-b" in self.layout.boards else None
        self.tap: Tap | None = None
        if self.tap_board is not None:
            board_ini = self.layout.specs[self.tap_board].config
            board = read_ini(board_ini)
            tap_port = free_ports(1)[0]
            board["actuator"]["home"] = f"tcp:127.0.0.1:{tap_port}"
            write_ini(board, board_ini)
            self.tap = Tap(tap_port, self.board_ports[self.layout.board_home[self.tap_board]])
        self.fleet = Fleet(self.layout)
        self._next_address = 2
        self.excused_homes: set[str] = set()
        self._make_credentials()

    def address(self) -> str:
        """A loopback address no one has used yet (127.0.0.2 and up)."""
        n = self._next_address
        self._next_address += 1
        return f"127.0.{n // 250}.{2 + n % 250}" if n >= 250 else f"127.0.0.{n}"

    def _make_credentials(self) -> None:
        """An unenrolled home's certificate from the lab's CA (a certificate
        someone obtained, for no configured home), an expired one, a revoked
        one, and a certificate for home-1 from another CA."""
        now = datetime.datetime.now(datetime.UTC)
        pki.issue_home(self.pki, "intruder", force=True)
        pki.issue_home(self.pki, "home-expired", force=True, not_before=now - datetime.timedelta(days=30),
                       not_after=now - datetime.timedelta(days=1))
        pki.issue_home(self.pki, "home-revoked", force=True)
        self.other_ca = os.path.join(self.workdir, "other-ca")
        pki.init(self.other_ca, force=True)
        pki.issue_home(self.other_ca, "home-1", force=True)
        for i in range(2):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"stranger-{i}", "-f",
                            os.path.join(self.workdir, f"stranger-{i}")], check=True)

    def home_cert(self, home: str, folder: str | None = None) -> tuple[str, str]:
        return pki.home_paths(folder or self.pki, home)

    # -- lives

    def start(self) -> None:
        order = ["aggregator", "radio"] + list(self.layout.homes) + list(self.layout.boards)
        for name in order:
            if name in self.layout.specs:
                self.fleet.start(name)
        self.fleet.wait(self.fleet.all_up, 90, "every home and board linked")
        self.wait_round(time.time(), 60)
        self.settle()

    def settle(self) -> None:
        """Wait until no relay has switched for ``QUIET_S`` s."""

        def quiet() -> bool:
            last = max((float(e["log_time"]) for board in self.layout.boards
                        for e in self.fleet.current(board) if _switch(e)), default=0.0)
            return time.time() - last >= QUIET_S

        self.fleet.wait(quiet, 120, "the relays to settle")

    def wait_round(self, after: float, timeout: float) -> float:
        """The time of the first round at or after ``after``."""
        return float(self.fleet.wait(lambda: next((float(e["log_time"]) for e in self.fleet.rounds(after)), None),
                                     timeout, "a round"))

    def stop_home(self, home: str) -> float:
        self.excused_homes.add(home)
        return self.fleet.kill9(home)

    def pid(self, name: str) -> int:
        return self.fleet.popen[name].pid

    def rss_kib(self, name: str) -> int:
        with open(f"/proc/{self.pid(name)}/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
        return 0

    def log_size(self, name: str) -> int:
        try:
            return os.path.getsize(self.fleet.tails[name].path)
        except OSError:
            return 0

    # -- judging

    def health(self, start: float, end: float, excused: Outcome | None = None) -> Health:
        self.fleet.poll()
        rounds = sorted(float(e["log_time"]) for e in self.fleet.rounds(start - 60) if float(e["log_time"]) <= end)
        before = [t for t in rounds if t < start]
        marks = ([before[-1]] if before else [start]) + [t for t in rounds if t >= start]
        gaps = [b - a for a, b in zip(marks, marks[1:], strict=False)]
        if marks[-1] < end:
            gaps.append(end - marks[-1])
        max_gap = max(gaps, default=end - start)
        down_home = excused.excused_home if excused else None
        back = excused.excused_until if excused and excused.excused_until else end
        dropped = []
        for home in self.layout.homes:
            if home == down_home:
                continue
            for event in self.fleet.events(home, start):
                if float(event["log_time"]) <= end and said(event, "lost the aggregator"):
                    dropped.append(home)
                    break
        moved, failsafes = [], []
        for board in self.layout.boards:
            mine = self.layout.board_home[board] == down_home
            for event in self.fleet.events(board, start):
                at = float(event["log_time"])
                if at > end:
                    break
                if mine:
                    if at <= back and said(event, "switched {state} by the home"):
                        moved.append(f"{board}: {text(event)}")
                    continue
                if _switch(event):
                    moved.append(f"{board}: {text(event)}")
                if said(event, "nothing heard from the home"):
                    failsafes.append(board)
        return Health(max_gap, tuple(dropped), tuple(moved), tuple(failsafes), self.round_bound_s)

    def aggregator_said(self, since: float, *fragments: str) -> list[str]:
        self.fleet.poll()
        return [text(e) for e in self.fleet.events("aggregator", since)
                if all(f in text(e) for f in fragments)]

    def said_by(self, name: str, since: float, *fragments: str) -> list[str]:
        self.fleet.poll()
        return [text(e) for e in self.fleet.events(name, since) if all(f in text(e) for f in fragments)]


def _switch(event: dict[str, Any]) -> bool:
    return said(event, "switched {state} by the home") or said(event, "(its safe state)")


# ------------------------------------------------------------------ clients


def tls_context(cert: tuple[str, str] | None = None, version: ssl.TLSVersion | None = None) -> ssl.SSLContext:
    """A client that checks nothing of the server (an attacker does not
    care), with ``cert`` as its client certificate if given."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    if version is not None:
        context.set_ciphers("ALL:@SECLEVEL=0")
        with warnings.catch_warnings():  # TLS 1.0 and 1.1 are deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            context.minimum_version = context.maximum_version = version
    if cert is not None:
        context.load_cert_chain(*cert)
    return context


def connect(port: int, source: str, context: ssl.SSLContext | None = None, timeout: float = 10.0) -> socket.socket:
    """A connection from ``source`` to 127.0.0.1:``port``, TLS if
    ``context`` (its handshake done; a refusal may still come as the first
    read, as TLS 1.3 sends it after the client's Finished)."""
    raw = socket.create_connection(("127.0.0.1", port), timeout=timeout, source_address=(source, 0))
    if context is None:
        return raw
    try:
        return context.wrap_socket(raw)
    except BaseException:
        raw.close()
        raise


def exchange(sock: socket.socket, lines: list[bytes], wait_s: float = 4.0) -> tuple[list[bytes], str]:
    """Send ``lines``, then read for up to ``wait_s`` s: the lines received
    and how it ended (``closed``, ``reset``, ``open``, or the TLS alert)."""
    data, how = b"", "open"
    try:
        for line in lines:
            sock.sendall(line)
        deadline = time.monotonic() + wait_s
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            if not chunk:
                how = "closed"
                break
            data += chunk
    except ssl.SSLError as e:
        how = f"TLS: {e.reason or e}"
    except ConnectionResetError:
        how = "reset"
    except (BrokenPipeError, OSError) as e:
        how = f"{type(e).__name__}"
    finally:
        with contextlib.suppress(OSError):
            sock.close()
    return [line for line in data.split(b"\n") if line], how


def is_closed(sock: socket.socket) -> bool:
    """Whether the server has ended ``sock`` (read without blocking: what
    a peer that never reads would find, had it read)."""
    raw = sock
    try:
        raw.setblocking(False)
        while True:
            chunk = raw.recv(65536)
            if not chunk:
                return True
    except (BlockingIOError, ssl.SSLWantReadError):
        return False
    except (OSError, ssl.SSLError):
        return True


def hello_line(home: str, secret: str) -> bytes:
    """The plaintext line a home sends first, as ``jeisson.home`` writes it."""
    return dr.serialize(dr.Hello(home, secret, tuple(dr.PROTOCOL_VERSIONS)))


def verbs(lines: list[bytes]) -> list[str]:
    return [line.split(b" ", 1)[0].decode("ascii", "replace") for line in lines]


def shown(lines: list[bytes], limit: int = 2) -> str:
    return "; ".join(line.decode("ascii", "replace")[:100] for line in lines[:limit]) or "nothing"


# ------------------------------------------------------------------ the attacks


def replayed_hello_other_cert(lab: Lab) -> Outcome:
    """home-1's HELLO (its id and secret, the line as the home writes it:
    TLS keeps it off the wire, so this is the plaintext a capture would
    have given) replayed over a new TLS connection with home-3's
    certificate.  Refused: ``REFUSED identity-mismatch``, no ``WELCOME``."""
    source = lab.address()
    sock = connect(lab.layout.aggregator_port, source, tls_context(lab.home_cert("home-3")))
    replies, how = exchange(sock, [hello_line("home-1", lab.secrets["home-1"])])
    refused = "WELCOME" not in verbs(replies) and any(b"identity-mismatch" in r for r in replies)
    return Outcome(refused, f"from {source} with home-3's certificate: {shown(replies)} ({how})")


def replayed_hello_no_cert(lab: Lab) -> Outcome:
    """home-1's HELLO over TLS without a client certificate.  Refused: the
    handshake fails (the aggregator logs it), no ``WELCOME``."""
    source = lab.address()
    since = time.time()
    try:
        sock = connect(lab.layout.aggregator_port, source, tls_context())
    except (ssl.SSLError, OSError) as e:
        replies: list[bytes] = []
        how = f"handshake: {e}"
    else:
        replies, how = exchange(sock, [hello_line("home-1", lab.secrets["home-1"])])
    logged = lab.fleet.wait(lambda: lab.aggregator_said(since, "TLS handshake with", source), 10,
                            "the aggregator's log of the failed handshake")
    return Outcome("WELCOME" not in verbs(replies), f"{how}; aggregator: {logged[0]}")


def _certificate_attack(lab: Lab, cert: tuple[str, str] | None, home: str, reason: str) -> Outcome:
    source = lab.address()
    since = time.time()
    try:
        sock = connect(lab.layout.aggregator_port, source, tls_context(cert))
    except (ssl.SSLError, OSError) as e:
        replies: list[bytes] = []
        how = f"handshake: {getattr(e, 'reason', None) or e}"
    else:
        replies, how = exchange(sock, [hello_line(home, lab.secrets.get(home, "guess"))])
    try:
        logged = lab.fleet.wait(lambda: lab.aggregator_said(since, "TLS handshake with", source), 10,
                                "the aggregator's log of the failed handshake")
    except BenchError:
        logged = []
    said_reason = bool(logged) and reason in logged[0]
    refused = "WELCOME" not in verbs(replies) and said_reason
    return Outcome(refused, f"{how}; aggregator: {logged[0] if logged else 'said nothing'}")


def cert_absent(lab: Lab) -> Outcome:
    """No client certificate.  Refused: no ``WELCOME``; the aggregator logs
    the failed handshake."""
    return _certificate_attack(lab, None, "home-1", "failed")


def cert_wrong_ca(lab: Lab) -> Outcome:
    """A certificate for home-1 from another CA.  Refused: no ``WELCOME``;
    the aggregator logs ``not signed by this aggregator's CA``."""
    return _certificate_attack(lab, lab.home_cert("home-1", lab.other_ca), "home-1", "not signed by")


def cert_expired(lab: Lab) -> Outcome:
    """A certificate from the lab's CA that expired yesterday.  Refused: no
    ``WELCOME``; the aggregator logs ``certificate expired``."""
    return _certificate_attack(lab, lab.home_cert("home-expired"), "home-expired", "expired")


def cert_revoked(lab: Lab) -> Outcome:
    """A certificate from the lab's CA, revoked with ``jeisson pki revoke``
    while the aggregator runs (it rereads the list).  Refused: no
    ``WELCOME``; the aggregator logs ``certificate revoked``."""
    since = time.time()
    pki.revoke_home(lab.pki, "home-revoked")
    lab.fleet.wait(lambda: lab.aggregator_said(since, "revocation list", "read"), 30,
                   "the aggregator to reread its revocation list")
    return _certificate_attack(lab, lab.home_cert("home-revoked"), "home-revoked", "revoked")


def _raw_client_hello(version: int) -> bytes:
    """A ClientHello for exactly ``version`` (0x0301 TLS 1.0, 0x0302 TLS
    1.1), built by hand: no supported_versions extension, the suites such
    a client offers (ECDHE/RSA with AES-CBC-SHA), the curves and point
    formats ECDHE needs."""
    suites = [0xC013, 0xC014, 0xC009, 0xC00A, 0x002F, 0x0035]
    extensions = (struct.pack("!HHH", 0x000A, 4, 2) + struct.pack("!H", 0x0017)  # supported_groups: P-256
                  + struct.pack("!HHB", 0x000B, 2, 1) + b"\x00")  # ec_point_formats: uncompressed
    body = (struct.pack("!H", version) + os.urandom(32) + b"\x00"
            + struct.pack("!H", 2 * len(suites)) + b"".join(struct.pack("!H", s) for s in suites)
            + b"\x01\x00" + struct.pack("!H", len(extensions)) + extensions)
    handshake = b"\x01" + len(body).to_bytes(3, "big") + body
    return b"\x16" + struct.pack("!HH", version, len(handshake)) + handshake


def _old_tls(lab: Lab, version: ssl.TLSVersion, wire_version: int) -> Outcome:
    source = lab.address()
    cert = lab.home_cert("home-1")
    try:
        sock = connect(lab.layout.aggregator_port, source, tls_context(cert, version))
    except ssl.SSLError as e:
        first = f"ssl module: {e.reason or e}"
        local = e.reason in ("NO_PROTOCOLS_AVAILABLE", "UNSUPPORTED_PROTOCOL", "NO_CIPHERS_AVAILABLE")
        if local:
            first = f"the local OpenSSL will not offer it ({e.reason})"
        ssl_refused = True
    except OSError as e:
        first, ssl_refused = f"ssl module: {e}", True
    else:
        replies, how = exchange(sock, [hello_line("home-1", lab.secrets["home-1"])])
        first = f"ssl module: handshake completed, {shown(replies)} ({how})"
        ssl_refused = False
    # The same version by hand, whatever the local OpenSSL allows.
    raw = socket.create_connection(("127.0.0.1", lab.layout.aggregator_port), timeout=10, source_address=(source, 0))
    answer = b""
    try:
        raw.sendall(_raw_client_hello(wire_version))
        while len(answer) < 7:
            chunk = raw.recv(4096)
            if not chunk:
                break
            answer += chunk
    except OSError:
        pass
    finally:
        raw.close()
    if not answer:
        second = "hand-made ClientHello: closed without a reply"
        raw_refused = True
    elif answer[0] == 0x15:
        second = f"hand-made ClientHello: alert {answer[5:7].hex()} (level, description)"
        raw_refused = True
    elif answer[0] == 0x16 and len(answer) > 5 and answer[5] == 2:
        second = "hand-made ClientHello: the server answered a ServerHello"
        raw_refused = False
    else:
        second = f"hand-made ClientHello: {answer[:8].hex()}"
        raw_refused = True
    return Outcome(ssl_refused and raw_refused, f"{first}; {second}")


def tls_1_0(lab: Lab) -> Outcome:
    """A TLS 1.0 client with a valid certificate.  Refused: no handshake."""
    return _old_tls(lab, ssl.TLSVersion.TLSv1, 0x0301)


def tls_1_1(lab: Lab) -> Outcome:
    """A TLS 1.1 client with a valid certificate.  Refused: no handshake."""
    return _old_tls(lab, ssl.TLSVersion.TLSv1_1, 0x0302)


def forged_budget(lab: Lab) -> Outcome:
    """A forged ``BUDGET`` (0 W, ending in 2031).  No one but the
    aggregator is on the TLS path, so: (1) sent by a client to the
    aggregator (with a certificate from its CA, for no enrolled home),
    before and after a ``HELLO``; (2) in plaintext to home-1's board port;
    (3) to a real ``Home`` core in a unit rig (``tests.peers.Rig``, on a
    ``task.Clock``), as if it had come from the aggregator: held for
    ``max_budget_s`` only.  Refused: (1) and (2) answered with errors and
    no home logs a budget for the forged event; (3) the budget ends two
    days later, not in 2031."""
    since = time.time()
    forged = dr.serialize(dr.Budget(999, 1, "forged", 0.0, dr.parse_utc("2031-01-01T00:00:00Z")))
    source = lab.address()
    sock = connect(lab.layout.aggregator_port, source, tls_context(lab.home_cert("intruder")))
    to_aggregator, how = exchange(sock, [forged, hello_line("intruder", "guess"), forged])
    sock = connect(lab.board_ports["home-1"], source)
    to_home, how_home = exchange(sock, [forged])
    lab.fleet.watch(1.0)
    taken = [home for home in lab.layout.homes if lab.said_by(home, since, "forged")]
    one = "WELCOME" not in verbs(to_aggregator) and not taken
    # (3) the home's own bound, on a real core.
    try:  # by name: mypy checks the bench, not the untyped tests
        rig: Any = importlib.import_module("tests.test_home_core").settled_rig()
    except ImportError as e:
        return Outcome(False, f"could not import the unit rig: {e}")
    rig.aggregator.budget(0.0, end=dr.parse_utc("2031-01-01T00:00:00Z"))
    rig.settle()
    held = rig.home.budget.end - rig.clock.seconds() if rig.home.budget is not None else None
    clamped = held is not None and held <= rig.home.max_budget_s
    detail = (f"to the aggregator: {shown(to_aggregator, 3)} ({how}); plaintext to home-1's board port: "
              f"{shown(to_home)} ({how_home}); homes that took it: {taken or 'none'}; unit rig: a BUDGET ending "
              f"2031-01-01 held {held:.0f} s (max_budget_s {rig.home.max_budget_s:.0f})" if held is not None
              else "unit rig: no budget")
    return Outcome(one and clamped, detail)


@attrs.define
class RogueBoardPort:
    """A listener on a stopped home's board port: to each board that
    connects it says ``WELCOME`` (version 1, and version 2 with a forged
    MAC), then every 0.2 s a plaintext ``SET`` and ``PING`` and a ``SET``
    sealed with the board's real key in an older session (the session keys
    of the board's previous ``HELLO`` to it, or of a made-up one); it notes
    what the board answers."""

    port: int
    keys: dict[str, bytes]
    hellos: dict[str, list[bytes]] = attrs.Factory(dict)
    replies: dict[str, list[bytes]] = attrs.Factory(dict)
    stop: threading.Event = attrs.Factory(threading.Event)
    server: socket.socket = attrs.field(init=False)

    def run(self) -> threading.Thread:
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.server.bind(("127.0.0.1", self.port))
        self.server.listen(16)
        self.server.settimeout(0.2)
        thread = threading.Thread(target=self._accept, daemon=True)
        thread.start()
        return thread

    def _accept(self) -> None:
        while not self.stop.is_set():
            try:
                conn, _ = self.server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()
        self.server.close()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(0.2)
        data = b""
        board: str | None = None
        said_at = 0.0
        counter = 0
        with conn:
            while not self.stop.is_set():
                try:
                    chunk = conn.recv(4096)
                except TimeoutError:
                    chunk = None
                except OSError:
                    return
                if chunk == b"":
                    return
                data += chunk or b""
                while b"\n" in data:
                    line, data = data.split(b"\n", 1)
                    line = line.rstrip(b"\r")
                    if line.startswith(b"HELLO ") and board is None:
                        board = line.split()[1].decode()
                        self.hellos.setdefault(board, []).append(line)
                        nonce = "fedcba9876543210"
                        conn.sendall(b"WELCOME 1 1\n"  # version 1: no proof at all
                                     + f"WELCOME 2 1 {ROGUE_HOME} {nonce} 0 {'0' * 16}\n".encode())  # a forged MAC
                    elif board is not None:
                        self.replies.setdefault(board, []).append(line)
                if board is not None and time.monotonic() - said_at >= 0.2:
                    said_at = time.monotonic()
                    counter += 1
                    try:
                        conn.sendall(f"SET {counter} 1 1\nPING {counter}\n".encode()
                                     + board_auth.seal(self._stale(board), counter, f"SET {counter} 1 1".encode()))
                    except OSError:
                        return

    def _stale(self, board: str) -> bytes:
        """The home-to-board key of an older session of ``board`` (its
        previous HELLO, a home nonce), from the board's real key."""
        hellos = self.hellos.get(board, [])
        old = hellos[-2] if len(hellos) > 1 else hellos[-1].replace(hellos[-1].split()[-1], b"00" * 8)
        k_hb, _ = board_auth.session_keys(self.keys[board], old, ROGUE_HOME, "0123456789abcdef")
        return k_hb


def rogue_listener(lab: Lab) -> Outcome:
    """home-3 killed; a process listens on its board port
    (``RogueBoardPort``); the real boards reach it.  Refused: each board
    answers ``ERR auth``, switches nothing by it, and goes to its safe
    states ``failsafe_after_s`` (10 s) after the home died, as if alone;
    then home-3 is started again and the lab settles."""
    home = ROGUE_HOME
    boards = lab.layout.boards_of(home)
    keys = {b: pki.read_board_key(pki.board_key_path(lab.pki, b)) for b in boards}
    down = lab.stop_home(home)
    rogue = RogueBoardPort(lab.board_ports[home], keys)
    rogue.run()
    failsafe_s = 10.0
    try:
        def all_safe() -> bool:
            return all(lab.said_by(b, down, "nothing heard from the home") for b in boards)

        lab.fleet.wait(all_safe, failsafe_s + 15, "the boards' failsafes")
        lab.fleet.watch(2.0)
    finally:
        rogue.stop.set()
        time.sleep(0.3)  # noqa: TID251 (the rogue's threads see the flag every 0.2 s)
    failsafe_at = {b: float(next(e["log_time"] for e in lab.fleet.events(b, down)
                                 if said(e, "nothing heard from the home"))) - down for b in boards}
    obeyed = [f"{b}: {text(e)}" for b in boards for e in lab.fleet.events(b, down)
              if said(e, "switched {state} by the home")]
    errs = {b: sum(1 for r in rogue.replies.get(b, []) if r.startswith(b"ERR auth")) for b in boards}
    restarted = lab.fleet.start(home)
    lab.fleet.wait(lab.fleet.all_up, 90, f"{home} and its boards back")
    lab.excused_homes.discard(home)
    refused = not obeyed and all(errs[b] > 0 for b in boards) and all(
        failsafe_at[b] <= failsafe_s + 2 for b in boards) and all(rogue.hellos.get(b) for b in boards)
    detail = (f"{home} killed; a listener on its board port said WELCOME (version 1, version 2 with a forged MAC), "
              "then every 0.2 s SET and PING in plaintext and a SET sealed in an older session; "
              + ", ".join(f"{b}: {len(rogue.hellos.get(b, []))} HELLO, {errs[b]} ERR auth, failsafe "
                          f"{failsafe_at[b]:.1f} s after the home died" for b in boards)
              + f"; obeyed: {obeyed or 'nothing'}")
    outcome = Outcome(refused, detail, excused_home=home, excused_until=restarted)
    lab.settle()
    return outcome


class Tap:
    """Someone on a board's LAN link: a TCP relay between the board and its
    home (the board's ``home`` endpoint points here), in threads, that
    records every line either way and can slip lines to the board between
    the home's lines."""

    def __init__(self, port: int, target: int):
        self.port, self.target = port, target
        self.down: list[bytes] = []  # home -> board lines
        self.up: list[bytes] = []  # board -> home lines
        self._inject: list[bytes] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server = socket.socket()
        self._server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._server.bind(("127.0.0.1", port))
        self._server.listen(4)
        self._server.settimeout(0.2)
        threading.Thread(target=self._accept, daemon=True, name=f"tap-{port}").start()

    def inject(self, line: bytes) -> None:
        with self._lock:
            self._inject.append(line)

    def close(self) -> None:
        self._stop.set()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                board, _ = self._server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                home = socket.create_connection(("127.0.0.1", self.target), timeout=5)
            except OSError:
                board.close()
                continue
            threading.Thread(target=self._pump, args=(board, home, self.up, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(home, board, self.down, True), daemon=True).start()
        self._server.close()

    def _pump(self, source: socket.socket, sink: socket.socket, lines: list[bytes], to_board: bool) -> None:
        source.settimeout(0.2)
        rest = b""
        try:
            while not self._stop.is_set():
                try:
                    data = source.recv(65536)
                except TimeoutError:
                    data = None
                if data == b"":
                    break
                rest += data or b""
                whole, _, rest = rest.rpartition(b"\n")
                out = whole + b"\n" if whole else b""
                lines.extend(line for line in whole.split(b"\n") if line)
                if to_board:
                    with self._lock:
                        out += b"".join(self._inject)
                        self._inject.clear()
                if out:
                    sink.sendall(out)
        except OSError:
            pass
        finally:
            for s in (source, sink):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)
                s.close()


def replayed_set(lab: Lab) -> Outcome:
    """On the path between home-1 and its board home-1-b (``Tap``, there
    from the start, so it saw the real home's sealed lines): the last
    sealed ``SET`` the home sent is slipped to the board again in the same
    session (its counter no longer fresh); then a plain ``ERR hello`` (what
    anyone on the path may send) makes the board start a new session, and
    the old session's ``SET`` is slipped in again.  Refused: the board
    answers ``ERR auth`` each time and switches nothing; the new session is
    the home's."""
    tap = lab.tap
    board = lab.tap_board
    if tap is None or board is None:
        return Outcome(True, "no tap in this lab", skipped=True)
    sealed_sets = [line for line in tap.down if line.startswith(b"SET ") and board_auth.looks_sealed(line)]
    if not sealed_sets:
        return Outcome(False, f"the tap saw no sealed SET from the home to {board}: nothing to replay")
    captured = sealed_sets[-1]
    started = time.time()

    def err_auths_after(mark: int) -> int:
        return sum(1 for line in tap.up[mark:] if line.startswith(b"ERR auth"))

    mark = len(tap.up)
    tap.inject(captured + b"\n")
    same = lab.fleet.wait(lambda: err_auths_after(mark), 10, f"{board}'s answer to the replayed SET")
    hellos = sum(1 for line in tap.up if line.startswith(b"HELLO "))
    since = time.time()
    tap.inject(b"ERR hello\n")
    lab.fleet.wait(lambda: sum(1 for line in tap.up if line.startswith(b"HELLO ")) > hellos, 10,
                   f"{board} to say HELLO again")
    lab.fleet.wait(lambda: lab.said_by(board, since, "welcomed by home"), 10, f"{board} welcomed again")
    mark = len(tap.up)
    tap.inject(captured + b"\n")
    new = lab.fleet.wait(lambda: err_auths_after(mark), 10, f"{board}'s answer to the SET of the older session")
    obeyed = lab.said_by(board, started, "by the home")
    refused = same > 0 and new > 0 and not obeyed
    return Outcome(refused, f"captured {captured.decode()!r}; replayed in its session: {same} ERR auth; after a "
                            f"forced new session (ERR hello on the path): {new} ERR auth; obeyed: "
                            f"{obeyed or 'nothing'}")


def impostor_board(lab: Lab) -> Outcome:
    """A client on home-1's board port says ``HELLO`` as home-1-a
    (version 2, a nonce of its own), then an ``AUTH`` it cannot prove.
    Refused: ``REFUSED auth``; the real home-1-a stays linked and
    untouched."""
    source = lab.address()
    board = "home-1-a"
    since = time.time()
    sock = connect(lab.board_ports["home-1"], source)
    relays = len(lab.layout.boards[board])
    replies, how = exchange(sock, [f"HELLO {board} {relays} 2 {'0' * relays} {board_auth.new_nonce()}\n".encode(),
                                   f"AUTH 0 {'0' * 16}\n".encode()], wait_s=3.0)
    lost = lab.said_by("home-1", since, "actuator", board, "unreachable")
    refused = any(r.startswith(b"REFUSED") for r in replies) and not lost and lab.fleet.board_linked(board)
    return Outcome(bool(refused), f"{shown(replies, 3)} ({how}); home-1 lost {board}: {bool(lost)}")


def rogue_radio(lab: Lab) -> Outcome:
    """A radio the lab's network does not know (a ``[device:rogue]`` on the
    radio simulator) sends board home-2-a a ``WELCOME`` and ``SET`` frames,
    and home-2's coordinator a ``HELLO`` claiming home-2-a.  Refused: the
    board and the home drop the frames (logged, counted); nothing
    switches."""
    if lab.radio_tty is None or not lab.board_radio:
        return Outcome(True, "no radio simulator in this lab: covered by tests/test_zigbee_pty.py", skipped=True)
    since = time.time()
    fd = os.open(lab.radio_tty, os.O_RDWR | os.O_NOCTTY)
    try:
        tty.setraw(fd)
        attrs_ = termios.tcgetattr(fd)
        attrs_[4] = attrs_[5] = termios.B9600
        termios.tcsetattr(fd, termios.TCSANOW, attrs_)
        board, address = next(iter(lab.board_radio.items()))
        lines = [b"WELCOME 1 1\n", b"SET 1 1 1\n", b"SET 2 2 1\n", b"PING 1\n"]
        for i, line in enumerate(lines * 3):
            os.write(fd, xbee.encode_frame(xbee.TransmitRequest(i % 200 + 1, address, data=line), escaped=True))
        hello = f"HELLO {board} 4 2 0000 {board_auth.new_nonce()}\n".encode()
        os.write(fd, xbee.encode_frame(xbee.TransmitRequest(99, lab.coordinator_radio, data=hello), escaped=True))
        lab.fleet.watch(3.0)
    finally:
        os.close(fd)
    dropped_board = lab.said_by(board, since, "dropped", "not this board's home")
    dropped_home = lab.said_by("home-2", since, "dropped", "no actuator is configured for")
    obeyed = lab.said_by(board, since, "by the home")
    refused = bool(dropped_board) and bool(dropped_home) and not obeyed
    return Outcome(refused, f"{board}: {dropped_board[0] if dropped_board else 'dropped nothing'}; home-2: "
                            f"{dropped_home[0] if dropped_home else 'dropped nothing'}; obeyed: {obeyed or 'nothing'}")


def _junk(sock: socket.socket, count: int) -> tuple[int, list[bytes], str]:
    """``count`` junk lines as fast as the socket takes them, then what
    came back; returns the lines sent (at least), the replies and how it
    ended."""
    sent, how, block = 0, "open", 1000
    line = b"x" * 20 + b"\n"
    try:
        while sent < count:
            n = min(block, count - sent)
            sock.sendall(line * n)
            sent += n
    except (OSError, ssl.SSLError) as e:
        how = type(e).__name__
    replies, end = exchange(sock, [], wait_s=2.0)
    return sent, replies, how if how != "open" else end


def junk_lines(lab: Lab) -> Outcome:
    """``junk_lines`` junk lines on one connection before any ``HELLO``: to
    the aggregator (over TLS, with a certificate from its CA for no
    enrolled home) and in plaintext to home-1's board port.  Refused: each
    connection cut after the cap (``max_bad_lines_before_hello``, 10) with
    at most a dozen replies and a handful of log lines."""
    count = lab.sizes.junk_lines
    parts, refused = [], True
    for name, port, context in (("aggregator", lab.layout.aggregator_port, tls_context(lab.home_cert("intruder"))),
                                ("home-1", lab.board_ports["home-1"], None)):
        source = lab.address()
        since, size = time.time(), lab.log_size(name)
        sock = connect(port, source, context)
        sent, replies, how = _junk(sock, count)
        lab.fleet.watch(1.0)
        logged = len(lab.said_by(name, since, source))
        grown = lab.log_size(name) - size
        cut = sent < count or how != "open"
        ok = cut and len(replies) <= BAD_LINES_CAP + 2 and logged <= BAD_LINES_CAP + 2
        refused &= ok
        parts.append(f"{name}: {count} lines, cut after <= {sent} written ({how}), {len(replies)} replies, "
                     f"{logged} log lines naming the peer, log +{grown} bytes")
    return Outcome(refused, "; ".join(parts))


def _flooder(port: int, source: str, context: ssl.SSLContext | None, until: float, counts: dict[str, int],
             lock: threading.Lock) -> None:
    junk = b"junk junk junk\n" * 20
    while time.monotonic() < until:
        try:
            sock = connect(port, source, context, timeout=5)
        except (OSError, ssl.SSLError):
            with lock:
                counts["refused"] += 1
            time.sleep(0.05)  # noqa: TID251 (an attacker's pace, not a wait on state)
            continue
        with lock:
            counts["connections"] += 1
        try:
            while time.monotonic() < until:
                sock.sendall(junk)
                with lock:
                    counts["lines"] += 20
        except (OSError, ssl.SSLError):
            with lock:
                counts["cut"] += 1
        finally:
            with contextlib.suppress(OSError):
                sock.close()


def flooding_connections(lab: Lab) -> Outcome:
    """``floods`` connections flooding junk lines to the aggregator (TLS,
    a certificate of its CA for no enrolled home), reconnecting whenever
    cut, and as many to home-1's board port, for ``flood_s`` s.  Refused:
    every flooding connection cut (but those still flooding when the time
    was up), and the honest homes served throughout (rounds on time, no
    home dropped, no failsafe, no relay moved)."""
    n, seconds = lab.sizes.floods, lab.sizes.flood_s
    results = []
    threads = []
    until = time.monotonic() + seconds
    lock = threading.Lock()
    for name, port, context in (("aggregator", lab.layout.aggregator_port, tls_context(lab.home_cert("intruder"))),
                                ("home-1", lab.board_ports["home-1"], None)):
        source = lab.address()
        counts = {"connections": 0, "refused": 0, "lines": 0, "cut": 0}
        results.append((name, source, counts))
        for _ in range(n):
            thread = threading.Thread(target=_flooder, args=(port, source, context, until, counts, lock), daemon=True)
            thread.start()
            threads.append(thread)
    for thread in threads:
        thread.join(seconds + 30)
    rss = lab.rss_kib("aggregator")
    # Every flooding connection cut, but those still flooding when time was up.
    cut = all(c["connections"] and c["cut"] >= c["connections"] - n for _, _, c in results)
    detail = "; ".join(f"{n} to {name} from {source} for {seconds:g} s: {c['connections']} connections, "
                       f"{c['cut']} cut, {c['refused']} refused at connect, {c['lines']} junk lines sent"
                       for name, source, c in results)
    return Outcome(cut, detail + f"; aggregator RSS {rss / 1024:.1f} MiB after")


@attrs.frozen
class Wave:
    peers: int
    failed: int  # could not even connect
    still_open: int
    after_s: float  # when the still-open ones were counted, from the first connection
    rss_before: int  # KiB
    rss_during: int
    rss_after: int


def _non_readers(lab: Lab, n: int) -> Wave:
    port = lab.layout.aggregator_port
    context = tls_context(lab.home_cert("intruder"))
    rss_before = lab.rss_kib("aggregator")
    socks: list[socket.socket] = []
    source = lab.address()
    failed = 0
    started = time.monotonic()
    for i in range(n):
        if i and i % 40 == 0:
            source = lab.address()
        try:
            raw = socket.create_connection(("127.0.0.1", port), timeout=10, source_address=(source, 0))
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            if i % 3 == 0:
                socks.append(raw)
                continue
            sock = context.wrap_socket(raw)
            if i % 3 == 2:
                sock.sendall(hello_line("intruder", "guess"))
            socks.append(sock)
        except (OSError, ssl.SSLError):
            failed += 1
    connected = time.monotonic() - started
    rss_during = lab.rss_kib("aggregator")
    deadline = started + HELLO_TIMEOUT_S + CLOSE_GRACE_S + 5 + connected
    while time.monotonic() < deadline:
        lab.fleet.watch(1.0)
    still_open = sum(1 for s in socks if not is_closed(s))
    for s in socks:
        with contextlib.suppress(OSError):
            s.close()
    lab.fleet.watch(2.0)
    return Wave(n, failed, still_open, deadline - started, rss_before, rss_during, lab.rss_kib("aggregator"))


def peers_that_never_read(lab: Lab) -> Outcome:
    """``non_readers`` peers on the aggregator that never read: a third
    connect and never start TLS, a third complete TLS (a certificate of
    its CA for no enrolled home) and send nothing, a third send a
    ``HELLO`` then nothing; 40 per loopback address.  Twice, one wave after
    the other.  Refused: every one dropped by the server within the HELLO
    timeout (10 s) plus the close grace (5 s) plus 5 s; and nothing pinned:
    the second wave leaves the aggregator's resident memory where the first
    left it (within 8 MiB or a quarter of what a wave took: Python and
    malloc keep freed memory for reuse rather than give it back, so the
    first wave's peak stays resident, but a leak per connection would grow
    again)."""
    first = _non_readers(lab, lab.sizes.non_readers)
    second = _non_readers(lab, lab.sizes.non_readers)
    took = max(first.rss_during - first.rss_before, 0)
    pinned = second.rss_after - first.rss_after
    refused = (first.still_open == 0 and second.still_open == 0
               and pinned <= max(8 * 1024, took // 4))

    def said_(wave: Wave) -> str:
        return (f"{wave.peers} peers ({wave.failed} not even connected), {wave.still_open} still open "
                f"{wave.after_s:.0f} s after the first; RSS {wave.rss_before / 1024:.1f} MiB before, "
                f"{wave.rss_during / 1024:.1f} with them, {wave.rss_after / 1024:.1f} after")

    return Outcome(refused, f"wave 1: {said_(first)}; wave 2: {said_(second)}; the second wave left "
                            f"{pinned / 1024:+.1f} MiB resident")


def slowloris(lab: Lab) -> Outcome:
    """``slowloris`` peers each on the aggregator (TLS, a certificate of its
    CA) and on home-1's board port, dribbling a byte a second, never a
    line.  Refused: every one dropped within the HELLO timeout (10 s) plus
    5 s."""
    n = lab.sizes.slowloris
    peers: list[tuple[str, socket.socket]] = []
    for name, port, context in (("aggregator", lab.layout.aggregator_port, tls_context(lab.home_cert("intruder"))),
                                ("home-1", lab.board_ports["home-1"], None)):
        source = lab.address()
        for _ in range(n):
            peers.append((name, connect(port, source, context)))
    started = time.monotonic()
    alive = {id(s) for _, s in peers}
    dropped_after: dict[str, list[float]] = {"aggregator": [], "home-1": []}
    while alive and time.monotonic() - started < HELLO_TIMEOUT_S + 5:
        for name, sock in peers:
            if id(sock) not in alive:
                continue
            try:
                sock.sendall(b"H")
                sock.setblocking(False)
                with contextlib.suppress(BlockingIOError, ssl.SSLWantReadError):
                    if sock.recv(4096) == b"":
                        raise ConnectionResetError
            except (OSError, ssl.SSLError):
                alive.discard(id(sock))
                dropped_after[name].append(time.monotonic() - started)
        lab.fleet.watch(1.0)
    for _, sock in peers:
        with contextlib.suppress(OSError):
            sock.close()
    refused = not alive
    parts = [f"{name}: {len(times)}/{n} dropped" + (f" after {min(times):.0f}-{max(times):.0f} s" if times else "")
             for name, times in dropped_after.items()]
    return Outcome(refused, f"a byte a second, never a newline; {', '.join(parts)}; {len(alive)} still open")


def manhole_guessing(lab: Lab) -> Outcome:
    """Guessing at the SSH manhole from one address: two keys it does not
    know, then passwords (``ssh`` with ``SSH_ASKPASS``), ``manhole_guesses``
    connections in all; then the operator's real key from 127.0.0.1.
    Refused: no guess logs in, the guessing address is locked out (its
    connections closed before the key exchange), and the operator, on
    another address, still logs in."""
    source = lab.address()
    askpass = os.path.join(lab.workdir, "askpass.sh")
    with open(askpass, "w", encoding="ascii") as f:
        f.write("#!/bin/sh\necho guess-$$\n")
    os.chmod(askpass, 0o700)
    since = time.time()

    def ssh(keys: list[str], address: str, password: bool = False) -> str:
        command = ["ssh", "-v", "-F", "/dev/null", "-p", str(lab.manhole_port), "-b", address,
                   "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null",
                   "-o", "ConnectTimeout=10", "-o", "NumberOfPasswordPrompts=3", "-o", "IdentitiesOnly=yes",
                   "-o", "BatchMode=" + ("no" if password else "yes")]
        for key in keys:
            command += ["-i", key]
        if password:
            command += ["-o", "PreferredAuthentications=password,keyboard-interactive", "-o",
                        "PubkeyAuthentication=no"]
        command += ["-T", "operator@127.0.0.1"]
        env = dict(os.environ, SSH_ASKPASS=askpass, SSH_ASKPASS_REQUIRE="force", DISPLAY=":0")
        try:
            done = subprocess.run(command, stdin=subprocess.DEVNULL, capture_output=True, timeout=40, env=env,
                                  start_new_session=True)
        except subprocess.TimeoutExpired as e:
            return (e.stderr or b"").decode("utf-8", "replace") + "\n(timed out)"
        return done.stderr.decode("utf-8", "replace")

    strangers = [os.path.join(lab.workdir, f"stranger-{i}") for i in range(2)]
    outcomes = []
    for i in range(lab.sizes.manhole_guesses):
        if i % 3 == 2:
            outcomes.append(ssh([], source, password=True))
        else:
            outcomes.append(ssh(strangers, source))
    logged_in = sum("Authenticated to" in o for o in outcomes)
    denied = sum(1 for o in outcomes if "Permission denied" in o)
    no_passwords = all("Permission denied (publickey)" in o for i, o in enumerate(outcomes) if i % 3 == 2
                       and "Permission denied" in o)
    shut = len(outcomes) - logged_in - denied
    operator = ssh([os.path.join(lab.pki, pki.MANHOLE_OPERATOR_KEY)], "127.0.0.1")
    operator_in = "Authenticated to" in operator
    locked = lab.aggregator_said(since, "locked out")
    refused = logged_in == 0 and bool(locked) and shut > 0 and no_passwords and operator_in
    return Outcome(refused, f"{len(outcomes)} connections from {source} (two unknown keys each, or passwords): "
                            f"{logged_in} logged in, {denied} denied"
                            f"{' (passwords not even offered: publickey only)' if no_passwords else ''}, {shut} cut "
                            f"before authenticating; aggregator: "
                            f"{locked[0] if locked else 'no lockout'}; the operator from 127.0.0.1 "
                            f"{'logged in' if operator_in else 'could NOT log in'}")


ATTACKS: dict[str, Callable[[Lab], Outcome]] = {
    "replayed-hello-other-cert": replayed_hello_other_cert,
    "replayed-hello-no-cert": replayed_hello_no_cert,
    "cert-absent": cert_absent,
    "cert-wrong-ca": cert_wrong_ca,
    "cert-expired": cert_expired,
    "cert-revoked": cert_revoked,
    "tls-1.0": tls_1_0,
    "tls-1.1": tls_1_1,
    "forged-budget": forged_budget,
    "impostor-board": impostor_board,
    "replayed-set": replayed_set,
    "rogue-radio": rogue_radio,
    "junk-lines": junk_lines,
    "flooding-connections": flooding_connections,
    "peers-that-never-read": peers_that_never_read,
    "slowloris": slowloris,
    "manhole-guessing": manhole_guessing,
    "rogue-listener": rogue_listener,
}


# ------------------------------------------------------------------ running


@attrs.frozen
class Tally:
    attacks: int
    refused: int
    dropped: int
    moved: int

    def line(self) -> str:
        return (f"attacks={self.attacks} refused={self.refused} honest_homes_dropped={self.dropped} "
                f"relays_moved={self.moved}")


def run(lab: Lab, names: list[str], out: Callable[[str], None] = print) -> Tally:
    attacks = refused = 0
    dropped: set[str] = set()
    moved = 0
    for name in names:
        started = time.time()
        try:
            outcome = ATTACKS[name](lab)
        except Exception as e:  # noqa: BLE001 (an attack that broke is said, and the run goes on)
            outcome = Outcome(False, f"the bench failed: {type(e).__name__}: {e}")
        if outcome.skipped:
            out(f"{name:27} SKIPPED      {outcome.detail}")
            continue
        ended = time.time()
        try:
            round_at = lab.wait_round(ended, lab.round_bound_s + 5)
        except BenchError:
            round_at = ended + lab.round_bound_s + 5
        health = lab.health(started, max(round_at, ended), outcome)
        attacks += 1
        ok = outcome.refused and health.ok
        refused += ok
        dropped |= set(health.dropped)
        moved += len(health.moved)
        verdict = "refused" if ok else "NOT REFUSED"
        out(f"{name:27} {verdict:12} {outcome.detail} | honest: {health.line()}")
        if not ok:
            out(f"!!! {name}: NOT REFUSED ({'its criterion failed' if not outcome.refused else 'honest homes hurt'})")
    tally = Tally(attacks, refused, len(dropped), moved)
    return tally


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small counts (for CI)")
    parser.add_argument("--only", action="append", choices=sorted(ATTACKS), help="run this attack (repeatable)")
    parser.add_argument("--workdir", help="the lab's folder (kept); default a temporary one, removed")
    args = parser.parse_args(argv)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))  # 1,000 peers, and the aggregator (our child)
    sizes = QUICK if args.quick else FULL
    names = [name for name in ATTACKS if not args.only or name in args.only]
    workdir = args.workdir or tempfile.mkdtemp(prefix="jeisson-attacks-")
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(1))
    lab = Lab(workdir, sizes)
    try:
        with lab.fleet:
            print(f"lab in {workdir}: {len(lab.layout.homes)} homes, {len(lab.layout.boards)} boards, "
                  f"an event of {LIMIT_KW:g} kW (nothing to shed); rounds every "
                  f"{lab.aggregator_config['round_period_s']} s", flush=True)
            lab.start()
            tally = run(lab, names, lambda line: print(line, flush=True))
    finally:
        if lab.tap is not None:
            lab.tap.close()
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)
    print(tally.line())
    return 0 if tally.refused == tally.attacks and not tally.dropped and not tally.moved else 1


if __name__ == "__main__":
    sys.exit(main())
