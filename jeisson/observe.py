"""What the low rooms count, for whoever observes them (``/metrics``).

The link skeleton (``jeisson.link``), the listener guards
(``jeisson.limits``), the stream wire (``jeisson.transports.stream``) and
the store (``jeisson.store.sqlite``) sit below the aggregator and the home:
they have no listener seam of their own, and must not know Prometheus.  They
report the few things an operator counts through the functions below; an
observer (``jeisson.web.metrics``) subscribes with ``add`` and overrides the
moments it counts.  Nobody listening costs one empty loop per moment.

The seam is the process's (as ``twisted.logger``'s global publisher is): a
jeisson process runs one role, and every link and store in it is that
role's.  Each moment names where it happened, so that an observer can tell
its own from another's (two roles in one test process): the *link* by what
the session talks to (``home``, ``aggregator``, ``board``), the *listener*
by its name (``homes listener``, ``boards listener``, ``uplink``), a store
by its path.  Label values stay few: codes and reasons are the wire's codes
and the guards' fixed texts, never a peer's address or words.

Moments are called on the reactor thread, synchronously; an observer that
raises is logged and skipped (``jeisson.fanout``).
"""

from jeisson.fanout import Fanout


class Observer:
    """Every moment, as a no-op: subclass and override what you count."""

    def changed(self) -> None:
        """After every moment (what ``jeisson.fanout`` tells every listener)."""

    def protocol_error(self, link: str, code: str) -> None:
        """A line from the peer of a ``link`` was wrong (``code``: the wire's
        error code the session answered, or would have, with)."""

    def connection_refused(self, listener: str, reason: str) -> None:
        """A ``listener`` turned a connection away (over a limit, locked out,
        a TLS handshake that failed) or refused its introduction (the wire's
        refusal code)."""

    def auth_failed(self, listener: str, reason: str) -> None:
        """A peer of ``listener`` failed to authenticate: a wrong secret or
        key, an unknown id, a certificate refused (``reason``: the refusal
        code, or what was wrong with the certificate)."""

    def store_committed(self, path: str, seconds: float, rows: int) -> None:
        """The store at ``path`` committed ``rows`` rows in ``seconds``."""


_fanout: Fanout[Observer] = Fanout("observer", Observer)


def add(observer: Observer) -> None:
    """Subscribe ``observer`` to every moment from now on."""
    _fanout.add(observer)


def remove(observer: Observer) -> None:
    """Unsubscribe ``observer`` (a ``ValueError`` if it was not subscribed)."""
    _fanout.remove(observer)


def observers() -> list[Observer]:
    return list(_fanout.listeners)


def protocol_error(link: str, code: str) -> None:
    _fanout.each(_fanout.calls("protocol_error"), link, code)


def connection_refused(listener: str, reason: str) -> None:
    _fanout.each(_fanout.calls("connection_refused"), listener, reason)


def auth_failed(listener: str, reason: str) -> None:
    _fanout.each(_fanout.calls("auth_failed"), listener, reason)


def store_committed(path: str, seconds: float, rows: int) -> None:
    _fanout.each(_fanout.calls("store_committed"), path, seconds, rows)
