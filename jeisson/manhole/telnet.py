"""The lab's telnet manhole (``protocol = telnet``): a password file,
loopback only, under the same ``_Watch`` as SSH."""


from typing import Any

from twisted.conch import manhole, telnet
from twisted.conch.insults import insults
from twisted.cred import checkers, credentials, portal
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import interfaces
from twisted.internet.error import ConnectionDone, ConnectionLost
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.logger import ILogObserver, LogEvent, Logger, LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer, provider

from jeisson.manhole.config import ManholeConfig
from jeisson.manhole.watch import _error, _Guard, _reactor, _shown, _Watch

# ------------------------------------------------------------ telnet (lab)


@provider(ILogObserver)
def _routine_negotiation(event: LogEvent) -> None:
    """Telnet option negotiation refused, or cut short by a client that
    left, is routine: log it at debug level, not as a critical failure."""
    failure = event.get("log_failure")
    if failure is not None and failure.check(telnet.OptionRefused, telnet.AlreadyNegotiating, telnet.AlreadyEnabled,
                                             telnet.AlreadyDisabled, ConnectionDone, ConnectionLost):
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


def _negotiation_over(failure: Failure) -> None:
    """A telnet option the client refused, or a negotiation cut short by a
    client that left, is routine; anything else is a bug, logged."""
    failure.trap(telnet.OptionRefused, telnet.AlreadyEnabled, telnet.AlreadyDisabled, telnet.AlreadyNegotiating,
                 ConnectionDone, ConnectionLost)
    return None


class _TelnetLogin(telnet.AuthenticatingTelnetProtocol):
    """Conch's username and password prompts, each refusal told to the
    connection's watch (which may close it), and the echo negotiations'
    Deferreds handled, whatever the client answers."""

    transport: Any

    def telnet_User(self, line):
        self.username = line
        self.transport.will(telnet.ECHO).addErrback(_negotiation_over)
        self.transport.write(b"Password: ")
        return "Password"

    def telnet_Password(self, line):
        username, password = self.username, line
        del self.username
        # The login may end at once (a client that never answered the echo
        # negotiation): the state is set here, not returned after it.
        self.state = "Discard"

        def login(ignored):
            if self.transport.watch.closing:
                return
            d = self.portal.login(credentials.UsernamePassword(username, password), None, telnet.ITelnetProtocol)
            d.addCallback(self._cbLogin, username)
            d.addErrback(self._ebLogin, username)

        self.transport.wont(telnet.ECHO).addErrback(_negotiation_over).addCallback(login)
        return None

    def telnet_Command(self, line):
        """A line typed ahead of the login's answer, in the same packet: the
        shell's."""
        if self.protocol is not None:
            self.protocol.dataReceived(line + b"\r")
        return "Command"

    def _cbLogin(self, ial, username=b""):
        super()._cbLogin(ial)
        self.transport.watch.logged_in(_shown(username), "with a password")

    def _ebLogin(self, failure, username=b""):
        what = f"password as {_shown(username)}"
        if not failure.check(UnauthorizedLogin):
            what += f" that could not be checked ({type(failure.value).__name__}: {failure.getErrorMessage()})"
        if self.transport.watch.auth_failed(what):
            super()._ebLogin(failure)


class _TelnetTransport(telnet.TelnetTransport):
    """One telnet connection to the lab manhole, with the same watch as an
    SSH one: login timeout, attempts, lockout, idle, one line for garbage."""

    factory: "_TelnetFactory"
    transport: Any
    watch: _Watch

    def connectionMade(self):
        self.watch = _Watch(self.factory.guard, self.transport.getPeer(), "telnet", self._goodbye,
                            self.transport.abortConnection)
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        if self.watch.closing:
            return
        self.watch.activity()
        try:
            super().dataReceived(data)
        except Exception as e:
            self.watch.broken(_error(e))

    def _goodbye(self, kind: str, text: str) -> None:
        self.transport.write(f"\r\n{text}\r\n".encode())
        self.transport.loseConnection()

    def connectionLost(self, reason: Failure = connectionDone) -> None:
        self.watch.lost()
        super().connectionLost(reason)


class _TelnetFactory(ServerFactory):
    log = Logger()

    def __init__(self, config: ManholeConfig, guarded: portal.Portal, clock: interfaces.IReactorTime):
        self.config = config
        self.guarded = guarded
        self.guard = _Guard(config, clock)

    def startFactory(self) -> None:
        self.log.warn("manhole: telnet on {listen}, loopback only: passwords and the shell cross in clear; "
                      "for the lab only (protocol = ssh is the default)", listen=self.config.listen)

    def buildProtocol(self, addr):
        if not self.guard.admits(addr):
            return None
        p = _TelnetTransport(_TelnetLogin, self.guarded)
        p.factory = self
        return p


def telnet_factory(config: ManholeConfig, namespace: dict, clock: interfaces.IReactorTime | None = None):
    """The lab's telnet manhole factory (``protocol = telnet``)."""
    assert config.passwd is not None
    checker = checkers.FilePasswordDB(config.passwd)
    return _TelnetFactory(config, portal.Portal(_ShellRealm(namespace), [checker]), clock or _reactor())
