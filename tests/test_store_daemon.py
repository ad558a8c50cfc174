"""The store under a daemonized ``twistd`` (no ``-n``).

``twistd`` builds its services, opening the store, and then forks into the
background.  Threads and SQLite connections do not survive a fork: the
child must open its own and start its writer at its first job, or nothing
it is told is ever committed (and no home is ever welcomed, since WELCOME
waits for the registration to be durable).
"""

import os
import signal
import sqlite3
import subprocess

from jeisson.demo import twistd_command
from tests.waiting import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CONFIG = """
[aggregator]
listen = tcp:0:interface=127.0.0.1
[home:h1]
secret = s
[event:e1]
limit_kw = 5
start = +100
end = +200
"""


def journal_subjects(path: str) -> list[tuple[str, str]]:
    try:
        with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as db:
            return db.execute("SELECT kind, subject FROM journal").fetchall()
    except sqlite3.Error:
        return []


def test_a_daemonized_aggregator_commits_to_its_store(tmp_path):
    (tmp_path / "aggregator.ini").write_text(CONFIG)
    pidfile, log = tmp_path / "twistd.pid", tmp_path / "aggregator.log"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    started = subprocess.run(
        twistd_command() + [f"--pidfile={pidfile}", f"--logfile={log}", "jeisson-aggregator", "--config",
                            "aggregator.ini"], cwd=tmp_path, env=env, capture_output=True, timeout=60)
    assert started.returncode == 0, started.stderr.decode()
    pid = int(wait_for(lambda: pidfile.exists() and pidfile.read_text().strip(), 20, "the daemon's pid file"))
    try:
        try:
            rows = wait_for(lambda: journal_subjects(str(tmp_path / "aggregator.sqlite")), 20,
                            "the config's event committed by the daemon")
        except AssertionError as e:
            raise AssertionError(f"{e}; files {sorted(os.listdir(tmp_path))}; log:\n{log.read_text()}") from None
        assert ("event", "e1") in rows
    finally:
        # (A SIGTERM in the reactor's first instants, before it installs
        # its handlers, ends twistd without its clean stop: only wait for
        # the process to be gone.)
        os.kill(pid, signal.SIGTERM)
        wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 20, "the daemon to stop")
    assert "Traceback" not in log.read_text()
