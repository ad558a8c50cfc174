"""A home killed with kill -9 while its aggregator is gone keeps its budget.

Real ``twistd`` processes on loopback, run from this checkout: an
aggregator, a home with its store (on by default, beside its ini file) and
its software actuator.  An event cuts the limit below the home's demand; once
the home has committed to its budget, the aggregator is killed (kill -9) and
never comes back, then the home is killed (kill -9) and started again.  What
the relays draw is computed from the actuator's own log (each relay switch it
made, as the board's firmware would report it), never from what the home
believes: from the budget until the event's end it stays within the limit;
after the end the home restores its loads by itself.
"""

import calendar
import json
import os
import re
import signal
import sqlite3
import time

import pytest

from jeisson.demo import Fleet, free_ports
from tests.waiting import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

LIMIT_W = 2200
EVENT_S = 30
LOADS = [("heater", 2000, 30, "no"), ("ev", 3600, 10, "no"), ("fridge", 150, 90, "yes")]  # relay 1, 2, 3
WATTS = {relay: watts for relay, (_, watts, _, _) in enumerate(LOADS, 1)}

# The actuator's relay lines: switched by the home, or by the board itself
# (its safe state), and its power-up with every relay open.
SWITCHED = re.compile(r"^(\S+) .*relay (\d+) switched (on|off) by the home"
                      r"|^(\S+) .*switched relay (\d+) (on|off) \(its safe state\)"
                      r"|^(\S+) .*powered up: relays open", re.M)


def utc(seconds: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(seconds))


def log_time(stamp: str) -> float:
    """twistd's log timestamp (``2027-01-15T08:00:05+0000``), to the second."""
    return float(calendar.timegm(time.strptime(stamp[:19], "%Y-%m-%dT%H:%M:%S")))


def read(path) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


def draws(log: str) -> list[tuple[float, dict[int, bool], float]]:
    """Every moment a relay moved: (time, states, watts drawn after it)."""
    states = dict.fromkeys(WATTS, False)
    moments = []
    for match in SWITCHED.finditer(log):
        if match.group(1):
            states[int(match.group(2))] = match.group(3) == "on"
            stamp = match.group(1)
        elif match.group(4):
            states[int(match.group(5))] = match.group(6) == "on"
            stamp = match.group(4)
        else:
            states = dict.fromkeys(WATTS, False)
            stamp = match.group(7)
        moments.append((log_time(stamp), dict(states), sum(WATTS[r] for r, on in states.items() if on)))
    return moments


def switched_at(moments, relay: int, on: bool, after: float = 0.0) -> float | None:
    """When ``relay`` first went ``on`` (or off) at or after ``after``."""
    before = None
    for t, states, _ in moments:
        if before is not None and before[relay] != on and states[relay] == on and t >= after:
            return t
        before = states
    return None


def stored(path, scope: str, key: str):
    """A value of the home's store as committed, read as another process would."""
    if not os.path.exists(path):
        return None
    db = sqlite3.connect(path)
    try:
        rows = db.execute("SELECT value FROM state WHERE scope = ? AND key = ?", (scope, key)).fetchall()
    except sqlite3.Error:
        return None
    finally:
        db.close()
    return json.loads(rows[0][0]) if rows else None


def relays_now(log: str) -> dict[int, bool]:
    found = draws(log)
    return found[-1][1] if found else {}


@pytest.fixture
def work(tmp_path, monkeypatch):
    # The processes run this checkout, not an installed copy.
    monkeypatch.setenv("PYTHONPATH", REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return tmp_path


def test_a_home_killed_while_its_aggregator_is_gone_keeps_its_budget_until_the_event_ends(work, credentials):
    aggregator_port, board_port = free_ports(2)
    events = work / "events.ini"
    events.write_text("")
    (work / "aggregator.ini").write_text(f"""
[aggregator]
listen = tcp:{aggregator_port}:interface=127.0.0.1
heartbeat_s = 1
round_period_s = 2
round_timeout_s = 2
events_file = {events}
events_poll_s = 0.2

[home:home-k]
secret = k-secret
""" + credentials.aggregator_tls())
    home = f"""
[home]
reconnect_base_s = 1
reconnect_cap_s = 4
id = home-k
secret = k-secret
aggregator = tcp:127.0.0.1:{aggregator_port}
actuators = tcp:{board_port}:interface=127.0.0.1
heartbeat_s = 1
command_timeout_s = 2
measure_period_s = 1

[actuator:board-k]
relays = {len(LOADS)}
key = {credentials.board("board-k")}
""" + credentials.home_tls("home-k")
    board = f"""
[actuator]
id = board-k
home = tcp:127.0.0.1:{board_port}
failsafe_after_s = 60
measure_period_s = 0.5
cold_load_min_s = 0
cold_load_max_s = 0
key = {credentials.board("board-k")}
"""
    for relay, (load, watts, priority, critical) in enumerate(LOADS, 1):
        home += f"""
[load:{load}]
actuator = board-k
relay = {relay}
rated_w = {watts}
priority = {priority}
critical = {critical}
min_on_s = 2
min_off_s = 2
"""
        board += f"""
[relay:{relay}]
load_w = {watts}
safe_state = off
min_interval_s = 0.5
"""
    (work / "home-k.ini").write_text(home)
    (work / "board-k.ini").write_text(board)
    fleet = Fleet(str(work))

    def board_log():
        return read(work / "board-k.log")

    try:
        fleet.start("aggregator", "jeisson-aggregator", str(work / "aggregator.ini"))
        fleet.start("home", "jeisson-home", str(work / "home-k.ini"))
        fleet.start("board-k", "jeisson-actuator", str(work / "board-k.ini"))
        wait_for(lambda: all(relays_now(board_log()).get(r) for r in WATTS), 30, "every relay on before the event")

        start = int(time.time()) + 1
        end = start + EVENT_S
        events.write_text(f"[event:peak-k]\nversion = 1\nlimit_kw = {LIMIT_W / 1000}\nstart = {utc(start)}\n"
                          f"end = {utc(end)}\n")
        # The ev is shed, and the home has committed to its budget: what
        # the COMMIT rests on is in its store.
        wait_for(lambda: relays_now(board_log()).get(2) is False, 20, "the ev to be shed in the event")
        wait_for(lambda: stored(work / "home-k.sqlite", "budget", "active") and
                 (stored(work / "home-k.sqlite", "load", "ev") or {}).get("on") is False, 20,
                 "the budget and the ev's switch to be committed in the home's store")
        shed_at = switched_at(draws(board_log()), 2, False)
        assert shed_at is not None

        for name in ("aggregator", "home"):  # kill -9, the aggregator first; it never comes back
            process = dict(fleet.running)[name]
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        assert time.time() < end - 10, "too slow to test anything: the event is nearly over"
        fleet.start("home-again", "jeisson-home", str(work / "home-k.ini"))
        wait_for(lambda: "resumed the budget of round" in read(work / "home-again.log"), 20,
                 "the restarted home to resume its budget")
        wait_for(lambda: "actuator board-k connected" in read(work / "home-again.log"), 20,
                 "the board to reconnect to the restarted home")
        # After the end, the home restores the ev by itself.
        wait_for(lambda: time.time() > end and relays_now(board_log()).get(2), EVENT_S + 20,
                 "the ev to be restored after the event")

        moments = draws(board_log())
        during = [(t, watts) for t, _, watts in moments if shed_at <= t < end - 1]
        assert during and max(watts for _, watts in during) <= LIMIT_W, moments
        restored_at = switched_at(moments, 2, True, after=shed_at)
        assert restored_at is not None and restored_at >= end - 1, (restored_at, end, moments)
        log = read(work / "home-again.log")
        assert "event peak-k is over: restoring loads as their owner set them" in log
        assert "Traceback" not in log and "Traceback" not in board_log()
        assert os.path.exists(work / "home-k.sqlite")
    finally:
        fleet.stop()


def test_a_store_that_cannot_be_opened_stops_the_home_with_one_line_naming_the_file(work, credentials):
    import subprocess

    from jeisson.demo import twistd_command

    config = work / "home-s.ini"
    config.write_text(f"""
[home]
reconnect_base_s = 1
reconnect_cap_s = 4
id = home-s
secret = s
aggregator = tcp:127.0.0.1:9
actuators = tcp:0:interface=127.0.0.1

[actuator:b]
relays = 1
key = {credentials.board("b")}

[load:lamp]
actuator = b
relay = 1
rated_w = 60

[store]
path = missing/home-s.sqlite
""" + credentials.home_tls("home-s"))
    result = subprocess.run(twistd_command() + ["-n", "--pidfile=", "jeisson-home", "--config", str(config)],
                            capture_output=True, text=True, timeout=60, cwd=str(work))
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"jeisson-home: cannot start home home-s: store {work / 'missing' / 'home-s.sqlite'}: " in output, output
    assert "Traceback" not in output
