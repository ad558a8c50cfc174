"""Real jeisson processes for the benches, and what they did, from their logs.

Shared by ``bench/restarts.py`` and ``bench/kill9.py``:

``lay_out``
    Copies the example configs of ``etc/jeisson`` into a work directory as
    ``jeisson.demo`` does, with its helpers (every port moved to a free
    loopback port, every process run in the work directory, so each store,
    SQLite beside its ini file, is written there; the credentials made in
    ``pki/`` there by ``jeisson.demo.make_credentials``, so that the homes
    reach the aggregator over mutual TLS and the boards are authenticated,
    version 2, as by default), with short timings, a lab's reconnection
    window (``reconnect_base_s = 1``, ``reconnect_cap_s = 15``) and one DR
    event at absolute times whose limit is below the homes' demand.  The
    manhole, when asked for, is the telnet one (``protocol = telnet``, a
    password file of mode 0600, loopback), which ``Manhole`` speaks.
``Fleet``
    Starts each process with the real ``twistd`` command and a JSON log
    (``bench/jsonlog.py``), in its own process group; ``kill9`` kills the
    group with SIGKILL, as a power cut or a crash would; ``stop_all`` ends
    every process it started, whatever happened (SIGTERM, then SIGKILL).
    ``wait`` polls the logs for a state, never a fixed time.
``Gate``
    A TCP relay in front of the aggregator for one home: shut, the home
    cannot reach the aggregator though both run (a home slow to come back).
``PhysicalDraw``
    The power drawn, computed from the boards' own relay switches only
    (their logs, and the instants the bench killed or started a board: a
    board killed has every relay open from that instant, a board started
    has them open until it switches one), never from what the homes or the
    aggregator believe.
"""

import asyncio
import contextlib
import json
import os
import re
import select
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import attrs
from twisted.logger import formatEvent

BENCH = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(BENCH)
if REPO not in sys.path:  # this tree's jeisson, not a copy installed in the virtualenv
    sys.path.insert(0, REPO)

from jeisson.demo import (  # noqa: E402
    PKI,
    aggregator_tls,
    board_key,
    free_ports,
    home_tls,
    make_credentials,
    port_of,
    read_ini,
    twistd_command,
    write_ini,
)

ETC = os.path.join(REPO, "etc", "jeisson")
LOG_ENV = "JEISSON_BENCH_LOG"  # as bench/jsonlog.py reads it
POLL_S = 0.05

# Timings short enough for a scenario to take a minute: the aggregator pings
# every second (a home silent for 3 s is dropped), a round phase waits 3 s.
AGGREGATOR_TIMINGS = {"heartbeat_s": "1", "round_period_s": "5", "round_timeout_s": "3", "converge_s": "10",
                      "events_poll_s": "0.5"}
# A lab's reconnection window: after losing the aggregator, a home's next
# attempt within 0 to 1 s, doubling to at most 15 s (full jitter; a fleet's
# default, 120 s, would make a recovery a matter of minutes).
HOME_TIMINGS = {"heartbeat_s": "1", "command_timeout_s": "3", "measure_period_s": "1", "reconnect_base_s": "1",
                "reconnect_cap_s": "15"}
ACTUATOR_TIMINGS = {"failsafe_after_s": "10", "measure_period_s": "1", "cold_load_min_s": "3",
                    "cold_load_max_s": "8"}


class BenchError(Exception):
    """The bench could not run as planned (a process died, a state never came)."""


def utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def clock_text(seconds: float) -> str:
    """A wall-clock time with milliseconds, for timelines."""
    return datetime.fromtimestamp(seconds, UTC).strftime("%H:%M:%S.%f")[:-3]


# ------------------------------------------------------------------ configs


@attrs.frozen
class ProcessSpec:
    name: str
    plugin: str
    config: str
    role: str  # aggregator, radio, home, board
    home: str | None = None  # a home's id; a board's home


@attrs.frozen
class Layout:
    """What ``lay_out`` wrote: the processes and what the bench needs to know."""

    workdir: str
    specs: dict[str, ProcessSpec]
    aggregator_port: int
    homes: tuple[str, ...]
    boards: dict[str, dict[int, int]]  # board -> relay -> load_w
    board_home: dict[str, str]
    relay_loads: dict[tuple[str, int], str]  # (board, relay) -> the load's name in its home
    event_id: str
    limit_w: float
    event_start: float
    event_end: float
    events_file: str
    gates: dict[str, int]  # home -> the port of its gate to the aggregator
    manhole: tuple[int, str, str] | None  # port, user, password

    def store_of(self, name: str) -> str:
        """The SQLite file of a process (beside its ini, as by default)."""
        return os.path.splitext(self.specs[name].config)[0] + ".sqlite"

    def boards_of(self, home: str) -> list[str]:
        return [board for board, owner in self.board_home.items() if owner == home]


def lay_out(workdir: str, *, limit_kw: float, event_start: float, event_length: float,
            gated: Iterable[str] = (), manhole: bool = False, stores: bool = True, etc: str = ETC) -> Layout:
    """Copy the example configs into ``workdir`` with free ports, short
    timings and one event (``bench-peak``) at absolute times from
    ``event_start`` (epoch seconds) for ``event_length`` s; the homes in
    ``gated`` reach the aggregator through a ``Gate``.  ``stores=False``
    turns every store off (``[store] path = none``): what jeisson did
    before it remembered."""
    os.makedirs(workdir, exist_ok=True)
    homes = sorted(f[:-4] for f in os.listdir(etc) if re.fullmatch(r"home-.*\.ini", f))
    gated = set(gated)
    ports = iter(free_ports(2 + 2 * len(homes)))
    aggregator = read_ini(os.path.join(etc, "aggregator.ini"))
    aggregator_port = next(ports)
    section = aggregator["aggregator"]
    section["listen"] = f"tcp:{aggregator_port}:interface=127.0.0.1"
    section["status_file"] = "aggregator-status.json"
    section["events_file"] = "events.ini"
    section.update(AGGREGATOR_TIMINGS)
    for name in aggregator.sections():
        if name.startswith("event:"):
            aggregator.remove_section(name)
    event_id = "bench-peak"
    start = float(round(event_start))
    end = start + round(event_length)
    aggregator[f"event:{event_id}"] = {"limit_kw": f"{limit_kw:g}", "start": utc(start), "end": utc(end)}
    manhole_access = None
    if manhole:
        port = next(ports)
        password = "bench-" + os.urandom(6).hex()
        # The telnet manhole (the bench's client below is telnet), loopback
        # only, with a password file no one else may read.
        passwd = os.path.join(workdir, "manhole.passwd")
        with open(os.open(passwd, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as f:
            f.write(f"operator:{password}\n")
        os.chmod(passwd, 0o600)
        aggregator["manhole"] = {"listen": f"tcp:{port}:interface=127.0.0.1", "protocol": "telnet",
                                 "passwd": "manhole.passwd"}
        manhole_access = (port, "operator", password)
    aggregator["tls"] = aggregator_tls()
    if not stores:
        aggregator["store"] = {"path": "none"}
    write_ini(aggregator, os.path.join(workdir, "aggregator.ini"))
    events_file = os.path.join(workdir, "events.ini")
    with open(events_file, "w", encoding="utf-8") as f:
        f.write("# events added by the bench\n")
    specs = {"aggregator": ProcessSpec("aggregator", "jeisson-aggregator", os.path.join(workdir, "aggregator.ini"),
                                       "aggregator")}
    if os.path.exists(os.path.join(etc, "radio.ini")):
        radio = read_ini(os.path.join(etc, "radio.ini"))
        write_ini(radio, os.path.join(workdir, "radio.ini"))
        specs["radio"] = ProcessSpec("radio", "jeisson-radio", os.path.join(workdir, "radio.ini"), "radio")

    home_ports: dict[int, int] = {}
    board_home: dict[str, str] = {}  # board -> the home whose config names it
    gates: dict[str, int] = {}
    relay_loads: dict[tuple[str, int], str] = {}
    for home_name in homes:
        home = read_ini(os.path.join(etc, f"{home_name}.ini"))
        home_id = home["home"]["id"]
        if home_id in gated:
            gates[home_id] = next(ports)
            home["home"]["aggregator"] = f"tcp:127.0.0.1:{gates[home_id]}"
        else:
            home["home"]["aggregator"] = f"tcp:127.0.0.1:{aggregator_port}"
        home["home"].update(HOME_TIMINGS)
        home["tls"] = home_tls(home_id)
        if "actuators" in home["home"]:
            old = port_of(home["home"]["actuators"])
            home_ports[old] = next(ports)
            home["home"]["actuators"] = f"tcp:{home_ports[old]}:interface=127.0.0.1"
        for name in home.sections():
            if name.startswith("load:"):
                relay_loads[(home[name]["actuator"], int(home[name]["relay"]))] = name[5:]
            elif name.startswith("actuator:"):
                board_home[name[9:]] = home_id
                home[name]["key"] = board_key(name[9:])
        if not stores:
            home["store"] = {"path": "none"}
        write_ini(home, os.path.join(workdir, f"{home_name}.ini"))
        specs[home_id] = ProcessSpec(home_id, "jeisson-home", os.path.join(workdir, f"{home_name}.ini"), "home",
                                     home_id)
    boards: dict[str, dict[int, int]] = {}
    for file in sorted(f for f in os.listdir(etc) if re.fullmatch(r"actuator-.*\.ini", f)):
        actuator = read_ini(os.path.join(etc, file))
        board_id = actuator["actuator"]["id"]
        owner = board_home.get(board_id)
        if owner is None:
            continue
        if "home" in actuator["actuator"]:  # else on the radio, through its serial port
            old = port_of(actuator["actuator"]["home"])
            if old not in home_ports:
                continue
            actuator["actuator"]["home"] = f"tcp:127.0.0.1:{home_ports[old]}"
        actuator["actuator"].update(ACTUATOR_TIMINGS)
        actuator["actuator"]["key"] = board_key(board_id)
        boards[board_id] = {int(name.split(":")[1]): int(actuator[name]["load_w"])
                            for name in actuator.sections() if name.startswith("relay:")}
        write_ini(actuator, os.path.join(workdir, file))
        specs[board_id] = ProcessSpec(board_id, "jeisson-actuator", os.path.join(workdir, file), "board", owner)
    home_ids = tuple(name for name, spec in specs.items() if spec.role == "home")
    make_credentials(os.path.join(workdir, PKI), list(home_ids), list(board_home))
    return Layout(workdir, specs, aggregator_port, home_ids, boards, {board: board_home[board] for board in boards},
                  relay_loads, event_id, limit_kw * 1000.0, start, end, events_file, gates, manhole_access)


# ------------------------------------------------------------------ logs


class LogTail:
    """The events of one JSON log file (``bench/jsonlog.py``), read as it grows.

    A record cut short by ``kill -9`` is skipped; the next life's records
    follow it in the same file."""

    def __init__(self, path: str):
        self.path = path
        self.events: list[dict[str, Any]] = []
        self._offset = 0
        self._rest = b""

    def poll(self) -> list[dict[str, Any]]:
        try:
            with open(self.path, "rb") as f:
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        self._offset += len(data)
        chunks = (self._rest + data).split(b"\x1e")
        self._rest = chunks.pop()
        if self._rest.endswith(b"\n"):  # the last record is whole
            chunks.append(self._rest)
            self._rest = b""
        new = []
        for chunk in chunks:
            if not chunk.strip():
                continue
            try:
                event = json.loads(chunk)
            except ValueError:
                continue  # cut short by a kill
            new.append(event)
        self.events.extend(new)
        return new


def text(event: dict[str, Any]) -> str:
    """An event's message, as twistd's text log would say it."""
    return formatEvent(event) or ""


def said(event: dict[str, Any], fragment: str) -> bool:
    """Whether ``fragment`` is part of the event's format string."""
    return fragment in (event.get("log_format") or "")


# ------------------------------------------------------------------ processes


@attrs.define
class Life:
    """One run of a process: from its start to its kill or stop."""

    started: float
    ended: float | None = None
    how: str | None = None  # "kill -9" or "stopped" or "exited"


class Fleet:
    """The started twistd processes; ``stop_all`` ends them, whatever happens."""

    def __init__(self, layout: Layout):
        self.layout = layout
        self.popen: dict[str, subprocess.Popen[bytes]] = {}
        self.lives: dict[str, list[Life]] = {name: [] for name in layout.specs}
        self.tails = {name: LogTail(os.path.join(layout.workdir, f"{name}.json")) for name in layout.specs}
        self.history: list[tuple[float, str, str]] = []  # (when, process, what the bench did)
        self.gates = {home: Gate(port, layout.aggregator_port) for home, port in layout.gates.items()}

    def __enter__(self) -> "Fleet":
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    # -- lives

    def start(self, name: str) -> float:
        spec = self.layout.specs[name]
        if self.running(name):
            raise BenchError(f"{name} is already running")
        env = dict(os.environ)
        # This tree's jeisson, not a copy installed in the virtualenv.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (BENCH, REPO, env.get("PYTHONPATH", "")) if p)
        env[LOG_ENV] = self.tails[name].path
        command = twistd_command() + ["-n", "--pidfile=", "--logger=jsonlog.observer", spec.plugin, "--config",
                                      spec.config]
        out = open(os.path.join(self.layout.workdir, f"{name}.out"), "ab")  # noqa: SIM115 (handed to the child)
        try:
            now = time.time()
            self.popen[name] = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT,
                                                cwd=self.layout.workdir, env=env, start_new_session=True)
        finally:
            out.close()
        self.lives[name].append(Life(now))
        self.history.append((now, name, "started"))
        return now

    def kill9(self, name: str) -> float:
        """SIGKILL to the process group; returns the instant it was dead."""
        process = self.popen[name]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        now = time.time()
        self._ended(name, now, "kill -9")
        return now

    def _ended(self, name: str, when: float, how: str) -> None:
        life = self.lives[name][-1]
        if life.ended is None:
            life.ended, life.how = when, how
            self.history.append((when, name, how))

    def running(self, name: str) -> bool:
        process = self.popen.get(name)
        return process is not None and process.poll() is None

    def life(self, name: str) -> Life:
        return self.lives[name][-1]

    def stop_all(self) -> None:
        """SIGTERM to every group started, SIGKILL to those still there
        after 10 s; the gates close."""
        for process in self.popen.values():
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        for name, process in self.popen.items():
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait()
            if self.lives[name] and self.lives[name][-1].ended is None:
                self._ended(name, time.time(), "stopped")
        for gate in self.gates.values():
            gate.close()
        self.poll()

    # -- logs and waiting

    def poll(self) -> None:
        for tail in self.tails.values():
            tail.poll()

    def events(self, name: str, since: float | None = None) -> list[dict[str, Any]]:
        """The process's events (since ``since``, epoch seconds)."""
        events = self.tails[name].events
        if since is None:
            return events
        return [e for e in events if e.get("log_time", 0) >= since]

    def current(self, name: str) -> list[dict[str, Any]]:
        """The events of the process's current (or last) life."""
        lives = self.lives[name]
        return self.events(name, lives[-1].started) if lives else []

    def check_alive(self) -> None:
        for name, process in self.popen.items():
            life = self.lives[name][-1]
            if life.ended is None and process.poll() is not None:
                self._ended(name, time.time(), "exited")
                raise BenchError(f"{name} exited with status {process.returncode}; see "
                                 f"{os.path.join(self.layout.workdir, name + '.out')}: {self.tail_text(name)}")

    def tail_text(self, name: str, lines: int = 5) -> str:
        path = os.path.join(self.layout.workdir, f"{name}.out")
        try:
            with open(path, encoding="utf-8", errors="replace") as f:
                return " | ".join(f.read().strip().splitlines()[-lines:])
        except OSError:
            return ""

    def wait(self, condition: Callable[[], Any], timeout: float, what: str) -> Any:
        """Poll the logs until ``condition()`` is true; return its value.
        Raises ``BenchError`` naming ``what`` after ``timeout`` s, or when a
        process that should run has exited."""
        deadline = time.monotonic() + timeout
        while True:
            self.poll()
            value = condition()
            if value:
                return value
            self.check_alive()
            if time.monotonic() > deadline:
                raise BenchError(f"timed out after {timeout:g} s waiting for {what}")
            time.sleep(POLL_S)

    def watch(self, seconds: float) -> None:
        """Let the fleet run for ``seconds`` (a scenario's deliberate
        outage or observation time), checking that nothing exits."""
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            self.poll()
            self.check_alive()
            time.sleep(min(POLL_S * 4, max(deadline - time.monotonic(), 0)))

    # -- states seen in the logs

    def listening(self, name: str, port: int) -> bool:
        """Whether ``name``, in its current life, listens on ``port``."""
        return any(text(event).endswith(f" starting on {port}") for event in self.current(name))

    def home_registered(self, home: str, since: float) -> float | None:
        """When ``home`` was WELCOMEd (its log), at or after ``since``."""
        for event in self.events(home, since):
            if said(event, "registered with the aggregator"):
                return float(event["log_time"])
        return None

    def board_joined(self, board: str, since: float) -> float | None:
        """When ``board``'s home said it connected, at or after ``since``."""
        home = self.layout.board_home[board]
        for event in self.events(home, since):
            if said(event, "actuator {actuator} connected from") and event.get("actuator") == board:
                return float(event["log_time"])
        return None

    def rounds(self, since: float | None = None) -> list[dict[str, Any]]:
        """The aggregator's round totals (``report.RoundLog``) since ``since``."""
        return [e for e in self.events("aggregator", since)
                if said(e, "round {n} event {event}: committed") and "feeder" not in e]

    def home_linked(self, home: str) -> float | None:
        """When ``home``, in its current life, was WELCOMEd by the
        aggregator in its current life, if it has not lost it since."""
        since = max(self.life(home).started, self.life("aggregator").started)
        linked = None
        for event in self.events(home, since):
            if said(event, "registered with the aggregator"):
                linked = float(event["log_time"])
            elif said(event, "lost the aggregator"):
                linked = None
        return linked

    def board_linked(self, board: str) -> float | None:
        """When ``board``, in its current life, joined its home in its
        current life, if the home has not lost it since."""
        home = self.layout.board_home[board]
        since = max(self.life(board).started, self.life(home).started)
        linked = None
        for event in self.events(home, since):
            if event.get("actuator") != board:
                continue
            if said(event, "actuator {actuator} connected from"):
                linked = float(event["log_time"])
            elif said(event, "actuator {actuator} unreachable"):
                linked = None
        return linked

    def all_up(self) -> float | None:
        """When the last of every home and every board was linked (each
        in its current life, and still), or None."""
        moments = [self.home_linked(home) for home in self.layout.homes]
        moments += [self.board_linked(board) for board in self.layout.boards]
        if any(m is None for m in moments):
            return None
        return max(m for m in moments if m is not None)


# ------------------------------------------------------------------ a gate


class Gate:
    """A TCP relay from ``port`` to the aggregator's ``target`` port, in a
    thread.  Open, it carries a home's link; shut, it cuts the link and
    closes every new connection at once, so the home, though running,
    cannot reach the aggregator."""

    def __init__(self, port: int, target: int):
        self.port = port
        self.target = target
        self.is_open = True
        self._links: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._failed: BaseException | None = None
        self._thread = threading.Thread(target=self._run, name=f"gate-{port}", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._failed is not None:
            raise BenchError(f"gate on port {port}: {self._failed}")

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        try:
            self._server = self._loop.run_until_complete(
                asyncio.start_server(self._handle, "127.0.0.1", self.port))
        except OSError as e:
            self._failed = e
            self._ready.set()
            return
        self._ready.set()
        self._loop.run_forever()
        self._server.close()
        self._loop.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.is_open:
            writer.transport.abort()
            return
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target)
        except OSError:
            writer.transport.abort()
            return
        link = (writer, up_writer)
        self._links.add(link)

        async def pump(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            try:
                while data := await source.read(65536):
                    sink.write(data)
                    await sink.drain()
            except (OSError, asyncio.IncompleteReadError):
                pass
            finally:
                sink.transport.abort()

        await asyncio.gather(pump(reader, up_writer), pump(up_reader, writer))
        self._links.discard(link)

    def _cut(self) -> None:
        for down, up in list(self._links):
            down.transport.abort()
            up.transport.abort()

    def shut(self) -> None:
        self.is_open = False
        self._loop.call_soon_threadsafe(self._cut)

    def open(self) -> None:
        self.is_open = True

    def close(self) -> None:
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._cut)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)


# ------------------------------------------------------------------ the physical draw


@attrs.frozen
class Change:
    at: float
    board: str
    relay: int | None  # None: every relay (a kill, a power-down, a start)
    on: bool
    why: str


@attrs.frozen
class Span:
    """A time the draw was above the limit."""

    start: float
    end: float
    max_w: float


class PhysicalDraw:
    """The power drawn at every instant, from the boards' relay switches."""

    def __init__(self, layout: Layout, fleet: Fleet):
        self.layout = layout
        changes: list[Change] = []
        for board in layout.boards:
            for life in fleet.lives[board]:
                changes.append(Change(life.started, board, None, False, "process started: relays open"))
                for event in fleet.events(board, life.started):
                    if life.ended is not None and event["log_time"] > life.ended:
                        break
                    change = self._change(board, event)
                    if change is not None:
                        changes.append(change)
                if life.ended is not None and life.how == "kill -9":
                    changes.append(Change(life.ended, board, None, False, "kill -9: power lost, relays open"))
        changes.sort(key=lambda c: c.at)
        self.changes = changes
        self.steps: list[tuple[float, float, Change]] = []  # (at, draw after, change)
        closed: dict[tuple[str, int], bool] = {}
        draw = 0.0
        for change in changes:
            relays = layout.boards[change.board]
            for relay in relays if change.relay is None else (change.relay,):
                was = closed.get((change.board, relay), False)
                if was != change.on:
                    closed[(change.board, relay)] = change.on
                    draw += relays[relay] if change.on else -relays[relay]
            self.steps.append((change.at, draw, change))

    @staticmethod
    def _change(board: str, event: dict[str, Any]) -> Change | None:
        at = float(event["log_time"])
        if said(event, "switched {state} by the home"):
            return Change(at, board, int(event["relay"]), event["state"] == "on", "the home's SET")
        if said(event, "switched relay {relay} {state} (its safe state)"):
            return Change(at, board, int(event["relay"]), event["state"] == "on", str(event.get("cause")))
        if said(event, "powered down: relays open"):
            return Change(at, board, None, False, "powered down")
        return None

    def at(self, moment: float) -> float:
        draw = 0.0
        for at, after, _ in self.steps:
            if at > moment:
                break
            draw = after
        return draw

    def over(self, start: float, end: float, limit_w: float) -> tuple[float, float, list[Span]]:
        """Seconds above ``limit_w`` within ``[start, end]``, the highest draw
        there, and each span above it."""
        draw = self.at(start)
        highest = draw
        spans: list[Span] = []
        opened: float | None = start if draw > limit_w else None
        peak = draw
        for at, after, _ in self.steps:
            if at <= start:
                continue
            if at >= end:
                break
            if after > limit_w and opened is None:
                opened, peak = at, after
            elif after > limit_w:
                peak = max(peak, after)
            elif opened is not None:
                spans.append(Span(opened, at, peak))
                opened = None
            highest = max(highest, after)
        if opened is not None:
            spans.append(Span(opened, end, peak))
        return sum(s.end - s.start for s in spans), highest, spans

    def closed_at(self, moment: float) -> list[str]:
        """The relays closed at ``moment``, as ``board/relay load (W)``."""
        closed: dict[tuple[str, int], bool] = {}
        for change in self.changes:
            if change.at > moment:
                break
            relays = self.layout.boards[change.board]
            for relay in relays if change.relay is None else (change.relay,):
                closed[(change.board, relay)] = change.on
        return [f"{board}/{relay} {self.layout.relay_loads.get((board, relay), '?')} "
                f"({self.layout.boards[board][relay]} W)" for (board, relay), on in sorted(closed.items()) if on]


def timeline(layout: Layout, fleet: Fleet, draw: PhysicalDraw, start: float, end: float) -> list[str]:
    """What happened between ``start`` and ``end``: the bench's kills and
    starts, every relay switch with the draw after it, and what the homes
    and the aggregator said about budgets, rounds and boards."""
    lines: list[tuple[float, str]] = []
    for at, name, what in fleet.history:
        if start <= at <= end:
            lines.append((at, f"bench: {what}" if name == "bench" else f"bench: {name} {what}"))
    for at, after, change in draw.steps:
        if start <= at <= end:
            relay = "all relays" if change.relay is None else (
                f"relay {change.relay} ({layout.relay_loads.get((change.board, change.relay), '?')})")
            lines.append((at, f"{change.board}: {relay} {'on' if change.on else 'off'} by {change.why}"
                              f" -> draw {after:.0f} W"))
    interesting = ("budget", "registered", "round {n} event {event}: committed", "found on", "found off",
                   "resumed", "switched {state}", "connected from", "lost the aggregator", "counted at",
                   "OVER LIMIT", "in charge", "store {path}:")
    for name, spec in layout.specs.items():
        if spec.role not in ("home", "aggregator"):
            continue
        for event in fleet.events(name, start):
            if event["log_time"] > end:
                break
            if any(said(event, fragment) for fragment in interesting):
                lines.append((float(event["log_time"]), f"{name}: {text(event)}"))
    lines.sort(key=lambda line: line[0])
    return [f"{clock_text(at)} {line}" for at, line in lines]


# ------------------------------------------------------------------ stores


def read_state(path: str, scope: str) -> dict[str, Any]:
    """A store's ``state`` scope, read without writing (the process that
    owns the file is dead or still running: WAL readers do not block it)."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        rows = db.execute("SELECT key, value FROM state WHERE scope = ?", (scope,)).fetchall()
    finally:
        db.close()
    return {key: json.loads(value) for key, value in rows}


def read_journal(path: str, kind: str, subject: str | None = None) -> list[tuple[float, str, int | None, Any]]:
    """A store's journal entries of ``kind``: ``(at, subject, round, detail)``."""
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
    try:
        sql = "SELECT at, subject, round, detail FROM journal WHERE kind = ?"
        args: tuple[Any, ...] = (kind,)
        if subject is not None:
            sql += " AND subject = ?"
            args += (subject,)
        rows = db.execute(sql + " ORDER BY id", args).fetchall()
    finally:
        db.close()
    return [(at, subj, rnd, json.loads(detail)) for at, subj, rnd, detail in rows]


def percentile(values: list[float], p: float) -> float:
    """The ``p``-th percentile (nearest rank) of ``values``."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
    return ordered[rank - 1]



# ------------------------------------------------------------------ the manhole


IAC, DONT, DO, WONT, WILL, SB, SE = 255, 254, 253, 252, 251, 250, 240
_ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]|\x1b[()][A-Za-z0-9]|\x1b[=>78]")


class Manhole:
    """A telnet client for the aggregator's manhole (``jeisson.manhole``),
    on a plain socket: it agrees to whatever the server will do, does
    nothing it is asked to, logs in, and sends lines of Python.

    ``output()`` is what the shell wrote since the last call, with the
    telnet negotiation and the terminal's escape sequences removed."""

    def __init__(self, port: int, user: str, password: str, timeout: float = 10.0):
        self._socket = socket.create_connection(("127.0.0.1", port), timeout=timeout)
        self._socket.setblocking(False)
        self._raw = b""
        self._text = ""
        self.closed = False
        self._expect("Username: ", timeout)
        self._socket.sendall(user.encode() + b"\r\n")
        self._expect("Password: ", timeout)
        self._socket.sendall(password.encode() + b"\r\n")
        self._expect(">>> ", timeout)
        self.output()

    def _expect(self, prompt: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while prompt not in self._text:
            if self.closed or time.monotonic() > deadline:
                raise BenchError(f"manhole: no {prompt!r} (got {self._text[-200:]!r})")
            self._pump(POLL_S)
        self._text = self._text[self._text.index(prompt) + len(prompt):]

    def _pump(self, wait: float) -> None:
        if self.closed:
            return
        ready, _, _ = select.select([self._socket], [], [], wait)
        if not ready:
            return
        try:
            data = self._socket.recv(65536)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            data = b""
        if not data:
            self.closed = True
            return
        self._raw += data
        self._negotiate()

    def _negotiate(self) -> None:
        raw, out, replies = self._raw, bytearray(), bytearray()
        i = 0
        while i < len(raw):
            byte = raw[i]
            if byte != IAC:
                out.append(byte)
                i += 1
                continue
            if i + 1 >= len(raw):
                break
            command = raw[i + 1]
            if command in (DO, DONT, WILL, WONT):
                if i + 2 >= len(raw):
                    break
                option = raw[i + 2]
                answer = {WILL: DO, WONT: DONT, DO: WONT, DONT: WONT}[command]
                replies += bytes((IAC, answer, option))
                i += 3
            elif command == SB:
                end = raw.find(bytes((IAC, SE)), i)
                if end < 0:
                    break
                i = end + 2
            elif command == IAC:
                out.append(IAC)
                i += 2
            else:
                i += 2
        self._raw = raw[i:]
        if replies:
            self._socket.sendall(bytes(replies))
        self._text += _ANSI.sub("", out.decode("utf-8", "replace")).replace("\r", "")

    def send(self, line: str) -> None:
        """A line of Python for the shell (not waiting for its answer)."""
        # Telnet: a CR goes with a NUL (a bare CR waits for its next byte).
        self._socket.sendall(line.encode() + b"\r\0")

    def output(self, wait: float = 0.0) -> str:
        """What the shell wrote since the last call (waiting up to ``wait`` s
        for something)."""
        self._pump(wait)
        while not self.closed:
            before = len(self._text)
            self._pump(0)
            if len(self._text) == before:
                break
        text_, self._text = self._text, ""
        return text_

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self._socket.close()
        self.closed = True
