"""The store under a daemonized ``twistd`` (no ``-n``).

``twistd`` builds its services, opening the store, and then forks into the
background.  Threads and SQLite connections do not survive a fork: the
child must open its own and start its writer at its first job, or nothing
it is told is ever committed (and no home is ever welcomed, since WELCOME
waits for the registration to be durable).
"""

import os
import re
import signal
import socket
import sqlite3
import ssl
import subprocess

from jeisson.demo import twistd_command
from jeisson.wire import aggregator_home as wire
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


def test_a_daemonized_aggregator_commits_to_its_store(tmp_path, credentials):
    (tmp_path / "aggregator.ini").write_text(CONFIG + credentials.aggregator_tls())
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
        try:
            wait_for(lambda: not os.path.exists(f"/proc/{pid}"), 20, "the daemon to stop")
        except AssertionError:
            os.kill(pid, signal.SIGKILL)
            raise
    assert "Traceback" not in log.read_text()


def test_what_the_links_write_as_twistd_stops_is_stored(tmp_path, credentials):
    """SIGTERM: twistd stops its services, then the reactor drops the links;
    the aggregator's journal still gets the home that left."""
    (tmp_path / "aggregator.ini").write_text(CONFIG + credentials.aggregator_tls())
    log = tmp_path / "aggregator.log"
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    with open(log, "wb") as out:
        process = subprocess.Popen(twistd_command() + ["-n", "--pidfile=", "jeisson-aggregator", "--config",
                                                       "aggregator.ini"], cwd=tmp_path, env=env, stdout=out,
                                   stderr=subprocess.STDOUT)
    try:
        port = int(wait_for(lambda: (m := re.search(r"LineLinkFactory \(TLS\) starting on (\d+)", log.read_text()))
                            and m.group(1), 20, "the aggregator listening"))
        tls = ssl.create_default_context(cafile=credentials.ca)
        tls.load_cert_chain(*credentials.home("h1"))
        home = tls.wrap_socket(socket.create_connection(("127.0.0.1", port), timeout=10),
                               server_hostname="localhost")
        home.sendall(wire.serialize(wire.Hello("h1", "s", (1,))) + b"\n")
        assert home.recv(4096).startswith(b"WELCOME")
        process.send_signal(signal.SIGTERM)
        # twistd stops cleanly, then ends by the signal that stopped it.
        assert process.wait(20) in (0, -signal.SIGTERM)
        assert "Server Shut Down." in log.read_text()
        home.close()
    finally:
        if process.poll() is None:
            process.kill()
    rows = journal_subjects(str(tmp_path / "aggregator.sqlite"))
    assert rows.count(("registered", "h1")) == 2, (rows, log.read_text())  # joined, then left
    assert "StoreError" not in log.read_text()
