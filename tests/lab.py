"""A small lab of real processes for end-to-end tests over the HTTP API.

An aggregator, homes and their software boards, run with the real
``twistd`` commands (``jeisson.demo.Fleet``) on the default secure path:
mutual TLS between homes and aggregator (the ``credentials`` fixture),
authenticated boards, the store on; the aggregator's API and each home's
own on free loopback ports.  Timings are a lab's (1 s heartbeats, 2 s
rounds, reconnections within 1 to 4 s).

``HOMES`` maps a home to its loads ``(id, rated W, priority, critical)``;
each home has one board with a relay per load, which powers up open.
"""

import os
from collections.abc import Callable, Sequence

import attrs

from jeisson.demo import Fleet, free_ports


def _write(path: str, text: str) -> None:
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


Text = str | Callable[[dict[str, int]], str]  # config text, or made from the lab's ports


def aggregator_ini(ports: dict[str, int], homes, credentials, extra: str = "", keys: str = "") -> str:
    """The aggregator's config: its homes' listener and API, ``keys`` more
    lines in ``[aggregator]``, each home's secret (``secret-<home>``),
    ``extra`` sections, its TLS."""
    allowed = "".join(f"\n[home:{home}]\nsecret = secret-{home}\n" for home in homes)
    return f"""
[aggregator]
listen = tcp:{ports['aggregator']}:interface=127.0.0.1
heartbeat_s = 1
round_period_s = 2
round_timeout_s = 2
{keys}
[api]
listen = tcp:{ports['api']}:interface=127.0.0.1
{allowed}{extra}""" + credentials.aggregator_tls()


def home_inis(home: str, loads, ports: dict[str, int], credentials) -> tuple[str, str]:
    """A home's config and its board's: a relay per load, opened at power-up
    (safe state off), switched as often as the home likes."""
    board = f"{home}-board"
    text = f"""
[home]
id = {home}
secret = secret-{home}
aggregator = tcp:127.0.0.1:{ports['aggregator']}
actuators = tcp:{ports[home]}:interface=127.0.0.1
heartbeat_s = 1
command_timeout_s = 2
measure_period_s = 1
reconnect_base_s = 1
reconnect_cap_s = 4

[api]
listen = tcp:{ports[home + '-api']}:interface=127.0.0.1

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
        text += (f"\n[load:{load}]\nactuator = {board}\nrelay = {relay}\nrated_w = {watts}\npriority = {priority}\n"
                 f"critical = {critical}\n")
        board_text += f"\n[relay:{relay}]\nload_w = {watts}\nsafe_state = off\nmin_interval_s = 0\n"
    return text, board_text


@attrs.define
class Lab:
    """The processes started in ``work`` and where they listen."""

    work: str
    ports: dict[str, int]
    fleet: Fleet

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.ports['api']}"

    def home_api(self, home: str) -> str:
        return f"http://127.0.0.1:{self.ports[home + '-api']}"

    def log(self, name: str) -> str:
        with open(os.path.join(self.work, f"{name}.log"), encoding="utf-8", errors="replace") as f:
            return f.read()

    def stop(self) -> None:
        self.fleet.stop()


def start_lab(work: str, homes, credentials, aggregator_extra: Text = "", aggregator_keys: Text = "",
              extra_ports: Sequence[str] = ()) -> Lab:
    """Write the configs into ``work`` and start the aggregator, then each
    home and its board; ``Lab.stop`` ends them all.  ``aggregator_keys``:
    more lines in ``[aggregator]``; ``aggregator_extra``: more sections.
    Either may be a function of the lab's ports, which also hold a free one
    for each name in ``extra_ports`` (a manhole's, say)."""
    names = ["aggregator", "api"] + [f"{home}{suffix}" for home in homes for suffix in ("", "-api")]
    names += list(extra_ports)
    ports = dict(zip(names, free_ports(len(names)), strict=True))

    def made(value: Text) -> str:
        return value(ports) if callable(value) else value

    _write(os.path.join(work, "aggregator.ini"),
           aggregator_ini(ports, homes, credentials, made(aggregator_extra), made(aggregator_keys)))
    fleet = Fleet(work)
    try:
        fleet.start("aggregator", "jeisson-aggregator", os.path.join(work, "aggregator.ini"))
        for home, loads in homes.items():
            text, board_text = home_inis(home, loads, ports, credentials)
            _write(os.path.join(work, f"{home}.ini"), text)
            _write(os.path.join(work, f"{home}-board.ini"), board_text)
            fleet.start(home, "jeisson-home", os.path.join(work, f"{home}.ini"))
            fleet.start(f"{home}-board", "jeisson-actuator", os.path.join(work, f"{home}-board.ini"))
    except BaseException:
        fleet.stop()
        raise
    return Lab(work, ports, fleet)
