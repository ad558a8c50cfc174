"""The ``jeisson`` command's client side: what it asks, how it reads the
answers, what it prints and the exit status scripts rely on.

The requests and renderings are pure and tested as such.  The failures
that only a socket shows (connection refused, a port that is not HTTP, a
certificate not trusted) are tested against real sockets on loopback; the
API's answers (its error body, a 5xx) against a small HTTP peer that
answers as the contract says.  The real API is tested in
tests/test_cli_e2e.py.
"""

import argparse
import http.server
import json
import re
import socket
import ssl
import threading

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from jeisson import cli
from jeisson.client import commands, export, render
from jeisson.client.exchange import (
    EXIT_REFUSED,
    EXIT_SERVER,
    EXIT_UNREACHABLE,
    EXIT_USAGE,
    Refused,
    Reply,
    Request,
    ServerFailed,
    UsageProblem,
    api_target,
    json_of,
    judge,
    read_token,
    tls_context,
)
from jeisson.demo import free_ports
from jeisson.moments import parse_moment
from jeisson.wire.utc import format_utc, parse_utc

NOW = 1_796_320_800.0  # 2026-12-03T18:00:00Z


def event(**fields):
    base = {"id": "peak-1", "version": 1, "limit_w": 12000.0, "start": "2026-12-03T18:00:00.000Z",
            "end": "2026-12-03T19:00:00.000Z", "start_window_s": 0, "end_window_s": 0, "source": "api",
            "state": "in-force", "starts_in_s": -300.0, "ends_in_s": 3300.0}
    return base | fields


def status(**fields):
    base = {"at": "2026-12-03T18:05:00.000Z", "limit_w": 12000.0, "committed_w": 11800.0, "measured_w": 11950.0,
            "within_limit": True, "over_w": 0.0, "event": event(), "next_event": None,
            "negotiation": {"mode": "periodic", "rounds": 12, "converged_rounds": 8},
            "homes": {"total": 3, "connected": 3, "silent": 0}, "rounds_run": 42,
            "last_round": {"number": 42, "event": "peak-1", "limit_w": 12000.0, "committed_w": 11800.0,
                           "unknown_w": 0.0, "measured_w": 11950.0, "must_w": 150.0, "away_w": 0.0,
                           "within_limit": True, "feasible": True, "started": "2026-12-03T18:04:57.000Z",
                           "finished": "2026-12-03T18:04:58.000Z"}}
    return base | fields


def home(home_id, **fields):
    base = {"id": home_id, "connected": True, "peer": "127.0.0.1:5000", "feeder": None, "demand_w": 5950.0,
            "budget_w": 4000.0, "budget_end": "2026-12-03T19:00:00.000Z", "committed_w": 3950.0,
            "measured_w": 3990.5, "counted_w": 3990.5, "opted_out": False, "silent": False,
            "link": {"connected": True, "since": "2026-12-03T17:00:00.000Z", "last_heard": "2026-12-03T18:04:59Z"},
            "loads": [{"id": "heater", "rated_w": 2000, "priority": 30, "mode": "flex", "on": True,
                       "critical": False, "wanted": True},
                      {"id": "ev-charger", "rated_w": 3600, "priority": 10, "mode": "flex", "on": False,
                       "critical": False, "wanted": True}]}
    return base | fields


# Rendering, pure.


def test_figures_read_at_a_glance():
    assert render.kw(12490) == "12.49 kW"
    assert render.kw(None) == "-"
    assert render.moment("2026-12-03T18:00:00.250Z") == "2026-12-03T18:00:00Z"
    assert render.clock("2026-12-03T18:00:00.000Z") == "18:00:00Z"
    assert [render.span(s) for s in (4.4, 250, 7500, 3 * 86400 + 4 * 3600 + 5)] == \
        ["4 s", "4 min 10 s", "2 h 05 min", "3 d 4 h"]


def test_a_table_aligns_its_columns_and_right_aligns_numbers():
    text = render.table(("home", "power"), [("a", "1.00 kW"), ("home-long", "12.00 kW")], right=(1,))
    assert text.splitlines() == ["home          power", "a           1.00 kW", "home-long  12.00 kW"]


def test_the_verdict_says_over_limit_with_the_measured_figure_when_measured_is_above():
    # The case: the view said "within limit" at 12.49 kW measured against 12.00 kW.
    verdict = render.limit_verdict(12000, 11800, 12490, within_limit=True, over_w=0)
    assert verdict == "OVER LIMIT: measured 12.49 kW, 0.49 kW above the limit of 12.00 kW"


def test_the_verdict_names_committed_above_the_limit_too():
    verdict = render.limit_verdict(12000, 12300, 12490)
    assert verdict.startswith("OVER LIMIT: measured 12.49 kW, 0.49 kW above; committed 12.30 kW, 0.30 kW above")


def test_the_verdict_believes_the_aggregator_when_it_says_over():
    assert render.limit_verdict(12000, 11000, 11000, within_limit=True, over_w=250).startswith("OVER LIMIT by 0.25 kW")
    assert render.limit_verdict(12000, 11000, 11000, within_limit=False, over_w=0).startswith("OVER LIMIT")


def test_the_verdict_is_within_only_below_and_at_the_limit():
    assert render.limit_verdict(12000, 12000, 11999.9995, within_limit=True, over_w=0) == "within limit"
    assert render.limit_verdict(None, 5000, 5000) == "no limit in force"


def test_status_shows_the_verdict_and_the_events_countdowns():
    text = render.status_text(status(measured_w=12490.0, next_event=event(
        id="night", state="scheduled", starts_in_s=7500.0, ends_in_s=11100.0, limit_w=4000.0)))
    lines = dict(line.split(None, 1) if not line.startswith(("next event", "last round", "rounds run"))
                 else (line[:10], line[10:].strip()) for line in text.splitlines())
    assert lines["verdict"] == "OVER LIMIT: measured 12.49 kW, 0.49 kW above the limit of 12.00 kW"
    assert lines["measured"] == "12.49 kW"
    assert lines["event"].endswith("ends in 55 min 00 s")
    assert lines["next event"].startswith("night v1 (scheduled): limit 4.00 kW")
    assert lines["next event"].endswith("starts in 2 h 05 min, ends in 3 h 05 min")
    assert lines["homes"] == "3 connected of 3, 0 silent"
    assert "42 at 18:04:58Z (event peak-1)" in lines["last round"]
    assert lines["last round"].endswith("within limit")


def test_status_without_an_event():
    text = render.status_text(status(limit_w=None, event=None, within_limit=True, last_round=None, rounds_run=0))
    assert "none in force" in text and "no limit in force" in text and "none scheduled" in text


def test_homes_are_one_aligned_row_each_with_totals():
    text = render.homes_table([home("home-1"), home("home-22", connected=False, silent=True, budget_w=None,
                                                     measured_w=None, opted_out=True)])
    lines = text.splitlines()
    assert lines[0].split() == ["home", "link", "demand", "budget", "until", "committed", "measured", "counted",
                                "loads", "on", "|", "off"]
    assert lines[1].split()[:2] == ["home-1", "up"] and lines[1].endswith("heater | ev-charger")
    assert lines[2].split()[:3] == ["home-22", "DOWN", "opted-out"]
    assert lines[3].startswith("total") and "11.90 kW" in lines[3]  # both demands
    # Right-aligned numbers: every row's "measured" cell ends where its header does.
    end = lines[0].index("measured") + len("measured")
    assert [line[end - 2:end] for line in lines[1:]] == ["kW", " -", "kW"]


def test_events_show_each_state_with_its_countdown():
    text = render.events_table([
        event(id="soon", state="scheduled", starts_in_s=90.0, ends_in_s=3690.0),
        event(id="now"),
        event(id="old", state="ended", starts_in_s=-7200.0, ends_in_s=-3600.0),
        event(id="gone", state="cancelled", version=2),
    ])
    rows = {line.split()[0]: line for line in text.splitlines()[1:]}
    assert rows["soon"].endswith("starts in 1 min 30 s, ends in 1 h 01 min  api")
    assert [cell.strip() for cell in rows["now"].split("  ") if cell][-2:] == ["ends in 55 min 00 s", "api"]
    assert [cell.strip() for cell in rows["old"].split("  ") if cell][-2:] == ["ended", "api"]
    assert rows["gone"].split()[1:3] == ["2", "cancelled"]
    assert render.events_table([]) == "no events"


def test_why_tells_the_aggregators_story():
    story = ("home home-3, load heater at 2026-12-03T18:05:00Z: off\n"
             "- committed at 2026-12-03T18:04:59Z in round 42: 2000 W, on: oven (heater is not among them)")
    assert render.why_text({"home": "home-3", "load": "heater", "on": False, "text": story, "chain": []}) == story


def test_why_without_a_story_shows_the_chain():
    text = render.why_text({"home": "home-3", "load": "heater", "at": "2026-12-03T18:05:00.000Z", "on": False,
                            "chain": [{"kind": "budget", "at": "2026-12-03T18:04:58.000Z", "round": 42,
                                       "subject": "home-3", "summary": "budget 2.00 kW", "detail": {}}]})
    lines = text.splitlines()
    assert lines[0] == "home home-3, load heater at 2026-12-03T18:05:00Z: off"
    assert lines[2].split() == ["2026-12-03T18:04:58Z", "budget", "42", "home-3", "budget", "2.00", "kW"]
    assert "nothing in the journal" in render.why_text({"home": "h", "load": "l", "on": None, "chain": []})


def test_an_events_verdict_shows_the_event_as_it_now_stands():
    text = render.verdict_text({"verdict": "added", "detail": "in force from 18:00:00Z", "event": event()}, "peak-1")
    assert text.splitlines() == ["added: peak-1 v1 (in-force): limit 12.00 kW, 2026-12-03T18:00:00Z to "
                                 "2026-12-03T19:00:00Z, ends in 55 min 00 s", "in force from 18:00:00Z"]
    assert render.verdict_text({"verdict": "cancelled", "detail": "version 3 cancels it"}, "peak-1") == \
        "cancelled peak-1\nversion 3 cancels it"


# Requests, pure.


def parsed(*argv):
    return cli.parser().parse_args(list(argv))


def test_requests_say_what_the_contract_asks():
    assert commands.status_request().target() == "/api/v1/status"
    assert commands.homes_request(True).target() == "/api/v1/homes?connected=true"
    assert commands.events_request("in-force").target("/proxy") == "/proxy/api/v1/events?state=in-force"
    add = commands.add_request(parsed("events", "add", "peak-1", "--limit-kw", "4.5", "--start", "+60",
                                      "--end", "2026-12-03T19:00:00Z", "--start-window-s", "30"), NOW)
    assert (add.method, add.path) == ("POST", "/events")
    assert add.body == {"id": "peak-1", "limit_kw": 4.5, "start": "+60", "end": "2026-12-03T19:00:00Z",
                        "start_window_s": 30.0}
    assert add.headers(None)["Content-Type"] == "application/json"
    modify = commands.modify_request(parsed("events", "modify", "a/b", "--limit-kw", "3"), NOW)
    assert (modify.method, modify.target(), modify.body) == ("PUT", "/api/v1/events/a%2Fb", {"limit_kw": 3.0})
    assert commands.cancel_request("peak-1").method == "DELETE"
    why = commands.why_request("home-3", "heater", "+60", NOW)
    assert why.target() == "/api/v1/why?home=home-3&load=heater&at=%2B60"  # "+" kept a plus
    export = commands.export_request("-3600", None, ["home-1", "home-2"], True, NOW)
    assert export.target() == "/api/v1/measurements?since=-3600&home=home-1&home=home-2&format=csv"
    assert export.accept == "text/csv"


def test_a_token_goes_as_bearer_and_reads_go_without_a_type():
    headers = Request("GET", "/status").headers("s3cret")
    assert headers["Authorization"] == "Bearer s3cret" and "Content-Type" not in headers and "Origin" not in headers


def test_a_time_that_cannot_be_read_is_a_usage_error_naming_the_option():
    with pytest.raises(UsageProblem, match=r"--start 'tomorrow': not a time: give epoch seconds"):
        commands.add_request(parsed("events", "add", "x", "--limit-kw", "1", "--start", "tomorrow", "--end", "+9"),
                             NOW)
    with pytest.raises(UsageProblem, match="nothing to change"):
        commands.modify_request(parsed("events", "modify", "x"), NOW)


def test_api_urls():
    target = api_target("https://agg.example:8443/jeisson/")
    assert (target.scheme, target.host, target.port, target.prefix, target.loopback) == \
        ("https", "agg.example", 8443, "/jeisson", False)
    assert api_target("http://localhost").port == 80 and api_target("http://[::1]:8480").loopback
    for bad, said in (("ftp://x", "expected an http:// or https:// URL"), ("http://", "no host"),
                      ("http://h:99999", "not a URL"), ("http://h/?a=1", "without ?query")):
        with pytest.raises(UsageProblem, match=re.escape(said)):
            api_target(bad)


def args_for(*extra):
    return parsed("status", *extra)


def test_credentials_options(tmp_path, credentials):
    with pytest.raises(UsageProblem, match="--ca: TLS options need an https:// --api URL"):
        commands.api_from(args_for("--ca", credentials.ca), {})
    with pytest.raises(UsageProblem, match="--cert and --key go together"):
        commands.api_from(args_for("--api", "https://127.0.0.1:1", "--cert", credentials.ca), {})
    not_pem = tmp_path / "ca.pem"
    not_pem.write_text("not a certificate\n")
    with pytest.raises(UsageProblem, match=f"--ca {not_pem}: cannot read it as PEM"):
        tls_context(str(not_pem), None, None)
    empty = tmp_path / "token"
    empty.write_text("\n")
    with pytest.raises(UsageProblem, match="empty"):
        read_token(str(empty))
    with pytest.raises(UsageProblem, match=f"--token-file {tmp_path}/nope: cannot read it: no such file"):
        read_token(str(tmp_path / "nope"))
    token = tmp_path / "token"
    token.write_text("  abc123 \n")
    assert commands.api_from(args_for("--token-file", str(token)), {"JEISSON_TOKEN": "other"}).token == "abc123"
    api = commands.api_from(args_for(), {"JEISSON_TOKEN": "xyz", "JEISSON_API": "http://127.0.0.1:9/"})
    assert (api.token, api.target.url) == ("xyz", "http://127.0.0.1:9")


def test_a_token_in_the_clear_beyond_loopback_is_warned_about(capsys):
    import sys

    commands.api_from(args_for("--api", "http://agg.example:8480"), {"JEISSON_TOKEN": "t"}, sys.stderr)
    assert "warning: sending a token in the clear to http://agg.example:8480" in capsys.readouterr().err
    commands.api_from(args_for(), {"JEISSON_TOKEN": "t"}, sys.stderr)
    assert capsys.readouterr().err == ""


# The API's answers, pure.


def error_reply(status, code, message, field=None, reason="Unprocessable Entity"):
    error = {"status": status, "code": code, "message": message} | ({"field": field} if field else {})
    return Reply(status, reason, "application/json", json.dumps({"error": error}).encode())


def test_a_refused_field_is_named_as_the_api_names_it_and_as_it_was_typed():
    with pytest.raises(Refused) as caught:
        judge(error_reply(422, "bad-field", "expected a number >= 0, got -1", "limit_kw"), "POST /api/v1/events",
              commands.EVENT_OPTIONS)
    assert caught.value.message == \
        "POST /api/v1/events: 422 bad-field: limit_kw (--limit-kw): expected a number >= 0, got -1"
    assert caught.value.exit_code == EXIT_REFUSED and caught.value.body["error"]["field"] == "limit_kw"


def test_answers_and_their_exit_codes():
    ok = Reply(200, "OK", "application/json", b'{"a": 1}')
    assert judge(ok, "GET /") is ok and json_of(ok, "GET /") == {"a": 1}
    with pytest.raises(ServerFailed, match="500 internal: boom") as caught:
        judge(error_reply(500, "internal", "boom"), "GET /")
    assert caught.value.exit_code == EXIT_SERVER
    with pytest.raises(ServerFailed, match="GET /: 502 Bad Gateway: <html>upstream down"):
        judge(Reply(502, "Bad Gateway", "text/html", b"<html>upstream down\n<p>more</p>"), "GET /")
    with pytest.raises(Refused, match="give --token-file FILE or JEISSON_TOKEN"):
        judge(error_reply(401, "unauthorized", "a token or certificate is needed"), "GET /")
    with pytest.raises(ServerFailed, match="not JSON"):
        json_of(Reply(200, "OK", "text/html", b"<html>"), "GET /")
    with pytest.raises(ServerFailed, match="not an object"):
        json_of(Reply(200, "OK", "application/json", b"[1]"), "GET /")


# The command as a script runs it: exit status, stdout and stderr.


def run(*argv):
    import io

    out = io.StringIO()
    code = cli.main(list(argv), out=out)
    return code, out.getvalue()


def test_usage_errors_exit_2(capsys):
    assert run("events", "add", "x", "--start", "+1", "--end", "+2")[0] == EXIT_USAGE  # no --limit-kw
    assert run("events", "add", "x", "--limit-kw", "1", "--start", "soon", "--end", "+2")[0] == EXIT_USAGE
    assert "jeisson events add: --start 'soon': not a time" in capsys.readouterr().err
    assert run("status", "--api", "gopher://h")[0] == EXIT_USAGE
    assert "jeisson status: --api 'gopher://h': expected an http:// or https:// URL" in capsys.readouterr().err
    for bad in (["--timeout", "-1"], ["--timeout", "0"], ["--timeout", "nan"]):
        assert run("status", *bad)[0] == EXIT_USAGE, bad  # before any connection: nothing listens
        assert "--timeout: expected" in capsys.readouterr().err
    assert run("--timeout", "-1", "status")[0] == EXIT_USAGE
    capsys.readouterr()
    for option, value in (("--limit-kw", "nan"), ("--limit-kw", "inf"), ("--start-window-s", "-inf"),
                          ("--end-window-s", "nan")):
        argv = ["events", "add", "x", "--limit-kw", "1", "--start", "+1", "--end", "+2", f"{option}={value}"]
        assert run(*argv)[0] == EXIT_USAGE, (option, value)
        assert f"{option}: expected a finite number, got '{value}'" in capsys.readouterr().err


def test_connection_refused_exits_3_naming_the_url(capsys):
    port = free_ports(1)[0]
    assert run("status", "--api", f"http://127.0.0.1:{port}")[0] == EXIT_UNREACHABLE
    assert capsys.readouterr().err == (f"jeisson status: cannot reach the API at http://127.0.0.1:{port}: connection"
                                       " refused (is the aggregator running, with its [api] listen on that"
                                       " address?)\n")


class OneShotServer:
    """A loopback socket answering each connection with ``answer(sock)`` in
    a thread: a port that is not HTTP, a TLS server."""

    def __init__(self, answer):
        self.socket = socket.create_server(("127.0.0.1", 0))
        self.port = self.socket.getsockname()[1]
        self.answer = answer
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self):
        try:
            connection, _ = self.socket.accept()
        except OSError:
            return
        with connection:
            try:
                self.answer(connection)
            except (OSError, ssl.SSLError):
                pass

    def close(self):
        self.socket.close()
        self.thread.join(10)


@pytest.fixture
def one_shot():
    servers = []

    def start(answer):
        servers.append(OneShotServer(answer))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def test_a_port_that_does_not_speak_http_exits_3(capsys, one_shot):
    def line_protocol(connection):
        connection.recv(4096)
        connection.sendall(b"ERR hello expected\n")

    server = one_shot(line_protocol)
    assert run("homes", "--api", f"http://127.0.0.1:{server.port}")[0] == EXIT_UNREACHABLE
    assert f"cannot reach the API at http://127.0.0.1:{server.port}: the answer is not HTTP" in capsys.readouterr().err


def test_a_certificate_not_trusted_exits_3_saying_tls(capsys, one_shot, credentials, tmp_path):
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(f"{credentials.directory}/aggregator.pem", f"{credentials.directory}/aggregator.key")
    server = one_shot(lambda connection: context.wrap_socket(connection, server_side=True).recv(1))
    from jeisson import pki

    other = str(tmp_path / "other")
    pki.init(other)  # another CA: the aggregator's certificate is not its
    code, _ = run("status", "--api", f"https://127.0.0.1:{server.port}", "--ca", f"{other}/{pki.CA_CERT}")
    assert code == EXIT_UNREACHABLE
    err = capsys.readouterr().err
    assert f"TLS failure with https://127.0.0.1:{server.port}: the API's certificate is not trusted" in err
    assert "--ca" in err


def test_https_against_the_plain_http_api_says_so_at_once(capsys, one_shot):
    """The API answers a TLS hello with plain HTTP at once (DeadlineChannel):
    the client's TLS layer reads a record it cannot take and says why."""
    from twisted.internet.task import Clock
    from twisted.internet.testing import StringTransport

    from jeisson.web.site import Routes, build_site

    site = build_site(Routes())
    transport = StringTransport()
    channel = site.buildProtocol(None)
    channel.callLater = Clock().callLater
    channel.makeConnection(transport)
    hello = []

    def plain_api(connection):
        hello.append(connection.recv(4096))
        channel.dataReceived(hello[-1])
        connection.sendall(transport.value())

    server = one_shot(plain_api)
    assert run("status", "--api", f"https://127.0.0.1:{server.port}", "--timeout", "30")[0] == EXIT_UNREACHABLE
    assert hello[0][:1] == b"\x16" and transport.disconnecting
    err = capsys.readouterr().err
    assert f"TLS failure with https://127.0.0.1:{server.port}" in err and "(is the API plain http://?)" in err


class ContractPeer(http.server.BaseHTTPRequestHandler):
    """Answers every request with the server's ``answer``: (status, type,
    body), and keeps what it was asked."""

    def _answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        self.server.asked.append((self.command, self.path, dict(self.headers), self.rfile.read(length)))
        status, content_type, body = self.server.answer
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_GET = do_POST = do_PUT = do_DELETE = _answer

    def log_message(self, format, *args):
        pass


@pytest.fixture
def peer():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), ContractPeer)
    server.asked = []
    server.answer = (200, "application/json", b"{}")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    server.url = f"http://127.0.0.1:{server.server_address[1]}"
    yield server
    server.shutdown()
    server.server_close()
    thread.join(10)


def test_a_refused_event_exits_1_with_the_apis_message_and_json_keeps_the_body(capsys, peer):
    body = {"error": {"status": 422, "code": "refused", "message": "limit 0.00 kW is below the critical loads"}}
    peer.answer = (422, "application/json", json.dumps(body).encode())
    code, out = run("events", "add", "peak-1", "--limit-kw", "0", "--start", "+10", "--end", "+70", "--api",
                    peer.url, "--json")
    assert code == EXIT_REFUSED
    assert json.loads(out) == body
    assert capsys.readouterr().err == ("jeisson events add: POST /api/v1/events: 422 refused: limit 0.00 kW is below"
                                       " the critical loads\n")
    method, path, headers, sent = peer.asked[0]
    assert (method, path, headers["Content-Type"]) == ("POST", "/api/v1/events", "application/json")
    assert json.loads(sent) == {"id": "peak-1", "limit_kw": 0.0, "start": "+10", "end": "+70"}


def test_an_existing_event_says_to_modify_it(capsys, peer):
    body = {"error": {"status": 409, "code": "conflict", "message": "event peak-1 exists"}}
    peer.answer = (409, "application/json", json.dumps(body).encode())
    code, out = run("events", "add", "peak-1", "--limit-kw", "4", "--start", "+10", "--end", "+70", "--api", peer.url)
    assert code == EXIT_REFUSED and out == ""
    assert "event peak-1 exists (jeisson events modify peak-1 changes it)" in capsys.readouterr().err


def test_a_server_error_exits_4(capsys, peer):
    peer.answer = (503, "application/json",
                   b'{"error": {"status": 503, "code": "unavailable", "message": "no store"}}')
    assert run("export", "--since", "-60", "--api", peer.url)[0] == EXIT_SERVER
    assert "503 unavailable: no store" in capsys.readouterr().err
    peer.answer = (200, "text/html", b"<html>")
    assert run("status", "--api", peer.url)[0] == EXIT_SERVER


def test_export_writes_the_csv_whole_to_a_file(peer, tmp_path):
    csv = b"home,at,watts,span_s\r\nhome-1,2026-12-03T18:00:00.000Z,1000.0,1.0\r\n"
    peer.answer = (200, "text/csv; charset=utf-8", csv)
    path = tmp_path / "out.csv"
    code, out = run("export", "--since", "-60", "--home", "home-1", "-o", str(path), "--api", peer.url)
    assert code == 0 and re.fullmatch(rf"wrote 1 samples from \S+Z to \S+Z to {re.escape(str(path))}\n", out)
    assert path.read_bytes() == csv
    assert peer.asked[0][2]["Accept"] == "text/csv"
    # Relative times sent as absolute ones: every page of an export asks the same range.
    assert re.fullmatch(r"/api/v1/measurements\?since=\S+Z&until=\S+Z&home=home-1&format=csv", peer.asked[0][1])
    code, out = run("export", "--since", "-60", "--api", peer.url)
    assert code == 0 and out == csv.decode()


class Measurements:
    """The API's measurements as the contract says: by home then time,
    ``since <= at <= until`` (any moment ``parse_moment`` reads), at most
    ``cap`` rows, times written to the millisecond, and whether it cut."""

    def __init__(self, samples, cap):
        self.samples = sorted(samples)  # (home, epoch seconds, watts)
        self.cap = cap
        self.asked = []

    def fetch(self, since, until, homes):
        self.asked.append((since, homes))
        since, until = parse_moment(since, 0), parse_moment(until, 0)
        found = [(h, at, w) for h, at, w in self.samples if (not homes or h in homes) and since <= at <= until]
        page = found[:self.cap]
        text = "home,at,watts,span_s\r\n" + "".join(f"{h},{format_utc(at)},{w},1\r\n" for h, at, w in page)
        return export.csv_page(text, len(found) > self.cap)


def stamp(second):
    return f"2026-12-03T18:{second // 60:02d}:{second % 60:02d}.000Z"


HOME_IDS = ["h1", "h2", "h3", "h4"]


@settings(max_examples=300)
@given(st.lists(st.tuples(st.sampled_from(HOME_IDS), st.integers(0, 40_000), st.integers(0, 5000)),
                unique_by=lambda s: s[:2]), st.integers(1, 7), st.sets(st.sampled_from(HOME_IDS)))
def test_an_export_is_whole_whatever_the_cap(samples, cap, homes):
    # Moments in milliseconds plus a fraction: the API writes them rounded
    # to the millisecond, some up, some down (one sample of a home a ms).
    samples = [(h, NOW + ms / 1000 + 0.0003 * (w % 3 - 1), w) for h, ms, w in samples]
    api = Measurements(samples, cap)
    since, until = format_utc(NOW + 5), format_utc(NOW + 35)
    rows = [row for page in export.pages(api.fetch, since, until, sorted(homes), lambda: HOME_IDS)
            for row in page.rows]
    expected = sorted((h, format_utc(at), w) for h, at, w in samples
                      if (not homes or h in homes) and parse_utc(since) <= at <= parse_utc(until))
    assert [(r.home, r.at, int(r.item.split(",")[2])) for r in rows] == expected


def test_an_export_capped_at_one_row_goes_on_past_its_moment():
    api = Measurements([("h1", NOW + 1, 1), ("h1", NOW + 2, 2), ("h2", NOW + 1, 3)], 1)
    rows = [row.item for page in export.pages(api.fetch, format_utc(NOW), format_utc(NOW + 9), [],
                                              lambda: ["h1", "h2"]) for row in page.rows]
    assert rows == ["h1,2026-12-03T18:00:01.000Z,1,1", "h1,2026-12-03T18:00:02.000Z,2,1",
                    "h2,2026-12-03T18:00:01.000Z,3,1"]
    # All from the start (cut after h1's first row), h1 from half a ms past that row (its last, whole), h2.
    assert api.asked == [(format_utc(NOW), []), (repr(NOW + 1.0005), ["h1"]), (format_utc(NOW), ["h2"])]


def test_a_capped_reply_with_nothing_new_is_the_api_failing():
    page = export.csv_page(f"home,at,watts,span_s\r\nh1,{stamp(1)},1,1\r\nh1,{stamp(2)},1,1\r\n", truncated=True)
    with pytest.raises(ServerFailed, match="capped a reply that brought no new sample"):
        list(export.pages(lambda *a: page, stamp(0), stamp(9), [], lambda: ["h1"]))


def test_a_sample_whose_time_is_not_utc_text_is_the_api_failing():
    page = export.csv_page("home,at,watts,span_s\r\nh1,yesterday,1,1\r\n", truncated=True)
    with pytest.raises(ServerFailed, match="not UTC text: 'yesterday'"):
        list(export.pages(lambda *a: page, stamp(0), stamp(9), [], lambda: ["h1"]))


def test_tables_are_printed_and_json_is_the_body(peer):
    peer.answer = (200, "application/json", json.dumps({"homes": [home("home-1")]}).encode())
    code, out = run("homes", "--connected", "--api", peer.url)
    assert code == 0 and out.splitlines()[1].startswith("home-1")
    assert peer.asked[-1][1] == "/api/v1/homes?connected=true"
    code, out = run("homes", "--api", peer.url, "--json")
    assert json.loads(out) == {"homes": [home("home-1")]}
    # The contract's place for them, before the command's name.
    code, out = run("--api", peer.url, "--json", "homes")
    assert code == 0 and json.loads(out) == {"homes": [home("home-1")]}


def test_the_commands_are_in_the_jeisson_command():
    names = set()
    for action in cli.parser()._subparsers._group_actions:  # the COMMAND choices
        if isinstance(action, argparse._SubParsersAction):
            names |= set(action.choices)
    assert {"pki", "status", "homes", "events", "why", "export"} <= names


def test_connection_options_before_or_after_the_commands_name():
    top = argparse.ArgumentParser(prog="jeisson")
    commands.add_global_options(top)  # as jeisson.cli.parser() does once it calls it
    commands.add_commands(top.add_subparsers(dest="command", required=True))
    args = top.parse_args(["--json", "--api", "http://127.0.0.1:1", "events", "list"])
    assert (args.json, args.api, args.timeout) == (True, "http://127.0.0.1:1", 10.0)
    args = top.parse_args(["--api", "http://127.0.0.1:1", "status", "--api", "http://127.0.0.1:2", "--timeout", "3"])
    assert (args.api, args.timeout, args.json) == ("http://127.0.0.1:2", 3.0, False)
    # Without the hook, after the name only, the defaults standing in for the rest.
    args = parsed("status")
    assert commands.api_from(args, {}).target.url == "http://127.0.0.1:8480"


def test_the_api_commands_start_without_cryptography():
    """jeisson.pki (cryptography, ~120 ms) is for the pki commands only: a
    ``jeisson status`` in a fresh interpreter never imports it."""
    import subprocess
    import sys

    port = free_ports(1)[0]  # nothing listens: exit 3
    probe = ("import sys\n"
             "from jeisson import cli\n"
             f"code = cli.main(['--api', 'http://127.0.0.1:{port}', 'status'])\n"
             "print(code, sorted(m for m in sys.modules if m == 'jeisson.pki' or m.startswith('cryptography')))\n")
    run = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60)
    assert run.stdout.split(" ", 1) == ["3", "[]\n"], run.stderr


def test_a_pki_refusal_is_one_line_and_exit_1(tmp_path, capsys):
    from jeisson import pki

    assert cli.CERT_DAYS == pki.CERT_DAYS
    assert cli.main(["pki", "home", str(tmp_path), "home-1"]) == 1
    assert capsys.readouterr().err == (f"jeisson pki: {tmp_path}/{pki.CA_CERT}: no such file: make the CA first "
                                       f"(jeisson pki init {tmp_path})\n")
