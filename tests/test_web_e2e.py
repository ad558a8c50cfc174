"""The HTTP API against real processes, on the default secure path.

A real ``twistd jeisson-aggregator`` (mutual TLS with its homes, its store
on) serving its API on a loopback port with bearer tokens (``jeisson pki
token``), a real ``twistd jeisson-home`` serving its owner's API, and a real
board (``twistd jeisson-actuator``, authenticated).  Driven over HTTP as a
script or the ``jeisson`` command would: an event added through the API
reaches the home, which sheds its ev; the audit chain says why; the owner
changes a load through the home's API; bad input is answered with the
field named; a foreign Host is refused.
"""

import json
import os
import time
import urllib.error
import urllib.request

import pytest

from jeisson import pki
from jeisson.demo import Fleet, free_ports
from tests.waiting import wait_for

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOADS = [("heater", 2000, 30, "no"), ("ev", 3600, 10, "no"), ("fridge", 150, 90, "yes")]  # relays 1, 2, 3
LIMIT_W = 2500


def call(method: str, url: str, body=None, token: str | None = None, headers: dict | None = None):
    """``(status, parsed body or text, headers)`` of one request."""
    data = None if body is None else json.dumps(body).encode()
    sent = dict(headers or {})
    if body is not None:
        sent.setdefault("Content-Type", "application/json")
    if token is not None:
        sent["Authorization"] = f"Bearer {token}"
    req = urllib.request.Request(url, data=data, method=method, headers=sent)
    try:
        with urllib.request.urlopen(req, timeout=10) as response:
            status, raw, got = response.status, response.read(), response.headers
    except urllib.error.HTTPError as e:
        status, raw, got = e.code, e.read(), e.headers
    kind = got.get("Content-Type", "")
    return status, (json.loads(raw) if kind.startswith("application/json") else raw.decode()), got


def answers(url: str, token: str | None = None):
    try:
        status, body, _ = call("GET", url, token=token)
    except (urllib.error.URLError, OSError):
        return None
    return body if status == 200 else None


@pytest.fixture
def lab(tmp_path, monkeypatch, credentials):
    monkeypatch.setenv("PYTHONPATH", REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    aggregator_port, board_port, api_port, home_api_port = free_ports(4)
    token, tokens = pki.issue_token(str(tmp_path), "e2e")
    (tmp_path / "aggregator.ini").write_text(f"""
[aggregator]
listen = tcp:{aggregator_port}:interface=127.0.0.1
heartbeat_s = 1
round_period_s = 2
round_timeout_s = 2

[home:home-e]
secret = e-secret

[api]
listen = tcp:{api_port}:interface=127.0.0.1
tokens = {tokens}
""" + credentials.aggregator_tls())
    home = f"""
[home]
reconnect_base_s = 1
reconnect_cap_s = 2
id = home-e
secret = e-secret
aggregator = tcp:127.0.0.1:{aggregator_port}
actuators = tcp:{board_port}:interface=127.0.0.1
heartbeat_s = 1
command_timeout_s = 2
measure_period_s = 1

[api]
listen = tcp:{home_api_port}:interface=127.0.0.1

[actuator:board-e]
relays = {len(LOADS)}
key = {credentials.board("board-e")}
""" + credentials.home_tls("home-e")
    board = f"""
[actuator]
id = board-e
home = tcp:127.0.0.1:{board_port}
failsafe_after_s = 60
measure_period_s = 0.5
cold_load_min_s = 0
cold_load_max_s = 0
key = {credentials.board("board-e")}
"""
    for relay, (load, watts, priority, critical) in enumerate(LOADS, 1):
        home += (f"\n[load:{load}]\nactuator = board-e\nrelay = {relay}\nrated_w = {watts}\npriority = {priority}\n"
                 f"critical = {critical}\nmin_on_s = 1\nmin_off_s = 1\n")
        board += f"\n[relay:{relay}]\nload_w = {watts}\nsafe_state = off\nmin_interval_s = 0.2\n"
    (tmp_path / "home-e.ini").write_text(home)
    (tmp_path / "board-e.ini").write_text(board)
    fleet = Fleet(str(tmp_path))
    try:
        fleet.start("aggregator", "jeisson-aggregator", str(tmp_path / "aggregator.ini"))
        fleet.start("home", "jeisson-home", str(tmp_path / "home-e.ini"))
        fleet.start("board-e", "jeisson-actuator", str(tmp_path / "board-e.ini"))
        yield {"api": f"http://127.0.0.1:{api_port}/api/v1", "home": f"http://127.0.0.1:{home_api_port}/api/v1",
               "token": token, "dir": tmp_path, "fleet": fleet}
    finally:
        fleet.stop()


def log_of(lab, name) -> str:
    try:
        return (lab["dir"] / f"{name}.log").read_text(errors="replace")
    except OSError:
        return ""


def test_the_api_steers_a_real_aggregator_and_home(lab):
    api, token, home_api = lab["api"], lab["token"], lab["home"]
    on = {"heater", "ev", "fridge"}

    def home_ready():
        home = answers(f"{api}/homes/home-e", token)
        loads = answers(f"{home_api}/loads")  # as the home's relays are, not only as its bid says
        if not (home and home["connected"] and loads):
            return None
        both = {x["id"] for x in home["loads"] if x["on"]} == on == {x["id"] for x in loads["loads"] if x["on"]}
        return home if both else None

    try:
        home = wait_for(home_ready, 60, "home-e connected, its three loads on, seen through the aggregator's API")
    except AssertionError as e:
        tails = {name: log_of(lab, name)[-1500:] for name in ("aggregator", "home", "board-e")}
        raise AssertionError(f"{e}; dead: {lab['fleet'].dead()}; logs: {tails}") from None
    assert home["link"]["since"] is not None and home["demand_w"] == 5750
    assert "aggregator API on http://127.0.0.1:" in log_of(lab, "aggregator")

    # Credentials: none, or a wrong token, are refused; a foreign Host too.
    status, body, _ = call("GET", f"{api}/status")
    assert status == 401 and body["error"]["code"] == "unauthorized"
    assert call("GET", f"{api}/status", token="jst_nope")[0] == 401
    status, body, _ = call("GET", f"{api}/status", token=token, headers={"Host": "rebound.example"})
    assert status == 403 and "DNS rebinding" in body["error"]["message"]

    # Bad input: the field named.
    status, body, _ = call("POST", f"{api}/events", {"id": "peak", "limit_kw": "lots", "start": "+2", "end": "+60"},
                           token)
    assert status == 422 and body["error"]["field"] == "limit_kw"

    # An event added through the API: durable, then in force, and the home sheds its ev.
    status, body, _ = call("POST", f"{api}/events", {"id": "peak", "limit_w": LIMIT_W, "start": "+2", "end": "+120"},
                           token)
    assert status == 201 and body["verdict"] == "added" and body["event"]["state"] == "scheduled", body
    assert body["event"]["source"] == "the API (token e2e)"
    wait_for(lambda: (s := answers(f"{api}/status", token)) and s["event"] and s["event"]["id"] == "peak"
             and s["last_round"] is not None, 30, "the event in force and a round run")

    def ev_off():
        loads = answers(f"{home_api}/loads")
        return loads and {x["id"]: x["on"] for x in loads["loads"]}["ev"] is False

    wait_for(ev_off, 30, "the home's API to show the ev shed")
    home_why = wait_for(lambda: (w := answers(f"{home_api}/why?load=ev")) and w["on"] is False and w, 20,
                        "the home's own story of the ev")
    assert [link["kind"] for link in home_why["chain"]][:2] == ["state", "switch"], home_why
    # Switched off with a budget in force (its trigger may be the budget or a board's HELLO meanwhile).
    switched = home_why["chain"][1]["detail"]
    assert switched["on"] is False and switched["budget"] is not None, home_why
    status_now = answers(f"{api}/status", token)
    assert status_now["limit_w"] == LIMIT_W and status_now["committed_w"] <= LIMIT_W
    rounds = answers(f"{api}/rounds?limit=5", token)["rounds"]
    assert rounds and rounds[0]["event"] == "peak"

    why = wait_for(lambda: (w := answers(f"{api}/why?home=home-e&load=ev", token)) and w["on"] is False
                   and len(w["chain"]) == 4 and w, 20, "the chain for the ev")
    assert [link["kind"] for link in why["chain"]] == ["commit", "budget", "round", "event"]
    assert "from the API (token e2e)" in why["chain"][3]["summary"]

    status, csv_text, headers = call("GET", f"{api}/measurements?format=csv&home=home-e&since=-600", token=token)
    assert status == 200 and headers["Content-Type"].startswith("text/csv")
    assert csv_text.splitlines()[0] == "home,at,watts,span_s" and len(csv_text.splitlines()) > 1

    # The owner, at the home: the heater set off, durable before the reply.
    status, body, _ = call("PUT", f"{home_api}/loads/heater", {"desired": False})
    assert status == 200 and body["desired"] is False, body
    status, body, _ = call("PUT", f"{home_api}/loads/heater", {"desired": "no"})
    assert status == 422 and body["error"]["field"] == "desired"
    home_status = answers(f"{home_api}/status")
    assert home_status["event"] == "peak" and 0 < home_status["budget_w"] <= LIMIT_W, home_status

    # Cancelled through the API: the home gets its ev back.
    status, body, _ = call("DELETE", f"{api}/events/peak", token=token)
    assert status == 200 and body["verdict"] == "cancelled"
    wait_for(lambda: not ev_off(), 30, "the ev back on once the event is cancelled")
    assert answers(f"{api}/events?state=cancelled", token)["events"][0]["id"] == "peak"
    assert answers(f"{api}/openapi.json", token)["openapi"].startswith("3.1")
    for name in ("aggregator", "home", "board-e"):
        assert "Traceback" not in log_of(lab, name), name
    assert not lab["fleet"].dead()


def test_an_api_port_written_in_the_config_that_is_taken_stops_the_start(tmp_path, monkeypatch, credentials):
    import socket
    import subprocess

    from jeisson.demo import twistd_command

    monkeypatch.setenv("PYTHONPATH", REPO + os.pathsep + os.environ.get("PYTHONPATH", ""))
    aggregator_port, api_port = free_ports(2)
    taken = socket.socket()
    taken.bind(("127.0.0.1", api_port))
    taken.listen(1)
    try:
        (tmp_path / "a.ini").write_text(f"[aggregator]\nlisten = tcp:{aggregator_port}:interface=127.0.0.1\n"
                                        f"[home:h]\nsecret = s\n[api]\nlisten = tcp:{api_port}:interface=127.0.0.1\n"
                                        + credentials.aggregator_tls())
        started = time.monotonic()
        done = subprocess.run(twistd_command() + ["-n", "--pidfile=", "jeisson-aggregator", "--config",
                                                   str(tmp_path / "a.ini")], cwd=tmp_path, capture_output=True,
                              timeout=60)
    finally:
        taken.close()
    assert done.returncode != 0 and time.monotonic() - started < 60
    assert f"{api_port}" in (done.stdout + done.stderr).decode(errors="replace")
