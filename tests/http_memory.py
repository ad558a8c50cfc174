"""HTTP against a twisted.web ``Site`` in memory: no socket, no reactor.

``request(site, "GET", "/api/v1/status")`` feeds the request's bytes to a
protocol of ``site`` on a ``StringTransport`` and reads what it wrote back
as a ``Response`` (status, headers, body, ``json()``).  A handler whose
answer waits (a store's query, a ``durable()``) answers later: call
``response.read()`` again after advancing the clock or running the store.
"""

import json

from twisted.internet.address import IPv4Address
from twisted.internet.task import Clock
from twisted.internet.testing import StringTransport


class Response:
    def __init__(self, transport: StringTransport, protocol):
        self.transport = transport
        self.protocol = protocol
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.body = b""
        self.read()

    @property
    def done(self) -> bool:
        return self.status is not None

    def read(self) -> "Response":
        raw = self.transport.value()
        head, sep, rest = raw.partition(b"\r\n\r\n")
        if not sep:
            return self
        lines = head.decode("latin-1").split("\r\n")
        self.status = int(lines[0].split(" ", 2)[1])
        self.headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            self.headers[name.strip().lower()] = value.strip()
        length = int(self.headers.get("content-length", len(rest)))
        self.body = rest[:length]
        return self

    def json(self):
        return json.loads(self.body)

    def __repr__(self) -> str:
        return f"<Response {self.status} {self.body[:300]!r}>"


IDLE = Clock()  # the connections' idle timeouts: never run


def request(site, method: str, path: str, body=None, headers: dict[str, str] | None = None,
            host: str = "127.0.0.1:8480", peer: str = "127.0.0.1", secure: bool = False) -> Response:
    """One request on a new connection from ``peer``; ``body``: bytes, or
    anything JSON (sent with Content-Type: application/json unless
    ``headers`` says otherwise)."""
    sent = dict(headers or {})
    data = b""
    if body is not None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        if not isinstance(body, bytes):
            sent.setdefault("Content-Type", "application/json")
    if host is not None:
        sent.setdefault("Host", host)
    sent["Content-Length"] = str(len(data))
    sent.setdefault("Connection", "close")
    lines = [f"{method} {path} HTTP/1.1"] + [f"{k}: {v}" for k, v in sent.items()]
    raw = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + data
    transport = StringTransport(peerAddress=IPv4Address("TCP", peer, 50000),
                                hostAddress=IPv4Address("TCP", "127.0.0.1", 8480))
    protocol = site.buildProtocol(transport.getPeer())
    # Its idle timeout on a clock nobody advances: a StringTransport never
    # reports the connection lost, and the global reactor would keep the
    # call (a later trial test then finds the reactor unclean).
    protocol.callLater = IDLE.callLater
    protocol.makeConnection(transport)
    protocol.dataReceived(raw)
    return Response(transport, protocol)
