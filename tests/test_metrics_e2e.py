"""GET /metrics from real processes, on the default secure path.

A real ``twistd jeisson-aggregator`` (mutual TLS with its homes, its store
on, its API on loopback), a real ``twistd jeisson-home``
and a real authenticated board (``twistd jeisson-actuator``); an event in
the config binds a few seconds after the start.  Each process's
``/metrics`` is scraped over HTTP as Prometheus would and read back with
prometheus_client's parser: the figures follow what the processes did (the
home registered, rounds run within the limit, the home's ev shed by its
budget, commits timed), and strangers at the aggregator's listener for
homes (bytes that are not TLS, a certificate from another CA) are counted
by reason.
"""

import os
import socket
import ssl
import urllib.error
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from jeisson import pki
from tests.lab import start_lab
from tests.waiting import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOADS = [("heater", 2000, 30, "no"), ("ev", 3600, 10, "no"), ("fridge", 150, 90, "yes")]  # relays 1, 2, 3
LIMIT_W = 2500


def scrape(url: str) -> dict | None:
    """``{(name, labels): value}`` of one scrape of ``url/metrics``, or None
    if it cannot be had."""
    try:
        with urllib.request.urlopen(url + "/metrics", timeout=10) as response:
            if response.status != 200:
                return None
            assert response.headers["Content-Type"].startswith("text/plain")
            text = response.read().decode("utf-8")
    except (urllib.error.URLError, OSError):
        return None
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def value(figures: dict | None, name: str, **labels: str) -> float | None:
    if figures is None:
        return None
    return figures.get((name, tuple(sorted(labels.items()))))


@pytest.fixture
def lab(tmp_path, monkeypatch, credentials):
    monkeypatch.setenv("PYTHONPATH", REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    work = tmp_path / "lab"
    work.mkdir()
    started = start_lab(str(work), {"home-m": LOADS}, credentials,
                        f"\n[event:peak]\nlimit_kw = {LIMIT_W / 1000}\nstart = +8\nend = +600\n")
    try:
        yield started
    finally:
        started.stop()


def junk_at(port: int) -> None:
    """Bytes that are not TLS at the listener for homes, then gone."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"HELLO home-m m-secret 1\n")
        try:
            s.recv(100)  # the server's TLS alert, or its close
        except OSError:
            pass


def foreign_certificate_at(port: int, directory: str) -> None:
    """A home's certificate from another CA: the server refuses it."""
    pki.init(directory)
    cert, key = pki.home_paths(directory, "home-m")
    pki.issue_home(directory, "home-m")
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    context.load_cert_chain(cert, key)
    with socket.create_connection(("127.0.0.1", port), timeout=5) as raw:
        try:
            with context.wrap_socket(raw) as s:
                s.sendall(b"HELLO home-m m-secret 1\n")
                s.recv(100)
        except (ssl.SSLError, OSError):
            pass  # refused: what this is for


def test_metrics_from_a_real_aggregator_home_and_board(lab, tmp_path):
    aggregator, home = lab.api, lab.home_api("home-m")

    def round_within_limit():
        figures = scrape(aggregator)
        return figures if (value(figures, "jeisson_homes_connected") == 1
                           and (value(figures, "jeisson_rounds_total", outcome="within_limit") or 0) >= 1) else None

    figures = wait_for(round_within_limit, 60, "home-m connected and a round within the limit at the aggregator")
    assert value(figures, "jeisson_homes_configured") == 1
    assert value(figures, "jeisson_limit_watts") == LIMIT_W
    assert value(figures, "jeisson_events", state="in-force") == 1
    assert value(figures, "jeisson_committed_watts") <= LIMIT_W
    assert value(figures, "jeisson_last_round_within_limit") == 1
    assert value(figures, "jeisson_round_duration_seconds_count") >= 1
    assert value(figures, "jeisson_budgets_sent_total") >= 1
    assert value(figures, "jeisson_home_joins_total") >= 1
    assert value(figures, "jeisson_store_commit_seconds_count") >= 1
    assert value(figures, "jeisson_store_rows_written_total") > 0
    assert value(figures, "process_resident_memory_bytes") > 0
    assert value(figures, "jeisson_info", role="aggregator", version=__import__("jeisson").__version__) == 1

    def ev_shed():
        figures = scrape(home)
        shed = value(figures, "jeisson_relay_switches_total", load="ev", cause="budget", to="off")
        return figures if shed and value(figures, "jeisson_load_on", load="ev") == 0 else None

    at_home = wait_for(ev_shed, 30, "the home's metrics to show its ev shed by the budget")
    assert value(at_home, "jeisson_budget_watts") <= LIMIT_W
    assert value(at_home, "jeisson_uplink_up") == 1
    assert value(at_home, "jeisson_boards_connected") == value(at_home, "jeisson_boards_configured") == 1
    assert value(at_home, "jeisson_drawn_watts") <= LIMIT_W
    assert value(at_home, "jeisson_store_commit_seconds_count") >= 1
    assert value(at_home, "jeisson_info", role="home", id="home-m", version=__import__("jeisson").__version__) == 1
    wait_for(lambda: (value(scrape(home), "jeisson_measured_watts") or 0) > 0, 20, "the board's readings")

    # Strangers at the listener for homes, counted by reason.
    junk_at(lab.ports["aggregator"])
    foreign_certificate_at(lab.ports["aggregator"], str(tmp_path / "another-ca"))

    def strangers_counted():
        figures = scrape(aggregator)
        junk = value(figures, "jeisson_refused_connections_total", listener="homes", reason="tls handshake failed")
        foreign = value(figures, "jeisson_auth_failures_total", listener="homes",
                        reason="certificate not signed by this aggregator's CA")
        return figures if junk and foreign else None

    wait_for(strangers_counted, 20, "the junk and the foreign certificate counted at the aggregator")
    # The home's link went on meanwhile.
    assert value(scrape(aggregator), "jeisson_homes_connected") == 1
    for name in ("aggregator", "home-m", "home-m-board"):
        assert "Traceback" not in lab.log(name), name
    assert not lab.fleet.dead()
