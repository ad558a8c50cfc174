"""OpenADR 2.0b's simple HTTP, pulled by the VEN over TLS: ``twisted.web.client.Agent``.

``HTTPTransport.post(service, body)`` POSTs one message to one of the VTN's
services and fires with the reply's bytes, or fails with ``VTNError``, whose
``kind`` says what went wrong in the words an operator uses:

``down``
    Nothing answers at the VTN's address (refused, unreachable, no such
    host), or it closed the connection before replying.
``slow``
    No whole reply within ``timeout_s`` (connecting within
    ``connect_timeout_s``): the request is abandoned and its connection
    aborted.
``certificate``
    The VTN's certificate is not signed by ``vtn_ca``, does not name the
    VTN's host (``vtn_name``), or its OpenADR fingerprint is not
    ``vtn_fingerprint``.
``http``
    The VTN answered with an HTTP status other than 200.
``too-big``
    The reply is longer than ``max_reply_bytes``: cut off and refused.

TLS: the VEN's certificate is offered (OpenADR's VTNs require one), TLS 1.2
at least; the VTN is verified against ``vtn_ca`` and its name, and, when
``vtn_fingerprint`` is set, by that fingerprint too (both must hold).  The
connection is kept between polls (a persistent pool), so a poll costs no
handshake while the VTN keeps it open.

Nothing here parses XML: the reply is the VEN's (``jeisson.openadr.ven``).
"""

import ipaddress
from typing import Any

from OpenSSL import SSL, crypto
from service_identity import CertificateError, VerificationError
from service_identity.cryptography import verify_certificate_hostname, verify_certificate_ip_address
from twisted.internet import defer, error, ssl
from twisted.internet.defer import Deferred
from twisted.internet.interfaces import IOpenSSLClientConnectionCreator, IReactorTime
from twisted.internet.protocol import Protocol
from twisted.python.failure import Failure
from twisted.web.client import Agent, HTTPConnectionPool, ResponseDone, ResponseFailed, ResponseNeverReceived
from twisted.web.http import PotentialDataLoss
from twisted.web.http_headers import Headers
from twisted.web.iweb import IBodyProducer, IPolicyForHTTPS
from zope.interface import implementer

from jeisson.openadr.config import OpenADRConfig
from jeisson.openadr.signature import fingerprint

DOWN = "down"
SLOW = "slow"
CERTIFICATE = "certificate"
HTTP = "http"
TOO_BIG = "too-big"
MALFORMED = "malformed"  # raised by the VEN for a reply it cannot read

_OPENSSL_REASONS = {
    2: "its issuer is not vtn_ca",
    10: "it has expired",
    18: "it is self-signed and not vtn_ca",
    19: "its chain ends in a CA that is not vtn_ca",
    20: "it is not signed by vtn_ca",
    21: "it is not signed by vtn_ca",
}


class VTNError(Exception):
    """A request to the VTN that failed, and why (``kind``: see the module)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind

    def __str__(self) -> str:
        return f"{self.kind}: {self.args[0]}"


@implementer(IOpenSSLClientConnectionCreator)
class _VTNCreator:
    """The VEN's TLS client: its certificate offered; the VTN's checked
    against ``vtn_ca``, its name and, if set, ``vtn_fingerprint``, saying
    in ``refused`` why it was not accepted."""

    def __init__(self, config: OpenADRConfig, hostname: str):
        self.config = config
        self.hostname = hostname
        self.refused: str | None = None
        options = ssl.CertificateOptions(
            privateKey=crypto.load_privatekey(crypto.FILETYPE_PEM, config.key_pem),
            certificate=crypto.load_certificate(crypto.FILETYPE_PEM, config.cert_pem),
            trustRoot=ssl.Certificate.loadPEM(config.vtn_ca_pem),
            raiseMinimumTo=ssl.TLSVersion.TLSv1_2,
        )
        self.context = options.getContext()
        self.is_ip = _is_ip(hostname)

    def _verify(self, connection: SSL.Connection, cert: crypto.X509, errno: int, depth: int, ok: int) -> bool:
        try:
            if not ok:
                reason = _OPENSSL_REASONS.get(errno, f"OpenSSL verify error {errno}")
                self.refused = f"the VTN's certificate was refused: {reason} ({self.config.vtn_ca_path})"
                return False
            if depth != 0:
                return True
            try:
                if self.is_ip:
                    verify_certificate_ip_address(cert.to_cryptography(), self.hostname)
                else:
                    verify_certificate_hostname(cert.to_cryptography(), self.hostname)
            except (VerificationError, CertificateError):
                self.refused = (f"the VTN's certificate does not name {self.hostname} ([openadr] vtn_name, or "
                                "vtn_url's host)")
                return False
            if self.config.vtn_fingerprint is not None:
                seen = fingerprint(crypto.dump_certificate(crypto.FILETYPE_ASN1, cert))
                if seen != self.config.vtn_fingerprint:
                    self.refused = (f"the VTN's certificate has the fingerprint {seen}, not vtn_fingerprint "
                                    f"{self.config.vtn_fingerprint}")
                    return False
            return True
        except Exception as e:  # never raise into OpenSSL
            self.refused = f"the VTN's certificate could not be read ({type(e).__name__})"
            return False

    def clientConnectionForTLS(self, tlsProtocol: Any) -> SSL.Connection:
        self.refused = None
        connection = SSL.Connection(self.context, None)
        connection.set_app_data(tlsProtocol)
        if not self.is_ip:
            connection.set_tlsext_host_name(self.hostname.encode("idna"))
        connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT, self._verify)
        return connection


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


@implementer(IPolicyForHTTPS)
class _VTNPolicy:
    def __init__(self, config: OpenADRConfig):
        self.creator = _VTNCreator(config, config.vtn_name)

    def creatorForNetloc(self, hostname: bytes, port: int) -> _VTNCreator:
        return self.creator


_DONE = Failure(error.ConnectionDone())


class _Body(Protocol):
    """A reply's body, refused past ``limit`` bytes."""

    def __init__(self, limit: int, finished: "Deferred[bytes]"):
        self.limit = limit
        self.finished = finished
        self.parts: list[bytes] = []
        self.size = 0
        self.over = False

    def dataReceived(self, data: bytes) -> None:
        if self.over:
            return
        self.size += len(data)
        if self.size > self.limit:
            self.over = True
            self.parts = []
            _stop(self.transport)
            return
        self.parts.append(data)

    def connectionLost(self, reason: Failure = _DONE) -> None:
        if self.finished.called:
            return
        if self.over:
            self.finished.errback(VTNError(TOO_BIG, f"the reply is longer than {self.limit} bytes "
                                                    "([openadr] max_reply_kib): refused"))
        elif reason.check(ResponseDone, PotentialDataLoss):
            self.finished.callback(b"".join(self.parts))
        else:
            self.finished.errback(VTNError(DOWN, f"the reply was cut off ({reason.getErrorMessage()})"))


def _stop(transport: Any) -> None:
    """Abort a reply being read (its connection goes)."""
    if transport is not None:
        transport.stopProducing()


class HTTPTransport:
    """POSTs to the VTN's services; see the module for what can fail."""

    def __init__(self, config: OpenADRConfig, reactor: Any, persistent: bool = True):
        self.config = config
        self.reactor: IReactorTime = reactor
        self.pool = HTTPConnectionPool(reactor, persistent=persistent)
        self.pool.maxPersistentPerHost = 1
        self.policy = _VTNPolicy(config)
        self.agent = Agent(reactor, contextFactory=self.policy, connectTimeout=config.connect_timeout_s,
                           pool=self.pool)

    def post(self, service: str, body: bytes) -> "Deferred[bytes]":
        url = self.config.service_url(service)
        headers = Headers({b"Content-Type": [b"application/xml"]})
        requested = self.agent.request(b"POST", url.encode("ascii"), headers, _Bytes(body))
        reply = requested.addCallback(self._read)
        reply.addTimeout(self.config.timeout_s, self.reactor, onTimeoutCancel=self._slow)
        return reply.addErrback(self._explain, url)

    def _slow(self, result: Any, timeout: float) -> Any:
        """What a request abandoned at ``timeout_s`` fails with (the
        cancellation inside it would otherwise say only "cancelled")."""
        if isinstance(result, Failure):
            return Failure(VTNError(SLOW, f"no reply within {timeout:g} s ([openadr] timeout_s): abandoned"))
        return result

    def _read(self, response: Any) -> "Deferred[bytes]":
        refused = None
        if response.code != 200:
            refused = VTNError(HTTP, f"the VTN answered HTTP {response.code} {response.phrase.decode('latin-1')}")
        elif isinstance(response.length, int) and response.length > self.config.max_reply_bytes:
            refused = VTNError(TOO_BIG, f"the reply is {response.length} bytes, longer than "
                                        f"{self.config.max_reply_bytes} ([openadr] max_reply_kib): refused")
        if refused is not None:
            dropped: Deferred[bytes] = Deferred()
            response.deliverBody(_Drop(refused, dropped))
            return dropped
        body: _Body

        def cancel(_: "Deferred[bytes]") -> None:
            _stop(body.transport)

        finished: Deferred[bytes] = Deferred(cancel)
        body = _Body(self.config.max_reply_bytes, finished)
        response.deliverBody(body)
        return finished

    def _explain(self, failure: Failure, url: str) -> Failure:
        """Every failure as a ``VTNError`` naming the URL."""
        e = failure.value
        if isinstance(e, VTNError):
            return Failure(VTNError(e.kind, f"{url}: {e.args[0]}"))
        if failure.check(defer.TimeoutError, defer.CancelledError):
            return Failure(VTNError(SLOW, f"{url}: no reply within {self.config.timeout_s:g} s ([openadr] timeout_s): "
                                          "abandoned"))
        if failure.check(error.ConnectingCancelledError, error.TimeoutError):
            return Failure(VTNError(SLOW, f"{url}: no connection within {self.config.connect_timeout_s:g} s "
                                          "([openadr] connect_timeout_s)"))
        if failure.check(error.ConnectionRefusedError):
            return Failure(VTNError(DOWN, f"{url}: connection refused: the VTN is not listening"))
        if failure.check(error.DNSLookupError):
            return Failure(VTNError(DOWN, f"{url}: no such host"))
        if failure.check(error.ConnectError):
            return Failure(VTNError(DOWN, f"{url}: cannot connect ({failure.getErrorMessage()})"))
        if failure.check(ResponseNeverReceived, ResponseFailed):
            reasons = getattr(failure.value, "reasons", [])
            for reason in reasons:
                if reason.check(SSL.Error, VerificationError):
                    refused = self.policy.creator.refused
                    if refused is None and reason.check(VerificationError):
                        refused = (f"the VTN's certificate does not name {self.config.vtn_name} "
                                   "([openadr] vtn_name or vtn_url's host)")
                    if refused is None:
                        refused = f"the TLS handshake failed ({reason.getErrorMessage()})"
                    return Failure(VTNError(CERTIFICATE, f"{url}: {refused}"))
            why = ", ".join(r.getErrorMessage() for r in reasons) or failure.getErrorMessage()
            return Failure(VTNError(DOWN, f"{url}: the VTN closed the connection without a reply ({why})"))
        return Failure(VTNError(DOWN, f"{url}: {failure.getErrorMessage()}"))

    def close(self) -> "Deferred[None]":
        """Close the connections kept for the next poll."""
        return self.pool.closeCachedConnections()


class _Drop(Protocol):
    """A reply not read: its body is dropped (its connection aborted if it
    is still coming), and ``finished`` fails with ``error`` once it is."""

    def __init__(self, error: VTNError, finished: "Deferred[bytes]"):
        self.error = error
        self.finished = finished

    def makeConnection(self, transport: Any) -> None:
        _stop(transport)

    def connectionLost(self, reason: Failure = _DONE) -> None:
        if not self.finished.called:
            self.finished.errback(self.error)


@implementer(IBodyProducer)
class _Bytes:
    """A request's body, already whole."""

    def __init__(self, data: bytes):
        self.data = data
        self.length = len(data)

    def startProducing(self, consumer: Any) -> "Deferred[None]":
        consumer.write(self.data)
        return defer.succeed(None)

    def pauseProducing(self) -> None:
        pass

    def resumeProducing(self) -> None:
        pass

    def stopProducing(self) -> None:
        pass
