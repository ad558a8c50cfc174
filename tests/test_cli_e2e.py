"""The ``jeisson`` command as an operator runs it, against a real aggregator.

One aggregator, two homes and their software actuators run as real
``twistd`` processes on the default secure path (mutual TLS between homes
and aggregator, authenticated boards, the store on), with the aggregator's
API on a free loopback port and each home's own.  Every command runs as
the installed ``jeisson`` console script in a process of its own, and the
tests read what it prints and its exit status: ``events add`` reaches the
homes' budgets (as the homes' own APIs tell them), ``why`` explains a load
switched off, ``export`` gives CSV rows, and each refusal says what was
wrong with the exit status the contract gives it.  A second aggregator
serves its API over HTTPS with operator certificates and bearer tokens.

Nothing sleeps: each test waits for the state it needs with a deadline.
"""

import csv
import io
import json
import os
import subprocess
import sys
import time

import pytest

from jeisson import pki
from jeisson.client.commands import Api
from jeisson.client.exchange import Request, api_target
from jeisson.demo import Fleet, free_ports
from tests.lab import start_lab
from tests.waiting import wait_for

LIMIT_W = 3000
HOMES = {
    "home-a": [("a1", 2000, 10, "no"), ("a2", 1500, 5, "no"), ("a3", 300, 50, "yes")],
    "home-b": [("b1", 2500, 8, "no"), ("b2", 1000, 3, "no")],
}


def jeisson(*argv, env=None, timeout=60):
    """The installed ``jeisson`` command, as a shell runs it."""
    beside = os.path.join(os.path.dirname(sys.executable), "jeisson")
    command = [beside] if os.path.exists(beside) else [sys.executable, "-m", "jeisson.cli"]
    environment = {k: v for k, v in os.environ.items() if not k.startswith("JEISSON_")} | (env or {})
    return subprocess.run(command + list(argv), capture_output=True, text=True, timeout=timeout, env=environment)


@pytest.fixture(scope="module")
def system(tmp_path_factory, credentials):
    lab = start_lab(str(tmp_path_factory.mktemp("cli-e2e")), HOMES, credentials)
    try:
        yield {"lab": lab, "work": lab.work, "ports": lab.ports, "fleet": lab.fleet, "api": lab.api,
               "env": {"JEISSON_API": lab.api}}
    finally:
        lab.stop()


def read_log(system, name):
    with open(os.path.join(system["work"], f"{name}.log"), encoding="utf-8", errors="replace") as f:
        return f.read()


def run_json(system, *argv):
    result = jeisson(*argv, "--json", env=system["env"])
    assert result.returncode == 0, (argv, result.stdout, result.stderr)
    return json.loads(result.stdout)


def home_status(system, home):
    """A home's own view of its budget, from its owner's API."""
    return Api(api_target(system["lab"].home_api(home)), timeout=5).json(Request("GET", "/status"))


@pytest.fixture(scope="module")
def connected(system):
    def ready():
        dead = system["fleet"].dead()
        assert not dead, f"stopped: {dead}: " + "".join(read_log(system, name)[-2000:] for name in dead)
        result = jeisson("homes", "--json", env=system["env"])
        if result.returncode != 0:
            return None
        homes = json.loads(result.stdout)["homes"]
        loads = [load for h in homes for load in h["loads"]]
        # Every load its board's to switch (none counted must-run, at its
        # rated power, for want of its board, but the critical one), and as
        # its owner set it: an event begun before would start above its limit.
        return len(homes) == 2 and all(h["connected"] and h["demand_w"] and h["loads"] for h in homes) \
            and all(load["mode"] != "must" or load["critical"] for load in loads) \
            and all(load["on"] == load["wanted"] for load in loads) and homes

    return wait_for(ready, 40, "both homes to connect and report through the API, their loads theirs to switch"
                               " and as their owners set")


@pytest.fixture(scope="module")
def shed_event(system, connected):
    """An event added with ``jeisson events add``, in force, and a load it
    switched off: ``(event id, home, load)``.  Cancelled with ``jeisson
    events cancel`` afterwards."""
    event_id = f"cli-peak-{int(time.time())}"
    added = jeisson("events", "add", event_id, "--limit-kw", str(LIMIT_W / 1000), "--start", "+0", "--end", "+300",
                    env=system["env"])
    assert added.returncode == 0, added.stderr
    assert added.stdout.startswith(f"added: {event_id} v1 (in-force): limit 3.00 kW"), added.stdout

    def shed():
        homes = run_json(system, "homes")["homes"]
        off = [(h["id"], load["id"]) for h in homes for load in h["loads"] if load["wanted"] and not load["on"]]
        status = run_json(system, "status")
        return status["event"] and status["event"]["id"] == event_id and status["last_round"] \
            and status["last_round"]["event"] == event_id and off and (*off[0], status["at"])

    home, load, at = wait_for(shed, 30, f"event {event_id} to switch a load off")
    try:
        yield event_id, home, load, at
    finally:
        cancelled = jeisson("events", "cancel", event_id, env=system["env"])
        assert cancelled.returncode == 0, cancelled.stderr
        assert cancelled.stdout.startswith(f"cancelled {event_id}\n")


def test_status_and_homes_print_tables(system, connected):
    status = jeisson("status", env=system["env"])
    assert status.returncode == 0, status.stderr
    lines = {line.split(None, 1)[0]: line for line in status.stdout.splitlines()}
    assert lines["homes"].split(None, 1)[1] == "2 connected of 2, 0 silent"
    homes = jeisson("homes", "--api", system["api"])
    assert homes.returncode == 0, homes.stderr
    rows = homes.stdout.splitlines()
    assert rows[0].split()[:4] == ["home", "link", "demand", "budget"]
    assert [row.split()[:2] for row in rows[1:3]] == [["home-a", "up"], ["home-b", "up"]]
    assert rows[3].startswith("total") and "2 up" in rows[3]
    before = jeisson("--api", system["api"], "--json", "homes", "--connected")
    assert before.returncode == 0 and [h["id"] for h in json.loads(before.stdout)["homes"]] == ["home-a", "home-b"]


def test_an_event_added_reaches_the_homes_budgets(system, shed_event):
    event_id, *_ = shed_event

    def budgets():
        views = {home: home_status(system, home) for home in HOMES}
        return all(v["budget_w"] is not None and v["event"] == event_id for v in views.values()) and views

    views = wait_for(budgets, 20, f"both homes to hold a budget of event {event_id}")
    assert sum(v["budget_w"] for v in views.values()) <= LIMIT_W, views
    listed = jeisson("events", "list", "--state", "in-force", env=system["env"])
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith(event_id))
    assert row.split()[1:5] == ["1", "in-force", "3.00", "kW"] and "ends in" in row, listed.stdout
    status = jeisson("status", env=system["env"]).stdout
    assert f"event        {event_id} v1 (in-force): limit 3.00 kW" in status, status


def test_an_event_modified_is_a_new_version_the_homes_follow(system, shed_event):
    event_id, *_ = shed_event
    modified = jeisson("events", "modify", event_id, "--limit-kw", "3.5", env=system["env"])
    assert modified.returncode == 0, modified.stderr
    assert modified.stdout.startswith(f"modified: {event_id} v2 (in-force): limit 3.50 kW"), modified.stdout
    events = run_json(system, "events", "list")["events"]
    assert [(e["version"], e["limit_w"]) for e in events if e["id"] == event_id] == [(2, 3500.0)]
    wait_for(lambda: (s := run_json(system, "status"))["last_round"]["limit_w"] == 3500.0 and s, 20,
             "a round under the new limit")


def test_why_explains_a_load_switched_off(system, shed_event):
    event_id, home, load, at = shed_event  # the load seen off at that moment

    def explained():
        result = jeisson("why", home, load, "--at", at, env=system["env"])
        assert result.returncode == 0, result.stderr
        return f"in event {event_id}" in result.stdout and result.stdout

    story = wait_for(explained, 15, f"the journal to explain {home}'s {load} in event {event_id}")
    lines = story.splitlines()
    assert lines[0].startswith(f"home {home}, load {load} at ") and lines[0].endswith(": off"), story
    assert f"({load} is not among them)" in lines[1]
    assert "answering the BUDGET of round" in story and f"event {event_id} version" in story
    why = run_json(system, "why", home, load, "--at", at)
    assert why["on"] is False and [link["kind"] for link in why["chain"]][:2] == ["commit", "budget"]


def test_export_gives_csv_rows(system, connected, tmp_path):
    path = tmp_path / "measurements.csv"

    def exported():
        result = jeisson("export", "--since", "-300", "-o", str(path), env=system["env"])
        assert result.returncode == 0, result.stderr
        rows = list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"))))
        return {row["home"] for row in rows} == set(HOMES) and (result.stdout, rows)

    said, rows = wait_for(exported, 20, "measurements of both homes in the export")
    assert said.startswith(f"wrote {len(rows)} samples from ") and said.endswith(f" to {path}\n")
    assert all(float(row["watts"]) >= 0 and row["at"].endswith("Z") for row in rows)
    one = jeisson("export", "--since", "-300", "--home", "home-b", env=system["env"])
    assert one.returncode == 0
    assert {row["home"] for row in csv.DictReader(io.StringIO(one.stdout))} == {"home-b"}


def test_refusals_say_what_was_wrong_with_the_contracts_exit_codes(system, shed_event):
    event_id, *_ = shed_event
    env = system["env"]
    again = jeisson("events", "add", event_id, "--limit-kw", "3", "--start", "+0", "--end", "+60", env=env)
    assert again.returncode == 1
    assert "409 conflict" in again.stderr and f"jeisson events modify {event_id} changes it" in again.stderr
    unknown = jeisson("events", "cancel", "no-such-event", env=env)
    assert unknown.returncode == 1 and "404 not-found" in unknown.stderr
    negative = jeisson("events", "add", "neg", "--limit-kw", "-1", "--start", "+0", "--end", "+60", env=env)
    assert negative.returncode == 1 and "limit_kw (--limit-kw): " in negative.stderr, negative.stderr
    nobody = jeisson("why", "home-z", "x", env=env)
    assert nobody.returncode == 1 and "home-z" in nobody.stderr
    usage = jeisson("events", "add", "x", "--limit-kw", "3", "--start", "soon", "--end", "+60", env=env)
    assert usage.returncode == 2 and "--start 'soon': not a time" in usage.stderr
    wrong_port = f"http://127.0.0.1:{system['ports']['aggregator']}"  # the homes' TLS listener
    unreachable = jeisson("status", "--api", wrong_port, "--timeout", "5")
    assert unreachable.returncode == 3 and f"cannot reach the API at {wrong_port}" in unreachable.stderr
    # The aggregator took none of it.
    assert [e["id"] for e in run_json(system, "events", "list")["events"] if e["id"] in ("neg", "x")] == []


# ---------------------------------------------------------------- HTTPS and tokens


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, credentials):
    """A second aggregator (no homes come) whose API wants credentials:
    HTTPS with an operator's certificate, or a bearer token."""
    work = str(tmp_path_factory.mktemp("cli-e2e-tls"))
    folder = os.path.join(work, "pki")
    pki.init(folder)
    cert, key = pki.issue_operator(folder, "alice")
    token, tokens = pki.issue_token(folder, "script")
    token_file = os.path.join(work, "token")
    with open(token_file, "w", encoding="utf-8") as f:
        f.write(token + "\n")
    listen, api = free_ports(2)
    with open(os.path.join(work, "aggregator.ini"), "w", encoding="utf-8") as f:
        f.write(f"""
[aggregator]
listen = tcp:{listen}:interface=127.0.0.1

[api]
listen = tcp:{api}:interface=127.0.0.1
tls = yes
tokens = {tokens}

[home:h]
secret = s

[tls]
ca = {folder}/{pki.CA_CERT}
cert = {folder}/aggregator.pem
key = {folder}/aggregator.key
crl = {folder}/crl.pem
""")
    fleet = Fleet(work)
    fleet.start("aggregator", "jeisson-aggregator", os.path.join(work, "aggregator.ini"))
    url = f"https://127.0.0.1:{api}"
    try:
        wait_for(lambda: "aggregator API on" in read_log({"work": work}, "aggregator") or fleet.dead(), 30,
                 "the API to listen")
        assert not fleet.dead(), read_log({"work": work}, "aggregator")
        yield {"url": url, "ca": f"{folder}/{pki.CA_CERT}", "cert": cert, "key": key, "token_file": token_file,
               "other_ca": credentials.ca}
    finally:
        fleet.stop()


def test_https_with_an_operators_certificate_or_a_token(guarded):
    g = guarded
    mine = jeisson("status", "--api", g["url"], "--ca", g["ca"], "--cert", g["cert"], "--key", g["key"])
    assert mine.returncode == 0, mine.stderr
    assert "homes        0 connected of 1, 0 silent" in mine.stdout
    tokened = jeisson("homes", "--api", g["url"], "--ca", g["ca"], "--token-file", g["token_file"])
    assert tokened.returncode == 0, tokened.stderr
    from_env = jeisson("events", "list", "--api", g["url"], "--ca", g["ca"],
                       env={"JEISSON_TOKEN": open(g["token_file"]).read().strip()})
    assert from_env.returncode == 0 and from_env.stdout == "no events\n", from_env.stderr


def test_https_refusals(guarded):
    g = guarded
    nothing = jeisson("status", "--api", g["url"], "--ca", g["ca"])
    assert nothing.returncode == 1
    assert nothing.stderr.startswith("jeisson status: GET /api/v1/status: 401 unauthorized: credentials needed: ")
    assert nothing.stderr.endswith("(give --token-file FILE or JEISSON_TOKEN, or --cert/--key/--ca with an https://"
                                   " --api)\n")
    bad_token = jeisson("status", "--api", g["url"], "--ca", g["ca"], env={"JEISSON_TOKEN": "not-a-token"})
    assert bad_token.returncode == 1 and "401 unauthorized" in bad_token.stderr
    untrusted = jeisson("status", "--api", g["url"], "--ca", g["other_ca"], "--token-file", g["token_file"])
    assert untrusted.returncode == 3
    assert f"TLS failure with {g['url']}: the API's certificate is not trusted" in untrusted.stderr
    plain = g["url"].replace("https://", "http://")
    in_clear = jeisson("status", "--api", plain, "--token-file", g["token_file"], "--timeout", "5")
    assert in_clear.returncode == 3 and f"cannot reach the API at {plain}" in in_clear.stderr
