"""The operator's debug manhole: a telnet Python shell into the live process.

Configured in a ``[manhole]`` section of the aggregator's or home's ini file::

    [manhole]
    listen = 7790            ; a bare port, or a tcp: endpoint without
                             ; interface=, is bound to 127.0.0.1
    passwd = manhole.passwd  ; lines of user:password (relative to the ini file)

Connect with ``telnet 127.0.0.1 7790`` and log in; the namespace holds the
live ``aggregator`` or ``home`` object.
"""

import os

import attrs
from twisted.application import strports
from twisted.conch import manhole, telnet
from twisted.conch.insults import insults
from twisted.cred import checkers, portal
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import ServerFactory
from twisted.logger import ILogObserver, LogEvent, Logger, LogLevel, globalLogPublisher
from zope.interface import implementer, provider

from jeisson.config import IniFile


@attrs.frozen
class ManholeConfig:
    listen: str
    passwd: str


def read_manhole(ini: IniFile) -> ManholeConfig | None:
    if not ini.has_section("manhole"):
        return None
    listen = ini.server_endpoint("manhole", "listen", loopback_default=True)
    passwd = ini.text("manhole", "passwd")
    if not os.path.isabs(passwd) and ini.source and os.path.dirname(ini.source):
        passwd = os.path.join(os.path.dirname(ini.source), passwd)
    if not os.path.isfile(passwd):
        raise ini.error("manhole", "passwd", f"password file {passwd} does not exist (lines of user:password)")
    return ManholeConfig(listen, passwd)


@provider(ILogObserver)
def _routine_negotiation(event: LogEvent) -> None:
    """Telnet option negotiation refused, or cut short by a client that
    left, is routine: log it at debug level, not as a critical failure."""
    failure = event.get("log_failure")
    if failure is not None and failure.check(telnet.OptionRefused, ConnectionDone, ConnectionLost):
        event = dict(event, log_level=LogLevel.debug)
        del event["log_failure"]
    globalLogPublisher(event)


class _Shell(telnet.TelnetBootstrapProtocol):
    _log = Logger(observer=_routine_negotiation)


@implementer(portal.IRealm)
class _ShellRealm:
    """Every operator who logs in gets a Python shell over ``namespace``."""

    def __init__(self, namespace: dict):
        self.namespace = namespace

    def requestAvatar(self, avatar_id, mind, *interfaces):
        if telnet.ITelnetProtocol not in interfaces:
            raise NotImplementedError("the manhole serves telnet only")
        shell = _Shell(insults.ServerProtocol, manhole.ColoredManhole, self.namespace)
        return telnet.ITelnetProtocol, shell, lambda: None


def manhole_service(config: ManholeConfig, namespace: dict):
    """A telnet manhole service whose shell sees ``namespace``.

    Logins are checked against the password file; the listener is built with
    ``strports.service``, so a port that cannot be bound stops start-up.
    """
    checker = checkers.FilePasswordDB(config.passwd)
    guarded = portal.Portal(_ShellRealm(namespace), [checker])
    factory = ServerFactory()
    factory.protocol = lambda: telnet.TelnetTransport(telnet.AuthenticatingTelnetProtocol, guarded)
    return strports.service(config.listen, factory)
