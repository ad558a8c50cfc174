"""The reconnect storm after an aggregator restart: ``python bench/reconnect_storm.py --homes N``.

A real aggregator (``twistd jeisson-aggregator``: mutual TLS with its
revocation list, its listener's limits as they are by default) and N homes
in a few helper processes, each home the real ``Home`` core with its real
uplink: ``jeisson.home.tap.uplink_service`` (a ``ClientService``) over
``jeisson.tls.client_endpoint``, with the home's own certificate.  The
homes connect from 127.0.0.2 and up (``bindAddress``), at most
``--per-address`` of them from one address, so that the aggregator's
limits per address (64 open, 600 new a minute by default) stay on, as in
the field, where each home has an address of its own.

Once every home is welcomed the aggregator is killed (SIGKILL) and started
again ``--down-s`` seconds later on the same port.  Measured:

- ``back_s``: from the restart (the new process listening) until every
  home is welcomed again;
- ``peak_handshakes_s``: the most homes registered in one second at the
  aggregator (its log's ``home H registered from`` lines: a completed TLS
  handshake and HELLO each);
- ``peak_attempts_s``: the most connection attempts the homes made in one
  second (each ``ClientService`` call of the endpoint, from the kill on,
  those refused during the outage included), and ``max_share_pct`` the
  same as a share of all of them (the target: at most 2 %).

Each policy of ``--policies`` in turn, in the same run, each with a fresh
aggregator and fresh homes: ``jitter`` is jeisson's (``[home]
reconnect_base_s`` 120 s and ``reconnect_cap_s`` 300 s by default: full
jitter, ``jeisson.backoff``); ``twisted`` the baseline, Twisted's
``backoffPolicy(initialDelay=0.5, maxDelay=15)`` (1.5x an attempt, plus 0
to 1 s of jitter), the policy the homes had before.

The machine is shared (2 cores): the homes' handshakes compete with the
aggregator's for the CPU, which a field's homes would not.

Last line per policy: ``policy=P homes=N back_s=... peak_handshakes_s=...
peak_attempts_s=... max_share_pct=... attempts=...``.
"""

import argparse
import collections
import datetime
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tempfile
import time
from typing import Any

from round_latency import spread
from tls_memory import fleet_credentials, read_json_line, start_in_batches

HERE = pathlib.Path(__file__).resolve()
BIN = pathlib.Path(sys.executable).parent
POLICIES = ("twisted", "jitter")


def home_id(i: int) -> str:
    return f"h{i:05d}"


def source_address(i: int, per_address: int) -> str:
    """Home ``i``'s source address: 127.0.0.2 and up, ``per_address`` homes each."""
    k = 2 + i // per_address
    if k >= 254 * 250:
        raise SystemExit("too many homes for 127.0.0.0/8 at this --per-address")
    return f"127.0.{k // 254}.{k % 254 + 1}"


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def listening(port: int) -> bool:
    """Whether something listens on ``port`` (read from /proc: a probing
    connection would count at the aggregator as a failed handshake)."""
    for line in pathlib.Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
            return True
    return False


# ------------------------------------------------------------- the homes


def run_homes(port: int, first: int, count: int, pki_dir: str, policy: str, per_address: int) -> None:
    """A helper of real homes (``Home``, ``uplink_service`` over mutual TLS).

    Says ``{"ready": n}`` once all are welcomed; records each connection
    attempt and each welcome from then on; once all are welcomed again after
    losing their aggregator, says ``{"back": n, "attempts": [...],
    "welcomed": [...]}`` (epoch seconds)."""
    import attrs
    from twisted.application.internet import backoffPolicy
    from twisted.internet import reactor
    from twisted.internet.interfaces import IStreamClientEndpoint
    from twisted.logger import ILogObserver, LogLevel, globalLogBeginner, textFileLogObserver
    from zope.interface import implementer, provider

    from jeisson import tls
    from jeisson.home import config as home_config
    from jeisson.home.core import Home
    from jeisson.home.listeners import HomeListener
    from jeisson.home.tap import uplink_service
    from jeisson.simulation import SimLoad, home_inis

    to_stderr = textFileLogObserver(sys.stderr)

    @provider(ILogObserver)
    def observer(event: dict[str, Any]) -> None:
        # Errors only: the refused attempts during the outage are the point.
        if event.get("log_level") in (LogLevel.error, LogLevel.critical):
            to_stderr(event)

    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)

    state: dict[str, Any] = {"linked": set(), "lost": False, "attempts": [], "welcomed": []}

    def report_if_done() -> None:
        if len(state["linked"]) != count:
            return
        if not state["lost"]:
            print(json.dumps({"ready": count}), flush=True)
        else:
            print(json.dumps({"back": count, "attempts": state["attempts"], "welcomed": state["welcomed"]}),
                  flush=True)

    class Watch(HomeListener):
        def __init__(self, hid: str):
            self.hid = hid

        def aggregator_linked(self, peer: str, version: int) -> None:
            if state["lost"]:
                state["welcomed"].append(time.time())
            state["linked"].add(self.hid)
            report_if_done()

        def aggregator_unlinked(self, peer: str) -> None:
            state["lost"] = True
            state["linked"].discard(self.hid)

    @implementer(IStreamClientEndpoint)
    class Counted:
        """The home's endpoint, each attempt's time recorded once the
        aggregator has been lost."""

        def __init__(self, endpoint: Any):
            self.endpoint = endpoint

        def connect(self, factory: Any) -> Any:
            if state["lost"]:
                state["attempts"].append(time.time())
            return self.endpoint.connect(factory)

    old_policy: Any = backoffPolicy(initialDelay=0.5, maxDelay=15)  # a retryPolicy, as FullJitter is
    services = []

    def start(i: int) -> None:
        hid = home_id(first + i)
        home_ini, _ = home_inis(hid, [SimLoad(1000, 5)], aggregator=f"tcp:127.0.0.1:{port}:bindAddress="
                                f"{source_address(first + i, per_address)}", store=False)
        # jeisson's reconnection as configured by default ([home]
        # reconnect_base_s, reconnect_cap_s unset), not the simulation's lab values.
        home_ini = re.sub(r"reconnect_(base|cap)_s = .*\n", "", home_ini)
        home_ini += (f"[tls]\nca = {pki_dir}/ca.pem\ncert = {pki_dir}/homes/{hid}.pem\n"
                     f"key = {pki_dir}/homes/{hid}.key\nname = localhost\n")
        config = home_config.config_from_string(home_ini, f"<{hid}>")
        if policy == "twisted":
            config = attrs.evolve(config, reconnect=old_policy)
        assert config.tls is not None
        home = Home(config, reactor)
        home.add_listener(Watch(hid))
        endpoint = tls.client_endpoint(reactor, config.aggregator, config.tls, tls.load_client(config.tls, hid))
        service = uplink_service(home, reactor, Counted(endpoint))
        services.append(service)
        service.startService()

    start_in_batches(reactor, count, start, size=50, pause=0.1)
    reactor.run()


# ------------------------------------------------------------ the bench


def aggregator_ini(work: pathlib.Path, port: int, n: int) -> pathlib.Path:
    """The aggregator's config: mutual TLS as ``jeisson pki`` lays it out,
    the listener's limits as they are by default, no store, no event."""
    lines = [f"[aggregator]\nlisten = tcp:{port}:interface=127.0.0.1:backlog=4096\nheartbeat_s = 30\n"
             "round_period_s = 3600\nseed = 1\n[store]\npath = none\n"
             "[tls]\nca = pki/ca.pem\ncert = pki/aggregator.pem\nkey = pki/aggregator.key\ncrl = pki/crl.pem\n"]
    lines += [f"[home:{home_id(i)}]\nsecret = s-{home_id(i)}\n" for i in range(n)]
    path = work / "aggregator.ini"
    path.write_text("".join(lines))
    return path


def start_aggregator(work: pathlib.Path, ini: pathlib.Path, log: str, port: int) -> subprocess.Popen[bytes]:
    process = subprocess.Popen([str(BIN / "twistd"), "-n", "--pidfile=", "--logfile", str(work / log),
                                "jeisson-aggregator", "--config", str(ini)], cwd=work)
    deadline = time.monotonic() + 60
    while not listening(port):
        if process.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the aggregator did not listen on {port} (see {work / log})")
        time.sleep(0.02)
    return process


def registered_per_second(work: pathlib.Path, log: str, since: float) -> collections.Counter[int]:
    """The aggregator's ``home H registered from`` lines per second (its
    log's timestamps are to the second), from ``since`` on."""
    text = "".join(p.read_text() for p in sorted(work.glob(log + "*"), reverse=True))
    counts: collections.Counter[int] = collections.Counter()
    for match in re.finditer(r"^(\S+) \[[^\]]*\] home \S+ registered from", text, re.M):
        at = datetime.datetime.strptime(match.group(1), "%Y-%m-%dT%H:%M:%S%z").timestamp()
        if at >= int(since):
            counts[int(at)] += 1
    return counts


def warnings_of(work: pathlib.Path, log: str) -> collections.Counter[str]:
    """The restarted aggregator's warnings and errors, by kind (the line's
    text with its numbers and names blurred), but the one about its store."""
    text = "".join(p.read_text() for p in sorted(work.glob(log + "*"), reverse=True))
    kinds: collections.Counter[str] = collections.Counter()
    for match in re.finditer(r"^\S+ \[[^\]#]*#(?:warn|error|critical)\] (.*)$", text, re.M):
        if "no store" not in match.group(1):
            kinds[re.sub(r"[\d.:]+|h\d{5}", "#", match.group(1))[:90]] += 1
    return kinds


def storm(work: pathlib.Path, n: int, policy: str, procs: int, down_s: float, per_address: int) -> dict[str, Any]:
    port = free_port()
    ini = aggregator_ini(work, port, n)
    log = f"aggregator-{policy}.log"
    aggregator = start_aggregator(work, ini, log, port)
    helpers: list[subprocess.Popen[str]] = []
    try:
        started = time.monotonic()
        helpers = [subprocess.Popen([sys.executable, str(HERE), "--run-homes", str(port), str(first), str(count),
                                     str(work / "pki"), policy, str(per_address)], stdout=subprocess.PIPE, text=True)
                   for first, count in spread(n, procs)]
        for helper in helpers:
            reply = read_json_line(helper, 600)
            if "ready" not in reply:
                raise SystemExit(f"a helper failed: {reply}")
        print(f"[{policy}] {n} homes welcomed in {time.monotonic() - started:.1f} s", flush=True)
        time.sleep(2.0)
        aggregator.kill()  # SIGKILL: no goodbye to anyone
        aggregator.wait()
        killed = time.time()
        time.sleep(down_s)
        aggregator = start_aggregator(work, ini, log + ".2", port)
        restarted = time.time()
        print(f"[{policy}] aggregator killed, restarted {restarted - killed:.1f} s later", flush=True)
        replies = [read_json_line(helper, 1200) for helper in helpers]
        attempts = [t for r in replies for t in r["attempts"]]
        welcomed = [t for r in replies for t in r["welcomed"]]
        back_s = max(welcomed) - restarted
        per_second = collections.Counter(int(t) for t in attempts)
        handshakes = registered_per_second(work, log + ".2", restarted)
        for kind, count in warnings_of(work, log + ".2").most_common(5):
            print(f"[{policy}] the restarted aggregator warned {count} times: {kind}", flush=True)
        return {"policy": policy, "homes": n, "back_s": back_s, "peak_handshakes_s": max(handshakes.values()),
                "peak_attempts_s": max(per_second.values()),
                "max_share_pct": 100 * max(per_second.values()) / len(attempts), "attempts": len(attempts),
                "median_back_s": sorted(welcomed)[len(welcomed) // 2] - restarted,
                "handshake_seconds": len(handshakes)}
    finally:
        for helper in helpers:
            helper.kill()
            helper.wait()
        aggregator.kill()
        aggregator.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--homes", type=int, default=1000)
    parser.add_argument("--policies", default=",".join(POLICIES), help="comma-separated, of: " + ", ".join(POLICIES))
    parser.add_argument("--procs", type=int, default=2, help="helper processes for the homes")
    parser.add_argument("--down-s", type=float, default=3.0, help="seconds between the kill and the restart")
    parser.add_argument("--per-address", type=int, default=40, help="homes per source address (at most 64: the "
                        "aggregator's default max_connections_per_address)")
    parser.add_argument("--keep", action="store_true", help="keep the work directory (configs, logs)")
    args = parser.parse_args()
    policies = args.policies.split(",")
    for policy in policies:
        if policy not in POLICIES:
            raise SystemExit(f"--policies: unknown policy {policy!r}: one of {', '.join(POLICIES)}")
    work = pathlib.Path(tempfile.mkdtemp(prefix="jeisson-storm-"))
    try:
        started = time.monotonic()
        fleet_credentials(str(work / "pki"), [home_id(i) for i in range(args.homes)])
        print(f"credentials for {args.homes} homes made in {time.monotonic() - started:.1f} s", flush=True)
        results = [storm(work, args.homes, policy, args.procs, args.down_s, args.per_address) for policy in policies]
        for r in results:
            print(f"[{r['policy']}] median home back after {r['median_back_s']:.1f} s; the aggregator registered "
                  f"homes in {r['handshake_seconds']} distinct seconds")
        for r in results:
            print(f"policy={r['policy']} homes={r['homes']} back_s={r['back_s']:.1f} "
                  f"peak_handshakes_s={r['peak_handshakes_s']} peak_attempts_s={r['peak_attempts_s']} "
                  f"max_share_pct={r['max_share_pct']:.2f} attempts={r['attempts']}")
    finally:
        if args.keep:
            print(f"work directory kept: {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--run-homes":
        run_homes(int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6], int(sys.argv[7]))
    else:
        main()
