"""What jeisson serves over HTTP: the JSON API, the dashboard, the live push and /metrics.

The rooms:

``config``
    ``[api]``: where, TLS, tokens, extra host names (``read_api``).
``errors``
    The one error body, and the checks of query and JSON fields.
``auth``
    ``Guard``: Host against DNS rebinding, credentials (operator
    certificates, bearer tokens), same-origin JSON writes.
``site``
    ``Routes``, ``build_site``: one ``Site`` per process, with the others'
    resources mounted (``/api/v1/stream``, ``/metrics``, ``/``).
``aggregator_api``, ``home_api``
    The handlers and views of each process's API.
``openapi``
    The OpenAPI 3.1 documents shipped in ``openapi/``.

``aggregator_web`` and ``home_web`` (below) are what the taps call: the
service that listens, with everything mounted.
"""

import importlib
from typing import Any

from twisted.application.service import Service
from twisted.internet.endpoints import serverFromString
from twisted.logger import Logger
from twisted.python.failure import Failure

log = Logger()


class ApiListener(Service):
    """Listens on ``[api] listen`` with the Site.  A port written in the
    config that cannot be bound stops the start (as ``strports.service``
    does); the default port, not written, is only warned about: a second
    home on the same machine still runs, without its page."""

    log = Logger()

    def __init__(self, listen: str, factory: Any, explicit: bool, reactor: Any, what: str, scheme: str = "http"):
        self.listen = listen
        self.factory = factory
        self.explicit = explicit
        self.reactor = reactor
        self.what = what
        self.scheme = scheme
        self.port: Any = None

    def privilegedStartService(self) -> None:
        super().privilegedStartService()
        failed: list[Failure] = []
        serverFromString(self.reactor, self.listen).listen(self.factory).addCallbacks(self._listening, failed.append)
        if failed:
            if self.explicit:
                failed[0].raiseException()
            self.log.warn("{what}: not served: cannot listen on {listen} ({why}); set [api] listen to a free port, "
                          "or none", what=self.what, listen=self.listen, why=failed[0].getErrorMessage())

    def _listening(self, port: Any) -> None:
        self.port = port
        address = port.getHost()
        host = getattr(address, "host", "?")
        shown = f"[{host}]" if ":" in host else host
        self.log.info("{what} on {scheme}://{host}:{port}/api/v1 (dashboard at /, metrics at /metrics)",
                      what=self.what, scheme=self.scheme, host=shown, port=getattr(address, "port", "?"))

    def stopService(self) -> Any:
        super().stopService()
        port, self.port = self.port, None
        if port is not None:
            return port.stopListening()
        return None


def optional(module: str, name: str) -> Any:
    """``module.name`` if that module is installed (the others' rooms:
    metrics, push, dashboard), else None; any other import error raises."""
    try:
        found = importlib.import_module(module)
    except ModuleNotFoundError as e:
        if e.name != module:
            raise
        return None
    return getattr(found, name, None)


# Where the others' resources go: (path, module, function) per role; each
# function takes the core and the reactor, but the pages', which take nothing.
MOUNTS = {
    "aggregator": (("/metrics", "jeisson.web.metrics", "aggregator_metrics"),
                   ("/api/v1/stream", "jeisson.web.push", "aggregator_stream"),
                   ("/", "jeisson.web.dashboard", "aggregator_pages")),
    "home": (("/metrics", "jeisson.web.metrics", "home_metrics"),
             ("/api/v1/stream", "jeisson.web.push", "home_stream"),
             ("/", "jeisson.web.dashboard", "home_pages")),
}


def mounts_for(role: str, core: Any, reactor: Any) -> dict[str, Any]:
    """The others' resources for ``role``'s Site (``aggregator`` or
    ``home``), those present."""
    mounts: dict[str, Any] = {}
    for path, module, name in MOUNTS[role]:
        make = optional(module, name)
        if make is not None:
            mounts[path] = make() if path == "/" else make(core, reactor)
    return mounts


def aggregator_mounts(aggregator: Any, reactor: Any) -> dict[str, Any]:
    return mounts_for("aggregator", aggregator, reactor)


def home_mounts(home: Any, reactor: Any) -> dict[str, Any]:
    return mounts_for("home", home, reactor)


def _service(config: Any, site: Any, tls_config: Any, reactor: Any, what: str, listener: Any) -> Service:
    """The listener; with ``[api] tls = yes``, over ``ApiTLS`` and with its
    revocation list watched (an operator revoked is refused from then on).
    ``ConfigError`` when the process has no ``[tls]`` credentials to serve with."""
    import attrs
    from twisted.application.service import MultiService

    from jeisson.config import ConfigError
    from jeisson.tls import CRLWatcher
    from jeisson.web.auth import ApiTLS, LimitedFactory, ServerOnlyTLS

    if not config.tls:
        return ApiListener(config.listen, LimitedFactory(site, listener), config.explicit, reactor, what)
    if config.cert is not None and (tls_config is None or tls_config.crl is None):
        # A home: its own server certificate, clients identified by token (no CA, no list to judge theirs).
        only = ServerOnlyTLS(config.source, config.cert, config.key)
        return ApiListener(config.listen, LimitedFactory(only.wrap(site), listener), config.explicit, reactor, what,
                           "https")
    if config.cert is not None:
        tls_config = attrs.evolve(tls_config, cert=config.cert, key=config.key)
    if tls_config is None or tls_config.plaintext:
        raise ConfigError(f"{config.source}: [api] tls: HTTPS needs this process's [tls] credentials (ca, cert, key, "
                          "crl); with [tls] plaintext = yes there are none: use tokens = FILE instead")
    server = ApiTLS(tls_config, certificate_required=config.tokens is None)
    top = MultiService()
    # Counted at accept, before the TLS handshake costs anything.
    ApiListener(config.listen, LimitedFactory(server.wrap(site), listener), config.explicit, reactor, what,
                "https").setServiceParent(top)
    if tls_config.crl is not None:
        CRLWatcher(server, reactor).setServiceParent(top)
    return top


def aggregator_web(aggregator: Any, config: Any, reactor: Any) -> Any:
    """The aggregator's HTTP service (None with ``[api] listen = none``):
    the API, and what the others mount."""
    from jeisson.limits import ListenerGuard
    from jeisson.web.aggregator_api import AggregatorApi
    from jeisson.web.auth import API_LISTENER, Guard
    from jeisson.web.site import build_site

    if config.listen is None:
        return None
    from twisted.internet import threads

    listener = ListenerGuard(config.limits, reactor, API_LISTENER)
    api = AggregatorApi(aggregator, config.rounds_kept, config.max_rows)
    site = build_site(api.routes(), Guard(config, listener=listener), aggregator_mounts(aggregator, reactor),
                      threads.deferToThread)
    return _service(config, site, aggregator.config.tls, reactor, "aggregator API", listener)


def home_web(home: Any, config: Any, reactor: Any) -> Any:
    """The home's HTTP service (None with ``[api] listen = none``)."""
    from jeisson.limits import ListenerGuard
    from jeisson.web.auth import API_LISTENER, Guard
    from jeisson.web.home_api import HomeApi
    from jeisson.web.site import build_site

    if config.listen is None:
        return None
    from twisted.internet import threads

    listener = ListenerGuard(config.limits, reactor, API_LISTENER)
    api = HomeApi(home, config.max_rows)
    site = build_site(api.routes(), Guard(config, listener=listener), home_mounts(home, reactor),
                      threads.deferToThread)
    return _service(config, site, None, reactor, f"home {home.config.id} API", listener)  # HTTPS: [api] cert
