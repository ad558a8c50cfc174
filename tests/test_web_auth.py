"""Who may use the HTTP API (jeisson.web.auth), through a whole Site.

Requests in memory (tests/http_memory.py); the operator's certificate over
real TLS in memory (``iosim`` pumping a pyOpenSSL handshake between
``ApiTLS`` and a client with certificates from ``jeisson.pki``).
"""

import io
import os

import pytest
from twisted.internet import ssl
from twisted.internet.address import IPv4Address
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.test import iosim
from twisted.web.resource import Resource

from jeisson import pki
from jeisson.limits import Limits, ListenerGuard
from jeisson.tls import TLSConfig
from jeisson.web.auth import ApiTLS, Guard, LimitedFactory, host_of
from jeisson.web.config import ApiConfig
from jeisson.web.site import Reply, Routes, build_site
from tests.http_memory import IDLE, request

pytestmark = pytest.mark.usefixtures("logs")


class Page(Resource):
    """A mounted resource: says where it was reached."""

    isLeaf = True

    def __init__(self, text: bytes):
        super().__init__()
        self.text = text

    def render_GET(self, request):
        return self.text


def routes() -> Routes:
    table = Routes()
    table.get("/status", lambda call: {"who": call.who})
    table.add("POST", "/things", lambda call: Reply({"made": True}, 201))
    table.add("DELETE", "/things/{id}", lambda call: {"deleted": call.param("id")})
    return table


def site_for(config: ApiConfig):
    return build_site(routes(), Guard(config), {"/metrics": Page(b"metrics"), "/": Page(b"page"),
                                                "/api/v1/stream": Page(b"stream")})


def code(response):
    return response.status, response.json()["error"]["code"] if response.status >= 400 else None


@pytest.fixture
def tokens(tmp_path):
    token, path = pki.issue_token(str(tmp_path), "ops")
    return token, path


# ----------------------------------------------------------------- Host


@pytest.mark.parametrize("header, expected", [
    ("localhost:8480", "localhost"), ("127.0.0.1", "127.0.0.1"), ("[::1]:8480", "::1"), ("Jeisson.EXAMPLE:80",
                                                                                          "jeisson.example"),
])
def test_the_host_header_is_read_without_its_port(header, expected):
    assert host_of(header) == expected


@pytest.mark.parametrize("host, allowed", [
    ("127.0.0.1:8480", True), ("localhost:8480", True), ("LOCALHOST", True), ("[::1]:8480", True),
    ("127.0.0.2:8480", True), ("attacker.example:8480", False), ("192.168.1.5:8480", False), ("", False),
])
def test_a_name_that_is_not_ours_is_refused_everywhere_against_dns_rebinding(host, allowed):
    site = site_for(ApiConfig("a.ini", "tcp:8480:interface=127.0.0.1"))
    for path in ("/api/v1/status", "/metrics", "/", "/static/app.js", "/api/v1/stream"):
        response = request(site, "GET", path, host=host)
        if allowed:
            assert response.status == 200, (path, response)
        else:
            assert code(response) == (403, "forbidden"), (path, response)
            assert "DNS rebinding" in response.json()["error"]["message"]


def test_configured_names_and_the_listen_address_are_ours():
    site = site_for(ApiConfig("a.ini", "tcp:8480:interface=10.0.0.5", tls=True, hosts=("jeisson.example",)))
    assert request(site, "GET", "/", host="jeisson.example:8480").status == 200
    assert request(site, "GET", "/", host="10.0.0.5:8480").status == 200
    assert request(site, "GET", "/", host="other.example").status == 403


# ---------------------------------------------------------------- tokens


def test_bearer_tokens_are_checked_against_the_hashes_in_the_file(tokens):
    token, path = tokens
    site = site_for(ApiConfig("a.ini", "tcp:8480:interface=0.0.0.0", tokens=path))
    refused = request(site, "GET", "/api/v1/status")
    assert code(refused) == (401, "unauthorized") and refused.headers["www-authenticate"].startswith("Bearer")
    wrong = request(site, "GET", "/api/v1/status", headers={"Authorization": "Bearer jst_wrong"})
    assert code(wrong) == (401, "unauthorized") and "invalid_token" in wrong.headers["www-authenticate"]
    assert code(request(site, "GET", "/api/v1/status", headers={"Authorization": f"Basic {token}"})) == (
        401, "unauthorized")
    taken = request(site, "GET", "/api/v1/status", headers={"Authorization": f"Bearer {token}"})
    assert taken.status == 200 and taken.json() == {"who": "token ops"}
    by_cookie = request(site, "GET", "/api/v1/status", headers={"Cookie": f"jeisson_token={token}"})
    assert by_cookie.status == 200
    # The stream and the metrics hold data: credentials there too; the pages hold none.
    assert code(request(site, "GET", "/metrics")) == (401, "unauthorized")
    assert code(request(site, "GET", "/api/v1/stream")) == (401, "unauthorized")
    assert request(site, "GET", "/metrics", headers={"Authorization": f"Bearer {token}"}).body == b"metrics"
    assert request(site, "GET", "/").body == b"page"


def test_a_token_added_or_deleted_takes_effect_without_a_restart(tokens, tmp_path):
    token, path = tokens
    site = site_for(ApiConfig("a.ini", "tcp:8480:interface=0.0.0.0", tokens=path))
    second, _ = pki.issue_token(str(tmp_path), "cli")
    assert request(site, "GET", "/api/v1/status", headers={"Authorization": f"Bearer {second}"}).status == 200
    with open(path, "w") as f:  # ops's line deleted (a different size: noticed at once)
        f.write(f"{pki.token_hash(second)} cli\n")
    assert request(site, "GET", "/api/v1/status", headers={"Authorization": f"Bearer {token}"}).status == 401
    assert request(site, "GET", "/api/v1/status", headers={"Authorization": f"Bearer {second}"}).status == 200


def test_a_missing_tokens_file_revokes_every_token_said_once_until_it_is_back(tokens, tmp_path, logs):
    token, path = tokens
    site = site_for(ApiConfig("a.ini", "tcp:8480:interface=0.0.0.0", tokens=path))
    bearer = {"Authorization": f"Bearer {token}"}
    assert request(site, "GET", "/api/v1/status", headers=bearer).status == 200
    os.rename(path, str(tmp_path / "kept"))
    for _ in range(3):
        assert request(site, "GET", "/api/v1/status", headers=bearer).status == 401
    said = [e for e in logs if "missing" in e.get("log_format", "")]
    assert len(said) == 1 and said[0]["path"] == path
    os.rename(str(tmp_path / "kept"), path)
    assert request(site, "GET", "/api/v1/status", headers=bearer).status == 200


def test_tokens_on_loopback_are_still_required():
    assert request(site_for(ApiConfig("a.ini", "tcp:8480:interface=127.0.0.1")), "GET",
                   "/api/v1/status").status == 200


# ----------------------------------------------------------------- writes


def test_writes_need_json_and_the_apis_own_origin():
    site = site_for(ApiConfig("a.ini", "tcp:8480:interface=127.0.0.1"))
    assert request(site, "POST", "/api/v1/things", {"a": 1}).status == 201
    form = request(site, "POST", "/api/v1/things", b"a=1",
                   headers={"Content-Type": "application/x-www-form-urlencoded"})
    assert code(form) == (403, "forbidden") and "application/json" in form.json()["error"]["message"]
    assert code(request(site, "POST", "/api/v1/things", b"{}", headers={"Content-Type": "text/plain"})) == (
        403, "forbidden")
    assert request(site, "POST", "/api/v1/things", {"a": 1}, headers={"Origin": "http://127.0.0.1:8480"}).status == 201
    assert request(site, "POST", "/api/v1/things", {"a": 1}, headers={"Origin": "http://localhost:8480"},
                   host="localhost:8480").status == 201
    other = request(site, "POST", "/api/v1/things", {"a": 1}, headers={"Origin": "http://evil.example"})
    assert code(other) == (403, "forbidden") and "another site" in other.json()["error"]["message"]
    assert code(request(site, "POST", "/api/v1/things", {"a": 1}, headers={"Origin": "null"})) == (403, "forbidden")
    assert code(request(site, "POST", "/api/v1/things", {"a": 1}, headers={"Origin": "https://127.0.0.1:8480"})) == (
        403, "forbidden")
    assert code(request(site, "DELETE", "/api/v1/things/x", headers={"Sec-Fetch-Site": "cross-site"})) == (
        403, "forbidden")
    assert request(site, "DELETE", "/api/v1/things/x").json() == {"deleted": "x"}


# ----------------------------------------------------- operators over TLS


class Client(Protocol):
    def __init__(self, raw: bytes):
        self.raw = raw
        self.data = b""

    def connectionMade(self):
        self.transport.write(self.raw)

    def dataReceived(self, data):
        self.data += data


def over_tls(site, server: ApiTLS, credentials, client_cert=None, headers: str = "",
             line: str = "GET /api/v1/status") -> bytes:
    """One request (by default GET /api/v1/status) over TLS in memory; what
    the client read."""
    return tls_connection(site, server, credentials, client_cert, "Connection: close\r\n" + headers, line)[0].data


def tls_connection(site, server: ApiTLS, credentials, client_cert=None, headers: str = "",
                   line: str = "GET /api/v1/status"):
    """A request over TLS in memory, the connection left as the server left
    it: the client, the pump and the clock."""
    ca = ssl.Certificate.loadPEM(open(credentials.ca, "rb").read())
    options = ssl.optionsForClientTLS("localhost", ca, client_cert)
    raw = (f"{line} HTTP/1.1\r\nHost: localhost:8480\r\n{headers}\r\n").encode()
    client = Client(raw)
    # TLS aggregates small writes until the next turn of its clock.
    clock = Clock()
    client_protocol = TLSMemoryBIOFactory(options, True, Factory.forProtocol(lambda: client),
                                          clock=clock).buildProtocol(None)
    wrapped = server.wrap(site)
    wrapped._clock = clock
    # Counted at accept, as the daemons do: the guard outside the TLS.
    limited = LimitedFactory(wrapped, ListenerGuard(Limits(), clock, "API listener"))
    server_protocol = limited.buildProtocol(IPv4Address("TCP", "127.0.0.1", 40000))
    pump = iosim.connect(server_protocol, iosim.makeFakeServer(server_protocol), client_protocol,
                         iosim.makeFakeClient(client_protocol))
    for _ in range(10):
        clock.advance(0)
        pump.flush()
    return client, pump, clock


def private(cert_path: str, key_path: str) -> ssl.PrivateCertificate:
    return ssl.PrivateCertificate.loadPEM(open(cert_path, "rb").read() + open(key_path, "rb").read())


@pytest.fixture
def tls_config(credentials):
    d = credentials.directory
    return TLSConfig(os.path.join(d, "a.ini"), ca=credentials.ca, cert=f"{d}/aggregator.pem",
                     key=f"{d}/aggregator.key", crl=f"{d}/crl.pem")


def operator(credentials, name):
    cert, key = pki.operator_paths(credentials.directory, name)
    if not os.path.exists(cert):
        pki.issue_operator(credentials.directory, name)
    return private(cert, key)


def test_an_operator_certificate_opens_the_api_and_a_home_certificate_does_not(credentials, tls_config):
    config = ApiConfig("a.ini", "tcp:8480:interface=0.0.0.0", tls=True)
    site = site_for(config)
    server = ApiTLS(tls_config)
    answer = over_tls(site, server, credentials, operator(credentials, "alice"))
    assert answer.startswith(b"HTTP/1.1 200") and b'{"who":"operator alice"}' in answer, answer
    home_cert, home_key = credentials.home("home-1")
    refused = over_tls(site, server, credentials, private(home_cert, home_key))
    assert refused.startswith(b"HTTP/1.1 401") and b"role operator" in refused, refused
    # Without a certificate, no handshake at all (tls alone: certificates only).
    assert over_tls(site, server, credentials) == b""
    # The API's own origin over HTTPS is https://: a write from it is taken, from http:// not.
    alice = operator(credentials, "alice")
    write = "Content-Type: application/json\r\nContent-Length: 2\r\nOrigin: {}\r\n"
    made = over_tls(site, server, credentials, alice, write.format("https://localhost:8480") + "\r\n{}",
                    "POST /api/v1/things")
    assert made.startswith(b"HTTP/1.1 201"), made
    other = over_tls(site, server, credentials, alice, write.format("http://localhost:8480") + "\r\n{}",
                     "POST /api/v1/things")
    assert other.startswith(b"HTTP/1.1 403"), other


def test_with_tokens_too_a_client_without_a_certificate_shows_its_token(credentials, tls_config, tokens):
    token, path = tokens
    config = ApiConfig("a.ini", "tcp:8480:interface=0.0.0.0", tls=True, tokens=path)
    site = site_for(config)
    server = ApiTLS(tls_config, certificate_required=False)
    assert over_tls(site, server, credentials).startswith(b"HTTP/1.1 401")
    answer = over_tls(site, server, credentials, headers=f"Authorization: Bearer {token}\r\n")
    assert answer.startswith(b"HTTP/1.1 200") and b"token ops" in answer, answer
    assert b"operator alice" in over_tls(site, server, credentials, operator(credentials, "alice"))


def test_a_revoked_operator_is_refused_once_the_list_is_read_again(tmp_path):
    from tests.conftest import Credentials

    own = Credentials(str(tmp_path / "pki"))  # revoking: a folder of its own
    d = own.directory
    config = TLSConfig(os.path.join(d, "a.ini"), ca=own.ca, cert=f"{d}/aggregator.pem", key=f"{d}/aggregator.key",
                       crl=f"{d}/crl.pem")
    site = site_for(ApiConfig("a.ini", "tcp:8480:interface=0.0.0.0", tls=True))
    server = ApiTLS(config)
    mallory = operator(own, "mallory")
    assert b"operator mallory" in over_tls(site, server, own, mallory)
    pki.revoke_operator(d, "mallory")
    assert server.reload_crl()
    assert over_tls(site, server, own, mallory) == b"", "no handshake with a revoked certificate"
    assert b"operator alice" in over_tls(site, server, own, operator(own, "alice"))


def test_a_revoked_operators_open_connection_is_dropped_naming_the_operator(tmp_path, logs):
    from twisted.logger import formatEvent

    from tests.conftest import Credentials

    own = Credentials(str(tmp_path / "pki"))
    d = own.directory
    config = TLSConfig(os.path.join(d, "a.ini"), ca=own.ca, cert=f"{d}/aggregator.pem", key=f"{d}/aggregator.key",
                       crl=f"{d}/crl.pem")
    site = site_for(ApiConfig("a.ini", "tcp:8480:interface=0.0.0.0", tls=True))
    server = ApiTLS(config)
    client, pump, clock = tls_connection(site, server, own, operator(own, "mallory"))  # kept alive
    assert client.data.startswith(b"HTTP/1.1 200") and b"operator mallory" in client.data
    assert client.transport.connected
    serial = pki.revoke_operator(d, "mallory")
    assert server.reload_crl()
    for _ in range(5):
        clock.advance(0)
        pump.flush()
    assert not client.transport.connected
    said = [formatEvent(e) for e in logs]
    assert [m for m in said if m.startswith("operator mallory at ") and
            f"its certificate (serial {serial:x}) is revoked; dropping the link" in m], said


def test_https_without_the_process_tls_credentials_stops_the_start():
    from jeisson.config import ConfigError
    from jeisson.web import aggregator_web
    from tests.peers import Net

    net = Net("[aggregator]\nlisten = tcp:7700:interface=127.0.0.1\n[home:h1]\nsecret = s\n")
    with pytest.raises(ConfigError, match=r"\[api\] tls: HTTPS needs this process's \[tls\] credentials"):
        aggregator_web(net.aggregator, ApiConfig("a.ini", "tcp:8480:interface=0.0.0.0", tls=True), net.clock)


# ----------------------------------------------------------- the listener's limits


def test_bad_tokens_are_answered_late_and_never_lock_out_a_valid_credential(tokens):
    """Chosen: no lockout for the API's bad tokens (256-bit tokens are not
    guessed; a lockout shut out every local process, or everyone behind a
    proxy, with the attacker); each 401 waits BAD_TOKEN_DELAY_S on the
    clock instead, the reactor free meanwhile."""
    from jeisson.limits import Limits, ListenerGuard
    from jeisson.web.auth import BAD_TOKEN_DELAY_S

    token, path = tokens
    clock = Clock()
    listener = ListenerGuard(Limits(lockout_failures=3, lockout_s=120, lockout_window_s=60), clock, "API listener")
    config = ApiConfig("a.ini", "tcp:8480:interface=127.0.0.1", tokens=path)
    site = build_site(routes(), Guard(config, listener=listener))
    for _ in range(30):
        bad = request(site, "GET", "/api/v1/status", headers={"Authorization": "Bearer jst_guess"})
        assert not bad.done, "a bad token's 401 waits"
        good = request(site, "GET", "/api/v1/status", headers={"Authorization": f"Bearer {token}"})
        assert good.status == 200, "a valid token from the same address goes through, at once"
        clock.advance(BAD_TOKEN_DELAY_S)
        assert code(bad.read()) == (401, "unauthorized")
    assert not listener.locked_out("127.0.0.1")


def test_connections_over_the_listeners_limits_are_aborted_at_accept():
    from twisted.internet.address import IPv4Address
    from twisted.internet.testing import StringTransport

    from jeisson.limits import Limits, ListenerGuard
    from jeisson.web.auth import LimitedFactory

    listener = ListenerGuard(Limits(max_connections=10, max_connections_per_address=2), Clock(), "API listener")
    factory = LimitedFactory(site_for(ApiConfig("a.ini", "tcp:8480:interface=127.0.0.1")), listener)

    def connect(host):
        transport = StringTransport(peerAddress=IPv4Address("TCP", host, 40000))
        protocol = factory.buildProtocol(transport.getPeer())
        protocol.wrappedProtocol.callLater = IDLE.callLater  # not the global reactor's (see tests/http_memory.py)
        protocol.makeConnection(transport)
        return protocol, transport

    first, second = connect("127.0.0.1"), connect("127.0.0.1")
    third, refused = connect("127.0.0.1")
    assert refused.disconnecting and not third.admitted
    third.connectionLost(None)  # its close: no KeyError from a wrapper never registered (the logs fixture)
    assert listener.connections == 2
    assert not first[1].disconnecting and not second[1].disconnecting and listener.connections == 2
    first[0].connectionLost(None)
    assert listener.connections == 1
    again, transport = connect("127.0.0.1")
    assert again.admitted and not transport.disconnecting
    transport.clear()
    again.dataReceived(b"GET /api/v1/status HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200")


def test_the_apis_own_refusals_are_counted_in_the_metrics_scrape(tokens):
    """A foreign Host, a bad token and a locked-out address, each refused by
    the Guard, appear in /metrics under the API's listener beside its
    refusals at accept, read back with prometheus_client's parser."""
    from prometheus_client.parser import text_string_to_metric_families

    from jeisson.web.auth import API_LISTENER
    from jeisson.web.metrics import aggregator_metrics
    from tests.peers import Net
    from tests.test_aggregator_core import CONFIG

    token, path = tokens
    net = Net(CONFIG)
    metrics = aggregator_metrics(net.aggregator, net.clock)
    try:
        listener = ListenerGuard(Limits(lockout_failures=2, lockout_s=120, lockout_window_s=60), net.clock,
                                 API_LISTENER)
        config = ApiConfig("a.ini", "tcp:8480:interface=127.0.0.1", tokens=path)
        site = build_site(routes(), Guard(config, listener=listener), {"/metrics": metrics})
        good = {"Authorization": f"Bearer {token}"}

        def counted():
            body = request(site, "GET", "/metrics", headers=good, peer="127.0.0.9").body.decode()
            return {(s.name, s.labels["reason"]): s.value for f in text_string_to_metric_families(body)
                    for s in f.samples if s.name in ("jeisson_refused_connections_total", "jeisson_auth_failures_total")
                    and s.labels["listener"] == "API"}

        assert counted() == {}
        assert request(site, "GET", "/api/v1/status", headers=good, host="attacker.example").status == 403
        for _ in range(2):
            refused = request(site, "GET", "/api/v1/status", headers={"Authorization": "Bearer jst_guess"})
            net.clock.advance(2)
            assert refused.read().status == 401
        assert request(site, "GET", "/api/v1/status", headers=good).status == 200  # no lockout
        assert counted() == {("jeisson_refused_connections_total", "foreign host"): 1.0,
                             ("jeisson_auth_failures_total", "bad token"): 2.0}
    finally:
        metrics.stop()


# ------------------------------------------------------- logs, deadlines


def test_a_thousand_refused_requests_write_no_access_log_and_are_counted_in_metrics(tokens, logs):
    """Twisted's access log would write a line per request (its whole
    request line) for anyone who can connect: off; /metrics counts them."""
    from prometheus_client.parser import text_string_to_metric_families

    from jeisson.web.metrics import aggregator_metrics
    from tests.peers import Net
    from tests.test_aggregator_core import CONFIG

    token, path = tokens
    net = Net(CONFIG)
    metrics = aggregator_metrics(net.aggregator, net.clock)
    try:
        site = build_site(routes(), Guard(ApiConfig("a.ini", "tcp:8480:interface=127.0.0.1", tokens=path)),
                          {"/metrics": metrics})
        site.doStart()  # as a listening port does: the access log file opened
        try:
            before = len(logs)
            for i in range(1000):
                assert request(site, "GET", f"/api/v1/status?{'x' * 200}{i}").status == 401
            assert len(logs) - before <= 3, [e.get("log_format") for e in logs[before:before + 5]]
        finally:
            site.doStop()
        body = request(site, "GET", "/metrics", headers={"Authorization": f"Bearer {token}"}).body.decode()
        codes = {s.labels["code"]: s.value for f in text_string_to_metric_families(body) for s in f.samples
                 if s.name == "jeisson_http_requests_total"}
        assert codes == {"401": 1000.0}  # the scrape itself is counted when it ends
    finally:
        metrics.stop()


def connection(site, clock):
    from twisted.internet.testing import StringTransport

    transport = StringTransport(peerAddress=IPv4Address("TCP", "127.0.0.1", 40000))
    protocol = site.buildProtocol(transport.getPeer())
    protocol.callLater = clock.callLater
    protocol.makeConnection(transport)
    return protocol, transport


def test_the_request_line_and_headers_have_a_deadline_from_accept():
    clock = Clock()
    site = site_for(ApiConfig("a.ini", "tcp:8480:interface=127.0.0.1", header_timeout_s=10))
    protocol, transport = connection(site, clock)
    for _ in range(5):  # a byte every few seconds does not hold it open
        protocol.dataReceived(b"G")
        clock.advance(3)
        if transport.disconnecting:
            break
    assert transport.disconnecting and clock.seconds() <= 12
    protocol.connectionLost(None)
    assert not clock.getDelayedCalls() or all(not c.active() for c in clock.getDelayedCalls())


def test_a_kept_alive_connection_idle_past_the_header_deadline_is_closed_and_a_prompt_one_is_not():
    clock = Clock()
    site = site_for(ApiConfig("a.ini", "tcp:8480:interface=127.0.0.1", header_timeout_s=10))
    protocol, transport = connection(site, clock)
    clock.advance(9)
    protocol.dataReceived(b"GET /api/v1/status HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert transport.value().startswith(b"HTTP/1.1 200") and not transport.disconnecting
    clock.advance(9)
    protocol.dataReceived(b"GET /api/v1/status HTTP/1.1\r\nHost: localhost\r\n\r\n")
    assert transport.value().count(b"HTTP/1.1 200") == 2 and not transport.disconnecting
    clock.advance(10)
    assert transport.disconnecting, "idle for the header deadline after its reply"
    protocol.connectionLost(None)


# ------------------------------------------------------------ a home's HTTPS


def test_a_homes_https_api_serves_its_own_web_certificate_and_takes_the_owners_token(credentials, tokens):
    """``jeisson pki web`` issues a serverAuth certificate from the jeisson
    CA; ``ServerOnlyTLS`` serves it (no client certificate asked for), and
    the owner's bearer token opens the API over it."""
    from jeisson import cli
    from jeisson.web.auth import ServerOnlyTLS

    token, path = tokens
    directory = credentials.directory
    out = io.StringIO()
    assert cli.main(["pki", "web", directory, "home-web-1", "--dns", "localhost", "--ip", "127.0.0.1", "--force"],
                    out=out) == 0
    cert, key = pki.web_paths(directory, "home-web-1")
    assert f"cert = {cert}" in out.getvalue()
    from cryptography import x509 as cx509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    issued = cx509.load_pem_x509_certificate(open(cert, "rb").read())
    usages = issued.extensions.get_extension_for_class(cx509.ExtendedKeyUsage).value
    # A server's only, like the aggregator's: the homes' listener takes clientAuth certificates, the API operators'.
    assert list(usages) == [ExtendedKeyUsageOID.SERVER_AUTH] and pki.operator_of(issued) is None

    server = ServerOnlyTLS("home.ini", cert, key)
    site = site_for(ApiConfig("home.ini", "tcp:8481:interface=0.0.0.0", tls=True, tokens=path, cert=cert, key=key))
    answered = over_tls(site, server, credentials, headers=f"Authorization: Bearer {token}\r\n")
    assert answered.startswith(b"HTTP/1.1 200"), answered[:200]
    assert over_tls(site, server, credentials).startswith(b"HTTP/1.1 401")


def test_a_web_certificate_that_is_a_clients_or_not_its_keys_is_refused_naming_the_key(credentials):
    from jeisson.config import ConfigError
    from jeisson.web.auth import ServerOnlyTLS

    home_cert, home_key = credentials.home("h1")
    with pytest.raises(ConfigError, match=r"home.ini: \[api\] cert: .*not a server's certificate"):
        ServerOnlyTLS("home.ini", home_cert, home_key)
    d = credentials.directory
    with pytest.raises(ConfigError, match=r"home.ini: \[api\] key: .*not the key of \[api\] cert"):
        ServerOnlyTLS("home.ini", f"{d}/aggregator.pem", home_key)
