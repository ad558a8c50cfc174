"""The whole jeisson system on one machine, as real twistd processes.

``python -m jeisson.demo`` copies the example configs of ``etc/jeisson`` into
a work directory, makes the credentials there with ``jeisson.pki`` (a CA,
the aggregator's and each home's certificates, each board's key, the
manhole's SSH keys, in ``pki/``), so that every link runs as in production:
homes over mutual TLS, boards authenticated, the manhole over SSH with keys
only.  It moves every port to a free loopback port, starts the
aggregator, the three homes and their software actuators with the real
``twistd`` commands, applies a DR event whose limit is below the houses'
demand, and shows the system live from the aggregator's JSON API: the
limit against what is committed and measured (OVER LIMIT with the figure
whenever either is above it), the events with a countdown to their start
and end, each home's power and loads.  Every redraw keeps the dashboard's
URL, the manhole's ssh command and the ``jeisson`` commands to try on
screen; ``access.txt`` in the work directory holds them too.  After
``--duration`` seconds, or Ctrl-C, it stops every process it started and
prints a summary of the rounds from the aggregator's log.
"""

import argparse
import configparser
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from datetime import datetime

import attrs

# A round's total line (report.RoundLog); "measured" is absent from logs
# written before the rounds counted it.
ROUND_LINE = re.compile(
    r"round (?P<number>\d+) event (?P<event>\S+): committed (?P<committed>\d+) W \+ unknown (?P<unknown>\d+) W"
    r"(?:, measured (?P<measured>\d+) W)? of limit (?P<limit>\d+) W: (?P<verdict>within limit|OVER LIMIT)"
)


def free_ports(count: int) -> list[int]:
    """Distinct free loopback ports (all held open while choosing)."""
    sockets = []
    try:
        for _ in range(count):
            s = socket.socket()
            s.bind(("127.0.0.1", 0))
            sockets.append(s)
        return [s.getsockname()[1] for s in sockets]
    finally:
        for s in sockets:
            s.close()


def twistd_command() -> list[str]:
    beside = os.path.join(os.path.dirname(sys.executable), "twistd")
    return [beside] if os.path.exists(beside) else [sys.executable, "-m", "twisted"]


class KeysAsWritten(configparser.ConfigParser):
    """Keys keep their case, as jeisson's own reader keeps it."""

    def optionxform(self, optionstr: str) -> str:
        return optionstr


def read_ini(path: str) -> configparser.ConfigParser:
    """An ini file as jeisson reads it (keys as written, no interpolation),
    to edit and write again with ``write_ini``."""
    parser = KeysAsWritten(interpolation=None)
    parser.read(path, encoding="utf-8")
    return parser


def write_ini(parser: configparser.ConfigParser, path: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        parser.write(f)


def port_of(endpoint: str) -> int:
    """The port of an endpoint string (``tcp:7711:interface=127.0.0.1``,
    ``tcp:127.0.0.1:7700``)."""
    match = re.search(r":(\d+)(?::|$)", endpoint)
    if not match:
        raise SystemExit(f"cannot find a port in endpoint {endpoint!r}")
    return int(match.group(1))


PKI = "pki"  # the credentials folder, in the work directory beside the configs


def make_credentials(folder: str, homes: list[str], boards: list[str]) -> None:
    """The demo's credentials (``jeisson pki`` layout); what a work
    directory used again already holds is kept."""
    from jeisson import pki

    if not os.path.exists(os.path.join(folder, pki.CA_CERT)):
        pki.init(folder)
    for home in homes:
        if not os.path.exists(pki.home_paths(folder, home)[0]):
            pki.issue_home(folder, home)
    for board in boards:
        if not os.path.exists(pki.board_key_path(folder, board)):
            pki.issue_board(folder, board)
    if not os.path.exists(os.path.join(folder, pki.MANHOLE_HOST_KEY)):
        pki.issue_manhole(folder, force=True)


# What the configs say to use the credentials of ``make_credentials``, as
# paths relative to the configs' folder (``pki/`` beside them).


def aggregator_tls() -> dict[str, str]:
    """The aggregator's ``[tls]`` section: its certificate, the CA and the
    revocation list (mutual TLS with the homes)."""
    return {"ca": f"{PKI}/ca.pem", "cert": f"{PKI}/aggregator.pem", "key": f"{PKI}/aggregator.key",
            "crl": f"{PKI}/crl.pem"}


def home_tls(home_id: str) -> dict[str, str]:
    """A home's ``[tls]`` section: its certificate (naming ``home_id``)
    and the CA that signed the aggregator's."""
    return {"ca": f"{PKI}/ca.pem", "cert": f"{PKI}/homes/{home_id}.pem", "key": f"{PKI}/homes/{home_id}.key"}


def board_key(board_id: str) -> str:
    """A board's shared key (``key =`` in its home's ``[actuator:...]``
    section and in the board's ``[actuator]``): board protocol version 2."""
    return f"{PKI}/boards/{board_id}.key"


def manhole_ssh(port: int) -> dict[str, str]:
    """The aggregator's ``[manhole]`` section: SSH on loopback, keys only
    (the operator's key and the host key are in ``pki/manhole``)."""
    return {"listen": f"tcp:{port}:interface=127.0.0.1", "host_key": f"{PKI}/manhole/ssh_host_ed25519_key",
            "authorized_keys": f"{PKI}/manhole/authorized_keys"}


def prepare(etc: str, workdir: str, event_start: float, event_length: float, limit_kw: float | None) -> dict:
    """Copy the example configs with fresh ports and the credentials they
    name (``pki/`` beside them); returns the processes to run."""
    homes = sorted(f for f in os.listdir(etc) if re.fullmatch(r"home-.*\.ini", f))
    # The aggregator's homes' listener, its manhole and API, and per home its
    # boards' listener and its owner's API.
    ports = iter(free_ports(3 + 2 * len(homes)))
    # Serial devices and radio links are relative paths: every process runs
    # in the work directory, so the pseudo-terminals appear there.
    aggregator = read_ini(os.path.join(etc, "aggregator.ini"))
    aggregator_port = next(ports)
    aggregator["aggregator"]["listen"] = f"tcp:{aggregator_port}:interface=127.0.0.1"
    aggregator["aggregator"]["status_file"] = os.path.join(workdir, "status.json")
    for section in aggregator.sections():
        if section.startswith("event:"):
            aggregator.remove_section(section)
    # A new id per run: an event's +SECONDS count from when the aggregator
    # first read its id (kept in its store), so a work directory used again
    # would find "demo-peak" long over.
    event = f"demo-peak-{datetime.now().strftime('%H%M%S')}"
    aggregator[f"event:{event}"] = {
        "limit_kw": str(limit_kw if limit_kw is not None else 12),
        "start": f"+{event_start:g}",
        "end": f"+{event_start + event_length:g}",
    }
    manhole_port = next(ports)
    aggregator["manhole"] = manhole_ssh(manhole_port)
    aggregator["tls"] = aggregator_tls()
    api_port = next(ports)
    aggregator["api"] = {"listen": f"tcp:{api_port}:interface=127.0.0.1"}
    write_ini(aggregator, os.path.join(workdir, "aggregator.ini"))
    events_file = aggregator["aggregator"].get("events_file")
    if events_file and os.path.exists(os.path.join(etc, events_file)):
        # Next to the config, as the aggregator looks for it: edit it while
        # the demo runs to add or change events live.
        shutil.copy(os.path.join(etc, events_file), os.path.join(workdir, events_file))
    processes = [("aggregator", "jeisson-aggregator", os.path.join(workdir, "aggregator.ini"))]
    if os.path.exists(os.path.join(etc, "radio.ini")):
        # The simulated XBee network: its pseudo-terminals must exist before
        # the home and the boards that open them.
        shutil.copy(os.path.join(etc, "radio.ini"), os.path.join(workdir, "radio.ini"))
        processes.append(("radio", "jeisson-radio", os.path.join(workdir, "radio.ini")))

    home_ports = {}
    home_ids, board_ids = [], []
    home_apis = {}
    for name in homes:
        home = read_ini(os.path.join(etc, name))
        home_id = home["home"]["id"]
        home_ids.append(home_id)
        home["home"]["aggregator"] = f"tcp:127.0.0.1:{aggregator_port}"
        home["tls"] = home_tls(home_id)
        for section in home.sections():
            if section.startswith("actuator:"):
                board_ids.append(section.split(":", 1)[1])
                home[section]["key"] = board_key(section.split(":", 1)[1])
        if "actuators" in home["home"]:
            old = port_of(home["home"]["actuators"])
            home_ports[old] = next(ports)
            home["home"]["actuators"] = f"tcp:{home_ports[old]}:interface=127.0.0.1"
        # Each home its own port: they would all want 8481.
        home_apis[home_id] = next(ports)
        home["api"] = {"listen": f"tcp:{home_apis[home_id]}:interface=127.0.0.1"}
        write_ini(home, os.path.join(workdir, name))
        processes.append((name[:-4], "jeisson-home", os.path.join(workdir, name)))
    for name in sorted(f for f in os.listdir(etc) if re.fullmatch(r"actuator-.*\.ini", f)):
        actuator = read_ini(os.path.join(etc, name))
        actuator["actuator"]["key"] = board_key(actuator["actuator"]["id"])
        if "home" in actuator["actuator"]:
            old = port_of(actuator["actuator"]["home"])
            if old not in home_ports:
                continue
            actuator["actuator"]["home"] = f"tcp:127.0.0.1:{home_ports[old]}"
        write_ini(actuator, os.path.join(workdir, name))
        processes.append((name[:-4], "jeisson-actuator", os.path.join(workdir, name)))
    make_credentials(os.path.join(workdir, PKI), home_ids, board_ids)
    return {"processes": processes, "event": event, "manhole": manhole_port, "api": api_port, "home_apis": home_apis}


def manhole_command(workdir: str, port: int) -> str:
    """The ``ssh`` command to reach the aggregator's manhole, checking its
    host key against a ``known_hosts`` file written beside the configs."""
    from jeisson.manhole import known_hosts_line, ssh_command

    manhole = os.path.join(workdir, PKI, "manhole")
    known_hosts = os.path.join(workdir, "known_hosts")
    with open(known_hosts, "w", encoding="utf-8") as f:
        f.write(known_hosts_line(os.path.join(manhole, "ssh_host_ed25519_key"), port))
    return ssh_command(port, os.path.join(manhole, "operator_ed25519"), known_hosts)


def jeisson_command() -> str:
    """How to run the ``jeisson`` command from a shell: its name when the
    one on PATH is this environment's, else its path, else ``python -m``."""
    beside = os.path.join(os.path.dirname(sys.executable), "jeisson")
    if not os.path.exists(beside):
        return f"{sys.executable} -m jeisson.cli"
    on_path = shutil.which("jeisson")
    return "jeisson" if on_path and os.path.realpath(on_path) == os.path.realpath(beside) else beside


@attrs.frozen
class Access:
    """Where the demo's system is reached, and with what: shown on every
    redraw and written to ``access.txt`` (nothing here is cleared away)."""

    workdir: str
    api: str  # the aggregator's API and dashboard, http://127.0.0.1:PORT
    homes: dict[str, str]  # each home's owner's page
    manhole: str  # the ssh command
    jeisson: str  # how to run the jeisson command
    event: str  # the demo's event
    token: str | None = None  # the API's token, when it wants one (not on loopback)

    @property
    def file(self) -> str:
        return os.path.join(self.workdir, "access.txt")

    def commands(self) -> list[str]:
        """A few ``jeisson`` commands to try."""
        j = self.jeisson
        return [f"{j} status", f"{j} homes", f"{j} events list",
                f"{j} events add demo-extra --limit-kw 9 --start +20 --end +80",
                f"{j} events modify {self.event} --limit-kw 10", f"{j} why home-1 ev-charger",
                f"{j} export --since -600 -o {os.path.join(self.workdir, 'measurements.csv')}"]

    def header(self) -> list[str]:
        """The lines every redraw starts with."""
        homes = "  ".join(f"{home} {url}" for home, url in sorted(self.homes.items()))
        token = f"; token {self.token}" if self.token else " (loopback: no token needed)"
        return [f"dashboard   {self.api}/",
                f"home pages  {homes}",
                f"manhole     {self.manhole}",
                f"try         export JEISSON_API={self.api}{token}",
                f"            {self.jeisson} status | homes | events list | why home-1 ev-charger",
                f"            (these, and more, in {self.file})"]

    def text(self) -> str:
        """``access.txt``."""
        token = f"\nits token (Authorization: Bearer): {self.token}" if self.token else " (loopback: no token needed)"
        lines = [f"jeisson demo: configs and logs in {self.workdir}", "",
                 f"dashboard (the aggregator):  {self.api}/",
                 "home owners' pages:" + "".join(f"\n  {home}  {url}/" for home, url in sorted(self.homes.items())),
                 f"the JSON API:                {self.api}/api/v1/status{token}",
                 f"metrics (Prometheus):        {self.api}/metrics", "",
                 "the aggregator's manhole (SSH, keys only):", f"  {self.manhole}", "",
                 "the jeisson command (docs/operations.rst):", f"  export JEISSON_API={self.api}"]
        if self.token:
            lines.append(f"  export JEISSON_TOKEN={self.token}")
        return "\n".join(lines + [f"  {command}" for command in self.commands()]) + "\n"

    def write(self) -> None:
        with open(os.open(self.file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w", encoding="utf-8") as f:
            f.write(self.text())


def fetch(api: str) -> tuple[dict | None, list | None, str | None]:
    """The aggregator's ``/status`` and ``/homes``, or why not (the
    ``jeisson`` command's message)."""
    from jeisson.client.commands import Api, homes_request, status_request
    from jeisson.client.exchange import ClientError, api_target

    client = Api(api_target(api), timeout=2.0)
    try:
        status = client.json(status_request())
        homes = client.json(homes_request(False)).get("homes")
    except ClientError as e:
        return None, None, e.message
    return status, homes if isinstance(homes, list) else None, None


def console(status: dict | None, homes: list | None, access: Access, elapsed: float, duration: float,
            problem: str | None = None, fallback: dict | None = None) -> str:
    """The demo's view: its header (URLs, the manhole, commands), then what
    ``jeisson status`` and ``jeisson homes`` show: the limit against what is
    committed and measured with an honest verdict, the events' countdowns,
    each home.  Without the API (``problem``), the status file's view
    (``fallback``) if there is one."""
    from jeisson.client import render as api_render

    lines = [f"jeisson demo   t = {elapsed:5.0f} s of {duration:.0f} s   (Ctrl-C stops everything)", "",
             *access.header(), ""]
    if status is None:
        lines.append(f"waiting for the aggregator's API: {problem or 'no answer yet'}")
        if fallback is not None:
            # Without its title line: the view's own is above.
            lines += ["the status file says:", render(fallback, time.monotonic() - elapsed, duration).split("\n", 2)[2]]
        return "\n".join(lines)
    lines.append(api_render.status_text(status))
    if homes is not None:
        lines += ["", api_render.homes_table(homes)]
    return "\n".join(lines)


class Fleet:
    """The started twistd processes; stops them all, whatever happens."""

    def __init__(self, workdir: str):
        self.workdir = workdir
        self.running: list[tuple[str, subprocess.Popen]] = []

    def start(self, name: str, plugin: str, config: str) -> None:
        log = open(os.path.join(self.workdir, f"{name}.log"), "wb")
        command = twistd_command() + ["-n", "--pidfile=", plugin, "--config", config]
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir,
                                   start_new_session=True)
        log.close()
        self.running.append((name, process))

    def dead(self) -> list[str]:
        return [name for name, p in self.running if p.poll() is not None]

    def stop(self) -> None:
        for _, process in reversed(self.running):
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 10
        for _, process in self.running:
            try:
                process.wait(max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _kw(watts) -> str:
    return "    -   " if watts is None else f"{watts / 1000:6.2f} kW"


def round_line(last: dict, measured_now: float | None = None) -> str:
    """The last round, as the status file has it: "within limit" only when
    both what is committed and what is measured are within it, at the
    round's end and, when given, now (``measured_now``, during its event)."""
    limit = last["limit_w"]
    counted = last["committed_w"] + last["unknown_w"]
    measured = last.get("measured_w")
    over_now = measured_now is not None and measured_now > limit + 1e-6
    within = (last["within_limit"] and counted <= limit + 1e-6 and (measured is None or measured <= limit + 1e-6)
              and not over_now)
    verdict = "within limit" if within else "OVER LIMIT"
    if not within:
        above = []
        if counted > limit + 1e-6:
            above.append(f"committed + unknown {(counted - limit) / 1000:.2f} kW above")
        if measured is not None and measured > limit + 1e-6:
            above.append(f"measured {(measured - limit) / 1000:.2f} kW above")
        must_over = last.get("must_w", 0.0) + last.get("away_w", 0.0) - limit
        if must_over > 1e-6:
            above.insert(0, f"must-run {last['must_w'] / 1000:.2f} kW + away {last['away_w'] / 1000:.2f} kW,"
                            f" {must_over / 1000:.2f} kW above the limit")
        if over_now:
            above.append(f"measured now {(measured_now - limit) / 1000:.2f} kW above")
        if above:
            verdict += " (" + "; ".join(above) + ")"
    shown_measured = f", measured {measured / 1000:.2f} kW" if measured is not None else ""
    return (f"round {last['number']} ({last['finished'][11:19]} UTC): committed {last['committed_w'] / 1000:.2f} kW"
            f" + unknown {last['unknown_w'] / 1000:.2f} kW{shown_measured} of limit {limit / 1000:.2f} kW: {verdict}")


def render(status: dict | None, started: float, duration: float) -> str:
    elapsed = time.monotonic() - started
    lines = [f"jeisson demo   t = {elapsed:5.0f} s of {duration:.0f} s   (Ctrl-C stops everything)", ""]
    if status is None:
        return "\n".join(lines + ["waiting for the aggregator..."])
    event = status.get("event")
    if event:
        lines.append(f"DR event {event['id']}: limit {event['limit_w'] / 1000:.2f} kW until {event['end'][11:19]} UTC")
    else:
        lines.append("no DR event active: every load runs as its owner set it")
    last = status.get("last_round")
    if last:
        # What the homes measure now (their level where they have no
        # measurement) also decides the verdict during the round's event.
        now = sum(home["measured_w"] if home["measured_w"] is not None else home["level_w"] or 0.0
                  for home in status["homes"].values())
        lines.append(round_line(last, now if event and event["id"] == last["event"] else None))
    lines += ["", f"{'home':8} {'link':5} {'demand':>9} {'budget':>9} {'drawing':>9} {'measured':>9}  loads on | off"]
    in_round = last["homes"] if last and event else {}
    total = {"demand": 0.0, "level": 0.0, "measured": 0.0}
    for home_id, home in sorted(status["homes"].items()):
        loads = home["loads"]
        on = [load["id"] for load in loads if load["on"]]
        off = [load["id"] for load in loads if not load["on"]]
        budget = in_round.get(home_id, {}).get("budget_w") if event else None
        for key, value in (("demand", home["demand_w"]), ("level", home["level_w"]), ("measured", home["measured_w"])):
            total[key] += value or 0.0
        lines.append(
            f"{home_id:8} {'up' if home['connected'] else 'DOWN':5} {_kw(home['demand_w'])} {_kw(budget)}"
            f" {_kw(home['level_w'])} {_kw(home['measured_w'])}  {' '.join(on)} | {' '.join(off)}"
        )
    lines.append(f"{'total':8} {'':5} {_kw(total['demand'])} {'':9} {_kw(total['level'])} {_kw(total['measured'])}")
    return "\n".join(lines)


def summary(log_path: str) -> str:
    rounds = []
    try:
        with open(log_path, encoding="utf-8", errors="replace") as f:
            for line in f:
                match = ROUND_LINE.search(line)
                if match:
                    rounds.append(match)
    except OSError:
        return "no aggregator log"
    if not rounds:
        return "no negotiation round ran"
    over = [m for m in rounds if m["verdict"] != "within limit"]
    peak = max(int(m["committed"]) + int(m["unknown"]) for m in rounds)
    measured = [int(m["measured"]) for m in rounds if m["measured"] is not None]
    limit = min(int(m["limit"]) for m in rounds)
    peak_measured = f", highest measured {max(measured) / 1000:.2f} kW" if measured else ""
    return (f"{len(rounds)} rounds; highest committed + unknown {peak / 1000:.2f} kW{peak_measured} against a limit"
            f" of {limit / 1000:.2f} kW; rounds over the limit: {len(over)}")


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--etc", default=os.path.join(os.getcwd(), "etc", "jeisson"),
                        help="directory of the example configs (default: ./etc/jeisson)")
    parser.add_argument("--duration", type=float, default=100.0, help="seconds to run (default 100)")
    # After the homes switched on what their owners want and those loads'
    # minimum on times (10 s in etc/jeisson) ran out: an event starting while
    # they hold would begin with must-run loads above the limit.
    parser.add_argument("--event-start", type=float, default=30.0, help="event start, s after launch (default 30)")
    parser.add_argument("--event-length", type=float, default=60.0, help="event length in s (default 60)")
    parser.add_argument("--limit-kw", type=float, default=None, help="the event's limit (default 12 kW)")
    parser.add_argument("--workdir", default=None, help="where configs and logs go (default: a new temp dir)")
    args = parser.parse_args(argv)
    if not os.path.isfile(os.path.join(args.etc, "aggregator.ini")):
        parser.error(f"no aggregator.ini in {args.etc}: run from the repository root or pass --etc")
    workdir = args.workdir or tempfile.mkdtemp(prefix="jeisson-demo-")
    os.makedirs(workdir, exist_ok=True)
    plan = prepare(args.etc, workdir, args.event_start, args.event_length, args.limit_kw)
    fleet = Fleet(workdir)
    # SIGTERM (or a closed terminal) stops the demo as Ctrl-C does.
    signal.signal(signal.SIGTERM, _interrupt)
    status_path = os.path.join(workdir, "status.json")
    interactive = sys.stdout.isatty()
    started = time.monotonic()
    api = f"http://127.0.0.1:{plan['api']}"
    access = Access(workdir=workdir, api=api,
                    homes={home: f"http://127.0.0.1:{port}" for home, port in plan["home_apis"].items()},
                    manhole=manhole_command(workdir, plan["manhole"]), jeisson=jeisson_command(), event=plan["event"])
    access.write()
    print(f"jeisson demo: configs and logs in {workdir}")
    print(f"credentials (jeisson pki list {os.path.join(workdir, PKI)}): CA, aggregator's and homes' certificates "
          "(mutual TLS), boards' keys, manhole's SSH keys")
    print("\n".join(access.header()))
    try:
        for name, plugin, config in plan["processes"]:
            fleet.start(name, plugin, config)
            # The aggregator and the radio first: the others connect to them.
            time.sleep(0.3 if plugin in ("jeisson-aggregator", "jeisson-radio") else 0.05)
        print(f"started {len(fleet.running)} twistd processes: " + ", ".join(n for n, _ in fleet.running))
        last_shown = 0.0
        while time.monotonic() - started < args.duration:
            dead = fleet.dead()
            if dead:
                print(f"process(es) stopped unexpectedly: {', '.join(dead)}; see their logs in {workdir}")
                return 1
            status, homes, problem = fetch(api)
            fallback = None
            if status is None:
                try:
                    with open(status_path, encoding="utf-8") as f:
                        fallback = json.load(f)
                except (OSError, ValueError):
                    fallback = None
            view = console(status, homes, access, time.monotonic() - started, args.duration, problem, fallback)
            if interactive:
                sys.stdout.write("\x1b[H\x1b[2J" + view + "\n")
                sys.stdout.flush()
            elif time.monotonic() - last_shown >= 10:
                print(f"--- {datetime.now():%H:%M:%S}\n" + view, flush=True)
                last_shown = time.monotonic()
            time.sleep(1.0)
    except KeyboardInterrupt:
        print("\ninterrupted")
    finally:
        fleet.stop()
        print(f"stopped {len(fleet.running)} processes; logs in {workdir}; URLs and commands in {access.file}")
        print(summary(os.path.join(workdir, "aggregator.log")))
    if args.workdir is None and os.environ.get("JEISSON_DEMO_CLEAN"):
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
