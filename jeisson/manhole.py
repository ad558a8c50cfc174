"""The operator's debug manhole: a Python shell into the live process, over SSH.

Configured in a ``[manhole]`` section of the aggregator's or home's ini file::

    [manhole]
    listen = 7790                  ; a bare port, or a tcp: endpoint without
                                   ; interface=, is bound to 127.0.0.1
    host_key = pki/manhole/ssh_host_ed25519_key
    authorized_keys = pki/manhole/authorized_keys

(paths relative to the ini file's folder; ``jeisson pki manhole DIR`` makes
both, and an operator's key pair).  Connect with::

    ssh -i pki/manhole/operator_ed25519 -o IdentitiesOnly=yes -p 7790 operator@127.0.0.1

and the shell's namespace holds the live ``aggregator`` or ``home`` object.

What guards it, by layer:

- *Keys only.*  A public key listed in ``authorized_keys`` (OpenSSH format,
  re-read at every attempt, so adding an operator needs no restart); any
  user name.  Passwords and keyboard-interactive are not offered, and a
  client trying them anyway is counted as failing.
- *Loopback by default.*  An interface other than loopback needs
  ``allow_remote = yes`` and is warned of at start; without it the config is
  refused.
- *Attempts limited.*  At most ``max_unauthenticated`` connections not
  logged in yet at once; ``max_auth_tries`` failed authentications close a
  connection; ``lockout_after`` failures (authentications refused, logins
  timed out, protocol garbage) from one address within ``lockout_s`` lock
  it out (every connection closed at once) for ``lockout_s``.  A
  connection not logged in after ``login_timeout_s`` is closed, and so is a
  session nobody has typed in for ``idle_s``.
- *Garbage.*  Whatever a client sends, a connection that breaks the protocol
  costs one log line naming the peer, never a traceback.

``protocol = telnet`` keeps the old telnet manhole with a password file
(``passwd =``) for the lab: off unless asked for, loopback only even with
``allow_remote``, warned of at start, and under the same limits.

The lockout is plain Python (``Lockout``); one ``_Watch`` per connection
keeps its timers, counts its failures and logs how it ended, for SSH and
telnet alike; the protocol classes are thin shells over Twisted conch that
tell the watch what happened and carry out its closes.  ``ssh_command`` and
``known_hosts_line`` give the demo the command to print.
"""

import base64
import hashlib
import ipaddress
import os
import shlex
import stat
from collections import OrderedDict
from typing import Any

import attrs
from twisted.application import strports
from twisted.conch import checkers as conch_checkers
from twisted.conch import error as conch_error
from twisted.conch import manhole, manhole_ssh, telnet
from twisted.conch.insults import insults
from twisted.conch.ssh import _kex, connection, keys, session, transport, userauth
from twisted.conch.ssh.common import NS, getNS
from twisted.cred import checkers, credentials, portal
from twisted.cred.error import UnauthorizedLogin
from twisted.internet import endpoints, interfaces
from twisted.internet import protocol as internet_protocol
from twisted.internet.error import ConnectionDone, ConnectionLost, ProcessDone
from twisted.internet.protocol import ServerFactory, connectionDone
from twisted.logger import ILogObserver, LogEvent, Logger, LogLevel, globalLogPublisher
from twisted.python.failure import Failure
from zope.interface import implementer, provider

from jeisson.config import ConfigError, IniFile

PKI_HINT = "make the manhole's keys with: jeisson pki manhole DIR"

# A disconnected peer's close is given this long to flush before the
# connection is aborted (a peer that does not read must not pin it).
CLOSE_GRACE_S = 5.0


@attrs.frozen
class ManholeConfig:
    """The ``[manhole]`` section, checked.

    ``listen`` is an endpoint string; ``host_key``, ``authorized_keys`` and
    ``passwd`` are absolute paths or relative to the working directory (the
    ini file's folder already joined).  ``passwd`` is for ``protocol =
    telnet`` only, the two key files for ``ssh`` only.
    """

    listen: str
    protocol: str = "ssh"
    host_key: str | None = None
    authorized_keys: str | None = None
    passwd: str | None = None
    allow_remote: bool = False
    max_auth_tries: int = 3
    max_unauthenticated: int = 10
    lockout_after: int = 10
    lockout_s: float = 600.0
    login_timeout_s: float = 30.0
    idle_s: float = 900.0


# ------------------------------------------------------------------ config


def read_manhole(ini: IniFile) -> ManholeConfig | None:
    """The ``[manhole]`` section of ``ini``, or None without one.

    Every file it names is read now, so a missing or bad key stops the start
    with an error naming the ini file, the key and the file.
    """
    if not ini.has_section("manhole"):
        return None
    s = "manhole"
    listen = ini.server_endpoint(s, "listen", loopback_default=True)
    protocol = ini.choice(s, "protocol", ("ssh", "telnet"), "ssh")
    allow_remote = ini.boolean(s, "allow_remote", False)
    try:
        local = listens_locally(listen)
    except ValueError as e:
        raise ini.error(s, "listen", str(e)) from None
    if protocol == "telnet":
        if not local:
            raise ini.error(s, "listen", f"{listen} is not loopback: the telnet manhole sends passwords and the "
                                         "shell in clear, so it listens on loopback only (allow_remote does not "
                                         "change that); use protocol = ssh")
        for key in ("host_key", "authorized_keys"):
            if ini.raw(s, key, None) is not None:
                raise ini.error(s, key, "only for protocol = ssh")
        passwd = _path(ini, ini.text(s, "passwd"))
        if not os.path.isfile(passwd):
            raise ini.error(s, "passwd", f"password file {passwd} does not exist (lines of user:password)")
        mode = stat.S_IMODE(os.stat(passwd).st_mode)
        if mode & 0o077:
            raise ini.error(s, "passwd", f"password file {passwd} is open to others (mode {mode:04o}): "
                                         f"chmod 600 {passwd}")
        return ManholeConfig(listen, protocol="telnet", passwd=passwd, allow_remote=allow_remote, **_limits(ini))
    if not local and not allow_remote:
        raise ini.error(s, "listen", f"{listen} listens beyond loopback: a manhole is a Python shell in the "
                                     "live process; set allow_remote = yes to mean it, or bind 127.0.0.1")
    if ini.raw(s, "passwd", None) is not None:
        raise ini.error(s, "passwd", "the SSH manhole takes keys only (authorized_keys), not passwords; "
                                     "passwd is for protocol = telnet")
    host_key = _path(ini, ini.text(s, "host_key"))
    authorized = _path(ini, ini.text(s, "authorized_keys"))
    try:
        load_host_key(host_key)
    except ValueError as e:
        raise ini.error(s, "host_key", str(e)) from None
    try:
        load_authorized_keys(authorized)
    except ValueError as e:
        raise ini.error(s, "authorized_keys", str(e)) from None
    return ManholeConfig(
        listen,
        protocol="ssh",
        host_key=host_key,
        authorized_keys=authorized,
        allow_remote=allow_remote,
        **_limits(ini),
    )


def _limits(ini: IniFile) -> dict[str, Any]:
    s = "manhole"
    return dict(
        max_auth_tries=ini.number(s, "max_auth_tries", 3, low=1, high=100, integer=True),
        max_unauthenticated=ini.number(s, "max_unauthenticated", 10, low=1, high=10_000, integer=True),
        lockout_after=ini.number(s, "lockout_after", 10, low=1, high=100_000, integer=True),
        lockout_s=ini.number(s, "lockout_s", 600.0, low=1, high=7 * 86400),
        login_timeout_s=ini.number(s, "login_timeout_s", 30.0, low=1, high=3600),
        idle_s=ini.number(s, "idle_s", 900.0, low=1, high=7 * 86400),
    )


def _path(ini: IniFile, path: str) -> str:
    if not os.path.isabs(path) and ini.source and os.path.dirname(ini.source):
        return os.path.join(os.path.dirname(ini.source), path)
    return path


def listens_locally(listen: str) -> bool:
    """Whether the endpoint string ``listen`` can only be reached from this
    machine: a ``tcp:``/``tcp6:`` on a loopback interface, or a ``unix:``
    socket.  ValueError for a kind of endpoint a manhole cannot use."""
    args, kwargs = endpoints._parse(listen)
    kind = args[0] if args else ""
    if kind == "unix":
        return True
    if kind not in ("tcp", "tcp6"):
        raise ValueError(f"expected a tcp:, tcp6: or unix: endpoint, got {listen!r}")
    interface = kwargs.get("interface", "" if kind == "tcp" else "::")
    if interface == "localhost":
        return True
    try:
        return ipaddress.ip_address(interface).is_loopback if interface else False
    except ValueError:
        raise ValueError(f"interface {interface!r} is not an IP address") from None


def fingerprint(key: keys.Key) -> str:
    """A key's fingerprint as ``ssh-keygen -l`` and ``ssh`` show it."""
    digest = hashlib.sha256(key.blob()).digest()
    return "SHA256:" + base64.b64encode(digest).decode("ascii").rstrip("=")


def ssh_command(port: int, identity: str, known_hosts: str | None = None, host: str = "127.0.0.1",
                user: str = "operator") -> str:
    """The command an operator types to reach the manhole: ``identity`` is
    the private key (``manhole/operator_ed25519``), ``known_hosts`` a file
    holding the host key's line (``known_hosts_line``) so that ``ssh``
    checks it instead of asking."""
    options = ["-o IdentitiesOnly=yes"]
    if known_hosts is not None:
        options += [f"-o UserKnownHostsFile={shlex.quote(known_hosts)}", "-o StrictHostKeyChecking=yes"]
    return f"ssh -i {shlex.quote(identity)} {' '.join(options)} -p {port} {user}@{host}"


def known_hosts_line(host_key: str, port: int, host: str = "127.0.0.1") -> str:
    """The ``known_hosts`` line for the manhole's host key (the private key
    file ``host_key``) at ``host``:``port``, newline ended."""
    key = load_host_key(host_key).public()
    name = host if port == 22 else f"[{host}]:{port}"
    return f"{name} {key.toString('openssh').decode('ascii')}\n"


def load_host_key(path: str) -> keys.Key:
    """The SSH host key (private) in ``path``; ValueError saying what is wrong:
    missing, unreadable, readable by others, not a key, a public key, or
    encrypted."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise ValueError(f"host key {path} does not exist; {PKI_HINT}") from None
    except OSError as e:
        raise ValueError(f"cannot read host key {path}: {e.strerror}") from None
    if mode & 0o077:
        raise ValueError(f"host key {path} is open to others (mode {stat.S_IMODE(mode):04o}): "
                         f"chmod 600 {path}")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise ValueError(f"cannot read host key {path}: {e.strerror}") from None
    try:
        key = keys.Key.fromString(data)
    except keys.EncryptedKeyError:
        raise ValueError(f"host key {path} is encrypted with a passphrase; the manhole needs it unencrypted "
                         "(and mode 0600)") from None
    except (keys.BadKeyError, ValueError, IndexError, TypeError) as e:
        raise ValueError(f"host key {path} is not an OpenSSH private key ({e or type(e).__name__})") from None
    if key.isPublic():
        raise ValueError(f"host key {path} is a public key; host_key names the private one "
                         "(ssh_host_ed25519_key, not the .pub)")
    return key


def load_authorized_keys(path: str) -> list[keys.Key]:
    """The public keys in the OpenSSH ``authorized_keys`` file ``path``;
    ValueError naming the file (and line) when it is missing, writable by
    others, holds a line that is not a key, or holds no key at all."""
    return [key for key, _ in authorized_keys_with_comments(path)]


def authorized_keys_with_comments(path: str) -> list[tuple[keys.Key, str]]:
    """``load_authorized_keys``, each key with its comment (who it is)."""
    try:
        mode = os.stat(path).st_mode
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ValueError(f"authorized keys file {path} does not exist; {PKI_HINT}") from None
    except OSError as e:
        raise ValueError(f"cannot read authorized keys file {path}: {e.strerror}") from None
    if mode & 0o022:
        raise ValueError(f"authorized keys file {path} is writable by others (mode {stat.S_IMODE(mode):04o}): "
                         f"chmod 600 {path}")
    found = []
    for number, line in enumerate(data.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith(b"#"):
            continue
        try:
            key = keys.Key.fromString(line)
        except Exception:
            key = None
        if key is None or not key.isPublic():
            raise ValueError(f"{path} line {number}: not an OpenSSH public key (expected a line like "
                             "'ssh-ed25519 AAAA... operator'; options before the key are not supported)")
        fields = line.split(None, 2)
        found.append((key, fields[2].decode("utf-8", "replace") if len(fields) > 2 else ""))
    if not found:
        raise ValueError(f"authorized keys file {path} holds no key: nobody could log in; {PKI_HINT}")
    return found


# ------------------------------------------------------------- the core


@attrs.define
class Lockout:
    """Failures per address, and which addresses are locked out.

    An address with ``after`` failures within ``window_s`` seconds is locked
    out for ``window_s`` seconds (longer if connections it opened before
    keep failing); then its count starts again from zero.  At most
    ``addresses`` addresses are remembered (the least recently failing
    ones are forgotten first), so a stranger with many addresses cannot grow
    it without bound.  No clock and no I/O: callers pass ``now``.
    """

    after: int
    window_s: float
    addresses: int = 4096
    _failures: "OrderedDict[str, list[float]]" = attrs.field(factory=OrderedDict)
    _until: "OrderedDict[str, float]" = attrs.field(factory=OrderedDict)

    def locked(self, address: str, now: float) -> bool:
        """Whether a connection from ``address`` is refused now."""
        until = self._until.get(address)
        if until is None:
            return False
        if now < until:
            return True
        del self._until[address]
        return False

    def failed(self, address: str, now: float) -> bool:
        """A failure from ``address``; True when it locks the address out
        (only the failure that crosses the line)."""
        if self.locked(address, now):
            self._remember(self._until, address, now + self.window_s)
            return False
        times = [t for t in self._failures.get(address, ()) if now < t + self.window_s]  # as locked() counts
        times.append(now)
        if len(times) >= self.after:
            self._failures.pop(address, None)
            self._remember(self._until, address, now + self.window_s)
            return True
        self._remember(self._failures, address, times)
        return False

    def _remember(self, table: OrderedDict, address: str, value: Any) -> None:
        table[address] = value
        table.move_to_end(address)
        while len(table) > self.addresses:
            table.popitem(last=False)


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


class _Guard:
    """What every connection to one manhole shares: its settings, clock, the
    lockout of addresses that failed too often, and the count of connections
    not logged in yet (at most ``max_unauthenticated``, so that strangers
    holding handshakes open cost a bounded amount)."""

    log = Logger()

    def __init__(self, config: ManholeConfig, clock: interfaces.IReactorTime):
        self.config = config
        self.clock = clock
        self.lockout = Lockout(config.lockout_after, config.lockout_s)
        self.unauthenticated = 0
        self._full = False  # said so once, until there is room again

    def admits(self, addr: Any) -> bool:
        """Whether a connection from ``addr`` may start: not locked out, and
        room among the connections not logged in yet."""
        host = _host(addr)
        if self.lockout.locked(host, self.clock.seconds()):
            return False  # said once, when it was locked out
        if self.unauthenticated >= self.config.max_unauthenticated:
            if not self._full:
                self.log.warn("manhole: {count} connections not logged in yet; refusing more (from {host} "
                              "first) until one ends", count=self.unauthenticated, host=host)
            self._full = True
            return False
        return True

    def started(self) -> None:
        self.unauthenticated += 1

    def settled(self) -> None:
        """A connection not logged in yet logged in, or ended."""
        self.unauthenticated -= 1
        if self.unauthenticated < self.config.max_unauthenticated:
            self._full = False

    def failed(self, host: str) -> None:
        if self.lockout.failed(host, self.clock.seconds()):
            self.log.warn("manhole: {host} locked out for {seconds:g} s after {count} failures",
                          host=host, seconds=self.config.lockout_s, count=self.config.lockout_after)


def _shown(name: bytes) -> str:
    """A user name as a peer sent it, safe for a log line: printable, at
    most 40 characters."""
    text = name.decode("utf-8", "replace")
    shown = "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)
    return shown if len(shown) <= 40 else shown[:40] + "..."


def _error(e: BaseException) -> str:
    """An exception a peer's bytes caused, in a few words: ``struct.error:
    unpack requires a buffer of 4 bytes``."""
    kind = type(e)
    name = kind.__qualname__ if kind.__module__ == "builtins" else f"{kind.__module__}.{kind.__qualname__}"
    return f"{name}: {e}" if str(e) else name


def _host(addr: Any) -> str:
    """A peer's address without its port (a unix socket's peers are all
    one: this machine)."""
    return getattr(addr, "host", None) or "unix-socket"


def _peer(addr: Any) -> str:
    """A peer's address and port as a log line shows it: ``192.0.2.7:40000``,
    ``[2001:db8::7]:40000``."""
    host = _host(addr)
    port = getattr(addr, "port", None)
    if port is None:
        return host
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class _Watch:
    """One connection's guard, whatever its protocol.

    States: *unauthenticated* (the login timer runs; each refused
    authentication counts towards ``max_auth_tries`` and the address's
    lockout), *authenticated* (the idle timer runs, reset by ``activity()``:
    what the operator sends), *closing* (a goodbye sent, the connection
    aborted if not gone within ``CLOSE_GRACE_S``).  Every reason a
    connection ends is logged once, with the peer's address.

    The protocol says goodbye through ``goodbye(kind, text)`` (``kind`` one of
    ``auth``, ``timeout``, ``idle``, ``protocol``) and then loses the
    connection; ``abort()`` drops it at once.
    """

    log = Logger()

    def __init__(self, guard: _Guard, addr: Any, protocol: str, goodbye: Any, abort: Any):
        self.guard = guard
        self.host = _host(addr)
        self.peer = _peer(addr)
        self.protocol = protocol
        self._goodbye = goodbye
        self._abort = abort
        self.user: str | None = None
        self.failures: list[str] = []
        self.closing: str | None = None
        self._timer: Any = guard.clock.callLater(guard.config.login_timeout_s, self._login_timed_out)
        self._aborting: Any = None
        self._pending = True
        guard.started()

    def auth_failed(self, what: str) -> bool:
        """An authentication (``what``: key and user) was refused; whether
        the peer may try again."""
        self.failures.append(what)
        self.guard.failed(self.host)
        if len(self.failures) < self.guard.config.max_auth_tries:
            return True
        self._close("auth", "too many failed authentications",
                    "manhole: {peer} refused after {count} failed authentications ({what}); disconnected",
                    count=len(self.failures), what=", ".join(self.failures))
        return False

    def _settle(self) -> None:
        if self._pending:
            self._pending = False
            self.guard.settled()

    def logged_in(self, user: str, how: str) -> None:
        self.user = user
        self._settle()
        refused = f" (after {len(self.failures)} refused: {', '.join(self.failures)})" if self.failures else ""
        self.log.info("manhole: {peer} logged in as {user} {how}{refused}",
                      peer=self.peer, user=user, how=how, refused=refused)
        self._cancel_timer()
        self._timer = self.guard.clock.callLater(self.guard.config.idle_s, self._idle)

    def activity(self) -> None:
        """The operator sent something: the session is not idle."""
        if self.user is not None and self._timer is not None:
            self._timer.reset(self.guard.config.idle_s)

    def refused_request(self, what: str) -> None:
        self.log.info("manhole: {peer} asked for {what}; refused (the manhole is a shell only)",
                      peer=self.peer, what=what)

    def broken(self, why: str) -> None:
        """The peer sent what cannot be parsed: one line, and abort."""
        if self.closing:
            return
        if self.user is None:
            self.guard.failed(self.host)
        self.closing = why
        self._cancel_timer()
        self.log.warn("manhole: {peer} broke the {protocol} protocol ({why}); closed",
                      peer=self.peer, protocol=self.protocol, why=why)
        self._abort()

    def protocol_error(self, why: str) -> None:
        """The protocol gives up on the peer and says why: one line, and a goodbye."""
        if self.user is None and not self.closing:
            self.guard.failed(self.host)
        self._close("protocol", why, "manhole: {peer} broke the {protocol} protocol ({why}); disconnected",
                    protocol=self.protocol, why=why)

    def lost(self) -> None:
        self._settle()
        self._cancel_timer()
        if self._aborting is not None and self._aborting.active():
            self._aborting.cancel()
        if self.closing is None:
            if self.user is not None:
                self.log.info("manhole: {peer} ({user}) logged out", peer=self.peer, user=self.user)
            elif self.failures:
                self.log.info("manhole: {peer} left without logging in after {count} refused ({what})",
                              peer=self.peer, count=len(self.failures), what=", ".join(self.failures))
        self.closing = self.closing or "lost"

    def _login_timed_out(self) -> None:
        self._timer = None
        self.guard.failed(self.host)
        self._close("timeout", "login timed out", "manhole: {peer} not logged in within {seconds:g} s; disconnected",
                    seconds=self.guard.config.login_timeout_s)

    def _idle(self) -> None:
        self._timer = None
        self._close("idle", "idle session closed", "manhole: {peer} ({user}) idle for {seconds:g} s; session closed",
                    user=self.user, seconds=self.guard.config.idle_s)

    def _close(self, kind: str, text: str, message: str, **fields: Any) -> None:
        if self.closing:
            return
        self.closing = text
        self._cancel_timer()
        self.log.warn(message, peer=self.peer, **fields)
        self._goodbye(kind, text)
        self._aborting = self.guard.clock.callLater(CLOSE_GRACE_S, self._abort)

    def _cancel_timer(self) -> None:
        if self._timer is not None and self._timer.active():
            self._timer.cancel()
        self._timer = None


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


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor


def manhole_service(config: ManholeConfig, namespace: dict):
    """The manhole's listening service, whose shell sees ``namespace``.

    Built with ``strports.service``, so a port that cannot be bound stops
    start-up.  Raises ``ConfigError`` when a key file went bad since the
    config was read.
    """
    factory: ServerFactory
    if config.protocol == "telnet":
        factory = telnet_factory(config, namespace)
    else:
        try:
            factory = manhole_factory(config, namespace)
        except ValueError as e:
            raise ConfigError(f"[manhole]: {e}") from None
    return strports.service(config.listen, factory)
