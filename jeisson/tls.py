"""Mutual TLS on the aggregator-home link.

The addresses stay endpoint strings (``[aggregator] listen``, ``[home]
aggregator``); the ``[tls]`` section says how to secure them::

    [tls]                      ; the aggregator's
    ca = pki/ca.pem            ; the CA that signs the homes' certificates
    cert = pki/aggregator.pem  ; this aggregator's certificate ...
    key = pki/aggregator.key   ; ... and its key
    crl = pki/crl.pem          ; revoked homes, reread when it changes
    crl_poll_s = 5             ; how often its modification time is checked

    [tls]                      ; a home's
    ca = pki/ca.pem            ; the CA that signed the aggregator's certificate
    cert = pki/homes/home-1.pem
    key = pki/homes/home-1.key
    name = localhost           ; the aggregator's name in its certificate
                               ; (default: the host of [home] aggregator)

Paths are relative to the ini file's folder.  ``plaintext = yes`` (and no
other key) turns TLS off, accepted only when every endpoint involved is on
loopback.  A config without ``[tls]`` is refused at start (``require``).

Reading (``read_tls``) is pure; loading (``load_server``, ``load_client``)
reads and checks the files, each failure a ``ConfigError`` naming the ini
file, the key and the file: absent, unreadable, not PEM, expired, a key that
is not the certificate's, a certificate the CA did not sign.

The server (``ServerTLS``) is pyOpenSSL through Twisted's
``TLSMemoryBIOFactory`` with its own connection creator: TLS 1.2 at least,
ECDHE with AES-GCM or ChaCha20-Poly1305 only, a client certificate required,
verified against the CA and the revocation list, no session resumption (a
resumed session would skip the revocation check).  ``CRLWatcher`` rereads
the list when its file changes; homes whose certificate it now lists are
dropped at once.
"""

import datetime
import ipaddress
import os
from collections.abc import Callable
from typing import Any

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from OpenSSL import SSL, crypto
from service_identity import VerificationError
from twisted.application.internet import TimerService
from twisted.application.service import MultiService
from twisted.internet import endpoints, ssl
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator, IReactorTime, IStreamClientEndpoint
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols.tls import BufferingTLSTransport, TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from jeisson import pki
from jeisson.config import ConfigError, IniFile

SECTION = "tls"
EXPIRY_WARNING = datetime.timedelta(days=30)
CRL_POLL_S = 5.0
# TLS 1.2's suites; TLS 1.3's are all AEAD (AES-GCM, ChaCha20-Poly1305).
CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20:!aNULL:!SHA1"
TLS13_SUITES = b"TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256:TLS_AES_128_GCM_SHA256"

log = Logger()


# --------------------------------------------------------------- config


@attrs.frozen
class TLSConfig:
    """A ``[tls]`` section as written, its paths made absolute.

    ``plaintext``: TLS off (loopback only, checked when read).  ``source``:
    the ini file, for errors.  ``name``: the aggregator's expected name (a
    home's; already defaulted to the endpoint's host).
    """

    source: str
    plaintext: bool = False
    ca: str | None = None
    cert: str | None = None
    key: str | None = None
    crl: str | None = None
    crl_poll_s: float = CRL_POLL_S
    name: str | None = None


def _endpoint_parts(description: str) -> tuple[list[str], dict[str, str]]:
    # Twisted's own splitting of endpoint strings (escapes and all).
    args, kwargs = endpoints._parse(description)
    return [str(a) for a in args], {str(k): str(v) for k, v in kwargs.items()}


def refuse_tls_endpoint(ini: IniFile, section: str, key: str) -> None:
    """Refuse an ``ssl:`` or ``tls:`` endpoint string in ``[section] key``
    (before Twisted's parser tries it): ``[tls]`` says how to secure an
    address."""
    value = ini.raw(section, key, "")
    kind = value.split(":", 1)[0].strip().lower()
    if kind in ("ssl", "tls"):
        raise ini.error(section, key, f"{kind}: endpoints are not used: write a tcp: endpoint and say how to secure "
                                      "it in [tls] (ca, cert, key: see docs/security.rst)")


def server_is_loopback(description: str) -> bool:
    """Whether a server endpoint string listens on loopback only."""
    args, kwargs = _endpoint_parts(description)
    if args[0] == "unix":
        return True
    if args[0] not in ("tcp", "tcp6"):
        return False
    return _is_loopback(kwargs.get("interface", ""))


def client_host(description: str) -> str | None:
    """The host a client endpoint string connects to, if it names one."""
    args, kwargs = _endpoint_parts(description)
    if args[0] not in ("tcp", "tcp6", "host"):
        return None
    return kwargs.get("host") or (args[1] if len(args) > 1 else None)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _path(ini: IniFile, key: str) -> str | None:
    value = ini.raw(SECTION, key, None)
    if value is None:
        return None
    if not value:
        raise ini.error(SECTION, key, "must not be empty: the path of a PEM file")
    return os.path.join(os.path.dirname(os.path.abspath(ini.source)), os.path.expanduser(value))


def read_tls(ini: IniFile, role: str, endpoint_section: str, endpoint_key: str, endpoint: str) -> TLSConfig | None:
    """The ``[tls]`` section of an aggregator's (``role`` "aggregator") or a
    home's ("home") ini file; None when there is none (``require`` refuses
    that at start).  ``endpoint``: the address TLS secures, read from
    ``[endpoint_section] endpoint_key``: an ``ssl:`` or ``tls:`` one is
    refused, and ``plaintext`` is accepted only if it is on loopback."""
    refuse_tls_endpoint(ini, endpoint_section, endpoint_key)
    server = role == "aggregator"
    keys = ["plaintext", "ca", "cert", "key"] + (["crl", "crl_poll_s"] if server else ["name"])
    if not ini.has_section(SECTION):
        for key in keys:
            ini.raw(SECTION, key, None)  # known, for check_unknown's list
        return None
    if ini.boolean(SECTION, "plaintext", False):
        for key in keys[1:]:
            if ini.raw(SECTION, key, None) is not None:
                raise ini.error(SECTION, key, "plaintext = yes turns TLS off: remove this key, or plaintext")
        loopback = server_is_loopback(endpoint) if server else _is_loopback(client_host(endpoint) or "")
        if not loopback:
            raise ini.error(SECTION, "plaintext", f"plaintext only on loopback, and [{endpoint_section}] "
                                                  f"{endpoint_key} = {endpoint} is not (interface=127.0.0.1 or ::1)")
        return TLSConfig(ini.source, plaintext=True)
    paths = {key: _path(ini, key) for key in ("ca", "cert", "key")}
    for key, value in paths.items():
        if value is None:
            raise ini.error(SECTION, key, f"missing key: the path of the {_WHAT[key]} (see docs/security.rst)")
    if server:
        crl = _path(ini, "crl")
        if crl is None:
            raise ini.error(SECTION, "crl", "missing key: the path of the revocation list (crl.pem, as jeisson pki "
                                            "init writes)")
        poll = ini.number(SECTION, "crl_poll_s", CRL_POLL_S, low=0.1, high=3600)
        return TLSConfig(ini.source, ca=paths["ca"], cert=paths["cert"], key=paths["key"], crl=crl, crl_poll_s=poll)
    name = ini.text(SECTION, "name", None) or client_host(endpoint)
    if name is None:
        raise ini.error(SECTION, "name", f"missing key: [{endpoint_section}] {endpoint_key} names no host, so say "
                                         "which name the aggregator's certificate must carry")
    return TLSConfig(ini.source, ca=paths["ca"], cert=paths["cert"], key=paths["key"], name=name)


_WHAT = {"ca": "CA's certificate (ca.pem)", "cert": "certificate", "key": "private key", "crl": "revocation list"}


def require(tls: TLSConfig | None, source: str, role: str) -> TLSConfig:
    """The config's ``[tls]``, or the error that says how to make one."""
    if tls is not None:
        return tls
    if role == "aggregator":
        lines = "ca = pki/ca.pem\n  cert = pki/aggregator.pem\n  key = pki/aggregator.key\n  crl = pki/crl.pem"
    else:
        lines = "ca = pki/ca.pem\n  cert = pki/homes/HOME-ID.pem\n  key = pki/homes/HOME-ID.key"
    raise ConfigError(
        f"{source}: [tls]: missing section: the {role} speaks TLS only. Make credentials with\n"
        f"  jeisson pki init {os.path.join(os.path.dirname(source) or '.', 'pki')}"
        + ("" if role == "aggregator" else " (once), then jeisson pki home DIR HOME-ID")
        + f"\nand add to {source}:\n  [tls]\n  {lines}\n"
        "(or, for a lab on loopback only, [tls] plaintext = yes)")


# -------------------------------------------------------------- loading


@attrs.frozen
class Loaded:
    """Credentials read and checked: what TLS needs, in pyOpenSSL's and
    cryptography's forms, and warnings for the log (expiring soon)."""

    ca: x509.Certificate
    cert: x509.Certificate
    key: Any  # cryptography private key
    warnings: tuple[str, ...] = ()


def _error(tls: TLSConfig, key: str, path: str, message: str) -> ConfigError:
    return ConfigError(f"{tls.source}: [{SECTION}] {key}: {path}: {message}")


def _read_bytes(tls: TLSConfig, key: str, path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise _error(tls, key, path, f"no such file (the {_WHAT[key]})") from None
    except OSError as e:
        raise _error(tls, key, path, f"cannot read it: {e.strerror}") from None


def _certificate(tls: TLSConfig, key: str, path: str, at: datetime.datetime, warnings: list[str]) -> x509.Certificate:
    try:
        cert = x509.load_pem_x509_certificate(_read_bytes(tls, key, path))
    except ValueError:
        raise _error(tls, key, path, "not a PEM certificate") from None
    if at < cert.not_valid_before_utc:
        raise _error(tls, key, path, f"not valid before {cert.not_valid_before_utc:%Y-%m-%d %H:%M:%S}Z")
    if at >= cert.not_valid_after_utc:
        raise _error(tls, key, path, f"expired on {cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S}Z: issue a new one "
                                     "(jeisson pki)")
    if cert.not_valid_after_utc - at < EXPIRY_WARNING:
        warnings.append(f"{tls.source}: [{SECTION}] {key}: {path} expires on "
                        f"{cert.not_valid_after_utc:%Y-%m-%d %H:%M:%S}Z: issue a new one soon")
    return cert


def _load(tls: TLSConfig, usage: x509.ObjectIdentifier, at: datetime.datetime | None) -> tuple[Loaded, list[str]]:
    assert tls.ca is not None and tls.cert is not None and tls.key is not None
    at = at or pki.now()
    warnings: list[str] = []
    ca = _certificate(tls, "ca", tls.ca, at, warnings)
    try:
        constraints = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        constraints = None
    if constraints is None or not constraints.ca:
        raise _error(tls, "ca", tls.ca, "not a CA certificate (no basicConstraints CA:TRUE)")
    cert = _certificate(tls, "cert", tls.cert, at, warnings)
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise _error(tls, "cert", tls.cert, f"not signed by the CA in [{SECTION}] ca ({tls.ca})") from None
    try:
        usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        usages = None
    if usages is not None and usage not in usages:
        wanted = "serverAuth (an aggregator's)" if usage == ExtendedKeyUsageOID.SERVER_AUTH else "clientAuth (a home's)"
        raise _error(tls, "cert", tls.cert, f"not a certificate for this role: its extendedKeyUsage lacks {wanted}")
    try:
        key = serialization.load_pem_private_key(_read_bytes(tls, "key", tls.key), password=None)
    except (ValueError, TypeError):
        raise _error(tls, "key", tls.key, "not an unencrypted PEM private key") from None
    if key.public_key() != cert.public_key():
        raise _error(tls, "key", tls.key, f"not the key of [{SECTION}] cert ({tls.cert})")
    mode = os.stat(tls.key).st_mode & 0o777
    if mode & 0o077:
        warnings.append(f"{tls.source}: [{SECTION}] key: {tls.key} can be read by others (mode {mode:04o}): "
                        f"chmod 600 {tls.key}")
    return Loaded(ca, cert, key, tuple(warnings)), warnings


def load_crl(tls: TLSConfig, ca: x509.Certificate, at: datetime.datetime | None = None,
             ) -> x509.CertificateRevocationList:
    """The revocation list, checked: PEM, signed by the CA, not past its next update."""
    assert tls.crl is not None
    try:
        crl = x509.load_pem_x509_crl(_read_bytes(tls, "crl", tls.crl))
    except ValueError:
        raise _error(tls, "crl", tls.crl, "not a PEM revocation list (X509 CRL)") from None
    public = ca.public_key()
    if crl.issuer != ca.subject or not crl.is_signature_valid(public):  # type: ignore[arg-type]
        raise _error(tls, "crl", tls.crl, f"not signed by the CA in [{SECTION}] ca ({tls.ca})")
    at = at or pki.now()
    if crl.next_update_utc is not None and at >= crl.next_update_utc:
        raise _error(tls, "crl", tls.crl, f"out of date since {crl.next_update_utc:%Y-%m-%d %H:%M:%S}Z: every home "
                                          "would be refused; reissue it (jeisson pki revoke)")
    return crl


def load_client(tls: TLSConfig, home_id: str, at: datetime.datetime | None = None) -> Loaded:
    """A home's credentials, checked; its certificate must name ``home_id``."""
    loaded, _ = _load(tls, ExtendedKeyUsageOID.CLIENT_AUTH, at)
    named = pki.home_id_of(loaded.cert)
    if named != home_id:
        assert tls.cert is not None
        raise _error(tls, "cert", tls.cert, f"a certificate for home {named!r}, but [home] id is {home_id!r}")
    return loaded


# --------------------------------------------------------------- client


def client_options(tls: TLSConfig, loaded: Loaded) -> Any:
    """The home's TLS options: the aggregator verified against the CA and
    ``name``, this home's certificate offered, TLS 1.2 at least."""
    assert tls.name is not None
    key_pem = loaded.key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption())
    cert_pem = loaded.cert.public_bytes(serialization.Encoding.PEM)
    return ssl.optionsForClientTLS(
        tls.name,
        trustRoot=ssl.Certificate.loadPEM(loaded.ca.public_bytes(serialization.Encoding.PEM)),
        clientCertificate=ssl.PrivateCertificate.loadPEM(cert_pem + key_pem),
        extraCertificateOptions={
            "raiseMinimumTo": ssl.TLSVersion.TLSv1_2,
            "acceptableCiphers": ssl.AcceptableCiphers.fromOpenSSLCipherString(CIPHERS),
        },
    )


def client_endpoint(reactor: Any, description: str, tls: TLSConfig, loaded: Loaded | None) -> IStreamClientEndpoint:
    """The ``[home] aggregator`` endpoint, wrapped in TLS unless plaintext
    (as ``wrapClientTLS`` does, with a protocol that says why a handshake
    failed)."""
    endpoint = endpoints.clientFromString(reactor, description)
    if tls.plaintext:
        return endpoint
    assert loaded is not None and tls.name is not None
    return TLSClientEndpoint(client_options(tls, loaded), endpoint, tls.name)


class AggregatorTLSProtocol(BufferingTLSTransport):
    """The home's TLS connection to its aggregator: says why when the
    handshake fails (the operator sees it in the home's log)."""

    expected_name = "?"

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self._handshakeDone:
            failure = self._reason or reason
            if failure.check(VerificationError):
                why = (f"its certificate is not for {self.expected_name} ([tls] name): "
                       f"{failure.getErrorMessage()}")
            elif "certificate verify failed" in failure.getErrorMessage():
                why = "its certificate is not signed by [tls] ca, or has expired"
            else:
                why = failure.getErrorMessage()
            log.warn("TLS handshake with the aggregator at {peer} failed: {why}", peer=_peer(self), why=why)
        super().connectionLost(reason)


@implementer(IStreamClientEndpoint)
class TLSClientEndpoint:
    """``endpoint``'s connections over TLS (``AggregatorTLSProtocol``)."""

    def __init__(self, creator: Any, endpoint: IStreamClientEndpoint, expected_name: str):
        self.creator = creator
        self.endpoint = endpoint
        self.expected_name = expected_name

    def connect(self, protocolFactory: Any) -> Any:
        factory = TLSMemoryBIOFactory(self.creator, True, protocolFactory)
        name = self.expected_name
        factory.protocol = type("NamedAggregatorTLSProtocol", (AggregatorTLSProtocol,), {"expected_name": name})
        connected: Any = self.endpoint.connect(factory)
        return connected.addCallback(lambda protocol: protocol.wrappedProtocol)


# --------------------------------------------------------------- server


# OpenSSL's X509_V_ERR codes a refused home most often meets, for the log.
_VERIFY_ERRORS = {
    9: "certificate not yet valid", 10: "certificate expired", 18: "self-signed certificate",
    26: "not a client certificate (its purpose)",
    19: "self-signed certificate in chain", 20: "certificate not signed by this aggregator's CA",
    21: "certificate not signed by this aggregator's CA", 23: "certificate revoked",
    7: "bad certificate signature", 11: "revocation list not yet valid", 12: "revocation list expired",
    3: "no revocation list",
}


class HomeTLSProtocol(BufferingTLSTransport):
    """A home's TLS connection: says why when its handshake fails.

    Under the listener's guard (``jeisson.limits``, the wrapped
    ``LineLinkFactory``'s ``guard``, when it has one): the line is within
    the listener's log budget or counted in its summary.  (The ``LineLink``
    counts a refused handshake as a failed authentication toward its
    address's lockout.)
    """

    verify_error: str | None = None

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if not self._handshakeDone:  # Twisted's own flag: the handshake never completed
            why = self.verify_error or (self._reason or reason).getErrorMessage()
            peer = _peer(self)
            guard = getattr(self.factory.wrappedFactory, "guard", None)
            if guard is None or guard.may_log(peer):
                log.warn("TLS handshake with {peer} failed: {why}", peer=peer, why=why)
        super().connectionLost(reason)


def _peer(protocol: Any) -> str:
    try:
        address = protocol.transport.getPeer()
        return f"{address.host}:{address.port}"
    except Exception:
        return "?"


@implementer(IOpenSSLServerConnectionCreator)
class ServerTLS:
    """The aggregator's TLS: a pyOpenSSL context built from the checked
    credentials and the current revocation list, rebuilt when that changes."""

    def __init__(self, tls: TLSConfig, at: datetime.datetime | None = None):
        self.tls = tls
        self.loaded, warnings = _load(tls, ExtendedKeyUsageOID.SERVER_AUTH, at)
        self.warnings = tuple(warnings)
        self.crl = load_crl(tls, self.loaded.ca, at)
        self.revoked = frozenset(entry.serial_number for entry in self.crl)
        self._context = self._make_context(self.crl)
        self.factories: list[TLSMemoryBIOFactory] = []

    def _make_context(self, crl: x509.CertificateRevocationList) -> SSL.Context:
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_cipher_list(CIPHERS.encode())
        context.set_tls13_ciphersuites(TLS13_SUITES)
        context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_TICKET
                            | SSL.OP_NO_RENEGOTIATION)
        # No resumption: a resumed session would skip the revocation check.
        context.set_session_cache_mode(SSL.SESS_CACHE_OFF)
        # Idle connections give their read and write buffers back (most of
        # what OpenSSL holds per connection between lines).
        context.set_mode(SSL.MODE_RELEASE_BUFFERS)
        context.use_certificate(self.loaded.cert)
        context.use_privatekey(self.loaded.key)
        context.check_privatekey()
        store = context.get_cert_store()
        assert store is not None
        store.add_cert(crypto.X509.from_cryptography(self.loaded.ca))  # it takes no cryptography certificate
        store.add_crl(crl)
        store.set_flags(crypto.X509StoreFlags.CRL_CHECK)
        context.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, _verify)
        return context

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        connection = SSL.Connection(self._context, None)
        connection.set_app_data(tlsProtocol)
        # Its handshake is judged by the revocation list in force when it
        # completes, not the one its context was made with (``_judge``).
        tlsProtocol.server_tls = self
        return connection

    def reload_crl(self) -> bool:
        """Read the revocation list again; False (logged, the old one kept)
        when the new one cannot be used.  Homes it newly revokes are dropped."""
        try:
            crl = load_crl(self.tls, self.loaded.ca)
            context = self._make_context(crl)
        except ConfigError as e:
            log.error("keeping the previous revocation list: {error}", error=str(e))
            return False
        except Exception:
            log.failure("keeping the previous revocation list: {path} cannot be used", path=self.tls.crl)
            return False
        older = _crl_number(crl) < _crl_number(self.crl)
        if older:
            log.error("keeping the previous revocation list: {path} is older (CRL number {new}) than the one in "
                      "force ({old}); an older list would take revocations back", path=self.tls.crl,
                      new=_crl_number(crl), old=_crl_number(self.crl))
            return False
        revoked = frozenset(entry.serial_number for entry in crl)
        added = revoked - self.revoked
        self.crl, self.revoked, self._context = crl, revoked, context
        log.info("revocation list {path} read: {count} revoked, {added} new", path=self.tls.crl, count=len(revoked),
                 added=len(added))
        if added:
            self.drop_revoked()
        return True

    def drop_revoked(self) -> int:
        """Abort every connection whose certificate is revoked; how many."""
        dropped = 0
        for factory in self.factories:
            for protocol in list(factory.protocols):
                cert = protocol.getPeerCertificate() if protocol._handshakeDone else None
                if cert is None or cert.get_serial_number() not in self.revoked:
                    continue
                log.warn("{holder} at {peer}: its certificate (serial {serial:x}) is revoked; dropping the link",
                         holder=certificate_holder(cert.to_cryptography()), peer=_peer(protocol),
                         serial=cert.get_serial_number())
                protocol.abortConnection()
                dropped += 1
        return dropped

    def wrap(self, factory: Any) -> TLSMemoryBIOFactory:
        """``factory``'s connections over TLS (``HomeTLSProtocol``)."""
        wrapped = TLSMemoryBIOFactory(self, False, factory)
        wrapped.protocol = HomeTLSProtocol
        self.factories.append(wrapped)
        return wrapped


def _verify(connection: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
    """OpenSSL's verdict on each certificate of the chain, and the home's own
    must be for a client (a server certificate from the same CA is not) and
    not revoked by the list in force now (a handshake begun before the list
    was read again is judged by the new one).  Never raises: a stranger's
    certificate that cannot even be read is refused as such."""
    try:
        return _judge(connection, cert, errno, depth, ok)
    except Exception as e:
        protocol = connection.get_app_data()
        if protocol is not None and protocol.verify_error is None:
            protocol.verify_error = f"unreadable certificate ({type(e).__name__}: {str(e)[:80]})"
        return False


def _subject(cert: crypto.X509) -> str:
    """The certificate's common name for a log line, as text whatever it holds."""
    try:
        names = cert.to_cryptography().subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    except Exception:
        return "(unreadable)"
    name = str(names[0].value) if names else ""
    return repr(name)[1:-1][:64] if name else "(none)"


def _judge(connection: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
    protocol = connection.get_app_data()
    if not ok:
        if protocol is not None and protocol.verify_error is None:
            why = _VERIFY_ERRORS.get(errno, f"verify error {errno}")
            protocol.verify_error = f"{why} (subject CN {_subject(cert)})"
        return False
    if depth == 0:
        server = getattr(protocol, "server_tls", None)
        revoked = server.revoked if server is not None else frozenset()
        if cert.get_serial_number() in revoked:
            if protocol is not None:
                protocol.verify_error = f"certificate revoked (subject CN {_subject(cert)})"
            return False
        certificate = cert.to_cryptography()
        try:
            usages = certificate.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            usages = None
        if usages is not None and ExtendedKeyUsageOID.CLIENT_AUTH not in usages:
            if protocol is not None:
                protocol.verify_error = f"not a client certificate (subject CN {_subject(cert)})"
            return False
    return True


def _crl_number(crl: x509.CertificateRevocationList) -> int:
    """The list's CRL number (0 without one)."""
    try:
        return int(crl.extensions.get_extension_for_class(x509.CRLNumber).value.crl_number)
    except x509.ExtensionNotFound:
        return 0


class CRLWatcher(TimerService):
    """Rereads the revocation list when its file's modification time or
    size changes, on the reactor's clock."""

    log = Logger()

    def __init__(self, server: ServerTLS, clock: IReactorTime):
        assert server.tls.crl is not None
        self.server = server
        self.path = server.tls.crl
        self._seen = self._stamp()
        super().__init__(server.tls.crl_poll_s, self.check)
        self.clock = clock

    def _stamp(self) -> tuple[int, int] | None:
        try:
            stat = os.stat(self.path)
        except OSError:
            return None
        return stat.st_mtime_ns, stat.st_size

    def check(self) -> None:
        try:
            stamp = self._stamp()
            if stamp == self._seen:
                return
            self._seen = stamp
            if stamp is None:
                self.log.error("revocation list {path} is gone; keeping the one read before", path=self.path)
                return
            self.server.reload_crl()
        except Exception:  # a TimerService stops for good after one exception
            self.log.failure("checking the revocation list {path}", path=self.path)


def server_service(tls: TLSConfig, listen: str, factory: Any, clock: IReactorTime,
                   server: ServerTLS | None = None) -> MultiService:
    """Listen on ``listen`` over TLS (or plaintext, if so configured), and
    watch the revocation list."""
    from twisted.application import strports

    top = MultiService()
    if tls.plaintext:
        strports.service(listen, factory).setServiceParent(top)
        return top
    server = server or ServerTLS(tls)
    strports.service(listen, server.wrap(factory)).setServiceParent(top)
    CRLWatcher(server, clock).setServiceParent(top)
    return top


# ------------------------------------------------------------- identity


def peer_certificate(transport: Any) -> x509.Certificate | None:
    """The certificate the peer of ``transport`` showed, as cryptography's;
    None when it carries none (plaintext, no handshake yet, no transport at
    all) or one that cannot be read."""
    get = getattr(transport, "getPeerCertificate", None)
    if get is None:
        return None
    try:
        cert = get()
        if cert is None:
            return None
        if isinstance(cert, ssl.Certificate):  # twisted's wrapping, as an ISSLTransport may give it
            cert = cert.original
        return cert.to_cryptography()
    except Exception:
        return None


def certificate_holder(cert: x509.Certificate) -> str:
    """Who a certificate is for, for a log line: ``home ID``, ``operator
    NAME``, else its subject."""
    operator = pki.operator_of(cert)
    if operator is not None:
        return f"operator {operator}"
    home = pki.home_id_of(cert)
    if home is not None:
        return f"home {home}"
    return f"certificate {cert.subject.rfc4514_string()}"


def peer_certificate_id(link: Any) -> str | None:
    """The home id in the certificate of the peer of ``link`` (a
    ``LineLink``): None when the wire carries no certificate (plaintext, or
    a wire without a transport); "" when it carries one naming no home."""
    cert = peer_certificate(getattr(link, "transport", None))
    if cert is None:
        return None
    return pki.home_id_of(cert) or ""


def log_warnings(warnings: tuple[str, ...] | list[str], emit: Callable[[str], None] | None = None) -> None:
    for warning in warnings:
        (emit or (lambda text: log.warn("{warning}", warning=text)))(warning)
