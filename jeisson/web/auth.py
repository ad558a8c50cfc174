"""Who may use the HTTP API, judged before any resource sees a request.

``Guard.check(request)`` raises ``ApiError`` (401 unauthorized, 403
forbidden) or returns the caller's name.  In order:

1. The ``Host`` header must name the listen address, ``localhost``, a
   loopback address or one of ``[api] hosts``: a page from elsewhere whose
   name resolves to this address (DNS rebinding) is refused.
2. Credentials, when the API needs them (``[api] tls = yes`` or
   ``tokens``; a loopback API without either needs none): a client
   certificate naming an operator (``jeisson pki operator``; the TLS layer
   has checked it against the CA and the revocation list), or a bearer
   token (``Authorization: Bearer ...``, or the ``jeisson_token`` cookie a
   page may set) whose SHA-256 is in the tokens file (reread when it
   changes).
3. Writes (POST, PUT, PATCH, DELETE): with a body, ``Content-Type:
   application/json``, which no HTML form can send; an ``Origin`` header,
   when present, must be this API's own origin (a fetch from another
   site's page is refused even if the browser sent cookies or a
   certificate).

Static pages (the dashboard's files) pass 1 only: they hold no data.
"""

import hmac
import ipaddress
import os
from typing import Any

from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID
from OpenSSL import SSL, crypto
from twisted.internet.interfaces import IOpenSSLServerConnectionCreator
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.protocols.policies import ProtocolWrapper, WrappingFactory
from twisted.protocols.tls import TLSMemoryBIOFactory
from twisted.python.failure import Failure
from zope.interface import implementer

from jeisson import observe, pki
from jeisson.config import ConfigError
from jeisson.limits import ListenerGuard
from jeisson.tls import CIPHERS, TLS13_SUITES, ServerTLS, TLSConfig, _endpoint_parts, _verify, peer_certificate
from jeisson.transports.stream import peer_host
from jeisson.web.config import ApiConfig
from jeisson.web.errors import FORBIDDEN, UNAUTHORIZED, ApiError

WRITES = frozenset({b"POST", b"PUT", b"PATCH", b"DELETE"})
WITH_BODY = frozenset({b"POST", b"PUT", b"PATCH"})
TOKEN_COOKIE = b"jeisson_token"
LOOPBACK_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
# The API's listener, as its ListenerGuard is named: its refusals at accept
# and the requests refused here are counted under one label (/metrics: API).
API_LISTENER = "API listener"
FOREIGN_HOST = "foreign host"
LOCKED_OUT = "locked out"
BAD_TOKEN = "bad token"


def host_of(header: str) -> str:
    """The name in a ``Host`` header, without its port, lowercased
    (``[::1]:8480`` -> ``::1``)."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    if header.count(":") == 1:
        return header.split(":", 1)[0]
    return header


def listen_host(listen: str | None) -> str | None:
    """The interface an endpoint string binds, if it names one."""
    if listen is None:
        return None
    try:
        _, kwargs = _endpoint_parts(listen)
    except Exception:
        return None
    return kwargs.get("interface") or None


# A bad token's 401 waits this long (a callLater: the reactor goes on), so a
# client trying tokens gets one answer a second per connection.
BAD_TOKEN_DELAY_S = 1.0


class SlowRefusal(ApiError):
    """A refusal answered after ``delay_s`` on ``clock`` (at once without one)."""

    def __init__(self, *args: Any, delay_s: float = 0.0, clock: Any = None, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.delay_s = delay_s
        self.clock = clock


_MISSING = (-1, -1)  # TokenFile's stamp while its file is missing


class TokenFile:
    """The tokens file's hashes, read again when its modification time or
    size changes (a token added or deleted takes effect at the next
    request).  A missing file revokes every token (``rm api-tokens`` is the
    natural way to shut the API): no request with a token is admitted until
    it is back, said once in the log.  A file present but unreadable or
    garbled keeps the hashes read before (a transient error, or an editor
    half-way through a write), also said once."""

    log = Logger()

    def __init__(self, path: str):
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._hashes: dict[str, str] = {}  # SHA-256 hex -> name
        self.refresh()

    def refresh(self) -> None:
        try:
            stat = os.stat(self.path)
        except FileNotFoundError:
            if self._stamp != _MISSING:
                self.log.error("API tokens file {path} is missing: every token is refused until it is back",
                               path=self.path)
                self._stamp = _MISSING
                self._hashes = {}
            return
        except OSError as e:
            if self._stamp is not None:
                self.log.error("API tokens file {path} cannot be read ({why}); keeping the tokens read before",
                               path=self.path, why=e.strerror)
                self._stamp = None
            return
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp == self._stamp:
            return
        try:
            self._hashes = {digest: name for digest, name in pki.read_tokens(self.path)}
        except pki.PKIError as e:
            self.log.error("{why}; keeping the tokens read before", why=str(e))
        self._stamp = stamp

    def name_of(self, token: str) -> str | None:
        """The name of a valid token, or None."""
        self.refresh()
        digest = pki.token_hash(token)
        for known, name in self._hashes.items():
            if hmac.compare_digest(known, digest):
                return name or "token"
        return None


def operator_of_request(request: Any) -> str | None:
    """The operator named by the request's client certificate, if any."""
    cert = peer_certificate(getattr(getattr(request, "channel", None), "transport", None))
    if cert is None:
        return None
    try:
        return pki.operator_of(cert)
    except Exception:  # a SAN extension that cannot be read: no operator
        return None


class ApiTLS(ServerTLS):
    """HTTPS for the API with the process's ``[tls]`` credentials: the
    server's certificate, the CA and revocation list that judge clients'.
    ``certificate_required`` False (tokens also accepted): a client may
    come without a certificate and show a token instead; one that shows a
    certificate is still checked against the CA and the list."""

    def __init__(self, tls: TLSConfig, certificate_required: bool = True):
        self.certificate_required = certificate_required
        super().__init__(tls)

    def _make_context(self, crl: Any) -> SSL.Context:
        context = super()._make_context(crl)
        if not self.certificate_required:
            context.set_verify(SSL.VERIFY_PEER, _verify)
        return context


@implementer(IOpenSSLServerConnectionCreator)
class ServerOnlyTLS:
    """HTTPS with a server certificate and key only (``[api] cert``,
    ``key``: a home's API, ``jeisson pki web``): no client certificate is
    asked for; the owner shows a bearer token.  The certificate and key are
    checked at start (``ConfigError`` naming the ini and the key)."""

    def __init__(self, source: str, cert_path: str, key_path: str):
        def refuse(key: str, path: str, why: str) -> ConfigError:
            return ConfigError(f"{source}: [api] {key}: {path}: {why}")

        try:
            cert = pki.load_certificate(cert_path, "the API's certificate")
        except pki.PKIError as e:
            raise refuse("cert", cert_path, str(e)) from None
        try:
            key = pki.load_private_key(key_path, "the API's key")
        except pki.PKIError as e:
            raise refuse("key", key_path, str(e)) from None
        if key.public_key() != cert.public_key():
            raise refuse("key", key_path, f"not the key of [api] cert ({cert_path})")
        try:
            usages = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        except x509.ExtensionNotFound:
            usages = None
        if usages is not None and ExtendedKeyUsageOID.SERVER_AUTH not in usages:
            raise refuse("cert", cert_path, "not a server's certificate (no serverAuth): jeisson pki web DIR NAME")
        context = SSL.Context(SSL.TLS_METHOD)
        context.set_min_proto_version(SSL.TLS1_2_VERSION)
        context.set_cipher_list(CIPHERS.encode())
        context.set_tls13_ciphersuites(TLS13_SUITES)
        context.set_options(SSL.OP_NO_COMPRESSION | SSL.OP_CIPHER_SERVER_PREFERENCE | SSL.OP_NO_RENEGOTIATION)
        context.set_mode(SSL.MODE_RELEASE_BUFFERS)
        context.use_certificate(crypto.X509.from_cryptography(cert))
        context.use_privatekey(crypto.PKey.from_cryptography_key(key))
        context.check_privatekey()
        self._context = context

    def serverConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        return SSL.Connection(self._context, None)

    def wrap(self, factory: Any) -> TLSMemoryBIOFactory:
        return TLSMemoryBIOFactory(self, False, factory)


class _Admitted(ProtocolWrapper):
    """A connection counted by the listener's guard from accept to close;
    one over its limits (or from an address locked out) is aborted at once."""

    host: str | None = None
    admitted = False
    started = False  # made (registered with the factory, its Site protocol connected)

    def makeConnection(self, transport: Any) -> None:
        listener = self.factory.listener
        self.host = peer_host(transport, listener.limits.ipv6_prefix)
        address = transport.getPeer()
        peer = f"{getattr(address, 'host', '?')}:{getattr(address, 'port', '?')}"
        if listener.admit(self.host, peer) is not None:
            transport.abortConnection()
            return
        self.admitted = True
        self.started = True
        super().makeConnection(transport)

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        if self.admitted:
            self.admitted = False
            self.factory.listener.release(self.host)
        if self.started:  # a refused one was never registered, nor its Site protocol connected
            self.started = False
            super().connectionLost(reason)


class LimitedFactory(WrappingFactory):
    """``factory`` (the Site, or its TLS wrapping) under a ``ListenerGuard``:
    connections in all and per address, new ones per minute, lockouts."""

    protocol = _Admitted

    def __init__(self, factory: Any, listener: ListenerGuard):
        super().__init__(factory)
        self.listener = listener


class Guard:
    """The checks of the module, for one process's ``[api]``."""

    log = Logger()

    def __init__(self, config: ApiConfig, tokens: TokenFile | None = None, listener: ListenerGuard | None = None):
        """``listener``: the listener's guard, told of each bad token
        (counted; its 401 is delayed, and no address is locked out for it),
        and asked whether a request's address is locked out by the listener's
        own lockout (refused certificates), a kept-alive connection too."""
        self.config = config
        self.listener = listener
        hosts = set(LOOPBACK_NAMES) | set(config.hosts)
        interface = listen_host(config.listen)
        if interface and interface not in ("0.0.0.0", "::"):
            hosts.add(interface.lower())
        self.hosts = frozenset(hosts)
        self.tokens = tokens if tokens is not None else (TokenFile(config.tokens) if config.tokens else None)
        self.name = listener.name if listener is not None else API_LISTENER

    @classmethod
    def loopback(cls) -> "Guard":
        """No credentials, the loopback names only: tests, and the default."""
        from jeisson.web.config import AGGREGATOR_LISTEN

        return cls(ApiConfig("<default>", AGGREGATOR_LISTEN))

    def host_allowed(self, header: str | None) -> bool:
        if not header:
            return False
        name = host_of(header)
        if name in self.hosts:
            return True
        try:
            return ipaddress.ip_address(name).is_loopback
        except ValueError:
            return False

    def check(self, request: Any, public: bool = False) -> str | None:
        """Raise ``ApiError`` if ``request`` may not go on; else the caller's
        name (None on an API that needs no credentials, or a public page)."""
        host = _header(request, b"host")
        if not self.host_allowed(host):
            observe.connection_refused(self.name, FOREIGN_HOST)
            raise ApiError(403, FORBIDDEN, f"Host {host!r} is not a name this API answers to (its listen address, "
                                           "localhost, or [api] hosts): refused against DNS rebinding")
        if public:
            return None
        if self.listener is not None:
            address = peer_host(request.channel.transport, self.listener.limits.ipv6_prefix)
            if address is not None and self.listener.locked_out(address):
                observe.connection_refused(self.name, LOCKED_OUT)
                raise ApiError(403, FORBIDDEN, f"address {address} is locked out for a while after too many failed "
                                               "authentications")
        who = self.identify(request)
        if request.method in WRITES:
            self.check_write(request, host or "")
        return who

    def identify(self, request: Any) -> str | None:
        if not self.config.needs_credentials:
            return None
        if self.config.tls:
            operator = operator_of_request(request)
            if operator is not None:
                return f"operator {operator}"
        if self.tokens is not None:
            token = _bearer(request)
            if token is not None:
                name = self.tokens.name_of(token)
                if name is not None:
                    return f"token {name}"
                self._failed(request)
                raise SlowRefusal(401, UNAUTHORIZED, "this bearer token is not among the API's tokens",
                                  headers={"WWW-Authenticate": 'Bearer realm="jeisson", error="invalid_token"'},
                                  delay_s=BAD_TOKEN_DELAY_S,
                                  clock=self.listener.clock if self.listener is not None else None)
        ways = []
        if self.config.tls:
            ways.append("a client certificate with role operator (jeisson pki operator DIR NAME)")
        if self.tokens is not None:
            ways.append("a bearer token (Authorization: Bearer ...; jeisson pki token DIR NAME)")
        raise ApiError(401, UNAUTHORIZED, "credentials needed: " + ", or ".join(ways),
                       headers={"WWW-Authenticate": 'Bearer realm="jeisson"'} if self.tokens is not None else {})

    def _failed(self, request: Any) -> None:
        """A bad token: counted in /metrics, its 401 delayed (``SlowRefusal``),
        and NOT counted toward its address's lockout: a lockout would shut
        out the valid credentials from the same address too (every local
        process on a loopback API, every client behind a proxy), and tokens
        are 256-bit random values that guessing does not find."""
        observe.auth_failed(self.name, BAD_TOKEN)

    def check_write(self, request: Any, host: str) -> None:
        if request.method in WITH_BODY:
            kind = (_header(request, b"content-type") or "").split(";", 1)[0].strip().lower()
            if kind != "application/json":
                raise ApiError(403, FORBIDDEN, f"a write needs Content-Type: application/json, got {kind or 'none'!r}"
                                               " (HTML forms from other sites are refused)")
        origin = _header(request, b"origin")
        if origin is not None:
            scheme = "https" if request.isSecure() else "http"
            own = f"{scheme}://{host.strip().lower()}"
            if origin.strip().lower() != own:
                raise ApiError(403, FORBIDDEN, f"Origin {origin!r} is not this API's own ({own}): writes from "
                                               "another site's page are refused")
        fetch_site = _header(request, b"sec-fetch-site")
        if fetch_site is not None and fetch_site.lower() == "cross-site":
            raise ApiError(403, FORBIDDEN, "Sec-Fetch-Site: cross-site: writes from another site's page are refused")


def _header(request: Any, name: bytes) -> str | None:
    value = request.getHeader(name)
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def _bearer(request: Any) -> str | None:
    header = _header(request, b"authorization")
    if header is not None:
        scheme, _, token = header.strip().partition(" ")
        if scheme.lower() == "bearer" and token.strip():
            return token.strip()
        return None
    cookie = request.getCookie(TOKEN_COOKIE)
    if cookie:
        return bytes(cookie).decode("latin-1")
    return None
