"""Listeners no stranger can tip over: the limits of every link and their guards.

``Limits`` holds the settings (one frozen object per listener, read from a
role's section by ``read_limits``); the guards apply them:

``ListenerGuard``, one per listener (a ``LineLinkFactory``)
    Counts the connections in total and per address and turns away, at
    accept, a connection over either limit or from an address locked out
    (aborted at once, before a TLS handshake or a session; logged once per
    interval and reason, the rest summarised).  Keeps each address's recent
    failed authentications: past ``lockout_failures`` within
    ``lockout_window_s`` the address is locked out for ``lockout_s`` (logged
    once).  Holds the listener's budget of log lines and error replies per
    interval, shared by all its connections.
``ConnectionGuard``, one per connection
    Its own budget of error replies and log lines per interval (what is over
    is counted and summarised once an interval: ``N more errors from PEER
    suppressed in the last 60 s``), its count of bad lines before the peer
    introduced itself, and the way a session reports a failed authentication
    (``auth_failed()``: the delay to wait before refusing).

``Throttle`` is the sans-IO counting rule under both.  The session skeleton
(``jeisson.link.LinkSession``) and the stream wire
(``jeisson.transports.stream.LineLink``) are the only callers; a wire
without a guard (an in-memory test wire, the simulation) is not limited.
"""

import functools
import math
from collections.abc import Callable
from typing import Any

import attrs
from twisted.internet.interfaces import IDelayedCall, IReactorTime
from twisted.logger import Logger

from jeisson import observe
from jeisson.config import IniFile
from jeisson.timers import cancel


@attrs.frozen
class Limits:
    """What one listener (and each of its connections) allows.

    The defaults are those of the aggregator's listener for homes, chosen so
    that an honest deployment never meets them (10,000 homes; homes behind
    a shared address; a home refused every 30 s for a wrong config); 0 turns
    a count limit off.  See ``docs/configuration.rst`` (``read_limits``).
    """

    max_connections: int = 20_000
    max_connections_per_address: int = 64
    max_bad_lines_before_hello: int = 10
    errors_per_interval: int = 10
    listener_errors_per_interval: int = 100
    error_interval_s: float = 60.0
    auth_failure_delay_s: float = 1.0
    lockout_failures: int = 20
    lockout_window_s: float = 60.0
    lockout_s: float = 120.0
    close_grace_s: float = 5.0
    max_write_buffer_bytes: int = 262_144
    # New connections an address may open per minute (each costs a TLS
    # handshake): a home reconnects at most a few times a minute.
    max_new_connections_per_address: int = 600
    # An IPv6 peer is counted under its network of this prefix: /64, one
    # subscriber's, at the aggregator; /128, each device, on a home's LAN,
    # where every board shares one /64.
    ipv6_prefix: int = 64


# The home's listener for boards: a home has a few boards, not thousands.
BOARD_LISTENER = Limits(max_connections=256, ipv6_prefix=128)

# The defaults of each role's section (read_limits).
DEFAULTS = {"aggregator": Limits(), "home": BOARD_LISTENER}

# key -> (low, high, integer)
_KEYS: dict[str, tuple[float, float, bool]] = {
    "max_connections": (0, 1_000_000, True),
    "ipv6_prefix": (1, 128, True),
    "max_connections_per_address": (0, 1_000_000, True),
    "max_bad_lines_before_hello": (1, 10_000, True),
    "errors_per_interval": (1, 1_000_000, True),
    "listener_errors_per_interval": (1, 1_000_000, True),
    "error_interval_s": (1, 86_400, False),
    "auth_failure_delay_s": (0, 60, False),
    "lockout_failures": (0, 1_000_000, True),
    "lockout_window_s": (1, 86_400, False),
    "lockout_s": (0, 86_400, False),
    "close_grace_s": (0.1, 600, False),
    "max_write_buffer_bytes": (4096, 1 << 30, True),
    "max_new_connections_per_address": (0, 1_000_000, True),
}


def read_limits(ini: IniFile, section: str, defaults: Limits | None = None) -> Limits:
    """The listener limits of ``section`` (every key optional), over
    ``defaults`` (by default ``DEFAULTS[section]``, else ``Limits()``).  A
    value out of its range is a ``ConfigError`` naming file, section and key."""
    base = defaults if defaults is not None else DEFAULTS.get(section, Limits())
    values: dict[str, Any] = {}
    for key, (low, high, integer) in _KEYS.items():
        default = getattr(base, key)
        if integer:
            values[key] = ini.number(section, key, default, low=low, high=high, integer=True)
        else:
            values[key] = ini.number(section, key, default, low=low, high=high)
    return Limits(**values)


@attrs.define
class Throttle:
    """At most ``allowed`` events per window of ``interval`` seconds (a
    window opens with the first event after the last one closed); the rest
    are counted in ``suppressed``.  Pure: the caller says what time it is."""

    allowed: int
    interval: float
    suppressed: int = 0
    _start: float = attrs.field(default=-math.inf, init=False)
    _used: int = attrs.field(default=0, init=False)

    def allow(self, now: float) -> bool:
        if now - self._start >= self.interval:
            self._start = now
            self._used = 0
        if self._used < self.allowed:
            self._used += 1
            return True
        self.suppressed += 1
        return False

    def take_suppressed(self) -> int:
        n, self.suppressed = self.suppressed, 0
        return n


class _Summary:
    """Counts what was suppressed and says it once, ``interval`` seconds
    after the first of them (``say(n)``); ``flush()`` says it now."""

    def __init__(self, clock: IReactorTime, interval: float, say: Callable[[int], None]):
        self.clock = clock
        self.interval = interval
        self.say = say
        self.count = 0
        self._timer: IDelayedCall | None = None

    def add(self, n: int = 1) -> None:
        self.count += n
        if self._timer is None:
            self._timer = self.clock.callLater(self.interval, self.flush)

    def flush(self) -> None:
        cancel(self._timer)
        self._timer = None
        n, self.count = self.count, 0
        if n:
            self.say(n)


ABORTED_TOO_MANY = "over the per-address limit"
ABORTED_TOTAL = "over the total limit"
ABORTED_LOCKED = "locked out"
ABORTED_RATE = "over the per-address rate of new connections"
NEW_CONNECTIONS_INTERVAL_S = 60.0


class ListenerGuard:
    """The limits of one listener, over all its connections (see the module)."""

    log = Logger()
    # Failed authentications remembered for at most this many addresses
    # (the oldest forgotten first): a spray from many addresses cannot grow
    # it without bound.
    MAX_ADDRESSES = 65_536

    def __init__(self, limits: Limits, clock: IReactorTime, name: str = "listener"):
        self.limits = limits
        self.clock = clock
        self.name = name
        self.connections = 0
        self.per_address: dict[str, int] = {}
        self._failures: dict[str, list[float]] = {}
        self._locked_until: dict[str, float] = {}
        self._log_budget = Throttle(limits.listener_errors_per_interval, limits.error_interval_s)
        self._suppressed_peers: set[str] = set()
        self._suppressed = _Summary(clock, limits.error_interval_s, self._say_suppressed)
        self._turned_away: dict[str, _Summary] = {}
        self._turned_away_said: dict[str, Throttle] = {}
        self._new: dict[str, Throttle] = {}  # per address: its new connections this minute

    # ----------------------------------------------------------- connections

    def admit(self, host: str | None, peer: str) -> str | None:
        """A new connection from ``host`` (None: not an IP address, counted
        only in the total): None if admitted (and counted until
        ``release``), else why it must be aborted at once."""
        limits = self.limits
        why: str | None = None
        if host is not None and self.locked_out(host):
            why = ABORTED_LOCKED
        elif limits.max_connections and self.connections >= limits.max_connections:
            why = ABORTED_TOTAL
        elif (host is not None and limits.max_connections_per_address
              and self.per_address.get(host, 0) >= limits.max_connections_per_address):
            why = ABORTED_TOO_MANY
        elif host is not None and limits.max_new_connections_per_address and not self._new_connection(host):
            why = ABORTED_RATE
        if why is not None:
            self._turn_away(why, peer)
            return why
        self.connections += 1
        if host is not None:
            self.per_address[host] = self.per_address.get(host, 0) + 1
        return None

    def _new_connection(self, host: str) -> bool:
        """Count a new connection from ``host``: whether it is within the rate."""
        now = self.clock.seconds()
        rate = self._new.pop(host, None)  # re-inserted below: the dict's order is the age of the last one
        if rate is None:
            rate = Throttle(self.limits.max_new_connections_per_address, NEW_CONNECTIONS_INTERVAL_S)
        allowed = rate.allow(now)
        rate.take_suppressed()
        self._new[host] = rate
        if len(self._new) > self.MAX_ADDRESSES:
            del self._new[next(iter(self._new))]
        return allowed

    def release(self, host: str | None) -> None:
        """An admitted connection ended."""
        self.connections -= 1
        if host is not None:
            left = self.per_address.get(host, 1) - 1
            if left > 0:
                self.per_address[host] = left
            else:
                self.per_address.pop(host, None)

    def connection(self, peer: str, host: str | None) -> "ConnectionGuard":
        return ConnectionGuard(self, peer, host)

    # -------------------------------------------------------- authentication

    def locked_out(self, host: str) -> bool:
        until = self._locked_until.get(host)
        if until is None:
            return False
        if self.clock.seconds() < until:
            return True
        del self._locked_until[host]
        return False

    def auth_failed(self, host: str | None, peer: str) -> float:
        """A peer at ``host`` failed to authenticate: the seconds to wait
        before refusing it.  Locks the address out past the limit."""
        limits = self.limits
        if host is None or not limits.lockout_failures:
            return limits.auth_failure_delay_s
        now = self.clock.seconds()
        recent = [t for t in self._failures.pop(host, []) if now - t < limits.lockout_window_s]
        recent.append(now)
        if len(recent) >= limits.lockout_failures:
            self._locked_until[host] = now + limits.lockout_s
            self.log.warn("{listener}: address {host} locked out for {t} s after {n} failed authentications "
                          "within {window} s (the last from {peer}); its connections are aborted meanwhile",
                          listener=self.name, host=host, t=limits.lockout_s, n=len(recent),
                          window=limits.lockout_window_s, peer=peer)
        else:
            self._failures[host] = recent  # re-inserted: the dict's order is the age of the last failure
            if len(self._failures) > self.MAX_ADDRESSES:
                del self._failures[next(iter(self._failures))]
        if len(self._locked_until) > self.MAX_ADDRESSES:
            self._locked_until = {h: t for h, t in self._locked_until.items() if t > now}
        return limits.auth_failure_delay_s

    # ------------------------------------------------------------------ logs

    def may_log(self, peer: str, n: int = 1) -> bool:
        """Whether one more line (an error and its reply, or a summary of
        ``n`` errors) fits the listener's budget; if not, the ``n`` errors
        are counted for the listener's own summary."""
        if self._log_budget.allow(self.clock.seconds()):
            return True
        self._log_budget.take_suppressed()
        self._suppressed_peers.add(peer)
        self._suppressed.add(n)
        return False

    def _say_suppressed(self, n: int) -> None:
        peers, self._suppressed_peers = self._suppressed_peers, set()
        self.log.warn("{listener}: {n} more errors from {peers} peers suppressed in the last {t} s",
                      listener=self.name, n=n, peers=len(peers), t=self.limits.error_interval_s)

    def _turn_away(self, why: str, peer: str) -> None:
        observe.connection_refused(self.name, why)
        said = self._turned_away_said.get(why)
        if said is None:
            said = self._turned_away_said[why] = Throttle(1, self.limits.error_interval_s)
        if said.allow(self.clock.seconds()):
            self.log.warn("{listener}: aborted a connection from {peer}: {why} (the next ones for the same reason "
                          "are counted and said once every {t} s)", listener=self.name, peer=peer, why=why,
                          t=self.limits.error_interval_s)
            return
        said.take_suppressed()
        summary = self._turned_away.get(why)
        if summary is None:
            summary = self._turned_away[why] = _Summary(self.clock, self.limits.error_interval_s,
                                                        functools.partial(self._say_turned_away, why))
        summary.add()

    def _say_turned_away(self, why: str, n: int) -> None:
        self.log.warn("{listener}: aborted {n} more connections in the last {t} s: {why}", listener=self.name, n=n,
                      t=self.limits.error_interval_s, why=why)

    def stop(self) -> None:
        """Say what is still counted (the listener stops)."""
        self._suppressed.flush()
        for summary in self._turned_away.values():
            summary.flush()


class ConnectionGuard:
    """The limits of one connection (see the module)."""

    log = Logger()

    def __init__(self, listener: ListenerGuard, peer: str, host: str | None):
        self.listener = listener
        self.peer = peer
        self.host = host
        limits = listener.limits
        self.limits = limits
        self.bad_lines_before_hello = 0
        self._errors = Throttle(limits.errors_per_interval, limits.error_interval_s)
        self._summary = _Summary(listener.clock, limits.error_interval_s, self._say_suppressed)

    def error(self) -> bool:
        """Whether the connection's next error may be answered and logged;
        if not it is counted, and said in the connection's summary."""
        if not self._errors.allow(self.listener.clock.seconds()):
            self._errors.take_suppressed()
            self._summary.add()
            return False
        if not self.listener.may_log(self.peer):
            return False
        return True

    def bad_line_before_hello(self) -> bool:
        """Count a bad line from a peer that has not introduced itself:
        True once past ``max_bad_lines_before_hello`` (abort without a reply)."""
        self.bad_lines_before_hello += 1
        return self.bad_lines_before_hello > self.limits.max_bad_lines_before_hello

    def auth_failed(self) -> float:
        """The peer failed to authenticate: the delay before its refusal."""
        return self.listener.auth_failed(self.host, self.peer)

    def may_log(self) -> bool:
        """Whether a line about this connection (not an error reply) fits
        the listener's budget."""
        return self.listener.may_log(self.peer)

    def stop(self) -> None:
        """The connection ended: say what its summary still counts."""
        self._summary.flush()

    def _say_suppressed(self, n: int) -> None:
        if self.listener.may_log(self.peer, n):
            self.log.warn("{n} more errors from {peer} suppressed in the last {t} s", n=n, peer=self.peer,
                          t=self.limits.error_interval_s)
