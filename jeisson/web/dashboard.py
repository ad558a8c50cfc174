"""The pages: the operator's dashboard (aggregator) and the owner's page (home).

Plain files shipped in the package (``jeisson/web/static``: HTML, one
script and one style sheet per page, no build step, nothing from another
site), served from memory: ``/`` is the page, ``/static/NAME`` its files.
Only the files listed here are served (no directory listing, no path
outside the folder).  Every answer carries:

- ``Content-Security-Policy``: scripts, styles, images and connections
  from this origin only, no inline script, no frames (``CSP``);
- ``Cache-Control: no-cache`` and an ``ETag``: the browser keeps a copy and
  asks again each time (a 304 when unchanged), so an upgrade shows at once;
- ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy: no-referrer``.

``aggregator_pages()`` and ``home_pages()`` return a resource whose own
answer is the page and whose child ``static`` holds its files: mounted as
the site's root (with ``api`` and ``metrics`` put beside), or its page at
``b""`` and its ``static`` child at ``b"static"``.
"""

import hashlib
from importlib import resources

from twisted.web import http
from twisted.web.pages import notFound
from twisted.web.resource import IResource, Resource
from twisted.web.server import Request

CSP = (b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
       b"base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

TYPES = {
    "html": b"text/html; charset=utf-8",
    "js": b"text/javascript; charset=utf-8",
    "css": b"text/css; charset=utf-8",
    "svg": b"image/svg+xml",
}

AGGREGATOR_FILES = ("index.html", "dashboard.js", "dashboard.css", "common.js")
HOME_FILES = ("home.html", "home.js", "dashboard.css", "common.js")


def _secure(request: Request) -> None:
    request.setHeader(b"content-security-policy", CSP)
    request.setHeader(b"x-content-type-options", b"nosniff")
    request.setHeader(b"referrer-policy", b"no-referrer")
    request.setHeader(b"x-frame-options", b"DENY")


class StaticFile(Resource):
    """One file's bytes, with its type, its ETag and the headers above."""

    isLeaf = True

    def __init__(self, name: str, body: bytes):
        super().__init__()
        self.name = name
        self.body = body
        self.content_type = TYPES[name.rsplit(".", 1)[-1]]
        self.etag = b'"' + hashlib.sha256(body).hexdigest()[:20].encode("ascii") + b'"'

    def render_GET(self, request: Request) -> bytes:  # noqa: N802
        _secure(request)
        request.setHeader(b"cache-control", b"no-cache")
        if request.setETag(self.etag) == http.CACHED:
            return b""
        request.setHeader(b"content-type", self.content_type)
        return self.body

    def render_HEAD(self, request: Request) -> bytes:  # noqa: N802
        return self.render_GET(request)


class Folder(Resource):
    """``/static/``: the files named, nothing else."""

    def __init__(self, files: dict[str, StaticFile]):
        super().__init__()
        self.files = files

    def getChild(self, path: bytes, request: Request) -> IResource:  # noqa: N802
        found = self.files.get(path.decode("utf-8", "replace"))
        return found if found is not None else notFound("No such file", "The dashboard has no such file.")

    def render_GET(self, request: Request) -> bytes:  # noqa: N802
        request.setResponseCode(404)
        _secure(request)
        return b"no such file"


class Pages(Resource):
    """The page at ``/`` (also ``/index.html``), its files under ``/static/``."""

    def __init__(self, page: str, names: tuple[str, ...]):
        super().__init__()
        files = {name: StaticFile(name, read(name)) for name in names}
        self.page = files[page]
        self.static = Folder({name: f for name, f in files.items() if name != page})
        self.putChild(b"static", self.static)
        self.putChild(b"index.html", self.page)

    def getChild(self, path: bytes, request: Request) -> IResource:  # noqa: N802
        if path == b"":
            return self.page
        return notFound("No such page", "The dashboard is at /, the API under /api/v1.")

    def render_GET(self, request: Request) -> bytes:  # noqa: N802
        return self.page.render_GET(request)

    def render_HEAD(self, request: Request) -> bytes:  # noqa: N802
        return self.page.render_GET(request)


def read(name: str) -> bytes:
    """A file of ``jeisson/web/static`` as shipped in the package."""
    return resources.files("jeisson.web").joinpath("static", name).read_bytes()


def aggregator_pages() -> Pages:
    """The operator's dashboard: ``/`` and ``/static/``."""
    return Pages("index.html", AGGREGATOR_FILES)


def home_pages() -> Pages:
    """The home owner's page: ``/`` and ``/static/``."""
    return Pages("home.html", HOME_FILES)
