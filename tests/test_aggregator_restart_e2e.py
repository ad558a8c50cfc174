"""An aggregator killed with kill -9 resumes its events and its round numbering.

A real ``twistd -n jeisson-aggregator``, run from a folder other than its
config's, with its store on by default (``aggregator.sqlite`` beside the
ini file) and an events file named relatively (``events.ini``, beside the
ini file too).  An event in ``+SECONDS`` is written to the events file; the
file is saved again later, unchanged but newer; the process is killed
with SIGKILL and started again.  Read from its status file and its log, as
an operator would: the event keeps its times (its ``+SECONDS`` count from
when its id was first read, kept in the store, not from the file's newer
save), and the rounds are numbered on above every number logged before the
kill.  Rounds run without homes (the one configured home never connects and
counts at its ``max_kw``), every ``round_period_s``.
"""

import json
import os
import re
import signal
import subprocess

import pytest

from jeisson.demo import free_ports, twistd_command
from tests.waiting import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def write(path, text):
    with open(path, "w", encoding="utf-8") as f:
        f.write(text)


def read(path) -> str:
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    except OSError:
        return ""


class Aggregator:
    """``twistd -n jeisson-aggregator`` in ``cwd``, its output in ``log``."""

    def __init__(self, config, cwd, log):
        self.log = log
        with open(log, "ab") as out:
            env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
            self.process = subprocess.Popen(
                twistd_command() + ["-n", "--pidfile=", "jeisson-aggregator", "--config", config],
                stdout=out, stderr=subprocess.STDOUT, cwd=cwd, start_new_session=True, env=env)

    def kill(self, sig=signal.SIGKILL):
        if self.process.poll() is None:
            self.process.send_signal(sig)
        self.process.wait(10)


@pytest.fixture
def work(tmp_path, credentials):
    etc = tmp_path / "etc"
    run = tmp_path / "run"
    etc.mkdir()
    run.mkdir()
    [port] = free_ports(1)
    config = etc / "aggregator.ini"
    write(config, f"""
[aggregator]
listen = tcp:{port}:interface=127.0.0.1
heartbeat_s = 1
round_period_s = 1
round_timeout_s = 1
status_file = status.json
events_file = events.ini
events_poll_s = 0.2

[home:h1]
secret = s1
max_kw = 1
""" + credentials.aggregator_tls())
    started = []

    def start():
        aggregator = Aggregator(str(config), str(run), str(tmp_path / "aggregator.log"))
        started.append(aggregator)
        return aggregator

    try:
        yield {"etc": etc, "run": run, "start": start, "log": tmp_path / "aggregator.log"}
    finally:
        for aggregator in started:
            aggregator.kill(signal.SIGTERM)


def status(work):
    # status_file is relative to where the process runs.
    try:
        return json.loads(read(work["run"] / "status.json")) or None
    except ValueError:
        return None


def rounds_logged(work) -> list[int]:
    return [int(n) for n in re.findall(r"round (\d+) event e2e: committed", read(work["log"]))]


def test_a_killed_aggregator_resumes_its_events_and_its_round_numbering(work):
    events = work["etc"] / "events.ini"
    write(events, "[event:e2e]\nlimit_kw = 5\nstart = +1\nend = +900\n")
    first = work["start"]()
    in_force = wait_for(lambda: (s := status(work)) and s["event"] and s["event"]["id"] == "e2e"
                        and s["last_round"] and s["last_round"]["number"] >= 3 and s, 30,
                        "event e2e from the events file beside the config, and three rounds")
    times = (in_force["event"]["start"], in_force["event"]["end"])
    assert in_force["last_round"]["unknown_w"] == 1000, "the home never heard from counts at its max_kw"
    # Saved again, unchanged, a minute newer: +SECONDS do not count from it.
    later = os.stat(events).st_mtime + 60
    os.utime(events, (later, later))
    wait_for(lambda: "events file" in read(work["log"]) and read(work["log"]).count(" read: 1 event(s)") >= 2, 10,
             "the events file read again")
    wait_for(lambda: len(rounds_logged(work)) >= 4, 10, "a fourth round")
    first.kill()
    before = max(rounds_logged(work))
    assert os.path.exists(work["etc"] / "aggregator.sqlite"), "the store is beside the config"

    second = work["start"]()
    wait_for(lambda: read(work["log"]).count("resumed from store") == 1 and rounds_logged(work)[-1] > before, 30,
             "a round after the restart")
    log = read(work["log"])
    after = rounds_logged(work)[rounds_logged(work).index(before) + 1:]
    assert after and min(after) > before, (before, after)
    assert "event e2e version 1 resumed" in log
    resumed = wait_for(lambda: (s := status(work)) and s["last_round"] and s["last_round"]["number"] > before
                       and s, 10, "the status file after the restart")
    assert (resumed["event"]["id"], resumed["event"]["start"], resumed["event"]["end"]) == ("e2e", *times)
    assert "Traceback" not in log
    second.kill(signal.SIGTERM)  # twistd ends by its signal again, once shut down
    assert read(work["log"]).endswith("Server Shut Down.\n")


def test_a_store_that_cannot_be_opened_stops_the_start_with_one_line_naming_it(tmp_path, credentials):
    [port] = free_ports(1)
    config = tmp_path / "aggregator.ini"
    write(config, f"[aggregator]\nlisten = tcp:{port}:interface=127.0.0.1\n[home:h1]\nsecret = s1\n"
                  f"[store]\npath = {tmp_path}/missing/aggregator.sqlite\n" + credentials.aggregator_tls())
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    result = subprocess.run(twistd_command() + ["-n", "--pidfile=", "jeisson-aggregator", "--config", str(config)],
                            capture_output=True, text=True, cwd=str(tmp_path), env=env, timeout=60)
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"jeisson-aggregator: cannot start: store {tmp_path}/missing/aggregator.sqlite: the folder" in output
    assert "Traceback" not in output
