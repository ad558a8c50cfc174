"""``twistd jeisson-home --config FILE``.

The home's store (``[store]``, on by default) is opened before anything
starts: one that cannot be opened stops the start with one line naming the
file.  The home reads what it remembers from it at once (its budget, its
owner's settings, its loads' clocks), before any board or the aggregator can
speak; ``StoreService`` prunes it and, started first, is stopped last, so
that what the home writes while stopping is committed.

The home reaches its aggregator over mutual TLS (``[tls]``,
``jeisson.tls``): it offers its certificate, which must name this home, and
takes an aggregator only with a certificate from the configured CA for the
configured name.  The credentials are checked while twistd parses the
command line (one line naming the file and the key); ``[tls] plaintext =
yes`` (loopback only) is the lab's exception, and says so in the log.
"""

from twisted.application import strports
from twisted.application.internet import ClientService
from twisted.application.service import MultiService, Service
from twisted.internet.endpoints import clientFromString
from twisted.internet.interfaces import IStreamClientEndpoint
from twisted.logger import Logger

from jeisson import tls
from jeisson.config import ConfigError
from jeisson.home.aggregator_link import UplinkSession
from jeisson.home.board_link import BoardSession
from jeisson.home.config import HomeConfig, read_config
from jeisson.home.core import Home
from jeisson.manhole import manhole_service
from jeisson.options import ConfigOptions, config_of
from jeisson.store import StoreError
from jeisson.store.service import StoreService, open_store
from jeisson.transports.boards import HomeSerialConfig, home_serial_service
from jeisson.transports.serial import SerialPortService
from jeisson.transports.stream import LineLinkFactory
from jeisson.web import home_web
from jeisson.web.config import HOME_LISTEN, ApiConfig, check_tokens
from jeisson.wire import aggregator_home, home_actuator


class Options(ConfigOptions):
    read_config = staticmethod(read_config)

    def postOptions(self) -> None:
        super().postOptions()
        self["tls"] = client_tls(self["parsed"], self["config"])
        check_tokens(api_config(self["parsed"], self["config"]))


def api_config(config: HomeConfig, source: str) -> ApiConfig:
    """``[api]`` as read, or the default for a config built without it."""
    return config.api if config.api is not None else ApiConfig(source, HOME_LISTEN)


def client_tls(config: HomeConfig, source: str) -> tls.Loaded | None:
    """The home's credentials, checked (``ConfigError`` naming the file and
    key); None where ``[tls] plaintext = yes``."""
    settings = tls.require(config.tls, source, "home")
    return None if settings.plaintext else tls.load_client(settings, config.id)


class HomeService(Service):
    log = Logger()

    def __init__(self, home: Home):
        self.home = home

    def startService(self):
        super().startService()
        config = self.home.config
        where = [f"TCP {config.actuators_listen}"] if config.actuators_listen else []
        where += [f"{s.port.mode} XBee on {s.port.device}" for s in config.serials.values()]
        self.log.info("home {home}: boards on {where}; aggregator at {aggregator}", home=config.id,
                      where=", ".join(where), aggregator=config.aggregator)
        if config.tls is not None and config.tls.plaintext:
            self.log.warn("home {home}: the aggregator link is PLAINTEXT ([tls] plaintext = yes, loopback only)",
                          home=config.id)
        elif config.tls is not None:
            self.log.info("home {home}: aggregator link over mutual TLS, the aggregator verified as {name} "
                          "(CA {ca})", home=config.id, name=config.tls.name, ca=config.tls.ca)
        if self.home.store is None:
            self.log.warn("home {home}: no store ([store] path = none): a restart forgets the budget in force, "
                          "the owner's settings and the loads' minimum-time clocks, and nothing is journaled",
                          home=config.id)
        else:
            self.log.info("home {home}: remembering in {path}", home=config.id, path=self.home.store.path)

    def stopService(self):
        super().stopService()
        self.home.stop()


def board_factory(home: Home) -> LineLinkFactory:
    """The boards' listener, with its limits (``[home]``: jeisson.limits)."""
    return LineLinkFactory(home_actuator.MAX_LINE, lambda link: BoardSession(home, link),
                           limits=home.config.limits, clock=home.clock, name="boards listener")


def uplink_factory(home: Home) -> LineLinkFactory:
    return LineLinkFactory(aggregator_home.MAX_LINE, lambda link: UplinkSession(home, link), clock=home.clock,
                           name="uplink")


log = Logger()

# After a refusal (wrong secret, unknown id, a version or home the home
# cannot take) the next attempt waits this long: an operator has to fix a
# config, and a tight loop would only fill the aggregator's log.  Only that
# attempt: an unrelated loss later takes the normal backoff.
RETRY_AFTER_REFUSAL_S = 30.0


def uplink_service(home: Home, reactor, endpoint: IStreamClientEndpoint | None = None) -> ClientService:
    """Keeps the aggregator link up, retrying while it is down with full
    jitter (``[home] reconnect_base_s``, ``reconnect_cap_s``: jeisson.backoff),
    so that homes that lost their aggregator together do not come back as
    a herd.

    ``endpoint``: where the aggregator is (``jeisson.tls.client_endpoint``
    over ``[home] aggregator``); by default that endpoint string as it is.

    The HELLO exchange runs inside the session rather than as
    ``prepareConnection``: ClientService cannot take a connection lost while
    that is pending.
    """
    backoff = home.config.reconnect

    def retry_delay(failed_attempts: int) -> float:
        delay = backoff(failed_attempts)
        delay = max(delay, RETRY_AFTER_REFUSAL_S) if home.take_refusal() else delay
        log.info("home {home}: no link to the aggregator at {aggregator}; next attempt in {delay:.1f} s",
                 home=home.config.id, aggregator=home.config.aggregator, delay=delay)
        return delay

    if endpoint is None:
        endpoint = clientFromString(reactor, home.config.aggregator)
    return ClientService(endpoint, uplink_factory(home), retryPolicy=retry_delay, clock=reactor)


def serial_service(home: Home, serial: HomeSerialConfig, reactor) -> SerialPortService:
    """The boards behind one serial radio (``jeisson.transports.boards``)."""
    return home_serial_service(serial, lambda wire: BoardSession(home, wire), reactor)


def makeService(options) -> MultiService:
    from twisted.internet import reactor

    config = config_of(options, read_config)
    loaded = options.get("tls")
    if loaded is None and "tls" not in options:  # not parsed by Options (a caller's own dict)
        try:
            loaded = client_tls(config, options["config"])
        except ConfigError as e:
            raise SystemExit(f"jeisson-home: cannot start home {config.id}: {e}") from None
    assert config.tls is not None  # client_tls required it
    for warning in loaded.warnings if loaded is not None else ():
        log.warn("{warning}", warning=warning)
    top = MultiService()
    store = None
    if config.store is not None:
        try:
            store = open_store(config.store, reactor, reactor=reactor)
        except StoreError as e:
            # One line, as a config error is, rather than a traceback.
            raise SystemExit(f"jeisson-home: cannot start home {config.id}: {e}") from None
        StoreService(store, reactor, reactor=reactor).setServiceParent(top)
    home = Home(config, reactor, store=store)
    HomeService(home).setServiceParent(top)
    if config.actuators_listen is not None:
        strports.service(config.actuators_listen, board_factory(home)).setServiceParent(top)
    for serial in config.serials.values():
        serial_service(home, serial, reactor).setServiceParent(top)
    endpoint = tls.client_endpoint(reactor, config.aggregator, config.tls, loaded)
    uplink_service(home, reactor, endpoint).setServiceParent(top)
    if config.manhole is not None:
        manhole_service(config.manhole, {"home": home}).setServiceParent(top)
    try:
        web = home_web(home, api_config(config, options["config"]), reactor)
    except ConfigError as e:  # [api] tls = yes with a certificate or key that cannot be used
        raise SystemExit(f"jeisson-home: cannot start: {e}") from None
    if web is not None:
        web.setServiceParent(top)
    return top
