"""Mutual TLS on the aggregator-home link, on real loopback sockets.

A real ``Aggregator`` (no store) listens over ``jeisson.tls.ServerTLS`` on
127.0.0.1:0; clients connect with the home's own client endpoint
(``jeisson.tls.client_endpoint``) or with deliberately wrong TLS options,
say HELLO, and the test waits for the first line back or the end of the
connection.  Credentials come from ``jeisson.pki`` in a folder per test.
Config errors are checked without sockets: each names the file and key.
"""

import datetime
import os
import shutil

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import SSL, crypto
from twisted.internet import defer, endpoints, reactor, ssl
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator
from twisted.internet.protocol import Factory, Protocol
from twisted.internet.task import Clock
from twisted.logger import capturedLogs, formatEvent, globalLogPublisher
from twisted.trial import unittest
from zope.interface import implementer

from jeisson import pki, tls
from jeisson.aggregator.config import config_from_string
from jeisson.aggregator.core import Aggregator
from jeisson.aggregator.tap import home_factory
from jeisson.config import ConfigError, IniFile
from jeisson.home.config import config_from_string as home_config_from_string
from jeisson.wire import aggregator_home as wire
from tests.waiting import eventually, scratch_directory

AGGREGATOR_INI = """
[aggregator]
listen = tcp:0:interface=127.0.0.1
heartbeat_s = 30
[home:home-a]
secret = sa
[home:home-b]
secret = sb
[home:home-r]
secret = sr
[store]
path = none
"""


class Home(Protocol):
    """A home's far end, as little as it takes: HELLO on connect, then the
    first line back (``answer``: the line, or None if the link ended first)."""

    def __init__(self, home_id: str, secret: str):
        self.hello = wire.serialize(wire.Hello(home_id, secret, (1, 2))) + b"\n"
        self.buffer = b""
        self.answer: defer.Deferred = defer.Deferred()
        self.lost: defer.Deferred = defer.Deferred()
        self.reason = None

    def connectionMade(self):
        self.transport.write(self.hello)

    def dataReceived(self, data):
        self.buffer += data
        if b"\n" in self.buffer and not self.answer.called:
            self.answer.callback(self.buffer.split(b"\n", 1)[0])

    def connectionLost(self, reason):
        self.reason = reason
        if not self.answer.called:
            self.answer.callback(None)
        self.lost.callback(None)


def pem(*objects) -> bytes:
    out = b""
    for item in objects:
        if hasattr(item, "private_bytes"):
            out += item.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                      serialization.NoEncryption())
        else:
            out += item.public_bytes(serialization.Encoding.PEM)
    return out


class TLSHandshakes(unittest.TestCase):
    def setUp(self):
        self.dir = os.path.join(scratch_directory(self), "pki")
        pki.init(self.dir)
        for home in ("home-a", "home-r"):
            pki.issue_home(self.dir, home)
        self.settings = tls.TLSConfig(
            "aggregator.ini", ca=f"{self.dir}/ca.pem", cert=f"{self.dir}/aggregator.pem",
            key=f"{self.dir}/aggregator.key", crl=f"{self.dir}/crl.pem", crl_poll_s=0.05)
        self.server = tls.ServerTLS(self.settings)
        self.aggregator = Aggregator(config_from_string(AGGREGATOR_INI), reactor)
        self.aggregator.start()
        self.addCleanup(self.aggregator.stop)
        self.factory = self.server.wrap(home_factory(self.aggregator))
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        self.events: list = []
        globalLogPublisher.addObserver(self.events.append)
        self.addCleanup(globalLogPublisher.removeObserver, self.events.append)
        self.homes: list[Home] = []
        self.addCleanup(self._close_all)

    async def _close_all_async(self):
        for home in self.homes:
            if home.transport is not None and not home.lost.called:
                home.transport.abortConnection()
        for home in self.homes:
            await home.lost
        await eventually(lambda: not self.factory.protocols, timeout=10)

    def _close_all(self):
        return defer.Deferred.fromCoroutine(self._close_all_async())

    def logged(self) -> str:
        return "\n".join(formatEvent(e) for e in self.events)

    def home_settings(self, home_id: str, name: str = "localhost", ca: str | None = None) -> tls.TLSConfig:
        return tls.TLSConfig("home.ini", ca=ca or f"{self.dir}/ca.pem", cert=f"{self.dir}/homes/{home_id}.pem",
                             key=f"{self.dir}/homes/{home_id}.key", name=name)

    async def connect(self, home: Home, options=None, settings: tls.TLSConfig | None = None):
        """``home`` over the home's own endpoint (``settings``), or over raw
        TLS ``options``; returns its first line back, or None."""
        description = f"tcp:127.0.0.1:{self.port.getHost().port}"
        if options is None:
            settings = settings or self.home_settings("home-a")
            endpoint = tls.client_endpoint(reactor, description, settings, tls.load_client(
                settings, pki.home_id_of(pki.load_certificate(settings.cert))))
        else:
            endpoint = endpoints.wrapClientTLS(options, endpoints.clientFromString(reactor, description))
        self.homes.append(home)
        await endpoint.connect(Factory.forProtocol(lambda: home))
        return await defer.Deferred.addTimeout(home.answer, 10, reactor)

    def ca_root(self):
        return ssl.Certificate.loadPEM(open(f"{self.dir}/ca.pem", "rb").read())

    def client_cert(self, key, cert):
        return ssl.PrivateCertificate.loadPEM(pem(cert, key))

    def refused_handshake(self, why: str) -> None:
        log = self.logged()
        self.assertRegex(log, r"TLS handshake with 127\.0\.0\.1:\d+ failed: " + why)
        self.assertEqual(self.aggregator.snapshot()["homes"]["home-a"]["connected"], False)

    # ------------------------------------------------------------- tests

    @defer.inlineCallbacks
    def test_a_home_with_its_certificate_is_welcomed_over_tls_1_3(self):
        home = Home("home-a", "sa")
        answer = yield defer.Deferred.fromCoroutine(self.connect(home))
        self.assertTrue(answer.startswith(b"WELCOME "), answer)
        self.assertTrue(self.aggregator.snapshot()["homes"]["home-a"]["connected"])
        connection = home.transport.getHandle()
        self.assertEqual(connection.get_protocol_version_name(), "TLSv1.3")
        self.assertIn(connection.get_cipher_name(), ("TLS_AES_256_GCM_SHA384", "TLS_CHACHA20_POLY1305_SHA256",
                                                     "TLS_AES_128_GCM_SHA256"))

    @defer.inlineCallbacks
    def test_tls_1_2_is_accepted_with_an_ecdhe_aead_suite_only(self):
        cert = self.client_cert(pki.load_private_key(f"{self.dir}/homes/home-a.key"),
                                pki.load_certificate(f"{self.dir}/homes/home-a.pem"))
        options = ssl.optionsForClientTLS("localhost", self.ca_root(), cert, extraCertificateOptions={
            "lowerMaximumSecurityTo": ssl.TLSVersion.TLSv1_2})
        home = Home("home-a", "sa")
        answer = yield defer.Deferred.fromCoroutine(self.connect(home, options))
        self.assertTrue(answer.startswith(b"WELCOME "), answer)
        connection = home.transport.getHandle()
        self.assertEqual(connection.get_protocol_version_name(), "TLSv1.2")
        self.assertRegex(connection.get_cipher_name(), r"^ECDHE-ECDSA-(AES\d+-GCM|CHACHA20-POLY1305)")

    @defer.inlineCallbacks
    def test_a_client_without_a_certificate_is_refused(self):
        options = ssl.optionsForClientTLS("localhost", self.ca_root())
        home = Home("home-a", "sa")
        answer = yield defer.Deferred.fromCoroutine(self.connect(home, options))
        self.assertIsNone(answer)
        yield eventually(lambda: "TLS handshake with" in self.logged())
        self.refused_handshake(".*")

    @defer.inlineCallbacks
    def test_a_certificate_from_another_ca_is_refused(self):
        ca_key, ca_cert = pki.make_ca("jeisson CA")  # the same name, another key
        from cryptography import x509

        key, cert = pki.issue(ca_key, ca_cert, "home-a", [x509.UniformResourceIdentifier("jeisson:home:home-a")],
                              ExtendedKeyUsageOID.CLIENT_AUTH)
        options = ssl.optionsForClientTLS("localhost", self.ca_root(), self.client_cert(key, cert))
        answer = yield defer.Deferred.fromCoroutine(self.connect(Home("home-a", "sa"), options))
        self.assertIsNone(answer)
        yield eventually(lambda: "TLS handshake with" in self.logged())
        self.refused_handshake("(bad certificate signature|certificate not signed by this aggregator's CA)")

    @defer.inlineCallbacks
    def test_an_expired_certificate_is_refused(self):
        now = pki.now()
        pki.issue_home(self.dir, "home-a", force=True, not_before=now - datetime.timedelta(days=30),
                       not_after=now - datetime.timedelta(days=1))
        cert = self.client_cert(pki.load_private_key(f"{self.dir}/homes/home-a.key"),
                                pki.load_certificate(f"{self.dir}/homes/home-a.pem"))
        options = ssl.optionsForClientTLS("localhost", self.ca_root(), cert)
        answer = yield defer.Deferred.fromCoroutine(self.connect(Home("home-a", "sa"), options))
        self.assertIsNone(answer)
        yield eventually(lambda: "TLS handshake with" in self.logged())
        self.refused_handshake(r"certificate expired \(subject CN home-a\)")

    @defer.inlineCallbacks
    def test_the_aggregators_own_server_certificate_is_no_home_certificate(self):
        cert = self.client_cert(pki.load_private_key(f"{self.dir}/aggregator.key"),
                                pki.load_certificate(f"{self.dir}/aggregator.pem"))
        options = ssl.optionsForClientTLS("localhost", self.ca_root(), cert)
        answer = yield defer.Deferred.fromCoroutine(self.connect(Home("home-a", "sa"), options))
        self.assertIsNone(answer)
        yield eventually(lambda: "TLS handshake with" in self.logged())
        self.refused_handshake("not a client certificate")

    @defer.inlineCallbacks
    def test_certificates_refused_again_and_again_lock_the_address_out(self):
        from jeisson.aggregator.home_link import HomeSession
        from jeisson.limits import Limits
        from jeisson.transports.stream import LineLinkFactory

        strict = LineLinkFactory(wire.MAX_LINE, lambda link: HomeSession(self.aggregator, link),
                                 limits=Limits(lockout_failures=2))
        self.factory = self.server.wrap(strict)
        self.port.stopListening()
        self.port = reactor.listenTCP(0, self.factory, interface="127.0.0.1")
        self.addCleanup(self.port.stopListening)
        now = pki.now()
        key, cert = pki.issue(*reversed(self.ca_pair()), "home-a", [], ExtendedKeyUsageOID.CLIENT_AUTH,
                              not_before=now - datetime.timedelta(days=3), not_after=now - datetime.timedelta(days=1))
        expired = ssl.optionsForClientTLS("localhost", self.ca_root(), self.client_cert(key, cert))
        for _ in range(2):
            answer = yield defer.Deferred.fromCoroutine(self.connect(Home("home-a", "sa"), expired))
            self.assertIsNone(answer)
        yield eventually(lambda: "locked out for 120.0 s after 2 failed authentications" in self.logged())
        # Even the right certificate is turned away from that address now.
        answer = yield defer.Deferred.fromCoroutine(self.connect(Home("home-a", "sa")))
        self.assertIsNone(answer)
        self.assertFalse(self.aggregator.snapshot()["homes"]["home-a"]["connected"])

    def ca_pair(self):
        return pki.load_certificate(f"{self.dir}/ca.pem"), pki.load_private_key(f"{self.dir}/ca.key")

    @defer.inlineCallbacks
    def test_a_revoked_home_is_dropped_while_connected_and_refused_after(self):
        watcher = tls.CRLWatcher(self.server, reactor)
        watcher.startService()
        self.addCleanup(watcher.stopService)
        home = Home("home-r", "sr")
        answer = yield defer.Deferred.fromCoroutine(self.connect(home, settings=self.home_settings("home-r")))
        self.assertTrue(answer.startswith(b"WELCOME "), answer)
        # Another home stays.
        other = Home("home-a", "sa")
        answer = yield defer.Deferred.fromCoroutine(self.connect(other))
        self.assertTrue(answer.startswith(b"WELCOME "), answer)
        serial = pki.revoke_home(self.dir, "home-r")
        yield defer.Deferred.addTimeout(home.lost, 10, reactor)
        self.assertIn("home home-r at 127.0.0.1:", self.logged())
        self.assertIn(f"its certificate (serial {serial:x}) is revoked; dropping the link", self.logged())
        self.assertFalse(other.lost.called)
        again = Home("home-r", "sr")
        answer = yield defer.Deferred.fromCoroutine(self.connect(again, settings=self.home_settings("home-r")))
        self.assertIsNone(answer)
        yield eventually(lambda: "certificate revoked (subject CN home-r)" in self.logged())

    @defer.inlineCallbacks
    def test_a_handshake_is_judged_by_the_revocation_list_in_force_when_it_completes(self):
        """A handshake begun under the old list and finished after the new
        one was read (a stolen key kept a handshake waiting) is refused: the
        list is checked when the home's certificate is judged, not only when
        its connection's context was made."""
        context_before = self.server._context
        serial = pki.revoke_home(self.dir, "home-r")
        # The new list is in force, but connections still start with the old context.
        self.server.revoked = frozenset({serial})
        self.server._context = context_before
        answer = yield defer.Deferred.fromCoroutine(self.connect(Home("home-r", "sr"),
                                                                 settings=self.home_settings("home-r")))
        self.assertIsNone(answer)
        yield eventually(lambda: "certificate revoked (subject CN home-r)" in self.logged())

    @defer.inlineCallbacks
    def test_an_older_revocation_list_is_refused(self):
        older = open(f"{self.dir}/crl.pem", "rb").read()
        serial = pki.revoke_home(self.dir, "home-r")
        self.assertTrue(self.server.reload_crl())
        with open(f"{self.dir}/crl.pem", "wb") as f:
            f.write(older)  # a backup copied back: it would take the revocation back
        self.assertFalse(self.server.reload_crl())
        self.assertEqual(self.server.revoked, {serial})
        self.assertIn("is older (CRL number", self.logged())
        yield None

    @defer.inlineCallbacks
    def test_a_certificate_that_cannot_be_read_is_refused_in_one_line(self):
        """A stranger's self-signed certificate whose name cryptography
        cannot decode: refused, one line, no traceback."""
        from cryptography import x509 as cx509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID

        key = ec.generate_private_key(ec.SECP256R1())
        name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "ZZZZQQ")])
        now = pki.now()
        cert = (cx509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
                .serial_number(7).not_valid_before(now - datetime.timedelta(days=1))
                .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
        der = cert.public_bytes(serialization.Encoding.DER)
        # The subject's CN (after the issuer's) as a PrintableString holding '@', which cryptography cannot read.
        at = der.find(b"ZZZZQQ", der.find(b"ZZZZQQ") + 1)
        der = der[:at - 2] + bytes([0x13, 6]) + b"a@b*c!" + der[at + 6:]
        bad = crypto.dump_certificate(crypto.FILETYPE_PEM, crypto.load_certificate(crypto.FILETYPE_ASN1, der))
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        options = ssl.optionsForClientTLS("localhost", self.ca_root(), ssl.PrivateCertificate.loadPEM(bad + key_pem))
        answer = yield defer.Deferred.fromCoroutine(self.connect(Home("home-a", "sa"), options))
        self.assertIsNone(answer)
        yield eventually(lambda: "TLS handshake with" in self.logged())
        self.assertNotIn("Traceback", self.logged())
        self.assertNotIn("Unhandled", self.logged())

    @defer.inlineCallbacks
    def test_a_bad_new_revocation_list_keeps_the_old_one(self):
        serial = pki.revoke_home(self.dir, "home-r")
        self.assertTrue(self.server.reload_crl())
        self.assertEqual(self.server.revoked, {serial})
        with open(f"{self.dir}/crl.pem", "w") as f:
            f.write("garbage\n")
        self.assertFalse(self.server.reload_crl())
        self.assertEqual(self.server.revoked, {serial})
        self.assertIn("keeping the previous revocation list", self.logged())
        self.assertIn("crl.pem: not a PEM revocation list", self.logged())
        # ... and the old list still holds: home-r is refused, home-a welcomed.
        answer = yield defer.Deferred.fromCoroutine(self.connect(Home("home-r", "sr"),
                                                                 settings=self.home_settings("home-r")))
        self.assertIsNone(answer)
        answer = yield defer.Deferred.fromCoroutine(self.connect(Home("home-a", "sa")))
        self.assertTrue(answer.startswith(b"WELCOME "), answer)

    @defer.inlineCallbacks
    def test_a_tls_1_1_client_is_refused(self):
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_min_proto_version(SSL.TLS1_1_VERSION)
        context.set_max_proto_version(SSL.TLS1_1_VERSION)
        context.set_cipher_list(b"DEFAULT:@SECLEVEL=0")  # let this OpenSSL offer TLS 1.1 at all
        context.use_certificate(pki.load_certificate(f"{self.dir}/homes/home-a.pem"))
        context.use_privatekey(pki.load_private_key(f"{self.dir}/homes/home-a.key"))

        @implementer(IOpenSSLClientConnectionCreator)
        class Legacy:
            def clientConnectionForTLS(self, protocol):
                return SSL.Connection(context, None)

        options = Legacy()
        answer = yield defer.Deferred.fromCoroutine(self.connect(Home("home-a", "sa"), options))
        self.assertIsNone(answer)
        yield eventually(lambda: "TLS handshake with" in self.logged())
        self.refused_handshake("(?i:.*(version|protocol))")

    @defer.inlineCallbacks
    def test_a_hello_for_another_home_than_the_certificate_is_refused(self):
        answer = yield defer.Deferred.fromCoroutine(self.connect(Home("home-b", "sb")))
        self.assertEqual(answer, b'REFUSED {"code":"identity-mismatch","detail":"this connection\'s certificate '
                                 b'is for home \'home-a\', not \'home-b\'"}')
        self.assertRegex(self.logged(), r"refused 127\.0\.0\.1:\d+ claiming to be home home-b: identity-mismatch: "
                                        r"this connection's certificate is for home 'home-a', not 'home-b'")
        self.assertFalse(self.aggregator.snapshot()["homes"]["home-b"]["connected"])

    @defer.inlineCallbacks
    def test_the_home_refuses_an_aggregator_with_the_wrong_name(self):
        home = Home("home-a", "sa")
        answer = yield defer.Deferred.fromCoroutine(self.connect(home, settings=self.home_settings(
            "home-a", name="aggregator.example.net")))
        self.assertIsNone(answer)
        self.assertIn("aggregator.example.net", str(home.reason.value))
        self.assertFalse(self.aggregator.snapshot()["homes"]["home-a"]["connected"])
        self.assertRegex(self.logged(), r"TLS handshake with the aggregator at 127\.0\.0\.1:\d+ failed: its "
                                        r"certificate is not for aggregator\.example\.net \(\[tls\] name\)")

    @defer.inlineCallbacks
    def test_the_home_says_when_the_aggregator_is_not_from_its_ca(self):
        other = os.path.join(scratch_directory(self), "other")
        pki.init(other)
        pki.issue_home(other, "home-a")
        settings = tls.TLSConfig("home.ini", ca=f"{other}/ca.pem", cert=f"{other}/homes/home-a.pem",
                                 key=f"{other}/homes/home-a.key", name="localhost")
        answer = yield defer.Deferred.fromCoroutine(self.connect(Home("home-a", "sa"), settings=settings))
        self.assertIsNone(answer)
        self.assertRegex(self.logged(), r"TLS handshake with the aggregator at 127\.0\.0\.1:\d+ failed: its "
                                        r"certificate is not signed by \[tls\] ca")

    @defer.inlineCallbacks
    def test_the_home_refuses_an_aggregator_from_another_ca(self):
        other = os.path.join(scratch_directory(self), "other")
        pki.init(other)
        home = Home("home-a", "sa")
        # The home trusts only the other CA: this aggregator's certificate is not from it.
        shutil.copy(f"{self.dir}/homes/home-a.pem", f"{other}/home-a.pem")
        options = ssl.optionsForClientTLS("localhost", ssl.Certificate.loadPEM(open(f"{other}/ca.pem", "rb").read()),
                                          self.client_cert(pki.load_private_key(f"{self.dir}/homes/home-a.key"),
                                                           pki.load_certificate(f"{self.dir}/homes/home-a.pem")))
        answer = yield defer.Deferred.fromCoroutine(self.connect(home, options))
        self.assertIsNone(answer)
        self.assertIn("certificate verify failed", str(home.reason.value))
        self.assertFalse(self.aggregator.snapshot()["homes"]["home-a"]["connected"])


# ----------------------------------------------------------- config errors


@pytest.fixture
def folder(tmp_path):
    directory = str(tmp_path / "pki")
    pki.init(directory)
    pki.issue_home(directory, "home-1")
    return directory


def aggregator_ini(tmp_path, tls_text: str, listen: str = "tcp:7700:interface=127.0.0.1") -> str:
    path = tmp_path / "aggregator.ini"
    path.write_text(f"[aggregator]\nlisten = {listen}\n[home:home-1]\nsecret = s\n[store]\npath = none\n{tls_text}")
    return str(path)


def home_ini(tmp_path, tls_text: str, aggregator: str = "tcp:127.0.0.1:7700", home_id: str = "home-1") -> str:
    path = tmp_path / "home.ini"
    path.write_text(f"[home]\nid = {home_id}\nsecret = s\naggregator = {aggregator}\nactuators = tcp:0\n"
                    f"[actuator:b]\nrelays = 1\nkey = none\n[load:lamp]\nactuator = b\nrelay = 1\nrated_w = 60\n"
                    f"{tls_text}")
    return str(path)


def server_tls(path: str) -> tls.ServerTLS:
    from jeisson.aggregator.config import read_config

    config = read_config(path)
    return tls.ServerTLS(tls.require(config.tls, path, "aggregator"))


def client_tls(path: str) -> tls.Loaded:
    from jeisson.home.config import read_config

    config = read_config(path)
    return tls.load_client(tls.require(config.tls, path, "home"), config.id)


def good_aggregator_tls(folder: str, **changes: str) -> str:
    keys = {"ca": f"{folder}/ca.pem", "cert": f"{folder}/aggregator.pem", "key": f"{folder}/aggregator.key",
            "crl": f"{folder}/crl.pem", **changes}
    return "[tls]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items() if v is not None)


def good_home_tls(folder: str, **changes: str) -> str:
    keys = {"ca": f"{folder}/ca.pem", "cert": f"{folder}/homes/home-1.pem", "key": f"{folder}/homes/home-1.key",
            **changes}
    return "[tls]\n" + "".join(f"{k} = {v}\n" for k, v in keys.items() if v is not None)


def test_good_credentials_load_and_relative_paths_are_beside_the_ini(tmp_path, folder):
    shutil.move(folder, tmp_path / "beside")
    text = ("[tls]\nca = beside/ca.pem\ncert = beside/aggregator.pem\nkey = beside/aggregator.key\n"
            "crl = beside/crl.pem\n")
    server = server_tls(aggregator_ini(tmp_path, text))
    assert server.tls.ca == str(tmp_path / "beside" / "ca.pem") and server.revoked == frozenset()
    assert server.warnings == ()


def test_no_tls_section_says_how_to_make_one(tmp_path):
    path = aggregator_ini(tmp_path, "")
    with pytest.raises(ConfigError) as error:
        server_tls(path)
    message = str(error.value)
    assert message.startswith(f"{path}: [tls]: missing section")
    assert f"jeisson pki init {tmp_path}/pki" in message and "crl = pki/crl.pem" in message
    path = home_ini(tmp_path, "")
    with pytest.raises(ConfigError, match=r"(?s)home\.ini: \[tls\]: missing section.*jeisson pki home DIR HOME-ID"):
        client_tls(path)


@pytest.mark.parametrize("change, key, message", [
    ({"cert": "{folder}/nope.pem"}, "cert", "nope.pem: no such file"),
    ({"key": "{folder}"}, "key", "cannot read it"),
    ({"ca": "{folder}/aggregator.key"}, "ca", "not a PEM certificate"),
    ({"ca": "{folder}/aggregator.pem"}, "ca", "not a CA certificate"),
    ({"key": "{folder}/ca.key"}, "key", "not the key of \\[tls\\] cert"),
    ({"cert": "{folder}/homes/home-1.pem", "key": "{folder}/homes/home-1.key"}, "cert",
     "lacks serverAuth"),
    ({"crl": "{folder}/ca.pem"}, "crl", "not a PEM revocation list"),
    ({"crl": None}, "crl", "missing key"),
    ({"cert": ""}, "cert", "must not be empty"),
])
def test_each_aggregator_credential_error_names_the_file_and_key(tmp_path, folder, change, key, message):
    changes = {k: (v.format(folder=folder) if v is not None else None) for k, v in change.items()}
    path = aggregator_ini(tmp_path, good_aggregator_tls(folder, **changes))
    with pytest.raises(ConfigError, match=rf"^{path}: \[tls\] {key}: .*{message}"):
        server_tls(path)


def test_a_certificate_from_another_ca_or_an_expired_one_stops_the_start(tmp_path, folder):
    other = str(tmp_path / "other")
    pki.init(other)
    path = aggregator_ini(tmp_path, good_aggregator_tls(folder, cert=f"{other}/aggregator.pem",
                                                        key=f"{other}/aggregator.key"))
    with pytest.raises(ConfigError, match=rf"^{path}: \[tls\] cert: {other}/aggregator.pem: not signed by the CA"):
        server_tls(path)
    path = aggregator_ini(tmp_path, good_aggregator_tls(folder, crl=f"{other}/crl.pem"))
    with pytest.raises(ConfigError, match=rf"\[tls\] crl: {other}/crl.pem: not signed by the CA"):
        server_tls(path)
    now = pki.now()
    pki.issue_home(folder, "home-1", force=True, not_before=now - datetime.timedelta(days=9),
                   not_after=now - datetime.timedelta(hours=1))
    path = home_ini(tmp_path, good_home_tls(folder))
    with pytest.raises(ConfigError, match=rf"^{path}: \[tls\] cert: {folder}/homes/home-1.pem: expired on "):
        client_tls(path)


def test_a_certificate_expiring_within_30_days_is_warned_of(tmp_path, folder):
    pki.issue_home(folder, "home-1", force=True, days=10)
    path = home_ini(tmp_path, good_home_tls(folder))
    loaded = client_tls(path)
    assert len(loaded.warnings) == 1 and "home-1.pem expires on" in loaded.warnings[0]


def test_a_home_certificate_must_name_this_home(tmp_path, folder):
    pki.issue_home(folder, "home-2")
    path = home_ini(tmp_path, good_home_tls(folder, cert=f"{folder}/homes/home-2.pem",
                                            key=f"{folder}/homes/home-2.key"))
    with pytest.raises(ConfigError, match=r"\[tls\] cert: .*home-2.pem: a certificate for home 'home-2', but "
                                          r"\[home\] id is 'home-1'"):
        client_tls(path)


def test_the_home_expects_the_aggregator_name_of_its_endpoint_unless_told(tmp_path, folder):
    path = home_ini(tmp_path, good_home_tls(folder), aggregator="tcp:agg.example.net:7700")
    assert home_config_from_string(open(path).read(), path).tls.name == "agg.example.net"
    path = home_ini(tmp_path, good_home_tls(folder, name="localhost"), aggregator="tcp:192.0.2.1:7700")
    assert home_config_from_string(open(path).read(), path).tls.name == "localhost"


@pytest.mark.parametrize("role, endpoint, message", [
    ("aggregator", "ssl:7700:privateKey=k.pem", r"\[aggregator\] listen: ssl: endpoints are not used: write a tcp: "
                                                 r"endpoint and say how to secure it in \[tls\]"),
    ("home", "tls:127.0.0.1:7700", r"\[home\] aggregator: tls: endpoints are not used"),
    ("aggregator", "tcp:7700:interface=0.0.0.0", r"\[tls\] plaintext: plaintext only on loopback, and \[aggregator\] "
                                                  r"listen = tcp:7700:interface=0.0.0.0 is not"),
    ("aggregator", "tcp:7700", r"\[tls\] plaintext: plaintext only on loopback"),
    ("home", "tcp:192.0.2.1:7700", r"\[tls\] plaintext: plaintext only on loopback, and \[home\] aggregator"),
])
def test_tls_endpoints_and_plaintext_beyond_loopback_are_refused(tmp_path, role, endpoint, message):
    make = aggregator_ini if role == "aggregator" else home_ini
    path = make(tmp_path, "[tls]\nplaintext = yes\n", endpoint)
    read = config_from_string if role == "aggregator" else home_config_from_string
    with pytest.raises(ConfigError, match=rf"^{path}: {message}"):
        read(open(path).read(), path)


def test_plaintext_on_loopback_is_taken_as_asked_and_alone(tmp_path, folder):
    path = aggregator_ini(tmp_path, "[tls]\nplaintext = yes\n", r"tcp:7700:interface=\:\:1")
    assert config_from_string(open(path).read(), path).tls.plaintext
    path = home_ini(tmp_path, "[tls]\nplaintext = yes\n", "tcp:localhost:7700")
    assert home_config_from_string(open(path).read(), path).tls.plaintext
    path = home_ini(tmp_path, "[tls]\nplaintext = yes\nca = x.pem\n")
    with pytest.raises(ConfigError, match=r"\[tls\] ca: plaintext = yes turns TLS off"):
        home_config_from_string(open(path).read(), path)


def test_an_unknown_tls_key_is_refused_with_the_known_ones(tmp_path, folder):
    path = aggregator_ini(tmp_path, good_aggregator_tls(folder, certificate="x"))
    with pytest.raises(ConfigError, match=r"\[tls\] certificate: unknown key \(known keys here: ca, cert, crl, "
                                          r"crl_poll_s, key, plaintext\)"):
        config_from_string(open(path).read(), path)


def test_the_peer_id_of_a_wire_without_a_transport_is_none():
    class Wire:
        peer = "x"

    assert tls.peer_certificate_id(Wire()) is None


def test_the_crl_watcher_rereads_a_changed_list_on_its_clock(tmp_path, folder):
    settings = tls.TLSConfig(str(tmp_path / "a.ini"), ca=f"{folder}/ca.pem", cert=f"{folder}/aggregator.pem",
                             key=f"{folder}/aggregator.key", crl=f"{folder}/crl.pem", crl_poll_s=5)
    server = tls.ServerTLS(settings)
    clock = Clock()
    watcher = tls.CRLWatcher(server, clock)
    with capturedLogs() as events:
        watcher.startService()
        serial = pki.revoke_home(folder, "home-1")
        os.utime(f"{folder}/crl.pem", ns=(1, 1))  # a change the watcher cannot miss
        assert server.revoked == frozenset()
        clock.advance(5)
        assert server.revoked == {serial}
        os.remove(f"{folder}/crl.pem")
        clock.advance(5)
        assert server.revoked == {serial}
        watcher.stopService()
    text = [formatEvent(e) for e in events]
    assert any("1 revoked, 1 new" in line for line in text), text
    assert any("is gone; keeping the one read before" in line for line in text), text


def test_ini_reading_needs_no_files(tmp_path):
    ini = IniFile("[aggregator]\nlisten = tcp:1\n[tls]\nca = a\ncert = b\nkey = c\ncrl = d\n", str(tmp_path / "x.ini"))
    settings = tls.read_tls(ini, "aggregator", "aggregator", "listen", "tcp:1")
    assert settings is not None and settings.crl == str(tmp_path / "d") and settings.crl_poll_s == tls.CRL_POLL_S


def test_a_private_key_others_may_read_is_warned_of(tmp_path, folder):
    os.chmod(f"{folder}/homes/home-1.key", 0o644)
    loaded = client_tls(home_ini(tmp_path, good_home_tls(folder)))
    assert loaded.warnings == (f"{tmp_path}/home.ini: [tls] key: {folder}/homes/home-1.key can be read by others "
                               f"(mode 0644): chmod 600 {folder}/homes/home-1.key",)
