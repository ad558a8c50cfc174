"""``twistd jeisson-aggregator --config FILE``.

The aggregator's store (``[store]``, on by default) is opened before
anything starts: one that cannot be opened stops the start with one line
naming the file.  The aggregator reads what it remembers from it at once
(events, anchors, round numbering, the homes' last records) and writes to it
from then on; ``StoreService`` prunes it and, started first, is stopped
last, so that what the aggregator writes while stopping is committed.

Homes connect over mutual TLS (``[tls]``, ``jeisson.tls``): the credentials
are read and checked while twistd parses the command line, so a missing,
unreadable or expired file, or no ``[tls]`` at all, is one line naming the
file and the key.  ``[tls] plaintext = yes`` (loopback only) is the lab's
exception, and says so in the log.
"""

import gc
from typing import Any

from twisted.application.service import MultiService, Service
from twisted.internet import threads
from twisted.logger import Logger

from jeisson import tls
from jeisson.aggregator.config import AggregatorConfig, read_config
from jeisson.aggregator.core import Aggregator
from jeisson.aggregator.eventsfile import EventsFileWatcher
from jeisson.aggregator.home_link import HomeSession
from jeisson.aggregator.report import StatusFileListener
from jeisson.config import ConfigError
from jeisson.manhole import manhole_service
from jeisson.options import ConfigOptions, config_of
from jeisson.status_file import StatusFileService
from jeisson.store import StoreError
from jeisson.store.service import StoreService, open_store
from jeisson.transports.stream import LineLinkFactory
from jeisson.web import aggregator_web
from jeisson.web.config import AGGREGATOR_LISTEN, ApiConfig, check_tokens
from jeisson.wire import aggregator_home


class Options(ConfigOptions):
    read_config = staticmethod(read_config)

    def postOptions(self) -> None:
        super().postOptions()
        self["tls"] = server_tls(self["parsed"], self["config"])
        check_tokens(api_config(self["parsed"], self["config"]))


def api_config(config: AggregatorConfig, source: str) -> ApiConfig:
    """``[api]`` as read, or the default for a config built without it."""
    return config.api if config.api is not None else ApiConfig(source, AGGREGATOR_LISTEN)


def server_tls(config: AggregatorConfig, source: str) -> tls.ServerTLS | None:
    """The aggregator's TLS, its files checked (``ConfigError`` naming the
    file and key); None where ``[tls] plaintext = yes``."""
    settings = tls.require(config.tls, source, "aggregator")
    return None if settings.plaintext else tls.ServerTLS(settings)


class AggregatorService(Service):
    log = Logger()

    def __init__(self, aggregator: Aggregator, server: tls.ServerTLS | None = None):
        self.aggregator = aggregator
        self.server = server

    def startService(self):
        super().startService()
        config = self.aggregator.config
        if self.server is None:
            self.log.warn("aggregator listening on {listen} for homes {homes} in PLAINTEXT ([tls] plaintext = yes, "
                          "loopback only)", listen=config.listen, homes=", ".join(config.homes))
        else:
            self.log.info("aggregator listening on {listen} for homes {homes} over mutual TLS (CA {ca}, "
                          "revocation list {crl}: {revoked} revoked)", listen=config.listen,
                          homes=", ".join(config.homes), ca=self.server.tls.ca, crl=self.server.tls.crl,
                          revoked=len(self.server.revoked))
            for warning in self.server.warnings:
                self.log.warn("{warning}", warning=warning)
        store = self.aggregator.store
        if store is None:
            self.log.warn("no store ([store] path = none): events added while running, the round numbering and "
                          "the homes' last power do not survive a restart")
        else:
            self.log.info("aggregator remembering in {path}", path=store.path)
        self.aggregator.start()

    def stopService(self):
        super().stopService()
        self.aggregator.stop()


def home_factory(aggregator: Aggregator) -> LineLinkFactory:
    """The listener for homes, with its limits (``[aggregator]``: jeisson.limits)."""
    return LineLinkFactory(aggregator_home.MAX_LINE, lambda link: HomeSession(aggregator, link),
                           limits=aggregator.config.limits, clock=aggregator.clock, name="homes listener")


def makeService(options) -> MultiService:
    from twisted.internet import reactor

    # What twistd and the imports made (conch, numpy, scipy) lives as long
    # as the process: out of the collector's reach, so that resuming 10,000
    # homes' records does not set off full collections over all of it
    # (about 190 ms of a 230 ms resume, bench/store_cost.py).
    gc.freeze()
    config = config_of(options, read_config)
    server: Any = options.get("tls")
    if server is None and "tls" not in options:  # not parsed by Options (a caller's own dict)
        try:
            server = server_tls(config, options["config"])
        except ConfigError as e:
            raise SystemExit(f"jeisson-aggregator: cannot start: {e}") from None
    assert config.tls is not None  # server_tls required it
    top = MultiService()
    store = None
    if config.store is not None:
        try:
            store = open_store(config.store, reactor, reactor=reactor)
        except StoreError as e:
            # One line, as a config error is, rather than a traceback.
            raise SystemExit(f"jeisson-aggregator: cannot start: {e}") from None
        StoreService(store, reactor, reactor=reactor).setServiceParent(top)
    try:
        aggregator = Aggregator(config, reactor, solve_in_thread=threads.deferToThread, store=store)
    except StoreError as e:
        raise SystemExit(f"jeisson-aggregator: cannot start: {e}") from None
    AggregatorService(aggregator, server).setServiceParent(top)
    if config.events_file:
        EventsFileWatcher(aggregator, config.events_file, config.events_poll_s, reactor).setServiceParent(top)
    tls.server_service(config.tls, config.listen, home_factory(aggregator), reactor, server).setServiceParent(top)
    if config.status_file:
        status_file = StatusFileService(aggregator.snapshot, config.status_file, reactor,
                                        offload=threads.deferToThread)
        aggregator.add_listener(StatusFileListener(status_file))
        status_file.setServiceParent(top)
    try:
        web = aggregator_web(aggregator, api_config(config, options["config"]), reactor)
    except ConfigError as e:  # [api] tls = yes with credentials that cannot be used
        raise SystemExit(f"jeisson-aggregator: cannot start: {e}") from None
    if web is not None:
        web.setServiceParent(top)
    namespace: dict[str, Any] = {"aggregator": aggregator}
    if config.openadr is not None:
        from jeisson.openadr.service import openadr_service

        ven = openadr_service(config.openadr, aggregator, reactor)
        ven.setServiceParent(top)
        namespace["openadr"] = ven.ven  # the manhole's openadr.status()
    if config.manhole is not None:
        manhole_service(config.manhole, namespace).setServiceParent(top)
    return top
