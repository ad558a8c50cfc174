"""The demo's console, honest: OVER LIMIT with the measured figure whenever
measured or committed is above the limit, a countdown to the event's start
and end, and the URLs, the manhole's ssh command and the commands to try
on every redraw and in the file it names.  Rendering is pure and tested
with figures above and below the limit; ``prepare`` is run for real on the
example configs (no process started)."""

import os
import stat

from jeisson import demo
from tests.test_cli_client import event, home, status

ACCESS = demo.Access(workdir="/tmp/jeisson-demo-x", api="http://127.0.0.1:18480",
                     homes={"home-1": "http://127.0.0.1:18481", "home-2": "http://127.0.0.1:18482"},
                     manhole="ssh -i /tmp/jeisson-demo-x/pki/manhole/operator_ed25519 -p 17790 operator@127.0.0.1",
                     jeisson="jeisson", event="demo-peak-120000")


def view(status_body, homes=None, **kwargs):
    return demo.console(status_body, homes if homes is not None else [home("home-1")], ACCESS, 35.0, 100.0, **kwargs)


def verdict_of(text):
    return next(line for line in text.splitlines() if line.startswith("verdict")).split(None, 1)[1]


def test_measured_above_the_limit_is_over_limit_with_the_figure():
    # The case: 12.49 kW measured against a 12.00 kW limit was shown "within limit".
    text = view(status(measured_w=12490.0, committed_w=11800.0, within_limit=True, over_w=0.0))
    assert verdict_of(text) == "OVER LIMIT: measured 12.49 kW, 0.49 kW above the limit of 12.00 kW"
    assert "within limit" not in text.split("last round")[0]


def test_committed_above_the_limit_is_over_limit_with_the_figure():
    text = view(status(measured_w=11000.0, committed_w=12300.0, within_limit=False, over_w=300.0))
    assert verdict_of(text) == "OVER LIMIT: committed 12.30 kW, 0.30 kW above the limit of 12.00 kW"


def test_below_the_limit_is_within_it():
    text = view(status(measured_w=11950.0, committed_w=11800.0))
    assert verdict_of(text) == "within limit"
    assert "OVER LIMIT" not in text


def test_a_countdown_to_the_events_start_and_end():
    before = view(status(limit_w=None, event=None, measured_w=16000.0, committed_w=None, last_round=None,
                         next_event=event(id="demo-peak-120000", state="scheduled", starts_in_s=25.0,
                                          ends_in_s=85.0)))
    assert "demo-peak-120000 v1 (scheduled): limit 12.00 kW" in before
    assert "starts in 25 s, ends in 1 min 25 s" in before
    assert verdict_of(before) == "no limit in force"  # 16 kW is fine with no event
    during = view(status(event=event(id="demo-peak-120000", starts_in_s=-35.0, ends_in_s=25.0)))
    assert "demo-peak-120000 v1 (in-force): limit 12.00 kW" in during and "ends in 25 s" in during


def test_the_urls_and_credentials_stay_on_every_redraw():
    for text in (view(status()), view(None, problem="cannot reach the API at http://127.0.0.1:18480: connection"
                                                   " refused")):
        lines = text.splitlines()
        assert "dashboard   http://127.0.0.1:18480/" in lines
        assert f"manhole     {ACCESS.manhole}" in lines
        assert any(line.startswith("try         export JEISSON_API=http://127.0.0.1:18480") for line in lines)
        assert f"            (these, and more, in {ACCESS.file})" in lines
    waiting = view(None, problem="cannot reach the API at http://127.0.0.1:18480: connection refused")
    assert "waiting for the aggregator's API: cannot reach the API at http://127.0.0.1:18480: connection refused" \
        in waiting.splitlines()


def test_without_the_api_the_status_files_view_is_shown_honestly():
    fallback = {"event": {"id": "E", "limit_w": 10000.0, "end": "2026-11-23T20:34:07.703Z"},
                "last_round": {"number": 7, "event": "E", "limit_w": 10000.0, "committed_w": 9550.0,
                               "unknown_w": 0.0, "measured_w": 12050.0, "must_w": 0.0, "away_w": 0.0,
                               "within_limit": True, "feasible": True, "finished": "2026-11-23T20:33:25.396Z",
                               "homes": {}},
                "homes": {"h1": {"connected": True, "demand_w": 12000.0, "level_w": 9550.0, "measured_w": 9600.0,
                                 "loads": []}}}
    text = view(None, problem="no answer", fallback=fallback)
    assert "the status file says:" in text and "OVER LIMIT (measured 2.05 kW above)" in text
    assert text.count("jeisson demo   t =") == 1


def test_the_homes_are_shown_as_jeisson_homes_shows_them():
    text = view(status(), [home("home-1"), home("home-2", connected=False)])
    assert any(line.split()[:2] == ["home-1", "up"] for line in text.splitlines())
    assert any(line.split()[:2] == ["home-2", "DOWN"] for line in text.splitlines())


def test_the_access_file_names_everything_and_only_its_owner_reads_it(tmp_path):
    access = demo.Access(workdir=str(tmp_path), api="http://127.0.0.1:18480", homes={"home-1": "http://h1"},
                         manhole="ssh -p 1 operator@127.0.0.1", jeisson="/venv/bin/jeisson", event="demo-peak-1")
    access.write()
    text = (tmp_path / "access.txt").read_text()
    assert stat.S_IMODE(os.stat(tmp_path / "access.txt").st_mode) == 0o600
    for expected in ("dashboard (the aggregator):  http://127.0.0.1:18480/", "  home-1  http://h1/",
                     "  ssh -p 1 operator@127.0.0.1", "  export JEISSON_API=http://127.0.0.1:18480",
                     "  /venv/bin/jeisson status", "  /venv/bin/jeisson why home-1 ev-charger",
                     "  /venv/bin/jeisson events modify demo-peak-1 --limit-kw 10",
                     f"  /venv/bin/jeisson export --since -600 -o {tmp_path}/measurements.csv",
                     "(loopback: no token needed)"):
        assert expected in text, expected
    with_token = demo.Access(workdir=str(tmp_path), api="http://a", homes={}, manhole="ssh", jeisson="jeisson",
                             event="e", token="tok-123")
    assert "export JEISSON_TOKEN=tok-123" in with_token.text() and "token tok-123" in with_token.header()[3]


def test_prepare_gives_the_aggregator_and_every_home_its_own_api_port(tmp_path):
    etc = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "etc", "jeisson")
    plan = demo.prepare(etc, str(tmp_path), 30.0, 60.0, None)
    aggregator = demo.read_ini(str(tmp_path / "aggregator.ini"))
    assert aggregator["api"]["listen"] == f"tcp:{plan['api']}:interface=127.0.0.1"
    ports = {plan["api"]}
    for home_id, port in plan["home_apis"].items():
        ini = demo.read_ini(str(tmp_path / f"{home_id}.ini"))
        assert ini["api"]["listen"] == f"tcp:{port}:interface=127.0.0.1"
        ports.add(port)
    assert len(ports) == 1 + len(plan["home_apis"]) == 4
    # None of them is a port the processes already use.
    used = {demo.port_of(aggregator["aggregator"]["listen"]), plan["manhole"]}
    assert not ports & used
