"""One twisted.web ``Site`` per process: the JSON API and what others mount.

::

    /api/v1/...        the JSON API: a table of routes (``Routes``), each a
                       handler of a ``Call`` (the request, read) returning a
                       JSON-ready value, a ``Reply`` or a Deferred of either
    /api/v1/stream     mounted: the live push (jeisson.web.push)
    /metrics           mounted: Prometheus (jeisson.web.metrics)
    /, /static/...     mounted: the pages (jeisson.web.dashboard)

``build_site(routes, guard, mounts)`` takes the mounts as a dict keyed by
path (``"/api/v1/stream"``, ``"/metrics"``, ``"/"``) so that a test builds
a Site with or without them.  Every request passes the ``Guard`` first
(jeisson.web.auth); the pages under ``/`` only its Host check.  Errors are
the one body of jeisson.web.errors, for mounted resources' paths too when
the guard refuses.

Handlers are plain functions: they never touch the request, so they are
tested without HTTP; the resource only reads the request into a ``Call``,
dispatches, and writes the reply (or the error) once its Deferred fires,
unless the client went away meanwhile.
"""

import collections
import io
import re
from collections.abc import Callable, Mapping
from typing import Any

import attrs
from twisted.application import strports
from twisted.application.service import IService, MultiService
from twisted.internet.defer import Deferred, maybeDeferred
from twisted.internet.protocol import connectionDone
from twisted.logger import Logger
from twisted.python.failure import Failure
from twisted.web.http import HTTPChannel
from twisted.web.resource import Resource
from twisted.web.server import NOT_DONE_YET, Request, Site

from jeisson import observe
from jeisson.web.auth import API_LISTENER, Guard, SlowRefusal
from jeisson.web.errors import BAD_JSON, INTERNAL, METHOD_NOT_ALLOWED, NOT_FOUND, PHRASES, ApiError, encode

API_PREFIX = "/api/v1"
# The most a request's body may weigh on the wire (a JSON body is refused
# above errors.MAX_BODY with the error body; this stops what would not even
# be read).
MAX_REQUEST_BODY = 1 << 20
JSON = "application/json; charset=utf-8"
CSV = "text/csv; charset=utf-8"


@attrs.frozen
class Reply:
    """A handler's answer when more than ``200`` and a JSON body: its
    status, and either a JSON-ready ``body`` or ``raw`` bytes of
    ``content_type``."""

    body: Any = None
    status: int = 200
    content_type: str = JSON
    raw: bytes | None = None
    headers: Mapping[str, str] = attrs.field(factory=dict)
    # A large body (thousands of homes, rows): encoded in a thread when the
    # Site has one (``build_site(offload=...)``), piece by piece so that the
    # reactor's thread gets the interpreter between pieces.
    offload: bool = False
    # A reply still to be made (many measurement rows): a pure function
    # returning the Reply, run where ``offload`` runs (a thread), else at once.
    build: Callable[[], "Reply"] | None = None


@attrs.frozen
class Call:
    """A request as a handler sees it: method, path parameters, query,
    headers it may need, body bytes."""

    method: str
    path: str
    params: Mapping[str, str] = attrs.field(factory=dict)
    args: Mapping[bytes, list[bytes]] = attrs.field(factory=dict)
    body: bytes = b""
    accept: str = ""
    who: str | None = None  # the caller (operator or token name), when credentials are needed

    def param(self, name: str) -> str:
        return self.params[name]


Handler = Callable[[Call], Any]
_PARAM = re.compile(r"\{(\w+)\}")


@attrs.frozen
class _Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    handler: Handler


class Routes:
    """``(method, path template) -> handler``; templates under ``/api/v1``
    like ``/events/{id}`` (a parameter is one path segment)."""

    def __init__(self) -> None:
        self._routes: list[_Route] = []

    def add(self, method: str, template: str, handler: Handler) -> None:
        regex = "".join(f"(?P<{part[1:-1]}>[^/]+)" if _PARAM.fullmatch(part) else re.escape(part)
                        for part in re.split(r"(\{\w+\})", template))
        self._routes.append(_Route(method.upper(), template, re.compile(regex + r"\Z"), handler))

    def get(self, template: str, handler: Handler) -> None:
        self.add("GET", template, handler)

    def templates(self) -> list[tuple[str, str]]:
        return [(r.method, r.template) for r in self._routes]

    def find(self, method: str, path: str) -> tuple[Handler, dict[str, str]]:
        """The handler and path parameters, or ``ApiError`` 404 / 405."""
        allowed = []
        for route in self._routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            if route.method == method or (method == "HEAD" and route.method == "GET"):
                return route.handler, match.groupdict()
            allowed.append(route.method)
        if allowed:
            raise ApiError(405, METHOD_NOT_ALLOWED, f"{method} is not allowed on {API_PREFIX}{path} (allowed: "
                                                    f"{', '.join(allowed)})", headers={"Allow": ", ".join(allowed)})
        raise ApiError(404, NOT_FOUND, f"no such path: {API_PREFIX}{path}")

    def dispatch(self, call: Call) -> "Deferred[Any]":
        """The handler's answer for ``call``, as a Deferred (errors too)."""
        try:
            handler, params = self.find(call.method, call.path)
        except ApiError:
            return maybeDeferred(_raise)
        return maybeDeferred(handler, attrs.evolve(call, params=params))


def _raise() -> None:
    raise


def write(request: Any, status: int, data: bytes, content_type: str, headers: Mapping[str, str] = {}) -> None:
    request.setResponseCode(status, PHRASES.get(status))
    request.setHeader(b"content-type", content_type.encode())
    request.setHeader(b"cache-control", b"no-store")
    request.setHeader(b"x-content-type-options", b"nosniff")
    for name, value in headers.items():
        request.setHeader(name.encode(), value.encode())
    request.setHeader(b"content-length", str(len(data)).encode())
    if request.method != b"HEAD":
        request.write(data)
    request.finish()


def encode_in_pieces(body: Any) -> bytes:
    """``encode(body)``, a dict's list values item by item: each item's
    encoding is short, and between them another thread may run."""
    if not isinstance(body, dict):
        return encode(body)
    parts = []
    for key, value in body.items():
        if isinstance(value, list):
            inner = b",".join(encode(item) for item in value)
            parts.append(encode(key) + b":[" + inner + b"]")
        else:
            parts.append(encode(key) + b":" + encode(value))
    return b"{" + b",".join(parts) + b"}"


Offload = Callable[..., "Deferred[Any]"]


def write_error(request: Any, error: ApiError) -> None:
    write(request, error.status, encode(error.body()), JSON, error.headers)


class _Refused(Resource):
    """What the guard refused, whatever the path below."""

    isLeaf = True

    def __init__(self, error: ApiError):
        super().__init__()
        self.error = error

    def render(self, request: Any) -> bytes:
        error = self.error
        if isinstance(error, SlowRefusal) and error.clock is not None and error.delay_s > 0:
            call = error.clock.callLater(error.delay_s, self._answer, request)
            request.notifyFinish().addErrback(lambda _: call.cancel() if call.active() else None)
        else:
            write_error(request, error)
        return NOT_DONE_YET  # type: ignore[return-value]  # finished now or later

    def _answer(self, request: Any) -> None:
        if not getattr(request, "_disconnected", False) and not request.finished:
            write_error(request, self.error)


class _Routed(Resource):
    """The rest of the path under ``/api/v1``, answered from the routes."""

    isLeaf = True

    def __init__(self, api: "ApiResource", path: str):
        super().__init__()
        self.api = api
        self.path = path

    def render(self, request: Any) -> int:
        return self.api.answer(request, self.path)


class ApiResource(Resource):
    """``/api/v1``: mounted children by their first segment (``stream``),
    else the routes."""

    log = Logger()

    def __init__(self, routes: Routes, guard: Guard, mounts: Mapping[str, Resource] | None = None,
                 offload: Offload | None = None):
        super().__init__()
        self.routes = routes
        self.guard = guard
        self.mounts = {name.encode(): child for name, child in (mounts or {}).items()}
        self.offload = offload

    def getChild(self, path: bytes, request: Any) -> Resource:
        mounted = self.mounts.get(path)
        if mounted is not None:
            return mounted
        rest = [path, *request.postpath]
        request.postpath = []
        try:
            text = "/" + "/".join(segment.decode("utf-8") for segment in rest)
        except UnicodeDecodeError:
            return _Refused(ApiError(404, NOT_FOUND, "no such path (not UTF-8)"))
        return _Routed(self, text.rstrip("/") or "/")

    def render(self, request: Any) -> int:
        return self.answer(request, "/")

    def answer(self, request: Any, path: str) -> int:
        """Answer ``request`` for ``path`` (below /api/v1) from the routes."""
        try:
            who = getattr(request, "jeisson_who", None)
            call = Call(method=request.method.decode("ascii", "replace"), path=path, args=dict(request.args or {}),
                        body=request.content.read() if request.content is not None else b"",
                        accept=(request.getHeader(b"accept") or b"").decode("latin-1")
                        if isinstance(request.getHeader(b"accept"), bytes) else (request.getHeader(b"accept") or ""),
                        who=who)
        except Exception:
            self.log.failure("reading a request for {path}", path=path)
            write_error(request, ApiError(400, "bad-request", "the request could not be read"))
            return NOT_DONE_YET
        gone: list[bool] = []
        request.notifyFinish().addErrback(lambda _: gone.append(True))
        self.routes.dispatch(call).addCallbacks(self._reply, self._failed, callbackArgs=(request, gone),
                                                errbackArgs=(request, gone, call))
        return NOT_DONE_YET

    def _reply(self, result: Any, request: Any, gone: list[bool]) -> None:
        if gone:
            return
        reply = result if isinstance(result, Reply) else Reply(result)
        if reply.build is not None:
            if self.offload is None:
                self._reply(reply.build(), request, gone)
            else:
                self.offload(reply.build).addCallbacks(self._reply, self._failed, callbackArgs=(request, gone),
                                                       errbackArgs=(request, gone, None))
            return
        if reply.offload and self.offload is not None and reply.raw is None:
            def encoded(data: bytes) -> Reply:
                return attrs.evolve(reply, raw=data, offload=False)

            self.offload(encode_in_pieces, reply.body).addCallback(encoded).addCallbacks(
                self._reply, self._failed, callbackArgs=(request, gone), errbackArgs=(request, gone, None))
            return
        if reply.raw is not None:
            write(request, reply.status, reply.raw, reply.content_type, reply.headers)
        elif reply.status == 204:
            write(request, 204, b"", reply.content_type, reply.headers)
        else:
            write(request, reply.status, encode(reply.body), reply.content_type, reply.headers)

    def _failed(self, failure: Failure, request: Any, gone: list[bool], call: Call | None) -> None:
        if isinstance(failure.value, ApiError):
            error = failure.value
        else:
            self.log.failure("API {method} {path} failed", failure, method=request.method.decode("ascii", "replace"),
                             path=request.uri.decode("utf-8", "replace"))
            error = ApiError(500, INTERNAL, f"internal error: {failure.getErrorMessage()} (logged)")
        if not gone:
            write_error(request, error)


class BoundedRequest(Request):
    """A request whose body may not exceed ``MAX_REQUEST_BODY``: one that
    says it is longer (``Content-Length``), or grows longer chunk by chunk,
    is answered ``413`` and its connection closed, before it fills memory
    or disk (twisted.web would spool it to a temporary file)."""

    _too_large = False

    def gotLength(self, length: int | None) -> None:
        if length is not None and length > MAX_REQUEST_BODY:
            self._refuse(f"the body is {length} bytes; at most {MAX_REQUEST_BODY} are taken")
            return
        super().gotLength(length)

    def handleContentChunk(self, data: bytes) -> None:
        if self._too_large:
            return
        self._received = getattr(self, "_received", 0) + len(data)
        if self._received > MAX_REQUEST_BODY:
            self._refuse(f"the body is over {MAX_REQUEST_BODY} bytes")
            return
        super().handleContentChunk(data)

    def _refuse(self, message: str) -> None:
        self._too_large = True
        self.content = io.BytesIO()
        body = encode(ApiError(413, BAD_JSON, message).body())
        transport: Any = self.channel.transport
        transport.write(b"HTTP/1.1 413 Request Entity Too Large\r\nContent-Type: " + JSON.encode()
                        + b"\r\nConnection: close\r\nContent-Length: " + str(len(body)).encode() + b"\r\n\r\n"
                        + body)
        transport.loseConnection()

    def requestReceived(self, command: bytes, path: bytes, version: bytes) -> None:
        if self._too_large:
            return
        super().requestReceived(command, path, version)


class Root(Resource):
    """``/``: the guard, then ``api/v1``, ``metrics`` and the pages."""

    def __init__(self, api: ApiResource, guard: Guard, metrics: Resource | None = None,
                 pages: Resource | None = None):
        super().__init__()
        self.guard = guard
        self.pages = pages
        v1 = Resource()
        v1.putChild(b"v1", api)
        self.named: dict[bytes, Resource] = {b"api": v1}
        if metrics is not None:
            self.named[b"metrics"] = metrics

    def getChildWithDefault(self, path: bytes, request: Any) -> Resource:
        named = self.named.get(path)
        try:
            request.jeisson_who = self.guard.check(request, public=named is None)
        except ApiError as e:
            return _Refused(e)
        if named is not None:
            return named
        if self.pages is not None:
            if self.pages.isLeaf:  # it reads the whole path itself, as it would at the root
                request.prepath.pop()
                request.postpath.insert(0, path)
                return self.pages
            return self.pages.getChildWithDefault(path, request)
        return _Refused(ApiError(404, NOT_FOUND, f"no such path: /{path.decode('utf-8', 'replace')} (the API is "
                                                 f"under {API_PREFIX})"))

    def render(self, request: Any) -> Any:
        try:
            self.guard.check(request, public=True)
        except ApiError as e:
            return _Refused(e).render(request)
        if self.pages is not None:
            return self.pages.render(request)
        return _Refused(ApiError(404, NOT_FOUND, f"nothing here: the API is under {API_PREFIX}")).render(request)


HEADER_TIMEOUT = "header timeout"
_PLAIN = b"this API speaks plain HTTP: use http://, not https://\n"
PLAIN_HTTP_ONLY = (b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\nContent-Length: "
                   + str(len(_PLAIN)).encode() + b"\r\n\r\n" + _PLAIN)


class DeadlineChannel(HTTPChannel):
    """An HTTP connection that must send a request's line and headers
    within ``header_timeout_s`` of being accepted, or of its previous
    reply's end (an idle kept-alive connection is closed the same way):
    one that trickles a byte now and then cannot hold a slot before any
    credential is read.  Aborted without a log line; counted in /metrics
    (``jeisson_refused_connections_total{listener="API",reason="header timeout"}``).
    Twisted's idle timeout (``timeOut``) still covers the rest."""

    header_timeout_s: float = 10.0
    _deadline: Any = None

    def connectionMade(self) -> None:
        super().connectionMade()
        self._arm()

    def _arm(self) -> None:
        self._disarm()
        if self.header_timeout_s:
            self._deadline = self.callLater(self.header_timeout_s, self._too_slow)

    def _disarm(self) -> None:
        if self._deadline is not None:
            if self._deadline.active():
                self._deadline.cancel()
            self._deadline = None

    def _too_slow(self) -> None:
        self._deadline = None
        observe.connection_refused(API_LISTENER, HEADER_TIMEOUT)
        transport: Any = self.transport
        transport.abortConnection()

    _first = True

    def dataReceived(self, data: bytes) -> None:
        if self._first and data:
            self._first = False
            if data[:1] == b"\x16":  # a TLS handshake record: https:// against this plain-HTTP API
                self._disarm()
                transport: Any = self.transport
                transport.write(PLAIN_HTTP_ONLY)  # read by the client's TLS layer as a bad record
                transport.loseConnection()
                return
        super().dataReceived(data)

    def allHeadersReceived(self) -> None:
        self._disarm()
        super().allHeadersReceived()

    def requestDone(self, request: Any) -> None:
        super().requestDone(request)
        if self.persistent and not self.requests:  # waiting for the next request's headers
            self._arm()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self._disarm()
        super().connectionLost(reason)


class ApiSite(Site):
    """The API's Site: no per-request access log (a client without
    credentials could otherwise write a line per request, without end, to
    the disk the store writes to); each request is counted by its status
    instead (``requests``, read by /metrics as
    ``jeisson_http_requests_total{code}``: a label per status 100-599,
    ``other`` for anything else)."""

    protocol = DeadlineChannel  # type: ignore[assignment]  # HTTP/1.1 only: no HTTP/2 negotiation wanted

    def __init__(self, resource: Resource, header_timeout_s: float = 10.0, **kwargs: Any):
        super().__init__(resource, **kwargs)
        self.header_timeout_s = header_timeout_s
        self.requests: collections.Counter[str] = collections.Counter()

    def buildProtocol(self, addr: Any) -> Any:
        channel = super().buildProtocol(addr)
        if channel is not None:
            channel.header_timeout_s = self.header_timeout_s
        return channel

    def log(self, request: Any) -> None:
        code = getattr(request, "code", None)
        self.requests[str(code) if isinstance(code, int) and 100 <= code <= 599 else "other"] += 1


def build_site(routes: Routes, guard: Guard | None = None, mounts: Mapping[str, Resource] | None = None,
               offload: Offload | None = None) -> Site:
    """A Site for ``routes`` behind ``guard`` (loopback, no credentials, by
    default), with the resources of ``mounts`` at their paths:
    ``"/api/v1/stream"`` (or any ``"/api/v1/NAME"``), ``"/metrics"``,
    ``"/"`` (the pages: ``/`` and every path not otherwise taken).
    ``offload`` (``threads.deferToThread`` in the daemons): where large
    replies are encoded; None: at once, on the calling thread."""
    guard = guard or Guard.loopback()
    mounts = dict(mounts or {})
    below = {path[len(API_PREFIX) + 1:]: child for path, child in mounts.items()
             if path.startswith(API_PREFIX + "/")}
    for name in below:
        if "/" in name or not name:
            raise ValueError(f"mount {API_PREFIX}/{name}: one segment below {API_PREFIX}")
    unknown = set(mounts) - {"/metrics", "/"} - {API_PREFIX + "/" + n for n in below}
    if unknown:
        raise ValueError(f"cannot mount {', '.join(sorted(unknown))}: /metrics, / or {API_PREFIX}/NAME")
    api = ApiResource(routes, guard, below, offload)
    site = ApiSite(Root(api, guard, mounts.get("/metrics"), mounts.get("/")), requestFactory=BoundedRequest,
                   header_timeout_s=guard.config.header_timeout_s)
    site.displayTracebacks = False
    metrics = mounts.get("/metrics")
    if metrics is not None and hasattr(metrics, "http_requests"):
        site.requests = metrics.http_requests  # counted here, shown there
    return site


def api_service(config: Any, site: Site, server_tls: Any = None) -> IService:
    """Listen on ``config.listen`` (an ``ApiConfig``) with ``site``; over
    TLS when ``server_tls`` (a ``jeisson.web.auth`` API TLS creator) is
    given.  ``strports.service``: a port that cannot be bound stops the
    start."""
    top = MultiService()
    factory: Any = site if server_tls is None else server_tls.wrap(site)
    strports.service(config.listen, factory).setServiceParent(top)
    return top
