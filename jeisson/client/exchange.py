"""One HTTP request from the ``jeisson`` command to a jeisson API, and what
its answer means.

The command is a short-lived process, not a reactor: it sends one request
with the standard library's ``http.client`` (blocking, with a timeout) and
exits.  What can be decided without a socket is pure and tested as such:

- ``Request`` says what to ask (method, path under the API's base, query,
  JSON body, wanted type) and spells its own target and headers;
- ``api_target`` reads the ``--api`` URL; ``tls_context`` and
  ``read_token`` read the credentials, each naming the file that is wrong;
- ``judge`` turns a ``Reply`` into the reply or the error the contract's
  error body says (``{"error": {"status", "code", "field", "message"}}``),
  and ``json_of`` reads a reply's JSON.

Only ``send`` touches the network; what can go wrong there (connection
refused, TLS, timeout, a port that does not speak HTTP) becomes an
``Unreachable`` naming the URL.

Every error is a ``ClientError`` carrying the command's exit code:

=====  ==============================================================
0      done
1      the API said no (4xx): ``Refused``, with the API's message
2      usage: the command line or a credentials file (``UsageProblem``)
3      the API cannot be reached: ``Unreachable``
4      the API failed (5xx, or an answer that is not what it promises):
       ``ServerFailed``
=====  ==============================================================
"""

import http.client
import ipaddress
import json
import socket
import ssl
from typing import Any
from urllib.parse import urlencode, urlsplit

import attrs

EXIT_OK = 0
EXIT_REFUSED = 1
EXIT_USAGE = 2
EXIT_UNREACHABLE = 3
EXIT_SERVER = 4

DEFAULT_API = "http://127.0.0.1:8480"
BASE = "/api/v1"
DEFAULT_TIMEOUT_S = 10.0


class ClientError(Exception):
    """What stops a command: its message (one line, said on stderr) and the
    command's exit code; ``body`` is the API's error body when it sent one
    (``--json`` prints it)."""

    exit_code = EXIT_SERVER

    def __init__(self, message: str, body: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.body = body


class UsageProblem(ClientError):
    """The command line (or a file it names) is wrong: nothing was sent."""

    exit_code = EXIT_USAGE


class Refused(ClientError):
    """The API answered 4xx."""

    exit_code = EXIT_REFUSED


class Unreachable(ClientError):
    """No answer: connection refused, TLS failure, timeout, not HTTP."""

    exit_code = EXIT_UNREACHABLE


class ServerFailed(ClientError):
    """The API answered 5xx, or something it does not promise."""

    exit_code = EXIT_SERVER


@attrs.frozen
class Target:
    """Where the API is: ``url`` as the user gave it (for messages), and
    the parts ``http.client`` wants.  ``prefix`` is the URL's path, kept
    for an API behind a reverse proxy at a sub-path."""

    url: str
    scheme: str
    host: str
    port: int
    prefix: str

    @property
    def loopback(self) -> bool:
        if self.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return False


def api_target(url: str) -> Target:
    """Read an ``--api`` URL (``http://127.0.0.1:8480``,
    ``https://aggregator.example:8480/jeisson``)."""
    text = url.strip()
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as e:
        raise UsageProblem(f"--api {url!r}: not a URL: {e}") from None
    if parts.scheme not in ("http", "https"):
        raise UsageProblem(f"--api {url!r}: expected an http:// or https:// URL (like {DEFAULT_API})")
    if not parts.hostname:
        raise UsageProblem(f"--api {url!r}: no host in the URL (like {DEFAULT_API})")
    if parts.query or parts.fragment:
        raise UsageProblem(f"--api {url!r}: give the API's base URL, without ?query or #fragment")
    default_port = 443 if parts.scheme == "https" else 80
    return Target(url=text.rstrip("/"), scheme=parts.scheme, host=parts.hostname, port=port or default_port,
                  prefix=parts.path.rstrip("/"))


def tls_context(ca: str | None, cert: str | None, key: str | None) -> ssl.SSLContext:
    """A client's TLS: the server checked against ``ca`` (the system's
    authorities without it) and its name, and a client certificate when
    ``cert`` and ``key`` are given (an operator's, from
    ``jeisson pki operator``).  A file that cannot be read is named."""
    if (cert is None) != (key is None):
        raise UsageProblem("--cert and --key go together (a client certificate and its key)")
    try:
        context = ssl.create_default_context(cafile=ca)
    except (OSError, ssl.SSLError) as e:
        raise UsageProblem(f"--ca {ca}: cannot read it as PEM certificates: {_reason(e)}") from None
    if cert is not None and key is not None:
        try:
            context.load_cert_chain(cert, key)
        except (OSError, ssl.SSLError) as e:
            raise UsageProblem(f"--cert {cert} --key {key}: cannot read them as a certificate and its key:"
                               f" {_reason(e)}") from None
    return context


def read_token(path: str) -> str:
    """The bearer token in ``path`` (``jeisson pki token`` printed it):
    its first line, without spaces around it."""
    try:
        with open(path, encoding="utf-8") as f:
            token = f.readline().strip()
    except (OSError, UnicodeDecodeError) as e:
        raise UsageProblem(f"--token-file {path}: cannot read it: {_reason(e)}") from None
    if not token:
        raise UsageProblem(f"--token-file {path}: empty (the token is its first line)")
    return token


def _reason(e: BaseException) -> str:
    if isinstance(e, ssl.SSLError) and e.reason:
        return str(e.reason).replace("_", " ").lower()
    if isinstance(e, OSError) and e.strerror:
        return e.strerror.lower()
    return str(e)


@attrs.frozen
class Request:
    """One request: ``path`` under the API's base (``/status``)."""

    method: str
    path: str
    query: tuple[tuple[str, str], ...] = ()
    body: dict[str, Any] | None = None
    accept: str = "application/json"

    def target(self, prefix: str = "") -> str:
        """The request's target: the URL's path, the base, the path, the query."""
        query = f"?{urlencode(self.query)}" if self.query else ""
        return f"{prefix}{BASE}{self.path}{query}"

    def payload(self) -> bytes | None:
        return None if self.body is None else json.dumps(self.body).encode("utf-8")

    def headers(self, token: str | None) -> dict[str, str]:
        """The API wants a JSON type on writes (a cross-site form cannot
        send it) and no Origin from a command; a token goes as Bearer."""
        headers = {"Accept": self.accept, "User-Agent": "jeisson-command"}
        if self.body is not None:
            headers["Content-Type"] = "application/json"
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return headers


@attrs.frozen
class Reply:
    """An answer: ``headers`` with their names in lower case."""

    status: int
    reason: str
    content_type: str
    body: bytes
    headers: dict[str, str] = attrs.field(factory=dict)

    def header(self, name: str) -> str | None:
        return self.headers.get(name.lower())


def judge(reply: Reply, what: str, options: dict[str, str] | None = None) -> Reply:
    """``reply`` itself when it is a success; else the ``ClientError`` its
    status and error body say.  ``what`` names the request in messages
    (``GET http://127.0.0.1:8480/api/v1/status``); ``options`` maps the
    API's field names to the command's options (``limit_kw`` to
    ``--limit-kw``), so that a refused field is named as it was typed."""
    if 200 <= reply.status < 300:
        return reply
    body = _error_body(reply)
    if body is not None:
        error = body["error"]
        field = error.get("field")
        named = f"{field} ({options[field]})" if field and options and field in options else field
        detail = f"{named}: {error.get('message', '')}" if named else str(error.get("message", ""))
        message = f"{error.get('status', reply.status)} {error.get('code', reply.reason)}: {detail}"
    else:
        text = reply.body.decode("utf-8", "replace").strip().splitlines()
        message = f"{reply.status} {reply.reason}" + (f": {text[0][:200]}" if text else "")
    if reply.status == 401 or (body is not None and body["error"].get("code") == "unauthorized"):
        message += " (give --token-file FILE or JEISSON_TOKEN, or --cert/--key/--ca with an https:// --api)"
    if 400 <= reply.status < 500:
        raise Refused(f"{what}: {message}", body)
    raise ServerFailed(f"{what}: {message}", body)


def _error_body(reply: Reply) -> dict[str, Any] | None:
    """The contract's error body, or None when the reply has none (a proxy's
    page, an empty body)."""
    try:
        body = json.loads(reply.body)
    except ValueError:
        return None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        return body
    return None


def json_of(reply: Reply, what: str) -> dict[str, Any]:
    """A successful reply's JSON object; anything else is the API failing
    its promise (exit 4)."""
    try:
        body = json.loads(reply.body)
    except ValueError:
        start = reply.body[:80].decode("utf-8", "replace")
        raise ServerFailed(f"{what}: answered {reply.status} with a body that is not JSON: {start!r}") from None
    if not isinstance(body, dict):
        raise ServerFailed(f"{what}: answered {reply.status} with JSON that is not an object")
    return body


def send(target: Target, request: Request, context: ssl.SSLContext | None = None, token: str | None = None,
         timeout: float = DEFAULT_TIMEOUT_S) -> Reply:
    """Send ``request`` and read the whole answer; ``Unreachable`` naming
    ``target``'s URL when there is none."""
    url = target.url
    connection: http.client.HTTPConnection
    if target.scheme == "https":
        connection = http.client.HTTPSConnection(target.host, target.port, timeout=timeout,
                                                 context=context or ssl.create_default_context())
    else:
        connection = http.client.HTTPConnection(target.host, target.port, timeout=timeout)
    try:
        connection.request(request.method, request.target(target.prefix), body=request.payload(),
                           headers=request.headers(token))
        response = connection.getresponse()
        return Reply(status=response.status, reason=response.reason,
                     content_type=response.getheader("Content-Type") or "", body=response.read(),
                     headers={name.lower(): value for name, value in response.getheaders()})
    except ssl.SSLCertVerificationError as e:
        raise Unreachable(f"TLS failure with {url}: the API's certificate is not trusted: "
                          f"{e.verify_message or _reason(e)} (give the CA that signed it with --ca)") from None
    except ssl.SSLError as e:
        hint = " (is the API plain http://?)" if "WRONG_VERSION_NUMBER" in str(e) else ""
        if "CERTIFICATE_REQUIRED" in str(e) or "UNKNOWN_CA" in str(e) or "BAD_CERTIFICATE" in str(e):
            hint = " (the API wants a client certificate it trusts: --cert and --key)"
        raise Unreachable(f"TLS failure with {url}: {_reason(e)}{hint}") from None
    except http.client.RemoteDisconnected:
        raise Unreachable(f"cannot reach the API at {url}: it closed the connection without answering"
                          + (" (does it want https://?)" if target.scheme == "http" else "")) from None
    except ConnectionRefusedError:
        raise Unreachable(f"cannot reach the API at {url}: connection refused (is the aggregator running,"
                          " with its [api] listen on that address?)") from None
    except TimeoutError:
        raise Unreachable(f"cannot reach the API at {url}: no answer within {timeout:g} s"
                          + (" (is the API plain http://?)" if target.scheme == "https" else "")) from None
    except socket.gaierror as e:
        raise Unreachable(f"cannot reach the API at {url}: cannot resolve {target.host}: {_reason(e)}") from None
    except http.client.HTTPException as e:
        raise Unreachable(f"cannot reach the API at {url}: the answer is not HTTP ({type(e).__name__}):"
                          " is that the API's port?") from None
    except OSError as e:
        raise Unreachable(f"cannot reach the API at {url}: {_reason(e)}") from None
    finally:
        connection.close()
