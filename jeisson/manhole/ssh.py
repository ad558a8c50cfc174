"""The manhole over SSH: thin shells over Twisted conch (transport,
keys-only authentication, the session and its channel) that tell the
connection's ``_Watch`` what happened and carry out its closes."""


from typing import Any

from twisted.conch import checkers as conch_checkers
from twisted.conch import error as conch_error
from twisted.conch import manhole, manhole_ssh
from twisted.conch.insults import insults
from twisted.conch.ssh import _kex, connection, keys, session, transport, userauth
from twisted.conch.ssh.common import NS, getNS
from twisted.cred import portal
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import interfaces
from twisted.internet import protocol as internet_protocol
from twisted.internet.error import ProcessDone
from twisted.logger import ILogObserver, LogEvent, Logger, LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer, provider

from jeisson.manhole.config import (
    ManholeConfig,
    authorized_keys_with_comments,
    fingerprint,
    listens_locally,
    load_host_key,
)
from jeisson.manhole.watch import _error, _Guard, _reactor, _shown, _Watch

# ------------------------------------------------------------ the shells


@provider(ILogObserver)
def _quiet(event: LogEvent) -> None:
    """Conch's own running commentary (key exchange, channel open,
    connection lost, ...) is dropped: twistd's log shows every level, and a
    stranger's connection must cost one line, the manhole's own.  Warnings
    and errors pass as they are."""
    if event.get("log_level", LogLevel.info) >= LogLevel.warn:
        globalLogPublisher(event)


@implementer(conch_checkers.IAuthorizedKeysDB)
class AuthorizedKeysFile:
    """The keys in an ``authorized_keys`` file, for any user name; re-read at
    every attempt.  A file that went bad since the start lets nobody in and
    says why (once per change of its error)."""

    log = Logger()

    def __init__(self, path: str):
        self.path = path
        self._error: str | None = None
        self.comments: dict[str, str] = {}  # fingerprint -> the key's comment, as last read

    def getAuthorizedKeys(self, username: bytes) -> list[keys.Key]:
        try:
            found = authorized_keys_with_comments(self.path)
        except ValueError as e:
            if str(e) != self._error:
                self.log.error("manhole: nobody can log in: {error}", error=str(e))
            self._error = str(e)
            return []
        self._error = None
        self.comments = {fingerprint(key): comment for key, comment in found}
        return [key for key, _ in found]


class _Session(manhole_ssh.TerminalSession):
    """The shell of one SSH session: a terminal of 80x24 unless the client
    asks for a pty, resized as the client's window is, and ended (exit
    status 0, as ``ssh`` expects) by Ctrl-D or when the client's input ends
    (``ssh -T`` fed from a pipe)."""

    width = 80
    height = 24
    _protocol: Any = None
    _terminal: Any = None

    def openShell(self, proto):
        self._protocol = proto
        self._terminal = self.chainedProtocolFactory()
        self.transportFactory(proto, self._terminal, manhole_ssh.iconch.IConchUser(self.original),
                              self.width, self.height)
        # The shell leaving (Ctrl-D) ends the session with a status.
        self._terminal.transport.loseConnection = self._end

    def _end(self) -> None:
        proto, self._protocol = self._protocol, None
        if proto is not None:
            proto.processEnded(Failure(ProcessDone(0)))

    def getPty(self, term, windowSize, attrs):
        # A client whose input is not a terminal asks for a pty of 0x0.
        self.height, self.width = (windowSize[0] or 24), (windowSize[1] or 80)

    def windowChanged(self, newWindowSize):
        self.height, self.width = (newWindowSize[0] or 24), (newWindowSize[1] or 80)
        if self._terminal is not None and self._terminal.terminalProtocol is not None:
            self._terminal.terminalProtocol.terminalSize(self.width, self.height)

    def eofReceived(self):
        self._end()

    def execCommand(self, proto, cmd):
        raise conch_error.ConchError("the manhole runs no commands; open a shell")


class _Channel(session.SSHSession):
    """A session channel that offers a shell and nothing else: a command or
    a subsystem (sftp) is refused with one log line."""

    _log = Logger(observer=_quiet)

    conn: Any

    def request_exec(self, data: bytes) -> int:
        self.conn.transport.watch.refused_request("a command")
        return 0

    def request_subsystem(self, data: bytes) -> int:
        self.conn.transport.watch.refused_request("a subsystem")
        return 0


class _User(manhole_ssh.TerminalUser):
    def __init__(self, original, avatarId):
        super().__init__(original, avatarId)
        self.channelLookup[b"session"] = _Channel


@implementer(portal.IRealm)
class _Realm(manhole_ssh.TerminalRealm):
    """Every operator who logs in gets a Python shell over ``namespace``."""

    chainedProtocolFactory: Any
    userFactory = _User
    sessionFactory = _Session

    def __init__(self, namespace: dict):
        super().__init__()
        self.chainedProtocolFactory = lambda: insults.ServerProtocol(manhole.ColoredManhole, namespace)


class _KeysOnlyAuth(userauth.SSHUserAuthServer):
    """Public keys only; each failure reported to the transport, which
    decides whether the connection may try again.  The login timeout is the
    transport's (it covers the key exchange too), not this service's."""

    transport: Any
    _cancelLoginTimeout: Any
    _log = Logger(observer=_quiet)

    def serviceStarted(self):
        self.clock = self.transport.factory.clock
        super().serviceStarted()
        if self._cancelLoginTimeout:
            self._cancelLoginTimeout.cancel()
            self._cancelLoginTimeout = None
        self._key: str | None = None

    def auth_publickey(self, packet: bytes):
        try:
            _, blob, _ = getNS(packet[1:], 2)
            self._key = fingerprint(keys.Key.fromString(blob))
        except Exception:
            self._key = "an unreadable key"
        return super().auth_publickey(packet)

    def _cbFinishedAuth(self, result):
        super()._cbFinishedAuth(result)
        comment = self.transport.factory.authorized.comments.get(self._key)
        who = f" ({_shown(comment.encode())})" if comment else ""
        self.transport.watch.logged_in(_shown(self.user or b""), f"with key {self._key}{who}")

    def _ebBadAuth(self, reason: Failure):
        if reason.check(conch_error.IgnoreAuthentication):
            return None
        if self.method == b"none":  # a client asking which methods there are
            self.transport.sendPacket(userauth.MSG_USERAUTH_FAILURE,
                                      NS(b",".join(self.supportedAuthentications)) + b"\x00")
            return None
        method = self.method.decode("ascii", "replace")
        what = f"key {self._key}" if self.method == b"publickey" else method
        if not reason.check(UnauthorizedLogin, conch_error.ConchError):
            # A malformed signature or key makes conch's checker raise: the
            # peer's garbage, told in its connection's line, not a traceback.
            what += f" that could not be checked ({type(reason.value).__name__}: {reason.getErrorMessage()})"
        if self.transport.watch.auth_failed(f"{what} as {_shown(self.user or b'')}"):
            self.transport.sendPacket(userauth.MSG_USERAUTH_FAILURE,
                                      NS(b",".join(self.supportedAuthentications)) + b"\x00")
        return None


class _Connection(connection.SSHConnection):
    _log = Logger(observer=_quiet)


_ACTIVITY = {
    connection.MSG_CHANNEL_OPEN,
    connection.MSG_CHANNEL_DATA,
    connection.MSG_CHANNEL_EXTENDED_DATA,
    connection.MSG_CHANNEL_REQUEST,
}




_DISCONNECT_CODES = {
    "auth": transport.DISCONNECT_NO_MORE_AUTH_METHODS_AVAILABLE,
    "timeout": transport.DISCONNECT_NO_MORE_AUTH_METHODS_AVAILABLE,
    "idle": transport.DISCONNECT_BY_APPLICATION,
}


class _ManholeTransport(transport.SSHServerTransport):
    """One SSH connection to the manhole: conch's server, with a ``_Watch``
    told of every authentication, keystroke and protocol error."""

    factory: "_ManholeFactory"
    transport: Any
    watch: _Watch
    _log = Logger(observer=_quiet)

    def connectionMade(self):
        self.watch = _Watch(self.factory.guard, self.transport.getPeer(), "SSH", self._goodbye,
                            self.transport.abortConnection)
        super().connectionMade()

    def dataReceived(self, data: bytes) -> None:
        if self.watch.closing:
            return
        if not self.gotVersion:
            # A client speaks first with its version line (RFC 4253, 4.2).
            start = (self.buf + data)[:4]
            if not b"SSH-".startswith(start):
                self.watch.broken(f"not an SSH client: it began with {start!r}")
                return
        try:
            super().dataReceived(data)
        except Exception as e:
            self.watch.broken(_error(e))

    def dispatchMessage(self, messageNum, payload):
        if messageNum in _ACTIVITY:
            self.watch.activity()
        super().dispatchMessage(messageNum, payload)

    def sendDisconnect(self, reason, desc):
        """Conch gives up on the peer (a version string too long, a bad
        packet, no algorithm in common)."""
        self.watch.protocol_error(desc.decode("ascii", "replace"))

    def receiveError(self, reasonCode, description):
        """A client leaving says why (no more keys, the user logged out): the
        watch's lines already tell what an operator needs."""

    def _goodbye(self, kind: str, text: str) -> None:
        code = _DISCONNECT_CODES.get(kind, transport.DISCONNECT_PROTOCOL_ERROR)
        self.sendPacket(transport.MSG_DISCONNECT, code.to_bytes(4, "big") + NS(text.encode()) + NS(b""))
        self.transport.loseConnection()

    def connectionLost(self, reason=None):
        self.watch.lost()
        super().connectionLost(reason)


class _ManholeFactory(manhole_ssh.ConchFactory):
    """Builds a ``_ManholeTransport`` per connection, unless the address is
    locked out (then the connection is closed before any byte is sent)."""

    protocol = _ManholeTransport
    publicKeys: Any
    privateKeys: Any
    services = {b"ssh-userauth": _KeysOnlyAuth, b"ssh-connection": _Connection}
    log = Logger()
    noisy = False

    def __init__(self, config: ManholeConfig, namespace: dict, clock: interfaces.IReactorTime):
        assert config.host_key is not None and config.authorized_keys is not None
        self.authorized = AuthorizedKeysFile(config.authorized_keys)
        checker = conch_checkers.SSHPublicKeyChecker(self.authorized)
        super().__init__(portal.Portal(_Realm(namespace), [checker]))
        self.config = config
        self.clock = clock
        self.guard = _Guard(config, clock)
        host_key = load_host_key(config.host_key)
        self.host_fingerprint = fingerprint(host_key)
        self.privateKeys = {host_key.sshType(): host_key}
        self.publicKeys = {host_key.sshType(): host_key.public()}
        self.primes = None

    def startFactory(self) -> None:
        super().startFactory()
        self.log.info("manhole (ssh) on {listen}, host key {fingerprint}, keys in {authorized}",
                      listen=self.config.listen, fingerprint=self.host_fingerprint,
                      authorized=self.config.authorized_keys)
        if not listens_locally(self.config.listen):
            self.log.warn("manhole: {listen} is reachable beyond this machine (allow_remote = yes): a Python "
                          "shell in the live process, guarded by the keys in {authorized}",
                          listen=self.config.listen, authorized=self.config.authorized_keys)

    def buildProtocol(self, addr):
        if not self.guard.admits(addr):
            return None
        t: Any = internet_protocol.Factory.buildProtocol(self, addr)
        t.supportedPublicKeys = list(self.privateKeys.values())[0].supportedSignatureAlgorithms()
        t.supportedKeyExchanges = [k for k in t.supportedKeyExchanges
                                   if not _kex.isDynamicPrimesGroup(k)]
        return t


def manhole_factory(config: ManholeConfig, namespace: dict, clock: interfaces.IReactorTime | None = None):
    """The SSH manhole's protocol factory, whose shell sees ``namespace``;
    timers on ``clock`` (the reactor by default)."""
    return _ManholeFactory(config, namespace, clock or _reactor())
