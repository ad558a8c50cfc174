"""What guards every manhole connection, SSH and telnet alike: the
per-address ``Lockout`` (plain Python, no clock), the listener's ``_Guard``
(connections not logged in yet) and one ``_Watch`` per connection (its
timers, its failures, and the one line that says how it ended)."""


from collections import OrderedDict
from typing import Any

import attrs
from twisted.internet import interfaces
from twisted.logger import Logger

from jeisson import observe
from jeisson.manhole.config import CLOSE_GRACE_S, ManholeConfig

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
        observe.auth_failed("manhole", "login")  # the key and user are the peer's words: not a label
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


def _reactor() -> Any:
    from twisted.internet import reactor

    return reactor
